"""A twin stands in behind the NI-DAQmx emulator: a recording made through the real ``nidaqmx`` client
(potato behind the emulated card) is fitted, and the protocol, its ``[substrate] name`` now the twin file,
is run through the same client and card again.  The card carries the twin's response sample for sample
(the twin re-driven in-process with the recorded stimulus gives the recorded response), and the twin
answers the same stimuli as the potato did."""

from __future__ import annotations

import numpy as np

from prclab.cli import main
from prclab.protocols.recording import read_recording
from prclab.protocols.replay import compare_recordings, replay_recording

from test_rehearsal import cut_down

SMALL = {"rest_s = 1.0": "rest_s = 0.2", "params = { n_outputs = 64 }": "params = { n_outputs = 8 }"}


def _responses(path) -> dict[int, np.ndarray]:
    with read_recording(path) as rec:
        return {t.index: np.asarray(t.response) for t in rec.trials}


def test_a_twin_of_an_ni_emulator_recording_drives_the_ni_emulator(tmp_path, capsys):
    potato = cut_down("spoken_digits_demo.toml", tmp_path, '["0", "1"]', 10, **SMALL)
    assert main(["run", str(potato), "--device", "nidaq:Dev1", "--emulate", "--out", str(tmp_path / "r.h5")]) == 0
    assert main(["twin", "fit", str(tmp_path / "r.h5"), "--out", str(tmp_path / "t.h5")]) == 0
    twin = tmp_path / "twin.toml"   # a relative twin path is read from the protocol file's folder
    twin.write_text(potato.read_text().replace('name = "potato"\nparams = { n_outputs = 8 }', 'name = "twin:t.h5"'))
    assert 'name = "twin:t.h5"' in twin.read_text()
    assert main(["run", str(twin), "--device", "nidaq:Dev1", "--emulate", "--out", str(tmp_path / "r2.h5")]) == 0
    replay_recording(tmp_path / "r2.h5", f"twin:{tmp_path / 't.h5'}", tmp_path / "sim.h5")
    same = compare_recordings(tmp_path / "r2.h5", tmp_path / "sim.h5")
    assert same["n_trials"] == 20 and min(same["correlation"]) > 0.999999
    potato_resp, twin_resp = _responses(tmp_path / "r.h5"), _responses(tmp_path / "r2.h5")
    corr = [np.corrcoef(potato_resp[i].ravel(), twin_resp[i].ravel())[0, 1] for i in potato_resp]
    assert np.median(corr) > 0.9, corr   # measured: 0.97-0.996 on the first trials
