"""The ``echo`` twin family: a fixed sparse echo-state reservoir driven by the stimulus, with the per-channel
ARX map of :mod:`.linear` from its states (and the stimulus) to every recorded channel.

``x(t)`` is :class:`~prclab.reservoir.esn.EchoStateCore`'s state (``n_units`` leaky tanh units, sparse
recurrent weights at ``spectral_radius``, input weights for the stimulus scaled by ``g / max |u|`` of the
training trials, ``g`` the input scaling); the features are ``F(t) = [x(t), u(t)]`` and each channel ``j`` is
``y_j[t] = c_j + F(t) . w_j + sum_k a_jk y_j[t-k]`` run free (own-output feedback, as :mod:`.linear`).
The input scaling ``g`` (how far the stimulus drives the units into their nonlinearity: a tissue that
is nearly linear wants little), the leak rate (the reservoir's time scale), the own-output lags and the
ridge ``alpha`` are chosen by
free-run NRMSE on the last ``validation`` fraction of the training trials; the winner is refitted on all
of them.  Only the readout is fitted (a few ridge solves), so a refit takes seconds.  The reservoir's
weights are saved as arrays: loading rebuilds the core from them, no seed replayed (a loaded twin
predicts bit for bit what the fitted one does; streamed in blocks, it agrees with one call to rounding,
the block matrix products summing in another order).
"""

from __future__ import annotations

import numpy as np

from prclab.errors import PrclabError

from ..esn import EchoStateCore, EchoStateNetwork
from .base import ResidualNoise, TwinFamily, check_trials
from .linear import Grams, arx_free_run, free_run_nrmse, stable, validation_split


