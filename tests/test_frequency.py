"""Frequency-principle filter: blockwise vs dense, limits, measures, delta grid, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from kernels.backend import to_numpy
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
    m = frequency_measures(
        to_backend(X, backend), to_backend(h, backend), to_backend(y, backend), deltas=deltas, memory_budget=budget
    )
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
    np.testing.assert_allclose(
        [float(m2.e_low[0]), float(m2.e_high[0]), float(m2.low_ratio[0])], [e_low, e_high, ratio], rtol=1e-10
    )
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


# ----------------------------------------------------------------------------- accuracy statements (module notes)


def _pairs(rng, m, R, dtype, d=3, sep=1.0):
    """m pairs of points ``sep`` apart, their centres spread to radius R: close pairs far from the mean."""
    c = rng.normal(size=(m, d))
    c *= R / np.linalg.norm(c, axis=1).max()
    u = rng.normal(size=(m, d))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return np.concatenate([c, c + sep * u]).astype(dtype)


def _exact_low(X, Y, delta):
    """The filter on the same rounded inputs, in float64 with distances from direct differences."""
    return _dense_low(X.astype(np.float64), Y.astype(np.float64), delta)


def _bound(X, delta):
    """The documented filter bound ``25 eps R^2 / delta + 10 n eps`` (relative to max|Y|)."""
    eps = np.finfo(X.dtype).eps
    Xd = X.astype(np.float64)
    R = np.linalg.norm(Xd - Xd.mean(0), axis=1).max()
    return 25 * eps * R**2 / delta + 10 * X.shape[0] * eps, eps, R


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("R", [1.0, 100.0, 1e4])
@pytest.mark.parametrize("delta", [0.05, 0.5, 5.0])
def test_low_pass_accuracy_bound(rng, dtype, R, delta):
    X = _pairs(rng, 25, R, dtype)
    Y = rng.normal(size=(50, 2)).astype(dtype)
    err = np.abs(low_pass(X, Y, delta=delta).astype(np.float64) - _exact_low(X, Y, delta)).max() / np.abs(Y).max()
    bound, _, _ = _bound(X, delta)
    assert err <= bound


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_low_pass_accuracy_range_boundary(rng, dtype):
    # inside the documented range (delta >= 2.5e7 eps R^2) the filter is accurate to 1e-6 max|Y| ...
    X = _pairs(rng, 25, 1.0, dtype)
    Y = rng.normal(size=(50, 2)).astype(dtype)
    _, eps, R = _bound(X, 1.0)
    delta = 2.5e7 * eps * R**2
    err = np.abs(low_pass(X, Y, delta=delta).astype(np.float64) - _exact_low(X, Y, delta)).max() / np.abs(Y).max()
    assert err <= 1e-6
    # ... and far outside it (delta < 25 eps R^2: close pairs far from the mean) the error is O(1), as documented
    Xf = _pairs(rng, 25, 1e4 if dtype == np.float32 else 1e9, dtype)
    _, eps, R = _bound(Xf, 0.5)
    assert 0.5 < 25 * eps * R**2
    err = np.abs(low_pass(Xf, Y, delta=0.5).astype(np.float64) - _exact_low(Xf, Y, 0.5)).max() / np.abs(Y).max()
    assert err > 1e-2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_delta_boundary(rng, dtype):
    X = rng.normal(size=(50, 3)).astype(dtype)
    Y = rng.normal(size=(50, 2)).astype(dtype)
    n, eps = X.shape[0], np.finfo(dtype).eps
    Xd = X.astype(np.float64)
    r2 = cdist(Xd, Xd, "sqeuclidean")[np.triu_indices(n, 1)]
    R = np.linalg.norm(Xd - Xd.mean(0), axis=1).max()
    assert r2.min() >= 100 * eps * R**2  # the points are resolved in this dtype
    delta_b = r2.min() / (3 * np.log(2 * n / eps))
    gap = lambda d: np.abs(low_pass(X, Y, delta=d).astype(np.float64) - Y).max() / np.abs(Y).max()  # noqa: E731
    assert gap(delta_b) <= 4 * eps  # at the documented boundary: Y itself
    assert gap(8 * delta_b) > 100 * eps  # a little above it the nearest points mix


def test_measures_accuracy_bound_float32(rng):
    X = _pairs(rng, 30, 30.0, np.float32)
    y = np.eye(3)[rng.integers(0, 3, size=60)].astype(np.float32)
    h = (y + 0.3 * rng.normal(size=y.shape)).astype(np.float32)
    deltas = [0.5, 5.0, 50.0]
    m = frequency_measures(X, h, y, deltas=deltas)
    n, c = y.shape
    for t, d in enumerate(deltas):
        e_low, e_high, _ = _dense_measures(X.astype(np.float64), h.astype(np.float64), y.astype(np.float64), d)
        B, _, _ = _bound(X, d)
        scale = 2 * np.sqrt(n * c) * B * (np.abs(h).max() + np.abs(y).max())
        assert abs(float(m.e_low[t]) - e_low) <= scale / float(m.y_low_norm[t])
        assert abs(float(m.e_high[t]) - e_high) <= scale / float(m.y_high_norm[t])


# ----------------------------------------------------------------------------- deep.train's per-epoch measures


def test_deep_train_measures_use_probabilities(rng):
    """A perfect classifier (softmax ~ one-hot) must have e_low ~ e_high ~ 0; its raw logits do not."""
    from types import SimpleNamespace

    import torch

    from deep.records import FrequencySubset, frequency_outputs, measure
    from deep.train import DeviceData

    n, C = 40, 10
    labels = np.arange(n) % C
    feats = rng.normal(size=(n, 5))
    x = torch.as_tensor(np.concatenate([np.eye(C)[labels], feats], axis=1), dtype=torch.float32)

    class Perfect(torch.nn.Module):  # logits 40 for the given label, 0 elsewhere: softmax = one-hot to ~1e-17
        def forward(self, z):
            return 40.0 * z[:, :C]

    lab = torch.as_tensor(labels)
    dd = DeviceData(
        x_train=x,
        y_train=lab,
        y_train_true=lab,
        flipped=torch.zeros(n, dtype=torch.bool),
        x_val=x[:0],
        y_val=lab[:0],
        y_val_true=lab[:0],
        x_test=x[:8],
        y_test=lab[:8],
    )
    pos = torch.arange(n)
    freq = FrequencySubset(pos=pos, X=feats, Y=np.eye(C)[labels], deltas=np.array([0.5, 2.0, 8.0]))
    out, _ = measure(Perfect(), dd, None, SimpleNamespace(eval_batch_size=16), freq)
    assert out["train_acc"] == 1.0
    np.testing.assert_allclose(out["e_low"], 0, atol=1e-10)
    np.testing.assert_allclose(out["e_high"], 0, atol=1e-10)
    # the logits themselves are far from the one-hot labels in every frequency band
    logits = Perfect()(x).double().numpy()
    m = frequency_measures(feats, logits, np.eye(C)[labels], deltas=freq.deltas)
    assert np.all(to_numpy(m.e_low) > 10) and np.all(to_numpy(m.e_high) > 10)
    np.testing.assert_allclose(frequency_outputs(torch.as_tensor(logits)).sum(1), 1.0, rtol=1e-12)


# ----------------------------------------------------------------------------- the frequency run's report


def _fake_run(gd_plateau=0.0, chained_plateau=0.5, noise=(0.8, 0.9), clean=(0.4, 0.6), S=100, T=1000):
    """A frequency run's numbers with e_high -> plateau per rule (e_low 5x faster)."""
    rec_net = np.array([0, 1, 3, 10, 30, 100])
    rec_net = rec_net[rec_net <= S] if S >= 100 else np.array([0, 1, S])
    rec_th = np.unique(np.concatenate([rec_net, [S, 300, T]])) if T > S else rec_net

    def curve(rec, plateau):
        t = rec[:, None].astype(float)
        eh = plateau + (1 - plateau) * np.exp(-t / 10.0) * np.ones((1, 2))
        el = plateau / 3 + (1 - plateau / 3) * np.exp(-t / 2.0) * np.ones((1, 2))
        return {"record": rec, "e_low": el, "e_high": eh}

    r = {
        "steps": S,
        "theory_steps": T,
        "deltas": np.array([1.0, 4.0]),
        "n_flipped": 40,
        "lr": 0.01,
        "d_max": 100.0,
        "width": 64,
        "noise_location": {"clean": np.array(clean), "noise": np.array(noise)},
    }
    for src, rec in (("theory", rec_th), ("net", rec_net)):
        r[f"{src}_gd"] = curve(rec, gd_plateau)
        r[f"{src}_chained"] = curve(rec, chained_plateau)
    return r


