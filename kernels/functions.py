"""Kernel functions: Gram matrices of classical kernels and of infinitely wide ReLU nets.

Every kernel has the signature ::

    f(X, Z=None, *, <kernel parameters>, dtype=None, memory_budget=None) -> K (n, m)

``Z=None`` means ``Z = X``; the Gram matrix is then exactly symmetric (upper row
blocks are computed and mirrored). The result lives in the array namespace and on
the device of ``X``, in its float dtype (float32 stays float32, integer and list
input becomes float64); ``dtype="float32"`` or ``"float64"`` asks for another one.

Gram matrices are filled in row blocks by BLAS products, each block written into
the preallocated output, so a 20k x 20k Gram needs at most one extra block of
scratch. The block height comes from ``memory_budget`` (bytes, default 256 MiB)
divided by the scratch bytes per row. For numpy arrays the elementwise recursion of the
ReLU kernels (``arccos`` and about 20 passes per layer, single-threaded in numpy) runs on
cache-sized row tiles in a thread pool with one thread per available core (numpy releases
the GIL); the result is bit-identical to one thread.

Distance kernels (docs/derivations.md, section 1): ``rbf`` = exp(-gamma ||x - z||_2^2) and
``laplace`` (alias ``laplacian``) = exp(-gamma ||x - z||_1) follow scikit-learn;
``exponential`` = exp(-gamma ||x - z||_2) is the "Laplace kernel" of the NTK literature.
"""

from __future__ import annotations

import inspect
import math
import os
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any, Callable

import array_api_compat

from kernels._backend import device
from kernels._checks import Interval, Options, check_features, check_param, check_params, check_same_namespace, iter_blocks

__all__ = ["KERNELS", "exponential", "gram", "kernel_params", "laplace", "laplacian", "linear", "nngp_relu", "ntk_relu", "ntk_two_layer", "polynomial", "rbf"]

DEFAULT_MEMORY_BUDGET = 256 * 2**20  # bytes of scratch per Gram block

_DTYPES = ("float32", "float64")
_SYM_MAX_ROWS = 512  # row-block cap for symmetric Grams (see _fill_gram)

# Parameter bounds as data (checked by kernels._checks.check_params).
# Float parameters are finite: an explicit math.inf bound with an open end refuses inf
# (gamma = inf would give exp(-inf * 0) = NaN on the diagonal).
_CONSTRAINTS: dict[str, Interval | Options] = {
    "gamma": Interval(float, 0, math.inf, "neither"),
    "degree": Interval(int, 1, None, "both"),
    "coef0": Interval(float, 0, math.inf, "left"),
    "depth": Interval(int, 1, None, "both"),
    "bias": Interval(float, 0, math.inf, "left"),
    "memory_budget": Interval(int, 1, None, "both"),
    "dtype": Options(_DTYPES),
}

# Parameters every kernel accepts besides its own (not listed by kernel_params).
_COMMON_PARAMS = ("dtype", "memory_budget")


# ----------------------------------------------------------------------------- checks


def _dtype_name(fn: str, dtype: Any) -> str | None:
    """'float32'/'float64' for a dtype given as a string, numpy or torch dtype."""
    if dtype is None:
        return None
    if isinstance(dtype, str):
        name = dtype
    else:
        name = getattr(dtype, "__name__", None) or str(dtype)
        name = name.rsplit(".", 1)[-1]
    return check_param(fn, "dtype", name, _CONSTRAINTS["dtype"])


