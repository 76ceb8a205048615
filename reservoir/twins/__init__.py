"""Digital twins: models fitted to a substrate's recorded stimulus -> response behaviour that run as substrates.

``FAMILIES`` maps a family name to its class (:mod:`.base` describes the interface); a new family adds
one line here.  :mod:`.file` writes and reads twin files, :mod:`.substrate` runs one as a ``Substrate``.
"""

from .base import ResidualNoise, TwinFamily
from .echo import EchoTwin
from .linear import LinearTwin

FAMILIES: dict[str, type] = {
    LinearTwin.name: LinearTwin,
    EchoTwin.name: EchoTwin,
}

__all__ = ["FAMILIES", "EchoTwin", "LinearTwin", "ResidualNoise", "TwinFamily"]
