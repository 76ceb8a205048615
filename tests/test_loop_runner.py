"""The closed-loop runner: every tick recorded, the overrun policy, the safety layer before the device,
a SIGKILL leaves every flushed tick readable, and one-line errors through `prclab loop`."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from prclab.cli import main
from prclab.drivers import DeviceRequest
from prclab.drivers.sim import SimDevice
from prclab.errors import PrclabError
from prclab.experiments.envs import Box, Pong, make_decoder, make_env
from prclab.protocols.loop import read_loop, run_loop
from prclab.protocols.loop_codes import RandomDecoder
from prclab.protocols.protocol import parse_protocol
from prclab.protocols.recording import read_recording
from prclab.protocols.rig import make_rig
from prclab.protocols.safety import SafetyError

PROTOCOL = """
[protocol]
name = "loop-test"
sample_rate_hz = 1000.0
seed = 3
[device]
spec = "sim:esn"
[substrate.params]
units = 40
[stimulus]
electrodes = 8
low_V = -0.5
high_V = 0.5
[loop]
duration_s = {duration}
flush_ticks = {flush}
{loop}
[environment]
name = "pong"
[feedback]
{feedback}
"""


def protocol(duration=1.0, flush=30, loop="", feedback="", extra=""):
    return parse_protocol(PROTOCOL.format(duration=duration, flush=flush, loop=loop, feedback=feedback) + extra)


def rig(p):
    s = p["stimulus"]
    return make_rig(p["device"]["spec"], DeviceRequest(
        n_stimulus=s["electrodes"], rate_hz=p.rate_hz, stimulus_range_V=(s["low_V"], s["high_V"]),
        substrate=p.substrate_for(p["device"]["spec"]), substrate_params=p["substrate"]["params"],
        seed=p["protocol"]["seed"]))


def run(p, out, env=None, decoder=None, device=None):
    device = device or rig(p)
    return run_loop(p, device, out, env or make_env(p), decoder or make_decoder(p, len(device.channels.response)),
                    baseline_env=make_env(p))


def test_every_tick_is_recorded_in_flushed_segments(tmp_path):
    p = protocol(duration=1.0, flush=30)
    result = run(p, tmp_path / "r.h5")
    assert result["ticks"] == 100 and result["clock"] == "simulated" and result["simulated_s"] == 1.0
    assert result["latency_p50_ms"] > 0 and result["latency_max_ms"] >= result["latency_p99_ms"]
    rec = read_loop(tmp_path / "r.h5")
    assert rec.ticks == 100 and rec.problems == []
    assert rec["observation"].shape == (100, 2) and rec["action"].shape == (100, 1)
    assert np.all((rec["observation"] >= 0) & (rec["observation"] <= 1))
    trials = read_recording(tmp_path / "r.h5").trials
    assert [t.index for t in trials] == [0, 1, 2, 3] and [len(t.stimulus) for t in trials] == [300, 300, 300, 100]
    stim = np.concatenate([np.asarray(t.stimulus) for t in trials])
    assert stim.shape == (1000, 8) and np.abs(stim).max() == pytest.approx(0.075)  # the sensory pulses
    assert np.asarray(trials[0].response).shape == (300, 40)
    attrs = read_recording(tmp_path / "r.h5").attrs
    assert attrs["kind"] == "closed-loop" and attrs["sessions"][-1]["stopped"] == "end"
    assert attrs["sessions"][-1]["loop_result"]["ticks"] == 100


def test_overrun_policy_skip_and_stop(tmp_path):
    class Slow(RandomDecoder):
        def decide(self, window, keep):
            time.sleep(0.004)
            return super().decide(window, keep)

    p = protocol(duration=0.1, loop='lead_s = 0.001\noverrun = "skip"')
    result = run(p, tmp_path / "skip.h5", decoder=Slow(0))
    assert result["overruns"] == result["skipped"] == 10
    rec = read_recording(tmp_path / "skip.h5")
    assert all(np.all(np.asarray(t.stimulus) == 0.0) for t in rec.trials)  # rest written instead
    assert read_loop(tmp_path / "skip.h5")["skipped"].all()
    p = protocol(duration=0.3, loop='lead_s = 0.001\noverrun = "count"')  # a 4 Hz pulse comes by 250 ms
    result = run(p, tmp_path / "count.h5", decoder=Slow(0))
    assert result["overruns"] == 30 and result["skipped"] == 0
    assert read_loop(tmp_path / "count.h5")["late"].all()
    assert any(np.asarray(t.stimulus).any() for t in read_recording(tmp_path / "count.h5").trials)
    p = protocol(duration=0.1, loop='lead_s = 0.001\noverrun = "stop"')
    device = rig(p)
    with pytest.raises(PrclabError, match=r"tick 0 took .* over the lead time of 1 ms"):
        run(p, tmp_path / "stop.h5", decoder=Slow(0), device=device)
    assert device.last_stop["outputs_at_rest"]
    assert read_recording(tmp_path / "stop.h5").attrs["sessions"][-1]["stopped"].startswith("error")


class SpyDevice(SimDevice):
    """The in-process simulated device, keeping every block it is handed."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.blocks = []

    def _write(self, block):
        self.blocks.append(block.copy())
        super()._write(block)


