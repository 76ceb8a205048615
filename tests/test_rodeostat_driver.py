"""prclab's serial potentiostat driver, ``protocol="rodeostat"``, against the Rodeostat emulator.

The same :class:`PotentiostatDevice` that speaks MethodSCRIPT runs its stimulus as ``multiStep`` tests
(one step per sample, at most 50 per test) over the Rodeostat's JSON lines; ``emulated_rodeostat`` is
the contract suite's factory (``tests/test_device_contract.py``).  Faults injected into the emulator
must surface as a one-line DeviceError naming the port within 2 s.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import pytest

from prclab.drivers import DeviceError, DeviceRequest
from prclab.drivers.potentiostat import PotentiostatDevice
from prclab.hardware_sims.rodeostat import RodeostatEmulator
from prclab.protocols.rig import make_rig
from prclab.reservoir import make_substrate

RATE_HZ = 100.0
R_OHM = 100e3


class Resistor:
    """Output = input potential: with ``gain_A = 1/R`` the emulated cell is a resistor."""

    n_inputs = n_outputs = 1
    dt = 1e-3

    def reset(self, seed=None) -> None:
        """Stateless."""

    def run(self, u):
        return np.asarray(u, dtype=np.float64)


@contextlib.contextmanager
def emulated_rodeostat():
    """Contract-suite factory: an unopened Rodeostat-protocol device on a running emulator."""
    substrate = make_substrate("potato", 1, dt=1e-3, gain_V=1.0)
    with RodeostatEmulator(substrate, seed=3) as emu:
        yield PotentiostatDevice(emu.port, 1000.0, protocol="rodeostat", current_range_A=10e-6)


@pytest.fixture
def resistor():
    with RodeostatEmulator(Resistor(), gain_A=1.0 / R_OHM) as emu:
        yield emu


def test_stimulus_runs_as_multistep_tests_and_currents_follow_ohms_law(resistor):
    potentials = np.round(np.linspace(-0.5, 0.5, 120), 4)[:, None]
    with PotentiostatDevice(resistor.port, RATE_HZ, protocol="rodeostat", current_range_A=10e-6) as dev:
        assert dev.firmware == "10V_microAmpV0.2 FW0.1.0" and dev.protocol.range_name == "10uA"
        assert dev.samples_per_script == 50 and dev.baudrate == 115200
        start = time.monotonic()
        dev.write(potentials)
        samples, t = dev.read(120)
        wall = time.monotonic() - start
    assert samples.shape == (120, 1)
    np.testing.assert_allclose(t, np.arange(120) / RATE_HZ)
    # sample k is the current at the end of step k (the firmware samples at t = (k+1) P)
    np.testing.assert_allclose(samples[:, 0], potentials[:, 0] / R_OHM, atol=5e-8)
    assert 1.1 < wall < 4.0                           # 1.2 s of stimulus, paced (3 tests)
    assert resistor.tests_run == 3 + 1                # and the ramp to rest at close


def test_spec_selects_the_rodeostat_emulator_and_refuses_what_the_instrument_cannot_do():
    request = DeviceRequest(n_stimulus=1, rate_hz=RATE_HZ, emulate=True, seed=1)
    with make_rig("potentiostat:/dev/ttyACM0?protocol=rodeostat", request) as dev:
        assert dev.describe()["protocol"] == "rodeostat"
        assert isinstance(dev.emulator, RodeostatEmulator)
        dev.write(np.zeros((10, 1)))
        assert dev.read(10)[0].shape == (10, 1)
    with pytest.raises(DeviceError, match="whole 1-1000 ms"):
        PotentiostatDevice("/dev/null", 300.0, protocol="rodeostat")
    with pytest.raises(DeviceError, match="> 50"):
        PotentiostatDevice("/dev/null", RATE_HZ, protocol="rodeostat", samples_per_script=60)


def test_a_range_the_variant_lacks_is_a_one_line_error(resistor):
    with pytest.raises(DeviceError, match="no current range of 10V_microAmpV0.2 holds 0.02 A") as info:
        PotentiostatDevice(resistor.port, RATE_HZ, protocol="rodeostat", current_range_A=20e-3).open()
    assert resistor.port in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("fault, message", [
    ("unplug", r"disconnected"),
    ("stall", r"(no reply|truncated line) within 1 s"),
    ("garbage", r"malformed sample line"),
    ("drop", r"test ended after 49 of 50 samples"),
])
def test_injected_fault_becomes_one_line_device_error_within_2_s(resistor, fault, message):
    dev = PotentiostatDevice(resistor.port, RATE_HZ, protocol="rodeostat").open()
    dev.write(np.full((250, 1), 0.1))
    dev.read(50)  # first test fine; the second already runs
    resistor.inject(fault)
    start = time.monotonic()
    with pytest.raises(DeviceError, match=message) as info:
        dev.read(200)
    assert time.monotonic() - start < 2.0
    assert resistor.port in str(info.value) and "\n" not in str(info.value)
    assert not dev.is_open
    dev.close()
