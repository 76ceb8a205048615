"""MiniRocket beside every classification score (issue 16, scope 4): aeon's transform on the encoded
stimulus, the project's ridge classifier, the task's own split."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from prclab.cli import main
from prclab.errors import PrclabError
from prclab.experiments.minirocket import minirocket_features, minirocket_score, padded
from prclab.experiments.tasks import run_task
from prclab.protocols.datasets import load_dataset

pytest.importorskip("aeon")


def test_padding_cuts_and_fills_with_the_rest_level():
    a, b = np.arange(6.0).reshape(3, 2), np.ones((7, 2))
    x = padded([a, b], 5, fill=-0.25)
    assert x.shape == (2, 2, 5)  # aeon's (trials, channels, steps)
    np.testing.assert_array_equal(x[0, :, :3], a.T)
    np.testing.assert_array_equal(x[0, :, 3:], -0.25)
    np.testing.assert_array_equal(x[1], 1.0)  # cut to 5 steps
    with pytest.raises(PrclabError, match="sequence 1"):
        padded([a, np.ones((4, 3))], 5)


def test_the_transform_is_fitted_on_training_trials_only():
    rng = np.random.default_rng(0)
    seqs = [rng.normal(size=(int(n), 2)) for n in rng.integers(12, 30, 24)]
    train = np.arange(16)
    changed = seqs[:16] + [100 * s[::-1] for s in seqs[16:]]  # other test trials, far out of range
    a = minirocket_features(seqs, train, n_kernels=84)
    b = minirocket_features(changed, train, n_kernels=84)
    assert a.shape == (24, 84)
    np.testing.assert_array_equal(a[train], b[train])
    assert not np.array_equal(a[16:], b[16:])


def test_frequency_classes_are_told_apart(toy_npz):
    data = load_dataset(toy_npz)
    train, test = np.flatnonzero(data.split == "train"), np.flatnonzero(data.split == "test")
    result = minirocket_score(data.sequences, data.labels, train, test, n_kernels=84 * 4)
    assert result["minirocket_n_features"] == 84 * 4
    assert result["minirocket_accuracy"] >= 0.8  # three sinusoid frequencies; chance is 1/3
    shuffled = data.labels.copy()
    shuffled[test] = np.random.default_rng(1).permutation(shuffled[test])
    again = minirocket_score(data.sequences, shuffled, train, test, n_kernels=84 * 4)
    assert again["minirocket_alpha"] == result["minirocket_alpha"]  # alpha chosen without the test labels


def test_task_reports_minirocket_beside_the_baselines(toy_npz, capsys):
    data = load_dataset(toy_npz)
    result = run_task(data, "esn", size=40)
    assert 0.0 <= result["minirocket_accuracy"] <= 1.0 and result["minirocket_n_features"] > 84
    alone = run_task(dataclasses.replace(data), "esn", size=40, baselines=False)
    assert alone["accuracy"] == result["accuracy"] and "minirocket_accuracy" not in alone
    assert "baseline_accuracy" not in alone
    assert main(["task", "--data", str(toy_npz), "--units", "40", "--features", "mean+last", "--json"]) == 0
    assert 0.0 <= json.loads(capsys.readouterr().out)["minirocket_accuracy"] <= 1.0
    assert main(["task", "--data", str(toy_npz), "--units", "40", "--seeds", "2", "--features", "mean+last"]) == 0
    text = capsys.readouterr().out
    assert "minirocket" in text and "over 2 seeds" in text.split("minirocket")[1]
