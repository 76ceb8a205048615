"""One contract suite that every Device passes: simulated, emulated hardware, replayed.

Each entry of ``FACTORIES`` is a context manager that yields an *unopened* device and tears down
whatever backs it (an emulator process, a pty, a server) afterwards.  Add a driver by adding a factory.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from prclab.drivers import Device, DeviceError, SimDevice
from prclab.reservoir import EchoStateNetwork
from test_brainflow_emulated import emulated_cyton, synthetic_board
from test_nidaq_emulated import emulated_nidaq
from test_potentiostat_emulated import emulated_potentiostat
from test_replay import replay_of_a_sim_recording


@contextlib.contextmanager
def sim_device():
    yield SimDevice(EchoStateNetwork(2, units=20, seed=1), rate_hz=1000.0)


FACTORIES = [pytest.param(sim_device, id="sim"),
             pytest.param(emulated_potentiostat, id="potentiostat-methodscript"),
             pytest.param(emulated_nidaq, id="nidaq-grpc"),
             pytest.param(replay_of_a_sim_recording, id="replay"),
             pytest.param(emulated_cyton, id="brainflow-cyton"),
             pytest.param(synthetic_board, id="brainflow-synthetic")]


@pytest.fixture(params=FACTORIES)
def device(request):
    with request.param() as dev:
        yield dev
        dev.close()


def _mid_block(dev: Device, n: int) -> np.ndarray:
    """A mid-range stimulus block; a device that accepts only one stimulus (a replay) names it."""
    if hasattr(dev, "expected_stimulus"):
        return dev.expected_stimulus(n)
    lo, hi = dev.channels.stimulus_low, dev.channels.stimulus_high
    t = np.linspace(0, 1, n)[:, None]
    return lo + (hi - lo) * (0.5 + 0.4 * np.sin(2 * np.pi * 5 * t + np.arange(len(lo))))


def test_channels_are_described(device):
    ch = device.channels
    assert ch.rate_hz > 0
    assert len(ch.stimulus) >= 1 and len(ch.response) >= 1
    for c in ch.stimulus + ch.response:
        assert c.name and c.unit and c.low < c.high
    desc = device.describe()
    assert desc["rate_hz"] == ch.rate_hz and len(desc["response"]) == len(ch.response)


def test_context_manager_opens_and_closes(device):
    with device as dev:
        assert dev.is_open
    assert not device.is_open
    with pytest.raises(DeviceError):
        device.read(1)


def test_write_read_blocks_with_monotone_timestamps(device):
    n = int(device.channels.rate_hz * 0.2)
    with device as dev:
        times = []
        for _ in range(3):
            dev.write(_mid_block(dev, n))
            samples, t = dev.read(n)
            assert samples.shape == (n, len(dev.channels.response))
            assert t.shape == (n,)
            assert np.all(np.isfinite(samples))
            times.append(t)
        t = np.concatenate(times)
        assert np.all(np.diff(t) > 0)
        # the clock runs at the stated rate, within 5 %
        span = (t[-1] - t[0]) / (len(t) - 1)
        assert abs(span * dev.channels.rate_hz - 1) < 0.05


def test_marks_land_in_the_response_stream(device):
    n = int(device.channels.rate_hz * 0.1)
    with device as dev:
        dev.write(_mid_block(dev, n))
        dev.read(n)
        dev.mark("trial:1")
        dev.write(_mid_block(dev, n))
        dev.read(n)
        events = dev.events()
    labels = [label for _, label in events]
    assert "trial:1" in labels
    index = dict((label, i) for i, label in events)["trial:1"]
    assert n - 2 <= index <= n + int(0.05 * device.channels.rate_hz)


def test_out_of_range_stimulus_is_refused(device):
    with device as dev:
        block = _mid_block(dev, 10)
        block[3, 0] = dev.channels.stimulus_high[0] + 1.0
        with pytest.raises(DeviceError, match="outside"):
            dev.write(block)
        with pytest.raises(DeviceError):
            dev.write(np.zeros((4, len(dev.channels.stimulus) + 1)))


def test_clean_close_after_an_error(device):
    with pytest.raises(RuntimeError):
        with device as dev:
            dev.write(_mid_block(dev, 10))
            raise RuntimeError("user code failed mid-run")
    assert not device.is_open
    with device as dev:  # reopens cleanly
        dev.write(_mid_block(dev, 10))
        samples, _ = dev.read(10)
        assert samples.shape[0] == 10
