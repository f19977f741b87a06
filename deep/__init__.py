"""deep: torch networks on noisy CIFAR-10, the training methods, and what the theory predicts about them.

Readers (:mod:`deep.data`), a run's subsets and splits (:mod:`deep.splits`), batched on-device augmentation (:mod:`deep.augment`), networks
(:mod:`deep.models`), the empirical NTK (:mod:`deep.ntk`), target rules (:mod:`deep.methods`),
the training loop and CLI (``from deep.train import train``; ``python -m deep.train``), per-epoch records
(:mod:`deep.records`) and full-batch GD for NTK comparisons (:mod:`deep.fullbatch`).
"""

from deep.config import TrainConfig
from deep.data import CifarData, CifarFormatError, download_cifar10, load_cifar10
from deep.fullbatch import FullBatchRun, train_full_batch
from deep.models import MODELS, NTKMLP, FastNet, ResNet18, ShakeShake26, make_model
from deep.ntk import empirical_ntk, empirical_ntk_loop, ntk_method
from deep.splits import split_validation, subset_indices

__all__ = [
    "CifarData",
    "CifarFormatError",
    "load_cifar10",
    "download_cifar10",
    "subset_indices",
    "split_validation",
    "MODELS",
    "make_model",
    "FastNet",
    "ResNet18",
    "ShakeShake26",
    "NTKMLP",
    "empirical_ntk",
    "empirical_ntk_loop",
    "ntk_method",
    "TrainConfig",
    "train_full_batch",
    "FullBatchRun",
]
