"""Tests for kernels.functions: Gram matrices against independent references.

References: scikit-learn's pairwise kernels, scipy's cdist, a scalar loop over pairs,
Monte-Carlo averages over random finite ReLU networks (backprop written here in
numpy) and over random first-layer weights (two-layer NTK).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist
from sklearn.metrics import pairwise

from kernels.backend import backend_name, namespace, to_numpy
from kernels.checks import iter_blocks
from kernels.functions import (
    KERNELS,
    exponential,
    gram,
    kernel_params,
    laplace,
    laplacian,
    linear,
    polynomial,
    rbf,
)
from kernels.gram_fill import CONSTRAINTS
from kernels.relu import nngp_relu, ntk_relu, ntk_two_layer
from tests.conftest import to_backend

KERNEL_CASES = [  # (name, params) covering every kernel and a few parameter values
    ("linear", {}),
    ("polynomial", {}),
    ("polynomial", {"degree": 2, "gamma": 0.7, "coef0": 0.0}),
    ("rbf", {}),
    ("rbf", {"gamma": 0.3}),
    ("laplace", {}),
    ("laplacian", {"gamma": 0.2}),
    ("exponential", {"gamma": 0.5}),
    ("nngp_relu", {"depth": 2, "bias": 0.5}),
    ("ntk_relu", {}),
    ("ntk_relu", {"depth": 3, "bias": 0.3}),
    ("ntk_two_layer", {}),
]
_EXP_FAMILY = {"rbf", "laplace", "laplacian", "exponential"}


def _data(name: str, rng: np.random.Generator, n: int, d: int, scale: float = 1.0) -> np.ndarray:
    X = scale * rng.standard_normal((n, d))
    if name == "ntk_two_layer":
        X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X


# ----------------------------------------------------------------------------- vs scikit-learn / scipy


@pytest.mark.parametrize("gamma", [None, 0.05, 1.3])
def test_distance_kernels_match_sklearn_and_cdist(rng, gamma):
    X, Z = rng.standard_normal((9, 4)) + 3.0, rng.standard_normal((6, 4))
    g = 1 / 4 if gamma is None else gamma
    cases = [
        (rbf, lambda A, B: pairwise.rbf_kernel(A, B, gamma=gamma)),
        (laplace, lambda A, B: pairwise.laplacian_kernel(A, B, gamma=gamma)),
        (exponential, lambda A, B: np.exp(-g * cdist(A, B, "euclidean"))),
    ]
    for f, ref in cases:
        np.testing.assert_allclose(f(X, Z, gamma=gamma), ref(X, Z), rtol=0, atol=1e-10)
        np.testing.assert_allclose(f(X, gamma=gamma), ref(X, X), rtol=0, atol=1e-10)
        np.testing.assert_array_equal(np.diag(f(X, gamma=gamma)), 1.0)
    # the two "Laplace" kernels differ (L1 vs L2 distance): naming matters
    assert np.abs(laplace(X, Z, gamma=g) - exponential(X, Z, gamma=g)).max() > 1e-2
    assert laplacian is laplace


@pytest.mark.parametrize("params", [{}, {"degree": 1, "gamma": 2.0, "coef0": 0.0}, {"degree": 4, "gamma": 0.3, "coef0": 2.5}])
def test_dot_product_kernels_match_sklearn(rng, params):
    X, Z = rng.standard_normal((8, 5)), rng.standard_normal((7, 5))
    np.testing.assert_allclose(polynomial(X, Z, **params), pairwise.polynomial_kernel(X, Z, **params), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(polynomial(X, **params), pairwise.polynomial_kernel(X, **params), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(linear(X, Z), pairwise.linear_kernel(X, Z), rtol=0, atol=1e-10)
    np.testing.assert_allclose(linear(X), pairwise.linear_kernel(X), rtol=0, atol=1e-10)


# ----------------------------------------------------------------------------- backends, dtypes, symmetry


def _reference64(name: str, X: np.ndarray, Z: np.ndarray | None, params: dict) -> np.ndarray:
    return to_numpy(gram(X.astype(np.float64), None if Z is None else Z.astype(np.float64), kernel=name, **params))


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    case=st.sampled_from(KERNEL_CASES),
    n=st.integers(1, 7),
    m=st.integers(1, 6),
    d=st.integers(1, 5),
    scale=st.sampled_from([0.05, 1.0, 8.0]),
    dtype=st.sampled_from(["float32", "float64"]),
    seed=st.integers(0, 2**16),
)
def test_backends_dtypes_symmetry_psd(backend, case, n, m, d, scale, dtype, seed):
    name, params = case
    r = np.random.default_rng(seed)
    X = _data(name, r, n, d, scale).astype(dtype)
    Z = _data(name, r, m, d, scale).astype(dtype)
    Xb, Zb = to_backend(X, backend), to_backend(Z, backend)
    f32 = dtype == "float32"
    # the kernel's own scale: max |k| over X and Z together (bounds |k(x, z)| for PSD kernels)
    scale = max(np.abs(_reference64(name, np.vstack([X, Z]), None, params)).max(), 1e-300)
    relu = name.startswith(("ntk", "nngp"))  # arccos near rho = +-1 (e.g. d = 1): ~sqrt(eps) accurate
    for Zarg, Znp in ((Zb, Z), (None, None)):
        K = gram(Xb, Zarg, kernel=name, **params)
        assert backend_name(namespace(K)) == backend
        Kn = to_numpy(K)
        assert Kn.dtype == np.dtype(dtype) and Kn.shape == (n, n if Zarg is None else m)
        ref = _reference64(name, X, Znp, params)  # same (rounded) inputs, computed in float64
        if name in _EXP_FAMILY:  # values in [0, 1]: absolute tolerance from the rounding bounds
            eps, g = float(np.finfo(X.dtype).eps), params.get("gamma", 1 / d)
            A = np.vstack([X, Z]).astype(np.float64)
            r2 = 2 * np.max(np.sum((A - X.mean(axis=0)) ** 2, axis=1))  # >= |x|^2 + |z|^2 after the mean shift
            atol = 16 * eps * (1 + d)  # exp and L1 sums: eps * d * t * exp(-t) <= eps * d
            if name == "rbf":  # cancellation in |x|^2 + |z|^2 - 2 x.z
                atol += 4 * g * eps * r2
            elif name == "exponential":  # ... amplified by sqrt near D = 0
                atol += g * math.sqrt(4 * eps * r2)
        else:  # relative to the largest entry
            rel = (2e-3 if relu else 2e-4) if f32 else (1e-7 if relu else 1e-12)
            atol = rel * scale
        np.testing.assert_allclose(Kn, ref, rtol=0, atol=atol)
        if Zarg is None:
            np.testing.assert_array_equal(Kn, Kn.T)  # exactly symmetric
            w = np.linalg.eigvalsh(Kn.astype(np.float64))
            psd_tol = (2e-3 if relu else 1e-4) if f32 else (1e-7 if relu else 1e-10)
            assert w.min() >= -psd_tol * max(np.abs(w).max(), 1e-300)


def test_dtype_and_input_conversion(backend):
    X = [[1, 2], [3, 4], [0, 1]]  # ints in a list -> numpy float64
    K = rbf(X)
    assert isinstance(K, np.ndarray) and K.dtype == np.float64
    Xb = to_backend(np.asarray(X, dtype=np.float64), backend)
    K32 = rbf(Xb, dtype="float32")
    assert backend_name(namespace(K32)) == backend and to_numpy(K32).dtype == np.float32
    xp = namespace(Xb)
    K64 = ntk_relu(xp.astype(Xb, xp.float32), dtype=xp.float64)
    assert to_numpy(K64).dtype == np.float64
    # Z as a list follows X's backend; a float64 Z is cast to X's float32
    Kz = linear(xp.astype(Xb, xp.float32), [[1.0, 0.0]])
    assert backend_name(namespace(Kz)) == backend and to_numpy(Kz).dtype == np.float32
    np.testing.assert_allclose(to_numpy(Kz)[:, 0], [1, 3, 0])
    # Z is X takes the exactly symmetric path
    Xr = np.random.default_rng(1).standard_normal((6, 3))
    Ks = ntk_relu(Xr, Xr, depth=2)
    np.testing.assert_array_equal(Ks, Ks.T)


# ----------------------------------------------------------------------------- blocking


@pytest.mark.parametrize("case", KERNEL_CASES, ids=[f"{c[0]}{i}" for i, c in enumerate(KERNEL_CASES)])
def test_tiny_memory_budget_gives_same_gram(backend, case):
    name, params = case
    r = np.random.default_rng(3)
    X, Z = to_backend(_data(name, r, 23, 4), backend), to_backend(_data(name, r, 11, 4), backend)
    for Zarg in (Z, None):
        full = to_numpy(gram(X, Zarg, kernel=name, **params))
        itemsize = 8
        # budget=1: one row (and, for laplace, one column) per block; 1500 bytes: a few rows per block
        for budget in (1, 1500, 40 * 11 * itemsize):
            Kb = to_numpy(gram(X, Zarg, kernel=name, memory_budget=budget, **params))
            np.testing.assert_allclose(Kb, full, rtol=1e-13, atol=1e-13 * np.abs(full).max())
            if Zarg is None:
                np.testing.assert_array_equal(Kb, Kb.T)
                if name in _EXP_FAMILY:
                    np.testing.assert_array_equal(np.diag(Kb), 1.0)


# ----------------------------------------------------------------------------- ReLU NTK / NNGP


def _loop_reference(x, z, depth, beta, *, ntk, sdot_scale=1.0, layer_bias=True):
    """Scalar transcription of the recursion in docs/derivations.md, section 2.3, for one pair (math.*, no numpy)."""
    d, b2 = len(x), beta**2
    sxx = sum(a * a for a in x) / d + b2
    szz = sum(a * a for a in z) / d + b2
    sxz = sum(a * c for a, c in zip(x, z)) / d + b2
    theta_ntk = sxz
    for _ in range(depth):
        norm = math.sqrt(sxx * szz)
        rho = min(1.0, max(-1.0, sxz / norm)) if norm > 0 else 0.0
        t = math.acos(rho)
        bb = b2 if layer_bias else 0.0
        sxz = norm * (math.sin(t) + (math.pi - t) * math.cos(t)) / math.pi + bb
        theta_ntk = theta_ntk * sdot_scale * (math.pi - t) / math.pi + sxz
        sxx = math.sqrt(sxx * sxx) * (math.sin(0) + math.pi * math.cos(0)) / math.pi + bb
        szz = math.sqrt(szz * szz) * (math.sin(0) + math.pi * math.cos(0)) / math.pi + bb
    return theta_ntk if ntk else sxz


def _loop_gram(X, Z, depth, beta, **kw):
    return np.array([[_loop_reference(list(x), list(z), depth, beta, **kw) for z in Z] for x in X])


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_relu_kernels_match_scalar_loop(rng, depth, beta):
    X = rng.standard_normal((6, 3))
    X[1] = 0.0  # zero-norm input: no NaN, zero row when beta = 0
    X[2] = -2.0 * X[0]  # antiparallel pair (theta = pi)
    X[3] = X[0] + 1e-9  # near-duplicate pair (rho ~ 1)
    Z = np.vstack([rng.standard_normal((3, 3)), X[:2]])
    for f, is_ntk in ((ntk_relu, True), (nngp_relu, False)):
        for Zarg, Zref in ((Z, Z), (None, X)):
            K = f(X, Zarg, depth=depth, bias=beta)
            assert np.all(np.isfinite(K))
            ref = _loop_gram(X, Zref, depth, beta, ntk=is_ntk)
            # atol: arccos near rho = -1 (the antiparallel pair) is conditioned like sqrt(eps)
            np.testing.assert_allclose(K, ref, rtol=1e-7, atol=1e-7 * np.abs(ref).max())
    if beta == 0.0:
        assert np.all(ntk_relu(X, Z, depth=depth)[1] == 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_kernels_threaded_recursion_is_bit_identical(rng, monkeypatch, dtype):
    """numpy Grams large enough to split their elementwise recursion over threads give the same bits as one thread.

    600 x 600 blocks hold more than the threading threshold (2^18 elements), so the tiles, the
    diagonal mask shifted into each tile and the reassembly are all exercised.
    """
    import kernels.relu as kf

    X = rng.standard_normal((600, 7)).astype(dtype)
    X[5] = 0.0
    X[9] = -X[3]
    Z = rng.standard_normal((700, 7)).astype(dtype)
    for f in (ntk_relu, nngp_relu):
        for Zarg in (None, Z):
            monkeypatch.setattr(kf, "cpu_workers", lambda limit=None: 3)
            threaded = f(X, Zarg, depth=3, bias=0.4)
            monkeypatch.setattr(kf, "cpu_workers", lambda limit=None: 1)
            single = f(X, Zarg, depth=3, bias=0.4)
            assert threaded.dtype == dtype and np.array_equal(threaded, single)
            if Zarg is None:
                np.testing.assert_array_equal(threaded, threaded.T)


def _relu_net_mc(X, depths, betas, width, seeds, seed0=1000):
    """Monte-Carlo NTK and NNGP of finite ReLU nets in the documented parameterisation.

    h^1 = W^1 x / sqrt(d) + beta b^1, h^{l+1} = sqrt(2/m) W^{l+1} relu(h^l) + beta b^{l+1},
    f = h^{L+1}; every W, b ~ N(0, 1). Per seed one set of hidden weights serves every
    depth (the depth-L net uses W^1..W^L, b^1..b^L and its own readout) and every beta.
    The empirical NTK sums grad_p f(x) grad_p f(x') over all parameters, with the
    gradients from backprop. The NNGP E[f(x) f(x')] averages the readout (v, b_out)
    exactly -- E_v[f f'] = (2/m) relu(h^L).relu(h^L') + beta^2 -- and the hidden
    weights by Monte Carlo. Returns {(kind, L, beta): (n_seeds, N, N) samples}.
    """
    N, d = X.shape
    m, c, Lmax = width, math.sqrt(2.0 / width), max(depths)
    nb = len(betas)
    bcol = np.repeat(np.asarray(betas, dtype=np.float32), N)  # beta of each of the N*nb columns
    out = {(k, L, b): [] for k in ("ntk", "nngp") for L in depths for b in betas}

    def blocks(G):  # per-beta diagonal N x N blocks of an (N nb, N nb) matrix
        return [G[j * N : (j + 1) * N, j * N : (j + 1) * N] for j in range(nb)]

    X32 = np.tile(X.T.astype(np.float32), (1, nb))  # (d, N nb)
    for seed in range(seeds):
        r = np.random.default_rng(seed0 + seed)
        W = [r.standard_normal((m, d), dtype=np.float32)] + [r.standard_normal((m, m), dtype=np.float32) for _ in range(Lmax - 1)]
        bias = [r.standard_normal((m, 1), dtype=np.float32) for _ in range(Lmax)]
        v = {L: r.standard_normal((m, 1), dtype=np.float32) for L in depths}
        acts, hs = [X32], []  # acts[l] = input of layer l+1
        h = W[0] @ X32 / np.float32(math.sqrt(d)) + bias[0] * bcol
        for layer in range(1, Lmax + 1):
            hs.append(h)
            acts.append(np.maximum(h, 0))
            if layer < Lmax:
                h = np.float32(c) * (W[layer] @ acts[layer]) + bias[layer] * bcol
        ntk = {}
        for L in depths:  # readout layer: grad_v = c relu(h^L), grad_bout = beta
            G = [g.astype(np.float64) for g in blocks(c * c * (acts[L].T @ acts[L]))]
            for j, b in enumerate(betas):
                out[("nngp", L, b)].append(G[j] + b * b)
            ntk[L] = [G[j] + b * b for j, b in enumerate(betas)]
        deltas = {}  # depth L -> d f / d h^l at the current layer l, shape (m, N nb)
        for layer in range(Lmax, 0, -1):
            if layer in depths:
                deltas[layer] = np.float32(c) * v[layer] * (hs[layer - 1] > 0)
            s2 = 1.0 / d if layer == 1 else c * c
            A = blocks((acts[layer - 1].T @ acts[layer - 1]).astype(np.float64))
            for L, D in deltas.items():
                DD = blocks((D.T @ D).astype(np.float64))
                for j, b in enumerate(betas):  # grad_W = s delta a^T, grad_b = beta delta
                    ntk[L][j] += s2 * DD[j] * A[j] + b * b * DD[j]
            if layer > 1 and deltas:
                keys = list(deltas)
                D = np.float32(c) * (W[layer - 1].T @ np.hstack([deltas[k] for k in keys]))
                mask = np.tile(hs[layer - 2] > 0, (1, len(keys)))
                for i, (k, part) in enumerate(zip(keys, np.hsplit(D * mask, len(keys)))):
                    deltas[k] = part
        for L in depths:
            for j, b in enumerate(betas):
                out[("ntk", L, b)].append(ntk[L][j])
    return {k: np.stack(v) for k, v in out.items()}


_MC_DEPTHS, _MC_BETAS, _MC_WIDTH, _MC_SEEDS = (1, 2, 3), (0.0, 0.5), 2048, 24


@pytest.fixture(scope="module")
def relu_mc():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((5, 6))
    X[1] = X[0] + 0.15 * rng.standard_normal(6)  # near-parallel pair
    X[2] *= 2.0  # a different norm
    X[3] = -0.7 * X[0] + 0.1 * rng.standard_normal(6)  # nearly antiparallel
    return X, _relu_net_mc(X, _MC_DEPTHS, _MC_BETAS, _MC_WIDTH, _MC_SEEDS)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ntk", "nngp"])
@pytest.mark.parametrize("beta", _MC_BETAS)
@pytest.mark.parametrize("depth", _MC_DEPTHS)
def test_relu_kernels_match_finite_network_monte_carlo(relu_mc, kind, depth, beta):
    X, samples = relu_mc
    S = samples[(kind, depth, beta)]
    mean, se = S.mean(axis=0), S.std(axis=0, ddof=1) / math.sqrt(S.shape[0])
    f = ntk_relu if kind == "ntk" else nngp_relu
    K = f(X, depth=depth, bias=beta)
    scale = np.abs(K).max()
    # per entry: 4 standard errors of the MC mean, plus 0.5% for the O(1/width) finite-width bias
    tol = 4 * se + 5e-3 * scale
    assert se.max() < 0.03 * scale  # the MC estimate resolves the kernel to a few percent
    assert np.all(np.abs(mean - K) <= tol), (np.abs(mean - K) / tol).max()
    # power: plausible wrong formulas fall outside the same tolerance
    wrong = [f(X, depth=depth + 1, bias=beta)]
    if kind == "ntk":
        wrong.append(f(X, depth=depth - 1, bias=beta) if depth > 1 else _loop_gram(X, X, 1, beta, ntk=False))
        wrong.append(_loop_gram(X, X, depth, beta, ntk=True, sdot_scale=0.5))  # Sigma-dot without c_sigma = 2
    if beta > 0:
        wrong.append(_loop_gram(X, X, depth, beta, ntk=kind == "ntk", layer_bias=False))  # bias only in layer 1
    for Kw in wrong:
        assert np.any(np.abs(mean - Kw) > tol)


def test_ntk_two_layer_matches_monte_carlo_expectation():
    rng = np.random.default_rng(11)
    X = rng.standard_normal((6, 5))
    X[1] = X[0] + 0.05 * rng.standard_normal(5)
    X[2] = -X[0]
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    n_w = 200_000
    w = rng.standard_normal((n_w, 5))
    act = (w @ X.T >= 0).astype(np.float64)  # (n_w, N): 1{w.x_i >= 0}
    p = act.T @ act / n_w  # P(w.x_i >= 0, w.x_j >= 0)
    G = X @ X.T
    mc = G * p
    se = np.abs(G) * np.sqrt(p * (1 - p) / n_w)
    H = ntk_two_layer(X)
    tol = 4 * se + 1e-7  # 1e-7: arccos at the antiparallel pair is conditioned like sqrt(eps)
    assert np.all(np.abs(H - mc) <= tol)
    np.testing.assert_allclose(np.diag(H), 0.5, rtol=1e-12)
    # power: the wrong sign of arccos, or a missing factor 1/2, is far outside
    for Hw in (G * (math.pi + np.arccos(np.clip(G, -1, 1))) / (2 * math.pi), 2 * H, G / 2):
        assert np.any(np.abs(Hw - mc) > tol)
    # X vs Z path and the closed form in the notation of docs/derivations.md, section 3
    Z = X[:3] * 1.0
    np.testing.assert_allclose(
        ntk_two_layer(X, Z), (G * (math.pi - np.arccos(np.clip(G, -1, 1))) / (2 * math.pi))[:, :3], atol=1e-12
    )


# ----------------------------------------------------------------------------- dispatch and bad input


def test_registry_and_kernel_params():
    # the registry names exactly the kernels KERNEL_CASES covers (each of them, no other)
    assert set(KERNELS) == {name for name, _ in KERNEL_CASES}
    assert kernel_params("rbf") == ("gamma",)
    assert kernel_params("ntk_relu") == ("depth", "bias")
    assert kernel_params("ntk_two_layer") == ()
    X = np.random.default_rng(0).standard_normal((4, 3))
    np.testing.assert_array_equal(gram(X, kernel="polynomial", degree=2), polynomial(X, degree=2))
    np.testing.assert_array_equal(gram(X), rbf(X))  # default kernel


def test_bad_arrays_raise_naming_the_argument(backend):
    X = to_backend(np.ones((4, 3)), backend)
    with pytest.raises(ValueError, match="X must be 2-D"):
        rbf(to_backend(np.ones(4), backend))
    with pytest.raises(ValueError, match="Z has 2 features"):
        linear(X, to_backend(np.ones((2, 2)), backend))
    bad = np.ones((4, 3))
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        ntk_relu(to_backend(bad, backend))
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match="Z contains NaN"):
        laplace(X, to_backend(bad, backend))
    with pytest.raises(ValueError, match="rows of X must have unit Euclidean norm.*normalise"):
        ntk_two_layer(X)
    unit = to_backend(np.eye(3), backend)
    with pytest.raises(ValueError, match="rows of Z must have unit"):
        ntk_two_layer(unit, X)
    if backend == "torch":
        with pytest.raises(TypeError, match="share one array backend"):
            rbf(X, np.ones((2, 3)))


def test_bad_parameters_raise_naming_the_parameter():
    X = np.ones((3, 2))
    with pytest.raises(ValueError, match="gamma"):
        rbf(X, gamma=0.0)
    with pytest.raises(ValueError, match="gamma"):
        exponential(X, gamma=-1.0)
    with pytest.raises(TypeError, match="gamma"):
        laplace(X, gamma="big")
    with pytest.raises(ValueError, match="depth"):
        ntk_relu(X, depth=0)
    with pytest.raises(ValueError, match="depth"):
        nngp_relu(X, depth=2.0)
    with pytest.raises(TypeError, match="bias"):
        nngp_relu(X, bias=None)
    with pytest.raises(ValueError, match="kernel must be one of.*'rbf'.*'ntk_two_layer'"):
        gram(X, kernel="gaussian")
    with pytest.raises(ValueError, match="kernel must be one of"):
        kernel_params("nope")
    with pytest.raises(TypeError, match="sigma"):
        gram(X, kernel="rbf", sigma=1.0)
    with pytest.raises(TypeError, match="degree"):
        gram(X, kernel="rbf", degree=2)
    with pytest.raises(ValueError, match="dtype"):
        rbf(X, dtype=np.int64)


def _kernel_accepting(param: str) -> str:
    if param in ("dtype", "memory_budget"):
        return "rbf"
    return next(name for name in KERNELS if param in kernel_params(name))


@pytest.mark.parametrize("param", sorted(CONSTRAINTS))
def test_every_constraint_rejects_its_invalid_example(param):
    bad = CONSTRAINTS[param].invalid_example()
    with pytest.raises((ValueError, TypeError), match=param):
        gram(np.ones((3, 2)), kernel=_kernel_accepting(param), **{param: bad})


def test_row_blocks_follow_the_memory_budget(monkeypatch):
    import kernels.gram_fill as kf

    seen = []

    def recording(n, block):
        seen.append(block)
        return iter_blocks(n, block)

    monkeypatch.setattr(kf, "iter_blocks", recording)
    X, Z = np.ones((10, 3)), np.ones((7, 3))
    rbf(X, Z, memory_budget=3 * 4 * 7 * 8)  # rbf: 4 scratch arrays of 7 float64 per row -> 3 rows
    ntk_relu(X, memory_budget=1)  # at least one row per block
    assert seen == [3, 1]
