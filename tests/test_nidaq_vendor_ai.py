"""Analog input as NI's nidaqmx-python examples and docs use it, run against the emulator unchanged but
for the connection (:mod:`nidaq_vendor_bench`): finite and continuous acquisition on the real-time
sample clock, every read path the client offers (``task.read`` shapes, stream readers, scalar,
``READ_ALL_AVAILABLE``, waveforms), on-demand tasks, Every-N-Samples and Done callbacks, and NI's
timeout / overflow / past-the-end errors.
"""

from __future__ import annotations

import threading
import time

import nidaqmx
import numpy as np
import pytest
from nidaqmx.constants import READ_ALL_AVAILABLE, AcquisitionType
from nidaqmx.stream_readers import AnalogMultiChannelReader, AnalogSingleChannelReader

from nidaq_vendor_bench import RATE_HZ, bench  # noqa: F401  (the fixture)


def test_finite_read_of_2000_samples_at_1_kS_per_s_takes_about_2_s(bench):
    with bench.task("finite") as task:
        task.ai_channels.add_ai_voltage_chan("Dev1/ai0")
        task.timing.cfg_samp_clk_timing(RATE_HZ, sample_mode=AcquisitionType.FINITE, samps_per_chan=2000)
        start = time.monotonic()
        data = task.read(READ_ALL_AVAILABLE)
        took = time.monotonic() - start
        assert task.is_task_done()
        assert task.in_stream.total_samp_per_chan_acquired == 2000
    assert 1.6 <= took <= 4.0, took
    assert len(data) == 2000 and all(isinstance(v, float) for v in data[:3])
    assert np.std(data) > 0  # the potato's response, not a constant


def test_a_read_with_too_short_a_timeout_fails_with_nis_timeout_error_after_that_timeout(bench):
    with bench.task("short") as task:
        task.ai_channels.add_ai_voltage_chan("Dev1/ai0:1")
        task.timing.cfg_samp_clk_timing(RATE_HZ, sample_mode=AcquisitionType.FINITE, samps_per_chan=1000)
        start = time.monotonic()
        with pytest.raises(nidaqmx.errors.DaqReadError) as info:
            task.read(1000, timeout=0.3)
        took = time.monotonic() - start
    assert info.value.error_code == -200284  # SAMPLES_NOT_YET_AVAILABLE
    assert 0.25 <= took <= 1.0, took
    assert 200 <= info.value.samps_per_chan_read <= 400  # what had been acquired by then was returned


def test_continuous_acquisition_counts_samples_in_real_time_and_reads_all_available(bench):
    with bench.task("cont") as task:
        task.ai_channels.add_ai_voltage_chan("Dev1/ai0:2")
        task.timing.cfg_samp_clk_timing(RATE_HZ, sample_mode=AcquisitionType.CONTINUOUS)
        assert task.in_stream.avail_samp_per_chan == 0  # nothing before start
        task.start()
        time.sleep(0.2)
        available = task.in_stream.avail_samp_per_chan
        assert 150 <= available <= 400, available
        data = task.read(READ_ALL_AVAILABLE)
        assert len(data) == 3 and len(data[0]) >= available  # (channels, samples) as lists
        first = task.read(100)  # blocks for the next 100 (~0.1 s)
        assert np.shape(first) == (3, 100)
        acquired = task.in_stream.total_samp_per_chan_acquired
        assert acquired >= len(data[0]) + 100
        assert task.in_stream.curr_read_pos == len(data[0]) + 100
        assert not task.is_task_done()  # a continuous task runs until stopped
        task.stop()


def test_read_shapes_follow_nidaqmx_one_and_many_channels_and_samples(bench):
    with bench.task("one") as one, bench.task("many") as many:
        one.ai_channels.add_ai_voltage_chan("Dev1/ai0")
        many.ai_channels.add_ai_voltage_chan("Dev1/ai0:3")
        assert isinstance(one.read(), float)                   # 1 channel, 1 sample: a scalar
        assert len(one.read(5)) == 5                           # 1 channel, N samples: a list
        values = many.read()
        assert isinstance(values, list) and len(values) == 4   # N channels, 1 sample: one per channel
        block = many.read(3)
        assert np.shape(block) == (4, 3)                       # N channels, N samples: lists per channel
        assert one.read(READ_ALL_AVAILABLE) is not None        # on-demand: one sample now


def test_stream_readers_fill_the_callers_arrays(bench):
    with bench.task("multi") as task:
        task.ai_channels.add_ai_voltage_chan("Dev1/ai0:3")
        task.timing.cfg_samp_clk_timing(10 * RATE_HZ, sample_mode=AcquisitionType.FINITE, samps_per_chan=300)
        reader = AnalogMultiChannelReader(task.in_stream)
        one = np.zeros(4)
        reader.read_one_sample(one)
        many = np.full((4, 200), np.nan)
        assert reader.read_many_sample(many, 200, timeout=2.0) == 200
        assert np.isfinite(many).all() and np.abs(many[:2]).max() > 0
        rest = np.full((4, 99), np.nan)
        assert reader.read_many_sample(rest, READ_ALL_AVAILABLE, timeout=2.0) == 99  # finite: the rest
        with pytest.raises(nidaqmx.errors.DaqError) as info:  # past the end of the acquisition
            reader.read_many_sample(np.zeros((4, 10)), 10, timeout=0.5)
        assert info.value.error_code == -200278
    with bench.task("single") as task:
        task.ai_channels.add_ai_voltage_chan("Dev1/ai1")
        reader = AnalogSingleChannelReader(task.in_stream)
        assert isinstance(reader.read_one_sample(), float)  # the scalar RPC
        data = np.zeros(50)
        assert reader.read_many_sample(data, 50) == 50 and np.abs(data).max() > 0


