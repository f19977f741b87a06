"""Networks for CIFAR-10 runs and for finite-width NTK comparisons.

One entry point, :func:`make_model`, builds a network by name from the registry
:data:`MODELS`. Every network takes a float batch ``(N, 3, 32, 32)`` and returns
logits ``(N, num_classes)``; :class:`NTKMLP` flattens its input, so it also takes
``(N, d)``.

========================  ==========  =====================================================
name                      parameters  network
========================  ==========  =====================================================
``"fastnet"``             ~1.97 M     airbench94-style conv-BN-GELU net (Jordan 2024)
``"resnet18"``            11.17 M     ResNet-18, CIFAR stem (He et al. 2016)
``"shakeshake26"``        2.92 M      Shake-Shake-26 2x32d (Gastaldi 2017)
``"mlp"``                 depends     ReLU MLP in NTK parameterisation (Jacot et al. 2018)
========================  ==========  =====================================================

All networks use ordinary torch ops, so ``torch.autocast`` (float16 / bfloat16 on a
GPU) and ``channels_last`` work unchanged; the default is float32.

References
----------
K. Jordan, "94% on CIFAR-10 in 3.29 seconds on a single GPU", arXiv:2404.00498 (2024).
K. He, X. Zhang, S. Ren, J. Sun, "Deep residual learning for image recognition", CVPR 2016.
X. Gastaldi, "Shake-Shake regularization", arXiv:1705.07485 (2017).
A. Jacot, F. Gabriel, C. Hongler, "Neural tangent kernel", NeurIPS 2018.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kernels.checks import Interval, Options, check_param, check_params

__all__ = [
    "MODELS",
    "make_model",
    "count_parameters",
    "FastNet",
    "ResNet18",
    "ShakeShake26",
    "NTKMLP",
    "shake",
]

# ============================================================================ fastnet


class _FastConv(nn.Conv2d):
    """3x3 'same' conv without bias, airbench init: default init, then Dirac on the
    first ``in_channels`` filters (so the block starts close to an identity map)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(c_in, c_out, kernel_size=3, padding="same", bias=False)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        w = self.weight.data
        nn.init.dirac_(w[: w.size(1)])


def _fast_bn(c: int) -> nn.BatchNorm2d:
    # airbench94: eps 1e-12, running-stat momentum 0.4 (its 'batchnorm_momentum' 0.6 is 1 - this),
    # scale frozen at 1 (only the shift is trained).
    bn = nn.BatchNorm2d(c, eps=1e-12, momentum=0.4)
    bn.weight.requires_grad_(False)
    return bn


