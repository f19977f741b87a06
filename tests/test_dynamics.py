"""theory.dynamics: linearised training in the eigenbasis against dense references.

References: explicit iteration of ``u <- u - lr K (u - target)`` and of the dual
``c <- c - lr (K c - target)`` with a dense K, dense KRR solves for the fixed point,
scipy.linalg.expm on the dense (2n x 2n) system and small-step Euler for the flow.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg

from kernels import Spectrum, spectrum
from kernels.backend import to_numpy
from tests.conftest import to_backend
from theory.dynamics import CONSTRAINTS, linearized_training, max_stable_lr

N, M = 12, 5


def _rbf(A, B, gamma=0.7):
    return np.exp(-gamma * ((A[:, None, :] - B[None, :, :]) ** 2).sum(-1))


@pytest.fixture
def problem(rng):
    X = rng.normal(size=(N, 2))
    Z = rng.normal(size=(M, 2))
    K = _rbf(X, X)
    labels = rng.integers(0, 3, N)
    return dict(K=K, Kc=_rbf(Z, X), y_vec=rng.normal(size=N), y_hot=np.eye(3)[labels], d_max=float(np.linalg.eigvalsh(K)[-1]))


def weight_kw(rule, value):
    """The keyword that carries a rule's weight: alpha (anchored), target_momentum (chained)."""
    return {"gd": {}, "anchored": {"alpha": value}, "chained": {"target_momentum": value}}[rule]


def _dense_run(K, y, lr, steps, rule, alpha):
    """Explicit iteration in function space and of the dual coefficients."""
    u, c = np.zeros_like(y), np.zeros_like(y)
    tgt, tgt_dual = y.copy(), y.copy()
    a0 = None if alpha is None else (alpha if np.ndim(alpha) == 0 else alpha[0])
    us, cs, ts = [u], [c], [a0 * y if rule == "anchored" else tgt]
    for t in range(steps):
        a = None if alpha is None else (alpha if np.ndim(alpha) == 0 else alpha[t])
        if rule == "gd":
            tu = td = y
        elif rule == "anchored":
            tu, td = a * y + (1 - a) * u, a * y + (1 - a) * (K @ c)
        else:
            tu, td = tgt, tgt_dual
        u_new = u - lr * K @ (u - tu)
        c_new = c - lr * (K @ c - td)
        if rule == "chained":
            tgt = a * tgt + (1 - a) * u
            tgt_dual = a * tgt_dual + (1 - a) * (K @ c)
        u, c = u_new, c_new
        us.append(u), cs.append(c), ts.append(tgt if rule == "chained" else (y if rule == "gd" else a * y + (1 - a) * u))
    return np.array(us), np.array(cs), np.array(ts)


CASES = [("gd", None, 1.6), ("anchored", 0.3, 1.6), ("chained", 0.4, 0.9 * 1.4), ("chained", "schedule", 0.9)]


