"""Runner throughput end to end against a null substrate: encode, safety, device, record.

A null substrate returns zeros at no cost, so what is measured is the software: compiling the trials
(encoder, ramp, compile-time safety validation), the runner (safety monitor on every block, the Device
write/read path of a SimDevice, trial alignment) and the recording (HDF5 write, sha256, flush and fsync
per trial).  Figure: channel-samples per second = samples x (stimulus + response channels) / seconds.
The goal is >= 20 million per second (a 1024-channel MEA at 20 kHz).

    python benchmarks/bench_runner.py                      # 16 stimulus + 1024 response channels, 20 kHz,
                                                           # compression gzip, then none
    python benchmarks/bench_runner.py --response 64 --trials 40
    python benchmarks/bench_runner.py --response 64 --trials 40 --resume   # bytes a resume reads
    python benchmarks/bench_runner.py --compression lzf    # [recording] compression: gzip, lzf, none, or
                                                           # both (the default: gzip, then none)

The recording is stored as the protocol's ``[recording]`` says (a simulated substrate: float32 responses;
``--dtype``), so the figure includes compressing every trial.

``--resume`` stops the run (a subscriber raising) after 90% of its trials and resumes it twice, from two
copies of the stopped recording: with every earlier trial checked (what ``prclab run --resume`` does) and
with only the last one (``verify=False``); bytes read are this process's ``rchar`` (``/proc/self/io``:
read(2) and pread(2) calls, page cache or not).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from prclab.drivers import SimDevice
from prclab.protocols.protocol import load_protocol
from prclab.protocols.runner import Subscriber, prepare, run_protocol


class NullSubstrate:
    """A Substrate whose response is zeros: a view of one preallocated C-ordered zero buffer, so no
    work per sample (a broadcast view would not do: its zero strides make numpy concatenate it into
    Fortran order, and every later step would pay for a reordering copy no real substrate causes).
    ``noise_V`` > 0: the buffer holds white noise of that RMS instead, drawn once (still no work per
    sample), so the recording compresses data as incompressible as a measured response's low bits."""

    def __init__(self, n_inputs: int, n_outputs: int, dt: float, noise_V: float = 0.0):
        self.n_inputs, self.n_outputs, self.dt, self.noise_V = n_inputs, n_outputs, dt, noise_V
        self._zero = np.zeros((1, 0, n_outputs))

    def reset(self, seed=None) -> None:
        pass

    def run(self, u: np.ndarray) -> np.ndarray:
        batch, steps = u.shape[:2]
        if self._zero.shape[0] < batch or self._zero.shape[1] < steps:
            shape = (batch, steps, self.n_outputs)
            self._zero = np.random.default_rng(0).normal(0, self.noise_V, shape) if self.noise_V else \
                np.zeros(shape)
        return self._zero[:batch, :steps]

    @property
    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass

    def describe(self) -> dict:
        return {"model": "null", "n_outputs": self.n_outputs}


class _Stop(Exception):
    pass


class StopAfter(Subscriber):
    """Stops the run once ``n`` trials are recorded."""

    def __init__(self, n: int):
        self.n = n

    def trial_end(self, *, trial, **_) -> None:
        if trial.index + 1 >= self.n:
            raise _Stop


def bytes_read() -> int:
    """This process's bytes read so far through read(2)/pread(2) (``rchar`` in ``/proc/self/io``)."""
    with open("/proc/self/io") as fh:
        return int(dict(line.split(": ") for line in fh.read().splitlines())["rchar"])


