"""``prclab export REC.h5 OUT.nwb``: the NWB file passes nwbinspector (no CRITICAL, no
BEST_PRACTICE_VIOLATION), SpikeInterface reads its response (traces and gains), and its tables hold the
recording's trials, electrodes and stimulation events."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prclab.cli import main
from prclab.drivers import SimDevice
from prclab.protocols.export import export_nwb
from prclab.protocols.recording import RecordingWriter, read_recording
from prclab.reservoir import EchoStateNetwork

from test_spine import write_protocol

pytest.importorskip("pynwb")


def toy_dataset(path):
    """3 classes of noisy sinusoids (as conftest's ``toy_npz``), written to ``path``."""
    rng = np.random.default_rng(0)
    n, max_len = 60, 40
    x = np.zeros((n, max_len, 2))
    lengths = rng.integers(25, max_len + 1, n)
    y = np.array(["slow", "mid", "fast"])[np.arange(n) % 3]
    freq = {"slow": 0.05, "mid": 0.12, "fast": 0.25}
    for i in range(n):
        t = np.arange(lengths[i])
        x[i, :lengths[i], 0] = np.sin(2 * np.pi * freq[y[i]] * t + rng.uniform(0, 6))
        x[i, :lengths[i], 1] = rng.normal(0, 0.3, lengths[i])
    np.savez(path, X=x, lengths=lengths, y=y, split=np.where(np.arange(n) < 42, "train", "test"))
    return path


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory):
    """A protocol run through ``prclab run`` on a simulated ESN (60 trials, 60 channels), exported."""
    tmp = tmp_path_factory.mktemp("nwb")
    proto = write_protocol(tmp, toy_dataset(tmp / "toy.npz"))
    rec, nwb = tmp / "rec.h5", tmp / "rec.nwb"
    assert main(["run", str(proto), "--out", str(rec)]) == 0
    assert main(["export", str(rec), str(nwb)]) == 0
    return proto, rec, nwb


def inspector_findings(path) -> list:
    from nwbinspector import Importance, inspect_nwbfile

    return [m for m in inspect_nwbfile(nwbfile_path=str(path))
            if m.importance in (Importance.CRITICAL, Importance.BEST_PRACTICE_VIOLATION)]


def test_the_export_passes_nwbinspector(sim_run):
    assert inspector_findings(sim_run[2]) == []


def test_spikeinterface_reads_the_response_with_its_gains(sim_run):
    from spikeinterface.extractors import read_nwb_recording

    _, rec, nwb = sim_run
    si = read_nwb_recording(str(nwb), electrical_series_path="acquisition/response")
    trials = read_recording(rec).trials
    response = np.concatenate([np.asarray(t.response) for t in trials])
    assert si.get_num_channels() == response.shape[1] and si.get_sampling_frequency() == 100.0
    np.testing.assert_array_equal(si.get_traces(return_in_uV=False), response.astype(np.float32))
    np.testing.assert_allclose(si.get_channel_gains(), 1e6)  # float volts: 1e6 uV per stored unit
    np.testing.assert_allclose(si.get_traces(return_in_uV=True), response * 1e6, rtol=1e-6)
    assert not any(si.get_property("stimulates"))


def test_the_nwb_tables_hold_trials_electrodes_and_metadata(sim_run):
    from pynwb import NWBHDF5IO

    proto, rec_path, nwb = sim_run
    rec = read_recording(rec_path)
    with NWBHDF5IO(str(nwb), "r") as io:
        f = io.read()
        trials = f.trials.to_dataframe()
        assert list(trials["label"]) == [t.label for t in rec.trials]
        assert list(trials["split"]) == [t.split for t in rec.trials]
        with __import__("h5py").File(rec_path, "r") as h:
            assert list(trials["checksum"]) == [h["trials"][f"{t.index:06d}"].attrs["sha256"]
                                                for t in rec.trials]
        lengths = np.array([len(t.stimulus) for t in rec.trials])
        np.testing.assert_allclose((trials["stop_time"] - trials["start_time"]) * 100.0, lengths)
        electrodes = f.electrodes.to_dataframe()
        assert electrodes["stimulates"].sum() == 2 and electrodes["records"].sum() == 60
        stim = np.concatenate([np.asarray(t.stimulus) for t in rec.trials])
        np.testing.assert_array_equal(f.stimulus["stimulus"].data[:], stim)
        assert f.protocol == proto.read_text() and f.was_generated_by[0][0] == "prclab"
        assert json.loads(f.scratch["prclab_attrs"].data)["device"]["rate_hz"] == 100.0
        events = f.intervals["stimulation"].to_dataframe()
        assert set(events["electrode"].map(lambda row: bool(row["stimulates"].iloc[0]))) == {True}


