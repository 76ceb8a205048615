"""One online RLS update: prclab's RLSReadout.partial_fit (one tick, 500 and 100 features) beside
ReservoirPy's RLS.partial_fit (one sample, 100 units; ReservoirPy is in the ``bench`` extra).

Prints the median and p99 time per update over ``--repeats`` updates after a warm-up, with BLAS at one
thread (as the closed loop runs it) and at the library's default, and the machine load.  Goal from
issue 17: <= 0.2 ms for 500 features (ReservoirPy's RLS: 0.22 ms for 100 units, ../shared notes).

    python benchmarks/bench_rls.py [--repeats 2000]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from threadpoolctl import threadpool_limits

from prclab.readouts.online import LMSReadout, RLSReadout


def per_update_ms(step, repeats: int) -> tuple[float, float]:
    """(median, p99) milliseconds of ``step()`` over ``repeats`` calls after 50 warm-up calls."""
    for _ in range(50):
        step()
    times = np.empty(repeats)
    for i in range(repeats):
        t = time.perf_counter()
        step()
        times[i] = time.perf_counter() - t
    return float(np.median(times) * 1e3), float(np.percentile(times, 99) * 1e3)


def prclab_step(model, n_features: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X, y = rng.normal(size=(64, n_features)), rng.normal(size=(64, 1))
    model.partial_fit(X[:1], y[:1])
    i = iter(range(1 << 62))
    return lambda: (lambda k: model.partial_fit(X[k:k + 1], y[k:k + 1]))(next(i) % 64)


def reservoirpy_step(units: int, seed: int = 0):
    """ReservoirPy 0.4's RLS node on ``units`` features, one sample per partial_fit; None if absent."""
    try:
        from reservoirpy.nodes import RLS
    except ImportError:
        return None
    rng = np.random.default_rng(seed)
    X, y = rng.normal(size=(64, units)), rng.normal(size=(64, 1))
    node = RLS(alpha=1e-2, forgetting=0.99)
    node.partial_fit(X[:1], y[:1])
    i = iter(range(1 << 62))
    return lambda: (lambda k: node.partial_fit(X[k:k + 1], y[k:k + 1]))(next(i) % 64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2000)
    args = ap.parse_args()
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs")
    cases = [("prclab RLSReadout", 500, lambda: prclab_step(RLSReadout(forgetting=0.99), 500)),
             ("prclab RLSReadout", 100, lambda: prclab_step(RLSReadout(forgetting=0.99), 100)),
             ("prclab LMSReadout", 500, lambda: prclab_step(LMSReadout(), 500)),
             ("ReservoirPy RLS", 100, lambda: reservoirpy_step(100)),
             ("ReservoirPy RLS", 500, lambda: reservoirpy_step(500))]
    print(f"{'readout':20s} {'features':>8s} {'BLAS threads':>12s} {'median ms':>10s} {'p99 ms':>8s}")
    for threads in (1, None):
        with threadpool_limits(threads, "blas"):
            for name, n, make in cases:
                step = make()
                if step is None:
                    print(f"{name:20s} {n:8d} {'':>12s}  not installed (pip install reservoirpy)")
                    continue
                med, p99 = per_update_ms(step, args.repeats)
                print(f"{name:20s} {n:8d} {threads or 'default':>12} {med:10.3f} {p99:8.3f}")
    print("goal: <= 0.2 ms per update for 500 features (issue 17)")


if __name__ == "__main__":
    main()
