"""A MethodSCRIPT potentiostat (EmStat Pico class) on a Linux pseudo-terminal, backed by a Substrate.

The emulator opens a pty (raw mode; it keeps its own handle on the slave open so the port stays
usable between clients) and serves it from one thread.  It interprets the subset of MethodSCRIPT that
:mod:`drivers.potentiostat` sends:

- ``t`` -> version reply (``t...`` line, then a line ending in ``*``); ``Z`` aborts a running script
  (silently: the instrument's own ``Z`` / ``Z!0006`` acknowledgement is not emulated);
- ``e`` + script lines + empty line -> runs the script.  Accepted commands: ``var``,
  ``set_pgstat_chan``, ``set_pgstat_mode``, ``set_max_bandwidth``, ``set_range_minmax``, ``set_range``,
  ``set_autoranging``, ``set_e``, ``cell_on``, ``cell_off``, ``meas_loop_ca p c E t_interval t_run``
  with a ``pck_start`` / ``pck_add`` / ``pck_end`` body and ``endloop``, ``on_finished:``, ``#``
  comments.  Anything else is answered with a MethodSCRIPT error line (below).

Errors, in the instrument's own form: the instrument echoes a command's letter and appends ``!XXXX``
(hexadecimal error code; PalmSens' own example client expects ``Z!0006`` to an abort when no script
runs), and a refused script is answered ``e!XXXX: Line L, Col C`` (1-based line of the script, ``e``
being line 1, and column of the offending token).  Codes are those of the MethodSCRIPT manual,
appendix A (:data:`ERROR_CODES`; read as quoted by a public MethodSCRIPT client, the manual itself was
not at hand).  No input stops the serving thread: every malformed line or script
gets one error reply, and anything unforeseen is answered ``!0001`` (unspecified error) and counted in
:attr:`MethodScriptEmulator.internal_errors`.

Bounds (what a request may cost the emulator): a line holds at most :data:`MAX_LINE_CHARS` characters
(longer: ``!0008``, the rest of the line discarded), a script at most :data:`MAX_SCRIPT_BYTES` bytes
(larger: ``e!4005``, the script discarded up to its terminating empty line), at most
:data:`MAX_POINTS` measurement points and :data:`MAX_SCRIPT_S` seconds of loops (more: ``!4205``,
argument outside the allowed bounds), potentials within :data:`POTENTIAL_RANGE_V` (outside: ``!000F``);
a current the substrate makes NaN or infinite stops the script with ``!0010`` in place of its data line.
Error replies are dropped while more than :data:`MAX_REPLY_BACKLOG` bytes wait for a client that does
not read (counted in :attr:`MethodScriptEmulator.replies_dropped`).

Physics: the WE potential of every measurement point (volts) is the substrate's single input; the
current is the substrate's output 0 read across a 10 kΩ sense resistor, ``i = gain_A * y[..., 0]`` with
``gain_A = 1e-4`` A per unit output by default (a potato's ~10 mV gives ~1 µA).  The substrate runs once
per script on the script's ``(1, points, 1)`` potentials, so streaming through the emulator equals
``substrate.run`` on the same blocks.  Replies are paced in real time (``pace=True``) from the loop
intervals: ``e``, then per loop ``M0000``, one data line ``Pda...;ba...,10`` per point, ``*``, and an
empty line at the end.

:meth:`MethodScriptEmulator.output` and :attr:`MethodScriptEmulator.output_levels_V` read the cell's
state back (for rest-on-stop tests).

Faults, injected with :meth:`MethodScriptEmulator.inject` (see :mod:`hardware_sims.pty_port`):
``unplug`` closes the pty within 50 ms; ``stall`` stops answering for good; ``garbage`` truncates one
data line of the next script; ``drop`` leaves one data line of the next script out.
"""

from __future__ import annotations

import collections
import math
import os
import re
import select
import time

import numpy as np

from prclab.reservoir import Substrate

from .pty_port import PtyEmulator

