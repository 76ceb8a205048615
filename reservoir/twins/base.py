"""The twin FAMILY interface: a model class fitted to recorded stimulus -> response trials, scikit-learn style.

A family is a class with a ``name`` (``"linear"``, ``"echo"``...) whose constructor keywords are its fit
settings (validated in ``fit``), and, once fitted (attributes ending in ``_``):

- ``fit(stimuli, responses, dt) -> self``: ``stimuli`` a list of ``(T_i, n_in)`` arrays (volts),
  ``responses`` a list of ``(T_i, n_out)`` arrays (the training trials' whole recorded windows), ``dt``
  the sample period in seconds.  Each trial starts from rest.
- ``simulate(u, noise_rng=None) -> y``: free run from rest, ``u`` ``(batch, T, n_in)`` ->
  ``(batch, T, n_out)``; ``noise_rng`` None gives the noiseless mean prediction, else one
  ``numpy.random.Generator`` per batch row draws the fitted residual noise.
- the streaming state API the :class:`~.substrate.TwinSubstrate` runs block by block:
  ``initial_state(batch) -> dict[str, ndarray]`` (rest) and
  ``step_block(state, u_block, rngs) -> (y_block, state)``; streaming a trial in blocks gives the same
  samples as one ``simulate`` call (same generators).
- persistence: ``to_arrays() -> (arrays, attrs)`` (numpy arrays, JSON-able attrs) and classmethod
  ``from_arrays(arrays, attrs)``: no code executed on load, predictions bit for bit identical.
- identity: ``units()`` (columns ``id`` int64 stable, ``kind`` str and per-unit parameters, one row per
  unit), ``edges() -> (pre_id, post_id, weight)`` sparse connectivity, ``electrode_map()`` (which units
  read each stimulus channel, which units and weights make each response channel).

The residual noise model shared by the families here (:class:`ResidualNoise`): per response channel an
AR(1) process ``e[t] = rho e[t-1] + sqrt(1 - rho^2) std w[t]`` fitted to the residuals of the free-run
prediction on the training trials, added to the output (measurement noise: it does not feed back), so
``reset(seed)`` repeats differ as the substrate's repeats did, by the recorded residual.  The fit is
robust: ``std`` and ``rho`` come from the residuals (less each trial's mean) clipped at ``CLIP_SD``
robust standard deviations (the median absolute deviation's), the clipped variance corrected to a
Gaussian's; a residual's large excursions are not noise.  Where trials follow each other closely the
recorded substrate still carries the previous trial at a trial's start, which a twin run from rest does
not: on ``protocols/examples/potato_twin.toml`` (0.1 s between trials) two channels' residuals had a
plain std 2.0x their median absolute deviation's, and the noisy twin's NRMSE was 0.0186 against the
floor's 0.0106 with the plain std, 0.0149 with this fit (a perfect mean with the substrate's own noise:
about 0.0126); on the demo recording (1 s between trials) 0.00340 and 0.00339.  The median absolute
deviation alone is not the scale: on the demo, stored in 20 uV steps at a 20 uV noise, it reads 7-9 %
above the residuals' std.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from prclab.errors import PrclabError


def padded(trials: list[np.ndarray]) -> np.ndarray:
    """Trials ``(T_i, k)`` as one batch ``(n, max T, k)``, each padded with its last sample: a causal run
    of the batch answers every trial's own samples as it would alone, and is cut back to them."""
    steps = max(len(t) for t in trials)
    return np.stack([np.concatenate([t, np.repeat(t[-1:], steps - len(t), axis=0)]) for t in trials])


