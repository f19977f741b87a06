"""theory.air: label spectra, half-fit times and predicted learning curves.

References: Parseval, direct numpy eigendecompositions, explicit dense iteration of
gradient descent (and of the dual coefficients for test points), dense KRR solves.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from kernels import spectrum
from kernels.backend import to_numpy
from tests.conftest import to_backend
from theory.air import distillation_vs_early_stopping, half_fit_time, label_spectrum, predicted_curves


def _rbf(A, B, gamma=0.5):
    return np.exp(-gamma * ((A[:, None, :] - B[None, :, :]) ** 2).sum(-1))


def _laplace(A, B, gamma=1.0):
    return np.exp(-gamma * np.sqrt(((A[:, None, :] - B[None, :, :]) ** 2).sum(-1)))


def _blobs(rng, m):
    lab = rng.integers(0, 2, m)
    X = 0.8 * rng.normal(size=(m, 2)) + np.where(lab[:, None] == 1, 1.0, -1.0) * np.array([1.0, 0.0])
    return X, lab


def _flip(rng, labels, rate, C=2):
    flip = rng.random(labels.size) < rate
    return np.where(flip, (labels + rng.integers(1, C, labels.size)) % C, labels)


@pytest.fixture
def noisy(rng):
    """Two Gaussian blobs, 30% flipped training labels, Laplace kernel (slow spectral decay)."""
    X, lt = _blobs(rng, 120)
    Xt, tt = _blobs(rng, 200)
    lg = _flip(rng, lt, 0.3)
    K = _laplace(X, X)
    return dict(K=K, Kc=_laplace(Xt, X), lt=lt, lg=lg, tt=tt, Y=np.eye(2)[lg], d_max=float(np.linalg.eigvalsh(K)[-1]))


# ----------------------------------------------------------------------------- label spectra


@pytest.mark.parametrize("onehot", [False, True])
def test_label_energy_parseval_and_direct(backend, rng, onehot):
    n = 40
    X = rng.normal(size=(n, 3))
    K = _rbf(X, X)
    if onehot:
        yc, yn = np.eye(4)[rng.integers(0, 4, n)], np.eye(4)[rng.integers(0, 4, n)]
    else:
        yc, yn = rng.normal(size=n), rng.normal(size=n)
    ls = label_spectrum(spectrum(to_backend(K, backend)), to_backend(yc, backend), to_backend(yn, backend))
    w, V = np.linalg.eigh(K)  # independent decomposition, ascending
    V = V[:, ::-1]
    for name, y in (("clean", yc), ("noise", yn - yc), ("noisy", yn)):
        e = to_numpy(getattr(ls, f"energy_{name}"))
        assert e.sum() == pytest.approx(float(np.sum(y * y)), rel=1e-10)  # Parseval
        assert getattr(ls, f"total_{name}") == pytest.approx(float(np.sum(y * y)), rel=1e-12)
        direct = (V.T @ y) ** 2
        direct = direct if direct.ndim == 1 else direct.sum(axis=1)
        top = slice(0, 10)  # well-separated leading eigenvalues: unique eigenvectors up to sign
        np.testing.assert_allclose(e[top], direct[top], rtol=1e-6, atol=1e-10)
        share = ls.share_at([0, 10, n], name)
        assert share[0] == 0.0 and share[2] == pytest.approx(1.0, rel=1e-12)
        assert share[1] == pytest.approx(direct[top].sum() / np.sum(y * y), rel=1e-6)


def test_clean_share_concentrates_in_top_directions(rng):
    """Clean labels in the top eigenvectors, white noise: AIR's anisotropy."""
    n = 80
    X = rng.normal(size=(n, 2))
    K = _rbf(X, X)
    s = spectrum(K)
    yc = s.vectors[:, :3] @ np.array([3.0, -2.0, 1.5])
    yn = yc + 0.5 * rng.normal(size=n)
    ls = label_spectrum(s, yc, yn)
    clean, noise = ls.share_at([5], "clean")[0], ls.share_at([5], "noise")[0]
    assert clean > 0.999
    assert noise < 0.25  # expected 5/n = 0.06 for white noise
    assert clean > 4 * noise


