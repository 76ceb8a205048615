"""``prclab export REC OUT.nwb``: a recording as an NWB file (pynwb; ``docs/interop-nwb.md``); and
``prclab export REC OUT.fif``: as an MNE raw file (:func:`export_fif`).

Layout (it passes nwbinspector with no CRITICAL and no BEST_PRACTICE_VIOLATION finding, and
SpikeInterface's ``read_nwb_recording`` reads the response; ``../shared/notes/interop.md``)::

    /acquisition/response      ElectricalSeries, (samples, response channels), every trial end to end;
                               int16/int32 ADC counts with ``channel_conversion`` (volts per count,
                               per channel) and ``offset`` when the recording stores counts
                               (:func:`response_counts`) that share one offset, else float32 volts;
                               ``rate`` and ``starting_time`` (the first trial's first timestamp)
    /general/extracellular_ephys/electrodes
                               one row per response channel, then one per stimulus channel: ``rel_x``,
                               ``rel_y`` micrometres on the array where the substrate places its
                               electrodes (:func:`_positions`), else the channel's index and 0,
                               ``location``, ``group``, ``records`` and ``stimulates`` (bool), ``channel``
                               (the prclab channel name)
    /stimulus/presentation/stimulus
                               TimeSeries (samples, stimulus channels) float64 volts as commanded
    /intervals/stimulation     TimeIntervals: one row per delivered stimulation event (a run of samples
                               on one stimulus channel away from its rest level), ``electrode``
                               referencing the electrodes table, ``trial``, ``peak_V``
    /intervals/trials          start/stop time per trial, ``label``, ``split``, ``checksum`` (the
                               trial's checksum, ``Trial.checksum``), ``index``, ``item``, ``item_id``,
                               ``repetition``, ``stim_start``/``stim_stop`` (samples within the trial),
                               ``nwb_sha256`` (:func:`nwb_trial_digest`, checked on reading back)
    file metadata              ``protocol`` (the protocol text), ``was_generated_by`` and
                               ``source_script`` (prclab and its version), ``scratch/prclab_attrs``
                               (the recording's file-level attributes as JSON: device, substrate,
                               encoder, readout...), session description; the subject is the
                               substrate (species by :data:`SPECIES`, sex ``U``, age ``P0D/``: unknown)

A recording with any damaged trial is refused (an NWB file would carry no trace of the damage).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import uuid
from pathlib import Path

import numpy as np

from prclab import __version__
from prclab.drivers.base import rest_level
from prclab.errors import PrclabError

from .recording import Recording, read_recording

#: the name of the response ElectricalSeries in ``/acquisition`` (SpikeInterface's
#: ``electrical_series_path="acquisition/response"``)
RESPONSE = "response"
#: the file-level attributes' JSON in ``/scratch``
ATTRS_SCRATCH = "prclab_attrs"
#: the NWB subject's species by substrate model (Latin binomial, as nwbinspector asks); any other
#: substrate (an echo-state network, a hydrogel, a twin) is NCBI's "synthetic construct"
SPECIES = {"potato": "Solanum tuberosum", "organoid": "Homo sapiens"}
SYNTHETIC = "http://purl.obolibrary.org/obo/NCBITaxon_32630"


def response_counts(rec: Recording) -> tuple[np.ndarray, np.ndarray] | None:
    """(volts per count ``(c,)``, offset volts ``(c,)``) when the recording stores its response as
    integer counts (its ``storage`` attribute: ``{"response": "counts", "conversion": [...],
    "offset": [...]}``, one value or one per channel, as :mod:`prclab.protocols.recording_storage`
    writes it), else None (the response is then exported as float32 volts).  The recording's values
    are ``offset + conversion * count``; they are rounded back to counts."""
    storage = rec.attrs.get("storage")
    if isinstance(storage, str):  # a reader that does not decode it (format 2)
        try:
            storage = json.loads(storage)
        except ValueError:
            return None
    if not isinstance(storage, dict) or storage.get("response") != "counts":
        return None
    try:
        gains = np.asarray(storage["conversion"], np.float64).reshape(-1)
        offsets = np.asarray(storage.get("offset") or [0.0], np.float64).reshape(-1)
    except (KeyError, TypeError, ValueError):
        return None
    if not (gains.size and np.all(np.isfinite(gains) & (gains > 0)) and np.all(np.isfinite(offsets))):
        return None
    return gains, offsets


#: HDF5 filters of the series: byte shuffle, then gzip level 1 (every HDF5 reader has both; higher
#: levels bought about 1 % for twice the time on recordings, ``protocols/recording_storage.py``)
GZIP = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
#: the trial fields :func:`nwb_trial_digest` covers (the trials table's columns of those names)
DIGEST_FIELDS = ("label", "split", "index", "item", "item_id", "repetition", "stim_start", "stim_stop")


def nwb_trial_digest(fields: dict, response: np.ndarray, stimulus: np.ndarray) -> str:
    """The ``nwb_sha256`` of a trial in an exported NWB file: sha256 over the canonical JSON of its
    :data:`DIGEST_FIELDS`, then its response rows as stored (counts or float32, little-endian) and its
    stimulus rows (float64 volts, little-endian), so an edited label, split or sample is found when the
    file is read back (:mod:`prclab.protocols.nwb_import`)."""
    h = hashlib.sha256(b"prclab-nwb-trial-v1\0")
    h.update(json.dumps({k: fields[k] for k in DIGEST_FIELDS}, sort_keys=True, separators=(",", ":")).encode())
    h.update(np.ascontiguousarray(response, dtype=response.dtype.newbyteorder("<")))
    h.update(np.ascontiguousarray(stimulus, dtype="<f8"))
    return h.hexdigest()


def _stimulation_events(stimulus: np.ndarray, rest: np.ndarray) -> tuple[np.ndarray, ...]:
    """Runs of samples where a stimulus channel is away from its rest level.

    Args:
        stimulus: ``(n, c)`` volts; rest: ``(c,)`` volts.
    Returns:
        (channel, first sample, end sample (exclusive), peak |V - rest|), each ``(events,)``, sorted by
        first sample.
    """
    active = stimulus != rest
    pad = np.zeros((1, active.shape[1]), bool)
    edges = np.diff(np.concatenate([pad, active, pad]).astype(np.int8), axis=0).T  # (c, n + 1)
    start_c, start_s = np.nonzero(edges == 1)
    stop_s = np.nonzero(edges == -1)[1]  # row-major: the same (channel, run) order as the starts
    n = len(stimulus)
    flat = np.append(np.abs(stimulus - rest).T.ravel(), 0.0)  # channel-major, one spare end element
    bounds = np.stack([start_c * n + start_s, start_c * n + stop_s], axis=1).ravel()
    peak = np.maximum.reduceat(flat, bounds)[::2] if len(bounds) else np.zeros(0)
    order = np.argsort(start_s, kind="stable")
    return start_c[order], start_s[order], stop_s[order], peak[order]


def _rate(rec: Recording) -> float:
    """The sample rate, Hz: the recorded device's ``rate_hz``, else the file's."""
    device = rec.attrs.get("device")
    rate = device.get("rate_hz") if isinstance(device, dict) else None
    rate = rate or rec.attrs.get("rate_hz")
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        rate = 0.0
    if not rate > 0:
        raise PrclabError(f"recording {rec.path}: names no sample rate; cannot export it")
    return rate


def _channel_names(rec: Recording, key: str, count: int, prefix: str) -> list[str]:
    """The ``count`` channel names the recorded device gives for ``key`` (``stimulus`` / ``response``),
    else ``prefix0``, ``prefix1``..."""
    device = rec.attrs.get("device")
    channels = device.get(key) if isinstance(device, dict) else None
    if isinstance(channels, list) and len(channels) == count:
        return [str(c.get("name", f"{prefix}{i}")) if isinstance(c, dict) else f"{prefix}{i}"
                for i, c in enumerate(channels)]
    return [f"{prefix}{i}" for i in range(count)]


def _rest(rec: Recording, count: int) -> np.ndarray:
    """``(count,)`` rest level of each stimulus channel, volts, from the recorded device's ranges (0 V
    where they are not described)."""
    device = rec.attrs.get("device")
    channels = device.get("stimulus") if isinstance(device, dict) else None
    if isinstance(channels, list) and len(channels) == count:
        try:
            return np.array([rest_level(float(c["low"]), float(c["high"])) for c in channels])
        except (KeyError, TypeError, ValueError):
            pass
    return np.zeros(count)


def _positions(rec: Recording, n_resp: int, n_stim: int) -> tuple[np.ndarray, np.ndarray]:
    """Electrode positions ``(n_resp, 2)`` and ``(n_stim, 2)``: micrometres on
    the array where the recorded substrate places its electrodes (the organoid's MEA grid: the model is
    rebuilt from the recording's substrate description, ``rec_positions_um`` / ``stim_positions_um``),
    else the channel's index along x."""
    from prclab.reservoir.registry import substrate_from_description

    desc = rec.attrs.get("substrate")
    try:
        model = substrate_from_description(desc) if isinstance(desc, dict) and desc.get("model") else None
    except (PrclabError, TypeError, ValueError):
        model = None
    rec_um, stim_um = (np.asarray(getattr(model, k, np.zeros((0, 2))), np.float64)
                       for k in ("rec_positions_um", "stim_positions_um"))
    if rec_um.shape == (n_resp, 2) and stim_um.shape == (n_stim, 2):
        return rec_um, stim_um
    line = [np.column_stack([np.arange(n, dtype=np.float64), np.zeros(n)]) for n in (n_resp, n_stim)]
    return line[0], line[1]


def _start_time(rec: Recording) -> _dt.datetime:
    text = rec.attrs.get("created_utc")
    try:
        t = _dt.datetime.fromisoformat(str(text))
    except ValueError:
        return _dt.datetime.now(_dt.timezone.utc)
    return t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)


