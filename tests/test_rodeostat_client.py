"""IO Rodeo's own Python client (``iorodeo-potentiostat``) against the Rodeostat emulator, end to end.

Written from the client's documented usage (its README and docstrings: connect, ``set_curr_range``,
``set_sample_period``, ``set_param`` / ``run_test`` for cyclic voltammetry, constant voltage and the
other tests, the returned ``t, volt, curr`` lists in s, V and µA, ``get_*`` / ``set_*`` settings).  The
client opens the emulator's pseudo-terminal with pyserial and nothing of it is replaced.  Samples
come in real time at 10 ms, so each run takes its test's duration.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from prclab.hardware_sims.rodeostat import HARDWARE_VARIANT, RodeostatEmulator
from prclab.reservoir import make_substrate

potentiostat = pytest.importorskip("potentiostat")

R_OHM = 100e3
"""Resistor-like substrate: ``y = V`` and ``gain_A = 1 / R`` make the cell a 100 kΩ resistor."""
SAMPLE_MS = 10


class Resistor:
    """A substrate whose output is its input potential (volts): with ``gain_A = 1/R`` the emulator's
    cell current is ``V / R``.  ``dt`` is the firmware's 200 µs tick, so every tick is stepped."""

    n_inputs = n_outputs = 1
    dt = 200e-6

    def reset(self, seed=None) -> None:
        """Stateless."""

    def run(self, u: np.ndarray) -> np.ndarray:
        """``u`` ``(batch, steps, 1)`` volts -> the same volts."""
        return np.asarray(u, dtype=np.float64)


@pytest.fixture
def resistor():
    with RodeostatEmulator(Resistor(), gain_A=1.0 / R_OHM) as emu:
        dev = potentiostat.Potentiostat(emu.port)
        dev.set_curr_range("10uA")
        dev.set_sample_period(SAMPLE_MS)
        yield dev
        dev.close()


def _ohm_uA(volts) -> np.ndarray:
    return np.asarray(volts) / R_OHM * 1e6


def test_connect_identifies_the_instrument_as_the_firmware_does(resistor):
    assert resistor.hardware_variant == HARDWARE_VARIANT
    assert resistor.firmware_version == "FW0.1.0" and resistor.hardware_version == "V0.2"
    assert resistor.get_all_volt_range() == ["1V", "2V", "5V", "10V"]
    assert resistor.get_test_names() == ["cyclic", "sinusoid", "constant", "squareWave", "linearSweep",
                                         "chronoamp", "multiStep", "differentialPulse"]
    assert resistor.get_mux_enabled() is False
    assert resistor.set_device_id(42) == 42 and resistor.get_device_id() == 42
    assert resistor.get_sample_period() == SAMPLE_MS and resistor.get_sample_rate() == 100.0
    assert resistor.get_curr_range() == "10uA"


def test_cyclic_voltammetry_on_a_resistor_gives_ohms_law_in_real_time(resistor):
    param = {"quietValue": 0.0, "quietTime": 0, "amplitude": 0.5, "offset": 0.1, "period": 1000,
             "numCycles": 1, "shift": 0.0}
    assert resistor.set_param("cyclic", param) == param
    assert resistor.get_test_done_time("cyclic") == 1000
    start = time.monotonic()
    t, volt, curr = resistor.run_test("cyclic", display=None)
    wall = time.monotonic() - start
    assert 0.9 < wall < 2.5                              # 1 s of test, paced at the sample period
    assert len(t) == 100 and t[0] == pytest.approx(0.01) and t[-1] == pytest.approx(1.0)
    assert np.allclose(np.diff(t), 0.01)
    expected_v = 0.1 - 0.5 + 4 * 0.5 * np.minimum(np.array(t) % 1.0, 1.0 - np.array(t) % 1.0)
    assert np.allclose(volt, expected_v, atol=1e-5)      # the triangle the firmware computes
    assert np.allclose(curr, _ohm_uA(volt), atol=0.05)   # I = V / R through ADC and low-pass


def test_constant_voltage_current_and_the_settings_it_leaves(resistor):
    t, volt, curr = resistor.run_test("constant", param={"value": 0.25, "duration": 300, "quietTime": 100,
                                                         "quietValue": -0.1}, display=None)
    assert len(t) == 40
    t, volt, curr = map(np.array, (t, volt, curr))
    assert np.all(volt[t < 0.1] == pytest.approx(-0.1)) and np.all(volt[t >= 0.1] == 0.25)
    settled = t > 0.12                                    # the 200 Hz low-pass settles within ~5 ms
    assert np.allclose(curr[settled], _ohm_uA(volt[settled]), atol=0.01)
    assert resistor.get_volt() == pytest.approx(0.25, abs=1e-3)   # the DAC holds the last value
    assert resistor.get_volt_range() == "1V"              # auto-ranged to the narrowest range


