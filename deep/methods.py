"""Target rules: one training loop, and the method only decides what the targets are.

Every method trains with the soft-target cross-entropy
``L = mean_i sum_c -t_ic log softmax(z_i)_c`` (:func:`soft_cross_entropy`); they
differ only in the targets ``t``:

``"ce"``
    ``t = onehot(y~)``, the noisy label.
``"self-distill"`` (Dong, Hu, Xiao, Huang 2019, Sec. 4: "self-distillation from the
    previous epoch")
    per-sample targets carried across epochs,
    ``t_0 = onehot(y~)``, ``t_{e+1} = alpha_e t_e + (1 - alpha_e) p_e`` with ``p_e``
    the network's prediction for the sample during epoch ``e`` (softmax, or one-hot
    argmax when ``soft=False``) -- :func:`chained_targets`. *Choice made here:* ``p_e``
    is collected during epoch e's own training pass, from the (augmented, train-mode)
    forward pass that also computes the sample's loss, so it costs no extra pass; it
    is the prediction of the weights at the time the sample's batch is processed.
``"interp"`` (lizhemin15/self-distillation)
    ``t = (1 - lam) onehot(y~) + lam onehot(argmax z)``, with ``lam`` the batch's rate
    of agreement of the predictions with the noisy labels -- :func:`interp_targets`.
``"generations"`` (Borup & Andersen 2021, eq. 3)
    generation 1 is ``"ce"``; generation k > 1 is a fresh student trained on
    ``t = alpha onehot(y~) + (1 - alpha) q`` with ``q`` the softmax output (or one-hot
    argmax) of generation k-1 -- :func:`generation_targets`. *Choice made here:* ``q``
    is computed once, in eval mode, on the un-augmented training images.

``alpha`` always weighs what the targets had *before* the new prediction enters: the
previous target (self-distill) or the given label (generations, as in the DESIGN
notes: alpha is the weight on ground truth).

References
----------
Dong, Hu, Xiao, Huang (2019). Distillation ~ early stopping? Harvesting dark
knowledge utilizing anisotropic information retrieval for overparameterized neural
network. arXiv:1910.01255.
Borup, Andersen (2021). Even your teacher needs guidance: ground-truth targets
dampen regularization imposed by self-distillation. NeurIPS.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deep.config import ALPHA_SCHEDULES, METHODS
from kernels._checks import Interval, Options, check_param

__all__ = [
    "METHODS",
    "one_hot",
    "soft_cross_entropy",
    "predictions",
    "alpha_at",
    "chained_targets",
    "interp_targets",
    "generation_targets",
    "batch_targets",
    "target_agreement",
]

_UNIT = Interval(float, 0, 1, "both")


def one_hot(labels: torch.Tensor, num_classes: int, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``Y[i, labels[i]] = 1``: shape (n, num_classes), on the labels' device."""
    return F.one_hot(labels.long(), num_classes).to(dtype)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, *, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean over the batch of ``sum_c -t_c log softmax(z)_c``.

    With ``label_smoothing = eps`` the targets are first mixed with the uniform
    distribution, ``t <- (1 - eps) t + eps / C`` (as
    :func:`torch.nn.functional.cross_entropy` does for probability targets).

    Parameters
    ----------
    logits : Tensor of shape (B, C)
    targets : Tensor of shape (B, C)
        Rows are distributions (they sum to 1) for every method here.
    label_smoothing : float in [0, 1), default=0.0
    """
    check_param("soft_cross_entropy", "label_smoothing", label_smoothing, Interval(float, 0, 1, "left"))
    if logits.shape != targets.shape:
        raise ValueError(f"soft_cross_entropy: targets must have the logits' shape {tuple(logits.shape)}; got {tuple(targets.shape)}")
    t = targets.to(logits.dtype)
    if label_smoothing:
        t = (1 - label_smoothing) * t + label_smoothing / logits.shape[1]
    return -(t * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def predictions(logits: torch.Tensor, *, soft: bool) -> torch.Tensor:
    """The network's prediction as a distribution: ``softmax(z)`` or ``onehot(argmax z)`` (detached)."""
    z = logits.detach()
    if soft:
        return torch.softmax(z.float(), dim=1)
    return one_hot(z.argmax(dim=1), z.shape[1])


