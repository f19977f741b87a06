"""Self-distillation rounds of Mobahi, Farajtabar & Bartlett (2020) at a fixed fit budget.

Each round refits the previous round's training predictions with the smallest-norm
RKHS function whose mean squared training error equals a budget epsilon::

    y_t = K (c_t I + K)^-1 y_{t-1},   y_0 = y,
    (1/n) ||y_t - y_{t-1}||^2 = (1/n) sum_i (c_t / (d_i + c_t))^2 ||z_i||^2 = epsilon,

with ``z = V^T y_{t-1}`` (rows summed over outputs for (n, c) labels). The error is
increasing in c_t, from the energy in the null space (c -> 0) to ``||y_{t-1}||^2 / n``
(c -> inf), so c_t exists exactly while ``||y_{t-1}||^2 > n epsilon``; otherwise the
solution is f = 0 and the rounds have *collapsed*. Mobahi et al. show c_t is
non-decreasing and that collapse happens after finitely many rounds.

Null space and resolution
-------------------------
Only exact zeros of the (clipped) spectrum and, for a top-k spectrum, the part of y
outside the k eigenvectors form the null space: they enter round 1's error with
weight 1 whatever c_1 is. Every other eigenvalue is used as it is, including those at
or below the spectrum's resolution ``zero_tol = n eps d_max``: their weight
``(c / (d + c))^2`` is 1 anyway when c is well above them, and when it is not,
thresholding them to 0 (weight 1) biases c_1 low. In float32 that bias was large: on a
33-point RBF kernel with c_1 = 10-20 ``zero_tol``, counting the eigenvalues below
``zero_tol`` as null made c_1 up to 97% too small (61% and one extra round in a
measured float32 case); the values as they are leave only the round-off of the
decomposition itself (below).

The answer is decided by round-off only when c_1 itself is below ``zero_tol``: the
fit then needs eigenvalues the decomposition does not resolve, and a ``ValueError`` is
raised (raise epsilon, or decompose K in float64). ``null_energy`` reports the energy
along eigenvalues ``<= zero_tol`` and outside the span, the part of y that the
decomposition cannot tell from null space. c_t is non-decreasing (Mobahi et al.),
so later rounds stay resolved.

Accuracy
--------
Each c_t is the root of the eigenbasis budget equation to ``4 eps64`` relative (brentq
in log c). Against dense solves on the same matrix in float64 (``K (K + cI)^-1``):

* float64 spectrum: c_t to a relative ``1e-7`` (the tests' tolerance; measured
  <= 1e-9) for every ``c_1 >= zero_tol``;
* float32 spectrum (LAPACK ``ssyevd``, eigenvalue round-off ~ ``eps32 d_max``):
  relative error of c_1 at most ``2 zero_tol / c_1`` (measured on 33-point RBF
  kernels: 15% at ``c_1 = 10 zero_tol``, 0.4% above ``50 zero_tol``, 2e-3 above
  ``100 zero_tol``). Below ``c_1 = 10 zero_tol`` a ``UserWarning`` says so.

References
----------
H. Mobahi, M. Farajtabar and P. L. Bartlett, "Self-distillation amplifies
regularization in Hilbert space", NeurIPS 2020, arXiv:2002.05715 (the rounds
y_t = K(c_t I + K)^-1 y_{t-1}, the monotonicity of c_t and the collapse bound).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import brentq

from kernels.backend import device, to_numpy
from kernels.checks import Interval, check_labels, check_param
from kernels.spectrum import Spectrum, check_spectrum
from theory.results import ResultText

__all__ = ["MobahiPath", "mobahi_rounds"]

#: Below ``c_1 = _RESOLVED * zero_tol`` the result carries a warning (see Accuracy).
_RESOLVED = 10.0

CONSTRAINTS: dict[str, Interval] = {
    "epsilon": Interval(float, 0, math.inf, "neither"),
    "max_rounds": Interval(int, 1, None, "left"),
}


@dataclass(frozen=True, eq=False, repr=False)
class MobahiPath(ResultText):
    """Rounds of fixed-budget self-distillation (Mobahi et al. 2020) until collapse.

    Attributes
    ----------
    c : ndarray of shape (R,)
        The ridge ``c_t`` of each round (non-decreasing).
    fits : array of shape (R, n[, c])
        ``y_1 .. y_R``.
    B : array of shape (R, k)
        Per-direction products ``prod_{s <= t} d / (d + c_s)`` (0 on the null space), so
        ``y_t = V diag(B[t-1]) V^T y``.
    fit_errors : ndarray of shape (R,)
        ``(1/n) ||y_t - y_{t-1}||^2`` (summed over outputs); equal to epsilon.
    label_energy : ndarray of shape (R + 1,)
        ``||y_t||^2`` for t = 0..R.
    null_energy : float
        Energy of y along eigenvalues ``<= spectrum.zero_tol`` and outside a top-k span:
        what the decomposition cannot tell from null space (round 1 removes it up to a
        factor ``(d / (d + c_1))^2 <= 1/4``; exact zeros and the outside part entirely).
    n_rounds : int
        R, the number of rounds run.
    collapsed : bool
        ``||y_R||^2 <= n epsilon``: f = 0 meets the budget, no further round is possible
        (``status == "collapsed"``, and only then).
    status : {"collapsed", "at-budget", "max-rounds"}
        Why the rounds stopped: ``"collapsed"`` (above); ``"at-budget"``: ``||y_R||^2``
        equals ``n epsilon`` to round-off, so the next round's c cannot be bracketed
        (neither a collapse nor a resolvable round); ``"max-rounds"``: ``max_rounds``
        rounds ran without a collapse.
    message : str
        One line saying the same in words, with the numbers.
    epsilon : float
    max_rounds : int
    y_coef : array of shape (k[, c])
        ``V^T y``.
    spectrum : Spectrum
    """

    c: np.ndarray
    fits: Any
    B: Any
    fit_errors: np.ndarray
    label_energy: np.ndarray
    null_energy: float
    n_rounds: int
    collapsed: bool
    status: str
    message: str
    epsilon: float
    max_rounds: int
    y_coef: Any
    spectrum: Spectrum = field(repr=False)

    def _summary_rows(self) -> dict[str, str]:
        """Rows of :meth:`summary`: the budget, the rounds, why they stopped and the label energies."""
        return {
            "epsilon": f"{self.epsilon:g}",
            "n, k": f"{self.spectrum.n_samples}, {self.spectrum.k}",
            "rounds": f"{self.n_rounds} (max {self.max_rounds})",
            "collapsed": str(self.collapsed),
            "status": f"{self.status}: {self.message}",
            "c_t": np.array2string(self.c, precision=4, separator=", ") if self.n_rounds else "[]",
            "||y_0||^2 / n": f"{self.label_energy[0] / self.spectrum.n_samples:.4g}",
            "null-space energy / n": f"{self.null_energy / self.spectrum.n_samples:.4g}",
        }

    def _repr_fields(self) -> str:
        return (
            f"epsilon={self.epsilon:g}, n_rounds={self.n_rounds}, collapsed={self.collapsed}, "
            f"n={self.spectrum.n_samples}, k={self.spectrum.k}"
        )


def _budget_error(c: float, d: np.ndarray, E: np.ndarray, null: float) -> float:
    """n times the round's fit error: ``null + sum (c / (d + c))^2 E`` over the range of K."""
    g = c / (d + c)
    return null + float(np.sum(g * g * E))


