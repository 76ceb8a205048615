"""The potato behaves like a potato between metal electrodes (reservoir/potato.py docstring): its small-
signal impedance has the electrode arc with the documented phase minimum, the Butler-Volmer electrodes
rectify (even harmonics grow with amplitude), Kirchhoff's laws hold at the interfaces and in the tissue,
the tissue is linear (superposition at small amplitude), dissimilar metals give a galvanic offset, the
thermal voltage and Arrhenius set the charge-transfer resistance, and the Debye branches follow Cole."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import lfilter

from prclab.errors import PrclabError
from prclab.experiments.impedance import bode_figure, impedance_spectrum, nyquist_figure
from prclab.reservoir import PotatoModel
from prclab.reservoir.potato import FARADAY_C_PER_MOL, GAS_J_PER_MOL_K, cole_branches

QUIET = dict(noise_V=0, drift_V_per_sqrt_s=0, rest_drift_V_per_sqrt_s=0)
HOMOGENEOUS = dict(c_dl_log_sd=0, i0_log_sd=0, alpha_spread=0)


def one_electrode(**kw) -> PotatoModel:
    return PotatoModel(n_inputs=1, n_outputs=2, **QUIET, **HOMOGENEOUS, **kw)


def test_impedance_spectrum_shows_the_electrode_arc_with_its_documented_phase_minimum():
    potato = one_electrode()
    r_ct, r_a, c = potato.derived()["r_ct_ohm"][0], potato.m_ohm[0, 0], potato.c_dl[0]
    spectrum = impedance_spectrum(potato, np.geomspace(0.05, 400, 16))
    f, mag, phase = spectrum["freq_hz"], spectrum["magnitude_ohm"], spectrum["phase_deg"]
    predicted = 1 / (2 * np.pi * c * np.sqrt(r_a * (r_a + r_ct)))
    assert 0.5 * predicted < f[np.argmin(phase)] < 2 * predicted          # the documented minimum
    assert phase.min() < -45 and phase[0] > -30 and phase[-1] > -5         # one arc, resistive at both ends
    assert mag[0] == pytest.approx(r_a + r_ct, rel=0.1)                    # charge transfer passes DC
    assert mag[-1] == pytest.approx(r_a, rel=0.02)                         # the tissue's resistance
    for fig in (nyquist_figure(spectrum), bode_figure(spectrum)):
        assert fig.axes


@pytest.mark.parametrize("beta", [0.7, 1.0])
def test_impedance_spectrum_shows_the_tissue_cole_arc_when_sampled_fast_enough(beta):
    """At 4 MHz sampling the beta-dispersion (20 kHz) is in band: the spectrum is the docstring's circuit,
    ``M_ee rho(omega) / rho_0 + (R_ct || C_dl)``, with Cole's depressed arc (apex at ``f_c``, height
    ``(R_0 - R_inf) tan(beta pi / 4) / 2``: a Debye arc's (``beta = 1``) is half its diameter)."""
    potato = one_electrode(dt=2.5e-7, cole_beta=beta)
    f = np.geomspace(1e3, 4e4, 12)
    z = impedance_spectrum(potato, f)["z"]
    r_ct, c, m = potato.derived()["r_ct_ohm"][0], potato.c_dl[0], potato.m_ohm[0, 0]
    omega, tau, r_inf = 2 * np.pi * f, 1 / (2 * np.pi * 2e4), 0.15
    circuit = m * (r_inf + (1 - r_inf) / (1 + (1j * omega * tau) ** beta)) + 1 / (1 / r_ct + 1j * omega * c)
    np.testing.assert_array_less(np.abs(z - circuit) / np.abs(circuit), 0.03)
    assert 2e4 / 1.5 < f[np.argmax(-z.imag)] < 2e4 * 1.5
    height = (-z.imag).max()
    assert height / (m * (1 - r_inf)) == pytest.approx(np.tan(beta * np.pi / 4) / 2, rel=0.05)


def test_impedance_spectrum_refuses_frequencies_above_nyquist():
    with pytest.raises(PrclabError, match="must lie in"):
        impedance_spectrum(one_electrode(), [600.0])


def harmonics(signal: np.ndarray, f: float, dt: float) -> np.ndarray:
    t = np.arange(len(signal)) * dt
    return np.abs([np.exp(-2j * np.pi * k * f * t) @ signal for k in (0, 1, 2)]) / len(signal)


