"""The safety layer: limits resolved from the protocol, and property tests that no out-of-limit sample
ever reaches a device.

The property tests judge every sample a device received with ``reference_violations``, a plain per-sample
loop written independently of the vectorised :class:`protocols.safety.SafetyMonitor`.  Charges are sums
in a different order there, so charge limits are compared with a relative tolerance of 1e-9.
"""

from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prclab.drivers import Device, SimDevice
from prclab.errors import PrclabError
from prclab.protocols.protocol import parse_protocol
from prclab.protocols.recording import RecordingWriter
from prclab.protocols.runner import prepare, run_trials, safety_limits
from prclab.protocols.safety import SafetyError, SafetyMonitor, resolve_limits, validate_trials
from prclab.reservoir import Electrode, EchoStateNetwork

TOL = 1e-9


# -- an independent reference and a device that counts what reaches it ------------------------------
def reference_violations(stream: np.ndarray, lim, tol: float = TOL) -> np.ndarray:
    """``(n, c)`` bool: samples of ``stream`` (a run from its start) that break ``lim``.

    ``tol`` > 0 forgives rounding in accumulated charges; < 0 makes the charge limits that much stricter.
    """
    n, c = stream.shape
    bad = np.zeros((n, c), bool)
    dt = 1.0 / lim.rate_hz
    full = np.maximum(lim.high_V - lim.rest_V, lim.rest_V - lim.low_V)
    for ch in range(c):
        z = lim.impedance_ohm[ch]
        prev, sign, phase_q, net = 0.0, 0.0, 0.0, [0.0]  # from the idle output, 0 V
        for t in range(n):
            v = float(stream[t, ch])
            b = not (lim.low_V[ch] <= v <= lim.high_V[ch])
            b |= abs(v) > lim.abs_V[ch]
            if t < lim.ramp:
                b |= abs(v - lim.rest_V) > (t + 1) / lim.ramp * full[ch] * (1 + 1e-9) + 1e-12
            b |= abs(v - prev) * lim.rate_hz > lim.max_slew_V_per_s[ch]
            prev = v
            if not math.isnan(z):
                s = float(np.sign(v))
                if s != sign:
                    sign, phase_q = s, 0.0
                phase_q += abs(v) / z * dt
                b |= phase_q > lim.max_phase_C[ch] * (1 + tol)
                net.append(net[-1] + v / z * dt)
                b |= abs(net[t + 1] - net[max(0, t + 1 - lim.dc_window)]) > lim.max_dc_C[ch] * (1 + tol)
            bad[t, ch] = b
    return bad


class CountingDevice(Device):
    """Wraps a device and keeps every stimulus block that reached it (after its own range check)."""

    name = "counting"

    def __init__(self, inner: Device):
        super().__init__(inner.channels)
        self.inner = inner
        self.written: list[np.ndarray] = []

    def _open(self):
        self.inner.open()

    def _close(self):
        self.inner.close()

    def _write(self, block):
        self.written.append(block.copy())
        self.inner.write(block)

    def _read(self, n):
        return self.inner.read(n)

    def _stimulus_position(self):
        return self.inner._stimulus_position()

    def stream(self, n_channels: int) -> np.ndarray:
        return np.concatenate(self.written) if self.written else np.zeros((0, n_channels))


def first_reported(exc: SafetyError) -> tuple[int, int, int]:
    m = re.search(r"trial (\d+), channel (\d+), sample (\d+)", str(exc))
    assert m, str(exc)
    return tuple(int(g) for g in m.groups())


# -- limits from the protocol ------------------------------------------------------------------------
def _table(**given):
    from prclab.protocols.safety import SCHEMA
    return {**{k: d for k, (_, d) in SCHEMA.items()}, **given}


def test_material_window_and_charge_density_come_from_the_notes():
    lim = resolve_limits(_table(material="platinum", electrode_area_cm2=1e-3, impedance_ohm=1e4),
                         2, 1000.0, (-1.0, 1.0), 0.0)
    np.testing.assert_allclose(lim.low_V, -0.6)   # Pt water window -0.6..+0.8 V (Cogan 2008)
    np.testing.assert_allclose(lim.high_V, 0.8)
    np.testing.assert_allclose(lim.max_phase_C, 50e-6 * 1e-3)  # 0.05 mC/cm2 x area
    assert "charge density" in lim.phase_rule[0]


