"""Alpha-weighted self-distillation of kernel ridge regression, in closed form.

Borup & Andersen (2021) distil a kernel ridge regressor into itself: step t fits
KRR (ridge lambda) to the targets ``alpha y + (1 - alpha) yhat^(t-1)``, with
``yhat^(0) = y``; alpha is the weight on the ground truth. With
``K = V diag(d) V^T`` and ``A = diag(d / (d + lambda))`` every step is diagonal in
the eigenbasis::

    yhat^(t) = V B^(t) V^T y,   B^(1) = A,   B^(t+1) = A((1 - alpha) B^(t) + alpha I),
    B^(inf)  = alpha D (alpha D + lambda I)^-1          (KRR with ridge lambda / alpha).

alpha = 1 is plain KRR at every step; alpha = 0 is pure self-distillation
(Mobahi et al. 2020), ``B^(t) = A^t -> 0``. A path of T steps costs O(T k) after
the one eigendecomposition held by the :class:`~kernels.spectrum.Spectrum`, and
no linear solve. Test points use dual coefficients ``C^(t) = B^(t) / d`` computed
by their own recursion (never dividing by an eigenvalue)::

    C^(1) = 1 / (d + lambda),   C^(t+1) = ((1 - alpha) B^(t) + alpha) / (d + lambda),
    C^(inf) = alpha / (alpha d + lambda),

so ``f^(t)(x) = k(x, X) V diag(C^(t)) V^T y``.

The eigenvalues are used as they are (clipped at 0 by :func:`kernels.spectrum`);
with a top-k spectrum every fit lies in the span of the k eigenvectors.

References
----------
K. Borup and L. N. Andersen, "Even your teacher needs guidance: ground-truth
targets dampen regularization imposed by self-distillation", NeurIPS 2021,
arXiv:2102.13088 (the B^(t) recursion, its limit, the closed-form optimal alpha).
H. Mobahi, M. Farajtabar and P. L. Bartlett, "Self-distillation amplifies
regularization in Hilbert space", NeurIPS 2020, arXiv:2002.05715 (alpha = 0 and
the sparsification of the diagonal of B^(t)).
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from kernels.backend import device, namespace, to_numpy
from kernels.checks import (
    Interval,
    check_cross_kernel,
    check_labels,
    check_param,
    check_result_size,
    check_vector,
    result_budget,
)
from kernels.spectrum import Spectrum, check_ridge_resolution, check_spectrum, scale
from theory.results import ResultText

__all__ = [
    "DistillationPath",
    "OptimalAlpha",
    "OptimalAlphaPath",
    "Sparsification",
    "krr_fit",
    "optimal_alpha",
    "optimal_alpha_path",
    "self_distillation",
    "sparsification",
]

CONSTRAINTS: dict[str, Interval] = {  # ridge: explicit math.inf bound, open = finite
    "ridge": Interval(float, 0, math.inf, "neither"),
    "alpha": Interval(float, 0, 1, "both"),
    "steps": Interval(int, 1, None, "left"),
}


# ----------------------------------------------------------------------------- input helpers


def check_alpha(fn: str, alpha: Any) -> tuple[float | np.ndarray, bool]:
    """alpha as a float (scalar input) or a float64 vector; returns (value, is_batch)."""
    if isinstance(alpha, numbers.Real) or (hasattr(alpha, "ndim") and getattr(alpha, "ndim") == 0):
        value = alpha if isinstance(alpha, numbers.Real) else float(to_numpy(alpha))
        check_param(fn, "alpha", value, CONSTRAINTS["alpha"])
        return float(value), False
    if isinstance(alpha, str):
        check_param(fn, "alpha", alpha, CONSTRAINTS["alpha"])
    try:
        vec = check_vector(fn, "alpha", alpha, constraint=CONSTRAINTS["alpha"])
    except (TypeError, ValueError) as exc:
        if str(exc).startswith(f"{fn}:"):
            raise
        raise TypeError(f"{fn}: alpha must be a float in [0, 1] or a 1-D sequence of them; got {alpha!r}") from exc
    return vec, True


def _labels(fn: str, name: str, y: Any, s: Spectrum) -> Any:
    arr, _ = check_labels(fn, name, y, s.n_samples, like=s.vectors, dtype=s.vectors.dtype)
    return arr


def _itemsize(s: Spectrum) -> int:
    return int(s.xp.finfo(s.vectors.dtype).bits // 8)


def _outputs(y: Any) -> int:
    return 1 if y.ndim == 1 else int(y.shape[1])


def _check_steps_size(fn: str, steps: int, per_step: int, fixed: int, memory_budget: Any) -> None:
    """Refuse ``steps`` whose path (``per_step`` bytes a step plus ``fixed``) exceeds the budget."""
    budget = result_budget(fn, memory_budget)
    fit = (budget - fixed) // per_step
    fix = (
        f"pass steps <= {fit} (every step is stored) or a larger memory_budget="
        if fit >= 1
        else "pass a larger memory_budget= (not even one step fits)"
    )
    check_result_size(fn, fixed + steps * per_step, budget, f"steps={steps}", fix)


# ----------------------------------------------------------------------------- eigenbasis maps


def _predict(s: Spectrum, C: Any, y_coef: Any, K_cross: Any, fn: str, memory_budget: Any = None) -> Any:
    Kc = check_cross_kernel(fn, K_cross, like=s.vectors, n=s.n_samples)
    rows, m = math.prod(int(v) for v in C.shape[:-1]), int(Kc.shape[0])
    check_result_size(
        fn,
        rows * m * _outputs(y_coef) * _itemsize(s),
        memory_budget,
        f"predicting {rows} fit(s) at {m} points",
        "pass fewer rows of K_cross at a time or a larger memory_budget=",
    )
    KV = Kc @ s.vectors  # (m, k)
    h = scale(C, y_coef)
    return h @ KV.T if y_coef.ndim == 1 else s.xp.matmul(KV, h)


def _recursion(
    d: Any, ridge: float, alphas: Iterable[Any], steps: int, batch: tuple[int, ...], xp: ModuleType
) -> tuple[Any, Any]:
    """B^(t) and C^(t) = B^(t)/d for t = 1..steps; the t-th of ``alphas`` is the weight of step t+1.

    ``B^(0) = 1`` (yhat^(0) = y), ``B^(t) = a ((1 - alpha_t) B^(t-1) + alpha_t)``,
    ``C^(t) = ((1 - alpha_t) B^(t-1) + alpha_t) / (d + ridge)``; step 1 is ``a`` for any alpha.
    Written row by row into the preallocated (.., steps, k) results.
    """
    inv = 1.0 / (d + ridge)
    a = d * inv
    prev = xp.ones(batch + (d.shape[0],), dtype=d.dtype, device=device(d))
    B = xp.empty(batch + (steps, d.shape[0]), dtype=d.dtype, device=device(d))
    C = xp.empty(batch + (steps, d.shape[0]), dtype=d.dtype, device=device(d))
    for t, al in enumerate(itertools.islice(alphas, steps)):
        target = (1 - al) * prev + al
        prev = a * target
        B[..., t, :] = prev
        C[..., t, :] = inv * target
    return B, C


# ----------------------------------------------------------------------------- results


def _alpha_text(alpha: Any) -> str:
    return f"{alpha:g}" if isinstance(alpha, float) else np.array2string(np.atleast_1d(alpha), precision=4, separator=", ")


@dataclass(frozen=True, eq=False, repr=False)
class DistillationPath(ResultText):
    """Closed-form path of alpha-weighted KRR self-distillation (Borup & Andersen 2021).

    Leading axis ``..`` below is present only when ``alpha`` was a 1-D array (one row
    per alpha). ``[, c]`` is present for (n, c) labels.

    Attributes
    ----------
    alpha, ridge, steps : float or ndarray (p,), float, int
        Weight on the ground truth (steps 2..T), KRR ridge lambda, number of steps T.
    eigenvalues : array of shape (k,)
    B : array of shape (.., T, k)
        Training-fit filters: ``yhat^(t) = V diag(B[.., t-1]) V^T y``.
    B_limit : array of shape (.., k)
        ``alpha d / (alpha d + lambda)`` (0 where alpha = 0).
    C, C_limit : arrays of shapes (.., T, k) and (.., k)
        Dual filters ``B / d`` for test points, from their own recursion.
    fits : array of shape (.., T, n[, c])
        Training fits ``yhat^(t)``.
    fit_limit : array of shape (.., n[, c])
        ``V B_limit V^T y``: KRR with ridge ``lambda / alpha``.
    y_coef, spectrum : array of shape (k[, c]), Spectrum
        ``V^T y`` and the decomposition the path was computed from.
    """

    alpha: float | np.ndarray
    ridge: float
    steps: int
    eigenvalues: Any
    B: Any
    B_limit: Any
    C: Any
    C_limit: Any
    fits: Any
    fit_limit: Any
    y_coef: Any
    spectrum: Spectrum = field(repr=False)

    def predict(self, K_cross: Any, *, memory_budget: int | None = None) -> Any:
        """Test predictions of every step, ``K_cross V diag(C^(t)) V^T y``: shape (.., T, m[, c]).

        ``K_cross = k(X_new, X_train)`` has shape (m, n). A result above ``memory_budget``
        bytes (default 2 GiB) raises ``ValueError`` before it is computed.
        """
        return _predict(self.spectrum, self.C, self.y_coef, K_cross, "DistillationPath.predict", memory_budget)

    def predict_limit(self, K_cross: Any, *, memory_budget: int | None = None) -> Any:
        """Test predictions of the limit (KRR with ridge lambda/alpha): shape (.., m[, c])."""
        return _predict(self.spectrum, self.C_limit, self.y_coef, K_cross, "DistillationPath.predict_limit", memory_budget)

    def _summary_rows(self) -> dict[str, str]:
        """Rows of :meth:`summary`: parameters and how close step T is to the limit."""
        xp = namespace(self.fits)
        last = self.fits[..., -1, :] if self.y_coef.ndim == 1 else self.fits[..., -1, :, :]
        alpha = np.atleast_1d(self.alpha).astype(float)
        gap = xp.linalg.vector_norm(xp.reshape(last - self.fit_limit, (alpha.size, -1)), axis=1)
        eff = ", ".join("inf" if a == 0 else f"{self.ridge / a:.4g}" for a in alpha)
        return {
            "alpha": _alpha_text(self.alpha),
            "ridge": f"{self.ridge:g}",
            "steps": str(self.steps),
            "n, k": f"{self.spectrum.n_samples}, {self.spectrum.k}",
            "outputs": "1" if self.y_coef.ndim == 1 else str(self.y_coef.shape[1]),
            "zero eigenvalues": str(self.spectrum.n_zero),
            "limit ridge (lambda/alpha)": eff,
            "|fit_T - fit_limit|": ", ".join(f"{float(g):.3g}" for g in gap),
        }

    def _repr_fields(self) -> str:
        return (
            f"alpha={_alpha_text(self.alpha)}, ridge={self.ridge:g}, steps={self.steps}, "
            f"n={self.spectrum.n_samples}, k={self.spectrum.k}"
        )


def self_distillation(
    spectrum: Spectrum, y: Any, *, ridge: float, alpha: float | Any, steps: int, memory_budget: int | None = None
) -> DistillationPath:
    """Alpha-weighted self-distillation of KRR: all T steps and the limit in closed form.

    ``B^(1) = A = D(D + lambda I)^-1``, ``B^(t+1) = A((1 - alpha) B^(t) + alpha I)``,
    ``B^(inf) = alpha D (alpha D + lambda I)^-1`` (Borup & Andersen 2021, arXiv:2102.13088);
    the fit of step t is ``V B^(t) V^T y``. Cost O(T k (1 + c)) plus O(T n k c) to map
    the fits back, after the decomposition.

    Accuracy: the recursion is exact in the eigenbasis; against dense float64 solves
    (``K (K + lambda I)^-1`` step by step, extended precision) the fits agree to a
    relative ``1e-13`` for every ridge from ``1e-3 d_max`` up to ``1e10 d_max`` and
    beyond (measured <= 5e-15; no cancellation: no ``I - A`` is formed); below
    ``1e-3 d_max`` the error grows as the problem's condition, ``<= eps d_max / lambda``. Dual coefficients and
    predictions (``C``) inherit the eigenvalues' round-off, ``~ eps d_max / lambda``
    relative to ``max |y|``: for ``ridge < spectrum.zero_tol`` (the spectrum's
    resolution, ``n eps d_max``) a :class:`kernels.spectrum.RidgeResolutionWarning` is
    issued (float32 at a small ridge is then ~10x less accurate than a Cholesky solve).

    Parameters
    ----------
    spectrum : Spectrum
        Eigendecomposition of the training kernel matrix K (see :func:`kernels.spectrum`).
    y : array of shape (n,) or (n, c)
        Ground-truth targets (regression values or one-hot rows).
    ridge : float
        KRR ridge lambda, in (0, inf).
    alpha : float or 1-D array of floats in [0, 1]
        Weight on the ground truth in the targets of steps 2..T. An array adds a
        leading axis to every result (same as separate calls, one per alpha).
    steps : int
        Number of steps T >= 1. Every step is stored (B, C and the fits).
    memory_budget : int, default=None
        Bytes the returned arrays may take (default 2 GiB, ``kernels.checks.DEFAULT_RESULT_BUDGET``);
        a larger path raises ``ValueError`` before anything is computed, saying how many
        steps fit.

    Returns
    -------
    DistillationPath

    Examples
    --------
    >>> import numpy as np
    >>> from kernels import spectrum
    >>> X = np.random.default_rng(0).normal(size=(20, 2))
    >>> K = np.exp(-((X[:, None] - X[None]) ** 2).sum(-1))
    >>> path = self_distillation(spectrum(K), X[:, 0], ridge=0.1, alpha=0.5, steps=30)
    >>> bool(np.allclose(path.fits[-1], path.fit_limit, atol=1e-6))
    True
    """
    fn = "self_distillation"
    s = check_spectrum(fn, spectrum)
    check_param(fn, "ridge", ridge, CONSTRAINTS["ridge"])
    check_param(fn, "steps", steps, CONSTRAINTS["steps"])
    check_ridge_resolution(fn, s, ridge)
    alpha_v, batch = check_alpha(fn, alpha)
    y = _labels(fn, "y", y, s)
    xp, d = s.xp, s.values
    ridge, steps = float(ridge), int(steps)
    alphas = np.atleast_1d(np.asarray(alpha_v, dtype=float))  # (p,) whether one alpha or a batch
    p, k, row = (alphas.size if batch else 1), s.k, (2 * s.k + s.n_samples * _outputs(y)) * _itemsize(s)
    _check_steps_size(fn, steps, p * row, p * row + k * _outputs(y) * _itemsize(s), memory_budget)  # B, C, fits; limits, coef
    if batch:
        al = xp.asarray(alphas[:, None], dtype=d.dtype, device=device(d))
        shape: tuple[int, ...] = (alphas.size,)
    else:
        al, shape = alpha_v, ()
    B, C = _recursion(d, ridge, itertools.repeat(al), steps, shape, xp)
    B_lim = al * d / (al * d + ridge)  # 0 where alpha = 0; no division by d
    C_lim = al / (al * d + ridge)
    coef = s.vectors.T @ y
    vec = y.ndim == 1
    fits = s.reconstruct(scale(B, coef), batched=vec)
    fit_lim = s.reconstruct(scale(B_lim, coef), batched=vec)
    return DistillationPath(
        alpha=alpha_v,
        ridge=ridge,
        steps=steps,
        eigenvalues=d,
        B=B,
        B_limit=B_lim,
        C=C,
        C_limit=C_lim,
        fits=fits,
        fit_limit=fit_lim,
        y_coef=coef,
        spectrum=s,
    )


def krr_fit(spectrum: Spectrum, y: Any, ridge: float) -> Any:
    """Training fit of kernel ridge regression, ``K (K + lambda I)^-1 y = V diag(d/(d+lambda)) V^T y``.

    Returns an array of shape (n,) or (n, c) in the spectrum's namespace (Borup &
    Andersen 2021, ``B^(1)``).

    Accuracy: relative error ``<= 1e-13`` against an extended-precision dense solve for
    every ridge from ``1e-3 d_max`` to ``1e10 d_max``, ``<= eps d_max / lambda`` below;
    below ``spectrum.zero_tol`` a
    :class:`kernels.spectrum.RidgeResolutionWarning` (see :func:`self_distillation`).
    """
    fn = "krr_fit"
    s = check_spectrum(fn, spectrum)
    check_param(fn, "ridge", ridge, CONSTRAINTS["ridge"])
    check_ridge_resolution(fn, s, ridge)
    y = _labels(fn, "y", y, s)
    a = s.values / (s.values + float(ridge))
    return s.reconstruct(scale(a, s.vectors.T @ y), batched=y.ndim == 1)


# ----------------------------------------------------------------------------- optimal alpha


def _best_alpha(a: Any, zy: Any, zp: Any, zref: Any, xp: ModuleType) -> tuple[float, bool]:
    """argmin_alpha ||a (alpha zy + (1-alpha) zp) - zref||^2 (unclipped) and a degeneracy flag.

    The fit is ``a zp + alpha u`` with ``u = a (zy - zp)``; so ``alpha* = <u, zref - a zp> / <u, u>``.
    If ``u`` vanishes (e.g. step 1, where the previous fit is y itself) the fit does not
    depend on alpha: alpha = 1 is reported with ``degenerate=True``.
    """
    h = a if zy.ndim == 1 else a[:, None]
    u = h * (zy - zp)
    w = zref - h * zp
    uu = float(xp.sum(u * u))
    scale = float(xp.sum((h * zy) ** 2)) + float(xp.sum((h * zp) ** 2))
    eps = float(xp.finfo(a.dtype).eps)
    if uu <= (100 * eps) ** 2 * scale or uu == 0.0:
        return 1.0, True
    return float(xp.sum(u * w)) / uu, False


def _reference_problem(
    fn: str, spectrum: Spectrum, y: Any, like_y: dict[str, Any], *, ridge: float, steps: int | None = None
) -> tuple[Spectrum, Any, list[Any]]:
    """Checks of :func:`optimal_alpha` and :func:`optimal_alpha_path`: spectrum, ridge, steps, y, reference.

    ``steps=None`` (optimal_alpha) is not checked. Every array of ``like_y`` (name to
    value) must have the shape of y; they are returned in its order, in the spectrum's
    namespace. A ridge below the spectrum's resolution warns.
    """
    s = check_spectrum(fn, spectrum)
    check_param(fn, "ridge", ridge, CONSTRAINTS["ridge"])
    if steps is not None:
        check_param(fn, "steps", steps, CONSTRAINTS["steps"])
    y = _labels(fn, "y", y, s)
    arrays = [_labels(fn, name, v, s) for name, v in like_y.items()]
    if any(a.shape != y.shape for a in arrays):
        raise ValueError(
            f"{fn}: {' and '.join(like_y)} must have the shape of y {tuple(y.shape)}; "
            f"got {' and '.join(str(tuple(a.shape)) for a in arrays)}"
        )
    check_ridge_resolution(fn, s, ridge, stacklevel=4)  # warn at the caller of optimal_alpha(_path)
    return s, y, arrays


@dataclass(frozen=True, eq=False)
class OptimalAlpha:
    """The alpha of one distillation step that brings the fit closest to a reference.

    Attributes
    ----------
    alpha : float
        ``clip(alpha_unclipped, 0, 1)``.
    alpha_unclipped : float
        Closed-form minimiser over all reals of ``||A(alpha y + (1-alpha) p) - r||^2``.
    clipped : bool
        Whether the minimiser lay outside [0, 1].
    degenerate : bool
        The fit does not depend on alpha (``A y = A p`` in the span); alpha = 1 is reported.
    fit : array of shape (n[, c])
        The step's fit at ``alpha``.
    error : float
        ``||fit - reference||^2`` (summed over outputs).
    ridge : float
    """

    alpha: float
    alpha_unclipped: float
    clipped: bool
    degenerate: bool
    fit: Any
    error: float
    ridge: float


def optimal_alpha(spectrum: Spectrum, y: Any, reference: Any, *, ridge: float, previous_fit: Any) -> OptimalAlpha:
    """Closed-form alpha of one step minimising the training distance to a reference.

    The step's fit ``f(alpha) = A(alpha y + (1 - alpha) p)`` (``A = K(K + lambda I)^-1``,
    ``p`` the previous step's fit) is affine in alpha, so ``||f(alpha) - r||^2`` is a
    parabola with minimiser ``alpha* = <u, r - A p> / ||u||^2``, ``u = A(y - p)``
    (Borup & Andersen 2021, optimal weighting parameter). alpha* is clipped to [0, 1].
    Computed in the eigenbasis in O(k c); the part of ``r`` outside the spectrum's span
    only adds a constant to the error.

    Accuracy: alpha* to a relative ``1e-10`` against the least-squares minimiser over a
    dense float64 fit (``numpy.linalg.lstsq`` on ``f(alpha)``) while
    ``||u||^2 > (100 eps)^2 (||A y||^2 + ||A p||^2)``; below that the fit does not depend
    on alpha to working precision and ``degenerate=True`` with alpha = 1 is reported.
    Ridges below ``spectrum.zero_tol`` warn (:class:`kernels.spectrum.RidgeResolutionWarning`).

    Parameters
    ----------
    spectrum : Spectrum
    y : array of shape (n,) or (n, c)
        Ground-truth targets used by the distillation.
    reference : array, same shape as y
        What the fit should approach (e.g. the clean labels when y is noisy).
    ridge : float
        KRR ridge lambda > 0.
    previous_fit : array, same shape as y
        The previous step's fit (``y`` itself before step 1).

    Returns
    -------
    OptimalAlpha
    """
    fn = "optimal_alpha"
    s, y, (ref, prev) = _reference_problem(fn, spectrum, y, {"reference": reference, "previous_fit": previous_fit}, ridge=ridge)
    xp, V = s.xp, s.vectors
    a = s.values / (s.values + float(ridge))
    zy, zp, zr = V.T @ y, V.T @ prev, V.T @ ref
    raw, degenerate = _best_alpha(a, zy, zp, zr, xp)
    alpha = min(max(raw, 0.0), 1.0)
    fit = s.reconstruct(scale(a, alpha * zy + (1 - alpha) * zp), batched=y.ndim == 1)
    err = float(xp.sum((fit - ref) ** 2))
    return OptimalAlpha(
        alpha=alpha, alpha_unclipped=raw, clipped=alpha != raw, degenerate=degenerate, fit=fit, error=err, ridge=float(ridge)
    )


@dataclass(frozen=True, eq=False)
class OptimalAlphaPath:
    """Greedy distillation path with the per-step optimal alpha (see :func:`optimal_alpha_path`).

    Attributes
    ----------
    alphas, alphas_unclipped : ndarray of shape (T,)
        Chosen (clipped to [0, 1]) and unclipped per-step minimisers. Step 1 is plain KRR
        for every alpha: reported as 1 with ``degenerate[0] = True``.
    clipped, degenerate : ndarray of bool, shape (T,)
    B, C : arrays of shape (T, k)
        Training and dual filters, ``B^(t) = A((1 - alpha_t) B^(t-1) + alpha_t)``, ``B^(0) = 1``.
    fits : array of shape (T, n[, c])
    errors : ndarray of shape (T,)
        ``||fit^(t) - reference||^2``.
    ridge, steps, y_coef, spectrum
        As in :class:`DistillationPath`.
    """

    alphas: np.ndarray
    alphas_unclipped: np.ndarray
    clipped: np.ndarray
    degenerate: np.ndarray
    B: Any
    C: Any
    fits: Any
    errors: np.ndarray
    ridge: float
    steps: int
    y_coef: Any
    spectrum: Spectrum = field(repr=False)

    def predict(self, K_cross: Any, *, memory_budget: int | None = None) -> Any:
        """Test predictions of every step: shape (T, m[, c]) for ``K_cross`` of shape (m, n).

        A result above ``memory_budget`` bytes (default 2 GiB) raises ``ValueError``.
        """
        return _predict(self.spectrum, self.C, self.y_coef, K_cross, "OptimalAlphaPath.predict", memory_budget)

    def __repr__(self) -> str:
        best = int(np.argmin(self.errors))
        return (
            f"OptimalAlphaPath(ridge={self.ridge:g}, steps={self.steps}, alphas={_alpha_text(self.alphas)}, "
            f"best_step={best + 1}, best_error={self.errors[best]:.4g})"
        )


def optimal_alpha_path(
    spectrum: Spectrum, y: Any, reference: Any, *, ridge: float, steps: int, memory_budget: int | None = None
) -> OptimalAlphaPath:
    """Distillation where every step uses the alpha closest to ``reference`` (greedy).

    Step t picks ``alpha_t`` by :func:`optimal_alpha` given the fit of step t-1, then
    ``B^(t) = A((1 - alpha_t) B^(t-1) + alpha_t I)`` with ``B^(0) = I`` (Borup & Andersen 2021).
    O(k c) per step in the eigenbasis.

    Accuracy: as :func:`optimal_alpha` at every step (alphas to ``1e-10`` relative
    against a dense greedy loop while the step is not degenerate); ridges below
    ``spectrum.zero_tol`` warn.

    Parameters
    ----------
    spectrum : Spectrum
    y : array of shape (n,) or (n, c)
    reference : array, same shape as y
    ridge : float
        KRR ridge lambda > 0.
    steps : int
        Number of steps T >= 1. Every step is stored.
    memory_budget : int, default=None
        Bytes the returned arrays may take (default 2 GiB); a larger path raises
        ``ValueError`` before anything is computed, saying how many steps fit.

    Returns
    -------
    OptimalAlphaPath
    """
    fn = "optimal_alpha_path"
    s, y, (ref,) = _reference_problem(fn, spectrum, y, {"reference": reference}, ridge=ridge, steps=steps)
    xp, V, d = s.xp, s.vectors, s.values
    ridge = float(ridge)
    # per step: B, C (k each), the fit (n[, c]) and five scalars (alphas, raw, clipped, degenerate, error)
    _check_steps_size(
        fn,
        int(steps),
        (2 * s.k + s.n_samples * _outputs(y)) * _itemsize(s) + 5 * 8,
        s.k * _outputs(y) * _itemsize(s),
        memory_budget,
    )
    a = d / (d + ridge)
    zy, zr = V.T @ y, V.T @ ref
    prev = xp.ones_like(d)
    raws, alphas, degs = [], [], []
    for _ in range(int(steps)):
        raw, deg = _best_alpha(a, zy, scale(prev, zy), zr, xp)
        al = min(max(raw, 0.0), 1.0)
        prev = a * ((1 - al) * prev + al)
        raws.append(raw)
        alphas.append(al)
        degs.append(deg)
    B, C = _recursion(d, ridge, alphas, len(alphas), (), xp)
    vec = y.ndim == 1
    fits = s.reconstruct(scale(B, zy), batched=vec)
    diff = fits - ref
    errors = to_numpy(xp.sum(diff * diff, axis=tuple(range(1, diff.ndim))))
    alphas_np, raws_np = np.array(alphas, dtype=float), np.array(raws, dtype=float)
    return OptimalAlphaPath(
        alphas=alphas_np,
        alphas_unclipped=raws_np,
        clipped=alphas_np != raws_np,
        degenerate=np.array(degs, dtype=bool),
        B=B,
        C=C,
        fits=fits,
        errors=errors.astype(float),
        ridge=ridge,
        steps=int(steps),
        y_coef=zy,
        spectrum=s,
    )


# ----------------------------------------------------------------------------- sparsification


@dataclass(frozen=True, eq=False)
class Sparsification:
    """Ratios ``B^(t)_jj / B^(t)_ii`` against a reference direction i (see :func:`sparsification`).

    Attributes
    ----------
    ratios : array of shape (.., T, k)
        ``r_t[j] = B^(t)_jj / B^(t)_ii``.
    limit : array of shape (.., k)
        ``lim_t r_t``: ``d_j (alpha d_i + lambda) / (d_i (alpha d_j + lambda))`` for alpha > 0;
        for alpha = 0, ``(a_j / a_i)^t`` tends to 0, 1 or inf as ``d_j <, =, > d_i``.
    decreasing : array of bool, shape (.., T-1, k)
        ``r_{t+1} <= r_t`` by the exact criterion ``f_t[j] <= f_t[i]`` with
        ``f_t = B^(t+1) / B^(t) = (1 - alpha) a + alpha a / B^(t)``; True where
        ``d_j = 0`` (the ratio is 0 at every step).
    reference_index : int
    alpha : float or ndarray
    ridge : float
    """

    ratios: Any
    limit: Any
    decreasing: Any
    reference_index: int
    alpha: float | np.ndarray
    ridge: float

    def __repr__(self) -> str:
        return (
            f"Sparsification(reference_index={self.reference_index}, alpha={_alpha_text(self.alpha)}, "
            f"ridge={self.ridge:g}, shape={tuple(self.ratios.shape)})"
        )


def sparsification(path: DistillationPath, reference_index: int = 0) -> Sparsification:
    """Diagonal ratios ``B^(t)_jj / B^(t)_ii`` of a distillation path, and when they shrink.

    Mobahi et al. (2020) call self-distillation *sparsifying*: with alpha = 0,
    ``B^(t) = A^t`` and ``r_t = (a_j / a_i)^t`` falls geometrically for every
    ``d_j < d_i``, so the fit concentrates on the leading eigen-directions. With ground
    truth in the targets (Borup & Andersen 2021) this is **not** monotone for
    ``0 < alpha < 1``. Writing ``s_t = B^(t) / a`` (``s_1 = 1``,
    ``s_{t+1} = q s_t + alpha``, ``q = (1 - alpha) a``), for ``0 < d_j < d_i``:

    * ``r_t <= r_1 = a_j / a_i`` for every t, and ``r_2 < r_1`` (by induction, ``s^j_t <= s^i_t``);
    * ``r_{t+1} <= r_t``  iff  ``alpha (1/s^j_t - 1/s^i_t) <= (1 - alpha)(a_i - a_j)`` (exact);
    * the left side tends to the right side, and ``r_t`` falls below its limit ``r_inf``
      (the ratio of KRR with ridge lambda/alpha) and then rises back to it: with
      ``s_t = s_inf + q^(t-1)(1 - s_inf)``, r rises at step t iff
      ``h(t) = P q_i^(1-t) - Q q_j^(1-t) < s_inf_j - s_inf_i`` (``P = s_inf_i^2/(1 - s_inf_i)``,
      ``Q`` likewise for j). As ``q_j < q_i``, h increases and then decreases to -inf,
      and ``h(1)`` satisfies the decrease condition, so the sign changes exactly once:
      ``r_t`` decreases up to some step t* >= 2 and increases after it.

    So the ratios are non-increasing in t for every pair only when alpha = 0
    (strictly decreasing) or alpha = 1 (constant); ``d_j = 0`` gives ratio 0 throughout.

    Parameters
    ----------
    path : DistillationPath
        Result of :func:`self_distillation`.
    reference_index : int, default=0
        Direction i (0 = the largest eigenvalue); its eigenvalue must be nonzero.

    Returns
    -------
    Sparsification
        Ratios computed as ``(a_j / a_i) prod_{u<t} f_u[j] / f_u[i]``, which stays finite
        where ``B^(t)`` itself underflows (alpha = 0, many steps).

    Accuracy: against the ratios of a 50-digit recursion ``B^(t+1) = a((1 - alpha)
    B^(t) + alpha)`` on the same eigenvalues, ridge and alpha, the relative error of
    ``r_t`` is at most ``2 t eps`` (t = 1..T; float64 and float32; any ridge > 0, alpha
    in [0, 1], T <= 60 measured up to 1.2 t eps) for ratios above the dtype's smallest normal
    number ``finfo.tiny`` (below it, gradual underflow: absolute error ``<= tiny``). A
    ``decreasing`` flag agrees with the exact ``r_{t+1} <= r_t`` wherever the ratio
    moves by more than ``4 t eps`` relative (``|r_{t+1} - r_t| > 4 t eps r_t``); closer
    to a tie, typically once ``r_t`` has converged to ``r_inf``, it is round-off.
    """
    fn = "sparsification"
    if not isinstance(path, DistillationPath):
        raise TypeError(f"sparsification: path must be a DistillationPath (from self_distillation); got {type(path).__name__}")
    k = path.spectrum.k
    check_param(fn, "reference_index", reference_index, Interval(int, 0, k - 1, "both"))
    i = int(reference_index)
    d = path.eigenvalues
    xp = namespace(d)
    if not float(d[i]) > 0:
        raise ValueError(f"{fn}: reference_index must point to a nonzero eigenvalue; d[{i}] = {float(d[i])!r}")
    lam = path.ridge
    if isinstance(path.alpha, float):
        al: Any = path.alpha
    else:
        al = xp.asarray(path.alpha[:, None], dtype=d.dtype, device=device(d))
    a = d / (d + lam)
    q = (1 - al) * a
    zero_alpha = 1.0 * (al == 0) if isinstance(al, float) else xp.astype(al == 0, d.dtype)
    r = a / a[i] + 0 * q
    s_t = xp.ones_like(r)
    ratios, decreasing = [r], []
    for _ in range(path.steps - 1):
        f = q + al / (s_t + zero_alpha)  # B^(t+1)/B^(t); alpha/s_t is 0 when alpha = 0 (s_t may underflow)
        fi = f[..., i : i + 1]
        decreasing.append((f <= fi) | (d == 0))  # d_j = 0: r_t = 0 throughout (f_j is 0/0)
        r = r * (f / fi)
        ratios.append(r)
        s_t = q * s_t + al
    R = xp.stack(ratios, axis=-2)
    dec = xp.stack(decreasing, axis=-2) if decreasing else xp.zeros(R.shape[:-2] + (0, k), dtype=xp.bool)
    pos = al * d[i] + lam
    lim_pos = (d / d[i]) * pos / (al * d + lam)
    ones = xp.ones_like(lim_pos)
    lim_zero = xp.where(d < d[i], 0 * ones, xp.where(d == d[i], ones, math.inf * ones))
    lim = (
        lim_pos
        if isinstance(al, float) and al > 0
        else (lim_zero if isinstance(al, float) else xp.where(al > 0, lim_pos, lim_zero))
    )
    return Sparsification(ratios=R, limit=lim, decreasing=dec, reference_index=i, alpha=path.alpha, ridge=lam)
