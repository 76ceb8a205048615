"""Recordings in every format prclab reads, through the commands that take a recording: ``prclab report``
on an NWB file and on a brainflow file; ``prclab twin fit`` on an NWB file, a mapping file and a brainflow
file, with each trial's own checksum in the twin's provenance (an exported NWB file keeps the
recording's); ``prclab train`` on a record-only recording (no stimulus channel: a score, no baseline);
and foreign or damaged files as one line and exit 2 from info, train, report, twin fit and export."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from prclab.cli import main

from conftest import one_line_error
from prclab.drivers import SimDevice
from prclab.experiments.recorded import NO_STIMULUS
from prclab.protocols.recording import RecordingWriter, read_recording
from prclab.reservoir import EchoStateNetwork

from test_foreign_formats import brainflow_file, raw_mea, write_mapping
from test_nwb_import import pynwb_file

pytest.importorskip("pynwb")


def small_recording(path, n_trials: int = 16):
    """A prclab recording written directly (an 8-unit ESN's description, 2 labels, a quarter test)."""
    dev = SimDevice(EchoStateNetwork(2, units=8, seed=1), rate_hz=1000.0)
    rng = np.random.default_rng(3)
    with RecordingWriter(path, {"protocol_text": "", "rate_hz": 1000.0, "device": dev.describe()},
                         fsync=False) as w:
        for i in range(n_trials):
            stim = np.zeros((80, 2))
            stim[10:70, i % 2] = 0.2
            response = np.tanh(stim @ rng.normal(0, 1, (2, 8))) + rng.normal(0, 0.01, (80, 8))
            w.append(i, stim, response, 0.1 * i + np.arange(80) / 1000.0, item=i, item_id=str(i),
                     label="ab"[i % 2], split="test" if i % 4 == 3 else "train", repetition=0,
                     stim_start=10, stim_stop=70)
    return path


def provenance_checksums(twin) -> dict:
    from prclab.reservoir.twins.file import read_twin

    return read_twin(twin).provenance["trial_checksums"]


def test_report_takes_an_nwb_file_and_a_brainflow_file(tmp_path, capsys):
    nwb = pynwb_file(tmp_path / "other.nwb", n_trials=16)[0]
    assert main(["report", str(nwb), "--out", str(tmp_path / "r1")]) == 0
    summary = (tmp_path / "r1" / "summary.md").read_text()
    assert "| test accuracy |" in summary and "| baseline accuracy (no reservoir) |" in summary
    path = brainflow_file(tmp_path / "session.csv", n_trials=16)[0]
    assert main(["report", str(path), "--out", str(tmp_path / "r2")]) == 0
    summary = (tmp_path / "r2" / "summary.md").read_text()
    assert "| test accuracy |" in summary and "baseline accuracy" not in summary
    assert f"Warning: {NO_STIMULUS}" in summary
    for name in ("confusion.png", "trials.png", "ridge_parameter.png"):
        assert (tmp_path / "r2" / name).stat().st_size > 1000


def test_train_on_a_recording_without_stimulus_scores_and_says_why_no_baseline(tmp_path, capsys):
    path = brainflow_file(tmp_path / "session.csv", n_trials=16)[0]
    capsys.readouterr()
    assert main(["train", str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] == 1.0 and result["n_test"] == 4  # marker 1 adds 40 uV on Fp1
    assert not any(k.startswith(("baseline_", "quadratic_baseline_")) for k in result)
    assert result["problems"] == [NO_STIMULUS]
    assert main(["train", str(path)]) == 0
    out = capsys.readouterr().out
    assert "test accuracy      1.000" in out and "baseline accuracy" not in out
    assert "no baseline can be computed without a stimulus" in out


def test_twin_fit_takes_a_mapping_file_a_brainflow_file_and_nwb_with_the_trials_checksums(tmp_path, capsys):
    raw_mea(tmp_path, n_trials=12)
    for source in (write_mapping(tmp_path), brainflow_file(tmp_path / "session.csv", n_trials=12)[0],
                   pynwb_file(tmp_path / "other.nwb", n_trials=12)[0]):
        twin = tmp_path / f"{source.stem}_{source.suffix[1:]}_twin.h5"
        assert main(["twin", "fit", str(source), "--out", str(twin), "--model", "linear"]) == 0
        stored = provenance_checksums(twin)
        trials = read_recording(source).trials
        assert len(stored) == len(trials) and all(len(c) == 64 for c in stored.values())
        assert stored == {str(t.index): t.checksum for t in trials}
    assert read_recording(source).trials[0].checksum == trials[0].checksum  # the same file, the same sums


def test_an_exported_nwb_file_keeps_each_trials_checksum(tmp_path, capsys):
    rec = small_recording(tmp_path / "rec.h5")
    with h5py.File(rec, "r") as f:
        stored = {str(int(k)): g.attrs["sha256"] for k, g in f["trials"].items()}
    assert {str(t.index): t.checksum for t in read_recording(rec).trials} == stored
    assert main(["export", str(rec), str(tmp_path / "rec.nwb")]) == 0
    assert {str(t.index): t.checksum for t in read_recording(tmp_path / "rec.nwb").trials} == stored
    for source in (rec, tmp_path / "rec.nwb"):
        twin = tmp_path / f"{source.suffix[1:]}_twin.h5"
        assert main(["twin", "fit", str(source), "--out", str(twin), "--model", "linear"]) == 0
        assert provenance_checksums(twin) == stored


def test_twin_fit_names_the_damaged_trials_it_leaves_out(tmp_path, capsys):
    rec = small_recording(tmp_path / "rec.h5")
    with h5py.File(rec, "r+") as f:
        f["trials/000005"].attrs["label"] = "a"  # it was "b"
    capsys.readouterr()
    assert main(["twin", "fit", str(rec), "--out", str(tmp_path / "twin.h5"), "--model", "linear",
                 "--json"]) == 0
    captured = capsys.readouterr()
    assert "twin fit: warning: trial 000005: label edited or damaged (checksum mismatch)" in captured.err
    assert json.loads(captured.out.strip().splitlines()[0])["n_train"] == 11
    assert "5" not in provenance_checksums(tmp_path / "twin.h5")


def bad_files(tmp_path) -> dict:
    """A file of each kind prclab must refuse in one line: plain HDF5, text named .h5, an NWB file cut
    in half, a comma-separated file, a mapping file that is not TOML."""
    small_recording(tmp_path / "rec.h5", n_trials=8)
    assert main(["export", str(tmp_path / "rec.h5"), str(tmp_path / "rec.nwb")]) == 0
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = np.arange(3)
    (tmp_path / "text.h5").write_text("not a recording\n")
    data = (tmp_path / "rec.nwb").read_bytes()
    (tmp_path / "cut.nwb").write_bytes(data[:len(data) // 2])
    (tmp_path / "commas.csv").write_text("a,b\n1,2\n")
    (tmp_path / "bad.toml").write_text("[source\n")
    return {"plain.h5": "not a prclab recording", "text.h5": "no HDF5 superblock",
            "cut.nwb": "truncated", "commas.csv": "not tab-separated numbers", "bad.toml": "not valid TOML"}


def test_foreign_and_damaged_files_are_one_line_from_every_command(tmp_path, capsys):
    for name, why in bad_files(tmp_path).items():
        path = str(tmp_path / name)
        for argv in (["info", path], ["train", path], ["report", path, "--out", str(tmp_path / "rep")],
                     ["twin", "fit", path, "--out", str(tmp_path / "twin.h5"), "--model", "linear"],
                     ["export", path, str(tmp_path / "out.nwb")]):
            assert why in one_line_error(argv, capsys), argv
    shutil.copy(tmp_path / "rec.nwb", tmp_path / "tampered.nwb")
    with h5py.File(tmp_path / "tampered.nwb", "r+") as f:
        f["intervals/trials/label"][5] = "b" if f["intervals/trials/label"][5] == b"a" else "a"
    for argv in (["info", str(tmp_path / "tampered.nwb")],
                 ["export", str(tmp_path / "tampered.nwb"), str(tmp_path / "again.nwb")]):
        err = one_line_error(argv, capsys)
        assert "000005" in err and "nwb_sha256 mismatch" in err


def test_info_says_which_files_store_checksums(tmp_path, capsys):
    rec = small_recording(tmp_path / "rec.h5", n_trials=8)
    assert main(["export", str(rec), str(tmp_path / "rec.nwb")]) == 0
    path = brainflow_file(tmp_path / "session.csv", n_trials=8)[0]
    capsys.readouterr()
    for source, header, checksums in (
            (rec, "(prclab-recording format 3, prclab ", "8 of 8 trials verified; all verified"),
            (tmp_path / "rec.nwb", "(nwb, prclab ", "8 of 8 trials verified; all verified"),
            (path, "(brainflow)", "none stored in this brainflow file: 8 trials read as they are")):
        assert main(["info", str(source)]) == 0
        out = capsys.readouterr().out
        assert header in out and f"checksums   {checksums}" in out, out
    assert "channels    0 stimulus, 8 response (V)" in out
