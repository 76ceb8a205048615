"""Regression tests for the safety defects of issue 10: S1 channel-key spellings, S4 first step from the
idle output, S5 potentiostat potential quantisation, S7 block boundaries, S8 NaN / inf / absurd numbers,
S9 where electrode impedances come from, and the monitor's state round trip."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from prclab.drivers import SimDevice
from prclab.drivers.potentiostat import MethodScript
from prclab.errors import PrclabError
from prclab.protocols.protocol import parse_protocol
from prclab.protocols.runner import prepare, run_trials, safety_limits
from prclab.protocols.recording import RecordingWriter
from prclab.protocols.safety import SCHEMA, SafetyError, SafetyMonitor, resolve_limits, validate_trials
from prclab.reservoir import EchoStateNetwork

BASE = """
[protocol]
sample_rate_hz = 100.0
block_samples = 5

[device]
spec = "{spec}"

[stimulus]
electrodes = 2
low_V = -0.5
high_V = 0.5

[task]
dataset = "toy.npz"

[timing]
washout_s = 0.05
rest_s = 0.03
"""


def _table(**given):
    return {**{k: d for k, (_, d) in SCHEMA.items()}, **given}


def _protocol(extra: str = "", spec: str = "sim:esn", path=None):
    return parse_protocol(BASE.format(spec=spec) + extra, path)


def _toy(tmp_path, amplitude: float = 1.0) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "toy.npz", X=amplitude * rng.normal(size=(6, 10, 2)), lengths=np.full(6, 10),
             y=np.array(["a", "b"] * 3), split=np.array(["train"] * 4 + ["test"] * 2))


# -- S1: a channel table is named by its canonical index, or refused ----------------------------------
@pytest.mark.parametrize("name", ["01", "001", "+1", "1.0", "¹", "١", "１", "1_0", " 1", "0x1", "-0"])
def test_non_canonical_channel_names_are_refused_in_one_line(name):
    toml_key = f'"{name}"'
    with pytest.raises(PrclabError) as info:
        _protocol(f"\n[safety.channels.{toml_key}]\nhigh_V = 0.1\n", path="p.toml")
    message = str(info.value)
    assert "\n" not in message and message.startswith("p.toml: [safety.channels.")
    assert "plain decimal digits" in message


def test_the_canonical_name_is_applied_to_its_channel(tmp_path):
    protocol = _protocol("\n[safety.channels.1]\nhigh_V = 0.1\n")
    assert protocol["safety"]["channels"] == {1: {"high_V": 0.1}}  # keyed by integer index
    assert safety_limits(protocol).high_V.tolist() == [0.5, 0.1]
    _toy(tmp_path)
    with pytest.raises(SafetyError, match="channel 1"):  # the override is in force at validation
        prepare(_protocol("\n[safety.channels.1]\nhigh_V = 0.1\n", path=tmp_path / "p.toml"))


# -- S8: NaN and misplaced inf refused for every numeric key, absurd sizes bounded ---------------------
FLOAT_SAFETY = [k for k, (t, _) in SCHEMA.items() if t is float]


@pytest.mark.parametrize("key", FLOAT_SAFETY)
def test_nan_is_refused_for_every_numeric_safety_key(key):
    with pytest.raises(PrclabError, match=f"{key}"):
        _protocol(f"\n[safety]\n{key} = nan\n")
    if key in SCHEMA and key not in ("shannon_k", "dc_window_s", "ramp_s"):
        with pytest.raises(PrclabError, match=f"{key}"):
            _protocol(f"\n[safety.channels.0]\n{key} = nan\n")


@pytest.mark.parametrize("key, ok", [("high_V", True), ("max_current_A", True), ("max_slew_V_per_s", True),
                                     ("max_charge_per_phase_C", True), ("impedance_ohm", False),
                                     ("electrode_area_cm2", False), ("max_dc_charge_C", False),
                                     ("max_charge_density_C_per_cm2", False), ("dc_window_s", False),
                                     ("ramp_s", False), ("shannon_k", False)])
def test_inf_only_where_it_means_no_limit(key, ok):
    if ok:
        _protocol(f"\n[safety]\n{key} = inf\n")
    else:
        with pytest.raises(PrclabError, match=key):
            _protocol(f"\n[safety]\n{key} = inf\n")
    with pytest.raises(PrclabError, match=key):
        _protocol(f"\n[safety]\n{key} = -inf\n")


@pytest.mark.parametrize("table, key, value", [
    ("protocol", "sample_rate_hz", "inf"), ("protocol", "sample_rate_hz", "nan"),
    ("protocol", "block_samples", "1000000000000"), ("protocol", "repetitions", "1000000000000"),
    ("protocol", "seed", "-1"), ("protocol", "seed", "100000000000000000000"),
    ("timing", "washout_s", "nan"), ("timing", "rest_s", "inf"), ("timing", "washout_s", "1e12"),
    ("stimulus", "electrodes", "1000000000"), ("stimulus", "high_V", "inf"), ("stimulus", "low_V", "nan"),
    ("task", "max_items", "1000000000000"), ("encoder", "amplitude", "nan"),
    ("encoder", "samples_per_frame", "1000000000000"), ("safety", "dc_window_s", "1e12"),
])
def test_non_finite_and_absurd_protocol_numbers_are_one_line_errors(table, key, value):
    text = BASE.format(spec="sim:esn")
    section = f"[{table}]"
    if re.search(rf"^{key} = ", text, re.M):  # every key of BASE appears once
        text = re.sub(rf"^{key} = .*$", f"{key} = {value}", text, count=1, flags=re.M)
    elif section in text:
        text = text.replace(f"{section}\n", f"{section}\n{key} = {value}\n")
    else:
        text += f"\n{section}\n{key} = {value}\n"
    with pytest.raises(PrclabError) as info:
        parse_protocol(text)
    assert key in str(info.value) and "\n" not in str(info.value)


def test_a_dc_window_too_long_for_memory_is_refused():
    with pytest.raises(PrclabError, match="dc_window_s"):
        resolve_limits(_table(living=True, impedance_ohm=1e3, max_charge_per_phase_C=1e-6, dc_window_s=3600),
                       1, 1e5, (-0.5, 0.5), 0.0)


# -- S9: impedances from [safety] or the simulated substrate actually run -----------------------------
def test_substrate_name_must_agree_with_the_sim_device_run():
    protocol = _protocol('\n[substrate]\nname = "potato"\n')
    with pytest.raises(PrclabError, match=r"\[substrate\] name = 'potato'.*sim:esn"):
        protocol.substrate_for(protocol["device"]["spec"])
    with pytest.raises(PrclabError, match=r"\[substrate\] name = 'potato'.*sim:esn"):
        safety_limits(protocol)  # a run on the file's own device
    assert protocol.substrate_for("sim:potato") == "potato"       # --device sim:potato agrees
    assert protocol.substrate_for("nidaq:Dev1") == "potato"       # an emulator runs [substrate]
    assert _protocol()["substrate"]["name"] == "esn"  # no [substrate] name: the spec's model
    assert _protocol().substrate_for("sim:hydrogel") == "hydrogel"


def test_a_hardware_protocol_needs_a_declared_impedance():
    for key, extra in [("max_current_A", "max_current_A = 1e-4"),
                       ("charge", "max_charge_per_phase_C = 1e-6"),
                       ("living", "living = true\nmax_dc_charge_C = 1e-6")]:
        protocol = _protocol(f"\n[substrate]\nname = \"potato\"\n[safety]\n{extra}\n", spec="nidaq:Dev1")
        with pytest.raises(PrclabError, match=r"set \[safety\] impedance_ohm.*none is declared for this device"):
            safety_limits(protocol)  # a potato's r_access_ohm does not describe the hardware
    protocol = _protocol("\n[safety]\nimpedance_ohm = 5e3\nmax_current_A = 1e-4\n", spec="nidaq:Dev1")
    assert safety_limits(protocol).abs_V.tolist() == pytest.approx([0.5, 0.5])


def test_the_sim_substrates_own_declared_impedance_is_used():
    potato = _protocol('\n[substrate]\nparams = { nodes = 10, r_access_ohm = 4e3 }\n[safety]\n'
                       'max_current_A = 1e-5\n', spec="sim:potato")
    assert safety_limits(potato).abs_V.tolist() == pytest.approx([0.04, 0.04])
    with pytest.raises(PrclabError, match="impedance_ohm"):  # an ESN declares no electrodes
        safety_limits(_protocol("\n[safety]\nmax_current_A = 1e-5\n", spec="sim:esn"))
    # the device actually run decides: a sim device over another substrate
    from prclab.reservoir import make_substrate
    device = SimDevice(make_substrate("potato", 2, nodes=10, r_access_ohm=1e3, dt=0.01), 100.0)
    assert safety_limits(potato, device).abs_V.tolist() == pytest.approx([0.01, 0.01])


# -- S4: the first step is measured from the idle output (0 V) ----------------------------------------
def test_first_step_is_checked_from_the_idle_output(tmp_path):
    _toy(tmp_path)
    text = BASE.format(spec="sim:esn").replace("low_V = -0.5", "low_V = 0.1") + \
        "\n[safety]\nmax_slew_V_per_s = 20.0\n"
    with pytest.raises(SafetyError, match="trial 0, channel 0, sample 0: slew 30 V/s"):
        prepare(parse_protocol(text, tmp_path / "p.toml"))  # rest 0.3 V, reached from 0 V in one sample
    lim = resolve_limits(_table(max_slew_V_per_s=20.0), 1, 100.0, (0.1, 0.5), 0.3)
    SafetyMonitor(lim, idle_V=0.3).check(np.full((3, 1), 0.3), lambda r: (0, r))  # a device idling there


# -- S7: validation and the run agree at the exact edge, whatever the block size ----------------------
def test_block_boundaries_never_change_the_verdict_at_an_exact_edge():
    rng = np.random.default_rng(7)
    for case in range(60):
        n, c = int(rng.integers(20, 200)), int(rng.integers(1, 3))
        x = np.where(rng.random((n, c)) < 0.1, -1, 1) * rng.uniform(0.01, 0.5, (n, c))
        x = np.repeat(x, rng.integers(1, 6), axis=0)[:n]
        base = resolve_limits(_table(impedance_ohm=1e3, living=True, max_dc_charge_C=1.0,
                                     max_charge_per_phase_C=1.0, dc_window_s=0.1), c, 100.0, (-0.5, 0.5), 0.0)
        m = SafetyMonitor(base)
        m.check(x, lambda r: (0, r))
        probe = SafetyMonitor(base)                    # the exact phase charges and DC values reached
        phase, _, _, _ = probe._phase_charge(x)
        net, lagged = probe._net_charge(x)
        rule = case % 2
        edge = (phase if rule == 0 else np.abs(net - lagged)).max()
        for limit, accepted in [(edge, True), (np.nextafter(edge, 0), False)]:
            table = _table(impedance_ohm=1e3, living=True, dc_window_s=0.1,
                           max_charge_per_phase_C=limit if rule == 0 else 1.0,
                           max_dc_charge_C=limit if rule == 1 else 1.0)
            lim = resolve_limits(table, c, 100.0, (-0.5, 0.5), 0.0)
            verdicts = set()
            for block in [n, 1, 2, 3, 7, 13, int(rng.integers(1, n + 1))]:
                monitor = SafetyMonitor(lim)
                try:
                    for a in range(0, n, block):
                        monitor.check(x[a:a + block], lambda r, a=a: (0, a + r))
                    verdicts.add("accepted")
                except SafetyError as exc:
                    verdicts.add(str(exc))
            assert verdicts == {"accepted"} if accepted else (len(verdicts) == 1 and "accepted" not in verdicts)


def test_validation_and_runner_agree_on_a_protocol_at_the_edge(tmp_path):
    _toy(tmp_path, 5.0)
    text = BASE.format(spec="sim:esn") + "\n[safety]\nimpedance_ohm = 1e3\n"
    protocol = parse_protocol(text + "max_charge_per_phase_C = 1.0\n", tmp_path / "p.toml")
    trials = prepare(protocol)[2]
    probe = SafetyMonitor(safety_limits(protocol))  # charge checked (far below the limit)
    edge = 0.0
    for t in trials:
        edge = max(edge, probe._phase_charge(t.waveform)[0].max())
        probe.check(t.waveform, lambda r: (0, r))
    at_edge = parse_protocol(text + f"max_charge_per_phase_C = {float(edge)!r}\n", tmp_path / "p.toml")
    trials = prepare(at_edge)[2]                                  # accepted at validation ...
    for block in (1, 3, 5, 64):                                   # ... and by the runner at any block size
        device = SimDevice(EchoStateNetwork(2, units=8, seed=0), 100.0)
        with RecordingWriter(tmp_path / f"r{block}.h5", {}, fsync=False) as writer, device:
            run_trials(trials, device, writer, block, monitor=SafetyMonitor(safety_limits(at_edge)))


# -- the monitor's state: plain arrays, exact round trip ----------------------------------------------
def test_monitor_state_round_trips_as_plain_arrays():
    lim = resolve_limits(_table(impedance_ohm=1e3, living=True, max_charge_per_phase_C=1e-3,
                                max_slew_V_per_s=100.0, dc_window_s=0.05, ramp_s=0.1), 2, 100.0,
                         (-0.5, 0.5), 0.0)
    rng = np.random.default_rng(3)
    x = np.clip(np.cumsum(rng.normal(0, 0.05, (80, 2)), axis=0), -0.4, 0.4) * np.linspace(0, 1, 80)[:, None]
    whole, split = SafetyMonitor(lim), SafetyMonitor(lim)
    whole.check(x, lambda r: (0, r))
    split.check(x[:33], lambda r: (0, r))
    state = split.state()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    restored = SafetyMonitor(lim)
    restored.load_state({k: v.copy() for k, v in state.items()})
    restored.check(x[33:], lambda r: (0, r))
    for key, value in whole.state().items():
        np.testing.assert_array_equal(restored.state()[key], value, err_msg=key)
    with pytest.raises(PrclabError, match="'ring'"):
        restored.load_state({**state, "ring": np.zeros((3, 2))})
    with pytest.raises(PrclabError, match="'prev'"):
        restored.load_state({**state, "prev": np.array([np.nan, 0.0])})


# -- S5: potentials are quantised toward 0 V, never outward ---------------------------------------------
def test_potentiostat_potentials_never_round_outward():
    rng = np.random.default_rng(5)
    v = np.concatenate([rng.uniform(-1, 1, 2000), [0.4999996, -0.5999996, 0.1000004, 0.8, -0.6, 0.0]])
    script = MethodScript(1e-4).script(v, 100.0)
    sent = np.array([int(m) for m in re.findall(r"meas_loop_ca p c (-?\d+)u", script)]) * 1e-6
    assert len(sent) == len(v)
    assert (np.abs(sent) <= np.abs(v) + 1e-12).all()            # |E| sent never exceeds |E| checked
    on_grid = np.round(v[:50], 6)                                 # values on the 1 uV grid are kept
    np.testing.assert_array_equal(re.findall(r"meas_loop_ca p c (-?\d+)u", MethodScript(1e-4).script(
        on_grid, 100.0)), [str(int(round(x * 1e6))) for x in on_grid])
    assert np.abs(sent - v).max() < 1e-6 + 1e-12
    lo, hi = (int(g) for g in re.search(r"set_range_minmax da (-?\d+)u (-?\d+)u", script).groups())
    assert lo * 1e-6 >= v.min() - 1e-12 and hi * 1e-6 <= v.max() + 1e-12
    assert math.isclose(int(re.search(r"set_e (-?\d+)u", script).group(1)) * 1e-6, v[0], abs_tol=1e-6)


# -- typos and wrong types in [encoder] are refused at load, with the nearest valid name ---------------
@pytest.mark.parametrize("line, message", [
    ("amplitud = 0.5", r"^protocol: \[encoder\] unknown key 'amplitud'; did you mean 'amplitude'\?"),
    ('multiplex = "yes"', r"\[encoder\] multiplex must be bool, got 'yes'"),
    ("n_mfcc = 13.5", r"\[encoder\] n_mfcc must be int")])
def test_encoder_typos_and_types_are_refused_at_load(line, message):
    with pytest.raises(PrclabError, match=message):
        _protocol(f"\n[encoder]\n{line}\n")


def test_encoder_parameters_given_are_passed_on():
    protocol = _protocol("\n[encoder]\nmultiplex = true\nhop_s = 0.02\n")
    assert protocol.encoder_extra == {"multiplex": True, "hop_s": 0.02}
