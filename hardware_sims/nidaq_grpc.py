"""An NI-DAQmx device behind NI's gRPC service (``nidaqmx_grpc.NiDAQmx``), backed by a Substrate.

The real ``nidaqmx`` client, given ``GrpcSessionOptions`` on a channel to :attr:`NidaqEmulator.address`,
drives this server exactly as it drives NI's gRPC Device Server.  The servicer implements the subset of
``nidaqmx._stubs.nidaqmx_pb2_grpc.NiDAQmxServicer`` that :mod:`prclab.drivers.nidaq` calls (the
servicer's methods); any other RPC answers ``UNIMPLEMENTED`` as the base class does.  The server listens on
127.0.0.1 with an ephemeral port.

The device (``Dev1`` by default) has ``substrate.n_inputs`` analog outputs ``ao0..`` and
``substrate.n_outputs`` analog inputs ``ai0..``, both ±10 V.  Tasks keep a faithful table of the task,
channel, timing, trigger, read and write attributes the client reads back (:data:`ATTRIBUTES`, ids and
enum values from ``nidaqmx``), and refuse what a real card refuses with the real DAQmx error codes
(unknown device or channel, AO data outside the channel's range, reading past a finite acquisition,
an AO buffer run dry with regeneration off...).  Errors travel as NI's server sends them: the call is
aborted with trailing metadata ``ni-error: <code>``, except read timeouts, which come back in the read
reply's ``status`` with the samples read so far, as partial reads do.

Bounds (what one request may cost): an AI task's buffer is sized as NI-DAQmx sizes it
(:meth:`Task.buffer_size`); a continuous read of more samples than it holds is refused with -200279
(they would have been overwritten), a finite read past the acquisition's end with -200278; a task
buffer or AO data beyond :data:`MAX_BUFFER_SAMPLES` with -50352 (memory full); a read whose reply
exceeds :data:`MAX_MESSAGE_BYTES` with gRPC ``RESOURCE_EXHAUSTED`` - each before any sample is
computed.  Client timeouts are clipped to :data:`MAX_STALL_S`.  Codes and their names are those of
``nidaqmx.error_codes.DAQmxErrors``.

Physics and time: the emulated clock advances by the samples the AI task reads.  Every running AO
task clocked from ``/Dev1/ai/SampleClock`` or triggered by ``/Dev1/ai/StartTrigger`` (and, as a
simplification, any other running AO task) generates one sample per AI sample, so AI sample ``k``
is the substrate's output while AO sample ``k`` is applied: the substrate runs once per read on that
read's ``(1, k, n_inputs)`` AO voltages.  AO channels not in a running task (and an AO task that ran
out of samples) hold their last voltage, 0 V at power-up; a write to an on-demand (untimed) AO task sets
its lines at once.  ``device.ao_level`` is the voltage each AO line holds now.  AI readings are
clipped to each channel's range (the ADC saturates) but not quantised.  The substrate is reset with
``seed`` once, at construction: it lives on across client sessions and server restarts, as a potato on
the bench does.
Wired to another emulator (``wired_to``, :mod:`hardware_sims.wiring`), the AO lines drive that
emulator's substrate instead (every AO sample played, and each on-demand level) and the AI lines read
the AO lines back.

Faults, injected with :meth:`NidaqEmulator.inject` and held until ``inject(None)``: ``unplug`` fails
every call with -201003 (device cannot be accessed); ``stall`` makes reads wait out the client's read
timeout and then return -200284 (samples not yet available); ``garbage`` answers reads with NaN and one
sample per channel too few; ``drop`` answers reads with a quarter of the samples missing and no error.
"""

from __future__ import annotations

import collections
import functools
import re
import threading
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import numpy as np
import session_pb2
from nidaqmx._stubs import nidaqmx_pb2 as pb
from nidaqmx._stubs import nidaqmx_pb2_grpc as pb_grpc
from nidaqmx.constants import (AcquisitionType, ChannelType, Edge, FillMode, RegenerationMode,
                               SampleTimingType, TerminalConfiguration, TriggerType, UsageTypeAI,
                               UsageTypeAO, VoltageUnits)
from nidaqmx.error_codes import DAQmxErrors as Err

from prclab.reservoir import Substrate

from . import FAULTS
from .wiring import Wire

DRIVER_VERSION = (24, 5, 0)
"""NI-DAQmx version reported through the system-information attributes."""
MAX_MESSAGE_BYTES = 16 << 20
"""Largest gRPC message the server sends or receives, bytes (2M float64 values); a read whose reply
would be larger is refused with gRPC ``RESOURCE_EXHAUSTED`` before any sample is computed, as NI's
server fails such a reply (the client's own default limit is 4 MB)."""
MAX_BUFFER_SAMPLES = 1 << 23
"""Largest task buffer the emulated host can allocate, samples over all channels (64 MiB of float64);
starting a task that needs more, or writing more AO samples, fails with -50352 (memory full)."""
SUBSTRATE_CHUNK = 1 << 16
"""A long read runs the substrate in chunks of this many steps, bounding its working memory."""
MAX_STALL_S = 30.0
"""Longest a stalled read waits, whatever timeout the client asked for."""
RANGE_V = (-10.0, 10.0)
"""Hardware range of every analog channel, volts."""
MAX_RATE_HZ = 1.0e6

