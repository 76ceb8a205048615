"""An IO Rodeo Rodeostat (JSON lines over USB serial) on a Linux pseudo-terminal, backed by a Substrate.

The emulator follows the Rodeostat firmware ``FW0.1.0`` (github.com/iorodeo/potentiostat, ``firmware/
libraries/potentiostat``: ``ps_system_state.cpp``, ``ps_voltammetry.cpp``, the ``ps_*_test.cpp`` files,
``ps_constants.cpp``) built for its default hardware, ``HW0P2_ITSY_BITSY_10V_MICR0``: variant
``10V_microAmpV0.2``, hardware version ``V0.2``, no multiplexer.  IO Rodeo's own Python client
(``iorodeo-potentiostat``, import name ``potentiostat``) talks to it unchanged.

Wire format (firmware ``ps_message_receiver`` / ``ps_message_sender``, ArduinoJson 5.13):

- one JSON object per ``\\n``-terminated line, ``{"command": NAME, ...}``;
- every line gets one reply ``{"success":true|false[,"message":TEXT],"response":{...}}`` + ``\\r\\n``;
  ``response`` starts with ``"command"`` (the request's value) when the command is known, then
  ``"test"`` for test commands, then the values asked for.  Floats are printed as the firmware's
  32-bit ArduinoJson prints them (:func:`arduino_float`: at most 6 decimals, exponent below 1e-5);
- refusals carry the firmware's messages: ``unable to parse json`` (not JSON, not an object, nested
  deeper than ArduinoJson's limit of 10), ``CommandTable: command not found`` (no ``command`` key),
  ``command, NAME, not found``, ``test not found``, ``json does not contain key: KEY``,
  ``KEY not a float`` / ``KEY not uint32`` (wrong parameter type), ``voltRange, NAME, not found``,
  ``currRange, NAME, not found``, ``json samplePeriod value is too small`` / ``too large`` (outside
  1-1000 ms), ``multiplexer hardware not supported``;
- during ``runTest`` one ``{"t":MS,"v":VOLT,"i":MICROAMP}`` line per sample (``"le":true`` added
  when the current ADC reads at a rail), then ``{}`` when the test ends or is stopped.

Like the firmware, numbers are typed as ArduinoJson 5 types them: a float field takes any JSON number,
an integer (``uint32``) field only integers, reduced modulo 2^32 as the firmware's 32-bit integers are
(so a negative sample period reads as "too large").  Voltages are not refused: the firmware picks the
narrowest of the 1/2/5/10 V ranges that holds a test's extremes at ``runTest`` and clamps the DAC to
the selected range, so ``setVolt 3.0`` on the 1 V range applies and returns 1 V; a 12 V test fits no
range, keeps the range set and runs clamped to it while its samples report the requested ``v`` (as the
firmware's do).

Test types (``getTestNames``): ``cyclic``, ``sinusoid``, ``constant``, ``squareWave``,
``linearSweep``, ``chronoamp`` (two steps), ``multiStep`` (up to 50 steps), ``differentialPulse``;
their parameters, defaults, waveforms, done times and sampling are the firmware's.

Timing and physics (firmware ``SystemState::updateTestOnTimer``): the firmware sets the potential and
reads the current every :data:`TICK_US` (200 µs); a sample is sent every ``samplePeriod`` (default
10 ms) from ``t = samplePeriod`` on, until the test's done time.  The emulator computes the ticks in
blocks and sends each sample at its time after the ``runTest`` reply (``pace=True``).  The cell
potential (the test's value clamped and quantised by the 12-bit DAC on its range) is the substrate's
single input, evaluated at the start of each substrate step (``substrate.dt``; a substrate with
``dt`` of 200 µs sees every tick); the current is ``gain_A * y[..., 0]`` (A), read in µA through the
12-bit ADC on the selected current range (1, 10, 100, 1000 µA; default 10 µA; clipped at the rails
with ``le``) and the firmware's current low-pass (2 first-order stages, 200 Hz overall).  The
substrate only runs while the electrodes are connected (during tests with auto-connect, the
default) and for ``getCurr``; between tests it waits where it was.  ``getRefVolt`` reads the applied
potential while the whole cell is connected, else 0 V (no open-circuit potential is modelled).
``stopTest`` is answered and then followed by ``{}`` even when no test runs, as the firmware's
``lastSampleFlag`` does.

Bounds: a line longer than :data:`MAX_LINE_BYTES` (the firmware's serial buffer) is answered
``unable to parse json`` and skipped to its newline; while more than :data:`MAX_BACKLOG_BYTES` of
output wait for a client that does not read, the running test pauses (it does not grow memory) and
error replies are dropped (counted in :attr:`RodeostatEmulator.replies_dropped`).  Anything
unforeseen while handling a line is answered ``{"success":false,"message":"emulator internal
error",...}`` and recorded in :attr:`RodeostatEmulator.internal_errors`; no input ends the thread.

Faults (:meth:`~hardware_sims.pty_port.PtyEmulator.inject`): ``unplug`` closes the pty within 50 ms
and, without USB power, ends the test with the cell off; ``stall`` stops answering for good (a running
test still ends on its own and opens the switches); ``garbage`` truncates one sample line of the next test; ``drop``
leaves one sample line of the next test out.
"""

from __future__ import annotations

import json
import math
import os
import select
import time

import numpy as np
from scipy.signal import lfilter

from prclab.reservoir import Substrate

from .line_input import GuardedHandlers, LineInput
from .pty_port import PtyEmulator

FIRMWARE_VERSION = "FW0.1.0"
HARDWARE_VERSION = "V0.2"
HARDWARE_VARIANT = "10V_microAmpV0.2"
"""What ``getVersion``, ``getHardwareVersion`` and ``getVariant`` answer (``ps_constants.cpp``)."""

