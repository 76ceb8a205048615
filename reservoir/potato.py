"""A potato (tuber tissue) between metal electrodes: linear Cole tissue, Butler-Volmer electrodes.

Physical picture.  Metal electrodes are pushed into the tuber and held at volts ``V_e`` against a large
return electrode (a multichannel potentiostat: every stimulating electrode's current is measured); high-
impedance recording electrodes read the tissue's potential.  All potentials are taken against a
reference electrode (no current) at the tuber's top; the return electrode at its bottom takes the sum of
the stimulating currents (Kirchhoff: ``i_return = -sum_e i_e``).  The tissue is a linear, passive ionic
conductor; everything nonlinear happens at the metal/tissue interfaces, as in the material (Notes:
substrate-fidelity.md, "Potato").

Tissue (linear).  A homogeneous conductor of resistivity ``rho(omega)`` with a Cole (beta) dispersion::

    rho(omega) / rho_0 = r_inf + (1 - r_inf) / (1 + (j omega tau_c)^beta),   tau_c = 1 / (2 pi f_c)

realised as ``nodes`` Debye (RC) branches whose relaxation times sample the Cole-Cole distribution
``G(s) = sin(pi beta) / (2 pi (cosh(beta s) + cos(pi beta)))`` of ``s = ln(tau / tau_c)`` over
``|s| <= 3 / beta`` (weights normalised to ``1 - r_inf``).  Each branch ``k`` is a first-order filter of
the current, stepped exactly for a current held over a sample.  Electrodes are point sources in the
conductor: the transfer resistance between points ``x, y`` is ``rho_0 / (4 pi |x - y|)`` and an
electrode's own (spreading) resistance ``rho_0 / (4 pi a)`` for radius ``a``; ``rho_0`` follows from
``r_access_ohm`` and ``electrode_radius_mm`` (``rho_0 = 4 pi a r_access_ohm``), so the coupling between
electrodes falls as ``1 / distance``.  The tuber's boundary is not modelled (infinite medium).

Electrodes (nonlinear).  Electrode ``e`` (metal, equilibrium potential ``E_e``) carries current ``i_e``
(A, positive: out of the metal into the tissue, i.e. anodic)::

    V_e - (E_e - E_ref) - eta_e = sum_k M_ek (rho/rho_0 * i_k)      (loop: tissue between e and reference)
    i_e = C_e d eta_e / dt + i_F,e(eta_e)                            (interface: double layer || Faraday)
    i_F(eta) = (exp(a_a f eta) - exp(-a_c f eta)) / (1 / i0 + exp(-a_c f eta) / i_lim)

with ``f = F / (R T)``, ``a_a = 1 - alpha_e``, ``a_c = alpha_e`` and a cathodic mass-transport limit
``i_lim`` (Butler-Volmer with mass transfer, Bard & Faulkner, *Electrochemical Methods* 2nd ed. 2001,
eq. 3.4.30 with the anodic reaction, metal dissolution, unlimited).  ``M`` is the transfer-resistance matrix of
the stimulating electrodes against the reference (``M_ek = R_ek - R_e,ret - R_ref,k + R_ref,ret``); the
potentiostat holds each electrode against the reference, so the return electrode's own polarisation
does not enter.  Per electrode, ``alpha_e`` is uniform in
``alpha_mean +- alpha_spread``, ``i0`` and ``C_e`` log-normal about ``exchange_current_A`` and
``c_dl_F`` (log-SD ``i0_log_sd``, ``c_dl_log_sd``), drawn from the model's seed.  ``i0`` follows
Arrhenius in temperature (activation energy ``activation_kJ_per_mol``, reference 20 C) and the tissue's
conductivity rises ``2 %/C``.  Time is stepped with backward Euler for the double layer: each sample's
coupled equations (all electrodes at once, the tissue's memory known from the samples before) are solved
by Gauss-Seidel-Newton sweeps: electrode by electrode, one Newton step on its own equation with the
analytic Butler-Volmer derivative and the other electrodes' newest overpotentials, until no sweep moves an
overpotential by more than ``1e-10`` V (at most five sweeps per sample for random pulses of up to 1 V at
the defaults); the loop over samples is compiled with numba.

Recording.  Recording site ``m`` (no current) reads ``V_m = sum_k T_mk (rho/rho_0 * i_k) + E_rec - E_ref``
(``recording="monopolar"``, against the reference) or the difference between two sites
``bipolar_spacing_mm`` apart along the radius (``"bipolar"``: local, dipole-like, galvanic offsets
cancel), times ``gain_V`` (V/V), plus 1/f drift (``reservoir.electrodes.ElectrodeDrift``) and white
noise ``noise_V``.  ``outputs`` chooses the channels: ``"voltage"`` (the ``n_outputs`` recording
channels, volts), ``"current"`` (the ``n_inputs`` stimulating currents as the potentiostat's current
amplifier reports them: ``transimpedance_ohm * i_e`` volts) or ``"both"`` (currents first, then
voltages).  Every run also keeps the currents in amperes in ``interface_current_A`` and the
overpotentials in ``overpotential_V`` ``(batch, steps, n_inputs)``.

Electrodes are nails of ~1 cm^2 wetted area (2 cm of a 1.6 mm nail): ``c_dl_F``, ``exchange_current_A``
and ``limiting_current_A`` are per electrode; ``electrode_radius_mm`` is the radius of the sphere with the
same spreading resistance, which sets the coupling.  Geometry: electrodes evenly on a ring of radius 20 mm in the tuber's mid-plane (stimulating and
recording interleaved), the return electrode 25 mm below its centre and the reference 25 mm above.

Parameters and sources (model value | literature value | source):

=============================== ===================== ================================ ==========================================
quantity                        model                 literature                       source
=============================== ===================== ================================ ==========================================
low-frequency conductivity      0.08 S/m (derived)    0.02-0.1 S/m intact tuber        Angersbach, Heinz & Knorr 1999,
                                                                                        Biotechnol. Prog. 15:753
high/low-frequency ratio 1/r_inf 1 / 0.15 = 6.7       ~5-10 (intact vs disintegrated   Angersbach et al. 1999
                                                      tissue conductivity)
beta-dispersion centre f_c      20 kHz                10^3-10^5 Hz                     Zhang & Willison 1991, Can. J. Plant Sci.
                                                                                        72:545; Hayden et al. 1969, J. Exp. Bot.
                                                                                        20:177
Cole exponent beta              0.7                   0.5-0.8 (plant tissues)          Zhang & Willison 1991; Roy et al. 2020,
                                                                                        AIMS Biophysics 7:41 (potato, 1 Hz-1 MHz)
double layer C_dl               20 uF (1 cm^2)        10-40 uF/cm^2                    Merrill, Bikson & Jefferys 2005, J.
                                                                                        Neurosci. Methods 141:171; Bard & Faulkner
                                                                                        2001 sec. 1.2
exchange current i0             2 uA (2 uA/cm^2)      1e-7-1e-5 A/cm^2 (Cu, Zn in      Bard & Faulkner 2001 table 3.4.1 (orders
                                                      weak electrolyte)                 of magnitude); not potato-specific
transfer coefficient alpha      0.5 +- 0.2            0.3-0.7                          Bard & Faulkner 2001 sec. 3.3
cathodic limiting current       40 uA (40 uA/cm^2)    O2 reduction, 10-100 uA/cm^2     Bard & Faulkner 2001 sec. 1.4 (aerated
                                                      in aqueous media                  water); lower in tissue
Zn/Cu galvanic voltage          1.10 V (E0 table)     ~0.9-1 V open circuit            Golberg, Rabinowitch & Rubinsky 2010,
                                                                                        J. Renew. Sustain. Energy 2:033103
conductivity temperature coeff. 2 %/C                 ~2 %/C (electrolytes)            substrate-fidelity.md
charge-transfer activation      40 kJ/mol             20-60 kJ/mol                     Bard & Faulkner 2001 sec. 3.1
recording drift                 5 uV over 1 s, 1/f    1/f electrode noise              Huigen, Peper & Grimbergen 2002, Med.
                                                                                        Biol. Eng. Comput. 40:332
=============================== ===================== ================================ ==========================================

At 1 kHz sampling the tissue's arc lies above the Nyquist frequency: in band the tissue is nearly its
low-frequency resistance and the impedance spectrum is the electrode's arc (``R_access + R_ct || C_dl``,
phase minimum near ``1 / (2 pi C_dl sqrt(R_access (R_access + R_ct)))``, about 1-2 Hz for the defaults,
``R_ct = 1 / (f i0)`` at ``alpha = 0.5``).  The double layer is an ideal capacitor (constant-phase
exponent 1).

The state (``state`` / ``load_state``): ``eta`` (overpotentials, ``(batch, n_inputs)``), ``tissue``
(the Debye branches, ``(batch, n_inputs, nodes)``), the drifts ``rest_drift`` (stimulating electrodes'
rest potentials) and ``drift`` (recording channels), and their streams ``rng``, ``drift_rng`` and the
white noise's ``measurement_rng`` (``(batch, 6)`` each, see ``reservoir.streams``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .base import Electrode, Substrate, check_input
from .electrodes import ElectrodeDrift
from .streams import RowSeeds, RowStreams, split_off

FARADAY_C_PER_MOL = 96485.33212
GAS_J_PER_MOL_K = 8.314462618
T_REF_K = 293.15
#: standard reduction potentials (V vs SHE), Bard & Faulkner 2001 appendix C
METAL_POTENTIAL_V = {"zinc": -0.762, "iron": -0.447, "copper": 0.342, "silver": 0.800,
                     "ag/agcl": 0.222, "platinum": 1.18}
OUTPUTS = ("voltage", "current", "both")
RECORDINGS = ("monopolar", "bipolar")
MAX_SWEEPS = 200         # Gauss-Seidel Newton sweeps per sample before giving up
TOLERANCE_V = 1e-10      # a sample is solved when no sweep moves any overpotential by more
STEP_LIMIT_V = 0.1       # largest Newton step of one overpotential (keeps the exponentials in range)


def _metal(name: str) -> float:
    try:
        return METAL_POTENTIAL_V[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown electrode metal {name!r}; known: {', '.join(METAL_POTENTIAL_V)}") from None


def cole_branches(nodes: int, beta: float, r_inf: float) -> tuple[np.ndarray, np.ndarray]:
    """Debye weights ``(nodes,)`` (summing to ``1 - r_inf``) and relaxation times in units of ``tau_c``
    ``(nodes,)`` sampling the Cole-Cole distribution of exponent ``beta`` (module docstring); at ``beta = 1``
    (Debye) the distribution is a single time, ``tau_c``, shared by every branch."""
    if beta == 1 or nodes == 1:
        return np.full(nodes, (1 - r_inf) / nodes), np.ones(nodes)
    s = np.linspace(-3 / beta, 3 / beta, nodes)
    density = np.sin(np.pi * beta) / (2 * np.pi * (np.cosh(beta * s) + np.cos(np.pi * beta)))
    return (1 - r_inf) * density / density.sum(), np.exp(s)


@njit(cache=True)
def _butler_volmer(eta, f_a, f_c, inv_i0, inv_lim):
    """Butler-Volmer current with a cathodic limit (A) and its derivative (S) at ``eta`` (V), scalars:
    ``f_a, f_c`` anodic and cathodic ``alpha f`` (1/V), ``inv_i0 = 1 / i0``, ``inv_lim = 1 / i_lim`` (1/A)."""
    e_a = np.exp(min(eta * f_a, 30.0))
    e_c = np.exp(min(-eta * f_c, 30.0))
    den = e_c * inv_lim + inv_i0
    current = (e_a - e_c) / den
    # d/deta of (e_a - e_c) / den, with d den/deta = -f_c e_c / i_lim
    return current, (f_a * e_a + f_c * e_c + current * f_c * inv_lim * e_c) / den


@njit(cache=True)
def _faradaic_rows(eta, f_a, f_c, inv_i0, inv_lim):
    """:func:`_butler_volmer` over ``eta`` ``(rows, n)`` with per-electrode constants ``(n,)``."""
    current, slope = np.empty_like(eta), np.empty_like(eta)
    for row in range(eta.shape[0]):
        for e in range(eta.shape[1]):
            current[row, e], slope[row, e] = _butler_volmer(eta[row, e], f_a[e], f_c[e], inv_i0[e], inv_lim)
    return current, slope


@njit(cache=True)
def _interfaces(forced, eta0, tissue, g_c, cap, f_a, f_c, inv_i0, inv_lim, c_inst, w_r, r):
    """Backward-Euler steps of the coupled electrode equations (module docstring), trial by trial.

    Per step: Gauss-Seidel-Newton sweeps over the electrodes, each a Newton step on one electrode's
    equation with the others' newest ``eta`` (the Jacobian ``diag(C/dt + di_F/deta) + G / c_inst`` is
    symmetric positive definite, so the sweeps converge); a step is limited to ``STEP_LIMIT_V``.  ``forced`` ``(batch, steps, n)`` is
    ``G drive / c_inst`` (A), ``eta0`` ``(batch, n)`` the overpotentials before the block, ``tissue``
    ``(batch, n, k)`` the states of the ``k`` remembering Debye branches (updated in place), ``g_c = G /
    c_inst`` (S), ``cap = C_e / dt`` (S), ``w_r = w r`` and ``r`` ``(k,)`` the branches' weights times
    decay and decays.  Returns ``eta``, currents ``i`` and ``rho/rho_0 i`` ``(batch, steps, n)`` and the
    most Newton sweeps any step took (``MAX_SWEEPS + 1`` if one did not converge to ``TOLERANCE_V``)."""
    batch, steps, n = forced.shape
    eta_out, current_out, tissue_out = np.empty_like(forced), np.empty_like(forced), np.empty_like(forced)
    eta, prev, rhs, coupled = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    memory = np.empty(n)
    worst = 0
    for b in range(batch):
        eta[:] = eta0[b]
        for t in range(steps):
            prev[:] = eta
            for e in range(n):
                memory[e] = 0.0
                for k in range(len(r)):
                    memory[e] += w_r[k] * tissue[b, e, k]
                rhs[e] = forced[b, t, e] - memory[e] / c_inst
            for sweep in range(MAX_SWEEPS + 1):
                if sweep == MAX_SWEEPS:
                    worst = MAX_SWEEPS + 1
                    break
                change = 0.0
                for e in range(n):
                    acc = 0.0
                    for j in range(n):
                        acc += g_c[e, j] * eta[j]
                    i_f, slope = _butler_volmer(eta[e], f_a[e], f_c[e], inv_i0[e], inv_lim)
                    step = -(cap[e] * (eta[e] - prev[e]) + i_f + acc - rhs[e]) / (cap[e] + slope + g_c[e, e])
                    step = max(-STEP_LIMIT_V, min(STEP_LIMIT_V, step))
                    eta[e] += step
                    change = max(change, abs(step))
                if change < TOLERANCE_V:
                    worst = max(worst, sweep + 1)
                    break
            for e in range(n):
                acc = 0.0
                for j in range(n):
                    acc += g_c[e, j] * eta[j]
                coupled[e] = rhs[e] - acc                      # i = (G (drive - eta) - m) / c_inst
                for k in range(len(r)):
                    tissue[b, e, k] = r[k] * tissue[b, e, k] + (1.0 - r[k]) * coupled[e]
                eta_out[b, t, e], current_out[b, t, e] = eta[e], coupled[e]
                tissue_out[b, t, e] = c_inst * coupled[e] + memory[e]
    return eta_out, current_out, tissue_out, worst


class PotatoModel(Substrate):
    """Simulated potato with ``n_inputs`` stimulating and ``n_outputs`` recording electrodes.

    Args:
        n_inputs: stimulating electrodes (input volts against the reference electrode).
        n_outputs: recording channels (sites; pairs of sites when bipolar).
        nodes: Debye branches of the tissue's Cole dispersion (its size).
        dt: sample period in seconds (default 1 ms, a 1 kHz DAQ).
        r_access_ohm: spreading resistance of a stimulating electrode at low frequency (ohms).
        electrode_radius_mm: electrode radius (sets ``rho_0`` with ``r_access_ohm``), mm.
        r_inf: ``rho_inf / rho_0`` of the Cole dispersion; cole_fc_hz, cole_beta: its centre (Hz) and
            exponent.
        c_dl_F: mean double-layer capacitance of a stimulating electrode (farads); c_dl_log_sd: its
            per-electrode log-normal spread.
        exchange_current_A: mean exchange current at 20 C (A); i0_log_sd: its log-normal spread.
        alpha_mean, alpha_spread: transfer coefficient, uniform in ``alpha_mean +- alpha_spread``.
        limiting_current_A: cathodic mass-transport limit (A).
        metals: stimulating electrodes' metals, comma-separated, cycled over the electrodes.
        reference_metal, record_metal: metals of the reference and the recording electrodes.
        temperature_C: temperature (Butler-Volmer thermal voltage, Arrhenius ``i0``, tissue conductivity).
        activation_kJ_per_mol: activation energy of ``i0``.
        recording: ``"monopolar"`` or ``"bipolar"``; bipolar_spacing_mm: spacing of a bipolar pair.
        outputs: ``"voltage"``, ``"current"`` or ``"both"`` (order and units: module docstring).
        transimpedance_ohm: volts reported per ampere of stimulating current.
        gain_V: recording amplifier gain (V/V).
        noise_V: white measurement noise (volts RMS per sample).
        drift_V_per_sqrt_s: 1/f drift of each output channel (RMS change over 1 s, volts).
        rest_drift_V_per_sqrt_s: 1/f drift of each stimulating electrode's rest (corrosion) potential,
            which enters its Butler-Volmer loop (RMS change over 1 s, volts).
        seed: seed of the geometry and the electrodes' heterogeneity.
    """

    def __init__(self, n_inputs: int = 13, n_outputs: int = 16, nodes: int = 8, dt: float = 1e-3,
                 r_access_ohm: float = 2e3, electrode_radius_mm: float = 0.5, r_inf: float = 0.15,
                 cole_fc_hz: float = 2e4, cole_beta: float = 0.7, c_dl_F: float = 20e-6,
                 c_dl_log_sd: float = 0.2, exchange_current_A: float = 2e-6, i0_log_sd: float = 0.5,
                 alpha_mean: float = 0.5, alpha_spread: float = 0.2, limiting_current_A: float = 40e-6,
                 metals: str = "copper", reference_metal: str = "copper", record_metal: str = "copper",
                 temperature_C: float = 20.0, activation_kJ_per_mol: float = 40.0,
                 recording: str = "monopolar", bipolar_spacing_mm: float = 2.0, outputs: str = "voltage",
                 transimpedance_ohm: float = 1e3, gain_V: float = 1.0, noise_V: float = 20e-6,
                 drift_V_per_sqrt_s: float = 5e-6, rest_drift_V_per_sqrt_s: float = 20e-6, seed: int = 0):
        if min(n_inputs, n_outputs, nodes) < 1:
            raise ValueError("n_inputs, n_outputs and nodes must be positive")
        positive = {"dt": dt, "r_access_ohm": r_access_ohm, "electrode_radius_mm": electrode_radius_mm,
                    "cole_fc_hz": cole_fc_hz, "c_dl_F": c_dl_F, "exchange_current_A": exchange_current_A,
                    "limiting_current_A": limiting_current_A, "bipolar_spacing_mm": bipolar_spacing_mm,
                    "transimpedance_ohm": transimpedance_ohm}
        for key, value in positive.items():
            if not value > 0:
                raise ValueError(f"{key} must be positive, got {value}")
        if not 0 < cole_beta <= 1 or not 0 <= r_inf < 1:
            raise ValueError("need 0 < cole_beta <= 1 and 0 <= r_inf < 1")
        if not (alpha_spread >= 0 and 0 < alpha_mean - alpha_spread and alpha_mean + alpha_spread < 1):
            raise ValueError("alpha_mean +- alpha_spread must lie inside (0, 1)")
        if min(c_dl_log_sd, i0_log_sd, noise_V) < 0 or temperature_C <= -273.15:
            raise ValueError("spreads and noise_V must be non-negative, temperature above 0 K")
        if outputs not in OUTPUTS or recording not in RECORDINGS:
            raise ValueError(f"outputs must be one of {OUTPUTS}, recording one of {RECORDINGS}")
        self.n_inputs, self.dt = n_inputs, float(dt)
        self.n_outputs = {"voltage": n_outputs, "current": n_inputs, "both": n_inputs + n_outputs}[outputs]
        self.outputs, self.gain_V, self.noise_V, self.transimpedance_ohm = outputs, gain_V, noise_V, \
            transimpedance_ohm
        rng = np.random.default_rng(seed)
        # electrodes: heterogeneity (stream = the model's seed), temperature
        temp_k = temperature_C + 273.15
        self.f_per_V = FARADAY_C_PER_MOL / (GAS_J_PER_MOL_K * temp_k)
        self.alpha = rng.uniform(alpha_mean - alpha_spread, alpha_mean + alpha_spread, n_inputs)
        arrhenius = np.exp(-activation_kJ_per_mol * 1e3 / GAS_J_PER_MOL_K * (1 / temp_k - 1 / T_REF_K))
        self.i0_A = exchange_current_A * arrhenius * np.exp(rng.normal(0, i0_log_sd, n_inputs))
        self.c_dl = c_dl_F * np.exp(rng.normal(0, c_dl_log_sd, n_inputs))
        self.i_lim_A = float(limiting_current_A)
        names = [m for m in metals.split(",") if m.strip()] or ["?"]
        e_ret = _metal(reference_metal)
        self.galvanic_V = np.array([_metal(names[e % len(names)]) for e in range(n_inputs)]) - e_ret
        self.record_offset_V = 0.0 if recording == "bipolar" else _metal(record_metal) - e_ret
        # tissue: Debye branches, resistances in the conductor (rho_0 / 4 pi = r_access * a)
        conductance_scale = 1 + 0.02 * (temperature_C - 20.0)
        if conductance_scale <= 0:
            raise ValueError(f"temperature_C {temperature_C} leaves the tissue no conductivity")
        self.weights, tau_rel = cole_branches(nodes, cole_beta, r_inf)
        self.branch_r = np.exp(-dt * 2 * np.pi * cole_fc_hz / tau_rel)
        self.c_inst = r_inf + float(np.sum(self.weights * (1 - self.branch_r)))
        a_m = electrode_radius_mm * 1e-3
        unit = r_access_ohm * a_m / conductance_scale          # ohm m: rho_0 / (4 pi)
        n_el = n_inputs + n_outputs
        ang = 2 * np.pi * np.arange(n_el) / n_el
        ring = np.stack([20 * np.cos(ang), 20 * np.sin(ang), np.zeros(n_el)], axis=1)
        is_input = np.zeros(n_el, bool)
        is_input[np.round(np.linspace(0, n_el, n_inputs, endpoint=False)).astype(int)] = True
        ret, ref = np.array([[0.0, 0.0, -25.0]]), np.array([[0.0, 0.0, 25.0]])
        stim, sites = ring[is_input], ring[~is_input]
        self.electrode_positions_mm, self.return_position_mm, self.reference_position_mm = ring, ret[0], ref[0]
        self.input_electrodes, self.output_electrodes = np.flatnonzero(is_input), np.flatnonzero(~is_input)

        def resistance(x, y):
            d = np.linalg.norm(x[:, None] - y[None], axis=2)
            return unit / (np.maximum(d, electrode_radius_mm) * 1e-3)   # own electrode: spreading

        def against_return(points):
            """Transfer resistances ``(len(points), n_inputs)``: potential at ``points`` against the
            reference per ampere into each stimulating electrode (the return electrode taking it out)."""
            return (resistance(points, stim) - resistance(points, ret) - resistance(ref, stim)
                    + resistance(ref, ret))

        self.m_ohm = against_return(stim)
        transfer = against_return(sites)
        if recording == "bipolar":
            inward = sites * (1 - bipolar_spacing_mm / 20.0)
            transfer = transfer - against_return(inward)
        self.transfer_t = np.ascontiguousarray(transfer.T)
        self.g_tissue = np.linalg.inv(self.m_ohm)     # S: currents from the voltages across the tissue
        self.drift = ElectrodeDrift(self.n_outputs, drift_V_per_sqrt_s, dt)
        self.rest_drift = ElectrodeDrift(n_inputs, rest_drift_V_per_sqrt_s, dt)
        self._rest_noise, self._drift_noise, self._measurement = RowStreams(), RowStreams(), RowStreams()
        self.reset(0)

    def reset(self, seed=None) -> None:
        """Return to rest and re-seed: per batch row (``reservoir.streams``), the rest-potential drift's
        stream is the row seed's child 0, the recording drift's child 1 and the white measurement
        noise's child 2."""
        seeds = RowSeeds.of(seed)
        self._rest_noise.reset(seeds.child(0))
        self.rest_drift.reset()
        self._drift_noise.reset(seeds.child(1))
        self._measurement.reset(seeds.child(2))
        self.drift.reset()
        self._eta: np.ndarray | None = None
        self._tissue = np.zeros((0, self.n_inputs, len(self.weights)))
        self.interface_current_A = np.zeros((0, 0, self.n_inputs))
        self.overpotential_V = np.zeros((0, 0, self.n_inputs))

    def faradaic(self, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Butler-Volmer current (A) and its derivative (S) at overpotentials ``eta`` (V, ``(..., n_inputs)``)."""
        eta = np.asarray(eta, dtype=np.float64)
        current, slope = _faradaic_rows(np.ascontiguousarray(eta.reshape(-1, self.n_inputs)),
                                        *self._kinetics())
        return current.reshape(eta.shape), slope.reshape(eta.shape)

    def _kinetics(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """``(1 - alpha) f``, ``alpha f`` (1/V), ``1 / i0`` ``(n_inputs,)`` and ``1 / i_lim`` (1/A)."""
        return (1 - self.alpha) * self.f_per_V, self.alpha * self.f_per_V, 1 / self.i0_A, 1 / self.i_lim_A

    def _solve(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Overpotentials, currents and ``rho/rho_0 * i`` ``(batch, steps, n_inputs)`` for applied volts."""
        forced = np.ascontiguousarray((v - self.galvanic_V) @ self.g_tissue.T / self.c_inst)
        remembering = np.flatnonzero(self.weights * self.branch_r > 1e-17)   # the others forget within a sample
        tissue = np.ascontiguousarray(self._tissue[:, :, remembering])
        eta, current, tissue_current, sweeps = _interfaces(
            forced, self._eta, tissue, self.g_tissue / self.c_inst, self.c_dl / self.dt, *self._kinetics(),
            self.c_inst, self.weights[remembering] * self.branch_r[remembering], self.branch_r[remembering])
        if sweeps > MAX_SWEEPS:
            raise ValueError(f"potato: the electrode equations did not converge in {MAX_SWEEPS} sweeps of a "
                             "sample; use a shorter dt")
        self.sweeps = sweeps
        self._tissue[:, :, remembering] = tissue
        return eta, current, tissue_current

    def run(self, u: np.ndarray) -> np.ndarray:
        """Electrode volts ``(batch, steps, n_inputs)`` -> outputs ``(batch, steps, n_outputs)`` (volts;
        ``outputs`` says which channels)."""
        u = check_input(u, self.n_inputs, np.float64)
        batch, steps, _ = u.shape
        if self._eta is None:
            self._eta = np.zeros((batch, self.n_inputs))
            self._tissue = np.zeros((batch, self.n_inputs, len(self.weights)))
        elif len(self._eta) != batch:
            raise ValueError(f"potato holds a batch of {len(self._eta)}, input has {batch}; "
                             "call reset() before changing the batch size")
        eta, current, tissue_current = self._solve(u - self.rest_drift(batch, steps, self._rest_noise))
        if steps:
            self._eta = eta[:, -1].copy()
        self.interface_current_A, self.overpotential_V = current, eta
        parts = []
        if self.outputs != "voltage":
            parts.append(self.transimpedance_ohm * current)
        if self.outputs != "current":
            parts.append(self.gain_V * (tissue_current @ self.transfer_t + self.record_offset_V))
        y = np.concatenate(parts, axis=2)
        y += self.drift(batch, steps, self._drift_noise)
        if self.noise_V > 0:
            y += self.noise_V * self._measurement.standard_normal(y.shape)
        return y

    @property
    def state(self) -> dict[str, np.ndarray]:
        batch = 0 if self._eta is None else len(self._eta)
        return {"eta": np.zeros((0, self.n_inputs)) if self._eta is None else self._eta.copy(),
                "tissue": self._tissue.copy(), "rest_drift": self.rest_drift.state, "drift": self.drift.state,
                "rng": self._rest_noise.state(batch), "drift_rng": self._drift_noise.state(batch),
                "measurement_rng": self._measurement.state(batch)}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        eta = np.asarray(state["eta"], dtype=np.float64)
        tissue = np.asarray(state["tissue"], dtype=np.float64)
        if eta.ndim != 2 or eta.shape[1] != self.n_inputs or tissue.shape != eta.shape + (len(self.weights),):
            raise ValueError(f"potato state: eta must be (batch, {self.n_inputs}) and tissue "
                             f"(batch, {self.n_inputs}, {len(self.weights)})")
        self.drift.load_state(state["drift"])
        self.rest_drift.load_state(state["rest_drift"])
        self._rest_noise.load_state(state["rng"], len(eta))
        self._measurement.load_state(state["measurement_rng"], len(eta))
        # state saved before the drift had a stream of its own drew it from the measurement stream
        drift_words = state["drift_rng"] if "drift_rng" in state else split_off(state["measurement_rng"])
        self._drift_noise.load_state(drift_words, len(eta))
        self._eta = eta.copy() if len(eta) else None
        self._tissue = tissue.copy()

    @property
    def electrodes(self) -> tuple[Electrode, ...]:
        """Each stimulating electrode sees the tissue's spreading resistance ``r_access_ohm``."""
        return tuple(Electrode(impedance_ohm=float(self.get_params()["r_access_ohm"]))
                     for _ in range(self.n_inputs))

    def derived(self) -> dict[str, object]:
        """Charge-transfer resistances ``r_ct_ohm`` (``1 / (di_F/deta)`` at rest), double-layer times
        ``tau_dl_s`` (``C_e * (M_ee || R_ct)``), the galvanic offsets ``galvanic_V`` and the tissue's
        conductivity ``sigma_S_per_m``."""
        _, g = self.faradaic(np.zeros(self.n_inputs))
        r_ct = 1 / g
        m = np.diag(self.m_ohm)
        p = self.get_params()
        return {"r_ct_ohm": r_ct.tolist(), "tau_dl_s": (self.c_dl * m * r_ct / (m + r_ct)).tolist(),
                "galvanic_V": self.galvanic_V.tolist(),
                "sigma_S_per_m": 1 / (4 * np.pi * p["electrode_radius_mm"] * 1e-3 * p["r_access_ohm"])}
