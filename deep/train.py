"""Train a CIFAR-10 network on noisy labels with one of five target rules; record every epoch.

    python -m deep.train --data ../shared/data/cifar10-jpeg.tar.gz --noise symmetric:0.4 \\
        --method self-distill --model fastnet --epochs 20 --out results/train/sd

One frozen :class:`deep.config.TrainConfig` is passed explicitly through the
stages below, which read top to bottom like airbench94 (Jordan 2024,
``legacy/airbench94.py``): data -> model and optimiser -> training loop -> CLI
(the per-epoch measurements live in :mod:`deep.records`, the CLI options in
:mod:`deep.config`).

- The images stay on the device as normalised tensors (train / val / test, each
  converted once); label noise is injected
  once, before epoch 0, with the config's seed, and the flipped mask is kept.
- Augmentation (reflect-pad-4 random crop + horizontal flip) runs on whole batches on
  the device (:mod:`deep.augment`).
- SGD with Nesterov momentum; learning rate with a linear warm-up and linear decay per
  generation (:func:`lr_factor`).
- The method only changes the targets (:mod:`deep.methods`); the loss is always the
  soft-target cross-entropy.
- After every epoch: an :class:`deep.records.EpochRecord` (test accuracy, training
  accuracy on the clean / flipped subsets against given and true labels, noisy
  validation accuracy, target agreement, frequency measures), ``records.jsonl`` and an
  atomic checkpoint. ``resume=True`` continues from it and, on CPU with a fixed seed,
  reproduces the uninterrupted run's records exactly (all but the time fields).
"""

from __future__ import annotations

#############################################
#                  Setup                    #
#############################################
import dataclasses
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from deep.augment import augment, batches
from deep.config import MOMENTUM_METHODS, RESUME_FREE_FIELDS, TrainConfig, build_parser, config_from_args
from deep.data import NUM_CLASSES, CifarData, CifarFormatError, download_cifar10, load_cifar10
from deep.files import CHECKPOINT_FILE
from deep.methods import (
    batch_targets,
    chained_targets,
    generation_targets,
    one_hot,
    predictions,
    scheduled_weight,
    soft_cross_entropy,
    target_agreement,
)
from deep.models import make_model
from deep.records import (
    EpochRecord,
    FrequencySubset,
    Summary,
    frequency_setup,
    load_checkpoint,
    logits_of,
    measure,
    save_checkpoint,
    summarize,
    write_json,
    write_records,
    write_split,
)
from deep.splits import DeviceData, RunSplit, make_split, to_device_data
from deep.synthetic import fake_cifar_arrays

__all__ = [
    "TrainResult",
    "RunState",
    "save_run_state",
    "load_run_state",
    "train",
    "main",
    "lr_factor",
    "resolve_device",
    "epoch_momentum",
]

SYNTHETIC_PER_CLASS = (16, 8)  # train, test images per class of the data=None smoke-test set


