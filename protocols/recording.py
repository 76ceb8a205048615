"""The recording format: one HDF5 file per session, written append-only, one group per trial.

Layout (open it with plain h5py)::

    /                        attrs: format = "prclab-recording", format_version, software_version,
                                    created_utc, protocol_text, device (JSON), substrate (JSON),
                                    encoder (JSON), rate_hz
    /trials/000000/          one group per finished trial, named by its index in the protocol's order
        stimulus    (n, n_stimulus)  float64, volts, as sent to the device
        response    (n, n_response)  float64, the response channels' units
        timestamps  (n,)             float64, seconds on the device clock
        state/      optional: the simulated substrate's state after the trial, one plain array per key
                    (what ``--resume`` restores), with attr ``sha256`` over the arrays
        attrs: index, item, item_id, label, split, repetition, session,
               stim_start, stim_stop  (sample range of the encoded stimulus inside the trial),
               sha256 (hex digest over stimulus, response and timestamps bytes), written last

Crash safety: the file is flushed and ``fsync``-ed after every trial, so a finished trial is on disk
before the next one starts and a crash (kill, power cut) loses at most the trial in flight.  SWMR is not
used: it forbids creating groups once writing has started, and one group per trial is the layout
readers rely on (``../shared/notes/hardware-emulation.md``); the kill case is tested instead
(``tests/test_resume.py``).  A trial interrupted in Python (Ctrl-C) removes its partial group; one cut
short by a kill lacks its ``sha256`` and is removed when the run is resumed
(:meth:`RecordingWriter.resume`).  Each trial's checksum lets a reader name and skip a damaged trial and
keep the rest; a truncated file is read through a zero-padded copy (:func:`read_recording`).  Nothing
is loaded with pickle: attributes are numbers, strings or JSON text.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from prclab import PrclabError, __version__

FORMAT = "prclab-recording"
FORMAT_VERSION = 1


def trial_digest(stimulus: np.ndarray, response, timestamps: np.ndarray) -> str:
    """sha256 hex digest of the three arrays' float64 little-endian bytes (``response`` may be given as
    a list of row blocks: the digest is that of their concatenation)."""
    h = hashlib.sha256()
    for part in (stimulus, *_blocks(response), timestamps):
        h.update(np.ascontiguousarray(part, dtype="<f8"))  # the buffer itself, no bytes copy
    return h.hexdigest()


def _blocks(a) -> list[np.ndarray]:
    return list(a) if isinstance(a, (list, tuple)) else [a]


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
    """Append trials to a new recording file (or continue one: :meth:`resume`).

    Args:
        path: the file to create (refuses to overwrite an existing one).
        metadata: file-level attributes; dict values are stored as JSON.
        fsync: ``fsync`` the file after every trial (durable across a power cut, not only a kill).
    """

    def __init__(self, path: str | Path, metadata: dict, fsync: bool = True):
        self.path = Path(path)
        self.fsync = fsync
        if self.path.exists():
            raise PrclabError(f"recording {self.path} already exists; choose another --out or --resume it")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = h5py.File(self.path, "w")
        except OSError as exc:
            raise PrclabError(f"recording {self.path}: cannot create ({exc})") from None
        attrs = {"format": FORMAT, "format_version": FORMAT_VERSION, "software_version": __version__,
                 "created_utc": _now(), "sessions": [{"first_trial": 0, "started_utc": _now()}]}
        attrs.update(metadata)
        for key, value in attrs.items():
            self._f.attrs[key] = json.dumps(value) if isinstance(value, (dict, list)) else value
        self._trials = self._f.create_group("trials")
        self.n_done = 0
        self.session = 0
        self.last_state: dict[str, np.ndarray] | None = None
        self._sync()

    @classmethod
    def resume(cls, path: str | Path, protocol_text: str, fsync: bool = True) -> "RecordingWriter":
        """Reopen a recording to continue its run after its last intact trial.

        Trials ``0 .. n_done - 1`` must be intact; a damaged or partial trial at the end (the one in
        flight when the run died) is removed and will be played again.  ``last_state`` holds the
        substrate state stored with the last intact trial (None if none was stored).

        Raises:
            PrclabError: not a recording, made with another protocol text, or damaged before its end.
        """
        self = cls.__new__(cls)
        self.path, self.fsync = Path(path), fsync
        if not self.path.exists():
            raise PrclabError(f"recording to resume not found: {self.path}")
        try:
            self._f = h5py.File(self.path, "r+")
        except OSError as exc:
            raise PrclabError(f"recording {self.path}: cannot reopen to resume ({exc})") from None
        try:
            if self._f.attrs.get("format") != FORMAT or "trials" not in self._f:
                raise PrclabError(f"recording {self.path}: not a prclab recording")
            if _text(self._f.attrs.get("protocol_text", "")) != protocol_text:
                raise PrclabError(f"recording {self.path}: was made with a different protocol text; "
                                  f"resume it with the same protocol file")
            self._trials = self._f["trials"]
            names = sorted(self._trials)
            good = 0
            for i, name in enumerate(names):
                if name != f"{i:06d}" or _trial_problem(self._trials[name]) is not None:
                    break
                good += 1
            bad = names[good:]
            if len(bad) > 1:
                raise PrclabError(f"recording {self.path}: trial {bad[0]} is damaged "
                                  f"({_trial_problem(self._trials[bad[0]])}) but later trials exist; "
                                  f"a run resumes only after its last trial")
            for name in bad:
                del self._trials[name]
            self.n_done = good
            self.last_state = _read_state(self._trials[names[good - 1]]) if good else None
            sessions = json.loads(_text(self._f.attrs.get("sessions", "[]")))
            self.session = len(sessions)
            sessions.append({"first_trial": good, "started_utc": _now()})
            self._f.attrs["sessions"] = json.dumps(sessions)
            self._sync()
        except BaseException:
            self._f.close()
            raise
        return self

    def append(self, index: int, stimulus: np.ndarray, response: np.ndarray, timestamps: np.ndarray,
               state: dict[str, np.ndarray] | None = None, **attrs) -> None:
        """Write one finished trial (and the substrate ``state`` after it), flush and fsync it.

        ``response`` is ``(n, n_response)`` or a list of row blocks of it (written without joining).
        """
        name = f"{index:06d}"
        try:
            g = self._trials.create_group(name)
            g.create_dataset("stimulus", data=np.asarray(stimulus, dtype=np.float64))
            blocks = [np.asarray(b, dtype=np.float64) for b in _blocks(response)] or [np.zeros((0, 0))]
            ds = g.create_dataset("response", shape=(sum(len(b) for b in blocks), *blocks[0].shape[1:]),
                                  dtype=np.float64)
            row = 0
            for b in blocks:  # block by block: no concatenated copy of the trial's response
                if len(b):
                    ds[row:row + len(b)] = b
                row += len(b)
            g.create_dataset("timestamps", data=np.asarray(timestamps, dtype=np.float64))
            if state is not None:
                sg = g.create_group("state")
                for key, value in state.items():
                    sg.create_dataset(key, data=np.asarray(value))
                sg.attrs["sha256"] = _state_digest(state)
            g.attrs["index"] = index
            g.attrs["session"] = self.session
            for key, value in attrs.items():
                g.attrs[key] = value
            g.attrs["sha256"] = trial_digest(stimulus, response, timestamps)
            self._sync()
        except BaseException:  # Ctrl-C or a write error mid-trial: leave no partial trial behind
            if self._f.id.valid and name in self._trials:
                del self._trials[name]
                self._f.flush()
            raise
        self.n_done += 1

    def note_session(self, **entry) -> None:
        """Add ``entry`` (JSON-able values) to this session's record in ``sessions``; flushed."""
        sessions = json.loads(_text(self._f.attrs.get("sessions", "[]"))) or [{}]
        sessions[-1].update(entry)
        self._f.attrs["sessions"] = json.dumps(sessions)
        self._sync()

    def _sync(self) -> None:
        self._f.flush()
        if self.fsync:
            os.fsync(self._f.id.get_vfd_handle())

    def close(self) -> None:
        if self._f.id.valid:
            self._f.close()

    def __enter__(self) -> "RecordingWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _state_digest(state: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(state):
        a = np.ascontiguousarray(state[key])
        h.update(f"{key}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.view(np.uint8) if a.size else b"")
    return h.hexdigest()


def _read_state(g: h5py.Group) -> dict[str, np.ndarray] | None:
    if "state" not in g:
        return None
    state = {key: g["state"][key][()] for key in g["state"]}
    if _state_digest(state) != g["state"].attrs.get("sha256"):
        raise PrclabError(f"trial {g.name}: stored substrate state fails its checksum")
    return state


def _trial_problem(g: h5py.Group) -> str | None:
    """Why trial group ``g`` is not intact, or None; arrays checked against the sha256."""
    try:
        if "sha256" not in g.attrs:
            return "incomplete (no checksum: the run stopped while writing it)"
        arrays = [g[k][()] for k in ("stimulus", "response", "timestamps")]
        if trial_digest(*arrays) != _text(g.attrs["sha256"]):
            return "checksum mismatch"
        if "state" in g:
            _read_state(g)
    except (KeyError, OSError, ValueError, PrclabError) as exc:
        return f"unreadable ({exc})"
    return None


@dataclass
class Recording:
    """A recording read back: file-level ``attrs``, intact ``trials`` and ``problems`` found."""

    path: Path
    attrs: dict
    trials: list[TrialRecord]
    problems: list[str]


def read_recording(path: str | Path) -> Recording:
    """Read every intact trial; a trial whose checksum or arrays do not match is named in ``problems``.

    A truncated file (shorter than the end-of-file address its superblock stores) is read through a
    temporary copy padded with zeros to that length: trials whose bytes were lost fail their checksum
    and are named, the others are recovered.  A crash truncates the end of the file, where the trials in
    flight lie; a cut deep enough to reach the trial index (the group's B-tree and name heap, written
    early in the file) leaves nothing to find the trials by, and is refused naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise PrclabError(f"recording not found: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        stored = _stored_eof(path)
        if stored is None or stored <= path.stat().st_size:
            raise PrclabError(f"recording {path}: not a readable HDF5 file ({exc})") from None
        with tempfile.TemporaryDirectory() as tmp:
            padded = Path(tmp) / path.name
            shutil.copyfile(path, padded)
            lost = stored - path.stat().st_size
            with open(padded, "r+b") as fh:
                fh.truncate(stored)
            try:
                rec = read_recording(padded)
            except PrclabError as exc:
                raise PrclabError(f"{str(exc).replace(str(padded), str(path))} (file truncated: {lost} "
                                  f"bytes missing at the end)") from None
        rec.path = path
        rec.problems.insert(0, f"file truncated: {lost} bytes missing at the end")
        return rec
    with f:
        if f.attrs.get("format") != FORMAT or "trials" not in f:
            raise PrclabError(f"recording {path}: not a prclab recording")
        attrs = {}
        for key, value in f.attrs.items():
            if isinstance(value, bytes):
                value = value.decode()
            if isinstance(value, str) and key in ("device", "substrate", "encoder", "readout", "sessions"):
                value = json.loads(value)
            elif isinstance(value, np.generic):
                value = value.item()
            attrs[key] = value
        trials, problems = [], []
        try:
            names = sorted(f["trials"])
        except (KeyError, OSError, RuntimeError) as exc:
            raise PrclabError(f"recording {path}: its trial index is unreadable ({exc})") from None
        for name in names:
            try:
                g = f["trials"][name]
                problem = _trial_problem(g)
                if problem is not None:
                    problems.append(f"trial {name}: {problem}")
                    continue
                a = g.attrs
                arrays = [g[k][()] for k in ("stimulus", "response", "timestamps")]
                trials.append(TrialRecord(
                    int(a["index"]), int(a["item"]), str(a["item_id"]), str(a["label"]), str(a["split"]),
                    int(a["repetition"]), int(a["stim_start"]), int(a["stim_stop"]), *arrays))
            except (KeyError, OSError, ValueError, RuntimeError) as exc:
                problems.append(f"trial {name}: unreadable ({exc})")
    return Recording(path, attrs, trials, problems)


_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _stored_eof(path: Path) -> int | None:
    """The end-of-file address in the HDF5 superblock at offset 0 (versions 0-3), or None."""
    with open(path, "rb") as fh:
        head = fh.read(64)
    if len(head) < 48 or not head.startswith(_SIGNATURE):
        return None
    version = head[8]
    if version in (0, 1):
        if head[13] != 8:  # size of offsets
            return None
        at = 40 if version == 0 else 44
    elif version in (2, 3):
        if head[9] != 8:
            return None
        at = 28
    else:
        return None
    return struct.unpack_from("<Q", head, at)[0]
