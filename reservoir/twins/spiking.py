"""Spiking twin: a point-process (Poisson GLM) model of an MEA culture that emits events, with network bursts.

Fitted on the spike counts per electrode and sample of the training trials (the organoid's
``output="spikes"`` recording; a voltage recording must first go through ``readouts.spikes``, which this
layer cannot import: not done here).  Per electrode ``e`` and sample ``t`` (``dt`` seconds) the event intensity
(expected events per sample) is::

    lambda_e(t) = exp(b_e + sum_w S_w(t) . beta_ew + a_e[age(t)])  +  g * P[age(t), e]   (age < burst_len)

- ``S_w(t)``: the stimulus drive summed over lag window ``w`` (``window_edges_ms``, e.g. 0-2 ms ... 200-400
  ms before ``t``); the drive is the positive and the negative part of each input's voltage change per
  sample (an MEA electrode is capacitive: a change passes charge, a held level does not);
- a latent **network burst** process shared by all electrodes: a burst starts in a sample with
  probability ``h(t) = exp(c + sum_w S_w(t) . gamma_w + a_h[age(t)] + sum_w D_w(t) delta_w[age(t)])``
  (no new burst within ``burst_len``); ``age`` is the time since the last burst start (binned by
  ``age_edges_ms``: post-burst depression and recovery), ``D_w`` the drive of every input summed over
  window ``w``, so that how far the network has recovered scales the bursts a stimulus evokes apart from
  the spontaneous ones (``hazard_interactions``; without it a stimulus multiplies the hazard by the same
  factor at every age); ``P`` ``(burst_len, n_out)`` the mean events per electrode at each age after
  a burst start above background, ``g`` a per-burst gain: the mean size of the recorded bursts that
  started at the same age since the burst before (``size_gain_``, one per age bin, relative to the mean
  burst, shrunk toward 1 by ``SIZE_PRIOR_BURSTS`` bursts: a burst soon after another is smaller, its
  synapses still depressed, as in the organoid), times a Gamma law of mean 1 fitted to the sizes
  left over (bursts recruit more or fewer electrodes);
- the burst starts of the training raster come from the caller (``burst_starts``, e.g.
  ``experiments.bursts.detect_bursts``) or by default from :func:`burst_onsets`, the same method at its
  defaults (the reservoir layer cannot import the experiments layer).

Events per sample are Poisson(lambda) (at most 4 drawn per sample) from uniforms, one row of uniforms per
sample, so streaming a trial in blocks draws the same numbers as one call.  Output: events per electrode
and sample, the recording's shape and units (counts), so the same burst detection and readouts work on
the twin.  Not done: voltage output (spike waveforms plus noise) for a voltage recording.  No noiseless run exists for an event model: ``rngs=None``
runs every row on the generator of seed 0 (deterministic), said here rather than faking a mean.

The GLM weights are fitted jointly over electrodes by L-BFGS on the Poisson log-likelihood with an L2
penalty ``l2`` (on the stimulus and age weights, not the baselines), samples inside bursts left out of
the background fit.  A culture in a session is not reset between trials, so the burst age runs on from
one trial into the next: ``fit(..., history=...)`` (``twin fit`` passes it from the recording's trial
indices) says which training trials were played right after the one before, and a trial after one the
fit does not see (a held-out trial) is left out until its age is known.  Measured on
``protocols/examples/organoid_twin.toml`` (2026-12-04, ``benchmarks/spiking_twin_ceiling.py``, every
trial of the session): the probability that the culture bursts within 150 ms of a trial's first
stimulus rises with the time since its last burst, 0.14, 0.22, 0.31, 0.53, 0.67 and 1.00 at 0.5-0.75,
0.75-1, 1-1.25, 1.25-1.5, 1.5-2 and 2-3 s; a twin fitted as if every trial began from rest (each
training trial's first stimulus met a "rested" network) bursts there with 0.21-0.57 at every age, the
twin fitted with its ``history`` (and the age x drive terms) with 0.19-0.27, 0.23-0.33, 0.43-0.67,
0.43-0.65, 0.55-0.65 and 0.92-0.99 (four session runs each).

``units()``: one unit per recording electrode plus the burst unit (id ``n_out``);
``edges()``: burst unit -> electrode, weight the mean events a burst adds.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import gammaincinv

from prclab.errors import PrclabError

from .base import MAD_TO_SD, TwinFamily, check_trials

MAX_EVENTS = 4       # events drawn per electrode and sample at most
SIZE_PRIOR_BURSTS = 2.0  # an age bin's mean burst size is shrunk toward the overall mean by this many bursts


def drive(u: np.ndarray, u_last: np.ndarray) -> np.ndarray:
    """Stimulus drive ``(batch, T, 2 n_in)``: positive and negative parts of each input's change (volts)
    per sample of ``u`` ``(batch, T, n_in)``, continuing from the previous sample ``u_last`` ``(batch, n_in)``."""
    d = np.diff(u, axis=1, prepend=u_last[:, None])
    return np.concatenate([np.maximum(d, 0.0), np.maximum(-d, 0.0)], axis=2)


def window_sums(d: np.ndarray, hist: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Drive summed over each lag window ``[edges[k], edges[k+1])`` samples: ``(batch, T, n_win * F)`` from
    ``d`` ``(batch, T, F)`` and the previous ``edges[-1]`` samples ``hist`` ``(batch, L, F)``."""
    batch, steps, f = d.shape
    length = hist.shape[1]
    cs = np.concatenate([np.zeros((batch, 1, f)), np.cumsum(np.concatenate([hist, d], axis=1), axis=1)], axis=1)
    t = np.arange(steps) + length
    return np.concatenate([cs[:, t - a + 1] - cs[:, t - b + 1] for a, b in zip(edges[:-1], edges[1:])], axis=2)


