"""Reports: PNG figures and a short Markdown summary of a recording or of a result JSON.

``write_report(source, out)`` is what ``prclab report`` runs.  From a recording (prclab's ``.h5``, NWB, a
mapping file or a brainflow file: what ``prclab train`` reads) it trains the readout
(``experiments.recorded.train_on_recording``) and draws the test confusion matrix, the stimulus and
response of a few trials as heat maps (the response alone for a recording without stimulus channels),
and test accuracy against the ridge parameter.  From a result
JSON (``prclab task|train|characterize --json``) it draws whatever the result holds: confusion matrix,
accuracy against the ridge parameter, scores per seed, a regression's test prediction, a memory-capacity
curve, an impedance spectrum (Nyquist and Bode), I-V loop area over sweep period.  ``summary.md`` lists
the numbers (with a characterisation's network-burst statistics) and links the figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from prclab.errors import PrclabError
from prclab.protocols.foreign import RECORDING_SUFFIXES

#: trials drawn in the response heat map
HEATMAP_TRIALS = 4


def response_unit(attrs: dict) -> str:
    """The unit all response channels share, from a recording's device description ("" if they differ
    or the description is missing or malformed)."""
    device = attrs.get("device")
    channels = device.get("response") if isinstance(device, dict) else None
    if not isinstance(channels, list):
        return ""
    units = {c.get("unit") for c in channels if isinstance(c, dict)}
    return units.pop() if len(units) == 1 and isinstance(next(iter(units)), str) else ""


def plot_trials(trials, path, n: int = HEATMAP_TRIALS, unit: str = "") -> None:
    """Stimulus (top) and response (bottom) heat maps, channels over time, of the first trial of each of
    up to ``n`` labels (``protocols.recording.Trial`` list); ``unit`` labels the response scale.  Trials
    without stimulus channels (a record-only recording): the response alone."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend is left as it is
    from matplotlib.ticker import MaxNLocator

    chosen, seen = [], set()
    for t in trials:
        if t.label not in seen:
            chosen.append(t)
            seen.add(t.label)
        if len(chosen) == n:
            break
    responses = np.concatenate([t.response for t in chosen])
    lo, hi = np.percentile(responses, [1, 99])
    stimulated = all(t.stimulus.shape[1] > 0 for t in chosen)
    rows = 2 if stimulated else 1
    fig = Figure(figsize=(3.2 * len(chosen) + 1.2, 5.2 if stimulated else 3.8), dpi=120)
    axes = fig.subplots(rows, len(chosen), squeeze=False,
                        gridspec_kw={"height_ratios": [1, 2.2] if stimulated else [1]})
    if stimulated:
        stim_lim = max(float(np.abs(np.concatenate([t.stimulus for t in chosen])).max()), 1e-12)
    for col, t in enumerate(chosen):
        seconds = t.timestamps - t.timestamps[0]
        extent = [0.0, float(seconds[-1]) if len(seconds) > 1 else 1.0]
        if stimulated:
            im_s = axes[0, col].imshow(t.stimulus.T, aspect="auto", cmap="RdBu_r", vmin=-stim_lim,
                                       vmax=stim_lim, extent=extent + [t.stimulus.shape[1] - 0.5, -0.5],
                                       interpolation="nearest")
        im_r = axes[-1, col].imshow(t.response.T, aspect="auto", cmap="viridis", vmin=lo, vmax=hi,
                                    extent=extent + [t.response.shape[1] - 0.5, -0.5], interpolation="nearest")
        for ax in axes[:, col]:
            for edge in (t.stim_start, t.stim_stop - 1):
                ax.axvline(seconds[min(edge, len(seconds) - 1)], color="white", lw=0.8, ls="--")
        axes[0, col].set_title(f"trial {t.index}: label {t.label}", fontsize=10)
        for ax in axes[:, col]:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
        axes[-1, col].set_xlabel("time in trial (s)")
    if stimulated:
        axes[0, 0].set_ylabel("stimulus\nelectrode")
        fig.colorbar(im_s, ax=axes[0, :].tolist(), label="stimulus (V)", fraction=0.03, pad=0.02)
    axes[-1, 0].set_ylabel("response channel")
    fig.colorbar(im_r, ax=axes[-1, :].tolist(), label=f"response ({unit})" if unit else "response",
                 fraction=0.03, pad=0.02)
    fig.suptitle("stimulus and response per trial (dashed: stimulus window)" if stimulated else
                 "response per trial (no stimulus channel recorded; dashed: the trial's window)", fontsize=11)
    fig.savefig(path, bbox_inches="tight")


