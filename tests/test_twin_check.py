"""twin check: the free-run NRMSE, its references (repeatability floor, untuned replay, linear baseline)
and readout transfer, on tiny recordings made by ``prclab run`` against the simulated potato."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from prclab.cli import main
from prclab.errors import PrclabError
from prclab.experiments.twins.check import _redriven, floor_responses, nrmse, untuned_replay
from prclab.experiments.twins.transfer import transfer_scores
from prclab.protocols.protocol import parse_protocol
from prclab.protocols.recording import read_recording

from test_spine import PROTOCOL, write_protocol

#: the toy protocol through a particular potato (weights seed 5, not the model's default 0), 4 electrodes
POTATO = (PROTOCOL.replace('"sim:esn"', '"sim:potato"').replace('name = "esn"', 'name = "potato"')
          .replace("{{ units = 60 }}", "{{ n_outputs = 4, seed = 5 }}"))


@pytest.fixture
def potato_rec(tmp_path, toy_npz):
    rec = tmp_path / "rec.h5"
    assert main(["run", str(write_protocol(tmp_path, toy_npz, POTATO)), "--out", str(rec)]) == 0
    return rec


def test_nrmse_is_rmse_over_the_recorded_std_with_the_initial_samples_excluded():
    rng = np.random.default_rng(1)
    recorded = [rng.normal(0, [1.0, 10.0], (50, 2)) for _ in range(3)]
    assert nrmse(recorded, recorded)["pooled"] == 0.0
    skip = 5
    kept = np.concatenate([r[skip:] for r in recorded])
    mean = [np.vstack([np.full((skip, 2), 1e6), np.broadcast_to(kept.mean(axis=0), (45, 2))]) for _ in recorded]
    e = nrmse(recorded, mean, skip)   # the mean prediction misses by exactly the std, channel by channel
    np.testing.assert_allclose(e["per_channel"], [1.0, 1.0])
    assert e["pooled"] == pytest.approx(1.0)
    half = [r + 0.5 * np.array([1.0, 10.0]) * rng.standard_normal(r.shape) for r in recorded]
    assert nrmse(recorded, half)["pooled"] == pytest.approx(0.5, rel=0.15)   # each channel on its own scale
    with pytest.raises(PrclabError, match="one prediction per recorded trial"):
        nrmse(recorded, recorded[:2])


def test_floor_redrives_the_recorded_model_and_the_same_seed_reproduces_the_recording(potato_rec):
    with read_recording(potato_rec) as rec:
        held = [t.index for t in rec.trials if t.split == "test"]
        recorded = [np.asarray(t.response) for t in rec.trials if t.split == "test"]
        same = _redriven(rec, rec.attrs["device"], held, seed_offset=0)
        for a, b in zip(recorded, same):   # to the recording's float32 storage
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * np.abs(a).max())
        a, again, source = floor_responses(rec, held)
    assert source == "simulated model, another noise seed"
    floor = nrmse(a, again, 5)["pooled"]
    with read_recording(potato_rec) as rec:
        protocol = parse_protocol(rec.attrs["protocol_text"], potato_rec)
    replay = nrmse(recorded, untuned_replay(potato_rec, held, protocol), 5)["pooled"]
    assert 0 < floor < replay   # the protocol's potato, weights seed dropped (0), is not the recorded one (5)


def test_floor_uses_the_recordings_own_repeats_when_it_has_them(tmp_path, toy_npz):
    rec_path = tmp_path / "rep.h5"
    text = POTATO.replace("block_samples = 16", "block_samples = 16\nrepetitions = 2")
    assert main(["run", str(write_protocol(tmp_path, toy_npz, text)), "--out", str(rec_path)]) == 0
    with read_recording(rec_path) as rec:
        held = [t.index for t in rec.trials if t.split == "test" and t.repetition == 1]
        a, again, source = floor_responses(rec, held)
        assert source == "repeated stimuli" and len(again) == len(held)
        assert 0 < nrmse(a, again, 5)["pooled"] < 1


def test_transfer_of_an_identical_twin_loses_nothing_and_a_blind_one_everything(tmp_path, toy_npz):
    rec_path = tmp_path / "esn.h5"   # the toy task through the ESN, which solves it (the toy potato barely)
    assert main(["run", str(write_protocol(tmp_path, toy_npz)), "--out", str(rec_path)]) == 0
    with read_recording(rec_path) as rec:
        real = [np.asarray(t.stimulus_window[1]) for t in rec.trials]
        labels = np.array([t.label for t in rec.trials])
        split = np.array([t.split for t in rec.trials])
    train, test = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    same = transfer_scores(real, real, labels, train, test)   # the spec chosen on the training trials
    assert same["native_accuracy"] > 0.6 and same["transfer_accuracy"] == same["native_accuracy"]
    assert same["transfer_gap"] == 0.0 and same["agreement"] == 1.0
    rng = np.random.default_rng(0)
    blind = transfer_scores(real, [rng.standard_normal(r.shape) for r in real], labels, train, test,
                            same["features"])
    assert blind["transfer_accuracy"] < 0.5 and blind["agreement"] < 0.6
    with pytest.raises(PrclabError, match="held-out trials"):
        transfer_scores(real, real, labels, train, [], "mean")


def test_twin_check_end_to_end_json_plots_and_a_foreign_recording(potato_rec, tmp_path, capsys):
    twin = tmp_path / "twin.h5"
    assert main(["twin", "fit", str(potato_rec), "--out", str(twin), "--model", "linear"]) == 0
    capsys.readouterr()
    assert main(["twin", "check", str(twin), str(potato_rec), "--json", "--plot", str(tmp_path / "p")]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n_heldout"] == 18 and r["n_train"] == 42 and r["excluded_samples"] == 5
    assert r["floor_source"] == "simulated model, another noise seed" and len(r["nrmse_per_channel"]) == 4
    assert r["linear_nrmse"] == r["nrmse"]   # the twin is the linear family, fitted on the same trials
    assert r["floor_nrmse"] < r["replay_nrmse"] and r["nrmse"] < r["replay_nrmse"]
    assert 0 <= r["agreement"] <= 1 and r["transfer_gap"] == r["native_accuracy"] - r["transfer_accuracy"]
    assert r["spiking"] is None and r["drift"] is None
    assert all(Path(p).stat().st_size > 10_000 for p in r["plots"]) and len(r["plots"]) == 3
    other = tmp_path / "other.h5"   # the same protocol again: the same trial indices, other responses
    text = POTATO.replace("seed = 3", "seed = 4")
    assert main(["run", str(write_protocol(tmp_path, tmp_path / "toy.npz", text)), "--out", str(other)]) == 0
    capsys.readouterr()
    assert main(["twin", "check", str(twin), str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not the one twin" in err


def _mea(rng, spike_p, bursts, steps=4000, channels=8):
    """Gaussian noise (1 uV) with -10 uV one-sample spikes: Bernoulli(spike_p) per sample and channel,
    and every channel firing at each sample of ``bursts`` (a population burst)."""
    v = rng.normal(0, 1e-6, (steps, channels))
    spikes = rng.random((steps, channels)) < spike_p
    spikes[np.asarray(bursts, int)] = True
    v[spikes] -= 10e-6
    return v


def test_spike_metrics_on_mea_voltages_compare_rates_bursts_and_binned_rates():
    """Voltages reach the spiking figures through the spike detector (``spike_counts``)."""
    from prclab.experiments.twins.spiking_metrics import spike_counts, spiking_comparison

    rng = np.random.default_rng(0)
    bursts = [b + k * 3 for b in (500, 1500, 2500, 3500) for k in range(5)]   # 4 bursts in 4 s, 5 ms each
    recorded = spike_counts([_mea(rng, 0.002, bursts) for _ in range(2)], 1e-3)
    assert all(set(np.unique(c)) <= {0.0, 1.0} for c in recorded)
    same = spiking_comparison(recorded, recorded, dt=1e-3)
    assert same["rate_corr"] == pytest.approx(1.0) and same["rate_error"] == 0.0
    assert same["burst_rate_hz"] == pytest.approx(1.0) and same["burst_rate_error"] == 0.0
    sparse = spiking_comparison(recorded, spike_counts([_mea(rng, 0.0005, bursts[:10]) for _ in range(2)], 1e-3),
                                dt=1e-3)
    assert sparse["model_rate_hz"] < 0.6 * sparse["rate_hz"] and sparse["rate_error"] > 0.4
    assert sparse["model_burst_rate_hz"] == pytest.approx(0.5) and sparse["burst_rate_error"] == pytest.approx(0.5)
    assert 0 < sparse["rate_corr"] < 0.9   # the shared bursts correlate, the independent spikes do not