@dataclass(frozen=True, eq=False)
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    config : TrainConfig
    records : tuple of EpochRecord
        Every epoch so far (including those of earlier, resumed sessions).
    summary : Summary
        As written to ``summary.json``.
    split : RunSplit
    model : torch.nn.Module
        The network after the last epoch run (of the last generation), in eval mode.
    out : pathlib.Path
        The run folder.
    finished : bool
        False when ``stop_after`` ended the run early.
    resumed_from : int
        Global epochs already done when this session started (0 for a fresh run).
    """

    config: TrainConfig
    records: tuple[EpochRecord, ...]
    summary: Summary
    split: RunSplit
    model: nn.Module
    out: Path
    finished: bool
    resumed_from: int

    #: The per-epoch record fields that :meth:`headline` returns as curves by default.
    CURVE_FIELDS = (
        "global_epoch",
        "test_acc",
        "val_acc",
        "train_acc_clean",
        "train_acc_flipped_given",
        "train_acc_flipped_true",
        "loss",
    )

    def headline(self, curves: tuple[str, ...] = CURVE_FIELDS) -> dict[str, Any]:
        """The run's numbers as the benchmark reports use them: early-stopped, best and final test
        accuracy, final memorisation / recovery / clean accuracy, data, training seconds, and the
        per-epoch ``curves`` (record fields by name)."""
        s, last = self.summary, self.records[-1]
        return {
            "best_epoch": s.best_epoch,
            "test_acc_at_best_val": s.best_epoch_test_acc,
            "final_test_acc": s.final_test_acc,
            "best_test_acc": s.best_test_acc,
            "final_memorised": last.train_acc_flipped_given,
            "final_recovered": last.train_acc_flipped_true,
            "final_clean_acc": last.train_acc_clean,
            "data": s.data,
            "seconds": s.timings.get("train"),
            "curves": {k: [getattr(r, k) for r in self.records] for k in curves},
        }


#############################################
#                   Data                    #
#############################################


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA if available else CPU; ``"cuda"`` must be available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train: device must be 'cpu' or 'auto' here; got 'cuda' but CUDA is not available")
    return torch.device(name)


def load_data(cfg: TrainConfig) -> CifarData:
    """Read CIFAR-10 (:func:`deep.data.load_cifar10`), or make the synthetic set (``data=None``).

    With ``download`` the official archive is fetched into the folder ``data`` first
    (reused when already there with the right checksum) and read from there.
    """
    if cfg.data is None:
        return fake_cifar_arrays(*SYNTHETIC_PER_CLASS, seed=cfg.seed)
    path = download_cifar10(cfg.data, progress=cfg.progress) if cfg.download else cfg.data
    return load_cifar10(path, cache_dir=cfg.cache_dir, progress=cfg.progress)


#############################################
#             Model and optimiser           #
#############################################


def make_student(cfg: TrainConfig, generation: int, dd: DeviceData, device: torch.device) -> nn.Module:
    """A freshly initialised network for ``generation`` (init seed ``seed + generation - 1``).

    FastNet gets airbench's patch-whitening stem from (up to) 5000 training images.
    """
    model = make_model(
        cfg.model, num_classes=NUM_CLASSES, seed=cfg.seed + generation - 1, device=device, **dict(cfg.model_options)
    )
    if hasattr(model, "init_whitening"):
        # nn.Module types unknown attributes as Tensor | Module; this one is a method (FastNet's)
        cast(Any, model).init_whitening(dd.x_train[:5000])
    return model


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with Nesterov momentum (plain SGD when momentum is 0) and L2 weight decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0, weight_decay=cfg.weight_decay)


def lr_factor(step: int, total: int, schedule: str, warmup: float) -> float:
    """Learning-rate multiplier at optimiser step ``step`` (0-based) of ``total``.

    ``"linear"``: with ``u = (step + 1/2) / total`` (the step's midpoint, so no step has
    lr 0), ``u / warmup`` while ``u < warmup``, then ``(1 - u) / (1 - warmup)`` -- a
    triangle peaking at ``warmup``, as airbench's piecewise-linear schedule.
    ``"constant"``: 1.
    """
    if schedule == "constant":
        return 1.0
    u = (step + 0.5) / total
    if u < warmup:
        return u / warmup
    return (1.0 - u) / (1.0 - warmup)


#############################################
#                 Training                  #
#############################################


def _rng_state(gen: torch.Generator, device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "data": gen.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], gen: torch.Generator, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["data"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def initial_targets(
    cfg: TrainConfig, generation: int, dd: DeviceData, teacher: nn.Module | None
) -> tuple[torch.Tensor | None, float | None]:
    """Carried per-sample targets at the start of a generation, and its alpha.

    ``"self-distill"``, ``"sat"``: ``onehot(y~)`` (their target momentum varies per epoch;
    alpha None). ``"generations"``, generation k > 1: ``alpha_k onehot(y~) + (1 - alpha_k) q``
    with ``q`` the teacher's eval-mode prediction on the un-augmented training images and
    ``alpha_k = scheduled_weight(weight_schedule, alpha, k - 1, generations)``. Otherwise None.
    """
    if cfg.method in ("self-distill", "sat"):
        return one_hot(dd.y_train, NUM_CLASSES), None
    if cfg.method == "generations" and generation > 1:
        assert teacher is not None  # generation k > 1 is taught by generation k - 1's student (train)
        q = predictions(logits_of(teacher, dd.x_train, cfg.eval_batch_size), soft=cfg.soft)
        alpha = scheduled_weight(cfg.weight_schedule, cfg.alpha, generation - 1, cfg.generations)
        return generation_targets(one_hot(dd.y_train, NUM_CLASSES), q, alpha), alpha
    return None, None


def epoch_momentum(cfg: TrainConfig, epoch: int) -> float:
    """Target momentum (weight on the carried target) in epoch ``epoch`` (0-based) of
    self-distill / sat: 1 (targets stay one-hot) before ``cfg.distill_start``, then
    :func:`deep.methods.scheduled_weight` of ``cfg.target_momentum``."""
    if epoch < cfg.distill_start:
        return 1.0
    return scheduled_weight(cfg.weight_schedule, cfg.target_momentum, epoch, cfg.epochs)


@dataclass(frozen=True, eq=False)
class EpochStats:
    """What one training pass returns: mean loss, last lr, optimiser step count after the
    epoch, the carried targets for the next epoch (None for ce / interp), the fraction of
    targets whose argmax is the true label (all / flipped images), and interp's mean lam."""

    loss: float
    lr: float
    step: int
    targets: torch.Tensor | None
    target_agreement: float
    target_agreement_flipped: float | None
    lam: float | None