@pytest.mark.parametrize("rule,alpha,lr_scale", CASES, ids=["gd", "anchored", "chained", "chained-schedule"])
@pytest.mark.parametrize("yname", ["y_vec", "y_hot"])
def test_matches_explicit_iteration(problem, backend, rng, rule, alpha, lr_scale, yname):
    steps = 40
    K, y = problem["K"], problem[yname]
    if alpha == "schedule":
        alpha = rng.uniform(0.0, 1.0, size=steps)
        alpha_arg = to_backend(alpha, backend)  # a schedule may be any array
    else:
        alpha_arg = alpha
    lr = lr_scale / problem["d_max"]
    s = spectrum(to_backend(K, backend))
    path = linearized_training(s, to_backend(y, backend), lr=lr, steps=steps, targets=rule, **weight_kw(rule, alpha_arg))
    us, cs, ts = _dense_run(K, y, lr, steps, rule, alpha)
    assert type(path.fits) is type(s.values)  # stays in the input namespace
    np.testing.assert_allclose(to_numpy(path.fits), us, atol=1e-10, rtol=0)
    # dual coefficients: V coef is the explicit dual iterate c, K_cross c the prediction
    V = to_numpy(s.vectors)
    coef = to_numpy(path.coef)
    dual = np.einsum("nk,tk...->tn...", V, coef)
    np.testing.assert_allclose(dual, cs, atol=1e-9 * max(1.0, np.abs(cs).max()), rtol=0)
    pred = to_numpy(path.predict(to_backend(problem["Kc"], backend)))
    np.testing.assert_allclose(pred, np.einsum("mn,tn...->tm...", problem["Kc"], cs), atol=1e-9, rtol=0)
    np.testing.assert_allclose(to_numpy(path.targets), ts, atol=1e-10, rtol=0)
    # record: any order and repeats, same values as the full path
    rec = [33, 0, 7, 7, steps]
    sub = linearized_training(
        s, to_backend(y, backend), lr=lr, steps=steps, targets=rule, **weight_kw(rule, alpha_arg), record=rec
    )
    np.testing.assert_allclose(to_numpy(sub.fits), us[rec], atol=1e-10, rtol=0)
    np.testing.assert_allclose(sub.times, lr * np.array(rec))


def test_gd_fraction_formula(problem, backend):
    """Fitted fraction is 1 - (1 - lr d)^k per direction (Dong et al. 2019, Sec. 3)."""
    lr, steps = 1.3 / problem["d_max"], 25
    s = spectrum(to_backend(problem["K"], backend))
    path = linearized_training(s, to_backend(problem["y_vec"], backend), lr=lr, steps=steps)
    d = np.sort(np.linalg.eigvalsh(problem["K"]))[::-1]
    k = np.arange(steps + 1)[:, None]
    np.testing.assert_allclose(to_numpy(path.fraction), 1 - (1 - lr * np.clip(d, 0, None)) ** k, atol=1e-12)


def test_anchored_equals_gd_with_scaled_step(problem, backend):
    s = spectrum(to_backend(problem["K"], backend))
    y = to_backend(problem["y_hot"], backend)
    lr, alpha = 1.2 / problem["d_max"], 0.35
    for continuous in (False, True):
        a = linearized_training(s, y, lr=lr, steps=60, targets="anchored", alpha=alpha, continuous=continuous)
        g = linearized_training(s, y, lr=lr * alpha, steps=60, continuous=continuous)
        np.testing.assert_allclose(to_numpy(a.fits), to_numpy(g.fits), atol=1e-12, rtol=0)


@pytest.mark.parametrize("alpha", [0.0, 0.6, 0.95])
def test_chained_fixed_point_is_krr(problem, backend, alpha):
    """Constant-alpha chained targets converge to KRR with ridge (1 - alpha)/lr."""
    K, Kc, y = problem["K"], problem["Kc"], problem["y_hot"]
    lr = 0.8 * (1 + alpha) / problem["d_max"]
    ridge = (1 - alpha) / lr
    krr = np.linalg.solve(K + ridge * np.eye(N), y)
    s = spectrum(to_backend(K, backend))
    path = linearized_training(
        s, to_backend(y, backend), lr=lr, steps=10**12, targets="chained", target_momentum=alpha, record=[0, 1000, 10**12]
    )
    assert path.limit_ridge == pytest.approx(ridge)
    np.testing.assert_allclose(to_numpy(path.fits)[-1], K @ krr, atol=1e-9)
    np.testing.assert_allclose(to_numpy(path.predict(to_backend(Kc, backend)))[-1], Kc @ krr, atol=1e-9)
    # the conserved quantity ((1 - alpha)/lr) c + target stays at V^T y
    q = ridge * to_numpy(path.coef) + to_numpy(path.target_filter)[:, :, None] * to_numpy(path.y_coef)[None]
    np.testing.assert_allclose(q, np.broadcast_to(to_numpy(path.y_coef), q.shape), atol=1e-9)
    # explicit iteration agrees with the limit too (a check on the derivation, not the code)
    us, _, _ = _dense_run(K, y, lr, 1500, "chained", alpha)
    np.testing.assert_allclose(us[-1], K @ krr, atol=1e-8)


