"""Encoders: task data -> electrode voltage waveforms.

An encoder turns one dataset item into feature frames ``(frames, n_channels)`` (MFCCs for audio, the
raw channels for sequences), standardises each channel with statistics fitted on the training items,
squashes it smoothly into the stimulus range, and holds each frame for ``samples_per_frame`` samples::

    v = centre + amplitude * half_range * tanh(z / 2),     z = (feature - mean_train) / std_train

so every sample lies strictly inside ``[low_V, high_V]`` by construction (``amplitude <= 1``); the
safety layer still checks every sample before a device sees it.

The ``waveform`` keyword sets how a frame becomes samples, for every encoder alike:

- ``"hold"`` (the default): each frame's volts held for ``samples_per_frame`` samples (zero-order hold);
- ``"rate"``: rate and place coding as in DishBrain (Kagan et al. 2022, Neuron 110:3952; 4-40 Hz
  trains): each electrode (the place) fires one-sample pulses at a rate mapped linearly from its
  normalised feature ``tanh(z / 2)`` in (-1, 1) to ``[rate_min_hz, rate_max_hz]``; the rate is
  integrated sample by sample (a phase that fires a pulse at each whole turn, carried across frames),
  so rates well below one pulse per frame still come through;
- ``"binary"``: the Brainoware pipeline (Cai et al. 2023, Nat. Electron. 6:1032): each feature
  binarised per frame against its median over the training items (fitted in :meth:`Encoder.fit`),
  one pulse per active electrode at the frame's first sample.

A pulse leaves the rest level (0 V if the range holds it, else its centre, as the runner rests) for one
sample at ``rest + amplitude * half``, ``half`` the smaller distance from the rest level to either end
of the range (positive first, the more effective polarity; Wagenaar, Pine & Potter 2004, J. Neurosci.
Methods 138:27).  Through a capacitive electrode such as the organoid's MEA (``I = C dV/dt``) that
voltage pulse is a charge-balanced biphasic current: its rising edge, then its falling edge.  A
resistive electrode (``I = V / R``, the potato's tissue, the safety layer's model) passes a monophasic
current; ``biphasic=True`` follows each pulse with the mirrored sample ``rest - amplitude * half``, a
charge-balanced biphasic pulse in current there.  The safety layer checks pulses as any stimulus.

With ``multiplex=True`` the frame's features are played one after another on a single electrode
(time multiplexing, as in single-node delay-based reservoirs, Appeltant et al. 2011, Nat. Commun.
2:468): a frame of ``F`` features becomes ``F * samples_per_frame`` samples on one channel, so a
one-electrode device such as a potentiostat can take MFCC frames.

A protocol's ``[encoder]`` table (:data:`ENCODER_TABLE`) is these constructors' keywords, with their
defaults, less those the protocol sets from other tables (``low_V``/``high_V`` from ``[stimulus]``,
``rate_hz`` and ``n_channels`` from the dataset), after ``kind``.  ``kind = "direct"`` plays designed
sequences (values in [-1, 1]) as they are, scaled into the range (:class:`DirectEncoder`).
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from prclab.errors import PrclabError

from .datasets import LabelledSequences
from .schema import Key, from_signature

#: largest samples_per_frame (a typo such as 1e12 is refused, not run for ever) and window/hop, seconds
MAX_SAMPLES_PER_FRAME = 1_000_000
MAX_FRAME_S = 60.0
#: how a frame becomes samples (see the module docstring)
WAVEFORMS = ("hold", "rate", "binary")


def rest_level(low_V: float, high_V: float) -> float:
    """The voltage electrodes rest at between stimuli and pulses: 0 V if allowed, else the range's centre."""
    return 0.0 if low_V <= 0.0 <= high_V else (low_V + high_V) / 2