def train_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    cfg: TrainConfig,
    dd: DeviceData,
    targets: torch.Tensor | None,
    gen: torch.Generator,
    *,
    step: int,
    total_steps: int,
    target_momentum: float | None,
    desc: str,
) -> EpochStats:
    """One pass over the training images (shuffled batches, augmented on the device).

    For ``"self-distill"`` the returned ``targets`` are ``t_{e+1}``, built row by row
    from each sample's prediction in this pass (:func:`deep.methods.chained_targets`).
    For ``"sat"`` each batch's rows are updated before its loss and stored back at once
    (:func:`deep.methods.sat_targets`), so the returned targets are those after the pass.
    """
    model.train()
    n = len(dd.x_train)
    device = dd.x_train.device
    # self-distill and sat carry per-sample targets (initial_targets, a checkpoint), and both have a
    # target momentum (MOMENTUM_METHODS): the asserts below state it for the type checker
    next_targets: torch.Tensor | None
    if cfg.method == "self-distill":
        assert targets is not None
        next_targets = targets.clone()
    else:
        next_targets = targets
    loss_sum = torch.zeros((), device=device)
    agree = torch.zeros((), device=device, dtype=torch.long)
    agree_flipped = torch.zeros((), device=device, dtype=torch.long)
    correct = torch.zeros((), device=device, dtype=torch.long)  # running accuracy (augmented, given labels)
    lam_sum, n_batches, seen, lr = torch.zeros((), device=device), 0, 0, cfg.lr
    order = list(batches(n, cfg.batch_size, generator=gen, shuffle=True, drop_last=False))
    bar = tqdm(order, desc=desc, disable=not cfg.progress, leave=False, file=sys.stderr)
    for i, idx in enumerate(bar):
        idx = idx.to(device)
        x = dd.x_train[idx]
        if cfg.augment:
            x = augment(x, gen, pad=4, flip=True)
        logits = model(x)
        stored = targets[idx] if targets is not None else None
        t, lam, weights = batch_targets(
            cfg.method, logits, dd.y_train[idx], stored, target_momentum=target_momentum, soft=cfg.soft, check=False
        )
        if cfg.method == "sat":
            assert next_targets is not None
            next_targets[idx] = t
        loss = soft_cross_entropy(logits, t, label_smoothing=cfg.label_smoothing, weights=weights, check=False)
        lr = cfg.lr * lr_factor(step, total_steps, cfg.lr_schedule, cfg.warmup)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        with torch.no_grad():
            loss_sum += loss.detach() * len(idx)
            correct += (logits.argmax(1) == dd.y_train[idx]).sum()
            hit = target_agreement(t, dd.y_train_true[idx])
            agree += hit.sum()
            agree_flipped += (hit & dd.flipped[idx]).sum()
            if lam is not None:
                lam_sum += lam
            if cfg.method == "self-distill":
                assert next_targets is not None and stored is not None and target_momentum is not None
                next_targets[idx] = chained_targets(stored, predictions(logits, soft=cfg.soft), target_momentum, check=False)
        n_batches += 1
        seen += len(idx)
        if cfg.progress and (i % 10 == 0 or i == len(order) - 1):
            bar.set_postfix(loss=f"{float(loss_sum) / seen:.3f}", acc=f"{float(correct) / seen:.3f}", lr=f"{lr:.3g}")
    bar.close()
    n_flipped = int(dd.flipped.sum())
    return EpochStats(
        loss=float(loss_sum) / n,
        lr=float(lr),
        step=step,
        targets=next_targets,
        target_agreement=float(agree) / n,
        target_agreement_flipped=float(agree_flipped) / n_flipped if n_flipped else None,
        lam=float(lam_sum) / n_batches if cfg.method == "interp" else None,
    )


