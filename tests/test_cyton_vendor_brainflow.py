"""The Cyton emulator driven the way brainflow's own Cyton examples drive a board (python_package/examples/
tests: brainflow_get_data, markers, cyton_commands, brainflow_config_board, cyton_analog_mode_other_data),
with only the serial port changed.  Written from brainflow's documented usage, not copied; no prclab
driver in the path: ``BoardShim`` and the emulator's pty only.

One board session is shared by the module (brainflow reads each ``config_board`` reply until 1 s of
silence, so every command costs about 1 s); each test leaves the board stopped and at its defaults.
As from a real board, the packets in flight when ``stop_stream`` sends ``s`` arrive after it and would
open the next reply (brainflow's Python binding then fails to decode it): each stream is followed by
one command (the one restoring the test's changes, else ``D``) whose reply is read together with them
and not checked.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from brainflow.board_shim import BoardIds, BoardShim, BrainFlowError, BrainFlowInputParams, LogLevels
from brainflow.data_filter import DataFilter

from prclab.hardware_sims.cyton import CytonEmulator
from prclab.reservoir import make_substrate

CYTON, DAISY = BoardIds.CYTON_BOARD, BoardIds.CYTON_DAISY_BOARD
EXG = BoardShim.get_exg_channels(CYTON)
OTHER = BoardShim.get_other_channels(CYTON)   # [0]: stop byte, [1:7]: the six raw aux bytes
ANALOG = BoardShim.get_analog_channels(CYTON)
ACCEL = BoardShim.get_accel_channels(CYTON)
COUNTER = BoardShim.get_package_num_channel(CYTON)
TEST_1X_UV = 4.5 / 2.4 * 1e3  # ADS1299 test signal at 1x: (VREFP - VREFN) / 2.4 mV, in µV

pytestmark = pytest.mark.slow  # real-time streams through brainflow


def _substrate(n_inputs: int = 2):
    return make_substrate("esn", n_inputs, units=20, dt=1 / 250)


def _session(emu: CytonEmulator, board_id=CYTON) -> BoardShim:
    BoardShim.set_log_level(LogLevels.LEVEL_OFF)
    params = BrainFlowInputParams()
    params.serial_port = emu.port  # the one line a lab changes
    board = BoardShim(board_id, params)
    board.prepare_session()
    return board


@pytest.fixture(scope="module")
def cyton():
    with CytonEmulator(_substrate(), seed=5) as emu:
        board = _session(emu)
        try:
            yield board, emu
        finally:
            board.release_session()


def _stream(board: BoardShim, seconds: float, during=None, after: str = "D") -> np.ndarray:
    """start_stream, wait (calling ``during(board)`` half-way), get_board_data, stop_stream, then send
    ``after`` (the firmware runs it; its reply, behind the packets in flight, is not checked)."""
    board.start_stream()
    time.sleep(seconds / 2)
    if during is not None:
        during(board)
    time.sleep(seconds / 2)
    data = board.get_board_data()
    board.stop_stream()
    try:  # reads away the packets that were in flight when ``s`` went out
        board.config_board(after)
    except UnicodeDecodeError:  # brainflow cannot decode the packets' bytes: the command still ran
        pass
    return data


def test_get_data_is_realistic_eeg_at_250_hz_with_the_accelerometer(cyton, tmp_path):
    board, emu = cyton
    board.add_streamer(f"file://{tmp_path / 'data.csv'}:w")
    emu.apply(np.random.default_rng(0).uniform(-1, 1, (250, 2)))  # a rehearsal's stimulator at work
    data = _stream(board, 1.0)
    assert data.shape[0] == BoardShim.get_num_rows(CYTON)
    assert 200 <= data.shape[1] <= 290  # 250 Hz for 1 s, in real time
    assert np.all(np.diff(data[COUNTER]) % 256 == 1) and data[COUNTER][0] == 0
    assert set(data[OTHER[0]]) == {0xC0}
    exg = data[EXG]
    # default scale: tens of µV, nowhere near the ADS1299's +-187.5 mV at gain 24
    assert np.all(np.abs(exg).max(axis=1) < 200) and np.all(exg.std(axis=1) > 1)
    gravity = np.linalg.norm(data[ACCEL][:, 10:], axis=0)  # brainflow holds the last 25 Hz reading
    assert np.all(np.abs(gravity - 1) < 0.05), gravity
    np.testing.assert_allclose(data[ACCEL][:, 10:].mean(axis=1), emu.gravity_g, atol=0.01)
    saved = DataFilter.read_file(str(tmp_path / "data.csv"))
    assert saved.shape[0] == data.shape[0] and saved.shape[1] > 200  # the streamer's file


def test_markers_land_in_the_marker_channel_in_order(cyton):
    board, _ = cyton

    def mark(b):
        for value in (1.0, 2.0, 3.0):
            b.insert_marker(value)
            time.sleep(0.1)
    data = _stream(board, 0.6, during=mark)
    markers = data[BoardShim.get_marker_channel(CYTON)]
    assert markers[markers != 0].tolist() == [1.0, 2.0, 3.0]


def test_config_board_replies_as_the_firmware(cyton):
    board, _ = cyton
    dump = board.config_board("?")
    assert dump.startswith("\nBoard ADS Registers\nADS_ID, 00, 3E, 0, 0, 1, 1, 1, 1, 1, 0\n")
    assert "CONFIG1, 01, 96," in dump and "CH8SET, 0C, 68, 0, 1, 1, 0, 1, 0, 0, 0\n" in dump
    assert "\nLIS3DH Registers\n" in dump and "0x0F 33\n" in dump and dump.endswith("$$$")
    assert board.config_board("V") == "v3.1.5$$$"
    assert board.config_board("D") == "060110$$$"
    assert board.config_board("~~") == "Success: Sample rate is 250Hz$$$"
    assert board.config_board("//") == "Success: default$$$"
    assert board.config_board("/9") == "Failure: board mode value out of bounds.$$$"
    with pytest.raises(BrainFlowError, match="INVALID_ARGUMENTS"):  # brainflow's own check, client side
        board.config_board("x9060110X")
    _stream(board, 0.2, during=lambda b: b.config_board("?") == "" or pytest.fail("reply"))


def test_analog_mode_switched_during_streaming_reads_the_analog_pins(cyton):
    board, emu = cyton
    emu.analog_V = np.array([0.5, 1.65, 3.3])
    try:
        data = _stream(board, 0.8, during=lambda b: b.config_board("/2"), after="/0")
    finally:
        emu.analog_V = np.zeros(3)
    stops = data[OTHER[0]]
    assert stops[0] == 0xC0 and stops[-1] == 0xC1 and set(stops) == {0xC0, 0xC1}
    analog = data[ANALOG][:, stops == 0xC1]
    assert analog.shape[1] > 50 and np.all(analog.T == [155, 512, 1023])  # 10-bit over 3.3 V
    assert np.all(np.diff(data[COUNTER]) % 256 == 1)  # a board-mode change does not restart the ADS


def test_marker_mode_puts_the_firmware_marker_in_one_packet(cyton):
    board, _ = cyton
    assert board.config_board("/4") == "Success: marker$$$"
    data = _stream(board, 0.6, during=lambda b: b.config_board("`7"), after="/0")
    assert set(data[OTHER[0]]) == {0xC1}
    assert np.flatnonzero(data[ANALOG[0]]).size == 1 and data[ANALOG[0]].max() == ord("7")


def test_powered_down_channels_read_zero(cyton):
    board, _ = cyton
    assert board.config_board("x2100000X") == "Success: Channel set for 2$$$"  # brainflow_config_board.py
    assert board.config_board("5") == ""  # channel 5 off: the firmware does not answer
    data = _stream(board, 0.6, after="d")
    exg = data[EXG]
    assert np.all(exg[[1, 4]] == 0) and np.all(np.abs(exg[[0, 2, 3, 5, 6, 7]]).max(axis=1) > 0)


def _square(channel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(levels of the two halves, spacing of the level changes) of a square wave ``(n,)``."""
    edges = np.flatnonzero(np.diff(np.sign(channel)) != 0)
    return np.array([channel[channel > 0].mean(), channel[channel < 0].mean()]), np.diff(edges)


