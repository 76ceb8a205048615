"""``prclab sweep SPACE.toml``: the command line of ``experiments.sweep`` (docs/sweeps.md)."""

from __future__ import annotations

import json
from pathlib import Path

from prclab.errors import PrclabError

HELP = ("search a space of substrate, encoder and readout parameters (Optuna on Dask distributed), "
        "cross-validated on the training split; the test split scored once for the chosen configuration")
MAX_TRIALS = 100_000


def _count(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value <= MAX_TRIALS:
        raise argparse.ArgumentTypeError(f"must lie in 0..{MAX_TRIALS}, got {value}")
    return value


def add_arguments(parser) -> None:
    from .sweep_study import SAMPLERS

    parser.add_argument("space", help="space file (TOML; see docs/sweeps.md)")
    parser.add_argument("--trials", type=_count, default=20,
                        help="finished trials the study should hold (a resumed study runs only the rest; default 20)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="a running Dask scheduler, e.g. tcp://127.0.0.1:8786 (default: a LocalCluster here)")
    parser.add_argument("--workers", type=_count,
                        help="LocalCluster worker processes (default: one per core); 0: one trial at a time "
                             "in this process")
    parser.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="Optuna sampler (default tpe)")
    parser.add_argument("--storage", help="Optuna storage URL instead of the space's (e.g. sqlite:///s.db, "
                                          "postgresql://...)")
    parser.add_argument("--export", metavar="OUT.csv", help="write one table of every trial")
    parser.add_argument("--plot", metavar="DIR", help="write history.png, params.png, importance.png there")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def main(args) -> None:
    from .sweep import run_sweep
    from .sweep_export import export_table, plot_study
    from .sweep_space import load_space
    from .sweep_study import open_study

    space = load_space(args.space)
    for option, path, suffix in (("--export", args.export, ".csv"),):
        if path is not None and (Path(path).suffix.lower() != suffix or Path(path).is_dir()):
            raise PrclabError(f"{option} {path}: must be a {suffix} file")
    result = run_sweep(space, args.trials, scheduler=args.scheduler, workers=args.workers,
                       sampler=args.sampler, storage=args.storage)
    if args.export or args.plot:
        study = open_study(space, args.sampler, storage=args.storage)
        if args.export:
            result["export"] = {"path": args.export, "rows": export_table(study, space, args.export)}
        if args.plot:
            result["plots"] = plot_study(study, space, args.plot)
    if args.json:
        print(json.dumps(result))
        return
    print(format_sweep(result))


def format_sweep(result: dict) -> str:
    """Aligned text lines of a ``run_sweep`` result."""
    best, test = result["best"], result["test"]
    params = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in best["params"].items())
    lines = [f"study              {result['study']} in {result['storage']} ({result['sampler']})",
             f"trials             {result['n_complete']} finished ({result['ran']} now, {result['resumed']} "
             f"before), {result['n_failed']} failed; {result['engine']['executor']}, "
             f"{result['engine']['workers']} worker(s), {result['seconds']:.1f} s",
             f"best               trial {best['trial']}: CV accuracy {best['cv_score']:.3f} "
             f"({len(best['fold_scores'] or [])} folds of the training split): {params}",
             f"test accuracy      {test['accuracy']:.3f} (chosen configuration; baseline "
             f"{test['baseline_accuracy']:.3f}, quadratic baseline {test['quadratic_baseline_accuracy']:.3f}, "
             f"MiniRocket {test['minirocket_accuracy']:.3f}; chance {test['chance']:.3f})",
             f"note               {test['note']}"]
    for err in result["errors"][:2]:
        lines.append(f"failed             {err}")
    if "export" in result:
        lines.append(f"table              {result['export']['path']} ({result['export']['rows']} rows)")
    if "plots" in result:
        lines.append(f"plots              {', '.join(result['plots'])}")
    return "\n".join(lines)