def _prepare(fn: str, X: Any, Z: Any, dtype: Any, memory_budget: Any, **params: Any) -> tuple[Any, Any, ModuleType, bool, int]:
    """Check parameters and features; return ``(X, Z, xp, symmetric, budget)``.

    ``Z`` must share ``X``'s backend and device. Arrays of mixed float dtypes follow
    numpy's promotion (float32 with float64 computes in float64) unless ``dtype`` is
    given; a list ``Z`` has no dtype of its own and takes ``X``'s.
    """
    check_params(fn, _CONSTRAINTS, **{k: v for k, v in params.items() if not (k == "gamma" and v is None)})
    if memory_budget is not None:
        check_param(fn, "memory_budget", memory_budget, _CONSTRAINTS["memory_budget"])
    name = _dtype_name(fn, dtype)
    symmetric = Z is None or Z is X
    Xa, xp = check_features(X, fn, "X")
    if name is not None:
        Xa = xp.astype(Xa, getattr(xp, name))
    if symmetric:
        Za = Xa
    else:
        Za, _ = check_features(Z, fn, "Z", like=Xa, n_features=Xa.shape[1])
        check_same_namespace(fn, X=Xa, Z=Za)
        if device(Za) != device(Xa):
            raise TypeError(f"{fn}: Z is on device {device(Za)} but X is on {device(Xa)}; move both to one device")
        if Za.dtype != Xa.dtype:  # an explicit dtype or a list Z (no dtype of its own) takes X's; else numpy's promotion
            own_dtype = name is None and array_api_compat.is_array_api_obj(Z)
            common = xp.result_type(Xa.dtype, Za.dtype) if own_dtype else Xa.dtype
            Xa, Za = xp.astype(Xa, common), xp.astype(Za, common)
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else int(memory_budget)
    return Xa, Za, xp, symmetric, budget


def _dtype_label(dtype: Any) -> str:
    return str(dtype).rsplit(".", 1)[-1]


def _gamma(gamma: float | None, X: Any) -> float:
    """scikit-learn's default ``gamma = 1 / n_features``."""
    return 1.0 / X.shape[1] if gamma is None else float(gamma)


# ----------------------------------------------------------------------------- blocked fill


def _itemsize(xp: ModuleType, dtype: Any) -> int:
    return xp.finfo(dtype).bits // 8


def _fill_gram(X: Any, Z: Any, xp: ModuleType, block_fn: Callable[[slice, slice, bool], Any], *, symmetric: bool, row_bytes: int, budget: int) -> Any:
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
        rows = min(rows, _SYM_MAX_ROWS)
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


def _diag_mask(xp: ModuleType, nb: int, nc: int, like: Any) -> Any:
    return xp.eye(nb, nc, dtype=xp.bool, device=device(like))


def _sq_distances(xp: ModuleType, Xc: Any, Zc: Any, sx: Any, sz: Any, rows: slice, cols: slice, diag: bool) -> Any:
    """``||x - z||^2 = |x|^2 + |z|^2 - 2 x.z`` for a block, clamped at 0, 0 on the diagonal."""
    D = sx[rows][:, None] + sz[cols][None, :] - 2 * (Xc[rows, :] @ Zc[cols, :].T)
    D = xp.clip(D, min=0)
    if diag:
        D = xp.where(_diag_mask(xp, D.shape[0], D.shape[1], D), 0.0, D)
    return D


def _centred(xp: ModuleType, X: Any, Z: Any, symmetric: bool) -> tuple[Any, Any, Any, Any]:
    """Shift X and Z by X's mean (distances are unchanged, cancellation is smaller)."""
    mu = xp.mean(X, axis=0)
    Xc = X - mu
    Zc = Xc if symmetric else Z - mu
    sx = xp.sum(Xc * Xc, axis=1)
    sz = sx if symmetric else xp.sum(Zc * Zc, axis=1)
    return Xc, Zc, sx, sz


# ----------------------------------------------------------------------------- dot-product kernels


def linear(X: Any, Z: Any = None, *, dtype: Any = None, memory_budget: int | None = None) -> Any:
    """Linear kernel ``k(x, z) = <x, z>``, i.e. ``K = X Z^T``.

    Parameters
    ----------
    X : array of shape (n, d)
        Rows are samples. numpy, torch or CuPy; lists become numpy float64.
    Z : array of shape (m, d), default=None
        Second set of samples; ``None`` means ``X`` (exactly symmetric result).
    dtype : {"float32", "float64"} or backend dtype, default=None
        Output and working dtype; ``None`` keeps ``X``'s float dtype.
    memory_budget : int, default=None
        Bytes of scratch per row block (default 256 MiB).

    Returns
    -------
    K : array of shape (n, m)
        In ``X``'s namespace, device and (working) dtype.

    See Also
    --------
    sklearn.metrics.pairwise.linear_kernel : the same kernel in numpy.

    Examples
    --------
    >>> import numpy as np
    >>> linear(np.array([[1.0, 2.0], [0.0, 1.0]])).tolist()
    [[5.0, 2.0], [2.0, 1.0]]
    """
    fn = "linear"
    X, Z, xp, sym, budget = _prepare(fn, X, Z, dtype, memory_budget)
    return _fill_gram(X, Z, xp, lambda r, c, _d: X[r, :] @ Z[c, :].T, symmetric=sym, row_bytes=Z.shape[0] * _itemsize(xp, X.dtype), budget=budget)


