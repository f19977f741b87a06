"""Frequency-principle filtering of labels and predictions (Xu et al. 2019).

The *filtering method* of Xu, Zhang, Luo, Xiao & Ma (arXiv:1901.06523, section
"filtering method" for high-dimensional data; lizhemin15/self-distillation) splits
any function on the training points into a low- and a high-frequency part with a
row-normalised Gaussian filter whose width ``delta`` is a **variance**::

    G_delta(x, x') = exp(-||x - x'||^2 / (2 delta))
    y_low_i  = sum_j G_delta(x_i, x_j) y_j / sum_j G_delta(x_i, x_j)
    y_high   = y - y_low

For a prediction h against labels y it measures, per delta (Frobenius norms over
(n, c))::

    e_low   = ||h_low  - y_low ||  / ||y_low ||
    e_high  = ||h_high - y_high||  / ||y_high||
    ratio   = ||h_low||^2 / (||h_low||^2 + ||h_high||^2)      (low-frequency ratio)

The F-principle predicts that e_low falls before e_high during training.

Accuracy and range (the statements below are checked in ``tests/test_frequency.py``).
Write ``eps`` for the working dtype's machine epsilon, ``R = max_i ||x_i - mean(X)||``
and ``r2_min`` for the smallest positive squared distance between two points.

* Filter (:func:`low_pass`, :func:`frequency_split`): for every ``delta`` in (0, inf],
  entrywise ``|low - low_exact| <= (25 eps R^2 / delta + 10 n eps) max|Y|``, where
  ``low_exact`` is the filter evaluated exactly on the same (rounded) inputs. The first
  term is the cancellation in ``||x||^2 + ||z||^2 - 2 x.z`` (see
  :func:`kernels.functions.rbf`), scaled by ``gamma = 1/(2 delta)``; the second is the
  rounding of the weighted sums. So the filter is accurate to 1e-6 relative to max|Y|
  while ``delta >= 2.5e7 eps R^2`` (float64: ``delta >= 6e-9 R^2``; float32:
  ``delta >= 3 R^2``, i.e. float32 is only trustworthy for wide filters or data
  centred near 0 on the scale of delta), and at ``delta < 25 eps R^2`` nothing is
  guaranteed: close pairs of points far from the mean get weights off by O(1).
* Small delta: when ``delta <= r2_min / (3 ln(2 n / eps))`` and the points are resolved in
  the dtype (``r2_min >= 100 eps R^2``), every off-diagonal weight is below ``eps / (2 n)``
  and ``low = Y`` to within ``4 eps max|Y|``; at 8 times that delta the nearest points
  already mix. ``delta = inf`` gives the column means exactly.
* Measures (:func:`frequency_measures`): ``e_low`` and ``e_high`` are ratios of norms of
  filtered differences; with ``B`` the filter bound above, their absolute error is at
  most ``2 sqrt(n c) B (max|h| + max|y|) / ||y_low||`` (resp. ``/ ||y_high||``). They are
  meaningful while that is small, which fails for ``e_high`` as ``delta -> 0``
  (``||y_high|| -> 0``); check ``y_high_norm``. A zero reference norm gives NaN.

Numerics. The Gram rows are built blockwise with :func:`kernels.functions.rbf`
(``gamma = 1 / (2 delta)``), so memory is one (block, n) slab, and each block is
multiplied by ``[Y, 1]`` at once (numerator and row sum in one matmul). The
diagonal ``G(x_i, x_i) = 1`` is set exactly, so no row of weights underflows
entirely: as ``delta -> 0`` the off-diagonal weights vanish and ``y_low -> y``;
``delta = inf`` gives the column means exactly. For a sweep of deltas the block
is computed once at the largest finite delta ``D`` and reused as
``G_delta = G_D ** (D / delta)``: the relative rounding error of the power equals
that of a direct ``exp(-||x - x'||^2 / (2 delta))``, and weights that underflow in
``G_D`` are smaller still at ``delta < D``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from kernels.backend import device, to_numpy
from kernels.checks import (
    Interval,
    check_features,
    check_labels,
    check_param,
    check_vector,
    iter_blocks,
)
from kernels.gram_fill import (
    DEFAULT_MEMORY_BUDGET,  # working memory for one block of Gram rows (bytes)
)

__all__ = ["FrequencySplit", "FrequencyMeasures", "low_pass", "frequency_split", "frequency_measures", "delta_grid"]

# (block, n) float temporaries alive at once: the reference block, one filtered
# block and the rbf call's own scratch.
_SLABS = 4

CONSTRAINTS = {
    "delta": Interval(float, 0, None, "neither", allow_inf=True),  # inf: the column means
    "memory_budget": Interval(int, 1, None, "left"),
    "num": Interval(int, 1, None, "left"),
    "sample": Interval(int, 2, None, "left"),
    "seed": Interval(int, 0, None, "left"),
    "quantile": Interval(float, 0, 1, "both"),
}


@dataclass(frozen=True, eq=False)
class FrequencySplit:
    """``y = low + high`` for one filter width.

    Attributes
    ----------
    low : array of shape (n,) or (n, c)
        ``G_delta y`` row-normalised, in the namespace/device of the input.
    high : array, same shape
        ``y - low``.
    delta : float
        The filter variance.
    n_blocks : int
        How many row blocks the Gram matrix was built in.
    """

    low: Any
    high: Any
    delta: float
    n_blocks: int = 1


@dataclass(frozen=True, eq=False)
class FrequencyMeasures:
    """F-principle measures of a prediction h against labels y over a sweep of deltas.

    Attributes
    ----------
    deltas : numpy.ndarray of shape (T,)
        Filter variances, in the order given.
    e_low, e_high : array of shape (T,)
        ``||h_low - y_low|| / ||y_low||`` and ``||h_high - y_high|| / ||y_high||``
        (NaN where the reference norm is 0).
    low_ratio : array of shape (T,)
        ``||h_low||^2 / (||h_low||^2 + ||h_high||^2)`` (NaN where h = 0).
    y_low_norm, y_high_norm, h_low_norm, h_high_norm : array of shape (T,)
        The Frobenius norms the ratios are made of.
    n_blocks : int
        Row blocks per delta sweep (the Gram rows are computed once per block).
    """

    deltas: np.ndarray
    e_low: Any
    e_high: Any
    low_ratio: Any
    y_low_norm: Any
    y_high_norm: Any
    h_low_norm: Any
    h_high_norm: Any
    n_blocks: int = 1


# ----------------------------------------------------------------------------- helpers


def _rbf(*args: Any, **kwargs: Any) -> Any:
    from kernels.functions import (
        rbf,  # late import: kernels.functions is a sibling module
    )

    return rbf(*args, **kwargs)


def _block_rows(n: int, itemsize: int, memory_budget: int | None, fn: str) -> int:
    if memory_budget is not None:
        check_param(fn, "memory_budget", memory_budget, CONSTRAINTS["memory_budget"])
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else int(memory_budget)
    return max(1, budget // (_SLABS * n * itemsize))


def _diag_mask(xp: ModuleType, rows: slice, n: int, device: Any) -> Any:
    """Boolean (b, n) mask of the entries ``(i, i)`` of rows ``rows`` of an n x n matrix."""
    r = xp.arange(rows.start, rows.stop, device=device)
    c = xp.arange(n, device=device)
    return r[:, None] == c[None, :]


def _gauss_block(X: Any, xp: ModuleType, rows: slice, delta: float, memory_budget: int | None) -> Any:
    """Rows ``rows`` of ``G_delta(X, X)`` with the diagonal set to exactly 1 (finite delta)."""
    K = _rbf(X[rows, :], X, gamma=1.0 / (2.0 * delta), memory_budget=memory_budget)
    one = xp.asarray(1.0, dtype=K.dtype, device=device(K))
    return xp.where(_diag_mask(xp, rows, X.shape[0], device(K)), one, K)


def _with_ones(xp: ModuleType, *cols: Any) -> Any:
    """Stack 2-D column blocks and a column of ones: ``[c_1, ..., c_m, 1]``."""
    n = cols[0].shape[0]
    ones = xp.ones((n, 1), dtype=cols[0].dtype, device=device(cols[0]))
    return xp.concat([*cols, ones], axis=1)


def _check_delta(fn: str, delta: Any) -> float:
    check_param(fn, "delta", delta, CONSTRAINTS["delta"])
    return float(delta)


def _check_xy(X: Any, Y: Any, fn: str, yname: str) -> tuple[Any, Any, ModuleType]:
    X, xp = check_features(fn, "X", X)
    Y, _ = check_labels(fn, yname, Y, X.shape[0], like=X)
    dt = xp.result_type(X.dtype, Y.dtype)
    return xp.astype(X, dt), xp.astype(Y, dt), xp


# ----------------------------------------------------------------------------- public


def low_pass(X: Any, Y: Any, *, delta: float, memory_budget: int | None = None) -> Any:
    """Row-normalised Gaussian low-pass filter of Y over the points X.

    ``y_low_i = sum_j exp(-||x_i - x_j||^2 / (2 delta)) y_j / sum_j exp(-||x_i - x_j||^2 / (2 delta))``
    (Xu et al. 2019, filtering method).

    Parameters
    ----------
    X : array of shape (n, d)
        Points (numpy, torch or CuPy); the result stays in its namespace and device.
    Y : array of shape (n,) or (n, c)
        Values on the points (labels, one-hot labels or predictions).
    delta : float in (0, inf]
        Filter variance. ``delta -> 0`` returns Y; ``delta = inf`` the column means.
    memory_budget : int, default=None
        Bytes for one block of Gram rows (default 256 MiB); the Gram matrix is never
        held whole.

    Returns
    -------
    array of shape of Y
        ``y_low``. The high part is ``Y - y_low`` (see :func:`frequency_split`).

    Notes
    -----
    Accuracy: ``|low - low_exact| <= (25 eps R^2 / delta + 10 n eps) max|Y|`` entrywise
    for any delta, with ``R = max ||x_i - mean(X)||`` and ``eps`` the dtype's epsilon;
    accurate to 1e-6 max|Y| for ``delta >= 2.5e7 eps R^2``. For
    ``delta <= r2_min / (3 ln(2 n / eps))`` (points resolved in the dtype) it returns Y
    to within ``4 eps max|Y|`` (module notes).

    Cost O(n^2 d) time, O(block * n) memory. Each block of Gram rows comes from
    :func:`kernels.functions.rbf` with ``gamma = 1/(2 delta)`` and its diagonal set
    to 1, then one matmul with ``[Y, 1]`` gives numerators and row sums together.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [1.0], [10.0]])
    >>> np.round(low_pass(X, np.array([1.0, 0.0, 0.0]), delta=0.5), 3)
    array([0.731, 0.269, 0.   ])
    """
    return frequency_split(X, Y, delta=delta, memory_budget=memory_budget).low


def frequency_split(X: Any, Y: Any, *, delta: float, memory_budget: int | None = None) -> FrequencySplit:
    """Split Y into low- and high-frequency parts, ``Y = low + high`` (see :func:`low_pass`).

    Parameters
    ----------
    X : array of shape (n, d)
    Y : array of shape (n,) or (n, c)
    delta : float in (0, inf]
        Filter variance.
    memory_budget : int, default=None
        Bytes for one block of Gram rows.

    Returns
    -------
    FrequencySplit

    Notes
    -----
    ``low`` has the accuracy of :func:`low_pass`; ``high = Y - low`` has the same
    absolute error, so its *relative* error grows as ``||high|| -> 0`` (small delta).
    """
    fn = "frequency_split"
    delta = _check_delta(fn, delta)
    X, Y, xp = _check_xy(X, Y, fn, "Y")
    n = X.shape[0]
    vec = Y.ndim == 1
    Y2 = Y[:, None] if vec else Y
    if math.isinf(delta):
        low = xp.broadcast_to(xp.mean(Y2, axis=0, keepdims=True), Y2.shape)
        low = xp.asarray(low, copy=True)
        n_blocks = 0
    else:
        block = _block_rows(n, getattr(X.dtype, "itemsize", 8), memory_budget, fn)
        A = _with_ones(xp, Y2)
        c = Y2.shape[1]
        parts = []
        for rows in iter_blocks(n, block):
            P = xp.matmul(_gauss_block(X, xp, rows, delta, memory_budget), A)
            parts.append(P[:, :c] / P[:, c:])
        low = xp.concat(parts, axis=0)
        n_blocks = len(parts)
    if vec:
        low = low[:, 0]
    return FrequencySplit(low=low, high=Y - low, delta=delta, n_blocks=n_blocks)


def frequency_measures(
    X: Any, h: Any, y: Any, *, deltas: Sequence[float] | Any, memory_budget: int | None = None
) -> FrequencyMeasures:
    """e_low, e_high and the low-frequency ratio of a prediction h for each delta.

    For each ``delta`` in ``deltas`` (Xu et al. 2019, filtering method), with
    ``f_low = G_delta f`` row-normalised and ``f_high = f - f_low``::

        e_low  = ||h_low - y_low|| / ||y_low||
        e_high = ||h_high - y_high|| / ||y_high||
        ratio  = ||h_low||^2 / (||h_low||^2 + ||h_high||^2)

    Parameters
    ----------
    X : array of shape (n, d)
        Training points.
    h : array of shape (n,) or (n, c)
        Prediction on X (e.g. network outputs or softmax probabilities).
    y : array, same shape as h
        Labels (e.g. one-hot).
    deltas : float or sequence of floats in (0, inf]
        Filter variances (see :func:`delta_grid`).
    memory_budget : int, default=None
        Bytes for one block of Gram rows (default 256 MiB).

    Returns
    -------
    FrequencyMeasures
        Arrays of shape (len(deltas),) in the namespace/device of X.

    Notes
    -----
    Accuracy: with ``B = 25 eps R^2 / delta + 10 n eps`` (the filter's bound, see
    :func:`low_pass`), ``|e_low - e_low_exact| <= 2 sqrt(n c) B (max|h| + max|y|) / ||y_low||``
    and likewise for ``e_high`` with ``||y_high||``: ``e_high`` loses accuracy as
    ``delta -> 0`` because ``||y_high|| -> 0`` (``y_high_norm`` says how small it is).

    One pass over row blocks: each block of Gram rows is built once (at the largest
    finite delta, see the module notes), and for every delta one matmul with
    ``[h, y, 1]`` filters h and y together. Only sums of squares are accumulated, so
    memory is one block plus O(n c). Cost O(n^2 (d + T (c + 1))).
    """
    fn = "frequency_measures"
    deltas_np = check_vector(fn, "deltas", deltas, constraint=CONSTRAINTS["delta"])
    X, xp = check_features(fn, "X", X)
    n = X.shape[0]
    h, _ = check_labels(fn, "h", h, n, like=X)
    y, _ = check_labels(fn, "y", y, n, like=X)
    if tuple(h.shape) != tuple(y.shape):
        raise ValueError(f"{fn}: h must have the shape of y {tuple(y.shape)}; got {tuple(h.shape)}")
    dt = xp.result_type(X.dtype, h.dtype, y.dtype)
    X, h, y = xp.astype(X, dt), xp.astype(h, dt), xp.astype(y, dt)
    if h.ndim == 1:
        h, y = h[:, None], y[:, None]
    c = h.shape[1]
    T = deltas_np.size
    finite = deltas_np[np.isfinite(deltas_np)]
    d_ref = float(finite.max()) if finite.size else math.inf
    A = _with_ones(xp, h, y)
    block = _block_rows(n, getattr(X.dtype, "itemsize", 8), memory_budget, fn)

    zero = xp.zeros((), dtype=dt, device=device(X))
    # sums of squares per delta: h_low, h_high, y_low, y_high, h_low - y_low, h_high - y_high
    acc = [[zero] * 6 for _ in range(T)]
    n_blocks = 0
    inf_low = None
    if not finite.size == T:  # delta = inf: the column means, exactly
        inf_low = xp.mean(A[:, : 2 * c], axis=0, keepdims=True)
    for rows in iter_blocks(n, block):
        n_blocks += 1
        G_ref = _gauss_block(X, xp, rows, d_ref, memory_budget) if finite.size else None
        hb, yb = h[rows, :], y[rows, :]
        for t, delta in enumerate(deltas_np):
            if math.isinf(delta):
                low = xp.broadcast_to(inf_low, (hb.shape[0], 2 * c))
            else:
                G = G_ref if delta == d_ref else xp.pow(G_ref, d_ref / float(delta))
                P = xp.matmul(G, A)
                low = P[:, : 2 * c] / P[:, 2 * c :]
            hl, yl = low[:, :c], low[:, c:]
            hh, yh = hb - hl, yb - yl
            for k, part in enumerate((hl, hh, yl, yh, hl - yl, hh - yh)):
                acc[t][k] = acc[t][k] + xp.sum(part * part)
    S = [xp.stack([acc[t][k] for t in range(T)]) for k in range(6)]
    s_hl, s_hh, s_yl, s_yh, s_dl, s_dh = S
    nan = xp.asarray(float("nan"), dtype=dt, device=device(X))

    def _ratio(num: Any, den: Any) -> Any:
        safe = xp.where(den > 0, den, xp.ones_like(den))
        return xp.where(den > 0, num / safe, nan)

    return FrequencyMeasures(
        deltas=deltas_np,
        e_low=_ratio(xp.sqrt(s_dl), xp.sqrt(s_yl)),
        e_high=_ratio(xp.sqrt(s_dh), xp.sqrt(s_yh)),
        low_ratio=_ratio(s_hl, s_hl + s_hh),
        y_low_norm=xp.sqrt(s_yl),
        y_high_norm=xp.sqrt(s_yh),
        h_low_norm=xp.sqrt(s_hl),
        h_high_norm=xp.sqrt(s_hh),
        n_blocks=n_blocks,
    )


def delta_grid(
    X: Any, num: int = 5, *, sample: int = 1000, seed: int = 0, quantiles: tuple[float, float] = (0.05, 0.95)
) -> np.ndarray:
    """Filter variances spanning the data's distance scale.

    On a random subsample of ``min(sample, n)`` rows (drawn without replacement with
    ``numpy.random.default_rng(seed)``), take the positive pairwise squared distances
    ``r^2 = ||x_i - x_j||^2`` (i < j) and their ``quantiles`` q_lo, q_hi; return
    ``num`` values geometrically spaced from ``q_lo / 2`` to ``q_hi / 2``. With
    ``delta = r^2 / 2`` the filter weight of a pair at distance r is ``e^{-1}``, so
    the grid runs from filters that average only close neighbours to filters that
    average most of the data set.

    Parameters
    ----------
    X : array of shape (n, d)
    num : int, default=5
        Number of deltas (ascending).
    sample : int, default=1000
        Subsample size (>= 2) for the distance quantiles.
    seed : int, default=0
    quantiles : (float, float), default=(0.05, 0.95)
        Low and high quantiles in [0, 1], low <= high.

    Returns
    -------
    numpy.ndarray of shape (num,)
        Ascending deltas (float64).

    Notes
    -----
    The quantiles are numpy's (linear interpolation) of the float64 squared distances
    of the subsample, exact to float64 rounding; for ``n > sample`` they are a random
    estimate of the full set's quantiles (a different ``seed`` moves them by the
    sampling error of a quantile of ``sample (sample - 1) / 2`` dependent pairs).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(200, 3))
    >>> g = delta_grid(X, 4)
    >>> g.shape, bool(np.all(np.diff(g) > 0))
    ((4,), True)
    """
    fn = "delta_grid"
    check_param(fn, "num", num, CONSTRAINTS["num"])
    check_param(fn, "sample", sample, CONSTRAINTS["sample"])
    check_param(fn, "seed", seed, CONSTRAINTS["seed"])
    if not isinstance(quantiles, (tuple, list)) or len(quantiles) != 2:
        raise ValueError(f"{fn}: quantiles must be a pair (low, high) of floats in [0, 1]; got {quantiles!r}")
    for q in quantiles:
        check_param(fn, "quantiles", q, CONSTRAINTS["quantile"])
    if quantiles[0] > quantiles[1]:
        raise ValueError(f"{fn}: quantiles must be a pair (low, high) with low <= high; got {quantiles!r}")
    X, _ = check_features(fn, "X", X)
    Xh = to_numpy(X).astype(np.float64, copy=False)  # X is checked above
    n = Xh.shape[0]
    if n > sample:
        Xh = Xh[np.sort(np.random.default_rng(seed).choice(n, size=sample, replace=False))]
    from scipy.spatial.distance import pdist

    r2 = pdist(Xh, "sqeuclidean")
    r2 = r2[r2 > 0]
    if r2.size == 0:
        raise ValueError(f"{fn}: X must contain at least two distinct points; got {n} point(s) with all pairwise distances 0")
    lo, hi = np.quantile(r2, quantiles) / 2.0
    return np.geomspace(lo, hi, int(num))
