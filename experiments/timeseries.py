"""Time-series regression tasks: a readout over time steps, scored by NRMSE beside a no-reservoir baseline.

- **NARMA-10** (Atiya & Parlos 2000): ``u(t)`` i.i.d. uniform in ``[0, 0.5]`` and
  ``y(t+1) = 0.3 y(t) + 0.05 y(t) Σ_{i=0..9} y(t-i) + 1.5 u(t-9) u(t) + 0.1``; the readout reads the
  response at ``t`` and predicts ``y(t+1)`` (it needs ten steps of memory and a product of inputs).
- **Mackey–Glass** (Mackey & Glass 1977) ``dx/dt = 0.2 x(t-τ) / (1 + x(t-τ)^10) - 0.1 x(t)``, τ = 17,
  integrated by 4th-order Runge–Kutta at ``dt = 0.1`` and sampled every time unit; one-step prediction:
  the input is ``x(t)``, the target ``x(t + 1)``.

The scalar input is mapped affinely to ``[-1, 1]`` (training range), multiplied by ``amplitude`` volts
and held on every input channel for one series step: the registry's ``samples_per_frame`` (10 ms at
1 kHz) or, for a substrate listed in ``STEP_S``, its own time scale (the hydrogel: 1 s, against its 3.3 s
electrode memory and 10 s de-swelling; a 10 ms step would leave it static).  The substrate is streamed
from ``reset`` block by block and read at the last sample of every step.

Three sides, each a standardised ridge readout of ``y`` (ridge parameter by leave-one-out on the
training steps) on a window of the last ``d`` steps: the **reservoir** on its response
``x(t), ..., x(t - d + 1)``; the **linear baseline** on the inputs ``u(t), ..., u(t - d + 1)`` (a
shift register, no reservoir); the **quadratic baseline** on those inputs and their squares.  Each side
chooses its ``d`` from the same ``DELAY_CANDIDATES`` by the lowest leave-one-out error on the
training steps (the rule of ``experiments.tasks.choose_features``); a window of more than
``n_train // 10`` features (fewer than ten training steps per coefficient) is not tried, on either
side, but the shortest always is.  After a washout the first ``n_train`` steps
train, the next ``n_test`` test: ``NRMSE = sqrt(mean((ŷ - y)²)) / std(y)`` on the test steps.

Measured (``prclab task --task narma10 --substrate hydrogel --seeds 3``, 4000 / 1000 steps of 1 s, mean
± standard error over seeds 0-2): the gel (currents and bending, window 20 steps, its 13 channels' cap)
0.385 ± 0.011, the linear baseline 0.382 ± 0.010 and the quadratic 0.383 ± 0.011 (both chose 50 steps);
the gel is worse by 0.0033 ± 0.0010 (paired).  Its currents are linear 20-step filters of the input
(R² 0.9994-0.9998) and its bending is noise-limited, so at ±0.5 V it is a linear fading memory
(``reservoir.hydrogel``).
"""

from __future__ import annotations

import time

import numpy as np

from prclab.errors import PrclabError
from prclab.reservoir.registry import make_substrate, substrate_entry

from prclab.readouts.ridge import RidgeReadout

#: ridge parameters tried, per training step (on standardised features)
RELATIVE_ALPHAS = 10.0 ** np.arange(-9, 2)
TASKS = ("narma10", "mackey-glass")
#: input amplitude (volts at u = ±1) and parameters per substrate unless given: the echo-state core's
#: defaults suit classification (leak 0.3, strong input); a time-series readout needs short, linear-
#: range memory (NARMA-10 NRMSE 0.17 here against 0.52 with the classification settings, 500 units);
#: the hydrogel is read as the cited device is, by its bending, beside its electrode currents
SUBSTRATE_DEFAULTS = {"esn": (0.1, {"leak_rate": 1.0}), "hydrogel": (0.5, {"outputs": "both"})}
DEFAULT_AMPLITUDE = 0.5
#: seconds per series step for a substrate driven at its own time scale (others: the registry's frame)
STEP_S = {"hydrogel": 1.0}
#: window lengths (steps) each side chooses from (up to ten times NARMA-10's order: its target carries
#: memory beyond 20 steps through the 0.3 y(t) term, and the leave-one-out error picks 50 steps on it)
DELAY_CANDIDATES = (1, 2, 5, 10, 20, 50, 100)
#: series steps streamed through the substrate per ``run`` call (bounds memory)
CHUNK_STEPS = 100


def narma10(n: int, seed: int | np.random.SeedSequence = 0) -> tuple[np.ndarray, np.ndarray]:
    """NARMA-10 input ``u`` ``(n,)`` in ``[0, 0.5]`` and target ``y`` ``(n,)`` (``y[t]`` uses ``u[..t-1]``).

    The recurrence occasionally diverges for an unlucky input; such a draw is replaced by the next
    generator draw (at most 100 tries).
    """
    rng = np.random.default_rng(seed)
    for _ in range(100):
        u = rng.uniform(0.0, 0.5, n)
        y = np.zeros(n)
        window = 0.0  # running sum of y[t-9 .. t]
        for t in range(9, n - 1):
            window += y[t] - (y[t - 10] if t >= 10 else 0.0)
            y[t + 1] = 0.3 * y[t] + 0.05 * y[t] * window + 1.5 * u[t - 9] * u[t] + 0.1
        if np.all(np.isfinite(y)) and np.abs(y).max() < 10:
            return u, y
    raise PrclabError(f"narma10: no bounded series of {n} steps from seed {seed}")