@dataclass
class RunState:
    """Everything a checkpoint holds: the one definition of its keys.

    Written after every epoch by :func:`save_run_state` and read back by
    :func:`load_run_state` (for ``resume`` and for the Ctrl-C message of :func:`main`).
    """

    config: dict[str, Any]
    generation: int
    epoch: int  # epochs of this generation done
    step: int  # optimiser steps of this generation done (the lr schedule's position)
    gen_alpha: float | None
    model: dict[str, Any]
    optimizer: dict[str, Any]
    targets: torch.Tensor | None
    rng: dict[str, Any]
    records: list[dict[str, Any]]
    train_predictions: list[np.ndarray]
    elapsed: float
    train_idx: np.ndarray
    labels: np.ndarray

    @classmethod
    def capture(
        cls, cfg: TrainConfig, state: Generation, history: History, split: RunSplit, rng: torch.Generator, device: torch.device
    ) -> RunState:
        """The checkpoint after ``state``'s epoch ``state.first_epoch``: the inverse of :func:`restore_generation`."""
        return cls(
            config=cfg.to_dict(),
            generation=state.index,
            epoch=state.first_epoch,
            step=state.step,
            gen_alpha=state.alpha,
            model=state.model.state_dict(),
            optimizer=state.optimizer.state_dict(),
            targets=None if state.targets is None else state.targets.detach().cpu(),
            rng=_rng_state(rng, device),
            records=[r.to_dict() for r in history.records],
            train_predictions=history.predictions,
            elapsed=history.records[-1].elapsed,
            train_idx=split.train_idx,
            labels=split.labels,
        )

    def check_matches(self, cfg: TrainConfig, split: RunSplit) -> None:
        """Refuse to resume under another config (beyond :data:`RESUME_FREE_FIELDS`) or other data."""
        new = cfg.to_dict()
        diff = sorted(k for k in new if k not in RESUME_FREE_FIELDS and self.config.get(k) != new[k])
        if diff:
            detail = ", ".join(f"{k}: {self.config.get(k)!r} -> {new[k]!r}" for k in diff)
            raise ValueError(f"train: resume needs the checkpoint's config; these fields differ: {detail}")
        if not np.array_equal(self.train_idx, split.train_idx) or not np.array_equal(self.labels, split.labels):
            raise ValueError(
                "train: resume found a different data split or noisy labels than the checkpoint's (was the data changed?)"
            )


def save_run_state(path: Path, state: RunState) -> Path:
    """Atomically write ``state`` (a plain dict on disk, so older checkpoints still load)."""
    return save_checkpoint(path, {f.name: getattr(state, f.name) for f in dataclasses.fields(RunState)})


