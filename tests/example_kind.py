"""A tiny device kind, to show what adding one takes: a driver, its emulator, one registry entry.

The "echobox" is an imaginary serial instrument: ``?`` answers ``ECHOBOX <n_in> <n_out>``; ``P v ...``
(a block of stimulus rows, row-major, volts) answers ``Y y ...`` (the response rows, row-major).  The
driver (:class:`EchoBoxDevice`) speaks it through pyserial and never imports an emulator; the emulator
(:class:`EchoBoxEmulator`) serves it on a pty, backed by a simulated substrate; :data:`KIND` is the
registry entry (``DEVICE_KINDS["echobox"] = KIND``) that lets ``make_rig("echobox:/dev/ttyUSB3", ...)``
build it, with the emulator for ``emulate``.
"""

from __future__ import annotations

import os
import select

import numpy as np
import serial

from prclab.drivers import Device, DeviceChannels, DeviceError, voltage_channels
from prclab.drivers.capabilities import MARK, RECORD, STIMULATE
from prclab.hardware_sims.pty_port import PtyEmulator
from prclab.protocols.rig import DeviceKind


# -- the driver -------------------------------------------------------------------------------------
class EchoBoxDevice(Device):
    """An echobox on serial ``port``: ``n_stimulus`` outputs, ``n_response`` inputs at ``rate_hz``."""

    name = "echobox"

    def __init__(self, port: str, rate_hz: float, n_stimulus: int, n_response: int,
                 stimulus_range_V=(-1.0, 1.0)):
        super().__init__(DeviceChannels(voltage_channels("out", n_stimulus, *stimulus_range_V),
                                        voltage_channels("in", n_response, -10.0, 10.0), float(rate_hz)))
        self.port = port
        self._serial: serial.Serial | None = None
        self._queue = np.zeros((0, n_stimulus))
        self._n_written = self._n_read = 0

    def connect_to(self, address: str) -> None:
        self.port = address

    def _open(self) -> None:
        try:
            self._serial = serial.Serial(self.port, timeout=1.0)
        except serial.SerialException as exc:
            raise DeviceError(f"echobox {self.port}: cannot open port ({exc})") from None
        self._queue, self._n_written, self._n_read = self._queue[:0], 0, 0
        n_in, n_out = len(self.channels.stimulus), len(self.channels.response)
        if self._ask("?") != f"ECHOBOX {n_in} {n_out}":
            raise DeviceError(f"echobox {self.port}: not an echobox with {n_in} in, {n_out} out")

    def _close(self) -> None:
        self._serial.close()

    def _ask(self, line: str) -> str:
        self._serial.write(line.encode("ascii") + b"\n")
        reply = self._serial.readline()
        if not reply.endswith(b"\n"):
            raise DeviceError(f"echobox {self.port}: no reply within 1 s")
        return reply.decode("ascii").strip()

    def _play(self, block: np.ndarray) -> np.ndarray:
        reply = self._ask("P " + " ".join(map(repr, block.ravel().tolist()))).split()
        if reply[:1] != ["Y"]:
            raise DeviceError(f"echobox {self.port}: bad reply {reply[:2]}")
        self.output_V = block[-1].copy()
        return np.array(reply[1:], dtype=np.float64).reshape(len(block), len(self.channels.response))

    def _write(self, block: np.ndarray) -> None:
        self._queue = np.concatenate([self._queue, block])
        self._n_written += len(block)

    def _read(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        short = max(0, n - len(self._queue))
        block = np.concatenate([self._queue[:n], np.repeat(self.rest_V[None], short, axis=0)])
        self._queue, self._n_written = self._queue[n:], self._n_written + short
        t = (self._n_read + np.arange(n)) / self.channels.rate_hz
        self._n_read += n
        return (self._play(block) if n else np.zeros((0, len(self.channels.response)))), t

    def _rest(self, start_V: np.ndarray) -> str:
        self._queue = self._queue[:0]
        self._play(self._ramp(start_V))
        return "ramped to rest"

    def _stimulus_position(self) -> int:
        return self._n_written


# -- its emulator -----------------------------------------------------------------------------------
class EchoBoxEmulator(PtyEmulator):
    """Serves the echobox protocol on a pty; the substrate's inputs are the outputs' volts."""

    thread_name = "echobox-emulator"

    def _serve(self) -> None:
        pending = b""
        while not self._stop.is_set():
            fd = self._master
            if fd < 0 or self.fault == "unplug":
                self._close_pty()
                return
            try:
                if select.select([fd], [], [], 0.05)[0]:
                    pending += os.read(fd, 1 << 16)
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    self._send(fd, self._answer(line.decode("ascii").split()))
            except OSError:
                return  # pty closed

    def _answer(self, words: list[str]) -> bytes:
        sub = self.substrate
        if words == ["?"]:
            return f"ECHOBOX {sub.n_inputs} {sub.n_outputs}\n".encode("ascii")
        if words[:1] != ["P"] or (len(words) - 1) % sub.n_inputs:
            return b"E unknown command\n"
        u = np.array(words[1:], dtype=np.float64).reshape(1, -1, sub.n_inputs)
        return ("Y " + " ".join(map(repr, sub.run(u)[0].ravel().tolist())) + "\n").encode("ascii")

    def _send(self, fd: int, data: bytes) -> None:
        while data and not self._stop.is_set():
            if select.select([], [fd], [], 0.05)[1]:
                data = data[os.write(fd, data):]


# -- the registry entry -----------------------------------------------------------------------------
def _driver(address, request, emulator, stimulates):
    n_out = emulator.substrate.n_outputs if emulator is not None else 1
    return EchoBoxDevice(address, request.rate_hz, request.n_stimulus, n_out, request.stimulus_range_V)


def _emulator(address, request, wired_to):
    return EchoBoxEmulator(request.build_substrate(), seed=request.seed)


KIND = DeviceKind(_driver, frozenset({STIMULATE, RECORD, MARK}), _emulator)
