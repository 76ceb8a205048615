"""Substrates rebuild from their description, and draw their randomness from independent streams.

Parameters are the constructor's keywords (get_params / set_params); ``describe()`` holds them apart from
derived values; a recording's stored description (new shape or the flat one of older recordings) rebuilds a
model whose responses to the recorded stimulus are the recorded ones, exactly.  Streams: trial ``i`` of
``run_sequences`` draws its noise from ``SeedSequence(seed).spawn(n)[i]`` whatever batch it lands in, and
a model's uses of randomness (weights, core, drift, measurement) do not share a stream.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from prclab.cli import main
from prclab.errors import PrclabError
from prclab.protocols.recording import RecordingWriter, read_recording
from prclab.protocols.replay import replay_recording
from prclab.reservoir import (SUBSTRATES, Electrode, EchoStateNetwork, PotatoModel, electrodes_of, make_substrate,
                              run_sequences, substrate_defaults, substrate_from_description)

#: a small, quick instance of every registered substrate
SMALL = {"esn": {"units": 30, "noise": 0.02}, "potato": {"nodes": 40}, "hydrogel": {"grid": 12},
         "organoid": {"neurons": 100}}


def small(name: str, n_inputs: int = 2, **params):
    return make_substrate(name, n_inputs, **{**SMALL[name], **params})


def test_every_registered_substrate_has_a_small_instance_here():
    assert set(SMALL) == set(SUBSTRATES)


@pytest.mark.parametrize("name", sorted(SUBSTRATES))
def test_params_are_the_constructor_keywords_and_rebuild_the_model(name):
    model = small(name, seed=4)
    params = model.get_params()
    assert params == {"n_inputs": 2, **substrate_defaults(name), **SMALL[name], "seed": 4}
    described = json.loads(json.dumps(model.describe()))
    assert set(described) == {"model", "params", "derived"} and described["model"] == name
    assert described["params"] == params
    u = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 80, 2))
    model.reset(9)
    rebuilt = substrate_from_description(described)
    rebuilt.reset(9)
    np.testing.assert_array_equal(rebuilt.run(u), model.run(u))


def test_derived_values_are_kept_apart_from_parameters():
    described = PotatoModel(n_inputs=2, n_outputs=3, nodes=6, c_dl_F=50e-6).describe()
    assert described["params"]["nodes"] == 6 and described["params"]["c_dl_F"] == 50e-6
    # per-electrode values drawn from the seed are derived, one per stimulating electrode
    assert len(described["derived"]["tau_dl_s"]) == 2 and len(described["derived"]["r_ct_ohm"]) == 2
    assert not set(described["derived"]) & set(described["params"])


def test_set_params_rebuilds_in_place_and_refuses_unknown_names():
    esn = EchoStateNetwork(2, units=20, seed=1)
    same = esn.set_params(units=25, seed=2)
    assert same is esn and esn.n_units == 25 and esn.get_params()["seed"] == 2
    np.testing.assert_array_equal(esn.w_t, EchoStateNetwork(2, units=25, seed=2).w_t)
    with pytest.raises(PrclabError, match="EchoStateNetwork.set_params: unknown parameter.*unit\\b"):
        esn.set_params(unit=30)
    with pytest.raises(ValueError, match="connectivities"):
        esn.set_params(connectivity=0.0)
    assert esn.n_units == 25    # a refused value leaves the model as it was


def test_a_numpy_dtype_parameter_is_described_by_name():
    described = EchoStateNetwork(2, units=10, dtype=np.float64).describe()
    assert described["params"]["dtype"] == "float64"
    assert substrate_from_description(described).dtype == np.float64


@pytest.mark.parametrize("name", sorted(SUBSTRATES))
def test_the_flat_description_of_older_recordings_rebuilds_the_same_model(name):
    model = small(name, seed=3)
    new = model.describe()
    flat = {"model": name, **new["params"], **new["derived"]}   # what describe() returned before
    flat.pop("threads", None)                                    # older descriptions did not list it
    u = np.random.default_rng(1).uniform(-0.5, 0.5, (1, 60, 2))
    model.reset(2)
    rebuilt = substrate_from_description(flat)
    rebuilt.reset(2)
    np.testing.assert_array_equal(rebuilt.run(u), model.run(u))


@pytest.mark.parametrize("description,message", [
    ({"params": {}}, "no 'model' name"), ({"model": "turnip"}, "unknown substrate 'turnip'"),
    ({"model": "esn", "params": {"units": 5}}, "lack n_inputs"),
    ({"model": "esn", "params": {"n_inputs": 2, "unit": 5}}, "substrate 'esn'")])
def test_a_bad_description_is_a_one_line_error_naming_its_origin(description, message):
    with pytest.raises(PrclabError, match=f"recording r.h5: .*{message}"):
        substrate_from_description(description, "recording r.h5")


def test_electrodes_are_declared_per_input_or_unknown():
    potato = PotatoModel(n_inputs=3, n_outputs=2, nodes=30, r_access_ohm=1500.0)
    assert potato.electrodes == (Electrode(impedance_ohm=1500.0),) * 3
    gel = small("hydrogel", n_inputs=2, g0_S=2e-6)
    assert gel.electrodes == (Electrode(material="Ag/AgCl", impedance_ohm=5e5),) * 2
    unknown = small("organoid", n_inputs=2).electrodes
    assert len(unknown) == 2 and unknown[0].material == "" and math.isnan(unknown[0].impedance_ohm)

    class Bare:   # an object that runs like a substrate but declares nothing
        n_inputs = 2

    assert len(electrodes_of(Bare())) == 2 and math.isnan(electrodes_of(Bare())[1].impedance_ohm)


# ---- a recording rebuilds its substrate ---------------------------------------------------------------

PROTOCOL = """
[protocol]
name = "rebuild"
sample_rate_hz = 1000.0
seed = 5
block_samples = 64

