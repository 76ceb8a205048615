"""Physics of the organoid model (reservoir/organoid.py), each a named property of the material.

Capacitive electrodes pass no DC; a charge-balanced pulse evokes a direct response near the electrode and a
later network one; the stimulation artefact on the recorded voltage is removed by blanking; spontaneous
firing and network bursts lie in the ranges the model's docstring cites; removing the synapses removes the
network bursts; STDP potentiates pre-before-post and depresses post-before-pre pairs, and synaptic scaling
moves the rate toward its target.
"""

import functools

import numpy as np
import pytest

from prclab.experiments.bursts import detect_bursts
from prclab.reservoir import OrganoidModel
from prclab.reservoir.checks import check_substrate
from prclab.reservoir.plasticity import STDPRule, STDPState


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
    late = after[:, 10:50][..., far].mean() / max(base[far].mean(), 1e-3)
    assert direct > 10                                                # within 3 ms, next to the electrode
    assert after[:, :3][..., near].mean() > 5 * after[:, :3][..., far].mean()   # fires more near it
    assert late > 1.5                                                 # 10-50 ms later, far away


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


def spontaneous(recurrent=True, rows=3, seconds=10.0, **kw):
    """Spontaneous counts ``(rows, steps, 32)`` of ``rows`` independent trials of the default organoid."""
    model = OrganoidModel(recurrent=recurrent, **kw)
    model.reset(1)
    return model, model.run(np.zeros((rows, int(seconds / model.dt), model.n_inputs)))


def test_spontaneous_bursts_within_the_cited_ranges():
    model, counts = spontaneous(rows=3, seconds=20.0)
    stats = [detect_bursts(trial, model.dt) for trial in counts]
    rates = [s["burst_rate_hz"] for s in stats]
    intervals = np.concatenate([np.diff(s["starts_s"]) for s in stats])
    assert all(1 / 300 <= r <= 1.0 for r in rates)      # inter-burst intervals 1-300 s (Wagenaar 2006)
    assert intervals.std() / intervals.mean() > 0.3      # irregular, not a clock
    recruited = np.concatenate([s["recruitment"] for s in stats])
    assert recruited.min() < 0.75 * recruited.max()      # burst sizes vary
    lengths = np.concatenate([np.subtract(s["stops_s"], s["starts_s"]) for s in stats])
    assert 0.1 <= lengths.mean() <= 1.0                  # ~0.1-1 s (Wagenaar 2006; docstring)


@functools.lru_cache(maxsize=None)
def burst_stats(**kw):
    """Pooled statistics of 3 x 10 s of spontaneous activity: mean burst length (s), bursts per s, and
    the rate per recorded neuron (Hz)."""
    model, counts = spontaneous(rows=3, seconds=10.0, **kw)
    stats = [detect_bursts(trial, model.dt) for trial in counts]
    lengths = np.concatenate([np.subtract(s["stops_s"], s["starts_s"]) for s in stats])
    return lengths.mean(), len(lengths) / 30.0, counts.sum() / model.readout.sum() / 30.0


def test_nmda_current_sustains_the_bursts():
    """The slow NMDA current (100 ms) keeps a burst going once the cells are depolarised; without it the
    bursts last as long as the fast synapses' reverberation, ~10-20 ms."""
    with_nmda, without = burst_stats()[0], burst_stats(nmda_ratio=0.0)[0]
    assert without < 0.05 and with_nmda > 3 * without


def test_mg_block_keeps_the_rate_in_the_cited_range():
    """Without the Mg2+ block the NMDA current flows at rest too: the network fires far above the cited
    ~0.1-5 Hz; with it, within."""
    assert burst_stats()[2] < 5.0 < burst_stats(mg_mM=0.0)[2]


def test_adaptation_spaces_the_bursts():
    """The slow afterhyperpolarisation built up in a burst delays the next: without it bursts come
    more than twice as often."""
    assert burst_stats(ahp_mV_per_ms=0.0)[1] > 2 * burst_stats()[1]


def test_removing_synapses_removes_network_bursts():
    """Without synapses only chance coincidences of independent cells pass the burst detector."""
    (model, intact), (_, ablated) = spontaneous(True), spontaneous(False)

    def in_bursts(counts):
        return np.mean([detect_bursts(trial, model.dt)["fraction_spikes_in_bursts"] for trial in counts])

    assert in_bursts(ablated) < 0.2 * in_bursts(intact)


