"""The spiking twin family (reservoir.twins.spiking), its metrics and its SONATA export, on a small
simulated organoid's spike counts."""

import json

import h5py
import numpy as np
import pytest

from prclab.errors import PrclabError
from prclab.experiments.twins.spiking_metrics import spiking_comparison
from prclab.reservoir.organoid import OrganoidModel
from prclab.reservoir.twins import FAMILIES
from prclab.reservoir.twins.sonata import export_sonata
from prclab.reservoir.twins.spiking import SpikingTwin, burst_onsets


@pytest.fixture(scope="module")
def organoid_trials():
    """8 trials of 1 s: binary pulses every 50 ms on 2 electrodes of the default 1000-neuron organoid, 8 electrodes."""
    model = OrganoidModel(n_inputs=2, n_outputs=8, seed=0)
    rng = np.random.default_rng(0)
    u = np.zeros((8, 1000, 2))
    u[:, ::50] = 0.45 * (rng.random((8, 20, 2)) < 0.5)
    model.reset(1)
    y = model.run(u)
    return list(u), list(y), 1e-3


@pytest.fixture(scope="module")
def twin(organoid_trials):
    u, y, dt = organoid_trials
    return SpikingTwin(window_edges_ms=(0, 2, 5, 20, 50, 200)).fit(u[:6], y[:6], dt)


def test_registered():
    assert FAMILIES["spiking"] is SpikingTwin


def test_emits_counts_with_the_recorded_rate(organoid_trials, twin):
    u, y, dt = organoid_trials
    sim = twin.simulate(np.stack(u[:6]), [np.random.default_rng(i) for i in range(6)])
    assert sim.shape == (6, 1000, 8)
    assert np.all(sim >= 0) and np.all(sim == np.round(sim))
    recorded = np.mean([r.sum() for r in y[:6]])
    assert abs(sim.sum(axis=(1, 2)).mean() - recorded) < 0.3 * recorded


def test_streams_and_round_trips_bit_for_bit(organoid_trials, twin):
    u = np.stack(organoid_trials[0][6:])
    whole = twin.simulate(u, [np.random.default_rng(5), np.random.default_rng(6)])
    rngs = [np.random.default_rng(5), np.random.default_rng(6)]
    state, parts = twin.initial_state(2), []
    for a, b in ((0, 137), (137, 600), (600, 1000)):
        y, state = twin.step_block(state, u[:, a:b], rngs)
        parts.append(y)
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), whole)
    arrays, attrs = twin.to_arrays()
    again = SpikingTwin.from_arrays(arrays, attrs)
    np.testing.assert_array_equal(again.simulate(u, [np.random.default_rng(5), np.random.default_rng(6)]), whole)


def test_a_session_run_carries_the_state_from_trial_to_trial(organoid_trials, twin):
    """simulate_session plays the trials in index order, each from where the one before left the twin:
    each run the same events as one run over the trials end to end on its stream, and not those of
    each trial from rest."""
    from types import SimpleNamespace

    from prclab.experiments.twins.check import simulate_session

    u = organoid_trials[0]
    trials = [SimpleNamespace(index=i, stimulus=u[i]) for i in (7, 5, 6)]    # any order: played by index
    got, again = simulate_session(twin, trials, [7, 6], seeds=(3, 4))
    whole, _ = twin.step_block(twin.initial_state(1), np.concatenate([u[5], u[6], u[7]])[None],
                               [np.random.default_rng(3)])
    np.testing.assert_array_equal(got[0], whole[0, 2000:])
    np.testing.assert_array_equal(got[1], whole[0, 1000:2000])
    alone, _ = twin.step_block(twin.initial_state(1), u[7][None], [np.random.default_rng(3)])
    assert not np.array_equal(got[0], alone[0])
    assert not np.array_equal(got[0], again[0])    # the second run, on its own stream


def test_refuses_voltages(organoid_trials):
    u, y, dt = organoid_trials
    with pytest.raises(PrclabError, match="not spike counts"):
        SpikingTwin().fit(u[:2], [r * 1e-6 for r in y[:2]], dt)


def test_metrics(organoid_trials, twin):
    u, y, dt = organoid_trials
    same = spiking_comparison(y, y, dt)
    assert same["rate_corr"] == pytest.approx(1.0) and same["rate_error"] == 0.0
    sim = list(twin.simulate(np.stack(u[6:]), [np.random.default_rng(1), np.random.default_rng(2)]))
    other = spiking_comparison(y[6:], sim, dt)
    assert -1 <= other["rate_corr"] < 1 and other["model_rate_hz"] > 0
    with pytest.raises(PrclabError, match="same non-zero number"):
        spiking_comparison(y[:2], y[:1], dt)