class WildEnv(Pong):
    """Pong whose observations are replaced by arbitrary numbers and whose events come at random."""

    def __init__(self, values, **k):
        super().__init__(**k)
        self.values = values
        self.i = 0

    def step(self, action):
        obs, r, term, trunc, info = super().step(action)
        self.i += 1
        v = self.values[self.i % len(self.values)]
        info["event"] = (None, "hit", "miss")[self.i % 3] if v > 0.5 else info["event"]
        return np.array([v, -v], np.float32), r, term, trunc, info


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.floats(-5, 5), min_size=1, max_size=8), sensory=st.floats(0, 0.3),
       miss=st.floats(0, 0.3), mode=st.sampled_from(["stimulus", "silent", "none", "rest", "shuffled"]))
def test_fuzzed_environments_never_put_an_out_of_limit_sample_on_the_device(tmp_path_factory, values,
                                                                            sensory, miss, mode):
    limit = 0.2
    p = protocol(duration=0.3, loop=f"sensory_V = {sensory}", feedback=f'mode = "{mode}"\nmiss_V = {miss}\n'
                 f"miss_s = 0.1\npause_s = 0.05", extra=f"[safety]\nhigh_V = {limit}\nlow_V = -{limit}\n")
    from prclab.reservoir import make_substrate
    device = SpyDevice(make_substrate("esn", 8, units=20, dt=1e-3), 1000.0, (-0.5, 0.5))
    out = tmp_path_factory.mktemp("fuzz") / "f.h5"
    try:
        run(p, out, env=WildEnv(values), decoder=RandomDecoder(1), device=device)
    except SafetyError:
        assert max(sensory, miss) > limit  # refused only when asked for more than the limit
    written = np.concatenate(device.blocks)
    assert np.abs(written).max() <= limit + 1e-12


class WildDecoder(RandomDecoder):
    """A decoder whose outputs are arbitrary: out of [-1, 1], huge, NaN, infinite or not numbers."""

    def __init__(self, outputs):
        super().__init__(0)
        self.outputs, self.i = outputs, 0

    def decide(self, window, keep):
        self.i += 1
        return self.outputs[self.i % len(self.outputs)]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(outputs=st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6),
                                  st.just("up"), st.just(None)), min_size=1, max_size=6),
       discrete=st.booleans(), mode=st.sampled_from(["stimulus", "silent", "none", "shuffled"]))
def test_fuzzed_decoders_never_put_an_out_of_limit_sample_on_the_device(tmp_path_factory, outputs, discrete,
                                                                        mode):
    limit = 0.1
    p = protocol(duration=0.2, feedback=f'mode = "{mode}"\nmiss_V = 0.08\nhit_V = 0.09\nmiss_s = 0.05\n'
                 f"pause_s = 0.03", extra=f"[safety]\nhigh_V = {limit}\nlow_V = -{limit}\n")
    from prclab.reservoir import make_substrate
    device = SpyDevice(make_substrate("esn", 8, units=20, dt=1e-3), 1000.0, (-0.5, 0.5))
    env = WildEnv([0.9, 0.1, 0.6])  # events at random: every feedback design plays
    if discrete:
        env.action_space = type("Discrete", (), {"n": 3})()
    finite = all(isinstance(u, (int, float)) and np.isfinite(u) for u in outputs)
    try:
        result = run(p, tmp_path_factory.mktemp("fuzz") / "d.h5", env=env, decoder=WildDecoder(outputs),
                     device=device)
        assert finite and result["ticks"] == 20
    except PrclabError as exc:  # a non-number or non-finite output stops the loop, in one line
        assert not finite and "the [loop] decoder returned" in str(exc) and "\n" not in str(exc)
    written = np.concatenate(device.blocks)
    assert np.abs(written).max() <= limit + 1e-12
    assert device.last_stop["outputs_at_rest"]


def test_action_spaces_the_decoder_cannot_produce_are_refused(tmp_path):
    env = Pong()
    env.action_space = Box(-1, 1, (3,))
    with pytest.raises(PrclabError, match="neither discrete nor one bounded value") as err:
        run(protocol(), tmp_path / "x.h5", env=env)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "x.h5").exists() or read_loop(tmp_path / "x.h5").ticks == 0


def test_a_tick_shorter_than_the_devices_block_is_refused(tmp_path):
    class Blocky(SimDevice):
        min_block_samples = 20  # a driver that can only play whole blocks of 20 samples

    p = protocol()  # 10 ms ticks at 1 kHz: 10 samples
    from prclab.reservoir import make_substrate
    device = Blocky(make_substrate("esn", 8, units=20, dt=1e-3), 1000.0, (-0.5, 0.5))
    with pytest.raises(PrclabError, match=r"tick_s = 0.01 s \(10 samples\) is shorter than .* block of 20") as err:
        run(p, tmp_path / "b.h5", device=device)
    assert "\n" not in str(err.value) and not (tmp_path / "b.h5").exists()


