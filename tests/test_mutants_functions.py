"""Tests that kill mutants of kernels/functions.py which the rest of the suite let through (``make mutate``).

References: scikit-learn's pairwise kernels and dense numpy formulas on the whole matrix at once.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics.pairwise import laplacian_kernel, linear_kernel, polynomial_kernel, rbf_kernel

from kernels import exponential, laplace, linear, nngp_relu, ntk_relu, polynomial, rbf


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(23, 4)), rng.normal(size=(9, 4))


CASES = [
    ("rbf", lambda X, Z=None, **k: rbf(X, Z, gamma=0.3, **k), lambda X, Z: rbf_kernel(X, Z, gamma=0.3)),
    ("laplace", lambda X, Z=None, **k: laplace(X, Z, gamma=0.3, **k), lambda X, Z: laplacian_kernel(X, Z, gamma=0.3)),
    (
        "exponential",
        lambda X, Z=None, **k: exponential(X, Z, gamma=0.3, **k),
        lambda X, Z: np.exp(-0.3 * np.sqrt(np.maximum(((X[:, None] - Z[None]) ** 2).sum(-1), 0))),
    ),
    ("linear", lambda X, Z=None, **k: linear(X, Z, **k), lambda X, Z: linear_kernel(X, Z)),
    (
        "polynomial",
        lambda X, Z=None, **k: polynomial(X, Z, degree=3, gamma=0.5, coef0=1.0, **k),
        lambda X, Z: polynomial_kernel(X, Z, degree=3, gamma=0.5, coef0=1.0),
    ),
]


@pytest.mark.parametrize(("name", "fn", "ref"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("budget", [1, 200, None])
def test_blocked_gram_equals_the_dense_reference(name, fn, ref, budget):
    """A memory budget below one row (one row per block), a few rows per block, and the default: the same
    matrix as scikit-learn / numpy on the whole data, symmetric exactly, and the cross Gram too."""
    X, Z = _data()
    K = np.asarray(fn(X, memory_budget=budget))
    np.testing.assert_allclose(K, ref(X, X), rtol=1e-10, atol=1e-12)
    assert np.array_equal(K, K.T)
    Kc = np.asarray(fn(Z, X, memory_budget=budget))
    np.testing.assert_allclose(Kc, ref(Z, X), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("budget", [1, None])
def test_relu_kernels_blocked_match_whole_matrix(budget):
    """nngp_relu / ntk_relu with one row per block equal the same kernels computed without blocking."""
    X, Z = _data(1)
    for f in (nngp_relu, ntk_relu):
        whole = np.asarray(f(X, Z, depth=2, bias=0.1))
        np.testing.assert_allclose(np.asarray(f(X, Z, depth=2, bias=0.1, memory_budget=budget)), whole, rtol=1e-12, atol=1e-14)
        sym = np.asarray(f(X, depth=2, bias=0.1, memory_budget=budget))
        np.testing.assert_allclose(sym, np.asarray(f(X, X, depth=2, bias=0.1)), rtol=1e-10, atol=1e-12)
        assert np.array_equal(sym, sym.T)
