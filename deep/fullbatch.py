"""Full-batch gradient descent with squared loss: the finite-network side of the NTK comparison.

With the loss ``L = 1/2 sum_i ||u(x_i) - target_i||^2`` (a sum, not a mean) and plain
gradient descent ``theta <- theta - lr grad L``, the outputs move by
``u <- u - lr Theta_t (u - target)`` to first order, with ``Theta_t`` the empirical NTK
(sum over parameters of gradient outer products). As the width grows ``Theta_t`` stays
at its infinite-width limit (Jacot et al. 2018) and the run follows
:func:`theory.dynamics.linearized_training` with the SAME ``lr`` and ``K = kernels.ntk_relu``.

The network is centred, ``u(x) = f(x; theta) - f(x; theta_0)``, so that ``u(0) = 0`` as the
closed forms assume (the random initial function would otherwise add a GP sample).
Targets follow the same rules as the theory: ``"gd"`` (target = y) or ``"chained"``
(Dong et al. 2019: ``target_{t+1} = alpha target_t + (1 - alpha) u_t``, both updated from
the state at step t).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from kernels._checks import Interval, Options, check_param, check_vector

__all__ = ["FullBatchRun", "train_full_batch"]

_TABLE = {
    "lr": Interval(float, 0, None, "neither"),
    "steps": Interval(int, 1, None, "left"),
    "targets": Options(("gd", "chained")),
    "alpha": Interval(float, 0, 1, "both"),
}


@dataclass(frozen=True)
class FullBatchRun:
    """Recorded outputs of a full-batch run (numpy float64).

    Attributes
    ----------
    record : (T,) steps at which outputs were recorded
    train_outputs : (T, n, c) centred outputs u on the training inputs
    test_outputs : (T, m, c) or None, on the test inputs
    targets_final : (n, c) the targets after the last step
    lr, steps, targets, alpha : the run's parameters
    relative_param_change : ||theta_T - theta_0|| / ||theta_0||
    """

    record: np.ndarray
    train_outputs: np.ndarray
    test_outputs: np.ndarray | None
    targets_final: np.ndarray
    lr: float
    steps: int
    targets: str
    alpha: float | None
    relative_param_change: float


def _flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def train_full_batch(model: torch.nn.Module, X: torch.Tensor, Y: torch.Tensor, *, lr: float, steps: int,
                     record: Any = None, X_test: torch.Tensor | None = None, targets: str = "gd",
                     alpha: float | None = None) -> FullBatchRun:
    """Train ``model`` by full-batch GD on ``1/2 sum ||u - target||^2`` and record its outputs.

    Parameters
    ----------
    model : torch.nn.Module
        Trained in place (a centred copy of its initial function is kept).
    X, Y : tensors (n, ...) and (n, c)
        Inputs and regression targets (e.g. one-hot labels); same dtype/device as the model.
    lr : float
        Step size on the parameters; equals the function-space step of the linearised theory.
    steps : int
        Number of GD steps.
    record : sequence of int, default=None
        Steps (0..steps) at which to store outputs; all steps by default.
    X_test : tensor (m, ...), default=None
    targets : {"gd", "chained"}, default="gd"
    alpha : float in [0, 1], required for "chained"

    Returns
    -------
    FullBatchRun
    """
    fn = "train_full_batch"
    check_param(fn, "lr", float(lr) if isinstance(lr, (int, float)) else lr, _TABLE["lr"])
    check_param(fn, "steps", steps, _TABLE["steps"])
    check_param(fn, "targets", targets, _TABLE["targets"])
    if targets == "chained":
        if alpha is None:
            raise ValueError(f"{fn}: alpha is required with targets='chained' (a float in [0, 1])")
        check_param(fn, "alpha", alpha, _TABLE["alpha"])
    if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
        raise ValueError(f"{fn}: Y must have shape (n, c) with n = {X.shape[0]}; got {tuple(Y.shape)}")
    rec = np.arange(steps + 1) if record is None else np.unique(check_vector(record, fn, "record").astype(np.int64))
    if rec.size == 0 or rec.min() < 0 or rec.max() > steps:
        raise ValueError(f"{fn}: record must hold steps in [0, {steps}]; got {record!r}")
    model.train(False)
    init = copy.deepcopy(model)
    theta0 = _flat(model)
    with torch.no_grad():
        f0 = init(X)
        f0_test = init(X_test) if X_test is not None else None
    opt = torch.optim.SGD(model.parameters(), lr=float(lr), momentum=0.0)
    target = Y.clone()
    train_out, test_out = [], []
    wanted = set(rec.tolist())
    for step in range(steps + 1):
        out = model(X) - f0
        if step in wanted:
            train_out.append(out.detach().cpu().numpy().astype(np.float64))
            if X_test is not None:
                with torch.no_grad():
                    test_out.append((model(X_test) - f0_test).cpu().numpy().astype(np.float64))
        if step == steps:
            break
        loss = 0.5 * ((out - target) ** 2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if targets == "chained":
            target = alpha * target + (1.0 - alpha) * out.detach()
    change = float(torch.linalg.vector_norm(_flat(model) - theta0) / torch.linalg.vector_norm(theta0))
    return FullBatchRun(record=rec, train_outputs=np.stack(train_out), test_outputs=np.stack(test_out) if test_out else None,
                        targets_final=target.detach().cpu().numpy().astype(np.float64), lr=float(lr), steps=int(steps),
                        targets=targets, alpha=None if alpha is None else float(alpha), relative_param_change=change)
