"""The Substrate contract: anything that turns electrode input into electrode output over time.

A substrate is stepped at a fixed sample period ``dt`` (seconds).  ``run(u)`` takes a batch of input
sequences ``u`` of shape ``(batch, steps, n_inputs)`` (volts on the stimulating electrodes, or unitless
for the abstract echo-state core) and returns ``y`` of shape ``(batch, steps, n_outputs)``.  The internal
state carries over between calls, so a long stimulus can be streamed block by block; ``reset(seed)``
returns it to rest and re-seeds every random draw made while running (noise), so a run is
deterministic for a seed.  ``state`` / ``load_state`` expose that state as a dict of plain numpy arrays
(saved with ``numpy.savez``, loaded without pickle).  ``electrodes`` says what each stimulating
electrode is known to be (:class:`Electrode`, one per input).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Electrode:
    """What a stimulating electrode is known to be; the defaults mean unknown.

    Attributes:
        material: e.g. ``"Ag/AgCl"`` (``""``: unknown).
        area_cm2: geometric area in cm^2 (0: unknown).
        impedance_ohm: impedance at the stimulus frequencies in ohms (``nan``: unknown).
    """

    material: str = ""
    area_cm2: float = 0.0
    impedance_ohm: float = math.nan


class Substrate:
    """Base class of the substrate models (see the module docstring for the semantics).

    A model defines ``n_inputs``, ``n_outputs``, ``dt``, ``reset``, ``run``, ``state`` and
    ``load_state``; it may override ``electrodes``.  Objects that only provide those members (test
    doubles, benchmarks) are accepted wherever a substrate is run; :func:`electrodes_of` reads their
    electrodes as unknown.
    """

    n_inputs: int
    n_outputs: int
    dt: float

    @property
    def electrodes(self) -> tuple[Electrode, ...]:
        """One :class:`Electrode` per input; the default: all unknown."""
        return tuple(Electrode() for _ in range(self.n_inputs))


def electrodes_of(substrate) -> tuple[Electrode, ...]:
    """``substrate.electrodes``, or all unknown (one per input) for an object that declares none."""
    declared = getattr(substrate, "electrodes", None)
    return tuple(declared) if declared is not None else tuple(Electrode() for _ in range(substrate.n_inputs))


def check_input(u: np.ndarray, n_inputs: int, dtype) -> np.ndarray:
    """Validate and convert an input batch to ``dtype``; returns ``(batch, steps, n_inputs)``.

    A 2-D array ``(steps, n_inputs)`` is accepted as a batch of one.
    """
    u = np.asarray(u)
    if u.ndim == 2:
        u = u[None]
    if u.ndim != 3 or u.shape[2] != n_inputs:
        raise ValueError(f"expected input of shape (batch, steps, {n_inputs}), got {u.shape}")
    if not np.all(np.isfinite(u)):
        raise ValueError("input contains NaN or infinite values")
    return np.ascontiguousarray(u, dtype=dtype)


def run_sequences(substrate: Substrate, sequences: list[np.ndarray], batch_size: int = 64,
                  seed: int = 0, progress=None) -> list[np.ndarray]:
    """Run many variable-length sequences through ``substrate``, each from rest, batched by length.

    Sequences are sorted by length and grouped into batches of ``batch_size``; each batch is padded only
    to its own longest member (padding to the global maximum wastes most of the work on speech data),
    run from a fresh ``reset(seed + batch_index)``, and un-padded.

    Args:
        sequences: list of ``(steps_i, n_inputs)`` arrays.
        progress: optional callable ``progress(n_done)`` called after each batch.
    Returns:
        list of ``(steps_i, n_outputs)`` arrays in the input order.
    """
    order = np.argsort([len(s) for s in sequences], kind="stable")
    out: list[np.ndarray | None] = [None] * len(sequences)
    for b, start in enumerate(range(0, len(order), batch_size)):
        idx = order[start:start + batch_size]
        longest = max(len(sequences[i]) for i in idx)
        u = np.zeros((len(idx), longest, substrate.n_inputs), dtype=np.float64)
        for row, i in enumerate(idx):
            u[row, :len(sequences[i])] = sequences[i]
        substrate.reset(seed + b)
        y = substrate.run(u)
        for row, i in enumerate(idx):
            out[i] = y[row, :len(sequences[i])]
        if progress is not None:
            progress(len(idx))
    return out  # type: ignore[return-value]
