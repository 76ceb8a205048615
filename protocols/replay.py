"""Replay in simulation: re-drive a simulated substrate with a recording's stimuli, and compare responses.

``replay_recording`` plays every intact trial's recorded stimulus, in index order and in the protocol's
blocks, into a simulated substrate (a :class:`drivers.SimDevice`, seeded with the protocol's seed) and
writes a new recording in the same format, so ``prclab train`` works on it as on the original.  The
recorded stimulus already passed the safety layer when it was recorded and a simulation cannot be hurt,
so it is played as it is.  ``compare_recordings`` sets two recordings' responses side by side, trial by
trial, per channel: NRMSE (RMS difference over the first recording's standard deviation) and Pearson
correlation; ``plot_comparison`` draws them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prclab.drivers import SimDevice
from prclab.drivers.spec import DeviceRequest
from prclab.errors import PrclabError

from .protocol import parse_protocol
from .recording import RecordingWriter, read_recording
from .recording_storage import storage_for
from .runner import run_trials


def replay_recording(path: str | Path, substrate: str, out: str | Path, params: dict | None = None) -> dict:
    """Drive simulated ``substrate`` with the stimuli recorded in ``path``; write recording ``out``.

    Args:
        params: model parameters; default: those of the recorded model when ``substrate`` is the one
            recorded (its stored description, either ``describe()`` shape), else the protocol's
            ``[substrate] params`` when it is the protocol's substrate, else the model's defaults with
            as many recording electrodes as the recording has response channels (where the model takes
            ``n_outputs``).
    Returns:
        dict with ``out``, ``n_trials`` replayed and ``problems`` (damaged trials left out).
    """
    if Path(out).resolve() == Path(path).resolve():
        raise PrclabError(f"replay: --out {out} is the recording being replayed")
    rec = read_recording(path)
    if not rec.trials:
        raise PrclabError(f"recording {path}: holds no intact trials to replay")
    if not rec.attrs.get("protocol_text"):
        raise PrclabError(f"recording {path}: holds no protocol (made elsewhere?): replay re-drives a "
                          "simulation with the protocol a recording ran; train, report and twin fit "
                          "read such a file as it is")
    protocol = parse_protocol(str(rec.attrs["protocol_text"]), Path(path))
    n_stim, n_resp = rec.trials[0].stimulus.shape[1], rec.trials[0].response.shape[1]
    if params is None:
        params = _default_params(rec.attrs.get("substrate") or {}, substrate, protocol, n_resp, path)
    s = protocol["stimulus"]
    request = DeviceRequest(n_stimulus=n_stim, rate_hz=protocol.rate_hz,
                            stimulus_range_V=(s["low_V"], s["high_V"]), substrate=substrate,
                            substrate_params=params, seed=protocol["protocol"]["seed"])
    model = request.build_substrate()
    device = SimDevice(model, protocol.rate_hz, stimulus_range_V=request.stimulus_range_V,
                       seed=request.seed)
    keep = ("protocol_text", "rate_hz", "encoder", "readout", "dataset", "n_trials_planned")
    metadata = {k: rec.attrs[k] for k in keep if k in rec.attrs}
    metadata.update({"device": device.describe(), "substrate": model.describe(),
                     "replayed_from": str(path)})
    storage = storage_for(protocol["recording"], device)  # stored as a run on this device would be
    with rec, RecordingWriter(out, metadata, storage=storage) as writer, device:  # recorded trials play as planned ones
        run_trials(rec.trials, device, writer, protocol["protocol"]["block_samples"], substrate=model)
    return {"out": str(out), "n_trials": len(rec.trials), "problems": rec.problems}


def _default_params(recorded: dict, substrate: str, protocol, n_resp: int, path) -> dict:
    """``replay_recording``'s default model parameters (``n_inputs`` aside), see there."""
    from prclab.reservoir import described_params, substrate_defaults

    if isinstance(recorded, dict) and recorded.get("model") == substrate:
        _, params = described_params(recorded, f"recording {path}: substrate")
        return {k: v for k, v in params.items() if k != "n_inputs"}
    if substrate == protocol["substrate"]["name"]:
        return dict(protocol["substrate"]["params"])
    return {"n_outputs": n_resp} if "n_outputs" in substrate_defaults(substrate) else {}


