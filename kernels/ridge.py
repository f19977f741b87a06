"""Kernel ridge regression: one shared solver, a scikit-learn estimator and ridge paths.

The dual problem of kernel ridge regression is the linear system

    (K + lambda I) alpha = y,                                   (1)

and the fitted function is ``f(x) = k(x, X) alpha`` (Schoelkopf & Smola 2002,
eq. 4.8; Hastie, Tibshirani & Friedman 2009, eq. 5.53). Every part of airkit that
solves (1) calls :func:`solve_kernel_system`, which tries a Cholesky factorisation
and falls back to least squares with a warning *and* a record of the fallback in
the returned :class:`KernelSolve`.

In the eigenbasis ``K = V diag(d) V^T`` the solution of (1) is the spectral filter

    alpha = V diag(1 / (d + lambda)) V^T y,    K alpha = V diag(d / (d + lambda)) V^T y,   (2)

so one eigendecomposition serves every ridge: :meth:`KernelRidge.ridge_path` with
``solver="eigen"`` costs one O(n^3) decomposition plus O(n^2) per ridge. With
``solver="mixed"`` the decomposition is done in float32 (about half the time on CPUs,
where it is memory-bound) and every ridge's solution is refined to float64 accuracy by
preconditioned conjugate gradients (:mod:`kernels.refine`); a ridge that does not converge
is solved by Cholesky instead, and recorded.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import array_api_compat
import numpy as np
import scipy.sparse
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from kernels.backend import BACKENDS, cho_solve, cholesky, device, lstsq, namespace, to_numpy
from kernels.checks import (
    Interval,
    Options,
    as_array,
    check_features,
    check_kernel_matrix,
    check_labels,
    check_param,
    check_same_namespace,
    check_vector,
)
from kernels.functions import KERNELS, kernel_params
from kernels.refine import refined_ridge_solve
from kernels.spectrum import Spectrum, check_ridge_resolution, spectrum

__all__ = ["KernelSolve", "RidgePath", "KernelRidge", "solve_kernel_system"]

_RIDGE_POSITIVE = Interval(float, 0.0, None, "neither")
_RIDGE_NONNEG = Interval(float, 0.0, None, "left")
# Estimator parameters that are forwarded to a named kernel when it accepts them.
_KERNEL_ARGS = ("gamma", "degree", "coef0", "depth", "bias")
# Keyword arguments every kernel in kernels.functions accepts besides its own.
_COMMON_KERNEL_ARGS = ("dtype", "memory_budget")


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True, eq=False)
class KernelSolve:
    """Solution of ``(K + ridge I) coef = Y`` and how it was obtained.

    Attributes
    ----------
    coef : array of shape (n,) or (n, c)
        Dual coefficients, in the namespace and on the device of K.
    solver : str
        ``"cholesky"``, or ``"lstsq-fallback"`` when the Cholesky factorisation
        failed (matrix not numerically positive definite) or gave non-finite values.
    ridge : float
        The ridge lambda that was added to the diagonal.
    message : str
        Why the fallback was taken (empty for ``"cholesky"``).
    """

    coef: Any
    solver: str
    ridge: float
    message: str = ""

    @property
    def fell_back(self) -> bool:
        """True when least squares replaced the Cholesky solve."""
        return self.solver == "lstsq-fallback"


@dataclass(frozen=True, eq=False)
class RidgePath:
    """Kernel ridge fits for several ridges on one training set.

    Attributes
    ----------
    ridges : array of shape (R,)
        The ridges, in the order given.
    dual_coef : array of shape (R, n) or (R, n, c)
        ``(K + ridge_r I)^{-1} y`` for each ridge.
    fitted : array of shape (R, n) or (R, n, c)
        Fits on the training set, ``K dual_coef[r]``.
    predictions : array of shape (R, m) or (R, m, c), or None
        Predictions ``k(X, X_fit) dual_coef[r]`` at the ``X`` passed, else None.
    solver : str
        ``"eigen"`` (one decomposition reused), ``"mixed"`` (one float32 decomposition
        reused, every ridge refined to float64), ``"cholesky"`` (one factorisation per
        ridge); ``"+cholesky"`` / ``"+lstsq-fallback"`` is appended when some ridges
        needed those.
    solvers : tuple of str
        The solver actually used for each ridge.
    n_factorisations : int
        O(n^3) factorisations this path cost: 0 with ``"eigen"`` and ``"mixed"`` (they
        reuse ``spectrum_`` from fit) plus one per ridge solved by Cholesky.
    """

    ridges: Any
    dual_coef: Any
    fitted: Any
    predictions: Any
    solver: str
    solvers: tuple
    n_factorisations: int


# ----------------------------------------------------------------------------- solver


def _solve(K: Any, Y: Any, ridge: float, fn: str) -> KernelSolve:
    """Solve (1) for checked inputs (K square symmetric, Y (n,) or (n, c), same dtype)."""
    xp = namespace(K)
    n = K.shape[0]
    A = K + ridge * xp.eye(n, dtype=K.dtype, device=device(K)) if ridge != 0.0 else K
    message = ""
    try:
        coef = cho_solve(cholesky(A), Y)
        if not bool(xp.all(xp.isfinite(coef))):
            raise np.linalg.LinAlgError("the Cholesky solve returned non-finite values")
        return KernelSolve(coef=coef, solver="cholesky", ridge=ridge)
    except np.linalg.LinAlgError as exc:
        message = str(exc)
    warnings.warn(
        f"{fn}: K + ridge I is singular or not positive definite at ridge={ridge:g} "
        f"({message}); using the least-squares solution instead (recorded as "
        f"solver='lstsq-fallback'). A larger ridge avoids this.",
        UserWarning,
        stacklevel=3,
    )
    return KernelSolve(coef=lstsq(A, Y), solver="lstsq-fallback", ridge=ridge, message=message)


def solve_kernel_system(K: Any, Y: Any, ridge: float) -> KernelSolve:
    """Solve the kernel ridge system ``(K + ridge I) coef = Y``.

    Tries a Cholesky factorisation ``K + ridge I = L L^T`` (LAPACK ``potrf`` on
    numpy, ``torch.linalg.cholesky_ex``, cuSOLVER) and two triangular solves. If
    the factorisation fails, or returns non-finite values, it warns and uses the
    least-squares solution instead; :attr:`KernelSolve.solver` records which was
    used (this mirrors scikit-learn's ``_solve_cholesky_kernel``).

    Parameters
    ----------
    K : array of shape (n, n)
        Symmetric kernel matrix (numpy, torch or CuPy); asymmetry beyond round-off
        raises.
    Y : array-like of shape (n,) or (n, c)
        Right-hand sides. Lists become arrays of K's namespace; arrays must share it.
    ridge : float
        lambda >= 0 added to the diagonal. ``ridge=0`` solves ``K coef = Y`` (the
        interpolant, minimum-norm via least squares when K is singular).

    Returns
    -------
    KernelSolve
        ``coef`` (shape of Y, K's namespace/device/dtype), ``solver``, ``ridge``.

    References
    ----------
    Schoelkopf, B. & Smola, A. (2002). *Learning with Kernels*, eq. (4.8).

    Examples
    --------
    >>> import numpy as np
    >>> from kernels.ridge import solve_kernel_system
    >>> K = np.array([[2.0, 1.0], [1.0, 2.0]])
    >>> res = solve_kernel_system(K, np.array([1.0, 0.0]), ridge=1.0)
    >>> res.solver, np.round(res.coef, 4).tolist()
    ('cholesky', [0.375, -0.125])
    """
    fn = "solve_kernel_system"
    check_param(fn, "ridge", ridge, _RIDGE_NONNEG)
    K, _ = check_kernel_matrix(fn, "K", K)
    Y, _ = check_labels(fn, "Y", Y, K.shape[0], like=K, dtype=K.dtype)
    return _solve(K, Y, float(ridge), fn)


# ----------------------------------------------------------------- small constraint types


@dataclass(frozen=True)
class _OrNone:
    """``None`` or a value satisfying ``inner`` (duck-types kernels.checks constraints)."""

    inner: Any

    def contains(self, value: Any) -> bool:
        return value is None or self.inner.contains(value)

    def describe(self) -> str:
        return f"None or {self.inner.describe()}"

    def invalid_example(self) -> Any:
        return self.inner.invalid_example()


@dataclass(frozen=True)
class _KernelChoice:
    """A kernel name from :data:`kernels.functions.KERNELS`, ``"precomputed"`` or a callable."""

    def contains(self, value: Any) -> bool:
        return callable(value) or (isinstance(value, str) and (value == "precomputed" or value in KERNELS))

    def describe(self) -> str:
        names = ", ".join(repr(k) for k in (*KERNELS, "precomputed"))
        return f"a callable f(X, Z) -> Gram or one of {names}"

    def invalid_example(self) -> Any:
        return "no-such-kernel"


@dataclass(frozen=True)
class _DictOrNone:
    def contains(self, value: Any) -> bool:
        return value is None or isinstance(value, dict)

    def describe(self) -> str:
        return "None or a dict of keyword arguments for the kernel"

    def invalid_example(self) -> Any:
        return "not-a-dict"


def _reject_sparse(fn: str, name: str, X: Any) -> None:
    """Sparse matrices are not supported (the Gram matrix is dense anyway)."""
    if scipy.sparse.issparse(X):
        raise TypeError(
            f"{fn}: {name} must be a dense array; sparse input ({type(X).__name__}) is not supported: call {name}.toarray() first"
        )


def _features(fn: str, X: Any, *, backend: str | None = None, like: Any = None) -> tuple[Any, Any]:
    """:func:`kernels.checks.check_features` with scikit-learn's wording for the cases
    its estimator checks match on (sparse, complex, 1-D, zero features)."""
    _reject_sparse(fn, "X", X)
    if array_api_compat.is_array_api_obj(X) and not isinstance(X, np.generic):
        xp = namespace(X)
        if xp.isdtype(X.dtype, "complex floating"):
            raise ValueError(f"{fn}: X must hold real numbers; Complex data not supported; got dtype {X.dtype}")
    arr, _ = as_array(fn, "X", X, backend=backend, like=like)
    if arr.ndim != 2:
        raise ValueError(
            f"{fn}: X must be 2-D (n_samples, n_features); got shape {tuple(arr.shape)}. Reshape your "
            f"data with X[:, None] for a single feature or X[None, :] for a single sample"
        )
    if arr.shape[1] < 1:
        raise ValueError(
            f"{fn}: X must have at least one feature; found array with 0 feature(s) "
            f"(shape={tuple(arr.shape)}) while a minimum of 1 is required."
        )
    return check_features(fn, "X", arr)


# ----------------------------------------------------------------------------- estimator

# scikit-learn's names for KernelRidge parameters that are spelt differently here.
_SKLEARN_NAMES = {"alpha": "ridge"}


class _HintSklearnNames(type):
    """Metaclass whose only job is a one-line hint for scikit-learn's parameter names.

    ``KernelRidge(alpha=0.1)`` would otherwise fail with Python's bare "unexpected
    keyword argument"; ``__init__`` itself must keep an explicit signature for
    scikit-learn's ``get_params``/``clone``.
    """

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        for theirs, ours in _SKLEARN_NAMES.items():
            if theirs in kwargs:
                raise TypeError(
                    f"{cls.__name__}: {theirs}= is scikit-learn's name for the regularisation strength; "
                    f"use {ours}={kwargs[theirs]!r}"
                )
        return super().__call__(*args, **kwargs)


class KernelRidge(RegressorMixin, BaseEstimator, metaclass=_HintSklearnNames):
    """Kernel ridge regression on numpy, torch or CuPy arrays.

    Solves ``(K + ridge I) alpha = y`` for the dual coefficients and predicts
    ``f(x) = k(x, X_fit) alpha``. It minimises
    ``||y - f(X)||^2 + ridge ||f||_H^2`` over the RKHS H of the kernel. The same
    problem as :class:`sklearn.kernel_ridge.KernelRidge` (``alpha`` there is
    ``ridge`` here), with airkit's kernels (NTK / NNGP closed forms included),
    array backends kept end to end, an eigen solver whose ridge path costs one
    decomposition, and a record of any least-squares fallback.

    Parameters
    ----------
    ridge : float, default=1.0
        Regularisation strength lambda > 0, added to the diagonal of K.
    kernel : str or callable, default="rbf"
        A name in :data:`kernels.functions.KERNELS` (e.g. ``"rbf"``, ``"laplacian"``,
        ``"polynomial"``, ``"linear"``, ``"ntk_relu"``), ``"precomputed"`` (then X is
        the Gram matrix at fit and the (m, n_train) cross-kernel at predict), or a
        callable ``f(X, Z, **kernel_params)`` returning the (len(X), len(Z)) Gram matrix.
    gamma : float, default=None
        Bandwidth of rbf / laplacian / exponential / polynomial kernels; None uses
        the kernel's own default.
    degree : int, default=3
        Degree of the polynomial kernel.
    coef0 : float, default=1.0
        Constant term (>= 0) of the polynomial kernel.
    depth : int, default=1
        Number of hidden layers L of the ReLU NNGP / NTK kernels.
    bias : float, default=0.0
        Bias standard deviation beta (>= 0) of the ReLU NNGP / NTK kernels, passed on
        as their ``bias`` (the variance beta^2 enters the recursion; see
        :func:`kernels.functions.ntk_relu`).
    kernel_params : dict, default=None
        Extra keyword arguments for the kernel (any for a callable; for a named
        kernel only those :func:`kernels.functions.kernel_params` lists, plus
        ``dtype`` and ``memory_budget``).
    solver : {"cholesky", "eigen", "mixed"}, default="cholesky"
        ``"cholesky"``: one Cholesky factorisation (least squares if it fails,
        recorded in ``solver_``). ``"eigen"``: one eigendecomposition of K, kept
        in ``spectrum_`` so that :meth:`ridge_path` needs no further factorisation.
        ``"mixed"``: the eigendecomposition of float32(K), kept in ``spectrum_``, used
        as the preconditioner of conjugate gradients on the float64 system
        (:func:`kernels.refine.refined_ridge_solve`), so every ridge is solved to a
        backward error of ``16 eps`` at O(n^2) each; a ridge that does not converge in
        50 iterations (ridge far below ``eps32 * d_max``) is solved by Cholesky,
        recorded in ``solver_`` / :attr:`RidgePath.solvers`. Keeps the training Gram
        matrix (n^2 floats) for :meth:`ridge_path`. The fastest ridge path on CPUs.
    backend : {"numpy", "torch", "cupy"}, default=None
        Backend for list / tuple inputs. Arrays keep their own namespace and device
        (an array of a different backend than a given ``backend`` raises).

    Notes
    -----
    *Parameters a kernel does not use.* ``gamma``, ``degree``, ``coef0``, ``depth``
    and ``bias`` are forwarded to the kernels that take them
    (:func:`kernels.functions.kernel_params`). A non-default value for a kernel that
    does not take it (``depth=3`` with ``kernel="rbf"``) is refused at ``fit``, as
    :func:`kernels.functions.gram` refuses the same keyword: a value the user gave
    is used or refused, never ignored.

    *Precision.* The fit computes in the dtype of the training Gram matrix (the
    dtype of X, or ``kernel_params={"dtype": ...}``): float64 targets of a float32
    X are cast to float32, and so are float64 queries at :meth:`predict`. Pass
    float64 X (or ``dtype="float64"``) for a double-precision fit.

    Attributes
    ----------
    X_fit_ : array of shape (n_samples, n_features)
        Training inputs (the training Gram matrix if ``kernel="precomputed"``).
    dual_coef_ : array of shape (n_samples,) or (n_samples, n_targets)
        Dual coefficients alpha.
    n_features_in_ : int
        Number of features seen in fit (n_samples for ``"precomputed"``).
    solver_ : str
        The solver actually used: ``"cholesky"``, ``"lstsq-fallback"``, ``"eigen"`` or
        ``"mixed"``.
    spectrum_ : Spectrum or None
        Eigendecomposition of the training Gram matrix (``solver="eigen"``; in float32
        for ``solver="mixed"``), else None.

    See Also
    --------
    sklearn.kernel_ridge.KernelRidge : The numpy-only reference; use it inside
        scikit-learn pipelines that need sample weights or sparse input.
    kernels.spectrum.spectrum : The eigendecomposition behind ``solver="eigen"``;
        use it directly for closed forms other than ridge regression.
    solve_kernel_system : The shared solver, for a Gram matrix you already hold.

    References
    ----------
    .. [1] Schoelkopf, B. & Smola, A. (2002). *Learning with Kernels*. MIT Press, eq. (4.8).
    .. [2] Hastie, T., Tibshirani, R. & Friedman, J. (2009). *The Elements of
       Statistical Learning*, 2nd ed., section 5.8.2, eq. (5.53).

    Examples
    --------
    >>> import numpy as np
    >>> from kernels.ridge import KernelRidge
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(40, 3))
    >>> y = np.sin(X[:, 0])
    >>> model = KernelRidge(ridge=1e-2, kernel="rbf", gamma=0.5, solver="eigen").fit(X, y)
    >>> model.predict(X[:2]).shape
    (2,)
    >>> path = model.ridge_path([1e-3, 1e-1, 10.0])
    >>> path.dual_coef.shape, path.n_factorisations
    ((3, 40), 0)
    """

    # Checked at fit time by _validate (the constraint table is data; see kernels.checks).
    CONSTRAINTS: ClassVar[dict[str, Any]] = {
        "ridge": _RIDGE_POSITIVE,
        "kernel": _KernelChoice(),
        "gamma": _OrNone(Interval(float, 0.0, None, "neither")),
        "degree": Interval(int, 1, None, "left"),
        "coef0": Interval(float, 0.0, None, "left"),
        "depth": Interval(int, 1, None, "left"),
        "bias": Interval(float, 0.0, None, "left"),
        "kernel_params": _DictOrNone(),
        "solver": Options(("cholesky", "eigen", "mixed")),
        "backend": _OrNone(Options(BACKENDS)),
    }

    def __init__(
        self,
        ridge: float = 1.0,
        *,
        kernel: str | Callable = "rbf",
        gamma: float | None = None,
        degree: int = 3,
        coef0: float = 1.0,
        depth: int = 1,
        bias: float = 0.0,
        kernel_params: dict | None = None,
        solver: str = "cholesky",
        backend: str | None = None,
    ):
        self.ridge = ridge
        self.kernel = kernel
        self.gamma = gamma
        self.degree = degree
        self.coef0 = coef0
        self.depth = depth
        self.bias = bias
        self.kernel_params = kernel_params
        self.solver = solver
        self.backend = backend

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.pairwise = self._precomputed
        tags.input_tags.sparse = False
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        tags.array_api_support = True
        return tags

    # ------------------------------------------------------------------ helpers
    def _validate(self, fn: str) -> None:
        for name, constraint in self.CONSTRAINTS.items():
            check_param(fn, name, getattr(self, name), constraint)

    @property
    def _precomputed(self) -> bool:
        return isinstance(self.kernel, str) and self.kernel == "precomputed"

    def _kernel_call(self, fn: str) -> tuple[Callable, dict]:
        """The kernel function and the keyword arguments it is called with."""
        extra = dict(self.kernel_params or {})
        if callable(self.kernel):
            return self.kernel, extra
        own = set(kernel_params(self.kernel))
        defaults = self._default_params()
        unused = [name for name in _KERNEL_ARGS if name not in own and getattr(self, name) != defaults[name]]
        if unused:
            takes = ", ".join(sorted(own)) or "no parameters"
            given = ", ".join(f"{name}={getattr(self, name)!r}" for name in unused)
            raise ValueError(
                f"{fn}: {given} is not used by kernel={self.kernel!r} (it takes {takes}); drop it or choose a kernel that uses it"
            )
        allowed = own | set(_COMMON_KERNEL_ARGS)
        unknown = sorted(set(extra) - allowed)
        if unknown:
            raise ValueError(
                f"{fn}: kernel_params must only hold parameters of kernel={self.kernel!r} "
                f"({', '.join(sorted(allowed))}); got {unknown!r}"
            )
        params = {}
        for name in _KERNEL_ARGS:
            value = getattr(self, name)
            if name in own and not (name == "gamma" and value is None):
                params[name] = value
        params.update(extra)
        return KERNELS[self.kernel], params

    def set_params(self, **params: Any) -> KernelRidge:
        """scikit-learn's ``set_params``, with the same hint as the constructor for its names."""
        for theirs, ours in _SKLEARN_NAMES.items():
            if theirs in params:
                raise ValueError(
                    f"{type(self).__name__}.set_params: {theirs}= is scikit-learn's name for the "
                    f"regularisation strength; use {ours}={params[theirs]!r}"
                )
        return super().set_params(**params)

    @classmethod
    def _default_params(cls) -> dict[str, Any]:
        """The ``__init__`` defaults, by parameter name."""
        return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items() if name != "self"}

    def _gram(self, X: Any, Z: Any, fn: str) -> Any:
        """k(X, Z) (Z=None: the symmetric training Gram matrix), checked."""
        if self._precomputed:
            return X
        f, params = self._kernel_call(fn)
        K = f(X, X if (Z is None and callable(self.kernel)) else Z, **params)
        n_cols = X.shape[0] if Z is None else Z.shape[0]
        if Z is None:
            K, _ = check_kernel_matrix(fn, "kernel(X, X)", K)
        else:
            K, _ = check_features(fn, "kernel(X, X_fit_)", K, like=X)
            check_same_namespace(fn, **{"kernel(X, X_fit_)": K, "X": X})
        if tuple(K.shape) != (X.shape[0], n_cols):
            raise ValueError(f"{fn}: kernel must return a ({X.shape[0]}, {n_cols}) Gram matrix; got shape {tuple(K.shape)}")
        return K

    # ------------------------------------------------------------------ fit / predict
    def fit(self, X: Any, y: Any) -> KernelRidge:
        """Fit kernel ridge regression.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs; the (n_samples, n_samples) Gram matrix if
            ``kernel="precomputed"``.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Targets, in X's namespace (lists are converted to it).

        Returns
        -------
        self : KernelRidge
        """
        fn = "KernelRidge.fit"
        self._validate(fn)
        X, _ = _features(fn, X, backend=self.backend)
        if self._precomputed:
            X, _ = check_kernel_matrix(fn, "X", X)
        if y is None:
            raise ValueError(f"{fn}: {type(self).__name__} requires y to be passed, but the target y is None")
        _reject_sparse(fn, "y", y)
        K = self._gram(X, None, fn)
        y, _ = check_labels(fn, "y", y, X.shape[0], like=K, dtype=K.dtype)
        ridge = float(self.ridge)
        spec, K_kept = None, None
        if self.solver in ("eigen", "mixed"):
            xp = namespace(K)
            low = self.solver == "mixed" and K.dtype == xp.float64
            try:
                spec = spectrum(xp.astype(K, xp.float32) if low else K, method="full")
            except ValueError as exc:
                raise ValueError(
                    f"{fn}: solver={self.solver!r} needs a positive semi-definite kernel matrix; "
                    f"use solver='cholesky' for this kernel ({exc})"
                ) from exc
            if self.solver == "eigen":
                check_ridge_resolution(fn, spec, ridge)
                dual, used = spec.apply(lambda d: 1.0 / (d + ridge), y), "eigen"
            else:
                K_kept = K
                duals, solvers = self._mixed_solve(K, y, xp.asarray([ridge], dtype=K.dtype, device=device(K)), spec, fn)
                dual, used = duals[0, ...], solvers[0]
        else:
            res = _solve(K, y, ridge, fn)
            dual, used = res.coef, res.solver
        self.X_fit_ = X
        self.n_features_in_ = int(X.shape[1])
        self.dual_coef_ = dual
        self.solver_ = used
        self.spectrum_ = spec
        self._y_fit = y
        self._K_fit = K_kept
        return self

    @staticmethod
    def _mixed_solve(K: Any, y: Any, ridges: Any, spec: Spectrum, fn: str) -> tuple[Any, tuple]:
        """Dual coefficients (R, n[, c]) by refined CG; Cholesky for the ridges that do not converge."""
        xp = namespace(K)
        res = refined_ridge_solve(K, y, ridges, spec, tol=16 * float(xp.finfo(K.dtype).eps))
        ok = [bool(v) for v in to_numpy(res.converged)]
        if all(ok):
            return res.coef, ("mixed",) * len(ok)
        rows, used = [], []
        for i, good in enumerate(ok):
            if good:
                rows.append(res.coef[i, ...])
                used.append("mixed")
            else:
                direct = _solve(K, y, float(ridges[i]), fn)
                rows.append(direct.coef)
                used.append(direct.solver)
        return xp.stack(rows, axis=0), tuple(used)

    def _check_predict_X(self, X: Any, fn: str) -> Any:
        check_is_fitted(self)
        X, xp = _features(fn, X, like=self.X_fit_)
        check_same_namespace(fn, X=X, X_fit_=self.X_fit_)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"{fn}: X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input (the training data's)"
            )
        if X.dtype != self.X_fit_.dtype:
            X = xp.astype(X, self.X_fit_.dtype)
        return X

    def predict(self, X: Any) -> Any:
        """Predict ``f(X) = k(X, X_fit_) dual_coef_``.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Query points; the (n_queries, n_samples) cross-kernel if
            ``kernel="precomputed"``. Same backend as the training data.

        Returns
        -------
        y_pred : array of shape (n_queries,) or (n_queries, n_targets)
            In X's namespace and on its device.
        """
        fn = "KernelRidge.predict"
        X = self._check_predict_X(X, fn)
        return self._gram(X, self.X_fit_, fn) @ self.dual_coef_

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Coefficient of determination R^2 of ``predict(X)`` against y (any backend).

        Predictions and targets are copied to numpy and passed to
        :func:`sklearn.metrics.r2_score` (uniform average over targets).
        """
        from sklearn.metrics import r2_score

        fn = "KernelRidge.score"
        pred = self.predict(X)
        y, _ = check_labels(fn, "y", y, pred.shape[0], like=pred)
        sw = None
        if sample_weight is not None:
            sw_arr, _ = check_labels(fn, "sample_weight", sample_weight, pred.shape[0], like=pred)
            if sw_arr.ndim != 1:
                raise ValueError(f"{fn}: sample_weight must have shape ({pred.shape[0]},); got shape {tuple(sw_arr.shape)}")
            sw = to_numpy(sw_arr)
        return float(r2_score(to_numpy(y), to_numpy(pred), sample_weight=sw))

    # ------------------------------------------------------------------ ridge path
    def ridge_path(self, ridges: Any, X: Any = None) -> RidgePath:
        """Refit for several ridges on the training data, reusing the factorisation.

        With ``solver="eigen"`` it reuses ``spectrum_`` (no new factorisation): for
        ``K = V diag(d) V^T``, ``dual_coef[r] = V diag(1/(d + ridge_r)) V^T y`` and
        ``fitted[r] = V diag(d/(d + ridge_r)) V^T y`` (eq. 2 of the module notes), at
        O(n^2) per ridge. With ``solver="mixed"`` it reuses the float32 ``spectrum_``
        and the kept Gram matrix: a few O(n^2) conjugate-gradient iterations per ridge,
        all ridges at once, to float64 accuracy (Cholesky for any ridge that does not
        converge). With ``solver="cholesky"`` it recomputes K once and refactorises
        ``K + ridge_r I`` for every ridge (O(n^3) each).

        Parameters
        ----------
        ridges : float or array-like of shape (R,)
            Ridges lambda > 0.
        X : array-like of shape (m, n_features), default=None
            Points at which to predict for every ridge.

        Returns
        -------
        RidgePath
        """
        fn = "KernelRidge.ridge_path"
        check_is_fitted(self)
        r = check_vector(fn, "ridges", ridges, constraint=_RIDGE_POSITIVE)
        Xq = None if X is None else self._check_predict_X(X, fn)
        xp = namespace(self.X_fit_)
        y = self._y_fit
        dtype = self.dual_coef_.dtype
        r_x = xp.asarray(r, dtype=dtype, device=device(self.X_fit_))
        if self.solver_ == "eigen":
            s = self.spectrum_
            assert s is not None  # solver_ == "eigen" keeps its spectrum
            for ri in r:
                check_ridge_resolution(fn, s, float(ri))
            inv = 1.0 / (s.values[None, :] + r_x[:, None])  # (R, k)
            dual = s.apply(inv, y)
            fitted = s.apply(s.values[None, :] * inv, y)
            solvers = ("eigen",) * len(r)
            overall, n_fact = "eigen", 0
        elif getattr(self, "_K_fit", None) is not None:  # solver="mixed"
            K = self._K_fit
            assert self.spectrum_ is not None  # solver="mixed" keeps its float32 spectrum
            dual, solvers = self._mixed_solve(K, y, r_x, self.spectrum_, fn)
            fitted = _apply_batched(K, dual, xp)
            extra = sorted(set(solvers) - {"mixed"})
            overall = "+".join(["mixed", *extra])
            n_fact = sum(s_ != "mixed" for s_ in solvers)
        else:
            K = self._gram(self.X_fit_, None, fn)
            results = [_solve(K, y, float(ri), fn) for ri in r]
            dual = xp.stack([res.coef for res in results], axis=0)
            fitted = _apply_batched(K, dual, xp)
            solvers = tuple(res.solver for res in results)
            overall = "cholesky+lstsq-fallback" if "lstsq-fallback" in solvers else "cholesky"
            n_fact = len(r)
        preds = None if Xq is None else _apply_batched(self._gram(Xq, self.X_fit_, fn), dual, xp)
        return RidgePath(
            ridges=r_x, dual_coef=dual, fitted=fitted, predictions=preds, solver=overall, solvers=solvers, n_factorisations=n_fact
        )


def _apply_batched(M: Any, coef: Any, xp: Any) -> Any:
    """``M @ coef[r]`` for every r: M (m, n), coef (R, n) or (R, n, c) -> (R, m[, c])."""
    if coef.ndim == 2:
        return coef @ M.T
    return xp.matmul(M, coef)


# inspect.signature(KernelRidge) would otherwise show the hint metaclass's (*args, **kwargs).
KernelRidge.__signature__ = inspect.signature(KernelRidge.__init__).replace(
    parameters=list(inspect.signature(KernelRidge.__init__).parameters.values())[1:]
)
