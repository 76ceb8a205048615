"""Train and score a readout on a recording: what ``prclab train`` and the end of ``prclab run`` print.

Each trial's response over its stimulus window gives the reservoir features; the stimulus over the same
window gives the no-reservoir baselines' features (linear: the stimulus; quadratic: the stimulus and its
square), each side's feature spec chosen on the training trials (``experiments.tasks.compare_sides``)
unless one is given.  Trials keep the split they were recorded with.
Trials whose response holds NaN or infinite values (recorded as measured, flagged ``nonfinite``) are
left out and named in ``problems``.  A recording with no stimulus channel (record-only: an EEG board's
file, a brainflow recording) is scored on the reservoir side alone: the result has no baseline keys and
``problems`` says why (:data:`NO_STIMULUS`).
"""

from __future__ import annotations

import numpy as np

from prclab.errors import PrclabError
from prclab.protocols.recording import read_recording

from prclab.readouts.features import FEATURE_CANDIDATES
from .tasks import SIDES, compare_sides

#: the problem a recording without stimulus channels reports (no baseline is fitted)
NO_STIMULUS = "no stimulus channel recorded: no baseline can be computed without a stimulus"


def train_on_recording(path, features: str | None = None) -> dict:
    """Fit and score a RidgeClassifier on recording ``path``.

    Args:
        features: feature spec for every side (then nothing is searched); None: each side's spec is
            chosen on the training trials from the protocol's ``[readout] features`` followed by
            ``FEATURE_CANDIDATES`` (the protocol's spec first, so it wins ties).
    Returns:
        dict with ``accuracy``, ``baseline_accuracy``, ``quadratic_baseline_accuracy``, ``features``,
        ``baseline_features``, ``quadratic_baseline_features``, ``feature_search``, ``chance``,
        ``n_train``, ``n_test``, ``n_classes``, ``problems`` (damaged trials skipped), and for plotting
        ``labels``, ``predictions`` and ``classes`` of the test trials.  Without stimulus channels the
        ``baseline_*`` and ``quadratic_baseline_*`` keys are absent and ``problems`` ends with
        :data:`NO_STIMULUS`.
    """
    with read_recording(path, verify=False) as rec:  # each trial then read once, checked, windows kept
        trials, windows = [], []
        for t in rec.trials:
            try:
                t = rec.load(t)
            except PrclabError as exc:  # a damaged trial is named and left out, as read_recording does
                rec.problems.append(str(exc))
                continue
            trials.append(t)
            windows.append(tuple(np.array(a) for a in t.stimulus_window))  # copies: the trial is dropped
        rec.trials = trials
    if not rec.trials:
        raise PrclabError(f"recording {path}: holds no intact trials")
    finite = [not t.nonfinite and bool(np.all(np.isfinite(r))) for t, (_, r) in zip(rec.trials, windows)]
    if not all(finite):  # recorded as measured (an overload, a dropout), but a readout cannot fit NaN or inf
        bad = [t for t, ok in zip(rec.trials, finite) if not ok]
        names = ", ".join(f"{t.index:06d}" for t in bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10
                                                                  else "")
        rec.problems.append(f"trial(s) {names}: response holds NaN or infinite values; left out of "
                            f"training")
        rec.trials = [t for t, ok in zip(rec.trials, finite) if ok]
        windows = [w for w, ok in zip(windows, finite) if ok]
        if not rec.trials:
            raise PrclabError(f"recording {path}: every trial's response holds NaN or infinite values")
    protocol_spec = rec.attrs.get("readout", {}).get("features")
    candidates = ((protocol_spec,) if protocol_spec else ()) + FEATURE_CANDIDATES
    labels = np.array([t.label for t in rec.trials])
    split = np.array([t.split for t in rec.trials])
    train, test = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    if len(test) == 0 or len(np.unique(labels[train])) < 2:
        raise PrclabError(f"recording {path}: needs test trials and training trials of two or more "
                          f"classes (has {len(train)} train, {len(test)} test)")
    stimulated = all(s.shape[1] > 0 for s, _ in windows)
    if not stimulated:
        rec.problems.append(NO_STIMULUS)
    fields, fits = compare_sides([r for _, r in windows], [s for s, _ in windows], labels, train, test,
                                 features, candidates, sides=tuple(SIDES) if stimulated else ("",))
    x, clf = fits[""]["x"], fits[""]["classifier"]
    counts = np.unique(labels[test], return_counts=True)[1]
    return {**fields, "chance": float(counts.max() / counts.sum()), "n_train": int(len(train)),
            "n_test": int(len(test)), "n_classes": int(len(np.unique(labels))),
            "problems": rec.problems, "labels": labels[test].tolist(),
            "predictions": clf.predict(x[test]).tolist(), "classes": clf.classes_.tolist()}


def plot_confusion(result: dict, path) -> None:
    """Save the test confusion matrix of a ``train_on_recording`` result as a PNG."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend is left as it is
    from sklearn.metrics import confusion_matrix

    classes = result["classes"]
    cm = confusion_matrix(result["labels"], result["predictions"], labels=classes)
    fig = Figure(figsize=(5.5, 4.8), dpi=120)
    ax = fig.subplots()
    im = ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
    baseline = f"baseline {result['baseline_accuracy']:.3f}" if "baseline_accuracy" in result else "no baseline"
    ax.set_title(f"test accuracy {result['accuracy']:.3f} ({baseline})")
    fig.colorbar(im, ax=ax, label="trials")
    fig.tight_layout()
    fig.savefig(path)
