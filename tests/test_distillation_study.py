"""distillation_study: the Cholesky (Krylov) route against the eigen route and explicit
scikit-learn refits at every step, on numpy and torch; route choice; bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.kernel_ridge import KernelRidge

from kernels.backend import to_numpy
from tests.conftest import to_backend
from theory.distillation_study import DistillationStudy, distillation_study, study_weights

RIDGE = 0.1
ALPHAS = np.array([0.0, 0.25, 0.6, 1.0])
STEPS = 6
TOL = 1e-8


def _np(x):
    return to_numpy(x)  # explicit host copy: works for torch, CuPy and the strict namespace


def rbf_problem(n=40, m=9, seed=0, gamma=0.5, classes=3):
    """RBF Gram matrices by a direct numpy formula (not the code under test)."""
    r = np.random.default_rng(seed)
    X, Xt = r.normal(size=(n, 3)), r.normal(size=(m, 3))
    sq = lambda A, B: ((A[:, None, :] - B[None, :, :]) ** 2).sum(-1)  # noqa: E731
    K, Kc = np.exp(-gamma * sq(X, X)), np.exp(-gamma * sq(Xt, X))
    y = np.sin(2 * X[:, 0]) + 0.3 * r.normal(size=n)
    Y = np.eye(classes)[r.integers(0, classes, n)]
    return K, Kc, y, Y


def sklearn_refits(K, Kc, y, ridge, alphas, steps):
    """What a notebook does: refit scikit-learn's KernelRidge at every step of every alpha."""
    fits, preds, duals = [], [], []
    for a in alphas:
        targets, f_a, p_a, d_a = y, [], [], []
        for _ in range(steps):
            model = KernelRidge(alpha=ridge, kernel="precomputed").fit(K, targets)
            fit = model.predict(K)
            f_a.append(fit)
            p_a.append(model.predict(Kc))
            d_a.append(model.dual_coef_)
            targets = a * y + (1 - a) * fit
        fits.append(f_a), preds.append(p_a), duals.append(d_a)
    return np.array(fits), np.array(preds), np.array(duals)


@pytest.fixture(scope="module")
def problem():
    return rbf_problem()


@pytest.mark.parametrize("labels", ["vector", "onehot"])
def test_routes_match_sklearn_refits(problem, backend, labels):
    K, Kc, y, Y = problem
    target = y if labels == "vector" else Y
    ref_fits, ref_preds, ref_duals = sklearn_refits(K, Kc, target, RIDGE, ALPHAS, STEPS)
    Kb, Kcb, tb = (to_backend(a, backend) for a in (K, Kc, target))
    chol = distillation_study(Kb, tb, ridge=RIDGE, alpha=ALPHAS, steps=STEPS, K_cross=Kcb, route="cholesky")
    eig = distillation_study(Kb, tb, ridge=RIDGE, alpha=ALPHAS, steps=STEPS, K_cross=Kcb, route="eigen")
    shape = (len(ALPHAS), STEPS) + target.shape
    for study, route in ((chol, "cholesky"), (eig, "eigen")):
        assert isinstance(study, DistillationStudy)
        assert study.route == route and study.backend == backend
        assert tuple(study.fits.shape) == shape
        assert tuple(study.predictions.shape) == (len(ALPHAS), STEPS, Kc.shape[0]) + target.shape[1:]
        np.testing.assert_allclose(_np(study.fits), ref_fits, atol=TOL, rtol=0)
        np.testing.assert_allclose(_np(study.predictions), ref_preds, atol=TOL, rtol=0)
        np.testing.assert_allclose(_np(study.dual_coef), ref_duals, atol=TOL, rtol=0)
        np.testing.assert_allclose(_np(study.predict(Kcb)), ref_preds, atol=TOL, rtol=0)
    assert chol.solver == "cholesky" and chol.n_solves == STEPS and chol.path is None and chol.spectrum is None
    assert eig.solver == "eigen" and eig.n_solves == 0 and eig.path is not None and eig.spectrum.n_samples == len(K)


