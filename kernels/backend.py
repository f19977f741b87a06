"""Array backends: one namespace per call, and one small linear-algebra adapter.

Every public function resolves ``xp`` from its inputs with
:func:`array_api_compat.array_namespace`; results stay in that namespace and on that
device. Supported: numpy (default), torch (CPU or CUDA), CuPy. Linear algebra goes
through :func:`eigh`, :func:`cholesky` and :func:`cho_solve` below, which call the
backend's own LAPACK / cuSOLVER routine.

``array_api_strict`` (the reference namespace of the array API standard, a test
dependency) is accepted as well, so that the property tests catch numpy-only calls
on the CPU: its arrays may live on the fake devices ``"device1"``/``"device2"``, which
refuse implicit host copies and mixing devices, as a GPU would. It has no LAPACK binding
of its own that covers the adapter (the standard has no triangular solve), so the
adapter's linear algebra *leaves the array API explicitly* for it: :func:`to_numpy`
copies the input to the host, the numpy branch computes, and :func:`_from_host` copies
the result back with the input's dtype and device (:data:`HOST_LAPACK`). Everything
else (Gram builders, filters, closed forms) runs in the strict namespace itself.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

BACKENDS = ("numpy", "torch", "cupy")
# Namespaces accepted besides BACKENDS (arrays only; not a ``backend=`` choice for lists).
STRICT = "array_api_strict"
# Namespaces whose linear algebra runs on the host through the numpy branch (see module notes).
HOST_LAPACK = (STRICT,)

# scipy's bundled LAPACK uses 32-bit integers: its evd driver fails above this order.
SCIPY_EVD_MAX_N = 32767


def cpu_workers(limit: int | None = None) -> int:
    """CPU cores this process may use (Linux affinity when available), at most ``limit``.

    The thread count of the numpy kernels' elementwise passes (numpy's ufuncs release the GIL)
    and of the blocked Grams' local scheduler.
    """
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, n if limit is None else min(limit, n))


def namespace(*arrays: Any) -> ModuleType:
    """Array-API namespace of ``arrays`` (numpy's compat namespace for lists/None)."""
    arrays = tuple(a for a in arrays if a is not None and not isinstance(a, (int, float)))
    if not arrays:
        return array_api_compat.array_namespace(np.empty(0))
    return array_api_compat.array_namespace(*arrays)


def backend_name(xp: ModuleType) -> str:
    """'numpy', 'torch', 'cupy' or 'array_api_strict' for a namespace returned by :func:`namespace`."""
    if array_api_compat.is_numpy_namespace(xp):
        return "numpy"
    if array_api_compat.is_torch_namespace(xp):
        return "torch"
    if array_api_compat.is_cupy_namespace(xp):
        return "cupy"
    if array_api_compat.is_array_api_strict_namespace(xp):
        return STRICT
    raise TypeError(f"unsupported array namespace {xp.__name__}; supported backends: {BACKENDS} (and {STRICT} for tests)")


def namespace_for(backend: str) -> ModuleType:
    """Array-API namespace for a backend name; imports torch/CuPy lazily."""
    if backend == "numpy":
        return array_api_compat.array_namespace(np.empty(0))
    if backend == "torch":
        try:
            import torch
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError("backend='torch' needs torch: pip install torch==2.13.0") from exc
        return array_api_compat.array_namespace(torch.empty(0))
    if backend == "cupy":
        try:
            import cupy
        except ImportError as exc:
            raise ImportError("backend='cupy' needs CuPy: pip install 'airkit[gpu]'") from exc
        return array_api_compat.array_namespace(cupy.empty(0))
    raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")


def device(x: Any) -> Any:
    """Device of an array (``'cpu'`` for numpy)."""
    return array_api_compat.device(x)


def to_numpy(x: Any) -> np.ndarray:
    """Copy any supported array to a numpy array on the host."""
    if isinstance(x, np.ndarray):
        return x
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if _is_strict_array(x):  # explicit copy: a strict array on a fake device refuses np.asarray
        import array_api_strict

        return np.asarray(x.to_device(array_api_strict.Device("CPU_DEVICE")))
    return np.asarray(x)


def _is_strict_array(x: Any) -> bool:
    return hasattr(x, "__array_namespace__") and array_api_compat.is_array_api_strict_namespace(x.__array_namespace__())


def _from_host(r: Any, like: Any) -> Any:
    """``r`` (a numpy result) copied back into ``like``'s namespace, dtype and device."""
    xp = namespace(like)
    return xp.asarray(np.ascontiguousarray(r), dtype=like.dtype, device=device(like))


def eigh(a: Any, *, driver: str = "auto") -> tuple[Any, Any]:
    """Symmetric eigendecomposition ``a = V diag(w) V^T``, w ascending (LAPACK order).

    On numpy, ``driver='auto'`` uses scipy's divide-and-conquer ``evd`` driver and falls
    back to :func:`numpy.linalg.eigh` above n = 32767, where scipy's 32-bit LAPACK
    integers overflow. The project's early design expected ``evd`` to be about twice
    numpy's speed (docs/derivations.md, section 5); with numpy 2.4 / OpenBLAS 0.3.31 on
    2 cores the speed row 4 measured 0.7-1.2x numpy
    (``benchmarks/BASELINES.md``), so the choice is kept for float32 support and
    ``driver="numpy"`` selects numpy's. torch and CuPy call their own ``linalg.eigh``.
    ``array_api_strict`` leaves the array API: host copy, the numpy branch, copy back
    (module notes).
    """
    xp = namespace(a)
    name = backend_name(xp)
    if name in HOST_LAPACK:
        w, V = eigh(to_numpy(a), driver=driver)
        return _from_host(w, a), _from_host(V, a)
    if name == "numpy":
        n = a.shape[0]
        if driver == "numpy" or (driver == "auto" and n > SCIPY_EVD_MAX_N):
            return np.linalg.eigh(a)
        import scipy.linalg

        drv = "evd" if driver == "auto" else driver
        return scipy.linalg.eigh(a, driver=drv, check_finite=False)
    if name == "torch":
        import torch

        return torch.linalg.eigh(a)
    import cupy

    return cupy.linalg.eigh(a)


def cholesky(a: Any) -> Any:
    """Lower Cholesky factor L with ``a = L L^T``; raises ``numpy.linalg.LinAlgError``-like errors.

    ``array_api_strict``: host copy, the numpy branch, copy back (module notes).
    """
    xp = namespace(a)
    name = backend_name(xp)
    if name in HOST_LAPACK:
        return _from_host(cholesky(to_numpy(a)), a)
    if name == "numpy":
        import scipy.linalg

        return scipy.linalg.cholesky(a, lower=True, check_finite=False)
    if name == "torch":
        import torch

        L, info = torch.linalg.cholesky_ex(a)
        if int(info) != 0:
            raise np.linalg.LinAlgError(f"matrix is not positive definite (leading minor {int(info)})")
        return L
    import cupy

    L = cupy.linalg.cholesky(a)
    if not bool(cupy.isfinite(L).all()):
        raise np.linalg.LinAlgError("matrix is not positive definite")
    return L


def solve_triangular(L: Any, b: Any, *, lower: bool = True, trans: bool = False) -> Any:
    """Solve ``L x = b`` (or ``L^T x = b`` with ``trans=True``) for triangular L.

    ``array_api_strict`` (whose standard has no triangular solve): host copy, the numpy
    branch, copy back (module notes).
    """
    xp = namespace(L)
    name = backend_name(xp)
    if name in HOST_LAPACK:
        return _from_host(solve_triangular(to_numpy(L), to_numpy(b), lower=lower, trans=trans), b)
    if name == "numpy":
        import scipy.linalg

        return scipy.linalg.solve_triangular(L, b, lower=lower, trans=1 if trans else 0, check_finite=False)
    if name == "torch":
        import torch

        A = L.mT if trans else L
        up = (not lower) if not trans else lower
        vec = b.ndim == 1
        x = torch.linalg.solve_triangular(A, b[:, None] if vec else b, upper=up)
        return x[:, 0] if vec else x
    import cupyx.scipy.linalg

    return cupyx.scipy.linalg.solve_triangular(L, b, lower=lower, trans=1 if trans else 0)


def cho_solve(L: Any, b: Any) -> Any:
    """Solve ``(L L^T) x = b`` from the lower Cholesky factor L."""
    return solve_triangular(L, solve_triangular(L, b, lower=True), lower=True, trans=True)


def lstsq(a: Any, b: Any) -> Any:
    """Least-squares solution of ``a x = b`` (fallback when Cholesky fails).

    ``array_api_strict``: host copy, the numpy branch, copy back (module notes).
    """
    xp = namespace(a)
    name = backend_name(xp)
    if name in HOST_LAPACK:
        return _from_host(lstsq(to_numpy(a), to_numpy(b)), b)
    if name == "numpy":
        import scipy.linalg

        return scipy.linalg.lstsq(a, b, check_finite=False)[0]
    if name == "torch":
        import torch

        vec = b.ndim == 1
        x = torch.linalg.lstsq(a, b[:, None] if vec else b, driver="gelsd" if a.device.type == "cpu" else None).solution
        return x[:, 0] if vec else x
    import cupy

    return cupy.linalg.lstsq(a, b, rcond=None)[0]