def burst_onsets(counts: np.ndarray, dt: float, bin_s: float = 0.01, k: float = 5.0, merge_s: float = 0.05,
                 min_recruitment: float = 0.1) -> np.ndarray:
    """Burst start samples of a raster ``(steps, units)`` by the method of ``experiments.bursts``
    (units firing per bin above median + k robust SDs, bins merged within ``merge_s``, at least
    ``min_recruitment`` of the units): the first spiking sample of each burst ``(n_bursts,)`` int."""
    per_bin = max(1, int(round(bin_s / dt)))
    n_bins = len(counts) // per_bin
    active = counts[:n_bins * per_bin] > 0
    pop = active.reshape(n_bins, per_bin, -1).any(axis=1).sum(axis=1)
    med = float(np.median(pop))
    thr = med + k * max(MAD_TO_SD * float(np.median(np.abs(pop - med))), np.sqrt(med), 1.0)
    idx = np.flatnonzero(pop > thr)
    if len(idx) == 0:
        return np.zeros(0, np.int64)
    merge = int(np.ceil(merge_s / (per_bin * dt) - 1e-9))
    cut = np.flatnonzero(np.diff(idx) > merge)
    starts = []
    for first, last in zip(np.concatenate([idx[:1], idx[cut + 1]]), np.concatenate([idx[cut], idx[-1:]])):
        window = active[first * per_bin:(last + 1) * per_bin]
        if window.any(axis=0).mean() >= min_recruitment:
            starts.append(first * per_bin + int(np.flatnonzero(window.any(axis=1))[0]))
    return np.asarray(starts, np.int64)