ERROR_TEXT = {
    Err.DEV_CANNOT_BE_ACCESSED: "Device cannot be accessed. Possible causes: device is no longer present "
                                "in the system, device is not powered, device is powered but was "
                                "temporarily without power.",
    Err.SAMPLES_NOT_YET_AVAILABLE: "Some or all of the samples requested have not yet been acquired.",
    Err.SAMPLES_WILL_NEVER_BE_AVAILABLE: "Attempted to read samples that will never be available.",
    Err.GEN_STOPPED_TO_PREVENT_REGEN_OF_OLD_SAMPLES: "Generation was stopped to prevent the "
                                                    "regeneration of old samples.",
    Err.INVALID_AO_DATA_WRITE: "Attempted writing analog data that is too large or too small.",
    Err.PHYSICAL_CHAN_DOES_NOT_EXIST: "Physical channel specified does not exist on this device.",
    Err.INVALID_DEVICE_ID: "Device identifier is invalid.",
    Err.INVALID_TASK: "Task specified is invalid or does not exist.",
    Err.DUPLICATE_TASK: "Task name specified conflicts with an existing task name.",
    Err.CHAN_NOT_IN_TASK: "Specified channel is not in the task.",
    Err.ATTR_NOT_SUPPORTED: "Specified property is not supported by the device or is not applicable "
                            "to the task.",
    Err.ATTR_CANNOT_BE_SET: "Specified property cannot be set.",
    Err.INVALID_ATTRIBUTE_VALUE: "Requested value is not a supported value for this property.",
    Err.INVALID_ROUTING_SOURCE_TERMINAL_NAME: "Source terminal to be routed could not be found on "
                                              "the device.",
    Err.READ_BUFFER_TOO_SMALL: "Buffer is too small to fit the requested samples.",
    Err.SAMPLES_NO_LONGER_AVAILABLE: "Attempted to read samples that are no longer available. The "
                                     "requested sample was previously available, but has since been "
                                     "overwritten.",
    Err.PAL_MEMORY_FULL: "The requested memory could not be allocated.",
    Err.OUTPUT_BUFFER_EMPTY: "Generation cannot be started because the output buffer is empty.",
    Err.WAIT_UNTIL_DONE_DOES_NOT_INDICATE_DONE: "Wait Until Done did not indicate that the task was "
                                                "done within the specified timeout.",
    Err.CAN_NOT_PERFORM_OP_WHILE_TASK_RUNNING: "Specified operation cannot be performed while the "
                                              "task is running.",
}
"""DAQmx error descriptions (paraphrased from NI's), sent as the abort details and by GetErrorString."""


class DaqFault(Exception):
    """A DAQmx error the emulated device reports; ``code`` is negative."""

    def __init__(self, code: Err, detail: str = ""):
        self.code = int(code)
        text = ERROR_TEXT.get(code, code.name)
        super().__init__(f"{text}\n{detail}".strip())


# -- device model --------------------------------------------------------------------------------
@dataclass
class Channel:
    """A virtual channel: ``kind`` is ``"ai"`` or ``"ao"``, ``index`` its physical line."""

    name: str
    physical: str
    kind: str
    index: int
    low: float
    high: float
    terminal_config: int = TerminalConfiguration.DEFAULT.value


@dataclass
class Task:
    """One DAQmx task and its timing, trigger, stream state and AO buffer."""

    name: str
    channels: list[Channel] = field(default_factory=list)
    timing_type: int = SampleTimingType.ON_DEMAND.value
    rate_hz: float = 1000.0
    clock_source: str = ""
    active_edge: int = Edge.RISING.value
    sample_mode: int = AcquisitionType.FINITE.value
    samps_per_chan: int = 1000
    trigger_type: int = TriggerType.NONE.value
    trigger_source: str = ""
    trigger_edge: int = Edge.RISING.value
    regen_mode: int = RegenerationMode.ALLOW_REGENERATION.value
    running: bool = False
    armed: bool = False              # started, waiting for its start trigger
    buffer: np.ndarray | None = None  # AO samples written, (n_channels, k)
    position: int = 0                # samples per channel generated (AO) or acquired (AI)
    error: DaqFault | None = None    # an asynchronous fault, reported by the next call

    @property
    def kind(self) -> str:
        return self.channels[0].kind if self.channels else ""

    def channel(self, name: str) -> Channel:
        for ch in self.channels:
            if name in (ch.name, ch.physical):
                return ch
        raise DaqFault(Err.CHAN_NOT_IN_TASK, f"Channel: {name}\nTask Name: {self.name}")

    def written(self) -> int:
        return 0 if self.buffer is None else self.buffer.shape[1]

    def buffer_size(self) -> int:
        """Input buffer, samples per channel, as NI-DAQmx sizes it (NI-DAQmx Help, "Buffer Size").

        Finite: ``samps_per_chan``.  Continuous: ``samps_per_chan`` or, if larger, 1 kS up to 100 S/s,
        10 kS up to 10 kS/s, 100 kS up to 1 MS/s, 1 MS above.
        """
        if self.sample_mode == AcquisitionType.FINITE.value:
            return self.samps_per_chan
        rate = self.rate_hz
        default = 1_000 if rate <= 100 else 10_000 if rate <= 10_000 else \
            100_000 if rate <= 1_000_000 else 1_000_000
        return max(self.samps_per_chan, default)

    def done(self) -> bool:
        if self.sample_mode != AcquisitionType.FINITE.value:
            return not self.running
        return not self.running or self.position >= self.samps_per_chan


