"""The rig: the devices a run drives, built from a ``--device`` spec, and the emulators of a rehearsal.

Spec syntax.  ``KIND:ADDRESS`` names one device that stimulates and records; ``STIM+REC`` names a
stimulator and a recorder, e.g. ``nidaq:Dev1+brainflow:cyton:/dev/ttyUSB0`` (an NI card's analog
outputs drive the electrodes an OpenBCI Cyton records from).  A ``+`` splits the spec only where a
registered kind and ``:`` follow it.  The kinds (:data:`DEVICE_KINDS`, one entry each: driver factory,
emulator factory if any, capabilities):

==================  ====================================  ===========================================
kind                example                               device (emulator with ``emulate``)
==================  ====================================  ===========================================
``sim``             ``sim:potato``, ``sim:esn``           :class:`~prclab.drivers.SimDevice` on that
                                                          substrate (a simulation: no emulator)
``potentiostat``    ``potentiostat:/dev/ttyACM0``,        serial potentiostat (pyserial); emulator:
                    ``...?protocol=methodscript``,        MethodSCRIPT or the Rodeostat's JSON
                    ``...?protocol=rodeostat``            lines on a pty
``nidaq``           ``nidaq:Dev1``, ``nidaq:Dev1?ai=4``   NI DAQ card (nidaqmx, local or gRPC);
                                                          emulator: NI's gRPC service
``replay``          ``replay:run.h5``                     a recording played back
                                                          (:mod:`~prclab.protocols.replay_device`)
``brainflow``       ``brainflow:cyton:/dev/ttyUSB0``,     brainflow board, record-only; emulator
                    ``brainflow:synthetic``,              (cyton): the Cyton serial protocol on a pty,
                    ``brainflow:playback:F.csv``          whose side channel stimulates in a
                    (``?master=BOARD``)                   one-device rehearsal
==================  ====================================  ===========================================

A :class:`Rig` satisfies the Device contract the runner drives: stimulus goes to the stimulator, the
response stream and the marks are the recorder's, so a stimulator and a recorder on separate clocks are
aligned by the recorder's markers (brainflow puts a marker into the next sample it receives).  In a
two-device rig ``read(n)`` first plays ``n`` stimulus samples (the stimulator's own inputs are read and
dropped), then reads ``n`` from the recorder; the mark of a trial is put in just before the stimulator
plays the trial's first block, and only once the stimulus played before it has played out (a stimulator
that returns before its block has played, such as an emulator, would otherwise queue the trial behind
it), so the marker and the stimulus reach the recorder a few samples apart: the marker is inserted by
the host, so the alignment carries the host's jitter.  The stimulator is armed first (``Device.arm``:
an NI card's timing configured, its block written and its output task armed), so only the call that
starts its clock lies between the marker and the first sample played (``tests/test_rig.py`` measures
the lag).  A hardware trigger would remove the jitter.

Emulators (``emulate``): the rig builds each device's emulator, starts it before the device opens and
points the driver at it (``connect_to``), and closes it after the device closes, when the open fails,
and when a device fault abandons the run; drivers never import :mod:`prclab.hardware_sims`.  A
two-device rehearsal runs on ONE simulated substrate: the recorder's emulator owns it and the
stimulator's emulator is wired to its electrodes (:mod:`prclab.hardware_sims.wiring`).

Safety: a rig declares the electrodes of its stimulator (``electrodes``); for hardware, emulated or not,
they are what the driver knows (nothing, unless it declares them), never an emulator's substrate.  A
rig without a stimulator is record-only (:func:`prclab.drivers.capabilities`).

Network devices: each part of a spec is checked by :func:`prclab.drivers.spec.network_use`.
"""

from __future__ import annotations

import re
import time
import urllib.parse
import weakref
from dataclasses import dataclass
from typing import Callable

import numpy as np

from prclab.drivers import Device, DeviceChannels, DeviceError, DeviceRequest, SimDevice, network_use
from prclab.drivers.capabilities import MARK, RECORD, SNAPSHOT, STIMULATE, require
from prclab.errors import PrclabError
from prclab.reservoir.base import Electrode


@dataclass(frozen=True)
class DeviceKind:
    """One registered device kind.

    Attributes:
        driver: ``(address, request, emulator, stimulates) -> Device`` (unopened); ``emulator`` is the
            rig's emulator for it or None; ``stimulates`` is False for the recorder of a two-device
            rig (which then gets no stimulus).
        capabilities: what a device of this kind can do on real hardware (see
            :mod:`prclab.drivers.capabilities`).
        emulator: ``(address, request, wired_to) -> emulator or None`` for ``emulate``: an object
            with ``start() -> self``, ``close()``, ``address`` and ``inject(fault)``, backed by the
            request's substrate, or (``wired_to``, another emulator) driving that one's electrodes;
            None where the kind needs no emulator (a simulation).  Raises ``PrclabError`` where it
            has none for this address.
    """

    driver: Callable[[str, DeviceRequest, object, bool], Device]
    capabilities: frozenset[str]
    emulator: Callable[[str, DeviceRequest, object], object] | None = None


