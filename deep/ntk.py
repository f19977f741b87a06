"""Empirical neural tangent kernel of a torch network, and the plain loop it replaces.

For a network f(x; p) with C outputs and parameters p, the empirical NTK is

    Theta_cd(x, x') = sum_p  d f_c(x) / d p  .  d f_d(x') / d p         (Jacot et al. 2018, eq. 4)

computed here at the current parameters, with the network in evaluation mode (BatchNorm
uses its running statistics, Shake-Shake averages its branches, dropout is off).

:func:`empirical_ntk` builds per-example Jacobians in blocks whose size keeps the Jacobian
blocks within a memory budget, and contracts them with one matmul per parameter tensor. The
Jacobians come either from ``torch.func`` (``functional_call`` + ``jacrev``/``grad`` +
``vmap``; any model) or from one batched forward pass and one backward pass per logit with
the per-example gradient formulas of :mod:`deep.per_sample` (Linear, Conv2d and eval-mode
BatchNorm layers; checked before use).
:func:`empirical_ntk_loop` is the slow reference: one ``torch.autograd.grad`` call per
example and output, the gradients flattened into rows of a dense Jacobian.

For :class:`deep.models.NTKMLP` with all parameters and ``mode`` "sum" or "trace",
:func:`empirical_ntk` takes an exact fast path instead (:func:`_ntk_mlp`): the layer-wise
decomposition Theta = sum_l (s_l^2 A_l A_l'^T + beta^2) * (D_l D_l'^T), one forward and one
closed-form backward pass, and two GEMMs per layer, never forming the n x P Jacobian.

Modes
-----
``"sum"``    NTK of the logit sum f = sum_c f_c:  sum_{c,d} Theta_cd,       shape (n1, n2)
``"trace"``  mean over logits of the diagonal:    (1/C) sum_c Theta_cc,     shape (n1, n2)
``"full"``   every pair of logits:                Theta_cd,                 shape (n1, n2, C, C)

References
----------
A. Jacot, F. Gabriel, C. Hongler, "Neural tangent kernel: convergence and generalization in
neural networks", NeurIPS 2018.
R. Novak, J. Sohl-Dickstein, S. S. Schoenholz, "Fast finite width neural tangent kernel",
ICML 2022 (the Jacobian-contraction method used here).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, jacrev, vmap

from deep import per_sample
from kernels.backend import backend_name, to_numpy
from kernels.checks import Interval, Options, as_array, check_param, iter_blocks

if TYPE_CHECKING:
    from deep.models import NTKMLP

__all__ = ["empirical_ntk", "empirical_ntk_loop", "ntk_method", "NTK_MODES", "NTK_METHODS"]

NTK_MODES = ("sum", "trace", "full")
NTK_METHODS = ("auto", "layers", "vmap")

# Examples per batched forward pass in the "layers" method: small batches keep the
# activations and cotangents in cache (measured on 2 CPU cores, fastnet 16/32/32, 512 inputs:
# 16-64 examples per pass were 2x faster than 512).
_LAYER_CHUNK = 32

CONSTRAINTS: dict[str, Interval | Options] = {
    "mode": Options(NTK_MODES),
    "method": Options(NTK_METHODS),
    "memory_budget": Interval(int, 1, None),
}

Params = Mapping[str, torch.Tensor] | Sequence[str] | None


# ============================================================================ inputs


def _check_inputs(
    fn: str, name: str, X: Any, *, device: torch.device, dtype: torch.dtype, like: torch.Tensor | None = None
) -> torch.Tensor:
    """A finite float batch (n >= 1, ndim >= 2) as a torch tensor on ``device`` in ``dtype``."""
    arr, xp = as_array(fn, name, X)
    if backend_name(xp) != "torch":
        arr = torch.from_numpy(np.ascontiguousarray(to_numpy(arr)))
    if arr.ndim < 2 or arr.shape[0] < 1:
        raise ValueError(
            f"{fn}: {name} must be a batch of shape (n, ...) with n >= 1 and ndim >= 2; got shape {tuple(arr.shape)}"
        )
    if like is not None and arr.shape[1:] != like.shape[1:]:
        raise ValueError(
            f"{fn}: {name} must have per-example shape {tuple(like.shape[1:])} (that of X1); got {tuple(arr.shape[1:])}"
        )
    if not bool(torch.isfinite(arr).all()):
        raise ValueError(f"{fn}: {name} contains NaN or inf; remove or impute those entries first")
    return arr.to(device=device, dtype=dtype)


def _check_model(fn: str, model: Any) -> tuple[torch.device, torch.dtype]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{fn}: model must be a torch.nn.Module; got {type(model).__name__}")
    floats = [t for t in list(model.parameters()) + list(model.buffers()) if t.is_floating_point()]
    if not floats:
        raise ValueError(f"{fn}: model must have at least one floating-point parameter")
    return floats[0].device, floats[0].dtype


def _check_dtype(fn: str, dtype: Any, default: torch.dtype) -> torch.dtype:
    if dtype is None:
        return default
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{fn}: dtype must be a floating torch.dtype (e.g. torch.float64) or None; got {dtype!r}")
    return dtype


def _split_params(model: nn.Module, params: Params, fn: str, *, device: torch.device, dtype: torch.dtype) -> tuple[dict, dict]:
    """(differentiated parameters, constants: other parameters and all buffers), detached and cast."""
    named = dict(model.named_parameters())

    def cast(t: torch.Tensor) -> torch.Tensor:
        t = t.detach()
        return t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device=device)

    chosen: dict[str, torch.Tensor]
    if params is None:
        chosen = {k: v for k, v in named.items() if v.requires_grad}
    elif isinstance(params, Mapping):
        chosen = dict(params)
    elif isinstance(params, Sequence) and not isinstance(params, str):
        chosen = {}
        for k in params:
            if k not in named:
                raise ValueError(
                    f"{fn}: params must name parameters of the model; {k!r} is not one (known: {', '.join(list(named)[:8])}{', ...' if len(named) > 8 else ''})"
                )
            chosen[k] = named[k]
    else:
        raise TypeError(
            f"{fn}: params must be None, a mapping name -> tensor, or a sequence of parameter names; got {type(params).__name__}"
        )
    for k, v in chosen.items():
        if k not in named:
            raise ValueError(f"{fn}: params must name parameters of the model; {k!r} is not one")
        if not isinstance(v, torch.Tensor) or v.shape != named[k].shape or not v.is_floating_point():
            raise ValueError(
                f"{fn}: params[{k!r}] must be a float tensor of shape {tuple(named[k].shape)}; got {getattr(v, 'shape', type(v).__name__)}"
            )
    if not chosen:
        raise ValueError(f"{fn}: params must select at least one parameter; the model has none with requires_grad=True")
    diff = {k: cast(v) for k, v in chosen.items()}
    const = {k: cast(v) for k, v in named.items() if k not in diff}
    const.update({k: cast(v) for k, v in model.named_buffers()})
    return diff, const


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode; restore each one's flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _forward_one(model: nn.Module, const: dict, fn: str) -> Callable[[dict, torch.Tensor], torch.Tensor]:
    """f(diff, x) -> logits (C,) of a single example x (no batch dimension)."""

    def f(diff: dict, x: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, {**const, **diff}, (x.unsqueeze(0),))
        if out.ndim != 2:
            raise ValueError(f"{fn}: model must return logits of shape (N, C); got {tuple(out.shape)} for N=1")
        return out[0]

    return f


# ============================================================================ contraction


def _factor_block(f1: per_sample.LinearFactor, f2: per_sample.LinearFactor, mode: str) -> torch.Tensor:
    """A Linear layer's NTK term from its factors: (w A1 A2^T + b) * (D1 D2^T), laid out by mode."""
    n1, n2, T = f1.D.shape[0], f2.D.shape[0], f1.D.shape[1]
    scale = (f1.A @ f2.A.T if f1.weight else torch.zeros((n1, n2), dtype=f1.A.dtype, device=f1.A.device)) + (
        1.0 if f1.bias else 0.0
    )
    if mode in ("sum", "trace"):  # sum over the targets: D (n, T, out) -> (n, T out)
        return scale * (f1.D.reshape(n1, -1) @ f2.D.reshape(n2, -1).T)
    DD = (f1.D.reshape(n1 * T, -1) @ f2.D.reshape(n2 * T, -1).T).reshape(n1, T, n2, T).permute(0, 2, 1, 3)
    return scale[:, :, None, None] * DD


