"""Ridge-regression readouts with the scikit-learn estimator API, streaming and cross-validated.

``RidgeReadout`` never holds the samples.  ``partial_fit`` adds a chunk to running sums kept in float64,

    n,  Σx,  Σy,  XᵀX (BLAS ``syrk``),  XᵀY,  Σy² (per output),

on data shifted by the first chunk's means (so the later centring subtracts small numbers, not large
ones).  Memory is ``O(features² + features * outputs)``, independent of the number of samples; ``fit``
is ``partial_fit`` over row chunks of its input from empty sums.  A large input is cut into one
contiguous row range per CPU core, each summed by its own thread with a one-thread BLAS on cache-sized
chunks, and the partial sums added (faster than one multi-threaded product over all rows).  The solve works on the centred sums,

    Gc = XᵀX - n x̄x̄ᵀ,   Bc = XᵀY - n x̄ȳᵀ,   W = (D⁻¹ Gc D⁻¹ + alpha I)⁻¹ D⁻¹ Bc,   coef = D⁻¹ W,

with ``D = diag(std of each feature)`` when ``standardize`` (per-channel standardisation fitted on the
training data only, folded into the coefficients so ``predict`` is ``X @ coef_ + intercept_``) and
``D = I`` otherwise (then it is scikit-learn's ``Ridge``).

Choice of the ridge parameter from a list ``alphas``:

- ``cv=None``, ``fit`` (leave-one-out): one eigendecomposition ``A = V diag(s) Vᵀ`` of the scaled
  Gram matrix serves every alpha; with ``Q = Xc D⁻¹ V`` the fitted values are ``Q diag(1/(s+alpha)) Vᵀ B``
  and the hat diagonal ``h_i = 1/n + Σ_j Q_ij² / (s_j + alpha)``, so the leave-one-out residual is
  ``(y_i - ŷ_i) / (1 - h_i)`` (a second pass over the samples, chunk by chunk).
- ``cv=None``, ``partial_fit`` (generalised cross-validation, the rotation-invariant form of leave-one-
  out, which needs only the sums): ``GCV = RSS / n / (1 - tr(H) / n)²``, ``tr(H) = 1 + Σ s/(s+alpha)``.
- ``cv=k`` (k-fold, ``fit`` and ``partial_fit``): sample ``i`` (counted over all chunks) belongs to fold
  ``fold_of(i, k)``, a fixed hash of ``i``, and every fold keeps its own sums (memory ``k`` times the above).  Each fold is solved from
  the sums of the others with one eigendecomposition for all alphas, and its squared error is computed
  from its own sums: ``Σ‖y - xW - b‖² = Σy² - 2⟨W, XᵀY⟩ - 2 b·Σy + ⟨W, XᵀX W⟩ + 2 b·WᵀΣx + n‖b‖²``.

``RidgeClassifier`` fits a ``RidgeReadout`` to ±1 one-vs-rest targets (one column for two classes) over
per-trial feature vectors and predicts the largest output; its ridge parameters are per training trial.

Saved readouts (``save``/``load``) are one ``.npz`` archive, read with ``allow_pickle=False``: the fitted
arrays (``coef``, ``intercept``, ``classes``, and the running sums ``stats_*`` so training can continue)
plus ``meta``, a 0-d string array holding a JSON document
``{"format": "prclab-readout", "version": 1, "class": ..., "params": ..., "fitted": ...}``.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from scipy import linalg
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from prclab.errors import PrclabError

#: elements (rows * features) of one float64 chunk copied while accumulating (4 MiB)
CHUNK_ELEMENTS = 1 << 19
#: fewest chunks worth a worker thread of their own
MIN_CHUNKS_PER_THREAD = 4
SAVE_FORMAT, SAVE_VERSION = "prclab-readout", 1
_STAT_NAMES = ("n", "sx", "sy", "xx", "xy", "yy")


def fold_of(index: np.ndarray, k: int) -> np.ndarray:
    """Cross-validation fold of each sample number in ``index``: a fixed hash, so streaming needs no
    shuffle and class-periodic sample orders (a, b, c, a, b, c...) still spread over every fold."""
    mixed = np.asarray(index, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing, mod 2^64
    return ((mixed >> np.uint64(40)) % np.uint64(k)).astype(np.int64)


def _chunks(n: int, n_features: int):
    step = max(1, CHUNK_ELEMENTS // max(1, n_features))
    for start in range(0, n, step):
        yield start, min(n, start + step)


def _thread_blocks(n: int, n_features: int) -> list[tuple[int, int]]:
    """Contiguous row ranges, one per worker thread (one range when there are too few chunks)."""
    rows = max(1, CHUNK_ELEMENTS // max(1, n_features))
    threads = max(1, min(_cpu_count(), n // (MIN_CHUNKS_PER_THREAD * rows)))
    edges = np.linspace(0, n, threads + 1).astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _one_blas_thread():
    """Hold BLAS to one thread (process-wide) while worker threads each run their own products."""
    return threadpool_limits(limits=1, user_api="blas")


def _add_rows(st: dict, X, y, shift_x, shift_y, start: int, stop: int, seen: int) -> None:
    """Add rows ``start:stop`` of ``X``, ``y`` (global sample numbers from ``seen + start``) to ``st``."""
    k = len(st["n"])
    for a, b in _chunks(stop - start, X.shape[1]):
        a, b = a + start, b + start
        xs = np.asarray(X[a:b], dtype=np.float64) - shift_x
        ys = np.asarray(y[a:b], dtype=np.float64) - shift_y
        folds = fold_of(np.arange(seen + a, seen + b), k)
        for f in range(k):
            xf, yf = (xs, ys) if k == 1 else (xs[folds == f], ys[folds == f])
            if len(xf) == 0:
                continue
            st["n"][f] += len(xf)
            st["sx"][f] += xf.sum(axis=0)
            st["sy"][f] += yf.sum(axis=0)
            st["xx"][f] += xf.T @ xf  # numpy hands A.T @ A to BLAS syrk
            st["xy"][f] += xf.T @ yf
            st["yy"][f] += np.einsum("ij,ij->j", yf, yf)


def _eigh(a: np.ndarray):
    s, v = linalg.eigh(a, check_finite=False)
    return np.maximum(s, 0.0), v


class RidgeReadout(RegressorMixin, BaseEstimator):
    """Closed-form, streaming, multi-output ridge regression (see the module docstring).

    Args:
        alpha: ridge parameter used when ``alphas`` is None (``>= 0``).
        alphas: candidate ridge parameters (``> 0``); the one with the lowest cross-validated squared
            error is used.
        cv: None for leave-one-out (generalised cross-validation with ``partial_fit``) or ``k >= 2``
            for k-fold.
        fit_intercept: centre X and Y and fit an intercept.
        standardize: scale each feature by its training standard deviation before the penalty.

    Fitted attributes: ``coef_`` ``(n_features, n_outputs)`` (``(n_features,)`` for 1-D targets),
    ``intercept_`` ``(n_outputs,)`` (float for 1-D), ``alpha_`` the ridge parameter used, ``cv_errors_``
    (mean squared error per alpha, with ``alphas``), ``n_samples_seen_``, ``n_features_in_``.
    """

    def __init__(self, alpha: float = 1.0, alphas=None, cv: int | None = None, fit_intercept: bool = True,
                 standardize: bool = False):
        self.alpha = alpha
        self.alphas = alphas
        self.cv = cv
        self.fit_intercept = fit_intercept
        self.standardize = standardize

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    # ------------------------------------------------------------------------------------ fitting

    def fit(self, X, y):
        """Fit on ``X`` ``(n_samples, n_features)`` and ``y`` ``(n_samples,)`` or ``(n_samples, n_outputs)``."""
        for attr in ("_stats", "coef_"):
            self.__dict__.pop(attr, None)
        X, y = self._validate(X, y, reset=True)
        self._accumulate(X, y)
        return self._solve(X, y)

    def partial_fit(self, X, y):
        """Add the chunk ``X``, ``y`` to the running sums and re-solve (``O(n_features³)`` per call)."""
        X, y = self._validate(X, y, reset=not hasattr(self, "_stats"))
        self._accumulate(X, y)
        return self._solve()

    def _validate(self, X, y, reset: bool):
        X, y = validate_data(self, X, y, reset=reset, multi_output=True, y_numeric=True,
                             dtype=(np.float64, np.float32))
        y_1d = y.ndim == 1
        y = y.reshape(len(y), -1)
        if reset:
            self._y_1d = y_1d
        elif y_1d != self._y_1d or y.shape[1] != self._stats["sy"].shape[1]:
            raise ValueError(f"y has {y.shape[1]} output(s) ({'1-D' if y_1d else '2-D'}), "
                             f"the readout was started with {self._stats['sy'].shape[1]}")
        return X, y

    def _check_params(self):
        if self.alpha is None or not self.alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        if self.alphas is not None and (len(self.alphas) == 0 or np.min(self.alphas) <= 0):
            raise ValueError("alphas must be a non-empty list of positive ridge parameters")
        if self.cv is not None and (int(self.cv) != self.cv or self.cv < 2):
            raise ValueError(f"cv must be None (leave-one-out) or an integer >= 2, got {self.cv}")

    def _accumulate(self, X: np.ndarray, y: np.ndarray) -> None:
        self._check_params()
        p, q = X.shape[1], y.shape[1]
        k = 1 if self.cv is None else int(self.cv)
        if not hasattr(self, "_stats"):
            intercept = self.fit_intercept
            self._shift_x = X[:max(1, CHUNK_ELEMENTS // p)].mean(axis=0, dtype=np.float64) if intercept else np.zeros(p)
            self._shift_y = y.mean(axis=0, dtype=np.float64) if intercept else np.zeros(q)
            self._stats = {"n": np.zeros(k, dtype=np.int64), "sx": np.zeros((k, p)), "sy": np.zeros((k, q)),
                           "xx": np.zeros((k, p, p)), "xy": np.zeros((k, p, q)), "yy": np.zeros((k, q))}
        st = self._stats
        if len(st["n"]) != k:
            raise ValueError(f"cv changed from {len(st['n'])} to {k} folds between partial_fit calls")
        seen = int(st["n"].sum())
        blocks = _thread_blocks(len(X), p)
        if len(blocks) == 1:
            _add_rows(st, X, y, self._shift_x, self._shift_y, 0, len(X), seen)
            return
        parts = [{name: np.zeros_like(v) for name, v in st.items()} for _ in blocks]
        with _one_blas_thread(), ThreadPoolExecutor(len(blocks)) as pool:
            list(pool.map(lambda i: _add_rows(parts[i], X, y, self._shift_x, self._shift_y, *blocks[i], seen),
                          range(len(blocks))))
        for part in parts:
            for name in st:
                st[name] += part[name]

    def _centred(self, st: dict):
        """Scaled centred system ``(A, B, scale, x_mean, y_mean)`` from sums (shifted coordinates)."""
        n = max(int(st["n"]), 1)
        xx = st["xx"]
        x_mean, y_mean = st["sx"] / n, st["sy"] / n
        if self.fit_intercept:
            xx = xx - n * np.outer(x_mean, x_mean)
            xy = st["xy"] - n * np.outer(x_mean, y_mean)
        else:
            xy = st["xy"]
            x_mean, y_mean = np.zeros_like(x_mean), np.zeros_like(y_mean)
        scale = np.ones(len(xx))
        if self.standardize:
            std = np.sqrt(np.maximum(np.diag(xx), 0.0) / n)
            scale = np.where(std > 1e-12 * max(1.0, float(std.max(initial=0.0))), std, 1.0)
            xx = xx / np.outer(scale, scale)
            xy = xy / scale[:, None]
        return xx, xy, scale, x_mean, y_mean

    def _solve(self, X=None, y=None):
        st = {name: v.sum(axis=0) for name, v in self._stats.items()}
        if self.alphas is None:
            self.alpha_ = float(self.alpha)
            self.__dict__.pop("cv_errors_", None)
        else:
            alphas = np.asarray(self.alphas, dtype=np.float64)
            if self.cv is not None:
                self.cv_errors_ = self._kfold_errors(alphas)
            elif X is not None:
                self.cv_errors_ = self._loo_errors(X, y, st, alphas)
            else:
                self.cv_errors_ = self._gcv_errors(st, alphas)
            finite = np.isfinite(self.cv_errors_)
            best = int(np.argmin(np.where(finite, self.cv_errors_, np.inf))) if finite.any() else 0
            self.alpha_ = float(alphas[best])
        a, b, scale, x_mean, y_mean = self._centred(st)
        coef = self._coef(a, b, scale, self.alpha_)
        intercept = (self._shift_y + y_mean) - (self._shift_x + x_mean) @ coef
        if not self.fit_intercept:
            intercept = np.zeros_like(intercept)
        self.coef_ = coef[:, 0] if self._y_1d else coef
        self.intercept_ = float(intercept[0]) if self._y_1d else intercept
        self.n_samples_seen_ = int(st["n"])
        return self

    @staticmethod
    def _coef(a: np.ndarray, b: np.ndarray, scale: np.ndarray, alpha: float) -> np.ndarray:
        a = a.copy()
        a[np.diag_indices_from(a)] += alpha
        try:
            w = linalg.solve(a, b, assume_a="pos", check_finite=False) if alpha > 0 else None
        except linalg.LinAlgError:
            w = None
        if w is None:
            w = linalg.lstsq(a, b, check_finite=False)[0]
        return w / scale[:, None]

    def _loo_errors(self, X, y, st, alphas) -> np.ndarray:
        a, b, scale, x_mean, y_mean = self._centred(st)
        s, v = _eigh(a)
        vtb = v.T @ b
        n = int(st["n"])
        sse = np.zeros(len(alphas))
        d = 1.0 / (s[None, :] + alphas[:, None])  # (alphas, features)
        with np.errstate(divide="ignore", invalid="ignore"):  # h = 1: that alpha's error is inf / nan
            for lo, hi in _chunks(len(X), X.shape[1]):
                q = ((np.asarray(X[lo:hi], dtype=np.float64) - self._shift_x - x_mean) / scale) @ v
                yc = np.asarray(y[lo:hi], dtype=np.float64) - self._shift_y - y_mean
                h = (q ** 2) @ d.T + (1.0 / n if self.fit_intercept else 0.0)  # (rows, alphas)
                for i in range(len(alphas)):
                    resid = (yc - q @ (d[i][:, None] * vtb)) / (1.0 - h[:, i])[:, None]
                    sse[i] += np.sum(resid ** 2)
        return sse / (n * y.shape[1])

    def _gcv_errors(self, st, alphas) -> np.ndarray:
        """Generalised cross-validation, the rotation-invariant form of leave-one-out, from sums only."""
        a, b, _, _, y_mean = self._centred(st)
        n = int(st["n"])
        s, v = _eigh(a)
        c2 = np.sum((v.T @ b) ** 2, axis=1)  # (features,)
        yy = st["yy"].sum() - (n * y_mean @ y_mean if self.fit_intercept else 0.0)
        errors = []
        for alpha in alphas:
            d = 1.0 / (s + alpha)
            rss = max(yy - np.sum(c2 * (2 * d - s * d ** 2)), 0.0)
            dof = np.sum(s * d) + (1.0 if self.fit_intercept else 0.0)
            errors.append(rss / n / max(1.0 - dof / n, 1e-12) ** 2)
        return np.array(errors) / b.shape[1]

    def _kfold_errors(self, alphas) -> np.ndarray:
        folds, total = self._stats, {name: v.sum(axis=0) for name, v in self._stats.items()}
        sse = np.zeros(len(alphas))
        for f in range(len(folds["n"])):
            val = {name: v[f] for name, v in folds.items()}
            if val["n"] == 0 or val["n"] == total["n"]:
                continue
            train = {name: total[name] - val[name] for name in total}
            a, b, scale, x_mean, y_mean = self._centred(train)
            s, v = _eigh(a)
            vtb = v.T @ b
            gv = val["xx"]
            for i, alpha in enumerate(alphas):
                w = (v @ (vtb / (s + alpha)[:, None])) / scale[:, None]
                c = y_mean - x_mean @ w if self.fit_intercept else np.zeros(w.shape[1])
                sse[i] += (val["yy"].sum() - 2 * np.sum(w * val["xy"]) - 2 * c @ val["sy"]
                           + np.sum(w * (gv @ w)) + 2 * c @ (w.T @ val["sx"]) + val["n"] * c @ c)
        return np.maximum(sse, 0.0) / (total["n"] * total["sy"].shape[0])

    # ---------------------------------------------------------------------------------- predicting

    def predict(self, X):
        """Outputs ``(n_samples, n_outputs)`` (``(n_samples,)`` for 1-D targets) for ``X``."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        return np.asarray(X, dtype=np.float64) @ self.coef_ + self.intercept_

    def predict_path(self, X, alphas) -> np.ndarray:
        """Predictions for every ridge parameter in ``alphas`` from one eigendecomposition.

        Returns ``(len(alphas), n_samples, n_outputs)``, the readout refitted on its running sums with
        each alpha (the fitted ``coef_`` is left as it is).
        """
        check_is_fitted(self)
        X = np.asarray(validate_data(self, X, reset=False, dtype=(np.float64, np.float32)), dtype=np.float64)
        st = {name: v.sum(axis=0) for name, v in self._stats.items()}
        a, b, scale, x_mean, y_mean = self._centred(st)
        s, v = _eigh(a)
        q = ((X - self._shift_x - x_mean) / scale) @ v
        vtb = v.T @ b
        out = [q @ (vtb / (s + alpha)[:, None]) for alpha in np.asarray(alphas, dtype=np.float64)]
        return np.stack(out) + (self._shift_y + y_mean if self.fit_intercept else 0.0)

    # ------------------------------------------------------------------------------ saving, loading

    def _arrays(self) -> dict:
        arrays = {"coef": np.asarray(self.coef_), "intercept": np.asarray(self.intercept_),
                  "shift_x": self._shift_x, "shift_y": self._shift_y}
        arrays.update({f"stats_{k}": v for k, v in self._stats.items()})
        return arrays

    def _fitted_meta(self) -> dict:
        meta = {"alpha_": self.alpha_, "n_features_in_": int(self.n_features_in_), "y_1d": bool(self._y_1d)}
        if hasattr(self, "cv_errors_"):
            meta["cv_errors_"] = [float(e) for e in self.cv_errors_]
        return meta

    def _restore(self, arrays: dict, fitted: dict) -> None:
        self.coef_ = arrays["coef"]
        self.intercept_ = float(arrays["intercept"]) if fitted["y_1d"] else arrays["intercept"]
        self._shift_x, self._shift_y = arrays["shift_x"], arrays["shift_y"]
        self._stats = {k: arrays[f"stats_{k}"] for k in _STAT_NAMES}
        self._y_1d = fitted["y_1d"]
        self.alpha_ = fitted["alpha_"]
        self.n_features_in_ = fitted["n_features_in_"]
        self.n_samples_seen_ = int(self._stats["n"].sum())
        if "cv_errors_" in fitted:
            self.cv_errors_ = np.array(fitted["cv_errors_"])

    def save(self, path) -> None:
        """Write the fitted readout to ``path`` (``.npz``; see the module docstring for the format)."""
        check_is_fitted(self)
        _save(path, self, self._arrays(), self._fitted_meta())

    @classmethod
    def load(cls, path) -> "RidgeReadout":
        """Read a readout written by ``save``; predictions are bit for bit those of the saved one."""
        return _load(path, cls)