def _sim(address: str, request: DeviceRequest, emulator, stimulates: bool) -> Device:
    return SimDevice(request.build_substrate(address or None), request.rate_hz,
                     stimulus_range_V=request.stimulus_range_V, seed=request.seed)


def _potentiostat(address: str, request: DeviceRequest, emulator, stimulates: bool) -> Device:
    from prclab.drivers.potentiostat import from_spec  # imports pyserial only when asked for

    return from_spec(address, request)


def _potentiostat_emulator(address: str, request: DeviceRequest, wired_to):
    from prclab.hardware_sims.potentiostat import MethodScriptEmulator
    from prclab.hardware_sims.rodeostat import RodeostatEmulator

    if wired_to is not None:
        raise PrclabError(f"potentiostat:{address}: its emulator cannot drive another instrument's "
                          "electrodes (rehearse a two-device rig with nidaq as the stimulator)")
    options = dict(urllib.parse.parse_qsl(address.partition("?")[2]))
    emulator = RodeostatEmulator if options.get("protocol") == "rodeostat" else MethodScriptEmulator
    return emulator(request.build_substrate(), seed=request.seed)


def _nidaq(address: str, request: DeviceRequest, emulator, stimulates: bool) -> Device:
    from prclab.drivers.nidaq import from_spec  # imports nidaqmx only when asked for

    return from_spec(address, request, n_ai_default=emulator.device.n_ai if emulator is not None else 1)


def _nidaq_emulator(address: str, request: DeviceRequest, wired_to):
    from prclab.drivers.nidaq import parse_address
    from prclab.hardware_sims.nidaq_grpc import NidaqEmulator

    name, _ = parse_address(address)
    if wired_to is not None:
        return NidaqEmulator(device=name, seed=request.seed, wired_to=wired_to)
    return NidaqEmulator(request.build_substrate(), device=name, seed=request.seed)


def _replay(address: str, request: DeviceRequest, emulator, stimulates: bool) -> Device:
    from .replay_device import from_spec  # a recording played back: ``replay:REC.h5``

    return from_spec(address, request)


def _brainflow(address: str, request: DeviceRequest, emulator, stimulates: bool) -> Device:
    from prclab.drivers.brainflow_board import from_spec  # imports brainflow only when asked for

    side = emulator if stimulates and emulator is not None else None  # the rehearsal's stimulator
    return from_spec(address, request, stimulator=side.apply if side else None,
                     hold=side.hold if side else None)


def _brainflow_emulator(address: str, request: DeviceRequest, wired_to):
    from brainflow.board_shim import BoardIds

    from prclab.drivers.brainflow_board import board_id_of, board_name
    from prclab.hardware_sims.cyton import CytonEmulator

    board = board_id_of(address.partition(":")[0].partition("?")[0])
    if board in (BoardIds.SYNTHETIC_BOARD, BoardIds.PLAYBACK_FILE_BOARD):
        return None  # simulations already
    if board != BoardIds.CYTON_BOARD:
        raise PrclabError(f"brainflow:{address}: no emulator for brainflow board {board_name(board)!r}; "
                          "rehearse with brainflow:cyton, brainflow:synthetic or brainflow:playback")
    if wired_to is not None:
        raise PrclabError(f"brainflow:{address}: a Cyton has no output to drive another instrument")
    return CytonEmulator(request.build_substrate(), seed=request.seed)


DEVICE_KINDS: dict[str, DeviceKind] = {
    "sim": DeviceKind(_sim, frozenset({STIMULATE, RECORD, MARK, SNAPSHOT})),
    "potentiostat": DeviceKind(_potentiostat, frozenset({STIMULATE, RECORD, MARK}), _potentiostat_emulator),
    "nidaq": DeviceKind(_nidaq, frozenset({STIMULATE, RECORD, MARK}), _nidaq_emulator),
    "replay": DeviceKind(_replay, frozenset({STIMULATE, RECORD, MARK})),
    "brainflow": DeviceKind(_brainflow, frozenset({RECORD, MARK}), _brainflow_emulator),
}


