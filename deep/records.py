"""Per-epoch measurements and records, checkpoints and the summary of a training run.

:func:`evaluate` measures a network after an epoch (eval mode, un-augmented
images); everything is written atomically.

Files in the run folder (``TrainConfig.out``):

``records.jsonl``
    one JSON object per epoch (:class:`EpochRecord`), rewritten as a whole through a
    temporary file + :func:`os.replace` after every epoch, so a reader never sees a
    half-written line and a resumed run's file equals the uninterrupted run's.
``checkpoint.pt``
    everything needed to continue (:func:`save_checkpoint`): model, optimizer,
    carried targets, RNG states, position, records so far.
``split.npz``
    the data split: training/validation/test indices into the CIFAR-10 arrays, the
    noisy and true labels and the flipped mask of the training images.
``train_predictions.npz``
    ``pred`` (epochs, n_train) int8: the eval-mode class prediction of every training
    image after every epoch, so when each example is first fitted
    (:func:`first_fit_epochs`) can be compared with the theory's ordering.
``best_model.pt``
    ``{"global_epoch", "generation", "val_acc", "model"}``: the weights at the best
    noisy-validation epoch so far (the early-stopped network), rewritten when it improves.
``summary.json``
    :class:`Summary`: early-stopping choice (best epoch on the *noisy* validation
    split, never on the test set) and its test accuracy, final and best test
    accuracy, config, versions, git commit, timings.
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from deep.config import TrainConfig
from deep.data import NUM_CLASSES
from deep.files import umask_file_mode
from deep.splits import DeviceData, RunSplit
from theory.frequency import delta_grid, frequency_measures

__all__ = [
    "EpochRecord",
    "Summary",
    "TIME_FIELDS",
    "atomic_write_bytes",
    "write_json",
    "write_records",
    "read_records",
    "write_split",
    "save_checkpoint",
    "load_checkpoint",
    "summarize",
    "versions",
    "git_commit",
    "logits_of",
    "evaluate",
    "measure",
    "first_fit_epochs",
    "frequency_setup",
    "frequency_outputs",
    "FrequencySubset",
]

# Fields that hold wall-clock times: the only ones that may differ between a resumed
# run and an uninterrupted one.
TIME_FIELDS = ("time", "elapsed")


@dataclass(frozen=True)
class EpochRecord:
    """Measurements after one epoch.

    Accuracies are fractions in [0, 1], measured in eval mode on un-augmented images.
    A field is ``None`` where its subset is empty (no validation split, no flipped
    label) or where it does not apply (``alpha``, ``target_momentum``, ``lam``).

    Attributes
    ----------
    epoch : int
        1-based epoch within the generation.
    generation : int
        1-based generation (always 1 except for ``method="generations"``).
    global_epoch : int
        1-based epoch counted over all generations.
    loss : float
        Mean training loss over the epoch's batches (against the targets used).
    lr : float
        Learning rate of the epoch's last step.
    time, elapsed : float
        Seconds spent in this epoch (training + evaluation) and since the run began
        (summed over resumed sessions).
    test_acc : float
        Clean test accuracy.
    train_acc : float
        Training accuracy against the given (noisy) labels.
    train_acc_clean : float or None
        On the training images whose label was not flipped.
    train_acc_flipped_given : float or None
        On the flipped images, against the given noisy label (memorisation).
    train_acc_flipped_true : float or None
        On the flipped images, against the true label (recovery).
    val_acc, val_acc_true : float or None
        On the held-out split against its noisy labels (early stopping) and its true labels.
    target_agreement, target_agreement_flipped : float
        Fraction of the training targets used this epoch whose argmax is the true
        label, over all training images and over the flipped ones.
    alpha : float or None
        The generation's alpha, the weight on the given label (generations only).
    target_momentum : float or None
        The target momentum used this epoch (self-distill, sat only); 1.0 during the
        warm-up of distill_start.
    lam : float or None
        Mean batch agreement rate (interp).
    freq_deltas, e_low, e_high, low_ratio : list of float
        :func:`theory.frequency.frequency_measures` of the softmax probabilities against
        the one-hot noisy labels on a fixed training subset, one entry per delta (empty
        when off); see :func:`frequency_outputs`.
    """

    epoch: int
    generation: int
    global_epoch: int
    loss: float
    lr: float
    time: float
    elapsed: float
    test_acc: float
    train_acc: float
    train_acc_clean: float | None
    train_acc_flipped_given: float | None
    train_acc_flipped_true: float | None
    val_acc: float | None
    val_acc_true: float | None
    target_agreement: float
    target_agreement_flipped: float | None
    alpha: float | None
    target_momentum: float | None
    lam: float | None
    freq_deltas: list[float]
    e_low: list[float]
    e_high: list[float]
    low_ratio: list[float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EpochRecord:
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in values]
        if missing:
            raise ValueError(f"EpochRecord.from_dict: record is missing field(s) {missing}")
        return cls(**{n: values[n] for n in names})


# ----------------------------------------------------------------------------- atomic writes


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file in ``path``'s folder, fsync, then :func:`os.replace`
    (the file gets the mode the user's umask gives new files, :func:`umask_file_mode`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, umask_file_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (non-finite floats become null)."""
    return atomic_write_bytes(path, (json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n").encode())


def write_records(path: str | os.PathLike, records: Sequence[EpochRecord]) -> Path:
    """Atomically (re)write ``records.jsonl``: one JSON object per line, in order."""
    text = "".join(json.dumps(_jsonable(r.to_dict())) + "\n" for r in records)
    return atomic_write_bytes(path, text.encode())


def read_records(path: str | os.PathLike) -> list[EpochRecord]:
    """Read ``records.jsonl`` back into :class:`EpochRecord` objects."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.append(EpochRecord.from_dict(json.loads(line)))
    return out


def write_split(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Atomically write named numpy arrays as an ``.npz`` file."""
    buf = io.BytesIO()
    # every keyword is an array name here; numpy's stubs type **kwds against its allow_pickle: bool
    np.savez(buf, **cast(dict[str, Any], arrays))
    return atomic_write_bytes(path, buf.getvalue())


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Atomically :func:`torch.save` a checkpoint dictionary."""
    buf = io.BytesIO()
    torch.save(state, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    ``weights_only=False`` because the checkpoint holds RNG states and records; only
    load checkpoints you wrote yourself.
    """
    return torch.load(path, map_location=map_location, weights_only=False)


# ----------------------------------------------------------------------------- measurements


def logits_of(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Eval-mode logits of ``x`` in batches (no grad), float32, on ``x``'s device."""
    model.eval()
    if len(x) == 0:
        return torch.empty(0, NUM_CLASSES, device=x.device)
    with torch.no_grad():
        return torch.cat([model(xb).float() for xb in x.split(batch_size)])


def _acc(pred: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> float | None:
    """Accuracy of ``pred`` on ``mask`` (None when the subset is empty)."""
    hit = pred == labels
    if mask is not None:
        hit = hit[mask]
    return None if hit.numel() == 0 else float(hit.float().mean())


def evaluate(model: nn.Module, dd: DeviceData, split: RunSplit, cfg: TrainConfig, freq: FrequencySubset | None) -> dict[str, Any]:
    """Accuracies on the test set, the training subsets and the validation split, and the
    frequency measures of the softmax probabilities on ``freq``: the measured fields of :class:`EpochRecord`
    (keyword arguments for it). :func:`measure` also returns the training predictions."""
    return measure(model, dd, split, cfg, freq)[0]


def measure(
    model: nn.Module, dd: DeviceData, split: RunSplit, cfg: TrainConfig, freq: FrequencySubset | None
) -> tuple[dict[str, Any], torch.Tensor]:
    """:func:`evaluate`'s fields and the eval-mode class predictions on the training images
    (int64, on the device) from the same pass: per-example fit histories come from them."""
    bs = cfg.eval_batch_size
    z_train = logits_of(model, dd.x_train, bs)
    p_train = z_train.argmax(1)
    p_val = logits_of(model, dd.x_val, bs).argmax(1)
    p_test = logits_of(model, dd.x_test, bs).argmax(1)
    out: dict[str, Any] = {
        "test_acc": _acc(p_test, dd.y_test),
        "train_acc": _acc(p_train, dd.y_train),
        "train_acc_clean": _acc(p_train, dd.y_train, ~dd.flipped),
        "train_acc_flipped_given": _acc(p_train, dd.y_train, dd.flipped),
        "train_acc_flipped_true": _acc(p_train, dd.y_train_true, dd.flipped),
        "val_acc": _acc(p_val, dd.y_val),
        "val_acc_true": _acc(p_val, dd.y_val_true),
        "freq_deltas": [],
        "e_low": [],
        "e_high": [],
        "low_ratio": [],
    }
    if freq is not None:
        h = frequency_outputs(z_train[freq.pos])
        m = frequency_measures(freq.X, h, freq.Y, deltas=freq.deltas)
        out.update(
            freq_deltas=[float(d) for d in m.deltas.tolist()],
            e_low=[float(v) for v in m.e_low.tolist()],
            e_high=[float(v) for v in m.e_high.tolist()],
            low_ratio=[float(v) for v in m.low_ratio.tolist()],
        )
    return out, p_train


def frequency_outputs(logits: torch.Tensor) -> np.ndarray:
    """The function whose frequencies are measured against one-hot labels: softmax probabilities.

    The F-principle's e_low / e_high (Xu et al. 2019, arXiv:1901.06523) compare the
    network's output with the one-hot labels. For a classifier trained by cross-entropy
    that output is the softmax probability vector, as in the reference code of the
    frequency principle (xuzhiqin1990/F-Principle, ``filter_gd.py``: the model ends in a
    ``Softmax`` layer and ``model.predict`` is filtered against the one-hot labels).
    Raw logits cannot equal one-hot vectors (softmax is invariant to a shift of the
    logits and a perfect classifier's logits are large, not 0/1), so their errors would
    not reach 0 even for a classifier that fits every label.

    Parameters
    ----------
    logits : Tensor (m, c)

    Returns
    -------
    numpy.ndarray (m, c), float64 probabilities (rows sum to 1).
    """
    return torch.softmax(logits.detach().double(), dim=1).cpu().numpy()


@dataclass(frozen=True, eq=False)
class FrequencySubset:
    """The fixed training subset on which the frequency measures are taken every epoch.

    Attributes
    ----------
    pos : Tensor of int64 (m,)
        Positions into the training images (on the training device).
    X : numpy.ndarray (m, 3072)
        Flattened normalised images (float64): the inputs of the Gaussian filter.
    Y : numpy.ndarray (m, 10)
        One-hot noisy labels.
    deltas : numpy.ndarray (T,)
        Filter variances.
    """

    pos: torch.Tensor
    X: np.ndarray
    Y: np.ndarray
    deltas: np.ndarray


def frequency_setup(dd: DeviceData, split: RunSplit, cfg: TrainConfig) -> FrequencySubset | None:
    """The :class:`FrequencySubset` of a run (None when ``freq_subset`` is 0 or below 2 images).

    ``deltas`` are ``cfg.freq_deltas`` or :func:`theory.frequency.delta_grid` of ``X``.
    """
    if cfg.freq_subset == 0 or len(split.freq_pos) < 2:
        return None
    pos = torch.from_numpy(split.freq_pos).to(dd.x_train.device)
    X = dd.x_train[pos].flatten(1).double().cpu().numpy()
    Y = np.eye(NUM_CLASSES)[split.labels[split.freq_pos]]
    deltas = np.array(cfg.freq_deltas, dtype=np.float64) if cfg.freq_deltas is not None else delta_grid(X, num=5, seed=cfg.seed)
    return FrequencySubset(pos=pos, X=X, Y=Y, deltas=deltas)


def first_fit_epochs(predictions: np.ndarray, labels: np.ndarray, *, stay: bool = False) -> np.ndarray:
    """Per example, the first epoch (1-based) whose prediction equals ``labels`` (inf if none).

    Parameters
    ----------
    predictions : int array (E, n)
        Class predictions after each epoch (``train_predictions.npz`` of a run).
    labels : int array (n,)
        The labels to fit (the given, noisy ones for memorisation).
    stay : bool, default=False
        Count an example as fitted only from the epoch after which it stays fitted to
        the end ("learned for good") instead of the first hit.

    Returns
    -------
    numpy.ndarray of float64, shape (n,)
    """
    pred = np.asarray(predictions)
    lab = np.asarray(labels)
    if pred.ndim != 2 or lab.ndim != 1 or pred.shape[1] != lab.shape[0] or pred.shape[0] == 0:
        raise ValueError(
            f"first_fit_epochs: predictions must have shape (epochs >= 1, n) and labels (n,); got {pred.shape} and {lab.shape}"
        )
    hit = pred == lab[None, :]
    if stay:  # fitted at e and at every later epoch: reverse cumulative AND
        hit = np.flip(np.logical_and.accumulate(np.flip(hit, axis=0), axis=0), axis=0)
    any_hit = hit.any(axis=0)
    first = hit.argmax(axis=0).astype(np.float64) + 1.0
    return np.where(any_hit, first, np.inf)


# ----------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class Summary:
    """End-of-run summary (``summary.json``).

    Attributes
    ----------
    finished : bool
        Whether every epoch of every generation ran (False after ``stop_after``).
    n_epochs : int
        Epochs recorded (over all generations).
    best_epoch : int or None
        ``global_epoch`` with the highest noisy-validation accuracy (earliest on ties):
        the early-stopping choice. None without a validation split.
    best_epoch_generation : int or None
    best_epoch_test_acc : float or None
        Test accuracy at ``best_epoch`` (the early-stopped model's).
    best_val_acc : float or None
    final_test_acc : float or None
        Test accuracy after the last recorded epoch.
    best_test_acc : float or None
        Highest test accuracy over the epochs (an oracle, for reference only).
    best_test_epoch : int or None
    data : dict
        Sizes and noise: n_train, n_val, n_test, n_flipped, noise kind/rate, source.
    config : dict
    versions : dict
    git_commit : str or None
    timings : dict
        Seconds: total (all sessions), data, train (sum of epoch times), this_session.
    """

    finished: bool
    n_epochs: int
    best_epoch: int | None
    best_epoch_generation: int | None
    best_epoch_test_acc: float | None
    best_val_acc: float | None
    final_test_acc: float | None
    best_test_acc: float | None
    best_test_epoch: int | None
    data: dict
    config: dict
    versions: dict
    git_commit: str | None
    timings: dict

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(records: Sequence[EpochRecord], *, finished: bool, data: dict, config: dict, timings: dict) -> Summary:
    """Build the :class:`Summary` of ``records`` (early stopping on the noisy validation accuracy)."""
    with_val = [r for r in records if r.val_acc is not None]
    # max() keeps the first of ties; every record in with_val has a val_acc (the cast says so)
    best = max(with_val, key=lambda r: cast(float, r.val_acc), default=None)
    best_test = max(records, key=lambda r: r.test_acc, default=None)
    return Summary(
        finished=finished,
        n_epochs=len(records),
        best_epoch=None if best is None else best.global_epoch,
        best_epoch_generation=None if best is None else best.generation,
        best_epoch_test_acc=None if best is None else best.test_acc,
        best_val_acc=None if best is None else best.val_acc,
        final_test_acc=records[-1].test_acc if records else None,
        best_test_acc=None if best_test is None else best_test.test_acc,
        best_test_epoch=None if best_test is None else best_test.global_epoch,
        data=data,
        config=config,
        versions=versions(),
        git_commit=git_commit(Path(__file__).resolve().parent),
        timings=timings,
    )


def versions() -> dict[str, str]:
    """Versions of python, the platform and the libraries a run depends on."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("numpy", "torch", "scipy", "array_api_compat"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # pragma: no cover - optional packages
            pass
    try:
        from importlib.metadata import version

        out["airkit"] = version("airkit")
    except Exception:  # pragma: no cover
        pass
    return out


def git_commit(start: str | os.PathLike) -> str | None:
    """The commit checked out in the repository containing ``start``, or None.

    Reads ``.git/HEAD`` (and the ref or ``packed-refs`` it points to) directly, so no
    git executable is needed.
    """
    for folder in [Path(start), *Path(start).parents]:
        git = folder / ".git"
        if git.is_file():  # worktree: "gitdir: <path>"
            text = git.read_text().strip()
            if text.startswith("gitdir:"):
                git = (folder / text.split(":", 1)[1].strip()).resolve()
        if not (git / "HEAD").is_file():
            continue
        try:
            head = (git / "HEAD").read_text().strip()
            if not head.startswith("ref:"):
                return head or None
            ref = head.split(":", 1)[1].strip()
            for base in (git, _common_dir(git)):
                if (base / ref).is_file():
                    return (base / ref).read_text().strip() or None
                packed = base / "packed-refs"
                if packed.is_file():
                    for line in packed.read_text().splitlines():
                        parts = line.split()
                        if len(parts) == 2 and parts[1] == ref:
                            return parts[0]
        except OSError:
            return None
        return None
    return None


def _common_dir(git: Path) -> Path:
    common = git / "commondir"
    if common.is_file():
        return (git / common.read_text().strip()).resolve()
    return git