def _contract(J1: dict, J2: dict, mode: str) -> torch.Tensor:
    """Theta block from per-parameter Jacobians J[k] of shape (b, *p) ("sum") or (b, C, *p).

    Entries that are :class:`deep.per_sample.LinearFactor` contribute their factored term.
    """
    total: torch.Tensor | None = None
    C = 1
    for k in J1:
        a, b = J1[k], J2[k]
        if isinstance(a, per_sample.LinearFactor):
            blk, C = _factor_block(a, b, mode), a.D.shape[1]
        elif mode in ("sum", "trace"):  # (b1, P) or (b1, C*P): one matmul sums over p (and c)
            blk = a.reshape(a.shape[0], -1) @ b.reshape(b.shape[0], -1).T
            C = a.shape[1] if mode == "trace" else 1
        else:
            n1, n2, C = a.shape[0], b.shape[0], a.shape[1]
            blk = (a.reshape(n1 * C, -1) @ b.reshape(n2 * C, -1).T).reshape(n1, C, n2, C).permute(0, 2, 1, 3)
        total = blk if total is None else total + blk
    assert total is not None  # J1 holds at least one parameter: _split_params refuses an empty selection
    if mode == "trace":
        total = total / C
    return total


def _transpose(block: torch.Tensor, mode: str) -> torch.Tensor:
    """Theta(x2, x1) from Theta(x1, x2): swap the samples (and the logits in "full" mode)."""
    return block.T if mode != "full" else block.permute(1, 0, 3, 2)


