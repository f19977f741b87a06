"""Mixed-precision kernel ridge solves: a float32 eigendecomposition, refined to float64.

Many ridges on one Gram matrix K cost one eigendecomposition ``K = V diag(d) V^T``
(``kernels.ridge``, eq. 2). On CPUs the decomposition is memory-bound and costs 8-20
Cholesky factorisations; in float32 it moves half the bytes and takes about half the time,
but its solution is only float32-accurate. This module keeps the speed and restores float64
accuracy by using the float32 spectral inverse as a *preconditioner* for the conjugate
gradient method on the float64 system, one column per ridge and target, all at once:

    A_r = K + lambda_r I,      M_r = V32 diag(1 / (d32 + lambda_r)) V32^T  ~  A_r^{-1}.

Preconditioned CG (Hestenes & Stiefel 1952; Saad 2003, Alg. 9.1) converges in a few
iterations when ``||I - M_r A_r||`` is small, which holds while the float32 round-off of
the decomposition, about ``eps32 * d_max``, is small against ``lambda_r``. Each iteration
costs one float64 product ``K P`` (n^2 R c) and two float32 products with V32, i.e.
O(n^2) per column against O(n^3) for a factorisation. The iteration stops when the
normwise backward error

    ||A_r x - y|| / (||A_r|| ||x|| + ||y||),     ||A_r|| = d_max + lambda_r,

of a column is at most ``tol`` (default ``16 * eps64``, what a backward-stable direct solve
attains); columns that do not get there within ``max_iter`` iterations are reported as not
converged, so the caller can solve them directly (mixed-precision iterative refinement in
the sense of Higham 2002, section 12.1, with CG in place of the Richardson step).

References
----------
M. R. Hestenes, E. Stiefel, "Methods of conjugate gradients for solving linear systems",
J. Res. NBS 49 (1952). Y. Saad, *Iterative Methods for Sparse Linear Systems*, 2nd ed.,
SIAM 2003, Algorithm 9.1. N. J. Higham, *Accuracy and Stability of Numerical Algorithms*,
2nd ed., SIAM 2002, chapter 12.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kernels.backend import namespace
from kernels.spectrum import Spectrum

__all__ = ["RefinedSolve", "refined_ridge_solve", "DEFAULT_TOL"]

DEFAULT_TOL = 16 * 2.220446049250313e-16
# Iterations over which an unconverged column must halve its backward error to go on.
_STALL_WINDOW = 10


@dataclass(frozen=True, eq=False)
class RefinedSolve:
    """Solutions of ``(K + ridge_r I) x_r = Y`` for every ridge, and how well they converged.

    Attributes
    ----------
    coef : array of shape (R, n) or (R, n, c)
        Solutions, in K's namespace and dtype.
    converged : array of bool, shape (R,)
        True where every target column reached the backward-error tolerance.
    backward_error : array of shape (R,)
        Largest normwise backward error over the target columns of each ridge, measured
        with a fresh residual at the end.
    iterations : int
        Conjugate-gradient iterations run (all columns advance together).
    """

    coef: Any
    converged: Any
    backward_error: Any
    iterations: int


def _precondition(spec: Spectrum, inv: Any, Rm: Any, dtype: Any, xp: Any) -> Any:
    """M R = V (inv * (V^T R)) column by column, in the spectrum's (low) precision.

    ``inv`` is (n, columns): the filter 1 / (d + lambda) of each column's ridge.
    """
    V = spec.vectors
    return xp.astype(V @ ((V.T @ xp.astype(Rm, V.dtype)) * inv), dtype)


def refined_ridge_solve(
    K: Any, Y: Any, ridges: Any, spec: Spectrum, *, tol: float = DEFAULT_TOL, max_iter: int = 50
) -> RefinedSolve:
    """Solve ``(K + ridge_r I) x_r = Y`` for all ridges by CG preconditioned with ``spec``.

    Parameters
    ----------
    K : array of shape (n, n)
        The symmetric positive semi-definite Gram matrix, in the working precision
        (float64 for float64 answers).
    Y : array of shape (n,) or (n, c)
        Right-hand sides, K's namespace and dtype.
    ridges : array of shape (R,)
        Ridges lambda_r > 0 (checked by the caller), K's namespace.
    spec : Spectrum
        A full eigendecomposition of K, usually of ``float32(K)``; its values must be
        non-negative (``spectrum`` clips round-off negatives).
    tol : float, default=16 * eps64
        Normwise backward-error target per column (see the module notes).
    max_iter : int, default=50
        Iterations before the remaining columns are given up (``converged`` False). A
        column whose backward error did not halve over the last 10 iterations is given up
        earlier (the float32 preconditioner is then too coarse for its ridge).

    Accuracy: a column reported ``converged`` has normwise backward error at most
    ``4 tol`` (64 eps64 at the default; measured <= 11 eps64 when recomputed in long
    double from the returned solution), and ``backward_error`` is the true one to
    ``1 eps64`` absolute and 1% relative, converged or not. The forward error is then at
    most ``cond(A_r)`` times that, as for a backward-stable direct solve. Convergence:
    every ridge ``lambda_r >= eps32 d_max`` converges within ``max_iter = 50`` (RBF
    Gram matrices, n = 100-300: 8-43 iterations); below, the float32 preconditioner
    can be too coarse (n = 300 at ``lambda = 0.03 eps32 d_max``: not converged,
    backward error 2e7 eps64, flagged). Pinned in ``tests/test_accuracy_theory.py``.

    Returns
    -------
    RefinedSolve

    Examples
    --------
    >>> import numpy as np
    >>> from kernels import rbf, spectrum
    >>> X = np.random.default_rng(0).normal(size=(60, 3))
    >>> K, y = rbf(X, gamma=0.5), np.sin(X[:, 0])
    >>> res = refined_ridge_solve(K, y, np.array([1e-3, 1.0]), spectrum(K.astype(np.float32)))
    >>> bool(res.converged.all()), bool(np.allclose(res.coef[1], np.linalg.solve(K + np.eye(60), y)))
    (True, True)
    """
    xp = namespace(K)
    dtype = K.dtype
    vec = Y.ndim == 1
    Yc = Y[:, None] if vec else Y  # (n, c)
    n, c = Yc.shape
    R = ridges.shape[0]
    # One column per (ridge, target), ridge-major, so every product is a single GEMM.
    lam = xp.reshape(xp.broadcast_to(xp.astype(ridges, dtype)[:, None], (R, c)), (1, R * c))
    low_lam = xp.astype(lam, spec.values.dtype)
    inv = 1.0 / (spec.values[:, None] + low_lam)  # (n, R c)
    norm_A = float(spec.values[0]) + lam  # (1, R c): ||A_r||_2 up to the spectrum's round-off
    Yb = xp.concat([Yc] * R, axis=1) if R > 1 else Yc  # (n, R c)
    norm_y = xp.sqrt(xp.sum(Yb * Yb, axis=0))[None, :]

    def apply_A(P: Any) -> Any:
        return K @ P + lam * P

    def backward_error(Xs: Any, Rs: Any) -> Any:
        nx = xp.sqrt(xp.sum(Xs * Xs, axis=0))[None, :]
        nr = xp.sqrt(xp.sum(Rs * Rs, axis=0))[None, :]
        return nr / (norm_A * nx + norm_y)  # (1, R c)

    Xs = _precondition(spec, inv, Yb, dtype, xp)  # the low-precision solution as a starting point
    Rs = Yb - apply_A(Xs)
    Z = _precondition(spec, inv, Rs, dtype, xp)
    P = Z
    rz = xp.sum(Rs * Z, axis=0)[None, :]
    err = backward_error(Xs, Rs)
    done = err <= tol
    err_before = err
    it = 0
    while it < max_iter and not bool(xp.all(done)):
        it += 1
        Q = apply_A(P)
        pq = xp.sum(P * Q, axis=0)[None, :]
        safe = (~done) & (pq > 0)
        alpha = xp.where(safe, rz / xp.where(safe, pq, 1.0), 0.0)
        Xs = Xs + alpha * P
        Rs = Rs - alpha * Q
        err = backward_error(Xs, Rs)
        done = done | (err <= tol)
        if it % _STALL_WINDOW == 0:  # give up columns that did not halve their error in the last window
            done = done | (err > 0.5 * err_before)
            err_before = err
        Z = _precondition(spec, inv, Rs, dtype, xp)
        rz_new = xp.sum(Rs * Z, axis=0)[None, :]
        beta = xp.where(safe & (rz != 0), rz_new / xp.where(safe & (rz != 0), rz, 1.0), 0.0)
        P = Z + beta * P
        rz = rz_new
    # The recursively updated residual drifts from the true one: measure it afresh.
    err = xp.reshape(backward_error(Xs, Yb - apply_A(Xs)), (R, c))
    worst = xp.max(err, axis=1)
    converged = worst <= 4 * tol
    coef = xp.permute_dims(xp.reshape(Xs, (n, R, c)), (1, 0, 2))  # (R, n, c)
    if vec:
        coef = coef[:, :, 0]
    return RefinedSolve(coef=coef, converged=converged, backward_error=worst, iterations=it)
