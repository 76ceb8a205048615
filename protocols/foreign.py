"""Recordings made elsewhere, read as prclab recordings: NWB files, native MEA formats through
SpikeInterface's extractors (given a mapping file), and brainflow's own data files.

:func:`foreign_reader` is the one dispatch :func:`prclab.protocols.recording.read_recording` makes: by
suffix (``.nwb``; ``.toml`` a mapping file; ``.csv``/``.tsv``/``.txt`` a file written by brainflow's
``DataFilter.write_file``) or, for an HDF5 file named other than ``.h5``/``.hdf5`` (prclab's own),
by its root's ``neurodata_type`` (``NWBFile``).  Every reader returns the same
:class:`~prclab.protocols.recording.Recording` of :class:`~prclab.protocols.recording.Trial` objects
(arrays in memory, ``source`` None), so ``prclab train``, ``replay``, ``twin fit`` and the ``replay:``
device take any of them.

Mapping file (TOML, paths relative to it; ``docs/interop-nwb.md``)::

    [source]
    format = "binary"          # a SpikeInterface reader: "binary" (a raw file), "nwb", or any
                               # spikeinterface.extractors.read_<format> (e.g. "maxwell", "openephys",
                               # "intan", "axona"), or "brainflow" (a DataFilter.write_file file)
    path = "traces.raw"        # the file or folder the reader opens
    options = { sampling_frequency = 20000.0, num_channels = 6, dtype = "int16" }  # reader keywords
    board = "cyton"            # brainflow only: the board whose row layout the file has
    [channels]
    stimulus = ["4", "5"]      # channel ids (SpikeInterface) carrying the stimulus, volts after gain
    response = ["0", "1"]      # optional: default every channel that is not stimulus or event
    [trials]
    table = "trials.csv"       # a CSV with start_time, stop_time (seconds from the first sample) ...
    label_column = "label"     # ... and the label column (default "label"); split_column optional
    event_channel = "6"        # or: a channel whose non-zero samples are markers (brainflow: its
                               # marker row); a marker starts a trial that lasts to the next one
    labels = { "1" = "left", "2" = "right" }   # marker value -> label (default: the value, "1")
    end_markers = [9]          # marker values that end a trial without starting one
    split_column = "split"

Trials without a recorded split are split deterministically: within each label, every 4th trial in
time order is ``test``, the others ``train`` (:func:`fallback_splits`).
"""

from __future__ import annotations

import csv
import tomllib
from pathlib import Path
from typing import Callable

import numpy as np

from prclab.errors import PrclabError

from .recording import Recording, Trial, trial_digest_v2

BRAINFLOW_SUFFIXES = (".csv", ".tsv", ".txt")
#: every file name ending :func:`prclab.protocols.recording.read_recording` reads (prclab's own, NWB,
#: mapping files, brainflow files), for a command that checks a recording's name before reading it
RECORDING_SUFFIXES = (".h5", ".hdf5", ".nwb", ".toml", *BRAINFLOW_SUFFIXES)
#: brainflow boards recognised by a data file's column count alone (others need a mapping file)
BRAINFLOW_BOARDS = ("cyton", "ganglion")
#: every how-many-th trial of a label is ``test`` when the source names no split
TEST_EVERY = 4


def foreign_reader(path: Path) -> Callable[[Path, bool], Recording] | None:
    """The reader for ``path`` when it is not a prclab recording (module docstring), else None."""
    suffix = path.suffix.lower()
    if suffix == ".nwb":
        from .nwb_import import read_nwb
        return read_nwb
    if suffix == ".toml":
        return read_mapped
    if suffix in BRAINFLOW_SUFFIXES:
        return read_brainflow
    if suffix not in (".h5", ".hdf5") and _is_nwb(path):  # prclab's own names are left to prclab
        from .nwb_import import read_nwb
        return read_nwb
    return None


def _is_nwb(path: Path) -> bool:
    """An intact HDF5 file whose root says ``neurodata_type = NWBFile``."""
    from .recording import _hdf5_problem

    try:
        if not path.is_file() or _hdf5_problem(path) is not None:
            return False
        import h5py

        with h5py.File(path, "r") as f:
            kind = f.attrs.get("neurodata_type")
    except (OSError, RuntimeError, ValueError):
        return False
    return (kind.decode() if isinstance(kind, bytes) else kind) == "NWBFile"


