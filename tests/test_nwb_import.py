"""NWB in: prclab -> NWB -> prclab gives the same trials and the same readout accuracy (a simulated run
and a run through the NI emulator and the real nidaqmx client); ``train``, ``run --device replay:``,
``replay`` and ``twin fit`` take an NWB file; an NWB file made by pynwb directly (not by prclab) with an
ElectricalSeries, a stimulus TimeSeries and a trials table trains; a truncated, tampered or foreign
file is one line and exit 2."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import h5py
import numpy as np
import pytest

from prclab.cli import main

from conftest import one_line_error
from prclab.protocols.recording import read_recording

from test_nwb_export import sim_run, toy_dataset  # noqa: F401 - the module fixture, shared
from test_spine import write_protocol

pytest.importorskip("pynwb")


def train_json(path, capsys) -> dict:
    capsys.readouterr()
    assert main(["train", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_round_trip_gives_the_same_trials_and_accuracy(sim_run, capsys):
    _, rec_path, nwb = sim_run
    a, b = read_recording(rec_path), read_recording(nwb)
    assert b.problems == [] and len(a.trials) == len(b.trials) == 60
    for x, y in zip(a.trials, b.trials):
        assert (x.index, x.item, x.item_id, x.label, x.split, x.stim_start, x.stim_stop) == \
               (y.index, y.item, y.item_id, y.label, y.split, y.stim_start, y.stim_stop)
        np.testing.assert_array_equal(np.asarray(x.stimulus), y.stimulus)
        np.testing.assert_array_equal(np.asarray(x.response, np.float32), y.response)
        np.testing.assert_allclose(np.asarray(x.timestamps), y.timestamps, atol=1e-9)
    assert b.attrs["protocol_text"] == a.attrs["protocol_text"] and b.attrs["device"] == a.attrs["device"]
    first, second = train_json(rec_path, capsys), train_json(nwb, capsys)
    for key in ("accuracy", "baseline_accuracy", "features", "n_train", "n_test"):
        assert first[key] == second[key], key


def test_replay_device_replay_and_twin_fit_take_the_nwb_file(sim_run, tmp_path, capsys):
    proto, rec_path, nwb = sim_run
    again = tmp_path / "again.h5"
    assert main(["run", str(proto), "--out", str(again), "--device", f"replay:{nwb}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == train_json(rec_path, capsys)["accuracy"]
    sim, plot = tmp_path / "sim.h5", tmp_path / "cmp.png"
    assert main(["replay", str(nwb), "--substrate", "esn", "--out", str(sim), "--plot", str(plot),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mean_correlation"] > 0.9999
    assert main(["twin", "fit", str(nwb), "--out", str(tmp_path / "twin.h5"), "--model", "linear",
                 "--json"]) == 0
    fit = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert (fit["n_train"], fit["n_heldout"]) == (42, 18)


def test_a_run_through_the_ni_emulator_survives_the_round_trip(tmp_path, capsys):
    """Recorded by the NI emulator through nidaqmx's gRPC client (``--emulate``), exported, read back."""
    proto = write_protocol(tmp_path, toy_dataset(tmp_path / "toy.npz"))
    rec, nwb = tmp_path / "ni.h5", tmp_path / "ni.nwb"
    assert main(["run", str(proto), "--device", "nidaq:Dev1", "--emulate", "--out", str(rec)]) == 0
    assert main(["export", str(rec), str(nwb)]) == 0
    first, second = train_json(rec, capsys), train_json(nwb, capsys)
    assert first["accuracy"] == second["accuracy"] and first["n_test"] == second["n_test"] == 18
    assert read_recording(nwb).attrs["device"]["device"] == read_recording(rec).attrs["device"]["device"]


def pynwb_file(path, n_trials: int = 48, rate: float = 1000.0, n: int = 120, gap: int = 30,
               label_column: str = "label", timestamps: bool = False, stimulus: bool = True,
               extra_trial: tuple | None = None, transposed: bool = False):
    """An NWB file written with pynwb alone: int16 ElectricalSeries (4 channels, 0.5 uV per count),
    a 2-channel stimulus TimeSeries starting 0.1 s after the response, and a trials table with a
    ``label`` column (no split); or with ``timestamps`` instead of a rate, no stimulus, one more trial
    (``extra_trial``: start, stop seconds), the series stored channels x time.  Label ``hi`` drives channel 0 around +0.2 V, ``lo`` around -0.2 V
    (a 20 Hz ripple of random phase on top); the response is the stimulus smoothed, mixed onto 4
    channels through a tanh, plus noise."""
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    from pynwb.ecephys import ElectricalSeries
    from pynwb.file import Subject

    rng = np.random.default_rng(5)
    total = n_trials * (n + gap) + 200
    stim = np.zeros((total, 2))
    labels = np.array(["hi", "lo"])[rng.permutation(np.arange(n_trials) % 2)]
    starts = 100 + np.arange(n_trials) * (n + gap)
    for a, label in zip(starts, labels):
        t = np.arange(n) / rate
        stim[a:a + n, 0] = (0.2 if label == "hi" else -0.2) + 0.1 * np.sin(2 * np.pi * 20 * t + rng.uniform(0, 6))
        stim[a:a + n, 1] = rng.uniform(-0.1, 0.1, n)
    smooth = np.apply_along_axis(lambda c: np.convolve(c, np.ones(8) / 8, "same"), 0, stim)
    volts = np.tanh(smooth @ rng.normal(0, 1, (2, 4))) * 5e-3 + rng.normal(0, 1e-4, (total, 4))
    counts = np.rint(volts / 0.5e-6).astype(np.int16)
    f = NWBFile(session_description="synthetic MEA session", identifier="made-by-pynwb",
                session_start_time=dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc),
                subject=Subject(subject_id="s1", species="Homo sapiens", sex="U", age="P30D"))
    device = f.create_device(name="mea")
    group = f.create_electrode_group("g", description="array", location="culture", device=device)
    for i in range(4):
        f.add_electrode(group=group, location="culture", rel_x=200.0 * i, rel_y=0.0)
    timing = {"timestamps": np.arange(total) / rate} if timestamps else {"rate": rate, "starting_time": 0.0}
    f.add_acquisition(ElectricalSeries(name="ElectricalSeries", data=counts.T if transposed else counts,
                                       conversion=0.5e-6,
                                       electrodes=f.create_electrode_table_region(list(range(4)), "all"),
                                       **timing))
    if stimulus:
        f.add_stimulus(TimeSeries(name="drive", data=stim[100:], unit="volts", rate=rate, starting_time=0.1))
    f.add_trial_column(label_column, "stimulus class")
    for a, label in zip(starts, labels):
        f.add_trial(start_time=a / rate, stop_time=(a + n) / rate, **{label_column: label})
    if extra_trial:
        f.add_trial(start_time=extra_trial[0], stop_time=extra_trial[1], **{label_column: "hi"})
    with NWBHDF5IO(str(path), "w") as io:
        io.write(f)
    return path, stim, counts, starts, labels


