"""Recordings read lazily (issue 11, scope 5): one Trial type; per-trial arrays are h5py-backed views read
on access (reading one trial reads no other); format_version checked on opening; a resume reads only what
it needs (bytes counted with /proc/self/io); the safety monitor resumes from its checkpoint exactly as from
the whole log."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from prclab.errors import PrclabError
from prclab.experiments.recorded import train_on_recording
from prclab.protocols.recording import FORMAT_VERSION, RecordingWriter, Trial, TrialArray, read_recording

ROWS, COLS = 4000, 16  # one trial's response: 512 kB


def read_bytes() -> int:
    """Bytes this process has read through read(2)/pread(2) so far (``rchar``)."""
    return int(dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())["rchar"])


def write(path: Path, n_trials: int = 12) -> Path:
    rng = np.random.default_rng(1)
    with RecordingWriter(path, {"protocol_text": "p", "rate_hz": 1000.0,
                                "readout": {"features": "mean"}}, fsync=False) as w:
        for i in range(n_trials):
            w.note_delivered(np.full((ROWS, 2), 0.1 * i))
            w.append(i, np.full((ROWS, 2), 0.1 * i), rng.normal(i % 2, 1.0, (ROWS, COLS)),
                     np.arange(ROWS) / 1000.0, state={"x": np.full(3, float(i))}, item=i, item_id=f"r{i}",
                     label="ab"[i % 2], split="train" if i < 8 else "test", repetition=0, stim_start=100,
                     stim_stop=ROWS - 100)
    return path


def test_a_trial_is_one_type_whose_arrays_are_read_on_access_one_trial_at_a_time(tmp_path):
    rec_path = write(tmp_path / "r.h5")
    with h5py.File(rec_path, "r") as f:
        want = f["trials"]["000005"]["response"][()]
    before = read_bytes()
    rec = read_recording(rec_path, verify=False)
    opened = read_bytes() - before
    assert opened < want.nbytes  # no trial's arrays were read to open it
    t = rec.trials[5]
    assert isinstance(t, Trial) and isinstance(t.response, TrialArray)
    assert (t.response.shape, t.response.dtype, len(t.response)) == (want.shape, np.float64, ROWS)
    before = read_bytes()
    got = np.asarray(t.response)
    assert read_bytes() - before < 1.1 * want.nbytes  # this trial's response, no other array
    np.testing.assert_array_equal(got, want)
    before = read_bytes()
    np.testing.assert_array_equal(t.response[1000:1010, :3], want[1000:1010, :3])
    assert read_bytes() - before < 100_000  # those rows: one HDF5 sieve buffer (64 kB), not 512 kB
    stim, resp = t.stimulus_window
    np.testing.assert_array_equal(resp, want[100:ROWS - 100])
    assert float((t.timestamps - t.timestamps[0])[-1]) == (ROWS - 1) / 1000.0  # arithmetic reads it
    assert t.response.T.shape == (COLS, ROWS) and t.waveform is t.stimulus
    with rec:  # held open for the reads inside the block: a resume in this process is refused, not
        np.testing.assert_array_equal(np.asarray(t.response), want)  # taken for a damaged file
        with pytest.raises(PrclabError, match="this process has it open for reading"):
            RecordingWriter.resume(rec_path, "p")
    with RecordingWriter.resume(rec_path, "p", fsync=False) as w:  # each read opened and closed the file
        assert w.n_done == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.h5"]  # nothing rebuilt, nothing left beside
    np.testing.assert_array_equal(np.asarray(t.response), want)


def test_verify_checks_the_arrays_and_load_checks_one_trial(tmp_path):
    rec_path = write(tmp_path / "r.h5")
    with h5py.File(rec_path, "r+") as f:
        f["trials"]["000003"]["response"][7, 2] += 1.0
    assert read_recording(rec_path).problems == ["trial 000003: checksum mismatch"]
    with read_recording(rec_path, verify=False) as rec:  # the bytes are not looked at ...
        assert len(rec.trials) == 12 and not rec.problems
        with pytest.raises(PrclabError, match="^trial 000003: checksum mismatch$"):
            rec.load(rec.trials[3])  # ... until the trial is loaded
        loaded = rec.load(rec.trials[4])
        assert isinstance(loaded.response, np.ndarray) and loaded.label == "a"
    with h5py.File(rec_path, "r+") as f:
        f["trials"]["000004"].attrs["label"] = "b"
    with read_recording(rec_path, verify=False) as rec:  # attrs still checked without the arrays
        assert rec.problems == ["trial 000004: label edited or damaged (checksum mismatch)"]
    result = train_on_recording(rec_path)  # both named and left out; one read of each trial
    assert result["n_train"] + result["n_test"] == 10
    assert "trial 000003: checksum mismatch" in result["problems"]


@pytest.mark.parametrize("version, message", [
    (FORMAT_VERSION + 1, rf"{FORMAT_VERSION + 1} is not one prclab \S+ reads \(1, 2, 3\); upgrade prclab"),
    (0, r"0 is not one prclab \S+ reads \(1, 2, 3\); not a valid recording"),
    ("2", "'2' is not a version number")])
def test_a_newer_or_unknown_format_version_is_refused_on_opening(tmp_path, version, message):
    rec_path = write(tmp_path / "r.h5", n_trials=2)
    with h5py.File(rec_path, "r+") as f:
        f.attrs["format_version"] = version
        del f["recovery"]  # no file record to restore the written version from
    for opening in (lambda: read_recording(rec_path), lambda: read_recording(rec_path, verify=False),
                    lambda: RecordingWriter.resume(rec_path, "p")):
        with pytest.raises(PrclabError, match=f"recording {rec_path}: format_version {message}"):
            opening()


def test_a_resume_reads_what_it_needs(tmp_path):
    rec_path = write(tmp_path / "r.h5", n_trials=24)
    size = rec_path.stat().st_size
    with h5py.File(rec_path, "r+") as f:  # a crash tore the last trial's response
        f["trials"]["000023"]["response"][5, 5] += 1.0
        stored = sum(f["trials"][f"{i:06d}"][k].id.get_storage_size() for i in range(23)
                     for k in ("stimulus", "response", "timestamps"))  # compressed bytes on disk
    before = read_bytes()
    with RecordingWriter.resume(rec_path, "p", fsync=False, verify=False) as w:
        assert w.n_done == 23 and w.last_state["x"][0] == 22.0  # the torn trial is found and removed
    cheap = read_bytes() - before
    assert cheap < 3 * ROWS * COLS * 8 < size / 5  # about the last trial's arrays, not the file
    before = read_bytes()
    with RecordingWriter.resume(rec_path, "p", fsync=False) as w:  # every earlier trial checked
        assert w.n_done == 23
    assert read_bytes() - before > 0.9 * stored


def test_the_safety_monitor_resumes_from_its_checkpoint_as_from_the_whole_log(tmp_path):
    from prclab.protocols.runner import run_protocol, safety_limits
    from prclab.protocols.safety import SafetyMonitor
    from test_runner_events import Failing
    from test_safety_resume import _setup
    from test_safety_resume_fuzz import FuzzDevice

    protocol, prepared = _setup(tmp_path)  # living tissue: the DC window's ring is part of the state
    out = tmp_path / "r.h5"
    block = protocol["protocol"]["block_samples"]
    at = sum(-(-len(t.stimulus) // block) for t in prepared[2][:2]) + 2  # trial 2's second block
    with pytest.raises(RuntimeError):  # stopped inside a trial: the log runs past the last checkpoint
        run_protocol(protocol, FuzzDevice([]), out, prepared=prepared,
                     subscribers=[Failing("block_written", at)])
    limits = safety_limits(protocol, FuzzDevice([]))
    with RecordingWriter.resume(out, protocol.text) as w:
        checkpoint, tail = w.safety_resume_point()
    with h5py.File(out, "r") as f:
        whole = f["safety_delivered"][:f["safety_delivered"].attrs["n"]]
    assert checkpoint is not None and 0 < len(tail) < len(whole) and checkpoint["ring"].shape[0] > 0
    replayed, resumed = SafetyMonitor(limits), SafetyMonitor(limits)
    replayed.check(whole, lambda r: (0, r), refuse=False)
    resumed.load_state(checkpoint)
    resumed.check(tail, lambda r: (0, r), refuse=False)
    for key, value in replayed.state().items():
        np.testing.assert_array_equal(resumed.state()[key], value, err_msg=key)
    with h5py.File(out, "r+") as f:  # a checkpoint torn by a crash is not taken: the whole log is
        f["safety_checkpoint"]["q_run"][0] += 1e-9
    with RecordingWriter.resume(out, protocol.text) as w:
        checkpoint, tail = w.safety_resume_point()
    assert checkpoint is None and len(tail) == len(whole)
