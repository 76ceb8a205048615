"""Physics of the Nernst-Planck hydrogel: charge conservation, electroneutrality, the I-V loop's
frequency dependence, memory visible in the outputs, de-swelling slower than swelling."""

import numpy as np
import pytest

from prclab.errors import PrclabError
from prclab.experiments.hysteresis import iv_loops, plot_iv_loops
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


def test_deswelling_is_slower_than_swelling():
    # a thick gel (bath exchange ~ 760 s) keeps the osmotic excess while the swelling follows it
    gel = quiet_gel(thickness_um=3000.0, dt=0.05)
    g = gel.grid
    gel.run(np.zeros((1, 1, 3)))
    state = gel.state
    swollen = state["c_mM"].copy()
    swollen[:, :, :, : g // 2] *= 1.2                      # 20 % more salt in the left half
    state["c_mM"] = swollen
    gel.load_state(state)
    gel.run(np.zeros((1, 400, 3)))                         # 20 s
    swelling = gel.bending_rad[0]
    state = gel.state
    state["c_mM"] = np.full_like(swollen, gel.c_bath)
    gel.load_state(state)
    gel.run(np.zeros((1, 400, 3)))
    deswelling = gel.bending_rad[0]

    def time_to(trace, frac):
        return np.argmax(np.abs(trace - trace[0]) >= frac * np.abs(trace[-1] - trace[0]) ) * gel.dt

    assert swelling[-1] > 0 and deswelling[-1] < deswelling[0]
    assert time_to(deswelling, 0.5) > 3 * time_to(swelling, 0.5)