def _assemble(
    jac: Callable[[torch.Tensor], dict],
    X1: torch.Tensor,
    X2: torch.Tensor | None,
    mode: str,
    block: int,
    cache_cols: bool,
    out_shape: tuple,
    like: torch.Tensor,
) -> torch.Tensor:
    sym = X2 is None
    Xc = X1 if X2 is None else X2  # X2 is None exactly when sym
    K = torch.empty(out_shape, dtype=like.dtype, device=like.device)
    rows = list(iter_blocks(X1.shape[0], block))
    cols = rows if sym else list(iter_blocks(Xc.shape[0], block))
    cache: dict[int, dict] = {}

    def col_jac(j: int) -> dict:
        if j in cache:
            return cache[j]
        J = jac(Xc[cols[j]])
        if cache_cols:
            cache[j] = J
        return J

    for i, rs in enumerate(rows):
        J1 = col_jac(i) if sym else jac(X1[rs])
        for j, cs in enumerate(cols):
            if sym and j < i:
                continue
            J2 = J1 if (sym and j == i) else col_jac(j)
            blk = _contract(J1, J2, mode)
            if sym and j == i:
                blk = 0.5 * (blk + _transpose(blk, mode))
            K[rs, cs] = blk
            if sym and j > i:
                K[cs, rs] = _transpose(blk, mode)
    return K


# ============================================================================ MLP fast path


def _is_plain_mlp(model: nn.Module, params: Params, mode: str) -> TypeGuard[NTKMLP]:
    """True when :func:`_ntk_mlp` applies: an NTKMLP (not a subclass), all parameters trained, mode sum/trace."""
    from deep.models import NTKMLP

    return (
        type(model) is NTKMLP and params is None and mode in ("sum", "trace") and all(p.requires_grad for p in model.parameters())
    )


