"""An NI-DAQmx device behind NI's gRPC service (``nidaqmx_grpc.NiDAQmx``), backed by a Substrate.

The real ``nidaqmx`` client, given ``GrpcSessionOptions`` on a channel to :attr:`NidaqEmulator.address`,
drives this server as it drives NI's gRPC Device Server, so a lab's own nidaqmx program runs against it
with only the connection changed (``docs/emulators-nidaq.md``).  The servicer implements the analog
voltage subset of ``nidaqmx._stubs.nidaqmx_pb2_grpc.NiDAQmxServicer``; any other RPC answers
``UNIMPLEMENTED`` as the base class does.  The server listens on 127.0.0.1 with an ephemeral port.

The card (``Dev1`` by default) is an NI PCIe-6363 (:mod:`.nidaq_card`: channel counts, ranges, rates,
device and physical-channel attributes); the substrate's inputs are wired to ``ao0..``, its outputs
to ``ai0..``.  Tasks keep a table of the task, channel, timing, trigger, read, write and buffer
attributes the client reads and sets (:data:`ATTRIBUTES`, ids and enum values from ``nidaqmx``;
channel arguments may be names, comma lists or ranges such as ``Dev1/ai1:3``), and refuse what the card
refuses with DAQmx's codes (:mod:`.nidaq_errors`).  Errors travel as NI's server sends them: the call
is aborted with trailing metadata ``ni-error: <code>`` (a write that timed out adds
``ni-samps-per-chan-written``), except read timeouts, which come back in the reply's ``status`` with
the samples read so far, as NI's do.

Time: every started timed task runs on its own sample clock from the moment it starts (``time.monotonic``),
whether or not the client calls: sample ``k`` of an AI task is acquired (and AO sample ``k`` applied)
on clock edge ``k``, at ``t0 + k / rate`` (a 1 kS/s finite read of 2,000 samples takes 2 s); a read blocks until its samples are acquired or its
timeout passes (-200284, with the samples that were there); a finite task is done after
``samps_per_chan / rate`` s (``WaitUntilTaskDone`` waits for it, or fails with -200560 after its timeout);
a continuous AI task whose buffer fills unread stops with -200279.  An AO task generates on its own
clock, on ``/Dev1/ai/SampleClock`` (one sample per AI sample from when both run) and/or starts on
``/Dev1/ai/StartTrigger`` (its ``t0`` is the AI task's); a start trigger on a PFI line, and a reference
trigger, are taken to fire as the task starts (nothing drives the PFI terminals); with regeneration off it stops with -200290
when it runs out of written samples, and a write into a full buffer blocks until generation frees space
(-200292 after the write's timeout).  On-demand (untimed) tasks: an AI read returns at once, an AO write
sets the lines at once.  Everything is computed lazily when a call or an event stream looks (under one
lock), so an idle emulator costs nothing.

Physics: the substrate steps once per acquired AI sample, on the voltages the AO lines hold at that
sample (each AO task's sample at that instant: AO sample ``k`` for AI sample ``k`` when synchronised),
so the response is aligned to the stimulus sample by sample; while no AI task runs the substrate does
not step (nothing observes it).  AO lines not in a running task (and after a task's end) hold their last
voltage, 0 V at power-up; ``output_levels_V`` reads them.  AI readings are clipped to the channel's
hardware range (the ADC saturates) but not quantised.  The substrate is reset with ``seed`` once, at
construction: it lives on across client sessions and server restarts, as a potato on the bench does.
Wired to another emulator (``wired_to``, :mod:`hardware_sims.wiring`), the AO lines drive that
emulator's substrate instead (the AO samples played while AI acquires, and each on-demand level) and the
AI lines read the AO lines back.

Bounds (what one request may cost): an AI task's buffer is sized as NI-DAQmx sizes it
(:meth:`Task.buffer_size`); a continuous read of more samples than it holds is refused with -200279,
a finite read past the acquisition's end with -200278; a task buffer or AO data beyond
:data:`MAX_BUFFER_SAMPLES` with -50352 (memory full); a read whose reply exceeds
:data:`MAX_MESSAGE_BYTES` with gRPC ``RESOURCE_EXHAUSTED`` - each before any sample is computed.
Client timeouts are clipped to :data:`MAX_STALL_S`.

Events: ``RegisterEveryNSamplesEvent`` (acquired into buffer for AI, transferred from buffer for AO)
and ``RegisterDoneEvent`` are server streams, one message per event, as NI's server sends them; the
client runs the callback on its own thread.

Faults, injected with :meth:`NidaqEmulator.inject` and held until ``inject(None)``: ``unplug`` fails
every call with -201003 (device cannot be accessed); ``stall`` makes reads wait out the client's read
timeout and then return -200284 (samples not yet available); ``garbage`` answers reads with NaN and one
sample per channel too few; ``drop`` answers reads with a quarter of the samples missing and no error.
"""

from __future__ import annotations

import collections
import datetime
import functools
import re
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import numpy as np
import session_pb2
from ni.protobuf.types.waveform_conversion import (float64_analog_waveform_from_protobuf,
                                                   float64_analog_waveform_to_protobuf)
from nidaqmx._stubs import nidaqmx_pb2 as pb
from nidaqmx._stubs import nidaqmx_pb2_grpc as pb_grpc
from nidaqmx.constants import (AcquisitionType, ChannelType, Edge, EveryNSamplesEventType, FillMode,
                               RegenerationMode, SampleTimingType, TaskMode, TerminalConfiguration,
                               TriggerType, UsageTypeAI, UsageTypeAO, VoltageUnits)
from nidaqmx.error_codes import DAQmxErrors as Err
from nitypes.waveform import AnalogWaveform, Timing

from prclab.reservoir import Substrate

from . import FAULTS
from .nidaq_card import PCIE_6363, CardSpec, coerce_range, device_attribute, expand_physical, \
    physical_channel_attribute
from .nidaq_errors import ERROR_TEXT, DaqFault
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
"""A long acquisition runs the substrate in chunks of this many steps, bounding its working memory."""
MAX_STALL_S = 30.0
"""Longest any call waits, whatever timeout the client asked for."""
POLL_S = 0.05
"""Longest a waiting call or event stream sleeps before it looks again (it wakes earlier when the
samples it waits for are due)."""
RSE, DIFF = TerminalConfiguration.RSE.value, TerminalConfiguration.DIFF.value
FINITE, CONTINUOUS = AcquisitionType.FINITE.value, AcquisitionType.CONTINUOUS.value
ON_DEMAND, SAMPLE_CLOCK = SampleTimingType.ON_DEMAND.value, SampleTimingType.SAMPLE_CLOCK.value
ALLOW_REGEN = RegenerationMode.ALLOW_REGENERATION.value


# -- device model --------------------------------------------------------------------------------
@dataclass
class Channel:
    """A virtual channel: ``kind`` is ``"ai"`` or ``"ao"``, ``index`` its physical line; ``low``/``high``
    the requested limits (volts), ``range_V`` the hardware range ``±range_V`` chosen for them."""

    name: str
    physical: str
    kind: str
    index: int
    low: float
    high: float
    range_V: float
    terminal_config: int = TerminalConfiguration.DEFAULT.value
    description: str = ""


