"""The MethodSCRIPT emulator survives hostile peers: fuzzed bytes over its pty, through pyserial.

Issue 10 ("Drivers and peers"): one non-ASCII byte killed the serving thread (50 of 60 random chunks
did), so did a 1e18 s loop, and a script without its terminating empty line was buffered without
bound.  Here every chunk is followed by the resynchronisation PalmSens' own example client uses
(newlines to flush a partial command, ``Z`` to abort), then ``t``: the emulator must answer the
version query correctly after every chunk, every reply line must be in MethodSCRIPT's form, and the
bytes it holds must stay within :data:`MAX_LINE_CHARS` + :data:`MAX_SCRIPT_BYTES`.
"""

from __future__ import annotations

import os
import re
import threading
import time

import numpy as np
import pytest
import serial
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prclab.hardware_sims.potentiostat import (ERROR_CODES, MAX_LINE_CHARS, MAX_REPLY_BACKLOG,
                                        MAX_SCRIPT_BYTES, VERSION_REPLY, MethodScriptEmulator,
                                        ScriptError, interpret)
from prclab.reservoir import make_substrate

VERSION = VERSION_REPLY.splitlines()
ERROR_LINE = re.compile(r"[ -~]?!([0-9A-F]{4})(: Line (\d+)(, Col (\d+))?)?\Z")
MAX_HELD_BYTES = MAX_LINE_CHARS + 2 + MAX_SCRIPT_BYTES  # a line (+CR, +1) and a script


def _substrate():
    return make_substrate("potato", 1, dt=1e-3, gain_V=1.0)


class _Peer:
    """A pyserial client on the emulator's pty that reads reply lines with a deadline."""

    def __init__(self, port: str):
        self.port = serial.Serial(port, 230400, timeout=0.05)
        self.port.reset_input_buffer()
        self._pending = b""

    def send(self, data: bytes) -> None:
        self.port.write(data)
        self.port.flush()

    def lines_until(self, want: list[str], timeout_s: float = 3.0) -> list[str]:
        """Reply lines up to and including the consecutive lines ``want``; fails after ``timeout_s``."""
        got: list[str] = []
        deadline = time.monotonic() + timeout_s
        while got[-len(want):] != want:
            if b"\n" not in self._pending:
                assert time.monotonic() < deadline, f"no {want!r} within {timeout_s} s; got {got[-5:]!r}"
                self._pending += self.port.read(4096)
                continue
            line, _, self._pending = self._pending.partition(b"\n")
            got.append(line.decode("ascii"))  # a non-ASCII reply byte fails here
        return got

    def close(self) -> None:
        self.port.close()


@pytest.fixture
def peer():
    emu = MethodScriptEmulator(_substrate(), seed=1).start()
    client = _Peer(emu.port)
    try:
        yield emu, client
    finally:
        client.close()
        emu.close()


def _resync_and_identify(emu, client) -> list[str]:
    """Flush, abort, ask ``t``; returns the reply lines that came before the version reply, without
    the abort's acknowledgement (``Z!0006`` idle, ``Z`` mid-script)."""
    client.send(b"\n\n\nZ\nt\n")
    lines = client.lines_until(VERSION)
    assert emu.serving, "the serving thread died"
    acks = [k for k, line in enumerate(lines) if line in ("Z", "Z!0006")]
    assert acks, f"no reply to Z in {lines[-5:]!r}"
    return lines[:acks[-1]] + lines[acks[-1] + 1:-2]


def _error_codes(lines: list[str]) -> list[int]:
    """The error codes in ``lines``; asserts every line is a MethodSCRIPT reply the emulator sends."""
    codes = []
    for line in lines:
        m = ERROR_LINE.match(line)
        if m:
            codes.append(int(m.group(1), 16))
        else:  # a script that ran: echo, loop markers, data lines, end of script
            assert (line in ("e", "*", "+", "-", "L", "") or line.startswith(("P", "T"))
                    or re.fullmatch(r"[MC][0-9A-F]{4}", line)), line
    assert all(code in ERROR_CODES for code in codes), codes
    return codes


# -- the defects, one by one ---------------------------------------------------------------------
def test_one_non_ascii_byte_is_an_error_reply_not_a_dead_thread(peer):
    emu, client = peer
    client.send(b"\xe9\n")
    assert _error_codes(_resync_and_identify(emu, client)) == [0x0003]
    client.send(b"e\nvar p\xff\n\n")  # inside a script: unexpected character, line 2 col 5
    lines = _resync_and_identify(emu, client)
    assert lines == ["e!4004: Line 2, Col 5"]
    assert emu.internal_errors == []


