"""Bad inputs through every command, in process (``prclab.cli.main``): each must give exit code 2 and
one line ``prclab: error: ...`` on stderr - no traceback, no hang (each call bounded in time), nothing
written where it should not be (the work folder's listing is unchanged, a refused output never
appears), and refused before the work (``train --plot`` to a bad path fails before training).

The cases are the classes an adversarial pass found (read-only, missing, too long, existing outputs;
absurd or non-finite numbers; outputs equal to inputs; garbage and hostile files; network devices from
a protocol file), as a parametrised list, plus hypothesis-generated hostile result JSON for ``report``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prclab.cli import main

PROTOCOL = """
[protocol]
name = "cli-bad-inputs"
sample_rate_hz = 1000.0
seed = 1
order = "sequential"
block_samples = 50

[device]
spec = "{spec}"

[substrate]
name = "esn"
params = {{ units = 20 }}

[stimulus]
electrodes = 2
low_V = -0.5
high_V = 0.5

[task]
dataset = "{dataset}"
max_items = 6

[encoder]
samples_per_frame = 2

[timing]
washout_s = 0.01
rest_s = 0.01
"""

LONG = "x" * 300


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder with a valid protocol, dataset, recording and result JSON, and some hostile files."""
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    n, length = 30, 30
    x = rng.normal(0, 0.3, (n, length, 2))
    y = np.array(["a", "b", "c"])[np.arange(n) % 3]
    x[..., 0] += np.where(y == "a", 0.3, np.where(y == "b", -0.3, 0.0))[:, None]
    np.savez(root / "toy.npz", X=x, lengths=np.full(n, length), y=y,
             split=np.where(np.arange(n) < 21, "train", "test"))
    (root / "p.toml").write_text(PROTOCOL.format(spec="sim:esn", dataset=root / "toy.npz"))
    (root / "net.toml").write_text(PROTOCOL.format(spec="potentiostat:socket://127.0.0.1:9",
                                                   dataset=root / "toy.npz"))
    (root / "netbf.toml").write_text(PROTOCOL.format(spec="brainflow:synthetic?ip_address=10.0.0.1",
                                                     dataset=root / "toy.npz"))
    valid = PROTOCOL.format(spec="sim:esn", dataset=root / "toy.npz")
    (root / "typo.toml").write_text(valid.replace("[timing]", "[safety]\nmax_curent_A = 1e-3\n\n[timing]"))
    (root / "param.toml").write_text(valid.replace("units = 20", "unit = 20"))
    assert main(["run", str(root / "p.toml"), "--out", str(root / "rec.h5"), "--json"]) == 0
    assert main(["train", str(root / "rec.h5"), "--json"]) == 0
    (root / "garbage.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4)
    (root / "garbage.toml").write_bytes(b"[protocol\nname = \xff\xfe\n")
    (root / "garbage.json").write_bytes(b"{\"accuracy\": NaN}")
    (root / "list.json").write_text("[1, 2]")
    (root / "folder").mkdir()
    (root / "folder" / "keep.txt").write_text("keep")
    (root / "file.txt").write_text("a file")
    (root / "plots").mkdir()
    (root / "plots" / "bode_potato.png").write_text("an earlier plot")
    os.mkfifo(root / "fifo.npz")
    return root


def _cases(w: Path):
    rec, proto = str(w / "rec.h5"), str(w / "p.toml")
    new = str(w / "new.h5")
    ro = "/proc/prclab-readonly"  # a folder where nothing can be created
    return {
        # demo
        "demo out-dir is a file": ["demo", "--out-dir", str(w / "file.txt")],
        "demo out-dir read-only": ["demo", "--out-dir", ro],
        "demo out-dir parent missing": ["demo", "--out-dir", str(w / "missing" / "deeper")],
        "demo out-dir too long": ["demo", "--out-dir", str(w / LONG)],
        # run
        "run protocol missing": ["run", str(w / "nope.toml"), "--out", new],
        "run protocol is a folder": ["run", str(w / "folder"), "--out", new],
        "run protocol garbage": ["run", str(w / "garbage.toml"), "--out", new],
        "run out exists (file)": ["run", proto, "--out", str(w / "file.txt")],
        "run out exists (folder)": ["run", proto, "--out", str(w / "folder")],
        "run out is the protocol": ["run", proto, "--out", proto],
        "run out folder missing": ["run", proto, "--out", str(w / "missing" / "r.h5")],
        "run out read-only": ["run", proto, "--out", ro + "/r.h5"],
        "run out too long": ["run", proto, "--out", str(w / (LONG + ".h5"))],
        "run both out and resume": ["run", proto, "--out", new, "--resume", rec],
        "run resume missing": ["run", proto, "--resume", str(w / "nope.h5")],
        "run resume garbage": ["run", proto, "--resume", str(w / "garbage.h5")],
        "run unknown device": ["run", proto, "--out", new, "--device", "quantum:1"],
        "run network device from the file": ["run", str(w / "net.toml"), "--out", new],
        "run network brainflow from the file": ["run", str(w / "netbf.toml"), "--out", new],
        "run network device on the command line": ["run", proto, "--out", new, "--device",
                                                   "potentiostat:rfc2217://127.0.0.1:9"],
        "run NUL in a path": ["run", proto, "--out", str(w / "a\x00b.h5")],
        "run device fails to open": ["run", proto, "--out", new, "--device", "nidaq:NoSuchDev"],
        "run misspelt safety key": ["run", str(w / "typo.toml"), "--out", new],
        "run misspelt substrate parameter": ["run", str(w / "param.toml"), "--out", new],
        # train
        "train recording missing": ["train", str(w / "nope.h5")],
        "train recording garbage": ["train", str(w / "garbage.h5")],
        "train recording is a folder": ["train", str(w / "folder")],
        "train plot read-only": ["train", rec, "--plot", ro + "/c.png"],
        "train plot folder missing": ["train", rec, "--plot", str(w / "missing" / "c.png")],
        "train plot exists": ["train", rec, "--plot", str(w / "file.txt")],
        "train plot is a folder": ["train", rec, "--plot", str(w / "folder")],
        "train plot is the recording": ["train", rec, "--plot", rec],
        "train plot too long": ["train", rec, "--plot", str(w / (LONG + ".png"))],
        "train bad features": ["train", rec, "--features", "nonsense:!!"],
        # replay
        "replay out exists": ["replay", rec, "--substrate", "esn", "--out", str(w / "file.txt")],
        "replay out is the recording": ["replay", rec, "--substrate", "esn", "--out", rec],
        "replay out is a png": ["replay", rec, "--substrate", "esn", "--out", str(w / "NAME.png")],
        "replay plot is the recording": ["replay", rec, "--substrate", "esn", "--out", new, "--plot", rec],
        "replay plot folder missing": ["replay", rec, "--substrate", "esn", "--out", new, "--plot",
                                       str(w / "missing" / "p.png")],
        "replay recording garbage": ["replay", str(w / "garbage.h5"), "--substrate", "esn", "--out", new],
        "replay unknown substrate": ["replay", rec, "--substrate", "unobtainium", "--out", new],
        # task
        "task seeds 1e9": ["task", "--task", "narma10", "--seeds", "1e9"],
        "task seeds huge": ["task", "--task", "narma10", "--seeds", "1000000000"],
        "task seeds 0": ["task", "--task", "narma10", "--seeds", "0"],
        "task units 1e12": ["task", "--task", "narma10", "--units", "1000000000000"],
        "task units nan": ["task", "--task", "narma10", "--units", "nan"],
        "task seed negative": ["task", "--task", "narma10", "--seed", "-1"],
        "task unknown task": ["task", "--task", "chess"],
        "task data and task": ["task", "--task", "narma10", "--data", str(w / "toy.npz")],
        "task neither": ["task"],
        "task data missing": ["task", "--data", str(w / "nope.npz")],
        "task data garbage": ["task", "--data", str(w / "garbage.h5")],
        "task data is a FIFO": ["task", "--data", str(w / "fifo.npz")],
        "task bad features": ["task", "--data", str(w / "toy.npz"), "--features", "bins:0"],
        "task param without a value": ["task", "--data", str(w / "toy.npz"), "--param", "recurrent"],
        "task param unknown": ["task", "--data", str(w / "toy.npz"), "--param", "no_such_knob=1"],
        "task param not finite": ["task", "--data", str(w / "toy.npz"), "--param", "spectral_radius=inf"],
        "task encoder unknown": ["task", "--data", str(w / "toy.npz"), "--encoder", "colour=blue"],
        "task encoder on a time series": ["task", "--task", "narma10", "--encoder", "waveform=rate"],
        # characterize
        "characterize units huge": ["characterize", "--units", "10000000000"],
        "characterize units inf": ["characterize", "--units", "inf"],
        "characterize unknown substrate": ["characterize", "--substrate", "unobtainium"],
        "characterize plot is a file": ["characterize", "--plot", str(w / "file.txt")],
        "characterize plot read-only": ["characterize", "--plot", ro],
        "characterize impedance of the esn": ["characterize", "--substrate", "esn", "--impedance"],
        "characterize impedance of the organoid": ["characterize", "--substrate", "organoid", "--impedance"],
        "characterize impedance plot is a file": ["characterize", "--substrate", "potato", "--impedance",
                                                  "--plot", str(w / "file.txt")],
        "characterize impedance plot read-only": ["characterize", "--substrate", "potato", "--impedance",
                                                  "--plot", ro],
        "characterize impedance plot already there": ["characterize", "--substrate", "potato", "--impedance",
                                                      "--plot", str(w / "plots")],
        # report
        "report source missing": ["report", str(w / "nope.json"), "--out", str(w / "rep")],
        "report source NaN JSON": ["report", str(w / "garbage.json"), "--out", str(w / "rep")],
        "report source JSON list": ["report", str(w / "list.json"), "--out", str(w / "rep")],
        "report source garbage h5": ["report", str(w / "garbage.h5"), "--out", str(w / "rep")],
        "report out is a file": ["report", rec, "--out", str(w / "file.txt")],
        "report out not empty": ["report", rec, "--out", str(w / "folder")],
        "report out read-only": ["report", rec, "--out", ro],
        # bad arguments
        "unknown command": ["fly"],
        "unknown option": ["train", rec, "--colour", "blue"],
    }


CASE_NAMES = list(_cases(Path("/w")))


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _expect_refusal(argv, capsys, limit_s=20.0) -> str:
    t0 = time.monotonic()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    took = time.monotonic() - t0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"exit {code}: {err[-500:]}"
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("prclab: error: "), err[-500:]
    assert took < limit_s, f"took {took:.1f} s"
    return lines[0]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, work, capsys):
    argv = _cases(work)[case]
    before = _listing(work)
    line = _expect_refusal(argv, capsys)
    assert _listing(work) == before, f"{case}: wrote {set(_listing(work)) - set(before)}"
    assert not Path("/proc/prclab-readonly").exists()
    print(f"{case}: {line[:150]}")