def _json_params(params: dict) -> dict:
    return {k: (list(map(float, v)) if isinstance(v, (tuple, list, np.ndarray)) else v) for k, v in params.items()}


def _save(path, estimator, arrays: dict, fitted: dict) -> None:
    meta = {"format": SAVE_FORMAT, "version": SAVE_VERSION, "class": type(estimator).__name__,
            "params": _json_params(estimator.get_params(deep=False)), "fitted": fitted}
    for name, value in arrays.items():
        if value.dtype == object:
            raise PrclabError(f"save readout {path}: {name} holds Python objects; use string or numeric labels")
    with open(path, "wb") as f:  # an open file keeps numpy from appending ".npz" to the name
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)


def _load(path, cls):
    try:
        with np.load(Path(path), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError) as exc:
        raise PrclabError(f"readout {path}: not a prclab readout archive ({exc})") from None
    if meta.get("format") != SAVE_FORMAT or meta.get("version") != SAVE_VERSION:
        raise PrclabError(f"readout {path}: format {meta.get('format')!r} version {meta.get('version')!r}, "
                          f"expected {SAVE_FORMAT!r} version {SAVE_VERSION}")
    if meta.get("class") != cls.__name__:
        raise PrclabError(f"readout {path}: holds a {meta.get('class')}, not a {cls.__name__}")
    try:
        estimator = cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in meta["params"].items()})
        estimator._restore(arrays, meta["fitted"])
    except (TypeError, KeyError) as exc:
        raise PrclabError(f"readout {path}: damaged or from another version ({exc})") from None
    return estimator


