"""AIR: anisotropic information retrieval (Dong, Hou, Lu, Zhang 2019, arXiv:1910.01255).

Under gradient descent on the linearised model, eigen-direction i of the kernel is
fitted by the fraction ``1 - (1 - lr d_i)^k`` after k steps, so
the top directions are fitted first. Clean labels concentrate their energy
``(v_i^T y*)^2`` in the top directions, label noise ``y_noisy - y*`` spreads over the
tail: early in training the fit carries the clean information and later it memorises
the noise. This module measures the label spectra (:func:`label_spectrum`), the
time each direction is half fitted (:func:`half_fit_time`), and predicts whole
learning curves on the clean / flipped training subsets and on test points
(:func:`predicted_curves`), for gradient descent and for chained self-distillation
(:func:`distillation_vs_early_stopping`).

References
----------
Dong, Hou, Lu, Zhang (2019). Distillation ~ early stopping? Harvesting dark knowledge
utilizing anisotropic information retrieval for overparameterized neural network.
arXiv:1910.01255.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from kernels.backend import device, to_numpy
from kernels.checks import (
    Interval,
    Options,
    as_array,
    check_labels,
    check_param,
    check_same_namespace,
    check_vector,
)
from kernels.spectrum import Spectrum, check_spectrum, nonnegative_values
from theory.dynamics import TARGET_RULES, TrainingPath, linearized_training
from theory.noise import check_class_labels

__all__ = [
    "LabelSpectrum",
    "label_spectrum",
    "half_fit_time",
    "LearningCurves",
    "predicted_curves",
    "DistillationComparison",
    "distillation_vs_early_stopping",
    "first_fit_times",
]

_WHICH = ("clean", "noise", "noisy")

#: The fields of LearningCurves that need ``K_cross`` (None without it).
_EVAL_FIELDS = (
    "test_mse",
    "test_acc",
    "val_acc",
    "best_index_test",
    "best_step_test",
    "best_test_acc",
    "final_test_acc",
    "best_step_val",
    "test_acc_at_best_val",
)


# ----------------------------------------------------------------------------- label spectra


@dataclass(frozen=True, eq=False)
class LabelSpectrum:
    """Label energy per eigen-direction for the clean labels, the noise and the noisy labels.

    Attributes
    ----------
    values : array of shape (k,)
        Eigenvalues d, descending.
    energy_clean, energy_noise, energy_noisy : array of shape (k,)
        ``(v_i^T y)^2`` summed over label columns, for ``y*``, ``y_noisy - y*`` and ``y_noisy``.
    total_clean, total_noise, total_noisy : float
        ``||y||^2`` (Frobenius). For a full spectrum this equals the summed energy
        (Parseval); for a top-k spectrum the rest lies outside span(V).
    cum_share_clean, cum_share_noise, cum_share_noisy : array of shape (k,)
        Share of ``||y||^2`` in the top ``j + 1`` directions (NaN if ``||y|| = 0``).
    """

    values: Any
    energy_clean: Any
    energy_noise: Any
    energy_noisy: Any
    total_clean: float
    total_noise: float
    total_noisy: float
    cum_share_clean: Any
    cum_share_noise: Any
    cum_share_noisy: Any

    def share_at(self, ks: Any, which: str = "clean") -> np.ndarray:
        """Cumulative share of ``which`` in the top k directions, for each k in ``ks``.

        Parameters
        ----------
        ks : int or sequence of int
            Numbers of top directions, each in [0, k] (0 gives share 0).
        which : {"clean", "noise", "noisy"}, default="clean"

        Returns
        -------
        numpy.ndarray of float64, shape (len(ks),)
        """
        fn = "LabelSpectrum.share_at"
        check_param(fn, "which", which, Options(_WHICH))
        kmax = int(self.values.shape[0])
        k = check_vector(fn, "ks", ks, constraint=Interval(float, 0, kmax, "both"))
        if not np.all(k == np.round(k)):
            raise ValueError(f"{fn}: ks must be integers in [0, {kmax}]; got {ks!r}")
        cum = np.concatenate([[0.0], to_numpy(getattr(self, f"cum_share_{which}")).astype(np.float64)])
        return cum[k.astype(np.int64)]


def label_spectrum(spectrum: Spectrum, y_clean: Any, y_noisy: Any) -> LabelSpectrum:
    """Label energies ``(v_i^T y)^2`` per eigen-direction and their cumulative shares.

    For clean labels ``y*``, the noise ``y_noisy - y*`` and the noisy labels
    (one-hot columns summed). AIR (Dong et al. 2019) predicts the clean
    share in the top directions to exceed the noise share by far.

    Parameters
    ----------
    spectrum : Spectrum
        Eigendecomposition of the training kernel.
    y_clean, y_noisy : array of shape (n,) or (n, c)
        Clean and noisy labels (same shape, same backend as the spectrum).

    Accuracy: the energies and shares are those of the given eigenvectors V. Against
    a long-double evaluation with the same V, every energy is within
    ``sqrt(n) eps ||y||^2`` and every cumulative share within ``sqrt(n) eps`` (absolute;
    float64 and float32, n <= 500; measured up to 0.3 sqrt(n) eps). For a full
    spectrum the last share is 1 to the orthogonality of V (``spectrum``: ``<= 20 eps``
    per entry). Single energies of nearly equal eigenvalues inherit the eigenvectors'
    ill-conditioning; a cumulative share taken at a spectral gap does not.

    Returns
    -------
    LabelSpectrum
    """
    fn = "label_spectrum"
    check_spectrum(fn, spectrum)
    V = spectrum.vectors
    n = spectrum.n_samples
    yc, xp = check_labels(fn, "y_clean", y_clean, n, like=V, dtype=V.dtype)
    yn, _ = check_labels(fn, "y_noisy", y_noisy, n, like=V, dtype=V.dtype)
    check_same_namespace(fn, y_clean=yc, y_noisy=yn, spectrum=V)
    if tuple(yc.shape) != tuple(yn.shape):
        raise ValueError(f"{fn}: y_noisy must have the shape of y_clean {tuple(yc.shape)}; got {tuple(yn.shape)}")
    out: dict[str, Any] = {}
    for name, y in (("clean", yc), ("noise", yn - yc), ("noisy", yn)):
        coef = V.T @ y
        e = coef * coef if coef.ndim == 1 else xp.sum(coef * coef, axis=1)
        total = float(xp.sum(y * y))
        cum = xp.cumulative_sum(e) if hasattr(xp, "cumulative_sum") else xp.cumsum(e)
        share = cum / total if total > 0 else xp.full_like(cum, math.nan)
        out[f"energy_{name}"], out[f"total_{name}"], out[f"cum_share_{name}"] = e, total, share
    return LabelSpectrum(values=spectrum.values, **out)


def half_fit_time(spectrum: Spectrum, lr: float, *, continuous: bool = False) -> Any:
    """Step at which gradient descent has fitted half of each eigen-direction.

    Discrete: the real k with ``|1 - lr d|^k = 1/2``, ``k = log(1/2) / log|1 - lr d|``
    (fitted fraction ``1 - (1 - lr d)^k``, Dong et al. 2019); directions with
    ``lr d > 1`` oscillate and the formula uses the magnitude (0 at ``lr d = 1``,
    where one step fits exactly). Continuous: ``ln 2 / (lr d)`` steps. ``inf`` at d = 0.

    Accuracy: relative error at most ``2 eps max(1, kappa(lr d))`` in float64 and
    float32, against a 50-digit evaluation of the same formula at the exact product
    of the given ``lr`` and ``d``, for every ``0 < lr d < 2`` (both branches);
    ``kappa(x) = x / (|1 - x| |ln|1 - x||)`` is the formula's condition number, so the
    only loss is the rounding of ``lr d``: at most 40 eps (kappa <= 20) for
    ``lr d <= 0.9`` and ``1.1 <= lr d <= 1.9``, ``~ eps / |1 - lr d|`` near 1 and
    ``~ eps / (2 - lr d)`` near 2 (float32 at ``lr d = 2 - 1e-10`` rounds to 2 and
    gives inf). Continuous: ``<= 2 eps`` (measured 1 eps). Pinned in
    ``tests/test_accuracy_theory.py``.

    Parameters
    ----------
    spectrum : Spectrum
    lr : float
        Step size in ``(0, 2/d_max)`` (any ``lr > 0`` when ``continuous``).
    continuous : bool, default=False

    Returns
    -------
    array of shape (k,), in the spectrum's namespace
    """
    fn = "half_fit_time"
    check_spectrum(fn, spectrum)
    check_param(fn, "lr", lr, Interval(float, 0, None, "neither"))
    d, xp, d_max = nonnegative_values(fn, spectrum)
    x = float(lr) * d
    if continuous:
        rate = x
    else:
        bound = math.inf if d_max <= 0 else 2.0 / d_max
        if not lr < bound:
            raise ValueError(f"{fn}: lr must be in (0, 2/d_max) = (0, {bound:.6g}) (d_max = {d_max:.6g}); got {lr!r}")
        small = x < 1
        a = xp.abs(1 - x)  # 0 at lr d = 1: one step fits exactly (rate inf, time 0), without a log(0) warning
        big = xp.where(a > 0, -xp.log(xp.where(a > 0, a, xp.ones_like(a))), xp.full_like(a, math.inf))
        rate = xp.where(small, -xp.log1p(-xp.where(small, x, xp.zeros_like(x))), big)
    pos = rate > 0
    return xp.where(pos, math.log(2.0) / xp.where(pos, rate, xp.ones_like(rate)), xp.full_like(rate, math.inf))


# ----------------------------------------------------------------------------- learning curves


@dataclass(frozen=True, eq=False)
class LearningCurves:
    """Predicted learning curves of linearised training on noisy labels.

    Curves are numpy float64 arrays of shape (T,), one value per recorded step.
    Accuracies use the argmax over classes of the outputs.

    Attributes
    ----------
    target_rule : str
        ``"gd"``, ``"anchored"`` or ``"chained"``.
    record, times : numpy.ndarray of shape (T,)
        Recorded steps and ``lr * record``.
    train_mse : numpy.ndarray
        ``mean_i ||u_i - y_noisy_i||^2`` (summed over classes) on the training set.
    train_acc : numpy.ndarray
        Accuracy against the given (noisy) labels on all training points.
    acc_clean : numpy.ndarray
        Accuracy on the clean subset (given = true label).
    acc_flipped_given : numpy.ndarray
        Flipped subset against its given label: memorisation (NaN if none flipped).
    acc_flipped_true : numpy.ndarray
        Flipped subset against its true label: recovery (NaN if none flipped).
    test_mse, test_acc : numpy.ndarray or None
        On the test rows of ``K_cross`` (excluding ``val_index``); MSE against the
        class codes of ``y_noisy`` (one-hot rows for one-hot targets).
    val_acc : numpy.ndarray or None
        On the ``val_index`` rows against ``val_labels``.
    best_index_test, best_step_test : int or None
        First recorded step with the highest test accuracy (an oracle: it looks at
        the test set).
    best_test_acc, final_test_acc : float or None
        Test accuracy at that step and at the last recorded step (largest step).
    best_step_val : int or None
        First recorded step with the highest validation accuracy (honest early stopping).
    test_acc_at_best_val : float or None
        Test accuracy at ``best_step_val``.
    clean_mask, flipped_mask : numpy.ndarray of bool, shape (n,)
        ``labels_true == labels_given`` and its complement (a partition of the data).
    n_classes : int
    path : TrainingPath
        The underlying run (fits, dual coefficients, parameters).
    """

    target_rule: str
    record: np.ndarray
    times: np.ndarray
    train_mse: np.ndarray
    train_acc: np.ndarray
    acc_clean: np.ndarray
    acc_flipped_given: np.ndarray
    acc_flipped_true: np.ndarray
    test_mse: np.ndarray | None
    test_acc: np.ndarray | None
    val_acc: np.ndarray | None
    best_index_test: int | None
    best_step_test: int | None
    best_test_acc: float | None
    final_test_acc: float | None
    best_step_val: int | None
    test_acc_at_best_val: float | None
    clean_mask: np.ndarray
    flipped_mask: np.ndarray
    n_classes: int
    path: TrainingPath

    @property
    def final_index(self) -> int:
        """Index of the largest recorded step."""
        return int(np.argmax(self.record))


def _check_index(fn: str, name: str, v: Any, m: int) -> np.ndarray:
    arr, _ = as_array(fn, name, v)
    a = to_numpy(arr)
    if a.ndim != 1 or a.size == 0 or not np.all(a == np.round(a)) or a.min() < 0 or a.max() >= m or np.unique(a).size != a.size:
        raise ValueError(f"{fn}: {name} must be a non-empty 1-D array of distinct row indices in [0, {m}) of K_cross; got {v!r}")
    return a.astype(np.int64)


def _accuracy(pred: np.ndarray, labels: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-row accuracy of predictions (T, n) against labels (n,) on a mask."""
    if mask is not None:
        pred, labels = pred[:, mask], labels[mask]
    if labels.size == 0:
        return np.full(pred.shape[0], np.nan)
    return np.mean(pred == labels, axis=1)


