"""The OpenBCI Cyton's command interpreter, as firmware v3.1.5 runs it (no serial port, no signals here).

A byte-for-byte model of what the board's PIC32 does with each character it receives over the dongle,
read from OpenBCI_Cyton_Library (``OpenBCI_32bit_Library.cpp``: ``processChar`` and the functions it
calls; ``examples/DefaultBoard``: ``sdProcessChar`` sees every byte first).  :class:`CytonFirmware` keeps
the board's state (the ADS1299 registers of the board and of a Daisy module, the channel-settings array,
board mode, sample rate, time-stamp mode, streaming) and returns the firmware's replies, ``$$$``-ended
as the firmware's ``sendEOT`` ends them.  The stream itself (what the channels read, the packets) is
:mod:`prclab.hardware_sims.cyton`'s; it asks this model for the channel registers, the packet type and
the pending marker.

Faithful details a lab program may trip over (all from the source above):

- Replies are suppressed while streaming for most commands (``x``, ``z``, ``d``, ``?``, ``~n``, test
  signals, ``<``/``>``), but ``/n`` and ``//`` (board mode), ``~~``, ``D``, ``V`` and ``C`` answer even
  then, into the stream (brainflow skips them: its reader syncs on ``0xA0``).
- Multi-character commands (``x...X``, ``z...Z``, ``/n``, ``~n``, a marker) must complete within 1 s of
  their first byte, else ``Timeout processing multi byte message - please send all commands at once as
  of v2$$$`` and the next byte is a command again.  Unknown characters are ignored silently.
- Any command that touches the ADS1299 while streaming stops and restarts it (``streamSafe...``), which
  restarts the packet counter at 0; :attr:`CytonFirmware.stream_starts` counts these restarts.
- ``~n`` re-initialises the ADS1299 (every channel back to its defaults), and ``b`` over the serial link
  forces 250 Hz first (the radio cannot carry more), which re-initialises it again: over a dongle the
  stream always runs at 250 Hz whatever ``~n`` said, while brainflow (which tracks ``~n``) reports the
  new rate.
- ``/5`` (BLE) re-opens the board's serial port at 9600 baud: the dongle's 115200-baud link is lost, so
  nothing more is understood or sent (:attr:`CytonFirmware.link_lost`) until the board is powered again.
- SD-card commands (``A S F G H J K L a``) answer that no card is fitted; ``j`` stops streaming.
- No WiFi shield is fitted: ``{ } : ;`` answer as the firmware does without one.

Sources: OpenBCI_Cyton_Library v3.1.5 (github.com/OpenBCI/OpenBCI_Cyton_Library), the ADS1299 datasheet
(TI SBAS499: register map and reset values).
"""

from __future__ import annotations

FIRMWARE_VERSION = "v3.1.5"
"""What ``V`` answers (v3.1.5; its soft-reset banner still says v3.1.2, as the firmware's does)."""
EOT = b"$$$"
ADS_ID = 0x3E
"""ADS1299 device id (register 0x00)."""
LIS3DH_ID = 0x33
GAINS = (1, 2, 4, 6, 8, 12, 24)
"""ADS1299 PGA gains by channel-setting code ``0``-``6`` (CHnSET bits 6:4)."""
SAMPLE_RATES_HZ = (16000, 8000, 4000, 2000, 1000, 500, 250)
"""Sample rates by ``~n`` code ``0``-``6`` (CONFIG1 data-rate bits)."""
RATE_250 = 6
BOARD_MODES = ("default", "debug", "analog", "digital", "marker", "BLE")
"""Board modes by ``/n`` code, as ``getBoardMode`` names them."""
DEFAULT, DEBUG, ANALOG, DIGITAL, MARKER, BLE = range(6)
ACCEL, RAW_AUX, ACCEL_TIME_SET, ACCEL_TIME_SYNC, RAW_AUX_TIME_SET, RAW_AUX_TIME_SYNC = 0, 1, 3, 4, 5, 6
"""Packet types; a packet's stop byte is ``0xC0 | type``."""
NORMAL, SHORTED, BIAS_MEAS, MVDD, TEMP, TESTSIG, BIAS_DRP, BIAS_DRN = range(8)
"""ADS1299 input-multiplexer codes (CHnSET bits 2:0), the channel setting's input type."""
MULTI_CHAR_TIMEOUT_S = 1.0
CHANNEL_LETTERS = "12345678QWERTYUI"
CHANNEL_OFF = "12345678qwertyui"
CHANNEL_ON = "!@#$%^&*QWERTYUI"
SD_COMMANDS = "ASFGHJKLa"
TEST_SIGNALS = {"0": (SHORTED, None, None), "-": (TESTSIG, 0x00, 0x00), "=": (TESTSIG, 0x00, 0x01),
                "p": (TESTSIG, 0x04, 0x03), "[": (TESTSIG, 0x04, 0x00), "]": (TESTSIG, 0x04, 0x01)}
