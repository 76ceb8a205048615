"""An OpenBCI Cyton (ADS1299 board, optionally with its Daisy module) on a pseudo-terminal, backed by a Substrate.

The emulator opens a pty (raw mode; it keeps its own handle on the slave open, else the client's reads
fail) and serves it from one thread, as the board behind its USB dongle: brainflow's own ``CYTON_BOARD``
and ``CYTON_DAISY_BOARD`` drivers (``src/board_controller/openbci/``) and any program written for the
real board talk to it unchanged.  Every byte the host sends goes through the firmware's command
interpreter, :class:`~prclab.hardware_sims.cyton_firmware.CytonFirmware` (firmware v3.1.5; the command
table and its replies are there and in ``docs/emulators-cyton.md``).

Stream packets (33 bytes, as the dongle delivers them): ``0xA0`` (the board sends ``'A'``, the dongle's
radio turns it into ``0xA0``), sample counter (one byte, restarting at 0 whenever the firmware
(re)starts the ADS1299), 8 channels x 24-bit big-endian two's complement, 6 aux bytes, stop byte
``0xC0 | packet type``, in real time at 250 Hz, paced by ``time.monotonic`` (a late thread catches up
with a burst, it never slips).  Over the serial link the firmware always streams at 250 Hz (``b``
resets a faster ``~n`` rate; the radio cannot carry more).  Aux bytes by packet type:

- ``0xC0`` (board modes default and debug): the LIS3DH accelerometer, X, Y, Z as 16-bit big-endian,
  left-justified 12-bit readings at +-4 g (:data:`ACCEL_COUNTS_PER_G` counts per g; brainflow scales by
  0.002 / 16 g per count); new readings come at 25 Hz, so every 10th packet carries them and the others
  carry zeros, as the firmware zeroes them after each packet.  The board lies still: a static gravity
  vector (:attr:`CytonEmulator.gravity_g`) plus :data:`ACCEL_NOISE_G` rms noise.
- ``0xC1`` raw aux: analog mode ``/2`` reads pins A5, A6, A7 (10-bit, 0-1023 over 0-3.3 V:
  :attr:`CytonEmulator.analog_V`); digital mode ``/3`` reads D11, D12, D13, D17, D18
  (:attr:`CytonEmulator.digital_in`) packed as the firmware packs them; marker mode ``/4`` puts the
  marker byte of a ```x`` command in the first two bytes of one packet.
- ``0xC3``/``0xC4`` (``<`` time stamps, accelerometer on) and ``0xC5``/``0xC6`` (accelerometer off):
  two aux bytes (an accelerometer axis on counters ending in 7, 8, 9, or the raw aux word) and the
  board's millisecond clock (4 bytes, big-endian); the first packet after ``<`` is the ``SET`` one.

Daisy (``daisy=True``: a Daisy module is fitted, found at ``v``, attached by ``C``, removed by ``c``):
both ADS1299s sample at 250 Hz and the packets alternate, as the firmware sends them: odd counters
carry the on-board channels 1-8, even counters the Daisy's 9-16, each the average of that board's
latest two samples (so brainflow's ``CYTON_DAISY_BOARD`` gets 16 channels at 125 Hz).

What each channel reads follows its CHnSET register (``x...X``, ``1``-``8``/``!``-``*``, test-signal
commands and ``d`` set it, as the firmware does): a powered-down channel reads 0; the input type picks
the signal - normal: the electrode (the substrate); shorted, bias measurement, bias drive: amplifier
noise only; test signal: the ADS1299's internal square wave (+-(VREFP - VREFN) / 2.4 mV, i.e. +-1.875 mV
at 1x and +-3.75 mV at 2x, at fCLK / 2^21 = 0.977 Hz slow or fCLK / 2^20 = 1.95 Hz fast with fCLK =
2.048 MHz, or at DC: ADS1299 datasheet, CONFIG2); supply measurement: DVDD / 4 (0.825 V) on channels
3-4 and (AVDD + AVSS) / 2 = 0 V on the others; temperature: 145.3 mV (the datasheet's reading at 25
°C).  Every powered channel adds the amplifier's input-referred noise (``noise_uV_rms``).  Volts become
counts at :data:`MICROVOLTS_PER_COUNT` x 24 / gain µV per count (4.5 V reference), rounded and clipped
to 24 bits (a channel rails where the real one would).  Lead-off and bias settings are kept (the ``?``
dump shows them) but do not change the signals.

Physics: ADS sample ``k`` is the substrate's output while stimulus row ``k`` is applied.  Stimulus
reaches the emulator over its side channel :meth:`CytonEmulator.apply` (a Cyton has no stimulus output;
on a real MEA a separate stimulator drives the electrodes) and is consumed one row per ADS sample in
the order written.  The stream runs in real time whatever the client does: while no stimulus is queued
the electrodes are held at the stimulator's rest level (:meth:`CytonEmulator.hold`; 0 V until told),
so a client that writes each block only after reading the previous one's response may leave a
one-sample rest between blocks now and then, never a sample outside its window; writing ahead avoids
it.  ``applied_V`` is the stimulus row applied last (the stimulator's output now).  The substrate's
first 8 outputs (16 with a Daisy), times ``volts_per_output`` (by default :data:`VOLTS_PER_OUTPUT`, so
a substrate's unit-scale outputs become tens of µV, an EEG's range, far from the +-187.5 mV rail at
gain 24), are the electrode potentials; missing outputs read 0 V.

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

from . import cyton_firmware as fw
from .cyton_firmware import CytonFirmware
from .pty_port import PtyEmulator

RATE_HZ = 250.0
N_CHANNELS = 8
"""Channels per ADS1299 (per packet); a Daisy adds 8 more, sent in alternate packets."""
PACKET_BYTES = 33
START_BYTE, STOP_BYTE = 0xA0, 0xC0
GAINS = fw.GAINS
MICROVOLTS_PER_COUNT = 4.5 / (2 ** 23 - 1) / 24 * 1e6
"""µV per count at the default gain 24 (4.5 V reference over 2^23 - 1 counts)."""
COUNT_MIN, COUNT_MAX = -(2 ** 23), 2 ** 23 - 1
VOLTS_PER_OUTPUT = 50e-6
"""Default electrode volts per unit of substrate output: unit-scale outputs become tens of µV."""
NOISE_UV_RMS = 0.2
"""Default amplifier input-referred noise, µV rms, of the order the ADS1299 datasheet gives at high
gain and 250 SPS (its noise table: 0.57 µV rms at gain 2, falling with gain)."""
TEST_SIGNAL_V = 4.5 / 2.4e3
"""ADS1299 internal test signal amplitude at 1x: (VREFP - VREFN) / 2.4 mV, volts."""
TEST_HALF_PERIOD = {0: 128, 1: 64}
"""Half period of the pulsed test signal in 250 Hz samples by CONFIG2 frequency bits (fCLK / 2^21 and
fCLK / 2^20 at fCLK = 2.048 MHz); other codes are DC."""
MVDD_V = np.array([0.0, 0.0, 3.3 / 4, 3.3 / 4, 0.0, 0.0, 0.0, 0.0] * 2)
"""Supply-measurement input per channel: DVDD / 4 on channels 3-4, (AVDD + AVSS) / 2 elsewhere."""
TEMPERATURE_V = 145.3e-3
"""Temperature-sensor input at 25 °C (ADS1299 datasheet: 145,300 µV + 490 µV/°C above 25 °C)."""
ACCEL_COUNTS_PER_G = 16 / 0.002
"""LIS3DH at +-4 g, high resolution: 2 mg per 12-bit step, left-justified in 16 bits."""
ACCEL_NOISE_G = 3e-3
ACCEL_EVERY = 10
"""ADS samples per accelerometer reading (25 Hz of 250)."""
GRAVITY_G = (0.05, -0.03, 0.998)
"""Default static acceleration, g: a board lying nearly flat."""
ANALOG_FULL_SCALE_V, ANALOG_MAX = 3.3, 1023
SPOILED_PACKETS = 5
"""Packets lost to one ``garbage`` or ``drop`` fault."""
MAX_OUTPUT_BYTES = 1 << 16
"""Unsent output kept when the client stops reading; older bytes are lost, as in a UART overflow."""


def volts_to_counts(volts: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """ADS1299 inputs ``(k, n)`` in volts to counts ``(k, n)`` int32 at ``gains`` ``(n,)``."""
    counts = np.rint(np.asarray(volts, dtype=np.float64) * 1e6 / (MICROVOLTS_PER_COUNT * 24 / gains))
    return np.clip(counts, COUNT_MIN, COUNT_MAX).astype(np.int32)


def encode_packets(counts: np.ndarray, first_counter: int, aux: np.ndarray | None = None,
                   stop: np.ndarray | int = STOP_BYTE) -> bytes:
    """Cyton stream packets for ``counts`` ``(k, 8)``, sample counters from ``first_counter`` (mod 256),
    aux bytes ``aux`` ``(k, 6)`` uint8 (zeros if None), stop bytes ``stop`` (scalar or ``(k,)``)."""
    k = len(counts)
    packets = np.zeros((k, PACKET_BYTES), dtype=np.uint8)
    packets[:, 0] = START_BYTE
    packets[:, 1] = (first_counter + np.arange(k)) % 256
    raw = counts.astype(np.int64) & 0xFFFFFF
    packets[:, 2:2 + 3 * N_CHANNELS].reshape(k, N_CHANNELS, 3)[:] = np.stack(
        [raw >> 16, raw >> 8, raw], axis=-1) & 0xFF
    if aux is not None:
        packets[:, 26:32] = aux
    packets[:, -1] = stop
    return packets.tobytes()


def _words(values: np.ndarray) -> np.ndarray:
    """16-bit words ``(k, 3)`` (any int) as big-endian aux bytes ``(k, 6)`` uint8."""
    v = np.asarray(values, dtype=np.int64) & 0xFFFF
    return np.stack([v >> 8, v & 0xFF], axis=-1).reshape(len(v), 6).astype(np.uint8)


class CytonEmulator(PtyEmulator):
    """Serve the Cyton protocol on a pty, streaming ``substrate``'s outputs.  Context manager.

    Args:
        substrate: any Substrate with ``dt = 1 / 250`` s; its inputs are the stimulus channels.
        seed: passed to ``substrate.reset`` at :meth:`start`; also seeds the noise and ``garbage`` bytes.
        volts_per_output: electrode volts per unit of substrate output.
        record: keep what was sampled, for tests: ``sent_counts`` ``(k, n_channels)`` int32 and
            ``sent_stimulus`` ``(k, n_inputs)`` volts, one row per ADS sample (dropped packets included).
        daisy: a Daisy module is fitted (16 channels, the substrate's first 16 outputs).
        noise_uV_rms: amplifier input-referred noise on every powered channel, µV rms (0: none).

    Attributes a test or a rehearsal may set while serving: ``analog_V`` ``(3,)`` volts on A5, A6, A7;
    ``digital_in`` pin -> 0/1 for D11, D12, D13, D17, D18; ``gravity_g`` ``(3,)`` the static
    acceleration.  ``firmware`` is the board's command interpreter (its state: board mode, registers).
    """

    thread_name = "cyton-emulator"

    def __init__(self, substrate: Substrate, seed: int = 0, volts_per_output: float = VOLTS_PER_OUTPUT,
                 record: bool = False, daisy: bool = False, noise_uV_rms: float = NOISE_UV_RMS):
        if abs(substrate.dt * RATE_HZ - 1) > 1e-9:
            raise ValueError(f"a Cyton samples at {RATE_HZ:g} Hz; substrate dt is {substrate.dt!r} s")
        if not (np.isfinite(noise_uV_rms) and noise_uV_rms >= 0):
            raise ValueError(f"noise_uV_rms must be >= 0, got {noise_uV_rms!r}")
        super().__init__(substrate, seed)
        self.volts_per_output, self.record = float(volts_per_output), record
        self.daisy, self.noise_uV_rms = bool(daisy), float(noise_uV_rms)
        self.n_channels = 2 * N_CHANNELS if daisy else N_CHANNELS
        self.packets_sent = 0
        self.analog_V = np.zeros(3)
        self.digital_in = {11: 0, 12: 0, 13: 0, 17: 0, 18: 0}
        self.gravity_g = np.array(GRAVITY_G)
        self._counts_log: list[np.ndarray] = []
        self._stim_log: list[np.ndarray] = []
        self._stimulus: collections.deque[np.ndarray] = collections.deque()
        self.hold_V = np.zeros(substrate.n_inputs)
        self.applied_V = np.zeros(substrate.n_inputs)
        self._rng = np.random.default_rng(seed)
        self._reset_board()

    def _reset_board(self) -> None:
        """Power the board on: firmware state, counters, the Daisy averaging memory."""
        self.firmware = CytonFirmware(self.daisy)
        self._boot = time.monotonic()
        self._epoch = self.firmware.stream_starts
        self._paced = False
        self._counter = 0
        self._t0 = 0.0
        self._generated = 0
        self._samples = 0                          # ADS samples since power-on (the test-signal clock)
        self._axis = np.zeros(3, np.int64)         # the accelerometer's last reading, counts
        self._last = np.zeros((2, N_CHANNELS), np.int64)   # each ADS's previous sample (Daisy averaging)
        self._mean = np.zeros((2, N_CHANNELS), np.int64)   # each ADS's last averaged sample
        self._first_packet = True
        self._spoil = 0
        self._spoil_kind: str | None = None

    @property
    def streaming(self) -> bool:
        """Whether the board streams now (after ``b``, until ``s``, ``v``, ``j`` or a fault)."""
        return self.firmware.streaming and not self.firmware.link_lost

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
            if not (self.streaming and alive) or self.fault in ("unplug", "stall"):
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

    def played_out(self, timeout_s: float = 2.0) -> bool:
        """Wait up to ``timeout_s`` seconds until every queued stimulus row has been applied; returns
        whether it has (``applied_V`` is then the stimulator's final level)."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                if not self._stimulus:
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)

    @property
    def sent_counts(self) -> np.ndarray:
        """ADS counts sampled so far ``(k, n_channels)`` int32, before any Daisy averaging (needs
        ``record=True``)."""
        with self._lock:
            return np.concatenate(self._counts_log) if self._counts_log else \
                np.zeros((0, self.n_channels), np.int32)

    @property
    def sent_stimulus(self) -> np.ndarray:
        """Stimulus applied so far ``(k, n_inputs)`` volts, one row per ADS sample (needs ``record=True``)."""
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
            if self._paced and not stalled:
                out += self._due_packets()
            wait = 0.05
            if self._paced and not stalled:
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
            now = time.monotonic()
            out += self.firmware.feed(bytes(inbuf), now) + self.firmware.poll(now)
            inbuf.clear()
            if self.firmware.link_lost:
                out.clear()  # BLE mode: the board talks at 9600 baud, nothing reaches the dongle
            self._follow_stream(now)
            del out[:max(0, len(out) - MAX_OUTPUT_BYTES)]

    def _follow_stream(self, now: float) -> None:
        """Track the firmware's stream starts: counter and averaging restart, pacing starts if idle."""
        if not self.streaming:
            if self._paced:  # the stimulator, on its own clock, plays out what it was handed
                with self._lock:
                    if self._stimulus:
                        self.applied_V = self._stimulus[-1][-1].copy()
                        self._stimulus.clear()
            self._paced = False
            return
        if self.firmware.stream_starts != self._epoch:
            self._epoch = self.firmware.stream_starts
            self._counter, self._first_packet = 0, True
        if not self._paced:
            self._paced, self._t0, self._generated = True, now, 0

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

    def _inputs_V(self, electrodes: np.ndarray, chset: np.ndarray) -> np.ndarray:
        """What each ADS1299 channel converts ``(k, 16)`` volts: by input mux, plus amplifier noise."""
        k = len(electrodes)
        mux = chset & 0x07
        amp_bit, freq = self.firmware.test_signal
        index = self._samples + np.arange(k)
        if freq in TEST_HALF_PERIOD:
            square = np.where((index // TEST_HALF_PERIOD[freq]) % 2 == 0, 1.0, -1.0)
        else:
            square = np.full(k, -1.0)  # DC: -(VREFP - VREFN) / 2.4 mV
        test = TEST_SIGNAL_V * (1 + amp_bit) * square
        volts = np.zeros((k, 2 * N_CHANNELS))
        volts[:, mux == fw.NORMAL] = electrodes[:, mux == fw.NORMAL]
        volts[:, mux == fw.TESTSIG] = test[:, None]
        volts[:, mux == fw.MVDD] = MVDD_V[mux == fw.MVDD]
        volts[:, mux == fw.TEMP] = TEMPERATURE_V
        if self.noise_uV_rms:
            volts += self._rng.normal(0.0, self.noise_uV_rms * 1e-6, volts.shape)
        return volts

    def _due_packets(self) -> bytes:
        """Generate every packet due by now: run the substrate on their stimulus and encode them."""
        k = int((time.monotonic() - self._t0) * RATE_HZ) - self._generated
        if k <= 0:
            return b""
        u = self._take_stimulus(k)
        y = np.asarray(self.substrate.run(u[None])[0], dtype=np.float64)[:, :self.n_channels]
        electrodes = np.zeros((k, 2 * N_CHANNELS))
        electrodes[:, :y.shape[1]] = y * self.volts_per_output
        chset = np.array(self.firmware.channel_registers())
        gains = np.array(GAINS)[np.minimum((chset >> 4) & 0x07, len(GAINS) - 1)].astype(np.float64)
        counts = volts_to_counts(self._inputs_V(electrodes, chset), gains)
        counts[:, chset & 0x80 != 0] = 0  # a powered-down channel converts nothing
        counters = (self._counter + np.arange(k)) % 256
        wire = encode_packets(self._channel_data(counts, counters), self._counter,
                              *self._aux(k, counters))
        with self._lock:
            spoil, kind = min(self._spoil, k), self._spoil_kind
            self._spoil -= spoil
            if self.record:
                self._counts_log.append(counts[:, :self.n_channels])
                self._stim_log.append(u)
        self._counter = (self._counter + k) % 256
        self._generated += k
        self._samples += k
        self.packets_sent += k - spoil
        if spoil:
            wire = self._spoiled(wire, spoil, kind)
        return wire

    def _channel_data(self, counts: np.ndarray, counters: np.ndarray) -> np.ndarray:
        """The 8 channels each packet carries ``(k, 8)``: the board's, or with a Daisy attached the
        average of the latest two samples of the board (odd counters) or the Daisy (even counters)."""
        if not self.firmware.daisy:
            return counts[:, :N_CHANNELS]
        k = len(counts)
        both = counts.astype(np.int64).reshape(k, 2, N_CHANNELS)
        previous = np.concatenate([self._last[None], both[:-1]])
        mean = np.trunc((previous + both) / 2).astype(np.int64)  # the firmware's int division
        if self._first_packet:  # the board's first average after a start is the stale one
            mean[0, 0] = self._mean[0]
        self._last, self._mean, self._first_packet = both[-1].copy(), mean[-1].copy(), False
        return np.where((counters % 2 == 1)[:, None], mean[:, 0], mean[:, 1])

    def _aux(self, k: int, counters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Aux bytes ``(k, 6)`` and stop bytes ``(k,)`` by the firmware's packet type and board mode."""
        firmware = self.firmware
        index = self._samples + np.arange(k)
        fresh = index % ACCEL_EVERY == 0
        axis = np.zeros((k, 3), np.int64)
        if firmware.accel_on and fresh.any():
            g = self.gravity_g + self._rng.normal(0.0, ACCEL_NOISE_G, (int(fresh.sum()), 3))
            axis[fresh] = np.clip(np.rint(g * ACCEL_COUNTS_PER_G / 16), -2048, 2047).astype(np.int64) * 16
        types = np.empty(k, np.int64)
        for j in range(k):
            types[j] = firmware.packet_type
            firmware.packet_sent()
        raw = np.zeros((k, 3), np.int64)
        if firmware.board_mode == fw.ANALOG:
            raw[:] = np.clip(np.rint(np.asarray(self.analog_V, float) / ANALOG_FULL_SCALE_V * ANALOG_MAX),
                             0, ANALOG_MAX)
        elif firmware.board_mode == fw.DIGITAL:
            d = {pin: int(bool(self.digital_in.get(pin, 0))) for pin in (11, 12, 13, 17, 18)}
            raw[:] = [d[11] << 8 | d[12], d[13] << 8 | d[17], d[18]]
        elif firmware.board_mode == fw.MARKER:
            marker = firmware.take_marker()
            if marker is not None:
                raw[0, 0] = marker
        aux = np.where((types == fw.ACCEL)[:, None], _words(axis), _words(raw))
        timed = np.isin(types, (fw.ACCEL_TIME_SET, fw.ACCEL_TIME_SYNC, fw.RAW_AUX_TIME_SET,
                                fw.RAW_AUX_TIME_SYNC))
        if timed.any():
            held = axis.copy()  # the accelerometer's latest reading, held between readings
            for j in range(k):
                if fresh[j]:
                    self._axis = axis[j].copy()
                held[j] = self._axis
            word = np.where(np.isin(types, (fw.ACCEL_TIME_SET, fw.ACCEL_TIME_SYNC)),
                            np.where(np.isin(counters % 10, (7, 8, 9)),
                                     held[np.arange(k), np.clip(counters % 10 - 7, 0, 2)], 0), raw[:, 0])
            ms = (np.rint((self._t0 + (self._generated + np.arange(k)) / RATE_HZ - self._boot) * 1000)
                  .astype(np.int64) & 0xFFFFFFFF)
            stamped = np.stack([word >> 8, word, ms >> 24, ms >> 16, ms >> 8, ms], axis=-1) & 0xFF
            aux[timed] = stamped[timed].astype(np.uint8)
        elif fresh.any():
            self._axis = axis[np.flatnonzero(fresh)[-1]].copy()
        return aux, (STOP_BYTE | types).astype(np.uint8)

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
