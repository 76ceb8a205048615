"""PalmSens' own MethodSCRIPT example scripts, run against the emulator as a lab would run them.

The scripts follow PalmSens' published examples (``MethodSCRIPT_Examples``: the measurement-loop
examples CA, CV, LSV, DPV, SWV, OCP, EIS and the Python example's CV / CV-nscans / advanced SWV
scripts), sent unchanged over pyserial to the emulator's pty as PalmSens' Python example client does
(``e`` + script + empty line; ``t``, ``v``, ``i``; abort-and-sync: a newline, ``Z``, read up to a
line starting with ``Z``, then to the empty line if a script was running).  The replies are parsed by
the small parser below, written from the documented output format (``M``/``C``/``L`` open a
measurement loop / scan / loop, ``*``/``-``/``+`` close it; ``P`` + ``;``-separated variables: a
two-letter type, 7 hex digits offset by 2^27, an SI prefix or ``i``; metadata ``,1S`` status and
``,2RR`` current range) - not prclab's driver.
"""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
import serial

from prclab.hardware_sims.methodscript_run import LOW_SPEED_RANGES, Randles
from prclab.hardware_sims.potentiostat import MethodScriptEmulator
from prclab.reservoir import make_substrate

PREFIX = {"a": 1e-18, "f": 1e-15, "p": 1e-12, "n": 1e-9, "u": 1e-6, "m": 1e-3, " ": 1.0,
          "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18, "i": 1}
CLOSES = {"M": "*", "C": "-", "L": "+"}
ERROR = re.compile(r".?!([0-9A-F]{4})(: Line (\d+)(, Col (\d+))?)?\Z")


# -- the documented output format, parsed ----------------------------------------------------------
def decode(field: str):
    """``ttHHHHHHHp[,meta...]`` -> (type, value, {"status": s, "range": r})."""
    head, *meta = field.split(",")
    assert len(head) == 10 and head[9] in PREFIX, field
    raw = int(head[2:9], 16) - (1 << 27)
    value = raw if head[9] == "i" else raw * PREFIX[head[9]]
    info = {}
    for m in meta:
        if len(m) == 2 and m[0] == "1":
            info["status"] = int(m[1], 16)
        elif len(m) == 3 and m[0] == "2":
            info["range"] = int(m[1:], 16)
    return head[:2], value, info


def parse_output(lines: list[str]) -> list[dict]:
    """Reply lines (after the ``e`` echo, before the empty line) -> the loops at the top level:
    ``{"head": "M0005", "items": [packages and nested loops]}``; a package is a list of decoded
    variables; ``T`` lines are kept as ``("text", ...)``.  Asserts the nesting is well formed."""
    root = {"head": "", "items": []}
    stack = [root]
    for line in lines:
        if line[:1] in CLOSES and (len(line) == 1 if line == "L" else re.fullmatch(r"[MC][0-9A-F]{4}", line)):
            node = {"head": line, "items": []}
            stack[-1]["items"].append(node)
            stack.append(node)
        elif line in ("*", "-", "+"):
            assert len(stack) > 1 and CLOSES[stack[-1]["head"][0]] == line, (line, stack[-1]["head"])
            stack.pop()
        elif line.startswith("P"):
            assert len(line) > 1, "empty package"
            stack[-1]["items"].append([decode(f) for f in line[1:].split(";")])
        elif line.startswith("T"):
            stack[-1]["items"].append(("text", line[1:]))
        else:
            raise AssertionError(f"unexpected reply line {line!r}")
    assert len(stack) == 1, "loops left open"
    return root["items"]


def packages(loop: dict) -> list[list]:
    """All packages inside ``loop``, scans included, in order."""
    out = []
    for item in loop["items"]:
        if isinstance(item, dict):
            out += packages(item)
        elif isinstance(item, list):
            out.append(item)
    return out


def column(loop: dict, k: int) -> np.ndarray:
    return np.array([p[k][1] for p in packages(loop)], dtype=float)


# -- a client as PalmSens' example drives the instrument --------------------------------------------
class Client:
    def __init__(self, port: str, timeout_s: float = 2.0):
        self.port = serial.Serial(port, 230400, timeout=timeout_s)

    def readline(self) -> str:
        raw = self.port.readline()
        assert raw.endswith(b"\n"), f"no complete line within {self.port.timeout} s (got {raw!r})"
        return raw.decode("ascii")[:-1]

    def ask(self, command: str) -> str:
        self.port.write(command.encode("ascii") + b"\n")
        return self.readline()

    def run(self, script: str) -> tuple[list[str], str]:
        """Send ``e`` + script + empty line; returns (lines up to the empty line, the echo)."""
        self.port.write(b"e\n" + script.strip("\n").encode("latin-1") + b"\n\n")
        echo = self.readline()
        if echo != "e":
            return [], echo
        lines = []
        while (line := self.readline()) != "":
            lines.append(line)
        return lines, echo

    def abort_and_sync(self) -> list[str]:
        """PalmSens' resynchronisation: a newline, ``Z``, read to the ``Z`` reply (and to the empty
        line if a script was running).  Returns the lines read after the ``Z`` reply."""
        self.port.write(b"\nZ\n")
        while not (reply := self.readline()).startswith("Z"):
            pass
        rest = []
        if reply == "Z":
            while (line := self.readline()) != "":
                rest.append(line)
        else:
            assert reply == "Z!0006"
        return [reply] + rest

    def close(self):
        self.port.close()


def _potato():
    return make_substrate("potato", 1, dt=1e-3, gain_V=1.0)


@pytest.fixture
def fast():
    """An emulator that sends a script's replies as soon as they are computed (pace off)."""
    emu = MethodScriptEmulator(_potato(), seed=2, pace=False).start()
    client = Client(emu.port)
    yield emu, client
    client.close()
    emu.close()


@pytest.fixture
def paced():
    emu = MethodScriptEmulator(_potato(), seed=2).start()
    client = Client(emu.port)
    yield emu, client
    client.close()
    emu.close()


# -- the example scripts ---------------------------------------------------------------------------
CV_PYTHON_EXAMPLE = """
var c
var p
set_pgstat_mode 2
set_max_bandwidth 40
set_range ba 100u
set_autoranging ba 1n 100u
set_e 0m
cell_on
meas_loop_ca p c 0m 100m 3
endloop
meas_loop_cv p c 0m 500m -500m 10m 100m{nscans}
	pck_start
	pck_add p
	pck_add c
	pck_end
endloop
on_finished:
cell_off
"""

CA_LOOP_EXAMPLE = """
var potential
var current
var dc_potential
var time_interval
var time_run
var t
store_var dc_potential 100m ja
store_var time_interval 100m ja
store_var time_run 2 ja
set_pgstat_chan 0
set_pgstat_mode 2
set_max_bandwidth 60
set_range_minmax da dc_potential dc_potential
set_range ba 100u
set_autoranging ba 50n 2m
set_e dc_potential # potential when cell turns on
cell_on
timer_start
meas_loop_ca potential current dc_potential time_interval time_run
    timer_get t
    pck_start
    pck_add t
    # pck_add potential
    pck_add current
    pck_end
endloop
on_finished:
    cell_off
"""

LSV_LOOP_EXAMPLE = """
var potential
var current
var sweep_begin
var sweep_end
var step_size
var scan_rate
store_var sweep_begin -500m ja
store_var sweep_end 500m ja
store_var step_size 10m ja
store_var scan_rate 100m ja
set_pgstat_chan 0
set_pgstat_mode 3
set_max_bandwidth 60
set_range_minmax da sweep_begin sweep_end
set_range ba 30u
set_autoranging ba 50n 2m
set_e sweep_begin # potential when cell turns on
cell_on
meas_loop_lsv potential current sweep_begin sweep_end step_size scan_rate
    pck_start
    pck_add potential
    pck_add current
    pck_end
endloop
on_finished:
    cell_off
"""

DPV_LOOP_EXAMPLE = """
var potential
var current
var scan_begin
var scan_end
var step_size
var pulse_potential
var pulse_time
var scan_rate
store_var scan_begin -500m ja
store_var scan_end 500m ja
store_var step_size 10m ja
store_var pulse_potential 20m ja
store_var pulse_time 5m ja
store_var scan_rate 100m ja
set_pgstat_chan 0
set_pgstat_mode 3
set_max_bandwidth 1200
set_range_minmax da scan_begin scan_end
set_range ba 12u
set_autoranging ba 50n 2m
set_e scan_begin
cell_on
meas_loop_dpv potential current scan_begin scan_end step_size pulse_potential pulse_time scan_rate
    pck_start
    pck_add potential
    pck_add current
    pck_end
endloop
on_finished:
    cell_off
"""

SWV_PYTHON_EXAMPLE = """
var c
var p
var f
var r
var i
store_var i 0i ja
set_pgstat_chan 0
set_pgstat_mode 2
set_max_bandwidth 40
set_range_minmax da -300m 400m
set_range ba 100u
set_autoranging ba 1n 100u
cell_on
meas_loop_ca p c -300m 100m 2
endloop
meas_loop_swv p c f r -300m 300m 5m 50m 5
	pck_start
	pck_add p
	pck_add c
	pck_add f
	pck_add r
	pck_end
endloop
on_finished:
cell_off
"""

OCP_LOOP_EXAMPLE = """
var potential
var interval
var time
var t
store_var interval 100m ja
store_var time 2100m ja
set_pgstat_chan 0
set_pgstat_mode 3
set_max_bandwidth 60
set_range ab 4
set_autoranging ab 4 4
set_range ba 2m
set_autoranging ba 2m 2m
cell_off                            # it is important to have the cell off during OCP
timer_start
meas_loop_ocp potential interval time
    timer_get t
    pck_start
    pck_add t
    pck_add potential
    pck_end
endloop
on_finished:
    cell_off
"""

EIS_LOOP_EXAMPLE = """
var frequency
var z_real
var z_imaginary
var amplitude
var frequency_start
var frequency_end
var points
var dc_potential
store_var amplitude 10m ja
store_var frequency_start 100k ja
store_var frequency_end 100 ja
store_var points 11i ja
store_var dc_potential 200m ja
set_pgstat_chan 0
set_pgstat_mode 3
set_max_bandwidth 1M
set_range_minmax da dc_potential dc_potential
set_range ba 2u
set_autoranging ba 500n 2m
set_range ab 4
set_autoranging ab 4 4
set_e dc_potential
cell_on
meas_loop_eis frequency z_real z_imaginary amplitude frequency_start frequency_end points dc_potential
    pck_start
    pck_add frequency
    pck_add z_real
    pck_add z_imaginary
    pck_end
endloop
on_finished:
    cell_off
"""


# -- identification and abort ----------------------------------------------------------------------
def test_identification_sequence_as_the_example_client_reads_it(fast):
    emu, client = fast
    first = client.ask("t")
    second = client.readline()
    assert first.startswith("t") and second.endswith("*")
    firmware = (first + " " + second)[1:-1]
    assert firmware[:6] == "espico"  # the prefix PalmSens' clients map to "EmStat Pico"
    assert re.fullmatch(r"v\d\d\.\d\d\.\d\d", client.ask("v"))
    assert client.ask("i") == f"i{emu.serial}"
    assert client.abort_and_sync() == ["Z!0006"]  # nothing running
    assert client.ask("q") == "q!0003"            # an unknown command: its letter and the code


def test_abort_mid_script_closes_the_loop_and_ends_the_reply(paced):
    emu, client = paced
    client.port.write(b"e\n" + CA_LOOP_EXAMPLE.strip().encode() + b"\n\n")
    assert client.readline() == "e"
    assert client.readline() == "M0007"
    start = time.monotonic()
    first = client.readline()                     # the first point, 100 ms into the loop
    assert first.startswith("Peb") and 0.03 < time.monotonic() - start < 0.5
    assert emu.output_levels_V == pytest.approx(0.1)  # the cell holds dc_potential
    rest = client.abort_and_sync()
    assert rest[0] == "Z" and rest[-1] == "*"     # the loop is closed, then the empty line
    assert all(line.startswith("P") for line in rest[1:-1]) and len(rest) < 6
    assert emu.output_levels_V is None            # on_finished: the cell is off
    assert client.abort_and_sync() == ["Z!0006"]  # and nothing runs any more
    lines, echo = client.run("var p\nvar c\ncell_on\nmeas_loop_ca p c 0 10m 30m\npck_start\n"
                             "pck_add c\npck_end\nendloop\non_finished:\ncell_off")
    assert echo == "e" and len(packages(parse_output(lines)[0])) == 3  # the instrument runs on


def test_a_paced_script_takes_its_own_time(paced):
    _, client = paced
    start = time.monotonic()
    lines, _ = client.run(CA_LOOP_EXAMPLE)        # 20 points of 100 ms
    elapsed = time.monotonic() - start
    assert 1.8 < elapsed < 4.0, elapsed
    assert len(packages(parse_output(lines)[0])) == 20


# -- the techniques --------------------------------------------------------------------------------
def test_cv_example_one_header_per_loop_and_the_triangle(fast):
    _, client = fast
    lines, echo = client.run(CV_PYTHON_EXAMPLE.format(nscans=""))
    assert echo == "e"
    loops = parse_output(lines)
    assert [loop["head"] for loop in loops] == ["M0007", "M0005"]  # conditioning CA, then CV
    assert loops[0]["items"] == []                # the CA loop has no packages: none sent
    assert lines.count("M0005") == 1 and lines.count("*") == 2
    potential, current = column(loops[1], 0), column(loops[1], 1)
    want = np.concatenate([np.arange(0, 51), np.arange(49, -51, -1), np.arange(-49, 1)]) * 0.01
    np.testing.assert_allclose(potential, want, atol=1e-9)  # 0 -> 0.5 -> -0.5 -> 0 V, 10 mV steps
    assert np.all(np.isfinite(current)) and np.abs(current).max() > 1e-8
    for package in packages(loops[1]):
        (ptype, _, pmeta), (ctype, value, cmeta) = package
        assert (ptype, ctype) == ("da", "ba") and pmeta == {}
        assert cmeta["status"] == 0
        full = dict(LOW_SPEED_RANGES)[cmeta["range"]]
        assert abs(value) <= full and full <= 100e-6  # autoranging within 1 nA..100 uA


def test_cv_nscans_wraps_each_scan(fast):
    _, client = fast
    lines, _ = client.run(CV_PYTHON_EXAMPLE.format(nscans=" nscans(3)"))
    cv = parse_output(lines)[1]
    scans = [item for item in cv["items"] if isinstance(item, dict)]
    assert [s["head"] for s in scans] == ["C0005"] * 3
    assert [len(packages(s)) for s in scans] == [201] * 3
    assert lines.count("-") == 3


def test_ca_example_long_names_store_var_and_timer(fast):
    _, client = fast
    lines, _ = client.run(CA_LOOP_EXAMPLE)
    (loop,) = parse_output(lines)
    assert loop["head"] == "M0007"
    times = column(loop, 0)
    assert [p[0][0] for p in packages(loop)] == ["eb"] * 20 and [p[1][0] for p in packages(loop)] == \
        ["ba"] * 20
    np.testing.assert_allclose(times, 0.1 * np.arange(1, 21), atol=1e-6)  # floor(2 s / 100 ms) points


def test_lsv_example(fast):
    _, client = fast
    lines, _ = client.run(LSV_LOOP_EXAMPLE)
    (loop,) = parse_output(lines)
    assert loop["head"] == "M0000"
    np.testing.assert_allclose(column(loop, 0), np.linspace(-0.5, 0.5, 101), atol=1e-9)
    current = column(loop, 1)
    assert np.all(np.isfinite(current))


def test_dpv_and_swv_examples(fast):
    _, client = fast
    lines, _ = client.run(DPV_LOOP_EXAMPLE)
    (dpv,) = parse_output(lines)
    assert dpv["head"] == "M0001" and len(packages(dpv)) == 101
    lines, _ = client.run(SWV_PYTHON_EXAMPLE)
    ca, swv = parse_output(lines)
    assert (ca["head"], swv["head"]) == ("M0007", "M0002") and ca["items"] == []
    rows = packages(swv)
    assert len(rows) == 121 and [v[0] for v in rows[0]] == ["da", "ba", "ba", "ba"]
    for p, c, f, r in rows:  # the difference current is forward minus reverse
        assert c[1] == pytest.approx(f[1] - r[1], rel=1e-5, abs=1e-15)


def test_ocp_example_needs_the_cell_off(fast):
    _, client = fast
    lines, _ = client.run(OCP_LOOP_EXAMPLE)
    (loop,) = parse_output(lines)
    assert loop["head"] == "M000B" and len(packages(loop)) == 21  # floor(2.1 s / 100 ms)
    assert {p[1][0] for p in packages(loop)} == {"ab"}
    lines, _ = client.run(OCP_LOOP_EXAMPLE.replace("cell_off                  ", "cell_on"))
    assert len(lines) == 1 and ERROR.match(lines[0]).group(1) == "0014"  # refused before the loop


def test_eis_example_reads_the_potatos_randles_cell(fast):
    emu, client = fast
    lines, _ = client.run(EIS_LOOP_EXAMPLE)
    (loop,) = parse_output(lines)
    assert loop["head"] == "M000D"
    rows = packages(loop)
    assert [v[0] for v in rows[0]] == ["dc", "cc", "cd"]
    freq, z_re, z_im = column(loop, 0), column(loop, 1), column(loop, 2)
    np.testing.assert_allclose(freq, np.geomspace(100e3, 100, 11), rtol=1e-5)
    cell = Randles.of(emu.substrate)
    assert cell.r_s == 2000.0                       # the potato's access resistance
    want = np.array([cell.impedance(f) for f in freq])
    np.testing.assert_allclose(z_re, want.real, rtol=1e-5)
    np.testing.assert_allclose(z_im, want.imag, rtol=1e-5)
    assert np.all(z_im < 0) and z_re[-1] > z_re[0]  # capacitive; toward R_s + R_ct at low f


# -- literals, control flow, output ----------------------------------------------------------------
def test_si_prefixed_and_integer_literals_decimal_point_refused(fast):
    _, client = fast
    script = ("var a\nvar b\nstore_var a 1500m ja\nstore_var b 0x10 ja\nadd_var a 500n\n"
              "add_var b 0b11\npck_start\npck_add a\npck_add b\npck_end")
    lines, _ = client.run(script)
    (package,) = parse_output(lines)
    assert package[0][1] == pytest.approx(1.5000005) and package[1] == ("ja", 19, {})
    assert client.run("var a\nstore_var a 1.5 ja")[1] == "e!4039: Line 3, Col 13"


def test_loops_if_send_string_and_breakloop(fast):
    _, client = fast
    script = """
var i
var sum
store_var i 0i ja
store_var sum 0i ja
loop i < 10i
    add_var i 1i
    if i == 3i
        send_string "three"
    elseif i > 5i
        breakloop
    else
        add_var sum i
    endif
endloop
pck_start
pck_add i
pck_add sum
pck_end
"""
    lines, _ = client.run(script)
    assert lines[0] == "L" and lines[1] == "Tthree" and lines[2] == "+"
    (_, package) = parse_output(lines)
    assert [v[1] for v in package] == [6, 1 + 2 + 4 + 5]


def test_overload_flag_when_the_current_exceeds_the_top_range(fast):
    _, client = fast
    base = ("var p\nvar c\nset_pgstat_mode 2\nset_range ba 100n\n{auto}set_e 1\ncell_on\n"
            "meas_loop_ca p c 1 1m 20m\npck_start\npck_add c\npck_end\nendloop\non_finished:\ncell_off")
    lines, _ = client.run(base.format(auto="set_autoranging ba 100n 100n\n"))
    rows = packages(parse_output(lines)[0])
    overloaded = [v for (v,) in rows if v[2]["status"] & 0x2]
    assert overloaded and all(abs(v[1]) == pytest.approx(100e-9) and v[2]["range"] == 0
                              for v in overloaded)
    lines, _ = client.run(base.format(auto="set_autoranging ba 100n 5m\n"))
    assert all(v[2]["status"] == 0 for (v,) in packages(parse_output(lines)[0]))


# -- what the instrument refuses -------------------------------------------------------------------
@pytest.mark.parametrize("script, reply", [
    ("var p\nset_e 10", "e!000F: Line 3, Col 7"),                       # beyond -1.7..2.0 V
    ("var p\nvar c\nset_pgstat_mode 3\ncell_on\nmeas_loop_eis p c c 10m 1M 100 5 0\nendloop",
     "e!0011: Line 6, Col 25"),                                          # above 200 kHz
    ("var p\nvar c\ncell_on\nmeas_loop_eis p c c 1 100k 100 5 0\nendloop",
     "e!0012: Line 5, Col 21"),                                          # above 0.429 V rms
    ("var p\nbeep 100", "e!4001: Line 3, Col 1"),                       # not in the subset
    ("var " + "x" * 40, "e!402C: Line 2, Col 5"),
    ("var p\nmeas_loop_cv p p 0 1 -1 10m 1 nscans(3) frob(2)\nendloop", "e!4008: Line 3, Col 41"),
])
def test_refused_scripts_get_the_error_and_nothing_runs(fast, script, reply):
    emu, client = fast
    runs = emu.scripts_run
    assert client.run(script) == ([], reply)
    assert emu.scripts_run == runs


def test_run_time_limits_stop_the_script_with_its_line(fast):
    emu, client = fast
    lines, echo = client.run("var e\nstore_var e 3 ja\nset_e e")  # a potential held in a variable
    assert (echo, lines) == ("e", ["!000F: Line 4"])
    # low-speed mode reaches only -1.25 V; EIS needs high-speed mode
    assert client.run("set_pgstat_mode 2\nset_e -1500m")[0] == ["!000F: Line 3"]
    lines, _ = client.run("var f\nvar r\nvar j\nset_pgstat_mode 2\ncell_on\n"
                          "meas_loop_eis f r j 10m 1k 100 3 0\npck_start\npck_add f\npck_end\nendloop")
    assert lines == ["!0023: Line 7"]
    assert emu.output_levels_V is None  # an error stops the script with the cell off
