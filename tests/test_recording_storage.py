"""Format 3 storage (issue 15, item 1): responses as the device's counts (+ conversion) or float32 for a
simulated substrate, every array chunked and compressed with gzip or lzf (plain h5py reads it), the
checksum over the stored values, cut files recovered from the chunks their records list, format 2 files
still read; and ``prclab info`` (item 5)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from prclab.cli import main
from prclab.drivers import SimDevice
from prclab.drivers.base import Adc
from prclab.errors import PrclabError
from prclab.protocols.recording import FORMAT_VERSION, RecordingWriter, read_recording
from prclab.protocols.recording_info import recording_info
from prclab.protocols.recording_storage import Storage, storage_for
from prclab.reservoir import make_substrate

V2 = Path(__file__).parent / "data" / "recording_v2.h5"
ROWS, COLS = 300, 5


def write(path: Path, storage: Storage, n_trials: int = 4, response=None) -> list[np.ndarray]:
    """Trials of random responses (two row blocks each); returns the responses given."""
    rng = np.random.default_rng(2)
    given = []
    with RecordingWriter(path, {"protocol_text": "p", "rate_hz": 1000.0}, fsync=False, storage=storage) as w:
        for i in range(n_trials):
            r = rng.normal(0, 0.05, (ROWS, COLS)) if response is None else response(i)
            given.append(r)
            w.append(i, np.full((ROWS, 2), 0.1 * i), [r[:100], r[100:]], np.arange(ROWS) / 1000.0,
                     item=i, item_id=f"i{i}", label="ab"[i % 2], split="train" if i < 2 else "test",
                     repetition=0, stim_start=10, stim_stop=ROWS - 10)
    return given


COUNTS = Storage("counts", (1e-4,) * COLS, (0.01,) * COLS)


@pytest.mark.parametrize("storage, dtype, tol", [
    (Storage("float64"), "float64", 0.0),
    (Storage("float32"), "float32", 1e-8),
    (COUNTS, "int16", 0.5e-4 + 1e-12),
    (Storage("counts", (1e-4,) * COLS, (0.01,) * COLS, "lzf"), "int16", 0.5e-4 + 1e-12),
    (Storage("float64", compression="none"), "float64", 0.0),
])
def test_stored_as_asked_and_read_back_in_float64_units(tmp_path, storage, dtype, tol):
    given = write(tmp_path / "r.h5", storage)
    rec = read_recording(tmp_path / "r.h5")
    assert rec.problems == [] and rec.attrs["format_version"] == FORMAT_VERSION == 3
    for t, r in zip(rec.trials, given):
        got = np.asarray(t.response)
        assert got.dtype == np.float64 and np.abs(got - r).max() <= tol
        np.testing.assert_array_equal(t.response[50:60, 1:3], got[50:60, 1:3])  # a hyperslab decodes too
    with h5py.File(tmp_path / "r.h5", "r") as f:  # plain h5py, no plugin
        ds = f["trials/000001/response"]
        assert str(ds.dtype) == dtype and ds.chunks is not None
        assert ds.compression == {"none": None}.get(storage.compression, storage.compression)
        if dtype == "int16":  # NWB's convention: value = offset + conversion * count
            np.testing.assert_allclose(ds.attrs["offset"] + ds.attrs["conversion"] * ds[()], given[1],
                                       atol=tol)


def test_counts_widen_to_int32_and_nonfinite_trials_stay_float64(tmp_path):
    big = lambda i: np.full((ROWS, COLS), 10.0 if i == 1 else 0.5)  # 10 V / 1e-4 V: beyond int16
    given = write(tmp_path / "r.h5", COUNTS, response=lambda i: np.where(
        np.arange(ROWS)[:, None] == 7, np.nan, big(i)) if i == 2 else big(i))
    with h5py.File(tmp_path / "r.h5", "r") as f:
        assert [str(f[f"trials/{i:06d}/response"].dtype) for i in range(4)] == \
            ["int16", "int32", "float64", "int16"]
    rec = read_recording(tmp_path / "r.h5")
    assert rec.problems == [] and rec.trials[2].nonfinite == COLS
    np.testing.assert_allclose(np.asarray(rec.trials[1].response), given[1])
    assert np.isnan(np.asarray(rec.trials[2].response)[7]).all()


@pytest.mark.parametrize("edit", ["count", "conversion", "offset"])
def test_an_edited_count_or_conversion_fails_the_checksum(tmp_path, edit):
    write(tmp_path / "r.h5", COUNTS)
    with h5py.File(tmp_path / "r.h5", "r+") as f:
        ds = f["trials/000002/response"]
        if edit == "count":
            ds[3, 3] += 1
        else:
            ds.attrs[edit] = ds.attrs[edit] * 1.01
    rec = read_recording(tmp_path / "r.h5")
    assert [t.index for t in rec.trials] == [0, 1, 3]
    assert rec.problems == ["trial 000002: checksum mismatch"]


def test_a_cut_file_is_recovered_from_the_chunks_its_records_list(tmp_path):
    given = write(tmp_path / "r.h5", COUNTS, n_trials=6)
    data = (tmp_path / "r.h5").read_bytes()
    with h5py.File(tmp_path / "r.h5", "r") as f:  # cut inside trial 4's response
        at = f["trials/000004/response"].id.get_chunk_info(0).byte_offset + 10
    (tmp_path / "cut.h5").write_bytes(data[:at])
    rec = read_recording(tmp_path / "cut.h5")
    assert [t.index for t in rec.trials] == [0, 1, 2, 3]
    assert rec.problems[0].startswith("file truncated")
    np.testing.assert_allclose(np.asarray(rec.trials[3].response), given[3], atol=0.5e-4 + 1e-12)
    with RecordingWriter.resume(tmp_path / "cut.h5", "p", fsync=False) as w:  # rebuilt with its storage
        assert w.n_done == 4 and w.storage == COUNTS
    assert read_recording(tmp_path / "cut.h5").problems == []


def test_the_format_2_fixture_still_opens_trains_and_is_refused_for_resume(tmp_path):
    rec = read_recording(V2)  # written by prclab before format 3 (tests/data/recording_v2.toml)
    assert rec.attrs["format_version"] == 2 and rec.problems == []
    assert [(t.label, t.split, t.response.shape) for t in rec.trials] == \
        [("1", "test", (268, 3)), ("0", "test", (160, 3)), ("0", "train", (300, 3)), ("1", "train", (288, 3))]
    # the values the format 2 reader returned for it
    assert float(np.asarray(rec.trials[0].response).sum()) == -0.047437876124463374
    assert float(np.asarray(rec.trials[2].stimulus).sum()) == 3.3141659244857067
    copy = tmp_path / "v2.h5"
    shutil.copyfile(V2, copy)
    with pytest.raises(PrclabError, match="format 2 recordings cannot be resumed"):
        RecordingWriter.resume(copy, rec.attrs["protocol_text"])


def test_storage_follows_the_device_and_the_protocol():
    sim = SimDevice(make_substrate("potato", 2, dt=1e-3, n_outputs=3), 1000.0)
    assert storage_for(None, sim).response == "float32"  # a simulated substrate
    assert storage_for({"dtype": "float64"}, sim).response == "float64"
    assert storage_for({"dtype": "counts", "resolution": 1e-5, "compression": "lzf"}, sim) == \
        Storage("counts", (1e-5,) * 3, (0.0,) * 3, "lzf")
    with pytest.raises(PrclabError, match="needs a resolution"):
        storage_for({"dtype": "counts"}, sim)
    sim.adc = (Adc.spanning(16, -10.0, 10.0),) * 3  # as the NI driver declares its inputs
    got = storage_for(None, sim)
    assert got.response == "counts" and got.conversion == (20 / 65536,) * 3 and got.offset == (0.0,) * 3


def test_prclab_info_text_json_and_one_line_for_damage(tmp_path, capsys):
    write(tmp_path / "r.h5", COUNTS)
    assert main(["info", str(tmp_path / "r.h5")]) == 0
    out = capsys.readouterr().out
    assert "4 intact, 0 damaged" in out and "2 classes: a x2, b x2" in out and "int16 counts of 0.0001" in out
    assert "4 of 4 trials verified" in out and "format 3" in out
    assert main(["info", str(tmp_path / "r.h5"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info == recording_info(tmp_path / "r.h5")
    assert info["trials"]["splits"] == {"train": 2, "test": 2} and info["channels"]["response"]["count"] == COLS
    assert info["duration_s"] == pytest.approx(4 * ROWS / 1000.0)
    with h5py.File(tmp_path / "r.h5", "r+") as f:  # tampered
        f["trials/000001"].attrs["label"] = "a"
    data = (tmp_path / "r.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[:len(data) * 2 // 3])
    (tmp_path / "foreign.h5").write_bytes(b"not a recording at all\n" * 40)
    for name, why in [("r.h5", "trial 000001: label edited or damaged"), ("cut.h5", "file truncated"),
                      ("foreign.h5", "no HDF5 superblock")]:
        assert main(["info", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and why in err and "Traceback" not in err
