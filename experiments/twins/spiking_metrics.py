"""Spiking twins' validation figures: binned-rate and PSTH correlation, firing-rate and burst-rate error.

All on spike counts per sample ``(T, n_out)`` per trial (a counts recording, or the spikes
``readouts.spikes.detect_spikes`` finds in a voltage one: :func:`spike_counts`), recorded against a model's (a twin's, or the
substrate re-driven with another noise seed: the repeatability floor) on the same held-out stimuli:

- ``rate_corr``: Pearson correlation of the counts per ``bin_s`` bin, pooled over trials, bins and
  electrodes (each single run against the recorded single run: a repeat is judged as the twin is);
- ``psth_corr``: the same on the population count per bin (summed over electrodes);
- ``rate_hz`` / ``model_rate_hz`` and ``rate_error``: mean firing rate per electrode (Hz) and the
  model's relative error ``|model - recorded| / recorded``;
- ``burst_rate_hz`` / ``model_burst_rate_hz`` and ``burst_rate_error``: network bursts per second by
  ``experiments.bursts.detect_bursts`` (its defaults) on the trials' rasters concatenated, and its error;
- :func:`onset_bursts`: how often a burst starts at a trial's first stimulus against the time since the
  last burst (how far the network had recovered), over a whole session in playing order.
"""

from __future__ import annotations

import numpy as np

from prclab.errors import PrclabError
from prclab.experiments.bursts import detect_bursts
from prclab.reservoir.twins.spiking import burst_onsets

#: bins of the time since the last burst start at a trial's first stimulus (s), for :func:`onset_bursts`
ONSET_AGE_BINS_S = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)
#: a burst "at the onset" starts within this long after the trial's first stimulus change (s)
ONSET_WINDOW_S = 0.15


def is_counts(trials: list[np.ndarray]) -> bool:
    """True when every trial holds non-negative whole numbers (spike counts per sample)."""
    return all(np.all((np.asarray(y) >= 0) & (np.asarray(y) == np.round(y))) for y in trials)


def spike_counts(trials: list[np.ndarray], dt: float) -> list[np.ndarray]:
    """Counts per sample ``(T_i, n_out)`` per trial: counts as they are, MEA voltages (volts) through the
    recording system's own spike detector (``readouts.spikes.detect_spikes`` at its defaults)."""
    if is_counts(trials):
        return [np.asarray(y, float) for y in trials]
    from prclab.readouts.spikes import detect_spikes

    return [detect_spikes(np.asarray(y, float), dt=dt) for y in trials]


