"""A twin file as a :class:`~prclab.reservoir.base.Substrate`: ``TwinSubstrate(path)``.

``n_inputs``, ``n_outputs`` and ``dt`` come from the file; ``reset(seed)`` returns to rest and seeds
one residual-noise stream per batch row (``reservoir.streams``: an int, None, a ``SeedSequence`` or one
per row); ``run(u)`` streams block by block (the family's ``step_block``), so a long stimulus in blocks
gives the samples one call would; ``state`` / ``load_state`` are plain arrays (the noise streams'
positions included); ``describe()`` holds the path and the file's sha256; ``clone(n)`` is one batch of
``n`` identical copies that differ only by their noise seeds.
"""

from __future__ import annotations

import numpy as np

from prclab.errors import PrclabError

from ..base import Substrate, check_input
from ..rng_state import rng_from_array, rng_to_array
from ..streams import RowSeeds


class TwinSubstrate(Substrate):
    """The twin in file ``path`` run as a substrate (module docstring).

    Args:
        path: twin file written by ``prclab twin fit``.
        noise: add the fitted residual noise (False: the noiseless mean prediction).
        copies: fixed batch size (``clone``), or None for any batch.
    """

    def __init__(self, path: str, noise: bool = True, copies: int | None = None):
        from .file import read_twin

        self.twin = read_twin(path)
        self.family = self.twin.family
        self.path, self.noise, self.copies = str(path), bool(noise), copies
        self.n_inputs, self.n_outputs, self.dt = self.twin.n_inputs, self.twin.n_outputs, self.twin.dt
        self.reset(0)

    def reset(self, seed=None) -> None:
        self._seeds = RowSeeds.of(seed)
        self._state: dict | None = None
        self._rngs: list | None = None

    def run(self, u: np.ndarray) -> np.ndarray:
        """``u`` ``(batch, steps, n_inputs)`` volts from the current state -> ``(batch, steps, n_outputs)``."""
        u = check_input(u, self.n_inputs, np.float64)
        if self.copies is not None and len(u) == 1:
            u = np.broadcast_to(u, (self.copies,) + u.shape[1:])
        if self.copies is not None and len(u) != self.copies:
            raise PrclabError(f"twin {self.path}: cloned as a batch of {self.copies}, got a batch of {len(u)}")
        if self._state is None:
            self._state = self.family.initial_state(len(u))
            self._rngs = self._seeds.generators(len(u)) if self.noise else None
        elif len(self._state["noise"]) != len(u):
            raise ValueError(f"batch of {len(u)} continues a state of {len(self._state['noise'])} rows; reset first")
        y, self._state = self.family.step_block(self._state, u, self._rngs)
        return y

    @property
    def state(self) -> dict[str, np.ndarray]:
        if self._state is None:
            return {}
        out = {f"twin_{k}": v.copy() for k, v in self._state.items()}
        if self._rngs is not None:
            out["rng"] = np.stack([rng_to_array(g) for g in self._rngs])
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        if not state:
            self._state = None
            return
        self._state = {k[5:]: np.array(v) for k, v in state.items() if k.startswith("twin_")}
        self._rngs = [rng_from_array(r) for r in state["rng"]] if "rng" in state else None

    def derived(self) -> dict[str, object]:
        return {"sha256": self.twin.sha256, "family": self.family.name}

    def describe(self) -> dict:
        return {"model": f"twin:{self.path}", "params": {"n_inputs": self.n_inputs, "noise": self.noise},
                "derived": self.derived()}

    def clone(self, n: int) -> TwinSubstrate:
        """``n`` identical copies as one batch (run with ``u`` of batch ``n``, or ``(steps, n_in)``
        broadcast); the rows differ only by their noise seeds."""
        if n < 1:
            raise PrclabError(f"twin {self.path}: clone needs n >= 1, got {n}")
        return TwinSubstrate(self.path, self.noise, copies=int(n))