[device]
spec = "sim:{name}"

[substrate]
name = "{name}"
params = {params}

[stimulus]
electrodes = 2
low_V = -0.5
high_V = 0.5

[task]
dataset = "tiny.npz"

[encoder]
samples_per_frame = 4

[timing]
washout_s = 0.01
rest_s = 0.01
"""


def tiny_dataset(folder) -> None:
    """Six labelled 2-channel sequences of 8-12 frames, split 4 train / 2 test."""
    rng = np.random.default_rng(0)
    lengths = np.array([8, 12, 10, 9, 11, 12])
    x = np.zeros((6, 12, 2))
    for i, n in enumerate(lengths):
        x[i, :n] = rng.normal(0, 1, (n, 2))
    np.savez(folder / "tiny.npz", X=x, lengths=lengths, y=np.array(list("abcabc")),
             split=np.array(["train"] * 4 + ["test"] * 2))


@pytest.mark.parametrize("name", sorted(SUBSTRATES))
def test_a_recording_rebuilds_its_substrate_and_replays_its_responses_exactly(name, tmp_path):
    tiny_dataset(tmp_path)
    params = "{ " + ", ".join(f"{k} = {v}" for k, v in SMALL[name].items()) + " }"
    proto = tmp_path / "p.toml"
    proto.write_text(PROTOCOL.format(name=name, params=params))
    rec = tmp_path / "rec.h5"
    assert main(["run", str(proto), "--out", str(rec)]) == 0
    recorded = read_recording(rec)
    stored = recorded.attrs["substrate"]
    assert stored["model"] == name and stored["params"]["n_inputs"] == 2
    assert recorded.attrs["device"]["seed"] == 5
    replay_recording(rec, name, tmp_path / "again.h5")
    again = read_recording(tmp_path / "again.h5")
    assert again.attrs["substrate"] == stored            # rebuilt from the stored description
    assert len(again.trials) == len(recorded.trials) == 6
    for a, b in zip(recorded.trials, again.trials):
        np.testing.assert_array_equal(a.stimulus, b.stimulus)
        assert np.array_equal(a.response, b.response), f"trial {a.index} responds otherwise"
    assert np.std(np.concatenate([t.response for t in recorded.trials])) > 0


def test_an_older_recording_with_a_flat_description_still_replays(tmp_path):
    """A recording written before describe() split parameters from derived values keeps replaying
    into the model it describes (the flat shape is read by the constructor's signature)."""
    tiny_dataset(tmp_path)
    proto = tmp_path / "p.toml"
    proto.write_text(PROTOCOL.format(name="potato", params="{ nodes = 40 }"))
    rec = tmp_path / "rec.h5"
    assert main(["run", str(proto), "--out", str(rec)]) == 0
    recorded = read_recording(rec)
    described = recorded.attrs["substrate"]
    flat = {"model": "potato", **described["params"], **described["derived"]}
    old = tmp_path / "old.h5"
    attrs = {k: recorded.attrs[k] for k in ("protocol_text", "rate_hz", "device")}
    with RecordingWriter(old, {**attrs, "substrate": flat}, fsync=False) as writer:
        for t in recorded.trials:
            writer.append(t.index, t.stimulus, t.response, t.timestamps, item=t.item, item_id=t.item_id,
                          label=t.label, split=t.split, repetition=t.repetition, stim_start=t.stim_start,
                          stim_stop=t.stim_stop)
    replay_recording(old, "potato", tmp_path / "again.h5")
    for a, b in zip(recorded.trials, read_recording(tmp_path / "again.h5").trials):
        np.testing.assert_array_equal(a.response, b.response)


# ---- independent random streams ---------------------------------------------------------------------

def variable_length_trials(n_inputs: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.uniform(-0.5, 0.5, (n, n_inputs)) for n in (60, 41, 33, 57, 29, 60, 45, 38)]


@pytest.mark.parametrize("name", sorted(SUBSTRATES))
def test_a_trials_response_does_not_depend_on_the_batch_it_lands_in(name):
    model = small(name)
    trials = variable_length_trials()
    by_size = {size: run_sequences(model, trials, batch_size=size, seed=3) for size in (8, 3, 1)}
    for i in range(len(trials)):
        for size in (3, 1):
            a, b = by_size[8][i], by_size[size][i]
            if name in ("hydrogel", "organoid"):     # element-wise arithmetic per row: bit for bit
                assert np.array_equal(a, b), f"trial {i}, batch size {size}"
            else:   # a BLAS product over another number of rows rounds otherwise (float32 core)
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(a).max())
    noisy = run_sequences(model, trials, batch_size=8, seed=4)
    assert not np.allclose(noisy[0], by_size[8][0])       # the seed does reach the noise