def load_readout(path):
    """Load a ``RidgeReadout`` or ``RidgeClassifier`` saved with ``save``, whichever ``path`` holds."""
    for cls in (RidgeReadout, RidgeClassifier):
        try:
            return cls.load(path)
        except PrclabError as exc:
            if "not a " + cls.__name__ not in str(exc):
                raise
    raise PrclabError(f"readout {path}: holds neither a RidgeReadout nor a RidgeClassifier")


class RidgeClassifier(ClassifierMixin, BaseEstimator):
    """Ridge classifier over trial feature vectors: ±1 one-vs-rest ridge outputs, largest wins.

    Args:
        alphas: candidate ridge parameters per training trial (cross-validated choice); ``alpha`` if None.
        alpha: ridge parameter per training trial when ``alphas`` is None.
        cv: None for leave-one-out (generalised with ``partial_fit``), ``k >= 2`` for k-fold.
        standardize: scale each feature by its training standard deviation before the penalty.

    Fitted attributes: ``classes_``, ``readout_`` (the RidgeReadout), ``alpha_`` (per training trial),
    ``n_features_in_``.
    """

    def __init__(self, alphas=(1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3), alpha: float = 1.0,
                 cv: int | None = None, standardize: bool = True):
        self.alphas = alphas
        self.alpha = alpha
        self.cv = cv
        self.standardize = standardize

    def fit(self, X, y):
        """Fit on ``X`` ``(n_trials, n_features)`` and labels ``y`` ``(n_trials,)``."""
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32))
        check_classification_targets(y)
        self._set_classes(np.unique(y))
        self.readout_ = RidgeReadout(cv=self.cv, standardize=self.standardize)
        X, targets = self.readout_._validate(X, self._targets(y), reset=True)
        self.readout_._accumulate(X, targets)
        return self._solve(X, y)

    def partial_fit(self, X, y, classes=None):
        """Add trials to the running sums and re-solve; ``classes`` (all labels) on the first call."""
        first = not hasattr(self, "readout_")
        X, y = validate_data(self, X, y, reset=first, dtype=(np.float64, np.float32))
        check_classification_targets(y)
        if first:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit")
            self._set_classes(np.unique(classes))
            self.readout_ = RidgeReadout(cv=self.cv, standardize=self.standardize)
            self.readout_._validate(X, self._targets(y), reset=True)
        unknown = np.setdiff1d(y, self.classes_)
        if len(unknown):
            raise ValueError(f"labels {unknown.tolist()} are not in classes {self.classes_.tolist()}")
        self.readout_._accumulate(X, self._targets(y))
        return self._solve()

    def _set_classes(self, classes):
        if len(classes) < 2:
            raise ValueError(f"RidgeClassifier needs at least two classes, got one class ({classes.tolist()})")
        self.classes_ = classes

    def _targets(self, y) -> np.ndarray:
        onehot = np.where(np.asarray(y)[:, None] == self.classes_[None, :], 1.0, -1.0)
        return onehot[:, 1:] if len(self.classes_) == 2 else onehot

    def _solve(self, X=None, y=None):
        n = self.readout_._stats["n"].sum()
        alphas = None if self.alphas is None else tuple(float(a) * n for a in self.alphas)
        self.readout_.set_params(alpha=float(self.alpha) * n, alphas=alphas)
        self.readout_._solve(X, None if y is None else self._targets(y))
        self.alpha_ = self.readout_.alpha_ / n
        return self

    def _decide(self, outputs: np.ndarray) -> np.ndarray:
        return outputs[..., 0] if len(self.classes_) == 2 else outputs

    def decision_function(self, X):
        """Ridge outputs ``(n_trials, n_classes)``; ``(n_trials,)`` for two classes (> 0: ``classes_[1]``)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        return self._decide(self.readout_.predict(X))

    def _labels(self, decision: np.ndarray) -> np.ndarray:
        if len(self.classes_) == 2:
            return self.classes_[(decision > 0).astype(int)]
        return self.classes_[np.argmax(decision, axis=-1)]

    def predict(self, X):
        """Predicted labels ``(n_trials,)``."""
        return self._labels(self.decision_function(X))

    def score_path(self, X, y, alphas) -> np.ndarray:
        """Accuracy on ``X``, ``y`` for each ridge parameter (per training trial) in ``alphas``."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        n = self.readout_._stats["n"].sum()
        outputs = self.readout_.predict_path(X, np.asarray(alphas, dtype=np.float64) * n)
        return np.array([np.mean(self._labels(self._decide(o)) == np.asarray(y)) for o in outputs])

    def save(self, path) -> None:
        """Write the fitted classifier to ``path`` (``.npz``; see the module docstring)."""
        check_is_fitted(self)
        classes = self.classes_.astype(str) if self.classes_.dtype == object else self.classes_
        _save(path, self, {**self.readout_._arrays(), "classes": classes},
              {**self.readout_._fitted_meta(), "readout_alpha": self.readout_.alpha,
               "readout_alphas": self.readout_.alphas, "classifier_alpha_": self.alpha_})

    @classmethod
    def load(cls, path) -> "RidgeClassifier":
        """Read a classifier written by ``save``; predictions are bit for bit those of the saved one."""
        return _load(path, cls)

    def _restore(self, arrays: dict, fitted: dict) -> None:
        self.classes_ = arrays["classes"]
        alphas = fitted["readout_alphas"]
        self.readout_ = RidgeReadout(alpha=fitted["readout_alpha"], alphas=None if alphas is None else tuple(alphas),
                                     cv=self.cv, standardize=self.standardize)
        self.readout_._restore(arrays, fitted)
        self.alpha_ = fitted["classifier_alpha_"]
        self.n_features_in_ = fitted["n_features_in_"]