def _first_best(curve: np.ndarray) -> int:
    return int(np.flatnonzero(curve == np.nanmax(curve))[0])


def _check_training_labels(
    fn: str, spectrum: Spectrum, y_noisy: Any, labels_true: Any, labels_given: Any
) -> tuple[Any, Any, int, np.ndarray, np.ndarray, np.ndarray]:
    """y_noisy as (n, C) targets in the spectrum's namespace (and on the host), C, and the checked class labels."""
    V = spectrum.vectors
    n = spectrum.n_samples
    Y, xp = check_labels(fn, "y_noisy", y_noisy, n, like=V, dtype=V.dtype)
    if Y.ndim != 2 or Y.shape[1] < 2:
        raise ValueError(f"{fn}: y_noisy must be 2-D (n, C) with C >= 2 classes (e.g. one-hot); got shape {tuple(Y.shape)}")
    C = int(Y.shape[1])
    given = check_class_labels(fn, "labels_given", labels_given, n=n, num_classes=C)
    true = check_class_labels(fn, "labels_true", labels_true, n=n, num_classes=C)
    Y_np = to_numpy(Y)
    if not np.array_equal(np.argmax(Y_np, axis=1), given):
        raise ValueError(
            f"{fn}: y_noisy must encode labels_given (row argmax == labels_given); "
            f"{int(np.sum(np.argmax(Y_np, axis=1) != given))} rows differ"
        )
    return Y, xp, C, Y_np, given, true


