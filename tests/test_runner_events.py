"""The runner's events (issue 11, scope 4): subscribers see run_start, per trial trial_start, the blocks
written and read, trial_end, then run_stop, in that order, with what was recorded; a subscriber that
raises stops the run as a fault does (outputs to rest, recorded trials kept) and the run resumes to the
uninterrupted run's recording; the CLI's progress bar is a subscriber."""

from __future__ import annotations

import io

import numpy as np
import pytest
from tqdm import tqdm

from prclab.cli import _trial_bar
from prclab.drivers import SimDevice
from prclab.protocols.protocol import load_protocol
from prclab.protocols.recording import read_recording
from prclab.protocols.runner import EVENTS, Subscriber, prepare, run_protocol
from prclab.reservoir import EchoStateNetwork
from test_spine import PROTOCOL, write_protocol


def _device() -> SimDevice:
    return SimDevice(EchoStateNetwork(2, units=60, dt=0.01, seed=0), 100.0, stimulus_range_V=(-0.5, 0.5))


@pytest.fixture
def toy(tmp_path, toy_npz):
    text = PROTOCOL.replace("[task]\n", "[task]\nmax_items = 8\n")  # 8 train + 8 test trials
    protocol = load_protocol(write_protocol(tmp_path, toy_npz, text))
    return protocol, prepare(protocol, _device())


class Tape(Subscriber):
    """Counts blocks and keeps the order of events; checks each block against the trial it belongs to."""

    def __init__(self):
        self.events: list[tuple] = []
        self.written = self.read = 0
        self.responses: dict[int, np.ndarray] = {}

    def run_start(self, *, total, done, resume):
        self.events.append(("run_start", total, done, resume))

    def trial_start(self, *, trial):
        self.events.append(("trial_start", trial.index))

    def block_written(self, *, trial, start, block):
        if trial is None:  # a resume's lead-in to rest
            self.events.append(("lead_in", len(block)))
            return
        np.testing.assert_array_equal(block, trial.stimulus[start:start + len(block)])
        self.written += len(block)
        self.events.append(("block_written", trial.index, start))

    def block_read(self, *, samples, times):
        assert len(samples) == len(times)
        self.read += len(samples)
        self.events.append(("block_read",))

    def trial_end(self, *, trial, response, times, state, safety):
        self.responses[trial.index] = np.concatenate(response)
        assert len(times) == len(trial.stimulus) and state is not None and safety is not None
        self.events.append(("trial_end", trial.index))

    def run_stop(self, *, reason, note):
        self.events.append(("run_stop", reason, note["outputs_at_rest"]))


def test_a_subscriber_sees_every_event_in_order_and_what_was_recorded(tmp_path, toy):
    protocol, prepared = toy
    trials, block = prepared[2], protocol["protocol"]["block_samples"]
    tape = Tape()
    run_protocol(protocol, _device(), tmp_path / "r.h5", prepared=prepared, subscribers=[tape])
    want = [("run_start", len(trials), 0, False)]
    for t in trials:
        want.append(("trial_start", t.index))
        for a in range(0, len(t.stimulus), block):
            want += [("block_written", t.index, a), ("block_read",)]
        want.append(("trial_end", t.index))
    want.append(("run_stop", "end", True))
    assert tape.events == want  # a sim device returns each mark at once: no extra read
    assert {e[0] for e in tape.events} == set(EVENTS)
    assert tape.written == tape.read == sum(len(t.stimulus) for t in trials)
    with read_recording(tmp_path / "r.h5") as rec:
        assert [t.index for t in rec.trials] == sorted(tape.responses)
        for t in rec.trials:  # the subscriber saw the response the recorder wrote
            np.testing.assert_array_equal(np.asarray(t.response), tape.responses[t.index])


class Failing:
    """A plain-callable subscriber that raises at the ``at``-th ``event`` (counted from 1)."""

    def __init__(self, event: str, at: int):
        self.event, self.at, self.seen = event, at, 0

    def __call__(self, event, fields):
        self.seen += event == self.event
        if event == self.event and self.seen == self.at:
            raise RuntimeError(f"live view broke at {event} {self.at}")


@pytest.mark.parametrize("event", ["trial_end", "block_written", "block_read"])
def test_a_subscriber_that_raises_stops_the_run_safely_and_it_resumes(tmp_path, toy, event):
    protocol, prepared = toy
    block = protocol["protocol"]["block_samples"]
    reference = run_protocol(protocol, _device(), tmp_path / "ref.h5", prepared=prepared)
    out = tmp_path / "r.h5"
    device = _device()
    blocks_before = sum(-(-len(t.stimulus) // block) for t in prepared[2][:3])
    # at trial 3's end (the recorder, first, has appended it), or at its second block written or read
    at, kept = (4, 4) if event == "trial_end" else (blocks_before + 2, 3)
    with pytest.raises(RuntimeError, match="live view broke"):
        run_protocol(protocol, device, out, prepared=prepared, subscribers=[Failing(event, at)])
    assert device.last_stop["outputs_at_rest"] is True
    with read_recording(out) as rec:
        assert [t.index for t in rec.trials] == list(range(kept)) and not rec.problems
        note = rec.attrs["sessions"][-1]
    assert note["stopped"].startswith("error: ") and note["outputs_at_rest"] is True
    tape = Tape()
    run_protocol(protocol, _device(), out, prepared=prepared, resume=True, subscribers=[tape])
    assert tape.events[0] == ("run_start", len(prepared[2]), kept, True)
    assert tape.events[1][0] == "lead_in" and tape.events[3] == ("trial_start", kept)
    with read_recording(out) as got, read_recording(reference) as want:
        assert len(got.trials) == len(want.trials)
        for a, b in zip(got.trials, want.trials):
            np.testing.assert_array_equal(np.asarray(a.stimulus), np.asarray(b.stimulus))
            np.testing.assert_array_equal(np.asarray(a.response), np.asarray(b.response))


def test_the_progress_bar_is_a_subscriber_that_starts_a_resume_at_the_trials_done(tmp_path, toy):
    protocol, prepared = toy
    out = tmp_path / "r.h5"
    with pytest.raises(RuntimeError):
        run_protocol(protocol, _device(), out, prepared=prepared, subscribers=[Failing("trial_end", 10)])
    text = io.StringIO()
    with tqdm(total=len(prepared[2]), file=text, disable=False) as bar:
        run_protocol(protocol, _device(), out, prepared=prepared, resume=True, subscribers=[_trial_bar(bar)])
        assert (bar.initial, bar.n, bar.total) == (10, len(prepared[2]), len(prepared[2]))
    assert f"{len(prepared[2])}/{len(prepared[2])}" in text.getvalue()
