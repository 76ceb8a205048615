"""An electro-active hydrogel in an ionic bath: Na+ and Cl- obeying Nernst-Planck, Ag/AgCl electrodes.

Physical picture (after the electro-active polymer reservoir of Strong, Holderbaum & Hayashi, iScience
25:105558, 2022: a gel suspended in a salt bath, stimulated across its width, read out by its bending):
a ``grid x grid`` sheet of ``cell_um`` cells and ``thickness_um`` thickness, swollen with NaCl and
surrounded on all four edges by a bath held at ``c_bath_mM`` and 0 V.  Stimulating Ag/AgCl electrodes
sit on a ring inside the gel at the applied voltages; recording Ag/AgCl electrodes on the same ring are
held at 0 V; every electrode's current is read by a transimpedance amplifier (volts; the stimulating
electrodes' as a multichannel potentiostat records them).  The bath is the return electrode.  The
sheet hangs from its top edge (row 0) and bends in its plane; a camera tracks ``n_markers`` markers.

State per cell: ``c_na``, ``c_cl`` (mol/m^3 = mM) and the volumetric swelling strain ``e``.  Equations
(``psi = phi / V_T`` the potential in thermal volts, ``V_T = RT/F``, ``h`` the cell, ``W = grid h``)::

    dc_k/dt  = -div J_k + s_k,        J_k = -D_k (grad c_k + z_k c_k grad psi)          (Nernst-Planck)
    div i = i_src,   i = F sum_k z_k J_k   ->   div(kappa grad psi) = -div(D_na grad c_na - D_cl grad c_cl)
                                               - i_src / F,   kappa = D_na c_na + D_cl c_cl
    i_e      = g_e (W_e - phi(r_e)),  g_e = g0_S sqrt(c_cl(r_e) / c_bath)  (Ag + Cl- <-> AgCl + e-,
                                  linearised Butler-Volmer, exchange current ~ c^(1-alpha), alpha = 0.5)
    dc_k/dt += -(c_k - c_bath) / tau_x,   tau_x = T^2 / (pi^2 D_a)   (salt pairs leave through the
                                  sheet's faces to the bath: the slab's slowest diffusion mode)
    s_cl(r_e) = -i_e / (F h^2 T)       (an anodic current takes Cl- out of the electrode's cell; Na+ inert)
    Pi       = RT (c_na + c_cl - 2 c_bath)        (osmotic excess pressure over the bath, van 't Hoff)
    de/dt    = (Pi / K - e) / tau,  tau = tau_swell_s if Pi / K > e else tau_deswell_s
                                  (linear poroelastic swelling towards e = Pi / K, slower de-swelling)
    kappa(y) = (12 / W^3) int eps(x, y) x dx,   eps = e / 3     (curvature of a beam with eigenstrain
                                  eps; for two equal halves 3 (eps_r - eps_l) / (2 W): Timoshenko 1925)
    theta(s) = int_0^s kappa(y) dy                                (tangent angle s below the clamp)
    out_m    = -tia_ohm * i_m + drift_m + noise_m         (every electrode; recording ones at W_m = 0 V)
    out_k    = theta(s_k) in degrees + angle noise                      (markers, ``outputs="bending"``)

``outputs`` selects the channels: ``"currents"`` (the amplifier volts of the recording electrodes,
then of the stimulating ones, the default), ``"bending"`` (the marker angles) or ``"both"`` (volts first).  A positive angle means the
right half (larger column index) swelled more, so the strip turns towards the left.

Where the state is read.  The memory sits in the salt around the stimulating electrodes (Faradaic
depletion and enrichment) and in the swelling that follows it.  So it is read where it is: at the
stimulating electrodes themselves (their current, ``g_e`` of the local Cl-) and by the bending, which
integrates the strain of the whole sheet weighted by the distance from the mid-line.  The recording
electrodes on the ring see it only through the field around them: salt needs ``L^2 / (2 D_a)`` ~ 320 s
to diffuse the ``L`` = 0.88 mm between neighbouring electrodes at the defaults, far longer than the
bath exchange ``tau_x``.  The ring is
turned by half an electrode spacing so that no electrode sits on the mid-line (where its swelling would
not bend the strip: ``x = 0``).  The markers sit on the centre line at ``1/n, 2/n, .., 1`` of the
length below the clamp (the last at the tip, the angle a lab measures): the angle at a marker
integrates the curvature of the rows above it, so successive markers resolve where along the length
(above, across or below the electrode ring) the sheet is bent.

Electroneutrality is not imposed on the concentrations: each species moves with its own flux, and the
potential that keeps the charge density from changing is solved from current continuity each lattice
step (the discrete equation is exactly the sum of the two discrete species balances, so ``c_na - c_cl``
stays at its initial zero to the solver tolerance; tested).  The net current of all electrodes leaves
through the bath (tested: sum of electrode currents = bath current).

Memory: an anodic electrode depletes Cl- in its cell, a cathodic one enriches it (the salt follows by
migration of Na+), so the electrode conductance remembers the charge passed; the enrichment relaxes by
exchange with the bath through the faces in ``tau_x`` (7.6 s at the defaults).  Under a constant
voltage the electrode cell settles where the Faradaic supply balances that exchange: with ``k = g0 V /
(F c_bath h^2 T)`` (0.17 /s at 1 V) the memory time is about ``1 / (1/tau_x + k)`` = 3.3 s and the I-V
loop area of a stimulating electrode peaks for sweep periods near ``2 pi`` times that (measured with
``experiments.hysteresis.iv_loops``, one electrode, 1 V triangle, third cycle, 12 x 12 grid, dt 10 ms:
0.0054, 0.039, 0.103, 0.092, 0.041, 0.016 uA V at 1, 5, 20, 60, 200, 600 s; the default 24 x 24 grid with
4 + 8 electrodes: 0.0053, 0.038, 0.101, 0.090, 0.041, 0.016 uA V).
The stimulating electrodes' own currents carry it (``g_e V``: the memristor), the recording
electrodes' weakly (the potential around them depends on the concentrations), and the bending carries
it with the slower de-swelling on top.

At its own time scale (``experiments.timeseries``: NARMA-10 with 1 s steps, ±0.5 V, 4000 / 1000 steps,
``outputs="both"``, seeds 0-2, mean ± standard error) the gel scores NRMSE 0.385 ± 0.011 against the
linear delay-line baseline's 0.382 ± 0.010 (window chosen on training steps: 50): it does not beat it.
Measured why: every electrode current is a linear 20-step filter of the input to R^2 0.9994-0.9998
(adding the squared input: 0.9995-0.9999); the bending is small (0.003-0.016 deg RMS per marker, four
electrodes under ±0.5 V held 1 s) against 0.01 deg tracking noise, and with de-swelling as fast as
swelling (both 2 s) the task scores the same (0.386 ± 0.012), so the asymmetry is not what a readout
uses.  At these volts the Faradaic salt change is about 1 mM on 10 mM and the Ag/AgCl conductance
(~ sqrt c) moves by a few per cent: a linear fading memory, which a delay line also is.

Sources (quantity | model value | literature value | source):

=============================  ==================  ===========================  ==========================
quantity                       model value         literature value             source
=============================  ==================  ===========================  ==========================
D(Na+) in the gel              1.0e-9 m^2/s        1.33e-9 in water, 0.5-1x     Robinson & Stokes 1959;
                                                   that in hydrogels            Amsden 1998 Macromolecules
                                                                                31:8382
D(Cl-) in the gel              1.5e-9 m^2/s        2.03e-9 in water             same
bath / gel NaCl                10 mM               not checked in the paper     assumption
conductivity at 10 mM          0.094 S/m (derived) 0.118 S/m in water (10 mM   CRC Handbook (Kohlrausch);
                               from D and c        NaCl, 25 C); lower in gels   Keplinger 2013 Science
                                                   by obstruction              341:984 (0.1-10 S/m gels)
Ag/AgCl conductance g0         2 uS per 200 um     not checked (model choice:   assumption; law from
                               electrode (5 mA/cm2 a bounded current density)   Bard & Faulkner 2001 ch. 3
                               at 1 V)                                          (i0 ~ c^(1-alpha))
transfer coefficient alpha     0.5                 ~0.5 for one-electron steps  Bard & Faulkner 2001
gel thickness                  300 um              not checked in the paper     assumption
thermal voltage RT/F           25.7 mV             25.7 mV at 25 C              --
swelling time                  2 s                 faster than de-swelling      Strong et al. 2022
                                                   (qualitative)
de-swelling time               10 s                slower than swelling         Strong et al. 2022; Strong,
                                                                                Holderbaum & Hayashi 2024
osmotic pressure per mM        2.48 kPa            RT = 2.48 kJ/mol at 25 C     van 't Hoff; bending from
                                                   (ideal solution)             the osmotic difference
                                                                                across the gel: Doi,
                                                                                Matsumoto & Hirose 1992
                                                                                Macromolecules 25:5504
osmotic (drained bulk)         20 kPa              10-100 kPa for swollen       Anseth, Bowman & Brannon-
modulus K                                          gels (shear moduli of the    Peppas 1996 Biomaterials
                                                   same order)                  17:1647 (assumption in
                                                                                that range)
swelling strain                e = Pi / K          linear poroelasticity        Tanaka & Fillmore 1979
                                                                                J Chem Phys 70:1214;
                                                                                Hong, Zhao, Zhou & Suo
                                                                                2008 JMPS 56:1779
curvature from a strain        (12/W^3) int eps x  3 d_eps / (2 W) for two      Timoshenko 1925 J Opt
profile across the width       dx                  equal layers                 Soc Am 11:233
strip geometry                 4.8 x 4.8 mm,       a strip suspended from its   Strong et al. 2022
                               clamped at the top  top in a bath                (dimensions: assumption)
marker angle noise             0.01 deg RMS        ~0.006 deg: 0.1 px centroid  assumption (video
                                                   of 5 um px over 4.8 mm       tracking)
=============================  ==================  ===========================  ==========================

The rows marked "assumption", the swelling and de-swelling times and the modulus are
order-of-magnitude choices, not figures taken from the papers; none was fitted to any task.

Numerics: conservative finite volumes on the 5-point stencil, the bath as a Dirichlet face at half a
cell.  Every ``grid_step_s`` the potential is solved with conjugate gradients preconditioned by the exact
inverse of the bulk-conductivity operator (separable: one eigen-decomposition of the 1-D chain; vectorised
over the batch), then both species
take an explicit Euler step and the swelling relaxes (exactly, over the step, at the rate of its
direction).  Within a lattice step the electrode currents of every sample are linear in
the applied voltages: ``i = (1 + G R0)^-1 G (W - phi_0)``, with ``R0`` the bulk transfer resistance
between the electrode cells and ``phi_0`` the electrode-cell potential of the last solve less the part
the last currents drove through ``R0`` (the local conductivity enters the field that moves the ions,
not this per-sample transfer).  The current through each stimulating electrode over the last ``run`` is
kept in ``interface_current_A`` ``(batch, steps, n_inputs)``, the noise-free marker angles in
``bending_deg`` ``(batch, steps, n_markers)`` (they change once per lattice step).
"""

