"""Analog output, and AO/AI synchronisation, as NI's nidaqmx-python examples use them, run against the
emulator unchanged but for the connection: on-demand writes in every shape the client takes, finite
and regenerating generation on the card's own clock, non-regenerating streams that block when the
buffer is full or stop when it runs dry, waveform writes, the card's range refusals, and NI's
synchronised AO+AI (AO on ``/Dev1/ai/SampleClock`` or started by ``/Dev1/ai/StartTrigger``) whose
response is the substrate driven by the stimulus sample by sample.
"""

from __future__ import annotations

import time

import nidaqmx
import numpy as np
import pytest
from nidaqmx.constants import AcquisitionType, RegenerationMode
from nidaqmx.stream_readers import AnalogMultiChannelReader
from nidaqmx.stream_writers import AnalogMultiChannelWriter, AnalogSingleChannelWriter
from nitypes.waveform import AnalogWaveform

from nidaq_vendor_bench import RATE_HZ, SEED, bench, substrate  # noqa: F401  (the fixture)


def test_on_demand_writes_in_every_shape_set_the_lines_at_once(bench):
    with bench.task("dc") as task:
        task.ao_channels.add_ao_voltage_chan("Dev1/ao0:1", min_val=-5.0, max_val=5.0)
        task.write([1.0, -1.0])                                   # N channels, 1 sample
        np.testing.assert_array_equal(bench.emulator.output_levels_V, [1.0, -1.0])
        task.write([[0.1, 0.2], [0.3, 0.4]])                      # N channels, N samples: the last holds
        np.testing.assert_array_equal(bench.emulator.output_levels_V, [0.2, 0.4])
        AnalogMultiChannelWriter(task.out_stream).write_one_sample(np.array([-0.5, 0.5]))
        np.testing.assert_array_equal(bench.emulator.output_levels_V, [-0.5, 0.5])
    with bench.task("one") as task:
        task.ao_channels.add_ao_voltage_chan("Dev1/ao1")
        task.write(2.5)                                           # 1 channel, scalar
        assert bench.emulator.output_levels_V[1] == 2.5
        AnalogSingleChannelWriter(task.out_stream, auto_start=True).write_one_sample(-2.0)  # scalar RPC
        assert bench.emulator.output_levels_V[1] == -2.0


def test_finite_generation_runs_on_its_own_clock_and_finishes(bench):
    wave = np.vstack([np.linspace(0, 1, 300), np.linspace(0, -1, 300)])
    with bench.task("finite") as task:
        task.ao_channels.add_ao_voltage_chan("Dev1/ao0:1")
        task.timing.cfg_samp_clk_timing(RATE_HZ, sample_mode=AcquisitionType.FINITE, samps_per_chan=300)
        assert task.write(wave) == 300  # more than one sample: not auto-started
        assert task.out_stream.total_samp_per_chan_generated == 0
        start = time.monotonic()
        task.start()
        assert not task.is_task_done()
        task.wait_until_done(timeout=2.0)
        took = time.monotonic() - start
        assert task.out_stream.total_samp_per_chan_generated == 300
    assert 0.25 <= took <= 1.5, took
    np.testing.assert_array_equal(bench.emulator.output_levels_V, wave[:, -1])  # the lines hold the end


def test_wait_until_done_times_out_with_nis_error(bench):
    with bench.task("long") as task:
        task.ao_channels.add_ao_voltage_chan("Dev1/ao0")
        task.timing.cfg_samp_clk_timing(RATE_HZ, sample_mode=AcquisitionType.FINITE, samps_per_chan=2000)
        task.write(np.zeros(2000))
        task.start()
        start = time.monotonic()
        with pytest.raises(nidaqmx.errors.DaqError) as info:
            task.wait_until_done(timeout=0.2)
        took = time.monotonic() - start
    assert info.value.error_code == -200560 and 0.15 <= took <= 1.0, took


def test_regenerating_output_repeats_its_buffer_until_stopped(bench):
    period = np.sin(2 * np.pi * np.arange(100) / 100)
    with bench.task("regen") as task:
        task.ao_channels.add_ao_voltage_chan("Dev1/ao0")
        task.timing.cfg_samp_clk_timing(RATE_HZ, sample_mode=AcquisitionType.CONTINUOUS)
        assert task.out_stream.regen_mode == RegenerationMode.ALLOW_REGENERATION  # NI's default
        task.write(period)
        task.start()
        time.sleep(0.3)
        generated = task.out_stream.total_samp_per_chan_generated
        assert 250 <= generated <= 600, generated  # three periods and more from one 100-sample write
        assert not task.is_task_done()
        task.stop()
    assert bench.emulator.output_levels_V[0] in period  # the line holds a sample of the period


def test_a_non_regenerating_stream_blocks_when_full_and_stops_when_it_runs_dry(bench):
    with bench.task("stream") as task:
        task.ao_channels.add_ao_voltage_chan("Dev1/ao0")
        task.timing.cfg_samp_clk_timing(RATE_HZ, sample_mode=AcquisitionType.CONTINUOUS)
        task.out_stream.regen_mode = RegenerationMode.DONT_ALLOW_REGENERATION
        writer = AnalogSingleChannelWriter(task.out_stream, auto_start=False)
        writer.write_many_sample(np.zeros(100))  # the buffer: 100 samples
        task.start()
        start = time.monotonic()
        assert writer.write_many_sample(np.full(150, 0.5), timeout=1.0) == 150  # waits for space
        assert 0.1 <= time.monotonic() - start <= 0.6
        start = time.monotonic()
        with pytest.raises(nidaqmx.errors.DaqWriteError) as info:
            writer.write_many_sample(np.zeros(1000), timeout=0.1)
        assert info.value.error_code == -200292 and 0 < info.value.samps_per_chan_written < 1000
        assert time.monotonic() - start <= 0.6
        time.sleep(0.5)  # nothing more written: the buffer runs dry
        with pytest.raises(nidaqmx.errors.DaqError) as info:
            task.stop()
    assert info.value.error_code == -200290


