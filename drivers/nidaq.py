"""NI DAQ cards through the ``nidaqmx`` package: analog outputs drive the substrate, analog inputs record it.

Two tasks, as NI's synchronised AO+AI example sets them up:

- an AI task (the response) on ``Dev1/ai0:{m-1}``, sample clock on board at ``rate_hz``;
- an AO task (the stimulus) on ``Dev1/ao0:{n-1}`` with each channel's range set to the stimulus range,
  regeneration off, clocked from ``/Dev1/ai/SampleClock`` and started by ``/Dev1/ai/StartTrigger``, so
  AO sample ``k`` is applied on the clock edge that takes AI sample ``k``.

Streaming is in blocks: ``write`` only queues stimulus on the host; each ``read(n)`` takes the next
``n`` queued stimulus samples (padded with the rest level when fewer are queued, which advances the stimulus
position as a running output would), configures both tasks for a finite ``n``-sample run if ``n``
changed, writes the block with ``AnalogMultiChannelWriter(auto_start=False)``, starts AO (armed) then
AI (which fires the trigger), reads the response with ``AnalogMultiChannelReader.read_many_sample``
into preallocated ``(m, chunk)`` float64 arrays, waits for AO to finish and stops both.  No output can
underflow however long the host pauses between reads; the price is a short pause of the clock between
blocks, during which the outputs hold their last voltage.  Timestamps are nominal: sample index over
``rate_hz``.  Reads are split into chunks of at most ``max_block_s`` seconds, each with a timeout of
its duration plus ``read_timeout_s`` (1.5 s by default), so a silent card fails within 2 s.

Transport, chosen outside the driver (as nidaqmx-python picks its interpreter): with ``grpc_options``
(``nidaqmx.GrpcSessionOptions``) or ``grpc_address`` (``host:port``, no credentials: a rig points the
driver at its emulator, :mod:`prclab.hardware_sims.nidaq_grpc`, with ``connect_to``) the tasks live on
an NI gRPC Device Server; every RPC then carries a deadline (the request's own timeout plus
``read_timeout_s``, else ``rpc_timeout_s``), so a server that stops answering cannot hang the caller.
Without either, the tasks run on the local NI-DAQmx driver and a real card.

Safe stop (``rest``, also on ``close`` and before a fault abandons the session): a finite block still
playing is first completed (its remaining AI samples read and discarded, so the outputs end exactly at
its last sample), the streaming tasks are cleared (AO lines then hold their voltage, as on a real card),
and a fresh on-demand AO task on the same lines writes a slew-limited ramp of single samples to the rest
level, software-timed at most :data:`REST_STEP_HZ` steps per second (each step waits out its interval,
so the slew between applied values never exceeds the limit), then clears.  The on-demand task does not
depend on the AI clock or on a broken stream, so it works after a stalled, garbled or short read.  When
the card cannot be reached at all (unplugged: every call fails with DAQmx -201003) nothing can be
driven: the report says ``outputs_at_rest: false``, and the lines do whatever the hardware does without
a host (the emulator holds the last voltage; a real USB card loses power and its outputs fall to about
0 V - not a ramp).

Every failure of the client — ``DaqError`` (with its DAQmx code), gRPC errors, a missing driver, a
short or non-finite read — becomes a one-line :class:`DeviceError` ``nidaq:Dev1: ...``; after one, the
device closes itself (tasks cleared quietly) and must be reopened.
"""

from __future__ import annotations

import collections
import re
import time
import urllib.parse
import uuid

import grpc
import nidaqmx
import nidaqmx.errors
import numpy as np
from nidaqmx.constants import AcquisitionType, RegenerationMode, TerminalConfiguration
from nidaqmx.stream_readers import AnalogMultiChannelReader
from nidaqmx.stream_writers import AnalogMultiChannelWriter

from prclab.errors import PrclabError

from .base import Adc, Device, DeviceChannels, DeviceError, voltage_channels

AI_BITS = 16
"""Resolution of the analog inputs (M- and X-series cards, e.g. USB-6211/6341: 16 bits over the
configured range); a recording stores the inputs as these counts."""
REST_STEP_HZ = 500.0
"""Most on-demand ramp steps per second when driving the outputs to rest (software timing)."""
REST_STEP_TIMEOUT_S = 1.0
"""Deadline of each on-demand write of the ramp to rest, seconds."""
MAX_VALUES_PER_CALL = 1 << 18
"""Most float64 values in one write or read RPC (2 MiB, under gRPC's 4 MiB default limit)."""
GRPC_CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 4 * 8 * MAX_VALUES_PER_CALL),
                        ("grpc.max_send_message_length", 4 * 8 * MAX_VALUES_PER_CALL)]


