"""Resume and the safety monitor (issue 10, S3): the monitor continues from every sample ever delivered
(the interrupted trial's played part included), the lead-in ramps from the outputs' actual level, and the
start-of-run amplitude ramp is applied again."""

from __future__ import annotations

import re

import h5py
import numpy as np
import pytest

from prclab.drivers import DeviceError
from prclab.protocols.protocol import parse_protocol
from prclab.protocols.runner import prepare, run_protocol, safety_limits
from prclab.protocols.safety import CHANNEL_KEYS, GLOBAL_KEYS, SafetyMonitor
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


# -- the stop's ramp to rest is accounted by the monitor; a limit it still breaks is stated -------------
def _stop_after(tmp_path, level_V: float, n: int, max_phase_C: float) -> dict:
    import json

    from prclab.drivers import SimDevice
    from prclab.protocols.recording import RecordingWriter
    from prclab.protocols.runner import _safe_stop
    from prclab.protocols.safety import resolve_limits
    from prclab.reservoir import EchoStateNetwork

    table = {**{k: d for k, (_, d) in CHANNEL_KEYS.items()}, **{k: d for k, (_, d) in GLOBAL_KEYS.items()},
             "impedance_ohm": 1e3, "max_slew_V_per_s": 10.0, "max_charge_per_phase_C": max_phase_C}
    limits = resolve_limits(table, 1, 1000.0, (-0.5, 0.5), 0.0)
    monitor = SafetyMonitor(limits)
    device = SimDevice(EchoStateNetwork(1, units=5, seed=0), rate_hz=1000.0)
    device.set_rest(limits.rest_V, limits.max_slew_V_per_s)
    # a block that climbs to level_V within the slew limit, then holds it (one positive phase)
    block = np.minimum(np.arange(1, n + 1) * 0.009, level_V)[:, None]
    writer = RecordingWriter(tmp_path / "stop.h5", {"rate_hz": 1000.0})
    with writer, device:
        with pytest.raises(KeyboardInterrupt), _safe_stop(device, writer, monitor):
            monitor.check(block, lambda row: (0, row))
            device.write(block)
            raise KeyboardInterrupt
        return json.loads(writer._f.attrs["sessions"])[-1]


def test_a_stop_ramp_within_every_limit_is_noted_plain(tmp_path):
    note = _stop_after(tmp_path, 0.4, 100, max_phase_C=1e-3)
    assert note["outputs_at_rest"] and "stop_ramp_violation" not in note


def test_a_stop_ramp_that_passes_a_phase_charge_limit_is_stated(tmp_path):
    # 100 samples reaching 0.4 V carry 3.2e-5 C; the 40 ms ramp down at 10 V/s adds about 8e-6 C
    note = _stop_after(tmp_path, 0.4, 100, max_phase_C=3.5e-5)
    assert note["outputs_at_rest"]
    assert re.search(r"stop ramp, channel 0, sample \d+: phase charge .* above 3\.5e-05 C",
                     note["stop_ramp_violation"])