def _mlp_factors(model: NTKMLP, X: torch.Tensor, mode: str, dtype: torch.dtype) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer l = 1..L+1: (s_l a_{l-1}(X), delta_l(X)) with delta as (n, C*out_l) ("trace") or (n, out_l) ("sum").

    a_0 = x, a_l = relu(h^l); delta_l = d(target)/d(h^l), backpropagated in closed form from
    delta_{L+1} = 1 (target sum_c f_c) or = I_C (one target per logit, stacked along the rows).
    """
    W = [w.detach().to(device=X.device, dtype=dtype) for w in model.weights]
    b = [v.detach().to(device=X.device, dtype=dtype) for v in model.biases]
    beta = model.bias
    scales = [1.0 / math.sqrt(model.in_features)] + [math.sqrt(2.0 / model.width)] * (len(W) - 1)
    a = X.flatten(1)
    if a.shape[1] != model.in_features:
        raise ValueError(f"NTKMLP: input has {a.shape[1]} features after flattening but in_features={model.in_features}")
    inputs, masks = [], []
    for s, w, bb in zip(scales, W, b):
        inputs.append(s * a)
        h = inputs[-1] @ w.T + beta * bb
        masks.append(h > 0)  # relu'(h): autograd's convention, 0 at h = 0
        a = torch.relu(h)
    n, C = X.shape[0], W[-1].shape[0]
    if mode == "sum":
        delta = torch.ones(n, C, dtype=dtype, device=X.device)
    else:
        delta = torch.eye(C, dtype=dtype, device=X.device).expand(n, C, C)
    deltas = [delta]
    for layer in range(len(W) - 1, 0, -1):  # delta_l = (s_{l+1} delta_{l+1} W_{l+1}) * relu'(h^l)
        mask = masks[layer - 1].to(dtype)  # (n, m)
        delta = (scales[layer] * delta @ W[layer]) * (mask if mode == "sum" else mask.unsqueeze(1))
        deltas.append(delta)
    deltas.reverse()
    return [(A, D.reshape(n, -1)) for A, D in zip(inputs, deltas)]


def _ntk_mlp(model: NTKMLP, X1: torch.Tensor, X2: torch.Tensor | None, mode: str, dtype: torch.dtype) -> torch.Tensor:
    """Exact empirical NTK of an :class:`deep.models.NTKMLP` by the layer-wise decomposition.

    With a_{l-1} the input of layer l (x, then relu(h^{l-1})), s_l its weight scale (1/sqrt(d),
    then sqrt(2/m)) and delta_l(x) = d target / d h^l, the gradient of layer l's weight is
    s_l delta_l a_{l-1}^T and that of its bias beta delta_l, so (Jacot et al. 2018)

        Theta(x, x') = sum_{l=1}^{L+1} (s_l^2 <a_{l-1}(x), a_{l-1}(x')> + beta^2) <delta_l(x), delta_l(x')>

    ("trace": the delta inner product also sums over the C logits, then / C). Two GEMMs per
    layer, O(n^2 (d + L m C)) flops against O(n^2 P) for the Jacobian contraction.
    """
    with torch.no_grad():
        F1 = _mlp_factors(model, X1, mode, dtype)
        F2 = F1 if X2 is None else _mlp_factors(model, X2, mode, dtype)
        beta2 = model.bias**2
        K: torch.Tensor | None = None
        for (A1, D1), (A2, D2) in zip(F1, F2):
            term = (A1 @ A2.T + beta2) * (D1 @ D2.T)
            K = term if K is None else K + term
        assert K is not None  # an NTKMLP has depth >= 1, hence at least two layers
        if mode == "trace":
            K = K / model.weights[-1].shape[0]
        if X2 is None:
            K = 0.5 * (K + K.T)
    return K


# ============================================================================ layer-wise per-example gradients


def _examples_independent(model: nn.Module, params: dict, X: torch.Tensor) -> bool:
    """True when the logits of a batch equal those of its examples run one at a time.

    A cheap guard for the batched per-example gradients of :mod:`deep.per_sample`, which are
    only valid when examples do not interact (e.g. no BatchNorm on batch statistics).
    """
    x = X[:2] if X.shape[0] >= 2 else torch.cat((X[:1], X[:1] + 1.0))
    with torch.no_grad():
        batch = functional_call(model, params, (x,))
        alone = torch.cat([functional_call(model, params, (x[i : i + 1],)) for i in range(x.shape[0])])
    if batch.shape != alone.shape:
        return False
    tol = 100 * torch.finfo(x.dtype).eps * (1.0 + float(alone.abs().max()))
    return bool((batch - alone).abs().max() <= tol)


def _layers_jacobian(
    model: nn.Module, diff: dict, const: dict, mode: str, fn: str, X1: torch.Tensor, *, strict: bool
) -> Callable[[torch.Tensor], dict] | None:
    """Per-example Jacobians by :func:`deep.per_sample.batched_jacobian`, or None if it does not apply.

    With ``strict`` (method="layers") a reason it does not apply is raised as a ValueError.
    """
    plan, why = per_sample.plan(model, list(diff))
    if plan is not None and not _examples_independent(model, {**const, **diff}, X1):
        plan, why = None, "the examples of a batch interact in eval mode (batched and one-at-a-time logits differ)"
    if plan is None:
        if strict:
            raise ValueError(f"{fn}: method='layers' does not apply to this model: {why}; use method='vmap'")
        return None

    def empty_like_rows(v: torch.Tensor, n: int) -> torch.Tensor:
        return torch.empty((n, *v.shape[1:]), dtype=v.dtype, device=v.device)

    def jac(X: torch.Tensor) -> dict:
        out: dict[str, Any] = {}
        n = X.shape[0]
        for rs in iter_blocks(n, _LAYER_CHUNK):
            part = per_sample.batched_jacobian(model, plan, diff, const, X[rs], mode, factor_linear=True)
            for k, v in part.items():
                if isinstance(v, per_sample.LinearFactor):
                    if k not in out:
                        out[k] = per_sample.LinearFactor(
                            A=empty_like_rows(v.A, n), D=empty_like_rows(v.D, n), weight=v.weight, bias=v.bias, names=v.names
                        )
                    out[k].A[rs], out[k].D[rs] = v.A, v.D
                else:
                    if k not in out:
                        out[k] = empty_like_rows(v, n)
                    out[k][rs] = v
        return out

    return jac


def _check_call(
    fn: str, model: nn.Module, X1: Any, X2: Any, mode: str, method: str, dtype: Any
) -> tuple[torch.Tensor, torch.Tensor | None, torch.dtype]:
    """Checked (X1, X2, working dtype) of an empirical-NTK call."""
    check_param(fn, "mode", mode, CONSTRAINTS["mode"])
    check_param(fn, "method", method, CONSTRAINTS["method"])
    device, default = _check_model(fn, model)
    dtype = _check_dtype(fn, dtype, default)
    X1 = _check_inputs(fn, "X1", X1, device=device, dtype=dtype)
    X2 = None if X2 is None else _check_inputs(fn, "X2", X2, device=device, dtype=dtype, like=X1)
    return X1, X2, dtype


def _jacobian_source(
    model: nn.Module, diff: dict, const: dict, X1: torch.Tensor, mode: str, method: str, fn: str, dtype: torch.dtype
) -> tuple[str, int, Callable[[torch.Tensor], dict], int]:
    """(method used, number of logits C, X -> per-example Jacobians, bytes of Jacobian per example).

    Applies the ``method`` rule of :func:`empirical_ntk`; the model must be in eval mode.
    """
    f = _forward_one(model, const, fn)
    with torch.no_grad():
        C = int(f(diff, X1[0]).shape[0])
    n_par = sum(t.numel() for t in diff.values())
    itemsize = torch.finfo(dtype).bits // 8
    layers = None if method == "vmap" else _layers_jacobian(model, diff, const, mode, fn, X1, strict=method == "layers")
    if layers is not None:
        probe = layers(X1[:1])  # one example: which layers come factored, and the bytes per example
        factored = sum(diff[k].numel() for v in probe.values() if isinstance(v, per_sample.LinearFactor) for k in v.names)
        if not (method == "auto" and mode == "sum" and factored < 0.5 * n_par):
            size = sum(v.A.numel() + v.D.numel() if isinstance(v, per_sample.LinearFactor) else v.numel() for v in probe.values())
            return "layers", C, layers, size * itemsize
        # mostly convolutions: vmap(grad) was faster in "sum" mode (see empirical_ntk's docstring)
    one = vmap(grad(lambda d, x: f(d, x).sum()), in_dims=(None, 0)) if mode == "sum" else vmap(jacrev(f), in_dims=(None, 0))
    return "vmap", C, lambda X: one(diff, X), n_par * (1 if mode == "sum" else C) * itemsize


def ntk_method(
    model: nn.Module, X: Any, *, mode: str = "sum", params: Params = None, dtype: torch.dtype | None = None, method: str = "auto"
) -> str:
    """Which way :func:`empirical_ntk` would compute the NTK of ``model`` on inputs like ``X``.

    Returns ``"ntkmlp-closed-form"``, ``"layers"`` or ``"vmap"`` by the rule of
    :func:`empirical_ntk`'s ``method`` (it runs the same checks and a one-example probe), so
    benchmarks and logs can state the path taken. ``method="layers"`` raises when that path
    does not apply, as :func:`empirical_ntk` does.

    Examples
    --------
    >>> import torch
    >>> ntk_method(torch.nn.Linear(3, 2), torch.randn(4, 3))
    'layers'
    """
    fn = "ntk_method"
    X, _, dtype = _check_call(fn, model, X, None, mode, method, dtype)
    if method == "auto" and _is_plain_mlp(model, params, mode):
        return "ntkmlp-closed-form"
    diff, const = _split_params(model, params, fn, device=X.device, dtype=dtype)
    with _eval_mode(model):
        return _jacobian_source(model, diff, const, X, mode, method, fn, dtype)[0]


# ============================================================================ public


def empirical_ntk(
    model: nn.Module,
    X1: Any,
    X2: Any = None,
    *,
    mode: str = "sum",
    memory_budget: int = 2**30,
    params: Params = None,
    dtype: torch.dtype | None = None,
    method: str = "auto",
) -> torch.Tensor:
    """Empirical NTK ``Theta(X1, X2)`` of ``model`` at its current parameters.

    ``Theta_cd(x, x') = <d f_c(x)/d p, d f_d(x')/d p>`` summed over the selected parameters
    p (Jacot et al. 2018, eq. 4), with the model in eval mode (restored afterwards). Per-example
    Jacobians are built over blocks of inputs and contracted with one matmul per parameter;
    each block holds at most ``memory_budget / 2`` bytes of Jacobian, and
    the column Jacobians are computed once and kept when all of them fit in that half
    (otherwise they are recomputed for every row block: less memory, more time).
    With ``X2=None`` only the upper block triangle is computed and mirrored, and the result
    is exactly symmetric.

    **How the per-example Jacobians are built** (``method``):

    - ``"layers"``: one batched forward pass and one backward pass per logit (one in "sum"
      mode) of 32 examples at a time, with the per-example gradient formulas of
      :mod:`deep.per_sample` (dW = sum_p delta_p a_p^T for Linear and Conv2d layers, and the
      BatchNorm affine terms). Needs every selected parameter to live in an ``nn.Linear``,
      ``nn.Conv2d`` (zero padding, groups=1) or eval-mode ``nn.BatchNorm`` layer and the
      examples not to interact; both are checked (a ValueError says which failed).
    - ``"vmap"``: ``vmap(jacrev(f))`` (``vmap(grad(sum f))`` in "sum" mode) of torch.func;
      any model.
      ``nn.Linear`` layers applied once to 2-d inputs are not expanded into per-example
      gradients at all: their term is ``(A A'^T + 1) * (D D'^T)`` from the layer inputs A and
      output cotangents D (see :class:`deep.per_sample.LinearFactor`), so MLPs cost
      O(n^2 (in + C out)) per layer instead of O(n^2 C in out).
    - ``"auto"`` (default): the NTKMLP closed form below when it applies; else "layers" when
      it applies, except in "sum" mode when less than half of the parameters sit in such
      factored Linear layers; else "vmap".

    Measured on 2 CPU cores (512 CIFAR-sized inputs, float32; see ``benchmarks/BASELINES.md``):
    fastnet 16/32/32, "sum": vmap 0.63 s, layers 0.74-0.92 s; "trace": layers 4.3-4.8 s,
    vmap 7.7-8.3 s, the per-example loop 2.0-2.5 s / 11.7-18.6 s. A plain ``nn.Sequential``
    MLP 3072-256-256-10: "sum" layers 0.09 s vs vmap 4.8-6.2 s; "trace" 0.49 s vs 285 s.

    **NTKMLP fast path.** When ``model`` is a :class:`deep.models.NTKMLP` (not a subclass),
    ``params`` is None, every parameter has ``requires_grad`` and ``mode`` is "sum" or
    "trace", the NTK is computed exactly, without Jacobians, by the standard layer-wise
    decomposition of an MLP's NTK (Jacot et al. 2018). For layer l = 1..L+1 with input
    a_{l-1} (x for l = 1, relu(h^{l-1}) after), weight scale s_l (1/sqrt(d) for l = 1,
    sqrt(2/m) after) and output cotangent delta_l(x) = d target(x) / d h^l,

        Theta(x, x') = sum_l (s_l^2 <a_{l-1}(x), a_{l-1}(x')> + beta^2) * <delta_l(x), delta_l(x')>

    i.e. ``sum_l (s_l^2 A_l A_l'^T + beta^2) * (D_l D_l'^T)`` with GEMMs over the batch. In
    "sum" mode the target is sum_c f_c (delta_{L+1} = 1); in "trace" mode delta_l holds one
    row per logit (delta_{L+1} = I_C), the inner product sums over them and the result is
    divided by C. ``memory_budget`` does not apply (the factors take O(n (d + L m C))).
    Pass ``params`` as a list of all parameter names to force the generic path.

    Parameters
    ----------
    model : torch.nn.Module
        Maps a batch (N, ...) to logits (N, C).
    X1 : tensor or array (n1, ...)
        Inputs, moved to the model's device.
    X2 : tensor or array (n2, ...), optional
        Second inputs (same per-example shape); None means X1 (symmetric case).
    mode : {"sum", "trace", "full"}, default="sum"
        "sum": NTK of sum_c f_c, (n1, n2). "trace": (1/C) sum_c Theta_cc, (n1, n2).
        "full": Theta_cd, (n1, n2, C, C).
    memory_budget : int, default=2**30
        Bytes allowed for Jacobian blocks. Backward activations of a block come on top
        (they scale with the block size times C in "trace"/"full" mode).
    params : None, mapping name -> tensor, or sequence of names, default=None
        Parameters to differentiate: None takes every parameter with ``requires_grad``;
        a mapping also supplies their values (e.g. from a checkpoint); the rest are constants.
    dtype : torch.dtype or None, default=None
        Compute in this dtype (e.g. ``torch.float64`` for analysis); default the model's.
    method : {"auto", "layers", "vmap"}, default="auto"
        How per-example Jacobians are built (see above). Every method gives the same kernel
        up to round-off.

    Returns
    -------
    torch.Tensor
        (n1, n2) or (n1, n2, C, C), on the model's device in the working dtype.

    See Also
    --------
    empirical_ntk_loop : the per-example autograd loop (slow reference).
    deep.models.NTKMLP.ntk : the infinite-width limit of the NTK-parameterised MLP.

    Examples
    --------
    >>> import torch
    >>> lin = torch.nn.Linear(3, 1)
    >>> X = torch.eye(3)
    >>> torch.allclose(empirical_ntk(lin, X), X @ X.T + 1)
    True
    """
    fn = "empirical_ntk"
    check_param(fn, "memory_budget", memory_budget, CONSTRAINTS["memory_budget"])
    X1, X2, dtype = _check_call(fn, model, X1, X2, mode, method, dtype)
    if method == "auto" and _is_plain_mlp(model, params, mode):
        with _eval_mode(model):
            return _ntk_mlp(model, X1, X2, mode, dtype)
    diff, const = _split_params(model, params, fn, device=X1.device, dtype=dtype)
    with _eval_mode(model):
        _, C, jac_fn, per_example = _jacobian_source(model, diff, const, X1, mode, method, fn, dtype)
        half = memory_budget // 2
        block = max(1, half // per_example)
        n2 = X1.shape[0] if X2 is None else X2.shape[0]
        cache_cols = n2 * per_example <= half
        n1 = X1.shape[0]
        shape = (n1, n2) if mode != "full" else (n1, n2, C, C)
        return _assemble(jac_fn, X1, X2, mode, block, cache_cols, shape, X1)


def empirical_ntk_loop(
    model: nn.Module,
    X1: Any,
    X2: Any = None,
    *,
    mode: str = "sum",
    params: Params = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Empirical NTK by the plain loop: one ``torch.autograd.grad`` per example and logit.

    The slow reference :func:`empirical_ntk` is checked and benchmarked against. For each
    example it runs one forward pass, then one backward pass per logit (one for the logit sum
    in ``mode="sum"``), flattens and concatenates the parameter gradients into a row of the
    dense Jacobian J (n, C, P), and returns the contraction J1 J2^T in the layout of ``mode``.
    Memory is the whole Jacobian, O(n C P). The model is in eval mode while it runs.

    Parameters
    ----------
    model, X1, X2, mode, params, dtype
        As in :func:`empirical_ntk`.

    Returns
    -------
    torch.Tensor
        (n1, n2) or (n1, n2, C, C).
    """
    fn = "empirical_ntk_loop"
    check_param(fn, "mode", mode, CONSTRAINTS["mode"])
    device, default = _check_model(fn, model)
    dtype = _check_dtype(fn, dtype, default)
    X1 = _check_inputs(fn, "X1", X1, device=device, dtype=dtype)
    X2 = None if X2 is None else _check_inputs(fn, "X2", X2, device=device, dtype=dtype, like=X1)
    diff, const = _split_params(model, params, fn, device=device, dtype=dtype)
    leaves = {k: v.clone().requires_grad_(True) for k, v in diff.items()}
    names = list(leaves)

    def jacobian(X: torch.Tensor) -> torch.Tensor:
        rows = []
        for i in range(X.shape[0]):
            out = functional_call(model, {**const, **leaves}, (X[i : i + 1],))
            if out.ndim != 2:
                raise ValueError(f"{fn}: model must return logits of shape (N, C); got {tuple(out.shape)} for N=1")
            targets = [out[0].sum()] if mode == "sum" else list(out[0])
            per_logit = []
            for t, target in enumerate(targets):
                grads = torch.autograd.grad(
                    target, [leaves[k] for k in names], retain_graph=t < len(targets) - 1, allow_unused=True
                )
                per_logit.append(
                    torch.cat([(torch.zeros_like(leaves[k]) if g is None else g).reshape(-1) for k, g in zip(names, grads)])
                )
            rows.append(torch.stack(per_logit))
        return torch.stack(rows)  # (n, C or 1, P)

    with _eval_mode(model):
        J1 = jacobian(X1)
        J2 = J1 if X2 is None else jacobian(X2)
    n1, n2, C = J1.shape[0], J2.shape[0], J1.shape[1]
    if mode == "sum":
        return J1[:, 0] @ J2[:, 0].T
    if mode == "trace":
        return J1.reshape(n1, -1) @ J2.reshape(n2, -1).T / C
    return (J1.reshape(n1 * C, -1) @ J2.reshape(n2 * C, -1).T).reshape(n1, C, n2, C).permute(0, 2, 1, 3)
