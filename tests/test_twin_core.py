"""Twin core: families fitted on a recording's training split, the twin file (no code on load, bit-for-bit
predictions, damage detected), the twin as a substrate (streaming, seeds, clone), twin:PATH and
sim:twin:PATH, and one-line errors through the CLI."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from prclab.cli import main
from prclab.errors import PrclabError
from prclab.experiments.twins.data import load_fit_data
from prclab.protocols.recording import read_recording
from prclab.reservoir import make_substrate
from prclab.reservoir.twins import FAMILIES
from prclab.reservoir.twins.file import read_twin, write_twin
from prclab.reservoir.twins.substrate import TwinSubstrate

PROTOCOL = """
[protocol]
name = "tiny"
sample_rate_hz = 1000.0
seed = 1
[device]
spec = "{spec}"
{substrate}[stimulus]
electrodes = {n}
low_V = -0.5
high_V = 0.5
[task]
dataset = "builtin:fsdd-subset"
max_items = 2
[encoder]
kind = "mfcc"
n_mfcc = {n}
samples_per_frame = 2
[timing]
washout_s = 0.02
rest_s = 0.05
"""
POTATO = """[substrate]
params = { n_outputs = 4, nodes = 4 }
"""


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A tiny potato recording and the linear twin fitted on it by the CLI."""
    root = tmp_path_factory.mktemp("twin")
    (root / "p.toml").write_text(PROTOCOL.format(spec="sim:potato", n=3, substrate=POTATO))
    assert main(["run", str(root / "p.toml"), "--out", str(root / "rec.h5")]) == 0
    assert main(["twin", "fit", str(root / "rec.h5"), "--out", str(root / "tw.h5"), "--json"]) == 0
    return root


def test_fit_uses_the_recorded_split_and_writes_provenance(recorded, capsys):
    data = load_fit_data(recorded / "rec.h5")
    twin = read_twin(recorded / "tw.h5")
    prov = twin.provenance
    assert prov["heldout_trials"] == data.heldout_indices and prov["train_trials"] == data.train_indices
    assert set(prov["heldout_trials"]).isdisjoint(prov["train_trials"]) and prov["split"] == "recorded"
    assert prov["trial_checksums"][str(data.train_indices[0])] == data.checksums[data.train_indices[0]] != ""
    assert "tiny" in prov["protocol_text"] and prov["family"] == "linear"
    assert twin.n_inputs == 3 and twin.n_outputs == 4 and twin.dt == pytest.approx(1e-3)


def test_loading_reproduces_predictions_bit_for_bit(recorded):
    data = load_fit_data(recorded / "rec.h5")
    fitted = FAMILIES["linear"]().fit(data.train_stimuli, data.train_responses, data.dt)
    loaded = read_twin(recorded / "tw.h5").family
    u = data.heldout_stimuli[0][None]
    assert np.array_equal(fitted.simulate(u), loaded.simulate(u))
    rng = lambda: [np.random.default_rng(5)]  # noqa: E731
    assert np.array_equal(fitted.simulate(u, rng()), loaded.simulate(u, rng()))
    # the free run beats predicting the training mean on the held-out trials
    rec = data.heldout_responses[0]
    err = np.mean((loaded.simulate(u)[0] - rec) ** 2)
    assert err < 0.5 * np.mean((rec - np.concatenate(data.train_responses).mean(0)) ** 2)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_round_trips_through_the_file(recorded, tmp_path, family):
    data = load_fit_data(recorded / "rec.h5")
    responses = data.train_responses
    if FAMILIES[family].fits == "counts":  # a spiking family models spike counts: Poisson on the stimulus
        rng = np.random.default_rng(3)
        responses = [rng.poisson(0.02 + 0.2 * np.abs(s).sum(1, keepdims=True) * np.ones((1, r.shape[1])))
                     .astype(float) for s, r in zip(data.train_stimuli, responses)]
    fitted = FAMILIES[family]().fit(data.train_stimuli, responses, data.dt)
    write_twin(tmp_path / "t.h5", fitted, {"train_trials": data.train_indices})
    loaded = read_twin(tmp_path / "t.h5").family
    n = min(len(a) for a in data.heldout_stimuli[:2])
    u = np.stack([a[:n] for a in data.heldout_stimuli[:2]])
    assert np.array_equal(fitted.simulate(u), loaded.simulate(u))
    rngs = lambda: [np.random.default_rng(k) for k in range(2)]  # noqa: E731
    assert np.array_equal(fitted.simulate(u, rngs()), loaded.simulate(u, rngs()))
    state, streams = loaded.initial_state(2), rngs()   # block by block with the same noise streams
    first, state = loaded.step_block(state, u[:, :40], streams)
    rest, _ = loaded.step_block(state, u[:, 40:], streams)
    np.testing.assert_allclose(np.concatenate([first, rest], 1), loaded.simulate(u, rngs()), rtol=1e-9, atol=1e-12)
    units = loaded.units()
    assert len(np.unique(units["id"])) == len(units["id"]) and units["id"].dtype == np.int64
    pre, post, _ = loaded.edges()
    assert np.isin(pre, units["id"]).all() and np.isin(post, units["id"]).all()


