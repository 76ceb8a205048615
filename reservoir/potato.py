"""A potato (tuber tissue) between electrodes, built on the echo-state core.

Physical picture: metal electrodes are pushed into the tuber; the tissue between them is an ionic
conductor (cytoplasm and apoplast electrolyte; intact tuber ~0.02-0.1 S/m at low frequency, Angersbach,
Heinz & Knorr 1999, Biotechnol. Prog. 15:753) whose local potential relaxes slowly as ions redistribute
across cell membranes.  The model discretises the tissue into ``N`` volume elements ("nodes") at random
positions inside an ellipsoid; for stimulating electrode ``e`` and node ``j`` with potential ``x_j``::

    R C_dl dv_e/dt = V_e(t) - v_e                          (double layer in series: DC is blocked)
    i_e(t)         = tanh((V_e(t) - v_e(t)) / V_sat)       (interface current, saturating)
    tau_j dx_j/dt  = -x_j + tanh( sum_k W_jk x_k + sum_e G_je i_e(t) + b_j )
    v_m(t)         = gain_V * sum_j H_mj x_j + drift_m(t) + noise_m(t)   (recording electrode m, volts)

- The stimulating interface is the double-layer capacitance ``c_dl_F`` in series with the tissue's
  access resistance ``r_access_ohm`` (``reservoir.electrodes.DoubleLayer``): a voltage step reaches the
  tissue as ``exp(-t / tau_dl)`` with ``tau_dl = r_access_ohm * c_dl_F`` (default 2 kOhm x 100 uF =
  0.2 s: 10-40 uF/cm^2 double layer on a ~5 cm^2 zinc or copper electrode, Merrill, Bikson & Jefferys
  2005, J. Neurosci. Methods 141:171; ~1-5 kOhm spreading resistance of cm-sized electrodes in
  0.02-0.1 S/m tissue).
- The interface current saturates (``V_sat``, default 0.3 V): the limiting-current behaviour of a
  metal/electrolyte interface driven beyond the linear Butler-Volmer region (Bard & Faulkner,
  *Electrochemical Methods*, 2001, ch. 3).  It is applied to the voltage across the series resistance,
  i.e. after the double layer (a static approximation of the coupled nonlinear interface).
- The tissue is integrated every ``tissue_step_s`` (default ``tau_fast_s / 2.5`` rounded down to whole
  samples: 2 ms) on the interface current averaged over that step; nothing in it is faster than
  ``tau_fast_s``, and one step per sample would only cost time.  Each sample reports the tissue's
  last finished step.
- ``tau_j`` are ionic relaxation times drawn log-uniformly in ``[tau_fast_s, tau_slow_s]`` (default
  5 ms to 200 ms: impedance spectra of potato tissue show a beta-dispersion relaxation in the kHz range
  plus a much slower alpha-like polarisation, Hayden, Moyse, Calder, Crawford & Setterfield 1969,
  J. Exp. Bot. 20:177; the range is the slow tail that matters for a 1 kHz reservoir).
- ``W`` couples nodes with a strength that falls as ``exp(-d / coupling_length_mm)`` with distance
  ``d``, normalised to ``spectral_radius``; ``G`` and ``H`` couple electrodes to nodes the same way.
- Recording electrodes add white measurement noise (``noise_V`` RMS per sample) and a 1/f drift
  (``reservoir.electrodes.ElectrodeDrift``) whose RMS change over one second is
  ``drift_V_per_sqrt_s`` (Huigen, Peper & Grimbergen 2002, Med. Biol. Eng. Comput. 40:332).

Inputs are volts on ``n_inputs`` stimulating electrodes; outputs are volts on ``n_outputs`` recording
electrodes.  Electrodes sit evenly on a ring in the tuber's mid-plane, stimulating and recording ones
interleaved.  The state (``state`` / ``load_state``) holds the node potentials ``x``, the double-layer
voltages ``v_dl``, the drift components ``drift``, the noise streams ``rng`` (the core's, unused while
it has no state noise), ``drift_rng`` and ``measurement_rng`` (``(batch, 6)`` each, see
``reservoir.streams``), the
interface current of an unfinished tissue step ``pending_current`` and the output of the last finished
one ``held_V``.
"""

from __future__ import annotations

import numpy as np

from .base import Electrode, Substrate, check_input
from .electrodes import DoubleLayer, ElectrodeDrift
from .esn import EchoStateCore, max_abs_eigenvalue
from .streams import RowSeeds, RowStreams, split_off