@dataclass(frozen=True)
class Attribute:
    """One entry of the attribute table: value type, getter ``(task, channel) -> value``, setter."""

    type: str
    get: object
    set: object = None


ATTRIBUTES: dict[tuple[str, int], Attribute] = {
    # task
    ("task", 0x1276): Attribute("string", lambda t, c: t.name),
    ("task", 0x1273): Attribute("string", lambda t, c: ", ".join(ch.name for ch in t.channels)),
    ("task", 0x2181): Attribute("uint32", lambda t, c: len(t.channels)),
    # channel
    ("chan", 0x187F): Attribute("int32", lambda t, c: (ChannelType.ANALOG_INPUT if c.kind == "ai"
                                                       else ChannelType.ANALOG_OUTPUT).value),
    ("chan", 0x18F5): Attribute("string", lambda t, c: c.physical),
    ("chan", 0x17DE): Attribute("double", lambda t, c: c.low if c.kind == "ai" else _no_attr()),
    ("chan", 0x17DD): Attribute("double", lambda t, c: c.high if c.kind == "ai" else _no_attr()),
    ("chan", 0x0695): Attribute("int32", lambda t, c: UsageTypeAI.VOLTAGE.value if c.kind == "ai"
                                else _no_attr()),
    ("chan", 0x1097): Attribute("int32", lambda t, c: c.terminal_config if c.kind == "ai"
                                else _no_attr()),
    ("chan", 0x1094): Attribute("int32", lambda t, c: VoltageUnits.VOLTS.value if c.kind == "ai"
                                else _no_attr()),
    ("chan", 0x1187): Attribute("double", lambda t, c: c.low if c.kind == "ao" else _no_attr()),
    ("chan", 0x1186): Attribute("double", lambda t, c: c.high if c.kind == "ao" else _no_attr()),
    ("chan", 0x1108): Attribute("int32", lambda t, c: UsageTypeAO.VOLTAGE.value if c.kind == "ao"
                                else _no_attr()),
    ("chan", 0x1184): Attribute("int32", lambda t, c: VoltageUnits.VOLTS.value if c.kind == "ao"
                                else _no_attr()),
    # timing
    ("timing", 0x1347): Attribute("int32", lambda t, c: t.timing_type),
    ("timing", 0x1344): Attribute("double", lambda t, c: t.rate_hz),
    ("timing", 0x1852): Attribute("string", lambda t, c: t.clock_source or "OnboardClock"),
    ("timing", 0x1301): Attribute("int32", lambda t, c: t.active_edge),
    ("timing", 0x1300): Attribute("int32", lambda t, c: t.sample_mode),
    ("timing", 0x1310): Attribute("uint64", lambda t, c: t.samps_per_chan),
    # start trigger
    ("trig", 0x1393): Attribute("int32", lambda t, c: t.trigger_type),
    ("trig", 0x1407): Attribute("string", lambda t, c: t.trigger_source),
    ("trig", 0x1404): Attribute("int32", lambda t, c: t.trigger_edge),
    # read stream
    ("read", 0x217B): Attribute("uint32", lambda t, c: len(t.channels) if t.kind == "ai"
                                else _no_attr()),
    ("read", 0x1823): Attribute("string", lambda t, c: ", ".join(ch.name for ch in t.channels)),
    ("read", 0x1223): Attribute("uint32", lambda t, c: 0),
    ("read", 0x192A): Attribute("uint64", lambda t, c: t.position),
    # write stream
    ("write", 0x217E): Attribute("uint32", lambda t, c: len(t.channels) if t.kind == "ao"
                                 else _no_attr()),
    ("write", 0x1453): Attribute("int32", lambda t, c: t.regen_mode, set=lambda t, v: _set_regen(t, v)),
    ("write", 0x192B): Attribute("uint64", lambda t, c: t.position),
    ("write", 0x1460): Attribute("uint32", lambda t, c: max(t.samps_per_chan - t.written(), 0)),
}
"""Attribute table: ``(category, DAQmx attribute id) -> Attribute`` (ids as in ``nidaqmx.task``)."""


def _no_attr():
    raise DaqFault(Err.ATTR_NOT_SUPPORTED)


def _set_regen(task: Task, value: int) -> None:
    if value not in {m.value for m in RegenerationMode}:
        raise DaqFault(Err.INVALID_ATTRIBUTE_VALUE, f"Property: RegenMode\nRequested Value: {value}")
    if task.running:
        raise DaqFault(Err.CAN_NOT_PERFORM_OP_WHILE_TASK_RUNNING, f"Task Name: {task.name}")
    task.regen_mode = value


