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
  the runner aligns stimulus and response when the device has latency;
- ``electrodes``: what each stimulus output's electrode is known to be (one
  :class:`~prclab.reservoir.Electrode` per stimulus channel; unknown unless the driver or its
  simulated substrate declares it), the only electrode facts the safety layer uses.

A device with no stimulus channel is record-only (:mod:`prclab.drivers.capabilities`): it refuses every
stimulus block.  Drivers take a connection (a port, an address) and never start an emulator: a rig
(:mod:`prclab.protocols.rig`) starts one and points the driver at it with ``connect_to``.

A stimulus sample outside its channel's range is refused with :class:`DeviceError` before anything is
sent: the device's own range check is the last line of defence behind the protocol's safety layer.

Safe stop: every stimulus output has a declared **rest level** (``rest_V``, by default 0 V where the
range allows it, else the range's centre) and a slew limit (``max_slew_V_per_s``, by default none);
``set_rest`` declares them (the runner passes the protocol's safety limits).  ``rest(reason)`` drives
every output from the last value applied to its rest level along a ramp of linear steps that respects
the slew limit (at least ``REST_RAMP_S``), drops stimulus queued but not yet played, and returns a
report ``{"stopped": reason, "outputs_at_rest": bool, ...}`` (also kept as ``last_stop``).  ``close()``
rests first, so every way out of ``with device:`` - normal end, Ctrl-C, SIGTERM, an exception - leaves
the outputs at rest; a driver whose stream fails drives its outputs to rest before it abandons the
session, where the hardware still answers (each driver's docstring says what happens where it cannot).
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass

import numpy as np

from prclab.errors import PrclabError
from prclab.reservoir.base import Electrode


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
class Adc:
    """How a response channel is digitised: a sample is ``offset + conversion * count`` in the channel's
    unit, ``count`` a signed ``bits``-bit integer (as NWB stores raw data: ``conversion``, ``offset``).
    A recording stores such a channel as its counts (:mod:`prclab.protocols.recording_storage`)."""

    bits: int
    conversion: float
    offset: float = 0.0

    @classmethod
    def spanning(cls, bits: int, low: float, high: float) -> "Adc":
        """A ``bits``-bit converter whose ``2**bits`` codes cover ``[low, high]`` (two's complement
        around the centre, as a bipolar DAQ input: the top code is one step below ``high``)."""
        return cls(int(bits), (float(high) - float(low)) / 2 ** int(bits), (float(high) + float(low)) / 2)


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


REST_RAMP_S = 0.01
"""Shortest ramp to rest, seconds (used alone where no slew limit is declared)."""


def rest_level(low: float, high: float) -> float:
    """The voltage an output rests at: 0 V if its range allows it, else the range's centre."""
    return 0.0 if low <= 0.0 <= high else (low + high) / 2


def rest_ramp(start_V, rest_V, max_slew_V_per_s, step_hz: float, min_s: float = REST_RAMP_S) -> np.ndarray:
    """Linear steps from ``start_V`` ``(c,)`` to ``rest_V`` ``(c,)``, one per ``1 / step_hz`` seconds.

    Returns ``(k, c)`` volts, ``k >= 1``, excluding the start and ending exactly at rest; each step
    changes each channel by less than ``max_slew_V_per_s / step_hz`` (``inf``: no limit, the ramp then
    lasts ``min_s``).
    """
    start = np.asarray(start_V, dtype=np.float64)
    rest = np.broadcast_to(np.asarray(rest_V, dtype=np.float64), start.shape)
    slew = np.broadcast_to(np.asarray(max_slew_V_per_s, dtype=np.float64), start.shape)
    span = np.abs(rest - start)
    with np.errstate(divide="ignore", invalid="ignore"):
        need = np.where(span > 0, span * step_hz / slew, 0.0)
    # one step more than an exact fit: a step at the limit itself may round a hair over it, and the
    # safety monitor's comparison is strict
    k = int(max(1, np.ceil(min_s * step_hz - 1e-9), np.floor(np.max(need, initial=0.0)) + 1))
    frac = np.arange(1, k + 1)[:, None] / k
    ramp = start + (rest - start) * frac
    ramp[-1] = rest
    return ramp


def voltage_channels(prefix: str, count: int, low: float, high: float, unit: str = "V"):
    """``count`` channels named ``{prefix}{i}`` with a common unit and range."""
    return tuple(ChannelInfo(f"{prefix}{i}", unit, float(low), float(high)) for i in range(count))


class Device(abc.ABC):
    """Base class of all devices: context management, state checks and stimulus validation.

    Subclasses implement ``_open``, ``_close``, ``_write``, ``_read`` and may override ``mark``.
    """

    name = "device"
    #: one :class:`Adc` per response channel where the device delivers digitised samples of a known
    #: converter (a recording then stores their integer counts), else None
    adc: "tuple[Adc, ...] | None" = None

    def __init__(self, channels: DeviceChannels):
        self.channels = channels
        self.is_open = False
        self._events: list[tuple[int, str]] = []
        self.rest_V = np.array([rest_level(c.low, c.high) for c in channels.stimulus])
        self.max_slew_V_per_s = np.full(len(channels.stimulus), np.inf)
        #: the last value applied to each stimulus output (the rest level at open)
        self.output_V = self.rest_V.copy()
        #: report of the latest drive to rest (``rest``), None before the first
        self.last_stop: dict | None = None
        self._rested = True

    @property
    def electrodes(self) -> tuple[Electrode, ...]:
        """One :class:`~prclab.reservoir.Electrode` per stimulus channel; the default: all unknown."""
        return tuple(Electrode() for _ in self.channels.stimulus)

    def connect_to(self, address: str) -> None:
        """Point the next ``open`` at ``address`` (an emulator's port or server); a device reached
        without a connection (simulated, replayed) refuses."""
        raise DeviceError(f"{self.name}: takes no connection (asked to connect to {address!r})")

    # -- rest --------------------------------------------------------------------------------------
    def set_rest(self, rest_V, max_slew_V_per_s=np.inf) -> None:
        """Declare each output's rest level (volts, scalar or ``(n_stimulus,)``) and slew limit."""
        n = len(self.channels.stimulus)
        rest = np.broadcast_to(np.asarray(rest_V, dtype=np.float64), (n,)).copy()
        slew = np.broadcast_to(np.asarray(max_slew_V_per_s, dtype=np.float64), (n,)).copy()
        if not (np.isfinite(rest).all() and (rest >= self.channels.stimulus_low).all()
                and (rest <= self.channels.stimulus_high).all()):
            raise DeviceError(f"{self.name}: rest level {rest.tolist()} V outside the stimulus range")
        if not (slew > 0).all() or np.isnan(slew).any():
            raise DeviceError(f"{self.name}: slew limit {slew.tolist()} V/s must be positive")
        self.rest_V, self.max_slew_V_per_s = rest, slew
        if not self.is_open:
            self.output_V = rest.copy()

    def rest(self, reason: str = "stop") -> dict:
        """Drive every output to its rest level along a slew-limited ramp; returns the report.

        Idempotent: a device already at rest (or closed) returns the latest report (with ``reason``
        if none was made).  Never raises for a device fault: the report says what was reached.
        """
        if not self.is_open or self._rested:
            if self.last_stop is None:
                self.last_stop = self._stop_report(reason, True, "outputs already at rest")
            return self.last_stop
        start = self.output_V.copy()
        try:
            detail = self._rest(start) or "ramped to rest"
            ok = True
        except DeviceError as exc:
            detail, ok = str(exc), False
        # set only once the attempt is over: a ramp cut short (a forced stop) is tried again at close
        self._rested = True
        self.last_stop = self._stop_report(reason, ok, detail, start)
        return self.last_stop

    def _stop_report(self, reason: str, ok: bool, detail: str, start=None) -> dict:
        report = {"stopped": str(reason), "outputs_at_rest": bool(ok), "rest_V": self.rest_V.tolist(),
                  "detail": detail}
        if start is not None:
            report["from_V"] = np.asarray(start, dtype=np.float64).tolist()
        return report

    def _ramp(self, start, step_hz: float | None = None) -> np.ndarray:
        """The ramp ``(k, n_stimulus)`` from ``start`` to ``rest_V`` at ``step_hz`` (default: the rate)."""
        return rest_ramp(start, self.rest_V, self.max_slew_V_per_s, step_hz or self.channels.rate_hz)

    def _rest(self, start_V: np.ndarray) -> str | None:
        """Drive the outputs from ``start_V`` to ``rest_V`` (ramped); raise DeviceError if it cannot.

        The default, for devices without a physical output (simulations, replays): the outputs are
        taken to be at rest; a simulated substrate simply stops being driven.
        """
        self.output_V = self.rest_V.copy()
        return "no physical output; nothing left driven"

    # -- lifecycle -------------------------------------------------------------------------------
    def open(self) -> "Device":
        if not self.is_open:
            self._events = []
            self.output_V = self.rest_V.copy()
            self.last_stop = None
            self._open()
            self.is_open = True
            self._rested = True
        return self

    def close(self) -> None:
        """Drive the outputs to rest (see :meth:`rest`), then release the device."""
        if self.is_open:
            try:
                self.rest("close")
            finally:
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
        if not n_stim:
            raise DeviceError(f"{self.name}: record-only (no stimulus output); nothing was sent")
        if block.ndim != 2 or block.shape[1] != n_stim:
            raise DeviceError(f"{self.name}: stimulus block must be (n, {n_stim}), got {block.shape}")
        bad = ~np.isfinite(block) | (block < self.channels.stimulus_low) | \
            (block > self.channels.stimulus_high)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            ch = self.channels.stimulus[col]
            raise DeviceError(f"{self.name}: stimulus sample {row} on {ch.name} is {block[row, col]!r} "
                              f"{ch.unit}, outside [{ch.low}, {ch.high}]; nothing was sent")
        if len(block):
            self._rested = False
        self._write(block)

    def read(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Next ``n`` response samples ``(n, n_response)`` and their times ``(n,)`` in seconds."""
        self._require_open()
        if n < 0:
            raise DeviceError(f"{self.name}: cannot read {n} samples")
        return self._read(int(n))

    def arm(self, n: int) -> None:
        """Load the next ``n`` stimulus samples onto the device, so that the next ``read(n)`` starts
        playing them at once.

        A card configures its timing, fills its output buffer and arms its output task here.  A rig
        of two devices arms its stimulator before it puts a trial's marker into the recorder's
        stream: only starting the clock is then left between the marker and the first sample played.
        A device with nothing to load ahead of the read does nothing (the default).  Raises
        ``DeviceError`` on a negative ``n``.
        """
        self._require_open()
        if n < 0:
            raise DeviceError(f"{self.name}: cannot arm {n} samples")
        self._arm(int(n))

    def _arm(self, n: int) -> None:
        """Subclasses that load a block ahead of playing it override this (see ``arm``)."""

    def mark(self, label: str) -> None:
        """Put event ``label`` into the response stream at the current stimulus position."""
        self._require_open()
        self._events.append((self._stimulus_position(), str(label)))

    def events(self, start: int = 0) -> list[tuple[int, str]]:
        """Events so far as ``(response_sample_index, label)``, in order, from the ``start``-th on (a
        runner asks only for those since its last mark: no copy of a long run's whole list per trial)."""
        return self._events[start:]

    @property
    def n_events(self) -> int:
        """How many events :meth:`events` holds so far."""
        return len(self._events)

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
