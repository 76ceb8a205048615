"""Readout transfer between a substrate and its twin, and distillation of the substrate+readout into the twin.

Both sides use one feature spec (``readouts.features``) over each trial's stimulus window, chosen as
``prclab train`` chooses it (``experiments.recorded``): ``experiments.tasks.choose_features`` on the
substrate's training trials among the recording's own ``[readout] features`` (first, so it wins ties)
and ``FEATURE_CANDIDATES``; and a ``RidgeClassifier`` (features standardised) whose ridge parameter is
chosen by leave-one-out on its training trials.  The twin's responses are its noiseless free runs on the
recorded stimuli.

- **native accuracy**: trained on the substrate's training responses, scored on its held-out ones;
- **transfer accuracy**: trained on the twin's responses to the training stimuli, scored on the
  substrate's real held-out responses; **reverse accuracy**: trained on the substrate, scored on the
  twin's held-out responses; **gap** = native - transfer;
- **agreement** (distillation): a ridge map (leave-one-out ridge parameter) from the twin's features to
  the substrate+readout's class scores on the training items, then on held-out items the fraction
  whose highest distilled score names the class the substrate+readout predicts.
"""

from __future__ import annotations

import numpy as np

from prclab.errors import PrclabError
from prclab.readouts.features import FEATURE_CANDIDATES, trial_features
from prclab.readouts.ridge import RidgeClassifier, RidgeReadout

from ..tasks import choose_features

#: ridge parameters (per training item) searched by the distilling map, as RidgeClassifier's default
ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3)


def transfer_scores(real: list[np.ndarray], twin: list[np.ndarray], labels, train, test,
                    features: str | None = None, candidates=FEATURE_CANDIDATES) -> dict:
    """Native, transferred and reverse accuracy, gap and distilled agreement (module docstring).

    Args:
        real, twin: one ``(w_i, n_out)`` response per trial over its stimulus window, the substrate's
            and the twin's, matched by position.
        labels: ``(n_trials,)`` class labels; ``train``, ``test``: trial positions.
        features: the feature spec; None: chosen among ``candidates`` on the substrate's training trials.
    Returns:
        JSON-able dict: ``native_accuracy``, ``transfer_accuracy``, ``reverse_accuracy``,
        ``twin_accuracy`` (twin trained and scored), ``transfer_gap``, ``agreement``, ``features``,
        ``n_train``, ``n_test``.
    """
    labels, train, test = np.asarray(labels), np.asarray(train), np.asarray(test)
    if len(test) == 0 or len(np.unique(labels[train])) < 2:
        raise PrclabError(f"transfer: needs held-out trials and training trials of two or more classes "
                          f"(has {len(train)} train, {len(test)} held out)")
    spec = features or choose_features(real, labels, train, candidates=candidates)["features"]
    x_real, x_twin = trial_features(real, spec, train), trial_features(twin, spec, train)
    on_real = RidgeClassifier(standardize=True).fit(x_real[train], labels[train])
    on_twin = RidgeClassifier(standardize=True).fit(x_twin[train], labels[train])
    native = float(on_real.score(x_real[test], labels[test]))
    transfer = float(on_twin.score(x_real[test], labels[test]))
    scores = on_real.decision_function(x_real)
    distil = RidgeReadout(alphas=tuple(a * len(train) for a in ALPHAS), standardize=True)
    distil.fit(x_twin[train], scores[train])
    distilled = on_real._labels(distil.predict(x_twin[test]))
    return {"native_accuracy": native, "transfer_accuracy": transfer,
            "reverse_accuracy": float(on_real.score(x_twin[test], labels[test])),
            "twin_accuracy": float(on_twin.score(x_twin[test], labels[test])),
            "transfer_gap": native - transfer,
            "agreement": float(np.mean(distilled == on_real.predict(x_real[test]))),
            "features": spec, "n_train": int(len(train)), "n_test": int(len(test))}
