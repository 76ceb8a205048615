"""Replay and resume identity (issue 10, R5, R6): a replay refuses a stimulus that is not the recorded
one, naming trial and sample; a resume refuses another dataset content, encoder fit or device, naming
what differs; and resume counts trials without reading the recording through."""

from __future__ import annotations

import numpy as np
import pytest

from prclab.cli import main
from prclab.protocols.recording import count_intact_trials, read_recording

from test_spine import PROTOCOL, write_protocol


@pytest.fixture
def toy_run(tmp_path, toy_npz):
    proto = write_protocol(tmp_path, toy_npz)
    rec = tmp_path / "rec.h5"
    assert main(["run", str(proto), "--out", str(rec)]) == 0
    return proto, rec, toy_npz


def test_replay_under_a_changed_protocol_is_refused_naming_trial_and_sample(toy_run, tmp_path, capsys):
    _, rec, toy_npz = toy_run
    changed = tmp_path / "changed"
    changed.mkdir()
    (changed / toy_npz.name).write_bytes(toy_npz.read_bytes())
    proto = write_protocol(changed, changed / toy_npz.name, PROTOCOL.replace("seed = 3", "seed = 4"))
    out = tmp_path / "via_replay.h5"
    capsys.readouterr()
    assert main(["run", str(proto), "--out", str(out), "--device", f"replay:{rec}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "the stimulus differs from the recording at trial 000000, sample " in err
    # nothing paired with other items was kept as a trial
    if out.exists():
        assert len(read_recording(out).trials) == 0


def test_resume_refuses_another_dataset_content_naming_it(toy_run, capsys):
    proto, rec, toy_npz = toy_run
    with np.load(toy_npz) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["X"] = arrays["X"] * 1.01  # a re-exported dataset behind the same path
    np.savez(toy_npz, **arrays)
    capsys.readouterr()
    assert main(["run", str(proto), "--resume", str(rec)]) == 2
    err = capsys.readouterr().err
    assert "different dataset content" in err


def test_resume_refuses_another_device_naming_it(toy_run, capsys):
    proto, rec, _ = toy_run
    capsys.readouterr()
    # an emulated NI card backed by the same [substrate]: same model, another device
    assert main(["run", str(proto), "--resume", str(rec), "--device", "nidaq:Dev1", "--emulate"]) == 2
    assert "different device" in capsys.readouterr().err


def test_resume_with_the_same_everything_still_works_and_counts_cheaply(toy_run):
    proto, rec, _ = toy_run
    assert count_intact_trials(rec) == 60
    assert main(["run", str(proto), "--resume", str(rec)]) == 0
    assert len(read_recording(rec).trials) == 60
    identity = read_recording(rec).attrs["identity"]
    assert set(identity) == {"protocol_sha256", "dataset_sha256", "encoder", "device"}


def test_replay_output_collisions_are_refused_and_the_recording_kept(toy_run, tmp_path, capsys):
    from prclab.protocols.replay import replay_recording
    from prclab.errors import PrclabError

    _, rec, _ = toy_run
    before = rec.read_bytes()
    for args in (["--out", str(tmp_path / "NAME.png")], ["--out", str(rec)],
                 ["--out", str(tmp_path / "new.h5"), "--plot", str(rec)],
                 ["--out", str(tmp_path / "new2.h5"), "--plot", str(tmp_path / "new2.h5")]):
        capsys.readouterr()
        assert main(["replay", str(rec), "--substrate", "esn", *args]) == 2, args
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert rec.read_bytes() == before
    with pytest.raises(PrclabError, match="is the recording being replayed"):
        replay_recording(rec, "esn", rec)
