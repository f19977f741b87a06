"""Infinitely wide convolutional ReLU networks: the CNN-GP (NNGP) and CNTK (NTK) kernels.

Images are ``(n, H, W, C)`` arrays, channels last. An architecture is a sequence of
layer names (:data:`LAYERS`) or a preset (:data:`PRESETS`, ``"cntk-<L>"``,
``"cntk-gap-<L>"``); :func:`cnn_architecture` resolves and checks one. The kernels keep,
per image pair, the covariance ``Sigma[p, p']`` of the current feature map over
position pairs and (for the NTK) the tangent kernel ``Theta[p, p']``, and push them
through the layers (Arora et al. 2019, Section 4 and Appendix; Novak et al. 2019;
Garriga-Alonso et al. 2019). The recursion and the finite network it is the limit of
are stated in :data:`CNN_DOC` (the docstrings of :func:`cnn_nngp` and :func:`cnn_ntk`).

Blocks of ``b1 x b2`` image pairs are arrays shaped ``(b1, b2, H, W, H, W)`` (all
position pairs) or ``(b1, b2, H, W)`` (the diagonal ``p = p'`` only, enough when there
is no pooling and the readout is ``"flatten"``); a 3x3 convolution is 9 shifted slices
of a zero-padded copy, a 2x2 average pool a reshape and a mean. Only functions of the
array API standard touch the arrays, so numpy, torch (CPU/CUDA), CuPy and
``array_api_strict`` all run the same code.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import array_api_compat

from kernels.backend import cpu_workers, device, namespace
from kernels.checks import as_array, iter_blocks
from kernels.gram_fill import check_bias_scale, fill_gram, itemsize, prepare_pair
from kernels.relu import arccos_step

__all__ = ["LAYERS", "PRESETS", "cnn_architecture", "cnn_nngp", "cnn_ntk"]

CONVS = {"conv": 3, "conv1": 1}  # layer name -> filter side (q = side**2 taps)
READOUTS = ("flatten", "gap")
LAYERS = (*CONVS, "relu", "pool", *READOUTS)


def _myrtle(reps: tuple[int, int, int]) -> tuple[str, ...]:
    """Shankar et al. 2020: [conv relu] x r0, pool, [conv relu] x r1, pool, [conv relu] x r2, pool x 3, dense."""
    cr = ("conv", "relu")
    return cr * reps[0] + ("pool",) + cr * reps[1] + ("pool",) + cr * reps[2] + ("pool",) * 3 + ("flatten",)


# Fixed presets; "cntk-<L>" and "cntk-gap-<L>" (L >= 1) are resolved by pattern.
PRESETS: dict[str, tuple[str, ...]] = {
    "myrtle-5": _myrtle((2, 1, 1)),
    "myrtle-7": _myrtle((2, 2, 2)),
    "myrtle-10": _myrtle((3, 3, 3)),
    "fastnet": ("conv", "relu") + ("conv", "pool", "relu", "conv", "relu") * 3 + ("gap",),
}
_CNTK = re.compile(r"cntk(-gap)?-([1-9][0-9]*)")


# ----------------------------------------------------------------------------- architecture


def cnn_architecture(architecture: str | Sequence[str]) -> tuple[str, ...]:
    """The checked layer list of an architecture (a preset name or a sequence of layer names).

    Presets: ``"cntk-<L>"`` = ``[conv, relu] x L, flatten`` (Arora et al. 2019's
    vanilla CNTK), ``"cntk-gap-<L>"`` = ``[conv, relu] x L, gap`` (their CNTK-GAP), and
    :data:`PRESETS` (``"myrtle-5"``, ``"myrtle-7"``, ``"myrtle-10"``, ``"fastnet"``; see
    :data:`CNN_DOC`). A layer list must read ::

        conv (pool* relu pool* conv)* pool* relu pool* readout

    where ``conv`` is ``"conv"`` (3x3) or ``"conv1"`` (1x1) and ``readout`` is
    ``"flatten"`` or ``"gap"``: it starts with a convolution, every later convolution and
    the readout follow exactly one ``"relu"`` since the convolution before (so that each
    layer after the first reads a ReLU output and has ``c_sigma = 2``), and the readout
    comes last, once. Errors name ``architecture`` and the position.

    Examples
    --------
    >>> cnn_architecture("cntk-2")
    ('conv', 'relu', 'conv', 'relu', 'flatten')
    """
    return _layers("cnn_architecture", architecture)


def _layers(fn: str, architecture: Any) -> tuple[str, ...]:
    """:func:`cnn_architecture` with errors that name the public function ``fn``."""
    if isinstance(architecture, str):
        if architecture in PRESETS:
            return PRESETS[architecture]
        match = _CNTK.fullmatch(architecture)
        if match is None:
            names = ", ".join(repr(p) for p in ("cntk-<L>", "cntk-gap-<L>", *PRESETS))
            raise ValueError(
                f"{fn}: architecture must be a preset ({names}) or a sequence of layer names from {LAYERS}; got {architecture!r}"
            )
        return ("conv", "relu") * int(match.group(2)) + ("gap" if match.group(1) else "flatten",)
    if not isinstance(architecture, Sequence):
        raise TypeError(f"{fn}: architecture must be a preset name or a sequence of layer names; got {architecture!r}")
    if len(architecture) == 0:
        raise ValueError(
            f"{fn}: architecture must not be empty; give layer names such as ['conv', 'relu', 'flatten'] or a preset"
        )
    layers = tuple(architecture)
    for k, name in enumerate(layers):
        if not (isinstance(name, str) and name in LAYERS):
            raise ValueError(f"{fn}: architecture[{k}] must be one of {', '.join(map(repr, LAYERS))}; got {name!r}")
    if layers[-1] not in READOUTS:
        raise ValueError(f"{fn}: architecture must end with a readout 'flatten' or 'gap'; got last layer {layers[-1]!r}")
    if layers[0] not in CONVS:
        raise ValueError(
            f"{fn}: architecture must start with a convolution 'conv' or 'conv1'; got architecture[0] = {layers[0]!r}"
        )
    activated = False  # a 'relu' since the last convolution
    for k, name in enumerate(layers[1:], start=1):
        if name in READOUTS and k != len(layers) - 1:
            raise ValueError(f"{fn}: architecture[{k}] = {name!r}: the readout must be the last layer, once")
        if name == "relu":
            if activated:
                raise ValueError(f"{fn}: architecture[{k}] = 'relu' follows another 'relu' without a convolution between them")
            activated = True
        elif name in CONVS or name in READOUTS:
            if not activated:
                raise ValueError(
                    f"{fn}: architecture[{k}] = {name!r} needs a 'relu' since the convolution before it (the kernels cover conv-relu networks)"
                )
            activated = False
    return layers


def _map_sizes(fn: str, layers: tuple[str, ...], H: int, W: int) -> list[tuple[int, int]]:
    """Spatial size of the feature map after each layer; refuses pooling a map below 2x2."""
    sizes, h, w = [], H, W
    for k, name in enumerate(layers):
        if name == "pool":
            if h < 2 or w < 2:
                raise ValueError(
                    f"{fn}: architecture[{k}] = 'pool' would pool a {h}x{w} map (pooling needs at least 2x2); "
                    f"X's images are {H}x{W}: use larger images or fewer 'pool' layers"
                )
            h, w = h // 2, w // 2
        sizes.append((h, w))
    return sizes


def _all_pairs(layers: tuple[str, ...]) -> bool:
    """Whether the kernel needs all position pairs (pooling, or a 'gap' readout)."""
    return "pool" in layers or layers[-1] == "gap"


# ----------------------------------------------------------------------------- elementwise steps
# Arrays: (..., h, w, h, w) with full=True (position pairs), (..., h, w) with full=False (p = p').


def _conv(xp: ModuleType, S: Any, side: int, full: bool) -> Any:
    """``(1/q) sum_delta S[p + delta, p' + delta]`` over a side x side filter, zero outside the image."""
    if side == 1:
        return S
    r, nd = side // 2, 4 if full else 2
    h, w = S.shape[-nd], S.shape[-nd + 1]
    lead = tuple(S.shape[:-nd])
    padded = (h + 2 * r, w + 2 * r) * (nd // 2)
    P = xp.zeros(lead + padded, dtype=S.dtype, device=device(S))
    inner = (slice(r, r + h), slice(r, r + w)) * (nd // 2)
    P[(..., *inner)] = S
    out: Any = None
    for dy in range(side):
        for dx in range(side):
            part = P[(..., *((slice(dy, dy + h), slice(dx, dx + w)) * (nd // 2)))]
            out = part if out is None else out + part
    return out / (side * side)


def _pool(xp: ModuleType, S: Any, full: bool) -> Any:
    """2x2 average pooling, stride 2, in p (and p'); odd maps drop their last row / column (floor)."""
    nd = 4 if full else 2
    h, w = S.shape[-nd] // 2, S.shape[-nd + 1] // 2
    lead = tuple(S.shape[:-nd])
    S = S[(..., *((slice(0, 2 * h), slice(0, 2 * w)) * (nd // 2)))]
    S = xp.reshape(S, lead + (h, 2, w, 2) * (nd // 2))
    axes = (-7, -5, -3, -1) if full else (-3, -1)
    return xp.mean(S, axis=axes)


def _diagonal(xp: ModuleType, S: Any) -> Any:
    """``S[..., p, p]`` of a full array (..., h, w, h, w), shaped (..., h, w)."""
    lead, h, w = tuple(S.shape[:-4]), S.shape[-4], S.shape[-3]
    flat = xp.reshape(S, lead + ((h * w) ** 2,))
    return xp.reshape(flat[..., :: h * w + 1], lead + (h, w))


def _position_eye(xp: ModuleType, h: int, w: int, like: Any) -> Any:
    return xp.reshape(xp.eye(h * w, dtype=xp.bool, device=device(like)), (h, w, h, w))


def _propagate(
    xp: ModuleType,
    S: Any,
    layers: tuple[str, ...],
    *,
    full: bool,
    beta2: float,
    ntk: bool,
    norms: Callable[[int, Any], tuple[Any, Any]],
    mask: Callable[[Any], Any],
) -> tuple[Any, Any]:
    """``(Sigma, Theta)`` of the feature map that enters the readout, from the input's ``Sigma^0``.

    ``norms(k, S)`` gives the variances (broadcastable to S) of the two points at the
    k-th 'relu'; ``mask(S)`` the entries that pair a point with itself (or None).
    """
    T = None  # Theta; None stands for 0 (before the first convolution)
    k = 0
    for name in layers[:-1]:
        if name in CONVS:
            S = _conv(xp, S, CONVS[name], full) + beta2
            if ntk:
                T = S if T is None else _conv(xp, T, CONVS[name], full) + S
        elif name == "relu":
            a, b = norms(k, S)
            k += 1
            S, dot = arccos_step(xp, S, a, b, mask(S), ntk)
            if ntk:
                T = T * dot
        else:  # pool
            S = _pool(xp, S, full)
            if ntk:
                T = _pool(xp, T, full)
    return S, T


def _readout(xp: ModuleType, S: Any, T: Any, readout: str, *, full: bool, beta2: float, ntk: bool) -> Any:
    """Dense readout: mean over p of the p = p' terms ('flatten') or over all (p, p') ('gap'), plus beta^2."""
    nd = 4 if full else 2
    if readout == "flatten" and full:
        S, T = _diagonal(xp, S), (_diagonal(xp, T) if ntk else None)
        nd = 2
    axes = tuple(range(-nd, 0))
    out = xp.mean(S, axis=axes) + beta2
    return xp.mean(T, axis=axes) + out if ntk else out


# ----------------------------------------------------------------------------- inputs and blocks


def _inner(xp: ModuleType, A: Any, B: Any, full: bool) -> Any:
    """``Sigma^0[i, j, p, p'] = A[i, p] . B[j, p'] / C`` ((b1, b2, h, w, h, w), or p = p' only)."""
    b1, h, w, C = A.shape
    b2, P = B.shape[0], h * w
    if full:
        G = xp.reshape(A, (b1 * P, C)) @ xp.reshape(B, (b2 * P, C)).T
        G = xp.permute_dims(xp.reshape(G, (b1, P, b2, P)), (0, 2, 1, 3))
        return xp.reshape(G, (b1, b2, h, w, h, w)) / C
    Ap = xp.permute_dims(xp.reshape(A, (b1, P, C)), (1, 0, 2))
    Bp = xp.permute_dims(xp.reshape(B, (b2, P, C)), (1, 2, 0))
    G = xp.permute_dims(xp.matmul(Ap, Bp), (1, 2, 0))  # (b1, b2, P)
    return xp.reshape(G, (b1, b2, h, w)) / C


def _self_inner(xp: ModuleType, A: Any, full: bool) -> Any:
    """``Sigma^0`` of each image with itself: (b, h, w, h, w), or (b, h, w) for p = p' only."""
    b, h, w, C = A.shape
    if not full:
        return xp.sum(A * A, axis=-1) / C
    A3 = xp.reshape(A, (b, h * w, C))
    return xp.reshape(xp.matmul(A3, xp.permute_dims(A3, (0, 2, 1))), (b, h, w, h, w)) / C


def _self_variances(xp: ModuleType, A: Any, layers: tuple[str, ...], *, full: bool, beta2: float, batch: int) -> list[Any]:
    """Per image, the variances ``Sigma(x, x)[p, p]`` (n, h, w) entering each 'relu'.

    With pooling they depend on the off-diagonal ``Sigma(x, x)[p, p']``, so the NNGP
    recursion runs on each image paired with itself (all position pairs when ``full``).
    """
    parts: list[list[Any]] = []
    for rows in iter_blocks(A.shape[0], batch):
        found: list[Any] = []

        def norms(k: int, S: Any) -> tuple[Any, Any]:
            if not full:
                found.append(S)
                return S, S
            d = _diagonal(xp, S)
            found.append(d)
            b, h, w = d.shape
            return xp.reshape(d, (b, h, w, 1, 1)), xp.reshape(d, (b, 1, 1, h, w))

        def mask(S: Any) -> Any:
            return _position_eye(xp, S.shape[-4], S.shape[-3], S) if full else None

        _propagate(xp, _self_inner(xp, A[rows, ...], full), layers, full=full, beta2=beta2, ntk=False, norms=norms, mask=mask)
        parts.append(found)
    return [xp.concat([p[k] for p in parts], axis=0) for k in range(len(parts[0]))]


def _pair_bytes(xp: ModuleType, dtype: Any, H: int, W: int, full: bool) -> int:
    """Scratch bytes per image pair: about 10 arrays of the (padded) position-pair size."""
    cells = (H + 2) * (W + 2)
    return 10 * (cells * cells if full else cells) * itemsize(xp, dtype)


def _check_images(fn: str, name: str, X: Any, like: Any = None) -> Any:
    """A 4-D (n, H, W, C) array in a supported namespace (lists become arrays, of ``like``'s dtype)."""
    is_array = array_api_compat.is_array_api_obj(X)
    arr, _ = as_array(fn, name, X, like=like if not is_array else None, dtype=None if is_array or like is None else like.dtype)
    if arr.ndim != 4:
        raise ValueError(
            f"{fn}: {name} must be 4-D (n_images, height, width, channels), channels last; got shape {tuple(arr.shape)}; "
            f"add a channel axis with {name}[..., None] or move channels last with {name}.transpose(0, 2, 3, 1)"
        )
    if min(arr.shape) < 1:
        raise ValueError(f"{fn}: {name} must have at least one image, pixel and channel; got shape {tuple(arr.shape)}")
    return arr


def _prepare_images(fn: str, X: Any, Z: Any, dtype: Any, memory_budget: Any, bias: Any) -> tuple[Any, Any, ModuleType, bool, int]:
    """:func:`kernels.gram_fill.prepare_pair` for image arrays: ``(X, Z, xp, symmetric, budget)``."""
    symmetric = Z is None or Z is X
    Xa = _check_images(fn, "X", X)
    shape = tuple(Xa.shape[1:])
    Za = None
    if not symmetric:
        Za = _check_images(fn, "Z", Z, like=Xa)
        if tuple(Za.shape[1:]) != shape:
            raise ValueError(
                f"{fn}: Z's images have shape {tuple(Za.shape[1:])} but X's have {shape} (height, width, channels); they must match"
            )
    xp = namespace(Xa)
    X2 = xp.reshape(Xa, (Xa.shape[0], -1))
    Z2 = None if Za is None else namespace(Za).reshape(Za, (Za.shape[0], -1))
    X2, Z2, xp, sym, budget = prepare_pair(fn, X2, Z2, dtype, memory_budget, bias=bias)
    Xr = xp.reshape(X2, (X2.shape[0], *shape))
    return Xr, (Xr if sym else xp.reshape(Z2, (Z2.shape[0], *shape))), xp, sym, budget


def _cnn_kernel(fn: str, X: Any, Z: Any, architecture: Any, bias: Any, dtype: Any, memory_budget: Any, *, ntk: bool) -> Any:
    layers = _layers(fn, architecture)
    X, Z, xp, sym, budget = _prepare_images(fn, X, Z, dtype, memory_budget, bias)
    _, H, W, _ = X.shape
    _map_sizes(fn, layers, H, W)
    n_conv = sum(name in CONVS for name in layers)
    beta2 = check_bias_scale(fn, bias, n_conv, xp, X.dtype, f"{n_conv} convolutions")
    full, readout = _all_pairs(layers), layers[-1]
    per_pair = _pair_bytes(xp, X.dtype, H, W, full)
    batch = max(1, budget // per_pair)
    vx = _self_variances(xp, X, layers, full=full, beta2=beta2, batch=batch)
    vz = vx if sym else _self_variances(xp, Z, layers, full=full, beta2=beta2, batch=batch)

    def pair_block(rows: slice, cols: slice, shift: int | None) -> Any:
        """K[rows, cols]; ``shift`` = k: row i and column i + k are one image (None: no such pairs)."""
        b1, b2 = rows.stop - rows.start, cols.stop - cols.start

        def norms(k: int, S: Any) -> tuple[Any, Any]:
            a, b = vx[k][rows, ...], vz[k][cols, ...]
            h, w = a.shape[1], a.shape[2]
            if full:
                return xp.reshape(a, (b1, 1, h, w, 1, 1)), xp.reshape(b, (1, b2, 1, 1, h, w))
            return xp.reshape(a, (b1, 1, h, w)), xp.reshape(b, (1, b2, h, w))

        def mask(S: Any) -> Any:
            if shift is None:
                return None
            same = xp.eye(b1, b2, k=shift, dtype=xp.bool, device=device(S))
            if not full:
                return xp.reshape(same, (b1, b2, 1, 1))
            eye = _position_eye(xp, S.shape[-4], S.shape[-3], S)
            return xp.logical_and(xp.reshape(same, (b1, b2, 1, 1, 1, 1)), eye)

        S0 = _inner(xp, X[rows, ...], Z[cols, ...], full)
        S, T = _propagate(xp, S0, layers, full=full, beta2=beta2, ntk=ntk, norms=norms, mask=mask)
        return _readout(xp, S, T, readout, full=full, beta2=beta2, ntk=ntk)

    # numpy's elementwise passes run in one thread: split each row block's columns over the cores
    # (numpy's ufuncs release the GIL); torch and CuPy parallelise their own.
    workers = cpu_workers(8) if array_api_compat.is_numpy_namespace(xp) else 1

    def chunks(rows: slice, cols: slice, diag: bool) -> list[tuple[slice, slice, int | None]]:
        """Column chunks of at most ``budget / workers`` scratch each, at least one per worker."""
        ncols = cols.stop - cols.start
        width = max(1, budget // (per_pair * (rows.stop - rows.start) * workers))
        width = min(width, max(1, -(-ncols // workers)))
        out = []
        for c in iter_blocks(ncols, width):
            chunk = slice(cols.start + c.start, cols.start + c.stop)
            overlap = diag and chunk.start < rows.stop
            out.append((rows, chunk, rows.start - chunk.start if overlap else None))
        return out

    def fill(pool: ThreadPoolExecutor | None) -> Any:
        def block(rows: slice, cols: slice, diag: bool) -> Any:
            parts = chunks(rows, cols, diag)
            if pool is None or len(parts) < 2:
                out = [pair_block(*p) for p in parts]
            else:
                out = list(pool.map(lambda p: pair_block(*p), parts))
            return out[0] if len(out) == 1 else xp.concat(out, axis=1)

        return fill_gram(X, Z, xp, block, symmetric=sym, row_bytes=per_pair * Z.shape[0], budget=budget)

    if workers < 2:
        return fill(None)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="airkit-cnn") as pool:
        return fill(pool)


CNN_DOC = """

    Convolutional ReLU network on images ``x`` of shape (H, W, C), channels last, in the
    NTK parameterisation with ``c_sigma = 2`` and bias standard deviation ``bias = beta``,
    the same conventions as :func:`kernels.relu.ntk_relu`. The finite network, layer by
    layer (``q`` = filter taps: 9 for ``"conv"``, a 3x3 "same" convolution with zero
    padding and stride 1; 1 for ``"conv1"``, a 1x1 convolution)::

        first conv  h[p]  = (1 / sqrt(C_in q)) sum_{delta, c} W[delta, c] x[p + delta, c] + beta b
        later conv  h[p]  = sqrt(2 / (C q))    sum_{delta, c} W[delta, c] g[p + delta, c] + beta b
        relu        g     = relu(h)
        pool        u'[p] = mean of u over the 2x2 block p of any map u (h or g; stride 2,
                            an odd map drops its last row / column): linear
        flatten     f = sqrt(2 / (C P)) w . vec(g) + beta b            (P = positions of g)
        gap         f = sqrt(2 / C) w . (1/P) sum_p g[p] + beta b

    with ``x``, ``g`` zero outside the image, every ``W``, ``w``, ``b`` ~ N(0, 1) (one per
    output channel) and all of them trained; ``g`` is the last feature map (a ReLU output,
    possibly pooled). A 1x1 image with ``"conv1"`` layers and the ``"flatten"`` readout is
    exactly the fully connected network of ``ntk_relu(depth=L)``, L = the number of
    conv + relu layers.

    Recursion, per image pair ``(x, x')`` and position pair ``(p, p')`` (Arora et al.
    2019, Section 4 and Appendix; Novak et al. 2019; derived in docs/derivations.md,
    section 6), ``conv_q`` the map
    ``A -> (1/q) sum_delta A[p + delta, p' + delta]`` (zero outside the image)::

        Sigma^0[p, p'] = x[p] . x'[p'] / C,  Theta = 0
        conv  Sigma <- conv_q(Sigma) + beta^2,      Theta <- conv_q(Theta) + Sigma (the new one)
        relu  with a = Sigma(x, x)[p, p], b = Sigma(x', x')[p', p'], rho = Sigma / sqrt(a b) in [-1, 1],
              theta = arccos rho:
              Sigma <- sqrt(a b) (sin theta + (pi - theta) rho) / pi,   Theta <- Theta (pi - theta) / pi
        pool  Sigma, Theta <- their means over the 2x2 blocks of p and of p'
        flatten  NNGP = mean_p Sigma[p, p] + beta^2,        NTK = mean_p Theta[p, p] + NNGP
        gap      NNGP = mean_{p, p'} Sigma[p, p'] + beta^2,  NTK = mean_{p, p'} Theta[p, p'] + NNGP

    rho is set to exactly 1 for an image paired with itself at ``p = p'`` (the diagonal
    of ``K(X, X)``), ``sin theta`` is ``sqrt((1 - rho)(1 + rho))`` and zero variances
    (a black patch with ``beta = 0``) give 0, not NaN, as in ``ntk_relu``.

    Cost, for n x m images with C channels, L convolutions of q taps:

    - no ``"pool"`` and a ``"flatten"`` readout: a convolution of ``p = p'`` terms needs
      only ``p = p'`` terms, so only the H W diagonal terms are kept:
      O(n m H W (C + q L)) time, O(H W) scratch per image pair;
    - otherwise all position pairs: O(n m (H W)^2 (C + q L)) time and O((H W)^2) scratch per
      image pair (8 MiB per pair at 32x32 in float64, times about 10 temporaries), plus
      one self-pair recursion per image for the variances ``Sigma(x, x)[p, p]``.

    Image pairs are processed in blocks of at most ``memory_budget`` bytes of scratch;
    ``K(X, X)`` is computed on upper blocks and mirrored, so it is exactly symmetric.

    Presets (:func:`cnn_architecture`):

    - ``"cntk-<L>"``: ``[conv, relu] x L, flatten`` (Arora et al.'s vanilla CNTK);
      ``"cntk-gap-<L>"``: ``[conv, relu] x L, gap`` (their CNTK-GAP).
    - ``"myrtle-5"``, ``"myrtle-7"``, ``"myrtle-10"`` (Shankar et al. 2020, as written
      in Neural Tangents' ``MyrtleNetwork`` example): ``[conv, relu] x r1, pool,
      [conv, relu] x r2, pool, [conv, relu] x r3, pool x 3, flatten`` with ``(r1, r2, r3)``
      = (2, 1, 1), (2, 2, 2), (3, 3, 3); made for 32x32 images (32 -> 16 -> 8 -> 1, the
      last three pools being a global average of the 8x8 map). Their first layer has
      ``W_std = sqrt(2)`` where this one has 1 (a constant factor 2 on the kernels when
      ``beta = 0``).
    - ``"fastnet"``: ``conv, relu, [conv, pool, relu, conv, relu] x 3, gap``, the layout of
      ``deep.models.FastNet`` with what the kernel cannot express replaced or dropped: the
      2x2 "valid" stem becomes a 3x3 "same" conv (32 -> 32 -> 16 -> 8 -> 4 instead of
      31 -> 15 -> 7 -> 3), max pools become average pools (the final 3x3 max pool a
      global average), GELU becomes ReLU, batch norm, the patch-whitening stem, the
      Dirac init and the head's 1/9 scale are dropped, and biases follow ``bias``.

    Parameters
    ----------
    X, Z : arrays of shape (n, H, W, C) and (m, H, W, C)
        Images, channels last; ``Z=None`` means ``X``.
    architecture : str or sequence of str, default="cntk-1"
        A preset name or a layer list over ``"conv"``, ``"conv1"``, ``"relu"``,
        ``"pool"``, ``"flatten"``, ``"gap"`` (grammar in :func:`cnn_architecture`).
    bias : float >= 0, default=0.0
        Bias standard deviation beta (0: no bias terms); ``(convolutions + 1) * bias**2``
        must stay below the square root of the working dtype's largest float.
    dtype : {"float32", "float64"} or None
        Working and result dtype (None: the input's).
    memory_budget : int or None
        Bytes of scratch per block of image pairs (default 256 MiB; a block holds at
        least one pair, about 110 MB at 32x32 on the all-pairs path in float64). On a GPU
        a larger budget gives larger blocks.

    Returns
    -------
    K : array of shape (n, m), in X's namespace and on its device

    References
    ----------
    Arora, Du, Hu, Li, Salakhutdinov & Wang, "On exact computation with an infinitely
    wide neural net", NeurIPS 2019 (Section 4 and Appendix: CNTK, CNTK-GAP).
    Novak, Xiao, Bahri, Lee, Yang, Hron, Abolafia, Pennington & Sohl-Dickstein,
    "Bayesian deep convolutional networks with many channels are Gaussian processes", ICLR 2019.
    Garriga-Alonso, Rasmussen & Aitchison, "Deep convolutional networks as shallow
    Gaussian processes", ICLR 2019.
    Shankar, Fang, Guo, Fridovich-Keil, Schmidt, Ragan-Kelley & Recht, "Neural kernels
    without tangents", ICML 2020 (Myrtle architectures).
    Novak, Xiao, Hron, Lee, Alemi, Sohl-Dickstein & Schoenholz, "Neural Tangents: fast and
    easy infinite neural networks in Python", ICLR 2020.
    """


def _cnn_kernel_function(name: str, *, ntk: bool, summary: str, examples: str) -> Callable[..., Any]:
    """The public kernel ``name``: the NNGP (``ntk=False``) or NTK face of one recursion, with its docstring."""

    def kernel(
        X: Any,
        Z: Any = None,
        *,
        architecture: str | Sequence[str] = "cntk-1",
        bias: float = 0.0,
        dtype: Any = None,
        memory_budget: int | None = None,
    ) -> Any:
        return _cnn_kernel(name, X, Z, architecture, bias, dtype, memory_budget, ntk=ntk)

    kernel.__name__ = kernel.__qualname__ = name
    kernel.__doc__ = summary + CNN_DOC + examples
    return kernel


cnn_nngp = _cnn_kernel_function(
    "cnn_nngp",
    ntk=False,
    summary="NNGP kernel (CNN-GP) of an infinitely wide convolutional ReLU network: the covariance of ``f``.",
    examples="""
    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[[[1.0, 1.0]]]])  # one 1x1 image, 2 channels: the FC net, |x|^2 / C
    >>> float(cnn_nngp(x, architecture=["conv1", "relu", "conv1", "relu", "flatten"])[0, 0])
    1.0
    >>> cnn_nngp(np.ones((3, 8, 8, 3)), architecture="cntk-gap-2").shape
    (3, 3)
    """,
)
cnn_ntk = _cnn_kernel_function(
    "cnn_ntk",
    ntk=True,
    summary="Convolutional neural tangent kernel (CNTK) of an infinitely wide convolutional ReLU network.",
    examples="""
    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[[[1.0, 1.0]]]])  # one 1x1 image: (L + 1) |x|^2 / C, as ntk_relu
    >>> float(cnn_ntk(x, architecture=["conv1", "relu", "conv1", "relu", "flatten"])[0, 0])
    3.0
    >>> K = cnn_ntk(np.random.default_rng(0).normal(size=(4, 8, 8, 3)), architecture="cntk-2")
    >>> bool((K == K.T).all())
    True
    """,
)