_PREFIX_EXP = {"a": -18, "f": -15, "p": -12, "n": -9, "u": -6, "m": -3, "": 0,
               "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_LITERAL = re.compile(r"([-+]?)(\d{1,30})([afpnumkMGTPE]?)\Z")
_ENCODE_PREFIXES = sorted(((e, c or " ") for c, e in _PREFIX_EXP.items()))
_OFFSET = 1 << 27
_TOKEN = re.compile(r"\S+")

MAX_LINE_CHARS = 255
"""Longest command or script line accepted, characters without the newline (public MethodSCRIPT
clients limit script lines to 255 characters; the emulator's bound, not a figure read from the manual)."""
MAX_SCRIPT_BYTES = 64 * 1024
"""Largest script body, bytes including newlines (a stated bound: the instrument's script memory size is
not documented in the sources used; a 100-sample script of :mod:`drivers.potentiostat` is 8.6 kB, so
up to ~775 samples per script fit)."""
MAX_POINTS = 100_000
"""Most measurement points one script may schedule (a stated bound on reply memory, ~15 MB)."""
MAX_SCRIPT_S = 3600.0
"""Longest run time of one script's measurement loops, seconds (a stated bound)."""
POTENTIAL_RANGE_V = (-1.7, 2.0)
"""Potentials an EmStat Pico can apply, volts (MethodSCRIPT manual appendix B, max-range mode)."""
MAX_REPLY_BACKLOG = 64 * 1024
"""Error replies are dropped while more than this many bytes of replies wait unread."""

ERROR_CODES = {
    0x0001: "an unspecified error has occurred",
    0x0003: "the command was not recognized",
    0x0008: "command exceeds maximum length",
    0x000F: "the given potential is not valid",
    0x0010: "a variable has become NaN or inf",
    0x4001: "the script command is unknown",
    0x4004: "an unexpected character was encountered",
    0x4005: "the script is too large for the internal script memory",
    0x400B: "measurement loops cannot be placed inside other measurement loops",
    0x400C: "command not supported in current situation",
    0x4018: "the script has ended unexpectedly",
    0x401B: "the pck sequence is called wrong",
    0x4026: "the variable already exists when declared",
    0x4039: "the literal argument was not correctly formed",
    0x4204: "argument value must be positive for this command",
    0x4205: "argument value is outside the allowed bounds for this command",
    0x420B: "argument variable is not declared",
}
"""The MethodSCRIPT error codes this emulator sends, with their meaning (MethodSCRIPT manual,
appendix A "Error codes", as quoted by public MethodSCRIPT clients)."""


def encode_value(value: float) -> str:
    """``value`` in MethodSCRIPT's ``HHHHHHHp`` form with the finest SI prefix that fits 7 hex digits.

    Raises ``ValueError`` for a non-finite value or one beyond ±2^27 × 10^18.
    """
    if not math.isfinite(value):
        raise ValueError(f"{value!r} does not fit MethodSCRIPT's value range")
    for exp, char in _ENCODE_PREFIXES:
        mantissa = int(round(value / 10.0 ** exp))
        if abs(mantissa) < _OFFSET:
            return f"{mantissa + _OFFSET:07X}{char}"
    raise ValueError(f"{value!r} does not fit MethodSCRIPT's value range")


def _saturated(value: float) -> str:
    """:func:`encode_value` of a finite measured value; beyond the range it reads as the largest code."""
    limit = (_OFFSET - 1) * 1e18
    return encode_value(min(max(value, -limit), limit))


def _literal(token: str) -> float:
    """A MethodSCRIPT integer literal with an optional SI prefix (``500m``, ``-2``), as a float."""
    m = _LITERAL.match(token)
    if m is None:
        raise ValueError(f"bad number {token[:20]!r}")
    return float(m.group(1) + m.group(2)) * 10.0 ** _PREFIX_EXP[m.group(3)]


class ScriptError(Exception):
    """A script line the emulator (like the instrument) refuses.

    Attributes: ``line_no`` (1-based; the ``e`` is line 1), ``col`` (1-based column of the offending
    token), ``code`` (MethodSCRIPT error code, :data:`ERROR_CODES`).
    """

    def __init__(self, line_no: int, what: str, code: int = 0x4004, col: int = 1):
        super().__init__(f"line {line_no}: {what}")
        self.line_no, self.code, self.col = line_no, code, col

    @property
    def reply(self) -> str:
        """The error as the instrument writes it: ``!XXXX: Line L, Col C``."""
        return f"!{self.code:04X}: Line {self.line_no}, Col {self.col}"


class _Refused(Exception):
    """Raised inside :func:`interpret` with a code and the index of the offending token."""

    def __init__(self, code: int, what: str, token: int = 0):
        super().__init__(what)
        self.code, self.token = code, token


def _potential(token: str, index: int) -> float:
    value = _number(token, index)
    if not POTENTIAL_RANGE_V[0] <= value <= POTENTIAL_RANGE_V[1]:
        raise _Refused(0x000F, f"potential {value:g} V outside {POTENTIAL_RANGE_V} V", index)
    return value


def _number(token: str, index: int) -> float:
    try:
        return _literal(token)
    except ValueError as exc:
        raise _Refused(0x4039, str(exc), index) from None


def interpret(lines: list[str]) -> list[tuple[float, float, tuple[str, ...]]]:
    """Parse a script body into measurement points ``[(potential_V, interval_s, packed_types)]``.

    ``packed_types`` lists the data-package variable types in ``pck_add`` order (``"da"``, ``"ba"``).
    Raises :class:`ScriptError` (with the MethodSCRIPT error code) for anything outside the supported
    subset or the bounds in the module docstring; never anything else, whatever the text.
    """
    variables: dict[str, str] = {}
    points: list[tuple[float, float, tuple[str, ...]]] = []
    total_s = 0.0
    loop = None  # (E, interval, n_points, packed list, in_package)
    for no, raw in enumerate(lines, start=2):  # line 1 is the "e"
        code_part = raw.split("#", 1)[0]
        spans = [(m.start() + 1, m.group()) for m in _TOKEN.finditer(code_part)]
        if not spans:
            continue
        cols, words = [c for c, _ in spans], [w for _, w in spans]
        cmd, args = words[0], words[1:]
        try:
            bad = next((i for i, w in enumerate(words) if not w.isascii() or not w.isprintable()), None)
            if bad is not None:
                raise _Refused(0x4004, "unexpected character", bad)
            if loop is not None:
                e, interval, n_points, packed, in_pck = loop
                if cmd == "pck_start" and not args and not in_pck and not packed:
                    loop = (e, interval, n_points, packed, True)
                elif cmd == "pck_add" and len(args) == 1 and in_pck:
                    if not variables.get(args[0]):
                        raise _Refused(0x420B, f"variable {args[0]!r} not measured here", 1)
                    packed.append(variables[args[0]])
                elif cmd == "pck_end" and not args and in_pck:
                    loop = (e, interval, n_points, packed, False)
                elif cmd == "endloop" and not args and not in_pck:
                    points += [(e, interval, tuple(packed))] * n_points
                    loop = None
                elif cmd.startswith("pck_"):
                    raise _Refused(0x401B, f"{cmd!r} out of sequence")
                elif cmd.startswith("meas_loop"):
                    raise _Refused(0x400B, "nested measurement loop")
                else:
                    raise _Refused(0x400C, f"{cmd!r} not allowed here")
            elif cmd == "var" and len(args) == 1 and re.fullmatch(r"[a-z]", args[0]):
                if args[0] in variables:
                    raise _Refused(0x4026, f"variable {args[0]!r} declared twice", 1)
                variables[args[0]] = ""
            elif cmd in ("set_pgstat_chan", "set_pgstat_mode", "set_max_bandwidth") and len(args) == 1:
                _number(args[0], 1)
            elif cmd == "set_range_minmax" and len(args) == 3 and args[0] in ("da", "ba"):
                convert = _potential if args[0] == "da" else _number
                convert(args[1], 2), convert(args[2], 3)
            elif cmd == "set_autoranging" and len(args) == 3 and args[0] in ("da", "ba"):
                _number(args[1], 2), _number(args[2], 3)
            elif cmd == "set_range" and len(args) == 2 and args[0] in ("da", "ba"):
                _number(args[1], 2)
            elif cmd == "set_e" and len(args) == 1:
                _potential(args[0], 1)
            elif cmd in ("cell_on", "cell_off", "on_finished:") and not args:
                pass
            elif cmd == "meas_loop_ca" and len(args) == 5:
                v_e, v_i = args[0], args[1]
                for j, v in ((1, v_e), (2, v_i)):
                    if v not in variables:
                        raise _Refused(0x420B, f"variable {v!r} not declared", j)
                if v_e == v_i:
                    raise _Refused(0x4004, "one variable for potential and current", 2)
                e = _potential(args[2], 3)
                interval, run = _number(args[3], 4), _number(args[4], 5)
                if interval <= 0:
                    raise _Refused(0x4204, "t_interval must be positive", 4)
                if not interval <= run <= MAX_SCRIPT_S:
                    raise _Refused(0x4205, f"t_run must lie in [t_interval, {MAX_SCRIPT_S:g} s]", 5)
                n_points = int(round(run / interval))
                total_s += n_points * interval
                if len(points) + n_points > MAX_POINTS or total_s > MAX_SCRIPT_S:
                    raise _Refused(0x4205, f"more than {MAX_POINTS} points or {MAX_SCRIPT_S:g} s "
                                           "in one script", 5)
                variables[v_e], variables[v_i] = "da", "ba"
                loop = (e, interval, n_points, [], False)
            elif cmd in ("var", "set_pgstat_chan", "set_pgstat_mode", "set_max_bandwidth",
                         "set_range_minmax", "set_autoranging", "set_range", "set_e", "cell_on",
                         "cell_off", "on_finished:", "meas_loop_ca"):
                raise _Refused(0x4004, f"bad arguments to {cmd!r}", min(len(args), 1))
            else:
                raise _Refused(0x4001, f"unknown command {cmd[:20]!r}")
        except _Refused as exc:
            col = cols[min(exc.token, len(cols) - 1)]
            raise ScriptError(no, str(exc), exc.code, col) from None
    if loop is not None:
        raise ScriptError(len(lines) + 2, "missing endloop", 0x4018)
    return points


class MethodScriptEmulator(PtyEmulator):
    """Serve MethodSCRIPT on a pty, answering with ``substrate``'s current.  Context manager.

    Args:
        substrate: a Substrate with one input (the WE potential, volts).
        seed: passed to ``substrate.reset`` at :meth:`start`.
        gain_A: amperes per unit of substrate output 0 (default: 10 kΩ sense resistor).
        pace: deliver data lines in real time at the scripts' intervals.
    """

    thread_name = "methodscript-emulator"

    def __init__(self, substrate: Substrate, seed: int = 0, gain_A: float = 1e-4, pace: bool = True):
        if substrate.n_inputs != 1:
            raise ValueError(f"a potentiostat drives one electrode; substrate has {substrate.n_inputs}")
        super().__init__(substrate, seed)
        self.gain_A, self.pace = float(gain_A), pace
        self.scripts_run = 0
        self.internal_errors: list[str] = []          # unforeseen exceptions answered !0001 (last 20)
        self.replies_dropped = 0                      # error replies dropped for an unread backlog
        self.max_buffered_bytes = 0                   # most input bytes held at once (line + script)
        self._reset_input()
        self._due: collections.deque[tuple[float, bytes]] = collections.deque()  # in time order
        self._due_bytes = 0
        self._out = bytearray()                       # reply bytes due now, not yet written
        # the cell's timeline, for output(): point start times, their potentials, the cell-off time
        self._timeline = (np.zeros(0), np.zeros(0), 0.0)
        self._idle_potential_V = 0.0                 # WE potential of the last point before it

    def output(self) -> tuple[bool, float]:
        """``(cell_on, potential_V)`` now: whether a running script holds the cell on, and the WE
        potential of the latest measurement point applied.  The cell is off between scripts (every
        script ends ``on_finished: cell_off``), after ``Z`` and once unplugged (no USB power)."""
        with self._lock:
            begins, potentials, end = self._timeline
            idle = self._idle_potential_V
        now = time.monotonic()
        k = int(np.searchsorted(begins, now, side="right"))
        return bool(k and now < end), float(potentials[k - 1]) if k else idle

    def _cut_timeline(self) -> None:
        """The cell goes off now (abort or power lost): points not yet begun are never applied."""
        now = time.monotonic()
        with self._lock:
            begins, potentials, end = self._timeline
            keep = begins <= now
            self._timeline = (begins[keep], potentials[keep], min(end, now))

    @property
    def output_levels_V(self) -> float | None:
        """The cell potential applied now, volts, or ``None`` while the cell is off (read-only)."""
        cell_on, potential = self.output()
        return potential if cell_on else None

    def start(self):
        """Start serving with empty input and reply buffers (again, after ``close``); returns ``self``."""
        if self.serving:
            return self
        self._reset_input()
        self._due.clear()
        self._due_bytes = 0
        self._out.clear()
        return super().start()

    def _reset_input(self) -> None:
        self._line = bytearray()                      # the line being received (bounded)
        self._discard_line = False                    # skipping the rest of an overlong line
        self._script: list[str] | None = None         # lines of the script being received
        self._script_bytes = 0
        self._skip_script = False                     # skipping a refused script to its empty line

    # -- serving -------------------------------------------------------------------------------
    def _serve(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                fd, fault = self._master, self.fault
            if fault == "unplug":
                self._cut_timeline()
                self._close_pty()
                return
            if fd < 0:
                return
            now = time.monotonic()
            while self._due and self._due[0][0] <= now:
                chunk = self._due.popleft()[1]
                self._due_bytes -= len(chunk)
                self._out += chunk
            wait = min(0.05, max(0.0, self._due[0][0] - now)) if self._due else 0.05
            try:
                readable, writable, _ = select.select([fd], [fd] if self._out else [], [], wait)
                if readable:
                    data = os.read(fd, 4096)
                    if fault != "stall":
                        self._feed(data)
                if writable and self._out and fault != "stall":
                    del self._out[:os.write(fd, bytes(self._out))]
            except BlockingIOError:
                continue  # the client does not read: the pty is full, try again later
            except (OSError, ValueError):
                return  # pty closed (unplug or close)

    def _feed(self, data: bytes) -> None:
        """Split received bytes into lines, holding at most :data:`MAX_LINE_CHARS` + 2 bytes of one."""
        while data:
            nl = data.find(b"\n")
            piece, data = (data, b"") if nl < 0 else (data[:nl], data[nl + 1:])
            if self._discard_line:
                self._discard_line = nl < 0
                continue
            room = MAX_LINE_CHARS + 2 - len(self._line)  # the line, a CR, one byte to see overflow
            self._line += piece[:room]
            self.max_buffered_bytes = max(self.max_buffered_bytes,
                                          len(self._line) + self._script_bytes)
            if len(piece) > room or len(self._line.rstrip(b"\r")) > MAX_LINE_CHARS:
                self._line.clear()
                self._discard_line = nl < 0
                self._guarded(self._line_too_long)
            elif nl >= 0:
                line = bytes(self._line).rstrip(b"\r")
                self._line.clear()
                self._guarded(self._on_line, line)

    def _guarded(self, action, *args) -> None:
        """Run one input's handler; an unforeseen exception becomes ``!0001`` and never ends the thread."""
        try:
            action(*args)
        except Exception as exc:  # noqa: BLE001 - the serving thread must outlive any input
            self.internal_errors = (self.internal_errors + [f"{type(exc).__name__}: {exc}"])[-20:]
            self._reset_input()
            self._reply("!0001\n", error=True)

    def _reply(self, text: str, at: float | None = None, error: bool = False) -> None:
        """Schedule ``text`` (ASCII) at monotonic time ``at`` (now if ``None``).

        Error replies are dropped while more than :data:`MAX_REPLY_BACKLOG` bytes wait unread.
        """
        if error and self._due_bytes + len(self._out) > MAX_REPLY_BACKLOG:
            self.replies_dropped += 1
            return
        chunk = text.encode("ascii", "replace")
        self._due.append((time.monotonic() if at is None else at, chunk))
        self._due_bytes += len(chunk)

    def _refuse_script(self, error: ScriptError, skip_rest: bool) -> None:
        """Answer a refused script ``e!XXXX: Line L, Col C``; drop what was buffered of it."""
        self._script, self._script_bytes, self._skip_script = None, 0, skip_rest
        self._reply(f"e{error.reply}\n", error=True)

    def _line_too_long(self) -> None:
        if self._skip_script:
            return
        if self._script is not None:
            self._refuse_script(ScriptError(len(self._script) + 2, "line too long", 0x0008,
                                            MAX_LINE_CHARS + 1), skip_rest=True)
        else:
            self._reply("!0008\n", error=True)

    def _on_line(self, raw: bytes) -> None:
        line = raw.decode("ascii", "replace")
        if self._skip_script:
            self._skip_script = line != ""
        elif self._script is not None:
            if line:
                self._script_bytes += len(raw) + 1
                if self._script_bytes > MAX_SCRIPT_BYTES:
                    self._refuse_script(ScriptError(len(self._script) + 2, "script too large",
                                                    0x4005), skip_rest=True)
                else:
                    self._script.append(line)
            else:
                body, self._script, self._script_bytes = self._script, None, 0
                self._run(body)
        elif line == "e":
            self._script, self._script_bytes = [], 0
        elif line == "t":
            self._reply("tespico emulator (prclab)\nR1.3*\n")
        elif line == "Z":  # abort: what the script had not yet sent is never sent; earlier replies are
            now = time.monotonic()
            while self._due and self._due[0][0] <= now:
                self._out += self._due.popleft()[1]
            self._due.clear()
            self._due_bytes = 0
            self._cut_timeline()
        elif line:
            echo = line[0] if line[0].isascii() and line[0].isprintable() and line[0] != "!" else ""
            self._reply(f"{echo}!0003\n", error=True)

    def _run(self, body: list[str]) -> None:
        try:
            points = interpret(body)
        except ScriptError as exc:
            self._refuse_script(exc, skip_rest=False)
            return
        self._reply("e\n")
        if not points:
            self._reply("\n")
            return
        potentials = np.array([p[0] for p in points], dtype=np.float64)
        y = self.substrate.run(potentials[None, :, None])[0, :, 0]
        currents = self.gain_A * np.asarray(y, dtype=np.float64)
        with self._lock:
            fault, self.fault = self.fault, (None if self.fault in ("garbage", "drop") else self.fault)
        spoiled = len(points) // 2 if fault in ("garbage", "drop") else -1
        bad = np.flatnonzero(~np.isfinite(currents))
        if len(bad):  # the instrument stops a script whose variable became NaN or inf: !0010
            points, potentials = points[:bad[0] + 1], potentials[:bad[0] + 1]
        t = time.monotonic()
        for k, (e, interval, packed) in enumerate(points):
            if len(bad) and k == bad[0]:
                t = t + interval if self.pace else t
                self._reply("M0000\n!0010\n*\n", at=t)
                break
            values = {"da": e, "ba": currents[k]}
            data = "P" + ";".join(f"{v}{_saturated(values[v])}" + (",10" if v == "ba" else "")
                                  for v in packed) + "\n"
            if k == spoiled:
                data = data[:9] + "\n" if fault == "garbage" else ""
            t = t + interval if self.pace else t
            self._reply("M0000\n" + data + "*\n", at=t)
        intervals = np.array([p[1] for p in points]) if self.pace else np.zeros(len(points))
        with self._lock:
            begins, old, _ = self._timeline
            self._idle_potential_V = float(old[-1]) if len(old) else self._idle_potential_V
            self._timeline = (t - np.cumsum(intervals[::-1])[::-1], potentials, t)
        self._reply("\n", at=t)
        self.scripts_run += 1
