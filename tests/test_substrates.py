"""Physics and bookkeeping of the simulated substrates: ESN core, potato, hydrogel, organoid.

Physics: the potato's double layer charges with its documented time constant over a Faradaic DC, the hydrogel's
electrode conductance traces a pinched hysteresis loop that widens as the sweep slows towards its
memory, the organoid fires first near the stimulating electrode and bursts on its own.  Bookkeeping:
same seed -> same output, state saved with numpy.savez and loaded without pickle resumes exactly,
a batch equals its trials run one by one.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from prclab.reservoir import (EchoStateNetwork, HydrogelModel, OrganoidModel, PotatoModel, Substrate,
                       make_substrate)


def naive_esn(esn: EchoStateNetwork, u: np.ndarray) -> np.ndarray:
    """Reference: the leaky tanh update, one trial and one step at a time, in float64."""
    w = esn.w_t.T.astype(np.float64)
    w_in = esn.w_in_t.T.astype(np.float64)
    b, a = esn.bias.astype(np.float64), esn.leak.astype(np.float64)
    out = np.zeros(u.shape[:2] + (w.shape[0],))
    for i in range(u.shape[0]):
        x = np.zeros(w.shape[0])
        for t in range(u.shape[1]):
            x = (1 - a) * x + a * np.tanh(w @ x + w_in @ u[i, t] + b)
            out[i, t] = x
    return out


def small_models():
    """One small instance of each substrate, with noise, keyed by name."""
    return {
        "esn": lambda: EchoStateNetwork(3, units=60, noise=0.01, seed=1),
        "potato": lambda: PotatoModel(n_inputs=3, n_outputs=4, nodes=8, seed=1),
        "hydrogel": lambda: HydrogelModel(n_inputs=3, n_outputs=4, grid=12, seed=1),
        "organoid": lambda: OrganoidModel(n_inputs=3, n_outputs=8, neurons=200, seed=1),
    }


def drive(n_inputs: int, batch: int = 2, steps: int = 300, seed: int = 0) -> np.ndarray:
    """Random pulses of up to 0.5 V, held 10 samples: ``(batch, steps, n_inputs)``."""
    rng = np.random.default_rng(seed)
    held = rng.uniform(-0.5, 0.5, (batch, steps // 10 + 1, n_inputs)).repeat(10, axis=1)
    return held[:, :steps]


# ---- ESN core --------------------------------------------------------------------------------------

@pytest.mark.parametrize("threads", [1, 2])
def test_esn_float64_matches_naive_loop(threads):
    esn = EchoStateNetwork(13, units=80, dtype="float64", input_scaling=2.0, threads=threads, seed=3)
    u = np.random.default_rng(1).normal(0, 1, (40, 30, 13))
    np.testing.assert_allclose(esn.run(u), naive_esn(esn, u), rtol=0, atol=1e-12)


def test_esn_float32_fast_tanh_matches_naive_loop():
    esn = EchoStateNetwork(13, units=200, dtype="float32", input_scaling=2.0, threads=2, seed=3)
    u = np.random.default_rng(1).normal(0, 1, (64, 30, 13))   # 32 x 200 rows per thread: exp path
    np.testing.assert_allclose(esn.run(u), naive_esn(esn, u), rtol=0, atol=2e-5)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_esn_lengths_equal_individual_runs(dtype):
    rng = np.random.default_rng(2)
    lengths = rng.integers(0, 40, 37)
    lengths[5] = 40
    u = rng.normal(0, 1, (37, 40, 5))
    esn = EchoStateNetwork(5, units=50, dtype=dtype, threads=2)
    y = esn.run(u, lengths=lengths)
    final = esn.state["x"]
    tol = 1e-12 if dtype == "float64" else 1e-5
    for i, n in enumerate(lengths):
        esn.reset()
        alone = esn.run(u[i:i + 1, :n])[0]
        np.testing.assert_allclose(y[i, :n], alone, atol=tol)
        assert not y[i, n:].any()
        np.testing.assert_allclose(final[i], alone[-1] if n else 0.0, atol=tol)


# ---- potato ----------------------------------------------------------------------------------------

def test_potato_step_current_decays_with_double_layer_time_constant_to_faradaic_dc():
    # one homogeneous electrode, a small step: C_dl charges through R_access || R_ct; Faradaic DC remains
    potato = PotatoModel(n_inputs=1, n_outputs=1, outputs="current", noise_V=0, drift_V_per_sqrt_s=0,
                         rest_drift_V_per_sqrt_s=0,
                         c_dl_log_sd=0, i0_log_sd=0, alpha_spread=0, dt=1e-4)
    derived = potato.derived()
    tau, r_ct = derived["tau_dl_s"][0], derived["r_ct_ohm"][0]
    step = np.zeros((1, 3000, 1))
    step[:, 100:] = 1e-3
    potato.reset(0)
    current = potato.run(step)[0, :, 0] / potato.transimpedance_ohm
    t = (np.arange(len(current)) - 100) * potato.dt
    dc = 1e-3 / (potato.m_ohm[0, 0] + r_ct)
    fit = (t > 0.2 * tau) & (t < 3 * tau)
    slope = np.polyfit(t[fit], np.log(current[fit] - dc), 1)[0]
    assert -1 / slope == pytest.approx(tau, rel=0.05)
    assert current[-1] == pytest.approx(dc, rel=0.02)          # DC is not blocked: charge transfer


def test_potato_cathodic_current_is_mass_transport_limited_anodic_is_not():
    potato = PotatoModel(n_inputs=1, n_outputs=1, outputs="current", noise_V=0, drift_V_per_sqrt_s=0,
                         rest_drift_V_per_sqrt_s=0,
                         i0_log_sd=0, alpha_spread=0)
    steady = {}
    for volts in (-2.0, -1.0, 1.0):
        potato.reset(0)
        steady[volts] = potato.run(np.full((1, 400, 1), volts))[0, -1, 0] / potato.transimpedance_ohm
    limit = potato.get_params()["limiting_current_A"]
    assert steady[-1.0] == pytest.approx(-limit, rel=0.05)
    assert steady[-2.0] == pytest.approx(-limit, rel=0.01)        # twice the volts, the same current
    assert steady[1.0] > 5 * limit                                # metal dissolution has no such limit


# ---- hydrogel --------------------------------------------------------------------------------------

def triangle(period_s: float, cycles: int, dt: float, amplitude: float = 1.0) -> np.ndarray:
    phase = (np.arange(int(round(period_s * cycles / dt))) * dt / period_s) % 1.0
    return amplitude * np.where(phase < 0.25, 4 * phase, np.where(phase < 0.75, 2 - 4 * phase, 4 * phase - 4))


def loop_area(v: np.ndarray, i: np.ndarray) -> float:
    """Area of a pinched I-V loop: both lobes, each taken positive (they circulate oppositely)."""
    dv, i_mid, v_mid = np.diff(v), (i[1:] + i[:-1]) / 2, (v[1:] + v[:-1]) / 2
    return abs(np.sum((i_mid * dv)[v_mid > 0])) + abs(np.sum((i_mid * dv)[v_mid < 0]))


def hydrogel_loop(period_s: float) -> tuple[np.ndarray, np.ndarray]:
    gel = HydrogelModel(n_inputs=1, n_outputs=2, grid=12, noise_V=0, drift_V_per_sqrt_s=0)
    v = triangle(period_s, 3, gel.dt)
    gel.reset(0)
    gel.run(v[None, :, None])
    last = len(v) // 3
    return v[-last:], gel.interface_current_A[0, -last:, 0]


def test_hydrogel_memristive_hysteresis_widens_with_slower_sweep():
    areas = {}
    for period in (0.5, 5.0):
        v, i = hydrogel_loop(period)
        areas[period] = loop_area(v, i)
        # pinched: where the sweep crosses 0 V the current is a small fraction of its peak
        assert np.abs(i[np.argmin(np.abs(v))]) < 0.02 * np.abs(i).max()
    assert areas[0.5] > 0
    assert areas[5.0] > 5 * areas[0.5]                       # below the ~20 s peak (module docstring)


def test_hydrogel_conductance_still_changes_seconds_into_a_constant_voltage():
    u = np.zeros((1, 3000, 1))
    u[:, 100:] = 1.0                                         # anodic: Cl- is taken from the electrode cell
    gel = HydrogelModel(n_inputs=1, n_outputs=4, grid=12, noise_V=0, drift_V_per_sqrt_s=0)
    gel.run(u)
    current = gel.interface_current_A[0, :, 0]
    # seconds-scale memory, against ms for the potato (weak: migration brings back 60 % of the Cl-)
    assert current[-1] < 0.97 * current[150]
    assert current[-1] > 0.5 * current[150]                  # the bath's exchange bounds the depletion


# ---- organoid --------------------------------------------------------------------------------------

def test_organoid_fires_first_near_the_stimulating_electrode():
    org = OrganoidModel(n_inputs=1, n_outputs=63)
    u = np.zeros((1, 5000, 1))
    u[0, ::200, 0] = 0.5                                    # 0.5 V pulses at 5 Hz
    org.reset(3)
    y = org.run(u)[0]
    dist = np.linalg.norm(org.rec_positions_um - org.stim_positions_um[0], axis=1)
    window = np.zeros(len(y), bool)
    for k in range(0, len(y), 200):
        window[k:k + 5] = True     # 5 ms after each pulse: the direct response (polysynaptic: 10-50 ms)
    near = y[window][:, dist <= 300].sum(axis=0).mean()
    far = y[window][:, dist >= 800].sum(axis=0).mean()
    assert near > 3 * far


def test_organoid_local_field_dips_with_nearby_spikes():
    spiking = OrganoidModel(n_inputs=1, n_outputs=16)
    field = OrganoidModel(n_inputs=1, n_outputs=16, output="lfp", noise_V=0)
    u = np.zeros((1, 3000, 1))
    spiking.reset(2)
    field.reset(2)
    counts, lfp = spiking.run(u)[0], field.run(u)[0]   # same seed: the same spikes underneath
    assert np.all(lfp <= 0) and lfp.min() < -1e-6          # volts, negative-going
    busy = counts.sum(axis=1) > np.percentile(counts.sum(axis=1), 95)
    assert lfp[busy].mean() < 3 * lfp[~busy].mean()


def test_organoid_trials_vary_with_seed():
    org = OrganoidModel(n_inputs=2, n_outputs=8, neurons=300)
    u = drive(2, batch=1, steps=1000)
    org.reset(0)
    a = org.run(u)
    org.reset(1)
    b = org.run(u)
    assert a.sum() > 0 and not np.array_equal(a, b)


# ---- every substrate ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(small_models()))
def test_contract_and_description(name):
    model = small_models()[name]()
    assert isinstance(model, Substrate)
    assert json.loads(json.dumps(model.describe()))["model"] == name


@pytest.mark.parametrize("name", ["potato", "hydrogel", "organoid"])
def test_registry_builds_each_model(name):
    model = make_substrate(name, 13)
    assert model.n_inputs == 13 and model.describe()["model"] == name


@pytest.mark.parametrize("name", list(small_models()))
def test_same_seed_same_output(name):
    model = small_models()[name]()
    u = drive(model.n_inputs)
    model.reset(7)
    a = model.run(u)
    model.reset(7)
    b = model.run(u)
    np.testing.assert_array_equal(a, b)
    assert np.std(a) > 0


@pytest.mark.parametrize("name", list(small_models()))
def test_state_round_trip_resumes_identically(name):
    model = small_models()[name]()
    u = drive(model.n_inputs, steps=400)
    model.reset(5)
    model.run(u[:, :155])
    buf = io.BytesIO()
    np.savez(buf, **model.state)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as saved:
        state = {k: saved[k] for k in saved.files}
    expected = model.run(u[:, 155:])
    fresh = small_models()[name]()
    fresh.reset(99)
    fresh.load_state(state)
    np.testing.assert_array_equal(fresh.run(u[:, 155:]), expected)


def noise_free(name):
    return {
        "esn": lambda: EchoStateNetwork(3, units=60, dtype="float64", seed=1),
        "potato": lambda: PotatoModel(n_inputs=3, n_outputs=4, nodes=8, noise_V=0, drift_V_per_sqrt_s=0,
                                      rest_drift_V_per_sqrt_s=0,
                                      outputs="both", seed=1),
        "hydrogel": lambda: HydrogelModel(n_inputs=3, n_outputs=4, grid=12, noise_V=0,
                                          drift_V_per_sqrt_s=0),
        "organoid": lambda: OrganoidModel(n_inputs=3, n_outputs=8, neurons=200, noise_exc_mV=0,
                                          noise_inh_mV=0, seed=1),
    }[name]()


@pytest.mark.parametrize("name", list(small_models()))
def test_batch_equals_individual_runs(name):
    model = noise_free(name)
    u = drive(model.n_inputs, batch=3, steps=400)
    if name == "organoid":
        u *= 4                                              # noise-free neurons need a real push
    model.reset(0)
    batched = model.run(u)
    assert np.std(batched) > 0
    for i in range(len(u)):
        model.reset(0)
        np.testing.assert_allclose(batched[i], model.run(u[i:i + 1])[0], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", list(small_models()))
def test_streaming_in_odd_blocks_equals_one_run(name):
    model = noise_free(name)
    u = drive(model.n_inputs, batch=2, steps=400)
    if name == "organoid":
        u *= 4
    model.reset(0)
    whole = model.run(u)
    model.reset(0)
    parts = [model.run(u[:, a:b]) for a, b in ((0, 1), (1, 156), (156, 157), (157, 400))]
    np.testing.assert_allclose(np.concatenate(parts, axis=1), whole, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name,params", [("potato", {"nodes": 0}), ("esn", {"leak": float("nan")}),
                                         ("potato", {"c_dl_F": float("inf")}),
                                         ("potato", {"metals": "unobtainium"})])
def test_degenerate_substrate_parameters_are_one_line_errors(name, params):
    from prclab.errors import PrclabError
    from prclab.reservoir import make_substrate

    with pytest.raises(PrclabError, match=f"substrate '{name}'"):
        make_substrate(name, 3, **params)
