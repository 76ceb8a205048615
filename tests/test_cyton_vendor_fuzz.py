"""Random bytes at the Cyton emulator's command parser, for a bounded time: no crash, no hang, and only
what the firmware sends - ``$$$``-ended ASCII replies, well-formed stream packets, or silence.

Two levels: the firmware model alone (fast, many bytes, every reply checked), and the emulator over its
pty (the serving thread must survive and still answer a soft reset).  Random bytes include ``/5`` now
and then, after which the real board is unreachable over the dongle (BLE mode at 9600 baud): the pty
rounds then power the board off and on and go on (or, at a round's end, check silence instead of the
banner).
"""

from __future__ import annotations

import os
import re
import select
import time

import numpy as np
import pytest

from prclab.hardware_sims.cyton import PACKET_BYTES, START_BYTE, CytonEmulator
from prclab.hardware_sims.cyton_firmware import CytonFirmware
from prclab.reservoir import make_substrate

#: one firmware reply: printable ASCII (and line ends) up to ``$$$``
REPLY = re.compile(rb"[\x20-\x7e\r\n]*?\$\$\$")
COMMANDS = b"xXz Z/~`dDcCbsv?<>V0-=p[]12345678!@#$%^&*qQ060110"
"""Bytes the firmware reacts to, drawn often so random input reaches deep into its state machine."""


def _random_input(rng: np.random.Generator, n: int) -> bytes:
    """Half uniformly random bytes, half bytes of command characters."""
    uniform = rng.integers(0, 256, n, dtype=np.uint8)
    commands = np.frombuffer(COMMANDS, np.uint8)[rng.integers(0, len(COMMANDS), n)]
    return np.where(rng.random(n) < 0.5, uniform, commands).astype(np.uint8).tobytes()


def test_firmware_parser_fuzzed_gives_only_firmware_replies():
    rng = np.random.default_rng(0)
    deadline, fed, now = time.monotonic() + 2.0, 0, 0.0
    while time.monotonic() < deadline:
        board = CytonFirmware(daisy_fitted=bool(rng.integers(2)))
        for _ in range(50):
            now += float(rng.exponential(0.3))  # sometimes past a multi-byte command's 1 s timeout
            chunk = _random_input(rng, int(rng.integers(1, 64)))
            out = board.poll(now) + board.feed(chunk, now)
            fed += len(chunk)
            assert REPLY.sub(b"", out) == b"", out  # nothing but whole replies
            assert len(board.channel_registers()) == 16 and all(0 <= r <= 255 for r in board.channel_registers())
            assert 0 <= board.sample_rate <= 6 and 0 <= board.board_mode <= 5
            if board.link_lost:
                break
    assert fed > 10_000


def _drain(fd: int, seconds: float) -> bytes:
    got, end = bytearray(), time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if select.select([fd], [], [], left)[0]:
            got += os.read(fd, 65536)
    return bytes(got)


def _text(wire: bytes) -> bytes:
    """``wire`` with its stream packets (``0xA0`` ... stop byte ``0xC0``-``0xC6``) taken out."""
    pattern = re.compile(rb"\xa0[\x00-\xff]{%d}[\xc0-\xc6]" % (PACKET_BYTES - 2), re.DOTALL)
    return pattern.sub(b"", wire)


@pytest.mark.slow
def test_emulator_fuzzed_over_its_pty_survives_and_still_answers():
    rng = np.random.default_rng(1)
    power_cycles = 0
    for round_ in range(3):
        with CytonEmulator(make_substrate("esn", 1, units=8, dt=1 / 250), seed=round_,
                           daisy=round_ == 1) as emu:
            fd = os.open(emu.port, os.O_RDWR | os.O_NOCTTY)
            try:
                end = time.monotonic() + 1.0
                while time.monotonic() < end:
                    os.write(fd, _random_input(rng, int(rng.integers(1, 200))))
                    _drain(fd, 0.01)
                    assert emu.serving
                    if emu.firmware.link_lost:  # BLE mode: power the board off and on, go on
                        os.close(fd)
                        emu.close()
                        fd = os.open(emu.start().port, os.O_RDWR | os.O_NOCTTY)
                        power_cycles += 1
                os.write(fd, b"s")
                _drain(fd, 1.2)  # past any multi-byte timeout, stream stopped
                os.write(fd, b"v")
                answer = _drain(fd, 0.5)
                assert emu.serving
                if emu.firmware.link_lost:
                    assert answer == b""
                else:
                    assert _text(answer).endswith(b"Firmware: v3.1.2\n$$$"), answer[-200:]
                    assert START_BYTE not in _text(answer)
            finally:
                os.close(fd)
    print(f"{power_cycles} power cycles after BLE mode")
