"""Classification tasks end to end: dataset -> encoder -> substrate -> features -> ridge readout.

``run_tasks`` is what ``prclab task`` runs (``run_task`` once per seed, or a regression task from
``experiments.timeseries``).  The substrate is driven in batches (sequences grouped by
length, each from rest) without going through a device: the fast path for planning and sweeping.
Every accuracy comes with the no-reservoir baseline: the same features and readout on the encoded
stimulus itself.
"""

from __future__ import annotations

import time

import numpy as np

from prclab.errors import PrclabError
from prclab.protocols.datasets import LabelledSequences
from prclab.protocols.encoders import make_encoder
from prclab.reservoir import make_substrate, run_sequences, substrate_entry

from prclab.readouts.features import trial_features
from prclab.readouts.ridge import RidgeClassifier


SPLITS = ("official", "speaker")


def train_test_index(data: LabelledSequences, seed: int = 0, test_fraction: float = 0.3,
                     split: str = "official"):
    """Train and test indices.

    ``split="official"``: the data's own split if it has one, else a stratified random split drawn from
    ``seed``.  ``split="speaker"``: leave one speaker (``data.groups``) out, the ``seed % n_speakers``-th
    in sorted order, so seeds 0..n-1 hold out every speaker once.
    """
    if split == "speaker":
        if data.groups is None:
            raise PrclabError(f"dataset {data.source}: a speaker split needs speakers (a WAV folder of "
                              f"{{label}}_{{speaker}}_{{index}}.wav), this dataset has none")
        speakers = np.unique(data.groups)
        if len(speakers) < 2:
            raise PrclabError(f"dataset {data.source}: a speaker split needs two or more speakers, "
                              f"found {len(speakers)}")
        held = data.groups == speakers[seed % len(speakers)]
        train, test = np.flatnonzero(~held), np.flatnonzero(held)
    elif split != "official":
        raise PrclabError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    elif data.split is not None:
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
             encoder_params: dict | None = None, batch_size: int = 64, progress=None,
             split: str = "official") -> dict:
    """Run the whole pipeline once and return the result as a JSON-able dict.

    Args:
        data: the dataset (see ``protocols.datasets.load_dataset``).
        substrate: substrate name (``reservoir.SUBSTRATES``).
        size: the substrate's size (units / nodes / neurons); model default if None.
        seed: seed of the substrate's weights and noise and of a random split.
        features: feature spec (``readouts.features``).
        progress: optional callable ``progress(n_done_items)``.
        split: ``official`` or ``speaker`` (see ``train_test_index``).
    Returns:
        dict with ``accuracy``, ``baseline_accuracy``, ``chance``, ``n_train``, ``n_test``,
        ``n_classes``, ``substrate``, ``features``, ``split`` (``held_out`` speaker), ``alpha`` (chosen,
        per training trial), ``alpha_curve`` (test accuracy of reservoir and baseline per ridge
        parameter), the test ``labels``, ``predictions`` and ``classes``, ``seconds`` and the parameters.
    """
    start = time.perf_counter()
    entry = substrate_entry(substrate)
    train, test = train_test_index(data, seed, split=split)
    enc_params = {"samples_per_frame": entry.samples_per_frame, **(encoder_params or {})}
    encoder = make_encoder(data, **enc_params).fit(data, train)
    stimuli = [encoder.encode(s) for s in data.sequences]
    params = {"seed": seed, **(substrate_params or {})}
    model = make_substrate(substrate, encoder.n_channels, size=size, **params)
    responses = run_sequences(model, stimuli, batch_size=batch_size, seed=seed, progress=progress)
    x, x_base = trial_features(responses, features), trial_features(stimuli, features)
    accuracy, clf = evaluate_features(x, data.labels, train, test)
    baseline, base_clf = evaluate_features(x_base, data.labels, train, test)
    counts = np.unique(data.labels[test], return_counts=True)[1]
    alphas = np.asarray(clf.alphas if clf.alphas is not None else [clf.alpha], dtype=float)
    result = {
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
        "split": split,
        "alpha": float(clf.alpha_),
        "alpha_curve": {"alphas": alphas.tolist(),
                        "accuracy": clf.score_path(x[test], data.labels[test], alphas).tolist(),
                        "baseline": base_clf.score_path(x_base[test], data.labels[test], alphas).tolist()},
        "labels": data.labels[test].tolist(),
        "predictions": clf.predict(x[test]).tolist(),
        "classes": clf.classes_.tolist(),
        "seconds": round(time.perf_counter() - start, 3),
    }
    if split == "speaker":
        result["held_out"] = str(data.groups[test[0]])
    return result


