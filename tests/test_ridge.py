"""kernels.ridge: the shared solver, KernelRidge and ridge paths.

Independent references: scikit-learn's KernelRidge (numpy, its own kernels and
solver), numpy's dense solve / pseudo-inverse, and scikit-learn's estimator checks.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import sklearn.kernel_ridge
from conftest import to_backend
from sklearn.exceptions import NotFittedError
from sklearn.metrics.pairwise import pairwise_kernels, rbf_kernel
from sklearn.utils.estimator_checks import parametrize_with_checks

import kernels.ridge as ridge_mod
from kernels.backend import to_numpy
from kernels.functions import ntk_relu
from kernels.ridge import KernelRidge, KernelSolve, RidgePath, solve_kernel_system
from kernels.spectrum import Spectrum

N, M, D, C = 30, 9, 4, 3
# parameters shared by our estimator and scikit-learn's (alpha there is ridge here)
SK_PARAMS = {
    "rbf": {"gamma": 0.3},
    "laplacian": {"gamma": 0.2},
    "polynomial": {"gamma": 0.5, "degree": 3, "coef0": 1.0},
    "linear": {},
}


def _data(rng, multi: bool):
    X = rng.normal(size=(N, D))
    Xt = rng.normal(size=(M, D))
    y = np.sin(X[:, :C] @ np.arange(1.0, C + 1)[:, None] * np.ones((1, C))) + rng.normal(size=(N, C)) * 0.1
    return X, Xt, (y if multi else y[:, 0])


def _assert_close(got, want, rtol=1e-8):
    got = to_numpy(got)
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


def _ours_and_sklearn(kernel, X, Xt, ridge, solver, backend):
    """(our estimator, inputs for it, sklearn estimator, inputs for it) for one kernel."""
    if kernel == "precomputed":
        K, Kt = rbf_kernel(X, gamma=0.3), rbf_kernel(Xt, X, gamma=0.3)
        ours = KernelRidge(ridge, kernel="precomputed", solver=solver)
        sk = sklearn.kernel_ridge.KernelRidge(alpha=ridge, kernel="precomputed")
        return ours, (to_backend(K, backend), to_backend(Kt, backend)), sk, (K, Kt)
    ours = KernelRidge(ridge, kernel=kernel, solver=solver, **SK_PARAMS[kernel])
    sk = sklearn.kernel_ridge.KernelRidge(alpha=ridge, kernel=kernel, **SK_PARAMS[kernel])
    return ours, (to_backend(X, backend), to_backend(Xt, backend)), sk, (X, Xt)


# ----------------------------------------------------------------------------- against scikit-learn


@pytest.mark.parametrize("multi", [False, True], ids=["1d", "multi"])
@pytest.mark.parametrize("solver", ["cholesky", "eigen", "mixed"])
@pytest.mark.parametrize("kernel", ["rbf", "laplacian", "polynomial", "linear", "precomputed"])
def test_predictions_match_sklearn(backend, rng, kernel, solver, multi):
    X, Xt, y = _data(rng, multi)
    ours, (A, At), sk, (B, Bt) = _ours_and_sklearn(kernel, X, Xt, 0.5, solver, backend)
    ours.fit(A, to_backend(y, backend))
    sk.fit(B, y)
    pred = ours.predict(At)
    assert type(pred) is type(At) and tuple(pred.shape) == ((M, C) if multi else (M,))
    _assert_close(pred, sk.predict(Bt))
    _assert_close(ours.dual_coef_, sk.dual_coef_)
    assert ours.solver_ == solver
    assert ours.n_features_in_ == (N if kernel == "precomputed" else D)
    assert (ours.spectrum_ is None) == (solver == "cholesky")
    if solver != "cholesky":
        assert isinstance(ours.spectrum_, Spectrum) and ours.spectrum_.k == N
        assert ours.spectrum_.values.dtype == (
            ours.dual_coef_.dtype if solver == "eigen" else to_backend(np.float32(1), backend).dtype
        )
    # score: R^2 via numpy for any backend, equal to scikit-learn's
    assert ours.score(At, to_backend(sk.predict(Bt) + 0.1, backend)) == pytest.approx(
        sk.score(Bt, sk.predict(Bt) + 0.1), rel=1e-8
    )


def test_gamma_none_uses_kernel_default(rng):
    X, Xt, y = _data(rng, False)
    for kernel in ("rbf", "laplacian", "polynomial"):
        ours = KernelRidge(0.1, kernel=kernel).fit(X, y)
        sk = sklearn.kernel_ridge.KernelRidge(alpha=0.1, kernel=kernel).fit(X, y)  # gamma = 1 / n_features
        _assert_close(ours.predict(Xt), sk.predict(Xt))


def test_named_kernel_receives_its_parameters(backend, rng):
    X, Xt, y = _data(rng, True)
    Xb, Xtb = to_backend(X, backend), to_backend(Xt, backend)
    ours = KernelRidge(0.2, kernel="ntk_relu", depth=2, bias=0.1, solver="eigen").fit(Xb, to_backend(y, backend))
    K, Kt = to_numpy(ntk_relu(X, depth=2, bias=0.1)), to_numpy(ntk_relu(Xt, X, depth=2, bias=0.1))
    sk = sklearn.kernel_ridge.KernelRidge(alpha=0.2, kernel="precomputed").fit(K, y)
    _assert_close(ours.predict(Xtb), sk.predict(Kt))
    # a different depth gives a different fit, so the parameter really is passed on
    other = KernelRidge(0.2, kernel="ntk_relu", depth=1, bias=0.1).fit(Xb, to_backend(y, backend))
    assert np.abs(to_numpy(other.predict(Xtb)) - sk.predict(Kt)).max() > 1e-6


def test_callable_kernel_with_kernel_params(rng):
    X, Xt, y = _data(rng, False)

    def my_rbf(A, B, scale=1.0):
        return rbf_kernel(A, B, gamma=0.3 * scale)

    ours = KernelRidge(0.5, kernel=my_rbf, kernel_params={"scale": 2.0}).fit(X, y)
    sk = sklearn.kernel_ridge.KernelRidge(alpha=0.5, kernel="rbf", gamma=0.6).fit(X, y)
    _assert_close(ours.predict(Xt), sk.predict(Xt))
    path = ours.ridge_path([0.1, 1.0], Xt)
    _assert_close(path.predictions[1], sklearn.kernel_ridge.KernelRidge(alpha=1.0, kernel="rbf", gamma=0.6).fit(X, y).predict(Xt))


def test_callable_kernel_with_wrong_shape_raises(rng):
    X, _, y = _data(rng, False)
    with pytest.raises(ValueError, match="kernel"):
        KernelRidge(kernel=lambda A, B: rbf_kernel(A, B)[:, :-1]).fit(X, y)


# ----------------------------------------------------------------------------- ridge path


@pytest.mark.parametrize("multi", [False, True], ids=["1d", "multi"])
@pytest.mark.parametrize("solver", ["cholesky", "eigen", "mixed"])
def test_ridge_path_matches_separate_fits(backend, rng, solver, multi):
    X, Xt, y = _data(rng, multi)
    ridges = [1e-3, 0.05, 1.0, 20.0]
    model = KernelRidge(1.0, kernel="laplacian", gamma=0.2, solver=solver)
    model.fit(to_backend(X, backend), to_backend(y, backend))
    path = model.ridge_path(ridges, to_backend(Xt, backend))
    assert isinstance(path, RidgePath)
    assert path.solver == solver and path.solvers == (solver,) * len(ridges)
    assert path.n_factorisations == (len(ridges) if solver == "cholesky" else 0)
    np.testing.assert_allclose(to_numpy(path.ridges), ridges)
    tail = (C,) if multi else ()
    assert tuple(path.dual_coef.shape) == (len(ridges), N, *tail)
    assert tuple(path.fitted.shape) == (len(ridges), N, *tail)
    assert tuple(path.predictions.shape) == (len(ridges), M, *tail)
    for r, lam in enumerate(ridges):
        sk = sklearn.kernel_ridge.KernelRidge(alpha=lam, kernel="laplacian", gamma=0.2).fit(X, y)
        _assert_close(to_numpy(path.dual_coef)[r], sk.dual_coef_, rtol=1e-7)
        _assert_close(to_numpy(path.fitted)[r], sk.predict(X))
        _assert_close(to_numpy(path.predictions)[r], sk.predict(Xt))
    assert model.ridge_path(0.5).predictions is None


def test_ridge_path_precomputed(rng):
    X, Xt, y = _data(rng, False)
    K, Kt = rbf_kernel(X, gamma=0.3), rbf_kernel(Xt, X, gamma=0.3)
    for solver in ("cholesky", "eigen", "mixed"):
        path = KernelRidge(kernel="precomputed", solver=solver).fit(K, y).ridge_path([0.01, 3.0], Kt)
        for r, lam in enumerate((0.01, 3.0)):
            sk = sklearn.kernel_ridge.KernelRidge(alpha=lam, kernel="precomputed").fit(K, y)
            _assert_close(path.predictions[r], sk.predict(Kt), rtol=1e-7)


def test_mixed_solver_reaches_float64_accuracy(backend):
    """A float32 decomposition alone is off by ~eps32 * cond; the refined path is as accurate as a direct solve.

    Low-dimensional RBF data makes K ill-conditioned (cond(K + 1e-4 I) ~ 1e6), so the float32
    spectral solution has a relative error near 1e-2 while float64 solves agree to ~1e-10.
    """
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 2))
    y = np.sin(2 * X[:, 0]) + 0.1 * rng.normal(size=300)
    ridges = np.array([1e-4, 1e-2, 1.0])
    model = KernelRidge(1e-4, kernel="rbf", gamma=0.5, solver="mixed").fit(to_backend(X, backend), to_backend(y, backend))
    path = model.ridge_path(ridges)
    assert path.solver == "mixed" and path.n_factorisations == 0
    K = rbf_kernel(X, gamma=0.5)
    spec32 = np.linalg.eigh(K.astype(np.float32))
    for r, lam in enumerate(ridges):
        direct = np.linalg.solve(K + lam * np.eye(300), y)
        low = (spec32[1] / (spec32[0] + lam)) @ (spec32[1].T @ y.astype(np.float32))
        err_low = np.abs(low - direct).max() / np.abs(direct).max()
        err = np.abs(to_numpy(path.dual_coef)[r] - direct).max() / np.abs(direct).max()
        assert err < 1e-9 and (lam > 1e-3 or err_low > 1e3 * err)
        residual = (K + lam * np.eye(300)) @ to_numpy(path.dual_coef)[r] - y
        assert np.linalg.norm(residual) <= 64 * np.finfo(float).eps * (
            np.linalg.norm(K + lam * np.eye(300), 2) * np.linalg.norm(direct) + np.linalg.norm(y)
        )


def _backward_errors(K, lam, Xs, Y):
    """Normwise backward error ||(K + lam I) x - y|| / (||K + lam I||_2 ||x|| + ||y||) of every column, in float64.

    ``||K + lam I||_2 = ||K||_2 + lam`` from numpy's dense 2-norm (kernels/refine.py uses the same
    definition with the float32 d_max); Xs and Y have shape (n, c).
    """
    norm_A = np.linalg.norm(K, 2) + lam
    resid = K @ Xs + lam * Xs - Y
    return np.linalg.norm(resid, axis=0) / (norm_A * np.linalg.norm(Xs, axis=0) + np.linalg.norm(Y, axis=0))


def _ill_conditioned_rbf(seed=3, n=300):
    """Low-dimensional RBF data: cond(K) ~ 1e19, so every small ridge sets the conditioning."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    Y = np.stack([np.sin(2 * X[:, 0]) + 0.1 * rng.normal(size=n), rng.normal(size=n)], axis=1)
    return X, Y, rbf_kernel(X, gamma=0.5)


