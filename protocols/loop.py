"""The closed loop: tick by tick, read the response window, decide, step the environment, stimulate.

``prclab loop PROTOCOL.toml --out REC.h5`` runs :func:`run_loop` through the same rig, safety layer
and recording as ``prclab run``.  A tick is ``n = tick_s x rate`` samples; the lead is
``L = lead_s x rate`` samples.  Before the first tick ``n + L`` rest samples are queued; then every tick:

1. read the next ``n`` response samples (the stream window ``[k n, (k + 1) n)``; on hardware this
   waits for them) - the tick's clock starts when they are in hand;
2. the decoder turns the window, less the samples blanked after a stimulus, into ``u`` in [-1, 1]
   (:mod:`.loop_codes`), mapped into the environment's action space;
3. the environment steps (``env.step(action)``, Gymnasium's API), unless a miss paused the game;
   a decoder that learns is told the step's ``info``;
4. a hit or a miss starts its feedback (``[feedback] mode``); the tick's stimulus is the feedback still
   playing, else the sensory code of the observation (none while paused, none in the ``rest`` control);
5. the start-of-run ramp, then the :class:`~.safety.SafetyMonitor` checks the block (a block breaking a
   limit stops the loop before it reaches the device, outputs ramped to rest);
6. the block is written: it plays at stream samples ``[(k + 1) n + L, (k + 2) n + L)``, so the
   response it evokes is read ``L`` samples plus up to one tick later.

Latency: the loop's own, from the window in hand (1) to the block handed to the device (6), per tick
(a simulated device then computes the substrate inside ``write``: simulation time, not loop latency).
A tick whose computation (1-5) takes longer than ``lead_s`` overruns: on a device streaming in real
time its slot has begun to play.  ``[loop] overrun``: ``skip`` writes rest instead of the late block,
``stop`` ends the loop with an error naming the tick, ``count`` (simulated devices only) writes it
anyway; every late tick is counted (``overruns``) and flagged (``late``, ``skipped``).  On a simulated
device the substrate waits for the loop (the simulated clock: the loop runs as fast as it computes,
often faster than real time, and the result says so with ``clock``, ``wall_s`` and
``speed_vs_real_time``); overruns are judged on the same wall-clock lead, so a rehearsal shows what the
rig would do, and ``count`` keeps a simulated experiment independent of the machine's load.  BLAS runs
on one thread inside the loop (small products; :mod:`prclab.readouts.online`).

Recording: every ``flush_ticks`` ticks a segment is appended to the recording as one trial (the
recording writer's public API: flushed and fsync-ed, so a kill loses at most the ticks since the last
flush, and the file stays readable), with ``split = "loop"``, the segment's stimulus and response
samples, and per tick, in its attributes: ``observation`` ``(k, obs)``, ``action`` ``(k, a)``,
``reward``, ``event`` (0 none, 1 hit, 2 miss), ``feedback`` (:data:`~.loop_codes.FEEDBACK_CODES`),
``paused``, ``latency_s``, ``late`` and ``skipped``.  The stimulus blocks go to the safety log
(``note_delivered``) at each flush, with the lead-in; the loop has no resume.  :func:`read_loop` reads
it back; :func:`loop_metrics` scores it (DishBrain's metrics).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from threadpoolctl import threadpool_limits

from prclab.drivers import Device
from prclab.errors import PrclabError

from .loop_codes import EVENTS, FEEDBACK_CODES, Blanker, Feedback, RandomDecoder, SensoryCode, action_map
from .protocol import Protocol
from .recording import RecordingWriter, read_recording
from .recording_storage import storage_for
from .runner import _opened, _safe_stop, safety_limits
from .safety import SafetyMonitor, apply_ramp

#: per-tick values recorded, in each segment's attributes
TICK_FIELDS = ("observation", "action", "reward", "event", "feedback", "paused", "latency_s", "late",
               "skipped")
#: per-tick values kept in memory for the whole run (the figures at its end)
SCALAR_FIELDS = ("reward", "event", "latency_s", "late", "skipped")
#: largest observation + action recorded per segment (numbers): HDF5 attributes stay well below 64 kB
MAX_SEGMENT_VALUES = 4000
#: the window DishBrain's T2 / last-5-minutes metrics use (seconds)
LAST_S = 300.0


def tick_samples(protocol: Protocol, device: Device | None = None) -> tuple[int, int]:
    """``(n, L)``: samples per tick and of the lead, from ``[loop] tick_s`` and ``lead_s``.

    Raises:
        PrclabError: a tick that is not a whole number (>= 1) of samples, or shorter than the device's
            smallest block (``min_block_samples``, where a driver declares one).
    """
    loop, rate = protocol["loop"], protocol.rate_hz
    n = loop["tick_s"] * rate
    if round(n) < 1 or abs(n - round(n)) > 1e-6 * max(1.0, n):
        raise PrclabError(f"{protocol.where}: [loop] tick_s = {loop['tick_s']:g} s is {n:g} samples at "
                          f"{rate:g} Hz; a tick must be a whole number of samples (>= 1)")
    least = int(getattr(device, "min_block_samples", 1) or 1)
    if round(n) < least:
        raise PrclabError(f"{protocol.where}: [loop] tick_s = {loop['tick_s']:g} s ({round(n)} samples) is "
                          f"shorter than {device.name}'s block of {least} samples")
    return int(round(n)), int(math.ceil(loop["lead_s"] * rate - 1e-9))


@dataclass
class _Segment:
    """Ticks held in memory until the next flush."""

    first: int
    stimulus: list
    response: list
    times: list
    values: dict

    @classmethod
    def empty(cls, first: int) -> "_Segment":
        return cls(first, [], [], [], {k: [] for k in TICK_FIELDS})


class TickRecorder:
    """Writes the loop's ticks to a :class:`~.recording.RecordingWriter`, one segment (trial) per
    flush; see the module docstring for the layout."""

    def __init__(self, writer: RecordingWriter):
        self.writer = writer
        self.segment = _Segment.empty(0)
        self.n_segments = 0
        self.scalars = {k: [] for k in SCALAR_FIELDS}  # every tick's, for the run's figures

    def add(self, stimulus, response, times, **values) -> None:
        s = self.segment
        s.stimulus.append(stimulus)
        s.response.append(response)
        s.times.append(times)
        for k in TICK_FIELDS:
            s.values[k].append(values[k])
        for k in SCALAR_FIELDS:
            self.scalars[k].append(values[k])

    @property
    def pending(self) -> int:
        return len(self.segment.stimulus)

    def flush(self) -> None:
        """Append the ticks held as one segment (flushed, fsync-ed); nothing if none."""
        s = self.segment
        if not s.stimulus:
            return
        stim = np.concatenate(s.stimulus)
        self.writer.note_delivered(stim)
        ticks = len(s.stimulus)
        self.writer.append(self.n_segments, stim, s.response, np.concatenate(s.times), item=-1,
                           item_id=f"ticks {s.first}-{s.first + ticks - 1}", label="loop", split="loop",
                           repetition=0, stim_start=0, stim_stop=len(stim), first_tick=s.first,
                           **{k: np.asarray(v) for k, v in s.values.items()})
        self.n_segments += 1
        self.segment = _Segment.empty(s.first + ticks)


def run_loop(protocol: Protocol, device: Device, out: str | Path, env, decoder,
             substrate: dict | None = None, baseline_env=None, subscribers: Iterable = (),
             progress: Callable[[int, int], None] | None = None) -> dict:
    """Run the closed loop of ``protocol`` on ``device`` (opened here) with ``env`` (Gymnasium's
    ``reset(seed=)`` / ``step(action)``, ``action_space``, ``observation_space``) and ``decoder``
    (:mod:`.loop_codes`), recording to ``out``; returns :func:`loop_metrics` of the run plus the clock.

    Args:
        baseline_env: a second, fresh environment like ``env``: the random paddle is played on it for
            as many ticks (no substrate) and its mean rally length reported beside the run's.
        subscribers: told ``run_start`` and ``run_stop`` (:class:`~.runner.Subscriber`).
        progress: ``progress(ticks_done, ticks_total)`` after each flush.

    Raises:
        PrclabError: bad settings for this device or environment (one line), a tick over the lead time
            with ``overrun = "stop"``; ``SafetyError``: a block breaking a limit (never written).
    """
    loop, fb, seed = protocol["loop"], protocol["feedback"], protocol["protocol"]["seed"]
    rate, where = protocol.rate_hz, protocol.where
    n_el = protocol["stimulus"]["electrodes"]
    if device.channels.rate_hz != rate:
        raise PrclabError(f"{device.name}: runs at {device.channels.rate_hz} Hz, the protocol asks for {rate} Hz")
    if len(device.channels.stimulus) != n_el:
        raise PrclabError(f"{device.name}: has {len(device.channels.stimulus)} stimulus channels, the "
                          f"protocol needs {n_el}")
    n, lead = tick_samples(protocol, device)
    total = int(round(loop["duration_s"] / loop["tick_s"]))
    phase = max(1, int(round(loop["phase_s"] * rate)))
    sensory = SensoryCode(loop["encoder"], n_el, env.observation_space, rate, phase, loop["sensory_V"],
                          loop["rate_min_hz"], loop["rate_max_hz"], loop["rate_levels"], where)
    action_map(env.action_space, where)  # refuse an action space the decoder cannot produce now
    width = int(np.prod(getattr(env.observation_space, "shape", (1,)) or (1,)))
    if loop["flush_ticks"] * (width + 8) > MAX_SEGMENT_VALUES:
        raise PrclabError(f"{where}: [loop] flush_ticks = {loop['flush_ticks']} ticks of a {width}-value "
                          f"observation exceed a segment's {MAX_SEGMENT_VALUES} values; flush more often")
    feedback = Feedback(fb, n_el, rate, phase, seed + 1)
    limits = safety_limits(protocol, device)
    monitor = SafetyMonitor(limits)
    rest = limits.rest_V
    device.set_rest(rest, limits.max_slew_V_per_s)
    blanker = Blanker(int(round(fb["blank_s"] * rate)))
    meta = {"protocol_text": protocol.text, "rate_hz": rate, "kind": "closed-loop",
            "device": device.describe(), "substrate": substrate or device.describe().get("substrate", {}),
            "loop": {"tick_samples": n, "lead_samples": lead, "lead_in_samples": n + lead, "ticks": total,
                     "environment": type(env).__name__, "decoder": type(decoder).__name__,
                     "response_window": "tick k: stream samples [k n, (k + 1) n)",
                     "stimulus_plays": "tick k: stream samples [(k + 1) n + L, (k + 2) n + L)"},
            "n_trials_planned": -(-total // loop["flush_ticks"])}
    simulated = getattr(device, "substrate", None) is not None
    if loop["overrun"] == "count" and not simulated:
        raise PrclabError(f"{where}: [loop] overrun = \"count\" needs a simulated device (a device plays "
                          f"on while a tick is late): use skip or stop")
    writer = RecordingWriter(out, meta, storage=storage_for(protocol["recording"], device))
    rec = TickRecorder(writer)
    emit = _subscribers(subscribers)
    started = time.perf_counter()
    with writer:
        with _opened(device, writer, False), _safe_stop(device, writer, monitor, subscribers), \
                threadpool_limits(1, "blas"):
            emit("run_start", total=total, done=0, resume=False)
            try:
                _ticks(protocol, device, env, decoder, sensory, feedback, monitor, blanker, rec, n, lead,
                       total, seed, progress)
            finally:
                rec.flush()  # ticks finished before a stop are kept (a kill loses those since the last flush)
        wall = time.perf_counter() - started
        ticks = {k: np.asarray(v) for k, v in rec.scalars.items()}
        result = loop_metrics(LoopRecord(len(ticks["event"]), ticks, {}, []), loop["tick_s"])
        result.update(clock="simulated" if simulated else "device", wall_s=wall,
                      simulated_s=total * loop["tick_s"],
                      speed_vs_real_time=total * loop["tick_s"] / wall if wall > 0 else math.inf)
        if baseline_env is not None:
            base = play_without_substrate(baseline_env, RandomDecoder(seed + 2), total, n, feedback_pause(
                fb, rate), seed, where)
            result["random_paddle_rally_length"] = rally_stats(base, loop["tick_s"])["mean_rally_length"]
        writer.note_session(loop_result=result)
    return result


def _subscribers(subscribers: Iterable) -> Callable[..., None]:
    subs = list(subscribers)

    def emit(event: str, **fields) -> None:
        for s in subs:
            s(event, fields)
    return emit


def _ticks(protocol, device, env, decoder, sensory, feedback, monitor, blanker, rec, n, lead, total, seed,
           progress) -> None:
    """The tick loop of :func:`run_loop` (module docstring, steps 1-6)."""
    loop, where = protocol["loop"], protocol.where
    lim = monitor.limits
    rest = lim.rest_V
    lead_s, policy, flush = loop["lead_s"], loop["overrun"], loop["flush_ticks"]
    prime = np.full((n + lead, lim.n_channels), rest)
    apply_ramp([prime], lim)
    monitor.check(prime, lambda row: ("loop lead-in", row))
    writer = rec.writer
    writer.note_delivered(prime)
    device.write(prime)
    blanker.written(prime, rest)
    position = len(prime)
    obs, info = env.reset(seed=seed)
    to_action = action_map(env.action_space, where)
    for k in range(total):
        window, times = device.read(n)
        t_avail = time.perf_counter()
        keep = blanker.keep(k * n, n)
        u = decoder.decide(window, keep)
        action = to_action(u)
        reward, event, paused = 0.0, None, feedback.pause > 0
        if not paused:
            obs, reward, terminated, truncated, info = env.step(action)
            event = info.get("event")
            if event is not None and event not in EVENTS:
                raise PrclabError(f"the environment's info['event'] is {event!r:.40}; known: hit, miss")
            if decoder.learns:
                decoder.learn(info)
            if terminated or truncated:
                obs, info = env.reset()
        began = feedback.event(event)
        wave, _ = feedback.block(n)
        code = sensory.block(obs, n, silent=paused or not feedback.sensory)
        block = rest + (wave if wave is not None else code)
        if position < lim.ramp:
            apply_ramp([block], lim, start=position)
        late = time.perf_counter() - t_avail > lead_s
        if late and policy == "stop":
            raise PrclabError(f"{where}: tick {k} took {1e3 * (time.perf_counter() - t_avail):.2f} ms, over "
                              f"the lead time of {1e3 * lead_s:g} ms ([loop] overrun = \"stop\")")
        skip = late and policy == "skip"
        if skip:
            block = np.full_like(block, rest)
        monitor.check(block, lambda row, k=k: (f"tick {k}", row))
        latency = time.perf_counter() - t_avail  # the block is handed to the device now
        device.write(block)
        blanker.written(block, rest)
        position += n
        rec.add(block, window, times, observation=np.asarray(obs, float).ravel(),
                action=np.atleast_1d(np.asarray(action, float)).ravel(), reward=float(reward),
                event=EVENTS.get(event, 0), feedback=FEEDBACK_CODES[began], paused=paused,
                latency_s=latency, late=late, skipped=skip)
        if rec.pending >= flush:
            rec.flush()
            if progress is not None:
                progress(k + 1, total)


def feedback_pause(table: dict, rate_hz: float) -> int:
    """Samples the game pauses after a miss under feedback ``table`` (0 for none / rest)."""
    return int(round(table["pause_s"] * rate_hz)) if table["mode"] in ("stimulus", "silent", "shuffled") else 0


def play_without_substrate(env, decoder, total: int, n: int, pause: int, seed: int, where: str) -> np.ndarray:
    """``(total,)`` event codes of ``total`` ticks of ``env`` driven by ``decoder`` on no response (the
    random paddle), with the pause of ``pause`` samples after each miss, as in the loop."""
    events = np.zeros(total, np.int8)
    env.reset(seed=seed)
    wait, empty, to_action = 0, np.zeros((n, 0)), action_map(env.action_space, where)
    for k in range(total):
        u = decoder.decide(empty, np.ones(n, bool))
        if wait > 0:
            wait -= n
            continue
        _, _, terminated, truncated, info = env.step(to_action(u))
        events[k] = EVENTS.get(info.get("event"), 0)
        if events[k] == EVENTS["miss"]:
            wait = pause
        if terminated or truncated:
            env.reset()
    return events


@dataclass
class LoopRecord:
    """A loop recording's ticks: ``ticks`` (count), per-tick arrays of :data:`TICK_FIELDS` (``(ticks,
    ...)``), the file's ``attrs`` and ``problems`` (segments that failed their checks, named)."""

    ticks: int
    values: dict
    attrs: dict
    problems: list

    def __getitem__(self, key: str) -> np.ndarray:
        return self.values[key]


