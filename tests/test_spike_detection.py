"""Spike detection on recorded voltage (issue 12, scope 4): threshold at -k robust SDs (Quiroga 2004),
dead time, blanked samples left out; on synthetic voltage with known spikes and on the simulated
organoid's recorded voltage against its own sorted spikes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from prclab.errors import PrclabError
from prclab.readouts.spikes import detect_spikes, robust_sd
from prclab.reservoir import make_substrate

NOISE_V = 5e-6      # MEA amplifier noise, ~5 uV RMS
SPIKE_V = -60e-6    # an extracellular spike of a cell next to the electrode


def test_known_spikes_in_noise_are_found_where_they_are():
    rng = np.random.default_rng(0)
    x = rng.normal(0, NOISE_V, (20000, 4))
    truth = np.zeros(x.shape, bool)
    for c in range(4):
        truth[rng.choice(np.arange(0, 20000, 10), 80, replace=False), c] = True  # >= 10 ms apart
    x[truth] += SPIKE_V
    np.testing.assert_allclose(robust_sd(x), NOISE_V, rtol=0.05)  # 0.4 % spikes barely move it
    found = detect_spikes(x, k=5.0) > 0
    assert np.all(found[truth])                         # 12 SD spikes: every one
    assert (found & ~truth).sum() <= 2                  # Phi(-5) x 80 000 samples = 0.02 expected
    times = detect_spikes(x, k=5.0, times=True)
    np.testing.assert_allclose(times[2], np.flatnonzero(truth[:, 2]) * 1e-3)


@pytest.mark.parametrize("k", [3.0, 4.0])
def test_false_positives_on_noise_follow_the_gaussian_tail(k):
    x = np.random.default_rng(1).normal(0, NOISE_V, (250000, 4))
    rate = detect_spikes(x, k=k).mean()
    expected = norm.cdf(-k) * (1 - norm.cdf(-k))        # a sample below after one that is not
    assert expected / 2 < rate < 2 * expected


def test_blanked_samples_are_left_out_and_a_spike_is_counted_once_within_the_dead_time():
    rng = np.random.default_rng(2)
    x = rng.normal(0, NOISE_V, (40000, 2))
    blanked = x.copy()
    blanked[::2] = 0.0                                  # half the samples blanked
    np.testing.assert_allclose(robust_sd(blanked), robust_sd(x), rtol=0.05)
    assert np.all(detect_spikes(blanked)[::2] == 0)
    # sampled at 10 kHz: a spike that dips below, recovers for one sample and dips again within 1 ms
    y = np.zeros((1000, 1)) + rng.normal(0, NOISE_V, (1000, 1))
    y[[100, 101, 103, 104], 0] = SPIKE_V
    assert detect_spikes(y, dt=1e-4, dead_time_s=1e-3).sum() == 1
    assert detect_spikes(y, dt=1e-4, dead_time_s=0.0).sum() == 2
    with pytest.raises(PrclabError, match="k > 0"):
        detect_spikes(y, k=0.0)


def test_the_organoids_recorded_voltage_gives_back_its_sorted_spikes():
    """Same network, noise and stimulus (pulses on four electrodes, blanked 3 ms after each): the
    spikes detected on ``output="lfp"`` follow the ``output="spikes"`` counts of the same seed, in time
    (10 ms bins) and across electrodes.  The recorded voltage is a spike band here: 100 uV per spike at
    the electrode, no 10 ms low-pass."""
    rng = np.random.default_rng(0)
    u = np.zeros((1, 3000, 4))
    u[0, rng.choice(3000, 60, replace=False), rng.integers(0, 4, 60)] = 0.45
    common = dict(n_inputs=4, neurons=300, n_outputs=20, seed=1)
    sorted_model = make_substrate("organoid", output="spikes", **common)
    voltage_model = make_substrate("organoid", output="lfp", lfp_tau_s=1e-4, lfp_uV_per_spike=100.0, **common)
    sorted_model.reset(1)
    voltage_model.reset(1)
    truth, voltage = sorted_model.run(u)[0], voltage_model.run(u)[0]
    found = detect_spikes(voltage)
    assert truth.sum() > 50 and found.sum() > 50
    in_bins = [a.reshape(300, 10, -1).sum(axis=1).ravel() for a in (truth, found)]
    assert np.corrcoef(*in_bins)[0, 1] > 0.5
    assert np.corrcoef(truth.sum(axis=0), found.sum(axis=0))[0, 1] > 0.6
    assert found[voltage == 0.0].sum() == 0            # nothing in the blanked samples