def test_absurd_loop_duration_is_refused_with_an_error_code(peer):
    emu, client = peer
    script = (b"e\nvar p\nvar c\nmeas_loop_ca p c 0 1 1000000000000000000\n"
              b"pck_start\npck_add p\npck_add c\npck_end\nendloop\n\n")
    start = time.monotonic()
    client.send(script)
    assert client.lines_until(["e!4205: Line 4, Col 22"]) == ["e!4205: Line 4, Col 22"]
    assert time.monotonic() - start < 1.0
    assert emu.scripts_run == 0 and emu.serving
    _resync_and_identify(emu, client)


def test_unterminated_script_is_bounded_refused_and_discarded(peer):
    emu, client = peer
    client.send(b"e\n")
    sent = 0
    while sent < 4 * MAX_SCRIPT_BYTES:  # 256 KiB of script lines, never the empty line
        client.send(b"set_e 100m\n" * 1000)
        sent += 11_000
    lines = client.lines_until([f"e!4005: Line {MAX_SCRIPT_BYTES // 11 + 2}, Col 1"])
    assert len(lines) == 1
    assert emu.max_buffered_bytes <= MAX_HELD_BYTES
    assert _error_codes(_resync_and_identify(emu, client)) == []  # the rest of it was skipped
    assert emu.scripts_run == 0


def test_overlong_line_is_refused_and_its_rest_discarded(peer):
    emu, client = peer
    client.send(b"t" * 10_000 + b"\n")  # not a version query: one error, nothing from its tail
    assert _error_codes(_resync_and_identify(emu, client)) == [0x0008]
    assert emu.max_buffered_bytes <= MAX_LINE_CHARS + 2


def test_unread_error_replies_do_not_grow_without_bound(peer):
    emu, client = peer
    client.send(b"?\n" * 200_000)  # 200k error replies nobody reads
    time.sleep(0.5)
    assert emu.serving and emu.replies_dropped > 0
    assert emu._due_bytes + len(emu._out) <= MAX_REPLY_BACKLOG + 16
    client.port.reset_input_buffer()
    client._pending = b""
    _resync_and_identify(emu, client)


class _NaNSubstrate:
    """A one-input substrate whose output turns NaN (no real model does on purpose: a test double)."""

    n_inputs = n_outputs = 1
    dt = 1e-3

    def reset(self, seed=None):
        pass

    def run(self, u):
        y = np.zeros_like(u)
        y[:, 2:] = np.nan
        return y


def test_non_finite_current_stops_the_script_with_0010():
    with MethodScriptEmulator(_NaNSubstrate(), pace=False) as emu:
        client = _Peer(emu.port)
        try:
            loop = b"meas_loop_ca p c 0 1m 1m\npck_start\npck_add p\npck_add c\npck_end\nendloop\n"
            client.send(b"e\nvar p\nvar c\ncell_on\n" + loop * 4 + b"\n")
            lines = client.lines_until(["!0010", "*", ""])
            # the third loop's package is replaced by the error; its loop is closed, nothing follows
            assert lines[0] == "e" and sum(line.startswith("P") for line in lines) == 2
            assert lines[-4:] == ["M0007", "!0010", "*", ""]
            assert emu.internal_errors == [] and emu.serving
        finally:
            client.close()


@pytest.mark.parametrize("body, code, line, col", [
    (["var p", "frobnicate 1"], 0x4001, 3, 1),
    (["var p", "var p"], 0x4026, 3, 5),
    (["set_e 5"], 0x000F, 2, 7),
    (["set_e 1x"], 0x4039, 2, 7),
    (["set_e " + "9" * 5000], 0x4039, 2, 7),
    (["var p", "var c", "meas_loop_ca p c 0 0 1"], 0x4204, 4, 20),
    (["var p", "var c", "meas_loop_ca p c 0 1u 1000"], 0x4205, 4, 23),
    (["var p", "meas_loop_ca p q 0 1m 1m"], 0x420B, 3, 16),
    (["var p", "var c", "meas_loop_ca p c 0 1m 1m", "pck_end"], 0x401B, 5, 1),
    (["var p", "var c", "meas_loop_ca p c 0 1m 1m"], 0x4018, 5, 1),
    (["var p", "var c", "meas_loop_ca p c 0 1m 1m", "meas_loop_ca p c 0 1m 1m"], 0x400B, 5, 1),
])
def test_script_errors_carry_the_manuals_code_line_and_column(body, code, line, col):
    with pytest.raises(ScriptError) as info:
        interpret(body)
    assert (info.value.code, info.value.line_no, info.value.col) == (code, line, col)
    assert info.value.reply == f"!{code:04X}: Line {line}, Col {col}"


# -- fuzz ----------------------------------------------------------------------------------------
_WORDS = ["e", "t", "Z", "var", "p", "c", "set_e", "cell_on", "cell_off", "meas_loop_ca", "pck_start",
          "pck_add", "pck_end", "endloop", "on_finished:", "set_range", "ba", "da", "#", "!", "\r"]
