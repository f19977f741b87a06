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

Null space
----------
Eigenvalues ``<= spectrum.zero_tol`` count as exactly zero. Those components of y
(and, for a top-k spectrum, the part of y outside the k eigenvectors) are removed in
round 1 whatever c_1 is: they enter round 1's error with weight 1, so round 1 spends
``null_energy / n`` of its budget on them and c_1 is smaller than it would be on the
range of K alone. From round 2 on y_{t-1} lies in the range of K. If the null-space
energy alone is ``>= n epsilon`` no RKHS function meets the budget and a
``ValueError`` is raised.

References
----------
H. Mobahi, M. Farajtabar and P. L. Bartlett, "Self-distillation amplifies
regularization in Hilbert space", NeurIPS 2020, arXiv:2002.05715 (the rounds
y_t = K(c_t I + K)^-1 y_{t-1}, the monotonicity of c_t and the collapse bound).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import brentq

from kernels._backend import backend_name, device, namespace, to_numpy
from kernels._checks import Interval, check_labels, check_param
from kernels.spectrum import Spectrum

__all__ = ["MobahiPath", "mobahi_rounds"]

_CONSTRAINTS: dict[str, Interval] = {
    "epsilon": Interval(float, 0, math.inf, "neither"),
    "max_rounds": Interval(int, 1, None, "left"),
}


@dataclass(frozen=True, eq=False)
class MobahiPath:
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
        Energy of y removed in round 1 from the null space (and outside a top-k span).
    n_rounds : int
        R, the number of rounds run.
    collapsed : bool
        ``||y_R||^2 <= n epsilon``: no further round can meet the budget (f = 0).
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
    epsilon: float
    max_rounds: int
    y_coef: Any
    spectrum: Spectrum = field(repr=False)

    @property
    def backend(self) -> str:
        return backend_name(namespace(self.B))

    def summary(self) -> str:
        """Aligned ``key: value`` block."""
        rows = {
            "epsilon": f"{self.epsilon:g}",
            "n, k": f"{self.spectrum.n_samples}, {self.spectrum.k}",
            "rounds": f"{self.n_rounds} (max {self.max_rounds})",
            "collapsed": str(self.collapsed),
            "c_t": np.array2string(self.c, precision=4, separator=", ") if self.n_rounds else "[]",
            "||y_0||^2 / n": f"{self.label_energy[0] / self.spectrum.n_samples:.4g}",
            "null-space energy / n": f"{self.null_energy / self.spectrum.n_samples:.4g}",
            "backend": self.backend,
        }
        width = max(len(k) for k in rows)
        return "\n".join(f"{k.rjust(width)}: {v}" for k, v in rows.items())

    def __repr__(self) -> str:
        return (f"MobahiPath(epsilon={self.epsilon:g}, n_rounds={self.n_rounds}, collapsed={self.collapsed}, "
                f"n={self.spectrum.n_samples}, k={self.spectrum.k}, backend={self.backend!r})")


