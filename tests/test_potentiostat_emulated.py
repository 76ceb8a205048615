"""The serial potentiostat driver (pyserial, MethodSCRIPT) against the pty emulator, end to end.

No mocks: the driver opens the emulator's pseudo-terminal through pyserial and the emulator interprets
the scripts it sends.  Faults are injected into the emulator and must surface as a one-line
DeviceError naming the port within 2 s.
"""

from __future__ import annotations

import contextlib
import os
import time

import numpy as np
import pytest

from prclab.drivers import DeviceError, DeviceRequest
from prclab.protocols.rig import make_rig
from prclab.drivers.potentiostat import PotentiostatDevice, decode_value, parse_data_line
from prclab.hardware_sims.potentiostat import MethodScriptEmulator, encode_value, interpret
from prclab.errors import PrclabError
from prclab.reservoir import make_substrate

RATE_HZ = 1000.0


def _substrate():
    return make_substrate("potato", 1, dt=1.0 / RATE_HZ, gain_V=1.0)


@contextlib.contextmanager
def emulated_potentiostat():
    """Contract-suite factory: an unopened PotentiostatDevice on a running emulator."""
    with MethodScriptEmulator(_substrate(), seed=3) as emu:
        yield PotentiostatDevice(emu.port, RATE_HZ, samples_per_script=100)


@pytest.fixture
def emulator():
    with MethodScriptEmulator(_substrate(), seed=3) as emu:
        yield emu


# -- wire format ---------------------------------------------------------------------------------
def test_values_decode_as_the_manual_states():
    # MethodSCRIPT manual: 0.01 is sent as "800000Am", -0.01 as "7FFFFF6m"
    assert decode_value("800000Am") == pytest.approx(0.01)
    assert decode_value("7FFFFF6m") == pytest.approx(-0.01)
    assert decode_value("8000000 ") == 0.0


@pytest.mark.parametrize("value", [0.0, 1.5e-9, -2.75e-6, 3.2e-4, -1.999, 123.456])
def test_emulator_encoding_round_trips_to_seven_digits(value):
    assert decode_value(encode_value(value)) == pytest.approx(value, rel=1e-6, abs=1e-18)


@pytest.mark.parametrize("line", [
    "Pda800000Am;ba",                   # truncated variable
    "Pda800000Gm;ba800000An",           # non-hex digit
    "Pda800000A#;ba800000An",           # unknown SI prefix
    "Pda800000Am;da800000An",           # variable twice
    "Pda800000Am;ba800000An,zz",        # bad metadata
    "Q" + "8" * 20,                     # not a data line
])
def test_malformed_data_lines_are_refused(line):
    with pytest.raises(ValueError):
        parse_data_line(line)


def test_data_line_with_metadata_parses():
    values = parse_data_line("Pda800000Am;ba7FFFFF6u,10,288")
    assert values["da"][0] == pytest.approx(0.01)
    assert values["ba"] == (pytest.approx(-10e-6), ("10", "288"))


def test_emulator_refuses_commands_outside_its_subset():
    with pytest.raises(Exception, match="line 3"):
        interpret(["var p", "meas_loop_lsv p c 0 1 10m 100m"])


# -- end to end ----------------------------------------------------------------------------------
def test_currents_equal_the_substrate_run_directly(emulator):
    rng = np.random.default_rng(0)
    # potentials on the driver's 1 µV wire grid; 100-sample blocks = one script each
    blocks = [np.round(rng.uniform(-0.8, 0.8, (100, 1)), 6) for _ in range(3)]
    with PotentiostatDevice(emulator.port, RATE_HZ, samples_per_script=100) as dev:
        got = []
        for block in blocks:
            dev.write(block)
            samples, t = dev.read(len(block))
            got.append(samples)
        assert dev.firmware.startswith("espico")
    reference = _substrate()
    reference.reset(3)
    want = [emulator.gain_A * reference.run(b[None])[0, :, :1] for b in blocks]
    got, want = np.concatenate(got), np.concatenate(want)
    assert got.shape == (300, 1)
    assert np.abs(want).max() > 1e-7  # the substrate answered with a real signal
    # 7 hex digits with the finest SI prefix: relative resolution better than 1e-5
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-15)
    assert emulator.scripts_run == 3 + 1  # and the ramp to rest at close


