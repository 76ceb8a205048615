"""A MethodSCRIPT potentiostat (EmStat Pico class) on a Linux pseudo-terminal, backed by a Substrate.

The emulator opens a pty (raw mode; it keeps its own handle on the slave open so the port stays
usable between clients) and serves it from one thread.  The language is parsed by
:mod:`hardware_sims.methodscript_lang` and run by :mod:`hardware_sims.methodscript_run` (techniques,
limits, ranges and the output framing are documented there and in ``docs/emulators-methodscript.md``).
Commands of the online protocol (EmStat Pico communication protocol v1.6, as quoted by public
MethodSCRIPT clients; PalmSens' own example client relies on ``t``, ``v``, ``i`` and ``Z``):

- ``t`` -> :data:`VERSION_REPLY` (two lines: ``t`` + device type ``espico`` + firmware version +
  ``#`` + build, then ``R*``); ``v`` -> ``v`` + MethodSCRIPT version; ``i`` -> ``i`` + serial number;
- ``e`` + script lines + an empty line: the script is parsed whole; refused, it is answered
  ``e!XXXX: Line L, Col C`` and nothing runs; accepted, ``e`` and then its output, paced in real time
  (``pace=True``), ending with an empty line.  A second ``e`` while a script runs: ``e!0006``;
- ``Z`` while a script runs: ``Z``, the loops still open closed (``*``, ``+``, ``-``), the empty line;
  what the script had not sent yet is never sent, the cell goes off (``on_finished:``).  ``Z`` with no
  script running: ``Z!0006``;
- anything else: the command's letter and ``!0003``.

No input stops the serving thread: every malformed line or script gets one error reply, and anything
unforeseen is answered ``!0001`` (unspecified error) and counted in
:attr:`MethodScriptEmulator.internal_errors`.

Bounds (what a request may cost the emulator): a line holds at most :data:`MAX_LINE_CHARS` characters
(longer: ``!0008``, the rest of the line discarded), a script at most :data:`MAX_SCRIPT_BYTES` bytes
(larger: ``e!4005``, the script discarded up to its terminating empty line); the run-time bounds of
:mod:`hardware_sims.methodscript_run` (:data:`MAX_POINTS` packages, :data:`MAX_SCRIPT_S` seconds,
steps and commands per script: ``!4205``).  Error replies are dropped while more than
:data:`MAX_REPLY_BACKLOG` bytes wait for a client that does not read (counted in
:attr:`MethodScriptEmulator.replies_dropped`).

Physics (:class:`~hardware_sims.methodscript_run.Cell`): the WE potential is the substrate's single
input; the current is the substrate's output 0 read across a 10 kΩ sense resistor,
``i = gain_A * y[..., 0]`` with ``gain_A = 1e-4`` A per unit output by default (a potato's ~10 mV gives
~1 µA).  A script whose measurement intervals equal the substrate's ``dt`` (as
:mod:`drivers.potentiostat` writes them) runs the substrate once on the script's ``(1, points, 1)``
potentials, so streaming through the emulator equals ``substrate.run`` on the same blocks.

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
import select
import threading
import time

import numpy as np

from prclab.reservoir import Substrate

from .methodscript_lang import ERROR_CODES, ScriptError
from .methodscript_run import (ABS_POTENTIAL_V, MAX_POINTS, MAX_SCRIPT_S, Cancelled, Cell, Reply,
                               encode_value, execute, format_package, parse_script)
from .line_input import GuardedHandlers, LineInput
from .pty_port import PtyEmulator

__all__ = ["ERROR_CODES", "MAX_LINE_CHARS", "MAX_POINTS", "MAX_REPLY_BACKLOG", "MAX_SCRIPT_BYTES",
           "MAX_SCRIPT_S", "POTENTIAL_RANGE_V", "MethodScriptEmulator", "ScriptError", "encode_value",
           "interpret"]

MAX_LINE_CHARS = 255
"""Longest command or script line accepted, characters without the newline (public MethodSCRIPT
clients limit script lines to 255 characters; the emulator's bound, not a figure read from the manual)."""
MAX_SCRIPT_BYTES = 64 * 1024
"""Largest script body, bytes including newlines (a stated bound: the instrument's script memory size is
not documented in the sources used; a 100-sample script of :mod:`drivers.potentiostat` is 8.6 kB, so
up to ~775 samples per script fit)."""
POTENTIAL_RANGE_V = ABS_POTENTIAL_V
"""Potentials an EmStat Pico can apply, volts (MethodSCRIPT manual appendix B, max-range mode)."""
MAX_REPLY_BACKLOG = 64 * 1024
"""Error replies are dropped while more than this many bytes of replies wait unread."""
FIRMWARE = "espico1300#prclab emulator"
"""What ``t`` reports after its ``t``: device type (``espico``: EmStat Pico, the prefix PalmSens'
clients map to the device), firmware digits, ``#`` and the build."""
VERSION_REPLY = f"t{FIRMWARE}\nR*\n"
MSCRIPT_VERSION = "01.08.00"
"""What ``v`` reports after its ``v`` (the MethodSCRIPT manual version the subset follows)."""

interpret = parse_script
"""Parse a script body (lines after the ``e``) with the instrument's checks; raises
:class:`ScriptError` (the reply ``e!XXXX: Line L, Col C``), never anything else."""


class MethodScriptEmulator(GuardedHandlers, PtyEmulator):
    """Serve MethodSCRIPT on a pty, answering with ``substrate``'s current.  Context manager.

    Args:
        substrate: a Substrate with one input (the WE potential, volts).
        seed: passed to ``substrate.reset`` at :meth:`start`.
        gain_A: amperes per unit of substrate output 0 (default: 10 kΩ sense resistor).
        pace: deliver replies in real time, at the script's own timing.
        serial: what ``i`` reports.
        ocp_V: the open-circuit potential ``meas_loop_ocp`` reads, volts.
    """

    thread_name = "methodscript-emulator"

    def __init__(self, substrate: Substrate, seed: int = 0, gain_A: float = 1e-4, pace: bool = True,
                 serial: str = "PRCLAB-EMU-0001", ocp_V: float = 0.0):
        if substrate.n_inputs != 1:
            raise ValueError(f"a potentiostat drives one electrode; substrate has {substrate.n_inputs}")
        super().__init__(substrate, seed)
        self.gain_A, self.pace, self.serial, self.ocp_V = float(gain_A), pace, serial, float(ocp_V)
        self.scripts_run = 0
        self.internal_errors: list[str] = []          # unforeseen exceptions answered !0001 (last 20)
        self.replies_dropped = 0                      # error replies dropped for an unread backlog
        self.max_buffered_bytes = 0                   # most input bytes held at once (line + script)
        self._input = LineInput(MAX_LINE_CHARS, strip_cr=True)
        self._reset_input()
        # replies in time order: (monotonic time, bytes or an unrendered package, closers after it or
        # None for a reply that is not script output)
        self._due: collections.deque = collections.deque()
        self._job: tuple | None = None                # (worker, cancel, result, fault, t0) computing
        self._spoil = (None, -1)                      # (fault, package index) of the script being sent
        self._sent_packages = 0
        self._due_bytes = 0
        self._script_due = 0                          # script output chunks still in _due
        self._closers: tuple[str, ...] = ()          # loops open after the last script chunk sent
        self._out = bytearray()                       # reply bytes due now, not yet written
        # the cell's timeline, for output(): segment start times, their potentials (nan: cell off),
        # the script's end (inf: the cell stays on)
        self._timeline = (np.zeros(0), np.zeros(0), 0.0)
        self._idle_potential_V = 0.0                 # WE potential of the last point before it

    def output(self) -> tuple[bool, float]:
        """``(cell_on, potential_V)`` now: whether the cell is on, and the WE potential last applied.

        The cell is off between scripts that end with ``cell_off`` (every script of
        :mod:`drivers.potentiostat` does, in ``on_finished:``), after ``Z`` and once unplugged."""
        with self._lock:
            begins, potentials, end = self._timeline
            idle = self._idle_potential_V
        now = time.monotonic()
        k = int(np.searchsorted(begins, now, side="right"))
        applied = potentials[:k][np.isfinite(potentials[:k])]
        return (bool(k and now < end and math.isfinite(potentials[k - 1])),
                float(applied[-1]) if len(applied) else idle)

    def _cut_timeline(self) -> None:
        """The cell goes off now (abort or power lost): segments not yet begun are never applied."""
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
        self._clear_due()
        self._out.clear()
        # one step before the reset to the seed: a compiled substrate (numba) compiles now, not while
        # the first script's replies are due (the first run of a potato takes about 1 s)
        self.substrate.run(np.zeros((1, 1, 1)))
        return super().start()

    def _reset_input(self) -> None:
        self._input.clear()                           # the line being received (bounded)
        self._script: list[str] | None = None         # lines of the script being received
        self._script_bytes = 0
        self._skip_script = False                     # skipping a refused script to its empty line

    def _clear_due(self) -> None:
        self._due.clear()
        self._due_bytes = self._script_due = 0
        self._closers = ()

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
            self._collect_job()
            self._release(time.monotonic())
            wait = min(0.05, max(0.0, self._due[0][0] - time.monotonic())) if self._due else 0.05
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

    def _release(self, now: float) -> None:
        """Move the replies due by ``now`` to the output buffer, rendering packages as they go out
        (a NaN or infinite value stops the script there with ``!0010``)."""
        while self._due and self._due[0][0] <= now:
            _, chunk, closers = self._due.popleft()
            if not isinstance(chunk, bytes):
                text = format_package(chunk)
                if text is None:
                    self._end_script(("!0010",) + closers)
                    continue
                fault, spoiled = self._spoil
                if self._sent_packages == spoiled:
                    text = "" if fault == "drop" else text[:8]
                self._sent_packages += 1
                chunk = (text + "\n").encode("ascii") if text else b""
            else:
                self._due_bytes -= len(chunk)
            self._out += chunk
            if closers is not None:
                self._script_due -= 1
                self._closers = closers

    def _end_script(self, lines: tuple[str, ...]) -> None:
        """Stop the script being sent now: ``lines`` and the empty line are its last output, what it
        had not sent is dropped, the cell goes off."""
        self._due = collections.deque(item for item in self._due if item[2] is None)
        self._due_bytes = sum(len(item[1]) for item in self._due)
        self._script_due, self._closers = 0, ()
        self._out += "".join(line + "\n" for line in lines + ("",)).encode("ascii")
        self._cut_timeline()

    def _feed(self, data: bytes) -> None:
        """Split received bytes into lines, holding at most :data:`MAX_LINE_CHARS` + 2 bytes of one."""
        self._input.feed(data, lambda line: self._guarded(self._on_line, line),
                         lambda: self._guarded(self._line_too_long), self._note_held)

    def _note_held(self, line_bytes: int) -> None:
        self.max_buffered_bytes = max(self.max_buffered_bytes, line_bytes + self._script_bytes)

    def _recover(self) -> None:
        """After an unforeseen exception: input reset, ``!0001``."""
        self._reset_input()
        self._reply("!0001\n", error=True)

    def _reply(self, text: str, at: float | None = None, error: bool = False,
               closers: tuple[str, ...] | None = None, backlog: int = MAX_REPLY_BACKLOG) -> None:
        """Schedule ``text`` (ASCII) at monotonic time ``at`` (now if ``None``); ``closers``: a script
        chunk, with the loops still open after it.

        Error replies are dropped while more than ``backlog`` bytes wait unread.
        """
        if error and self._due_bytes + len(self._out) > backlog:
            self.replies_dropped += 1
            return
        chunk = text.encode("ascii", "replace")
        self._schedule(time.monotonic() if at is None else at, chunk, closers)

    def _schedule(self, at: float, chunk, closers: tuple[str, ...] | None) -> None:
        self._due.append((at, chunk, closers))
        self._due_bytes += len(chunk) if isinstance(chunk, bytes) else 0
        self._script_due += closers is not None

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
            if self._script_due or self._job is not None:
                self._reply("e!0006\n", error=True)
            else:
                self._script, self._script_bytes = [], 0
        elif line == "t":
            self._reply(VERSION_REPLY)
        elif line == "v":
            self._reply(f"v{MSCRIPT_VERSION}\n")
        elif line == "i":
            self._reply(f"i{self.serial}\n")
        elif line == "Z":
            self._abort()
        elif line:
            echo = line[0] if line[0].isascii() and line[0].isprintable() and line[0] != "!" else ""
            self._reply(f"{echo}!0003\n", error=True)

    def _abort(self) -> None:
        """``Z``: what the script has sent stands, the rest is never sent; ``Z``, the open loops'
        terminators and the empty line follow; the cell goes off.  Idle: ``Z!0006``."""
        self._release(time.monotonic())
        if self._job is not None:  # still computing: nothing of it was sent but its echo
            self._job[1].set()
            self._job = None
            self._schedule(time.monotonic(), b"Z\n\n", ())
            return
        if not self._script_due:
            # the acknowledgement clients resynchronise on outlives an error flood (twice the backlog)
            self._reply("Z!0006\n", error=True, backlog=2 * MAX_REPLY_BACKLOG)
            return
        self._end_script(("Z",) + self._closers)

    def _run(self, body: list[str]) -> None:
        """Parse a received script; accepted, echo ``e`` and compute its run on a worker thread (the
        serving thread keeps answering, ``Z`` cancels it); :meth:`_collect_job` schedules the result."""
        try:
            program = interpret(body)
        except ScriptError as exc:
            self._refuse_script(exc, skip_rest=False)
            return
        self._reply("e\n", closers=())
        with self._lock:
            fault, self.fault = self.fault, (None if self.fault in ("garbage", "drop") else self.fault)
        cancel, result = threading.Event(), []
        cell = Cell(self.substrate, self.gain_A, self.ocp_V)

        def compute():
            try:
                result.append(execute(program, cell, cancel))
            except Cancelled:
                pass
            except Exception as exc:  # noqa: BLE001 - reported as !0001 by the serving thread
                result.append(exc)

        worker = threading.Thread(target=compute, name=f"{self.thread_name}-script", daemon=True)
        self._job = (worker, cancel, result, fault, time.monotonic())
        worker.start()

    def _collect_job(self) -> None:
        """Schedule the output of the script computed on the worker thread, once it is done."""
        if self._job is None or self._job[0].is_alive():
            return
        _, _, result, fault, t0 = self._job
        self._job = None
        if not result or isinstance(result[0], Exception):  # unforeseen: !0001, the script ends
            what = f"{type(result[0]).__name__}: {result[0]}" if result else "script result lost"
            self._record_internal_error(what)
            self._schedule(time.monotonic(), b"!0001\n\n", ())
            return
        reply: Reply = result[0]
        at = (lambda t: t0 + t) if self.pace else (lambda t: t0)
        self._spoil = (fault, reply.packages // 2 if fault in ("garbage", "drop") else -1)
        self._sent_packages = 0
        for t, item, closers in reply.lines:
            self._schedule(at(t), (item + "\n").encode("ascii") if isinstance(item, str) else item,
                           closers)
        segments = np.array(reply.segments, dtype=np.float64).reshape(-1, 2)
        with self._lock:
            _, old, _ = self._timeline
            finite = old[np.isfinite(old)]
            self._idle_potential_V = float(finite[-1]) if len(finite) else self._idle_potential_V
            self._timeline = (np.array([at(t) for t in segments[:, 0]]), segments[:, 1],
                              math.inf if reply.cell_on_at_end else at(reply.end_s))
        self._schedule(at(reply.end_s), b"\n", ())
        self.scripts_run += 1
