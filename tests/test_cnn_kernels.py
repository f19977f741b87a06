"""Tests for kernels.cnn: the CNN-GP / CNTK kernels against independent references.

References: the fully connected ReLU kernels of kernels.relu (1x1 images, 1x1 convolutions;
and per-pixel averages for networks of 1x1 convolutions only), a slow loop over position
pairs written here in plain numpy (:func:`slow_kernels`), and Monte-Carlo averages over
finite torch CNNs written here exactly as the docstring states them. The slow loop also
has switches for plausible wrong recursions, which the Monte-Carlo check must reject.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import kernels.cnn as cnn_mod
from kernels.backend import backend_name, namespace, to_numpy
from kernels.cnn import PRESETS, cnn_architecture, cnn_nngp, cnn_ntk
from kernels.relu import nngp_relu, ntk_relu
from tests.conftest import to_backend

RTOL = 1e-12

# ============================================================================ slow reference


def slow_kernels(
    X: np.ndarray,
    layers: tuple[str, ...],
    bias: float = 0.0,
    *,
    divide_q: bool = True,
    add_beta2: bool = True,
    flatten_diagonal: bool = True,
    sigma_dot: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(NNGP, NTK) of all image pairs by explicit loops over position pairs, in float64.

    The switches give the wrong variants: no ``1/q`` in the convolution, no ``beta^2``,
    the flatten readout over all position pairs, Theta not multiplied by Sigma-dot.
    """
    X = np.asarray(X, dtype=np.float64)
    n, _, _, C = X.shape
    b2 = bias**2 if add_beta2 else 0.0
    pairs = list(itertools.product(range(n), repeat=2))
    S = {(i, j): np.einsum("yxc,uvc->yxuv", X[i], X[j]) / C for i, j in pairs}
    T = {k: np.zeros_like(v) for k, v in S.items()}
    for name in layers[:-1]:
        h, w = S[0, 0].shape[:2]
        grid = list(itertools.product(range(h), range(w), range(h), range(w)))
        if name in ("conv", "conv1"):
            r = 1 if name == "conv" else 0
            taps = list(itertools.product(range(-r, r + 1), repeat=2))
            q = len(taps) if divide_q else 1

            def conv(A, taps=taps, q=q, h=h, w=w, grid=grid):
                out = np.zeros_like(A)
                for y, x, u, v in grid:
                    s = 0.0
                    for dy, dx in taps:
                        if 0 <= y + dy < h and 0 <= x + dx < w and 0 <= u + dy < h and 0 <= v + dx < w:
                            s += A[y + dy, x + dx, u + dy, v + dx]
                    out[y, x, u, v] = s / q
                return out

            S = {k: conv(S[k]) + b2 for k in pairs}
            T = {k: conv(T[k]) + S[k] for k in pairs}
        elif name == "relu":
            newS, newT = {}, {}
            for i, j in pairs:
                K, D = np.empty((h, w, h, w)), np.empty((h, w, h, w))
                for y, x, u, v in grid:
                    a, b, c = S[i, i][y, x, y, x], S[j, j][u, v, u, v], S[i, j][y, x, u, v]
                    if a * b == 0:
                        K[y, x, u, v], D[y, x, u, v] = 0.0, 0.5
                        continue
                    rho = min(1.0, max(-1.0, c / math.sqrt(a * b)))
                    th = math.acos(rho)
                    K[y, x, u, v] = math.sqrt(a * b) * (math.sin(th) + (math.pi - th) * math.cos(th)) / math.pi
                    D[y, x, u, v] = (math.pi - th) / math.pi
                newS[i, j] = K
                newT[i, j] = T[i, j] * D if sigma_dot else T[i, j]
            S, T = newS, newT
        elif name == "pool":
            h2, w2 = h // 2, w // 2

            def pool(A, h2=h2, w2=w2):
                out = np.zeros((h2, w2, h2, w2))
                for y, x, u, v in itertools.product(range(h2), range(w2), range(h2), range(w2)):
                    block = [A[2 * y + a, 2 * x + b, 2 * u + c, 2 * v + d] for a, b, c, d in itertools.product((0, 1), repeat=4)]
                    out[y, x, u, v] = sum(block) / 16
                return out

            S = {k: pool(S[k]) for k in pairs}
            T = {k: pool(T[k]) for k in pairs}
        else:  # pragma: no cover
            raise AssertionError(name)
    nngp, ntk = np.empty((n, n)), np.empty((n, n))
    for i, j in pairs:
        h, w = S[i, j].shape[:2]
        if layers[-1] == "flatten" and flatten_diagonal:
            ms = np.mean([S[i, j][y, x, y, x] for y in range(h) for x in range(w)])
            mt = np.mean([T[i, j][y, x, y, x] for y in range(h) for x in range(w)])
        else:
            ms, mt = S[i, j].mean(), T[i, j].mean()
        nngp[i, j] = ms + b2
        ntk[i, j] = mt + nngp[i, j]
    return nngp, ntk


