"""Characterise a substrate, simulated or recorded, with the standard reservoir-computing metrics.

Every metric reads responses only, so it applies to anything that turns an input into a response:

- **Linear memory capacity** (Jaeger 2001, GMD Report 152): drive with an i.i.d. input ``u(t)`` uniform
  in ``[-1, 1]``; for each delay ``k = 0 .. max_delay`` fit a ridge readout from the response ``y(t)``
  to ``u(t - k)`` on training samples and take the squared correlation ``r_k^2`` between target and
  reconstruction on held-out samples.  ``MC = sum_k r_k^2`` (``<= n_outputs`` for an i.i.d. input).
- **Nonlinear capacity** (Dambre, Verstraeten, Schrauwen & Massar 2012, Sci. Rep. 2:514): the same for
  targets that are products of Legendre polynomials of delayed inputs, ``prod_k P_{d_k}(u(t - k))``
  with ``sum_k d_k = degree`` (orthogonal for a uniform input), over all delays ``< nonlinear_window``;
  the capacities of one degree are summed.  Degree 1 is the linear memory capacity.
- **Finite-sample bias**: a readout that cannot reconstruct a target still scores ``r^2 ~ chi2(1) /
  n_test`` on held-out data.  As in Dambre et al., estimates below a threshold are set to zero; here the
  threshold is the ``1 - p_value`` quantile of that null distribution, so of thousands of summed
  targets almost none adds noise to a total.
- **Kernel rank** and **generalisation rank** (Legenstein & Maass 2007, Neural Netw. 20:323; Buesing,
  Schrauwen & Legenstein 2010, Neural Comput. 22:1272): the numerical rank of the ``(m, n_outputs)``
  matrix of responses at the end of ``m`` input streams that start from rest.  For the kernel rank the
  streams are distinct random inputs (high is good: the substrate separates inputs); for the
  generalisation rank they differ only in their first half and agree afterwards (low is good: the
  substrate forgets what it should).  Singular values below ``rank_tol`` times the largest do not count.
- **Consistency**: one random stimulus repeated ``repeats`` times, each repeat entered from a different
  state (a distinct random prefix) with its own noise; the mean pairwise correlation of the responses
  after a washout (1: the response is a function of the stimulus; near 0: it is not).

A substrate with several stimulating electrodes gets an independent i.i.d. input on each (as a task's
encoder drives them: one feature per electrode), scaled by ``amplitude`` (default 0.5: volts +-0.5, the
range the encoders drive every registered substrate with).  The targets are then those of every
(electrode, delay) pair: the memory capacity sums over electrodes (``memory_capacity_per_input`` gives
each), bounded by ``n_outputs`` in total (Dambre et al. 2012, for a multivariate i.i.d. input), and the
nonlinear scan combines delays ``0 .. nonlinear_window // n_inputs - 1`` (at least 0) of every
electrode, so that its size stays that of one input over ``nonlinear_window`` delays (a lower bound of
the nonlinear capacity; the cross-electrode products it keeps are the ones a multi-electrode substrate
adds).  ``characterize_substrate`` also gives the figures of today's earlier convention, one shared
scalar input on every electrode, under ``shared_input``.
Physical models are stepped ``hold`` samples per input value (the registry's ``samples_per_frame``, e.g.
10 ms frames at 1 kHz); the response of a frame is its last sample, and delays count frames.

**Characteristic measurements** (``measure_parts``), the ones a lab makes on the material itself, chosen by
what the substrate can show (``characteristic_parts``), not by its name:

- a substrate that keeps its stimulating electrodes' currents (``interface_current_A``: the potato, the
  hydrogel) gets an **impedance spectrum** (``experiments.impedance``: ``IMPEDANCE_AMPLITUDE_V`` = 5 mV
  sinusoids on electrode 0,
  ``IMPEDANCE_POINTS`` log-spaced frequencies from ``IMPEDANCE_LOW_HZ`` = 0.1 Hz to 0.8 of the Nyquist
  frequency, 400 Hz at 1 kHz) and **I-V loops** (``experiments.hysteresis``: ``amplitude`` triangles on
  electrode 0, periods ``SWEEP_PERIODS_S`` from 0.1 s, faster than the potato's double layer, to 100 s,
  slower than the hydrogel's ion memory of a few seconds; the second of 2 cycles);
- a substrate whose outputs are spike counts (``output == "spikes"``: the organoid) gets the **network
  bursts** of its spontaneous activity (``experiments.bursts``: no input for ``SPONTANEOUS_S`` = 30 s
  after a ``SPONTANEOUS_WASHOUT_S`` = 1 s washout from rest, whose synchronous start is not a burst),
  on its recording electrodes as an MEA sees them.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from itertools import combinations_with_replacement, islice

import numpy as np
from numpy.polynomial import legendre
from scipy import linalg, stats

from prclab.errors import PrclabError
from prclab.reservoir.registry import make_substrate, substrate_entry

from prclab.readouts.ridge import RidgeReadout

from .bursts import burst_summary, detect_bursts, plot_raster
from .hysteresis import iv_loops, plot_iv_loops
from .impedance import bode_figure, impedance_spectrum, nyquist_figure

#: ridge parameters tried (times the number of training samples, on standardised responses)
RELATIVE_ALPHAS = 10.0 ** np.arange(-9, 1)
#: targets fitted at once in the nonlinear scan (bounds memory: samples x chunk float64)
TARGET_CHUNK = 512
#: impedance sweep: points, lowest frequency (Hz) and highest as a fraction of the Nyquist frequency
IMPEDANCE_POINTS, IMPEDANCE_LOW_HZ, IMPEDANCE_HIGH_NYQUIST = 16, 0.1, 0.8
#: impedance sweep amplitude (volts: small, for the linear response)
IMPEDANCE_AMPLITUDE_V = 5e-3
#: I-V sweep periods (seconds) and the cycles run at each (the last is measured)
SWEEP_PERIODS_S, SWEEP_CYCLES = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0), 2
#: spontaneous activity for the burst statistics, and the washout from rest before it (seconds)
SPONTANEOUS_S, SPONTANEOUS_WASHOUT_S = 30.0, 1.0


def random_input(rng: np.random.Generator, batch: int, frames: int, n_inputs: int | None = None) -> np.ndarray:
    """i.i.d. uniform input in ``[-1, 1]``: ``(batch, frames)`` (one shared input), or
    ``(batch, frames, n_inputs)`` (independent inputs, one per electrode) when ``n_inputs`` is given."""
    return rng.uniform(-1.0, 1.0, (batch, frames) if n_inputs is None else (batch, frames, n_inputs))


def _as_inputs(u: np.ndarray) -> np.ndarray:
    """``(batch, frames)`` or ``(batch, frames, n_inputs)`` -> ``(batch, frames, n_inputs)``."""
    u = np.asarray(u, dtype=np.float64)
    return u[:, :, None] if u.ndim == 2 else u


def drive(substrate, u: np.ndarray, amplitude: float = 0.5, hold: int = 1,
          seed: int | np.random.SeedSequence = 0) -> np.ndarray:
    """Run the inputs ``u`` through ``substrate`` from a fresh ``reset(seed)``.

    Args:
        u: values in ``[-1, 1]``, ``(batch, frames)`` (the same input on every input channel) or
            ``(batch, frames, n_inputs)`` (one input per channel); each is multiplied by ``amplitude``
            (volts) and held for ``hold`` samples.
    Returns:
        ``(batch, frames, n_outputs)`` float64, the response at the last sample of each frame.
    """
    u = _as_inputs(u)
    batch, frames, n_u = u.shape
    if n_u not in (1, substrate.n_inputs):
        raise PrclabError(f"characterise: {n_u} inputs for a substrate with {substrate.n_inputs}")
    stim = np.broadcast_to(np.repeat(u * amplitude, hold, axis=1), (batch, frames * hold, substrate.n_inputs))
    substrate.reset(seed)
    y = np.asarray(substrate.run(stim), dtype=np.float64)
    return y[:, hold - 1::hold]


# ----------------------------------------------------------------------------------------- capacities

def capacity_threshold(n_test: int, p_value: float = 1e-4) -> float:
    """Squared held-out correlation that a useless readout exceeds with probability ``p_value``."""
    return float(stats.chi2.ppf(1.0 - p_value, df=1) / n_test)


def legendre_targets(u: np.ndarray, t_index: np.ndarray, degree: int, window: int):
    """Products of Legendre polynomials of delayed inputs, with total degree ``degree``.

    Args:
        u: ``(batch, frames)`` input in ``[-1, 1]``, or ``(batch, frames, n_inputs)`` independent inputs.
        t_index: frames (each ``>= window - 1``) at which targets are taken.
        window: delays ``0 .. window - 1`` of every input are combined.
    Yields:
        ``(delays, target)`` per combination: ``delays`` a tuple of ``degree`` variables, each
        ``delay * n_inputs + input`` (a repeated variable raises that input's polynomial degree),
        ``target`` ``(batch * len(t_index),)``.
    """
    u = _as_inputs(u)
    n_u = u.shape[2]
    polys = {d: legendre.legval(u, [0] * d + [1]) for d in range(1, degree + 1)}
    for delays in combinations_with_replacement(range(window * n_u), degree):
        target = np.ones((u.shape[0], len(t_index)))
        for v in sorted(set(delays)):
            target *= polys[delays.count(v)][:, t_index - v // n_u, v % n_u]
        yield delays, target.ravel()


def _standardize(y_train: np.ndarray, y_test: np.ndarray):
    """z-score response columns with training statistics; constant columns are dropped."""
    mean, sd = y_train.mean(axis=0), y_train.std(axis=0)
    keep = sd > 1e-12 * max(1.0, float(np.abs(mean).max(initial=0.0)))
    if not np.any(keep):
        raise PrclabError("characterise: every response channel is constant")
    return (y_train[:, keep] - mean[keep]) / sd[keep], (y_test[:, keep] - mean[keep]) / sd[keep]


def _squared_correlations(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Column-wise squared Pearson correlation of two ``(n, k)`` arrays (0 where one is constant)."""
    p = pred - pred.mean(axis=0)
    t = target - target.mean(axis=0)
    denom = np.sqrt((p ** 2).sum(axis=0) * (t ** 2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denom > 0, (p * t).sum(axis=0) / denom, 0.0)
    return r ** 2


def capacities(u: np.ndarray, y: np.ndarray, max_delay: int | None = None, degrees=(2, 3),
               nonlinear_window: int = 15, washout: int = 100, train_fraction: float = 0.7,
               p_value: float = 1e-4) -> dict:
    """Linear memory capacity and nonlinear capacities from inputs and responses.

    Args:
        u: ``(batch, frames)`` i.i.d. uniform input in ``[-1, 1]`` (a 1-D array is a batch of one), or
            ``(batch, frames, n_inputs)`` independent inputs (see the module docstring).
        y: ``(batch, frames, n_outputs)`` responses, one row per input row (2-D: a batch of one).
        max_delay: largest delay of the memory curve (frames); default ``min(2 n_outputs + 20, 300)``.
        degrees: polynomial degrees (> 1) of the nonlinear scan; ``()`` skips it.
        nonlinear_window: delays ``0 .. nonlinear_window - 1`` enter the nonlinear targets (of one
            input; of ``n_inputs`` inputs, ``max(1, nonlinear_window // n_inputs)`` delays each).
        washout: leading frames of every row that are not used (transient from the initial state).
        train_fraction: each row's first part trains the readout, the rest tests it.
        p_value: false-positive rate per target of the bias threshold.
    Returns:
        dict: ``memory_capacity``, ``memory_curve`` (``r_k^2`` per delay, thresholded, summed over
        inputs), ``memory_capacity_per_input``, ``n_inputs``, ``nonlinear_delays`` (per input),
        ``nonlinear_capacity`` (degree -> summed capacity), ``total_capacity`` (all degrees),
        ``threshold``, ``alpha`` (ridge parameter used), ``n_train``, ``n_test``, ``n_features``.
    """
    u = np.asarray(u, dtype=np.float64)
    u = _as_inputs(u[None] if u.ndim == 1 else u)
    n_u = u.shape[2]
    y = np.asarray(y, dtype=np.float64)
    y = y[None] if y.ndim == 2 else y
    if y.ndim != 3 or y.shape[:2] != u.shape[:2]:
        raise PrclabError(f"characterise: response {y.shape} does not match input {u.shape}")
    if not np.all(np.isfinite(u)) or not np.all(np.isfinite(y)):
        raise PrclabError("characterise: input or response holds NaN or infinite values")
    batch, frames, n_out = y.shape
    if max_delay is None:
        max_delay = min(2 * n_out + 20, 300)
    start = max(washout, max_delay, nonlinear_window - 1 if degrees else 0)
    usable = frames - start
    n_train_row = int(round(usable * train_fraction))
    if batch * n_train_row < 2 * n_out or batch * (usable - n_train_row) < 100:
        raise PrclabError(f"characterise: {batch} trial(s) of {frames} frames are too few: the first {start} "
                          f"frames are washout/delay history, and {2 * n_out} training and 100 test "
                          f"frames are needed after them")
    t_train = np.arange(start, start + n_train_row)
    t_test = np.arange(start + n_train_row, frames)
    x_train, x_test = _standardize(y[:, t_train].reshape(-1, n_out), y[:, t_test].reshape(-1, n_out))
    n_train, n_test = len(x_train), len(x_test)
    threshold = capacity_threshold(n_test, p_value)

    def lagged(t_index):  # columns: delay-major, input-minor
        return np.concatenate([u[:, t_index - k].reshape(-1, n_u) for k in range(max_delay + 1)], axis=1)

    readout = RidgeReadout(alphas=RELATIVE_ALPHAS * n_train).fit(x_train, lagged(t_train))
    memory = _squared_correlations(readout.predict(x_test), lagged(t_test)).reshape(max_delay + 1, n_u)
    memory[memory < threshold] = 0.0
    curve = memory.sum(axis=1)
    window = max(1, nonlinear_window // n_u)
    # one factorisation of the regularised Gram matrix serves every nonlinear target
    x_mean = x_train.mean(axis=0)
    xc_train, xc_test = x_train - x_mean, x_test - x_mean
    gram = xc_train.T @ xc_train
    gram[np.diag_indices_from(gram)] += readout.alpha_
    factor = linalg.cho_factor(gram)
    nonlinear = {}
    for degree in degrees:
        if degree < 2:
            raise PrclabError(f"characterise: nonlinear degrees must be 2 or more, got {degree}")
        total = 0.0
        pairs = zip(legendre_targets(u, t_train, degree, window), legendre_targets(u, t_test, degree, window))
        while chunk := list(islice(pairs, TARGET_CHUNK)):
            tr = np.stack([train for (_, train), _ in chunk], axis=1)
            te = np.stack([test for _, (_, test) in chunk], axis=1)
            pred = xc_test @ linalg.cho_solve(factor, xc_train.T @ (tr - tr.mean(axis=0)))
            r2 = _squared_correlations(pred, te)
            total += float(r2[r2 >= threshold].sum())
        nonlinear[degree] = total
    mc = float(curve.sum())
    return {"memory_capacity": mc, "memory_curve": curve.tolist(),
            "memory_capacity_per_input": memory.sum(axis=0).tolist(), "n_inputs": n_u,
            "nonlinear_delays": window if degrees else 0, "nonlinear_capacity": nonlinear,
            "total_capacity": mc + sum(nonlinear.values()), "threshold": threshold,
            "alpha": float(readout.alpha_), "n_train": n_train, "n_test": n_test,
            "n_features": int(x_train.shape[1])}


def characterize_recorded(stimulus: np.ndarray, response: np.ndarray, hold: int = 1, **options) -> dict:
    """Capacities of a recorded trial driven with an i.i.d. uniform random input.

    Args:
        stimulus: ``(samples,)`` or ``(samples, n_stimulus)`` as sent (volts); with several channels the
            first is used.  It is rescaled from its ``[min, max]`` to ``[-1, 1]``.
        response: ``(samples, n_response)``, same clock as the stimulus.
        hold: samples each input value was held for; the frame's first stimulus sample and last
            response sample are used.
        options: passed to ``capacities``.
    Returns:
        the ``capacities`` dict.  Kernel/generalisation rank and consistency need designed stimuli
        and come only from ``characterize_substrate``.
    """
    s = np.asarray(stimulus, dtype=np.float64)
    r = np.asarray(response, dtype=np.float64)
    s = s[:, 0] if s.ndim == 2 else s
    if s.ndim != 1 or r.ndim != 2 or len(s) != len(r):
        raise PrclabError(f"characterise: stimulus {np.shape(stimulus)} and response "
                          f"{np.shape(response)} must be (samples[, channels]) of equal length")
    lo, hi = float(s.min(initial=0.0)), float(s.max(initial=0.0))
    if hi <= lo:
        raise PrclabError("characterise: the stimulus is constant; a random-input trial is needed")
    frames = len(s) // hold
    u = 2.0 * (s[:frames * hold:hold] - lo) / (hi - lo) - 1.0
    y = r[hold - 1:frames * hold:hold]
    return capacities(u[None], y[None], **options)


# ----------------------------------------------------------------------------- ranks and consistency

def numerical_rank(matrix: np.ndarray, rank_tol: float = 1e-2) -> int:
    """Singular values of ``matrix`` above ``rank_tol`` times the largest."""
    s = np.linalg.svd(np.asarray(matrix, dtype=np.float64), compute_uv=False)
    return int(np.sum(s > rank_tol * s[0])) if len(s) and s[0] > 0 else 0


def _inputs_of(substrate, independent: bool) -> int | None:
    """``n_inputs`` argument of ``random_input``: one input per electrode, or None (one shared input)."""
    return substrate.n_inputs if independent else None


def ranks(substrate, n_streams: int | None = None, frames: int = 100, amplitude: float = 0.5,
          hold: int = 1, rank_tol: float = 1e-2, seed: int | np.random.SeedSequence = 0,
          independent: bool = True) -> dict:
    """Kernel rank and generalisation rank over ``n_streams`` streams of ``frames`` frames from rest.

    ``n_streams`` defaults to ``n_outputs`` (so either rank can reach ``n_outputs``), at most 1000.
    ``independent``: each input channel its own random input (else one shared input on all).
    Returns ``kernel_rank``, ``generalization_rank``, ``n_streams``.
    """
    m = n_streams or min(substrate.n_outputs, 1000)
    rng = np.random.default_rng(seed)
    n_u = _inputs_of(substrate, independent)
    distinct = random_input(rng, m, frames, n_u)
    early = frames // 2
    late = random_input(rng, 1, frames - early, n_u)
    shared_late = np.concatenate([random_input(rng, m, early, n_u),
                                  np.broadcast_to(late, (m,) + late.shape[1:])], axis=1)
    both = np.concatenate([distinct, shared_late])
    final = drive(substrate, both, amplitude, hold, seed)[:, -1]
    return {"kernel_rank": numerical_rank(final[:m], rank_tol),
            "generalization_rank": numerical_rank(final[m:], rank_tol), "n_streams": m}


def consistency(substrate, repeats: int = 8, frames: int = 300, washout: int = 100,
                amplitude: float = 0.5, hold: int = 1, seed: int | np.random.SeedSequence = 0,
                independent: bool = True) -> float:
    """Mean pairwise correlation of responses to one stimulus entered from ``repeats`` different states.

    Each repeat first gets its own random prefix of ``washout`` frames (a different state and noise),
    then the common random stimulus of ``frames`` frames; the first ``washout`` frames of the common
    part are discarded too (``independent`` as in ``ranks``).  Each response is centred per channel over time and flattened
    ``(frames - washout) * n_outputs``; the result is the mean correlation over pairs of repeats.
    """
    if repeats < 2 or frames <= washout:
        raise PrclabError("characterise: consistency needs 2+ repeats and frames > washout")
    rng = np.random.default_rng(seed)
    n_u = _inputs_of(substrate, independent)
    common = random_input(rng, 1, frames, n_u)
    stim = np.concatenate([random_input(rng, repeats, washout, n_u),
                           np.broadcast_to(common, (repeats,) + common.shape[1:])], axis=1)
    y = drive(substrate, stim, amplitude, hold, seed)[:, 2 * washout:]
    z = (y - y.mean(axis=1, keepdims=True)).reshape(repeats, -1)
    norms = np.linalg.norm(z, axis=1)
    if np.any(norms == 0):
        return 0.0
    corr = (z @ z.T) / np.outer(norms, norms)
    return float(corr[np.triu_indices(repeats, 1)].mean())


# ------------------------------------------------------------------------------------ whole substrate

def characterize_substrate(substrate, frames: int = 2000, batch: int = 4, amplitude: float = 0.5,
                           hold: int = 1, seed: int = 0, shared_input: bool = True, **options) -> dict:
    """All metrics of ``substrate``, driving it with generated input, one independent input per
    stimulating electrode.

    Args:
        frames: frames per trial of the capacity run (``batch`` trials run at once and are pooled).
        shared_input: with several inputs, also measure under one input shared by every electrode
            (doubles the time).
        options: ``capacities`` options, plus ``rank_tol`` and ``n_streams`` for ``ranks``.
    Returns:
        the ``capacities`` dict plus ``kernel_rank``, ``generalization_rank``, ``n_streams``,
        ``consistency``, ``frame_s`` (seconds per frame, ``hold * dt``), with several inputs
        ``shared_input`` (the same metrics with one input shared by every electrode), ``seconds`` (wall
        time of the whole characterisation) and ``part_seconds`` (``{"independent": s}``, with
        ``"shared_input"`` when measured).
    """
    rank_options = {k: options.pop(k) for k in ("rank_tol", "n_streams") if k in options}
    conventions = {"independent": True}
    if shared_input and substrate.n_inputs > 1:
        conventions["shared_input"] = False
    runs, seconds = {}, {}
    for name, independent in conventions.items():
        t0 = time.perf_counter()
        runs[name] = _metrics(substrate, frames, batch, amplitude, hold, seed, independent, dict(options),
                              rank_options)
        seconds[name] = time.perf_counter() - t0
    result = runs["independent"]
    if "shared_input" in runs:
        result["shared_input"] = runs["shared_input"]
    result["frame_s"] = hold * float(substrate.dt)
    result["part_seconds"] = seconds
    result["seconds"] = sum(seconds.values())
    return result


def _metrics(substrate, frames, batch, amplitude, hold, seed, independent: bool, options: dict,
             rank_options: dict) -> dict:
    """Capacities, ranks and consistency under one input convention (see ``characterize_substrate``)."""
    # independent streams for the three experiments (each: its input, and the substrate's noise from
    # the stream's children, see reservoir.streams); none is the substrate's weight stream SeedSequence(seed)
    capacity_seed, rank_seed, consistency_seed = np.random.SeedSequence(seed).spawn(3)
    u = random_input(np.random.default_rng(capacity_seed), batch, frames, _inputs_of(substrate, independent))
    result = capacities(u, drive(substrate, u, amplitude, hold, capacity_seed), **options)
    result.update(ranks(substrate, amplitude=amplitude, hold=hold, seed=rank_seed, independent=independent,
                        **rank_options))
    result["consistency"] = consistency(substrate, amplitude=amplitude, hold=hold, seed=consistency_seed,
                                        independent=independent)
    return result


def named_substrate(name: str, size: int | None = None, seed: int = 0):
    """Registered substrate ``name`` with its constructor's default number of inputs (1 if it has none),
    and the registry's ``samples_per_frame`` it is held for: ``(substrate, hold)``."""
    entry = substrate_entry(name)
    default_inputs = inspect.signature(entry.cls).parameters["n_inputs"].default
    n_inputs = 1 if default_inputs is inspect.Parameter.empty else int(default_inputs)
    return make_substrate(name, n_inputs, size=size, seed=seed), entry.samples_per_frame


def characterize_named(name: str, size: int | None = None, seed: int = 0, **options) -> dict:
    """Build registered substrate ``name`` (``named_substrate``) and characterise it
    (``characterize_substrate``).  Adds ``substrate`` (its ``describe()``) to the result."""
    substrate, hold = named_substrate(name, size, seed)
    result = characterize_substrate(substrate, hold=hold, seed=seed, **options)
    result["substrate"] = substrate.describe()
    return result


# --------------------------------------------------------------------------- characteristic measurements

def characteristic_parts(substrate) -> tuple[str, ...]:
    """The characteristic measurements ``substrate`` can show (module docstring): ``"impedance"`` and
    ``"iv_loops"`` when it keeps ``interface_current_A``, ``"bursts"`` when its outputs are spike counts."""
    parts = ("impedance", "iv_loops") if hasattr(substrate, "interface_current_A") else ()
    return parts + (("bursts",) if getattr(substrate, "output", None) == "spikes" else ())


def impedance_freqs_hz(dt: float) -> np.ndarray:
    """``(IMPEDANCE_POINTS,)`` log-spaced frequencies (Hz) from ``IMPEDANCE_LOW_HZ`` to
    ``IMPEDANCE_HIGH_NYQUIST`` of the Nyquist frequency of sample period ``dt`` (seconds)."""
    return np.geomspace(IMPEDANCE_LOW_HZ, IMPEDANCE_HIGH_NYQUIST * 0.5 / dt, IMPEDANCE_POINTS)


def spontaneous_bursts(substrate, seed: int = 0, seconds: float = SPONTANEOUS_S) -> dict:
    """Network bursts of ``substrate``'s spontaneous spike counts (``experiments.bursts.detect_bursts``):
    no input for ``SPONTANEOUS_WASHOUT_S + seconds``, the washout dropped.  Adds ``raster``
    ``(steps, n_outputs)`` (counts per recording electrode and sample), ``unit`` (``"electrode"``) and
    ``dt_s`` (sample period, seconds)."""
    washout = int(round(SPONTANEOUS_WASHOUT_S / substrate.dt))
    steps = washout + int(round(seconds / substrate.dt))
    substrate.reset(seed)
    raster = np.asarray(substrate.run(np.zeros((1, steps, substrate.n_inputs))), dtype=np.float64)[0, washout:]
    result = detect_bursts(raster, substrate.dt)
    result.update(raster=raster, unit="electrode", dt_s=float(substrate.dt))
    return result


def measure_parts(substrate, parts, amplitude: float = 0.5, seed: int = 0, periods_s=SWEEP_PERIODS_S,
                  spontaneous_s: float = SPONTANEOUS_S) -> dict:
    """Run the characteristic measurements ``parts`` (of ``characteristic_parts``) on ``substrate``:
    I-V sweeps of ``amplitude`` volts and periods ``periods_s`` (seconds), ``spontaneous_s`` seconds of
    spontaneous activity.

    Returns ``{part: result}`` with the arrays the plots need, each with ``seconds`` (its wall time):
    ``impedance``: ``impedance_spectrum``'s dict with ``amplitude_V``; ``iv_loops``: ``iv_loops``' dict
    with ``amplitude_V``; ``bursts``: ``spontaneous_bursts``'.  ``parts_json`` makes it JSON.
    """
    measured = {}
    for part in parts:
        t0 = time.perf_counter()
        if part == "impedance":
            result = impedance_spectrum(substrate, impedance_freqs_hz(substrate.dt), IMPEDANCE_AMPLITUDE_V,
                                        seed=seed)
            result["amplitude_V"] = IMPEDANCE_AMPLITUDE_V
        elif part == "iv_loops":
            result = iv_loops(substrate, periods_s, amplitude_V=amplitude, cycles=SWEEP_CYCLES, seed=seed)
            result["amplitude_V"] = amplitude
        elif part == "bursts":
            result = spontaneous_bursts(substrate, seed, spontaneous_s)
        else:
            raise PrclabError(f"characterise: unknown measurement {part!r}")
        result["seconds"] = time.perf_counter() - t0
        measured[part] = result
    return measured


def parts_json(measured: dict) -> dict:
    """``measure_parts``' results as JSON values: the impedance as ``freq_hz``, ``magnitude_ohm``,
    ``phase_deg`` lists, the I-V loops as ``periods_s`` and ``areas_VA`` (the loops themselves and the
    burst raster stay out), arrays as lists (``None`` where a statistic is undefined)."""
    out = {}
    for part, result in measured.items():
        drop = {"impedance": ("z",), "iv_loops": ("loops",), "bursts": ("raster",)}[part]
        out[part] = {k: (np.asarray(v).tolist() if isinstance(v, np.ndarray) else v)
                     for k, v in result.items() if k not in drop}
    return out


def plot_files(name: str, parts, folder) -> dict[str, list[Path]]:
    """PNG paths written into ``folder`` for substrate ``name``, per entry of ``parts``: ``"memory_curve"``
    (``plot_memory_curve``) or a measurement (``plot_parts``; the impedance: Nyquist and Bode)."""
    folder = Path(folder)
    names = {"memory_curve": ["memory_curve"], "impedance": ["nyquist", "bode"], "iv_loops": ["iv_loops"],
             "bursts": ["raster"]}
    return {part: [folder / f"{stem}_{name}.png" for stem in names[part]] for part in parts}


def plot_parts(measured: dict, files: dict, title: str = "") -> None:
    """Draw each measurement of ``measured`` (``measure_parts``) into its ``files`` (``plot_files``)."""
    for part, result in measured.items():
        paths = files[part]
        if part == "impedance":
            nyquist_figure(result, f"{title} impedance, Nyquist").savefig(paths[0])
            bode_figure(result, f"{title} impedance, Bode").savefig(paths[1])
        elif part == "iv_loops":
            plot_iv_loops(result, paths[0], f"{title} I-V loops, {result['amplitude_V']:g} V triangle")
        else:
            plot_raster(result["raster"], result["dt_s"], result, paths[0], f"{title} spontaneous activity",
                        result["unit"])


def plan(name: str, size: int | None = None, seed: int = 0, impedance_only: bool = False):
    """What ``prclab characterize`` measures on registered substrate ``name``: ``(substrate, hold, parts)``,
    ``parts`` ``("memory_curve", *characteristic_parts(substrate))``, or ``("impedance",)`` with
    ``impedance_only``.  Raises ``PrclabError`` when the impedance is asked of a substrate without
    electrode currents."""
    substrate, hold = named_substrate(name, size, seed)
    if not impedance_only:
        return substrate, hold, ("memory_curve",) + characteristic_parts(substrate)
    if "impedance" not in characteristic_parts(substrate):
        raise PrclabError(f"characterize --impedance: substrate {name!r} keeps no electrode currents "
                          "(interface_current_A), so it has no impedance to measure")
    return substrate, hold, ("impedance",)


def characterize_plan(substrate, hold: int, parts, seed: int = 0, files: dict | None = None, title: str = "",
                      **options) -> dict:
    """Measure ``parts`` (of ``plan``) on ``substrate`` and draw them into ``files`` (``plot_files``; none
    drawn if None).

    Returns a JSON-ready dict: with ``"memory_curve"`` the ``characterize_substrate`` metrics (``options``
    go there) and ``substrate`` (its ``describe()``); per measurement its ``parts_json`` entry
    (``impedance``, ``iv_loops``, ``bursts``); ``part_seconds`` (wall time per part, the metrics' per input
    convention), ``seconds`` (their sum) and, with ``files``, ``plots`` (the PNGs written; ``plot``: the
    memory curve's).
    """
    result = {}
    if "memory_curve" in parts:
        result = characterize_substrate(substrate, hold=hold, seed=seed, **options)
    measured = measure_parts(substrate, [p for p in parts if p != "memory_curve"], seed=seed)
    result["substrate"] = substrate.describe()
    result.update(parts_json(measured))
    seconds = result.pop("part_seconds", {})
    seconds.update({part: float(m["seconds"]) for part, m in measured.items()})
    result["part_seconds"], result["seconds"] = seconds, sum(seconds.values())
    if files is not None:
        if "memory_curve" in files:
            result["plot"] = str(files["memory_curve"][0])
            plot_memory_curve(result, result["plot"], title=title)
        plot_parts(measured, files, title)
        result["plots"] = [str(path) for paths in files.values() for path in paths]
    return result


def plot_memory_curve(result: dict, path, title: str = "") -> None:
    """Save the memory curve ``r_k^2`` over delay ``k`` of a result as a PNG."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend is left as it is

    curve = np.asarray(result["memory_curve"])
    fig = Figure(figsize=(6, 3.6), dpi=120)
    ax = fig.subplots()
    ax.plot(np.arange(len(curve)), curve, marker=".", lw=1)
    ax.axhline(result["threshold"], color="grey", ls=":", lw=1, label="bias threshold")
    frame = f" of {result['frame_s']:g} s" if "frame_s" in result else ""
    ax.set_xlabel(f"delay k (frames{frame})")
    several = result.get("n_inputs", 1) > 1
    ax.set_ylabel("r² of u(t-k), summed over electrodes" if several else "r² of u(t-k) reconstruction")
    ax.set_ylim(-0.02, max(1.02, 1.05 * float(curve.max(initial=0.0))))
    ax.set_title(f"{title}  MC = {result['memory_capacity']:.2f}".strip())
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path)


def format_result(result: dict) -> str:
    """The metrics and measurements of a ``characterize_*`` result as aligned text lines."""
    lines = _metric_lines(result) if "memory_curve" in result else []
    if "impedance" in result:
        z = result["impedance"]
        lines.append(f"impedance            frequency (Hz)   |Z| (ohm)   phase (deg)  "
                     f"({1e3 * z['amplitude_V']:g} mV sine, electrode 0)")
        lines += [f"                     {f:14.4g} {m:11.4g} {p:13.1f}"
                  for f, m, p in zip(z["freq_hz"], z["magnitude_ohm"], z["phase_deg"])]
    if "iv_loops" in result:
        loops = result["iv_loops"]
        areas = ", ".join(f"{p:g} s {1e6 * a:.3g}" for p, a in zip(loops["periods_s"], loops["areas_VA"]))
        lines.append(f"I-V loop area        {areas}  (uA V, {loops['amplitude_V']:g} V triangle, electrode 0)")
    if "bursts" in result:
        lines.append(f"network bursts       {burst_summary(result['bursts'], result['bursts']['unit'])}  "
                     "(spontaneous)")
    parts = ", ".join(f"{part} {s:.2f}" for part, s in result.get("part_seconds", {}).items())
    lines.append(f"seconds              {result['seconds']:.2f}" + (f"  ({parts})" if parts else ""))
    if "plots" in result:
        lines.append(f"plots                {', '.join(result['plots'])}")
    return "\n".join(lines)


def _metric_lines(result: dict) -> list[str]:
    """Text lines of the reservoir metrics of a ``characterize_substrate`` result."""
    nonlinear = "  ".join(f"degree {d}: {c:.2f}" for d, c in result["nonlinear_capacity"].items())
    lines = [f"memory capacity      {result['memory_capacity']:.2f}  (delays 0-{len(result['memory_curve']) - 1}, "
             f"{result['n_features']} response channels, bias threshold r2 < {result['threshold']:.4f})",
             f"nonlinear capacity   {nonlinear}",
             f"total capacity       {result['total_capacity']:.2f}",
             f"kernel rank          {result['kernel_rank']} of {result['n_streams']} streams",
             f"generalization rank  {result['generalization_rank']} of {result['n_streams']} streams",
             f"consistency          {result['consistency']:.3f}  (mean pairwise correlation of repeats)"]
    if result.get("n_inputs", 1) > 1:
        lines[0] += f", independent inputs on {result['n_inputs']} electrodes"
    if "shared_input" in result:
        shared = result["shared_input"]
        lines.append(f"shared input         memory {shared['memory_capacity']:.2f}, total "
                     f"{shared['total_capacity']:.2f}, kernel rank {shared['kernel_rank']}, consistency "
                     f"{shared['consistency']:.3f}  (one input on every electrode)")
    return lines