def test_stdp_rule_direction_and_window():
    """One plastic synapse 0 -> 1: a pre spike 10 ms before a post spike potentiates it by
    a_plus w_max exp(-10 / tau_plus); the reverse order depresses it by a_minus w_max exp(-10 / tau_minus)."""
    rule = STDPRule()
    plastic = np.array([[False, True], [False, False]])
    w0 = np.array([[0.0, 3.0], [0.0, 0.0]])

    def paired(first, second, lag_ms=10):
        stdp = STDPState(rule, plastic, n_exc=1, dt_ms=1.0)
        stdp.start(w0, batch=1)
        stdp.on_spikes(np.array([0]), np.array([first]))
        for _ in range(lag_ms):
            stdp.step()
        stdp.on_spikes(np.array([0]), np.array([second]))
        return stdp.w[0, 0, 1] - w0[0, 1]

    ltp, ltd = paired(0, 1), paired(1, 0)
    np.testing.assert_allclose(ltp, rule.a_plus * rule.w_max * np.exp(-10 / rule.tau_plus_ms), rtol=1e-5)
    np.testing.assert_allclose(ltd, -rule.a_minus * rule.w_max * np.exp(-10 / rule.tau_minus_ms), rtol=1e-5)
    assert paired(0, 1, lag_ms=40) < ltp                 # the window falls off with the interval


def test_plastic_organoid_keeps_the_substrate_contract():
    """With STDP on: blocks stream as one run (scaling on the network's own clock), rows are independent,
    the plastic weights round-trip through the state."""
    check_substrate(lambda: OrganoidModel(n_inputs=2, n_outputs=8, neurons=120, stdp=True), steps=600)


def test_paired_stimulation_potentiates_the_forward_pathway():
    """Electrode A pulsed 10 ms before electrode B, 2 Hz for 10 s: synapses from the cells next to A onto
    those next to B grow, the reverse ones shrink (scaling switched off: STDP alone)."""
    model = OrganoidModel(n_inputs=2, n_outputs=8, neurons=300, stdp=True, stdp_tau_scaling_s=1e9)
    u = np.zeros((1, 10000, 2))
    u[0, 100::500, 0] = u[0, 110::500, 1] = 0.5
    model.reset(0)
    model.run(u)
    change = model.state["w"][0] - model.w_t
    d = np.linalg.norm(model.positions_um[:, None] - model.stim_positions_um[None], axis=2)
    near_a, near_b = d[:, 0] < 150, d[:, 1] < 150
    forward = model.stdp.plastic & near_a[:, None] & near_b[None, :]
    backward = model.stdp.plastic & near_b[:, None] & near_a[None, :]
    assert forward.sum() > 3 and backward.sum() > 3
    assert change[forward].mean() > 0 > change[backward].mean()


@pytest.mark.parametrize("target_hz, epsp_mV", [(4.0, 1.5), (1.0, 3.0)])
def test_synaptic_scaling_moves_the_rate_toward_its_target(target_hz, epsp_mV):
    """Scaling alone (no STDP pairs), from below (4 Hz target) and from above (1 Hz target, a network with
    twice the default EPSPs): over 20 s the rate moves toward the target and halves its distance from
    it, without overshooting by as much.  (Scaling cannot go below the rate the background noise drives
    without synapses, ~0.6 Hz.)"""
    kw = dict(n_inputs=1, n_outputs=63, neurons=300, epsp_mV=epsp_mV)
    fixed = OrganoidModel(**kw)
    model = OrganoidModel(stdp=True, stdp_a_plus=0.0, stdp_a_minus=0.0, stdp_target_hz=target_hz,
                          stdp_tau_scaling_s=4.0, **kw)
    rates = []
    for m in (fixed, model):
        m.reset(0)
        counts = m.run(np.zeros((1, 20000, 1)))[0]
        rates.append(counts[15000:].sum() / m.readout.sum() / 5.0)     # the last 5 s, per recorded cell
    fixed_hz, scaled_hz = rates
    assert abs(scaled_hz - target_hz) < 0.5 * abs(fixed_hz - target_hz)
    assert np.sign(fixed_hz - target_hz) * (scaled_hz - target_hz) > -0.5 * abs(fixed_hz - target_hz)