# ============================================================================ 1. fully connected limits


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("bias", [0.0, 0.5])
def test_one_pixel_is_the_fully_connected_net(depth, bias, rng):
    """1x1 images, 1x1 convolutions, flatten readout: exactly ntk_relu / nngp_relu on the C-vector."""
    X = rng.standard_normal((5, 1, 1, 4))
    X[2] = 0.0  # a zero image: 0 (or the bias terms), not NaN
    arch = ("conv1", "relu") * depth + ("flatten",)
    flat = X.reshape(5, 4)
    np.testing.assert_allclose(cnn_nngp(X, architecture=arch, bias=bias), nngp_relu(flat, depth=depth, bias=bias), rtol=RTOL)
    np.testing.assert_allclose(cnn_ntk(X, architecture=arch, bias=bias), ntk_relu(flat, depth=depth, bias=bias), rtol=RTOL)
    Z = rng.standard_normal((3, 1, 1, 4))
    np.testing.assert_allclose(
        cnn_ntk(X, Z, architecture=arch, bias=bias), ntk_relu(flat, Z.reshape(3, 4), depth=depth, bias=bias), rtol=RTOL
    )


@pytest.mark.parametrize("readout", ["flatten", "gap"])
def test_pointwise_network_is_a_mean_of_fully_connected_kernels(readout, rng):
    """Only 1x1 convolutions: position pairs never mix, so flatten = mean_p k(x[p], x'[p]) and
    gap = mean_{p, p'} k(x[p], x'[p']) with k the fully connected kernel of the pixel vectors."""
    n, m, H, W, C = 3, 2, 3, 2, 3
    X, Z = rng.standard_normal((n, H, W, C)), rng.standard_normal((m, H, W, C))
    arch = ("conv1", "relu", "conv1", "relu", readout)
    for ours, fc in ((cnn_nngp, nngp_relu), (cnn_ntk, ntk_relu)):
        Kp = fc(X.reshape(n * H * W, C), Z.reshape(m * H * W, C), depth=2, bias=0.4).reshape(n, H * W, m, H * W)
        want = np.einsum("ipjp->ijp", Kp).mean(-1) if readout == "flatten" else Kp.mean(axis=(1, 3))
        np.testing.assert_allclose(ours(X, Z, architecture=arch, bias=0.4), want, rtol=RTOL)


# ============================================================================ 3. slow reference

SLOW_CASES = [  # (architecture, image shape, bias)
    (("conv", "relu", "conv", "relu", "flatten"), (4, 5, 2), 0.0),
    (("conv", "relu", "conv1", "relu", "flatten"), (3, 3, 3), 0.7),
    (("conv", "relu", "conv", "relu", "gap"), (3, 4, 2), 0.5),
    (("conv", "relu", "pool", "conv", "relu", "flatten"), (4, 4, 2), 0.3),
    (("conv", "pool", "relu", "conv1", "relu", "pool", "gap"), (5, 5, 2), 0.6),  # odd maps: floor pooling
]


