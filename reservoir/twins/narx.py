"""NARX twin: one polynomial NARX model per recorded channel, structure chosen by SysIdentPy's FROLS.

Per response channel ``c`` (standardised by the training trials' mean and std, as is each input) the model
is a sum of at most ``max_terms`` polynomial terms of degree <= ``degree`` in the candidate regressors::

    y_c(t) = sum_j theta_cj * prod_d v_c(t)[f_cjd],
    v_c(t) = [1, y_c(t-1) ... y_c(t-ylag), u_1(t) ... u_1(t-xlag+1), ..., u_n(t) ... u_n(t-xlag+1)]

(the input enters from the same sample on: a substrate's electrode answers the sample it is driven in).
SysIdentPy is MISO, one model per output, so every channel gets its own model fed by its own past and
every input (no cross-channel terms: the other channels' pasts would make a channel's free run depend on
64 coupled models for little gain on a shared-core substrate).  Fitting: SysIdentPy's FROLS (polynomial
basis, ``info_criteria`` over up to ``max_terms`` terms) picks each channel's terms on the training trials
concatenated (at most ``selection_samples`` samples, evenly strided trials); the coefficients are then
re-estimated by least squares (ridge ``l2``) over every training trial with each trial's own history (no
regressor spans two trials).  SysIdentPy is only needed to fit: the selected terms (index arrays) and
coefficients are stored as arrays and evaluated here with numpy, so a loaded twin predicts bit for bit.

Free run: the model feeds on its own predictions from rest (the training trials' mean first sample), and
each output is clipped to the training range widened by ``clip_margin`` ranges (a polynomial NARX can
diverge in free run; the clip bounds it, said here).  Noise (``rngs`` given): the families' shared
:class:`~.base.ResidualNoise` (AR(1) per channel, fitted to the training trials' free-run residuals),
added to the output, not fed back.  Units: inputs volts, outputs the recording's units; ``dt`` seconds.
"""

from __future__ import annotations

import numpy as np

from prclab.errors import PrclabError

from .base import ResidualNoise, TwinFamily, check_trials
from .linear import free_run_nrmse, validation_split


def _require_sysidentpy():
    """SysIdentPy's FROLS, Polynomial and LeastSquares, or a one-line PrclabError when it is missing."""
    try:
        from sysidentpy.basis_function import Polynomial
        from sysidentpy.model_structure_selection import FROLS
        from sysidentpy.parameter_estimation import LeastSquares
    except ImportError as exc:
        raise PrclabError("twin family 'narx' needs SysIdentPy to fit: pip install 'prclab[narx]' "
                          f"(or pip install sysidentpy); import failed: {exc}") from None
    return FROLS, Polynomial, LeastSquares


