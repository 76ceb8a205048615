"""What a protocol asks of a device (:class:`DeviceRequest`), and which specs would reach the network.

A spec is ``KIND:ADDRESS`` (the kinds, their drivers and emulators are registered in
:mod:`prclab.protocols.rig`, which builds devices and rigs from specs).

Network devices: a spec that would make prclab open a network connection - a pyserial URL
(``potentiostat:socket://HOST:PORT``, ``rfc2217://``, any ``scheme://``), a brainflow board reached over
IP (``?ip_address=``, ``?ip_port=``, WiFi and streaming boards) - is refused unless the caller allows
network devices (``make_rig(..., allow_network=True)``, ``prclab run --allow-network``).  Protocol
files travel between labs: a file must not be able to point the lab's machine at a host.  Emulators
started for ``emulate=True`` listen on 127.0.0.1 and never use the spec's address, so they need no flag.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field

from prclab.reservoir import Substrate, make_substrate


@dataclass
class DeviceRequest:
    """What the protocol needs from a device.

    Attributes:
        n_stimulus: stimulus channels.
        rate_hz: sample rate in hertz.
        stimulus_range_V: ``(low, high)`` volts allowed on every stimulus channel.
        substrate: name of the (simulated) substrate behind ``sim`` devices and emulators.
        substrate_params: its model parameters.
        emulate: rehearse on the hardware kind's emulator (the rig starts it) instead of the hardware.
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
