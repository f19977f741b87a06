"""confirm, part 1: the NTK regime, curve by curve (prediction P5).

NTK-parameterised MLPs (:class:`deep.models.NTKMLP`) of growing width are trained by
full-batch gradient descent on ``1/2 sum ||u - target||^2`` (centred outputs, one-hot
noisy labels) on a noisy CIFAR-10 subset, with plain targets (``gd``) and chained
self-distillation targets (``chained``, Dong et al. 2019:
``target_{k+1} = m target_k + (1 - m) u_k``, m the target momentum), and set beside
:func:`theory.air.distillation_vs_early_stopping` with the analytic ``kernels.ntk_relu`` of
the same network on the same inputs, all from ONE eigendecomposition.

Input reduction (so that a 2-core CPU can run thousands of full-batch steps at width 4096):
images are flattened, centred on the training subset and projected on its top ``dim``
principal directions; each row is then scaled to norm ``sqrt(dim)`` (``x.x / dim = 1``,
the normalisation under which the ReLU NTK of :mod:`kernels.functions` has diagonal
``depth + 1``). The network and the kernel see exactly these inputs.

Chained target momentum m: the theory fixes it. Chained targets converge to kernel ridge
regression with ridge ``(1 - m)/lr`` (:mod:`theory.dynamics`), and gradient descent stopped
at step ``k`` filters like ridge ``~ 1/(lr k)``; with ``k*`` the analytic early-stopping step
(best NOISY validation accuracy of the analytic gd curve), ``m = 1 - 1/k*``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["pca_inputs", "relative_gap", "ntk_regime"]


def pca_inputs(train: np.ndarray, others: list[np.ndarray], dim: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Project flattened images on the top ``dim`` principal directions of ``train``, rows
    scaled to norm ``sqrt(dim)``.

    Parameters
    ----------
    train : array (n, ...)  images of the training subset (uint8 or float)
    others : list of arrays (m, ...)  images projected with the training subset's basis
    dim : int  number of principal components (<= min(n, features))

    Returns
    -------
    Z_train (n, dim), [Z_other (m, dim), ...] float64
    """
    X = train.reshape(len(train), -1).astype(np.float64) / 255.0
    if not 1 <= dim <= min(X.shape):
        raise ValueError(f"pca_inputs: dim must be in [1, {min(X.shape)}] (training images x features); got {dim}")
    mu = X.mean(axis=0)
    _, _, vt = np.linalg.svd(X - mu, full_matrices=False)
    basis = vt[:dim].T

    def project(a: np.ndarray) -> np.ndarray:
        z = (a.reshape(len(a), -1).astype(np.float64) / 255.0 - mu) @ basis
        norm = np.linalg.norm(z, axis=1, keepdims=True)
        return z * (np.sqrt(dim) / np.where(norm > 0, norm, 1.0))

    return project(train), [project(o) for o in others]


def relative_gap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per recorded step: ``||a_t - b_t||_F / ||b_t||_F`` (0 where ``b_t = 0``)."""
    num = np.sqrt(((a - b) ** 2).sum(axis=(-2, -1)))
    den = np.sqrt((b**2).sum(axis=(-2, -1)))
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


# The benchmarks' names for the curves of a theory.air.LearningCurves (result.json keys).
CURVE_ATTRIBUTES = {
    "steps": "record",
    "train_mse": "train_mse",
    "train_acc_clean": "acc_clean",
    "acc_clean": "acc_clean",
    "memorised": "acc_flipped_given",
    "recovered": "acc_flipped_true",
    "test_acc": "test_acc",
    "val_acc": "val_acc",
}


def curve_arrays(curves: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """``{key: curve}`` of a :class:`theory.air.LearningCurves` under the benchmarks' names (CURVE_ATTRIBUTES)."""
    return {key: getattr(curves, CURVE_ATTRIBUTES[key]) for key in keys}


def _curves(outputs: np.ndarray, given: np.ndarray, true: np.ndarray, flipped: np.ndarray) -> dict[str, np.ndarray]:
    pred = outputs.argmax(-1)
    return {
        "train_acc_clean": (pred[:, ~flipped] == given[~flipped]).mean(-1),
        "memorised": (pred[:, flipped] == given[flipped]).mean(-1),
        "recovered": (pred[:, flipped] == true[flipped]).mean(-1),
    }


@dataclass(frozen=True)
class _Split:
    """Part 1's examples: PCA inputs of the training, validation and test subsets, and their labels."""

    Z: np.ndarray  # (n, dim) training inputs
    Zv: np.ndarray  # (n_val, dim) validation inputs
    Zt: np.ndarray  # (n_test, dim) test inputs
    given: np.ndarray  # noisy training labels
    true: np.ndarray  # clean training labels
    flipped: np.ndarray  # given != true
    val_given: np.ndarray  # noisy validation labels
    test_labels: np.ndarray


