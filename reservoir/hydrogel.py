"""An ionic hydrogel between electrodes: ions diffusing on a 2-D grid, memristive electrode conductance.

Physical picture: a thin ionically conducting gel (e.g. polyacrylamide swollen with a salt solution;
0.1-10 S/m, Keplinger et al. 2013, Science 341:984) carries electrodes on a ring.  Current through a
stimulating electrode moves ions into or out of the gel next to it; the local ion concentration sets
the local conductivity, so the electrode's conductance remembers the charge that has passed: a
memristive element with a pinched current-voltage hysteresis loop (Chua 1971, IEEE Trans. Circuit
Theory 18:507; seen in soft-matter gel devices over seconds to tens of seconds, Koo, So, Dickey &
Velev 2011, Adv. Mater. 23:3559).  Injected ions spread by diffusion and are slowly taken up by the
gel's fixed charges.

State: the relative excess ion concentration ``n = c / c0 - 1`` on an ``grid x grid`` lattice of
``cell_um`` cells (dimensionless, ``n >= -0.99``: a cell cannot be emptied).  Per stimulating electrode
``e`` at cell ``r_e`` with applied voltage ``V_e`` (volts)::

    g_e      = g0_S * (1 + s(n(r_e)))                      (conductivity ~ concentration, saturating)
    s(n)     = n for n <= 0,  n_sat tanh(n / n_sat) for n > 0
    i_e      = g_e * V_e                                    (amperes; non-polarisable Ag/AgCl electrodes)
    dn/dt    = D lap(n) - n / tau_bind_s + sum_e i_e delta(r - r_e) / (F c0 V_cell)
    v_m      = sum_e R_tr exp(-d_me / lambda) i_e + (kT/e) ln(1 + n(r_m)) + drift_m + noise_m

- ``D`` (``diffusion_m2_per_s``, default 1e-9 m^2/s): small ions in a hydrogel diffuse at 0.5-2e-9 m^2/s,
  a little slower than in water (Amsden 1998, Macromolecules 31:8382).  With 100 um cells the electrode
  cell relaxes by diffusion with ``cell^2 / (4 D)`` = 2.5 s, and ``tau_bind_s`` (default 10 s) removes
  ions everywhere: the memory is seconds long, against milliseconds for the potato.
- Conductivity grows with concentration (Kohlrausch) but saturates at ``1 + n_sat`` times the bulk
  value (ion pairing and crowding at high concentration); without that bound the loop "more ions ->
  more current -> more ions" would run away under a sustained voltage.
- ``F c0 V_cell`` is the charge of the bulk ions in one cell (``c0_mM``, ``cell_um`` squared times
  ``thickness_um``); ``g0_S`` (default 1 uS, a ~100 um electrode) sets how fast a current fills it.
- Recording electrodes see the injected currents through the gel's resistance (``transfer_ohm``, falling
  with distance over ``coupling_length_um``; weak: a few mV per uA at neighbouring electrodes) and the
  Nernst (concentration-cell) potential of their own cell, ``kT/e = 25.7 mV`` per e-fold, then 1/f
  drift and white noise as for the potato (``reservoir.electrodes.ElectrodeDrift``).

Numerics: the lattice is stepped by explicit Euler with the 5-point Laplacian and no-flux gel edges
(vectorised over batch and cells), every ``grid_step_s`` (default 10 ms, at most a fifth of the explicit
stability limit ``cell^2 / (4 D)``).  Within one lattice step the conductances are held, so the currents
and outputs of all its samples are computed at once; the charge each electrode passed is injected at
the lattice step.  The current through each stimulating electrode over the last ``run`` (what a
potentiostat measures) is kept in ``interface_current_A`` ``(batch, steps, n_inputs)``.

Hysteresis (defaults, one electrode, 1 V triangle sweep, I-V loop area summed over both lobes, third
cycle): 0.07, 0.27, 0.66, 1.13 and 0.52 uA V for sweep periods of 0.5, 2, 5, 20 and 60 s.  The loop
grows as the sweep slows towards the seconds-scale memory and closes again when the sweep is slow
enough for the concentration to follow it (the memristor's frequency dependence, Chua 1971).
"""

from __future__ import annotations

import numpy as np

from .base import Electrode, Substrate, check_input
from .electrodes import ElectrodeDrift
from .streams import RowSeeds, RowStreams, split_off

FARADAY_C_PER_MOL = 96485.33
THERMAL_VOLTAGE_V = 0.0257   # kT/e at 25 C
N_MIN = -0.99                # a cell keeps at least 1 % of its ions


def ring_cells(n_electrodes: int, grid: int, radius_frac: float = 0.35) -> np.ndarray:
    """``(n_electrodes, 2)`` distinct (row, col) cells evenly on a ring around the grid centre."""
    ang = 2 * np.pi * np.arange(n_electrodes) / n_electrodes
    centre = (grid - 1) / 2
    cells = np.rint(np.stack([centre + radius_frac * grid * np.sin(ang),
                              centre + radius_frac * grid * np.cos(ang)], axis=1)).astype(int)
    if len({tuple(c) for c in cells}) < n_electrodes:
        raise ValueError(f"{n_electrodes} electrodes do not fit on a ring of a {grid} x {grid} grid; "
                         "use a larger grid")
    return cells