def test_frequency_report_sentences_follow_the_numbers():
    from benchmarks.runs.frequency import findings

    f = findings(_fake_run())
    text = " ".join(f["sentences"])
    assert f["gd_fits_high"] and f["chained_keeps_high"]
    assert "So GD fits the high-frequency part" in text and "not complete" not in text
    assert "noise vector" in text and "0.80-0.90" in text and "0.40-0.60" in text
    assert "At every delta the noise is more high-frequency" in text
    assert "in 8 of 8" in text
    # plain GD that has not fitted the high frequencies: the report says so, it does not claim the contrast
    f = findings(_fake_run(gd_plateau=0.55))
    text = " ".join(f["sentences"])
    assert not f["gd_fits_high"] and "So GD fits" not in text
    assert "has not fallen below 0.05 by step 100" in text
    # chained self-distillation that fits them too
    f = findings(_fake_run(chained_plateau=0.01))
    text = " ".join(f["sentences"])
    assert not f["chained_keeps_high"] and "does not keep the high-frequency part out" in text
    # noise that is not high-frequency: the premise is reported as not holding
    text = " ".join(findings(_fake_run(noise=(0.3, 0.5)))["sentences"])
    assert "At no delta is the noise more high-frequency" in text
    text = " ".join(findings(_fake_run(noise=(0.3, 0.9)))["sentences"])
    assert "only at delta = 4" in text
    # a still-moving chained run is reported as such
    f = findings(_fake_run(S=3, T=3))
    assert "still moving" in " ".join(f["sentences"])


def test_noise_location_measures_the_split(rng):
    from benchmarks.runs.frequency import noise_location

    X = rng.normal(size=(40, 3))
    clean = np.eye(4)[rng.integers(0, 4, size=40)]
    noisy = clean.copy()
    noisy[:10] = np.eye(4)[rng.integers(0, 4, size=10)]
    out = noise_location(X, clean, noisy, [0.5, 2.0])
    for name, v in (("clean", clean), ("noise", noisy - clean), ("noisy", noisy)):
        for j, d in enumerate([0.5, 2.0]):
            high = v - _dense_low(X, v, d)
            np.testing.assert_allclose(out[name][j], np.sum(high**2) / np.sum(v**2), rtol=1e-10)
