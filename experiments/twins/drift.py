"""Drift: the substrate now vs then on a fixed reference block, the twin vs now, and a stale flag.

A protocol with ``[drift] reference = true`` plays one fixed reference trial first, after every
``reference_every`` dataset trials and last (:func:`prclab.protocols.runner.compile_trials`); those
trials are recorded with ``split = "reference"`` and ``repetition`` = the play's number.  This module
compares their responses, as the Twente dopant-network twins are checked (Ruiz Euler et al. 2020: the
fixed reference replayed later, RMSE and Pearson correlation of the device now vs then and of the
model vs the device).

**For ``twin check`` (H2): call :func:`drift_report(recording, twin)`** with the recording (a
:class:`~prclab.protocols.recording.Recording` or a path) and a fitted twin (anything with
``simulate(u) -> y``, ``(batch, T, n_in) -> (batch, T, n_out)``, or None); it returns a
:class:`DriftReport` whose :meth:`DriftReport.to_json` goes into ``--json`` as ``"drift"``, or None when
the recording holds fewer than two reference plays.

Definitions (all on the reference trial's whole window, the first ``skip`` samples excluded as the
initial condition, every channel pooled):

- ``rmse(a, b)``: root mean square of ``a - b`` in the response's units; ``pearson(a, b)``: the
  correlation of the two flattened, per-channel-centred traces;
- **then** = the first play, **now** = the last; ``substrate_rmse``/``substrate_pearson``: now vs then;
- **repeatability**: the same between consecutive plays (``now - then`` is only drift if it exceeds
  what a play differs from the next): ``repeat_rmse`` is the median over consecutive pairs;
  with only two plays it is that pair's and the flag cannot separate drift from noise (said in
  ``note``);
- ``twin_rmse``/``twin_pearson``: the twin's noiseless free run on the reference stimulus vs now;
  ``twin_then_rmse`` vs then; ``twin_ratio = twin_rmse / repeat_rmse``: with independent noise of the
  same size in every play, a perfect noiseless twin sits at ``1 / sqrt(2) = 0.71`` (it misses one
  play's noise, a play the next misses two);
- **drifted**: ``substrate_rmse > STALE_FACTOR x repeat_rmse`` with ``STALE_FACTOR = 1.5``: the
  substrate moved from the first play to the last by more than 1.5 times what it differs from itself
  between consecutive plays;
- **stale**: ``twin_rmse - twin_then_rmse > STALE_FACTOR x repeat_rmse``: the twin's error on the
  reference grew over the session by more than 1.5 times the repeatability (by the triangle
  inequality that growth is at most ``substrate_rmse``, so a stale twin means a drifted substrate that
  moved away from the twin).  A twin that is poor from the first play on is not stale but poor: its
  ``twin_ratio`` and ``twin check``'s held-out NRMSE say so.  The factor 1.5 leaves room for the
  scatter of a median over few pairs while a drift of a few repeatabilities is caught.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from prclab.errors import PrclabError
from prclab.protocols.recording import Recording, read_recording

#: drifted / stale: the substrate's change / the twin's error growth over this many repeatabilities
STALE_FACTOR = 1.5
#: split of the reference trials in a recording (protocols.runner.compile_trials)
REFERENCE_SPLIT = "reference"


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    """Root mean square of ``a - b`` over every sample and channel (the response's units)."""
    return float(np.sqrt(np.mean((np.asarray(a, float) - np.asarray(b, float)) ** 2)))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of ``a`` and ``b`` ``(T, n)``, each channel centred, all channels pooled
    (nan when either is constant)."""
    a = np.asarray(a, float) - np.mean(a, axis=0)
    b = np.asarray(b, float) - np.mean(b, axis=0)
    den = np.sqrt(np.sum(a * a) * np.sum(b * b))
    return float(np.sum(a * b) / den) if den > 0 else float("nan")


@dataclass
class DriftReport:
    """The reference block's verdict (module docstring for each field's definition).

    Attributes:
        plays: reference plays found; ``trials``: their trial indices in the recording.
        substrate_rmse, substrate_pearson: last play vs first (response units; dimensionless).
        repeat_rmse, repeat_pearson: median over consecutive pairs of plays.
        twin_rmse, twin_pearson, twin_then_rmse, twin_ratio: the twin vs the last (and first) play, and
            ``twin_rmse / repeat_rmse``; None without twin.
        drifted, stale: the flags (``stale`` None without twin); ``threshold_rmse``: ``STALE_FACTOR x
        repeat_rmse``; ``note``: what limits the verdict, if anything.
    """

    plays: int
    trials: list[int]
    substrate_rmse: float
    substrate_pearson: float
    repeat_rmse: float
    repeat_pearson: float
    threshold_rmse: float
    drifted: bool
    twin_rmse: float | None = None
    twin_pearson: float | None = None
    twin_then_rmse: float | None = None
    twin_ratio: float | None = None
    stale: bool | None = None
    note: str = ""

    def to_json(self) -> dict:
        """A JSON-able dict (``stale_factor`` added)."""
        return {**asdict(self), "stale_factor": STALE_FACTOR}


def reference_plays(recording: Recording | str | Path) -> tuple[list[int], np.ndarray, np.ndarray]:
    """The reference trials of ``recording`` that played the last play's stimulus exactly: ``(trial
    indices, stimulus (T, n_in) volts, responses (plays, T, n_out))``, in playing order.  A play the
    start-of-run amplitude ramp (``[safety] ramp_s``) scaled differs and is left out."""
    rec = read_recording(recording) if isinstance(recording, (str, Path)) else recording
    refs = [t for t in rec.trials if t.split == REFERENCE_SPLIT]
    if not refs:
        return [], np.zeros((0, 0)), np.zeros((0, 0, 0))
    stimulus = np.asarray(refs[-1].stimulus, float)
    same = [t for t in refs if t.stimulus.shape == stimulus.shape
            and np.array_equal(np.asarray(t.stimulus, float), stimulus)]
    return [t.index for t in same], stimulus, np.stack([np.asarray(t.response, float) for t in same])


def twin_response(twin, stimulus: np.ndarray) -> np.ndarray:
    """``twin``'s answer ``(T, n_out)`` to ``stimulus`` ``(T, n_in)`` volts: a fitted twin family's
    noiseless free run (``simulate``), or a :class:`~prclab.reservoir.Substrate`'s run from
    ``reset(0)`` (a ``TwinSubstrate``, or a model run as the twin of what it simulated)."""
    if hasattr(twin, "simulate"):
        return np.asarray(twin.simulate(stimulus[None]))[0]
    twin.reset(0)
    return np.asarray(twin.run(stimulus[None]))[0]


def compare_plays(responses: np.ndarray, twin_y: np.ndarray | None = None,
                  trials: list[int] | None = None) -> DriftReport:
    """The verdict on reference plays ``responses`` ``(plays >= 2, T, n_out)`` in playing order and the
    twin's answer ``twin_y`` ``(T, n_out)`` (or None), as the module docstring defines it."""
    r = np.asarray(responses, float)
    if r.ndim != 3 or len(r) < 2:
        raise PrclabError(f"drift: need (plays >= 2, T, n_out) reference responses, got {r.shape}")
    then, now = r[0], r[-1]
    pairs = [(rmse(a, b), pearson(a, b)) for a, b in zip(r[:-1], r[1:])]
    repeat_rmse = float(np.median([p[0] for p in pairs]))
    threshold = STALE_FACTOR * repeat_rmse
    report = DriftReport(len(r), list(range(len(r))) if trials is None else list(trials), rmse(now, then),
                         pearson(now, then), repeat_rmse, float(np.median([p[1] for p in pairs])),
                         threshold, rmse(now, then) > threshold)
    if len(r) == 2:
        report.note = ("two reference plays only: the repeatability is the now-vs-then difference "
                       "itself, so drift cannot be told from noise (set [drift] reference_every)")
    if twin_y is not None:
        y = np.asarray(twin_y, float)
        if y.shape != now.shape:
            raise PrclabError(f"drift: the twin answers the reference with shape {y.shape}, the "
                              f"recording's reference responses are {now.shape}")
        report.twin_rmse, report.twin_pearson = rmse(y, now), pearson(y, now)
        report.twin_then_rmse = rmse(y, then)
        report.twin_ratio = report.twin_rmse / repeat_rmse if repeat_rmse > 0 else float("inf")
        report.stale = report.twin_rmse - report.twin_then_rmse > threshold
    return report


def drift_report(recording: Recording | str | Path, twin=None, skip: int = 0) -> DriftReport | None:
    """The drift verdict of ``recording``'s reference plays, and of ``twin`` against them.

    Args:
        recording: a recording (or its path) made with ``[drift] reference = true``.
        twin: a fitted twin family or a substrate (:func:`twin_response`), or None.
        skip: initial samples of each play excluded (the initial condition), e.g. the fit's washout.

    Returns:
        None if fewer than two reference plays are recorded, else a :class:`DriftReport`.

    Raises:
        PrclabError: ``skip`` leaves no sample; the twin's channels differ from the recording's.
    """
    trials, stimulus, responses = reference_plays(recording)
    if len(trials) < 2:
        return None
    if not 0 <= skip < responses.shape[1]:
        raise PrclabError(f"drift: skip = {skip} must lie in 0..{responses.shape[1] - 1} samples")
    twin_y = None if twin is None else twin_response(twin, stimulus)[skip:]
    return compare_plays(responses[:, skip:], twin_y, trials)
