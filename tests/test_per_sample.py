"""deep.per_sample and empirical_ntk(method="layers"): batched per-example gradients vs the autograd loop."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from deep import per_sample
from deep.models import NTKMLP, make_model
from deep.ntk import NTK_MODES, _split_params, empirical_ntk, empirical_ntk_loop, ntk_method

F64 = torch.float64


def _settle_bn(net: nn.Module, X: torch.Tensor) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics, then return the net in eval mode."""
    net.train()
    with torch.no_grad():
        for _ in range(2):
            net(X * 1.5 + 0.3)
    return net.eval()


class _Zoo(nn.Module):
    """Every layer setting the formulas cover: strides, dilation, 'same' padding with an even
    kernel, no-bias convs, BatchNorm1d/2d, a Linear on 3-d input, a layer called twice
    (shared weights) and an in-place op right after a layer."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.c2 = nn.Conv2d(4, 4, 2, padding="same", bias=False)
        self.c3 = nn.Conv2d(4, 5, 3, dilation=2, padding="valid")
        self.tok = nn.Linear(5, 6)
        self.bn1 = nn.BatchNorm1d(6)
        self.shared = nn.Linear(6, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c1(x).relu_()  # in-place on a layer's output
        x = F.gelu(self.c2(self.bn(x)))
        x = torch.tanh(self.c3(x))  # (b, 5, h, w)
        t = self.tok(x.flatten(2).transpose(1, 2))  # Linear on (b, positions, 5)
        h = self.bn1(t.mean(1))
        h = torch.tanh(self.shared(torch.tanh(self.shared(h))))  # the same layer twice
        return self.head(h)


def _zoo() -> nn.Module:
    torch.manual_seed(0)
    return _settle_bn(_Zoo(), torch.randn(8, 3, 11, 11))


def _x(n: int, shape: tuple = (3, 11, 11), seed: int = 1) -> torch.Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("mode", NTK_MODES)
def test_layers_method_matches_loop_on_zoo(mode):
    net = _zoo()
    X, Z = _x(5), _x(3, seed=2)
    for X2 in (None, Z):
        ref = empirical_ntk_loop(net, X, X2, mode=mode, dtype=F64)
        K = empirical_ntk(net, X, X2, mode=mode, dtype=F64, method="layers")
        torch.testing.assert_close(K, ref, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(empirical_ntk(net, X, X2, mode=mode, dtype=F64, method="vmap"), ref, rtol=1e-10, atol=1e-10)


# ResNet-18 has 11M parameters: the float64 loop reference takes its stem, first block, the
# strided block with its 1x1 shortcut, and the head.
_RESNET_PARAMS = ("conv1.", "bn1.", "layers.0.0.", "layers.1.0.shortcut.", "layers.1.0.bn", "fc.")


@pytest.mark.parametrize(
    "name,kwargs", [("fastnet", {"widths": (4, 8, 8)}), ("resnet18", {}), ("shakeshake26", {"base_width": 4})]
)
def test_layers_method_matches_loop_on_models(name, kwargs):
    """The project's CIFAR networks (BatchNorm with running statistics, residual sums, Shake-Shake eval averaging)."""
    net = _settle_bn(make_model(name, seed=0, **kwargs), _x(4, (3, 32, 32), seed=3))
    X = _x(3, (3, 32, 32), seed=4)
    params = None
    if name == "resnet18":
        params = [k for k, p in net.named_parameters() if k.startswith(_RESNET_PARAMS) and p.requires_grad]
    for mode in ("sum", "trace"):
        ref = empirical_ntk_loop(net, X, mode=mode, dtype=F64, params=params)
        K = empirical_ntk(net, X, mode=mode, dtype=F64, method="layers", params=params)
        scale = float(ref.abs().max())
        assert scale > 0
        torch.testing.assert_close(K, ref, rtol=1e-9, atol=1e-12 * scale)


def test_batched_jacobian_equals_autograd_rows():
    """The per-example gradients themselves (not only their inner products) equal autograd's."""
    net = _zoo()
    X = _x(4)
    diff, const = _split_params(net, None, "t", device=X.device, dtype=F64)
    plan, why = per_sample.plan(net, list(diff))
    assert plan is not None, why
    net64 = _zoo().double()
    J = per_sample.batched_jacobian(net, plan, diff, const, X.double(), "trace")
    for i in range(X.shape[0]):
        out = net64(X[i : i + 1].double())[0]
        for c in range(out.shape[0]):
            grads = torch.autograd.grad(out[c], list(net64.parameters()), retain_graph=True)
            for (name, _), g in zip(net64.named_parameters(), grads):
                torch.testing.assert_close(J[name][i, c], g, rtol=1e-10, atol=1e-12)


def test_partial_params_and_mapping():
    """Selecting parameters, and taking their values from a mapping, agree with the loop."""
    net = _zoo()
    X = _x(4)
    names = ["c2.weight", "bn.bias", "shared.weight"]
    torch.testing.assert_close(
        empirical_ntk(net, X, params=names, dtype=F64, method="layers"),
        empirical_ntk_loop(net, X, params=names, dtype=F64),
        rtol=1e-10,
        atol=1e-12,
    )
    other = _zoo()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.1 * torch.randn_like(p))
    values = dict(other.named_parameters())
    K = empirical_ntk(net, X, params=values, dtype=F64, method="layers")
    torch.testing.assert_close(K, empirical_ntk_loop(other, X, dtype=F64), rtol=1e-10, atol=1e-12)
    assert not torch.allclose(K, empirical_ntk_loop(net, X, dtype=F64))


