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


def ntk_regime(data: Any, cfg: dict, seed: int, *, device: str = "cpu", log: Callable[[str], None] | None = None) -> dict:
    """Run part 1 (see the module docstring) and return its curves as plain lists/arrays.

    ``data`` is a :class:`deep.data.CifarData`; ``cfg`` holds ``n``, ``n_val``, ``n_test``,
    ``dim``, ``depth``, ``widths``, ``seeds``, ``steps``, ``points`` (recorded steps),
    ``lr_scale`` (lr = lr_scale / d_max) and ``noise``. The networks train on ``device``; the
    analytic side runs in numpy.
    """
    import torch

    from deep.fullbatch import train_full_batch
    from deep.models import make_model
    from deep.splits import subset_indices
    from kernels import spectrum
    from kernels.functions import ntk_relu
    from theory.air import distillation_vs_early_stopping, predicted_curves
    from theory.noise import make_noise, one_hot

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    n, n_val = cfg["n"], cfg["n_val"]
    pick = subset_indices(data.train_labels, n + n_val, seed=seed, stratified=True)
    rng = np.random.default_rng(seed)
    pick = rng.permutation(pick)
    tr, va = pick[:n], pick[n:]
    te = subset_indices(data.test_labels, cfg["n_test"], seed=seed, stratified=True)
    noisy = make_noise(cfg["noise"], data.train_labels[pick], num_classes=10, seed=seed)
    given, true = noisy.labels[:n], noisy.true_labels[:n]
    flipped = given != true
    val_given = noisy.labels[n:]
    test_labels = data.test_labels[te]
    Z, (Zv, Zt) = pca_inputs(data.train_images[tr], [data.train_images[va], data.test_images[te]], cfg["dim"])
    depth = cfg["depth"]
    K = ntk_relu(Z, depth=depth)
    K_cross = ntk_relu(np.concatenate([Zt, Zv]), Z, depth=depth)  # test rows, then validation rows
    s = spectrum(K)
    lr = cfg["lr_scale"] / float(s.values[0])
    steps = cfg["steps"]
    record = np.unique(np.concatenate([[0], np.round(np.logspace(0, np.log10(steps), cfg["points"])).astype(np.int64)]))
    Y = one_hot(given, 10)
    m_test = len(te)
    val_index = np.arange(m_test, m_test + len(va))
    common = dict(
        labels_true=true,
        labels_given=given,
        lr=lr,
        steps=steps,
        record=record,
        K_cross=K_cross,
        test_labels=np.concatenate([test_labels, val_given]),
        val_index=val_index,
        val_labels=val_given,
    )
    # the target momentum from the analytic gd curve's early-stopping step on the noisy validation split
    probe = predicted_curves(s, Y, targets="gd", **common)
    assert probe.best_step_val is not None  # set whenever val_index is given, as it is here
    k_star = max(int(probe.best_step_val), 1)
    momentum = 1.0 - 1.0 / max(k_star, 2)
    comp = distillation_vs_early_stopping(s, Y, target_momentum=momentum, **common)
    t_theory = time.perf_counter() - t0
    log(
        f"[confirm] ntk: n={n}, dim={cfg['dim']}, depth={depth}, d_max={float(s.values[0]):.4g}, lr={lr:.4g}, "
        f"k*={k_star}, target momentum={momentum:.4f} ({t_theory:.1f} s for kernel, eigendecomposition and curves)"
    )

    theory: dict[str, Any] = {}
    for rule, c in (("gd", comp.gd), ("chained", comp.chained)):
        theory[rule] = {
            **curve_arrays(c, ("test_acc", "train_acc_clean", "memorised", "recovered", "val_acc")),
            "train_outputs": np.asarray(c.path.fits),
            "test_outputs": np.asarray(c.path.predict(K_cross))[:, :m_test],
        }

    dtype = torch.float64 if cfg.get("float64", False) else torch.float32
    Xt = torch.as_tensor(Z, dtype=dtype, device=device)
    Xe = torch.as_tensor(Zt, dtype=dtype, device=device)
    Yt = torch.as_tensor(Y, dtype=dtype, device=device)
    per_width: dict[str, Any] = {}
    for width in cfg["widths"]:
        entry: dict[str, Any] = {}
        for rule in ("gd", "chained"):
            runs = []
            for rep in range(cfg["seeds"]):
                t1 = time.perf_counter()
                model = make_model(
                    "mlp", in_features=Z.shape[1], width=width, depth=depth, seed=seed * 1000 + rep, dtype=dtype, device=device
                )
                run = train_full_batch(
                    model,
                    Xt,
                    Yt,
                    lr=lr,
                    steps=steps,
                    record=record,
                    X_test=Xe,
                    targets=rule,
                    target_momentum=momentum if rule == "chained" else None,
                )
                th = theory[rule]
                assert run.test_outputs is not None  # X_test was given
                acc = (run.test_outputs.argmax(-1) == test_labels).mean(-1)
                runs.append(
                    {
                        "test_acc": acc,
                        **_curves(run.train_outputs, given, true, flipped),
                        "gap_train": relative_gap(run.train_outputs, th["train_outputs"]),
                        "gap_test": relative_gap(run.test_outputs, th["test_outputs"]),
                        "param_change": run.relative_param_change,
                        "seconds": time.perf_counter() - t1,
                    }
                )
                log(
                    f"[confirm] ntk: width {width} {rule} seed {rep}: final test acc {acc[-1]:.3f} "
                    f"(theory {th['test_acc'][-1]:.3f}), final train gap {runs[-1]['gap_train'][-1]:.3g}, "
                    f"{runs[-1]['seconds']:.1f} s"
                )
            entry[rule] = {k: np.stack([r[k] for r in runs]) for k in runs[0] if k not in ("param_change", "seconds")}
            entry[rule]["param_change"] = [r["param_change"] for r in runs]
            entry[rule]["seconds"] = float(sum(r["seconds"] for r in runs))
        per_width[str(width)] = entry
    for rule in theory:  # outputs were only needed for the gaps
        theory[rule].pop("train_outputs")
        theory[rule].pop("test_outputs")
    return {
        "n": n,
        "n_val": len(va),
        "n_test": m_test,
        "dim": cfg["dim"],
        "depth": depth,
        "lr": lr,
        "steps": steps,
        "record": record,
        "d_max": float(s.values[0]),
        "d_min": float(s.values[-1]),
        "k_star": k_star,
        "target_momentum": momentum,
        "chained_ridge": (1 - momentum) / lr,
        "widths": list(cfg["widths"]),
        "seeds": cfg["seeds"],
        "noise": cfg["noise"],
        "realised_error_rate": float(flipped.mean()),
        "theory": theory,
        "per_width": per_width,
        "summary": comp.summary,
        "seconds_theory": t_theory,
        "seconds": time.perf_counter() - t0,
    }
