"""Reports of closed-loop recordings (``prclab loop``): what ``prclab report REC.h5`` writes for one.

:func:`write_loop_report` reads the ticks back (:func:`prclab.protocols.loop.read_loop`: every intact
segment, so a killed loop's recording reports the ticks it flushed) and writes into the folder:

- ``rally_length.png``: hits per rally against the time the rally ended (minutes), a per-minute mean,
  the random paddle's mean (where the run finished and stored it), the T1 / T2 boundary at 5 min, and
  hits and misses per minute;
- ``t1_t2.png``: DishBrain's T1 (first 5 min) vs T2 (the rest) for this recording's condition
  (``[feedback] mode``): hits per rally, % aces, % long rallies;
- ``latency.png``: the histogram of the loop's own latency per tick (ms, log counts) with p50, p99 and
  the lead time;
- ``activity.png``: sensory (stimulus) and motor (response) activity rasters over the first
  :data:`RASTER_S` seconds, per tick (mean ``|value|`` over the tick's samples);
- ``summary.md``: the figures of :func:`~prclab.protocols.loop.loop_metrics` and T1 / T2, linking the
  plots.
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

import numpy as np

from prclab.errors import PrclabError
from prclab.protocols.loop import LAST_S, loop_metrics, rally_lengths, read_loop, t1_t2_stats
from prclab.protocols.recording import read_recording

#: seconds of the stream the activity rasters show (from the start)
RASTER_S = 10.0


def is_loop_recording(path) -> bool:
    """Whether ``path`` is a prclab recording made by ``prclab loop`` (False for anything else, including
    files that are not recordings: the caller's own checks name those).  Read through the recording
    reader, which opens a damaged or cut-short file safely (HDF5 itself may not)."""
    path = Path(path)
    if path.suffix.lower() != ".h5" or not path.is_file():
        return False
    try:
        return read_recording(path, verify=False).attrs.get("kind") == "closed-loop"
    except PrclabError:
        return False


def _protocol_tables(attrs: dict) -> dict:
    """The recorded protocol's TOML tables ({} where the text is missing or unreadable)."""
    try:
        return tomllib.loads(str(attrs.get("protocol_text", "")))
    except tomllib.TOMLDecodeError:
        return {}


def _figure(size):
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend is left as it is
    return Figure(figsize=size, dpi=120)


def plot_rally_lengths(hits: np.ndarray, end_s: np.ndarray, path, random_paddle: float | None,
                       events: np.ndarray | None = None, tick_s: float = 0.01, split_s: float = LAST_S) -> None:
    """Hits per rally (``hits`` ``(rallies,)``) against the rally's end (``end_s`` s) with per-minute
    means; with the per-tick ``events``, hits and misses per minute on a second axis (a player that
    rarely misses has few rallies: its play shows there)."""
    fig = _figure((6.8, 3.9))
    ax = fig.subplots()
    minutes = np.asarray(end_s, float) / 60
    ax.plot(minutes, hits, ".", ms=4, alpha=0.5, color="C0", label="rally")
    if len(minutes):
        which = np.floor(minutes - 1e-9).astype(int)
        means = [(float(np.mean(minutes[which == i])), float(np.mean(hits[which == i]))) for i in np.unique(which)]
        ax.plot(*zip(*means), "-o", color="C0", ms=3, label="mean per minute (rallies ending then)")
    if random_paddle is not None and np.isfinite(random_paddle):
        ax.axhline(random_paddle, color="grey", ls="--", lw=1, label=f"random paddle ({random_paddle:.2f})")
    ax.axvline(split_s / 60, color="k", ls=":", lw=1, label="T1 | T2")
    ax.set_xlabel("time (simulated or device min)")
    ax.set_ylabel("hits per rally")
    if events is not None and len(events):
        per_min = max(1, int(round(60 / tick_s)))
        full = len(events) // per_min
        if full:
            e = np.asarray(events)[:full * per_min].reshape(full, per_min)
            t = np.arange(full) + 0.5
            right = ax.twinx()
            right.plot(t, (e == 1).sum(axis=1), color="C2", lw=1, label="hits per minute")
            right.plot(t, (e == 2).sum(axis=1), color="C3", lw=1, label="misses per minute")
            right.set_ylabel("events per minute")
            right.legend(fontsize=7, loc="upper right")
    ax.set_title("rally length over time")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)


