"""Spike detection on recorded MEA voltage, as an MEA system does it.

Each channel's noise level is estimated robustly from the recording itself,
``sigma = median(|x|) / 0.6745`` (Quiroga, Nadasdy & Ben-Shaul 2004, Neural Comput. 16:1661: the median
is barely moved by the spikes, where the standard deviation grows with the firing rate; for Gaussian
noise it equals the standard deviation).  A spike is a negative crossing of ``-k * sigma`` (extracellular
spikes of cells near an electrode are negative-going; ``k = 5`` as in Quiroga et al., 4-6 in MEA
practice), counted at the first sample below the threshold; after a spike the channel is dead for
``dead_time_s`` (about a spike's width, ~1 ms), so one spike is not counted twice.  Samples blanked
to exactly 0 V (the stimulation artefact's blanking, ``reservoir.organoid``) are left out of ``sigma``
and cannot cross.

For Gaussian noise alone the chance that a sample lies below ``-k sigma`` is ``Phi(-k)``: 2.9e-7 at
``k = 5``, 3.2e-5 at ``k = 4`` (the false-positive rate per sample, before the dead time).
"""

from __future__ import annotations

import numpy as np

from prclab.errors import PrclabError

#: Quiroga et al. 2004: median(|x|) / 0.6745 is the standard deviation of Gaussian noise
MAD_TO_SD = 0.6745


def robust_sd(voltage: np.ndarray) -> np.ndarray:
    """Per-channel noise level ``median(|x|) / 0.6745`` of ``voltage`` ``(steps, channels)`` (volts),
    over the samples that are not exactly 0 (blanked); ``(channels,)`` volts, NaN for a channel with
    no such sample."""
    x = _checked(voltage)
    magnitude = np.where(x != 0.0, np.abs(x), np.nan)
    sd = np.full(x.shape[1], np.nan)
    kept = ~np.all(np.isnan(magnitude), axis=0)
    sd[kept] = np.nanmedian(magnitude[:, kept], axis=0) / MAD_TO_SD
    return sd


def detect_spikes(voltage: np.ndarray, k: float = 5.0, dt: float = 1e-3, dead_time_s: float = 1e-3,
                  times: bool = False):
    """Negative threshold crossings of ``voltage`` ``(steps, channels)`` (volts, sampled every ``dt``
    seconds) at ``-k`` robust SDs (:func:`robust_sd`), with ``dead_time_s`` after each spike.

    Returns:
        ``times=False``: spike counts per sample ``(steps, channels)`` (0 or 1, float64);
        ``times=True``: one array per channel of the spike times in seconds (sample index * dt).
    """
    if not k > 0 or not dt > 0 or not dead_time_s >= 0:
        raise PrclabError(f"spike detection: need k > 0, dt > 0 and dead_time_s >= 0, got k={k}, dt={dt}, "
                          f"dead_time_s={dead_time_s}")
    x = _checked(voltage)
    threshold = -k * robust_sd(x)
    below = x < np.where(np.isnan(threshold), -np.inf, threshold)
    onsets = below & ~np.vstack([np.zeros((1, x.shape[1]), bool), below[:-1]])
    dead = int(np.ceil(dead_time_s / dt - 1e-9))
    counts = np.zeros(x.shape)
    per_channel = []
    for c in range(x.shape[1]):
        index = np.flatnonzero(onsets[:, c])
        if dead > 1 and len(index) > 1 and np.diff(index).min() < dead:
            index = _outside_dead_time(index, dead)
        counts[index, c] = 1.0
        per_channel.append(index * dt)
    return per_channel if times else counts


def _outside_dead_time(index: np.ndarray, dead: int) -> np.ndarray:
    """The sample indices ``index`` (sorted) kept when each kept one silences the next ``dead - 1``."""
    kept, free_from = [], -dead
    for i in index.tolist():
        if i >= free_from:
            kept.append(i)
            free_from = i + dead
    return np.asarray(kept, dtype=index.dtype)


def _checked(voltage) -> np.ndarray:
    x = np.asarray(voltage, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise PrclabError(f"spike detection: expected a non-empty (steps, channels) voltage, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise PrclabError("spike detection: the voltage holds NaN or infinite samples")
    return x
