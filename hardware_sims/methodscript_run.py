"""MethodSCRIPT, the instrument: runs a parsed script against a cell and renders what it sends back.

:func:`run_script` executes a :class:`~hardware_sims.methodscript_lang.Program` on a :class:`Cell`
(a Substrate seen through the WE: potential in, current out) in *virtual* time and returns a
:class:`Reply`: every output line with the script time at which the instrument sends it, the cell's
potential timeline, and for each line the loop terminators still open after it (what an abort must
close).  The emulator paces the lines in real time.

Instrument (an EmStat Pico; limits from the MethodSCRIPT manual v1.8 appendix B and the EmStat Pico
communication protocol v1.6, as quoted by public MethodSCRIPT clients that cite them):

- PGStat modes (``set_pgstat_mode``): 0 off, 2 low speed (WE -1.25..+2.0 V), 3 high speed
  (-1.7..+2.0 V, needed by EIS: ``!0023`` otherwise), 4 max range (-1.7..+2.0 V); other modes
  ``!0021``.  A potential outside the mode's range is refused with ``!000F`` (a literal outside
  -1.7..+2.0 V already when the script is parsed).
- Current ranges (``set_range ba``, ``set_autoranging ba lo hi``), metadata codes of the ``,2XX``
  field: low speed / max range 100 nA (0), 2, 4, 8, 16, 32, 63, 125, 250, 500 uA (1-9), 1 mA (10),
  5 mA (11); high speed 100 nA (128), 1, 6, 13, 25, 50, 100, 200 uA (129-135), 1 mA (136), 5 mA
  (137).  Each point is measured in the smallest range of the autoranging window that holds it (the
  emulator ranges instantly, the instrument one point late); beyond the window's top range the
  reading is clipped to that range's full scale and flagged OVERLOAD (status ``,12``; ``,10`` OK).
  Without ``set_autoranging`` the range stays where ``set_range`` put it (default 1 mA).
- EIS: 0 < f <= 200 kHz (``!0011``), 0 < amplitude <= 0.429 V rms (``!0012``).
- Measurement loops need ``cell_on`` (``!4027``), except ``meas_loop_ocp``, which needs the cell
  off (``!0014``).

Output framing: ``M`` + the technique's 4-digit id (CA ``0007``, LSV ``0000``, CV ``0005``, DPV
``0001``, SWV ``0002``, OCP ``000B``, EIS ``000D``) opens each measurement loop and ``*`` closes it,
once per loop; ``L`` / ``+`` open and close a ``loop``; with ``nscans(n > 1)`` each CV scan sits in
``C0005`` / ``-``; ``T`` + text is ``send_string``; a package is ``P`` + ``;``-separated
``tt HHHHHHH p[,meta]`` (type, 7 hex digits offset by 2^27, SI prefix or ``i`` for integers); a
current carries ``,1S`` (status) and ``,2RR`` (range).  An empty package is never sent.  A run-time
error is ``!XXXX: Line L``: the script stops there (``on_finished:`` does not run; the emulator
switches the cell off), open loops are closed and the reply ends with its empty line.

Physics: time is split into steps of the substrate's ``dt``; a potential held for ``T`` seconds is
``max(1, round(T / dt))`` steps of the substrate's input 0 (with the cell off the substrate is not
stepped) and a current is the substrate's output 0 at the step that ends the point, times ``gain_A``.
The substrate runs lazily, once per script unless the script's control flow reads a measured value
before the end.  OCP reads ``ocp_V`` (the cell is off, the substrate rests).  EIS reads a Randles
cell (:class:`Randles`), because a substrate stepped at ``dt`` cannot carry kilohertz.

Techniques (arguments in the manual's order; points and timing as the emulator schedules them):

==================  =====================================================  ================================
command             arguments                                             points
==================  =====================================================  ================================
``meas_loop_ca``    p c E t_interval t_run                                 floor(t_run / t_interval), each
                                                                           t_interval long
``meas_loop_lsv``   p c E_begin E_end E_step scan_rate                      abs(dE) / E_step + 1, each
                                                                           E_step / scan_rate
``meas_loop_cv``    p c E_begin E_vtx1 E_vtx2 E_step scan_rate [nscans(n)]  begin -> vtx1 -> vtx2 -> begin
                                                                           per scan, each E_step / rate
``meas_loop_dpv``   p c E_begin E_end E_step E_pulse t_pulse scan_rate      as LSV; c = i(pulse end) -
                                                                           i(before the pulse)
``meas_loop_swv``   p c f r E_begin E_end E_step E_amp frequency            as LSV, period 1 / frequency;
                                                                           f, r forward / reverse, c = f - r
``meas_loop_ocp``   p t_interval t_run                                      as CA (p: ``ab``)
``meas_loop_eis``   f z_re z_im E_ac f_start f_end n_freq E_dc              n_freq, log spaced, each
                                                                           max(2 / f, 10 ms)
==================  =====================================================  ================================
"""

