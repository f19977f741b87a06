"""Eigendecomposition of a kernel matrix, computed once and reused by every closed form.

``K = V diag(d) V^T`` with d descending and V's columns orthonormal. Every
closed form in :mod:`theory` works in this eigenbasis: project y once
(``V^T y``), scale each coordinate by a per-eigenvalue filter g(d), map back.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from kernels.backend import backend_name, device, eigh, namespace, to_numpy
from kernels.checks import Interval, Options, check_cross_kernel, check_kernel_matrix, check_labels, check_param

__all__ = [
    "Spectrum",
    "spectrum",
    "scale",
    "check_spectrum",
    "nonnegative_values",
    "finish_spectrum",
    "RidgeResolutionWarning",
    "check_ridge_resolution",
]

_METHODS = ("auto", "full", "lanczos", "randomized")


@dataclass(frozen=True, eq=False)
class Spectrum:
    """Eigenpairs of a symmetric PSD kernel matrix, values descending.

    Attributes
    ----------
    values : array of shape (k,)
        Eigenvalues d, descending, clipped at 0 (see ``n_clipped``).
    vectors : array of shape (n, k)
        Orthonormal eigenvectors V as columns.
    method : str
        ``"full"``, ``"lanczos"`` or ``"randomized"``: how the pairs were computed.
    zero_tol : float
        Absolute threshold: eigenvalues ``<= zero_tol`` are numerically zero
        (``n * eps * d_max``); see :attr:`n_zero`.
    n_clipped : int
        Number of (round-off) negative eigenvalues set to 0.
    min_raw_eigenvalue : float
        The most negative eigenvalue before clipping (0 if none was negative).
    max_residual : float or None
        ``max_i ||K v_i - d_i v_i|| / d_1``, measured for the top-k methods (lanczos,
        randomized); None when it was not measured (full decompositions, whose accuracy
        is LAPACK's: see :func:`spectrum`).
    """

    values: Any
    vectors: Any
    method: str = "full"
    zero_tol: float = 0.0
    n_clipped: int = 0
    min_raw_eigenvalue: float = 0.0
    max_residual: float | None = None
    backend: str = field(default="numpy")

    # ------------------------------------------------------------------ shape
    @property
    def xp(self) -> ModuleType:
        return namespace(self.values)

    @property
    def n_samples(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def k(self) -> int:
        return int(self.values.shape[0])

    @property
    def is_full(self) -> bool:
        return self.k == self.n_samples

    @property
    def zero_mask(self) -> Any:
        """Boolean mask of numerically zero eigenvalues (``d <= zero_tol``)."""
        return self.values <= self.zero_tol

    @property
    def n_zero(self) -> int:
        """How many eigenvalues are numerically zero (reported, never divided by)."""
        return int(self.xp.sum(self.xp.astype(self.zero_mask, self.xp.int64)))

    # ------------------------------------------------------------- operations
    def project(self, y: Any) -> Any:
        """Coordinates of y in the eigenbasis, ``V^T y``: shape (k,) or (k, c)."""
        y, _ = check_labels("Spectrum.project", "y", y, self.n_samples, like=self.vectors, dtype=self.vectors.dtype)
        return self.vectors.T @ y

    def reconstruct(self, coef: Any, *, batched: bool = False) -> Any:
        """Map eigen-coordinates back, ``V coef``.

        ``coef`` of shape (k,) -> (n,), (k, c) -> (n, c), (..., k, c) -> (..., n, c).
        A batch of single-target coordinates of shape (T, k) is ambiguous with
        (k, c); pass ``batched=True`` to map (..., k) -> (..., n).
        """
        coef = self.xp.asarray(coef)
        if batched:
            return self.xp.matmul(coef, self.vectors.T)
        if coef.shape[0] == self.k and coef.ndim <= 2:
            return self.vectors @ coef
        # leading batch axes: (..., k, c)
        return self.xp.matmul(self.vectors, coef)

    def filter_values(self, g: Callable[[Any], Any] | Any) -> Any:
        """Per-eigenvalue filter g(d) as an array of shape (..., k)."""
        vals = g(self.values) if callable(g) else self.xp.asarray(g, dtype=self.values.dtype, device=device(self.values))
        if vals.shape[-1] != self.k:
            raise ValueError(
                f"Spectrum.apply: the filter must have {self.k} values per row (one per eigenvalue); got shape {tuple(vals.shape)}"
            )
        return vals

    def apply(self, g: Callable[[Any], Any] | Any, y: Any) -> Any:
        """``V g(D) V^T y`` without forming an n x n matrix.

        ``g`` is a callable on the eigenvalue array or precomputed filter values of
        shape (k,) or (T, k); y has shape (n,) or (n, c). Result: (n,), (n, c), (T, n)
        or (T, n, c). With a top-k spectrum the result lies in the span of the k
        vectors (the rest of y is dropped).
        """
        coef = self.project(y)
        h = self.filter_values(g)
        # 1-D y: scaled coordinates are (..., k); 2-D y: (..., k, c).
        return self.reconstruct(scale(h, coef), batched=coef.ndim == 1 and h.ndim > 1)

    def to_dense(self) -> Any:
        """The matrix ``V diag(d) V^T`` (n x n; for tests and small problems)."""
        return (self.vectors * self.values) @ self.vectors.T

    def cross(self, K_cross: Any, coef: Any) -> Any:
        """Predictions at new points, ``K_cross V coef`` for dual coefficients in the eigenbasis.

        If the training fit is ``V diag(b) V^T y`` the function is
        ``f(x) = k(x, X) V diag(b / d) V^T y``; pass ``coef = (b/d) * V^T y``.
        """
        fn = "Spectrum.cross"
        K_cross = check_cross_kernel(fn, K_cross, like=self.vectors, n=self.n_samples)
        Kv = K_cross @ self.vectors  # (m, k)
        return self.xp.matmul(Kv, coef)

    def __repr__(self) -> str:
        d = to_numpy(self.values)
        return (
            f"Spectrum(n={self.n_samples}, k={self.k}, method={self.method!r}, backend={self.backend!r}, "
            f"d_max={d[0]:.4g}, d_min={d[-1]:.4g}, n_zero={self.n_zero}, n_clipped={self.n_clipped})"
        )


class RidgeResolutionWarning(UserWarning):
    """A ridge below the resolution ``zero_tol`` of the spectrum it filters (see :func:`check_ridge_resolution`)."""


def check_ridge_resolution(fn: str, spectrum: Spectrum, ridge: float, *, stacklevel: int = 3) -> bool:
    """Warn when ``ridge < spectrum.zero_tol``; return whether it warned.

    Ridge filters in the eigenbasis (``1 / (d + lambda)``, ``d / (d + lambda)``) inherit
    the eigenvalues' round-off, ``~ eps d_max`` per eigenvalue: the dual coefficients and
    test predictions are accurate to about ``eps d_max / lambda`` relative to ``max |y|``
    (measured 0.1-3 times that, float32 ``ssyevd``, n = 300-2000), about ten times a
    Cholesky solve of the same matrix. At ``lambda >= zero_tol = n eps d_max`` that is
    about ``1 / n`` or less (pinned in tests/test_numerical_edges.py); below, a
    :class:`RidgeResolutionWarning` names the function, the
    ridge, the resolution and the expected error (float32, n = 2000, ridge 1e-4 gave
    predictions off by 4.4e-2 of max |y| against 1.3e-3 for a float32 Cholesky).
    Remedies: a larger ridge, a float64 kernel, a Cholesky route, or
    :func:`kernels.refine.refined_ridge_solve` on the float64 system.
    """
    tol = float(spectrum.zero_tol)
    lam = float(ridge)
    if not lam < tol:
        return False
    d_max = float(spectrum.values[0]) if spectrum.k else 0.0
    eps = float(spectrum.xp.finfo(spectrum.values.dtype).eps)
    warnings.warn(
        f"{fn}: ridge={lam:.3g} is below the spectrum's resolution zero_tol = n eps d_max = {tol:.3g} "
        f"({spectrum.values.dtype}): the eigenbasis solution is accurate to only about eps d_max / ridge = "
        f"{eps * d_max / lam:.2g} of max|y|; use a larger ridge, a float64 kernel or a Cholesky solve",
        RidgeResolutionWarning,
        stacklevel=stacklevel,
    )
    return True


def scale(h: Any, coef: Any) -> Any:
    """Filters ``h`` (..., k) times eigen-coordinates ``coef`` (k,) or (k, c): (..., k) or (..., k, c)."""
    if coef.ndim == 1:
        return h * coef
    return h[..., :, None] * coef


def check_spectrum(fn: str, s: Any) -> Spectrum:
    """``s`` if it is a :class:`Spectrum`; else a one-line ``TypeError`` naming ``fn``."""
    if not isinstance(s, Spectrum):
        raise TypeError(f"{fn}: spectrum must be a kernels.Spectrum (from kernels.spectrum(K)); got {type(s).__name__}")
    return s


def nonnegative_values(fn: str, spectrum: Spectrum) -> tuple[Any, ModuleType, float]:
    """``(d, xp, d_max)``: the eigenvalues with round-off negatives set to 0.

    Negatives beyond ``max(zero_tol, sqrt(eps) d_max)`` mean the kernel is not PSD and
    raise a one-line ``ValueError`` naming ``fn`` and the fix (``psd='clip'``).
    """
    xp = spectrum.xp
    d = spectrum.values
    d_max = max(float(xp.max(d)), 0.0)
    d_min = float(xp.min(d))
    tol = max(spectrum.zero_tol, math.sqrt(float(xp.finfo(d.dtype).eps)) * d_max)
    if d_min < -tol:
        raise ValueError(
            f"{fn}: spectrum.values must be >= 0 (a PSD kernel); got a minimum of {d_min:.4g} "
            f"below -{tol:.3g}; build the spectrum with kernels.spectrum(K, psd='clip')"
        )
    d = xp.where(d < 0, xp.zeros_like(d), d)
    return d, xp, d_max


def finish_spectrum(w: Any, V: Any, method: str, xp: ModuleType, *, psd: str, fn: str, residual: float | None = None) -> Spectrum:
    """A :class:`Spectrum` from raw eigenpairs ``(w, V)``: sorted descending, negatives checked
    (``psd="raise"``) and clipped, tolerances set; ``residual`` is the measured ``max_residual``."""
    order = xp.flip(xp.argsort(w), axis=0) if hasattr(xp, "flip") else xp.argsort(-w)
    w = xp.take(w, order, axis=0)
    V = xp.take(V, order, axis=1)
    n = V.shape[0]
    eps = float(xp.finfo(w.dtype).eps)
    d_max = max(float(w[0]), 0.0)
    w_min = float(w[-1])
    neg_tol = (1e-5 if w.dtype == xp.float64 else 5e-3) * d_max + 100 * n * eps * d_max
    if w_min < -neg_tol and psd == "raise":
        raise ValueError(
            f"{fn}: K is not positive semi-definite beyond round-off: smallest eigenvalue {w_min:.4g} "
            f"< -{neg_tol:.3g} (relative to d_max = {d_max:.4g}); pass psd='clip' to clip negatives to 0"
        )
    n_clipped = int(xp.sum(xp.astype(w < 0, xp.int64)))
    w = xp.where(w < 0, xp.zeros_like(w), w)
    zero_tol = n * eps * d_max
    return Spectrum(
        values=w,
        vectors=V,
        method=method,
        zero_tol=zero_tol,
        n_clipped=n_clipped,
        min_raw_eigenvalue=min(w_min, 0.0),
        max_residual=residual,
        backend=backend_name(xp),
    )


def _randomized_topk(K: Any, k: int, xp: ModuleType, *, n_oversamples: int, n_iter: int, seed: int) -> tuple[Any, Any]:
    """Randomized subspace iteration with QR re-orthonormalisation (Halko et al. 2011, Alg. 4.4)."""
    n = K.shape[0]
    p = min(n, k + n_oversamples)
    rng = np.random.default_rng(seed)
    Q = xp.asarray(rng.standard_normal((n, p)), dtype=K.dtype, device=device(K))
    Q, _ = xp.linalg.qr(K @ Q)
    for _ in range(n_iter):
        Q, _ = xp.linalg.qr(K @ Q)
    B = Q.T @ K @ Q
    w, U = eigh((B + B.T) / 2)
    return w, Q @ U


def spectrum(
    K: Any,
    k: int | None = None,
    *,
    method: str = "auto",
    psd: str = "raise",
    n_iter: int = 6,
    n_oversamples: int = 20,
    seed: int = 0,
) -> Spectrum:
    """Eigendecomposition of a symmetric PSD kernel matrix, values descending.

    Parameters
    ----------
    K : array of shape (n, n)
        Symmetric positive semi-definite matrix (numpy, torch or CuPy). Asymmetry
        beyond ``100 n eps`` raises; smaller asymmetry is averaged away.
    k : int, default=None
        Number of leading eigenpairs; ``None`` for all n.
    method : {"auto", "full", "lanczos", "randomized"}, default="auto"
        ``"full"``: one dense ``eigh`` (scipy's ``evd`` driver on numpy, cuSOLVER on
        GPU). ``"lanczos"``: :func:`scipy.sparse.linalg.eigsh` (numpy only; accurate to
        its default tolerance). ``"randomized"``: subspace iteration with QR
        (``n_iter`` passes, ``n_oversamples`` extra columns; vector error and residuals decay
        like ``(d_{k+p}/d_k)^(n_iter + 1)``, the values' error like its square), any backend. ``"auto"``: full if k is None
        or k > n/10, else lanczos on numpy and randomized elsewhere. The top-k methods
        report their measured accuracy in ``max_residual``.
    psd : {"raise", "clip"}, default="raise"
        What to do with eigenvalues below ``-(1e-5 d_max + 100 n eps d_max)`` (float64;
        5e-3 for float32): raise, or clip them to 0. Round-off negatives are always
        clipped and counted in ``n_clipped``.

    Accuracy (against long-double residuals and, for float32, float64 ``eigvalsh`` of the
    same matrix; ``tests/test_accuracy_theory.py``): ``"full"`` gives residuals
    ``||K v_i - d_i v_i|| <= 10 eps d_max``, orthogonality ``|V^T V - I|_max <= 20 eps``
    and so (Weyl) eigenvalues within ``10 eps d_max`` of the exact ones, in float64 and
    float32 for n <= 500 (measured <= 5.4 eps, 12 eps and 7.5 eps). ``"lanczos"``
    (``eigsh`` at machine tolerance): eigenvalues within ``32 eps d_max`` for
    ``k <= n/2`` (measured 17 eps). ``"randomized"``: each of the k values lies within
    ``max_residual * d_1`` of the exact one (measured up to 0.63 of it; Rayleigh-Ritz
    values never exceed the exact ones by more than
    ``10 eps d_max``), and ``max_residual`` is the true residual to
    1% (it is measured, not estimated); it falls like the rate above, so ``n_iter``
    must grow as ``d_{k+p} / d_k`` approaches 1. The PSD guard raises exactly below
    ``-(1e-5 d_max + 100 n eps d_max)`` (float64; ``5e-3`` for float32), far outside
    the round-off negatives of a PSD matrix (``|d| <= 10 eps d_max``, measured).

    Returns
    -------
    Spectrum

    Examples
    --------
    >>> import numpy as np
    >>> from kernels import rbf, spectrum
    >>> X = np.random.default_rng(0).normal(size=(50, 3))
    >>> s = spectrum(rbf(X, gamma=0.5))
    >>> bool(np.allclose(s.to_dense(), rbf(X, gamma=0.5)))
    True
    """
    fn = "spectrum"
    check_param(fn, "method", method, Options(_METHODS))
    check_param(fn, "psd", psd, Options(("raise", "clip")))
    K, xp = check_kernel_matrix(fn, "K", K)
    n = K.shape[0]
    if k is not None:
        check_param(fn, "k", k, Interval(int, 1, n, "both"))
    if method == "auto":
        method = "full" if (k is None or k > n // 10 or n < 50) else ("lanczos" if backend_name(xp) == "numpy" else "randomized")
    if method == "full" or k is None:
        w, V = eigh(K)
        s = finish_spectrum(w, V, "full", xp, psd=psd, fn=fn)
        if k is not None and k < n:
            s = Spectrum(
                values=s.values[:k],
                vectors=s.vectors[:, :k],
                method="full",
                zero_tol=s.zero_tol,
                n_clipped=s.n_clipped,
                min_raw_eigenvalue=s.min_raw_eigenvalue,
                backend=s.backend,
            )
        return s
    if method == "lanczos":
        if backend_name(xp) != "numpy":
            raise ValueError(f"{fn}: method='lanczos' needs a numpy matrix; got {backend_name(xp)}: use method='randomized'")
        if k >= n:
            raise ValueError(f"{fn}: method='lanczos' needs k < n = {n}; got k={k}: use method='full'")
        from scipy.sparse.linalg import eigsh

        w, V = eigsh(K, k=k, which="LA", v0=np.random.default_rng(seed).standard_normal(n))
    else:
        check_param(fn, "n_iter", n_iter, Interval(int, 0, None, "both"))
        check_param(fn, "n_oversamples", n_oversamples, Interval(int, 0, None, "both"))
        w, V = _randomized_topk(K, k, xp, n_oversamples=n_oversamples, n_iter=n_iter, seed=seed)
        order = xp.argsort(-w)[:k]
        w, V = xp.take(w, order, axis=0), xp.take(V, order, axis=1)
    R = K @ V - V * w
    d1 = max(float(xp.max(xp.abs(w))), np.finfo(np.float64).tiny)
    residual = float(xp.max(xp.linalg.vector_norm(R, axis=0))) / d1
    return finish_spectrum(w, V, method, xp, psd=psd, fn=fn, residual=residual)