def test_long_block_is_split_into_scripts_and_timestamps_follow_the_rate(emulator):
    with PotentiostatDevice(emulator.port, RATE_HZ, samples_per_script=40) as dev:
        dev.write(np.full((100, 1), 0.25))
        samples, t = dev.read(130)  # 30 past the stimulus: held at 0 V
    assert samples.shape == (130, 1) and np.all(np.isfinite(samples))
    np.testing.assert_allclose(t, np.arange(130) / RATE_HZ)
    assert emulator.scripts_run == 4 + 1  # 40 + 40 + 20 written, 30 at rest (0 V), ramp at close


def test_spec_string_starts_the_emulator():
    request = DeviceRequest(n_stimulus=1, rate_hz=RATE_HZ, stimulus_range_V=(-0.5, 0.5),
                            emulate=True, seed=1)
    with make_rig("potentiostat:/dev/ttyACM0?protocol=methodscript", request) as dev:
        assert dev.channels.stimulus[0].unit == "V" and dev.channels.response[0].unit == "A"
        dev.write(np.zeros((50, 1)))
        samples, _ = dev.read(50)
    assert samples.shape == (50, 1)
    with pytest.raises(PrclabError, match="unknown option"):
        make_rig("potentiostat:/dev/ttyACM0?baud=9600", request)
    with pytest.raises(PrclabError, match="1 stimulus channel"):
        make_rig("potentiostat:/dev/ttyACM0", DeviceRequest(n_stimulus=2, rate_hz=RATE_HZ))
    with pytest.raises(PrclabError, match="unknown protocol"):
        make_rig("potentiostat:/dev/ttyACM0?protocol=scpi", request)


# -- faults --------------------------------------------------------------------------------------
def test_missing_port_is_one_line_error():
    with pytest.raises(DeviceError, match=r"/dev/ttyNOPE9: cannot open port") as info:
        PotentiostatDevice("/dev/ttyNOPE9", RATE_HZ).open()
    assert "\n" not in str(info.value)


def test_busy_port_is_refused(emulator):
    with PotentiostatDevice(emulator.port, RATE_HZ):
        with pytest.raises(DeviceError, match="port busy"):
            PotentiostatDevice(emulator.port, RATE_HZ).open()


def test_silent_port_fails_the_handshake_quickly():
    master, slave = os.openpty()
    try:
        start = time.monotonic()
        with pytest.raises(DeviceError, match=r"no reply within"):
            PotentiostatDevice(os.ttyname(slave), RATE_HZ).open()
        assert time.monotonic() - start < 2.0
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize("fault, message", [
    ("unplug", r"disconnected"),
    ("stall", r"(no reply|truncated line) within 1 s"),
    ("garbage", r"malformed data line"),
    ("drop", r"missing data line for sample (150|250)"),
])
def test_injected_fault_becomes_one_line_device_error_within_2_s(emulator, fault, message):
    dev = PotentiostatDevice(emulator.port, RATE_HZ, samples_per_script=100).open()
    dev.write(np.full((300, 1), 0.1))
    dev.read(100)  # first script fine; the second is already running
    emulator.inject(fault)
    start = time.monotonic()
    with pytest.raises(DeviceError, match=message) as info:
        dev.read(200)
    assert time.monotonic() - start < 2.0
    text = str(info.value)
    assert emulator.port in text and "\n" not in text
    assert not dev.is_open
    dev.close()  # a no-op after the fault, and never hangs


def test_a_stop_that_lands_as_a_script_is_sent_still_rests_the_cell(emulator):
    """Ctrl-C / SIGTERM raise in the main thread as the blocking send returns: the script is then running
    on the device, and the stop must collect it before the ramp (an uncounted script answered the
    ramp's first script in its place: 'more than N data lines')."""
    with PotentiostatDevice(emulator.port, RATE_HZ, samples_per_script=40) as dev:
        dev.write(np.full((40, 1), 0.3))
        dev.read(40)
        send = dev._link.send

        def send_then_interrupt(text):
            send(text)
            raise KeyboardInterrupt

        dev._link.send = send_then_interrupt
        with pytest.raises(KeyboardInterrupt):
            dev.write(np.full((40, 1), 0.4))
        dev._link.send = send
        report = dev.rest("interrupted")
    assert report["outputs_at_rest"] is True, report
    assert "let the running script finish" in report["detail"], report
