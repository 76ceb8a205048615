"""``prclab twin check TWIN.h5 REC.h5 [--plot DIR] [--json]``: validate a twin on its held-out trials
against the repeatability floor, the linear baseline and the untuned replay; readout transfer
(:mod:`.check`, :mod:`.transfer`)."""

from __future__ import annotations

import argparse
import json

HELP = "validate a twin on its recording's held-out trials (free-run NRMSE, references, readout transfer)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("twin", metavar="TWIN.h5", help="twin file (prclab twin fit)")
    parser.add_argument("recording", metavar="REC.h5", help="the recording it was fitted on")
    parser.add_argument("--plot", metavar="DIR", default=None, help="write traces, per-channel error and "
                        "error vs training trials PNGs into DIR")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def main(args: argparse.Namespace) -> None:
    from .check import check_twin

    result = check_twin(args.twin, args.recording, args.plot)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['metric']}; first {result['excluded_samples']} samples of each trial excluded; "
          f"{result['n_heldout']} held-out trials ({result['n_train']} train)")
    point = result["fits"] == "counts"   # a point process has no noiseless run
    for key, name in (("nrmse", f"twin ({result['family']}), " + ("one run (noise stream 0)" if point else
                                                                    "noiseless")),
                      ("noisy_nrmse", f"twin ({result['family']}) with its fitted noise"), ("floor_nrmse",
                      f"repeatability floor ({result['floor_source']})"), ("linear_nrmse", "linear baseline"),
                      ("replay_nrmse", "untuned replay")):
        value, floor_value = result[key], result["floor_nrmse"]
        ratio = f"  ({value / floor_value:.2f}x the floor)" if key in ("nrmse", "noisy_nrmse") and not point \
            and value is not None and floor_value else ""
        print(f"  {name:<55} {'n/a' if value is None else format(value, '.4g')}{ratio}")
    if result["transfer"]:
        t = result["transfer"]
        print(f"readout ({t['features']}): native {t['native_accuracy']:.3f}, transferred (twin -> substrate) "
              f"{t['transfer_accuracy']:.3f} (gap {t['transfer_gap']:+.3f}), reverse {t['reverse_accuracy']:.3f}, "
              f"distilled agreement {t['agreement']:.3f}")
    if result["spiking"]:
        s = result["spiking"]
        def floor(key, spec):
            return "n/a" if s[f"floor_{key}"] is None else format(s[f"floor_{key}"], spec)

        sem = "" if s["rate_corr_sem"] is None else f" ± {s['rate_corr_sem']:.3f}"
        floor_sem = "" if s.get("floor_rate_corr_sem") is None else \
            f" ± {s['floor_rate_corr_sem']:.3f} over its trial pairs"
        print(f"spiking ({s['bin_s'] * 1e3:g} ms bins; the twin's mean over {s['runs']} session runs): rate "
              f"correlation {s['rate_corr']:.3f}{sem} (floor "
              f"{floor('rate_corr', '.3f')}{floor_sem}), PSTH correlation {s['psth_corr']:.3f}, rate {s['model_rate_hz']:.3g} "
              f"vs {s['rate_hz']:.3g} Hz (error {s['rate_error']:.0%}; floor {floor('rate_error', '.0%')}), burst "
              f"rate {s['model_burst_rate_hz']:.3g} vs {s['burst_rate_hz']:.3g} /s (error "
              f"{s['burst_rate_error']:.0%}; floor {floor('burst_rate_error', '.0%')})")
        onset = s.get("onset")
        if onset:
            edges = onset["age_bins_s"]

            def cell(p):
                return "-" if p is None else f"{p:.2f}"

            print(f"burst within {onset['window_s'] * 1e3:g} ms of a trial's first stimulus, by the time since "
                  "the last burst (recorded / twin): " + ", ".join(
                      f"{lo:g}-{hi:g} s {cell(r)} / {cell(t)}" for lo, hi, r, t in
                      zip(edges[:-1], edges[1:], onset["recorded"], onset["twin"])))
    if result["drift"]:
        print(f"drift: {json.dumps(result['drift'])}")
    for path in result["plots"]:
        print(f"wrote {path}")