from __future__ import annotations

import numpy as np

from .base import Electrode, Substrate, check_input
from .electrodes import ElectrodeDrift
from .streams import RowSeeds, RowStreams, split_off

FARADAY_C_PER_MOL = 96485.33
THERMAL_VOLTAGE_V = 0.0257   # RT/F at 25 C
RT_J_PER_MOL = 8.314 * 298.15  # van 't Hoff: osmotic pressure (Pa) per mol/m^3 (mM) of solute
OUTPUTS = ("currents", "bending", "both")
CG_TOL = 1e-10               # relative residual of the potential solve
CG_MAX_ITER = 200


def ring_cells(n_electrodes: int, grid: int, radius_frac: float = 0.35) -> np.ndarray:
    """``(n_electrodes, 2)`` distinct (row, col) cells evenly on a ring around the grid centre, turned by
    half a spacing so that none sits on the vertical centre line (where it could not bend the strip)."""
    ang = 2 * np.pi * (np.arange(n_electrodes) + 0.5) / n_electrodes
    centre = (grid - 1) / 2
    cells = np.rint(np.stack([centre + radius_frac * grid * np.sin(ang),
                              centre + radius_frac * grid * np.cos(ang)], axis=1)).astype(int)
    if len({tuple(c) for c in cells}) < n_electrodes:
        raise ValueError(f"{n_electrodes} electrodes do not fit on a ring of a {grid} x {grid} grid; "
                         "use a larger grid")
    return cells


