"""ReplayDevice: plays a recording back through the Device contract, as if it were the hardware.

Its channels and rate are the recorded device's.  The response stream is the recording's responses,
trial after trial in index order (its own clock: sample ``k`` at ``k / rate_hz`` seconds); response
sample ``k`` is what was recorded while stimulus sample ``k`` of the run was applied, so a runner playing
the same protocol gets back the recorded trials.  Playback is open loop: the stimulus written is
range-checked like any device's and compared with the recorded one sample by sample as it is written:
the first sample that differs (a changed protocol, dataset or encoder would pair the recorded responses
with other stimuli) stops the run with a :class:`DeviceError` naming the trial and sample, so a run
through a replay finishes only on the recorded stimuli.  Playback does not change the response.

Spec: ``replay:REC.h5`` (see :mod:`prclab.protocols.rig`).  It lives with the protocols because it reads
the recording format (:mod:`prclab.protocols.recording`); drivers sit below and never read recordings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prclab.drivers.base import ChannelInfo, Device, DeviceChannels, DeviceError
from prclab.errors import PrclabError

from .recording import read_recording


def _channels(described: list, prefix: str, count: int, values: np.ndarray) -> tuple[ChannelInfo, ...]:
    if isinstance(described, list) and len(described) == count:
        try:
            return tuple(ChannelInfo(str(c["name"]), str(c["unit"]), float(c["low"]), float(c["high"]))
                         for c in described)
        except (KeyError, TypeError, ValueError):
            pass
    lo, hi = (float(values.min()), float(values.max())) if values.size else (-1.0, 1.0)
    return tuple(ChannelInfo(f"{prefix}{i}", "V", min(lo, -1.0), max(hi, 1.0)) for i in range(count))


class ReplayDevice(Device):
    """A recording played back as a device.

    Args:
        path: a prclab recording (HDF5).  It must hold at least one trial and no damaged trial (a gap
            would shift every later response against its stimulus).
    Raises:
        DeviceError: unreadable, empty or damaged recording.
    """

    name = "replay"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            rec = read_recording(self.path)
        except PrclabError as exc:
            raise DeviceError(f"replay:{self.path}: {exc}") from None
        if not rec.trials:
            raise DeviceError(f"replay:{self.path}: the recording holds no intact trial")
        if rec.problems:
            raise DeviceError(f"replay:{self.path}: damaged recording ({rec.problems[0]}); a replay "
                              f"needs every trial")
        trials = sorted(rec.trials, key=lambda t: t.index)
        self._stimulus = np.concatenate([t.stimulus for t in trials])
        self._response = np.concatenate([t.response for t in trials])
        self._starts = np.cumsum([0] + [len(t.stimulus) for t in trials])
        self._indices = [t.index for t in trials]
        described = rec.attrs.get("device", {}) if isinstance(rec.attrs.get("device"), dict) else {}
        rate = float(described.get("rate_hz", rec.attrs.get("rate_hz", 0.0)) or 0.0)
        if rate <= 0:
            raise DeviceError(f"replay:{self.path}: the recording names no sample rate")
        channels = DeviceChannels(
            stimulus=_channels(described.get("stimulus"), "stim", self._stimulus.shape[1], self._stimulus),
            response=_channels(described.get("response"), "resp", self._response.shape[1], self._response),
            rate_hz=rate)
        super().__init__(channels)
        self.recorded_device = described
        self._n_written = self._n_read = 0

    def _open(self) -> None:
        self._n_written = self._n_read = 0

    def _close(self) -> None:
        pass

    def _write(self, block: np.ndarray) -> None:
        a = self._n_written
        recorded = self._stimulus[a:a + len(block)]
        if len(recorded) < len(block):
            raise DeviceError(f"replay:{self.path}: the run writes past the recording's end "
                              f"({len(self._stimulus)} stimulus samples); a replay needs the protocol "
                              f"it was recorded with")
        differ = np.flatnonzero(np.any(recorded != block, axis=1))
        if differ.size:
            k = a + int(differ[0])
            t = int(np.searchsorted(self._starts, k, side="right")) - 1
            raise DeviceError(f"replay:{self.path}: the stimulus differs from the recording at trial "
                              f"{self._indices[t]:06d}, sample {k - self._starts[t]} (written "
                              f"{np.round(block[differ[0]], 6).tolist()} V, recorded "
                              f"{np.round(recorded[differ[0]], 6).tolist()} V); a replay needs the "
                              f"protocol, dataset and encoder it was recorded with")
        self._n_written += len(block)

    def expected_stimulus(self, n: int) -> np.ndarray:
        """The next ``n`` recorded stimulus samples ``(n, n_stimulus)`` volts: the only block this
        device accepts next (fewer rows at the recording's end)."""
        return self._stimulus[self._n_written:self._n_written + n].copy()

    def _read(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        a = self._n_read
        if a + n > len(self._response):
            raise DeviceError(f"replay:{self.path}: asked for samples {a}..{a + n - 1}, the recording "
                              f"holds {len(self._response)}")
        self._n_read += n
        return self._response[a:a + n].copy(), (a + np.arange(n)) / self.channels.rate_hz

    def _stimulus_position(self) -> int:
        return self._n_written

    def describe(self) -> dict:
        return {**super().describe(), "replayed_from": str(self.path), "recorded_device": self.recorded_device}


def from_spec(address: str, request) -> ReplayDevice:
    """``replay:REC.h5`` -> a ReplayDevice; its stimulus channels must match the request's count."""
    if not address:
        raise DeviceError("replay: spec needs a recording path, e.g. replay:run.h5")
    device = ReplayDevice(address)
    if len(device.channels.stimulus) != request.n_stimulus:
        raise DeviceError(f"replay:{address}: recorded {len(device.channels.stimulus)} stimulus channels, "
                          f"the protocol needs {request.n_stimulus}")
    return device
