"""The ReLU network kernels: NNGP ``Sigma^L`` and NTK ``Theta^{L+1}`` of a deep fully connected
ReLU network (NTK parameterisation), and the two-layer NTK ``H^inf`` of Du et al. / Arora et al.

The arc-cosine recursion (Cho & Saul 2009; Jacot et al. 2018; Arora et al. 2019) is
derived in docs/derivations.md, section 2, and stated in :data:`RELU_DOC` below. For numpy
arrays the elementwise recursion (``arccos`` and about 20 passes per layer, single-threaded
in numpy) runs on cache-sized row tiles in a thread pool with one thread per available core
(numpy releases the GIL); the result is bit-identical to one thread.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import array_api_compat

from kernels.backend import cpu_workers, device
from kernels.checks import iter_blocks
from kernels.gram_fill import check_bias_scale, diag_mask, fill_gram, itemsize, prepare_pair

__all__ = ["nngp_relu", "ntk_relu", "ntk_two_layer", "arccos_step"]


def arccos_step(xp: ModuleType, S: Any, a: Any, b: Any, mask: Any, ntk: bool) -> tuple[Any, Any]:
    """Arc-cosine step: ``(2 E[relu(u) relu(v)], 2 E[relu'(u) relu'(v)])`` for (u, v) of covariance
    ``[[a, S], [S, b]]`` (the derivative term only when ``ntk``, else None).

    With ``rho = S / sqrt(a b)`` and ``theta = arccos(rho)`` (Cho & Saul 2009)::

        K     = sqrt(a b) (sin theta + (pi - theta) cos theta) / pi
        K_dot = (pi - theta) / pi

    rho is clipped to [-1, 1] and set to exactly 1 where ``mask`` (a pair of a point with
    itself), ``sin theta = sqrt((1 - rho)(1 + rho))``, and zero variances give 0, not NaN.
    """
    pi = math.pi
    norm = xp.sqrt(a * b)
    rho = xp.clip(S / xp.where(norm > 0, norm, 1.0), min=-1.0, max=1.0)
    if mask is not None:
        rho = xp.where(mask, 1.0, rho)
    theta = xp.acos(rho)
    sin = xp.sqrt(xp.clip((1 - rho) * (1 + rho), min=0))
    K = norm * (sin + (pi - theta) * rho) / pi
    return K, ((pi - theta) / pi if ntk else None)


def _relu_recursion(
    xp: ModuleType, S: Any, a: Any, b: Any, diag_shift: int | None, *, depth: int, beta2: float, ntk: bool
) -> Any:
    """Sigma^L or Theta^{L+1} from the Sigma^0 block S (r, c), elementwise.

    ``a`` (r, 1) and ``b`` (1, c) hold ``Sigma^0(x, x)`` of the block's rows and columns;
    ``diag_shift`` = k says that the Gram's diagonal sits at block positions (i, i + k)
    (None: no diagonal in the block).
    """
    theta_ntk = S  # Theta^1
    mask = None
    if diag_shift is not None:
        mask = xp.eye(S.shape[0], S.shape[1], k=diag_shift, dtype=xp.bool, device=device(S))
    for _ in range(depth):
        K, K_dot = arccos_step(xp, S, a, b, mask, ntk)
        S = K + beta2  # Sigma^h
        if ntk:
            theta_ntk = theta_ntk * K_dot + S  # Theta^{h+1}
        a, b = a + beta2, b + beta2  # Sigma^h(x, x) = Sigma^{h-1}(x, x) + beta^2
    return theta_ntk if ntk else S


# Blocks with fewer elements run their elementwise recursion in one thread.
_THREAD_MIN_ELEMENTS = 2**18
_TILE_ELEMENTS = 2**17


def _relu_block(
    xp: ModuleType,
    X: Any,
    Z: Any,
    sx: Any,
    sz: Any,
    rows: slice,
    cols: slice,
    diag: bool,
    *,
    depth: int,
    beta2: float,
    ntk: bool,
    pool: ThreadPoolExecutor | None = None,
    workers: int = 1,
) -> Any:
    """Sigma^L (``ntk=False``) or Theta^{L+1} (``ntk=True``) for one block.

    ``sx, sz`` hold ``Sigma^0(x, x)``. With a ``pool`` (numpy only), the elementwise
    recursion after the BLAS product runs on ``workers`` row slices in parallel: numpy's
    ufuncs release the GIL, so the cores that BLAS used for the product are not left idle
    (each element sees the same operations, so the result is bit-identical).
    """
    S = (X[rows, :] @ Z[cols, :].T) / X.shape[1] + beta2  # Sigma^0
    a, b = sx[rows][:, None], sz[cols][None, :]
    kw: dict[str, Any] = {"depth": depth, "beta2": beta2, "ntk": ntk}
    if pool is None or workers < 2 or S.shape[0] < 2 * workers or S.shape[0] * S.shape[1] < _THREAD_MIN_ELEMENTS:
        return _relu_recursion(xp, S, a, b, 0 if diag else None, **kw)
    # Tiles of about _TILE_ELEMENTS keep the ~20 elementwise passes per layer in cache.
    parts = list(iter_blocks(S.shape[0], max(1, _TILE_ELEMENTS // S.shape[1])))
    futures = [pool.submit(_relu_recursion, xp, S[p], a[p], b, p.start if diag else None, **kw) for p in parts]
    for p, fut in zip(parts, futures):
        S[p] = fut.result()  # each slice's recursion only reads its own rows of S
    return S


def _relu_kernel(fn: str, X: Any, Z: Any, depth: int, bias: float, dtype: Any, memory_budget: Any, *, ntk: bool) -> Any:
    X, Z, xp, sym, budget = prepare_pair(fn, X, Z, dtype, memory_budget, depth=depth, bias=bias)
    beta2, d = check_bias_scale(fn, bias, int(depth), xp, X.dtype, f"depth={int(depth)}"), X.shape[1]
    sx = xp.sum(X * X, axis=1) / d + beta2
    sz = sx if sym else xp.sum(Z * Z, axis=1) / d + beta2
    # numpy's elementwise passes are single-threaded; torch and CuPy parallelise their own.
    workers = cpu_workers(8) if array_api_compat.is_numpy_namespace(xp) else 1

    def fill(pool: ThreadPoolExecutor | None) -> Any:
        def block(r: slice, c: slice, diag: bool) -> Any:
            return _relu_block(xp, X, Z, sx, sz, r, c, diag, depth=int(depth), beta2=beta2, ntk=ntk, pool=pool, workers=workers)

        return fill_gram(X, Z, xp, block, symmetric=sym, row_bytes=10 * Z.shape[0] * itemsize(xp, X.dtype), budget=budget)

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
        ``(depth + 1) * bias**2`` below the square root of the working dtype's largest
        float (the recursion multiplies two variances): at most 5.8e76 for depth 3 in float64.
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


def nngp_relu(
    X: Any, Z: Any = None, *, depth: int = 1, bias: float = 0.0, dtype: Any = None, memory_budget: int | None = None
) -> Any:
    return _relu_kernel("nngp_relu", X, Z, depth, bias, dtype, memory_budget, ntk=False)


def ntk_relu(
    X: Any, Z: Any = None, *, depth: int = 1, bias: float = 0.0, dtype: Any = None, memory_budget: int | None = None
) -> Any:
    return _relu_kernel("ntk_relu", X, Z, depth, bias, dtype, memory_budget, ntk=True)


nngp_relu.__doc__ = (
    "NNGP kernel ``Sigma^L`` of a deep ReLU network (output covariance at init)."
    + _RELU_DOC
    + """
    Examples
    --------
    >>> import numpy as np
    >>> float(nngp_relu(np.array([[1.0, 0.0]]), depth=2)[0, 0])  # |x|^2 / d
    0.5
    """
)
ntk_relu.__doc__ = (
    "Neural tangent kernel ``Theta^{L+1}`` of a deep ReLU network."
    + _RELU_DOC
    + """
    Examples
    --------
    >>> import numpy as np
    >>> float(ntk_relu(np.array([[1.0, 0.0]]), depth=2)[0, 0])  # (L + 1) |x|^2 / d
    1.5
    """
)


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
    X, Z, xp, sym, budget = prepare_pair(fn, X, Z, dtype, memory_budget)
    tol = max(1e-6, 16 * float(xp.finfo(X.dtype).eps))
    for name, A in (("X", X),) if sym else (("X", X), ("Z", Z)):
        dev = float(xp.max(xp.abs(xp.linalg.vector_norm(A, axis=1) - 1)))
        if dev > tol:
            raise ValueError(
                f"{fn}: rows of {name} must have unit Euclidean norm (within {tol:g}); got max | ||row|| - 1 | = {dev:.3g}; normalise first: {name} / ||{name}||_row"
            )
    pi = math.pi

    def block(r: slice, c: slice, diag: bool) -> Any:
        G = X[r, :] @ Z[c, :].T
        rho = xp.clip(G, min=-1.0, max=1.0)
        if diag:
            rho = xp.where(diag_mask(xp, G.shape[0], G.shape[1], G), 1.0, rho)
        return G * (pi - xp.acos(rho)) / (2 * pi)

    return fill_gram(X, Z, xp, block, symmetric=sym, row_bytes=4 * Z.shape[0] * itemsize(xp, X.dtype), budget=budget)
