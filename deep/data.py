"""CIFAR-10 readers: the official python batches and image-folder trees, decoded once.

Four layouts are recognised by :func:`load_cifar10`, each the way it is published:

``python``
    The official ``cifar-10-batches-py/`` directory (``data_batch_1`` .. ``data_batch_5``,
    ``test_batch``: pickled dicts with ``b"data"``, a ``(m, 3072)`` uint8 array of
    channel-major 32x32 images, and ``b"labels"``), or a directory holding it.
``python-tar``
    Its archive ``cifar-10-python.tar.gz`` (any tar, compressed or not).
``folder``
    An image tree ``<root>/train/<class>/*.png|jpg|jpeg`` and ``<root>/test/<class>/...``,
    or a directory with one extra top-level folder above it (``cifar10-jpeg/train/...``).
    The label is the class folder's name, mapped to the official order
    :data:`CIFAR10_CLASSES`.
``folder-tar``
    A tar archive of such a tree (e.g. ``cifar10-jpeg.tar.gz``), read as a stream with
    :mod:`tarfile`, never extracted to disk.

Everything read is verified before it is returned or cached: compressed streams to their
end (the gzip/bz2/xz trailer and checksum), the tar archive to its end-of-archive block,
every pickle to its last byte, every image (32x32x3) and label (0..9), and the class
counts (see :func:`load_cifar10`). A truncated download is therefore an error, never a
smaller data set.

The decoded arrays (uint8, NHWC) are cached as one ``.npz`` per source *content*: the key
is the SHA-256 of the source's bytes (every file of it, with their relative names), so an
unchanged source is reused from any path and across runs, and a changed one gets a new
key. Writing an entry removes the older entries of the same source (same real path).
Cache writes happen only after verification, atomically (temporary file in the cache
directory, then :func:`os.replace`); a cache file that does not read back whole and valid
is ignored with a warning and rebuilt. Any problem with the source raises
:class:`CifarFormatError` (one line naming the file and the problem), and nothing is written.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import importlib
import io
import json
import lzma
import os
import pickle
import re
import tarfile
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, cast

import numpy as np

from deep.files import umask_file_mode
from kernels.checks import Interval, check_param

__all__ = [
    "CIFAR10_CLASSES",
    "NUM_CLASSES",
    "CIFAR10_URL",
    "CIFAR10_MD5",
    "CifarData",
    "CifarFormatError",
    "CifarDownloadError",
    "load_cifar10",
    "download_cifar10",
    "default_cache_dir",
]

CIFAR10_CLASSES: tuple[str, ...] = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
NUM_CLASSES = len(CIFAR10_CLASSES)
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
PYTHON_DIR = "cifar-10-batches-py"
PYTHON_TAR = "cifar-10-python.tar.gz"
TRAIN_BATCHES = tuple(f"data_batch_{k}" for k in range(1, 6))
TEST_BATCH = "test_batch"
META_FILE = "batches.meta"
FULL_PER_CLASS = {"train": 5000, "test": 1000}
IMAGE_EXTS = (".png", ".jpg", ".jpeg")
SPLITS = ("train", "test")
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")
_CACHE_VERSION = 2
_LEGACY_CACHE_NAME = re.compile(r"cifar10-[0-9a-f]{12}-[0-9a-f]{16}\.npz")
_FN = "load_cifar10"


class CifarFormatError(ValueError):
    """A CIFAR-10 source that is missing, truncated, corrupt or laid out wrongly."""


class CifarDownloadError(OSError):
    """The official archive could not be fetched (no network, bad checksum)."""


@dataclass(frozen=True, eq=False, repr=False)
class CifarData:
    """CIFAR-10 decoded to host arrays.

    Attributes
    ----------
    train_images, test_images : numpy.ndarray of uint8, shape (N, 32, 32, 3)
        Images in NHWC order, RGB.
    train_labels, test_labels : numpy.ndarray of int64, shape (N,)
        Class indices into ``classes``.
    classes : tuple of str
        Class names in label order (the official CIFAR-10 order).
    source : str
        Absolute path of what was read.
    format : str
        ``"python"``, ``"python-tar"``, ``"folder"`` or ``"folder-tar"``
        (``"synthetic"`` for :func:`deep.synthetic.fake_cifar_arrays`).
    from_cache : bool
        Whether these arrays came from the ``.npz`` cache rather than a fresh decode.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...]
    source: str
    format: str
    from_cache: bool = False

    @property
    def n_train(self) -> int:
        return int(self.train_labels.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.test_labels.shape[0])

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:
        return (
            f"CifarData(n_train={self.n_train}, n_test={self.n_test}, classes={len(self.classes)}, "
            f"format={self.format!r}, source={self.source!r}, from_cache={self.from_cache})"
        )