@pytest.mark.parametrize("name, message", [
    ("typo.toml", "[safety] unknown key 'max_curent_A'; did you mean 'max_current_A'?"),
    ("param.toml", "[substrate.params] (name = 'esn') unknown key 'unit'; did you mean 'units'?")])
def test_a_misspelt_protocol_key_names_the_file_the_table_and_the_nearest_key(work, capsys, name, message):
    line = _expect_refusal(["run", str(work / name), "--out", str(work / "new.h5")], capsys)
    assert line.startswith(f"prclab: error: {work / name}: {message}")


def test_train_plot_is_checked_before_training(work, capsys, monkeypatch):
    import prclab.experiments.recorded as recorded_module

    def never(*a, **k):
        raise AssertionError("trained before checking --plot")

    monkeypatch.setattr(recorded_module, "train_on_recording", never)
    _expect_refusal(["train", str(work / "rec.h5"), "--plot", "/proc/prclab-readonly/c.png"], capsys)


def test_two_demos_in_the_same_second_get_their_own_folders(tmp_path, monkeypatch):
    import prclab.cli as cli

    made = [cli._new_run_folder(tmp_path) for _ in range(3)]
    assert len({p.name for p in made}) == 3 and all(p.is_dir() for p in made)
    assert made[1].name == made[0].name + "-2"


