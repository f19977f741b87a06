"""All input checking for airkit (kernels, theory and deep import it too).

Parameter bounds are data: a :class:`Interval` or :class:`Options` per parameter,
checked by :func:`check_param`. Every error has one shape::

    "<function>: <name> must be <what is allowed>; got <value!r>"

Arrays go through three small converters, one per input kind: features
(:func:`check_features`), kernel matrices (:func:`check_kernel_matrix`) and labels
(:func:`check_labels`). They are the only places in the public modules that turn
user input into arrays.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

from kernels.backend import BACKENDS, backend_name, namespace, namespace_for, to_numpy

__all__ = [
    "Interval",
    "Options",
    "check_param",
    "check_params",
    "check_features",
    "check_kernel_matrix",
    "check_labels",
    "check_vector",
    "check_cross_kernel",
    "check_same_namespace",
    "as_array",
    "DEFAULT_RESULT_BUDGET",
    "check_result_size",
    "result_budget",
    "check_cross_kernel",
    "format_bytes",
]

# Bytes the arrays returned by one call may take when ``memory_budget=None`` (see
# :func:`check_result_size`): results whose size follows from the arguments (all steps
# of a path, every recorded step) are refused above it before anything is allocated.
DEFAULT_RESULT_BUDGET = 2 * 2**30


@dataclass(frozen=True)
class Interval:
    """A real (or integer) interval constraint, e.g. ``Interval(float, 0, None, "neither")``.

    ``closed`` is one of ``"both"``, ``"left"``, ``"right"``, ``"neither"``; ``None``
    bounds mean unbounded. Values are finite (NaN and +-inf refused) unless
    ``allow_inf=True``, the one opt-in for a parameter where infinity means something
    (then an unbounded end admits it): one rule for every float parameter.
    """

    kind: type
    low: float | None
    high: float | None
    closed: str = "both"
    allow_inf: bool = False

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool):
            return False
        if self.kind is int:
            if not isinstance(value, numbers.Integral):
                return False
        elif not isinstance(value, numbers.Real):
            return False
        v = float(value)
        if math.isnan(v) or (math.isinf(v) and not self.allow_inf):
            return False
        if self.low is not None:
            if v < self.low or (v == self.low and self.closed in ("right", "neither")):
                return False
        if self.high is not None:
            if v > self.high or (v == self.high and self.closed in ("left", "neither")):
                return False
        return True

    def describe(self) -> str:
        kind = "an int" if self.kind is int else "a float"
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        lb = "[" if self.closed in ("both", "left") and self.low is not None else "("
        rb = "]" if self.closed in ("both", "right") and self.high is not None else ")"
        return f"{kind} in {lb}{lo}, {hi}{rb}"

    def invalid_example(self) -> Any:
        """A value outside the interval (for the parametrised bad-input test)."""
        if self.low is not None:
            return (
                self.kind(self.low) - (1 if self.kind is int else 0.5) if self.closed in ("both", "left") else self.kind(self.low)
            )
        return self.kind(self.high) + 1


def _same_kind(value: Any, allowed: Any) -> bool:
    """``value`` is of ``allowed``'s type (numpy's bool counts as a bool, str subclasses as str)."""
    if isinstance(allowed, bool):
        return isinstance(value, (bool, np.bool_))
    if allowed is None:
        return value is None
    return isinstance(value, type(allowed)) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class Options:
    """A set of allowed strings (or other hashables), matched by value *and* type.

    ``Options((True, False))`` admits the booleans only: ``1`` and ``0.0`` compare equal
    to them but are refused (a value is stored as given, so it must be the right type).
    """

    allowed: tuple

    def contains(self, value: Any) -> bool:
        try:
            return any(value == a and _same_kind(value, a) for a in self.allowed)
        except (TypeError, ValueError):
            return False

    def describe(self) -> str:
        return "one of " + ", ".join(repr(a) for a in self.allowed)

    def invalid_example(self) -> Any:
        return "no-such-option"


Constraint = Interval | Options


def check_param(fn: str, name: str, value: Any, constraint: Constraint) -> Any:
    """Return ``value`` if it satisfies ``constraint``; else raise a uniform error.

    A ``TypeError`` for a value of the wrong type, a ``ValueError`` for one of the
    right type outside the allowed range.
    """
    if constraint.contains(value):
        return value
    msg = f"{fn}: {name} must be {constraint.describe()}; got {value!r}"
    if isinstance(constraint, Interval) and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
        raise TypeError(msg)
    raise ValueError(msg)


def check_params(fn: str, table: dict[str, Constraint], **values: Any) -> None:
    """Check several parameters against a table of constraints (missing keys ignored)."""
    for name, value in values.items():
        if name in table:
            check_param(fn, name, value, table[name])


# ----------------------------------------------------------------------------- arrays


def _is_array(x: Any) -> bool:
    return array_api_compat.is_array_api_obj(x)


def as_array(
    fn: str, name: str, x: Any, *, backend: str | None = None, like: Any = None, dtype: Any = None
) -> tuple[Any, ModuleType]:
    """Turn ``x`` into an array of a supported backend and return ``(array, xp)``.

    Arrays keep their namespace and device. Lists/tuples/scalars become arrays of
    ``backend`` (default numpy, or the namespace/device of ``like``). Integer and
    boolean arrays become float64; float16 is promoted to float32.
    """
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"{fn}: backend must be one of {BACKENDS}; got {backend!r}")
    if _is_array(x) and not isinstance(x, (np.generic,)):
        xp = namespace(x)
        backend_name(xp)
        if backend is not None and backend_name(xp) != backend:
            raise TypeError(f"{fn}: {name} is a {backend_name(xp)} array but backend={backend!r}; convert it or drop backend=")
        arr = x
    else:
        if like is not None:
            xp = namespace(like)
            dev = array_api_compat.device(like)
        else:
            xp = namespace_for(backend or "numpy")
            dev = None
        try:
            host = np.asarray(x)
        except Exception as exc:  # ragged lists etc.
            raise TypeError(f"{fn}: {name} must be array-like of numbers; got {type(x).__name__}") from exc
        if host.dtype == object or host.dtype.kind not in "biuf":
            raise TypeError(f"{fn}: {name} must hold real numbers; got dtype {host.dtype}")
        if host.dtype.kind in "biu":
            host = host.astype(np.float64)
        arr = xp.asarray(host, device=dev) if dev is not None else xp.asarray(host)
    if dtype is not None:
        arr = xp.astype(arr, dtype)
    elif not xp.isdtype(arr.dtype, "real floating"):
        if xp.isdtype(arr.dtype, ("integral", "bool")):
            arr = xp.astype(arr, xp.float64)
        else:
            raise TypeError(f"{fn}: {name} must hold real numbers; got dtype {arr.dtype}")
    elif arr.dtype == getattr(xp, "float16", None):
        arr = xp.astype(arr, xp.float32)
    return arr, xp


def _check_finite(fn: str, name: str, arr: Any, xp: ModuleType) -> None:
    if not bool(xp.all(xp.isfinite(arr))):
        raise ValueError(f"{fn}: {name} contains NaN or inf; remove or impute those entries first")


def check_features(
    fn: str, name: str, X: Any, *, backend: str | None = None, like: Any = None, dtype: Any = None, n_features: int | None = None
) -> tuple[Any, ModuleType]:
    """Features: a finite 2-D float array (n_samples >= 1, n_features >= 1).

    ``n_features`` (if given) must match ``X.shape[1]``, e.g. the training data's.
    """
    arr, xp = as_array(fn, name, X, backend=backend, like=like, dtype=dtype)
    if arr.ndim != 2:
        raise ValueError(
            f"{fn}: {name} must be 2-D (n_samples, n_features); got shape {tuple(arr.shape)}; reshape a single feature with X[:, None]"
        )
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{fn}: {name} must have at least one sample and one feature; got shape {tuple(arr.shape)}")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(
            f"{fn}: {name} has {arr.shape[1]} features but {n_features} were expected (the first input's / training data's)"
        )
    _check_finite(fn, name, arr, xp)
    return arr, xp


def check_kernel_matrix(
    fn: str, name: str, K: Any, *, symmetric: bool = True, rtol: float | None = None, backend: str | None = None
) -> tuple[Any, ModuleType]:
    """A finite square kernel matrix; symmetric within ``rtol * max|K|`` when asked.

    The default tolerance is ``100 * n * eps`` of the dtype (round-off of a Gram matrix).
    A matrix within tolerance is symmetrised as ``(K + K^T) / 2``; beyond it, a
    ``ValueError`` reports the largest asymmetry.
    """
    arr, xp = as_array(fn, name, K, backend=backend)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"{fn}: {name} must be a square (n, n) matrix; got shape {tuple(arr.shape)}")
    if arr.shape[0] < 1:
        raise ValueError(f"{fn}: {name} must not be empty")
    _check_finite(fn, name, arr, xp)
    if symmetric:
        eps = float(xp.finfo(arr.dtype).eps)
        tol = (100 * arr.shape[0] * eps) if rtol is None else rtol
        scale = float(xp.max(xp.abs(arr)))
        asym = float(xp.max(xp.abs(arr - arr.T)))
        if asym > tol * max(scale, np.finfo(np.float64).tiny):
            raise ValueError(
                f"{fn}: {name} must be symmetric; max |K - K^T| = {asym:.3g} exceeds {tol:.3g} * max|K| = {tol * scale:.3g}; pass (K + K.T) / 2 if the asymmetry is round-off"
            )
        if asym > 0:
            arr = (arr + arr.T) / 2
    return arr, xp


def check_labels(fn: str, name: str, y: Any, n: int, *, like: Any = None, dtype: Any = None) -> tuple[Any, ModuleType]:
    """Labels/targets: finite, shape (n,) or (n, c), in the namespace of ``like``."""
    if _is_array(y) and like is not None:
        xp_l, xp_y = namespace(like), namespace(y)
        if backend_name(xp_l) != backend_name(xp_y):
            raise TypeError(
                f"{fn}: {name} is a {backend_name(xp_y)} array but the other inputs are {backend_name(xp_l)}; use one backend"
            )
    arr, xp = as_array(fn, name, y, like=like if not _is_array(y) else None, dtype=dtype)
    if arr.ndim not in (1, 2):
        raise ValueError(f"{fn}: {name} must have shape (n,) or (n, c); got shape {tuple(arr.shape)}")
    if arr.shape[0] != n:
        raise ValueError(f"{fn}: {name} has {arr.shape[0]} rows but {n} samples were expected (the kernel/spectrum size)")
    _check_finite(fn, name, arr, xp)
    return arr, xp


def check_cross_kernel(fn: str, K_cross: Any, *, like: Any, n: int) -> Any:
    """A cross-kernel ``k(X_new, X_train)``: finite (m, n), in ``like``'s namespace, cast to its dtype."""
    arr, xp = check_features(fn, "K_cross", K_cross, like=like)
    check_same_namespace(fn, K_cross=arr, training=like)
    if arr.shape[1] != n:
        raise ValueError(f"{fn}: K_cross must have shape (m, {n}) (one column per training point); got shape {tuple(arr.shape)}")
    return xp.astype(arr, like.dtype) if arr.dtype != like.dtype else arr


