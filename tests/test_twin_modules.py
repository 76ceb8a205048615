"""twin modules: groups parsed or refused in one line; on a known coupled linear system the teacher-forced
modules are accurate, stage 0 is the recording, every replacement is measured; the CLI prints the table,
writes the plot and the JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prclab.cli import main
from prclab.errors import PrclabError
from prclab.experiments.twins.data import FitData
from prclab.experiments.twins.modules import fc_distance, module_by_module, parse_groups


def coupled(n_trials: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """4 channels, 1 input: channels 2-3 are driven by channels 0-1 one sample late (module B by A)."""
    rng = np.random.default_rng(seed)
    us, ys = [], []
    for _ in range(n_trials):
        u = np.repeat(rng.uniform(-1, 1, (15, 1)), 10, axis=0)
        y = np.zeros((150, 4))
        for t in range(1, 150):
            y[t, 0] = 0.7 * y[t - 1, 0] + 0.5 * u[t, 0]
            y[t, 1] = 0.5 * y[t - 1, 1] - 0.3 * u[t, 0]
            y[t, 2] = 0.6 * y[t - 1, 2] + 0.4 * y[t - 1, 0]
            y[t, 3] = 0.4 * y[t - 1, 3] + 0.5 * y[t - 1, 1] - 0.2 * y[t - 1, 0]
        us.append(u)
        ys.append(y + rng.normal(0, 0.01, y.shape))
    return us, ys


def fit_data() -> FitData:
    (tu, ty), (hu, hy) = coupled(12, 0), coupled(5, 1)
    return FitData(tu, ty, hu, hy, list(range(12)), list(range(12, 17)), {}, 1e-3, "", "by index", "synthetic")


def test_groups_are_parsed_or_refused():
    assert parse_groups("0-1+3,2", None, 4) == [[0, 1, 3], [2]]
    assert parse_groups(None, 2, 5) == [[0, 1, 2], [3, 4]]
    for spec in ("0-2", "0-1,1-3", "0-1,x"):
        with pytest.raises(PrclabError) as info:
            parse_groups(spec, None, 4)
        assert "\n" not in str(info.value)


def test_replacing_modules_one_at_a_time_on_a_coupled_system():
    data = fit_data()
    report = module_by_module(data, [[0, 1], [2, 3]], "linear")
    stages = report.stages
    assert [s["k"] for s in stages] == [0, 1, 2] and stages[0]["nrmse"] == 0 == stages[0]["fc_distance"]
    assert all(0 < a < 0.1 for a in report.alone)                 # teacher forced: near the noise
    assert 0 < stages[1]["nrmse"] <= stages[2]["nrmse"] < 0.15     # free running all: still close
    assert stages[2]["fc_distance"] < 0.05 and report.whole["nrmse"] < 0.15
    y = data.heldout_responses
    assert fc_distance(y, y) == 0.0


def test_cli_table_plot_and_json(tmp_path, capsys):
    toml = tmp_path / "p.toml"
    toml.write_text("""
[protocol]
name = "mod"
sample_rate_hz = 1000.0
seed = 1
[device]
spec = "sim:potato"
[substrate]
params = { n_outputs = 4, nodes = 4 }
[stimulus]
electrodes = 2
low_V = -0.5
high_V = 0.5
[task]
dataset = "builtin:fsdd-subset"
max_items = 6
[encoder]
kind = "mfcc"
n_mfcc = 2
samples_per_frame = 2
[timing]
washout_s = 0.02
rest_s = 0.05
""")
    assert main(["run", str(toml), "--out", str(tmp_path / "rec.h5")]) == 0
    capsys.readouterr()
    assert main(["twin", "modules", str(tmp_path / "rec.h5"), "--modules", "2", "--plot", str(tmp_path / "m.png")]) == 0
    out = capsys.readouterr().out
    assert "+module 1" in out and "one twin" in out and (tmp_path / "m.png").stat().st_size > 1000
    assert main(["twin", "modules", str(tmp_path / "rec.h5"), "--groups", "0+2,1+3", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["groups"] == [[0, 2], [1, 3]] and len(got["stages"]) == 3 and len(got["module_teacher_forced_nrmse"]) == 2
    assert main(["twin", "modules", str(tmp_path / "rec.h5"), "--groups", "0-1"]) == 2
    assert "need at least 2 groups" in capsys.readouterr().err