def test_auto_route_choice(problem):
    K, Kc, y, _ = problem
    study = distillation_study(K, y, ridge=RIDGE, alpha=ALPHAS, steps=STEPS, K_cross=Kc)
    assert study.route == "cholesky" and "auto" in study.route_reason
    assert study.cost_estimate["cholesky"] < study.cost_estimate["eigen"]
    spec = distillation_study(K, y, ridge=RIDGE, alpha=ALPHAS, steps=STEPS, need_spectrum=True)
    assert spec.route == "eigen" and "need_spectrum" in spec.route_reason
    assert tuple(spec.path.B.shape) == (len(ALPHAS), STEPS, len(K))
    # one alpha, many steps against n: streaming the factor T times costs more than eigh
    long = distillation_study(K, y, ridge=RIDGE, alpha=0.5, steps=60)
    assert long.route == "eigen" and long.cost_estimate["eigen"] < long.cost_estimate["cholesky"]
    np.testing.assert_allclose(
        long.fits, distillation_study(K, y, ridge=RIDGE, alpha=0.5, steps=60, route="cholesky").fits, atol=TOL
    )
    forced = distillation_study(K, y, ridge=RIDGE, alpha=ALPHAS, steps=STEPS, route="eigen")
    assert forced.route_reason == "route='eigen' requested"


def test_scalar_alpha_and_known_limits(problem):
    K, _, y, _ = problem
    one = distillation_study(K, y, ridge=RIDGE, alpha=1.0, steps=4)
    assert one.fits.shape == (1, 4, len(y)) and one.alpha.tolist() == [1.0]
    krr = K @ np.linalg.solve(K + RIDGE * np.eye(len(K)), y)
    np.testing.assert_allclose(one.fits[0], np.broadcast_to(krr, (4, len(y))), atol=TOL)  # alpha=1: plain KRR every step
    zero = distillation_study(K, y, ridge=RIDGE, alpha=0.0, steps=4)
    A = K @ np.linalg.inv(K + RIDGE * np.eye(len(K)))
    np.testing.assert_allclose(zero.fits[0, 3], np.linalg.matrix_power(A, 4) @ y, atol=TOL)  # alpha=0: A^t y


def test_study_weights_are_convex():
    v = study_weights([0.0, 0.3, 1.0], 7)
    assert v.shape == (3, 7, 7)
    assert np.all(v >= 0)
    np.testing.assert_allclose(v.sum(axis=-1), 1.0, atol=1e-15)
    # alpha = 1: every step's targets are y; alpha = 0: the targets of step t are A^(t-1) y
    np.testing.assert_array_equal(v[2, :, 0], 1.0)
    np.testing.assert_array_equal(v[0], np.eye(7))


@settings(max_examples=15, deadline=None)
@given(alpha=st.floats(0, 1), steps=st.integers(1, 8), ridge=st.floats(0.05, 5.0), seed=st.integers(0, 3))
def test_property_cholesky_equals_eigen(alpha, steps, ridge, seed):
    K, Kc, y, _ = rbf_problem(n=20, m=5, seed=seed)
    a = distillation_study(K, y, ridge=ridge, alpha=[alpha, 1 - alpha], steps=steps, K_cross=Kc, route="cholesky")
    b = distillation_study(K, y, ridge=ridge, alpha=[alpha, 1 - alpha], steps=steps, K_cross=Kc, route="eigen")
    np.testing.assert_allclose(a.fits, b.fits, atol=TOL)
    np.testing.assert_allclose(a.predictions, b.predictions, atol=TOL)


def test_float32_and_namespace_kept(problem):
    torch = pytest.importorskip("torch")
    K, Kc, y, _ = problem
    study = distillation_study(
        torch.tensor(K, dtype=torch.float32),
        torch.tensor(y, dtype=torch.float32),
        ridge=RIDGE,
        alpha=ALPHAS,
        steps=3,
        K_cross=torch.tensor(Kc, dtype=torch.float32),
    )
    assert isinstance(study.fits, torch.Tensor) and study.fits.dtype == torch.float32
    assert study.predictions.dtype == torch.float32
    ref = distillation_study(K, y, ridge=RIDGE, alpha=ALPHAS, steps=3, K_cross=Kc)
    np.testing.assert_allclose(_np(study.predictions), ref.predictions, atol=1e-4)