def _budget_error(c: float, d: np.ndarray, E: np.ndarray, null: float) -> float:
    """n times the round's fit error: ``null + sum (c / (d + c))^2 E`` over the range of K."""
    g = c / (d + c)
    return null + float(np.sum(g * g * E))


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
        If the energy of y in the null space of K is ``>= n epsilon`` (no function in
        the RKHS meets the budget): raise epsilon or use a kernel of full rank.

    Examples
    --------
    >>> import numpy as np
    >>> from kernels import spectrum
    >>> X = np.random.default_rng(0).normal(size=(30, 2))
    >>> K = np.exp(-((X[:, None] - X[None]) ** 2).sum(-1))
    >>> path = mobahi_rounds(spectrum(K), np.sin(X[:, 0]), epsilon=0.01)
    >>> path.collapsed, bool(np.allclose(path.fit_errors, 0.01))
    (True, True)
    """
    fn = "mobahi_rounds"
    if not isinstance(spectrum, Spectrum):
        raise TypeError(f"{fn}: spectrum must be a kernels.Spectrum (from kernels.spectrum(K)); got {type(spectrum).__name__}")
    s = spectrum
    check_param(fn, "epsilon", epsilon, _CONSTRAINTS["epsilon"])
    check_param(fn, "max_rounds", max_rounds, _CONSTRAINTS["max_rounds"])
    y, _ = check_labels(y, s.n_samples, fn, "y", like=s.vectors, dtype=s.vectors.dtype)
    xp, V = s.xp, s.vectors
    n, eps = s.n_samples, float(epsilon)
    budget = n * eps

    z = V.T @ y
    zz = z * z if z.ndim == 1 else xp.sum(z * z, axis=1)
    E = to_numpy(zz).astype(np.float64)
    d = to_numpy(s.values).astype(np.float64)
    total0 = float(to_numpy(xp.sum(y * y)))
    outside = 0.0 if s.is_full else max(total0 - float(E.sum()), 0.0)
    null_mask = d <= s.zero_tol
    pos = ~null_mask
    dpos = d[pos]
    null_energy = outside + float(E[null_mask].sum())
    if null_energy >= budget and total0 > budget:
        raise ValueError(f"{fn}: epsilon must exceed the energy of y in the null space of K divided by n "
                         f"(= {null_energy / n:.6g}); got {eps!r}: no function in the RKHS meets that budget")

    Epos = E[pos]
    null = null_energy
    energy = [total0]
    cs, errs, gains = [], [], []
    collapsed = False
    for _ in range(int(max_rounds)):
        total = energy[-1]
        if total <= budget:
            collapsed = True
            break
        r = math.sqrt((budget - null) / (total - null))
        if r >= 1.0 or dpos.size == 0:  # total equals the budget up to round-off: f = 0 is feasible
            collapsed = True
            break
        lo = 0.5 * r * float(dpos.min())
        hi = 2.0 * r * float(dpos.max()) / (1.0 - r)
        f_lo = _budget_error(lo, dpos, Epos, null) - budget
        f_hi = _budget_error(hi, dpos, Epos, null) - budget
        if not (f_lo < 0 < f_hi):  # round-off at the bracket ends; widen once
            lo, hi = lo * 1e-3, hi * 1e3
            f_lo = _budget_error(lo, dpos, Epos, null) - budget
            f_hi = _budget_error(hi, dpos, Epos, null) - budget
            if not (f_lo < 0 < f_hi):  # only when total and budget agree to round-off
                collapsed = True
                break
        u = brentq(lambda t: _budget_error(math.exp(t), dpos, Epos, null) - budget,
                   math.log(lo), math.log(hi), xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)
        c = math.exp(u)
        g = np.zeros_like(d)
        g[pos] = dpos / (dpos + c)
        cs.append(c)
        errs.append(_budget_error(c, dpos, Epos, null) / n)
        gains.append(g)
        Epos = Epos * g[pos] ** 2
        null = 0.0
        energy.append(float(Epos.sum()))
    else:
        collapsed = energy[-1] <= budget
    R = len(cs)
    B_host = np.cumprod(np.array(gains), axis=0) if R else np.zeros((0, d.size))
    B = xp.asarray(B_host, dtype=s.values.dtype, device=device(s.values))
    coefs = B * z if z.ndim == 1 else B[:, :, None] * z
    fits = xp.matmul(coefs, V.T) if z.ndim == 1 else xp.matmul(V, coefs)
    return MobahiPath(c=np.array(cs, dtype=float), fits=fits, B=B, fit_errors=np.array(errs, dtype=float),
                      label_energy=np.array(energy, dtype=float), null_energy=null_energy, n_rounds=R, collapsed=bool(collapsed),
                      epsilon=eps, max_rounds=int(max_rounds), y_coef=z, spectrum=s)
