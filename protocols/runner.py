"""The protocol runner: compile a protocol into trials, play them through a Device, record each.

A protocol compiles to a list of :class:`Trial` steps (Bluesky-style: a plan is data, the runner
executes it).  For each trial the runner marks the trial start in the device's response stream, streams
the trial waveform (washout, encoded stimulus, rest) in blocks of ``block_samples`` - write a block,
read as many samples - then cuts the trial's response out of the stream at the mark's position (devices
with latency report their marks later in the stream) and appends the trial to the recording, flushed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from drivers import Device
from prclab import PrclabError

from .datasets import LabelledSequences, load_dataset
from .encoders import Encoder, make_encoder
from .protocol import Protocol
from .recording import RecordingWriter


@dataclass
class Trial:
    """One step of a compiled protocol.

    Attributes:
        index: position in the run.
        item: index of the dataset item played.
        repetition: which repetition of the dataset this is.
        label, split, item_id: copied from the dataset.
        waveform: ``(n, n_stimulus)`` volts: washout, stimulus, rest.
        stim_start, stim_stop: the stimulus's sample range within ``waveform``.
    """

    index: int
    item: int
    repetition: int
    label: str
    split: str
    item_id: str
    waveform: np.ndarray
    stim_start: int
    stim_stop: int


def prepare(protocol: Protocol) -> tuple[LabelledSequences, Encoder, list[Trial]]:
    """Load the dataset, fit the encoder on its training items and compile the trials."""
    data = load_dataset(protocol.dataset_path())
    split = data.split if data.split is not None else _random_split(data, protocol["protocol"]["seed"])
    data.split = split
    max_items = protocol["task"]["max_items"]
    keep = np.concatenate([np.flatnonzero(split == s)[:max_items or None] for s in ("train", "test")])
    data = data.subset(np.sort(keep))
    train = np.flatnonzero(data.split == "train")
    if len(train) == 0 or len(np.unique(data.labels[train])) < 2:
        raise PrclabError(f"{protocol.where}: the dataset's training split needs two or more classes")
    enc = protocol["encoder"]
    encoder = make_encoder(data, enc["kind"] or None, **protocol.encoder_params()).fit(data, train)
    n_el = protocol["stimulus"]["electrodes"]
    if encoder.n_channels != n_el:
        raise PrclabError(f"{protocol.where}: [stimulus] electrodes = {n_el} but the {encoder.kind} "
                          f"encoder makes {encoder.n_channels} channels")
    return data, encoder, compile_trials(protocol, data, encoder)


def _random_split(data: LabelledSequences, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    split = np.full(len(data), "train", dtype=object)
    for label in data.classes:
        idx = rng.permutation(np.flatnonzero(data.labels == label))
        split[idx[:max(1, round(0.3 * len(idx)))]] = "test"
    return split.astype(str)


def rest_level(low: float, high: float) -> float:
    """The voltage electrodes rest at between stimuli: 0 V if allowed, else the range's centre."""
    return 0.0 if low <= 0.0 <= high else (low + high) / 2


def compile_trials(protocol: Protocol, data: LabelledSequences, encoder: Encoder) -> list[Trial]:
    """The run's trials in playing order (shuffled per repetition with the protocol seed if random)."""
    p, t, s = protocol["protocol"], protocol["timing"], protocol["stimulus"]
    rate = p["sample_rate_hz"]
    n_wash, n_rest = int(round(t["washout_s"] * rate)), int(round(t["rest_s"] * rate))
    level = rest_level(s["low_V"], s["high_V"])
    rng = np.random.default_rng(p["seed"])
    trials: list[Trial] = []
    stimuli = [encoder.encode(x) for x in data.sequences]
    for rep in range(p["repetitions"]):
        order = rng.permutation(len(data)) if p["order"] == "random" else np.arange(len(data))
        for item in order:
            stim = stimuli[item]
            wave = np.full((n_wash + len(stim) + n_rest, stim.shape[1]), level)
            wave[n_wash:n_wash + len(stim)] = stim
            trials.append(Trial(len(trials), int(item), rep, str(data.labels[item]), str(data.split[item]),
                                str(data.ids[item]), wave, n_wash, n_wash + len(stim)))
    return trials


class _ResponseStream:
    """The device's response stream as read so far, cut into trials at the marks' positions."""

    def __init__(self, device: Device):
        self.device = device
        self.start = 0                       # stream index of buffer[0]
        self.samples: list[np.ndarray] = []
        self.times: list[np.ndarray] = []
        self.end = 0                         # stream index just past the last sample read

    def read(self, n: int) -> None:
        samples, times = self.device.read(n)
        self.samples.append(samples)
        self.times.append(times)
        self.end += len(samples)

    def cut(self, begin: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Samples ``[begin, begin + n)`` of the stream, reading more if needed; drops older ones."""
        if begin + n > self.end:
            self.read(begin + n - self.end)
        samples, times = np.concatenate(self.samples), np.concatenate(self.times)
        a = begin - self.start
        if a < 0:
            raise PrclabError(f"{self.device.name}: trial mark at sample {begin} lies before the "
                              f"retained stream (starts at {self.start})")
        out = samples[a:a + n], times[a:a + n]
        self.samples, self.times = [samples[a + n:]], [times[a + n:]]
        self.start = begin + n
        return out


def run_trials(trials: list[Trial], device: Device, writer: RecordingWriter, block_samples: int,
               progress: Callable[[Trial], None] | None = None) -> None:
    """Play ``trials`` through the open ``device`` and append each to ``writer``."""
    stream = _ResponseStream(device)
    for trial in trials:
        label = f"trial:{trial.index}"
        device.mark(label)
        wave = trial.waveform
        for a in range(0, len(wave), block_samples):
            block = wave[a:a + block_samples]
            device.write(block)
            stream.read(len(block))
        begin = next((i for i, lab in reversed(device.events()) if lab == label), None)
        if begin is None:
            raise PrclabError(f"{device.name}: mark {label!r} never came back in the response stream")
        response, times = stream.cut(begin, len(wave))
        writer.append(trial.index, wave, response, times, item=trial.item, item_id=trial.item_id,
                      label=trial.label, split=trial.split, repetition=trial.repetition,
                      stim_start=trial.stim_start, stim_stop=trial.stim_stop)
        if progress is not None:
            progress(trial)


def run_protocol(protocol: Protocol, device: Device, out: str | Path,
                 progress: Callable[[Trial], None] | None = None, substrate: dict | None = None) -> Path:
    """Run ``protocol`` on ``device`` (opened here) and write the recording ``out``; returns its path."""
    data, encoder, trials = prepare(protocol)
    if device.channels.rate_hz != protocol.rate_hz:
        raise PrclabError(f"{device.name}: runs at {device.channels.rate_hz} Hz, the protocol asks for "
                          f"{protocol.rate_hz} Hz")
    if len(device.channels.stimulus) != protocol["stimulus"]["electrodes"]:
        raise PrclabError(f"{device.name}: has {len(device.channels.stimulus)} stimulus channels, the "
                          f"protocol needs {protocol['stimulus']['electrodes']}")
    metadata = {"protocol_text": protocol.text, "rate_hz": protocol.rate_hz,
                "device": device.describe(), "encoder": encoder.describe(),
                "substrate": substrate or device.describe().get("substrate", {}),
                "readout": {"features": protocol["readout"]["features"]},
                "dataset": data.source, "n_trials_planned": len(trials)}
    with RecordingWriter(out, metadata) as writer, device:
        run_trials(trials, device, writer, protocol["protocol"]["block_samples"], progress)
    return Path(out)