# ----------------------------------------------------------------------------- public API


def default_cache_dir() -> Path:
    """``$AIRKIT_CACHE/cifar10`` if ``AIRKIT_CACHE`` is set, else ``~/.cache/airkit/cifar10``."""
    root = os.environ.get("AIRKIT_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "airkit") / "cifar10"


def load_cifar10(
    path: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None, use_cache: bool = True, progress: bool = True
) -> CifarData:
    """Load CIFAR-10 from any of the four published layouts, decoding it only once.

    Parameters
    ----------
    path : str or os.PathLike
        ``cifar-10-batches-py/`` or a directory holding it; a tar archive
        (``cifar-10-python.tar.gz`` or a tarred image tree); an image-folder tree
        ``<root>/{train,test}/<class>/*.{png,jpg,jpeg}`` (optionally one folder deeper);
        or a directory that holds exactly one tar archive and nothing else recognisable.
    cache_dir : str or os.PathLike, optional
        Where the decoded ``.npz`` lives; default :func:`default_cache_dir`. One entry
        per source content (SHA-256 of its files, read in full each call: about 20 ms
        for the 19 MB image-tree archive), reused from any path; see the module notes.
    use_cache : bool, default=True
        Read and write the cache. ``False`` always decodes and writes nothing.
    progress : bool, default=True
        Show a tqdm progress bar (on stderr) while decoding.

    Returns
    -------
    CifarData
        uint8 NHWC images and int64 labels for both splits.

    Raises
    ------
    CifarFormatError
        Missing path; truncated or corrupt archive or pickle; a missing split
        (``data_batch_k``, ``test_batch``, ``train/`` or ``test/``); an image that is
        not 32x32 RGB; an unknown class folder; class counts that break the rules
        below. The message is one line naming the file and what was found.

    Notes
    -----
    What is accepted, so that a partial copy never passes for a smaller data set:

    * every layout: each split holds all 10 classes, images are 32x32x3 uint8 and
      labels lie in 0..9; archives are read to the end (a truncated ``.tar.gz`` fails
      on its gzip trailer or missing tar end block) and each pickle to its last byte;
      a split of the full size (50000 train or 10000 test images) must hold exactly
      5000 (train) or 1000 (test) images per class;
    * python batches (directory or archive): all of ``data_batch_1..5`` and
      ``test_batch``; when ``batches.meta`` states ``num_cases_per_batch`` (the
      official file says 10000) every data batch holds exactly that many images, and
      10000 declares the full set (50000 + 10000 images, 5000 + 1000 per class).
      Smaller or unbalanced sets in this layout (the fake and scikit-learn digits sets
      of this project) are accepted as long as they are internally complete;
    * image trees (directory or archive): in each split every class has the *same*
      number of images. The full set (5000 + 1000 per class) and any stratified subset
      of it pass; a tree with a class folder missing, or with fewer files in some
      folders (an interrupted extraction or copy), is refused with the counts found.
      There is no opt-out: to work on an unbalanced subset, load a balanced set and
      select with :func:`subset_indices` (or with your own indices).

    Images must be 32x32. RGB is taken as is; modes that convert losslessly are
    converted: grayscale ``L`` (replicated to three channels), palette ``P``, and
    ``RGBA``/``LA``/``PA`` whose alpha is 255 everywhere. Transparent pixels, or other
    modes (CMYK, 16-bit, float), raise :class:`CifarFormatError`. Pickles are read
    with a restricted unpickler that only reconstructs numpy arrays, so a tampered
    batch file cannot run code. Folder samples are ordered by (class, file name in
    natural order); python batches keep their stored order.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from deep.synthetic import write_fake_cifar
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> data = load_cifar10(write_fake_cifar(tmp, fmt="python"), cache_dir=tmp / "cache", progress=False)
    >>> data.train_images.shape, data.test_labels.dtype
    ((40, 32, 32, 3), dtype('int64'))
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{_FN}: path must be a str or os.PathLike; got {type(path).__name__}")
    if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
        raise TypeError(f"{_FN}: cache_dir must be None, a str or os.PathLike; got {type(cache_dir).__name__}")
    for name, flag in (("use_cache", use_cache), ("progress", progress)):
        if not isinstance(flag, bool):
            raise TypeError(f"{_FN}: {name} must be a bool; got {flag!r}")
    src = Path(path).expanduser().absolute()
    if not src.exists():
        raise CifarFormatError(f"{_FN}: {src} does not exist; pass the CIFAR-10 directory or archive (see download_cifar10)")
    kind, location = _detect(src)
    if not use_cache:
        return _decode(kind, location, progress)
    cache_root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    key = _fingerprint(kind, location)
    file = cache_root / f"cifar10-{key[:32]}.npz"
    cached = _read_cache(file, key, location)
    if cached is not None:
        return cached
    data = _decode(kind, location, progress)  # verified; raises before anything is written
    _write_cache(file, data, key, location)
    return data


def download_cifar10(
    dest: str | os.PathLike, *, url: str = CIFAR10_URL, md5: str = CIFAR10_MD5, timeout: float = 60.0, progress: bool = True
) -> Path:
    """Fetch the official ``cifar-10-python.tar.gz`` into directory ``dest``.

    The file is streamed to a temporary file in ``dest``, its MD5 checked against
    ``md5`` and only then renamed into place, so a failed download leaves nothing
    behind. An existing file with the right checksum is reused.

    Returns
    -------
    pathlib.Path
        ``dest / "cifar-10-python.tar.gz"``, ready for :func:`load_cifar10`.

    Raises
    ------
    CifarDownloadError
        No network, an HTTP error, or a checksum mismatch; the message says to pass a
        local copy with ``--data`` instead.
    """
    fn = "download_cifar10"
    if not isinstance(dest, (str, os.PathLike)):
        raise TypeError(f"{fn}: dest must be a str or os.PathLike; got {type(dest).__name__}")
    check_param(fn, "timeout", timeout, Interval(float, 0, None, "neither"))
    dest_dir = Path(dest).expanduser()
    target = dest_dir / PYTHON_TAR
    if target.is_file() and _file_digest(target, "md5") == md5:
        return target
    dest_dir.mkdir(parents=True, exist_ok=True)
    hint = f"download a copy of {url} elsewhere and pass it with --data (a path to the archive, cifar-10-batches-py/, or an image-folder tree)"
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{PYTHON_TAR}-", dir=dest_dir)
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    total = int(resp.headers.get("Content-Length") or 0) or None
                    with _bar(progress, total, "download CIFAR-10", "B") as bar:
                        while chunk := resp.read(1 << 20):
                            out.write(chunk)
                            digest.update(chunk)
                            bar.update(len(chunk))
            except (urllib.error.URLError, OSError, ValueError) as exc:
                raise CifarDownloadError(f"{fn}: could not fetch {url} ({exc}); {hint}") from exc
        if digest.hexdigest() != md5:
            raise CifarDownloadError(f"{fn}: {url} arrived with md5 {digest.hexdigest()}, expected {md5}; {hint}")
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return target


# ----------------------------------------------------------------------------- detection and cache


def _detect(src: Path) -> tuple[str, Path]:
    """Return ``(kind, location)``: kind is "python", "folder" or "tar"."""
    if src.is_file():
        return "tar", src
    if any((src / name).is_file() for name in (*TRAIN_BATCHES, TEST_BATCH)):
        return "python", src
    if (src / PYTHON_DIR).is_dir():
        return "python", src / PYTHON_DIR
    if any((src / s).is_dir() for s in SPLITS):
        return "folder", src
    subdirs = [d for d in sorted(src.iterdir()) if d.is_dir() and not d.name.startswith((".", "__MACOSX"))]
    trees = [d for d in subdirs if any((d / s).is_dir() for s in SPLITS)]
    if len(trees) == 1:
        return "folder", trees[0]
    if len(trees) > 1:
        raise CifarFormatError(f"{_FN}: {src} holds several image trees ({', '.join(d.name for d in trees)}); pass one of them")
    archives = [f for f in sorted(src.iterdir()) if f.is_file() and f.name.endswith(_ARCHIVE_SUFFIXES)]
    if len(archives) == 1:
        return "tar", archives[0]
    if len(archives) > 1:
        raise CifarFormatError(f"{_FN}: {src} holds several archives ({', '.join(f.name for f in archives)}); pass one of them")
    raise CifarFormatError(
        f"{_FN}: {src} is not a CIFAR-10 source; expected {PYTHON_DIR}/ (data_batch_1..5, test_batch), "
        f"{PYTHON_TAR}, an image tree <root>/train/<class>/*.png|jpg and <root>/test/..., or a tar of one"
    )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _file_digest(file: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(file, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _fingerprint(kind: str, location: Path) -> str:
    """Content identity of a source: SHA-256 over the (relative name, size, SHA-256) of its files.

    Neither the source's path nor any modification time enters, so the same bytes at another
    path, or rewritten unchanged, map to the same cache entry (a full SHA-256 runs at about
    1 GB/s: 20 ms for the 19 MB image-tree archive, 0.5 s for its 60000 extracted files).
    """
    if kind == "tar":
        files = [location]
    elif kind == "python":
        files = [location / name for name in (*TRAIN_BATCHES, TEST_BATCH, META_FILE) if (location / name).is_file()]
    else:
        files = sorted(Path(d) / f for d, _, names in os.walk(location) for f in names)
    entries = []
    for f in files:
        try:
            entries.append((f.relative_to(location).as_posix() if f != location else "", f.stat().st_size, _file_digest(f)))
        except OSError as exc:
            raise CifarFormatError(f"{_FN}: {f} cannot be read ({_one_line(exc)})") from exc
    return _digest(json.dumps([_CACHE_VERSION, kind, entries]))


def _real(path: str | os.PathLike) -> str:
    return os.path.realpath(os.fspath(path))


def _read_cache(file: Path, key: str, location: Path) -> CifarData | None:
    """The cached arrays if ``file`` reads back whole (zip CRCs), carries ``key`` and passes :func:`_verify`."""
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as z:
            if str(z["key"]) != key:
                raise ValueError(f"it holds key {str(z['key'])[:16]}..., not {key[:16]}...")
            data = CifarData(
                train_images=z["train_images"],
                train_labels=z["train_labels"],
                test_images=z["test_images"],
                test_labels=z["test_labels"],
                classes=tuple(str(c) for c in z["classes"]),
                source=str(location),
                format=str(z["format"]),
                from_cache=True,
            )
        if data.classes != CIFAR10_CLASSES or data.format not in ("python", "python-tar", "folder", "folder-tar"):
            raise ValueError(f"it holds classes {data.classes!r} and format {data.format!r}")
        _verify(data, file)
        return data
    except (
        OSError,
        ValueError,
        KeyError,
        EOFError,
        TypeError,
        AttributeError,
        zipfile.BadZipFile,
    ) as exc:  # CifarFormatError is a ValueError
        warnings.warn(
            f"{_FN}: ignoring unreadable or invalid cache file {file} ({_one_line(exc)}); decoding the source again",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


def _cached_source(file: Path) -> str | None:
    """The real path stored in a cache entry (None if it cannot be read)."""
    try:
        with np.load(file, allow_pickle=False) as z:
            return _real(str(z["source"]))
    except Exception:  # any unreadable entry is simply not matched
        return None


def _write_cache(file: Path, data: CifarData, key: str, location: Path) -> None:
    """Atomically write ``file``, then remove the entries it replaces. Failures only warn.

    Removed: other entries written for the same source (same real path; its content has
    changed since), and entries of the old path-keyed scheme (``cifar10-<12 hex>-<16 hex>.npz``,
    never read by this version) whose source is gone or is this one.
    """
    tmp = None
    source = _real(location)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".tmp-{file.stem}-", suffix=".npz", dir=file.parent)
        os.fchmod(fd, umask_file_mode())
        with os.fdopen(fd, "wb") as out:
            np.savez(
                out,
                key=np.array(key),
                train_images=data.train_images,
                train_labels=data.train_labels,
                test_images=data.test_images,
                test_labels=data.test_labels,
                classes=np.array(data.classes),
                source=np.array(source),
                format=np.array(data.format),
            )
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, file)
        tmp = None
    except OSError as exc:
        warnings.warn(
            f"{_FN}: could not write the cache file {file} ({_one_line(exc)}); the data are returned uncached",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    for old in file.parent.glob("cifar10-*.npz"):
        if old.name == file.name:
            continue
        stored = _cached_source(old)
        if stored is None:
            continue
        if stored == source or (_LEGACY_CACHE_NAME.fullmatch(old.name) and not os.path.exists(stored)):
            with contextlib.suppress(OSError):
                old.unlink()


# ----------------------------------------------------------------------------- verification


def _one_line(text: Any) -> str:
    """``str(text)`` with line breaks and runs of blanks collapsed (messages stay one line)."""
    return " ".join(str(text).split())


def _ranges(indices: Iterable[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2, 5, 7-8"``."""
    runs: list[list[int]] = []
    for i in sorted(int(i) for i in indices):
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in runs)


