"""What a device can do, as small runtime-checkable protocols (in the manner of Bluesky's ``protocols.py``).

A rig (:mod:`prclab.protocols.rig`) composes devices by these capabilities:

- :class:`Stimulates`: drives stimulus outputs (``write``, ``set_rest``, ``rest``) and declares what
  each output's electrode is (``electrodes``, one :class:`~prclab.reservoir.Electrode` per stimulus
  channel), which is all the safety layer may know of the electrodes;
- :class:`Records`: delivers the response stream (``read``);
- :class:`MarksEvents`: puts labelled events into the response stream (``mark``, ``events``,
  ``n_events``), which is how a stimulator and a recorder on separate clocks are aligned;
- :class:`SnapshotsState`: runs a simulated substrate whose state can be stored with each trial and
  restored on resume (``substrate``).

``isinstance`` against a runtime-checkable protocol checks only that the members exist, and every
:class:`~prclab.drivers.base.Device` has ``write``; so :func:`capabilities` also asks that the device has
channels for the capability: a device with no stimulus channel (a brainflow board with no stimulator
behind it) is record-only.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from prclab.errors import PrclabError
from prclab.reservoir.base import Electrode

STIMULATE, RECORD, MARK, SNAPSHOT = "stimulate", "record", "mark", "snapshot"


@runtime_checkable
class Stimulates(Protocol):
    """Drives stimulus outputs: ``write(block)`` queues ``(n, n_stimulus)`` samples in the stimulus
    channels' units; ``set_rest``/``rest`` declare and reach the level every stop leaves them at."""

    electrodes: tuple[Electrode, ...]

    def write(self, block: np.ndarray) -> None: ...

    def set_rest(self, rest_V, max_slew_V_per_s=np.inf) -> None: ...

    def rest(self, reason: str = "stop") -> dict: ...


@runtime_checkable
class Records(Protocol):
    """Delivers the response stream: ``read(n) -> (samples (n, n_response), times (n,) seconds)``."""

    def read(self, n: int) -> tuple[np.ndarray, np.ndarray]: ...


@runtime_checkable
class MarksEvents(Protocol):
    """Puts labelled events into the response stream; ``events(start)`` returns
    ``(response_sample_index, label)`` pairs from the ``start``-th on."""

    n_events: int

    def mark(self, label: str) -> None: ...

    def events(self, start: int = 0) -> list[tuple[int, str]]: ...


@runtime_checkable
class SnapshotsState(Protocol):
    """Runs a simulated substrate (``substrate.state`` / ``load_state``) stored with each trial."""

    substrate: object


def capabilities(device) -> frozenset[str]:
    """The capabilities of ``device`` among ``stimulate``, ``record``, ``mark``, ``snapshot``.

    ``stimulate`` and ``record`` count only with at least one stimulus (response) channel.
    """
    channels = getattr(device, "channels", None)
    found = set()
    if isinstance(device, Stimulates) and channels is not None and len(channels.stimulus):
        found.add(STIMULATE)
    if isinstance(device, Records) and channels is not None and len(channels.response):
        found.add(RECORD)
    if isinstance(device, MarksEvents):
        found.add(MARK)
    if isinstance(device, SnapshotsState) and device.substrate is not None:
        found.add(SNAPSHOT)
    return frozenset(found)


def require(device, capability: str, why: str) -> None:
    """Raise ``PrclabError`` (one line, naming the device and ``why`` it is needed) unless ``device``
    has ``capability``."""
    if capability not in capabilities(device):
        has = ", ".join(sorted(capabilities(device))) or "nothing"
        raise PrclabError(f"{getattr(device, 'name', type(device).__name__)}: cannot {capability} "
                          f"(it can: {has}); {why}")
