"""deep.ntk: empirical NTK against closed forms, the autograd loop and the infinite-width limit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from deep.models import NTKMLP
from deep.ntk import NTK_MODES, empirical_ntk, empirical_ntk_loop

F64 = torch.float64


def _linear(d: int, C: int, seed: int = 0) -> nn.Linear:
    lin = nn.Linear(d, C)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # known init: any values, the NTK of a linear model does not depend on them
        lin.weight.copy_(torch.randn(C, d, generator=g))
        lin.bias.copy_(torch.randn(C, generator=g))
    return lin


def _small_cnn() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 5, 3),
        nn.GELU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(20, 3),
    )
    with torch.no_grad():  # non-trivial BatchNorm running statistics
        net(torch.randn(16, 3, 8, 8) * 2 + 1)
    return net


def _two_per_block(net: nn.Module, mode: str, C: int = 3) -> int:
    """A memory budget that makes empirical_ntk use blocks of 2 examples (float64 Jacobians)."""
    per_example = sum(p.numel() for p in net.parameters()) * (1 if mode == "sum" else C) * 8
    return 4 * per_example + 1


@pytest.mark.parametrize("C", [1, 3])
@pytest.mark.parametrize("mode", NTK_MODES)
def test_linear_model_closed_form(mode, C):
    rng = np.random.default_rng(0)
    X, Z = rng.normal(size=(5, 4)), rng.normal(size=(3, 4))
    lin = _linear(4, C)
    gram = {"sym": X @ X.T + 1, "cross": X @ Z.T + 1}  # d(w.x + b)/d(w, b) = (x, 1)
    for key, X2 in (("sym", None), ("cross", torch.from_numpy(Z))):
        K = empirical_ntk(lin, torch.from_numpy(X), X2, mode=mode, dtype=F64).numpy()
        G = gram[key]
        if mode == "sum":  # sum_{c,d} Theta_cd = C (x.x' + 1): each logit has its own (w_c, b_c)
            np.testing.assert_allclose(K, C * G, rtol=1e-12)
        elif mode == "trace":
            np.testing.assert_allclose(K, G, rtol=1e-12)
        else:
            np.testing.assert_allclose(K, G[:, :, None, None] * np.eye(C), rtol=1e-12, atol=1e-12)
    # only the weight: x.x' (no +1); numpy input accepted
    K = empirical_ntk(lin, X, mode="trace", params=["weight"], dtype=F64).numpy()
    np.testing.assert_allclose(K, X @ X.T, rtol=1e-12)


@pytest.mark.parametrize("mode", NTK_MODES)
def test_matches_loop_on_small_cnn(mode):
    net = _small_cnn()
    g = torch.Generator().manual_seed(1)
    X, Z = torch.randn(5, 3, 8, 8, generator=g), torch.randn(3, 3, 8, 8, generator=g)
    for X2 in (None, Z):
        ref = empirical_ntk_loop(net, X, X2, mode=mode, dtype=F64)
        for budget in (2**30, _two_per_block(net, mode)):  # one block / blocks of 2 examples
            K = empirical_ntk(net, X, X2, mode=mode, dtype=F64, memory_budget=budget)
            assert K.dtype == F64 and K.shape == ref.shape
            torch.testing.assert_close(K, ref, rtol=1e-5, atol=1e-8)
    assert net.training  # mode restored


@pytest.mark.parametrize("mode", NTK_MODES)
def test_matches_loop_on_mlp(mode):
    torch.manual_seed(2)
    net = NTKMLP(6, width=16, depth=2, bias=0.3, out_features=3)
    g = torch.Generator().manual_seed(3)
    X, Z = torch.randn(4, 6, generator=g), torch.randn(2, 6, generator=g)
    for X2 in (None, Z):
        ref = empirical_ntk_loop(net, X, X2, mode=mode, dtype=F64)
        K = empirical_ntk(net, X, X2, mode=mode, dtype=F64, memory_budget=_two_per_block(net, mode))
        torch.testing.assert_close(K, ref, rtol=1e-5, atol=1e-8)


def test_modes_consistent_and_finite_differences():
    net = _small_cnn()
    X = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    full = empirical_ntk(net, X, mode="full", dtype=F64)
    torch.testing.assert_close(empirical_ntk(net, X, mode="sum", dtype=F64), full.sum((2, 3)))
    torch.testing.assert_close(empirical_ntk(net, X, mode="trace", dtype=F64), torch.diagonal(full, dim1=2, dim2=3).mean(-1))
    # first-order check: f(p + eps v) - f(p) ~ eps J v, and J v = Theta(x, x0) for v = J(x0)^T (sum mode)
    params = {k: p.detach().double() for k, p in net.named_parameters()}
    buffers = {k: b.double() if b.is_floating_point() else b for k, b in net.named_buffers()}
    net.eval()
    f = lambda p: torch.func.functional_call(net, {**p, **buffers}, (X.double(),)).sum(1)  # noqa: E731
    v = torch.func.grad(lambda p: f(p)[0])(params)
    eps = 1e-6
    df = (f({k: params[k] + eps * v[k] for k in params}) - f({k: params[k] - eps * v[k] for k in params})) / (2 * eps)
    net.train()
    torch.testing.assert_close(df, empirical_ntk(net, X, mode="sum", dtype=F64)[:, 0], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("mode", NTK_MODES)
def test_symmetric_psd(mode):
    net = _small_cnn()
    X = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    K = empirical_ntk(net, X, mode=mode, memory_budget=_two_per_block(net, mode), dtype=F64)
    n = X.shape[0]
    M = K if mode != "full" else K.permute(0, 2, 1, 3).reshape(n * 3, n * 3)
    assert torch.equal(M, M.T)
    w = torch.linalg.eigvalsh(M)
    assert float(w.min()) >= -1e-10 * float(w.max())


def test_float32_default_and_eval_state_untouched():
    net = _small_cnn()
    before = {k: b.clone() for k, b in net.named_buffers()}
    X = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    K = empirical_ntk(net, X)
    assert K.dtype == torch.float32 and net.training
    assert all(torch.equal(b, before[k]) for k, b in net.named_buffers())
    torch.testing.assert_close(K.double(), empirical_ntk(net, X, dtype=F64), rtol=1e-4, atol=1e-5)


def test_params_mapping_supplies_values():
    torch.manual_seed(7)
    a, b = NTKMLP(5, width=8, out_features=2), NTKMLP(5, width=8, out_features=2)
    X = torch.randn(3, 5)
    K = empirical_ntk(a, X, params=dict(b.named_parameters()), dtype=F64)
    torch.testing.assert_close(K, empirical_ntk(b, X, dtype=F64))
    assert not torch.allclose(K, empirical_ntk(a, X, dtype=F64))


# ------------------------------------------------------------------ infinite width


@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("bias", [0.0, 0.5])
def test_wide_mlp_ntk_approaches_ntk_relu(depth, bias):
    """Mean over 16 seeds of the empirical NTK of a width-2048 NTKMLP vs kernels.ntk_relu.

    Tolerance: 5 Monte-Carlo standard errors + a 2/width relative allowance for the
    O(1/width) finite-width bias (depth 2; depth 1 is unbiased).
    """
    from kernels.functions import ntk_relu

    width, seeds = 2048, 16
    X = torch.randn(4, 5, generator=torch.Generator().manual_seed(11))
    net = NTKMLP(5, width=width, depth=depth, bias=bias, out_features=1)  # float32: MC error >> round-off
    samples = []
    for s in range(seeds):
        net.reset_parameters(torch.Generator().manual_seed(100 + s))
        samples.append(empirical_ntk(net, X, mode="sum").numpy())
    samples = np.stack(samples).astype(np.float64)
    mean, se = samples.mean(0), samples.std(0, ddof=1) / np.sqrt(seeds)
    limit = np.asarray(ntk_relu(X.double().numpy(), depth=depth, bias=bias))
    np.testing.assert_allclose(np.asarray(net.ntk(X.double().numpy())), limit)
    iu = np.triu_indices(4)
    err = np.abs(mean - limit)[iu]
    tol = 5 * se[iu] + 2 / width * np.abs(limit).max()
    assert np.all(err <= tol), (err, tol)
    assert np.all(se[iu] < 0.05 * np.abs(limit).max())  # the test has power: SE is a few % at most


def test_wide_mlp_output_covariance_approaches_nngp_relu():
    """E[f_c(x) f_c(x')] over seeds and outputs -> kernels.nngp_relu (depth 2, bias 0.5)."""
    from kernels.functions import nngp_relu

    X = torch.randn(4, 5, generator=torch.Generator().manual_seed(12))
    net = NTKMLP(5, width=512, depth=2, bias=0.5, out_features=64)
    per_seed = []
    with torch.no_grad():
        for s in range(48):
            net.reset_parameters(torch.Generator().manual_seed(200 + s))
            f = net(X)  # (4, 64): outputs are i.i.d. given the hidden layers
            per_seed.append((f.double() @ f.double().T / f.shape[1]).numpy())
    per_seed = np.stack(per_seed)
    mean, se = per_seed.mean(0), per_seed.std(0, ddof=1) / np.sqrt(len(per_seed))
    limit = np.asarray(nngp_relu(X.double().numpy(), depth=2, bias=0.5))
    err, tol = np.abs(mean - limit), 5 * se + 2 / 512 * np.abs(limit).max()
    assert np.all(err <= tol), (err, tol)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("fn", [empirical_ntk, empirical_ntk_loop])
def test_bad_input(fn):
    lin = _linear(3, 2)
    X = torch.randn(4, 3)
    with pytest.raises(ValueError, match="mode"):
        fn(lin, X, mode="diag")
    with pytest.raises(TypeError, match="model"):
        fn(lambda x: x, X)
    bad = X.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="X1"):
        fn(lin, bad)
    with pytest.raises(ValueError, match="X2"):
        fn(lin, X, torch.randn(2, 4))
    with pytest.raises(ValueError, match="X1"):
        fn(lin, torch.randn(3))
    with pytest.raises(TypeError, match="dtype"):
        fn(lin, X, dtype=torch.int32)
    with pytest.raises(ValueError, match="params"):
        fn(lin, X, params=["nope"])
    with pytest.raises(ValueError, match="params"):
        fn(lin, X, params={"weight": torch.zeros(5)})
    with pytest.raises(TypeError, match="params"):
        fn(lin, X, params=3)


@pytest.mark.parametrize("budget", [0, -5, 2.5])
def test_bad_memory_budget(budget):
    with pytest.raises((ValueError, TypeError), match="memory_budget"):
        empirical_ntk(_linear(3, 1), torch.randn(2, 3), memory_budget=budget)


# ------------------------------------------------------------------ NTKMLP fast path


@pytest.mark.parametrize("mode", ["sum", "trace"])
@pytest.mark.parametrize("bias", [0.0, 0.5])
@pytest.mark.parametrize("depth", [1, 2])
def test_mlp_fast_path_matches_loop_and_generic(depth, bias, mode):
    """empirical_ntk's closed-form NTKMLP path (params=None) == the autograd loop == the generic torch.func path."""
    torch.manual_seed(8)
    net = NTKMLP(6, width=12, depth=depth, bias=bias, out_features=3)
    names = [k for k, _ in net.named_parameters()]  # an explicit list forces the generic path
    g = torch.Generator().manual_seed(9)
    X, Z = torch.randn(5, 6, generator=g), torch.randn(3, 6, generator=g)
    for X2 in (None, Z):
        K = empirical_ntk(net, X, X2, mode=mode, dtype=F64)
        ref = empirical_ntk_loop(net, X, X2, mode=mode, dtype=F64)
        gen = empirical_ntk(net, X, X2, mode=mode, dtype=F64, params=names)
        assert K.dtype == F64 and K.shape == ref.shape
        torch.testing.assert_close(K, ref, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(K, gen, rtol=1e-10, atol=1e-10)
        if X2 is None:
            assert torch.equal(K, K.T)
    assert net.training
