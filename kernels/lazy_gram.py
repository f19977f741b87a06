"""Gram matrices larger than memory: a lazy dask array, and products by recomputed blocks.

For n = 200 000 points the float64 Gram matrix takes ``8 n^2`` bytes = 320 GB. Two ways
to work with it without ever holding it:

- :func:`lazy_gram` returns ``K(X, Z)`` as a dask array whose (i, j) block is computed,
  when a dask computation asks for it, by the in-memory builder
  ``kernels.functions.gram(X[i-block], Z[j-block], kernel=..., **params)``: the same
  parameter checks and the same numbers as :func:`kernels.functions.gram` (to round-off,
  ``<= 1e-12`` relative in the tests), on numpy or CuPy blocks.
- :func:`blocked_gram` returns a :class:`BlockedGram`, the operator ``Q -> K(X, Z) Q``
  whose every product recomputes K block row by block row, each block row in square
  ``chunks x chunks`` blocks that are multiplied into Q and dropped, so the memory it needs
  is one block per worker plus the operands. For a symmetric Gram only the upper part of
  each block row is built: ``K[rows, b:]`` serves its own rows and, transposed, the rows
  below, so a product builds each entry of K once, half the work of full rows. The block
  rows run as dask tasks: on a ``dask.distributed`` client when one is given or active, else
  on dask's local threaded scheduler (BLAS on one thread meanwhile: the blocks already use
  every core), or in a plain loop (``scheduler="serial"``, no dask needed); all three add
  the shares in the same order and give identical results.
  :mod:`kernels.large_spectrum` and :mod:`kernels.cg_ridge` are built on it.

Symmetric Grams (``Z`` None or ``Z is X``) keep the in-memory builders' conventions: the
diagonal squares are built by the symmetric builder (whose diagonal is forced exactly, e.g.
``rbf`` gives exactly 1 and ``ntk_relu`` sets the angle to exactly 0, where a cross block
would lose ``sqrt(eps)`` to ``arccos`` near 1), and :func:`lazy_gram` computes each block
below the diagonal as the transpose of the block above, so the lazy matrix is exactly
symmetric. Kernels with ``gamma=None`` (``1 / n_features``) get that gamma explicitly, so
every block uses the whole matrix's.

dask is optional (``pip install 'airkit[dask]'``); it is imported inside the functions that
need it.
"""

from __future__ import annotations

import math
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from kernels.backend import backend_name, cpu_workers, device, namespace
from kernels.checks import Interval, Options, check_features, check_param, format_bytes, iter_blocks
from kernels.functions import KERNELS, gram, kernel_params
from kernels.gram_fill import DEFAULT_MEMORY_BUDGET, itemsize

__all__ = [
    "DEFAULT_BLOCK_BUDGET",
    "SCHEDULERS",
    "BlockedGram",
    "blocked_gram",
    "lazy_gram",
    "make_blocked_gram",
    "resolve_params",
]

SCHEDULERS = ("auto", "serial", "threads", "distributed")
# Bytes of Gram blocks (and of the builders' scratch) held at once when memory_budget=None.
DEFAULT_BLOCK_BUDGET = 2**30
# Largest block side chosen by default: blocks of 2048 x 2048 keep the BLAS products large
# (2048 x d x 2048) and many enough block rows to balance the workers.
DEFAULT_CHUNKS = 2048
_DASK_HINT = "needs dask: pip install 'airkit[dask]'"


def _import_dask_array(fn: str) -> ModuleType:
    try:
        import dask.array as da
    except ImportError as exc:
        raise ImportError(f"{fn} {_DASK_HINT}") from exc
    return da


def _is_dask(x: Any) -> bool:
    """Whether ``x`` is a dask collection (checked without importing dask)."""
    return "dask" in sys.modules and hasattr(x, "dask") and hasattr(x, "__dask_graph__")


