"""Module by module: a twin fitted per electrode group, then its modules replaced one at a time.

Each module ``m`` owns a group of response channels (electrodes).  It is a twin family (``FAMILIES``) fitted
on the training trials with inputs ``[u(t), y_others(t-1)]``: the stimulus and the other modules' RECORDED
outputs one sample earlier (teacher forcing; the one-sample delay makes the coupled run causal; at the
first sample the recorded first sample stands in).  On the held-out trials, stage ``k`` replaces modules
``0 .. k-1`` by their models: a replaced module emits its model's output and is fed what the others emit
(models for replaced modules, the recording for the rest); stage 0 is the recording itself, the last stage
the whole modular twin running free.  Per stage: the global free-run NRMSE (RMSE / std per channel over
the held-out trials, root mean square over all channels, :func:`...twins.linear.free_run_nrmse`) and the
functional-connectivity distance: the RMS over channel pairs of the difference between the recorded and the
emitted channel-correlation matrices (Pearson over time within a trial, averaged over trials).  Each module
alone (only it replaced, fed by the recording) gives its teacher-forced NRMSE; a single twin of all
channels (the same family, no modules) is the reference row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prclab.errors import PrclabError
from prclab.reservoir.twins import FAMILIES
from prclab.reservoir.twins.base import padded
from prclab.reservoir.twins.linear import free_run_nrmse

from .data import FitData, load_fit_data


def parse_groups(spec: str | None, n_modules: int | None, n_out: int) -> list[list[int]]:
    """Electrode groups (response channel indices): ``spec`` one group per comma-separated item, each
    indices or ranges joined by ``+`` (``"0-3+8,4-7"``), else ``n_modules`` (default 4) contiguous groups
    of near-equal size.  Every channel in exactly one group, at least two groups; ``PrclabError`` else."""
    if spec:
        groups = []
        for item in spec.split(","):
            group = []
            for part in item.split("+"):
                try:
                    lo, _, hi = part.strip().partition("-")
                    group += list(range(int(lo), int(hi or lo) + 1))
                except ValueError:
                    raise PrclabError(f"--groups {spec!r}: {part!r} is not an index or a range a-b") from None
            groups.append(group)
    else:
        n = min(n_out, n_modules or 4)
        groups = [list(g) for g in np.array_split(np.arange(n_out), n)]
    flat = sorted(c for g in groups for c in g)
    if flat != list(range(n_out)) or len(groups) < 2:
        raise PrclabError(f"module groups {groups}: need at least 2 groups covering channels 0..{n_out - 1} "
                          "once each")
    return groups


def _delayed_others(y: np.ndarray, group: list[int]) -> np.ndarray:
    """The channels of ``y`` ``(..., T, n_out)`` outside ``group``, one sample late (first sample repeated)."""
    others = np.delete(y, group, axis=-1)
    return np.concatenate([others[..., :1, :], others[..., :-1, :]], axis=-2)


def fc_matrix(y: np.ndarray) -> np.ndarray:
    """Channel correlation matrix ``(n, n)`` of one trial ``y`` ``(T, n)`` (a constant channel: 0)."""
    z = y - y.mean(0)
    s = np.sqrt((z ** 2).sum(0))
    s = np.where(s > 0, s, np.inf)
    return (z.T @ z) / np.outer(s, s)


def fc_distance(pred: list[np.ndarray], rec: list[np.ndarray]) -> float:
    """RMS over channel pairs (off the diagonal) of mean FC(pred) - mean FC(rec) over the trials."""
    d = np.mean([fc_matrix(p) for p in pred], axis=0) - np.mean([fc_matrix(r) for r in rec], axis=0)
    off = ~np.eye(len(d), dtype=bool)
    return float(np.sqrt(np.mean(d[off] ** 2)))


@dataclass
class ModuleReport:
    """Rows of the stages (see the module docstring) and the per-module teacher-forced errors."""

    family: str
    groups: list[list[int]]
    stages: list[dict] = field(default_factory=list)      # k, replaced, nrmse, fc_distance
    alone: list[float] = field(default_factory=list)      # per module: NRMSE of its channels, fed the recording
    whole: dict = field(default_factory=dict)             # one twin of all channels: nrmse, fc_distance

    def as_dict(self) -> dict:
        return {"family": self.family, "groups": self.groups, "stages": self.stages,
                "module_teacher_forced_nrmse": self.alone, "whole_twin": self.whole}


def run_replaced(models: list, groups: list[list[int]], u: np.ndarray, y_rec: np.ndarray,
                 replaced: list[int]) -> np.ndarray:
    """Emitted outputs ``(batch, T, n_out)`` with modules ``replaced`` running their models on stimulus ``u``
    ``(batch, T, n_in)``, the other channels the recording ``y_rec`` ``(batch, T, n_out)``."""
    emitted = y_rec.copy()
    if len(replaced) == 1:      # fed by the recording only: one vectorised run
        m = replaced[0]
        emitted[..., groups[m]] = models[m].simulate(np.concatenate([u, _delayed_others(y_rec, groups[m])], -1))
        return emitted
    states = {m: models[m].initial_state(len(u)) for m in replaced}
    for t in range(u.shape[1]):
        prev = emitted[:, max(t - 1, 0)]
        for m in replaced:
            x = np.concatenate([u[:, t], np.delete(prev, groups[m], axis=-1)], axis=-1)[:, None]
            out, states[m] = models[m].step_block(states[m], x)
            emitted[:, t, groups[m]] = out[:, 0]
    return emitted


def module_by_module(data: FitData, groups: list[list[int]], family: str = "linear",
                     whole: bool = True) -> ModuleReport:
    """Fit one ``family`` twin per group on ``data``'s training trials and replace them one at a time on its
    held-out trials (module docstring)."""
    if family not in FAMILIES:
        raise PrclabError(f"twin modules: unknown model {family!r}; known: {', '.join(FAMILIES)}")
    models = []
    for g in groups:
        aug = [np.concatenate([u, _delayed_others(y, g)], axis=1)
               for u, y in zip(data.train_stimuli, data.train_responses)]
        models.append(FAMILIES[family]().fit(aug, [y[:, g] for y in data.train_responses], data.dt))
    lengths = [len(u) for u in data.heldout_stimuli]
    u, y_rec = padded(data.heldout_stimuli), padded(data.heldout_responses)
    rec = data.heldout_responses

    def trials(batch: np.ndarray) -> list[np.ndarray]:
        return [b[:n] for b, n in zip(batch, lengths)]

    report = ModuleReport(family, groups)
    for m, g in enumerate(groups):
        alone = trials(run_replaced(models, groups, u, y_rec, [m]))
        report.alone.append(free_run_nrmse([a[:, g] for a in alone], [r[:, g] for r in rec]))
    for k in range(len(groups) + 1):
        emitted = trials(run_replaced(models, groups, u, y_rec, list(range(k))) if k else y_rec)
        report.stages.append({"k": k, "replaced": k - 1 if k else None,
                              "nrmse": free_run_nrmse(emitted, rec), "fc_distance": fc_distance(emitted, rec)})
    if whole:
        twin = FAMILIES[family]().fit(data.train_stimuli, data.train_responses, data.dt)
        pred = trials(twin.simulate(u))
        report.whole = {"nrmse": free_run_nrmse(pred, rec), "fc_distance": fc_distance(pred, rec)}
    return report


def source_of(path: str | Path) -> tuple[str, str | None]:
    """``(recording path, family or None)``: a twin file's source recording and family, or a recording as it is."""
    import h5py

    from prclab.reservoir.twins.file import read_twin

    try:
        with h5py.File(path, "r") as f:
            is_twin = "family" in f and "trials" not in f
    except OSError:
        raise PrclabError(f"twin modules: {path}: not an HDF5 recording or twin file") from None
    if not is_twin:
        return str(path), None
    prov = read_twin(path).provenance
    return prov["source_recording"], prov["family"]


def plot_report(report: ModuleReport, png: str | Path) -> None:
    """Global NRMSE and FC distance against the number of modules replaced, the whole twin dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = [s["k"] for s in report.stages]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key, label in ((axes[0], "nrmse", "global free-run NRMSE (RMSE/std)"),
                           (axes[1], "fc_distance", "FC distance (RMS of corr. difference)")):
        ax.plot(k, [s[key] for s in report.stages], "o-", label=f"modules replaced ({report.family})")
        if report.whole:
            ax.axhline(report.whole[key], ls="--", color="k", label="one twin of all channels")
        ax.set_xlabel("modules replaced by their models")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def load(path: str | Path, model: str | None, heldout: float) -> tuple[FitData, str]:
    """The fit data and family for ``twin modules PATH``: a twin names both, a recording takes ``model``."""
    rec, fam = source_of(path)
    return load_fit_data(rec, heldout), (model or fam or "linear")
