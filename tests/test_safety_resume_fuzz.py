"""Acceptance (issue 10, S3/S4): random protocols with per-phase charge, DC balance (living tissue), ramp
and slew limits, crashed at a random block, then resumed: not one out-of-limit sample reaches the device
over the whole run.

Every sample the device received - trials, the interrupted trial's played part, the ramp to rest at the
stop, the resume's lead-in - is kept in order and judged from scratch by ``reference_violations``, the
plain per-sample loop of ``test_safety`` (not the monitor).  The device is a simulated one made to act as
hardware at a stop: its ramp to rest is written to the substrate and counted as delivered.  The crash is
a device fault or a Ctrl-C raised after the device took a block (while it plays out, or in the read).
Limits are set at the edge of what each protocol reaches from a fresh start (x0.98 .. x2), so that only
the run's history can push a resumed run over.  Figures are printed and kept in ``TALLY``; measured
(320 protocols): 140 refused at validation, 172 crashed and resumed, 8 resumes refused before anything
ran, 41,488 samples delivered, 0 violations - while the pre-fix resume (monitor rebuilt from finished
trials only, no lead-in, no ramp again) delivered 314 out-of-limit samples on the same cases.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from prclab.drivers import DeviceError, SimDevice
from prclab.errors import PrclabError
from prclab.protocols.protocol import parse_protocol
from prclab.protocols.runner import prepare, run_protocol, safety_limits
from prclab.protocols.safety import SafetyError, SafetyMonitor
from prclab.reservoir import EchoStateNetwork
from test_safety import reference_violations

N_PROTOCOLS = 320

PROTOCOL = """
[protocol]
sample_rate_hz = 100.0
seed = {seed}
block_samples = {block}

[device]
spec = "sim:esn"

[substrate]
params = {{ units = 8 }}

[stimulus]
electrodes = 2
low_V = {low}
high_V = {high}

[task]
dataset = "toy.npz"

[encoder]
amplitude = {amplitude}
samples_per_frame = {spf}

[timing]
washout_s = {washout}
rest_s = 0.03

