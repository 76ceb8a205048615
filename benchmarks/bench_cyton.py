"""Cyton emulator cost: CPU time to generate and encode its stream, against the 250 Hz it must keep up with.

The emulator's serving thread turns each due batch of ADS samples into packets (substrate step, channel
inputs by CHnSET, noise, counts, aux bytes, Daisy averaging).  This measures that work alone, without a
pty or a client: ``--seconds`` of stream generated as fast as possible, in batches of ``--batch`` samples
(the thread's batch is 1-2 samples when it keeps up, bursts when it was late), for the 8-channel board
in default mode, in time-stamp mode, and with a Daisy.  The figure printed is the real-time factor:
seconds of stream per CPU second (above 1 means it keeps up with one core; the thread shares it).

    python benchmarks/bench_cyton.py                 # 20 s of stream per configuration, batches of 1 and 25
    python benchmarks/bench_cyton.py --seconds 5 --batch 1
"""

from __future__ import annotations

import argparse
import time

from prclab.hardware_sims.cyton import RATE_HZ, CytonEmulator
from prclab.reservoir import make_substrate


def realtime_factor(emu: CytonEmulator, seconds: float, batch: int) -> float:
    """Seconds of stream generated per CPU second, ``batch`` samples per call."""
    emu.firmware.feed(b"b", 0.0)
    emu._follow_stream(0.0)
    n = int(seconds * RATE_HZ)
    cpu = time.process_time()
    for _ in range(0, n, batch):
        emu._t0 = time.monotonic() - (emu._generated + batch) / RATE_HZ  # exactly ``batch`` samples due
        emu._due_packets()
    return seconds / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 25])
    args = parser.parse_args()
    for name, daisy, setup in [("cyton default", False, b""), ("cyton time stamps", False, b"<"),
                               ("cyton+daisy", True, b"")]:
        for batch in args.batch:
            emu = CytonEmulator(make_substrate("esn", 2, units=20, dt=1 / RATE_HZ), seed=0, daisy=daisy)
            emu.firmware.feed(setup, 0.0)
            factor = realtime_factor(emu, args.seconds, batch)
            print(f"{name:18s} batch {batch:3d}: {factor:8.1f} x real time "
                  f"({args.seconds:g} s of stream, {int(args.seconds * RATE_HZ)} samples)")


if __name__ == "__main__":
    main()
