"""Linearised training (NTK regime) with a target schedule, in the eigenbasis of K.

Squared loss ``L = 1/2 ||u - target||^2``, outputs ``u(0) = 0``, gradient descent in
function space with step ``lr``::

    u <- u - lr K (u - target_t).

Write ``u = K c`` (c: dual coefficients, the test-point function is
``f(x) = k(x, X) c``) and use eigen-coordinates ``c_i = (V^T c)_i``, ``tau_i =
(V^T target)_i`` with ``K = V diag(d) V^T``. Each step is then, per direction,

    c_i <- (1 - lr d_i) c_i + lr tau_i,

and every target rule below is linear in ``(c_i, tau_i)``, so the state of each
direction evolves by a 2x2 matrix: a target-momentum schedule is iterated at O(k) per step.
With constant parameters the recursion collapses to a scalar geometric series
``c_k = b sum_{j<k} r^j`` (below), evaluated by doubling in O(k log steps) per
record, so ``steps = 10**12`` is as cheap as 40. No discrete step divides by an
eigenvalue, and the flow uses ``-expm1(-x)/x`` with an exact branch at x = 0:
numerically zero eigenvalues (``d in {0, +-1e-15}``) give finite, continuous answers.

Because the state starts from ``(c, tau) = (0, y_i)`` and the map is the same for
every label column, the whole run is two label-free filters per direction,
``c_i(t) = g_c(t) y_i`` and ``tau_i(t) = g_tau(t) y_i``; the fitted fraction is
``u_i / y_i = d_i g_c(t)`` (docs/derivations.md, section 4).

Target rules
------------
``"gd"``
    ``target = y``. Fitted fraction ``1 - (1 - lr d)^k``; continuous ``1 - exp(-d t)``.
``"anchored"``
    ``target_t = alpha y + (1 - alpha) u_t``: ``alpha`` is the weight on the ground
    truth, as everywhere in airkit. Then ``u - target = alpha (u - y)``: exactly GD
    with step ``lr * alpha``.
``"chained"`` (Dong, Hou, Lu, Zhang 2019, self-distillation from the previous step)
    ``target_{t+1} = m_t target_t + (1 - m_t) u_t``, ``target_0 = y``, with the target
    momentum ``m`` (``target_momentum``: the weight on the previous target, as in
    Self-Adaptive Training's ``t <- m t + (1 - m) p``) and the step map
    ``M = [[1 - lr d, lr], [(1 - m) d, m]]`` on ``(c, tau)`` (the target update uses
    ``u_t``, the outputs before the step).
    For constant m, ``det(M - I) = lr d (1-m) - lr (1-m) d = 0``: one
    eigenvalue is 1, the other is ``trace - 1 = m - lr d``. The left eigenvector
    for 1 is ``((1 - m)/lr, 1)``, so ``q = ((1-m)/lr) c + tau`` is conserved
    (``q = y`` from the start). If ``|m - lr d| < 1`` the state converges to the
    fixed point ``tau = d c`` (from the c-equation), and then
    ``c = y / (d + (1-m)/lr)``, ``u = d / (d + (1-m)/lr) y``: kernel ridge
    regression with ridge ``lambda = (1 - m)/lr``. For ``m in [0, 1]`` and
    ``lr d > 0`` the condition is ``lr d < 1 + m`` (at d = 0 the second eigenvalue
    is m: for m = 1, chained = gd, and c grows linearly along null directions
    while u stays 0). Using ``q`` to eliminate tau, ``c_{k+1} = (m - lr d) c_k + lr``,
    so ``c_k = lr sum_{j<k} (m - lr d)^j`` and ``tau_k = 1 - (1 - m) sum_{j<k} ...``
    (per unit of ``y_i``): the unit eigenvalue is treated exactly, with no drift
    for huge k. gd/anchored are the same series with ``r = 1 - lr alpha d``, ``b = lr alpha``.

Continuous time (``continuous=True``)
-------------------------------------
The limit ``lr -> 0`` with ``t = lr * step``. gd/anchored: ``dc/dt = alpha (y - d c)``,
so ``c(t) = -expm1(-alpha d t)/d y``. chained, with ``m = 1 - beta lr`` (rate
``beta = (1 - m)/lr``): ``dc/dt = tau - d c``, ``dtau/dt = beta (d c - tau)``.
The generator ``G = [[-d, 1], [beta d, -beta]]`` has ``det G = 0``, hence
``G^2 = trace(G) G = -(d + beta) G`` and ``exp(G t) = I + phi G`` with
``phi = -expm1(-(d + beta) t)/(d + beta)`` (``phi -> t`` as ``d + beta -> 0``).
From ``(0, y)``: ``c = phi y``, ``tau = (1 - beta phi) y``, and as ``t -> inf``,
``u -> d/(d + beta) y``: KRR with ridge beta again.

References
----------
Dong, Hou, Lu, Zhang (2019). Distillation ~ early stopping? Harvesting dark knowledge
utilizing anisotropic information retrieval for overparameterized neural network.
arXiv:1910.01255 (the AIR analysis: GD fits eigen-direction i by ``1 - (1 - eta d_i)^k``;
self-distillation with targets from the previous step).
Jacot, Gabriel, Hongler (2018). Neural tangent kernel. NeurIPS (linearised dynamics).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from kernels.checks import (
    Interval,
    Options,
    check_cross_kernel,
    check_labels,
    check_param,
    check_result_size,
    check_same_namespace,
    check_vector,
)
from kernels.spectrum import Spectrum, check_spectrum, nonnegative_values, scale

__all__ = ["TARGET_RULES", "TrainingPath", "linearized_training", "max_stable_lr"]

TARGET_RULES = ("gd", "anchored", "chained")

# Parameter bounds as data (one shape of error message, see kernels.checks).
CONSTRAINTS: dict[str, Interval | Options] = {
    "lr": Interval(float, 0, math.inf, "neither"),  # finite
    "steps": Interval(int, 1, None, "both"),
    "alpha": Interval(float, 0, 1, "both"),
    "target_momentum": Interval(float, 0, 1, "both"),
    "targets": Options(TARGET_RULES),
}

Pair = tuple[Any, Any]
Mat = tuple[Any, Any, Any, Any]  # ((a, b), (c, e)) per direction, each of shape (k,)


# ----------------------------------------------------------------------------- result


@dataclass(frozen=True, eq=False)
class TrainingPath:
    """A linearised training run recorded at chosen steps.

    Attributes
    ----------
    spectrum : Spectrum
        The eigendecomposition the run was computed in.
    target_rule : str
        ``"gd"``, ``"anchored"`` or ``"chained"``.
    lr : float
        Step size (the time unit when ``continuous``).
    steps : int
        Number of steps of the run.
    alpha : float or None
        anchored: the weight on the ground truth y; None for the other rules.
    target_momentum : float, numpy.ndarray of shape (steps,) or None
        chained: the weight on the previous target (constant or schedule); None for
        the other rules.
    continuous : bool
        Whether the gradient-flow limit was used (``times = lr * record``).
    record : numpy.ndarray of shape (T,)
        Recorded steps, in the order asked (float when ``continuous``).
    times : numpy.ndarray of shape (T,)
        ``lr * record``.
    y_coef : array of shape (k,) or (k, c)
        Label coordinates ``V^T y``.
    dual_filter : array of shape (T, k)
        ``g_c``: dual coefficients are ``coef = g_c * V^T y``.
    target_filter : array of shape (T, k)
        ``g_tau``: targets are ``V (g_tau * V^T y)``.
    fraction : array of shape (T, k)
        Fitted fraction per direction, ``d * g_c`` (``u_i = fraction_i * y_i``).
    coef : array of shape (T, k) or (T, k, c)
        Dual coefficients in the eigenbasis (use :meth:`predict` for new points).
    fits : array of shape (T, n) or (T, n, c)
        Training outputs ``u = V (fraction * V^T y)``.
    limit_ridge : float or None
        The run converges to KRR with this ridge (0 = interpolation on range(K)):
        0 for gd/anchored (alpha > 0), ``(1 - m)/lr`` for chained with a constant
        target momentum m; None for schedules and anchored with alpha = 0.
    lr_bound : float
        The largest stable step for this rule (inf in continuous time).
    n_zero : int
        Number of numerically zero eigenvalues (``d <= spectrum.zero_tol``).
    """

    spectrum: Spectrum
    target_rule: str
    lr: float
    steps: int
    alpha: float | None
    target_momentum: Any
    continuous: bool
    record: np.ndarray
    times: np.ndarray
    y_coef: Any
    dual_filter: Any
    target_filter: Any
    fraction: Any
    coef: Any
    fits: Any
    limit_ridge: float | None
    lr_bound: float
    n_zero: int

    @property
    def targets(self) -> Any:
        """Targets ``target_t`` at the recorded steps, shape (T, n) or (T, n, c).

        ``y`` for gd, ``alpha y + (1 - alpha) u_t`` for anchored, the chained
        recursion ``m target_t + (1 - m) u_t`` for chained (projected onto span(V) for a top-k spectrum).
        """
        return self.spectrum.reconstruct(scale(self.target_filter, self.y_coef), batched=self.y_coef.ndim == 1)

    def predict(self, K_cross: Any, *, memory_budget: int | None = None) -> Any:
        """Outputs at new points ``K_cross V coef``: shape (T, m) or (T, m, c).

        Parameters
        ----------
        K_cross : array of shape (m, n)
            Kernel between the new points and the training points.
        memory_budget : int, default=None
            Bytes the result may take (default 2 GiB); a larger one raises ``ValueError``
            before it is computed.
        """
        fn = "TrainingPath.predict"
        V = self.spectrum.vectors
        Kc = check_cross_kernel(fn, K_cross, like=V, n=self.spectrum.n_samples)
        xp = self.spectrum.xp
        T, m = int(self.coef.shape[0]), int(Kc.shape[0])
        cols = 1 if self.coef.ndim == 2 else int(self.coef.shape[2])
        check_result_size(
            fn,
            T * m * cols * (xp.finfo(V.dtype).bits // 8),
            memory_budget,
            f"predicting {T} recorded steps at {m} points",
            "pass fewer rows of K_cross at a time or a larger memory_budget=",
        )
        Kv = Kc @ V  # (m, k)
        if self.coef.ndim == 2:
            return self.coef @ Kv.T
        return xp.matmul(Kv, self.coef)


# ----------------------------------------------------------------------------- checks


def _check_flag(fn: str, name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{fn}: {name} must be True or False; got {value!r}")
    return bool(value)


# The parameter that weights each rule's targets: one name per idea (README, "Conventions").
_WEIGHT_OF: dict[str, str | None] = {"gd": None, "anchored": "alpha", "chained": "target_momentum"}
_WEIGHT_MEANING = {
    "alpha": "the weight on the ground truth (targets='anchored')",
    "target_momentum": "the weight on the previous target (targets='chained')",
}


def _rule_weight(fn: str, rule: str, alpha: Any, target_momentum: Any, steps: int) -> tuple[float | None, np.ndarray | None]:
    """(constant, schedule) of the rule's weight: alpha for anchored, target_momentum for chained.

    The other name must be None (a value given is used or refused); chained alone takes
    a 1-D schedule of length ``steps``.
    """
    given = {"alpha": alpha, "target_momentum": target_momentum}
    want = _WEIGHT_OF[rule]
    for name, value in given.items():
        if name != want and value is not None:
            takes = f"it takes {want}=" if want else "it takes neither"
            raise ValueError(
                f"{fn}: {name} is {_WEIGHT_MEANING[name]}; targets={rule!r} does not use it ({takes}); got {value!r}"
            )
    if want is None:
        return None, None
    value = given[want]
    if value is None:
        raise ValueError(
            f"{fn}: {want} must be given for targets={rule!r}: a float in [0, 1]"
            + (" or a 1-D schedule of length steps" if rule == "chained" else "")
        )
    what = CONSTRAINTS[want].describe()
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(check_param(fn, want, value, CONSTRAINTS[want])), None
    if isinstance(value, (bool, str)):
        raise TypeError(f"{fn}: {want} must be {what} or a 1-D schedule of such floats; got {value!r}")
    try:
        sched = check_vector(fn, want, value, constraint=CONSTRAINTS[want])
    except (TypeError, ValueError) as exc:
        if want in str(exc):
            raise
        raise TypeError(f"{fn}: {want} must be {what} or a 1-D schedule of such floats; got {type(value).__name__}") from exc
    if sched.size == 1 and np.ndim(value) == 0:
        return float(sched[0]), None
    if rule != "chained":
        raise ValueError(
            f"{fn}: {want} must be a scalar for targets={rule!r} (schedules are for 'chained'); got shape {sched.shape}"
        )
    if sched.size != steps:
        raise ValueError(
            f"{fn}: {want} schedule must have length steps = {steps} ({want}[t] makes target t+1); got length {sched.size}"
        )
    return None, sched


def _check_record(fn: str, record: Any, steps: int, integer: bool) -> np.ndarray:
    if record is None:
        return np.arange(steps + 1, dtype=np.int64)
    rec = check_vector(fn, "record", record, constraint=Interval(float, 0, steps, "both"))
    if integer:
        if not np.all(rec == np.round(rec)):
            raise ValueError(
                f"{fn}: record must hold integer steps in [0, {steps}] (discrete time or a target-momentum schedule); got {record!r}"
            )
        return rec.astype(np.int64)
    return rec


def _check_size(fn: str, spectrum: Spectrum, y: Any, steps: int, record: Any, memory_budget: Any) -> None:
    """Refuse records whose arrays (3 filters, coef, fits, record, times) exceed the budget."""
    k, n, c = spectrum.k, spectrum.n_samples, (1 if y.ndim == 1 else int(y.shape[1]))
    item = spectrum.xp.finfo(spectrum.vectors.dtype).bits // 8
    per_record = (3 * k + k * c + n * c) * item + 2 * 8
    if record is None:
        T = steps + 1
        what, fix = (
            f"recording all {T} steps (0..{steps})",
            "pass record=[...] with the steps you need (e.g. a log-spaced grid) or a larger memory_budget=",
        )
    else:
        try:
            T = len(record)
        except TypeError:  # a scalar (or something check_vector refuses next)
            T = 1
        what, fix = f"recording {T} steps", "pass fewer steps in record= or a larger memory_budget="
    check_result_size(fn, T * per_record, memory_budget, what, fix)


def max_stable_lr(
    spectrum: Spectrum, targets: str = "gd", alpha: float | None = None, target_momentum: float | None = None
) -> float:
    """Largest step for which the discrete recursion does not diverge.

    ``2 / d_max`` for gd (``|1 - lr d| < 1``), ``2 / (alpha d_max)`` for anchored
    (GD with step ``lr alpha``), and ``(1 + m) / d_max`` for chained with target
    momentum ``m`` (the non-unit eigenvalue ``m - lr d`` of each step must lie in
    ``(-1, 1]``; for a schedule, pass its smallest m: this is then a per-step
    necessary condition). ``inf`` when ``d_max = 0``.
    """
    fn = "max_stable_lr"
    check_spectrum(fn, spectrum)
    check_param(fn, "targets", targets, CONSTRAINTS["targets"])
    weight, _ = _rule_weight(fn, targets, alpha, target_momentum, steps=1)
    _, _, d_max = nonnegative_values(fn, spectrum)
    w = 1.0 if weight is None else weight  # gd is anchored with alpha = 1
    num = {"gd": 2.0, "anchored": 2.0, "chained": 1.0 + w}[targets]
    den = d_max * (w if targets == "anchored" else 1.0)
    return math.inf if den <= 0 else num / den


# ----------------------------------------------------------------------------- 2x2 maps


def _ratio(x: Any, xp: ModuleType) -> Any:
    """``(1 - exp(-x)) / x`` for x >= 0, equal to 1 at x = 0 (no division by 0)."""
    pos = x > 0
    xs = xp.where(pos, x, xp.ones_like(x))
    return xp.where(pos, -xp.expm1(-xs) / xs, xp.ones_like(x))


def _step_map(d: Any, lr: float, w: float, rule: str, xp: ModuleType) -> Mat:
    """One discrete step on ``(c, tau)``."""
    one, zero = xp.ones_like(d), xp.zeros_like(d)
    if rule == "chained":
        return (1 - lr * d, lr * one, (1 - w) * d, w * one)
    return (1 - (lr * w) * d, (lr * w) * one, zero, one)


def _flow_map(d: Any, h: float, lr: float, w: float, rule: str, xp: ModuleType) -> Mat:
    """``exp(G h)`` on ``(c, tau)`` for the gradient flow over a time interval h."""
    one, zero = xp.ones_like(d), xp.zeros_like(d)
    if rule == "chained":
        beta = (1 - w) / lr
        phi = h * _ratio((d + beta) * h, xp)
        return (1 - d * phi, phi, beta * d * phi, 1 - beta * phi)
    a = w
    b = (a * h) * _ratio((a * h) * d, xp)  # -expm1(-a d h) / d, safe at d = 0
    return (1 - d * b, b, zero, one)


def _apply(M: Mat, s: Pair) -> Pair:
    a, b, c, e = M
    return (a * s[0] + b * s[1], c * s[0] + e * s[1])


def _geometric(r: Any, record: np.ndarray, xp: ModuleType) -> list[Any]:
    """``S_k = sum_{j<k} r^j`` for each k in ``record``, by doubling (no division).

    ``(r^a, S_a)`` and ``(r^b, S_b)`` combine to ``(r^(a+b), S_a + r^a S_b)``; the
    table of ``(r^(2^j), S_(2^j))`` costs O(k log steps) and each record O(k log gap),
    marching through the records in increasing order. At r = 1 this gives S_k = k
    exactly; relative round-off grows like log(k) eps, not k eps.
    """
    table = [(r, xp.ones_like(r))]  # (r^1, S_1)
    P, S, pos = xp.ones_like(r), xp.zeros_like(r), 0
    out: list[Any] = [None] * record.shape[0]
    for j in np.argsort(record, kind="stable"):
        gap, bit = int(record[j]) - pos, 0
        while gap:
            if bit == len(table):
                Pb, Sb = table[-1]
                table.append((Pb * Pb, Sb + Pb * Sb))
            if gap & 1:
                Pb, Sb = table[bit]
                P, S = P * Pb, S + P * Sb
            gap >>= 1
            bit += 1
        pos = int(record[j])
        out[j] = S
    return out


def _filters(
    d: Any, xp: ModuleType, *, lr: float, w: float, schedule: np.ndarray | None, rule: str, continuous: bool, record: np.ndarray
) -> Pair:
    """``(g_c, g_tau)`` of shape (T, k) at the recorded steps, from the start ``(0, 1)``.

    ``w`` is the rule's weight: alpha for anchored (1 for gd), the target momentum m for
    chained (with a schedule, the constant ``w`` is unused).
    """
    T = record.shape[0]
    out: list[Pair | None] = [None] * T
    start = (xp.zeros_like(d), xp.ones_like(d))
    if schedule is None and continuous:
        for j in range(T):
            M = _flow_map(d, lr * float(record[j]), lr, w, rule, xp)
            out[j] = (M[1], M[3])  # exp(G t) applied to (0, 1)
    elif schedule is None:
        # Constant parameters reduce to a scalar geometric series per direction.
        # gd/anchored (w = alpha): c_{k+1} = r c_k + b with r = 1 - lr w d, b = lr w, tau = 1.
        # chained (w = target momentum m): q = ((1-w)/lr) c + tau = 1 is conserved, so tau = 1 - ((1-w)/lr) c
        # and c_{k+1} = (w - lr d) c_k + lr. Either way c_k = b S_k(r), S_k = sum_{j<k} r^j:
        # the unit eigenvalue is handled exactly (no drift from powering a 2x2 matrix).
        if rule == "chained":
            r, b = w - lr * d, lr
        else:
            r, b = 1 - (lr * w) * d, lr * w
        for j, S in enumerate(_geometric(r, record, xp)):
            out[j] = (b * S, 1 - (1 - w) * S) if rule == "chained" else (b * S, xp.ones_like(d))
    else:
        order = np.argsort(record, kind="stable")
        state, j = start, 0
        for t in range(int(record[order[-1]]) + 1):
            while j < T and int(record[order[j]]) == t:
                out[order[j]] = state
                j += 1
            if j == T:
                break
            a_t = float(schedule[t])
            M = _flow_map(d, lr, lr, a_t, rule, xp) if continuous else _step_map(d, lr, a_t, rule, xp)
            state = _apply(M, state)
    done = [o for o in out if o is not None]
    assert len(done) == T  # every recorded step was reached
    return xp.stack([o[0] for o in done]), xp.stack([o[1] for o in done])


# ----------------------------------------------------------------------------- public


def linearized_training(
    spectrum: Spectrum,
    y: Any,
    *,
    lr: float,
    steps: int,
    targets: str = "gd",
    alpha: float | None = None,
    target_momentum: Any = None,
    record: Any = None,
    continuous: bool = False,
    memory_budget: int | None = None,
) -> TrainingPath:
    """Linearised (NTK-regime) training path with a target schedule, in the eigenbasis.

    Gradient descent on ``1/2 ||u - target_t||^2`` in function space,
    ``u <- u - lr K (u - target_t)``, ``u(0) = 0``; per eigen-direction the state
    ``(c_i, tau_i)`` (dual coefficient, target) evolves by a 2x2 matrix (module
    docstring). gd fits direction i by the fraction ``1 - (1 - lr d_i)^k``
    (Dong et al. 2019); chained self-distillation with constant target momentum m
    converges to KRR with ridge ``(1 - m)/lr`` (derivation in the module docstring).

    Parameters
    ----------
    spectrum : Spectrum
        Eigendecomposition of the training kernel (``kernels.spectrum(K)``). Cost:
        O(k) per step with a target-momentum schedule, O(k log steps) per recorded step
        otherwise (geometric series by doubling), plus O(T n k c) to map the fits back.
    y : array of shape (n,) or (n, c)
        Labels (regression targets or one-hot), same backend as the spectrum.
    lr : float
        Step size, ``0 < lr < max_stable_lr(...)``: ``2/d_max`` (gd),
        ``2/(alpha d_max)`` (anchored), ``(1 + min m)/d_max`` (chained).
        With ``continuous=True`` it is only the time unit (``t = lr * step``) and
        any ``lr > 0`` is allowed.
    steps : int
        Number of steps (>= 1).
    targets : {"gd", "anchored", "chained"}, default="gd"
        The target rule (module docstring).
    alpha : float, default=None
        anchored only (required there): the weight on the ground truth y, in [0, 1].
    target_momentum : float or array of shape (steps,), default=None
        chained only (required there): the weight m on the previous target, in
        [0, 1], or a schedule (``m[t]`` makes target t+1). In continuous time chained
        uses the rate ``beta = (1 - m)/lr``. A weight given to a rule that does not
        use it raises.
    record : sequence of int, default=None
        Steps to record (any order, in [0, steps]); all of ``0..steps`` by default.
        With ``continuous=True`` and a constant weight, real values are allowed.
    continuous : bool, default=False
        Use the gradient-flow limit ``lr -> 0`` at times ``t = lr * record``.
    memory_budget : int, default=None
        Bytes the returned arrays may take (default 2 GiB). Every recorded step stores
        ``3k + k c + n c`` numbers; a run whose records exceed the budget raises
        ``ValueError`` before anything is computed (pass ``record=`` with the steps
        you need, e.g. a log-spaced grid: a long run is cheap, storing all of it is not).

    Returns
    -------
    TrainingPath

    Notes
    -----
    Accuracy (float64, against the explicit step-by-step iteration in 40-digit
    arithmetic, ``tests/test_accuracy_statements.py``): the fitted fractions
    ``d_i * dual_filter`` are within an absolute ``1e-13`` of the iteration for every
    rule, any ``lr`` up to ``0.95 max_stable_lr`` and ``steps <= 1000`` (measured
    <= 2e-14 for gd/anchored, <= 2e-16 for chained, whose unit eigenvalue is treated
    exactly); the doubling evaluation adds about ``eps log2(steps)`` per record, so
    the bound holds far beyond (``steps = 10**12`` costs 40 doublings). Beyond
    ``max_stable_lr`` the iteration itself diverges and so does the result.

    Examples
    --------
    >>> import numpy as np
    >>> from kernels import spectrum
    >>> X = np.random.default_rng(0).normal(size=(30, 2))
    >>> K = np.exp(-((X[:, None] - X[None]) ** 2).sum(-1))
    >>> y = X[:, 0]
    >>> path = linearized_training(spectrum(K), y, lr=0.5 / np.linalg.eigvalsh(K)[-1], steps=50)
    >>> u = np.zeros(30)
    >>> for _ in range(50):
    ...     u = u - path.lr * K @ (u - y)
    >>> bool(np.allclose(path.fits[-1], u))
    True
    """
    fn = "linearized_training"
    check_spectrum(fn, spectrum)
    check_param(fn, "targets", targets, CONSTRAINTS["targets"])
    check_param(fn, "lr", lr, CONSTRAINTS["lr"])
    check_param(fn, "steps", steps, CONSTRAINTS["steps"])
    continuous = _check_flag(fn, "continuous", continuous)
    lr, steps = float(lr), int(steps)
    weight, schedule = _rule_weight(fn, targets, alpha, target_momentum, steps)
    d, xp, d_max = nonnegative_values(fn, spectrum)
    w = 1.0 if weight is None else weight  # gd is anchored with alpha = 1; a schedule's own values rule
    a_min = w if schedule is None else float(schedule.min())
    weight_name = _WEIGHT_OF[targets]
    weights: dict[str, float] = {weight_name: a_min} if weight_name else {}
    bound = math.inf if continuous else max_stable_lr(spectrum, targets, **weights)
    if not lr < bound:
        expr = {"gd": "2/d_max", "anchored": "2/(alpha*d_max)", "chained": "(1 + target_momentum)/d_max"}[targets]
        extra = (
            " (for chained the eigenvalue target_momentum - lr*d of each step must lie in (-1, 1])"
            if targets == "chained"
            else ""
        )
        raise ValueError(
            f"{fn}: lr must be in (0, {expr}) = (0, {bound:.6g}) for targets={targets!r} "
            f"with d_max = {d_max:.6g}{extra}; got {lr!r}"
        )
    V = spectrum.vectors
    y, _ = check_labels(fn, "y", y, spectrum.n_samples, like=V, dtype=V.dtype)
    check_same_namespace(fn, y=y, spectrum=V)
    _check_size(fn, spectrum, y, steps, record, memory_budget)
    rec = _check_record(fn, record, steps, integer=(not continuous) or schedule is not None)
    y_coef = V.T @ y
    g_c, g_tau = _filters(d, xp, lr=lr, w=w, schedule=schedule, rule=targets, continuous=continuous, record=rec)
    fraction = g_c * d
    if targets == "anchored":
        g_tau = w + (1 - w) * fraction
    limit: float | None
    if targets == "chained":
        limit = (1 - w) / lr if schedule is None else None
    else:
        limit = 0.0 if w > 0 else None
    return TrainingPath(
        spectrum=spectrum,
        target_rule=targets,
        lr=lr,
        steps=steps,
        alpha=weight if targets == "anchored" else None,
        target_momentum=(schedule if schedule is not None else weight) if targets == "chained" else None,
        continuous=continuous,
        record=rec,
        times=lr * rec.astype(np.float64),
        y_coef=y_coef,
        dual_filter=g_c,
        target_filter=g_tau,
        fraction=fraction,
        coef=scale(g_c, y_coef),
        fits=spectrum.reconstruct(scale(fraction, y_coef), batched=y_coef.ndim == 1),
        limit_ridge=limit,
        lr_bound=bound,
        n_zero=spectrum.n_zero,
    )