class _Deadlines(grpc.UnaryUnaryClientInterceptor):
    """Give every unary RPC a deadline: its own timeout (``timeout`` / ``time_to_wait`` field, when
    finite) plus ``slack_s``, else ``default_s``."""

    def __init__(self, slack_s: float, default_s: float):
        self.slack_s, self.default_s = slack_s, default_s

    def intercept_unary_unary(self, continuation, details, request):
        own = getattr(request, "timeout", getattr(request, "time_to_wait", -1.0))
        limit = own + self.slack_s if own >= 0 else self.default_s
        return continuation(details._replace(timeout=limit), request)


def _first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


class NidaqDevice(Device):
    """An NI DAQ card: ``n_stimulus`` voltage outputs and ``n_response`` voltage inputs at ``rate_hz``.

    Args:
        device: NI-DAQmx device name (``Dev1``).
        n_stimulus: analog outputs used, ``ao0..``.
        n_response: analog inputs used, ``ai0..``.
        rate_hz: common sample rate in hertz.
        stimulus_range_V: ``(low, high)`` volts of every output (also the AO channels' DAQmx range).
        response_range_V: ``(low, high)`` volts of every input (the AI channels' DAQmx range).
        grpc_options: ``nidaqmx.GrpcSessionOptions`` for a gRPC server; ``None`` drives a local card.
        terminal_config: AI terminal configuration (``nidaqmx.constants.TerminalConfiguration``).
        read_timeout_s: slack over a read chunk's duration before the read times out, seconds.
        max_block_s: longest read chunk, seconds.
        rpc_timeout_s: deadline of gRPC calls that carry no timeout of their own, seconds.
        grpc_address: ``host:port`` of a gRPC server reached without credentials (an emulator);
            a fresh channel is made at each ``open``.  Excludes ``grpc_options``.
    """

    name = "nidaq"

    def __init__(self, device: str = "Dev1", n_stimulus: int = 1, n_response: int = 1,
                 rate_hz: float = 1000.0, stimulus_range_V=(-1.0, 1.0), response_range_V=(-10.0, 10.0),
                 grpc_options=None, terminal_config=TerminalConfiguration.DEFAULT,
                 read_timeout_s: float = 1.0, max_block_s: float = 0.5, rpc_timeout_s: float = 5.0,
                 grpc_address: str | None = None):
        self.name = f"nidaq:{device}"
        if min(n_stimulus, n_response) < 1:
            raise DeviceError(f"{self.name}: needs at least one output and one input channel")
        if not rate_hz > 0 or not max_block_s > 0 or not read_timeout_s > 0:
            raise DeviceError(f"{self.name}: rate, max_block_s and read_timeout_s must be positive")
        if grpc_address is not None and grpc_options is not None:
            raise DeviceError(f"{self.name}: give grpc_options or grpc_address, not both")
        super().__init__(DeviceChannels(
            stimulus=voltage_channels("ao", n_stimulus, *stimulus_range_V),
            response=voltage_channels("ai", n_response, *response_range_V),
            rate_hz=float(rate_hz)))
        self.adc = tuple(Adc.spanning(AI_BITS, c.low, c.high) for c in self.channels.response)
        self.device = device
        self.grpc_options = grpc_options
        self.terminal_config = terminal_config
        self.read_timeout_s = float(read_timeout_s)
        self.rpc_timeout_s = float(rpc_timeout_s)
        self.grpc_address = grpc_address
        self.read_chunk = max(1, min(int(max_block_s * rate_hz), MAX_VALUES_PER_CALL // n_response))
        self.write_chunk = max(1, MAX_VALUES_PER_CALL // n_stimulus)
        self._ao = self._ai = self._channel = self._rpc_channel = None
        self._in_flight = False  # a finite block started and not yet completed
        self._writer: AnalogMultiChannelWriter | None = None
        self._reader: AnalogMultiChannelReader | None = None
        self.rest_log: list[np.ndarray] = []  # values written by the latest drives to rest
        self._block_last = np.zeros(n_stimulus)
        self._reset_stream()

    def _reset_stream(self) -> None:
        self._queue: collections.deque[np.ndarray] = collections.deque()
        self._n_written = self._n_read = 0
        self._block_n = 0  # samples per channel the tasks are configured for
        self._armed: int | None = None  # samples loaded and armed (``arm``), not yet started

    # -- Device ------------------------------------------------------------------------------------
    def _open(self) -> None:
        self._reset_stream()
        self._guarded("opening", self._create_tasks)

    def _clear_tasks(self) -> None:
        """Stop and clear both streaming tasks, quietly (the device may already be gone)."""
        for task in (self._ao, self._ai):
            if task is not None:
                try:
                    task.close()
                except (nidaqmx.errors.Error, grpc.RpcError):
                    pass
        self._ao = self._ai = self._writer = self._reader = None

    def _close(self) -> None:
        """Clear both tasks, then the transport."""
        self._clear_tasks()
        self._rpc_channel = None
        self._in_flight = False
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()
        self._reset_stream()

    def _write(self, block: np.ndarray) -> None:
        self._queue.append(block.copy())
        self._n_written += len(block)

    def _arm(self, n: int) -> None:
        if n and self._armed is None:
            self._guarded("arming", self._load_block, self._take(n))
        elif n and self._armed != n:
            raise DeviceError(f"{self.name}: already armed with {self._armed} samples, asked to arm {n}")

    def _read(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if self._armed not in (None, n):
            raise DeviceError(f"{self.name}: armed with {self._armed} samples, read asked for {n}")
        if n and self._armed is None:
            self._guarded("reading", self._load_block, self._take(n))
        samples = self._guarded("reading", self._play_block) if n else \
            np.zeros((0, len(self.channels.response)))
        t = (self._n_read + np.arange(n)) / self.channels.rate_hz
        self._n_read += n
        return samples, t

    def _stimulus_position(self) -> int:
        return self._n_written

    def connect_to(self, address: str) -> None:
        """Reach the tasks at the gRPC server ``address`` (``host:port``) from the next ``open`` on."""
        if self.grpc_options is not None:
            raise DeviceError(f"{self.name}: already given grpc_options; cannot also connect to {address!r}")
        self.grpc_address = str(address)

    def describe(self) -> dict:
        transport = "local NI-DAQmx" if self.grpc_options is None and self.grpc_address is None else "gRPC"
        return {**super().describe(), "nidaq_device": self.device, "transport": transport,
                "streaming": "finite AO+AI block per read, AO clock and start trigger from AI"}

    # -- rest ---------------------------------------------------------------------------------------
    def _rest(self, start_V: np.ndarray) -> str:
        """Complete a block in flight, clear the streaming tasks, ramp on a fresh on-demand AO task."""
        try:
            return self._drive_to_rest()
        except (nidaqmx.errors.Error, grpc.RpcError, AssertionError) as exc:
            code = getattr(exc, "error_code", None) or getattr(getattr(exc, "rpc_code", None), "name", "")
            text = _first_line(getattr(exc, "description", None) or exc)
            raise self._fail(f"cannot drive outputs to rest ({code} {text}); they hold "
                             f"{np.round(self.output_V, 6).tolist()} V or whatever the card does "
                             "unpowered") from None

    def _drive_to_rest(self) -> str:
        finished = ""
        if self._in_flight and self._ai is not None:
            finished = self._finish_block()
        self._queue.clear()
        self._clear_tasks()
        self._block_n, self._armed = 0, None
        step_hz = min(self.channels.rate_hz, REST_STEP_HZ)
        ramp = self._ramp(self.output_V, step_hz)
        stim = self.channels.stimulus
        task = self._task("rest", self._rpc_channel) if (self._rpc_channel is not None or
                                                         self.grpc_address is None) else None
        if task is None:
            raise self._fail("no session to drive outputs to rest")
        try:
            task.ao_channels.add_ao_voltage_chan(_lines(self.device, "ao", len(stim)),
                                                 min_val=stim[0].low, max_val=stim[0].high)
            writer = AnalogMultiChannelWriter(task.out_stream, auto_start=True)
            due = time.monotonic()
            for row in ramp:
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                writer.write_one_sample(np.ascontiguousarray(row), timeout=REST_STEP_TIMEOUT_S)
                due = time.monotonic() + 1.0 / step_hz
                self.output_V = row.copy()
                self.rest_log.append(row.copy())
        finally:
            try:
                task.close()
            except (nidaqmx.errors.Error, grpc.RpcError):
                pass
        return f"{finished}ramped to rest in {len(ramp)} on-demand steps at {step_hz:g} Hz"

    def _finish_block(self) -> str:
        """Let the block in flight play to its end (read its remaining samples, discarded)."""
        try:
            left = self._block_n - int(self._ai.in_stream.total_samp_per_chan_acquired)
            if left > 0:
                buf = np.empty((len(self.channels.response), left))
                self._reader.read_many_sample(buf, left, timeout=left / self.channels.rate_hz +
                                              self.read_timeout_s)
            self._ao.wait_until_done(timeout=self.read_timeout_s)
            self.output_V = self._block_last.copy()
            self._in_flight = False
            return "finished the block in flight, "
        except (nidaqmx.errors.Error, grpc.RpcError, AssertionError):
            # stopped mid-block: the outputs hold some sample of it; ramp from its last, and say so
            self.output_V = self._block_last.copy()
            return "block in flight cut short (ramp starts from its last sample), "

    # -- tasks -------------------------------------------------------------------------------------
    def _task(self, role: str, channel) -> nidaqmx.Task:
        name = f"prclab-{self.device}-{role}-{uuid.uuid4().hex[:8]}"
        if channel is None:
            return nidaqmx.Task(name)
        options = nidaqmx.GrpcSessionOptions(channel, name)
        if self.grpc_options is not None:
            options.api_key = self.grpc_options.api_key
        return nidaqmx.Task(name, grpc_options=options)

    def _create_tasks(self) -> None:
        channel = None
        if self.grpc_address is not None:
            self._channel = grpc.insecure_channel(self.grpc_address, options=GRPC_CHANNEL_OPTIONS)
            channel = self._channel
        elif self.grpc_options is not None:
            channel = self.grpc_options.grpc_channel
        if channel is not None:
            channel = grpc.intercept_channel(channel, _Deadlines(self.read_timeout_s, self.rpc_timeout_s))
        self._rpc_channel = channel
        dev, stim, resp = self.device, self.channels.stimulus, self.channels.response
        self._ai = self._task("ai", channel)
        self._ai.ai_channels.add_ai_voltage_chan(
            _lines(dev, "ai", len(resp)), terminal_config=self.terminal_config,
            min_val=resp[0].low, max_val=resp[0].high)
        self._ao = self._task("ao", channel)
        self._ao.ao_channels.add_ao_voltage_chan(_lines(dev, "ao", len(stim)),
                                                 min_val=stim[0].low, max_val=stim[0].high)
        self._ao.out_stream.regen_mode = RegenerationMode.DONT_ALLOW_REGENERATION
        self._ao.triggers.start_trigger.cfg_dig_edge_start_trig(f"/{dev}/ai/StartTrigger")
        self._writer = AnalogMultiChannelWriter(self._ao.out_stream, auto_start=False)
        self._reader = AnalogMultiChannelReader(self._ai.in_stream)

    def _configure(self, n: int) -> None:
        rate = self.channels.rate_hz
        self._ai.timing.cfg_samp_clk_timing(rate, sample_mode=AcquisitionType.FINITE, samps_per_chan=n)
        self._ao.timing.cfg_samp_clk_timing(rate, source=f"/{self.device}/ai/SampleClock",
                                            sample_mode=AcquisitionType.FINITE, samps_per_chan=n)
        self._block_n = n

    # -- streaming ---------------------------------------------------------------------------------
    def _take(self, n: int) -> np.ndarray:
        """The next ``n`` queued stimulus samples ``(n, n_stimulus)``, padded with the rest level."""
        parts, need = [], n
        while need and self._queue:
            head = self._queue[0]
            if len(head) <= need:
                parts.append(self._queue.popleft())
            else:
                parts.append(head[:need])
                self._queue[0] = head[need:]
            need -= len(parts[-1])
        if need:
            parts.append(np.repeat(self.rest_V[None], need, axis=0))
            self._n_written += need
        return np.concatenate(parts)

    def _load_block(self, stimulus: np.ndarray) -> None:
        """Configure for ``stimulus`` ``(n, n_stimulus)`` volts, write it and arm the AO task (it starts
        on the AI task's start trigger, ``_play_block``)."""
        n = len(stimulus)
        if n != self._block_n:
            self._configure(n)
        self._block_last = stimulus[-1].copy()
        for a in range(0, n, self.write_chunk):
            chunk = np.ascontiguousarray(stimulus[a:a + self.write_chunk].T)
            written = self._writer.write_many_sample(chunk, timeout=self.read_timeout_s)
            if written != chunk.shape[1]:
                raise self._fail(f"wrote {written} of {chunk.shape[1]} samples")
        self._ao.start()
        self._armed = n

    def _play_block(self) -> np.ndarray:
        """Start the AI task (and so the armed AO block) and read the loaded block's response
        ``(n, n_response)`` volts."""
        n, rate = self._armed, self.channels.rate_hz
        self._armed = None
        self._in_flight = True
        self._ai.start()
        out = np.empty((len(self.channels.response), n))
        for a in range(0, n, self.read_chunk):
            m = min(self.read_chunk, n - a)
            buf = np.full((len(self.channels.response), m), np.nan)
            got = self._reader.read_many_sample(buf, m, timeout=m / rate + self.read_timeout_s)
            first = self._n_read + a
            if got != m:
                raise self._fail(f"read returned {got} of {m} samples at sample {first}")
            if not np.isfinite(buf).all():
                raise self._fail(f"read returned non-finite values at sample {first}")
            out[:, a:a + m] = buf
        self._ao.wait_until_done(timeout=self.read_timeout_s)
        self._in_flight = False
        self.output_V = self._block_last.copy()
        self._ao.stop()
        self._ai.stop()
        return out.T

    def _fail(self, fault: str) -> DeviceError:
        return DeviceError(f"{self.name}: {fault}")

    def _guarded(self, doing: str, action, *args):
        """Run ``action``; any client failure closes the device and becomes a one-line DeviceError."""
        try:
            return action(*args)
        except DeviceError as exc:
            self._abandon(str(exc))
            raise
        except nidaqmx.errors.DaqError as exc:
            fault = f"DAQmx error {exc.error_code} while {doing}: {_first_line(exc)}"
        except nidaqmx.errors.RpcError as exc:
            code = getattr(exc.rpc_code, "name", exc.rpc_code)
            fault = f"gRPC {code} while {doing}: {_first_line(exc.description)}"
        except nidaqmx.errors.Error as exc:  # driver missing or unsupported on this platform
            fault = f"NI-DAQmx unavailable while {doing}: {_first_line(exc)}"
        except AssertionError:  # the client's own check on an overlong read reply
            fault = f"malformed reply from the DAQmx server while {doing}"
        self._abandon(fault)
        raise self._fail(fault) from None

    def _abandon(self, fault: str) -> None:
        """After a fault the stream is unusable: drive the outputs to rest where the card still
        answers (``last_stop`` says), then clear everything quietly; the device must reopen."""
        if self.is_open:
            self._in_flight = False  # the stream is broken: do not wait for the block in flight
            self.rest(f"device fault: {fault}")
        self.is_open = False
        self._close()


def _lines(device: str, kind: str, count: int) -> str:
    """Physical channel string ``Dev1/ai0`` or ``Dev1/ai0:3``."""
    return f"{device}/{kind}0" if count == 1 else f"{device}/{kind}0:{count - 1}"


def from_spec(address: str, request, n_ai_default: int = 1) -> NidaqDevice:
    """Device for spec ``nidaq:ADDRESS``: ``Dev1``, or ``Dev1?ai=4`` to record from 4 inputs.

    The stimulus channels, rate and range come from ``request``; ``ai`` defaults to ``n_ai_default``
    (a rig's emulator passes its substrate's outputs).  The local NI-DAQmx driver is used until
    :meth:`NidaqDevice.connect_to` names a gRPC server.
    """
    name, n_ai = parse_address(address)
    return NidaqDevice(name, request.n_stimulus, n_ai or n_ai_default, request.rate_hz,
                       stimulus_range_V=request.stimulus_range_V)


def parse_address(address: str) -> tuple[str, int | None]:
    """``Dev1?ai=4`` -> ``("Dev1", 4)`` (``None``: no ``ai`` given); raises ``PrclabError`` naming the
    spec for a bad device name or option."""
    name, _, query = address.partition("?")
    name = name or "Dev1"
    options = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    n_ai = options.pop("ai", None)
    if options:
        raise PrclabError(f"nidaq:{address}: unknown option(s) {', '.join(sorted(options))}; known: ai")
    if not re.fullmatch(r"[A-Za-z][\w-]*", name):
        raise PrclabError(f"nidaq:{address}: {name!r} is not an NI-DAQmx device name (e.g. Dev1)")
    if n_ai is not None:
        if not n_ai.isdigit() or int(n_ai) < 1:
            raise PrclabError(f"nidaq:{address}: ai={n_ai!r} is not a positive channel count")
        n_ai = int(n_ai)
    return name, n_ai