TICK_US = 200
"""Firmware test timer period, µs (``TestTimerPeriod``)."""
SAMPLE_PERIOD_US = (1000, 10_000, 1_000_000)
"""Minimum, default and maximum sample period, µs (``MinimumSamplePeriod`` ...)."""
VOLT_RANGES_V = {"1V": 1.0, "2V": 2.0, "5V": 5.0, "10V": 10.0}
"""Output (and reference-input) voltage ranges ±V of the 10 V variant; default ``1V``."""
CURR_RANGES_UA = {"1uA": 1.0, "10uA": 10.0, "100uA": 100.0, "1000uA": 1000.0}
"""Current ranges ±µA of the microAmp variant; default ``10uA``."""
DAC_MAX = ADC_MAX = 4095
"""Full-scale codes of the Itsy Bitsy M4's 12-bit DAC and ADC."""
LOWPASS_HZ, LOWPASS_ORDER = 200.0, 2
"""Current low-pass: cutoff and number of first-order stages (``CurrLowPassParam``, ``ps_filter.cpp``)."""
MAX_LINE_BYTES = 2000
"""Longest request line, bytes (the firmware's ``SerialBufferSize``)."""
MAX_NESTING = 10
"""Deepest JSON nesting parsed (ArduinoJson 5's default nesting limit)."""
MAX_BACKLOG_BYTES = 64 * 1024
"""Output waiting unread beyond which a running test pauses and error replies are dropped."""
MULTISTEP_MAX = {"chronoamp": 2, "multiStep": 50}
"""Most steps of the step tests (``MultiStepTest<2>``, ``MultiStepMaxSize``)."""
BLOCK_TICKS = 250
"""Ticks computed at once while a test runs (50 ms of test time)."""
LOOKAHEAD_S = 0.1
"""A block is computed when its first tick is due within this many seconds."""

_U32 = 1 << 32
_RC_S = math.sqrt(2 ** (1 / LOWPASS_ORDER) - 1) / (2 * math.pi * LOWPASS_HZ)  # one stage's RC (ps_filter)
_ALPHA = TICK_US * 1e-6 / (_RC_S + TICK_US * 1e-6)


# -- ArduinoJson 5 (32-bit float) output ------------------------------------------------------------
def arduino_float(value: float) -> str:
    """``value`` as ArduinoJson 5.13 prints a 32-bit float (``FloatParts`` / ``writeFloat``).

    At most 6 significant decimals, trailing zeros dropped (``1.0`` prints ``1``), an exponent for
    magnitudes of 1e7 and above or 1e-5 and below, ``NaN`` / ``Infinity`` as such.
    """
    v = np.float32(value)
    if math.isnan(v):
        return "NaN"
    sign = "-" if v < 0 else ""
    v = abs(v)
    if math.isinf(v):
        return sign + "Infinity"
    exponent = 0
    if v >= np.float32(1e7):
        while v >= np.float32(10.0):
            v, exponent = np.float32(v / np.float32(10.0)), exponent + 1
    elif 0 < v <= np.float32(1e-5):
        while v < np.float32(1.0):
            v, exponent = np.float32(v * np.float32(10.0)), exponent - 1
    integral = int(v)
    max_decimal, places = 1_000_000, 6
    tmp = integral
    while tmp >= 10:
        tmp //= 10
        max_decimal //= 10
        places -= 1
    remainder = np.float32((v - np.float32(integral)) * np.float32(max_decimal))
    decimal = int(remainder)
    decimal += int(np.float32(remainder - np.float32(decimal)) * 2)
    if decimal >= max_decimal:
        decimal, integral = 0, integral + 1
        if exponent and integral >= 10:
            exponent, integral = exponent + 1, 1
    while decimal % 10 == 0 and places > 0:
        decimal //= 10
        places -= 1
    text = sign + str(integral) + (f".{decimal:0{places}d}" if places else "")
    return text + (f"e{exponent}" if exponent else "")


def dump(value) -> str:
    """Compact JSON as the firmware writes it: insertion order, :func:`arduino_float` for floats."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return arduino_float(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{dump(v)}"
                              for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dump(v) for v in value) + "]"
    if value is None:
        return "null"
    return json.dumps(str(value), ensure_ascii=False)


# -- ArduinoJson 5 value types --------------------------------------------------------------------
def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_float(value) -> bool:
    """``JsonVariant::is<float>()``: any finite JSON number (NaN / Infinity refused here)."""
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


def _f32(value) -> float:
    return float(np.float32(value))


def _depth(value, limit: int) -> int:
    """Nesting depth of containers in ``value`` (stops counting past ``limit``)."""
    stack, deepest = [(value, 1)], 0
    while stack:
        item, d = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            stack += [(v, d + 1) for v in (item.values() if isinstance(item, dict) else item)]
    return deepest


class Status:
    """A firmware ``ReturnStatus``: success flag and a message built with ``appendToMessage``."""

    def __init__(self, success: bool = True, message: str = ""):
        self.success, self.message = success, message

    def fail(self, message: str) -> Status:
        """Mark failed and append ``message`` (``", "``-separated, as ``appendToMessage``)."""
        self.success = False
        self.message = (self.message + ", " + message) if self.message else message
        return self


# -- voltammetric tests -----------------------------------------------------------------------------
class FirmwareTest:
    """A firmware test: parameters (``FIELDS``: JSON key, attribute, kind), the
    potential ``values(t_us)`` (V, vectorised over int64 µs), ``done_time_us``, extremes, sampling.

    Kinds: ``"float"`` any JSON number (stored as float32), ``"ms"`` an integer of milliseconds (held
    in µs), ``"uint"`` a plain integer; integers are reduced modulo 2^32 like the firmware's.
    """

    FIELDS: tuple[tuple[str, str, str], ...] = ()
    custom_sampling = False

    def __init__(self, name: str):
        self.name = name
        self.quiet_value, self.quiet_us = 0.0, 0
        self.sample_period_us = SAMPLE_PERIOD_US[1]

    def _fields(self):
        return (("quietValue", "quiet_value", "float"), ("quietTime", "quiet_us", "ms")) + self.FIELDS

    def get_param(self) -> dict:
        out = {}
        for key, attr, kind in self._fields():
            value = getattr(self, attr)
            out[key] = value // 1000 if kind == "ms" else value
        return out

    def set_param(self, msg: dict, dat: dict) -> Status:
        """``setParam`` as ``BaseTest::setParam`` and the subclass's chain do it (messages included)."""
        status = Status()
        prm = self._param_object(msg, status)
        if prm is None:
            self._param_object(msg, status)  # the subclass looks again and appends the message again
            return status
        echo = dat.setdefault("param", {})
        for key, attr, kind in self._fields():
            if key not in prm:
                continue
            value = prm[key]
            if kind == "float" and _is_float(value):
                self._set(attr, _f32(value))
                echo[key] = getattr(self, attr)
            elif kind == "ms" and _is_int(value):
                self._set(attr, (value % _U32) * 1000)
                echo[key] = getattr(self, attr) // 1000
            elif kind == "uint" and _is_int(value):
                self._set(attr, value % _U32)
                echo[key] = getattr(self, attr)
            else:
                status.fail(f"{key} not a float" if kind == "float" else f"{key} not uint32")
        return status

    @staticmethod
    def _param_object(msg: dict, status: Status):
        if "param" not in msg:
            status.fail("key param missing")
            return None
        if not isinstance(msg["param"], dict):
            status.fail("param not JsonObject")
            return None
        return msg["param"]

    def _set(self, attr: str, value) -> None:
        setattr(self, attr, value)

    def values(self, t: np.ndarray) -> np.ndarray:
        return np.where(t < self.quiet_us, self.quiet_value, 0.0)

    def done_time_us(self) -> int:
        return self.quiet_us

    def extremes(self) -> tuple[float, float]:
        return min(self.quiet_value, 0.0), max(self.quiet_value, 0.0)