class Encoder:
    """Base encoder: subclasses set ``n_features`` and implement ``features(item) -> (frames, n_features)``.

    Args:
        low_V, high_V: stimulus range, volts.
        amplitude: fraction of the half range used, in (0, 1] (a pulse's height: of the distance from
            the rest level to the range's nearer end).
        samples_per_frame: samples each feature frame lasts (10: a 10 ms frame at 1 kHz).
        multiplex: play each frame's features one after another on a single electrode.
        waveform: ``"hold"``, ``"rate"`` or ``"binary"`` (module docstring).
        rate_min_hz, rate_max_hz: ``"rate"``: pulse rates of the lowest and highest feature value, hertz.
        biphasic: each pulse followed by its mirror image (charge-balanced in a resistive electrode).
        sample_rate_hz: the device's sample rate, hertz, that ``"rate"`` times its pulses at.

    The keywords are checked against :data:`ENCODER_TABLE`, as a protocol's ``[encoder]`` is.
    Fitted: ``mean_``, ``std_``, ``median_`` ``(n_features,)``, in the features' units.
    """

    kind = "base"

    def __init__(self, low_V: float = -0.5, high_V: float = 0.5, amplitude: float = 0.9,
                 samples_per_frame: int = 10, multiplex: bool = False, waveform: str = "hold",
                 rate_min_hz: float = 4.0, rate_max_hz: float = 40.0, biphasic: bool = False,
                 sample_rate_hz: float = 1000.0):
        if not low_V < high_V:
            raise PrclabError(f"encoder: low_V ({low_V}) must be below high_V ({high_V})")
        given = _checked(amplitude=amplitude, samples_per_frame=samples_per_frame, multiplex=multiplex,
                         waveform=waveform, rate_min_hz=rate_min_hz, rate_max_hz=rate_max_hz,
                         biphasic=biphasic)
        if not (isinstance(sample_rate_hz, (int, float)) and 0 < sample_rate_hz < float("inf")):
            raise PrclabError(f"encoder: sample_rate_hz must be a positive number of hertz, got {sample_rate_hz!r:.40}")
        self.low_V, self.high_V, self.amplitude = float(low_V), float(high_V), given["amplitude"]
        self.samples_per_frame, self.multiplex = given["samples_per_frame"], given["multiplex"]
        self.waveform, self.biphasic, self.sample_rate_hz = waveform, given["biphasic"], float(sample_rate_hz)
        self.rate_min_hz, self.rate_max_hz = given["rate_min_hz"], given["rate_max_hz"]
        if self.rate_min_hz > self.rate_max_hz:
            raise PrclabError(f"encoder: rate_min_hz ({rate_min_hz}) must not exceed rate_max_hz ({rate_max_hz})")
        pulse_samples = 2 if self.biphasic else 1
        if waveform == "rate" and self.rate_max_hz * (pulse_samples + 1) > self.sample_rate_hz:
            raise PrclabError(f"encoder: rate_max_hz {rate_max_hz} Hz leaves no rest between "
                              f"{pulse_samples}-sample pulses at {sample_rate_hz:g} Hz")
        if waveform != "hold" and self.samples_per_frame < pulse_samples:
            raise PrclabError(f"encoder: a {'biphasic ' if self.biphasic else ''}pulse needs "
                              f"samples_per_frame >= {pulse_samples}")
        self.mean_: np.ndarray | None = None
        self.std_: np.ndarray | None = None
        self.median_: np.ndarray | None = None

    n_features: int

    @property
    def n_channels(self) -> int:
        """Stimulus channels (electrodes) the encoded waveform has."""
        return 1 if self.multiplex else self.n_features

    def features(self, item: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fit(self, data: LabelledSequences, index=None) -> "Encoder":
        """Fit per-channel mean, std and median on ``data`` items ``index`` (the training items)."""
        index = range(len(data)) if index is None else index
        frames = np.concatenate([self.features(data.sequences[i]) for i in index])
        self.mean_ = frames.mean(axis=0)
        self.std_ = np.maximum(frames.std(axis=0), 1e-12)
        self.median_ = np.median(frames, axis=0)
        return self

    def normalised(self, frames: np.ndarray) -> np.ndarray:
        """Frames ``(frames, n_features)`` standardised with the training statistics and squashed,
        ``tanh(z / 2)``: dimensionless, in (-1, 1)."""
        if self.mean_ is None:
            raise RuntimeError("encoder is not fitted")
        return np.tanh((frames - self.mean_) / self.std_ / 2)

    def frames_to_volts(self, frames: np.ndarray) -> np.ndarray:
        """Standardised, squashed frames ``(frames, n_features)`` -> volts, one row per frame."""
        centre, half = (self.high_V + self.low_V) / 2, (self.high_V - self.low_V) / 2
        return centre + self.amplitude * half * self.normalised(frames)

    def encode(self, item: np.ndarray) -> np.ndarray:
        """One item -> stimulus ``(steps, n_channels)`` in volts.

        ``steps`` is ``frames * samples_per_frame``, times ``n_features`` when multiplexed.
        """
        frames = self.features(item)
        if self.waveform == "hold":
            per_frame = self.frames_to_volts(frames)
        elif self.waveform == "rate":  # pulses per sample
            span = self.rate_max_hz - self.rate_min_hz
            per_frame = (self.rate_min_hz + span * (self.normalised(frames) + 1) / 2) / self.sample_rate_hz
        else:
            if self.median_ is None:
                raise RuntimeError("encoder is not fitted")
            per_frame = (frames > self.median_).astype(np.float64)
        if self.multiplex:
            per_frame = per_frame.reshape(-1, 1)
        if self.waveform == "hold":
            return np.repeat(per_frame, self.samples_per_frame, axis=0)
        if self.waveform == "rate":
            phase = np.cumsum(np.repeat(per_frame, self.samples_per_frame, axis=0), axis=0)
            onsets = np.diff(np.floor(phase), axis=0, prepend=0.0) > 0
        else:
            onsets = np.zeros((len(per_frame) * self.samples_per_frame, per_frame.shape[1]), bool)
            onsets[::self.samples_per_frame] = per_frame > 0
        return self.pulses(onsets)

    def pulses(self, onsets: np.ndarray) -> np.ndarray:
        """Pulse onsets ``(steps, n_channels)`` (bool) -> volts ``(steps, n_channels)``: the rest level,
        ``rest + amplitude * half`` at each onset and, if ``biphasic``, ``rest - amplitude * half`` on
        the sample after (an onset on the last sample then has no room and is dropped)."""
        rest = rest_level(self.low_V, self.high_V)
        height = self.amplitude * min(self.high_V - rest, rest - self.low_V)
        if self.biphasic:
            onsets = onsets.copy()
            onsets[-1] = False
        volts = np.full(onsets.shape, rest)
        volts[onsets] += height
        if self.biphasic:
            volts[1:][onsets[:-1]] -= height
        return volts

    def describe(self) -> dict:
        """The encoder's keywords; a pulse waveform's only when it pulses (a held waveform is described
        as before pulses existed, so a recording made then still resumes)."""
        pulse = {} if self.waveform == "hold" else {"waveform": self.waveform, "biphasic": self.biphasic}
        if self.waveform == "rate":
            pulse.update(rate_min_hz=self.rate_min_hz, rate_max_hz=self.rate_max_hz,
                         sample_rate_hz=self.sample_rate_hz)
        return {"kind": self.kind, "low_V": self.low_V, "high_V": self.high_V,
                "amplitude": self.amplitude, "samples_per_frame": self.samples_per_frame,
                "multiplex": self.multiplex, **pulse}


class MFCCEncoder(Encoder):
    """Audio -> mel-frequency cepstral coefficients per frame, from ``librosa.feature.mfcc``.

    Each frame is a Hann window of ``window_s`` (zero-padded to a power-of-two FFT) centred every
    ``hop_s``; its power spectrum goes through ``n_filters`` mel filters (the HTK mel scale, as in HTK and
    the python_speech_features this replaced; librosa's area normalisation), to decibels, and a type-II
    orthonormal DCT keeps ``n_mfcc`` coefficients.

    Args:
        rate_hz: audio sample rate, hertz.
        n_mfcc: coefficients per frame (channels).
        window_s, hop_s: analysis window and frame step, seconds (each at least one audio sample).
        n_filters: mel filters.
    """

    kind = "mfcc"

    def __init__(self, rate_hz: float = 8000.0, n_mfcc: int = 13, window_s: float = 0.025,
                 hop_s: float = 0.01, n_filters: int = 26, **kwargs):
        super().__init__(**kwargs)
        given = _checked(n_mfcc=n_mfcc, window_s=window_s, hop_s=hop_s, n_filters=n_filters)
        if given["n_filters"] < given["n_mfcc"]:
            raise PrclabError(f"mfcc encoder: need n_mfcc <= n_filters, got {n_mfcc}, {n_filters}")
        self.rate_hz, self.n_mfcc, self.n_filters = float(rate_hz), given["n_mfcc"], given["n_filters"]
        self.window_s, self.hop_s = given["window_s"], given["hop_s"]
        self.n_features = self.n_mfcc
        self.window = int(round(window_s * rate_hz))  # samples
        self.hop = int(round(hop_s * rate_hz))  # samples
        if self.window < 1 or self.hop < 1:
            raise PrclabError(f"mfcc encoder: window_s ({window_s} s) and hop_s ({hop_s} s) must each span "
                              f"at least one sample at {rate_hz:g} Hz")
        self.nfft = 1 << int(np.ceil(np.log2(self.window)))

    @cached_property
    def mel_basis(self) -> np.ndarray:
        """Mel filters ``(n_filters, nfft // 2 + 1)``, built once (``librosa.feature.mfcc`` given audio
        builds them again on every call, which took as long as the rest of the work)."""
        import librosa

        return librosa.filters.mel(sr=self.rate_hz, n_fft=self.nfft, n_mels=self.n_filters, htk=True)

    def features(self, item: np.ndarray) -> np.ndarray:
        """Mono audio ``(samples,)`` -> MFCCs ``(frames, n_mfcc)``, ``frames = 1 + samples // hop``."""
        import librosa  # imported on first use: librosa and numba take about a second to import

        audio = np.asarray(item, dtype=np.float64)
        if audio.ndim != 1 or audio.size == 0:
            raise PrclabError(f"mfcc encoder: expected non-empty mono audio, got shape {audio.shape}")
        power = np.abs(librosa.stft(audio, n_fft=self.nfft, hop_length=self.hop, win_length=self.window)) ** 2
        return librosa.feature.mfcc(S=librosa.power_to_db(self.mel_basis @ power), n_mfcc=self.n_mfcc).T

    def describe(self) -> dict:
        return {**super().describe(), "rate_hz": self.rate_hz, "n_mfcc": self.n_mfcc,
                "window_s": self.window_s, "hop_s": self.hop_s, "n_filters": self.n_filters}


class SequenceEncoder(Encoder):
    """Multichannel sequences ``(steps, channels)`` -> one electrode per channel, one frame per step."""

    kind = "sequence"

    def __init__(self, n_channels: int, **kwargs):
        super().__init__(**kwargs)
        self.n_features = int(n_channels)

    def features(self, item: np.ndarray) -> np.ndarray:
        item = np.asarray(item, dtype=np.float64)
        if item.ndim != 2 or item.shape[1] != self.n_features:
            raise PrclabError(f"sequence encoder: expected (steps, {self.n_features}), got {item.shape}")
        return item

    def describe(self) -> dict:
        return {**super().describe(), "n_channels": self.n_features}


class DirectEncoder(SequenceEncoder):
    """Designed stimuli ``(steps, channels)`` with values in [-1, 1] -> volts as designed, with no
    standardisation or squashing: ``v = centre + amplitude * half_range * x`` (a multisine or
    irrational-frequency sinusoid keeps its shape; ``prclab twin probe`` writes such datasets).

    Raises:
        PrclabError: an item holds a value outside [-1, 1].
    """

    kind = "direct"

    def features(self, item: np.ndarray) -> np.ndarray:
        item = super().features(item)
        if np.abs(item).max(initial=0.0) > 1.0:
            raise PrclabError(f"direct encoder: values must lie in [-1, 1], got {np.abs(item).max():.4g}")
        return item

    def normalised(self, frames: np.ndarray) -> np.ndarray:
        """The frames themselves: designed in [-1, 1] already."""
        return frames


#: ``[encoder]``: ``kind``, then the constructors' keywords with their defaults (the protocol gives
#: low_V/high_V from [stimulus], rate_hz and n_channels come from the dataset)
ENCODER_TABLE = from_signature("encoder", (Encoder, MFCCEncoder, SequenceEncoder), doc=(
    "How each dataset item becomes electrode voltages (protocols.encoders); mfcc keys for audio only."),
    first=(Key("kind", str, "", choices=("", "mfcc", "sequence", "direct"),
               doc='"mfcc" (audio), "sequence" or "direct" (sequences in [-1, 1] played as designed); '
                   'empty: from the dataset'),),
    exclude=("low_V", "high_V", "rate_hz", "n_channels", "sample_rate_hz"), declared={
        "amplitude": Key(low=0, high=1, low_open=True, doc="fraction of the stimulus half range used"),
        "samples_per_frame": Key(low=1, high=MAX_SAMPLES_PER_FRAME, unit="samples",
                                 doc="samples each feature frame is held for"),
        "multiplex": Key(doc="play a frame's features in turn on one electrode (e.g. a potentiostat)"),
        "waveform": Key(choices=WAVEFORMS, doc='"hold" each frame, "rate"-coded or "binary" (median) pulses'),
        "rate_min_hz": Key(low=0, high=1e6, unit="Hz", doc="rate: pulse rate of the lowest feature value"),
        "rate_max_hz": Key(low=0, high=1e6, unit="Hz", doc="rate: pulse rate of the highest feature value"),
        "biphasic": Key(doc="pulses followed by their mirror sample (charge-balanced through a resistance)"),
        "n_mfcc": Key(low=1, high=1000, doc="mfcc: coefficients per frame (the channels)"),
        "window_s": Key(low=0, low_open=True, high=MAX_FRAME_S, unit="s", doc="mfcc: analysis window"),
        "hop_s": Key(low=0, low_open=True, high=MAX_FRAME_S, unit="s", doc="mfcc: frame step"),
        "n_filters": Key(low=1, high=1000, doc="mfcc: mel filters (at least n_mfcc)")})


def _checked(**given) -> dict:
    """Constructor keywords ``given``, typed and range-checked against :data:`ENCODER_TABLE`."""
    return ENCODER_TABLE.check(given, "encoder")


def make_encoder(data: LabelledSequences, kind: str | None = None, **params) -> Encoder:
    """The encoder for ``data``: ``mfcc`` for audio, ``sequence`` otherwise (or ``kind`` if given)."""
    kind = kind or ("mfcc" if data.kind == "audio" else "sequence")
    try:
        if kind == "mfcc":
            if data.kind != "audio":
                raise PrclabError(f"encoder 'mfcc' needs audio, dataset {data.source} holds sequences")
            return MFCCEncoder(rate_hz=data.rate_hz, **params)
        if kind in ("sequence", "direct"):
            if data.kind != "sequence":
                raise PrclabError(f"encoder {kind!r} needs sequences, dataset {data.source} holds audio")
            cls = SequenceEncoder if kind == "sequence" else DirectEncoder
            return cls(n_channels=data.sequences[0].shape[1], **params)
    except TypeError as exc:
        raise PrclabError(f"encoder {kind!r}: {exc}") from None
    raise PrclabError(f"unknown encoder {kind!r}; known: mfcc, sequence, direct")
