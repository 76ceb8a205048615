"""The brainflow driver with brainflow's own Cyton driver against the pty Cyton emulator, end to end.

No mocks: ``BoardShim(CYTON_BOARD)`` opens the emulator's pseudo-terminal, does the real handshake
(about 1 s per session) and parses the emulator's 33-byte packets.  The synthetic and playback boards
are brainflow's own.  Faults injected into the emulator must surface as one-line DeviceErrors naming
the board within 2 s.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import pytest
from brainflow.board_shim import BoardIds, BoardShim, BrainFlowInputParams
from brainflow.data_filter import DataFilter

from prclab.drivers import DeviceError, DeviceRequest, capabilities, voltage_channels
from prclab.protocols.rig import make_rig
from prclab.drivers.brainflow_board import BrainflowDevice
from prclab.hardware_sims.cyton import MICROVOLTS_PER_COUNT, CytonEmulator, encode_packets, volts_to_counts
from prclab.errors import PrclabError
from prclab.reservoir import make_substrate

RATE_HZ = 250.0


def _substrate():
    return make_substrate("esn", 2, units=20, dt=1.0 / RATE_HZ)


def _cyton(emulator: CytonEmulator, **kwargs) -> BrainflowDevice:
    params = BrainFlowInputParams()
    params.serial_port = emulator.port
    return BrainflowDevice(BoardIds.CYTON_BOARD, params, stimulator=emulator.apply,
                           stimulus=voltage_channels("stim", 2, -1.0, 1.0), **kwargs)


@contextlib.contextmanager
def emulated_cyton():
    """Contract-suite factory: an unopened Cyton BrainflowDevice on a running emulator."""
    with CytonEmulator(_substrate(), seed=3, volts_per_output=0.1) as emu:
        yield _cyton(emu)


@contextlib.contextmanager
def synthetic_board():
    """Contract-suite factory: brainflow's synthetic board (record-only)."""
    yield BrainflowDevice(BoardIds.SYNTHETIC_BOARD, response_range_V=(-1e-3, 1e-3))


# -- wire format ---------------------------------------------------------------------------------
def test_counts_follow_the_ads1299_scale_and_clip_to_24_bits():
    gains = np.full(8, 24.0)
    volts = np.array([[1000 * MICROVOLTS_PER_COUNT * 1e-6, 22.35e-6, -1.0, 1.0, 0, 0, 0, 0]])
    counts = volts_to_counts(volts, gains)
    assert counts[0, 0] == 1000 and counts[0, 1] == 1000  # the 22.35 µV per 1000 counts observed
    assert counts[0, 2] == -2 ** 23 and counts[0, 3] == 2 ** 23 - 1
    gains[0] = 1  # 24 times coarser counts at gain 1
    assert volts_to_counts(volts, gains)[0, 0] == round(1000 / 24)


def test_packets_are_33_bytes_big_endian_twos_complement():
    counts = np.zeros((2, 8), np.int32)
    counts[0, 0], counts[0, 7], counts[1, 1] = -1, 0x123456, -(2 ** 23)
    wire = encode_packets(counts, first_counter=255)
    assert len(wire) == 66
    first, second = wire[:33], wire[33:]
    assert first[0] == 0xA0 and first[1] == 255 and first[-1] == 0xC0 and second[1] == 0
    assert first[2:5] == b"\xff\xff\xff" and first[23:26] == b"\x12\x34\x56"
    assert second[5:8] == b"\x80\x00\x00" and first[26:32] == bytes(6)