def _check_split(images: Any, labels: Any, split: str, where: Any, *, balanced: bool, full: bool) -> None:
    """Shapes, dtypes, label range and class counts of one split (see load_cifar10's Notes)."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        got = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        raise CifarFormatError(f"{_FN}: {where}: {split} images must be a uint8 (N, 32, 32, 3) array; got {got}")
    if not isinstance(labels, np.ndarray) or labels.dtype != np.int64 or labels.shape != (images.shape[0],):
        got = f"{labels.dtype} {labels.shape}" if isinstance(labels, np.ndarray) else type(labels).__name__
        raise CifarFormatError(f"{_FN}: {where}: {split} labels must be int64 of shape ({images.shape[0]},); got {got}")
    n, k = int(labels.shape[0]), len(CIFAR10_CLASSES)
    if n and (labels.min() < 0 or labels.max() >= k):
        raise CifarFormatError(
            f"{_FN}: {where}: {split} labels must lie in 0..{k - 1}; got values from {labels.min()} to {labels.max()}"
        )
    counts = np.bincount(labels, minlength=k)
    per = FULL_PER_CLASS[split]
    full = full or n == per * k
    expected = (
        f"expected {per * k} ({per} per class)"
        if full
        else f"expected all {k} classes" + (" with the same count each" if balanced else "")
    )
    found = ", ".join(f"{c} {int(m)}" for c, m in zip(CIFAR10_CLASSES, counts))
    missing = np.flatnonzero(counts == 0)
    if missing.size:
        names = ", ".join(CIFAR10_CLASSES[i] for i in missing)
        plural = "classes" if missing.size > 1 else "class"
        raise CifarFormatError(
            f"{_FN}: {where}: {split} has {n} images and {plural} {_ranges(missing)} ({names}) missing; {expected}; "
            f"found {found} (truncated or partial copy?)"
        )
    if full and not np.all(counts == per):
        raise CifarFormatError(f"{_FN}: {where}: {split} has {n} images; {expected}; found {found}")
    if balanced and not np.all(counts == counts[0]):
        raise CifarFormatError(
            f"{_FN}: {where}: {split} has {n} images with unequal class counts ({found}); an image tree must hold "
            f"the same number per class (full CIFAR-10: {per}); truncated or partial copy?"
        )


def _verify(data: CifarData, where: Any, *, full: bool = False) -> CifarData:
    """Check both splits of decoded (or cached) data; image trees must be class-balanced."""
    balanced = data.format in ("folder", "folder-tar")
    _check_split(data.train_images, data.train_labels, "train", where, balanced=balanced, full=full)
    _check_split(data.test_images, data.test_labels, "test", where, balanced=balanced, full=full)
    return data


# ----------------------------------------------------------------------------- decoding


def _decode(kind: str, location: Path, progress: bool) -> CifarData:
    """Decode and verify a detected source (never touches the cache)."""
    if kind == "python":
        return _decode_python_dir(location, progress)
    if kind == "folder":
        return _decode_folder_dir(location, progress)
    return _decode_tar(location, progress)


def _bar(progress: bool, total: int | None, desc: str, unit: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "B", disable=not progress, leave=False)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Reconstructs numpy arrays and builtins only; anything else is refused."""

    _ALLOWED = {
        ("multiarray", "_reconstruct"),
        ("multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        short = module.rsplit(".", 1)[-1]
        if (short, name) not in self._ALLOWED or not (module.startswith("numpy") or module == "_codecs"):
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")
        if short == "multiarray":
            for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
                with contextlib.suppress(ImportError):
                    return getattr(importlib.import_module(mod), name)
        return super().find_class(module, name)


def _unpickle(raw: bytes, where: str, what: str) -> Any:
    """Restricted unpickling of one whole file: a failure, or bytes left after the pickle, is an error."""
    buf = io.BytesIO(raw)
    try:
        obj = _NumpyOnlyUnpickler(buf, encoding="bytes").load()
    except Exception as exc:  # any unpickling failure means a corrupt or foreign file
        raise CifarFormatError(
            f"{_FN}: {where} is not a readable {what} (corrupt or truncated pickle, {len(raw)} bytes: "
            f"{type(exc).__name__}: {_one_line(exc)})"
        ) from exc
    if buf.tell() != len(raw):
        raise CifarFormatError(
            f"{_FN}: {where} has {len(raw) - buf.tell()} bytes after the end of its pickle ({len(raw)} bytes); "
            f"the file is corrupt or not a {what}"
        )
    return obj


def _parse_meta(raw: bytes, where: str) -> int | None:
    """``batches.meta`` -> its ``num_cases_per_batch`` (None when it does not say)."""
    obj = _unpickle(raw, where, "CIFAR-10 batches.meta")
    if not isinstance(obj, dict):
        raise CifarFormatError(f"{_FN}: {where} holds a {type(obj).__name__}, not the batches.meta dict")
    names = obj.get(b"label_names", obj.get("label_names"))
    if names is not None and (not isinstance(names, (list, tuple)) or len(names) != len(CIFAR10_CLASSES)):
        raise CifarFormatError(
            f"{_FN}: {where}: label_names must list {len(CIFAR10_CLASSES)} classes; got {_one_line(repr(names))[:120]}"
        )
    per_batch = obj.get(b"num_cases_per_batch", obj.get("num_cases_per_batch"))
    if per_batch is None:
        return None
    if isinstance(per_batch, bool) or not isinstance(per_batch, int) or per_batch < 1:
        raise CifarFormatError(f"{_FN}: {where}: num_cases_per_batch must be a positive integer; got {per_batch!r}")
    return per_batch


def _parse_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch -> (images (m,32,32,3) uint8, labels (m,) int64)."""
    obj = _unpickle(raw, where, "CIFAR-10 batch")
    if not isinstance(obj, dict):
        raise CifarFormatError(f"{_FN}: {where} holds a {type(obj).__name__}, not a CIFAR-10 batch dict")
    data = obj.get(b"data", obj.get("data"))
    labels = obj.get(b"labels", obj.get("labels"))
    if not isinstance(data, np.ndarray) or labels is None:
        raise CifarFormatError(
            f"{_FN}: {where} lacks the b'data' array or b'labels' list of a CIFAR-10 batch (keys: {sorted(map(str, obj))})"
        )
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise CifarFormatError(
            f"{_FN}: {where}: data must be a uint8 (m, 3072) array of 32x32x3 images; got {data.dtype} {data.shape}"
        )
    try:
        lab = np.array(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise CifarFormatError(f"{_FN}: {where}: labels are not integers ({exc})") from exc
    if lab.shape != (data.shape[0],) or (lab.size and (lab.min() < 0 or lab.max() >= len(CIFAR10_CLASSES))):
        raise CifarFormatError(f"{_FN}: {where}: labels must be {data.shape[0]} integers in [0, 9]; got shape {lab.shape}")
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, lab


def _assemble_python(batches: dict[str, bytes], where: Path, names: dict[str, str], fmt: str) -> CifarData:
    """Concatenate data_batch_1..5 and test_batch, verified; ``names`` gives each file's full name for errors.

    ``batches`` may hold ``batches.meta``: its ``num_cases_per_batch`` fixes every data batch's
    size, and the official 10000 declares the full set (see load_cifar10's Notes).
    """
    for name in (*TRAIN_BATCHES, TEST_BATCH):
        if name not in batches:
            raise CifarFormatError(
                f"{_FN}: {where} has no {PYTHON_DIR}/{name}; the official layout needs data_batch_1..5 and test_batch"
            )
    per_batch = _parse_meta(batches[META_FILE], names[META_FILE]) if META_FILE in batches else None
    train = [_parse_batch(batches[n], names[n]) for n in TRAIN_BATCHES]
    test_images, test_labels = _parse_batch(batches[TEST_BATCH], names[TEST_BATCH])
    full = per_batch == FULL_PER_CLASS["train"] * len(CIFAR10_CLASSES) // len(TRAIN_BATCHES)
    for n, (images, _) in zip(TRAIN_BATCHES, train):
        if per_batch is not None and images.shape[0] != per_batch:
            raise CifarFormatError(
                f"{_FN}: {names[n]} holds {images.shape[0]} images; {names[META_FILE]} declares {per_batch} per batch"
            )
    if full and test_images.shape[0] != per_batch:
        raise CifarFormatError(
            f"{_FN}: {names[TEST_BATCH]} holds {test_images.shape[0]} images; the full CIFAR-10 test batch has {per_batch}"
        )
    data = CifarData(
        train_images=np.concatenate([t[0] for t in train]),
        train_labels=np.concatenate([t[1] for t in train]),
        test_images=test_images,
        test_labels=test_labels,
        classes=CIFAR10_CLASSES,
        source=str(where),
        format=fmt,
    )
    return _verify(data, where, full=full)


def _decode_python_dir(location: Path, progress: bool) -> CifarData:
    batches, names = {}, {}
    with _bar(progress, 6, "decode CIFAR-10 batches", "file") as bar:
        for name in (*TRAIN_BATCHES, TEST_BATCH):
            f = location / name
            if not f.is_file():
                raise CifarFormatError(
                    f"{_FN}: {f} is missing; the official layout needs data_batch_1..5 and test_batch in {location}"
                )
            batches[name], names[name] = f.read_bytes(), str(f)
            bar.update(1)
    if (location / META_FILE).is_file():
        batches[META_FILE], names[META_FILE] = (location / META_FILE).read_bytes(), str(location / META_FILE)
    return _assemble_python(batches, location, names, "python")


def _decode_image(data: bytes, where: str) -> np.ndarray:
    """Encoded PNG/JPEG bytes -> (32, 32, 3) uint8 (lossless conversions only; see load_cifar10)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as opened:
            im: Image.Image = opened  # may be rebound to a converted copy below
            im.load()
            if im.size != (32, 32):
                raise CifarFormatError(f"{_FN}: {where} is {im.size[0]}x{im.size[1]}; CIFAR-10 images must be 32x32")
            mode = im.mode
            if mode == "P" and "transparency" in im.info:
                im, mode = im.convert("RGBA"), "RGBA"
            if mode in ("RGBA", "LA", "PA"):
                alpha = np.array(im.getchannel("A"))
                if alpha.min() < 255:
                    raise CifarFormatError(
                        f"{_FN}: {where} has transparent pixels (mode {im.mode}); CIFAR-10 images must be opaque RGB"
                    )
            elif mode not in ("RGB", "L", "P"):
                raise CifarFormatError(f"{_FN}: {where} has image mode {mode}; expected RGB (or lossless L, P, opaque RGBA)")
            arr = np.array(im if mode == "RGB" else im.convert("RGB"), dtype=np.uint8)
    except CifarFormatError:
        raise
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, DecompressionBombError, ...
        raise CifarFormatError(f"{_FN}: {where} is not a readable image ({type(exc).__name__}: {exc})") from exc
    if arr.shape != (32, 32, 3):
        raise CifarFormatError(f"{_FN}: {where} decodes to shape {arr.shape}; expected (32, 32, 3)")
    return arr


def _natural_key(name: str) -> tuple:
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name))


class _FolderCollector:
    """Collects decoded images of an image tree by (split, class, file name)."""

    def __init__(self, where: Path) -> None:
        self.where = where
        self.items: dict[str, list] = {s: [] for s in SPLITS}
        self.roots: set[tuple[str, ...]] = set()

    def add(self, parts: tuple[str, ...], data: bytes, display: str) -> None:
        if len(parts) < 3 or parts[-3] not in SPLITS:
            raise CifarFormatError(f"{_FN}: {display} is not under <root>/train/<class>/ or <root>/test/<class>/")
        split, cls, fname = parts[-3], parts[-2], parts[-1]
        if cls not in CIFAR10_CLASSES:
            folder = "/".join(parts[:-1])
            raise CifarFormatError(
                f"{_FN}: {self.where}: unknown class folder {folder!r} (for {display}); class folders must be named {', '.join(CIFAR10_CLASSES)}"
            )
        self.roots.add(parts[:-3])
        self.items[split].append((CIFAR10_CLASSES.index(cls), _natural_key(fname), _decode_image(data, display)))

    def finish(self, fmt: str) -> CifarData:
        if len(self.roots) > 1:
            listed = ", ".join(repr("/".join(r) or ".") for r in sorted(self.roots))
            raise CifarFormatError(
                f"{_FN}: {self.where} holds images under several roots ({listed}); expected one <root>/train, <root>/test"
            )
        root = "/".join(next(iter(self.roots), ()))
        arrays = []
        for split in SPLITS:
            items = self.items[split]
            if not items:
                missing = f"{root}/{split}/" if root else f"{split}/"
                raise CifarFormatError(
                    f"{_FN}: {self.where} has no images in {missing}; an image tree needs both train/<class>/ and test/<class>/"
                )
            items.sort(key=lambda t: (t[0], t[1]))
            arrays.append((np.stack([t[2] for t in items]), np.array([t[0] for t in items], dtype=np.int64)))
        data = CifarData(
            train_images=arrays[0][0],
            train_labels=arrays[0][1],
            test_images=arrays[1][0],
            test_labels=arrays[1][1],
            classes=CIFAR10_CLASSES,
            source=str(self.where),
            format=fmt,
        )
        return _verify(data, self.where)


def _is_junk(parts: Iterable[str]) -> bool:
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _decode_folder_dir(root: Path, progress: bool) -> CifarData:
    files = []
    for split in SPLITS:
        sdir = root / split
        if not sdir.is_dir():
            raise CifarFormatError(
                f"{_FN}: {sdir} is missing; an image tree needs both {root}/train/<class>/ and {root}/test/<class>/"
            )
        for entry in sorted(sdir.iterdir()):
            if entry.name.startswith("."):
                continue
            if entry.is_file():
                if entry.suffix.lower() in IMAGE_EXTS:
                    raise CifarFormatError(f"{_FN}: {entry} is not inside a class folder; expected {sdir}/<class>/*.png|jpg")
                continue
            if entry.name not in CIFAR10_CLASSES:
                raise CifarFormatError(
                    f"{_FN}: {entry} is an unknown class folder; class folders must be named {', '.join(CIFAR10_CLASSES)}"
                )
            files += [f for f in entry.iterdir() if f.suffix.lower() in IMAGE_EXTS and not f.name.startswith(".") and f.is_file()]
    collector = _FolderCollector(root)
    with _bar(progress, len(files), "decode CIFAR-10 images", "img") as bar:
        for f in files:
            collector.add(f.relative_to(root).parts, f.read_bytes(), str(f))
            bar.update(1)
    return collector.finish("folder")


class _Tap:
    """A read-only stream that counts what it hands out and keeps the last few MiB of it.

    tarfile stops at its end-of-archive block without saying whether it found one or ran
    out of data, so :func:`_decode_tar` looks at that block itself (:meth:`block`).
    """

    KEEP = 1 << 22

    def __init__(self, stream: Any) -> None:
        self.stream, self.pos, self.tail = stream, 0, bytearray()

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.pos += len(data)
        self.tail += data
        if len(self.tail) > 2 * self.KEEP:
            del self.tail[: -self.KEEP]
        return data

    def block(self, start: int, size: int) -> bytes:
        """Bytes ``[start, start + size)`` of the stream (fewer at its end); reads on if needed."""
        while self.pos < start + size and self.read(1 << 16):
            pass
        first = self.pos - len(self.tail)
        if start < first:  # pragma: no cover - tarfile reads at most one 10 KiB record ahead
            raise RuntimeError(f"tar end block at {start} is no longer buffered (buffer starts at {first})")
        return bytes(self.tail[start - first : start - first + size])

    def drain(self) -> None:
        """Read to the end, so a compressed stream checks its trailer (length and CRC)."""
        while self.stream.read(1 << 20):
            pass


def _decompressed(raw: Any) -> tuple[Any, str]:
    """``(stream, name)``: the decompressed view of ``raw`` by its magic bytes (gzip, bz2, xz or plain tar)."""
    head = raw.peek(6)[:6]
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb"), "gzip"
    if head.startswith(b"BZh"):
        return bz2.BZ2File(raw, mode="rb"), "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(raw, mode="rb"), "xz"
    return raw, "tar"


def _decode_tar(path: Path, progress: bool) -> CifarData:
    """Stream a tar archive once, to its very end; decide between the python and the folder layout by its members.

    Verified on the way: every member's data is read in full, the archive ends with a
    zero end-of-archive block (tarfile alone would stop silently on a truncated archive),
    and a compressed stream is read through its trailer (length and CRC).
    """
    batches: dict[str, bytes] = {}
    names: dict[str, str] = {}
    folder = _FolderCollector(path)
    n_images = 0
    codec = "tar"
    try:
        with open(path, "rb") as raw, _bar(progress, path.stat().st_size, f"decode {path.name}", "B") as bar:
            stream, codec = _decompressed(raw)
            tap = _Tap(stream)
            # stream mode ("r|") only reads from fileobj; typeshed's protocol also asks for write/seek/close
            with tarfile.open(fileobj=cast(IO[bytes], tap), mode="r|") as tf:
                for member in tf:
                    bar.update(raw.tell() - bar.n)
                    if not member.isfile():
                        continue
                    parts = PurePosixPath(member.name).parts
                    if _is_junk(parts):
                        continue
                    base, display = parts[-1], f"{path}:{member.name}"
                    is_batch = base in (*TRAIN_BATCHES, TEST_BATCH, META_FILE)
                    is_image = PurePosixPath(base).suffix.lower() in IMAGE_EXTS
                    if not (is_batch or is_image):
                        continue
                    extracted = tf.extractfile(member)
                    assert extracted is not None  # None only for non-regular members; isfile() held above
                    blob = extracted.read()
                    if len(blob) != member.size:
                        raise CifarFormatError(
                            f"{_FN}: {path} is truncated: member {member.name} has {len(blob)} of its {member.size} bytes"
                        )
                    if is_batch:
                        if base in batches:
                            raise CifarFormatError(f"{_FN}: {path} holds {base} twice ({names[base]} and {display})")
                        batches[base], names[base] = blob, display
                    else:
                        folder.add(parts, blob, display)
                        n_images += 1
                end = tf.offset
            block = tap.block(end, tarfile.BLOCKSIZE)
            if block != bytes(tarfile.BLOCKSIZE):
                what = (
                    f"the data end at offset {end}, where the next header or the end block belongs (truncated)"
                    if not block
                    else f"the data end {len(block)} bytes into the header at offset {end} (truncated)"
                    if len(block) < tarfile.BLOCKSIZE
                    else f"the block at offset {end} is neither a tar header nor the end block (corrupt)"
                )
                raise CifarFormatError(
                    f"{_FN}: {path} has no tar end-of-archive block after {n_images + len(batches)} files read: {what}"
                )
            tap.drain()
            bar.update(raw.tell() - bar.n)
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as exc:
        reason = "truncated" if isinstance(exc, EOFError) else "not a readable tar archive, or truncated or corrupt"
        raise CifarFormatError(
            f"{_FN}: {path} is {reason} ({codec}: {type(exc).__name__}: {_one_line(exc)}; "
            f"{n_images + len(batches)} files read before that)"
        ) from exc
    if META_FILE in batches and len(batches) == 1:
        del batches[META_FILE]  # a stray batches.meta alone says nothing about the layout
    if batches and n_images:
        raise CifarFormatError(f"{_FN}: {path} mixes python batches and image files; it should hold one layout")
    if batches:
        return _assemble_python(batches, path, names, "python-tar")
    if n_images:
        return folder.finish("folder-tar")
    raise CifarFormatError(f"{_FN}: {path} holds neither {PYTHON_DIR}/data_batch_* files nor <root>/train/<class>/ images")
