"""Two emulated instruments on one bench: one's analog outputs wired to the other's electrodes.

A rig of a stimulator and a recorder (e.g. an NI card's AO lines driving the electrodes an OpenBCI Cyton
records from) is rehearsed on ONE simulated substrate: the recorder's emulator owns it and takes
stimulus over its side channel (``apply`` queues rows it plays one per sample in real time, ``hold``
sets the level it applies while none is queued), and :class:`Wire` stands in for the stimulator
emulator's own substrate, so every AO sample the stimulator plays reaches the recorder's substrate,
in order, at the recorder's clock.  The stimulator's AI lines read the AO lines back (a monitor), as a
card wired for loopback does.
"""

from __future__ import annotations

import numpy as np


class Wire:
    """Substrate-shaped stand-in: ``run(u)`` hands the stimulator's output ``u`` ``(batch, steps, n)``
    volts to ``recorder``'s side channel and returns ``u`` (the loopback the stimulator's inputs read).

    Args:
        recorder: an emulator with ``apply(block (k, n))``, ``hold(level (n,))`` and a ``substrate``
            (``n = substrate.n_inputs``, ``dt``), such as ``hardware_sims.cyton.CytonEmulator``.
    """

    def __init__(self, recorder):
        self.recorder = recorder
        self.n_inputs = self.n_outputs = recorder.substrate.n_inputs
        self.dt = recorder.substrate.dt

    def reset(self, seed: int = 0) -> None:
        """Nothing of the wire's own to reset (the recorder's emulator resets its substrate)."""

    def run(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=np.float64)
        for rows in u:
            if len(rows):
                self.recorder.apply(rows)
                self.recorder.hold(rows[-1])  # an idle output holds its last voltage
        return u.copy()

    def hold(self, level_V: np.ndarray) -> None:
        """The outputs were set to ``level_V`` ``(n,)`` volts at once (an on-demand write)."""
        self.recorder.hold(level_V)

    @property
    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        """A wire holds no state."""