def aggregate_seeds(results: list[dict], metric: str, baseline: str) -> dict:
    """One result from runs over seeds: the first run's fields, then ``{metric}_mean``/``_std``,
    ``baseline_mean``/``_std`` (population std over seeds), and the per-seed lists ``seeds``,
    ``{metric}_per_seed``, ``baseline_per_seed`` (and ``held_out_per_seed`` for speaker splits)."""
    values = np.array([r[metric] for r in results])
    bases = np.array([r[baseline] for r in results])
    out = dict(results[0])
    out.update({f"{metric}_mean": float(values.mean()), f"{metric}_std": float(values.std()),
                "baseline_mean": float(bases.mean()), "baseline_std": float(bases.std()),
                "seeds": [r["seed"] for r in results], f"{metric}_per_seed": values.tolist(),
                "baseline_per_seed": bases.tolist(), "seconds": round(sum(r["seconds"] for r in results), 3)})
    if "held_out" in results[0]:
        out["held_out_per_seed"] = [r["held_out"] for r in results]
    return out


def run_tasks(data_path=None, task: str | None = None, substrate: str = "esn", size: int | None = None,
              seed: int = 0, seeds: int = 1, features: str = "mean+last", split: str = "official",
              progress_bar=None) -> dict:
    """What ``prclab task`` runs: a dataset (``data_path``) or a regression ``task``, over ``seeds`` seeds.

    Seeds are ``seed, seed + 1, ...``; each sets the substrate's weights and noise (and a random split
    or the held-out speaker).  ``progress_bar(total, desc, unit)`` is an optional context-manager
    factory with an ``update(n)`` method.  With ``seeds > 1`` the result is ``aggregate_seeds``'.
    """
    from prclab.protocols.datasets import load_dataset

    from .timeseries import run_regression_task

    if (data_path is None) == (task is None):
        raise PrclabError("task: give exactly one of --data DATASET and --task NAME")
    if seeds < 1:
        raise PrclabError(f"task: --seeds must be 1 or more, got {seeds}")
    results = []
    if task is not None:
        if split != "official":
            raise PrclabError(f"task: --split {split} applies to --data, not to the time-series task {task}")
        for s in range(seed, seed + seeds):
            results.append({"seed": s, **run_regression_task(task, substrate, size=size, seed=s)})
        return results[0] if seeds == 1 else aggregate_seeds(results, "nrmse", "baseline_nrmse")
    data = load_dataset(data_path)
    for s in range(seed, seed + seeds):
        if progress_bar is None:
            result = run_task(data, substrate, size=size, seed=s, features=features, split=split)
        else:
            with progress_bar(len(data), f"{substrate} seed {s}", "seq") as bar:
                result = run_task(data, substrate, size=size, seed=s, features=features, split=split,
                                  progress=bar.update)
        results.append({"seed": s, **result})
    return results[0] if seeds == 1 else aggregate_seeds(results, "accuracy", "baseline_accuracy")


def format_task_result(result: dict) -> str:
    """Aligned text lines of a ``run_tasks`` result (one seed or several, classification or regression)."""
    lines = [f"substrate          {result['substrate']} ({result['seconds']:.1f} s)"]
    regression = "nrmse" in result
    metric, name = ("nrmse", "NRMSE") if regression else ("accuracy", "accuracy")
    baseline_note = result.get("baseline", "same readout on the encoded stimulus, no reservoir")
    if regression:
        lines.append(f"task               {result['task']} ({result['n_test']} test / {result['n_train']} "
                     f"train steps)")
    else:
        lines.append(f"split              {result['split']} ({result['n_test']} test / {result['n_train']} "
                     f"train, {result['n_classes']} classes, chance {result['chance']:.3f})")
        if "held_out" in result:
            held = result.get("held_out_per_seed", [result["held_out"]])
            lines.append(f"held-out speaker   {', '.join(held)}")
    f = "{:.3g}" if regression else "{:.3f}"  # one-step Mackey-Glass NRMSE is ~1e-4
    if "seeds" in result:
        lines.append(f"test {name:<13} {f.format(result[metric + '_mean'])} ± {f.format(result[metric + '_std'])}  "
                     f"(mean ± std over {len(result['seeds'])} seeds: "
                     f"{', '.join(f.format(v) for v in result[metric + '_per_seed'])})")
        lines.append(f"baseline {name:<9} {f.format(result['baseline_mean'])} ± {f.format(result['baseline_std'])}  "
                     f"({baseline_note})")
    else:
        base_key = "baseline_nrmse" if regression else "baseline_accuracy"
        lines.append(f"test {name:<13} {f.format(result[metric])}")
        lines.append(f"baseline {name:<9} {f.format(result[base_key])}  ({baseline_note})")
    return "\n".join(lines)