_PHYSICAL = re.compile(r"/?([A-Za-z][\w-]*)/(ai|ao)(\d+)(?::(\d+))?\Z")


class DaqDevice:
    """The emulated card: tasks by name, AO levels, and the substrate behind the terminals."""

    def __init__(self, name: str, substrate: Substrate, seed: int):
        self.name = name
        self.substrate = substrate
        substrate.reset(seed)
        self.n_ao, self.n_ai = substrate.n_inputs, substrate.n_outputs
        self.ao_level = np.zeros(self.n_ao)
        self.tasks: dict[str, Task] = {}
        self._unnamed = 0

    # -- tasks and channels
    def create_task(self, name: str, behavior: int) -> tuple[Task, bool]:
        if name in self.tasks:
            if behavior == 1:  # INITIALIZE_SERVER_SESSION
                raise DaqFault(Err.DUPLICATE_TASK, f"Task Name: {name}")
            return self.tasks[name], False
        if behavior == 2:  # ATTACH_TO_SERVER_SESSION
            raise DaqFault(Err.INVALID_TASK, f"Task Name: {name}")
        if not name:
            name, self._unnamed = f"_unnamedTask<{self._unnamed}>", self._unnamed + 1
        self.tasks[name] = task = Task(name)
        return task, True

    def task(self, handle) -> Task:
        try:
            return self.tasks[handle.name]
        except KeyError:
            raise DaqFault(Err.INVALID_TASK, f"Task Name: {handle.name}") from None

    def expand(self, physical: str, kind: str) -> list[tuple[str, int]]:
        """``Dev1/ai0:3, Dev1/ai5`` -> ``[("Dev1/ai0", 0), ...]``; refuses other devices and lines."""
        out = []
        count = self.n_ai if kind == "ai" else self.n_ao
        for part in (p.strip() for p in physical.split(",")):
            m = _PHYSICAL.match(part)
            if m is None or m.group(2) != kind:
                raise DaqFault(Err.PHYSICAL_CHAN_DOES_NOT_EXIST, f"Physical Channel Name: {part[:80]}")
            dev, first = m.group(1), int(m.group(3))
            last = int(m.group(4)) if m.group(4) is not None else first
            if dev.lower() != self.name.lower():
                raise DaqFault(Err.INVALID_DEVICE_ID, f"Device Specified: {dev}")
            step = 1 if last >= first else -1
            for i in range(first, last + step, step):
                if i >= count:
                    raise DaqFault(Err.PHYSICAL_CHAN_DOES_NOT_EXIST,
                                   f"Physical Channel Name: {kind}{i}\nDevice: {self.name}")
                out.append((f"{self.name}/{kind}{i}", i))
        return out

    def add_channels(self, task: Task, kind: str, physical: str, names: str, low: float, high: float,
                     units: int, scale: str, terminal_config: int) -> None:
        if task.running:
            raise DaqFault(Err.CAN_NOT_PERFORM_OP_WHILE_TASK_RUNNING, f"Task Name: {task.name}")
        if task.channels and task.kind != kind:
            raise DaqFault(Err.ATTR_NOT_SUPPORTED, "a task holds channels of one type")
        if units != VoltageUnits.VOLTS.value or scale:
            raise DaqFault(Err.INVALID_ATTRIBUTE_VALUE, "Property: Units (volts only)")
        if not (RANGE_V[0] <= low < high <= RANGE_V[1]):
            raise DaqFault(Err.INVALID_ATTRIBUTE_VALUE,
                           f"Property: Minimum/Maximum Value\nRequested: {low}, {high}")
        lines = self.expand(physical, kind)
        given = [n.strip() for n in names.split(",")] if names else []
        if given and len(given) != len(lines):
            raise DaqFault(Err.INVALID_CHANNEL_NAME_IN_LIST, f"Name To Assign: {names[:80]}")
        for j, (phys, index) in enumerate(lines):
            name = given[j] if given else phys
            if any(ch.name == name for ch in task.channels):
                raise DaqFault(Err.INVALID_CHANNEL_NAME_IN_LIST, f"Duplicate channel: {name}")
            task.channels.append(Channel(name, phys, kind, index, float(low), float(high),
                                         int(terminal_config)))

    def configure_timing(self, task: Task, source: str, rate: float, edge: int, mode: int,
                         samps: int) -> None:
        if task.running:
            raise DaqFault(Err.CAN_NOT_PERFORM_OP_WHILE_TASK_RUNNING, f"Task Name: {task.name}")
        if not (0 < rate <= MAX_RATE_HZ):
            raise DaqFault(Err.INVALID_ATTRIBUTE_VALUE, f"Property: SampClk.Rate\nRequested: {rate}")
        if mode not in (AcquisitionType.FINITE.value, AcquisitionType.CONTINUOUS.value) or samps < 1:
            raise DaqFault(Err.INVALID_ATTRIBUTE_VALUE, f"Property: SampQuant\nRequested: {mode}, {samps}")
        if source not in ("", "OnboardClock") and not (
                task.kind == "ao" and source.lower() == f"/{self.name}/ai/sampleclock".lower()):
            raise DaqFault(Err.INVALID_ROUTING_SOURCE_TERMINAL_NAME, f"Source: {source[:80]}")
        task.timing_type = SampleTimingType.SAMPLE_CLOCK.value
        task.clock_source, task.rate_hz, task.active_edge = source, float(rate), int(edge)
        task.sample_mode, task.samps_per_chan = int(mode), int(samps)

    def configure_start_trigger(self, task: Task, source: str, edge: int) -> None:
        if task.running:
            raise DaqFault(Err.CAN_NOT_PERFORM_OP_WHILE_TASK_RUNNING, f"Task Name: {task.name}")
        if task.kind != "ao" or source.lower() != f"/{self.name}/ai/starttrigger".lower():
            raise DaqFault(Err.INVALID_ROUTING_SOURCE_TERMINAL_NAME, f"Source: {source[:80]}")
        task.trigger_type, task.trigger_source, task.trigger_edge = \
            TriggerType.DIGITAL_EDGE.value, source, int(edge)

    # -- running
    def start(self, task: Task) -> None:
        if task.running:
            return
        if task.kind == "ao" and task.timing_type == SampleTimingType.ON_DEMAND.value:
            return  # on-demand (software-timed) outputs: each write applies at once, nothing to start
        if not task.channels or task.timing_type != SampleTimingType.SAMPLE_CLOCK.value:
            raise DaqFault(Err.ATTR_NOT_SUPPORTED, "the emulator runs sample-clocked tasks only")
        if task.kind == "ao" and task.written() == 0:
            raise DaqFault(Err.OUTPUT_BUFFER_EMPTY, f"Task Name: {task.name}")
        if task.kind == "ai" and task.buffer_size() * len(task.channels) > MAX_BUFFER_SAMPLES:
            raise DaqFault(Err.PAL_MEMORY_FULL,
                           f"Buffer: {task.buffer_size()} samples x {len(task.channels)} channels\n"
                           f"Emulator limit: {MAX_BUFFER_SAMPLES} samples\nTask Name: {task.name}")
        task.running, task.position, task.error = True, 0, None
        task.armed = task.kind == "ao" and task.trigger_type == TriggerType.DIGITAL_EDGE.value
        if task.kind == "ai":
            for other in self.tasks.values():
                other.armed = False

    def stop(self, task: Task) -> None:
        task.running = task.armed = False
        task.buffer = None

    def write(self, task: Task, samps: int, data: np.ndarray, layout: int) -> int:
        if task.kind != "ao":
            raise DaqFault(Err.ATTR_NOT_SUPPORTED, "write to a task without analog outputs")
        if task.error is not None:
            raise task.error
        n_ch = len(task.channels)
        if samps < 0 or data.size != samps * n_ch:
            raise DaqFault(Err.INVALID_ATTRIBUTE_VALUE,
                           f"{data.size} values for {samps} samples on {n_ch} channels")
        block = data.reshape(n_ch, samps) if layout == FillMode.GROUP_BY_CHANNEL.value \
            else data.reshape(samps, n_ch).T
        low = np.array([ch.low for ch in task.channels])[:, None]
        high = np.array([ch.high for ch in task.channels])[:, None]
        bad = ~np.isfinite(block) | (block < low) | (block > high)
        if bad.any():
            c, k = np.argwhere(bad)[0]
            raise DaqFault(Err.INVALID_AO_DATA_WRITE, f"Channel: {task.channels[c].name}\n"
                           f"Sample Index: {k}\nValue: {block[c, k]!r}")
        if task.timing_type == SampleTimingType.ON_DEMAND.value:  # the lines take the last value now
            if samps:
                self.ao_level[[ch.index for ch in task.channels]] = block[:, -1]
                if isinstance(self.substrate, Wire):  # the wired electrodes see the new level at once
                    self.substrate.hold(self.ao_level)
            return samps
        if (task.written() + samps) * n_ch > MAX_BUFFER_SAMPLES:
            raise DaqFault(Err.PAL_MEMORY_FULL,
                           f"Buffer: {task.written() + samps} samples x {n_ch} channels\n"
                           f"Emulator limit: {MAX_BUFFER_SAMPLES} samples\nTask Name: {task.name}")
        task.buffer = block.copy() if task.buffer is None else np.concatenate([task.buffer, block], 1)
        return samps

    def samples_to_read(self, task: Task, samps: int) -> int:
        """Samples per channel a read of ``samps`` (-1: all available) on AI ``task`` returns.

        Starts the task if needed.  Refuses, as DAQmx does, reading past the end of a finite
        acquisition (-200278) and, in a continuous one, more than the buffer holds (-200279: by the time
        the last sample arrived the first would have been overwritten).
        """
        if task.kind != "ai":
            raise DaqFault(Err.ATTR_NOT_SUPPORTED, "read from a task without analog inputs")
        if not task.running:
            self.start(task)
        if task.sample_mode == AcquisitionType.FINITE.value:
            left = task.samps_per_chan - task.position
            samps = left if samps < 0 else samps
            if samps > left:
                raise DaqFault(Err.SAMPLES_WILL_NEVER_BE_AVAILABLE,
                               f"Attempted to read {samps} samples, {left} remain\nTask Name: {task.name}")
        elif samps < 0:
            samps = 0
        elif samps > task.buffer_size():
            raise DaqFault(Err.SAMPLES_NO_LONGER_AVAILABLE,
                           f"Attempted to read {samps} samples per channel from a buffer of "
                           f"{task.buffer_size()}\nTask Name: {task.name}")
        return samps

    def read(self, task: Task, samps: int) -> np.ndarray:
        """Acquire ``samps`` samples on AI ``task`` (starting it if needed); returns ``(n_ch, samps)``.

        Refuses what :meth:`samples_to_read` refuses; the substrate runs in chunks of
        :data:`SUBSTRATE_CHUNK` steps.
        """
        samps = self.samples_to_read(task, samps)
        u = np.repeat(self.ao_level[None], samps, axis=0)
        for ao in self.tasks.values():
            if ao.kind == "ao" and ao.running and not ao.armed:
                self._generate(ao, u)
        y = np.zeros((samps, self.n_ai))
        for at in range(0, samps, SUBSTRATE_CHUNK):
            y[at:at + SUBSTRATE_CHUNK] = self.substrate.run(u[None, at:at + SUBSTRATE_CHUNK])[0]
        task.position += samps
        cols = [ch.index for ch in task.channels]
        low = np.array([ch.low for ch in task.channels])[:, None]
        high = np.array([ch.high for ch in task.channels])[:, None]
        return np.clip(y[:, cols].T, low, high)

    def _generate(self, ao: Task, u: np.ndarray) -> None:
        """Put AO task ``ao``'s next samples into ``u`` ``(k, n_ao)`` and advance it by ``k`` samples.

        A task that runs out of samples before its end (regeneration off, not enough written) stops
        with -200290 and its lines hold their last voltage.
        """
        k, cols = len(u), [ch.index for ch in ao.channels]
        finite = ao.sample_mode == AcquisitionType.FINITE.value
        available = k if ao.regen_mode == RegenerationMode.ALLOW_REGENERATION.value \
            else ao.written() - ao.position
        if finite:
            available = min(available, ao.samps_per_chan - ao.position)
        m = int(np.clip(available, 0, k))
        if m:
            idx = (ao.position + np.arange(m)) % ao.written()
            u[:m, cols] = ao.buffer[:, idx].T
            self.ao_level[cols] = ao.buffer[:, idx[-1]]
            u[m:, cols] = self.ao_level[cols]
        ao.position += m
        finished = finite and ao.position >= ao.samps_per_chan
        if m < k and not finished and ao.error is None:
            ao.error = DaqFault(Err.GEN_STOPPED_TO_PREVENT_REGEN_OF_OLD_SAMPLES, f"Task Name: {ao.name}")