def test_electrodes_rectify_even_harmonics_grow_with_amplitude():
    potato = one_electrode(outputs="current")
    f, dt = 2.0, potato.dt
    t = np.arange(int(3 / f / dt)) * dt
    ratio, dc = {}, {}
    for amp in (0.01, 0.1, 0.3):
        potato.reset(0)
        current = potato.run(amp * np.sin(2 * np.pi * f * t)[None, :, None])[0, :, 0]
        h = harmonics(current[len(t) // 3:], f, dt)
        ratio[amp], dc[amp] = h[2] / h[1], h[0] / h[1]
    assert ratio[0.01] < 0.02                                    # nearly linear at 10 mV
    assert ratio[0.1] > 3 * ratio[0.01] and ratio[0.3] > 1.5 * ratio[0.1]
    assert dc[0.3] > 5 * dc[0.01]                                # a rectified (Faradaic) DC current


@pytest.mark.parametrize("alpha, limit_A, sign", [(0.5, 1.0, 0), (0.5, 40e-6, 1), (0.3, 1.0, 1), (0.7, 1.0, -1)])
def test_rectification_comes_from_the_asymmetry_of_the_kinetics(alpha, limit_A, sign):
    """Symmetric Butler-Volmer (``alpha = 0.5``, no mass-transport limit) is ``2 i0 sinh(f eta / 2)``, odd:
    no even harmonic, no DC.  A cathodic limit or ``alpha < 0.5`` favours the anodic half-wave (net anodic,
    positive DC), ``alpha > 0.5`` the cathodic one, by the mirror symmetry ``alpha -> 1 - alpha``."""
    potato = one_electrode(outputs="current", alpha_mean=alpha, limiting_current_A=limit_A)
    f, dt = 2.0, potato.dt
    t = np.arange(int(3 / f / dt)) * dt
    potato.reset(0)
    current = potato.run(0.3 * np.sin(2 * np.pi * f * t)[None, :, None])[0, len(t) // 3:, 0]
    h = harmonics(current, f, dt)
    dc = current.mean() / h[1]
    if sign == 0:
        assert h[2] / h[1] < 1e-4 and abs(dc) < 1e-4
    else:
        assert h[2] / h[1] > 0.05 and sign * dc > 0.1


def test_kirchhoff_interface_and_tissue_laws_hold():
    potato = PotatoModel(n_inputs=4, n_outputs=3, outputs="both", metals="zinc,copper", **QUIET)
    u = np.random.default_rng(1).uniform(-0.3, 0.3, (2, 300, 4))
    potato.reset(0)
    y = potato.run(u)
    i, eta = potato.interface_current_A, potato.overpotential_V
    np.testing.assert_allclose(y[..., :4], potato.transimpedance_ohm * i)
    # interface: i = C d eta/dt (backward Euler) + i_F(eta)
    d_eta = np.diff(np.concatenate([np.zeros((2, 1, 4)), eta], axis=1), axis=1)
    faradaic, _ = potato.faradaic(eta)
    scale = np.abs(i).max()
    np.testing.assert_allclose(potato.c_dl * d_eta / potato.dt + faradaic, i, atol=1e-6 * scale)
    # tissue: V - (E_e - E_ref) - eta is the tissue's potential at the electrode against the reference,
    # made by rho/rho_0 * i with the Cole branches s[t] = r s[t-1] + (1 - r) i[t]
    branches = [lfilter([1 - r], [1, -r], i, axis=1) for r in potato.branch_r]
    memory = sum(w * r * np.concatenate([np.zeros((2, 1, 4)), s[:, :-1]], axis=1)
                 for w, r, s in zip(potato.weights, potato.branch_r, branches))
    tissue_current = potato.c_inst * i + memory                                  # rho/rho_0 * i
    # the potentials of point sources in an infinite conductor, from the geometry alone: every
    # stimulating electrode injects its current, the return electrode takes their sum (Kirchhoff's
    # current law), the recording electrodes and the reference draw none
    unit_ohm_m = 2e3 * 0.5e-3                                   # rho_0 / (4 pi) = r_access * radius
    stim = potato.electrode_positions_mm[potato.input_electrodes]
    sites = potato.electrode_positions_mm[potato.output_electrodes]

    def potential(points):
        d_mm = np.maximum(np.linalg.norm(points[:, None] - stim[None], axis=2), 0.5)   # own: the radius
        d_return_mm = np.linalg.norm(points - potato.return_position_mm, axis=1)
        return unit_ohm_m * 1e3 * (tissue_current @ (1 / d_mm).T
                                   - tissue_current.sum(axis=2, keepdims=True) / d_return_mm)

    reference = potential(potato.reference_position_mm[None])
    np.testing.assert_allclose(u - potato.galvanic_V - eta, potential(stim) - reference, atol=1e-8)
    np.testing.assert_allclose(y[..., 4:], potential(sites) - reference, atol=1e-8)
    assert potato.galvanic_V.tolist() == pytest.approx([-1.104, 0.0, -1.104, 0.0])   # zinc vs copper


def test_tissue_is_linear_superposition_holds_at_small_amplitude_not_at_large():
    potato = PotatoModel(n_inputs=3, n_outputs=4, **QUIET)
    rng = np.random.default_rng(2)
    a, b = rng.uniform(-1, 1, (2, 1, 10, 3)).repeat(50, axis=2)      # pulses held 50 ms

    def response(u):
        potato.reset(0)
        return potato.run(u)[0] - rest

    potato.reset(0)
    rest = potato.run(np.zeros_like(a))[0]
    for amp, holds in ((1e-3, True), (0.4, False)):
        together, apart = response(amp * (a + b)), response(amp * a) + response(amp * b)
        error = np.abs(together - apart).max() / np.abs(together).max()
        assert (error < 0.01) == holds, (amp, error)


def test_dissimilar_metals_give_the_galvanic_offset():
    zinc = one_electrode(record_metal="zinc")                  # reference copper: the potato battery
    zinc.reset(0)
    y = zinc.run(np.zeros((1, 50, 1)))[0]
    assert y == pytest.approx(np.full_like(y, -1.104), abs=1e-3)
    bipolar = one_electrode(record_metal="zinc", recording="bipolar")
    bipolar.reset(0)
    assert np.abs(bipolar.run(np.zeros((1, 50, 1)))).max() < 1e-9    # same metal both sides: cancels


def test_temperature_sets_charge_transfer_through_thermal_voltage_and_arrhenius():
    cold, warm = (one_electrode(temperature_C=t, limiting_current_A=1.0) for t in (20.0, 30.0))
    t20, t30 = 293.15, 303.15
    thermal = (FARADAY_C_PER_MOL / (GAS_J_PER_MOL_K * t20)) / (FARADAY_C_PER_MOL / (GAS_J_PER_MOL_K * t30))
    arrhenius = np.exp(-40e3 / GAS_J_PER_MOL_K * (1 / t30 - 1 / t20))
    ratio = cold.derived()["r_ct_ohm"][0] / warm.derived()["r_ct_ohm"][0]
    assert ratio == pytest.approx(arrhenius / thermal, rel=1e-5)
    assert warm.m_ohm[0, 0] == pytest.approx(cold.m_ohm[0, 0] / 1.2, rel=1e-9)   # +2 %/C conductivity


def test_debye_branches_follow_the_cole_dispersion():
    beta, r_inf = 0.7, 0.15
    weights, tau = cole_branches(24, beta, r_inf)
    assert weights.sum() == pytest.approx(1 - r_inf)
    omega_tau = np.geomspace(1e-3, 10, 9)                # from f_c down: the band of any sampling rate
    debye = r_inf + (weights[None] / (1 + 1j * omega_tau[:, None] * tau[None])).sum(axis=1)
    cole = r_inf + (1 - r_inf) / (1 + (1j * omega_tau) ** beta)
    np.testing.assert_allclose(np.abs(debye), np.abs(cole), rtol=0.05)


def test_heterogeneity_comes_from_the_seed():
    a, b, c = (PotatoModel(n_inputs=5, seed=s) for s in (0, 0, 1))
    assert np.array_equal(a.alpha, b.alpha) and not np.array_equal(a.alpha, c.alpha)
    assert np.all((a.alpha >= 0.3) & (a.alpha <= 0.7)) and len(set(a.i0_A)) == 5
