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
divided by the scratch bytes per row (:mod:`kernels.gram_fill`). The ReLU NNGP / NTK
kernels live in :mod:`kernels.relu`; :data:`KERNELS` and :func:`gram` name them all.

Distance kernels (docs/derivations.md, section 1): ``rbf`` = exp(-gamma ||x - z||_2^2) and
``laplace`` (alias ``laplacian``) = exp(-gamma ||x - z||_1) follow scikit-learn;
``exponential`` = exp(-gamma ||x - z||_2) is the "Laplace kernel" of the NTK literature.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any

from kernels.backend import device
from kernels.checks import iter_blocks
from kernels.gram_fill import COMMON_PARAMS, diag_mask, fill_gram, itemsize, prepare_pair
from kernels.relu import nngp_relu, ntk_relu, ntk_two_layer

__all__ = [
    "KERNELS",
    "exponential",
    "gram",
    "kernel_params",
    "laplace",
    "laplacian",
    "linear",
    "nngp_relu",
    "ntk_relu",
    "ntk_two_layer",
    "polynomial",
    "rbf",
]


# ----------------------------------------------------------------------------- distance helpers


def _gamma(gamma: float | None, X: Any) -> float:
    """scikit-learn's default ``gamma = 1 / n_features``."""
    return 1.0 / X.shape[1] if gamma is None else float(gamma)


def _sq_distances(xp: ModuleType, Xc: Any, Zc: Any, sx: Any, sz: Any, rows: slice, cols: slice, diag: bool) -> Any:
    """``||x - z||^2 = |x|^2 + |z|^2 - 2 x.z`` for a block, clamped at 0, 0 on the diagonal."""
    D = sx[rows][:, None] + sz[cols][None, :] - 2 * (Xc[rows, :] @ Zc[cols, :].T)
    D = xp.clip(D, min=0)
    if diag:
        D = xp.where(diag_mask(xp, D.shape[0], D.shape[1], D), 0.0, D)
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
    X, Z, xp, sym, budget = prepare_pair(fn, X, Z, dtype, memory_budget)
    return fill_gram(
        X, Z, xp, lambda r, c, _d: X[r, :] @ Z[c, :].T, symmetric=sym, row_bytes=Z.shape[0] * itemsize(xp, X.dtype), budget=budget
    )


def polynomial(
    X: Any,
    Z: Any = None,
    *,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    dtype: Any = None,
    memory_budget: int | None = None,
) -> Any:
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
    X, Z, xp, sym, budget = prepare_pair(fn, X, Z, dtype, memory_budget, degree=degree, gamma=gamma, coef0=coef0)
    g, c0, p = _gamma(gamma, X), float(coef0), int(degree)

    def block(r: slice, c: slice, _d: bool) -> Any:
        return (g * (X[r, :] @ Z[c, :].T) + c0) ** p

    return fill_gram(X, Z, xp, block, symmetric=sym, row_bytes=2 * Z.shape[0] * itemsize(xp, X.dtype), budget=budget)


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
    X, Z, xp, sym, budget = prepare_pair(fn, X, Z, dtype, memory_budget, gamma=gamma)
    g = _gamma(gamma, X)
    Xc, Zc, sx, sz = _centred(xp, X, Z, sym)

    def block(r: slice, c: slice, diag: bool) -> Any:
        return xp.exp(-g * _sq_distances(xp, Xc, Zc, sx, sz, r, c, diag))

    return fill_gram(X, Z, xp, block, symmetric=sym, row_bytes=4 * Z.shape[0] * itemsize(xp, X.dtype), budget=budget)


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
    X, Z, xp, sym, budget = prepare_pair(fn, X, Z, dtype, memory_budget, gamma=gamma)
    g = _gamma(gamma, X)
    Xc, Zc, sx, sz = _centred(xp, X, Z, sym)

    def block(r: slice, c: slice, diag: bool) -> Any:
        return xp.exp(-g * xp.sqrt(_sq_distances(xp, Xc, Zc, sx, sz, r, c, diag)))

    return fill_gram(X, Z, xp, block, symmetric=sym, row_bytes=4 * Z.shape[0] * itemsize(xp, X.dtype), budget=budget)


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
    X, Z, xp, sym, budget = prepare_pair(fn, X, Z, dtype, memory_budget, gamma=gamma)
    g = _gamma(gamma, X)
    item, d, m = itemsize(xp, X.dtype), X.shape[1], Z.shape[0]
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

    return fill_gram(X, Z, xp, block, symmetric=sym, row_bytes=2 * 2 * m * item, budget=budget)


laplacian = laplace


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
    return tuple(
        p.name for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in COMMON_PARAMS
    )


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
    allowed = kernel_params(kernel) + COMMON_PARAMS
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise TypeError(f"gram: unknown parameter(s) {', '.join(unknown)} for kernel {kernel!r}; allowed: {', '.join(allowed)}")
    return f(X, Z, **params)