def test_twin_substrate_streams_seeds_and_clones(recorded):
    sub = TwinSubstrate(str(recorded / "tw.h5"))
    u = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 120, 3))
    sub.reset(7)
    whole = sub.run(u)
    sub.reset(7)
    first = sub.run(u[:, :50])
    saved = sub.state
    rest = sub.run(u[:, 50:])
    assert np.array_equal(np.concatenate([first, rest], 1), whole)
    sub.load_state(saved)
    assert np.array_equal(sub.run(u[:, 50:]), rest)
    sub.reset(8)
    assert not np.array_equal(sub.run(u), whole)
    copies = sub.clone(3)
    copies.reset(0)
    y = copies.run(u[0])
    assert y.shape == (3, 120, 4) and not np.array_equal(y[0], y[1])
    quiet = TwinSubstrate(str(recorded / "tw.h5"), noise=False).clone(2)
    y = quiet.run(u[0])
    assert np.array_equal(y[0], y[1])
    assert sub.describe()["derived"]["sha256"] == read_twin(recorded / "tw.h5").sha256


def test_twin_path_in_the_registry_and_behind_a_sim_device(recorded):
    tw = recorded / "tw.h5"
    assert make_substrate(f"twin:{tw}", 3).n_outputs == 4
    with pytest.raises(PrclabError, match="n_inputs = 3, 5 asked"):
        make_substrate(f"twin:{tw}", 5)
    (recorded / "q.toml").write_text(PROTOCOL.format(spec=f"sim:twin:{tw}", n=3, substrate=""))
    assert main(["run", str(recorded / "q.toml"), "--out", str(recorded / "rec_twin.h5")]) == 0
    with read_recording(recorded / "rec_twin.h5") as rec:
        described = rec.attrs["substrate"]
    assert described["model"] == f"twin:{tw}" and described["derived"]["sha256"] == read_twin(tw).sha256


