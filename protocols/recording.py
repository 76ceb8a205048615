"""The recording format: one HDF5 file per session, written append-only, one group per trial.

Layout (open it with plain h5py)::

    /                        attrs: format = "prclab-recording", format_version (3), software_version,
                                    created_utc, protocol_text, device (JSON), substrate (JSON),
                                    encoder (JSON), identity (JSON), rate_hz, sessions (JSON),
                                    storage (JSON: how trials are stored, recording_storage.Storage)
    /recovery/file-000       uint8: a self-checking record of the file-level attrs (one per session)
    /trials/000000/          one group per finished trial, named by its index in the protocol's order
        stimulus    (n, n_stimulus)  float64, volts, as sent to the device
        response    (n, n_response)  the response channels' units as stored: int16/int32 counts with
                                     attrs conversion, offset (n_response,) (value = offset +
                                     conversion * count), or float32 / float64 (recording_storage)
        timestamps  (n,)             float64, seconds on the device clock
                    (format 3: each chunked, 64 kB chunks, byte shuffle + gzip level 1 or lzf, which
                    plain h5py reads with no plugin; formats 1-2: float64, contiguous)
        state/      optional: the simulated substrate's state after the trial, one plain array per key
                    (what ``--resume`` restores), with attr ``sha256`` over the arrays
        record      uint8: the trial's self-checking record (below)
        attrs: index, item, item_id, label, split, repetition, session,
               stim_start, stim_stop  (sample range of the encoded stimulus inside the trial),
               nonfinite (count of NaN/inf response values; they are recorded as measured),
               sha256, written last: over the canonical JSON of every other attr, each array's stored
               dtype, shape and conversion/offset, and the sha256 of the three arrays' STORED bytes
               (format 3; format 2: the float64 arrays' shapes and bytes; format 1: the arrays only;
               both still read; newer formats are refused naming the version)
    /safety_delivered        (rows, n_stimulus) float64 volts, chunked (compressed as the trials): every
                             block handed to the device,
                             in order; attr ``n``: the rows that count
    /safety_checkpoint/      optional: the safety monitor's state after the last finished trial, one
                             plain array per key, attr ``at`` (JSON: log rows covered, sha256)

Reading: :func:`read_recording` returns the trials as :class:`Trial` objects whose arrays are
:class:`TrialArray` views, read from the file when accessed (``np.asarray(t.response)``, or only rows
``t.response[a:b]``), so a recording larger than memory opens, and reading one trial reads no other.
The ``format_version`` is checked on opening: a newer or unknown one is refused, naming it.

Integrity: the checksum covers everything a result depends on, so an edited label or split is named
(``trial 000012: label/split edited or damaged (checksum mismatch)``).

Truncation: HDF5 keeps its index of objects where it last wrote it, so a cut file (an interrupted copy,
a full disk) cannot be opened by HDF5.  Each trial's ``record`` therefore holds, behind a magic number,
length and sha256, its attrs and its arrays' dtype, shape and place in the file (format 3: every
chunk's byte offset, size and filter mask, and the conversion; formats 1-2: the offset of the
contiguous array), written after a flush has given the chunks their places.  :func:`read_recording` never hands a cut file to HDF5 (the superblock's stored
end of file is checked first: HDF5 reading a cut file can hang in C code): it scans the bytes for
records and reads the arrays at their offsets (chunks are decompressed by HDF5's own filters in an
in-memory file: :func:`recording_storage.from_chunks`), so a cut keeps every trial finished before it (tested
over 120 cut points, ``tests/test_recording_integrity.py``).  The same scan is the fallback when HDF5's
own structures are damaged, and the file records restore damaged file-level attributes (named).

Crash safety: the file is flushed and ``fsync``-ed after every trial, so a finished trial is on disk
before the next one starts and a crash (kill, power cut) loses at most the trial in flight.  SWMR is not
used: it forbids creating groups once writing has started, and one group per trial is the layout
readers rely on (``../shared/notes/hardware-emulation.md``); the kill case is tested instead
(``tests/test_resume.py``).  A trial interrupted in Python (Ctrl-C, a write error) removes its partial
group; one cut short by a kill lacks its ``sha256`` and is removed when the run is resumed
(:meth:`RecordingWriter.resume`).  A disk that fills up is one :class:`PrclabError`; resume rebuilds a
file HDF5 can no longer open from its records (the damaged original is kept beside it).

Writers: files are created exclusively (HDF5 mode ``"x"``) and a writer holds an OS lock
(``flock`` on ``REC.h5.lock``) for its lifetime, so a second writer is refused even with HDF5's own file
locking off.  Readers refuse external links, soft links, external storage and virtual datasets (a
shared recording must not make prclab read other files).  Nothing is loaded with pickle: attributes
are numbers, strings or JSON text.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno as _errno
import hashlib
import json
import os
import stat as _stat
import struct
import uuid
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import h5py
import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from prclab import __version__

from prclab.errors import PrclabError

from . import recording_storage as _storage
from .recording_storage import Storage

FORMAT = "prclab-recording"
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
JSON_ATTRS = ("device", "substrate", "encoder", "readout", "sessions", "identity", "storage")
#: HDF5 object formats: the earliest superblock, which has no "open for write" flag, so a file whose
#: writer was killed still opens in plain h5py (a v110 superblock keeps the flag set and refuses it)
_LIBVER = ("earliest", "v110")
"""HDF5 object formats of 1.10 (2017; every h5py wheel since 2.8 reads them): a chunked dataset's
index is a fixed array or a single chunk, not a version 1 B-tree (which cost ~7 kB per trial)."""
RECORD_MAGIC = b"\x89PRCREC\n"
_MAX_RECORD = 64 << 20


def trial_digest(stimulus: np.ndarray, response, timestamps: np.ndarray) -> str:
    """sha256 hex digest of the three arrays' float64 little-endian bytes (``response`` may be given as
    a list of row blocks: the digest is that of their concatenation).  Format 1's trial checksum."""
    h = hashlib.sha256()
    for part in (stimulus, *_blocks(response), timestamps):
        h.update(np.ascontiguousarray(part, dtype="<f8"))  # the buffer itself, no bytes copy
    return h.hexdigest()


def trial_digest_v2(attrs: dict, stimulus: np.ndarray, response, timestamps: np.ndarray,
                    arrays_sha256: str | None = None) -> str:
    """Format 2's trial checksum: sha256 of the canonical JSON of every attr (but ``sha256``), the
    arrays' shapes and their :func:`trial_digest` (passed as ``arrays_sha256`` when already known: the
    array bytes are hashed once)."""
    blocks = _blocks(response)
    rows = sum(len(b) for b in blocks)
    cols = list(np.shape(blocks[0])[1:]) if blocks else []
    shapes = [list(np.shape(stimulus)), [rows, *cols], list(np.shape(timestamps))]
    if arrays_sha256 is None:
        arrays_sha256 = trial_digest(stimulus, blocks, timestamps)
    return _digest_v2(attrs, shapes, arrays_sha256)


