"""SimDevice: an in-process device that plays stimulus into a simulated Substrate.

Response sample ``k`` is the substrate's output while stimulus sample ``k`` is applied (no latency).
Reading past the written stimulus keeps sampling with the stimulus electrodes held at their rest level
(``rest_V``), as a DAQ whose input clock runs on after its outputs were driven to rest.  ``rest`` is a
no-op that still reports (a simulated substrate has no electrode left charged).  Its ``electrodes`` are
the ones its substrate declares (a simulation's own model of its electrodes; hardware never sees them).
"""

from __future__ import annotations

import numpy as np

from prclab.reservoir import Electrode, Substrate, electrodes_of

from .base import Device, DeviceChannels, DeviceError, voltage_channels


class SimDevice(Device):
    """Device backed by ``substrate`` stepping at ``rate_hz`` (must match ``1 / substrate.dt``).

    Args:
        substrate: any Substrate; its inputs are the stimulus channels, its outputs the responses.
        rate_hz: sample rate in hertz.
        stimulus_range_V: ``(low, high)`` range of every stimulus channel, volts.
        response_range_V: ``(low, high)`` nominal range of every response channel, volts.
        seed: seed passed to ``substrate.reset`` at ``open``.
    """

    name = "sim"

    def __init__(self, substrate: Substrate, rate_hz: float, stimulus_range_V=(-1.0, 1.0),
                 response_range_V=(-10.0, 10.0), seed: int = 0):
        channels = DeviceChannels(
            stimulus=voltage_channels("stim", substrate.n_inputs, *stimulus_range_V),
            response=voltage_channels("resp", substrate.n_outputs, *response_range_V),
            rate_hz=float(rate_hz))
        super().__init__(channels)
        self.substrate = substrate
        self.seed = seed
        self._pending = np.zeros((0, substrate.n_outputs))
        self._n_written = 0
        self._n_read = 0

    @property
    def electrodes(self) -> tuple[Electrode, ...]:
        """The substrate's declared electrodes, one per stimulus channel."""
        return electrodes_of(self.substrate)

    def _open(self) -> None:
        self.substrate.reset(self.seed)
        self._pending = np.zeros((0, self.substrate.n_outputs))
        self._n_written = self._n_read = 0

    def _close(self) -> None:
        self._pending = np.zeros((0, self.substrate.n_outputs))

    def _write(self, block: np.ndarray) -> None:
        y = self.substrate.run(block[None])[0]
        self._pending = np.concatenate([self._pending, y]) if len(self._pending) else \
            np.asarray(y, dtype=np.float64)
        self._n_written += len(block)
        if len(block):
            self.output_V = block[-1].copy()

    def _read(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        short = n - len(self._pending)
        if short > 0:
            self._write(np.repeat(self.rest_V[None], short, axis=0))
        samples, self._pending = self._pending[:n], self._pending[n:]
        t = (self._n_read + np.arange(n)) / self.channels.rate_hz
        self._n_read += n
        if samples.shape != (n, len(self.channels.response)):
            raise DeviceError(f"{self.name}: substrate returned {samples.shape}")
        return np.asarray(samples, dtype=np.float64), t

    def _stimulus_position(self) -> int:
        return self._n_written

    def describe(self) -> dict:
        """The device's description with its substrate's (``substrate``) and the seed of the substrate's
        ``reset`` at ``open`` (``seed``): what ``reservoir.substrate_from_description`` and a SimDevice of
        that seed need to reproduce every response."""
        return {**super().describe(), "substrate": self.substrate.describe(), "seed": self.seed}
