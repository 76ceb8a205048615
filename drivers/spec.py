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

Network devices: a spec that would make prclab open a network connection - a pyserial URL
(``potentiostat:socket://HOST:PORT``, ``rfc2217://``, any ``scheme://``), a brainflow board reached over
IP (``?ip_address=``, ``?ip_port=``, WiFi and streaming boards) - is refused unless the caller allows
network devices (``make_device(..., allow_network=True)``, ``prclab run --allow-network``).  Protocol
files travel between labs: a file must not be able to point the lab's machine at a host.  Emulators
started by ``emulate=True`` listen on 127.0.0.1 and never use the spec's address, so they need no flag.

Hardware drivers register themselves in ``DEVICE_KINDS``.  With ``emulate=True`` a hardware kind
starts its emulator from ``hardware_sims`` (backed by the request's substrate) and connects the real
client library to it, so a protocol can be rehearsed before the hardware arrives.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from typing import Callable

from prclab.errors import PrclabError
from prclab.reservoir import Substrate, make_substrate

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


_NETWORK_BRAINFLOW_OPTIONS = ("ip_address", "ip_port", "ip_protocol")


def network_use(spec: str) -> str | None:
    """Why ``spec`` would open a network connection (a few words), or None for a local device."""
    kind, _, address = spec.partition(":")
    if kind == "potentiostat":
        port = address.partition("?")[0]
        if "://" in port:
            return f"serial URL {port.split('://')[0]}:// (pyserial connects over the network)"
    elif kind == "brainflow":
        board, _, rest = address.partition(":")
        query = board.partition("?")[2] + "&" + rest.partition("?")[2]
        options = {key.strip() for key, _ in urllib.parse.parse_qsl(query, keep_blank_values=True)}
        used = sorted(options & set(_NETWORK_BRAINFLOW_OPTIONS))
        if used:
            return f"brainflow option {', '.join(used)} (an IP board)"
        name = board.partition("?")[0].upper()
        if any(word in name for word in ("WIFI", "STREAMING", "GALEA", "UNICORN", "AAVAA")):
            return f"brainflow board {board.partition('?')[0]!r} (reached over the network)"
        if "://" in rest:
            return "brainflow address is a URL"
    elif "://" in address:
        return f"address {address.split('://')[0]}:// is a URL"
    return None


def make_device(spec: str, request: DeviceRequest, allow_network: bool = False,
                origin: str = "") -> Device:
    """Build the (unopened) device named by ``spec``; raises ``PrclabError`` for a bad spec.

    Args:
        allow_network: allow a spec that opens a network connection (see the module docstring);
            otherwise such a spec is refused unless ``request.emulate`` (the address is then unused).
        origin: where the spec came from, for the message (``"the protocol file X"``).
    """
    if not isinstance(spec, str) or not spec or len(spec) > 4096 or "\x00" in spec:
        raise PrclabError(f"device spec {str(spec)[:80]!r} is not a device spec (e.g. sim:potato)")
    kind, _, address = spec.partition(":")
    try:
        factory = DEVICE_KINDS[kind]
    except KeyError:
        raise PrclabError(f"unknown device {spec[:200]!r}: kind {kind[:40]!r} is not one of "
                          f"{', '.join(sorted(DEVICE_KINDS))}") from None
    why = network_use(spec)
    if why and not allow_network and not request.emulate:
        where = f" from {origin}" if origin else ""
        raise PrclabError(f"device {spec[:200]!r}{where} would open a network connection ({why}); "
                          "devices are local unless you pass --allow-network")
    return factory(address, request)