@dataclass(frozen=True)
class _Analytic:
    """Part 1's analytic side: spectrum, step size and schedule, k*, target momentum and the gd/chained curves."""

    s: Any  # kernels.Spectrum of the training NTK
    K_cross: np.ndarray  # NTK of the test rows, then the validation rows, against the training inputs
    Y: np.ndarray  # one-hot noisy training labels
    lr: float
    record: np.ndarray  # recorded steps
    k_star: int
    momentum: float
    comp: Any  # theory.air.DistillationComparison


@dataclass(frozen=True)
class _Nets:
    """What every finite network of part 1 shares: inputs and targets as tensors, dtype, device, sizes and seeds."""

    X: Any  # torch.Tensor (n, dim)
    X_test: Any  # torch.Tensor (n_test, dim)
    Y: Any  # torch.Tensor (n, 10)
    dtype: Any  # torch.dtype
    device: str
    depth: int
    steps: int
    seed: int
    seeds: int


def _split(data: Any, cfg: dict, seed: int) -> _Split:
    """Draw the stratified training, validation and test subsets, the label noise and the PCA inputs."""
    from deep.splits import subset_indices
    from theory.noise import make_noise

    n, n_val = cfg["n"], cfg["n_val"]
    pick = subset_indices(data.train_labels, n + n_val, seed=seed, stratified=True)
    rng = np.random.default_rng(seed)
    pick = rng.permutation(pick)
    tr, va = pick[:n], pick[n:]
    te = subset_indices(data.test_labels, cfg["n_test"], seed=seed, stratified=True)
    noisy = make_noise(cfg["noise"], data.train_labels[pick], num_classes=10, seed=seed)
    given, true = noisy.labels[:n], noisy.true_labels[:n]
    Z, (Zv, Zt) = pca_inputs(data.train_images[tr], [data.train_images[va], data.test_images[te]], cfg["dim"])
    return _Split(Z, Zv, Zt, given, true, given != true, noisy.labels[n:], data.test_labels[te])


def _analytic(sp: _Split, cfg: dict) -> _Analytic:
    """The NTK and its one eigendecomposition, then k*, the target momentum ``1 - 1/k*`` and the analytic curves."""
    from kernels import spectrum
    from kernels.functions import ntk_relu
    from theory.air import distillation_vs_early_stopping, predicted_curves
    from theory.noise import one_hot

    K = ntk_relu(sp.Z, depth=cfg["depth"])
    K_cross = ntk_relu(np.concatenate([sp.Zt, sp.Zv]), sp.Z, depth=cfg["depth"])  # test rows, then validation rows
    s = spectrum(K)
    lr = cfg["lr_scale"] / float(s.values[0])
    steps = cfg["steps"]
    record = np.unique(np.concatenate([[0], np.round(np.logspace(0, np.log10(steps), cfg["points"])).astype(np.int64)]))
    Y = one_hot(sp.given, 10)
    m_test = len(sp.Zt)
    common = dict(
        labels_true=sp.true,
        labels_given=sp.given,
        lr=lr,
        steps=steps,
        record=record,
        K_cross=K_cross,
        test_labels=np.concatenate([sp.test_labels, sp.val_given]),
        val_index=np.arange(m_test, m_test + len(sp.Zv)),
        val_labels=sp.val_given,
    )
    # the target momentum from the analytic gd curve's early-stopping step on the noisy validation split
    probe = predicted_curves(s, Y, targets="gd", **common)
    assert probe.best_step_val is not None  # set whenever val_index is given, as it is here
    k_star = max(int(probe.best_step_val), 1)
    momentum = 1.0 - 1.0 / max(k_star, 2)
    comp = distillation_vs_early_stopping(s, Y, target_momentum=momentum, **common)
    return _Analytic(s, K_cross, Y, lr, record, k_star, momentum, comp)


def _theory_curves(an: _Analytic, m_test: int) -> dict[str, Any]:
    """Per rule (gd, chained): the analytic curves, and the train and test outputs the gaps are measured against."""
    theory: dict[str, Any] = {}
    for rule, c in (("gd", an.comp.gd), ("chained", an.comp.chained)):
        theory[rule] = {
            **curve_arrays(c, ("test_acc", "train_acc_clean", "memorised", "recovered", "val_acc")),
            "train_outputs": np.asarray(c.path.fits),
            "test_outputs": np.asarray(c.path.predict(an.K_cross))[:, :m_test],
        }
    return theory