# kernels.refine: a column counts as converged when its fresh backward error is at most 4 * tol
# (tol = 16 eps64 by default; the recursive residual reaches tol, the fresh one may drift above it).
_EPS = np.finfo(np.float64).eps
_ACCEPTED = 4 * 16 * _EPS


def test_refined_solve_reaches_its_backward_error_tolerance():
    """Every column reported converged has an independently measured backward error <= 4 * 16 eps64;
    every column reported not converged is above it; the default tolerance is 16 eps64."""
    from kernels.refine import DEFAULT_TOL, refined_ridge_solve
    from kernels.spectrum import spectrum

    assert DEFAULT_TOL == 16 * _EPS
    _, Y, K = _ill_conditioned_rbf()
    spec = spectrum(K.astype(np.float32))
    ridges = np.array([1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    for max_iter, must_converge in ((50, ridges), (3, ridges[ridges >= 1e-2])):  # 3 iterations: small ridges stop short
        res = refined_ridge_solve(K, Y, ridges, spec, max_iter=max_iter)
        conv = np.asarray(res.converged)
        for r, lam in enumerate(ridges):
            be = _backward_errors(K, lam, np.asarray(res.coef[r]), Y)
            # the reported value is the true one (up to the round-off of forming a residual, ~1 eps)
            assert res.backward_error[r] == pytest.approx(be.max(), rel=1e-3, abs=4 * _EPS)
            if conv[r]:
                assert np.all(be <= _ACCEPTED), (max_iter, lam, be / _EPS)
            else:
                assert be.max() > 0.5 * _ACCEPTED, (max_iter, lam, be / _EPS)
            if lam in must_converge:
                assert conv[r] and np.all(be <= _ACCEPTED), (max_iter, lam, be / _EPS)
        assert (max_iter == 3) == (not conv.all())  # the short run leaves some ridges unconverged


def test_mixed_solver_backward_error_on_ill_conditioned_kernel():
    """KernelRidge(solver="mixed"): fit and every ridge of the path solved to a float64 backward error
    of at most 4 * 16 eps (columns the refinement does not converge go to Cholesky)."""
    X, Y, K = _ill_conditioned_rbf()
    model = KernelRidge(1e-6, kernel="rbf", gamma=0.5, solver="mixed").fit(X, Y)
    assert model.solver_ == "mixed"
    be = _backward_errors(K, 1e-6, np.asarray(model.dual_coef_), Y)
    assert np.all(be <= _ACCEPTED), be / _EPS
    ridges = np.array([3e-7, 1e-6, 1e-4, 1e-2, 1.0])  # 3e-7: near eps32 * d_max, refinement may stall
    path = model.ridge_path(ridges)
    assert all(s == "mixed" for s in path.solvers[1:])
    assert path.n_factorisations == sum(s != "mixed" for s in path.solvers)
    for r, lam in enumerate(ridges):
        be = _backward_errors(K, lam, np.asarray(path.dual_coef[r]), Y)
        assert np.all(be <= _ACCEPTED), (lam, path.solvers[r], be / _EPS)


def test_mixed_solver_falls_back_to_cholesky_and_records_it():
    """A ridge far below eps32 * d_max leaves the float32 preconditioner useless: Cholesky takes over."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(120, 1))
    y = np.cos(X[:, 0])
    model = KernelRidge(1e-9, kernel="rbf", gamma=0.1, solver="mixed").fit(X, y)
    path = model.ridge_path([1e-9, 1.0])
    assert path.solvers[1] == "mixed" and path.solvers[0] in ("cholesky", "lstsq-fallback")
    assert path.solver.startswith("mixed+") and path.n_factorisations == 1
    assert model.solver_ == path.solvers[0]
    K = rbf_kernel(X, gamma=0.1)
    for r, lam in enumerate((1e-9, 1.0)):
        sk = sklearn.kernel_ridge.KernelRidge(alpha=lam, kernel="precomputed").fit(K, y)
        np.testing.assert_allclose(path.fitted[r], sk.predict(K), rtol=1e-6, atol=1e-6)


def test_mixed_solver_on_float32_data_stays_float32():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(50, 3)).astype(np.float32)
    y = rng.normal(size=50).astype(np.float32)
    model = KernelRidge(0.1, kernel="rbf", gamma=0.3, solver="mixed").fit(X, y)
    assert model.dual_coef_.dtype == np.float32 and model.solver_ == "mixed"
    want = np.linalg.solve(rbf_kernel(X.astype(float), gamma=0.3) + 0.1 * np.eye(50), y.astype(float))
    np.testing.assert_allclose(model.dual_coef_, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


# ----------------------------------------------------------------------------- shared solver


def test_solve_kernel_system_matches_dense_solve(backend, rng):
    A = rng.normal(size=(15, 15))
    K = A @ A.T / 15
    for Y in (rng.normal(size=15), rng.normal(size=(15, 2))):
        res = solve_kernel_system(to_backend(K, backend), to_backend(Y, backend), 0.7)
        assert isinstance(res, KernelSolve) and res.solver == "cholesky" and not res.fell_back and res.ridge == 0.7
        assert type(res.coef) is type(to_backend(K, backend))
        _assert_close(res.coef, np.linalg.solve(K + 0.7 * np.eye(15), Y), rtol=1e-10)
    # lists become arrays of K's namespace
    res = solve_kernel_system(to_backend(K, backend), Y.tolist(), 0.7)
    assert type(res.coef) is type(to_backend(K, backend))


def test_lstsq_fallback_singular_matrix_is_recorded(backend):
    # ones((n, n)) + 1e-20 I is exactly ones((n, n)) in float64: rank 1, Cholesky fails
    n = 6
    K = np.ones((n, n))
    y = np.arange(n, dtype=float)
    with pytest.warns(UserWarning, match="least-squares"):
        res = solve_kernel_system(to_backend(K, backend), to_backend(y, backend), 1e-20)
    assert res.solver == "lstsq-fallback" and res.fell_back and res.message
    _assert_close(res.coef, np.linalg.pinv(K) @ y, rtol=1e-8)  # minimum-norm least squares


def test_lstsq_fallback_in_estimator_and_path(backend, rng, monkeypatch):
    X, Xt, y = _data(rng, False)

    def broken_cholesky(a):
        raise np.linalg.LinAlgError("forced failure for the test")

    monkeypatch.setattr(ridge_mod, "cholesky", broken_cholesky)
    with pytest.warns(UserWarning, match="lstsq-fallback"):
        model = KernelRidge(0.5, gamma=0.3).fit(to_backend(X, backend), to_backend(y, backend))
    assert model.solver_ == "lstsq-fallback"
    sk = sklearn.kernel_ridge.KernelRidge(alpha=0.5, kernel="rbf", gamma=0.3).fit(X, y)
    _assert_close(model.predict(to_backend(Xt, backend)), sk.predict(Xt))  # still the right answer
    with pytest.warns(UserWarning):
        path = model.ridge_path([0.1, 1.0])
    assert path.solver == "cholesky+lstsq-fallback" and path.solvers == ("lstsq-fallback",) * 2


def test_no_warning_when_cholesky_succeeds(rng):
    X, _, y = _data(rng, False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert KernelRidge(1e-3).fit(X, y).solver_ == "cholesky"


# ----------------------------------------------------------------------------- backends


def test_backend_parameter_for_lists(rng):
    torch = pytest.importorskip("torch")
    X, Xt, y = _data(rng, False)
    model = KernelRidge(0.5, gamma=0.3, backend="torch").fit(X.tolist(), y.tolist())
    assert isinstance(model.X_fit_, torch.Tensor) and isinstance(model.dual_coef_, torch.Tensor)
    pred = model.predict(Xt.tolist())  # lists follow the training data's backend
    assert isinstance(pred, torch.Tensor)
    sk = sklearn.kernel_ridge.KernelRidge(alpha=0.5, kernel="rbf", gamma=0.3).fit(X, y)
    _assert_close(pred, sk.predict(Xt))
    with pytest.raises(TypeError, match="X"):  # an array of another backend than asked for
        KernelRidge(backend="torch").fit(X, y)
    with pytest.raises(TypeError, match="backend"):  # predicting with another backend than fitted
        model.predict(Xt)
    with pytest.raises(TypeError, match="y"):
        KernelRidge().fit(torch.from_numpy(X), y)


def test_float32_is_kept(backend, rng):
    X, Xt, y = _data(rng, False)
    X32 = to_backend(X.astype(np.float32), backend)
    model = KernelRidge(0.5, gamma=0.3).fit(X32, to_backend(y, backend))
    pred = model.predict(to_backend(Xt.astype(np.float32), backend))
    assert str(pred.dtype).endswith("float32")
    sk = sklearn.kernel_ridge.KernelRidge(alpha=0.5, kernel="rbf", gamma=0.3).fit(X, y)
    _assert_close(pred, sk.predict(Xt), rtol=1e-4)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", sorted(KernelRidge.CONSTRAINTS))
def test_every_constraint_rejects_an_invalid_value(rng, name):
    X, _, y = _data(rng, False)
    bad = KernelRidge.CONSTRAINTS[name].invalid_example()
    with pytest.raises((ValueError, TypeError), match=f"KernelRidge.fit: {name} must be"):
        KernelRidge(**{name: bad}).fit(X, y)


@pytest.mark.parametrize(
    "params, name",
    [
        ({"ridge": 0.0}, "ridge"),
        ({"ridge": -1.0}, "ridge"),
        ({"ridge": np.nan}, "ridge"),
        ({"ridge": "1"}, "ridge"),
        ({"kernel": "gaussian"}, "kernel"),
        ({"kernel": 3}, "kernel"),
        ({"solver": "qr"}, "solver"),
        ({"backend": "jax"}, "backend"),
        ({"gamma": -1.0}, "gamma"),
        ({"degree": 2.5}, "degree"),
        ({"kernel_params": {"nope": 1}}, "kernel_params"),
    ],
)
def test_bad_parameters_raise(rng, params, name):
    X, _, y = _data(rng, False)
    with pytest.raises((ValueError, TypeError), match=name):
        KernelRidge(**params).fit(X, y)


def test_bad_data_raise(backend, rng):
    X, Xt, y = _data(rng, False)
    Xb, yb = to_backend(X, backend), to_backend(y, backend)
    model = KernelRidge(gamma=0.3)
    with pytest.raises(NotFittedError):
        model.predict(to_backend(Xt, backend))
    for bad in (np.nan, np.inf):
        Xn, yn = X.copy(), y.copy()
        Xn[2, 1], yn[3] = bad, bad
        with pytest.raises(ValueError, match="X contains NaN"):
            KernelRidge().fit(to_backend(Xn, backend), yb)
        with pytest.raises(ValueError, match="y contains NaN"):
            KernelRidge().fit(Xb, to_backend(yn, backend))
    with pytest.raises(ValueError, match="y has"):
        model.fit(Xb, yb[:-1])
    with pytest.raises(ValueError, match="y is None"):
        model.fit(Xb, None)
    with pytest.raises(ValueError, match="X must be 2-D"):
        model.fit(Xb[:, 0], yb)
    model.fit(Xb, yb)
    with pytest.raises(ValueError, match="X has 3 features, but KernelRidge is expecting 4"):
        model.predict(to_backend(Xt[:, :3], backend))
    with pytest.raises(ValueError, match="X contains NaN"):
        model.predict(to_backend(np.full((2, D), np.nan), backend))
    with pytest.raises(ValueError, match="ridges"):
        model.ridge_path([0.1, -1.0])
    with pytest.raises(ValueError, match="ridges"):
        model.ridge_path([0.1, np.nan])


def test_precomputed_needs_square_symmetric(rng):
    X, _, y = _data(rng, False)
    with pytest.raises(ValueError, match="X must be a square"):
        KernelRidge(kernel="precomputed").fit(X, y)
    K = rbf_kernel(X)
    K[0, 1] += 0.1
    with pytest.raises(ValueError, match="X must be symmetric"):
        KernelRidge(kernel="precomputed").fit(K, y)


def test_eigen_solver_needs_psd(rng):
    X, _, y = _data(rng, False)
    K = pairwise_kernels(X, metric="linear") - 5.0  # indefinite
    with pytest.raises(ValueError, match="solver='eigen'"):
        KernelRidge(kernel="precomputed", solver="eigen").fit(K, y)
    with pytest.warns(UserWarning, match="least-squares"):  # K + I is indefinite: Cholesky fails
        assert KernelRidge(kernel="precomputed").fit(K, y).solver_ == "lstsq-fallback"


@pytest.mark.parametrize(
    "args, name",
    [
        ((np.eye(3), np.ones(3), -1.0), "ridge"),
        ((np.ones((3, 2)), np.ones(3), 1.0), "K"),
        ((np.eye(3), np.ones(4), 1.0), "Y"),
        ((np.eye(3), [np.nan] * 3, 1.0), "Y"),
    ],
)
def test_solve_kernel_system_bad_input(args, name):
    with pytest.raises((ValueError, TypeError), match=name):
        solve_kernel_system(*args)


def test_sparse_input_rejected(rng):
    import scipy.sparse

    X, _, y = _data(rng, False)
    with pytest.raises(TypeError, match="sparse"):
        KernelRidge().fit(scipy.sparse.csr_array(X), y)


# ----------------------------------------------------------------------------- scikit-learn API


def test_get_set_params_roundtrip():
    model = KernelRidge(0.3, kernel="polynomial", degree=2)
    assert model.get_params()["ridge"] == 0.3 and model.get_params()["degree"] == 2
    model.set_params(ridge=2.0, solver="eigen")
    assert model.ridge == 2.0 and model.solver == "eigen"
    assert model.__sklearn_tags__().input_tags.pairwise is False
    assert KernelRidge(kernel="precomputed").__sklearn_tags__().input_tags.pairwise is True


def _expected_failed_checks(estimator):
    return {
        # airkit's one input converter (kernels.checks.as_array) refuses object arrays
        # with a TypeError naming X instead of coercing them element by element.
        "check_dtype_object": "object arrays are refused by kernels.checks.as_array (TypeError naming X), not coerced",
        # Only runs with SCIPY_ARRAY_API=1 on a CUDA/MPS machine: airkit requires X and y
        # on one backend (kernels.checks.check_labels raises a TypeError naming y).
        "check_array_api_mixed_inputs": "X and y must share one array backend (TypeError naming y)",
    }


@parametrize_with_checks(
    [
        KernelRidge(),
        KernelRidge(kernel="precomputed"),
        KernelRidge(kernel="ntk_relu", depth=2, bias=0.1, solver="eigen"),
        KernelRidge(solver="mixed"),
    ],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