def mackey_glass(n: int, seed: int | np.random.SeedSequence = 0, tau: float = 17.0, dt: float = 0.1,
                 sample_every: float = 1.0, discard: float = 500.0) -> np.ndarray:
    """Mackey–Glass series ``(n,)`` sampled every ``sample_every`` time units after ``discard`` units.

    The constant initial history is ``1.2 + 0.1 * N(0, 1)`` drawn from ``seed``.
    """
    rng = np.random.default_rng(seed)
    lag, step = int(round(tau / dt)), int(round(sample_every / dt))
    total = int(round(discard / dt)) + n * step
    x = np.empty(total + lag + 1)
    x[:lag + 1] = 1.2 + 0.1 * rng.standard_normal()

    def f(xt, xd):
        return 0.2 * xd / (1.0 + xd ** 10) - 0.1 * xt

    for i in range(lag, lag + total):
        d0, d1 = x[i - lag], x[i - lag + 1]
        dm = 0.5 * (d0 + d1)  # delayed value half a step on (linear interpolation)
        k1 = f(x[i], d0)
        k2 = f(x[i] + 0.5 * dt * k1, dm)
        k3 = f(x[i] + 0.5 * dt * k2, dm)
        k4 = f(x[i] + dt * k3, d1)
        x[i + 1] = x[i] + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x[lag + int(round(discard / dt)) + step::step][:n]


def task_series(task: str, n: int, seed: int | np.random.SeedSequence = 0) -> tuple[np.ndarray, np.ndarray]:
    """Input ``u`` and target ``y`` ``(n,)`` of a named task; ``y[t]`` is predicted from ``u[..t]``."""
    if task == "narma10":
        u, y = narma10(n + 1, seed)
        return u[:-1], y[1:]
    if task == "mackey-glass":
        x = mackey_glass(n + 1, seed)
        return x[:-1], x[1:]
    raise PrclabError(f"unknown regression task {task!r}; known: {', '.join(TASKS)}")


def delay_features(u: np.ndarray, delays: int) -> np.ndarray:
    """``(n, delays * channels)`` matrix of ``u(t - k)``, ``k = 0 .. delays - 1`` (zeros before the start),
    for ``u`` ``(n,)`` or ``(n, channels)``; delay-major columns."""
    u = u.reshape(len(u), -1)
    out = np.zeros((len(u), delays, u.shape[1]))
    for k in range(delays):
        out[k:, k] = u[:len(u) - k]
    return out.reshape(len(u), -1)


def drive_steps(model, u: np.ndarray, amplitude: float, hold: int, seed) -> np.ndarray:
    """Stream ``amplitude * u`` ``(n,)`` through ``model`` (every input channel), each value held ``hold``
    samples, from ``model.reset(seed)``, ``CHUNK_STEPS`` steps per ``run``: the response at the last
    sample of every step, ``(n, n_outputs)``."""
    model.reset(seed)
    out = []
    for start in range(0, len(u), CHUNK_STEPS):
        chunk = np.repeat(amplitude * u[start:start + CHUNK_STEPS], hold)
        y = model.run(np.broadcast_to(chunk[None, :, None], (1, len(chunk), model.n_inputs)))
        out.append(np.asarray(y, dtype=np.float64)[0, hold - 1::hold])
    return np.concatenate(out)


def nrmse(prediction: np.ndarray, target: np.ndarray) -> float:
    """Root-mean-square error over the target's standard deviation."""
    return float(np.sqrt(np.mean((prediction - target) ** 2)) / np.std(target))


