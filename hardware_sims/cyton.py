"""An OpenBCI Cyton (8-channel ADS1299 board) on a Linux pseudo-terminal, backed by a Substrate.

The emulator opens a pty (raw mode; it keeps its own handle on the slave open, else the client's reads
fail) and serves it from one thread.  It speaks the Cyton serial protocol as brainflow's own
``CYTON_BOARD`` driver uses it (brainflow ``src/board_controller/openbci/openbci_serial_board.cpp``,
``cyton.cpp``):

- ``v`` (soft reset) -> stops streaming, answers a banner ending in ``$$$``;
- ``d`` (default channel settings) -> all gains back to 24, answers ``updating channel settings to
  default$$$`` and then stays silent (brainflow reads until 1 s of silence, so ``prepare_session``
  takes about 1 s);
- ``x<ch><power><gain><input><bias><srb2><srb1>X`` (channel settings, ``ch`` in ``1``-``8``) -> sets
  that channel's gain code ``0``-``6`` (1, 2, 4, 6, 8, 12, 24), answers ``Success: Channel set for
  <ch>$$$`` (``Failure: ...$$$`` if malformed) when not streaming;
- ``b`` starts the stream, ``s`` stops it; other single-letter commands are ignored, as the firmware
  ignores unknown ones.

Stream packets (33 bytes): ``0xA0``, sample counter (one byte, wraps at 256), 8 channels x 24-bit
big-endian two's complement, 6 aux bytes (zero: no accelerometer reading), stop byte ``0xC0``; sent in
real time at 250 Hz, paced by ``time.monotonic`` (a late thread catches up with a burst, it never
slips).

Physics: sample ``k`` is the substrate's output while stimulus row ``k`` is applied.  Stimulus reaches
the emulator over its side channel :meth:`CytonEmulator.apply` (a Cyton has no stimulus output; on a
real MEA a separate stimulator drives the electrodes) and is consumed one row per packet in the order
written.  The stream runs in real time whatever the client does: while no stimulus is queued the
electrodes are held at the stimulator's rest level (:meth:`CytonEmulator.hold`; 0 V until told), so a
client that writes each block only after reading the previous one's response may leave a one-sample
rest between blocks now and then, never a sample outside its window; writing ahead avoids it.
``applied_V`` is the stimulus row applied last (the stimulator's output now).  The first
8 substrate outputs, times ``volts_per_output``, are the electrode potentials; missing channels read
0 V.  They become counts at :data:`MICROVOLTS_PER_COUNT` x 24 / gain µV per count, rounded and clipped
to 24 bits.

Faults, injected with :meth:`CytonEmulator.inject`: ``unplug`` closes the pty (both sides); ``stall``
stops sending bytes for good (commands are still read and ignored); ``garbage`` replaces the next
:data:`SPOILED_PACKETS` packets by random bytes and packets with bad stop bytes; ``drop`` leaves the
next :data:`SPOILED_PACKETS` packets out.  Both one-shot faults leave a gap in the sample counter.
"""

from __future__ import annotations

import collections
import os
import select
import time

import numpy as np

from prclab.reservoir import Substrate

from .pty_port import PtyEmulator

RATE_HZ = 250.0
N_CHANNELS = 8
PACKET_BYTES = 33
START_BYTE, STOP_BYTE = 0xA0, 0xC0
GAINS = (1, 2, 4, 6, 8, 12, 24)
"""ADS1299 programmable gains by channel-setting code ``0``-``6``."""
MICROVOLTS_PER_COUNT = 4.5 / (2 ** 23 - 1) / 24 * 1e6
"""µV per count at the default gain 24 (4.5 V reference over 2^23 - 1 counts)."""
COUNT_MIN, COUNT_MAX = -(2 ** 23), 2 ** 23 - 1
BANNER = (b"OpenBCI V3 8-16 channel\nOn Board ADS1299 Device ID: 0x3E\nLIS3DH Device ID: 0x33\n"
          b"Firmware: v3.1.2 (prclab emulator)\n$$$")
SPOILED_PACKETS = 5
"""Packets lost to one ``garbage`` or ``drop`` fault."""
MAX_OUTPUT_BYTES = 1 << 16
"""Unsent output kept when the client stops reading; older bytes are lost, as in a UART overflow."""


