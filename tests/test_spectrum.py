"""kernels.spectrum: eigendecomposition, filters in the eigenbasis, top-k methods, bad input.

Independent references: numpy's dense eigh / solve, scipy.linalg.expm, explicit
per-row loops, and Gram matrices built from features of known rank.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from conftest import to_backend
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernels.backend import to_numpy
from kernels.spectrum import Spectrum, spectrum


def _psd(rng: np.random.Generator, n: int, *, rank: int | None = None, scale: float = 1.0) -> np.ndarray:
    """A random PSD Gram matrix ``F F^T`` (rank ``rank``, default n) scaled by ``scale``."""
    F = rng.normal(size=(n, rank or n))
    K = F @ F.T / F.shape[1]
    return scale * (K + K.T) / 2


def _with_spectrum(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    """``Q diag(d) Q^T`` for a random orthogonal Q: a matrix with a known spectrum."""
    Q, _ = np.linalg.qr(rng.normal(size=(d.size, d.size)))
    K = (Q * d) @ Q.T
    return (K + K.T) / 2


def _projector(V: np.ndarray) -> np.ndarray:
    return V @ V.T


# ----------------------------------------------------------------------------- full decomposition


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 40), log_scale=st.floats(-6, 6), seed=st.integers(0, 2**31 - 1))
def test_full_reconstructs_and_is_orthonormal(backend, n, log_scale, seed):
    rng = np.random.default_rng(seed)
    K = _psd(rng, n, scale=10.0**log_scale)
    s = spectrum(to_backend(K, backend))
    assert isinstance(s, Spectrum) and s.backend == backend and s.k == n and s.n_samples == n
    assert type(s.values) is type(to_backend(K, backend))
    d, V = to_numpy(s.values), to_numpy(s.vectors)
    assert np.all(np.diff(d) <= 0) and np.all(d >= 0)
    np.testing.assert_allclose(V.T @ V, np.eye(n), atol=1e-10)
    dense = to_numpy(s.to_dense())
    np.testing.assert_allclose(dense, K, atol=1e-10 * np.abs(K).max())
    # eigenvalues agree with an independent dense solver (numpy's, ascending)
    np.testing.assert_allclose(d, np.clip(np.linalg.eigvalsh(K)[::-1], 0, None), atol=1e-10 * np.abs(K).max())


def test_apply_matches_dense_filter(backend, rng):
    n, c, T = 30, 3, 4
    K = _psd(rng, n)
    s = spectrum(to_backend(K, backend))
    V = to_numpy(s.vectors)
    y = rng.normal(size=n)
    Y = rng.normal(size=(n, c))
    lam = 0.3

    # callable filter, vector y: V g(D) V^T y == (K + lam I)^{-1} y (independent dense solve)
    out = to_numpy(s.apply(lambda v: 1.0 / (v + lam), to_backend(y, backend)))
    np.testing.assert_allclose(out, np.linalg.solve(K + lam * np.eye(n), y), rtol=1e-9, atol=1e-10)
    # (n, c) labels; filter exp(-t d) == expm(-t K) (independent: scipy's Pade expm)
    out = to_numpy(s.apply(lambda v: s.xp.exp(-2.0 * v), to_backend(Y, backend)))
    np.testing.assert_allclose(out, scipy.linalg.expm(-2.0 * K) @ Y, atol=1e-10)

    # precomputed (T, k) filter values, against an explicit loop of dense products
    H = rng.uniform(size=(T, n))
    for target in (y, Y):
        got = to_numpy(s.apply(to_backend(H, backend), to_backend(target, backend)))
        want = np.stack([V @ np.diag(H[t]) @ V.T @ target for t in range(T)])
        assert got.shape == want.shape == ((T, n) if target.ndim == 1 else (T, n, c))
        np.testing.assert_allclose(got, want, atol=1e-10)
    # square (k, k) filter batches are not confused with (k, c) labels
    Hs = rng.uniform(size=(n, n))
    got = to_numpy(s.apply(to_backend(Hs, backend), to_backend(y, backend)))
    np.testing.assert_allclose(got, np.stack([V @ (Hs[t] * (V.T @ y)) for t in range(n)]), atol=1e-10)


def test_project_and_reconstruct_roundtrip(backend, rng):
    K = _psd(rng, 12)
    s = spectrum(to_backend(K, backend))
    y = rng.normal(size=(12, 2))
    coef = s.project(to_backend(y, backend))
    np.testing.assert_allclose(to_numpy(coef), to_numpy(s.vectors).T @ y, atol=1e-12)
    np.testing.assert_allclose(to_numpy(s.reconstruct(coef)), y, atol=1e-10)


def test_cross_matches_dense_product(backend, rng):
    n, m = 20, 7
    K = _psd(rng, n)
    s = spectrum(to_backend(K, backend))
    Kc = rng.normal(size=(m, n))
    coef = rng.normal(size=(n, 2))
    got = to_numpy(s.cross(to_backend(Kc, backend), to_backend(coef, backend)))
    np.testing.assert_allclose(got, Kc @ to_numpy(s.vectors) @ coef, atol=1e-10)
    # a list input is read as (m, n), not transposed (also when m == n)
    Ksq = rng.normal(size=(n, n))
    got = to_numpy(s.cross(Ksq.tolist(), to_backend(coef[:, 0], backend)))
    np.testing.assert_allclose(got, Ksq @ to_numpy(s.vectors) @ coef[:, 0], atol=1e-10)
    with pytest.raises(ValueError, match="K_cross"):
        s.cross(to_backend(rng.normal(size=(m, n + 1)), backend), to_backend(coef, backend))


# ----------------------------------------------------------------------------- top-k


@pytest.mark.parametrize("method", ["lanczos", "randomized"])
def test_topk_agrees_with_full(backend, rng, method):
    if method == "lanczos" and backend != "numpy":
        pytest.skip("lanczos is numpy-only (tested to raise below)")
    n, k = 80, 6
    d = 2.0 ** -np.arange(n)  # a factor-2 gap after every eigenvalue
    K = _with_spectrum(rng, d)
    full = spectrum(to_backend(K, backend))
    top = spectrum(to_backend(K, backend), k=k, method=method)
    assert top.method == method and top.k == k and top.n_samples == n
    np.testing.assert_allclose(to_numpy(top.values), to_numpy(full.values)[:k], rtol=1e-8, atol=1e-12)
    P_top = _projector(to_numpy(top.vectors))
    P_full = _projector(to_numpy(full.vectors)[:, :k])
    assert np.linalg.norm(P_top - P_full, 2) < 1e-6
    assert top.max_residual < 1e-8
    # the residual is measured, not assumed: recompute it
    V, w = to_numpy(top.vectors), to_numpy(top.values)
    assert np.max(np.linalg.norm(K @ V - V * w, axis=0)) / w[0] == pytest.approx(top.max_residual, rel=1e-6, abs=1e-14)


def test_randomized_residual_reports_poor_accuracy(rng):
    # flat spectrum: no gap, zero power iterations -> a visibly larger residual is reported
    K = _psd(rng, 60)
    rough = spectrum(K, k=5, method="randomized", n_iter=0, n_oversamples=0)
    fine = spectrum(K, k=5, method="randomized", n_iter=30, n_oversamples=20)
    assert rough.max_residual > 10 * fine.max_residual


def test_auto_picks_a_method(rng):
    K = _psd(rng, 200)
    assert spectrum(K).method == "full"
    assert spectrum(K, k=5).method == "lanczos"
    import torch

    assert spectrum(torch.from_numpy(K), k=5).method == "randomized"
    with pytest.raises(ValueError, match="lanczos"):
        spectrum(torch.from_numpy(K), k=5, method="lanczos")


# ----------------------------------------------------------------------------- zeros, negatives


def test_rank_deficient_reports_zeros(backend, rng):
    n, r = 40, 5
    X = rng.normal(size=(n, r))
    K = X @ X.T  # linear Gram of rank r
    s = spectrum(to_backend(K, backend))
    assert s.n_zero == n - r
    mask = to_numpy(s.zero_mask)
    assert mask.sum() == n - r and not mask[:r].any() and mask[r:].all()
    assert s.zero_tol > 0


def test_indefinite_raises_and_clip_counts(backend, rng):
    d = np.array([3.0, 2.0, 1.0, -0.5, -1.0])
    K = _with_spectrum(rng, d)
    with pytest.raises(ValueError, match="not positive semi-definite"):
        spectrum(to_backend(K, backend))
    s = spectrum(to_backend(K, backend), psd="clip")
    assert s.n_clipped == 2
    assert s.min_raw_eigenvalue == pytest.approx(-1.0, rel=1e-10)
    np.testing.assert_allclose(to_numpy(s.values), [3.0, 2.0, 1.0, 0.0, 0.0], atol=1e-12)
    assert s.n_zero == 2


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("factor, raises", [(0.5, False), (2.0, True)])
def test_psd_guard_sits_at_the_documented_tolerance(backend, rng, dtype, factor, raises):
    """Most negative eigenvalue at 0.5x / 2x the documented bound ``-(c d_max + 100 n eps d_max)``.

    c = 1e-5 in float64, 5e-3 in float32 (the ``psd`` parameter's documentation). A guard 100x
    looser (or tighter) than documented accepts the 2x matrix (or refuses the 0.5x one).
    """
    n, d_max = 6, 3.0
    eps = float(np.finfo(dtype).eps)
    tol = (1e-5 if dtype == np.float64 else 5e-3) * d_max + 100 * n * eps * d_max
    neg = -factor * tol
    d = np.array([d_max, 2.0, 1.0, 0.5, 0.0, neg])
    K = to_backend(_with_spectrum(rng, d).astype(dtype), backend)
    if raises:
        with pytest.raises(ValueError, match="not positive semi-definite"):
            spectrum(K)
    else:
        s = spectrum(K)
        assert s.min_raw_eigenvalue == pytest.approx(neg, rel=1e-3 if dtype == np.float64 else 0.1)
        assert float(to_numpy(s.values).min()) >= 0.0
    clipped = spectrum(K, psd="clip")  # clip accepts both and reports the raw value
    assert clipped.min_raw_eigenvalue == pytest.approx(neg, rel=1e-3 if dtype == np.float64 else 0.1)
    assert float(to_numpy(clipped.values).min()) >= 0.0 and clipped.n_clipped >= 1


def test_roundoff_negatives_are_clipped_silently(rng):
    X = rng.normal(size=(30, 2))
    K = X @ X.T  # rank 2: the zero eigenvalues come out as +-1e-15
    s = spectrum(K)
    assert float(np.min(s.values)) >= 0.0
    assert s.min_raw_eigenvalue <= 0.0


# ----------------------------------------------------------------------------- bad input


def test_non_symmetric_raises(backend, rng):
    K = _psd(rng, 6)
    K[0, 1] += 0.5
    with pytest.raises(ValueError, match="K must be symmetric"):
        spectrum(to_backend(K, backend))


def test_tiny_asymmetry_is_symmetrised(rng):
    K = _psd(rng, 6)
    K[0, 1] += 1e-15
    s = spectrum(K)
    np.testing.assert_allclose(s.to_dense(), (K + K.T) / 2, atol=1e-12)


@pytest.mark.parametrize("k", [0, -1, 7, 2.5, "3"])
def test_k_out_of_range_raises(rng, k):
    with pytest.raises((ValueError, TypeError), match="k must be"):
        spectrum(_psd(rng, 6), k=k)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf_raise(backend, rng, bad):
    K = _psd(rng, 5)
    K[1, 1] = bad
    with pytest.raises(ValueError, match="K contains NaN or inf"):
        spectrum(to_backend(K, backend))


@pytest.mark.parametrize("shape", [(3, 4), (5,), (0, 0)])
def test_non_square_raises(shape):
    with pytest.raises(ValueError, match="K must"):
        spectrum(np.ones(shape))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"method": "qr"}, "method"),
        ({"psd": "ignore"}, "psd"),
        ({"k": 2, "method": "randomized", "n_iter": -1}, "n_iter"),
        ({"k": 2, "method": "randomized", "n_oversamples": -2}, "n_oversamples"),
    ],
)
def test_bad_options_raise(rng, kwargs, name):
    with pytest.raises(ValueError, match=name):
        spectrum(_psd(rng, 8), **kwargs)


def test_filter_and_label_shapes_checked(rng):
    s = spectrum(_psd(rng, 6))
    with pytest.raises(ValueError, match="filter"):
        s.apply(np.ones(5), np.ones(6))
    with pytest.raises(ValueError, match="y has 5 rows"):
        s.apply(np.ones(6), np.ones(5))
    with pytest.raises(ValueError, match="y contains NaN"):
        s.apply(np.ones(6), np.full(6, np.nan))


def test_max_residual_is_none_when_not_measured_and_a_number_when_measured():
    """A status that can be trusted: 0 would claim an exact decomposition; None says 'not measured'."""
    from kernels import rbf

    X = np.random.default_rng(3).normal(size=(60, 3))
    K = rbf(X, gamma=0.5)
    assert spectrum(K, method="full").max_residual is None
    top = spectrum(K, k=5, method="lanczos")
    assert isinstance(top.max_residual, float) and top.max_residual > 0