def check_vector(fn: str, name: str, v: Any, *, constraint: Constraint | None = None) -> np.ndarray:
    """A scalar or 1-D sequence of parameters as a float64 numpy vector, each checked."""
    # parameters are host data: an array is copied to numpy explicitly (any backend, any device)
    arr = np.atleast_1d(np.asarray(v, dtype=float) if not _is_array(v) else np.asarray(to_numpy(v), dtype=float))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{fn}: {name} must be a scalar or a non-empty 1-D sequence; got shape {arr.shape}")
    if constraint is not None:
        for value in arr:
            if not constraint.contains(float(value)):
                raise ValueError(f"{fn}: every {name} must be {constraint.describe()}; got {float(value)!r}")
    return arr


def check_same_namespace(fn: str, **arrays: Any) -> ModuleType:
    """All named arrays must share one backend; returns its namespace."""
    names = {k: backend_name(namespace(v)) for k, v in arrays.items() if v is not None}
    if len(set(names.values())) > 1:
        desc = ", ".join(f"{k} is {v}" for k, v in names.items())
        raise TypeError(f"{fn}: inputs must share one array backend; {desc}")
    return namespace(*[v for v in arrays.values() if v is not None])


def format_bytes(nbytes: float) -> str:
    """``1000 B``, ``2 GiB``, ``7.28 TiB``: binary units, 3 significant digits."""
    value = float(nbytes)
    if value < 1024:
        return f"{int(value)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        value /= 1024
        if value < 1024 or unit == "EiB":
            return f"{value:.3g} {unit}"
    raise AssertionError  # pragma: no cover