@pytest.mark.parametrize("command, amplitude, half_period", [("-", 1, 128), ("]", 2, 64)],
                         ids=["1x-slow", "2x-fast"])
def test_test_signal_is_the_ads1299_square_wave(cyton, command, amplitude, half_period):
    """Slow pulses at fCLK / 2^21 (0.98 Hz: 128 samples per half period at 250 Hz), fast at 2^20."""
    board, _ = cyton
    assert board.config_board(command) == "Success: Configured internal test signal.$$$"
    data = _stream(board, 1.2 if half_period == 128 else 0.8, after="d")
    for channel in data[EXG]:
        levels, spacing = _square(channel)
        np.testing.assert_allclose(levels, [amplitude * TEST_1X_UV, -amplitude * TEST_1X_UV], rtol=1e-3)
        assert len(spacing) >= 1 and np.all(spacing == half_period)


def test_shorted_inputs_read_amplifier_noise_only(cyton):
    board, _ = cyton
    assert board.config_board("0") == "Success: Configured internal test signal.$$$"
    data = _stream(board, 0.6, after="d")
    exg = data[EXG]
    assert np.all(np.abs(exg.mean(axis=1)) < 0.1) and np.all((0.1 < exg.std(axis=1)) & (exg.std(axis=1) < 0.4))


