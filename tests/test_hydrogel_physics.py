"""Physics of the Nernst-Planck hydrogel: charge conservation, electroneutrality, the I-V loop's
frequency dependence, memory visible in the outputs, bending from differential swelling (Timoshenko's
bilayer, none for a symmetric swelling) with de-swelling slower than swelling; the time-series task at
the gel's own time scale, its windows chosen on training steps only."""

import numpy as np
import pytest

from prclab.errors import PrclabError
from prclab.experiments.hysteresis import iv_loops, plot_iv_loops
from prclab.experiments.timeseries import choose_window, delay_features, run_regression_task
from prclab.reservoir import HydrogelModel


def quiet_gel(**params) -> HydrogelModel:
    return HydrogelModel(**{"n_inputs": 3, "n_outputs": 4, "grid": 12, "noise_V": 0.0,
                            "drift_V_per_sqrt_s": 0.0, **params})


def driven_gel() -> HydrogelModel:
    gel = quiet_gel()
    u = np.random.default_rng(0).uniform(-1, 1, (2, 60, 3)).repeat(50, axis=1)    # 3 s, 50 ms holds
    gel.run(u)
    return gel


def test_current_continuity_the_bath_returns_the_net_electrode_current():
    step = driven_gel().last_step
    net = step["electrode_current_A"].sum(axis=1)
    assert np.all(np.abs(net) > 1e-8)                      # the electrodes alone do not balance
    np.testing.assert_allclose(step["bath_current_A"], net, rtol=1e-6, atol=1e-12)


def test_electroneutrality_holds_while_both_species_move():
    gel = driven_gel()
    na, cl = gel.state["c_mM"]
    assert np.abs(na - gel.c_bath).max() > 1e-3 * gel.c_bath          # concentrations did change
    assert np.abs(na - cl).max() < 1e-8 * gel.c_bath


def test_conductivity_follows_from_concentration_and_diffusion():
    derived = quiet_gel().derived()
    # sigma = F^2/(RT) (D_na + D_cl) c for 10 mM, D 1.0e-9 and 1.5e-9 m^2/s
    assert derived["conductivity_S_per_m"] == pytest.approx(96485.33 * 2.5e-9 * 10 / 0.0257)


def test_iv_loop_area_peaks_near_the_gel_memory_time():
    gel = HydrogelModel(n_inputs=1, n_outputs=2, grid=12, noise_V=0, drift_V_per_sqrt_s=0, dt=0.1,
                        grid_step_s=0.2)
    # memory ~ 1/(1/tau_x + k) = 3.3 s (module docstring): sweeps of 2, 30 and 300 s span 2 pi tau
    result = iv_loops(gel, [2.0, 30.0, 300.0], cycles=2)
    fast, middle, slow = result["areas_VA"]
    assert middle > 2 * fast and middle > 2 * slow


def test_iv_loops_rejects_a_substrate_without_currents_and_plots(tmp_path):
    class Plain:
        n_inputs, dt = 1, 0.1

        def reset(self, seed=None):
            pass

        def run(self, u):
            return u

    with pytest.raises(PrclabError):
        iv_loops(Plain(), [1.0])
    gel = HydrogelModel(n_inputs=1, n_outputs=2, grid=12, dt=0.05)
    plot_iv_loops(iv_loops(gel, [1.0, 2.0], cycles=1), tmp_path / "loops.png")
    assert (tmp_path / "loops.png").stat().st_size > 0


def test_outputs_remember_the_input_seconds_earlier():
    gel = quiet_gel(n_inputs=1, dt=0.01)
    u = np.full((2, 600, 1), 0.5)
    u[0, :200], u[1, :200] = 1.0, -1.0                     # 2 s of different history, then 4 s the same
    y = gel.run(u)
    late = y[:, 400]                                       # 2 s after the histories ended
    assert np.abs(late[0] - late[1]).max() > 0.02 * np.abs(late).max()


def swollen_state(gel: HydrogelModel, swell: np.ndarray) -> dict:
    """The gel at rest with the bath (one row) but for the volumetric swelling ``swell`` ``(g, g)``."""
    gel.reset(0)
    gel.run(np.zeros((1, 1, gel.n_inputs)))
    state = gel.state
    state["swell"] = swell[None].copy()
    return state


