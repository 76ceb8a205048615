"""The Device contract: how the runner talks to hardware, emulators, simulations and replays.

Every device is a context manager (``open()`` / ``close()``) with:

- ``channels``: a :class:`DeviceChannels` naming each stimulus and response channel with its unit and
  range, and the common sample rate in hertz;
- ``write(block)``: queue stimulus samples, ``block`` of shape ``(n, n_stimulus)`` in the stimulus
  channels' units (volts for voltage outputs), at the device's sample rate;
- ``read(n) -> (samples, timestamps)``: the next ``n`` response samples, ``(n, n_response)`` float64 in
  the response channels' units, and their acquisition times ``(n,)`` in seconds on the device clock
  (monotone, starting near 0 at ``open``);
- ``mark(label)``: put an event into the response stream at the current stimulus position;
  ``events()`` returns the events seen so far as ``(response_sample_index, label)`` pairs, which is how
  the runner aligns stimulus and response when the device has latency.

A stimulus sample outside its channel's range is refused with :class:`DeviceError` before anything is
sent: the device's own range check is the last line of defence behind the protocol's safety layer.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass

import numpy as np

from prclab import PrclabError


class DeviceError(PrclabError):
    """A device failed or was misused; the message names the device and the fault."""


@dataclass(frozen=True)
class ChannelInfo:
    """One channel: ``name``, physical ``unit`` (e.g. ``"V"``, ``"A"``) and range ``[low, high]``."""

    name: str
    unit: str
    low: float
    high: float


@dataclass(frozen=True)
class DeviceChannels:
    """Stimulus and response channels of a device and their common sample rate (hertz)."""

    stimulus: tuple[ChannelInfo, ...]
    response: tuple[ChannelInfo, ...]
    rate_hz: float

    def describe(self) -> dict:
        return {"rate_hz": self.rate_hz,
                "stimulus": [asdict(c) for c in self.stimulus],
                "response": [asdict(c) for c in self.response]}

    @property
    def stimulus_low(self) -> np.ndarray:
        return np.array([c.low for c in self.stimulus])

    @property
    def stimulus_high(self) -> np.ndarray:
        return np.array([c.high for c in self.stimulus])


def voltage_channels(prefix: str, count: int, low: float, high: float, unit: str = "V"):
    """``count`` channels named ``{prefix}{i}`` with a common unit and range."""
    return tuple(ChannelInfo(f"{prefix}{i}", unit, float(low), float(high)) for i in range(count))


class Device(abc.ABC):
    """Base class of all devices: context management, state checks and stimulus validation.

    Subclasses implement ``_open``, ``_close``, ``_write``, ``_read`` and may override ``mark``.
    """

    name = "device"
    #: the hardware_sims emulator behind this device in a rehearsal (``--emulate``), else None;
    #: tests and rehearsals inject faults through its ``inject(fault)``
    emulator = None

    def __init__(self, channels: DeviceChannels):
        self.channels = channels
        self.is_open = False
        self._events: list[tuple[int, str]] = []

    # -- lifecycle -------------------------------------------------------------------------------
    def open(self) -> "Device":
        if not self.is_open:
            self._events = []
            self._open()
            self.is_open = True
        return self

    def close(self) -> None:
        if self.is_open:
            self.is_open = False
            self._close()

    def __enter__(self) -> "Device":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- streaming -------------------------------------------------------------------------------
    def write(self, block: np.ndarray) -> None:
        """Queue stimulus ``block`` ``(n, n_stimulus)``; refuses out-of-range samples."""
        self._require_open()
        block = np.asarray(block, dtype=np.float64)
        n_stim = len(self.channels.stimulus)
        if block.ndim != 2 or block.shape[1] != n_stim:
            raise DeviceError(f"{self.name}: stimulus block must be (n, {n_stim}), got {block.shape}")
        bad = ~np.isfinite(block) | (block < self.channels.stimulus_low) | \
            (block > self.channels.stimulus_high)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            ch = self.channels.stimulus[col]
            raise DeviceError(f"{self.name}: stimulus sample {row} on {ch.name} is {block[row, col]!r} "
                              f"{ch.unit}, outside [{ch.low}, {ch.high}]; nothing was sent")
        self._write(block)

    def read(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Next ``n`` response samples ``(n, n_response)`` and their times ``(n,)`` in seconds."""
        self._require_open()
        if n < 0:
            raise DeviceError(f"{self.name}: cannot read {n} samples")
        return self._read(int(n))

    def mark(self, label: str) -> None:
        """Put event ``label`` into the response stream at the current stimulus position."""
        self._require_open()
        self._events.append((self._stimulus_position(), str(label)))

    def events(self) -> list[tuple[int, str]]:
        """Events so far as ``(response_sample_index, label)``, in order."""
        return list(self._events)

    def describe(self) -> dict:
        """JSON-able description for the recording's file-level metadata."""
        return {"device": self.name, "class": type(self).__name__, **self.channels.describe()}

    def _require_open(self) -> None:
        if not self.is_open:
            raise DeviceError(f"{self.name}: device is not open")

    # -- to implement ----------------------------------------------------------------------------
    @abc.abstractmethod
    def _open(self) -> None: ...

    @abc.abstractmethod
    def _close(self) -> None: ...

    @abc.abstractmethod
    def _write(self, block: np.ndarray) -> None: ...

    @abc.abstractmethod
    def _read(self, n: int) -> tuple[np.ndarray, np.ndarray]: ...

    @abc.abstractmethod
    def _stimulus_position(self) -> int:
        """Index, in the response stream, of the next stimulus sample to be played."""