# -- end to end ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_data_equals_what_the_emulator_sent_and_markers_align():
    with CytonEmulator(_substrate(), seed=3, volts_per_output=0.1, record=True, noise_uV_rms=0.0) as emu:
        rng = np.random.default_rng(0)
        with _cyton(emu) as dev:
            assert [c.unit for c in dev.channels.response] == ["V"] * 8
            assert dev.channels.rate_hz == RATE_HZ
            dev.write(rng.uniform(-0.5, 0.5, (100, 2)))
            first, t1 = dev.read(100)
            dev.mark("step")
            dev.write(np.full((100, 2), 0.8))
            second, t2 = dev.read(150)
            events = dev.events()
        sent, stimulus = emu.sent_counts, emu.sent_stimulus
    got = np.concatenate([first, second])
    # brainflow's scale is 4.5 / (2^23 - 1) / 24 µV per count; the driver reports volts
    np.testing.assert_allclose(got, sent[:250] * MICROVOLTS_PER_COUNT * 1e-6, rtol=1e-12, atol=0)
    assert np.all(np.abs(sent[:250]).max(axis=0) > 1000)  # the first 8 of the ESN's 20 outputs
    # ... and the counts are the substrate's answer to the stimulus the emulator applied
    reference = _substrate()
    reference.reset(3)
    want = volts_to_counts(0.1 * reference.run(stimulus[None])[0, :, :8], np.full(8, 24.0))
    assert np.abs(sent - want).max() <= 1  # blockwise vs one run: rounding of exact halves may differ
    # timestamps: seconds from the first sample, at the board's rate
    t = np.concatenate([t1, t2])
    assert t[0] == 0 and np.all(np.diff(t) > 0)
    assert abs((t[-1] - t[0]) / 249 * RATE_HZ - 1) < 0.05
    # the marker came back at the sample where the step stimulus began to be applied (+-2 samples)
    (index, label), = events
    onset = int(np.flatnonzero(np.all(stimulus == 0.8, axis=1))[0])
    assert label == "step" and abs(index - onset) <= 2


@pytest.mark.slow
def test_channel_gain_commands_scale_both_sides():
    """``x1030110X`` sets channel 1 to gain 6: brainflow rescales it, the emulator encodes at gain 6."""
    with CytonEmulator(_substrate(), seed=3, volts_per_output=0.1, record=True, noise_uV_rms=0.0) as emu:
        params = BrainFlowInputParams()
        params.serial_port = emu.port
        board = BoardShim(BoardIds.CYTON_BOARD, params)
        board.prepare_session()
        try:
            assert board.config_board("x1030110X") == "Success: Channel set for 1$$$"
            board.start_stream()
            time.sleep(0.3)
            board.stop_stream()
            data = board.get_board_data()
        finally:
            board.release_session()
        sent, stimulus = emu.sent_counts, emu.sent_stimulus
    n = data.shape[1]
    assert n >= 50
    exg = data[BoardShim.get_exg_channels(BoardIds.CYTON_BOARD)].T * 1e-6
    np.testing.assert_allclose(exg[:, 0], sent[:n, 0] * MICROVOLTS_PER_COUNT * 4e-6, rtol=1e-12)
    np.testing.assert_allclose(exg[:, 1], sent[:n, 1] * MICROVOLTS_PER_COUNT * 1e-6, rtol=1e-12)
    reference = _substrate()
    reference.reset(3)
    volts = 0.1 * reference.run(stimulus[None])[0, :n, :2]
    np.testing.assert_allclose(exg[:, :2], volts, atol=4 * MICROVOLTS_PER_COUNT * 1e-6)


@pytest.mark.slow
def test_spec_string_starts_the_emulator_and_applies_the_stimulus():
    request = DeviceRequest(n_stimulus=2, rate_hz=RATE_HZ, stimulus_range_V=(-0.5, 0.5),
                            substrate="esn", substrate_params={"units": 20}, emulate=True, seed=1)
    dev = make_rig("brainflow:cyton:/dev/ttyUSB0", request)
    with dev:
        assert dev.channels.stimulus[0].high == 0.5 and len(dev.channels.stimulus) == 2
        dev.write(np.full((50, 2), 0.5))
        samples, _ = dev.read(50)
    assert samples.shape == (50, 8) and np.abs(samples).max() > 0
    assert dev.emulator.packets_sent >= 50
    assert "stimulator" in dev.describe()["stimulus_applied_by"]


def test_spec_errors_name_the_problem(tmp_path):
    request = DeviceRequest(n_stimulus=1, rate_hz=RATE_HZ)
    for spec, message in [("brainflow:", "no board given"),
                          ("brainflow:nosuchboard", "unknown brainflow board"),
                          ("brainflow:cyton", "no serial port"),
                          ("brainflow:cyton:/dev/ttyUSB0?baud=9600", "unknown option"),
                          ("brainflow:playback:rec.csv", r"needs \?master=BOARD"),
                          ("brainflow:playback:nothere.csv?master=cyton", "not found")]:
        with pytest.raises(PrclabError, match=message):
            make_rig(spec, request)
    with pytest.raises(PrclabError, match="samples at 250 Hz, the protocol asks for 1000 Hz"):
        make_rig("brainflow:cyton:/dev/ttyUSB0", DeviceRequest(n_stimulus=1, rate_hz=1000.0))
    with pytest.raises(PrclabError, match="no emulator for brainflow board 'ganglion'"):
        make_rig("brainflow:ganglion:/dev/ttyACM0",
                    DeviceRequest(n_stimulus=1, rate_hz=200.0, emulate=True))