def load_run_state(path: Path) -> RunState:
    """Read a checkpoint written by :func:`save_run_state` (tensors on the CPU; RNG states must stay there)."""
    raw = load_checkpoint(path, map_location="cpu")
    raw.setdefault("train_predictions", [])  # checkpoints written before per-epoch predictions were kept
    return RunState(**{f.name: raw[f.name] for f in dataclasses.fields(RunState)})


@dataclass
class Generation:
    """The training state of one generation: network, optimiser, carried targets and position.

    ``step`` and ``first_epoch`` (the next epoch to run) advance as the generation trains.
    """

    index: int
    model: nn.Module
    optimizer: torch.optim.SGD
    targets: torch.Tensor | None
    alpha: float | None  # the generation's alpha ("generations"); None for the other methods
    step: int
    first_epoch: int


@dataclass
class History:
    """What a run has recorded so far, empty or from its checkpoint: the epochs, the per-epoch
    class predictions on the training images (int8) and the best noisy-validation accuracy."""

    records: list[EpochRecord]
    predictions: list[np.ndarray]
    best_val: float | None
    elapsed_before: float  # seconds of the earlier sessions
    generation: int  # where this session starts

    @classmethod
    def resume(cls, saved: RunState | None) -> History:
        if saved is None:
            return cls([], [], None, 0.0, 1)
        records = [EpochRecord.from_dict(r) for r in saved.records]
        best = max((r.val_acc for r in records if r.val_acc is not None), default=None)
        predictions = [np.asarray(p, dtype=np.int8) for p in saved.train_predictions]
        return cls(records, predictions, best, float(saved.elapsed), saved.generation)

    def add(self, rec: EpochRecord) -> bool:
        """Append an epoch; True when its validation accuracy is the best so far (first of ties)."""
        self.records.append(rec)
        if rec.val_acc is None or (self.best_val is not None and rec.val_acc <= self.best_val):
            return False
        self.best_val = rec.val_acc
        return True


def save_epoch(out: Path, run_state: RunState, history: History, model: nn.Module, *, best: bool) -> None:
    """The files of a finished epoch: ``best_model.pt`` when ``best``, then the checkpoint (it holds the
    records), ``records.jsonl`` and ``train_predictions.npz``; each written atomically."""
    rec = history.records[-1]
    if best:
        save_checkpoint(
            out / "best_model.pt",
            {"global_epoch": rec.global_epoch, "generation": rec.generation, "val_acc": rec.val_acc, "model": model.state_dict()},
        )
    save_run_state(out / CHECKPOINT_FILE, run_state)
    write_records(out / "records.jsonl", history.records)
    n = len(history.predictions)
    write_split(out / "train_predictions.npz", pred=np.stack(history.predictions), global_epoch=np.arange(1, n + 1))


def start_generation(cfg: TrainConfig, index: int, dd: DeviceData, device: torch.device, teacher: nn.Module | None) -> Generation:
    """A fresh student for generation ``index`` with its initial targets (from ``teacher``, the previous one)."""
    targets, alpha = initial_targets(cfg, index, dd, teacher)
    model = make_student(cfg, index, dd, device)
    return Generation(index, model, make_optimizer(model, cfg), targets, alpha, step=0, first_epoch=0)


def restore_generation(
    state: RunState, cfg: TrainConfig, dd: DeviceData, device: torch.device, rng: torch.Generator
) -> Generation:
    """The generation a checkpoint was written in, exactly as it was (weights, optimiser, targets, RNG)."""
    model = make_student(cfg, state.generation, dd, device)
    model.load_state_dict(state.model)
    opt = make_optimizer(model, cfg)
    opt.load_state_dict(state.optimizer)
    _set_rng_state(state.rng, rng, device)
    targets = state.targets.to(device) if state.targets is not None else None
    return Generation(state.generation, model, opt, targets, state.gen_alpha, step=int(state.step), first_epoch=int(state.epoch))


@dataclass(frozen=True)
class RunInputs:
    """What every epoch of a run reads: the config, the data on the device, the frequency subset,
    the batch-order generator, the device and the schedule's length in optimiser steps."""

    cfg: TrainConfig
    dd: DeviceData
    split: RunSplit
    freq: FrequencySubset | None
    rng: torch.Generator
    device: torch.device
    total_steps: int