def _digest_v2(attrs: dict, shapes: list, arrays_sha256: str) -> str:
    """:func:`trial_digest_v2` from the arrays' ``shapes`` (stimulus, response, timestamps) and digest."""
    return hashlib.sha256(b"prclab-trial-v2\0" + _canonical(
        {"attrs": {k: v for k, v in attrs.items() if k != "sha256"}, "shapes": shapes,
         "arrays_sha256": arrays_sha256})).hexdigest()


def _digest_v3(attrs: dict, specs: dict, arrays_sha256: str) -> str:
    """Format 3's trial checksum: sha256 of the canonical JSON of every attr (but ``sha256``), each
    array's stored dtype, shape and conversion (``specs``: key -> :func:`recording_storage.chunk_spec`)
    and ``arrays_sha256``, the :func:`recording_storage.stored_digest` of the stored values."""
    return hashlib.sha256(b"prclab-trial-v3\0" + _canonical(
        {"attrs": {k: v for k, v in attrs.items() if k != "sha256"},
         "storage": _storage.storage_of(list(specs.items())), "arrays_sha256": arrays_sha256})).hexdigest()


def _canonical(value) -> bytes:
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":")).encode()


def _plain(v):
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return _plain(v.tolist())
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v


def _blocks(a) -> list[np.ndarray]:
    return list(a) if isinstance(a, (list, tuple)) else [a]


def run_identity(protocol_text: str, data, encoder, device) -> dict:
    """What a run depends on, stored at creation and compared on resume: protocol text, dataset content
    (sha256 over the loaded arrays), encoder fit and the device (its stable description)."""
    from .datasets import dataset_digest

    described = device.describe()
    stable = ("device", "class", "rate_hz", "stimulus", "response", "substrate", "board", "nidaq_device",
              "protocol", "replayed_from")
    return {"protocol_sha256": hashlib.sha256(protocol_text.encode()).hexdigest(),
            "dataset_sha256": dataset_digest(data), "encoder": _plain(encoder.describe()),
            "device": _plain({k: described[k] for k in stable if k in described})}


_IDENTITY_NAMES = {"protocol_sha256": "protocol text", "dataset_sha256": "dataset content",
                   "encoder": "encoder fit", "device": "device"}


@dataclass
class Trial:
    """One trial of a run, planned or recorded: the runner compiles a protocol into trials holding
    their ``stimulus`` (nothing played yet: ``response`` and ``timestamps`` are None), and a recording
    reads back the same type with all three arrays (as :class:`TrialArray` views read on access).

    Attributes:
        index: position in the run's playing order (the trial's group name in the file).
        item, item_id, label, split: the dataset item played (position, id, label, train/test split).
        repetition: which repetition of the dataset this is.
        stimulus: ``(n, n_stimulus)`` volts, as sent to the device: washout, encoded stimulus, rest.
        stim_start, stim_stop: the encoded stimulus's sample range within ``stimulus``.
        response: ``(n, n_response)`` in the response channels' units, None until recorded.
        timestamps: ``(n,)`` seconds on the device clock, None until recorded.
        session: the session (0, then one more per resume) that recorded it; None until recorded.
        nonfinite: count of NaN/inf response values (recorded as measured).
        extra: the other attrs the writer was given (``append(..., **attrs)``), as stored: a closed
            loop's per-tick values (:mod:`~prclab.protocols.loop`); empty for a planned trial.
        checksum: the trial's checksum as its reader gives it (sha256 hex): a prclab recording's
            ``sha256``, the one an exported NWB file's trials table carries, else a sha256 of its
            fields and arrays as read (:func:`~prclab.protocols.foreign.trial_checksum`); "" for a
            planned trial.
    """

    index: int
    item: int
    repetition: int
    label: str
    split: str
    item_id: str
    stimulus: "np.ndarray | TrialArray"
    stim_start: int
    stim_stop: int
    response: "np.ndarray | TrialArray | None" = None
    timestamps: "np.ndarray | TrialArray | None" = None
    session: int | None = None
    nonfinite: int = 0
    extra: dict = field(default_factory=dict)
    checksum: str = ""

    @property
    def waveform(self) -> "np.ndarray | TrialArray":
        """``stimulus``: the name the compiled plan and the safety layer use for it."""
        return self.stimulus

    @property
    def stimulus_window(self) -> tuple[np.ndarray, np.ndarray]:
        """(stimulus, response) over the samples the encoded stimulus was applied: ``(w, n_stimulus)``
        volts and ``(w, n_response)``; of a recorded trial only those rows are read from the file."""
        sl = slice(self.stim_start, self.stim_stop)
        return self.stimulus[sl], self.response[sl]


class TrialArray(NDArrayOperatorsMixin):
    """One array of a recorded trial, left in the file until it is read: ``shape``, ``dtype`` and
    ``len`` come from HDF5's metadata; indexing reads only the rows asked for (``a[100:200]``,
    ``a[:, :4]``: h5py hyperslabs); ``np.asarray(a)`` and arithmetic read the whole array.  Nothing is
    cached: each access reads again (so iterating over a long recording holds one trial at a time)."""

    def __init__(self, source: "_Source", name: str, key: str, shape: tuple, dtype: np.dtype):
        self._source, self._name, self._key = source, name, key
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def T(self) -> np.ndarray:
        """The whole array, read, transposed."""
        return np.asarray(self).T

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, selection) -> np.ndarray:
        return self._source.read(self._name, self._key, selection)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        a = self[()]
        return a if dtype is None else a.astype(dtype, copy=False)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        inputs = tuple(np.asarray(x) if isinstance(x, TrialArray) else x for x in inputs)
        return getattr(ufunc, method)(*inputs, **kwargs)

    def __repr__(self) -> str:
        return f"TrialArray(trial {self._name} {self._key}, shape {self.shape}, {self.dtype}, in " \
               f"{self._source.path})"