CHILD = textwrap.dedent("""
    import os, signal, sys
    import h5py
    from prclab.protocols.recording import RecordingWriter
    from prclab.cli import main

    where, at = sys.argv[1].split(":")
    state = {"segment": -1}
    append, create = RecordingWriter.append, h5py.Group.create_dataset

    def patched_append(self, index, *a, **k):
        state["segment"] = index
        if where == "before" and index == int(at):
            os.kill(os.getpid(), signal.SIGKILL)
        append(self, index, *a, **k)

    def patched_create(self, name, *a, **k):
        out = create(self, name, *a, **k)
        if where == "inside" and name == "response" and state["segment"] == int(at):
            self.file.flush()  # the segment's group reaches the file, its checksum never does
            os.kill(os.getpid(), signal.SIGKILL)
        return out

    RecordingWriter.append, h5py.Group.create_dataset = patched_append, patched_create
    sys.exit(main(["loop", sys.argv[2], "--out", sys.argv[3]]))
""")


@pytest.mark.parametrize("where", ["before:3", "inside:3"])
def test_sigkill_keeps_every_flushed_tick_readable(tmp_path, where):
    path = tmp_path / "p.toml"
    path.write_text(PROTOCOL.format(duration=600.0, flush=20, loop="", feedback=""))
    out = tmp_path / "k.h5"
    proc = subprocess.run([sys.executable, "-c", CHILD, where, str(path), str(out)], capture_output=True,
                          timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-500:]
    rec = read_loop(out)
    assert rec.ticks == 60  # segments 0-2 flushed; the ticks of segment 3 were in memory or half written
    assert np.all(rec["latency_s"] > 0)
    # a killed writer leaves HDF5's "open for write" flag: the segments come back from their records
    assert all("recovered" in p or "unreadable" in p or "000003" in p for p in rec.problems)
    from prclab.experiments.loop_report import write_loop_report
    summary = write_loop_report(out, tmp_path / "report").read_text()  # the report draws the flushed ticks
    assert "| ticks | 60 |" in summary and "| random paddle, hits per rally | n/a |" in summary




@pytest.mark.parametrize("replace, message", [
    (('name = "pong"', 'name = "pongg"'), "[environment] name 'pongg' unknown; did you mean 'pong'?"),
    (('name = "pong"', 'name = "gymnasium:CartPole-v1"'), None),
    (("flush_ticks = 30", "flush_ticks = 30\ntick_s = 0.0005"), "a tick must be a whole number of samples"),
    (("flush_ticks = 30", 'flush_ticks = 30\nup_channels = [99]'), "must name response channels 0..39"),
    (("[stimulus]", "[task]\ndataset = 'x.npz'\n[stimulus]"), "plays no dataset: drop [task]"),
    (("[loop]", "[loopp]"), "unknown table '[loopp]'"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, replace, message):
    text = PROTOCOL.format(duration=0.1, flush=30, loop="", feedback="").replace(*replace)
    (tmp_path / "p.toml").write_text(text)
    if message is None:  # gymnasium: runs where installed, else names the missing package
        try:
            import gymnasium  # noqa: F401
            pytest.skip("gymnasium installed")
        except ImportError:
            message = "needs Gymnasium"
    code = main(["loop", str(tmp_path / "p.toml"), "--out", str(tmp_path / "o.h5")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_cli_json_and_run_refuses_a_loop(tmp_path, capsys):
    (tmp_path / "p.toml").write_text(PROTOCOL.format(duration=0.5, flush=25, loop="", feedback=""))
    assert main(["loop", str(tmp_path / "p.toml"), "--out", str(tmp_path / "o.h5"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("mean_rally_length", "mean_rally_length_last_5min", "random_paddle_rally_length",
                "aces_fraction", "ticks", "overruns", "latency_p50_ms", "latency_p99_ms", "latency_max_ms"):
        assert key in result
    assert result["ticks"] == 50
    assert main(["run", str(tmp_path / "p.toml"), "--out", str(tmp_path / "r.h5")]) == 2
    assert "run it with prclab loop" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["dishbrain_pong", "pong_esn_rls"])
def test_shipped_examples_run(tmp_path, name):
    from conftest import ROOT
    text = (ROOT / "protocols" / "examples" / f"{name}.toml").read_text()
    p = parse_protocol(text.replace("duration_s = 1200.0", "duration_s = 0.2"))
    assert p["loop"]["duration_s"] == 0.2 and p.closed_loop
    result = run(p, tmp_path / "e.h5")
    assert result["ticks"] == 20 and read_loop(tmp_path / "e.h5").ticks == 20
