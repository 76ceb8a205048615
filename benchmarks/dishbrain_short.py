"""A short DishBrain-style run on the simulated organoid: conditions x seeds, DishBrain's metrics.

Plays ``protocols/examples/dishbrain_pong.toml`` (organoid with STDP, motor decoder) for
``--minutes`` simulated minutes per run, under each ``--conditions`` ([feedback] mode) and ``--seeds``,
and prints per run: rallies, hits per rally, % aces, % long rallies (> 3 hits), the random paddle's
hits per rally on the same game, and the loop's figures (wall time, latency p50 / p99).  A few minutes
show whether the toolkit runs the experiment; issue 17's test (>= 5 seeds x 20 min, T1 vs T2, with the
statistics) is ``benchmarks/dishbrain_experiment.py``, which runs each run through :func:`run_one`.

    python benchmarks/dishbrain_short.py --minutes 2 --seeds 0 1 --conditions stimulus silent
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from pathlib import Path

from prclab.drivers import DeviceRequest
from prclab.experiments.envs import make_decoder, make_env
from prclab.protocols.loop import run_loop
from prclab.protocols.protocol import parse_protocol
from prclab.protocols.rig import make_rig

EXAMPLE = Path(__file__).resolve().parent.parent / "protocols" / "examples" / "dishbrain_pong.toml"


def protocol_for(mode: str, seed: int, minutes: float):
    text = EXAMPLE.read_text()
    text = re.sub(r"(?m)^seed = \d+", f"seed = {seed}", text)
    text = re.sub(r"(?m)^duration_s = [0-9.]+", f"duration_s = {60.0 * minutes}", text)
    text = re.sub(r'(?m)^mode = "\w+"', f'mode = "{mode}"', text)
    return parse_protocol(text, EXAMPLE)


def run_one(mode: str, seed: int, minutes: float, out: Path) -> dict:
    p = protocol_for(mode, seed, minutes)
    s = p["stimulus"]
    device = make_rig(p["device"]["spec"], DeviceRequest(
        n_stimulus=s["electrodes"], rate_hz=p.rate_hz, stimulus_range_V=(s["low_V"], s["high_V"]),
        substrate=p.substrate_for(p["device"]["spec"]), substrate_params=p["substrate"]["params"], seed=seed))
    return run_loop(p, device, out, make_env(p), make_decoder(p, len(device.channels.response)),
                    baseline_env=make_env(p))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--conditions", nargs="+", default=["stimulus", "silent"])
    args = ap.parse_args()
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs; "
          f"{args.minutes:g} simulated min per run")
    print(f"{'condition':10s} {'seed':>4s} {'rallies':>7s} {'hits/rally':>10s} {'% aces':>7s} {'% long':>7s} "
          f"{'random':>7s} {'wall s':>7s} {'p50 ms':>7s} {'p99 ms':>7s}")
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.conditions:
            for seed in args.seeds:
                r = run_one(mode, seed, args.minutes, Path(tmp) / f"{mode}-{seed}.h5")
                print(f"{mode:10s} {seed:4d} {r['rallies']:7d} {r['mean_rally_length']:10.2f} "
                      f"{100 * r['aces_fraction']:7.1f} {100 * r['long_rally_fraction']:7.1f} "
                      f"{r['random_paddle_rally_length']:7.2f} {r['wall_s']:7.1f} {r['latency_p50_ms']:7.2f} "
                      f"{r['latency_p99_ms']:7.2f}", flush=True)


if __name__ == "__main__":
    main()
