"""The runner against each emulated device with each fault injected mid-run.

For every (device, fault) pair: the run stops within 2 s of the fault with one ``DeviceError`` line
naming the device, never hangs, and the recording holds every trial finished before the fault, intact.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from prclab.drivers import DeviceError, DeviceRequest
from prclab.protocols.rig import make_rig
from prclab.hardware_sims import FAULTS
from prclab.protocols.protocol import parse_protocol
from prclab.protocols.recording import read_recording
from prclab.protocols.runner import run_protocol


PROTOCOL = """
[protocol]
name = "fault-matrix"
sample_rate_hz = {rate}
seed = 1
order = "sequential"
block_samples = 50

[device]
spec = "sim:esn"   # the tests hand the emulated device to the runner; the substrate behind it is esn

[substrate]
name = "esn"
params = {{ units = 20 }}

[stimulus]
electrodes = {electrodes}
low_V = -0.5
high_V = 0.5

[task]
dataset = "{dataset}"
max_items = 8

[encoder]
samples_per_frame = 2
multiplex = {multiplex}

[timing]
washout_s = 0.02
rest_s = 0.02
"""

DEVICES = {
    # spec, stimulus electrodes, multiplexed encoder, rate
    "brainflow": ("brainflow:cyton:", 2, "false", 250.0),
    "nidaq": ("nidaq:Dev1", 2, "false", 1000.0),
    "potentiostat": ("potentiostat:", 1, "true", 1000.0),
    "potentiostat:rodeostat": ("potentiostat:?protocol=rodeostat", 1, "true", 1000.0),
}


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("kind", sorted(DEVICES))
def test_fault_stops_the_run_fast_and_keeps_finished_trials(tmp_path, toy_npz, kind, fault):
    spec, electrodes, multiplex, rate = DEVICES[kind]
    text = PROTOCOL.format(rate=rate, electrodes=electrodes, dataset=toy_npz, multiplex=multiplex)
    protocol = parse_protocol(text)
    request = DeviceRequest(n_stimulus=electrodes, rate_hz=rate, stimulus_range_V=(-0.5, 0.5),
                            substrate="esn", substrate_params={"units": 20}, emulate=True, seed=1)
    device = make_rig(spec, request)
    out = tmp_path / "rec.h5"
    injected_at: list[float] = []

    def after_trial(trial):
        if trial.index == 2:
            device.emulator.inject(fault)
            injected_at.append(time.monotonic())

    outcome: dict = {}

    def run():
        try:
            run_protocol(protocol, device, out, progress=after_trial)
        except Exception as exc:  # noqa: BLE001 - the test inspects whatever came out
            outcome["error"] = exc
        outcome["stopped"] = time.monotonic()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), f"{kind}/{fault}: the runner hung"
    error = outcome.get("error")
    assert isinstance(error, DeviceError), f"{kind}/{fault}: expected DeviceError, got {error!r}"
    message = str(error)
    assert "\n" not in message and kind.split(":")[0] in message.lower()
    assert outcome["stopped"] - injected_at[0] < 2.0, f"{kind}/{fault} took too long: {message}"
    recording = read_recording(out)
    assert recording.problems == []
    indices = [t.index for t in recording.trials]
    assert indices[:3] == [0, 1, 2] and indices == list(range(len(indices)))
    assert all(np.all(np.isfinite(t.response)) for t in recording.trials)
    print(f"{kind}/{fault}: {len(indices)} trials kept; {message}")
