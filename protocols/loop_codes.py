"""The closed loop's codes: observation -> sensory pulses, hit/miss -> feedback, response -> action.

Everything here works on one tick: ``n`` samples at the protocol's rate, ``n_el`` sensory (stimulus)
electrodes, ``n_resp`` response channels.  Stimulus values are volts about the rest level ``rest_V``.

Pulses are charge-balanced biphasic, positive first (Wagenaar, Madhavan & Potter 2004, J. Neurosci.
Methods 138:27: the most effective on culture MEAs), ``phase`` samples at ``+V`` then ``phase`` at
``-V``.  A rate of ``r`` Hz puts a pulse where the electrode's phase accumulator ``r t`` crosses an
integer, carried across ticks, so a rate is exact over many ticks at any tick length.

Decoders take the tick's response window ``(n, n_resp)`` and a mask ``(n,)`` of the samples not
blanked (:class:`Blanker`), and return one number ``u`` in [-1, 1] that :func:`action_map` maps into the
environment's action space; one that learns is told the environment's ``info`` after each step
(``learn``).  Any object with ``decide(window, keep) -> float`` and ``learn(info)`` is a decoder.
"""

from __future__ import annotations

import math

import numpy as np

from prclab.errors import PrclabError

EVENTS = {"hit": 1, "miss": 2}
#: feedback codes recorded per tick: what began on that tick
FEEDBACK_CODES = {"none": 0, "hit": 1, "miss": 2, "silence": 3}


def clip(x: float, low: float, high: float) -> float:
    """``x`` clipped to ``[low, high]`` as a float (NaN stays NaN, as with ``np.clip``): for the scalars
    of every tick, where ``np.clip`` costs microseconds a call."""
    return low if x < low else high if x > high else float(x)


