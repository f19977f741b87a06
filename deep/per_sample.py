"""Per-example gradients of a whole batch from one forward and one backward pass per logit.

For a layer whose output is ``h = W a`` (a linear map of its input, applied at every
position p of an image or sequence), the gradient of a scalar target t(x) of example x is

    dt/dW = sum_p  delta_p(x) a_p(x)^T,        delta_p(x) = dt/dh_p(x),

so the per-example gradients of every layer follow from quantities a batched pass already
has: each layer's input ``a`` (kept by a forward hook) and the cotangent of its output
``delta`` (one ``torch.autograd.grad`` of ``sum_x t(x)`` with respect to all layer outputs at
once). This is the per-example gradient trick of Goodfellow (2015) and BackPACK's
``BatchGrad`` (Dangel, Kunstner & Hennig 2020), written out for the layers used in
``deep.models``:

``nn.Linear``      dW = sum_p delta_p a_p^T,    db = sum_p delta_p
``nn.Conv2d``      dW = sum_p delta_p P_p^T,    db = sum_p delta_p   (P_p: the input patch at p, ``F.unfold``)
``nn.BatchNorm``   dgamma = sum_p delta_p xhat_p,  dbeta = sum_p delta_p   (eval mode: xhat from the running statistics)

An ``nn.Linear`` layer applied once to 2-d inputs can instead be returned in factored form
(:class:`LinearFactor`: its inputs A and output cotangents D), from which the NTK term
``(A A'^T + 1) * (D D'^T)`` follows without forming its per-example gradients at all.

It is valid only when examples do not interact inside the network (eval mode: BatchNorm on
running statistics, no dropout) and every trained parameter belongs to one of these layers,
used through its own ``forward`` (a layer called several times contributes the sum over its
calls). :func:`plan` checks the parameter ownership and layer settings;
:func:`batched_jacobian` returns the per-example gradients in the layout of
``torch.func.vmap(jacrev(f))``.

References
----------
I. Goodfellow, "Efficient per-example gradient computations", arXiv:1510.01799 (2015).
F. Dangel, F. Kunstner, P. Hennig, "BackPACK: packing more into backprop", ICLR 2020.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

__all__ = ["LayerPlan", "LinearFactor", "plan", "batched_jacobian"]

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass(frozen=True)
class LinearFactor:
    """The per-example gradients of an ``nn.Linear`` on (b, in) inputs, kept in factored form.

    Example i's weight gradient for target t is ``D[i, t] A[i]^T`` and its bias gradient
    ``D[i, t]``, so the inner product of two examples' gradients is

        <grad_i, grad_j> = (weight * A_i . A_j + bias) * (D_i,t . D_j,t)

    (Jacot et al. 2018; the "structured derivatives" of Novak et al. 2022), O(in + out) per
    pair instead of O(in * out). ``weight`` / ``bias`` say which of the two are differentiated.
    """

    A: torch.Tensor  # (b, in)
    D: torch.Tensor  # (b, T, out)
    weight: bool
    bias: bool
    names: tuple[str, ...]


@dataclass(frozen=True)
class LayerPlan:
    """The layers whose parameters are differentiated: module path -> (module, {local name: full name})."""

    layers: dict[str, tuple[nn.Module, dict[str, str]]]


def _own_forward(module: nn.Module, base: type[nn.Module]) -> bool:
    """True when ``module`` runs ``base.forward`` (subclasses that only change initialisation are fine)."""
    return isinstance(module, base) and type(module).forward is base.forward


def _supported(module: nn.Module) -> str | None:
    """None when the per-example formulas hold for ``module``; otherwise why not."""
    if _own_forward(module, nn.Linear):
        return None
    if _own_forward(module, nn.Conv2d):
        if module.padding_mode != "zeros":
            return f"padding_mode={module.padding_mode!r}"
        if module.groups != 1:
            return f"groups={module.groups}"
        return None
    if any(_own_forward(module, b) for b in _BN):
        if not module.track_running_stats or module.running_mean is None:
            return "BatchNorm without running statistics mixes the examples of a batch"
        return None
    return f"{type(module).__name__} is not one of Linear, Conv2d, BatchNorm1d/2d/3d"


def plan(model: nn.Module, names: list[str]) -> tuple[LayerPlan | None, str]:
    """Map each differentiated parameter name to its layer; (None, reason) when a formula is missing."""
    owner: dict[str, tuple[str, str]] = {}
    for path, module in model.named_modules():
        for local, _ in module.named_parameters(recurse=False):
            owner[f"{path}.{local}" if path else local] = (path, local)
    layers: dict[str, tuple[nn.Module, dict[str, str]]] = {}
    modules = dict(model.named_modules())
    for name in names:
        if name not in owner:
            return None, f"parameter {name!r} is not found among the model's own parameters"
        path, local = owner[name]
        module = modules[path]
        why = _supported(module)
        if why is not None:
            return None, f"parameter {name!r} belongs to {path or 'the model'}: {why}"
        layers.setdefault(path, (module, {}))[1][local] = name
    return LayerPlan(layers), ""


def _conv_patches(module: nn.Conv2d, a: torch.Tensor) -> torch.Tensor:
    """Input patches (b, C_in kh kw, P) of a zero-padded, groups=1 Conv2d, padding strings included."""
    kh, kw = module.kernel_size
    pad: tuple[int, ...]
    if isinstance(module.padding, str):
        if module.padding == "valid":
            pad = (0, 0)
        else:  # "same": PyTorch pads total = dilation (k - 1), left = total // 2, right = the rest
            th, tw = (d * (k - 1) for d, k in zip(module.dilation, module.kernel_size))
            a = F.pad(a, (tw // 2, tw - tw // 2, th // 2, th - th // 2))
            pad = (0, 0)
    else:
        pad = module.padding
    return F.unfold(a, (kh, kw), dilation=module.dilation, padding=pad, stride=module.stride)


def _layer_grads(
    module: nn.Module, path: str, a: torch.Tensor, delta: torch.Tensor, wanted: dict[str, str], params: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Per-example gradients {local name: (b, T, *shape)} of one layer call, for T targets at once.

    ``a`` is the layer's input (b, ...), ``delta`` the cotangents of its output for the T
    targets, (b, T, *output shape). Stacking the targets makes each per-example product one
    batched matmul with T times more rows. BatchNorm statistics are read from ``params`` (the
    values the forward pass used), not from the module.
    """
    b, T = delta.shape[:2]
    out: dict[str, torch.Tensor] = {}
    if isinstance(module, nn.Linear):
        d = delta.reshape(b, T, -1, delta.shape[-1])  # (b, T, positions, out)
        if "weight" in wanted:
            dt = d.permute(0, 1, 3, 2).reshape(b, T * d.shape[-1], d.shape[2])
            out["weight"] = torch.bmm(dt, a.reshape(b, -1, a.shape[-1])).reshape(b, T, *module.weight.shape)
        if "bias" in wanted:
            out["bias"] = d.sum(2)
    elif isinstance(module, nn.Conv2d):
        d = delta.reshape(b, T, delta.shape[2], -1)  # (b, T, C_out, P)
        if "weight" in wanted:
            patches = _conv_patches(module, a).transpose(1, 2)  # (b, P, C_in kh kw)
            out["weight"] = torch.bmm(d.reshape(b, -1, d.shape[-1]), patches).reshape(b, T, *module.weight.shape)
        if "bias" in wanted:
            out["bias"] = d.sum(3)
    else:  # BatchNorm in eval mode: y = xhat * gamma + beta
        c = a.shape[1]
        d = delta.reshape(b, T, c, -1)
        if "weight" in wanted:
            prefix = f"{path}." if path else ""
            mean, var = params[prefix + "running_mean"], params[prefix + "running_var"]
            view = (1, c, 1)
            # plan() admits only Linear, Conv2d and BatchNorm layers (_supported): this one's eps is a float
            xhat = (a.reshape(b, c, -1) - mean.reshape(view)) / torch.sqrt(var.reshape(view) + cast(float, module.eps))
            out["weight"] = (d * xhat.unsqueeze(1)).sum(3)
        if "bias" in wanted:
            out["bias"] = d.sum(3)
    return out


