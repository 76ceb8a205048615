"""Any brainflow board (OpenBCI Cyton on a serial port, the synthetic board, a playback file) as a Device.

Response side: the board's ExG channels (``BoardShim.get_exg_channels``), converted from brainflow's
microvolts to **volts**, at the board's sample rate.  Timestamps are brainflow's timestamp channel
(host clock at packet arrival), in seconds relative to the first sample read after ``open``.
``read(n)`` waits until brainflow's ring buffer holds ``n`` samples; when no new sample arrives for
``stall_s`` (1 s by default) it raises a one-line :class:`DeviceError` naming the board and the stall
(``unplugged`` when the serial port has vanished).  Every sample's counter (brainflow's package-number
channel, one byte) is checked: a gap means packets were lost or spoiled on the link (dropped or
garbled bytes) and raises, or with ``on_gap="record"`` is appended to ``gaps`` and streaming goes on.

Events: ``mark(label)`` inserts a brainflow marker, a non-zero number from a label <-> value table
(``marker_values``); brainflow puts it into the marker channel of the next sample it receives, and
``events()`` reports the response-sample index where it came back (among the samples read so far).
This is how stimulus and response are aligned: the board and the stimulus run on separate clocks.

Stimulus side: these boards have no analog output.  **A board is record-only** (no stimulus channel;
every stimulus block is refused, and a rig refuses a stimulating protocol before it runs) unless it is
given a ``stimulator``, a callable that applies each (range-checked) block on the protocol's stimulus
channels - in a rehearsal the emulator's side channel (``CytonEmulator.apply`` in
:mod:`prclab.hardware_sims.cyton`, handed over by the rig), which drives its substrate in real time
(write ahead of reading, or blocks may be separated by held samples).  On a real MEA stimulation
goes through a separate stimulator device, which a rig (:mod:`prclab.protocols.rig`) composes with the
board and aligns through the markers.

Safe stop: with a stimulator, ``rest`` appends a slew-limited ramp from the last row written to the
rest level, and ``hold`` (given with the stimulator) keeps the stimulator at the rest level whenever no
stimulus is queued - between blocks and after the stop; a record-only board drives nothing.

Sample counters: a Cyton (and the synthetic board) restarts its counter at 0 when streaming starts, so
the first sample read is checked too (a fault before the first read is a gap from 0); other boards'
first counter is taken as it comes.

Board notes: the Cyton handshake (``prepare_session``) takes about 1 s; brainflow itself gives up on a
silent port only after about 6 s, so ``open`` waits at most ``open_timeout_s`` (2 s; a spec may ask
for more, ``?open_timeout_s=5``, for a slow real board) and then fails naming the board (brainflow's
attempt is released in the background when it ends).  The playback board needs ``master_board`` (the
board that recorded the file) and does **not** replay recorded markers: brainflow overwrites the marker
channel with live ones, so events are only those marked during the playback.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.parse
from typing import Callable

import numpy as np
from brainflow.board_shim import BoardIds, BoardShim, BrainFlowError, BrainFlowInputParams, LogLevels
from brainflow.exit_codes import BrainFlowExitCodes

from prclab.errors import PrclabError

from .base import Adc, ChannelInfo, Device, DeviceChannels, DeviceError, voltage_channels

VOLTS_PER_MICROVOLT = 1e-6
"""brainflow reports ExG channels in microvolts; the Device contract speaks volts."""
CYTON_RANGE_V = 4.5 / 24
"""ADS1299 full scale at the default gain 24: +-0.1875 V."""
CYTON_ADC = Adc(24, CYTON_RANGE_V / (2 ** 23 - 1))
"""A Cyton channel's converter: 24-bit counts of 4.5 V / 24 / (2^23 - 1) (brainflow's ``eeg_scale``,
``cyton.cpp``, before its factor 1e6 to microvolts)."""
_DESCRIBED_BY_MASTER = (BoardIds.PLAYBACK_FILE_BOARD, BoardIds.STREAMING_BOARD)
_HINTS = {BrainFlowExitCodes.UNABLE_TO_OPEN_PORT_ERROR: "port missing, busy or not permitted",
          BrainFlowExitCodes.BOARD_NOT_READY_ERROR: "no handshake reply: board off or wrong port?",
          BrainFlowExitCodes.SER_PORT_ERROR: "cannot configure the serial port"}
"""One-line hints for brainflow's exit codes, standing in for its (silenced) log lines."""


