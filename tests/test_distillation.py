"""Alpha-weighted KRR self-distillation against explicit dense solves, scikit-learn and brute force."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar
from sklearn.kernel_ridge import KernelRidge

from kernels.backend import to_numpy
from kernels.spectrum import Spectrum, spectrum
from tests.conftest import to_backend
from tests.reference import invalid_parameter_cases
from theory.distillation import (
    CONSTRAINTS,
    DistillationPath,
    krr_fit,
    optimal_alpha,
    optimal_alpha_path,
    self_distillation,
    sparsification,
)

RIDGE = 0.1


def _np(x):
    return to_numpy(x)  # explicit host copy: works for torch, CuPy and the strict namespace


def rbf_problem(n=25, m=7, seed=0, gamma=0.5):
    """RBF Gram matrices by a direct numpy formula (not the code under test)."""
    r = np.random.default_rng(seed)
    X, Xt = r.normal(size=(n, 2)), r.normal(size=(m, 2))
    sq = lambda A, B: ((A[:, None, :] - B[None, :, :]) ** 2).sum(-1)  # noqa: E731
    K, Kc = np.exp(-gamma * sq(X, X)), np.exp(-gamma * sq(Xt, X))
    y = np.sin(2 * X[:, 0]) + 0.3 * r.normal(size=n)
    Y = np.eye(3)[r.integers(0, 3, n)]
    return K, Kc, y, Y


def dense_path(K, Kc, y, ridge, alpha, steps):
    """Explicit repeated KRR: step t fits alpha y + (1 - alpha) yhat^(t-1), yhat^(0) = y."""
    prev, fits, preds = y, [], []
    M = K + ridge * np.eye(len(K))
    for _ in range(steps):
        dual = np.linalg.solve(M, alpha * y + (1 - alpha) * prev)
        prev = K @ dual
        fits.append(prev)
        preds.append(Kc @ dual)
    return np.stack(fits), np.stack(preds)


@pytest.fixture(scope="module")
def problem():
    return rbf_problem()


# ----------------------------------------------------------------------------- path vs dense solves


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("onehot", [False, True])
def test_path_matches_dense_solves(problem, backend, alpha, onehot):
    K, Kc, y, Y = problem
    labels = Y if onehot else y
    s = spectrum(to_backend(K, backend))
    path = self_distillation(s, to_backend(labels, backend), ridge=RIDGE, alpha=alpha, steps=6)
    fits, preds = dense_path(K, Kc, labels, RIDGE, alpha, 6)
    assert path.backend == backend and path.fits.shape == fits.shape
    np.testing.assert_allclose(_np(path.fits), fits, rtol=0, atol=1e-10)
    np.testing.assert_allclose(_np(path.predict(to_backend(Kc, backend))), preds, rtol=0, atol=1e-10)
    assert path.predict(to_backend(Kc, backend)).shape == preds.shape


def test_matches_sklearn_refits(problem):
    K, Kc, y, _ = problem
    alpha, steps = 0.4, 5
    path = self_distillation(spectrum(K), y, ridge=RIDGE, alpha=alpha, steps=steps)
    prev, pred = y, path.predict(Kc)
    for t in range(steps):
        model = KernelRidge(alpha=RIDGE, kernel="precomputed").fit(K, alpha * y + (1 - alpha) * prev)
        prev = model.predict(K)
        np.testing.assert_allclose(path.fits[t], prev, atol=1e-9)
        np.testing.assert_allclose(pred[t], model.predict(Kc), atol=1e-9)


@pytest.mark.parametrize("alpha", [0.2, 0.7, 1.0])
def test_limit_is_krr_with_ridge_over_alpha(problem, alpha):
    K, Kc, y, Y = problem
    path = self_distillation(spectrum(K), Y, ridge=RIDGE, alpha=alpha, steps=200)
    dual = np.linalg.solve(K + RIDGE / alpha * np.eye(len(K)), Y)
    np.testing.assert_allclose(path.fit_limit, K @ dual, atol=1e-10)
    np.testing.assert_allclose(path.predict_limit(Kc), Kc @ dual, atol=1e-10)
    np.testing.assert_allclose(path.fits[-1], path.fit_limit, atol=1e-9)  # the path converges to it
    gaps = np.linalg.norm((path.fits - path.fit_limit).reshape(path.steps, -1), axis=1)
    assert np.all(np.diff(gaps) <= 1e-12)


def test_alpha_zero_decays_to_zero(problem):
    K, Kc, y, _ = problem
    s = spectrum(K)
    path = self_distillation(s, y, ridge=1.0, alpha=0.0, steps=400)
    a = s.values / (s.values + 1.0)
    np.testing.assert_allclose(path.B[9], a**10, rtol=1e-12)
    assert np.all(path.B_limit == 0) and np.all(path.predict_limit(Kc) == 0)
    norms = np.linalg.norm(path.fits, axis=1)
    assert np.all(np.diff(norms) < 0) and norms[-1] < 1e-3 * norms[0]


def test_alpha_array_equals_scalar_calls(problem, backend):
    K, Kc, _, Y = problem
    s = spectrum(to_backend(K, backend))
    alphas = [0.0, 0.25, 1.0]
    batch = self_distillation(s, to_backend(Y, backend), ridge=RIDGE, alpha=np.array(alphas), steps=4)
    pred = batch.predict(to_backend(Kc, backend))
    assert tuple(batch.B.shape) == (3, 4, 25) and tuple(pred.shape) == (3, 4, 7, 3)
    for p, al in enumerate(alphas):
        one = self_distillation(s, to_backend(Y, backend), ridge=RIDGE, alpha=al, steps=4)
        for name in ("B", "C", "fits", "B_limit", "C_limit", "fit_limit"):
            np.testing.assert_allclose(_np(getattr(batch, name))[p], _np(getattr(one, name)), atol=1e-14)
        np.testing.assert_allclose(_np(pred)[p], _np(one.predict(to_backend(Kc, backend))), atol=1e-14)


def test_dual_filters_are_B_over_d(problem):
    K, _, y, _ = problem
    s = spectrum(K)
    path = self_distillation(s, y, ridge=RIDGE, alpha=np.array([0.0, 0.6]), steps=5)
    np.testing.assert_allclose(path.C * s.values, path.B, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(path.C_limit * s.values, path.B_limit, rtol=1e-12, atol=1e-15)


def test_zero_eigenvalue_is_safe():
    d = np.array([2.0, 0.5, 0.0])
    s = Spectrum(values=d, vectors=np.eye(3))
    path = self_distillation(s, np.ones(3), ridge=0.5, alpha=np.array([0.0, 0.5, 1.0]), steps=3)
    for arr in (path.B, path.C, path.B_limit, path.C_limit):
        assert np.all(np.isfinite(arr))
    np.testing.assert_allclose(path.C[:, :, 2], np.array([[2, 0, 0], [2, 1, 1], [2, 2, 2]]))  # ((1-a)B + a)/lambda
    np.testing.assert_allclose(path.C_limit[:, 2], [0.0, 1.0, 2.0])  # alpha / lambda


def test_backends_agree(problem):
    K, Kc, y, _ = problem
    ref = self_distillation(spectrum(K), y, ridge=RIDGE, alpha=0.5, steps=3)
    tp = self_distillation(spectrum(to_backend(K, "torch")), to_backend(y, "torch"), ridge=RIDGE, alpha=0.5, steps=3)
    assert type(tp.fits).__module__.startswith("torch")
    np.testing.assert_allclose(_np(tp.fits), ref.fits, atol=1e-12)
    np.testing.assert_allclose(_np(tp.predict(to_backend(Kc, "torch"))), ref.predict(Kc), atol=1e-12)


def test_krr_fit_and_repr(problem):
    K, _, y, Y = problem
    s = spectrum(K)
    np.testing.assert_allclose(krr_fit(s, Y, 0.3), K @ np.linalg.solve(K + 0.3 * np.eye(len(K)), Y), atol=1e-11)
    path = self_distillation(s, y, ridge=RIDGE, alpha=0.5, steps=3)
    assert "alpha=0.5" in repr(path) and "ridge: 0.1" in path.summary() and "limit ridge" in path.summary()


# ----------------------------------------------------------------------------- optimal alpha


def _dense_step(K, y, prev, ridge, alpha):
    return K @ np.linalg.solve(K + ridge * np.eye(len(K)), alpha * y + (1 - alpha) * prev)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_optimal_alpha_matches_minimize_scalar(problem, seed):
    K, _, y, _ = problem
    r = np.random.default_rng(seed)
    reference = y + 0.5 * r.normal(size=y.shape)
    prev = K @ np.linalg.solve(K + 1.0 * np.eye(len(K)), y)  # some previous fit
    res = optimal_alpha(spectrum(K), y, reference, ridge=RIDGE, previous_fit=prev)
    loss = lambda a: np.sum((_dense_step(K, y, prev, RIDGE, a) - reference) ** 2)  # noqa: E731
    bounded = minimize_scalar(loss, bounds=(0, 1), method="bounded", options={"xatol": 1e-10})
    free = minimize_scalar(loss, bracket=(-1.0, 2.0))
    assert res.alpha == pytest.approx(bounded.x, abs=1e-6)
    assert res.alpha_unclipped == pytest.approx(free.x, abs=1e-6)
    assert res.clipped == (not 0 <= free.x <= 1)
    assert res.error == pytest.approx(loss(res.alpha), rel=1e-10)
    np.testing.assert_allclose(res.fit, _dense_step(K, y, prev, RIDGE, res.alpha), atol=1e-10)


def test_optimal_alpha_clips_and_flags(problem):
    K, _, y, _ = problem
    prev = 0.5 * y
    grid = np.linspace(-20, 20, 40001)
    f0, f1 = _dense_step(K, y, prev, RIDGE, 0.0), _dense_step(K, y, prev, RIDGE, 1.0)  # the step is affine in alpha
    for reference in (3 * y, -y):  # minimiser above 1, below 0
        res = optimal_alpha(spectrum(K), y, reference, ridge=RIDGE, previous_fit=prev)
        losses = np.sum((f0 + grid[:, None] * (f1 - f0) - reference) ** 2, axis=1)
        assert res.alpha_unclipped == pytest.approx(grid[int(np.argmin(losses))], abs=2e-3)
        assert res.clipped and res.alpha in (0.0, 1.0)
    step1 = optimal_alpha(spectrum(K), y, -y, ridge=RIDGE, previous_fit=y)  # fit does not depend on alpha
    assert step1.degenerate and step1.alpha == 1.0 and not step1.clipped


def test_optimal_alpha_path_is_greedy(problem):
    K, Kc, y, _ = problem
    s = spectrum(K)
    reference = np.sin(2 * np.linspace(-1, 1, len(y)))
    path = optimal_alpha_path(s, y, reference, ridge=RIDGE, steps=5)
    prev, preds = y, path.predict(Kc)
    assert path.degenerate[0]
    for t in range(5):
        step = optimal_alpha(s, y, reference, ridge=RIDGE, previous_fit=prev)
        assert path.alphas[t] == pytest.approx(step.alpha, abs=1e-9)
        dual = np.linalg.solve(K + RIDGE * np.eye(len(K)), path.alphas[t] * y + (1 - path.alphas[t]) * prev)
        prev = K @ dual
        np.testing.assert_allclose(path.fits[t], prev, atol=1e-10)
        np.testing.assert_allclose(preds[t], Kc @ dual, atol=1e-10)
        assert path.errors[t] == pytest.approx(np.sum((prev - reference) ** 2), rel=1e-9)
    assert "OptimalAlphaPath" in repr(path)


@pytest.mark.parametrize("onehot", [False, True])
def test_optimal_alpha_path_interior_alphas_match_brute_force(problem, onehot):
    """Greedy path with alphas strictly inside (0, 1) against a per-step dense brute-force minimisation.

    The reference is KRR with ridge lambda / 0.5 (the limit of alpha = 0.5 distillation), so the
    per-step minimisers are interior from step 2 on: clipping cannot hide an error in the running
    state B^(t) (e.g. alpha and 1 - alpha swapped), which decides every later alpha. The reference
    path is built by explicit solves with K + lambda I and scipy's bounded scalar minimisation.
    """
    K, Kc, y, Y = problem
    labels = Y if onehot else y
    n, steps = len(K), 7
    reference = K @ np.linalg.solve(K + RIDGE / 0.5 * np.eye(n), labels)
    path = optimal_alpha_path(spectrum(K), labels, reference, ridge=RIDGE, steps=steps)
    prev, want_alphas, want_fits, want_preds = labels, [], [], []
    for t in range(steps):
        loss = lambda a, p=prev: np.sum((_dense_step(K, labels, p, RIDGE, a) - reference) ** 2)  # noqa: E731
        best = 1.0 if t == 0 else minimize_scalar(loss, bounds=(0, 1), method="bounded", options={"xatol": 1e-12}).x
        grid = np.linspace(0, 1, 2001)  # second, cruder reference: the best alpha on a grid
        if t > 0:
            assert abs(best - grid[int(np.argmin([loss(g) for g in grid]))]) <= 1e-3
        dual = np.linalg.solve(K + RIDGE * np.eye(n), best * labels + (1 - best) * prev)
        prev = K @ dual
        want_alphas.append(best), want_fits.append(prev), want_preds.append(Kc @ dual)
    want_alphas = np.array(want_alphas)
    assert np.all((want_alphas[1:] > 0.1) & (want_alphas[1:] < 0.9))  # the premise: no clipping after step 1
    assert path.degenerate[0] and not path.degenerate[1:].any() and not path.clipped.any()
    np.testing.assert_allclose(path.alphas, want_alphas, rtol=0, atol=1e-6)
    np.testing.assert_allclose(path.alphas_unclipped[1:], want_alphas[1:], rtol=0, atol=1e-6)
    np.testing.assert_allclose(path.fits, np.stack(want_fits), rtol=0, atol=1e-8)
    np.testing.assert_allclose(path.predict(Kc), np.stack(want_preds), rtol=0, atol=1e-8)
    want_err = [np.sum((f - reference) ** 2) for f in want_fits]
    np.testing.assert_allclose(path.errors, want_err, rtol=1e-6, atol=1e-14)


# ----------------------------------------------------------------------------- sparsification

_spectra = st.lists(st.floats(-3, 3), min_size=2, max_size=6).map(lambda e: np.sort(10.0 ** np.array(e))[::-1])


def _path(d, ridge, alpha, steps):
    return self_distillation(Spectrum(values=d, vectors=np.eye(d.size)), np.ones(d.size), ridge=ridge, alpha=alpha, steps=steps)


@settings(max_examples=300, deadline=None)
@given(d=_spectra, log_ridge=st.floats(-2, 2), alpha=st.floats(0, 1))
def test_sparsification_exact_condition(d, log_ridge, alpha):
    ridge, steps = 10.0**log_ridge, 40
    path = _path(d, ridge, alpha, steps)
    sp = sparsification(path)
    B = path.B
    ok = B[:, 0] > 1e-250
    direct = B[ok] / B[ok][:, :1]  # ratios straight from the (dense-validated) B
    np.testing.assert_allclose(sp.ratios[ok], direct, rtol=1e-10, atol=1e-300)
    r = sp.ratios
    assert np.all(r <= r[0] * (1 + 1e-12))  # never above the step-1 ratio a_j / a_i
    assert np.all(r[1] <= r[0] * (1 + 1e-12))  # the first step always shrinks
    diff = np.diff(r, axis=0)
    tol = 1e-9 * r[:-1] + 1e-300
    up, down = diff > tol, diff < -tol
    if alpha == 0:
        assert not up.any()  # pure self-distillation: non-increasing (Mobahi et al.)
    if alpha == 1:
        assert not up.any() and not down.any()
    # exact criterion with the closed form s_t = s_inf + q^(t-1) (1 - s_inf), written out independently
    a = d / (d + ridge)
    q = (1 - alpha) * a
    t = np.arange(1, steps)[:, None]
    if alpha > 0:
        s_inf = alpha / (1 - q)
        s_t = s_inf + q ** (t - 1) * (1 - s_inf)
        lhs = alpha * (1 / s_t - 1 / s_t[:, :1])
        rhs = (1 - alpha) * (a[0] - a)
        strict = np.abs(lhs - rhs) > 1e-9 * (np.abs(rhs) + 1e-12)
        assert np.array_equal(((lhs <= rhs) & strict)[up], np.zeros(up.sum(), bool))
        assert np.all((lhs <= rhs)[down & strict])
    np.testing.assert_array_equal(sp.decreasing[down], True)
    np.testing.assert_array_equal(sp.decreasing[up], False)
    # a single turn: once the ratio rises it never falls again
    first_up = np.where(up.any(axis=0), up.argmax(axis=0), steps)
    for j in range(d.size):
        assert not down[first_up[j] :, j].any()
    if alpha > 0:
        lim = (d / d[0]) * (alpha * d[0] + ridge) / (alpha * d + ridge)
        np.testing.assert_allclose(sp.limit, lim, rtol=1e-12)
        assert np.all(lim <= r[0] * (1 + 1e-12))


@pytest.mark.parametrize("alpha", [0.1, 0.5, 0.9])
def test_sparsification_is_not_monotone_for_mixed_alpha(alpha):
    """The naive claim (ratios non-increasing for d_j < d_i) fails for every 0 < alpha < 1."""
    d = np.array([10.0, 1.0])
    sp = sparsification(_path(d, 1.0, alpha, 200))
    r = sp.ratios[:, 1]
    assert np.any(np.diff(r) > 1e-9 * r[:-1])  # it rises again ...
    assert r.min() < sp.limit[1] * (1 - 1e-9)  # ... after undershooting the limit
    assert r[-1] == pytest.approx(float(sp.limit[1]), rel=1e-9)
    first_up = int(np.argmax(np.diff(r) > 1e-9 * r[:-1]))
    assert sp.decreasing[:first_up, 1].all() and not sp.decreasing[first_up, 1]


def test_sparsification_batch_reference_and_underflow():
    d = np.array([5.0, 2.0, 1e-3, 0.0])
    path = _path(d, 0.1, np.array([0.0, 0.5, 1.0]), 600)
    sp = sparsification(path, reference_index=1)
    assert sp.ratios.shape == (3, 600, 4) and np.all(np.isfinite(sp.ratios))
    a = d / (d + 0.1)
    np.testing.assert_allclose(sp.ratios[0, 4], (a / a[1]) ** 5, rtol=1e-12)  # alpha = 0: (a_j / a_i)^t, no underflow NaN
    np.testing.assert_allclose(sp.ratios[2], np.broadcast_to(a / a[1], (600, 4)), rtol=1e-12)
    assert sp.limit[0, 0] == np.inf and sp.limit[0, 1] == 1 and sp.limit[0, 2] == 0
    assert "reference_index=1" in repr(sp)
    with pytest.raises(ValueError, match="reference_index"):
        sparsification(path, reference_index=3)  # zero eigenvalue
    with pytest.raises(ValueError, match="reference_index"):
        sparsification(path, reference_index=4)


# ----------------------------------------------------------------------------- bad input


# each constraint's own invalid example, then hand-picked bad values
BAD_PARAMETERS = invalid_parameter_cases(
    CONSTRAINTS,
    ["ridge", "alpha", "steps"],
    {
        "ridge": (0.0, math.inf, math.nan, "1"),
        "alpha": (math.nan, 1.5, [0.2, -0.1], [[0.2]], ["x"], True),
        "steps": (0, 2.0),
    },
)


@pytest.mark.parametrize("kwargs, name", BAD_PARAMETERS)
def test_bad_parameters(problem, kwargs, name):
    K, _, y, _ = problem
    full = dict(ridge=RIDGE, alpha=0.5, steps=3) | kwargs
    with pytest.raises((ValueError, TypeError), match=name):
        self_distillation(spectrum(K), y, **full)


def test_bad_arrays(problem):
    K, Kc, y, _ = problem
    s = spectrum(K)
    with pytest.raises(ValueError, match="y"):
        self_distillation(s, y[:-1], ridge=RIDGE, alpha=0.5, steps=2)
    with pytest.raises(ValueError, match="y"):
        self_distillation(s, np.where(np.arange(len(y)) == 3, np.nan, y), ridge=RIDGE, alpha=0.5, steps=2)
    with pytest.raises(TypeError, match="spectrum"):
        self_distillation(K, y, ridge=RIDGE, alpha=0.5, steps=2)
    path = self_distillation(s, y, ridge=RIDGE, alpha=0.5, steps=2)
    with pytest.raises(ValueError, match="K_cross"):
        path.predict(Kc[:, :-1])
    with pytest.raises(ValueError, match="K_cross"):
        path.predict_limit(Kc[0])
    with pytest.raises(TypeError, match="K_cross"):
        path.predict(to_backend(Kc, "torch"))
    with pytest.raises(ValueError, match="reference"):
        optimal_alpha(s, y, y[:, None], ridge=RIDGE, previous_fit=y)
    with pytest.raises(ValueError, match="previous_fit"):
        optimal_alpha(s, y, y, ridge=RIDGE, previous_fit=y[:-2])
    with pytest.raises(ValueError, match="ridge"):
        optimal_alpha_path(s, y, y, ridge=-1.0, steps=2)
    with pytest.raises(TypeError, match="path"):
        sparsification(s)
    assert isinstance(path, DistillationPath)


def test_steps_over_the_memory_budget_are_refused_with_a_count_that_fits():
    """The refusal names the largest whole number of steps the budget holds: that many run, one more does not."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    s, y = spectrum(np.exp(-((X[:, None] - X[None]) ** 2).sum(-1))), X[:, 0]
    budget = 20_000
    with pytest.raises(ValueError, match=r"pass steps <= \d+ \(every step is stored\)") as info:
        self_distillation(s, y, ridge=0.1, alpha=0.5, steps=1000, memory_budget=budget)
    fit = int(re.search(r"pass steps <= (\d+) ", str(info.value)).group(1))
    assert fit >= 1
    assert self_distillation(s, y, ridge=0.1, alpha=0.5, steps=fit, memory_budget=budget).fits.shape[0] == fit
    with pytest.raises(ValueError, match="memory_budget"):
        self_distillation(s, y, ridge=0.1, alpha=0.5, steps=fit + 1, memory_budget=budget)