def plot_alpha_curve(curve: dict, path, chosen: float | None = None) -> None:
    """Test accuracy of reservoir and baseline readouts against the ridge parameter (per training trial)."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend is left as it is

    fig = Figure(figsize=(6, 3.8), dpi=120)
    ax = fig.subplots()
    ax.semilogx(curve["alphas"], curve["accuracy"], marker="o", label="reservoir")
    if "baseline" in curve:
        ax.semilogx(curve["alphas"], curve["baseline"], marker="s", ls="--", color="grey",
                    label="baseline (no reservoir)")
    if chosen is not None:
        ax.axvline(chosen, color="C3", lw=1, ls=":", label=f"chosen by leave-one-out ({chosen:g})")
    ax.set_xlabel("ridge parameter per training trial")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def plot_seeds(result: dict, metric: str, path) -> None:
    """Reservoir and baseline score of every seed, with the mean ± std band."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend is left as it is

    seeds = result["seeds"]
    fig = Figure(figsize=(6, 3.6), dpi=120)
    ax = fig.subplots()
    for key, label, colour, marker in ((f"{metric}_per_seed", "reservoir", "C0", "o"),
                                       ("baseline_per_seed", "baseline", "grey", "s"),
                                       ("quadratic_baseline_per_seed", "quadratic baseline", "C1", "^")):
        if key not in result:
            continue
        values = np.asarray(result[key])
        ax.plot(seeds, values, marker=marker, ls="none", color=colour,
                label=f"{label}: {values.mean():.3f} ± {values.std():.3f}")
        ax.axhspan(values.mean() - values.std(), values.mean() + values.std(), color=colour, alpha=0.15)
    ax.set_xticks(seeds)
    ax.set_xlabel("seed")
    ax.set_ylabel(f"test {metric}" if metric == "accuracy" else "test NRMSE")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def plot_prediction(result: dict, path) -> None:
    """Target and readout prediction over the first test steps of a regression result."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend is left as it is

    target, pred = np.asarray(result["test_target"]), np.asarray(result["test_prediction"])
    fig = Figure(figsize=(7, 3.4), dpi=120)
    ax = fig.subplots()
    ax.plot(target, color="black", lw=1.2, label="target")
    ax.plot(pred, color="C1", lw=1, label=f"readout (NRMSE {result['nrmse']:.3f})")
    ax.set_xlabel("test step")
    ax.set_ylabel(result["task"])
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)


def plot_loop_areas(loops: dict, path) -> None:
    """I-V loop area (uA V) over sweep period (s, log axis) of a characterisation's ``iv_loops`` entry."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend is left as it is

    fig = Figure(figsize=(5, 3.6), dpi=120)
    ax = fig.subplots()
    ax.semilogx(loops["periods_s"], 1e6 * np.asarray(loops["areas_VA"], dtype=float), marker="o")
    ax.set_xlabel("sweep period (s)")
    ax.set_ylabel("loop area (uA V)")
    ax.set_title(f"I-V loop area, {loops.get('amplitude_V', '?')} V triangle")
    fig.tight_layout()
    fig.savefig(path)


def _spectrum(impedance: dict) -> dict:
    """An ``experiments.impedance`` spectrum (complex ``z``) from a result's ``impedance`` entry."""
    freq = np.asarray(impedance["freq_hz"], dtype=float)
    mag = np.asarray(impedance["magnitude_ohm"], dtype=float)
    phase = np.asarray(impedance["phase_deg"], dtype=float)
    return {"freq_hz": freq, "magnitude_ohm": mag, "phase_deg": phase, "z": mag * np.exp(1j * np.radians(phase))}


def _recording_figures(path: Path, out: Path) -> tuple[dict, list[tuple[str, str]]]:
    from prclab.protocols.recording import read_recording

    from prclab.readouts.features import trial_features
    from .recorded import plot_confusion, train_on_recording
    from prclab.readouts.ridge import RidgeClassifier

    result = train_on_recording(path)
    rec = read_recording(path, verify=False)  # train_on_recording just checked every trial
    figures = []
    plot_confusion(result, out / "confusion.png")
    figures.append(("confusion.png", "test confusion matrix"))
    plot_trials(rec.trials, out / "trials.png", unit=response_unit(rec.attrs))
    figures.append(("trials.png", "stimulus and response of one trial per label"))
    with rec:  # the file held open while every trial's window is read
        windows = [t.stimulus_window for t in rec.trials]
    labels = np.array([t.label for t in rec.trials])
    split = np.array([t.split for t in rec.trials])
    train, test = split == "train", split == "test"
    curve = {}
    sides = [("accuracy", [r for _, r in windows], result["features"])]
    if "baseline_features" in result:  # absent without stimulus channels
        sides.append(("baseline", [s for s, _ in windows], result["baseline_features"]))
    for key, arrays, spec in sides:
        x = trial_features(arrays, spec, train=np.flatnonzero(train))  # top:/win: set on training trials
        clf = RidgeClassifier().fit(x[train], labels[train])
        curve["alphas"] = list(clf.alphas)
        curve[key] = clf.score_path(x[test], labels[test], clf.alphas).tolist()
        if key == "accuracy":
            result["alpha"] = float(clf.alpha_)
    result["alpha_curve"] = curve
    plot_alpha_curve(curve, out / "ridge_parameter.png", result["alpha"])
    figures.append(("ridge_parameter.png", "test accuracy against the ridge parameter"))
    result["source_kind"] = f"recording of {len(rec.trials)} trials"
    return result, figures


