"""Digital twins: models fitted to a substrate's recorded stimulus -> response behaviour that run as substrates.

``FAMILIES`` maps a family name to its class (:mod:`.base` describes the interface); a new family adds
one line here.  :mod:`.file` writes and reads twin files, :mod:`.substrate` runs one as a ``Substrate``.
"""

from .base import ResidualNoise, TwinFamily
from .echo import EchoTwin
from .interface import InterfaceTwin
from .linear import LinearTwin
from .spiking import SpikingTwin
from .narx import NarxTwin

FAMILIES: dict[str, type] = {
    LinearTwin.name: LinearTwin,
    SpikingTwin.name: SpikingTwin,
    EchoTwin.name: EchoTwin,
    NarxTwin.name: NarxTwin,
    InterfaceTwin.name: InterfaceTwin,
}

__all__ = ["FAMILIES", "EchoTwin", "InterfaceTwin", "LinearTwin", "NarxTwin", "ResidualNoise", "TwinFamily"]