def test_bending_of_a_two_half_strain_step_is_timoshenkos_bilayer():
    gel = quiet_gel(outputs="bending", n_markers=3, angle_noise_deg=0.0)
    g, e0 = gel.grid, 0.02
    swell = np.zeros((g, g))
    swell[:, g // 2:] = e0                                 # right half swollen
    gel.load_state(swollen_state(gel, swell))
    angles = gel.run(np.zeros((1, 1, 3)))[0, 0]
    # two equal layers: kappa = 3 (eps_r - eps_l) / (2 W), eps = e / 3; the angle grows with the length
    kappa_w = 1.5 * e0 / 3
    np.testing.assert_allclose(angles, np.degrees(kappa_w * np.array([1, 2, 3]) / 3), rtol=1e-9)


def test_uniform_or_mirror_symmetric_swelling_does_not_bend():
    gel = quiet_gel(outputs="bending", angle_noise_deg=0.0)
    g = gel.grid
    profile = np.random.default_rng(1).uniform(0.0, 0.05, (g, g))
    for swell in (np.full((g, g), 0.05), profile + profile[:, ::-1]):
        gel.load_state(swollen_state(gel, swell))
        angles = gel.run(np.zeros((1, 100, 3)))            # 0.1 s: one lattice step, the strain relaxes
        assert np.abs(gel.state["swell"]).max() > 0.01
        assert np.abs(angles).max() < 1e-12
    swell = profile.copy()
    swell[:, : g // 2] = 0.0                               # the same profile on one side only bends
    gel.load_state(swollen_state(gel, swell))
    assert np.abs(gel.run(np.zeros((1, 1, 3)))).min() > 1e-3


def test_bending_follows_swelling_and_relaxes_slower_when_it_deswells():
    # a thick gel (bath exchange ~ 760 s) keeps the salt excess while the swelling follows it
    gel = quiet_gel(thickness_um=3000.0, dt=0.05, outputs="bending", angle_noise_deg=0.0)
    g = gel.grid
    state = swollen_state(gel, np.zeros((g, g)))
    salty = state["c_mM"].copy()
    salty[:, :, :, g // 2:] *= 1.05                        # 5 % more salt in the right half
    state["c_mM"] = salty
    gel.load_state(state)
    swelling = gel.run(np.zeros((1, 400, 3)))[0, :, -1]   # 20 s, tip angle
    state = gel.state
    state["c_mM"] = np.full_like(salty, gel.c_bath)        # salt back to the bath's: de-swelling
    gel.load_state(state)
    deswelling = gel.run(np.zeros((1, 400, 3)))[0, :, -1]

    def time_to(trace, frac):
        return np.argmax(np.abs(trace - trace[0]) >= frac * np.abs(trace[-1] - trace[0])) * gel.dt

    assert swelling[-1] > 0.1 and deswelling[-1] < 0.2 * deswelling[0]   # degrees: right swells, tip turns left
    # tau 2 s against 10 s (module docstring): the half-times differ about five-fold
    assert time_to(deswelling, 0.5) > 3 * time_to(swelling, 0.5)


def test_both_outputs_are_the_currents_then_the_marker_angles():
    u = np.random.default_rng(2).uniform(-0.5, 0.5, (2, 40, 3)).repeat(50, axis=1)
    currents, both = quiet_gel(), quiet_gel(outputs="both", angle_noise_deg=0.0)
    y, yb = currents.run(u), both.run(u)
    assert yb.shape == (2, 2000, currents.n_outputs + both.n_markers)
    np.testing.assert_array_equal(yb[:, :, :currents.n_outputs], y)
    np.testing.assert_array_equal(yb[:, :, currents.n_outputs:], both.bending_deg)
    assert np.abs(both.bending_deg[:, -1]).max() > 1e-4    # a driven gel bends (degrees)


def test_time_series_windows_are_chosen_on_the_training_steps_only():
    rng = np.random.default_rng(3)
    u = rng.uniform(-1, 1, 600)
    y = delay_features(u, 8)[:, 7] + 0.01 * rng.standard_normal(600)     # u(t - 7)
    train, test = slice(0, 400), slice(400, None)
    fit = choose_window(u, y, train, test)
    assert fit["features"] == "delays:10" and fit["nrmse"] < 0.1          # the shortest window holding t-7
    y[test] = rng.standard_normal(200)                                   # test targets do not move the choice
    assert choose_window(u, y, train, test)["features"] == "delays:10"


def test_the_gel_task_runs_at_the_gel_time_scale_and_reads_the_bending():
    result = run_regression_task("narma10", "hydrogel", size=12, n_train=100, n_test=20, washout=10)
    assert result["step_s"] == pytest.approx(1.0)                        # 1000 samples per step at 1 kHz
    params = result["substrate_params"]["params"]
    assert params["outputs"] == "both"
    assert np.isfinite([result[k] for k in ("nrmse", "baseline_nrmse", "quadratic_baseline_nrmse")]).all()