def test_chained_bound_is_where_iteration_diverges(problem):
    """Above lr = (1 + alpha)/d_max the explicit chained recursion blows up: the bound is real."""
    K, y, alpha = problem["K"], problem["y_vec"], 0.3
    bound = max_stable_lr(spectrum(K), "chained", target_momentum=alpha)
    assert bound == pytest.approx((1 + alpha) / problem["d_max"])
    fine, _, _ = _dense_run(K, y, 0.97 * bound, 400, "chained", alpha)
    bad, _, _ = _dense_run(K, y, 1.03 * bound, 400, "chained", alpha)
    assert np.abs(fine[-1]).max() < 10 * np.abs(y).max()
    assert np.abs(bad[-1]).max() > 1e3
    with pytest.raises(ValueError, match=r"lr must be in \(0, \(1 \+ target_momentum\)/d_max\)"):
        linearized_training(spectrum(K), y, lr=1.03 * bound, steps=5, targets="chained", target_momentum=alpha)


def test_continuous_matches_expm(problem, backend):
    K, y = problem["K"], problem["y_hot"]
    s = spectrum(to_backend(K, backend))
    lr, alpha, rec = 0.01, 0.7, [0.0, 3.5, 120.0, 1000.0]
    t = lr * np.array(rec)
    gd = linearized_training(s, to_backend(y, backend), lr=lr, steps=1000, record=rec, continuous=True)
    ref = np.array([y - scipy.linalg.expm(-K * ti) @ y for ti in t])
    np.testing.assert_allclose(to_numpy(gd.fits), ref, atol=1e-10, rtol=0)
    # chained: d/dt [u; tau] = [[-K, K], [beta I, -beta I]] [u; tau], from (0, y)
    beta = (1 - alpha) / lr
    G = np.block([[-K, K], [beta * np.eye(N), -beta * np.eye(N)]])
    ch = linearized_training(
        s, to_backend(y, backend), lr=lr, steps=1000, targets="chained", target_momentum=alpha, record=rec, continuous=True
    )
    refs = np.array([scipy.linalg.expm(G * ti) @ np.vstack([np.zeros_like(y), y]) for ti in t])
    np.testing.assert_allclose(to_numpy(ch.fits), refs[:, :N], atol=1e-10, rtol=0)
    np.testing.assert_allclose(to_numpy(ch.targets), refs[:, N:], atol=1e-10, rtol=0)


def test_continuous_schedule_matches_piecewise_expm(problem, rng):
    K, y, lr, steps = problem["K"], problem["y_vec"], 0.05, 30
    alpha = rng.uniform(0.2, 1.0, size=steps)
    path = linearized_training(
        spectrum(K), y, lr=lr, steps=steps, targets="chained", target_momentum=alpha, record=[steps], continuous=True
    )
    state = np.concatenate([np.zeros(N), y])
    for a in alpha:
        beta = (1 - a) / lr
        state = scipy.linalg.expm(lr * np.block([[-K, K], [beta * np.eye(N), -beta * np.eye(N)]])) @ state
    np.testing.assert_allclose(path.fits[0], state[:N], atol=1e-10)


def test_continuous_matches_small_step_euler(problem):
    """Euler with step h = 1e-4 has O(h) error; 1e-3 relative is a safe stated tolerance."""
    K, y, alpha, T, h = problem["K"], problem["y_vec"], 0.5, 2.0, 1e-4
    lr = 0.01
    beta = (1 - alpha) / lr
    u, tau = np.zeros(N), y.copy()
    for _ in range(int(round(T / h))):
        u, tau = u - h * K @ (u - tau), tau + h * beta * (u - tau)
    path = linearized_training(
        spectrum(K), y, lr=lr, steps=int(T / lr), targets="chained", target_momentum=alpha, record=[T / lr], continuous=True
    )
    np.testing.assert_allclose(path.fits[0], u, rtol=0, atol=1e-3 * np.abs(u).max())