# -- gRPC service --------------------------------------------------------------------------------
_ATTRIBUTE_RPCS = {
    "GetTaskAttributeString": ("task", "string"), "GetTaskAttributeUInt32": ("task", "uint32"),
    "GetChanAttributeInt32": ("chan", "int32"), "GetChanAttributeDouble": ("chan", "double"),
    "GetChanAttributeString": ("chan", "string"),
    "GetTimingAttributeInt32": ("timing", "int32"), "GetTimingAttributeDouble": ("timing", "double"),
    "GetTimingAttributeString": ("timing", "string"), "GetTimingAttributeUInt64": ("timing", "uint64"),
    "GetTrigAttributeInt32": ("trig", "int32"), "GetTrigAttributeString": ("trig", "string"),
    "GetReadAttributeUInt32": ("read", "uint32"), "GetReadAttributeUInt64": ("read", "uint64"),
    "GetReadAttributeString": ("read", "string"),
    "GetWriteAttributeUInt32": ("write", "uint32"), "GetWriteAttributeInt32": ("write", "int32"),
    "GetWriteAttributeUInt64": ("write", "uint64"),
    "SetWriteAttributeInt32": ("write", "int32"),
}
_SYSTEM_INFO = {0x1272: DRIVER_VERSION[0], 0x1923: DRIVER_VERSION[1], 0x2F22: DRIVER_VERSION[2]}


