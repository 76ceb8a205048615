"""Identification stimuli: excitation designed to fit a twin, written as a protocol ``prclab run`` plays.

Three kinds (``KINDS``), each a ``(trials, T, n_inputs)`` array of values in [-1, 1]:

- ``sqrtprime``: input ``i`` is a sinusoid at ``sqrt(p_i) x f0`` (``p_i`` the ``i``-th prime, 2, 3, 5,
  7, 11, ...) with a random phase per trial, so no two inputs share a frequency or a rational ratio and
  the input space is covered densely without repeats (the excitation of the Twente dopant-network
  surrogates, Ruiz Euler et al. 2020, brains-py); ``f0`` puts the fastest input at the band's top;
- ``multisine``: each input a random-phase multisine, every harmonic of ``1 / T`` up to the band's top
  at equal amplitude (a flat spectrum), phases independent across inputs and trials;
- ``prbs``: each input a random binary sequence of +-1, one value per clock period ``rate / (2 f_top)``.

Trials cycle through ``bands`` bands whose tops are log-spaced from ``f_max / 16`` to ``f_max =
rate / 20`` (the label of a trial names its band: slow and fast dynamics both excited); each trial is
scaled by a level drawn uniformly in [0.25, 1] (a saturating substrate is seen at several amplitudes)
and tapered in and out over its first and last tenth (a raised cosine) so it leaves and returns to rest
smoothly.  One trial in five is ``test`` (held out by ``twin fit``).

:func:`write_probe` writes the excitation as a labelled-sequence ``.npz`` beside the protocol and a
protocol that plays it with ``[encoder] kind = "direct"`` (the designed values scaled into the
stimulus range as they are, :class:`prclab.protocols.encoders.DirectEncoder`), copying the base
protocol's device, substrate, stimulus, timing and safety tables.  The encoder's ``amplitude`` is the
largest of 0.9, 0.9 x 0.8, 0.9 x 0.8^2 ... whose compiled trials the base protocol's safety limits
(voltage window, current, slew, charge per phase, DC balance, ramp; :mod:`prclab.protocols.safety`,
with the electrodes the protocol's ``sim:`` substrate declares) accept: the limits are never exceeded,
and ``prclab run`` checks every sample again against the rig it actually runs on.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from prclab.errors import PrclabError
from prclab.protocols.datasets import LabelledSequences
from prclab.protocols.encoders import Encoder
from prclab.protocols.protocol import Protocol, load_protocol, parse_protocol
from prclab.protocols.recording import Trial
from prclab.protocols.runner import prepare
from prclab.protocols.safety import SafetyError
from prclab.protocols.schema import toml_text

KINDS = ("sqrtprime", "multisine", "prbs")
#: the fastest band's top, as a fraction of the sample rate
TOP_FRACTION = 1 / 20
#: amplitudes tried: START_AMPLITUDE x SHRINK^k until the safety limits accept the trials
START_AMPLITUDE, SHRINK, MIN_AMPLITUDE = 0.9, 0.8, 1e-3
#: one trial in TEST_EVERY is held out ("test")
TEST_EVERY = 5
#: the base protocol's tables a probe protocol copies as written
COPIED = ("device", "substrate", "stimulus", "timing", "safety")


def primes(n: int) -> np.ndarray:
    """The first ``n`` primes ``(n,)`` (2, 3, 5, ...)."""
    found: list[int] = []
    k = 2
    while len(found) < n:
        if all(k % p for p in found if p * p <= k):
            found.append(k)
        k += 1
    return np.array(found, dtype=np.int64)


def band_tops(rate_hz: float, bands: int) -> np.ndarray:
    """The bands' top frequencies ``(bands,)`` in hertz, log-spaced from ``f_max / 16`` to ``f_max``."""
    f_max = TOP_FRACTION * rate_hz
    return np.geomspace(f_max / 16, f_max, bands) if bands > 1 else np.array([f_max])


