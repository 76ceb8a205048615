"""Substrates by name, so protocols and the CLI can ask for ``esn``, ``potato``...

Each entry names the model class, the constructor parameter that sets its size (``--units`` on the
command line) and how many samples a task holds each feature frame for by default (1 for the abstract
echo-state core, which steps once per frame; 10 for physical models sampled at 1 kHz, i.e. a 10 ms
frame).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from functools import cache

from prclab.errors import PrclabError

from .esn import EchoStateNetwork
from .hydrogel import HydrogelModel
from .organoid import OrganoidModel
from .potato import PotatoModel


@dataclass(frozen=True)
class SubstrateEntry:
    cls: type
    size_param: str
    samples_per_frame: int


SUBSTRATES: dict[str, SubstrateEntry] = {
    "esn": SubstrateEntry(EchoStateNetwork, "units", 1),
    "potato": SubstrateEntry(PotatoModel, "nodes", 10),
    "hydrogel": SubstrateEntry(HydrogelModel, "grid", 10),
    "organoid": SubstrateEntry(OrganoidModel, "neurons", 10),
}


def substrate_entry(name: str) -> SubstrateEntry:
    try:
        return SUBSTRATES[name]
    except KeyError:
        raise PrclabError(f"unknown substrate {name!r}; known: {', '.join(sorted(SUBSTRATES))}") from None


def make_substrate(name: str, n_inputs: int, size: int | None = None, **params):
    """Build substrate ``name`` with ``n_inputs`` input channels and model parameters ``params``.

    ``size`` (if given) sets the model's size parameter (units, nodes, neurons).  Raises ``PrclabError``
    for an unknown name or a parameter the model does not take or accept.
    """
    entry = substrate_entry(name)
    if size is not None:
        params[entry.size_param] = int(size)
    for key, value in params.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise PrclabError(f"substrate {name!r}: {key} must be finite, got {value}")
    try:
        return entry.cls(n_inputs=n_inputs, **params)
    except (TypeError, ValueError) as exc:
        raise PrclabError(f"substrate {name!r}: {exc}") from None


@cache
def _defaults(cls: type) -> dict[str, object]:
    return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
            if name not in ("self", "n_inputs") and p.default is not inspect.Parameter.empty}


def substrate_defaults(name: str) -> dict[str, object]:
    """Substrate ``name``'s constructor keywords and their defaults (``n_inputs`` excluded), a new dict.

    Raises ``PrclabError`` for an unknown name.
    """
    return dict(_defaults(substrate_entry(name).cls))
