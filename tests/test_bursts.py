"""Network-burst detection on synthetic rasters whose bursts are known, and on the simulated organoid."""

import numpy as np
import pytest

from prclab.errors import PrclabError
from prclab.experiments.bursts import burst_summary, detect_bursts, plot_raster

DT = 1e-3


def poisson_raster(rng, seconds: float, units: int, rate_hz: float) -> np.ndarray:
    """Independent Poisson trains: ``(steps, units)`` 0/1 at ``DT``."""
    return (rng.random((int(round(seconds / DT)), units)) < rate_hz * DT).astype(np.float64)


def add_bursts(raster, rng, starts_s, fraction: float, length_s: float) -> None:
    """Put one spike in each of a random ``fraction`` of the units per burst, uniform within
    ``[start, start + length_s)``."""
    units = raster.shape[1]
    n = int(round(fraction * units))
    for start in starts_s:
        chosen = rng.choice(units, n, replace=False)
        steps = int(round(start / DT)) + rng.integers(0, int(round(length_s / DT)), n)
        raster[steps, chosen] = 1.0


@pytest.fixture
def known():
    rng = np.random.default_rng(0)
    raster = poisson_raster(rng, 60.0, 200, 1.0)
    # irregular intervals of known CV, as a culture's bursts are
    intervals = rng.uniform(1.5, 6.5, 11)
    starts = 2.0 + np.concatenate([[0.0], np.cumsum(intervals)])
    background = raster.sum()
    add_bursts(raster, rng, starts, 0.5, 0.02)
    return raster, starts, intervals, background


def test_known_bursts_are_found_with_their_statistics(known):
    raster, starts, intervals, background = known
    result = detect_bursts(raster, DT)
    assert result["n_bursts"] == len(starts)
    np.testing.assert_allclose(result["starts_s"], starts, atol=0.021)
    assert result["burst_rate_hz"] == pytest.approx(len(starts) / 60.0)
    assert result["ibi_cv"] == pytest.approx(intervals.std() / intervals.mean(), abs=0.02)
    assert result["ibi_mean_s"] == pytest.approx(intervals.mean(), abs=0.02)
    # half the units recruited, plus a unit's ~2 % chance of a background spike within 20 ms
    assert 0.5 <= result["recruitment_mean"] < 0.53 and result["recruitment_sd"] < 0.03
    # first to last spike of the burst's bins: the 20 ms burst, plus background spikes of its edge bins
    assert 0.015 < result["burst_duration_mean_s"] <= 0.02 + result["bin_s"]
    burst_spikes = raster.sum() - background
    assert result["fraction_spikes_in_bursts"] == pytest.approx(burst_spikes / raster.sum(), rel=0.05)
    assert result["rate_per_unit_hz"] == pytest.approx(raster.sum() / 200 / 60.0)
    assert "12 bursts" in burst_summary(result, "neuron")


def test_destroying_synchrony_removes_the_bursts(known):
    raster, *_ = known
    rng = np.random.default_rng(1)
    shifted = np.stack([np.roll(raster[:, j], rng.integers(len(raster))) for j in range(raster.shape[1])], 1)
    result = detect_bursts(shifted, DT)
    assert result["n_bursts"] == 0
    assert result["ibi_cv"] is None and result["recruitment_mean"] is None
    assert result["fraction_spikes_in_bursts"] == 0.0
    assert result["rate_per_unit_hz"] == pytest.approx(raster.sum() / 200 / 60.0)   # same spikes


def test_one_busy_unit_is_not_a_network_burst():
    rng = np.random.default_rng(2)
    raster = poisson_raster(rng, 20.0, 32, 2.0)
    raster[5000:5030, 7] = 3.0          # an electrode's own multi-unit burst, 90 spikes in 30 ms
    assert detect_bursts(raster, DT)["n_bursts"] == 0


def test_counts_per_electrode_and_coarser_bins_work():
    rng = np.random.default_rng(3)
    raster = poisson_raster(rng, 30.0, 40, 3.0) * 2       # multi-unit counts
    add_bursts(raster, rng, [5.0, 12.0, 20.0], 0.8, 0.05)
    result = detect_bursts(raster, DT, bin_s=0.025)
    assert result["n_bursts"] == 3 and result["bin_s"] == pytest.approx(0.025)
    assert result["ibi_cv"] == pytest.approx(np.std([7.0, 8.0]) / 7.5, abs=0.02)


def test_long_bursts_are_measured_whole():
    """Bursts of 300 ms (as the organoid's NMDA-sustained ones, 0.1-1 s in cultures) are found as one
    burst each, first to last spike."""
    rng = np.random.default_rng(4)
    raster = poisson_raster(rng, 40.0, 200, 1.0)
    starts = [3.0, 9.5, 14.0, 22.5, 31.0]
    for _ in range(4):                                   # each recruited unit fires ~4 spikes a burst
        add_bursts(raster, rng, starts, 0.8, 0.3)
    result = detect_bursts(raster, DT)
    assert result["n_bursts"] == len(starts)
    np.testing.assert_allclose(result["starts_s"], starts, atol=0.021)
    lengths = np.subtract(result["stops_s"], result["starts_s"])
    assert np.all((lengths > 0.28) & (lengths <= 0.3 + result["bin_s"]))


def test_a_boolean_neuron_raster_gives_the_same_bursts(known):
    raster, *_ = known
    assert detect_bursts(raster.astype(bool), DT) == detect_bursts(raster, DT)


@pytest.mark.parametrize("spikes, kwargs", [
    (np.zeros(100), {}), (np.array([["a", "b"]] * 100), {}), (-np.ones((100, 3), int), {}), (-np.ones((100, 3)), {}), (np.full((100, 3), np.nan), {}),
    (np.zeros((15, 3)), {}), (np.zeros((100, 3)), {"bin_s": 1e-4}),
    (np.zeros((100, 3)), {"min_recruitment": 2.0}), (np.zeros((100, 3)), {"k": -1.0}),
])
def test_bad_rasters_and_settings_raise_one_error(spikes, kwargs):
    with pytest.raises(PrclabError, match="bursts:"):
        detect_bursts(spikes, DT, **kwargs)


def test_raster_plot_marks_the_bursts(known, tmp_path):
    raster, *_ = known
    result = detect_bursts(raster, DT)
    plot_raster(raster, DT, result, tmp_path / "raster.png", title="synthetic", unit="neuron")
    assert (tmp_path / "raster.png").stat().st_size > 10_000