class _FastGroup(nn.Module):
    """conv -> maxpool(2) -> BN -> GELU -> conv -> BN -> GELU."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = _FastConv(c_in, c_out)
        self.norm1 = _fast_bn(c_out)
        self.conv2 = _FastConv(c_out, c_out)
        self.norm2 = _fast_bn(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.norm1(F.max_pool2d(self.conv1(x), 2)))
        return F.gelu(self.norm2(self.conv2(x)))


class FastNet(nn.Module):
    """Small fast CIFAR net in the style of airbench94 (Jordan 2024, ``legacy/airbench94.py``).

    Layout: 2x2 stem conv (3 -> 24 channels, no padding, bias) -> GELU -> three groups
    of [conv3x3 -> maxpool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU] with widths
    ``widths`` -> maxpool 3 -> linear (no bias) -> multiply by ``scale`` (1/9).
    Spatial size 32 -> 31 -> 15 -> 7 -> 3 -> 1. About 1.97 M parameters for the
    default widths (64, 256, 256). Like airbench94 it is a plain (non-residual)
    conv net; BN scales are frozen at 1.

    The stem is an ordinary trainable conv; :meth:`init_whitening` gives it
    airbench's data-dependent patch-whitening weights (and freezes them).

    Parameters
    ----------
    num_classes : int, default=10
    widths : tuple of 3 ints, default=(64, 256, 256)
    scale : float, default=1/9
        Output multiplier of the linear head.
    """

    def __init__(self, num_classes: int = 10, *, widths: tuple[int, int, int] = (64, 256, 256), scale: float = 1 / 9) -> None:
        super().__init__()
        stem = 2 * 3 * 2**2
        self.stem = nn.Conv2d(3, stem, kernel_size=2, padding=0, bias=True)
        self.group1 = _FastGroup(stem, widths[0])
        self.group2 = _FastGroup(widths[0], widths[1])
        self.group3 = _FastGroup(widths[1], widths[2])
        self.head = nn.Linear(widths[2], num_classes, bias=False)
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.stem(x))
        x = self.group3(self.group2(self.group1(x)))
        x = F.max_pool2d(x, 3).flatten(1)
        return self.head(x) * self.scale

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, *, eps: float = 5e-4) -> None:
        """Set the stem to airbench's patch-whitening filters and freeze its weight.

        With C = E[p p^T] the covariance of the 2x2x3 input patches and
        C = sum_i lam_i u_i u_i^T, the 24 filters are +-u_i / sqrt(lam_i + eps), so the
        first 12 output channels have covariance diag(lam / (lam + eps)) ~ I.

        Parameters
        ----------
        images : Tensor (N, 3, 32, 32)
            Normalised training images (a few thousand are enough).
        eps : float, default=5e-4
        """
        fn = "FastNet.init_whitening"
        check_param(fn, "eps", eps, Interval(float, 0, None, "neither"))
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"{fn}: images must be a tensor of shape (N, 3, H, W); got {getattr(images, 'shape', type(images))}")
        w = self.stem.weight
        kh, kw = w.shape[2:]
        x = images.to(device=w.device, dtype=torch.float64)
        patches = x.unfold(2, kh, 1).unfold(3, kw, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 3 * kh * kw)
        cov = patches.T @ patches / patches.shape[0]
        lam, vec = torch.linalg.eigh(cov)
        lam, vec = lam.flip(0), vec.flip(1)
        filt = (vec / torch.sqrt(lam.clamp_min(0) + eps)).T.reshape(-1, 3, kh, kw)
        w.copy_(torch.cat((filt, -filt)).to(w.dtype))
        w.requires_grad_(False)


# ============================================================================ resnet18


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 with the CIFAR stem (He et al. 2016, Sec. 4.2 layout with 2-2-2-2 basic blocks).

    3x3 conv (stride 1, no max-pool) -> 4 stages of 2 basic blocks, widths 64/128/256/512,
    strides 1/2/2/2 -> global average pool -> linear. 11,173,962 parameters for 10 classes.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, c_in = [], 64
        for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers.append(nn.Sequential(_BasicBlock(c_in, c_out, stride), _BasicBlock(c_out, c_out, 1)))
            c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


# ============================================================================ shake-shake


def shake(
    x1: torch.Tensor, x2: torch.Tensor, *, training: bool, forward: bool = True, backward: bool = True, per_image: bool = True
) -> torch.Tensor:
    """Shake-Shake mixing of two residual branches (Gastaldi 2017, Sec. 2.1).

    Training: forward value ``alpha x1 + (1 - alpha) x2``, gradient as if it were
    ``beta x1 + (1 - beta) x2``, with alpha, beta ~ U(0, 1) independent (per image when
    ``per_image``, else one per batch). ``forward=False`` uses alpha = 0.5
    ("Even"), ``backward=False`` uses beta = alpha ("Keep"). Evaluation:
    ``0.5 (x1 + x2)``.

    The forward/backward split uses the detach trick
    ``beta x1 + (1-beta) x2 + stopgrad((alpha - beta)(x1 - x2))``, which has the
    forward value of alpha and the gradient of beta, and works with autocast and torch.func.
    """
    if not training:
        return 0.5 * (x1 + x2)
    shape = (x1.shape[0],) + (1,) * (x1.ndim - 1) if per_image else (1,) * x1.ndim
    alpha = (
        torch.rand(shape, device=x1.device, dtype=x1.dtype)
        if forward
        else torch.full(shape, 0.5, device=x1.device, dtype=x1.dtype)
    )
    if not backward:
        return alpha * x1 + (1 - alpha) * x2
    beta = torch.rand(shape, device=x1.device, dtype=x1.dtype)
    return beta * x1 + (1 - beta) * x2 + ((alpha - beta) * (x1 - x2)).detach()


class _ShakeBranch(nn.Sequential):
    """ReLU -> conv3x3(stride) -> BN -> ReLU -> conv3x3 -> BN."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )


