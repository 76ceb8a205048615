"""The closed loop's own latency per tick (issue 17, item 7): response window in hand -> stimulus block
handed to the device, p50 / p99 / max, at 100 Hz and 1 kHz ticks with 64 response channels, on the
in-process simulation and through the NI-DAQmx emulator with the real ``nidaqmx`` client (gRPC).

Every setting runs ``run_loop`` (:mod:`prclab.protocols.loop`) on Pong with DishBrain's place + rate
code and stimulus feedback, an RLS decoder on the 64 channels' activities trained every tick (the
heaviest shipped decoder), at ``--rate`` samples per second, the lead time half a tick.  Latency is the
loop's own (``latency_s`` per tick: decode, learn, environment, sensory code, feedback, ramp, safety
check); ``cpu``: the CPU time the loop's thread spent in that span (``time.thread_time``), so a wall
latency far above it is waiting for a core on a loaded machine.  The ``write`` columns time the
device's ``write`` call that follows, per tick: on the NI emulator it is the nidaqmx client handing the
block over gRPC (what "stimulus written" adds on a real card's software path); on the simulation it
computes the substrate's response (simulation time, not loop latency).  ``overruns``: ticks whose
computation exceeded the lead time.  ``--profile`` prints the loop's own functions by cumulative time
(the tick's stages: sensory code, decoder, learning, blanking, environment, safety check).

    python benchmarks/bench_loop.py                      # all four settings, 2000 ticks each
    python benchmarks/bench_loop.py --where sim --profile  # where the in-process tick spends its time
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import tempfile
import time
from pathlib import Path

import numpy as np

from prclab.drivers import DeviceRequest
from prclab.experiments.envs import make_decoder, make_env
from prclab.protocols.loop import read_loop, run_loop
from prclab.protocols.protocol import parse_protocol
from prclab.protocols.rig import make_rig

PROTOCOL = """
[protocol]
name = "bench-loop"
sample_rate_hz = {rate}
seed = 0
[device]
spec = "{spec}"
[substrate]
name = "esn"
params = {{ units = {channels} }}
[stimulus]
electrodes = 8
low_V = -0.5
high_V = 0.5
[loop]
tick_s = {tick}
lead_s = {lead}
duration_s = {duration}
overrun = "{overrun}"
decoder = "rls"
[environment]
name = "pong"
[feedback]
mode = "stimulus"
"""

SPECS = {"sim": "sim:esn", "nidaq": "nidaq:Dev1?ai={channels}"}


def setting(where: str, tick_hz: float, ticks: int, rate: float, channels: int):
    """The protocol and device (unopened) of one setting."""
    tick = 1.0 / tick_hz
    p = parse_protocol(PROTOCOL.format(rate=rate, spec=SPECS[where].format(channels=channels),
                                       channels=channels, tick=tick, lead=tick / 2, duration=ticks * tick,
                                       overrun="count" if where == "sim" else "skip"))
    s = p["stimulus"]
    device = make_rig(p["device"]["spec"], DeviceRequest(
        n_stimulus=s["electrodes"], rate_hz=p.rate_hz, stimulus_range_V=(s["low_V"], s["high_V"]),
        substrate=p.substrate_for(p["device"]["spec"]), substrate_params=p["substrate"]["params"],
        emulate=where != "sim", seed=0))
    return p, device


def timed_device(device) -> dict:
    """Wrap ``device.read`` / ``device.write`` to time, per tick, the ``write`` call (wall s) and the
    CPU time the loop's thread spends from a read's return to the next write (the span its latency
    measures): wall latency far above that CPU time is time spent waiting for a core, not computing."""
    times = {"write_s": [], "cpu_s": []}
    read, write = device.read, device.write
    mark = [None]

    def timed_read(n):
        out = read(n)
        mark[0] = time.thread_time()
        return out

    def timed_write(block):
        if mark[0] is not None:
            times["cpu_s"].append(time.thread_time() - mark[0])
            mark[0] = None
        t = time.perf_counter()
        write(block)
        times["write_s"].append(time.perf_counter() - t)
    device.read, device.write = timed_read, timed_write
    return times


def bench(where: str, tick_hz: float, ticks: int, rate: float, channels: int, profile: bool) -> dict:
    p, device = setting(where, tick_hz, ticks, rate, channels)
    times = timed_device(device)
    prof = cProfile.Profile() if profile else None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.h5"
        if prof:
            prof.enable()
        result = run_loop(p, device, out, make_env(p), make_decoder(p, len(device.channels.response)))
        if prof:
            prof.disable()
        rec = read_loop(out)  # the figures from the recording read back
    lat = rec["latency_s"] * 1e3
    w = np.asarray(times["write_s"][1:]) * 1e3  # the first write is the lead-in
    cpu = np.asarray(times["cpu_s"]) * 1e3
    row = {"where": where, "tick_hz": tick_hz, "ticks": result["ticks"], "channels": len(device.channels.response),
           "p50": np.percentile(lat, 50), "p99": np.percentile(lat, 99), "max": lat.max(),
           "cpu_p50": np.percentile(cpu, 50), "cpu_p99": np.percentile(cpu, 99),
           "write_p50": np.percentile(w, 50), "write_p99": np.percentile(w, 99),
           "overruns": result["overruns"], "speed": result["speed_vs_real_time"]}
    if prof:
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(
            r"loop_codes|envs|safety|online|loop\.py", 25)  # the loop's own stages
        row["profile"] = text.getvalue()
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--where", nargs="+", default=["sim", "nidaq"], choices=list(SPECS))
    ap.add_argument("--tick-hz", type=float, nargs="+", default=[100.0, 1000.0])
    ap.add_argument("--ticks", type=int, default=2000, help="ticks per setting")
    ap.add_argument("--rate", type=float, default=10_000.0, help="samples per second")
    ap.add_argument("--channels", type=int, default=64, help="response channels")
    ap.add_argument("--profile", action="store_true", help="print each setting's cProfile (by own time)")
    args = ap.parse_args()
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs; "
          f"{args.ticks} ticks per setting at {args.rate:g} samples/s, RLS decoder")
    print(f"{'device':6s} {'tick':>7s} {'chans':>5s} {'ticks':>5s} | {'p50 ms':>7s} {'p99 ms':>7s} {'max ms':>7s} | "
          f"{'cpu p50':>7s} {'cpu p99':>7s} | {'write p50':>9s} {'write p99':>9s} | {'overruns':>8s} {'x real':>6s}")
    for where in args.where:
        for hz in args.tick_hz:
            r = bench(where, hz, args.ticks, args.rate, args.channels, args.profile)
            print(f"{where:6s} {hz:5g}Hz {r['channels']:5d} {r['ticks']:5d} | {r['p50']:7.3f} {r['p99']:7.3f} "
                  f"{r['max']:7.2f} | {r['cpu_p50']:7.3f} {r['cpu_p99']:7.3f} | {r['write_p50']:9.3f} "
                  f"{r['write_p99']:9.3f} | {r['overruns']:8d} "
                  f"{r['speed']:6.2f}", flush=True)
            if args.profile:
                print(r["profile"])


if __name__ == "__main__":
    main()
