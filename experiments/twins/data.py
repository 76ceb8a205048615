"""The recorded trials a twin is fitted on and held out on: :func:`load_fit_data`.

The split: the recording's own ``split`` field when it has both ``train`` and ``test`` trials (``test``
trials are held out; any other split, e.g. ``reference`` plays of the drift block, is in neither), else a
deterministic fraction by trial index (every ``round(1 / heldout)``-th trial held out).  Held-out trials
never reach a fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prclab.errors import PrclabError
from prclab.protocols.recording import read_recording


@dataclass
class FitData:
    """Whole recorded trials split for a twin.

    Attributes:
        train_stimuli, heldout_stimuli: lists of ``(T_i, n_in)`` volts.
        train_responses, heldout_responses: lists of ``(T_i, n_out)`` in the response channels' units.
        train_indices, heldout_indices: the trials' indices in the recording.
        checksums: ``{trial index: checksum}`` of every trial used (train and held out).
        dt: sample period, seconds; protocol_text: the recording's protocol file text.
        split_source: ``"recorded"`` or ``"by index (fraction F)"``.
        path: the recording.
        problems: the recording's damaged trials, named and left out (``Recording.problems``).
        train_history: per training trial, what the substrate did before it: ``"rest"`` (the
            recording's first trial), ``"follows"`` (the training trial before it in the list was played
            right before it: the next index, the same recording session, so the substrate's state ran on
            from one into the other) or ``"unknown"`` (after a held-out or missing trial, or a resume).
    """

    train_stimuli: list[np.ndarray]
    train_responses: list[np.ndarray]
    heldout_stimuli: list[np.ndarray]
    heldout_responses: list[np.ndarray]
    train_indices: list[int]
    heldout_indices: list[int]
    checksums: dict[int, str]
    dt: float
    protocol_text: str
    split_source: str
    path: str
    problems: list[str] = field(default_factory=list)
    train_history: list[str] = field(default_factory=list)


def load_fit_data(rec_path: str | Path, heldout: float = 0.3) -> FitData:
    """Read recording ``rec_path`` and split its trials (module docstring).

    Args:
        heldout: fraction held out when the recording has no train/test split, in (0, 1).
    Raises:
        PrclabError: unreadable recording, no trials, no held-out or no training trials, trials with
            non-finite responses, or no sample rate.
    """
    if not 0 < heldout < 1:
        raise PrclabError(f"twin fit: the held-out fraction must lie in (0, 1), got {heldout}")
    with read_recording(rec_path) as rec:
        trials = [t for t in rec.trials if t.response is not None]
        if not trials:
            raise PrclabError(f"recording {rec_path}: holds no recorded trials")
        splits = {t.split for t in trials}
        if {"train", "test"} <= splits:
            train = [t for t in trials if t.split == "train"]
            held = [t for t in trials if t.split == "test"]
            source = "recorded"
        else:
            step = max(2, int(round(1 / heldout)))
            ordered = sorted(trials, key=lambda t: t.index)
            held = [t for k, t in enumerate(ordered) if k % step == step - 1]
            train = [t for k, t in enumerate(ordered) if k % step != step - 1]
            source = f"by index (every {step}th trial)"
        if not held:
            raise PrclabError(f"recording {rec_path}: no held-out trials ({len(trials)} trial(s), split {source}); "
                              f"a twin must be validated on trials its fit never saw")
        if not train:
            raise PrclabError(f"recording {rec_path}: no training trials")
        loaded = {t.index: rec.load(t) for t in train + held}
        checksums = {i: t.checksum for i, t in loaded.items()}
        rate = _rate(rec, trials[0])
        arrays = {i: (np.asarray(t.stimulus, float), np.asarray(t.response, float)) for i, t in loaded.items()}
        bad = [i for i, (_, r) in arrays.items() if not np.all(np.isfinite(r))]
        if bad:
            raise PrclabError(f"recording {rec_path}: trial(s) {bad[:5]} hold NaN/inf responses")
        tr, he = [t.index for t in train], [t.index for t in held]
        history = ["rest" if t.index == 0 else "follows" if k and t.index == train[k - 1].index + 1
                   and t.session == train[k - 1].session else "unknown" for k, t in enumerate(train)]
        return FitData([arrays[i][0] for i in tr], [arrays[i][1] for i in tr], [arrays[i][0] for i in he],
                       [arrays[i][1] for i in he], tr, he, checksums, 1.0 / rate,
                       str(rec.attrs.get("protocol_text", "")), source, str(rec_path), list(rec.problems), history)


def _rate(rec, trial) -> float:
    """The sample rate in Hz: the protocol's ``sample_rate_hz``, else from the timestamps."""
    from prclab.protocols.protocol import parse_protocol

    text = str(rec.attrs.get("protocol_text", ""))
    if text:
        try:
            return float(parse_protocol(text, Path(rec.path)).rate_hz)
        except PrclabError:
            pass
    ts = np.asarray(trial.timestamps, float)
    if len(ts) > 1 and np.all(np.diff(ts) > 0):
        return float(1.0 / np.median(np.diff(ts)))
    raise PrclabError(f"recording {rec.path}: no sample rate (no protocol text, no timestamps)")


def _checksums(rec_path, indices: list[int]) -> dict[int, str]:
    """``{index: checksum}`` of those trials of recording ``rec_path`` (any format prclab reads), as
    its reader gives them (:attr:`~prclab.protocols.recording.Trial.checksum`); trials not in it are left out."""
    by_index = {t.index: t for t in read_recording(rec_path, verify=False).trials}
    return {i: by_index[i].checksum for i in indices if i in by_index}
