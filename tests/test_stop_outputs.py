"""Every stop leaves every stimulus output at its rest level, and the recording says so.

For each emulated stimulating device (NI-DAQmx over gRPC, MethodSCRIPT potentiostat, Cyton with its
rehearsal stimulator) and each way a run can stop - normal end, a Python exception, Ctrl-C (a real
SIGINT mid-trial), SIGTERM (the CLI's handler, a real signal), and each emulator fault (unplug, stall,
garbage, drop) - the output is read back from the emulator's own state:

- NI: ``emulator.output_levels_V`` (what each AO line holds);
- potentiostat: ``emulator.output()`` (cell on?, WE potential of the last point applied; the
  Rodeostat's 12-bit DAC holds rest to within one step);
- Cyton: ``emulator.applied_V`` (what the rehearsal stimulator applies now).

What cannot be driven is asserted as it is: an unplugged NI card is out of reach (the emulator holds
the last stimulus voltage, the recording says ``outputs_at_rest: false``); a stalled potentiostat does
not take the rest script (its last script switches the cell off by itself); an unplugged potentiostat
has lost its USB power, and with it the cell.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import h5py
import numpy as np
import pytest

from prclab.drivers import DeviceError, DeviceRequest
from prclab.protocols.rig import make_rig
from prclab.drivers.base import rest_ramp
from prclab.drivers.checks import mid_range
from prclab.hardware_sims import FAULTS
from prclab.protocols.protocol import parse_protocol
from prclab.protocols.runner import run_protocol
from prclab.hardware_sims.rodeostat import DAC_MAX
from test_fault_matrix import DEVICES, PROTOCOL

REST_V = 0.0  # the protocols' window is [-0.5, 0.5] V: rest at 0 V


def _protocol(kind, dataset, rest_s="0.02"):
    spec, electrodes, multiplex, rate = DEVICES[kind]
    text = PROTOCOL.format(rate=rate, electrodes=electrodes, dataset=dataset, multiplex=multiplex)
    return parse_protocol(text.replace("rest_s = 0.02", f"rest_s = {rest_s}"))


def _device(kind):
    spec, electrodes, _, rate = DEVICES[kind]
    request = DeviceRequest(n_stimulus=electrodes, rate_hz=rate, stimulus_range_V=(-0.5, 0.5),
                            substrate="esn", substrate_params={"units": 20}, emulate=True, seed=1)
    return make_rig(spec, request)


def output_level(kind, device) -> tuple[bool, np.ndarray]:
    """``(driven, volts)`` read from the emulator: is anything applied, and at what level."""
    emu = device.emulator
    if kind == "nidaq":
        return True, emu.output_levels_V
    if kind.startswith("potentiostat"):
        cell_on, volts = emu.output()
        return cell_on, np.array([volts])
    assert emu.played_out(), "the stimulator must play out what it was handed"  # real time, on its own
    return True, emu.applied_V.copy()                                             # clock: may lag a loaded CPU


def session_note(path) -> dict:
    with h5py.File(path, "r") as f:
        return json.loads(f.attrs["sessions"])[-1]


def _stop_run(kind, how, tmp_path, dataset):
    """Run to the stop ``how``; returns (device, error, recording path, seconds from stop to return)."""
    protocol = _protocol(kind, dataset)
    device = _device(kind)
    out = tmp_path / "rec.h5"
    marks: dict = {}

    fired = threading.Event()

    def fire(action, *args):
        action(*args)
        fired.set()

    def after_trial(trial):
        if trial.index > 1 and how in (*FAULTS, "sigint", "sigterm"):
            fired.wait(2.0)  # a fast emulator must not finish the run before the stop lands
        if trial.index != 1:
            return
        marks["at"] = time.monotonic()
        if how in FAULTS:  # mid-trial, during the stimulus
            threading.Timer(0.05, fire, (device.emulator.inject, how)).start()
        elif how == "exception":
            raise RuntimeError("user callback failed")
        elif how in ("sigint", "sigterm"):  # a real signal, mid-trial, in the main thread
            sig = signal.SIGINT if how == "sigint" else signal.SIGTERM
            threading.Timer(0.05, fire, (os.kill, os.getpid(), sig)).start()

    error = None
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    # Python's own ^C handler, as an interactive run has it (a shell's background job inherits SIGINT
    # ignored, and Python then installs none)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if how == "sigterm":
        from prclab.cli import _raise_terminated
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        run_protocol(protocol, device, out, progress=after_trial)
    except BaseException as exc:  # noqa: BLE001 - the test inspects whatever came out
        error = exc
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    took = time.monotonic() - marks.get("at", time.monotonic())
    return device, error, out, took


STOPS = ("end", "exception", "sigint", "sigterm", *FAULTS)
UNREACHABLE = {("nidaq", "unplug"), ("potentiostat", "stall"), ("potentiostat", "unplug"),
               ("potentiostat:rodeostat", "stall"), ("potentiostat:rodeostat", "unplug")}
DAC_STEP_V = {"potentiostat:rodeostat": 2 * 1.0 / DAC_MAX}  # one code on its 1 V range


@pytest.mark.slow
@pytest.mark.parametrize("how", STOPS)
@pytest.mark.parametrize("kind", sorted(DEVICES))
def test_every_stop_leaves_outputs_at_rest(kind, how, tmp_path, toy_npz):
    device, error, out, took = _stop_run(kind, how, tmp_path, toy_npz)
    expected = {"end": type(None), "exception": RuntimeError, "sigint": KeyboardInterrupt,
                "sigterm": KeyboardInterrupt}.get(how, DeviceError)
    assert isinstance(error, expected), f"{kind}/{how}: {error!r}"
    assert not device.is_open
    note = session_note(out)
    # the device's own report, as recorded in the session entry; close did not redo it
    assert {k: note[k] for k in device.last_stop} == device.last_stop
    driven, level = output_level(kind, device)
    print(f"{kind}/{how}: {note['stopped'][:60]!r}, outputs_at_rest={note['outputs_at_rest']}, "
          f"output {level.round(6).tolist()} V (driven: {driven}), returned {took:.2f} s after trial 1")
    if how in FAULTS:
        assert note["stopped"].startswith("device fault")
    elif how != "end":
        assert ("terminated" if how == "sigterm" else
                "interrupted" if how == "sigint" else "RuntimeError") in note["stopped"]
    if (kind, how) in UNREACHABLE:
        assert note["outputs_at_rest"] is False
        if kind == "nidaq":  # out of reach: the lines keep a sample of the block cut short
            assert "cannot drive outputs to rest" in note["detail"]
            assert np.all((level >= -0.5) & (level <= 0.5)), level
        else:
            time.sleep(0.15)  # a stalled script ends on its own with cell_off
            assert output_level(kind, device)[0] is False, "the cell must be off"
        return
    assert note["outputs_at_rest"] is True, note
    np.testing.assert_allclose(level, REST_V, atol=DAC_STEP_V.get(kind, 1e-9))
    if kind.startswith("potentiostat"):
        assert driven is False  # the rest script (test) ends with the cell off


def test_rest_ramp_respects_the_slew_limit_and_ends_at_rest():
    ramp = rest_ramp([0.31, -0.2], 0.0, [2.0, np.inf], step_hz=1000.0)
    steps = np.abs(np.diff(np.vstack([[0.31, -0.2], ramp]), axis=0)) * 1000.0
    # 0.31 V at 2 V/s is 155 steps exactly; one more keeps every step strictly under the limit, as the
    # safety monitor's strict comparison needs (a step at the limit may round a hair over it)
    assert steps[:, 0].max() < 2.0 and len(ramp) == 156
    np.testing.assert_array_equal(ramp[-1], [0.0, 0.0])
    assert len(rest_ramp([0.3], 0.0, np.inf, step_hz=1000.0)) == 10  # no limit: 10 ms
    assert len(rest_ramp([0.0], 0.0, 1.0, step_hz=250.0)) >= 1


def test_nidaq_ramp_on_the_wire_respects_the_slew_limit():
    device = _device("nidaq")
    device.set_rest(0.1, 4.0)
    with device:
        device.write(np.full((40, 2), 0.45))
        device.read(40)
        assert np.allclose(device.emulator.output_levels_V, 0.45)
        t0 = time.monotonic()
    took = time.monotonic() - t0
    log = np.array(device.stimulator.rest_log)
    steps = np.abs(np.diff(np.vstack([[0.45, 0.45], log]), axis=0)) * 500.0  # REST_STEP_HZ
    assert steps.max() <= 4.0 + 1e-9
    np.testing.assert_allclose(device.emulator.output_levels_V, 0.1)
    assert took >= 0.35 / 4.0 * 0.9  # software-timed: never faster than the limit
    print(f"nidaq: 0.45 -> 0.1 V at 4 V/s in {len(log)} steps, {took:.3f} s")


def test_cyton_stimulator_holds_rest_between_blocks_not_0V(tmp_path):
    """S6: with a window that excludes 0 V the rehearsal stimulator must never apply 0 V."""
    spec = "brainflow:cyton:"
    request = DeviceRequest(n_stimulus=2, rate_hz=250.0, stimulus_range_V=(0.2, 0.6), substrate="esn",
                            substrate_params={"units": 20}, emulate=True, seed=1)
    device = make_rig(spec, request)
    device.emulator.record = True
    with device:
        for _ in range(3):
            device.write(np.full((25, 2), 0.5))
            device.read(25)
            time.sleep(0.05)  # a host pause between blocks: the stimulator holds
    applied = device.emulator.sent_stimulus
    assert len(applied) > 75
    assert applied.min() >= 0.2 - 1e-12, f"stimulator applied {applied.min()} V, outside [0.2, 0.6]"
    np.testing.assert_allclose(device.emulator.applied_V, 0.4)  # the window's centre: rest


# -- the rest contract, for every driver of the contract suite --------------------------------------
from test_device_contract import FACTORIES  # noqa: E402  (every device the contract kit checks)


# a replay plays only the recording's own stimulus (it refuses any other, issue 10 R5) and has no output;
# a record-only board has no output either
@pytest.mark.parametrize("factory", [f for f in FACTORIES
                                     if f.id not in ("replay", "rig-replay", "brainflow-synthetic")])
def test_contract_close_drives_every_output_to_rest(factory):
    with factory() as device:
        rest = device.channels.stimulus_low + 0.25 * (device.channels.stimulus_high -
                                                      device.channels.stimulus_low)
        device.set_rest(rest)
        with device as dev:
            n = int(dev.channels.rate_hz * 0.05)
            dev.write(mid_range(dev, n))
            dev.read(n)
        report = device.last_stop
        assert report["stopped"] == "close" and report["outputs_at_rest"] is True, report
        np.testing.assert_allclose(device.output_V, rest)
        assert device.rest("again") is report  # closed: the stop stands, nothing is driven twice
        with pytest.raises(DeviceError, match="rest level"):
            device.set_rest(device.channels.stimulus_high + 1.0)


def test_unplugged_nidaq_card_holds_its_last_voltage_and_says_so():
    """What is true of an unplugged card: nothing can be driven; the emulator's lines hold the last
    voltage (a real USB card without power drops to about 0 V, unramped); the report says not at rest."""
    device = _device("nidaq")
    with device:
        device.write(np.full((50, 2), 0.3))
        device.read(50)
        device.emulator.inject("unplug")
        device.write(np.full((50, 2), 0.3))
        with pytest.raises(DeviceError, match="-201003"):
            device.read(50)
    assert device.last_stop["outputs_at_rest"] is False
    assert "cannot drive outputs to rest" in device.last_stop["detail"]
    np.testing.assert_allclose(device.emulator.output_levels_V, 0.3)


def test_potentiostat_slow_ramp_goes_in_bounded_scripts():
    device = _device("potentiostat")
    device.set_rest(0.0, 2.0)  # 0.4 V at 2 V/s: about 200 ms, 201 points at 1 kHz, 100 a script
    with device:
        device.write(np.full((50, 1), 0.4))
        device.read(50)
        before = device.emulator.scripts_run
    assert device.last_stop["outputs_at_rest"] is True, device.last_stop
    points = len(rest_ramp([0.4], 0.0, 2.0, step_hz=1000.0))
    assert points == 201 and device.emulator.scripts_run - before == -(-points // device.stimulator.samples_per_script) == 3
    assert device.emulator.output() == (False, 0.0)
