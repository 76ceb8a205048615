"""The recording format: one HDF5 file per session, written append-only, one group per trial.

Layout (open it with plain h5py)::

    /                        attrs: format = "prclab-recording", format_version, software_version,
                                    created_utc, protocol_text, device (JSON), substrate (JSON),
                                    encoder (JSON), rate_hz
    /trials/000000/          one group per finished trial, named by its index in the protocol's order
        stimulus    (n, n_stimulus)  float64, volts, as sent to the device
        response    (n, n_response)  float64, the response channels' units
        timestamps  (n,)             float64, seconds on the device clock
        attrs: index, item, item_id, label, split, repetition,
               stim_start, stim_stop  (sample range of the encoded stimulus inside the trial),
               sha256 (hex digest over stimulus, response and timestamps bytes)

The file is flushed after every trial, so a crash loses at most the trial in flight; each trial's
checksum lets a reader name and skip a damaged trial and keep the rest.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from prclab import PrclabError, __version__

FORMAT = "prclab-recording"
FORMAT_VERSION = 1


def trial_digest(stimulus: np.ndarray, response: np.ndarray, timestamps: np.ndarray) -> str:
    """sha256 hex digest of the three arrays' float64 little-endian bytes."""
    h = hashlib.sha256()
    for a in (stimulus, response, timestamps):
        h.update(np.ascontiguousarray(a, dtype="<f8").tobytes())
    return h.hexdigest()


@dataclass
class TrialRecord:
    """One trial as read back: arrays as in the module docstring plus its attributes."""

    index: int
    item: int
    item_id: str
    label: str
    split: str
    repetition: int
    stim_start: int
    stim_stop: int
    stimulus: np.ndarray
    response: np.ndarray
    timestamps: np.ndarray

    @property
    def stimulus_window(self) -> tuple[np.ndarray, np.ndarray]:
        """(stimulus, response) over the samples the encoded stimulus was applied."""
        sl = slice(self.stim_start, self.stim_stop)
        return self.stimulus[sl], self.response[sl]


class RecordingWriter:
    """Append trials to a new recording file.

    Args:
        path: the file to create (refuses to overwrite an existing one).
        metadata: file-level attributes; dict values are stored as JSON.
    """

    def __init__(self, path: str | Path, metadata: dict):
        self.path = Path(path)
        if self.path.exists():
            raise PrclabError(f"recording {self.path} already exists; choose another --out")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = h5py.File(self.path, "w")
        except OSError as exc:
            raise PrclabError(f"recording {self.path}: cannot create ({exc})") from None
        attrs = {"format": FORMAT, "format_version": FORMAT_VERSION, "software_version": __version__,
                 "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        attrs.update(metadata)
        for key, value in attrs.items():
            self._f.attrs[key] = json.dumps(value) if isinstance(value, (dict, list)) else value
        self._trials = self._f.create_group("trials")
        self._f.flush()

    def append(self, index: int, stimulus: np.ndarray, response: np.ndarray, timestamps: np.ndarray,
               **attrs) -> None:
        """Write one finished trial and flush it to disk."""
        g = self._trials.create_group(f"{index:06d}")
        g.create_dataset("stimulus", data=np.asarray(stimulus, dtype=np.float64))
        g.create_dataset("response", data=np.asarray(response, dtype=np.float64))
        g.create_dataset("timestamps", data=np.asarray(timestamps, dtype=np.float64))
        g.attrs["index"] = index
        for key, value in attrs.items():
            g.attrs[key] = value
        g.attrs["sha256"] = trial_digest(stimulus, response, timestamps)
        self._f.flush()

    def close(self) -> None:
        if self._f.id.valid:
            self._f.close()

    def __enter__(self) -> "RecordingWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class Recording:
    """A recording read back: file-level ``attrs``, intact ``trials`` and ``problems`` found."""

    path: Path
    attrs: dict
    trials: list[TrialRecord]
    problems: list[str]


def read_recording(path: str | Path) -> Recording:
    """Read every intact trial; a trial whose checksum or arrays do not match is named in ``problems``."""
    path = Path(path)
    if not path.exists():
        raise PrclabError(f"recording not found: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise PrclabError(f"recording {path}: not a readable HDF5 file ({exc})") from None
    with f:
        if f.attrs.get("format") != FORMAT or "trials" not in f:
            raise PrclabError(f"recording {path}: not a prclab recording")
        attrs = {}
        for key, value in f.attrs.items():
            if isinstance(value, bytes):
                value = value.decode()
            if isinstance(value, str) and key in ("device", "substrate", "encoder", "readout"):
                value = json.loads(value)
            elif isinstance(value, np.generic):
                value = value.item()
            attrs[key] = value
        trials, problems = [], []
        for name in sorted(f["trials"]):
            g = f["trials"][name]
            try:
                arrays = [g[k][()] for k in ("stimulus", "response", "timestamps")]
                a = g.attrs
                if trial_digest(*arrays) != a["sha256"]:
                    problems.append(f"trial {name}: checksum mismatch")
                    continue
                trials.append(TrialRecord(
                    int(a["index"]), int(a["item"]), str(a["item_id"]), str(a["label"]), str(a["split"]),
                    int(a["repetition"]), int(a["stim_start"]), int(a["stim_stop"]), *arrays))
            except (KeyError, OSError, ValueError) as exc:
                problems.append(f"trial {name}: unreadable ({exc})")
    return Recording(path, attrs, trials, problems)
