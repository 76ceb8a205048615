"""An NI-DAQmx device behind NI's gRPC service (``nidaqmx_grpc.NiDAQmx``), backed by a Substrate.

The real ``nidaqmx`` client, given ``GrpcSessionOptions`` on a channel to :attr:`NidaqEmulator.address`,
drives this server as it drives NI's gRPC Device Server, so a lab's own nidaqmx program runs against it
with only the connection changed (``docs/emulators-nidaq.md``).  The servicer implements the analog
voltage subset of ``nidaqmx._stubs.nidaqmx_pb2_grpc.NiDAQmxServicer``; any other RPC answers
``UNIMPLEMENTED`` as the base class does.  The server listens on 127.0.0.1 with an ephemeral port.

The card (``Dev1`` by default) is an NI PCIe-6363 (:mod:`.nidaq_card`: channel counts, ranges, rates,
device and physical-channel attributes); the substrate's inputs are wired to ``ao0..``, its outputs
to ``ai0..``; tasks, clocks and buffers are modelled in :mod:`.nidaq_model`.  Tasks keep a table of the
task, channel, timing, trigger, read, write and buffer attributes the client reads and sets
(:data:`.nidaq_attributes.ATTRIBUTES`, ids and enum values from ``nidaqmx``;
channel arguments may be names, comma lists or ranges such as ``Dev1/ai1:3``), and refuse what the card
refuses with DAQmx's codes (:mod:`.nidaq_errors`).  Errors travel as NI's server sends them: the call
is aborted with trailing metadata ``ni-error: <code>`` (a write that timed out adds
``ni-samps-per-chan-written``), except read timeouts, which come back in the reply's ``status`` with
the samples read so far, as NI's do.

Time: every started timed task runs on its own sample clock from the moment it starts
(``time.monotonic``), whether or not the client calls: sample ``k`` of an AI task is acquired (and AO
sample ``k`` applied) on clock edge ``k``, at ``t0 + k / rate`` (a 1 kS/s finite read of 2,000 samples
takes 2 s); a read blocks until its samples are acquired or its timeout passes (-200284, with the
samples that were there); a finite task is done after ``samps_per_chan / rate`` s (``WaitUntilTaskDone``
waits for it, or fails with -200560 after its timeout); a continuous AI task whose buffer fills unread
stops with -200279.  An AO task generates on its own clock, on ``/Dev1/ai/SampleClock`` (one sample per
AI sample from when both run) and/or starts on ``/Dev1/ai/StartTrigger`` (its ``t0`` is the AI task's);
a start trigger on a PFI line, and a reference trigger, are taken to fire as the task starts (nothing
drives the PFI terminals).  With regeneration off an AO task stops with -200290 when it runs out of
written samples, and a write into a full buffer blocks until generation frees space (-200292 after the
write's timeout).  On-demand (untimed) tasks: an AI read returns at once, an AO write sets the lines at
once.  Everything is computed lazily when a call or an event stream looks (under one lock), so an idle
emulator costs nothing.

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
:data:`~.nidaq_model.MAX_BUFFER_SAMPLES` with -50352 (memory full); a read whose reply exceeds
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

import grpc
import numpy as np
import session_pb2
from ni.protobuf.types.waveform_conversion import (float64_analog_waveform_from_protobuf,
                                                   float64_analog_waveform_to_protobuf)
from nidaqmx._stubs import nidaqmx_pb2 as pb
from nidaqmx._stubs import nidaqmx_pb2_grpc as pb_grpc
from nidaqmx.constants import EveryNSamplesEventType, FillMode, TaskMode, TerminalConfiguration
from nidaqmx.error_codes import DAQmxErrors as Err
from nitypes.waveform import AnalogWaveform, Timing

from prclab.reservoir import Substrate

from . import FAULTS
from .nidaq_attributes import ATTRIBUTES, set_buffer
from .nidaq_card import device_attribute, physical_channel_attribute
from .nidaq_errors import ERROR_TEXT, DaqFault
from .nidaq_model import POLL_S, DaqDevice, Task
from .wiring import Wire

DRIVER_VERSION = (24, 5, 0)
"""NI-DAQmx version reported through the system-information attributes."""
MAX_MESSAGE_BYTES = 16 << 20
"""Largest gRPC message the server sends or receives, bytes (2M float64 values); a read whose reply
would be larger is refused with gRPC ``RESOURCE_EXHAUSTED`` before any sample is computed, as NI's
server fails such a reply (the client's own default limit is 4 MB)."""
MAX_STALL_S = 30.0
"""Longest any call waits, whatever timeout the client asked for."""


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
            set_buffer(self.device, self.device.task(request.task), None, request.num_samps_per_chan)
        return pb.CfgInputBufferResponse(status=0)

    @_rpc
    def CfgOutputBuffer(self, request, context):
        with self.lock:
            set_buffer(self.device, self.device.task(request.task), None, request.num_samps_per_chan)
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
        columns = [np.asarray(float64_analog_waveform_from_protobuf(w).scaled_data)
                   for w in request.waveforms]
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
            timing = Timing.create_with_no_interval(
                datetime.datetime.fromtimestamp(wall, datetime.timezone.utc))
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
                raise DaqFault(Err.EVERY_N_SAMPS_TRANSFERRED_FROM_BUFFER_NOT_FOR_INPUT,
                               f"Task Name: {task.name}")
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
