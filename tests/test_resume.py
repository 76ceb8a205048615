"""Crash-safe recording and resume: SIGKILL the runner at several points, resume, compare trial by trial
with an uninterrupted run; Ctrl-C leaves a clean, resumable recording."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from prclab.errors import PrclabError
from prclab.cli import main

ROOT = Path(__file__).resolve().parent.parent

PROTOCOL = """
[protocol]
name = "resume"
sample_rate_hz = 200.0
seed = 5
block_samples = 7

[device]
spec = "sim:potato"

[substrate]
name = "potato"
params = { nodes = 30, n_outputs = 4, noise_V = 1e-4 }

[stimulus]
electrodes = 2
low_V = -0.5
high_V = 0.5

[task]
dataset = "toy.npz"

[encoder]
samples_per_frame = 2

[timing]
washout_s = 0.02
rest_s = 0.03
"""

N_TRIALS = 16

# The child runs `prclab run` and SIGKILLs itself at a chosen point:
#   between:K  right after trial K is durable;  block:K:B  while writing block B of trial K to the device;
#   append:K   inside the HDF5 write of trial K, after its stimulus dataset was created.
CHILD = textwrap.dedent("""
    import os, signal, sys
    import h5py
    from prclab.drivers.sim import SimDevice
    from prclab.protocols.recording import RecordingWriter
    from prclab.cli import main

    where, *args = sys.argv[1].split(":")
    kill = lambda: os.kill(os.getpid(), signal.SIGKILL)
    state = {"trial": -1, "blocks": 0}
    append, write, create = RecordingWriter.append, SimDevice._write, h5py.Group.create_dataset

    def patched_append(self, index, *a, **k):
        state["trial"], state["blocks"] = index, 0
        append(self, index, *a, **k)
        if where == "between" and index == int(args[0]):
            kill()
        state["trial"] = index + 1

    def patched_write(self, block):
        write(self, block)
        state["blocks"] += 1
        if where == "block" and state["trial"] == int(args[0]) and state["blocks"] == int(args[1]):
            kill()

    def patched_create(self, name, *a, **k):
        out = create(self, name, *a, **k)
        if where == "append" and name == "stimulus" and state["trial"] == int(args[0]):
            self.file.flush()  # the group and a dataset reach the file, the trial's checksum never does
            kill()
        return out

    RecordingWriter.append, SimDevice._write, h5py.Group.create_dataset = \\
        patched_append, patched_write, patched_create
    state["trial"] = 0
    sys.exit(main(["run", sys.argv[2], "--out", sys.argv[3]]))
""")


@pytest.fixture
def setup(tmp_path):
    rng = np.random.default_rng(2)
    n = N_TRIALS
    np.savez(tmp_path / "toy.npz", X=rng.normal(size=(n, 9, 2)), lengths=rng.integers(5, 10, n),
             y=np.array(["a", "b"])[np.arange(n) % 2], split=np.where(np.arange(n) < 12, "train", "test"))
    proto = tmp_path / "p.toml"
    proto.write_text(PROTOCOL)
    reference = tmp_path / "reference.h5"
    assert main(["run", str(proto), "--out", str(reference)]) == 0
    return proto, reference


def trials_of(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return {name: ({k: g[k][()] for k in ("stimulus", "response")},
                       {k: g.attrs[k] for k in ("index", "item", "label", "split", "stim_start")})
                for name, g in f["trials"].items()}


def assert_same_run(path: Path, reference: Path) -> None:
    """Every planned trial once, in order, with the uninterrupted run's stimulus, response and attrs."""
    got, want = trials_of(path), trials_of(reference)
    assert sorted(got) == sorted(want) == [f"{i:06d}" for i in range(N_TRIALS)]
    for name in want:
        for key in ("stimulus", "response"):
            np.testing.assert_array_equal(got[name][0][key], want[name][0][key], err_msg=f"{name} {key}")
        assert got[name][1] == want[name][1]


