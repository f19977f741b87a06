"""Tests that kill mutants of kernels/spectrum.py and the mixed ridge solver (kernels/refine.py) which the rest of
the suite let through (``make mutate``).

References: matrices built with known eigenvalues (Q diag(w) Q^T), numpy dense solves and backward errors.
"""

from __future__ import annotations

import numpy as np
import pytest

from kernels import rbf, spectrum


def _with_eigenvalues(w, dtype=np.float64, seed=0):
    Q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(len(w), len(w))))
    K = (Q * np.asarray(w)) @ Q.T
    return ((K + K.T) / 2).astype(dtype)


@pytest.mark.parametrize(("dtype", "rel_tol"), [(np.float64, 1e-5), (np.float32, 5e-3)])
def test_psd_guard_is_as_tight_as_documented(dtype, rel_tol):
    """Issue 13: the guard allows negative eigenvalues down to about rel_tol d_max (plus n eps d_max); 4x beyond
    raises, a quarter of it is clipped. A 100x looser guard would accept the first."""
    n = 20
    eps = np.finfo(dtype).eps
    tol = rel_tol + 100 * n * eps  # d_max = 1
    w_bad = np.r_[1.0, np.linspace(0.5, 0.1, n - 2), -4 * tol]
    with pytest.raises(ValueError, match="positive semi-definite"):
        spectrum(_with_eigenvalues(w_bad, dtype))
    w_ok = np.r_[1.0, np.linspace(0.5, 0.1, n - 2), -tol / 4]
    s = spectrum(_with_eigenvalues(w_ok, dtype))
    assert s.n_clipped >= 1 and float(np.min(np.asarray(s.values))) == 0.0
    assert s.min_raw_eigenvalue == pytest.approx(-tol / 4, rel=0.05 if dtype == np.float64 else 0.5)
    np.testing.assert_allclose(np.sort(np.asarray(s.values))[::-1][: n - 1], np.sort(w_ok)[::-1][: n - 1], atol=50 * n * eps)


def test_zero_tol_is_n_eps_dmax():
    w = np.r_[3.0, np.linspace(1, 0.01, 9)]
    s = spectrum(_with_eigenvalues(w))
    assert s.zero_tol == pytest.approx(10 * np.finfo(np.float64).eps * 3.0, rel=1e-6)


def test_mixed_solver_reaches_its_backward_error():
    """Issue 13: declaring convergence at 10^6 x the tolerance would leave a backward error ~1e-9; numpy measures
    <= 64 eps64 here, and the solution agrees with a float64 dense solve."""
    from kernels.refine import refined_ridge_solve

    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 3))
    K = rbf(X, gamma=0.3)
    Y = np.sin(X[:, :2])
    ridges = np.array([1e-6, 1e-2])
    spec32 = spectrum(K.astype(np.float32))
    out = refined_ridge_solve(K, Y, ridges, spec32)
    d_max = np.linalg.eigvalsh(K)[-1]
    eps = np.finfo(np.float64).eps
    for r, lam in enumerate(ridges):
        A = K + lam * np.eye(len(K))
        x = np.asarray(out.coef)[r]
        for j in range(Y.shape[1]):
            be = np.linalg.norm(A @ x[:, j] - Y[:, j]) / ((d_max + lam) * np.linalg.norm(x[:, j]) + np.linalg.norm(Y[:, j]))
            assert be <= 64 * eps
        ref = np.linalg.solve(A, Y)
        cond = (d_max + lam) / lam
        np.testing.assert_allclose(x, ref, atol=200 * cond * eps * np.abs(ref).max())
    assert bool(np.all(np.asarray(out.converged)))


def test_psd_guard_includes_the_n_eps_term_in_float32():
    """n = 200, float32: tolerance 5e-3 d_max + 100 n eps32 d_max = 7.4e-3 d_max. An eigenvalue at -0.8x that is
    clipped, at -1.25x it raises (without the n eps term the first would raise too)."""
    n = 200
    eps = np.finfo(np.float32).eps
    tol = 5e-3 + 100 * n * eps
    base = np.r_[1.0, np.linspace(0.5, 0.01, n - 2)]
    s = spectrum(_with_eigenvalues(np.r_[base, -0.8 * tol], np.float32))
    assert s.n_clipped >= 1
    with pytest.raises(ValueError, match="positive semi-definite"):
        spectrum(_with_eigenvalues(np.r_[base, -1.25 * tol], np.float32))


@pytest.mark.parametrize("method", ["lanczos", "randomized"])
def test_max_residual_is_the_worst_column(method):
    """max_residual = max_j ||K v_j - d_j v_j|| / d_1 over the k vectors (numpy), not the best column; the
    randomized method with no power iterations has clearly unequal columns."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 3))
    K = rbf(X, gamma=0.2)
    s = spectrum(K, k=6, method=method, n_iter=0) if method == "randomized" else spectrum(K, k=6, method=method)
    V, d = np.asarray(s.vectors), np.asarray(s.values)
    res = np.linalg.norm(K @ V - V * d, axis=0) / d[0]
    assert s.max_residual == pytest.approx(res.max(), rel=1e-6, abs=1e-15)
    if method == "randomized":
        assert res.max() > 1.2 * res.min()  # max and min columns distinguishable at rel=1e-6