class PotatoModel(Substrate):
    """Simulated potato with ``n_inputs`` stimulating and ``n_outputs`` recording electrodes.

    Args:
        n_inputs: stimulating electrodes (input volts).
        n_outputs: recording electrodes (output volts).
        nodes: tissue volume elements ``N``.
        dt: sample period in seconds (default 1 ms, a 1 kHz DAQ).
        tau_fast_s, tau_slow_s: range of ionic relaxation times (seconds).
        v_sat: interface saturation voltage (volts).
        coupling_length_mm: distance over which coupling falls by ``e``.
        spectral_radius: scale of the tissue-to-tissue coupling.
        gain_V: volts on a recording electrode per unit node potential.
        noise_V: white measurement noise (volts RMS per sample).
        drift_V_per_sqrt_s: 1/f drift of each recording electrode (RMS change over 1 s, volts).
        c_dl_F: double-layer capacitance of a stimulating electrode (farads).
        r_access_ohm: access resistance of the tissue in series with it (ohms).
        tissue_step_s: step of the tissue integration, a multiple of ``dt`` (default: the largest one
            up to ``tau_fast_s / 2.5``, i.e. 2 ms for the defaults; ``dt`` reproduces a per-sample step).
        seed: seed of the geometry and weights.
        dtype: ``"float32"`` or ``"float64"``.
        threads: worker threads of the echo-state core (does not change the results).
    """

    def __init__(self, n_inputs: int = 13, n_outputs: int = 16, nodes: int = 200, dt: float = 1e-3,
                 tau_fast_s: float = 5e-3, tau_slow_s: float = 0.2, v_sat: float = 0.3,
                 coupling_length_mm: float = 10.0, spectral_radius: float = 0.9,
                 gain_V: float = 0.01, noise_V: float = 20e-6, drift_V_per_sqrt_s: float = 5e-6,
                 c_dl_F: float = 100e-6, r_access_ohm: float = 2e3, tissue_step_s: float | None = None,
                 seed: int = 0, dtype="float32", threads: int | None = None):
        if min(n_inputs, n_outputs, nodes) < 1:
            raise ValueError("n_inputs, n_outputs and nodes must be positive")
        if not 0 < tau_fast_s <= tau_slow_s:
            raise ValueError("need 0 < tau_fast_s <= tau_slow_s")
        if c_dl_F <= 0 or r_access_ohm <= 0 or v_sat <= 0:
            raise ValueError("c_dl_F, r_access_ohm and v_sat must be positive")
        if noise_V < 0:
            raise ValueError(f"noise_V must be non-negative, got {noise_V}")
        self.v_sat, self.gain_V, self.noise_V = v_sat, gain_V, noise_V
        if tissue_step_s is None:
            tissue_step_s = tau_fast_s / 2.5
        if tissue_step_s <= 0:
            raise ValueError(f"tissue_step_s must be positive, got {tissue_step_s}")
        self.substeps = max(1, int(np.floor(tissue_step_s / dt + 1e-9)))   # samples per tissue step
        self.tau_dl_s = r_access_ohm * c_dl_F
        self.n_inputs, self.n_outputs, self.dt = n_inputs, n_outputs, float(dt)
        rng = np.random.default_rng(seed)
        # tuber: ellipsoid with semi-axes 35 x 25 x 25 mm; nodes uniform inside it
        axes = np.array([35.0, 25.0, 25.0])
        pts = rng.uniform(-1, 1, (4 * nodes, 3))
        pts = pts[np.sum(pts ** 2, axis=1) <= 1][:nodes] * axes
        # electrodes on a ring of radius 20 mm in the mid-plane, inputs and outputs interleaved
        n_el = n_inputs + n_outputs
        ang = 2 * np.pi * np.arange(n_el) / n_el
        ring = np.stack([20 * np.cos(ang), 20 * np.sin(ang), np.zeros(n_el)], axis=1)
        is_input = np.zeros(n_el, bool)
        is_input[np.round(np.linspace(0, n_el, n_inputs, endpoint=False)).astype(int)] = True
        self.electrode_positions_mm = ring
        self.input_electrodes = np.flatnonzero(is_input)
        self.output_electrodes = np.flatnonzero(~is_input)
        self.node_positions_mm = pts

        def kernel(a, b):
            d = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
            return np.exp(-d / coupling_length_mm)

        w = kernel(pts, pts) * rng.choice([-1.0, 1.0], (nodes, nodes))
        np.fill_diagonal(w, 0.0)
        radius = max_abs_eigenvalue(w)
        if radius == 0:  # one node, or nodes too far apart to couple
            raise ValueError(f"the {nodes}-node tissue network has no coupling; use more nodes or a "
                             f"longer coupling_length_mm")
        w *= spectral_radius / radius
        g = kernel(pts, ring[is_input])
        g *= 3.0 / g.max(axis=0, keepdims=True)
        h = kernel(ring[~is_input], pts)
        self.h_t = np.ascontiguousarray((h / h.sum(axis=1, keepdims=True)).T, dtype=dtype)
        tau = np.exp(rng.uniform(np.log(tau_fast_s), np.log(tau_slow_s), nodes))
        leak = np.minimum(self.substeps * dt / tau, 1.0)
        bias = rng.normal(0, 0.1, nodes)
        self.core = EchoStateCore(w, g, bias, leak, noise=0.0, dtype=dtype, dt=self.substeps * dt,
                                  threads=threads)
        self.double_layer = DoubleLayer(n_inputs, self.tau_dl_s, dt)
        self.drift = ElectrodeDrift(n_outputs, drift_V_per_sqrt_s, dt)
        self._drift_noise, self._measurement = RowStreams(), RowStreams()
        self.reset(0)

    def reset(self, seed=None) -> None:
        """Return to rest and re-seed: per batch row (``reservoir.streams``), the core's stream is the row
        seed's child 0, the drift's child 1 and the white measurement noise's child 2."""
        seeds = RowSeeds.of(seed)
        self.core.reset(seeds.child(0))
        self._drift_noise.reset(seeds.child(1))
        self._measurement.reset(seeds.child(2))
        self.double_layer.reset()
        self.drift.reset()
        self._pending = np.zeros((0, 0, self.n_inputs))    # interface current of an unfinished step
        self._held = np.zeros((0, self.n_outputs))         # tissue output of the last finished step

    @property
    def state(self) -> dict[str, np.ndarray]:
        return {**self.core.state, "v_dl": self.double_layer.state, "drift": self.drift.state,
                "drift_rng": self._drift_noise.state(len(self._held)),
                "measurement_rng": self._measurement.state(len(self._held)),
                "pending_current": self._pending.copy(), "held_V": self._held.copy()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.core.load_state(state)
        self.double_layer.load_state(state["v_dl"])
        self.drift.load_state(state["drift"])
        pending = np.asarray(state["pending_current"], dtype=np.float64)
        held = np.asarray(state["held_V"], dtype=np.float64)
        if (pending.ndim != 3 or pending.shape[1] >= self.substeps or pending.shape[2] != self.n_inputs
                or held.shape != (len(pending), self.n_outputs)):
            raise ValueError("potato state: pending_current must be (batch, < substeps, n_inputs) and "
                             "held_V (batch, n_outputs)")
        self._measurement.load_state(state["measurement_rng"], len(held))
        # state saved before the drift had a stream of its own drew it from the measurement stream
        drift_words = state["drift_rng"] if "drift_rng" in state else split_off(state["measurement_rng"])
        self._drift_noise.load_state(drift_words, len(held))
        self._pending, self._held = pending.copy(), held.copy()

    def run(self, u: np.ndarray) -> np.ndarray:
        """Electrode volts ``(batch, steps, n_inputs)`` -> recorded volts ``(batch, steps, n_outputs)``."""
        u = check_input(u, self.n_inputs, np.float64)
        batch, steps, _ = u.shape
        current = np.tanh(self.double_layer(u) / self.v_sat)
        if len(self._held) != batch:
            self._pending = np.zeros((batch, 0, self.n_inputs))
            self._held = np.zeros((batch, self.n_outputs))
        v = self._tissue(current)
        v += self.drift(batch, steps, self._drift_noise)
        if self.noise_V > 0:
            v += self.noise_V * self._measurement.standard_normal(v.shape)
        return v

    def _tissue(self, current: np.ndarray) -> np.ndarray:
        """Interface currents ``(batch, steps, n_inputs)`` -> tissue volts at the recording electrodes.

        The tissue steps once per ``substeps`` samples on the mean current of those samples; each
        sample reads the output of the last finished tissue step (a causal hold of at most
        ``substeps - 1`` samples).  Samples of an unfinished step wait in ``_pending``.
        """
        batch, steps, _ = current.shape
        k, done = self.substeps, self._pending.shape[1]
        joined = np.concatenate([self._pending, current], axis=1)
        n_windows = joined.shape[1] // k
        windows = joined[:, :n_windows * k].reshape(batch, n_windows, k, self.n_inputs).mean(axis=2)
        self._pending = joined[:, n_windows * k:].copy()
        x = self.core.run(windows)
        tissue_v = np.concatenate([self._held[:, None], (x @ self.h_t) * self.gain_V], axis=1)
        self._held = tissue_v[:, -1].astype(np.float64)
        # sample j of this block ends at joined index done + j + 1: the last finished step is that // k
        return tissue_v[:, (done + np.arange(1, steps + 1)) // k].astype(np.float64)

    @property
    def electrodes(self) -> tuple[Electrode, ...]:
        """Each stimulating electrode sees the tissue's access resistance ``r_access_ohm``."""
        return tuple(Electrode(impedance_ohm=float(self.get_params()["r_access_ohm"]))
                     for _ in range(self.n_inputs))

    def derived(self) -> dict[str, object]:
        """``tau_dl_s``: the double layer's ``r_access_ohm * c_dl_F``; ``substeps``: samples per tissue step."""
        return {"tau_dl_s": self.tau_dl_s, "substeps": self.substeps}
