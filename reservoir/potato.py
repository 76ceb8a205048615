"""A potato (tuber tissue) between electrodes, built on the echo-state core.

Physical picture: metal electrodes are pushed into the tuber; the tissue between them is an ionic
conductor (cytoplasm and apoplast electrolyte, ~0.1-1 S/m) whose local potential relaxes slowly as ions
redistribute across cell membranes.  The model discretises the tissue into ``N`` volume elements
("nodes") at random positions inside an ellipsoid, and for node ``j`` with potential ``x_j``::

    tau_j dx_j/dt = -x_j + tanh( sum_k W_jk x_k + sum_e G_je i_e(t) + b_j )
    i_e(t)       = tanh(V_e(t) / V_sat)                        (electrode interface, saturating)
    v_m(t)       = gain_V * sum_j H_mj x_j + drift + noise      (recording electrode m, volts)

- ``tau_j`` are ionic relaxation times drawn log-uniformly in ``[tau_fast_s, tau_slow_s]``
  (default 5 ms to 200 ms: impedance spectra of potato tissue show a beta-dispersion relaxation in the
  kHz range plus a much slower alpha-like electrode/tissue polarisation; the range is deliberately the
  slow tail that matters for a 1 kHz reservoir).
- ``W`` couples nodes with a strength that falls as ``exp(-d / coupling_length_mm)`` with distance
  ``d``, normalised to ``spectral_radius``; ``G`` and ``H`` couple electrodes to nodes the same way.
- The interface current saturates (``V_sat``, default 0.3 V), the limiting-current behaviour of a
  metal/electrolyte interface driven beyond the linear Butler-Volmer region.
- Recording electrodes add white measurement noise (``noise_V``) and a slow random-walk drift
  (``drift_V_per_sqrt_s``), the electrode-potential wander seen in any biological electrochemical cell.

Inputs are volts on ``n_inputs`` stimulating electrodes; outputs are volts on ``n_outputs`` recording
electrodes.  Electrodes sit evenly on a ring in the tuber's mid-plane, stimulating and recording ones
interleaved.
"""

from __future__ import annotations

import numpy as np

from .base import check_input
from .esn import EchoStateCore, max_abs_eigenvalue


class PotatoModel:
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
        drift_V_per_sqrt_s: random-walk drift of each recording electrode.
        seed: seed of the geometry and weights.
        dtype: ``"float32"`` or ``"float64"``.
    """

    def __init__(self, n_inputs: int = 13, n_outputs: int = 16, nodes: int = 200, dt: float = 1e-3,
                 tau_fast_s: float = 5e-3, tau_slow_s: float = 0.2, v_sat: float = 0.3,
                 coupling_length_mm: float = 10.0, spectral_radius: float = 0.9,
                 gain_V: float = 0.01, noise_V: float = 20e-6, drift_V_per_sqrt_s: float = 5e-6,
                 seed: int = 0, dtype="float32"):
        if min(n_inputs, n_outputs, nodes) < 1:
            raise ValueError("n_inputs, n_outputs and nodes must be positive")
        if not 0 < tau_fast_s <= tau_slow_s:
            raise ValueError("need 0 < tau_fast_s <= tau_slow_s")
        self.params = dict(n_inputs=n_inputs, n_outputs=n_outputs, nodes=nodes, dt=dt,
                           tau_fast_s=tau_fast_s, tau_slow_s=tau_slow_s, v_sat=v_sat,
                           coupling_length_mm=coupling_length_mm, spectral_radius=spectral_radius,
                           gain_V=gain_V, noise_V=noise_V, drift_V_per_sqrt_s=drift_V_per_sqrt_s,
                           seed=seed, dtype=str(np.dtype(dtype)))
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
        w *= spectral_radius / max_abs_eigenvalue(w)
        g = kernel(pts, ring[is_input])
        g *= 3.0 / g.max(axis=0, keepdims=True)
        h = kernel(ring[~is_input], pts)
        self.h_t = np.ascontiguousarray((h / h.sum(axis=1, keepdims=True)).T, dtype=dtype)
        tau = np.exp(rng.uniform(np.log(tau_fast_s), np.log(tau_slow_s), nodes))
        leak = np.minimum(dt / tau, 1.0)
        bias = rng.normal(0, 0.1, nodes)
        self.core = EchoStateCore(w, g, bias, leak, noise=0.0, dtype=dtype, dt=dt)
        self._rng = np.random.default_rng(0)
        self._drift: np.ndarray | None = None

    def reset(self, seed: int | None = None) -> None:
        """Return to rest and re-seed measurement noise and drift."""
        self.core.reset(seed)
        self._rng = np.random.default_rng(None if seed is None else seed + 1)
        self._drift = None

    @property
    def state(self) -> dict[str, np.ndarray]:
        drift = self._drift if self._drift is not None else np.zeros((0, self.n_outputs))
        return {**self.core.state, "drift": drift.copy()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.core.load_state(state)
        drift = np.asarray(state["drift"], dtype=float)
        self._drift = drift.copy() if len(drift) else None

    def run(self, u: np.ndarray) -> np.ndarray:
        """Electrode volts ``(batch, steps, n_inputs)`` -> recorded volts ``(batch, steps, n_outputs)``."""
        u = check_input(u, self.n_inputs, self.core.dtype)
        batch, steps, _ = u.shape
        current = np.tanh(u / self.params["v_sat"])
        x = self.core.run(current)
        v = (x @ self.h_t).astype(np.float64) * self.params["gain_V"]
        if self._drift is None:
            self._drift = np.zeros((batch, self.n_outputs))
        step_sd = self.params["drift_V_per_sqrt_s"] * np.sqrt(self.dt)
        walk = np.cumsum(self._rng.normal(0, step_sd, (batch, steps, self.n_outputs)), axis=1)
        walk += self._drift[:, None, :]
        self._drift = walk[:, -1].copy()
        v += walk
        v += self._rng.normal(0, self.params["noise_V"], v.shape)
        return v

    def describe(self) -> dict:
        return {"model": "potato", **self.params}