def fallback_splits(labels: list[str]) -> list[str]:
    """``test`` for every :data:`TEST_EVERY`-th trial of each label (in the order given), else
    ``train``: a split for a source that names none, with every class on both sides."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append("test" if seen[label] % TEST_EVERY == 0 else "train")
    return out


def channel_description(names: list[str], values: np.ndarray, unit: str = "V") -> list[dict]:
    """Device-description channels (``name``, ``unit``, ``low``, ``high``) for ``values`` ``(n, c)``:
    the range is the one seen in the data (at least +-1 unit)."""
    lo = np.minimum(values.min(axis=0), -1.0) if values.size else np.full(len(names), -1.0)
    hi = np.maximum(values.max(axis=0), 1.0) if values.size else np.full(len(names), 1.0)
    return [{"name": str(n), "unit": unit, "low": float(a), "high": float(b)} for n, a, b in zip(names, lo, hi)]


def continuous_recording(path: Path, attrs: dict, response: np.ndarray, stimulus: np.ndarray,
                         timestamps: np.ndarray, starts: np.ndarray, stops: np.ndarray, labels: list[str],
                         splits: list[str] | None = None, fields: list[dict] | None = None,
                         problems: list[str] | None = None) -> Recording:
    """A :class:`Recording` cut from continuous arrays.

    Args:
        response: ``(n, n_response)`` in the response channels' units; stimulus: ``(n, n_stimulus)``
            volts (``n_stimulus`` may be 0); timestamps: ``(n,)`` seconds.
        starts, stops: each trial's first and end (exclusive) sample, ``(trials,)``.
        labels, splits: per trial (splits None: :func:`fallback_splits`).
        fields: per trial, optional ``index``, ``item``, ``item_id``, ``repetition``, ``stim_start``,
            ``stim_stop`` (defaults: the trial's position, position, position as text, 0, 0, its length)
            and ``checksum`` (the one the source stores; default :func:`trial_checksum` of the trial
            as read).
    Raises:
        PrclabError: a trial outside the data or empty, no trials.
    """
    n = len(response)
    if len(starts) == 0:
        raise PrclabError(f"recording {path}: no trials marked")
    bad = np.flatnonzero((starts < 0) | (stops > n) | (stops <= starts))
    if bad.size:
        k = int(bad[0])
        raise PrclabError(f"recording {path}: trial {k} spans samples {int(starts[k])}..{int(stops[k])}, "
                          f"outside the {n} samples recorded")
    splits = fallback_splits(labels) if splits is None else splits
    trials = []
    for k, (a, b) in enumerate(zip(starts.tolist(), stops.tolist())):
        f = (fields or [{}] * len(starts))[k]
        r = np.ascontiguousarray(response[a:b], np.float64)
        t = Trial(int(f.get("index", k)), int(f.get("item", k)), int(f.get("repetition", 0)),
                  str(labels[k]), str(splits[k]), str(f.get("item_id", k)),
                  np.ascontiguousarray(stimulus[a:b], np.float64), int(f.get("stim_start", 0)),
                  int(f.get("stim_stop", b - a)), r, np.asarray(timestamps[a:b], np.float64), 0,
                  int(np.count_nonzero(~np.isfinite(r))))
        t.checksum = str(f.get("checksum") or "") or trial_checksum(t)
        trials.append(t)
    return Recording(path, attrs, trials, list(problems or []), None)


def trial_checksum(trial: Trial) -> str:
    """sha256 hex of an in-memory trial's fields (index, item, item_id, repetition, label, split,
    stim_start, stim_stop) and arrays as read (:func:`~prclab.protocols.recording.trial_digest_v2`):
    the checksum of a trial whose source stores none, so a twin fitted on it can tell the file again."""
    fields = {k: getattr(trial, k) for k in ("index", "item", "item_id", "repetition", "label", "split",
                                             "stim_start", "stim_stop")}
    return trial_digest_v2(fields, trial.stimulus, trial.response, trial.timestamps)


def marker_trials(markers: np.ndarray, labels: dict[str, str] | None = None,
                  end_markers=()) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Trials from a marker channel ``(n,)``: each non-zero sample (not in ``end_markers``) starts a
    trial that ends at the next non-zero sample or the end; its label is ``labels[value]`` (value
    written as ``f"{v:g}"``) or that text.  Returns (starts, stops, labels)."""
    at = np.flatnonzero(np.nan_to_num(markers) != 0)
    values = markers[at]
    ends = np.append(at[1:], len(markers))
    ends_set = {float(v) for v in end_markers}
    keep = np.array([float(v) not in ends_set for v in values], bool)
    names = [f"{float(v):g}" for v in values[keep]]
    return at[keep], ends[keep], [(labels or {}).get(v, v) for v in names]


