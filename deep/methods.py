"""Target rules: one training loop, and the method only decides what the targets are.

Every method trains with the soft-target cross-entropy
``L = mean_i sum_c -t_ic log softmax(z_i)_c`` (:func:`soft_cross_entropy`); they
differ only in the targets ``t``:

``"ce"``
    ``t = onehot(y~)``, the noisy label.
``"self-distill"`` (Dong, Hou, Lu, Zhang 2019, Sec. 4: "self-distillation from the
    previous epoch")
    per-sample targets carried across epochs,
    ``t_0 = onehot(y~)``, ``t_{e+1} = m_e t_e + (1 - m_e) p_e`` (``m``: the target
    momentum, ``TrainConfig.target_momentum``) with ``p_e``
    the network's prediction for the sample during epoch ``e`` (softmax, or one-hot
    argmax when ``soft=False``) -- :func:`chained_targets`. *Choice made here:* ``p_e``
    is collected during epoch e's own training pass, from the (augmented, train-mode)
    forward pass that also computes the sample's loss, so it costs no extra pass; it
    is the prediction of the weights at the time the sample's batch is processed.
``"interp"`` (lizhemin15/self-distillation)
    ``t = (1 - lam) onehot(y~) + lam onehot(argmax z)``, with ``lam`` the batch's rate
    of agreement of the predictions with the noisy labels -- :func:`interp_targets`.
``"sat"`` (Self-Adaptive Training; Huang, Zhang, Zhang 2020, Algorithm 1)
    per-sample targets updated *in every batch* before the loss is taken,
    ``t_i <- m t_i + (1 - m) p_i`` with ``p_i = softmax(z_i)`` of the current
    forward pass (``t_0 = onehot(y~)``), and the loss weighted per sample by the target's
    confidence ``w_i = max_c t_ic``: ``L = sum_i w_i l_i / sum_i w_i``
    -- :func:`sat_targets`. This is Dong et al.'s chained rule applied per batch, with
    a warm-up (``TrainConfig.distill_start`` epochs of plain ``"ce"``) and the weighting;
    the paper calls m the momentum, uses ``m = 0.9`` and starts at 30% of training.
``"generations"`` (Borup & Andersen 2021, eq. 3)
    generation 1 is ``"ce"``; generation k > 1 is a fresh student trained on
    ``t = alpha onehot(y~) + (1 - alpha) q`` with ``q`` the softmax output (or one-hot
    argmax) of generation k-1 -- :func:`generation_targets`. *Choice made here:* ``q``
    is computed once, in eval mode, on the un-augmented training images.

Two weights, one name each (README, "Conventions"): ``alpha`` is the weight on the ground
truth, the given label (generations); the target momentum ``m`` is the weight on the
previous target (self-distill, sat). Both weigh what the targets had *before* the new
prediction enters.

References
----------
Dong, Hou, Lu, Zhang (2019). Distillation ~ early stopping? Harvesting dark
knowledge utilizing anisotropic information retrieval for overparameterized neural
network. arXiv:1910.01255.
Huang, Zhang, Zhang (2020). Self-adaptive training: beyond empirical risk
minimization. NeurIPS. arXiv:2002.10319.
Borup, Andersen (2021). Even your teacher needs guidance: ground-truth targets
dampen regularization imposed by self-distillation. NeurIPS.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from deep.config import METHODS, WEIGHT_SCHEDULES
from kernels.checks import Interval, Options, check_param

__all__ = [
    "METHODS",
    "one_hot",
    "soft_cross_entropy",
    "predictions",
    "scheduled_weight",
    "chained_targets",
    "interp_targets",
    "generation_targets",
    "sat_targets",
    "BatchTargets",
    "batch_targets",
    "target_agreement",
]

_UNIT = Interval(float, 0, 1, "both")


def one_hot(labels: torch.Tensor, num_classes: int, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``Y[i, labels[i]] = 1``: shape (n, num_classes), on the labels' device."""
    return F.one_hot(labels.long(), num_classes).to(dtype)


def soft_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    label_smoothing: float = 0.0,
    weights: torch.Tensor | None = None,
    check: bool = True,
) -> torch.Tensor:
    """Mean over the batch of ``sum_c -t_c log softmax(z)_c`` (weighted mean with ``weights``).

    With ``label_smoothing = eps`` the targets are first mixed with the uniform
    distribution, ``t <- (1 - eps) t + eps / C`` (as
    :func:`torch.nn.functional.cross_entropy` does for probability targets).

    Parameters
    ----------
    logits : Tensor of shape (B, C)
    targets : Tensor of shape (B, C)
        Rows are distributions (they sum to 1) for every method here.
    label_smoothing : float in [0, 1), default=0.0
    weights : Tensor of shape (B,) or None
        Per-sample weights ``w_i >= 0``: the loss is ``sum_i w_i l_i / sum_i w_i``
        (Self-Adaptive Training's confidence weighting).
    check : bool, default=True
        Validate the arguments. The training loop passes False: its configuration was
        validated once, at the API boundary (:class:`deep.config.TrainConfig`), not per batch.
    """
    if check:
        check_param("soft_cross_entropy", "label_smoothing", label_smoothing, Interval(float, 0, 1, "left"))
        if logits.shape != targets.shape:
            raise ValueError(
                f"soft_cross_entropy: targets must have the logits' shape {tuple(logits.shape)}; got {tuple(targets.shape)}"
            )
    t = targets.to(logits.dtype)
    if label_smoothing:
        t = (1 - label_smoothing) * t + label_smoothing / logits.shape[1]
    per_sample = -(t * F.log_softmax(logits, dim=1)).sum(dim=1)
    if weights is None:
        return per_sample.mean()
    if check and weights.shape != per_sample.shape:
        raise ValueError(f"soft_cross_entropy: weights must have shape {tuple(per_sample.shape)}; got {tuple(weights.shape)}")
    w = weights.to(per_sample.dtype)
    return (w * per_sample).sum() / w.sum()


