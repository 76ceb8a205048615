"""MiniRocket: the baseline a time-series practitioner would pick instead of a reservoir.

MiniRocket (Dempster, Schmidt & Webb 2021, KDD, "MINIROCKET: A Very Fast (Almost) Deterministic
Transform for Time Series Classification", arXiv:2012.08791) convolves each series with 84 fixed
length-9 kernels over many dilations and keeps the proportion of positive values of each output (PPV):
~10 000 features per series, then a ridge classifier with its ridge parameter chosen by cross-validation.
Here the transform is aeon's (``aeon.transformations.collection.convolution_based.MiniRocket``, the
authors' code adapted with their permission) and the classifier is the project's ``RidgeClassifier``
(per-feature standardisation and leave-one-out choice of alpha on the training trials, as for every
other side of a comparison), so MiniRocket differs from the reservoir only in what turns a sequence
into features.

Its input is the reservoir's input: the encoder's output, ``(steps, channels)`` volts per trial, on the
same train/test split.  aeon's MiniRocket takes equal-length series only, so every sequence is cut or
padded to the longest training sequence (at least the kernel length, 9) with the electrodes' rest
level after its end (no stimulus: what a substrate sees after a trial); lengths only, never labels,
set the padding, and test trials never do.
"""

from __future__ import annotations

import numpy as np

from prclab.errors import PrclabError
from prclab.readouts.ridge import RidgeClassifier

#: MiniRocket's kernel length: a series must have at least this many steps
KERNEL_LENGTH = 9
#: aeon's default (and the paper's) number of features; rounded down to a multiple of 84 by aeon
N_KERNELS = 10_000


def padded(sequences: list[np.ndarray], length: int, fill: float = 0.0) -> np.ndarray:
    """``(steps_i, channels)`` sequences -> ``(n, channels, length)`` float64 (aeon's collection layout),
    each cut to ``length`` steps or padded after its end with ``fill``."""
    channels = np.asarray(sequences[0]).shape[1]
    out = np.full((len(sequences), channels, length), float(fill))
    for i, s in enumerate(sequences):
        s = np.asarray(s, dtype=np.float64)
        if s.ndim != 2 or s.shape[1] != channels:
            raise PrclabError(f"minirocket: sequence {i} has shape {s.shape}, expected (steps, {channels})")
        n = min(len(s), length)
        out[i, :, :n] = s[:n].T
    return out


def minirocket_features(sequences: list[np.ndarray], train, fill: float = 0.0, seed: int = 0,
                        n_kernels: int = N_KERNELS) -> np.ndarray:
    """MiniRocket's features ``(n_trials, n_features)`` of every trial, the transform fitted (its
    dilations and biases) on the training trials ``train`` only.

    Args:
        sequences: one ``(steps_i, channels)`` array per trial (the encoded stimulus, volts).
        train: indices of the training trials.
        fill: the value after a sequence's end (the rest level, volts).
        seed: ``random_state`` of the transform (its bias quantiles come from random training samples).
        n_kernels: features asked of aeon (rounded down to a multiple of 84).
    """
    from aeon.transformations.collection.convolution_based import MiniRocket

    train = np.asarray(train, dtype=int)
    length = max(KERNEL_LENGTH, max(len(sequences[i]) for i in train))
    x = padded(sequences, length, fill)
    transform = MiniRocket(n_kernels=n_kernels, random_state=seed).fit(x[train])
    return np.asarray(transform.transform(x), dtype=np.float64)


def minirocket_score(sequences: list[np.ndarray], labels: np.ndarray, train, test, fill: float = 0.0,
                     seed: int = 0, n_kernels: int = N_KERNELS) -> dict:
    """Test accuracy of MiniRocket features + the project's ridge classifier (alpha by leave-one-out
    on the training trials, in the reduced row space of ``experiments.tasks.training_row_space`` when
    there are more features than training trials, which gives the same fit).

    Returns ``{"minirocket_accuracy": float, "minirocket_alpha": float (per training trial),
    "minirocket_n_features": int}``.
    """
    from .tasks import training_row_space

    x = minirocket_features(sequences, train, fill, seed, n_kernels)
    reduced = training_row_space(x, train)
    x_fit = x if reduced is None else reduced
    clf = RidgeClassifier(standardize=reduced is None).fit(x_fit[train], labels[train])
    return {"minirocket_accuracy": float(clf.score(x_fit[test], labels[test])),
            "minirocket_alpha": float(clf.alpha_), "minirocket_n_features": int(x.shape[1])}