def check_trials(stimuli, responses, dt, where: str) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """Validated training trials: lists of float64 ``(T_i, n_in)`` / ``(T_i, n_out)``, equal lengths per
    trial and equal channel counts over trials, finite; ``dt`` > 0.  ``PrclabError`` naming ``where``."""
    if len(stimuli) == 0 or len(stimuli) != len(responses):
        raise PrclabError(f"{where}: needs one response per stimulus and at least one trial, got "
                          f"{len(stimuli)} stimuli and {len(responses)} responses")
    if not (np.isfinite(dt) and dt > 0):
        raise PrclabError(f"{where}: dt must be a positive number of seconds, got {dt}")
    u = [np.asarray(s, float) for s in stimuli]
    y = [np.asarray(r, float) for r in responses]
    for i, (a, b) in enumerate(zip(u, y)):
        if a.ndim != 2 or b.ndim != 2 or len(a) != len(b):
            raise PrclabError(f"{where}: trial {i}: stimulus {a.shape} and response {b.shape} must be "
                              f"(T, n_in) and (T, n_out) of one length T")
        if a.shape[1] != u[0].shape[1] or b.shape[1] != y[0].shape[1]:
            raise PrclabError(f"{where}: trial {i} has {a.shape[1]} inputs / {b.shape[1]} outputs, trial 0 "
                              f"has {u[0].shape[1]} / {y[0].shape[1]}")
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
            raise PrclabError(f"{where}: trial {i} holds NaN or infinite values")
    return u, y, float(dt)


MAD_TO_SD = 1.4826   # standard deviations per median absolute deviation (Gaussian)
CLIP_SD = 3.0        # residuals clipped at this many of their robust standard deviations
CLIPPED_VARIANCE = 0.9950   # E[min(x^2, 9)] of a standard normal x: the clipped variance's consistency factor


class ResidualNoise:
    """Per-channel AR(1) residual noise (module docstring): ``std`` ``(n_out,)`` and ``rho`` ``(n_out,)``."""

    def __init__(self, std: np.ndarray, rho: np.ndarray):
        self.std = np.asarray(std, float)
        self.rho = np.asarray(rho, float)

    @classmethod
    def fit(cls, residuals: list[np.ndarray]) -> ResidualNoise:
        """From residual trials ``(T_i, n_out)`` (recorded minus predicted)."""
        r = [e - e.mean(axis=0) for e in residuals]
        flat = np.concatenate(r)
        scale = MAD_TO_SD * np.median(np.abs(flat - np.median(flat, axis=0)), axis=0)
        clipped = [np.clip(e, -CLIP_SD * scale, CLIP_SD * scale) for e in r]
        var = np.mean(np.concatenate(clipped) ** 2, axis=0)
        lag = sum((e[1:] * e[:-1]).sum(axis=0) for e in clipped) / max(1, sum(len(e) - 1 for e in clipped))
        rho = np.clip(np.where(var > 0, lag / np.maximum(var, 1e-300), 0.0), 0.0, 0.999)
        return cls(np.sqrt(var / CLIPPED_VARIANCE), rho)

    def initial(self, batch: int) -> np.ndarray:
        """The noise state at rest ``(batch, n_out)``: drawn from the stationary distribution at the
        first sample (see :meth:`draw`), so zeros mark 'not started'."""
        return np.full((batch, len(self.std)), np.nan)

    def draw(self, e: np.ndarray, steps: int, rngs) -> tuple[np.ndarray, np.ndarray]:
        """``steps`` samples ``(batch, steps, n_out)`` continuing state ``e`` ``(batch, n_out)``; returns them
        and the new state.  ``rngs``: one Generator per batch row."""
        batch, n = e.shape
        w = np.stack([g.standard_normal((steps, n)) for g in rngs]) if steps else np.zeros((batch, 0, n))
        out = np.empty((batch, steps, n))
        innov = np.sqrt(1.0 - self.rho ** 2) * self.std
        prev = e.copy()
        start = 0
        if steps and np.isnan(prev).any():      # first sample: stationary draw
            out[:, 0] = w[:, 0] * self.std
            prev, start = out[:, 0], 1
        if steps > start:   # AR(1) along time per channel, vectorised over the batch
            for j in range(n):
                out[:, start:, j], _ = lfilter([1.0], [1.0, -self.rho[j]], innov[j] * w[:, start:, j], axis=1,
                                               zi=(self.rho[j] * prev[:, j])[:, None])
        return out, (out[:, -1].copy() if steps else e)

    def to_arrays(self, prefix: str = "noise_") -> dict[str, np.ndarray]:
        return {f"{prefix}std": self.std, f"{prefix}rho": self.rho}

    @classmethod
    def from_arrays(cls, arrays: dict, prefix: str = "noise_") -> ResidualNoise:
        return cls(arrays[f"{prefix}std"], arrays[f"{prefix}rho"])