class _EvalRows(NamedTuple):
    """The rows of K_cross: labels of all rows, the test rows, the validation rows (or None) and their labels."""

    labels: np.ndarray
    test: np.ndarray
    val: np.ndarray | None
    val_labels: np.ndarray | None


def _check_eval_rows(fn: str, K_cross: Any, test_labels: Any, val_index: Any, val_labels: Any, C: int) -> _EvalRows | None:
    """The checked test and validation rows of K_cross and their labels (None without K_cross)."""
    if K_cross is None:
        if test_labels is not None or val_index is not None or val_labels is not None:
            raise ValueError(f"{fn}: test_labels, val_index and val_labels need K_cross (the kernel to the evaluation points)")
        return None
    if test_labels is None:
        raise ValueError(f"{fn}: test_labels must be given with K_cross (one class per row of K_cross)")
    m = int(K_cross.shape[0]) if hasattr(K_cross, "shape") else len(K_cross)
    tl = check_class_labels(fn, "test_labels", test_labels, n=m, num_classes=C)
    if val_index is None:
        return _EvalRows(tl, np.arange(m), None, None)
    val_rows = _check_index(fn, "val_index", val_index, m)
    vl = tl[val_rows] if val_labels is None else check_class_labels(fn, "val_labels", val_labels, n=val_rows.size, num_classes=C)
    test_rows = np.setdiff1d(np.arange(m), val_rows)
    if test_rows.size == 0:
        raise ValueError(f"{fn}: val_index must leave some rows of K_cross for the test curves; it holds all {m}")
    return _EvalRows(tl, test_rows, val_rows, vl)


