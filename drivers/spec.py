"""Device spec strings: how a protocol or ``prclab run --device`` names a device.

A spec is ``KIND:ADDRESS``; the kinds and their address forms are:

===============  ====================================  ==============================================
kind             example                               device
===============  ====================================  ==============================================
``sim``          ``sim:potato``, ``sim:esn``           :class:`drivers.SimDevice` on that substrate
`potentiostat`   ``potentiostat:/dev/ttyACM0``,        serial potentiostat (pyserial),
                 ``...?protocol=methodscript``         :mod:`drivers.potentiostat`
``nidaq``        ``nidaq:Dev1``, ``nidaq:Dev1?ai=4``   NI DAQ card (nidaqmx, local or gRPC),
                                                       :mod:`drivers.nidaq`
``replay``       ``replay:run.h5``                     a recording played back, :mod:`drivers.replay`
``brainflow``    ``brainflow:cyton:/dev/ttyUSB0``,     OpenBCI Cyton via brainflow: ExG in volts,
                 ``brainflow:synthetic``,              markers, no stimulus output; playback needs
                 ``brainflow:playback:F.csv``          ``?master=BOARD``,
                                                       :mod:`drivers.brainflow_board`
===============  ====================================  ==============================================

Hardware drivers register themselves in ``DEVICE_KINDS``.  With ``emulate=True`` a hardware kind
starts its emulator from ``hardware_sims`` (backed by the request's substrate) and connects the real
client library to it, so a protocol can be rehearsed before the hardware arrives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from prclab import PrclabError
from reservoir import Substrate, make_substrate

from .base import Device
from .sim import SimDevice


@dataclass
class DeviceRequest:
    """What the protocol needs from a device.

    Attributes:
        n_stimulus: stimulus channels.
        rate_hz: sample rate in hertz.
        stimulus_range_V: ``(low, high)`` volts allowed on every stimulus channel.
        substrate: name of the (simulated) substrate behind ``sim`` devices and emulators.
        substrate_params: its model parameters.
        emulate: start the hardware kind's emulator instead of opening real hardware.
        seed: seed for simulated substrates.
    """

    n_stimulus: int
    rate_hz: float
    stimulus_range_V: tuple[float, float] = (-1.0, 1.0)
    substrate: str = "potato"
    substrate_params: dict = field(default_factory=dict)
    emulate: bool = False
    seed: int = 0

    def build_substrate(self, name: str | None = None) -> Substrate:
        """The request's substrate, with ``dt = 1 / rate_hz`` where the model has one.

        ``name`` (e.g. from ``sim:NAME``) picks another model; the request's parameters then apply only
        if it is the request's own substrate, since they belong to that model.
        """
        name = name or self.substrate
        params = dict(self.substrate_params) if name == self.substrate else {}
        params.setdefault("dt", 1.0 / self.rate_hz)
        return make_substrate(name, self.n_stimulus, **params)


def _sim(address: str, request: DeviceRequest) -> Device:
    substrate = request.build_substrate(address or None)
    return SimDevice(substrate, request.rate_hz, stimulus_range_V=request.stimulus_range_V,
                     seed=request.seed)


def _potentiostat(address: str, request: DeviceRequest) -> Device:
    from .potentiostat import from_spec  # imports pyserial only when asked for

    return from_spec(address, request)


DEVICE_KINDS: dict[str, Callable[[str, DeviceRequest], Device]] = {"sim": _sim}
DEVICE_KINDS["potentiostat"] = _potentiostat


def _nidaq(address: str, request: DeviceRequest) -> Device:
    from .nidaq import from_spec  # imports nidaqmx only when asked for

    return from_spec(address, request)


DEVICE_KINDS["nidaq"] = _nidaq


def _replay(address: str, request: DeviceRequest) -> Device:
    from .replay import from_spec  # a recording played back: ``replay:REC.h5``

    return from_spec(address, request)


DEVICE_KINDS["replay"] = _replay


def _brainflow(address: str, request: DeviceRequest) -> Device:
    from .brainflow_board import from_spec  # imports brainflow only when asked for

    return from_spec(address, request)


DEVICE_KINDS["brainflow"] = _brainflow


def make_device(spec: str, request: DeviceRequest) -> Device:
    """Build the (unopened) device named by ``spec``; raises ``PrclabError`` for a bad spec."""
    kind, _, address = spec.partition(":")
    try:
        factory = DEVICE_KINDS[kind]
    except KeyError:
        raise PrclabError(f"unknown device {spec!r}: kind {kind!r} is not one of "
                          f"{', '.join(sorted(DEVICE_KINDS))}") from None
    return factory(address, request)
