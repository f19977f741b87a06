"""Each kernel's docstring states its accuracy; these tests pin those statements.

The references are independent of floating-point round-off: the same closed forms
evaluated in 50-digit arithmetic (mpmath), or float64 where the claim is about float32.
A statement that is too optimistic fails here; so does one that is far too loose
(each test also checks that the stated error is reached somewhere, so the boundary
is where the docstring says).
"""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest

from kernels.functions import rbf
from kernels.relu import nngp_relu, ntk_relu, ntk_two_layer

EPS = {"float64": float(np.finfo(np.float64).eps), "float32": float(np.finfo(np.float32).eps)}


def _relu_reference(x: np.ndarray, z: np.ndarray, depth: int, beta: float, ntk: bool) -> tuple[float, float]:
    """(kernel value, first-layer angle theta_0) of the ReLU NNGP/NTK recursion in 50 digits."""
    with mp.workdps(50):
        x = [mp.mpf(float(v)) for v in x]
        z = [mp.mpf(float(v)) for v in z]
        d = len(x)
        b2 = mp.mpf(float(beta)) ** 2
        sxz = mp.fsum(a * b for a, b in zip(x, z)) / d + b2
        sxx = mp.fsum(a * a for a in x) / d + b2
        szz = mp.fsum(a * a for a in z) / d + b2
        theta0 = mp.acos(max(min(sxz / mp.sqrt(sxx * szz), mp.mpf(1)), mp.mpf(-1)))
        ntk_value = sxz
        for _ in range(depth):
            th = mp.acos(max(min(sxz / mp.sqrt(sxx * szz), mp.mpf(1)), mp.mpf(-1)))
            new = mp.sqrt(sxx * szz) * (mp.sin(th) + (mp.pi - th) * mp.cos(th)) / mp.pi + b2
            ntk_value = ntk_value * (mp.pi - th) / mp.pi + new
            sxx, szz, sxz = sxx + b2, szz + b2, new
        return float(ntk_value if ntk else sxz), float(theta0)


def _pair_at_angle(rng: np.random.Generator, d: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=d) * rng.uniform(0.1, 10)
    u = rng.normal(size=d)
    u -= (u @ x) / (x @ x) * x
    u /= np.linalg.norm(u)
    z = (math.cos(angle) * x + math.sin(angle) * np.linalg.norm(x) * u) * rng.uniform(0.5, 2)
    return x, z


def relu_bound(eps: float, theta0: float) -> float:
    """The docstring's statement: relative error <= 10 min(eps / theta_0, sqrt(eps))."""
    return 10 * min(eps / max(theta0, 1e-300), math.sqrt(eps))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("func,ntk", [(ntk_relu, True), (nngp_relu, False)], ids=["ntk", "nngp"])
def test_relu_kernels_meet_their_stated_accuracy(func, ntk, dtype):
    rng = np.random.default_rng(7)
    eps = EPS[dtype]
    worst = 0.0
    for _ in range(40):
        angle = 10 ** rng.uniform(-9, math.log10(3.0))
        depth = int(rng.integers(1, 11))
        beta = float(rng.choice([0.0, 0.3, 1.0]))
        x, z = _pair_at_angle(rng, int(rng.integers(2, 8)), angle)
        ref, theta0 = _relu_reference(x, z, depth, beta, ntk)
        got = float(func(x[None], z[None], depth=depth, bias=beta, dtype=dtype)[0, 0])
        err = abs(got - ref) / abs(ref)
        assert err <= relu_bound(eps, theta0), (angle, depth, beta, err, relu_bound(eps, theta0))
        worst = max(worst, err / relu_bound(eps, theta0))
    assert worst > 0.005, "the stated bound is far looser than any error seen: tighten the docstring"


