"""The batched echo-state core: exact update rule, streaming, batching, determinism."""

import numpy as np
import pytest

from prclab.reservoir import EchoStateCore, EchoStateNetwork, Substrate, run_sequences


def reference_run(core: EchoStateCore, u: np.ndarray) -> np.ndarray:
    """Naive per-trial, per-step loop of x[t] = (1-a) x[t-1] + a tanh(W x + W_in u + b)."""
    w, w_in = core.w_t.T.astype(float), core.w_in_t.T.astype(float)
    out = np.zeros(u.shape[:2] + (core.n_units,))
    for b in range(len(u)):
        x = np.zeros(core.n_units)
        for t in range(u.shape[1]):
            x = (1 - core.leak) * x + core.leak * np.tanh(w @ x + w_in @ u[b, t] + core.bias)
            out[b, t] = x
    return out


def test_matches_the_update_rule_in_float64():
    esn = EchoStateNetwork(3, units=40, dtype="float64", seed=2)
    u = np.random.default_rng(0).uniform(-0.5, 0.5, (4, 30, 3))
    np.testing.assert_allclose(esn.run(u), reference_run(esn, u), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("connectivity", [0.1, 1.0], ids=["sparse-csr-path", "dense-blas-path"])
def test_large_threaded_batches_with_lengths_match_the_update_rule(connectivity):
    """Batches big enough for worker threads (and, at 10 % connectivity, for the CSR path)."""
    esn = EchoStateNetwork(3, units=40, dtype="float64", connectivity=connectivity, seed=4, threads=2)
    assert (esn._w_csr is not None) == (connectivity < 0.2)
    rng = np.random.default_rng(3)
    u = rng.uniform(-0.5, 0.5, (70, 30, 3))
    np.testing.assert_allclose(esn.run(u), reference_run(esn, u), rtol=1e-12, atol=1e-12)
    lengths = rng.integers(0, 31, 70)
    padded = u * (np.arange(30)[None, :, None] < lengths[:, None, None])
    esn.reset()
    out = esn.run(padded, lengths=lengths)
    expected = reference_run(esn, padded)
    for i, n in enumerate(lengths):
        np.testing.assert_allclose(out[i, :n], expected[i, :n], rtol=1e-12, atol=1e-12)
        assert not out[i, n:].any()
        np.testing.assert_allclose(esn.state["x"][i], expected[i, n - 1] if n else 0, atol=1e-12)


def test_noisy_states_do_not_depend_on_threads_or_on_the_product_path(monkeypatch):
    import prclab.reservoir.esn as esn_module

    u = np.random.default_rng(4).normal(0, 0.3, (40, 20, 2))

    def noisy_run(threads, noise=0.05):
        esn = EchoStateNetwork(2, units=60, noise=noise, seed=6, threads=threads)
        esn.reset(9)
        return esn.run(u)

    sparse_two = noisy_run(2)
    assert np.abs(sparse_two - noisy_run(2, noise=0.0)).mean() > 1e-3   # the noise is there
    np.testing.assert_allclose(noisy_run(1), sparse_two, atol=1e-5)
    monkeypatch.setattr(esn_module, "MIN_SPARSE_ROWS", 10 ** 6)   # force the dense BLAS path
    np.testing.assert_allclose(noisy_run(2), sparse_two, atol=1e-5)


def test_is_a_substrate_and_has_the_requested_spectral_radius():
    esn = EchoStateNetwork(2, units=100, spectral_radius=0.8, dtype="float64")
    assert isinstance(esn, Substrate)
    assert abs(np.max(np.abs(np.linalg.eigvals(esn.w_t))) - 0.8) < 1e-6


def test_streaming_in_blocks_equals_one_run_and_state_round_trips(tmp_path):
    u = np.random.default_rng(1).normal(0, 0.3, (2, 50, 2))
    esn = EchoStateNetwork(2, units=30, seed=3)
    whole = esn.run(u)
    esn.reset()
    np.testing.assert_array_equal(np.concatenate([esn.run(u[:, :20]), esn.run(u[:, 20:])], 1), whole)
    esn.reset()
    esn.run(u[:, :20])
    np.savez(tmp_path / "state.npz", **esn.state)
    with np.load(tmp_path / "state.npz", allow_pickle=False) as z:
        saved = {k: z[k] for k in z.files}
    fresh = EchoStateNetwork(2, units=30, seed=3)
    fresh.load_state(saved)
    np.testing.assert_array_equal(fresh.run(u[:, 20:]), whole[:, 20:])


def test_same_seed_same_output_and_batch_equals_single_trials():
    u = np.random.default_rng(2).normal(0, 0.3, (3, 25, 2))
    a = EchoStateNetwork(2, units=50, noise=0.02, seed=5)
    b = EchoStateNetwork(2, units=50, noise=0.02, seed=5)
    a.reset(11)
    b.reset(11)
    np.testing.assert_array_equal(a.run(u), b.run(u))
    quiet = EchoStateNetwork(2, units=50, seed=5, dtype="float64")
    batch = quiet.run(u)
    for i in range(3):
        quiet.reset()
        np.testing.assert_allclose(quiet.run(u[i:i + 1])[0], batch[i], atol=1e-12)


def test_run_sequences_unpads_and_keeps_order():
    esn = EchoStateNetwork(1, units=20, dtype="float64")
    seqs = [np.full((n, 1), 0.1 * n) for n in (5, 12, 3, 9)]
    out = run_sequences(esn, seqs, batch_size=2)
    for s, y in zip(seqs, out):
        esn.reset()
        assert y.shape == (len(s), 20)
        np.testing.assert_allclose(y, esn.run(s[None])[0], atol=1e-12)


def test_rejects_bad_input():
    esn = EchoStateNetwork(2, units=10)
    with pytest.raises(ValueError):
        esn.run(np.zeros((1, 5, 3)))
    with pytest.raises(ValueError):
        esn.run(np.full((1, 5, 2), np.nan))
    esn.run(np.zeros((2, 5, 2)))
    with pytest.raises(ValueError, match="reset"):
        esn.run(np.zeros((3, 5, 2)))