def resolve_params(kernel: str, n_features: int, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with ``gamma=None`` replaced by the whole matrix's ``1 / n_features``.

    Blocks have X's feature count too, so the value is the same; passing it explicitly
    makes every block's kernel independent of what the block holds.

    >>> resolve_params("rbf", 4, {})
    {'gamma': 0.25}
    >>> resolve_params("ntk_relu", 4, {"depth": 2})
    {'depth': 2}
    """
    out = dict(params)
    if "gamma" in kernel_params(kernel) and out.get("gamma") is None:
        out["gamma"] = 1.0 / n_features
    return out


def _probe(X: Any, Z: Any, kernel: str, params: dict[str, Any]) -> Any:
    """A 1 x 1 Gram of the first rows: runs ``gram``'s parameter checks now and gives the dtype."""
    first = lambda A: A[:1, :].compute() if _is_dask(A) else A[:1, :]  # noqa: E731
    x = first(X)
    return gram(x, None if Z is None else first(Z), kernel=kernel, **params)


# ----------------------------------------------------------------------------- lazy dask Gram


def _gram_block(Xb: Any, Zb: Any, rx: Any, rz: Any, *, kernel: str, params: dict[str, Any], symmetric: bool) -> Any:
    """Block ``K[rx, rz]``: the symmetric builder on the diagonal, the transpose of the upper block below it."""
    if symmetric and int(rx[0]) == int(rz[0]):
        return gram(Xb, kernel=kernel, **params)
    if symmetric and int(rx[0]) > int(rz[0]):
        return gram(Zb, Xb, kernel=kernel, **params).T
    return gram(Xb, Zb, kernel=kernel, **params)


def _as_dask_rows(fn: str, name: str, A: Any, chunks: int, da: ModuleType, n_features: int | None) -> Any:
    """``A`` as a dask array in row chunks of ``chunks`` rows and one column chunk."""
    if _is_dask(A):
        if A.ndim != 2:
            raise ValueError(f"{fn}: {name} must be 2-D (n_samples, n_features); got shape {tuple(A.shape)}")
        if n_features is not None and A.shape[1] != n_features:
            raise ValueError(f"{fn}: {name} has {A.shape[1]} features but {n_features} were expected (X's)")
        return A.rechunk((chunks, -1))
    arr, xp = check_features(fn, name, A, n_features=n_features)
    if backend_name(xp) not in ("numpy", "cupy"):
        raise TypeError(f"{fn}: {name} must be a numpy, CuPy or dask array; got a {backend_name(xp)} array: convert it to numpy")
    return da.from_array(arr, chunks=(chunks, -1), name=False)


def lazy_gram(X: Any, Z: Any = None, *, kernel: str = "rbf", chunks: int = 1000, **params: Any) -> Any:
    """The Gram matrix ``K(X, Z)`` as a lazy dask array of ``chunks x chunks`` blocks.

    Block (i, j) is ``kernels.functions.gram(X[i-block], Z[j-block], kernel=kernel, **params)``;
    nothing is computed until the array is (``.compute()``, ``@``, ``.sum()``, ...). For a
    symmetric Gram (``Z`` None or ``Z is X``) the diagonal blocks come from the symmetric
    builder and block (j, i), j > i, is the transpose of block (i, j), so the result is
    exactly symmetric with the in-memory builder's exact diagonal.

    Parameters
    ----------
    X : array of shape (n, d)
        numpy, CuPy or dask array (a dask array is rechunked to ``chunks`` rows and one
        column chunk; its values are checked block by block when computed).
    Z : array of shape (m, d), default=None
        Second set of samples; ``None`` means ``X``.
    kernel : str, default="rbf"
        A name of :data:`kernels.functions.KERNELS`.
    chunks : int >= 1, default=1000
        Rows (and columns) per block: a block takes ``8 chunks^2`` bytes in float64.
    **params
        The kernel's parameters and ``dtype`` / ``memory_budget`` of :func:`kernels.functions.gram`,
        checked now on a 1 x 1 probe. ``gamma=None`` becomes ``1 / d`` explicitly.

    Returns
    -------
    dask.array.Array of shape (n, m)

    Accuracy: every entry equals the in-memory ``gram(X, Z, ...)`` to round-off (``<= 1e-12``
    relative to ``max |K|`` for rbf, ntk_relu and linear, n = 3000, tests/test_large_kernels.py):
    blocks differ from the whole-matrix builder only in the order of BLAS sums and, for the
    distance kernels, the mean each block is centred by.

    Examples
    --------
    >>> import numpy as np
    >>> from kernels.functions import rbf
    >>> X = np.random.default_rng(0).normal(size=(7, 3))
    >>> K = lazy_gram(X, kernel="rbf", chunks=3)
    >>> K.shape, K.chunks
    ((7, 7), ((3, 3, 1), (3, 3, 1)))
    >>> bool(np.allclose(K.compute(), rbf(X), rtol=0, atol=1e-14))
    True
    """
    fn = "lazy_gram"
    da = _import_dask_array(fn)
    check_param(fn, "chunks", chunks, Interval(int, 1, None, "both"))
    check_param(fn, "kernel", kernel, Options(tuple(KERNELS)))
    symmetric = Z is None or Z is X
    Xd = _as_dask_rows(fn, "X", X, chunks, da, None)
    Zd = Xd if symmetric else _as_dask_rows(fn, "Z", Z, chunks, da, Xd.shape[1])
    params = resolve_params(kernel, Xd.shape[1], params)
    probe = _probe(Xd, None if symmetric else Zd, kernel, params)
    rx = da.arange(Xd.shape[0], chunks=Xd.chunks[0])
    rz = rx if symmetric else da.arange(Zd.shape[0], chunks=Zd.chunks[0])
    return da.blockwise(
        _gram_block,
        "ij",
        Xd,
        "ik",
        Zd,
        "jk",
        rx,
        "i",
        rz,
        "j",
        concatenate=True,
        dtype=probe.dtype,
        meta=probe[:0, :0],
        kernel=kernel,
        params=params,
        symmetric=symmetric,
    )


# ----------------------------------------------------------------------------- schedulers


def _active_client() -> Any:
    """The default ``dask.distributed`` client if one exists in this process, else None."""
    if sys.modules.get("distributed") is None:  # no client can exist before distributed is imported
        return None
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None


def _resolve_scheduler(fn: str, scheduler: Any) -> tuple[str, Any]:
    """``(kind, client)``: kind "serial", "threads" or "distributed" (with its client)."""
    if not isinstance(scheduler, str):
        try:
            from distributed import Client
        except ImportError as exc:
            raise TypeError(
                f"{fn}: scheduler must be one of {', '.join(map(repr, SCHEDULERS))} or a dask.distributed Client; got {type(scheduler).__name__}"
            ) from exc
        if not isinstance(scheduler, Client):
            raise TypeError(
                f"{fn}: scheduler must be one of {', '.join(map(repr, SCHEDULERS))} or a dask.distributed Client; got {type(scheduler).__name__}"
            )
        return "distributed", scheduler
    check_param(fn, "scheduler", scheduler, Options(SCHEDULERS))
    if scheduler in ("auto", "distributed"):
        client = _active_client()
        if client is not None:
            return "distributed", client
        if scheduler == "distributed":
            raise ValueError(
                f"{fn}: scheduler='distributed' needs an active dask.distributed Client; start one (Client(...)) or pass it"
            )
        try:
            import dask  # noqa: F401
        except ImportError:
            return "serial", None
        return "threads", None
    if scheduler == "threads":
        _import_dask_array(f"{fn}: scheduler='threads'")
    return scheduler, None


def _n_workers(kind: str, client: Any) -> int:
    if kind == "serial":
        return 1
    if kind == "distributed":
        return max(1, sum(client.nthreads().values()))
    return cpu_workers()


# ----------------------------------------------------------------------------- row-block operator


def _block_product(
    X: Any, Z: Any, Q: Any, rows: slice, width: int, kernel: str, params: dict[str, Any], symmetric: bool
) -> tuple:
    """Block row ``rows``' share of ``K Q``: ``(rows, top, below)``, built in blocks of ``width`` columns.

    Cross Gram: ``top = sum_c K[rows, c] Q[c]``, ``below = None``. Symmetric Gram: only the
    upper part of the block row is built, the diagonal square ``S`` by the symmetric builder
    (its exact diagonal) and the blocks ``U_c = K[rows, c]`` right of it; then
    ``top = S Q[rows] + sum_c U_c Q[c]`` and ``below = [U_c^T Q[rows]]_c``, the mirror image's
    share of ``(K Q)[b:]``. Each entry of K is built once per product, the operator is exactly
    symmetric, and at most one ``len(rows) x width`` block (and the builder's scratch for it)
    exists at a time.
    """
    a, b = rows.start, rows.stop
    Xb = X[a:b, :]
    if not symmetric:
        top = None
        for c in iter_blocks(Z.shape[0], width):
            part = gram(Xb, Z[c, :], kernel=kernel, **params) @ Q[c, :]
            top = part if top is None else top + part
        return rows, top, None
    top = gram(Xb, kernel=kernel, **params) @ Q[a:b, :]
    below = []
    for c in iter_blocks(X.shape[0] - b, width):
        c = slice(b + c.start, b + c.stop)
        U = gram(Xb, X[c, :], kernel=kernel, **params)
        top = top + U @ Q[c, :]
        below.append(U.T @ Q[a:b, :])
    return rows, top, (namespace(top).concat(below, axis=0) if below else None)


def _add_block(acc: Any, part: tuple, *, copy: bool = True) -> Any:
    """``acc`` with a block's share of ``K Q`` added (a copy unless ``copy=False``)."""
    rows, top, below = part
    out = namespace(acc).asarray(acc, copy=True) if copy else acc
    out[rows, :] = out[rows, :] + top
    if below is not None:
        out[rows.stop :, :] = out[rows.stop :, :] + below
    return out


@dataclass(frozen=True, eq=False)
class BlockedGram:
    """The operator ``Q -> K(X, Z) Q`` by recomputed blocks (see :func:`blocked_gram`).

    Attributes
    ----------
    shape : tuple of int
        ``(n, m)``, the Gram matrix's.
    dtype
        Its dtype (the builders' working dtype).
    xp : module
        The array namespace of the blocks (numpy, CuPy, torch); products come back in it.
    chunks : int
        Rows per block.
    scheduler : str
        ``"serial"``, ``"threads"`` or ``"distributed"``: where the block rows run.
    workers : int
        Row blocks that run at once (threads of the local pool or of the cluster).
    """

    shape: tuple[int, int]
    dtype: Any
    xp: ModuleType
    chunks: int
    scheduler: str
    kernel: str
    workers: int
    _product: Callable[[Any], Any] = field(repr=False)

    def matmul(self, Q: Any) -> Any:
        """``K Q`` for Q of shape (m,) or (m, c), in the operator's namespace."""
        return self._product(Q)

    def __matmul__(self, Q: Any) -> Any:
        return self._product(Q)

    @property
    def gram_bytes(self) -> int:
        """Bytes the whole Gram matrix would take (never allocated)."""
        return int(self.shape[0]) * int(self.shape[1]) * int(np.dtype(str(self.dtype).rsplit(".", 1)[-1]).itemsize)


def _block_size(fn: str, n: int, itemsize: int, workers: int, budget: int | None, chunks: int | None) -> int:
    """``chunks``, or the largest block side (at most :data:`DEFAULT_CHUNKS`) such that ``workers``
    square blocks and as much builder scratch fit in the budget: ``2 workers chunks^2 itemsize``."""
    if chunks is not None:
        check_param(fn, "chunks", chunks, Interval(int, 1, None, "both"))
        need = 2 * workers * chunks * chunks * itemsize
        if budget is not None and need > budget:
            raise ValueError(
                f"{fn}: chunks={chunks} needs {format_bytes(need)} for {workers} block(s) of {chunks} x {chunks} and their "
                f"scratch (> memory_budget {format_bytes(budget)}); lower chunks or raise memory_budget"
            )
        return min(int(chunks), n)
    cap = DEFAULT_BLOCK_BUDGET if budget is None else budget
    return max(1, min(n, DEFAULT_CHUNKS, math.isqrt(cap // (2 * workers * itemsize))))


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS limited to one thread (threadpoolctl; no-op without it): while dask runs block rows in
    parallel, and for the tall-skinny QR of :mod:`kernels.large_spectrum`.

    Each block's products then use one core, and the blocks all cores: on 2 cores a pass of
    ntk_relu on 10 000 x 3072 took 3.4 s this way against 4.3 s with both kinds of threads,
    and 0.10 s against 0.24 s for rbf on 3000 x 20 (OpenBLAS's threads oversubscribe the cores).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings threadpoolctl
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _product_blocks(
    X: Any,
    Z: Any,
    kind: str,
    client: Any,
    blocks: list[slice],
    width: int,
    kernel: str,
    params: dict[str, Any],
    symmetric: bool,
) -> Callable[[Any], Any]:
    """The product ``Q -> K Q`` over block rows: a loop, or a dask graph on threads or a client.

    The graph is one task per block row (:func:`_block_product`) and a chain of additions
    into the result, in block order, so every scheduler sums in the same order (identical
    results) and dask frees each block's share as soon as it is added.
    """
    xp = namespace(X)
    n = X.shape[0]
    if kind == "distributed":  # ship X (and Z) to the workers once; every product ships only Q
        Xl = client.scatter(X, broadcast=True, hash=False)
        Zl = Xl if symmetric else client.scatter(Z, broadcast=True, hash=False)
    elif kind == "threads":
        import dask

        tag = uuid.uuid4().hex
        Xl = dask.delayed(X, name=f"blocked-gram-X-{tag}")
        Zl = Xl if symmetric else dask.delayed(Z, name=f"blocked-gram-Z-{tag}")

    def product(Q: Any) -> Any:
        vec = Q.ndim == 1
        Q2 = Q[:, None] if vec else Q
        acc = xp.zeros((n, Q2.shape[1]), dtype=X.dtype, device=device(X))
        args = (width, kernel, params, symmetric)
        if kind == "serial":
            for sl in blocks:
                acc = _add_block(acc, _block_product(X, Z, Q2, sl, *args), copy=False)
        else:
            import dask

            tag = uuid.uuid4().hex
            if kind == "distributed":
                Ql = client.scatter(Q2, broadcast=True, hash=False)
            else:
                Ql = dask.delayed(Q2, name=f"blocked-gram-Q-{tag}")
            total = dask.delayed(acc, name=f"blocked-gram-zeros-{tag}")
            for sl in blocks:
                part = dask.delayed(_block_product, pure=False)(Xl, Zl, Ql, sl, *args)
                total = dask.delayed(_add_block, pure=False)(total, part)
            with one_blas_thread():  # the block rows run in parallel already
                acc = dask.compute(total, scheduler="threads")[0] if kind == "threads" else client.compute(total).result()
        return acc[:, 0] if vec else acc

    return product


def _product_dask(K: Any, kind: str, client: Any) -> Callable[[Any], Any]:
    """The product ``Q -> K Q`` of a lazy dask Gram (blocks recomputed by dask at every product)."""
    import dask.array as da

    sched: Any = {"serial": "sync", "threads": "threads"}.get(kind) or client.get
    xp = namespace(K._meta)

    def product(Q: Any) -> Any:
        Qd = da.from_array(Q, chunks=(K.chunks[1],) + ((Q.shape[1],) if Q.ndim == 2 else ()), name=False)
        if kind == "serial":
            return xp.asarray((K @ Qd).compute(scheduler=sched))
        with one_blas_thread():  # the blocks run in parallel already
            return xp.asarray((K @ Qd).compute(scheduler=sched))

    return product


def blocked_gram(
    X: Any,
    Z: Any = None,
    *,
    kernel: str = "rbf",
    chunks: int | None = None,
    memory_budget: int | None = None,
    scheduler: Any = "auto",
    **params: Any,
) -> BlockedGram:
    """``K(X, Z)`` as an operator whose products recompute the Gram block by block.

    ``op @ Q`` returns ``K Q`` (Q of shape (m,) or (m, c)) as ``concat_i sum_j K[i, j] Q[j]``
    over square ``chunks x chunks`` blocks, each built by :func:`kernels.functions.gram`
    and dropped after its product. In the symmetric case (``Z`` None or ``Z is X``) block
    row i builds only its diagonal block (with the symmetric builder: its exact diagonal)
    and the blocks ``K[i, j]``, j > i, adding ``K[i, j] Q[j]`` to its own rows and
    ``K[i, j]^T Q[i]`` to rows j: each entry is built once per product and the operator is
    exactly symmetric. Products by all schedulers are identical (one summation order).

    Parameters
    ----------
    X : array of shape (n, d)
        Features (numpy, torch or CuPy; the products run in its namespace). With
        ``kernel="precomputed"``: a lazy square dask Gram such as :func:`lazy_gram` returns,
        whose products run as dask graphs (its own blocks).
    Z : array of shape (m, d), default=None
        Second set of samples; ``None`` means ``X``.
    kernel : str, default="rbf"
        A name of :data:`kernels.functions.KERNELS`, or ``"precomputed"``.
    chunks : int >= 1, default=None
        Side of the square blocks (rows per block row); ``None``: the largest side up to
        :data:`DEFAULT_CHUNKS` (2048) such that one block per worker, and as much scratch
        for the builder, fit in ``memory_budget``.
    memory_budget : int >= 1, default=None
        Bytes for the blocks held at once, ``2 * workers * chunks^2 * itemsize`` (the
        builder's scratch is capped at half of it); ``None``: :data:`DEFAULT_BLOCK_BUDGET`
        (1 GiB) when sizing ``chunks``, unchecked for an explicit ``chunks``.
    scheduler : {"auto", "serial", "threads", "distributed"} or Client, default="auto"
        Where the block rows run: ``"serial"`` a plain loop (no dask), ``"threads"`` dask's
        local threaded scheduler, ``"distributed"`` the active ``dask.distributed`` client
        (X is scattered to the workers once, Q at every product), or that client itself.
        ``"auto"``: the active client if there is one, else threads (serial without dask).
    **params
        The kernel's parameters (and ``dtype``), checked now on a 1 x 1 probe.

    Returns
    -------
    BlockedGram

    Examples
    --------
    >>> import numpy as np
    >>> from kernels.functions import rbf
    >>> X = np.random.default_rng(0).normal(size=(50, 3))
    >>> op = blocked_gram(X, kernel="rbf", chunks=16, scheduler="serial")
    >>> Q = np.ones((50, 2))
    >>> bool(np.allclose(op @ Q, rbf(X) @ Q, rtol=1e-13))
    True
    """
    return make_blocked_gram(
        "blocked_gram", X, Z, kernel=kernel, chunks=chunks, memory_budget=memory_budget, scheduler=scheduler, **params
    )


def make_blocked_gram(
    fn: str, X: Any, Z: Any, *, kernel: str, chunks: int | None, memory_budget: int | None, scheduler: Any, **params: Any
) -> BlockedGram:
    """:func:`blocked_gram` with errors naming ``fn`` (the calling function)."""
    check_param(fn, "kernel", kernel, Options((*KERNELS, "precomputed")))
    kind, client = _resolve_scheduler(fn, scheduler)
    if memory_budget is not None:
        check_param(fn, "memory_budget", memory_budget, Interval(int, 1, None, "both"))
    if kernel == "precomputed":
        if not _is_dask(X) or X.ndim != 2:
            raise TypeError(
                f"{fn}: kernel='precomputed' needs a lazy dask Gram (kernels.lazy_gram.lazy_gram); got {type(X).__name__} "
                f"of shape {tuple(getattr(X, 'shape', ()))}; for an in-memory matrix use kernels.spectrum / kernels.KernelRidge"
            )
        if Z is not None or params:
            raise TypeError(f"{fn}: kernel='precomputed' takes no Z or kernel parameters; got {sorted(params) or ['Z']}")
        if chunks is not None and chunks != X.chunks[0][0]:
            raise ValueError(
                f"{fn}: chunks={chunks!r} does not apply to a precomputed Gram, which keeps its blocks of {X.chunks[0][0]} "
                "rows; leave chunks out or rechunk the Gram (K.rechunk(c))"
            )
        xp = namespace(X._meta)
        return BlockedGram(
            shape=(int(X.shape[0]), int(X.shape[1])),
            dtype=X.dtype,
            xp=xp,
            chunks=int(X.chunks[0][0]),
            scheduler=kind,
            kernel="precomputed",
            workers=_n_workers(kind, client),
            _product=_product_dask(X, kind, client),
        )
    if _is_dask(X) or _is_dask(Z):
        K = lazy_gram(X, Z, kernel=kernel, chunks=1000 if chunks is None else chunks, **params)
        return make_blocked_gram(
            fn, K, None, kernel="precomputed", chunks=None, memory_budget=memory_budget, scheduler=client or kind
        )
    if "memory_budget" in params:
        raise TypeError(f"{fn}: pass memory_budget once (it sizes the blocks and the builder's scratch)")
    symmetric = Z is None or Z is X
    Xa, xp = check_features(fn, "X", X)
    Za = Xa if symmetric else check_features(fn, "Z", Z, like=Xa, n_features=Xa.shape[1])[0]
    params = resolve_params(kernel, Xa.shape[1], params)
    probe = _probe(Xa, None if symmetric else Za, kernel, params)
    if probe.dtype != Xa.dtype:  # an explicit dtype=: convert once here, not in every block
        Xa = xp.astype(Xa, probe.dtype)
        Za = Xa if symmetric else xp.astype(Za, probe.dtype)
    n, m = int(Xa.shape[0]), int(Za.shape[0])
    item = itemsize(xp, probe.dtype)
    workers = _n_workers(kind, client)
    rows = _block_size(fn, n, item, workers, memory_budget, chunks)
    budget = DEFAULT_BLOCK_BUDGET if memory_budget is None else memory_budget
    params = {**params, "memory_budget": max(1, min(budget // (2 * workers), DEFAULT_MEMORY_BUDGET))}
    blocks = list(iter_blocks(n, rows))
    return BlockedGram(
        shape=(n, m),
        dtype=probe.dtype,
        xp=xp,
        chunks=rows,
        scheduler=kind,
        kernel=kernel,
        workers=workers,
        _product=_product_blocks(Xa, Za, kind, client, blocks, rows, kernel, params, symmetric),
    )
