"""Space files of ``prclab sweep`` (issue 16): parsed into ranges, log scales and choices; bad input
refused in one line with exit 2 before any trial runs."""

from __future__ import annotations

import pytest

from prclab.cli import main
from prclab.errors import PrclabError
from prclab.experiments.sweep_space import load_space

pytest.importorskip("optuna")

GOOD = """
[sweep]
data = "toy.npz"
folds = 3
seed = 4
[substrate]
units = 30
leak_rate = {low = 0.05, high = 1.0, log = true, points = 3}
units_note = 1
"""


def _space(tmp_path, text: str):
    path = tmp_path / "space.toml"
    path.write_text(text)
    return path


def test_a_space_parses_into_fixed_values_ranges_and_choices(tmp_path):
    path = _space(tmp_path, """
[sweep]
data = "toy.npz"
storage = "sqlite:///runs/s.db"
[substrate]
units = 30
leak_rate = {low = 0.05, high = 1.0, log = true, points = 3}
connectivity = {choices = [0.05, 0.1]}
[encoder]
samples_per_frame = {low = 1, high = 4}
amplitude = {low = 0.2, high = 1}
[readout]
features = {choices = ["mean+last", "bins:4"]}
""")
    space = load_space(path)
    assert space.data == str(tmp_path / "toy.npz") and space.study == "space" and space.folds == 5
    assert space.storage == f"sqlite:///{tmp_path / 'runs' / 's.db'}"  # relative to the file
    assert space.fixed["substrate"] == {"units": 30}
    kinds = {p.key: p.kind for p in space.params}
    assert kinds == {"substrate.leak_rate": "float", "substrate.connectivity": "choice",
                     "encoder.samples_per_frame": "int", "encoder.amplitude": "float",
                     "readout.features": "choice"}
    leak = space.params[0]
    assert leak.grid() == pytest.approx([0.05, 0.05 ** 0.5, 1.0])  # geometric with log
    config = space.config({"substrate.leak_rate": 0.5, "readout.features": "bins:4",
                           "encoder.samples_per_frame": 2})
    assert config == {"substrate": {"units": 30, "leak_rate": 0.5}, "encoder": {"samples_per_frame": 2},
                      "features": "bins:4"}
    assert load_space(path).digest() == space.digest()


@pytest.mark.parametrize("body, message", [
    ("[substrate]\nunits = 30\n", "the space is empty"),
    ("[substrate]\nleak_rat = {low = 0.1, high = 0.9}\n", "unknown parameter 'leak_rat'; did you mean 'leak_rate'"),
    ("[substrate]\nleak_rate = {low = 0.9, high = 0.1}\n", "low (0.9) > high (0.1)"),
    ("[substrate]\nleak_rate = {low = 0.0, high = 0.5, log = true}\n", "a log range needs low > 0"),
    ("[substrate]\nleak_rate = {choices = []}\n", "choices must be a non-empty list"),
    ("[substrate]\nleak_rate = {low = 0.1}\n", "a searched parameter is"),
    ("[substrate]\nseed = {low = 1, high = 3}\n", "is set by the sweep"),
    ("[encoder]\namplitude = {low = 0.5, high = 2.0}\n", "amplitude must lie in"),
    ("[readout]\nfeatures = {choices = [\"bins:x\"]}\n", "unknown part"),
    ("[readout]\nalpha = 3\n", "unknown parameter 'alpha'"),
    ("[knobs]\nx = 1\n", "unknown table 'knobs'"),
])
def test_bad_spaces_are_one_line_and_exit_2(tmp_path, capsys, body, message):
    path = _space(tmp_path, '[sweep]\ndata = "toy.npz"\n' + body)
    with pytest.raises(PrclabError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_space(path)
    assert main(["sweep", str(path), "--trials", "2", "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("prclab: error: space ") and "Traceback" not in err


@pytest.mark.parametrize("head, message", [
    ('substrate = "tomato"', "unknown substrate 'tomato'"),
    ('split = "random"', "split 'random' unknown"),
    ("folds = 1", "folds must be an integer in 2..20"),
    ('colour = "red"', "[sweep] unknown key 'colour'"),
])
def test_bad_sweep_tables_are_refused(tmp_path, head, message):
    path = _space(tmp_path, f'[sweep]\ndata = "toy.npz"\n{head}\n[substrate]\nleak_rate = {{low = 0.1, high = 0.9}}\n')
    with pytest.raises(PrclabError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_space(path)


def test_a_missing_dataset_and_a_bad_export_are_one_line(tmp_path, capsys):
    path = _space(tmp_path, GOOD.replace("units_note = 1\n", ""))
    assert main(["sweep", str(path), "--trials", "2", "--workers", "0"]) == 2
    assert "dataset not found" in capsys.readouterr().err
    assert main(["sweep", str(path), "--trials", "2", "--workers", "0", "--export", str(tmp_path / "t.txt")]) == 2
    assert "must be a .csv file" in capsys.readouterr().err


def test_a_parameter_of_another_substrate_is_refused(tmp_path):
    path = _space(tmp_path, GOOD.replace("units_note = 1\n", ""))
    load_space(path)
    with pytest.raises(PrclabError, match="unknown parameter 'units_note'"):
        load_space(_space(tmp_path, GOOD))
    with pytest.raises(PrclabError, match="unknown parameter 'units'"):
        load_space(_space(tmp_path, GOOD.replace("units_note = 1\n", "").replace("folds = 3", 'substrate = "potato"')))