"""Test-signal command -> (input type for every channel, CONFIG2 amplitude bit, frequency bits);
None keeps the current bits (``0`` only shorts the inputs)."""

# ADS1299 register addresses and reset values (datasheet register map)
ID, CONFIG1, CONFIG2, CONFIG3, LOFF, CH1SET = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05
BIAS_SENSP, BIAS_SENSN, LOFF_SENSP, LOFF_SENSN, MISC1 = 0x0D, 0x0E, 0x0F, 0x10, 0x15
REGISTER_NAMES = ("ADS_ID", "CONFIG1", "CONFIG2", "CONFIG3", "LOFF", "CH1SET", "CH2SET", "CH3SET",
                  "CH4SET", "CH5SET", "CH6SET", "CH7SET", "CH8SET", "BIAS_SENSP", "BIAS_SENSN",
                  "LOFF_SENSP", "LOFF_SENSN", "LOFF_FLIP", "LOFF_STATP", "LOFF_STATN", "GPIO", "MISC1",
                  "MISC2", "CONFIG4")
RESET_VALUES = bytes([ADS_ID, 0x96, 0xC0, 0x60, 0x00] + [0x61] * 8 + [0x00] * 7 + [0x0F, 0x00, 0x00, 0x00])
CONFIG1_DAISY, CONFIG1_NO_DAISY = 0xB0, 0x90
"""CONFIG1 without the rate bits: on-board ADS driving the Daisy's clock, or not."""
LIS3DH_GROUPS = (range(0x07, 0x10), range(0x1F, 0x34), range(0x38, 0x3E))
"""LIS3DH registers the ``?`` dump lists (STATUS_REG_AUX..WHO_AM_I, TMP_CFG_REG..INT1_DURATION,
CLICK_CFG..TIME_WINDOW)."""
SD_NO_CARD = (b"initialization failed. Things to check:\r\n* is a card is inserted?\r\n"
              b"Could not find FAT16/FAT32 partition. Make sure you've formatted the card\r\n")
DEFAULT_SETTINGS = (0, 0x60, NORMAL, 1, 1, 0)
"""Channel-settings array defaults: power-down NO, gain 24, normal input, in bias, SRB2 on, SRB1 off."""
POWER, GAIN, INPUT, BIAS, SRB2, SRB1 = range(6)


def _number(c: str) -> int:
    """``getNumberForAsciiChar``: ``'0'``-``'9'`` as a number, anything else 0."""
    return ord(c) - 48 if "0" <= c <= "9" else 0


