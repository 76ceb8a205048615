"""An example substrate for the tests: a bank of RC low-pass filters on random mixes of the inputs.

It shows what a new substrate takes: this one module (a ``prclab.reservoir.Substrate`` subclass whose
constructor keywords are its parameters, with noise from ``prclab.reservoir.streams``) and one registry
entry, ``SUBSTRATES["rc"] = SubstrateEntry(RCFilter, "n_outputs", 10)``, which the tests add at test time.

Output ``k`` (volts) is a capacitor charged through a resistor from a fixed mix of the input volts, its
time constant ``tau_k = R C_k`` spread evenly in log-time over ``[tau_min_s, tau_max_s]``::

    tau_k dv_k/dt = -v_k + sum_e M_ek V_e(t)        M_ek ~ U(-1, 1) / n_inputs, drawn from ``seed``
    y_k[t]        = v_k[t] + noise_V n_k[t]           n_k white, unit variance

stepped exactly for an input held over each sample: ``v[t] = r v[t-1] + (1 - r) (M^T V)[t]``,
``r = exp(-dt / tau)``.
"""

from __future__ import annotations

import numpy as np

from prclab.reservoir import Substrate
from prclab.reservoir.base import check_input
from prclab.reservoir.electrodes import first_order
from prclab.reservoir.streams import RowSeeds, RowStreams


class RCFilter(Substrate):
    """``n_outputs`` RC low-passes on random mixes of ``n_inputs`` input volts (see the module docstring).

    Args:
        n_inputs, n_outputs: input and output channels.
        tau_min_s, tau_max_s: range of the time constants (seconds).
        noise_V: white measurement noise (volts RMS per sample).
        dt: sample period in seconds.
        seed: seed of the mix (and of the noise until ``reset`` re-seeds it).
    """

    def __init__(self, n_inputs: int, n_outputs: int = 8, tau_min_s: float = 2e-3, tau_max_s: float = 0.1,
                 noise_V: float = 1e-4, dt: float = 1e-3, seed: int = 0):
        if min(n_inputs, n_outputs) < 1 or not 0 < tau_min_s <= tau_max_s or noise_V < 0 or dt <= 0:
            raise ValueError("need positive channel counts, 0 < tau_min_s <= tau_max_s, dt > 0, noise_V >= 0")
        self.n_inputs, self.n_outputs, self.dt = n_inputs, n_outputs, float(dt)
        self.mix = np.random.default_rng(seed).uniform(-1.0, 1.0, (n_inputs, n_outputs)) / n_inputs
        self.r = np.exp(-dt / np.geomspace(tau_min_s, tau_max_s, n_outputs))
        self.noise_V = noise_V
        self._noise = RowStreams()
        self.reset(seed)

    def reset(self, seed=None) -> None:
        """Capacitors discharged; noise re-seeded (one stream per batch row)."""
        self._v = np.zeros((0, self.n_outputs))
        self._noise.reset(RowSeeds.of(seed))

    @property
    def state(self) -> dict[str, np.ndarray]:
        return {"v": self._v.copy(), "rng": self._noise.state(len(self._v))}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        v = np.asarray(state["v"], dtype=np.float64)
        if v.ndim != 2 or v.shape[1] != self.n_outputs:
            raise ValueError(f"rc state 'v' must be (batch, {self.n_outputs}), got {v.shape}")
        self._v = v.copy()
        self._noise.load_state(state["rng"], len(v))

    def run(self, u: np.ndarray) -> np.ndarray:
        """Input volts ``(batch, steps, n_inputs)`` -> capacitor volts ``(batch, steps, n_outputs)``."""
        u = check_input(u, self.n_inputs, np.float64)
        batch, steps, _ = u.shape
        if len(self._v) == 0:
            self._v = np.zeros((batch, self.n_outputs))
        elif len(self._v) != batch:
            raise ValueError(f"state holds a batch of {len(self._v)}, input has {batch}; call reset() first")
        drive = u @ self.mix
        y = np.stack([first_order(drive[:, :, k], r, 1.0 - r, self._v[:, k]) for k, r in enumerate(self.r)],
                     axis=2)
        if steps:
            self._v = y[:, -1].copy()
        if self.noise_V > 0:
            y += self.noise_V * self._noise.standard_normal(y.shape)
        return y