def excitation(kind: str | tuple[str, ...], n_trials: int, n_samples: int, n_inputs: int,
               rate_hz: float, seed: int = 0, bands: int = 3) -> LabelledSequences:
    """``n_trials`` excitation trials of ``n_samples`` samples on ``n_inputs`` inputs (module docstring);
    ``kind`` a tuple of kinds: trial ``i`` is of ``kind[i % len(kind)]`` (mixed excitation).

    Returns:
        :class:`~prclab.protocols.datasets.LabelledSequences` of ``(n_samples, n_inputs)`` sequences with
        values in [-1, 1] (dimensionless), labels naming the band (``"sqrtprime-12.5Hz"``), split
        ``test`` for one trial in :data:`TEST_EVERY`.

    Raises:
        PrclabError: an unknown kind, fewer than ``TEST_EVERY`` trials (every probe holds out one and
            trains on two bands or more), fewer than 2 bands, or fewer than 8 samples.
    """
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise PrclabError(f"probe: unknown excitation kind {(bad or [''])[0]!r}; known: {', '.join(KINDS)}")
    if n_trials < TEST_EVERY or bands < 2 or n_samples < 8:
        raise PrclabError(f"probe: needs at least {TEST_EVERY} trials, 2 bands and 8 samples a trial, got "
                          f"{n_trials}, {bands}, {n_samples}")
    rng = np.random.default_rng(seed)
    tops = band_tops(rate_hz, bands)
    t = np.arange(n_samples) / rate_hz  # seconds
    k = max(1, n_samples // 10)
    taper = np.ones(n_samples)
    taper[:k] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(k) + 0.5) / k)
    taper[-k:] = taper[:k][::-1]
    sequences, labels = [], []
    p = primes(n_inputs)
    for i in range(n_trials):
        kind, top = kinds[i % len(kinds)], tops[(i // len(kinds)) % bands]
        if kind == "sqrtprime":
            freqs = np.sqrt(p) * top / np.sqrt(p[-1])  # (n_inputs,) Hz, the last input at the top
            x = np.sin(2 * np.pi * t[:, None] * freqs + rng.uniform(0, 2 * np.pi, n_inputs))
        elif kind == "multisine":
            harmonics = np.arange(1, max(1, int(top * n_samples / rate_hz)) + 1) * rate_hz / n_samples
            phases = rng.uniform(0, 2 * np.pi, (len(harmonics), n_inputs))
            x = np.cos(2 * np.pi * t[:, None, None] * harmonics[:, None] + phases).sum(axis=1)
            x /= np.abs(x).max(axis=0)
        else:
            clock = max(1, int(round(rate_hz / (2 * top))))  # samples per bit
            bits = rng.choice([-1.0, 1.0], (-(-n_samples // clock), n_inputs))
            x = np.repeat(bits, clock, axis=0)[:n_samples]
        sequences.append(x * rng.uniform(0.25, 1.0) * taper[:, None])
        labels.append(f"{kind}-{top:.3g}Hz")
    return LabelledSequences(sequences, np.array(labels), held_out(n_trials), "sequence",
                             ids=np.array([f"row{i}" for i in range(n_trials)]),
                             source="probe:" + "+".join(kinds))


def held_out(n: int) -> np.ndarray:
    """The split of ``n`` probe trials: ``test`` for one in :data:`TEST_EVERY` (the 5th, 10th, ...)."""
    return np.where(np.arange(n) % TEST_EVERY == TEST_EVERY - 1, "test", "train")


def save_sequences(data: LabelledSequences, path: Path) -> None:
    """``data`` (sequences of one length) as a labelled-sequence ``.npz`` (protocols.datasets)."""
    x = np.stack(data.sequences)
    np.savez(path, X=x, lengths=np.full(len(x), x.shape[1]), y=data.labels, split=data.split)


def _toml_tables(tables: dict[str, dict]) -> str:
    """``{table: {key: value}}`` as TOML text; a dict value is a sub-table (``[safety.channels.3]``)."""
    lines: list[str] = []

    def emit(name: str, table: dict) -> None:
        lines.append(f"[{name}]")
        subs = {k: v for k, v in table.items() if isinstance(v, dict) and name != "substrate"}
        lines.extend(f"{k} = {toml_text(v)}" for k, v in table.items() if k not in subs)
        lines.append("")
        for k, v in subs.items():
            emit(f"{name}.{k}", v)
    for name, table in tables.items():
        emit(name, table)
    return "\n".join(lines)


@dataclass
class Probe:
    """A written probe: the protocol and dataset paths, the encoder amplitude the safety limits
    accepted, the protocol and its compiled trials (volts, playing order)."""

    path: Path
    dataset: Path
    amplitude: float
    protocol: Protocol
    trials: list[Trial]
    encoder: Encoder


def write_probe(base: str | Path, out: str | Path, data: LabelledSequences, name: str) -> Probe:
    """Write the protocol ``out`` (and its dataset ``out`` with suffix ``.npz``) that plays ``data``
    (sequences in [-1, 1]) with the device, substrate, stimulus, timing and safety tables of protocol
    ``base``, at the largest amplitude its safety limits accept (module docstring).

    Raises:
        PrclabError: the base protocol is bad, its electrodes differ from ``data``'s inputs, or no
            amplitude down to ``MIN_AMPLITUDE`` passes its safety limits (the last refusal named).
    """
    base_protocol = load_protocol(base)
    out = Path(out)
    n_in = base_protocol["stimulus"]["electrodes"]
    if data.sequences[0].shape[1] != n_in:
        raise PrclabError(f"probe: {base}: [stimulus] electrodes = {n_in}, the excitation has "
                          f"{data.sequences[0].shape[1]} inputs")
    raw = tomllib.loads(base_protocol.text)
    dataset = out.with_suffix(".npz")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_sequences(data, dataset)
    except OSError as exc:
        raise PrclabError(f"probe: cannot write {dataset} ({exc})") from None
    p = base_protocol["protocol"]
    head = {"protocol": {"name": name, "sample_rate_hz": p["sample_rate_hz"], "seed": p["seed"],
                         "order": "sequential", "block_samples": p["block_samples"]}}
    copied = {t: raw[t] for t in COPIED if t in raw}
    amplitude, refusal = START_AMPLITUDE, ""
    while amplitude >= MIN_AMPLITUDE:
        tables = {**head, **copied, "task": {"dataset": dataset.name},
                  "encoder": {"kind": "direct", "samples_per_frame": 1, "amplitude": round(amplitude, 6)}}
        text = (f"# Identification stimuli ({data.source}) written by `prclab twin probe` from {base};\n"
                f"# amplitude: the largest the safety limits of {base} accept.\n\n" + _toml_tables(tables))
        protocol = parse_protocol(text, out)
        try:
            _, encoder, trials = prepare(protocol)
        except SafetyError as exc:
            refusal = str(exc)
            amplitude *= SHRINK
            continue
        try:
            out.write_text(text)
        except OSError as exc:
            raise PrclabError(f"probe: cannot write {out} ({exc})") from None
        return Probe(out, dataset, round(amplitude, 6), protocol, trials, encoder)
    raise PrclabError(f"probe: no amplitude down to {MIN_AMPLITUDE} passes the safety limits of {base}: "
                      f"{refusal}")


def trial_samples(base: Protocol, seconds: float) -> int:
    """Samples of a ``seconds``-long excitation at ``base``'s sample rate (PrclabError if under 8)."""
    n = int(round(seconds * base.rate_hz))
    if n < 8:
        raise PrclabError(f"probe: --seconds {seconds:g} is {n} samples at {base.rate_hz:g} Hz; need 8 or more")
    return n