RESULT_KEYS = ["accuracy", "baseline_accuracy", "labels", "predictions", "classes", "alpha_curve",
               "seeds", "accuracy_per_seed", "test_prediction", "test_target", "nrmse", "task",
               "memory_curve", "memory_capacity", "substrate", "problems", "dataset", "impedance", "iv_loops",
               "bursts", "part_seconds", "seconds"]
hostile_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats(allow_nan=False, width=64) |
    st.text(max_size=5), lambda inner: st.lists(inner, max_size=4) |
    st.dictionaries(st.sampled_from(["alphas", "accuracy", "baseline", "model", "freq_hz", "magnitude_ohm",
                                     "phase_deg", "periods_s", "areas_VA", "n_bursts", "ibi_cv", "unit"]),
                    inner, max_size=3),
    max_leaves=8)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(result=st.dictionaries(st.sampled_from(RESULT_KEYS), hostile_values, min_size=1, max_size=6))
def test_hostile_result_json_is_refused_or_reported_never_a_traceback(result, tmp_path, capsys):
    source = tmp_path / f"r{abs(hash(json.dumps(result, sort_keys=True, default=str))) % 10**9}.json"
    source.write_text(json.dumps(result))
    out = tmp_path / f"out-{source.stem}"
    try:
        code = main(["report", str(source), "--out", str(out)])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code in (0, 2), err[-300:]
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and err.startswith("prclab: error: ")


NUMERIC_OPTIONS = [("task", "--seeds", 1, 1000), ("task", "--units", 1, 100_000),
                   ("task", "--seed", 0, 2 ** 32 - 1), ("characterize", "--units", 1, 100_000),
                   ("characterize", "--seed", 0, 2 ** 32 - 1)]
bad_numbers = st.one_of(
    st.integers(max_value=-1).map(str), st.integers(min_value=2 ** 32).map(str),
    st.floats().map(repr), st.sampled_from(["1e9", "inf", "-inf", "nan", "0x10", "1_000", "²", "٣",
                                           "", " ", "1.0", "10**9"]),
    st.text(max_size=8).filter(lambda t: not t.strip().lstrip("+-").isascii()
                               or not t.strip().lstrip("+-").isdigit()))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(NUMERIC_OPTIONS), value=bad_numbers)
def test_absurd_numbers_are_refused_in_one_line(option, value, capsys):
    command, name, low, high = option
    if value.strip().lstrip("+-").isascii() and value.strip().lstrip("+-").isdigit() and \
            low <= int(value) <= high:
        return  # in range: not a bad input
    argv = [command, f"{name}={value}"] + (["--task", "narma10"] if command == "task" else [])
    _expect_refusal(argv, capsys, limit_s=5.0)
