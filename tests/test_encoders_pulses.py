"""Pulse waveforms of the encoders (issue 12, scope 4): rate-coded trains and Brainoware's binarised
pulses as a keyword of every encoder, inside the stimulus range, charge-balanced where asked, through
the safety layer and a protocol run against the simulated organoid like any stimulus."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prclab.cli import main
from prclab.errors import PrclabError
from prclab.experiments.tasks import run_task
from prclab.protocols.datasets import LabelledSequences, load_dataset
from prclab.protocols.encoders import SequenceEncoder, make_encoder, rest_level
from prclab.protocols.recording import read_recording
from prclab.reservoir import make_substrate


def _data(sequences, split=None) -> LabelledSequences:
    sequences = [np.asarray(s, dtype=np.float64) for s in sequences]
    labels = np.array(["a", "b"] * (len(sequences) // 2) + ["a"] * (len(sequences) % 2))
    return LabelledSequences(sequences=sequences, labels=labels, kind="sequence", source="pulses",
                             split=split)


def _fitted(train, **params) -> SequenceEncoder:
    return make_encoder(_data(train), **params).fit(_data(train))


def test_rate_code_fires_at_the_linearly_mapped_rate_on_its_own_electrode():
    rng = np.random.default_rng(0)
    enc = _fitted([rng.normal(0, 1, (50, 3)) for _ in range(20)], waveform="rate", samples_per_frame=100)
    item = np.tile([[-50.0, 0.0, 50.0]], (40, 1))   # far below, at and far above the training mean
    volts = enc.encode(item)
    assert volts.shape == (4000, 3)                 # 40 frames of 0.1 s at 1 kHz: 4 s
    s = np.tanh((item[0] - enc.mean_) / enc.std_ / 2)
    expected = (4 + 36 * (s + 1) / 2) * 4.0         # rate_min + span * (s + 1) / 2, for 4 s
    height = 0.9 * 0.5
    pulses = volts == height
    assert np.all(pulses | (volts == 0.0))          # one-sample pulses from the 0 V rest level
    np.testing.assert_allclose(pulses.sum(axis=0), expected, atol=1.0)
    assert pulses.sum(axis=0)[0] < pulses.sum(axis=0)[1] < pulses.sum(axis=0)[2]
    assert not np.any(pulses[1:] & pulses[:-1])    # never two pulses in a row: a return to rest between


def test_binary_pulses_mark_frames_above_the_training_median_and_only_the_training_items_set_it():
    rng = np.random.default_rng(1)
    train = [rng.normal(3.0, 1.0, (30, 2)) for _ in range(10)]
    test = [rng.normal(-7.0, 1.0, (30, 2)) for _ in range(10)]
    data = _data(train + test, split=np.array(["train"] * 10 + ["test"] * 10))
    enc = make_encoder(data, waveform="binary", samples_per_frame=5).fit(data, np.arange(10))
    np.testing.assert_allclose(enc.median_, np.median(np.concatenate(train), axis=0))
    volts = enc.encode(train[0])
    onsets = volts[::5] > 0
    np.testing.assert_array_equal(onsets, train[0] > enc.median_)
    assert np.all(volts.reshape(30, 5, 2)[:, 1:] == 0.0)  # one pulse at the step's first sample only
    assert not enc.encode(test[0]).any()                  # all below the training median: no pulse


def test_biphasic_pulses_are_charge_balanced_and_every_waveform_stays_in_range():
    rng = np.random.default_rng(2)
    train = [rng.normal(0, 1, (40, 4)) for _ in range(8)]
    for low, high in [(-0.5, 0.5), (-0.2, 0.8), (0.1, 0.6)]:
        rest = rest_level(low, high)
        for waveform in ("hold", "rate", "binary"):
            for biphasic in (False, True):
                enc = _fitted(train, waveform=waveform, biphasic=biphasic, low_V=low, high_V=high,
                              samples_per_frame=20, amplitude=1.0)
                volts = enc.encode(train[3])
                assert volts.min() >= low and volts.max() <= high
                if waveform != "hold" and biphasic:
                    np.testing.assert_allclose((volts - rest).sum(axis=0), 0.0, atol=1e-12)
                    assert volts.min() < rest < volts.max()
    muxed = _fitted(train, waveform="binary", multiplex=True, samples_per_frame=3)
    assert muxed.encode(train[0]).shape == (40 * 4 * 3, 1)


def test_the_keywords_are_checked_as_a_protocol_would_be():
    data = _data([np.zeros((5, 2))] * 2)
    for bad, match in [({"waveform": "square"}, "waveform"), ({"rate_max_hz": 600.0}, "no rest between"),
                       ({"rate_min_hz": 50.0}, "must not exceed"),
                       ({"waveform": "binary", "biphasic": True, "samples_per_frame": 1}, ">= 2")]:
        with pytest.raises(PrclabError, match=match):
            make_encoder(data, **{"waveform": "rate", **bad})


def test_the_capacitive_organoid_answers_pulses_and_not_the_held_level():
    """A held voltage passes the electrode's capacitance only at its onset; a train of pulses keeps
    delivering charge: after the first second the held level leaves the spontaneous rate, the pulses
    raise it."""
    model = make_substrate("organoid", 4, neurons=300, n_outputs=60, seed=2)
    rng = np.random.default_rng(3)
    enc = {w: _fitted([rng.normal(0, 1, (20, 4)) for _ in range(6)], waveform=w, samples_per_frame=50)
           for w in ("hold", "rate")}
    item = np.full((40, 4), 5.0)                   # high: a steady +0.45 V, or 40 Hz pulses, for 2 s
    volts = np.stack([enc["hold"].encode(item), enc["rate"].encode(item), np.zeros((2000, 4))])
    model.reset(0)
    held, pulsed, none = model.run(volts)[:, 1000:].sum(axis=(1, 2))
    assert abs(held - none) < 0.3 * none
    assert pulsed > 1.5 * max(held, none)


def test_run_task_names_the_waveform(toy_npz):
    data = load_dataset(toy_npz)
    result = run_task(data, "esn", size=30, encoder_params={"waveform": "binary"}, features="mean")
    assert result["waveform"] == result["encoder"]["waveform"] == "binary"
    assert "waveform" not in make_encoder(data).describe()  # a held encoder is described as it was


PROTOCOL = """
[protocol]
sample_rate_hz = 1000.0
seed = 0
order = "sequential"