def test_sonata_structure(tmp_path, organoid_trials, twin):
    u = organoid_trials[0][6]
    spikes = twin.simulate(u[None], [np.random.default_rng(0)])[0]
    paths = export_sonata(twin, tmp_path, spikes)
    with h5py.File(paths["nodes"]) as f:
        assert f.attrs["magic"] == 0x0A7A and list(f.attrs["version"]) == [0, 1]
        ids = {pop: f[f"nodes/{pop}/node_id"][()] for pop in f["nodes"]}
        for pop, node_ids in ids.items():
            g = f[f"nodes/{pop}"]
            assert len(np.unique(node_ids)) == len(node_ids)
            assert len(g["node_type_id"]) == len(g["node_group_id"]) == len(g["node_group_index"]) == len(node_ids)
            for column in g["0"].values():
                assert len(column) == len(node_ids)
    assert len(ids["stimulus"]) == 2 and len(ids["twin"]) == 9
    types = np.loadtxt(paths["node_types"], skiprows=1, usecols=0, dtype=int)
    with h5py.File(paths["nodes"]) as f:
        assert set(f["nodes/twin/node_type_id"][()]) <= set(types)
    with h5py.File(paths["edges"]) as f:
        for name, g in f["edges"].items():
            for key in ("source_node_id", "target_node_id"):
                pop = g[key].attrs["node_population"]
                assert np.isin(g[key][()], ids[pop]).all(), (name, key)
            n = len(g["source_node_id"])
            assert len(g["target_node_id"]) == len(g["edge_type_id"]) == len(g["0/syn_weight"]) == len(g["0/delay"]) == n
            assert np.all(g["0/delay"][()] >= 0)
    with h5py.File(paths["spikes"]) as f:
        g = f["spikes/twin"]
        t = g["timestamps"][()]
        assert g.attrs["sorting"] == "by_time" and np.all(np.diff(t) >= 0)
        assert len(t) == spikes.sum() and np.isin(g["node_ids"][()], ids["twin"]).all()


ORGANOID = """
[protocol]
sample_rate_hz = 1000.0
seed = 0
[device]
spec = "sim:organoid"
[substrate]
name = "organoid"
params = {{ n_outputs = 8 }}
[stimulus]
electrodes = 2
low_V = -0.5
high_V = 0.5
[task]
dataset = "{dataset}"
max_items = 8
[encoder]
samples_per_frame = 20
waveform = "rate"
biphasic = true
[timing]
washout_s = 0.01
rest_s = 0.01
[safety]
impedance_ohm = 1e5
living = true
max_dc_charge_C = 2e-8
dc_window_s = 1.0
"""