def _train_curves(path: TrainingPath, Y: Any, xp: Any, n: int, given: np.ndarray, true: np.ndarray) -> dict[str, Any]:
    """The training fields of LearningCurves: MSE, accuracies on all / clean / flipped points and the two masks."""
    fits = path.fits
    train_mse = to_numpy(xp.sum((fits - Y) ** 2, axis=(1, 2))).astype(np.float64) / n
    pred = to_numpy(xp.argmax(fits, axis=2))
    clean = true == given
    flipped = ~clean
    return {
        "train_mse": train_mse,
        "train_acc": _accuracy(pred, given),
        "acc_clean": _accuracy(pred, given, clean),
        "acc_flipped_given": _accuracy(pred, given, flipped),
        "acc_flipped_true": _accuracy(pred, true, flipped),
        "clean_mask": clean,
        "flipped_mask": flipped,
    }


def _class_codes(Y_np: np.ndarray, given: np.ndarray, C: int) -> np.ndarray:
    """Per class, the mean target row of the training points given it (the one-hot row if none is)."""
    codes = np.eye(C)
    for j in range(C):
        if np.any(given == j):
            codes[j] = Y_np[given == j].mean(axis=0)
    return codes


def _test_curves(
    path: TrainingPath, xp: Any, out: Any, p_all: np.ndarray, codes: np.ndarray, tl: np.ndarray, test_rows: np.ndarray
) -> dict[str, Any]:
    """The test fields of LearningCurves from the outputs ``out`` (T, m, C) and their argmax ``p_all``."""
    sel = xp.asarray(test_rows, device=device(out))
    out_t = xp.take(out, sel, axis=1)
    target = xp.asarray(codes[tl[test_rows]], dtype=out.dtype, device=device(out))
    test_mse = to_numpy(xp.sum((out_t - target) ** 2, axis=(1, 2))).astype(np.float64) / test_rows.size
    test_acc = _accuracy(p_all[:, test_rows], tl[test_rows])
    last = int(np.argmax(path.record))
    best_i = _first_best(test_acc)
    return {
        "test_mse": test_mse,
        "test_acc": test_acc,
        "best_index_test": best_i,
        "best_step_test": int(path.record[best_i]),
        "best_test_acc": float(test_acc[best_i]),
        "final_test_acc": float(test_acc[last]),
    }