_NUMBERS = st.one_of(
    st.integers(-10**30, 10**30).map(str),
    st.sampled_from(["1e18", "1000000000000000000", "-0", "nan", "inf", "1" + "0" * 400, "5E", "1m",
                     "1u", "-1700m", "2001m"]),
    st.tuples(st.integers(-10**6, 10**6), st.sampled_from(list("afpnumkMGTPE") + [""])).map(
        lambda t: f"{t[0]}{t[1]}"))
_TOKEN = st.one_of(st.sampled_from(_WORDS), _NUMBERS,
                   st.binary(min_size=1, max_size=4).map(lambda b: b.decode("latin-1")))
_LINE = st.lists(_TOKEN, max_size=8).map(" ".join)
_SCRIPTISH = st.tuples(st.booleans(), st.lists(_LINE, max_size=12), st.booleans()).map(
    lambda t: ("e\n" if t[0] else "") + "\n".join(t[1]) + ("\n\n" if t[2] else ""))
_LOOP = st.tuples(_NUMBERS, _NUMBERS, _NUMBERS, st.booleans()).map(
    lambda t: (f"e\nvar p\nvar c\nset_e {t[0]}\ncell_on\nmeas_loop_ca p c {t[0]} {t[1]} {t[2]}\n"
               "pck_start\npck_add p\npck_add c\npck_end\nendloop\non_finished:\ncell_off\n"
               + ("\n" if t[3] else "")).encode("ascii"))
_CHUNKS = st.one_of(
    st.binary(max_size=400),                                             # raw bytes, any value
    _LOOP,                                                               # huge, odd, absent numbers
    _SCRIPTISH.map(lambda s: s.encode("latin-1")),                       # scripts, maybe unterminated
    st.tuples(st.sampled_from([b"x", b"\xff", b"set_e 1 "]), st.integers(200, 3000)).map(
        lambda t: t[0] * t[1]),                                          # long lines, no newline
    st.integers(1, 80).map(lambda k: b"e\n" + b"var p\n" * (1000 * k)),  # scripts up to 480 kB
)

FUZZ_CHUNKS = 150
_tally = {"chunks": 0, "codes": set(), "max_held": 0}


def test_fuzzed_chunks_never_kill_the_thread_and_buffers_stay_bounded(peer):
    emu, client = peer

    @settings(max_examples=FUZZ_CHUNKS, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(_CHUNKS)
    def one_chunk(chunk):
        client.send(chunk)
        codes = _error_codes(_resync_and_identify(emu, client))
        assert emu.internal_errors == [], emu.internal_errors
        assert emu.max_buffered_bytes <= MAX_HELD_BYTES
        _tally["chunks"] += 1
        _tally["codes"].update(codes)

    one_chunk()
    assert _tally["chunks"] >= 100  # hypothesis ran the bounded budget
    assert {0x0003, 0x4001, 0x4039}.issubset(_tally["codes"])  # the fuzz reached the error paths
    print(f"\nfuzz: {_tally['chunks']} chunks, thread alive after each, max held "
          f"{emu.max_buffered_bytes} B (bound {MAX_HELD_BYTES}), codes "
          f"{sorted(f'{c:04X}' for c in _tally['codes'])}")


# -- lifecycle -----------------------------------------------------------------------------------
def _emulator_threads():
    return [t for t in threading.enumerate() if t.name == MethodScriptEmulator.thread_name]


def test_close_releases_thread_and_pty_when_no_client_ever_connected():
    before = len(_emulator_threads())
    emu = MethodScriptEmulator(_substrate())
    emu.close()  # before start: a no-op
    emu.start()
    emu.start()  # idempotent while serving: no second pty or thread
    port = emu.port
    assert os.path.exists(port) and len(_emulator_threads()) == before + 1
    emu.close()
    emu.close()  # idempotent
    assert not os.path.exists(port)  # both sides closed: the pty is gone
    assert not emu.serving and len(_emulator_threads()) == before
    with emu:  # startable again after close
        client = _Peer(emu.port)
        try:
            client.send(b"t\n")
            client.lines_until(VERSION)
        finally:
            client.close()
    assert len(_emulator_threads()) == before


def test_failed_start_leaves_no_pty(monkeypatch):
    """A start that fails half-way (here: the thread cannot start) closes the pty it opened."""
    emu = MethodScriptEmulator(_substrate())
    opened = []
    real_openpty = os.openpty

    def openpty():
        fds = real_openpty()
        opened.append(os.ttyname(fds[1]))
        return fds

    def refuse(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(os, "openpty", openpty)
    monkeypatch.setattr(threading.Thread, "start", refuse)
    with pytest.raises(RuntimeError):
        emu.start()
    monkeypatch.undo()
    assert opened and not os.path.exists(opened[0]) and not emu.serving
    emu.close()
