"""Classification tasks end to end: dataset -> encoder -> substrate -> features -> ridge readout.

``run_tasks`` is what ``prclab task`` runs (``run_task`` once per seed, or a regression task from
``experiments.timeseries``).  The substrate is driven in batches (sequences grouped by
length, each from rest: the substrate is reset before every sequence, unlike a real substrate driven
trial after trial) without going through a device: the fast path for planning and sweeping.

Every accuracy comes with two no-reservoir baselines, fitted exactly as the reservoir's readout is:
the linear baseline on the encoded stimulus itself, and the quadratic baseline on the stimulus and its
element-wise square (``with_squares``: what a memoryless square-law substrate would add).  Unless a
feature spec is given, each side's spec is chosen from ``readouts.features.FEATURE_CANDIDATES`` by
``choose_features`` on the training trials only (one function, one rule for all three), so neither side
is held to a spec that suits the other.  Beside them, MiniRocket (``experiments.minirocket``): what a
time-series practitioner would use instead of a reservoir, on the same encoded stimulus and split.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from prclab.errors import PrclabError
from prclab.protocols.datasets import LabelledSequences
from prclab.protocols.encoders import make_encoder, rest_level
from prclab.reservoir import make_substrate, run_sequences, substrate_defaults, substrate_entry

from prclab.readouts.features import FEATURE_CANDIDATES, trial_features
from prclab.readouts.ridge import RidgeClassifier


SPLITS = ("official", "speaker")
#: what ``run_task`` says of the substrate's state between sequences (the ``trial_state`` key)
TRIAL_STATE = "reset to rest before every sequence (batched fast path; a device session carries state)"
#: the three sides of a comparison: result-key prefix -> what the readout sees
SIDES = {"": "reservoir response", "baseline_": "encoded stimulus, no reservoir",
         "quadratic_baseline_": "encoded stimulus and its element-wise square, no reservoir"}


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


def with_squares(sequences: list[np.ndarray]) -> list[np.ndarray]:
    """Each ``(steps, channels)`` sequence with its element-wise square appended: ``(steps, 2 * channels)``
    (the quadratic baseline's input; same units squared in the second half)."""
    return [np.concatenate([s, np.square(s)], axis=1) for s in (np.asarray(s, dtype=np.float64)
                                                                 for s in sequences)]


def training_row_space(x: np.ndarray, train) -> np.ndarray | None:
    """``x`` ``(n_trials, n_features)`` standardised with the training trials' mean and standard deviation
    and rotated onto the span of the standardised training rows: ``(n_trials, rank)``, ``rank`` <
    ``n_train`` (the training mean is removed); None when there are no more features than training
    trials (nothing to gain).

    Ridge regression is invariant to rotations of the feature space and its solution lies in the span
    of the training rows, so a readout without standardisation on this gives the same fit,
    leave-one-out errors and predictions as ``RidgeClassifier()`` (``standardize=True``) on ``x``, with
    an ``n_train``-square instead of an ``n_features``-square eigendecomposition (40 BasicMotions
    training trials against 4000 features of a 500-unit ESN in ``bins:8``).  The span's basis comes
    from the ``n_train``-square Gram matrix of the training rows, ``G = Z Z^T = U diag(s^2) U^T``,
    so ``V^T = diag(1/s) U^T Z`` (directions with ``s^2`` below ``1e-12`` of the largest carry no
    training variance and are left out): an SVD of the ``(n_train, n_features)`` rows took 62 s of
    MiniRocket's 128 s on FSDD (2700 x 9996).
    """
    train = np.asarray(train)
    if len(train) >= x.shape[1]:
        return None
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    std = np.where(std > 1e-12 * max(1.0, float(std.max(initial=0.0))), std, 1.0)  # as RidgeReadout
    z = (x - mean) / std
    zt = z[train]
    s2, u = np.linalg.eigh(zt @ zt.T)
    keep = s2 > 1e-12 * max(float(s2[-1]), 0.0)
    if not keep.any():  # constant training rows: nothing to learn from, one all-zero feature
        return np.zeros((len(x), 1))
    basis = u[:, keep] / np.sqrt(s2[keep])  # (n_train, rank): V = Z^T basis
    return (z @ zt.T) @ basis


def choose_features(sequences: list[np.ndarray], labels: np.ndarray, train, features: str | None = None,
                    candidates=FEATURE_CANDIDATES) -> dict:
    """The feature spec of one side of a comparison, chosen on the training trials only.

    Every spec in ``candidates`` (``features`` alone when it is given: then nothing is searched) is
    fitted by a RidgeClassifier on ``sequences[train]``, its ridge parameter chosen by leave-one-out as
    always; the spec with the lowest leave-one-out squared error of the ±1 class targets (at its best
    ridge parameter) wins, ties to the earlier spec.  Test trials are never looked at.

    Args:
        sequences: one ``(steps_i, channels)`` array per trial (responses or stimuli).
        labels: ``(n_trials,)`` class labels; only ``labels[train]`` is read.
        train: indices of the training trials.
    Returns:
        dict: ``features`` (the spec), ``x`` ``(n_trials, n_features)`` of every trial in that spec
        (with fewer training trials than features, their ``training_row_space``), ``classifier``
        (fitted on ``x[train]``), ``loo_error`` (spec -> leave-one-out error; only when
        searched).
    """
    specs = (features,) if features is not None else tuple(dict.fromkeys(candidates))
    if not specs:
        raise PrclabError("feature search: no candidate feature specs")
    best, errors = None, {}
    for spec in specs:
        x = trial_features(sequences, spec, train)
        reduced = training_row_space(x, train)
        x = x if reduced is None else reduced
        clf = RidgeClassifier(standardize=reduced is None).fit(x[train], labels[train])
        cv = clf.readout_.cv_errors_
        errors[spec] = float(np.min(cv[np.isfinite(cv)])) if np.isfinite(cv).any() else float("inf")
        if best is None or errors[spec] < best["error"]:
            best = {"features": spec, "x": x, "classifier": clf, "error": errors[spec]}
    del best["error"]
    if features is None:
        best["loo_error"] = {k: (v if np.isfinite(v) else None) for k, v in errors.items()}
    return best


def compare_sides(responses: list[np.ndarray], stimuli: list[np.ndarray], labels: np.ndarray, train, test,
                  features: str | None = None, candidates=FEATURE_CANDIDATES,
                  sides=tuple(SIDES)) -> tuple[dict, dict]:
    """Reservoir, linear baseline and quadratic baseline (the prefixes in ``sides``, all by default),
    each through ``choose_features`` and scored on the test trials.

    Returns ``(fields, fits)``: ``fields`` is JSON-able, for each side prefix of ``SIDES`` (``""``,
    ``baseline_``, ``quadratic_baseline_``) ``{prefix}accuracy`` and ``{prefix}features``, plus
    ``feature_search`` (``given`` or the candidates and each side's leave-one-out errors);
    ``fits`` maps each prefix to its ``choose_features`` dict.
    """
    inputs = {"": lambda: responses, "baseline_": lambda: stimuli, "quadratic_baseline_": lambda: with_squares(stimuli)}
    fits = {prefix: choose_features(inputs[prefix](), labels, train, features, candidates) for prefix in sides}
    fields = {}
    for prefix, fit in fits.items():
        fields[f"{prefix}accuracy"] = float(fit["classifier"].score(fit["x"][test], labels[test]))
        fields[f"{prefix}features"] = fit["features"]
    if features is None:
        fields["feature_search"] = {"candidates": list(dict.fromkeys(candidates)),
                                    "rule": "lowest leave-one-out error on the training trials",
                                    "loo_error": {prefix.rstrip("_") or "reservoir": fit["loo_error"]
                                                  for prefix, fit in fits.items()}}
    else:
        fields["feature_search"] = "given"
    return fields, fits


def run_task(data: LabelledSequences, substrate: str = "esn", size: int | None = None, seed: int = 0,
             features: str | None = None, substrate_params: dict | None = None,
             encoder_params: dict | None = None, batch_size: int = 64, progress=None,
             split: str = "official", baselines: bool = True) -> dict:
    """Run the whole pipeline once and return the result as a JSON-able dict.

    Args:
        data: the dataset (see ``protocols.datasets.load_dataset``).
        substrate: substrate name (``reservoir.SUBSTRATES``).
        size: the substrate's size (units / nodes / neurons); model default if None.
        seed: seed of the substrate's weights and noise and of a random split.
        features: feature spec (``readouts.features``) for every side; None (the default): each side's
            chosen from ``FEATURE_CANDIDATES`` and the substrate's own candidates (its registry entry's
            ``features``) on the training trials (``choose_features``).
        substrate_params: the model's constructor keywords (e.g. ``{"recurrent": False}``).
        encoder_params: the encoder's keywords (``protocols.encoders``); by default the substrate's
            registry entry's ``samples_per_frame`` and ``encoder`` keywords, ``sample_rate_hz`` ``1 / dt``
            of the model.
        progress: optional callable ``progress(n_done_items)``.
        split: ``official`` or ``speaker`` (see ``train_test_index``).
        baselines: also fit the no-reservoir baselines and MiniRocket (False: the reservoir alone, as a
            sweep's objective scores it; then the result has only the reservoir's fields).
    Returns:
        dict with ``accuracy``, ``baseline_accuracy``, ``quadratic_baseline_accuracy``,
        ``minirocket_accuracy`` (``experiments.minirocket``, with ``minirocket_alpha`` and
        ``minirocket_features``, the number of its features) and the spec each used, ``features``, ``baseline_features``, ``quadratic_baseline_features`` (``feature_search``:
        how they were chosen), ``chance``, ``n_train``, ``n_test``, ``n_classes``, ``substrate``,
        ``trial_state`` (each sequence from rest), ``encoder`` (its ``describe()``) and ``waveform``,
        ``split`` (``held_out`` speaker), ``alpha`` (chosen, per training trial), ``alpha_curve`` (test accuracy of reservoir and baseline per ridge
        parameter), the test ``labels``, ``predictions`` and ``classes``, ``seconds`` and the parameters.
    """
    start = time.perf_counter()
    entry = substrate_entry(substrate)
    train, test = train_test_index(data, seed, split=split)
    params = {"seed": seed, **(substrate_params or {})}
    dt = params.get("dt", substrate_defaults(substrate).get("dt"))
    enc_params = {"samples_per_frame": entry.samples_per_frame, **entry.encoder,
                  **({"sample_rate_hz": 1.0 / float(dt)} if isinstance(dt, (int, float)) and dt > 0 else {}),
                  **(encoder_params or {})}
    encoder = make_encoder(data, **enc_params).fit(data, train)
    stimuli = [encoder.encode(s) for s in data.sequences]
    model = make_substrate(substrate, encoder.n_channels, size=size, **params)
    responses = run_sequences(model, stimuli, batch_size=batch_size, seed=seed, progress=progress)
    candidates = FEATURE_CANDIDATES + tuple(c for c in entry.features if c not in FEATURE_CANDIDATES)
    fields, fits = compare_sides(responses, stimuli, data.labels, train, test, features, candidates,
                                 sides=tuple(SIDES) if baselines else ("",))
    x, clf = fits[""]["x"], fits[""]["classifier"]
    if baselines:
        from .minirocket import minirocket_score

        fields.update(minirocket_score(stimuli, data.labels, train, test, seed=seed,
                                       fill=rest_level(encoder.low_V, encoder.high_V)))
    counts = np.unique(data.labels[test], return_counts=True)[1]
    alphas = np.asarray(clf.alphas if clf.alphas is not None else [clf.alpha], dtype=float)
    curve = {"alphas": alphas.tolist(), "accuracy": clf.score_path(x[test], data.labels[test], alphas).tolist()}
    if baselines:
        base = fits["baseline_"]
        curve["baseline"] = base["classifier"].score_path(base["x"][test], data.labels[test], alphas).tolist()
    result = {
        **fields,
        "chance": float(counts.max() / counts.sum()),
        "n_train": int(len(train)),
        "n_test": int(len(test)),
        "n_classes": int(len(data.classes)),
        "substrate": substrate,
        "substrate_params": model.describe(),
        "encoder": encoder.describe(),
        "waveform": encoder.waveform,
        "trial_state": TRIAL_STATE,
        "dataset": data.source,
        "split": split,
        "alpha": float(clf.alpha_),
        "alpha_curve": curve,
        "labels": data.labels[test].tolist(),
        "predictions": clf.predict(x[test]).tolist(),
        "classes": clf.classes_.tolist(),
        "seconds": round(time.perf_counter() - start, 3),
    }
    if split == "speaker":
        result["held_out"] = str(data.groups[test[0]])
    return result


def aggregate_seeds(results: list[dict], metric: str, baselines: dict[str, str]) -> dict:
    """One result from runs over seeds: the first run's fields, then ``{metric}_mean``/``_std`` and, for
    each ``baselines`` item ``result key -> name``, ``{name}_mean``/``_std`` (population std over seeds),
    and the per-seed lists ``seeds``, ``{metric}_per_seed``, ``{name}_per_seed`` (and ``held_out_per_seed``
    for speaker splits, ``{side}features_per_seed`` where the spec was chosen per seed)."""
    values = np.array([r[metric] for r in results])
    out = dict(results[0])
    out.update({f"{metric}_mean": float(values.mean()), f"{metric}_std": float(values.std()),
                "seeds": [r["seed"] for r in results], f"{metric}_per_seed": values.tolist(),
                "seconds": round(sum(r["seconds"] for r in results), 3)})
    for key, name in baselines.items():
        bases = np.array([r[key] for r in results])
        out.update({f"{name}_mean": float(bases.mean()), f"{name}_std": float(bases.std()),
                    f"{name}_per_seed": bases.tolist()})
    for key in ("held_out", *(f"{prefix}features" for prefix in SIDES)):
        if key in results[0]:
            out[f"{key}_per_seed"] = [r[key] for r in results]
    return out


def assignments(items: list[str] | None, option: str) -> dict:
    """``["recurrent=false", "waveform=rate"]`` (a command line's ``KEY=VALUE`` options) -> keywords
    ``{"recurrent": False, "waveform": "rate"}``: each value read as TOML (``true``, ``0.5``, ``"x"``),
    else as a bare string.  Raises ``PrclabError`` naming ``option`` for an item without ``=``."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    out = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise PrclabError(f"{option} {item!r}: expected KEY=VALUE, e.g. {option} waveform=rate")
        try:
            out[key.strip()] = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = text.strip()
    return out


def run_tasks(data_path=None, task: str | None = None, substrate: str = "esn", size: int | None = None,
              seed: int = 0, seeds: int = 1, features: str | None = None, split: str = "official",
              progress_bar=None, encoder_params: dict | None = None, substrate_params: dict | None = None,
              tune: int = 0, tune_workers: int | None = None) -> dict:
    """What ``prclab task`` runs: a dataset (``data_path``) or a regression ``task``, over ``seeds`` seeds.

    Seeds are ``seed, seed + 1, ...``; each sets the substrate's weights and noise (and a random split
    or the held-out speaker).  ``progress_bar(total, desc, unit)`` is an optional context-manager
    factory with an ``update(n)`` method.  ``encoder_params`` and ``substrate_params`` go to
    ``run_task`` (a dataset only).  With ``seeds > 1`` the result is ``aggregate_seeds``'.

    ``tune > 0`` (a dataset only): each seed's configuration is tuned by a ``tune``-trial sweep on its
    training split (``experiments.sweep.run_tuned_task``, ``tune_workers`` as the sweep's ``workers``):
    ``accuracy`` is then the tuned configuration's, beside ``default_accuracy``, ``tuned_params`` and
    ``cv_score``.
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
        if encoder_params or substrate_params or tune:
            raise PrclabError(f"task: --encoder, --param and --tune apply to --data, not to the time-series "
                              f"task {task}")
        for s in range(seed, seed + seeds):
            results.append({"seed": s, **run_regression_task(task, substrate, size=size, seed=s)})
        return results[0] if seeds == 1 else aggregate_seeds(
            results, "nrmse", {"baseline_nrmse": "baseline", "quadratic_baseline_nrmse": "quadratic_baseline"})
    data = load_dataset(data_path)
    given = dict(features=features, split=split, encoder_params=encoder_params, substrate_params=substrate_params)
    if tune < 0:
        raise PrclabError(f"task: --tune must be 1 or more trials, got {tune}")
    for s in range(seed, seed + seeds):
        if tune:
            from .sweep import run_tuned_task

            result = run_tuned_task(data, str(data_path), substrate, tune, size=size, seed=s,
                                    workers=tune_workers, **given)
        elif progress_bar is None:
            result = run_task(data, substrate, size=size, seed=s, **given)
        else:
            with progress_bar(len(data), f"{substrate} seed {s}", "seq") as bar:
                result = run_task(data, substrate, size=size, seed=s, progress=bar.update, **given)
        results.append({"seed": s, **result})
    return results[0] if seeds == 1 else aggregate_seeds(
        results, "accuracy", {"baseline_accuracy": "baseline", "quadratic_baseline_accuracy": "quadratic_baseline",
                              "minirocket_accuracy": "minirocket",
                              **({"default_accuracy": "default"} if tune else {})})


def _spec_note(result: dict, prefix: str) -> str:
    """``; features SPEC`` of one side (each seed's distinct choices, in order), or ``""`` for regression."""
    if f"{prefix}features" not in result:
        return ""
    specs = result.get(f"{prefix}features_per_seed", [result[f"{prefix}features"]])
    how = "given" if result.get("feature_search") == "given" else "chosen on training trials"
    return f"; features {', '.join(dict.fromkeys(specs))} ({how})"


def format_task_result(result: dict) -> str:
    """Aligned text lines of a ``run_tasks`` result (one seed or several, classification or regression)."""
    lines = [f"substrate          {result['substrate']} ({result['seconds']:.1f} s)"]
    if "waveform" in result:
        lines.append(f"encoder            {result['encoder']['kind']}, {result['waveform']} waveform, "
                     f"{result['encoder']['samples_per_frame']} samples per frame")
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
    rows = [(f"test {name:<13}", metric, "", "reservoir"),
            (f"baseline {name:<9}", "baseline_nrmse" if regression else "baseline_accuracy", "baseline_",
             baseline_note)]
    quadratic = "quadratic_baseline_nrmse" if regression else "quadratic_baseline_accuracy"
    if quadratic in result:
        rows.append(("quadratic baseline", quadratic, "quadratic_baseline_",
                     "the same on the inputs and their squares" if regression else
                     "same readout on the stimulus and its square, no reservoir"))
    if "default_accuracy" in result:
        rows.insert(1, ("default accuracy  ", "default_accuracy", "default_",
                        "the task's default configuration, same seed and split"))
    if "minirocket_accuracy" in result:
        rows.append(("minirocket        ", "minirocket_accuracy", "minirocket_",
                     f"MiniRocket's {result['minirocket_n_features']} features of the stimulus + ridge, no reservoir"))
    for label, key, prefix, note in rows:
        if "seeds" in result:
            stem = metric if key == metric else key.rsplit("_", 1)[0]
            spread = (f"{f.format(result[stem + '_mean'])} ± {f.format(result[stem + '_std'])}  "
                      f"(mean ± std over {len(result['seeds'])} seeds: "
                      f"{', '.join(f.format(v) for v in result[stem + '_per_seed'])}")
            lines.append(f"{label} {spread}; {note}{_spec_note(result, prefix)})")
        else:
            lines.append(f"{label} {f.format(result[key])}  ({note}{_spec_note(result, prefix)})")
    if "tuned_params" in result:
        params = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                           for k, v in result["tuned_params"].items())
        lines.append(f"tuned              {result['tune']['trials']} trials, CV accuracy {result['cv_score']:.3f} "
                     f"({result['tune']['folds']} folds of the training split): {params}")
        lines.append(f"note               {result['test_note']}")
    return "\n".join(lines)
