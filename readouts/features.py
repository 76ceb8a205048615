"""Per-trial feature vectors from responses ``(steps, channels)``.

A feature spec is a ``+``-joined list of parts:

- ``mean``: the mean over time of each channel;
- ``last``: the last sample of each channel (what a fading-memory substrate remembers at the end);
- ``bins:N``: the mean of each channel over ``N`` equal time bins.

e.g. ``"mean+last"`` (the default) gives ``2 * channels`` features per trial.  The spec comes from the
protocol (``[readout] features``) or the command line (``--features``).

Features are not scaled here: the readouts standardise each feature with statistics of the training
trials only (``RidgeReadout(standardize=True)``, the default of ``RidgeClassifier``), folded into the
fitted coefficients, so test data never informs the scaling.
"""

from __future__ import annotations

import numpy as np

from prclab.errors import PrclabError

#: Feature specs a readout's features are chosen from when none is given (``experiments.tasks.
#: choose_features``: the lowest leave-one-out error on the training trials, the same list and the same
#: rule for the reservoir and for every baseline).  They span what a fading-memory readout can use, from
#: least to most time resolution: ``mean+last`` (the time average and the end state, today's default),
#: ``bins:2+last`` (first and second half: a coarse order), ``bins:4`` and ``bins:4+last`` (quarters, the
#: syllable scale of a spoken digit and the phases of a gesture) and ``bins:8`` (eighths).  Finer bins
#: give the baseline, which has no memory of its own, a memory of the stimulus; leaving them out would
#: make the comparison unfair to the baseline.  Ties go to the earlier (coarser) spec.
FEATURE_CANDIDATES = ("mean+last", "bins:2+last", "bins:4", "bins:4+last", "bins:8")


def parse_feature_spec(spec: str) -> list[tuple[str, int]]:
    """``"bins:4+last"`` -> ``[("bins", 4), ("last", 0)]``; raises ``PrclabError`` if malformed."""
    parts = []
    for part in spec.split("+"):
        name, _, arg = part.strip().partition(":")
        if name in ("mean", "last") and not arg:
            parts.append((name, 0))
        elif name == "bins" and arg.isdigit() and int(arg) >= 1:
            parts.append((name, int(arg)))
        else:
            raise PrclabError(f"feature spec {spec!r}: unknown part {part!r} (use mean, last, bins:N)")
    return parts


def trial_features(responses: list[np.ndarray], spec: str = "mean+last") -> np.ndarray:
    """Feature matrix ``(n_trials, n_features)`` from a list of ``(steps_i, channels)`` responses."""
    parts = parse_feature_spec(spec)
    rows = []
    for r in responses:
        r = np.asarray(r, dtype=np.float64)
        if r.ndim != 2 or len(r) == 0:
            raise PrclabError(f"features: each response must be a non-empty (steps, channels) array, "
                              f"got {r.shape}")
        feats = []
        for name, arg in parts:
            if name == "mean":
                feats.append(r.mean(axis=0))
            elif name == "last":
                feats.append(r[-1])
            else:
                if len(r) < arg:  # too short for the bins: stretch by repetition first
                    r = np.repeat(r, -(-arg // len(r)), axis=0)
                feats.append(np.concatenate([b.mean(axis=0) for b in np.array_split(r, arg)]))
        rows.append(np.concatenate(feats))
    return np.stack(rows)
