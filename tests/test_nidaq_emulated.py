"""The NI DAQ driver, through the real ``nidaqmx`` gRPC client, against the NiDAQmx gRPC emulator.

No mocks: ``nidaqmx`` sends the same RPCs it sends to NI's gRPC Device Server, and the emulator answers
from its task/channel/timing tables and a substrate.  Injected faults must surface as a one-line
DeviceError naming the device within 2 s.
"""

from __future__ import annotations

import contextlib
import socket
import time

import grpc
import nidaqmx
import numpy as np
import pytest

from prclab.drivers import DeviceError, DeviceRequest
from prclab.protocols.rig import make_rig
from prclab.drivers.nidaq import GRPC_CHANNEL_OPTIONS, NidaqDevice
from prclab.hardware_sims.nidaq_grpc import NidaqEmulator
from prclab.errors import PrclabError
from prclab.reservoir import make_substrate

RATE_HZ = 1000.0
SEED = 5


def _substrate():
    return make_substrate("potato", 2, n_outputs=3, dt=1.0 / RATE_HZ)


@contextlib.contextmanager
def _client(emulator: NidaqEmulator, **kwargs):
    """An unopened NidaqDevice on ``emulator`` through user-supplied GrpcSessionOptions."""
    channel = grpc.insecure_channel(emulator.address, options=GRPC_CHANNEL_OPTIONS)
    try:
        yield NidaqDevice("Dev1", 2, 3, RATE_HZ, stimulus_range_V=(-2.0, 2.0),
                          grpc_options=nidaqmx.GrpcSessionOptions(channel, ""), **kwargs)
    finally:
        channel.close()


@contextlib.contextmanager
def emulated_nidaq():
    """Contract-suite factory: an unopened NidaqDevice on a running emulator."""
    with NidaqEmulator(_substrate(), seed=SEED) as emu, _client(emu) as dev:
        yield dev


@pytest.fixture
def emulator():
    with NidaqEmulator(_substrate(), seed=SEED) as emu:
        yield emu


def _reference(blocks):
    """The substrate run directly on the same blocks, from the same seed: ``(sum n, 3)``."""
    sub = _substrate()
    sub.reset(SEED)
    return np.concatenate([sub.run(b[None])[0] for b in blocks]).astype(np.float64)


# -- end to end ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_response_equals_the_substrate_run_directly(emulator):
    rng = np.random.default_rng(0)
    blocks = [rng.uniform(-1.5, 1.5, (n, 2)) for n in (300, 120, 300)]
    with _client(emulator) as dev, dev:
        got = []
        for block in blocks:
            dev.write(block)
            samples, t = dev.read(len(block))
            got.append(samples)
    got = np.concatenate(got)
    want = _reference(blocks)
    assert got.shape == (720, 3) and np.abs(want).max() > 1e-3  # a real response came back
    # the emulator's real-time clock steps the substrate in whatever chunks time gives: equal to rounding
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    # the block protocol of NI's synchronised AO+AI example went over the wire, once per read
    for rpc in ("CfgDigEdgeStartTrig", "SetWriteAttributeInt32"):
        assert emulator.calls[rpc] == 1
    for rpc in ("ReadAnalogF64", "WaitUntilTaskDone"):
        assert emulator.calls[rpc] == 3
    # plus, at close, the ramp to rest: one on-demand write per step on a third task
    assert emulator.calls["WriteAnalogF64"] == 3 + len(dev.rest_log)
    assert emulator.calls["StartTask"] == 6
    assert emulator.calls["CfgSampClkTiming"] == 6  # reconfigured for 300, 120, 300
    assert emulator.calls["ClearTask"] == 3


def test_an_armed_block_plays_as_a_plain_read_and_a_mismatched_read_is_refused(emulator):
    """``arm(n)`` loads, configures and arms the block (the two-device rig does it before its marker);
    the response is the one a plain read gives, to rounding, and the RPCs are the same ones."""
    rng = np.random.default_rng(1)
    blocks = [rng.uniform(-1.5, 1.5, (n, 2)) for n in (200, 80)]
    with _client(emulator) as dev, dev:
        got = []
        for block in blocks:
            dev.write(block)
            dev.arm(len(block))
            dev.arm(len(block))  # arming again for the same block changes nothing
            assert emulator.calls["ReadAnalogF64"] == len(got)  # loaded, nothing read yet
            got.append(dev.read(len(block))[0])
        dev.write(blocks[0])
        dev.arm(50)
        with pytest.raises(DeviceError, match="armed with 50 samples, read asked for 60"):
            dev.read(60)
    np.testing.assert_allclose(np.concatenate(got), _reference(blocks), rtol=1e-12, atol=1e-15)
    assert emulator.calls["CfgSampClkTiming"] == 2 * 3  # 200, 80, then 50 (never started)