def test_limits_t0_and_large_t(problem, backend):
    K, Kc, y = problem["K"], problem["Kc"], problem["y_hot"]
    s = spectrum(to_backend(K, backend))
    lr, big = 1.0, 10**15
    gd = linearized_training(s, to_backend(y, backend), lr=lr, steps=big, record=[0, big], continuous=True)
    assert float(np.abs(to_numpy(gd.fits)[0]).max()) == 0.0
    assert float(np.abs(to_numpy(gd.predict(to_backend(Kc, backend)))[0]).max()) == 0.0
    np.testing.assert_allclose(to_numpy(gd.fits)[1], y, atol=1e-6)  # the interpolant (K is PD)
    np.testing.assert_allclose(to_numpy(gd.predict(to_backend(Kc, backend)))[1], Kc @ np.linalg.solve(K, y), atol=1e-4)
    ch = linearized_training(
        s, to_backend(y, backend), lr=lr, steps=big, targets="chained", target_momentum=0.9, record=[0, big], continuous=True
    )
    np.testing.assert_allclose(to_numpy(ch.fits)[1], K @ np.linalg.solve(K + 0.1 * np.eye(N), y), atol=1e-10)
    np.testing.assert_allclose(to_numpy(ch.targets)[0], y, atol=1e-12)


@pytest.mark.parametrize("continuous", [False, True])
@pytest.mark.parametrize("rule,alpha", [("gd", None), ("chained", 1.0), ("chained", 0.5)])
def test_zero_eigenvalue_is_finite_and_continuous(backend, rng, continuous, rule, alpha):
    """A null direction (d in {0, +1e-15, -1e-15}) gives finite, equal answers."""
    n = 6
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    y = rng.normal(size=n)
    Kc = rng.normal(size=(3, n)) @ Q[:, :5] @ Q[:, :5].T  # cross kernel orthogonal to the null direction
    outs = []
    for z in (0.0, 1e-15, -1e-15):
        vals = np.array([3.0, 2.0, 1.0, 0.5, 0.1, z])
        s = Spectrum(values=to_backend(vals, backend), vectors=to_backend(Q, backend), backend=backend)
        p = linearized_training(
            s, to_backend(y, backend), lr=0.3, steps=200, targets=rule, **weight_kw(rule, alpha), continuous=continuous
        )
        arrs = [to_numpy(p.fits), to_numpy(p.coef), to_numpy(p.predict(to_backend(Kc, backend))), to_numpy(p.fraction)]
        assert all(np.all(np.isfinite(a)) for a in arrs)
        outs.append(arrs)
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            np.testing.assert_allclose(a, b, atol=1e-11 * max(1.0, np.abs(a).max()), rtol=0)
    assert np.all(outs[0][3][:, -1] == 0.0)  # nothing fitted along the null direction
    if not continuous:  # and the z = 0 run equals explicit iteration with that dense K
        K = (Q * np.array([3.0, 2.0, 1.0, 0.5, 0.1, 0.0])) @ Q.T
        us, _, _ = _dense_run(K, y, 0.3, 200, rule, alpha)
        np.testing.assert_allclose(outs[0][0], us, atol=1e-10)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", sorted(CONSTRAINTS))
