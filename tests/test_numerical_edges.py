"""Numerical edges of the closed forms (issue 13), each against an independent reference.

References are never the function under test: mpmath solves at 40 digits, dense numpy /
scipy solves in float64 (of the very float32 matrix a float32 spectrum was computed
from), and an explicit brentq loop on dense solves for the Mobahi rounds.
"""

from __future__ import annotations

import warnings

import mpmath
import numpy as np
import pytest
import scipy.linalg

from kernels.spectrum import RidgeResolutionWarning, check_ridge_resolution, spectrum
from tests.reference import dense_mobahi_rounds
from theory.distillation import krr_fit, optimal_alpha, self_distillation
from theory.distillation_study import distillation_study
from theory.mobahi import mobahi_rounds


def _gauss(x, z, gamma):
    return np.exp(-gamma * (x[:, None] - z[None, :]) ** 2)


# --------------------------------------------------------------------------- edge 1


@pytest.fixture(scope="module")
def small_problem():
    x = np.linspace(0.0, 1.0, 20)
    K = _gauss(x, x, 5.0)
    y = np.sin(6 * x) + 0.1 * np.random.default_rng(0).normal(size=20)
    return K, y, float(np.linalg.eigvalsh(K)[-1])


def _mp_fits(K, y, ridge, alpha, steps):
    """Distillation fits by 40-digit mpmath LU solves (independent of both routes)."""
    mpmath.mp.dps = 40
    Km, ym = mpmath.matrix(K.tolist()), mpmath.matrix(y.tolist())
    M = Km + mpmath.mpf(float(ridge)) * mpmath.eye(len(y))
    a = mpmath.mpf(alpha)
    fit, out = ym, []
    for t in range(steps):
        tau = ym if t == 0 else a * ym + (1 - a) * fit
        fit = Km * mpmath.lu_solve(M, tau)
        out.append([float(v) for v in fit])
    return np.array(out)


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("factor", [1e6, 1e10])
@pytest.mark.parametrize("alpha, steps", [(1.0, 1), (0.3, 3)])
def test_cholesky_route_keeps_round_off_at_huge_ridge(small_problem, factor, alpha, steps):
    """Failed before the fix: 9.5e-10 (1e6 d_max) and 1.1e-5 (1e10 d_max) from P_j - lambda g_j."""
    K, y, d_max = small_problem
    ref = _mp_fits(K, y, factor * d_max, alpha, steps)
    study = distillation_study(K, y, ridge=factor * d_max, alpha=alpha, steps=steps, route="cholesky")
    assert _rel(study.fits[0], ref) <= 1e-13
    assert study.update == "product"  # recorded: the cancelling difference was not used


@pytest.mark.parametrize("factor", [1e-3, 1.0, 1e3])
def test_cholesky_route_stated_range(small_problem, factor):
    """Docstring: fits to 1e-13 from 1e-3 d_max up, on both routes."""
    K, y, d_max = small_problem
    ref = _mp_fits(K, y, factor * d_max, 0.3, 3)
    for route in ("cholesky", "eigen"):
        study = distillation_study(K, y, ridge=factor * d_max, alpha=0.3, steps=3, route=route)
        assert _rel(study.fits[0], ref) <= 1e-13, route


def test_small_ridge_error_within_condition_bound(small_problem):
    """Docstring: below 1e-3 d_max the error stays <= eps d_max / lambda (the condition)."""
    K, y, d_max = small_problem
    ridge = 1e-8 * d_max
    ref = _mp_fits(K, y, ridge, 1.0, 1)
    for route in ("cholesky", "eigen"):
        study = distillation_study(K, y, ridge=ridge, alpha=1.0, steps=1, route=route)
        assert _rel(study.fits[0], ref) <= np.finfo(float).eps * d_max / ridge, route


def test_eigen_closed_forms_at_huge_ridge(small_problem):
    K, y, d_max = small_problem
    ridge = 1e10 * d_max
    ref = _mp_fits(K, y, ridge, 0.3, 3)
    s = spectrum(K)
    assert _rel(krr_fit(s, y, ridge), ref[0]) <= 1e-13
    assert _rel(self_distillation(s, y, ridge=ridge, alpha=0.3, steps=3).fits, ref) <= 1e-13


