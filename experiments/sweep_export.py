"""A sweep's results out of its Optuna study: one CSV table and three plots.

``export_table`` writes one row per trial: ``trial``, ``state``, each parameter (``group.name``),
``seed``, ``fold_1..fold_k`` (validation accuracy of each fold), ``mean`` (the trial's score),
``wall_s`` (seconds the objective ran), ``started`` / ``finished`` (UTC), ``error``, and the same
``prclab``, ``python``, ``numpy``, ``scikit-learn``, ``optuna``, ``distributed``, ``aeon`` versions
and ``git`` revision (of the checkout prclab runs from, ``unknown`` if none) on every row, so the
table stands alone.

``plot_study`` writes (matplotlib, Agg) ``history.png`` (each finished trial's score and the best so
far), ``params.png`` (score against each parameter, log axes for log ranges) and ``importance.png``:
Optuna's fANOVA importance evaluator (``optuna.importance.get_param_importances``, a random forest
fitted here, offline) when at least two trials finished and more than one parameter varies; with one
parameter its importance is 1 by definition and the plot says so.
"""

from __future__ import annotations

import csv
import platform
import subprocess
from pathlib import Path

from prclab.errors import PrclabError

from .sweep_space import SweepSpace

VERSIONED = ("numpy", "scikit-learn", "optuna", "distributed", "aeon")


def versions() -> dict:
    """Package versions and the git revision of the prclab checkout, as strings."""
    from importlib import metadata

    out = {"prclab": _version("prclab", metadata), "python": platform.python_version()}
    out.update({name: _version(name, metadata) for name in VERSIONED})
    out["git"] = git_revision()
    return out


def _version(name: str, metadata) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def git_revision() -> str:
    """``git rev-parse HEAD`` of the folder this module lives in (``+dirty`` with uncommitted changes),
    or ``unknown``."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "") if rev else "unknown"


def table_rows(study, space: SweepSpace) -> list[dict]:
    """One dict per trial of ``study`` (see the module docstring), in trial order."""
    info = versions()
    n_folds = max([len(t.user_attrs.get("cv", {}).get("fold_scores", [])) for t in study.get_trials(deepcopy=False)] + [0])
    rows = []
    for t in study.get_trials(deepcopy=False):
        cv = t.user_attrs.get("cv", {})
        folds = cv.get("fold_scores", [])
        row = {"trial": t.number, "state": t.state.name}
        row.update({p.key: t.params.get(p.key, "") for p in space.params})
        row["seed"] = cv.get("seed", space.seed)
        row.update({f"fold_{i + 1}": folds[i] if i < len(folds) else "" for i in range(n_folds)})
        row["mean"] = "" if t.value is None else t.value
        row["wall_s"] = round(cv["seconds"], 3) if "seconds" in cv else ""
        row["started"] = t.datetime_start.isoformat() if t.datetime_start else ""
        row["finished"] = t.datetime_complete.isoformat() if t.datetime_complete else ""
        row["error"] = t.user_attrs.get("error", "")
        row.update(info)
        rows.append(row)
    return rows


def export_table(study, space: SweepSpace, path) -> int:
    """Write the table to ``path`` (CSV); returns the number of rows."""
    rows = table_rows(study, space)
    if not rows:
        raise PrclabError(f"--export {path}: the study has no trials")
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def importances(study) -> dict[str, float]:
    """Parameter importance of the finished trials (fANOVA, see the module docstring)."""
    import optuna

    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    keys = sorted({k for t in done for k in t.params})
    varying = [k for k in keys if len({repr(t.params.get(k)) for t in done}) > 1]
    if len(done) < 2 or not varying:
        return {}
    if len(varying) == 1:
        return {varying[0]: 1.0}
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    return {k: float(v) for k, v in optuna.importance.get_param_importances(
        study, evaluator=evaluator, params=varying).items()}


def plot_study(study, space: SweepSpace, folder) -> list[str]:
    """Write ``history.png``, ``params.png`` and ``importance.png`` into ``folder``; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import optuna

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not done:
        raise PrclabError("sweep plots: no finished trial to plot")
    numbers = np.array([t.number for t in done])
    values = np.array([t.value for t in done])
    paths = []

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(numbers, values, "o", ms=4, label="trial")
    ax.step(numbers, np.maximum.accumulate(values), where="post", color="C3", label="best so far")
    ax.set(xlabel="trial", ylabel=f"cross-validated accuracy ({space.folds} folds, training split)",
           title=f"optimisation history: {space.study}")
    ax.legend()
    paths.append(_save(fig, folder / "history.png"))

    n = len(space.params)
    cols = min(3, n)
    fig, axes = plt.subplots(-(-n // cols), cols, figsize=(4 * cols, 3.2 * -(-n // cols)), squeeze=False)
    for ax, p in zip(axes.ravel(), space.params):
        xs = [t.params.get(p.key) for t in done]
        if p.kind == "choice":
            labels = [str(c) for c in p.choices]
            ax.plot([labels.index(str(x)) for x in xs], values, "o", ms=4)
            ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=7)
        else:
            ax.plot(xs, values, "o", ms=4)
            if p.log:
                ax.set_xscale("log")
        ax.set(xlabel=p.key, ylabel="CV accuracy")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    paths.append(_save(fig, folder / "params.png"))

    imp = importances(study)
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * max(1, len(imp))))
    if imp:
        names = list(imp)[::-1]
        ax.barh(names, [imp[k] for k in names])
        ax.set(xlabel="importance (fANOVA)" if len(imp) > 1 else "importance (the one varying parameter)")
    else:
        ax.text(0.5, 0.5, "too few finished trials for an importance", ha="center", va="center")
        ax.axis("off")
    paths.append(_save(fig, folder / "importance.png"))
    return paths


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return str(path)
