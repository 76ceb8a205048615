"""Simulation speed of the physical substrates against real time.

Each model runs 2 s (``--seconds``) of random 0.5 V pulses (held 10 ms) sampled at 1 kHz, from rest,
once for a single trial (what a live emulator streams) and once for a batch of trials (what replay and
training use).  One short run first compiles what a model compiles (the potato's numba kernel) and is not
timed, as an emulator would do it once at start.
Printed per model and batch: simulated samples per wall-clock second per trial (steps/s), the real-time
factor, i.e. simulated seconds of all trials per wall-clock second (best of ``--repeats``), and the
issue's target for it.  Wall-clock timings depend on the machine's load, printed first (load average
over 1 minute and the CPUs): on a loaded machine re-measure before comparing with the target.

    python benchmarks/bench_substrates.py
    python benchmarks/bench_substrates.py --seconds 2 --batch 1 16 --models potato
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from prclab.reservoir import HydrogelModel, OrganoidModel, PotatoModel

MODELS = {
    "potato 16 in + 16 out, default tissue (8 Debye branches)": lambda: PotatoModel(n_inputs=16, n_outputs=16),
    "hydrogel 16 in + 16 out, 24x24 lattice": lambda: HydrogelModel(n_inputs=16, n_outputs=16),
    "organoid 16 in + 16 out, 1000 neurons": lambda: OrganoidModel(n_inputs=16, n_outputs=16),
}
#: real-time factors the issue asks for (issue 12, scope 6), by the model's first word
TARGETS = {"potato": 100.0, "organoid": 10.0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="simulated seconds per trial")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=[name.split()[0] for name in MODELS],
                    help="models to run, by first word (potato, hydrogel, organoid)")
    args = ap.parse_args(argv)
    print(f"load average (1 min) {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'model':<58} {'batch':>5} {'steps/s per trial':>18} {'x real time':>12} {'target':>14}")
    for name, make in MODELS.items():
        kind = name.split()[0]
        if kind not in args.models:
            continue
        model = make()
        steps = int(round(args.seconds / model.dt))
        for batch in args.batch:
            rng = np.random.default_rng(0)
            u = rng.uniform(-0.5, 0.5, (batch, steps // 10 + 1, model.n_inputs)).repeat(10, axis=1)
            u = np.ascontiguousarray(u[:, :steps])
            model.reset(0)
            model.run(u[:, :10])                                   # compile / warm up, not timed
            best = np.inf
            for rep in range(args.repeats):
                model.reset(rep)
                start = time.perf_counter()
                model.run(u)
                best = min(best, time.perf_counter() - start)
            rate = steps / best
            factor = rate * batch * model.dt
            target = TARGETS.get(kind)
            verdict = "-" if target is None else f">={target:g} {'met' if factor >= target else 'NOT met'}"
            print(f"{name:<58} {batch:>5} {rate:>18.0f} {factor:>12.1f} {verdict:>14}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
