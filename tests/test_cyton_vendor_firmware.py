"""The Cyton firmware model (``hardware_sims.cyton_firmware``) against the behaviour of OpenBCI's firmware
v3.1.5 source, on the details a lab program meets that brainflow's examples do not exercise: timeouts
of multi-byte commands, malformed channel settings, replies suppressed while streaming, stream restarts,
the Daisy commands, BLE mode.  Fast: no serial port, no brainflow."""

from __future__ import annotations

import numpy as np

from prclab.hardware_sims import cyton_firmware as fw
from prclab.hardware_sims.cyton_firmware import CytonFirmware


def _line(dump: bytes, name: str) -> str:
    return next(line for line in dump.decode().splitlines() if line.startswith(name + ","))


def test_channel_setting_is_applied_in_full_to_the_registers():
    board = CytonFirmware()
    assert board.feed(b"x3131010X", 0) == b"Success: Channel set for 3$$$"
    # power down, gain code 3 (x6), input 1 (shorted), bias 0, SRB2 1, SRB1 0
    assert board.channel_registers()[2] == 0x80 | 0x30 | 0x08 | 0x01
    dump = board.feed(b"?", 0)
    assert _line(dump, "CH3SET") == "CH3SET, 07, B9, 1, 0, 1, 1, 1, 0, 0, 1"
    assert _line(dump, "BIAS_SENSP") == "BIAS_SENSP, 0D, FB, 1, 1, 1, 1, 1, 0, 1, 1"
    assert board.feed(b"d", 0) == b"updating channel settings to default$$$"
    assert board.channel_registers()[:8] == [0x68] * 8


def test_malformed_channel_settings_get_the_firmware_failures():
    board = CytonFirmware()
    assert board.feed(b"x10X", 0) == b"Failure: too few chars$$$"
    assert board.feed(b"x1060110Y", 0) == b"Failure: Err: 9th char not X$$$"
    assert board.feed(b"z1Z", 0) == b"Failure: too few chars$$$"
    assert board.feed(b"z101Z", 0) == b"Success: Lead off set for 1$$$"
    # the firmware maps an unknown channel letter to channel 1 and an unknown gain to 24
    assert board.feed(b"x#0x0110X", 0) == b"Success: Channel set for 1$$$"
    assert board.channel_registers()[0] == 0x68


def test_an_unfinished_multi_byte_command_times_out_after_1_s():
    board = CytonFirmware()
    assert board.feed(b"x106", 0.0) == b""
    assert board.poll(0.5) == b""
    assert board.poll(1.0).startswith(b"Timeout processing multi byte message")
    assert board.feed(b"V", 1.1) == b"v3.1.5$$$"  # a command again, not a channel-setting argument
    assert board.feed(b"~", 2.0) == b""
    # a late second byte: the timeout message, then that byte starts a new ``~`` command
    assert board.feed(b"~", 3.5).startswith(b"Timeout") and board.feed(b"~", 3.6).startswith(b"Success")


def test_replies_are_suppressed_while_streaming_except_the_firmware_s_own():
    board = CytonFirmware()
    board.feed(b"b", 0)
    assert board.streaming and board.stream_starts == 1
    for quiet in (b"?", b"d", b"x1060110X", b"<", b"~6", b"-"):
        assert board.feed(quiet, 0) == b"", quiet
    assert board.feed(b"//", 0) == b"Success: default$$$"  # board mode answers into the stream
    assert board.feed(b"~~", 0) == b"Success: Sample rate is 250Hz$$$"
    assert board.feed(b"D", 0) == b"060110$$$" and board.feed(b"V", 0) == b"v3.1.5$$$"


def test_commands_that_touch_the_ads_restart_the_stream():
    board = CytonFirmware()
    board.feed(b"b", 0)
    starts = board.stream_starts
    board.feed(b"2", 0)   # channel 2 off: stop, write, start (the counter restarts at 0)
    board.feed(b"/2", 0)  # a board mode does not touch the ADS
    assert board.streaming and board.stream_starts == starts + 1
    assert board.channel_registers()[1] & 0x80
    board.feed(b"@", 0)
    assert not board.channel_registers()[1] & 0x80 and board.stream_starts == starts + 2


def test_board_modes_and_their_packet_types():
    board = CytonFirmware()
    assert board.packet_type == fw.ACCEL
    assert board.feed(b"/2", 0) == b"Success: analog$$$" and board.packet_type == fw.RAW_AUX
    assert board.feed(b"<", 0) == b"Time stamp ON$$$" and board.packet_type == fw.RAW_AUX_TIME_SET
    board.packet_sent()
    assert board.packet_type == fw.RAW_AUX_TIME_SYNC
    assert board.feed(b"/0>", 0) == b"Success: default$$$Time stamp OFF$$$" and board.packet_type == fw.ACCEL
    assert board.feed(b"/x", 0) == b"Failure: invalid board mode value.$$$"
    assert board.feed(b"/4`\xff", 0) == b"Success: marker$$$" and board.take_marker() == -1


def test_ble_mode_loses_the_dongle_link():
    board = CytonFirmware()
    board.feed(b"b", 0)
    assert board.feed(b"/5", 0) == b"" and board.link_lost and not board.streaming
    assert board.feed(b"vV?", 0) == b""


def test_sample_rate_resets_the_channels_and_streaming_forces_250_hz():
    board = CytonFirmware()
    board.feed(b"x1000000X", 0)
    assert board.feed(b"~4", 0) == b"Success: Sample rate is 1000Hz$$$"
    assert board.channel_registers()[0] == 0x68  # initialize_ads wrote the defaults again
    assert _line(board.feed(b"?", 0), "CONFIG1") == "CONFIG1, 01, 94, 1, 0, 0, 1, 0, 1, 0, 0"
    board.feed(b"b", 0)
    assert board.sample_rate == fw.RATE_250 and board.streaming
    assert board.feed(b"~7", 0) == b""  # out of bounds, but quiet while streaming


def test_daisy_commands():
    lone = CytonFirmware()
    assert lone.feed(b"C", 0) == b"no daisy to attach!8$$$"
    assert b"Daisy" not in lone.feed(b"v", 0)
    fitted = CytonFirmware(daisy_fitted=True)
    assert b"On Daisy ADS1299 Device ID: 0x3E\n" in fitted.feed(b"v", 0)
    assert fitted.feed(b"C", 0) == b"16$$$"
    assert fitted.feed(b"xQ100000X", 0) == b"Success: Channel set for 9$$$"
    assert fitted.channel_registers()[8] == 0x80
    assert fitted.feed(b"c", 0) == b"daisy removed$$$" and fitted.feed(b"c", 0) == b"no daisy to remove!$$$"
    assert fitted.feed(b"C", 0) == b"daisy attached16$$$"
    assert np.all(np.array(fitted.channel_registers()[8:]) & 0x80)  # a re-attached Daisy starts off


def test_no_sd_card_and_no_wifi_shield():
    board = CytonFirmware()
    assert board.feed(b"A", 0).startswith(b"initialization failed.") and board.feed(b"A", 0).endswith(b"$$$")
    assert board.feed(b"{", 0) == b"Failure: Wifi not attached$$$"
    assert board.feed(b":", 0) == b"Wifi not present, send { to attach the shield$$$"
    board.feed(b"b", 0)
    assert board.feed(b"j", 0) == b"" and not board.streaming  # ``j`` closes the SD file and stops
