"""The closed loop's protocol tables: ``[loop]``, ``[environment]`` and ``[feedback]``.

A protocol with a ``[loop]`` table is a closed loop (``prclab loop``, :mod:`prclab.protocols.loop`): it
plays no dataset, so it needs no ``[task]``; ``[stimulus] electrodes`` are the sensory electrodes.

Published values are the defaults where ``../shared/notes/closed-loop.md`` gives them (DishBrain, Kagan
et al., Neuron 110:3952, 2022, via third-party reimplementations: tagged [2nd] there, so they are
documented, overridable keys): 10 ms activity windows; 8 sensory electrodes with a place code plus a
rate code of 4-40 Hz in 10 levels; biphasic pulses of 75 mV, 200 us per phase; hit feedback 100 Hz on
all sensory electrodes at 75 mV for 100 ms; miss feedback 5 Hz on random electrodes at 150 mV for 4 s
with the game paused 4 s; readout blanked 5 ms after each stimulus.  The lead time, the overrun policy,
the flush interval and the decoders' parameters are prclab's choices.
"""

from __future__ import annotations

from .schema import Key, Table

#: longest closed loop (seconds): a day
MAX_LOOP_S = 86_400.0
#: most ticks held in memory between flushes (their per-tick values are one segment's attributes)
MAX_FLUSH_TICKS = 1000

DECODERS = ("motor", "random", "rls", "lms")
FEEDBACK_MODES = ("stimulus", "silent", "none", "rest", "shuffled")

LOOP_TABLE = Table("loop", (
    Key("tick_s", float, 0.01, unit="s", low=0, low_open=True, high=10.0,
        doc="tick: one response window read, one environment step, one stimulus block (DishBrain: 10 ms)"),
    Key("duration_s", float, 60.0, unit="s", low=0, low_open=True, high=MAX_LOOP_S,
        doc="length of the loop (simulated or device time)"),
    Key("lead_s", float, 0.005, unit="s", low=0, high=10.0,
        doc="lead time: each tick's stimulus is queued this far ahead of its playing; a tick whose "
            "computation takes longer overruns"),
    Key("overrun", str, "skip", choices=("skip", "stop", "count"),
        doc="a tick over the lead time: skip (its stimulus replaced by rest), stop with an error, or "
            "count (simulated devices only: written anyway); every late tick is counted"),
    Key("flush_ticks", int, 100, unit="ticks", low=1, high=MAX_FLUSH_TICKS,
        doc="ticks per recorded segment, flushed and fsync-ed (a kill loses at most these)"),
    Key("encoder", str, "place_rate", choices=("place_rate", "rate"),
        doc="place_rate: observation[0] in [0, 1] picks the electrode, observation[1] in [0, 1] the rate; "
            "rate: one electrode per observation value, its rate from the value"),
    Key("rate_min_hz", float, 4.0, unit="Hz", low=0, high=10_000.0, doc="sensory rate code, lowest rate"),
    Key("rate_max_hz", float, 40.0, unit="Hz", low=0, high=10_000.0, doc="sensory rate code, highest rate"),
    Key("rate_levels", int, 10, low=1, high=1000, doc="sensory rate code, number of rates"),
    Key("sensory_V", float, 0.075, unit="V", low=0, high=1000.0,
        doc="sensory pulse amplitude about the rest level"),
    Key("phase_s", float, 200e-6, unit="s", low=0, low_open=True, high=1.0,
        doc="biphasic pulse phase (positive first), at least one sample"),
    Key("decoder", str, "motor", choices=DECODERS,
        doc="motor: the up minus down activity; random: a random paddle; rls / lms: an online readout "
            "of every channel's activity, trained each tick on the environment's info['teacher']"),
    Key("up_channels", list, [], items=int, doc="response channels of the 'up' motor region (empty: first half)"),
    Key("down_channels", list, [], items=int,
        doc="response channels of the 'down' motor region (empty: second half)"),
    Key("motor_gain", float, 1.0, low=0, high=1e6,
        doc="action = gain (up - down) / (up + down), clipped to [-1, 1]"),
    Key("alpha", float, 1e-2, low=0, low_open=True, high=1e12, doc="rls: P0 = I / alpha"),
    Key("forgetting", float, 1.0, low=0, low_open=True, high=1.0, doc="rls: forgetting factor"),
    Key("learning_rate", float, 0.1, low=0, low_open=True, high=2.0, doc="lms: normalised step")),
    "A closed loop (prclab loop): tick, lead time, overrun policy, sensory code and decoder.")

ENVIRONMENT_TABLE = Table("environment", (
    Key("name", str, "pong",
        doc="pong, tracking (prclab.experiments.envs) or gymnasium:ID (Gymnasium, if installed)"),
    Key("params", dict, {}, doc="the environment's constructor keywords")),
    "The environment the loop embodies the substrate in (Gymnasium's reset(seed) / step(action)).")

FEEDBACK_TABLE = Table("feedback", (
    Key("mode", str, "stimulus", choices=FEEDBACK_MODES,
        doc="stimulus: predictable on a hit, unpredictable on a miss (and a pause); silent: a miss gives "
            "silence for pause_s; none: no feedback; rest: no sensory input and no feedback; shuffled: "
            "hit or miss feedback at random, whatever happened"),
    Key("hit_hz", float, 100.0, unit="Hz", low=0, high=10_000.0, doc="hit: pulse rate on all sensory electrodes"),
    Key("hit_s", float, 0.1, unit="s", low=0, high=3600.0, doc="hit: duration"),
    Key("hit_V", float, 0.075, unit="V", low=0, high=1000.0, doc="hit: pulse amplitude"),
    Key("miss_hz", float, 5.0, unit="Hz", low=0, high=10_000.0,
        doc="miss: mean pulse rate (Poisson times, each pulse on a random sensory electrode)"),
    Key("miss_s", float, 4.0, unit="s", low=0, high=3600.0, doc="miss: duration"),
    Key("miss_V", float, 0.15, unit="V", low=0, high=1000.0, doc="miss: pulse amplitude"),
    Key("pause_s", float, 4.0, unit="s", low=0, high=3600.0,
        doc="the game pauses this long after a miss (stimulus, silent, shuffled)"),
    Key("blank_s", float, 0.005, unit="s", low=0, high=10.0,
        doc="response samples this long after any stimulus sample are left out of the decoder")),
    "Feedback after hits and misses, and the readout blanking.")

LOOP_TABLES = (LOOP_TABLE, ENVIRONMENT_TABLE, FEEDBACK_TABLE)
