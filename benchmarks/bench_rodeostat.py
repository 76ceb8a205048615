"""Rodeostat emulator timing through IO Rodeo's official client: prints measured figures, asserts nothing.

- wall time of a 2 s cyclic voltammetry (10 ms samples, potato substrate) and how late each sample
  arrives relative to its firmware time ``t`` (offset of the first sample removed);
- command round trips per second (``getVolt``) over the pty.

Run: ``python benchmarks/bench_rodeostat.py`` (prints the machine's load average too).
"""

from __future__ import annotations

import os
import time

import numpy as np
import serial
from potentiostat import Potentiostat

from prclab.hardware_sims.rodeostat import RodeostatEmulator
from prclab.reservoir import make_substrate


def main() -> None:
    substrate = make_substrate("potato", 1, dt=1e-3, gain_V=1.0)
    with RodeostatEmulator(substrate, seed=1) as emu:
        dev = Potentiostat(emu.port)
        dev.set_sample_period(10)
        arrivals = []
        start = time.monotonic()
        t, _, _ = dev.run_test("cyclic", param={"amplitude": 0.5, "period": 1000, "numCycles": 2},
                               display=None, on_data=lambda c, tt, v, i: arrivals.append((time.monotonic(), tt)))
        wall = time.monotonic() - start
        dev.close()
    got = np.array(arrivals)
    late_ms = 1e3 * ((got[:, 0] - got[0, 0]) - (got[:, 1] - got[0, 1]))
    print(f"2 s CV, {len(t)} samples: wall {wall:.3f} s; sample arrival minus its t (first removed): "
          f"median {np.median(late_ms):+.2f} ms, 99th pct {np.percentile(late_ms, 99):+.2f} ms, "
          f"max {late_ms.max():+.2f} ms")
    with RodeostatEmulator(substrate, seed=1) as emu, serial.Serial(emu.port, 115200, timeout=2) as port:
        n, start = 0, time.monotonic()
        while time.monotonic() - start < 2.0:
            port.write(b'{"command":"getVolt"}\n')
            port.readline()
            n += 1
        print(f"getVolt round trips: {n / (time.monotonic() - start):.0f} per s")
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
