"""Frequency-principle filter: blockwise vs dense, limits, measures, delta grid, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from kernels._backend import to_numpy
from tests.conftest import to_backend
from theory.frequency import delta_grid, frequency_measures, frequency_split, low_pass


def _dense_low(X, Y, delta):
    """Independent reference: the full Gram matrix from scipy's cdist."""
    G = np.exp(-cdist(X, X, "sqeuclidean") / (2 * delta))
    return (G @ Y) / G.sum(axis=1).reshape((-1,) + (1,) * (Y.ndim - 1))


def _dense_measures(X, h, y, delta):
    if math.isinf(delta):
        hl = np.broadcast_to(h.mean(0), h.shape)
        yl = np.broadcast_to(y.mean(0), y.shape)
    else:
        hl, yl = _dense_low(X, h, delta), _dense_low(X, y, delta)
    hh, yh = h - hl, y - yl
    nrm = np.linalg.norm
    return (nrm(hl - yl) / nrm(yl), nrm(hh - yh) / nrm(yh), nrm(hl) ** 2 / (nrm(hl) ** 2 + nrm(hh) ** 2))


@pytest.fixture
def data(rng):
    X = rng.normal(size=(53, 4))
    Y = rng.normal(size=(53, 3))
    return X, Y


@pytest.mark.parametrize("budget", [None, 1, 5000])
@pytest.mark.parametrize("delta", [0.3, 2.5])
def test_low_pass_matches_dense(data, backend, budget, delta):
    X, Y = data
    Xb = to_backend(X, backend)
    for Yv in (Y, Y[:, 0]):
        out = low_pass(Xb, to_backend(Yv, backend), delta=delta, memory_budget=budget)
        assert type(out) is type(Xb) and tuple(out.shape) == Yv.shape
        np.testing.assert_allclose(to_numpy(out), _dense_low(X, Yv, delta), rtol=0, atol=1e-10)


def test_split_blocks_and_sum(data, backend):
    X, Y = data
    sp = frequency_split(to_backend(X, backend), to_backend(Y, backend), delta=1.0, memory_budget=1)
    assert sp.n_blocks == X.shape[0] and sp.delta == 1.0
    np.testing.assert_allclose(to_numpy(sp.low) + to_numpy(sp.high), Y, atol=1e-14)
    one = frequency_split(X, Y, delta=1.0)
    assert one.n_blocks == 1


@pytest.mark.parametrize("delta", [1e-8, 1e-300])
def test_tiny_delta_returns_y(data, backend, delta):
    X, Y = data
    low = to_numpy(low_pass(to_backend(X, backend), to_backend(Y, backend), delta=delta, memory_budget=3000))
    assert np.all(np.isfinite(low))
    np.testing.assert_allclose(low, Y, atol=1e-12)


def test_tiny_delta_with_large_offset(rng):
    # the Gram trick ||x||^2 + ||z||^2 - 2 x.z leaves round-off on the diagonal at large ||x||:
    # the diagonal must still be exactly 1 so no row of weights underflows
    X = rng.normal(size=(20, 3)) + 1e4
    Y = rng.normal(size=20)
    for delta in (1e-10, 1e-300):
        np.testing.assert_allclose(low_pass(X, Y, delta=delta, memory_budget=2000), Y, atol=1e-12)


@pytest.mark.parametrize("delta", [1e30, math.inf])
def test_huge_delta_column_means(data, backend, delta):
    X, Y = data
    low = to_numpy(low_pass(to_backend(X, backend), to_backend(Y, backend), delta=delta, memory_budget=2000))
    np.testing.assert_allclose(low, np.broadcast_to(Y.mean(0), Y.shape), atol=1e-12)


@pytest.mark.parametrize("budget", [None, 1])
def test_measures_match_dense(data, backend, budget, rng):
    X, _ = data
    y = np.eye(3)[rng.integers(0, 3, size=X.shape[0])]
    h = y + 0.5 * rng.normal(size=y.shape)
    deltas = [0.2, 1.0, 6.0, math.inf, 0.05]
    m = frequency_measures(to_backend(X, backend), to_backend(h, backend), to_backend(y, backend), deltas=deltas, memory_budget=budget)
    assert m.e_low.shape == (5,) and m.n_blocks == (X.shape[0] if budget == 1 else 1)
    np.testing.assert_array_equal(m.deltas, deltas)
    for t, d in enumerate(deltas):
        e_low, e_high, ratio = _dense_measures(X, h, y, d)
        np.testing.assert_allclose(float(m.e_low[t]), e_low, rtol=1e-9)
        np.testing.assert_allclose(float(m.e_high[t]), e_high, rtol=1e-9)
        np.testing.assert_allclose(float(m.low_ratio[t]), ratio, rtol=1e-9)
    # norms agree with a split
    sp = frequency_split(X, h, delta=1.0)
    np.testing.assert_allclose(float(m.h_low_norm[1]), np.linalg.norm(to_numpy(sp.low)), rtol=1e-10)
    np.testing.assert_allclose(float(m.h_high_norm[1]), np.linalg.norm(to_numpy(sp.high)), rtol=1e-10)