def board_name(board_id: int) -> str:
    """Short name of a brainflow board id: ``cyton``, ``synthetic``, ``playback_file``, ..."""
    try:
        return BoardIds(board_id).name.lower().removesuffix("_board")
    except ValueError:
        return f"board{board_id}"


def described_board(board_id: int, params: BrainFlowInputParams) -> int:
    """The board whose channel layout and rate ``board_id``'s data has (the master of a playback)."""
    return params.master_board if board_id in _DESCRIBED_BY_MASTER else board_id


def board_id_of(name: str) -> int:
    """Board id for ``name`` (``cyton``, ``synthetic``, ``playback``, any ``BoardIds`` name or number).

    Raises ``PrclabError`` for an unknown board.
    """
    key = name.strip().upper()
    key = {"PLAYBACK": "PLAYBACK_FILE"}.get(key, key)
    try:
        return int(BoardIds(int(key))) if key.lstrip("-").isdigit() else \
            int(BoardIds[key if key.endswith("_BOARD") else key + "_BOARD"])
    except (KeyError, ValueError):
        raise PrclabError(f"unknown brainflow board {name!r} (e.g. cyton, synthetic, playback, "
                          "or a brainflow.BoardIds name or number)") from None


class BrainflowDevice(Device):
    """A brainflow board streaming ExG in volts; record-only unless given a ``stimulator``.

    Args:
        board_id: a ``brainflow.BoardIds`` value.
        params: brainflow's connection parameters (``serial_port``, ``file``, ``master_board``, ...).
        stimulus: the stimulus channels, with ``stimulator`` only (default one ``stim0`` channel, +-1 V).
        stimulator: callable applying a stimulus block ``(n, n_stimulus)`` volts; None on real boards,
            which then have no stimulus channel (record-only).
        stall_s: seconds without a new sample after which ``read`` fails.
        on_gap: ``"raise"`` (default) or ``"record"`` a sample-counter gap.
        check_counter: check the counter; default everywhere except the playback board.
        response_range_V: nominal ``(low, high)`` of every response channel, volts.
        buffer_samples: brainflow ring-buffer size; overflowing it (not reading for that long) fails.
        hold: callable setting the level ``(n_stimulus,)`` volts the stimulator holds while no stimulus
            is queued (the rest level); with ``stimulator`` only.
        open_timeout_s: longest ``open`` waits for brainflow's session to start, seconds.
        quiet: silence brainflow's own logger (process-wide) at ``open``: its info and error lines would
            break the one-line error reports; the errors raised here carry the exit code and a hint.
    """

    name = "brainflow"

    def __init__(self, board_id: int, params: BrainFlowInputParams | None = None,
                 stimulus: tuple[ChannelInfo, ...] | None = None,
                 stimulator: Callable[[np.ndarray], None] | None = None, stall_s: float = 1.0,
                 on_gap: str = "raise", check_counter: bool | None = None,
                 response_range_V=(-CYTON_RANGE_V, CYTON_RANGE_V), buffer_samples: int = 450_000,
                 quiet: bool = True, hold: Callable[[np.ndarray], None] | None = None,
                 open_timeout_s: float = 2.0):
        if on_gap not in ("raise", "record"):
            raise DeviceError(f"brainflow: on_gap must be 'raise' or 'record', not {on_gap!r}")
        if stimulator is None and (stimulus or hold is not None):
            raise DeviceError("brainflow: stimulus channels and hold need a stimulator (a board alone is "
                              "record-only)")
        self.board_id = int(board_id)
        self.params = params if params is not None else BrainFlowInputParams()
        self.address = self.params.serial_port or self.params.file or self.params.ip_address
        self.label = " ".join(filter(None, ("brainflow", board_name(self.board_id), self.address)))
        data_board = described_board(self.board_id, self.params)
        try:
            self._rows = {"exg": BoardShim.get_exg_channels(data_board),
                          "time": BoardShim.get_timestamp_channel(data_board),
                          "marker": BoardShim.get_marker_channel(data_board),
                          "counter": BoardShim.get_package_num_channel(data_board)}
            rate = BoardShim.get_sampling_rate(data_board)
        except BrainFlowError as exc:
            raise DeviceError(f"{self.label}: no board description for board id {data_board} "
                              f"({_one_line(exc)}; a playback board needs master_board)") from None
        channels = DeviceChannels(
            stimulus=() if stimulator is None else
            stimulus if stimulus is not None else voltage_channels("stim", 1, -1.0, 1.0),
            response=voltage_channels("exg", len(self._rows["exg"]), *response_range_V),
            rate_hz=float(rate))
        super().__init__(channels)
        if self.board_id == BoardIds.CYTON_BOARD:  # brainflow's values are these counts, scaled
            self.adc = (CYTON_ADC,) * len(channels.response)
        self.stimulator, self.hold = stimulator, hold
        self.open_timeout_s = float(open_timeout_s)
        self._first_counter = 0 if self.board_id in (BoardIds.CYTON_BOARD, BoardIds.SYNTHETIC_BOARD) \
            else None
        self.stall_s, self.on_gap = float(stall_s), on_gap
        self.check_counter = self.board_id != BoardIds.PLAYBACK_FILE_BOARD if check_counter is None \
            else bool(check_counter)
        self.buffer_samples = int(buffer_samples)
        self.quiet = quiet
        self.marker_values: dict[str, float] = {}
        self._labels: dict[float, str] = {}
        self.gaps: list[tuple[int, int]] = []
        self._board: BoardShim | None = None
        self._releasing: threading.Thread | None = None
        self._reset_stream()

    def _reset_stream(self) -> None:
        self._n_read = self._n_written = 0
        self._t0: float | None = None
        # a Cyton counts from 0 after ``b``: "before the first sample" is 255
        self._last_counter: int | None = None if getattr(self, "_first_counter", None) is None \
            else (self._first_counter - 1) % 256
        self._buffered = 0                      # samples left in brainflow's buffer after the last read
        self._last_progress = time.monotonic()  # when the buffer last grew

    # -- Device ------------------------------------------------------------------------------------
    def _open(self) -> None:
        if self._releasing is not None:  # a session abandoned after a fault is still being released
            self._releasing.join()
            self._releasing = None
        self._reset_stream()
        self.gaps = []
        if self.quiet:
            BoardShim.set_log_level(LogLevels.LEVEL_OFF)
        self._board = self._start_session()
        if self.hold is not None:
            self.hold(self.rest_V)
        self._last_progress = time.monotonic()

    def _start_session(self) -> BoardShim:
        """``prepare_session`` + ``start_stream`` on a helper thread, waited for ``open_timeout_s``."""
        outcome: dict = {}
        abandoned = threading.Event()

        def start() -> None:
            board = None
            try:
                board = BoardShim(self.board_id, self.params)
                board.prepare_session()
                board.start_stream(self.buffer_samples)
                outcome["board"] = board
            except BrainFlowError as exc:
                outcome["error"] = exc
                if board is not None:
                    _release(board)
            if abandoned.is_set() and "board" in outcome:
                _release(outcome["board"])

        worker = threading.Thread(target=start, name="brainflow-open", daemon=True)
        worker.start()
        worker.join(self.open_timeout_s)
        if worker.is_alive():
            abandoned.set()
            self._releasing = worker  # the next open waits for brainflow to let go of the port
            raise DeviceError(f"{self.label}: no session within {self.open_timeout_s:g} s "
                              "(board silent: off, stalled or wrong port?)")
        if "error" in outcome:
            raise DeviceError(f"{self.label}: cannot start the session "
                              f"({_one_line(outcome['error'])})") from None
        return outcome["board"]

    def _close(self) -> None:
        board, self._board = self._board, None
        if board is not None:
            _release(board)
        self._reset_stream()

    def connect_to(self, address: str) -> None:
        """Open the board on serial port ``address`` (an emulator's pty) from the next ``open`` on."""
        self.params.serial_port = self.address = str(address)
        self.label = " ".join(("brainflow", board_name(self.board_id), self.address))

    def _write(self, block: np.ndarray) -> None:
        self.stimulator(block)  # a record-only board has no stimulus channel: Device.write refuses
        self._n_written += len(block)
        if len(block):
            self.output_V = block[-1].copy()

    def _rest(self, start_V: np.ndarray) -> str:
        ramp = self._ramp(start_V)
        self.stimulator(ramp)
        # the stimulator plays in real time: wait for what was queued before the ramp (at most the
        # block in flight: written, not yet read back) and the ramp to play out before letting go
        queued = max(0, self._n_written - self._n_read)
        time.sleep(min(queued + len(ramp) + 2, 10 * self.channels.rate_hz) / self.channels.rate_hz)
        if self.hold is not None:
            self.hold(self.rest_V)
        self.output_V = self.rest_V.copy()
        return f"ramp of {len(ramp)} samples to rest handed to the stimulator, which then holds rest"

    def _stimulus_position(self) -> int:
        return self._n_written

    def mark(self, label: str) -> None:
        """Insert a brainflow marker for ``label``; it comes back in the marker channel (``events``)."""
        self._require_open()
        value = self.marker_values.setdefault(str(label), float(len(self.marker_values) + 1))
        self._labels[value] = str(label)
        try:
            self._board.insert_marker(value)
        except BrainFlowError as exc:
            raise self._abandon(f"marker not accepted ({_one_line(exc)})") from None

    def _read(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if n == 0:
            return np.zeros((0, len(self.channels.response))), np.zeros(0)
        if n >= self.buffer_samples:
            raise DeviceError(f"{self.label}: cannot read {n} samples at once "
                              f"(ring buffer holds {self.buffer_samples})")
        try:
            self._wait_for(n)
            data = self._board.get_board_data(n)
            self._buffered = self._board.get_board_data_count()
        except BrainFlowError as exc:
            raise self._abandon(f"read failed ({_one_line(exc)})") from None
        if data.shape[1] != n:
            raise self._abandon(f"asked brainflow for {n} samples, got {data.shape[1]}")
        if self.check_counter:
            self._check_counter(data[self._rows["counter"]])
        stamps = data[self._rows["time"]]
        if self._t0 is None:
            self._t0 = float(stamps[0])
        for i in np.flatnonzero(data[self._rows["marker"]]):
            value = float(data[self._rows["marker"], i])
            self._events.append((self._n_read + int(i), self._labels.get(value, f"marker:{value:g}")))
        samples = data[self._rows["exg"]].T * VOLTS_PER_MICROVOLT
        self._n_read += n
        return np.ascontiguousarray(samples), stamps - self._t0

    def describe(self) -> dict:
        return {**super().describe(), "board": board_name(self.board_id), "board_id": self.board_id,
                "address": self.address, "marker_values": dict(self.marker_values),
                "stimulus_applied_by": "stimulator" if self.stimulator is not None else
                "nobody: record-only (a separate stimulator drives the electrodes)"}

    # -- streaming ---------------------------------------------------------------------------------
    def _wait_for(self, n: int) -> None:
        """Block until brainflow's buffer holds ``n`` samples; fail after ``stall_s`` without growth."""
        period = 1.0 / self.channels.rate_hz
        while True:
            count = self._board.get_board_data_count()
            now = time.monotonic()
            if count > self._buffered:
                self._buffered, self._last_progress = count, now
            if count >= self.buffer_samples:
                raise self._abandon("ring buffer overflowed: samples were lost (read more often)")
            if count >= n:
                return
            if now - self._last_progress > self.stall_s:
                raise self._abandon(self._stall_message())
            time.sleep(min(0.01, (n - count) * period))

    def _stall_message(self) -> str:
        port = self.params.serial_port
        if port and not os.path.exists(port):
            return f"unplugged: port {port} vanished, stream stalled for {self.stall_s:g} s"
        return f"stall: no data for {self.stall_s:g} s"

    def _check_counter(self, counters: np.ndarray) -> None:
        seq = counters.astype(np.int64)
        if self._last_counter is not None:
            seq = np.concatenate([[self._last_counter], seq])
        steps = np.diff(seq) % 256
        for j in np.flatnonzero(steps != 1):
            index = self._n_read + int(j) + (self._last_counter is None)
            lost = int(steps[j] - 1) % 256
            if self.on_gap == "raise":
                jump = f"first sample counter is {seq[1]}, not {self._first_counter}" \
                    if index == 0 and self._first_counter is not None else \
                    f"sample counter jumped {seq[j]} -> {seq[j + 1]} before sample {index}"
                raise self._abandon(f"{jump}: {lost} packet(s) lost or spoiled on the link "
                                    "(dropped or garbled bytes)")
            self.gaps.append((index, lost))
        self._last_counter = int(seq[-1])

    def _abandon(self, fault: str) -> DeviceError:
        """After a fault the stream is unusable: drive the stimulator to rest, mark the device closed,
        release the session in the background (stopping brainflow's reader can take a second), and
        return the error to raise."""
        if self.is_open:
            self.rest(f"device fault: {fault}")
        board, self._board = self._board, None
        self.is_open = False
        self._reset_stream()
        if board is not None:
            self._releasing = threading.Thread(target=_release, args=(board,),
                                               name="brainflow-release", daemon=True)
            self._releasing.start()
        return DeviceError(f"{self.label}: {fault}")


def _release(board: BoardShim) -> None:
    """Stop and release a brainflow session, whatever state it is in."""
    for step in (board.stop_stream, board.release_session):
        try:
            step()
        except BrainFlowError:
            pass


def _one_line(exc: Exception) -> str:
    """``exc`` as one line, with a hint for brainflow's exit code where there is one."""
    text = str(exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    hint = _HINTS.get(getattr(exc, "exit_code", None))
    return f"{text}: {hint}" if hint else text


_PARAM_OPTIONS = ("mac_address", "ip_address", "ip_port", "ip_protocol", "other_info", "timeout",
                  "serial_number")
"""``BrainFlowInputParams`` fields a spec may set as ``?name=value`` options."""


def from_spec(address: str, request, stimulator: Callable[[np.ndarray], None] | None = None,
              hold: Callable[[np.ndarray], None] | None = None) -> BrainflowDevice:
    """Device for spec ``brainflow:BOARD[:WHERE][?options]``.

    ``brainflow:cyton:/dev/ttyUSB0`` (serial port), ``brainflow:synthetic``,
    ``brainflow:playback:rec.csv?master=cyton`` (a ``DataFilter.write_file`` recording; ``master`` names
    the board that recorded it), or any other ``BoardIds`` name or number with ``WHERE`` as its serial
    port and options among :data:`_PARAM_OPTIONS`.  The board's rate must equal the request's.

    Record-only unless ``stimulator`` (and ``hold``) are given, as a rig does for a rehearsal on a
    Cyton emulator's side channel; the stimulus channels are then the request's.  With
    ``request.emulate`` the port is never opened: the rig points the device at its emulator's pty
    (:meth:`BrainflowDevice.connect_to`).  The synthetic and playback boards are simulations already.
    """
    board_part, _, rest = address.partition(":")
    where, _, query = rest.partition("?")
    if "?" in board_part:
        board_part, _, query = board_part.partition("?")
    spec = f"brainflow:{address}"
    if not board_part:
        raise PrclabError("brainflow: no board given (e.g. brainflow:cyton:/dev/ttyUSB0, "
                          "brainflow:synthetic, brainflow:playback:rec.csv?master=cyton)")
    board_id = board_id_of(board_part)
    options = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    params = BrainFlowInputParams()
    if board_id == BoardIds.PLAYBACK_FILE_BOARD:
        if "master" not in options:
            raise PrclabError(f"{spec}: a playback board needs ?master=BOARD (the board that "
                              "recorded the file, e.g. master=cyton)")
        params.master_board = board_id_of(options.pop("master"))
        params.file = where
        if not where or not os.path.isfile(where):
            raise PrclabError(f"{spec}: playback file {where!r} not found")
    else:
        params.serial_port = where
    open_timeout_s = 2.0
    if "open_timeout_s" in options:  # a slow real board may need longer than the 2 s default
        text = options.pop("open_timeout_s")
        try:
            open_timeout_s = float(text)
        except ValueError:
            open_timeout_s = float("nan")
        if not 0.5 <= open_timeout_s <= 60:
            raise PrclabError(f"{spec}: open_timeout_s={text[:20]!r} is not a number of seconds in "
                              "[0.5, 60]")
    for key in list(options):
        if key not in _PARAM_OPTIONS:
            raise PrclabError(f"{spec}: unknown option {key!r}; known: master (playback), "
                              f"open_timeout_s, {', '.join(_PARAM_OPTIONS)}")
        value = options.pop(key)
        setattr(params, key, int(value) if key in ("ip_port", "ip_protocol", "timeout") and
                value.lstrip("-").isdigit() else value)
    try:
        rate = BoardShim.get_sampling_rate(described_board(board_id, params))
    except BrainFlowError as exc:
        raise PrclabError(f"{spec}: brainflow has no description of board "
                          f"{described_board(board_id, params)} ({_one_line(exc)})") from None
    if rate != request.rate_hz:
        raise PrclabError(f"{spec}: the board samples at {rate:g} Hz, the protocol asks for "
                          f"{request.rate_hz:g} Hz")
    if board_id == BoardIds.CYTON_BOARD and not where and not request.emulate:
        raise PrclabError(f"{spec}: no serial port given (e.g. brainflow:cyton:/dev/ttyUSB0)")
    if request.emulate:
        params.serial_port = ""
    stimulus = None if stimulator is None else \
        voltage_channels("stim", request.n_stimulus, *request.stimulus_range_V)
    return BrainflowDevice(board_id, params, stimulus=stimulus, stimulator=stimulator, hold=hold,
                           open_timeout_s=open_timeout_s)
