"""Ridge-regression readouts with the scikit-learn estimator API.

``RidgeReadout`` solves the closed-form normal equations in float64,
``W = (Xc^T Xc + alpha I)^-1 Xc^T Yc`` on centred data, for any number of outputs.  Given a list of
``alphas`` it picks the one with the lowest leave-one-out squared error, computed for every alpha from one
eigendecomposition of ``Xc^T Xc = V diag(s) V^T``: with ``Q = Xc V`` the fitted values are
``Q diag(1/(s+alpha)) Q^T Yc`` and the hat-matrix diagonal is ``h_i = 1/n + sum_j Q_ij^2 / (s_j+alpha)``,
so the leave-one-out residual is ``(y_i - yhat_i) / (1 - h_i)``.

``RidgeClassifier`` trains a ``RidgeReadout`` on one-hot (+1/-1) targets over per-trial feature vectors
and predicts the argmax, with per-feature standardisation fitted on the training data only.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data


def _loo_errors(x: np.ndarray, y: np.ndarray, alphas) -> np.ndarray:
    """Mean leave-one-out squared error for each alpha; ``x``, ``y`` centred float64."""
    n = len(x)
    s, v = np.linalg.eigh(x.T @ x)
    s = np.maximum(s, 0.0)
    q = x @ v
    qty = q.T @ y
    q2 = q ** 2
    errors = []
    for alpha in alphas:
        d = 1.0 / (s + alpha)
        fitted = q @ (d[:, None] * qty)
        h = 1.0 / n + q2 @ d
        errors.append(np.mean(((y - fitted) / (1.0 - h)[:, None]) ** 2))
    return np.array(errors)


class RidgeReadout(RegressorMixin, BaseEstimator):
    """Closed-form multi-output ridge regression.

    Args:
        alpha: ridge parameter used when ``alphas`` is None.
        alphas: candidate ridge parameters; the one with the lowest leave-one-out error is used.
        fit_intercept: centre X and Y and fit an intercept.

    Fitted attributes: ``coef_`` ``(n_features, n_outputs)``, ``intercept_`` ``(n_outputs,)``,
    ``alpha_`` the ridge parameter used, ``loo_errors_`` (with ``alphas``).
    """

    def __init__(self, alpha: float = 1.0, alphas=None, fit_intercept: bool = True):
        self.alpha = alpha
        self.alphas = alphas
        self.fit_intercept = fit_intercept

    def fit(self, X, y):
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=np.float64)
        if self.alpha < 0 or (self.alphas is not None and np.min(self.alphas) <= 0):
            raise ValueError("ridge parameters must be positive")
        y2 = y.reshape(len(y), -1) if y.ndim == 1 else y
        x_mean = X.mean(axis=0) if self.fit_intercept else np.zeros(X.shape[1])
        y_mean = y2.mean(axis=0) if self.fit_intercept else np.zeros(y2.shape[1])
        xc, yc = X - x_mean, y2 - y_mean
        if self.alphas is not None:
            self.loo_errors_ = _loo_errors(xc, yc, self.alphas)
            self.alpha_ = float(np.asarray(self.alphas)[np.argmin(self.loo_errors_)])
        else:
            self.alpha_ = float(self.alpha)
        gram = xc.T @ xc
        gram[np.diag_indices_from(gram)] += self.alpha_
        coef = linalg.solve(gram, xc.T @ yc, assume_a="pos") if self.alpha_ > 0 else \
            np.linalg.lstsq(xc, yc, rcond=None)[0]
        self.coef_ = coef if y.ndim > 1 else coef[:, 0]
        intercept = y_mean - x_mean @ coef
        self.intercept_ = intercept if y.ndim > 1 else float(intercept[0])
        return self

    def predict(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return X @ self.coef_ + self.intercept_


class RidgeClassifier(ClassifierMixin, BaseEstimator):
    """Ridge classifier over trial feature vectors: one-hot ridge outputs, argmax.

    Args:
        alphas: candidate ridge parameters (leave-one-out choice); ``alpha`` if None.
        alpha: ridge parameter when ``alphas`` is None.
        standardize: scale each feature by training mean and std before the ridge.

    Fitted attributes: ``classes_``, ``readout_`` (the RidgeReadout), ``mean_``, ``scale_``.
    """

    def __init__(self, alphas=(1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3), alpha: float = 1.0,
                 standardize: bool = True):
        self.alphas = alphas
        self.alpha = alpha
        self.standardize = standardize

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float64)
        self.classes_ = unique_labels(y)
        if len(self.classes_) < 2:
            raise ValueError("RidgeClassifier needs at least two classes")
        self.mean_ = X.mean(axis=0) if self.standardize else np.zeros(X.shape[1])
        self.scale_ = np.maximum(X.std(axis=0), 1e-12) if self.standardize else np.ones(X.shape[1])
        targets = np.where(y[:, None] == self.classes_[None, :], 1.0, -1.0)
        alphas = None if self.alphas is None else np.asarray(self.alphas, dtype=float) * len(X)
        self.readout_ = RidgeReadout(alpha=self.alpha * len(X), alphas=alphas)
        self.readout_.fit((X - self.mean_) / self.scale_, targets)
        return self

    def decision_function(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self.readout_.predict((X - self.mean_) / self.scale_)

    def predict(self, X):
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]
