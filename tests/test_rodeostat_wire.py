"""The Rodeostat emulator's wire format, bounds, faults and a bounded fuzz of its JSON parser.

Raw pyserial on the emulator's pseudo-terminal: replies are compared byte for byte with what the
firmware (FW0.1.0, ArduinoJson 5.13) writes, and random bytes / random JSON must each get exactly one
firmware-style reply (``{"success":false,"message":...,"response":{...}}``) without ending the thread.
"""

from __future__ import annotations

import json
import random
import re
import time

import numpy as np
import pytest
import serial

from prclab.hardware_sims.rodeostat import (COMMANDS, MAX_LINE_BYTES, RodeostatEmulator, arduino_float,
                                            make_tests)

SAMPLE_LINE = re.compile(rb'\{"t":\d+,"v":-?[0-9.e-]+,"i":-?[0-9.e-]+(,"le":true)?\}\r\n')
FUZZ_S = 2.0
"""Seconds of each fuzz run (bounded)."""


class Resistor:
    """Output = input potential; with ``gain_A = 1e-5`` the cell is a 100 kΩ resistor."""

    n_inputs = n_outputs = 1
    dt = 1e-3

    def reset(self, seed=None) -> None:
        """Stateless."""

    def run(self, u):
        return np.asarray(u, dtype=np.float64)


@pytest.fixture
def wire():
    with RodeostatEmulator(Resistor(), gain_A=1e-5) as emu:
        with serial.Serial(emu.port, 115200, timeout=2.0) as port:
            yield emu, port


def _ask(port, line: bytes) -> bytes:
    port.write(line + b"\n")
    return port.readline()


# -- byte compatibility -------------------------------------------------------------------------------
def test_replies_are_byte_for_byte_the_firmwares(wire):
    _, port = wire
    assert _ask(port, b'{"command":"getVersion"}') == \
        b'{"success":true,"response":{"command":"getVersion","version":"FW0.1.0"}}\r\n'
    assert _ask(port, b'{"command":"frobnicate"}') == \
        b'{"success":false,"message":"command, frobnicate, not found","response":{}}\r\n'
    assert _ask(port, b'{"cmd":"getVersion"}') == \
        b'{"success":false,"message":"CommandTable: command not found","response":{}}\r\n'
    assert _ask(port, b'not json') == b'{"success":false,"message":"unable to parse json","response":{}}\r\n'
    assert _ask(port, b'{"command":"setParam","test":"cyclic","param":{"amplitude":0.25,"period":500}}') == \
        b'{"success":true,"response":{"command":"setParam","test":"cyclic","param":{"amplitude":0.25,"period":500}}}\r\n'
    # BaseTest and the test's own setParam both look for "param": the message comes twice
    assert _ask(port, b'{"command":"setParam","test":"constant"}') == \
        b'{"success":false,"message":"key param missing, key param missing","response":' \
        b'{"command":"setParam","test":"constant"}}\r\n'
    assert _ask(port, b'{"command":"setVolt","v":"one"}') == \
        b'{"success":false,"message":"unable to convert volt to float","response":{"command":"setVolt"}}\r\n'
    assert _ask(port, b'{"command":"getParam","test":"chronoamp"}') == \
        b'{"success":true,"response":{"command":"getParam","test":"chronoamp","param":{"quietValue":0,' \
        b'"quietTime":0,"step":[[1000,0.5],[1000,-0.5]]}}}\r\n'


@pytest.mark.parametrize("value, text", [(0.1, "0.1"), (1.0, "1"), (-2.5e-6, "-2.5e-6"), (123.456789, "123.4568"),
                                         (1e8, "1e8"), (1 / 3, "0.333333"), (float("nan"), "NaN")])
def test_floats_print_as_32_bit_arduinojson(value, text):
    assert arduino_float(value) == text


def test_samples_stream_at_the_period_then_the_end_marker(wire):
    _, port = wire
    assert json.loads(_ask(port, b'{"command":"setParam","test":"constant","param":{"value":0.5,"duration":200}}'))["success"]
    start = time.monotonic()
    assert json.loads(_ask(port, b'{"command":"runTest","test":"constant"}'))["response"] == \
        {"command": "runTest", "test": "constant"}
    lines = [port.readline() for _ in range(21)]
    wall = time.monotonic() - start
    assert all(SAMPLE_LINE.fullmatch(line) for line in lines[:20]) and lines[20] == b"{}\r\n"
    samples = [json.loads(line) for line in lines[:20]]
    assert [s["t"] for s in samples] == list(range(10, 201, 10))
    assert all(s["v"] == 0.5 and abs(s["i"] - 5.0) < 0.02 for s in samples[1:])
    assert 0.15 < wall < 1.5                              # 200 ms of samples, paced