def run_epoch(run: RunInputs, state: Generation, epoch: int, history: History, t_start: float) -> EpochRecord:
    """Train epoch ``epoch`` of ``state``'s generation (advancing its step, targets and next epoch),
    measure the network and return the epoch's record; its training predictions join ``history``."""
    cfg, g = run.cfg, state.index
    t0 = time.perf_counter()
    momentum = epoch_momentum(cfg, epoch) if cfg.method in MOMENTUM_METHODS else None
    desc = (
        f"gen {g}/{cfg.generations} epoch {epoch + 1}/{cfg.epochs}" if cfg.generations > 1 else f"epoch {epoch + 1}/{cfg.epochs}"
    )
    stats = train_epoch(
        state.model,
        state.optimizer,
        cfg,
        run.dd,
        state.targets,
        run.rng,
        step=state.step,
        total_steps=run.total_steps,
        target_momentum=momentum,
        desc=desc,
    )
    state.step, state.targets, state.first_epoch = stats.step, stats.targets, epoch + 1
    metrics, p_train = measure(state.model, run.dd, run.split, cfg, run.freq)
    history.predictions.append(p_train.cpu().numpy().astype(np.int8))
    _sync(run.device)
    return EpochRecord(
        epoch=epoch + 1,
        generation=g,
        global_epoch=len(history.records) + 1,
        loss=stats.loss,
        lr=stats.lr,
        time=time.perf_counter() - t0,
        elapsed=history.elapsed_before + time.perf_counter() - t_start,
        target_agreement=stats.target_agreement,
        target_agreement_flipped=stats.target_agreement_flipped,
        alpha=state.alpha,
        target_momentum=momentum,
        lam=stats.lam,
        **metrics,
    )


def describe_data(data: CifarData, split: RunSplit, cfg: TrainConfig, device: torch.device) -> dict[str, Any]:
    """summary.json's ``data`` block: the source, split sizes, realised noise and the device."""
    return {
        "source": str(getattr(data, "source", cfg.data)),
        "n_train": len(split.train_idx),
        "n_val": len(split.val_idx),
        "n_test": len(split.test_idx),
        "n_flipped": int(split.flipped.sum()),
        "realised_error_rate": float(split.flipped.mean()) if len(split.flipped) else 0.0,
        "val_realised_error_rate": float((split.val_labels != split.val_true_labels).mean()) if len(split.val_labels) else None,
        "noise_kind": split.noise_kind,
        "noise_rate": split.noise_rate,
        "device": str(device),
    }


