"""Substrates by name, so protocols and the CLI can ask for ``esn`` or ``potato``."""

from __future__ import annotations

from prclab import PrclabError

from .esn import EchoStateNetwork
from .potato import PotatoModel

SUBSTRATES = {
    "esn": EchoStateNetwork,
    "potato": PotatoModel,
}


def make_substrate(name: str, n_inputs: int, **params):
    """Build substrate ``name`` with ``n_inputs`` input channels and model parameters ``params``.

    Raises ``PrclabError`` for an unknown name or a parameter the model does not take.
    """
    try:
        cls = SUBSTRATES[name]
    except KeyError:
        raise PrclabError(f"unknown substrate {name!r}; known: {', '.join(sorted(SUBSTRATES))}") from None
    try:
        return cls(n_inputs=n_inputs, **params)
    except TypeError as exc:
        raise PrclabError(f"substrate {name!r}: {exc}") from None
    except ValueError as exc:
        raise PrclabError(f"substrate {name!r}: {exc}") from None
