"""Fuzzing the MethodSCRIPT lexer, parser and interpreter: random bytes and near-valid scripts.

The near-valid scripts are PalmSens' example scripts (as in ``test_methodscript_vendor_scripts``)
with lines deleted, duplicated, swapped or inserted and tokens replaced by numbers (huge, negative,
decimal, SI-prefixed, hexadecimal), names, variable types or random bytes.  Every script must end in
exactly one of: refused before running (one ``e!XXXX: Line L, Col C`` with a documented code), run
to its end with well-formed output, or stopped by one run-time error ``!XXXX: Line L`` (documented
code) followed only by the terminators of the loops it closes.  Bounded: a fixed number of examples,
each under a deadline (a hang fails it).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prclab.hardware_sims.methodscript_lang import ERROR_CODES, ScriptError
from prclab.hardware_sims.methodscript_run import Cell, run_script
from prclab.hardware_sims.potentiostat import MethodScriptEmulator, interpret
from prclab.reservoir import make_substrate
from test_methodscript_vendor_scripts import (CA_LOOP_EXAMPLE, CV_PYTHON_EXAMPLE, DPV_LOOP_EXAMPLE,
                                              EIS_LOOP_EXAMPLE, LSV_LOOP_EXAMPLE, OCP_LOOP_EXAMPLE,
                                              SWV_PYTHON_EXAMPLE, Client, parse_output)

EXAMPLES = [s.strip("\n").split("\n") for s in (
    CA_LOOP_EXAMPLE, CV_PYTHON_EXAMPLE.format(nscans=" nscans(2)"), LSV_LOOP_EXAMPLE,
    DPV_LOOP_EXAMPLE, SWV_PYTHON_EXAMPLE, OCP_LOOP_EXAMPLE, EIS_LOOP_EXAMPLE)]
RUNTIME_ERROR = re.compile(r"!([0-9A-F]{4}): Line (\d+)\Z")
REFUSAL = re.compile(r"!([0-9A-F]{4}): Line (\d+), Col (\d+)\Z")
TERMINATORS = ("*", "-", "+")

_TOKENS = st.one_of(
    st.sampled_from(["0", "-0", "1.5", "1e3", "100m", "-2", "2001m", "-1701m", "1u", "1n", "0i",
                     "11i", "0x1F", "0b101", "0xZZ", "9" * 40, "1000000000000000000", "5E", "nan",
                     "p", "c", "potential", "undeclared", "ba", "da", "zz", "<", "==", "nscans(0)",
                     "nscans(3)", "#", '"text"', "endloop", "pck_end", "meas_loop_ca", "on_finished:"]),
    st.integers(-10**12, 10**12).map(str),
    st.text(st.characters(min_codepoint=0, max_codepoint=255), min_size=1, max_size=4))


@st.composite
def near_valid(draw) -> list[str]:
    lines = list(draw(st.sampled_from(EXAMPLES)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "insert", "token", "token"]))
        k = draw(st.integers(0, len(lines) - 1)) if lines else 0
        if not lines:
            lines.append(draw(_TOKENS))
        elif op == "delete":
            del lines[k]
        elif op == "duplicate":
            lines.insert(k, lines[k])
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[k], lines[j] = lines[j], lines[k]
        elif op == "insert":
            lines.insert(k, " ".join(draw(st.lists(_TOKENS, min_size=1, max_size=5))))
        else:
            words = lines[k].split()
            if words:  # mostly an argument, sometimes the command
                words[draw(st.integers(min(1, len(words) - 1), len(words) - 1)) if draw(st.booleans())
                      else 0] = draw(_TOKENS)
                lines[k] = " ".join(words)
    return [line for line in lines if line.strip() and "\n" not in line]


RANDOM_BYTES = st.binary(max_size=600).map(
    lambda b: [line for line in b.decode("latin-1").split("\n") if line.strip()])

_substrate = make_substrate("esn", 1, dt=1e-3)
_tally = {"refused": 0, "ran": 0, "stopped": 0, "codes": set()}


def _outcome(lines: list[str]) -> str:
    """Run one script body through the parser and the interpreter; assert the outcome is one of the
    three allowed; returns which."""
    try:
        program = interpret(lines)
    except ScriptError as exc:
        m = REFUSAL.match(exc.reply)
        assert m and exc.code in ERROR_CODES, exc.reply
        assert 2 <= exc.line_no <= len(lines) + 2 and exc.col >= 1
        _tally["codes"].add(exc.code)
        return "refused"
    _substrate.reset(0)
    out, _ = run_script(program, Cell(_substrate, 1e-4))
    texts = [text for _, text, _ in out]
    errors = [k for k, text in enumerate(texts) if text.startswith("!")]
    if not errors:
        parse_output(texts)  # well-formed framing, no empty package
        return "ran"
    (k,) = errors[:1]
    m = RUNTIME_ERROR.match(texts[k]) or re.fullmatch(r"!(0010)", texts[k])
    assert m and int(m.group(1), 16) in ERROR_CODES, texts[k]
    assert all(t in TERMINATORS for t in texts[k + 1:]), texts[k:]
    _tally["codes"].add(int(m.group(1), 16))
    return "stopped"


@settings(max_examples=200, deadline=20000, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(st.one_of(near_valid(), RANDOM_BYTES))
def test_parser_and_interpreter_survive_near_valid_scripts_and_random_bytes(lines):
    _tally[_outcome(lines)] += 1


def test_the_fuzz_reached_every_outcome():
    """The fuzz above must have exercised refusals, runs and stops.  It runs here first when this test
    runs on its own (or on another pytest-xdist worker than the fuzz): derandomized, the same draws."""
    if sum(_tally[k] for k in ("refused", "ran", "stopped")) < 200:
        test_parser_and_interpreter_survive_near_valid_scripts_and_random_bytes()
    assert _tally["refused"] and _tally["ran"] and _tally["stopped"], _tally
    assert {0x4001, 0x4039, 0x420B}.issubset(_tally["codes"]), " ".join(sorted(f"{c:04X}" for c in _tally["codes"]))
    print(f"\nfuzz outcomes: {_tally}")


@pytest.fixture(scope="module")
def emulator():
    emu = MethodScriptEmulator(make_substrate("esn", 1, dt=1e-3), pace=False).start()
    client = Client(emu.port, timeout_s=30.0)  # a script of many points takes seconds to compute
    yield emu, client
    client.close()
    emu.close()


@settings(max_examples=40, deadline=20000, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(near_valid())
def test_over_the_pty_each_script_gets_one_error_line_or_its_output(emulator, lines):
    emu, client = emulator
    reply, echo = client.run("\n".join(lines))
    if echo != "e":
        assert reply == [] and echo.startswith("e") and REFUSAL.match(echo[1:]), echo
        assert int(echo[2:6], 16) in ERROR_CODES
    else:
        errors = [line for line in reply if line.startswith("!")]
        assert len(errors) <= 1
    assert emu.serving and emu.internal_errors == []
    assert client.abort_and_sync() == ["Z!0006"]  # idle again after every script