def activity(window: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``(n_resp,)`` mean ``|response|`` over the kept samples of ``window`` (0 where none is kept):
    the spike count per sample for a spiking substrate, the rectified signal for a voltage one."""
    k = int(keep.sum())
    if k == 0:
        return np.zeros(window.shape[1])
    kept = window if k == len(keep) else window[keep]
    return np.abs(kept).sum(axis=0) / k


class PulseTrains:
    """Biphasic pulse trains on ``n_el`` electrodes at per-electrode rates, tick after tick.

    Args:
        n_el: electrodes; ``rate_hz``: the sample rate; ``phase``: samples per phase (>= 1).
    """

    def __init__(self, n_el: int, rate_hz: float, phase: int):
        self.n_el, self.rate_hz, self.phase = n_el, rate_hz, phase
        self.acc = np.zeros(n_el)  # each electrode's phase accumulator (pulses so far, fractional)
        self.times = np.zeros(0)   # (n,) seconds from a tick's start to each of its samples, kept per n
        self.tail = np.zeros((2 * phase, n_el))  # the part of pulses begun last tick that spills over

    def block(self, n: int, rates_hz: np.ndarray, volts: np.ndarray) -> np.ndarray:
        """``(n, n_el)`` pulses about 0 V: electrode ``e`` pulses at ``rates_hz[e]`` with ``volts[e]``."""
        out = np.zeros((n + 2 * self.phase, self.n_el))
        out[:len(self.tail)] += self.tail
        active = np.flatnonzero(rates_hz)  # a silent electrode's accumulator stays where it is
        if len(self.times) != n:
            self.times = np.arange(1, n + 1) / self.rate_hz
        acc = self.acc[active] + rates_hz[active] * self.times[:, None]  # (n, active)
        onset = np.diff(np.floor(acc), axis=0, prepend=np.floor(self.acc[active])[None]) > 0
        self.acc[active] = acc[-1] % 1.0
        t, j = np.nonzero(onset)
        e = active[j]
        for k in range(self.phase):
            out[t + k, e] += volts[e]
            out[t + self.phase + k, e] -= volts[e]
        self.tail = out[n:].copy()
        return out[:n]


class SensoryCode:
    """The observation as pulses: ``place_rate`` (DishBrain) or ``rate``.

    ``place_rate``: ``obs[0]`` in [0, 1] picks one of the ``n_el`` electrodes (the ball's place relative
    to the paddle), ``obs[1]`` in [0, 1] one of ``levels`` rates from ``rate_min`` to ``rate_max`` (the
    ball's proximity); ``rate``: electrode ``i`` pulses at the rate level of ``obs[i]`` scaled from the
    observation space's ``[low, high]``.  Values outside their range are clipped to it.

    Raises:
        PrclabError: the observation space does not fit the code (shape, unbounded ``rate`` values).
    """

    def __init__(self, kind: str, n_el: int, space, rate_hz: float, phase: int, volts: float,
                 rate_min: float, rate_max: float, levels: int, where: str = "protocol"):
        self.kind, self.n_el, self.volts = kind, n_el, volts
        self.rates = np.linspace(rate_min, rate_max, levels) if levels > 1 else np.array([rate_max])
        self.trains = PulseTrains(n_el, rate_hz, phase)
        shape = tuple(getattr(space, "shape", ()) or ())
        size = int(np.prod(shape)) if shape else 0
        if kind == "place_rate" and size < 2:
            raise PrclabError(f"{where}: [loop] encoder = \"place_rate\" needs an observation of at least 2 "
                              f"values (place, proximity); the environment's is {shape or 'not a box'}")
        if kind == "rate":
            low, high = (np.broadcast_to(np.asarray(getattr(space, b, np.nan), float), shape).ravel()
                         for b in ("low", "high")) if shape else (np.array([]), np.array([]))
            if size != n_el or not (np.isfinite(low).all() and np.isfinite(high).all()):
                raise PrclabError(f"{where}: [loop] encoder = \"rate\" needs a bounded observation of "
                                  f"[stimulus] electrodes = {n_el} values; the environment's is "
                                  f"{shape or 'not a box'}{'' if size != n_el else ' unbounded'}")
            self.low, self.span = low, np.where(high > low, high - low, 1.0)

    def block(self, obs, n: int, silent: bool = False) -> np.ndarray:
        """``(n, n_el)`` volts about rest for observation ``obs`` (none if ``silent``).

        Raises:
            PrclabError: ``obs`` holds NaN or infinity."""
        x = np.asarray(obs, dtype=float).ravel()
        if not np.isfinite(x).all():
            raise PrclabError(f"the environment returned a non-finite observation {x[:4]}")
        rates = np.zeros(self.n_el)
        if not silent:
            if self.kind == "place_rate":
                place = min(int(clip(x[0], 0.0, 1.0) * self.n_el), self.n_el - 1)
                rates[place] = self.rates[int(round(clip(x[1], 0.0, 1.0) * (len(self.rates) - 1)))]
            else:
                level = np.clip((x - self.low) / self.span, 0, 1)
                rates[:] = self.rates[np.rint(level * (len(self.rates) - 1)).astype(int)]
        return self.trains.block(n, rates, np.full(self.n_el, self.volts))


class Feedback:
    """The feedback design: what a hit or a miss starts, and the pause after a miss.

    Modes (``[feedback] mode``): ``stimulus`` - a hit starts the predictable stimulus (all electrodes,
    ``hit_hz``, ``hit_V``, ``hit_s``), a miss the unpredictable one (Poisson pulses at ``miss_hz`` mean
    rate, each on a random electrode, ``miss_V``, ``miss_s``) and a pause of ``pause_s``; ``silent`` - a
    miss pauses the game with no stimulus at all for ``pause_s``, a hit gives nothing; ``none`` - no
    feedback and no pause; ``rest`` - as ``none`` and no sensory input either; ``shuffled`` - each hit or
    miss starts the hit or the miss feedback (with its pause) at random, whatever happened.
    While a feedback stimulus plays it replaces the sensory input; during a pause the game is not stepped
    and no sensory input is given.
    """

    def __init__(self, table: dict, n_el: int, rate_hz: float, phase: int, seed: int):
        self.t, self.n_el, self.rate_hz, self.phase = table, n_el, rate_hz, phase
        self.mode = table["mode"]
        self.rng = np.random.default_rng(seed)
        self.wave = np.zeros((0, n_el))  # the feedback stimulus still to play
        self.pause = 0                    # samples of pause left

    @property
    def sensory(self) -> bool:
        """Whether the sensory code plays (the rest control gives none)."""
        return self.mode != "rest"

    def event(self, event: str | None) -> str:
        """Start the feedback for ``event`` (``hit``, ``miss`` or None); returns what began
        (a key of :data:`FEEDBACK_CODES`)."""
        if event is None or self.mode in ("none", "rest"):
            return "none"
        if self.mode == "shuffled":
            event = "hit" if self.rng.random() < 0.5 else "miss"
        t = self.t
        if self.mode == "silent":
            if event != "miss":
                return "none"
            self.pause = int(round(t["pause_s"] * self.rate_hz))
            return "silence"
        if event == "hit":
            n = int(round(t["hit_s"] * self.rate_hz))
            self.wave = PulseTrains(self.n_el, self.rate_hz, self.phase).block(
                n, np.full(self.n_el, t["hit_hz"]), np.full(self.n_el, t["hit_V"]))
        else:
            n = int(round(t["miss_s"] * self.rate_hz))
            self.wave = self._poisson(n)
            self.pause = int(round(t["pause_s"] * self.rate_hz))
        return event

    def _poisson(self, n: int) -> np.ndarray:
        """``(n, n_el)`` pulses at Poisson times (mean ``miss_hz``), each on a random electrode."""
        t = self.t
        count = self.rng.poisson(t["miss_hz"] * n / self.rate_hz)
        onsets = np.sort(self.rng.integers(0, max(n, 1), count))
        wave = np.zeros((n + 2 * self.phase, self.n_el))
        e = self.rng.integers(0, self.n_el, count)
        for k in range(self.phase):
            wave[onsets + k, e] = t["miss_V"]
            wave[onsets + self.phase + k, e] = -t["miss_V"]
        return wave[:n]

    def block(self, n: int) -> tuple[np.ndarray | None, bool]:
        """This tick's feedback ``(n, n_el)`` volts about rest (None: none playing) and whether the game
        is paused for it."""
        paused = self.pause > 0
        self.pause = max(0, self.pause - n)
        if not len(self.wave):
            return None, paused
        out = np.zeros((n, self.n_el))
        part = self.wave[:n]
        out[:len(part)] = part
        self.wave = self.wave[n:]
        return out, paused


class Blanker:
    """Which response samples lie within ``blank`` samples after a stimulus sample (any channel off
    rest), with the response stream aligned to the stimulus stream (a simulated device's is; a rig's
    latency shifts it: cover it with a longer ``blank_s``)."""

    def __init__(self, blank: int):
        self.blank = blank
        self.flags = np.zeros(0, bool)  # stimulus-on flags of stream samples [base, base + len)
        self.base = 0
        self.last_on = -(2 ** 62)  # the last stimulus-on sample before base (none yet: far back)

    def written(self, block: np.ndarray, rest_V: float) -> None:
        if self.blank:
            self.flags = np.concatenate([self.flags, (block != rest_V).any(axis=1)])

    def keep(self, start: int, n: int) -> np.ndarray:
        """``(n,)`` True for the samples of stream window ``[start, start + n)`` the decoder may use
        (a sample ``i`` is kept when the last stimulus-on sample at or before it lies ``blank`` or more
        samples back); forgets the flags before the window (windows come in stream order)."""
        if self.blank == 0:
            return np.ones(n, bool)
        a, b = max(start - self.base, 0), max(start + n - self.base, 0)
        if self.flags[:a].any():
            self.last_on = self.base + int(np.flatnonzero(self.flags[:a])[-1])
        part = self.flags[a:b]
        self.flags, self.base = self.flags[b:], self.base + b
        if not part.any():  # no stimulus in the window: only the one before it can blank its start
            return np.arange(start, start + n) - self.last_on >= self.blank
        on = np.zeros(n, bool)
        on[:len(part)] = part
        idx = np.arange(start, start + n)
        last = np.maximum(np.maximum.accumulate(np.where(on, idx, self.last_on)), self.last_on)
        self.last_on = int(idx[on][-1])
        return idx - last >= self.blank


class MotorDecoder:
    """DishBrain's motor read-out: ``u = gain (up - down) / (up + down)``, the activities (mean ``|x|``
    over the kept samples) summed over the 'up' and 'down' response channels, clipped to [-1, 1]."""

    learns = False

    def __init__(self, up: list[int], down: list[int], gain: float = 1.0):
        self.up, self.down, self.gain = np.asarray(up, int), np.asarray(down, int), gain

    def decide(self, window: np.ndarray, keep: np.ndarray) -> float:
        a = activity(window, keep)
        up, down = a[self.up].sum(), a[self.down].sum()
        return clip(self.gain * (up - down) / (up + down), -1.0, 1.0) if up + down > 0 else 0.0

    def learn(self, info: dict) -> None:
        """Nothing: the substrate's own plasticity is what can learn."""


class RandomDecoder:
    """The random paddle (DishBrain's in-silico control): ``u`` uniform in [-1, 1] every tick."""

    learns = False

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def decide(self, window: np.ndarray, keep: np.ndarray) -> float:
        return float(self.rng.uniform(-1, 1))

    def learn(self, info: dict) -> None:
        """Nothing to learn."""


class OnlineDecoder:
    """An online readout (any estimator with ``partial_fit`` / ``predict``, e.g.
    :class:`prclab.readouts.online.RLSReadout`) on the tick's channel activities, trained every tick on
    the environment's ``info["teacher"]`` (the action it would want, in [-1, 1]) for the window it
    decided on; ``u`` is its prediction clipped to [-1, 1] (0 before the first update).

    Raises:
        PrclabError: the environment gives no ``info["teacher"]``.
    """

    learns = True

    def __init__(self, readout):
        self.readout = readout
        self.features = None
        self.fitted = False

    def decide(self, window: np.ndarray, keep: np.ndarray) -> float:
        self.features = activity(window, keep)[None]
        return clip(self.readout.predict(self.features)[0], -1.0, 1.0) if self.fitted else 0.0

    def learn(self, info: dict) -> None:
        if "teacher" not in info:
            raise PrclabError("[loop] decoder rls / lms learns from the environment's info['teacher'], "
                              "which this environment does not give")
        self.readout.partial_fit(self.features, np.atleast_1d(float(info["teacher"])))
        self.fitted = True


def action_map(space, where: str = "protocol"):
    """``f(u) -> action`` for decoder outputs ``u`` in [-1, 1] (clipped to it): a one-value box
    ``[low, high]`` gets ``low + (u + 1) / 2 (high - low)`` (a float32 array of its shape), a discrete
    space of ``n`` actions the ``floor((u + 1) / 2 n)``-th (the last for ``u = 1``).  The space is read
    and checked once, here (the loop maps one ``u`` a tick).

    Raises:
        PrclabError: a space a one-number decoder cannot produce (a box of several values, unbounded,
            or neither a box nor discrete); ``f`` raises it for a ``u`` that is not a finite number.
    """
    n = getattr(space, "n", None)
    if n is None:
        shape = tuple(getattr(space, "shape", ()) or ())
        low = np.asarray(getattr(space, "low", np.nan), float)
        high = np.asarray(getattr(space, "high", np.nan), float)
        if int(np.prod(shape or (0,))) != 1 or not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise PrclabError(f"{where}: the [loop] decoder makes one number in [-1, 1]; the environment's "
                              f"action space ({type(space).__name__} {shape or ''}) is neither discrete nor "
                              f"one bounded value")
        low, span = float(low.ravel()[0]), float(high.ravel()[0] - low.ravel()[0])

    def to_action(u):
        try:
            u = float(u)
        except (TypeError, ValueError):
            raise PrclabError(f"{where}: the [loop] decoder returned {u!r:.40}, not a number") from None
        if not math.isfinite(u):
            raise PrclabError(f"{where}: the [loop] decoder returned {u}, not a finite number")
        u = min(max(u, -1.0), 1.0)
        if n is not None:
            return min(int((u + 1) / 2 * int(n)), int(n) - 1)
        return np.full(shape, low + (u + 1) / 2 * span, np.float32)
    return to_action


def action_for(u: float, space, where: str = "protocol"):
    """The environment action for decoder output ``u``: :func:`action_map` of ``space`` applied once.

    Raises:
        PrclabError: as :func:`action_map` and its function.
    """
    return action_map(space, where)(u)
