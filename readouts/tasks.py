"""Classification tasks end to end: dataset -> encoder -> substrate -> features -> ridge readout.

``run_task`` is what ``prclab task`` runs.  The substrate is driven in batches (sequences grouped by
length, each from rest) without going through a device: the fast path for planning and sweeping.
Every accuracy comes with the no-reservoir baseline: the same features and readout on the encoded
stimulus itself.
"""

from __future__ import annotations

import time

import numpy as np

from prclab import PrclabError
from protocols.datasets import LabelledSequences
from protocols.encoders import make_encoder
from reservoir import make_substrate, run_sequences, substrate_entry

from .features import trial_features
from .ridge import RidgeClassifier


def train_test_index(data: LabelledSequences, seed: int = 0, test_fraction: float = 0.3):
    """Train and test indices: the data's own split if it has one, else a stratified random split."""
    if data.split is not None:
        train, test = np.flatnonzero(data.split == "train"), np.flatnonzero(data.split == "test")
    else:
        rng = np.random.default_rng(seed)
        train, test = [], []
        for label in data.classes:
            idx = rng.permutation(np.flatnonzero(data.labels == label))
            n_test = max(1, int(round(test_fraction * len(idx))))
            test.extend(idx[:n_test])
            train.extend(idx[n_test:])
        train, test = np.sort(train), np.sort(test)
    if len(train) == 0 or len(test) == 0:
        raise PrclabError(f"dataset {data.source}: split leaves {len(train)} train and {len(test)} test items")
    if len(np.unique(data.labels[train])) < 2:
        raise PrclabError(f"dataset {data.source}: the training split holds fewer than two classes")
    return train, test


def evaluate_features(x: np.ndarray, labels: np.ndarray, train, test) -> tuple[float, RidgeClassifier]:
    """Fit a RidgeClassifier on ``x[train]`` and return (test accuracy, classifier)."""
    clf = RidgeClassifier().fit(x[train], labels[train])
    return float(clf.score(x[test], labels[test])), clf


def run_task(data: LabelledSequences, substrate: str = "esn", size: int | None = None, seed: int = 0,
             features: str = "mean+last", substrate_params: dict | None = None,
             encoder_params: dict | None = None, batch_size: int = 64, progress=None) -> dict:
    """Run the whole pipeline once and return the result as a JSON-able dict.

    Args:
        data: the dataset (see ``protocols.datasets.load_dataset``).
        substrate: substrate name (``reservoir.SUBSTRATES``).
        size: the substrate's size (units / nodes / neurons); model default if None.
        seed: seed of the substrate's weights and noise and of a random split.
        features: feature spec (``readouts.features``).
        progress: optional callable ``progress(n_done_items)``.
    Returns:
        dict with ``accuracy``, ``baseline_accuracy``, ``chance``, ``n_train``, ``n_test``,
        ``n_classes``, ``substrate``, ``features``, ``seconds`` and the parameters used.
    """
    start = time.perf_counter()
    entry = substrate_entry(substrate)
    train, test = train_test_index(data, seed)
    enc_params = {"samples_per_frame": entry.samples_per_frame, **(encoder_params or {})}
    encoder = make_encoder(data, **enc_params).fit(data, train)
    stimuli = [encoder.encode(s) for s in data.sequences]
    params = {"seed": seed, **(substrate_params or {})}
    model = make_substrate(substrate, encoder.n_channels, size=size, **params)
    responses = run_sequences(model, stimuli, batch_size=batch_size, seed=seed, progress=progress)
    accuracy, _ = evaluate_features(trial_features(responses, features), data.labels, train, test)
    baseline, _ = evaluate_features(trial_features(stimuli, features), data.labels, train, test)
    counts = np.unique(data.labels[test], return_counts=True)[1]
    return {
        "accuracy": accuracy,
        "baseline_accuracy": baseline,
        "chance": float(counts.max() / counts.sum()),
        "n_train": int(len(train)),
        "n_test": int(len(test)),
        "n_classes": int(len(data.classes)),
        "substrate": substrate,
        "substrate_params": model.describe(),
        "encoder": encoder.describe(),
        "features": features,
        "dataset": data.source,
        "seconds": round(time.perf_counter() - start, 3),
    }
