"""Independent random streams: one per batch row (trial) and per use, spawned from ``numpy.random.SeedSequence``.

A substrate's noise must not depend on which batch a trial lands in, nor one use of randomness on
another (a model's weights on its run-time noise, a potato's measurement noise on its core's).  So every
stream is a ``SeedSequence`` child, never ``seed + k``:

- the weights of a model built with ``seed`` come from ``default_rng(seed)``, i.e. ``SeedSequence(seed)``
  itself;
- after ``reset(seed)`` batch row ``r`` draws from ``SeedSequence(seed).spawn(batch)[r]`` (spawn key
  ``(r,)``); ``reset`` may instead be given one ``SeedSequence`` per row (``run_sequences`` gives trial ``i``
  of its input ``SeedSequence(seed).spawn(n_trials)[i]``, whatever batch it runs in);
- a model with several uses of randomness gives use ``k`` of row ``r`` that row's child ``k`` (spawn key
  ``(r, k)``), through :meth:`RowSeeds.child`.

Each row's stream is a ``PCG64`` generator drawn from in order, so a row's numbers do not depend on how
its steps are split into ``run`` calls either.  Its position saves as plain ``uint64`` words
(``reservoir.rng_state``), ``(batch, 6)`` per use.
"""

from __future__ import annotations

import copy

import numpy as np

from .rng_state import rng_from_array, rng_to_array


def spawned(parent: np.random.SeedSequence, *keys: int) -> np.random.SeedSequence:
    """``parent``'s descendant with spawn key ``parent.spawn_key + keys`` (what ``spawn`` would give),
    without advancing ``parent``'s spawn counter."""
    return np.random.SeedSequence(parent.entropy, spawn_key=tuple(parent.spawn_key) + keys,
                                  pool_size=parent.pool_size)


class RowSeeds:
    """The seeds of the batch rows of the next run, as ``reset(seed)`` was given them.

    Args:
        seed: an int or ``None`` (fresh entropy) or a ``SeedSequence``: row ``r`` gets its child ``r``;
            or a sequence of ``SeedSequence``, one per row; or a ``RowSeeds`` (returned as it is by
            :meth:`of`).
    """

    def __init__(self, seed=None):
        if isinstance(seed, (list, tuple)):
            self._rows: list[np.random.SeedSequence] | None = [_as_seed_sequence(s) for s in seed]
            self._root = None
        else:
            self._rows, self._root = None, _as_seed_sequence(seed)
        self._path: tuple[int, ...] = ()   # use keys below each row's seed

    @classmethod
    def of(cls, seed) -> RowSeeds:
        """``seed`` as ``RowSeeds`` (see the class)."""
        return seed if isinstance(seed, RowSeeds) else cls(seed)

    def child(self, k: int) -> RowSeeds:
        """The seeds of use ``k``: each row's child ``k``."""
        out = copy.copy(self)
        out._path = self._path + (k,)
        return out

    def generators(self, batch: int) -> list[np.random.Generator]:
        """One generator per row of a batch of ``batch``; raises ``ValueError`` if ``reset`` was given a
        different number of row seeds."""
        if self._rows is None:
            rows = [spawned(self._root, r) for r in range(batch)]
        elif len(self._rows) != batch:
            raise ValueError(f"reset was given {len(self._rows)} row seeds, the input has a batch of {batch}")
        else:
            rows = self._rows
        return [np.random.Generator(np.random.PCG64(spawned(ss, *self._path))) for ss in rows]


def _as_seed_sequence(seed) -> np.random.SeedSequence:
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if seed is not None and not isinstance(seed, (int, np.integer)):
        raise ValueError(f"a seed must be an int, None or a numpy SeedSequence, got {type(seed).__name__}")
    return np.random.SeedSequence(None if seed is None else int(seed))


class RowStreams:
    """One use of randomness of a substrate: a generator per batch row, made at the first draw after
    ``reset`` (when the batch size is known)."""

    def __init__(self):
        self._seeds = RowSeeds(0)
        self._gens: list[np.random.Generator] | None = None

    def reset(self, seeds: RowSeeds) -> None:
        self._seeds, self._gens = seeds, None

    def _generators(self, batch: int) -> list[np.random.Generator]:
        if self._gens is None:
            self._gens = self._seeds.generators(batch)
        elif len(self._gens) != batch:
            raise ValueError(f"random streams hold a batch of {len(self._gens)}, asked for {batch}; "
                             "call reset() before changing the batch size")
        return self._gens

    def standard_normal(self, shape: tuple[int, ...], axis: int = 0, dtype=np.float64) -> np.ndarray:
        """Standard normal draws of ``shape``; ``axis`` is the batch axis, row ``r`` from its own stream."""
        out = np.empty(shape, dtype)
        rows = np.moveaxis(out, axis, 0)
        for r, gen in enumerate(self._generators(shape[axis])):
            rows[r] = gen.standard_normal(rows.shape[1:], dtype=dtype)
        return out

    def state(self, batch: int) -> np.ndarray:
        """``(batch, 6)`` uint64 positions of the row streams (``(0, 6)`` for a batch of 0)."""
        if batch == 0:
            return np.zeros((0, 6), np.uint64)
        return np.stack([rng_to_array(g) for g in self._generators(batch)])

    def load_state(self, words: np.ndarray, batch: int) -> None:
        """Restore ``state(batch)``'s words; one generator's ``(6,)`` words (state saved before streams
        were per row) are read as a batch of one."""
        words = np.asarray(words, dtype=np.uint64)
        if words.shape == (6,):
            words = words[None]
        if words.ndim != 2 or words.shape[1] != 6 or (batch and len(words) != batch):
            raise ValueError(f"random stream state must be ({batch}, 6) uint64 words, got {words.shape}")
        self._gens = [rng_from_array(w) for w in words] if batch else None


def split_off(words: np.ndarray) -> np.ndarray:
    """Positions of new streams independent of the saved ones ``words`` (``(batch, 6)`` or ``(6,)``),
    derived from them (seeded by ``SeedSequence(words)``): for state saved when two uses shared one
    stream, so the use that now has a stream of its own does not repeat the other's draws."""
    words = np.asarray(words, dtype=np.uint64)
    rows = words[None] if words.ndim == 1 else words
    return np.stack([rng_to_array(np.random.Generator(np.random.PCG64(np.random.SeedSequence(
        [int(w) for w in row])))) for row in rows]) if len(rows) else np.zeros((0, 6), np.uint64)
