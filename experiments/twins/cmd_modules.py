"""``prclab twin modules TWIN_or_REC.h5 [--modules N | --groups SPEC] [--model M] [--plot PNG] [--json]``
(:mod:`.modules`)."""

from __future__ import annotations

import argparse
import json

HELP = "fit a twin per electrode group (teacher forced), replace the modules one at a time, report the error"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="TWIN_or_REC.h5", help="a recording, or a twin file (its source "
                        "recording and family are used)")
    parser.add_argument("--modules", type=int, default=None, help="contiguous electrode groups (default 4)")
    parser.add_argument("--groups", default=None, help="explicit groups, e.g. '0-3+8,4-7' (one per comma)")
    parser.add_argument("--model", default=None, help="twin family per module (default: the twin's, else linear)")
    parser.add_argument("--heldout", type=float, default=0.3, help="fraction held out when the recording "
                        "has no train/test split (default 0.3)")
    parser.add_argument("--plot", metavar="PNG", default=None, help="write NRMSE and FC distance vs modules replaced")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def main(args: argparse.Namespace) -> None:
    from .modules import load, module_by_module, parse_groups, plot_report

    data, family = load(args.source, args.model, args.heldout)
    groups = parse_groups(args.groups, args.modules, data.train_responses[0].shape[1])
    report = module_by_module(data, groups, family)
    if args.plot:
        plot_report(report, args.plot)
    if args.json:
        print(json.dumps(report.as_dict()))
        return
    print(f"{family} modules on {len(data.heldout_indices)} held-out trials (free run; NRMSE = RMSE/std per "
          "channel, RMS over channels; FC distance = RMS difference of channel correlations)")
    print(f"{'replaced':>12} {'channels':>14} {'global NRMSE':>13} {'FC distance':>12} {'alone NRMSE':>12}")
    for s in report.stages:
        m = s["replaced"]
        name, chans, alone = ("none", "-", "-") if m is None else \
            (f"+module {m}", f"{groups[m][0]}-{groups[m][-1]}", f"{report.alone[m]:.4g}")
        print(f"{name:>12} {chans:>14} {s['nrmse']:>13.4g} {s['fc_distance']:>12.4g} {alone:>12}")
    if report.whole:
        print(f"{'one twin':>12} {'all':>14} {report.whole['nrmse']:>13.4g} {report.whole['fc_distance']:>12.4g}")
    if args.plot:
        print(f"plot -> {args.plot}")