def _chunks(a: np.ndarray) -> tuple[int, int]:
    """HDF5 chunk shape for a ``(samples, channels)`` series: whole rows, about 1 MiB a chunk."""
    rows = max(1, min(len(a), (1 << 20) // max(1, a.itemsize * a.shape[1])))
    return rows, a.shape[1]


def _whole(rec_path) -> tuple:
    """Recording ``rec_path`` end to end, for an exporter: (recording, trials in index order,
    stimulus ``(n, n_stimulus)`` volts, response ``(n, n_response)``, each trial's first sample
    ``(trials + 1,)`` (the last entry ``n``), first timestamp seconds, rate Hz)."""
    rec = read_recording(rec_path, verify=False)  # each trial checked as it is read, below: read once
    if rec.problems:
        raise PrclabError(f"recording {rec_path}: damaged ({rec.problems[0]}); export needs every trial")
    if not rec.trials:
        raise PrclabError(f"recording {rec_path}: holds no trials to export")
    rate = _rate(rec)
    with rec:
        try:
            trials = [rec.load(t) for t in sorted(rec.trials, key=lambda t: t.index)]
        except PrclabError as exc:
            raise PrclabError(f"recording {rec_path}: damaged ({exc}); export needs every trial") from None
        stimulus = [np.asarray(t.stimulus, np.float64) for t in trials]
        response = [np.asarray(t.response, np.float64) for t in trials]
        t0 = float(np.asarray(trials[0].timestamps[:1], np.float64)[0]) if len(trials[0].timestamps) else 0.0
    n_stim, n_resp = stimulus[0].shape[1], response[0].shape[1]
    if any(s.shape[1] != n_stim for s in stimulus) or any(r.shape[1] != n_resp for r in response):
        raise PrclabError(f"recording {rec_path}: trials differ in channel count; cannot export it")
    starts = np.cumsum([0] + [len(s) for s in stimulus])
    return rec, trials, np.concatenate(stimulus), np.concatenate(response), starts, t0, rate


def export_nwb(rec_path: str | Path, out: str | Path) -> dict:
    """Write recording ``rec_path`` as NWB file ``out`` (module docstring).

    Returns:
        dict with ``out``, ``n_trials``, ``n_samples``, ``response_dtype`` (stored) and
        ``n_stimulation_events``.
    Raises:
        PrclabError: unreadable or damaged recording, no trials, no sample rate, trials of differing
            channel counts, ``out`` not writable.
    """
    from hdmf.backends.hdf5 import H5DataIO
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    from pynwb.ecephys import ElectricalSeries
    from pynwb.epoch import TimeIntervals
    from pynwb.file import Subject

    rec, trials, stim_all, resp_all, starts, t0, rate = _whole(rec_path)
    n_stim, n_resp = stim_all.shape[1], resp_all.shape[1]
    counts = response_counts(rec)
    if counts is not None:
        gains, offsets = (np.broadcast_to(a, (n_resp,)) for a in counts)
        if np.ptp(offsets) != 0:  # an ElectricalSeries holds one offset: volts then
            counts = None
    if counts is None:
        data, offset, channel_conversion = resp_all.astype(np.float32), 0.0, None
    else:
        data = np.rint((resp_all - offsets) / gains)
        small = data.size == 0 or (-32768 <= data.min() and data.max() <= 32767)
        if not small and not (-2 ** 31 <= data.min() and data.max() < 2 ** 31):
            raise PrclabError(f"recording {rec_path}: its response does not fit the int32 counts its "
                              f"storage attribute declares")
        data, offset, channel_conversion = data.astype(np.int16 if small else np.int32), float(offsets[0]), \
            np.array(gains)
    del resp_all

    meta = {k: v for k, v in rec.attrs.items() if k != "protocol_text"}
    protocol_text = str(rec.attrs.get("protocol_text", ""))
    substrate = rec.attrs.get("substrate") if isinstance(rec.attrs.get("substrate"), dict) else {}
    device_desc = rec.attrs.get("device") if isinstance(rec.attrs.get("device"), dict) else {}
    model = str(substrate.get("model", "unknown substrate"))
    nwb = NWBFile(
        session_description=f"prclab recording {Path(rec_path).name}: {len(trials)} trials of a stimulus "
                            f"protocol on a {model} substrate, response recorded on {n_resp} channels",
        identifier=str(rec.attrs.get("file_id") or uuid.uuid4().hex),
        session_start_time=_start_time(rec),
        experiment_description="Physical reservoir computing: stimulus protocol played into a substrate, "
                               "response recorded to train a linear readout (prclab).",
        protocol=protocol_text or None,
        source_script=f"prclab {__version__}",
        source_script_file_name="prclab",
        was_generated_by=[["prclab", __version__]],
        keywords=["reservoir computing", "prclab"],
    )
    nwb.subject = Subject(subject_id=model, species=SPECIES.get(model, SYNTHETIC), sex="U", age="P0D/",
                          description=f"Reservoir substrate {model}: "
                                      f"{json.dumps(substrate, sort_keys=True)[:2000]}")
    device = nwb.create_device(name=str(device_desc.get("device", "device")).replace("/", "_").replace(":", "_"),
                               description=json.dumps(device_desc, sort_keys=True))
    rec_group = nwb.create_electrode_group("recording", description="response channels", location="unknown",
                                           device=device)
    stim_group = nwb.create_electrode_group("stimulation", description="stimulus channels",
                                            location="unknown", device=device)
    nwb.add_electrode_column("records", "whether the electrode records (a response channel)")
    nwb.add_electrode_column("stimulates", "whether the electrode stimulates (a stimulus channel)")
    nwb.add_electrode_column("channel", "the prclab channel name")
    rec_xy, stim_xy = _positions(rec, n_resp, n_stim)
    for (x, y), name in zip(rec_xy, _channel_names(rec, "response", n_resp, "resp")):
        nwb.add_electrode(group=rec_group, location="unknown", rel_x=float(x), rel_y=float(y), records=True,
                          stimulates=False, channel=name)
    for (x, y), name in zip(stim_xy, _channel_names(rec, "stimulus", n_stim, "stim")):
        nwb.add_electrode(group=stim_group, location="unknown", rel_x=float(x), rel_y=float(y), records=False,
                          stimulates=True, channel=name)
    region = nwb.create_electrode_table_region(list(range(n_resp)), "the response channels")
    nwb.add_acquisition(ElectricalSeries(
        name=RESPONSE, data=H5DataIO(data, chunks=_chunks(data), **GZIP),
        electrodes=region, rate=rate, starting_time=t0, conversion=1.0, offset=offset,
        channel_conversion=channel_conversion,
        description="the substrate's response, every trial end to end"))
    if n_stim:  # a record-only recording (an EEG board without stimulator) has none
        nwb.add_stimulus(TimeSeries(
            name="stimulus", unit="volts", rate=rate, starting_time=t0,
            data=H5DataIO(stim_all, chunks=_chunks(stim_all), **GZIP),
            description="the commanded stimulus, one column per stimulating electrode (electrodes table rows "
                        f"{n_resp}..{n_resp + n_stim - 1})"))

    times = t0 + np.arange(len(stim_all) + 1) / rate
    for col, desc in (("label", "the dataset item's label"), ("split", "train or test"),
                      ("checksum", "the trial's sha256 in the recording it was exported from"),
                      ("index", "the trial's index in the prclab recording"), ("item", "dataset item played"),
                      ("item_id", "dataset item id"), ("repetition", "repetition of the dataset"),
                      ("stim_start", "first sample of the encoded stimulus within the trial"),
                      ("stim_stop", "end sample (exclusive) of the encoded stimulus within the trial"),
                      ("nwb_sha256", "sha256 of the trial's fields and its samples in this file (prclab)")):
        nwb.add_trial_column(col, desc)
    for t, a, b in zip(trials, starts[:-1], starts[1:]):
        fields = {"label": t.label, "split": t.split, "index": int(t.index), "item": int(t.item),
                  "item_id": str(t.item_id), "repetition": int(t.repetition),
                  "stim_start": int(t.stim_start), "stim_stop": int(t.stim_stop)}
        nwb.add_trial(start_time=float(times[a]), stop_time=float(times[b]), checksum=t.checksum,
                      nwb_sha256=nwb_trial_digest(fields, data[a:b], stim_all[a:b]), **fields)

    channel, first, end, peak = _stimulation_events(stim_all, _rest(rec, n_stim))
    events = TimeIntervals(name="stimulation", description="delivered stimulation events: runs of samples on "
                                                           "one stimulus channel away from its rest level")
    events.add_column("electrode", "the stimulating electrode (electrodes table row)", table=nwb.electrodes)
    events.add_column("trial", "the prclab trial index")
    events.add_column("peak_V", "largest |commanded voltage - rest level|, volts")
    trial_of = np.searchsorted(starts, first, side="right") - 1
    for c, a, b, p, k in zip(channel, first, end, peak, trial_of):
        events.add_row(start_time=float(times[a]), stop_time=float(times[b]), electrode=int(n_resp + c),
                       trial=int(trials[k].index), peak_V=float(p))
    if len(channel):
        nwb.add_time_intervals(events)
    nwb.add_scratch(json.dumps(meta, sort_keys=True), name=ATTRS_SCRATCH,
                    description="the prclab recording's file-level attributes (JSON)")
    out = Path(out)
    try:
        with NWBHDF5IO(str(out), "w") as io:
            io.write(nwb)
    except OSError as exc:
        raise PrclabError(f"export {out}: cannot be written ({str(exc).splitlines()[0]})") from None
    return {"out": str(out), "n_trials": len(trials), "n_samples": int(len(stim_all)),
            "response_dtype": str(data.dtype), "n_stimulation_events": int(len(channel))}


def export_fif(rec_path: str | Path, out: str | Path) -> dict:
    """Write recording ``rec_path`` as an MNE raw file ``out`` (``.fif``), for EEG-style analysis.

    Channels: the response channels (type ``eeg`` for a brainflow board's ExG channels, in volts, else
    ``misc``), then the stimulus channels (``misc``), named as the recorded device names them; every
    trial end to end at the recording's rate; each trial an annotation (onset, duration, description:
    its label; ``extras``: split and index).  MNE stores the samples as float32.

    Returns:
        dict with ``out``, ``n_trials``, ``n_samples``, ``channels`` (names), ``types``, ``sfreq``.
    """
    import mne

    rec, trials, stim_all, resp_all, starts, _, rate = _whole(rec_path)
    device = rec.attrs.get("device") if isinstance(rec.attrs.get("device"), dict) else {}
    units = {str(c.get("unit")) for c in device.get("response", []) if isinstance(c, dict)}
    eeg = "board" in device and units == {"V"}
    names = _channel_names(rec, "response", resp_all.shape[1], "resp") + \
        _channel_names(rec, "stimulus", stim_all.shape[1], "stim")
    if len(set(names)) != len(names):
        names = [f"{n}-{i}" for i, n in enumerate(names)]
    types = ["eeg" if eeg else "misc"] * resp_all.shape[1] + ["misc"] * stim_all.shape[1]
    info = mne.create_info(names, sfreq=rate, ch_types=types)
    info["description"] = f"prclab {__version__} export of {Path(rec_path).name}"
    raw = mne.io.RawArray(np.concatenate([resp_all, stim_all], axis=1).T, info, verbose="error")
    raw.set_annotations(mne.Annotations(
        onset=starts[:-1] / rate, duration=np.diff(starts) / rate, description=[t.label for t in trials],
        extras=[{"split": t.split, "index": int(t.index)} for t in trials]))
    try:
        raw.save(str(out), verbose="error")
    except OSError as exc:
        raise PrclabError(f"export {out}: cannot be written ({str(exc).splitlines()[0]})") from None
    return {"out": str(out), "n_trials": len(trials), "n_samples": int(len(resp_all)), "channels": names,
            "types": types, "sfreq": rate}


#: ``prclab export``'s writers by the output file's suffix
EXPORTERS = {".nwb": export_nwb, ".fif": export_fif}