def _label_energies(s: Spectrum, y: Any) -> tuple[Any, np.ndarray, np.ndarray, float, float]:
    """``z = V^T y``, E and d (host float64: energy and eigenvalue per direction), ``||y||^2`` and the energy outside span(V)."""
    xp, V = s.xp, s.vectors
    z = V.T @ y
    zz = z * z if z.ndim == 1 else xp.sum(z * z, axis=1)
    E = to_numpy(zz).astype(np.float64)
    d = to_numpy(s.values).astype(np.float64)
    total0 = float(to_numpy(xp.sum(y * y)))
    outside = 0.0 if s.is_full else max(total0 - float(E.sum()), 0.0)
    return z, E, d, total0, outside


def _check_resolved(
    fn: str,
    dpos: np.ndarray,
    Epos: np.ndarray,
    null: float,
    null_energy: float,
    total0: float,
    budget: float,
    zero_tol: float,
    n: int,
    eps: float,
) -> None:
    """Refuse a budget that only a ridge below the spectrum's resolution ``zero_tol`` meets."""
    if total0 > budget and (null >= budget or _budget_error(zero_tol, dpos, Epos, null) >= budget):
        raise ValueError(
            f"{fn}: epsilon must exceed the energy of y that the spectrum cannot resolve from its null "
            f"space divided by n (the fit error at c = zero_tol = {zero_tol:.3g} is "
            f"{max(null, _budget_error(zero_tol, dpos, Epos, null)) / n:.6g}; energy / n along eigenvalues "
            f"<= zero_tol: {null_energy / n:.6g}); got {eps!r}: no function the decomposition resolves meets "
            f"that budget (raise epsilon or decompose K in float64)"
        )


