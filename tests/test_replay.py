"""Replay: a recording played back as a device, re-driving a simulated substrate, comparing responses;
and recordings read back after damage (truncation, tampering), never with pickle."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from prclab.drivers import DeviceError, DeviceRequest, SimDevice
from prclab.protocols.rig import make_rig
from prclab.protocols.replay_device import ReplayDevice
from prclab.cli import main
from prclab.protocols.recording import RecordingWriter, read_recording
from prclab.reservoir import EchoStateNetwork

from test_spine import PROTOCOL, write_protocol

ROOT = Path(__file__).resolve().parent.parent


def write_sim_recording(path: Path, n_trials: int = 3, n: int = 700, seed: int = 0) -> Path:
    """A small recording of an ESN SimDevice (2 stimulus channels, 1 kHz), written with the real writer."""
    dev = SimDevice(EchoStateNetwork(2, units=12, seed=1), rate_hz=1000.0)
    rng = np.random.default_rng(seed)
    with RecordingWriter(path, {"protocol_text": "", "rate_hz": 1000.0, "device": dev.describe()},
                         fsync=False) as w, dev:
        for i in range(n_trials):
            stim = rng.uniform(-0.5, 0.5, (n, 2))
            dev.write(stim)
            resp, t = dev.read(n)
            w.append(i, stim, resp, t, item=i, item_id=f"row{i}", label="ab"[i % 2], split="train",
                     repetition=0, stim_start=0, stim_stop=n)
    return path


@contextlib.contextmanager
def replay_of_a_sim_recording():
    """Contract-suite factory: a ReplayDevice over a fresh recording in a temporary folder."""
    with tempfile.TemporaryDirectory() as tmp:
        yield ReplayDevice(write_sim_recording(Path(tmp) / "rec.h5"))


@pytest.fixture
def toy_run(tmp_path, toy_npz):
    proto = write_protocol(tmp_path, toy_npz)
    rec = tmp_path / "rec.h5"
    assert main(["run", str(proto), "--out", str(rec)]) == 0
    return proto, rec


def test_the_runner_cannot_tell_a_replay_from_the_device(toy_run, tmp_path, capsys):
    proto, rec = toy_run
    again = tmp_path / "again.h5"
    assert main(["run", str(proto), "--out", str(again), "--device", f"replay:{rec}", "--json"]) == 0
    a, b = read_recording(rec), read_recording(again)
    assert len(a.trials) == len(b.trials) == 60
    for x, y in zip(a.trials, b.trials):
        assert (x.index, x.label, x.split) == (y.index, y.label, y.split)
        np.testing.assert_array_equal(x.stimulus, y.stimulus)
        np.testing.assert_array_equal(x.response, y.response)
    assert b.attrs["device"]["replayed_from"] == str(rec) and b.attrs["device"]["device"] == "replay"
    capsys.readouterr()
    assert main(["train", str(rec), "--json"]) == main(["train", str(again), "--json"]) == 0
    first, second = capsys.readouterr().out.strip().splitlines()
    assert json.loads(first)["accuracy"] == json.loads(second)["accuracy"]


def test_replay_into_the_same_substrate_reproduces_the_recording(toy_run, tmp_path, capsys):
    _, rec = toy_run
    new, plot = tmp_path / "sim.h5", tmp_path / "cmp.png"
    assert main(["replay", str(rec), "--substrate", "esn", "--out", str(new), "--plot", str(plot),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_trials"] == 60 and result["n_channels"] == 60
    assert result["mean_nrmse"] < 1e-6 and result["mean_correlation"] > 0.999999
    assert plot.stat().st_size > 10_000
    assert read_recording(new).attrs["replayed_from"] == str(rec)
    assert main(["train", str(new), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_test"] == 18


def test_replay_into_another_substrate_compares_channel_by_channel(toy_run, tmp_path, capsys):
    _, rec = toy_run
    new = tmp_path / "potato.h5"
    assert main(["replay", str(rec), "--substrate", "potato", "--out", str(new)]) == 0
    out = capsys.readouterr().out
    assert "mean NRMSE" in out and (tmp_path / "potato.png").exists()
    from prclab.protocols.replay import compare_recordings

    result = compare_recordings(rec, new)
    assert result["n_channels"] == 60  # a potato with as many recording electrodes as the recording
    assert len(result["nrmse"]) == len(result["correlation"]) == 60
    assert all(np.isfinite(result["nrmse"])) and result["mean_nrmse"] > 0.01
    assert main(["train", str(new), "--json"]) == 0


def test_replay_device_refuses_a_damaged_or_mismatched_recording(tmp_path):
    rec = write_sim_recording(tmp_path / "r.h5")
    with pytest.raises(DeviceError, match="stimulus channels"):
        make_rig(f"replay:{rec}", DeviceRequest(n_stimulus=3, rate_hz=1000.0))
    with h5py.File(rec, "r+") as f:
        f["trials"]["000001"]["response"][5, 3] = 99.0
    with pytest.raises(DeviceError, match="trial 000001: checksum mismatch"):
        ReplayDevice(rec)
    with pytest.raises(DeviceError, match="not found"):
        ReplayDevice(tmp_path / "missing.h5")
    dev = ReplayDevice(write_sim_recording(tmp_path / "r2.h5", n_trials=1, n=10))
    with dev, pytest.raises(DeviceError, match="holds 10"):
        dev.read(11)


# -- integrity -------------------------------------------------------------------------------------
def test_a_tampered_trial_is_named_and_the_rest_recovered(tmp_path):
    rec = write_sim_recording(tmp_path / "r.h5", n_trials=5)
    with h5py.File(rec, "r+") as f:
        f["trials"]["000002"]["stimulus"][0, 0] += 1e-9
        f["trials"]["000004"].attrs["sha256"] = "0" * 64
    r = read_recording(rec)
    assert [t.index for t in r.trials] == [0, 1, 3]
    assert r.problems == ["trial 000002: checksum mismatch", "trial 000004: checksum mismatch"]


@pytest.mark.parametrize("cut", [2000, 9000])
def test_a_truncated_file_names_the_lost_trial_and_recovers_the_rest(tmp_path, cut, capsys):
    rec = write_sim_recording(tmp_path / "r.h5", n_trials=6)
    size = rec.stat().st_size
    with open(rec, "r+b") as fh:
        fh.truncate(size - cut)
    with pytest.raises(OSError):
        h5py.File(rec, "r")  # plain HDF5 refuses the file outright
    r = read_recording(rec)
    assert [t.index for t in r.trials] == [0, 1, 2, 3, 4]
    assert r.problems[0] == f"file truncated: {cut} bytes missing at the end"
    assert r.problems[1] == "5 intact trial(s) recovered from their in-file records"
    assert all(p.startswith("trial 000005: ") for p in r.problems[2:])  # the one in flight, if named
    assert rec.stat().st_size == size - cut  # the file itself is left as it was


def test_nothing_loads_with_pickle():
    sources = [p for folder in ("protocols", "drivers", "readouts", "reservoir", "prclab")
               for p in (ROOT / folder).glob("*.py")]
    assert len(sources) > 20
    for path in sources:
        text = path.read_text()
        assert "import pickle" not in text and "allow_pickle=True" not in text, path