def test_an_nwb_file_made_by_pynwb_trains(tmp_path, capsys):
    path, stim, counts, starts, labels = pynwb_file(tmp_path / "other.nwb")
    rec = read_recording(path)
    assert [t.label for t in rec.trials] == list(labels)
    splits = [t.split for t in rec.trials]
    assert splits.count("test") == 12 and {t.label for t in rec.trials if t.split == "test"} == {"hi", "lo"}
    t = rec.trials[3]
    np.testing.assert_array_equal(t.stimulus, stim[starts[3]:starts[3] + 120])
    np.testing.assert_allclose(t.response, counts[starts[3]:starts[3] + 120] * 0.5e-6)
    assert rec.attrs["rate_hz"] == 1000.0 and len(rec.attrs["device"]["response"]) == 4
    result = train_json(path, capsys)
    assert result["n_test"] == 12 and result["accuracy"] > 0.9


def test_truncated_tampered_and_foreign_nwb_files_are_one_line(sim_run, tmp_path, capsys):
    _, _, nwb = sim_run
    cut = tmp_path / "cut.nwb"
    cut.write_bytes(nwb.read_bytes()[:len(nwb.read_bytes()) // 2])
    assert "truncated" in one_line_error(["train", str(cut)], capsys)

    tampered = tmp_path / "tampered.nwb"
    shutil.copy(nwb, tampered)
    with h5py.File(tampered, "r+") as f:
        f["intervals/trials/label"][5] = "tampered"
    rec = read_recording(tampered)
    assert len(rec.trials) == 59 and "nwb_sha256 mismatch" in rec.problems[0] and "000005" in rec.problems[0]
    err = one_line_error(["export", str(tampered), str(tmp_path / "again.nwb")], capsys)
    assert "000005" in err and "nwb_sha256" in err
    original = read_recording(nwb).trials
    with h5py.File(tampered, "r+") as f:  # the label put back, one sample of trial 7 edited
        f["intervals/trials/label"][5] = original[5].label
        f["acquisition/response/data"][sum(len(t.response) for t in original[:7]) + 3, 0] += 1.0
    assert "000007" in read_recording(tampered).problems[0]

    plain = tmp_path / "plain.nwb"
    with h5py.File(plain, "w") as f:
        f["x"] = np.arange(3)
    assert "not readable as NWB" in one_line_error(["train", str(plain)], capsys)
    text = tmp_path / "notes.nwb"
    text.write_text("not an NWB file\n")
    assert "no HDF5 superblock" in one_line_error(["train", str(text)], capsys)
    path = pynwb_file(tmp_path / "no_label.nwb", n_trials=4, label_column="condition")[0]
    err = one_line_error(["train", str(path)], capsys)
    assert "no 'label' column (has start_time, stop_time, condition)" in err


def test_timestamps_no_stimulus_and_bad_trials_in_a_foreign_nwb_file(tmp_path, capsys):
    path, _, counts, starts, labels = pynwb_file(tmp_path / "ts.nwb", n_trials=8, timestamps=True,
                                                 stimulus=False)
    rec = read_recording(path)
    assert rec.attrs["rate_hz"] == pytest.approx(1000.0) and rec.trials[2].stimulus.shape == (120, 0)
    np.testing.assert_allclose(rec.trials[2].response, counts[starts[2]:starts[2] + 120] * 0.5e-6)
    np.testing.assert_allclose(rec.trials[2].timestamps[0], starts[2] / 1000.0)
    path = pynwb_file(tmp_path / "late.nwb", n_trials=4, extra_trial=(50.0, 51.0))[0]
    assert "outside the" in one_line_error(["train", str(path)], capsys)
    with pytest.warns(UserWarning):  # pynwb itself warns of a transposed series
        path = pynwb_file(tmp_path / "transposed.nwb", n_trials=4, transposed=True)[0]
    assert "NWB stores time x channels" in one_line_error(["train", str(path)], capsys)
