"""The NI-DAQmx gRPC emulator bounds what one request may cost, and answers in NI's own form.

Issue 10 ("Drivers and peers"): a 5e6 x 8 read allocated 2.3 GB in the emulator.  Through the real
``nidaqmx`` client: a continuous read larger than the task's buffer is refused with DAQmx -200279
(samples no longer available: the buffer NI-DAQmx sizes per its "Buffer Size" table would have been
overwritten), a task whose buffer the emulated host cannot hold is refused at start with -50352
(memory full), a reply larger than the server's message limit with gRPC RESOURCE_EXHAUSTED - each
before any sample is computed - and the server keeps serving.  Plus the lifecycle: close is idempotent
and leaves no worker thread.
"""

from __future__ import annotations

import collections
import threading
import tracemalloc

import grpc
import nidaqmx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nidaqmx.constants import AcquisitionType
from nidaqmx.stream_readers import AnalogMultiChannelReader
from nidaqmx.stream_writers import AnalogMultiChannelWriter

from prclab.hardware_sims.nidaq_grpc import MAX_MESSAGE_BYTES, NidaqEmulator
from prclab.hardware_sims.nidaq_model import MAX_BUFFER_SAMPLES
from prclab.reservoir import make_substrate

RATE_HZ = 1000.0
N_CH = 8
HUGE = 5_000_000  # samples per channel: the 5e6 x 8 read (320 MB of float64)


@pytest.fixture
def emulator():
    with NidaqEmulator(make_substrate("potato", 2, n_outputs=N_CH, dt=1.0 / RATE_HZ), seed=1) as emu:
        yield emu


@pytest.fixture
def channel(emulator):
    ch = grpc.insecure_channel(emulator.address, options=[("grpc.max_receive_message_length", 1 << 30)])
    yield ch
    ch.close()


def _task(channel, name, mode, samps_per_chan, rate_hz=RATE_HZ):
    task = nidaqmx.Task(name, grpc_options=nidaqmx.GrpcSessionOptions(channel, name))
    task.ai_channels.add_ai_voltage_chan(f"Dev1/ai0:{N_CH - 1}")
    task.timing.cfg_samp_clk_timing(rate_hz, sample_mode=mode, samps_per_chan=samps_per_chan)
    return task


def _read(task, n):
    """``n`` samples per channel through nidaqmx's stream reader (the array is the client's own)."""
    data = np.zeros((N_CH, n))  # calloc'd: untouched pages cost no memory
    AnalogMultiChannelReader(task.in_stream).read_many_sample(data, n, timeout=5.0)
    return data


def _still_serving(channel, emulator):
    """A small finite read after the refusal returns real samples."""
    with _task(channel, "after", AcquisitionType.FINITE, 50) as task:
        data = np.zeros((N_CH, 50))
        AnalogMultiChannelReader(task.in_stream).read_many_sample(data, 50, timeout=5.0)
    assert np.isfinite(data).all() and np.abs(data).max() > 0
    assert emulator.serving


def _server_peak_bytes(action, client_bytes: int) -> int:
    """Peak traced allocation during ``action`` beyond the client's own ``client_bytes`` read array."""
    tracemalloc.start()
    try:
        action()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - client_bytes


def _refused_huge_read(task) -> tuple[nidaqmx.errors.DaqError, int]:
    """Read ``HUGE`` samples per channel, which the emulator must refuse: (the DAQmx error, the peak
    bytes the emulator allocated beyond the client's own array)."""
    errors = []

    def read():
        with pytest.raises(nidaqmx.errors.DaqError) as info:
            _read(task, HUGE)
        errors.append(info.value)

    peak = _server_peak_bytes(read, client_bytes=8 * N_CH * HUGE)
    return errors[0], peak


def test_continuous_read_larger_than_the_buffer_is_minus_200279(emulator, channel):
    with _task(channel, "big", AcquisitionType.CONTINUOUS, 1000) as task:  # 1 kS/s: a 10 kS buffer
        error, peak = _refused_huge_read(task)
    assert error.error_code == -200279
    assert "no longer available" in str(error) and "buffer of 10000" in str(error)
    assert peak < 8 << 20, f"{peak / 1e6:.1f} MB allocated beyond the client's array"
    _still_serving(channel, emulator)


