"""The NI-DAQmx emulator's device model: tasks, channels, sample clocks, buffers and the substrate.

:class:`DaqDevice` is the emulated card (:mod:`.nidaq_card`) with its tasks; :meth:`DaqDevice.sync`
brings every running timed task to a moment on its sample clock (AO generates, AI acquires while the
substrate steps once per sample on the AO voltages of that sample).  The behaviour it implements, as a
client sees it through NI's gRPC service, is described in :mod:`.nidaq_grpc`.  Callers hold one lock
around every method (the servicer's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from nidaqmx.constants import (AcquisitionType, Edge, FillMode, RegenerationMode, SampleTimingType,
                               TerminalConfiguration, TriggerType, VoltageUnits)
from nidaqmx.error_codes import DAQmxErrors as Err

from prclab.reservoir import Substrate

from .nidaq_card import PCIE_6363, CardSpec, coerce_range, expand_physical
from .nidaq_errors import DaqFault
from .wiring import Wire

MAX_BUFFER_SAMPLES = 1 << 23
"""Largest task buffer the emulated host can allocate, samples over all channels (64 MiB of float64);
starting a task that needs more, or writing more AO samples, fails with -50352 (memory full)."""
SUBSTRATE_CHUNK = 1 << 16
"""A long acquisition runs the substrate in chunks of this many steps, bounding its working memory."""
POLL_S = 0.05
"""Longest a waiting call or event stream sleeps before it looks again (it wakes earlier when the
samples it waits for are due)."""
RSE, DIFF = TerminalConfiguration.RSE.value, TerminalConfiguration.DIFF.value
FINITE, CONTINUOUS = AcquisitionType.FINITE.value, AcquisitionType.CONTINUOUS.value
ON_DEMAND, SAMPLE_CLOCK = SampleTimingType.ON_DEMAND.value, SampleTimingType.SAMPLE_CLOCK.value
ALLOW_REGEN = RegenerationMode.ALLOW_REGENERATION.value


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
        refuse_while_running(task)
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
        refuse_while_running(task)
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
        refuse_while_running(task)
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
        refuse_while_running(task)
        if task.kind != "ai" or not self._is_pfi(source):
            raise DaqFault(Err.INVALID_ROUTING_SOURCE_TERMINAL_NAME, f"Source: {source[:80]}")
        if not 2 <= pretrigger <= task.samps_per_chan - 2 or task.sample_mode != FINITE:
            raise DaqFault(Err.INVALID_ATTRIBUTE_VALUE, f"Property: RefTrig.PretrigSamples\n"
                           f"Requested Value: {pretrigger}\nSamples Per Channel: {task.samps_per_chan}")
        task.ref_trigger_source, task.pretrigger = source, int(pretrigger)

    def disable_start_trigger(self, task: Task) -> None:
        refuse_while_running(task)
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
                               f"channels\nEmulator limit: {MAX_BUFFER_SAMPLES} samples\n"
                               f"Task Name: {task.name}")
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
            last = self._ao_values(ao, np.array([ao.generated - 1]))[0]
            self.ao_level[[ch.index for ch in ao.channels]] = last

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
                y[at:at + SUBSTRATE_CHUNK, :self.n_ai] = \
                    self.substrate.run(u[None, at:at + SUBSTRATE_CHUNK])[0]
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


def refuse_while_running(task: Task) -> None:
    if task.running:
        raise DaqFault(Err.CAN_NOT_PERFORM_OP_WHILE_TASK_RUNNING, f"Task Name: {task.name}")
