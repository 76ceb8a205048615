"""prclab twin probe: designed identification stimuli inside the base protocol's safety limits, played
by prclab run; the active choice of stimuli where an ensemble of twins disagrees."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from prclab.cli import main as prclab_main
from prclab.errors import PrclabError
from prclab.experiments.twins import cmd_probe
from prclab.experiments.twins.probe import KINDS, SHRINK, band_tops, excitation, primes, write_probe
from prclab.protocols.encoders import DirectEncoder
from prclab.protocols.protocol import load_protocol, parse_protocol
from prclab.protocols.recording import read_recording
from prclab.protocols.runner import prepare
from prclab.protocols.safety import SafetyError

BASE = """
[protocol]
name = "base"
sample_rate_hz = 1000.0
seed = 2
[device]
spec = "sim:potato"
[substrate]
params = {{ n_outputs = 4, nodes = 4 }}
[stimulus]
electrodes = 3
low_V = -0.5
high_V = 0.5
[task]
dataset = "builtin:fsdd-subset"
[timing]
washout_s = 0.02
rest_s = 0.02
{safety}
"""


def _base(tmp_path, safety: str = "") -> str:
    path = tmp_path / "base.toml"
    path.write_text(BASE.format(safety=safety))
    return str(path)


def _probe(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    cmd_probe.add_arguments(parser)
    cmd_probe.main(parser.parse_args(argv))


def test_sqrtprime_excitation_puts_each_input_at_its_own_irrational_frequency():
    rate, n = 1000.0, 20000  # 20 s: 0.05 Hz resolution
    data = excitation("sqrtprime", 5, n, 4, rate, seed=0)
    top = band_tops(rate, 3)[0]  # trial 0: the slowest band
    x = data.sequences[0]
    assert x.shape == (n, 4) and np.abs(x).max() <= 1
    peaks = np.fft.rfftfreq(n, 1 / rate)[np.argmax(np.abs(np.fft.rfft(x, axis=0)), axis=0)]
    want = np.sqrt(primes(4)) * top / np.sqrt(primes(4)[-1])
    assert np.allclose(peaks, want, atol=0.06)  # sqrt(2), sqrt(3), sqrt(5), sqrt(7) x f0
    # every kind: values in [-1, 1], tapered to rest at both ends, bands as labels, one trial in 5 held out
    for kind in KINDS:
        d = excitation(kind, 10, 500, 3, rate, seed=1)
        assert all(np.abs(s).max() <= 1 and np.abs(s[[0, -1]]).max() < 0.05 for s in d.sequences)
        assert len(set(d.labels)) == 3 and list(d.split).count("test") == 2
    mixed = excitation(KINDS, 6, 500, 3, rate)
    assert [lab.split("-")[0] for lab in mixed.labels] == list(KINDS) * 2
    with pytest.raises(PrclabError, match="unknown excitation kind 'chirp'"):
        excitation("chirp", 10, 500, 3, rate)


def test_the_probe_runs_with_prclab_run_and_plays_the_design_exactly(tmp_path):
    out = tmp_path / "probe.toml"
    _probe(["--protocol", _base(tmp_path), "--out", str(out), "--trials", "10", "--seconds", "0.3"])
    protocol = load_protocol(out)
    assert protocol["encoder"]["kind"] == "direct" and protocol["stimulus"]["electrodes"] == 3
    rec_path = tmp_path / "rec.h5"
    assert prclab_main(["run", str(out), "--out", str(rec_path)]) == 0
    rec = read_recording(rec_path)
    design = np.load(out.with_suffix(".npz"), allow_pickle=False)["X"]
    amplitude = protocol["encoder"]["amplitude"]
    assert len(rec.trials) == 10
    for t in rec.trials:  # sequential order: trial i plays design row i, scaled into +-0.5 V
        stim = np.asarray(t.stimulus)[t.stim_start:t.stim_stop]
        assert np.allclose(stim, 0.5 * amplitude * design[t.index])
    assert sorted({t.split for t in rec.trials}) == ["test", "train"]


def test_the_probe_keeps_inside_the_base_protocols_safety_limits(tmp_path):
    safety = "[safety]\nmax_slew_V_per_s = 20.0\n[safety.channels.1]\nhigh_V = 0.1\nlow_V = -0.1"
    base = _base(tmp_path, safety)
    data = excitation("prbs", 10, 300, 3, 1000.0, seed=0)  # PRBS jumps: the slew limit binds
    probe = write_probe(base, tmp_path / "p.toml", data, "p")
    assert probe.amplitude < 0.9 * SHRINK
    stim = np.concatenate([np.asarray(t.stimulus) for t in probe.trials])
    assert np.abs(np.diff(stim, axis=0)).max() * 1000.0 <= 20.0 and np.abs(stim[:, 1]).max() <= 0.1
    # one step louder is refused by the same limits: the amplitude is the largest of the sequence
    louder = probe.protocol.text.replace(f"amplitude = {probe.amplitude}",
                                         f"amplitude = {round(probe.amplitude / SHRINK, 6)}")
    with pytest.raises(SafetyError):
        prepare(parse_protocol(louder, probe.path))
    with pytest.raises(PrclabError, match="no amplitude down to"):
        write_probe(_base(tmp_path, "[safety]\nmax_slew_V_per_s = 1e-6"), tmp_path / "q.toml", data, "q")
    with pytest.raises(PrclabError, match="the excitation has 2 inputs"):
        write_probe(base, tmp_path / "r.toml", excitation("prbs", 5, 300, 2, 1000.0), "r")


def test_bad_probe_requests_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(PrclabError, match="--trials must be 5 or more"):
        _probe(["--protocol", _base(tmp_path), "--out", str(tmp_path / "p.toml"), "--trials", "1"])
    with pytest.raises(PrclabError, match="--seconds 0.001 is 1 samples"):
        _probe(["--protocol", _base(tmp_path), "--out", str(tmp_path / "p.toml"), "--seconds", "0.001"])
    with pytest.raises(PrclabError, match="direct encoder: values must lie in"):
        DirectEncoder(2).features(np.full((3, 2), 1.5))
    _probe(["--protocol", _base(tmp_path), "--out", str(tmp_path / "p.toml"), "--trials", "5",
            "--kind", "all", "--seconds", "0.1", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["trials"] == 5 and summary["amplitude"] == 0.9


def test_the_active_probe_chooses_where_bootstrap_twins_disagree_and_the_choice_runs(tmp_path, capsys):
    from prclab.experiments.twins.active import choose, fit_committee
    from prclab.experiments.twins.data import load_fit_data

    first = tmp_path / "first.toml"
    base = _base(tmp_path)
    _probe(["--protocol", base, "--out", str(first), "--trials", "10", "--seconds", "0.3"])
    rec = tmp_path / "first.h5"
    assert prclab_main(["run", str(first), "--out", str(rec)]) == 0
    capsys.readouterr()
    nxt = tmp_path / "next.toml"
    _probe(["--protocol", base, "--out", str(nxt), "--active", str(rec), "--trials", "6", "--pool", "12",
            "--seconds", "0.3", "--ensemble", "3", "--kind", "all", "--json"])
    summary = json.loads(capsys.readouterr().out)
    scores = summary["disagreement"]
    assert summary["trials"] == 6 and summary["pool"] == 12 and scores == sorted(scores, reverse=True)
    assert prclab_main(["run", str(nxt), "--out", str(tmp_path / "next.h5")]) == 0
    # the committee: bootstrap members differ; silence (rest) is where they disagree least
    fit = load_fit_data(rec)
    committee = fit_committee("linear", fit.train_stimuli, fit.train_responses, fit.dt, members=3)
    u = np.stack([np.asarray(t.stimulus) for t in prepare(load_protocol(nxt))[2]])
    cands = np.concatenate([np.zeros_like(u[:1]), u])
    scale = np.concatenate(fit.train_responses).std(axis=0)
    order, s = choose(committee, cands, len(cands), scale)
    assert order[-1] == 0 and s.min() >= 0 and s[1:].min() > s[0]
    assert np.all(choose([committee[0]] * 2, cands, 1, scale)[1] == 0)
    with pytest.raises(PrclabError, match="cannot choose 99 of"):
        choose(committee, cands, 99, scale)
