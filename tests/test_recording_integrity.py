"""Recording integrity under damage (issue 10, R1-R3, R7-R9, external storage): a cut file keeps every
trial finished before the cut, edited labels are named, flipped attribute bits are named, a full disk is
one line and resumable, a second writer is refused, non-finite responses are flagged, and nothing outside
the file is followed."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from prclab.errors import PrclabError
from prclab.protocols.recording import FORMAT_VERSION, RecordingWriter, count_intact_trials, read_recording, \
    trial_digest


def write(path: Path, n_trials: int = 20, n: int = 40, sizes: list | None = None, nan_in=(),
          **meta) -> Path:
    rng = np.random.default_rng(0)
    metadata = {"protocol_text": "p", "rate_hz": 100.0, "device": {"device": "x", "rate_hz": 100.0},
                "readout": {"features": "mean+last"}, **meta}
    with RecordingWriter(path, metadata, fsync=False) as w:
        for i in range(n_trials):
            resp = rng.normal(size=(n, 3))
            if i in nan_in:
                resp[3, 1] = np.nan
            w.append(i, rng.uniform(-.5, .5, (n, 2)), resp, np.arange(n) / 100.0,
                     state={"x": rng.normal(size=4)}, item=i, item_id=f"row{i}", label="ab"[i % 2],
                     split="train" if i < n_trials * 0.7 else "test", repetition=0, stim_start=5,
                     stim_stop=n - 5)
            if sizes is not None:
                sizes.append(path.stat().st_size)
    return path


# -- R2: truncation -----------------------------------------------------------------------------------
def test_truncation_sweep_keeps_every_trial_finished_before_the_cut(tmp_path):
    sizes: list[int] = []
    rec = write(tmp_path / "r.h5", sizes=sizes)
    data = rec.read_bytes()
    cuts = np.unique(np.linspace(0, len(data) - 1, 120).astype(int))
    assert len(cuts) >= 100
    cut_file = tmp_path / "cut.h5"
    worst, kept_total, refused = 0.0, 0, 0
    for cut in cuts:
        cut_file.write_bytes(data[:cut])
        finished = {k for k, s in enumerate(sizes) if s <= cut}
        t0 = time.perf_counter()
        try:
            got = read_recording(cut_file)
        except PrclabError as exc:  # only where nothing was finished: one line naming the file
            assert not finished, (cut, str(exc))
            assert "\n" not in str(exc) and str(cut_file) in str(exc)
            refused += 1
            continue
        finally:
            worst = max(worst, time.perf_counter() - t0)
        indices = {t.index for t in got.trials}
        assert finished <= indices, (cut, sorted(finished - indices))
        assert indices <= finished | {max(finished, default=-1) + 1}, cut  # at most the one in flight
        assert got.attrs["protocol_text"] == "p"
        kept_total += len(indices)
        for t in got.trials:  # recovered trials are the recorded ones
            assert t.label == "ab"[t.index % 2] and t.response.shape == (40, 3)
    assert worst < 2.0, worst
    print(f"truncation sweep: {len(cuts)} cuts of {len(data)} bytes, {kept_total} trials kept, "
          f"{refused} refused (nothing finished), max read {worst * 1000:.1f} ms")


def test_a_cut_recording_trains_and_resumes(tmp_path):
    from prclab.experiments.recorded import train_on_recording

    sizes: list[int] = []
    rec = write(tmp_path / "r.h5", sizes=sizes)
    with open(rec, "r+b") as fh:
        fh.truncate(sizes[17] + 10)
    result = train_on_recording(rec)
    assert result["n_train"] + result["n_test"] >= 18
    assert result["problems"][0].startswith("file truncated:")
    with RecordingWriter.resume(rec, "p", fsync=False) as w:  # rebuilt from the records, then reopened
        assert w.n_done >= 18 and w.last_state is not None
    assert len(read_recording(rec).trials) == w.n_done and not read_recording(rec).problems
    assert list(tmp_path.glob("r.h5.damaged-*"))  # the original is kept beside it


# -- R1: every attr under the checksum ---------------------------------------------------------------
@pytest.mark.parametrize("key, value", [("label", "b"), ("split", "train"), ("item", 7), ("item_id", "rowX"),
                                        ("stim_start", 6), ("repetition", 1)])
def test_an_edited_attribute_is_detected_and_named(tmp_path, key, value):
    rec = write(tmp_path / "r.h5", n_trials=14)
    with h5py.File(rec, "r+") as f:
        f["trials"]["000012"].attrs[key] = value
    got = read_recording(rec)
    assert 12 not in {t.index for t in got.trials} and len(got.trials) == 13
    assert got.problems == [f"trial 000012: {key} edited or damaged (checksum mismatch)"]


def test_label_and_split_edits_are_named_together(tmp_path):
    rec = write(tmp_path / "r.h5", n_trials=14)
    with h5py.File(rec, "r+") as f:
        f["trials"]["000012"].attrs["label"] = "b"
        f["trials"]["000012"].attrs["split"] = "train"
    assert read_recording(rec).problems == ["trial 000012: label/split edited or damaged (checksum mismatch)"]


def test_format_1_recordings_still_read_and_newer_formats_are_refused(tmp_path):
    old = tmp_path / "v1.h5"
    with h5py.File(old, "w") as f:
        f.attrs.update({"format": "prclab-recording", "format_version": 1, "protocol_text": "p"})
        g = f.create_group("trials").create_group("000000")
        arrays = [np.ones((4, 2)), np.zeros((4, 3)), np.arange(4.0)]
        for k, a in zip(("stimulus", "response", "timestamps"), arrays):
            g[k] = a
        g.attrs.update({"index": 0, "item": 0, "item_id": "r", "label": "a", "split": "train",
                        "repetition": 0, "stim_start": 0, "stim_stop": 4, "sha256": trial_digest(*arrays)})
    got = read_recording(old)
    assert len(got.trials) == 1 and not got.problems
    rec = write(tmp_path / "r.h5", n_trials=2)
    with h5py.File(rec, "r+") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
        del f["recovery"]  # no record to restore it from: a genuinely newer file
    with pytest.raises(PrclabError, match=f"format_version {FORMAT_VERSION + 1} .*upgrade prclab"):
        read_recording(rec)


# -- R3: flipped bits in attributes ------------------------------------------------------------------
def test_flipped_bits_in_file_attributes_are_named_and_no_trial_is_lost(tmp_path):
    rec = write(tmp_path / "r.h5", substrate={"name": "potato", "nodes": 30})
    data = bytearray(rec.read_bytes())
    flips = 0
    for needle in (b'{"name": "potato"', b'"features": "mean+last"', b'prclab-recording'):
        at = data.find(needle)
        assert at > 0, needle
        for bit in range(0, 8 * min(len(needle), 6), 5):
            damaged = bytearray(data)
            damaged[at + bit // 8] ^= 1 << (bit % 8)
            path = tmp_path / "flip.h5"
            path.write_bytes(bytes(damaged))
            got = read_recording(path)
            assert len(got.trials) == 20, (needle, bit)
            assert got.attrs["substrate"] == {"name": "potato", "nodes": 30}
            assert got.attrs["readout"] == {"features": "mean+last"} and got.attrs["format"] == "prclab-recording"
            assert any("file attribute" in p for p in got.problems), (needle, bit, got.problems)
            flips += 1
    assert flips >= 20


def test_random_bit_flips_never_traceback(tmp_path):
    rec = write(tmp_path / "r.h5", n_trials=8)
    data = rec.read_bytes()
    rng = np.random.default_rng(3)
    path = tmp_path / "flip.h5"
    for at in rng.integers(0, len(data), 60):
        damaged = bytearray(data)
        damaged[at] ^= 1 << int(rng.integers(8))
        path.write_bytes(bytes(damaged))
        try:
            got = read_recording(path)
        except PrclabError as exc:
            assert "\n" not in str(exc)
            continue
        assert len(got.trials) >= 7, (int(at), got.problems)  # a flip damages at most one trial


# -- R7: disk full ------------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    where = tmp_path / "disk"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(where)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs (needs root)")
    yield where
    subprocess.run(["umount", str(where)], capture_output=True)


@pytest.mark.parametrize("margin", [None, 0], ids=["checked-before-the-trial", "full-inside-hdf5"])
def test_disk_full_is_one_line_and_leaves_a_resumable_file(small_disk, margin, monkeypatch):
    if margin is not None:  # no room check: the disk fills inside HDF5's own write
        monkeypatch.setattr(RecordingWriter, "space_margin", margin)
    rec = small_disk / "r.h5"
    rng = np.random.default_rng(0)
    with pytest.raises(PrclabError) as err:
        with RecordingWriter(rec, {"protocol_text": "p"}, fsync=True) as w:
            for i in range(1000):
                w.append(i, rng.normal(size=(200, 2)), rng.normal(size=(200, 8)), np.arange(200.0),
                         item=i, item_id="r", label="a", split="train", repetition=0, stim_start=0,
                         stim_stop=200)
    message = str(err.value)
    assert "disk full" in message and "--resume" in message and "\n" not in message
    done = w.n_done
    assert done > 3
    assert not Path(str(rec) + ".lock").exists()
    assert subprocess.run(["mount", "-o", "remount,size=4m", str(small_disk)]).returncode == 0  # room made
    got = read_recording(rec)
    assert {t.index for t in got.trials} >= set(range(done))
    with RecordingWriter.resume(rec, "p", fsync=False) as w2:
        assert w2.n_done >= done
    assert len(read_recording(rec).trials) == w2.n_done


def test_a_failed_creation_leaves_no_empty_file(small_disk):
    with open(small_disk / "filler", "wb") as fh:
        try:
            fh.write(b"\0" * (400 << 10))
        except OSError:
            pass
    rec = small_disk / "r.h5"
    with pytest.raises(PrclabError, match="disk full|write failed|cannot"):
        RecordingWriter(rec, {"protocol_text": "p" * 100_000})
    assert not rec.exists()


def test_an_empty_file_does_not_block_a_new_recording(tmp_path):
    rec = tmp_path / "r.h5"
    rec.touch()
    with pytest.raises(PrclabError, match="is empty"):
        RecordingWriter.resume(rec, "p")
    write(rec, n_trials=1)
    assert len(read_recording(rec).trials) == 1


# -- R8: one writer ------------------------------------------------------------------------------------
def test_a_second_writer_is_refused_even_with_hdf5_locking_off(tmp_path, monkeypatch):
    monkeypatch.setenv("HDF5_USE_FILE_LOCKING", "FALSE")
    rec = write(tmp_path / "r.h5", n_trials=3)
    with RecordingWriter.resume(rec, "p", fsync=False) as w:
        with pytest.raises(PrclabError, match="another prclab process is writing it"):
            RecordingWriter.resume(rec, "p")
        with pytest.raises(PrclabError, match="another prclab process|already exists"):
            RecordingWriter(rec, {})
        w.append(3, np.zeros((4, 2)), np.zeros((4, 3)), np.arange(4.0), item=3, item_id="r", label="a",
                 split="train", repetition=0, stim_start=0, stim_stop=4)
    assert len(read_recording(rec).trials) == 4
    with pytest.raises(PrclabError, match="already exists"):
        RecordingWriter(rec, {})  # exclusive create: the finished recording is never truncated
    assert len(read_recording(rec).trials) == 4


# -- R9: non-finite responses -----------------------------------------------------------------------
def test_nonfinite_responses_are_recorded_flagged_and_left_out_of_training(tmp_path):
    from prclab.experiments.recorded import train_on_recording

    rec = write(tmp_path / "r.h5", nan_in=(2, 5))
    got = read_recording(rec)
    assert len(got.trials) == 20 and not got.problems
    assert {t.index: t.nonfinite for t in got.trials if t.nonfinite} == {2: 1, 5: 1}
    assert np.isnan(got.trials[2].response[3, 1])  # the data as measured
    result = train_on_recording(rec)
    assert result["n_train"] + result["n_test"] == 18
    assert result["problems"] == ["trial(s) 000002, 000005: response holds NaN or infinite values; left "
                                  "out of training"]


# -- external links and storage ---------------------------------------------------------------------
def test_external_links_storage_and_fifos_are_refused(tmp_path):
    rec = write(tmp_path / "r.h5", n_trials=3)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(PrclabError, match="not a regular file"):
        read_recording(fifo)
    other = write(tmp_path / "other.h5", n_trials=1)
    with h5py.File(rec, "r+") as f:
        g = f["trials"]["000001"]
        del g["response"]
        g["response"] = h5py.ExternalLink(str(other), "/trials/000000/response")
        g = f["trials"]["000002"]
        del g["timestamps"]
        g.create_dataset("timestamps", shape=(40,), dtype="f8", external=[(str(fifo), 0, 320)])
    got = read_recording(rec)
    assert "ExternalLink, refused" in got.problems[0] and got.problems[0].startswith("trial 000001")
    assert "external or virtual storage, refused" in got.problems[1]
    # neither link nor external file was followed: the trials' own bytes come back from their records
    assert all(p.endswith("recovered from its record") for p in got.problems)
    foreign = read_recording(other).trials[0].response
    assert [t.index for t in got.trials] == [0, 1, 2]
    assert not np.array_equal(got.trials[1].response, foreign)


def test_count_intact_trials_is_cheap_and_right(tmp_path):
    rec = write(tmp_path / "r.h5", n_trials=5)
    assert count_intact_trials(rec) == 5
    assert count_intact_trials(tmp_path / "missing.h5") == 0


CLI_CHILD = ("import sys; from protocols.recording import RecordingWriter; "
             "RecordingWriter.space_margin = int(sys.argv[1]) if sys.argv[1] != 'default' else "
             "RecordingWriter.space_margin; from prclab.cli import main; sys.exit(main(sys.argv[2:]))")


@pytest.mark.parametrize("margin", ["default", "0"])
def test_disk_full_through_the_cli_is_one_line_then_resumes(small_disk, tmp_path, margin):
    import sys

    from test_resume import PROTOCOL

    rng = np.random.default_rng(2)
    n = 40
    np.savez(tmp_path / "toy.npz", X=rng.normal(size=(n, 60, 2)), lengths=rng.integers(40, 60, n),
             y=np.array(["a", "b"])[np.arange(n) % 2], split=np.where(np.arange(n) < 30, "train", "test"))
    proto = tmp_path / "p.toml"
    proto.write_text(PROTOCOL.replace("n_outputs = 4", "n_outputs = 64"))
    rec = small_disk / "r.h5"
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, "-c", CLI_CHILD, margin, "run", str(proto), "--out", str(rec)],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "disk full" in lines[0] and "--resume" in lines[0], proc.stderr[-2000:]
    kept = count_intact_trials(rec)
    assert kept > 0
    assert subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)]).returncode == 0
    proc = subprocess.run([sys.executable, "-c", CLI_CHILD, "default", "run", str(proto), "--resume",
                           str(rec)], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(read_recording(rec).trials) == n


def test_truncation_sweep_of_a_recording_made_by_the_runner(tmp_path, monkeypatch):
    """The same sweep over a `prclab run` recording (substrate state per trial, the safety log's
    chunks interleaved with the trials)."""
    from prclab.cli import main
    from test_resume import PROTOCOL

    rng = np.random.default_rng(2)
    n = 20
    np.savez(tmp_path / "toy.npz", X=rng.normal(size=(n, 9, 2)), lengths=rng.integers(5, 10, n),
             y=np.array(["a", "b"])[np.arange(n) % 2], split=np.where(np.arange(n) < 14, "train", "test"))
    proto = tmp_path / "p.toml"
    proto.write_text(PROTOCOL)
    rec = tmp_path / "r.h5"
    sizes, append = [], RecordingWriter.append

    def sized_append(self, *a, **k):
        append(self, *a, **k)
        sizes.append(self.path.stat().st_size)

    monkeypatch.setattr(RecordingWriter, "append", sized_append)
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(proto), "--out", str(rec)]) == 0
    assert len(sizes) == n
    data = rec.read_bytes()
    cut_file = tmp_path / "cut.h5"
    worst = 0.0
    for cut in np.unique(np.linspace(sizes[0] - 1, len(data) - 1, 100).astype(int)):
        cut_file.write_bytes(data[:cut])
        finished = {k for k, s in enumerate(sizes) if s <= cut}
        t0 = time.perf_counter()
        got = read_recording(cut_file)
        worst = max(worst, time.perf_counter() - t0)
        assert finished <= {t.index for t in got.trials}, cut
    assert worst < 2.0