def test_lstsq_fallback_for_indefinite_kernel():
    r = np.random.default_rng(1)
    Q, _ = np.linalg.qr(r.normal(size=(12, 12)))
    K = (Q * np.linspace(-1.0, 2.0, 12)) @ Q.T  # symmetric, indefinite
    K = (K + K.T) / 2
    y = r.normal(size=12)
    with pytest.warns(UserWarning, match="lstsq-fallback"):
        study = distillation_study(K, y, ridge=0.37, alpha=[0.0, 0.5], steps=3)  # auto: eigen refuses, cholesky
    assert study.solver == "lstsq-fallback" and study.message and "PSD" in study.route_reason
    with pytest.raises(ValueError, match="positive semi-definite"):
        distillation_study(K, y, ridge=0.37, alpha=0.5, steps=3, route="eigen")
    M = K + 0.37 * np.eye(12)
    for i, a in enumerate((0.0, 0.5)):
        prev = y
        for t in range(3):
            prev = K @ np.linalg.solve(M, a * y + (1 - a) * prev)
            np.testing.assert_allclose(study.fits[i, t], prev, atol=1e-9)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"ridge": 0.0}, ValueError, "ridge"),
        ({"ridge": -1.0}, ValueError, "ridge"),
        ({"ridge": "big"}, TypeError, "ridge"),
        ({"alpha": 1.5}, ValueError, "alpha"),
        ({"alpha": -0.1}, ValueError, "alpha"),
        ({"alpha": [0.5, 2.0]}, ValueError, "alpha"),
        ({"steps": 0}, ValueError, "steps"),
        ({"steps": 1.5}, ValueError, "steps"),
        ({"route": "fast"}, ValueError, "route"),
        ({"need_spectrum": "yes"}, TypeError, "need_spectrum"),
        ({"route": "cholesky", "need_spectrum": True}, ValueError, "need_spectrum"),
    ],
)
def test_bad_parameters(problem, kwargs, exc, match):
    K, Kc, y, _ = problem
    args = {"ridge": RIDGE, "alpha": 0.5, "steps": 3, **kwargs}
    with pytest.raises(exc, match=match):
        distillation_study(K, y, **args)


def test_bad_arrays(problem):
    K, Kc, y, _ = problem
    ok = {"ridge": RIDGE, "alpha": 0.5, "steps": 2}
    with pytest.raises(ValueError, match="y"):
        distillation_study(K, y[:-1], **ok)
    with pytest.raises(ValueError, match="K"):
        distillation_study(K[:, :-1], y, **ok)
    bad = K.copy()
    bad[0, 1] = bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="K"):
        distillation_study(bad, y, **ok)
    with pytest.raises(ValueError, match="K_cross"):
        distillation_study(K, y, K_cross=Kc[:, :-1], **ok)
    with pytest.raises(ValueError, match="K_cross"):
        distillation_study(K, y, K_cross=Kc[0], **ok)
    study = distillation_study(K, y, **ok)
    with pytest.raises(ValueError, match="K_cross"):
        study.predict(Kc[:, :3])
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="K_cross"):
        distillation_study(K, y, K_cross=torch.from_numpy(Kc), **ok)


def test_cholesky_route_mixes_update_forms_per_column(problem):
    """A column along K's top eigenvector takes the product update K g, one along its tail the
    difference update P - ridge g; the mixed step must still match scikit-learn refits."""
    K, Kc, _, _ = problem
    V = np.linalg.eigh(K)[1]
    Y = np.stack([V[:, -1], V[:, 0] + 1e-3 * V[:, -1]], axis=1)
    study = distillation_study(K, Y, ridge=RIDGE, alpha=ALPHAS, steps=STEPS, K_cross=Kc, route="cholesky")
    assert study.update == "difference+product"
    fits, preds, _ = sklearn_refits(K, Kc, Y, RIDGE, ALPHAS, STEPS)
    np.testing.assert_allclose(study.fits, fits, atol=TOL)
    np.testing.assert_allclose(study.predictions, preds, atol=TOL)


@pytest.mark.parametrize("scale", [1e-3, 1e3])
def test_cholesky_route_is_scale_invariant(problem, scale):
    """K -> s K with ridge -> s ridge leaves every fit and the update form unchanged (the power
    estimate of d_max that picks the update must scale with K, for norms below 1 too)."""
    K, Kc, _, _ = problem
    V = np.linalg.eigh(K)[1]
    Y = np.stack([V[:, -1], V[:, 0] + 1e-3 * V[:, -1]], axis=1)
    kw = dict(alpha=ALPHAS, steps=STEPS, route="cholesky")
    base = distillation_study(K, Y, ridge=RIDGE, **kw)
    scaled = distillation_study(scale * K, Y, ridge=scale * RIDGE, **kw)
    assert scaled.update == base.update == "difference+product"
    np.testing.assert_allclose(scaled.fits, base.fits, atol=TOL)