def test_waveform_write_generates_its_samples(bench):
    wave = AnalogWaveform.from_array_1d(np.linspace(-1, 1, 50), dtype=np.float64)
    with bench.task("wave") as task:
        task.ao_channels.add_ao_voltage_chan("Dev1/ao0")
        task.timing.cfg_samp_clk_timing(RATE_HZ, sample_mode=AcquisitionType.FINITE, samps_per_chan=50)
        assert task.write(wave) == 50
        task.start()
        task.wait_until_done(timeout=1.0)
    assert bench.emulator.output_levels_V[0] == 1.0


def test_the_cards_ranges_are_refused_as_the_card_refuses_them(bench):
    with bench.task("range") as task:
        with pytest.raises(nidaqmx.errors.DaqError) as info:
            task.ao_channels.add_ao_voltage_chan("Dev1/ao0", min_val=-20.0, max_val=20.0)
        assert info.value.error_code == -200077 and "Maximum Supported Value: 10" in str(info.value)
        with pytest.raises(nidaqmx.errors.DaqError) as info:
            task.ao_channels.add_ao_voltage_chan("Dev1/ao0", min_val=1.0, max_val=-1.0)
        assert info.value.error_code == -200082
        with pytest.raises(nidaqmx.errors.DaqError) as info:
            task.ao_channels.add_ao_voltage_chan("Dev1/ao4")  # a PCIe-6363 has ao0..ao3
        assert info.value.error_code == -200170
        task.ao_channels.add_ao_voltage_chan("Dev1/ao0", min_val=-1.0, max_val=1.0)
        assert task.ao_channels[0].ao_dac_rng_high == 5.0  # the smallest range that holds ±1 V
        with pytest.raises(nidaqmx.errors.DaqError) as info:
            task.write(1.5)
        assert info.value.error_code == -200561


def _synchronised(bench, stimulus: np.ndarray, how: str) -> np.ndarray:
    """NI's synchronised AO+AI: write with auto_start off, start AO then AI, read ``(4, n)``."""
    n = stimulus.shape[1]
    with bench.task("ai") as ai, bench.task("ao") as ao:
        ai.ai_channels.add_ai_voltage_chan("Dev1/ai0:3")
        ai.timing.cfg_samp_clk_timing(RATE_HZ, sample_mode=AcquisitionType.FINITE, samps_per_chan=n)
        ao.ao_channels.add_ao_voltage_chan("Dev1/ao0:1")
        source = "/Dev1/ai/SampleClock" if how == "ai sample clock" else ""
        ao.timing.cfg_samp_clk_timing(RATE_HZ, source=source, sample_mode=AcquisitionType.FINITE,
                                      samps_per_chan=n)
        if how == "ai start trigger":
            ao.triggers.start_trigger.cfg_dig_edge_start_trig("/Dev1/ai/StartTrigger")
        AnalogMultiChannelWriter(ao.out_stream, auto_start=False).write_many_sample(stimulus)
        ao.start()
        assert ao.out_stream.total_samp_per_chan_generated == 0  # waits for the AI clock / trigger
        ai.start()
        response = np.zeros((4, n))
        AnalogMultiChannelReader(ai.in_stream).read_many_sample(response, n, timeout=2.0)
        ao.wait_until_done(timeout=1.0)
        assert ao.out_stream.total_samp_per_chan_generated == n
    return response


@pytest.mark.parametrize("how", ["ai sample clock", "ai start trigger"])
def test_synchronised_ao_ai_response_is_the_substrate_driven_sample_by_sample(bench, how):
    stimulus = np.random.default_rng(1).uniform(-2, 2, (2, 400))
    response = _synchronised(bench, stimulus, how)
    reference = substrate()
    reference.reset(SEED)
    want = reference.run(stimulus.T[None])[0].T
    assert np.abs(want).max() > 1e-3
    np.testing.assert_allclose(response, want, rtol=1e-12, atol=1e-15)


def test_every_n_samples_transferred_from_buffer_callback_paces_a_regenerating_output(bench):
    calls = []
    with bench.task("paced") as task:
        task.ao_channels.add_ao_voltage_chan("Dev1/ao0")
        task.timing.cfg_samp_clk_timing(RATE_HZ, sample_mode=AcquisitionType.CONTINUOUS)
        task.register_every_n_samples_transferred_from_buffer_event(
            100, lambda handle, kind, n, data: calls.append((time.monotonic(), n)) or 0)
        task.write(np.linspace(-1, 1, 200))
        start = time.monotonic()
        task.start()
        time.sleep(0.45)
        task.stop()
    times = [t - start for t, _ in calls]
    assert 3 <= len(times) <= 5 and all(n == 100 for _, n in calls), times  # one per 100 ms
    assert times[0] >= 0.08
