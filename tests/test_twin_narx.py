"""NARX twin family: recovers a known nonlinear system in free run where the linear family cannot, reloads
bit for bit from its arrays (no SysIdentPy needed), streams block by block, and says so in one line when
SysIdentPy is missing or its arrays do not fit."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from prclab.errors import PrclabError
from prclab.reservoir.twins import FAMILIES, LinearTwin, NarxTwin
from prclab.reservoir.twins.linear import free_run_nrmse


def bilinear_system(n_trials: int, steps: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Two outputs of a known polynomial NARX system (bilinear input-state term, squared input), 2 inputs."""
    rng = np.random.default_rng(seed)
    us, ys = [], []
    for _ in range(n_trials):
        u = np.repeat(rng.uniform(-0.5, 0.5, (steps // 10, 2)), 10, axis=0)
        y = np.zeros((steps, 2))
        for t in range(1, steps):
            y[t, 0] = 0.6 * y[t - 1, 0] + 0.4 * u[t, 0] - 0.8 * u[t, 1] * y[t - 1, 0] + 0.5 * u[t, 1] ** 2
            y[t, 1] = 0.3 * y[t - 1, 1] + 0.5 * u[t, 1] + 0.6 * u[t, 0] * u[t - 1, 0]
        ys.append(y + rng.normal(0, 0.002, y.shape))
        us.append(u)
    return us, ys


@pytest.fixture(scope="module")
def fitted():
    us, ys = bilinear_system(12, 200, 0)
    return NarxTwin().fit(us, ys, 1e-3), us, ys


def test_narx_is_registered_and_beats_linear_on_a_nonlinear_system(fitted):
    twin, us, ys = fitted
    assert FAMILIES["narx"] is NarxTwin
    test_u, test_y = bilinear_system(4, 200, 1)
    narx = free_run_nrmse(list(twin.simulate(np.stack(test_u))), test_y)
    linear = free_run_nrmse(list(LinearTwin().fit(us, ys, 1e-3).simulate(np.stack(test_u))), test_y)
    assert narx < 0.05 and narx < 0.5 * linear
    assert 0 < twin.validation_nrmse_ < 0.05


def test_arrays_reload_bit_for_bit_and_stream(fitted, monkeypatch):
    twin, _, _ = fitted
    arrays, attrs = twin.to_arrays()
    for name in [m for m in sys.modules if m.split(".")[0] == "sysidentpy"]:
        monkeypatch.setitem(sys.modules, name, None)         # running needs no SysIdentPy
    loaded = NarxTwin.from_arrays({k: v.copy() for k, v in arrays.items()}, dict(attrs))
    u = np.stack(bilinear_system(2, 120, 2)[0])
    assert np.array_equal(twin.simulate(u), loaded.simulate(u))
    rngs = lambda: [np.random.default_rng(k) for k in range(2)]  # noqa: E731
    noisy = loaded.simulate(u, rngs())
    assert np.array_equal(twin.simulate(u, rngs()), noisy) and not np.array_equal(noisy, loaded.simulate(u))
    state = loaded.initial_state(2)
    first, state = loaded.step_block(state, u[:, :37])
    rest, _ = loaded.step_block(state, u[:, 37:])
    np.testing.assert_allclose(np.concatenate([first, rest], 1), loaded.simulate(u), rtol=1e-12, atol=1e-12)
    units = loaded.units()
    assert units["id"].dtype == np.int64 and list(units["n_terms"]) == list(np.count_nonzero(twin.theta_, 1))


def test_missing_sysidentpy_and_foreign_arrays_are_one_line(fitted, monkeypatch):
    twin, us, ys = fitted
    arrays, attrs = twin.to_arrays()
    with pytest.raises(PrclabError, match="terms/theta do not fit"):
        NarxTwin.from_arrays({**arrays, "terms": arrays["terms"][:, :2]}, attrs)
    with pytest.raises(PrclabError, match="lack 'theta'"):
        NarxTwin.from_arrays({k: v for k, v in arrays.items() if k != "theta"}, attrs)
    for name in [m for m in sys.modules if m.split(".")[0] == "sysidentpy"]:
        monkeypatch.setitem(sys.modules, name, None)         # as if not installed
    with pytest.raises(PrclabError, match=r"needs SysIdentPy to fit: pip install 'prclab\[narx\]'") as info:
        NarxTwin().fit(us, ys, 1e-3)
    assert "\n" not in str(info.value)