@dataclass
class Task:
    """One DAQmx task: channels, timing, trigger, and its clock and buffer state.

    AI: ``data`` ``(n_ch, size)`` is the circular input buffer, ``acquired`` the samples per channel
    acquired since start, ``read_pos`` those read.  AO: ``staged`` holds writes before start, ``data``
    the circular output buffer from start (sample ``w`` in slot ``w % size``), ``written`` the samples
    per channel written, ``generated`` those generated.  ``t0`` is the monotonic time of the first
    sample clock edge (``None`` while an AO task waits for its trigger).
    """

    name: str
    channels: list[Channel] = field(default_factory=list)
    timing_type: int = ON_DEMAND
    rate_hz: float = 1000.0
    clock_source: str = ""
    active_edge: int = Edge.RISING.value
    sample_mode: int = FINITE
    samps_per_chan: int = 1000
    trigger_type: int = TriggerType.NONE.value
    trigger_source: str = ""
    trigger_edge: int = Edge.RISING.value
    ref_trigger_source: str = ""        # a reference trigger (finite AI): its PFI line, pretrigger samples
    pretrigger: int = 0
    regen_mode: int = ALLOW_REGEN
    read_all_avail: bool = False
    buffer_request: int | None = None   # samples per channel set by cfg_input/output_buffer
    running: bool = False
    starts: int = 0                      # how often started: event streams restart their count
    t0: float | None = None
    halted: bool = False                 # stopped by an error: the clock runs no more
    data: np.ndarray | None = None
    staged: list = field(default_factory=list)
    acquired: int = 0
    read_pos: int = 0
    written: int = 0
    generated: int = 0
    events: set = field(default_factory=set)
    error: DaqFault | None = None        # an asynchronous fault, reported by the next call

    @property
    def kind(self) -> str:
        return self.channels[0].kind if self.channels else ""

    @property
    def timed(self) -> bool:
        return self.timing_type == SAMPLE_CLOCK

    @property
    def position(self) -> int:
        """Samples per channel acquired (AI) or generated (AO) since start."""
        return self.acquired if self.kind == "ai" else self.generated

    @property
    def on_ai_clock(self) -> bool:
        return self.kind == "ao" and self.clock_source.lower().endswith("/ai/sampleclock")

    @property
    def size(self) -> int:
        return 0 if self.data is None else self.data.shape[1]

    def select(self, spec: str) -> list[Channel]:
        """The channels ``spec`` names: ``""`` (all), a name, a comma list, or ranges like
        ``Dev1/ai1:3`` / ``ai1:3``; -200486 for a name not in the task (checked element by element)."""
        if not spec.strip():
            return list(self.channels)
        by_name = {}
        for ch in self.channels:
            by_name.setdefault(ch.name.lower(), ch)
            by_name.setdefault(ch.physical.lower(), ch)
        out = []
        for part in (p.strip() for p in spec.split(",")):
            m = re.fullmatch(r"(.*?)(\d{1,9}):(?:.*?)(\d{1,9})", part)
            names = [part] if m is None else _range_names(m.group(1), int(m.group(2)), int(m.group(3)))
            for name in names:
                ch = by_name.get(name.lower().lstrip("/"))
                if ch is None:
                    raise DaqFault(Err.CHAN_NOT_IN_TASK, f"Channel: {name[:80]}\nTask Name: {self.name}")
                out.append(ch)
        return out

    def buffer_size(self) -> int:
        """Input buffer, samples per channel, as NI-DAQmx sizes it (NI-DAQmx Help, "Buffer Size").

        Set by ``cfg_input_buffer``; else finite: ``samps_per_chan``; continuous: ``samps_per_chan`` or,
        if larger, 1 kS up to 100 S/s, 10 kS up to 10 kS/s, 100 kS up to 1 MS/s, 1 MS above.
        """
        if self.buffer_request:
            return self.buffer_request
        if self.sample_mode == FINITE:
            return self.samps_per_chan
        rate = self.rate_hz
        default = 1_000 if rate <= 100 else 10_000 if rate <= 10_000 else \
            100_000 if rate <= 1_000_000 else 1_000_000
        return max(self.samps_per_chan, default)

    def done(self) -> bool:
        if not self.running or self.halted:
            return True
        return self.sample_mode == FINITE and self.position >= self.samps_per_chan

    def available(self) -> int:
        return self.acquired - self.read_pos if self.kind == "ai" else 0

    def space(self) -> int:
        """Free output buffer, samples per channel."""
        if not self.running:
            return max(MAX_BUFFER_SAMPLES // max(len(self.channels), 1) - self.written, 0)
        return self.size - max(self.written - self.generated, 0)


def _range_names(prefix: str, first: int, last: int):
    step = 1 if last >= first else -1
    return (f"{prefix}{i}" for i in range(first, last + step, step))


class DaqDevice:
    """The emulated card: tasks by name, AO levels, the sample clocks, and the substrate behind them."""

    def __init__(self, name: str, substrate: Substrate, seed: int, card: CardSpec = PCIE_6363):
        self.name = name
        self.substrate = substrate
        substrate.reset(seed)
        self.n_ao, self.n_ai = substrate.n_inputs, substrate.n_outputs  # the lines wired to the substrate
        self.card = card.widened(self.n_ai, self.n_ao)
        self.ao_level = np.zeros(self.card.n_ao)
        self.tasks: dict[str, Task] = {}
        self._unnamed = 0

    # -- tasks and channels
    def create_task(self, name: str, behavior: int) -> tuple[Task, bool]:
        if name in self.tasks:
            if behavior == 1:  # INITIALIZE_SERVER_SESSION
                raise DaqFault(Err.DUPLICATE_TASK, f"Task Name: {name[:80]}")
            return self.tasks[name], False
        if behavior == 2:  # ATTACH_TO_SERVER_SESSION
            raise DaqFault(Err.INVALID_TASK, f"Task Name: {name[:80]}")
        if not name:
            name, self._unnamed = f"_unnamedTask<{self._unnamed}>", self._unnamed + 1
        self.tasks[name] = task = Task(name)
        return task, True

    def task(self, handle) -> Task:
        try:
            return self.tasks[handle.name]
        except KeyError:
            raise DaqFault(Err.INVALID_TASK, f"Task Name: {handle.name[:80]}") from None

    def clear(self, task: Task) -> None:
        self.stop(task)
        self.tasks.pop(task.name, None)

    def add_channels(self, task: Task, kind: str, physical: str, names: str, low: float, high: float,
                     units: int, scale: str, terminal_config: int) -> None:
        _not_running(task)
        if task.channels and task.kind != kind:
            raise DaqFault(Err.ATTR_NOT_SUPPORTED, "a task holds channels of one type")
        if units != VoltageUnits.VOLTS.value or scale:
            raise DaqFault(Err.INVALID_ATTRIBUTE_VALUE, "Property: Units (volts only)")
        r = coerce_range(self.card.ai_ranges if kind == "ai" else self.card.ao_ranges, low, high,
                         kind.upper())
        lines = expand_physical(physical, self.name, kind, self.card.n_ai if kind == "ai" else self.card.n_ao)
        given = [n.strip() for n in names.split(",")] if names else []
        if given and len(given) != len(lines):
            raise DaqFault(Err.INVALID_CHANNEL_NAME_IN_LIST, f"Name To Assign: {names[:80]}")
        new = []
        for j, (phys, index) in enumerate(lines):
            name = given[j] if given else phys
            if any(ch.name == name for ch in task.channels + new):
                raise DaqFault(Err.INVALID_CHANNEL_NAME_IN_LIST, f"Duplicate channel: {name[:80]}")
            ch = Channel(name, phys, kind, index, float(low), float(high), r)
            if kind == "ai":
                self.set_terminal_config(ch, terminal_config)
            new.append(ch)
        task.channels.extend(new)

    def set_terminal_config(self, ch: Channel, value: int) -> None:
        """DEFAULT resolves as NI-DAQmx does: differential where the line can be a pair's positive
        input (ai0-7, ai16-23 ... on an X Series card), else RSE; DIFF elsewhere is -200077."""
        pair_positive = ch.index % 16 < 8
        if value == TerminalConfiguration.DEFAULT.value:
            value = DIFF if pair_positive else RSE
        if value not in self.card.ai_term_cfgs or (value == DIFF and not pair_positive):
            raise DaqFault(Err.INVALID_ATTRIBUTE_VALUE, f"Property: AI.TermCfg\nRequested Value: {value}\n"
                           f"Channel Name: {ch.name}")
        ch.terminal_config = value

    def configure_timing(self, task: Task, source: str, rate: float, edge: int, mode: int,
                         samps: int) -> None:
        _not_running(task)
        self._check_rate(task, rate)
        if mode not in (FINITE, CONTINUOUS) or samps < 1 or samps >= 2**63:
            raise DaqFault(Err.INVALID_ATTRIBUTE_VALUE, f"Property: SampQuant\nRequested: {mode}, {samps}")
        self._check_clock_source(task, source)
        task.timing_type = SAMPLE_CLOCK
        task.clock_source, task.rate_hz, task.active_edge = source, float(rate), int(edge)
        task.sample_mode, task.samps_per_chan = int(mode), int(samps)

    def _check_rate(self, task: Task, rate: float) -> None:
        n = max(len(task.channels), 1)
        top = self.card.ao_max_rate(n) if task.kind == "ao" else self.card.ai_max_rate(n)
        if not (self.card.min_rate <= rate <= top):
            raise DaqFault(Err.INVALID_ATTRIBUTE_VALUE, f"Property: SampClk.Rate\nRequested Value: {rate}\n"
                           f"Possible Values: {self.card.min_rate:.6g} to {top:.6g}")

    def _check_clock_source(self, task: Task, source: str) -> None:
        if source not in ("", "OnboardClock") and not (
                task.kind == "ao" and source.lower() == f"/{self.name}/ai/sampleclock".lower()):
            raise DaqFault(Err.INVALID_ROUTING_SOURCE_TERMINAL_NAME, f"Source: {source[:80]}")

    def configure_start_trigger(self, task: Task, source: str, edge: int) -> None:
        """A digital-edge start trigger: ``/Dev1/ai/StartTrigger`` (AO tasks), or a PFI line
        ``/Dev1/PFI0``..``PFI15``, whose edge the emulator takes to arrive as the task starts (nothing
        drives the PFI terminals)."""
        _not_running(task)
        if not self._is_pfi(source) and not (
                task.kind == "ao" and source.lower() == f"/{self.name}/ai/starttrigger".lower()):
            raise DaqFault(Err.INVALID_ROUTING_SOURCE_TERMINAL_NAME, f"Source: {source[:80]}")
        task.trigger_type, task.trigger_source, task.trigger_edge = \
            TriggerType.DIGITAL_EDGE.value, source, int(edge)

    def _is_pfi(self, source: str) -> bool:
        pfi = re.fullmatch(rf"/{re.escape(self.name)}/pfi(\d{{1,2}})", source, re.IGNORECASE)
        return pfi is not None and int(pfi.group(1)) < self.card.n_pfi

    def configure_reference_trigger(self, task: Task, source: str, pretrigger: int) -> None:
        """A digital-edge reference trigger on a PFI line of a finite AI task; the emulator takes the
        edge to arrive once the ``pretrigger`` samples are in, so the acquisition is its
        ``samps_per_chan`` samples from start."""
        _not_running(task)
        if task.kind != "ai" or not self._is_pfi(source):
            raise DaqFault(Err.INVALID_ROUTING_SOURCE_TERMINAL_NAME, f"Source: {source[:80]}")
        if not 2 <= pretrigger <= task.samps_per_chan - 2 or task.sample_mode != FINITE:
            raise DaqFault(Err.INVALID_ATTRIBUTE_VALUE, f"Property: RefTrig.PretrigSamples\n"
                           f"Requested Value: {pretrigger}\nSamples Per Channel: {task.samps_per_chan}")
        task.ref_trigger_source, task.pretrigger = source, int(pretrigger)

    def disable_start_trigger(self, task: Task) -> None:
        _not_running(task)
        task.trigger_type, task.trigger_source = TriggerType.NONE.value, ""

    # -- running
    def running_ai(self) -> Task | None:
        """The timed AI task that holds the card's AI timing engine, if one runs."""
        return next((t for t in self.tasks.values() if t.kind == "ai" and t.timed and t.running), None)

    def start(self, task: Task, now: float) -> None:
        if task.running:
            return
        if not task.channels:
            raise DaqFault(Err.INVALID_TASK, f"the task has no channels\nTask Name: {task.name}")
        if not task.timed:
            return  # on-demand (software-timed): each read or write happens at once, nothing to start
        self.sync(now)
        if task.kind == "ai":
            if self.running_ai() is not None:
                raise DaqFault(Err.PAL_RESOURCE_RESERVED, f"AI timing engine in use by task "
                               f"{self.running_ai().name}\nTask Name: {task.name}")
            size = task.buffer_size()
            if size * len(task.channels) > MAX_BUFFER_SAMPLES:
                raise DaqFault(Err.PAL_MEMORY_FULL, f"Buffer: {size} samples x {len(task.channels)} "
                               f"channels\nEmulator limit: {MAX_BUFFER_SAMPLES} samples\nTask Name: {task.name}")
            task.data = np.zeros((len(task.channels), size))
            task.acquired = task.read_pos = 0
            task.t0 = now
            for ao in self.tasks.values():  # the AI start trigger fires; the AI clock starts ticking
                if ao.kind == "ao" and ao.running and ao.t0 is None:
                    ao.t0 = now
        else:
            if task.written == 0 and task.data is None:
                raise DaqFault(Err.OUTPUT_BUFFER_EMPTY, f"Task Name: {task.name}")
            if task.staged:
                task.data = np.concatenate(task.staged, axis=1)
                task.staged = []
            task.generated = 0
            ai = self.running_ai()
            triggered = task.trigger_source.lower().endswith("/ai/starttrigger")
            task.t0 = None if triggered or (task.on_ai_clock and ai is None) else now
        task.running, task.halted, task.error = True, False, None
        task.starts += 1

    def stop(self, task: Task) -> None:
        task.running, task.t0 = False, None
        if task.kind == "ao" and task.regen_mode != ALLOW_REGEN:
            task.data, task.written = None, 0  # the samples were consumed
        task.staged = []

    # -- the clock
    def _ticks(self, task: Task, now: float) -> int:
        """Sample clock edges of an own-clocked task up to ``now`` (finite: at most ``samps_per_chan``)."""
        if task.t0 is None:
            return 0
        n = int(max(now - task.t0, 0.0) * task.rate_hz + 1e-9) + 1  # edge k at t0 + k / rate
        return min(n, task.samps_per_chan) if task.sample_mode == FINITE else n

    def _playable(self, ao: Task, upto: int) -> int:
        """How many of AO ``ao``'s first ``upto`` samples can be generated; an underflow (regeneration
        off, not enough written) halts the task with -200290."""
        if ao.sample_mode == FINITE:
            upto = min(upto, ao.samps_per_chan)
        if ao.regen_mode != ALLOW_REGEN and upto > ao.written:
            if ao.error is None and not ao.halted:
                ao.error = DaqFault(Err.GEN_STOPPED_TO_PREVENT_REGEN_OF_OLD_SAMPLES, f"Task Name: {ao.name}")
            ao.halted = True
            return ao.written
        return upto

    def _ao_values(self, ao: Task, j: np.ndarray) -> np.ndarray:
        """AO samples ``j`` (indices, ``(k,)``) of ``ao`` as ``(k, n_ch)`` volts."""
        return ao.data[:, j % ao.size].T

    def _hold(self, ao: Task) -> None:
        if ao.generated:
            self.ao_level[[ch.index for ch in ao.channels]] = self._ao_values(ao, np.array([ao.generated - 1]))[0]

    def sync(self, now: float) -> None:
        """Bring every running timed task to ``now``: AO tasks on their own clocks generate, the AI task
        acquires (the substrate steps once per sample on the AO voltages of that sample)."""
        before = self.ao_level.copy()
        own = [t for t in self.tasks.values() if t.kind == "ao" and t.running and t.timed
               and not t.on_ai_clock and t.t0 is not None]
        for ao in own:
            if not ao.halted:
                ao.generated = self._playable(ao, self._ticks(ao, now))
            self._hold(ao)
        ai = self.running_ai()
        if ai is None or ai.halted:
            return
        target = self._ticks(ai, now)
        if target - ai.read_pos > ai.size:  # the buffer filled unread: acquisition stops
            target = ai.read_pos + ai.size
            ai.halted = True
            ai.error = DaqFault(Err.SAMPLES_NO_LONGER_AVAILABLE, "The application is not able to keep "
                                f"up with the hardware acquisition (buffer of {ai.size} samples "
                                f"per channel filled)\nTask Name: {ai.name}")
        for at in range(ai.acquired, target, SUBSTRATE_CHUNK):
            self._acquire(ai, min(SUBSTRATE_CHUNK, target - at), before, own)

    def _acquire(self, ai: Task, new: int, before: np.ndarray, own: list[Task]) -> None:
        k = ai.acquired + np.arange(new)
        u = np.repeat(before[None], new, axis=0)
        for ao in own:  # own-clocked AO: the sample it holds at each AI sample's instant
            cols = [ch.index for ch in ao.channels]
            j = np.floor((ai.t0 - ao.t0) * ao.rate_hz + k * (ao.rate_hz / ai.rate_hz) + 1e-9).astype(np.int64)
            j = np.minimum(j, ao.generated - 1)
            live = np.flatnonzero(j >= 0)
            if len(live):
                u[np.ix_(live, cols)] = self._ao_values(ao, j[live])
        for ao in self.tasks.values():  # AO on the AI sample clock: one sample per AI sample
            if ao.kind == "ao" and ao.running and ao.on_ai_clock and ao.t0 is not None:
                cols = [ch.index for ch in ao.channels]
                start = ao.generated
                m = 0 if ao.halted else self._playable(ao, start + new) - start
                if m > 0:
                    u[:m, cols] = self._ao_values(ao, start + np.arange(m))
                    ao.generated += m
                if start + m > 0:
                    u[max(m, 0):, cols] = self._ao_values(ao, np.array([start + m - 1]))[0]
                self._hold(ao)
        y = np.zeros((new, self.card.n_ai))
        y[:, :self.n_ai] = self.substrate.run(u[None, :, :self.n_ao])[0]
        cols = [ch.index for ch in ai.channels]
        rng = np.array([ch.range_V for ch in ai.channels])
        ai.data[:, k % ai.size] = np.clip(y[:, cols], -rng, rng).T
        ai.acquired += new

    def poll_s(self) -> float:
        """How long a waiting call may sleep: :data:`POLL_S`, or one AI sample period while AO drives a
        wired emulator's electrodes (its samples reach that emulator within a sample of their time)."""
        ai = self.running_ai()
        if ai is None or not isinstance(self.substrate, Wire):
            return POLL_S
        return min(POLL_S, 1.0 / ai.rate_hz)

    def eta(self, task: Task, count: int, now: float) -> float:
        """Seconds from ``now`` until ``task`` has ``count`` samples per channel (a guess for tasks on
        another task's clock or waiting for a trigger: :data:`POLL_S`)."""
        if task.t0 is None or task.on_ai_clock:
            return POLL_S
        return max((count - 1) / task.rate_hz - (now - task.t0), 0.0)

    # -- reading and writing
    def samples_to_read(self, task: Task, samps: int, now: float) -> int:
        """Samples per channel a read of ``samps`` (-1: all available) on AI ``task`` returns.

        Starts the task if needed.  Refuses, as DAQmx does, reading past the end of a finite
        acquisition (-200278) and, in a continuous one, more than the buffer holds (-200279: by the time
        the last sample arrived the first would have been overwritten).
        """
        if task.kind != "ai":
            raise DaqFault(Err.ATTR_NOT_SUPPORTED, "read from a task without analog inputs")
        if not task.timed:
            return 1 if samps < 0 else samps
        if not task.running:
            self.start(task, now)
        self.sync(now)
        if task.sample_mode == FINITE:
            left = task.samps_per_chan - task.read_pos
            samps = (task.available() if task.read_all_avail else left) if samps < 0 else samps
            if samps > left:
                raise DaqFault(Err.SAMPLES_WILL_NEVER_BE_AVAILABLE,
                               f"Attempted to read {samps} samples, {left} remain\nTask Name: {task.name}")
        elif samps < 0:
            samps = task.available()
        elif samps > task.buffer_size():
            raise DaqFault(Err.SAMPLES_NO_LONGER_AVAILABLE,
                           f"Attempted to read {samps} samples per channel from a buffer of "
                           f"{task.buffer_size()}\nTask Name: {task.name}")
        return samps

    def take(self, task: Task, samps: int) -> np.ndarray:
        """Consume up to ``samps`` acquired samples of AI ``task`` (all of them on an on-demand task,
        whose samples are acquired now); returns ``(n_ch, k)``."""
        if not task.timed:
            u = np.repeat(self.ao_level[None, :self.n_ao], samps, axis=0)
            y = np.zeros((samps, self.card.n_ai))
            for at in range(0, samps, SUBSTRATE_CHUNK):
                y[at:at + SUBSTRATE_CHUNK, :self.n_ai] = self.substrate.run(u[None, at:at + SUBSTRATE_CHUNK])[0]
            rng = np.array([ch.range_V for ch in task.channels])[:, None]
            return np.clip(y[:, [ch.index for ch in task.channels]].T, -rng, rng)
        k = min(samps, task.available())
        out = task.data[:, (task.read_pos + np.arange(k)) % task.size]
        task.read_pos += k
        return out

    def check_write(self, task: Task, samps: int, data: np.ndarray, layout: int) -> np.ndarray:
        """AO data ``data`` (flat) as ``(n_ch, samps)``, refused when it does not fit the task or lies
        outside a channel's limits (-200561)."""
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
        return block

    def put(self, task: Task, block: np.ndarray) -> int:
        """Write as much of ``block`` ``(n_ch, k)`` as the buffer takes now; returns the count."""
        if not task.timed:  # on-demand: the lines take the last value now
            if block.shape[1]:
                self.ao_level[[ch.index for ch in task.channels]] = block[:, -1]
                if isinstance(self.substrate, Wire):  # the wired electrodes see the new level at once
                    self.substrate.hold(self.ao_level[:self.n_ao])
            return block.shape[1]
        n_ch, k = block.shape
        if not task.running:
            if (task.written + k) * n_ch > MAX_BUFFER_SAMPLES:
                raise DaqFault(Err.PAL_MEMORY_FULL,
                               f"Buffer: {task.written + k} samples x {n_ch} channels\n"
                               f"Emulator limit: {MAX_BUFFER_SAMPLES} samples\nTask Name: {task.name}")
            if task.data is not None and not task.staged:  # a regenerating buffer kept from a run
                task.staged, task.written = [], 0
            task.staged.append(block.copy())
            task.written += k
            task.data = None
            return k
        m = int(min(k, max(task.space(), 0)))
        if m:
            task.data[:, (task.written + np.arange(m)) % task.size] = block[:, :m]
            task.written += m
        return m


def _not_running(task: Task) -> None:
    if task.running:
        raise DaqFault(Err.CAN_NOT_PERFORM_OP_WHILE_TASK_RUNNING, f"Task Name: {task.name}")


# -- attribute table -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Attribute:
    """One entry of the attribute table: value type, getter ``(device, task, channel) -> value``, and
    setter ``(device, task, channel, value)`` (channel attributes are set per selected channel)."""

    type: str
    get: object
    set: object = None


def _no_attr():
    raise DaqFault(Err.ATTR_NOT_SUPPORTED)


def _only(kind: str, value):
    """An attribute getter valid on ``kind`` channels only."""
    return lambda d, t, c: value(d, t, c) if c.kind == kind else _no_attr()


def _set_limits(which: str):
    def setter(d: DaqDevice, t: Task, c: Channel, value: float) -> None:
        _not_running(t)
        low, high = (value, c.high) if which == "low" else (c.low, value)
        c.range_V = coerce_range(d.card.ai_ranges if c.kind == "ai" else d.card.ao_ranges, low, high,
                                 c.kind.upper())
        c.low, c.high = float(low), float(high)
    return setter


def _set_enum(prop: str, allowed, attr: str):
    def setter(d: DaqDevice, t: Task, c, value: int) -> None:
        _not_running(t)
        if value not in allowed:
            raise DaqFault(Err.INVALID_ATTRIBUTE_VALUE, f"Property: {prop}\nRequested Value: {value}")
        setattr(t, attr, value)
    return setter


def _set_rate(d: DaqDevice, t: Task, c, value: float) -> None:
    _not_running(t)
    d._check_rate(t, value)
    t.rate_hz, t.timing_type = float(value), SAMPLE_CLOCK


def _set_samps(d: DaqDevice, t: Task, c, value: int) -> None:
    _not_running(t)
    if not 1 <= value < 2**63:
        raise DaqFault(Err.INVALID_ATTRIBUTE_VALUE, f"Property: SampQuant.SampPerChan\nRequested Value: {value}")
    t.samps_per_chan = int(value)


def _set_source(d: DaqDevice, t: Task, c, value: str) -> None:
    _not_running(t)
    d._check_clock_source(t, value)
    t.clock_source = value


def _set_buffer(d: DaqDevice, t: Task, c, value: int) -> None:
    _not_running(t)
    if value * max(len(t.channels), 1) > MAX_BUFFER_SAMPLES:
        raise DaqFault(Err.PAL_MEMORY_FULL, f"Buffer: {value} samples\nTask Name: {t.name}")
    t.buffer_request = int(value)


def _set_description(d, t, c, value: str) -> None:
    c.description = value[:1024]


def _timing_rate_max(d: DaqDevice, t: Task, c) -> float:
    n = len(t.channels)
    return d.card.ao_max_rate(n) if t.kind == "ao" else d.card.ai_max_rate(n)


def _default_read_count(d: DaqDevice, t: Task, c) -> int:
    """DAQmx_Read_DefaultNumberOfSamplesToRead, what ``task.read(READ_ALL_AVAILABLE)`` asks for."""
    if t.kind != "ai":
        _no_attr()
    if t.timed and t.sample_mode == FINITE and not t.read_all_avail:
        return t.samps_per_chan - t.read_pos
    return t.available() if t.timed else 1


ATTRIBUTES: dict[tuple[str, int], Attribute] = {
    # task
    ("task", 0x1276): Attribute("string", lambda d, t, c: t.name),
    ("task", 0x1273): Attribute("string", lambda d, t, c: ", ".join(ch.name for ch in t.channels)),
    ("task", 0x2181): Attribute("uint32", lambda d, t, c: len(t.channels)),
    ("task", 0x230E): Attribute("string", lambda d, t, c: d.name if t.channels else ""),
    # channel
    ("chan", 0x187F): Attribute("int32", lambda d, t, c: (ChannelType.ANALOG_INPUT if c.kind == "ai"
                                                          else ChannelType.ANALOG_OUTPUT).value),
    ("chan", 0x18F5): Attribute("string", lambda d, t, c: c.physical),
    ("chan", 0x1926): Attribute("string", lambda d, t, c: c.description, _set_description),
    ("chan", 0x17DE): Attribute("double", _only("ai", lambda d, t, c: c.low), _set_limits("low")),
    ("chan", 0x17DD): Attribute("double", _only("ai", lambda d, t, c: c.high), _set_limits("high")),
    ("chan", 0x1816): Attribute("double", _only("ai", lambda d, t, c: -c.range_V)),
    ("chan", 0x1815): Attribute("double", _only("ai", lambda d, t, c: c.range_V)),
    ("chan", 0x1765): Attribute("double", lambda d, t, c: float(d.card.resolution_bits)),
    ("chan", 0x0695): Attribute("int32", _only("ai", lambda d, t, c: UsageTypeAI.VOLTAGE.value)),
    ("chan", 0x1097): Attribute("int32", _only("ai", lambda d, t, c: c.terminal_config),
                                lambda d, t, c, v: (_not_running(t), d.set_terminal_config(c, v))),
    ("chan", 0x1094): Attribute("int32", _only("ai", lambda d, t, c: VoltageUnits.VOLTS.value)),
    ("chan", 0x1187): Attribute("double", _only("ao", lambda d, t, c: c.low), _set_limits("low")),
    ("chan", 0x1186): Attribute("double", _only("ao", lambda d, t, c: c.high), _set_limits("high")),
    ("chan", 0x182D): Attribute("double", _only("ao", lambda d, t, c: -c.range_V)),
    ("chan", 0x182E): Attribute("double", _only("ao", lambda d, t, c: c.range_V)),
    ("chan", 0x1108): Attribute("int32", _only("ao", lambda d, t, c: UsageTypeAO.VOLTAGE.value)),
    ("chan", 0x1184): Attribute("int32", _only("ao", lambda d, t, c: VoltageUnits.VOLTS.value)),
    ("chan", 0x188E): Attribute("int32", _only("ao", lambda d, t, c: RSE)),
    # timing
    ("timing", 0x1347): Attribute("int32", lambda d, t, c: t.timing_type,
                                  _set_enum("SampTimingType", (ON_DEMAND, SAMPLE_CLOCK), "timing_type")),
    ("timing", 0x1344): Attribute("double", lambda d, t, c: t.rate_hz, _set_rate),
    ("timing", 0x22C8): Attribute("double", _timing_rate_max),
    ("timing", 0x1852): Attribute("string", lambda d, t, c: t.clock_source or "OnboardClock", _set_source),
    ("timing", 0x1301): Attribute("int32", lambda d, t, c: t.active_edge,
                                  _set_enum("SampClk.ActiveEdge", {e.value for e in Edge}, "active_edge")),
    ("timing", 0x1300): Attribute("int32", lambda d, t, c: t.sample_mode,
                                  _set_enum("SampQuant.SampMode", (FINITE, CONTINUOUS), "sample_mode")),
    ("timing", 0x1310): Attribute("uint64", lambda d, t, c: t.samps_per_chan, _set_samps),
    # start trigger
    ("trig", 0x1393): Attribute("int32", lambda d, t, c: t.trigger_type),
    ("trig", 0x1407): Attribute("string", lambda d, t, c: t.trigger_source),
    ("trig", 0x1404): Attribute("int32", lambda d, t, c: t.trigger_edge),
    ("trig", 0x1419): Attribute("int32", lambda d, t, c: (TriggerType.DIGITAL_EDGE if t.ref_trigger_source
                                                          else TriggerType.NONE).value),
    ("trig", 0x1434): Attribute("string", lambda d, t, c: t.ref_trigger_source),
    ("trig", 0x1445): Attribute("uint32", lambda d, t, c: t.pretrigger),
    # read stream
    ("read", 0x217B): Attribute("uint32", lambda d, t, c: len(t.channels) if t.kind == "ai" else _no_attr()),
    ("read", 0x1823): Attribute("string", lambda d, t, c: ", ".join(ch.name for ch in t.channels)),
    ("read", 0x1223): Attribute("uint32", lambda d, t, c: t.available()),
    ("read", 0x192A): Attribute("uint64", lambda d, t, c: t.acquired),
    ("read", 0x1221): Attribute("uint64", lambda d, t, c: t.read_pos),
    ("read", 0x31E8): Attribute("uint32", _default_read_count),
    ("read", 0x1215): Attribute("bool", lambda d, t, c: t.read_all_avail,
                                lambda d, t, c, v: setattr(t, "read_all_avail", bool(v))),
    # write stream
    ("write", 0x217E): Attribute("uint32", lambda d, t, c: len(t.channels) if t.kind == "ao" else _no_attr()),
    ("write", 0x1453): Attribute("int32", lambda d, t, c: t.regen_mode,
                                 _set_enum("RegenMode", {m.value for m in RegenerationMode}, "regen_mode")),
    ("write", 0x192B): Attribute("uint64", lambda d, t, c: t.generated),
    ("write", 0x1458): Attribute("uint64", lambda d, t, c: t.written),
    ("write", 0x1460): Attribute("uint32", lambda d, t, c: min(t.space(), 2**32 - 1)),
    # buffer
    ("buffer", 0x186C): Attribute("uint32", lambda d, t, c: t.buffer_size() if t.kind == "ai" else _no_attr(),
                                  _set_buffer),
    ("buffer", 0x186D): Attribute("uint32", lambda d, t, c: (t.size or t.written) if t.kind == "ao"
                                  else _no_attr(), _set_buffer),
}
"""Attribute table: ``(category, DAQmx attribute id) -> Attribute`` (ids as in ``nidaqmx.task``)."""

_CATEGORIES = {"Task": "task", "Chan": "chan", "Timing": "timing", "Trig": "trig", "Read": "read",
               "Write": "write", "Buffer": "buffer"}
_TYPES = {"String": "string", "Int32": "int32", "UInt32": "uint32", "UInt64": "uint64", "Double": "double",
          "Bool": "bool"}
_SYSTEM_INFO = {0x1272: DRIVER_VERSION[0], 0x1923: DRIVER_VERSION[1], 0x2F22: DRIVER_VERSION[2]}
_PRIMARY = {"string": "value", "int32": "value_raw", "uint32": "value", "uint64": "value",
            "double": "value", "bool": "value", "double_array": "value", "int32_array": "value_raw"}
"""The reply field the client reads for each value type (enums travel as ``value_raw``)."""


def _wait_s(timeout_s: float) -> float:
    """A client's timeout (seconds; -1 waits forever in DAQmx) as a wait of 0..:data:`MAX_STALL_S`;
    NaN or another negative value is refused with -200453, as DAQmx refuses it."""
    if timeout_s == -1:
        return MAX_STALL_S
    if not timeout_s >= 0:  # NaN, or negative
        raise DaqFault(Err.INVALID_TIMEOUT_VAL, f"Timeout: {timeout_s}")
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
            context.set_trailing_metadata(fault.metadata())
            context.abort(grpc.StatusCode.UNKNOWN, str(fault))

    return handler


def _attribute_rpc(name: str, category: str, kind: str):
    response_cls = getattr(pb, name + "Response")
    setting = name.startswith("Set")

    def method(self, request, context):
        with self.lock:
            task = self.device.task(request.task)
            self.device.sync(time.monotonic())
            entry = ATTRIBUTES.get((category, request.attribute_raw))
            if entry is None or entry.type != kind:
                raise DaqFault(Err.ATTR_NOT_SUPPORTED, f"Property ID: {request.attribute_raw:#x}")
            chans = task.select(request.channel) if category == "chan" else [None]
            if not chans:
                raise DaqFault(Err.CHAN_NOT_IN_TASK, f"the task has no channels\nTask Name: {task.name}")
            if setting:
                if entry.set is None:
                    raise DaqFault(Err.ATTR_CANNOT_BE_SET, f"Property ID: {request.attribute_raw:#x}")
                value = request.value_raw if kind == "int32" else request.value
                for ch in chans:
                    entry.set(self.device, task, ch, value)
                return response_cls(status=0)
            values = {entry.get(self.device, task, ch) for ch in chans}
            if len(values) > 1:
                raise DaqFault(Err.PRPTY_GET_SPECD_ACTIVE_CHAN_FAILED_DUE_TO_DIFFT_VALS,
                               f"Property ID: {request.attribute_raw:#x}\nChannels: {request.channel[:80]}")
        return response_cls(status=0, **{_PRIMARY[kind]: values.pop()})

    method.__name__ = name
    return _rpc(method)


def _info_rpc(name: str, kind: str, answer):
    """A device / physical-channel attribute getter: ``answer(servicer, request, kind) -> value``."""
    response_cls = getattr(pb, name + "Response")

    def method(self, request, context):
        return response_cls(status=0, **{_PRIMARY[kind]: answer(self, request, kind)})

    method.__name__ = name
    return _rpc(method)


class NidaqServicer(pb_grpc.NiDAQmxServicer):
    """The implemented subset of NI's ``NiDAQmx`` gRPC service over one :class:`DaqDevice`."""

    def __init__(self, emulator: "NidaqEmulator"):
        self.emulator = emulator
        self.device = emulator.device
        self.lock = threading.Lock()

    def _until(self, timeout_s: float, ready, due) -> bool:
        """Wait up to ``timeout_s`` for ``ready()`` (called under the lock after a sync; ``due()`` the
        seconds until it may become true); returns whether it did.  Ends early when the server closes."""
        deadline = time.monotonic() + _wait_s(timeout_s)
        while True:
            with self.lock:
                now = time.monotonic()
                self.device.sync(now)
                if ready():
                    return True
                pause = min(due(now), self.device.poll_s(), deadline - now)
            if pause <= 0 and time.monotonic() >= deadline:
                return False
            if self.emulator.wait(max(pause, 1e-4)):
                return False

    # -- system, device, physical channels
    @_rpc
    def GetSystemInfoAttributeUInt32(self, request, context):
        if request.attribute_raw not in _SYSTEM_INFO:
            raise DaqFault(Err.ATTR_NOT_SUPPORTED, f"Property ID: {request.attribute_raw:#x}")
        return pb.GetSystemInfoAttributeUInt32Response(status=0, value=_SYSTEM_INFO[request.attribute_raw])

    @_rpc
    def GetSystemInfoAttributeString(self, request, context):
        # 0x193B devices; 0x1265 global channels, 0x1266 scales, 0x1267 saved tasks: none persisted
        if request.attribute_raw not in (0x193B, 0x1265, 0x1266, 0x1267):
            raise DaqFault(Err.ATTR_NOT_SUPPORTED, f"Property ID: {request.attribute_raw:#x}")
        value = self.device.name if request.attribute_raw == 0x193B else ""
        return pb.GetSystemInfoAttributeStringResponse(status=0, value=value)

    def _device_attribute(self, request, kind):
        return device_attribute(self.device.card, self.device.name, request.device_name,
                                request.attribute_raw, kind)

    def _physical_attribute(self, request, kind):
        return physical_channel_attribute(self.device.card, self.device.name, request.physical_channel,
                                          request.attribute_raw, kind)

    @_rpc
    def ResetDevice(self, request, context):
        device_attribute(self.device.card, self.device.name, request.device_name, 0x0631, "string")
        with self.lock:
            for task in list(self.device.tasks.values()):
                self.device.stop(task)
        return pb.ResetDeviceResponse(status=0)

    @_rpc
    def GetErrorString(self, request, context):
        try:
            text = ERROR_TEXT.get(Err(request.error_code), "")
        except ValueError:
            text = ""
        return pb.GetErrorStringResponse(status=0, error_string=text)

    # -- tasks, channels, timing
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
    def CfgInputBuffer(self, request, context):
        with self.lock:
            _set_buffer(self.device, self.device.task(request.task), None, request.num_samps_per_chan)
        return pb.CfgInputBufferResponse(status=0)

    @_rpc
    def CfgOutputBuffer(self, request, context):
        with self.lock:
            _set_buffer(self.device, self.device.task(request.task), None, request.num_samps_per_chan)
        return pb.CfgOutputBufferResponse(status=0)

    @_rpc
    def CfgDigEdgeStartTrig(self, request, context):
        with self.lock:
            self.device.configure_start_trigger(self.device.task(request.task), request.trigger_source,
                                                request.trigger_edge_raw)
        return pb.CfgDigEdgeStartTrigResponse(status=0)

    @_rpc
    def CfgDigEdgeRefTrig(self, request, context):
        with self.lock:
            self.device.configure_reference_trigger(self.device.task(request.task), request.trigger_source,
                                                    request.pretrigger_samples)
        return pb.CfgDigEdgeRefTrigResponse(status=0)

    @_rpc
    def DisableStartTrig(self, request, context):
        with self.lock:
            self.device.disable_start_trigger(self.device.task(request.task))
        return pb.DisableStartTrigResponse(status=0)

    # -- task state
    @_rpc
    def StartTask(self, request, context):
        with self.lock:
            self.device.start(self.device.task(request.task), time.monotonic())
        return pb.StartTaskResponse(status=0)

    def _stop(self, handle) -> None:
        with self.lock:
            task = self.device.task(handle)
            self.device.sync(time.monotonic())
            error, task.error = task.error, None
            self.device.stop(task)
        if error is not None:
            raise error

    @_rpc
    def StopTask(self, request, context):
        self._stop(request.task)
        return pb.StopTaskResponse(status=0)

    @_rpc
    def TaskControl(self, request, context):
        if request.action_raw == TaskMode.TASK_START.value:
            with self.lock:
                self.device.start(self.device.task(request.task), time.monotonic())
        elif request.action_raw in (TaskMode.TASK_STOP.value, TaskMode.TASK_ABORT.value):
            self._stop(request.task)
        elif request.action_raw not in {m.value for m in TaskMode}:
            raise DaqFault(Err.INVALID_ATTRIBUTE_VALUE, f"Action: {request.action_raw}")
        else:  # verify, commit, reserve, unreserve: nothing to prepare on an emulated card
            with self.lock:
                self.device.task(request.task)
        return pb.TaskControlResponse(status=0)

    @_rpc
    def ClearTask(self, request, context):
        with self.lock:
            task = self.device.task(request.task)
            self.device.sync(time.monotonic())
            self.device.clear(task)
        return pb.ClearTaskResponse(status=0)

    @_rpc
    def IsTaskDone(self, request, context):
        with self.lock:
            task = self.device.task(request.task)
            self.device.sync(time.monotonic())
            if task.error is not None:
                raise task.error
            return pb.IsTaskDoneResponse(status=0, is_task_done=task.done())

    @_rpc
    def WaitUntilTaskDone(self, request, context):
        with self.lock:
            task = self.device.task(request.task)
        target = task.samps_per_chan
        self._until(request.time_to_wait, task.done, lambda now: self.device.eta(task, target, now))
        with self.lock:
            if task.error is not None:
                raise task.error
            if not task.done():
                raise DaqFault(Err.WAIT_UNTIL_DONE_DOES_NOT_INDICATE_DONE, f"Task Name: {task.name}")
        return pb.WaitUntilTaskDoneResponse(status=0)

    # -- writing
    def _write(self, handle, samps: int, data: np.ndarray, layout: int, auto_start: bool,
               timeout: float) -> int:
        """Write ``data``; returns the samples per channel written.  A write into a full buffer that
        times out fails with -200292 and the count written, as NI's server reports it (the client
        ignores a write reply's status)."""
        _wait_s(timeout)  # a bad timeout is refused before any sample moves
        with self.lock:
            task = self.device.task(handle)
            block = self.device.check_write(task, samps, data, layout)
            self.device.sync(time.monotonic())
            done = self.device.put(task, block)
            if auto_start and not task.running and task.timed:
                self.device.start(task, time.monotonic())
        if done < samps:  # a running task's buffer is full: wait for generation to free space
            def more() -> bool:
                nonlocal done
                if task.error is not None or not task.running:
                    return True
                done += self.device.put(task, block[:, done:])
                return done >= samps
            self._until(timeout, more, lambda now: self.device.eta(task, task.generated + 1, now))
            with self.lock:
                if task.error is not None:
                    raise task.error
            if done < samps:
                raise DaqFault(Err.SAMPLES_CAN_NOT_YET_BE_WRITTEN, f"Samples written: {done} of {samps}\n"
                               f"Task Name: {task.name}", samps_per_chan_written=done)
        return done

    @_rpc
    def WriteAnalogF64(self, request, context):
        data = np.asarray(request.write_array, dtype=np.float64)
        written = self._write(request.task, request.num_samps_per_chan, data, request.data_layout_raw,
                              request.auto_start, request.timeout)
        return pb.WriteAnalogF64Response(status=0, samps_per_chan_written=written)

    @_rpc
    def WriteAnalogScalarF64(self, request, context):
        self._write(request.task, 1, np.array([request.value]), FillMode.GROUP_BY_CHANNEL.value,
                    request.auto_start, request.timeout)
        return pb.WriteAnalogScalarF64Response(status=0)

    @_rpc
    def WriteAnalogWaveforms(self, request, context):
        columns = [np.asarray(float64_analog_waveform_from_protobuf(w).scaled_data) for w in request.waveforms]
        lengths = {len(c) for c in columns}
        if len(lengths) > 1:
            raise DaqFault(Err.INCONSISTENT_NUM_SAMPLES_TO_WRITE, f"Waveform lengths: {sorted(lengths)[:8]}")
        n = lengths.pop() if lengths else 0
        data = np.concatenate(columns) if columns else np.zeros(0)
        written = self._write(request.task, n, data, FillMode.GROUP_BY_CHANNEL.value, request.auto_start,
                              request.timeout)
        return pb.WriteAnalogWaveformsResponse(status=0, samps_per_chan_written=written)

    # -- reading
    def _read(self, handle, samps: int, timeout: float, array_size: int | None, context):
        """Read up to ``samps`` samples; returns (task, ``(n_ch, k)`` volts, DAQmx status)."""
        _wait_s(timeout)  # a bad timeout is refused before any sample moves
        now = time.monotonic()
        with self.lock:
            task = self.device.task(handle)
            if task.error is not None:
                raise task.error
            n = self.device.samples_to_read(task, samps, now)
            values = n * len(task.channels)
            if array_size is not None and array_size < values:
                raise DaqFault(Err.READ_BUFFER_TOO_SMALL, f"Array size: {array_size}\nRequired: {values}")
            if 8 * values + 64 > MAX_MESSAGE_BYTES:  # the reply could not be sent: refuse up front
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"a reply of {values} values exceeds the server's {MAX_MESSAGE_BYTES} "
                              "byte message limit; read fewer samples per call")
        if task.timed:
            target = task.read_pos + n
            self._until(timeout, lambda: task.acquired >= target or task.halted or not task.running,
                        lambda now: self.device.eta(task, target, now))
        with self.lock:
            got = self.device.take(task, n)
            if got.shape[1] < n and task.error is not None:
                error, task.error = task.error, None
                raise error
        status = int(Err.SAMPLES_NOT_YET_AVAILABLE) if got.shape[1] < n else 0
        return task, got, status

    @_rpc
    def ReadAnalogF64(self, request, context):
        fault = self.emulator.fault
        if fault == "stall":
            self.emulator.wait(_wait_s(request.timeout))
            return pb.ReadAnalogF64Response(status=int(Err.SAMPLES_NOT_YET_AVAILABLE),
                                            samps_per_chan_read=0)
        _, samples, status = self._read(request.task, request.num_samps_per_chan, request.timeout,
                                        request.array_size_in_samps, context)
        n_ch, n = samples.shape
        if fault == "garbage":
            samples = np.full((n_ch, max(n - 1, 0)), np.nan)
        elif fault == "drop":
            n -= n // 4
            samples = samples[:, :n]
        flat = samples.ravel() if request.fill_mode_raw == FillMode.GROUP_BY_CHANNEL.value \
            else samples.T.ravel()
        return pb.ReadAnalogF64Response(status=status, read_array=flat, samps_per_chan_read=n)

    @_rpc
    def ReadAnalogScalarF64(self, request, context):
        task, samples, status = self._read(request.task, 1, request.timeout, None, context)
        if len(task.channels) != 1:
            raise DaqFault(Err.READ_BUFFER_TOO_SMALL, f"a scalar read of {len(task.channels)} channels")
        if status:
            raise DaqFault(Err(status), f"Task Name: {task.name}")
        return pb.ReadAnalogScalarF64Response(status=0, value=float(samples[0, 0]))

    @_rpc
    def ReadAnalogWaveforms(self, request, context):
        task, samples, status = self._read(request.task, request.num_samps_per_chan, request.timeout,
                                           None, context)
        wall = time.time()
        if task.timed and task.t0 is not None:  # the wall-clock time of the first sample returned
            dt = 1.0 / task.rate_hz
            wall += task.t0 + (task.read_pos - samples.shape[1] + 1) * dt - time.monotonic()
            timing = Timing.create_with_regular_interval(
                datetime.timedelta(seconds=dt), datetime.datetime.fromtimestamp(wall, datetime.timezone.utc))
        else:
            timing = Timing.create_with_no_interval(datetime.datetime.fromtimestamp(wall, datetime.timezone.utc))
        waveforms = []
        for ch, row in zip(task.channels, samples):
            wf = AnalogWaveform.from_array_1d(row, dtype=np.float64, timing=timing)
            wf.extended_properties["NI_ChannelName"] = ch.name
            waveforms.append(float64_analog_waveform_to_protobuf(wf))
        return pb.ReadAnalogWaveformsResponse(status=status, waveforms=waveforms,
                                              samps_per_chan_read=samples.shape[1])

    # -- events
    def _event_task(self, request, event: str) -> Task:
        with self.lock:
            task = self.device.task(request.task)
            if event in task.events:
                raise DaqFault(Err.DONE_EVENT_ALREADY_REGISTERED if event == "done"
                               else Err.EVERY_N_SAMPS_EVENT_ALREADY_REGISTERED, f"Task Name: {task.name}")
            task.events.add(event)
        return task

    def _event_stream(self, task: Task, event: str, context, next_event):
        """Yield ``next_event(starts) -> response | None`` (polled under the lock after a sync) until the
        client cancels, the task is cleared or the server closes."""
        context.send_initial_metadata(())
        try:
            while context.is_active() and self.emulator.serving:
                with self.lock:
                    if self.device.tasks.get(task.name) is not task:
                        return
                    now = time.monotonic()
                    self.device.sync(now)
                    response = next_event()
                    pause = POLL_S if response is not None or not task.running else \
                        min(self.device.eta(task, task.position + 1, now), POLL_S)
                if response is not None:
                    yield response
                elif self.emulator.wait(max(pause, 1e-3)):
                    return
        finally:
            task.events.discard(event)

    @_rpc
    def RegisterEveryNSamplesEvent(self, request, context):
        kind_raw, n = request.every_n_samples_event_type_raw, request.n_samples
        if n == 0:
            raise DaqFault(Err.EVERY_N_SAMPS_EVENT_INTERVAL_ZERO_NOT_SUPPORTED, "")
        with self.lock:
            task = self.device.task(request.task)
            if kind_raw == EveryNSamplesEventType.ACQUIRED_INTO_BUFFER.value and task.kind != "ai":
                raise DaqFault(Err.EVERY_N_SAMPS_ACQ_INTO_BUFFER_NOT_FOR_OUTPUT, f"Task Name: {task.name}")
            if kind_raw == EveryNSamplesEventType.TRANSFERRED_FROM_BUFFER.value and task.kind != "ao":
                raise DaqFault(Err.EVERY_N_SAMPS_TRANSFERRED_FROM_BUFFER_NOT_FOR_INPUT, f"Task Name: {task.name}")
            if kind_raw not in {e.value for e in EveryNSamplesEventType}:
                raise DaqFault(Err.INVALID_ATTRIBUTE_VALUE, f"Every N Samples Event Type: {kind_raw}")
        task = self._event_task(request, "every_n")
        state = {"starts": task.starts, "fired": 0}

        def next_event():
            if task.starts != state["starts"]:
                state.update(starts=task.starts, fired=0)
            if task.running and task.position >= (state["fired"] + 1) * n:
                state["fired"] += 1
                return pb.RegisterEveryNSamplesEventResponse(
                    status=0, every_n_samples_event_type_raw=kind_raw, n_samples=n)
            return None

        return self._event_stream(task, "every_n", context, next_event)

    @_rpc
    def RegisterDoneEvent(self, request, context):
        task = self._event_task(request, "done")
        state = {"starts": task.starts}  # the run whose end was reported

        def next_event():
            if task.running and task.starts != state["starts"] and (task.halted or task.done()):
                state["starts"] = task.starts
                error = task.error
                return pb.RegisterDoneEventResponse(status=0 if error is None else error.code)
            return None

        return self._event_stream(task, "done", context, next_event)


