"""Mobahi et al. fixed-budget self-distillation rounds against an explicit dense loop."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kernels.backend import to_numpy
from kernels.spectrum import Spectrum, spectrum
from tests.conftest import to_backend
from tests.reference import dense_mobahi_rounds, invalid_parameter_cases
from theory.mobahi import CONSTRAINTS, MobahiPath, mobahi_rounds


def _np(x):
    return to_numpy(x)  # explicit host copy: works for torch, CuPy and the strict namespace


def rbf_problem(n=30, seed=0, gamma=0.5):
    r = np.random.default_rng(seed)
    X = r.normal(size=(n, 2))
    K = np.exp(-gamma * ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    y = np.sin(2 * X[:, 0]) + 0.2 * r.normal(size=n)
    Y = np.eye(3)[r.integers(0, 3, n)]
    return K, y, Y


@pytest.fixture(scope="module")
def problem():
    return rbf_problem()


@pytest.mark.parametrize("onehot", [False, True])
def test_rounds_match_dense_loop(problem, backend, onehot):
    K, y, Y = problem
    labels, eps = (Y, 0.02) if onehot else (y, 0.01)
    path = mobahi_rounds(spectrum(to_backend(K, backend)), to_backend(labels, backend), epsilon=eps)
    cs, fits = dense_mobahi_rounds(K, labels, eps)
    assert path.backend == backend
    assert path.collapsed and path.n_rounds == len(cs) >= 2
    np.testing.assert_allclose(path.c, cs, rtol=1e-7)
    np.testing.assert_allclose(_np(path.fits), fits, atol=1e-8)


@pytest.mark.parametrize("eps", [0.003, 0.01, 0.05])
def test_budget_monotone_c_and_collapse(problem, eps):
    K, y, _ = problem
    n = len(y)
    path = mobahi_rounds(spectrum(K), y, epsilon=eps)
    prev = np.vstack([y[None], path.fits])
    errors = np.sum(np.diff(prev, axis=0) ** 2, axis=1) / n  # from the fits themselves
    np.testing.assert_allclose(errors, eps, rtol=1e-8)
    np.testing.assert_allclose(path.fit_errors, eps, rtol=1e-8)
    assert np.all(np.diff(path.c) >= 0)  # c_t non-decreasing (Mobahi et al.)
    norms = np.sum(prev**2, axis=1)
    np.testing.assert_allclose(path.label_energy, norms, rtol=1e-10)
    assert path.collapsed and norms[-1] <= n * eps < norms[-2]
    # B is the per-direction product of d / (d + c_s)
    s = spectrum(K)
    gains = s.values[None] / (s.values[None] + path.c[:, None])
    np.testing.assert_allclose(path.B, np.cumprod(gains, axis=0), rtol=1e-10)


def test_max_rounds_stops_before_collapse(problem):
    K, y, _ = problem
    full = mobahi_rounds(spectrum(K), y, epsilon=0.003)
    part = mobahi_rounds(spectrum(K), y, epsilon=0.003, max_rounds=2)
    assert part.n_rounds == 2 and not part.collapsed and full.n_rounds > 2
    np.testing.assert_allclose(part.c, full.c[:2])
    assert "collapsed=False" in repr(part) and "rounds: 2 (max 2)" in part.summary()
    assert part.status == "max-rounds" and "raise max_rounds" in part.message
    assert full.status == "collapsed" and full.collapsed


@pytest.mark.parametrize("onehot", [False, True])
def test_collapse_exactly_at_max_rounds(problem, onehot):
    """Collapse at round r: max_rounds=r reports it (the loop ends without a further check), r-1 does not."""
    K, y, Y = problem
    labels, eps = (Y, 0.02) if onehot else (y, 0.01)
    n = len(K)
    cs, fits = dense_mobahi_rounds(K, labels, eps)  # independent: stops at the first ||y_t||^2 <= n eps
    r = len(cs)
    assert r >= 3 and np.sum(fits[-1] ** 2) <= n * eps < np.sum(fits[-2] ** 2)
    s = spectrum(K)
    exact = mobahi_rounds(s, labels, epsilon=eps, max_rounds=r)
    assert exact.n_rounds == r and exact.collapsed
    assert exact.label_energy[-1] <= n * eps < exact.label_energy[-2]
    np.testing.assert_allclose(exact.c, cs, rtol=1e-7)
    np.testing.assert_allclose(exact.fits, fits, atol=1e-8)
    assert "collapsed=True" in repr(exact) and f"rounds: {r} (max {r})" in exact.summary()
    short = mobahi_rounds(s, labels, epsilon=eps, max_rounds=r - 1)
    assert short.n_rounds == r - 1 and not short.collapsed
    assert short.label_energy[-1] > n * eps
    np.testing.assert_allclose(short.c, cs[:-1], rtol=1e-7)
    more = mobahi_rounds(s, labels, epsilon=eps, max_rounds=r + 1)  # room for one more round: none is run
    assert more.n_rounds == r and more.collapsed
    assert (exact.status, short.status, more.status) == ("collapsed", "max-rounds", "collapsed")


def test_budget_equal_to_the_energy_is_at_budget_not_collapsed():
    """epsilon two ulps below ||y||^2 / n: the first round cannot be bracketed; that is reported, not called a collapse."""
    from kernels import rbf

    x = np.linspace(0, 1, 20)[:, None]
    y = np.sin(6 * x[:, 0])
    eps = np.nextafter(np.nextafter(float(y @ y) / 20, 0), 0)
    path = mobahi_rounds(spectrum(rbf(x, gamma=10)), y, epsilon=float(eps))
    assert (path.status, path.collapsed, path.n_rounds) == ("at-budget", False, 0)
    assert "round-off" in path.message and "at-budget" in path.summary()


def test_already_collapsed_gives_zero_rounds(problem):
    K, y, _ = problem
    path = mobahi_rounds(spectrum(K), 1e-3 * y, epsilon=0.01)
    assert path.n_rounds == 0 and path.collapsed and path.fits.shape == (0, len(y)) and path.c.shape == (0,)


def test_null_space_counts_in_round_one():
    """A rank-3 linear kernel: the null-space part of y is removed in round 1 and spends its budget."""
    r = np.random.default_rng(3)
    X = r.normal(size=(20, 3))
    K = X @ X.T
    y = X @ r.normal(size=3) + 0.3 * r.normal(size=20)
    s = spectrum(K, psd="clip")
    assert s.n_zero == 17
    eps = 0.2
    path = mobahi_rounds(s, y, epsilon=eps)
    cs, fits = dense_mobahi_rounds(K, y, eps)
    assert path.n_rounds == len(cs) and path.collapsed
    np.testing.assert_allclose(path.c, cs, rtol=1e-6)
    np.testing.assert_allclose(path.fits, fits, atol=1e-8)
    resid = y - X @ np.linalg.lstsq(X, y, rcond=None)[0]
    assert path.null_energy == pytest.approx(np.sum(resid**2), rel=1e-8)
    with pytest.raises(ValueError, match="epsilon"):
        mobahi_rounds(s, y, epsilon=0.9 * path.null_energy / 20)


def test_top_k_spectrum_matches_truncated_kernel(problem):
    K, y, _ = problem
    s = spectrum(K, k=8, method="full")  # y has energy / n = 0.073 outside the top 8
    Kk = s.to_dense()
    path = mobahi_rounds(s, y, epsilon=0.1)
    cs, fits = dense_mobahi_rounds(Kk, y, 0.1)
    assert path.n_rounds == len(cs) and path.null_energy > 0
    np.testing.assert_allclose(path.c, cs, rtol=1e-6)
    np.testing.assert_allclose(path.fits, fits, atol=1e-8)


def test_torch_and_numpy_agree(problem):
    K, _, Y = problem
    ref = mobahi_rounds(spectrum(K), Y, epsilon=0.02)
    tp = mobahi_rounds(spectrum(to_backend(K, "torch")), to_backend(Y, "torch"), epsilon=0.02)
    assert type(tp.fits).__module__.startswith("torch") and isinstance(tp, MobahiPath)
    np.testing.assert_allclose(tp.c, ref.c, rtol=1e-8)
    np.testing.assert_allclose(_np(tp.fits), ref.fits, atol=1e-10)


# each constraint's own invalid example (with max_rounds=5), then hand-picked bad values
BAD_PARAMETERS = invalid_parameter_cases(
    CONSTRAINTS,
    sorted(CONSTRAINTS),
    {"epsilon": (0.0, math.nan, math.inf, "0.1"), "max_rounds": (0, 1.5)},
    max_rounds=5,
)


@pytest.mark.parametrize("kwargs, name", BAD_PARAMETERS)
def test_bad_parameters(problem, kwargs, name):
    K, y, _ = problem
    with pytest.raises((ValueError, TypeError), match=name):
        mobahi_rounds(spectrum(K), y, **(dict(epsilon=0.01) | kwargs))


def test_bad_arrays(problem):
    K, y, _ = problem
    with pytest.raises(ValueError, match="y"):
        mobahi_rounds(spectrum(K), y[:-1], epsilon=0.01)
    with pytest.raises(ValueError, match="y"):
        mobahi_rounds(spectrum(K), np.full_like(y, np.inf), epsilon=0.01)
    with pytest.raises(TypeError, match="spectrum"):
        mobahi_rounds(K, y, epsilon=0.01)
    with pytest.raises(TypeError, match="y"):
        mobahi_rounds(spectrum(K), to_backend(y, "torch"), epsilon=0.01)
    assert isinstance(Spectrum, type)