def _wait_s(timeout_s: float) -> float:
    """A client's timeout (seconds; -1 waits forever in DAQmx) as a wait of 0..:data:`MAX_STALL_S`."""
    if timeout_s < 0 or timeout_s != timeout_s:  # -1, or NaN from a hostile peer
        return MAX_STALL_S
    return min(float(timeout_s), MAX_STALL_S)


def _rpc(method):
    """Count the call, apply the ``unplug`` fault, and send a DaqFault as NI's server does."""

    @functools.wraps(method)
    def handler(self, request, context):
        self.emulator.calls[method.__name__] += 1
        try:
            if self.emulator.fault == "unplug":
                raise DaqFault(Err.DEV_CANNOT_BE_ACCESSED, f"Device: {self.device.name}")
            return method(self, request, context)
        except DaqFault as fault:
            context.set_trailing_metadata((("ni-error", str(fault.code)),))
            context.abort(grpc.StatusCode.UNKNOWN, str(fault))

    return handler


def _attribute_rpc(name: str):
    category, kind = _ATTRIBUTE_RPCS[name]
    response_cls = getattr(pb, name + "Response")
    setting = name.startswith("Set")

    def method(self, request, context):
        with self.lock:
            task = self.device.task(request.task)
            entry = ATTRIBUTES.get((category, request.attribute_raw))
            if entry is None or entry.type != kind:
                raise DaqFault(Err.ATTR_NOT_SUPPORTED, f"Property ID: {request.attribute_raw:#x}")
            if setting:
                if entry.set is None:
                    raise DaqFault(Err.ATTR_CANNOT_BE_SET, f"Property ID: {request.attribute_raw:#x}")
                entry.set(task, request.value_raw)
                return response_cls(status=0)
            channel = task.channel(request.channel) if category == "chan" else None
            value = entry.get(task, channel)
        if kind == "int32":
            return response_cls(status=0, value_raw=int(value))
        return response_cls(status=0, value=value)

    method.__name__ = name
    return _rpc(method)