def laplacian_no_flux(n: np.ndarray) -> np.ndarray:
    """5-point Laplacian (per cell^2) of ``n`` ``(batch, rows, cols)`` with reflecting (no-flux) edges."""
    lap = -4.0 * n
    lap[:, 1:] += n[:, :-1]
    lap[:, :-1] += n[:, 1:]
    lap[:, :, 1:] += n[:, :, :-1]
    lap[:, :, :-1] += n[:, :, 1:]
    lap[:, 0] += n[:, 0]
    lap[:, -1] += n[:, -1]
    lap[:, :, 0] += n[:, :, 0]
    lap[:, :, -1] += n[:, :, -1]
    return lap


class HydrogelModel(Substrate):
    """Simulated ionic hydrogel with ``n_inputs`` stimulating and ``n_outputs`` recording electrodes.

    Args:
        n_inputs: stimulating electrodes (input volts).
        n_outputs: recording electrodes (output volts).
        dt: sample period in seconds.
        grid: lattice side in cells.
        cell_um: cell side (micrometres).
        thickness_um: gel thickness (micrometres).
        diffusion_m2_per_s: ion diffusion coefficient in the gel.
        tau_bind_s: lifetime of excess ions (uptake by the gel's fixed charges), seconds.
        c0_mM: bulk ion concentration (millimolar).
        g0_S: electrode conductance at bulk concentration (siemens).
        n_sat: conductance saturates at ``(1 + n_sat) * g0_S``.
        transfer_ohm: gel resistance from a stimulating to a recording electrode at zero distance.
        coupling_length_um: distance over which that transfer resistance falls by ``e``.
        noise_V: white measurement noise (volts RMS per sample).
        drift_V_per_sqrt_s: 1/f drift of each recording electrode (RMS change over 1 s, volts).
        grid_step_s: lattice time step (seconds), a multiple of ``dt`` after rounding.
        seed: seed of the noise and drift until ``reset`` re-seeds them (the layout is fixed).
    """

    def __init__(self, n_inputs: int = 4, n_outputs: int = 8, dt: float = 1e-3, grid: int = 24,
                 cell_um: float = 100.0, thickness_um: float = 100.0, diffusion_m2_per_s: float = 1e-9,
                 tau_bind_s: float = 10.0, c0_mM: float = 10.0, g0_S: float = 1e-6, n_sat: float = 3.0,
                 transfer_ohm: float = 5e3, coupling_length_um: float = 500.0, noise_V: float = 10e-6,
                 drift_V_per_sqrt_s: float = 5e-6, grid_step_s: float = 0.01, seed: int = 0):
        if min(n_inputs, n_outputs, grid) < 1:
            raise ValueError("n_inputs, n_outputs and grid must be positive")
        if min(dt, cell_um, thickness_um, diffusion_m2_per_s, tau_bind_s, c0_mM, g0_S,
               coupling_length_um, grid_step_s, n_sat) <= 0:
            raise ValueError("dt, lengths, diffusion, tau_bind_s, c0_mM, g0_S, n_sat and grid_step_s "
                             "must be positive")
        if transfer_ohm < 0 or noise_V < 0:
            raise ValueError("transfer_ohm and noise_V must be non-negative")
        cell_m = cell_um * 1e-6
        limit_s = cell_m ** 2 / (4 * diffusion_m2_per_s)
        if grid_step_s > limit_s / 5:
            raise ValueError(f"grid_step_s={grid_step_s} s exceeds a fifth of the explicit stability "
                             f"limit cell^2/(4D) = {limit_s:.3g} s")
        self.g0_S, self.n_sat, self.noise_V = g0_S, n_sat, noise_V
        self.n_inputs, self.n_outputs, self.dt = n_inputs, n_outputs, float(dt)
        self.block = max(1, int(round(grid_step_s / dt)))   # samples per lattice step
        self.grid_dt = self.block * self.dt
        self.grid = grid
        # electrodes on a ring, inputs and outputs interleaved as on the potato
        n_el = n_inputs + n_outputs
        cells = ring_cells(n_el, grid)
        is_input = np.zeros(n_el, bool)
        is_input[np.round(np.linspace(0, n_el, n_inputs, endpoint=False)).astype(int)] = True
        self.input_cells, self.output_cells = cells[is_input], cells[~is_input]
        self._in_flat = self.input_cells[:, 0] * grid + self.input_cells[:, 1]
        self._out_flat = self.output_cells[:, 0] * grid + self.output_cells[:, 1]
        dist_um = cell_um * np.linalg.norm(self.input_cells[:, None] - self.output_cells[None], axis=2)
        self.transfer = transfer_ohm * np.exp(-dist_um / coupling_length_um)   # (n_inputs, n_outputs)
        self._diff = diffusion_m2_per_s * self.grid_dt / cell_m ** 2              # <= 0.05
        self._decay = self.grid_dt / tau_bind_s
        cell_charge_C = FARADAY_C_PER_MOL * c0_mM * cell_m ** 2 * thickness_um * 1e-6
        self._n_per_C = 1.0 / cell_charge_C
        self.drift = ElectrodeDrift(n_outputs, drift_V_per_sqrt_s, dt)
        self.interface_current_A = np.zeros((0, 0, n_inputs))
        self._drift_noise, self._measurement = RowStreams(), RowStreams()
        self.reset(seed)

    def reset(self, seed=None) -> None:
        """Bulk concentration everywhere, no pending charge; re-seed: per batch row (``reservoir.streams``),
        the drift from the row seed's child 0, the white noise from its child 1."""
        self._n: np.ndarray | None = None
        self._charge = np.zeros((0, self.n_inputs))
        self._phase = 0
        self.drift.reset()
        seeds = RowSeeds.of(seed)
        self._drift_noise.reset(seeds.child(0))
        self._measurement.reset(seeds.child(1))

    @property
    def state(self) -> dict[str, np.ndarray]:
        n = np.zeros((0, self.grid, self.grid)) if self._n is None else self._n.copy()
        return {"n": n, "charge_C": self._charge.copy(), "phase": np.array(self._phase),
                "drift": self.drift.state, "drift_rng": self._drift_noise.state(len(n)),
                "rng": self._measurement.state(len(n))}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        n = np.asarray(state["n"], dtype=np.float64)
        charge = np.asarray(state["charge_C"], dtype=np.float64)
        if n.ndim != 3 or n.shape[1:] != (self.grid, self.grid) or charge.shape != (len(n), self.n_inputs):
            raise ValueError(f"hydrogel state: n must be (batch, {self.grid}, {self.grid}) and charge_C "
                             f"(batch, {self.n_inputs}), got {n.shape} and {charge.shape}")
        phase = int(state["phase"])
        if not 0 <= phase < self.block:
            raise ValueError(f"hydrogel state: phase must lie in [0, {self.block}), got {phase}")
        self._n = n.copy() if len(n) else None
        self._charge, self._phase = charge.copy(), phase
        self.drift.load_state(state["drift"])
        self._measurement.load_state(state["rng"], len(n))
        # state saved before the drift had a stream of its own drew it from this one
        self._drift_noise.load_state(state["drift_rng"] if "drift_rng" in state else split_off(state["rng"]),
                                     len(n))

    def run(self, u: np.ndarray) -> np.ndarray:
        """Electrode volts ``(batch, steps, n_inputs)`` -> recorded volts ``(batch, steps, n_outputs)``."""
        u = check_input(u, self.n_inputs, np.float64)
        batch, steps, _ = u.shape
        if self._n is None:
            self._n = np.zeros((batch, self.grid, self.grid))
            self._charge = np.zeros((batch, self.n_inputs))
        elif len(self._n) != batch:
            raise ValueError(f"state holds a batch of {len(self._n)}, input has {batch}; "
                             "call reset() before changing the batch size")
        current = np.empty((batch, steps, self.n_inputs))
        nernst = np.empty((batch, steps, self.n_outputs))
        start = 0
        while start < steps:
            stop = min(steps, start + self.block - self._phase)
            flat = self._n.reshape(batch, -1)
            g = self._conductance(flat[:, self._in_flat])                       # (batch, n_inputs)
            current[:, start:stop] = g[:, None, :] * u[:, start:stop]
            nernst[:, start:stop] = THERMAL_VOLTAGE_V * np.log1p(flat[:, self._out_flat])[:, None, :]
            self._charge += current[:, start:stop].sum(axis=1) * self.dt
            self._phase += stop - start
            if self._phase == self.block:
                self._step_lattice()
            start = stop
        self.interface_current_A = current
        v = current @ self.transfer
        v += nernst
        v += self.drift(batch, steps, self._drift_noise)
        if self.noise_V > 0:
            v += self.noise_V * self._measurement.standard_normal(v.shape)
        return v

    def _conductance(self, n: np.ndarray) -> np.ndarray:
        """Electrode conductance (siemens) at relative excess concentration ``n``."""
        n_sat = self.n_sat
        return self.g0_S * (1.0 + np.where(n > 0, n_sat * np.tanh(n / n_sat), n))

    def _step_lattice(self) -> None:
        """One explicit Euler step of the lattice, injecting the charge passed since the last one."""
        n = self._n
        dn = self._diff * laplacian_no_flux(n)
        dn -= self._decay * n
        flat = dn.reshape(len(n), -1)
        flat[:, self._in_flat] += self._charge * self._n_per_C    # electrode cells are distinct
        n += dn
        np.maximum(n, N_MIN, out=n)
        self._charge[:] = 0.0
        self._phase = 0

    @property
    def electrodes(self) -> tuple[Electrode, ...]:
        """Non-polarisable Ag/AgCl electrodes of impedance ``1 / g0_S`` at bulk concentration."""
        return tuple(Electrode(material="Ag/AgCl", impedance_ohm=1.0 / self.g0_S) for _ in range(self.n_inputs))

    def derived(self) -> dict[str, object]:
        """``lattice_step_s``: the lattice time step after rounding to whole samples."""
        return {"lattice_step_s": self.grid_dt}
