"""Active choice of identification stimuli: the next batch where an ensemble of twins disagrees most.

Query by committee (Seung, Opper & Sompolinsky 1992) with a bootstrap committee, the cheap stand-in for
the information-maximising design of Lewi, Butera & Paninski (2009): ``members`` twins of one family
(``prclab.reservoir.twins.FAMILIES``) are fitted on bootstrap resamples of the training trials so far
(trials drawn with replacement; a family with a ``seed`` keyword also gets a different seed per
member, so a reservoir twin varies its reservoir too), each runs free on every candidate stimulus, and a
candidate's **disagreement** is the members' variance about their mean prediction, per response channel
divided by that channel's variance over the training responses, averaged over samples and channels
(dimensionless: 0 when the members agree).  The ``n`` candidates with the largest disagreement are the
next batch.  Held-out trials never enter the committee.
"""

from __future__ import annotations

import inspect
import tempfile
from pathlib import Path

import numpy as np

from prclab.errors import PrclabError


def family_class(name: str) -> type:
    """The twin family registered as ``name`` (PrclabError naming the known ones otherwise)."""
    from prclab.reservoir.twins import FAMILIES

    if name not in FAMILIES:
        raise PrclabError(f"twin family {name!r} is unknown; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def fit_committee(family: str, stimuli: list[np.ndarray], responses: list[np.ndarray], dt: float,
                  members: int = 5, seed: int = 0, settings: dict | None = None) -> list:
    """``members`` twins of ``family`` fitted on bootstrap resamples of the trials.

    Args:
        stimuli, responses: the training trials, ``(T_i, n_in)`` volts and ``(T_i, n_out)``.
        dt: sample interval, seconds; ``settings``: the family's constructor keywords.

    Raises:
        PrclabError: fewer than 2 members or trials, or an unknown family.
    """
    if members < 2 or len(stimuli) < 2:
        raise PrclabError(f"active probe: needs at least 2 twins and 2 training trials, got {members} "
                          f"and {len(stimuli)}")
    cls = family_class(family)
    seeded = "seed" in inspect.signature(cls.__init__).parameters
    rng = np.random.default_rng(seed)
    committee = []
    for m in range(members):
        pick = rng.integers(0, len(stimuli), len(stimuli))
        kwargs = {**(settings or {}), **({"seed": seed + m} if seeded else {})}
        committee.append(cls(**kwargs).fit([stimuli[i] for i in pick], [responses[i] for i in pick], dt))
    return committee


def disagreement(committee: list, candidates: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Each candidate's disagreement ``(n,)`` (module docstring).

    Args:
        candidates: ``(n, T, n_in)`` volts, each run free from rest by every member.
        scale: ``(n_out,)`` the training responses' standard deviation per channel.
    """
    preds = np.stack([np.asarray(m.simulate(candidates)) for m in committee])  # (members, n, T, n_out)
    return (preds.var(axis=0) / np.maximum(scale, 1e-300) ** 2).mean(axis=(1, 2))


def choose(committee: list, candidates: np.ndarray, n: int, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` candidates the committee disagrees on most: ``(indices (n,), disagreement (n_cand,))``,
    indices in decreasing disagreement."""
    if not 0 < n <= len(candidates):
        raise PrclabError(f"active probe: cannot choose {n} of {len(candidates)} candidates")
    scores = disagreement(committee, candidates, scale)
    return np.argsort(-scores, kind="stable")[:n], scores


def choose_from_recording(rec_path: str | Path, base: str | Path, candidates, n: int,
                          family: str = "linear", ensemble: int = 5, seed: int = 0,
                          settings: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``prclab twin probe --active``: fit the committee on the training trials of recording
    ``rec_path`` (:func:`prclab.experiments.twins.data.load_fit_data`), compile ``candidates``
    (a :class:`~prclab.protocols.datasets.LabelledSequences` of designed excitation) through protocol
    ``base`` as :func:`.probe.write_probe` would play them, and choose ``n``.

    Returns:
        ``(indices into candidates (n,), disagreement of every candidate (n_cand,))``.

    Raises:
        PrclabError: the recording's channels or sample rate differ from ``base``'s; see
            :func:`fit_committee`.
    """
    from .data import load_fit_data
    from .probe import write_probe

    fit = load_fit_data(rec_path)
    with tempfile.TemporaryDirectory() as tmp:
        pool = write_probe(base, Path(tmp) / "pool.toml", candidates, "pool")
    if abs(pool.protocol.rate_hz * fit.dt - 1) > 1e-9:
        raise PrclabError(f"active probe: {rec_path} was sampled at {1 / fit.dt:g} Hz, {base} runs at "
                          f"{pool.protocol.rate_hz:g} Hz")
    u = np.stack([np.asarray(t.stimulus) for t in pool.trials])
    if u.shape[-1] != fit.train_stimuli[0].shape[-1]:
        raise PrclabError(f"active probe: {rec_path} has {fit.train_stimuli[0].shape[-1]} stimulus "
                          f"channels, {base} has {u.shape[-1]}")
    committee = fit_committee(family, fit.train_stimuli, fit.train_responses, fit.dt, ensemble, seed,
                              settings)
    scale = np.concatenate(fit.train_responses).std(axis=0)
    return choose(committee, u, n, scale)