def test_task_too_large_for_the_host_buffer_is_minus_50352(emulator, channel):
    assert HUGE * N_CH > MAX_BUFFER_SAMPLES
    with _task(channel, "big", AcquisitionType.FINITE, HUGE) as task:
        error, peak = _refused_huge_read(task)
    assert error.error_code == -50352 and "could not be allocated" in str(error)
    assert peak < 8 << 20, f"{peak / 1e6:.1f} MB allocated beyond the client's array"
    _still_serving(channel, emulator)


def test_reply_over_the_message_limit_is_resource_exhausted_before_any_work(emulator, channel):
    n = MAX_MESSAGE_BYTES // 8 // N_CH + 1  # fits the buffer, not one reply
    # the emulator's clock is real time: at the card's fastest 8-channel rate the acquisition takes 2.1 s
    with _task(channel, "big", AcquisitionType.FINITE, n, rate_hz=1e6 / N_CH) as task:
        with pytest.raises(nidaqmx.errors.RpcError, match="RESOURCE_EXHAUSTED.*message limit"):
            _read(task, n)
        # the refusal consumed nothing: the whole acquisition is still there, read in halves
        reader = AnalogMultiChannelReader(task.in_stream)
        half = np.zeros((N_CH, n // 2))
        reader.read_many_sample(half, n // 2, timeout=5.0)
    assert np.isfinite(half).all()
    _still_serving(channel, emulator)


def test_ao_writes_beyond_the_host_buffer_are_minus_50352(emulator, channel):
    name = "ao"
    with nidaqmx.Task(name, grpc_options=nidaqmx.GrpcSessionOptions(channel, name)) as task:
        task.ao_channels.add_ao_voltage_chan("Dev1/ao0:1")
        task.timing.cfg_samp_clk_timing(RATE_HZ, samps_per_chan=1000)
        block = np.zeros((2, 1 << 18))  # 2 MiB per write, under the message limit
        writer, writes = AnalogMultiChannelWriter(task.out_stream, auto_start=False), 0
        with pytest.raises(nidaqmx.errors.DaqError) as info:
            for _ in range(MAX_BUFFER_SAMPLES // block.size + 2):
                writer.write_many_sample(block)
                writes += 1
    assert info.value.error_code == -50352
    assert writes == MAX_BUFFER_SAMPLES // block.size  # exactly the buffer's worth was accepted
    _still_serving(channel, emulator)


def test_output_levels_read_back_the_ao_lines(emulator, channel):
    with nidaqmx.Task("dc", grpc_options=nidaqmx.GrpcSessionOptions(channel, "dc")) as task:
        task.ao_channels.add_ao_voltage_chan("Dev1/ao0:1")
        AnalogMultiChannelWriter(task.out_stream).write_many_sample(np.array([[0.25], [-0.5]]))
    np.testing.assert_array_equal(emulator.output_levels_V, [0.25, -0.5])
    emulator.output_levels_V[0] = 9.0  # a copy: the emulator's state is read-only from here
    assert emulator.output_levels_V[0] == 0.25


def _worker_threads():
    return [t for t in threading.enumerate() if t.name.startswith("nidaq-emulator")]


def test_close_is_idempotent_and_leaves_no_worker_threads():
    before = len(_worker_threads())
    emu = NidaqEmulator(make_substrate("potato", 2, n_outputs=N_CH, dt=1.0 / RATE_HZ))
    emu.close()  # before start: a no-op
    for _ in range(3):  # start, serve calls, close: no thread piles up
        emu.start()
        emu.start()  # idempotent while serving
        channel = grpc.insecure_channel(emu.address)
        try:
            with _task(channel, "t", AcquisitionType.FINITE, 10) as task:
                assert _read(task, 10).shape == (N_CH, 10)
        finally:
            channel.close()
        emu.close()
        emu.close()
        assert not emu.serving and len(_worker_threads()) == before


# -- fuzzed RPC arguments ------------------------------------------------------------------------
_FLOATS = st.one_of(st.sampled_from([-10.0, -1.0, 1.0, 10.0, 1000.0]),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0.0, 1e18, -1e18, 1e-300]))
_INTS = st.one_of(st.integers(-1, 200), st.integers(-2**31, 2**31 - 1),
                  st.sampled_from([0, -1, 1, 2**31 - 1]))
_RANGES = st.one_of(st.just((-10.0, 10.0)), st.just((-1.0, 1.0)), st.tuples(_FLOATS, _FLOATS))
_NAMES = st.one_of(st.just("Dev1/ai0:7"), st.just("Dev1/ai1"), st.text(max_size=40), st.sampled_from(
    ["Dev1/ai0", "Dev1/ai0:7", "Dev1/ai7:0", "Dev1/ai0:99999999", "Dev2/ai0", "Dev1/ao0:1", "/Dev1/ai3",
     "Dev1/ai0, Dev1/ai0", "Dev1/ai" + "9" * 400, ""]))


def test_fuzzed_rpc_arguments_get_daqmx_errors_and_the_server_keeps_serving(emulator):
    """Random arguments straight through NI's generated stub (the client would validate some):
    every refusal is a DAQmx error (``ni-error`` metadata), never an exception inside the server."""
    from nidaqmx._stubs import nidaqmx_pb2 as pb
    from nidaqmx._stubs import nidaqmx_pb2_grpc as pb_grpc
    import session_pb2

    channel = grpc.insecure_channel(emulator.address)
    stub = pb_grpc.NiDAQmxStub(channel)
    tally = {"calls": 0, "daqmx_errors": 0, "ok": collections.Counter()}

    def call(rpc, request):
        tally["calls"] += 1
        try:
            rpc(request, timeout=5.0)
            tally["ok"][type(request).__name__] += 1
        except grpc.RpcError as exc:
            codes = dict(exc.trailing_metadata() or ()).get("ni-error")
            assert codes is not None or exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, \
                (exc.code(), exc.details())
            tally["daqmx_errors"] += codes is not None

    @settings(max_examples=100, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(_NAMES, _RANGES, st.one_of(st.just(RATE_HZ), _FLOATS), _INTS, _INTS, st.booleans())
    def one(physical, limits, rate, samps, n_read, continuous):
        low, high = limits
        task = session_pb2.Session(name="fuzz")
        stub.CreateTask(pb.CreateTaskRequest(session_name="fuzz"), timeout=5.0)
        try:
            call(stub.CreateAIVoltageChan, pb.CreateAIVoltageChanRequest(
                task=task, physical_channel=physical, min_val=low, max_val=high, units_raw=10348,
                terminal_config_raw=-1))  # DEFAULT, as nidaqmx sends it (0 is no DAQmx value)
            call(stub.CfgSampClkTiming, pb.CfgSampClkTimingRequest(
                task=task, rate=rate, samps_per_chan=abs(samps),
                sample_mode_raw=10123 if continuous else 10178))
            call(stub.ReadAnalogF64, pb.ReadAnalogF64Request(
                task=task, num_samps_per_chan=n_read, timeout=0.0, fill_mode_raw=0,
                array_size_in_samps=min(max(n_read, 0) * N_CH, 2**32 - 1)))
            call(stub.WaitUntilTaskDone, pb.WaitUntilTaskDoneRequest(task=task, time_to_wait=0.0))
        finally:
            stub.ClearTask(pb.ClearTaskRequest(task=task), timeout=5.0)

    try:
        one()
        _still_serving(channel, emulator)
    finally:
        channel.close()
    assert tally["calls"] >= 300 and tally["daqmx_errors"] > 0
    print(f"\nNI RPC fuzz: {tally['calls']} calls, {tally['daqmx_errors']} DAQmx errors, served "
          f"{dict(tally['ok'])}")
    assert tally["ok"]["ReadAnalogF64Request"] >= 5  # some fuzzed reads were served, not refused