def test_half_fit_time(backend, noisy):
    K = noisy["K"]
    s = spectrum(to_backend(K, backend))
    lr = 0.9 / noisy["d_max"]
    k = to_numpy(half_fit_time(s, lr))
    d = np.sort(np.clip(np.linalg.eigvalsh(K), 0, None))[::-1]
    np.testing.assert_allclose(1 - (1 - lr * d) ** k, 0.5, atol=1e-9)  # the defining equation
    kc = to_numpy(half_fit_time(s, lr, continuous=True))
    np.testing.assert_allclose(1 - np.exp(-lr * d * kc), 0.5, atol=1e-9)
    assert np.all(np.diff(k) >= 0)  # top directions first
    from kernels import Spectrum

    z = Spectrum(values=to_backend(np.array([2.0, 0.0]), backend), vectors=to_backend(np.eye(2), backend))
    assert np.isinf(to_numpy(half_fit_time(z, 0.1))[1])
    with pytest.raises(ValueError, match="lr must be in"):
        half_fit_time(s, 2.5 / noisy["d_max"])


def test_half_fit_time_oscillating_directions(backend):
    """lr d in (1, 2): the magnitude |1 - lr d| decays, k = log(1/2) / log|1 - lr d|; lr d = 1 fits in 0 steps."""
    from kernels import Spectrum

    d = np.array([4.0, 3.0, 2.5, 2.0, 1.0, 0.5, 0.0])
    lr = 0.45  # lr d = 1.8, 1.35, 1.125, 0.9, 0.45, 0.225, 0 (lr < 2 / d_max = 0.5)
    s = Spectrum(values=to_backend(d, backend), vectors=to_backend(np.eye(d.size), backend))
    k = to_numpy(half_fit_time(s, lr))
    x = lr * d
    with np.errstate(divide="ignore"):
        want = np.log(0.5) / np.log(np.abs(1 - x))  # inf where x = 0 (log 1 = 0)
    want[-1] = np.inf
    np.testing.assert_allclose(k, want, rtol=1e-12)
    assert np.all(np.isfinite(k[:-1])) and np.isinf(k[-1])
    np.testing.assert_allclose(np.abs(1 - x[:-1]) ** k[:-1], 0.5, rtol=1e-12)  # the defining equation
    # by hand: |1 - 1.8| = 0.8 -> ln 2 / ln 1.25; |1 - 1.35| = 0.35; |1 - 1.125| = 0.125 = 2^-3 -> 1/3
    np.testing.assert_allclose(k[:3], [math.log(2) / math.log(1.25), math.log(2) / math.log(1 / 0.35), 1 / 3], rtol=1e-12)
    assert k[0] > k[1] > k[2] > k[3]  # not in eigenvalue order: lr d = 1.8 is fitted last, lr d = 0.9 first
    # lr d = 1 exactly: one step fits the direction, zero steps to half
    one = Spectrum(values=to_backend(np.array([1.6, 1.0, 0.5]), backend), vectors=to_backend(np.eye(3), backend))
    k1 = to_numpy(half_fit_time(one, 1.0))
    assert k1[1] == 0.0
    np.testing.assert_allclose(k1[[0, 2]], [math.log(2) / math.log(1 / 0.6), 1.0], rtol=1e-12)


# ----------------------------------------------------------------------------- learning curves


def _dense_gd(K, Y, lr, steps_wanted):
    u, c, out_u, out_c = np.zeros_like(Y), np.zeros_like(Y), {}, {}
    for t in range(max(steps_wanted) + 1):
        if t in steps_wanted:
            out_u[t], out_c[t] = u.copy(), c.copy()
        u = u - lr * K @ (u - Y)
        c = c - lr * (K @ c - Y)
    return out_u, out_c


