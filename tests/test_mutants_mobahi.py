"""Tests that kill mutants of theory/mobahi.py which the rest of the suite let through (``make mutate``).

References: dense numpy rounds ``y_t = K (c_t I + K)^-1 y_{t-1}``.
"""

from __future__ import annotations

import numpy as np
import pytest

from kernels import rbf, spectrum
from theory import mobahi_rounds


def _problem(n=25, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    return rbf(X, gamma=0.5), np.sin(X[:, 0]) + 0.3 * rng.normal(size=n)


def _dense_rounds(K, y, cs):
    n = len(y)
    out = [y]
    for c in cs:
        out.append(K @ np.linalg.solve(K + c * np.eye(n), out[-1]))
    return out


def test_collapse_exactly_at_max_rounds_is_reported():
    """Issue 13: a run that collapses exactly at ``max_rounds`` must say collapsed; one round fewer must not."""
    K, y = _problem()
    eps = 0.05
    free = mobahi_rounds(spectrum(K), y, epsilon=eps, max_rounds=1000)
    R = free.n_rounds
    assert free.collapsed and R >= 2
    at = mobahi_rounds(spectrum(K), y, epsilon=eps, max_rounds=R)
    before = mobahi_rounds(spectrum(K), y, epsilon=eps, max_rounds=R - 1)
    assert at.n_rounds == R and at.collapsed
    assert before.n_rounds == R - 1 and not before.collapsed
    # dense reference: after R rounds ||y_R||^2 <= n eps, after R - 1 it is not; each round meets the budget
    ys = _dense_rounds(K, y, at.c)
    n = len(y)
    assert ys[R] @ ys[R] <= n * eps < ys[R - 1] @ ys[R - 1]
    for t in range(1, R + 1):
        assert np.mean((ys[t] - ys[t - 1]) ** 2) == pytest.approx(eps, rel=1e-7)
    np.testing.assert_allclose(at.label_energy, [v @ v for v in ys], rtol=1e-9)


def test_fits_are_the_dense_rounds_for_matrix_labels():
    K, y = _problem(seed=1)
    Y = np.stack([y, 0.5 * y + 0.1], axis=1)
    path = mobahi_rounds(spectrum(K), Y, epsilon=0.02, max_rounds=3)
    n = len(y)
    prev = Y
    for t, c in enumerate(path.c):
        cur = K @ np.linalg.solve(K + c * np.eye(n), prev)
        assert np.sum((cur - prev) ** 2) / n == pytest.approx(0.02, rel=1e-7)
        np.testing.assert_allclose(np.asarray(path.fits)[t], cur, rtol=1e-8, atol=1e-10)
        prev = cur


def test_energy_exactly_at_the_budget_collapses_without_a_round():
    """||y||^2 = n epsilon exactly (y = ones, epsilon = 1) and y in the null space of K (K = v v^T, v _|_ y):
    f = 0 meets the budget, so zero rounds and collapsed (not an error about unresolvable energy)."""
    n = 8
    v = np.r_[np.ones(n // 2), -np.ones(n // 2)] / np.sqrt(n)
    K = np.outer(v, v)
    y = np.ones(n)
    assert y @ y == n and abs(v @ y) < 1e-15
    path = mobahi_rounds(spectrum(K), y, epsilon=1.0)
    assert path.n_rounds == 0 and path.collapsed
    np.testing.assert_allclose(path.label_energy, [float(n)])


@pytest.mark.parametrize("gap", [1e-3, 1e-6, 1e-9])
def test_a_budget_just_below_the_label_energy_still_finds_c(gap):
    """epsilon = (1 - gap) ||y||^2 / n: c_1 is large (about d / sqrt(gap)); the root must still be bracketed, and
    the dense budget equation holds at it (numpy solve)."""
    K, y = _problem(seed=3)
    n = len(y)
    eps = (1 - gap) * (y @ y) / n
    path = mobahi_rounds(spectrum(K), y, epsilon=eps, max_rounds=1)
    assert path.n_rounds == 1
    c = path.c[0]
    y1 = K @ np.linalg.solve(K + c * np.eye(n), y)
    assert np.mean((y1 - y) ** 2) == pytest.approx(eps, rel=1e-9)


def test_default_round_cap_is_the_documented_100():
    K, y = _problem(seed=4)
    assert mobahi_rounds(spectrum(K), y, epsilon=0.05).max_rounds == 100


def test_exact_null_space_energy_equal_to_the_budget_collapses():
    """K = diag(1, 0, ..., 0) (exact zeros), y _|_ e_1 with ||y||^2 = n epsilon: f = 0 meets the budget exactly,
    so zero rounds and collapsed, not the error about energy the spectrum cannot resolve."""
    n = 8
    K = np.diag(np.r_[1.0, np.zeros(n - 1)])
    y = np.r_[0.0, 2.0, 2.0, np.zeros(n - 3)]
    assert y @ y == n
    path = mobahi_rounds(spectrum(K), y, epsilon=1.0)
    assert path.n_rounds == 0 and path.collapsed


def test_rounds_scale_with_the_kernel():
    """Scaling K by s scales every c_t by s and leaves the fits unchanged (y_t depends on c / d only)."""
    K, y = _problem(seed=5)
    base = mobahi_rounds(spectrum(K), y, epsilon=0.05)
    for scale in (1e-3, 1e4):
        other = mobahi_rounds(spectrum(scale * K), y, epsilon=0.05)
        assert other.n_rounds == base.n_rounds
        np.testing.assert_allclose(other.c, scale * base.c, rtol=1e-7)


@pytest.mark.parametrize("scale", [1.0, 0.05])
def test_top_k_spectrum_rounds_match_the_rank_k_kernel(scale):
    """A top-k spectrum: the part of y outside the k vectors is null space. Dense reference on K_k = V D V^T
    (scale 0.05: an outside energy well below 1)."""
    K, y = _problem(n=40, seed=6)
    y = scale * y
    s = spectrum(K, k=6, method="lanczos")
    V, d = np.asarray(s.vectors), np.asarray(s.values)
    Kk = (V * d) @ V.T
    n = len(y)
    outside = y @ y - np.sum((V.T @ y) ** 2)
    assert outside < 1.0 if scale < 1 else outside > 0
    eps = 1.2 * outside / n + 0.01 * scale**2
    path = mobahi_rounds(s, y, epsilon=eps, max_rounds=2)
    assert path.n_rounds >= 1
    prev = y
    for t, c in enumerate(path.c):
        cur = Kk @ np.linalg.solve(Kk + c * np.eye(n), prev)
        assert np.mean((cur - prev) ** 2) == pytest.approx(eps, rel=1e-7)
        np.testing.assert_allclose(np.asarray(path.fits)[t], cur, rtol=1e-7, atol=1e-9)
        prev = cur