# --------------------------------------------------------------------------- edge 2


def _dense_c1_rounds(K, y, eps, max_rounds=200):
    """c_t of the test_mobahi reference loop (explicit float64 dense solves), c_t searched in [1e-9, 1e4]."""
    return dense_mobahi_rounds(K, y, eps, max_rounds=max_rounds, bracket=(1e-9, 1e4), xtol=1e-13)[0]


def _rbf33(gamma, sig, seed=0):
    x = np.linspace(0.0, 1.0, 33)
    K32 = _gauss(x, x, gamma).astype(np.float32)
    y32 = (np.sin(2 * np.pi * x) + sig * np.random.default_rng(seed).normal(size=33)).astype(np.float32)
    return K32, y32


@pytest.mark.parametrize("gamma, sig, eps", [(180.0, 0.1, 6.3e-4), (180.0, 0.05, 1.585e-4)])
def test_mobahi_float32_small_eigenvalues_carry_the_fit(gamma, sig, eps):
    """Failed before the fix: c_1 33% / 31% low (and one extra round in the second case)
    because eigenvalues <= n eps32 d_max counted as null space."""
    K32, y32 = _rbf33(gamma, sig)
    s32 = spectrum(K32, psd="clip")
    ref = _dense_c1_rounds(K32.astype(np.float64), y32.astype(np.float64), eps)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # c_1 is > 10 zero_tol here: no warning
        path = mobahi_rounds(s32, y32, epsilon=eps)
    assert ref[0] > 10 * s32.zero_tol
    assert abs(path.c[0] / ref[0] - 1) <= 1e-2
    assert path.n_rounds == len(ref)
    np.testing.assert_allclose(path.c, ref, rtol=2e-2)


def test_mobahi_float32_stated_bound():
    """Docstring: float32 c_1 within 2 zero_tol / c_1 (relative) of the float64 dense answer,
    a warning below c_1 = 10 zero_tol, ValueError below zero_tol."""
    checked = warned = 0
    for gamma, sig, eps in [
        (100.0, 0.05, 3.98e-4),
        (80.0, 0.1, 1.585e-3),
        (150.0, 0.3, 5.01e-3),
        (180.0, 0.1, 6.3e-4),
        (60.0, 0.1, 3.98e-3),
        (250.0, 0.1, 1e-3),
    ]:
        K32, y32 = _rbf33(gamma, sig)
        s32 = spectrum(K32, psd="clip")
        ref = _dense_c1_rounds(K32.astype(np.float64), y32.astype(np.float64), eps, max_rounds=1)[0]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                c1 = mobahi_rounds(s32, y32, epsilon=eps, max_rounds=1).c[0]
            except ValueError as exc:
                assert "epsilon" in str(exc) and ref < 2 * s32.zero_tol
                continue
        assert abs(c1 / ref - 1) <= 2 * s32.zero_tol / min(c1, ref)
        low = c1 < 10 * s32.zero_tol
        assert low == any("zero_tol" in str(w.message) for w in caught)
        checked += 1
        warned += low
    assert checked >= 5 and warned >= 1


def test_mobahi_float64_unresolved_budget_raises():
    """A budget reachable only with c_1 < zero_tol raises (rank-3 kernel, float64)."""
    r = np.random.default_rng(3)
    X = r.normal(size=(20, 3))
    y = X @ r.normal(size=3) + 0.3 * r.normal(size=20)
    s = spectrum(X @ X.T, psd="clip")
    resid = y - X @ np.linalg.lstsq(X, y, rcond=None)[0]
    with pytest.raises(ValueError, match="epsilon"):
        mobahi_rounds(s, y, epsilon=0.95 * np.sum(resid**2) / 20)
    ok = mobahi_rounds(s, y, epsilon=1.05 * np.sum(resid**2) / 20)
    assert ok.c[0] > 10 * s.zero_tol