class _Grouped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, groups=2)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean((2, 3)))


class _LooseParameter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.5))
        self.head = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x) * self.scale


def _batch_stat_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False), nn.Linear(4, 2))


class _BatchMean(nn.Module):
    """Parameters all in Linear layers, but the forward mixes the examples (subtracts the batch mean)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        return self.b(h - h.mean(0, keepdim=True))


@pytest.mark.parametrize(
    "make,x,reason",
    [
        (_Grouped, lambda: torch.randn(3, 4, 5, 5), "groups"),
        (_LooseParameter, lambda: torch.randn(3, 3), "scale"),
        (_BatchMean, lambda: torch.randn(3, 3), "interact"),
    ],
)
def test_unsupported_models_fall_back_or_raise(make, x, reason):
    """auto falls back to vmap (still equal to the loop); method='layers' says why it cannot run."""
    torch.manual_seed(0)
    net, X = make(), x()
    with pytest.raises(ValueError, match=reason):
        empirical_ntk(net, X, dtype=F64, method="layers")
    if isinstance(net, _BatchMean):
        return  # its NTK per example is not defined by a batch forward; the loop sees batches of one
    torch.testing.assert_close(empirical_ntk(net, X, dtype=F64), empirical_ntk_loop(net, X, dtype=F64), rtol=1e-10, atol=1e-12)


def test_plan_reports_batch_statistics():
    """BatchNorm without running statistics normalises over the batch: no per-example formula."""
    plan, why = per_sample.plan(_batch_stat_net(), ["0.weight", "1.weight", "2.bias"])
    assert plan is None and "running statistics" in why and "'1.weight'" in why


def test_bad_method():
    with pytest.raises(ValueError, match="method"):
        empirical_ntk(nn.Linear(3, 1), torch.randn(2, 3), method="jvp")


def test_layers_chunks_and_memory_blocks():
    """More examples than one forward chunk (32) and a budget forcing several Jacobian blocks."""
    torch.manual_seed(0)
    net = _settle_bn(
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2 * 4 * 4, 2)), torch.randn(8, 1, 6, 6)
    )
    X = _x(70, (1, 6, 6))
    per_example = sum(p.numel() for p in net.parameters()) * 8
    ref = empirical_ntk_loop(net, X, mode="trace", dtype=F64)
    for budget in (2**30, 2 * 2 * 40 * per_example + 1):
        torch.testing.assert_close(
            empirical_ntk(net, X, mode="trace", dtype=F64, memory_budget=budget, method="layers"), ref, rtol=1e-10, atol=1e-12
        )


def _plain_mlp() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 9), nn.Tanh(), nn.Linear(9, 7, bias=False), nn.ReLU(), nn.Linear(7, 3))


@pytest.mark.parametrize("mode", NTK_MODES)
def test_factored_linear_layers_match_loop(mode):
    """Linear layers on 2-d inputs enter as (A A'^T + 1) * (D D'^T): equal to the loop, whole or partly selected."""
    net = _plain_mlp()
    X, Z = _x(6, (3, 2, 2)), _x(4, (3, 2, 2), seed=5)
    for params in (None, ["1.bias", "3.weight", "5.weight"], ["1.weight"], ["5.bias"]):
        for X2 in (None, Z):
            ref = empirical_ntk_loop(net, X, X2, mode=mode, dtype=F64, params=params)
            K = empirical_ntk(net, X, X2, mode=mode, dtype=F64, params=params, method="layers")
            torch.testing.assert_close(K, ref, rtol=1e-10, atol=1e-12)
    diff, const = _split_params(net, None, "t", device=X.device, dtype=F64)
    plan, _ = per_sample.plan(net, list(diff))
    J = per_sample.batched_jacobian(net, plan, diff, const, X.double(), mode, factor_linear=True)
    assert set(J) == {"1", "3", "5"} and all(isinstance(v, per_sample.LinearFactor) for v in J.values())
    assert (J["1"].weight, J["1"].bias, J["3"].bias) == (True, True, False)


def test_auto_uses_layers_in_sum_mode_only_when_linear_layers_dominate():
    """ntk_method reports the rule empirical_ntk applies; every path still equals the loop."""
    X = _x(5, (3, 2, 2))
    mlp = _plain_mlp()
    assert ntk_method(mlp, X) == ntk_method(mlp, X, mode="trace") == "layers"
    cnn = _settle_bn(make_model("fastnet", seed=0, widths=(4, 8, 8)), _x(4, (3, 32, 32), seed=3))
    Xc = _x(3, (3, 32, 32), seed=4)
    assert ntk_method(cnn, Xc) == "vmap"  # convolutions dominate: vmap(grad) in "sum" mode
    assert ntk_method(cnn, Xc, mode="trace") == "layers" and ntk_method(cnn, Xc, method="vmap") == "vmap"
    assert ntk_method(NTKMLP(12, width=8), X) == "ntkmlp-closed-form"
    assert ntk_method(_Grouped(), torch.randn(2, 4, 5, 5), mode="trace") == "vmap"
    with pytest.raises(ValueError, match="groups"):
        ntk_method(_Grouped(), torch.randn(2, 4, 5, 5), method="layers")
    for net, inputs in ((mlp, X), (cnn, Xc)):
        torch.testing.assert_close(
            empirical_ntk(net, inputs, dtype=F64), empirical_ntk_loop(net, inputs, dtype=F64), rtol=1e-9, atol=1e-12
        )