@pytest.mark.parametrize("arch, shape, bias", SLOW_CASES)
def test_equals_slow_loop_over_position_pairs(arch, shape, bias, rng):
    X = rng.standard_normal((3, *shape))
    X[1, :2] = 0.0  # a partly black image: zero variances at some positions
    nngp, ntk = slow_kernels(X, arch, bias)
    np.testing.assert_allclose(cnn_nngp(X, architecture=arch, bias=bias), nngp, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(cnn_ntk(X, architecture=arch, bias=bias), ntk, rtol=1e-11, atol=1e-14)


def test_diagonal_path_equals_all_pairs_path(rng, monkeypatch):
    """No pooling, flatten readout: the p = p' fast path equals the all-position-pairs path."""
    X, Z = rng.standard_normal((4, 5, 4, 3)), rng.standard_normal((3, 5, 4, 3))
    X[0] = 0.0
    arch = ("conv", "relu", "conv1", "relu", "conv", "relu", "flatten")
    assert not cnn_mod._all_pairs(arch)
    fast = [f(X, Z2, architecture=arch, bias=b) for f in (cnn_nngp, cnn_ntk) for Z2 in (None, Z) for b in (0.0, 0.5)]
    monkeypatch.setattr(cnn_mod, "_all_pairs", lambda layers: True)
    slow = [f(X, Z2, architecture=arch, bias=b) for f in (cnn_nngp, cnn_ntk) for Z2 in (None, Z) for b in (0.0, 0.5)]
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-15)


# ============================================================================ 2. Monte-Carlo: finite torch CNNs


