"""A whole alpha-weighted self-distillation study on one factorisation.

:mod:`theory.distillation` computes the Borup & Andersen (2021) path in the eigenbasis
of K. A study that only needs fits and test predictions (no B-diagonals, no limit)
does not need the spectrum at all: with ``A = K (K + lambda I)^-1``, step t of the
distillation fits

    yhat^(t) = sum_{j=1}^{t-1} alpha (1 - alpha)^(j-1) A^j y  +  (1 - alpha)^(t-1) A^t y,     (1)

a convex combination of the Krylov vectors ``P_j = A^j y`` (expand the recursion
``B^(t+1) = A((1 - alpha) B^(t) + alpha I)``, ``B^(1) = A``, of Borup & Andersen,
eq. 7). The targets of step t are ``tau_t = alpha y + (1 - alpha) yhat^(t-1)``
(``tau_1 = y``), so with ``g_j = (K + lambda I)^-1 P_j``

    tau_t = sum_j v_tj P_j,     dual^(t) = (K + lambda I)^-1 tau_t = sum_j v_tj g_j,
    yhat^(t) = K dual^(t) = sum_j v_tj P_(j+1),     P_(j+1) = K g_j = P_j - lambda g_j,   (2)

with the weights ``v_1 = e_0`` and ``v_(t+1) = alpha e_0 + (1 - alpha) shift(v_t)``.
Every alpha shares the same T vectors ``g_0 .. g_(T-1)``: the Cholesky route factors
``K + lambda I = L L^T`` once, runs T pairs of triangular solves (one per step, for
all alphas together) and combines them with the (A, T, T) weights; test predictions
need one product ``K_cross [g_0 .. g_(T-1)]``. Its cost is ``n^3/3 + 2 T c n^2``
flops, against about twelve times ``n^3/3`` for one full eigendecomposition.

The eigen route (:func:`kernels.spectrum` + :func:`theory.distillation.self_distillation`)
is taken when the caller needs the spectrum (``need_spectrum=True``: B-diagonals, the
``t -> inf`` limit, sparsification), when asked for, or when the flop model says it
is cheaper (very many steps times outputs against n).

References
----------
K. Borup and L. N. Andersen, "Even your teacher needs guidance: ground-truth targets
dampen regularization imposed by self-distillation", NeurIPS 2021, arXiv:2102.13088.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from kernels.backend import cho_solve, cholesky, device, lstsq, namespace
from kernels.checks import Interval, Options, check_cross_kernel, check_kernel_matrix, check_labels, check_param
from kernels.spectrum import RidgeResolutionWarning, Spectrum, check_ridge_resolution, spectrum
from theory.distillation import DistillationPath, check_alpha, self_distillation
from theory.results import ResultText

__all__ = ["DistillationStudy", "distillation_study", "study_weights", "ROUTES", "EIGH_PER_CHOLESKY", "SOLVE_FLOPS_PER_ENTRY"]

ROUTES = ("auto", "cholesky", "eigen")

#: Wall time of one full eigendecomposition in units of one Cholesky factorisation of
#: the same matrix (scipy ``evd`` vs ``potrf``): 10-16 at n = 2000-8000 on an idle
#: 2-core CPU, more under load; see ``benchmarks/BASELINES.md``, row 4. Used by
#: ``route="auto"``.
EIGH_PER_CHOLESKY = 12.0

#: A pair of triangular solves with few right-hand sides streams the factor from memory:
#: it takes about as long as this many flops per matrix entry at the GEMM rate
#: (instead of 2 per entry and right-hand side). Used by ``route="auto"``.
SOLVE_FLOPS_PER_ENTRY = 32.0

CONSTRAINTS: dict[str, Any] = {
    "ridge": Interval(float, 0, math.inf, "neither"),
    "steps": Interval(int, 1, None, "left"),
    "route": Options(ROUTES),
    "need_spectrum": Options((False, True)),
}


# ----------------------------------------------------------------------------- result


@dataclass(frozen=True, eq=False, repr=False)
class DistillationStudy(ResultText):
    """Fits and test predictions of every step of every alpha, and how they were solved.

    Shapes: A alphas, T steps, n training points, m test points; ``[, c]`` is present
    for (n, c) labels. The leading A axis is always present (a scalar alpha gives A = 1).

    Attributes
    ----------
    fits : array of shape (A, T, n[, c])
        Training fits ``yhat^(t)`` (step 1 is plain KRR for every alpha).
    predictions : array of shape (A, T, m[, c]) or None
        ``K_cross dual^(t)`` when ``K_cross`` was given.
    dual_coef : array of shape (A, T, n[, c])
        ``dual^(t) = (K + lambda I)^-1 tau_t``; ``f^(t)(x) = k(x, X) dual^(t)``.
    route : {"cholesky", "eigen"}
        The route used.
    alpha : ndarray of shape (A,)
        Weights on the ground truth (float64, on the host).
    ridge : float
    steps : int
    solver : {"cholesky", "lstsq-fallback", "eigen"}
        ``"lstsq-fallback"`` when ``K + lambda I`` was not numerically positive definite
        and least squares replaced the Cholesky solves (a warning was issued too).
    route_reason : str
        Why this route was chosen (request, ``need_spectrum``, or the two flop estimates).
    cost_estimate : dict
        Estimated flops of each route: ``{"cholesky": ..., "eigen": ...}``.
    n_factorisations : int
        O(n^3) factorisations done: 1 (a Cholesky factor or one eigendecomposition).
    n_solves : int
        Pairs of triangular solves (each with c right-hand sides) on the Cholesky route;
        T, whatever the number of alphas. 0 on the eigen route.
    message : str
        Why the solver fell back (empty otherwise).
    update : str
        Cholesky route: how the Krylov vectors ``P_(j+1)`` were formed, ``"difference"``
        (``P_j - lambda g_j``), ``"product"`` (``K g_j``) or ``"difference+product"``
        (per column and step, whichever has the smaller rounding bound: the difference
        would lose ``log10(lambda / d_max)`` digits to cancellation at a ridge above
        ``d_max``). Empty on the eigen route.
    path : DistillationPath or None
        The eigen route's closed-form path (B-diagonals, limit, spectrum); None on the
        Cholesky route.
    """

    fits: Any
    predictions: Any
    dual_coef: Any
    route: str
    alpha: np.ndarray
    ridge: float
    steps: int
    solver: str
    route_reason: str
    cost_estimate: dict
    n_factorisations: int
    n_solves: int
    message: str = ""
    update: str = ""
    path: DistillationPath | None = field(default=None, repr=False)
    _basis: Any = field(default=None, repr=False)
    _weights: Any = field(default=None, repr=False)

    @property
    def spectrum(self) -> Spectrum | None:
        """The eigendecomposition (eigen route only)."""
        return None if self.path is None else self.path.spectrum

    def predict(self, K_cross: Any) -> Any:
        """Predictions of every alpha and step at new points: shape (A, T, m[, c]).

        ``K_cross = k(X_new, X_train)`` of shape (m, n). On the Cholesky route this costs
        one product with the T basis vectors, not A T.
        """
        fn = "DistillationStudy.predict"
        n = self.fits.shape[2]
        Kc = check_cross_kernel(fn, K_cross, like=self.fits, n=n)
        if self._basis is not None:
            return _combine_cross(Kc, self._basis, self._weights, self.fits.ndim == 3, namespace(Kc))
        return _apply_cross(Kc, self.dual_coef, self.fits.ndim == 3, namespace(Kc))

    def _summary_rows(self) -> dict[str, str]:
        """Rows of :meth:`summary`: sizes, route, solver and the flop estimates."""
        shape = tuple(self.fits.shape)
        return {
            "alphas": np.array2string(self.alpha, precision=4, separator=", "),
            "ridge": f"{self.ridge:g}",
            "steps": str(self.steps),
            "n": str(shape[2]),
            "outputs": "1" if len(shape) == 3 else str(shape[3]),
            "test points": "-" if self.predictions is None else str(self.predictions.shape[2]),
            "route": self.route,
            "why": self.route_reason,
            "solver": self.solver + (f" ({self.message})" if self.message else ""),
            "factorisations": str(self.n_factorisations),
            "triangular solve pairs": str(self.n_solves),
        }

    def _repr_fields(self) -> str:
        return (
            f"route={self.route!r}, solver={self.solver!r}, alphas={self.alpha.size}, "
            f"steps={self.steps}, ridge={self.ridge:g}, shape={tuple(self.fits.shape)}"
        )


# ----------------------------------------------------------------------------- helpers


def study_weights(alpha: Any, steps: int) -> np.ndarray:
    """Krylov weights ``v[a, t, j]`` of eq. (2): ``tau_(t+1) = sum_j v[a, t, j] A^j y``.

    ``v[:, 0] = e_0`` (the first targets are y) and
    ``v[:, t] = alpha e_0 + (1 - alpha) shift(v[:, t-1])``. Every row is a convex
    combination (non-negative, sums to 1), which keeps the combination of the Krylov
    vectors stable. The fit of step t+1 is ``sum_j v[a, t, j] A^(j+1) y``.

    Parameters
    ----------
    alpha : float or 1-D sequence of floats in [0, 1]
    steps : int >= 1

    Returns
    -------
    ndarray of shape (A, steps, steps), float64
    """
    fn = "study_weights"
    check_param(fn, "steps", steps, CONSTRAINTS["steps"])
    al = _alpha_vector(fn, alpha)
    T = int(steps)
    v = np.zeros((al.size, T, T))
    v[:, 0, 0] = 1.0
    for t in range(1, T):
        v[:, t, 0] = al
        v[:, t, 1:] = (1.0 - al)[:, None] * v[:, t - 1, :-1]
    return v


def _alpha_vector(fn: str, alpha: Any) -> np.ndarray:
    value, batch = check_alpha(fn, alpha)
    return np.asarray(value, dtype=float) if batch else np.asarray([value], dtype=float)


def _as_columns(y: Any, xp: ModuleType) -> Any:
    """(n,) -> (n, 1); (n, c) unchanged."""
    return xp.reshape(y, (y.shape[0], 1)) if y.ndim == 1 else y


def _combine(weights: Any, basis: Any, xp: ModuleType) -> Any:
    """``out[a, t] = sum_j weights[a, t, j] basis[j]``: (A, T, J) x (J, r, c) -> (A, T, r, c)."""
    A, T, J = weights.shape
    flat = xp.reshape(basis, (J, -1))
    out = xp.matmul(xp.reshape(weights, (A * T, J)), flat)
    return xp.reshape(out, (A, T) + tuple(basis.shape[1:]))


def _squeeze(x: Any, vector: bool, xp: ModuleType) -> Any:
    return x[..., 0] if vector else x


def _combine_cross(Kc: Any, basis: Any, weights: Any, vector: bool, xp: ModuleType) -> Any:
    """Predictions from the basis of dual vectors (T, n, c): one GEMM with T c columns."""
    T, n, c = basis.shape
    cols = xp.reshape(xp.permute_dims(basis, (1, 0, 2)), (n, T * c))  # (n, T c)
    H = xp.reshape(Kc @ cols, (Kc.shape[0], T, c))
    H = xp.permute_dims(H, (1, 0, 2))  # (T, m, c)
    return _squeeze(_combine(weights, H, xp), vector, xp)


def _apply_cross(Kc: Any, duals: Any, vector: bool, xp: ModuleType) -> Any:
    """``K_cross dual`` for duals of shape (A, T, n) or (A, T, n, c)."""
    if vector:
        return xp.matmul(duals, Kc.T)
    return xp.matmul(Kc, duals)


def _flops(n: int, m: int, c: int, A: int, T: int) -> dict[str, float]:
    """Cost model of both routes in GEMM-flop equivalents.

    Cholesky: ``n^3/3`` + T solve pairs at ``n^2 max(2c, SOLVE_FLOPS_PER_ENTRY)`` + the
    weight combinations + ``K_cross`` times T c columns. Eigen: ``EIGH_PER_CHOLESKY n^3/3``
    + projecting y + mapping A T fits and duals back through V + ``K_cross`` times A T c.
    """
    solve = n * n * max(2.0 * c, SOLVE_FLOPS_PER_ENTRY)
    chol = n**3 / 3 + T * solve + 4.0 * A * T * T * n * c + 2.0 * m * n * T * c + 2.0 * A * T * T * m * c
    eig = EIGH_PER_CHOLESKY * n**3 / 3 + 2.0 * n * n * c + 4.0 * A * T * n * n * c + 2.0 * m * n * A * T * c
    return {"cholesky": float(chol), "eigen": float(eig)}


# ----------------------------------------------------------------------------- routes


def _power_estimate(K: Any, xp: ModuleType, iters: int = 8) -> float:
    """A lower estimate of ``||K||_2`` (the largest |eigenvalue|): power iteration, fixed start.

    Used by the auto route's resolution test (``n eps d_max``) and to decide how the Krylov vectors
    are updated (:func:`_cholesky_route`); a factor of 2 in the estimate changes the rounding of that
    choice by at most a bit.
    """
    n = K.shape[0]
    v = xp.asarray(np.random.default_rng(0).standard_normal((n, 1)), dtype=K.dtype, device=device(K))
    est = 0.0
    for _ in range(iters):
        w = K @ v
        norm = float(xp.sqrt(xp.sum(w * w)))
        if not norm > 0.0:
            break
        est = max(est, norm / max(float(xp.sqrt(xp.sum(v * v))), np.finfo(float).tiny))
        v = w / norm
    return est


def _cholesky_route(
    K: Any, Y: Any, ridge: float, T: int, xp: ModuleType, fn: str, d_max: float
) -> tuple[Any, Any, str, str, str]:
    """Krylov vectors: ``g_j = (K + lambda I)^-1 P_j`` and ``P_(j+1) = K g_j`` (eq. 2).

    ``P_(j+1)`` has two exact forms, ``P_j - lambda g_j`` and ``K g_j``, whose rounding
    errors are about ``eps ||P_j||`` and ``eps ||K|| ||g_j||`` (plus the solve's own
    ``eps ||K|| ||g_j||``, common to both). The difference cancels catastrophically when
    ``lambda >> ||K||`` (``P_(j+1) ~ K P_j / lambda``: it loses ``log10(lambda / d_max)``
    digits); the product loses digits when ``g_j`` is large along small eigenvalues
    (small lambda). Each column of each step takes the form with the smaller bound:
    the product where ``d_max ||g_j|| <= ||P_j||`` (``d_max`` by power iteration),
    else the difference. Either way the error is round-off relative to ``||P_(j+1)||``
    up to the conditioning of the solve.

    Returns ``(G, P)`` of shapes (T, n, c) and (T, n, c) (``P_1 .. P_T``), the solver
    name, the fallback message and which update was used (``"difference"``,
    ``"product"`` or ``"difference+product"``).
    """
    n = K.shape[0]
    M = K + ridge * xp.eye(n, dtype=K.dtype, device=device(K))
    solver, message, L = "cholesky", "", None
    try:
        L = cholesky(M)
        if not bool(xp.all(xp.isfinite(L))):
            raise np.linalg.LinAlgError("the Cholesky factor has non-finite entries")
    except np.linalg.LinAlgError as exc:
        solver, message = "lstsq-fallback", str(exc)
        warnings.warn(
            f"{fn}: K + ridge I is not numerically positive definite at ridge={ridge:g} ({message}); "
            f"using least squares for every step instead (recorded as solver='lstsq-fallback'). "
            f"A larger ridge avoids this.",
            UserWarning,
            stacklevel=4,  # via _cholesky_study: the caller of distillation_study
        )
    if L is not None:
        del M
    Gs, Ps = [], []
    used: set[str] = set()
    P = Y
    for _ in range(T):
        g = cho_solve(L, P) if L is not None else lstsq(M, P)
        norm_g = xp.sqrt(xp.sum(g * g, axis=0))
        norm_p = xp.sqrt(xp.sum(P * P, axis=0))
        product = d_max * norm_g <= norm_p  # (c,): the product K g_j is the more accurate form
        n_prod = int(xp.sum(xp.astype(product, xp.int64)))
        if n_prod == 0:
            P = P - ridge * g
            used.add("difference")
        elif n_prod == product.shape[0]:
            P = K @ g
            used.add("product")
        else:
            P = xp.where(product[None, :], K @ g, P - ridge * g)
            used.update(("difference", "product"))
        Gs.append(g)
        Ps.append(P)
    update = "+".join(u for u in ("difference", "product") if u in used)
    return xp.stack(Gs, axis=0), xp.stack(Ps, axis=0), solver, message, update


def _eigen_route(K: Any, y: Any, ridge: float, alpha: np.ndarray, T: int, xp: ModuleType) -> tuple[Any, Any, DistillationPath]:
    """Fits and duals from one eigendecomposition via :func:`self_distillation`.

    A ridge below the spectrum's resolution warns once, in the name of
    ``distillation_study`` (:func:`kernels.spectrum.check_ridge_resolution`).
    """
    s = spectrum(K)
    check_ridge_resolution("distillation_study", s, ridge, stacklevel=5)  # via _eigen_study: the caller of distillation_study
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RidgeResolutionWarning)
        path = self_distillation(s, y, ridge=ridge, alpha=alpha, steps=T)
    s, coef = path.spectrum, path.y_coef
    if coef.ndim == 1:
        duals = xp.matmul(path.C * coef, s.vectors.T)  # (A, T, n)
    else:
        duals = xp.matmul(s.vectors, path.C[..., :, None] * coef)  # (A, T, n, c)
    return path.fits, duals, path


class _Solution(NamedTuple):
    """What one route computed: the arrays of the study and how they were solved."""

    fits: Any
    predictions: Any
    duals: Any
    solver: str
    message: str
    update: str
    n_solves: int
    basis: Any
    weights: Any
    path: DistillationPath | None


def _check_options(fn: str, ridge: Any, steps: Any, route: Any, need_spectrum: Any, alpha: Any) -> np.ndarray:
    """Check the scalar arguments of :func:`distillation_study` in order; return the alphas (float64, (A,))."""
    check_param(fn, "ridge", ridge, CONSTRAINTS["ridge"])
    check_param(fn, "steps", steps, CONSTRAINTS["steps"])
    check_param(fn, "route", route, CONSTRAINTS["route"])
    if not isinstance(need_spectrum, bool):
        raise TypeError(f"{fn}: need_spectrum must be one of False, True; got {need_spectrum!r}")
    alphas = _alpha_vector(fn, alpha)
    if route == "cholesky" and need_spectrum:
        raise ValueError(f"{fn}: need_spectrum=True needs the eigen route; got route='cholesky' (use route='auto' or 'eigen')")
    return alphas


def _choose_route(
    route: str, need_spectrum: bool, cost: dict[str, float], ridge: float, K: Any, xp: ModuleType, d_max: Callable[[], float]
) -> tuple[str, str]:
    """The route and why: as requested, the eigen route for the spectrum, or the cheaper one that resolves the ridge."""
    if route != "auto":
        return route, f"route={route!r} requested"
    if need_spectrum:
        return "eigen", "auto: need_spectrum=True (B-diagonals / limit / spectrum need the eigendecomposition)"
    chosen = "cholesky" if cost["cholesky"] <= cost["eigen"] else "eigen"
    reason = (
        f"auto: estimated {cost['cholesky']:.3g} flops (cholesky) vs {cost['eigen']:.3g} (eigen, "
        f"{EIGH_PER_CHOLESKY:g} Choleskys per eigendecomposition)"
    )
    if chosen != "eigen":
        return chosen, reason
    resolution = K.shape[0] * float(xp.finfo(K.dtype).eps) * d_max()
    if ridge < resolution:
        chosen = "cholesky"
        reason += (
            f"; but ridge={ridge:.3g} < n eps d_max = {resolution:.3g}, the eigendecomposition's "
            f"resolution (its solution would be ~10x less accurate): used cholesky"
        )
    return chosen, reason


def _eigen_study(
    K: Any, y: Any, Kc: Any, ridge: float, alphas: np.ndarray, T: int, xp: ModuleType, vector: bool, fall_back: bool
) -> _Solution | str:
    """The eigen route's solution, or, where ``fall_back`` and K is not PSD, why the Cholesky route is used instead."""
    try:
        fits, duals, path = _eigen_route(K, y, ridge, alphas, T, xp)
    except ValueError as exc:
        if not fall_back or "positive semi-definite" not in str(exc):
            raise
        return f"auto: the eigen route needs a PSD K ({str(exc).split(';')[0]}); used cholesky"
    preds = None if Kc is None else _apply_cross(Kc, duals, vector, xp)
    return _Solution(fits, preds, duals, "eigen", "", "", 0, None, None, path)


