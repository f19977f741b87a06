"""Tiny fake CIFAR-10 sets in the official layouts, for tests and quick benchmarks.

:func:`fake_cifar_arrays` makes the arrays (class-dependent colour and stripe
pattern plus noise, so a network can learn the classes);
:func:`write_fake_cifar` writes them exactly as the real data are published, so the
readers in :mod:`deep.data` are exercised on the same code path as with real files.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from deep.data import CIFAR10_CLASSES, PYTHON_DIR, PYTHON_TAR, TEST_BATCH, TRAIN_BATCHES, CifarData
from kernels.checks import Interval, Options, check_params

__all__ = ["fake_cifar_arrays", "write_fake_cifar", "corrupt_file", "FAKE_FOLDER_ROOT"]

FAKE_FOLDER_ROOT = "cifar10-fake"
CONSTRAINTS: dict[str, Interval | Options] = {
    "fmt": Options(("python", "python-tar", "folder", "folder-tar")),
    "n_train_per_class": Interval(int, 1, None),
    "n_test_per_class": Interval(int, 1, None),
    "seed": Interval(int, 0, None),
    "image_ext": Options(("png", "jpg", "jpeg")),
    "keep_fraction": Interval(float, 0, 1, "left"),
}


def fake_cifar_arrays(n_train_per_class: int = 4, n_test_per_class: int = 2, *, seed: int = 0) -> CifarData:
    """Random 32x32 RGB images whose statistics depend on the class.

    Class ``c`` has a mean colour (hue ``c/10``), a sinusoidal stripe pattern of
    frequency ``1 + c mod 5`` cycles per image (horizontal for ``c < 5``, vertical
    otherwise) and i.i.d. Gaussian pixel noise (std 20), clipped to uint8.
    Samples are ordered by class, then by index.

    Returns
    -------
    CifarData
        ``format="synthetic"``, ``source="synthetic(seed=...)"``.
    """
    check_params(
        "fake_cifar_arrays", CONSTRAINTS, n_train_per_class=n_train_per_class, n_test_per_class=n_test_per_class, seed=seed
    )
    rng = np.random.default_rng(seed)
    grid = np.arange(32) / 32.0

    def make(per_class: int) -> tuple[np.ndarray, np.ndarray]:
        images = []
        for c in range(len(CIFAR10_CLASSES)):
            hue = 2 * np.pi * c / len(CIFAR10_CLASSES)
            colour = 128 + 60 * np.cos(hue + np.array([0.0, 2 * np.pi / 3, 4 * np.pi / 3]))
            wave = 40 * np.sin(2 * np.pi * (1 + c % 5) * grid)
            pattern = np.broadcast_to(wave[:, None] if c < 5 else wave[None, :], (32, 32))
            noise = rng.normal(0.0, 20.0, size=(per_class, 32, 32, 3))
            images.append(colour + pattern[None, :, :, None] + noise)
        x = np.clip(np.rint(np.concatenate(images)), 0, 255).astype(np.uint8)
        return x, np.repeat(np.arange(len(CIFAR10_CLASSES), dtype=np.int64), per_class)

    train_x, train_y = make(int(n_train_per_class))
    test_x, test_y = make(int(n_test_per_class))
    return CifarData(
        train_images=train_x,
        train_labels=train_y,
        test_images=test_x,
        test_labels=test_y,
        classes=CIFAR10_CLASSES,
        source=f"synthetic(seed={seed})",
        format="synthetic",
    )


def write_fake_cifar(
    root: str | os.PathLike,
    *,
    fmt: str = "python",
    n_train_per_class: int = 4,
    n_test_per_class: int = 2,
    seed: int = 0,
    image_ext: str = "png",
) -> Path:
    """Write :func:`fake_cifar_arrays` under ``root`` in one of the published layouts.

    Parameters
    ----------
    root : str or os.PathLike
        Directory to write into (created if missing).
    fmt : {"python", "python-tar", "folder", "folder-tar"}, default="python"
        ``python``: ``root/cifar-10-batches-py/`` with ``data_batch_1..5``, ``test_batch``
        and ``batches.meta`` (pickle protocol 2, bytes keys, ``b"data"`` (m, 3072) uint8
        channel-major, ``b"labels"`` list), the training set split over five batches.
        ``python-tar``: the same as ``root/cifar-10-python.tar.gz``.
        ``folder``: ``root/cifar10-fake/{train,test}/<class>/NNNN.<ext>``.
        ``folder-tar``: the same as ``root/cifar10-fake.tar.gz`` (members under ``cifar10-fake/``).
    n_train_per_class, n_test_per_class : int
        Images per class in each split.
    seed : int
        Seed of :func:`fake_cifar_arrays`.
    image_ext : {"png", "jpg", "jpeg"}, default="png"
        Folder formats only. PNG round-trips exactly; JPEG (quality 95) is lossy.

    Returns
    -------
    pathlib.Path
        The path to hand to :func:`deep.data.load_cifar10` (the batches directory,
        the archive, or the tree root).
    """
    check_params(
        "write_fake_cifar",
        CONSTRAINTS,
        fmt=fmt,
        n_train_per_class=n_train_per_class,
        n_test_per_class=n_test_per_class,
        seed=seed,
        image_ext=image_ext,
    )
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"write_fake_cifar: root must be a str or os.PathLike; got {type(root).__name__}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    data = fake_cifar_arrays(n_train_per_class, n_test_per_class, seed=seed)
    if fmt.startswith("python"):
        files = {f"{PYTHON_DIR}/{name}": blob for name, blob in _python_batches(data).items()}
        files[f"{PYTHON_DIR}/readme.html"] = b"<html>fake CIFAR-10 written by airkit</html>\n"
        target = PYTHON_DIR if fmt == "python" else PYTHON_TAR
    else:
        files = _folder_files(data, image_ext)
        target = FAKE_FOLDER_ROOT if fmt == "folder" else f"{FAKE_FOLDER_ROOT}.tar.gz"
    if fmt.endswith("tar"):
        _write_tar(root / target, files)
    else:
        for rel, blob in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(blob)
    return root / target


def corrupt_file(path: str | os.PathLike, *, keep_fraction: float = 0.5) -> Path:
    """Truncate ``path`` to ``floor(keep_fraction * size)`` bytes (simulates a broken download)."""
    check_params("corrupt_file", CONSTRAINTS, keep_fraction=keep_fraction)
    path = Path(path)
    os.truncate(path, int(path.stat().st_size * float(keep_fraction)))
    return path


def _python_batches(data: CifarData) -> dict[str, bytes]:
    """The official pickled dicts, as bytes, keyed by file name."""

    def batch(images: np.ndarray, labels: np.ndarray, label: str, offset: int) -> bytes:
        flat = np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(images.shape[0], -1)
        obj = {
            b"batch_label": label.encode(),
            b"labels": [int(v) for v in labels],
            b"data": flat,
            b"filenames": [f"fake_{offset + i:05d}.png".encode() for i in range(images.shape[0])],
        }
        return pickle.dumps(obj, protocol=2)

    out = {}
    chunks = np.array_split(np.arange(data.n_train), len(TRAIN_BATCHES))
    for k, (name, idx) in enumerate(zip(TRAIN_BATCHES, chunks)):
        out[name] = batch(
            data.train_images[idx], data.train_labels[idx], f"training batch {k + 1} of 5", int(idx[0]) if idx.size else 0
        )
    out[TEST_BATCH] = batch(data.test_images, data.test_labels, "testing batch 1 of 1", 0)
    meta = {b"num_cases_per_batch": int(chunks[0].size), b"label_names": [c.encode() for c in data.classes], b"num_vis": 3072}
    out["batches.meta"] = pickle.dumps(meta, protocol=2)
    return out


def _folder_files(data: CifarData, image_ext: str) -> dict[str, bytes]:
    from PIL import Image

    fmt = "PNG" if image_ext == "png" else "JPEG"
    files = {}
    for split, images, labels in (("train", data.train_images, data.train_labels), ("test", data.test_images, data.test_labels)):
        counter: dict[str, int] = {}
        for img, lab in zip(images, labels):
            cls = data.classes[int(lab)]
            i = counter[cls] = counter.get(cls, -1) + 1
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
            files[f"{FAKE_FOLDER_ROOT}/{split}/{cls}/{i:04d}.{image_ext}"] = buf.getvalue()
    return files


def _write_tar(target: Path, files: dict[str, bytes]) -> None:
    """A gzip tar with directory members first, written atomically."""
    dirs = sorted({"/".join(rel.split("/")[:k]) for rel in files for k in range(1, rel.count("/") + 1)})
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{target.name}-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tf:
            for d in dirs:
                info = tarfile.TarInfo(d)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(info)
            for rel, blob in files.items():
                info = tarfile.TarInfo(rel)
                info.size, info.mode = len(blob), 0o644
                tf.addfile(info, io.BytesIO(blob))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
