"""Serial potentiostats (PalmSens MethodSCRIPT, EmStat Pico class; IO Rodeo Rodeostat) behind one Device.

One stimulus channel, the working-electrode (WE) potential in volts, and one response channel, the WE
current in amperes, over pyserial.  The wire protocol is chosen with ``protocol`` (see
:data:`PROTOCOLS`): ``"methodscript"`` (below) or ``"rodeostat"`` (:mod:`drivers.rodeostat`).  A
protocol object provides ``handshake``, ``script`` (the request text of one stimulus chunk),
``collect`` (its currents), ``abort`` and ``refuses`` (settings it cannot run), and names its
``baudrate``, ``max_line_bytes`` and default ``samples_per_script``.

MethodSCRIPT (as documented in PalmSens' public MethodSCRIPT manual; no PalmSens code is used):

- Handshake at ``open``: ``t\\n`` (firmware version); the reply's first line starts with ``t`` and the
  reply ends with a line ending in ``*``.
- Each stimulus chunk of at most ``samples_per_script`` samples becomes one script, sent as ``e\\n`` +
  lines + an empty line.  Sample ``k`` at potential ``E_k`` is one chronoamperometry loop whose run time
  equals its interval, so it yields exactly one data package::

      meas_loop_ca p c <E_k> <1/rate> <1/rate>
      pck_start / pck_add p / pck_add c / pck_end
      endloop

  The script holds the cell on while it runs and ends with ``on_finished: cell_off`` (a safety net that
  also fires on abort), so between two scripts the cell is briefly off; timestamps are nominal
  (``sample_index / rate_hz``), not measured.  Potentials are sent as integer microvolts, the interval
  as integer microseconds.
- The device echoes ``e``, then per loop ``M....`` (loop start), one ``P`` data line, ``*`` (loop end),
  and finally an empty line.  ``L``/``C`` open plain loops, ``+``/``-`` mark iterations, ``!`` lines are
  device errors.  A data line is ``P`` + ``;``-separated variables ``tt HHHHHHH p[,meta...]``: type
  (``da``/``ab`` potential, ``ba`` current), 7 hex digits offset by 2^27, an SI-prefix character, and
  metadata (``1x`` status, ``2xx`` current range), e.g. ``800000Am`` is 0.01.

Safe stop (``rest``, also on ``close`` and before a fault drops the link): stimulus queued but not sent
is dropped; a script still running is let finish (its reply read and discarded; after a fault it is
aborted with ``Z``, which fires its ``on_finished: cell_off``); then one more script ramps the WE from
the last potential applied to the rest level (slew-limited, at least 10 ms) and switches the cell off,
as every script ends.  A stalled device cannot be driven (``outputs_at_rest: false``: its last script
ends with ``cell_off`` on its own); an unplugged USB instrument loses power and with it the cell.

Every reply is read as bounded lines (:data:`MAX_LINE_BYTES`) under a per-line timeout and validated;
any fault (port missing or busy, disconnect, silence, malformed or missing lines, a device error) raises
one-line :class:`DeviceError` naming the port and the fault.
"""

from __future__ import annotations

import collections
import re
import time
import urllib.parse

import numpy as np
import serial

from prclab.errors import PrclabError

from .base import ChannelInfo, Device, DeviceChannels, DeviceError
from .rodeostat import RodeostatJson

MAX_LINE_BYTES = 256
"""Longest reply line accepted, newline included; longer lines are a protocol fault."""