def test_current_beyond_the_range_reads_at_the_rail_with_the_limit_flag(wire):
    _, port = wire
    _ask(port, b'{"command":"setCurrRange","currRange":"1uA"}')        # 0.5 V / 100 kOhm = 5 uA > 1 uA
    _ask(port, b'{"command":"setParam","test":"constant","param":{"value":0.5,"duration":50}}')
    _ask(port, b'{"command":"runTest","test":"constant"}')
    last = json.loads([port.readline() for _ in range(5)][-1])
    assert last["le"] is True and last["i"] == pytest.approx(1.0, abs=0.01)
    assert port.readline() == b"{}\r\n"


def test_stop_mid_test_replies_then_ends_the_stream(wire):
    emu, port = wire
    _ask(port, b'{"command":"setParam","test":"cyclic","param":{"numCycles":100}}')
    _ask(port, b'{"command":"runTest","test":"cyclic"}')
    time.sleep(0.1)
    port.write(b'{"command":"stopTest"}\n')
    lines = []
    while not lines or lines[-1] != b"{}\r\n":
        lines.append(port.readline())
        assert lines[-1], "no end marker after stopTest"
    replies = [json.loads(line) for line in lines if b"success" in line]
    assert replies == [{"success": True, "response": {"command": "stopTest"}}]
    assert len(lines) < 20 and emu.output()[0] is False   # auto-connect opened the switches again


def test_overlong_and_deeply_nested_lines_are_refused_and_the_next_line_works(wire):
    emu, port = wire
    refusal = b'{"success":false,"message":"unable to parse json","response":{}}\r\n'
    assert _ask(port, b'{"command":"getVersion","x":"' + b"a" * (2 * MAX_LINE_BYTES) + b'"}') == refusal
    assert _ask(port, b'{"command":"getVersion","x":' + b"[" * 500 + b"]" * 500 + b"}") == refusal
    assert _ask(port, b'{"command":"getVersion","x":' + b"[" * 1500) == refusal
    assert _ask(port, b"") == refusal                     # an empty line is an empty JSON message
    assert json.loads(_ask(port, b'{"command":"getVariant"}'))["response"]["variant"] == "10V_microAmpV0.2"
    assert emu.internal_errors == []


@pytest.mark.parametrize("fault", ["garbage", "drop"])
def test_injected_faults_spoil_one_sample_of_the_next_test(wire, fault):
    emu, port = wire
    _ask(port, b'{"command":"setParam","test":"constant","param":{"duration":100}}')
    emu.inject(fault)
    _ask(port, b'{"command":"runTest","test":"constant"}')
    lines = []
    while not lines or lines[-1] != b"{}\r\n":
        lines.append(port.readline())
        assert lines[-1]
    good = [line for line in lines[:-1] if SAMPLE_LINE.fullmatch(line)]
    assert len(good) == 9 and len(lines) == (11 if fault == "garbage" else 10)


def test_unplug_closes_the_port_and_stall_stops_answering():
    with RodeostatEmulator(Resistor()) as emu, serial.Serial(emu.port, 115200, timeout=0.5) as port:
        emu.inject("stall")
        assert _ask(port, b'{"command":"getVersion"}') == b""
        emu.inject("unplug")
        time.sleep(0.2)
        assert not emu.serving
        with pytest.raises(serial.SerialException):
            _ask(port, b'{"command":"getVersion"}')


# -- fuzz (bounded time) --------------------------------------------------------------------------------
def _check_reply(line: bytes) -> dict:
    assert line.endswith(b"\r\n"), f"no reply line: {line[:80]!r}"
    reply = json.loads(line)
    assert list(reply)[0] == "success" and list(reply)[-1] == "response" and isinstance(reply["response"], dict)
    assert reply["success"] or isinstance(reply["message"], str) and reply["message"]
    return reply


def test_random_bytes_get_one_firmware_style_refusal_per_line(wire):
    emu, port = wire
    rng = random.Random(7)
    deadline, lines = time.monotonic() + FUZZ_S, 0
    while time.monotonic() < deadline:
        junk = bytes(rng.choice([b for b in range(256) if b != 0x0A]) for _ in range(rng.randrange(0, 300)))
        reply = _check_reply(_ask(port, junk))
        assert not reply["success"] or junk.lstrip().startswith(b"{")
        lines += 1
    assert lines > 50 and emu.serving and emu.internal_errors == []