def _net_run(
    sp: _Split, an: _Analytic, nets: _Nets, th: dict[str, Any], width: int, rule: str, rep: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """Train one network (width, rule, seed ``rep``) by full-batch GD: its curves, gaps to the theory ``th`` and time."""
    from deep.fullbatch import train_full_batch
    from deep.models import make_model

    t1 = time.perf_counter()
    seed = nets.seed * 1000 + rep
    model = make_model(
        "mlp", in_features=sp.Z.shape[1], width=width, depth=nets.depth, seed=seed, dtype=nets.dtype, device=nets.device
    )
    momentum = an.momentum if rule == "chained" else None
    run = train_full_batch(
        model,
        nets.X,
        nets.Y,
        lr=an.lr,
        steps=nets.steps,
        record=an.record,
        X_test=nets.X_test,
        targets=rule,
        target_momentum=momentum,
    )
    assert run.test_outputs is not None  # X_test was given
    acc = (run.test_outputs.argmax(-1) == sp.test_labels).mean(-1)
    out = {
        "test_acc": acc,
        **_curves(run.train_outputs, sp.given, sp.true, sp.flipped),
        "gap_train": relative_gap(run.train_outputs, th["train_outputs"]),
        "gap_test": relative_gap(run.test_outputs, th["test_outputs"]),
        "param_change": run.relative_param_change,
        "seconds": time.perf_counter() - t1,
    }
    log(
        f"[confirm] ntk: width {width} {rule} seed {rep}: final test acc {acc[-1]:.3f} "
        f"(theory {th['test_acc'][-1]:.3f}), final train gap {out['gap_train'][-1]:.3g}, "
        f"{out['seconds']:.1f} s"
    )
    return out


def _rule_runs(
    sp: _Split, an: _Analytic, nets: _Nets, th: dict[str, Any], width: int, rule: str, log: Callable[[str], None]
) -> dict[str, Any]:
    """Every seed of one width and rule: curves and gaps stacked (seeds, ...), parameter changes listed, seconds summed."""
    runs = [_net_run(sp, an, nets, th, width, rule, rep, log) for rep in range(nets.seeds)]
    out: dict[str, Any] = {k: np.stack([r[k] for r in runs]) for k in runs[0] if k not in ("param_change", "seconds")}
    out["param_change"] = [r["param_change"] for r in runs]
    out["seconds"] = float(sum(r["seconds"] for r in runs))
    return out


def _networks(
    sp: _Split, an: _Analytic, theory: dict[str, Any], cfg: dict, seed: int, device: str, log: Callable[[str], None]
) -> dict[str, Any]:
    """Train every width, rule and seed on ``device``: ``{str(width): {rule: stacked runs}}``."""
    import torch

    dtype = torch.float64 if cfg.get("float64", False) else torch.float32
    X, X_test, Y = (torch.as_tensor(a, dtype=dtype, device=device) for a in (sp.Z, sp.Zt, an.Y))
    nets = _Nets(X, X_test, Y, dtype, device, cfg["depth"], cfg["steps"], seed, cfg["seeds"])
    return {
        str(width): {rule: _rule_runs(sp, an, nets, theory[rule], width, rule, log) for rule in ("gd", "chained")}
        for width in cfg["widths"]
    }


def _numbers(sp: _Split, an: _Analytic, cfg: dict, theory: dict[str, Any], per_width: dict[str, Any]) -> dict[str, Any]:
    """Part 1's result but its timings: sizes, step size and schedule, k*, m, the analytic and the network curves."""
    return {
        "n": cfg["n"],
        "n_val": len(sp.Zv),
        "n_test": len(sp.Zt),
        "dim": cfg["dim"],
        "depth": cfg["depth"],
        "lr": an.lr,
        "steps": cfg["steps"],
        "record": an.record,
        "d_max": float(an.s.values[0]),
        "d_min": float(an.s.values[-1]),
        "k_star": an.k_star,
        "target_momentum": an.momentum,
        "chained_ridge": (1 - an.momentum) / an.lr,
        "widths": list(cfg["widths"]),
        "seeds": cfg["seeds"],
        "noise": cfg["noise"],
        "realised_error_rate": float(sp.flipped.mean()),
        "theory": theory,
        "per_width": per_width,
        "summary": an.comp.summary,
    }


def ntk_regime(data: Any, cfg: dict, seed: int, *, device: str = "cpu", log: Callable[[str], None] | None = None) -> dict:
    """Run part 1 (see the module docstring) and return its curves as plain lists/arrays.

    ``data`` is a :class:`deep.data.CifarData`; ``cfg`` holds ``n``, ``n_val``, ``n_test``,
    ``dim``, ``depth``, ``widths``, ``seeds``, ``steps``, ``points`` (recorded steps),
    ``lr_scale`` (lr = lr_scale / d_max) and ``noise``. The networks train on ``device``; the
    analytic side runs in numpy.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    sp = _split(data, cfg, seed)
    an = _analytic(sp, cfg)
    t_theory = time.perf_counter() - t0
    log(
        f"[confirm] ntk: n={cfg['n']}, dim={cfg['dim']}, depth={cfg['depth']}, d_max={float(an.s.values[0]):.4g}, "
        f"lr={an.lr:.4g}, k*={an.k_star}, target momentum={an.momentum:.4f} ({t_theory:.1f} s for kernel, "
        f"eigendecomposition and curves)"
    )
    theory = _theory_curves(an, len(sp.Zt))
    per_width = _networks(sp, an, theory, cfg, seed, device, log)
    for rule in theory:  # outputs were only needed for the gaps
        theory[rule].pop("train_outputs")
        theory[rule].pop("test_outputs")
    return {**_numbers(sp, an, cfg, theory, per_width), "seconds_theory": t_theory, "seconds": time.perf_counter() - t0}
