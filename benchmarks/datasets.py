"""Data the benchmark runs use: scikit-learn's bundled digits, or a CIFAR-10 subset.

Both come back as a :class:`NoisyClassification` split into a noisy training set, a
noisy validation set (for honest early stopping) and a clean test set, with features
standardised on the training set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.registry import BenchmarkError

__all__ = ["NoisyClassification", "noisy_digits", "noisy_cifar_subset", "load_noisy", "check_noise_spec"]


@dataclass(frozen=True)
class NoisyClassification:
    name: str
    X_train: np.ndarray  # (n, d) standardised features
    labels_true: np.ndarray  # (n,)
    labels_given: np.ndarray  # (n,) after label noise
    flipped: np.ndarray  # (n,) bool
    X_val: np.ndarray  # (n_val, d)
    val_labels_given: np.ndarray  # noisy, like the training labels
    X_test: np.ndarray  # (m, d)
    test_labels: np.ndarray  # clean
    n_classes: int
    noise: str
    images_train: np.ndarray | None = None  # (n, 32, 32, 3) uint8 for CIFAR, else None
    images_test: np.ndarray | None = None


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mu = train.mean(axis=0)
    sd = train.std(axis=0)
    sd[sd == 0] = 1.0
    return [(a - mu) / sd for a in (train, *others)]


def _split(labels: np.ndarray, sizes: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(labels.size)
    n_train, n_val, n_test = sizes
    rest, test = train_test_split(idx, test_size=n_test, stratify=labels, random_state=seed)
    train, val = train_test_split(rest, train_size=n_train, test_size=n_val, stratify=labels[rest], random_state=seed)
    return train, val, test


def noisy_digits(*, n_train: int, n_val: int, noise: str, seed: int) -> NoisyClassification:
    """scikit-learn's 8x8 digits (1797 images, 10 classes) with label noise on train and val."""
    from sklearn.datasets import load_digits

    from theory.noise import make_noise

    X, y = load_digits(return_X_y=True)
    n_test = y.size - n_train - n_val
    if n_test < 10:
        raise BenchmarkError(f"--n {n_train}: digits has {y.size} images; choose n <= {y.size - n_val - 10}")
    tr, va, te = _split(y, (n_train, n_val, n_test), seed)
    Xtr, Xva, Xte = _standardise(X[tr], X[va], X[te])
    noisy = make_noise(noise, y[tr], num_classes=10, seed=seed)
    noisy_val = make_noise(noise, y[va], num_classes=10, seed=seed + 1)
    return NoisyClassification(
        name="digits",
        X_train=Xtr,
        labels_true=y[tr],
        labels_given=noisy.labels,
        flipped=noisy.flipped,
        X_val=Xva,
        val_labels_given=noisy_val.labels,
        X_test=Xte,
        test_labels=y[te],
        n_classes=10,
        noise=noise,
    )


def noisy_cifar_subset(
    path: Path, *, n_train: int, n_val: int, n_test: int, noise: str, seed: int, progress: bool = True
) -> NoisyClassification:
    """A stratified CIFAR-10 subset (flattened pixels, standardised) with label noise."""
    from deep.data import CifarFormatError, load_cifar10
    from deep.splits import subset_indices
    from theory.noise import make_noise

    try:
        data = load_cifar10(path, progress=progress)
    except CifarFormatError as exc:
        raise BenchmarkError(str(exc)) from exc
    pool = subset_indices(data.train_labels, n_train + n_val, seed=seed)
    rng = np.random.default_rng(seed)
    pool = rng.permutation(pool)
    tr, va = np.sort(pool[:n_train]), np.sort(pool[n_train:])
    te = subset_indices(data.test_labels, n_test, seed=seed)
    flat = lambda a: a.reshape(a.shape[0], -1).astype(np.float64) / 255.0  # noqa: E731
    Xtr, Xva, Xte = _standardise(flat(data.train_images[tr]), flat(data.train_images[va]), flat(data.test_images[te]))
    ytr = data.train_labels[tr]
    noisy = make_noise(noise, ytr, num_classes=10, seed=seed)
    noisy_val = make_noise(noise, data.train_labels[va], num_classes=10, seed=seed + 1)
    return NoisyClassification(
        name="cifar10",
        X_train=Xtr,
        labels_true=ytr,
        labels_given=noisy.labels,
        flipped=noisy.flipped,
        X_val=Xva,
        val_labels_given=noisy_val.labels,
        X_test=Xte,
        test_labels=data.test_labels[te],
        n_classes=10,
        noise=noise,
        images_train=data.train_images[tr],
        images_test=data.test_images[te],
    )


def load_noisy(
    data: Path | None, *, n_train: int, n_val: int, n_test: int, noise: str, seed: int, progress: bool = True
) -> NoisyClassification:
    """Digits when ``data`` is None, else a CIFAR-10 subset read from ``data``."""
    if data is None:
        return noisy_digits(n_train=n_train, n_val=n_val, noise=noise, seed=seed)
    return noisy_cifar_subset(data, n_train=n_train, n_val=n_val, n_test=n_test, noise=noise, seed=seed, progress=progress)


def write_digits_as_cifar(root: Path, *, seed: int = 0, n_test: int = 400) -> Path:
    """scikit-learn's digits written as CIFAR-10 python batches (``root/cifar-10-batches-py``).

    Each 8x8 digit is upsampled 4x to 32x32 (nearest), tiled to 3 channels and scaled to
    uint8; digit k gets label k. Lets the CIFAR pipeline of ``deep/`` run on real data that
    ships with scikit-learn (no download). Written atomically; returns the batches directory.
    """
    import os
    import pickle
    import tempfile

    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    target = Path(root) / "cifar-10-batches-py"
    if (target / "test_batch").exists():
        return target
    X, y = load_digits(return_X_y=True)
    img = np.kron(X.reshape(-1, 8, 8), np.ones((4, 4)))
    img = np.clip(np.round(img * 255.0 / 16.0), 0, 255).astype(np.uint8)
    flat = np.repeat(img[:, None], 3, axis=1).reshape(len(y), -1)  # (N, 3*32*32) channel-major, as CIFAR
    tr, te = train_test_split(np.arange(len(y)), test_size=n_test, stratify=y, random_state=seed)
    Path(root).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".digits-"))
    parts = np.array_split(tr, 5)
    for i, idx in enumerate(parts, start=1):
        with open(tmp / f"data_batch_{i}", "wb") as fh:
            pickle.dump({b"data": flat[idx], b"labels": y[idx].tolist(), b"batch_label": f"digits {i}".encode()}, fh)
    with open(tmp / "test_batch", "wb") as fh:
        pickle.dump({b"data": flat[te], b"labels": y[te].tolist(), b"batch_label": b"digits test"}, fh)
    with open(tmp / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [str(k).encode() for k in range(10)]}, fh)
    os.replace(tmp, target)
    return target


def check_noise_spec(spec: str) -> str:
    """A ``--noise`` spec (``symmetric:0.4``, ``uniform:0.2``, ...), checked at once so that a bad one
    fails before any work; a one-line :class:`BenchmarkError` otherwise."""
    from theory.noise import make_noise

    try:
        make_noise(spec, list(range(10)), num_classes=10, seed=0)
    except (TypeError, ValueError) as exc:
        raise BenchmarkError(f"--noise {spec!r}: {exc}") from None
    return spec
