"""``prclab twin fit``: fit a twin family on a recording's training trials and write the twin file.

Held-out trials (:func:`.data.load_fit_data`) never reach the fit.  ``model="best"`` fits every family
in ``FAMILIES`` that models the recording's kind of response (``fits``: spike counts or signals), skips
one that cannot fit it (saying why), and keeps the one with the lowest validation error: each family's
own free-run NRMSE on the last part of the training trials (``validation_nrmse_``, chosen inside
``fit``), so the choice too sees training trials only.  Provenance: the source recording, per-trial
checksums, protocol text, fit settings, train and held-out trial indices, the split's source, the
validation errors, software version.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from prclab.errors import PrclabError

from .data import load_fit_data


def fit_twin(rec_path: str | Path, out: str | Path, model: str = "linear", heldout: float = 0.3,
             progress=None) -> dict:
    """Fit and write; returns a JSON-able summary (``family``, ``validation_nrmse`` per family tried,
    ``seconds``, ``sha256``, trial counts, ``problems``: the damaged trials left out).  ``progress``:
    callable taking one line (default stderr)."""
    from prclab import __version__
    from prclab.reservoir.twins import FAMILIES
    from prclab.reservoir.twins.file import write_twin

    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    if model != "best" and model not in FAMILIES:
        raise PrclabError(f"twin fit: unknown model {model!r}; known: {', '.join(FAMILIES)}, best")
    t0 = time.perf_counter()
    data = load_fit_data(rec_path, heldout)
    kind = "counts" if all(np.all((r >= 0) & (r == np.round(r))) for r in data.train_responses) else "signals"
    names = [n for n in FAMILIES if FAMILIES[n].fits == kind] if model == "best" else [model]
    say(f"twin fit: {len(data.train_indices)} training, {len(data.heldout_indices)} held-out trials "
        f"({data.split_source}, responses: {kind}), read in {time.perf_counter() - t0:.1f} s")
    for problem in data.problems:  # damaged trials: left out, as prclab train leaves them out
        say(f"twin fit: warning: {problem}")
    fitted, scores = {}, {}
    for name in names:
        t = time.perf_counter()
        try:
            history = {"history": data.train_history} if FAMILIES[name].session_history else {}
            fitted[name] = FAMILIES[name]().fit(data.train_stimuli, data.train_responses, data.dt, **history)
        except PrclabError as exc:
            if model != "best":
                raise
            say(f"twin fit: {name}: skipped ({exc})")
            continue
        scores[name] = float(fitted[name].validation_nrmse_)
        say(f"twin fit: {name}: validation NRMSE {scores[name]:.4g} ({time.perf_counter() - t:.1f} s)")
    if not fitted:
        raise PrclabError(f"twin fit: no family could fit {rec_path} (tried {', '.join(names)})")
    # NaN: a family judged by other figures (spiking); it wins only where nothing has an NRMSE
    best = min(fitted, key=lambda n: (np.isnan(scores[n]), np.nan_to_num(scores[n], nan=0.0)))
    family = fitted[best]
    _, family_attrs = family.to_arrays()
    provenance = {"source_recording": str(Path(rec_path).resolve()),
                  "trial_checksums": {str(k): v for k, v in data.checksums.items()},
                  "protocol_text": data.protocol_text, "model": model, "family": best,
                  "fit_settings": family_attrs, "validation_nrmse": scores,
                  "train_trials": data.train_indices, "heldout_trials": data.heldout_indices,
                  "split": data.split_source, "software_version": __version__}
    digest = write_twin(out, family, provenance)
    seconds = time.perf_counter() - t0
    say(f"twin fit: {best} twin written to {out} in {seconds:.1f} s")
    return {"family": best, "validation_nrmse": scores, "seconds": seconds, "sha256": digest,
            "out": str(out), "n_train": len(data.train_indices), "n_heldout": len(data.heldout_indices),
            "problems": data.problems}