def measure_resume(protocol, device, prepared, rec: Path) -> None:
    """Stop a run after 90% of its trials, then resume copies of it, printing bytes read and seconds."""
    done = max(1, len(prepared[2]) * 9 // 10)
    try:
        run_protocol(protocol, device, rec, prepared=prepared, subscribers=[StopAfter(done)])
    except _Stop:
        pass
    size = rec.stat().st_size
    print(f"resume after {done} of {len(prepared[2])} trials, recording {size / 1e6:.0f} MB:")
    for verify in (True, False):
        copy = rec.with_name(f"resume-{verify}.h5")
        shutil.copyfile(rec, copy)
        r0, t0 = bytes_read(), time.perf_counter()
        run_protocol(protocol, device, copy, prepared=prepared, resume=True, verify=verify)
        what = "every earlier trial checked" if verify else "the last trial checked   "
        print(f"  {what} (verify={verify!s:5}): read {(bytes_read() - r0) / 1e6:7.1f} MB, "
              f"{time.perf_counter() - t0:5.2f} s (resume and the last {len(prepared[2]) - done} trials)")
        copy.unlink()


PROTOCOL = """
[protocol]
name = "bench"
sample_rate_hz = {rate}
seed = 0
order = "random"
block_samples = {block}

[substrate]
name = "esn"

[stimulus]
electrodes = {stim}
low_V = -0.5
high_V = 0.5

[task]
dataset = "bench.npz"

[encoder]
samples_per_frame = {spf}

[timing]
washout_s = 0.0
rest_s = 0.0

[recording]
dtype = "{dtype}"
resolution = {resolution}
compression = "{compression}"

[safety]
material = "platinum"
impedance_ohm = 1e4
max_current_A = 1e-4
max_slew_V_per_s = 1e5
electrode_area_cm2 = 1.0
ramp_s = 0.1
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stimulus", type=int, default=16, help="stimulus channels")
    ap.add_argument("--response", type=int, default=1024, help="response channels")
    ap.add_argument("--rate", type=float, default=20000.0, help="sample rate, hertz")
    ap.add_argument("--trial-s", type=float, default=1.0, help="seconds per trial")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--block", type=int, default=2000, help="samples per device block")
    ap.add_argument("--dir", help="where the recording is written (default: a temporary folder)")
    ap.add_argument("--resume", action="store_true", help="measure the bytes a resume reads instead")
    ap.add_argument("--noise", type=float, default=0.0, help="response noise, volts RMS (0: zeros)")
    ap.add_argument("--compression", default="both", choices=("gzip", "lzf", "none", "both"),
                    help="[recording] compression; both: a run with gzip, then one with none")
    ap.add_argument("--dtype", default="auto", choices=("auto", "float32", "float64", "counts"),
                    help="[recording] dtype (auto: float32, the substrate is simulated)")
    ap.add_argument("--resolution", type=float, default=1e-4, help="[recording] resolution with counts, V")
    args = ap.parse_args()
    for compression in ("gzip", "none") if args.compression == "both" else (args.compression,):
        bench(args, compression)


def bench(args, compression: str) -> None:
    """One run (or, with ``--resume``, the resume measurement) with ``[recording] compression``."""
    spf = 100
    frames = int(args.trial_s * args.rate) // spf
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(0)
        n = args.trials
        np.savez(tmp / "bench.npz", X=rng.normal(size=(n, frames, args.stimulus)),
                 lengths=np.full(n, frames), y=np.array(["a", "b"])[np.arange(n) % 2],
                 split=np.where(np.arange(n) < n * 3 // 4, "train", "test"))
        (tmp / "bench.toml").write_text(PROTOCOL.format(rate=args.rate, block=args.block, stim=args.stimulus,
                                                        spf=spf, dtype=args.dtype, resolution=args.resolution,
                                                        compression=compression))
        protocol = load_protocol(tmp / "bench.toml")
        device = SimDevice(NullSubstrate(args.stimulus, args.response, 1 / args.rate, args.noise), args.rate,
                           stimulus_range_V=(-0.5, 0.5))
        if args.resume:
            measure_resume(protocol, device, prepare(protocol, device), tmp / "rec.h5")
            return
        t0 = time.perf_counter()
        prepared = prepare(protocol, device)
        t1 = time.perf_counter()
        run_protocol(protocol, device, tmp / "rec.h5", prepared=prepared)
        t2 = time.perf_counter()
        samples = sum(len(t.stimulus) for t in prepared[2])
        size = (tmp / "rec.h5").stat().st_size
    ch = args.stimulus + args.response
    total = samples * ch
    print(f"runner, null substrate: {n} trials x {args.trial_s:g} s at {args.rate:g} Hz, "
          f"{args.stimulus} stimulus + {args.response} response channels, blocks of {args.block}, "
          f"responses {args.dtype}, compression {compression}, noise {args.noise:g} V")
    print(f"  compile (encode + ramp + safety validation) {t1 - t0:6.2f} s")
    print(f"  run (safety monitor, device, record + fsync) {t2 - t1:6.2f} s   recording {size / 1e6:.0f} MB")
    print(f"  end to end: {total / (t2 - t0) / 1e6:.1f} million channel-samples/s "
          f"({samples / (t2 - t0) / 1e3:.0f} k samples/s x {ch} channels; goal >= 20 million)")


if __name__ == "__main__":
    main()