def test_relu_kernel_near_parallel_error_is_sqrt_eps_not_eps():
    """The boundary: at theta_0 ~ 1e-8 float64 loses about sqrt(eps) (the arccos slope), as stated."""
    rng = np.random.default_rng(3)
    errs = []
    for _ in range(6):
        x, z = _pair_at_angle(rng, 4, 1e-8)
        ref, _ = _relu_reference(x, z, 3, 0.0, True)
        errs.append(abs(float(ntk_relu(x[None], z[None], depth=3)[0, 0]) - ref) / ref)
    assert max(errs) > 100 * EPS["float64"]  # a claim of round-off accuracy here would be false


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_two_layer_ntk_meets_its_stated_accuracy(dtype):
    rng = np.random.default_rng(11)
    eps = EPS[dtype]
    for _ in range(30):
        angle = 10 ** rng.uniform(-9, math.log10(3.0))
        x, z = _pair_at_angle(rng, 5, angle)
        x, z = x / np.linalg.norm(x), z / np.linalg.norm(z)
        with mp.workdps(50):
            c = mp.fsum(mp.mpf(float(a)) * mp.mpf(float(b)) for a, b in zip(x, z))
            c = max(min(c, mp.mpf(1)), mp.mpf(-1))
            ref = float(c * (mp.pi - mp.acos(c)) / (2 * mp.pi))
            theta = float(mp.acos(c))
        got = float(ntk_two_layer(x[None].astype(dtype), z[None].astype(dtype))[0, 0])
        # float32 inputs are rounded before the kernel sees them: that perturbs the angle by ~eps too
        assert abs(got - ref) <= relu_bound(eps, theta) * max(abs(ref), 1e-300) + 4 * eps, (angle, got, ref)


def test_rbf_float32_distance_error_is_as_stated():
    """rbf's Notes: float32 loses about eps32 (|x - m|^2 + |z - m|^2) of the squared distance (m = mean of X)."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(40, 8)) * 3 + 50.0  # far from the origin: the mean shift must remove the 50
    gamma = 0.01
    K32 = rbf(X.astype(np.float32), gamma=gamma).astype(np.float64)
    X32 = X.astype(np.float32).astype(np.float64)  # compare against the same rounded inputs
    D = ((X32[:, None, :] - X32[None, :, :]) ** 2).sum(-1)
    K64 = np.exp(-gamma * D)
    s = ((X32 - X32.mean(0)) ** 2).sum(1)
    stated = 10 * EPS["float32"] * gamma * (s[:, None] + s[None, :]) * K64 + 4 * EPS["float32"]
    assert np.all(np.abs(K32 - K64) <= stated)
    assert np.max(np.abs(K32 - K64) / stated) > 0.01, "the stated bound is far looser than any error seen"


def _iterate_fitted_fraction(d: float, lr: float, steps: list[int], rule: str, alpha: float | None) -> list[float]:
    """d * c_k by the explicit step-by-step recursion from (c, tau) = (0, 1), in 40 digits."""
    with mp.workdps(40):
        dm, lrm = mp.mpf(float(d)), mp.mpf(float(lr))
        a = None if alpha is None else mp.mpf(float(alpha))
        c, tau, out = mp.mpf(0), mp.mpf(1), {}
        for k in range(1, max(steps) + 1):
            u = dm * c
            if rule == "chained":
                c, tau = (1 - lrm * dm) * c + lrm * tau, a * tau + (1 - a) * u
            else:
                target = 1 if rule == "gd" else a + (1 - a) * u
                c = c + lrm * (target - u)
            out[k] = float(dm * c)
        return [out[k] for k in steps]


def test_linearized_training_meets_its_stated_accuracy():
    from kernels import spectrum
    from theory.dynamics import linearized_training, max_stable_lr

    x = np.random.default_rng(0).normal(size=(8, 2))
    s = spectrum(rbf(x, gamma=0.7))
    d = np.asarray(s.values)
    steps = [1, 10, 100, 1000]
    worst = 0.0
    for rule, alpha in (("gd", None), ("anchored", 0.6), ("chained", 0.7)):
        for frac in (0.5, 0.95):
            weight = {"gd": {}, "anchored": {"alpha": alpha}, "chained": {"target_momentum": alpha}}[rule]
            lr = frac * max_stable_lr(s, rule, **weight)
            path = linearized_training(s, np.ones(8), lr=lr, steps=1000, targets=rule, record=steps, **weight)
            got = np.asarray(path.dual_filter) * d[None, :]
            ref = np.array([_iterate_fitted_fraction(di, lr, steps, rule, alpha) for di in d]).T
            err = float(np.max(np.abs(got - ref)))
            assert err <= 1e-13, (rule, frac, err)
            worst = max(worst, err)
    assert worst > 1e-15, "the stated 1e-13 is far looser than any error seen"