class PeriodicTest(FirmwareTest):
    """``cyclic`` (triangle) and ``sinusoid`` (300-point lookup table, linear interpolation)."""

    FIELDS = (("amplitude", "amplitude", "float"), ("offset", "offset", "float"),
              ("period", "period_us", "ms"), ("numCycles", "num_cycles", "uint"),
              ("shift", "shift", "float"))

    def __init__(self, name: str):
        super().__init__(name)
        self.amplitude, self.offset, self.period_us, self.num_cycles, self.shift = 1.0, 0.0, 10 ** 6, 10, 0.0

    def _phase(self, t: np.ndarray) -> np.ndarray:
        period = max(self.period_us, 1)
        shift_us = int(self.shift * self.period_us)
        return (np.maximum(t - self.quiet_us, 0) + shift_us) % period

    def values(self, t):
        period = max(self.period_us, 1)
        s = self._phase(t)
        if self.name == "cyclic":
            up = np.where(s < (period >> 1), s, period - s)
            v = 4.0 * self.amplitude * up / period + self.offset - self.amplitude
        else:
            grid = np.arange(300) / 299.0
            table = np.float32(self.amplitude * np.sin(2.0 * np.pi * grid) + self.offset)
            v = np.interp(s * 299.0 / period, np.arange(300), table)
        return np.where(t < self.quiet_us, self.quiet_value, v)

    def done_time_us(self):
        return self.quiet_us + self.num_cycles * self.period_us

    def extremes(self):
        return self.offset - self.amplitude, self.offset + self.amplitude


class ConstantTest(FirmwareTest):
    FIELDS = (("value", "value", "float"), ("duration", "duration_us", "ms"))

    def __init__(self, name: str):
        super().__init__(name)
        self.value, self.duration_us = 1.0, 5 * 10 ** 6

    def values(self, t):
        return np.where(t < self.quiet_us, self.quiet_value, self.value)

    def done_time_us(self):
        return self.duration_us + self.quiet_us

    def extremes(self):
        return min(self.value, self.quiet_value), max(self.value, self.quiet_value)


class LinearSweepTest(FirmwareTest):
    FIELDS = (("startValue", "start", "float"), ("finalValue", "final", "float"),
              ("duration", "duration_us", "ms"))

    def __init__(self, name: str):
        super().__init__(name)
        self.start, self.final, self.duration_us = -0.5, 0.5, 2 * 10 ** 6

    def values(self, t):
        s = np.maximum(t - self.quiet_us, 0)
        v = self.start + (self.final - self.start) * s / max(self.duration_us, 1)
        return np.where(t < self.quiet_us, self.quiet_value, v)

    def done_time_us(self):
        return self.duration_us + self.quiet_us

    def extremes(self):
        return min(self.start, self.final, self.quiet_value), max(self.start, self.final, self.quiet_value)


