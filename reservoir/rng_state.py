"""A numpy random generator's position as a plain integer array, so substrate state saves without pickle.

Saving the generator with the rest of a substrate's state lets a run that is stopped, saved
(``numpy.savez``), loaded (``numpy.load(..., allow_pickle=False)``) and resumed draw the same noise as
one that never stopped.  Only the default ``PCG64`` bit generator is supported.
"""

from __future__ import annotations

import numpy as np

_MASK = (1 << 64) - 1


def rng_to_array(rng: np.random.Generator) -> np.ndarray:
    """``(6,)`` uint64: the 128-bit state and increment (high, low words), ``has_uint32``, ``uinteger``."""
    st = rng.bit_generator.state
    if st["bit_generator"] != "PCG64":
        raise ValueError(f"only PCG64 generators can be saved, got {st['bit_generator']}")
    s, inc = st["state"]["state"], st["state"]["inc"]
    return np.array([s >> 64, s & _MASK, inc >> 64, inc & _MASK, st["has_uint32"], st["uinteger"]],
                    dtype=np.uint64)


def rng_from_array(words: np.ndarray) -> np.random.Generator:
    """The generator that ``rng_to_array`` described."""
    w = [int(v) for v in np.asarray(words, dtype=np.uint64)]
    if len(w) != 6:
        raise ValueError(f"a saved generator is 6 words, got {len(w)}")
    bit_gen = np.random.PCG64()
    bit_gen.state = {"bit_generator": "PCG64",
                     "state": {"state": (w[0] << 64) | w[1], "inc": (w[2] << 64) | w[3]},
                     "has_uint32": w[4], "uinteger": w[5]}
    return np.random.Generator(bit_gen)
