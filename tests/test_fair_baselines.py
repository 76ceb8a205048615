"""Fair comparisons: each side's feature spec chosen on the training trials only, by one rule, and a
quadratic baseline beside the linear one (issue 12, scope 1)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from prclab.cli import main
from prclab.errors import PrclabError
from prclab.experiments.tasks import (aggregate_seeds, assignments, choose_features, compare_sides,
                                      format_task_result, run_task, training_row_space, with_squares)
from prclab.protocols.datasets import load_dataset
from prclab.readouts.features import FEATURE_CANDIDATES, parse_feature_spec, trial_features
from prclab.reservoir.registry import SUBSTRATES
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
    assert z.shape == (80, 49)  # the training mean removed: rank 49
    assert training_row_space(x[:, :40], train) is None
    full = RidgeClassifier().fit(x[train], labels[train])
    small = RidgeClassifier(standardize=False).fit(z[train], labels[train])
    assert small.alpha_ == full.alpha_
    np.testing.assert_allclose(small.readout_.cv_errors_, full.readout_.cv_errors_, rtol=1e-8)
    np.testing.assert_allclose(small.decision_function(z[test]), full.decision_function(x[test]), atol=1e-10)


def test_brainoware_parts_read_the_training_trials_only():
    """``top:N`` keeps the channels most active on the training trials, ``win:W`` has as many windows as
    the longest training trial: test trials, however active or long, change neither."""
    rng = np.random.default_rng(4)
    responses = [rng.poisson([0.5, 0.05, 0.2, 0.01], (int(n), 4)).astype(float) for n in rng.integers(20, 40, 12)]
    train = np.arange(8)
    loud_test = [r.copy() for r in responses]
    for r in loud_test[8:]:
        r[:, 3] += 5.0                                   # the quietest channel, loudest on test trials
    loud_test[9] = np.ones((400, 4))                     # and one test trial ten times as long
    for trials in (responses, loud_test):
        x = trial_features(trials, "top:2+win:10", train)
        longest = max(len(responses[i]) for i in train)
        assert x.shape == (12, 2 * -(-longest // 10))
        np.testing.assert_allclose(x[0].reshape(-1, 2)[0], responses[0][:10, [0, 2]].mean(axis=0))
    np.testing.assert_allclose(trial_features(responses, "top:2+win:10", train)[:8],
                               trial_features(loud_test, "top:2+win:10", train)[:8])
    assert trial_features(responses, "win:10+top:9", train).shape[1] == 4 * -(-longest // 10)
    with pytest.raises(PrclabError, match="need the training trials"):
        trial_features(responses, "top:2+mean")
    for bad in ("top:2", "detect:0+mean", "detect:5+detect:4+mean", "win:0"):
        with pytest.raises(PrclabError):
            parse_feature_spec(bad)


def test_detect_turns_recorded_voltage_into_the_spike_counts_it_holds():
    rng = np.random.default_rng(5)
    voltage = [rng.normal(0, 5e-6, (200, 3)) for _ in range(4)]
    for i, v in enumerate(voltage):
        v[10:10 + 20 * i:20, 1] -= 80e-6                 # i spikes on channel 1 of trial i
    x = trial_features(voltage, "detect:5+mean")
    np.testing.assert_allclose(x[:, 1] * 200, np.arange(4))
    assert np.all(x[:, [0, 2]] <= 2 / 200)                # noise alone: at most a stray crossing


def test_a_substrates_own_candidates_are_offered_to_every_side_and_its_params_pass_through(toy_npz):
    data = load_dataset(toy_npz)
    result = run_task(data, "organoid", size=60, substrate_params={"recurrent": False, "n_outputs": 6})
    assert result["waveform"] == SUBSTRATES["organoid"].encoder["waveform"] == "binary"
    assert result["encoder"]["samples_per_frame"] == SUBSTRATES["organoid"].encoder["samples_per_frame"]
    assert result["substrate_params"]["params"]["recurrent"] is False
    search = result["feature_search"]
    assert search["candidates"] == list(FEATURE_CANDIDATES) + ["win:10"]
    assert all(set(errors) == set(search["candidates"]) for errors in search["loo_error"].values())
    assert "binary waveform" in format_task_result({"seed": 0, **result})
    assert assignments(["recurrent=false", "waveform=rate", "samples_per_frame=100", "name=abc"], "--param") == \
        {"recurrent": False, "waveform": "rate", "samples_per_frame": 100, "name": "abc"}
    with pytest.raises(PrclabError, match="--param 'recurrent'"):
        assignments(["recurrent"], "--param")
