"""``prclab twin probe``: write a protocol of identification stimuli, designed or chosen actively.

Designed (:mod:`.probe`): ``prclab twin probe --protocol BASE.toml --out PROBE.toml [--kind
sqrtprime|multisine|prbs] [--trials N] [--seconds S]`` writes ``PROBE.toml`` and ``PROBE.npz``; run it
with ``prclab run PROBE.toml --out REC.h5`` and fit with ``prclab twin fit REC.h5``.

Active (:mod:`.active`): ``prclab twin probe --protocol BASE.toml --out NEXT.toml --active REC.h5
[--model linear] [--ensemble K] [--pool M]``: fits K bootstrap twins on ``REC.h5``'s training trials,
draws M candidates of ``--kind`` (``all``: every kind), and writes the N where the twins disagree most.
"""

from __future__ import annotations

import argparse
import json

HELP = "write a protocol of identification stimuli (designed excitation, or chosen where twins disagree)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol", required=True, metavar="BASE.toml",
                        help="the protocol whose device, substrate, stimulus, timing and safety are kept")
    parser.add_argument("--out", required=True, metavar="PROBE.toml", help="protocol to write (and .npz)")
    parser.add_argument("--kind", default="sqrtprime", choices=("sqrtprime", "multisine", "prbs", "all"),
                        help="excitation: sinusoids at sqrt(prime) x f, multisine or PRBS (all: mixed)")
    parser.add_argument("--trials", type=int, default=100, help="trials to write (default 100)")
    parser.add_argument("--seconds", type=float, default=1.0, help="excitation per trial, s (default 1)")
    parser.add_argument("--seed", type=int, default=None, help="seed (default: the base protocol's)")
    parser.add_argument("--active", metavar="REC.h5", default=None,
                        help="choose the trials where twins fitted on this recording disagree most")
    parser.add_argument("--model", default="linear", help="active: twin family of the ensemble")
    parser.add_argument("--ensemble", type=int, default=5, help="active: bootstrap twins (default 5)")
    parser.add_argument("--pool", type=int, default=0, help="active: candidates (default 10 x trials)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def main(args: argparse.Namespace) -> None:
    import numpy as np

    from prclab.errors import PrclabError
    from prclab.protocols.protocol import load_protocol

    from .probe import KINDS, TEST_EVERY, excitation, held_out, trial_samples, write_probe

    if args.trials < TEST_EVERY:
        raise PrclabError(f"twin probe: --trials must be {TEST_EVERY} or more (one in {TEST_EVERY} is "
                          f"held out), got {args.trials}")
    base = load_protocol(args.protocol)
    seed = base["protocol"]["seed"] if args.seed is None else args.seed
    n_samples, n_in = trial_samples(base, args.seconds), base["stimulus"]["electrodes"]
    kinds = KINDS if args.kind == "all" else (args.kind,)
    n_candidates = args.trials if args.active is None else (args.pool or 10 * args.trials)
    candidates = excitation(kinds, n_candidates, n_samples, n_in, base.rate_hz, seed)
    summary = {"protocol": args.out, "kind": args.kind}
    if args.active is not None:
        from .active import choose_from_recording

        chosen, scores = choose_from_recording(args.active, args.protocol, candidates, args.trials,
                                               family=args.model, ensemble=args.ensemble, seed=seed)
        # in decreasing disagreement, one in TEST_EVERY held out; labelled by the rank's parity (the
        # bands of the chosen may be one: a run's readout needs two classes to train on)
        candidates = candidates.subset(chosen)
        candidates.split = held_out(len(chosen))
        candidates.labels = np.where(np.arange(len(chosen)) % 2 == 0, "active-even", "active-odd")
        summary.update(active=args.active, model=args.model, ensemble=args.ensemble,
                       pool=n_candidates, disagreement=[round(float(s), 6) for s in scores[chosen]])
    probe = write_probe(args.protocol, args.out, candidates,
                        f"{base['protocol']['name']}-probe-{args.kind}{'-active' if args.active else ''}")
    summary.update(dataset=str(probe.dataset), trials=len(probe.trials), amplitude=probe.amplitude)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {probe.path} ({len(probe.trials)} trials of {args.seconds:g} s {args.kind} excitation, "
              f"amplitude {probe.amplitude:g} of the stimulus half range, within {args.protocol}'s "
              f"safety limits) and {probe.dataset}")