SI_PREFIX = {"a": -18, "f": -15, "p": -12, "n": -9, "u": -6, "m": -3, " ": 0,
             "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
"""MethodSCRIPT SI-prefix characters and their powers of ten (``" "`` is no prefix)."""

_OFFSET = 1 << 27
_VARIABLE = re.compile(r"([a-z]{2})([0-9A-F]{7})(.)((?:,[0-9A-Fa-f]{1,8})*)\Z")
_LOOP_START = re.compile(r"[MLC][0-9A-Fa-f]{0,4}\Z")
LOW_SPEED_MIN_V = -1.25
"""Lowest WE potential of an EmStat Pico's low-speed PGStat mode (MethodSCRIPT manual appendix B);
scripts that go lower use the max-range mode (down to -1.7 V)."""
POTENTIAL_TYPES = ("da", "ab")
"""Variable types accepted as the WE potential (set potential, measured potential)."""


def decode_value(text: str) -> float:
    """Decode a MethodSCRIPT value ``HHHHHHHp`` (7 hex digits offset by 2^27, SI prefix) to SI units.

    Raises ``ValueError`` for anything else.
    """
    if len(text) != 8 or text[7] not in SI_PREFIX or not re.fullmatch(r"[0-9A-F]{7}", text[:7]):
        raise ValueError(f"bad value {text!r}")
    return (int(text[:7], 16) - _OFFSET) * 10.0 ** SI_PREFIX[text[7]]


def parse_data_line(line: str) -> dict[str, tuple[float, tuple[str, ...]]]:
    """Parse a ``P`` data line into ``{type: (value, metadata)}``; raises ``ValueError`` if malformed.

    ``metadata`` holds the ``,``-separated hex fields after the value (``"10"``: status 0, ...).
    """
    if not line.startswith("P"):
        raise ValueError("not a data line")
    if len(line) < 11:
        raise ValueError("truncated")
    out: dict[str, tuple[float, tuple[str, ...]]] = {}
    for field in line[1:].split(";"):
        m = _VARIABLE.match(field)
        if m is None:
            raise ValueError(f"bad variable {field[:20]!r}")
        kind, hexdigits, prefix, meta = m.groups()
        if kind in out:
            raise ValueError(f"variable {kind!r} twice")
        out[kind] = (decode_value(hexdigits + prefix), tuple(meta.split(",")[1:]))
    return out


def _si_int(value: float, unit_exp: int, prefix: str) -> str:
    """``value`` as an integer count of ``10**unit_exp`` with MethodSCRIPT prefix ``prefix``."""
    return f"{int(round(value * 10.0 ** -unit_exp))}{prefix}"


def _potential_uV(value: float) -> str:
    """Potential ``value`` volts as whole microvolts, the nearest one unless that lies farther from 0 V
    than ``value`` (by more than 1 pV of floating-point noise), then the next one toward 0 V: the applied
    ``|E|`` never exceeds the checked one, so the safety layer's window, current and charge limits,
    checked on ``value``, hold for what is sent (issue 10, S5: rounding gave +0.45 uV)."""
    n = int(round(value * 1e6))
    if abs(n) * 1e-6 - abs(value) > 1e-12:
        n -= 1 if n > 0 else -1
    return f"{n}u"



try:  # pyserial reconfigures a POSIX port through termios, whose error is not an OSError
    from termios import error as _TermiosError
except ImportError:  # Windows
    class _TermiosError(Exception):
        pass

#: what a serial port raises when it is gone or refuses an operation (an unplugged USB adapter, a
#: closed pseudo-terminal)
PORT_ERRORS = (serial.SerialException, OSError, _TermiosError)

class SerialLink:
    """A pyserial port read as bounded, timed lines; every failure becomes a one-line DeviceError.

    Args:
        port: device path or pyserial URL.
        baudrate: bits per second.
        line_timeout_s: longest silence tolerated while waiting for one reply line.
    """

    def __init__(self, port: str, baudrate: int, line_timeout_s: float, max_line_bytes: int = MAX_LINE_BYTES):
        self.port, self.max_line_bytes = port, max_line_bytes
        self.label = f"potentiostat {port}"
        try:
            self._serial = serial.serial_for_url(port, baudrate=baudrate, timeout=line_timeout_s,
                                                 write_timeout=line_timeout_s, exclusive=True)
        except (*PORT_ERRORS, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            busy = "lock" in reason.lower() or "busy" in reason.lower()
            raise DeviceError(f"{self.label}: {'port busy' if busy else 'cannot open port'} "
                              f"({reason})") from None
        self.line_timeout_s = line_timeout_s

    def fail(self, fault: str) -> DeviceError:
        return DeviceError(f"{self.label}: {fault}")

    def send(self, text: str) -> None:
        try:
            self._serial.write(text.encode("ascii"))
            self._serial.flush()
        except serial.SerialTimeoutException:
            raise self.fail(f"write timed out after {self.line_timeout_s:g} s (device stalled?)") from None
        except PORT_ERRORS as exc:
            raise self.fail(f"disconnected while writing ({exc})") from None

    def readline(self) -> str:
        """One reply line without its newline; faults on silence, overlong or non-ASCII lines."""
        try:
            raw = self._serial.read_until(b"\n", self.max_line_bytes)
        except PORT_ERRORS as exc:
            raise self.fail(f"disconnected ({exc})") from None
        if not raw.endswith(b"\n"):
            if len(raw) >= self.max_line_bytes:
                raise self.fail(f"reply line longer than {self.max_line_bytes} bytes")
            what = f"truncated line {raw[:40]!r}" if raw else "no reply"
            raise self.fail(f"{what} within {self.line_timeout_s:g} s (device stalled?)")
        try:
            return raw[:-1].decode("ascii").rstrip("\r")
        except UnicodeDecodeError:
            raise self.fail(f"malformed reply {raw[:40]!r} (not ASCII)") from None

    def set_timeout(self, seconds: float) -> None:
        """Per-line timeout from now on (quietly ignored on a port that is gone)."""
        try:
            self._serial.timeout = seconds
        except (*PORT_ERRORS, ValueError):
            pass

    def discard_input(self, quiet_s: float = 0.05, limit_s: float = 0.5) -> None:
        """Drop whatever the device still sends, until ``quiet_s`` of silence (at most ``limit_s``)."""
        deadline = time.monotonic() + limit_s
        try:
            self._serial.timeout = quiet_s
            while self._serial.read(4096) and time.monotonic() < deadline:
                pass
        except PORT_ERRORS:
            pass
        finally:
            try:
                self._serial.timeout = self.line_timeout_s
            except (*PORT_ERRORS, ValueError):
                pass

    def close(self) -> None:
        try:
            self._serial.close()
        except PORT_ERRORS:
            pass


class MethodScript:
    """The MethodSCRIPT dialect: script generation and reply parsing (see the module docstring)."""

    name = "methodscript"
    baudrate = 230400                   # PalmSens' default for MethodSCRIPT
    max_line_bytes = MAX_LINE_BYTES
    samples_per_script = 100

    def __init__(self, current_range_A: float):
        self.current_range_A = current_range_A

    @staticmethod
    def refuses(rate_hz: float, samples_per_script: int) -> str | None:
        """No limits beyond the device's (rate in (0, 1000] Hz): scripts are bounded by the emulator's
        and the instrument's script memory (see :mod:`hardware_sims.potentiostat`)."""
        return None

    def handshake(self, link: SerialLink) -> str:
        """Ask for the firmware version; returns it as one line of text."""
        link.send("t\n")
        lines = []
        for _ in range(8):
            line = link.readline()
            if line.startswith("!"):
                raise link.fail(f"device error {line[:60]!r} to the version query")
            lines.append(line)
            if line.endswith("*"):
                break
        else:
            raise link.fail("version reply does not end with '*'")
        if not lines[0].startswith("t"):
            raise link.fail(f"unexpected version reply {lines[0][:40]!r} (not a MethodSCRIPT device?)")
        return " ".join(lines)[1:-1].strip()

    def script(self, potentials_V: np.ndarray, rate_hz: float) -> str:
        """Script that applies ``potentials_V`` ``(k,)`` one per sample period and measures current."""
        dt = _si_int(1.0 / rate_hz, -6, "u")
        lo, hi = float(potentials_V.min()), float(potentials_V.max())
        # low-speed mode reaches -1.25..+2.0 V on an EmStat Pico, max-range mode -1.7..+2.0 V
        # (MethodSCRIPT manual appendix B); the low-speed mode where it suffices
        mode = 2 if lo >= LOW_SPEED_MIN_V else 4
        lines = ["e", "var p", "var c", f"set_pgstat_mode {mode}",
                 f"set_range_minmax da {_potential_uV(lo)} {_potential_uV(hi)}",
                 f"set_range ba {_si_int(self.current_range_A, -9, 'n')}",
                 f"set_autoranging ba 1n {_si_int(self.current_range_A, -9, 'n')}",
                 f"set_e {_potential_uV(potentials_V[0])}", "cell_on"]
        for e in potentials_V:
            lines += [f"meas_loop_ca p c {_potential_uV(e)} {dt} {dt}",
                      "pck_start", "pck_add p", "pck_add c", "pck_end", "endloop"]
        lines += ["on_finished:", "cell_off", "", ""]
        return "\n".join(lines)

    def collect(self, link: SerialLink, n: int, first: int = 0) -> np.ndarray:
        """Read one script's reply holding ``n`` samples; returns currents ``(n,)`` in amperes.

        ``first`` is the stream index of the script's first sample (for messages).
        """
        echo = link.readline()
        if echo != "e":
            raise link.fail(f"script not accepted, reply {echo[:60]!r}")
        currents = np.empty(n)
        depth, count, in_meas, got = 0, 0, False, 0
        while True:
            line = link.readline()
            if line == "":
                break
            head = line[0]
            if head == "P":
                if not in_meas or got:
                    raise link.fail(f"data line outside a measurement loop at sample {first + count}")
                try:
                    values = parse_data_line(line)
                except ValueError as exc:
                    raise link.fail(f"malformed data line {line[:40]!r} ({exc})") from None
                if "ba" not in values or not any(t in values for t in POTENTIAL_TYPES):
                    raise link.fail(f"data line {line[:40]!r} lacks potential or current")
                if count >= n:
                    raise link.fail(f"more than {n} data lines for a {n}-sample script")
                currents[count] = values["ba"][0]
                count, got = count + 1, 1
            elif _LOOP_START.match(line):
                if head == "M":
                    if depth:
                        raise link.fail("nested measurement loop in reply")
                    in_meas, got = True, 0
                depth += 1
            elif line == "*":
                if depth == 0:
                    raise link.fail("loop end without a loop start")
                depth -= 1
                if in_meas and depth == 0:
                    if not got:
                        raise link.fail(f"missing data line for sample {first + count}")
                    in_meas = False
            elif line in ("+", "-"):
                continue
            elif head == "!":
                raise link.fail(f"device error {line[:60]!r}")
            else:
                raise link.fail(f"malformed reply line {line[:40]!r}")
        if count != n or depth:
            raise link.fail(f"script ended after {count} of {n} data lines")
        return currents

    def abort(self, link: SerialLink) -> None:
        link.send("Z\n")


PROTOCOLS = {"methodscript": MethodScript, "rodeostat": RodeostatJson}
"""Wire protocols by name."""


class PotentiostatDevice(Device):
    """A serial potentiostat: WE potential out (volts), WE current in (amperes).

    ``write`` queues stimulus and starts the next script without waiting for it; ``read`` collects
    replies.  Reading past the written stimulus holds the WE at its rest level.

    Args:
        port: serial device path (``/dev/ttyACM0``) or pyserial URL.
        rate_hz: sample rate in hertz, at most 1000.
        protocol: key of :data:`PROTOCOLS`.
        potential_range_V: ``(low, high)`` allowed WE potential in volts.
        current_range_A: full-scale current in amperes (the response channel is ``±`` this).
        baudrate: serial speed (default: the protocol's, 230400 for MethodSCRIPT, 115200 Rodeostat).
        line_timeout_s: longest silence tolerated between reply lines.
        samples_per_script: samples per script or test (bounds its size on the instrument; default:
            the protocol's, 100 for MethodSCRIPT, 50 for the Rodeostat, its most).
    """

    name = "potentiostat"

    def __init__(self, port: str, rate_hz: float, protocol: str = "methodscript",
                 potential_range_V=(-2.0, 2.0), current_range_A: float = 1e-3,
                 baudrate: int | None = None, line_timeout_s: float = 1.0,
                 samples_per_script: int | None = None):
        if protocol not in PROTOCOLS:
            raise DeviceError(f"potentiostat {port}: unknown protocol {protocol!r}; "
                              f"known: {', '.join(PROTOCOLS)}")
        if not 0 < rate_hz <= 1000:
            raise DeviceError(f"potentiostat {port}: rate {rate_hz!r} Hz outside (0, 1000]")
        dialect = PROTOCOLS[protocol]
        samples_per_script = dialect.samples_per_script if samples_per_script is None else samples_per_script
        if samples_per_script < 1:
            raise DeviceError(f"potentiostat {port}: samples_per_script must be positive")
        problem = dialect.refuses(float(rate_hz), int(samples_per_script))
        if problem:
            raise DeviceError(f"potentiostat {port}: {problem}")
        channels = DeviceChannels(
            stimulus=(ChannelInfo("we_potential", "V", float(potential_range_V[0]),
                                  float(potential_range_V[1])),),
            response=(ChannelInfo("we_current", "A", -float(current_range_A),
                                  float(current_range_A)),),
            rate_hz=float(rate_hz))
        super().__init__(channels)
        self.port = port
        self.protocol = dialect(float(current_range_A))
        self.baudrate = int(dialect.baudrate if baudrate is None else baudrate)
        self.line_timeout_s = float(line_timeout_s)
        self.samples_per_script = int(samples_per_script)
        self.firmware = ""
        self._link: SerialLink | None = None
        self._reset_stream()

    def _reset_stream(self) -> None:
        self._queue: collections.deque[np.ndarray] = collections.deque()
        self._in_flight = 0          # samples expected from the running script, 0 if none
        self._script_last = 0.0      # last potential of the script sent last
        self._broken = False         # a reply failed mid-script: the device's state is unknown
        self._pending = np.zeros(0)  # currents received, not yet read
        self._n_written = self._n_read = 0

    # -- Device ------------------------------------------------------------------------------------
    def _open(self) -> None:
        self._reset_stream()
        link = SerialLink(self.port, self.baudrate, self.line_timeout_s, self.protocol.max_line_bytes)
        try:
            link.discard_input()
            self.firmware = self.protocol.handshake(link)
        except DeviceError:
            link.close()
            raise
        self._link = link

    def _close(self) -> None:
        link, self._link = self._link, None
        if link is None:
            return
        try:
            if self._in_flight:
                self.protocol.abort(link)
        except DeviceError:
            pass
        link.discard_input()
        link.close()
        self._reset_stream()

    def connect_to(self, address: str) -> None:
        """Open the serial port ``address`` (an emulator's pty) from the next ``open`` on."""
        self.port = str(address)

    def _rest(self, start_V: np.ndarray) -> str:
        link = self._link
        if link is None:
            raise DeviceError(f"{self.name} {self.port}: no link left to drive the cell to rest")
        self._queue.clear()
        done = ""
        try:
            if self._in_flight and not self._broken:
                try:
                    self.protocol.collect(link, self._in_flight, self._n_read)
                    self.output_V = np.array([self._script_last])
                    done = "let the running script finish, "
                except DeviceError:
                    self._broken = True
            if self._in_flight and self._broken:
                try:
                    self.protocol.abort(link)
                except DeviceError:
                    pass
                link.discard_input()
                done = "aborted the running script (cell off), "
                self.output_V = np.array([self._script_last])
            self._in_flight = 0
            # a healthy device answers at once: do not wait a full line timeout on one that stalled
            link.set_timeout(min(self.line_timeout_s, 0.25 + 1.0 / self.channels.rate_hz))
            ramp = self._ramp(self.output_V)[:, 0]
            for a in range(0, len(ramp), self.samples_per_script):  # scripts of bounded size
                chunk = ramp[a:a + self.samples_per_script]
                link.send(self.protocol.script(chunk, self.channels.rate_hz))
                self.protocol.collect(link, len(chunk), self._n_read)
                self.output_V = chunk[-1:].copy()
        finally:
            link.set_timeout(self.line_timeout_s)
        self.output_V = self.rest_V.copy()
        return f"{done}ramped the WE to rest in {len(ramp)} points, then cell off"

    def _write(self, block: np.ndarray) -> None:
        potentials = block[:, 0]
        for start in range(0, len(potentials), self.samples_per_script):
            self._queue.append(potentials[start:start + self.samples_per_script].copy())
        self._n_written += len(potentials)
        self._guarded(self._start_next)

    def _read(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        self._guarded(self._fill, n)
        samples, self._pending = self._pending[:n], self._pending[n:]
        t = (self._n_read + np.arange(n)) / self.channels.rate_hz
        self._n_read += n
        return samples[:, None].astype(np.float64), t

    def _stimulus_position(self) -> int:
        return self._n_written

    def describe(self) -> dict:
        return {**super().describe(), "port": self.port, "protocol": self.protocol.name,
                "firmware": self.firmware, "samples_per_script": self.samples_per_script}

    # -- streaming ---------------------------------------------------------------------------------
    def _guarded(self, action, *args) -> None:
        """Run ``action``; after a fault the stream is unusable, so drop the link (the error stands)."""
        try:
            action(*args)
        except DeviceError as exc:
            self._broken = True
            if self.is_open:  # drive the cell to rest where the device still answers
                self.rest(f"device fault: {exc}")
            link, self._link = self._link, None
            if link is not None:
                link.close()
            self.is_open = False
            self._reset_stream()
            raise

    def _start_next(self) -> None:
        if self._in_flight or not self._queue:
            return
        chunk = self._queue.popleft()
        # counted before it is sent: a Ctrl-C / SIGTERM raises as the send returns, and a script the
        # device runs uncounted would answer the rest ramp's first script in its place
        self._in_flight, self._script_last = len(chunk), float(chunk[-1])
        self._link.send(self.protocol.script(chunk, self.channels.rate_hz))

    def _fill(self, n: int) -> None:
        while len(self._pending) < n:
            if not self._in_flight and not self._queue:
                short = n - len(self._pending)
                self._queue.append(np.full(min(short, self.samples_per_script), self.rest_V[0]))
                self._n_written += len(self._queue[-1])
            self._start_next()
            first = self._n_read + len(self._pending)
            currents = self.protocol.collect(self._link, self._in_flight, first)
            self._in_flight = 0
            self.output_V = np.array([self._script_last])
            self._pending = np.concatenate([self._pending, currents])
            self._start_next()


def from_spec(address: str, request) -> PotentiostatDevice:
    """Device for spec ``potentiostat:ADDRESS`` (``/dev/ttyACM0`` or ``/dev/ttyACM0?protocol=...``).

    With ``request.emulate`` the address's port is never opened: the rig starts an emulator and points
    the device at its pty (:meth:`PotentiostatDevice.connect_to`) before each ``open``.
    """
    port, _, query = address.partition("?")
    options = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    protocol = options.pop("protocol", "methodscript")
    if options:
        raise PrclabError(f"potentiostat:{address}: unknown option(s) {', '.join(sorted(options))}; "
                          "known: protocol")
    if protocol not in PROTOCOLS:
        raise PrclabError(f"potentiostat:{address}: unknown protocol {protocol!r}; "
                          f"known: {', '.join(PROTOCOLS)}")
    if request.n_stimulus != 1:
        raise PrclabError(f"potentiostat:{address}: a potentiostat has 1 stimulus channel, "
                          f"the protocol needs {request.n_stimulus}")
    if not port and not request.emulate:
        raise PrclabError("potentiostat: no serial port given (e.g. potentiostat:/dev/ttyACM0)")
    return PotentiostatDevice(port if not request.emulate else "(emulator pty)", request.rate_hz,
                              protocol=protocol, potential_range_V=request.stimulus_range_V)
