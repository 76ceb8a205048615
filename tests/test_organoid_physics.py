"""Physics of the organoid model (reservoir/organoid.py), each a named property of the material.

Capacitive electrodes pass no DC; a charge-balanced pulse evokes a direct response near the electrode and a
later network one; the stimulation artefact on the recorded voltage is removed by blanking; spontaneous
firing lies in the range the model's docstring cites; removing the synapses removes the network bursts.
"""

import numpy as np
import pytest

from prclab.reservoir import OrganoidModel


def near_far(org, radius_um=250.0):
    """Recording electrodes within ``radius_um`` of the first stimulating electrode, and beyond 800 um."""
    dist = np.linalg.norm(org.rec_positions_um - org.stim_positions_um[0], axis=1)
    return dist <= radius_um, dist >= 800.0


def pulses(steps, every, volts=0.5):
    """One-sample voltage pulses on one electrode ``(1, steps, 1)``: through the electrode's capacitance each
    is a charge-balanced biphasic current (up on the rising edge, down on the falling one)."""
    u = np.zeros((1, steps, 1))
    u[0, every // 2::every, 0] = volts
    return u


@pytest.fixture(scope="module")
def org():
    return OrganoidModel(n_inputs=1, n_outputs=63)


def test_dc_evokes_no_sustained_response_but_pulses_do(org):
    steps = 3000
    near, _ = near_far(org)
    org.reset(4)
    rest = org.run(np.zeros((1, steps, 1)))[0][500:, near].mean()
    org.reset(4)
    held = org.run(np.full((1, steps, 1), 0.5))[0][500:, near].mean()   # 0.5 V held: only its onset passes
    org.reset(4)
    u = pulses(steps, 200)                                                # 0.5 V pulses at 5 Hz
    after = np.convolve(u[0, :, 0] > 0, np.ones(10))[:steps] > 0          # 10 ms after each pulse
    pulsed = org.run(u)[0][after][:, near].mean()
    assert held < 1.5 * rest + 1e-3
    assert pulsed > 5 * rest


def test_evoked_response_has_a_direct_and_a_polysynaptic_part(org):
    steps, every = 6000, 500
    u = pulses(steps, every, volts=0.8)
    org.reset(5)
    y = org.run(u)[0]
    near, far = near_far(org)
    onsets = np.flatnonzero(np.diff(u[0, :, 0]) > 0) + 1
    after = np.stack([y[t:t + every // 2] for t in onsets])          # (pulses, 250 ms, electrodes)
    org.reset(5)
    base = org.run(np.zeros_like(u))[0].mean(axis=0)                  # spontaneous counts per sample
    direct = after[:, :3][..., near].mean() / max(base[near].mean(), 1e-3)
    late = after[:, 10:200][..., far].mean() / max(base[far].mean(), 1e-3)
    assert direct > 10                                                # within 3 ms, next to the electrode
    assert late > 1.5                                                 # 10-200 ms later, far away


def test_blanking_removes_the_stimulation_artefact():
    kw = dict(n_inputs=1, n_outputs=63, neurons=300, output="lfp", noise_V=0.0)
    u = pulses(2000, 100)
    raw, blanked = OrganoidModel(blank_s=0.0, **kw), OrganoidModel(**kw)
    raw.reset(1)
    blanked.reset(1)
    y_raw, y_blank = raw.run(u)[0], blanked.run(u)[0]
    stim = np.flatnonzero(u[0, :, 0])
    assert np.abs(y_raw[stim]).max() > 1e-3                           # mV artefact at the pulse
    assert np.all(y_blank[stim] == 0) and np.all(y_blank[stim + 1] == 0)
    assert np.abs(y_blank).max() < 2e-4                               # what is left is the spikes' field


def test_blanking_carries_across_blocks():
    kw = dict(n_inputs=1, n_outputs=8, neurons=100, output="lfp")
    u = pulses(400, 50)
    whole, parts = OrganoidModel(**kw), OrganoidModel(**kw)
    whole.reset(2)
    parts.reset(2)
    a = whole.run(u)
    b = np.concatenate([parts.run(u[:, :26]), parts.run(u[:, 26:])], axis=1)   # cut inside a blank
    np.testing.assert_array_equal(a, b)


def test_spontaneous_firing_within_the_cited_range(org):
    org.reset(6)
    counts = org.run(np.zeros((1, 5000, 1)))[0]
    rate_hz = counts.sum() / org.readout.sum() / 5.0                   # per recorded neuron
    assert 0.1 <= rate_hz <= 5.0        # cortical cultures / organoids on MEAs: ~0.1-5 Hz (docstring)


def test_removing_synapses_removes_network_bursts():
    def burst_share(recurrent):
        model = OrganoidModel(n_inputs=1, n_outputs=63, recurrent=recurrent)
        model.reset(1)
        bins = model.run(np.zeros((1, 8000, 1)))[0].sum(axis=1).reshape(-1, 10).sum(axis=1)
        return bins[bins > 4 * bins.mean()].sum() / bins.sum()
    assert burst_share(False) < 0.05 < burst_share(True)