def plot_t1_t2(stats: dict, condition: str, path) -> None:
    """T1 vs T2 bars of :func:`~prclab.protocols.loop.t1_t2_stats` ``stats``."""
    fig = _figure((7.2, 3.2))
    axes = fig.subplots(1, 3)
    for ax, (key, name, scale) in zip(axes, (("mean_rally_length", "hits per rally", 1),
                                             ("aces_fraction", "% aces", 100),
                                             ("long_rally_fraction", "% long rallies (> 3 hits)", 100))):
        values = [scale * stats[w][key] for w in ("T1", "T2")]
        ax.bar(["T1", "T2"], [v if np.isfinite(v) else 0 for v in values], color=["C0", "C1"])
        for x, v in enumerate(values):
            ax.text(x, 0, "n/a" if not np.isfinite(v) else f"{v:.2f}", ha="center", va="bottom", fontsize=8)
        ax.set_title(name, fontsize=9)
    fig.suptitle(f"condition {condition}: T1 (rallies {stats['T1']['rallies']}) vs T2 "
                 f"(rallies {stats['T2']['rallies']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)


def plot_latency(latency_s: np.ndarray, lead_s: float | None, path) -> None:
    """Histogram of the per-tick latency ``latency_s`` (s), log counts, with p50 / p99 / the lead."""
    fig = _figure((6.0, 3.6))
    ax = fig.subplots()
    ms = np.asarray(latency_s, float) * 1e3
    ax.hist(ms, bins=np.logspace(np.log10(max(ms.min(), 1e-3)), np.log10(max(ms.max(), 1e-2)) + 1e-9, 60),
            color="C0")
    ax.set_xscale("log")
    ax.set_yscale("log")
    for q, style in ((50, "-"), (99, "--")):
        v = float(np.percentile(ms, q))
        ax.axvline(v, color="k", ls=style, lw=1, label=f"p{q} {v:.3g} ms")
    if lead_s is not None:
        ax.axvline(1e3 * lead_s, color="C3", ls=":", lw=1.2, label=f"lead time {1e3 * lead_s:g} ms")
    ax.set_xlabel("loop latency per tick (ms): window in hand -> block to the device")
    ax.set_ylabel("ticks")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def plot_activity(trials, tick: int, rate_hz: float, path, seconds: float = RASTER_S) -> None:
    """Sensory (stimulus) and motor (response) rasters per tick (mean ``|x|`` over its ``tick``
    samples) over the first ``seconds`` of the stream (the loop's segments, in order)."""
    stim, resp, need = [], [], int(seconds * rate_hz)
    for t in trials:
        stim.append(np.asarray(t.stimulus))
        resp.append(np.asarray(t.response))
        if sum(len(s) for s in stim) >= need:
            break
    stim, resp = np.concatenate(stim)[:need], np.concatenate(resp)[:need]
    ticks = len(stim) // tick
    fig = _figure((7.5, 5.0))
    axes = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1, 2]})
    extent_s = ticks * tick / rate_hz
    for ax, x, name, cmap in ((axes[0], stim, "sensory electrode", "Greys"),
                              (axes[1], resp, "response channel", "viridis")):
        per_tick = np.abs(x[:ticks * tick]).reshape(ticks, tick, -1).mean(axis=1)
        im = ax.imshow(per_tick.T, aspect="auto", cmap=cmap, interpolation="nearest",
                       extent=[0, extent_s, x.shape[1] - 0.5, -0.5])
        ax.set_ylabel(name)
        fig.colorbar(im, ax=ax, label="mean |x| per tick", fraction=0.03, pad=0.02)
    axes[1].set_xlabel("time (s)")
    axes[0].set_title(f"sensory and motor activity, first {extent_s:g} s", fontsize=10)
    fig.savefig(path, bbox_inches="tight")