def result_budget(fn: str, memory_budget: Any) -> int:
    """The checked ``memory_budget`` keyword in bytes (an int >= 1; ``None``: :data:`DEFAULT_RESULT_BUDGET`)."""
    if memory_budget is None:
        return DEFAULT_RESULT_BUDGET
    return int(check_param(fn, "memory_budget", memory_budget, Interval(int, 1, None, "both")))


def check_result_size(fn: str, nbytes: float, memory_budget: Any, what: str, fix: str) -> None:
    """Refuse a result of ``nbytes`` bytes above the memory budget, before it is allocated.

    ``memory_budget`` is the caller's keyword (bytes, an int >= 1; ``None`` means
    :data:`DEFAULT_RESULT_BUDGET`, 2 GiB). The error is one line::

        "<fn>: <what> needs <size> (> memory budget <budget>); <fix>"
    """
    budget = result_budget(fn, memory_budget)
    if nbytes > budget:
        raise ValueError(f"{fn}: {what} needs {format_bytes(nbytes)} (> memory budget {format_bytes(budget)}); {fix}")


def iter_blocks(n: int, block: int) -> Iterable[slice]:
    """Row slices of at most ``block`` rows covering ``range(n)``."""
    for start in range(0, n, block):
        yield slice(start, min(start + block, n))