@pytest.mark.parametrize("test, param, n, check", [
    ("linearSweep", {"startValue": -0.4, "finalValue": 0.4, "duration": 200}, 20,
     lambda t, v, i: np.allclose(v, -0.4 + 0.8 * t / 0.2, atol=1e-5) and np.allclose(i, _ohm_uA(v), atol=0.05)),
    ("sinusoid", {"amplitude": 0.3, "offset": 0.0, "period": 200, "numCycles": 1}, 20,
     lambda t, v, i: np.allclose(v, 0.3 * np.sin(2 * np.pi * t / 0.2), atol=2e-3)),
    ("chronoamp", {"quietTime": 0, "step": [[100, 0.3], [100, -0.2]]}, 20,
     lambda t, v, i: np.allclose(v, np.where(t <= 0.1, 0.3, -0.2)) and abs(i[5] - 3.0) < 0.02),
    ("multiStep", {"step": [[50, 0.1], [50, 0.2], [50, 0.4]]}, 15,
     lambda t, v, i: abs(i[-1] - 4.0) < 0.02 and abs(i[2] - 1.0) < 0.02),
    # square wave: the sample is I(stair + amplitude) - I(stair - amplitude) = 2 amplitude / R
    # (11 steps of 10 ms: done at 110 ms; samples 10 ms after the first tick, 10.2 ms, 20.2 ms, ...)
    ("squareWave", {"startValue": 0.0, "finalValue": 0.1, "stepValue": 0.01, "amplitude": 0.05,
                    "window": 0.2}, 10,
     lambda t, v, i: np.allclose(i[1:], _ohm_uA(0.1), atol=0.02) and np.allclose(v, 0.01 * np.arange(1, 11))),
    # differential pulse: I(stair + pulse) - I(previous stair) = (pulse + step) / R from the 2nd step on
    # (the first sample is the unpulsed first step's current, 0 V here, as the firmware computes it)
    ("differentialPulse", {"startValue": 0.0, "finalValue": 0.1, "stepValue": 0.01, "pulseValue": 0.05,
                           "window": 0.2}, 10,
     lambda t, v, i: abs(i[0]) < 0.01 and np.allclose(i[1:], _ohm_uA(0.06), atol=0.02)),
])
def test_every_test_type_runs_through_the_client(resistor, test, param, n, check):
    t, volt, curr = resistor.run_test(test, param=param, display=None)
    assert len(t) == n
    assert check(np.array(t), np.array(volt), np.array(curr))


def test_a_potato_gives_a_capacitive_cv_loop():
    substrate = make_substrate("potato", 1, dt=1e-3, gain_V=1.0)
    with RodeostatEmulator(substrate, seed=1) as emu:
        dev = potentiostat.Potentiostat(emu.port)
        dev.set_curr_range("10uA")
        t, volt, curr = dev.run_test("cyclic", param={"amplitude": 0.5, "offset": 0.0, "period": 1000,
                                                      "numCycles": 2}, display=None)
        dev.close()
    t, volt, curr = map(np.array, (t, volt, curr))
    up, down = (t > 1.0) & (t < 1.5), t >= 1.5             # second cycle: rising, then falling sweep
    order = np.argsort(volt[down])
    gap = curr[up] - np.interp(volt[up], volt[down][order], curr[down][order])
    # charging current C dV/dt adds on the rising sweep and subtracts on the falling one
    assert np.median(gap) > 0.1 and np.mean(gap > 0) > 0.8
    assert np.ptp(curr) > 0.5                              # µA: the potato conducts


def test_refusals_surface_in_the_client_with_the_firmware_messages(resistor):
    with pytest.raises(IOError, match="samplePeriod value is too small"):
        resistor.set_sample_period(0)
    with pytest.raises(IOError, match="samplePeriod value is too large"):
        resistor.set_sample_period(-5)                    # a negative uint32 wraps, as on the device
    with pytest.raises(IOError, match="period not uint32"):
        resistor.set_param("cyclic", {"period": 1.5})
    with pytest.raises(IOError, match="amplitude not a float"):
        resistor.set_param("cyclic", {"amplitude": "big"})
    with pytest.raises(IOError, match="test not found"):
        resistor.run_test("bogus", display=None)
    with pytest.raises(IOError, match="voltRange, 3V, not found"):
        resistor.send_cmd({"command": "setVoltRange", "voltRange": "3V"})
    with pytest.raises(IOError, match="multiplexer hardware not supported"):
        resistor.set_mux_enabled(True)
    with pytest.raises(IOError, match="step item size!=2"):
        resistor.set_param("chronoamp", {"step": [[100, 0.1, 3]]})
    with pytest.raises(IOError, match="step array too large"):
        resistor.set_param("chronoamp", {"step": [[10, 0.1]] * 3})
    # the firmware clamps the DAC to the selected range instead of refusing a potential
    assert resistor.set_volt(3.0) == pytest.approx(1.0, abs=1e-3)
    assert resistor.get_param("cyclic")["period"] == 1000  # refused settings left the test as it was