def _random_value(rng: random.Random, depth: int = 0):
    kinds = ["int", "float", "str", "bool", "null", "neg"] + (["list", "dict"] if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "list":
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == "dict":
        return {rng.choice(KEYS): _random_value(rng, depth + 1) for _ in range(rng.randrange(4))}
    return {"int": rng.randrange(0, 1 << 34), "neg": -rng.randrange(1 << 33), "float": rng.uniform(-20, 20),
            "str": rng.choice(["1V", "10uA", "cyclic", "", "ü", "x" * 30]), "bool": rng.random() < 0.5,
            "null": None}[kind]


KEYS = ["test", "param", "v", "voltRange", "currRange", "deviceId", "samplePeriod", "connected", "autoConnect",
        "muxEnabled", "muxChannel", "quietValue", "quietTime", "amplitude", "offset", "period", "numCycles",
        "shift", "value", "duration", "startValue", "finalValue", "stepValue", "pulseValue", "window", "step"]


def test_random_json_requests_get_firmware_style_replies(wire):
    """Every command but runTest / stopTest (which stream) with random keys and value types."""
    emu, port = wire
    rng = random.Random(11)
    names = [name for name in COMMANDS if name not in ("runTest", "stopTest")]
    tests = list(make_tests()) + ["nope", 3]
    deadline, seen = time.monotonic() + FUZZ_S, set()
    while time.monotonic() < deadline:
        msg = {"command": rng.choice(names + ["", "bogus", 5])}
        if rng.random() < 0.8:
            msg["test"] = rng.choice(tests)
        for key in rng.sample(KEYS, rng.randrange(4)):
            msg[key] = _random_value(rng)
        if rng.random() < 0.5:
            msg["param"] = {key: _random_value(rng) for key in rng.sample(KEYS[11:], rng.randrange(5))}
        reply = _check_reply(_ask(port, json.dumps(msg).encode()))
        seen.add(reply["success"])
        if isinstance(msg["command"], str) and msg["command"] in COMMANDS:
            assert reply["response"].get("command") == msg["command"]
    assert seen == {True, False} and emu.serving and emu.internal_errors == []
    # the instrument is still usable: a short test runs to its end marker
    _ask(port, b'{"command":"setSamplePeriod","samplePeriod":10}')
    _ask(port, b'{"command":"setParam","test":"constant","param":{"quietTime":0,"value":0.1,"duration":50}}')
    assert _check_reply(_ask(port, b'{"command":"runTest","test":"constant"}'))["success"]
    lines = [port.readline() for _ in range(6)]
    assert lines[-1] == b"{}\r\n" and all(SAMPLE_LINE.fullmatch(line) for line in lines[:-1])


def test_random_command_sequences_with_tests_streaming_keep_the_protocol(wire):
    """Random commands, runTest and stopTest included, while samples stream: every request gets exactly
    one reply among the sample lines, every line is a reply, a sample or the end marker."""
    emu, port = wire
    rng = random.Random(5)
    any_sample = re.compile(rb'\{"t":\d+,"v":-?[0-9.e-]+,"i":(-?[0-9.e-]+|NaN)(,"le":true)?\}\r\n')
    names = list(COMMANDS) + ["runTest"] * 6 + ["stopTest"] * 3
    deadline, kinds = time.monotonic() + FUZZ_S, {"reply": 0, "sample": 0, "end": 0}
    while time.monotonic() < deadline:
        msg = {"command": rng.choice(names), "test": rng.choice(list(make_tests()))}
        for key in rng.sample(KEYS, rng.randrange(3)):
            msg[key] = _random_value(rng)
        port.write(json.dumps(msg).encode() + b"\n")
        while True:
            line = port.readline()
            if any_sample.fullmatch(line):
                kinds["sample"] += 1
            elif line == b"{}\r\n":
                kinds["end"] += 1
            else:
                assert _check_reply(line)["response"].get("command") == msg["command"]
                kinds["reply"] += 1
                break
    port.write(b'{"command":"stopTest"}\n')
    time.sleep(0.2)
    port.reset_input_buffer()
    assert _ask(port, b'{"command":"getVersion"}').startswith(b'{"success":true')
    assert kinds["sample"] > 0 and kinds["end"] > 0 and emu.internal_errors == []