def test_counts_are_exported_as_integers_with_their_conversion(tmp_path):
    """A recording that stores int16 counts: the ElectricalSeries holds the counts, SpikeInterface
    gets the per-channel gain; pulses on the stimulus channels become stimulation events."""
    from pynwb import NWBHDF5IO
    from spikeinterface.extractors import read_nwb_recording

    dev = SimDevice(EchoStateNetwork(2, units=8, seed=1), rate_hz=1000.0)
    gains = np.array([10.0 / 32768, 5.0 / 32768] * 4)
    storage = {"response": "counts", "conversion": gains.tolist(), "offset": [0.0], "compression": "gzip"}
    rng = np.random.default_rng(2)
    counts, path = [], tmp_path / "counts.h5"
    with RecordingWriter(path, {"protocol_text": "", "rate_hz": 1000.0, "device": dev.describe(),
                                "storage": storage}, fsync=False) as w:
        for i in range(3):
            stim = np.zeros((200, 2))
            stim[50 + 10 * i:60 + 10 * i, i % 2] = 0.25  # one 10-sample pulse per trial
            c = rng.integers(-3000, 3000, (200, 8)).astype(np.int16)
            counts.append(c)
            w.append(i, stim, c * gains, 10.0 + np.arange(200) / 1000.0 + 0.2 * i, item=i, item_id=str(i),
                     label="ab"[i % 2], split="train", repetition=0, stim_start=50, stim_stop=150)
    out = tmp_path / "counts.nwb"
    assert main(["export", str(path), str(out), "--json"]) == 0
    si = read_nwb_recording(str(out), electrical_series_path="acquisition/response")
    np.testing.assert_array_equal(si.get_traces(return_in_uV=False), np.concatenate(counts))
    np.testing.assert_allclose(si.get_channel_gains(), gains * 1e6)
    assert inspector_findings(out) == []
    with NWBHDF5IO(str(out), "r") as io:
        events = io.read().intervals["stimulation"].to_dataframe()
        assert list(events["trial"]) == [0, 1, 2] and np.allclose(events["peak_V"], 0.25)
        np.testing.assert_allclose(events["start_time"], 10.0 + np.array([50, 260, 470]) / 1000.0)
        np.testing.assert_allclose(events["stop_time"] - events["start_time"], 0.01)
        assert [int(e.index[0]) for e in events["electrode"]] == [8, 9, 8]  # the stimulus rows follow 8


def test_a_damaged_recording_is_not_exported(sim_run, tmp_path, capsys):
    import shutil

    import h5py

    bad = tmp_path / "bad.h5"
    shutil.copy(sim_run[1], bad)
    with h5py.File(bad, "r+") as f:
        f["trials"]["000003"].attrs["label"] = "tampered"
    assert main(["export", str(bad), str(tmp_path / "bad.nwb")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "000003" in err and "export needs every trial" in err
    assert not (tmp_path / "bad.nwb").exists()
    assert main(["export", str(sim_run[1]), str(tmp_path / "out.mat")]) == 2
    assert "must end in .nwb or .fif" in capsys.readouterr().err
    assert main(["export", str(sim_run[1]), str(sim_run[2])]) == 2  # an existing file is not replaced
    assert "already there" in capsys.readouterr().err


def test_electrode_positions_are_the_organoid_arrays(tmp_path):
    """An organoid's MEA grid: recording and stimulating electrodes at the model's positions (um)."""
    from pynwb import NWBHDF5IO

    from prclab.reservoir.registry import make_substrate

    model = make_substrate("organoid", n_inputs=4)
    n_rec = len(model.rec_positions_um)
    path = tmp_path / "org.h5"
    with RecordingWriter(path, {"protocol_text": "", "rate_hz": 1000.0, "substrate": model.describe()},
                         fsync=False) as w:
        w.append(0, np.zeros((50, 4)), np.zeros((50, n_rec)), np.arange(50) / 1000.0, item=0, item_id="0",
                 label="a", split="train", repetition=0, stim_start=0, stim_stop=50)
    export_nwb(path, tmp_path / "org.nwb")
    with NWBHDF5IO(str(tmp_path / "org.nwb"), "r") as io:
        e = io.read().electrodes.to_dataframe()
    np.testing.assert_allclose(e[["rel_x", "rel_y"]].to_numpy()[:n_rec], model.rec_positions_um)
    np.testing.assert_allclose(e[["rel_x", "rel_y"]].to_numpy()[n_rec:], model.stim_positions_um)
    assert list(e["stimulates"]) == [False] * n_rec + [True] * 4