def _binned(trials: list[np.ndarray], per_bin: int) -> np.ndarray:
    """Counts per whole bin of ``per_bin`` samples, trials stacked: ``(sum of bins, n_out)``."""
    out = []
    for y in trials:
        n = len(y) // per_bin
        out.append(np.asarray(y, float)[:n * per_bin].reshape(n, per_bin, -1).sum(axis=1))
    return np.concatenate(out)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    den = np.sqrt((a ** 2).sum() * (b ** 2).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def _relative(model: float, recorded: float) -> float:
    return abs(model - recorded) / recorded if recorded > 0 else float("nan")


def spiking_comparison(recorded: list[np.ndarray], model: list[np.ndarray], dt: float, bin_s: float = 0.05) -> dict:
    """The module docstring's figures for ``model`` against ``recorded`` (lists of ``(T_i, n_out)`` counts
    per sample, the same trials in the same order; ``dt`` seconds, ``bin_s`` the rate bin in seconds)."""
    if len(recorded) == 0 or len(recorded) != len(model):
        raise PrclabError(f"spiking metrics: need the same non-zero number of recorded and model trials, got "
                          f"{len(recorded)} and {len(model)}")
    for i, (a, b) in enumerate(zip(recorded, model)):
        if np.shape(a) != np.shape(b):
            raise PrclabError(f"spiking metrics: trial {i}: recorded {np.shape(a)} and model {np.shape(b)} differ")
    if not (dt > 0 and bin_s >= dt):
        raise PrclabError(f"spiking metrics: need dt > 0 and bin_s >= dt, got dt={dt}, bin_s={bin_s}")
    per_bin = max(1, int(round(bin_s / dt)))
    ra, rb = _binned(recorded, per_bin), _binned(model, per_bin)
    duration = sum(len(y) for y in recorded) * dt
    rate, model_rate = ra.sum() / duration / ra.shape[1], rb.sum() / duration / rb.shape[1]
    bursts = detect_bursts(np.concatenate(recorded), dt)["burst_rate_hz"]
    model_bursts = detect_bursts(np.concatenate(model), dt)["burst_rate_hz"]
    return {"rate_corr": _corr(ra, rb), "psth_corr": _corr(ra.sum(axis=1), rb.sum(axis=1)),
            "rate_hz": float(rate), "model_rate_hz": float(model_rate), "rate_error": _relative(model_rate, rate),
            "burst_rate_hz": float(bursts), "model_burst_rate_hz": float(model_bursts),
            "burst_rate_error": _relative(model_bursts, bursts), "bin_s": per_bin * dt}


def rate_corr_bootstrap_sem(a: list[np.ndarray], b: list[np.ndarray], dt: float, bin_s: float = 0.05,
                            resamples: int = 200, seed: int = 0) -> float | None:
    """Standard error of :func:`spiking_comparison`'s ``rate_corr`` of ``a`` against ``b`` (matched trials of
    counts per sample), by resampling the trial pairs with replacement (``resamples`` times, generator of
    ``seed``; the std of the resampled correlations); None for fewer than 2 pairs.  The pooled correlation
    is carried by a few large bursts, so it varies from one set of trials to the next more than its
    sample count suggests."""
    if len(a) < 2:
        return None
    per_bin = max(1, int(round(bin_s / dt)))
    ba, bb = [_binned([x], per_bin) for x in a], [_binned([y], per_bin) for y in b]
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        pick = rng.integers(0, len(a), len(a))
        draws.append(_corr(np.concatenate([ba[i] for i in pick]), np.concatenate([bb[i] for i in pick])))
    draws = np.asarray(draws)
    return float(np.nanstd(draws, ddof=1))


def onset_bursts(stimuli: list[np.ndarray], responses: list[np.ndarray], dt: float,
                 age_bins_s=ONSET_AGE_BINS_S, window_s: float = ONSET_WINDOW_S) -> dict:
    """Per bin of ``age_bins_s``, among the trials whose first stimulus change came that long (seconds)
    after the last burst start: the fraction with a burst start within ``window_s`` of that change.

    Args:
        stimuli, responses: a session's trials in playing order, end to end (``(T_i, n_in)`` volts and
            ``(T_i, n_out)`` counts per sample); bursts by ``reservoir.twins.spiking.burst_onsets`` on the
            whole raster, so a burst in one trial ages into the next.
        dt: sample period (s).
    Returns:
        ``{"probability": [...], "trials": [...]}``, one per bin (``None`` where no trial fell in it);
        trials without a stimulus change, or before the session's first burst, are not counted.
    """
    if len(stimuli) != len(responses) or not all(len(u) == len(y) for u, y in zip(stimuli, responses)):
        raise PrclabError("spiking metrics: onset_bursts needs matching stimulus and response trials")
    starts = np.cumsum([0] + [len(y) for y in responses])
    onsets = burst_onsets(np.concatenate(responses), dt) if len(responses) else np.zeros(0, np.int64)
    ages, hits = [], []
    for s, u in zip(starts[:-1], stimuli):
        changes = np.flatnonzero(np.abs(np.diff(np.asarray(u, float), axis=0)).sum(axis=1) > 0)
        if not len(changes):
            continue
        t0 = s + changes[0] + 1
        before = onsets[onsets < t0]
        if not len(before):
            continue
        ages.append((t0 - before[-1]) * dt)
        hits.append(bool(np.any((onsets >= t0) & (onsets < t0 + window_s / dt))))
    ages, hits = np.asarray(ages), np.asarray(hits, bool)
    cells = [(ages >= lo) & (ages < hi) for lo, hi in zip(age_bins_s[:-1], age_bins_s[1:])]
    return {"probability": [float(hits[c].mean()) if c.any() else None for c in cells],
            "trials": [int(c.sum()) for c in cells]}
