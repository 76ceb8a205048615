"""Electrode physics shared by the physical substrate models: recording drift and first-order filters.

(The potato's stimulating electrodes, Butler-Volmer interfaces with their double layers, live in
``reservoir.potato``.)

Drift (recording electrodes).  Electrode potentials wander with a 1/f ("flicker") spectrum at low
frequencies (Huigen, Peper & Grimbergen 2002, Med. Biol. Eng. Comput. 40:332).  It is synthesised as
the sum of ``K`` Ornstein-Uhlenbeck processes of equal variance with time constants spread evenly in
log-time between ``tau_min_s`` and ``tau_max_s`` (McWhorter's superposition of Lorentzians, which gives
a 1/f power spectrum between ``1 / (2 pi tau_max_s)`` and ``1 / (2 pi tau_min_s)``), each stepped
exactly: ``d[t] = r_k d[t-1] + sigma sqrt(1 - r_k^2) n[t]``.  The amplitude is set by
``drift_V_per_sqrt_s``: the RMS change of the drift over one second is ``drift_V_per_sqrt_s * 1 s^0.5``
(what a random walk of that diffusion would give, without its unbounded 1/f^2 growth).

The drift is a linear filter along time, applied with ``scipy.signal.lfilter`` to a whole block at once
(no per-sample Python loop), with its state carried between blocks.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from .streams import RowStreams


def first_order(x: np.ndarray, r: float, gain: float, y_prev: np.ndarray) -> np.ndarray:
    """``y[t] = r y[t-1] + gain x[t]`` along axis 1 of ``x`` ``(batch, steps, ...)``, from ``y_prev``.

    ``y_prev`` ``(batch, ...)`` is the value before the first sample; returns ``y`` shaped like ``x``.
    """
    zi = (r * y_prev)[:, None]
    y, _ = lfilter([gain], [1.0, -r], x, axis=1, zi=zi)
    return y


class ElectrodeDrift:
    """1/f drift of ``n`` recording electrodes (see the module docstring).

    Args:
        n: electrodes.
        drift_V_per_sqrt_s: RMS change over one second, in volts.
        dt: sample period in seconds.
        tau_min_s, tau_max_s: band of the 1/f spectrum (time constants of the fastest and slowest
            component), seconds.
        components: number of Ornstein-Uhlenbeck components.
    """

    def __init__(self, n: int, drift_V_per_sqrt_s: float, dt: float, tau_min_s: float = 0.05,
                 tau_max_s: float = 500.0, components: int = 5):
        if drift_V_per_sqrt_s < 0:
            raise ValueError(f"drift must be non-negative, got {drift_V_per_sqrt_s} V/s^0.5")
        self.n = n
        self.tau_s = np.geomspace(tau_min_s, tau_max_s, components)
        self.r = np.exp(-dt / self.tau_s)
        self.sigma = drift_V_per_sqrt_s / np.sqrt(2 * np.sum(1 - np.exp(-1.0 / self.tau_s)))
        self.d: np.ndarray | None = None

    def reset(self) -> None:
        self.d = None

    def __call__(self, batch: int, steps: int, streams: RowStreams) -> np.ndarray:
        """Drift ``(batch, steps, n)`` in volts, each row from its own stream of ``streams`` (a stream of
        its own: a row's drift then depends only on its own steps so far); the first block starts from a
        stationary draw."""
        k = len(self.tau_s)
        if self.d is None:
            self.d = self.sigma * streams.standard_normal((batch, self.n, k))
        elif len(self.d) != batch:
            raise ValueError(f"drift holds a batch of {len(self.d)}, asked for {batch}; "
                             "call reset() before changing the batch size")
        total = np.zeros((batch, steps, self.n))
        if self.sigma == 0 or steps == 0:
            return total
        # time-major per row: a row's draws for a step do not depend on how many steps follow it
        noise = streams.standard_normal((batch, steps, k, self.n))
        for j in range(k):
            comp = first_order(noise[:, :, j], self.r[j], self.sigma * np.sqrt(1 - self.r[j] ** 2),
                               self.d[:, :, j])
            self.d[:, :, j] = comp[:, -1]
            total += comp
        return total

    @property
    def state(self) -> np.ndarray:
        return np.zeros((0, self.n, len(self.tau_s))) if self.d is None else self.d.copy()

    def load_state(self, d: np.ndarray) -> None:
        d = np.asarray(d, dtype=np.float64)
        if d.ndim != 3 or d.shape[1:] != (self.n, len(self.tau_s)):
            raise ValueError(f"drift state must be (batch, {self.n}, {len(self.tau_s)}), got {d.shape}")
        self.d = d.copy() if len(d) else None