def test_curves_match_dense_computation(backend, noisy):
    K, Kc, Y, lt, lg, tt = noisy["K"], noisy["Kc"], noisy["Y"], noisy["lt"], noisy["lg"], noisy["tt"]
    lr, rec = 1.5 / noisy["d_max"], [3, 40, 400]
    val = np.arange(0, 200, 4)
    cur = predicted_curves(
        spectrum(to_backend(K, backend)),
        to_backend(Y, backend),
        labels_true=lt,
        labels_given=lg,
        lr=lr,
        steps=400,
        record=rec,
        K_cross=to_backend(Kc, backend),
        test_labels=tt,
        val_index=val,
    )
    us, cs = _dense_gd(K, Y, lr, set(rec))
    flipped = lt != lg
    test_rows = np.setdiff1d(np.arange(200), val)
    for j, t in enumerate(rec):
        p = us[t].argmax(1)
        assert cur.train_acc[j] == pytest.approx(np.mean(p == lg))
        assert cur.acc_clean[j] == pytest.approx(np.mean(p[~flipped] == lg[~flipped]))
        assert cur.acc_flipped_given[j] == pytest.approx(np.mean(p[flipped] == lg[flipped]))
        assert cur.acc_flipped_true[j] == pytest.approx(np.mean(p[flipped] == lt[flipped]))
        assert cur.train_mse[j] == pytest.approx(np.sum((us[t] - Y) ** 2) / len(Y), rel=1e-9)
        f = Kc @ cs[t]
        assert cur.test_acc[j] == pytest.approx(np.mean(f[test_rows].argmax(1) == tt[test_rows]))
        assert cur.val_acc[j] == pytest.approx(np.mean(f[val].argmax(1) == tt[val]))
        assert cur.test_mse[j] == pytest.approx(np.sum((f[test_rows] - np.eye(2)[tt[test_rows]]) ** 2) / test_rows.size, rel=1e-9)
    i = int(np.argmax(cur.val_acc))
    assert cur.best_step_val == rec[i] and cur.test_acc_at_best_val == cur.test_acc[i]


def test_subsets_partition_the_data(noisy):
    cur = predicted_curves(
        spectrum(noisy["K"]),
        noisy["Y"],
        labels_true=noisy["lt"],
        labels_given=noisy["lg"],
        lr=0.5 / noisy["d_max"],
        steps=10,
        record=[10],
    )
    assert np.all(cur.clean_mask ^ cur.flipped_mask)
    np.testing.assert_array_equal(cur.clean_mask, noisy["lt"] == noisy["lg"])
    assert 0 < cur.flipped_mask.sum() < cur.flipped_mask.size
    # the subset accuracies recombine into the overall accuracy against the given labels
    nf = cur.flipped_mask.sum()
    n = cur.flipped_mask.size
    assert cur.train_acc[0] == pytest.approx(((n - nf) * cur.acc_clean[0] + nf * cur.acc_flipped_given[0]) / n)


def test_early_stopping_beats_the_end_and_distillation_converges_to_krr(noisy):
    """GD ends interpolating the noisy labels; its best stopping step is better. Chained
    self-distillation ends at KRR with ridge (1 - alpha)/lr (dense solve)."""
    K, Kc, Y, tt = noisy["K"], noisy["Kc"], noisy["Y"], noisy["tt"]
    lr, steps, alpha = 1.0 / noisy["d_max"], 10**9, 0.9
    rec = np.unique(np.r_[0, np.geomspace(1, steps, 40).astype(np.int64)])
    cmp = distillation_vs_early_stopping(
        spectrum(K),
        Y,
        labels_true=noisy["lt"],
        labels_given=noisy["lg"],
        lr=lr,
        steps=steps,
        target_momentum=alpha,
        record=rec,
        K_cross=Kc,
        test_labels=tt,
        val_index=np.arange(50),
    )
    gd, S = cmp.gd, cmp.summary
    assert gd.acc_flipped_given[-1] == 1.0  # memorised every flipped label
    interp = Kc @ np.linalg.solve(K, Y)
    rows = np.arange(50, 200)
    assert gd.final_test_acc == pytest.approx(np.mean(interp[rows].argmax(1) == tt[rows]))
    assert gd.best_test_acc >= gd.final_test_acc + 0.1
    assert gd.test_acc_at_best_val > gd.final_test_acc
    ridge = (1 - alpha) / lr
    krr = Kc @ np.linalg.solve(K + ridge * np.eye(len(K)), Y)
    assert S["chained_final_test_acc"] == pytest.approx(np.mean(krr[rows].argmax(1) == tt[rows]))
    assert S["chained_final_test_acc"] > S["gd_final_test_acc"]
    assert S["ridge"] == pytest.approx(ridge) and cmp.ridge == pytest.approx(ridge)
    assert S["gd_best_test_acc"] == gd.best_test_acc and S["gd_best_step"] == gd.best_step_test
    assert all(isinstance(v, float) for v in S.values())


