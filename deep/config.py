"""One frozen configuration for a training run (:func:`deep.train.train`).

Every hyper-parameter of a run sits in :class:`TrainConfig`, which is passed
explicitly to each stage (data, model, loop, records): nothing is read from a
global. Bounds are data (:data:`CONSTRAINTS`), checked through
:mod:`kernels.checks` when the config is built, so a bad value fails at once
with an error that names the field and what it allows::

    TrainConfig: lr must be a float in (0, inf); got -1.0

Units follow the torch optimiser: ``lr`` and ``weight_decay`` are the values
handed to :class:`torch.optim.SGD` (per step, not per 1024 examples).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kernels.checks import Interval, Options, check_param, check_params

__all__ = [
    "TrainConfig",
    "CONSTRAINTS",
    "METHODS",
    "WEIGHT_SCHEDULES",
    "LR_SCHEDULES",
    "DEVICES",
    "RESUME_FREE_FIELDS",
    "build_parser",
    "config_from_args",
]

METHODS = ("ce", "self-distill", "sat", "interp", "generations")
WEIGHT_SCHEDULES = ("constant", "linear")
# The methods that carry per-sample targets with a target momentum, and the one with alpha.
MOMENTUM_METHODS = ("self-distill", "sat")
ALPHA_METHODS = ("generations",)
LR_SCHEDULES = ("linear", "constant")
DEVICES = ("cpu", "cuda", "auto")

# Fields that may differ between a run and its --resume continuation.
RESUME_FREE_FIELDS = ("resume", "progress", "stop_after", "device", "out", "data", "download", "cache_dir")


def _model_names() -> tuple[str, ...]:
    from deep.models import MODELS  # deep.models imports torch; keep config import light

    return tuple(MODELS)


_NONE = Options((None,))
_POS_INT = Interval(int, 1, None, "left")

# Field -> constraint. Fields that may also be None are listed in _OPTIONAL.
CONSTRAINTS: dict[str, Interval | Options] = {
    "method": Options(METHODS),
    "epochs": _POS_INT,
    "batch_size": _POS_INT,
    "eval_batch_size": _POS_INT,
    "lr": Interval(float, 0, None, "neither"),
    "lr_schedule": Options(LR_SCHEDULES),
    "warmup": Interval(float, 0, 1, "left"),
    "momentum": Interval(float, 0, 1, "left"),
    "weight_decay": Interval(float, 0, None, "left"),
    "label_smoothing": Interval(float, 0, 1, "left"),
    "seed": Interval(int, 0, None, "left"),
    "device": Options(DEVICES),
    "subset": _POS_INT,
    "test_subset": _POS_INT,
    "val_fraction": Interval(float, 0, 1, "left"),
    "alpha": Interval(float, 0, 1, "both"),
    "target_momentum": Interval(float, 0, 1, "both"),
    "weight_schedule": Options(WEIGHT_SCHEDULES),
    "distill_start": Interval(int, 0, None, "left"),
    "soft": Options((True, False)),
    "generations": _POS_INT,
    "freq_subset": Interval(int, 0, None, "left"),
    "augment": Options((True, False)),
    "resume": Options((True, False)),
    "progress": Options((True, False)),
    "download": Options((True, False)),
    "stop_after": _POS_INT,
}
_OPTIONAL = ("subset", "test_subset", "stop_after")


@dataclass(frozen=True)
class TrainConfig:
    """All settings of one training run (frozen; build a variant with :meth:`replace`).

    Parameters
    ----------
    data : str or None, default=None
        CIFAR-10 location: ``cifar-10-batches-py/``, ``cifar-10-python.tar.gz``, or an
        image-folder tree (``train/<class>/*.png|jpg``, ``test/...``) or its tar.gz,
        read by :func:`deep.data.load_cifar10`. ``None`` makes a small synthetic
        CIFAR-shaped set in memory (:func:`deep.synthetic.fake_cifar_arrays`, 16 train
        and 8 test images per class, seeded by ``seed``; no data files are written) --
        a smoke test of the pipeline, not a benchmark.
    noise : str, default="symmetric:0.4"
        Label-noise spec for :func:`theory.noise.make_noise` (``"none"``,
        ``"symmetric:<rate>"`` (new label from the 9 other classes, Co-teaching),
        ``"uniform:<rate>"`` (resampled from all 10, DivideMix / ELR / SAT),
        ``"pair:<rate>"``, ``"asym:<rate>"``). Injected once,
        before epoch 0, into the training + validation labels with ``seed``.
    method : {"ce", "self-distill", "sat", "interp", "generations"}, default="ce"
        How targets are formed (see :mod:`deep.methods`).
    model : str, default="fastnet"
        A name in :data:`deep.models.MODELS`.
    model_options : tuple of (str, value) pairs, default=()
        Keyword options for :func:`deep.models.make_model` (a dict is accepted and
        stored as sorted pairs), e.g. ``{"width": 2048}`` for ``"mlp"``,
        ``{"widths": (32, 64, 64)}`` for ``"fastnet"``, ``{"base_width": 16}`` for
        ``"shakeshake26"``. Names are checked against the model's factory.
    epochs : int >= 1, default=10
        Epochs per generation.
    batch_size : int >= 1, default=256
        Training batch size (the last batch of an epoch may be smaller).
    eval_batch_size : int >= 1, default=1000
        Batch size of the evaluation passes.
    lr : float > 0, default=0.05
        Peak learning rate of SGD.
    lr_schedule : {"linear", "constant"}, default="linear"
        ``"linear"``: linear warm-up from 0 over the first ``warmup`` fraction of the
        steps of a generation, then linear decay to 0 at its last step (airbench's
        triangular schedule). ``"constant"``: ``lr`` throughout.
    warmup : float in [0, 1), default=0.2
        Warm-up fraction of the linear schedule.
    momentum : float in [0, 1), default=0.9
        Nesterov momentum (plain SGD when 0).
    weight_decay : float >= 0, default=5e-4
        L2 weight decay of SGD.
    label_smoothing : float in [0, 1), default=0.0
        Targets become ``(1 - eps) t + eps / C`` before the loss.
    seed : int >= 0, default=0
        Seeds the subsets, the noise, the validation split, model init, batch order
        and augmentation.
    device : {"cpu", "cuda", "auto"}, default="auto"
        ``"auto"`` picks CUDA when available.
    subset : int >= 1 or None, default=None
        Use this many training images (stratified, seeded) before the validation split
        (all of them when None or at least the number available).
    test_subset : int >= 1 or None, default=None
        Evaluate on this many test images (stratified, seeded; all when None).
    val_fraction : float in [0, 1), default=0.1
        Fraction of the (noisy) training images held out for early stopping.
    alpha : float in [0, 1], default=0.8
        ``"generations"`` only: the weight on the ground truth (the given, noisy
        label), ``t = alpha onehot(y) + (1 - alpha) teacher`` (Borup & Andersen 2021),
        as ``alpha`` means everywhere in airkit. Another value with another method
        raises.
    target_momentum : float in [0, 1], default=0.8
        ``"self-distill"`` and ``"sat"`` only: the weight m on the previous target,
        ``t <- m t + (1 - m) p`` (Dong et al. 2019 once per epoch; Self-Adaptive
        Training per batch, where the paper calls it the momentum, 0.9 there).
        Another value with another method raises. Not SGD's ``momentum``.
    weight_schedule : {"constant", "linear"}, default="constant"
        The method's weight (``alpha`` or ``target_momentum``) per epoch / generation:
        ``"linear"`` ramps it from 1 (first; keep the given targets) to the given value
        (last); see :func:`deep.methods.scheduled_weight`.
    distill_start : int >= 0, default=0
        ``"self-distill"`` and ``"sat"``: epochs of plain one-hot targets (momentum 1)
        before the carried targets start to move (SAT's start epoch E_s); must be
        below ``epochs``. 0 for the other methods.
    soft : bool, default=True
        Distil softmax outputs (True) or one-hot argmax predictions (False).
    generations : int >= 1, default=1
        Number of Borup-style generations; values > 1 need ``method="generations"``.
    freq_subset : int >= 0, default=256
        Size of the fixed training subset on which the frequency measures are taken
        every epoch (0 turns them off).
    freq_deltas : tuple of float > 0 or None, default=None
        Gaussian-filter variances delta for :func:`theory.frequency.frequency_measures`;
        ``None`` uses :func:`theory.frequency.delta_grid` on that subset.
    augment : bool, default=True
        Random crop (reflect pad 4) + horizontal flip, batched on the device.
    out : str, default="results/train"
        Output folder: ``records.jsonl``, ``checkpoint.pt``, ``split.npz``,
        ``summary.json``.
    resume : bool, default=False
        Continue from ``out/checkpoint.pt`` when present.
    progress : bool, default=True
        Show a tqdm bar per epoch.
    download : bool, default=False
        Fetch the official archive into the folder ``data`` first
        (:func:`deep.data.download_cifar10`) and read it from there.
    cache_dir : str or None, default=None
        Where :func:`deep.data.load_cifar10` caches decoded arrays (None: its default,
        ``$AIRKIT_CACHE/cifar10`` or ``~/.cache/airkit/cifar10``).
    stop_after : int >= 1 or None, default=None
        Stop (as if interrupted) once this many epochs in total, over all
        generations, are done; the schedule still follows ``epochs``. For time-sliced
        jobs and the resume test.
    """

    data: str | None = None
    noise: str = "symmetric:0.4"
    method: str = "ce"
    model: str = "fastnet"
    model_options: tuple[tuple[str, Any], ...] = ()
    epochs: int = 10
    batch_size: int = 256
    eval_batch_size: int = 1000
    lr: float = 0.05
    lr_schedule: str = "linear"
    warmup: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    seed: int = 0
    device: str = "auto"
    subset: int | None = None
    test_subset: int | None = None
    val_fraction: float = 0.1
    alpha: float = 0.8
    target_momentum: float = 0.8
    weight_schedule: str = "constant"
    distill_start: int = 0
    soft: bool = True
    generations: int = 1
    freq_subset: int = 256
    freq_deltas: tuple[float, ...] | None = None
    augment: bool = True
    out: str = "results/train"
    resume: bool = False
    progress: bool = True
    download: bool = False
    cache_dir: str | None = None
    stop_after: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.model_options, dict):
            object.__setattr__(self, "model_options", tuple(sorted(self.model_options.items())))
        if isinstance(self.model_options, list):
            object.__setattr__(self, "model_options", tuple(tuple(p) for p in self.model_options))
        validate_config(self)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping of every field (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["model_options"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.model_options}
        if out["freq_deltas"] is not None:
            out["freq_deltas"] = list(out["freq_deltas"])
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise a TypeError naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise TypeError(f"TrainConfig: unknown field(s) {unknown}; allowed: {sorted(names)}")
        values = dict(values)
        if values.get("freq_deltas") is not None:
            values["freq_deltas"] = tuple(values["freq_deltas"])
        return cls(**values)


def validate_config(cfg: TrainConfig) -> None:
    """Check every field of ``cfg`` against :data:`CONSTRAINTS` (and a few cross-field rules).

    Raises
    ------
    TypeError, ValueError
        ``"TrainConfig: <field> must be <allowed>; got <value>"``.
    """
    fn = "TrainConfig"
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    for name in _OPTIONAL:
        if values[name] is None:
            values.pop(name)
    check_params(fn, CONSTRAINTS, **values)
    check_param(fn, "model", cfg.model, Options(_model_names()))
    _check_model_options(cfg.model, cfg.model_options)
    if cfg.data is not None and not isinstance(cfg.data, str):
        raise TypeError(f"{fn}: data must be a path string or None (synthetic data); got {cfg.data!r}")
    if cfg.cache_dir is not None and not isinstance(cfg.cache_dir, str):
        raise TypeError(f"{fn}: cache_dir must be a path string or None; got {cfg.cache_dir!r}")
    if not isinstance(cfg.out, str) or not cfg.out:
        raise TypeError(f"{fn}: out must be a non-empty path string; got {cfg.out!r}")
    _check_noise(cfg.noise)
    if cfg.freq_deltas is not None:
        if not isinstance(cfg.freq_deltas, tuple) or not cfg.freq_deltas:
            raise TypeError(f"{fn}: freq_deltas must be None or a non-empty tuple of floats > 0; got {cfg.freq_deltas!r}")
        for d in cfg.freq_deltas:
            check_param(fn, "freq_deltas", d, Interval(float, 0, None, "neither"))
            if math.isinf(float(d)):
                raise ValueError(f"{fn}: freq_deltas must be finite floats > 0; got {d!r}")
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for name, methods, meaning in (
        ("alpha", ALPHA_METHODS, "the weight on the ground truth (the given label) of method='generations'"),
        ("target_momentum", MOMENTUM_METHODS, "the weight on the previous target of method='self-distill' or 'sat'"),
    ):
        if cfg.method not in methods and getattr(cfg, name) != defaults[name]:
            raise ValueError(
                f"{fn}: {name} is {meaning}; method={cfg.method!r} does not use it (drop it or change the "
                f"method); got {name}={getattr(cfg, name)!r}"
            )
    if cfg.weight_schedule != defaults["weight_schedule"] and cfg.method not in MOMENTUM_METHODS + ALPHA_METHODS:
        raise ValueError(
            f"{fn}: weight_schedule schedules alpha (generations) or target_momentum (self-distill, sat); "
            f"method={cfg.method!r} uses neither; got weight_schedule={cfg.weight_schedule!r}"
        )
    if cfg.generations > 1 and cfg.method != "generations":
        raise ValueError(
            f"{fn}: generations must be 1 unless method='generations'; got generations={cfg.generations} with method={cfg.method!r}"
        )
    if cfg.distill_start and cfg.method not in ("self-distill", "sat"):
        raise ValueError(
            f"{fn}: distill_start must be 0 unless method is 'self-distill' or 'sat'; got distill_start={cfg.distill_start} with method={cfg.method!r}"
        )
    if cfg.distill_start >= cfg.epochs:
        raise ValueError(
            f"{fn}: distill_start must be below epochs={cfg.epochs} (the targets would never move); got {cfg.distill_start}"
        )
    if cfg.download and cfg.data is None:
        raise ValueError(f"{fn}: download needs a data path to download into; got data=None")


def _check_model_options(model: str, options: Any) -> None:
    """Options must be (name, value) pairs whose names the model's factory accepts."""
    import inspect

    from deep.models import MODELS

    fn = "TrainConfig"
    if not isinstance(options, tuple) or not all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in options):
        raise TypeError(f"{fn}: model_options must be a dict or a tuple of (name, value) pairs; got {options!r}")
    allowed = [p for p in inspect.signature(MODELS[model]).parameters if p != "num_classes"]
    for name, _ in options:
        if name not in allowed:
            raise ValueError(f"{fn}: model_options for model {model!r} must be among {allowed or 'none'}; got {name!r}")


def _check_noise(spec: Any) -> None:
    """Parse the noise spec once on dummy labels so a bad spec fails before any data is read."""
    from theory.noise import make_noise

    if not isinstance(spec, str):
        raise TypeError(f"TrainConfig: noise must be a string such as 'symmetric:0.4' or 'none'; got {spec!r}")
    try:
        make_noise(spec, list(range(10)), num_classes=10, seed=0)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"TrainConfig: noise is invalid: {exc}") from None


# ----------------------------------------------------------------------------- command line


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but errors are one line (no usage block)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _deltas(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated floats > 0, e.g. 10,100,1000; got {text!r}") from None


def _model_options(items: Sequence[str]) -> dict[str, Any]:
    """``["width=2048", "widths=(32,64,64)"]`` -> ``{"width": 2048, "widths": (32, 64, 64)}``."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"TrainConfig: model_options (--model-option) must be KEY=VALUE; got {item!r}")
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()
    return out


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m deep.train`` argument parser (defaults from :class:`TrainConfig`)."""
    d = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    p = _OneLineParser(
        prog="python -m deep.train",
        description="Train a CIFAR-10 network on noisy labels (ce, self-distill, sat, interp, generations) and record every epoch.",
    )

    def option(name: str, help: str, **kwargs: Any) -> None:
        """``--<name>`` for the TrainConfig field ``name`` with its default; a field whose default is
        not None also gets its type (int/float) and '(default ...)' at the end of the help."""
        if d[name] is not None:
            help += " (default %(default)s)"
        if isinstance(d[name], int | float):
            kwargs.setdefault("type", type(d[name]))
        p.add_argument("--" + name.replace("_", "-"), default=d[name], help=help, **kwargs)

    option(
        "data",
        "CIFAR-10: cifar-10-batches-py/, cifar-10-python.tar.gz, or an image-folder tree (train/<class>/*.png|jpg) or its tar.gz; omit for a small synthetic smoke-test set",
        metavar="PATH",
    )
    p.add_argument(
        "--download",
        action="store_true",
        help="download the official cifar-10-python.tar.gz into the folder --data first (needs network access)",
    )
    option(
        "cache_dir",
        "where decoded CIFAR-10 arrays are cached (default: $AIRKIT_CACHE/cifar10 or ~/.cache/airkit/cifar10)",
        metavar="DIR",
    )
    option(
        "noise",
        "label noise: none, symmetric:<rate> (9 other classes), uniform:<rate> (all 10 classes), pair:<rate> or asym:<rate>",
    )
    option("method", "target rule: ce, self-distill, sat, interp or generations")
    option("model", "network: fastnet, resnet18, shakeshake26 or mlp")
    p.add_argument(
        "--model-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="network option for deep.models.make_model, repeatable; VALUE is a Python literal (e.g. width=2048, widths=(32,64,64))",
    )
    option("epochs", "epochs per generation")
    option("batch_size", "training batch size")
    option("eval_batch_size", "evaluation batch size")
    option("lr", "peak SGD learning rate")
    option("lr_schedule", "linear (warm-up then decay to 0) or constant")
    option("warmup", "warm-up fraction of the linear schedule, in [0, 1)")
    option("momentum", "Nesterov momentum in [0, 1)")
    option("weight_decay", "L2 weight decay")
    option("label_smoothing", "label smoothing in [0, 1)")
    option("alpha", "generations: weight on the given (noisy) label, in [0, 1]")
    option("target_momentum", "self-distill, sat: weight m on the previous target, t <- m t + (1 - m) p, in [0, 1]")
    option("weight_schedule", "constant, or linear from 1 to --alpha / --target-momentum")
    option("distill_start", "self-distill, sat: epochs of plain one-hot targets before the targets start to move", metavar="E")
    p.add_argument("--hard", action="store_true", help="distil one-hot argmax predictions instead of softmax outputs")
    option("generations", "number of generations K for --method generations")
    option("seed", "seed of subsets, noise, split, init, batch order and augmentation")
    option("device", "cpu, cuda or auto")
    option("subset", "use N training images (stratified) before the validation split (default: all)", type=int, metavar="N")
    option("test_subset", "evaluate on N test images (default: all)", type=int, metavar="N")
    option("val_fraction", "fraction of noisy training images held out for early stopping")
    option("freq_subset", "training images in the fixed frequency-measure subset; 0 turns it off")
    option("freq_deltas", "comma-separated filter variances delta (default: theory.frequency.delta_grid)", type=_deltas)
    p.add_argument("--no-augment", action="store_true", help="turn off random crop + flip")
    option("out", "output folder for records.jsonl, checkpoint.pt, split.npz, summary.json")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if present")
    option(
        "stop_after",
        "stop after E epochs in total (the schedule still follows --epochs); continue later with --resume",
        type=int,
        metavar="E",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars or per-epoch lines")
    return p


# TrainConfig fields whose CLI flag says the opposite (--hard sets soft=False) or needs parsing.
_NEGATED_FLAGS = {"soft": "hard", "augment": "no_augment", "progress": "no_progress"}
_PARSED_FLAGS = {"model_options": ("model_option", _model_options)}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Map parsed CLI arguments to a :class:`TrainConfig` (validated there).

    Every field is read from the flag of its own name (``--batch-size`` -> ``batch_size``),
    except the negated flags (``--hard``, ``--no-augment``, ``--no-progress``) and
    ``--model-option KEY=VALUE``; a field without a flag is an error here, not a
    silently kept default.
    """
    values: dict[str, Any] = {}
    for f in dataclasses.fields(TrainConfig):
        if f.name in _NEGATED_FLAGS:
            values[f.name] = not getattr(args, _NEGATED_FLAGS[f.name])
        elif f.name in _PARSED_FLAGS:
            flag, parse = _PARSED_FLAGS[f.name]
            values[f.name] = parse(getattr(args, flag))
        else:
            values[f.name] = getattr(args, f.name)
    return TrainConfig(**values)