def alpha_at(schedule: str, alpha: float, step: int, total: int) -> float:
    """The weight alpha used at ``step`` (0-based) of ``total`` epochs or generations.

    ``"constant"``: ``alpha``. ``"linear"``: ``1 + (alpha - 1) step / (total - 1)``,
    from 1 at the first step (keep the given targets) to ``alpha`` at the last
    (``alpha`` throughout when ``total == 1``).
    """
    fn = "alpha_at"
    check_param(fn, "schedule", schedule, Options(ALPHA_SCHEDULES))
    check_param(fn, "alpha", alpha, _UNIT)
    check_param(fn, "total", total, Interval(int, 1, None, "left"))
    check_param(fn, "step", step, Interval(int, 0, total - 1, "both"))
    if schedule == "constant" or total == 1:
        return float(alpha)
    return float(1.0 + (alpha - 1.0) * step / (total - 1))


def chained_targets(targets: torch.Tensor, preds: torch.Tensor, alpha: float) -> torch.Tensor:
    """Dong et al. self-distillation update ``t_{e+1} = alpha t_e + (1 - alpha) p_e``."""
    check_param("chained_targets", "alpha", alpha, _UNIT)
    return alpha * targets + (1.0 - alpha) * preds.to(targets.dtype)


def interp_targets(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch-agreement interpolation (lizhemin15/self-distillation).

    ``lam = mean_i [argmax z_i == y~_i]`` over the batch and
    ``t_i = (1 - lam) onehot(y~_i) + lam onehot(argmax z_i)``.

    Returns
    -------
    targets : Tensor of shape (B, C)
    lam : Tensor of shape ()
        Kept as a tensor so that the loop does not wait for the GPU every batch.
    """
    pred = logits.detach().argmax(dim=1)
    lam = (pred == labels).float().mean()
    c = logits.shape[1]
    t = (1 - lam) * one_hot(labels, c) + lam * one_hot(pred, c)
    return t, lam


def generation_targets(labels_onehot: torch.Tensor, teacher: torch.Tensor, alpha: float) -> torch.Tensor:
    """Borup & Andersen targets ``alpha onehot(y~) + (1 - alpha) q_teacher``."""
    check_param("generation_targets", "alpha", alpha, _UNIT)
    return alpha * labels_onehot + (1.0 - alpha) * teacher.to(labels_onehot.dtype)


def batch_targets(method: str, logits: torch.Tensor, labels: torch.Tensor, stored: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Targets of one batch for ``method`` (the loop's only method-specific call).

    Parameters
    ----------
    method : one of :data:`METHODS`
    logits : Tensor (B, C)
        This batch's outputs (used by ``"interp"`` only).
    labels : Tensor (B,)
        The batch's noisy labels.
    stored : Tensor (B, C) or None
        The batch's rows of the carried targets (``"self-distill"``, ``"generations"``).

    Returns
    -------
    targets : Tensor (B, C)
    lam : Tensor of shape () or None
        The agreement rate for ``"interp"``.
    """
    check_param("batch_targets", "method", method, Options(METHODS))
    if method == "interp":
        return interp_targets(logits, labels)
    if method == "ce" or stored is None:
        return one_hot(labels, logits.shape[1]), None
    return stored, None


def target_agreement(targets: torch.Tensor, true_labels: torch.Tensor) -> torch.Tensor:
    """Boolean (B,) mask: does each row's target argmax equal the true label? (ties: lowest class)"""
    return targets.argmax(dim=1) == true_labels