def test_shannon_criterion_and_per_channel_overrides():
    lim = resolve_limits(_table(shannon_k=1.5, electrode_area_cm2=0.01, impedance_ohm=1e3,
                                channels={"1": {"high_V": 0.1, "electrode_area_cm2": 1e-4}}),
                         2, 1000.0, (-0.5, 0.5), 0.0)
    q0 = lim.max_phase_C[0] * 1e6   # uC
    assert math.isclose(math.log10(q0 / 0.01) + math.log10(q0), 1.5)  # log D + log Q = k
    assert lim.high_V.tolist() == [0.5, 0.1]
    assert lim.max_phase_C[1] < lim.max_phase_C[0]


@pytest.mark.parametrize("table, message", [
    (_table(max_current_A=1e-3), r"set \[safety\] impedance_ohm"),
    (_table(living=True, impedance_ohm=1e3), "living = true"),
    (_table(shannon_k=1.9), "shannon_k"),
    (_table(material="gold"), "material 'gold' unknown"),
    (_table(channels={"7": {"high_V": 0.1}}), "channel must be 0..1"),
    (_table(channels={"0": {"living": True}}), "unknown key 'living'"),
    (_table(low_V=0.6, high_V=0.7), "voltage window is empty"),
])
def test_bad_safety_tables_name_the_key(table, message):
    with pytest.raises(PrclabError, match=message):
        resolve_limits(table, 2, 1000.0, (-0.5, 0.5), 0.0)


def test_the_rigs_declared_electrodes_fill_what_safety_leaves_unset():
    declared = (Electrode(material="platinum", area_cm2=1e-3, impedance_ohm=2e3),)
    lim = resolve_limits(_table(max_current_A=1e-4), 1, 1000.0, (-1.0, 1.0), 0.0, declared)
    assert lim.abs_V[0] == pytest.approx(0.2)                      # 1e-4 A x 2 kohm
    assert (lim.low_V[0], lim.high_V[0]) == (-0.6, 0.8)             # the declared material's window
    assert lim.max_phase_C[0] == pytest.approx(50e-6 * 1e-3)        # its charge density x the area
    table = _table(max_current_A=1e-4, impedance_ohm=1e3)
    assert resolve_limits(table, 1, 1000.0, (-1.0, 1.0), 0.0, declared).abs_V[0] == pytest.approx(0.1)
    with pytest.raises(PrclabError, match="needs an electrode impedance"):  # unknown: nan, refused
        resolve_limits(_table(max_current_A=1e-4), 1, 1000.0, (-1.0, 1.0), 0.0, (Electrode("gold"),))