def test_the_noise_of_a_trial_is_its_own_seed_sequence_child():
    """Trial i of run_sequences(seed) is trial 0 of a batch of one reset with SeedSequence(seed).spawn(n)[i]."""
    esn = EchoStateNetwork(2, units=30, noise=0.05, dtype="float64", seed=1)
    trials = variable_length_trials()
    out = run_sequences(esn, trials, batch_size=4, seed=11)
    children = np.random.SeedSequence(11).spawn(len(trials))
    for i in (0, 4, 7):
        esn.reset([children[i]])
        np.testing.assert_allclose(esn.run(trials[i][None])[0], out[i], rtol=0, atol=1e-12)


def test_rows_of_one_reset_draw_different_noise():
    esn = EchoStateNetwork(1, units=20, noise=0.1, input_scaling=0.0, bias_scaling=0.0, seed=0)
    esn.reset(0)
    y = esn.run(np.zeros((2, 50, 1)))
    assert not np.allclose(y[0], y[1])


def test_the_potato_core_and_measurement_streams_are_independent():
    """A noise-free tissue (no core noise) leaves only drift and white noise: they come from the row's
    own children, so rows differ and a fixed seed repeats them."""
    potato = PotatoModel(n_inputs=1, n_outputs=2, nodes=20, gain_V=0.0, noise_V=1e-3, seed=0)
    potato.reset(5)
    a = potato.run(np.zeros((2, 200, 1)))
    potato.reset(5)
    np.testing.assert_array_equal(potato.run(np.zeros((2, 200, 1))), a)
    assert not np.allclose(a[0], a[1])
    state = potato.state
    assert state["rng"].shape == state["drift_rng"].shape == state["measurement_rng"].shape == (2, 6)
    assert len({tuple(state[k][0]) for k in ("rng", "drift_rng", "measurement_rng")}) == 3


def test_state_saved_before_streams_were_per_row_still_loads():
    """A single generator's (6,) words, as states were saved before, load as a batch of one."""
    esn = EchoStateNetwork(2, units=20, noise=0.05, seed=2)
    esn.reset(1)
    esn.run(np.zeros((1, 10, 2)))
    state = esn.state
    old = {"x": state["x"], "rng": state["rng"][0]}
    u = np.random.default_rng(0).uniform(-0.5, 0.5, (1, 20, 2))
    expected = esn.run(u)
    esn.load_state(old)
    np.testing.assert_array_equal(esn.run(u), expected)


#: streams split off a shared one (older state has no such key), and the key they were split from
SPLIT = {"potato": ("drift_rng", "measurement_rng"), "hydrogel": ("drift_rng", "rng"),
         "organoid": ("field_rng", "rng")}


@pytest.mark.parametrize("name", sorted(SPLIT))
def test_older_state_with_one_shared_stream_loads_into_independent_streams(name):
    """State saved when two uses shared one generator ((6,) words, no key for the second use) resumes
    deterministically, the second use on a stream of its own, not a copy of the first's."""
    new_key, shared_key = SPLIT[name]
    model = small(name, seed=1, **({"output": "lfp"} if name == "organoid" else {}))
    model.reset(3)
    model.run(np.zeros((1, 30, 2)))
    old = {k: (v[0] if v.dtype == np.uint64 else v) for k, v in model.state.items() if k != new_key}
    u = np.random.default_rng(2).uniform(-0.5, 0.5, (1, 50, 2))
    runs = []
    for _ in range(2):
        fresh = small(name, seed=1, **({"output": "lfp"} if name == "organoid" else {}))
        fresh.load_state(old)
        state = fresh.state
        assert not np.array_equal(state[new_key], state[shared_key])
        runs.append(fresh.run(u))
    np.testing.assert_array_equal(runs[0], runs[1])
