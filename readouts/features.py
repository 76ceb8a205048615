"""Per-trial feature vectors from responses ``(steps, channels)``.

A feature spec is a ``+``-joined list of parts.  Feature parts, each giving its features in turn:

- ``mean``: the mean over time of each channel;
- ``last``: the last sample of each channel (what a fading-memory substrate remembers at the end);
- ``bins:N``: the mean of each channel over ``N`` equal time bins (bins scale with the trial);
- ``win:W``: the mean of each channel over consecutive windows of ``W`` samples (fixed duration:
  ``win:10`` at 1 kHz is Brainoware's 10 ms count bins, Cai et al. 2023, Nat. Electron. 6:1032; a spike
  count divided by ``W``), as many windows as the longest training trial has; a shorter trial reads 0
  after its end (no activity), a longer one is cut.

Response transforms, applied first, whatever their place in the spec:

- ``detect:K``: recorded voltage -> spike counts per sample by ``readouts.spikes.detect_spikes`` at ``K``
  robust SDs (samples at 1 kHz, 1 ms dead time), as an MEA system records spikes;
- ``top:N``: only the ``N`` channels most active on the training trials (the largest mean of ``|x|``,
  the firing rate for counts; all when there are fewer), as Brainoware counts its most active
  electrodes.

e.g. ``"mean+last"`` (the default) gives ``2 * channels`` features per trial; ``"detect:5+top:64+win:10"``
is Brainoware's readout of a recorded voltage.  The spec comes from the protocol (``[readout]
features``) or the command line (``--features``).  ``win`` and ``top`` read the training trials
(``train``), never the test trials.

Features are not scaled here: the readouts standardise each feature with statistics of the training
trials only (``RidgeReadout(standardize=True)``, the default of ``RidgeClassifier``), folded into the
fitted coefficients, so test data never informs the scaling.
"""

from __future__ import annotations

import numpy as np

from prclab.errors import PrclabError

from .spikes import detect_spikes

#: Feature specs a readout's features are chosen from when none is given (``experiments.tasks.
#: choose_features``: the lowest leave-one-out error on the training trials, the same list and the same
#: rule for the reservoir and for every baseline).  They span what a fading-memory readout can use, from
#: least to most time resolution: ``mean+last`` (the time average and the end state, today's default),
#: ``bins:2+last`` (first and second half: a coarse order), ``bins:4`` and ``bins:4+last`` (quarters, the
#: syllable scale of a spoken digit and the phases of a gesture) and ``bins:8`` (eighths).  Finer bins
#: give the baseline, which has no memory of its own, a memory of the stimulus; leaving them out would
#: make the comparison unfair to the baseline.  Ties go to the earlier (coarser) spec.
FEATURE_CANDIDATES = ("mean+last", "bins:2+last", "bins:4", "bins:4+last", "bins:8")


#: parts that produce features, and the response transforms applied before them
FEATURE_PARTS, TRANSFORMS = ("mean", "last", "bins", "win"), ("detect", "top")


def parse_feature_spec(spec: str) -> list[tuple[str, float]]:
    """``"bins:4+last"`` -> ``[("bins", 4), ("last", 0)]``; raises ``PrclabError`` if malformed (an
    unknown part, a missing or bad argument, a transform twice, or no feature part)."""
    parts = []
    for part in spec.split("+"):
        name, _, arg = part.strip().partition(":")
        if name in ("mean", "last") and not arg:
            parts.append((name, 0))
        elif name in ("bins", "win", "top") and arg.isdigit() and int(arg) >= 1:
            parts.append((name, int(arg)))
        elif name == "detect" and _positive_number(arg):
            parts.append((name, float(arg)))
        else:
            raise PrclabError(f"feature spec {spec!r}: unknown part {part!r} (use mean, last, bins:N, win:W, "
                              f"detect:K, top:N)")
    names = [name for name, _ in parts]
    if not any(name in FEATURE_PARTS for name in names):
        raise PrclabError(f"feature spec {spec!r}: no feature part (mean, last, bins:N or win:W)")
    for name in TRANSFORMS:
        if names.count(name) > 1:
            raise PrclabError(f"feature spec {spec!r}: {name} given twice")
    return parts


def _positive_number(text: str) -> bool:
    try:
        return 0 < float(text) < float("inf")
    except ValueError:
        return False


def trial_features(responses: list[np.ndarray], spec: str = "mean+last", train=None) -> np.ndarray:
    """Feature matrix ``(n_trials, n_features)`` from a list of ``(steps_i, channels)`` responses.

    ``train``: indices of the training trials, which alone set ``top``'s channels and ``win``'s number of
    windows; a spec with either needs them (``PrclabError`` otherwise).
    """
    parts = parse_feature_spec(spec)
    given = dict(parts)
    if train is None and ("top" in given or "win" in given):
        raise PrclabError(f"feature spec {spec!r}: top and win need the training trials (train)")
    arrays = []
    for r in responses:
        r = np.asarray(r, dtype=np.float64)
        if r.ndim != 2 or len(r) == 0:
            raise PrclabError(f"features: each response must be a non-empty (steps, channels) array, "
                              f"got {r.shape}")
        arrays.append(detect_spikes(r, k=given["detect"]) if "detect" in given else r)
    train = None if train is None else np.asarray(train, dtype=int)
    if "top" in given:
        activity = np.mean([np.abs(arrays[i]).mean(axis=0) for i in train], axis=0)
        keep = np.sort(np.argsort(-activity, kind="stable")[:int(given["top"])])
        arrays = [r[:, keep] for r in arrays]
    n_windows = -(-max(len(arrays[i]) for i in train) // int(given["win"])) if "win" in given else 0
    rows = []
    for r in arrays:
        feats = []
        for name, arg in parts:
            if name == "mean":
                feats.append(r.mean(axis=0))
            elif name == "last":
                feats.append(r[-1])
            elif name == "bins":
                # too short for the bins: stretched by repetition first
                long = r if len(r) >= arg else np.repeat(r, -(-arg // len(r)), axis=0)
                feats.append(np.concatenate([b.mean(axis=0) for b in np.array_split(long, arg)]))
            elif name == "win":
                width = int(arg)
                padded = np.zeros((n_windows * width, r.shape[1]))
                padded[:min(len(r), len(padded))] = r[:len(padded)]
                feats.append(padded.reshape(n_windows, width, -1).mean(axis=1).ravel())
        rows.append(np.concatenate(feats))
    return np.stack(rows)