def test_optimal_alpha_near_degenerate_previous_fit_is_flagged():
    """A previous fit within round-off of y (u = A (y - p) ~ 1e-16 |y|) makes the fit independent of alpha:
    reported as alpha = 1, degenerate, not as the quotient of two round-off numbers."""
    r = np.random.default_rng(4)
    X = r.normal(size=(30, 2))
    s = spectrum(np.exp(-((X[:, None] - X[None]) ** 2).sum(-1)), psd="clip")
    ref = X[:, 1]
    for y in (X[:, 0], 1e-3 * X[:, 0], -1e-3 * X[:, 0]):  # the round-off threshold scales with |A y|^2, of either sign of y
        prev = y.copy()
        prev[0] += 1e-16 * np.abs(y).max()
        res = optimal_alpha(s, y, ref, ridge=0.1, previous_fit=prev)
        assert res.degenerate and res.alpha == 1.0
    y = X[:, 0]
    far = optimal_alpha(s, y, ref, ridge=0.1, previous_fit=0.5 * y)  # a real difference: not degenerate
    assert not far.degenerate


def test_sparsification_of_alpha_zero_stays_finite_over_many_steps():
    """With alpha = 0 the target scale s_t = q s_{t-1} underflows to 0 over many steps; alpha / s_t must
    then read 0 (not 0/0 = NaN), for a scalar alpha as for an array of alphas."""
    r = np.random.default_rng(5)
    X = r.normal(size=(25, 2))
    s = spectrum(np.exp(-((X[:, None] - X[None]) ** 2).sum(-1)), psd="clip")
    for alpha in (0.0, np.array([0.0, 0.5])):
        sp = sparsification(self_distillation(s, X[:, 0], ridge=1.0, alpha=alpha, steps=3000))
        assert np.all(np.isfinite(np.asarray(sp.ratios)))