class _ShakeShortcut(nn.Module):
    """Gastaldi's shortcut when the width changes: ReLU, two 1x1 convs (c_out/2 each), the
    second on the input shifted by one pixel, both strided, concatenated, then BN."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(c_in, c_out // 2, 1, bias=False)
        self.conv2 = nn.Conv2d(c_in, c_out - c_out // 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        y1 = self.conv1(x[:, :, :: self.stride, :: self.stride])
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        y2 = self.conv2(shifted[:, :, :: self.stride, :: self.stride])
        return self.bn(torch.cat((y1, y2), dim=1))


class _ShakeBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, mix: dict[str, bool]) -> None:
        super().__init__()
        self.branch1 = _ShakeBranch(c_in, c_out, stride)
        self.branch2 = _ShakeBranch(c_in, c_out, stride)
        self.shortcut = nn.Identity() if (c_in == c_out and stride == 1) else _ShakeShortcut(c_in, c_out, stride)
        self.mix = dict(mix)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + shake(self.branch1(x), self.branch2(x), training=self.training, **self.mix)


class ShakeShake26(nn.Module):
    """Shake-Shake-26 2x32d (Gastaldi 2017, Table 1; ~2.9 M parameters).

    3x3 conv (16) -> BN -> three stages of 4 blocks (widths ``base``, 2 ``base``, 4 ``base``;
    strides 1, 2, 2), each block ``shortcut(x) + shake(branch1(x), branch2(x))`` with
    branches ReLU-conv-BN-ReLU-conv-BN -> ReLU -> global average pool -> linear.
    Depth 26 = 2 + 3 stages x 4 blocks x 2 convs.

    Parameters
    ----------
    num_classes : int, default=10
    base_width : int, default=32
        The "32d" of "2x32d".
    shake_forward, shake_backward, shake_image : bool, default=True
        Shake-Shake-Image (the paper's best CIFAR-10 setting) by default; see :func:`shake`.
    """

    def __init__(
        self,
        num_classes: int = 10,
        *,
        base_width: int = 32,
        shake_forward: bool = True,
        shake_backward: bool = True,
        shake_image: bool = True,
    ) -> None:
        super().__init__()
        mix = {"forward": shake_forward, "backward": shake_backward, "per_image": shake_image}
        self.conv = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        blocks, c_in = [], 16
        for i, stride in enumerate((1, 2, 2)):
            c_out = base_width * 2**i
            for j in range(4):
                blocks.append(_ShakeBlock(c_in, c_out, stride if j == 0 else 1, mix))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.bn(self.conv(x)))
        return self.fc(F.adaptive_avg_pool2d(F.relu(x), 1).flatten(1))


# ============================================================================ NTK MLP


class NTKMLP(nn.Module):
    """Fully connected ReLU net in NTK parameterisation (Jacot et al. 2018, Sec. 2; c_sigma = 2).

    With width m, depth L (hidden layers), input dimension d and bias scale beta::

        h^1     = W^1 x / sqrt(d) + beta b^1
        h^{l+1} = sqrt(2 / m) W^{l+1} relu(h^l) + beta b^{l+1},   l = 1..L
        f(x)    = h^{L+1}                                          (out_features outputs)

    with every W, b ~ N(0, 1) at initialisation and all of them trained. As m -> inf
    each output is a GP with covariance ``kernels.nngp_relu(X, depth=L, bias=beta)``
    and the NTK of each output tends to ``kernels.ntk_relu(X, depth=L, bias=beta)``
    (docs/derivations.md, section 2: Sigma^0 = x.x'/d + beta^2, Theta^{L+1} = Theta^L dSigma^L + Sigma^L);
    distinct outputs have zero limiting NTK. Inputs are flattened, so (N, 3, 32, 32)
    needs ``in_features=3072``.

    Parameters
    ----------
    in_features : int
    width : int, default=1024
    depth : int, default=1
        Number of hidden layers L (>= 1).
    bias : float, default=0.0
        beta; with 0 the bias parameters exist but have no effect.
    out_features : int, default=10
    """

    def __init__(self, in_features: int, *, width: int = 1024, depth: int = 1, bias: float = 0.0, out_features: int = 10) -> None:
        super().__init__()
        check_params(
            "NTKMLP",
            _MLP_TABLE,
            in_features=in_features,
            width=width,
            depth=depth,
            bias=bias,
            out_features=out_features,
        )
        self.in_features, self.width, self.depth = int(in_features), int(width), int(depth)
        self.bias, self.out_features = float(bias), int(out_features)
        dims = [self.in_features] + [self.width] * self.depth + [self.out_features]
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(o, i)) for i, o in zip(dims[:-1], dims[1:]))
        self.biases = nn.ParameterList(nn.Parameter(torch.empty(o)) for o in dims[1:])
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw every weight and bias i.i.d. N(0, 1)."""
        for p in list(self.weights) + list(self.biases):
            p.normal_(0.0, 1.0, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        if h.shape[1] != self.in_features:
            raise ValueError(f"NTKMLP: input has {h.shape[1]} features after flattening but in_features={self.in_features}")
        h = F.linear(h, self.weights[0]) / math.sqrt(self.in_features) + self.bias * self.biases[0]
        scale = math.sqrt(2.0 / self.width)
        for w, b in zip(list(self.weights)[1:], list(self.biases)[1:]):
            h = scale * F.linear(F.relu(h), w) + self.bias * b
        return h

    def ntk(self, X: Any, Z: Any = None) -> Any:
        """Infinite-width NTK of each output: ``kernels.ntk_relu(X, Z, depth, bias)`` (X flattened, (n, d))."""
        from kernels.functions import ntk_relu

        return ntk_relu(X, Z, depth=self.depth, bias=self.bias)

    def nngp(self, X: Any, Z: Any = None) -> Any:
        """Infinite-width NNGP of each output: ``kernels.nngp_relu(X, Z, depth, bias)``."""
        from kernels.functions import nngp_relu

        return nngp_relu(X, Z, depth=self.depth, bias=self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, width={self.width}, depth={self.depth}, bias={self.bias}, out_features={self.out_features}"


_MLP_TABLE: dict[str, Interval | Options] = {
    "in_features": Interval(int, 1, None),
    "width": Interval(int, 1, None),
    "depth": Interval(int, 1, None),
    "bias": Interval(float, 0, None),
    "out_features": Interval(int, 1, None),
}


# ============================================================================ registry


def _fastnet(num_classes: int = 10, *, widths: tuple[int, int, int] = (64, 256, 256), scale: float = 1 / 9) -> nn.Module:
    ws = tuple(widths)  # any sequence is taken; len() below narrows it to tuple[int, int, int]
    if len(ws) != 3:
        raise ValueError(f"make_model: widths must be 3 positive ints; got {ws!r}")
    for w in ws:
        check_param("make_model", "widths", w, Interval(int, 1, None))
    check_param("make_model", "scale", scale, Interval(float, 0, None, "neither"))
    return FastNet(num_classes, widths=ws, scale=scale)


def _resnet18(num_classes: int = 10) -> nn.Module:
    return ResNet18(num_classes)


def _shakeshake26(
    num_classes: int = 10,
    *,
    base_width: int = 32,
    shake_forward: bool = True,
    shake_backward: bool = True,
    shake_image: bool = True,
) -> nn.Module:
    check_param("make_model", "base_width", base_width, Interval(int, 2, None))
    for name, v in (("shake_forward", shake_forward), ("shake_backward", shake_backward), ("shake_image", shake_image)):
        check_param("make_model", name, v, Options((True, False)))
    return ShakeShake26(
        num_classes, base_width=base_width, shake_forward=shake_forward, shake_backward=shake_backward, shake_image=shake_image
    )


def _mlp(
    num_classes: int = 10, *, in_features: int = 3 * 32 * 32, width: int = 1024, depth: int = 1, bias: float = 0.0
) -> nn.Module:
    return NTKMLP(in_features, width=width, depth=depth, bias=bias, out_features=num_classes)


#: name -> factory(num_classes, **kwargs). Read-only by convention; :func:`make_model` is the entry point.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "fastnet": _fastnet,
    "resnet18": _resnet18,
    "shakeshake26": _shakeshake26,
    "mlp": _mlp,
}


def make_model(
    name: str,
    *,
    num_classes: int = 10,
    seed: int | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    channels_last: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Build a network from :data:`MODELS` by name.

    Parameters
    ----------
    name : {"fastnet", "resnet18", "shakeshake26", "mlp"}
    num_classes : int, default=10
        Number of logits.
    seed : int or None, default=None
        Seed for the initialisation; the global torch RNG state is restored afterwards.
        None draws from the global RNG.
    device, dtype : optional
        Where / in which float type to put the parameters (default: CPU, float32).
    channels_last : bool, default=False
        Convert 4-D parameters to ``torch.channels_last`` (faster convs on GPU).
    **kwargs
        Network options: fastnet ``widths``, ``scale``; shakeshake26 ``base_width``,
        ``shake_forward``, ``shake_backward``, ``shake_image``; mlp ``in_features``
        (default 3072), ``width``, ``depth``, ``bias``. resnet18 has none.

    Returns
    -------
    torch.nn.Module
        In training mode; forward maps (N, 3, 32, 32) to (N, num_classes).

    Raises
    ------
    ValueError
        Unknown ``name`` (the message lists the known ones) or an option out of range.
    TypeError
        An option the network does not take (the message names it and lists the valid ones).

    Examples
    --------
    >>> import torch
    >>> net = make_model("fastnet", seed=0)
    >>> net(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """
    fn = "make_model"
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"{fn}: name must be one of {', '.join(repr(k) for k in MODELS)}; got {name!r}")
    check_param(fn, "num_classes", num_classes, Interval(int, 1, None))
    if seed is not None:
        check_param(fn, "seed", seed, Interval(int, 0, None))
    check_param(fn, "channels_last", channels_last, Options((True, False)))
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise TypeError(f"{fn}: dtype must be a floating torch.dtype or None; got {dtype!r}")
    factory = MODELS[name]
    allowed = [p for p in inspect.signature(factory).parameters if p != "num_classes"]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(f"{fn}: {name!r} got unexpected option(s) {', '.join(unknown)}; its options are {allowed or 'none'}")
    if seed is None:
        model = factory(num_classes, **kwargs)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = factory(num_classes, **kwargs)
    model = model.to(device=device, dtype=dtype)
    if channels_last:
        # Module.to takes memory_format at runtime; torch's stubs list only device/dtype/tensor overloads
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
