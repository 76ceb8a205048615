"""Validate a twin on its recording's held-out trials, against the references no twin should need to beat.

Every error here is a **free-run** error: the twin answers each held-out trial's whole recorded stimulus
from rest on its own predictions, as it must when it stands in for the substrate.  It is the
**NRMSE (RMSE/std)**: per response channel, the root mean square of twin minus recorded over every
held-out trial's samples, over the recorded standard deviation of that channel on the same samples;
the first ``skip`` samples of each trial (the initial condition, default the protocol's washout) are
excluded.  The pooled figure is the root mean square of the per-channel NRMSEs (the NRMSE of the
channels each scaled to unit std), so a loud channel does not drown the others.  The spiking figures
(``spiking``) are the exception: there the twin answers the whole session in playing order
(:func:`simulate_session`), because a culture's bursts, depression and afterhyperpolarisation outlast a
trial's rest and the substrate answered each trial in the state the trials before left it in.

``nrmse`` is the twin's noiseless mean prediction (its ``simulate`` without noise), the usual free-run
figure; ``noisy_nrmse`` is the twin answering with its fitted residual noise (one seed per trial), one
realisation against another as the floor is: a perfect model's mean prediction reaches about
``floor / sqrt(2)`` (the floor holds the noise of two plays, the mean prediction against a play one),
its noisy run about the floor itself.

The references, on the same held-out trials and samples:

- **floor** (the repeatability floor: the substrate answering the same stimuli again):
  ``repeated stimuli`` where the recording itself holds each held-out trial's stimulus played again
  (``repetitions > 1``: each held-out play against the next play of the same item with the identical
  stimulus, each pair once); else ``reference plays`` (the drift reference block, ``experiments.twins.drift``: one
  play against the next, on the reference trial, not on the held-out trials, and said so); else, for a
  simulated recording (its model's description in the recording's ``device`` attrs), ``simulated
  model, another noise seed``: that very model, reset with the recorded seed + 1, re-driven by every
  intact trial's recorded stimulus in playing order, as the session played them (the same seed
  reproduces the recording to its storage precision; ``tests/test_twin_check.py`` holds it to that).
  That floor keeps more than a lab's repeat can: both plays start from one state and see one stimulus
  history, so where the substrate carries a slow hidden state the re-seeded plays share it, and no
  model fitted on stimuli and responses can know it.  Record a culture with ``repetitions = 2`` for the
  lab's floor, the culture answering the stimulus again later in the session.  Measured on
  ``protocols/examples/organoid_twin.toml`` (a simulated organoid, FSDD, 4 rate-coded electrodes, 16
  channels, every item twice; its afterhyperpolarisation decays in 3 s, its synapses recover in 0.8 s, the
  rest between trials is 0.3 s; 2026-12-04, numpy 2.3.5, numba 0.63.1): the two plays correlate 0.457
  (50 ms rate bins; 0.054 its bootstrap error over the pairs) and the spiking twin 0.296 +- 0.006 (4
  session runs; 0.306 +- 0.008 fitted as if every trial began from rest).  The organoid model itself, the
  same network with another noise seed, re-driven in the
  session's own order (this floor for a one-play recording) correlates 0.548 +- 0.041; re-driven by the
  session's trials in four other random orders, 0.386, 0.381, 0.322 and 0.379, and those sessions' own
  repeat floors are 0.332-0.375 (``benchmarks/spiking_twin_ceiling.py``: a few large bursts carry these
  correlations, so the floor belongs to the playing order as much as to the culture); answering each
  held-out trial from a fresh start after 2 s or 10 s of spontaneous activity, 0.267 and 0.240, at twice
  the recorded rate.  (On the install of an earlier session the same protocol gave 0.335 for the floor and
  0.294 for the twin.)
- **linear**: the ``linear`` twin family fitted on the same training trials (its defaults, as ``twin
  fit`` fits it; a linear twin is its own baseline); None, with ``linear_error`` saying why, where no
  linear structure fits (spike counts often have none with a stable free run).
- **replay**: today's untuned replay, ``protocols.replay.replay_recording`` with the protocol's model
  as the protocol's ``[substrate] params`` configure it, less their ``seed``: the hand-written model of
  that kind of substrate with that layout, but not that specimen (whose seed a lab cannot know) - what
  ``prclab replay --substrate NAME`` gives a recording of real hardware, without fitting anything.  A
  protocol that gives no seed therefore replays its own simulated recording exactly (NRMSE 0).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from prclab.errors import PrclabError
from prclab.protocols.recording import read_recording
from prclab.reservoir.twins.base import padded

#: trials simulated together (one batch) when the twin answers a list of trials
BATCH = 64


def nrmse(recorded: list[np.ndarray], predicted: list[np.ndarray], skip: int = 0) -> dict:
    """NRMSE (RMSE/std) of ``predicted`` against ``recorded``, per channel and pooled.

    Args:
        recorded, predicted: one ``(T_i, n_out)`` array per trial each, matched by position.
        skip: initial samples of each trial excluded (the initial condition).
    Returns:
        dict: ``per_channel`` ``(n_out,)`` and ``pooled`` (root mean square of the per-channel values;
        a channel with zero recorded std is left out of the pool and is inf there unless matched).
    """
    if len(recorded) != len(predicted) or not recorded:
        raise PrclabError(f"NRMSE: need one prediction per recorded trial, got {len(predicted)} for "
                          f"{len(recorded)}")
    a = np.concatenate([np.asarray(r, float)[skip:] for r in recorded])
    b = np.concatenate([np.asarray(p, float)[skip:] for p in predicted])
    if a.shape != b.shape or len(a) == 0:
        raise PrclabError(f"NRMSE: recorded {a.shape} and predicted {b.shape} samples after skipping "
                          f"{skip} per trial differ or are empty")
    err, std = np.sqrt(np.mean((b - a) ** 2, axis=0)), a.std(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        per = np.where(std > 0, err / std, np.where(err == 0, 0.0, np.inf))
    pooled = float(np.sqrt(np.mean(per[std > 0] ** 2))) if np.any(std > 0) else float("nan")
    return {"per_channel": per, "pooled": pooled}


def simulate_trials(family, stimuli: list[np.ndarray], rngs=None) -> list[np.ndarray]:
    """A fitted twin family's free run from rest on each trial's stimulus ``(T_i, n_in)`` volts.

    Trials of different lengths are batched by padding with each one's last stimulus row and cutting
    the answer back (the twin is causal, so the padding does not reach the kept samples).
    ``rngs``: None (the noiseless mean prediction) or one ``numpy.random.Generator`` per trial.
    Returns one ``(T_i, n_out)`` array per trial.
    """
    out = []
    for start in range(0, len(stimuli), BATCH):
        chunk = [np.asarray(s, float) for s in stimuli[start:start + BATCH]]
        y = family.simulate(padded(chunk), noise_rng=None if rngs is None else rngs[start:start + BATCH])
        out.extend(y[i, :len(s)] for i, s in enumerate(chunk))
    return out


def simulate_session(family, trials, wanted: list[int], seeds=(0,)) -> list[list[np.ndarray]]:
    """A fitted twin family answering a recorded session as the substrate did: every trial's stimulus
    in playing order (``index``), the twin's state carried from one trial into the next, from rest at
    the session's start: a free run (no recorded response enters) that inherits what the session's
    earlier stimuli left behind, as the floor's plays do.  One run per seed, each on its own noise
    stream (``numpy.random.default_rng(seed)``), the runs side by side as one batch.

    Args:
        family: a fitted twin family.
        trials: the recording's trials (``.index``, ``.stimulus`` ``(T_i, n_in)`` volts), any order.
        wanted: the indices whose answers are returned, in that order.
        seeds: one noise seed per run.
    Returns:
        per seed, one ``(T_i, n_out)`` array per index of ``wanted``.
    """
    rngs = [np.random.default_rng(q) for q in seeds]
    state, out, keep = family.initial_state(len(rngs)), {}, set(wanted)
    for t in sorted(trials, key=lambda t: t.index):
        u = np.asarray(t.stimulus, float)
        y, state = family.step_block(state, np.broadcast_to(u, (len(rngs),) + u.shape), rngs)
        if t.index in keep:
            out[t.index] = y
    return [[out[i][k] for i in wanted] for k in range(len(rngs))]


def floor_responses(rec, heldout: list[int]) -> tuple[list[np.ndarray] | None, list[np.ndarray] | None, str]:
    """The repeatability floor's pair of answers for the module docstring's first source that applies.

    Args:
        rec: an open :class:`~prclab.protocols.recording.Recording`.
        heldout: trial indices of the held-out trials.
    Returns:
        ``(recorded, again, source)``: two lists of ``(T, n_out)`` responses to compare (the substrate
        and the substrate again), and the source's name; ``(None, None, "none")`` when no source applies.
    """
    by_index = {t.index: t for t in rec.trials}
    held = [by_index[i] for i in heldout]
    again = _repeats(rec.trials, held)
    if again is not None:
        return [np.asarray(t.response) for t in again[0]], [np.asarray(t.response) for t in again[1]], \
            "repeated stimuli"
    from .drift import reference_plays

    _, _, plays = reference_plays(rec)
    if len(plays) >= 2:
        return list(plays[:-1]), list(plays[1:]), "reference plays (the drift reference trial, not held-out)"
    device = rec.attrs.get("device") or {}
    if isinstance(device, dict) and isinstance(device.get("substrate"), dict) and "seed" in device:
        return ([np.asarray(t.response) for t in held], _redriven(rec, device, heldout),
                "simulated model, another noise seed")
    return None, None, "none"


def _repeats(trials, held) -> tuple[list, list] | None:
    """Each pair of plays of one stimulus among the held-out trials once: ``(first plays, later plays)``
    (a held-out trial and the next trial with the identical stimulus; a pair is not counted again the
    other way round, which would make the two sides' totals equal by construction), or None if a
    held-out trial has no other play."""
    first, later, paired = [], [], set()
    for h in held:
        stim = np.asarray(h.stimulus)
        same = [t for t in trials if t.index != h.index and t.item == h.item
                and t.stimulus.shape == stim.shape and np.array_equal(np.asarray(t.stimulus), stim)]
        if not same:
            return None
        if h.index in paired:
            continue
        twin = min(same, key=lambda t: (t.index < h.index, abs(t.index - h.index)))
        paired |= {h.index, twin.index}
        pair = (h, twin) if h.index < twin.index else (twin, h)
        first.append(pair[0])
        later.append(pair[1])
    return first, later


def _redriven(rec, device: dict, heldout: list[int], seed_offset: int = 1) -> list[np.ndarray]:
    """The recorded simulated model (``device['substrate']``), reset with ``device['seed'] +
    seed_offset``, re-driven by every intact trial's stimulus in playing order; the held-out answers."""
    from prclab.reservoir import substrate_from_description

    model = substrate_from_description(device["substrate"], f"recording {rec.path}: device substrate")
    model.reset(int(device["seed"]) + seed_offset)
    wanted, out = set(heldout), {}
    for t in sorted(rec.trials, key=lambda t: t.index):
        y = model.run(np.asarray(t.stimulus, float)[None])[0]
        if t.index in wanted:
            out[t.index] = y
    return [out[i] for i in heldout]


def untuned_replay(rec_path, heldout: list[int], protocol) -> list[np.ndarray]:
    """Held-out answers of ``replay_recording`` with ``protocol``'s model and its ``[substrate] params``
    less ``seed`` (module docstring)."""
    from prclab.protocols.replay import replay_recording

    model = protocol["substrate"]["name"]
    params = {k: v for k, v in protocol["substrate"]["params"].items() if k != "seed"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "replay.h5"
        replay_recording(rec_path, model, out, params=params)
        with read_recording(out) as replayed:
            by_index = {t.index: np.asarray(t.response) for t in replayed.trials}
    return [by_index[i] for i in heldout]


#: root seed of the twin's noise streams in ``noisy_nrmse`` (one child per held-out trial)
NOISE_SEED = 0
#: noise seeds of the twin's session runs behind the spiking figures (their mean and standard error)
SESSION_SEEDS = (0, 1, 2, 3)

def check_twin(twin_path, rec_path, plot_dir=None) -> dict:
    """``prclab twin check``: the twin of ``twin_path`` against recording ``rec_path`` (module docstring).

    The held-out and training trials are those the twin's provenance records.
    Returns:
        JSON-able dict: ``nrmse`` (the twin's, pooled), ``noisy_nrmse``, ``floor_nrmse``, ``linear_nrmse``
        (None where no linear structure fits: ``linear_error`` says why), ``replay_nrmse`` and each one's
        ``*_per_channel``, ``floor_source``, ``metric`` (the definition), ``excluded_samples`` (per
        trial), ``n_heldout``, ``n_train``, ``family``, ``fits`` (what the family models), the transfer
        fields (:func:`~.transfer.transfer_scores`; None for a recording without labels of two or more
        classes), ``spiking`` (:func:`_spiking_session`, spiking substrates only), ``drift``
        (``drift.drift_report``, recordings with reference plays only) and ``plots`` (paths written).
    """
    from prclab.protocols.protocol import parse_protocol
    from prclab.reservoir.twins.file import read_twin

    twin = read_twin(twin_path)
    family, provenance = twin.family, twin.provenance
    with read_recording(rec_path) as rec:
        by_index = {t.index: t for t in rec.trials}
        train, heldout = list(provenance["train_trials"]), list(provenance["heldout_trials"])
        _same_trials(rec_path, twin_path, by_index, provenance)
        protocol = parse_protocol(str(rec.attrs.get("protocol_text", "")), Path(rec_path))
        dt = 1.0 / protocol.rate_hz
        skip = int(round(protocol["timing"]["washout_s"] * protocol.rate_hz))
        stim = {i: np.asarray(by_index[i].stimulus, float) for i in train + heldout}
        resp = {i: np.asarray(by_index[i].response, float) for i in train + heldout}
        recorded = [resp[i] for i in heldout]
        predicted = simulate_trials(family, [stim[i] for i in heldout])
        linear, linear_error = _linear_baseline(family, [stim[i] for i in train], [resp[i] for i in train], dt)
        floor_a, floor_b, floor_source = floor_responses(rec, heldout)
        seeds = np.random.SeedSequence(NOISE_SEED).spawn(len(heldout))
        noisy = simulate_trials(family, [stim[i] for i in heldout], [np.random.default_rng(q) for q in seeds])
        references = {"": predicted, "noisy_": noisy, "replay_": untuned_replay(rec_path, heldout, protocol)}
        if linear is not None:
            references["linear_"] = simulate_trials(linear, [stim[i] for i in heldout])
        result = {"metric": "NRMSE (RMSE/std), free run from rest, per channel over the held-out trials; "
                            "pooled: root mean square over channels",
                  "family": family.name, "fits": family.fits, "excluded_samples": skip, "n_heldout": len(heldout),
                  "n_train": len(train), "floor_source": floor_source, "linear_nrmse": None,
                  "linear_nrmse_per_channel": None, "linear_error": linear_error}
        for prefix, pred in references.items():
            e = nrmse(recorded, pred, skip)
            result[f"{prefix}nrmse"], result[f"{prefix}nrmse_per_channel"] = e["pooled"], e["per_channel"].tolist()
        e = nrmse(floor_a, floor_b, skip) if floor_a is not None else None
        result["floor_nrmse"] = None if e is None else e["pooled"]
        result["floor_nrmse_per_channel"] = None if e is None else e["per_channel"].tolist()
        result["transfer"] = _transfer(by_index, train, heldout, predicted, family, stim, rec.attrs)
        result.update({k: result["transfer"].get(k) if result["transfer"] else None
                       for k in ("native_accuracy", "transfer_accuracy", "transfer_gap", "agreement")})
        model = (rec.attrs.get("device") or {}).get("substrate", {}).get("model") \
            if isinstance(rec.attrs.get("device"), dict) else None
        result["spiking"] = (_spiking_session(rec, family, heldout, recorded, floor_a, floor_b, dt)
                             if family.fits == "counts" or model == "organoid" else None)
        from .drift import drift_report

        drift = drift_report(rec, family, skip=skip)
        result["drift"] = None if drift is None else drift.to_json()
    result["plots"] = []
    if plot_dir is not None:
        from .plots import plot_check

        result["plots"] = plot_check(result, recorded, predicted, heldout, plot_dir,
                                     curve=_training_curve(twin, train, heldout, stim, resp, dt, skip))
    return result


def _linear_baseline(family, stimuli, responses, dt: float):
    """``(linear twin, None)``: the ``linear`` family as ``twin fit`` fits it (defaults, the training
    trials; a linear twin is its own baseline), or ``(None, reason)`` where no linear structure fits (spike
    counts often have no stable linear free run)."""
    from prclab.reservoir.twins import FAMILIES

    if family.name == "linear":
        return family, None
    try:
        return FAMILIES["linear"]().fit(stimuli, responses, dt), None
    except PrclabError as exc:
        return None, str(exc)


def _spiking_session(rec, family, heldout: list[int], recorded, floor_a, floor_b, dt: float) -> dict:
    """:func:`_spiking` of the twin's session runs (every trial in playing order, :func:`simulate_session`,
    one run per ``SESSION_SEEDS``), with ``onset``: ``spiking_metrics.onset_bursts`` of the recorded
    session (``recorded``) and of each twin run (``twin_runs``; ``twin`` their mean per bin), ``age_bins_s``
    and ``window_s``: whether the twin's bursts recover from the last one as the substrate's do."""
    from .spiking_metrics import ONSET_AGE_BINS_S, ONSET_WINDOW_S, onset_bursts, spike_counts

    played = sorted(rec.trials, key=lambda t: t.index)
    runs = simulate_session(family, played, [t.index for t in played], SESSION_SEEDS)
    place = {t.index: k for k, t in enumerate(played)}
    out = _spiking(recorded, [[run[place[i]] for i in heldout] for run in runs], floor_a, floor_b, dt)
    kept = [k for k, t in enumerate(played) if t.response is not None]   # a lost response: its trial left out
    stimuli = [np.asarray(played[k].stimulus, float) for k in kept]
    counted = onset_bursts(stimuli, spike_counts([np.asarray(played[k].response) for k in kept], dt), dt)
    each = [onset_bursts(stimuli, spike_counts([run[k] for k in kept], dt), dt)["probability"] for run in runs]
    mean = [None if any(p[k] is None for p in each) else float(np.mean([p[k] for p in each]))
            for k in range(len(ONSET_AGE_BINS_S) - 1)]
    out["onset"] = {"age_bins_s": list(ONSET_AGE_BINS_S), "window_s": ONSET_WINDOW_S,
                    "recorded": counted["probability"], "recorded_trials": counted["trials"], "twin": mean,
                    "twin_runs": each}
    return out


def _spiking(recorded, runs, floor_a, floor_b, dt: float) -> dict:
    """``spiking_metrics.spiking_comparison`` of the twin's noisy session runs (``runs``: one list of
    held-out answers per noise seed, :func:`simulate_session`; each a realisation against the recorded
    one, as the floor's two plays are; an event twin's noiseless run would give every trial the same
    stream; a culture's bursts and their depression outlast a trial's rest, so each trial is answered in
    the state the session's earlier stimuli left, as the substrate answered it) against the recording
    on spike counts (voltages through the spike detector): each figure the mean over the runs, with
    ``rate_corr_sem`` (the standard error of that mean, sample std / sqrt(runs)) and ``runs``; and of
    the floor's pair (``floor_rate_corr``, ``floor_psth_corr``: the substrate against itself, the
    correlation no twin can beat, and ``floor_rate_corr_sem``, its bootstrap standard error over the
    pairs, ``spiking_metrics.rate_corr_bootstrap_sem``); ``floor_rate_error``, ``floor_burst_rate_error``: how far two plays of
    the same stimuli differ in firing and burst rate, the sampling error a twin's rate errors are to be
    read against; None without a floor source)."""
    from .spiking_metrics import rate_corr_bootstrap_sem, spike_counts, spiking_comparison

    truth = spike_counts(recorded, dt)
    each = [spiking_comparison(truth, spike_counts(r, dt), dt) for r in runs]
    out = {key: float(np.mean([e[key] for e in each])) for key in each[0]}
    corr = [e["rate_corr"] for e in each]
    out |= {"runs": len(each), "rate_corr_sem": float(np.std(corr, ddof=1) / np.sqrt(len(corr))) if len(corr) > 1
            else None}
    floor, floor_sem = {}, None
    if floor_a is not None:
        a, b = spike_counts(floor_a, dt), spike_counts(floor_b, dt)
        floor, floor_sem = spiking_comparison(a, b, dt), rate_corr_bootstrap_sem(a, b, dt)
    return out | {f"floor_{key}": floor.get(key) for key in ("rate_corr", "psth_corr", "rate_error", "burst_rate_error")} \
        | {"floor_rate_corr_sem": floor_sem}


def _same_trials(rec_path, twin_path, by_index: dict, provenance: dict) -> None:
    """PrclabError unless ``rec_path`` holds every trial the twin was fitted or held out on, each with
    the checksum its provenance recorded."""
    from .data import _checksums

    wanted = [int(k) for k in provenance["trial_checksums"]]
    missing = sorted(set(wanted) - set(by_index))
    stored = _checksums(rec_path, [i for i in wanted if i in by_index])
    changed = [i for i, c in stored.items() if c != provenance["trial_checksums"][str(i)]]
    if missing or changed:
        raise PrclabError(f"twin check: recording {rec_path} is not the one twin {twin_path} was fitted on "
                          f"(trial(s) {(missing or changed)[:5]} {'missing' if missing else 'differ'})")


def _transfer(by_index, train, heldout, predicted, family, stim, attrs) -> dict | None:
    """:func:`~.transfer.transfer_scores` on the stimulus windows, or None without two labelled classes."""
    from .transfer import transfer_scores

    order = train + heldout
    labels = np.array([by_index[i].label for i in order])
    if len(np.unique(labels[:len(train)])) < 2:
        return None
    train_pred = simulate_trials(family, [stim[i] for i in train])
    twin_resp = dict(zip(train, train_pred)) | dict(zip(heldout, predicted))
    window = {i: slice(by_index[i].stim_start, by_index[i].stim_stop) for i in order}
    real = [np.asarray(by_index[i].response, float)[window[i]] for i in order]
    twin = [twin_resp[i][window[i]] for i in order]
    from prclab.readouts.features import FEATURE_CANDIDATES

    protocol_spec = (attrs.get("readout") or {}).get("features")
    n = len(train)
    return transfer_scores(real, twin, labels, np.arange(n), np.arange(n, len(order)),
                           candidates=((protocol_spec,) if protocol_spec else ()) + FEATURE_CANDIDATES)


#: training-set sizes of the error-vs-training-trials curve, as fractions of the training trials
CURVE_FRACTIONS = (0.1, 0.2, 0.35, 0.5, 0.75, 1.0)


def _training_curve(twin, train, heldout, stim, resp, dt, skip) -> dict:
    """Held-out pooled NRMSE of the twin's family refitted (as ``twin fit`` fits it) on the first
    ``f x len(train)`` training trials for each ``f`` of ``CURVE_FRACTIONS``."""
    sizes = sorted({max(2, int(round(f * len(train)))) for f in CURVE_FRACTIONS if f * len(train) >= 1})
    errors = []
    for n in sizes:
        refit = type(twin.family)().fit([stim[i] for i in train[:n]],
                                                           [resp[i] for i in train[:n]], dt)
        errors.append(nrmse([resp[i] for i in heldout], simulate_trials(refit, [stim[i] for i in heldout]),
                            skip)["pooled"])
    return {"n_train": sizes, "nrmse": errors}