def predictions(logits: torch.Tensor, *, soft: bool) -> torch.Tensor:
    """The network's prediction as a distribution: ``softmax(z)`` or ``onehot(argmax z)`` (detached)."""
    z = logits.detach()
    if soft:
        return torch.softmax(z.float(), dim=1)
    return one_hot(z.argmax(dim=1), z.shape[1])


def scheduled_weight(schedule: str, final: float, step: int, total: int) -> float:
    """A method's weight (alpha or the target momentum) at ``step`` (0-based) of ``total``
    epochs or generations.

    ``"constant"``: ``final``. ``"linear"``: ``1 + (final - 1) step / (total - 1)``,
    from 1 at the first step (keep the given targets) to ``final`` at the last
    (``final`` throughout when ``total == 1``).
    """
    fn = "scheduled_weight"
    check_param(fn, "schedule", schedule, Options(WEIGHT_SCHEDULES))
    check_param(fn, "final", final, _UNIT)
    check_param(fn, "total", total, Interval(int, 1, None, "left"))
    check_param(fn, "step", step, Interval(int, 0, total - 1, "both"))
    if schedule == "constant" or total == 1:
        return float(final)
    return float(1.0 + (final - 1.0) * step / (total - 1))


def chained_targets(targets: torch.Tensor, preds: torch.Tensor, target_momentum: float, *, check: bool = True) -> torch.Tensor:
    """Dong et al. self-distillation update ``t_{e+1} = m t_e + (1 - m) p_e``, m the target momentum.

    ``check=False`` skips the argument check (the training loop's, validated once).
    """
    if check:
        check_param("chained_targets", "target_momentum", target_momentum, _UNIT)
    return target_momentum * targets + (1.0 - target_momentum) * preds.to(targets.dtype)


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


def sat_targets(
    stored: torch.Tensor, logits: torch.Tensor, target_momentum: float, *, soft: bool = True, check: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-Adaptive Training update of one batch (Huang, Zhang, Zhang 2020, Algorithm 1).

    ``t = m t_stored + (1 - m) p`` with the target momentum m, ``p = softmax(z)`` (one-hot
    argmax when ``soft=False``) of this batch's forward pass, and the sample weights
    ``w = max_c t_c``. With ``m = 1`` the targets and weights of one-hot rows are
    returned unchanged (``w = 1``): plain cross-entropy, the warm-up.

    Returns
    -------
    targets : Tensor (B, C)
        The updated targets; the caller stores them back (they are this batch's ``t``).
    weights : Tensor (B,)
    """
    if check:
        check_param("sat_targets", "target_momentum", target_momentum, _UNIT)
        if stored.shape != logits.shape:
            raise ValueError(
                f"sat_targets: stored targets must have the logits' shape {tuple(logits.shape)}; got {tuple(stored.shape)}"
            )
    t = chained_targets(stored, predictions(logits, soft=soft), target_momentum, check=False)
    return t, t.max(dim=1).values


class BatchTargets(NamedTuple):
    """Targets of one batch, with interp's agreement rate and sat's sample weights (or None)."""

    targets: torch.Tensor
    lam: torch.Tensor | None
    weights: torch.Tensor | None


def batch_targets(
    method: str,
    logits: torch.Tensor,
    labels: torch.Tensor,
    stored: torch.Tensor | None,
    *,
    target_momentum: float | None = None,
    soft: bool = True,
    check: bool = True,
) -> BatchTargets:
    """Targets of one batch for ``method`` (the loop's only method-specific call).

    Parameters
    ----------
    method : one of :data:`METHODS`
    logits : Tensor (B, C)
        This batch's outputs (used by ``"interp"`` only).
    labels : Tensor (B,)
        The batch's noisy labels.
    stored : Tensor (B, C) or None
        The batch's rows of the carried targets (``"self-distill"``, ``"sat"``,
        ``"generations"``).
    target_momentum : float in [0, 1] or None
        ``"sat"`` only: this epoch's weight on the stored target (:func:`sat_targets`).
    soft : bool, default=True
        ``"sat"`` only: distil softmax outputs (or one-hot argmax).
    check : bool, default=True
        Validate the arguments; the training loop passes False (validated once, in
        :class:`deep.config.TrainConfig`).

    Returns
    -------
    BatchTargets
        ``(targets, lam, weights)``: ``lam`` is interp's agreement rate, ``weights``
        sat's per-sample weights; the caller stores sat's targets back.
    """
    if check:
        check_param("batch_targets", "method", method, Options(METHODS))
    if method == "interp":
        return BatchTargets(*interp_targets(logits, labels), None)
    if method == "sat":
        if stored is None:
            raise ValueError("batch_targets: method='sat' needs the batch's stored targets (stored=...)")
        if target_momentum is None:
            raise ValueError("batch_targets: target_momentum is required for method='sat' (a float in [0, 1])")
        t, w = sat_targets(stored, logits, target_momentum, soft=soft, check=check)
        return BatchTargets(t, None, w)
    if method == "ce" or stored is None:
        return BatchTargets(one_hot(labels, logits.shape[1]), None, None)
    return BatchTargets(stored, None, None)


def target_agreement(targets: torch.Tensor, true_labels: torch.Tensor) -> torch.Tensor:
    """Boolean (B,) mask: does each row's target argmax equal the true label? (ties: lowest class)"""
    return targets.argmax(dim=1) == true_labels