def compare_recordings(recorded: str | Path, simulated: str | Path) -> dict:
    """Per-channel NRMSE and correlation of ``simulated``'s responses against ``recorded``'s.

    Trials are matched by index; channels by position, over the channels both have.
    Returns:
        dict with ``nrmse`` and ``correlation`` (lists, one per compared channel), their means
        ``mean_nrmse`` and ``mean_correlation``, ``n_trials``, ``n_channels``, and for plotting
        ``example`` (recorded and simulated response of the first common trial, as lists).
    """
    a, b = read_recording(recorded), read_recording(simulated)
    ta, tb = {t.index: t for t in a.trials}, {t.index: t for t in b.trials}
    common = sorted(set(ta) & set(tb))
    if not common:
        raise PrclabError(f"recordings {recorded} and {simulated} have no intact trial in common")
    c = min(ta[common[0]].response.shape[1], tb[common[0]].response.shape[1])
    ya = np.concatenate([ta[i].response[:, :c] for i in common])
    yb = np.concatenate([tb[i].response[:, :c] for i in common])
    if ya.shape != yb.shape:
        raise PrclabError(f"recordings {recorded} and {simulated}: trials differ in length")
    err = np.sqrt(np.mean((yb - ya) ** 2, axis=0))
    std_a, std_b = ya.std(axis=0), yb.std(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        nrmse = np.where(std_a > 0, err / std_a, np.where(err == 0, 0.0, np.inf))
        cov = ((ya - ya.mean(axis=0)) * (yb - yb.mean(axis=0))).mean(axis=0)
        corr = np.where((std_a > 0) & (std_b > 0), cov / (std_a * std_b), np.nan)
    first = common[0]
    return {"recorded": str(recorded), "simulated": str(simulated), "n_trials": len(common),
            "n_channels": c, "nrmse": nrmse.tolist(), "correlation": corr.tolist(),
            "mean_nrmse": float(np.mean(nrmse)), "mean_correlation": float(np.nanmean(corr))
            if np.isfinite(corr).any() else float("nan"),
            "example": {"trial": first, "recorded": ta[first].response[:, :c].tolist(),
                        "simulated": tb[first].response[:, :c].tolist()}}


def plot_comparison(result: dict, path: str | Path) -> None:
    """PNG: per-channel NRMSE and correlation bars, and the first common trial of the best-correlated
    channel, recorded against simulated."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend is left as it is

    nrmse, corr = np.asarray(result["nrmse"]), np.asarray(result["correlation"], dtype=float)
    ch = np.arange(len(nrmse))
    fig = Figure(figsize=(8, 7.5), dpi=110)
    ax = fig.subplots(3, 1)
    ax[0].bar(ch, np.where(np.isfinite(nrmse), nrmse, 0))
    ax[0].set_ylabel("NRMSE")
    ax[0].set_title(f"simulated vs recorded over {result['n_trials']} trials: mean NRMSE "
                    f"{result['mean_nrmse']:.3g}, mean correlation {result['mean_correlation']:.3g}")
    ax[1].bar(ch, np.nan_to_num(corr))
    ax[1].set_ylabel("correlation")
    ax[1].set_xlabel("response channel")
    ax[1].set_ylim(-1, 1)
    if len(ch) <= 32:
        for axis in ax[:2]:
            axis.set_xticks(ch)
    best = int(np.nanargmax(corr)) if np.isfinite(corr).any() else 0
    ex = result["example"]
    ax[2].plot(np.asarray(ex["recorded"])[:, best], label="recorded")
    ax[2].plot(np.asarray(ex["simulated"])[:, best], label="simulated", alpha=0.8)
    ax[2].set_xlabel(f"sample (trial {ex['trial']}, channel {best})")
    ax[2].set_ylabel("response")
    ax[2].legend()
    fig.tight_layout()
    fig.savefig(path)
