"""prclab report: figures and summary from a recording and from result JSONs."""

from __future__ import annotations

import json

import matplotlib.image as mpimg
import pytest

from prclab.cli import main
from prclab.protocols.recording import read_recording
from prclab.experiments.report import response_unit, write_report

from conftest import FSDD_SUBSET
from test_spine import write_protocol


def assert_drawn(path, min_size=(300, 300)):
    """A PNG that holds a picture: big enough and not one flat colour."""
    image = mpimg.imread(path)
    assert image.shape[0] >= min_size[0] and image.shape[1] >= min_size[1]
    assert image[..., :3].std() > 0.05


def test_report_from_a_recording(tmp_path, toy_npz, capsys):
    rec = tmp_path / "rec.h5"
    assert main(["run", str(write_protocol(tmp_path, toy_npz)), "--out", str(rec)]) == 0
    assert main(["report", str(rec), "--out", str(tmp_path / "rep")]) == 0
    assert "summary.md" in capsys.readouterr().out
    for name in ("confusion.png", "trials.png", "ridge_parameter.png"):
        assert_drawn(tmp_path / "rep" / name)
    summary = (tmp_path / "rep" / "summary.md").read_text()
    assert "| test accuracy |" in summary and "![test confusion matrix](confusion.png)" in summary
    assert response_unit(read_recording(rec).attrs) == "V"   # labels the response heat maps


def test_response_unit_needs_one_unit_from_a_well_formed_description():
    assert response_unit({"device": {"response": [{"unit": "A"}, {"unit": "A"}]}}) == "A"
    assert response_unit({"device": {"response": [{"unit": "A"}, {"unit": "V"}]}}) == ""
    for attrs in ({}, {"device": "text"}, {"device": {"response": 3}}, {"device": {"response": [1, {}]}}):
        assert response_unit(attrs) == ""


def test_report_from_task_json_over_seeds(tmp_path, capsys):
    assert main(["task", "--data", str(FSDD_SUBSET), "--units", "60", "--seeds", "2", "--json"]) == 0
    result_path = tmp_path / "result.json"
    result_path.write_text(capsys.readouterr().out)
    result = json.loads(result_path.read_text())
    summary = write_report(result_path, tmp_path / "rep").read_text()
    for name in ("confusion.png", "ridge_parameter.png", "seeds.png"):
        assert_drawn(tmp_path / "rep" / name)
    assert f"{result['accuracy_mean']:.3f} ± {result['accuracy_std']:.3f}" in summary


def test_report_from_characterisation_and_regression(tmp_path, capsys):
    assert main(["characterize", "--units", "40", "--json"]) == 0
    (tmp_path / "char.json").write_text(capsys.readouterr().out)
    summary = write_report(tmp_path / "char.json", tmp_path / "c").read_text()
    assert_drawn(tmp_path / "c" / "memory_curve.png")
    assert "| memory capacity |" in summary
    assert main(["task", "--task", "narma10", "--units", "40", "--json"]) == 0
    (tmp_path / "narma.json").write_text(capsys.readouterr().out)
    summary = write_report(tmp_path / "narma.json", tmp_path / "n").read_text()
    assert_drawn(tmp_path / "n" / "prediction.png")
    assert "| test NRMSE |" in summary


@pytest.mark.parametrize("content, suffix, message", [
    ("{not json", ".json", "not a JSON result"),
    ('{"nothing": 1}', ".json", "holds no result prclab can draw"),
    ("x", ".dat", "expected a recording"),
    ("x", ".txt", "brainflow file"),  # a recording suffix prclab train reads: that reader's one line
])
def test_report_errors_name_the_problem(tmp_path, content, suffix, message, capsys):
    path = tmp_path / f"bad{suffix}"
    path.write_text(content)
    assert main(["report", str(path), "--out", str(tmp_path / "r")]) == 2
    assert message in capsys.readouterr().err


def test_plots_leave_the_users_matplotlib_backend_alone(tmp_path, toy_npz, capsys):
    """A notebook user's backend must survive prclab's plots: they draw on ``Figure`` objects, no pyplot."""
    import subprocess
    import sys

    code = ("import matplotlib; matplotlib.use('svg'); "
            "from prclab.cli import main; import sys; "
            "rc = main(['report', sys.argv[1], '--out', sys.argv[2]]); "
            "assert rc == 0, rc; print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)")
    proto = write_protocol(tmp_path, toy_npz)
    assert main(["run", str(proto), "--out", str(tmp_path / "r.h5")]) == 0
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r.h5"), str(tmp_path / "rep")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "svg False"  # backend kept, pyplot never imported


def test_report_of_seeds_shows_every_baseline_and_each_sides_features(tmp_path, toy_npz):
    from prclab.experiments.tasks import run_tasks

    result = run_tasks(toy_npz, substrate="esn", size=30, seeds=2)
    (tmp_path / "r.json").write_text(json.dumps(result))
    summary = write_report(tmp_path / "r.json", tmp_path / "rep").read_text()
    assert "| quadratic baseline (mean ± std) |" in summary
    for side in ("features", "baseline_features", "quadratic_baseline_features"):
        assert f"| {side.replace('_', ' ')} (per seed) | `{', '.join(result[side + '_per_seed'])}` |" in summary
    assert_drawn(tmp_path / "rep" / "seeds.png")
