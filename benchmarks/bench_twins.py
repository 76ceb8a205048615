"""Twin benchmarks: ``twin fit`` time on the demo recording, and twin run speed against the model it imitates.

    python benchmarks/bench_twins.py [--workdir DIR] [--model linear] [--skip-demo]

1. Records ``protocols/examples/spoken_digits_demo.toml`` with ``prclab run`` (420 trials x 64 channels;
   kept in DIR and reused) and times ``prclab twin fit`` on it (acceptance: <= 60 s on 2 cores).
2. For potato and hydrogel: records a small protocol, fits a twin of ``--model``, and times the same
   stimulus batch (16 trials x 2 s) through the model and through the twin substrate (``twin:PATH``,
   noise on; the fastest of 3 runs each), in one run: prints seconds and the ratio model / twin (>= 1:
   the twin is at least as fast).
   The organoid (spike counts) the same way with its ``spiking`` twin, whatever ``--model`` says.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SMALL = """[protocol]
name = "bench-{sub}"
sample_rate_hz = 1000.0
seed = 1
[device]
spec = "sim:{sub}"
[substrate]
params = {{ n_outputs = 8 }}
[stimulus]
electrodes = 4
low_V = -0.5
high_V = 0.5
[task]
dataset = "builtin:fsdd-subset"
max_items = 40
[encoder]
kind = "mfcc"
n_mfcc = 4
samples_per_frame = 10
[timing]
washout_s = 0.05
rest_s = 0.1
"""


def prclab(*args: str) -> float:
    """Run ``prclab ARGS`` in a subprocess; seconds of wall time (raises on a non-zero exit)."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "prclab.cli", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


REPEATS = 3   # each batch timed this many times, the fastest kept (a 0.1 s run varies by 20 % from one to the next)


def speed(sub: str, twin: Path) -> tuple[float, float]:
    """Seconds for one 16 x 2000 x n_in batch through ``sub`` and through ``twin:PATH`` (same stimulus; the
    fastest of ``REPEATS`` runs of each, from ``reset(0)``)."""
    from prclab.reservoir import make_substrate
    from prclab.reservoir.twins.file import read_twin

    twin_sub = make_substrate(f"twin:{twin}", read_twin(twin).n_inputs)
    model = make_substrate(sub, twin_sub.n_inputs, n_outputs=twin_sub.n_outputs)
    u = np.random.default_rng(0).uniform(-0.5, 0.5, (16, 2000, twin_sub.n_inputs))
    out = []
    for s in (model, twin_sub):
        times = []
        for _ in range(REPEATS):
            s.reset(0)
            t = time.perf_counter()
            s.run(u)
            times.append(time.perf_counter() - t)
        out.append(min(times))
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/bench_twins")
    parser.add_argument("--model", default="linear")
    parser.add_argument("--skip-demo", action="store_true")
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    if not args.skip_demo:
        demo = work / "demo.h5"
        if not demo.exists():
            print(f"recording the demo: {prclab('run', str(ROOT / 'protocols/examples/spoken_digits_demo.toml'), '--out', str(demo)):.1f} s")
        out = work / f"demo_{args.model}_{time.time_ns()}.h5"
        print(f"twin fit --model {args.model} on the demo (420 trials x 64 channels): "
              f"{prclab('twin', 'fit', str(demo), '--out', str(out), '--model', args.model):.1f} s (acceptance <= 60 s)")
    for sub in ("potato", "hydrogel", "organoid"):
        family = "spiking" if sub == "organoid" else args.model   # a spiking substrate records counts
        rec, twin = work / f"{sub}.h5", work / f"{sub}_{family}_{time.time_ns()}.h5"
        if not rec.exists():
            (work / f"{sub}.toml").write_text(SMALL.format(sub=sub))
            prclab("run", str(work / f"{sub}.toml"), "--out", str(rec))
        prclab("twin", "fit", str(rec), "--out", str(twin), "--model", family)
        t_model, t_twin = speed(sub, twin)
        print(f"{sub}: model {t_model:.3f} s, {family} twin {t_twin:.3f} s for 16 x 2000 samples; "
              f"ratio model/twin {t_model / t_twin:.2f}")


if __name__ == "__main__":
    main()