def _bracket(r: float, dpos: np.ndarray, Epos: np.ndarray, null: float, budget: float) -> tuple[float, float] | None:
    """A bracket ``(lo, hi)`` of the round's root in c, or None when total and budget agree to round-off."""
    lo = 0.5 * r * float(dpos.min())
    hi = 2.0 * r * float(dpos.max()) / (1.0 - r)
    f_lo = _budget_error(lo, dpos, Epos, null) - budget
    f_hi = _budget_error(hi, dpos, Epos, null) - budget
    if not (f_lo < 0 < f_hi):  # round-off at the bracket ends; widen once
        lo, hi = lo * 1e-3, hi * 1e3
        f_lo = _budget_error(lo, dpos, Epos, null) - budget
        f_hi = _budget_error(hi, dpos, Epos, null) - budget
        if not (f_lo < 0 < f_hi):  # only when total and budget agree to round-off
            return None
    return lo, hi


def _next_c(total: float, dpos: np.ndarray, Epos: np.ndarray, null: float, budget: float) -> float | None:
    """The round's c_t (brentq in log c on the analytic bracket), or None when it cannot be resolved (at budget)."""
    r = math.sqrt((budget - null) / (total - null))
    if r >= 1.0 or dpos.size == 0:  # total equals the budget up to round-off
        return None
    bracket = _bracket(r, dpos, Epos, null, budget)
    if bracket is None:
        return None
    lo, hi = bracket
    u = brentq(
        lambda t: _budget_error(math.exp(t), dpos, Epos, null) - budget,
        math.log(lo),
        math.log(hi),
        xtol=1e-15,
        rtol=4 * np.finfo(float).eps,
        maxiter=500,
    )
    return math.exp(u)


def _warn_unresolved(fn: str, c: float, zero_tol: float) -> None:
    """Warn that c_1 is within ``_RESOLVED`` times the spectrum's resolution, and how accurate it is."""
    warnings.warn(
        f"{fn}: c_1 = {c:.3g} is within {_RESOLVED:g}x of the spectrum's resolution zero_tol = "
        f"{zero_tol:.3g}: eigenvalues at round-off level carry part of the fit, so c_t is accurate "
        f"to about {2 * zero_tol / c:.1%} only (raise epsilon or decompose K in float64)",
        UserWarning,
        stacklevel=4,  # the caller of mobahi_rounds (via _rounds)
    )


def _rounds(
    fn: str,
    d: np.ndarray,
    pos: np.ndarray,
    null: float,
    E: np.ndarray,
    total0: float,
    budget: float,
    zero_tol: float,
    n: int,
    max_rounds: int,
) -> tuple[str, list[float], list[float], list[np.ndarray], list[float]]:
    """Run the rounds: the status, and per round c_t, the fit error, the gains ``d / (d + c_t)`` and ``||y_t||^2``."""
    dpos = d[pos]
    Epos = E[pos]
    energy = [total0]
    cs: list[float] = []
    errs: list[float] = []
    gains: list[np.ndarray] = []
    status = "max-rounds"
    for _ in range(max_rounds):
        total = energy[-1]
        if total <= budget:
            status = "collapsed"
            break
        c = _next_c(total, dpos, Epos, null, budget)
        if c is None:
            status = "at-budget"
            break
        if not cs and c < _RESOLVED * zero_tol:
            _warn_unresolved(fn, c, zero_tol)
        g = np.zeros_like(d)
        g[pos] = dpos / (dpos + c)
        cs.append(c)
        errs.append(_budget_error(c, dpos, Epos, null) / n)
        gains.append(g)
        Epos = Epos * g[pos] ** 2
        null = 0.0
        energy.append(float(Epos.sum()))
    else:
        if energy[-1] <= budget:
            status = "collapsed"
    return status, cs, errs, gains, energy


def _message(status: str, R: int, last: float, n: int, eps: float, max_rounds: int) -> str:
    """One line saying why the rounds stopped, with the numbers (``last``: ``||y_R||^2``)."""
    return {
        "collapsed": f"after {R} round(s) ||y_R||^2 / n = {last / n:.6g} <= epsilon = {eps:g}: f = 0 meets the budget",
        "at-budget": f"after {R} round(s) ||y_R||^2 / n = {last / n:.6g} equals epsilon = {eps:g} to round-off: "
        f"the next round's c cannot be resolved",
        "max-rounds": f"max_rounds = {max_rounds} rounds ran without a collapse (||y_R||^2 / n = {last / n:.6g} "
        f"> epsilon = {eps:g}); raise max_rounds to continue",
    }[status]


