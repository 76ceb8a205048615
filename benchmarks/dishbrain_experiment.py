"""Issue 17's DishBrain experiment in silico: conditions x seeds x minutes on the simulated organoid,
DishBrain's metrics for T1 (rallies ending in the first 5 min) and T2 (those ending after minute 5),
with the tests, as one table (:func:`prclab.protocols.loop.t1_t2_stats`).

Each run plays ``protocols/examples/dishbrain_pong.toml`` (organoid with STDP, motor decoder, 10 ms
ticks) under one ``[feedback] mode`` and seed (``dishbrain_short.run_one``); its per-tick events and
figures are written to ``--results/MODE-SEED.json`` (the recording itself goes to a temporary folder:
~0.3 GB per 20 min), so an interrupted experiment resumes where it stopped and ``--table-only``
prints the table from what is there.  Runs are spread over ``--jobs`` processes (one BLAS thread each).

Metrics per run and window: hits per rally, % aces (rallies with no hit), % long rallies (> 3 hits).
Tests: per condition, T1 vs T2 hits per rally paired over seeds (Wilcoxon signed-rank, two-sided: with
5 seeds its smallest p is 0.0625) and over the pooled rallies (Mann-Whitney U, two-sided); between
conditions, each control's T2 per-seed means against the stimulus condition's (Mann-Whitney U).

Issue 17's full experiment (4 conditions x 5 seeds x 20 simulated minutes):

    python benchmarks/dishbrain_experiment.py --minutes 20 --seeds 0 1 2 3 4 --jobs 2 --results dishbrain20
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dishbrain_short import run_one  # noqa: E402

from prclab.protocols.loop import read_loop, t1_t2_stats  # noqa: E402

CONDITIONS = ("stimulus", "silent", "none", "rest")
#: T1 is the rallies ending in the first T1_S seconds of play, T2 the rest (DishBrain: minutes 6-20)
T1_S = 300.0
TICK_S = 0.01  # the example's [loop] tick_s


def one(job: tuple[str, int, float, str]) -> str:
    """Run condition ``mode`` with ``seed`` for ``minutes``; write its JSON to ``results``."""
    mode, seed, minutes, results = job
    from threadpoolctl import threadpool_limits
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(1):
        out = Path(tmp) / "r.h5"
        started = time.perf_counter()
        result = run_one(mode, seed, minutes, out)
        events = read_loop(out)["event"].astype(int)
    result["events_nonzero"] = {str(k): int(v) for k, v in zip(np.flatnonzero(events), events[events > 0])}
    result.update(mode=mode, seed=seed, minutes=minutes, ticks_total=len(events),
                  run_wall_s=time.perf_counter() - started)
    (Path(results) / f"{mode}-{seed}.json").write_text(json.dumps(result, default=float))
    return f"{mode} seed {seed}: {result['wall_s']:.0f} s wall, {result['speed_vs_real_time']:.2f}x real time"


def load(results: Path, t1_s: float = T1_S) -> dict:
    """``{(mode, seed): (t1_t2_stats, run result)}`` of the runs in ``results``, T1 the first ``t1_s``
    seconds."""
    runs = {}
    for path in sorted(results.glob("*.json")):
        r = json.loads(path.read_text())
        events = np.zeros(r["ticks_total"], int)
        for k, v in r["events_nonzero"].items():
            events[int(k)] = v
        runs[r["mode"], r["seed"]] = (t1_t2_stats(events, TICK_S, t1_s), r)
    return runs


def fmt(x: float, spec: str = "5.2f", scale: float = 1.0) -> str:
    return format(scale * x, spec) if np.isfinite(x) else " " * (int(spec.split(".")[0]) - 3) + "nan"


def _window(w: dict) -> str:
    return (f"{fmt(w['mean_rally_length'], '7.2f')} {fmt(w['aces_fraction'], '5.0f', 100)} "
            f"{fmt(w['long_rally_fraction'], '5.0f', 100)}")


def table(runs: dict) -> None:
    """Print the per-run rows, the per-condition summary and the tests."""
    print(f"{'condition':9s} {'seed':>4s} {'min':>4s} {'rallies':>7s} | {'T1 hits':>7s} {'aces%':>5s} "
          f"{'long%':>5s} | {'T2 hits':>7s} {'aces%':>5s} {'long%':>5s} | {'random':>6s} {'xRT':>5s} "
          f"{'p99 ms':>6s}")
    by_mode = {}
    for mode in CONDITIONS:
        for seed in sorted(s for m, s in runs if m == mode):
            w, r = runs[mode, seed]
            by_mode.setdefault(mode, []).append((w, r))
            print(f"{mode:9s} {seed:4d} {r['minutes']:4g} {w['T1']['rallies'] + w['T2']['rallies']:7d} | "
                  f"{_window(w['T1'])} | {_window(w['T2'])} | {fmt(r['random_paddle_rally_length'], '6.2f')} "
                  f"{r['speed_vs_real_time']:5.2f} {r['latency_p99_ms']:6.2f}")
    print()
    print(f"{'condition':9s} {'seeds':>5s} | {'T1 hits':>7s} {'T2 hits':>7s} {'T1 aces%':>8s} {'T2 aces%':>8s} "
          f"{'T1 long%':>8s} {'T2 long%':>8s} | {'Wilcoxon p':>10s} {'MWU p':>6s} | {'T2 vs stim p':>12s}")
    key = ("mean_rally_length", "aces_fraction", "long_rally_fraction")
    stim_t2 = [w["T2"]["mean_rally_length"] for w, _ in by_mode.get("stimulus", [])]
    for mode, rows in by_mode.items():
        t1 = np.array([[w["T1"][k] for k in key] for w, _ in rows])
        t2 = np.array([[w["T2"][k] for k in key] for w, _ in rows])
        with np.errstate(all="ignore"):
            m1 = [np.nanmean(c) if np.isfinite(c).any() else math.nan for c in t1.T]
            m2 = [np.nanmean(c) if np.isfinite(c).any() else math.nan for c in t2.T]
        pairs = np.isfinite(t1[:, 0]) & np.isfinite(t2[:, 0])
        diff = t2[pairs, 0] - t1[pairs, 0]
        wil = stats.wilcoxon(diff).pvalue if len(diff) >= 2 and np.any(diff != 0) else math.nan
        pooled1 = np.concatenate([w["T1"]["hits_per_rally"] for w, _ in rows])
        pooled2 = np.concatenate([w["T2"]["hits_per_rally"] for w, _ in rows])
        mwu = stats.mannwhitneyu(pooled1, pooled2).pvalue if len(pooled1) and len(pooled2) else math.nan
        here = t2[:, 0]
        vs = (stats.mannwhitneyu(here, stim_t2).pvalue if mode != "stimulus" and len(stim_t2) and
              np.isfinite(here).all() and np.isfinite(stim_t2).all() else math.nan)
        print(f"{mode:9s} {len(rows):5d} | {fmt(m1[0], '7.2f')} {fmt(m2[0], '7.2f')} {fmt(m1[1], '8.1f', 100)} "
              f"{fmt(m2[1], '8.1f', 100)} {fmt(m1[2], '8.1f', 100)} {fmt(m2[2], '8.1f', 100)} | "
              f"{fmt(wil, '10.3f')} {fmt(mwu, '6.3f')} | {fmt(vs, '12.3f')}")
    random = [r["random_paddle_rally_length"] for rows in by_mode.values() for _, r in rows]
    if random:
        print(f"random paddle (same games, no substrate): {np.nanmean(random):.2f} hits per rally "
              f"(mean of {len(random)} runs)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20.0, help="simulated minutes of play per run")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    ap.add_argument("--jobs", type=int, default=1, help="runs at once (processes)")
    ap.add_argument("--results", type=Path, default=Path("dishbrain_results"),
                    help="folder of per-run JSON results (kept: an interrupted experiment resumes)")
    ap.add_argument("--t1-minutes", type=float, default=T1_S / 60,
                    help="T1: the first minutes of play (DishBrain: 5 of 20; a shorter run: a quarter keeps "
                         "its proportion)")
    ap.add_argument("--table-only", action="store_true", help="print the table of the results there")
    args = ap.parse_args()
    args.results.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs; "
              f"{args.minutes:g} simulated min per run, {args.jobs} at once", flush=True)
        jobs = [(m, s, args.minutes, str(args.results)) for s in args.seeds for m in args.conditions
                if not (args.results / f"{m}-{s}.json").exists()]  # seed-major: a partial run covers every condition
        with ProcessPoolExecutor(args.jobs) as pool:
            for line in pool.map(one, jobs):
                print(line, flush=True)
    print(f"T1: rallies ending in the first {args.t1_minutes:g} min; T2: the rest")
    table(load(args.results, 60 * args.t1_minutes))


if __name__ == "__main__":
    main()