[device]
spec = "sim:organoid"

[substrate]
name = "organoid"
params = {{ neurons = 80, n_outputs = 8 }}

[stimulus]
electrodes = 2
low_V = -0.5
high_V = 0.5

[task]
dataset = "{dataset}"
max_items = 4

[encoder]
samples_per_frame = 20
waveform = "rate"
biphasic = {biphasic}

[timing]
washout_s = 0.01
rest_s = 0.01

[safety]
impedance_ohm = 1e5
living = true
max_dc_charge_C = 2e-8
dc_window_s = 1.0
{extra}
"""


def test_a_rate_coded_protocol_runs_against_the_organoid_and_the_safety_limits_still_apply(toy_npz, tmp_path,
                                                                                        capsys):
    def run(name, biphasic, extra=""):
        path = tmp_path / f"{name}.toml"
        path.write_text(PROTOCOL.format(dataset=toy_npz, biphasic=biphasic, extra=extra))
        code = main(["run", str(path), "--out", str(tmp_path / f"{name}.h5"), "--json"])
        return code, capsys.readouterr()

    # monophasic pulses through a resistance: net charge ~10 pulses x 4.5 nC per item > 20 nC
    code, out = run("mono", "false")
    assert code == 2 and "DC balance" in out.err
    code, out = run("slew", "true", "max_slew_V_per_s = 100.0")  # a 0.45 V step in 1 ms is 450 V/s
    assert code == 2 and "slew" in out.err
    code, out = run("bi", "true")
    assert code == 0, out.err
    recording = read_recording(tmp_path / "bi.h5")
    assert len(recording.trials) == 8 and not recording.problems  # 4 train and 4 test items
    stimulus = np.concatenate([np.asarray(t.stimulus) for t in recording.trials])
    assert set(np.round(np.unique(stimulus), 6)) == {-0.45, 0.0, 0.45}
    assert json.loads(out.out)


def test_a_protocol_times_its_pulse_trains_at_its_own_sample_rate(toy_npz, tmp_path):
    from prclab.protocols.protocol import load_protocol

    text = PROTOCOL.format(dataset=toy_npz, biphasic="true", extra="").replace(
        "sample_rate_hz = 1000.0", "sample_rate_hz = 2000.0")
    path = tmp_path / "p.toml"
    path.write_text(text)
    data = load_dataset(toy_npz)
    encoder = make_encoder(data, **load_protocol(path).encoder_params()).fit(data)
    assert encoder.sample_rate_hz == 2000.0          # the protocol's rate, never a default of 1 kHz
    path.write_text(text.replace('waveform = "rate"', 'waveform = "rate"\nsample_rate_hz = 1000.0'))
    with pytest.raises(PrclabError, match="sample_rate_hz"):   # not an [encoder] key: it is the protocol's
        load_protocol(path)