class NidaqServicer(pb_grpc.NiDAQmxServicer):
    """The implemented subset of NI's ``NiDAQmx`` gRPC service over one :class:`DaqDevice`."""

    def __init__(self, emulator: "NidaqEmulator"):
        self.emulator = emulator
        self.device = emulator.device
        self.lock = threading.Lock()

    @_rpc
    def GetSystemInfoAttributeUInt32(self, request, context):
        if request.attribute_raw not in _SYSTEM_INFO:
            raise DaqFault(Err.ATTR_NOT_SUPPORTED, f"Property ID: {request.attribute_raw:#x}")
        return pb.GetSystemInfoAttributeUInt32Response(status=0, value=_SYSTEM_INFO[request.attribute_raw])

    @_rpc
    def GetErrorString(self, request, context):
        try:
            text = ERROR_TEXT.get(Err(request.error_code), "")
        except ValueError:
            text = ""
        return pb.GetErrorStringResponse(status=0, error_string=text)

    @_rpc
    def CreateTask(self, request, context):
        with self.lock:
            task, new = self.device.create_task(request.session_name, request.initialization_behavior)
        return pb.CreateTaskResponse(status=0, task=session_pb2.Session(name=task.name),
                                     new_session_initialized=new)

    def _add_voltage_channels(self, request, kind: str, terminal_config: int) -> None:
        """The shared body of CreateAIVoltageChan and CreateAOVoltageChan."""
        with self.lock:
            self.device.add_channels(self.device.task(request.task), kind, request.physical_channel,
                                     request.name_to_assign_to_channel, request.min_val,
                                     request.max_val, request.units_raw, request.custom_scale_name,
                                     terminal_config)

    @_rpc
    def CreateAIVoltageChan(self, request, context):
        self._add_voltage_channels(request, "ai", request.terminal_config_raw)
        return pb.CreateAIVoltageChanResponse(status=0)

    @_rpc
    def CreateAOVoltageChan(self, request, context):
        self._add_voltage_channels(request, "ao", TerminalConfiguration.DEFAULT.value)
        return pb.CreateAOVoltageChanResponse(status=0)

    @_rpc
    def CfgSampClkTiming(self, request, context):
        with self.lock:
            self.device.configure_timing(self.device.task(request.task), request.source, request.rate,
                                         request.active_edge_raw, request.sample_mode_raw,
                                         request.samps_per_chan)
        return pb.CfgSampClkTimingResponse(status=0)

    @_rpc
    def CfgDigEdgeStartTrig(self, request, context):
        with self.lock:
            self.device.configure_start_trigger(self.device.task(request.task), request.trigger_source,
                                                request.trigger_edge_raw)
        return pb.CfgDigEdgeStartTrigResponse(status=0)

    @_rpc
    def StartTask(self, request, context):
        with self.lock:
            self.device.start(self.device.task(request.task))
        return pb.StartTaskResponse(status=0)

    @_rpc
    def StopTask(self, request, context):
        with self.lock:
            task = self.device.task(request.task)
            error, task.error = task.error, None
            self.device.stop(task)
        if error is not None:
            raise error
        return pb.StopTaskResponse(status=0)

    @_rpc
    def ClearTask(self, request, context):
        with self.lock:
            task = self.device.task(request.task)
            self.device.stop(task)
            del self.device.tasks[task.name]
        return pb.ClearTaskResponse(status=0)

    @_rpc
    def IsTaskDone(self, request, context):
        with self.lock:
            task = self.device.task(request.task)
            if task.error is not None:
                raise task.error
            return pb.IsTaskDoneResponse(status=0, is_task_done=task.done())

    @_rpc
    def WaitUntilTaskDone(self, request, context):
        with self.lock:
            task = self.device.task(request.task)
            if task.error is not None:
                raise task.error
            done = task.done()
        if not done:  # time only moves with AI reads: waiting cannot help, but costs the wait
            self.emulator.wait(_wait_s(request.time_to_wait))
            raise DaqFault(Err.WAIT_UNTIL_DONE_DOES_NOT_INDICATE_DONE, f"Task Name: {task.name}")
        return pb.WaitUntilTaskDoneResponse(status=0)

    @_rpc
    def WriteAnalogF64(self, request, context):
        data = np.asarray(request.write_array, dtype=np.float64)
        with self.lock:
            task = self.device.task(request.task)
            written = self.device.write(task, request.num_samps_per_chan, data, request.data_layout_raw)
            if request.auto_start:
                self.device.start(task)
        return pb.WriteAnalogF64Response(status=0, samps_per_chan_written=written)

    @_rpc
    def ReadAnalogF64(self, request, context):
        fault = self.emulator.fault
        if fault == "stall":
            self.emulator.wait(_wait_s(request.timeout))
            return pb.ReadAnalogF64Response(status=int(Err.SAMPLES_NOT_YET_AVAILABLE),
                                            samps_per_chan_read=0)
        with self.lock:
            task = self.device.task(request.task)
            n = self.device.samples_to_read(task, request.num_samps_per_chan)
            values = n * len(task.channels)
            if request.array_size_in_samps < values:
                raise DaqFault(Err.READ_BUFFER_TOO_SMALL,
                               f"Array size: {request.array_size_in_samps}\nRequired: {values}")
            if 8 * values + 64 > MAX_MESSAGE_BYTES:  # the reply could not be sent: refuse up front
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"a reply of {values} values exceeds the server's {MAX_MESSAGE_BYTES} "
                              "byte message limit; read fewer samples per call")
            samples = self.device.read(task, n)
        n_ch, n = samples.shape
        if fault == "garbage":
            samples = np.full((n_ch, max(n - 1, 0)), np.nan)
        elif fault == "drop":
            n -= n // 4
            samples = samples[:, :n]
        flat = samples.ravel() if request.fill_mode_raw == FillMode.GROUP_BY_CHANNEL.value \
            else samples.T.ravel()
        return pb.ReadAnalogF64Response(status=0, read_array=flat, samps_per_chan_read=n)