def polynomial(X: Any, Z: Any = None, *, degree: int = 3, gamma: float | None = None, coef0: float = 1.0, dtype: Any = None, memory_budget: int | None = None) -> Any:
    """Polynomial kernel ``k(x, z) = (gamma <x, z> + coef0) ** degree``.

    Same convention and defaults as :func:`sklearn.metrics.pairwise.polynomial_kernel`.

    Parameters
    ----------
    X, Z : arrays of shape (n, d) and (m, d)
        Samples as rows; ``Z=None`` means ``X``.
    degree : int >= 1, default=3
    gamma : float > 0 (finite), default=None
        ``None`` means ``1 / n_features`` (scikit-learn's default).
    coef0 : float >= 0 (finite), default=1.0
    dtype, memory_budget
        See :func:`linear`.

    Returns
    -------
    K : array of shape (n, m)

    Examples
    --------
    >>> import numpy as np
    >>> polynomial(np.array([[1.0, 1.0]]), degree=2, gamma=1.0, coef0=1.0).tolist()
    [[9.0]]
    """
    fn = "polynomial"
    X, Z, xp, sym, budget = _prepare(fn, X, Z, dtype, memory_budget, degree=degree, gamma=gamma, coef0=coef0)
    g, c0, p = _gamma(gamma, X), float(coef0), int(degree)

    def block(r: slice, c: slice, _d: bool) -> Any:
        return (g * (X[r, :] @ Z[c, :].T) + c0) ** p

    return _fill_gram(X, Z, xp, block, symmetric=sym, row_bytes=2 * Z.shape[0] * _itemsize(xp, X.dtype), budget=budget)


# ----------------------------------------------------------------------------- distance kernels


def rbf(X: Any, Z: Any = None, *, gamma: float | None = None, dtype: Any = None, memory_budget: int | None = None) -> Any:
    """Gaussian (RBF) kernel ``k(x, z) = exp(-gamma ||x - z||_2^2)``.

    scikit-learn's convention (:func:`sklearn.metrics.pairwise.rbf_kernel`);
    docs/derivations.md, section 1. Squared distances come from BLAS as
    ``|x|^2 + |z|^2 - 2 x.z`` after shifting both sets by the mean of ``X``, clamped
    at 0; the diagonal of ``K(X, X)`` is exactly 1.

    Parameters
    ----------
    X, Z : arrays of shape (n, d) and (m, d)
        Samples as rows; ``Z=None`` means ``X``.
    gamma : float > 0 (finite), default=None
        ``None`` means ``1 / n_features`` (scikit-learn's default).
    dtype, memory_budget
        See :func:`linear`.

    Returns
    -------
    K : array of shape (n, m)

    Notes
    -----
    Distances are computed in the working dtype. In float32 the expansion
    ``|x|^2 + |z|^2 - 2 x.z`` loses about ``eps32 * (|x|^2 + |z|^2) ~ 1e-7 |x|^2`` to
    cancellation, so very close pairs of large-norm points get an absolute distance
    error of that size (the mean shift reduces ``|x|``; pass ``dtype="float64"`` when
    it matters).

    Accuracy: ``|K_ij - k(x_i, z_j)| <= 10 eps gamma (|x_i - m|^2 + |z_j - m|^2) K_ij + 4 eps``
    with ``m`` the mean of ``X`` (``tests/test_accuracy_statements.py``, float32 against
    float64 on the same rounded inputs).

    Examples
    --------
    >>> import numpy as np
    >>> round(float(rbf(np.eye(2), gamma=0.5)[0, 1]), 4)
    0.3679
    """
    fn = "rbf"
    X, Z, xp, sym, budget = _prepare(fn, X, Z, dtype, memory_budget, gamma=gamma)
    g = _gamma(gamma, X)
    Xc, Zc, sx, sz = _centred(xp, X, Z, sym)

    def block(r: slice, c: slice, diag: bool) -> Any:
        return xp.exp(-g * _sq_distances(xp, Xc, Zc, sx, sz, r, c, diag))

    return _fill_gram(X, Z, xp, block, symmetric=sym, row_bytes=4 * Z.shape[0] * _itemsize(xp, X.dtype), budget=budget)


