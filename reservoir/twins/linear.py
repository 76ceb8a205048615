"""The ``linear`` twin family: ARX by ridge, and the per-channel ARX map the reservoir family reuses.

Model, per response channel ``j`` (``F(t)`` the shared features ``(p,)``: here the stimulus at lags
``0 .. n_lags_in - 1``, i.e. a MIMO FIR; ``echo`` uses reservoir states)::

    y_j[t] = c_j + F(t) . w_j + sum_{k=1..n_lags_out} a_jk y_j[t-k]

fitted by ridge on the one-step (equation-error) regression with the recorded past ``y_j``, and run free
(``y_j`` fed back from its own predictions: an IIR filter per channel, ``scipy.signal.lfilter``, so no
per-sample Python loop).  The own-output feedback is diagonal (channel ``j`` feeds only itself), so a
64-channel twin has 64 small poles sets, not a 64 x 64 x lags feedback tensor.

Structure (lag counts) and the ridge ``alpha`` are chosen on the training trials only: the last
``validation`` fraction of them (by position) scores every candidate by free-run NRMSE (RMSE / std,
pooled over channels), the winner is refitted on all training trials.  Grams are accumulated once for
the largest lags (from the base signals: ``Grams.add_lagged``), for the fitting and the validating
trials apart; a candidate with fewer lags is a sub-block of them, and the refit on every training trial
solves the two sums' total.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from prclab.errors import PrclabError

from .base import ResidualNoise, TwinFamily, check_trials


def own_lags(y: np.ndarray, n: int) -> np.ndarray:
    """``(T, n_out, n)``: ``y[t-k]`` for ``k = 1..n`` (zero before the trial: rest)."""
    T, m = y.shape
    out = np.zeros((T, m, n))
    for k in range(1, n + 1):
        out[k:, :, k - 1] = y[:-k] if k < T else 0.0
    return out


def input_lags(u: np.ndarray, n: int, history: np.ndarray | None = None) -> np.ndarray:
    """``(batch, T, n * n_in)``: columns ``u[t-k]`` for ``k = 0..n-1`` (lag-major), ``u`` ``(batch, T, n_in)``;
    ``history`` ``(batch, n - 1, n_in)`` the samples before ``u`` (zeros: rest)."""
    b, T, m = u.shape
    past = np.zeros((b, n - 1, m)) if history is None else history
    full = np.concatenate([past, u], axis=1)
    return np.concatenate([full[:, n - 1 - k: n - 1 - k + T] for k in range(n)], axis=2)


def lagged_product(u: np.ndarray, W: np.ndarray, history: np.ndarray) -> np.ndarray:
    """``input_lags(u, n, history) @ W`` ``(batch, T, n_out)`` without the lagged matrix: one product per
    lag (``W`` ``(n * n_in, n_out)``, lag-major as ``input_lags``' columns; ``n`` is one more than the
    ``history`` ``(batch, n - 1, n_in)`` samples, as no input channel may tell it)."""
    b, T, m = u.shape
    n = history.shape[1] + 1
    full = np.concatenate([history, u], axis=1)
    out = full[:, n - 1:n - 1 + T] @ W[:m]
    for k in range(1, n):
        out += full[:, n - 1 - k:n - 1 - k + T] @ W[k * m:(k + 1) * m]
    return out


class Grams:
    """Sums for the per-channel ridge of ``[F, own lags, 1] -> y`` (module docstring), accumulated trial by
    trial: ``F`` ``(T, p)``, ``y`` ``(T, n_out)``, own lags up to ``n_own``.

    The features' Gram ``FF`` is the sum of the dense trials' (``add``) and, for lagged trials
    (``add_lagged``), the Toeplitz pieces it is assembled from when first read: the cross-products
    ``R_d`` of the base signals and each trial's last samples (``_lagged``)."""

    def __init__(self, p: int, n_out: int, n_own: int):
        self.n = 0
        self._dense, self.F1, self.FY = np.zeros((p, p)), np.zeros(p), np.zeros((p, n_out))
        self.FL = np.zeros((p, n_out, n_own))
        self.LL, self.LY, self.L1 = np.zeros((n_out, n_own, n_own)), np.zeros((n_out, n_own)), np.zeros((n_out, n_own))
        self.Y1 = np.zeros(n_out)
        self._lagged: tuple[np.ndarray, list[np.ndarray]] | None = None   # (R (n_lags, m, m), tails)
        self._FF: np.ndarray | None = None

    @property
    def FF(self) -> np.ndarray:
        """``sum F^T F`` ``(p, p)`` over every trial added."""
        if self._FF is None:
            self._FF = self._dense + (self._assembled() if self._lagged is not None else 0.0)
        return self._FF

    def add(self, F: np.ndarray, y: np.ndarray) -> None:
        L = own_lags(y, self.L1.shape[1])
        self.n += len(F)
        self._dense += F.T @ F
        self._FF = None
        self.F1 += F.sum(0)
        self.FY += F.T @ y
        self.FL += (F.T @ L.reshape(len(L), L.shape[1] * L.shape[2])).reshape(self.FL.shape)
        self._add_own(L, y)

    def _add_own(self, L: np.ndarray, y: np.ndarray) -> None:
        """The sums of the own lags ``L`` ``(T, n_out, n_own)`` and responses ``y`` ``(T, n_out)``."""
        self.LL += np.einsum("tjk,tjl->jkl", L, L, optimize=True)
        self.LY += np.einsum("tjk,tj->jk", L, y, optimize=True)
        self.L1 += L.sum(0)
        self.Y1 += y.sum(0)

    def __add__(self, other: "Grams") -> "Grams":
        """The sums of both (the Grams of their trials together)."""
        out = Grams(self._dense.shape[0], len(self.Y1), self.L1.shape[1])
        for name in ("n", "_dense", "F1", "FY", "FL", "LL", "LY", "L1", "Y1"):
            setattr(out, name, getattr(self, name) + getattr(other, name))
        parts = [g._lagged for g in (self, other) if g._lagged is not None]
        if len(parts) == 2 and parts[0][0].shape != parts[1][0].shape:
            raise ValueError(f"Grams of {parts[0][0].shape[0]} and {parts[1][0].shape[0]} lags cannot be added")
        if parts:
            out._lagged = (sum(p[0] for p in parts), [t for p in parts for t in p[1]])
        return out

    def add_lagged(self, x: np.ndarray, n_lags: int, y: np.ndarray) -> None:
        """``add(input_lags(x[None], n_lags)[0], y)``, computed from the base signals ``x`` ``(T, m)``.

        Block ``(a, a + d)`` of the lagged features' Gram is ``sum_s x[s + d] x[s]^T`` over the samples
        both lags reach: the cross-product ``R_d`` at lag difference ``d`` less its last ``a`` terms,
        which involve only the trial's last ``n_lags`` samples.  So ``n_lags`` products of
        ``(m, T) @ (T, m)`` replace one of ``(n_lags m, T) @ (T, n_lags m)``, and the Gram is written
        once, when read (``FF``), not per trial."""
        T, m = x.shape
        if self._dense.shape[0] != n_lags * m:
            raise ValueError(f"Grams of {self._dense.shape[0]} features, given {n_lags} lags of {m}")
        if self._lagged is None:
            self._lagged = (np.zeros((n_lags, m, m)), [])
        R, tails = self._lagged
        L = own_lags(y, self.L1.shape[1])
        self.n += T
        self._FF = None
        for d in range(min(n_lags, T)):
            R[d] += x[d:].T @ x[:T - d]
        tails.append(np.concatenate([np.zeros((max(n_lags - T, 0), m)), x[max(T - n_lags, 0):]]))
        # lag a of x against y (FY) and against y's own lag k (FL) is the cross-product of x and y at
        # shift e = a - k, less its last min(a, k) terms: n_lags + n_own products of (m, T) @ (T, n_out)
        n_own = self.L1.shape[1]
        cross = {e: _shifted_product(x, y, e) for e in range(-n_own, n_lags)}
        for a in range(n_lags):
            part = slice(a * m, (a + 1) * m)
            self.F1[part] += x[:max(T - a, 0)].sum(0)
            self.FY[part] += cross[a]
            for k in range(1, n_own + 1):
                e, first = a - k, max(T - a, 0, k - a)       # s >= T - a: lag a lacks them; s + e >= 0
                last = min(T, T - e)                           # s < T and s + e < T
                tail = x[first:last].T @ y[first + e:last + e] if last > first else 0.0
                self.FL[part, :, k - 1] += cross[e] - tail
        self._add_own(L, y)

    def _assembled(self) -> np.ndarray:
        """The lagged trials' Gram from ``R_d`` and the trials' last samples (``add_lagged``): block
        ``(a, a + d)`` is ``R_d`` less ``sum_{i=1..a} x[T - i] x[T - d - i]^T`` summed over trials."""
        R, tails = self._lagged
        n, m = R.shape[0], R.shape[1]
        tail = np.stack(tails)                                        # (trials, n, m): x[T - n .. T - 1]
        out = np.zeros((n * m, n * m))
        for d in range(n):
            block = R[d].copy()
            for a in range(n - d):
                if a:
                    block -= tail[:, n - a].T @ tail[:, n - d - a]
                rows, cols = slice(a * m, (a + 1) * m), slice((a + d) * m, (a + d + 1) * m)
                out[rows, cols] = block
                if d:
                    out[cols, rows] = block.T
        return out

    def _centred(self, cols: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """``(N, column sums, centred Gram, centred cross-products with y)`` of feature columns ``cols``."""
        N = max(self.n, 1)
        f1 = self.F1[cols]
        return (N, f1, self.FF[np.ix_(cols, cols)] - np.outer(f1, f1) / N,
                self.FY[cols] - np.outer(f1, self.Y1) / N)

    def solve(self, cols: np.ndarray, n_own: int, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ridge (penalty ``alpha`` times each centred feature's sum of squares, intercept free) on feature
        columns ``cols`` of ``F`` and ``n_own`` own lags: ``(W (p_sel, n_out), A (n_out, n_own), c (n_out,))``.

        Every channel's system shares its feature block, so it is factored once (Cholesky) and each
        channel's own lags are solved on their Schur complement (``n_own`` square): one factorisation
        of ``p_sel`` instead of ``n_out``.  Where a feature's variance is below a channel's floor
        (degenerate features) or the block is not positive definite in floating point, each channel's
        whole system is solved on its own (``solve_each``), as the two ways agree to rounding."""
        from scipy.linalg import cho_factor, cho_solve

        N, f1, Cff, Cfy = self._centred(cols)
        l1 = self.L1[:, :n_own]                                                        # (n_out, n_own)
        Cfl = self.FL[cols, :, :n_own] - f1[:, None, None] * l1[None] / N              # (p, n_out, n_own)
        Cll = self.LL[:, :n_own, :n_own] - l1[:, :, None] * l1[:, None, :] / N         # (n_out, n_own, n_own)
        r_l = self.LY[:, :n_own] - l1 * self.Y1[:, None] / N
        d_f, d_l = np.diag(Cff), np.diagonal(Cll, axis1=1, axis2=2)
        top = np.maximum(d_f.max(initial=0.0), d_l.max(axis=1, initial=0.0))
        floor = 1e-12 * np.maximum(top, 1e-300)                                        # (n_out,) as solve_each
        p, n_out = len(cols), len(self.Y1)
        if not np.all(d_f >= floor.max()):
            return self.solve_each(cols, n_own, alpha)
        try:
            factor = cho_factor(Cff + np.diag(alpha * d_f))
        except np.linalg.LinAlgError:
            return self.solve_each(cols, n_own, alpha)
        Z = cho_solve(factor, np.concatenate([Cfy, Cfl.reshape(p, n_out * n_own)], axis=1))
        Zy, Zl = Z[:, :n_out], Z[:, n_out:].reshape(p, n_out, n_own)
        A = np.zeros((n_out, n_own))
        if n_own:
            S = Cll - np.einsum("pjk,pjl->jkl", Cfl, Zl)
            S[:, np.arange(n_own), np.arange(n_own)] += alpha * np.maximum(d_l, floor[:, None])
            A = np.linalg.solve(S, (r_l - np.einsum("pjk,pj->jk", Cfl, Zy))[..., None])[..., 0]
        W = Zy - np.einsum("pjk,jk->pj", Zl, A)
        c = (self.Y1 - f1 @ W - np.einsum("jk,jk->j", l1, A)) / N
        return W, A, c

    def solve_each(self, cols: np.ndarray, n_own: int, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``solve``, each channel's whole system (features and own lags) solved on its own."""
        n_out, p = len(self.Y1), len(cols)
        N, f1, Cff, Cfy = self._centred(cols)
        W, A, c = np.zeros((p, n_out)), np.zeros((n_out, n_own)), np.zeros(n_out)
        for j in range(n_out):
            l1 = self.L1[j, :n_own]
            Cfl = self.FL[cols, j, :n_own] - np.outer(f1, l1) / N
            Cll = self.LL[j, :n_own, :n_own] - np.outer(l1, l1) / N
            G = np.block([[Cff, Cfl], [Cfl.T, Cll]])
            rhs = np.concatenate([Cfy[:, j], self.LY[j, :n_own] - l1 * self.Y1[j] / N])
            d = np.diag(G).copy()
            G[np.diag_indices_from(G)] += alpha * np.maximum(d, 1e-12 * max(d.max(), 1e-300))
            try:
                theta = np.linalg.solve(G, rhs)
            except np.linalg.LinAlgError:
                theta = np.linalg.lstsq(G, rhs, rcond=None)[0]
            W[:, j], A[j] = theta[:p], theta[p:]
            c[j] = (self.Y1[j] - f1 @ W[:, j] - l1 @ A[j]) / N
        return W, A, c


def _shifted_product(x: np.ndarray, y: np.ndarray, e: int) -> np.ndarray:
    """``sum_s x[s] y[s + e]^T`` over the samples where both exist: ``(m, n_out)`` from ``x`` ``(T, m)``
    and ``y`` ``(T, n_out)``."""
    T = len(x)
    if abs(e) >= T:
        return np.zeros((x.shape[1], y.shape[1]))
    return x[:T - e].T @ y[e:] if e >= 0 else x[-e:].T @ y[:T + e]


def keep_last(a: np.ndarray, n: int) -> np.ndarray:
    """The last ``n`` samples of ``a`` ``(batch, T, m)`` along time (none for ``n == 0``)."""
    return a[:, a.shape[1] - n:] if n else a[:, :0]


def arx_free_run(x: np.ndarray, A: np.ndarray, zi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``y_j = x_j + sum_k A_jk y_j[t-k]`` along time: ``x`` ``(batch, T, n_out)``, ``zi``
    ``(batch, n_out, n_own)`` lfilter states; returns ``(y, new zi)``."""
    if A.shape[1] == 0:
        return x, zi
    y = np.empty_like(x)
    zo = np.empty_like(zi)
    for j in range(x.shape[2]):
        y[:, :, j], zo[:, j] = lfilter([1.0], np.concatenate([[1.0], -A[j]]), x[:, :, j], axis=1, zi=zi[:, j])
    return y, zo


def stable(A: np.ndarray) -> bool:
    """Whether every channel's feedback ``1 - sum_k A_jk z^-k`` has its poles inside the unit circle."""
    return all(np.all(np.abs(np.roots(np.concatenate([[1.0], -a]))) < 1.0) for a in A if len(a))


def free_run_nrmse(pred: list[np.ndarray], rec: list[np.ndarray]) -> float:
    """RMSE / std per channel over the trials, root mean square over channels (inf when not finite)."""
    p, r = np.concatenate(pred), np.concatenate(rec)
    if not np.all(np.isfinite(p)):
        return float("inf")
    e = np.sqrt(np.mean((p - r) ** 2, axis=0)) / np.maximum(r.std(axis=0), 1e-300)
    return float(np.sqrt(np.mean(e ** 2)))


def validation_split(n: int, fraction: float, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(fit, validate)`` of ``n`` training trials: the last ``fraction`` validates."""
    if n < 2:
        raise PrclabError(f"{where}: needs at least 2 training trials to choose its structure, got {n}")
    k = min(n - 1, max(1, int(round(fraction * n))))
    return np.arange(n - k), np.arange(n - k, n)


class LinearTwin(TwinFamily):
    """ARX twin (module docstring).

    Args:
        lags_in: candidate stimulus lag counts (FIR length in samples, each >= 1).
        lags_out: candidate own-output lag counts (0: a pure FIR, no feedback).
        alphas: candidate ridge penalties (relative to each feature's centred sum of squares).
        validation: fraction of the training trials (the last ones) that scores the candidates.
    """

    name = "linear"

    def __init__(self, lags_in=(2, 5, 10), lags_out=(1, 2, 4), alphas=(1e-6, 1e-3),
                 validation: float = 0.25):
        self.lags_in, self.lags_out, self.alphas, self.validation = lags_in, lags_out, alphas, validation

    def fit(self, stimuli, responses, dt) -> LinearTwin:
        u, y, dt = check_trials(stimuli, responses, dt, f"twin {self.name!r}")
        lags_in = sorted({int(k) for k in self.lags_in})
        lags_out = sorted({int(k) for k in self.lags_out})
        if not lags_in or lags_in[0] < 1 or not lags_out or lags_out[0] < 0 or not len(self.alphas):
            raise PrclabError(f"twin {self.name!r}: lags_in must be >= 1, lags_out >= 0, alphas non-empty")
        self.n_inputs_, self.n_outputs_, self.dt_ = u[0].shape[1], y[0].shape[1], dt
        fit_i, val_i = validation_split(len(u), self.validation, f"twin {self.name!r}")
        n_in = self.n_inputs_
        grams, held = (Grams(lags_in[-1] * n_in, self.n_outputs_, lags_out[-1]) for _ in range(2))
        for i in fit_i:
            grams.add_lagged(u[i], lags_in[-1], y[i])
        for i in val_i:
            held.add_lagged(u[i], lags_in[-1], y[i])
        scores = {}
        for nb in lags_in:
            for na in lags_out:
                for alpha in self.alphas:
                    self._set(*grams.solve(np.arange(nb * n_in), na, float(alpha)), nb)
                    ok = stable(self.A_)
                    pred = [self._mean(u[i][None])[0] for i in val_i] if ok else None
                    scores[(nb, na, float(alpha))] = free_run_nrmse(pred, [y[i] for i in val_i]) if ok else float("inf")
        (nb, na, alpha), best = min(scores.items(), key=lambda kv: kv[1])
        if not np.isfinite(best):
            raise PrclabError(f"twin {self.name!r}: no candidate structure runs stable on the validation trials")
        self.validation_nrmse_, self.lags_in_, self.lags_out_, self.alpha_ = best, nb, na, alpha
        # refitted on every training trial: fewer lags are the leading columns of the largest ones' sums
        self._set(*(grams + held).solve(np.arange(nb * n_in), na, alpha), nb)
        self._fit_noise(u, y)
        return self

    def _set(self, W, A, c, nb) -> None:
        self.W_, self.A_, self.c_, self.lags_in_ = W, A, c, nb
        self.noise_ = ResidualNoise(np.zeros(len(c)), np.zeros(len(c)))   # replaced once fitted

    def _mean(self, u: np.ndarray) -> np.ndarray:
        y, _ = self._step_mean(self._initial_mean_state(len(u)), u)
        return y

    def _initial_mean_state(self, batch: int) -> dict[str, np.ndarray]:
        return {"u_hist": np.zeros((batch, self.lags_in_ - 1, self.n_inputs_)),
                "zi": np.zeros((batch, self.n_outputs_, self.A_.shape[1]))}

    def _step_mean(self, state: dict, u: np.ndarray) -> tuple[np.ndarray, dict]:
        x = lagged_product(u, self.W_, state["u_hist"]) + self.c_
        y, zi = arx_free_run(x, self.A_, state["zi"])
        return y, {"u_hist": keep_last(np.concatenate([state["u_hist"], u], axis=1), self.lags_in_ - 1), "zi": zi}

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        self._check_fitted()
        return ({"W": self.W_, "A": self.A_, "c": self.c_, **self.noise_.to_arrays()},
                {"n_inputs": self.n_inputs_, "n_outputs": self.n_outputs_, "dt": self.dt_,
                 "lags_in": self.lags_in_, "lags_out": self.lags_out_, "alpha": self.alpha_,
                 "validation_nrmse": self.validation_nrmse_,
                 "settings": {"lags_in": list(self.lags_in), "lags_out": list(self.lags_out),
                              "alphas": [float(a) for a in self.alphas], "validation": self.validation}})

    @classmethod
    def from_arrays(cls, arrays: dict, attrs: dict) -> LinearTwin:
        s = attrs["settings"]
        self = cls(tuple(s["lags_in"]), tuple(s["lags_out"]), tuple(s["alphas"]), s["validation"])
        self.n_inputs_, self.n_outputs_, self.dt_ = int(attrs["n_inputs"]), int(attrs["n_outputs"]), float(attrs["dt"])
        self.lags_out_, self.alpha_, self.validation_nrmse_ = int(attrs["lags_out"]), float(attrs["alpha"]), float(attrs["validation_nrmse"])
        self._set(np.asarray(arrays["W"], float), np.asarray(arrays["A"], float), np.asarray(arrays["c"], float),
                  int(attrs["lags_in"]))
        self.noise_ = ResidualNoise.from_arrays(arrays)
        return self

    def units(self) -> dict[str, np.ndarray]:
        """One unit per response channel (an ARX filter): ``id``, ``kind``, ``bias`` (response units),
        ``noise_std``, ``noise_rho`` and ``feedback`` ``(n_out, lags_out)`` (own-output lag weights)."""
        self._check_fitted()
        n = self.n_outputs_
        return {"id": np.arange(n, dtype=np.int64), "kind": np.array(["arx"] * n), "bias": self.c_,
                "noise_std": self.noise_.std, "noise_rho": self.noise_.rho, "feedback": self.A_}

    def electrode_map(self) -> dict:
        """``input_units``: every unit reads every stimulus channel, ``input_weights`` ``(lags_in, n_in,
        n_out)`` the FIR; ``output_units`` ``(n_out,)`` unit j is response channel j (weight 1)."""
        self._check_fitted()
        n = self.n_outputs_
        return {"input_units": np.tile(np.arange(n, dtype=np.int64), (self.n_inputs_, 1)),
                "input_weights": self.W_.reshape(self.lags_in_, self.n_inputs_, n),
                "output_units": np.arange(n, dtype=np.int64)[:, None], "output_weights": np.ones((n, 1))}