def train(config: TrainConfig) -> TrainResult:
    """Run (or resume) a training run described by ``config``; see the module docstring.

    Parameters
    ----------
    config : TrainConfig

    Returns
    -------
    TrainResult

    Raises
    ------
    ValueError
        Bad device, an unusable split, or a resume against a different config / data;
        :class:`deep.data.CifarFormatError` for unreadable data.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"train: config must be a TrainConfig; got {type(config).__name__}")
    cfg = config
    t_start = time.perf_counter()
    device = resolve_device(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT_FILE
    if not cfg.resume and (ckpt_path.exists() or (out / "summary.json").exists()):
        raise ValueError(
            f"train: out {str(out)!r} already holds a run; pass resume=True (--resume) to continue it or choose another out"
        )

    # ---- data: read, subset, noise once (seeded), split, move to the device
    data = load_data(cfg)
    split = make_split(data.train_labels, data.test_labels, cfg)
    dd = to_device_data(data, split, device)
    freq = frequency_setup(dd, split, cfg)
    write_split(out / "split.npz", **{k: v for k, v in dataclasses.asdict(split).items() if isinstance(v, np.ndarray)})
    t_data = time.perf_counter() - t_start

    saved = load_run_state(ckpt_path) if cfg.resume and ckpt_path.exists() else None
    if saved is not None:
        saved.check_matches(cfg, split)
    history = History.resume(saved)
    resumed_from = len(history.records)

    devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # the caller's global RNG state is left as it was
        torch.manual_seed(cfg.seed)
        gen = torch.Generator()  # CPU: batch order and augmentation are the same on any device
        gen.manual_seed(cfg.seed)
        run = RunInputs(cfg, dd, split, freq, gen, device, cfg.epochs * math.ceil(len(split.train_idx) / cfg.batch_size))
        model: nn.Module | None = None
        stopped = False
        for g in range(history.generation, cfg.generations + 1):
            # ---- a fresh student per generation (the previous one is its teacher), or the checkpoint's
            state = (
                restore_generation(saved, cfg, dd, device, gen)
                if saved is not None and g == history.generation
                else start_generation(cfg, g, dd, device, teacher=model)
            )
            model = state.model
            # ---- loop: train and measure an epoch, then its files (checkpoint first: it holds the records)
            for e in range(state.first_epoch, cfg.epochs):
                if cfg.stop_after is not None and len(history.records) >= cfg.stop_after:
                    stopped = True
                    break
                rec = run_epoch(run, state, e, history, t_start)
                best = history.add(rec)
                save_epoch(out, RunState.capture(cfg, state, history, split, gen, device), history, model, best=best)
                if cfg.progress:
                    _print_epoch(rec)
            if stopped:
                break
        assert model is not None  # the generation loop ran: a checkpoint's generation is <= cfg.generations
        model.eval()

    records = history.records
    finished = len(records) == cfg.epochs * cfg.generations
    total = history.elapsed_before + time.perf_counter() - t_start
    timings = {
        "total": total,
        "this_session": time.perf_counter() - t_start,
        "data": t_data,
        "train": float(sum(r.time for r in records)),
    }
    summary = summarize(
        records, finished=finished, data=describe_data(data, split, cfg, device), config=cfg.to_dict(), timings=timings
    )
    write_json(out / "summary.json", summary.to_dict())
    return TrainResult(
        config=cfg,
        records=tuple(records),
        summary=summary,
        split=split,
        model=model,
        out=out,
        finished=finished,
        resumed_from=resumed_from,
    )


def _print_epoch(rec: EpochRecord) -> None:
    def f(v: float | None) -> str:
        return "  -   " if v is None else f"{v:.4f}"

    tqdm.write(
        f"gen {rec.generation} epoch {rec.epoch:3d} | loss {rec.loss:.4f} | test {f(rec.test_acc)} | val {f(rec.val_acc)} "
        f"| clean {f(rec.train_acc_clean)} | flipped given {f(rec.train_acc_flipped_given)} true {f(rec.train_acc_flipped_true)} "
        f"| {rec.time:.1f}s",
        file=sys.stderr,
    )


#############################################
#                   CLI                     #
#############################################


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point. Bad options or unreadable data exit with a one-line message."""
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        result = train(cfg)
    except (CifarFormatError, ValueError, TypeError, OSError) as exc:
        msg = " ".join(str(exc).split())
        raise SystemExit(f"deep.train: error: {msg}") from None
    except KeyboardInterrupt:
        ckpt = Path(args.out) / CHECKPOINT_FILE
        again = " ".join(sys.argv[1:] if argv is None else list(argv))
        if ckpt.exists():
            done = len(load_run_state(ckpt).records)
            raise SystemExit(
                f"deep.train: interrupted; {done} epoch(s) are saved in {args.out}; continue with: "
                f"python -m deep.train {again}{'' if args.resume else ' --resume'}"
            ) from None
        raise SystemExit(f"deep.train: interrupted before the first epoch ended; nothing was saved in {args.out}") from None
    s = result.summary
    if s.best_epoch is not None:
        line = f"best epoch {s.best_epoch} (noisy val {s.best_val_acc:.4f}): test {s.best_epoch_test_acc:.4f}; final test {s.final_test_acc:.4f}"
    else:
        line = f"final test {s.final_test_acc:.4f}" if s.final_test_acc is not None else "no epochs run"
    print(f"{line}; records in {result.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