class Rig(Device):
    """A stimulator and a recorder (or one device that is both) driven as one Device.

    Args:
        recorder: the device whose response stream and marks the runner reads.
        stimulator: the device the stimulus goes to: ``recorder`` itself, another device at the same
            rate, or None (a record-only rig, which refuses every stimulus block).
        emulators: ``{device: emulator}`` for a rehearsal: each started before its device opens (the
            device is pointed at ``emulator.address``) and closed after it closes.
    Raises:
        PrclabError: the two devices run at different rates.
    """

    def __init__(self, recorder: Device, stimulator: Device | None = None, emulators: dict | None = None):
        if stimulator is not None and stimulator.channels.rate_hz != recorder.channels.rate_hz:
            raise PrclabError(f"rig {stimulator.name}+{recorder.name}: the stimulator runs at "
                              f"{stimulator.channels.rate_hz:g} Hz, the recorder at "
                              f"{recorder.channels.rate_hz:g} Hz; a rig needs one rate")
        super().__init__(DeviceChannels(stimulus=stimulator.channels.stimulus if stimulator else (),
                                        response=recorder.channels.response,
                                        rate_hz=recorder.channels.rate_hz))
        self.recorder, self.stimulator = recorder, stimulator
        #: in opening order: the recorder first, so it streams before any stimulus is played
        self.devices = [recorder] if stimulator in (None, recorder) else [recorder, stimulator]
        self.name = " + ".join(d.name for d in reversed(self.devices))
        self.emulators = dict(emulators or {})
        for emulator in self.emulators.values():
            weakref.finalize(self, emulator.close)
        self._pending_mark: str | None = None
        self._playing_until = 0.0  # time.monotonic() when the stimulus played so far has played out
        self._n_written = 0

    @property
    def separate(self) -> bool:
        """Whether the stimulator and the recorder are two devices (aligned by the recorder's marks)."""
        return len(self.devices) == 2

    @property
    def emulator(self):
        """The emulator of a one-device rehearsal (faults are injected through it), else None."""
        return next(iter(self.emulators.values())) if len(self.emulators) == 1 else None

    @property
    def adc(self):
        """The recorder's converters (:attr:`Device.adc`): a recording stores its counts."""
        return self.recorder.adc

    @property
    def electrodes(self) -> tuple[Electrode, ...]:
        """The stimulator's declared electrodes (none for a record-only rig)."""
        return self.stimulator.electrodes if self.stimulator is not None else ()

    @property
    def substrate(self):
        """The simulated substrate a one-device rig runs (its state is stored per trial), else None."""
        return None if self.separate else getattr(self.recorder, "substrate", None)

    # -- lifecycle ---------------------------------------------------------------------------------
    def _open(self) -> None:
        self._pending_mark, self._playing_until, self._n_written = None, 0.0, 0
        opened = []
        try:
            for device in self.devices:
                emulator = self.emulators.get(device)
                if emulator is not None:
                    device.connect_to(emulator.start().address)
                device.open()
                opened.append(device)
        except BaseException:
            self._release(opened)  # a failed open leaves no device open and no emulator running
            raise

    def _close(self) -> None:
        self._release([d for d in self.devices if d.is_open])

    def _release(self, opened: list[Device]) -> None:
        """Close ``opened`` (stimulator first: its outputs go to rest), then every emulator."""
        try:
            for device in reversed(opened):
                try:
                    device.close()
                except DeviceError:
                    pass  # its own rest report says what was reached
        finally:
            for emulator in self.emulators.values():
                emulator.close()

    def set_rest(self, rest_V, max_slew_V_per_s=np.inf) -> None:
        super().set_rest(rest_V, max_slew_V_per_s)
        if self.stimulator is not None:
            self.stimulator.set_rest(rest_V, max_slew_V_per_s)

    def rest(self, reason: str = "stop") -> dict:
        """Drive the stimulator's outputs to rest; returns its report (a record-only rig drives none)."""
        if self.stimulator is None:
            return super().rest(reason)
        self.last_stop = self.stimulator.rest(reason)
        self.output_V = self.stimulator.output_V.copy()
        self._rested = True
        return self.last_stop

    # -- streaming ---------------------------------------------------------------------------------
    def _write(self, block: np.ndarray) -> None:
        self._guarded(self.stimulator.write, block)
        self._n_written += len(block)
        if len(block):
            self.output_V = block[-1].copy()

    def _read(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if self.separate:
            self._guarded(self.stimulator.arm, n)  # loaded ahead: only its start follows the marker
            if self._pending_mark is not None:  # the marker goes in as the trial's stimulus is played,
                label, self._pending_mark = self._pending_mark, None  # once what was played before
                time.sleep(max(0.0, self._playing_until - time.monotonic()))  # has played out
                self._guarded(self.recorder.mark, label)
            began = max(time.monotonic(), self._playing_until)  # when these n samples start to play
            self._guarded(self.stimulator.read, n)  # plays n stimulus samples (blocks as a card does)
            self._playing_until = began + n / self.channels.rate_hz
        return self._guarded(self.recorder.read, n)

    def mark(self, label: str) -> None:
        """Mark ``label`` in the recorder's stream: at once on one device; on two, when the stimulator
        plays its next samples (the next ``read``)."""
        self._require_open()
        if self.separate:
            self._pending_mark = str(label)
        else:
            self._guarded(self.recorder.mark, label)

    def events(self, start: int = 0) -> list[tuple[int, str]]:
        return self.recorder.events(start)

    @property
    def n_events(self) -> int:
        return self.recorder.n_events

    def _stimulus_position(self) -> int:
        return self._n_written

    def _guarded(self, action, *args):
        """Run ``action`` on a member; when a fault has closed a member, close the whole rig (the
        other device to rest, the emulators stopped) before the error propagates."""
        try:
            return action(*args)
        except DeviceError:
            if any(not d.is_open for d in self.devices):
                self.rest("device fault")  # the faulty device reports its own stop; the other rests
                self.is_open = False
                self._release([d for d in self.devices if d.is_open])
            raise

    def describe(self) -> dict:
        """One device: its own description (the recording's format is unchanged); two: both, and how
        they are aligned."""
        if not self.separate:
            return self.recorder.describe()
        return {**super().describe(), "stimulator": self.stimulator.describe(),
                "recorder": self.recorder.describe(), "alignment": "recorder markers"}


def split_spec(spec: str) -> list[str]:
    """``"STIM+REC"`` -> ``["STIM", "REC"]``, ``"KIND:ADDRESS"`` -> ``["KIND:ADDRESS"]``; a ``+`` splits
    only where a registered kind and ``:`` follow it."""
    kinds = "|".join(map(re.escape, DEVICE_KINDS))
    return re.split(rf"\+(?=(?:{kinds}):)", spec)


def _kind(part: str, spec: str) -> tuple[DeviceKind, str]:
    kind, _, address = part.partition(":")
    if kind not in DEVICE_KINDS:
        raise PrclabError(f"unknown device {spec[:200]!r}: kind {kind[:40]!r} is not one of "
                          f"{', '.join(sorted(DEVICE_KINDS))}")
    return DEVICE_KINDS[kind], address


def _emulators(parts: list[str], kinds: list[tuple[DeviceKind, str]], request: DeviceRequest) -> list:
    """Each part's emulator (None for a simulation), the recorder's first: a stimulator's emulator is
    wired to the recorder emulator's electrodes, so both run on its one substrate."""
    recorder_kind, recorder_address = kinds[-1]
    recorder = None if recorder_kind.emulator is None else \
        recorder_kind.emulator(recorder_address, request, None)
    if len(parts) == 1:
        return [recorder]
    if recorder is None or not hasattr(recorder, "apply"):
        raise PrclabError(f"{parts[1]}: no emulator that takes stimulus from another instrument")
    stimulator_kind, stimulator_address = kinds[0]
    try:
        if stimulator_kind.emulator is None:
            raise PrclabError(f"{parts[0]}: a simulation cannot drive an emulated instrument's electrodes")
        return [stimulator_kind.emulator(stimulator_address, request, recorder), recorder]
    except BaseException:
        recorder.close()
        raise


def make_rig(spec: str, request: DeviceRequest, allow_network: bool = False, origin: str = "") -> Rig:
    """Build the (unopened) rig named by ``spec`` (see the module docstring); ``PrclabError`` for a bad
    spec.

    Args:
        allow_network: allow a spec that opens a network connection (see :mod:`prclab.drivers.spec`);
            otherwise such a spec is refused unless ``request.emulate`` (the address is then unused).
        origin: where the spec came from, for the message (``"the protocol file X"``).
    """
    if not isinstance(spec, str) or not spec or len(spec) > 4096 or "\x00" in spec:
        raise PrclabError(f"device spec {str(spec)[:80]!r} is not a device spec (e.g. sim:potato)")
    parts = split_spec(spec)
    if len(parts) > 2:
        raise PrclabError(f"device spec {spec[:200]!r}: a rig is one device or STIMULATOR+RECORDER, "
                          f"not {len(parts)} devices")
    kinds = [_kind(part, spec) for part in parts]
    for part in parts:
        why = network_use(part)
        if why and not allow_network and not request.emulate:
            where = f" from {origin}" if origin else ""
            raise PrclabError(f"device {spec[:200]!r}{where} would open a network connection ({why}); "
                              "devices are local unless you pass --allow-network")
    emulators = _emulators(parts, kinds, request) if request.emulate else [None] * len(parts)
    try:
        devices = [kind.driver(address, request, emulator, i == 0)
                   for i, ((kind, address), emulator) in enumerate(zip(kinds, emulators))]
        if len(devices) == 2:
            require(devices[0], STIMULATE, f"it is named before '+' as the stimulator of {spec[:200]!r}")
        rig = Rig(devices[-1], devices[0], {d: e for d, e in zip(devices, emulators) if e is not None})
    except BaseException:
        for emulator in emulators:
            if emulator is not None:
                emulator.close()
        raise
    return rig