def _val_curves(
    path: TrainingPath, p_all: np.ndarray, test_acc: np.ndarray, val_rows: np.ndarray, vl: np.ndarray
) -> dict[str, Any]:
    """The validation fields of LearningCurves: the curve, its first best step and the test accuracy there."""
    val_acc = _accuracy(p_all[:, val_rows], vl)
    iv = _first_best(val_acc)
    return {"val_acc": val_acc, "best_step_val": int(path.record[iv]), "test_acc_at_best_val": float(test_acc[iv])}


def _eval_curves(
    path: TrainingPath,
    xp: Any,
    K_cross: Any,
    Y_np: np.ndarray,
    given: np.ndarray,
    C: int,
    rows: _EvalRows | None,
) -> dict[str, Any]:
    """The test and validation fields of LearningCurves (all None without K_cross)."""
    fields: dict[str, Any] = dict.fromkeys(_EVAL_FIELDS)
    if K_cross is None:
        return fields
    out = path.predict(K_cross)  # (T, m, C)
    p_all = to_numpy(xp.argmax(out, axis=2))
    codes = _class_codes(Y_np, given, C)
    assert rows is not None  # set with K_cross
    fields.update(_test_curves(path, xp, out, p_all, codes, rows.labels, rows.test))
    if rows.val is not None:
        assert rows.val_labels is not None  # set with val_index
        fields.update(_val_curves(path, p_all, fields["test_acc"], rows.val, rows.val_labels))
    return fields


