"""Echo-state core speed on the full FSDD feature set, side by side with ReservoirPy.

Features: every WAV in ``../shared/data/fsdd/recordings`` (3,000 utterances, 8 kHz) read with soundfile,
13 MFCCs per 10 ms frame (25 ms window) from ``protocols.encoders.MFCCEncoder`` (librosa), as tasks use.  Both reservoirs get the same
frames, the same size, leak rate 0.3 and spectral radius 0.9, and run every utterance from rest:

- ReservoirPy 0.4: ``Reservoir(units, lr=0.3, sr=0.9).run(list_of_utterances)`` (its own batching of a
  list: one utterance after another, sparse float64 weights, 10 % connectivity by default);
- ours: ``reservoir.run_sequences(esn, utterances, batch_size)``, what ``prclab task`` runs: utterances
  sorted by decreasing length, cut into ``reservoir.length_buckets`` of at most ``batch_size`` whose
  shortest member is at least half their longest, each bucket zero-padded and run by one
  ``EchoStateCore.run(u, lengths)`` call, which steps each row only for its own length (no compute on
  padding; the bound on padding keeps the output buffers small), each trial's noise from its own
  stream.  Once per ``--batch-size`` (default 64, what tasks use, and 512).

Steps/s counts real frames (padding excluded) over wall time; each contender's best of ``--repeats``
passes is reported, the passes of all contenders taking turns.  Run from the repository root::

    python benchmarks/bench_esn.py                 # 500 and 2000 units, batches of 64 and 512
    python benchmarks/bench_esn.py --units 500 --subset 300 --repeats 1   # a quick look

Skips with a message (exit 0) when ``../shared/data`` is absent or ReservoirPy is not installed (then
only our figures are printed).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from prclab.reservoir import EchoStateNetwork, run_sequences

ROOT = Path(__file__).resolve().parents[1]
FSDD = ROOT.parent / "shared" / "data" / "fsdd" / "recordings"


def load_features(subset: int | None) -> list[np.ndarray]:
    """MFCC frames ``(frames_i, 13)`` of each FSDD recording, in file-name order."""
    import soundfile

    from prclab.protocols.encoders import MFCCEncoder

    encoder = MFCCEncoder(rate_hz=8000.0)
    feats = []
    for path in sorted(FSDD.glob("*.wav"))[:subset]:
        audio, rate = soundfile.read(path, dtype="float64", always_2d=True)
        if rate != 8000:
            raise SystemExit(f"{path}: {rate} Hz, FSDD is 8000 Hz")
        feats.append(encoder.features(audio[:, 0]))
    return feats


def best_rate(fn, n_frames: int, repeats: int) -> float:
    """Frames per second of the fastest of ``repeats`` calls of ``fn()``."""
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n_frames / best


def reservoirpy_runner(units: int, feats: list[np.ndarray]):
    """A zero-argument callable that runs ReservoirPy over ``feats``, or None without ReservoirPy."""
    try:
        from reservoirpy.nodes import Reservoir
    except ImportError:
        return None
    res = Reservoir(units, lr=0.3, sr=0.9, seed=0)
    res.initialize(feats[0])
    return lambda: res.run(feats)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--units", type=int, nargs="+", default=[500, 2000])
    ap.add_argument("--batch-size", type=int, nargs="+", default=[64, 512], help="run_sequences batch sizes")
    ap.add_argument("--threads", type=int, default=None, help="EchoStateCore threads (default: cores)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    ap.add_argument("--subset", type=int, default=None, help="only the first N utterances")
    args = ap.parse_args(argv)
    if not FSDD.is_dir():
        print(f"skipped: FSDD recordings not found at {FSDD}")
        return 0
    start = time.perf_counter()
    feats = load_features(args.subset)
    n_frames = sum(len(f) for f in feats)
    print(f"FSDD: {len(feats)} utterances, {n_frames} frames of 13 MFCCs "
          f"({time.perf_counter() - start:.1f} s to extract)")
    print(f"{'units':>6}  {'contender':<44} {'steps/s':>9} {'x ReservoirPy':>14}")
    for units in args.units:
        contenders = {}
        rpy = reservoirpy_runner(units, feats)
        if rpy is not None:
            contenders["ReservoirPy 0.4 Reservoir.run(list), float64"] = rpy
        for dtype in args.dtypes:
            esn = EchoStateNetwork(13, units=units, leak_rate=0.3, spectral_radius=0.9, dtype=dtype,
                                   threads=args.threads)
            for size in args.batch_size:
                contenders[f"run_sequences, batch {size}, {dtype}"] = (
                    lambda esn=esn, size=size: run_sequences(esn, feats, batch_size=size))
        # rounds interleave the contenders, so a busy spell on a shared machine hits them alike
        rates = {name: 0.0 for name in contenders}
        for _ in range(args.repeats):
            for name, fn in contenders.items():
                rates[name] = max(rates[name], best_rate(fn, n_frames, 1))
        base = rates.get("ReservoirPy 0.4 Reservoir.run(list), float64", np.nan)
        for name, rate in rates.items():
            print(f"{units:>6}  {name:<44} {rate:>9.0f} {rate / base:>14.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
