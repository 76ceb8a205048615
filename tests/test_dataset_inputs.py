"""Bad datasets are refused with one line, never a hang or a wrong result (issue 10, bad input)."""

import os

import numpy as np
import pytest
import soundfile as sf

from prclab.errors import PrclabError
from prclab.protocols.datasets import load_dataset


def _npz(path, **over):
    arrays = {"X": np.ones((4, 5, 2)), "lengths": np.array([5, 4, 3, 2]), "y": np.array(["a", "b", "a", "b"])}
    arrays.update(over)
    np.savez(path, **arrays)
    return path


def test_fifo_dataset_refused_without_blocking(tmp_path):
    fifo = tmp_path / "data.npz"
    os.mkfifo(fifo)
    with pytest.raises(PrclabError, match="not a regular file"):
        load_dataset(fifo)


def test_fifo_inside_wav_folder_refused(tmp_path):
    sf.write(tmp_path / "0_a_0.wav", np.zeros(100), 8000)
    os.mkfifo(tmp_path / "1_a_0.wav")
    with pytest.raises(PrclabError, match="1_a_0.wav is not a regular file"):
        load_dataset(tmp_path)


def test_nan_samples_in_float_wav_refused(tmp_path):
    audio = np.zeros(100)
    audio[10] = np.nan
    sf.write(tmp_path / "0_a_0.wav", audio, 8000, subtype="FLOAT")
    sf.write(tmp_path / "1_a_0.wav", np.zeros(100), 8000, subtype="FLOAT")
    with pytest.raises(PrclabError, match="0_a_0.wav holds NaN"):
        load_dataset(tmp_path)


@pytest.mark.parametrize("lengths", [np.array([5.0, 4.5, 3.0, 2.0]), np.array([5, 4, np.nan, 2]),
                                     np.array(["5", "4", "3", "2"])])
def test_non_integer_lengths_refused(tmp_path, lengths):
    with pytest.raises(PrclabError, match="lengths must be whole numbers"):
        load_dataset(_npz(tmp_path / "d.npz", lengths=lengths))


def test_whole_float_lengths_accepted(tmp_path):
    data = load_dataset(_npz(tmp_path / "d.npz", lengths=np.array([5.0, 4.0, 3.0, 2.0])))
    assert [len(s) for s in data.sequences] == [5, 4, 3, 2]


def test_float_labels_refused(tmp_path):
    with pytest.raises(PrclabError, match="y must hold strings or integers"):
        load_dataset(_npz(tmp_path / "d.npz", y=np.array([0.5, 1.5, 0.5, 1.5])))