def predicted_curves(
    spectrum: Spectrum,
    y_noisy: Any,
    *,
    labels_true: Any,
    labels_given: Any,
    lr: float,
    steps: int,
    record: Any = None,
    K_cross: Any = None,
    test_labels: Any = None,
    val_index: Any = None,
    val_labels: Any = None,
    targets: str = "gd",
    alpha: float | None = None,
    target_momentum: Any = None,
    continuous: bool = False,
) -> LearningCurves:
    """Predicted train/test learning curves of linearised training on noisy labels.

    Runs :func:`theory.dynamics.linearized_training` on ``y_noisy`` and scores the
    outputs at the recorded steps: training MSE and accuracy against the given
    labels, accuracy on the clean subset, on the flipped subset against the given
    label (memorisation) and the true label (recovery), and test MSE / accuracy
    through ``K_cross``. AIR (Dong et al. 2019) predicts memorisation to rise late,
    after the clean directions are fitted, so the test accuracy peaks before the end.

    Parameters
    ----------
    spectrum : Spectrum
        Eigendecomposition of the training kernel.
    y_noisy : array of shape (n, C)
        Training targets for the given labels (one-hot, or any encoding whose
        row-argmax is ``labels_given``).
    labels_true, labels_given : array of int, shape (n,)
        True and given (noisy) classes in [0, C).
    lr, steps, record, targets, alpha, target_momentum, continuous
        As in :func:`theory.dynamics.linearized_training` (``targets``: the rule, gd /
        anchored / chained; ``alpha`` weighs the ground truth for anchored,
        ``target_momentum`` the previous target for chained).
    K_cross : array of shape (m, n), default=None
        Kernel between evaluation points and the training points.
    test_labels : array of int, shape (m,), default=None
        Their classes (required with ``K_cross``).
    val_index : array of int, default=None
        Rows of ``K_cross`` held out for choosing the stopping step; the test curves
        then use the other rows only.
    val_labels : array of int, default=None
        Labels of the ``val_index`` rows (e.g. noisy ones); default
        ``test_labels[val_index]``.

    Accuracy: ``train_mse`` and ``test_mse`` agree with an explicit long-double run of
    ``u <- u - lr K (u - target_t)`` (and ``K_cross`` times its dual coefficients) to a
    relative ``500 eps`` (1.1e-13) for gd, anchored and chained, ``lr d_max <= 1.9``
    within the stable range and up to 300 steps (measured <= 85 eps, n = 40; the error
    grows with ``lr d_max`` and the number of steps, as the rounding of
    ``(1 - lr d)^k`` does). The accuracy curves are exact wherever the argmax of the
    outputs is decided by more than that. ``distillation_vs_early_stopping`` returns
    two such runs. Pinned in ``tests/test_accuracy_theory.py``.

    Returns
    -------
    LearningCurves
    """
    fn = "predicted_curves"
    check_spectrum(fn, spectrum)
    check_param(fn, "targets", targets, Options(TARGET_RULES))
    Y, xp, C, Y_np, given, true = _check_training_labels(fn, spectrum, y_noisy, labels_true, labels_given)
    rows = _check_eval_rows(fn, K_cross, test_labels, val_index, val_labels, C)
    path = linearized_training(
        spectrum,
        Y,
        lr=lr,
        steps=steps,
        targets=targets,
        alpha=alpha,
        target_momentum=target_momentum,
        record=record,
        continuous=continuous,
    )
    return LearningCurves(
        target_rule=targets,
        record=path.record,
        times=path.times,
        **_train_curves(path, Y, xp, spectrum.n_samples, given, true),
        **_eval_curves(path, xp, K_cross, Y_np, given, C, rows),
        n_classes=C,
        path=path,
    )


# ----------------------------------------------------------------------------- distillation vs early stopping


@dataclass(frozen=True, eq=False)
class DistillationComparison:
    """Gradient descent (early stopping) against chained self-distillation on the same data.

    Attributes
    ----------
    gd, chained : LearningCurves
    target_momentum : float
        The chained run's weight m on the previous target.
    ridge : float
        ``(1 - m)/lr``: chained converges to KRR with this ridge.
    summary : dict of str to float
        ``{gd,chained}_{final_train_acc, final_acc_clean, final_acc_flipped_given,
        final_acc_flipped_true}``, and with test points ``{gd,chained}_{best_step,
        best_test_acc, final_test_acc}`` and, with ``val_index``,
        ``{gd,chained}_{val_step, test_acc_at_val_step}``.
    """

    gd: LearningCurves
    chained: LearningCurves
    target_momentum: float
    ridge: float
    summary: dict


def distillation_vs_early_stopping(
    spectrum: Spectrum, y_noisy: Any, *, target_momentum: float, **curve_options: Any
) -> DistillationComparison:
    """Run gd and chained self-distillation (constant target momentum m) and tabulate both.

    Dong et al. (2019) argue that self-distillation reaches, at the end of training,
    what gradient descent reaches only when stopped early: chained targets converge
    to KRR with ridge ``(1 - m)/lr`` (see :mod:`theory.dynamics`) instead of
    interpolating the noisy labels.

    Parameters are those of :func:`predicted_curves` (``curve_options``: ``labels_true``,
    ``labels_given``, ``lr``, ``steps`` and the optional ones, passed on to both runs)
    but for ``targets`` and ``alpha``, which this function sets; ``target_momentum`` m
    is a float in [0, 1) (m = 1 would be plain gd).

    Accuracy: that of :func:`predicted_curves` for each run (``500 eps`` relative on the
    MSE curves); ``ridge = (1 - m)/lr`` is one rounded division.

    Returns
    -------
    DistillationComparison
    """
    fn = "distillation_vs_early_stopping"
    check_param(fn, "target_momentum", target_momentum, Interval(float, 0, 1, "left"))
    for name in ("targets", "alpha"):
        if name in curve_options:
            raise TypeError(f"{fn}: {name} is set by this function (gd against chained); got {name}={curve_options[name]!r}")
    m = float(target_momentum)
    gd = predicted_curves(spectrum, y_noisy, targets="gd", **curve_options)
    ch = predicted_curves(spectrum, y_noisy, targets="chained", target_momentum=m, **curve_options)
    summary: dict[str, float] = {"target_momentum": m, "ridge": (1 - m) / float(curve_options["lr"])}
    for name, c in (("gd", gd), ("chained", ch)):
        f = c.final_index
        for key in ("train_acc", "acc_clean", "acc_flipped_given", "acc_flipped_true"):
            summary[f"{name}_final_{key}"] = float(getattr(c, key)[f])
        if c.test_acc is not None:
            assert c.best_step_test is not None and c.best_test_acc is not None and c.final_test_acc is not None
            summary[f"{name}_best_step"] = float(c.best_step_test)
            summary[f"{name}_best_test_acc"] = float(c.best_test_acc)
            summary[f"{name}_final_test_acc"] = float(c.final_test_acc)
        if c.val_acc is not None:
            assert c.best_step_val is not None and c.test_acc_at_best_val is not None
            summary[f"{name}_val_step"] = float(c.best_step_val)
            summary[f"{name}_test_acc_at_val_step"] = float(c.test_acc_at_best_val)
    return DistillationComparison(gd=gd, chained=ch, target_momentum=m, ridge=summary["ridge"], summary=summary)