[safety]
impedance_ohm = {impedance}
max_slew_V_per_s = {slew}
max_charge_per_phase_C = {charge}
living = {living}
max_dc_charge_C = {dc}
dc_window_s = {window}
ramp_s = {ramp}
{channels}
"""


class Crash(Exception):
    pass


class FuzzDevice(SimDevice):
    """A simulated device that keeps every sample it was given (``delivered``, shared across sessions),
    ramps to rest as hardware does (the ramp reaches the substrate and is delivered), and crashes after
    its ``crash_at``-th write: in the write (after the block was taken) or in the following read."""

    def __init__(self, delivered: list, crash_at: int | None = None, where: str = "write",
                 exc: type[BaseException] = DeviceError):
        super().__init__(EchoStateNetwork(2, units=8, seed=0), 100.0, stimulus_range_V=(-1.0, 1.0))
        self.delivered, self.crash_at, self.where, self.exc = delivered, crash_at, where, exc
        self.writes = 0

    def _write(self, block):
        super()._write(block)
        self.delivered.append(np.array(block, dtype=np.float64))
        self.writes += 1
        if self.where == "write" and self.writes == self.crash_at:
            raise self.exc("fuzz: crash after the device took the block")

    def _read(self, n):
        if self.where == "read" and self.writes == self.crash_at:
            self.crash_at = None
            raise self.exc("fuzz: crash in the read")
        return super()._read(n)

    def _rest(self, start_V):
        ramp = self._ramp(start_V)
        super()._write(ramp)
        self.delivered.append(ramp)
        self.output_V = self.rest_V.copy()
        return "ramped to rest (fuzz)"


def random_case(rng: np.random.Generator) -> tuple[dict, float]:
    pick = lambda *options: options[int(rng.integers(len(options)))]  # noqa: E731
    values = dict(
        seed=int(rng.integers(1000)), block=int(rng.integers(1, 30)), low=pick(-0.5, -0.3),
        high=pick(0.3, 0.5), amplitude=pick(0.3, 0.7, 1.0), spf=int(rng.integers(1, 4)),
        washout=pick(0.0, 0.0, 0.03), impedance=pick(1e3, 1e4), slew="inf", charge="inf",
        living=pick("false", "true", "true"), dc="1.0", window=pick(0.05, 0.2, 0.5), ramp=pick(0.0, 0.1, 0.4),
        channels=pick("", "[safety.channels.1]\nhigh_V = 0.25"))
    return values, pick(0.1, 0.5, 2.0)


def at_the_edge(values: dict, folder, rng) -> str:
    """The protocol with its slew, phase-charge and DC limits set just above (or, at times, below) what
    its compiled stimulus reaches from a fresh start: validation accepts it narrowly, and only the run's
    history (a resume) can push it over."""
    loose = parse_protocol(PROTOCOL.format(**{**values, "charge": "1.0", "living": "true", "channels": ""}), folder / "p.toml")
    stream = np.concatenate([t.waveform for t in prepare(loose)[2]])
    probe = SafetyMonitor(safety_limits(loose))
    phase = float(probe._phase_charge(stream)[0].max())
    net, lagged = probe._net_charge(stream)
    slew = float(np.abs(np.diff(stream, axis=0, prepend=0.0)).max()) * 100.0
    factor = lambda: float(rng.choice([0.98, 1.0, 1.0001, 1.02, 1.2, 2.0]))  # noqa: E731
    return PROTOCOL.format(**{
        **values, "slew": repr(slew * factor()) if rng.random() < 0.5 else "inf",
        "charge": repr(max(phase, 1e-12) * factor()) if rng.random() < 0.7 else "inf",
        "dc": repr(max(float(np.abs(net - lagged).max()), 1e-12) * factor())})


def _toy(folder, scale: float, rng) -> None:
    n, steps = 6, 8
    np.savez(folder / "toy.npz", X=rng.normal(0, scale, (n, steps, 2)).cumsum(axis=1),
             lengths=rng.integers(3, steps + 1, n), y=np.array(["a", "b"])[np.arange(n) % 2],
             split=np.where(np.arange(n) < 4, "train", "test"))


TALLY = {"protocols": 0, "refused_at_validation": 0, "refused_at_resume": 0, "crashed_and_resumed": 0,
         "samples_delivered": 0, "violations": 0}


def test_resume_fuzz_delivers_no_out_of_limit_sample(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("prclab.protocols.recording.os.fsync", lambda fd: None)  # durability is not tested here
    rng = np.random.default_rng(20261202)
    TALLY.update({k: 0 for k in TALLY})
    for case in range(N_PROTOCOLS):
        folder = tmp_path / f"c{case}"
        folder.mkdir()
        values, scale = random_case(rng)
        _toy(folder, scale, rng)
        text = at_the_edge(values, folder, rng)
        (folder / "p.toml").write_text(text)
        protocol = parse_protocol(text, folder / "p.toml")
        TALLY["protocols"] += 1
        try:
            prepared = prepare(protocol)
        except SafetyError:
            TALLY["refused_at_validation"] += 1
            continue
        trials, block = prepared[2], protocol["protocol"]["block_samples"]
        writes = sum(-(-len(t.waveform) // block) for t in trials)
        delivered: list[np.ndarray] = []
        crash = FuzzDevice(delivered, int(rng.integers(1, writes + 1)), ("write", "read")[case % 2],
                           (DeviceError, KeyboardInterrupt, Crash)[case % 3])
        out = folder / "r.h5"
        with pytest.raises((DeviceError, KeyboardInterrupt, Crash)):
            run_protocol(protocol, crash, out, prepared=prepared)
        try:
            run_protocol(protocol, FuzzDevice(delivered), out, resume=True, prepared=prepared)
            TALLY["crashed_and_resumed"] += 1
        except SafetyError as exc:
            assert "resume refused, nothing was run" in str(exc) or "refused, nothing was run" in str(exc)
            TALLY["refused_at_resume"] += 1
        stream = np.concatenate(delivered)
        violations = int(reference_violations(stream, safety_limits(protocol)).sum())
        TALLY["samples_delivered"] += stream.size
        TALLY["violations"] += violations
        assert violations == 0, f"case {case}: {violations} out-of-limit samples\n{text}"
    with capsys.disabled():
        print(f"\nsafety resume fuzz: {TALLY}")
    accepted = TALLY["protocols"] - TALLY["refused_at_validation"]
    assert TALLY["protocols"] >= 300 and accepted > 0 and TALLY["refused_at_validation"] > 0
    assert TALLY["crashed_and_resumed"] > 0 and TALLY["violations"] == 0


def test_an_old_recording_without_a_safety_log_is_not_resumed(tmp_path):
    rng = np.random.default_rng(1)
    values, _ = random_case(rng)
    text = PROTOCOL.format(**{**values, "living": "false"})
    _toy(tmp_path, 0.1, rng)
    (tmp_path / "p.toml").write_text(text)
    protocol = parse_protocol(text, tmp_path / "p.toml")
    prepared = prepare(protocol)  # seed 1 draws a protocol the limits accept
    delivered: list = []
    with pytest.raises(DeviceError):
        run_protocol(protocol, FuzzDevice(delivered, 3), tmp_path / "r.h5", prepared=prepared)
    with h5py.File(tmp_path / "r.h5", "r+") as f:
        assert "safety_delivered" in f  # the crash came after blocks were logged
        del f["safety_delivered"]
    with pytest.raises(PrclabError, match="no safety log"):
        run_protocol(protocol, FuzzDevice(delivered), tmp_path / "r.h5", resume=True, prepared=prepared)