def poisson_draw(lam: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Poisson(``lam``) counts by inverse CDF of ``uniforms`` (same shape), capped at ``MAX_EVENTS``."""
    p = np.exp(-lam)
    cdf, n = p.copy(), np.zeros(lam.shape)
    for k in range(1, MAX_EVENTS + 1):
        n += uniforms > cdf
        p = p * lam / k
        cdf += p
    return n


class SpikingTwin(TwinFamily):
    """Poisson GLM with a latent network-burst process (module docstring).

    Args:
        window_edges_ms: lag windows of the stimulus drive (ms, increasing from 0).
        age_edges_ms: bins of the time since the last burst start beyond the burst (ms, increasing).
        burst_ms: length of a burst's profile (ms).
        l2: L2 penalty on the standardised GLM weights (per sample, against the mean log-likelihood).
    """

    name = "spiking"
    fits = "counts"
    session_history = True

    def __init__(self, window_edges_ms=(0, 2, 5, 10, 20, 50, 100, 200, 400), age_edges_ms=(100, 200, 500, 1000, 2000),
                 burst_ms: float = 50.0, l2: float = 1e-4, hazard_interactions: bool = True):
        self.window_edges_ms, self.age_edges_ms = tuple(window_edges_ms), tuple(age_edges_ms)
        self.burst_ms, self.l2, self.hazard_interactions = burst_ms, l2, hazard_interactions

    # ------------------------------------------------------------------ fit
    def fit(self, stimuli, responses, dt, burst_starts=None, history=None) -> SpikingTwin:
        """Fit on training trials (``TwinFamily.fit``); ``burst_starts``: optional list of burst start
        sample arrays per trial (default :func:`burst_onsets` of the concatenated raster).

        ``history``: per trial, what came before it: ``"rest"`` (the substrate at rest, no burst for
        longer than the largest age bin: a session's first trial), ``"follows"`` (played right after the
        trial before it in the list, the substrate not reset between, so the burst age and the stimulus
        history run on across the two) or ``"unknown"`` (after activity the fit does not see, such as a
        held-out trial: its samples are left out of the fits until its first burst, or until
        ``age_edges_ms[-1]`` into it, while its burst age is unknown).  None: every trial ``"rest"``.  A
        culture in a session is not at rest when a trial starts: fitted as if it were, every trial's first
        stimulus meets a long-rested network, and the hazard learns a burst probability at the stimulus
        onset that does not depend on how long ago the last burst was (module docstring)."""
        u, y, dt = check_trials(stimuli, responses, dt, "spiking twin fit")
        history = ["rest"] * len(u) if history is None else list(history)
        if len(history) != len(u) or not set(history) <= {"rest", "follows", "unknown"} or history[:1] == ["follows"]:
            raise PrclabError(f"spiking twin fit: history needs one of 'rest', 'follows', 'unknown' per trial "
                              f"({len(u)}), the first not 'follows'; got {history[:5]}")
        edges = np.round(np.asarray(self.window_edges_ms, float) * 1e-3 / dt).astype(int)
        if len(edges) < 2 or edges[0] != 0 or np.any(np.diff(edges) <= 0):
            raise PrclabError(f"spiking twin: window_edges_ms must rise from 0 by at least one sample, got "
                              f"{self.window_edges_ms}")
        self.dt_, self.n_inputs_, self.n_outputs_ = dt, u[0].shape[1], y[0].shape[1]
        self.edges_ = edges
        self.burst_len_ = max(1, int(round(self.burst_ms * 1e-3 / dt)))
        self.age_edges_ = np.concatenate([[self.burst_len_], np.round(np.asarray(self.age_edges_ms) * 1e-3 / dt)])
        if not all(np.all((r >= 0) & (r == np.round(r))) for r in y):
            raise PrclabError("spiking twin fit: the responses are not spike counts (non-negative integers "
                              "per sample); detect the spikes of a voltage recording first (readouts.spikes)")
        counts = y
        if burst_starts is None:
            lengths = np.cumsum([0] + [len(c) for c in counts])
            onsets = burst_onsets(np.concatenate(counts), dt)
            burst_starts = [onsets[(onsets >= a) & (onsets < b)] - a for a, b in zip(lengths[:-1], lengths[1:])]
        # segments: runs of trials each played right after the one before (one segment a trial from rest)
        bounds = np.append(np.flatnonzero([h != "follows" for h in history]), len(u))
        never = self.age_edges_[-1]
        X, age, prior, known = [], [], [], []
        for a, b in zip(bounds[:-1], bounds[1:]):
            s = np.concatenate(u[a:b])
            offsets = np.cumsum([0] + [len(x) for x in u[a:b - 1]])
            starts = np.concatenate([np.asarray(bs, int) + o for bs, o in zip(burst_starts[a:b], offsets)])
            X.append(window_sums(drive(s[None], np.zeros((1, self.n_inputs_))),
                                 np.zeros((1, edges[-1], 2 * self.n_inputs_)), edges)[0])
            seg_age = self._ages(len(s), starts)
            age.append(seg_age)
            # the age the process had before each sample (a start resets it): the hazard and the burst size
            # depend on it
            prior.append(np.concatenate([[never], np.minimum(seg_age[:-1] + 1, never)]))
            seen = np.ones(len(s), bool)
            if history[a] == "unknown":   # the age is unknown until the segment's first burst or `never` samples
                seen[:min(int(np.min(starts, initial=len(s))) + 1, int(never))] = False
            known.append(seen)
        X, age, C = np.concatenate(X), np.concatenate(age), np.concatenate(counts)
        prior, known = np.concatenate(prior), np.concatenate(known)
        cat = self._category(age)
        n_cat = len(self.age_edges_) + 1
        A = np.eye(n_cat)[cat][:, 1:]                    # category 0 (inside a burst) is the reference
        # burst profile above the background, and the gain law from the bursts' sizes
        inside = age < self.burst_len_
        background = C[~inside].mean(axis=0) if (~inside).any() else C.mean(axis=0)
        onset_rows = np.flatnonzero(age == 0)
        if len(onset_rows):
            profile = np.stack([C[np.clip(onset_rows + j, 0, len(C) - 1)].mean(axis=0)
                                * (age[np.clip(onset_rows + j, 0, len(C) - 1)] == j).mean()
                                for j in range(self.burst_len_)]) - background
            sizes = np.array([C[r:r + self.burst_len_].sum() for r in onset_rows])
            gains = sizes / max(sizes.mean(), 1e-12)
            seen = known[onset_rows]   # the bursts that started at a known age since the one before
            by_age = self._category(prior[onset_rows])
            count = np.bincount(by_age[seen], minlength=n_cat)
            self.size_gain_ = (np.bincount(by_age[seen], gains[seen], minlength=n_cat) + SIZE_PRIOR_BURSTS) / \
                (count + SIZE_PRIOR_BURSTS)
            left = gains[seen] / self.size_gain_[by_age[seen]] if seen.any() else gains
            cv2 = left.var() / max(left.mean(), 1e-12) ** 2
        else:
            profile, cv2 = np.zeros((self.burst_len_, self.n_outputs_)), 0.0
            self.size_gain_ = np.ones(n_cat)
        self.profile_ = np.maximum(profile, 0.0)
        self.gain_shape_ = float(1.0 / max(cv2, 1e-3))
        # background GLM per electrode (outside bursts) and the burst-start hazard (outside bursts)
        Z = np.concatenate([X, A], axis=1)
        keep = ~inside & known
        if not keep.any():
            raise PrclabError("spiking twin fit: no sample outside a burst at a known burst age (every trial's "
                              "history 'unknown' and none runs long enough to learn it)")
        self.W_, self.b_ = self._poisson_fit(Z[keep], C[keep])
        free = (prior >= self.burst_len_) & known
        onehot = np.eye(n_cat)[self._category(prior)]
        parts = [X, onehot[:, 1:]]
        if self.hazard_interactions:
            parts.append((self._pooled(X)[:, :, None] * onehot[:, None, :]).reshape(len(X), -1))
        H = np.concatenate(parts, axis=1)
        w_h, c_h = self._poisson_fit(H[free], (age[free] == 0).astype(float)[:, None])
        n_x = X.shape[1]
        self.W_h_, self.c_h_ = w_h[:n_x + n_cat - 1, 0], float(c_h[0])
        self.W_hx_ = (w_h[n_x + n_cat - 1:, 0].reshape(-1, n_cat) if self.hazard_interactions
                      else np.zeros((len(self.edges_) - 1, n_cat)))
        # no NRMSE figure: an event twin is judged by its rates and bursts (experiments.twins.spiking_metrics)
        self.validation_nrmse_ = float("nan")
        return self

    def _pooled(self, S: np.ndarray) -> np.ndarray:
        """The drive of every input and sign summed per lag window: ``(..., n_windows)`` from ``(..., F)``."""
        return S.reshape(S.shape[:-1] + (len(self.edges_) - 1, -1)).sum(axis=-1)

    def _ages(self, steps: int, starts: np.ndarray) -> np.ndarray:
        """Samples since the last burst start ``(steps,)``; before the first, the largest age bin."""
        never = int(self.age_edges_[-1])
        age = np.full(steps, never, np.int64)
        for s in np.sort(starts):
            age[s:] = np.arange(steps - s)
        return age

    def _category(self, age: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.age_edges_, age, side="right")

    def _poisson_fit(self, Z: np.ndarray, C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ridge Poisson regression ``C ~ Poisson(exp(Z W + b))`` jointly over the columns of ``C``
        ``(N, n)``: ``W`` ``(F, n)``, ``b`` ``(n,)`` by L-BFGS on the mean negative log-likelihood."""
        n_rows, f = Z.shape
        n = C.shape[1]
        scale = np.maximum(Z.std(axis=0), 1e-12)
        Zs, C32 = (Z / scale).astype(np.float32), C.astype(np.float32)   # float32 products: the fit's cost
        b0 = np.log(np.maximum(C.mean(axis=0), 1e-8))
        lam_l2 = self.l2

        def loss(theta):
            W, b = theta[:f * n].reshape(f, n), theta[f * n:]
            eta = np.clip(Zs @ W.astype(np.float32) + b.astype(np.float32), -30, 15)
            mu = np.exp(eta)
            val = float((mu - C32 * eta).sum(dtype=np.float64)) / n_rows + 0.5 * (lam_l2 * W ** 2).sum()
            r = (mu - C32) / np.float32(n_rows)
            grad = np.concatenate([(Zs.T @ r).astype(float).ravel() + (lam_l2 * W).ravel(), r.sum(axis=0, dtype=np.float64)])
            return val, grad

        res = minimize(loss, np.concatenate([np.zeros(f * n), b0]), jac=True, method="L-BFGS-B",
                       options={"maxiter": 200})
        W = res.x[:f * n].reshape(f, n) / scale[:, None]
        return W, res.x[f * n:]

    # ------------------------------------------------------------- running
    def _check_fitted(self) -> None:
        if not hasattr(self, "W_"):
            raise PrclabError(f"twin family {self.name!r}: not fitted (call fit first)")

    def initial_state(self, batch: int) -> dict[str, np.ndarray]:
        """Rest: no stimulus yet, no burst for longer than the largest age bin."""
        self._check_fitted()
        return {"u_last": np.zeros((batch, self.n_inputs_)),
                "hist": np.zeros((batch, self.edges_[-1], 2 * self.n_inputs_)),
                "age": np.full(batch, float(self.age_edges_[-1])), "gain": np.zeros(batch)}

    def step_block(self, state: dict, u_block, rngs=None) -> tuple[np.ndarray, dict]:
        """Events ``(batch, T, n_out)`` per sample for ``u_block`` ``(batch, T, n_in)`` from ``state``."""
        self._check_fitted()
        u = self._check_u(u_block)
        batch, steps, _ = u.shape
        if rngs is None:
            rngs = [np.random.default_rng(0) for _ in range(batch)]
        if len(rngs) != batch:
            raise PrclabError(f"twin 'spiking': {len(rngs)} generators for a batch of {batch}")
        uni = np.stack([g.random((steps, 2 + self.n_outputs_)) for g in rngs])   # (batch, T, 2 + n_out)
        d = drive(u, state["u_last"])
        S = window_sums(d, state["hist"], self.edges_)                           # (batch, T, F)
        n_win = S.shape[2]
        hazard_stim = S @ self.W_h_[:n_win] + self.c_h_                         # (batch, T)
        hazard_x = self._pooled(S) @ self.W_hx_                                  # (batch, T, n_cat)
        a_h = np.concatenate([[-np.inf], self.W_h_[n_win:]])                      # no start inside a burst
        age, gain = state["age"].copy(), state["gain"].copy()
        ages, gains = np.empty((batch, steps)), np.empty((batch, steps))
        rows = np.arange(batch)
        cap = float(self.age_edges_[-1])
        for t in range(steps):   # the burst process is sequential in its own age; vectorised over rows
            cat = self._category(age)
            h = np.exp(np.minimum(hazard_stim[:, t] + a_h[cat] + hazard_x[rows, t, cat], 0.0))
            start = uni[:, t, 0] < h
            gain = np.where(start, self.size_gain_[cat] * gammaincinv(
                self.gain_shape_, np.clip(uni[:, t, 1], 1e-12, 1 - 1e-12)) / self.gain_shape_, gain)
            age = np.where(start, 0.0, age)
            ages[:, t], gains[:, t] = age, gain
            age = np.minimum(age + 1, cap)
        cat = self._category(ages)
        a_bg = np.concatenate([np.zeros((1, self.n_outputs_)), self.W_[n_win:]])
        lam = np.exp(np.minimum(S @ self.W_[:n_win] + self.b_ + a_bg[cat], 3.0))
        inside = ages < self.burst_len_
        lam += np.where(inside[..., None], gains[..., None] * self.profile_[np.minimum(ages, self.burst_len_ - 1)
                                                                            .astype(int)], 0.0)
        y = poisson_draw(lam, uni[:, :, 2:])
        hist = np.concatenate([state["hist"], d], axis=1)[:, -self.edges_[-1]:]
        return y, {"u_last": u[:, -1].copy() if steps else state["u_last"], "hist": hist, "age": age, "gain": gain}

    def simulate(self, u, noise_rng=None) -> np.ndarray:
        u = self._check_u(u)
        y, _ = self.step_block(self.initial_state(len(u)), u, noise_rng)
        return y

    # ---------------------------------------------------------- persistence
    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        self._check_fitted()
        return ({"W": self.W_, "b": self.b_, "W_h": self.W_h_, "profile": self.profile_, "edges": self.edges_,
                 "age_edges": self.age_edges_, "size_gain": self.size_gain_, "W_hx": self.W_hx_},
                {"n_inputs": self.n_inputs_, "n_outputs": self.n_outputs_, "dt": self.dt_, "c_h": self.c_h_,
                 "gain_shape": self.gain_shape_, "burst_len": self.burst_len_,
                 "settings": {"window_edges_ms": list(self.window_edges_ms), "age_edges_ms": list(self.age_edges_ms),
                              "burst_ms": self.burst_ms, "l2": self.l2,
                              "hazard_interactions": self.hazard_interactions}})

    @classmethod
    def from_arrays(cls, arrays: dict, attrs: dict) -> SpikingTwin:
        self = cls(**attrs["settings"])
        self.n_inputs_, self.n_outputs_, self.dt_ = int(attrs["n_inputs"]), int(attrs["n_outputs"]), float(attrs["dt"])
        self.c_h_, self.gain_shape_ = float(attrs["c_h"]), float(attrs["gain_shape"])
        self.burst_len_ = int(attrs["burst_len"])
        self.W_, self.b_, self.W_h_ = (np.asarray(arrays[k], float) for k in ("W", "b", "W_h"))
        self.profile_ = np.asarray(arrays["profile"], float)
        self.edges_ = np.asarray(arrays["edges"], int)
        self.age_edges_ = np.asarray(arrays["age_edges"], float)
        self.size_gain_ = np.asarray(arrays["size_gain"], float)
        # a twin written before the hazard had its age x drive terms: none
        self.W_hx_ = np.asarray(arrays["W_hx"], float) if "W_hx" in arrays else \
            np.zeros((len(self.edges_) - 1, len(self.age_edges_) + 1))
        self.hazard_interactions = "W_hx" in arrays
        self.validation_nrmse_ = float("nan")
        return self

    # ------------------------------------------------------------- identity
    def units(self) -> dict[str, np.ndarray]:
        """Electrode units ``0..n_out-1`` (kind ``"glm_poisson"``, ``baseline_hz`` at rest) and the burst
        unit ``n_out`` (kind ``"burst_process"``, ``baseline_hz`` its start rate at rest)."""
        self._check_fitted()
        n = self.n_outputs_
        rest = np.exp(self.b_ + self.W_[-1]) / self.dt_
        hz = np.exp(self.c_h_ + self.W_h_[-1]) / self.dt_
        return {"id": np.arange(n + 1, dtype=np.int64),
                "kind": np.array(["glm_poisson"] * n + ["burst_process"]),
                "baseline_hz": np.append(rest, hz),
                "burst_events": np.append(self.profile_.sum(axis=0), 0.0)}

    def edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Burst unit -> each electrode unit with weight the mean events a burst adds there."""
        self._check_fitted()
        n = self.n_outputs_
        return np.full(n, n, np.int64), np.arange(n, dtype=np.int64), self.profile_.sum(axis=0)

    def burst_delays_s(self) -> np.ndarray:
        """Per electrode, the time of the burst profile's peak after a burst start (seconds) ``(n_out,)``."""
        return np.argmax(self.profile_, axis=0) * self.dt_

    def electrode_map(self) -> dict:
        """Every electrode unit reads every stimulus channel (``input_weights`` ``(n_windows, 2 n_in, n_out)``
        per lag window and drive sign); unit j is response channel j."""
        self._check_fitted()
        n, f = self.n_outputs_, 2 * self.n_inputs_
        n_win = len(self.edges_) - 1
        return {"input_units": np.tile(np.arange(n, dtype=np.int64), (self.n_inputs_, 1)),
                "input_weights": self.W_[:n_win * f].reshape(n_win, f, n),
                "output_units": np.arange(n, dtype=np.int64)[:, None], "output_weights": np.ones((n, 1))}
