"""Network bursts of a spiking culture: detection from a raster, their statistics, and the raster plot.

A cultured network (dissociated cortex on an MEA, or an organoid) fires sparsely most of the time and
now and then in a **network burst**: within tens to hundreds of milliseconds much of the network fires
together (Wagenaar, Pine & Potter 2006, BMC Neurosci. 7:11).  Bursts are found here from the population
activity, in the manner of the array-wide rate methods of van Pelt et al. 2004 (IEEE Trans. Biomed. Eng.
51:2051) and Eytan & Marom 2006 (J. Neurosci. 26:8465) (approx.: recalled, not re-read); the counts and
thresholds are this module's choices:

1. the raster ``(steps, units)`` (spikes of neurons, or spike counts per electrode) gives, per bin of
   ``bin_s`` (default 10 ms, a fraction of a network burst: the simulated organoid's last 0.1-0.3 s,
   sustained by its NMDA current), the number of *units that fire* in it.  Counting units, not spikes,
   keeps one electrode's own multi-unit burst (or one chattering cell) from passing for a network event;
2. a bin is *bursting* when that number exceeds ``median + k * sd`` (``k`` default 5), ``sd`` the robust
   SD of the binned numbers (``1.4826 * MAD``, the estimator MEA spike detectors use; Quiroga, Nadasdy &
   Ben-Shaul 2004, Neural Comput. 16:1661), at least the Poisson SD ``sqrt(median)`` and at least 1:
   the bursts themselves do not raise the threshold, and a near-silent raster does not make every spike
   a burst;
3. bursting bins less than ``merge_s`` apart (default 50 ms) form one burst, which runs from the first
   to the last spike in its bins (sample resolution; a background spike in an edge bin may lengthen it
   by up to a bin);
4. a burst counts when at least ``min_recruitment`` of the units (default 10 %) fire in it: at low
   background counts the Poisson tail passes the threshold now and then (200 units at 1 Hz: one bin
   of 10 units in 60 s, in this module's tests), a network event involves more of the network.

``k = 5`` was chosen on surrogates, not on any task: the default organoid's 30 s of spontaneous activity
(``experiments.characterize.spontaneous_bursts``, seeds 0-3), each electrode's train circularly shifted
by its own random lag (rates and each train's own structure kept, synchrony destroyed; 5 surrogates a
seed): ``k = 4`` finds 1-7 bursts in a surrogate, ``k = 5`` one in all 20, where the intact rasters have
4-8 (this module's author, 2026-12-02, at commit 9387c9f; the machine was shared, the counts are
deterministic).

Recruitment is the raw fraction of units that fire within the burst: units with a high background rate
(multi-unit electrodes at ~8 Hz) fire in a 20 ms window by chance too (13 % of the organoid's 32
electrodes, mean over 20 ms windows, seeds 0-3), so compare recruitments at the same unit type.

Statistics (``detect_bursts``): burst rate (per s), inter-burst intervals (start to start) and their CV,
recruitment (fraction of units that fire in a burst, mean and SD), burst duration (mean and SD),
fraction of all spikes inside bursts, and the spontaneous rate per unit (spikes per s, mean and SD over
units).  Statistics that need more bursts than were found are ``None`` (strict JSON has no NaN).
"""

from __future__ import annotations

import numpy as np

from prclab.errors import PrclabError

#: robust SD of a normal sample from its median absolute deviation
MAD_TO_SD = 1.4826


def _bursting_segments(bursting: np.ndarray, merge_bins: int) -> list[tuple[int, int]]:
    """``[first, last]`` bin pairs of runs of True in ``bursting`` ``(bins,)``; runs separated by fewer
    than ``merge_bins`` non-bursting bins are joined."""
    idx = np.flatnonzero(bursting)
    if len(idx) == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > merge_bins)
    firsts = np.concatenate([idx[:1], idx[breaks + 1]])
    lasts = np.concatenate([idx[breaks], idx[-1:]])
    return list(zip(firsts.tolist(), lasts.tolist()))


def _active_per_bin(active: np.ndarray, per_bin: int) -> np.ndarray:
    """Number of units that fire in each whole bin of ``per_bin`` samples: ``(steps // per_bin,)``."""
    n_bins = len(active) // per_bin
    return active[:n_bins * per_bin].reshape(n_bins, per_bin, -1).any(axis=1).sum(axis=1)