def _fits(s: Spectrum, gains: list[np.ndarray], d: np.ndarray, z: Any) -> tuple[Any, Any]:
    """B, the cumulative products of the gains, in the spectrum's namespace, and the fits ``V diag(B[t-1]) V^T y``."""
    xp, V = s.xp, s.vectors
    B_host = np.cumprod(np.array(gains), axis=0) if gains else np.zeros((0, d.size))
    B = xp.asarray(B_host, dtype=s.values.dtype, device=device(s.values))
    coefs = B * z if z.ndim == 1 else B[:, :, None] * z
    fits = xp.matmul(coefs, V.T) if z.ndim == 1 else xp.matmul(V, coefs)
    return B, fits


def mobahi_rounds(spectrum: Spectrum, y: Any, *, epsilon: float, max_rounds: int = 100) -> MobahiPath:
    """Fixed-budget self-distillation rounds ``y_t = K (c_t I + K)^-1 y_{t-1}`` until collapse.

    Each c_t solves ``(1/n) sum_i (c/(d_i + c))^2 z_i^2 = epsilon`` (``z = V^T y_{t-1}``,
    squared entries summed over outputs) with :func:`scipy.optimize.brentq` in log c on
    an analytic bracket: with ``r = sqrt((n eps - N) / (||y_{t-1}||^2 - N))`` (N the
    null-space energy) the root lies in ``[r d_min / 2, 2 r d_max / (1 - r)]``. Rounds
    stop at collapse, ``||y_{t-1}||^2 <= n epsilon`` (Mobahi et al. 2020), or after
    ``max_rounds``. O(k) per round after the decomposition (the root finding runs on the
    host; fits are mapped back once at the end).

    Parameters
    ----------
    spectrum : Spectrum
        Eigendecomposition of K (see :func:`kernels.spectrum`).
    y : array of shape (n,) or (n, c)
        Targets.
    epsilon : float
        Budget on the mean squared training error of each round, in (0, inf).
    max_rounds : int, default=100
        Upper bound on the number of rounds.

    Returns
    -------
    MobahiPath

    Raises
    ------
    ValueError
        If the budget can only be met with ``c_1 < spectrum.zero_tol`` (the energy of y
        in the null space, or along eigenvalues the decomposition does not resolve, is
        about ``>= n epsilon``): raise epsilon, use a kernel of full rank, or decompose
        K in float64.

    Warns
    -----
    UserWarning
        When ``c_1 < 10 zero_tol``: c_t is then accurate only to about
        ``2 zero_tol / c_1`` (see Accuracy in the module notes).

    Examples
    --------
    >>> import numpy as np
    >>> from kernels import rbf, spectrum
    >>> X = np.random.default_rng(0).normal(size=(30, 2))
    >>> K = rbf(X, gamma=1.0)
    >>> path = mobahi_rounds(spectrum(K), np.sin(X[:, 0]), epsilon=0.01)
    >>> path.collapsed, bool(np.allclose(path.fit_errors, 0.01))
    (True, True)
    """
    fn = "mobahi_rounds"
    s = check_spectrum(fn, spectrum)
    check_param(fn, "epsilon", epsilon, CONSTRAINTS["epsilon"])
    check_param(fn, "max_rounds", max_rounds, CONSTRAINTS["max_rounds"])
    y, _ = check_labels(fn, "y", y, s.n_samples, like=s.vectors, dtype=s.vectors.dtype)
    n, eps = s.n_samples, float(epsilon)
    budget = n * eps
    z, E, d, total0, outside = _label_energies(s, y)
    zero_tol = float(s.zero_tol)
    null_mask = d <= 0.0  # exact (clipped) zeros only; small eigenvalues keep their values
    pos = ~null_mask
    null = outside + float(E[null_mask].sum())
    null_energy = outside + float(E[d <= zero_tol].sum())
    _check_resolved(fn, d[pos], E[pos], null, null_energy, total0, budget, zero_tol, n, eps)
    status, cs, errs, gains, energy = _rounds(fn, d, pos, null, E, total0, budget, zero_tol, n, int(max_rounds))
    R = len(cs)
    B, fits = _fits(s, gains, d, z)
    return MobahiPath(
        c=np.array(cs, dtype=float),
        fits=fits,
        B=B,
        fit_errors=np.array(errs, dtype=float),
        label_energy=np.array(energy, dtype=float),
        null_energy=null_energy,
        n_rounds=R,
        collapsed=status == "collapsed",
        status=status,
        message=_message(status, R, energy[-1], n, eps, int(max_rounds)),
        epsilon=eps,
        max_rounds=int(max_rounds),
        y_coef=z,
        spectrum=s,
    )