def _torch_net(layers: tuple[str, ...], channels_in: int, width: int, size: tuple[int, int], gen, bias: float):
    """Parameters (all N(0, 1)) and ``f(params, x)`` for one image x (C, H, W), as in the docstring."""
    import torch
    import torch.nn.functional as F

    params, c, (h, w) = [], channels_in, size
    for name in layers:
        if name in ("conv", "conv1"):
            side = 3 if name == "conv" else 1
            params += [torch.randn(width, c, side, side, generator=gen), torch.randn(width, generator=gen)]
            c = width
        elif name == "pool":
            h, w = h // 2, w // 2
    d = c * h * w if layers[-1] == "flatten" else c
    params += [torch.randn(d, generator=gen), torch.randn((), generator=gen)]

    def features(params, x):
        """The last feature map, flattened, and the readout's weight scale (2 / fan-in)."""
        g, k, first = x[None], 0, True
        for name in layers[:-1]:
            if name in ("conv", "conv1"):
                Wt, b = params[k], params[k + 1]
                k += 2
                fan_in = Wt.shape[1] * Wt.shape[2] * Wt.shape[3]
                scale = math.sqrt((1.0 if first else 2.0) / fan_in)
                g = scale * F.conv2d(g, Wt, padding=Wt.shape[2] // 2) + bias * b[None, :, None, None]
                first = False
            elif name == "relu":
                g = torch.relu(g)
            else:
                g = F.avg_pool2d(g, 2)
        if layers[-1] == "flatten":
            v = g.reshape(-1)
            return v, 2.0 / v.shape[0]
        return g.mean(dim=(2, 3)).reshape(-1), 2.0 / g.shape[1]

    def f(params, x):
        v, s = features(params, x)
        return math.sqrt(s) * (v @ params[-2]) + bias * params[-1]

    return params, features, f


def _empirical_kernels(layers, X, bias, *, width, seeds):
    """Per seed: the NNGP given the hidden layers (readout weights integrated out exactly:
    E_w[f(x) f(x')] = s v(x).v(x') + beta^2, an unbiased, lower-variance estimate of
    E[f(x) f(x')]) and the empirical NTK sum_params grad f(x) . grad f(x'). Shape (seeds, n, n)."""
    import torch
    from torch.func import grad, vmap

    Xt = torch.from_numpy(np.ascontiguousarray(X.transpose(0, 3, 1, 2))).float()
    nngp, ntk = [], []
    for seed in range(seeds):
        gen = torch.Generator().manual_seed(1000 + seed)
        params, features, f = _torch_net(layers, X.shape[3], width, X.shape[1:3], gen, bias)
        with torch.no_grad():
            V = torch.stack([features(params, x)[0] for x in Xt]).double()
            s = features(params, Xt[0])[1]
        nngp.append((s * V @ V.T + bias**2).numpy())
        grads = vmap(grad(f), in_dims=(None, 0))(params, Xt)
        J = torch.cat([g.reshape(len(Xt), -1) for g in grads], dim=1).double()
        ntk.append((J @ J.T).numpy())
    return np.array(nngp), np.array(ntk)


def _max_z(samples: np.ndarray, K: np.ndarray) -> float:
    """Largest |mean - K| / standard error over the entries (upper triangle)."""
    mean = samples.mean(axis=0)
    se = samples.std(axis=0, ddof=1) / math.sqrt(samples.shape[0])
    iu = np.triu_indices(K.shape[0])
    return float(np.max(np.abs(mean - K)[iu] / se[iu]))


WRONG = {  # plausible wrong recursions, as switches of the slow loop
    "no 1/q": {"divide_q": False},
    "no beta^2": {"add_beta2": False},
    "flatten over all position pairs": {"flatten_diagonal": False},
    "no Sigma-dot": {"sigma_dot": False},
}
MC_CASES = [  # (architecture, image shape, the wrong variants that differ for it)
    (
        ("conv", "relu", "conv", "relu", "flatten"),
        (5, 5, 3),
        ("no 1/q", "no beta^2", "flatten over all position pairs", "no Sigma-dot"),
    ),
    (("conv", "relu", "pool", "conv", "relu", "gap"), (4, 4, 2), ("no 1/q", "no beta^2", "no Sigma-dot")),
    (("conv", "pool", "relu", "conv1", "relu", "pool", "flatten"), (6, 6, 3), ("no 1/q", "no beta^2", "no Sigma-dot")),
]


@pytest.mark.slow
@pytest.mark.parametrize("arch, shape, wrong", MC_CASES)
def test_monte_carlo_finite_cnns(arch, shape, wrong, rng):
    """Empirical NNGP / NTK of 512-channel torch CNNs agree with the kernels within 4 standard
    errors (each entry); every listed wrong recursion is off by more than that somewhere."""
    pytest.importorskip("torch")
    bias, z_max = 0.5, 4.0
    X = rng.standard_normal((4, *shape))
    emp_nngp, emp_ntk = _empirical_kernels(arch, X, bias, width=512, seeds=24)
    assert _max_z(emp_nngp, cnn_nngp(X, architecture=arch, bias=bias)) < z_max
    assert _max_z(emp_ntk, cnn_ntk(X, architecture=arch, bias=bias)) < z_max
    for name in wrong:
        bad_nngp, bad_ntk = slow_kernels(X, arch, bias, **WRONG[name])
        worst = _max_z(emp_ntk, bad_ntk)
        if name != "no Sigma-dot":  # the NNGP does not involve Sigma-dot
            worst = min(worst, _max_z(emp_nngp, bad_nngp))
        assert worst > z_max, f"the wrong variant {name!r} passes the Monte-Carlo check"


# ============================================================================ 4. properties


@pytest.mark.parametrize("arch", ["cntk-2", "cntk-gap-2", ("conv", "relu", "pool", "conv", "relu", "flatten")])
def test_symmetric_psd_and_blocks(arch, rng):
    X, Z = rng.standard_normal((5, 6, 6, 2)), rng.standard_normal((3, 6, 6, 2))
    for fn in (cnn_nngp, cnn_ntk):
        K = fn(X, architecture=arch, bias=0.3)
        assert np.array_equal(K, K.T)
        assert np.linalg.eigvalsh(K).min() >= -1e-12 * np.abs(K).max()
        full = fn(np.concatenate([X, Z]), architecture=arch, bias=0.3)
        np.testing.assert_allclose(fn(X, Z, architecture=arch, bias=0.3), full[:5, 5:], rtol=1e-12)
        np.testing.assert_allclose(K, full[:5, :5], rtol=1e-12)
        tiny = fn(X, architecture=arch, bias=0.3, memory_budget=1)  # one image pair per block
        assert np.array_equal(tiny, tiny.T)
        np.testing.assert_allclose(tiny, K, rtol=1e-12)
        np.testing.assert_allclose(fn(X, Z, architecture=arch, bias=0.3, memory_budget=1), full[:5, 5:], rtol=1e-12)


def test_backends_dtype_and_device(backend, rng):
    """Same values in every namespace (numpy, torch, array_api_strict on a fake device); float32 on request."""
    X, Z = rng.standard_normal((4, 4, 4, 2)), rng.standard_normal((2, 4, 4, 2))
    Xb, Zb = to_backend(X, backend), to_backend(Z, backend)
    for arch in ("cntk-2", ("conv", "relu", "pool", "conv", "relu", "gap")):
        for fn in (cnn_nngp, cnn_ntk):
            want = fn(X, Z, architecture=arch, bias=0.2)
            got = fn(Xb, Zb, architecture=arch, bias=0.2)
            assert backend_name(namespace(got)) == backend_name(namespace(Xb))
            np.testing.assert_allclose(to_numpy(got), want, rtol=1e-12)
            K32 = fn(Xb, architecture=arch, bias=0.2, dtype="float32")
            assert "float32" in str(K32.dtype)
            K32n = to_numpy(K32)
            assert np.array_equal(K32n, K32n.T)
            np.testing.assert_allclose(K32n, fn(X, architecture=arch, bias=0.2), rtol=1e-5)


def test_torch_in_torch_out(rng):
    torch = pytest.importorskip("torch")
    X = torch.from_numpy(rng.standard_normal((3, 4, 4, 2)))
    K = cnn_ntk(X, architecture="cntk-gap-1")
    assert isinstance(K, torch.Tensor) and K.dtype == torch.float64 and K.shape == (3, 3)
    assert cnn_ntk(X.float(), architecture="cntk-gap-1").dtype == torch.float32


@pytest.mark.parametrize("arch", ["cntk-2", "cntk-gap-2", ("conv", "relu", "pool", "conv", "relu", "pool", "gap")])
def test_invariant_under_flips_of_both_images(arch, rng):
    """Zero-padded 3x3 convolutions, 2x2 pooling of even maps, flatten and gap all commute with
    flipping (and, for square images, transposing) the image plane, so flipping *both* images
    the same way leaves every position-pair sum unchanged up to its order: equal to round-off."""
    X, Z = rng.standard_normal((3, 4, 4, 2)), rng.standard_normal((2, 4, 4, 2))
    for fn in (cnn_nngp, cnn_ntk):
        K = fn(X, Z, architecture=arch, bias=0.4)
        for op in (lambda A: A[:, :, ::-1], lambda A: A[:, ::-1], lambda A: A.transpose(0, 2, 1, 3)):
            np.testing.assert_allclose(fn(op(X), op(Z), architecture=arch, bias=0.4), K, rtol=1e-12)


def test_invariant_under_channel_rotation_and_homogeneous(rng):
    """The input enters only through x[p] . x'[p'] (rotating the channels of both images changes
    nothing); with beta = 0 the ReLU net is positively homogeneous: K(a x, b x') = a b K(x, x')."""
    X, Z = rng.standard_normal((3, 4, 4, 3)), rng.standard_normal((2, 4, 4, 3))
    Q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    for fn in (cnn_nngp, cnn_ntk):
        for arch in ("cntk-2", "cntk-gap-1"):
            K = fn(X, Z, architecture=arch, bias=0.3)
            np.testing.assert_allclose(fn(X @ Q, Z @ Q, architecture=arch, bias=0.3), K, rtol=1e-12)
            K0 = fn(X, Z, architecture=arch)
            np.testing.assert_allclose(fn(2.0 * X, 0.5 * Z, architecture=arch), K0, rtol=1e-12)
            np.testing.assert_allclose(fn(3.0 * X, Z, architecture=arch), 3.0 * K0, rtol=1e-12)


@pytest.mark.parametrize("arch", ["cntk-gap-2", "cntk-2"])
def test_translation_invariance_away_from_the_border(arch, rng):
    """With beta = 0, positions whose receptive field holds no content have zero variance and add
    0; a patch that stays more than L pixels from the border never sees the zero padding, so
    translating it (in both images) gives the same multiset of terms: equal to round-off."""
    X = np.zeros((2, 9, 9, 2))
    X[:, 3:6, 3:6] = rng.standard_normal((2, 3, 3, 2))
    Y = np.roll(X, (-1, 1), axis=(1, 2))  # the patch moves to rows 2..4, columns 4..6
    for fn in (cnn_nngp, cnn_ntk):
        np.testing.assert_allclose(fn(Y, architecture=arch), fn(X, architecture=arch), rtol=1e-12)


def test_presets():
    assert cnn_architecture("cntk-3") == ("conv", "relu") * 3 + ("flatten",)
    assert cnn_architecture("cntk-gap-1") == ("conv", "relu", "gap")
    assert cnn_architecture("myrtle-5") == (
        *("conv", "relu", "conv", "relu", "pool", "conv", "relu", "pool", "conv", "relu"),
        *("pool", "pool", "pool", "flatten"),
    )
    for name, depth in (("myrtle-5", 5), ("myrtle-7", 7), ("myrtle-10", 10)):  # conv layers + the dense readout
        assert sum(layer == "conv" for layer in PRESETS[name]) + 1 == depth
    for name in PRESETS:  # each preset passes the grammar of a hand-written layer list
        assert cnn_architecture(name) == cnn_architecture(list(PRESETS[name])) == PRESETS[name]
    with pytest.raises(ValueError, match=r"^cnn_architecture: architecture\[1\] must be one of"):
        cnn_architecture(["conv", "maxpool", "relu", "gap"])


@pytest.mark.slow
def test_myrtle_and_fastnet_run_on_32x32(rng):
    """The presets run on 32x32 images; Myrtle's last three pools of the 8x8 map equal a gap readout."""
    X = rng.standard_normal((2, 32, 32, 3))
    K5 = cnn_ntk(X, architecture="myrtle-5", bias=0.1)
    as_gap = cnn_ntk(X, architecture=PRESETS["myrtle-5"][:-4] + ("gap",), bias=0.1)
    np.testing.assert_allclose(K5, as_gap, rtol=1e-12)
    K = cnn_nngp(X, architecture="fastnet")
    assert np.array_equal(K, K.T) and np.all(np.linalg.eigvalsh(K) > 0)


# ============================================================================ 5. bad input

BAD = [
    ({"X": np.ones((2, 4, 4))}, "cnn_ntk: X must be 4-D"),
    ({"architecture": ("conv", "relu", "dense")}, "architecture[2] must be one of"),
    ({"architecture": ("conv", "relu")}, "architecture must end with a readout"),
    ({"architecture": ("relu", "conv", "relu", "gap")}, "architecture must start with a convolution"),
    ({"architecture": ("conv", "conv", "relu", "gap")}, "architecture[1] = 'conv' needs a 'relu'"),
    ({"architecture": ("conv", "relu", "relu", "gap")}, "architecture[2] = 'relu' follows another 'relu'"),
    ({"architecture": ("conv", "relu", "gap", "flatten")}, "architecture[2] = 'gap': the readout must be the last layer"),
    ({"architecture": ("conv", "relu") + ("pool",) * 3 + ("gap",)}, "architecture[4] = 'pool' would pool a 1x1 map"),
    ({"architecture": "myrtle-5"}, "architecture[10] = 'pool' would pool a 1x1 map"),
    ({"architecture": "resnet"}, "architecture must be a preset"),
    ({"architecture": "cntk-0"}, "architecture must be a preset"),
    ({"architecture": []}, "architecture must not be empty"),
    ({"bias": -1.0}, "bias must be"),
    ({"Z": np.ones((2, 4, 5, 2))}, "Z's images have shape"),
    ({"X": np.full((2, 4, 4, 2), np.nan)}, "X contains NaN"),
]


@pytest.mark.parametrize("kwargs, message", BAD)
def test_bad_input_one_line_value_error(kwargs, message):
    args = {"X": np.ones((2, 4, 4, 2)), "Z": None, "architecture": "cntk-1", **kwargs}
    with pytest.raises(ValueError) as err:
        cnn_ntk(args.pop("X"), args.pop("Z"), **args)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_architecture_type():
    with pytest.raises(TypeError, match="cnn_nngp: architecture must be"):
        cnn_nngp(np.ones((1, 2, 2, 1)), architecture=3)


def test_linearized_training_on_the_cnn_kernel_is_gradient_descent_on_it(rng):
    """The CNN kernel feeds theory.linearized_training like any kernel: its recorded fits equal
    explicit function-space GD u <- u - lr K (u - y) on the CNN's NTK, and its test outputs K_cross-based GD."""
    from kernels import spectrum
    from theory import linearized_training

    X, Xt = rng.standard_normal((10, 6, 6, 2)), rng.standard_normal((4, 6, 6, 2))
    y = rng.standard_normal(10)
    K = cnn_ntk(X, architecture="cntk-gap-2", bias=0.3)
    Kt = cnn_ntk(Xt, X, architecture="cntk-gap-2", bias=0.3)
    lr = 1.0 / float(np.linalg.eigvalsh(K)[-1])
    path = linearized_training(spectrum(K), y, lr=lr, steps=25, record=[0, 7, 25])
    u, c = np.zeros(10), np.zeros(10)  # training outputs and dual coefficients (u = K c)
    fits = {0: (u.copy(), Kt @ c)}
    for step in range(1, 26):
        c = c - lr * (u - y)
        u = K @ c
        if step in (7, 25):
            fits[step] = (u.copy(), Kt @ c)
    preds = path.predict(Kt)
    for i, step in enumerate((0, 7, 25)):
        np.testing.assert_allclose(path.fits[i], fits[step][0], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(preds[i], fits[step][1], rtol=1e-9, atol=1e-12)


def test_a_bias_whose_variance_overflows_is_refused(rng):
    """(convolutions + 1) * bias^2 must stay below sqrt(max float), since the ReLU step multiplies two
    variances: bias 1e77 (4e154 > 1.34e154) is refused, 5e76 (1e154) computes finite kernels."""
    X = rng.standard_normal((2, 4, 4, 1))
    with pytest.raises(ValueError, match=r"bias must be a float in \[0, 5.79e\+76\] for 3 convolutions"):
        cnn_ntk(X, architecture="cntk-3", bias=1e77)
    for f in (cnn_ntk, cnn_nngp):
        assert np.all(np.isfinite(f(X, architecture="cntk-3", bias=5e76)))


@pytest.mark.parametrize("architecture", ["cntk-2", "cntk-gap-1"])
def test_column_chunks_over_threads_are_bit_identical(architecture, monkeypatch):
    """numpy splits each row block's columns over threads: with 3 workers (chunks after the first,
    the diagonal at an offset inside them) the Gram equals the one-thread Gram bit for bit."""
    r = np.random.default_rng(3)
    X, Z = r.normal(size=(7, 4, 4, 2)), r.normal(size=(5, 4, 4, 2))
    budget = 2_000_000  # several row blocks, so the diagonal also sits in blocks below the first
    grams = {}
    for workers in (3, 1):
        monkeypatch.setattr(cnn_mod, "cpu_workers", lambda limit=None, w=workers: w)
        grams[workers] = [cnn_ntk(X, Zarg, architecture=architecture, memory_budget=budget) for Zarg in (None, Z)]
    for threaded, single in zip(grams[3], grams[1]):
        np.testing.assert_array_equal(threaded, single)
    np.testing.assert_array_equal(grams[3][0], grams[3][0].T)
