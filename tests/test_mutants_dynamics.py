"""Tests that kill mutants of theory/dynamics.py which the rest of the suite let through (``make mutate``).

References: scipy.linalg.expm of the dense gradient-flow generator, a dense gradient-descent loop, byte counts
by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import expm

from kernels import rbf, spectrum
from theory import linearized_training


def _problem(n=15, c=None, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    y = np.sin(X[:, 0]) if c is None else rng.normal(size=(n, c))
    return X, rbf(X, gamma=0.5), y


@pytest.mark.parametrize("targets, alpha", [("gd", None), ("anchored", 0.6)])
def test_continuous_flow_matches_expm_at_several_times(targets, alpha):
    """u(t) = (I - expm(-a K t)) y, t = lr * step, for gd (a = 1) and anchored (rate a = alpha): scipy expm."""
    _, K, y = _problem()
    lr, rec = 0.3, [0, 1, 4, 9, 30]
    path = linearized_training(spectrum(K), y, lr=lr, steps=30, targets=targets, alpha=alpha, record=rec, continuous=True)
    a = 1.0 if alpha is None else alpha
    for j, step in enumerate(rec):
        want = (np.eye(len(y)) - expm(-a * K * lr * step)) @ y
        np.testing.assert_allclose(np.asarray(path.fits)[j], want, rtol=1e-9, atol=1e-11)


def test_discrete_chained_matches_a_dense_loop():
    """Chained targets, constant target momentum m, dense loop of the documented rule:
    u' = u - lr K (u - tau), tau' = m tau + (1 - m) u (u before the step), tau_0 = y."""
    _, K, y = _problem(seed=2)
    lr, m, steps = 0.5 / np.linalg.eigvalsh(K)[-1], 0.7, 12
    path = linearized_training(spectrum(K), y, lr=lr, steps=steps, targets="chained", target_momentum=m)
    fits = np.asarray(path.fits)
    u, tau = np.zeros_like(y), y.copy()
    for t in range(steps + 1):
        np.testing.assert_allclose(fits[t], u, rtol=1e-9, atol=1e-11)
        u, tau = u - lr * K @ (u - tau), (1 - m) * u + m * tau
    # the limit: KRR with ridge (1 - m)/lr (module docstring)
    long = linearized_training(spectrum(K), y, lr=lr, steps=20000, targets="chained", target_momentum=m, record=[20000])
    lam = (1 - m) / lr
    want = K @ np.linalg.solve(K + lam * np.eye(len(y)), y)
    np.testing.assert_allclose(np.asarray(long.fits)[0], want, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("c", [None, 3])
def test_predict_budget_counts_steps_points_and_outputs(c):
    X, K, y = _problem(c=c)
    rec, m = [1, 3, 7], 5
    path = linearized_training(spectrum(K), y, lr=0.1, steps=7, record=rec)
    Kc = rbf(X[:m] + 0.1, X, gamma=0.5)
    need = len(rec) * m * (1 if c is None else c) * 8
    assert np.asarray(path.predict(Kc, memory_budget=need)).shape[:2] == (len(rec), m)
    with pytest.raises(ValueError, match="memory_budget"):
        path.predict(Kc, memory_budget=need - 1)


def test_record_budget_counts_each_recorded_step():
    """Per record: 3 filters, coef and fit (k, k c, n c numbers) plus step and time (2 x 8 bytes)."""
    _, K, y = _problem()
    s = spectrum(K)
    k, n = s.k, s.n_samples
    per = (3 * k + k + n) * 8 + 16
    linearized_training(s, y, lr=0.1, steps=9, record=[2, 5], memory_budget=2 * per)
    with pytest.raises(ValueError, match="memory_budget"):
        linearized_training(s, y, lr=0.1, steps=9, record=[2, 5], memory_budget=2 * per - 1)
    linearized_training(s, y, lr=0.1, steps=9, memory_budget=10 * per)  # all of 0..9
    with pytest.raises(ValueError, match="memory_budget"):
        linearized_training(s, y, lr=0.1, steps=9, memory_budget=10 * per - 1)


def test_a_scalar_record_is_one_recorded_step_in_the_budget():
    _, K, y = _problem()
    s = spectrum(K)
    per = (3 * s.k + s.k + s.n_samples) * 8 + 16
    path = linearized_training(s, y, lr=0.1, steps=9, record=4, memory_budget=per)
    assert np.asarray(path.fits).shape == (1, len(y))
    with pytest.raises(ValueError, match="memory_budget"):
        linearized_training(s, y, lr=0.1, steps=9, record=4, memory_budget=per - 1)