from __future__ import annotations

import collections
import math
import operator
from dataclasses import dataclass, field

import numpy as np

from prclab.reservoir.base import electrodes_of

from .methodscript_lang import SPEC, Command, Program, Refused, literal, parse

ABS_POTENTIAL_V = (-1.7, 2.0)
"""Potentials an EmStat Pico can apply in any mode, volts (manual appendix B)."""
PGSTAT_MODES = {0: None, 2: (-1.25, 2.0), 3: (-1.7, 2.0), 4: (-1.7, 2.0)}
"""Potential range of each PGStat mode, volts (``None``: the potentiostat is off)."""
EIS_MAX_HZ = 200e3
EIS_MAX_VRMS = 0.429
LOW_SPEED_RANGES = ((0, 100e-9), (1, 2e-6), (2, 4e-6), (3, 8e-6), (4, 16e-6), (5, 32e-6), (6, 63e-6),
                    (7, 125e-6), (8, 250e-6), (9, 500e-6), (10, 1e-3), (11, 5e-3))
HIGH_SPEED_RANGES = ((128, 100e-9), (129, 1e-6), (130, 6e-6), (131, 13e-6), (132, 25e-6), (133, 50e-6),
                     (134, 100e-6), (135, 200e-6), (136, 1e-3), (137, 5e-3))
"""Current ranges ``(metadata code, full scale A)`` by PGStat mode (high speed: mode 3)."""
STATUS_OK, STATUS_OVERLOAD = 0x0, 0x2
TECHNIQUE_IDS = {"meas_loop_lsv": 0x0000, "meas_loop_dpv": 0x0001, "meas_loop_swv": 0x0002,
                 "meas_loop_cv": 0x0005, "meas_loop_ca": 0x0007, "meas_loop_ocp": 0x000B,
                 "meas_loop_eis": 0x000D}
"""The ``M`` line's technique id per measurement loop (manual table 5)."""

MAX_POINTS = 100_000
"""Most points one measurement loop, and one script, may produce (a stated bound on reply memory)."""
MAX_SCRIPT_S = 3600.0
"""Longest virtual run time of one script, seconds (a stated bound)."""
MAX_STEPS = 2_000_000
"""Most substrate steps one script may drive (a stated bound: 16 MB of potentials)."""
MAX_COMMANDS = 1_000_000
"""Most commands one script may execute (a stated bound: a script that loops without end is
stopped with ``!4205`` rather than emulated forever)."""
EIS_MIN_POINT_S = 10e-3
RUN_AHEAD_STEPS = 4096
"""Steps the substrate runs ahead of the current a reply needs (one run per 100-point driver script)."""