class _Source:
    """The file behind a recording's :class:`TrialArray` views: opened for each read and closed after
    it, or held open across the reads made inside ``with recording:`` (:meth:`hold`, :meth:`close`).
    Not kept open otherwise: HDF5 refuses to open for writing (a resume) a file that the same process
    has open for reading."""

    def __init__(self, path: Path, version: int):
        self.path, self.version, self._f = path, version, None

    def hold(self) -> None:
        if self._f is None or not self._f.id.valid:
            self._f = h5py.File(self.path, "r")

    @contextlib.contextmanager
    def _trials(self):
        if self._f is not None and self._f.id.valid:
            yield _inside(self._f, "trials")
        else:
            with h5py.File(self.path, "r") as f:
                yield _inside(f, "trials")

    def read(self, name: str, key: str, selection) -> np.ndarray:
        try:
            with self._trials() as trials:
                ds = _inside(_inside(trials, name), key)
                return _storage.decode(ds[selection], _storage.scale_of(ds), ds.shape, selection)
        except (OSError, RuntimeError, KeyError, PrclabError) as exc:
            raise PrclabError(f"recording {self.path}: trial {name} {key} unreadable "
                              f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None

    def load(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Trial ``name``'s (stimulus, response, timestamps), read once and checked."""
        try:
            with self._trials() as trials:
                why, got = _trial_problem(trials, name, self.version)
        except (OSError, RuntimeError, KeyError, PrclabError) as exc:
            why = f"unreadable ({exc})"
        if why is not None:
            raise PrclabError(f"trial {name}: {why}")
        return got[2]

    def close(self) -> None:
        if self._f is not None and self._f.id.valid:
            self._f.close()
        self._f = None


def _trial_record(attrs: dict, arrays: tuple, checksum: str) -> Trial:
    """A recorded :class:`Trial` from its attrs, its (stimulus, response, timestamps) and its checksum."""
    a = attrs
    stimulus, response, timestamps = arrays
    return Trial(int(a["index"]), int(a["item"]), int(a["repetition"]), str(a["label"]), str(a["split"]),
                 str(a["item_id"]), stimulus, int(a["stim_start"]), int(a["stim_stop"]), response,
                 timestamps, int(a.get("session", 0)), int(a.get("nonfinite", 0)),
                 {k: v for k, v in a.items() if k not in _TRIAL_ATTRS}, str(checksum))


#: the attrs every trial has (the :class:`Trial` fields and its checksum): the rest are its ``extra``
_TRIAL_ATTRS = {f.name for f in fields(Trial)} | {"sha256"}


# -- records: self-delimiting, self-checking byte strings stored contiguously in the file ----------
def _pack_record(header: dict) -> np.ndarray:
    body = _canonical(header)
    head = RECORD_MAGIC + struct.pack("<I", len(body))
    return np.frombuffer(head + body + hashlib.sha256(head + body).digest(), np.uint8)


def _parse_record(buf, pos: int = 0) -> tuple[dict, int] | None:
    """(header, end) of a valid record at ``pos`` of ``buf``, or None."""
    n = len(buf)
    if pos + 12 > n or buf[pos:pos + 8] != RECORD_MAGIC:
        return None
    length = struct.unpack_from("<I", buf, pos + 8)[0]
    end = pos + 12 + length + 32
    if length > _MAX_RECORD or end > n:
        return None
    if hashlib.sha256(buf[pos:pos + 12 + length]).digest() != buf[end - 32:end]:
        return None
    try:
        header = json.loads(bytes(buf[pos + 12:pos + 12 + length]))
    except ValueError:
        return None
    return (header, end) if isinstance(header, dict) else None


def _array_spec(ds: h5py.Dataset) -> dict:
    return {"offset": ds.id.get_offset(), "dtype": ds.dtype.str, "shape": list(ds.shape)}


class _WriterLock:
    """``flock`` on ``REC.h5.lock`` for the writer's lifetime (works with HDF5 file locking off)."""

    def __init__(self, rec: Path):
        import fcntl

        self.path = Path(str(rec) + ".lock")
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise PrclabError(f"recording {rec}: cannot take the writer's lock {self.path} "
                                  f"({exc.strerror})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise PrclabError(f"recording {rec}: another prclab process is writing it (lock "
                                  f"{self.path} is held)") from None
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break  # the lock file we locked is still the one at that path
            except FileNotFoundError:
                pass
            os.close(fd)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            os.close(self.fd)
            self.fd = None


def _write_error(path: Path, exc: BaseException, what: str, n_done: int | None = None) -> PrclabError:
    text = str(exc)
    full = getattr(exc, "errno", None) == _errno.ENOSPC or "errno = 28" in text or "No space left" in text
    kept = "" if n_done is None else f"; the {n_done} finished trial(s) are kept: free space, then " \
        f"continue the run with --resume {path}"
    reason = "disk full" if full else f"write failed ({text.splitlines()[0] if text else type(exc).__name__})"
    return PrclabError(f"recording {path}: {reason} while {what}{kept}")


class RecordingWriter:
    """Append trials to a new recording file (or continue one: :meth:`resume`).

    Args:
        path: the file to create (refuses an existing one, but for an empty file a failed creation left).
        metadata: file-level attributes; dict values are stored as JSON.
        fsync: ``fsync`` the file after every trial (durable across a power cut, not only a kill).
        storage: how trials are stored (:class:`~prclab.protocols.recording_storage.Storage`; the
            runner takes it from the protocol's ``[recording]`` and the device); default: float64
            responses, gzip.  Kept in the file attr ``storage``: a resume goes on with it.
    """

    def __init__(self, path: str | Path, metadata: dict, fsync: bool = True, storage: Storage | None = None):
        self.path = Path(path)
        self.fsync = fsync
        self.storage = storage or Storage()
        self._lock = None
        self._f = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PrclabError(f"recording {self.path}: cannot create its folder ({exc.strerror})") from None
        self._lock = _WriterLock(self.path)
        created = False
        try:
            if self.path.exists() or self.path.is_symlink():
                if self.path.is_file() and not self.path.is_symlink() and self.path.stat().st_size == 0:
                    self.path.unlink()  # an empty file left by a creation that failed: nothing to lose
                else:
                    raise PrclabError(f"recording {self.path} already exists; choose another --out or "
                                      f"--resume it")
            created = True  # under the lock, nothing was there: whatever appears at the path is ours
            try:
                self._f = h5py.File(self.path, "x", libver=_LIBVER)
            except FileExistsError:
                created = False
                raise PrclabError(f"recording {self.path} already exists; choose another --out or "
                                  f"--resume it") from None
            attrs = {"format": FORMAT, "format_version": FORMAT_VERSION, "software_version": __version__,
                     "created_utc": _now(), "sessions": [{"first_trial": 0, "started_utc": _now()}],
                     "file_id": uuid.uuid4().hex, "storage": self.storage.describe()}
            attrs.update(metadata)
            for key, value in attrs.items():
                self._f.attrs[key] = json.dumps(value) if isinstance(value, (dict, list)) else value
            self.session = 0
            self._write_file_record()
            self._trials = self._f.create_group("trials")
            self.n_done = 0
            self.last_state: dict[str, np.ndarray] | None = None
            self._sync()
        except BaseException as exc:
            self._fail_open(exc, created, "creating it")
            raise

    def _fail_open(self, exc: BaseException, remove: bool, what: str) -> None:
        """Clean up after ``exc`` while opening (``what``: "creating it", ...): the file is released
        (and removed if ``remove``); a file-system error becomes one ``PrclabError`` naming the file,
        anything else is left for the caller to re-raise."""
        io_error = isinstance(exc, (OSError, RuntimeError))
        if io_error:
            self._detach()
        self._abandon(remove=remove)
        if io_error:
            raise _write_error(self.path, exc, what) from None

    def _abandon(self, remove: bool) -> None:
        try:
            if self._f is not None and self._f.id.valid:
                self._f.close()
        except Exception:
            pass
        if remove:
            try:
                self.path.unlink()
            except OSError:
                pass
        if self._lock is not None:
            self._lock.release()

    def _write_file_record(self) -> None:
        attrs = {k: _decode_attr(k, v)[0] for k, v in self._f.attrs.items()}
        group = self._f.require_group("recovery")
        name = f"file-{self.session:03d}"
        if name in group:
            del group[name]
        group.create_dataset(name, data=_pack_record({"kind": "file", "session": self.session,
                                                      "file_id": attrs.get("file_id", ""),
                                                      "attrs": attrs}))

    @classmethod
    def resume(cls, path: str | Path, protocol_text: str, fsync: bool = True,
               identity: dict | None = None, verify: bool = True) -> "RecordingWriter":
        """Reopen a recording to continue its run after its last intact trial.

        Trials ``0 .. n_done - 1`` must be intact; a damaged or partial trial at the end (the one in
        flight when the run died) is removed and will be played again.  ``last_state`` holds the
        substrate state stored with the last intact trial (None if none was stored).  A file HDF5
        cannot open (cut, or left by a full disk) is first rebuilt from its records (which reads the
        whole file once).

        What is read: every trial's attrs and record (bytes each), the last intact trial's arrays and
        state, the safety log from its last checkpoint on (:meth:`safety_resume_point`) and, with
        ``verify``, every earlier trial's arrays once, one trial at a time.

        Args:
            identity: :func:`run_identity` of the run about to continue; refused if it differs from
                the one stored at creation.
            verify: check every earlier trial's array bytes against its checksum (a trial damaged
                before the end is refused).  ``False``: earlier trials are checked complete, with attrs
                and shapes matching their checksums (:func:`read_recording`'s ``verify=False``); only
                the last one, which a crash can leave torn, is read - a few MB whatever the file's size.
        Raises:
            PrclabError: not a recording, made with another protocol text, dataset, encoder fit or
                device, damaged before its end, or being written by another process.
        """
        self = cls.__new__(cls)
        self.path, self.fsync, self._f, self._lock = Path(path), fsync, None, None
        _check_file(self.path, "recording to resume")
        if self.path.stat().st_size == 0:
            raise PrclabError(f"recording {self.path} is empty (its creation failed before any trial); "
                              f"delete it and start the run with --out")
        self._lock = _WriterLock(self.path)
        try:
            if _hdf5_problem(self.path) is not None:
                _rebuild(self.path)
            try:
                self._f = h5py.File(self.path, "r+")
                self._resume(protocol_text, identity, verify)
            except (OSError, RuntimeError, KeyError, ValueError) as exc:  # HDF5's structures are damaged
                if "already open" in str(exc):  # ... or this process reads the file: not damage
                    raise PrclabError(f"recording {self.path}: this process has it open for reading "
                                      f"(leave the Recording's with block first); cannot resume it") from None
                self._detach()
                _rebuild(self.path)
                self._f = h5py.File(self.path, "r+")
                self._resume(protocol_text, identity, verify)
        except BaseException as exc:
            self._fail_open(exc, False, "reopening it to resume")
            raise
        return self

    def _resume(self, protocol_text: str, identity: dict | None, verify: bool) -> None:
        attrs, problems, _ = _file_attrs(self._f, self.path)
        if attrs.get("format") != FORMAT or "trials" not in self._f:
            raise PrclabError(f"recording {self.path}: not a prclab recording")
        version = _version(attrs, self.path)
        if version != FORMAT_VERSION:
            raise PrclabError(f"recording {self.path}: format {version} recordings cannot be resumed by "
                              f"prclab {__version__}; start a new run with --out")
        if str(attrs.get("protocol_text", "")) != protocol_text:
            raise PrclabError(f"recording {self.path}: was made with a different protocol text; "
                              f"resume it with the same protocol file")
        stored = attrs.get("identity")
        if identity is not None and isinstance(stored, dict):
            now = json.loads(_canonical(identity))
            differ = [_IDENTITY_NAMES.get(k, k) for k in sorted(set(stored) | set(now))
                      if stored.get(k) != now.get(k)]
            if differ:
                raise PrclabError(f"recording {self.path}: was made with a different "
                                  f"{', '.join(differ)}; a resumed run must use what the run started "
                                  f"with")
        self.storage = Storage.from_description(attrs.get("storage"))
        self._trials = self._f["trials"]
        names = sorted(self._trials)
        good = 0
        for i, name in enumerate(names):
            if name != f"{i:06d}" or _trial_problem(self._trials, name, version, verify)[0] is not None:
                break
            good += 1
        if good and not verify and _trial_problem(self._trials, names[good - 1], version)[0] is not None:
            good -= 1  # the last one, in flight at a crash, is read whole
        bad = names[good:]
        if len(bad) > 1:
            raise PrclabError(f"recording {self.path}: trial {bad[0]} is damaged "
                              f"({_trial_problem(self._trials, bad[0], version)[0]}) but later trials "
                              f"exist; a run resumes only after its last trial")
        for name in bad:
            del self._trials[name]
        self.n_done = good
        self.last_state = _read_state(self._trials[names[good - 1]]) if good else None
        sessions = attrs.get("sessions") if isinstance(attrs.get("sessions"), list) else []
        self.session = len(sessions)
        sessions.append({"first_trial": good, "started_utc": _now()})
        self._f.attrs["sessions"] = json.dumps(sessions)
        self._write_file_record()
        self._sync()

    def append(self, index: int, stimulus: np.ndarray, response: np.ndarray, timestamps: np.ndarray,
               state: dict[str, np.ndarray] | None = None, **attrs) -> None:
        """Write one finished trial (and the substrate ``state`` after it), flush and fsync it.

        ``response`` is ``(n, n_response)`` or a list of row blocks of it (written without joining).
        Non-finite response values are recorded as measured and counted in the ``nonfinite`` attr.

        Raises:
            PrclabError: the write failed (disk full, I/O error); the partial trial is removed.
        """
        name = f"{index:06d}"
        self._check_space(index, stimulus, response, timestamps, state)
        try:
            self._write_trial(self._trials, name, stimulus, response, timestamps, state,
                              {"index": index, "session": self.session, **attrs})
            self._sync()
        except (OSError, RuntimeError) as exc:  # disk full, I/O error: the file keeps what was flushed
            self._detach()
            raise _write_error(self.path, exc, f"writing trial {name}", self.n_done) from None
        except BaseException:  # Ctrl-C mid-trial: leave no partial trial behind
            try:
                if self._f.id.valid and name in self._trials:
                    del self._trials[name]
                    self._f.flush()
            except Exception:
                pass
            raise
        self.n_done += 1

    def _write_trial(self, trials: h5py.Group, name: str, stimulus, response, timestamps, state,
                     attrs: dict) -> None:
        """Format 3: the arrays as :attr:`storage` says (:mod:`.recording_storage`), the file flushed so
        their chunks have their places, then the record listing those chunks, then ``sha256``."""
        g = trials.create_group(name)
        blocks = [np.asarray(b, dtype=np.float64) for b in _blocks(response)] or [np.zeros((0, 0))]
        cols = blocks[0].shape[1] if blocks[0].ndim == 2 else 0
        nonfinite = sum(int(b.size - np.count_nonzero(np.isfinite(b))) for b in blocks)
        stored = {"stimulus": (np.asarray(stimulus, dtype=np.float64), None),
                  "response": _storage.encode_response(blocks, self.storage, cols),
                  "timestamps": (np.asarray(timestamps, dtype=np.float64), None)}
        datasets = {key: _storage.write_array(g, key, a, scale, self.storage.compression)
                    for key, (a, scale) in stored.items()}
        state_specs = None
        if state is not None:
            sg = g.create_group("state")
            state_specs = {}
            for key, value in state.items():
                state_specs[key] = _array_spec(sg.create_dataset(key, data=np.asarray(value)))
            sg.attrs["sha256"] = _state_digest(state)
        attrs = _plain({**attrs, "nonfinite": nonfinite})
        for key, value in attrs.items():
            g.attrs[key] = value
        self._f.flush()  # chunks reach the file: their byte offsets are final
        specs = {key: _storage.chunk_spec(ds, stored[key][1]) for key, ds in datasets.items()}
        arrays_digest = _storage.stored_digest(a for a, _ in stored.values())
        digest = _digest_v3(attrs, specs, arrays_digest)
        g.create_dataset("record", data=_pack_record({
            "kind": "trial", "name": name, "file_id": _text(self._f.attrs.get("file_id", "")),
            "session": self.session, "attrs": attrs, "arrays": specs, "state": state_specs,
            "state_sha256": None if state is None else _state_digest(state),
            "arrays_sha256": arrays_digest, "sha256": digest}))
        g.attrs["sha256"] = digest

    space_margin = 256 << 10  # bytes kept free beyond twice the trial's arrays (HDF5 metadata, records)
    _log = None  # the safety log, kept open: its chunk cache holds the partly filled last chunk (opened
    #              anew per block, HDF5 would read that chunk back from the file before every write)

    def _check_space(self, index, *arrays) -> None:
        """Refuse a trial the disk has no room for before writing any of it (HDF5 failing half way
        through a write leaves metadata it can no longer flush)."""
        need = self.space_margin
        for a in arrays:
            for part in (a.values() if isinstance(a, dict) else _blocks(a) if a is not None else ()):
                need += 2 * np.asarray(part).nbytes
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return
        if st.f_bavail * st.f_frsize < need:
            raise PrclabError(f"recording {self.path}: disk full before trial {index:06d} "
                              f"({st.f_bavail * st.f_frsize} bytes free, {need} needed); the "
                              f"{self.n_done} finished trial(s) are kept: free space, then continue the "
                              f"run with --resume {self.path}")

    def _detach(self) -> None:
        """After a failed write: point HDF5's file descriptor at /dev/null and close, so HDF5's pending
        metadata goes nowhere (a full disk would fail every later flush, and HDF5 closing a file it
        cannot flush ends in errors at exit or a crash).  The file on disk keeps its last flush; the
        trial in flight is left incomplete and resume removes it (or rebuilds the file from records)."""
        try:
            if self._f is not None and self._f.id.valid:
                fd = self._f.id.get_vfd_handle()
                null = os.open(os.devnull, os.O_RDWR)
                os.dup2(null, fd)
                os.close(null)
                self._f.close()
        except Exception:
            pass

    def note_delivered(self, block: np.ndarray) -> None:
        """Append stimulus samples ``(n, n_stimulus)`` volts, about to be handed to the device, to the
        file-level safety log ``/safety_delivered`` (every sample ever written to the device, in order:
        trials, partial trials and resume lead-ins), then flush, so a resume rebuilds the safety
        monitor's state from everything the electrodes received.  Its attr ``n`` (rows that count) is
        written after the rows: a kill between the two leaves the block out, as it was not yet sent.
        """
        if self._f is None or not self._f.id.valid:
            return
        block = np.asarray(block, dtype=np.float64)
        try:
            ds = self._log if self._log is not None and self._log.id.valid else \
                self._f.get("safety_delivered")
            if ds is None:
                ds = self._f.create_dataset("safety_delivered", shape=(0, block.shape[1]),
                                            dtype=np.float64, maxshape=(None, block.shape[1]),
                                            chunks=(4096, block.shape[1]),
                                            **_storage.filters(self.storage.compression))
                ds.attrs["n"] = 0
            self._log = ds
            n = int(ds.attrs["n"])
            if ds.shape[0] < n + len(block):
                ds.resize(n + len(block), axis=0)
            ds[n:n + len(block)] = block
            ds.attrs["n"] = n + len(block)
            self._f.flush()
        except (OSError, RuntimeError) as exc:  # disk full: one line, the finished trials stay resumable
            self._detach()
            raise _write_error(self.path, exc, "logging the stimulus delivered", self.n_done) from None

    def note_safety_state(self, state: dict[str, np.ndarray]) -> None:
        """Store the safety monitor's ``state`` (plain arrays) as it is after every sample logged so far,
        in ``/safety_checkpoint`` (over the previous one), so a resume continues the monitor from it and
        the log's rows after it instead of the whole log.  Its attr ``at`` - JSON ``{"n": log rows
        covered, "sha256": of the state}`` - is written last: a checkpoint cut short does not match
        it and is not taken (the resume then replays the whole log, as for a file without one).
        Flushed."""
        if self._f is None or not self._f.id.valid:
            return
        try:
            log = self._f.get("safety_delivered")
            n = 0 if log is None else int(log.attrs["n"])
            g = self._f.require_group("safety_checkpoint")
            for key, value in state.items():
                value = np.asarray(value)
                if key in g and g[key].shape == value.shape and g[key].dtype == value.dtype:
                    g[key][...] = value  # the same shape every trial: written in place
                else:
                    if key in g:
                        del g[key]
                    g.create_dataset(key, data=value)
            g.attrs["at"] = json.dumps({"n": n, "sha256": _state_digest(state)})
            self._f.flush()
        except (OSError, RuntimeError) as exc:
            self._detach()
            raise _write_error(self.path, exc, "storing the safety monitor's state", self.n_done) from None

    def safety_resume_point(self) -> tuple[dict[str, np.ndarray] | None, np.ndarray] | None:
        """Where a resumed safety monitor starts: ``(state, tail)`` - the monitor state of the last intact
        :meth:`note_safety_state` checkpoint and the logged samples after it ``(k, n_stimulus)`` volts,
        or ``(None, the whole log)`` without one (older files, a checkpoint cut short); None if the
        file holds no safety log.  Reads the checkpoint and the log's rows after it only."""
        log = self._f.get("safety_delivered") if self._f is not None else None
        if log is None:
            return None
        n = int(log.attrs["n"])
        g = self._f.get("safety_checkpoint")
        try:
            at = json.loads(_text(g.attrs["at"])) if g is not None and "at" in g.attrs else None
            state = None if at is None else {key: _inside(g, key)[()] for key in g}
            if state is not None and (not 0 <= int(at["n"]) <= n or _state_digest(state) != at["sha256"]):
                state = None
        except (KeyError, TypeError, ValueError, OSError, RuntimeError, PrclabError):
            state = None
        return state, log[int(at["n"]) if state is not None else 0:n]

    def previous_stop(self) -> dict:
        """The stop note of the session before this one (``{}`` if it left none: a kill)."""
        sessions = json.loads(_text(self._f.attrs.get("sessions", "[]")))
        return sessions[-2] if len(sessions) >= 2 else {}

    def note_session(self, **entry) -> None:
        """Add ``entry`` (JSON-able values) to this session's record in ``sessions``; flushed."""
        if self._f is None or not self._f.id.valid:
            return  # detached after a failed write: nothing more reaches the file
        sessions = json.loads(_text(self._f.attrs.get("sessions", "[]"))) or [{}]
        sessions[-1].update(entry)
        self._f.attrs["sessions"] = json.dumps(sessions)
        self._write_file_record()  # the file record follows, so a reader does not take it for damage
        self._sync()

    def _sync(self) -> None:
        self._f.flush()
        if self.fsync:
            os.fsync(self._f.id.get_vfd_handle())

    def close(self) -> None:
        try:
            if self._f is not None and self._f.id.valid:
                self._f.close()
        except (OSError, RuntimeError):
            self._detach()  # a full disk: the finished trials were flushed before; resume repairs it
        finally:
            if self._lock is not None:
                self._lock.release()

    def __enter__(self) -> "RecordingWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _state_digest(state: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(state):
        a = np.ascontiguousarray(state[key])
        h.update(f"{key}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.view(np.uint8) if a.size else b"")
    return h.hexdigest()


def _read_state(g: h5py.Group) -> dict[str, np.ndarray] | None:
    """Trial group ``g``'s substrate state (None if it has none), checked against its sha256."""
    if "state" not in g:
        return None
    sg = _inside(g, "state")
    state = {key: _inside(sg, key)[()] for key in sg}
    if _state_digest(state) != _text(sg.attrs.get("sha256", "")):
        raise PrclabError(f"trial {g.name}: stored substrate state fails its checksum")
    return state


def _inside(group: h5py.Group, name: str):
    """``group[name]`` if it is a hard link to an object with no external or virtual storage."""
    link = group.get(name, getlink=True)
    if link is None:
        raise KeyError(name)
    if not isinstance(link, h5py.HardLink):
        raise PrclabError(f"{name!r} is a {type(link).__name__}, refused (a recording holds its data "
                          f"itself)")
    obj = group[name]
    if isinstance(obj, h5py.Dataset) and (obj.external or obj.is_virtual):
        raise PrclabError(f"{name!r} has external or virtual storage, refused (a recording holds its "
                          f"data itself)")
    return obj


def _attrs_of(g) -> dict:
    return {k: _plain(g.attrs[k]) for k in g.attrs}


def _trial_problem(trials: h5py.Group, name: str, version: int,
                   verify: bool = True) -> tuple[str | None, tuple | None]:
    """(why trial ``name`` is not intact or None, (attrs, [(shape, dtype)] of its three arrays, the
    arrays read or None) when it is).

    ``verify``: check the arrays' bytes against the checksum (reads the trial's arrays, not kept).
    Otherwise no array byte is read: the trial must be complete and its attrs and array shapes must
    match its checksum, with the arrays' digest taken from its record (format 1 trials, whose checksum
    covers the arrays only, are then taken as complete), and its substrate state is not read.
    """
    try:
        g = _inside(trials, name)
        if not isinstance(g, h5py.Group):
            return "not a trial group", None
        attrs = _attrs_of(g)
        if "sha256" not in attrs:
            return "incomplete (no checksum: the run stopped while writing it)", None
        keys = ("stimulus", "response", "timestamps")
        datasets = [_inside(g, k) for k in keys]
        shapes = [list(d.shape) for d in datasets]
        scales = [_storage.scale_of(d) for d in datasets] if version >= 3 else [None] * 3
        stored = tuple(d[()] for d in datasets) if verify else None
        arrays = None if stored is None else tuple(
            _storage.decode(a, sc, a.shape) for a, sc in zip(stored, scales))
        if verify:
            arrays_digest = _storage.stored_digest(stored) if version >= 3 else trial_digest(*arrays)
        elif version == 1:
            arrays_digest = str(attrs["sha256"])
        else:
            parsed = _parse_record(bytes(_inside(g, "record")[()].tobytes()))
            arrays_digest = parsed[0].get("arrays_sha256") if parsed else None
            if not isinstance(arrays_digest, str):
                return "unreadable (its record is damaged)", None
        if version == 1:
            ok = arrays_digest == str(attrs["sha256"])
        elif version == 2:
            ok = _digest_v2(attrs, shapes, arrays_digest) == str(attrs["sha256"])
        else:
            ok = _digest_v3(attrs, {k: {"dtype": d.dtype.str, "shape": list(d.shape), "scale": sc}
                                    for k, d, sc in zip(keys, datasets, scales)},
                            arrays_digest) == str(attrs["sha256"])
        if not ok:
            changed = _what_changed(g, attrs, arrays_digest) if version != 1 else ""
            return f"{changed} (checksum mismatch)" if changed else "checksum mismatch", None
        if verify and "state" in g:
            _read_state(g)
        return None, (attrs, [(tuple(d.shape), np.float64) for d in datasets], arrays)
    except (KeyError, OSError, ValueError, TypeError, RuntimeError, PrclabError) as exc:
        return f"unreadable ({exc})", None


def _what_changed(g: h5py.Group, attrs: dict, arrays_digest: str) -> str:
    """Name the attrs that differ from the trial's record (the arrays being intact), else ''."""
    try:
        parsed = _parse_record(bytes(_inside(g, "record")[()].tobytes()))
    except (KeyError, OSError, ValueError, TypeError, RuntimeError, PrclabError):
        parsed = None
    if parsed is None or parsed[0].get("arrays_sha256") != arrays_digest:
        return ""
    written = parsed[0].get("attrs", {})
    changed = [k for k in sorted((set(written) | set(attrs)) - {"sha256"}) if written.get(k) != attrs.get(k)]
    return f"{'/'.join(changed)} edited or damaged" if changed else ""


@dataclass
class Recording:
    """A recording read back: file-level ``attrs``, intact ``trials`` (:class:`Trial`, index order,
    arrays read on access) and ``problems`` found.  Each array read opens the file and closes it again;
    inside ``with read_recording(path) as rec:`` the file is held open for them, until the block ends."""

    path: Path
    attrs: dict
    trials: list[Trial]
    problems: list[str]
    source: _Source | None = None

    def load(self, trial: Trial) -> Trial:
        """``trial`` with its three arrays read into memory and checked against its checksum, in one
        read: for a caller that goes through every trial of a recording opened with ``verify=False``
        and needs each proven intact (a trial recovered from its record is in memory, checked, already).

        Raises:
            PrclabError: ``trial NNNNNN: why`` (checksum mismatch, unreadable), as ``problems`` words it.
        """
        if self.source is None or not isinstance(trial.stimulus, TrialArray):
            return trial
        stimulus, response, timestamps = self.source.load(f"{trial.index:06d}")
        return replace(trial, stimulus=stimulus, response=response, timestamps=timestamps)

    def close(self) -> None:
        """Stop holding the file open (reading an array after this opens it for that read)."""
        if self.source is not None:
            self.source.close()

    def __enter__(self) -> "Recording":
        if self.source is not None:
            self.source.hold()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_file(path: Path, what: str = "recording") -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise PrclabError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise PrclabError(f"{what} {path}: cannot be read ({exc.strerror})") from None
    if not _stat.S_ISREG(mode):
        raise PrclabError(f"{what} {path}: not a regular file")


def _hdf5_problem(path: Path) -> str | None:
    """Why HDF5 must not be handed ``path`` (cut short, no superblock), or None."""
    size = path.stat().st_size
    stored = _stored_eof(path)
    if stored is None:
        return "no HDF5 superblock at its start"
    if stored > size:
        return f"file truncated: {stored - size} bytes missing at the end"
    return None


def _decode_attr(key: str, value):
    """(value, problem) of a file-level attr, JSON decoded where it is JSON."""
    value = _plain(value)
    if key in JSON_ATTRS and isinstance(value, str):
        try:
            return json.loads(value), None
        except ValueError:
            return None, f"file attribute {key!r} damaged (not valid JSON)"
    return value, None


def _file_attrs(f: h5py.File, path: Path) -> tuple[dict, list[str], dict | None]:
    """File-level attrs, each parsed defensively; a damaged one is named and, where the latest file
    record holds it, restored from there.  Returns (attrs, problems, file record header or None)."""
    attrs, problems = {}, []
    try:
        keys = list(f.attrs)
    except (OSError, RuntimeError, KeyError) as exc:
        keys, _ = [], problems.append(f"file attributes unreadable ({exc})")
    for key in keys:
        try:
            value, problem = _decode_attr(key, f.attrs[key])
        except (OSError, RuntimeError, KeyError, TypeError, ValueError) as exc:
            value, problem = None, f"file attribute {key!r} unreadable ({exc})"
        attrs[key] = value
        if problem:
            problems.append(problem)
    record = None
    try:
        group = _inside(f, "recovery") if "recovery" in f else None
        for name in sorted(group or ()):
            parsed = _parse_record(_inside(group, name)[()].tobytes())
            if parsed and parsed[0].get("kind") == "file" and \
                    (record is None or parsed[0].get("session", 0) >= record.get("session", 0)):
                record = parsed[0]
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, PrclabError):
        pass
    if record is not None:
        for key, value in record.get("attrs", {}).items():
            if attrs.get(key) != value:
                bad = next((p for p in problems if f"{key!r}" in p), None)
                if bad:
                    problems.remove(bad)
                problems.append(f"file attribute {key!r} damaged or edited; the value recorded at "
                                f"creation is used")
                attrs[key] = value
    return attrs, problems, record


def _version(attrs: dict, path: Path) -> int:
    v = attrs.get("format_version", 1)
    if isinstance(v, bool) or not isinstance(v, int):
        raise PrclabError(f"recording {path}: format_version {v!r} is not a version number")
    if v not in READABLE_VERSIONS:
        raise PrclabError(f"recording {path}: format_version {v} is not one prclab {__version__} reads "
                          f"({', '.join(map(str, READABLE_VERSIONS))}); "
                          f"{'upgrade prclab' if v > FORMAT_VERSION else 'not a valid recording'}")
    return v


def read_recording(path: str | Path, verify: bool = True) -> Recording:
    """Open a recording: its attrs and its intact trials, whose arrays are read when accessed
    (:class:`TrialArray`); a trial whose checksum or arrays do not match is named in ``problems``.

    Args:
        verify: check every trial's arrays against its checksum now (reads each trial once, one at a
            time, nothing kept).  ``False``: read no array byte now; a trial's attrs and shapes are
            still checked against its checksum (through the digest its record holds), the array bytes
            are not: for a caller that reads part of a recording and does not need it proven intact.

    A file HDF5 cannot safely open (cut short: the superblock's end-of-file lies past the file's size)
    or cannot read is recovered from its in-file records without HDF5 (module docstring): the whole
    file is read once and every trial whose record and arrays lie before the cut comes back, in memory;
    the damage is the first problem named.

    Raises:
        PrclabError: not found, not a regular file, not a recording, a format this version does not
            read (a newer or unknown ``format_version``), or nothing recoverable.
    """
    path = Path(path)
    from .foreign import foreign_reader  # NWB, mapping and brainflow files: protocols/foreign.py
    if (foreign := foreign_reader(path)) is not None:
        return foreign(path, verify)
    _check_file(path)
    problem = _hdf5_problem(path)
    if problem is not None:
        return _recover(path, problem)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        return _recover(path, f"HDF5 structure unreadable ({str(exc).splitlines()[0]})")
    with f:
        attrs, problems, record = _file_attrs(f, path)
        if attrs.get("format") != FORMAT and record is None:
            raise PrclabError(f"recording {path}: not a prclab recording")
        version = _version(attrs, path)
        source = _Source(path, version)
        try:
            trials_group = _inside(f, "trials")
            names = sorted(trials_group)
        except (KeyError, OSError, RuntimeError, PrclabError) as exc:
            if version == 1:
                raise PrclabError(f"recording {path}: its trial index is unreadable ({exc})") from None
            return _recover(path, f"trial index unreadable ({exc})", attrs, problems)
        trials, unreadable = [], []
        for name in names:
            why, got = _trial_problem(trials_group, name, version, verify)
            if why is None:
                attrs_of, specs, _ = got  # the arrays were read to be checked: not kept
                try:
                    trials.append(_trial_record(attrs_of, tuple(
                        TrialArray(source, name, key, shape, dtype)
                        for key, (shape, dtype) in zip(("stimulus", "response", "timestamps"), specs)),
                        attrs_of["sha256"]))
                    continue
                except (KeyError, TypeError, ValueError) as exc:
                    why = f"unreadable ({exc})"
            if why.startswith("unreadable") and version != 1:
                unreadable.append(name)
            problems.append(f"trial {name}: {why}")
    if unreadable:  # HDF5 structures damaged under those trials: their records may still hold them
        scanned = {t.index: t for t in _recover(path, "", attrs, []).trials}
        for name in unreadable:
            t = scanned.get(int(name)) if name.isdigit() else None
            if t is not None:
                trials.append(t)
                i = next(i for i, p in enumerate(problems) if p.startswith(f"trial {name}: unreadable"))
                problems[i] += "; recovered from its record"
        trials.sort(key=lambda t: t.index)
    return Recording(path, attrs, trials, problems, source)


def _scan(path: Path) -> tuple[dict | None, dict, bytes]:
    """Records in ``path``'s bytes, read once, whole: (latest file record, {trial name: (header,
    arrays)}, the bytes)."""
    files, trials = [], {}
    with open(path, "rb") as fh:  # read, not mmap: a hole in a file on a full tmpfs is SIGBUS under mmap
        mm = fh.read()
    size = len(mm)
    if size:
        pos = mm.find(RECORD_MAGIC)
        found = []
        while pos != -1:
            parsed = _parse_record(mm, pos)
            if parsed is None:
                pos = mm.find(RECORD_MAGIC, pos + 1)
                continue
            found.append(parsed[0])
            pos = mm.find(RECORD_MAGIC, parsed[1])
        files = [h for h in found if h.get("kind") == "file"]
        file_id = files[0].get("file_id") if files else None
        for h in found:
            if h.get("kind") != "trial" or h.get("file_id") != file_id or not isinstance(h.get("name"), str):
                continue
            arrays = _arrays_at(mm, h, size)
            old = trials.get(h["name"])
            if old is None or (arrays is not None, h.get("session", 0)) >= \
                    (old[1] is not None, old[0].get("session", 0)):
                trials[h["name"]] = (h, arrays)
    latest = max(files, key=lambda h: h.get("session", 0)) if files else None
    return latest, trials, mm


def _arrays_at(mm, header: dict, size: int) -> tuple | None:
    """The trial's three arrays read at their recorded offsets (format 3: from their recorded chunks),
    in float64 physical units, or None if cut off or damaged."""
    if isinstance(header.get("arrays"), dict) and isinstance(header["arrays"].get("stimulus"), dict) \
            and "chunks" in header["arrays"]["stimulus"]:
        return _arrays_from_chunks(mm, header)
    try:
        out = []
        for key in ("stimulus", "response", "timestamps"):
            spec = header["arrays"][key]
            shape = tuple(int(s) for s in spec["shape"])
            dtype = np.dtype(spec["dtype"])
            if dtype.kind != "f":
                return None
            n = int(np.prod(shape)) if shape else 1
            if n == 0:
                out.append(np.zeros(shape, dtype))
                continue
            offset = int(spec["offset"])
            if offset < 0 or offset + n * dtype.itemsize > size:
                return None
            out.append(np.frombuffer(mm, dtype, n, offset).reshape(shape).astype(np.float64))
        if trial_digest_v2(header["attrs"], *out) != header["sha256"]:
            return None
        return tuple(out)
    except (KeyError, TypeError, ValueError, OverflowError):
        return None


def _arrays_from_chunks(mm, header: dict) -> tuple | None:
    """Format 3's :func:`_arrays_at`: each array rebuilt from its chunks, checked against the trial's
    checksum over the stored values."""
    try:
        specs = {key: header["arrays"][key] for key in ("stimulus", "response", "timestamps")}
        got = [_storage.from_chunks(mm, spec) for spec in specs.values()]
        if any(g is None for g in got):
            return None
        if _digest_v3(header["attrs"], specs, _storage.stored_digest(a for a, _ in got)) != header["sha256"]:
            return None
        return tuple(_storage.decode(a, scale, a.shape) for a, scale in got)
    except (KeyError, TypeError, ValueError, AttributeError, PrclabError):
        return None


def _recover(path: Path, why: str, attrs: dict | None = None, problems: list | None = None,
             scanned: tuple | None = None) -> Recording:
    """Read ``path`` from its records alone (no HDF5; ``scanned``: its :func:`_scan` if already made);
    ``why`` is the first problem named."""
    record, found, _ = scanned or _scan(path)
    if record is None and attrs is None:
        raise PrclabError(f"recording {path}: {why or 'damaged'}; no prclab recording records found "
                          f"(a format 1 recording, or not a recording)")
    problems = list(problems or [])
    if attrs is None:
        attrs = dict(record.get("attrs", {})) if record else {}
        _version(attrs, path)
    trials, lost = [], []
    for name in sorted(found):
        header, arrays = found[name]
        if arrays is None:
            lost.append(name)
            continue
        try:
            trials.append(_trial_record(header["attrs"], arrays, header["sha256"]))
        except (KeyError, TypeError, ValueError):
            lost.append(name)
    head = [why] if why else []
    if why:
        head.append(f"{len(trials)} intact trial(s) recovered from their in-file records")
    return Recording(path, attrs, trials,
                     head + problems + [f"trial {n}: lost (its arrays were cut off or damaged)" for n in lost])


def _rebuild(path: Path) -> None:
    """Rewrite a recording HDF5 cannot open from its records; the original is kept beside it."""
    scanned = _scan(path)
    rec = _recover(path, "rebuild", scanned=scanned)
    if rec.attrs.get("format") != FORMAT:
        raise PrclabError(f"recording {path}: cannot be rebuilt (no file record)")
    _, found, mm = scanned
    tmp = path.with_name(path.name + ".rebuild")
    if tmp.exists():
        tmp.unlink()
    log = None  # the safety log (chunked, not in the records): kept where HDF5 can still read it
    if _hdf5_problem(path) is None:
        try:
            with h5py.File(path, "r") as src:
                ds = _inside(src, "safety_delivered")
                log = ds[:int(ds.attrs["n"])]
        except (OSError, RuntimeError, KeyError, ValueError, TypeError, PrclabError):
            log = None
    names = sorted(n for n, (h, a) in found.items() if a is not None)
    keep = [n for i, n in enumerate(names) if n == f"{i:06d}"]
    try:
        w = RecordingWriter.__new__(RecordingWriter)
        w.path, w.fsync, w._lock, w.n_done = tmp, True, None, 0
        w.storage = Storage.from_description(rec.attrs.get("storage"))
        w._f = h5py.File(tmp, "x", libver=_LIBVER)
        with w._f:
            for key, value in rec.attrs.items():
                w._f.attrs[key] = json.dumps(value) if isinstance(value, (dict, list)) else value
            w.session = max(0, len(rec.attrs.get("sessions", [])) - 1)
            w._write_file_record()
            trials = w._f.create_group("trials")
            for name in keep:
                header, arrays = found[name]
                state = _state_at(mm, header)
                w.session = int(header["attrs"].get("session", 0))
                attrs = {k: v for k, v in header["attrs"].items() if k not in ("sha256", "nonfinite")}
                w._write_trial(trials, name, *arrays, state, attrs)
            if log is not None and log.ndim == 2:
                w.note_delivered(log)
            w._sync()
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise _write_error(path, exc, "rebuilding it from its records") from None
    os.replace(path, path.with_name(f"{path.name}.damaged-{_dt.datetime.now():%Y%m%dT%H%M%S}"))
    os.replace(tmp, path)


def _state_at(mm, header: dict) -> dict | None:
    specs = header.get("state")
    if not specs:
        return None
    state = {}
    for key, spec in specs.items():
        dtype, shape = np.dtype(spec["dtype"]), tuple(spec["shape"])
        n = int(np.prod(shape)) if shape else 1
        state[key] = np.zeros(shape, dtype) if n == 0 or spec["offset"] is None else \
            np.frombuffer(mm, dtype, n, int(spec["offset"])).reshape(shape).copy()
    if _state_digest(state) != header.get("state_sha256"):
        return None
    return state


def count_intact_trials(path: str | Path) -> int:
    """How many trials ``0, 1, ...`` in a row carry their checksum (not verified: cheap, reads metadata
    only, but a cut file is recovered by a scan); 0 if the file cannot be read that way."""
    path = Path(path)
    try:
        _check_file(path)
        if _hdf5_problem(path) is not None:
            return len(read_recording(path).trials)
        with h5py.File(path, "r") as f:
            trials = _inside(f, "trials")
            n = 0
            for i, name in enumerate(sorted(trials)):
                if name != f"{i:06d}" or "sha256" not in _inside(trials, name).attrs:
                    break
                n += 1
            return n
    except (PrclabError, OSError, KeyError, RuntimeError, ValueError):
        return 0


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