def face_means(c: np.ndarray, c_bath: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Face values of ``c`` ``(batch, rows, cols)``: horizontal ``(b, r, c-1)``, vertical ``(b, r-1, c)``
    and the cell-to-bath faces as a ``(b, r, c)`` sum over each edge cell's bath faces (0 inside)."""
    horiz = 0.5 * (c[:, :, 1:] + c[:, :, :-1])
    vert = 0.5 * (c[:, 1:] + c[:, :-1])
    edge = np.zeros_like(c)
    mean = 0.5 * (c + c_bath)
    edge[:, 0] += mean[:, 0]
    edge[:, -1] += mean[:, -1]
    edge[:, :, 0] += mean[:, :, 0]
    edge[:, :, -1] += mean[:, :, -1]
    return horiz, vert, edge


def outflow(horiz: np.ndarray, vert: np.ndarray, edge: np.ndarray, x: np.ndarray, x_bath: float) -> np.ndarray:
    """``sum over faces of k_f (x_cell - x_other)`` per cell ``(batch, rows, cols)``: the discrete
    ``-div(k grad x)`` times ``h^2``.  ``horiz``/``vert``/``edge`` are face coefficients as from
    :func:`face_means` (broadcast over the batch); the bath faces sit at half a cell (factor 2) with
    ``x = x_bath`` beyond."""
    dx_h = horiz * (x[:, :, :-1] - x[:, :, 1:])
    dx_v = vert * (x[:, :-1] - x[:, 1:])
    out = 2.0 * edge * (x - x_bath)
    out[:, :, :-1] += dx_h
    out[:, :, 1:] -= dx_h
    out[:, :-1] += dx_v
    out[:, 1:] -= dx_v
    return out


def bulk_inverse(grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvectors ``q`` ``(grid, grid)`` and inverse eigenvalues ``(grid, grid)`` of :func:`outflow` with unit
    face coefficients and the bath at 0: the operator is ``T (x) 1 + 1 (x) T`` with ``T`` the 1-D chain whose
    end cells have a bath face, so its inverse is ``x -> q ((q^T x q) * inv) q^T``."""
    chain = 2.0 * np.eye(grid) - np.eye(grid, k=1) - np.eye(grid, k=-1)
    chain[0, 0] = chain[-1, -1] = 3.0
    lam, q = np.linalg.eigh(chain)
    return q, 1.0 / (lam[:, None] + lam[None, :])


def marker_weights(grid: int, n_markers: int) -> np.ndarray:
    """``(grid * grid, n_markers)`` map from the volumetric swelling strain of every cell (row-major) to the
    tangent angle (degrees) at each marker.

    The strip hangs from its top edge (row 0) and bends in its plane.  Row ``r``'s curvature is the
    eigenstrain beam's ``kappa_r = (12 / W^3) sum_j eps_rj x_j h`` with ``eps = e / 3`` the linear strain
    and ``x_j`` the column centre's offset from the mid-line (width ``W = grid h``); the angle at a
    marker a distance ``s_m`` below the clamp is ``sum over rows above it of kappa_r h``.  Marker ``m``
    sits on the centre line at ``s_m = round(grid (m + 1) / n_markers)`` rows (the last at the tip).
    The cell size cancels: ``w = 4 (j - (grid - 1) / 2) / grid^3`` radians per unit strain per row.
    """
    offset = np.arange(grid) - (grid - 1) / 2
    rows = np.rint(grid * np.arange(1, n_markers + 1) / n_markers).astype(int)
    above = np.arange(grid)[:, None] < rows[None, :]                       # (grid rows, n_markers)
    per_cell = np.degrees(4.0 * offset / grid ** 3)                        # (grid columns,)
    return (above[:, None, :] * per_cell[None, :, None]).reshape(grid * grid, n_markers)


class HydrogelModel(Substrate):
    """Simulated electro-active hydrogel with ``n_inputs`` stimulating and ``n_outputs`` recording electrodes.

    Args:
        n_inputs: stimulating electrodes (input volts against the bath).
        n_outputs: recording electrodes (held at 0 V); with the stimulating electrodes, each electrode's
            current is read as ``tia_ohm`` times it (volts).
        dt: sample period in seconds.
        grid: lattice side in cells.
        cell_um: cell side (micrometres).
        thickness_um: gel thickness (micrometres).
        d_na_m2_per_s: Na+ diffusion coefficient in the gel.
        d_cl_m2_per_s: Cl- diffusion coefficient in the gel.
        c_bath_mM: NaCl concentration of the bath and of the gel at rest (millimolar).
        g0_S: Ag/AgCl interface conductance of one electrode at ``c_bath_mM`` (siemens).
        tia_ohm: transimpedance (feedback resistance) of the recording amplifiers (ohms; 1 MOhm = 1 V/uA).
        tau_swell_s: time constant of swelling (seconds).
        tau_deswell_s: time constant of de-swelling (seconds).
        modulus_kPa: osmotic (drained bulk) modulus of the gel network, ``K`` (kilopascals).
        outputs: ``"currents"`` (the ``n_outputs + n_inputs`` amplifier volts, recording electrodes
            first), ``"bending"`` (the ``n_markers`` bending angles, degrees) or ``"both"`` (amplifier
            volts, then angles).
        n_markers: bending markers on the strip's centre line (module docstring: where and why).
        noise_V: white measurement noise (volts RMS per sample).
        angle_noise_deg: white noise of the tracked marker angles (degrees RMS per sample).
        drift_V_per_sqrt_s: 1/f drift of each recording channel (RMS change over 1 s, volts).
        grid_step_s: lattice time step (seconds), a multiple of ``dt`` after rounding.
        seed: seed of the noise and drift until ``reset`` re-seeds them (the layout is fixed).

    ``self.n_outputs`` is the number of output channels ``outputs`` gives; ``self.n_recording`` the
    recording electrodes (the ``n_outputs`` argument).  After every ``run``: ``interface_current_A``
    ``(batch, steps, n_inputs)`` (amperes into the gel), ``bending_deg`` ``(batch, steps, n_markers)``
    (noise-free marker angles, whatever ``outputs`` is) and ``last_step``, the last lattice step's mean
    electrode currents ``(batch, n_inputs + n_recording)`` (inputs first) and the current into the bath
    ``(batch,)`` (amperes).
    """

    def __init__(self, n_inputs: int = 4, n_outputs: int = 8, dt: float = 1e-3, grid: int = 24,
                 cell_um: float = 200.0, thickness_um: float = 300.0, d_na_m2_per_s: float = 1.0e-9,
                 d_cl_m2_per_s: float = 1.5e-9, c_bath_mM: float = 10.0, g0_S: float = 2e-6,
                 tia_ohm: float = 1e6, tau_swell_s: float = 2.0, tau_deswell_s: float = 10.0,
                 modulus_kPa: float = 20.0, outputs: str = "currents", n_markers: int = 4,
                 noise_V: float = 10e-6, angle_noise_deg: float = 0.01, drift_V_per_sqrt_s: float = 5e-6,
                 grid_step_s: float = 0.1, seed: int = 0):
        if min(n_inputs, n_outputs, grid, n_markers) < 1:
            raise ValueError("n_inputs, n_outputs, grid and n_markers must be positive")
        if n_markers > grid:
            raise ValueError(f"n_markers={n_markers} exceeds the grid's {grid} rows")
        if outputs not in OUTPUTS:
            raise ValueError(f"outputs must be one of {OUTPUTS}, got {outputs!r}")
        if min(dt, cell_um, thickness_um, d_na_m2_per_s, d_cl_m2_per_s, c_bath_mM, g0_S, tia_ohm,
               tau_swell_s, tau_deswell_s, modulus_kPa, grid_step_s) <= 0:
            raise ValueError("dt, lengths, diffusion coefficients, c_bath_mM, g0_S, tia_ohm, the swelling "
                             "times, modulus_kPa and grid_step_s must be positive")
        if noise_V < 0 or angle_noise_deg < 0:
            raise ValueError("noise_V and angle_noise_deg must be non-negative")
        h = cell_um * 1e-6
        limit_s = h ** 2 / (4 * max(d_na_m2_per_s, d_cl_m2_per_s))
        if grid_step_s > limit_s / 5:
            raise ValueError(f"grid_step_s={grid_step_s} s exceeds a fifth of the explicit stability "
                             f"limit h^2/(4D) = {limit_s:.3g} s")
        self.n_inputs, self.n_recording, self.dt, self.grid = n_inputs, n_outputs, float(dt), grid
        self.outputs, self.n_markers = outputs, n_markers
        n_currents = n_outputs + n_inputs                                # every electrode has an amplifier
        self.n_outputs = {"currents": n_currents, "bending": n_markers, "both": n_currents + n_markers}[outputs]
        self.block = max(1, int(round(grid_step_s / dt)))   # samples per lattice step
        self.grid_dt = self.block * self.dt
        self.d_na, self.d_cl, self.c_bath = d_na_m2_per_s, d_cl_m2_per_s, c_bath_mM
        self.g0_S, self.tia_ohm, self.noise_V = g0_S, tia_ohm, noise_V
        self.tau_swell, self.tau_deswell = tau_swell_s, tau_deswell_s
        self._strain_per_mM = RT_J_PER_MOL / (modulus_kPa * 1e3)          # volumetric swelling per mM
        self._swell_step = 1.0 - np.exp(-self.grid_dt / tau_swell_s)
        self._deswell_step = 1.0 - np.exp(-self.grid_dt / tau_deswell_s)
        self._marker_deg = marker_weights(grid, n_markers)              # (g*g, n_markers)
        self._noise = np.array([noise_V] * n_currents * (outputs != "bending")
                               + [angle_noise_deg] * n_markers * (outputs != "currents"))
        # electrodes on a ring, inputs and outputs interleaved
        n_el = n_inputs + n_outputs
        cells = ring_cells(n_el, grid)
        is_input = np.zeros(n_el, bool)
        is_input[np.round(np.linspace(0, n_el, n_inputs, endpoint=False)).astype(int)] = True
        self.input_cells, self.output_cells = cells[is_input], cells[~is_input]
        self._el_flat = np.concatenate([self.input_cells, self.output_cells]) @ np.array([grid, 1])
        # current balance per cell: F T * outflow(...) = injected current (A); F T in C/m^2 * m
        self._ft = FARADAY_C_PER_MOL * thickness_um * 1e-6
        self._rate = self.grid_dt / h ** 2                               # explicit step per D * outflow
        self._cell_mol_per_C = 1.0 / (FARADAY_C_PER_MOL * h ** 2 * thickness_um * 1e-6)
        # bulk operator (unit conductivity), factorised once; R0 between electrode cells (ohms)
        self._h = h
        d_a = 2 * d_na_m2_per_s * d_cl_m2_per_s / (d_na_m2_per_s + d_cl_m2_per_s)
        self._exchange_s = (thickness_um * 1e-6) ** 2 / (np.pi ** 2 * d_a)   # slowest mode of the slab
        self._exchange = 1.0 - np.exp(-self.grid_dt / self._exchange_s)
        self._unit_faces = face_means(np.ones((1, grid, grid)), 1.0)    # unit coefficients, bath-face counts
        self._kappa0 = (d_na_m2_per_s + d_cl_m2_per_s) * c_bath_mM
        self._q, self._inv_eig = bulk_inverse(grid)
        unit = np.zeros((n_el, grid * grid))
        unit[np.arange(n_el), self._el_flat] = 1.0
        response = self._bulk_solve(unit.reshape(n_el, grid, grid)).reshape(n_el, -1)
        self.r0_ohm = THERMAL_VOLTAGE_V * response[:, self._el_flat].T / self._ft
        self.drift = ElectrodeDrift(n_currents, drift_V_per_sqrt_s, dt)
        # amplifier channels: the recording electrodes, then the stimulating ones
        self._current_order = np.r_[n_inputs:n_currents, :n_inputs]
        self.interface_current_A = np.zeros((0, 0, n_inputs))
        self.bending_deg = np.zeros((0, 0, n_markers))
        self._drift_noise, self._measurement = RowStreams(), RowStreams()
        self.reset(seed)

    # ---- state ------------------------------------------------------------------------------------

    def reset(self, seed=None) -> None:
        """Gel at rest with the bath; re-seed: per batch row (``reservoir.streams``), the drift from the
        row seed's child 0, the white noise from its child 1."""
        self._c: np.ndarray | None = None         # (2, batch, grid, grid): Na+, Cl- in mM
        self._psi = np.zeros((0, self.grid, self.grid))
        self._swell = np.zeros((0, self.grid, self.grid))   # volumetric swelling strain per cell
        self._charge = np.zeros((0, self.n_inputs + self.n_recording))
        self._last_i = np.zeros((0, self.n_inputs + self.n_recording))   # mean currents of the last step
        self.last_step = {}
        self._phase = 0
        self.drift.reset()
        seeds = RowSeeds.of(seed)
        self._drift_noise.reset(seeds.child(0))
        self._measurement.reset(seeds.child(1))

    @property
    def state(self) -> dict[str, np.ndarray]:
        c = np.zeros((2, 0, self.grid, self.grid)) if self._c is None else self._c.copy()
        return {"c_mM": c, "psi": self._psi.copy(), "swell": self._swell.copy(),
                "charge_C": self._charge.copy(), "last_current_A": self._last_i.copy(), "phase": np.array(self._phase),
                "drift": self.drift.state, "drift_rng": self._drift_noise.state(c.shape[1]),
                "rng": self._measurement.state(c.shape[1])}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        c = np.asarray(state["c_mM"], dtype=np.float64)
        g, n_el = self.grid, self.n_inputs + self.n_recording
        batch = c.shape[1] if c.ndim == 4 else -1
        psi, swell = np.asarray(state["psi"], np.float64), np.asarray(state["swell"], np.float64)
        charge = np.asarray(state["charge_C"], np.float64)
        last_i = np.asarray(state["last_current_A"], np.float64)
        if (c.shape != (2, batch, g, g) or psi.shape != (batch, g, g) or swell.shape != (batch, g, g)
                or charge.shape != (batch, n_el) or last_i.shape != (batch, n_el)):
            raise ValueError(f"hydrogel state: c_mM must be (2, batch, {g}, {g}), psi and swell (batch, {g}, "
                             f"{g}), charge_C and last_current_A (batch, {n_el}); got {c.shape}, {psi.shape}, "
                             f"{swell.shape}, {charge.shape}, {last_i.shape}")
        phase = int(state["phase"])
        if not 0 <= phase < self.block:
            raise ValueError(f"hydrogel state: phase must lie in [0, {self.block}), got {phase}")
        self._c = c.copy() if batch else None
        self._psi, self._swell, self._charge, self._phase = psi.copy(), swell.copy(), charge.copy(), phase
        self._last_i = last_i.copy()
        self.drift.load_state(state["drift"])
        self._measurement.load_state(state["rng"], batch)
        self._drift_noise.load_state(state["drift_rng"] if "drift_rng" in state else split_off(state["rng"]),
                                     batch)

    # ---- dynamics ---------------------------------------------------------------------------------

    def run(self, u: np.ndarray) -> np.ndarray:
        """Electrode volts ``(batch, steps, n_inputs)`` -> outputs ``(batch, steps, n_outputs)``: amplifier
        volts and/or marker angles in degrees, as ``outputs`` says."""
        u = check_input(u, self.n_inputs, np.float64)
        batch, steps, _ = u.shape
        n_el = self.n_inputs + self.n_recording
        if self._c is None:
            self._c = np.full((2, batch, self.grid, self.grid), self.c_bath)
            self._psi = np.zeros((batch, self.grid, self.grid))
            self._swell = np.zeros((batch, self.grid, self.grid))
            self._charge = np.zeros((batch, n_el))
            self._last_i = np.zeros((batch, n_el))
        elif self._c.shape[1] != batch:
            raise ValueError(f"state holds a batch of {self._c.shape[1]}, input has {batch}; "
                             "call reset() before changing the batch size")
        current = np.empty((batch, steps, n_el))
        bending = np.empty((batch, steps, self.n_markers))
        start = 0
        while start < steps:
            stop = min(steps, start + self.block - self._phase)
            gain, offset = self._electrode_map()
            current[:, start:stop] = u[:, start:stop] @ gain[:, :, :self.n_inputs].transpose(0, 2, 1)
            current[:, start:stop] -= offset[:, None, :]
            bending[:, start:stop] = (self._swell.reshape(batch, -1) @ self._marker_deg)[:, None]
            self._charge += current[:, start:stop].sum(axis=1) * self.dt
            self._phase += stop - start
            if self._phase == self.block:
                self._step_lattice()
            start = stop
        self.interface_current_A = current[:, :, :self.n_inputs]
        self.bending_deg = bending
        channels = []
        if self.outputs != "bending":
            v = -self.tia_ohm * current[:, :, self._current_order]
            channels.append(v + self.drift(batch, steps, self._drift_noise))
        if self.outputs != "currents":
            channels.append(bending)
        y = channels[0] if len(channels) == 1 else np.concatenate(channels, axis=2)
        if self._noise.any():
            y = y + self._noise * self._measurement.standard_normal(y.shape)
        return y

    def electrode_conductance(self) -> np.ndarray:
        """Ag/AgCl interface conductance ``(batch, n_electrodes)`` (siemens), inputs first."""
        c_cl = self._c[1].reshape(self._c.shape[1], -1)[:, self._el_flat]
        return self.g0_S * np.sqrt(np.maximum(c_cl, 0.0) / self.c_bath)

    def _electrode_map(self) -> tuple[np.ndarray, np.ndarray]:
        """``gain`` ``(batch, n_el, n_el)`` and ``offset`` ``(batch, n_el)``: ``i = gain @ W - offset``."""
        g = self.electrode_conductance()
        n_el = g.shape[1]
        system = np.eye(n_el) + g[:, :, None] * self.r0_ohm
        gain = np.linalg.solve(system, np.eye(n_el) * g[:, None, :])      # (1 + G R0)^-1 G
        phi_0 = (THERMAL_VOLTAGE_V * self._psi.reshape(len(g), -1)[:, self._el_flat]
                 - np.einsum("bj,ij->bi", self._last_i, self.r0_ohm))  # per row
        return gain, np.einsum("bij,bj->bi", gain, phi_0)

    def _bulk_solve(self, r: np.ndarray) -> np.ndarray:
        """``A0^-1 r`` for ``r`` ``(batch, g, g)``: the operator at bulk conductivity (the preconditioner;
        one matrix product per row, so a row's result does not depend on its batch)."""
        q = self._q
        return q @ ((q.T @ r @ q) * self._inv_eig) @ q.T / self._kappa0

    def _solve_potential(self, c: np.ndarray, source: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Potential (thermal volts) ``(batch, g, g)`` from current continuity, warm-started from the last,
        and the conductivity faces ``D_na c_na + D_cl c_cl`` it used.

        ``c`` ``(2, batch, g, g)`` (mM); ``source`` ``(batch, g, g)``: injected current per cell over
        ``F T`` (mol/(m s))."""
        faces = face_means(self.d_na * c[0] + self.d_cl * c[1], self._kappa0)
        diffusion = (self.d_na * outflow(*self._unit_faces, c[0], self.c_bath)
                     - self.d_cl * outflow(*self._unit_faces, c[1], self.c_bath))
        rhs = source - diffusion

        def matvec(x):
            return outflow(*faces, x, 0.0)

        x = self._psi.copy()
        r = rhs - matvec(x)
        norm_rhs = np.sqrt((rhs ** 2).sum(axis=(1, 2))) + 1e-300
        z = self._bulk_solve(r)
        p = z.copy()
        rz = (r * z).sum(axis=(1, 2))
        for _ in range(CG_MAX_ITER):
            active = np.sqrt((r ** 2).sum(axis=(1, 2))) > CG_TOL * norm_rhs
            if not active.any():
                break
            ap = matvec(p)
            # a converged row stops moving, so a row's result does not depend on the rest of its batch
            alpha = np.where(active, rz / np.maximum((p * ap).sum(axis=(1, 2)), 1e-300), 0.0)
            x += alpha[:, None, None] * p
            r -= alpha[:, None, None] * ap
            z = self._bulk_solve(r)
            rz_new = (r * z).sum(axis=(1, 2))
            p = z + (rz_new / np.maximum(rz, 1e-300))[:, None, None] * p
            rz = rz_new
        return x, faces

    def _step_lattice(self) -> None:
        """Solve the potential for the charge passed since the last step, then step both species."""
        batch, g = self._c.shape[1], self.grid
        mean_i = self._charge / self.grid_dt                             # (batch, n_el) amperes
        source = np.zeros((batch, g * g))
        source[:, self._el_flat] = mean_i / self._ft
        source = source.reshape(batch, g, g)
        psi, faces = self._solve_potential(self._c, source)
        new = np.empty_like(self._c)
        for k, (d, z) in enumerate(((self.d_na, 1.0), (self.d_cl, -1.0))):
            c = self._c[k]
            diff = outflow(*self._unit_faces, c, self.c_bath)
            drift = outflow(*face_means(c, self.c_bath), psi, 0.0)
            new[k] = c - self._rate * d * (diff + z * drift)
        new -= self._exchange * (self._c - self.c_bath)                  # salt pairs through the faces
        cl = new[1].reshape(batch, -1)
        cl[:, self._el_flat] -= self._charge * self._cell_mol_per_C     # Ag/AgCl: anodic current takes Cl-
        # current into the bath through the edge faces (half a cell away, bath at c_bath and 0 V)
        to_bath = 2.0 * (faces[2] * psi + self._unit_faces[2] * (self.d_na * (self._c[0] - self.c_bath)
                                                                 - self.d_cl * (self._c[1] - self.c_bath)))
        self.last_step = {"electrode_current_A": mean_i, "bath_current_A": self._ft * to_bath.sum(axis=(1, 2))}
        self._c, self._psi, self._last_i = new, psi, mean_i
        target = self._strain_per_mM * (new[0] + new[1] - 2 * self.c_bath)   # (batch, g, g) Pi / K
        rate = np.where(target > self._swell, self._swell_step, self._deswell_step)
        self._swell += (target - self._swell) * rate
        self._charge[:] = 0.0
        self._phase = 0

    # ---- description ------------------------------------------------------------------------------

    @property
    def electrodes(self) -> tuple[Electrode, ...]:
        """Non-polarisable Ag/AgCl electrodes of interface impedance ``1 / g0_S`` at the bath's salt."""
        return tuple(Electrode(material="Ag/AgCl", impedance_ohm=1.0 / self.g0_S) for _ in range(self.n_inputs))

    def derived(self) -> dict[str, object]:
        """Lattice step, bulk conductivity (S/m), ambipolar diffusion, its one-cell relaxation time and the
        salt exchange time with the bath through the gel's faces, ``T^2 / (pi^2 D_a)`` (seconds)."""
        d_a = 2 * self.d_na * self.d_cl / (self.d_na + self.d_cl)
        return {"lattice_step_s": self.grid_dt,
                "conductivity_S_per_m": FARADAY_C_PER_MOL * self._kappa0 / THERMAL_VOLTAGE_V,
                "ambipolar_diffusion_m2_per_s": d_a, "cell_relaxation_s": self._h ** 2 / (4 * d_a),
                "bath_exchange_s": self._exchange_s}