def test_a_board_without_stimulator_is_record_only_and_keeps_no_stimulus():
    with synthetic_board() as dev, dev:
        assert dev.channels.stimulus == () and capabilities(dev) == {"record", "mark"}
        with pytest.raises(DeviceError, match="record-only .*nothing was sent"):
            dev.write(np.full((25, 1), 0.5))
        samples, t = dev.read(25)
        assert samples.shape == (25, 16) and np.abs(samples).max() < 1e-3  # µV-scale data in volts
    assert not hasattr(dev, "recorded_stimulus")
    assert "record-only" in dev.describe()["stimulus_applied_by"]


def test_playback_board_replays_a_file_without_its_markers(tmp_path):
    rows = BoardShim.get_num_rows(BoardIds.SYNTHETIC_BOARD)
    data = np.zeros((rows, 60))
    data[BoardShim.get_package_num_channel(BoardIds.SYNTHETIC_BOARD)] = np.arange(60) % 256
    data[BoardShim.get_timestamp_channel(BoardIds.SYNTHETIC_BOARD)] = 1e6 + np.arange(60) / 250
    data[BoardShim.get_exg_channels(BoardIds.SYNTHETIC_BOARD)] = np.arange(60) * 1.5
    data[BoardShim.get_marker_channel(BoardIds.SYNTHETIC_BOARD), 10] = 7.0
    path = tmp_path / "rec.csv"
    DataFilter.write_file(data, str(path), "w")
    dev = make_rig(f"brainflow:playback:{path}?master=synthetic",
                      DeviceRequest(n_stimulus=1, rate_hz=RATE_HZ))
    with dev:
        samples, t = dev.read(50)
        events = dev.events()
    np.testing.assert_allclose(samples[:, 0], np.arange(50) * 1.5e-6)
    assert events == []  # brainflow does not replay recorded markers
    assert 0.15 < t[-1] < 0.5  # paced by the recorded timestamps (49 / 250 = 0.196 s), not instant


# -- faults --------------------------------------------------------------------------------------
def test_missing_port_is_one_line_error():
    params = BrainFlowInputParams()
    params.serial_port = "/dev/ttyNOPE9"
    with pytest.raises(DeviceError, match=r"brainflow cyton /dev/ttyNOPE9: cannot start .*"
                                          r"UNABLE_TO_OPEN_PORT.*port missing") as info:
        BrainflowDevice(BoardIds.CYTON_BOARD, params).open()
    assert "\n" not in str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize("fault, message", [
    ("unplug", r"unplugged: port .* vanished, stream stalled"),
    ("stall", r"stall: no data for 1 s"),
    ("garbage", r"sample counter jumped \d+ -> \d+ .* lost or spoiled"),
    ("drop", r"sample counter jumped \d+ -> \d+ before sample \d+: 5 packet\(s\) lost"),
])
def test_injected_fault_becomes_one_line_device_error_within_2_s(fault, message):
    with CytonEmulator(_substrate(), seed=3, volts_per_output=0.1) as emu:
        dev = _cyton(emu).open()
        dev.read(50)
        emu.inject(fault)
        start = time.monotonic()
        with pytest.raises(DeviceError, match=message) as info:
            for _ in range(20):  # 2 s of reads at most
                dev.read(25)
        assert time.monotonic() - start < 2.0
        text = str(info.value)
        assert text.startswith(f"brainflow cyton {emu.port}: ") and "\n" not in text
        assert not dev.is_open
        dev.close()  # a no-op after the fault, and never hangs


@pytest.mark.slow
def test_counter_gaps_can_be_recorded_instead():
    with CytonEmulator(_substrate(), seed=3, volts_per_output=0.1) as emu:
        with _cyton(emu, on_gap="record") as dev:
            dev.read(50)
            emu.inject("drop")
            dev.read(100)
            assert len(dev.gaps) == 1 and dev.gaps[0][1] == 5 and 50 <= dev.gaps[0][0] <= 100
