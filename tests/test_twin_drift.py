"""Drift: the [drift] reference block in the compiled run and in the recording, and its verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from prclab.cli import main
from prclab.errors import PrclabError
from prclab.experiments.twins.data import load_fit_data
from prclab.experiments.twins.drift import STALE_FACTOR, compare_plays, drift_report
from prclab.protocols.protocol import load_protocol
from prclab.protocols.recording import read_recording
from prclab.protocols.runner import prepare
from prclab.reservoir import make_substrate
from prclab.reservoir.twins import FAMILIES

PROTOCOL = """
[protocol]
sample_rate_hz = 1000.0
seed = 1
block_samples = 100
[device]
spec = "sim:potato"
[substrate]
params = {{ n_outputs = 4, nodes = 4{extra} }}
[stimulus]
electrodes = 2
low_V = -0.5
high_V = 0.5
[task]
dataset = "{dataset}"
max_items = 4
[encoder]
samples_per_frame = 5
[timing]
washout_s = 0.05
rest_s = 0.05
[drift]
{drift}
"""


def _protocol(tmp_path, toy_npz, drift: str, extra: str = ""):
    path = tmp_path / "drift.toml"
    path.write_text(PROTOCOL.format(dataset=toy_npz, drift=drift, extra=extra))
    return path


def test_the_reference_is_played_first_every_n_trials_and_last(tmp_path, toy_npz):
    protocol = load_protocol(_protocol(tmp_path, toy_npz, "reference = true\nreference_every = 3"))
    data, _, trials = prepare(protocol)
    splits = [t.split for t in trials]
    # 8 dataset trials (4 per split): ref, 3, ref, 3, ref, 2, ref (last)
    assert [i for i, s in enumerate(splits) if s == "reference"] == [0, 4, 8, 11]
    refs = [t for t in trials if t.split == "reference"]
    assert [t.repetition for t in refs] == [0, 1, 2, 3]
    first_train = data.ids[np.flatnonzero(data.split == "train")[0]]
    assert {t.item_id for t in refs} == {first_train}
    assert all(np.array_equal(t.stimulus, refs[0].stimulus) for t in refs)
    assert [t.index for t in trials] == list(range(len(trials)))
    named = load_protocol(_protocol(tmp_path, toy_npz, f'reference = true\nreference_id = "{data.ids[-1]}"'))
    assert {t.item_id for t in prepare(named)[2] if t.split == "reference"} == {data.ids[-1]}
    off = load_protocol(_protocol(tmp_path, toy_npz, ""))
    assert "reference" not in {t.split for t in prepare(off)[2]}


@pytest.mark.parametrize("drift, message", [
    ("reference_every = 3", "need reference = true"),
    ("reference = true\nreference_every = -1", r"\[drift\] reference_every"),
    ('reference = true\nreference_id = "nope"', "reference_id 'nope' is no item played"),
    ("reference = true\nevery = 2", "unknown key 'every'")])
def test_bad_drift_tables_are_refused_in_one_line(tmp_path, toy_npz, drift, message):
    with pytest.raises(PrclabError, match=message) as err:
        prepare(load_protocol(_protocol(tmp_path, toy_npz, drift)))
    assert "\n" not in str(err.value)


def _potato(**params):
    return make_substrate("potato", 2, **{"dt": 1e-3, "n_outputs": 4, "nodes": 4, **params})


def test_a_recorded_reference_is_repeatable_and_flags_a_twin_of_another_potato_stale(tmp_path, toy_npz):
    out = tmp_path / "rec.h5"
    assert main(["run", str(_protocol(tmp_path, toy_npz, "reference = true\nreference_every = 2")),
                 "--out", str(out)]) == 0
    rec = read_recording(out)
    assert sum(t.split == "reference" for t in rec.trials) == 5
    skip = 50  # the washout
    alone = drift_report(rec, skip=skip)
    assert alone.plays == 5 and not alone.drifted and alone.stale is None
    assert alone.substrate_pearson > 0.99
    # the model that made the recording, run from rest, as its own twin: near the repeatability
    same = drift_report(rec, _potato(), skip=skip)
    assert same.twin_rmse < same.threshold_rmse and same.stale is False and same.twin_ratio < 1.5
    # a potato 15 degrees warmer (faster electrode kinetics) is far from this recording from the first
    # play on: poor (ratio), not stale (its error did not grow: the substrate did not drift)
    warm = drift_report(rec, _potato(temperature_C=35.0), skip=skip)
    assert warm.twin_ratio > 3 * same.twin_ratio and warm.stale is False
    # a fitted twin family (H1's linear ARX on the recording's training trials) runs free on the reference
    fit = load_fit_data(out)
    linear = FAMILIES["linear"]().fit(fit.train_stimuli, fit.train_responses, fit.dt)
    fitted = drift_report(rec, linear, skip=skip)
    assert 0.6 < fitted.twin_ratio < 1.5 and fitted.stale is False and fitted.twin_pearson > 0.99
    with pytest.raises(PrclabError, match="the twin answers the reference with shape"):
        drift_report(rec, make_substrate("potato", 2, dt=1e-3, n_outputs=3, nodes=4), skip=skip)
    assert drift_report(read_recording(out), skip=skip).to_json()["stale_factor"] == STALE_FACTOR


def test_the_drift_verdict_separates_a_steady_drift_from_play_to_play_noise():
    rng = np.random.default_rng(0)
    base = np.sin(np.linspace(0, 20, 400))[:, None] * np.ones((1, 3))
    noisy = np.stack([base + rng.normal(0, 0.01, base.shape) for _ in range(8)])
    assert not compare_plays(noisy).drifted
    drifting = noisy + 0.02 * np.arange(8)[:, None, None]  # offset grows 0.02 per play: 0.14 over the run
    report = compare_plays(drifting, twin_y=drifting[0])
    assert report.drifted and report.substrate_rmse > 5 * report.repeat_rmse
    assert report.stale and report.twin_then_rmse < report.twin_rmse  # a twin of "then" is stale now
    assert not compare_plays(drifting, twin_y=drifting[-1]).stale  # one of "now" is not
    assert "two reference plays only" in compare_plays(noisy[:2]).note
    with pytest.raises(PrclabError, match="plays >= 2"):
        compare_plays(noisy[:1])