def read_loop(path: str | Path) -> LoopRecord:
    """The ticks of the loop recording ``path``: every intact segment's per-tick values, in order (a
    kill leaves the segments flushed before it).

    Raises:
        PrclabError: not a recording, or not a closed loop's.
    """
    rec = read_recording(path, verify=False)
    if rec.attrs.get("kind") != "closed-loop":
        raise PrclabError(f"recording {path}: not a closed-loop recording (made by prclab run?)")
    segments = [t for t in rec.trials if t.split == "loop"]
    try:
        values = {k: [np.asarray(t.extra[k]) for t in segments] for k in TICK_FIELDS}
    except KeyError as exc:
        raise PrclabError(f"recording {path}: a loop segment lacks its per-tick {exc}") from None
    joined = {k: np.concatenate(v) if v else np.zeros(0) for k, v in values.items()}
    return LoopRecord(len(joined["event"]), joined, rec.attrs, rec.problems)


def rally_lengths(events: np.ndarray, tick_s: float) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(hits, end_s, unfinished)``: the hits of each rally in per-tick ``events`` (0 none, 1 hit,
    2 miss) and the time (s) it ended.  A rally is the hits before a miss; the rally still going when
    the run ends counts, ending then, once it has a hit (its length is a lower bound: a player that never
    misses has one rally of all its hits); with no hit yet it is left out (it may yet be an ace).
    ``unfinished``: whether the last rally is such an unfinished one."""
    events = np.asarray(events)
    misses = np.flatnonzero(events == EVENTS["miss"])
    hits = np.cumsum(events == EVENTS["hit"])
    per = np.diff(np.concatenate([[0], hits[misses]])) if len(misses) else np.zeros(0, int)
    end_s = (misses + 1) * tick_s
    tail = int(hits[-1] - (hits[misses[-1]] if len(misses) else 0)) if len(events) else 0
    if tail > 0:
        per, end_s = np.append(per, tail), np.append(end_s, len(events) * tick_s)
    return per, end_s, tail > 0


def _mean(x) -> float:
    return float(np.mean(x)) if len(x) else math.nan


def rally_stats(events: np.ndarray, tick_s: float, last_s: float = LAST_S) -> dict:
    """DishBrain's metrics from per-tick ``events`` (0 none, 1 hit, 2 miss) over the rallies of
    :func:`rally_lengths`: ``mean_rally_length`` (hits per rally), its value over the rallies ending in
    the first and the last ``last_s`` seconds, ``aces_fraction`` (rallies missed on the first approach:
    no hit), ``long_rally_fraction`` (more than 3 hits), ``rallies``, ``hits``, ``misses`` and
    ``unfinished_rally`` (the last rally counted was still going at the end)."""
    events = np.asarray(events)
    per, end_s, unfinished = rally_lengths(events, tick_s)
    span = len(events) * tick_s
    return {"rallies": int(len(per)), "mean_rally_length": _mean(per),
            "mean_rally_length_first_5min": _mean(per[end_s <= last_s]),
            "mean_rally_length_last_5min": _mean(per[end_s > span - last_s]),
            "aces_fraction": _mean(per == 0), "long_rally_fraction": _mean(per > 3),
            "hits": int(np.sum(events == EVENTS["hit"])), "misses": int(np.sum(events == EVENTS["miss"])),
            "unfinished_rally": bool(unfinished)}


def t1_t2_stats(events: np.ndarray, tick_s: float, split_s: float = LAST_S) -> dict:
    """DishBrain's comparison of the first ``split_s`` seconds of play (``T1``: rallies ending then)
    with the rest (``T2``: minutes 6-20 of a 20 min session): per window ``rallies``,
    ``mean_rally_length``, ``aces_fraction``, ``long_rally_fraction`` and ``hits_per_rally`` (the
    rallies' lengths, a list: for a test over rallies)."""
    per, end_s, _ = rally_lengths(events, tick_s)
    out = {}
    for name, part in (("T1", per[end_s <= split_s]), ("T2", per[end_s > split_s])):
        out[name] = {"rallies": int(len(part)), "mean_rally_length": _mean(part),
                     "aces_fraction": _mean(part == 0), "long_rally_fraction": _mean(part > 3),
                     "hits_per_rally": part.tolist()}
    return out


def loop_metrics(rec: LoopRecord, tick_s: float) -> dict:
    """The run's figures: :func:`rally_stats`, ``mean_reward``, ``ticks``, ``overruns`` (ticks over the
    lead time) and ``skipped``, and the tick latency ``latency_p50_ms`` / ``p99`` / ``max``."""
    lat = rec["latency_s"] * 1e3
    out = {"ticks": rec.ticks, **rally_stats(rec["event"], tick_s),
           "mean_reward": float(np.mean(rec["reward"])) if rec.ticks else math.nan,
           "overruns": int(np.sum(rec["late"])), "skipped": int(np.sum(rec["skipped"]))}
    for name, q in (("p50", 50), ("p99", 99), ("max", 100)):
        out[f"latency_{name}_ms"] = float(np.percentile(lat, q)) if rec.ticks else math.nan
    return out