def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and SD of ``values`` (None, None when empty)."""
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values))


def detect_bursts(spikes, dt: float, bin_s: float = 0.01, k: float = 5.0, merge_s: float = 0.05,
                  min_recruitment: float = 0.1) -> dict:
    """Network bursts of a spike raster and their statistics (method: the module docstring).

    Args:
        spikes: ``(steps, units)`` spike counts per sample (bool or 0/1 for one neuron; any
            non-negative count for an electrode's multi-unit activity).
        dt: sample period (seconds).
        bin_s: population-rate bin (seconds, at least ``dt``).
        k: threshold in robust SDs above the median binned count.
        merge_s: bursting bins closer than this (seconds) belong to one burst.
        min_recruitment: least fraction of units that must fire within a burst, in ``[0, 1]``.
    Returns:
        dict: ``n_bursts``, ``duration_s`` (the raster's), ``burst_rate_hz``, ``ibi_mean_s``, ``ibi_cv``
        (None below 3 bursts), ``recruitment_mean``, ``recruitment_sd``, ``burst_duration_mean_s``,
        ``burst_duration_sd_s`` (None without bursts), ``fraction_spikes_in_bursts``,
        ``rate_per_unit_hz``, ``rate_per_unit_sd_hz``, ``units``, ``bin_s``, ``threshold_per_bin``
        (units firing per bin), and per burst ``starts_s``, ``stops_s``, ``recruitment`` (lists).
    Raises:
        PrclabError: a raster that is not 2-D, holds negative or non-finite counts, is shorter than two
            bins, or a bad ``dt`` / ``bin_s`` / ``k`` / ``merge_s`` / ``min_recruitment``.
    """
    x = np.asarray(spikes)   # bool and integer rasters stay as they are (a neuron raster is large)
    if x.dtype != bool and not np.issubdtype(x.dtype, np.integer):
        try:
            x = x.astype(np.float64, copy=False)
        except (TypeError, ValueError):
            raise PrclabError(f"bursts: spike counts must be numbers, got {x.dtype}") from None
    if x.ndim != 2 or x.shape[1] < 1:
        raise PrclabError(f"bursts: the raster must be (steps, units), got shape {x.shape}")
    if (x.dtype == np.float64 and not np.all(np.isfinite(x))) or (x.dtype != bool and np.any(x < 0)):
        raise PrclabError("bursts: spike counts must be finite and non-negative")
    if not (dt > 0 and bin_s >= dt and k >= 0 and merge_s >= 0 and 0 <= min_recruitment <= 1):
        raise PrclabError(f"bursts: need dt > 0, bin_s >= dt, k >= 0, merge_s >= 0 and min_recruitment in "
                          f"[0, 1]; got dt={dt}, bin_s={bin_s}, k={k}, merge_s={merge_s}, "
                          f"min_recruitment={min_recruitment}")
    steps, units = x.shape
    per_bin = max(1, int(round(bin_s / dt)))
    n_bins = steps // per_bin
    if n_bins < 2:
        raise PrclabError(f"bursts: {steps} samples of {dt:g} s make fewer than two {bin_s:g} s bins")
    active = x > 0
    population = _active_per_bin(active, per_bin)
    median = float(np.median(population))
    sd = max(MAD_TO_SD * float(np.median(np.abs(population - median))), np.sqrt(median), 1.0)
    threshold = median + k * sd
    merge_bins = int(np.ceil(merge_s / (per_bin * dt) - 1e-9))
    starts, stops, recruitment, in_bursts = [], [], [], 0.0
    for first, last in _bursting_segments(population > threshold, merge_bins):
        window = slice(first * per_bin, (last + 1) * per_bin)
        fired = np.flatnonzero(active[window].any(axis=1)) + window.start
        share = float(active[window].any(axis=0).mean())
        if share < min_recruitment:
            continue
        starts.append(fired[0] * dt)
        stops.append((fired[-1] + 1) * dt)
        recruitment.append(share)
        in_bursts += float(x[window].sum(dtype=np.float64))
    duration_s = steps * dt
    rate = x.sum(axis=0, dtype=np.float64) / duration_s
    total = float(rate.sum() * duration_s)
    intervals = np.diff(starts)
    recruitment_mean, recruitment_sd = _mean_sd(recruitment)
    length_mean, length_sd = _mean_sd([b - a for a, b in zip(starts, stops)])
    return {"n_bursts": len(starts), "duration_s": duration_s, "burst_rate_hz": len(starts) / duration_s,
            "ibi_mean_s": float(intervals.mean()) if len(intervals) else None,
            "ibi_cv": float(intervals.std() / intervals.mean()) if len(intervals) >= 2 else None,
            "recruitment_mean": recruitment_mean, "recruitment_sd": recruitment_sd,
            "burst_duration_mean_s": length_mean, "burst_duration_sd_s": length_sd,
            "fraction_spikes_in_bursts": in_bursts / total if total > 0 else 0.0,
            "rate_per_unit_hz": float(rate.mean()), "rate_per_unit_sd_hz": float(rate.std()),
            "units": units, "bin_s": per_bin * dt, "threshold_per_bin": threshold,
            "starts_s": starts, "stops_s": stops, "recruitment": recruitment}


def burst_summary(result: dict, unit: str = "unit") -> str:
    """One line of a ``detect_bursts`` result's statistics (``unit``: what a raster row is)."""
    def fmt(value, spec):
        return "n/a" if value is None else format(value, spec)

    length_ms = None if result["burst_duration_mean_s"] is None else 1e3 * result["burst_duration_mean_s"]
    return (f"{result['n_bursts']} bursts in {result['duration_s']:g} s ({result['burst_rate_hz']:.3f} /s), "
            f"IBI CV {fmt(result['ibi_cv'], '.2f')}, recruiting {fmt(result['recruitment_mean'], '.0%')} "
            f"± {fmt(result['recruitment_sd'], '.0%')} of {result['units']} {unit}s, "
            f"{fmt(length_ms, '.0f')} ms long, "
            f"{result['fraction_spikes_in_bursts']:.0%} of spikes in bursts, "
            f"{result['rate_per_unit_hz']:.2f} Hz per {unit}")


def plot_raster(spikes, dt: float, result: dict, path, title: str = "", unit: str = "unit") -> None:
    """Save a raster ``spikes`` ``(steps, units)`` with the bursts of ``result`` (``detect_bursts``)
    shaded, and the units firing per bin with the threshold below, as a PNG; the statistics in the title."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend is left as it is

    x = np.asarray(spikes)
    step, row = np.nonzero(x)
    fig = Figure(figsize=(10, 5.2), dpi=120)
    raster_ax, rate_ax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    raster_ax.scatter(step * dt, row, s=1.5, marker="|", c="k", lw=0.5)
    for ax in (raster_ax, rate_ax):
        for a, b in zip(result["starts_s"], result["stops_s"]):
            ax.axvspan(a, b, color="tab:red", alpha=0.25, lw=0)
    # a burst lasts tens of ms, a hair at this scale: a marker above the raster shows each one
    raster_ax.plot(result["starts_s"], np.full(len(result["starts_s"]), x.shape[1]), "v", color="tab:red",
                   ms=5, label="network burst")
    raster_ax.set_ylabel(f"{unit}")
    raster_ax.set_ylim(-0.5, x.shape[1] + 1)
    if result["starts_s"]:
        raster_ax.legend(loc="upper right", fontsize="small", framealpha=0.9)
    per_bin = max(1, int(round(result["bin_s"] / dt)))
    population = _active_per_bin(x > 0, per_bin)
    n_bins = len(population)
    rate_ax.plot((np.arange(n_bins) + 0.5) * per_bin * dt, population, lw=0.7)
    rate_ax.axhline(result["threshold_per_bin"], color="tab:red", ls=":", lw=1, label="burst threshold")
    rate_ax.set_ylabel(f"{unit}s firing / {1e3 * result['bin_s']:g} ms")
    rate_ax.set_xlabel("time (s)")
    rate_ax.legend(loc="upper right", fontsize="small")
    summary = burst_summary(result, unit)
    fig.suptitle(f"{title}\n{summary}".strip(), fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
