"""Environments for the closed loop, behind Gymnasium's API, and the loop's parts built from a protocol.

Both built-ins follow Gymnasium's convention (``reset(seed=None) -> (obs, info)``,
``step(action) -> (obs, reward, terminated, truncated, info)``, ``action_space``,
``observation_space``) without depending on it (:class:`Box` mimics ``gymnasium.spaces.Box``); any
Gymnasium environment plugs in as ``[environment] name = "gymnasium:ID"`` where Gymnasium is installed.
They add two ``info`` keys the loop uses: ``event`` (``"hit"``, ``"miss"`` or None: the feedback
triggers) and ``teacher`` (the action in [-1, 1] a perfect player would take now: what an online
readout decoder is trained on).

- :class:`Pong`: DishBrain's game (Kagan et al. 2022, ``../shared/notes/closed-loop.md``): a paddle on
  the left edge of a unit field, a ball bouncing off the other three walls.  The observation is what
  DishBrain's sensory code carries, ``(place, proximity)`` in [0, 1]: ``place = 0.5 + (ball_y -
  paddle_y) / 2`` (which of the 8 sensory electrodes: the ball's position relative to the paddle) and
  ``proximity = 1 - ball_x`` (the rate: 4 Hz far, 40 Hz close).  The action moves the paddle
  (``paddle_speed`` field heights per second at 1).  The field's proportions, speeds and paddle length
  are not in the notes: they are this module's choices, as keywords.
- :class:`Tracking`: a continuous-control task: keep a point on a target moving as the sum of two
  slow sines; observation ``(place, proximity)`` of the error as for Pong, reward ``-|error|``.
"""

from __future__ import annotations

import difflib
import inspect

import numpy as np

from prclab.errors import PrclabError
from prclab.protocols.loop_codes import MotorDecoder, OnlineDecoder, RandomDecoder, clip
from prclab.protocols.schema import from_defaults
from prclab.readouts.online import LMSReadout, RLSReadout


class Box:
    """A box of ``shape`` in ``[low, high]`` (the attributes of ``gymnasium.spaces.Box`` the loop reads)."""

    def __init__(self, low: float, high: float, shape: tuple[int, ...]):
        self.low = np.full(shape, low, np.float32)
        self.high = np.full(shape, high, np.float32)
        self.shape = shape

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(self.low, self.high).astype(np.float32)


class Pong:
    """DishBrain-style Pong on a unit field (module docstring).

    Args:
        dt: seconds per step (the loop's tick).
        paddle_length: paddle length, fraction of the field's height.
        ball_speed: ball speed, field widths per second.
        paddle_speed: paddle speed at action 1, field heights per second.
        bounce_jitter: random change of the ball's angle at each hit (radians, uniform +-): rallies do
            not repeat exactly.
    """

    def __init__(self, dt: float = 0.01, paddle_length: float = 0.25, ball_speed: float = 0.5,
                 paddle_speed: float = 1.0, bounce_jitter: float = 0.3):
        self.dt, self.paddle_length, self.ball_speed = dt, paddle_length, ball_speed
        self.paddle_speed, self.bounce_jitter = paddle_speed, bounce_jitter
        self.action_space = Box(-1.0, 1.0, (1,))
        self.observation_space = Box(0.0, 1.0, (2,))
        self.rng = np.random.default_rng()
        self.paddle = 0.5

    def _serve(self) -> None:
        """The ball from the far wall at a random height, towards the paddle within +-45 degrees."""
        angle = self.rng.uniform(-np.pi / 4, np.pi / 4)
        self.ball = np.array([1.0, self.rng.uniform(0, 1)])
        self.vel = self.ball_speed * np.array([-np.cos(angle), np.sin(angle)])

    def _obs(self) -> np.ndarray:
        x, y = self.ball
        return np.array([clip(0.5 + (y - self.paddle) / 2, 0.0, 1.0), 1 - x], np.float32)

    def _info(self, event) -> dict:
        teacher = clip((self.ball[1] - self.paddle) / (self.paddle_length / 2), -1.0, 1.0)
        return {"event": event, "teacher": teacher, "ball": self.ball.copy(), "paddle": self.paddle}

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.paddle = 0.5
        self._serve()
        return self._obs(), self._info(None)

    def step(self, action):
        a = clip(float(np.asarray(action, float).ravel()[0]), -1.0, 1.0)
        half = self.paddle_length / 2
        self.paddle = clip(self.paddle + a * self.paddle_speed * self.dt, half, 1 - half)
        self.ball += self.vel * self.dt
        for axis, top in ((1, 1.0), (0, 1.0)):  # the top, bottom and far walls reflect
            if self.ball[axis] > top:
                self.ball[axis], self.vel[axis] = 2 * top - self.ball[axis], -self.vel[axis]
        if self.ball[1] < 0:
            self.ball[1], self.vel[1] = -self.ball[1], -self.vel[1]
        event, reward = None, 0.0
        if self.ball[0] <= 0:
            if abs(self.ball[1] - self.paddle) <= half:
                event, reward = "hit", 1.0
                angle = np.arctan2(self.vel[1], -self.vel[0]) + self.rng.uniform(-1, 1) * self.bounce_jitter
                angle = np.clip(angle, -np.pi / 3, np.pi / 3)
                self.ball[0] = -self.ball[0]
                self.vel = self.ball_speed * np.array([np.cos(angle), np.sin(angle)])
            else:
                event, reward = "miss", -1.0
                self._serve()
        return self._obs(), reward, False, False, self._info(event)


