"""What a recording holds, in a few lines (``prclab info REC``): trials, labels, channels, storage,
duration, size on disk and integrity, for any file :func:`~prclab.protocols.recording.read_recording`
opens (every trial's checksum is verified, one trial at a time)."""

from __future__ import annotations

import collections

import h5py
import numpy as np

from .recording import FORMAT, read_recording


def recording_info(path) -> dict:
    """A JSON-able summary of the recording at ``path`` (every trial read once and checked).

    Keys: ``path``, ``format``, ``format_version``, ``software_version``, ``size_bytes``, ``trials``
    (``intact``, ``damaged``, ``planned``, ``splits``), ``labels`` (class -> intact trials),
    ``channels`` (``stimulus`` / ``response``: count and units), ``storage`` (response dtypes stored,
    compression), ``rate_hz``, ``duration_s`` (intact trials' samples over the rate), ``checksums``
    (how many verified, and ``by``: the stored checksum checked, ``sha256`` in a prclab recording,
    the reader's ``verified_by`` attribute in another format, e.g. ``nwb_sha256`` in a prclab export;
    None where the file stores none) and ``problems`` (as :attr:`Recording.problems` words them).

    Raises:
        PrclabError: not found, not a recording, a format prclab does not read (one line).
    """
    rec = read_recording(path)
    attrs, trials = rec.attrs, rec.trials
    damaged = [p for p in rec.problems if p.startswith("trial ") and "recovered from its record" not in p]
    device = attrs.get("device") if isinstance(attrs.get("device"), dict) else {}
    rate = attrs.get("rate_hz", device.get("rate_hz"))
    rate = float(rate) if isinstance(rate, (int, float)) and rate > 0 else None
    samples = sum(len(t.stimulus) for t in trials)
    first = trials[0] if trials else None
    storage = attrs.get("storage") if isinstance(attrs.get("storage"), dict) else {}
    by = "sha256" if attrs.get("format") == FORMAT else attrs.get("verified_by")
    return {
        "path": str(rec.path), "format": attrs.get("format"), "format_version": attrs.get("format_version", 1),
        "software_version": attrs.get("software_version"), "size_bytes": rec.path.stat().st_size,
        "trials": {"intact": len(trials), "damaged": len(damaged), "planned": attrs.get("n_trials_planned"),
                   "splits": dict(collections.Counter(t.split for t in trials))},
        "labels": dict(sorted(collections.Counter(t.label for t in trials).items())),
        "channels": {key: {"count": _width(first, key) if first is not None else len(device.get(key, [])),
                           "units": sorted({str(c.get("unit", "?")) for c in device.get(key, [])
                                            if isinstance(c, dict)})}
                     for key in ("stimulus", "response")},
        "storage": {"response_dtypes": _stored_dtypes(rec.path), "response": storage.get("response", "float64"),
                    "conversion": sorted({float(c) for c in storage.get("conversion", [])}),
                    "compression": storage.get("compression", "none")},
        "rate_hz": rate, "duration_s": samples / rate if rate else None,
        "checksums": {"verified": len(trials) if by else 0, "of": len(trials) + len(damaged), "by": by},
        "problems": list(rec.problems),
    }


def _width(trial, key: str) -> int:
    shape = np.shape(getattr(trial, key))
    return int(shape[1]) if len(shape) == 2 else 1


def _stored_dtypes(path) -> list[str]:
    """The dtypes the trials' responses are stored in (a prclab HDF5 file; [] for another format)."""
    try:
        with h5py.File(path, "r") as f:
            trials = f.get("trials")
            if not isinstance(trials, h5py.Group):
                return []
            return sorted({str(g["response"].dtype) for g in trials.values()
                           if isinstance(g, h5py.Group) and isinstance(g.get("response"), h5py.Dataset)})
    except (OSError, RuntimeError, KeyError, ValueError):
        return []


def format_info(info: dict) -> str:
    """``info`` (:func:`recording_info`) as the few lines ``prclab info`` prints."""
    t, ch, st = info["trials"], info["channels"], info["storage"]
    planned = f" of {t['planned']} planned" if t["planned"] is not None else ""
    splits = ", ".join(f"{v} {k}" for k, v in sorted(t["splits"].items())) or "none"
    labels = ", ".join(f"{k} x{v}" for k, v in info["labels"].items()) or "none"
    units = {k: "/".join(v["units"]) or "?" for k, v in ch.items()}
    width = {k: f"{v['count']} {k}" + (f" ({units[k]})" if v["count"] else "") for k, v in ch.items()}
    duration = f"{info['duration_s']:.1f} s at {info['rate_hz']:g} Hz" if info["duration_s"] is not None \
        else "unknown (no sample rate)"
    counts = f" counts of {'/'.join(f'{c:g}' for c in st['conversion'])} {units['response']}" \
        if st["response"] == "counts" and st["conversion"] else ""
    ok = "all verified" if not info["problems"] else f"{len(info['problems'])} problem(s): " + \
        "; ".join(info["problems"][:3]) + (" ..." if len(info["problems"]) > 3 else "")
    sums = info["checksums"]
    checked = f"{sums['verified']} of {sums['of']} trials verified; {ok}" if sums.get("by") else \
        f"none stored in this {info['format']} file: {t['intact']} trials read as they are"
    version = f" format {info['format_version']}" if info["format"] == FORMAT else ""
    made_by = f", prclab {info['software_version']}" if info["software_version"] else ""
    return "\n".join([
        f"recording   {info['path']}  ({info['format']}{version}{made_by})",
        f"trials      {t['intact']} intact, {t['damaged']} damaged{planned}; {splits}",
        f"labels      {len(info['labels'])} classes: {labels}",
        f"channels    {width['stimulus']}, {width['response']}",
        f"storage     response {'/'.join(st['response_dtypes']) or st['response']}{counts}, "
        f"{st['compression']}; {info['size_bytes'] / 1e6:.1f} MB on disk",
        f"duration    {duration}",
        f"checksums   {checked}",
    ])


def problem_line(info: dict) -> str | None:
    """One line naming what is wrong with a recording (truncated, tampered...), or None if nothing."""
    if not info["problems"]:
        return None
    more = len(info["problems"]) - 1
    return f"recording {info['path']}: {info['problems'][0]}" + (f" (and {more} more problem(s))" if more
                                                                 else "")