@pytest.mark.parametrize("kill_at, durable", [("between:4", 5), ("block:9:3", 9), ("append:12", 12)])
def test_sigkill_then_resume_loses_and_duplicates_no_trial(setup, tmp_path, kill_at, durable):
    proto, reference = setup
    rec = tmp_path / "killed.h5"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", CHILD, kill_at, str(proto), str(rec)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    with h5py.File(rec, "r") as f:  # every trial finished before the kill is on disk and intact
        complete = sorted(n for n, g in f["trials"].items() if "sha256" in g.attrs)
    assert complete == [f"{i:06d}" for i in range(durable)]
    assert main(["run", str(proto), "--resume", str(rec)]) == 0
    assert_same_run(rec, reference)
    with h5py.File(rec, "r") as f:
        sessions = [f["trials"][f"{i:06d}"].attrs["session"] for i in range(N_TRIALS)]
    assert sessions == [0] * durable + [1] * (N_TRIALS - durable)


def test_ctrl_c_mid_trial_leaves_a_clean_resumable_recording(setup, tmp_path, capsys, monkeypatch):
    proto, reference = setup
    rec = tmp_path / "interrupted.h5"
    from prclab.drivers.sim import SimDevice

    write, calls = SimDevice._write, []

    def interrupting_write(self, block):
        calls.append(1)
        if len(calls) == 40:
            raise KeyboardInterrupt
        write(self, block)

    monkeypatch.setattr(SimDevice, "_write", interrupting_write)
    assert main(["run", str(proto), "--out", str(rec)]) == 130
    assert "--resume" in capsys.readouterr().err
    with h5py.File(rec, "r") as f:  # closed cleanly, only whole trials
        assert 0 < len(f["trials"]) < N_TRIALS
        assert all("sha256" in g.attrs for g in f["trials"].values())
    monkeypatch.setattr(SimDevice, "_write", write)
    assert main(["run", str(proto), "--resume", str(rec)]) == 0
    assert_same_run(rec, reference)


def test_ctrl_c_inside_the_hdf5_write_removes_the_partial_trial(setup, tmp_path, monkeypatch):
    proto, reference = setup
    rec = tmp_path / "interrupted.h5"
    create, calls = h5py.Group.create_dataset, []

    def interrupting_create(self, name, *a, **k):
        calls.append(name)
        if calls.count("response") == 6 and name == "response":
            raise KeyboardInterrupt
        return create(self, name, *a, **k)

    monkeypatch.setattr(h5py.Group, "create_dataset", interrupting_create)
    assert main(["run", str(proto), "--out", str(rec)]) == 130
    with h5py.File(rec, "r") as f:
        assert sorted(f["trials"]) == [f"{i:06d}" for i in range(5)]
    monkeypatch.setattr(h5py.Group, "create_dataset", create)
    assert main(["run", str(proto), "--resume", str(rec)]) == 0
    assert_same_run(rec, reference)


def test_resume_refuses_another_protocol_and_names_a_damaged_middle(setup, tmp_path, capsys):
    proto, reference = setup
    other = tmp_path / "other.toml"
    other.write_text(PROTOCOL.replace("seed = 5", "seed = 6"))
    assert main(["run", str(other), "--resume", str(reference)]) == 2
    assert "different protocol" in capsys.readouterr().err
    with h5py.File(reference, "r+") as f:
        f["trials"]["000003"]["response"][0, 0] += 1.0
    # a resume reads only the trials' records and the last trial's arrays (a few MB, not the file); the
    # training that follows checks every trial's arrays, names the damaged one and leaves it out
    assert main(["run", str(proto), "--resume", str(reference)]) == 0
    assert "warning: trial 000003: checksum mismatch" in capsys.readouterr().out
    with pytest.raises(PrclabError, match="exactly one of"):
        from prclab.cli import build_parser, cmd_run
        cmd_run(build_parser().parse_args(["run", str(proto)]))


def test_resuming_a_finished_run_changes_nothing(setup):
    proto, reference = setup
    before = trials_of(reference)
    assert main(["run", str(proto), "--resume", str(reference)]) == 0
    after = trials_of(reference)
    assert sorted(after) == sorted(before)