def table_trials(path: Path, label_column: str, split_column: str | None, rate: float
                 ) -> tuple[np.ndarray, np.ndarray, list[str], list[str] | None]:
    """Trials from a CSV table with ``start_time`` and ``stop_time`` (seconds from the first sample)
    and the label column: (starts, stops, labels, splits or None)."""
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PrclabError(f"trials table {path}: unreadable ({exc})") from None
    need = ["start_time", "stop_time", label_column] + ([split_column] if split_column else [])
    missing = [c for c in need if not rows or c not in rows[0]]
    if missing:
        raise PrclabError(f"trials table {path}: no column {missing[0]!r} "
                          f"(has {', '.join(rows[0]) if rows else 'no rows'})")
    try:
        start = np.array([float(r["start_time"]) for r in rows])
        stop = np.array([float(r["stop_time"]) for r in rows])
    except ValueError as exc:
        raise PrclabError(f"trials table {path}: {exc}") from None
    splits = [r[split_column] for r in rows] if split_column else None
    return (np.rint(start * rate).astype(np.int64), np.rint(stop * rate).astype(np.int64),
            [r[label_column] for r in rows], splits)


# -- mapping files ---------------------------------------------------------------------------------
def load_mapping(path: Path) -> dict:
    """The mapping file's tables, checked: ``source`` (``format``, ``path``), ``channels``, ``trials``."""
    try:
        mapping = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise PrclabError(f"mapping file {path}: unreadable ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise PrclabError(f"mapping file {path}: not valid TOML ({exc})") from None
    source = mapping.get("source")
    if not isinstance(source, dict) or not isinstance(source.get("format"), str) \
            or not isinstance(source.get("path"), str):
        raise PrclabError(f"mapping file {path}: needs [source] with format and path")
    known = {"source", "channels", "trials"}
    extra = sorted(set(mapping) - known)
    if extra:
        raise PrclabError(f"mapping file {path}: unknown table [{extra[0]}] (known: source, channels, trials)")
    for key in ("channels", "trials"):
        if not isinstance(mapping.setdefault(key, {}), dict):
            raise PrclabError(f"mapping file {path}: [{key}] must be a table")
    return mapping


def read_mapped(path: Path, verify: bool = True) -> Recording:
    """A recording described by mapping file ``path`` (module docstring)."""
    path = Path(path)
    mapping = load_mapping(path)
    source, channels, trials = mapping["source"], mapping["channels"], mapping["trials"]
    target = (path.parent / source["path"]).resolve()
    if not target.exists():
        raise PrclabError(f"mapping file {path}: [source] path {target} not found")
    if source["format"] == "brainflow":
        return read_brainflow(target, verify, board=source.get("board"), trials=trials)
    if source["format"] == "nwb" and not channels:
        from .nwb_import import read_nwb
        return read_nwb(target, verify, label_column=trials.get("label_column", "label"),
                        split_column=trials.get("split_column", "split"))
    return _read_extractor(path, target, source, channels, trials)


def _extractor(path: Path, target: Path, source: dict):
    """The SpikeInterface recording extractor that ``[source]`` names, opened."""
    import spikeinterface.extractors as se

    fmt, options = source["format"], source.get("options", {})
    if not isinstance(options, dict):
        raise PrclabError(f"mapping file {path}: [source] options must be a table")
    if fmt == "binary":
        from spikeinterface.core import BinaryRecordingExtractor as reader
        options = {"file_paths": [str(target)], **options}
    else:
        reader = getattr(se, f"read_{fmt}", None)
        if reader is None:
            raise PrclabError(f"mapping file {path}: SpikeInterface has no reader {fmt!r} "
                              f"(spikeinterface.extractors.read_{fmt})")
        options = {**options}
        target_key = "file_path" if target.is_file() else "folder_path"
        options.setdefault(target_key, str(target))
    try:
        return reader(**options)
    except Exception as exc:  # a third-party reader on a foreign file: any failure is the file's
        raise PrclabError(f"mapping file {path}: SpikeInterface's {fmt} reader cannot open {target} "
                          f"({' '.join(str(exc).split())[:300] or type(exc).__name__})") from None


def _read_extractor(path: Path, target: Path, source: dict, channels: dict, trials: dict) -> Recording:
    si = _extractor(path, target, source)
    if si.get_num_segments() != 1:
        raise PrclabError(f"mapping file {path}: {target} holds {si.get_num_segments()} segments; "
                          f"prclab reads one")
    ids = [str(c) for c in si.get_channel_ids()]

    def chosen(key, default):
        names = channels.get(key, default)
        if not isinstance(names, list) or any(str(n) not in ids for n in names):
            raise PrclabError(f"mapping file {path}: [channels] {key} = {names!r}: channel ids are "
                              f"{', '.join(ids)}")
        return [str(n) for n in names]

    event = trials.get("event_channel")
    if event is not None and str(event) not in ids:
        raise PrclabError(f"mapping file {path}: [trials] event_channel {event!r} is not a channel "
                          f"({', '.join(ids)})")
    stim_ids = chosen("stimulus", [])
    resp_ids = chosen("response", [c for c in ids if c not in stim_ids and c != str(event)])
    rate = float(si.get_sampling_frequency())
    try:
        volts = {key: _volts(si, [si.get_channel_ids()[ids.index(c)] for c in names])
                 for key, names in (("response", resp_ids), ("stimulus", stim_ids))}
        markers = si.get_traces(channel_ids=[si.get_channel_ids()[ids.index(str(event))]])[:, 0] \
            if event is not None else None
    except Exception as exc:  # a third-party reader on a foreign file: any failure is the file's
        raise PrclabError(f"mapping file {path}: {target} unreadable ({' '.join(str(exc).split())[:300]})") \
            from None
    starts, stops, labels, splits = _mapped_trials(path, trials, markers, rate)
    n = si.get_num_samples()
    attrs = {"format": f"spikeinterface:{source['format']}", "source": str(target), "rate_hz": rate,
             "protocol_text": "", "device": {"device": source["format"], "class": type(si).__name__,
                                             "rate_hz": rate,
                                             "stimulus": channel_description(stim_ids, volts["stimulus"]),
                                             "response": channel_description(resp_ids, volts["response"])}}
    return continuous_recording(path, attrs, volts["response"], volts["stimulus"], np.arange(n) / rate,
                                starts, stops, labels, splits)


def _volts(si, channel_ids: list) -> np.ndarray:
    """``(n, len(channel_ids))`` float64: the channels in volts where the extractor knows their gains
    (SpikeInterface scales to microvolts), else as stored."""
    if not channel_ids:
        return np.zeros((si.get_num_samples(), 0))
    if si.get_property("gain_to_uV") is not None and si.get_property("offset_to_uV") is None:
        si.set_channel_offsets(0.0)  # a gain given alone (SpikeInterface scales only with both)
    scaled = si.has_scaleable_traces()
    traces = si.get_traces(channel_ids=channel_ids, return_in_uV=scaled).astype(np.float64)
    return traces * 1e-6 if scaled else traces


def _mapped_trials(path: Path, trials: dict, markers: np.ndarray | None, rate: float):
    """(starts, stops, labels, splits) from ``[trials]``: a ``table`` CSV or the event channel."""
    if "table" in trials:
        return table_trials((path.parent / str(trials["table"])), str(trials.get("label_column", "label")),
                            trials.get("split_column"), rate)
    if markers is None:
        raise PrclabError(f"mapping file {path}: [trials] needs table or event_channel")
    labels = {str(k): str(v) for k, v in trials.get("labels", {}).items()}
    starts, stops, names = marker_trials(markers, labels, trials.get("end_markers", ()))
    return starts, stops, names, None


# -- brainflow data files --------------------------------------------------------------------------
def read_brainflow(path: Path, verify: bool = True, board: str | None = None,
                   trials: dict | None = None) -> Recording:
    """A file written by brainflow's ``DataFilter.write_file`` (one sample per line, the board's rows
    as tab-separated columns): its ExG channels (microvolts in the file) as the response in volts, its timestamp
    channel as the timestamps, its marker channel as the trial boundaries (:func:`marker_trials`; the
    ``[trials]`` table of a mapping file sets ``labels`` and ``end_markers``).  No stimulus channel:
    the trials' stimulus has 0 columns.

    Args:
        board: a brainflow board name (``cyton``, ``cyton_daisy``, ``synthetic`` ...); default: the one
            of :data:`BRAINFLOW_BOARDS` whose row count the file's columns match.
    """
    from brainflow.board_shim import BoardShim
    from brainflow.exit_codes import BrainFlowError

    from prclab.drivers.brainflow_board import VOLTS_PER_MICROVOLT, board_id_of

    path = Path(path)
    trials = trials or {}
    try:  # parsed here, not by brainflow's C++ reader: a cut or foreign file must be named, not guessed
        data = np.loadtxt(path, delimiter="\t", ndmin=2, dtype=np.float64).T
    except (OSError, UnicodeDecodeError) as exc:
        raise PrclabError(f"brainflow file {path}: unreadable ({exc})") from None
    except ValueError as exc:
        raise PrclabError(f"brainflow file {path}: not tab-separated numbers of one row length, as "
                          f"DataFilter.write_file writes ({' '.join(str(exc).split())[:200]})") from None
    if data.shape[1] == 0:
        raise PrclabError(f"brainflow file {path}: holds no samples")
    if board is None:
        fits = [b for b in BRAINFLOW_BOARDS if BoardShim.get_num_rows(board_id_of(b)) == data.shape[0]]
        if len(fits) != 1:
            raise PrclabError(f"brainflow file {path}: {data.shape[0]} columns match no board of "
                              f"{', '.join(BRAINFLOW_BOARDS)}; name it in a mapping file ([source] board)")
        board = fits[0]
    board_id = board_id_of(str(board))
    if BoardShim.get_num_rows(board_id) != data.shape[0]:
        raise PrclabError(f"brainflow file {path}: {data.shape[0]} columns, a {board} board has "
                          f"{BoardShim.get_num_rows(board_id)}")
    rate = float(BoardShim.get_sampling_rate(board_id))
    exg = BoardShim.get_exg_channels(board_id)
    response = data[exg].T * VOLTS_PER_MICROVOLT
    stamps = data[BoardShim.get_timestamp_channel(board_id)]
    markers = data[BoardShim.get_marker_channel(board_id)]
    labels = {str(k): str(v) for k, v in trials.get("labels", {}).items()}
    starts, stops, names = marker_trials(markers, labels, trials.get("end_markers", ()))
    try:
        names_exg = BoardShim.get_eeg_names(board_id)[:len(exg)]
    except BrainFlowError:
        names_exg = [f"exg{i}" for i in range(len(exg))]
    attrs = {"format": "brainflow", "source": str(path), "rate_hz": rate, "protocol_text": "",
             "device": {"device": "brainflow", "class": "BrainflowDevice", "board": str(board),
                        "board_id": int(board_id), "rate_hz": rate, "stimulus": [],
                        "response": channel_description(names_exg, response)}}
    t = stamps - stamps[0] if np.all(np.isfinite(stamps)) else np.arange(len(stamps)) / rate
    return continuous_recording(path, attrs, response, np.zeros((len(response), 0)), t, starts, stops, names)