class MultiStepTest(FirmwareTest):
    """``chronoamp`` / ``multiStep``: ``param.step = [[duration_ms, volts], ...]``."""

    def __init__(self, name: str, n_steps: int):
        super().__init__(name)
        self.max_steps = MULTISTEP_MAX[name]
        self.steps = [(10 ** 6, 0.5 if k % 2 == 0 else -0.5) for k in range(n_steps)]

    def get_param(self):
        return {**super().get_param(), "step": [[d // 1000, v] for d, v in self.steps]}

    def set_param(self, msg, dat):
        status = super().set_param(msg, dat)
        prm = msg.get("param")
        if not isinstance(prm, dict):
            return status
        steps = prm.get("step")
        if "step" not in prm:
            return status.fail("step key not found")
        if not isinstance(steps, list):
            return status.fail("step not a JsonArray")
        if len(steps) > self.max_steps:
            return status.fail("step array too large")
        parsed = []
        for item in steps:
            if not isinstance(item, list):
                return status.fail("step item not JsonArary")  # sic, the firmware's spelling
            if len(item) != 2:
                return status.fail("step item size!=2")
            if not _is_int(item[0]):
                return status.fail("step item[0] not uint32")
            if not _is_float(item[1]):
                return status.fail("step item[1] not float")
            parsed.append(((item[0] % _U32) * 1000, _f32(item[1])))
        if status.success:
            self.steps = parsed
            dat["param"]["step"] = [[d // 1000, v] for d, v in parsed]
        return status

    def values(self, t):
        ends = self.quiet_us + np.cumsum([d for d, _ in self.steps], dtype=np.int64)
        levels = np.array([v for _, v in self.steps] + [0.0])
        k = np.searchsorted(ends, t, side="left")  # t <= end of step k
        return np.where(t < self.quiet_us, self.quiet_value, levels[k])

    def done_time_us(self):
        return self.quiet_us + sum(d for d, _ in self.steps)

    def extremes(self):
        levels = [v for _, v in self.steps] or [0.0]
        return min(levels), max(levels)


class PulseTest(FirmwareTest):
    """``squareWave`` (``amplitude``) and ``differentialPulse`` (``pulseValue``): a staircase of
    ``stepValue`` per sample period with a pulse in the first half; the sample is the difference of
    the currents averaged over the last ``window`` fraction of the two halves (custom sampling)."""

    custom_sampling = True

    def __init__(self, name: str):
        super().__init__(name)
        self.pulse_key = "amplitude" if name == "squareWave" else "pulseValue"
        self.FIELDS = (("startValue", "start", "float"), ("finalValue", "final", "float"),
                       ("stepValue", "step", "float"), (self.pulse_key, "pulse", "float"),
                       ("window", "window", "float"))
        self.start, self.final, self.step, self.pulse, self.window = -0.5, 0.5, 0.005, 0.025, 0.2

    def _set(self, attr, value):
        if attr in ("step", "pulse", "window"):
            value = abs(value)
        if attr == "window":
            value = min(1.0, value)
        setattr(self, attr, value)

    def _sign(self) -> float:
        return 1.0 if self.start <= self.final else -1.0

    def stair(self, t):
        count = np.maximum(t - self.quiet_us, 0) // self.sample_period_us
        v = np.clip(self.start + count * self._sign() * self.step, min(self.start, self.final),
                    max(self.start, self.final))
        return np.where(t < self.quiet_us, self.quiet_value, v)

    def values(self, t):
        rel = np.maximum(t - self.quiet_us, 0)
        first_half = rel % self.sample_period_us < (self.sample_period_us >> 1)
        if self.name == "squareWave":
            v = self.stair(t) + np.where(first_half, self.pulse, -self.pulse)
        else:
            v = self.stair(t) + np.where(first_half & (rel >= self.sample_period_us), self.pulse, 0.0)
        return np.where(t < self.quiet_us, self.quiet_value, v)

    def done_time_us(self):
        if self.step <= 0:
            return self.quiet_us
        # float arithmetic as the firmware's (fabs / ceil of floats): 0.1 V in 0.01 V steps is 10 steps
        steps = int(np.ceil(np.float32(abs(np.float32(self.final) - np.float32(self.start))) / np.float32(self.step)))
        return self.quiet_us + (steps + 1) * self.sample_period_us

    def extremes(self):
        lo, hi = min(self.start, self.final), max(self.start, self.final)
        if self.name == "squareWave":
            return min(lo - self.pulse, self.quiet_value), max(hi + self.pulse, self.quiet_value)
        return (lo - self.pulse if self._sign() < 0 else lo), (hi + self.pulse if self._sign() > 0 else hi)

    def window_us(self) -> int:
        half = self.sample_period_us >> 1
        return max(1, min(half - 1, int((half - 1) * self.window)))


def make_tests() -> dict[str, FirmwareTest]:
    """The firmware's tests in ``getTestNames`` order, at their defaults."""
    return {"cyclic": PeriodicTest("cyclic"), "sinusoid": PeriodicTest("sinusoid"),
            "constant": ConstantTest("constant"), "squareWave": PulseTest("squareWave"),
            "linearSweep": LinearSweepTest("linearSweep"), "chronoamp": MultiStepTest("chronoamp", 2),
            "multiStep": MultiStepTest("multiStep", 5), "differentialPulse": PulseTest("differentialPulse")}


MUX_TESTS = ("cyclic", "sinusoid", "constant", "linearSweep", "chronoamp", "multiStep")
"""Tests the firmware marks mux compatible (``getMuxTestNames``)."""


class _Run:
    """A running test: its tick counter, the substrate-step bookkeeping and the current filter."""

    def __init__(self, test: FirmwareTest, t0: float, connected: bool):
        self.test, self.t0, self.connected = test, t0, connected
        self.next_tick = 0
        self.next_step, self.last_y = 0, 0.0
        self.zi = [np.zeros(1) for _ in range(LOWPASS_ORDER)]
        self.count = 0                      # custom sampling: testCnt_
        self.first = True
        self.acc = [0, 0.0, 0, 0.0]         # forward n, sum; reverse n, sum
        self.reverse_last = 0.0
        self.spoil = -1                     # index of the sample a fault spoils
        self.fault: str | None = None
        self.sent = 0


class RodeostatEmulator(GuardedHandlers, PtyEmulator):
    """Serve the Rodeostat's JSON protocol on a pty, answering with ``substrate``'s current.

    Args:
        substrate: a Substrate with one input (the working-electrode potential, volts).
        seed: passed to ``substrate.reset`` at :meth:`start`.
        gain_A: amperes per unit of substrate output 0 (default: a 10 kΩ sense resistor, as
            :mod:`hardware_sims.potentiostat`).
        pace: send samples in real time at the sample period (else as fast as the client reads).
        device_id: the stored device id (``getDeviceId``).
    """

    thread_name = "rodeostat-emulator"

    def __init__(self, substrate: Substrate, seed: int = 0, gain_A: float = 1e-4, pace: bool = True,
                 device_id: int = 0):
        if substrate.n_inputs != 1:
            raise ValueError(f"a potentiostat drives one electrode; substrate has {substrate.n_inputs}")
        super().__init__(substrate, seed)
        self.gain_A, self.pace = float(gain_A), pace
        self.device_id = int(device_id) % _U32
        self.internal_errors: list[str] = []
        self.replies_dropped = 0
        self.tests_run = 0
        self._reset_state()

    def _reset_state(self) -> None:
        self.tests = make_tests()
        self.sample_period_us = SAMPLE_PERIOD_US[1]
        self.volt_range, self.ref_range, self.curr_range = "1V", "1V", "10uA"
        self._dac = int(self._dac_code(0.0))         # DAC code held now (0 V at power-on)
        self.connected = {"ref": False, "ctr": False, "wrk": False}
        self.auto_connect = True
        self._input = LineInput(MAX_LINE_BYTES)
        self._out = bytearray()
        self._due: list[tuple[float, bytes]] = []   # sample lines in time order
        self._due_head = 0
        self._run: _Run | None = None

    def start(self):
        """Start serving from the firmware's power-on state; returns ``self``.

        The substrate is run for one step first (and then reset to ``seed``): a compiled model's first
        call may take a second, which must not delay the first test's replies and samples.
        """
        if self.serving:
            return self
        self._reset_state()
        self.substrate.run(np.zeros((1, 1, 1)))
        return super().start()

    # -- analog front end -------------------------------------------------------------------------
    def _dac_code(self, volts):
        """DAC code for ``volts`` on the output range (``Range::valueToInt`` with ``SignDac = -1``)."""
        r = VOLT_RANGES_V[self.volt_range]
        code = np.trunc(DAC_MAX / (2 * r) * (r + np.asarray(volts, dtype=np.float64)))
        return np.clip(np.nan_to_num(code), 0, DAC_MAX).astype(np.int64)

    def _dac_volts(self, code):
        """Potential the DAC ``code`` applies on the output range, volts (``getVolt``)."""
        r = VOLT_RANGES_V[self.volt_range]
        return -(r - np.asarray(code) / DAC_MAX * 2 * r)

    def _adc_current(self, current_A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The current in µA as the 12-bit ADC reads it on the current range, and the rail flags."""
        r = CURR_RANGES_UA[self.curr_range]
        ua = np.nan_to_num(np.asarray(current_A, dtype=np.float64) * 1e6, nan=0.0, posinf=2 * r, neginf=-2 * r)
        code = np.clip(np.round((r + ua) / (2 * r) * ADC_MAX), 0, ADC_MAX)
        return -r + code / ADC_MAX * 2 * r, (code == 0) | (code == ADC_MAX)

    @property
    def cell_connected(self) -> bool:
        """Whether the electrode switches connect the cell now (all three closed)."""
        return all(self.connected.values())

    def output(self) -> tuple[bool, float]:
        """``(cell_connected, potential_V)``: the switches and the potential the DAC applies now."""
        return self.cell_connected, float(self._dac_volts(self._dac))

    def _step_substrate(self, volts: np.ndarray) -> np.ndarray:
        y = self.substrate.run(np.asarray(volts, dtype=np.float64)[None, :, None])[0, :, 0]
        return self.gain_A * np.asarray(y, dtype=np.float64)

    # -- serving ------------------------------------------------------------------------------------
    def _serve(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                fd, fault = self._master, self.fault
            if fault == "unplug":  # no USB power: the test stops and the switches open
                self._run = None
                self.connected = dict.fromkeys(self.connected, False)
                self._close_pty()
                return
            if fd < 0:
                return
            try:
                now = time.monotonic()
                while self._due_head < len(self._due) and self._due[self._due_head][0] <= now:
                    self._out += self._due[self._due_head][1]
                    self._due_head += 1
                if self._due_head > 1024:
                    del self._due[:self._due_head]
                    self._due_head = 0
                wait = 0.05
                if self._due_head < len(self._due):
                    wait = min(wait, max(0.0, self._due[self._due_head][0] - now))
                readable, writable, _ = select.select([fd], [fd] if self._out else [], [], wait)
                if readable:
                    data = os.read(fd, 4096)
                    if fault != "stall":
                        self._feed(data)
                if writable and self._out and fault != "stall":
                    del self._out[:os.write(fd, bytes(self._out))]
                self._guarded(self._advance_test)  # after the replies went out
            except BlockingIOError:
                continue
            except (OSError, ValueError):
                return

    def _feed(self, data: bytes) -> None:
        """Split received bytes into lines of at most :data:`MAX_LINE_BYTES`."""
        self._input.feed(data, lambda line: self._guarded(self._on_line, line),
                         lambda: self._reply(Status(False, "unable to parse json"), {}))

    def _recover(self) -> None:
        """After an unforeseen exception: the run ends, ``emulator internal error``."""
        self._run = None
        self._reply(Status(False, "emulator internal error"), {})

    def _reply(self, status: Status, dat: dict) -> None:
        if not status.success and len(self._out) > MAX_BACKLOG_BYTES:
            self.replies_dropped += 1
            return
        msg = {"success": status.success}
        if status.message:
            msg["message"] = status.message
        msg["response"] = dat
        self._out += (dump(msg) + "\r\n").encode("utf-8", "replace")

    def _on_line(self, raw: bytes) -> None:
        text = raw.split(b"\0", 1)[0].decode("utf-8", "replace")  # a C string ends at NUL
        try:
            msg = json.loads(text)
        except (ValueError, RecursionError):
            msg = None
        if not isinstance(msg, dict) or _depth(msg, MAX_NESTING) > MAX_NESTING:
            self._reply(Status(False, "unable to parse json"), {})
            return
        if "command" not in msg:
            self._reply(Status(False, "CommandTable: command not found"), {})
            return
        name = msg["command"].strip() if isinstance(msg["command"], str) else ""
        handler = COMMANDS.get(name)
        if handler is None:
            self._reply(Status(False, f"command, {name}, not found"), {})
            return
        dat = {"command": msg["command"]}
        self._reply(getattr(self, handler)(msg, dat) or Status(), dat)

    # -- commands -----------------------------------------------------------------------------------
    def _test_of(self, msg, dat, status: Status) -> FirmwareTest | None:
        if "test" not in msg:
            status.fail("json does not contain key: test")
            return None
        dat["test"] = msg["test"]
        test = self.tests.get(msg["test"]) if isinstance(msg["test"], str) else None
        if test is None:
            status.fail("test not found")
        return test

    def cmd_run_test(self, msg, dat):
        status = Status()
        test = self._test_of(msg, dat, status)
        if test is not None:
            self._start_test(test)
        return status

    def cmd_stop_test(self, msg, dat):
        self._stop_test()

    def cmd_get_volt(self, msg, dat):
        dat["v"] = _f32(self._dac_volts(self._dac))

    def cmd_set_volt(self, msg, dat):
        if "v" not in msg:
            return Status(False, "json does not contain key: v")
        if not _is_float(msg["v"]):
            return Status(False, "unable to convert volt to float")
        self._dac = self._dac_code(_f32(msg["v"]))
        dat["v"] = _f32(self._dac_volts(self._dac))

    def cmd_get_curr(self, msg, dat):
        current = self._step_substrate([self._dac_volts(self._dac)])[0] if self.cell_connected else 0.0
        dat["i"] = _f32(self._adc_current(np.array([current]))[0][0])

    def cmd_get_ref_volt(self, msg, dat):
        """The reference-electrode potential on its 12-bit input: the applied potential while the
        whole cell is connected (the control loop holds it), else 0 V (the substrates model no
        open-circuit potential)."""
        r = VOLT_RANGES_V[self.ref_range]
        volts = float(self._dac_volts(self._dac)) if self.cell_connected else 0.0
        code = np.clip(np.round((r - volts) / (2 * r) * ADC_MAX), 0, ADC_MAX)
        dat["r"] = _f32(r - code / ADC_MAX * 2 * r)

    def cmd_set_param(self, msg, dat):
        if "test" not in msg:
            return Status(False, "test key not found")
        status = Status()
        test = self._test_of(msg, dat, status)
        if test is None:
            return Status(False, "test not found")
        return test.set_param(msg, dat)

    def cmd_get_param(self, msg, dat):
        status = Status()
        test = self._test_of(msg, dat, status)
        if test is not None:
            dat["param"] = test.get_param()
        return status

    def _set_range(self, msg, dat, key: str, table: dict, attr: str):
        if key not in msg:
            return Status(False, f"json does not contain key: {key}")
        name = msg[key] if isinstance(msg[key], str) else ""
        status = Status()
        if name in table:
            setattr(self, attr, name)
        else:
            status.fail(f"{key}, {name}, not found")
        dat[key] = getattr(self, attr)
        return status

    def cmd_set_volt_range(self, msg, dat):
        return self._set_range(msg, dat, "voltRange", VOLT_RANGES_V, "volt_range")

    def cmd_get_volt_range(self, msg, dat):
        dat["voltRange"] = self.volt_range

    def cmd_set_curr_range(self, msg, dat):
        return self._set_range(msg, dat, "currRange", CURR_RANGES_UA, "curr_range")

    def cmd_get_curr_range(self, msg, dat):
        dat["currRange"] = self.curr_range

    def cmd_set_ref_volt_range(self, msg, dat):
        return self._set_range(msg, dat, "voltRange", VOLT_RANGES_V, "ref_range")

    def cmd_get_ref_volt_range(self, msg, dat):
        dat["voltRange"] = self.ref_range

    def cmd_set_device_id(self, msg, dat):
        if "deviceId" not in msg:
            return Status(False, "json does not contain key: deviceId")
        if not _is_int(msg["deviceId"]):
            return Status(False, "deviceId is not integer")
        self.device_id = msg["deviceId"] % _U32
        dat["deviceId"] = self.device_id

    def cmd_get_device_id(self, msg, dat):
        dat["deviceId"] = self.device_id

    def cmd_set_sample_period(self, msg, dat):
        if "samplePeriod" not in msg:
            return Status(False, "json does not contain key: samplePeriod")
        if not _is_int(msg["samplePeriod"]):
            return Status(False, "json samplePeriod value is not uin32_t")  # sic
        period_us = (msg["samplePeriod"] % _U32) * 1000
        if period_us > SAMPLE_PERIOD_US[2]:
            return Status(False, "json samplePeriod value is too large")
        if period_us < SAMPLE_PERIOD_US[0]:
            return Status(False, "json samplePeriod value is too small")
        self.sample_period_us = period_us
        for test in self.tests.values():
            test.sample_period_us = period_us
        dat["samplePeriod"] = period_us // 1000

    def cmd_get_sample_period(self, msg, dat):
        dat["samplePeriod"] = self.sample_period_us // 1000

    def cmd_get_test_done_time(self, msg, dat):
        if "test" not in msg:
            return Status(False, "test key not found")
        test = self._test_of(msg, dat, Status())
        if test is None:
            return Status(False, "test not found")
        dat["test"] = test.name
        dat["testDoneTime"] = (test.done_time_us() // 1000) % _U32

    def cmd_get_test_names(self, msg, dat):
        dat["testNames"] = list(self.tests)

    def cmd_get_mux_test_names(self, msg, dat):
        dat["testNames"] = [name for name in self.tests if name in MUX_TESTS]

    def cmd_get_version(self, msg, dat):
        dat["version"] = FIRMWARE_VERSION

    def cmd_get_hardware_version(self, msg, dat):
        dat["version"] = HARDWARE_VERSION

    def cmd_get_variant(self, msg, dat):
        dat["variant"] = HARDWARE_VARIANT

    def cmd_get_mux_enabled(self, msg, dat):
        dat["muxEnabled"] = False

    def cmd_set_mux_enabled(self, msg, dat):
        if "muxEnabled" not in msg:
            return Status(False, "json does not contain key: muxEnabled")
        if not isinstance(msg["muxEnabled"], bool):
            return Status(False, "unable to convert muxEnabled to bool")
        return Status(False, "multiplexer hardware not supported")

    def cmd_no_mux(self, msg, dat):
        return Status(False, "multiplexer hardware not supported")

    def _switch(self, msg, dat, key: str, names: tuple[str, ...]):
        if key not in msg:
            return Status(False, f"json does not contain key: {key}")
        if not isinstance(msg[key], bool):
            return Status(False, f"unable to convert '{key}' to bool")
        if key == "autoConnect":
            self.auto_connect = msg[key]
            dat[key] = self.auto_connect
            return None
        for name in names:
            self.connected[name] = msg[key]
        dat[key] = all(self.connected[name] for name in names)
        return None

    def cmd_set_ref_conn(self, msg, dat):
        return self._switch(msg, dat, "connected", ("ref",))

    def cmd_set_ctr_conn(self, msg, dat):
        return self._switch(msg, dat, "connected", ("ctr",))

    def cmd_set_wrk_conn(self, msg, dat):
        return self._switch(msg, dat, "connected", ("wrk",))

    def cmd_set_all_conn(self, msg, dat):
        return self._switch(msg, dat, "connected", ("ref", "ctr", "wrk"))

    def cmd_set_auto_conn(self, msg, dat):
        return self._switch(msg, dat, "autoConnect", ())

    def cmd_get_ref_conn(self, msg, dat):
        dat["connected"] = self.connected["ref"]

    def cmd_get_ctr_conn(self, msg, dat):
        dat["connected"] = self.connected["ctr"]

    def cmd_get_wrk_conn(self, msg, dat):
        dat["connected"] = self.connected["wrk"]

    def cmd_get_all_conn(self, msg, dat):
        dat["connected"] = self.cell_connected

    def cmd_get_auto_conn(self, msg, dat):
        dat["autoConnect"] = self.auto_connect

    # -- running tests --------------------------------------------------------------------------------
    def _auto_range(self, lo: float, hi: float) -> str | None:
        """The narrowest range holding ``[lo, hi]`` (``autoVoltRange``), or None if none does."""
        fits = [(max(lo + r, r - hi), name) for name, r in VOLT_RANGES_V.items() if -r <= lo and hi <= r]
        return min(fits)[1] if fits else None

    def _start_test(self, test: FirmwareTest) -> None:
        lo, hi = test.extremes()
        self.volt_range = self._auto_range(lo, hi) or self.volt_range
        self.ref_range = self._auto_range(lo, hi) or self.ref_range
        if self.auto_connect:
            self.connected = dict.fromkeys(self.connected, True)
        self._drop_pending()
        run = _Run(test, time.monotonic(), self.cell_connected)
        with self._lock:
            if self.fault in ("garbage", "drop"):
                run.fault, self.fault = self.fault, None
                run.spoil = max(0, test.done_time_us() // self.sample_period_us // 2)
        self._run = run
        self.tests_run += 1

    def _stop_test(self) -> None:
        """End the running test now: samples not yet due are never sent; ``{}`` follows the reply."""
        if self.auto_connect:
            self.connected = dict.fromkeys(self.connected, False)
        self._drop_pending()
        self._run = None
        self._due.append((0.0, b"{}\r\n"))  # after the stopTest reply (the firmware's lastSampleFlag)

    def _drop_pending(self) -> None:
        """Deliver the sample lines already due; forget those not yet measured."""
        now = time.monotonic()
        self._out += b"".join(chunk for t, chunk in self._due[self._due_head:] if t <= now)
        self._due, self._due_head = [], 0

    def _advance_test(self) -> None:
        """Compute the next block of ticks when it is almost due; schedule its sample lines."""
        run = self._run
        if run is None:
            return
        now = time.monotonic()
        if self.pace and run.t0 + run.next_tick * TICK_US * 1e-6 > now + LOOKAHEAD_S:
            return
        if len(self._out) + (len(self._due) - self._due_head) * 40 > MAX_BACKLOG_BYTES:
            return  # the client does not read: pause the test
        test, period = run.test, self.sample_period_us
        done_us = test.done_time_us()
        ticks = np.arange(run.next_tick, run.next_tick + BLOCK_TICKS, dtype=np.int64)
        t_us = ticks * TICK_US
        last = np.flatnonzero(t_us >= done_us)   # the first tick at the done time ends the test
        finished = len(last) > 0
        if finished:
            ticks, t_us = ticks[:last[0] + 1], t_us[:last[0] + 1]
        run.next_tick = int(ticks[-1]) + 1
        volts = test.values(t_us)
        self._dac = int(self._dac_code(volts[-1]))
        current = self._tick_currents(run, t_us)
        ua, rail = self._adc_current(current)
        for k, zi in enumerate(run.zi):  # LowPass::update: y <- (1 - a) y + a x, stage after stage
            ua, run.zi[k] = lfilter([_ALPHA], [1.0, _ALPHA - 1.0], ua, zi=zi)
        if test.custom_sampling:
            samples = self._custom_samples(run, t_us, ua, rail)
        else:
            keep = (ticks > 0) & (ticks % (period // TICK_US) == 0)
            samples = list(zip(t_us[keep], volts[keep], ua[keep], rail[keep]))
        t_sent = None if self.pace else now
        for t, v, i, le in samples:
            line = {"t": int(t) // 1000 % _U32, "v": _f32(v), "i": _f32(i)}
            if le:
                line["le"] = True
            text = dump(line) + "\r\n"
            if run.sent == run.spoil and run.fault == "garbage":
                text = text[:len(text) // 2] + "\r\n"
            if not (run.sent == run.spoil and run.fault == "drop"):
                self._due.append((t_sent or run.t0 + t * 1e-6, text.encode()))
            run.sent += 1
        if finished:
            if self.auto_connect:
                self.connected = dict.fromkeys(self.connected, False)
            self._due.append((t_sent or run.t0 + t_us[-1] * 1e-6, b"{}\r\n"))
            self._run = None

    def _tick_currents(self, run: _Run, t_us: np.ndarray) -> np.ndarray:
        """Cell current (A) read at each tick: the substrate step holding the tick, its input the
        clamped, quantised potential at the step's start."""
        if not run.connected:
            return np.zeros(len(t_us))
        dt_us = float(self.substrate.dt) * 1e6
        step_of_tick = np.floor(t_us / dt_us).astype(np.int64)
        steps = np.arange(run.next_step, int(step_of_tick[-1]) + 1, dtype=np.int64)
        ys = np.array([run.last_y])
        if len(steps):
            start_us = np.floor(steps * dt_us).astype(np.int64)
            cell = self._dac_volts(self._dac_code(run.test.values(start_us)))
            ys = np.concatenate([ys, self._step_substrate(cell)])
            run.next_step, run.last_y = int(steps[-1]) + 1, float(ys[-1])
        return ys[step_of_tick - (run.next_step - len(ys))]  # ys[0] is step next_step - len(ys)

    def _custom_samples(self, run: _Run, t_us, ua, rail):
        """``SquareWaveTest`` / ``DifferentialPulseTest::updateSample`` tick by tick."""
        test = run.test
        period, half, window = test.sample_period_us, test.sample_period_us >> 1, test.window_us()
        modulus = period // TICK_US
        out = []
        stair = test.stair(t_us)
        for k in range(len(t_us)):
            t = int(t_us[k])
            if t == 0:
                continue  # the firmware's first tick (timerCnt 0) never samples
            if t < test.quiet_us:
                if run.count > 0 and run.count % modulus == 0:
                    out.append((t, test.quiet_value, 0.0, bool(rail[k])))
                run.count += 1
                continue
            if run.first:
                run.first, run.count = False, 0
            rel = t - test.quiet_us
            pos = rel % period
            if pos < half:
                if half - pos - 1 < window:
                    run.acc[0] += 1
                    run.acc[1] += ua[k]
            elif period - pos - 1 < window:
                run.acc[2] += 1
                run.acc[3] += ua[k]
            if run.count > 0 and run.count % modulus == 0:
                forward = run.acc[1] / run.acc[0] if run.acc[0] else math.nan
                reverse = run.acc[3] / run.acc[2] if run.acc[2] else math.nan
                if test.name == "squareWave":
                    current = forward - reverse
                else:
                    current = forward - run.reverse_last if rel > period else 0.0
                    run.reverse_last = reverse
                out.append((t, float(stair[k]), current, bool(rail[k])))
                run.acc = [0, 0.0, 0, 0.0]
            run.count += 1
        return out


COMMANDS = {
    "runTest": "cmd_run_test", "stopTest": "cmd_stop_test", "getVolt": "cmd_get_volt",
    "setVolt": "cmd_set_volt", "getCurr": "cmd_get_curr", "getRefVolt": "cmd_get_ref_volt",
    "setParam": "cmd_set_param", "getParam": "cmd_get_param", "setVoltRange": "cmd_set_volt_range",
    "getVoltRange": "cmd_get_volt_range", "setCurrRange": "cmd_set_curr_range",
    "getCurrRange": "cmd_get_curr_range", "setDeviceId": "cmd_set_device_id",
    "getDeviceId": "cmd_get_device_id", "setSamplePeriod": "cmd_set_sample_period",
    "getSamplePeriod": "cmd_get_sample_period", "getTestDoneTime": "cmd_get_test_done_time",
    "getTestNames": "cmd_get_test_names", "getVersion": "cmd_get_version", "getVariant": "cmd_get_variant",
    "setMuxEnabled": "cmd_set_mux_enabled", "getMuxEnabled": "cmd_get_mux_enabled",
    "setEnabledMuxChannels": "cmd_no_mux", "getEnabledMuxChannels": "cmd_no_mux",
    "getMuxTestNames": "cmd_get_mux_test_names", "setMuxRefElectConnected": "cmd_no_mux",
    "getMuxRefElectConnected": "cmd_no_mux", "setMuxCtrElectConnected": "cmd_no_mux",
    "getMuxCtrElectConnected": "cmd_no_mux", "setMuxWrkElectConnected": "cmd_no_mux",
    "getMuxWrkElectConnected": "cmd_no_mux", "disconnectAllMuxElect": "cmd_no_mux",
    "setRefElectConnected": "cmd_set_ref_conn", "getRefElectConnected": "cmd_get_ref_conn",
    "setCtrElectConnected": "cmd_set_ctr_conn", "getCtrElectConnected": "cmd_get_ctr_conn",
    "setWrkElectConnected": "cmd_set_wrk_conn", "getWrkElectConnected": "cmd_get_wrk_conn",
    "setAllElectConnected": "cmd_set_all_conn", "getAllElectConnected": "cmd_get_all_conn",
    "setElectAutoConnect": "cmd_set_auto_conn", "getElectAutoConnect": "cmd_get_auto_conn",
    "setRefElectVoltRange": "cmd_set_ref_volt_range", "getRefElectVoltRange": "cmd_get_ref_volt_range",
    "getHardwareVersion": "cmd_get_hardware_version",
}
"""Command name -> handler, the firmware's command table (``SystemState::initialize``, HW0.2)."""
