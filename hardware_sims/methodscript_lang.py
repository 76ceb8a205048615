"""MethodSCRIPT, the language: literals, the command table, the parser and the error codes.

:func:`parse` turns a script body (the lines after ``e``, up to the empty line) into a
:class:`Program` or raises :class:`ScriptError` carrying the instrument's error code and the 1-based
line (the ``e`` is line 1) and column of the offending token, which the emulator sends as
``e!XXXX: Line L, Col C``.  Nothing of a refused script runs.

Syntax accepted (MethodSCRIPT manual v1.x, ch. 4-6, as summarised in public clients that cite it
and as PalmSens' example scripts use it):

- one command per line, ``#`` starts a comment, indentation is free;
- literals: an integer with an optional SI prefix (``100m``, ``-500m``, ``200k``, ``2``: floats, in
  SI units), an integer with suffix ``i`` (``0i``, ``11i``: integers), ``0x1F`` / ``0b101`` (integers).
  **No decimal point**: ``1.5`` is refused with ``!4039`` (write ``1500m``), as the manual's literal
  grammar has none;
- variable names ``[a-z][a-z0-9_]*``, at most :data:`MAX_NAME_CHARS` characters (longer: ``!402C``);
  declared with ``var`` before use (``!420B``), once (``!4026``);
- blocks ``meas_loop_* ... endloop`` (not nested: ``!400B``), ``loop a OP b ... endloop``,
  ``if / elseif / else / endif``, ``breakloop`` inside a loop; ``on_finished:`` once, outside blocks;
- the optional argument ``nscans(n)`` on ``meas_loop_cv`` (other options: ``!4008``).

Static checks: where an argument is a literal, the checks the interpreter applies at run time
(potential within the instrument's range, positive intervals, bounds) are applied while parsing, so
``set_e 5`` is refused before anything runs, as the instrument does with a literal; values held in
variables are checked when the line runs (``!XXXX: Line L``, see :mod:`hardware_sims.methodscript_run`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

ERROR_CODES = {
    0x0001: "an unspecified error has occurred",
    0x0002: "an invalid VarType has been used",
    0x0003: "the command was not recognized",
    0x0006: "communication mode invalid (no script is running, or one is)",
    0x0008: "command exceeds maximum length",
    0x000F: "the given potential is not valid",
    0x0010: "a variable has become NaN or inf",
    0x0011: "the given frequency is not valid",
    0x0012: "the given amplitude is not valid",
    0x0014: "cannot measure OCP while the cell is on",
    0x0021: "the PGStat mode is not supported",
    0x0023: "this command is not supported in the current PGStat mode",
    0x0028: "division by zero",
    0x4001: "the script command is unknown",
    0x4004: "an unexpected character was encountered",
    0x4005: "the script is too large for the internal script memory",
    0x4008: "this optional argument is not valid for this command",
    0x400B: "measurement loops cannot be placed inside other measurement loops",
    0x400C: "command not supported in current situation",
    0x4018: "the script has ended unexpectedly",
    0x401B: "the pck sequence is called wrong",
    0x4026: "the variable already exists when declared",
    0x4027: "this command requires the cell to be enabled with cell_on",
    0x4029: "the technique requires that at least one step should be made",
    0x402B: "the variable name is not valid",
    0x402C: "the variable name is too long",
    0x4039: "the literal argument was not correctly formed",
    0x4200: "argument value cannot be negative for this command",
    0x4204: "argument value must be positive for this command",
    0x4205: "argument value is outside the allowed bounds for this command",
    0x4207: "the argument has the wrong type (float or integer)",
    0x420A: "too many arguments",
    0x420B: "argument variable is not declared",
}
"""The MethodSCRIPT error codes this emulator sends, with their meaning (MethodSCRIPT manual v1.8,
appendix A, as quoted by public MethodSCRIPT clients; the wording is ours)."""

MAX_NAME_CHARS = 32
"""Longest variable name accepted (a stated bound: the manual's figure was not at hand; PalmSens'
example scripts use names of up to 20 characters)."""

SI_PREFIX_EXP = {"a": -18, "f": -15, "p": -12, "n": -9, "u": -6, "m": -3, "": 0,
                 "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
"""Literal SI prefixes and their powers of ten (manual table 1)."""

VAR_TYPES = frozenset(
    "aa ab ac ad ae af ag ah ai as at au av aw ax ay az ba bb ca cb cc cd ce cf cg ch ci cj ck "
    "da db dc dd ea eb ec ed ee ef eg ha hb hc hd ia ib ic id ja jb jc jd".split())
"""Variable types (two letters; manual appendix C): ``ab`` WE potential, ``ba`` WE current, ``da``
applied potential, ``dc`` applied frequency, ``cc``/``cd`` Z real/imaginary, ``eb`` time, ``ja``..
generic."""

OPERATORS = ("==", "!=", "<=", ">=", "<", ">")

_FLOAT = re.compile(r"([-+]?)(\d{1,30})([afpnumkMGTPE]?)\Z")
_INT = re.compile(r"([-+]?)(\d{1,30})i\Z")
_BASED = re.compile(r"0(?:x([0-9A-Fa-f]{1,8})|b([01]{1,32}))i?\Z")
_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_OPTION = re.compile(r"([a-z_]+)\((.*)\)\Z")
_TOKEN = re.compile(r'"[^"]*"|\S+')
_BAD_CHAR = re.compile(r"[^\t -~]")

# argument kinds: "decl" new variable, "out" declared variable (written), "var" declared variable
# (read), "val" variable or literal (read), "lit" literal, "vt" variable type, "op" comparison,
# "str" quoted string
SPEC: dict[str, tuple[str, ...]] = {
    "var": ("decl",), "store_var": ("out", "lit", "vt"), "copy_var": ("var", "out"),
    "add_var": ("out", "val"), "sub_var": ("out", "val"), "mul_var": ("out", "val"),
    "div_var": ("out", "val"), "timer_start": (), "timer_get": ("out",), "wait": ("val",),
    "send_string": ("str",), "set_pgstat_chan": ("val",), "set_pgstat_mode": ("val",),
    "set_max_bandwidth": ("val",), "set_range": ("vt", "val"), "set_range_minmax": ("vt", "val", "val"),
    "set_autoranging": ("vt", "val", "val"), "set_e": ("val",), "cell_on": (), "cell_off": (),
    "loop": ("val", "op", "val"), "endloop": (), "breakloop": (), "if": ("val", "op", "val"),
    "elseif": ("val", "op", "val"), "else": (), "endif": (), "pck_start": (), "pck_add": ("var",),
    "pck_end": (), "meas": ("val", "out", "vt"), "abort": (),
    "meas_loop_ca": ("out", "out", "val", "val", "val"),
    "meas_loop_lsv": ("out", "out", "val", "val", "val", "val"),
    "meas_loop_cv": ("out", "out", "val", "val", "val", "val", "val"),
    "meas_loop_dpv": ("out", "out", "val", "val", "val", "val", "val", "val"),
    "meas_loop_swv": ("out", "out", "out", "out", "val", "val", "val", "val", "val"),
    "meas_loop_ocp": ("out", "val", "val"),
    "meas_loop_eis": ("out", "out", "out", "val", "val", "val", "val", "val"),
}
"""Each supported command and its arguments (manual ch. 6-14; the subset PalmSens' examples use)."""

OPTIONS = {"meas_loop_cv": {"nscans"}}
"""Optional ``name(args)`` arguments accepted per command."""


class Refused(Exception):
    """A check failed: MethodSCRIPT error ``code``; ``arg`` is the 0-based argument at fault
    (``-1``: the command itself)."""

    def __init__(self, code: int, what: str, arg: int = -1):
        super().__init__(what)
        self.code, self.arg = code, arg


class ScriptError(Exception):
    """A script the emulator (like the instrument) refuses before running it.

    Attributes: ``line_no`` (1-based; the ``e`` is line 1), ``col`` (1-based column of the offending
    token), ``code`` (:data:`ERROR_CODES`).
    """

    def __init__(self, line_no: int, what: str, code: int = 0x4004, col: int = 1):
        super().__init__(f"line {line_no}: {what}")
        self.line_no, self.code, self.col = line_no, code, col

    @property
    def reply(self) -> str:
        """The error as the instrument writes it after the command letter: ``!XXXX: Line L, Col C``."""
        return f"!{self.code:04X}: Line {self.line_no}, Col {self.col}"


def literal(token: str, arg: int = -1) -> int | float:
    """Value of a MethodSCRIPT literal: ``int`` for ``5i`` / ``0x1F`` / ``0b11``, ``float`` (SI units)
    for ``500m`` / ``-2``.  Raises :class:`Refused` (``!4039``, naming argument ``arg``) for anything
    else."""
    m = _FLOAT.match(token)
    if m:
        return float(m.group(1) + m.group(2)) * 10.0 ** SI_PREFIX_EXP[m.group(3)]
    m = _INT.match(token)
    if m:
        return int(m.group(1) + m.group(2))
    m = _BASED.match(token)
    if m:
        return int(m.group(1), 16) if m.group(1) else int(m.group(2), 2)
    raise Refused(0x4039, f"bad literal {token[:20]!r}", arg)


def is_name(token: str) -> bool:
    """Whether ``token`` is spelled as a variable name (any length)."""
    return bool(_NAME.match(token))


@dataclass
class Command:
    """One script line: ``name``, raw ``args`` (options removed), their 1-based ``cols``, the script
    line ``line_no``, ``options`` (``{"nscans": ["3"]}``) and ``jump`` (block partner, see
    :func:`parse`)."""

    line_no: int
    name: str
    args: list[str]
    cols: list[int]
    col: int
    options: dict[str, list[str]] = field(default_factory=dict)
    jump: int = -1
    values: list = field(default_factory=list)

    def refuse(self, exc: Refused) -> ScriptError:
        """:class:`ScriptError` at the column of the argument ``exc`` names."""
        col = self.cols[exc.arg] if 0 <= exc.arg < len(self.cols) else self.col
        return ScriptError(self.line_no, str(exc), exc.code, col)


@dataclass
class Program:
    """A parsed script: ``commands`` and ``finish`` (index of the first ``on_finished:`` command, or
    ``len(commands)`` when there is none).  ``Command.values`` holds each argument's literal value
    (``None`` for a variable or a non-value argument)."""

    commands: list[Command]
    finish: int


def _tokens(code: str) -> list[tuple[int, str]]:
    return [(m.start() + 1, m.group()) for m in _TOKEN.finditer(code)]


def _check_args(cmd: Command, spec: tuple[str, ...], declared: set[str], static) -> None:
    if len(cmd.args) > len(spec):
        raise Refused(0x420A, f"{cmd.name}: more than {len(spec)} arguments", len(spec))
    if len(cmd.args) < len(spec):
        cmd.cols.append(cmd.cols[-1] + len(cmd.args[-1]) + 1 if cmd.args else cmd.col + len(cmd.name) + 1)
        raise Refused(0x4004, f"{cmd.name}: {len(spec)} arguments expected", len(cmd.args))
    cmd.values = [None] * len(spec)
    for k, (kind, arg) in enumerate(zip(spec, cmd.args)):
        if kind in ("decl", "out", "var") or (kind == "val" and arg[0].isalpha() and arg[0].islower()):
            if not is_name(arg):
                raise Refused(0x402B, f"bad variable name {arg[:20]!r}", k)
            if len(arg) > MAX_NAME_CHARS:
                raise Refused(0x402C, f"variable name longer than {MAX_NAME_CHARS}", k)
            if kind == "decl":
                if arg in declared:
                    raise Refused(0x4026, f"variable {arg!r} declared twice", k)
                declared.add(arg)
            elif arg not in declared:
                raise Refused(0x420B, f"variable {arg!r} not declared", k)
        elif kind in ("val", "lit"):
            cmd.values[k] = literal(arg, k)
        elif kind == "vt" and arg not in VAR_TYPES:
            raise Refused(0x0002, f"unknown variable type {arg[:20]!r}", k)
        elif kind == "op" and arg not in OPERATORS:
            raise Refused(0x4004, f"unknown operator {arg[:20]!r}", k)
        elif kind == "str" and not (len(arg) >= 2 and arg[0] == arg[-1] == '"'):
            raise Refused(0x4004, "a quoted string expected", k)
    static(cmd)


def parse(lines: list[str], static=lambda cmd: None) -> Program:
    """Parse a script body (without the ``e`` and the empty line) into a :class:`Program`.

    ``static(cmd)`` applies the run-time checks to literal arguments (raising :class:`Refused`); the
    interpreter supplies it.  Block commands get ``jump``: a measurement loop or ``loop`` its
    ``endloop``, ``endloop`` its opening command, ``if``/``elseif``/``else`` the next branch or
    ``endif``.  Raises :class:`ScriptError`; never anything else, whatever the text.
    """
    commands: list[Command] = []
    declared: set[str] = set()
    stack: list[int] = []         # open blocks (command indices)
    in_package = False
    finish = None
    for no, raw in enumerate(lines, start=2):  # line 1 is the "e"
        found = _BAD_CHAR.search(raw)
        if found:  # the column of the word holding it
            bad = found.start()
            word = len(raw[:bad]) - len(raw[:bad].split()[-1]) if raw[:bad].strip() and not \
                raw[bad - 1].isspace() else bad
            raise ScriptError(no, "unexpected character", 0x4004, word + 1)
        code = raw if raw.lstrip().startswith("send_string") else raw.split("#", 1)[0]
        spans = _tokens(code)
        if not spans:
            continue
        (col, name), rest = spans[0], spans[1:]
        options: dict[str, list[str]] = {}
        while rest and _OPTION.match(rest[-1][1]):
            m = _OPTION.match(rest[-1][1])
            if m.group(1) not in OPTIONS.get(name, ()):
                raise ScriptError(no, f"option {m.group(1)!r} not valid here", 0x4008, rest[-1][0])
            options[m.group(1)] = m.group(2).split()
            rest = rest[:-1]
        cmd = Command(no, name, [w for _, w in rest], [c for c, _ in rest], col, options)
        try:
            if name == "on_finished:":
                if cmd.args or stack or finish is not None or in_package:
                    raise Refused(0x400C, "on_finished: only once, alone, outside blocks")
                finish = len(commands)
                continue
            if name not in SPEC:
                raise Refused(0x4001, f"unknown command {name[:20]!r}")
            _check_args(cmd, SPEC[name], declared, static)
            here = len(commands)
            opener = commands[stack[-1]].name if stack else ""
            if in_package and (name in ("loop", "if") or name.startswith("meas_loop_")):
                raise Refused(0x401B, "a package cannot span a block")
            if name.startswith("meas_loop_"):
                if any(commands[i].name.startswith("meas_loop_") for i in stack):
                    raise Refused(0x400B, "nested measurement loop")
                stack.append(here)
            elif name == "loop":
                stack.append(here)
            elif name == "endloop":
                if not (opener == "loop" or opener.startswith("meas_loop_")) or in_package:
                    raise Refused(0x400C, "endloop without a loop")
                cmd.jump = stack.pop()
                commands[cmd.jump].jump = here
            elif name == "if":
                stack.append(here)
            elif name in ("elseif", "else", "endif"):
                allowed = ("if", "elseif", "else") if name == "endif" else ("if", "elseif")
                if opener not in allowed or in_package:
                    raise Refused(0x400C, f"{name} without if")
                commands[stack.pop()].jump = here
                if name != "endif":
                    stack.append(here)
            elif name == "breakloop":
                if not any(commands[i].name == "loop" or commands[i].name.startswith("meas_loop_")
                           for i in stack):
                    raise Refused(0x400C, "breakloop outside a loop")
            elif name in ("pck_start", "pck_add", "pck_end"):
                if (name == "pck_start") == in_package:
                    raise Refused(0x401B, f"{name!r} out of sequence")
                in_package = name != "pck_end"
            commands.append(cmd)
        except Refused as exc:
            raise cmd.refuse(exc) from None
    if stack or in_package:
        raise ScriptError(len(lines) + 2, "missing endloop / endif / pck_end", 0x4018)
    return Program(commands, len(commands) if finish is None else finish)