class NarxTwin(TwinFamily):
    """Polynomial NARX per channel (see the module docstring).

    Args:
        ylag: past outputs per channel (samples, >= 1).
        xlag: input samples per input, the current one included (>= 1).
        degree: polynomial degree of the terms (1 or 2; 3 grows the candidates fast).
        max_terms: most terms per channel FROLS considers (``info_criteria`` picks how many).
        info_criteria: SysIdentPy's criterion: "aic", "bic", "fpe", "lilc" or "aicc".
        selection_samples: most concatenated training samples FROLS sees per channel.
        l2: ridge penalty of the coefficient re-estimate (standardised units).
        clip_margin: free-run outputs are clipped to [min - m range, max + m range] of training.
        validation: fraction of the training trials (the last ones) that scores the family's free run
            (``validation_nrmse_``, what ``twin fit --model best`` compares) before the refit on all.
    """

    name = "narx"

    def __init__(self, ylag: int = 2, xlag: int = 2, degree: int = 2, max_terms: int = 12,
                 info_criteria: str = "bic", selection_samples: int = 20000, l2: float = 1e-6,
                 clip_margin: float = 0.5, validation: float = 0.25):
        self.ylag, self.xlag, self.degree, self.max_terms = ylag, xlag, degree, max_terms
        self.info_criteria, self.selection_samples = info_criteria, selection_samples
        self.l2, self.clip_margin, self.validation = l2, clip_margin, validation

    # -- fitting -------------------------------------------------------------------------------------
    def fit(self, stimuli, responses, dt) -> NarxTwin:
        """Fit on training trials: ``stimuli`` list of ``(T_i, n_in)`` volts, ``responses`` ``(T_i, n_out)``."""
        stimuli, responses, dt = check_trials(stimuli, responses, dt, f"twin {self.name!r}")
        for key in ("ylag", "xlag", "degree", "max_terms", "selection_samples"):
            if int(getattr(self, key)) < 1:
                raise PrclabError(f"twin {self.name!r}: {key} must be >= 1, got {getattr(self, key)}")
        self.dt_ = float(dt)
        self.n_inputs_, self.n_outputs_ = stimuli[0].shape[1], responses[0].shape[1]
        fit_i, val_i = validation_split(len(stimuli), self.validation, f"twin {self.name!r}")
        self._fit_model([stimuli[i] for i in fit_i], [responses[i] for i in fit_i])
        self.validation_nrmse_ = free_run_nrmse([self._mean(stimuli[i][None])[0] for i in val_i],
                                                [responses[i] for i in val_i])
        self._fit_model(stimuli, responses)
        self._fit_noise(stimuli, responses)
        return self

    def _fit_model(self, stimuli: list[np.ndarray], responses: list[np.ndarray]) -> None:
        """Scalings, FROLS terms and least-squares coefficients from these trials (module docstring)."""
        FROLS, Polynomial, LeastSquares = _require_sysidentpy()
        u_all, y_all = np.concatenate(stimuli), np.concatenate(responses)
        self.u_mean_, self.u_std_ = u_all.mean(0), _safe_std(u_all)
        self.y_mean_, self.y_std_ = y_all.mean(0), _safe_std(y_all)
        us = [(s - self.u_mean_) / self.u_std_ for s in stimuli]
        ys = [(r - self.y_mean_) / self.y_std_ for r in responses]
        z_all = (y_all - self.y_mean_) / self.y_std_
        span = z_all.max(0) - z_all.min(0)
        self.y_lo_ = z_all.min(0) - self.clip_margin * span
        self.y_hi_ = z_all.max(0) + self.clip_margin * span
        self.u_rest_ = np.mean([u[0] for u in us], axis=0)
        self.y_rest_ = np.mean([y[0] for y in ys], axis=0)
        # FROLS on a strided subset of trials, concatenated; x shifted one sample ahead so that
        # SysIdentPy's lag 1 is the current input
        step = max(1, int(np.ceil(sum(len(u) for u in us) / self.selection_samples)))
        picked = list(range(0, len(us), step))
        xs = np.concatenate([np.vstack([u[1:], u[-1:]]) for u in (us[i] for i in picked)])
        zs = np.concatenate([ys[i] for i in picked])
        terms = np.zeros((self.n_outputs_, self.max_terms, self.degree), dtype=np.int64)
        n_selected = np.zeros(self.n_outputs_, dtype=np.int64)
        for c in range(self.n_outputs_):
            model = FROLS(order_selection=True, n_info_values=self.max_terms, ylag=self.ylag,
                          xlag=[list(range(1, self.xlag + 1))] * self.n_inputs_,
                          info_criteria=self.info_criteria, estimator=LeastSquares(),
                          basis_function=Polynomial(degree=self.degree), model_type="NARMAX")
            model.fit(X=xs, y=zs[:, c:c + 1])
            codes = np.asarray(model.final_model)[: self.max_terms]
            n_selected[c] = len(codes)
            for j, code in enumerate(codes):
                terms[c, j] = [self._feature_of(int(k)) for k in code]
        self.terms_ = terms
        self.theta_ = np.zeros((self.n_outputs_, self.max_terms))
        for c in range(self.n_outputs_):
            rows = np.concatenate([self._term_values(self._features_of_trial(u, y[:, c]), c)
                                   for u, y in zip(us, ys)])
            target = np.concatenate([y[:, c] for y in ys])
            used = np.arange(self.max_terms) < n_selected[c]   # padding: term 1 with coefficient 0
            a = rows[:, used]
            theta = np.linalg.solve(a.T @ a + self.l2 * len(a) * np.eye(a.shape[1]), a.T @ target)
            self.theta_[c, used] = theta
        self.noise_ = ResidualNoise(np.zeros(self.n_outputs_), np.zeros(self.n_outputs_))   # replaced once fitted

    def _mean(self, u: np.ndarray) -> np.ndarray:
        return self._step_mean(self._initial_mean_state(len(u)), u)[0]

    def _n_features(self) -> int:
        return 1 + self.ylag + self.n_inputs_ * self.xlag

    def _feature_of(self, code: int) -> int:
        """Index into ``v_c(t)`` of a SysIdentPy regressor code (0: one; 1000 + k: y(t-k); (i+2)1000 + k:
        shifted input i at lag k, i.e. u_i(t-k+1))."""
        if code == 0:
            return 0
        var, lag = divmod(code, 1000)
        if var == 1:
            return lag
        return 1 + self.ylag + (var - 2) * self.xlag + (lag - 1)

    def _features_of_trial(self, u: np.ndarray, y: np.ndarray) -> np.ndarray:
        """One-step candidate regressors ``(T, n_f)`` of a standardised trial ``u`` ``(T, n_in)``, ``y``
        ``(T,)``, history before the trial at rest."""
        steps = len(u)
        yp = np.concatenate([np.full(self.ylag, y[0]), y])
        up = np.concatenate([np.repeat(u[:1], self.xlag - 1, 0), u])
        cols = [np.ones(steps)] + [yp[self.ylag - k: self.ylag - k + steps] for k in range(1, self.ylag + 1)]
        cols += [up[self.xlag - 1 - k: self.xlag - 1 - k + steps, i]
                 for i in range(self.n_inputs_) for k in range(self.xlag)]
        return np.stack(cols, axis=1)

    def _term_values(self, v: np.ndarray, c: int) -> np.ndarray:
        """Term values ``(..., max_terms)`` of channel ``c`` from candidate regressors ``v`` ``(..., n_f)``."""
        return np.prod(v[..., self.terms_[c]], axis=-1)

    # -- running (TwinFamily's step_block / simulate add the residual noise) ---------------------------
    def _initial_mean_state(self, batch: int) -> dict[str, np.ndarray]:
        """Rest: ``y_hist`` ``(batch, n_out, ylag)`` and ``u_hist`` ``(batch, xlag - 1, n_in)``, standardised."""
        return {"y_hist": np.tile(self.y_rest_[None, :, None], (batch, 1, self.ylag)),
                "u_hist": np.tile(self.u_rest_[None, None, :], (batch, self.xlag - 1, 1))}

    def _step_mean(self, state: dict, u_block: np.ndarray) -> tuple[np.ndarray, dict]:
        """Noiseless free run over ``u_block`` ``(batch, T, n_in)`` volts from ``state``: ``(y (batch, T,
        n_out) in the recording's units, new state)``; one vectorised step per sample (the feedback)."""
        u = (u_block - self.u_mean_) / self.u_std_
        batch, steps, _ = u.shape
        up = np.concatenate([state["u_hist"], u], axis=1)
        y_hist = state["y_hist"]
        out = np.empty((batch, steps, self.n_outputs_))
        n_out = self.n_outputs_
        rows = np.arange(n_out)[:, None, None]
        ones = np.ones((batch, n_out, 1))
        for t in range(steps):
            lagged = up[:, t: t + self.xlag][:, ::-1].transpose(0, 2, 1).reshape(batch, 1, -1)
            v = np.concatenate([ones, y_hist, np.broadcast_to(lagged, (batch, n_out, lagged.shape[2]))], axis=2)
            terms = np.prod(v[:, rows, self.terms_], axis=-1)      # (batch, n_out, max_terms)
            y = np.clip(np.einsum("bcj,cj->bc", terms, self.theta_), self.y_lo_, self.y_hi_)
            out[:, t] = y
            y_hist = np.concatenate([y[:, :, None], y_hist[:, :, :-1]], axis=2)
        return out * self.y_std_ + self.y_mean_, {"y_hist": y_hist, "u_hist": up[:, up.shape[1] - (self.xlag - 1):]}

    # -- persistence and identity --------------------------------------------------------------------
    _ARRAYS = ("terms_", "theta_", "u_mean_", "u_std_", "y_mean_", "y_std_", "y_lo_", "y_hi_",
               "u_rest_", "y_rest_")
    _SETTINGS = ("ylag", "xlag", "degree", "max_terms", "info_criteria", "selection_samples", "l2",
                 "clip_margin", "validation")

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        """Selected terms (feature indices), coefficients and scalings as arrays; settings and dt as attrs."""
        self._check_fitted()
        arrays = {key.rstrip("_"): np.asarray(getattr(self, key)) for key in self._ARRAYS}
        arrays.update(self.noise_.to_arrays())
        attrs = {key: getattr(self, key) for key in self._SETTINGS}
        attrs.update(dt=self.dt_, n_inputs=self.n_inputs_, n_outputs=self.n_outputs_,
                     validation_nrmse=self.validation_nrmse_)
        return arrays, attrs

    @classmethod
    def from_arrays(cls, arrays: dict, attrs: dict) -> NarxTwin:
        """Rebuild from :meth:`to_arrays`'s output (no code run, no SysIdentPy needed)."""
        try:
            twin = cls(**{key: attrs[key] for key in cls._SETTINGS})
            twin.dt_, twin.n_inputs_, twin.n_outputs_ = float(attrs["dt"]), int(attrs["n_inputs"]), int(attrs["n_outputs"])
            twin.validation_nrmse_ = float(attrs["validation_nrmse"])
            for key in cls._ARRAYS:
                setattr(twin, key, np.asarray(arrays[key.rstrip("_")]))
            twin.noise_ = ResidualNoise.from_arrays(arrays)
        except KeyError as exc:
            raise PrclabError(f"twin 'narx': the file's family arrays lack {exc}") from None
        shape = (twin.n_outputs_, twin.max_terms, twin.degree)
        if twin.terms_.shape != shape or twin.theta_.shape != shape[:2] or \
                twin.terms_.min() < 0 or twin.terms_.max() >= twin._n_features():
            raise PrclabError(f"twin 'narx': the file's terms/theta do not fit {shape} with "
                              f"{twin._n_features()} candidate regressors")
        return twin

    def units(self) -> dict[str, np.ndarray]:
        """One unit per response channel (its NARX model): ``id``, ``kind``, ``n_terms``, ``noise_std``,
        ``noise_rho``, ``terms`` ``(n_out, max_terms, degree)`` (indices into ``v_c``) and ``theta``."""
        self._check_fitted()
        n = self.n_outputs_
        return {"id": np.arange(n, dtype=np.int64), "kind": np.array(["narx"] * n),
                "n_terms": np.count_nonzero(self.theta_, axis=1).astype(np.int64),
                "noise_std": self.noise_.std, "noise_rho": self.noise_.rho, "terms": self.terms_,
                "theta": self.theta_}

    def electrode_map(self) -> dict:
        """``input_units``: every unit reads every stimulus channel; ``output_units`` ``(n_out, 1)``: unit j is
        response channel j (weight 1).  No edges: a channel's model sees its own past only."""
        self._check_fitted()
        n = self.n_outputs_
        return {"input_units": np.tile(np.arange(n, dtype=np.int64), (self.n_inputs_, 1)),
                "output_units": np.arange(n, dtype=np.int64)[:, None], "output_weights": np.ones((n, 1))}


def _safe_std(a: np.ndarray) -> np.ndarray:
    """Per-column std of ``a`` ``(N, k)``, 1 where a column is constant."""
    std = a.std(0)
    return np.where(std > 0, std, 1.0)
