"""deep.models: shapes, parameter counts, backward, Shake-Shake mixing, NTKMLP formula, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deep.models import MODELS, NTKMLP, FastNet, count_parameters, make_model, shake

X32 = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def nets():
    return {name: make_model(name, seed=0) for name in MODELS}


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_shape_and_backward(nets, name):
    net = nets[name]
    net.train()
    out = net(X32)
    assert out.shape == (2, 10) and out.dtype == torch.float32
    loss = torch.nn.functional.cross_entropy(out, torch.tensor([1, 7]))
    net.zero_grad()
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert grads and all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    net.eval()
    assert net(X32).shape == (2, 10)


def test_num_classes():
    assert make_model("resnet18", num_classes=7)(X32).shape == (2, 7)
    assert make_model("mlp", num_classes=3, width=16)(X32).shape == (2, 3)


@pytest.mark.parametrize("name, published", [("resnet18", 11.17e6), ("shakeshake26", 2.92e6)])
def test_parameter_counts(nets, name, published):
    assert abs(count_parameters(nets[name]) - published) / published < 0.05


def test_fastnet_size_and_frozen_bn_scale(nets):
    net = nets["fastnet"]
    assert 1.0e6 < count_parameters(net) < 2.5e6
    frozen = count_parameters(net) - count_parameters(net, trainable_only=True)
    assert frozen == sum(m.weight.numel() for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_shakeshake_stochastic_in_train_deterministic_in_eval(nets):
    net = nets["shakeshake26"]
    net.eval()
    a, b = net(X32), net(X32)
    assert torch.equal(a, b)
    net.train()
    a, b = net(X32), net(X32)
    assert not torch.allclose(a, b)
    net.eval()


def test_shake_forward_alpha_backward_beta():
    g = torch.Generator().manual_seed(1)
    x1 = torch.randn(6, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    x2 = torch.randn(6, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    out = shake(x1, x2, training=True)
    out.sum().backward()
    alpha = ((out - x2) / (x1 - x2)).detach()  # forward coefficient, one per image
    beta = x1.grad
    assert torch.allclose(alpha, alpha[:, :1, :1, :1].expand_as(alpha))
    assert torch.allclose(beta, beta[:, :1, :1, :1].expand_as(beta))
    assert torch.allclose(x1.grad + x2.grad, torch.ones_like(beta))
    assert bool(((alpha >= 0) & (alpha <= 1)).all()) and bool(((beta >= 0) & (beta <= 1)).all())
    assert not torch.allclose(alpha, beta)  # independent draws
    assert len(torch.unique(alpha[:, 0, 0, 0])) == 6  # per image
    x1.grad = x2.grad = None
    out = shake(x1, x2, training=True, backward=False)
    out.sum().backward()
    assert torch.allclose(((out - x2) / (x1 - x2)).detach(), x1.grad)
    out = shake(x1, x2, training=True, forward=False)
    assert torch.allclose(out, 0.5 * (x1 + x2))
    assert torch.allclose(shake(x1, x2, training=False), 0.5 * (x1 + x2))


def test_ntkmlp_matches_numpy_formula():
    d, m, L, beta, C = 7, 13, 2, 0.5, 3
    net = NTKMLP(d, width=m, depth=L, bias=beta, out_features=C).double()
    X = np.random.default_rng(0).normal(size=(4, d))
    W = [w.detach().numpy() for w in net.weights]
    b = [v.detach().numpy() for v in net.biases]
    assert [w.shape for w in W] == [(m, d), (m, m), (C, m)]
    h = X @ W[0].T / np.sqrt(d) + beta * b[0]
    for w, v in zip(W[1:], b[1:]):
        h = np.sqrt(2 / m) * np.maximum(h, 0) @ w.T + beta * v
    out = net(torch.from_numpy(X)).detach().numpy()
    np.testing.assert_allclose(out, h, rtol=1e-12, atol=1e-12)


def test_ntkmlp_init_is_standard_normal():
    net = NTKMLP(150, width=400, depth=1, out_features=10)
    w = net.weights[1].detach().double()
    assert abs(float(w.mean())) < 5 / math.sqrt(w.numel())
    assert abs(float(w.std()) - 1) < 5 / math.sqrt(2 * w.numel())
    assert net(X32[:, :, :5, :10].reshape(2, -1)).shape == (2, 10)
    assert make_model("mlp", width=8)(X32).shape == (2, 10)  # flattens images (d = 3072)


def test_seed_reproducible_and_global_rng_untouched():
    state = torch.random.get_rng_state()
    a, b = make_model("mlp", width=8, seed=3), make_model("mlp", width=8, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c = make_model("mlp", width=8, seed=4)
    assert not torch.equal(a.weights[0], c.weights[0])


def test_channels_last_float64_and_autocast():
    net = make_model("fastnet", seed=0).eval()
    ref = net(X32)
    cl = make_model("fastnet", seed=0, channels_last=True).eval()
    out = cl(X32.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    net64 = make_model("fastnet", seed=0, dtype=torch.float64).eval()
    assert net64(X32.double()).dtype == torch.float64
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = net(X32)
    assert low.shape == (2, 10) and bool(torch.isfinite(low).all())


def test_fastnet_whitening_init():
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(3, 3, generator=g)
    images = torch.einsum("ij,njhw->nihw", mix, torch.randn(64, 3, 32, 32, generator=g))
    net = FastNet()
    net.init_whitening(images, eps=1e-8)
    assert not net.stem.weight.requires_grad
    with torch.no_grad():
        z = torch.nn.functional.conv2d(images, net.stem.weight[:12])
    z = z.permute(1, 0, 2, 3).reshape(12, -1).double()
    cov = z @ z.T / z.shape[1]
    torch.testing.assert_close(cov, torch.eye(12, dtype=torch.float64), atol=2e-3, rtol=0)
    torch.testing.assert_close(net.stem.weight[12:], -net.stem.weight[:12])


def test_bad_names_and_options():
    with pytest.raises(ValueError, match="name must be one of.*fastnet.*resnet18.*shakeshake26.*mlp"):
        make_model("vgg")
    with pytest.raises(TypeError, match="depthh"):
        make_model("mlp", depthh=2)
    with pytest.raises(TypeError, match="width"):
        make_model("resnet18", width=2)
    with pytest.raises(ValueError, match="num_classes"):
        make_model("fastnet", num_classes=0)
    with pytest.raises(ValueError, match="seed"):
        make_model("fastnet", seed=-1)
    with pytest.raises(TypeError, match="dtype"):
        make_model("fastnet", dtype=torch.int64)
    with pytest.raises(ValueError, match="widths"):
        make_model("fastnet", widths=(64, 0, 256))
    with pytest.raises(ValueError, match="base_width"):
        make_model("shakeshake26", base_width=1)
    with pytest.raises(ValueError, match="shake_forward"):
        make_model("shakeshake26", shake_forward="yes")


@pytest.mark.parametrize("option, value", [("width", 0), ("depth", 0), ("bias", -0.5), ("in_features", 0), ("width", 2.5)])
def test_ntkmlp_bad_options(option, value):
    kwargs = {"in_features": 4, option: value}
    with pytest.raises((ValueError, TypeError), match=option):
        NTKMLP(**kwargs)


def test_ntkmlp_wrong_input_size():
    with pytest.raises(ValueError, match="in_features"):
        NTKMLP(5, width=4)(torch.zeros(2, 6))