def _cholesky_study(
    K: Any, y: Any, Kc: Any, ridge: float, alphas: np.ndarray, T: int, xp: ModuleType, vector: bool, fn: str, d_max: float
) -> _Solution:
    """The Cholesky route's solution: T shared solves combined with the weights of every alpha (eq. 2)."""
    G, P, solver, message, update = _cholesky_route(K, _as_columns(y, xp), ridge, T, xp, fn, d_max)
    W = xp.asarray(study_weights(alphas, T), dtype=K.dtype, device=device(K))
    duals = _squeeze(_combine(W, G, xp), vector, xp)
    fits = _squeeze(_combine(W, P, xp), vector, xp)
    preds = None if Kc is None else _combine_cross(Kc, G, W, vector, xp)
    return _Solution(fits, preds, duals, solver, message, update, T, G, W, None)


# ----------------------------------------------------------------------------- public


def distillation_study(
    K: Any,
    y: Any,
    *,
    ridge: float,
    alpha: float | Any,
    steps: int,
    K_cross: Any = None,
    route: str = "auto",
    need_spectrum: bool = False,
) -> DistillationStudy:
    """Every step of alpha-weighted KRR self-distillation, for many alphas, on one factorisation.

    Step t fits kernel ridge regression (ridge lambda) to ``tau_t = alpha y + (1 - alpha)
    yhat^(t-1)``, ``yhat^(0) = y`` (Borup & Andersen 2021, arXiv:2102.13088): the fit is
    ``yhat^(t) = K (K + lambda I)^-1 tau_t`` and the dual coefficients
    ``(K + lambda I)^-1 tau_t`` give test predictions ``K_cross dual``.

    Two routes compute the same numbers:

    * ``"cholesky"``: one factorisation ``K + lambda I = L L^T`` and T pairs of
      triangular solves shared by all alphas, via the Krylov expansion (1)-(2) of the
      module notes (every fit is a convex combination of ``A^j y``). Cost
      ``n^3/3 + 2 T c n^2`` flops plus small products; no eigenvalues.
    * ``"eigen"``: one eigendecomposition (:func:`kernels.spectrum`) and
      :func:`theory.distillation.self_distillation`; about ``EIGH_PER_CHOLESKY`` (12)
      times the factorisation cost, but it also yields the B-diagonals, the limit
      ``B^(inf)`` and the spectrum (``result.path``).

    Accuracy (float64, against dense solves in extended precision): both routes give
    fits to a relative ``1e-13`` for every ridge from ``1e-3 d_max`` to ``1e10 d_max``
    and beyond (measured <= 2e-15 on the Cholesky route, which forms each Krylov vector
    as ``K g_j`` or ``P_j - lambda g_j``, whichever has the smaller rounding bound:
    the difference alone lost ``log10(lambda / d_max)`` digits, 1e-5 at
    ``1e10 d_max``; ``result.update`` records which). Below ``1e-3 d_max`` the error is
    that of the system itself, ``<= eps d_max / lambda`` (its condition number). On the
    eigen route a ridge below the spectrum's resolution ``n eps d_max`` warns
    (:class:`kernels.spectrum.RidgeResolutionWarning`; in float32 its predictions are
    then ~10x less accurate than the Cholesky route's), and ``route="auto"`` takes the
    Cholesky route there unless the spectrum is needed (``route_reason`` says so).

    ``route="auto"`` takes ``"eigen"`` when ``need_spectrum=True`` and otherwise the
    route with the smaller cost estimate (``result.cost_estimate``, GEMM-flop
    equivalents): the Cholesky route unless the study is long and narrow (one alpha,
    few outputs and T of the order of n / 8 or more, where streaming the factor T
    times costs more than one eigendecomposition). If auto picked the eigen route and
    K is not positive semi-definite, it uses the Cholesky route (with its least-squares
    fallback) instead and says so in ``route_reason``.

    Parameters
    ----------
    K : array of shape (n, n)
        Symmetric kernel matrix of the training points (numpy, torch or CuPy).
    y : array of shape (n,) or (n, c)
        Ground-truth targets; lists become arrays of K's namespace.
    ridge : float
        KRR ridge lambda in (0, inf).
    alpha : float or 1-D sequence of floats in [0, 1]
        Weights on the ground truth (one study row each; a scalar gives one row).
    steps : int
        Number of distillation steps T >= 1 (step 1 is plain KRR).
    K_cross : array of shape (m, n), optional
        ``k(X_test, X_train)``; when given, ``predictions`` holds every step's test
        predictions. More can be had later with :meth:`DistillationStudy.predict`.
    route : {"auto", "cholesky", "eigen"}, default="auto"
    need_spectrum : bool, default=False
        The caller needs B-diagonals, the limit or the spectrum: forces the eigen route
        (``route="cholesky"`` with ``need_spectrum=True`` is an error).

    Returns
    -------
    DistillationStudy
        Fits, predictions, dual coefficients, the route and the solver used.

    Raises
    ------
    ValueError
        ridge <= 0, alpha outside [0, 1], steps < 1, unknown route, shape mismatches,
        non-finite input, an asymmetric K, or (eigen route) a K that is not PSD.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.linspace(0, 1, 30)[:, None]
    >>> K = np.exp(-10 * (X - X.T) ** 2)
    >>> study = distillation_study(K, np.sin(6 * X[:, 0]), ridge=0.1, alpha=[0.0, 0.5, 1.0], steps=5)
    >>> study.route, study.fits.shape, study.n_solves
    ('cholesky', (3, 5, 30), 5)
    >>> eig = distillation_study(K, np.sin(6 * X[:, 0]), ridge=0.1, alpha=[0.0, 0.5, 1.0], steps=5, route="eigen")
    >>> bool(np.allclose(study.fits, eig.fits))
    True
    """
    fn = "distillation_study"
    alphas = _check_options(fn, ridge, steps, route, need_spectrum, alpha)
    K, xp = check_kernel_matrix(fn, "K", K)
    n = K.shape[0]
    y, _ = check_labels(fn, "y", y, n, like=K, dtype=K.dtype)
    Kc = None if K_cross is None else check_cross_kernel(fn, K_cross, like=K, n=n)
    ridge, T, A = float(ridge), int(steps), int(alphas.size)
    vector = y.ndim == 1
    c = 1 if vector else int(y.shape[1])
    cost = _flops(n, 0 if Kc is None else int(Kc.shape[0]), c, A, T)
    # the auto route's resolution test and the Cholesky route's update rule: estimated once, and only if needed
    d_max = functools.cache(lambda: _power_estimate(K, xp))
    chosen, reason = _choose_route(route, need_spectrum, cost, ridge, K, xp, d_max)
    fall_back = route == "auto" and not need_spectrum
    found = _eigen_study(K, y, Kc, ridge, alphas, T, xp, vector, fall_back) if chosen == "eigen" else None
    if isinstance(found, str):  # auto, and K is not PSD: the Cholesky route after all
        chosen, reason, found = "cholesky", found, None
    sol = _cholesky_study(K, y, Kc, ridge, alphas, T, xp, vector, fn, d_max()) if found is None else found
    return DistillationStudy(
        fits=sol.fits,
        predictions=sol.predictions,
        dual_coef=sol.duals,
        route=chosen,
        alpha=alphas,
        ridge=ridge,
        steps=T,
        solver=sol.solver,
        route_reason=reason,
        cost_estimate=cost,
        n_factorisations=1,
        n_solves=sol.n_solves,
        message=sol.message,
        update=sol.update,
        path=sol.path,
        _basis=sol.basis,
        _weights=sol.weights,
    )
