"""``prclab twin fit REC.h5 --out TWIN.h5 [--model linear|echo|...|best] [--json]`` (:mod:`.fit`)."""

from __future__ import annotations

import argparse
import json

HELP = "fit a digital twin on a recording's training trials and write it (HDF5 with provenance)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recording", metavar="REC.h5", help="recording made by prclab run")
    parser.add_argument("--out", required=True, metavar="TWIN.h5", help="twin file to write (new)")
    parser.add_argument("--model", default="linear", help="twin family (prclab.reservoir.twins.FAMILIES), or "
                        "'best': the lowest validation error on the training trials")
    parser.add_argument("--heldout", type=float, default=0.3, help="fraction held out when the recording "
                        "has no train/test split (default 0.3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def main(args: argparse.Namespace) -> None:
    from pathlib import Path

    from prclab.errors import PrclabError

    from .fit import fit_twin

    if Path(args.out).exists():
        raise PrclabError(f"--out {args.out}: a file is already there; choose a new name")
    result = fit_twin(args.recording, args.out, args.model, args.heldout)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['family']} twin -> {result['out']} ({result['n_train']} training trials, "
          f"{result['n_heldout']} held out, {result['seconds']:.1f} s); validation NRMSE "
          + ", ".join(f"{k} {v:.4g}" for k, v in result["validation_nrmse"].items()))