# ----------------------------------------------------------------------------- per-example fit times


_FIT_CHUNK_ELEMENTS = 1 << 22  # ~32 MiB of float64 outputs per chunk of times


def first_fit_times(
    spectrum: Spectrum, y: Any, labels: Any, times: Any, *, criterion: str = "argmax", chunk: int | None = None
) -> np.ndarray:
    """First time on a grid at which the linearised gradient flow fits each example.

    Gradient flow on the squared loss ``1/2 ||u - y||^2`` from ``u(0) = 0`` with the
    kernel ``K = V diag(d) V^T`` gives (Jacot et al. 2018; Dong et al. 2019)

        u(t) = (I - exp(-K t)) y = V diag(1 - exp(-d t)) V^T y,

    computed with ``-expm1(-d t)`` (directions with d = 0 contribute nothing). Example
    i is *fitted* at time t when its given label is the unique largest output,
    ``u_ic(t) < u_{i, labels[i]}(t)`` for every class ``c != labels[i]``; the result is
    the first grid time at which that holds, ``+inf`` if it never does on the grid.
    Exact ties are not fitted, so at ``t = 0`` (``u = 0``) no example is. With
    ``criterion="half"`` example i is fitted once half of its own target is,
    ``<u_i(t), y_i> >= ||y_i||^2 / 2`` (its half-fit time; never for a zero row ``y_i``).

    This is the per-example version of the AIR ordering of Dong, Hou, Lu and Zhang
    (2019): direction i is fitted by the fraction ``1 - exp(-d_i t)``, top directions
    first, so examples whose label is carried by the top eigen-directions (clean
    labels) are fitted early and examples whose label needs the small-eigenvalue tail
    (flipped labels: the noise lives there) are fitted late, if at all.

    Parameters
    ----------
    spectrum : Spectrum
        Eigendecomposition of the training kernel, any backend. A top-k spectrum
        fits the projection of y onto span(V) (the rest of y is dropped).
    y : array of shape (n, c), c >= 2
        Training targets, e.g. one-hot noisy labels (possibly centred).
    labels : array of int, shape (n,)
        The label each example must be fitted to, in [0, c) (e.g. the given noisy
        label: then the flipped examples' times measure memorisation).
    times : array of shape (T,)
        Strictly increasing, finite times >= 0 (gradient-flow time ``lr * step``).
    criterion : {"argmax", "half"}, default="argmax"
        Fitted when the label is the unique largest output, or when half of the target
        row is fitted (``labels`` must still be given; it is checked but unused).
    chunk : int, default=None
        Number of times evaluated together; memory is O(n c chunk). Default: as
        many as fit in about 2^22 outputs.

    Accuracy: the outputs are evaluated in float64 whatever the spectrum's dtype. The
    returned time is the exact first grid time (against a 30-digit evaluation of the
    same flow on the given V and d) for every example whose margin (own output minus
    the largest other; for ``"half"``, ``<u_i, y_i> / ||y_i||^2 - 1/2``) exceeds
    ``n eps max|y|`` at every grid time. The decisions err only at smaller margins:
    n = 30, one-hot y, grid times at the exact crossing, 11 of 30 wrong at margins below
    0.1 eps and none at margins of 1.2 eps. Pinned in ``tests/test_accuracy_theory.py``.

    Returns
    -------
    numpy.ndarray of float64, shape (n,)
        The first fitted time of each example (a value of ``times``) or ``inf``.
        Cost O(T n k c) at worst; it stops once every example is fitted.

    References
    ----------
    Dong, Hou, Lu, Zhang (2019). Distillation ~ early stopping? Harvesting dark
    knowledge utilizing anisotropic information retrieval for overparameterized
    neural network. arXiv:1910.01255.
    """
    fn = "first_fit_times"
    check_spectrum(fn, spectrum)
    d_xp, _, _ = nonnegative_values(fn, spectrum)
    d = to_numpy(d_xp).astype(np.float64)
    V = to_numpy(spectrum.vectors).astype(np.float64)
    n = spectrum.n_samples
    y_arr, _ = as_array(fn, "y", y)
    Y, _ = check_labels(fn, "y", to_numpy(y_arr).astype(np.float64), n)
    if Y.ndim != 2 or Y.shape[1] < 2:
        raise ValueError(f"{fn}: y must be 2-D (n, c) with c >= 2 classes (e.g. one-hot); got shape {tuple(Y.shape)}")
    C = int(Y.shape[1])
    lab_arr, _ = as_array(fn, "labels", labels)
    lab = to_numpy(lab_arr)
    if lab.ndim != 1 or lab.shape[0] != n:
        raise ValueError(f"{fn}: labels must have shape ({n},) (one integer class per sample); got shape {lab.shape}")
    if not np.all(np.isfinite(lab)) or not np.all(lab == np.round(lab)) or (lab.size and (lab.min() < 0 or lab.max() >= C)):
        bad = lab[~(np.isfinite(lab) & (lab == np.round(lab)) & (lab >= 0) & (lab < C))]
        raise ValueError(
            f"{fn}: labels must hold integer classes in [0, {C}) (the columns of y); got {bad.size} "
            f"other values, e.g. {float(bad[0])!r}"
        )
    lab = lab.astype(np.int64)
    t = check_vector(fn, "times", times, constraint=Interval(float, 0, math.inf, "left"))
    if np.ndim(times) != 1:
        raise ValueError(f"{fn}: times must be a 1-D grid of shape (T,); got shape {np.shape(times)}")
    if t.size > 1 and not np.all(np.diff(t) > 0):
        k = int(np.flatnonzero(np.diff(t) <= 0)[0])
        raise ValueError(f"{fn}: times must be strictly increasing; got times[{k}] = {t[k]!r} >= times[{k + 1}] = {t[k + 1]!r}")
    check_param(fn, "criterion", criterion, Options(("argmax", "half")))
    if chunk is None:
        chunk = max(1, min(t.size, _FIT_CHUNK_ELEMENTS // max(n * C, 1)))
    else:
        check_param(fn, "chunk", chunk, Interval(int, 1, None, "both"))

    coef = V.T @ Y  # (k, C)
    rows = np.arange(n)
    out = np.full(n, math.inf)
    todo = np.ones(n, dtype=bool)
    for start in range(0, t.size, chunk):
        ts = t[start : start + chunk]
        frac = -np.expm1(-np.multiply.outer(ts, d))  # (m, k): fitted fraction per direction
        m = ts.shape[0]
        scaled = (frac.T[:, :, None] * coef[:, None, :]).reshape(coef.shape[0], m * C)  # (k, m C)
        U = (V @ scaled).reshape(n, m, C).transpose(1, 0, 2)  # (m, n, C): one GEMM per chunk
        if criterion == "half":
            norm2 = np.sum(Y * Y, axis=1)
            fitted = (np.einsum("mnc,nc->mn", U, Y) >= 0.5 * norm2) & (norm2 > 0)
        else:
            own = U[:, rows, lab]  # (m, n)
            U[:, rows, lab] = -math.inf
            fitted = own > U.max(axis=2)  # (m, n): strict, so ties (u = 0 at t = 0) are not fitted
        hit = fitted.any(axis=0) & todo
        if np.any(hit):
            first = np.argmax(fitted[:, hit], axis=0)
            out[hit] = ts[first]
            todo &= ~hit
        if not np.any(todo):
            break
    return out
