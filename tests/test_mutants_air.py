"""Tests that kill mutants of theory/air.py which the rest of the suite let through (``make mutate``).

References: the defining equations checked by substitution (``|1 - lr d|^k = 1/2``, ``exp(-lr d t) = 1/2``).
"""

from __future__ import annotations

import numpy as np
import pytest

from kernels import spectrum
from theory import half_fit_time


def _spec(values):
    Q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(len(values), len(values))))
    return spectrum(Q @ np.diag(values) @ Q.T)


def test_half_fit_time_oscillating_directions():
    """Issue 13: the lr d > 1 branch. With lr d in (1, 2), |1 - lr d|^k = 1/2 (substitution)."""
    d = np.array([4.0, 3.0, 2.5, 1.0, 0.5])
    lr = 0.45  # lr d = 1.8, 1.35, 1.125, 0.45, 0.225
    s = _spec(d)
    k = np.asarray(half_fit_time(s, lr))
    vals = np.asarray(s.values)
    x = lr * vals
    assert (x > 1).sum() == 3 and (x < 1).sum() == 2
    np.testing.assert_allclose(np.abs(1 - x) ** k, 0.5, rtol=1e-10)
    assert (k > 0).all()


def test_half_fit_time_one_step_and_null_directions():
    d = np.array([2.0, 1.0, 0.0])
    s = spectrum(np.diag(d))  # exact eigenvalues: lr d = 1 exactly
    k = np.asarray(half_fit_time(s, 0.5))  # lr d = 1, 0.5, 0
    vals = np.asarray(s.values)
    assert k[np.argmax(vals)] == 0.0  # one step fits exactly
    assert k[1] == pytest.approx(1.0)  # (1 - 0.5)^1 = 1/2
    assert np.isinf(k[np.argmin(vals)])


def test_half_fit_time_continuous():
    d = np.array([3.0, 1.0, 0.2])
    s = _spec(d)
    t = np.asarray(half_fit_time(s, 0.9, continuous=True))  # lr d may exceed 2 in continuous time
    np.testing.assert_allclose(np.exp(-0.9 * np.asarray(s.values) * t), 0.5, rtol=1e-12)


def test_half_fit_time_tiny_steps_keep_full_precision():
    """lr d = 1e-12: k = ln2 / x (1 - x/2 + ...) to 1e-12 relative; -log(1 - x) instead of -log1p(-x) loses 4 digits."""
    d = np.array([1.0, 0.5])
    s = spectrum(np.diag(d))
    lr = 1e-12
    k = np.asarray(half_fit_time(s, lr))
    x = lr * np.asarray(s.values)
    np.testing.assert_allclose(k, np.log(2.0) / x * (1 - x / 2), rtol=1e-11)


# ----------------------------------------------------------------------------- predicted_curves


def _blobs(rng, n, C=2):
    lab = rng.integers(0, C, size=n)
    X = rng.normal(size=(n, 2)) + 1.5 * np.eye(C, 2)[lab]
    return X, lab


def _dense_gd_cross(K, Kc, Y, lr, steps):
    c, out = np.zeros_like(Y), []
    for _ in range(steps):
        c = c - lr * (K @ c - Y)
        out.append(Kc @ c)
    return out


def _setup(C=2, seed=0, n=60, m=80):
    from kernels import rbf

    rng = np.random.default_rng(seed)
    X, lt = _blobs(rng, n, C)
    Xt, tt = _blobs(rng, m, C)
    lg = np.where(rng.random(n) < 0.3, (lt + 1) % C, lt)
    K, Kc = rbf(X, gamma=0.5), rbf(Xt, X, gamma=0.5)
    return K, Kc, lt, lg, tt


