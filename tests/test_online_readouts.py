"""Online readouts: RLS equals the exact (forgetting-weighted) ridge solution, LMS converges, one-line
errors, and the estimator shape (params from the signature, partial_fit per tick)."""

import numpy as np
import pytest
from sklearn.base import clone

from prclab.errors import PrclabError
from prclab.readouts.online import LMSReadout, RLSReadout


def _data(n=300, f=12, t=1, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f))
    W = rng.normal(size=(f, t))
    return X, X @ W + 0.5 + 0.01 * rng.normal(size=(n, t)), W


@pytest.mark.parametrize("lam", [1.0, 0.97])
def test_rls_is_the_weighted_ridge_solution(lam):
    X, y, _ = _data(t=2)
    r = RLSReadout(alpha=1e-2, forgetting=lam)
    for a in range(0, len(X), 7):  # tick by tick in chunks: the same as all at once
        r.partial_fit(X[a:a + 7], y[a:a + 7])
    n = len(X)
    Xa = np.c_[X, np.ones(n)]
    w = lam ** (n - 1 - np.arange(n))  # sample i weighs lam^(age); P0 = I / alpha fades as lam^n
    exact = np.linalg.solve(Xa.T @ (w[:, None] * Xa) + 1e-2 * lam ** n * np.eye(Xa.shape[1]),
                            Xa.T @ (w[:, None] * y))
    np.testing.assert_allclose(r.W_, exact, atol=1e-9)
    np.testing.assert_allclose(r.predict(X[:5]), Xa[:5] @ exact, atol=1e-9)
    assert r.predict(X[:5]).shape == (5, 2) and r.n_samples_seen_ == n
    np.testing.assert_allclose(r.P_, r.P_.T, atol=1e-9)


def test_rls_forgetting_tracks_a_change():
    X, y, _ = _data(n=400, t=1)
    y = y[:, 0]
    y2 = -y  # the map flips half way
    slow, fast = RLSReadout(forgetting=1.0), RLSReadout(forgetting=0.95)
    for r in (slow, fast):
        r.partial_fit(X[:200], y[:200]).partial_fit(X[200:], y2[200:])
    err = {name: np.abs(r.predict(X[-50:]) - y2[-50:]).mean() for name, r in (("slow", slow), ("fast", fast))}
    assert err["fast"] < 0.05 < err["slow"]


def test_rls_scale_folds_back():
    """A long run with forgetting: P = s Q with s folded into Q before it overflows; still correct."""
    rng = np.random.default_rng(1)
    r = RLSReadout(forgetting=0.5)
    x = rng.normal(size=(400, 3))
    r.fit(x, x @ [1.0, 2.0, 3.0])
    assert np.isfinite(r.P_).all() and r._s <= 1e100
    np.testing.assert_allclose(r.coef_[0], [1, 2, 3], atol=1e-6)


def test_lms_converges_and_normalises():
    X, y, W = _data(n=3000, f=5)
    m = LMSReadout(learning_rate=0.5).fit(X, y[:, 0])
    np.testing.assert_allclose(m.coef_[0], W[:, 0], atol=0.05)
    np.testing.assert_allclose(m.intercept_, [0.5], atol=0.05)
    assert m.predict(X[:3]).shape == (3,)
    plain = LMSReadout(learning_rate=0.01, normalized=False).fit(X, y[:, 0])
    np.testing.assert_allclose(plain.coef_[0], W[:, 0], atol=0.05)


def test_estimator_shape():
    r = RLSReadout(alpha=0.5, forgetting=0.9)
    assert r.get_params() == {"alpha": 0.5, "forgetting": 0.9}
    assert clone(r).get_params() == r.get_params()
    X, y, _ = _data(n=50)
    assert r.fit(X, y[:, 0]).score(X, y[:, 0]) > 0.99
    r.partial_fit(X[0], y[0])  # one tick's features as a 1-D row


@pytest.mark.parametrize("make, fit, match", [
    (lambda: RLSReadout(alpha=0), lambda r: r.partial_fit([[1.0]], [1.0]), "alpha must be > 0"),
    (lambda: RLSReadout(forgetting=1.5), lambda r: r.partial_fit([[1.0]], [1.0]), r"forgetting must lie in \(0, 1\]"),
    (lambda: LMSReadout(learning_rate=-1), lambda r: r.partial_fit([[1.0]], [1.0]), "learning_rate must be > 0"),
    (RLSReadout, lambda r: r.predict([[1.0]]), "not fitted"),
    (RLSReadout, lambda r: r.partial_fit([[np.nan]], [1.0]), "NaN"),
    (RLSReadout, lambda r: r.partial_fit([[1.0]], [1.0]).partial_fit([[1.0, 2.0]], [1.0]), "2 features, fitted with 1"),
    (RLSReadout, lambda r: r.partial_fit([[1.0], [2.0]], [1.0]), "2 rows but y 1"),
])
def test_one_line_errors(make, fit, match):
    with pytest.raises(PrclabError, match=match):
        fit(make())
