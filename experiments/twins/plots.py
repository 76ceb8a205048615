"""``prclab twin check --plot DIR``: recorded vs twin traces, error per channel, error vs training trials."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: held-out trials drawn in the traces figure
N_TRACES = 3


def plot_check(result: dict, recorded: list[np.ndarray], predicted: list[np.ndarray], heldout: list[int],
               out_dir, curve: dict) -> list[str]:
    """Write ``traces.png`` (the best-fitted channel, recorded vs twin, for the first ``N_TRACES``
    held-out trials), ``channels.png`` (per-channel NRMSE of the twin and its references) and
    ``training.png`` (held-out NRMSE vs training trials, ``curve`` from ``check._training_curve``)
    into ``out_dir``; returns their paths."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend is left as it is

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    per = np.asarray(result["nrmse_per_channel"])
    best = int(np.argmin(np.where(np.isfinite(per), per, np.inf)))
    skip = result["excluded_samples"]
    fig = Figure(figsize=(8, 2.4 * min(N_TRACES, len(heldout))), dpi=110)
    for ax, rec, pred, index in zip(np.atleast_1d(fig.subplots(min(N_TRACES, len(heldout)), 1)),
                                    recorded, predicted, heldout):
        ax.plot(rec[:, best], label="recorded")
        ax.plot(pred[:, best], label=f"twin ({result['family']})", alpha=0.8)
        ax.axvspan(0, skip, color="0.9", label="excluded")
        ax.set_ylabel(f"trial {index}")
        ax.legend(loc="upper right", fontsize=7)
    fig.axes[0].set_title(f"held-out trials, channel {best} (free run from rest)")
    fig.axes[-1].set_xlabel("sample")
    fig.tight_layout()
    paths = [out / "traces.png", out / "channels.png", out / "training.png"]
    fig.savefig(paths[0])

    fig = Figure(figsize=(8, 3.5), dpi=110)
    ax = fig.subplots()
    channels = np.arange(len(per))
    for prefix, name in (("", "twin"), ("noisy_", "twin + noise"), ("floor_", "floor"), ("linear_", "linear"), ("replay_", "replay")):
        values = result.get(f"{prefix}nrmse_per_channel")
        if values is not None:
            ax.plot(channels, values, "o-", ms=3, label=f"{name} (pooled {result[f'{prefix}nrmse']:.3g})")
    ax.set_xlabel("response channel")
    ax.set_ylabel("NRMSE (RMSE/std)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(paths[1])

    fig = Figure(figsize=(5, 3.5), dpi=110)
    ax = fig.subplots()
    ax.plot(curve["n_train"], curve["nrmse"], "o-", label=result["family"])
    if result.get("floor_nrmse") is not None:
        ax.axhline(result["floor_nrmse"], color="k", ls="--", label="repeatability floor")
    ax.set_xlabel("training trials")
    ax.set_ylabel("held-out NRMSE (RMSE/std)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(paths[2])
    return [str(p) for p in paths]