def test_measures_vector_targets_and_edge_cases(rng):
    X = rng.normal(size=(30, 2))
    y = rng.normal(size=30)
    m = frequency_measures(X, y, y, deltas=0.5)
    assert float(m.e_low[0]) == pytest.approx(0, abs=1e-12) and float(m.e_high[0]) == pytest.approx(0, abs=1e-12)
    e_low, e_high, ratio = _dense_measures(X, 2 * y, y, 0.5)
    m2 = frequency_measures(X, 2 * y, y, deltas=[0.5])
    np.testing.assert_allclose([float(m2.e_low[0]), float(m2.e_high[0]), float(m2.low_ratio[0])], [e_low, e_high, ratio], rtol=1e-10)
    assert e_low == pytest.approx(1.0) and e_high == pytest.approx(1.0)  # h = 2y: both errors are exactly 1
    # a constant target has no high part: e_high is undefined (NaN), not a division error
    m3 = frequency_measures(X, y, np.ones(30), deltas=[0.5])
    assert math.isnan(float(m3.e_high[0]))


def test_smooth_target_is_low_frequency(rng):
    X = rng.uniform(size=(400, 2))
    smooth = np.sin(2 * np.pi * X[:, 0]) + np.cos(np.pi * X[:, 1])
    noise = rng.normal(size=400) * smooth.std()
    m = frequency_measures(X, smooth, noise, deltas=[0.002, 0.01])
    # h = smooth: its high part is small; y = white noise: its high part is large
    assert np.all(to_numpy(m.low_ratio) > 0.95)
    s_hi, n_hi = to_numpy(m.h_high_norm), to_numpy(m.y_high_norm)
    assert np.all(s_hi < 0.2 * n_hi)


def test_delta_grid(rng):
    X = rng.normal(size=(300, 5))
    g = delta_grid(X, 6, quantiles=(0.1, 0.9))
    D = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)[np.triu_indices(300, 1)]
    np.testing.assert_allclose(g[[0, -1]], np.quantile(D, [0.1, 0.9]) / 2, rtol=1e-10)
    np.testing.assert_allclose(np.diff(np.log(g)), np.log(g[1] / g[0]), rtol=1e-10)  # geometric
    # subsample: reproducible, and on the data's scale
    Xs = np.repeat(X, 4, axis=0) * 3
    a, b = delta_grid(Xs, 3, sample=200, seed=1), delta_grid(Xs, 3, sample=200, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, delta_grid(Xs, 3, sample=200, seed=2))
    ref = delta_grid(X * 3, 3)
    assert np.all(np.abs(np.log(a / ref)) < 0.5)
    assert delta_grid(to_backend(X, "torch"), 2).shape == (2,)


@pytest.mark.parametrize("delta", [0, -1.0, float("nan")])
def test_bad_delta(data, delta):
    X, Y = data
    with pytest.raises(ValueError, match="delta"):
        low_pass(X, Y, delta=delta)
    with pytest.raises(ValueError, match="deltas"):
        frequency_measures(X, Y, Y, deltas=[1.0, delta])


def test_bad_inputs(data):
    X, Y = data
    with pytest.raises(TypeError, match="delta"):
        low_pass(X, Y, delta="1")
    with pytest.raises(ValueError, match="memory_budget"):
        low_pass(X, Y, delta=1.0, memory_budget=0)
    Xn = X.copy()
    Xn[0, 0] = np.nan
    with pytest.raises(ValueError, match="X"):
        low_pass(Xn, Y, delta=1.0)
    with pytest.raises(ValueError, match="Y"):
        low_pass(X, Y[:-1], delta=1.0)
    with pytest.raises(ValueError, match="X"):
        low_pass(X[:, 0], Y, delta=1.0)
    with pytest.raises(ValueError, match="h"):
        frequency_measures(X, Y[:, :2], Y, deltas=[1.0])
    with pytest.raises(ValueError, match="y"):
        frequency_measures(X, Y, Y[:-2], deltas=[1.0])
    with pytest.raises(ValueError, match="deltas"):
        frequency_measures(X, Y, Y, deltas=[])
    with pytest.raises(TypeError, match="Y"):
        low_pass(X, to_backend(Y, "torch"), delta=1.0)


def test_delta_grid_errors(data):
    X, _ = data
    with pytest.raises(ValueError, match="num"):
        delta_grid(X, 0)
    with pytest.raises(ValueError, match="sample"):
        delta_grid(X, sample=1)
    with pytest.raises(ValueError, match="quantiles"):
        delta_grid(X, quantiles=(0.9, 0.1))
    with pytest.raises(ValueError, match="quantiles"):
        delta_grid(X, quantiles=(0.1, 1.5))
    with pytest.raises(ValueError, match="distinct"):
        delta_grid(np.ones((5, 2)))
