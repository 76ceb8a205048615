"""Resume and the safety monitor (issue 10, S3): the monitor continues from every sample ever delivered
(the interrupted trial's played part included), the lead-in ramps from the outputs' actual level, and the
start-of-run amplitude ramp is applied again."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from drivers import DeviceError
from protocols.protocol import parse_protocol
from protocols.runner import prepare, run_protocol, safety_limits
from protocols.safety import SafetyMonitor
from test_safety_resume_fuzz import PROTOCOL, FuzzDevice, _toy

VALUES = dict(seed=3, block=4, low=-0.5, high=0.5, amplitude=0.5, spf=3, washout=0.0, impedance=1e3,
              slew="60.0", charge="1e-3", living="true", dc="1e-3", window=0.1, ramp=0.2, channels="")


class NoRestDevice(FuzzDevice):
    """Its outputs cannot be confirmed at rest on a stop (the line went dead): they hold the last value."""

    def _rest(self, start_V):
        raise DeviceError("fuzz: no answer to the ramp to rest")


def _setup(tmp_path, **over):
    _toy(tmp_path, 0.5, np.random.default_rng(4))
    text = PROTOCOL.format(**{**VALUES, **over})
    (tmp_path / "p.toml").write_text(text)
    protocol = parse_protocol(text, tmp_path / "p.toml")
    return protocol, prepare(protocol)


@pytest.mark.parametrize("device_class", [FuzzDevice, NoRestDevice])
def test_resume_continues_from_everything_delivered_and_ramps_from_the_outputs_level(tmp_path, device_class):
    protocol, prepared = _setup(tmp_path)
    trials, lim = prepared[2], safety_limits(protocol)
    first: list = []
    crash_at = len(trials[0].waveform) // 4 + len(trials[1].waveform) // 8 + 1  # inside trial 1 or 2
    with pytest.raises(DeviceError):
        run_protocol(protocol, device_class(first, crash_at), tmp_path / "r.h5", prepared=prepared)
    played = np.concatenate(first)
    with h5py.File(tmp_path / "r.h5", "r") as f:
        log = f["safety_delivered"][:int(f["safety_delivered"].attrs["n"])]
        done = len(f["trials"])
    runner_part = played if device_class is NoRestDevice else played[:len(log)]
    np.testing.assert_array_equal(log, runner_part)   # the log holds the interrupted trial's part too
    assert len(log) > sum(len(t.waveform) for t in trials[:done])
    second: list = []
    run_protocol(protocol, device_class(second), tmp_path / "r.h5", resume=True, prepared=prepared)
    resumed = np.concatenate(second)
    last = played[-1]
    start = lim.rest_V if device_class is FuzzDevice else last   # rested, or holding the last value
    step = np.abs(resumed[0] - start).max() * lim.rate_hz
    assert step <= lim.max_slew_V_per_s.min() + 1e-9             # the lead-in starts at the outputs' level
    with h5py.File(tmp_path / "r.h5", "r") as f:
        n_log = int(f["safety_delivered"].attrs["n"])
    lead = resumed[:n_log - len(log) - sum(len(t.waveform) for t in trials[done:])]  # before the close ramp
    assert len(lead) >= lim.dc_window and np.allclose(lead[-lim.dc_window:], lim.rest_V)  # DC window held
    with h5py.File(tmp_path / "r.h5", "r") as f:
        again = f["trials"][f"{done:06d}"]["stimulus"][()]
    k = min(lim.ramp, len(again))
    np.testing.assert_allclose(again[:k], lim.rest_V + (trials[done].waveform[:k] - lim.rest_V) *
                               ((np.arange(k) + 1) / lim.ramp)[:, None])   # the ramp is applied again
    whole = SafetyMonitor(lim)                                     # and the whole delivered stream passes
    whole.check(np.concatenate([played, resumed]), lambda r: (0, r))
