"""An NWB file with a trials table, read as a prclab recording (``docs/interop-nwb.md``).

What is read (any NWB file, not only prclab's own export, :mod:`prclab.protocols.export`):

- response: the ``ElectricalSeries`` in ``/acquisition`` named ``response``, else the only one there;
  in volts (``data * conversion * channel_conversion + offset``); ``rate`` and ``starting_time``, or
  ``timestamps``;
- stimulus: the ``TimeSeries`` in ``/stimulus/presentation`` named ``stimulus``, else the only one
  there, else none (0 stimulus channels); same rate as the response, aligned by its start time;
- trials: ``/intervals/trials``, each row's ``start_time``/``stop_time`` turned into samples of the
  response; the label from ``label_column`` (default ``label``), the split from ``split_column``
  (default ``split``; absent: :func:`prclab.protocols.foreign.fallback_splits`); ``index``, ``item``,
  ``item_id``, ``repetition``, ``stim_start``, ``stim_stop`` where the table has them, and the
  trial's ``checksum`` (prclab's export: the recording's own, so a twin fitted on the recording knows
  the NWB file for the same trials; else one computed from the trial as read);
- attributes: those prclab exported (``/scratch/prclab_attrs``, JSON) or, for a file made elsewhere,
  a device description from the series (channel names from the electrodes table), the file's
  ``protocol`` text and the rate.

Integrity: a file cut short is named (its HDF5 superblock's end of file lies past its size) before HDF5
is handed it; a trial whose ``nwb_sha256`` (prclab's export) does not match its fields and samples is
named in ``problems`` and left out, whatever ``verify`` says (the arrays are read now anyway).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from prclab.errors import PrclabError

from .export import ATTRS_SCRATCH, DIGEST_FIELDS, RESPONSE, nwb_trial_digest
from .foreign import channel_description, continuous_recording
from .recording import Recording, _check_file, _hdf5_problem


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def _pick(container, name: str, kind: type, what: str, path: Path):
    """``container[name]`` or its only ``kind`` member; None if it holds none of that kind."""
    items = {k: v for k, v in container.items() if isinstance(v, kind)}
    if name in items:
        return items[name]
    if len(items) == 1:
        return next(iter(items.values()))
    if items:
        raise PrclabError(f"NWB file {path}: {len(items)} {what}s ({', '.join(sorted(items))}) and none named "
                          f"{name!r}; name one in a mapping file")
    return None


def _timing(series, n: int, path: Path) -> tuple[float, np.ndarray]:
    """(rate Hz, ``(n,)`` seconds) of a TimeSeries."""
    if series.rate is not None:
        rate = float(series.rate)
        t = float(series.starting_time or 0.0) + np.arange(n) / rate
    else:
        t = np.asarray(series.timestamps[:], np.float64)
        steps = np.diff(t)
        if len(t) != n or len(t) < 2 or not np.all(steps > 0):
            raise PrclabError(f"NWB file {path}: series {series.name!r} has no rate and its timestamps "
                              f"do not increase")
        rate = float(1.0 / np.median(steps))
    if not rate > 0:
        raise PrclabError(f"NWB file {path}: series {series.name!r} has no positive rate")
    return rate, t


def _physical(series, raw: np.ndarray) -> np.ndarray:
    """``raw`` samples of ``series`` in its unit: ``raw * conversion * channel_conversion + offset``."""
    gain = float(series.conversion) * np.asarray(getattr(series, "channel_conversion", None)
                                                 if getattr(series, "channel_conversion", None) is not None
                                                 else 1.0, np.float64)
    return raw.astype(np.float64) * gain + float(getattr(series, "offset", 0.0) or 0.0)


def _column(table, name: str):
    return list(table[name][:]) if name in table.colnames else None


def read_nwb(path: str | Path, verify: bool = True, label_column: str = "label",
             split_column: str = "split") -> Recording:
    """Open NWB file ``path`` as a :class:`Recording` (module docstring).

    Raises:
        PrclabError: not found, cut short, not NWB, no response series, no trials table, no label
            column, trials outside the recorded samples, a stimulus at another rate.
    """
    from pynwb import NWBHDF5IO, TimeSeries
    from pynwb.ecephys import ElectricalSeries

    path = Path(path)
    _check_file(path, "NWB file")
    problem = _hdf5_problem(path)
    if problem is not None:
        raise PrclabError(f"NWB file {path}: {problem}")
    with warnings.catch_warnings():  # pynwb's warnings on a foreign file: what matters is raised below
        warnings.simplefilter("ignore")
        io = None
        try:
            io = NWBHDF5IO(str(path), "r", load_namespaces=True)
            nwb = io.read()
        except Exception as exc:  # hdmf/pynwb on a foreign or damaged file: any failure is the file's
            if io is not None:
                io.close()
            raise PrclabError(f"NWB file {path}: not readable as NWB ({_one_line(exc)})") from None
        with io:
            try:
                return _read(path, nwb, label_column, split_column, ElectricalSeries, TimeSeries)
            except PrclabError:
                raise
            except Exception as exc:  # damaged datasets inside a file that opened
                raise PrclabError(f"NWB file {path}: damaged ({_one_line(exc)})") from None


def _read(path: Path, nwb, label_column: str, split_column: str, ElectricalSeries, TimeSeries) -> Recording:
    series = _pick(nwb.acquisition, RESPONSE, ElectricalSeries, "ElectricalSeries", path)
    if series is None:
        raise PrclabError(f"NWB file {path}: no ElectricalSeries in /acquisition to read as the response")
    raw = np.asarray(series.data[:])
    if raw.ndim == 1:
        raw = raw[:, None]
    n_electrodes = len(series.electrodes.data[:])
    if raw.ndim != 2 or raw.shape[1] != n_electrodes:
        raise PrclabError(f"NWB file {path}: series {series.name!r} holds {raw.shape} samples for "
                          f"{n_electrodes} electrodes; NWB stores time x channels")
    n = len(raw)
    rate, times = _timing(series, n, path)
    response = _physical(series, raw)
    stim_series = _pick(nwb.stimulus, "stimulus", TimeSeries, "stimulus TimeSeries", path)
    stimulus = np.zeros((n, 0))
    if stim_series is not None:
        s = np.asarray(stim_series.data[:])
        s = s[:, None] if s.ndim == 1 else s
        s_rate, s_times = _timing(stim_series, len(s), path)
        if abs(s_rate - rate) > 1e-9 * rate:
            raise PrclabError(f"NWB file {path}: stimulus at {s_rate:g} Hz, response at {rate:g} Hz; prclab "
                              f"reads them sample by sample")
        shift = int(round((s_times[0] - times[0]) * rate)) if len(s) else 0
        stimulus = np.zeros((n, s.shape[1]))
        a, b = max(0, shift), min(n, shift + len(s))
        if b > a:
            stimulus[a:b] = _physical(stim_series, s[a - shift:b - shift])
    table = nwb.trials
    if table is None or len(table) == 0:
        raise PrclabError(f"NWB file {path}: no trials table (/intervals/trials) marks the trials")
    labels = _column(table, label_column)
    if labels is None:
        raise PrclabError(f"NWB file {path}: the trials table has no {label_column!r} column (has "
                          f"{', '.join(table.colnames)})")
    labels = [x.decode() if isinstance(x, bytes) else str(x) for x in labels]
    splits = _column(table, split_column)
    splits = None if splits is None else [x.decode() if isinstance(x, bytes) else str(x) for x in splits]
    start, stop = np.asarray(table["start_time"][:], float), np.asarray(table["stop_time"][:], float)
    starts = np.searchsorted(times, start - 0.5 / rate)
    stops = np.searchsorted(times, stop - 0.5 / rate)
    names = [k for k in ("index", "item", "item_id", "repetition", "stim_start", "stim_stop", "checksum")
             if k in table.colnames]
    cols = {k: [x.decode() if isinstance(x, bytes) else x for x in _column(table, k)] for k in names}
    fields = [{k: cols[k][i] for k in names} for i in range(len(labels))]
    attrs = _attrs(nwb, path, series, stim_series, rate, response, stimulus)
    problems = []
    digests = _column(table, "nwb_sha256")
    keep = np.ones(len(labels), bool)
    if digests is not None and set(DIGEST_FIELDS) <= set(names) | {"label", "split"} and splits is not None:
        for i, (a, b) in enumerate(zip(starts, stops)):
            got = {**fields[i], "label": labels[i], "split": splits[i]}
            got = {k: (int(got[k]) if k not in ("label", "split", "item_id") else str(got[k]))
                   for k in DIGEST_FIELDS}
            if nwb_trial_digest(got, raw[a:b], stimulus[a:b]) != str(digests[i]):
                keep[i] = False
                problems.append(f"trial {int(got['index']):06d}: label/split or samples edited or damaged "
                                f"(nwb_sha256 mismatch)")
        attrs["verified_by"] = "nwb_sha256"  # recording_info: these trials' stored checksums were checked
    idx = np.flatnonzero(keep)
    rec = continuous_recording(path, attrs, response, stimulus, times, starts[idx], stops[idx],
                               [labels[i] for i in idx], None if splits is None else [splits[i] for i in idx],
                               [fields[i] for i in idx], problems)
    return rec


def _attrs(nwb, path: Path, series, stim_series, rate: float, response, stimulus) -> dict:
    """The recording's file-level attributes: prclab's own (scratch JSON) or built from the file."""
    attrs, scratch = {}, getattr(nwb, "scratch", None) or {}
    if ATTRS_SCRATCH in scratch:
        try:
            attrs = json.loads(str(scratch[ATTRS_SCRATCH].data))
        except ValueError:
            attrs = {}
        attrs = attrs if isinstance(attrs, dict) else {}
        attrs.pop("verified_by", None)  # set by _read only when this file's checksums were checked
    if not isinstance(attrs.get("device"), dict):
        table = series.electrodes.table
        rows = list(series.electrodes.data[:])
        names = [str(table["channel"][r]) if "channel" in table.colnames else str(r) for r in rows]
        stim_names = [f"stim{i}" for i in range(stimulus.shape[1])]
        attrs["device"] = {"device": "nwb", "class": type(series).__name__, "rate_hz": rate,
                           "stimulus": channel_description(stim_names, stimulus),
                           "response": channel_description(names, response, str(series.unit))}
    attrs.update({"format": "nwb", "source": str(path), "rate_hz": rate,
                  "protocol_text": str(nwb.protocol or attrs.get("protocol_text", "") or "")})
    return attrs
