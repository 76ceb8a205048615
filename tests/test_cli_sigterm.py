"""SIGTERM to a running ``prclab run`` is handled like Ctrl-C: the run stops, the device drives its
outputs to rest and closes, every finished trial is kept, and the process says so (exit 143) - it does
not die silently with the device left open.  A real process, a real signal."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import h5py
import pytest

from prclab.protocols.recording import read_recording
from test_fault_matrix import PROTOCOL


@pytest.mark.slow
@pytest.mark.parametrize("signals", [1, 2], ids=["once", "twice (the second must not cut the ramp)"])
def test_sigterm_stops_prclab_run_and_leaves_the_outputs_at_rest(tmp_path, toy_npz, signals):
    # the MethodSCRIPT emulator is paced in real time: 60 trials of ~0.6 s
    text = PROTOCOL.format(rate=1000.0, electrodes=1, dataset=toy_npz, multiplex="true")
    text = text.replace("max_items = 8", "max_items = 0").replace("rest_s = 0.02", "rest_s = 0.5")
    protocol = tmp_path / "p.toml"
    protocol.write_text(text.replace('spec = "sim:esn"', 'spec = "potentiostat:"'))
    out = tmp_path / "rec.h5"
    proc = subprocess.Popen([sys.executable, "-m", "prclab.cli", "run", str(protocol), "--emulate",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    time.sleep(6.0)  # start-up (~2 s) and a few trials; HDF5 locking keeps readers out meanwhile
    assert proc.poll() is None, proc.communicate()
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    if signals == 2:
        time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    took = time.monotonic() - t0
    print(f"SIGTERM -> exit {proc.returncode} in {took:.2f} s; stderr: {err.strip()[-300:]}")
    assert proc.returncode == 143
    assert "Traceback" not in err and "terminated (SIGTERM)" in err
    assert ("stopping: driving the outputs to rest" in err) == (signals == 2)
    assert took < 5
    with h5py.File(out, "r") as f:
        note = json.loads(f.attrs["sessions"])[-1]
    assert note["stopped"] == "terminated (SIGTERM)" and note["outputs_at_rest"] is True, note
    recording = read_recording(out)
    assert recording.problems == [] and len(recording.trials) >= 1


@pytest.mark.slow
@pytest.mark.parametrize("fault, warned", [("unplug", True), ("garbage", False)])
def test_cli_fault_line_warns_when_outputs_could_not_be_driven(tmp_path, toy_npz, capsys, monkeypatch,
                                                               fault, warned):
    import prclab.cli as cli
    from prclab.cli import main

    text = PROTOCOL.format(rate=1000.0, electrodes=2, dataset=toy_npz, multiplex="false")
    protocol = tmp_path / "p.toml"
    protocol.write_text(text.replace('spec = "sim:esn"', 'spec = "nidaq:Dev1"'))
    made = cli._device_for

    def device_for(*args, **kwargs):
        device = made(*args, **kwargs)
        read, count = device.read, [0]

        def read_then_fail(n):
            count[0] += 1
            if count[0] == 7:  # mid-trial, after a few blocks
                device.emulator.inject(fault)
            return read(n)

        device.read = read_then_fail
        return device

    monkeypatch.setattr(cli, "_device_for", device_for)
    code = main(["run", str(protocol), "--device", "nidaq:Dev1", "--emulate", "--out", str(tmp_path / "r.h5")])
    err = capsys.readouterr().err.strip()
    print(err)
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("prclab: error: nidaq:Dev1")
    assert ("outputs NOT confirmed at rest" in err) == warned