def test_every_param_bound_is_checked(problem, name):
    s = spectrum(problem["K"])
    kwargs = dict(lr=0.5 / problem["d_max"], steps=5)
    kwargs.update(dict(targets="anchored", alpha=0.5) if name == "alpha" else dict(targets="chained", target_momentum=0.5))
    kwargs[name] = CONSTRAINTS[name].invalid_example()
    with pytest.raises((ValueError, TypeError), match=name):
        linearized_training(s, problem["y_vec"], **kwargs)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(lr="bound"), ValueError, r"lr must be in \(0, 2/d_max\) = \(0, "),
        (dict(lr=0.0), ValueError, "lr"),
        (dict(lr=-1.0), ValueError, "lr"),
        (dict(lr="fast"), TypeError, "lr"),
        (dict(steps=0), ValueError, "steps"),
        (dict(steps=2.5), ValueError, "steps"),
        (dict(targets="anchored", alpha=1.5), ValueError, "alpha"),
        (dict(targets="chained", target_momentum=-0.1), ValueError, "target_momentum must be"),
        (dict(targets="chained", target_momentum=[0.5, 0.5]), ValueError, "target_momentum schedule must have length steps"),
        (dict(targets="chained", target_momentum=[0.5, 0.5, 1.2, 0.5, 0.5]), ValueError, "target_momentum"),
        (dict(targets="chained", target_momentum="half"), TypeError, "target_momentum"),
        (dict(targets="anchored", alpha=[0.5] * 5), ValueError, "alpha must be a scalar"),
        (dict(targets="chained"), ValueError, "target_momentum must be given"),
        (dict(targets="anchored"), ValueError, "alpha must be given"),
        (dict(alpha=0.5), ValueError, r"alpha is the weight on the ground truth .* targets='gd' does not use it"),
        (
            dict(targets="chained", alpha=0.5, target_momentum=0.5),
            ValueError,
            r"^linearized_training: alpha is the weight on the ground truth .*targets='chained' does not use it \(it takes target_momentum=\)",
        ),
        (
            dict(targets="anchored", alpha=0.5, target_momentum=0.5),
            ValueError,
            r"target_momentum is the weight on the previous target .*targets='anchored' does not use it \(it takes alpha=\)",
        ),
        (dict(targets="distill"), ValueError, "targets"),
        (dict(record=[0, 6]), ValueError, "record"),
        (dict(record=[1.5]), ValueError, "record"),
        (dict(continuous="yes"), TypeError, "continuous"),
    ],
)
def test_bad_input(problem, kwargs, exc, match):
    s = spectrum(problem["K"])
    base = dict(lr=0.5 / problem["d_max"], steps=5)
    base.update(kwargs)
    if base["lr"] == "bound":
        base["lr"] = max_stable_lr(s)  # exactly 2/d_max: rejected
    with pytest.raises(exc, match=match):
        linearized_training(s, problem["y_vec"], **base)


def test_bad_arrays(problem, backend):
    s = spectrum(to_backend(problem["K"], backend))
    lr = 0.5 / problem["d_max"]
    with pytest.raises(ValueError, match="y has 11 rows"):
        linearized_training(s, to_backend(problem["y_vec"][:-1], backend), lr=lr, steps=3)
    bad = problem["y_vec"].copy()
    bad[0] = np.nan
    with pytest.raises(ValueError, match="y contains NaN"):
        linearized_training(s, to_backend(bad, backend), lr=lr, steps=3)
    with pytest.raises(TypeError, match="spectrum must be a kernels.Spectrum"):
        linearized_training(problem["K"], problem["y_vec"], lr=lr, steps=3)
    path = linearized_training(s, to_backend(problem["y_vec"], backend), lr=lr, steps=3)
    with pytest.raises(ValueError, match="K_cross"):
        path.predict(to_backend(problem["Kc"][:, :-1], backend))
    with pytest.raises(ValueError, match="spectrum.values must be >= 0"):
        Q = np.eye(3)
        linearized_training(Spectrum(values=np.array([1.0, 0.5, -0.2]), vectors=Q), np.ones(3), lr=0.1, steps=2)
    assert math.isfinite(path.lr_bound) and path.lr_bound == pytest.approx(2 / problem["d_max"])