def write_loop_report(source, out) -> Path:
    """Figures and ``summary.md`` of the closed-loop recording ``source`` into folder ``out`` (created);
    returns the path of ``summary.md``.

    Raises:
        PrclabError: not a closed-loop recording, or one without a tick.
    """
    source, out = Path(source), Path(out)
    rec = read_loop(source)
    if rec.ticks == 0:
        raise PrclabError(f"report: {source}: a closed-loop recording without a tick")
    attrs, loop = rec.attrs, rec.attrs.get("loop", {})
    if isinstance(loop, str):  # stored as its JSON text
        try:
            loop = json.loads(loop)
        except ValueError:
            loop = {}
    rate = float(attrs["rate_hz"])
    tick = int(loop.get("tick_samples", 1))
    tick_s = tick / rate
    lead_s = loop["lead_samples"] / rate if "lead_samples" in loop else None
    tables = _protocol_tables(attrs)
    condition = str(tables.get("feedback", {}).get("mode", "stimulus"))
    stored = (attrs.get("sessions") or [{}])[-1].get("loop_result", {}) or {}
    random_paddle = stored.get("random_paddle_rally_length")
    metrics = loop_metrics(rec, tick_s)
    halves = t1_t2_stats(rec["event"], tick_s)
    out.mkdir(parents=True, exist_ok=True)
    hits, end_s, _ = rally_lengths(rec["event"], tick_s)
    plot_rally_lengths(hits, end_s, out / "rally_length.png", random_paddle, rec["event"], tick_s)
    plot_t1_t2(halves, condition, out / "t1_t2.png")
    plot_latency(rec["latency_s"], lead_s, out / "latency.png")
    with read_recording(source, verify=False) as full:
        plot_activity([t for t in full.trials if t.split == "loop"], tick, rate, out / "activity.png")

    def num(v, f="{:.3g}"):
        return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f.format(v)

    rows = [("ticks", num(metrics["ticks"], "{:d}")), ("condition ([feedback] mode)", condition),
            ("rallies (hits, misses)", f"{metrics['rallies']} ({metrics['hits']}, {metrics['misses']})"),
            ("hits per rally", num(metrics["mean_rally_length"])),
            ("hits per rally, T1 (first 5 min) / T2", f"{num(halves['T1']['mean_rally_length'])} / "
                                                      f"{num(halves['T2']['mean_rally_length'])}"),
            ("hits per rally, last 5 min", num(metrics["mean_rally_length_last_5min"])),
            ("random paddle, hits per rally", num(random_paddle)),
            ("% aces / % long rallies", f"{num(100 * metrics['aces_fraction'], '{:.1f}')} / "
                                        f"{num(100 * metrics['long_rally_fraction'], '{:.1f}')}"),
            ("overruns / skipped ticks", f"{metrics['overruns']} / {metrics['skipped']}"),
            ("latency p50 / p99 / max (ms)", f"{num(metrics['latency_p50_ms'])} / "
                                             f"{num(metrics['latency_p99_ms'])} / {num(metrics['latency_max_ms'])}")]
    lines = [f"# prclab report: {source.name}", "", f"Source: `{source}` (closed-loop recording of "
             f"{rec.ticks} ticks of {1e3 * tick_s:g} ms).", "", "| | |", "|---|---|",
             *(f"| {k} | {v} |" for k, v in rows)]
    if metrics["unfinished_rally"]:
        lines.append("\nThe last rally was still going when the recording ends: counted with its hits so far.")
    for problem in rec.problems:
        lines.append(f"\nWarning: {problem}")
    for name, caption in (("rally_length.png", "rally length over time"), ("t1_t2.png", "T1 vs T2"),
                          ("latency.png", "loop latency per tick"),
                          ("activity.png", "sensory and motor activity")):
        lines += ["", f"## {caption[0].upper() + caption[1:]}", "", f"![{caption}]({name})"]
    summary = out / "summary.md"
    summary.write_text("\n".join(lines) + "\n")
    return summary
