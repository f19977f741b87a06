"""Label-noise models with exact selection counts and the mask of changed samples.

All generators share one recipe. Let ``E`` be the indices *eligible* for noise
(every sample for symmetric, uniform and pair noise; the samples of the five source
classes for the CIFAR-10 map). Exactly ``m = floor(rate * |E| + 1/2)`` of them
(``rate * |E|`` rounded half up) are *selected* uniformly **without replacement** with
``numpy.random.default_rng(seed)`` (:attr:`NoisyLabels.n_selected` records ``m``),
and each selected sample gets a new class.

Accuracy: ``m`` is exact. It is computed in rational arithmetic on ``repr(rate)``,
the shortest decimal that reads back as the same float (the literal written), so an
exact half such as ``0.29 * 50 = 14.5`` rounds up to 15 for every rate and every
``|E|`` (checked against :class:`fractions.Fraction` on all rates with 2-3 decimals and
the halves they make with ``|E| <= 400``; the float product ``rate * |E|``, used before,
missed 424 of 11,495 such halves, e.g. 14 for 0.29 * 50). For uniform noise the
number of changed labels is, given ``m``, Binomial(m, (C-1)/C): within
``4 sqrt(m (C-1)) / C`` of ``m (C-1)/C`` with probability above 0.9999.

In every case
``flipped == (labels != true_labels)`` exactly, and
:attr:`NoisyLabels.realised_rate` is the fraction of all labels that changed.

The literature uses two conventions for "symmetric" noise at rate ``r`` with ``C``
classes, and they differ in what ``r`` means:

- symmetric (:func:`symmetric_noise`, the Co-teaching code of Han et al. 2018): each
  selected label is replaced by a class drawn uniformly from the ``C - 1`` *other*
  classes, so every selected label changes and ``rate`` is the **flip rate**: exactly
  ``rate`` of the labels are wrong (up to rounding of one sample).
- uniform (:func:`uniform_noise`, DivideMix (Li, Socher, Hoi 2020), ELR (Liu et al.
  2020), Self-Adaptive Training (Huang, Zhang, Zhang 2020)): each selected label is
  *resampled* uniformly from **all** ``C`` classes, its true class included, so
  ``rate`` is the **resampling rate** and only about ``rate (C-1)/C`` of the labels
  change (36% for "40%" on CIFAR-10).

Compare papers only after converting to one convention: uniform at ``r`` is
symmetric at about ``r (C-1)/C``.

The other two generators give, like symmetric noise, every selected sample a class
that is never its own (so ``n_selected == n_flipped`` and ``rate`` is a flip rate):

- pair: ``c -> (c + 1) mod C``, the next-class generator of the lizhemin15
  self-distillation code.
- CIFAR-10 asymmetric (Patrini et al. 2017): truck -> automobile, bird -> airplane,
  deer -> horse, cat <-> dog; airplane, automobile, frog, horse and ship are never
  flipped. The rate is the flip fraction *within* the five source classes, as in the
  paper; the overall rate is ``rate / 2`` for a balanced data set.

Theory needs the mask: the AIR label spectra split ``y_noisy = y* + (y_noisy - y*)``,
and the training records score the flipped subset against both label sets.

References
----------
Patrini, Rozza, Menon, Nock, Qu (2017). Making deep neural networks robust to label
noise: a loss correction approach. CVPR, Sec. 5 (CIFAR-10 asymmetric flips).

Han, Yao, Yu, Niu, Xu, Hu, Tsang, Sugiyama (2018). Co-teaching: robust training of
deep neural networks with extremely noisy labels. NeurIPS (symmetric flips to the
``C - 1`` other classes in its released code).

Li, Socher, Hoi (2020). DivideMix: learning with noisy labels as semi-supervised
learning. ICLR (symmetric noise resampled from all ``C`` classes).

Liu, Niles-Weed, Razavian, Fernandez-Granda (2020). Early-learning regularization
prevents memorization of noisy labels (ELR). NeurIPS (resampled from all classes).

Huang, Zhang, Zhang (2020). Self-adaptive training: beyond empirical risk
minimization. NeurIPS (resampled from all classes).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from kernels.backend import to_numpy
from kernels.checks import Interval, as_array, check_param

__all__ = [
    "NoisyLabels",
    "check_class_labels",
    "CIFAR10_CLASSES",
    "CIFAR10_ASYMMETRIC_MAP",
    "NOISE_KINDS",
    "symmetric_noise",
    "uniform_noise",
    "pair_noise",
    "cifar10_asymmetric_noise",
    "make_noise",
    "one_hot",
]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# source class -> destination class (indices in CIFAR10_CLASSES order).
CIFAR10_ASYMMETRIC_MAP: dict[int, int] = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}

# canonical kind -> accepted spellings in make_noise specs.
NOISE_KINDS: dict[str, tuple[str, ...]] = {
    "symmetric": ("symmetric", "sym"),
    "uniform": ("uniform",),
    "pair": ("pair",),
    "cifar10-asym": ("asym", "cifar10-asym"),
}

CONSTRAINTS = {
    "rate": Interval(float, 0, 1, "left"),
    # resampling every label (rate 1) is meaningful for uniform noise: about 1/C stay correct.
    "uniform_rate": Interval(float, 0, 1, "both"),
    "seed": Interval(int, 0, None, "left"),
    "num_classes": Interval(int, 1, None, "left"),
}


@dataclass(frozen=True, eq=False)
class NoisyLabels:
    """Noisy integer labels together with the clean ones and the flip mask.

    ``flipped`` marks the labels that actually changed. For symmetric, pair and
    CIFAR-10 noise every selected sample changes (``n_selected == n_flipped``); for
    uniform noise a selected sample keeps its class with probability ``1/C``, so
    ``n_flipped`` is about ``n_selected (C-1)/C``.

    Attributes
    ----------
    labels : numpy.ndarray of int64, shape (n,)
        The noisy labels.
    flipped : numpy.ndarray of bool, shape (n,)
        ``labels != true_labels``: the samples whose label was changed.
    true_labels : numpy.ndarray of int64, shape (n,)
        The clean labels (a copy of the input).
    kind : str
        ``"none"``, ``"symmetric"``, ``"uniform"``, ``"pair"`` or ``"cifar10-asym"``.
    rate : float
        The requested fraction of the eligible samples that is selected: the flip
        rate for symmetric, pair and CIFAR-10 noise, the resampling rate for uniform.
    seed : int
        Seed of :func:`numpy.random.default_rng` that drew the flips.
    num_classes : int
        Number of classes C.
    n_eligible : int
        How many samples could be flipped (n, or the five source classes' count).
    n_selected : int
        How many samples were selected for noise: ``rate * n_eligible`` rounded half up
        (0 for ``"none"``). Equals ``n_flipped`` except for uniform noise, where it
        counts the resampled samples, including those that drew their own class.
    """

    labels: np.ndarray
    flipped: np.ndarray
    true_labels: np.ndarray
    kind: str
    rate: float
    seed: int
    num_classes: int
    n_eligible: int = 0
    n_selected: int = 0

    @property
    def n_flipped(self) -> int:
        """Number of changed labels."""
        return int(self.flipped.sum())

    @property
    def empirical_rate(self) -> float:
        """Fraction of all n samples whose label changed."""
        return float(self.flipped.mean()) if self.flipped.size else 0.0

    @property
    def realised_rate(self) -> float:
        """Realised error rate: fraction of all n labels that differ from the true ones.

        ``rate`` (up to rounding, over the eligible samples) for symmetric and pair noise,
        about ``rate (C-1)/C`` for uniform noise.
        """
        return float(np.mean(self.labels != self.true_labels)) if self.labels.size else 0.0

    @property
    def eligible_rate(self) -> float:
        """Fraction of the eligible samples whose label changed.

        ``== rate`` up to rounding, except for uniform noise (about ``rate (C-1)/C``).
        """
        return self.n_flipped / self.n_eligible if self.n_eligible else 0.0


# ----------------------------------------------------------------------------- checks


def check_class_labels(
    fn: str, name: str, labels: Any, *, n: int | None = None, num_classes: int | None = None, nonempty: bool = True
) -> np.ndarray:
    """Integer class labels as a 1-D int64 numpy array: the one check of class labels in airkit.

    Goes through :func:`kernels.checks.as_array` (any backend); values must be finite
    whole numbers in ``[0, num_classes)`` (``[0, inf)`` when None), the shape ``(n,)``
    when ``n`` is given, and at least one label unless ``nonempty=False``. Each failure is a one-line
    ``ValueError`` naming ``fn`` and ``name``.
    """
    arr, _ = as_array(fn, name, labels)
    host = np.array(to_numpy(arr), dtype=np.float64, copy=True)
    if host.ndim != 1 or (nonempty and host.shape[0] < 1) or (n is not None and host.shape[0] != n):
        want = f"({n},)" if n is not None else ("(n,) with n >= 1" if nonempty else "(n,)")
        raise ValueError(
            f"{fn}: {name} must be a 1-D array of class indices of shape {want}; got shape {host.shape}; "
            f"pass argmax of one-hot labels"
        )
    if not np.all(np.isfinite(host)):
        raise ValueError(f"{fn}: {name} contains NaN or inf; labels must be integer class indices")
    if np.any(host != np.round(host)):
        raise ValueError(
            f"{fn}: {name} must be integer class indices; got non-integer values such as {host[host != np.round(host)][0]!r}"
        )
    top = "inf" if num_classes is None else str(num_classes)
    if host.size and (host.min() < 0 or (num_classes is not None and host.max() >= num_classes)):
        bad = host.min() if host.min() < 0 else host.max()
        raise ValueError(f"{fn}: {name} must be integer classes in [0, {top}); got {int(bad)}")
    return host.astype(np.int64)


def _check_int_labels(fn: str, labels: Any, num_classes: int | None) -> tuple[np.ndarray, int]:
    """:func:`check_class_labels` and C (inferred as ``max + 1`` when None)."""
    if num_classes is not None:
        check_param(fn, "num_classes", num_classes, CONSTRAINTS["num_classes"])
    out = check_class_labels(fn, "labels", labels, num_classes=num_classes, nonempty=False)
    return out, int(num_classes) if num_classes is not None else (int(out.max()) + 1 if out.size else 1)


def _flip_count(rate: float, n_eligible: int) -> int:
    """``rate * n_eligible`` rounded half up (deterministic, unlike banker's rounding): the selection count.

    Exact rational arithmetic on the decimal ``repr(rate)`` (the shortest decimal that
    reads back as the same float, i.e. the literal the user wrote): the float product
    ``rate * n`` misses 3.7% of the exact halves (0.29 * 50 = 14.499999999999998 gave
    14, not 15).
    """
    exact = Fraction(repr(float(rate))) * n_eligible + Fraction(1, 2)
    return min(n_eligible, math.floor(exact))


def _draw(rng: np.random.Generator, eligible: np.ndarray, rate: float) -> np.ndarray:
    """Indices of exactly ``_flip_count(rate, |eligible|)`` eligible samples, uniform without replacement."""
    m = _flip_count(rate, eligible.size)
    if m == 0:
        return np.empty(0, dtype=np.int64)
    return np.sort(rng.choice(eligible, size=m, replace=False))


def _result(
    true: np.ndarray, noisy: np.ndarray, kind: str, rate: float, seed: int, num_classes: int, n_eligible: int, n_selected: int
) -> NoisyLabels:
    return NoisyLabels(
        labels=noisy,
        flipped=noisy != true,
        true_labels=true,
        kind=kind,
        rate=float(rate),
        seed=int(seed),
        num_classes=num_classes,
        n_eligible=int(n_eligible),
        n_selected=int(n_selected),
    )


def _check_rate_seed(fn: str, rate: float, seed: int, rate_param: str = "rate") -> None:
    check_param(fn, "rate", rate, CONSTRAINTS[rate_param])
    check_param(fn, "seed", seed, CONSTRAINTS["seed"])


# ----------------------------------------------------------------------------- generators


def _relabel_some(
    fn: str,
    kind: str,
    labels: Any,
    rate: float,
    num_classes: int | None,
    seed: int,
    new_class: Callable[[np.random.Generator, np.ndarray, int], np.ndarray],
    *,
    rate_param: str = "rate",
    verb: str = "flip",
) -> NoisyLabels:
    """The generators over all n samples: check, draw ``round(rate * n)`` of them, relabel those.

    ``new_class(rng, old, C)`` gives the new classes of the drawn samples (class ``old``),
    drawing from the generator after the selection; ``verb`` names the change in the
    error for C < 2.
    """
    _check_rate_seed(fn, rate, seed, rate_param)
    true, C = _check_int_labels(fn, labels, num_classes)
    if rate > 0 and C < 2:
        raise ValueError(f"{fn}: num_classes must be >= 2 to {verb} labels; got {C}")
    rng = np.random.default_rng(seed)
    idx = _draw(rng, np.arange(true.size), rate)
    noisy = true.copy()
    if idx.size:
        noisy[idx] = new_class(rng, true[idx], C)
    return _result(true, noisy, kind, rate, seed, C, true.size, idx.size)


def _other_class(rng: np.random.Generator, old: np.ndarray, C: int) -> np.ndarray:
    """Uniform over the C - 1 classes other than ``old``: ``j + (j >= old)``, ``j ~ Uniform{0, ..., C-2}``."""
    j = rng.integers(0, C - 1, size=old.size)
    return j + (j >= old)


def _any_class(rng: np.random.Generator, old: np.ndarray, C: int) -> np.ndarray:
    """Uniform over all C classes, ``old`` included."""
    return rng.integers(0, C, size=old.size)


def _next_class(rng: np.random.Generator, old: np.ndarray, C: int) -> np.ndarray:
    """``(old + 1) mod C``; draws nothing."""
    return (old + 1) % C


def symmetric_noise(labels: Any, rate: float, *, num_classes: int | None = None, seed: int = 0) -> NoisyLabels:
    """Flip exactly ``round(rate * n)`` labels, each to a uniformly chosen *other* class.

    The Co-teaching convention (Han et al. 2018, released code): ``rate`` is the
    **flip rate**, the fraction of labels that end up wrong. DivideMix, ELR and
    Self-Adaptive Training instead resample from all C classes; see
    :func:`uniform_noise`, whose ``rate`` r corresponds to a flip rate of about
    ``r (C-1)/C`` here.

    Parameters
    ----------
    labels : array-like of int, shape (n,)
        Clean class indices in ``[0, num_classes)``.
    rate : float in [0, 1)
        Flip rate: fraction of labels changed (exact up to rounding to a whole sample,
        ``rate * n`` rounded half up).
    num_classes : int, default=None
        C; inferred as ``max(labels) + 1`` when None. Must be >= 2 when ``rate > 0``.
    seed : int, default=0
        Seed for :func:`numpy.random.default_rng`.

    Returns
    -------
    NoisyLabels
        With ``kind="symmetric"``; ``flipped`` marks the changed samples and
        ``n_selected == n_flipped``.

    Notes
    -----
    The new class of a flipped sample with class c is ``j + (j >= c)`` for
    ``j ~ Uniform{0, ..., C-2}``: uniform over the ``C - 1`` classes other than c.

    Examples
    --------
    >>> out = symmetric_noise([0, 1, 2, 3] * 25, 0.4, seed=1)
    >>> out.n_flipped, bool((out.labels[out.flipped] != out.true_labels[out.flipped]).all())
    (40, True)
    """
    return _relabel_some("symmetric_noise", "symmetric", labels, rate, num_classes, seed, _other_class)


def uniform_noise(labels: Any, rate: float, *, num_classes: int | None = None, seed: int = 0) -> NoisyLabels:
    """Resample exactly ``round(rate * n)`` labels uniformly from all C classes, the true one included.

    The convention of DivideMix (Li, Socher, Hoi 2020), ELR (Liu et al. 2020) and
    Self-Adaptive Training (Huang, Zhang, Zhang 2020): ``rate`` is the **resampling
    rate**, not the flip rate. A resampled label keeps its class with probability
    ``1/C``, so the realised error rate is about ``rate (C-1)/C`` (0.36 for "40%" with
    C = 10). The Co-teaching convention (Han et al. 2018), where ``rate`` is the flip
    rate and the new class is one of the ``C - 1`` others, is :func:`symmetric_noise`.

    The samples are selected exactly as :func:`symmetric_noise` selects them (the
    same ``rate * n`` rounded half up, drawn without replacement by the same
    generator), so with equal seeds the labels changed here are a subset of those
    flipped there.

    Parameters
    ----------
    labels : array-like of int, shape (n,)
        Clean class indices in ``[0, num_classes)``.
    rate : float in [0, 1]
        Resampling rate: fraction of labels selected and redrawn (exact up to rounding
        to a whole sample, ``rate * n`` rounded half up). ``rate = 1`` redraws every label.
    num_classes : int, default=None
        C; inferred as ``max(labels) + 1`` when None. Must be >= 2 when ``rate > 0``.
    seed : int, default=0
        Seed for :func:`numpy.random.default_rng`.

    Returns
    -------
    NoisyLabels
        With ``kind="uniform"``; ``n_selected`` counts the resampled samples,
        ``flipped`` marks those whose label actually changed (``labels != true_labels``)
        and ``realised_rate`` is their fraction.

    Examples
    --------
    >>> out = uniform_noise([0, 1, 2, 3] * 25, 0.4, seed=1)
    >>> out.n_selected, out.n_flipped <= out.n_selected
    (40, True)
    """
    return _relabel_some(
        "uniform_noise", "uniform", labels, rate, num_classes, seed, _any_class, rate_param="uniform_rate", verb="resample"
    )


def pair_noise(labels: Any, rate: float, *, num_classes: int | None = None, seed: int = 0) -> NoisyLabels:
    """Flip exactly ``round(rate * n)`` labels from class c to ``(c + 1) mod C``.

    The next-class ("pair") generator of the lizhemin15/self-distillation code, with
    an exact flip count instead of independent coin flips.

    Parameters
    ----------
    labels : array-like of int, shape (n,)
        Clean class indices in ``[0, num_classes)``.
    rate : float in [0, 1)
        Fraction of labels changed.
    num_classes : int, default=None
        C; inferred as ``max(labels) + 1`` when None. Must be >= 2 when ``rate > 0``.
    seed : int, default=0
        Seed for :func:`numpy.random.default_rng`.

    Returns
    -------
    NoisyLabels
        With ``kind="pair"``.

    Examples
    --------
    >>> out = pair_noise([0, 1, 2] * 10, 0.5, num_classes=3, seed=0)
    >>> bool(((out.true_labels + 1) % 3 == out.labels)[out.flipped].all()), out.n_flipped
    (True, 15)
    """
    return _relabel_some("pair_noise", "pair", labels, rate, num_classes, seed, _next_class)


def cifar10_asymmetric_noise(labels: Any, rate: float, *, num_classes: int | None = None, seed: int = 0) -> NoisyLabels:
    """CIFAR-10 class-dependent flips (Patrini et al. 2017).

    truck -> automobile, bird -> airplane, deer -> horse, cat <-> dog (class order
    airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck; see
    :data:`CIFAR10_ASYMMETRIC_MAP`). Exactly ``round(rate * n_src)`` of the ``n_src``
    samples of those five source classes are flipped, chosen uniformly without
    replacement; the other five classes are never changed.

    Parameters
    ----------
    labels : array-like of int, shape (n,)
        Clean CIFAR-10 class indices in ``[0, 10)``.
    rate : float in [0, 1)
        Flip fraction among the source-class samples.
    num_classes : int, default=None
        Must be 10 (or None).
    seed : int, default=0
        Seed for :func:`numpy.random.default_rng`.

    Returns
    -------
    NoisyLabels
        With ``kind="cifar10-asym"`` and ``n_eligible = n_src``.

    References
    ----------
    Patrini et al. (2017), CVPR, Sec. 5.
    """
    fn = "cifar10_asymmetric_noise"
    _check_rate_seed(fn, rate, seed)
    if num_classes is not None and num_classes != 10:
        raise ValueError(f"{fn}: num_classes must be 10 (the CIFAR-10 map); got {num_classes!r}")
    true, C = _check_int_labels(fn, labels, 10)
    src = np.fromiter(CIFAR10_ASYMMETRIC_MAP.keys(), dtype=np.int64)
    dst_of = np.arange(10, dtype=np.int64)
    for s, d in CIFAR10_ASYMMETRIC_MAP.items():
        dst_of[s] = d
    eligible = np.flatnonzero(np.isin(true, src))
    rng = np.random.default_rng(seed)
    idx = _draw(rng, eligible, rate)
    noisy = true.copy()
    noisy[idx] = dst_of[true[idx]]
    return _result(true, noisy, "cifar10-asym", rate, seed, C, eligible.size, idx.size)


_GENERATORS = {
    "symmetric": symmetric_noise,
    "uniform": uniform_noise,
    "pair": pair_noise,
    "cifar10-asym": cifar10_asymmetric_noise,
}

# the allowed rate of each kind in a make_noise spec.
_SPEC_RATES = {
    "symmetric": CONSTRAINTS["rate"],
    "uniform": CONSTRAINTS["uniform_rate"],
    "pair": CONSTRAINTS["rate"],
    "cifar10-asym": CONSTRAINTS["rate"],
}

_SPEC_FORMS = (
    "'none', 'symmetric:<rate>' (or 'sym:<rate>'), 'pair:<rate>', 'asym:<rate>' (or 'cifar10-asym:<rate>'), "
    "with rate a float in [0, 1), or 'uniform:<rate>' with rate a float in [0, 1]"
)


def make_noise(spec: str, labels: Any, *, num_classes: int = 10, seed: int = 0) -> NoisyLabels:
    """Apply a label-noise model given as a string spec.

    Parameters
    ----------
    spec : str
        ``"none"``, ``"symmetric:0.4"`` (alias ``"sym:0.4"``), ``"uniform:0.4"``,
        ``"pair:0.4"`` or ``"asym:0.4"`` (alias ``"cifar10-asym:0.4"``). Case and
        surrounding spaces are ignored. ``symmetric`` flips to one of the C - 1 other
        classes (rate = flip rate, Co-teaching); ``uniform`` resamples from all C
        classes (rate = resampling rate, DivideMix / ELR / SAT), so ``"uniform:0.4"``
        changes about 36% of CIFAR-10 labels. Rates are in [0, 1), or [0, 1] for uniform.
    labels : array-like of int, shape (n,)
        Clean class indices.
    num_classes : int, default=10
        C (must be 10 for the CIFAR-10 map).
    seed : int, default=0
        Seed for :func:`numpy.random.default_rng`.

    Returns
    -------
    NoisyLabels
        ``kind="none"`` (no flips) or the result of :func:`symmetric_noise`,
        :func:`uniform_noise`, :func:`pair_noise` or :func:`cifar10_asymmetric_noise`.

    Examples
    --------
    >>> make_noise("pair:0.2", [0, 1] * 50, num_classes=2).n_flipped
    20
    """
    fn = "make_noise"
    if not isinstance(spec, str):
        raise TypeError(f"{fn}: noise spec must be a string, one of {_SPEC_FORMS}; got {spec!r}")
    text = spec.strip().lower()
    if text in ("none", "clean"):
        check_param(fn, "seed", seed, CONSTRAINTS["seed"])
        true, C = _check_int_labels(fn, labels, num_classes)
        return _result(true, true.copy(), "none", 0.0, seed, C, true.size, 0)
    name, sep, rate_text = text.partition(":")
    kind = next((k for k, aliases in NOISE_KINDS.items() if name.strip() in aliases), None)
    if kind is None or not sep:
        raise ValueError(f"{fn}: noise spec must be one of {_SPEC_FORMS}; got {spec!r}")
    allowed = _SPEC_RATES[kind]
    try:
        rate = float(rate_text)
    except ValueError:
        raise ValueError(f"{fn}: noise spec rate must be {allowed.describe()} as in {_SPEC_FORMS}; got {spec!r}") from None
    if not allowed.contains(rate):
        raise ValueError(f"{fn}: noise spec rate must be {allowed.describe()}; got {rate_text.strip()!r} in {spec!r}")
    return _GENERATORS[kind](labels, rate, num_classes=num_classes, seed=seed)


def one_hot(labels: Any, num_classes: int) -> np.ndarray:
    """One-hot encoding ``Y[i, labels[i]] = 1`` as a float64 numpy array of shape (n, C).

    Examples
    --------
    >>> one_hot([2, 0], 3)
    array([[0., 0., 1.],
           [1., 0., 0.]])
    """
    fn = "one_hot"
    check_param(fn, "num_classes", num_classes, CONSTRAINTS["num_classes"])
    idx, C = _check_int_labels(fn, labels, num_classes)
    out = np.zeros((idx.size, C), dtype=np.float64)
    out[np.arange(idx.size), idx] = 1.0
    return out
