"""Recordings made elsewhere: a raw binary MEA file read through SpikeInterface's
``BinaryRecordingExtractor`` with a mapping file (stimulus channels, trials from an event channel or
a CSV table); a file written by brainflow's own ``DataFilter.write_file`` (CYTON_BOARD layout) with its
marker channel as trial boundaries; an OpenBCI recording exported to MNE (``.fif``); bad mapping files
and foreign files are one line and exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prclab.cli import main

from conftest import one_line_error
from prclab.errors import PrclabError
from prclab.protocols.recording import read_recording

RATE = 2000.0
GAIN_UV = 0.25  # microvolts per count


def raw_mea(folder, n_trials: int = 40, n: int = 200, gap: int = 50):
    """A raw int16 binary file (6 interleaved channels, 2 kHz, 0.25 uV per count), as MEA systems
    write them: channels 0-3 the response, 4 the stimulus, 5 an event channel (marker code 1 or 2 on a
    trial's first sample, 9 on the sample after its last).  Label ``b`` raises the stimulus by 2 mV.
    Returns (path, stimulus volts, response volts, trial starts, labels as marker codes)."""
    rng = np.random.default_rng(7)
    total = 100 + n_trials * (n + gap)
    stim = np.zeros(total)
    codes = rng.permutation(np.arange(n_trials) % 2) + 1
    starts = 100 + np.arange(n_trials) * (n + gap)
    events = np.zeros(total)
    for a, c in zip(starts, codes):
        stim[a:a + n] = (2e-3 if c == 2 else 1e-3) * (1 + 0.3 * np.sin(np.arange(n) / 7 + rng.uniform(0, 6)))
        events[a], events[a + n] = c, 9
    smooth = np.convolve(stim, np.ones(20) / 20)[:total]
    response = smooth[:, None] * rng.uniform(0.5, 1.5, 4) + rng.normal(0, 2e-5, (total, 4))
    counts = np.rint(np.column_stack([response, stim]) / (GAIN_UV * 1e-6)).astype(np.int16)
    raw = np.column_stack([counts, events.astype(np.int16)])
    path = folder / "traces.raw"
    raw.tofile(path)
    return path, counts[:, 4] * GAIN_UV * 1e-6, counts[:, :4] * GAIN_UV * 1e-6, starts, codes


MAPPING = """
[source]
format = "binary"
path = "traces.raw"
options = {{ sampling_frequency = {rate}, num_channels = 6, dtype = "int16", gain_to_uV = {gain} }}

[channels]
stimulus = ["4"]

[trials]
{trials}
"""
EVENTS = 'event_channel = "5"\nlabels = { "1" = "a", "2" = "b" }\nend_markers = [9]'


def write_mapping(folder, trials: str = EVENTS, **replace) -> object:
    text = MAPPING.format(rate=RATE, gain=GAIN_UV, trials=trials)
    for old, new in replace.items():
        text = text.replace(old, new)
    path = folder / "session.toml"
    path.write_text(text)
    return path


def test_a_raw_binary_mea_file_comes_in_through_spikeinterface(tmp_path, capsys):
    _, stim, response, starts, codes = raw_mea(tmp_path)
    rec = read_recording(write_mapping(tmp_path))
    assert len(rec.trials) == 40 and rec.problems == []
    assert [t.label for t in rec.trials] == ["a" if c == 1 else "b" for c in codes]
    t = rec.trials[5]
    assert t.stimulus.shape == (200, 1) and t.response.shape == (200, 4)
    np.testing.assert_allclose(t.stimulus[:, 0], stim[starts[5]:starts[5] + 200])
    np.testing.assert_allclose(t.response, response[starts[5]:starts[5] + 200])
    np.testing.assert_allclose(t.timestamps[0], starts[5] / RATE)
    assert rec.attrs["rate_hz"] == RATE and rec.attrs["format"] == "spikeinterface:binary"
    assert main(["train", str(tmp_path / "session.toml"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_test"] == 10 and result["n_classes"] == 2 and result["accuracy"] > 0.9


def test_trials_from_a_csv_table_with_its_split(tmp_path):
    _, _, _, starts, codes = raw_mea(tmp_path, n_trials=8)
    rows = ["start_time,stop_time,condition,split"] + [
        f"{a / RATE},{(a + 200) / RATE},{'ab'[c - 1]},{'test' if k % 4 == 3 else 'train'}"
        for k, (a, c) in enumerate(zip(starts, codes))]
    (tmp_path / "trials.csv").write_text("\n".join(rows) + "\n")
    rec = read_recording(write_mapping(tmp_path, 'table = "trials.csv"\nlabel_column = "condition"\n'
                                                 'split_column = "split"'))
    assert [t.label for t in rec.trials] == ["ab"[c - 1] for c in codes]
    assert [t.split for t in rec.trials] == ["train", "train", "train", "test"] * 2
    assert all(len(t.response) == 200 for t in rec.trials)
    with pytest.raises(PrclabError, match=r"trials.csv: no column 'fold' \(has start_time, stop_time, "
                                          r"condition, split\)"):
        read_recording(write_mapping(tmp_path, 'table = "trials.csv"\nlabel_column = "condition"\n'
                                               'split_column = "fold"'))


def test_bad_mapping_files_are_one_line(tmp_path, capsys):
    raw_mea(tmp_path, n_trials=4)
    path = write_mapping(tmp_path)
    path.write_text(path.read_text() + "[channels2]\n")
    assert "unknown table [channels2]" in one_line_error(["train", str(path)], capsys)
    path = write_mapping(tmp_path, **{'stimulus = ["4"]': 'stimulus = ["7"]'})
    assert "channel ids are 0, 1, 2, 3, 4, 5" in one_line_error(["train", str(path)], capsys)
    path = write_mapping(tmp_path, **{'format = "binary"': 'format = "nonesuch"'})
    assert "SpikeInterface has no reader 'nonesuch'" in one_line_error(["train", str(path)], capsys)
    path = write_mapping(tmp_path, **{'path = "traces.raw"': 'path = "gone.raw"'})
    assert "gone.raw not found" in one_line_error(["train", str(path)], capsys)
    path = write_mapping(tmp_path, **{"num_channels = 6": "channels = 6"})
    assert "cannot open" in one_line_error(["train", str(path)], capsys)
    path.write_text("[source\n")
    assert "not valid TOML" in one_line_error(["train", str(path)], capsys)


def brainflow_file(path, n_trials: int = 24, length: int = 125):
    """Synthetic board data of CYTON_BOARD layout (24 rows: counter, 8 ExG in microvolts, ..., marker
    row 23, timestamps row 22) written by brainflow's ``DataFilter.write_file``; marker 1 or 2 on a
    trial's first sample.  Marker 1 adds 40 uV on channel Fp1."""
    from brainflow.board_shim import BoardIds, BoardShim
    from brainflow.data_filter import DataFilter

    board = BoardIds.CYTON_BOARD
    rng = np.random.default_rng(1)
    total = 25 + n_trials * length
    data = np.zeros((BoardShim.get_num_rows(board), total))
    exg = BoardShim.get_exg_channels(board)
    data[exg] = rng.normal(0, 5, (len(exg), total))
    codes = rng.permutation(np.arange(n_trials) % 2) + 1
    for k, v in enumerate(codes):
        a = 25 + k * length
        data[BoardShim.get_marker_channel(board), a] = v
        data[exg[0], a:a + length] += 40.0 * (v == 1)
    data[BoardShim.get_timestamp_channel(board)] = 1.7e9 + np.arange(total) / 250.0
    data[BoardShim.get_package_num_channel(board)] = np.arange(total) % 256
    DataFilter.write_file(data, str(path), "w")
    return path, data, codes


def test_a_brainflow_file_imports_with_its_markers_as_trials(tmp_path):
    path, data, codes = brainflow_file(tmp_path / "session.csv")
    rec = read_recording(path)
    assert len(rec.trials) == 24 and [t.label for t in rec.trials] == [str(c) for c in codes]
    t = rec.trials[3]
    assert t.response.shape == (125, 8) and t.stimulus.shape == (125, 0)
    np.testing.assert_allclose(t.response, data[1:9, 25 + 3 * 125:25 + 4 * 125].T * 1e-6, atol=1e-12)
    np.testing.assert_allclose(t.timestamps[0], (25 + 3 * 125) / 250.0, atol=1e-5)  # from the file's start
    assert rec.attrs["rate_hz"] == 250.0 and rec.attrs["device"]["response"][0]["name"] == "Fp1"
    mapping = tmp_path / "session.toml"
    mapping.write_text('[source]\nformat = "brainflow"\npath = "session.csv"\nboard = "cyton"\n\n'
                       '[trials]\nlabels = { "1" = "left", "2" = "right" }\n')
    assert [t.label for t in read_recording(mapping).trials] == [["left", "right"][c - 1] for c in codes]


def test_an_openbci_recording_exports_to_mne(tmp_path, capsys):
    import mne

    path, data, codes = brainflow_file(tmp_path / "session.csv")
    out = tmp_path / "session_raw.fif"
    assert main(["export", str(path), str(out), "--json"]) == 0
    raw = mne.io.read_raw_fif(out, preload=True, verbose="error")
    assert raw.info["sfreq"] == 250.0
    assert raw.ch_names == ["Fp1", "Fp2", "C3", "C4", "P7", "P8", "O1", "O2"]
    assert set(raw.get_channel_types()) == {"eeg"}
    np.testing.assert_allclose(raw.get_data(), data[1:9, 25:] * 1e-6, rtol=1e-6, atol=1e-12)
    assert list(raw.annotations.description) == [str(c) for c in codes]
    np.testing.assert_allclose(raw.annotations.onset, np.arange(24) * 0.5)


def test_foreign_brainflow_files_are_one_line(tmp_path, capsys):
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("1\t2\t3\n4\t5\t6\n")
    assert "3 columns match no board" in one_line_error(["train", str(wrong)], capsys)
    text = tmp_path / "notes.txt"
    text.write_text("hello, world\n")
    assert "brainflow file" in one_line_error(["train", str(text)], capsys)
    path, _, _ = brainflow_file(tmp_path / "s.csv", n_trials=2)
    cut = tmp_path / "cut.csv"
    cut.write_bytes(path.read_bytes()[:-40])  # the last line cut short
    err = one_line_error(["export", str(cut), str(tmp_path / "cut.nwb")], capsys)
    assert "brainflow file" in err


def test_a_session_streamed_by_brainflows_file_streamer_imports(tmp_path):
    """brainflow's own synthetic board streamed to a file by brainflow (``file://...:w``), three
    markers inserted while it streams: three trials, labelled through the mapping file."""
    import time

    from brainflow.board_shim import BoardIds, BoardShim, BrainFlowInputParams

    BoardShim.disable_board_logger()
    board = BoardShim(BoardIds.SYNTHETIC_BOARD, BrainFlowInputParams())
    board.prepare_session()
    try:
        board.start_stream(45000, f"file://{tmp_path / 'stream.csv'}:w")
        for value in (1, 2, 1):
            time.sleep(0.2)
            board.insert_marker(value)
        time.sleep(0.2)
        board.stop_stream()
    finally:
        board.release_session()
    mapping = tmp_path / "stream.toml"
    mapping.write_text('[source]\nformat = "brainflow"\npath = "stream.csv"\nboard = "synthetic"\n\n'
                       '[trials]\nlabels = { "1" = "left", "2" = "right" }\n')
    rec = read_recording(mapping)
    assert [t.label for t in rec.trials] == ["left", "right", "left"]
    data = np.loadtxt(tmp_path / "stream.csv", delimiter="\t").T
    first = int(np.flatnonzero(data[BoardShim.get_marker_channel(BoardIds.SYNTHETIC_BOARD)])[0])
    exg = BoardShim.get_exg_channels(BoardIds.SYNTHETIC_BOARD)
    t = rec.trials[0]
    assert t.response.shape[1] == 16 and rec.attrs["rate_hz"] == 250.0
    np.testing.assert_allclose(t.response, data[exg, first:first + len(t.response)].T * 1e-6)
    assert 20 <= len(t.response) <= 250  # 0.2 s at 250 Hz (50 samples), as the host's sleep allowed


def test_replaying_a_file_made_elsewhere_says_it_holds_no_protocol(tmp_path, capsys):
    path, _, _ = brainflow_file(tmp_path / "session.csv")
    err = one_line_error(["replay", str(path), "--substrate", "esn", "--out", str(tmp_path / "r.h5")], capsys)
    assert "holds no protocol" in err
