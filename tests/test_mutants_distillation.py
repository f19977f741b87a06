"""Tests that kill mutants of theory/distillation.py which the rest of the suite let through (``make mutate``).

Each checks against an independent reference: a dense numpy computation or a hand count of bytes.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from kernels import rbf, spectrum
from theory import self_distillation, sparsification


def _problem(n=12, seed=0):
    X = np.random.default_rng(seed).normal(size=(n, 2))
    y = np.sin(X[:, 0]) + 0.1 * np.random.default_rng(seed + 1).normal(size=n)
    return X, rbf(X, gamma=0.5), y


def test_summary_gap_is_the_last_step_against_the_limit():
    """``|fit_T - fit_limit|`` in the summary is step T's distance (dense numpy), not step 1's."""
    _, K, y = _problem()
    path = self_distillation(spectrum(K), y, ridge=0.05, alpha=0.3, steps=4)
    # dense reference: yhat_t = K (K + lam I)^-1 (alpha y + (1 - alpha) yhat_{t-1}), yhat_0 = y
    n, lam, a = len(y), 0.05, 0.3
    S = K @ np.linalg.inv(K + lam * np.eye(n))
    fit, fits = y.copy(), []
    for t in range(4):
        fit = S @ (y if t == 0 else a * y + (1 - a) * fit)
        fits.append(fit)
    limit = K @ np.linalg.solve(K + (lam / a) * np.eye(n), y)
    want = np.linalg.norm(fits[-1] - limit)
    first = np.linalg.norm(fits[0] - limit)
    assert abs(want - first) > 0.1 * want  # the two candidates are distinguishable
    line = next(ln for ln in path.summary().splitlines() if "|fit_T - fit_limit|" in ln)
    got = float(line.split(":")[-1])
    assert got == pytest.approx(want, rel=2e-3)  # printed with 3 significant digits


def test_summary_gap_for_matrix_labels():
    """(n, c) labels: the gap is again ||fit_T - fit_limit|| (Frobenius), from dense numpy."""
    _, K, y = _problem()
    Y = np.stack([y, np.cos(y)], axis=1)
    lam, a, T = 0.05, 0.3, 4
    path = self_distillation(spectrum(K), Y, ridge=lam, alpha=a, steps=T)
    n = len(y)
    S = K @ np.linalg.inv(K + lam * np.eye(n))
    fit = S @ Y
    for _ in range(T - 1):
        fit = S @ (a * Y + (1 - a) * fit)
    limit = K @ np.linalg.solve(K + (lam / a) * np.eye(n), Y)
    line = next(ln for ln in path.summary().splitlines() if "|fit_T - fit_limit|" in ln)
    assert float(line.split(":")[-1]) == pytest.approx(np.linalg.norm(fit - limit), rel=2e-3)
    assert np.linalg.norm(S @ Y - limit) > 1.1 * np.linalg.norm(fit - limit)


def _predict_bytes(rows: int, m: int, outputs: int) -> int:
    return rows * m * outputs * 8  # float64


@pytest.mark.parametrize("vector", [True, False])
def test_predict_budget_counts_every_step_and_output(vector):
    """A prediction of T steps at m points needs T m c 8 bytes: a budget just below refuses, just above runs."""
    X, K, y = _problem()
    Y = y if vector else np.stack([y, -y, 2 * y], axis=1)
    c = 1 if vector else 3
    T, m = 5, 7
    path = self_distillation(spectrum(K), Y, ridge=0.1, alpha=0.5, steps=T)
    Kc = rbf(X[:m] + 0.01, X, gamma=0.5)
    need = _predict_bytes(T, m, c)
    out = path.predict(Kc, memory_budget=need)
    assert out.shape == ((T, m) if vector else (T, m, c))
    with pytest.raises(ValueError, match="memory_budget"):
        path.predict(Kc, memory_budget=need - 1)


def test_steps_budget_counts_the_path_itself():
    """``self_distillation`` refuses a path whose stored arrays exceed the budget: B, C (k each) and fits (n c)
    per step, plus the limits and coefficients."""
    _, K, y = _problem(n=10)
    s = spectrum(K)
    k, n, steps = s.k, s.n_samples, 6
    row = (2 * k + n) * 8
    fixed = row + k * 8
    need = fixed + steps * row
    self_distillation(s, y, ridge=0.1, alpha=0.5, steps=steps, memory_budget=need)
    with pytest.raises(ValueError, match="memory_budget"):
        self_distillation(s, y, ridge=0.1, alpha=0.5, steps=steps, memory_budget=need - 1)


def test_sparsification_of_a_single_step_path():
    """One step: ratios r_1 = a_j / a_i (hand formula), and no 'decreasing' rows (T - 1 = 0)."""
    _, K, y = _problem()
    s = spectrum(K)
    lam = 0.1
    path = self_distillation(s, y, ridge=lam, alpha=0.5, steps=1)
    sp = sparsification(path, reference_index=0)
    d = np.asarray(s.values)
    a = d / (d + lam)
    assert sp.decreasing.shape == (0, s.k)
    np.testing.assert_allclose(sp.ratios[0], a / a[0], rtol=1e-12)


def test_summary_effective_ridge_is_lambda_over_alpha():
    _, K, y = _problem()
    path = self_distillation(spectrum(K), y, ridge=0.2, alpha=0.4, steps=2)
    line = next(ln for ln in path.summary().splitlines() if "limit ridge" in ln)
    assert float(re.split(r":\s*", line)[-1]) == pytest.approx(0.5, rel=1e-3)


def test_optimal_alpha_path_matches_a_dense_greedy_loop_with_interior_alphas():
    """Issue 13: alpha and 1 - alpha swapped in the running state. The reference has interior optimal alphas
    (clean targets, noisy labels), and a dense greedy loop (numpy solves) gives the alphas and the fits."""
    from theory import optimal_alpha_path

    rng = np.random.default_rng(3)
    n, lam = 30, 0.05
    X = rng.normal(size=(n, 2))
    clean = np.sin(2 * X[:, 0]) + X[:, 1]
    y = clean + 0.5 * rng.normal(size=n)
    K = rbf(X, gamma=1.0)
    S = K @ np.linalg.inv(K + lam * np.eye(n))
    steps = 6
    got = optimal_alpha_path(spectrum(K), y, clean, ridge=lam, steps=steps)
    prev, alphas, fits = y.copy(), [], []
    for _ in range(steps):
        u, w = S @ (y - prev), clean - S @ prev
        al = 1.0 if u @ u <= 1e-26 * (y @ y) else float(np.clip((u @ w) / (u @ u), 0.0, 1.0))
        prev = S @ (al * y + (1 - al) * prev)
        alphas.append(al)
        fits.append(prev)
    interior = [a for a in alphas[1:] if 0.05 < a < 0.95]
    assert len(interior) >= 2, alphas  # the test exercises the unclipped branch
    np.testing.assert_allclose(got.alphas, alphas, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(np.asarray(got.fits), np.array(fits), rtol=1e-8, atol=1e-10)


def test_optimal_alpha_path_budget_counts_every_stored_array():
    """Per step B, C (k each), the fit (n) and five float64 scalars; plus the coefficients (k): byte count by hand."""
    from theory import optimal_alpha_path

    _, K, y = _problem(n=10)
    s = spectrum(K)
    k, n, steps = s.k, s.n_samples, 4
    need = k * 8 + steps * ((2 * k + n) * 8 + 5 * 8)
    optimal_alpha_path(s, y, 0.5 * y, ridge=0.1, steps=steps, memory_budget=need)
    with pytest.raises(ValueError, match="memory_budget"):
        optimal_alpha_path(s, y, 0.5 * y, ridge=0.1, steps=steps, memory_budget=need - 1)
