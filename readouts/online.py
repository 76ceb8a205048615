"""Online linear readouts, trained one sample at a time: recursive least squares (FORCE) and LMS.

Both follow scikit-learn's estimator shape: parameters in ``__init__``, ``partial_fit(X, y)`` adds
samples (one tick's features is one row), ``fit`` starts afresh, ``predict``; fitted attributes end in
``_`` (``coef_`` ``(n_targets, n_features)``, ``intercept_`` ``(n_targets,)``, as ``sklearn.linear_model``
stores them; a 1-D ``y`` gives 1-D predictions).  Input validation is kept light (a float64 view, the
shape and finiteness) because a closed loop calls ``partial_fit`` every tick.

RLS (Haykin, *Adaptive Filter Theory*, ch. 10; FORCE learning is RLS on a readout whose output is fed
back, Sussillo & Abbott 2009, Neuron 63:544).  With the weights ``W`` ``(n_features + 1, n_targets)``
(last row: the intercept, the features extended by a constant 1), the inverse correlation estimate
``P`` (``P0 = I / alpha``) and the forgetting factor ``lam`` (1: none; 0.99: a memory of ~100 samples)::

    e = y - Wᵀx,   Px = P x,   k = Px / (lam + xᵀPx),   W <- W + k eᵀ,   P <- (P - k Pxᵀ) / lam

``P`` is kept as ``s Q`` with a scalar ``s``: the division by ``lam`` only scales ``s`` and the rank-one
update is one in-place BLAS ``dger`` on ``Q`` (``P`` is symmetric, so updating the C-ordered array as its
Fortran-ordered transpose is the same update), so an update costs one matrix-vector product and one
rank-one update of ``(n_features + 1)²`` numbers (``benchmarks/bench_rls.py`` measures it).  Products
this small gain nothing from several BLAS threads and lose much on a busy machine (measured at load 4 on
2 cores: 9.5 ms per 500-feature update with OpenBLAS's 2 threads, 0.12 ms with one): run online
learning under ``threadpoolctl.threadpool_limits(1, "blas")``, as the closed loop does.

LMS (Widrow & Hoff 1960), normalised by default (NLMS: the step divided by ``eps + |x|²``, so the
learning rate is scale free)::

    W <- W + mu x eᵀ / (eps + xᵀx)
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import blas
from sklearn.base import BaseEstimator, RegressorMixin

from prclab.errors import PrclabError

#: when the scale ``s`` of ``P = s Q`` leaves [1e-100, 1e100] it is folded into ``Q``
_SCALE_LIMIT = 1e100


class _OnlineLinear(RegressorMixin, BaseEstimator):
    """What RLS and LMS share: the extended weights ``W_``, validation, ``fit`` and ``predict``."""

    def _start(self, n_features: int, n_targets: int) -> None:
        self.n_features_in_ = n_features
        self.W_ = np.zeros((n_features + 1, n_targets))
        self._x = np.ones(n_features + 1)  # the features extended by the constant 1, reused per sample
        self.n_samples_seen_ = 0

    def _check(self, X, y=None, start: bool = False):
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X[None]
        if X.ndim != 2:
            raise PrclabError(f"{type(self).__name__}: X must be (n_samples, n_features), got shape {X.shape}")
        if not np.isfinite(X).all():
            raise PrclabError(f"{type(self).__name__}: X holds NaN or infinity")
        if y is not None:
            y = np.asarray(y, dtype=np.float64)
            self._flat = y.ndim == 1 if start else self._flat
            y = y.reshape(len(y), -1) if y.ndim else y.reshape(1, 1)
            if len(y) != len(X):
                raise PrclabError(f"{type(self).__name__}: X has {len(X)} rows but y {len(y)}")
            if not np.isfinite(y).all():
                raise PrclabError(f"{type(self).__name__}: y holds NaN or infinity")
            if start:
                self._start(X.shape[1], y.shape[1])
            elif y.shape[1] != self.W_.shape[1]:
                raise PrclabError(f"{type(self).__name__}: y has {y.shape[1]} targets, fitted with "
                                  f"{self.W_.shape[1]}")
        if X.shape[1] != self.n_features_in_:
            raise PrclabError(f"{type(self).__name__}: X has {X.shape[1]} features, fitted with "
                              f"{self.n_features_in_}")
        return X, y

    def fit(self, X, y):
        """Forget what was learnt and learn ``X`` ``(n, n_features)`` -> ``y`` ``(n,)`` or
        ``(n, n_targets)`` sample by sample, in order."""
        for attr in ("W_", "n_features_in_"):
            self.__dict__.pop(attr, None)
        return self.partial_fit(X, y)

    def partial_fit(self, X, y):
        """Learn the samples ``X`` ``(n, n_features)`` (or one ``(n_features,)``) -> ``y``, in order;
        the first call fixes the numbers of features and targets."""
        X, y = self._check(X, y, start=not hasattr(self, "W_"))
        for x, t in zip(X, y):
            self._x[:-1] = x
            self._update(self._x, t)
        self.n_samples_seen_ += len(X)
        return self

    def predict(self, X) -> np.ndarray:
        """``(n,)`` (a 1-D ``y`` was fitted) or ``(n, n_targets)`` outputs for ``X`` ``(n, n_features)``.

        Raises:
            PrclabError: nothing learnt yet, or ``X`` of another width than learnt."""
        if not hasattr(self, "W_"):
            raise PrclabError(f"{type(self).__name__}: not fitted; call partial_fit first")
        X, _ = self._check(X)
        out = X @ self.W_[:-1] + self.W_[-1]
        return out[:, 0] if self._flat else out

    @property
    def coef_(self) -> np.ndarray:
        return self.W_[:-1].T

    @property
    def intercept_(self) -> np.ndarray:
        return self.W_[-1]


class RLSReadout(_OnlineLinear):
    """Recursive least squares with a forgetting factor (FORCE when its output is fed back).

    Args:
        alpha: regularisation of the start, ``P0 = I / alpha`` (small: fast first learning).
        forgetting: ``lam`` in (0, 1]; 1 weighs every sample alike, below 1 older samples fade with
            ``lam**age`` (an effective memory of ``1 / (1 - lam)`` samples).  Below 1, directions the
            inputs do not excite grow in ``P`` by ``1 / lam`` a sample (covariance wind-up), so
            correlated features such as reservoir states can make the weights jump: in the Pong loop
            (``protocols/examples/pong_esn_rls.toml``, 300 ESN states) 0.999 played 15 hits per rally in
            the first 5 simulated minutes and 0.98 in the last 5.
    """

    def __init__(self, alpha: float = 1e-2, forgetting: float = 1.0):
        self.alpha = alpha
        self.forgetting = forgetting

    def _start(self, n_features: int, n_targets: int) -> None:
        if not (np.isfinite(self.alpha) and self.alpha > 0):
            raise PrclabError(f"RLSReadout: alpha must be > 0, got {self.alpha}")
        if not 0 < self.forgetting <= 1:
            raise PrclabError(f"RLSReadout: forgetting must lie in (0, 1], got {self.forgetting}")
        super()._start(n_features, n_targets)
        self._Q = np.eye(n_features + 1) / self.alpha  # P = self._s * self._Q
        self._s = 1.0
        self._Px = np.empty(n_features + 1)
        self._Wt = self.W_.T  # W_'s transpose, Fortran-ordered: BLAS updates it in place

    def _update(self, x: np.ndarray, y: np.ndarray) -> None:
        Px = np.dot(self._Q, x, out=self._Px)
        Px *= self._s
        k = Px / (self.forgetting + np.dot(x, Px))
        e = y - np.dot(x, self.W_)
        blas.dger(1.0, e, k, a=self._Wt, overwrite_a=True)  # Wᵀ += e kᵀ (on W's Fortran view)
        # Q <- Q - k Pxᵀ / s on the Fortran view of Q (Q symmetric: the same update)
        blas.dger(-1.0 / self._s, k, Px, a=self._Q.T, overwrite_a=True)
        self._s /= self.forgetting
        if self._s > _SCALE_LIMIT:
            self._Q *= self._s
            self._s = 1.0

    @property
    def P_(self) -> np.ndarray:
        """The inverse correlation estimate ``(n_features + 1, n_features + 1)`` (a copy)."""
        return self._s * self._Q


class LMSReadout(_OnlineLinear):
    """Least mean squares, normalised by default.

    Args:
        learning_rate: ``mu``; with ``normalized`` stable for 0 < mu < 2.
        normalized: divide the step by ``eps + |x|²`` (NLMS).
        eps: keeps the normalised step finite for an all-zero input.
    """

    def __init__(self, learning_rate: float = 0.1, normalized: bool = True, eps: float = 1e-6):
        self.learning_rate = learning_rate
        self.normalized = normalized
        self.eps = eps

    def _start(self, n_features: int, n_targets: int) -> None:
        if not (np.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise PrclabError(f"LMSReadout: learning_rate must be > 0, got {self.learning_rate}")
        super()._start(n_features, n_targets)

    def _update(self, x: np.ndarray, y: np.ndarray) -> None:
        step = self.learning_rate / (self.eps + x @ x) if self.normalized else self.learning_rate
        self.W_ += np.outer(step * x, y - x @ self.W_)