for _name in _ATTRIBUTE_RPCS:
    setattr(NidaqServicer, _name, _attribute_rpc(_name))


class NidaqEmulator:
    """An NI-DAQmx gRPC server on 127.0.0.1 (ephemeral port) over ``substrate``.

    Use as a context manager, or ``start()`` / ``close()`` (both idempotent; ``start`` after
    ``close`` serves the same device on a new port).  ``calls`` counts the RPCs received by name.

    Args:
        substrate: its inputs are the AO lines, its outputs the AI lines.
        device: device name as clients address it (``Dev1``).
        seed: seed passed once to ``substrate.reset``.
        wired_to: an emulator whose electrodes the AO lines drive (see :class:`~.wiring.Wire`) instead
            of ``substrate`` (then None).
    """

    def __init__(self, substrate: Substrate | None = None, device: str = "Dev1", seed: int = 0,
                 wired_to=None):
        if (substrate is None) == (wired_to is None):
            raise ValueError("give the emulator a substrate or an emulator to be wired to, not both")
        self.device = DaqDevice(device, substrate if wired_to is None else Wire(wired_to), seed)
        self.calls: collections.Counter[str] = collections.Counter()
        self.fault: str | None = None
        self.port = 0
        self._server: grpc.Server | None = None
        self._executor: futures.ThreadPoolExecutor | None = None
        self._wake = threading.Event()

    @property
    def address(self) -> str:
        """``host:port`` of the running server."""
        return f"127.0.0.1:{self.port}"

    def inject(self, fault: str | None) -> None:
        """Hold fault ``fault`` (one of :data:`FAULTS`) from now on; ``None`` clears it."""
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
        self.fault = fault

    def wait(self, seconds: float) -> None:
        """Sleep ``seconds``, cut short when the server closes."""
        self._wake.wait(seconds)

    @property
    def output_levels_V(self) -> np.ndarray:
        """The voltage each AO line ``ao0..`` holds now (the last value driven on it), volts, ``(n_ao,)``;
        a copy (read-only)."""
        return self.device.ao_level.copy()

    @property
    def serving(self) -> bool:
        """Whether the server runs now."""
        return self._server is not None

    def start(self) -> "NidaqEmulator":
        """Serve on a new ephemeral port (idempotent while serving); returns ``self``."""
        if self._server is None:
            self._wake.clear()
            options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                       ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
            executor = futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="nidaq-emulator")
            try:
                server = grpc.server(executor, options=options)
                pb_grpc.add_NiDAQmxServicer_to_server(NidaqServicer(self), server)
                self.port = server.add_insecure_port("127.0.0.1:0")
                server.start()
            except BaseException:
                executor.shutdown(wait=False)
                raise
            self._server, self._executor = server, executor
        return self

    def close(self) -> None:
        """Stop the server and its worker threads; idempotent, and a no-op before :meth:`start`.

        Waits up to 2 s for calls in flight (a stalled read is cut short) and for the workers.
        """
        server, self._server = self._server, None
        executor, self._executor = self._executor, None
        if server is not None:
            self._wake.set()
            server.stop(grace=None).wait(2.0)
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "NidaqEmulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
