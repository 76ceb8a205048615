"""A MethodSCRIPT potentiostat (EmStat Pico class) on a Linux pseudo-terminal, backed by a Substrate.

The emulator opens a pty (raw mode; it keeps its own handle on the slave open so the port stays
usable between clients) and serves it from one thread.  It interprets the subset of MethodSCRIPT that
:mod:`drivers.potentiostat` sends:

- ``t`` -> version reply (``t...`` line, then a line ending in ``*``); ``Z`` aborts a running script;
- ``e`` + script lines + empty line -> runs the script.  Accepted commands: ``var``,
  ``set_pgstat_chan``, ``set_pgstat_mode``, ``set_max_bandwidth``, ``set_range_minmax``, ``set_range``,
  ``set_autoranging``, ``set_e``, ``cell_on``, ``cell_off``, ``meas_loop_ca p c E t_interval t_run``
  with a ``pck_start`` / ``pck_add`` / ``pck_end`` body and ``endloop``, ``on_finished:``, ``#``
  comments.  Anything else is answered with a ``!`` error line.

Physics: the WE potential of every measurement point (volts) is the substrate's single input; the
current is the substrate's output 0 read across a 10 kΩ sense resistor, ``i = gain_A * y[..., 0]`` with
``gain_A = 1e-4`` A per unit output by default (a potato's ~10 mV gives ~1 µA).  The substrate runs once
per script on the script's ``(1, points, 1)`` potentials, so streaming through the emulator equals
``substrate.run`` on the same blocks.  Replies are paced in real time (``pace=True``) from the loop
intervals: ``e``, then per loop ``M0000``, one data line ``Pda...;ba...,10`` per point, ``*``, and an
empty line at the end.

Faults, injected with :meth:`MethodScriptEmulator.inject` (see :mod:`hardware_sims.pty_port`):
``unplug`` closes the pty within 50 ms; ``stall`` stops answering for good; ``garbage`` truncates one
data line of the next script; ``drop`` leaves one data line of the next script out.
"""

from __future__ import annotations

import os
import re
import select
import time

import numpy as np

from reservoir import Substrate

from .pty_port import PtyEmulator