_OFFSET = 1 << 27
_ENCODE_PREFIXES = sorted((e, c or " ") for c, e in
                          {"a": -18, "f": -15, "p": -12, "n": -9, "u": -6, "m": -3, "": 0,
                           "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}.items())


def encode_value(value: float) -> str:
    """A float in MethodSCRIPT's ``HHHHHHHp`` form with the finest SI prefix that fits 7 hex digits.

    Raises ``ValueError`` for a non-finite value or one beyond ±2^27 × 10^18.
    """
    if not math.isfinite(value):
        raise ValueError(f"{value!r} does not fit MethodSCRIPT's value range")
    for exp, char in _ENCODE_PREFIXES:
        mantissa = int(round(value / 10.0 ** exp))
        if abs(mantissa) < _OFFSET:
            return f"{mantissa + _OFFSET:07X}{char}"
    raise ValueError(f"{value!r} does not fit MethodSCRIPT's value range")


def _encode(value) -> str:
    """An integer as ``HHHHHHHi`` (wrapped to 28 bits), a float by :func:`encode_value`, saturated."""
    if isinstance(value, int):
        return f"{(value + _OFFSET) & 0xFFFFFFF:07X}i"
    limit = (_OFFSET - 1) * 1e18
    return encode_value(min(max(value, -limit), limit))


@dataclass
class Randles:
    """The cell EIS sees: ``Z(f) = R_s + R_ct / (1 + j 2 pi f R_ct C_dl)`` (ohms, farads).

    :meth:`of` reads it from a substrate: ``R_s`` is its electrode 0's ``impedance_ohm``, ``R_ct`` its
    ``derived()["r_ct_ohm"][0]`` and ``C_dl = tau_dl_s / (R_s || R_ct)`` from ``derived()["tau_dl_s"]``
    (the potato declares all three); what a substrate does not declare keeps the defaults (100 ohm,
    10 kohm, 1 uF).
    """

    r_s: float = 100.0
    r_ct: float = 10e3
    c_dl: float = 1e-6

    @classmethod
    def of(cls, substrate) -> "Randles":
        cell = cls()
        impedance = electrodes_of(substrate)[0].impedance_ohm if substrate.n_inputs else math.nan
        cell.r_s = impedance if math.isfinite(impedance) and impedance > 0 else cell.r_s
        derived = substrate.derived() if hasattr(substrate, "derived") else {}
        r_ct, tau = derived.get("r_ct_ohm"), derived.get("tau_dl_s")
        if r_ct is not None and np.all(np.isfinite(r_ct)) and float(np.ravel(r_ct)[0]) > 0:
            cell.r_ct = float(np.ravel(r_ct)[0])
            if tau is not None and float(np.ravel(tau)[0]) > 0:
                cell.c_dl = float(np.ravel(tau)[0]) * (cell.r_s + cell.r_ct) / (cell.r_s * cell.r_ct)
        return cell

    def impedance(self, f_hz: float) -> complex:
        return self.r_s + self.r_ct / (1 + 2j * math.pi * f_hz * self.r_ct * self.c_dl)


class Cell:
    """The WE as the script drives it: potentials held over substrate steps, currents read lazily.

    Args:
        substrate: one input (WE potential, V); output 0 times ``gain_A`` is the current (A).
        gain_A: amperes per unit of output 0.
        ocp_V: the open-circuit potential OCP reads, volts.
    """

    def __init__(self, substrate, gain_A: float, ocp_V: float = 0.0):
        self.substrate, self.gain_A, self.ocp_V = substrate, gain_A, ocp_V
        self.dt = float(substrate.dt)
        self.randles = Randles.of(substrate)
        self._pending: collections.deque[tuple[float, int]] = collections.deque()  # held, not run
        self.steps = 0
        self._currents = np.zeros(1024)              # currents of the steps run (capacity grows)
        self._done = 0                                # steps run

    def hold(self, potential: float, seconds: float) -> int:
        """Hold ``potential`` for ``seconds``; returns the index of the step that ends the hold."""
        n = max(1, int(round(seconds / self.dt)))
        if self.steps + n > MAX_STEPS:
            raise Refused(0x4205, f"more than {MAX_STEPS} substrate steps in one script")
        self._pending.append((potential, n))
        self.steps += n
        return self.steps - 1

    def current(self, step: int) -> float:
        """Current (A) at ``step``, running the substrate over the steps held so far that are not yet
        run (up to :data:`RUN_AHEAD_STEPS` past ``step``, so a long script runs in bounded pieces)."""
        if step >= self._done:
            take, count = [], 0
            while self._pending and (count <= step - self._done or count < RUN_AHEAD_STEPS):
                take.append(self._pending.popleft())
                count += take[-1][1]
            u = np.repeat([p for p, _ in take], [n for _, n in take])
            y = np.asarray(self.substrate.run(u[None, :, None]), dtype=np.float64)[0, :, 0]
            if self._done + count > len(self._currents):
                grown = np.zeros(max(2 * len(self._currents), self._done + count))
                grown[:self._done] = self._currents[:self._done]
                self._currents = grown
            self._currents[self._done:self._done + count] = self.gain_A * y
            self._done += count
        return float(self._currents[step])


@dataclass
class Lazy:
    """A current not yet computed: ``sum(weight * current[step])`` over ``terms``."""

    cell: Cell
    terms: tuple[tuple[int, float], ...]

    def value(self) -> float:
        return sum(w * self.cell.current(k) for k, w in self.terms)


def _value(v):
    return v.value() if isinstance(v, Lazy) else v


@dataclass
class Reply:
    """What one script sends: ``lines`` ``[(t_s, text, closers)]`` in time order (``text`` without the
    newline; ``closers``: the terminator lines still open after it); ``segments``
    ``[(t_s, potential_V or nan for cell off)]``; ``end_s`` the script's end; ``cell_on_at_end``."""

    lines: list[tuple[float, str, tuple[str, ...]]] = field(default_factory=list)
    segments: list[tuple[float, float]] = field(default_factory=list)
    end_s: float = 0.0
    cell_on_at_end: bool = False
    packages: int = 0


class _Break(Exception):
    pass


class Cancelled(Exception):
    """The run was cancelled from outside (an abort while the script was still being computed)."""


class _Stop(Exception):
    """The script ends here (``abort`` command)."""


def _potential(value: float, arg: int, mode_range=ABS_POTENTIAL_V) -> float:
    lo, hi = mode_range
    if not lo <= value <= hi:
        raise Refused(0x000F, f"potential {value:g} V outside {lo:g}..{hi:g} V", arg)
    return value


def _positive(value: float, arg: int) -> float:
    if not value > 0:
        raise Refused(0x4204, "argument must be positive", arg)
    return value


def _count(value: float, arg: int, what: str = "points") -> int:
    if not 1 <= value <= MAX_POINTS:
        raise Refused(0x4205, f"{what} must lie in 1..{MAX_POINTS}", arg)
    return int(value)


def _time(value: float, arg: int) -> float:
    if not 0 <= value <= MAX_SCRIPT_S:
        raise Refused(0x4205, f"time must lie in 0..{MAX_SCRIPT_S:g} s", arg)
    return value


def _sweep(begin: float, end: float, step: float, arg: int) -> np.ndarray:
    n = abs(end - begin) / step
    _count(n + 1, arg, "steps")
    k = int(n + 1e-9)
    return begin + math.copysign(step, end - begin) * np.arange(k + 1)


# technique planners: (argument values, the mode's potential range) -> (points, outputs).  A point is
# (segments, base_V, freq_Hz): segments [(E_V, seconds), ...] held in turn (E nan: cell off), base_V
# the potential reported, freq_Hz the EIS frequency (else nan).  outputs: per output variable of the
# command, (type, source): "E" base_V, ("I", ((segment, weight), ...)) the weighted currents at the
# ends of segments, "OCP" the open-circuit potential, "F" the frequency, "Zre" / "Zim" the impedance
_ONE_CURRENT = (("da", "E"), ("ba", ("I", ((0, 1.0),))))


def _plan_ca(v, rng):
    e = _potential(v[2], 2, rng)
    interval = _positive(v[3], 3)
    if not interval <= v[4] <= MAX_SCRIPT_S:
        raise Refused(0x4205, f"t_run must lie in [t_interval, {MAX_SCRIPT_S:g} s]", 4)
    n = _count(v[4] / interval + 1e-9, 4)
    return [([(e, interval)], e, math.nan)] * n, _ONE_CURRENT


def _plan_lsv(v, rng):
    _potential(v[2], 2, rng), _potential(v[3], 3, rng)
    step, rate = _positive(v[4], 4), _positive(v[5], 5)
    return [([(e, step / rate)], e, math.nan) for e in _sweep(v[2], v[3], step, 4)], _ONE_CURRENT


def _plan_cv(v, rng, scans=1):
    for k in (2, 3, 4):
        _potential(v[k], k, rng)
    step, rate = _positive(v[5], 5), _positive(v[6], 6)
    legs = [_sweep(a, b, step, 5) for a, b in ((v[2], v[3]), (v[3], v[4]), (v[4], v[2]))]
    path = np.concatenate([legs[0], legs[1][1:], legs[2][1:]])
    _count(len(path) * scans, 5)
    return [([(e, step / rate)], e, math.nan) for e in path], _ONE_CURRENT


def _plan_dpv(v, rng):
    _potential(v[2], 2, rng), _potential(v[3], 3, rng)
    step, pulse_t, rate = _positive(v[4], 4), _positive(v[6], 6), _positive(v[7], 7)
    interval = step / rate
    if not pulse_t < interval:
        raise Refused(0x4205, "t_pulse must be shorter than E_step / scan_rate", 6)
    base = _sweep(v[2], v[3], step, 4)
    for e in (base[0], base[-1]):
        _potential(e + v[5], 5, rng)
    return ([([(e, interval - pulse_t), (e + v[5], pulse_t)], e, math.nan) for e in base],
            (("da", "E"), ("ba", ("I", ((1, 1.0), (0, -1.0))))))


def _plan_swv(v, rng):
    _potential(v[4], 4, rng), _potential(v[5], 5, rng)
    step, freq = _positive(v[6], 6), _positive(v[8], 8)
    amp = math.copysign(v[7], v[5] - v[4])
    base = _sweep(v[4], v[5], step, 6)
    for e in (base[0] + amp, base[0] - amp, base[-1] + amp, base[-1] - amp):
        _potential(e, 7, rng)
    half = 0.5 / freq
    return ([([(e + amp, half), (e - amp, half)], e, math.nan) for e in base],
            (("da", "E"), ("ba", ("I", ((0, 1.0), (1, -1.0)))), ("ba", ("I", ((0, 1.0),))),
             ("ba", ("I", ((1, 1.0),)))))


def _plan_ocp(v, rng):
    interval = _positive(v[1], 1)
    if not interval <= v[2] <= MAX_SCRIPT_S:
        raise Refused(0x4205, f"t_run must lie in [t_interval, {MAX_SCRIPT_S:g} s]", 2)
    n = _count(v[2] / interval + 1e-9, 2)
    return [([(math.nan, interval)], math.nan, math.nan)] * n, (("ab", "OCP"),)


def _plan_eis(v, rng):
    if not 0 < v[3] <= EIS_MAX_VRMS:
        raise Refused(0x0012, f"amplitude must lie in (0, {EIS_MAX_VRMS}] V rms", 3)
    for k in (4, 5):
        if not 0 < v[k] <= EIS_MAX_HZ:
            raise Refused(0x0011, f"frequency must lie in (0, {EIS_MAX_HZ:g}] Hz", k)
    n = _count(v[6], 6)
    e_dc = _potential(v[7], 7, rng)
    freqs = np.geomspace(v[4], v[5], n) if n > 1 else np.array([v[4]])
    return ([([(e_dc, max(2.0 / f, EIS_MIN_POINT_S))], e_dc, float(f)) for f in freqs],
            (("dc", "F"), ("cc", "Zre"), ("cd", "Zim")))


PLANNERS = {"meas_loop_ca": _plan_ca, "meas_loop_lsv": _plan_lsv, "meas_loop_cv": _plan_cv,
            "meas_loop_dpv": _plan_dpv, "meas_loop_swv": _plan_swv, "meas_loop_ocp": _plan_ocp,
            "meas_loop_eis": _plan_eis}


def _nscans(cmd: Command) -> int:
    if "nscans" not in cmd.options:
        return 1
    words = cmd.options["nscans"]
    try:
        value = literal(words[0]) if len(words) == 1 else None
    except Refused:
        value = None
    if value is None or not 1 <= value <= 9999 or value != int(value):
        raise Refused(0x4205, "nscans must be 1..9999")
    return int(value)


def _values_of(cmd: Command, lookup) -> list:
    """The command's value arguments: literals as parsed, variables through ``lookup``; ``None`` for
    the arguments that are not values."""
    return [lookup(arg) if value is None and kind == "val" else value
            for kind, arg, value in zip(SPEC[cmd.name], cmd.args, cmd.values)]


def static_check(cmd: Command) -> None:
    """The run-time checks of ``cmd`` that its literal arguments allow before it runs (raises
    :class:`Refused`); arguments held in variables are checked when the line runs."""
    def unknown(name):
        raise LookupError(name)
    try:
        values = _values_of(cmd, unknown)
    except LookupError:
        values = None
    if cmd.name == "set_e" and values:
        _potential(values[0], 0)
    elif cmd.name == "set_range_minmax" and values and cmd.args[0] == "da":
        _potential(values[1], 1), _potential(values[2], 2)
    elif cmd.name in PLANNERS:
        scans = _nscans(cmd)
        if values is not None:
            args = (values, ABS_POTENTIAL_V) + ((scans,) if cmd.name == "meas_loop_cv" else ())
            PLANNERS[cmd.name](*args)


def parse_script(lines: list[str]) -> Program:
    """:func:`~hardware_sims.methodscript_lang.parse` with the instrument's static checks."""
    return parse(lines, static_check)


def _ranges(mode: int):
    return HIGH_SPEED_RANGES if mode == 3 else LOW_SPEED_RANGES


def _covering(ranges, amps: float) -> int:
    """Index of the smallest range whose full scale holds ``amps`` (the largest if none does)."""
    return next((k for k, (_, full) in enumerate(ranges) if full >= amps * (1 - 1e-9)), len(ranges) - 1)


_COMPARE = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, ">": operator.gt, "<=": operator.le,
            ">=": operator.ge}


class _Machine:
    """One script's execution state (see :func:`run_script`)."""

    def __init__(self, program: Program, cell: Cell, cancel=None):
        self.program, self.cell, self.cancel = program, cell, cancel
        self.vars: dict[str, list] = {}            # name -> [value, type]
        self.t = 0.0
        self.timer0 = 0.0
        self.cell_on = False
        self.e_set = 0.0
        self.mode = 2
        self.range_a = 1e-3
        self.autorange: tuple[float, float] | None = None
        self.package: list | None = None
        self.closers: tuple[str, ...] = ()          # terminators of the open loops, innermost first
        self._window = None                        # range_window() cache
        self.reply = Reply()
        self.executed = 0
        self.points = 0
        self.line_no = 1

    # -- helpers -----------------------------------------------------------------------------
    def emit(self, text) -> None:
        self.reply.lines.append((self.t, text, self.closers))

    def lookup(self, name: str):
        return _value(self.vars[name][0])

    def advance(self, seconds: float, potential: float | None = None) -> int:
        """Let ``seconds`` pass (holding the cell's potential if it is on); returns the last step."""
        step = -1
        if self.cell_on and seconds > 0:
            e = self.e_set if potential is None else potential
            self.reply.segments.append((self.t, e))
            step = self.cell.hold(e, seconds)
        self.t += seconds
        if self.t > MAX_SCRIPT_S:
            raise Refused(0x4205, f"more than {MAX_SCRIPT_S:g} s in one script")
        return step

    def mode_range(self):
        return PGSTAT_MODES[self.mode] or ABS_POTENTIAL_V

    def range_window(self):
        """``(ranges, allowed)``: the current ranges of the PGStat mode now and the indices of those
        the range settings allow (autoranging picks among them; one when it is off)."""
        if self._window is None:
            ranges = _ranges(self.mode)
            if self.autorange is None:
                allowed = [_covering(ranges, self.range_a)]
            else:
                lo, hi = _covering(ranges, self.autorange[0]), _covering(ranges, self.autorange[1])
                allowed = list(range(min(lo, hi), max(lo, hi) + 1))
            self._window = (ranges, allowed)
        return self._window

    # -- execution ---------------------------------------------------------------------------
    def run(self) -> Reply:
        commands = self.program.commands
        try:
            try:
                self.block(0, self.program.finish)
            except _Stop:
                pass
            self.closers = ()
            self.block(self.program.finish, len(commands))
        except Refused as exc:
            self.emit(f"!{exc.code:04X}: Line {self.line_no}")
            while self.closers:
                closer, self.closers = self.closers[0], self.closers[1:]
                self.emit(closer)
            self.cell_on = False
            self.reply.segments.append((self.t, math.nan))
        self.reply.end_s = self.t
        self.reply.cell_on_at_end = self.cell_on
        return self.reply

    def block(self, start: int, end: int) -> None:
        commands = self.program.commands
        i = start
        while i < end:
            cmd = commands[i]
            self.executed += 1
            if self.cancel is not None and self.cancel.is_set():
                raise Cancelled
            if self.executed > MAX_COMMANDS:
                raise Refused(0x4205, f"more than {MAX_COMMANDS} commands executed")
            self.line_no = cmd.line_no
            if cmd.name in PLANNERS:
                self.measure(cmd, i)
                i = cmd.jump + 1
            elif cmd.name == "loop":
                self.emit("L")
                self.closers = ("+",) + self.closers
                try:
                    while self.condition(cmd):
                        self.block(i + 1, cmd.jump)
                        self.line_no = cmd.line_no
                except _Break:
                    pass
                self.closers = self.closers[1:]
                self.emit("+")
                i = cmd.jump + 1
            elif cmd.name == "if":
                i = self.branch(i)
            elif cmd.name == "breakloop":
                raise _Break
            elif cmd.name == "abort":
                raise _Stop
            else:
                self.simple(cmd)
                i += 1

    def branch(self, i: int) -> int:
        commands = self.program.commands
        taken = False
        while True:
            cmd = commands[i]
            if cmd.name == "endif":
                return i + 1
            if not taken and (cmd.name == "else" or self.condition(cmd)):
                taken = True
                self.block(i + 1, cmd.jump)
            i = cmd.jump

    def condition(self, cmd: Command) -> bool:
        a, _, b = _values_of(cmd, self.lookup)
        return _COMPARE[cmd.args[1]](a, b)

    def simple(self, cmd: Command) -> None:
        name, args = cmd.name, cmd.args
        values = _values_of(cmd, self.lookup)
        if name == "var":
            self.vars[args[0]] = [0, "aa"]
        elif name == "store_var":
            self.vars[args[0]] = [values[1], args[2]]
        elif name == "copy_var":
            self.vars[args[1]] = list(self.vars[args[0]])
        elif name in ("add_var", "sub_var", "mul_var", "div_var"):
            a, b = self.lookup(args[0]), values[1]
            if name == "div_var" and b == 0:
                raise Refused(0x0028, "division by zero", 1)
            result = {"add_var": lambda: a + b, "sub_var": lambda: a - b, "mul_var": lambda: a * b,
                      "div_var": lambda: a // b if isinstance(a, int) and isinstance(b, int) else a / b}
            self.vars[args[0]][0] = result[name]()
        elif name == "timer_start":
            self.timer0 = self.t
        elif name == "timer_get":
            self.vars[args[0]] = [self.t - self.timer0, "eb"]
        elif name == "wait":
            self.advance(_time(values[0], 0))
        elif name == "send_string":
            self.emit("T" + args[0][1:-1])
        elif name == "set_pgstat_mode":
            if values[0] not in PGSTAT_MODES:
                raise Refused(0x0021, f"PGStat mode {values[0]} not supported", 0)
            self.mode, self._window = int(values[0]), None
            if self.cell_on and self.mode:
                _potential(self.e_set, -1, self.mode_range())
        elif name == "set_range" and args[0] == "ba":
            self.range_a, self._window = _positive(values[1], 1), None
        elif name == "set_autoranging" and args[0] == "ba":
            self.autorange, self._window = (_positive(values[1], 1), _positive(values[2], 2)), None
        elif name == "set_range_minmax" and args[0] == "da":
            _potential(values[1], 1, self.mode_range()), _potential(values[2], 2, self.mode_range())
        elif name == "set_e":
            self.e_set = _potential(values[0], 0, self.mode_range())
        elif name == "cell_on":
            if not self.cell_on:
                self.cell_on = True
                self.reply.segments.append((self.t, self.e_set))
        elif name == "cell_off":
            if self.cell_on:
                self.cell_on = False
                self.reply.segments.append((self.t, math.nan))
        elif name in ("pck_start", "pck_add", "pck_end") and (name == "pck_start") != (self.package is None):
            raise Refused(0x401B, f"{name!r} out of sequence")
        elif name == "pck_start":
            self.package = []
        elif name == "pck_add":
            self.package.append(self.vars[args[0]] + [self.range_window()])
        elif name == "pck_end":
            if self.package:
                self.points += 1
                if self.points > MAX_POINTS:
                    raise Refused(0x4205, f"more than {MAX_POINTS} packages in one script")
                self.emit(self.package)
                self.reply.packages += 1
            self.package = None
        elif name == "meas":
            interval = _positive(values[0], 0)
            step = self.advance(interval)
            if args[2] == "ba":
                value = Lazy(self.cell, ((step, 1.0),)) if step >= 0 else 0.0
            elif args[2] in ("ab", "da"):
                value = self.e_set if self.cell_on else self.cell.ocp_V
            else:
                value = 0.0
            self.vars[args[1]] = [value, args[2]]
        # set_pgstat_chan, set_max_bandwidth, ranges of other variable types: accepted, no effect

    def measure(self, cmd: Command, index: int) -> None:
        values = _values_of(cmd, self.lookup)
        scans = _nscans(cmd)
        if cmd.name == "meas_loop_ocp":
            if self.cell_on:
                raise Refused(0x0014, "OCP needs the cell off")
        elif not self.cell_on:
            raise Refused(0x4027, f"{cmd.name} needs cell_on")
        if cmd.name == "meas_loop_eis" and self.mode != 3:
            raise Refused(0x0023, "EIS needs PGStat mode 3 (high speed)")
        planner = PLANNERS[cmd.name]
        args = (values, self.mode_range()) + ((scans,) if cmd.name == "meas_loop_cv" else ())
        points, outputs = planner(*args)
        outs = [a for kind, a in zip(SPEC[cmd.name], cmd.args) if kind == "out"]
        self.emit(f"M{TECHNIQUE_IDS[cmd.name]:04X}")
        self.closers = ("*",) + self.closers
        try:
            for scan in range(scans):
                if scans > 1:
                    self.emit(f"C{TECHNIQUE_IDS[cmd.name]:04X}")
                    self.closers = ("-",) + self.closers
                for segments, base, freq in points:
                    steps = [self.advance(seconds, e if math.isfinite(e) else None)
                             for e, seconds in segments]
                    z = self.cell.randles.impedance(freq) if math.isfinite(freq) else 0j
                    sources = {"E": base, "OCP": self.cell.ocp_V, "F": freq, "Zre": z.real, "Zim": z.imag}
                    for name, (vtype, source) in zip(outs, outputs):
                        value = (Lazy(self.cell, tuple((steps[s], w) for s, w in source[1]))
                                 if isinstance(source, tuple) else float(sources[source]))
                        self.vars[name] = [value, vtype]
                    self.block(index + 1, cmd.jump)
                    self.line_no = cmd.line_no
                if scans > 1:
                    self.closers = self.closers[1:]
                    self.emit("-")
        except _Break:
            if self.closers[0] == "-":
                self.closers = self.closers[1:]
                self.emit("-")
        self.closers = self.closers[1:]
        self.emit("*")


def format_package(fields) -> str | None:
    """A package's ``P`` line (running the substrate where its currents still need it), or ``None``
    when a value is NaN or infinite (the instrument then stops the script with ``!0010``)."""
    out = []
    for value, vtype, (ranges, allowed) in fields:
        value = _value(value)
        if isinstance(value, float) and not math.isfinite(value):
            return None
        text = f"{vtype}{_encode(value)}"
        if vtype == "ba" and isinstance(value, float):
            pick = next((k for k in allowed if ranges[k][1] >= abs(value)), None)
            status = STATUS_OK
            if pick is None:
                pick, status = allowed[-1], STATUS_OVERLOAD
                text = f"{vtype}{_encode(math.copysign(ranges[pick][1], value))}"
            text += f",1{status:X},2{ranges[pick][0]:02X}"
        out.append(text)
    return "P" + ";".join(out)


def execute(program: Program, cell: Cell, cancel=None) -> Reply:
    """Run ``program`` on ``cell`` in virtual time; packages stay unrendered (:func:`format_package`).
    ``cancel``: a ``threading.Event``; once set, the run stops with :class:`Cancelled`."""
    return _Machine(program, cell, cancel).run()


def run_script(program: Program, cell: Cell) -> tuple[list[tuple[float, str, tuple[str, ...]]], Reply]:
    """Execute ``program`` on ``cell``; returns the rendered lines ``[(t_s, text, closers)]`` (no echo,
    no final empty line; a NaN package ends them with ``!0010`` and the open loops' terminators) and
    the :class:`Reply` (timeline, end time)."""
    reply = execute(program, cell)
    out = []
    for t, item, closers in reply.lines:
        text = item if isinstance(item, str) else format_package(item)
        if text is None:
            out.append((t, "!0010", closers))
            out += [(t, c, closers[i + 1:]) for i, c in enumerate(closers)]
            reply.end_s, reply.cell_on_at_end = t, False
            break
        out.append((t, text, closers))
    return out, reply