for _name in dir(pb):  # Get/Set{Task,Chan,Timing,...}Attribute{String,Int32,...} over ATTRIBUTES
    _m = re.fullmatch(r"(Get|Set)(Task|Chan|Timing|Trig|Read|Write|Buffer)Attribute"
                      r"(String|Int32|UInt32|UInt64|Double|Bool)Request", _name)
    if _m and any(key[0] == _CATEGORIES[_m.group(2)] and a.type == _TYPES[_m.group(3)]
                  for key, a in ATTRIBUTES.items()):
        _rpc_name = _name[:-len("Request")]
        setattr(NidaqServicer, _rpc_name, _attribute_rpc(_rpc_name, _CATEGORIES[_m.group(2)],
                                                         _TYPES[_m.group(3)]))
for _kind, _suffix in (("string", "String"), ("int32", "Int32"), ("bool", "Bool"), ("double", "Double"),
                       ("uint32", "UInt32"), ("double_array", "DoubleArray"), ("int32_array", "Int32Array")):
    setattr(NidaqServicer, f"GetDeviceAttribute{_suffix}",
            _info_rpc(f"GetDeviceAttribute{_suffix}", _kind, NidaqServicer._device_attribute))
    setattr(NidaqServicer, f"GetPhysicalChanAttribute{_suffix}",
            _info_rpc(f"GetPhysicalChanAttribute{_suffix}", _kind, NidaqServicer._physical_attribute))


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

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds``, cut short when the server closes; returns whether it closed."""
        return self._wake.wait(seconds)

    @property
    def output_levels_V(self) -> np.ndarray:
        """The voltage each AO line wired to the substrate (``ao0..``) holds now (the last value driven
        on it), volts, ``(n_ao,)``; a copy (read-only)."""
        return self.device.ao_level[:self.device.n_ao].copy()

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
            executor = futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="nidaq-emulator")
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

        Waits up to 2 s for calls in flight (a waiting read or event stream is cut short) and for the
        workers.
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