# --------------------------------------------------------------------------- edge 3


@pytest.fixture(scope="module")
def float32_problem():
    rng = np.random.default_rng(0)
    n = 300
    X, Xt = rng.normal(size=(n, 3)), rng.normal(size=(100, 3))
    sq = lambda A, B: ((A[:, None] - B[None]) ** 2).sum(-1)  # noqa: E731
    K32 = np.exp(-0.5 * sq(X, X)).astype(np.float32)
    Kc32 = np.exp(-0.5 * sq(Xt, X)).astype(np.float32)
    y32 = (np.sin(2 * X[:, 0]) + 0.1 * rng.normal(size=n)).astype(np.float32)
    return K32, Kc32, y32


def _ref_pred(K32, Kc32, y32, ridge):
    K, y = K32.astype(np.float64), y32.astype(np.float64)
    return Kc32.astype(np.float64) @ scipy.linalg.solve(K + ridge * np.eye(len(y)), y, assume_a="pos")


def test_float32_eigen_route_below_resolution_warns(float32_problem):
    """Failed before the fix: predictions 9.5e-2 of max|y| off (float32 Cholesky: 1.2e-2), silently."""
    K32, Kc32, y32 = float32_problem
    ridge = 1e-4
    ref = _ref_pred(K32, Kc32, y32, ridge)
    chol = Kc32 @ scipy.linalg.cho_solve(scipy.linalg.cho_factor(K32 + np.float32(ridge) * np.eye(300, dtype=np.float32)), y32)
    with pytest.warns(RidgeResolutionWarning, match="distillation_study: ridge"):
        eig = distillation_study(K32, y32, ridge=ridge, alpha=1.0, steps=1, K_cross=Kc32, route="eigen")
    m = np.max(np.abs(y32))
    err_eig, err_chol = np.max(np.abs(eig.predictions[0, 0] - ref)) / m, np.max(np.abs(chol - ref)) / m
    assert err_eig > 3 * err_chol  # what the warning is about
    eps_dmax = float(np.finfo(np.float32).eps) * float(np.max(np.linalg.eigvalsh(K32.astype(np.float64))))
    assert err_eig <= 3 * eps_dmax / ridge  # the error the warning states (docstring: 0.1-3 times)
    # auto does not take the eigen route there, even when the flop model prefers it
    with warnings.catch_warnings():
        warnings.simplefilter("error", RidgeResolutionWarning)
        auto = distillation_study(K32, y32, ridge=ridge, alpha=1.0, steps=400, K_cross=Kc32)
    assert auto.route == "cholesky" and "resolution" in auto.route_reason
    assert np.max(np.abs(auto.predictions[0, 0] - ref)) / m <= 2 * err_chol
    with pytest.warns(RidgeResolutionWarning, match="krr_fit"):
        krr_fit(spectrum(K32), y32, ridge)


def test_float32_resolution_boundary(float32_problem):
    """Docstring: at ridge >= zero_tol no warning and error <= eps d_max / ridge <= 1/n."""
    K32, Kc32, y32 = float32_problem
    s = spectrum(K32)
    ridge = 1.01 * s.zero_tol
    with warnings.catch_warnings():
        warnings.simplefilter("error", RidgeResolutionWarning)
        assert not check_ridge_resolution("test", s, ridge)
        eig = distillation_study(K32, y32, ridge=ridge, alpha=1.0, steps=1, K_cross=Kc32, route="eigen")
        self_distillation(s, y32, ridge=ridge, alpha=0.5, steps=2)
        optimal_alpha(s, y32, y32, ridge=ridge, previous_fit=y32)
    ref = _ref_pred(K32, Kc32, y32, ridge)
    err = np.max(np.abs(eig.predictions[0, 0] - ref)) / np.max(np.abs(y32))
    eps_dmax = float(np.finfo(np.float32).eps) * float(s.values[0])
    assert err <= eps_dmax / ridge <= 1.0 / 300
    with pytest.warns(RidgeResolutionWarning):
        assert check_ridge_resolution("test", s, 0.99 * s.zero_tol)