class CytonFirmware:
    """The board's state and command interpreter.  Feed it the bytes the host sends.

    Args:
        daisy_fitted: a Daisy module is plugged in (found at soft reset, attached by ``C``).
    """

    def __init__(self, daisy_fitted: bool = False):
        self.daisy_fitted = bool(daisy_fitted)
        self.power_on()

    # -- state --------------------------------------------------------------------------------------
    def power_on(self) -> None:
        """``initializeVariables`` then ``boardReset`` (its banner goes nowhere: no host yet)."""
        self.board_mode, self.accel_on, self.time_sync = DEFAULT, True, False
        self.sample_rate = RATE_250
        self.streaming = False
        self.link_lost = False
        self.stream_starts = 0
        self.marker: int | None = None
        self._multi: str | None = None
        self._deadline = 0.0
        self._args = ""
        self._set_packet_type()
        self._soft_reset()

    def _soft_reset(self) -> bytes:
        """``boardReset`` (``v``): re-initialise the ADS1299s and the lead-off setting; the banner."""
        self._initialize_ads()
        for ads in self._present_ads():
            self.regs[ads][LOFF] = (self.regs[ads][LOFF] & 0xF0) | 0x02  # lead-off 6 nA at 31.2 Hz
        lines = [b"OpenBCI V3 8-16 channel", b"On Board ADS1299 Device ID: 0x%02X" % ADS_ID]
        if self.daisy:
            lines.append(b"On Daisy ADS1299 Device ID: 0x%02X" % ADS_ID)
        lines += [b"LIS3DH Device ID: 0x%02X" % LIS3DH_ID, b"Firmware: v3.1.2"]
        return b"\n".join(lines) + b"\n" + EOT

    def _initialize_ads(self) -> None:
        """``initialize_ads``: reset both ADS1299s, look for the Daisy, write the default settings."""
        self.regs = [bytearray(16), bytearray(16)]
        self._reset_ads(0)
        self._reset_ads(1)
        self.daisy = self.daisy_fitted
        self.num_channels = 16 if self.daisy else 8
        self.regs[0][CONFIG1] = (CONFIG1_DAISY if self.daisy else CONFIG1_NO_DAISY) | self.sample_rate
        self.regs[1][CONFIG1] = CONFIG1_NO_DAISY | self.sample_rate
        self.settings = [list(DEFAULT_SETTINGS) for _ in range(16)]
        self.use_srb2 = [True] * 16
        self.use_in_bias = [True] * 16
        self._write_all_channel_settings()
        for ads in (0, 1):
            self.regs[ads][CONFIG3] = 0xEC
        self.streaming = False

    def _reset_ads(self, ads: int) -> None:
        """``resetADS``: the chip's registers to their reset values, then its channels off."""
        self.regs[ads] = bytearray(RESET_VALUES)
        for ch in range(8 * ads, 8 * ads + 8):
            self._deactivate_register(ch)

    def _present_ads(self) -> tuple[int, ...]:
        return (0, 1) if self.daisy else (0,)

    @staticmethod
    def _chset(ch: int) -> tuple[int, int]:
        """(ADS index, CHnSET address) of channel index ``ch`` (0-15)."""
        return ch // 8, CH1SET + ch % 8

    def _set_chset(self, ch: int, value: int) -> None:
        ads, addr = self._chset(ch)
        self.regs[ads][addr] = value & 0xFF

    def _set_bias(self, ch: int, on: bool) -> None:
        ads, bit = ch // 8, 1 << (ch % 8)
        for addr in (BIAS_SENSP, BIAS_SENSN):
            self.regs[ads][addr] = self.regs[ads][addr] | bit if on else self.regs[ads][addr] & ~bit

    def _write_channel(self, ch: int) -> None:
        """``writeChannelSettings(N)``: CHnSET and the bias bits from the channel-settings array."""
        s = self.settings[ch]
        self._set_chset(ch, (0x80 if s[POWER] == 1 else 0) | s[GAIN] | s[INPUT] |
                        (0x08 if s[SRB2] == 1 else 0))
        self.use_srb2[ch] = s[SRB2] == 1
        self.use_in_bias[ch] = s[BIAS] == 1
        self._set_bias(ch, s[BIAS] == 1)

    def _write_all_channel_settings(self) -> None:
        """``writeChannelSettings()``: all channels of the ADSs present, and SRB1 for each."""
        for ads in self._present_ads():
            chans = range(8 * ads, 8 * ads + 8)
            for ch in chans:
                self._write_channel(ch)
            srb1 = any(self.settings[ch][SRB1] == 1 for ch in chans)
            for ch in chans:
                self.settings[ch][SRB1] = int(srb1)
            self.regs[ads][MISC1] = 0x20 if srb1 else 0x00

    def channel_registers(self) -> list[int]:
        """CHnSET of channels 1-16 (power-down bit 7, gain bits 6:4, SRB2 bit 3, input mux bits 2:0)."""
        return [self.regs[ch // 8][CH1SET + ch % 8] for ch in range(16)]

    @property
    def test_signal(self) -> tuple[int, int]:
        """CONFIG2's (amplitude bit: 0 for 1x, 1 for 2x; frequency bits 0-3) of the on-board ADS."""
        return (self.regs[0][CONFIG2] >> 2) & 1, self.regs[0][CONFIG2] & 0x03

    @property
    def packet_type(self) -> int:
        """``setCurPacketType`` (with ``*_TIME_SET`` turned ``*_SYNC`` by :meth:`packet_sent`)."""
        return self._packet_type

    def _set_packet_type(self) -> None:
        if self.time_sync:
            self._packet_type = ACCEL_TIME_SET if self.accel_on else RAW_AUX_TIME_SET
        else:
            self._packet_type = ACCEL if self.accel_on else RAW_AUX

    def packet_sent(self) -> None:
        """After a packet: a time-set packet type becomes time-synced."""
        self._packet_type = {ACCEL_TIME_SET: ACCEL_TIME_SYNC,
                             RAW_AUX_TIME_SET: RAW_AUX_TIME_SYNC}.get(self._packet_type, self._packet_type)

    def take_marker(self) -> int | None:
        """The marker byte (signed, as the firmware's ``(short)char``) waiting for the next packet."""
        value, self.marker = self.marker, None
        return value

    # -- the command interpreter -------------------------------------------------------------------
    def feed(self, data: bytes, now: float) -> bytes:
        """Process ``data`` (bytes the host sent) at time ``now`` (s, monotonic); returns the replies."""
        out = bytearray()
        for byte in data:
            if self.link_lost:
                break
            c = chr(byte)
            out += self._sd(c)
            out += self._process(c, now)
        return bytes(out)

    def poll(self, now: float) -> bytes:
        """What the firmware's ``loop`` sends by itself at ``now``: the multi-byte timeout message."""
        if self._multi is not None and now >= self._deadline and not self.link_lost:
            self._multi = None
            return (b"Timeout processing multi byte message - please send all commands at once as of v2"
                    + EOT)
        return b""

    def _sd(self, c: str) -> bytes:
        """``sdProcessChar`` (no SD card fitted): runs on every byte before the board sees it."""
        if c in SD_COMMANDS:
            return b"" if self.streaming else SD_NO_CARD + EOT
        if c == "j" and self.streaming:
            self._stream_stop()
        return b""

    def _process(self, c: str, now: float) -> bytes:
        out = self.poll(now)
        if self._multi is not None:
            return out + self._multi_char(c)
        handler = self._COMMANDS.get(c)
        if handler is not None:
            return out + handler(self, c, now)
        if c in CHANNEL_OFF:
            self._stream_safe(self._deactivate, CHANNEL_OFF.index(c))
        elif c in CHANNEL_ON:
            self._stream_safe(self._activate, CHANNEL_ON.index(c))
        elif c in TEST_SIGNALS:
            out += self._test_signal(c)
        return out

    def _start_multi(self, kind: str, now: float) -> None:
        self._multi, self._deadline, self._args = kind, now + MULTI_CHAR_TIMEOUT_S, ""

    def _quiet(self, text: bytes) -> bytes:
        """A reply the firmware sends only while not streaming."""
        return b"" if self.streaming else text + EOT

    def _multi_char(self, c: str) -> bytes:
        kind = self._multi
        if kind == "marker":
            self.marker, self._multi = (ord(c) ^ 0x80) - 0x80, None
            return b""
        if kind == "/":
            self._multi = None
            return self._board_mode(c)
        if kind == "~":
            self._multi = None
            return self._sample_rate(c)
        # x CH POWER GAIN INPUT BIAS SRB2 SRB1 X  or  z CH P N Z
        latch, size = ("X", 9) if kind == "x" else ("Z", 5)
        position = len(self._args) + 1
        if c == latch and position < size - 1:
            self._multi = None
            return self._quiet(b"Failure: too few chars")
        if position == size - 1 and c != latch:
            self._multi = None
            which = b"9th char not X" if kind == "x" else b"5th char not Z"
            return self._quiet(b"Failure: Err: " + which)
        self._args += c
        if position < size - 1:
            return b""
        self._multi = None
        return self._channel_setting(self._args) if kind == "x" else self._lead_off(self._args)

    def _channel_setting(self, args: str) -> bytes:
        ch = CHANNEL_LETTERS.index(args[0]) if args[0] in CHANNEL_LETTERS else 0
        gain = ord(args[2]) - 48 if "0" <= args[2] <= "6" else 6
        self.settings[ch] = [_number(args[1]), gain << 4, _number(args[3]), _number(args[4]),
                             _number(args[5]), _number(args[6])]
        reply = self._quiet(b"Success: Channel set for %d" % (ch + 1))

        def write():
            if ch < 8 or self.daisy:
                self._write_channel(ch)
                ads = ch // 8
                srb1 = self.settings[ch][SRB1] == 1
                for other in range(8 * ads, 8 * ads + 8):
                    self.settings[other][SRB1] = int(srb1)
                self.regs[ads][MISC1] = 0x20 if srb1 else 0x00
        self._stream_safe(write)
        return reply

    def _lead_off(self, args: str) -> bytes:
        ch = CHANNEL_LETTERS.index(args[0]) if args[0] in CHANNEL_LETTERS else 0
        p, n = _number(args[1]), _number(args[2])
        reply = self._quiet(b"Success: Lead off set for %d" % (ch + 1))

        def write():
            if ch < 8 or self.daisy:
                ads, bit = ch // 8, 1 << (ch % 8)
                for addr, on in ((LOFF_SENSP, p == 1), (LOFF_SENSN, n == 1)):
                    self.regs[ads][addr] = self.regs[ads][addr] | bit if on else self.regs[ads][addr] & ~bit
        self._stream_safe(write)
        return reply

    def _board_mode(self, c: str) -> bytes:
        if c == "/":
            return b"Success: " + BOARD_MODES[self.board_mode].encode() + EOT
        if not "0" <= c <= "9":
            return b"Failure: invalid board mode value." + EOT
        mode = ord(c) - 48
        if mode >= len(BOARD_MODES):
            return b"Failure: board mode value out of bounds." + EOT
        if mode == BLE:  # the serial port re-opens at 9600 baud: the dongle hears nothing more
            self.board_mode, self.link_lost = BLE, True
            self._stream_stop()
            return b""
        if mode != self.board_mode:
            self.board_mode = mode
            if mode == DEFAULT:
                self.accel_on = True
            elif mode in (ANALOG, DIGITAL, MARKER):
                self.accel_on = False
            self._set_packet_type()
        return b"Success: " + BOARD_MODES[mode].encode() + EOT

    def _rate_reply(self) -> bytes:
        return b"Success: Sample rate is %dHz" % SAMPLE_RATES_HZ[self.sample_rate] + EOT

    def _sample_rate(self, c: str) -> bytes:
        if c == "~":
            return self._rate_reply()
        if not "0" <= c <= "9":
            return self._quiet(b"Failure: invalid sample value")
        code = ord(c) - 48
        if code > RATE_250:
            return self._quiet(b"Failure: sample value out of bounds")
        self._stream_safe(self._set_sample_rate, code)
        return b"" if self.streaming else self._rate_reply()

    def _set_sample_rate(self, code: int) -> None:
        self.sample_rate = code
        self._initialize_ads()

    def _test_signal(self, c: str) -> bytes:
        mux, amp, freq = TEST_SIGNALS[c]
        was_streaming = self.streaming
        if was_streaming:
            self._stream_stop()
        for ads in self._present_ads():
            a = self.regs[ads][CONFIG2] & 0x04 if amp is None else amp
            f = self.regs[ads][CONFIG2] & 0x03 if freq is None else freq
            self.regs[ads][CONFIG2] = 0xD0 | f | a
        for ch in range(self.num_channels):
            self.settings[ch][INPUT] = mux
        self._write_all_channel_settings()
        if was_streaming:
            self._stream_start()
            return b""
        return b"Success: Configured internal test signal." + EOT

    def _deactivate(self, ch: int) -> None:
        if ch >= 8 and not self.daisy:
            return
        self._deactivate_register(ch)
        ads = ch // 8
        for reg in (LOFF_SENSP, LOFF_SENSN):
            self.regs[ads][reg] &= ~(1 << (ch % 8))

    def _deactivate_register(self, ch: int) -> None:
        """Channel ``ch`` off in its ADS: CHnSET bit 7 set, SRB2 (bit 3) opened, out of the bias."""
        ads, addr = self._chset(ch)
        self.regs[ads][addr] = (self.regs[ads][addr] | 0x80) & ~0x08
        self._set_bias(ch, False)

    def _activate(self, ch: int) -> None:
        if ch >= 8 and not self.daisy:
            return
        s = self.settings[ch]
        s[SRB2], s[BIAS] = int(self.use_srb2[ch]), int(self.use_in_bias[ch])
        self._set_chset(ch, s[GAIN] | s[INPUT] | (0x08 if self.use_srb2[ch] else 0))
        self._set_bias(ch, self.use_in_bias[ch])

    def _defaults(self) -> None:
        """``setChannelsToDefault``."""
        for ch in range(self.num_channels):
            self.settings[ch] = list(DEFAULT_SETTINGS)
        self._write_all_channel_settings()
        for ads in self._present_ads():
            self.regs[ads][LOFF_SENSP] = self.regs[ads][LOFF_SENSN] = self.regs[ads][MISC1] = 0

    def _stream_safe(self, action, *args) -> None:
        """``streamSafe...``: stop a running stream, act, restart it (the counter restarts at 0)."""
        was_streaming = self.streaming
        if was_streaming:
            self._stream_stop()
        action(*args)
        if was_streaming:
            self._stream_start()

    def _stream_start(self) -> None:
        self.streaming = True
        self.stream_starts += 1

    def _stream_stop(self) -> None:
        self.streaming = False

    def register_dump(self) -> bytes:
        """What ``?`` prints: both ADS1299s' registers, the LIS3DH's, ``$$$``."""
        out = bytearray(b"\nBoard ADS Registers\n")
        out += self._ads_lines(0)
        if self.daisy:
            out += b"\nDaisy ADS Registers\n" + self._ads_lines(1)
        out += b"\nLIS3DH Registers\n"
        lis = {0x0F: LIS3DH_ID, 0x20: 0x08, 0x23: 0x18}  # idle: powered down, +-4 g, high resolution
        groups = [b"".join(b"0x%02X %02X\n" % (r, lis.get(r, 0)) for r in group) for group in LIS3DH_GROUPS]
        out += b"\n".join(groups)
        return bytes(out) + EOT

    def _ads_lines(self, ads: int) -> bytes:
        lines = bytearray()
        for addr, name in enumerate(REGISTER_NAMES):
            value = self.regs[ads][addr]
            bits = ", ".join(str((value >> (7 - j)) & 1) for j in range(8))
            lines += f"{name}, {addr:02X}, {value:02X}, {bits}\n".encode()
        return bytes(lines)

    # one handler per single-character command: (self, c, now) -> reply
    def _cmd_multi(self, c: str, now: float) -> bytes:
        self._start_multi({"`": "marker"}.get(c, c), now)
        return b""

    def _cmd_defaults(self, c: str, now: float) -> bytes:
        reply = self._quiet(b"updating channel settings to default")
        self._stream_safe(self._defaults)
        return reply

    def _cmd_report_defaults(self, c: str, now: float) -> bytes:
        digits = (DEFAULT_SETTINGS[POWER], DEFAULT_SETTINGS[GAIN] >> 4) + DEFAULT_SETTINGS[INPUT:]
        return "".join(map(str, digits)).encode() + EOT

    def _cmd_remove_daisy(self, c: str, now: float) -> bytes:
        if self.daisy:
            self.daisy = False
            return self._quiet(b"daisy removed")
        return self._quiet(b"no daisy to remove!")

    def _cmd_attach_daisy(self, c: str, now: float) -> bytes:
        out = b""
        if not self.daisy:
            self.regs[0][CONFIG1] = CONFIG1_DAISY | self.sample_rate
            self._reset_ads(1)
            self.daisy = self.daisy_fitted
            if not self.daisy:
                self.regs[0][CONFIG1] = CONFIG1_NO_DAISY | self.sample_rate
            self.num_channels = 16 if self.daisy else 8
            out = b"" if self.streaming else (b"daisy attached" if self.daisy else b"no daisy to attach!")
        return out + (b"16" if self.daisy else b"8") + EOT

    def _cmd_stream_start(self, c: str, now: float) -> bytes:
        if self.sample_rate != RATE_250:  # the serial (radio) link carries 250 Hz at most
            self._stream_safe(self._set_sample_rate, RATE_250)
        self._stream_start()
        return b""

    def _cmd_stream_stop(self, c: str, now: float) -> bytes:
        self._stream_stop()
        return b""

    def _cmd_soft_reset(self, c: str, now: float) -> bytes:
        return self._soft_reset()

    def _cmd_registers(self, c: str, now: float) -> bytes:
        return b"" if self.streaming else self.register_dump()

    def _cmd_time_sync(self, c: str, now: float) -> bytes:
        self.time_sync = c == "<"
        self._set_packet_type()
        return self._quiet(b"Time stamp ON" if self.time_sync else b"Time stamp OFF")

    def _cmd_version(self, c: str, now: float) -> bytes:
        return FIRMWARE_VERSION.encode() + EOT

    def _cmd_wifi(self, c: str, now: float) -> bytes:
        return {"{": b"Failure: Wifi not attached", "}": b"Failure: Wifi not removed",
                ":": b"Wifi not present, send { to attach the shield", ";": b"Wifi soft reset"}[c] + EOT

    _COMMANDS = {"x": _cmd_multi, "z": _cmd_multi, "/": _cmd_multi, "~": _cmd_multi, "`": _cmd_multi,
                 "d": _cmd_defaults, "D": _cmd_report_defaults, "c": _cmd_remove_daisy,
                 "C": _cmd_attach_daisy, "b": _cmd_stream_start, "s": _cmd_stream_stop,
                 "v": _cmd_soft_reset, "?": _cmd_registers, "<": _cmd_time_sync, ">": _cmd_time_sync,
                 "V": _cmd_version, "{": _cmd_wifi, "}": _cmd_wifi, ":": _cmd_wifi, ";": _cmd_wifi}