# ----------------------------------------------------------------------------- bad input


def test_bad_input(noisy):
    s = spectrum(noisy["K"])
    base = dict(labels_true=noisy["lt"], labels_given=noisy["lg"], lr=0.5 / noisy["d_max"], steps=5)
    Y = noisy["Y"]
    with pytest.raises(ValueError, match="targets"):
        predicted_curves(s, Y, targets="distill", **base)
    with pytest.raises(ValueError, match="lr must be in"):
        predicted_curves(s, Y, **{**base, "lr": 3.0 / noisy["d_max"]})
    with pytest.raises(ValueError, match="target_momentum must be"):
        predicted_curves(s, Y, targets="chained", target_momentum=1.5, **base)
    with pytest.raises(ValueError, match="alpha is the weight on the ground truth"):
        predicted_curves(s, Y, targets="chained", alpha=0.5, **base)
    with pytest.raises(ValueError, match="steps"):
        predicted_curves(s, Y, **{**base, "steps": 0})
    with pytest.raises(ValueError, match="labels_given"):
        predicted_curves(s, Y, **{**base, "labels_given": noisy["lg"] + 5})
    with pytest.raises(ValueError, match="labels_true"):
        predicted_curves(s, Y, **{**base, "labels_true": noisy["lt"][:-1]})
    with pytest.raises(ValueError, match="y_noisy must encode labels_given"):
        predicted_curves(s, Y[:, ::-1], **base)
    with pytest.raises(ValueError, match="y_noisy must be 2-D"):
        predicted_curves(s, noisy["lg"].astype(float), **base)
    with pytest.raises(ValueError, match="y_noisy has 119 rows"):
        predicted_curves(s, Y[:-1], **base)
    with pytest.raises(ValueError, match="test_labels must be given"):
        predicted_curves(s, Y, K_cross=noisy["Kc"], **base)
    with pytest.raises(ValueError, match="val_index"):
        predicted_curves(s, Y, K_cross=noisy["Kc"], test_labels=noisy["tt"], val_index=[0, 500], **base)
    with pytest.raises(ValueError, match="need K_cross"):
        predicted_curves(s, Y, test_labels=noisy["tt"], **base)
    with pytest.raises(ValueError, match="K_cross"):
        predicted_curves(s, Y, K_cross=noisy["Kc"][:, :-1], test_labels=noisy["tt"], **base)
    with pytest.raises(ValueError, match="y_noisy must have the shape of y_clean"):
        label_spectrum(s, Y, Y[:, :1])
    with pytest.raises(ValueError, match="which"):
        label_spectrum(s, Y, Y).share_at([1], "signal")
    with pytest.raises(ValueError, match="ks"):
        label_spectrum(s, Y, Y).share_at([500])
    with pytest.raises(ValueError, match="target_momentum must be"):
        distillation_vs_early_stopping(s, Y, target_momentum=1.0, **base)
    for name, value in (("targets", "gd"), ("alpha", 0.5)):  # set by the function itself
        with pytest.raises(TypeError, match=f"distillation_vs_early_stopping: {name} is set by this function"):
            distillation_vs_early_stopping(s, Y, target_momentum=0.5, **base, **{name: value})