# --------------------------------------------------------------------------- item 4: optimal alpha


@pytest.mark.parametrize("ridge", [1e-3, 1e-1, 10.0])
def test_optimal_alpha_against_dense_least_squares(ridge):
    """Docstring: alpha* to 1e-10 relative against lstsq on the dense fit (interior optimum)."""
    rng = np.random.default_rng(1)
    x = np.linspace(0.0, 1.0, 40)
    K = _gauss(x, x, 20.0)
    clean = np.sin(2 * np.pi * x)
    y = clean + 0.3 * rng.normal(size=40)
    A = K @ np.linalg.solve(K + ridge * np.eye(40), np.eye(40))
    prev = A @ A @ y  # a previous fit two steps into pure self-distillation
    u, w = A @ (y - prev), clean - A @ prev
    ref = float(np.linalg.lstsq(u[:, None], w, rcond=None)[0][0])
    res = optimal_alpha(spectrum(K), y, clean, ridge=ridge, previous_fit=prev)
    assert not res.degenerate
    assert abs(res.alpha_unclipped - ref) <= 1e-10 * max(1.0, abs(ref))


def test_kernel_ridge_eigen_solver_warns_below_the_resolution_and_not_above():
    """KernelRidge(solver="eigen") and its ridge_path warn like the theory functions on the same spectrum."""
    import warnings

    from kernels import KernelRidge, RidgeResolutionWarning

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3)).astype(np.float32)
    y = np.sin(X[:, 0]).astype(np.float32)
    with pytest.warns(RidgeResolutionWarning, match=r"^KernelRidge\.fit: ridge=1e-06 is below"):
        KernelRidge(1e-6, kernel="rbf", gamma=0.5, solver="eigen").fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RidgeResolutionWarning)
        model = KernelRidge(1e-1, kernel="rbf", gamma=0.5, solver="eigen").fit(X, y)
        model.ridge_path([1e-1, 1.0])
    with pytest.warns(RidgeResolutionWarning, match=r"^KernelRidge\.ridge_path: ridge=1e-06"):
        model.ridge_path([1e-6, 1.0])


def _warned_here(call, category):
    """The warnings ``call()`` raises of ``category``: each must name the line of ``call`` (the user's line),
    not the library's nor a frame further out."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    mine = [w for w in caught if issubclass(w.category, category)]
    assert mine, f"no {category.__name__}"
    where = (__file__, call.__code__.co_firstlineno)
    assert all((w.filename, w.lineno) == where for w in mine), [(w.filename, w.lineno) for w in mine]


def test_warnings_point_at_the_callers_line():
    """stacklevel survives the helpers the public functions call (a refactor moved two checks one level down)."""
    from theory.distillation import optimal_alpha_path

    r = np.random.default_rng(0)
    X = r.normal(size=(40, 2))
    K = np.exp(-((X[:, None] - X[None]) ** 2).sum(-1))
    s, y, ref = spectrum(K, psd="clip"), X[:, 0], X[:, 1]
    tiny = 1e-19  # below the spectrum's resolution n eps d_max
    _warned_here(lambda: self_distillation(s, y, ridge=tiny, alpha=0.5, steps=2), RidgeResolutionWarning)
    _warned_here(lambda: optimal_alpha(s, y, ref, ridge=tiny, previous_fit=y), RidgeResolutionWarning)
    _warned_here(lambda: optimal_alpha_path(s, y, ref, ridge=tiny, steps=2), RidgeResolutionWarning)
    _warned_here(lambda: distillation_study(K, y, ridge=tiny, alpha=0.5, steps=2, route="eigen"), RidgeResolutionWarning)
    Q, _ = np.linalg.qr(r.normal(size=(12, 12)))
    indefinite = (Q * np.linspace(-1.0, 2.0, 12)) @ Q.T
    _warned_here(lambda: distillation_study((indefinite + indefinite.T) / 2, y[:12], ridge=0.37, alpha=0.5, steps=2), UserWarning)