def test_bad_inputs_are_one_line_and_exit_2(recorded, tmp_path, capsys):
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes((recorded / "tw.h5").read_bytes())
    with h5py.File(damaged, "r+") as f:
        f["family/W"][0, 0] += 1.0
    foreign = tmp_path / "foreign.h5"
    foreign.write_bytes(b"not hdf5 at all")
    capsys.readouterr()
    for path, words in ((damaged, "sha256"), (foreign, "damaged or not HDF5")):
        assert main(["twin", "fit", str(recorded / "rec.h5"), "--out", str(tmp_path / "x.h5"),
                     "--model", "nope"]) == 2
        with pytest.raises(PrclabError, match=words):
            read_twin(path)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("unknown model 'nope'" in line for line in err)
    # a recording with no held-out trials: one trial only
    one = tmp_path / "one.h5"
    with h5py.File(recorded / "rec.h5") as src, h5py.File(one, "w") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        src.copy(src["trials"], dst, "trials")
        for name in list(dst["trials"])[1:]:
            del dst["trials"][name]
    assert main(["twin", "fit", str(one), "--out", str(tmp_path / "y.h5")]) == 2
    assert "no held-out trials" in capsys.readouterr().err
    (tmp_path / "r.toml").write_text(PROTOCOL.format(spec=f"sim:twin:{recorded / 'tw.h5'}", n=2, substrate=""))
    assert main(["run", str(tmp_path / "r.toml"), "--out", str(tmp_path / "z.h5")]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "n_inputs = 3, 2 asked" in line


def test_best_fits_the_families_of_the_recordings_kind(recorded, tmp_path, capsys):
    """A voltage recording: every signal family is tried (each its validation NRMSE), the spiking family
    is not, and the lowest validation error wins."""
    capsys.readouterr()
    assert main(["twin", "fit", str(recorded / "rec.h5"), "--out", str(tmp_path / "b.h5"), "--model", "best",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    signal_families = {n for n, f in FAMILIES.items() if f.fits == "signals"}
    assert set(out["validation_nrmse"]) == signal_families and "spiking" not in signal_families
    assert out["family"] == min(out["validation_nrmse"], key=out["validation_nrmse"].get)
    assert read_twin(tmp_path / "b.h5").provenance["family"] == out["family"]


@pytest.mark.parametrize("n_own", [0, 1, 4])
@pytest.mark.parametrize("alpha", [1e-6, 1e-3])
def test_the_shared_factorisation_solves_every_channel_as_its_own_system_does(n_own, alpha):
    """``Grams.solve`` (the feature block factored once, own lags on the Schur complement) gives every
    channel's ridge solution as solving that channel's whole system does (``solve_each``)."""
    from prclab.reservoir.twins.linear import Grams

    rng = np.random.default_rng(3)
    grams = Grams(40, 6, 4)
    for _ in range(3):
        F = rng.normal(size=(500, 40)) @ rng.normal(size=(40, 40))
        grams.add(F, F @ rng.normal(size=(40, 6)) * 0.1 + np.cumsum(rng.normal(size=(500, 6)), 0) * 0.01)
    cols = np.arange(0, 40, 2)
    for fast, each in zip(grams.solve(cols, n_own, alpha), grams.solve_each(cols, n_own, alpha)):
        assert fast.shape == each.shape
        np.testing.assert_allclose(fast, each, rtol=1e-9, atol=1e-12 * np.abs(each).max(initial=1.0))


@pytest.mark.parametrize("T", [0, 3, 50])
def test_lagged_grams_from_the_base_signals_equal_those_of_the_lagged_matrix(T):
    """``Grams.add_lagged`` (Toeplitz blocks from the base signals) accumulates what ``add`` does on
    ``input_lags``' matrix, for trials longer and shorter than the lags, and empty ones."""
    from prclab.reservoir.twins.linear import Grams, input_lags

    rng = np.random.default_rng(4)
    direct, lagged = Grams(5 * 3, 2, 3), Grams(5 * 3, 2, 3)
    for _ in range(2):
        x, y = rng.normal(size=(T, 3)), rng.normal(size=(T, 2))
        direct.add(input_lags(x[None], 5)[0], y)
        lagged.add_lagged(x, 5, y)
    for name in ("FF", "F1", "FY", "FL", "LL", "LY", "L1", "Y1", "n"):
        np.testing.assert_allclose(getattr(lagged, name), getattr(direct, name), rtol=1e-12, atol=1e-12)
    x, y = rng.normal(size=(T + 7, 3)), rng.normal(size=(T + 7, 2))   # sums of Grams, lagged and dense
    other_lagged, other_direct = Grams(5 * 3, 2, 3), Grams(5 * 3, 2, 3)
    other_lagged.add_lagged(x, 5, y)
    other_direct.add(input_lags(x[None], 5)[0], y)
    for total in (lagged + other_lagged, lagged + other_direct, direct + other_lagged):
        np.testing.assert_allclose(total.FF, (direct + other_direct).FF, rtol=1e-12, atol=1e-12)
    lagged.add_lagged(x, 5, y)   # a trial added after the Gram was read is in it
    np.testing.assert_allclose(lagged.FF, (direct + other_direct).FF, rtol=1e-12, atol=1e-12)


def test_the_lagged_product_is_the_lagged_matrix_times_the_weights():
    from prclab.reservoir.twins.linear import input_lags, lagged_product

    rng = np.random.default_rng(5)
    u, hist, W = rng.normal(size=(2, 30, 3)), rng.normal(size=(2, 4, 3)), rng.normal(size=(15, 4))
    np.testing.assert_allclose(lagged_product(u, W, hist), input_lags(u, 5, hist) @ W, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lagged_product(u, W[:3], hist[:, :0]), u @ W[:3], rtol=1e-12, atol=1e-12)
    none = np.zeros((2, 30, 0))  # a record-only recording: no stimulus channel
    assert np.all(lagged_product(none, np.zeros((0, 4)), np.zeros((2, 4, 0))) == 0)


def test_the_residual_noise_fit_reads_the_noise_not_a_trials_start_transient():
    """AR(1) noise of known std and rho, with a decaying excursion at the start of every trial (the
    substrate still carrying the trial before, above the noise for about 50 of 600 samples): without it the
    fit gives the noise's figures; with it the fit's excess over the noise is under a fifth of the plain
    std's (measured 1.60x and 4.62x the noise's std)."""
    from scipy.signal import lfilter

    from prclab.reservoir.twins.base import ResidualNoise

    rng = np.random.default_rng(2)
    std, rho = 2e-5, 0.3
    trials = []
    for _ in range(50):
        e = lfilter([1.0], [1.0, -rho], np.sqrt(1 - rho ** 2) * std * rng.standard_normal((600, 2)), axis=0)
        e[:, 1] += 40 * std * np.exp(-np.arange(600) / 15.0)          # channel 1: a start transient
        trials.append(e)
    fitted = ResidualNoise.fit(trials)
    plain = np.concatenate([t - t.mean(axis=0) for t in trials]).std(axis=0)
    assert abs(fitted.std[0] / std - 1) < 0.03 and abs(fitted.rho[0] - rho) < 0.03
    assert abs(plain[0] / std - 1) < 0.03                 # clean noise: the same as the plain std
    assert fitted.std[1] / std - 1 < 0.2 * (plain[1] / std - 1), (fitted.std, plain)
