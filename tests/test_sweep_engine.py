"""The sweep engine (issue 16): Optuna on Dask distributed, a study that survives kill -9, a scheduler
by address, the test split kept from every trial, the exported table and plots."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from prclab.cli import main
from prclab.errors import PrclabError
from prclab.experiments.sweep import cv_score, fold_ids, run_sweep, train_only
from prclab.experiments.sweep_study import open_study
from prclab.experiments.sweep_space import build_space, load_space
from prclab.experiments.tasks import run_tasks
from prclab.protocols.datasets import load_dataset

optuna = pytest.importorskip("optuna")
pytest.importorskip("distributed")

SPACE = """
[sweep]
data = "toy.npz"
folds = 3
[substrate]
units = 30
leak_rate = {{low = 0.05, high = 1.0, log = true}}
spectral_radius = {{low = 0.2, high = 1.2}}
[readout]
features = "mean+last"
{extra}"""


@pytest.fixture
def space_file(toy_npz):
    path = toy_npz.parent / "space.toml"
    path.write_text(SPACE.format(extra=""))
    return path


def _complete(space):
    study = optuna.load_study(study_name=space.study, storage=space.storage)
    return {t.number: (t.params, t.value, t.datetime_complete)
            for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))}


def _n_complete(db) -> int:
    """Finished trials in the SQLite file ``db``, read with sqlite3 alone: a poll that costs
    milliseconds (an Optuna storage opened per poll takes seconds on a loaded machine, while a toy
    sweep finishes every trial) and sees 0 before the driver has written its tables and study."""
    import sqlite3

    if not db.exists():
        return 0
    connection = sqlite3.connect(db, timeout=1.0)
    try:
        return connection.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    except sqlite3.OperationalError:  # no trials table yet (or locked for the moment)
        return 0
    finally:
        connection.close()


def test_kill_9_then_rerun_keeps_every_finished_trial_and_reruns_none(space_file):
    space = load_space(space_file)
    cmd = [sys.executable, "-m", "prclab.cli", "sweep", str(space_file), "--trials", "12", "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
            if _n_complete(space_file.with_suffix(".db")) >= 3:
                break
        assert proc.poll() is None, "the sweep ended before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its Dask workers, as kill -9 of the group
        proc.wait()
    before = _complete(space)
    assert 3 <= len(before) < 12
    result = run_sweep(space, 12, workers=0, final=False)
    after = _complete(space)
    assert len(after) == 12 and result["resumed"] == len(before) and result["ran"] == 12 - len(before)
    for number, kept in before.items():
        assert after[number] == kept  # same parameters, score and finishing time: kept, not re-run
    study = optuna.load_study(study_name=space.study, storage=space.storage)
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    done = [t.params for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))]
    assert len({tuple(sorted(p.items())) for p in done}) == 12  # no configuration drawn twice
    for number in result["requeued"]:  # a trial killed in flight runs again, from its own parameters
        killed = study.trials[number]
        assert killed.state == optuna.trial.TrialState.FAIL
        assert killed.params in done
    assert run_sweep(space, 12, workers=0, final=False)["ran"] == 0  # nothing left to run


def test_a_study_refuses_another_space(space_file):
    run_sweep(load_space(space_file), 1, workers=0, final=False)
    space_file.write_text(SPACE.format(extra="").replace("high = 1.2", "high = 1.1"))
    with pytest.raises(PrclabError, match="was made from another space"):
        run_sweep(load_space(space_file), 2, workers=0, final=False)


def test_a_scheduler_started_here_runs_the_trials(space_file, capsys):
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address=None) as cluster:
        assert main(["sweep", str(space_file), "--trials", "4", "--scheduler", cluster.scheduler_address,
                     "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["engine"]["scheduler"] == cluster.scheduler_address and result["engine"]["workers"] == 2
    assert result["n_complete"] == 4 and result["ran"] == 4
    assert result["test"]["note"].startswith("the test split was scored once")
    for key in ("accuracy", "baseline_accuracy", "quadratic_baseline_accuracy", "minirocket_accuracy"):
        assert 0.0 <= result["test"][key] <= 1.0


def test_an_unreachable_scheduler_is_one_line_within_seconds(space_file, capsys):
    start = time.monotonic()
    assert main(["sweep", str(space_file), "--trials", "2", "--scheduler", "tcp://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert time.monotonic() - start < 15
    assert err.count("\n") == 1 and "scheduler tcp://127.0.0.1:9 unreachable" in err


def test_a_port_that_accepts_and_never_answers_is_one_line_within_seconds(space_file, capsys):
    """Another service, or a hung scheduler: the connection is accepted, Dask's handshake never comes
    (``distributed`` alone would wait for it forever)."""
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        start = time.monotonic()
        assert main(["sweep", str(space_file), "--trials", "2", "--scheduler", address]) == 2
        assert time.monotonic() - start < 15
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"scheduler {address} unreachable within 5 s (TimeoutError)" in err


def test_a_port_that_answers_in_another_protocol_is_one_line(space_file, capsys):
    """A web server's reply to Dask's handshake (as an HTTP proxy sends one), read by ``distributed``
    as a frame length, must not surface as its MemoryError."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def answer():
        while True:
            try:
                peer, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            with peer:
                peer.recv(4096)
                peer.sendall(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")

    threading.Thread(target=answer, daemon=True).start()
    address = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    try:
        assert main(["sweep", str(space_file), "--trials", "2", "--scheduler", address]) == 2
    finally:
        listener.close()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{address} answers, but not as a Dask scheduler (MemoryError" in err


def test_no_test_item_reaches_the_objective(toy_npz):
    """Test labels shuffled and test sequences replaced by noise: the same trials, the same choice,
    the same cross-validated score; only the final test score differs."""
    data = load_dataset(toy_npz)
    test = data.split == "test"
    rng = np.random.default_rng(3)
    labels = data.labels.copy()
    labels[test] = rng.permutation(labels[test])
    sequences = [rng.normal(size=s.shape) if t else s for s, t in zip(data.sequences, test)]
    changed = dataclasses.replace(data, labels=labels, sequences=sequences)
    kw = dict(substrate="esn", size=30, tune=3, tune_workers=0, features="mean+last")
    a, b = run_tasks(str(toy_npz), **kw), run_tasks(str(toy_npz), **kw)
    assert a["tuned_params"] == b["tuned_params"]  # deterministic for a seed
    space = build_space(str(toy_npz), folds=3, groups={"substrate": {"units": 30, "leak_rate": {"low": 0.1, "high": 1.0}}})
    train_data, folds, test_index = train_only(data, space)
    train_changed, folds_changed, _ = train_only(changed, space)
    assert len(train_data) == int((~test).sum()) and not set(train_data.ids) & set(data.ids[test_index])
    np.testing.assert_array_equal(folds, folds_changed)
    values = {"substrate.leak_rate": 0.4}
    assert cv_score(train_data, folds, space, values)["fold_scores"] == \
        cv_score(train_changed, folds_changed, space, values)["fold_scores"]
    ra = run_sweep(space, 3, workers=0, data=data)
    rb = run_sweep(dataclasses.replace(space, study="other"), 3, workers=0, data=changed)
    assert ra["best"]["params"] == rb["best"]["params"] and ra["best"]["cv_score"] == rb["best"]["cv_score"]
    assert ra["best"]["fold_scores"] == rb["best"]["fold_scores"]


def test_task_tune_reports_tuned_default_and_baselines(toy_npz, capsys):
    result = run_tasks(str(toy_npz), substrate="esn", size=30, tune=3, tune_workers=0)
    for key in ("accuracy", "default_accuracy", "baseline_accuracy", "quadratic_baseline_accuracy",
                "minirocket_accuracy", "cv_score"):
        assert 0.0 <= result[key] <= 1.0, key
    assert set(result["tuned_params"]) == {"substrate.spectral_radius", "substrate.input_scaling",
                                           "substrate.leak_rate", "substrate.bias_scaling", "encoder.amplitude"}
    assert result["tune"]["trials"] == 3 and len(result["cv_fold_scores"]) == 5
    assert result["cv_score"] == pytest.approx(np.mean(result["cv_fold_scores"]))
    assert main(["task", "--data", str(toy_npz), "--task", "narma10", "--tune", "2"]) == 2
    assert main(["task", "--task", "narma10", "--tune", "2"]) == 2
    assert "--tune apply to --data" in capsys.readouterr().err


def test_speaker_folds_are_grouped(tmp_path):
    from prclab.protocols.datasets import LabelledSequences

    n = 48
    groups = np.repeat(np.array(["ann", "bob", "cat", "dan"]), n // 4)
    data = LabelledSequences([np.zeros((5, 1))] * n, np.array(["a", "b"] * (n // 2)), None, "sequence",
                             groups=groups, ids=np.arange(n).astype(str))
    folds = fold_ids(data, 5, 0, grouped=True)
    assert len(np.unique(folds)) == 4  # at most one fold per speaker
    for g in np.unique(groups):
        assert len(np.unique(folds[groups == g])) == 1
    with pytest.raises(PrclabError, match="smallest class has 24"):
        fold_ids(data, 30, 0, grouped=False)


def test_export_table_and_plots(space_file, tmp_path, capsys):
    out, plots = tmp_path / "trials.csv", tmp_path / "plots"
    assert main(["sweep", str(space_file), "--trials", "4", "--workers", "0", "--sampler", "random",
                 "--export", str(out), "--plot", str(plots)]) == 0
    text = capsys.readouterr().out
    assert "test accuracy" in text and "scored once" in text and "MiniRocket" in text
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4 and {r["state"] for r in rows} == {"COMPLETE"}
    row = rows[0]
    for key in ("substrate.leak_rate", "substrate.spectral_radius", "seed", "fold_1", "fold_3", "mean",
                "wall_s", "prclab", "optuna", "distributed", "numpy", "git"):
        assert row[key] != "", key
    folds = [float(row[f"fold_{i}"]) for i in (1, 2, 3)]
    assert float(row["mean"]) == pytest.approx(np.mean(folds))
    for name in ("history.png", "params.png", "importance.png"):
        assert (plots / name).stat().st_size > 1000


def test_grid_sampler_walks_the_grid(toy_npz):
    space = build_space(str(toy_npz), folds=3, groups={
        "substrate": {"units": 20, "leak_rate": {"low": 0.1, "high": 0.9, "points": 3}},
        "readout": {"features": {"choices": ["mean+last", "last"]}}},
        storage=f"sqlite:///{toy_npz.parent / 'grid.db'}")
    with pytest.raises(PrclabError, match="exceeds the grid's 6 configurations"):
        run_sweep(space, 7, workers=0, sampler="grid")
    run_sweep(space, 6, workers=0, sampler="grid", final=False)
    seen = {(t.params["substrate.leak_rate"], t.params["readout.features"]) for t in open_study(space, "grid").trials}
    assert seen == {(a, f) for a in (0.1, 0.5, 0.9) for f in ("mean+last", "last")}


def test_a_journal_file_study_resumes(space_file):
    space_file.write_text(SPACE.format(extra="").replace("folds = 3", 'folds = 3\nstorage = "journal:s.log"'))
    space = load_space(space_file)
    assert space.storage == f"journal:{space_file.parent / 's.log'}"
    assert run_sweep(space, 2, workers=0, final=False)["ran"] == 2
    again = run_sweep(space, 3, workers=0, final=False)
    assert again["resumed"] == 2 and again["ran"] == 1 and again["n_complete"] == 3


def test_audio_frames_computed_once_score_as_the_mfcc_encoder():
    from prclab.experiments.sweep import mfcc_frames
    from prclab.protocols.protocol import BUILTIN_DATASETS

    data = load_dataset(BUILTIN_DATASETS["fsdd-subset"])
    keep = np.flatnonzero(np.isin(data.labels, ["0", "1", "2"]) & np.isin(data.groups, ["george", "jackson"]))
    data = data.subset(keep)
    space = build_space(str(BUILTIN_DATASETS["fsdd-subset"]), folds=2, groups={
        "substrate": {"units": 20, "leak_rate": {"low": 0.1, "high": 1.0}}, "readout": {"features": "mean+last"}})
    train_data, folds, _ = train_only(data, space)
    assert train_data.kind == "sequence" and train_data.sequences[0].shape[1] == 13
    audio = data.subset(np.flatnonzero(data.split == "train"))
    values = {"substrate.leak_rate": 0.5}
    assert cv_score(train_data, folds, space, values)["fold_scores"] == \
        cv_score(audio, folds, space, values)["fold_scores"]
    mfcc_space = dataclasses.replace(space, fixed={**space.fixed, "encoder": {"n_mfcc": 8}})
    assert mfcc_frames(audio, mfcc_space) is audio  # MFCC keys in the space: the audio itself