def _result_figures(result: dict, out: Path) -> list[tuple[str, str]]:
    from .characterize import plot_memory_curve
    from .impedance import bode_figure, nyquist_figure
    from .recorded import plot_confusion

    figures = []
    if {"labels", "predictions", "classes", "accuracy"} <= set(result):
        plot_confusion(result, out / "confusion.png")
        seed = f" (seed {result['seed']})" if "seed" in result else ""
        figures.append(("confusion.png", f"test confusion matrix{seed}"))
    if "alpha_curve" in result:
        plot_alpha_curve(result["alpha_curve"], out / "ridge_parameter.png", result.get("alpha"))
        figures.append(("ridge_parameter.png", "test accuracy against the ridge parameter"))
    if "seeds" in result:
        metric = "nrmse" if "nrmse" in result else "accuracy"
        plot_seeds(result, metric, out / "seeds.png")
        figures.append(("seeds.png", "score per seed, reservoir and baseline"))
    if "test_prediction" in result:
        plot_prediction(result, out / "prediction.png")
        figures.append(("prediction.png", "regression target and prediction on test steps"))
    if "memory_curve" in result:
        plot_memory_curve(result, out / "memory_curve.png", title=str(result.get("substrate", {}).get("model", "")))
        figures.append(("memory_curve.png", "memory-capacity curve"))
    if "impedance" in result:
        spectrum = _spectrum(result["impedance"])
        nyquist_figure(spectrum).savefig(out / "nyquist.png")
        bode_figure(spectrum).savefig(out / "bode.png")
        figures += [("nyquist.png", "impedance spectrum, Nyquist plot"),
                    ("bode.png", "impedance spectrum, Bode plot")]
    if "iv_loops" in result:
        plot_loop_areas(result["iv_loops"], out / "loop_areas.png")
        figures.append(("loop_areas.png", "I-V loop area over sweep period"))
    return figures


def _summary_lines(result: dict) -> list[str]:
    rows = []

    def row(name, key, fmt="{:.3f}"):
        if key in result and isinstance(result[key], (int, float)):
            rows.append(f"| {name} | {fmt.format(result[key])} |")

    if "seeds" in result:
        metric, f = ("nrmse", "{:.3g}") if "nrmse" in result else ("accuracy", "{:.3f}")
        rows.append(f"| test {metric} (mean ± std over {len(result['seeds'])} seeds) | "
                    f"{f.format(result[metric + '_mean'])} ± {f.format(result[metric + '_std'])} |")
        for name in ("baseline", "quadratic_baseline"):
            if f"{name}_mean" in result:
                rows.append(f"| {name.replace('_', ' ')} (mean ± std) | {f.format(result[name + '_mean'])} ± "
                            f"{f.format(result[name + '_std'])} |")
    else:
        row("test accuracy", "accuracy")
        row("baseline accuracy (no reservoir)", "baseline_accuracy")
        row("quadratic baseline accuracy (stimulus and its square)", "quadratic_baseline_accuracy")
        row("test NRMSE", "nrmse", "{:.3g}")
        row("baseline NRMSE (no reservoir)", "baseline_nrmse", "{:.3g}")
    for name, key in (("features", "features"), ("baseline features", "baseline_features"),
                      ("quadratic baseline features", "quadratic_baseline_features")):
        if isinstance(result.get(key), str):
            specs = result.get(f"{key}_per_seed", [result[key]])
            rows.append(f"| {name}{' (per seed)' if len(specs) > 1 else ''} | `{', '.join(specs)}` |")
    row("chance", "chance")
    row("ridge parameter (per training trial" + (f", seed {result['seeds'][0]})" if "seeds" in result else ")"),
        "alpha", "{:g}")
    row("training items", "n_train", "{:d}")
    row("test items", "n_test", "{:d}")
    row("memory capacity", "memory_capacity", "{:.2f}")
    row("total capacity", "total_capacity", "{:.2f}")
    row("kernel rank", "kernel_rank", "{:d}")
    row("generalization rank", "generalization_rank", "{:d}")
    row("consistency", "consistency")
    rows += _measurement_rows(result)
    if isinstance(result.get("part_seconds"), dict) and "seconds" in result:
        parts = ", ".join(f"{k} {v:.1f}" for k, v in result["part_seconds"].items() if isinstance(v, (int, float)))
        rows.append(f"| seconds (characterisation) | {result['seconds']:.1f} ({parts}) |")
    if not rows:
        return []
    return ["| quantity | value |", "|---|---|", *rows]