_PREFIX_EXP = {"a": -18, "f": -15, "p": -12, "n": -9, "u": -6, "m": -3, "": 0,
               "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_LITERAL = re.compile(r"(-?\d+)([afpnumkMGTPE]?)\Z")
_ENCODE_PREFIXES = sorted(((e, c or " ") for c, e in _PREFIX_EXP.items()))
_OFFSET = 1 << 27
MAX_INPUT_LINE = 4096


def encode_value(value: float) -> str:
    """``value`` in MethodSCRIPT's ``HHHHHHHp`` form with the finest SI prefix that fits 7 hex digits."""
    for exp, char in _ENCODE_PREFIXES:
        mantissa = int(round(value / 10.0 ** exp))
        if abs(mantissa) < _OFFSET:
            return f"{mantissa + _OFFSET:07X}{char}"
    raise ValueError(f"{value!r} does not fit MethodSCRIPT's value range")


def _literal(token: str) -> float:
    m = _LITERAL.match(token)
    if m is None:
        raise ValueError(f"bad number {token!r}")
    return int(m.group(1)) * 10.0 ** _PREFIX_EXP[m.group(2)]


class ScriptError(Exception):
    """A script line the emulator (like the instrument) refuses; carries the 1-based line number."""

    def __init__(self, line_no: int, what: str):
        super().__init__(f"line {line_no}: {what}")
        self.line_no = line_no


def interpret(lines: list[str]) -> list[tuple[float, float, tuple[str, ...]]]:
    """Parse a script body into measurement points ``[(potential_V, interval_s, packed_types)]``.

    ``packed_types`` lists the data-package variable types in ``pck_add`` order (``"da"``, ``"ba"``).
    Raises :class:`ScriptError` for anything outside the supported subset.
    """
    variables: dict[str, str] = {}
    points: list[tuple[float, float, tuple[str, ...]]] = []
    loop = None  # (E, interval, n_points, packed list, in_package)
    for no, raw in enumerate(lines, start=2):  # line 1 is the "e"
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        cmd, args = words[0], words[1:]
        try:
            if loop is not None:
                e, interval, n_points, packed, in_pck = loop
                if cmd == "pck_start" and not args and not in_pck and not packed:
                    loop = (e, interval, n_points, packed, True)
                elif cmd == "pck_add" and len(args) == 1 and in_pck and variables.get(args[0]):
                    packed.append(variables[args[0]])
                elif cmd == "pck_end" and not args and in_pck:
                    loop = (e, interval, n_points, packed, False)
                elif cmd == "endloop" and not args and not in_pck:
                    points += [(e, interval, tuple(packed))] * n_points
                    loop = None
                else:
                    raise ValueError(f"{cmd!r} not allowed here")
            elif cmd == "var" and len(args) == 1 and re.fullmatch(r"[a-z]", args[0]):
                variables[args[0]] = ""
            elif cmd in ("set_pgstat_chan", "set_pgstat_mode", "set_max_bandwidth") and len(args) == 1:
                _literal(args[0])
            elif cmd in ("set_range_minmax", "set_autoranging") and len(args) == 3 and \
                    args[0] in ("da", "ba"):
                _literal(args[1]), _literal(args[2])
            elif cmd == "set_range" and len(args) == 2 and args[0] in ("da", "ba"):
                _literal(args[1])
            elif cmd == "set_e" and len(args) == 1:
                _literal(args[0])
            elif cmd in ("cell_on", "cell_off", "on_finished:") and not args:
                pass
            elif cmd == "meas_loop_ca" and len(args) == 5:
                v_e, v_i = args[0], args[1]
                if v_e not in variables or v_i not in variables or v_e == v_i:
                    raise ValueError("undeclared variables")
                variables[v_e], variables[v_i] = "da", "ba"
                e, interval, run = (_literal(a) for a in args[2:])
                if interval <= 0 or run < interval:
                    raise ValueError("need 0 < t_interval <= t_run")
                loop = (e, interval, int(round(run / interval)), [], False)
            else:
                raise ValueError(f"unknown command {cmd!r}")
        except (ValueError, KeyError) as exc:
            raise ScriptError(no, str(exc)) from None
    if loop is not None:
        raise ScriptError(len(lines) + 1, "missing endloop")
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
        self._script: list[str] | None = None        # lines of the script being received
        self._due: list[tuple[float, bytes]] = []    # scheduled reply chunks, in time order
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

    # -- serving -------------------------------------------------------------------------------
    def _serve(self) -> None:
        inbuf, out = bytearray(), bytearray()
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
                out += self._due.pop(0)[1]
            wait = min(0.05, max(0.0, self._due[0][0] - now)) if self._due else 0.05
            try:
                readable, writable, _ = select.select([fd], [fd] if out else [], [], wait)
                if readable:
                    data = os.read(fd, 4096)
                    if fault != "stall":
                        inbuf += data
                if writable and out and fault != "stall":
                    del out[:os.write(fd, bytes(out))]
            except (OSError, ValueError):
                return  # pty closed (unplug or close)
            while b"\n" in inbuf:
                line, _, rest = bytes(inbuf).partition(b"\n")
                inbuf[:] = rest
                self._on_line(line.decode("ascii", "replace").rstrip("\r"))
            if len(inbuf) > MAX_INPUT_LINE:
                inbuf.clear()
                self._reply("!0002: input line too long\n")

    def _reply(self, text: str, at: float | None = None) -> None:
        self._due.append((time.monotonic() if at is None else at, text.encode("ascii")))

    def _on_line(self, line: str) -> None:
        if self._script is not None:
            if line:
                self._script.append(line)
            else:
                body, self._script = self._script, None
                self._run(body)
        elif line == "e":
            self._script = []
        elif line == "t":
            self._reply("tespico emulator (prclab)\nR1.3*\n")
        elif line == "Z":
            self._due.clear()
            self._cut_timeline()
        elif line:
            self._reply(f"!0001: unknown command {line[:20]!r}\n")

    def _run(self, body: list[str]) -> None:
        try:
            points = interpret(body)
        except ScriptError as exc:
            self._reply(f"e\n!4004: Line {exc.line_no}, Col 1\n\n")
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
        t = time.monotonic()
        for k, (e, interval, packed) in enumerate(points):
            values = {"da": e, "ba": currents[k]}
            data = "P" + ";".join(f"{v}{encode_value(values[v])}" + (",10" if v == "ba" else "")
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