def test_stop_from_a_data_callback_ends_the_run_early(resistor):
    seen = []

    def on_data(chan, t, volt, curr):
        seen.append(t)
        if len(seen) == 10:
            resistor.stop_test(rsp=False)

    t, _, _ = resistor.run_test("constant", param={"value": 0.1, "duration": 2000}, on_data=on_data,
                                display=None)
    assert 10 <= len(t) < 30                              # not the 200 samples of the whole test
    time.sleep(0.1)
    resistor.reset_input_buffer()                         # the end marker {} that follows the stop
    assert resistor.get_volt() == pytest.approx(0.1, abs=1e-3)


def test_default_progress_bar_display_and_text_file(resistor, tmp_path, capsys):
    path = tmp_path / "cv.txt"
    t, volt, curr = resistor.run_test("linearSweep", param={"startValue": 0.0, "finalValue": 0.5,
                                                            "duration": 100}, filename=str(path))
    assert "test: linearSweep" in capsys.readouterr().out
    rows = np.loadtxt(path, delimiter=",")
    assert rows.shape == (10, 3) and np.allclose(rows[:, 1], volt, atol=1e-4)


def test_manual_control_and_the_reference_electrode_as_ios_examples_do(resistor):
    """IO Rodeo's ``ref_elect_test.py`` / ``manual_control`` pattern: ranges, set_volt, get_curr, get_ref_volt."""
    for val, rng in [(0.75, "1V"), (1.75, "2V"), (4.75, "5V"), (7.5, "10V")]:
        assert resistor.set_all_elect_connected(True) is True
        assert resistor.set_volt_range(rng) == rng
        resistor.set_curr_range("1000uA")
        assert resistor.set_ref_elect_volt_range(rng) == rng
        for volt in (-val, val):
            applied = resistor.set_volt(volt)
            assert applied == pytest.approx(volt, abs=2 * float(rng[:-1]) / 4095 + 1e-6)  # 12-bit DAC
            assert resistor.get_curr() == pytest.approx(_ohm_uA(applied), abs=0.5)       # 1000 µA / 2^11
            assert resistor.get_ref_volt() == pytest.approx(applied, abs=2 * float(rng[:-1]) / 4095)
    assert resistor.set_all_elect_connected(False) is False
    assert abs(resistor.get_curr()) < 0.5                  # open cell: no current


def test_electrode_switches_auto_connect_and_open_circuit_as_ios_examples_do(resistor):
    """``electrode_connections.py``, ``set_auto_connect.py`` and the OCP part of ``run_sinusoid_ocp_init.py``."""
    assert resistor.get_all_elect_connected() is False and resistor.get_auto_connect() is True
    resistor.set_all_elect_connected(False)
    assert resistor.set_wrk_elect_connected(True) and resistor.set_ref_elect_connected(True)
    assert resistor.get_ctr_elect_connected() is False and resistor.get_all_elect_connected() is False
    assert resistor.set_ref_elect_volt_range("1V") == "1V"
    assert abs(resistor.get_ref_volt()) < 1e-3             # open circuit (no counter electrode)
    assert resistor.set_auto_connect(False) is False
    resistor.set_all_elect_connected(False)
    _, _, curr = resistor.run_test("constant", param={"value": 0.3, "duration": 100}, display=None)
    assert np.allclose(curr, 0.0, atol=0.01)               # not auto-connected: the cell stays open
    resistor.set_all_elect_connected(True)
    _, volt, curr = resistor.run_test("constant", display=None)
    assert np.allclose(curr[5:], _ohm_uA(0.3), atol=0.01)
    assert resistor.get_all_elect_connected() is True      # and stays connected after the test


def test_a_test_beyond_every_range_runs_clamped_as_the_firmware_runs_it(resistor):
    """No range holds 12 V, so ``autoVoltRange`` keeps the range set and the DAC clamps to it; the
    samples still report the requested potential (the firmware's ``sample.volt`` is the test's value)."""
    resistor.set_curr_range("1000uA")
    for volt_range, applied in (("10V", 10.0), ("1V", 1.0)):
        resistor.set_volt_range(volt_range)
        _, volt, curr = resistor.run_test("constant", param={"value": 12.0, "duration": 100}, display=None)
        assert np.all(np.array(volt) == 12.0)
        assert np.allclose(curr[3:], _ohm_uA(applied), atol=0.5)
        assert resistor.get_volt_range() == volt_range
