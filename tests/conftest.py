"""Shared fixtures: paths to shipped and shared data, small synthetic datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
FSDD_SUBSET = ROOT / "protocols" / "data" / "fsdd_subset"


def shared_data(relative: str) -> Path:
    """Path inside ../shared/data, or skip the test with the reason when it is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"needs {path} (the full datasets in ../shared/data), which is absent here")
    return path


@pytest.fixture
def toy_npz(tmp_path) -> Path:
    """A learnable labelled-sequence .npz: 3 classes of noisy sinusoids of different frequency,
    variable lengths, 2 channels, with a train/test split."""
    rng = np.random.default_rng(0)
    n, max_len = 60, 40
    x = np.zeros((n, max_len, 2))
    lengths = rng.integers(25, max_len + 1, n)
    y = np.array(["slow", "mid", "fast"])[np.arange(n) % 3]
    freq = {"slow": 0.05, "mid": 0.12, "fast": 0.25}
    for i in range(n):
        t = np.arange(lengths[i])
        x[i, :lengths[i], 0] = np.sin(2 * np.pi * freq[y[i]] * t + rng.uniform(0, 6))
        x[i, :lengths[i], 1] = rng.normal(0, 0.3, lengths[i])
    split = np.where(np.arange(n) < 42, "train", "test")
    path = tmp_path / "toy.npz"
    np.savez(path, X=x, lengths=lengths, y=y, split=split)
    return path


BARE_NAMES = ("reservoir", "drivers", "protocols", "readouts", "hardware_sims", "experiments")


def pytest_collection_finish(session):
    """Tests import the installed names (``prclab.reservoir`` ...), never a second copy of a module
    through the repository root on ``sys.path``."""
    import sys
    stray = sorted(name for name in sys.modules if name.split(".")[0] in BARE_NAMES)
    if stray:
        raise pytest.UsageError(f"a second copy of prclab modules was imported by bare name: {stray[:5]}")


def one_line_error(argv, capsys) -> str:
    """Run ``prclab ARGV``: it must exit 2 with one ``prclab: error:`` line and no traceback; returns it."""
    from prclab.cli import main

    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("prclab: error: ") and "Traceback" not in err
    return err