def test_time_stamp_packets_carry_the_board_clock(cyton):
    board, _ = cyton
    assert board.config_board("<") == "Time stamp ON$$$"
    data = _stream(board, 0.6, after=">")
    stops = data[OTHER[0]]
    assert stops[0] == 0xC3 and set(stops[1:]) == {0xC4}
    ms = np.sum([data[OTHER[3 + i]] * 256 ** (3 - i) for i in range(4)], axis=0)
    assert np.all(np.isin(np.diff(ms), (3, 4, 5)))  # 250 Hz: 4 ms per sample, rounded


def test_fast_sample_rate_is_refused_by_the_radio_link(cyton):
    """``~4`` is accepted, but ``b`` over the serial dongle drops the board back to 250 Hz."""
    board, _ = cyton
    assert board.config_board("~4") == "Success: Sample rate is 1000Hz$$$"
    assert board.config_board("~9") == "Failure: sample value out of bounds$$$"
    data = _stream(board, 0.8, after="V")
    assert 160 <= data.shape[1] <= 240  # 250 Hz for 0.8 s
    assert board.config_board("~~") == "Success: Sample rate is 250Hz$$$"


def test_daisy_streams_16_channels_interleaved_at_125_hz():
    with CytonEmulator(_substrate(), seed=2, daisy=True, record=True) as emu:
        board = _session(emu, DAISY)
        try:
            assert board.config_board("C") == "16$$$"  # already attached at the soft reset
            assert board.config_board("xQ100000X") == "Success: Channel set for 9$$$"
            emu.apply(np.random.default_rng(1).uniform(-1, 1, (300, 2)))
            data = _stream(board, 1.0, after="V")
        finally:
            board.release_session()
        sent = emu.sent_counts.astype(np.int64)
    exg = data[BoardShim.get_exg_channels(DAISY)]
    assert exg.shape[0] == 16 and 100 <= exg.shape[1] <= 145  # 125 Hz of 16-channel samples
    assert np.all(exg[8] == 0) and np.all(np.abs(exg[[i for i in range(16) if i != 8]]).max(axis=1) > 0.5)
    # brainflow sample j joins packet 2j (Daisy: average of ADS samples 2j-1, 2j) and 2j+1 (board:
    # average of 2j, 2j+1), as the firmware averages them
    n = exg.shape[1]
    scale = 4.5 / (2 ** 23 - 1) / 24 * 1e6
    board_mean = np.trunc((sent[0:2 * n:2, :8] + sent[1:2 * n:2, :8]) / 2)
    daisy_mean = np.trunc((sent[1:2 * n - 1:2, 8:] + sent[2:2 * n:2, 8:]) / 2)
    np.testing.assert_allclose(exg[:8].T, board_mean * scale, rtol=1e-6)
    np.testing.assert_allclose(exg[8:, 1:].T, daisy_mean * scale, rtol=1e-6)