def exponential(X: Any, Z: Any = None, *, gamma: float | None = None, dtype: Any = None, memory_budget: int | None = None) -> Any:
    """Exponential kernel ``k(x, z) = exp(-gamma ||x - z||_2)`` (Euclidean norm, not squared).

    This is the kernel called the "Laplace kernel" in the NTK literature (Belkin et
    al. 2018; Geifman et al. 2020; Chen & Xu 2021), whose RKHS equals the ReLU NTK's
    on the sphere. It is *not* scikit-learn's ``laplacian_kernel`` (an L1 distance,
    see :func:`laplace`). Distances as in :func:`rbf`; in float32 the square root
    amplifies their cancellation error for nearly coincident pairs, to an absolute
    error of up to about ``gamma * sqrt(eps32 * (|x|^2 + |z|^2))`` (``|x|`` after the
    mean shift), so prefer float64 when such pairs matter.

    Parameters
    ----------
    X, Z : arrays of shape (n, d) and (m, d)
        Samples as rows; ``Z=None`` means ``X``.
    gamma : float > 0 (finite), default=None
        ``None`` means ``1 / n_features`` (the same default as the other kernels).
    dtype, memory_budget
        See :func:`linear`.

    Returns
    -------
    K : array of shape (n, m)

    References
    ----------
    Geifman et al., "On the similarity between the Laplace and neural tangent
    kernels", NeurIPS 2020. Chen & Xu, "Deep neural tangent kernel and Laplace
    kernel have the same RKHS", ICLR 2021.

    Examples
    --------
    >>> import numpy as np
    >>> round(float(exponential(np.array([[0.0, 0.0], [3.0, 4.0]]), gamma=0.2)[0, 1]), 4)
    0.3679
    """
    fn = "exponential"
    X, Z, xp, sym, budget = _prepare(fn, X, Z, dtype, memory_budget, gamma=gamma)
    g = _gamma(gamma, X)
    Xc, Zc, sx, sz = _centred(xp, X, Z, sym)

    def block(r: slice, c: slice, diag: bool) -> Any:
        return xp.exp(-g * xp.sqrt(_sq_distances(xp, Xc, Zc, sx, sz, r, c, diag)))

    return _fill_gram(X, Z, xp, block, symmetric=sym, row_bytes=4 * Z.shape[0] * _itemsize(xp, X.dtype), budget=budget)