def volts_to_counts(volts: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """Electrode potentials ``(k, 8)`` in volts to ADS1299 counts ``(k, 8)`` int32 at ``gains`` ``(8,)``."""
    counts = np.rint(np.asarray(volts, dtype=np.float64) * 1e6 / (MICROVOLTS_PER_COUNT * 24 / gains))
    return np.clip(counts, COUNT_MIN, COUNT_MAX).astype(np.int32)


def encode_packets(counts: np.ndarray, first_counter: int) -> bytes:
    """Cyton stream packets for ``counts`` ``(k, 8)``, sample counters from ``first_counter`` (mod 256)."""
    k = len(counts)
    packets = np.zeros((k, PACKET_BYTES), dtype=np.uint8)
    packets[:, 0] = START_BYTE
    packets[:, 1] = (first_counter + np.arange(k)) % 256
    raw = counts.astype(np.int64) & 0xFFFFFF
    packets[:, 2:2 + 3 * N_CHANNELS].reshape(k, N_CHANNELS, 3)[:] = np.stack(
        [raw >> 16, raw >> 8, raw], axis=-1) & 0xFF
    packets[:, -1] = STOP_BYTE
    return packets.tobytes()


class CytonEmulator(PtyEmulator):
    """Serve the Cyton protocol on a pty, streaming ``substrate``'s outputs.  Context manager.

    Args:
        substrate: any Substrate with ``dt = 1 / 250`` s; its inputs are the stimulus channels.
        seed: passed to ``substrate.reset`` at :meth:`start`; also seeds the ``garbage`` bytes.
        volts_per_output: volts per unit of substrate output.
        record: keep what was sent, for tests: ``sent_counts`` ``(k, 8)`` int32 and ``sent_stimulus``
            ``(k, n_inputs)`` volts, one row per packet generated (dropped packets included).
    """

    thread_name = "cyton-emulator"

    def __init__(self, substrate: Substrate, seed: int = 0, volts_per_output: float = 1.0,
                 record: bool = False):
        if abs(substrate.dt * RATE_HZ - 1) > 1e-9:
            raise ValueError(f"a Cyton samples at {RATE_HZ:g} Hz; substrate dt is {substrate.dt!r} s")
        super().__init__(substrate, seed)
        self.volts_per_output, self.record = float(volts_per_output), record
        self.packets_sent = 0
        self._counts_log: list[np.ndarray] = []
        self._stim_log: list[np.ndarray] = []
        self._stimulus: collections.deque[np.ndarray] = collections.deque()
        self.hold_V = np.zeros(substrate.n_inputs)
        self.applied_V = np.zeros(substrate.n_inputs)
        self._rng = np.random.default_rng(seed)
        self._reset_board()

    def _reset_board(self) -> None:
        self._gains = np.full(N_CHANNELS, 24.0)
        self._streaming = False
        self._counter = 0
        self._t0 = 0.0
        self._generated = 0
        self._spoil = 0
        self._spoil_kind: str | None = None

    def _on_fault(self, fault: str) -> None:
        if fault in ("garbage", "drop"):
            self._spoil, self._spoil_kind = SPOILED_PACKETS, fault

    def start(self):
        """Start serving (again, after ``close``): a fresh board, nothing queued; returns ``self``."""
        with self._lock:
            self._stimulus.clear()
        self._reset_board()
        return super().start()

    def hold(self, level_V) -> None:
        """Hold the stimulus at ``level_V`` (scalar or ``(n_inputs,)`` volts) whenever none is queued."""
        level = np.broadcast_to(np.asarray(level_V, dtype=np.float64), (self.substrate.n_inputs,))
        if not np.isfinite(level).all():
            raise ValueError(f"hold level must be finite, got {level_V!r}")
        with self._lock:
            self.hold_V = level.copy()
            alive = self._thread is not None and self._thread.is_alive()
            if not (self._streaming and alive) or self.fault in ("unplug", "stall"):
                # no packets are paced now: the stimulator (its own device, on its own clock) has
                # played out whatever was queued and holds the level
                self._stimulus.clear()
                self.applied_V = level.copy()

    def apply(self, block: np.ndarray) -> None:
        """Queue stimulus ``block`` ``(n, n_inputs)`` volts: the side channel a real stimulator is."""
        block = np.asarray(block, dtype=np.float64)
        if block.ndim != 2 or block.shape[1] != self.substrate.n_inputs:
            raise ValueError(f"stimulus block must be (n, {self.substrate.n_inputs}), got {block.shape}")
        with self._lock:
            self._stimulus.append(block.copy())

    @property
    def sent_counts(self) -> np.ndarray:
        """Counts generated so far ``(k, 8)`` int32 (needs ``record=True``)."""
        with self._lock:
            return np.concatenate(self._counts_log) if self._counts_log else \
                np.zeros((0, N_CHANNELS), np.int32)

    @property
    def sent_stimulus(self) -> np.ndarray:
        """Stimulus applied so far ``(k, n_inputs)`` volts, one row per packet (needs ``record=True``)."""
        with self._lock:
            return np.concatenate(self._stim_log) if self._stim_log else \
                np.zeros((0, self.substrate.n_inputs))

    # -- serving -------------------------------------------------------------------------------
    def _serve(self) -> None:
        inbuf, out = bytearray(), bytearray()
        while not self._stop.is_set():
            with self._lock:
                fd, fault = self._master, self.fault
            if fault == "unplug":  # closed here, so no other thread's fd can take its number meanwhile
                self._close_pty()
            if fd < 0 or fault == "unplug":
                return
            stalled = fault == "stall"
            if self._streaming and not stalled:
                out += self._due_packets()
            wait = 0.05
            if self._streaming and not stalled:
                wait = max(0.0, self._t0 + (self._generated + 1) / RATE_HZ - time.monotonic())
            try:
                readable, writable, _ = select.select([fd], [fd] if out and not stalled else [], [],
                                                      min(wait, 0.05))
                if readable:
                    data = os.read(fd, 4096)
                    if not stalled:
                        inbuf += data
                if writable:
                    del out[:os.write(fd, bytes(out))]
            except (OSError, ValueError):
                return  # pty closed (unplug or close)
            out += self._on_input(inbuf)
            del out[:max(0, len(out) - MAX_OUTPUT_BYTES)]

    def _on_input(self, inbuf: bytearray) -> bytes:
        """Consume complete commands from ``inbuf``; returns the replies."""
        replies = bytearray()
        while inbuf:
            c = chr(inbuf[0])
            if c == "x":
                if len(inbuf) < 9:  # wait for the rest of the channel-setting command
                    break
                replies += self._channel_setting(bytes(inbuf[:9]).decode("ascii", "replace"))
                del inbuf[:9]
                continue
            del inbuf[:1]
            if c == "v":
                self._reset_board()
                replies += BANNER
            elif c == "d":
                self._gains[:] = 24.0
                replies += b"updating channel settings to default$$$"
            elif c == "b" and not self._streaming:
                self._streaming, self._t0, self._generated = True, time.monotonic(), 0
            elif c == "s":
                self._streaming = False
        return bytes(replies)

    def _channel_setting(self, cmd: str) -> bytes:
        ok = (cmd[8] == "X" and cmd[1] in "12345678" and cmd[2] in "01" and cmd[3] in "0123456"
              and cmd[4] in "01234567" and all(b in "01" for b in cmd[5:8]))
        if ok:
            self._gains[int(cmd[1]) - 1] = GAINS[int(cmd[3])]
        if self._streaming:
            return b""
        return (f"Success: Channel set for {cmd[1]}$$$" if ok else
                "Failure: too few chars$$$").encode("ascii")

    def _take_stimulus(self, k: int) -> np.ndarray:
        """The next ``k`` stimulus rows ``(k, n_inputs)``; the hold level where none is queued."""
        filled = 0
        with self._lock:
            u = np.repeat(self.hold_V[None], k, axis=0)
            while filled < k and self._stimulus:
                block = self._stimulus[0]
                take = min(k - filled, len(block))
                u[filled:filled + take] = block[:take]
                filled += take
                if take == len(block):
                    self._stimulus.popleft()
                else:
                    self._stimulus[0] = block[take:]
            if k:
                self.applied_V = u[-1].copy()
        return u

    def _due_packets(self) -> bytes:
        """Generate every packet due by now: run the substrate on their stimulus and encode them."""
        k = int((time.monotonic() - self._t0) * RATE_HZ) - self._generated
        if k <= 0:
            return b""
        u = self._take_stimulus(k)
        y = np.asarray(self.substrate.run(u[None])[0], dtype=np.float64)[:, :N_CHANNELS]
        volts = np.zeros((k, N_CHANNELS))
        volts[:, :y.shape[1]] = y * self.volts_per_output
        counts = volts_to_counts(volts, self._gains)
        wire = encode_packets(counts, self._counter)
        with self._lock:
            spoil, kind = min(self._spoil, k), self._spoil_kind
            self._spoil -= spoil
            if self.record:
                self._counts_log.append(counts)
                self._stim_log.append(u)
        self._counter = (self._counter + k) % 256
        self._generated += k
        self.packets_sent += k - spoil
        if spoil:
            wire = self._spoiled(wire, spoil, kind)
        return wire

    def _spoiled(self, wire: bytes, n: int, kind: str) -> bytes:
        """``wire`` with its first ``n`` packets dropped, or replaced by garbage: random bytes for
        all but the last two, which keep their bytes but end in a bad stop byte."""
        head, tail = wire[:n * PACKET_BYTES], wire[n * PACKET_BYTES:]
        if kind == "drop":
            return tail
        bad = bytearray(head)
        n_random = max(n - 2, 0) * PACKET_BYTES
        bad[:n_random] = self._rng.integers(0, 256, n_random, dtype=np.uint8).tobytes()
        for p in range(max(n - 2, 0), n):
            bad[p * PACKET_BYTES + PACKET_BYTES - 1] = 0xFF
        return bytes(bad) + tail
