"""confirm, parts 2 and 3: the feature-learning regime (P3, P4) and the network's own kernel (P1, P2).

Part 2 trains a CNN by SGD on noisy CIFAR-10 with :func:`deep.train.train` (one run folder
per method and seed, resumable) until plain cross-entropy has memorised the flipped labels,
with the target rules ``ce``, ``self-distill`` (Dong et al. 2019), ``sat`` (Self-Adaptive
Training, Huang, Zhang, Zhang 2020) and ``generations`` (Borup & Andersen 2021); early
stopping is CE's epoch of best NOISY validation accuracy.

Part 3 takes the empirical NTK (trace over the logits) of a CE run's network at
initialisation and at its early-stopping epoch on a fixed subset of training images and asks
the two questions of AIR: is the clean-label energy in the top eigen-directions and the
noise in the tail (:func:`theory.air.label_spectrum`)? and does the linearised model's
ordering of the examples (:func:`theory.air.first_fit_times`) predict when the trained
network first fits each of them (:func:`deep.records.first_fit_epochs`)?
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deep.files import CHECKPOINT_FILE

__all__ = [
    "train_or_resume",
    "TRAIN_SIZE_KEYS",
    "kernel_part",
    "kernel_air_numbers",
    "centred_one_hot",
    "as_inf",
    "ENTK_FRACTIONS",
]

ENTK_FRACTIONS = (0.01, 0.05, 0.10)  # top 1% / 5% / 10% of the eigen-directions (P1)


TRAIN_SIZE_KEYS = ("model", "model_options", "epochs", "batch_size", "lr", "subset", "test_subset")


def train_or_resume(out: Path, sizes: dict, **fields: Any) -> Any:
    """:func:`deep.train.train` in the folder ``out``, resumed from its checkpoint when it has one: the network
    and sizes (``TRAIN_SIZE_KEYS``) from ``sizes``, every other ``TrainConfig`` field from ``fields``."""
    from deep.config import TrainConfig
    from deep.train import train

    sized = {k: sizes[k] for k in TRAIN_SIZE_KEYS}
    return train(TrainConfig(**sized, **fields, out=str(out), resume=(out / CHECKPOINT_FILE).exists()))


def _rebuild(run_dir: Path, device: str) -> tuple[Any, Any, Any, Any]:
    """The run's config, split, device tensors and a freshly initialised network (generation 1)."""
    import json

    from deep.config import TrainConfig
    from deep.splits import make_split, to_device_data
    from deep.train import load_data, make_student, resolve_device

    config = json.loads((run_dir / "summary.json").read_text())["config"]
    cfg = TrainConfig.from_dict({**config, "resume": False, "progress": False})
    dev = resolve_device(device)
    data = load_data(cfg)
    split = make_split(data.train_labels, data.test_labels, cfg)
    dd = to_device_data(data, split, dev)
    return cfg, split, dd, make_student(cfg, 1, dd, dev)


def centred_one_hot(labels: np.ndarray) -> np.ndarray:
    """One-hot labels (10 classes) minus their column means (the constant direction removed)."""
    y = np.eye(10)[labels]
    return y - y.mean(axis=0)


def kernel_part(run_dir: Path, m: int, seed: int, device: str) -> dict:
    """eNTK of a CE run's network at init and at its early-stopping epoch on ``m`` training images.

    Returns the label-energy shares (clean, noise) in the top 1% / 5% / 10% directions, the
    predicted half-fit times of the ``m`` examples under each kernel (``<u_i, y_i> >=
    ||y_i||^2 / 2`` in linearised gradient flow on the centred noisy labels; the argmax
    first-fit times beside them), and the measured first-fit epochs (prediction == given
    label) of every training example.
    """
    import torch

    from deep.ntk import empirical_ntk
    from deep.records import first_fit_epochs, load_checkpoint

    cfg, split, dd, model = _rebuild(run_dir, device)
    n = len(split.train_idx)
    pos = np.sort(np.random.default_rng(seed).permutation(n)[: min(m, n)])
    X = dd.x_train[torch.as_tensor(pos, device=dd.x_train.device)]
    given, true = split.labels[pos], split.true_labels[pos]
    ks = [max(1, int(round(f * len(pos)))) for f in ENTK_FRACTIONS]
    best = load_checkpoint(run_dir / "best_model.pt")
    out: dict[str, Any] = {"positions": pos, "ks": ks, "fractions": list(ENTK_FRACTIONS), "es_epoch": int(best["global_epoch"])}
    kernels = {}
    for when in ("init", "es"):
        if when == "es":
            model.load_state_dict(best["model"])
        K = empirical_ntk(model, X, mode="trace", dtype=torch.float64).cpu().numpy()
        kernels[when] = kernel_air_numbers(K, given, true, ks, argmax=True)
    out["kernels"] = kernels
    preds = np.load(run_dir / "train_predictions.npz")["pred"]
    measured = first_fit_epochs(preds, split.labels)
    out["measured_fit_all"] = np.where(np.isfinite(measured), measured, -1.0)  # -1: never fitted (JSON has no inf)
    out["flipped_all"] = split.flipped
    out["flipped"] = split.flipped[pos]
    return out


def kernel_air_numbers(K: np.ndarray, given: np.ndarray, true: np.ndarray, ks: list[int], *, argmax: bool = False) -> dict:
    """One kernel of the images under AIR: the clean and noise label-energy shares in its top ``ks``
    eigen-directions, its top 100 eigenvalues and each example's predicted half-fit time on the given
    labels (in units of 1/d_max; -1 = never), with ``argmax`` also the time its argmax first matches."""
    from kernels import spectrum
    from theory.air import first_fit_times, label_spectrum

    y_noisy = centred_one_hot(given)
    s = spectrum(K, psd="clip")
    ls = label_spectrum(s, centred_one_hot(true), y_noisy)
    d_max = float(s.values[0])
    times = np.logspace(-3, 7, 400) / d_max

    def encoded(fit: np.ndarray) -> np.ndarray:
        return np.where(np.isfinite(fit), fit * d_max, -1.0)  # JSON has no inf

    out = {
        "clean_share": ls.share_at(ks, "clean"),
        "noise_share": ls.share_at(ks, "noise"),
        "eigenvalues": np.asarray(s.values)[:100],
        "predicted_fit": encoded(first_fit_times(s, y_noisy, given, times, criterion="half")),
    }
    if argmax:
        out["predicted_fit_argmax"] = encoded(first_fit_times(s, y_noisy, given, times))
    return out


def as_inf(a: Any) -> np.ndarray:
    """Inverse of the ``-1 = never`` encoding used in the JSON parts."""
    v = np.asarray(a, dtype=np.float64)
    return np.where(v < 0, np.inf, v)