def test_waveform_read_carries_the_sample_interval_and_channel_names(bench):
    with bench.task("wave") as task:
        task.ai_channels.add_ai_voltage_chan("Dev1/ai0:1")
        task.timing.cfg_samp_clk_timing(RATE_HZ, sample_mode=AcquisitionType.FINITE, samps_per_chan=100)
        waveforms = task.read_waveform(100)
    assert [w.channel_name for w in waveforms] == ["Dev1/ai0", "Dev1/ai1"]
    assert all(w.sample_count == 100 for w in waveforms)
    assert waveforms[0].timing.sample_interval.total_seconds() == pytest.approx(1e-3)
    assert np.abs(waveforms[0].scaled_data).max() > 0


def test_every_n_samples_callback_drives_the_acquisition(bench):
    """NI's callback pattern: register before start, read N samples in the callback."""
    got, lock = [], threading.Lock()
    with bench.task("callback") as task:
        task.ai_channels.add_ai_voltage_chan("Dev1/ai0:1")
        task.timing.cfg_samp_clk_timing(RATE_HZ, sample_mode=AcquisitionType.CONTINUOUS)
        reader = AnalogMultiChannelReader(task.in_stream)

        def callback(task_handle, event_type, number_of_samples, callback_data):
            buf = np.zeros((2, number_of_samples))
            reader.read_many_sample(buf, number_of_samples, timeout=1.0)
            with lock:
                got.append((time.monotonic(), buf))
            return 0

        task.register_every_n_samples_acquired_into_buffer_event(50, callback)
        start = time.monotonic()
        task.start()
        time.sleep(0.5)
        task.stop()
    with lock:
        times = [t - start for t, _ in got]
    assert 7 <= len(times) <= 11, times  # one per 50 ms
    assert times[0] >= 0.04 and all(b.shape == (2, 50) and np.abs(b).max() > 0 for _, b in got)


def test_done_event_fires_when_a_finite_acquisition_completes(bench):
    statuses = []
    with bench.task("done") as task:
        task.ai_channels.add_ai_voltage_chan("Dev1/ai0")
        task.timing.cfg_samp_clk_timing(RATE_HZ, sample_mode=AcquisitionType.FINITE, samps_per_chan=100)
        task.register_done_event(lambda handle, status, data: statuses.append(status) or 0)
        start = time.monotonic()
        task.start()
        task.wait_until_done(timeout=2.0)
        took = time.monotonic() - start
        deadline = time.monotonic() + 1.0
        while not statuses and time.monotonic() < deadline:
            time.sleep(0.01)
    assert statuses == [0] and 0.08 <= took <= 1.0, (statuses, took)


def test_an_unread_continuous_buffer_overflows_with_nis_error(bench):
    with bench.task("overflow") as task:
        task.ai_channels.add_ai_voltage_chan("Dev1/ai0")
        task.timing.cfg_samp_clk_timing(RATE_HZ, sample_mode=AcquisitionType.CONTINUOUS)
        task.in_stream.input_buf_size = 100
        task.start()
        time.sleep(0.25)  # 250 samples into a 100-sample buffer
        with pytest.raises(nidaqmx.errors.DaqError) as info:
            task.read(10)
    assert info.value.error_code == -200279


def test_two_timed_ai_tasks_cannot_share_the_ai_timing_engine(bench):
    with bench.task("first") as first, bench.task("second") as second:
        for task in (first, second):
            task.ai_channels.add_ai_voltage_chan("Dev1/ai0")
            task.timing.cfg_samp_clk_timing(RATE_HZ, sample_mode=AcquisitionType.CONTINUOUS)
        first.start()
        with pytest.raises(nidaqmx.errors.DaqError) as info:
            second.start()
    assert info.value.error_code == -50103  # the resource is reserved


def test_pfi_start_and_reference_triggers_are_taken_to_fire_at_start(bench):
    """Nothing drives the emulated PFI terminals: their edges are taken to arrive as the task starts."""
    with bench.task("start_trig") as task:
        task.ai_channels.add_ai_voltage_chan("Dev1/ai0")
        task.timing.cfg_samp_clk_timing(RATE_HZ, sample_mode=AcquisitionType.CONTINUOUS)
        task.triggers.start_trigger.cfg_dig_edge_start_trig("/Dev1/PFI0")
        task.start()
        assert len(task.read(100, timeout=1.0)) == 100
    with bench.task("ref_trig") as task:
        task.ai_channels.add_ai_voltage_chan("Dev1/ai0")
        task.timing.cfg_samp_clk_timing(RATE_HZ, sample_mode=AcquisitionType.FINITE, samps_per_chan=100)
        with pytest.raises(nidaqmx.errors.DaqError) as info:  # more pretrigger samples than acquired
            task.triggers.reference_trigger.cfg_dig_edge_ref_trig("/Dev1/PFI8", pretrigger_samples=200)
        assert info.value.error_code == -200077
        task.triggers.reference_trigger.cfg_dig_edge_ref_trig("/Dev1/PFI8", pretrigger_samples=50)
        assert task.triggers.reference_trigger.pretrig_samples == 50
        assert len(task.read(READ_ALL_AVAILABLE)) == 100