class EchoTwin(TwinFamily):
    """Reservoir twin (module docstring).

    Args:
        n_units: reservoir units.
        spectral_radius, connectivity, bias_scaling: the reservoir's construction
            (``reservoir.esn.EchoStateNetwork``).
        input_scalings: candidate input scalings ``g`` (> 0), relative to the training stimulus's peak.
        leaks: candidate leak rates in (0, 1].
        lags_out: candidate own-output lag counts; alphas: candidate ridge penalties.
        validation: fraction of the training trials (the last ones) that scores the candidates.
        seed: the reservoir's weights.
    """

    name = "echo"

    def __init__(self, n_units: int = 300, spectral_radius: float = 0.9, connectivity: float = 0.05,
                 input_scalings=(0.1, 0.3, 1.0), bias_scaling: float = 0.2, leaks=(0.02, 0.1, 0.5),
                 lags_out=(1, 2), alphas=(1e-6, 1e-3), validation: float = 0.25, seed: int = 0):
        self.n_units, self.spectral_radius, self.connectivity = n_units, spectral_radius, connectivity
        self.input_scalings, self.bias_scaling, self.leaks = input_scalings, bias_scaling, leaks
        self.lags_out, self.alphas, self.validation, self.seed = lags_out, alphas, validation, seed

    def _settings(self) -> dict:
        return {"n_units": self.n_units, "spectral_radius": self.spectral_radius, "connectivity": self.connectivity,
                "input_scalings": [float(v) for v in self.input_scalings], "bias_scaling": self.bias_scaling,
                "leaks": [float(v) for v in self.leaks], "lags_out": [int(v) for v in self.lags_out],
                "alphas": [float(v) for v in self.alphas], "validation": self.validation, "seed": self.seed}

    def fit(self, stimuli, responses, dt) -> EchoTwin:
        u, y, dt = check_trials(stimuli, responses, dt, f"twin {self.name!r}")
        lags_out = sorted({int(k) for k in self.lags_out})
        gains = [float(g) for g in self.input_scalings]
        if not self.leaks or not lags_out or lags_out[0] < 0 or not len(self.alphas) or not gains \
                or min(gains) <= 0:
            raise PrclabError(f"twin {self.name!r}: input_scalings (> 0), leaks, lags_out (>= 0) and alphas must be "
                              f"non-empty")
        self.n_inputs_, self.n_outputs_, self.dt_ = u[0].shape[1], y[0].shape[1], dt
        peak = max(float(np.abs(a).max()) for a in u)
        unit_scale = 1.0 / peak if peak > 0 else 1.0
        try:
            esn = EchoStateNetwork(self.n_inputs_, self.n_units, self.spectral_radius, 1.0,
                                   float(self.leaks[0]), self.bias_scaling, self.connectivity, dtype="float64",
                                   seed=self.seed, dt=dt, threads=1)
        except ValueError as exc:
            raise PrclabError(f"twin {self.name!r}: {exc}") from None
        self.w_, self.w_in_, self.bias_ = esn.w_t.T.copy(), esn.w_in_t.T.copy(), esn.bias.copy()
        fit_i, val_i = validation_split(len(u), self.validation, f"twin {self.name!r}")
        scores, grams_of = {}, {}
        for gain, leak in ((g, float(v)) for g in gains for v in self.leaks):
            self.leak_, self.u_scale_ = leak, gain * unit_scale
            self._core = self._make_core()
            feats = [self._features(ui[None], np.zeros((1, self.n_units)))[0][0] for ui in u]
            grams = Grams(feats[0].shape[1], self.n_outputs_, lags_out[-1])
            for i in fit_i:
                grams.add(feats[i], y[i])
            full = Grams(feats[0].shape[1], self.n_outputs_, lags_out[-1])
            for f, yi in zip(feats, y):
                full.add(f, yi)
            grams_of[(gain, leak)] = full
            cols = np.arange(feats[0].shape[1])
            for na in lags_out:
                for alpha in self.alphas:
                    self.W_, self.A_, self.c_ = grams.solve(cols, na, float(alpha))
                    ok = stable(self.A_)
                    pred = [arx_free_run(feats[i][None] @ self.W_ + self.c_, self.A_,
                                         np.zeros((1, self.n_outputs_, na)))[0][0] for i in val_i] if ok else None
                    scores[(gain, leak, na, float(alpha))] = (free_run_nrmse(pred, [y[i] for i in val_i])
                                                                    if ok else float("inf"))
        (gain, leak, na, alpha), best = min(scores.items(), key=lambda kv: kv[1])
        if not np.isfinite(best):
            raise PrclabError(f"twin {self.name!r}: no candidate structure runs stable on the validation trials")
        self.leak_, self.lags_out_, self.alpha_, self.validation_nrmse_ = leak, na, alpha, best
        self.input_scaling_, self.u_scale_ = gain, gain * unit_scale
        self._core = self._make_core()
        self.W_, self.A_, self.c_ = grams_of[(gain, leak)].solve(np.arange(self.n_units + self.n_inputs_), na, alpha)
        self.noise_ = ResidualNoise(np.zeros(self.n_outputs_), np.zeros(self.n_outputs_))
        self._fit_noise(u, y)
        return self

    def _make_core(self) -> EchoStateCore:
        return EchoStateCore(self.w_, self.w_in_, self.bias_, self.leak_, dtype="float64", dt=self.dt_, threads=1)

    def _features(self, u: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``[x(t), u(t)]`` ``(batch, T, units + n_in)`` from reservoir state ``x`` ``(batch, units)``, and the
        state after the block."""
        core = self._core
        core.reset(0)   # no state noise; the batch size may change between calls
        core.load_state({"x": x})
        states = core.run(u * self.u_scale_)
        return np.concatenate([states, u], axis=2), states[:, -1].copy() if u.shape[1] else x

    def _initial_mean_state(self, batch: int) -> dict[str, np.ndarray]:
        return {"x": np.zeros((batch, self.n_units)), "zi": np.zeros((batch, self.n_outputs_, self.A_.shape[1]))}

    def _step_mean(self, state: dict, u: np.ndarray) -> tuple[np.ndarray, dict]:
        f, x = self._features(u, state["x"])
        y, zi = arx_free_run(f @ self.W_ + self.c_, self.A_, state["zi"])
        return y, {"x": x, "zi": zi}

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        self._check_fitted()
        return ({"w": self.w_, "w_in": self.w_in_, "bias": self.bias_, "W": self.W_, "A": self.A_, "c": self.c_,
                 **self.noise_.to_arrays()},
                {"n_inputs": self.n_inputs_, "n_outputs": self.n_outputs_, "dt": self.dt_, "leak": self.leak_,
                 "u_scale": self.u_scale_, "input_scaling": self.input_scaling_, "lags_out": self.lags_out_,
                 "alpha": self.alpha_, "validation_nrmse": self.validation_nrmse_, "settings": self._settings()})

    @classmethod
    def from_arrays(cls, arrays: dict, attrs: dict) -> EchoTwin:
        s = dict(attrs["settings"])
        self = cls(**{**s, "leaks": tuple(s["leaks"]), "lags_out": tuple(s["lags_out"]), "alphas": tuple(s["alphas"]),
                      "input_scalings": tuple(s["input_scalings"])})
        self.n_inputs_, self.n_outputs_, self.dt_ = int(attrs["n_inputs"]), int(attrs["n_outputs"]), float(attrs["dt"])
        self.leak_, self.u_scale_, self.lags_out_ = float(attrs["leak"]), float(attrs["u_scale"]), int(attrs["lags_out"])
        self.input_scaling_ = float(attrs["input_scaling"])
        self.alpha_, self.validation_nrmse_ = float(attrs["alpha"]), float(attrs["validation_nrmse"])
        self.w_, self.w_in_, self.bias_ = (np.asarray(arrays[k], float) for k in ("w", "w_in", "bias"))
        self.W_, self.A_, self.c_ = (np.asarray(arrays[k], float) for k in ("W", "A", "c"))
        self.noise_ = ResidualNoise.from_arrays(arrays)
        self._core = self._make_core()
        return self

    def units(self) -> dict[str, np.ndarray]:
        """Reservoir units (ids ``0..units-1``, kind ``tanh``, ``leak``, ``bias``) then one ``readout`` unit per
        response channel (ids ``units..``, its ``bias`` the channel's intercept, ``noise_std``/``noise_rho``)."""
        self._check_fitted()
        n, m = self.n_units, self.n_outputs_
        nan = np.full(n, np.nan)
        return {"id": np.arange(n + m, dtype=np.int64), "kind": np.array(["tanh"] * n + ["readout"] * m),
                "leak": np.concatenate([np.full(n, self.leak_), np.full(m, np.nan)]),
                "bias": np.concatenate([self.bias_, self.c_]),
                "noise_std": np.concatenate([nan, self.noise_.std]), "noise_rho": np.concatenate([nan, self.noise_.rho])}

    def edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Recurrent weights (pre -> post unit id) and readout weights (reservoir unit -> readout unit)."""
        post, pre = np.nonzero(self.w_)
        rpre, rpost = np.nonzero(self.W_[:self.n_units])
        return (np.concatenate([pre, rpre]).astype(np.int64), np.concatenate([post, rpost + self.n_units]).astype(np.int64),
                np.concatenate([self.w_[post, pre], self.W_[rpre, rpost]]))

    def electrode_map(self) -> dict:
        """``input_units`` ``(units,)`` ids, ``input_weights`` ``(n_in, units)`` (stimulus volts times
        ``u_scale``); ``output_units`` ``(n_out,)`` the readout unit of each channel, ``output_direct``
        ``(n_in, n_out)`` the stimulus's direct weights, ``output_feedback`` ``(n_out, lags)``."""
        self._check_fitted()
        return {"input_units": np.arange(self.n_units, dtype=np.int64), "input_weights": self.w_in_.T * self.u_scale_,
                "output_units": np.arange(self.n_units, self.n_units + self.n_outputs_, dtype=np.int64),
                "output_direct": self.W_[self.n_units:], "output_feedback": self.A_}