def batched_jacobian(
    model: nn.Module,
    layers: LayerPlan,
    diff: dict[str, torch.Tensor],
    const: dict[str, torch.Tensor],
    X: torch.Tensor,
    mode: str,
    *,
    factor_linear: bool = False,
) -> dict[str, torch.Tensor | LinearFactor]:
    """Per-example gradients of the logits, ``{name: (b, *shape)}`` ("sum") or ``{name: (b, C, *shape)}``.

    With ``factor_linear``, an ``nn.Linear`` layer called once on 2-d input is returned as one
    entry ``{"<layer path>": LinearFactor}`` in place of its parameters' gradients.

    One forward pass of the batch X through ``functional_call(model, {**const, **diff})``
    with hooks that keep every planned layer's input and output, then one
    ``torch.autograd.grad`` of the logit sum ("sum") or of each logit summed over the batch
    (other modes) with respect to all kept outputs, and the per-layer formulas of the module
    docstring. ``diff`` holds the differentiated parameters, ``const`` every other parameter
    and buffer; the model must already be in eval mode. Examples must not interact (the
    caller checks this).
    """
    calls: list[tuple[str, torch.Tensor, torch.Tensor]] = []
    handles = []

    def keep(path: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
            # The clone keeps `output` out of reach of in-place ops that follow the layer.
            calls.append((path, inputs[0].detach(), output))
            return output.clone()

        return hook

    for path, (module, _) in layers.layers.items():
        handles.append(module.register_forward_hook(keep(path)))
    try:
        with torch.enable_grad():
            params = {**const, **{k: v.detach().requires_grad_(True) for k, v in diff.items()}}
            logits = functional_call(model, params, (X,))
    finally:
        for h in handles:
            h.remove()
    if logits.ndim != 2 or logits.shape[0] != X.shape[0]:
        raise ValueError(f"model must return logits of shape (N, C); got {tuple(logits.shape)} for N={X.shape[0]}")
    targets = [logits.sum()] if mode == "sum" else [logits[:, c].sum() for c in range(logits.shape[1])]
    outputs = [o for _, _, o in calls]
    per_target = [
        torch.autograd.grad(t, outputs, retain_graph=i < len(targets) - 1, allow_unused=True) for i, t in enumerate(targets)
    ]
    del logits, targets, outputs
    b, T = X.shape[0], len(per_target)
    n_calls: dict[str, int] = {}
    for path, _, _ in calls:
        n_calls[path] = n_calls.get(path, 0) + 1
    grads: dict[str, torch.Tensor] = {}
    factors: dict[str, LinearFactor] = {}
    for i, (path, a, o) in enumerate(calls):
        found = [g[i] for g in per_target]
        if all(g is None for g in found):
            continue  # the layer's output does not reach the logits
        delta = torch.stack([torch.zeros_like(o) if g is None else g for g in found], dim=1)
        module, wanted = layers.layers[path]
        if factor_linear and isinstance(module, nn.Linear) and a.ndim == 2 and n_calls[path] == 1:
            factors[path] = LinearFactor(
                A=a, D=delta.detach(), weight="weight" in wanted, bias="bias" in wanted, names=tuple(wanted.values())
            )
            continue
        for local, g in _layer_grads(module, path, a, delta, wanted, params).items():
            name = wanted[local]
            grads[name] = g if name not in grads else grads[name] + g
        del delta
    out: dict[str, torch.Tensor | LinearFactor] = dict(factors)
    done = {name for f in factors.values() for name in f.names}
    for _, (_, wanted) in layers.layers.items():
        for name in wanted.values():
            if name in done:
                continue
            acc = grads.get(name)
            if acc is None:
                acc = torch.zeros((b, T, *diff[name].shape), dtype=X.dtype, device=X.device)
            out[name] = (acc[:, 0] if mode == "sum" else acc).detach()
    return out
