"""Sweep engine throughput, scaling and per-trial overhead (issue 16, scope 6).

Features: ``--subset`` FSDD utterances (``../shared/data/fsdd/recordings``; for every speaker and digit
a third of its share from the official test takes 0-4, the rest from the training takes 5-49) as 13 MFCCs per 10 ms frame from
``protocols.encoders.MFCCEncoder`` (librosa), computed once and written as a labelled-sequence ``.npz``
in a temporary folder; the sweep plays those frames (the ``sequence`` encoder, one frame per step)
into an ESN, as a sweep on a feature set does.

1. **Throughput and scaling**: a ``--trials``-trial ESN sweep (TPE; spectral radius, input scaling,
   leak rate, encoder amplitude; ``--units`` units, one thread per trial, 3 folds of the training
   split) on a Dask ``LocalCluster`` of 1 and then 2 worker processes (one thread each), a fresh SQLite
   study each time.  Throughput is finished trials per second of the search (the cluster's start and
   the data's scatter excluded, both printed); scaling is the 2-worker throughput over the 1-worker one
   (goal >= 1.7x).  Every trial's objective time is the same work on both, so the ratio also shows the
   machine: with other processes on the cores, 2 workers cannot reach 2x.
2. **Engine overhead per trial**: ``--noop-trials`` trials of a no-op objective (returns at once) on
   1 worker: what asking, submitting, waiting, telling and storing cost per trial (goal <= 50 ms), with
   the study in SQLite (the default), in an Optuna journal file and in memory, and the same with the
   in-process executor (``workers=0``), which has no Dask.

Run from the repository root::

    python benchmarks/bench_sweep.py                       # 64 trials, 600 utterances, 300 units
    python benchmarks/bench_sweep.py --subset 300 --units 100   # short trials (0.2 s): the engine's share
    python benchmarks/bench_sweep.py --trials 16 --subset 120   # a quick look

The default trial (about 0.5 s of objective on one idle core) is still short beside a real sweep's
(the whole FSDD training split takes seconds per fold); with shorter ones the driver's work per trial
takes a larger share of the two cores the workers run on, and the scaling shows it.

Skips with a message (exit 0) when ``../shared/data`` is absent.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from prclab.experiments.sweep import run_sweep
from prclab.experiments.sweep_space import build_space
from prclab.protocols.datasets import load_wav_folder
from prclab.protocols.encoders import MFCCEncoder

ROOT = Path(__file__).resolve().parents[1]
FSDD = ROOT.parent / "shared" / "data" / "fsdd" / "recordings"


def feature_npz(subset: int, folder: Path) -> Path:
    """MFCC frames of ``subset`` FSDD utterances as a labelled-sequence .npz (official split kept)."""
    data = load_wav_folder(FSDD)
    per_pair = max(2, subset // 60)  # 6 speakers x 10 digits
    n_test = max(1, per_pair // 3)
    takes = np.array([int(i.rsplit("_", 1)[1].split(".")[0]) for i in data.ids])
    data = data.subset(np.flatnonzero((takes < n_test) | ((takes >= 5) & (takes < 5 + per_pair - n_test))))
    enc = MFCCEncoder(rate_hz=data.rate_hz)
    frames = [enc.features(s) for s in data.sequences]
    lengths = np.array([len(f) for f in frames])
    x = np.zeros((len(frames), lengths.max(), frames[0].shape[1]))
    for i, f in enumerate(frames):
        x[i, :len(f)] = f
    path = folder / "fsdd_mfcc.npz"
    np.savez(path, X=x, lengths=lengths, y=data.labels, split=data.split)
    return path


def space(data: Path, units: int, storage: str | None, study: str):
    return build_space(str(data), folds=3, study=study, storage=storage, groups={
        "substrate": {"units": units, "threads": 1,
                      "spectral_radius": {"low": 0.1, "high": 1.5, "log": True},
                      "input_scaling": {"low": 0.1, "high": 10.0, "log": True},
                      "leak_rate": {"low": 0.02, "high": 1.0, "log": True}},
        "encoder": {"samples_per_frame": 1, "amplitude": {"low": 0.2, "high": 1.0}},
        "readout": {"features": "mean+last"}}, where="bench")


def noop(train_data, folds, space, values) -> dict:
    """An objective that does nothing: the engine's own cost per trial."""
    return {"score": 0.0, "fold_scores": [], "features": [], "seconds": 0.0}


def timed(sp, trials: int, workers: int, objective=None) -> tuple[float, dict]:
    """Seconds of the search alone (engine start and scatter excluded) and the sweep's result, with
    ``driver_cpu_s``: CPU seconds this process (the driver, and a LocalCluster's scheduler) used."""
    start, cpu = time.perf_counter(), time.process_time()
    result = run_sweep(sp, trials, workers=workers, final=False, objective=objective)
    result["driver_cpu_s"] = time.process_time() - cpu
    return time.perf_counter() - start - result["engine"]["start_s"], result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=64)
    ap.add_argument("--subset", type=int, default=600, help="FSDD utterances (of 3000)")
    ap.add_argument("--units", type=int, default=300)
    ap.add_argument("--noop-trials", type=int, default=200)
    ap.add_argument("--overhead-only", action="store_true", help="only part 2 (no FSDD sweep)")
    args = ap.parse_args()
    if not FSDD.is_dir():
        print(f"skipped: {FSDD} not found (the shared data folder is absent)")
        return 0
    print(f"load average at start: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        data = feature_npz(args.subset, tmp)
        print(f"features           {args.subset} FSDD utterances -> MFCC frames in {time.perf_counter() - t:.1f} s")
        if not args.overhead_only:
            rates = {}
            for workers in (1, 2):
                sp = space(data, args.units, f"sqlite:///{tmp / f'w{workers}.db'}", f"w{workers}")
                seconds, result = timed(sp, args.trials, workers)
                rates[workers] = args.trials / seconds
                objective = _objective_seconds(sp)
                print(f"{workers} worker(s)        {args.trials} trials in {seconds:.1f} s: {rates[workers]:.2f} trials/s "
                      f"(cluster start + scatter {result['engine']['start_s']:.1f} s; objective {np.mean(objective):.2f} s "
                      f"mean, {np.median(objective):.2f} s median, {max(objective):.2f} s longest per trial; "
                      f"best CV accuracy {result['best']['cv_score']:.3f}; driver + scheduler CPU "
                      f"{1000 * result['driver_cpu_s'] / args.trials:.0f} ms per trial, start included)")
            print(f"scaling            {rates[2] / rates[1]:.2f}x on 2 workers (goal >= 1.7x); "
                  f"load average now {os.getloadavg()[0]:.2f}")
        stores = {"SQLite": f"sqlite:///{tmp / 'noop.db'}", "journal file": f"journal:{tmp / 'noop.log'}",
                  "in memory": None}
        for (workers, name), (store, url) in [(w, st) for w in ((1, "dask, 1 worker"), (0, "in process"))
                                              for st in stores.items()]:
            sp = space(data, args.units, url, f"noop{workers}")
            seconds, _ = timed(sp, args.noop_trials, workers, objective=noop)
            print(f"engine overhead    {1000 * seconds / args.noop_trials:.1f} ms per trial ({name}, {store} study, "
                  f"{args.noop_trials} no-op trials; goal <= 50 ms)")
    return 0


def _objective_seconds(sp) -> list[float]:
    import optuna

    study = optuna.load_study(study_name=sp.study, storage=sp.storage)
    return [t.user_attrs["cv"]["seconds"] for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))]


if __name__ == "__main__":
    sys.exit(main())