class Tracking:
    """Keep a point on a moving target (continuous control; module docstring).

    Args:
        dt: seconds per step.
        speed: the point's speed at action 1, field heights per second.
        periods_s: the periods of the target's two sines (amplitudes 0.25 and 0.15 about 0.5).
    """

    def __init__(self, dt: float = 0.01, speed: float = 0.5, periods_s: list = (10.0, 4.3)):
        self.dt, self.speed, self.periods_s = dt, speed, tuple(periods_s)
        self.action_space = Box(-1.0, 1.0, (1,))
        self.observation_space = Box(0.0, 1.0, (2,))
        self.rng = np.random.default_rng()
        self.t, self.pos, self.phases = 0.0, 0.5, np.zeros(2)

    def _target(self) -> float:
        w = 2 * np.pi / np.asarray(self.periods_s)
        return float(0.5 + 0.25 * np.sin(w[0] * self.t + self.phases[0]) + 0.15 * np.sin(w[1] * self.t + self.phases[1]))

    def _out(self):
        err = self._target() - self.pos
        obs = np.array([clip(0.5 + err / 2, 0.0, 1.0), 1 - min(abs(err), 1.0)], np.float32)
        return obs, -abs(err), {"event": None, "teacher": clip(err / 0.1, -1.0, 1.0), "error": err}

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.t, self.pos = 0.0, 0.5
        self.phases = self.rng.uniform(0, 2 * np.pi, 2)
        obs, _, info = self._out()
        return obs, info

    def step(self, action):
        a = clip(float(np.asarray(action, float).ravel()[0]), -1.0, 1.0)
        self.pos = clip(self.pos + a * self.speed * self.dt, 0.0, 1.0)
        self.t += self.dt
        obs, reward, info = self._out()
        return obs, reward, False, False, info


#: the built-in environments by ``[environment] name``
ENVIRONMENTS = {"pong": Pong, "tracking": Tracking}
GYMNASIUM_PREFIX = "gymnasium:"


def make_env(protocol):
    """The environment ``[environment]`` names, its ``params`` checked against the constructor's
    keywords (built-ins get ``dt = [loop] tick_s``).

    Raises:
        PrclabError: an unknown environment or keyword, a bad value, Gymnasium missing or refusing.
    """
    e, where = protocol["environment"], protocol.where
    name, params = e["name"], dict(e["params"])
    if name.startswith(GYMNASIUM_PREFIX):
        try:
            import gymnasium
        except ImportError:
            raise PrclabError(f"{where}: [environment] name = {name!r} needs Gymnasium (pip install "
                              f"gymnasium)") from None
        try:
            return gymnasium.make(name[len(GYMNASIUM_PREFIX):], **params)
        except Exception as exc:  # Gymnasium's own errors (unknown id, bad keyword) as one line
            raise PrclabError(f"{where}: [environment] {name!r}: {type(exc).__name__}: {exc}") from None
    if name not in ENVIRONMENTS:
        near = difflib.get_close_matches(name, ENVIRONMENTS, n=1)
        raise PrclabError(f"{where}: [environment] name {name!r} unknown; "
                          f"{f'did you mean {near[0]!r}? ' if near else ''}known: "
                          f"{', '.join(ENVIRONMENTS)}, gymnasium:ID")
    cls = ENVIRONMENTS[name]
    if "dt" in params:
        raise PrclabError(f"{where}: [environment.params] dt is the loop's tick: set [loop] tick_s")
    defaults = {p.name: p.default for p in inspect.signature(cls).parameters.values() if p.name != "dt"}
    checked = from_defaults("environment.params", {k: list(v) if isinstance(v, tuple) else v
                                                   for k, v in defaults.items()}).check(
        params, where, f"[environment.params] (name = {name!r})")
    return cls(dt=protocol["loop"]["tick_s"], **checked)


def make_decoder(protocol, n_response: int):
    """The ``[loop] decoder`` for a device of ``n_response`` response channels.

    Raises:
        PrclabError: a motor channel outside the response channels, or a region left empty.
    """
    loop, where, seed = protocol["loop"], protocol.where, protocol["protocol"]["seed"]
    kind = loop["decoder"]
    if kind == "random":
        return RandomDecoder(seed + 3)
    if kind == "rls":
        return OnlineDecoder(RLSReadout(alpha=loop["alpha"], forgetting=loop["forgetting"]))
    if kind == "lms":
        return OnlineDecoder(LMSReadout(learning_rate=loop["learning_rate"]))
    half = n_response // 2
    up = loop["up_channels"] or list(range(half))
    down = loop["down_channels"] or list(range(half, n_response))
    bad = [c for c in up + down if not 0 <= c < n_response]
    if bad or not up or not down:
        raise PrclabError(f"{where}: [loop] up_channels / down_channels must name response channels "
                          f"0..{n_response - 1}, each region one or more; got up {up}, down {down}")
    return MotorDecoder(up, down, loop["motor_gain"])