def _measurement_rows(result: dict) -> list[str]:
    """Table rows of a characterisation's impedance, I-V loops and network bursts (where present)."""
    rows = []
    if "impedance" in result:
        z = _spectrum(result["impedance"])
        low = int(np.argmin(z["phase_deg"]))
        rows += [f"| impedance at {z['freq_hz'][0]:.3g} / {z['freq_hz'][-1]:.3g} Hz | "
                 f"{z['magnitude_ohm'][0]:.4g} / {z['magnitude_ohm'][-1]:.4g} ohm |",
                 f"| impedance phase minimum | {z['phase_deg'][low]:.1f} deg at {z['freq_hz'][low]:.3g} Hz |"]
    if "iv_loops" in result:
        periods, areas = result["iv_loops"]["periods_s"], result["iv_loops"]["areas_VA"]
        top = int(np.argmax(areas))
        rows.append(f"| largest I-V loop area | {1e6 * areas[top]:.3g} uA V at a {periods[top]:g} s period |")
    bursts = result.get("bursts")
    if isinstance(bursts, dict):
        def burst_row(name, key, fmt):
            value = bursts.get(key)
            rows.append(f"| {name} | {'n/a' if value is None else fmt.format(value)} |")

        burst_row("network bursts (spontaneous)", "n_bursts", "{:d}")
        burst_row("burst rate (/s)", "burst_rate_hz", "{:.3f}")
        burst_row("inter-burst-interval CV", "ibi_cv", "{:.2f}")
        burst_row("recruitment (mean)", "recruitment_mean", "{:.0%}")
        burst_row("burst duration (mean, s)", "burst_duration_mean_s", "{:.3f}")
        burst_row("spikes in bursts", "fraction_spikes_in_bursts", "{:.0%}")
        burst_row(f"spontaneous rate per {bursts.get('unit', 'unit')} (Hz)", "rate_per_unit_hz", "{:.2f}")
    return rows


def write_report(source, out) -> Path:
    """Write figures and ``summary.md`` for ``source`` (a recording in any format ``prclab train`` reads,
    :data:`~prclab.protocols.foreign.RECORDING_SUFFIXES`, or a result ``.json``) into folder ``out``
    (created); returns the path of ``summary.md``."""
    source, out = Path(source), Path(out)
    if not source.is_file():
        raise PrclabError(f"report: {source} is not a file")
    from .loop_report import is_loop_recording, write_loop_report
    if is_loop_recording(source):  # a closed loop's recording (prclab loop): its own figures
        return write_loop_report(source, out)
    out.mkdir(parents=True, exist_ok=True)
    if source.suffix.lower() == ".json":
        try:
            result = json.loads(source.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PrclabError(f"report: {source} is not a JSON result ({exc})") from None
        if not isinstance(result, dict):
            raise PrclabError(f"report: {source} holds no result object")
        figures = _result_figures(result, out)
        kind = "result"
    elif source.suffix.lower() in RECORDING_SUFFIXES:
        result, figures = _recording_figures(source, out)
        kind = result["source_kind"]
    else:
        raise PrclabError(f"report: {source}: expected a recording ({', '.join(RECORDING_SUFFIXES)}) or a "
                          f"result (.json)")
    lines = [f"# prclab report: {source.name}", "", f"Source: `{source}` ({kind})."]
    for key in ("dataset", "task", "split", "held_out"):  # the features of every side: in the table
        if key in result:
            value = result.get(f"{key}_per_seed", result[key])
            value = ", ".join(value) if isinstance(value, list) else value
            lines.append(f"{key.replace('_', ' ').capitalize()}: `{value}`.")
    if isinstance(result.get("substrate"), str):
        lines.append(f"Substrate: `{result['substrate']}`.")
    table = _summary_lines(result)
    lines += ["", *table] if table else []
    for problem in result.get("problems", []):
        lines.append(f"\nWarning: {problem}")
    if not figures and not table:
        raise PrclabError(f"report: {source} holds no result prclab can draw or summarise")
    for name, caption in figures:
        lines += ["", f"## {caption[0].upper() + caption[1:]}", "", f"![{caption}]({name})"]
    summary = out / "summary.md"
    summary.write_text("\n".join(lines) + "\n")
    return summary