def test_best_test_step_is_the_first_argmax_of_the_dense_curve():
    """best_step_test, best_test_acc and final_test_acc against dense gradient descent (numpy)."""
    from theory import predicted_curves

    K, Kc, lt, lg, tt = _setup()
    Y = np.eye(2)[lg]
    lr = 1.0 / np.linalg.eigvalsh(K)[-1]
    steps = 60
    rec = np.arange(1, steps + 1)
    cur = predicted_curves(
        spectrum(K), Y, labels_true=lt, labels_given=lg, lr=lr, steps=steps, record=rec, K_cross=Kc, test_labels=tt
    )
    acc = np.array([np.mean(f.argmax(1) == tt) for f in _dense_gd_cross(K, Kc, Y, lr, steps)])
    i = int(np.argmax(acc))
    assert len(set(np.round(acc, 12))) > 1  # the curve moves
    assert cur.best_step_test == rec[i]
    assert cur.best_test_acc == pytest.approx(acc[i])
    assert cur.final_test_acc == pytest.approx(acc[-1])


def test_a_class_absent_from_the_given_labels_keeps_finite_test_mse():
    """C = 3 outputs, given labels only use classes 0 and 1: the code of class 2 is its one-hot row
    (dense reference), not the mean of no rows."""
    import warnings

    from theory import predicted_curves

    K, Kc, lt, lg, tt = _setup(C=2, seed=1)
    Y = np.eye(3)[lg]
    tt3 = tt.copy()
    tt3[:5] = 2  # some test points of class 2
    lr = 1.0 / np.linalg.eigvalsh(K)[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        cur = predicted_curves(
            spectrum(K), Y, labels_true=lt, labels_given=lg, lr=lr, steps=5, record=[5], K_cross=Kc, test_labels=tt3
        )
    f = _dense_gd_cross(K, Kc, Y, lr, 5)[-1]
    want = np.sum((f - np.eye(3)[tt3]) ** 2) / len(tt3)
    assert cur.test_mse[0] == pytest.approx(want, rel=1e-9)


def test_non_integer_indices_and_labels_are_refused():
    from theory import first_fit_times, predicted_curves

    K, Kc, lt, lg, tt = _setup()
    Y = np.eye(2)[lg]
    s = spectrum(K)
    with pytest.raises(ValueError, match="val_index"):
        predicted_curves(
            s,
            Y,
            labels_true=lt,
            labels_given=lg,
            lr=0.1,
            steps=2,
            K_cross=Kc,
            test_labels=tt,
            val_index=np.array([0.0, 1.5, 3.0]),
        )
    labels = lg.astype(float)
    labels[0] = 0.5
    with pytest.raises(ValueError, match="labels"):
        first_fit_times(s, Y, labels, np.array([0.0, 1.0, 2.0]))


def test_first_fit_times_do_not_depend_on_the_chunking(monkeypatch):
    """The default chunk (at least one time per chunk, however large n c) gives the times of chunk=T."""
    import theory.air as air
    from theory import first_fit_times

    K, _, _, lg, _ = _setup()
    Y = np.eye(2)[lg]
    s = spectrum(K)
    times = np.linspace(0.0, 50.0, 26)
    whole = first_fit_times(s, Y, lg, times, chunk=times.size)
    monkeypatch.setattr(air, "_FIT_CHUNK_ELEMENTS", 1)  # fewer elements than one time needs
    np.testing.assert_array_equal(first_fit_times(s, Y, lg, times), whole)
    assert np.isfinite(whole).any()


def test_label_spectrum_of_zero_labels_is_nan_without_warnings():
    import warnings

    from theory import label_spectrum

    K, _, _, lg, _ = _setup()
    Y = np.eye(2)[lg]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        ls = label_spectrum(spectrum(K), np.zeros_like(Y), Y)  # clean part 0: its shares are undefined
    assert ls.total_clean == 0.0 and np.isnan(np.asarray(ls.cum_share_clean)).all()
    # the noisy labels' shares: cumulative energy of V^T Y over the total (dense numpy)
    w, V = np.linalg.eigh(K)
    e = np.sum((V[:, ::-1].T @ Y) ** 2, axis=1)
    np.testing.assert_allclose(np.asarray(ls.cum_share_noisy), np.cumsum(e) / e.sum(), rtol=1e-9, atol=1e-12)