def test_reads_are_chunked_and_run_past_the_stimulus_at_0_V(emulator):
    stimulus = np.full((100, 2), 0.8)
    with _client(emulator, max_block_s=0.1) as dev, dev:
        dev.write(stimulus)
        samples, t = dev.read(250)
        dev.mark("after")
        assert dev.events() == [(250, "after")]
    padded = np.concatenate([stimulus, np.zeros((150, 2))])
    np.testing.assert_allclose(samples, _reference([padded[:100], padded[100:200], padded[200:]]),
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(t, np.arange(250) / RATE_HZ)
    assert emulator.calls["ReadAnalogF64"] == 3  # 100 + 100 + 50 samples


def test_task_attributes_read_back_as_configured(emulator):
    with _client(emulator) as dev, dev:
        dev.write(np.zeros((50, 2)))
        dev.read(50)
        ao, ai = dev._ao, dev._ai
        assert ai.channel_names == ["Dev1/ai0", "Dev1/ai1", "Dev1/ai2"]
        assert ao.channel_names == ["Dev1/ao0", "Dev1/ao1"]
        assert ao.ao_channels[1].ao_max == 2.0 and ai.ai_channels[0].ai_min == -10.0
        assert ao.out_stream.regen_mode == nidaqmx.constants.RegenerationMode.DONT_ALLOW_REGENERATION
        assert ao.timing.samp_clk_src == "/Dev1/ai/SampleClock"
        assert ao.triggers.start_trigger.dig_edge_src == "/Dev1/ai/StartTrigger"
        assert ai.timing.samp_quant_samp_mode == nidaqmx.constants.AcquisitionType.FINITE
        assert ai.timing.samp_quant_samp_per_chan == 50 and ai.timing.samp_clk_rate == RATE_HZ


def test_emulator_refuses_ao_data_outside_the_channel_range(emulator):
    channel = grpc.insecure_channel(emulator.address)
    try:
        options = nidaqmx.GrpcSessionOptions(channel, "raw")
        with nidaqmx.Task("raw", grpc_options=options) as task:
            task.ao_channels.add_ao_voltage_chan("Dev1/ao0", min_val=-1.0, max_val=1.0)
            task.timing.cfg_samp_clk_timing(RATE_HZ, samps_per_chan=4)
            with pytest.raises(nidaqmx.errors.DaqError) as info:
                task.write([0.0, 0.5, 1.5, 0.0])
        assert info.value.error_code == -200561
    finally:
        channel.close()


def test_missing_channel_is_refused_at_open(emulator):
    channel = grpc.insecure_channel(emulator.address)
    try:
        # one input more than the emulated PCIe-6363 has (32)
        dev = NidaqDevice("Dev1", 2, 33, RATE_HZ, grpc_options=nidaqmx.GrpcSessionOptions(channel, ""))
        with pytest.raises(DeviceError, match=r"^nidaq:Dev1: DAQmx error -200170 while opening: "
                                              r"Physical channel specified does not exist"):
            dev.open()
        assert not dev.is_open and not emulator.device.tasks  # nothing left on the server
    finally:
        channel.close()


def test_spec_string_starts_and_stops_the_emulator():
    request = DeviceRequest(n_stimulus=2, rate_hz=RATE_HZ, stimulus_range_V=(-0.5, 0.5),
                            substrate_params={"n_outputs": 3}, emulate=True, seed=1)
    dev = make_rig("nidaq:Dev1", request)
    assert len(dev.channels.response) == 3 and dev.channels.stimulus[0].high == 0.5
    for _ in range(2):  # closing stops the emulator, reopening starts it again
        with dev:
            dev.write(np.full((40, 2), 0.25))
            samples, _ = dev.read(40)
        assert samples.shape == (40, 3) and np.all(np.isfinite(samples))
        assert dev.emulator._server is None
    assert make_rig("nidaq:Dev2?ai=2", request).channels.response[1].name == "ai1"
    with pytest.raises(PrclabError, match="unknown option"):
        make_rig("nidaq:Dev1?rate=5", request)


# -- faults --------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault, message", [
    ("unplug", r"DAQmx error -201003 while reading: Device cannot be accessed"),
    ("stall", r"DAQmx error -200284 while reading: Some or all of the samples requested have not "
              r"yet been acquired"),
    ("garbage", r"read returned non-finite values at sample 100"),
    ("drop", r"read returned 150 of 200 samples at sample 100"),
])
def test_injected_fault_becomes_one_line_device_error_within_2_s(emulator, fault, message):
    with _client(emulator) as dev:
        dev.open()
        dev.write(np.full((300, 2), 0.1))
        dev.read(100)
        emulator.inject(fault)
        start = time.monotonic()
        with pytest.raises(DeviceError, match="^nidaq:Dev1: " + message) as info:
            dev.read(200)
        assert time.monotonic() - start < 2.0
        assert "\n" not in str(info.value)
        assert not dev.is_open
        dev.close()  # a no-op after the fault
    if fault != "unplug":  # the driver cleared its tasks (an unplugged card cannot be reached)
        assert not emulator.device.tasks


def test_unreachable_server_is_one_line_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        dev = NidaqDevice("Dev1", grpc_options=nidaqmx.GrpcSessionOptions(channel, ""))
        with pytest.raises(DeviceError, match=r"^nidaq:Dev1: gRPC UNAVAILABLE while opening"):
            dev.open()
    finally:
        channel.close()


def test_silent_server_hits_the_rpc_deadline():
    with socket.socket() as s:  # accepts TCP connections, never speaks HTTP/2
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        channel = grpc.insecure_channel(f"127.0.0.1:{s.getsockname()[1]}")
        try:
            dev = NidaqDevice("Dev1", grpc_options=nidaqmx.GrpcSessionOptions(channel, ""),
                              rpc_timeout_s=0.3)
            start = time.monotonic()
            with pytest.raises(DeviceError, match=r"^nidaq:Dev1: gRPC DEADLINE_EXCEEDED while opening"):
                dev.open()
            assert time.monotonic() - start < 2.0
        finally:
            channel.close()