def choose_window(x: np.ndarray, y: np.ndarray, train: slice, test: slice,
                  candidates=DELAY_CANDIDATES) -> dict:
    """One side of a comparison: the window ``d`` of ``x`` ``(n,)`` or ``(n, channels)`` chosen on the
    training steps, and its test score.

    For each candidate ``d`` (at most ``n_train // 10`` features; the shortest is always tried) a
    standardised ridge readout on ``delay_features(x, d)[train]`` picks its ridge parameter by
    leave-one-out; the ``d`` with the lowest leave-one-out squared error wins (ties to the shorter).
    Returns ``features`` (``"delays:d"``), ``nrmse`` (test), ``loo_error`` (spec -> error), ``readout``
    and ``x`` (the chosen window's features, ``(n, d * channels)``).
    """
    n_train, channels = len(y[train]), x.reshape(len(x), -1).shape[1]
    tried = [d for d in sorted(candidates) if d * channels <= n_train // 10] or [min(candidates)]
    best, errors = None, {}
    for d in tried:
        features = delay_features(x, d)
        readout = RidgeReadout(alphas=tuple(RELATIVE_ALPHAS * n_train), standardize=True)
        readout.fit(features[train], y[train])
        errors[f"delays:{d}"] = float(np.min(readout.cv_errors_))
        if best is None or errors[f"delays:{d}"] < best["error"]:
            best = {"features": f"delays:{d}", "error": errors[f"delays:{d}"], "readout": readout, "x": features}
    return {"features": best["features"], "nrmse": nrmse(best["readout"].predict(best["x"][test]), y[test]),
            "loo_error": errors, "readout": best["readout"], "x": best["x"]}


def run_regression_task(task: str, substrate: str = "esn", size: int | None = None, seed: int = 0,
                        n_train: int = 4000, n_test: int = 1000, washout: int = 200,
                        step_s: float | None = None, delay_candidates=DELAY_CANDIDATES,
                        amplitude: float | None = None, substrate_params: dict | None = None) -> dict:
    """Drive ``substrate`` with task ``task`` and score ridge readouts over time steps (three sides).

    Args:
        task: ``narma10`` or ``mackey-glass``.
        size: substrate size (units / nodes / neurons); model default if None.
        seed: seed of the series and of the substrate's weights and noise.
        n_train, n_test, washout: steps used to train, to test, and discarded first.
        step_s: seconds each series step is held (``STEP_S``, else the registry's frame, if None).
        delay_candidates: windows (steps) each side chooses from (``choose_window``).
        amplitude: input volts at ``u = ±1`` after the affine map (``SUBSTRATE_DEFAULTS`` if None).
        substrate_params: model parameters, over ``SUBSTRATE_DEFAULTS``.
    Returns:
        JSON-able dict: ``nrmse``, ``baseline_nrmse``, ``quadratic_baseline_nrmse`` and each side's
        chosen ``features``, ``baseline_features``, ``quadratic_baseline_features`` (``delays:d``;
        ``feature_search``: candidates and leave-one-out errors), ``alpha`` (reservoir, per training
        step), ``step_s``, ``task``, ``n_train``, ``n_test``, ``substrate``, ``substrate_params``,
        ``seconds``, and for plots ``test_target``/``test_prediction`` (first 200 test steps).
    """
    start = time.perf_counter()
    if n_train < 10 or n_test < 10 or washout < 0:
        raise PrclabError(f"{task}: need n_train >= 10, n_test >= 10 and washout >= 0")
    entry = substrate_entry(substrate)
    # the series and the substrate's noise from independent children of SeedSequence(seed), which itself
    # draws the substrate's weights (reservoir.streams)
    series_seed, noise_seed = np.random.SeedSequence(seed).spawn(2)
    u, y = task_series(task, washout + n_train + n_test, series_seed)
    train, test = slice(washout, washout + n_train), slice(washout + n_train, None)
    lo, hi = u[train].min(), u[train].max()
    scaled = 2.0 * (u - lo) / max(hi - lo, 1e-12) - 1.0
    default_amplitude, default_params = SUBSTRATE_DEFAULTS.get(substrate, (DEFAULT_AMPLITUDE, {}))
    amplitude = default_amplitude if amplitude is None else amplitude
    params = {"seed": seed, **default_params, **(substrate_params or {})}
    model = make_substrate(substrate, 1, size=size, **params)
    step_s = STEP_S.get(substrate, entry.samples_per_frame * model.dt) if step_s is None else float(step_s)
    hold = int(round(step_s / model.dt))
    if hold < 1:
        raise PrclabError(f"{task}: step_s={step_s} s is shorter than the substrate's sample ({model.dt} s)")
    states = drive_steps(model, scaled, amplitude, hold, noise_seed)
    sides = {"": states, "baseline_": scaled, "quadratic_baseline_": np.stack([scaled, scaled ** 2], axis=1)}
    fits = {prefix: choose_window(x, y, train, test, delay_candidates) for prefix, x in sides.items()}
    fields = {}
    for prefix, fit in fits.items():
        fields[f"{prefix}nrmse"] = fit["nrmse"]
        fields[f"{prefix}features"] = fit["features"]
    reservoir = fits[""]
    return {
        "task": task, **fields,
        "baseline": "ridge on the last d inputs, d chosen on the training steps",
        "feature_search": {"candidates": [f"delays:{d}" for d in delay_candidates],
                           "rule": "lowest leave-one-out error on the training steps",
                           "loo_error": {prefix.rstrip("_") or "reservoir": fit["loo_error"]
                                         for prefix, fit in fits.items()}},
        "alpha": reservoir["readout"].alpha_ / n_train, "step_s": hold * model.dt,
        "n_train": n_train, "n_test": n_test, "washout": washout,
        "substrate": substrate, "substrate_params": model.describe(), "amplitude": amplitude,
        "test_target": y[test][:200].tolist(),
        "test_prediction": reservoir["readout"].predict(reservoir["x"][test][:200]).tolist(),
        "seconds": round(time.perf_counter() - start, 3),
    }