def laplace(X: Any, Z: Any = None, *, gamma: float | None = None, dtype: Any = None, memory_budget: int | None = None) -> Any:
    """L1 Laplacian kernel ``k(x, z) = exp(-gamma ||x - z||_1)`` (alias ``laplacian``).

    scikit-learn's :func:`sklearn.metrics.pairwise.laplacian_kernel`. For the
    Euclidean ``exp(-gamma ||x - z||_2)`` of the NTK literature use
    :func:`exponential`.

    The L1 distance has no matrix-product form: it is computed by broadcasting
    ``|x_i - z_j|`` over row blocks and column chunks sized from ``memory_budget``,
    about ``d`` times more memory traffic than :func:`rbf` (so markedly slower for
    large ``d``).

    Parameters
    ----------
    X, Z : arrays of shape (n, d) and (m, d)
        Samples as rows; ``Z=None`` means ``X``.
    gamma : float > 0 (finite), default=None
        ``None`` means ``1 / n_features`` (scikit-learn's default).
    dtype, memory_budget
        See :func:`linear`.

    Returns
    -------
    K : array of shape (n, m)

    Examples
    --------
    >>> import numpy as np
    >>> round(float(laplace(np.array([[0.0, 0.0], [1.0, -1.0]]), gamma=0.5)[0, 1]), 4)
    0.3679
    """
    fn = "laplace"
    X, Z, xp, sym, budget = _prepare(fn, X, Z, dtype, memory_budget, gamma=gamma)
    g = _gamma(gamma, X)
    item, d, m = _itemsize(xp, X.dtype), X.shape[1], Z.shape[0]
    half = max(1, budget // 2)

    def block(r: slice, c: slice, _d: bool) -> Any:
        Xb = X[r, :]
        nb, nc = Xb.shape[0], c.stop - c.start
        out = xp.empty((nb, nc), dtype=X.dtype, device=device(X))
        chunk = max(1, half // (2 * nb * d * item))  # diff and |diff| of shape (nb, chunk, d)
        for cc in iter_blocks(nc, chunk):
            Zc = Z[c.start + cc.start : c.start + cc.stop, :]
            out[:, cc] = xp.sum(xp.abs(Xb[:, None, :] - Zc[None, :, :]), axis=-1)
        return xp.exp(-g * out)

    return _fill_gram(X, Z, xp, block, symmetric=sym, row_bytes=2 * 2 * m * item, budget=budget)


laplacian = laplace


# ----------------------------------------------------------------------------- ReLU NTK / NNGP


def _relu_recursion(xp: ModuleType, S: Any, a: Any, b: Any, diag_shift: int | None, *, depth: int, beta2: float, ntk: bool) -> Any:
    """Sigma^L or Theta^{L+1} from the Sigma^0 block S (r, c), elementwise.

    ``a`` (r, 1) and ``b`` (1, c) hold ``Sigma^0(x, x)`` of the block's rows and columns;
    ``diag_shift`` = k says that the Gram's diagonal sits at block positions (i, i + k)
    (None: no diagonal in the block).
    """
    pi = math.pi
    theta_ntk = S  # Theta^1
    mask = None
    if diag_shift is not None:
        mask = xp.eye(S.shape[0], S.shape[1], k=diag_shift, dtype=xp.bool, device=device(S))
    for _ in range(depth):
        norm = xp.sqrt(a * b)
        rho = xp.clip(S / xp.where(norm > 0, norm, 1.0), min=-1.0, max=1.0)
        if mask is not None:
            rho = xp.where(mask, 1.0, rho)
        theta = xp.acos(rho)
        sin = xp.sqrt(xp.clip((1 - rho) * (1 + rho), min=0))
        S = norm * (sin + (pi - theta) * rho) / pi + beta2  # Sigma^h
        if ntk:
            theta_ntk = theta_ntk * ((pi - theta) / pi) + S  # Theta^{h+1}
        a, b = a + beta2, b + beta2  # Sigma^h(x, x) = Sigma^{h-1}(x, x) + beta^2
    return theta_ntk if ntk else S


# Blocks with fewer elements run their elementwise recursion in one thread.
_THREAD_MIN_ELEMENTS = 2**18
_TILE_ELEMENTS = 2**17


def _relu_block(xp: ModuleType, X: Any, Z: Any, sx: Any, sz: Any, rows: slice, cols: slice, diag: bool, *, depth: int,
                beta2: float, ntk: bool, pool: ThreadPoolExecutor | None = None, workers: int = 1) -> Any:
    """Sigma^L (``ntk=False``) or Theta^{L+1} (``ntk=True``) for one block.

    ``sx, sz`` hold ``Sigma^0(x, x)``. With a ``pool`` (numpy only), the elementwise
    recursion after the BLAS product runs on ``workers`` row slices in parallel: numpy's
    ufuncs release the GIL, so the cores that BLAS used for the product are not left idle
    (each element sees the same operations, so the result is bit-identical).
    """
    S = (X[rows, :] @ Z[cols, :].T) / X.shape[1] + beta2  # Sigma^0
    a, b = sx[rows][:, None], sz[cols][None, :]
    kw = {"depth": depth, "beta2": beta2, "ntk": ntk}
    if pool is None or workers < 2 or S.shape[0] < 2 * workers or S.shape[0] * S.shape[1] < _THREAD_MIN_ELEMENTS:
        return _relu_recursion(xp, S, a, b, 0 if diag else None, **kw)
    # Tiles of about _TILE_ELEMENTS keep the ~20 elementwise passes per layer in cache.
    parts = list(iter_blocks(S.shape[0], max(1, _TILE_ELEMENTS // S.shape[1])))
    futures = [pool.submit(_relu_recursion, xp, S[p], a[p], b, p.start if diag else None, **kw) for p in parts]
    for p, fut in zip(parts, futures):
        S[p] = fut.result()  # each slice's recursion only reads its own rows of S
    return S


def _workers() -> int:
    """CPU cores this process may use (Linux affinity when available), at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def _relu_kernel(fn: str, X: Any, Z: Any, depth: int, bias: float, dtype: Any, memory_budget: Any, *, ntk: bool) -> Any:
    X, Z, xp, sym, budget = _prepare(fn, X, Z, dtype, memory_budget, depth=depth, bias=bias)
    beta2, d = float(bias) * float(bias), X.shape[1]
    # The diagonal grows to |x|^2 / d + (depth + 1) beta^2: refuse a bias that overflows the working dtype.
    big = float(xp.finfo(X.dtype).max)
    if not beta2 * (int(depth) + 1) < big:
        top = math.sqrt(big / (int(depth) + 1))
        raise ValueError(f"{fn}: bias must be a float in [0, {top:.4g}] for depth={int(depth)} in {_dtype_label(X.dtype)} "
                         f"((depth + 1) * bias**2 must be finite); got {bias!r}")
    sx = xp.sum(X * X, axis=1) / d + beta2
    sz = sx if sym else xp.sum(Z * Z, axis=1) / d + beta2
    # numpy's elementwise passes are single-threaded; torch and CuPy parallelise their own.
    workers = _workers() if array_api_compat.is_numpy_namespace(xp) else 1

    def fill(pool: ThreadPoolExecutor | None) -> Any:
        def block(r: slice, c: slice, diag: bool) -> Any:
            return _relu_block(xp, X, Z, sx, sz, r, c, diag, depth=int(depth), beta2=beta2, ntk=ntk, pool=pool, workers=workers)

        return _fill_gram(X, Z, xp, block, symmetric=sym, row_bytes=10 * Z.shape[0] * _itemsize(xp, X.dtype), budget=budget)

    if workers < 2:
        return fill(None)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="airkit-gram") as pool:
        return fill(pool)


_RELU_DOC = """

    Fully connected ReLU network with ``depth = L`` hidden layers, NTK
    parameterisation, ``c_sigma = 2`` and bias standard deviation ``bias = beta``
    (docs/derivations.md, section 2). The finite network this is the infinite-width limit of::

        h^1     = W^1 x / sqrt(d) + beta b^1
        h^{l+1} = sqrt(2/m) W^{l+1} relu(h^l) + beta b^{l+1}     (l = 1..L)
        f(x)    = h^{L+1}  (scalar output)

    with every ``W``, ``b`` ~ N(0, 1) and all of them trained. The recursion is ::

        Sigma^0(x, x') = x.x' / d + beta^2
        rho = Sigma^{h-1}(x, x') / sqrt(Sigma^{h-1}(x, x) Sigma^{h-1}(x', x')), clipped to [-1, 1]
        theta = arccos(rho)
        Sigma^h   = sqrt(Sigma^{h-1}(x, x) Sigma^{h-1}(x', x')) (sin theta + (pi - theta) cos theta) / pi + beta^2
        Sigma-dot^h = (pi - theta) / pi
        Theta^1 = Sigma^0,   Theta^{h+1} = Theta^h Sigma-dot^h + Sigma^h        (h = 1..L)

    NNGP = ``Sigma^L`` (the covariance of ``f``), NTK = ``Theta^{L+1}``. The diagonal
    recursion (theta = 0) gives ``Sigma^h(x, x) = |x|^2 / d + (h + 1) beta^2``; on the
    diagonal of ``K(X, X)`` theta is set to exactly 0, ``sin theta`` is computed as
    ``sqrt((1 - rho)(1 + rho))`` and zero-norm inputs (possible when ``beta = 0``)
    give zero rows, not NaN. Off the diagonal, ``arccos`` has infinite slope at
    ``rho = +-1``, so (anti)parallel pairs are accurate to about ``sqrt(eps)`` relative
    (1e-8 in float64, 3e-4 in float32).

    Accuracy: relative error at most ``10 min(eps / theta_0, sqrt(eps))`` for a pair
    whose first-layer angle is ``theta_0 = arccos(Sigma^0(x, z) / sqrt(Sigma^0(x, x)
    Sigma^0(z, z)))``, for depth 1-10 and any bias: round-off (< 1e-13 in float64)
    for pairs more than 0.1 rad apart, never worse than ``10 sqrt(eps)``. Checked
    against a 50-digit evaluation in ``tests/test_accuracy_statements.py``.

    Parameters
    ----------
    X, Z : arrays of shape (n, d) and (m, d)
        Samples as rows; ``Z=None`` means ``X``.
    depth : int >= 1, default=1
        Number of hidden layers L.
    bias : float >= 0, default=0.0
        Bias standard deviation beta (0: no bias terms); finite, with
        ``(depth + 1) * bias**2`` representable in the working dtype.
    dtype, memory_budget
        See :func:`linear`.

    Returns
    -------
    K : array of shape (n, m)

    References
    ----------
    Jacot, Gabriel & Hongler, "Neural tangent kernel", NeurIPS 2018 (Theorem 1).
    Arora, Du, Hu, Li, Salakhutdinov & Wang, "On exact computation with an infinitely
    wide neural net", NeurIPS 2019 (Section 3 and Appendix: ReLU closed forms).
    Cho & Saul, "Kernel methods for deep learning", NIPS 2009 (arc-cosine kernels).
    """


def nngp_relu(X: Any, Z: Any = None, *, depth: int = 1, bias: float = 0.0, dtype: Any = None, memory_budget: int | None = None) -> Any:
    return _relu_kernel("nngp_relu", X, Z, depth, bias, dtype, memory_budget, ntk=False)


def ntk_relu(X: Any, Z: Any = None, *, depth: int = 1, bias: float = 0.0, dtype: Any = None, memory_budget: int | None = None) -> Any:
    return _relu_kernel("ntk_relu", X, Z, depth, bias, dtype, memory_budget, ntk=True)


nngp_relu.__doc__ = "NNGP kernel ``Sigma^L`` of a deep ReLU network (output covariance at init)." + _RELU_DOC + """
    Examples
    --------
    >>> import numpy as np
    >>> float(nngp_relu(np.array([[1.0, 0.0]]), depth=2)[0, 0])  # |x|^2 / d
    0.5
    """
ntk_relu.__doc__ = "Neural tangent kernel ``Theta^{L+1}`` of a deep ReLU network." + _RELU_DOC + """
    Examples
    --------
    >>> import numpy as np
    >>> float(ntk_relu(np.array([[1.0, 0.0]]), depth=2)[0, 0])  # (L + 1) |x|^2 / d
    1.5
    """


def ntk_two_layer(X: Any, Z: Any = None, *, dtype: Any = None, memory_budget: int | None = None) -> Any:
    """Two-layer ReLU NTK ``H^inf`` of Du et al. 2019 / Arora et al. 2019 (first layer trained).

    For unit-norm inputs ::

        H_ij = E_{w ~ N(0, I)}[ x_i.x_j 1{w.x_i >= 0, w.x_j >= 0} ]
             = x_i.x_j (pi - arccos(x_i.x_j)) / (2 pi)

    (``arccos`` of the clipped inner product; exactly ``|x_i|^2 / 2`` on the diagonal;
    (anti)parallel pairs are accurate to about ``sqrt(eps)``, the slope of arccos at +-1).

    Accuracy: absolute error at most ``10 min(eps / theta, sqrt(eps)) |H_ij| + 4 eps``
    for a pair at angle ``theta`` (``tests/test_accuracy_statements.py``, against 50 digits).

    Parameters
    ----------
    X, Z : arrays of shape (n, d) and (m, d)
        Rows must have unit Euclidean norm, within ``max(1e-6, 16 eps)`` of the dtype;
        normalise first with ``X / ||X||_row``.
    dtype, memory_budget
        See :func:`linear`.

    Returns
    -------
    K : array of shape (n, m)

    References
    ----------
    Du, Zhai, Poczos & Singh, "Gradient descent provably optimizes over-parameterized
    neural networks", ICLR 2019 (Section 3, definition of H^inf).
    Arora, Du, Hu, Li & Wang, "Fine-grained analysis of optimization and
    generalization for overparameterized two-layer neural networks", ICML 2019 (Section 3).

    Examples
    --------
    >>> import numpy as np
    >>> ntk_two_layer(np.eye(2)).tolist()
    [[0.5, 0.0], [0.0, 0.5]]
    """
    fn = "ntk_two_layer"
    X, Z, xp, sym, budget = _prepare(fn, X, Z, dtype, memory_budget)
    tol = max(1e-6, 16 * float(xp.finfo(X.dtype).eps))
    for name, A in (("X", X),) if sym else (("X", X), ("Z", Z)):
        dev = float(xp.max(xp.abs(xp.linalg.vector_norm(A, axis=1) - 1)))
        if dev > tol:
            raise ValueError(f"{fn}: rows of {name} must have unit Euclidean norm (within {tol:g}); got max | ||row|| - 1 | = {dev:.3g}; normalise first: {name} / ||{name}||_row")
    pi = math.pi

    def block(r: slice, c: slice, diag: bool) -> Any:
        G = X[r, :] @ Z[c, :].T
        rho = xp.clip(G, min=-1.0, max=1.0)
        if diag:
            rho = xp.where(_diag_mask(xp, G.shape[0], G.shape[1], G), 1.0, rho)
        return G * (pi - xp.acos(rho)) / (2 * pi)

    return _fill_gram(X, Z, xp, block, symmetric=sym, row_bytes=4 * Z.shape[0] * _itemsize(xp, X.dtype), budget=budget)


# ----------------------------------------------------------------------------- dispatch

KERNELS: dict[str, Callable[..., Any]] = {
    "linear": linear,
    "polynomial": polynomial,
    "rbf": rbf,
    "laplace": laplace,
    "laplacian": laplacian,
    "exponential": exponential,
    "nngp_relu": nngp_relu,
    "ntk_relu": ntk_relu,
    "ntk_two_layer": ntk_two_layer,
}


def _kernel_fn(fn: str, name: Any) -> Callable[..., Any]:
    if not isinstance(name, str) or name not in KERNELS:
        raise ValueError(f"{fn}: kernel must be one of {', '.join(repr(k) for k in KERNELS)}; got {name!r}")
    return KERNELS[name]


def kernel_params(name: str) -> tuple[str, ...]:
    """Names of the kernel-specific parameters of kernel ``name``, in signature order.

    ``dtype`` and ``memory_budget``, which every kernel accepts, are not listed.

    Examples
    --------
    >>> kernel_params("polynomial")
    ('degree', 'gamma', 'coef0')
    >>> kernel_params("linear")
    ()
    """
    f = _kernel_fn("kernel_params", name)
    sig = inspect.signature(f)
    return tuple(p.name for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in _COMMON_PARAMS)


def gram(X: Any, Z: Any = None, *, kernel: str = "rbf", **params: Any) -> Any:
    """Gram matrix ``K(X, Z)`` of the kernel named ``kernel`` (see :data:`KERNELS`).

    Parameters
    ----------
    X, Z : arrays of shape (n, d) and (m, d)
        Samples as rows; ``Z=None`` means ``X``.
    kernel : str, default="rbf"
        One of ``KERNELS``: linear, polynomial, rbf, laplace (= laplacian),
        exponential, nngp_relu, ntk_relu, ntk_two_layer.
    **params
        The kernel's parameters (:func:`kernel_params`) plus ``dtype`` and
        ``memory_budget``; any other name raises ``TypeError``.

    Returns
    -------
    K : array of shape (n, m)

    Examples
    --------
    >>> import numpy as np
    >>> gram(np.eye(2), kernel="linear").tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    f = _kernel_fn("gram", kernel)
    allowed = kernel_params(kernel) + _COMMON_PARAMS
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise TypeError(f"gram: unknown parameter(s) {', '.join(unknown)} for kernel {kernel!r}; allowed: {', '.join(allowed)}")
    return f(X, Z, **params)

