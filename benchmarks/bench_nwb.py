"""NWB export and import cost: ``prclab export REC OUT.nwb`` and reading the NWB file back, on a
synthetic recording written with the real writer (``--trials`` trials of ``--samples`` samples on
``--channels`` response and 13 stimulus channels, a smooth response, as the demo's shape), and the
file sizes side by side.  Prints wall seconds and channel-samples per second for each step (pynwb's
import, paid once per process, apart).

    python benchmarks/bench_nwb.py                                 # 100 trials x 1000 samples x 64
    python benchmarks/bench_nwb.py --trials 420 --channels 64      # the demo's trial count
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from prclab.protocols.export import export_nwb
from prclab.protocols.recording import RecordingWriter, read_recording


def write_recording(path: Path, trials: int, samples: int, channels: int) -> None:
    """A recording of smooth random responses (volts) to held random stimuli, 1 kHz."""
    rng = np.random.default_rng(0)
    with RecordingWriter(path, {"protocol_text": "", "rate_hz": 1000.0}, fsync=False) as w:
        for i in range(trials):
            stim = np.repeat(rng.uniform(-0.5, 0.5, (samples // 10, 13)), 10, axis=0)
            resp = np.cumsum(rng.normal(0, 1e-4, (samples, channels)), axis=0)
            w.append(i, stim, resp, i * samples / 1000.0 + np.arange(samples) / 1000.0, item=i,
                     item_id=str(i), label=str(i % 10), split="test" if i % 4 == 3 else "train",
                     repetition=0, stim_start=0, stim_stop=samples)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--channels", type=int, default=64)
    a = p.parse_args()
    n = a.trials * a.samples * a.channels
    with tempfile.TemporaryDirectory() as tmp:
        rec, nwb = Path(tmp) / "rec.h5", Path(tmp) / "rec.nwb"
        write_recording(rec, a.trials, a.samples, a.channels)
        t = time.perf_counter()
        import pynwb  # noqa: F401 - its import (hdmf, schemas) timed apart from the export
        import_s = time.perf_counter() - t
        t = time.perf_counter()
        export_nwb(rec, nwb)
        export_s = time.perf_counter() - t
        t = time.perf_counter()
        back = read_recording(nwb)
        read_s = time.perf_counter() - t
        assert len(back.trials) == a.trials and not back.problems
        print(f"recording          {a.trials} trials x {a.samples} samples x {a.channels} channels "
              f"({n / 1e6:.1f} M channel-samples)")
        print(f"sizes              recording {rec.stat().st_size / 1e6:.1f} MB, NWB {nwb.stat().st_size / 1e6:.1f} MB")
        print(f"import pynwb       {import_s:.2f} s (once per process)")
        print(f"export             {export_s:.2f} s ({n / export_s / 1e6:.1f} M channel-samples/s)")
        print(f"read back          {read_s:.2f} s ({n / read_s / 1e6:.1f} M channel-samples/s, checksums checked)")


if __name__ == "__main__":
    main()
