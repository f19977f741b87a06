"""The machinery every Gram matrix shares: parameter checks, input pairing and the blocked fill.

:func:`prepare_pair` checks a kernel's parameters against :data:`CONSTRAINTS` and
its inputs (one backend and device; mixed float dtypes follow numpy's promotion), and
:func:`fill_gram` fills the (n, m) result in row blocks of at most ``memory_budget`` bytes
of scratch, computing only the upper blocks of a symmetric Gram and mirroring them, so
the result is exactly symmetric. The kernels themselves live in :mod:`kernels.functions`
(dot-product and distance kernels) and :mod:`kernels.relu` (the ReLU NNGP/NTK recursion).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType
from typing import Any

import array_api_compat

from kernels.backend import device
from kernels.checks import Interval, Options, check_features, check_param, check_params, check_same_namespace, iter_blocks

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "CONSTRAINTS",
    "COMMON_PARAMS",
    "DTYPES",
    "dtype_name",
    "dtype_label",
    "prepare_pair",
    "itemsize",
    "fill_gram",
    "diag_mask",
    "check_bias_scale",
]

DEFAULT_MEMORY_BUDGET = 256 * 2**20  # bytes of scratch per Gram block

DTYPES = ("float32", "float64")
SYM_MAX_ROWS = 512  # row-block cap for symmetric Grams (see fill_gram)

# Parameter bounds as data (checked by kernels.checks.check_params).
# Float parameters are finite: an explicit math.inf bound with an open end refuses inf
# (gamma = inf would give exp(-inf * 0) = NaN on the diagonal).
CONSTRAINTS: dict[str, Interval | Options] = {
    "gamma": Interval(float, 0, math.inf, "neither"),
    "degree": Interval(int, 1, None, "both"),
    "coef0": Interval(float, 0, math.inf, "left"),
    "depth": Interval(int, 1, None, "both"),
    "bias": Interval(float, 0, math.inf, "left"),
    "memory_budget": Interval(int, 1, None, "both"),
    "dtype": Options(DTYPES),
}

# Parameters every kernel accepts besides its own (not listed by kernel_params).
COMMON_PARAMS = ("dtype", "memory_budget")


# ----------------------------------------------------------------------------- checks


def dtype_name(fn: str, dtype: Any) -> str | None:
    """'float32'/'float64' for a dtype given as a string, numpy or torch dtype."""
    if dtype is None:
        return None
    if isinstance(dtype, str):
        name = dtype
    else:
        name = getattr(dtype, "__name__", None) or str(dtype)
        name = name.rsplit(".", 1)[-1]
    return check_param(fn, "dtype", name, CONSTRAINTS["dtype"])


def prepare_pair(
    fn: str, X: Any, Z: Any, dtype: Any, memory_budget: Any, **params: Any
) -> tuple[Any, Any, ModuleType, bool, int]:
    """Check parameters and features; return ``(X, Z, xp, symmetric, budget)``.

    ``Z`` must share ``X``'s backend and device. Arrays of mixed float dtypes follow
    numpy's promotion (float32 with float64 computes in float64) unless ``dtype`` is
    given; a list ``Z`` has no dtype of its own and takes ``X``'s.
    """
    check_params(fn, CONSTRAINTS, **{k: v for k, v in params.items() if not (k == "gamma" and v is None)})
    if memory_budget is not None:
        check_param(fn, "memory_budget", memory_budget, CONSTRAINTS["memory_budget"])
    name = dtype_name(fn, dtype)
    symmetric = Z is None or Z is X
    Xa, xp = check_features(fn, "X", X)
    if name is not None:
        Xa = xp.astype(Xa, getattr(xp, name))
    if symmetric:
        Za = Xa
    else:
        Za, _ = check_features(fn, "Z", Z, like=Xa, n_features=Xa.shape[1])
        check_same_namespace(fn, X=Xa, Z=Za)
        if device(Za) != device(Xa):
            raise TypeError(f"{fn}: Z is on device {device(Za)} but X is on {device(Xa)}; move both to one device")
        if Za.dtype != Xa.dtype:  # an explicit dtype or a list Z (no dtype of its own) takes X's; else numpy's promotion
            own_dtype = name is None and array_api_compat.is_array_api_obj(Z)
            common = xp.result_type(Xa.dtype, Za.dtype) if own_dtype else Xa.dtype
            Xa, Za = xp.astype(Xa, common), xp.astype(Za, common)
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else int(memory_budget)
    return Xa, Za, xp, symmetric, budget


def dtype_label(dtype: Any) -> str:
    return str(dtype).rsplit(".", 1)[-1]


# ----------------------------------------------------------------------------- blocked fill


def itemsize(xp: ModuleType, dtype: Any) -> int:
    return xp.finfo(dtype).bits // 8


def fill_gram(
    X: Any, Z: Any, xp: ModuleType, block_fn: Callable[[slice, slice, bool], Any], *, symmetric: bool, row_bytes: int, budget: int
) -> Any:
    """Fill the (n, m) Gram matrix in row blocks of ``budget // row_bytes`` rows.

    ``block_fn(rows, cols, diag)`` returns ``K[rows, cols]``; ``diag=True`` says that
    the block's leading square ``[:, :len(rows)]`` holds the diagonal of a symmetric
    Gram (so ``K[i, i]`` is at block position ``(i, i)``). For a symmetric Gram only
    ``K[a:b, a:]`` is computed per row block; its diagonal square is symmetrised as
    ``(S + S^T) / 2`` and the part left of the diagonal is copied from the rows above,
    so the result is exactly symmetric (and about half the products are needed).
    """
    n, m = X.shape[0], Z.shape[0]
    rows = max(1, int(budget // max(1, row_bytes)))
    if symmetric:  # small diagonal squares keep the (S + S^T) / 2 pass cheap
        rows = min(rows, SYM_MAX_ROWS)
    out = xp.empty((n, m), dtype=X.dtype, device=device(X))
    for sl in iter_blocks(n, rows):
        a, b = sl.start, sl.stop
        if not symmetric:
            out[a:b, :] = block_fn(sl, slice(0, m), False)
            continue
        blk = block_fn(sl, slice(a, m), True)
        sq = blk[:, : b - a]
        out[a:b, a:b] = (sq + sq.T) / 2
        out[a:b, b:] = blk[:, b - a :]
        if a > 0:
            out[a:b, :a] = out[:a, a:b].T
    return out


def diag_mask(xp: ModuleType, nb: int, nc: int, like: Any) -> Any:
    return xp.eye(nb, nc, dtype=xp.bool, device=device(like))


def check_bias_scale(fn: str, bias: float, layers: int, xp: ModuleType, dtype: Any, what: str) -> float:
    """``bias**2`` if the ReLU recursion stays finite in ``dtype``, else a one-line ``ValueError``.

    The variances grow to ``|x|^2 / d + (layers + 1) bias^2`` and the arc-cosine step multiplies
    two of them (``sqrt(a b)``), so ``(layers + 1) bias^2`` must stay below ``sqrt(max float)``:
    bias at most ``max^(1/4) / sqrt(layers + 1)`` (about 5.8e76 for 3 layers in float64).
    ``what`` names the layer count in the message (``"depth=3"``, ``"3 convolutions"``).
    """
    beta2 = float(bias) * float(bias)
    limit = math.sqrt(float(xp.finfo(dtype).max))
    if not beta2 * (layers + 1) < limit:
        top = math.sqrt(limit / (layers + 1))
        raise ValueError(
            f"{fn}: bias must be a float in [0, {top:.4g}] for {what} in {dtype_label(dtype)} "
            f"((layers + 1) * bias**2 must stay below sqrt(max float): the recursion multiplies two variances); got {bias!r}"
        )
    return beta2
