"""System, device, physical-channel and channel properties as NI's nidaqmx-python examples read and set
them, run against the emulator unchanged but for the connection: the driver version, the device list,
the PCIe-6363's product type, category, ranges and rates, physical-channel enumeration, channel
attributes on single channels, ``Dev1/ai1:3`` ranges and comma lists, names, terminal configurations,
timing and start-trigger properties, and the card's refusals with NI's codes.
"""

from __future__ import annotations

import nidaqmx
import pytest
from nidaqmx.constants import AcquisitionType, ProductCategory, TerminalConfiguration, TriggerType

from nidaq_vendor_bench import RATE_HZ, bench  # noqa: F401  (the fixture)


def test_system_and_device_describe_a_pcie_6363(bench):
    system = bench.system()
    assert tuple(system.driver_version) == (24, 5, 0)
    assert system.devices.device_names == ["Dev1"]
    assert list(system.tasks) == [] and list(system.global_channels) == []  # nothing persisted
    dev = system.devices["Dev1"]
    assert dev.product_type == "PCIe-6363"
    assert dev.product_category == ProductCategory.X_SERIES_DAQ
    assert dev.is_simulated and dev.serial_num > 0
    assert len(dev.ai_physical_chans) == 32 and dev.ai_physical_chans[31].name == "Dev1/ai31"
    assert dev.ao_physical_chans.channel_names == [f"Dev1/ao{i}" for i in range(4)]
    assert dev.ai_voltage_rngs == [-0.1, 0.1, -0.2, 0.2, -0.5, 0.5, -1.0, 1.0, -2.0, 2.0, -5.0, 5.0,
                                   -10.0, 10.0]
    assert dev.ao_voltage_rngs == [-5.0, 5.0, -10.0, 10.0]
    assert (dev.ai_max_single_chan_rate, dev.ai_max_multi_chan_rate, dev.ao_max_rate) == \
        (2.0e6, 1.0e6, 2.86e6)
    assert set(dev.ai_physical_chans["ai0"].ai_term_cfgs) == {
        TerminalConfiguration.RSE, TerminalConfiguration.NRSE, TerminalConfiguration.DIFF}
    with pytest.raises(nidaqmx.errors.DaqError) as info:
        system.devices["Dev2"].product_type
    assert info.value.error_code == -200220


def test_channel_attributes_get_and_set_on_names_ranges_and_lists(bench):
    with bench.task("props") as task:
        task.ai_channels.add_ai_voltage_chan("Dev1/ai0:3", min_val=-4.0, max_val=4.0)
        task.ai_channels.add_ai_voltage_chan("Dev1/ai8", name_to_assign_to_channel="probe")
        assert task.channel_names == ["Dev1/ai0", "Dev1/ai1", "Dev1/ai2", "Dev1/ai3", "probe"]
        assert task.ai_channels["probe"].physical_channel.name == "Dev1/ai8"
        first = task.ai_channels[0]
        assert (first.ai_min, first.ai_max, first.ai_rng_low, first.ai_rng_high) == (-4.0, 4.0, -5.0, 5.0)
        group = task.ai_channels["Dev1/ai1:3"]
        group.ai_max, group.ai_min = 0.5, -0.5  # sets all three
        # ai8 kept nidaqmx's default limits, ±5 V
        assert [ch.ai_rng_high for ch in task.ai_channels] == [5.0, 0.5, 0.5, 0.5, 5.0]
        assert task.ai_channels["Dev1/ai1, Dev1/ai3"].ai_max == 0.5
        with pytest.raises(nidaqmx.errors.DaqError) as info:  # values differ across the channels
            task.ai_channels["Dev1/ai0:1"].ai_max
        assert info.value.error_code == -200657
        # terminal configuration: default differential on ai0-7; ai8 is a pair's negative input
        assert first.ai_term_cfg == TerminalConfiguration.DIFF
        assert task.ai_channels["probe"].ai_term_cfg == TerminalConfiguration.RSE
        with pytest.raises(nidaqmx.errors.DaqError) as info:
            task.ai_channels["probe"].ai_term_cfg = TerminalConfiguration.DIFF
        assert info.value.error_code == -200077
        task.ai_channels["Dev1/ai0:3"].ai_term_cfg = TerminalConfiguration.NRSE
        assert task.ai_channels["Dev1/ai2"].ai_term_cfg == TerminalConfiguration.NRSE
        with pytest.raises(nidaqmx.errors.DaqError) as info:  # beyond the card's ±10 V
            first.ai_max = 20.0
        assert info.value.error_code == -200077 and "Maximum Supported Value: 10" in str(info.value)
        with pytest.raises(nidaqmx.errors.DaqError) as info:
            task.ai_channels["Dev1/ai5"].ai_max
        assert info.value.error_code == -200486  # not in the task
        first.description = "left electrode"
        assert first.description == "left electrode"


def test_timing_and_trigger_properties_read_back_and_are_checked(bench):
    with bench.task("ao") as task:
        task.ao_channels.add_ao_voltage_chan("Dev1/ao0:1")
        timing = task.timing
        timing.cfg_samp_clk_timing(RATE_HZ, sample_mode=AcquisitionType.CONTINUOUS, samps_per_chan=500)
        assert (timing.samp_clk_rate, timing.samp_quant_samp_mode, timing.samp_quant_samp_per_chan) == \
            (RATE_HZ, AcquisitionType.CONTINUOUS, 500)
        assert timing.samp_clk_max_rate == 2.0e6  # two AO channels running
        timing.samp_clk_rate = 2000.0
        assert timing.samp_clk_rate == 2000.0
        with pytest.raises(nidaqmx.errors.DaqError) as info:
            timing.samp_clk_rate = 3.0e6
        assert info.value.error_code == -200077
        trigger = task.triggers.start_trigger
        assert trigger.trig_type == TriggerType.NONE
        trigger.cfg_dig_edge_start_trig("/Dev1/ai/StartTrigger")
        assert trigger.trig_type == TriggerType.DIGITAL_EDGE
        assert trigger.dig_edge_src == "/Dev1/ai/StartTrigger"
        trigger.disable_start_trig()
        assert trigger.trig_type == TriggerType.NONE
        with pytest.raises(nidaqmx.errors.DaqError) as info:
            trigger.cfg_dig_edge_start_trig("/Dev1/PFI99")
        assert info.value.error_code == -200040
    with bench.task("ai") as task:
        task.ai_channels.add_ai_voltage_chan("Dev1/ai0:7")
        with pytest.raises(nidaqmx.errors.DaqError) as info:  # 1 MS/s aggregate over 8 channels
            task.timing.cfg_samp_clk_timing(200e3)
        assert info.value.error_code == -200077 and "125000" in str(info.value)