# -- property: monitor vs reference on random streams, random block splits ---------------------------
@st.composite
def limits_and_stream(draw):
    c = draw(st.integers(1, 3))
    rate = 100.0
    table = _table(
        impedance_ohm=draw(st.sampled_from([1e3, 1e4])),
        max_slew_V_per_s=draw(st.sampled_from([math.inf, 20.0, 80.0])),
        max_current_A=draw(st.sampled_from([math.inf, 3e-5, 3e-4])),
        max_charge_per_phase_C=draw(st.sampled_from([math.inf, 1e-7, 1e-6, 1e-5])),
        living=draw(st.booleans()), max_dc_charge_C=draw(st.sampled_from([2e-7, 2e-6])),
        dc_window_s=draw(st.sampled_from([0.05, 0.3])), ramp_s=draw(st.sampled_from([0.0, 0.1, 0.5])),
        channels={str(k): {"high_V": draw(st.sampled_from([0.2, 0.4]))}
                  for k in range(c) if draw(st.booleans())})
    lim = resolve_limits(table, c, rate, (-0.5, 0.5), 0.0)
    n = draw(st.integers(1, 120))
    kind = draw(st.sampled_from(["random", "biphasic"]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    if kind == "random":
        stream = rng.uniform(-0.55, 0.55, (n, c)) * draw(st.sampled_from([0.05, 0.3, 1.0]))
    else:  # charge-balanced biphasic pulses, positive first (Wagenaar et al. 2004)
        amp, width = draw(st.sampled_from([0.02, 0.1, 0.4])), draw(st.integers(1, 4))
        period = 2 * width + draw(st.integers(0, 10))
        t = np.arange(n) % period
        stream = np.where(t < width, amp, np.where(t < 2 * width, -amp, 0.0))[:, None].repeat(c, 1)
    cuts = sorted(draw(st.lists(st.integers(1, max(1, n - 1)), max_size=6)))
    return lim, stream, [b for b in np.split(stream, cuts) if len(b)]


@settings(max_examples=300, deadline=None)
@given(limits_and_stream())
def test_monitor_lets_no_violation_through_and_refuses_at_the_first(case):
    lim, stream, blocks = case
    monitor, written = SafetyMonitor(lim), []
    start = 0
    try:
        for block in blocks:
            monitor.check(block, lambda row, a=start: (0, a + row))
            written.append(block)
            start += len(block)
        refused = None
    except SafetyError as exc:
        refused = first_reported(exc)
    sent = np.concatenate(written) if written else np.zeros((0, stream.shape[1]))
    assert reference_violations(sent, lim).sum() == 0               # nothing out of limits got through
    lenient = reference_violations(stream, lim, TOL)
    strict = reference_violations(stream, lim, -TOL)
    if refused is None:
        assert not lenient.any()
    else:
        _, ch, row = refused
        assert strict[row, ch], "refused a sample the reference finds within limits"
        earlier = np.argwhere(lenient)
        assert (earlier[0][0], earlier[0][1]) >= (row, ch) if len(earlier) else True


# -- property: random protocols and encoders, through prepare and the runner -------------------------
PROTOCOL = """
[protocol]
sample_rate_hz = 100.0
seed = {seed}
order = "{order}"
block_samples = {block}

[device]
spec = "sim:esn"

[substrate]
name = "esn"
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
max_current_A = {current}
max_slew_V_per_s = {slew}
max_charge_per_phase_C = {charge}
living = {living}
max_dc_charge_C = 1e-5
dc_window_s = {window}
ramp_s = {ramp}
{channels}
"""


@st.composite
def random_protocols(draw):
    inf = st.just("inf")
    values = dict(
        seed=draw(st.integers(0, 1000)), order=draw(st.sampled_from(["random", "sequential"])),
        block=draw(st.integers(1, 40)), low=draw(st.sampled_from([-0.5, -0.2, 0.0])),
        high=draw(st.sampled_from([0.3, 0.5])), amplitude=draw(st.sampled_from([0.2, 0.6, 1.0])),
        spf=draw(st.integers(1, 4)), washout=draw(st.sampled_from([0.0, 0.05])),
        impedance=draw(st.sampled_from([1e3, 1e4])),
        current=draw(inf | st.sampled_from(["1e-4", "4e-4"])),
        slew=draw(inf | st.sampled_from(["30.0", "100.0"])),
        charge=draw(inf | st.sampled_from(["2e-6", "2e-5"])),
        living=draw(st.sampled_from(["false", "true"])), window=draw(st.sampled_from([0.1, 1.0])),
        ramp=draw(st.sampled_from([0.0, 0.2, 1.0])),
        channels=draw(st.sampled_from(["", "[safety.channels.1]\nhigh_V = 0.25"])))
    scale = draw(st.sampled_from([0.1, 1.0, 5.0]))
    return PROTOCOL.format(**values), scale, draw(st.integers(0, 2 ** 32 - 1))


def _toy_dataset(folder: Path, scale: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, steps = 8, 12
    x = rng.normal(0, scale, (n, steps, 2)).cumsum(axis=1)
    np.savez(folder / "toy.npz", X=x, lengths=rng.integers(4, steps + 1, n),
             y=np.array(["a", "b"])[np.arange(n) % 2], split=np.where(np.arange(n) < 6, "train", "test"))


SEEN = {"accepted": 0, "refused": 0, "samples_to_device": 0, "violations": 0}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_protocols())
def _random_protocol_case(case):
    """One random protocol: refused at validation naming a real violation, or run with no out-of-limit
    sample reaching the device; tallies both outcomes in ``SEEN``."""
    text, scale, seed = case
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _toy_dataset(folder, scale, seed)
        (folder / "p.toml").write_text(text)
        protocol = parse_protocol(text, folder / "p.toml")
        try:
            lim = safety_limits(protocol)
        except PrclabError:
            return  # an inconsistent [safety] table is refused before anything compiles
        try:
            data, encoder, trials = prepare(protocol)
        except SafetyError as exc:
            SEEN["refused"] += 1
            compiled = _unvalidated(protocol)[2]
            stream = np.concatenate([t.waveform for t in compiled])
            trial, ch, row = first_reported(exc)
            offset = sum(len(t.waveform) for t in compiled[:trial])
            assert reference_violations(stream, lim, -TOL)[offset + row, ch]
            return
        SEEN["accepted"] += 1
        device = CountingDevice(SimDevice(EchoStateNetwork(2, units=8, seed=0), 100.0,
                                          stimulus_range_V=(protocol["stimulus"]["low_V"],
                                                            protocol["stimulus"]["high_V"])))
        with RecordingWriter(folder / "r.h5", {}, fsync=False) as writer, device:
            run_trials(trials, device, writer, protocol["protocol"]["block_samples"],
                       monitor=SafetyMonitor(lim))
        sent = device.stream(2)
        assert len(sent) == sum(len(t.waveform) for t in trials)
        violations = int(reference_violations(sent, lim).sum())
        SEEN["samples_to_device"] += sent.size
        SEEN["violations"] += violations
        assert violations == 0


def _unvalidated(protocol):
    """prepare() without the safety validation (to look at what was refused)."""
    import prclab.protocols.runner as runner

    original = runner.validate_trials
    runner.validate_trials = lambda *args: None
    try:
        return runner.prepare(protocol)
    finally:
        runner.validate_trials = original


def test_random_protocols_put_no_out_of_limit_sample_on_a_device():
    """Every hypothesis example of ``_random_protocol_case``; then: the random protocols were neither all
    refused nor all accepted, and every sample that reached a device was within limits."""
    SEEN.update(accepted=0, refused=0, samples_to_device=0, violations=0)
    _random_protocol_case()
    print(f"safety property test: {SEEN}")
    assert SEEN["accepted"] > 0 and SEEN["refused"] > 0 and SEEN["violations"] == 0


# -- defence in depth: the runner refuses what validation never saw ----------------------------------
def test_runner_refuses_a_tampered_block_before_the_device_sees_it(tmp_path):
    from test_spine import PROTOCOL as SPINE, write_protocol  # a known-good toy protocol

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "toy.npz", X=rng.normal(size=(6, 10, 2)), lengths=np.full(6, 10),
             y=np.array(["a", "b"] * 3), split=np.array(["train"] * 4 + ["test"] * 2))
    protocol = parse_protocol(write_protocol(tmp_path, tmp_path / "toy.npz", SPINE).read_text(),
                              tmp_path / "toy.toml")
    _, _, trials = prepare(protocol)
    trials[2].waveform[7, 1] = 0.7  # inside the device's range (+-1 V), outside the protocol's 0.5 V
    device = CountingDevice(SimDevice(EchoStateNetwork(2, units=8, seed=0), 100.0))
    with pytest.raises(SafetyError, match="trial 2, channel 1, sample 7"):
        with RecordingWriter(tmp_path / "r.h5", {}, fsync=False) as writer, device:
            run_trials(trials, device, writer, 4, monitor=SafetyMonitor(safety_limits(protocol)))
    assert reference_violations(device.stream(2), safety_limits(protocol)).sum() == 0
    assert len(device.stream(2)) == len(trials[0].waveform) + len(trials[1].waveform) + 4
    with pytest.raises(SafetyError, match="trial 2, channel 1, sample 7"):
        validate_trials(trials, safety_limits(protocol))


def test_the_ramp_is_applied_and_recorded_not_clipped(tmp_path):
    from test_spine import PROTOCOL as SPINE, write_protocol

    rng = np.random.default_rng(1)
    np.savez(tmp_path / "toy.npz", X=rng.normal(size=(6, 10, 2)), lengths=np.full(6, 10),
             y=np.array(["a", "b"] * 3), split=np.array(["train"] * 4 + ["test"] * 2))
    text = write_protocol(tmp_path, tmp_path / "toy.npz", SPINE).read_text()
    plain = prepare(parse_protocol(text, tmp_path / "toy.toml"))[2]
    ramped = prepare(parse_protocol(text + "\n[safety]\nramp_s = 0.3\n", tmp_path / "toy.toml"))[2]
    run_plain = np.concatenate([t.waveform for t in plain])
    run_ramped = np.concatenate([t.waveform for t in ramped])
    gain = np.minimum(1, (np.arange(len(run_plain)) + 1) / 30)[:, None]
    np.testing.assert_allclose(run_ramped, run_plain * gain)  # rest level 0 V
    assert np.abs(run_ramped[:25]).max() < np.abs(run_plain[:25]).max()
