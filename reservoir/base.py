"""The Substrate contract: anything that turns electrode input into electrode output over time.

A substrate is stepped at a fixed sample period ``dt`` (seconds).  ``run(u)`` takes a batch of input
sequences ``u`` of shape ``(batch, steps, n_inputs)`` (volts on the stimulating electrodes, or unitless
for the abstract echo-state core) and returns ``y`` of shape ``(batch, steps, n_outputs)``.  The internal
state carries over between calls, so a long stimulus can be streamed block by block; ``reset(seed)``
returns it to rest and re-seeds every random draw made while running (noise), so a run is
deterministic for a seed: an int, ``None`` or a ``numpy.random.SeedSequence``, whose children seed the
batch rows, or one ``SeedSequence`` per batch row (``reservoir.streams``).  ``state`` / ``load_state`` expose that state as a dict of plain numpy arrays
(saved with ``numpy.savez``, loaded without pickle).  ``electrodes`` says what each stimulating
electrode is known to be (:class:`Electrode`, one per input).
"""

from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass

import numpy as np

from prclab.errors import PrclabError


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
    ``load_state``; it may override ``electrodes`` and ``derived``.  Its parameters are its constructor's
    keywords, recorded as it is built (one implementation, here): ``get_params`` / ``set_params`` as in
    scikit-learn, and ``describe()`` holds them, so ``registry.substrate_from_description`` rebuilds a
    model that responds identically for the same ``reset`` seed.  Objects that only provide the run
    members (test doubles, benchmarks) are accepted wherever a substrate is run; :func:`electrodes_of`
    reads their electrodes as unknown.
    """

    n_inputs: int
    n_outputs: int
    dt: float

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self, *args, **kw):
            # the most derived constructor records (a subclass's super().__init__ call does not)
            if cls is type(self) or "_params" not in vars(self):
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                self._params = dict(list(bound.arguments.items())[1:])   # all but self
            init(self, *args, **kw)

        cls.__init__ = recording_init

    def get_params(self) -> dict[str, object]:
        """The constructor's keywords this model was built with (defaults filled in), a new dict."""
        return dict(self._params)

    def set_params(self, **params) -> Substrate:
        """Rebuild this model in place with ``params`` changed (state back to rest); returns it.

        Raises ``PrclabError`` for a name the constructor does not take, ``ValueError`` for a value it
        refuses (the model is then left as it was).
        """
        unknown = sorted(set(params) - set(self._params))
        if unknown:
            raise PrclabError(f"{type(self).__name__}.set_params: unknown parameter(s) {', '.join(unknown)}; "
                              f"known: {', '.join(self._params)}")
        rebuilt = type(self)(**{**self._params, **params})
        self.__dict__.clear()
        self.__dict__.update(vars(rebuilt))
        return self

    def derived(self) -> dict[str, object]:
        """Values computed from the parameters that a reader of ``describe()`` may want (none here)."""
        return {}

    def describe(self) -> dict:
        """``{"model": registry name, "params": get_params(), "derived": derived()}``, JSON-able."""
        from .registry import registered_name   # the registry imports the models

        return {"model": registered_name(type(self)), "params": _plain(self.get_params()),
                "derived": _plain(self.derived())}

    @property
    def electrodes(self) -> tuple[Electrode, ...]:
        """One :class:`Electrode` per input; the default: all unknown."""
        return tuple(Electrode() for _ in range(self.n_inputs))


def _plain(values: dict[str, object]) -> dict[str, object]:
    """``values`` with numpy scalars as Python numbers and dtypes (``np.float32``...) by name."""
    out = {}
    for key, value in values.items():
        if isinstance(value, np.generic):
            value = value.item()
        elif isinstance(value, (type, np.dtype)):
            value = str(np.dtype(value))
        out[key] = value
    return out


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


def length_buckets(lengths: list[int], size: int, min_ratio: float = 0.5) -> list[list[int]]:
    """Indices sorted by decreasing length, cut into buckets of at most ``size`` whose shortest member
    is at least ``min_ratio`` times their longest (so padding stays under ``1 / min_ratio`` per row)."""
    if size < 1:
        raise ValueError(f"bucket size must be positive, got {size}")
    buckets: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if not buckets or len(buckets[-1]) == size or lengths[i] < min_ratio * lengths[buckets[-1][0]]:
            buckets.append([])
        buckets[-1].append(i)
    return buckets


def run_sequences(substrate: Substrate, sequences: list[np.ndarray], batch_size: int = 64,
                  seed: int = 0, progress=None) -> list[np.ndarray]:
    """Run many variable-length sequences through ``substrate``, each from rest, batched by length.

    Sequences are cut into :func:`length_buckets` of at most ``batch_size``; each bucket is zero-padded
    to its longest member (rows in decreasing length) and run from rest.  A substrate whose ``run``
    takes ``lengths`` (the echo-state core) steps each row only for its own length, so padding costs
    nothing; others compute on the padding, which is cut off.  Sequence ``i`` draws its noise from
    ``numpy.random.SeedSequence(seed).spawn(len(sequences))[i]`` (the bucket's ``reset`` gets one seed
    per row, see ``reservoir.streams``), so its response does not depend on the batch it lands in.

    Args:
        sequences: list of ``(steps_i, n_inputs)`` arrays.
        progress: optional callable ``progress(n_done)`` called after each batch.
    Returns:
        list of ``(steps_i, n_outputs)`` arrays in the input order.
    """
    trial_seeds = np.random.SeedSequence(seed).spawn(len(sequences))
    takes_lengths = "lengths" in inspect.signature(substrate.run).parameters
    lengths = [len(s) for s in sequences]
    out: list[np.ndarray | None] = [None] * len(sequences)
    for idx in length_buckets(lengths, batch_size):
        rows = np.array([lengths[i] for i in idx])
        u = np.zeros((len(idx), rows[0], substrate.n_inputs))
        for row, i in enumerate(idx):
            u[row, :rows[row]] = sequences[i]
        substrate.reset([trial_seeds[i] for i in idx])
        y = substrate.run(u, lengths=rows) if takes_lengths else substrate.run(u)
        for row, i in enumerate(idx):
            out[i] = y[row, :rows[row]]
        if progress is not None:
            progress(len(idx))
    return out  # type: ignore[return-value]