class TwinFamily:
    """Base class of the twin families (module docstring).  Subclasses set ``name``, implement ``fit``,
    ``initial_state``, ``_step_mean`` (the noiseless block step), ``to_arrays``/``from_arrays``, ``units``,
    ``edges`` and ``electrode_map``; they store ``n_inputs_``, ``n_outputs_``, ``dt_`` and ``noise_``
    (:class:`ResidualNoise`) when fitted.  ``fits`` says what responses the family models: ``"signals"``
    (voltages or currents, judged by free-run NRMSE) or ``"counts"`` (spike counts per sample, judged by
    the spiking metrics).  ``session_history``: the family's state outlasts a trial (a culture's bursts and
    their depression), so its ``fit`` takes ``history`` (per training trial, whether it began from rest,
    right after the one before it, or after trials the fit does not see; ``twin fit`` passes
    ``FitData.train_history``)."""

    name: str = ""
    fits: str = "signals"
    session_history: bool = False

    def _check_fitted(self) -> None:
        if not hasattr(self, "noise_"):
            raise PrclabError(f"twin family {self.name!r}: not fitted (call fit first)")

    def _check_u(self, u) -> np.ndarray:
        u = np.asarray(u, float)
        if u.ndim == 2:
            u = u[None]
        if u.ndim != 3 or u.shape[2] != self.n_inputs_:
            raise PrclabError(f"twin {self.name!r}: input must be (batch, T, {self.n_inputs_}), got {u.shape}")
        return u

    def initial_state(self, batch: int) -> dict[str, np.ndarray]:
        """Rest state for ``batch`` rows: the family's own arrays plus ``noise`` ``(batch, n_out)``."""
        self._check_fitted()
        return {**self._initial_mean_state(batch), "noise": self.noise_.initial(batch)}

    def step_block(self, state: dict, u_block, rngs=None) -> tuple[np.ndarray, dict]:
        """``u_block`` ``(batch, T, n_in)`` from ``state``: ``(y_block (batch, T, n_out), new state)``;
        ``rngs`` None (no noise) or one Generator per row."""
        self._check_fitted()
        u = self._check_u(u_block)
        mean_state = {k: v for k, v in state.items() if k != "noise"}
        y, mean_state = self._step_mean(mean_state, u)
        noise = state["noise"]
        if rngs is not None:
            if len(rngs) != len(u):
                raise PrclabError(f"twin {self.name!r}: {len(rngs)} noise generators for a batch of {len(u)}")
            e, noise = self.noise_.draw(noise, u.shape[1], rngs)
            y = y + e
        return y, {**mean_state, "noise": noise}

    def simulate(self, u, noise_rng=None) -> np.ndarray:
        """Free run from rest: ``(batch, T, n_in)`` -> ``(batch, T, n_out)`` (module docstring)."""
        u = self._check_u(u)
        y, _ = self.step_block(self.initial_state(len(u)), u, noise_rng)
        return y

    def _fit_noise(self, stimuli: list[np.ndarray], responses: list[np.ndarray]) -> None:
        """``noise_`` from the free-run residuals of the training trials."""
        pred = [self.simulate(u[None])[0] for u in stimuli]
        self.noise_ = ResidualNoise.fit([y - p for y, p in zip(responses, pred)])

    # identity defaults: the families override what they have
    def edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sparse connectivity ``(pre_id (E,), post_id (E,), weight (E,))`` by unit id; none by default."""
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
