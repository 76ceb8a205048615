"""``check_substrate``: the contract every substrate model keeps, checked on one (in the spirit of
scikit-learn's ``check_estimator``).

A new substrate is one module (a :class:`reservoir.base.Substrate` subclass) and one entry in
``reservoir.registry.SUBSTRATES``; ``check_substrate(factory)`` then tells whether it keeps the contract
the rest of prclab relies on:

- ``shapes``: ``run`` maps ``(batch, steps, n_inputs)`` to finite floats ``(batch, steps, n_outputs)``, and
  a 2-D ``(steps, n_inputs)`` input as a batch of one; ``electrodes`` holds one ``Electrode`` per input;
- ``determinism``: two models built alike and ``reset`` with the same seed respond identically;
- ``streaming``: a stimulus run in uneven blocks gives what one ``run`` gives (state and noise streams
  carry over; to rounding, ``rtol``: a sum over samples split across blocks rounds otherwise);
- ``batch independence``: a row's response, from the same row seed, is the same alone as in a batch
  (to float32 rounding, ``rtol``: a BLAS product may sum a batch of another shape in another
  order);
- ``state``: ``state`` is plain numeric arrays that survive ``numpy.savez`` / ``numpy.load(...,
  allow_pickle=False)``, and a fresh model loading them continues exactly;
- ``params``: ``type(model)(**model.get_params())`` has the same parameters, ``set_params`` with them
  changes no response, and an unknown name raises ``PrclabError``;
- ``describe``: ``describe()`` is JSON-able and ``substrate_from_description`` of its JSON round trip
  responds identically (so the model must be registered).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import numpy as np

from prclab.errors import PrclabError

from .base import Electrode, Substrate
from .registry import substrate_from_description

CHECKS = ("shapes", "determinism", "streaming", "batch independence", "state", "params", "describe")


def check_substrate(factory: Callable[[], Substrate], steps: int = 120, batch: int = 3,
                    amplitude_V: float = 0.5, seed: int = 0, rtol: float = 1e-5) -> list[str]:
    """Run every check above on models from ``factory()`` (each call a new, small model); returns
    ``CHECKS``.

    Args:
        steps: samples per check run; ``batch``: rows of a batched run.
        amplitude_V: the random stimulus is uniform in ``[-amplitude_V, amplitude_V]``, held 5 samples.
        seed: seed of the stimulus and of the ``reset`` calls.
        rtol: largest difference of a row alone and in a batch, or of blocks and one run, relative to
            the largest ``|response|`` (float32 rounding; another row's noise, or a stream that
            restarts, differs far more).
    Raises:
        PrclabError: ``check_substrate(<class>): <check>: <what failed>`` for the first broken check.
    """
    model = factory()
    name = type(model).__name__

    def require(ok: bool, check: str, what: str) -> None:
        if not ok:
            raise PrclabError(f"check_substrate({name}): {check}: {what}")

    rng = np.random.default_rng(seed)
    held = rng.uniform(-amplitude_V, amplitude_V, (batch, steps // 5 + 1, model.n_inputs))
    u = np.ascontiguousarray(held.repeat(5, axis=1)[:, :steps])

    def response(m: Substrate, x: np.ndarray = u, reset=seed) -> np.ndarray:
        m.reset(reset)
        return np.asarray(m.run(x))

    # shapes
    y = response(model)
    require(y.shape == (batch, steps, model.n_outputs), "shapes",
            f"run of {u.shape} returned {y.shape}, expected {(batch, steps, model.n_outputs)}")
    require(np.issubdtype(y.dtype, np.floating) and bool(np.all(np.isfinite(y))), "shapes",
            f"response is not finite floats (dtype {y.dtype})")
    require(np.asarray(response(model, u[0])).shape == (1, steps, model.n_outputs), "shapes",
            "a 2-D (steps, n_inputs) input is not run as a batch of one")
    electrodes = tuple(model.electrodes)
    require(len(electrodes) == model.n_inputs and all(isinstance(e, Electrode) for e in electrodes),
            "shapes", f"electrodes holds {len(electrodes)} entries for {model.n_inputs} inputs")

    # determinism
    require(np.array_equal(response(factory()), y), "determinism",
            f"two models built alike and reset({seed}) respond differently")
    require(float(np.std(y)) > 0, "determinism", "the response is constant: nothing to compare")

    # streaming
    model.reset(seed)
    cuts = [0, 1, steps // 3, steps // 3 + 1, steps]
    parts = np.concatenate([model.run(u[:, a:b]) for a, b in zip(cuts[:-1], cuts[1:])], axis=1)
    tol = rtol * float(np.abs(y).max())
    require(np.allclose(parts, y, rtol=0, atol=tol), "streaming",
            f"runs in blocks {cuts} differ from one run by {np.abs(parts - y).max():g}")

    # batch independence
    row_seeds = np.random.SeedSequence(seed).spawn(batch)
    together = response(model, u, row_seeds)
    for r in range(batch):
        alone = response(model, u[r:r + 1], [row_seeds[r]])[0]
        require(np.allclose(alone, together[r], rtol=0, atol=tol), "batch independence",
                f"row {r} alone differs from row {r} of a batch of {batch} by "
                f"{np.abs(alone - together[r]).max():g}")

    # state
    model.reset(seed)
    model.run(u[:, :steps // 2])
    state = model.state
    require(all(isinstance(v, np.ndarray) and v.dtype.kind in "biuf" for v in state.values()), "state",
            "state holds something other than numeric numpy arrays")
    buffer = io.BytesIO()
    np.savez(buffer, **state)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as saved:
        loaded = {k: saved[k] for k in saved.files}
    rest = model.run(u[:, steps // 2:])
    fresh = factory()
    fresh.reset(seed + 1)
    fresh.load_state(loaded)
    require(np.array_equal(fresh.run(u[:, steps // 2:]), rest), "state",
            "a fresh model loading the saved state does not continue identically")

    # params
    params = model.get_params()
    require(type(model)(**params).get_params() == params, "params",
            "type(model)(**get_params()) has other parameters")
    require(np.array_equal(response(model.set_params(**params)), y), "params",
            "set_params(**get_params()) changed the response")
    try:
        model.set_params(no_such_parameter=1)
        accepted = True
    except PrclabError:
        accepted = False
    require(not accepted, "params", "set_params(no_such_parameter=1) was accepted")

    # describe
    description = json.loads(json.dumps(model.describe()))
    require(set(description) >= {"model", "params"}, "describe", "describe() lacks 'model' or 'params'")
    try:
        rebuilt = substrate_from_description(description, "describe()")
    except PrclabError as exc:
        raise PrclabError(f"check_substrate({name}): describe: {exc} (a model must be registered in "
                          f"reservoir.registry.SUBSTRATES to be rebuilt)") from None
    require(np.array_equal(response(rebuilt), y), "describe",
            "the model rebuilt from describe() responds differently")
    return list(CHECKS)
