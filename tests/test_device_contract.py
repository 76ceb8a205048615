"""The Device contract kit (``prclab.drivers.checks``) run on every device: each registered kind through
the rig (emulated where it is hardware), the drivers as a user builds them, a two-device rig, and a
tiny example kind that stays in the tests (``example_kind.py``: a driver, its emulator, one registry
entry - all that adding a kind takes).

Each entry of ``FACTORIES`` is a context manager that yields an *unopened* device and tears down whatever
backs it afterwards.  ``REGISTERED`` must name every kind of ``DEVICE_KINDS``: a new kind is checked by
adding it there.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import pytest

import example_kind
from prclab.drivers import DeviceRequest, SimDevice, capabilities
from prclab.drivers.checks import DEVICE_CHECKS, check_device, mid_range
from prclab.protocols import rig
from prclab.protocols.rig import DEVICE_KINDS, make_rig
from prclab.reservoir import EchoStateNetwork
from test_brainflow_emulated import emulated_cyton, synthetic_board
from test_nidaq_emulated import emulated_nidaq
from test_potentiostat_emulated import emulated_potentiostat
from test_rodeostat_driver import emulated_rodeostat
from test_replay import replay_of_a_sim_recording, write_sim_recording

ESN = {"substrate": "esn", "substrate_params": {"units": 20}, "seed": 1, "stimulus_range_V": (-0.5, 0.5)}


def _rig(spec: str, **request):
    """A factory of the rig ``spec`` names, emulated, on a small ESN."""
    @contextlib.contextmanager
    def factory():
        yield make_rig(spec, DeviceRequest(**{**ESN, "emulate": True, **request}))
    return factory


@contextlib.contextmanager
def replay_rig():
    with tempfile.TemporaryDirectory() as tmp:
        path = write_sim_recording(Path(tmp) / "rec.h5")
        yield make_rig(f"replay:{path}", DeviceRequest(n_stimulus=2, rate_hz=1000.0, emulate=True))


@contextlib.contextmanager
def sim_device():
    yield SimDevice(EchoStateNetwork(2, units=20, seed=1), rate_hz=1000.0)


REGISTERED = {"sim": _rig("sim:esn", n_stimulus=2, rate_hz=1000.0),
              "potentiostat": _rig("potentiostat:/dev/ttyACM0", n_stimulus=1, rate_hz=1000.0),
              "nidaq": _rig("nidaq:Dev1", n_stimulus=2, rate_hz=1000.0),
              "replay": replay_rig,
              "brainflow": _rig("brainflow:cyton:/dev/ttyUSB0", n_stimulus=2, rate_hz=250.0)}
FACTORIES = [*(pytest.param(f, id=f"rig-{kind}") for kind, f in REGISTERED.items()),
             pytest.param(_rig("nidaq:Dev1+brainflow:cyton:/dev/ttyUSB0", n_stimulus=2, rate_hz=250.0),
                          id="rig-nidaq+cyton"),
             pytest.param(sim_device, id="sim"),
             pytest.param(emulated_potentiostat, id="potentiostat-methodscript"),
             pytest.param(emulated_rodeostat, id="potentiostat-rodeostat"),
             pytest.param(emulated_nidaq, id="nidaq-grpc"),
             pytest.param(replay_of_a_sim_recording, id="replay"),
             pytest.param(emulated_cyton, id="brainflow-cyton"),
             pytest.param(synthetic_board, id="brainflow-synthetic")]


def _stimulus(device, n):
    """What to write next: a replay accepts only its recorded stimulus, and names it."""
    replay = getattr(device, "recorder", device)
    return replay.expected_stimulus(n) if hasattr(replay, "expected_stimulus") else mid_range(device, n)


def test_every_registered_kind_is_checked():
    assert set(REGISTERED) == set(DEVICE_KINDS)


@pytest.mark.parametrize("check", DEVICE_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("factory", FACTORIES)
def test_device_passes_the_contract_kit(factory, check):
    check(factory, _stimulus)


@pytest.mark.parametrize("kind", sorted(REGISTERED))
def test_a_kind_can_do_what_its_registry_entry_declares(kind):
    with REGISTERED[kind]() as device:
        assert DEVICE_KINDS[kind].capabilities <= capabilities(device)


def test_a_new_kind_is_a_driver_its_emulator_and_one_registry_entry(monkeypatch):
    monkeypatch.setitem(rig.DEVICE_KINDS, "echobox", example_kind.KIND)
    factory = _rig("echobox:/dev/ttyUSB3", n_stimulus=2, rate_hz=100.0)
    check_device(factory)
    with factory() as device:
        assert isinstance(device.stimulator, example_kind.EchoBoxDevice) and device.emulator.port == ""
        assert capabilities(device) == example_kind.KIND.capabilities


def test_a_failed_check_names_the_check_and_the_device():
    class Leaky(SimDevice):
        def _write(self, block):  # accepts blocks wider than its channels
            super()._write(block[:, :len(self.channels.stimulus)])

        def write(self, block):
            self._write(block)

    @contextlib.contextmanager
    def leaky():
        yield Leaky(EchoStateNetwork(2, units=5, seed=1), rate_hz=1000.0)

    with pytest.raises(AssertionError, match=r"refusal on sim: accepted a \(10, 2\) block"):
        check_device(leaky)
