"""Which images a run uses: seeded subsets, noisy-label validation splits, and their device copies.

The CIFAR readers (:mod:`deep.data`) return whole arrays; everything that picks from them
lives here, so the training loop (:mod:`deep.train`) and the per-epoch measurements
(:mod:`deep.records`) share one definition of a run's split:

- :func:`subset_indices`, :func:`split_validation`: stratified, seeded index choices
  (largest-remainder quotas per class).
- :class:`RunSplit` / :func:`make_split`: subset -> label noise (once, seeded) -> validation
  split on the noisy labels -> the fixed frequency-measure subset.
- :class:`DeviceData` / :func:`to_device_data`: the split's images (normalised once) and
  labels on the training device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from deep.augment import to_device
from deep.config import TrainConfig
from deep.data import NUM_CLASSES, CifarData
from kernels.checks import Interval, check_param
from theory.noise import check_class_labels, make_noise

__all__ = ["Split", "RunSplit", "DeviceData", "subset_indices", "split_validation", "make_split", "to_device_data"]


class Split(NamedTuple):
    """Disjoint sorted index arrays (int64) into one labelled set."""

    train: np.ndarray
    val: np.ndarray


@dataclass(frozen=True, eq=False)
class RunSplit:
    """Which images a run uses, and their labels (numpy, host).

    Attributes
    ----------
    train_idx, val_idx, test_idx : int64 arrays
        Indices into the CIFAR-10 train / train / test arrays.
    labels, true_labels : int64 arrays (n_train,)
        Given (noisy) and clean labels of the training images.
    flipped : bool array (n_train,)
        ``labels != true_labels``; the clean subset is ``~flipped``.
    val_labels, val_true_labels : int64 arrays (n_val,)
    freq_pos : int64 array
        Positions (into the training images) of the fixed frequency-measure subset.
    noise_kind : str
    noise_rate : float
    """

    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray
    labels: np.ndarray
    true_labels: np.ndarray
    flipped: np.ndarray
    val_labels: np.ndarray
    val_true_labels: np.ndarray
    freq_pos: np.ndarray
    noise_kind: str
    noise_rate: float


def subset_indices(labels: Any, n: int, *, seed: int, stratified: bool = True) -> np.ndarray:
    """A seeded random subset of ``n`` sample indices, stratified by class.

    With ``stratified=True`` each class gets ``n * count_c / N`` samples, rounded by the
    largest-remainder rule so the total is exactly ``n`` (equal shares on CIFAR-10).

    Returns
    -------
    numpy.ndarray of int64, shape (n,)
        Sorted indices into ``labels``.
    """
    fn = "subset_indices"
    y = check_class_labels(fn, "labels", labels)
    check_param(fn, "n", n, Interval(int, 1, y.shape[0]))
    check_param(fn, "seed", seed, Interval(int, 0, None))
    if not isinstance(stratified, bool):
        raise TypeError(f"{fn}: stratified must be a bool; got {stratified!r}")
    rng = np.random.default_rng(seed)
    if not stratified:
        return np.sort(rng.choice(y.shape[0], size=int(n), replace=False)).astype(np.int64)
    return _stratified_pick(y, int(n), rng)


def split_validation(labels: Any, fraction: float, *, seed: int) -> Split:
    """Carve a stratified, seeded validation split out of a (noisy) training set.

    ``round(fraction * N)`` indices go to ``val``, shared among classes by the
    largest-remainder rule; the rest are ``train``. Used for early stopping on the
    *noisy* labels, never on the test set.

    Returns
    -------
    Split
        ``(train, val)``: disjoint sorted int64 index arrays whose union is ``range(N)``.
    """
    fn = "split_validation"
    y = check_class_labels(fn, "labels", labels)
    check_param(fn, "fraction", fraction, Interval(float, 0, 1, "neither"))
    check_param(fn, "seed", seed, Interval(int, 0, None))
    n_val = int(round(float(fraction) * y.shape[0]))
    if not 1 <= n_val <= y.shape[0] - 1:
        raise ValueError(
            f"{fn}: fraction must leave at least one sample on each side; fraction={fraction!r} of {y.shape[0]} samples gives {n_val} validation samples"
        )
    val = _stratified_pick(y, n_val, np.random.default_rng(seed))
    keep = np.ones(y.shape[0], dtype=bool)
    keep[val] = False
    return Split(train=np.flatnonzero(keep).astype(np.int64), val=val)


def _allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """Largest-remainder shares of ``total`` proportional to ``counts`` (never above them)."""
    exact = counts * (total / counts.sum())
    base = np.floor(exact).astype(np.int64)
    rest = total - int(base.sum())
    order = np.argsort(-(exact - base), kind="stable")
    base[order[:rest]] += 1
    return base


def _stratified_pick(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    classes, counts = np.unique(y, return_counts=True)
    quota = _allocate(counts, n)
    picks = [rng.choice(np.flatnonzero(y == c), size=int(q), replace=False) for c, q in zip(classes, quota) if q > 0]
    return np.sort(np.concatenate(picks)).astype(np.int64)


def make_split(train_labels: np.ndarray, test_labels: np.ndarray, cfg: TrainConfig) -> RunSplit:
    """Subset, noise (once, seeded), validation split and the frequency subset.

    Order: a stratified subset of ``cfg.subset`` training images; noise on their
    labels with ``cfg.seed``; a stratified (on the noisy labels, all a user would
    have) validation split of ``cfg.val_fraction``; the first ``cfg.freq_subset``
    positions of a seeded permutation of the training images.
    """
    n_all = len(train_labels)
    sub = (
        np.arange(n_all)
        if cfg.subset is None or cfg.subset >= n_all
        else subset_indices(train_labels, cfg.subset, seed=cfg.seed, stratified=True)
    )
    n_test = len(test_labels)
    test_idx = (
        np.arange(n_test)
        if cfg.test_subset is None or cfg.test_subset >= n_test
        else subset_indices(test_labels, cfg.test_subset, seed=cfg.seed, stratified=True)
    )
    noisy = make_noise(cfg.noise, train_labels[sub], num_classes=NUM_CLASSES, seed=cfg.seed)
    if cfg.val_fraction > 0:
        tr, va = split_validation(noisy.labels, cfg.val_fraction, seed=cfg.seed)
    else:
        tr, va = np.arange(len(sub)), np.arange(0)
    if len(tr) == 0:
        raise ValueError(f"make_split: val_fraction={cfg.val_fraction} leaves no training images out of {len(sub)}")
    freq_pos = np.sort(np.random.default_rng(cfg.seed).permutation(len(tr))[: cfg.freq_subset])
    return RunSplit(
        train_idx=sub[tr].astype(np.int64),
        val_idx=sub[va].astype(np.int64),
        test_idx=test_idx.astype(np.int64),
        labels=noisy.labels[tr],
        true_labels=noisy.true_labels[tr],
        flipped=noisy.flipped[tr],
        val_labels=noisy.labels[va],
        val_true_labels=noisy.true_labels[va],
        freq_pos=freq_pos.astype(np.int64),
        noise_kind=noisy.kind,
        noise_rate=float(noisy.rate),
    )


@dataclass(frozen=True, eq=False)
class DeviceData:
    """The run's tensors, all on the training device (images normalised, (N, 3, 32, 32))."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    y_train_true: torch.Tensor
    flipped: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    y_val_true: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def to_device_data(data: CifarData, split: RunSplit, device: torch.device) -> DeviceData:
    """Move the split's images (normalised once, float32) and labels to ``device``."""

    def lab(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).to(device)

    def img(a: np.ndarray) -> torch.Tensor:
        if len(a) == 0:  # no validation split
            return torch.empty((0, a.shape[3], a.shape[1], a.shape[2]), device=device)
        return to_device(a, device, torch.float32)

    train_images = data.train_images
    return DeviceData(
        x_train=img(train_images[split.train_idx]),
        y_train=lab(split.labels),
        y_train_true=lab(split.true_labels),
        flipped=torch.from_numpy(np.ascontiguousarray(split.flipped, dtype=bool)).to(device),
        x_val=img(train_images[split.val_idx]),
        y_val=lab(split.val_labels),
        y_val_true=lab(split.val_true_labels),
        x_test=img(data.test_images[split.test_idx]),
        y_test=lab(data.test_labels[split.test_idx]),
    )
