"""Fair comparisons: each side's feature spec chosen on the training trials only, by one rule, and a
quadratic baseline beside the linear one (issue 12, scope 1)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from prclab.cli import main
from prclab.experiments.tasks import (aggregate_seeds, choose_features, compare_sides, format_task_result,
                                      run_task, training_row_space, with_squares)
from prclab.protocols.datasets import load_dataset
from prclab.readouts.features import FEATURE_CANDIDATES
from prclab.readouts.ridge import RidgeClassifier

SIDES = ("", "baseline_", "quadratic_baseline_")


def test_the_choice_never_sees_the_test_split(toy_npz):
    data = load_dataset(toy_npz)
    test = data.split == "test"
    labels = data.labels.copy()
    labels[test] = np.random.default_rng(1).permutation(labels[test])
    shuffled = dataclasses.replace(data, labels=labels)
    a, b = run_task(data, "esn", size=60), run_task(shuffled, "esn", size=60)
    for prefix in SIDES:
        assert a[f"{prefix}features"] == b[f"{prefix}features"]
        assert a[f"{prefix}features"] in FEATURE_CANDIDATES
    assert a["feature_search"] == b["feature_search"]  # the leave-one-out errors too, to the last bit
    assert a["feature_search"]["candidates"] == list(FEATURE_CANDIDATES)


def test_the_lowest_training_error_wins_and_a_given_spec_is_not_searched(toy_npz):
    data = load_dataset(toy_npz)
    train = np.flatnonzero(data.split == "train")
    chosen = choose_features(data.sequences, data.labels, train)
    errors = chosen["loo_error"]
    assert chosen["features"] == min(errors, key=errors.get)
    assert chosen["x"].shape[0] == len(data.sequences)
    given = choose_features(data.sequences, data.labels, train, features="bins:3")
    assert given["features"] == "bins:3" and "loo_error" not in given


def test_cli_honours_features_and_reports_every_side(toy_npz, capsys):
    assert main(["task", "--data", str(toy_npz), "--units", "40", "--features", "bins:2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["feature_search"] == "given"
    assert [result[f"{p}features"] for p in SIDES] == ["bins:2"] * 3
    assert main(["task", "--data", str(toy_npz), "--units", "40"]) == 0
    text = capsys.readouterr().out
    assert "quadratic baseline" in text and text.count("chosen on training trials") == 3


def _variance_classes(n: int = 160, steps: int = 50, seed: int = 0):
    """Zero-mean noise whose standard deviation (0.5 or 1.5) is the class: only a square tells them apart."""
    rng = np.random.default_rng(seed)
    labels = np.array(["quiet", "loud"])[np.arange(n) % 2]
    sequences = [rng.normal(0.0, 0.5 if y == "quiet" else 1.5, (steps, 2)) for y in labels]
    return sequences, labels, np.arange(n) < n // 2  # the first half trains (both classes alternate)


def test_the_quadratic_baseline_solves_what_needs_a_square_and_the_linear_cannot():
    sequences, labels, is_train = _variance_classes()
    train, test = np.flatnonzero(is_train), np.flatnonzero(~is_train)
    fields, _ = compare_sides(sequences, sequences, labels, train, test)
    assert fields["quadratic_baseline_accuracy"] >= 0.95
    assert fields["baseline_accuracy"] <= 0.7  # chance is 0.5: a linear readout of symmetric noise
    squared = with_squares(sequences[:1])[0]
    np.testing.assert_array_equal(squared[:, 2:], sequences[0] ** 2)


def test_seeds_aggregate_the_quadratic_baseline_and_the_choices():
    runs = [{"seed": s, "accuracy": a, "baseline_accuracy": 0.5, "quadratic_baseline_accuracy": q,
             "features": f, "baseline_features": "bins:8", "quadratic_baseline_features": "bins:4",
             "seconds": 1.0, "substrate": "esn", "split": "official", "n_test": 4, "n_train": 8,
             "n_classes": 2, "chance": 0.5, "feature_search": {}}
            for s, a, q, f in ((0, 0.9, 0.6, "mean+last"), (1, 0.7, 0.8, "bins:4"))]
    out = aggregate_seeds(runs, "accuracy", {"baseline_accuracy": "baseline",
                                             "quadratic_baseline_accuracy": "quadratic_baseline"})
    assert out["quadratic_baseline_mean"] == 0.7 and np.isclose(out["quadratic_baseline_std"], 0.1)
    assert out["features_per_seed"] == ["mean+last", "bins:4"]
    assert "features mean+last, bins:4" in format_task_result(out)


def test_the_training_row_space_changes_nothing_but_the_cost():
    rng = np.random.default_rng(0)
    labels = np.array(list("abc"))[rng.integers(0, 3, 80)]
    x = rng.normal(size=(80, 300)) * rng.uniform(0.1, 10, 300) + 5 * rng.normal(size=300)
    x[:, :3] += 2.0 * (labels == "a")[:, None]
    train, test = np.arange(50), np.arange(50, 80)
    z = training_row_space(x, train)
    assert z.shape == (80, 50) and training_row_space(x[:, :40], train) is None
    full = RidgeClassifier().fit(x[train], labels[train])
    small = RidgeClassifier(standardize=False).fit(z[train], labels[train])
    assert small.alpha_ == full.alpha_
    np.testing.assert_allclose(small.readout_.cv_errors_, full.readout_.cv_errors_, rtol=1e-8)
    np.testing.assert_allclose(small.decision_function(z[test]), full.decision_function(x[test]), atol=1e-10)
