"""Task datasets: labelled sequences from a WAV folder or a labelled-sequence ``.npz``.

Two on-disk forms are understood:

- **WAV folder** (Free Spoken Digit Dataset style): files ``{label}_{speaker}_{index}.wav``, mono PCM;
  the official FSDD split puts take indices 0-4 in ``test`` and the rest in ``train``.
- **labelled-sequence .npz** (see ``../shared/data/README.md``): ``X`` ``(n, max_len, channels)`` zero
  padded, ``lengths`` ``(n,)``, ``y`` ``(n,)`` string labels, optional ``split`` ``(n,)`` of
  ``train``/``test``.  Loaded with ``allow_pickle=False``.

Both load into :class:`LabelledSequences`.  Datasets live here, beside the encoders, because the
protocol runner encodes them; ``readouts`` reads them from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prclab.errors import PrclabError

WAV_NAME = re.compile(r"^(?P<label>[^_]+)_(?P<speaker>[^_]+)_(?P<index>\d+)\.wav$", re.IGNORECASE)
FSDD_TEST_TAKES = 5  # FSDD's official split: takes 0-4 are the test set


@dataclass
class LabelledSequences:
    """A labelled dataset of variable-length sequences.

    Attributes:
        sequences: list of arrays; audio: ``(samples,)`` float64 in [-1, 1]; otherwise ``(steps, channels)``.
        labels: ``(n,)`` string labels.
        split: ``(n,)`` of ``"train"``/``"test"``, or None when the data carries no split.
        kind: ``"audio"`` or ``"sequence"``.
        rate_hz: audio sample rate (hertz) for audio, else None.
        ids: ``(n,)`` names of the items (file names or ``"row{i}"``).
        groups: ``(n,)`` group of each item (the speaker for FSDD), for group-wise splits.
        source: where it was loaded from.
    """

    sequences: list
    labels: np.ndarray
    split: np.ndarray | None
    kind: str
    rate_hz: float | None = None
    ids: np.ndarray = field(default_factory=lambda: np.array([]))
    groups: np.ndarray | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def classes(self) -> np.ndarray:
        return np.unique(self.labels)

    def subset(self, index) -> "LabelledSequences":
        index = np.asarray(index)
        return LabelledSequences(
            sequences=[self.sequences[i] for i in index], labels=self.labels[index],
            split=None if self.split is None else self.split[index], kind=self.kind,
            rate_hz=self.rate_hz, ids=self.ids[index],
            groups=None if self.groups is None else self.groups[index], source=self.source)


def load_dataset(path: str | Path) -> LabelledSequences:
    """Load a WAV folder or a labelled-sequence ``.npz``; raises ``PrclabError`` naming the problem."""
    path = Path(path)
    if not path.exists():
        raise PrclabError(f"dataset not found: {path}")
    if path.is_dir():
        data = load_wav_folder(path)
    elif not path.is_file():  # a FIFO, socket or device would block or stream without end
        raise PrclabError(f"dataset {path}: not a regular file or folder")
    elif path.suffix.lower() == ".npz":
        data = load_sequence_npz(path)
    else:
        raise PrclabError(f"dataset {path}: expected a folder of WAV files or a .npz file")
    if len(data.classes) < 2:
        raise PrclabError(f"dataset {path}: needs at least two classes, found "
                          f"{len(data.classes)} ({', '.join(map(str, data.classes))})")
    return data


def load_wav_folder(folder: Path) -> LabelledSequences:
    """Read ``{label}_{speaker}_{index}.wav`` files; mono, one common sample rate."""
    import soundfile as sf

    files = sorted(f for f in folder.iterdir() if f.suffix.lower() == ".wav")
    if not files:
        raise PrclabError(f"dataset {folder}: no .wav files")
    odd = [f.name for f in files if not f.is_file()]
    if odd:  # a FIFO named like a WAV file would block the reader
        raise PrclabError(f"dataset {folder}: {odd[0]} is not a regular file")
    sequences, labels, speakers, takes, ids = [], [], [], [], []
    rate = None
    for f in files:
        m = WAV_NAME.match(f.name)
        if not m:
            raise PrclabError(f"dataset {folder}: file name {f.name!r} is not {{label}}_{{speaker}}_{{index}}.wav")
        try:
            audio, sr = sf.read(str(f), dtype="float64", always_2d=True)
        except Exception as exc:  # libsndfile reports many formats of failure
            raise PrclabError(f"dataset {folder}: {f.name} is not readable audio ({exc})") from None
        if rate is None:
            rate = sr
        elif sr != rate:
            raise PrclabError(f"dataset {folder}: {f.name} has sample rate {sr} Hz, others {rate} Hz")
        if len(audio) == 0:
            raise PrclabError(f"dataset {folder}: {f.name} holds no samples")
        if not np.all(np.isfinite(audio)):  # float WAV files can hold NaN or inf
            raise PrclabError(f"dataset {folder}: {f.name} holds NaN or infinite samples")
        sequences.append(audio.mean(axis=1))
        labels.append(m["label"])
        speakers.append(m["speaker"])
        takes.append(int(m["index"]))
        ids.append(f.name)
    split = np.where(np.array(takes) < FSDD_TEST_TAKES, "test", "train")
    return LabelledSequences(sequences, np.array(labels), split, "audio", float(rate), np.array(ids),
                             np.array(speakers), str(folder))


def load_sequence_npz(path: Path) -> LabelledSequences:
    """Read the labelled-sequence ``.npz`` format (no pickle)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:
        raise PrclabError(f"dataset {path}: not a readable .npz without pickled objects ({exc})") from None
    missing = {"X", "lengths", "y"} - set(arrays)
    if missing:
        raise PrclabError(f"dataset {path}: missing array(s) {', '.join(sorted(missing))}")
    x, lengths, y, split = arrays["X"], arrays["lengths"], arrays["y"], arrays.get("split")
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3 or not np.issubdtype(x.dtype, np.number):
        raise PrclabError(f"dataset {path}: X must be a numeric (n, max_len, channels) array, got {x.shape}")
    n = len(x)
    if lengths.shape != (n,) or y.shape != (n,):
        raise PrclabError(f"dataset {path}: lengths and y must have shape ({n},)")
    if not np.issubdtype(lengths.dtype, np.integer):
        if not (np.issubdtype(lengths.dtype, np.floating) and np.all(np.isfinite(lengths))
                and np.all(lengths == np.round(lengths))):
            raise PrclabError(f"dataset {path}: lengths must be whole numbers, got dtype {lengths.dtype}")
        lengths = lengths.astype(np.int64)
    if y.dtype.kind not in "USiu" or (split is not None and split.dtype.kind not in "US"):
        raise PrclabError(f"dataset {path}: y must hold strings or integers and split strings")
    if np.any(lengths < 1) or np.any(lengths > x.shape[1]):
        raise PrclabError(f"dataset {path}: lengths must lie in 1..{x.shape[1]}")
    if split is not None:
        split = split.astype(str)
        bad = set(np.unique(split)) - {"train", "test"}
        if split.shape != (n,) or bad:
            raise PrclabError(f"dataset {path}: split must be ({n},) of 'train'/'test', found {sorted(bad)}")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise PrclabError(f"dataset {path}: X holds NaN or infinite values")
    sequences = [x[i, :lengths[i]] for i in range(n)]
    return LabelledSequences(sequences, y.astype(str), split, "sequence", None,
                             np.array([f"row{i}" for i in range(n)]), None, str(path))


def dataset_digest(data: LabelledSequences) -> str:
    """sha256 over a loaded dataset's content: every sequence (dtype, shape, bytes), labels, split, ids,
    groups, kind and rate.  Two files with the same content agree; any changed sample differs."""
    import hashlib
    import json

    h = hashlib.sha256(b"prclab-dataset-v1\0")
    h.update(json.dumps({"kind": data.kind, "rate_hz": data.rate_hz, "labels": [str(x) for x in data.labels],
                         "split": None if data.split is None else [str(x) for x in data.split],
                         "ids": [str(x) for x in data.ids],
                         "groups": None if data.groups is None else [str(x) for x in data.groups]},
                        sort_keys=True).encode())
    for seq in data.sequences:
        a = np.ascontiguousarray(seq, dtype="<f8")
        h.update(f"{a.shape}".encode())
        h.update(a)
    return h.hexdigest()