def test_an_organoid_recording_gets_a_spiking_twin_checked_against_its_floor(toy_npz, tmp_path, capsys):
    """prclab run on the organoid (spike counts) -> twin fit --model best (only the counts families) ->
    twin check: spiking figures for the twin and the repeatability floor (the model re-driven, seed + 1)."""
    from prclab.cli import main

    (tmp_path / "o.toml").write_text(ORGANOID.format(dataset=toy_npz))
    assert main(["run", str(tmp_path / "o.toml"), "--out", str(tmp_path / "o.h5")]) == 0
    capsys.readouterr()
    assert main(["twin", "fit", str(tmp_path / "o.h5"), "--out", str(tmp_path / "t.h5"), "--model", "best",
                 "--json"]) == 0
    fit = json.loads(capsys.readouterr().out)
    assert fit["family"] == "spiking" and list(fit["validation_nrmse"]) == ["spiking"]
    assert main(["twin", "check", str(tmp_path / "t.h5"), str(tmp_path / "o.h5"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)["spiking"]
    assert s["rate_hz"] > 0 and s["model_rate_hz"] > 0 and 0 <= s["rate_error"] < 1.0
    assert -1 <= s["rate_corr"] <= 1 and -1 <= s["floor_rate_corr"] <= 1
    assert s["runs"] == 4 and s["rate_corr_sem"] >= 0   # the mean of the twin's session runs, with its error
    assert 0 <= s["floor_rate_error"] < 1.0  # two plays of the same stimuli differ by sampling alone
    onset = s["onset"]   # the burst recovery, recorded and twin, over the whole session
    n_bins = len(onset["age_bins_s"]) - 1
    assert len(onset["recorded"]) == len(onset["twin"]) == len(onset["recorded_trials"]) == n_bins
    assert len(onset["twin_runs"]) == s["runs"]
    assert all(p is None or 0 <= p <= 1 for p in onset["recorded"] + onset["twin"])
    assert main(["twin", "check", str(tmp_path / "t.h5"), str(tmp_path / "o.h5")]) == 0
    text = capsys.readouterr().out
    assert "rate correlation" in text and f"floor {s['floor_rate_error']:.0%})" in text
    assert "of a trial's first stimulus" in text


def test_a_burst_soon_after_another_is_smaller_as_recorded():
    """The burst size depends on the time since the burst before (depressed synapses): a raster whose
    second burst, 150 ms after the first, is a third of its size is fitted so, and the twin's own
    bursts soon after another come out smaller than its first ones."""
    rng = np.random.default_rng(0)
    n_trials, steps, units = 40, 1000, 16
    y = rng.poisson(0.002, (n_trials, steps, units)).astype(float)
    y[:, 200:250] += rng.poisson(0.3, (n_trials, 50, units))
    y[:, 350:400] += rng.poisson(0.1, (n_trials, 50, units))
    u = np.zeros((n_trials, steps, 1))
    twin = SpikingTwin().fit(list(u), list(y), 1e-3, burst_starts=[np.array([200, 350])] * n_trials)
    soon, rested = twin.size_gain_[twin._category(np.array([150, 10 ** 6]))]
    assert 0.25 < soon / rested < 0.5   # 1/3 recorded; each age bin shrunk toward the mean by 2 bursts
    sim = twin.simulate(np.zeros((64, 3000, 1)), [np.random.default_rng(i) for i in range(64)])
    first, after = [], []
    for trial in sim:
        starts = burst_onsets(trial, 1e-3)
        for k, s in enumerate(starts):
            (after if k and s - starts[k - 1] < 200 else first).append(trial[s:s + 50].sum())
    assert len(after) >= 20 and np.mean(after) < 0.6 * np.mean(first)   # measured 0.42; 1.03 with one size


def test_the_shipped_organoid_twin_protocol_floors_on_repeated_stimuli(tmp_path):
    """protocols/examples/organoid_twin.toml (cut to 4 items) records every item twice, so twin check's
    floor is the culture answering the same stimulus again, one pair per held-out item."""
    from conftest import ROOT

    from prclab.cli import main
    from prclab.experiments.twins.check import floor_responses
    from prclab.protocols.recording import read_recording

    text = (ROOT / "protocols" / "examples" / "organoid_twin.toml").read_text()
    (tmp_path / "o.toml").write_text(text.replace("max_items = 120", "max_items = 4"))
    assert main(["run", str(tmp_path / "o.toml"), "--out", str(tmp_path / "o.h5")]) == 0
    with read_recording(tmp_path / "o.h5") as rec:
        held = [t for t in rec.trials if t.split == "test"]
        first, again, source = floor_responses(rec, [t.index for t in held])
    assert source == "repeated stimuli" and len(held) == 2 * len(first) == 2 * len(again) > 0
    assert all(y.shape[1] == 16 and np.all(y == np.round(y)) for y in first + again)   # spike counts
    # the fit learns which training trials ran on from the one before (the culture is not reset between)
    from prclab.experiments.twins.data import load_fit_data

    data = load_fit_data(tmp_path / "o.h5")
    tr = data.train_indices
    assert data.train_history == ["rest" if i == 0 else "follows" if k and i == tr[k - 1] + 1 else "unknown"
                                  for k, i in enumerate(tr)]
    assert {"follows", "unknown"} <= set(data.train_history)


def test_the_floors_bootstrap_error_matches_the_spread_of_independent_sessions():
    """The bootstrap standard error of a pooled rate correlation over trial pairs is what independent sets
    of trials show: here within a factor of 2 of the std over 30 simulated sets (bursty rates: a few
    trials with a large shared event carry the correlation)."""
    from prclab.experiments.twins.spiking_metrics import rate_corr_bootstrap_sem, spike_counts, spiking_comparison

    rng = np.random.default_rng(1)

    def session(n=40):
        rates = 0.002 + 0.05 * (rng.random((n, 1, 1)) < 0.2) * np.exp(-np.arange(400) / 40.0)[None, :, None]
        lam = np.broadcast_to(rates, (n, 400, 3))
        return list(rng.poisson(lam).astype(float)), list(rng.poisson(lam).astype(float))

    corrs = [spiking_comparison(*session(), 1e-3)["rate_corr"] for _ in range(30)]
    a, b = session()
    sem = rate_corr_bootstrap_sem(spike_counts(a, 1e-3), spike_counts(b, 1e-3), 1e-3)
    assert 0.5 < sem / np.std(corrs, ddof=1) < 2.0, (sem, np.std(corrs, ddof=1))
    assert rate_corr_bootstrap_sem(a, a, 1e-3) == 0.0 and rate_corr_bootstrap_sem(a[:1], b[:1], 1e-3) is None


def _alternating_session(n_trials=40, steps=600, units=16, seed=0):
    """Contiguous trials of 600 ms, one pulse at 100 ms each; the culture bursts 5 ms after the pulse only
    if its last burst is over 1 s old, so it bursts in every other trial (1.2 s apart)."""
    rng = np.random.default_rng(seed)
    u = np.zeros((n_trials, steps, 1))
    u[:, 100] = 0.45
    y = rng.poisson(0.002, (n_trials, steps, units)).astype(float)
    starts = []
    for k in range(n_trials):
        burst = k % 2 == 0
        if burst:
            y[k, 105:155] += rng.poisson(0.3, (50, units))
        starts.append(np.array([105] if burst else [], int))
    return list(u), list(y), starts


def _bursts_per_trial(twin, u, rows=32):
    """A session of the trials in order, state carried: per row and trial, whether a burst started in it."""
    state, out = twin.initial_state(rows), []
    rngs = [np.random.default_rng(100 + r) for r in range(rows)]
    for trial in u:
        _, state = twin.step_block(state, np.broadcast_to(trial, (rows,) + trial.shape), rngs)
        out.append(state["age"] < len(trial))   # a burst started within this trial
    return np.array(out).T


def test_a_trial_played_right_after_another_carries_its_burst_age():
    """With its ``history`` the fit knows each trial's first pulse met a network that burst 600 ms or
    1.2 s before, and its twin alternates as the culture does; fitted as if every trial began from rest,
    every pulse looks like one after a long rest and the twin bursts at random."""
    u, y, starts = _alternating_session()
    history = ["rest"] + ["follows"] * (len(u) - 1)
    carried = SpikingTwin().fit(u, y, 1e-3, burst_starts=starts, history=history)
    rested = SpikingTwin().fit(u, y, 1e-3, burst_starts=starts)

    def alternation(twin):
        b = _bursts_per_trial(twin, u)
        return float(np.mean(b[:, 1:] != b[:, :-1]))

    assert alternation(carried) > 0.9 and alternation(rested) < 0.75


def test_history_needs_one_known_word_per_trial_the_first_not_follows():
    u, y, starts = _alternating_session(n_trials=4)
    for bad in (["rest", "follows"], ["follows"] * 4, ["rest", "after", "follows", "follows"]):
        with pytest.raises(PrclabError, match="history"):
            SpikingTwin().fit(u, y, 1e-3, burst_starts=starts, history=bad)


def test_a_twin_written_before_the_hazards_age_terms_loads_without_them(organoid_trials, twin):
    """A file without ``W_hx`` (written before the hazard's age x drive terms) runs as it ran then: a
    stimulus multiplies the hazard by one factor at every age."""
    arrays, attrs = twin.to_arrays()
    old = {k: v for k, v in arrays.items() if k != "W_hx"}
    settings = {k: v for k, v in attrs["settings"].items() if k != "hazard_interactions"}
    again = SpikingTwin.from_arrays(old, attrs | {"settings": settings})
    assert not again.hazard_interactions and not again.W_hx_.any()
    u = np.stack(organoid_trials[0][6:])
    without = SpikingTwin.from_arrays(arrays | {"W_hx": np.zeros_like(arrays["W_hx"])}, attrs)
    np.testing.assert_array_equal(again.simulate(u, [np.random.default_rng(5), np.random.default_rng(6)]),
                                  without.simulate(u, [np.random.default_rng(5), np.random.default_rng(6)]))


def test_onset_bursts_counts_the_bursts_at_each_trials_first_stimulus_by_the_time_since_the_last():
    """Contiguous trials of 600 ms with a pulse at 100 ms, bursting in every other trial: each burst trial's
    pulse comes 1.2 s after the last burst (it bursts), each other trial's 0.6 s after it (it does not)."""
    from prclab.experiments.twins.spiking_metrics import onset_bursts

    u, y, _ = _alternating_session(n_trials=20)
    table = onset_bursts(u, y, 1e-3, age_bins_s=(0.5, 1.0, 1.5))
    assert table["probability"] == [0.0, 1.0] and table["trials"] == [10, 9]   # the first burst has no age
    with pytest.raises(PrclabError, match="onset_bursts"):
        onset_bursts(u, y[:-1], 1e-3)
