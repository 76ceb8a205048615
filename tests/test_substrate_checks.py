"""check_substrate: every registered substrate keeps the contract; a new one is a module plus a registry
entry (the RC filter bank of ``example_rc_substrate``, registered here at test time); the checks catch
the faults they name."""

from __future__ import annotations

import numpy as np
import pytest

from example_rc_substrate import RCFilter
from prclab.errors import PrclabError
from prclab.protocols.datasets import load_dataset
from prclab.reservoir import (SUBSTRATES, SubstrateEntry, check_substrate, make_substrate, run_sequences,
                              substrate_from_description)
from prclab.reservoir.checks import CHECKS
from prclab.experiments.tasks import run_task

from test_substrate_params import SMALL


@pytest.fixture
def rc_registered(monkeypatch):
    """The one registry entry the example substrate needs."""
    monkeypatch.setitem(SUBSTRATES, "rc", SubstrateEntry(RCFilter, "n_outputs", 10))


@pytest.mark.parametrize("name", sorted(SUBSTRATES))
def test_every_registered_substrate_passes_check_substrate(name):
    assert check_substrate(lambda: make_substrate(name, 3, seed=1, **SMALL[name])) == list(CHECKS)


def test_a_new_substrate_is_one_module_and_one_registry_entry(rc_registered, toy_npz):
    assert check_substrate(lambda: make_substrate("rc", 2, seed=2)) == list(CHECKS)
    rc = make_substrate("rc", 2, size=6)
    assert rc.describe()["model"] == "rc" and rc.n_outputs == 6
    assert isinstance(substrate_from_description(rc.describe()), RCFilter)
    result = run_task(load_dataset(toy_npz), "rc", size=16, seed=0)
    assert result["substrate_params"]["model"] == "rc"
    assert result["accuracy"] > result["chance"]      # the toy classes differ in frequency: a low-pass bank tells


def test_the_rc_filter_is_the_first_order_low_pass_of_its_docstring():
    rc = RCFilter(1, n_outputs=2, tau_min_s=0.01, tau_max_s=0.05, noise_V=0.0)
    y = rc.run(np.ones((1, 200, 1)))[0]
    steady = rc.mix[0]
    t = np.arange(1, 201) * 1e-3
    np.testing.assert_allclose(y, steady * (1 - np.exp(-t[:, None] / np.array([0.01, 0.05]))), atol=1e-12)


class SharedNoise(RCFilter):
    """A fault: the rows draw from one generator, so a row's noise depends on its batch."""

    def reset(self, seed=None):
        super().reset(seed)
        self._shared = np.random.default_rng(seed if isinstance(seed, int) else 0)

    def run(self, u):
        y = super().run(u)
        batch, steps, n = y.shape    # drawn time-major, so blocks still continue one another
        return y + self._shared.normal(0, 1e-3, (steps, batch, n)).transpose(1, 0, 2)


class ForgetfulState(RCFilter):
    """A fault: the noise streams are missing from the saved state."""

    @property
    def state(self):
        return {"v": self._v.copy()}

    def load_state(self, state):
        self._v = np.asarray(state["v"]).copy()


class RestartsEachBlock(RCFilter):
    """A fault: state does not carry over between run calls."""

    def run(self, u):
        self._v = np.zeros((0, self.n_outputs))
        return super().run(u)


@pytest.mark.parametrize("cls,check", [(SharedNoise, "batch independence"), (ForgetfulState, "state"),
                                       (RestartsEachBlock, "streaming")])
def test_check_substrate_names_the_broken_check(cls, check, rc_registered):
    with pytest.raises(PrclabError, match=f"check_substrate\\({cls.__name__}\\): {check}:"):
        check_substrate(lambda: cls(2))


def test_an_unregistered_substrate_fails_describe():
    with pytest.raises(PrclabError, match="describe: .*unknown substrate 'RCFilter'"):
        check_substrate(lambda: RCFilter(2))


def test_run_sequences_uses_lengths_where_run_takes_them(monkeypatch):
    """The echo-state core is run on each bucket with lengths (no compute on padding); the outputs are
    those of each sequence run alone."""
    esn = make_substrate("esn", 2, units=20, dtype="float64")
    seen = []
    real_run = type(esn).run
    monkeypatch.setattr(type(esn), "run", lambda self, u, lengths=None: seen.append(lengths) or
                        real_run(self, u, lengths))
    seqs = [np.full((n, 2), 0.05 * n) for n in (5, 12, 3, 9, 11)]
    out = run_sequences(esn, seqs, batch_size=2)
    assert all(lengths is not None and np.all(np.diff(lengths) <= 0) for lengths in seen)
    for s, y in zip(seqs, out):
        esn.reset()
        np.testing.assert_allclose(y, real_run(esn, s[None])[0], rtol=0, atol=1e-12)


def test_a_new_substrate_runs_from_a_protocol_file(rc_registered, tmp_path, capsys):
    """The registry entry is all a protocol file needs: ``[substrate] name`` and ``sim:NAME`` accept it."""
    from pathlib import Path

    from prclab.cli import main
    from prclab.protocols.recording import read_recording

    text = (Path(__file__).resolve().parent.parent / "protocols" / "examples" /
            "spoken_digits_one_electrode.toml").read_text()
    for old, new in {'spec = "sim:esn"': 'spec = "sim:rc"', 'name = "esn"': 'name = "rc"',
                     "params = { units = 300, leak_rate = 0.1, spectral_radius = 0.99 }": "params = { tau_max_s = 0.05 }",
                     'labels = ["0", "1", "2", "3"]': 'labels = ["0", "1"]', "max_items = 40": "max_items = 4"}.items():
        assert old in text
        text = text.replace(old, new)
    protocol = tmp_path / "rc.toml"
    protocol.write_text(text)
    assert main(["run", str(protocol), "--out", str(tmp_path / "rc.h5")]) == 0
    rec = read_recording(tmp_path / "rc.h5")
    assert len(rec.trials) == 8 and rec.attrs["device"]["substrate"]["model"] == "rc"
