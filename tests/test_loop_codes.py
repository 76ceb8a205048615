"""The loop's codes and environments: DishBrain's place + rate code, the feedback designs, blanking,
decoders and action spaces, Pong and the tracking task."""

from __future__ import annotations

import numpy as np
import pytest

from prclab.errors import PrclabError
from prclab.experiments.envs import Box, Pong, Tracking
from prclab.protocols.loop_codes import (Blanker, Feedback, MotorDecoder, PulseTrains, SensoryCode,
                                         action_for)
from prclab.protocols.loop_keys import FEEDBACK_TABLE

RATE, N = 1000.0, 10  # 1 kHz, 10 ms ticks


def pulses(wave):
    """Pulse onsets per electrode: samples where the positive phase begins."""
    pos = wave > 0
    return (pos & ~np.vstack([np.zeros((1, wave.shape[1]), bool), pos[:-1]])).sum(axis=0)


def test_rates_are_exact_across_ticks_and_pulses_charge_balanced():
    trains = PulseTrains(3, RATE, phase=1)
    wave = np.concatenate([trains.block(N, np.array([4.0, 40.0, 100.0]), np.array([0.075] * 3))
                           for _ in range(100)])  # 1 s
    assert list(pulses(wave)) == [4, 40, 100]
    tail = trains.block(N, np.zeros(3), np.zeros(3))  # a pulse begun on a tick's last sample ends next tick
    np.testing.assert_allclose(wave.sum(axis=0) + tail.sum(axis=0), 0, atol=1e-12)  # +V then -V
    assert set(np.round(np.unique(wave), 4)) == {-0.075, 0.0, 0.075}


def test_place_and_rate_code():
    code = SensoryCode("place_rate", 8, Box(0, 1, (2,)), RATE, 1, 0.075, 4.0, 40.0, 10)
    for place, electrode in ((0.0, 0), (0.49, 3), (0.51, 4), (1.0, 7)):
        wave = np.concatenate([code.block([place, 1.0], N) for _ in range(100)])
        assert np.flatnonzero(pulses(wave)) == [electrode] and pulses(wave)[electrode] in (39, 40, 41)
    far = np.concatenate([code.block([0.5, 0.0], N) for _ in range(100)])
    assert pulses(far).sum() in (3, 4, 5)  # 4 Hz when far
    code.block([0.5, 1.0], N, silent=True)  # may end the negative phase of the last pulse
    assert not code.block([0.5, 1.0], N, silent=True).any()
    with pytest.raises(PrclabError, match="non-finite observation"):
        code.block([np.nan, 1.0], N)
    with pytest.raises(PrclabError, match="at least 2 values"):
        SensoryCode("place_rate", 8, Box(0, 1, (1,)), RATE, 1, 0.075, 4, 40, 10)
    with pytest.raises(PrclabError, match="bounded observation of \\[stimulus\\] electrodes = 8"):
        SensoryCode("rate", 8, Box(0, 1, (2,)), RATE, 1, 0.075, 4, 40, 10)


def feedback(mode, **kw):
    return Feedback({**FEEDBACK_TABLE.defaults(), "mode": mode, **kw}, 8, RATE, 1, seed=0)


def run_ticks(fb, ticks):
    waves, paused = zip(*(fb.block(N) for _ in range(ticks)))
    return np.concatenate([w if w is not None else np.zeros((N, 8)) for w in waves]), np.array(paused)


def test_stimulus_feedback_hit_and_miss():
    fb = feedback("stimulus")
    assert fb.event("hit") == "hit"
    wave, paused = run_ticks(fb, 20)
    assert list(pulses(wave[:100])) == [10] * 8 and not wave[100:].any()  # 100 Hz on all 8 for 100 ms
    assert np.abs(wave).max() == pytest.approx(0.075) and not paused.any()
    assert fb.event("miss") == "miss"
    wave, paused = run_ticks(fb, 500)
    assert paused[:400].all() and not paused[400:].any()  # the game pauses 4 s
    n = pulses(wave[:4000]).sum()
    assert 8 <= n <= 35 and not wave[4000:].any()  # ~5 Hz for 4 s, on random electrodes
    assert (pulses(wave) > 0).sum() >= 4 and np.abs(wave).max() == pytest.approx(0.15)


@pytest.mark.parametrize("mode, hit, miss, pause", [
    ("silent", "none", "silence", True), ("none", "none", "none", False), ("rest", "none", "none", False)])
def test_controls(mode, hit, miss, pause):
    fb = feedback(mode)
    assert fb.event("hit") == hit and fb.event(None) == "none"
    assert fb.event("miss") == miss
    wave, paused = run_ticks(fb, 10)
    assert not wave.any() and paused.all() == pause
    assert fb.sensory == (mode != "rest")


def test_shuffled_feedback_ignores_the_outcome():
    fb = feedback("shuffled")
    began = [fb.event("hit") for _ in range(200)]
    assert 60 < began.count("miss") < 140 and began.count("hit") + began.count("miss") == 200


def test_blanking_after_each_stimulus_sample():
    b = Blanker(5)
    block = np.zeros((30, 2))
    block[3, 1] = 0.1
    block[20, 0] = -0.1
    b.written(block[:10], 0.0)
    b.written(block[10:], 0.0)
    keep = np.concatenate([b.keep(0, 10), b.keep(10, 10), b.keep(20, 10)])
    assert list(np.flatnonzero(~keep)) == [3, 4, 5, 6, 7, 20, 21, 22, 23, 24]
    assert Blanker(0).keep(0, 4).all()


def test_motor_decoder_and_action_spaces():
    d = MotorDecoder([0, 1], [2, 3])
    window = np.zeros((10, 4))
    window[:, 0] = 3.0
    window[:, 2] = 1.0
    keep = np.ones(10, bool)
    assert d.decide(window, keep) == pytest.approx(0.5)  # (3 - 1) / (3 + 1)
    keep[:] = False
    assert d.decide(window, keep) == 0.0  # everything blanked: no move
    assert action_for(1.0, Box(-2, 2, (1,)))[0] == pytest.approx(2.0)

    class Discrete:
        n = 3
    assert [action_for(u, Discrete()) for u in (-1, 0, 1)] == [0, 1, 2]
    with pytest.raises(PrclabError, match="neither discrete nor one bounded value"):
        action_for(0.0, Box(-np.inf, np.inf, (1,)))


def play(env, policy, steps, seed=0):
    obs, info = env.reset(seed=seed)
    events, rewards = [], []
    for _ in range(steps):
        obs, r, term, trunc, info = env.step([policy(info)])
        events.append(info["event"])
        rewards.append(r)
        assert not (term or trunc) and env.observation_space.low.min() <= obs.min() <= obs.max() <= 1
    return events, np.array(rewards)


def test_pong_teacher_plays_well_random_badly():
    env = Pong()
    good, _ = play(env, lambda info: info["teacher"], 6000)
    rng = np.random.default_rng(1)
    bad, _ = play(Pong(), lambda info: rng.uniform(-1, 1), 6000)
    assert good.count("miss") == 0 and good.count("hit") > 10
    assert bad.count("miss") > 5 * max(1, bad.count("hit") / max(1, bad.count("miss")))
    again, _ = play(Pong(), lambda info: info["teacher"], 6000)
    assert again == good  # reset(seed) makes it reproducible


def test_tracking_teacher_beats_standing_still():
    _, good = play(Tracking(), lambda info: info["teacher"], 3000)
    _, still = play(Tracking(), lambda info: 0.0, 3000)
    assert -good.mean() < 0.05 and -good.mean() < 0.3 * -still.mean()
