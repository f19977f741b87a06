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
(Dong et al. 2019: ``target_{t+1} = m target_t + (1 - m) u_t`` with the target momentum m,
both updated from the state at step t).
"""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from kernels.checks import Interval, Options, check_param, check_result_size, check_vector

__all__ = ["FullBatchRun", "train_full_batch"]

CONSTRAINTS: dict[str, Interval | Options] = {
    "lr": Interval(float, 0, math.inf, "neither"),  # finite
    "steps": Interval(int, 1, None, "left"),
    "targets": Options(("gd", "chained")),
    "target_momentum": Interval(float, 0, 1, "both"),
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
    lr, steps, targets, target_momentum : the run's parameters (target_momentum None for gd)
    relative_param_change : ||theta_T - theta_0|| / ||theta_0||
    """

    record: np.ndarray
    train_outputs: np.ndarray
    test_outputs: np.ndarray | None
    targets_final: np.ndarray
    lr: float
    steps: int
    targets: str
    target_momentum: float | None
    relative_param_change: float


def _flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_model(fn: str, model: Any) -> tuple[torch.device, torch.dtype]:
    """The device and float dtype of the model's parameters (one of each)."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{fn}: model must be a torch.nn.Module; got {type(model).__name__}")
    floats = [p for p in model.parameters() if p.is_floating_point()]
    if not floats:
        raise ValueError(f"{fn}: model must have at least one floating-point parameter to train")
    devices, dtypes = {p.device for p in floats}, {p.dtype for p in floats}
    if len(devices) > 1 or len(dtypes) > 1:
        raise ValueError(
            f"{fn}: model parameters must share one device and dtype; got devices {sorted(map(str, devices))} "
            f"and dtypes {sorted(map(str, dtypes))}; use model.to(device, dtype)"
        )
    return floats[0].device, floats[0].dtype


def _check_tensor(fn: str, name: str, t: Any, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A finite tensor of ``dtype`` on ``device`` with at least one row."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor; got {type(t).__name__} (convert with torch.as_tensor)")
    if t.ndim < 1 or t.shape[0] < 1:
        raise ValueError(f"{fn}: {name} must have at least one row; got shape {tuple(t.shape)}")
    if t.dtype != dtype:
        raise ValueError(f"{fn}: {name} must have dtype {dtype} (the model's); got {t.dtype}; convert with {name}.to({dtype})")
    if t.device != device:
        raise ValueError(f"{fn}: {name} is on device {t.device} but the model is on {device}; move both to one device")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{fn}: {name} contains NaN or inf; remove or impute those entries first")
    return t


def _outputs_of(fn: str, name: str, f: torch.nn.Module, X: torch.Tensor) -> torch.Tensor:
    """``f(X)`` without gradients; an input the model cannot take is a one-line error naming it."""
    try:
        with torch.no_grad():
            out = f(X)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise ValueError(f"{fn}: {name} of shape {tuple(X.shape)} does not fit the model: {_first_line(exc)}") from exc
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise ValueError(
            f"{fn}: the model must return a tensor of shape (n, c) on {name}; got "
            f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}"
        )
    return out


def _check_settings(fn: str, lr: float, steps: int, targets: str, target_momentum: float | None, progress: bool) -> None:
    """Refuse a bad ``lr``, ``steps``, ``targets`` rule, ``target_momentum`` or ``progress`` flag."""
    check_param(fn, "lr", lr, CONSTRAINTS["lr"])
    check_param(fn, "steps", steps, CONSTRAINTS["steps"])
    check_param(fn, "targets", targets, CONSTRAINTS["targets"])
    if targets == "chained":
        if target_momentum is None:
            raise ValueError(f"{fn}: target_momentum is required with targets='chained' (a float in [0, 1])")
        check_param(fn, "target_momentum", target_momentum, CONSTRAINTS["target_momentum"])
    elif target_momentum is not None:
        raise ValueError(
            f"{fn}: target_momentum is the chained rule's weight on the previous target; targets='gd' does "
            f"not use it (pass targets='chained' or drop it); got {target_momentum!r}"
        )
    if not isinstance(progress, bool):
        raise TypeError(f"{fn}: progress must be True or False; got {progress!r}")


def _check_data(
    fn: str, model: torch.nn.Module, X: torch.Tensor, Y: torch.Tensor, X_test: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``X``, ``Y`` and ``X_test`` checked against the model's device and dtype (``Y`` of shape (n, c))."""
    device, dtype = _check_model(fn, model)
    X = _check_tensor(fn, "X", X, device, dtype)
    Y = _check_tensor(fn, "Y", Y, device, dtype)
    if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
        raise ValueError(f"{fn}: Y must have shape (n, c) with n = {X.shape[0]}; got {tuple(Y.shape)}")
    if X_test is not None:
        X_test = _check_tensor(fn, "X_test", X_test, device, dtype)
    return X, Y, X_test


def _record_grid(fn: str, record: Any, steps: int, rows: int, c: int, memory_budget: int | None) -> np.ndarray:
    """The sorted steps to record, once they and the memory their outputs on ``rows`` inputs take are checked."""
    if record is None:
        n_rec, what = steps + 1, f"recording all {steps + 1} steps (0..{steps})"
    else:
        rec_f = check_vector(fn, "record", record)
        ok = np.isfinite(rec_f) & (rec_f == np.round(rec_f)) & (rec_f >= 0) & (rec_f <= steps)
        if not np.all(ok):
            raise ValueError(f"{fn}: record must hold integer steps in [0, {steps}]; got {float(rec_f[~ok][0])!r} in record")
        n_rec, what = np.unique(rec_f).size, f"recording {np.unique(rec_f).size} steps"
    check_result_size(
        fn,
        n_rec * (rows * c * 8 + 8),
        memory_budget,
        what,
        "pass record=[...] with the steps you need or a larger memory_budget=",
    )
    return np.arange(steps + 1) if record is None else np.unique(rec_f.astype(np.int64))


def _initial_outputs(
    fn: str, model: torch.nn.Module, X: torch.Tensor, Y: torch.Tensor, X_test: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The initial parameters and outputs on ``X`` and ``X_test`` (the model set to eval mode first)."""
    model.train(False)
    init = copy.deepcopy(model)
    theta0 = _flat(model)
    f0 = _outputs_of(fn, "X", init, X)
    if X_test is not None and tuple(X_test.shape[1:]) != tuple(X.shape[1:]):
        raise ValueError(
            f"{fn}: X_test must have per-example shape {tuple(X.shape[1:])} (that of X); got {tuple(X_test.shape[1:])}"
        )
    f0_test = _outputs_of(fn, "X_test", init, X_test) if X_test is not None else None
    if tuple(f0.shape) != tuple(Y.shape):
        raise ValueError(f"{fn}: Y must have shape {tuple(f0.shape)} (the model's outputs on X); got {tuple(Y.shape)}")
    return theta0, f0, f0_test


def _test_outputs(model: torch.nn.Module, X_test: torch.Tensor, f0_test: torch.Tensor | None) -> np.ndarray:
    """The centred outputs on ``X_test`` as float64, without gradients."""
    with torch.no_grad():
        return (model(X_test) - f0_test).cpu().numpy().astype(np.float64)


def _descend(
    fn: str,
    model: torch.nn.Module,
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None],
    initial: tuple[torch.Tensor, torch.Tensor | None],
    rec: np.ndarray,
    lr: float,
    steps: int,
    targets: str,
    target_momentum: float | None,
    progress: bool,
) -> tuple[torch.Tensor, list[np.ndarray], list[np.ndarray]]:
    """Run the GD steps, recording centred outputs at ``rec``; the final target and the recordings."""
    (X, Y, X_test), (f0, f0_test) = data, initial
    opt = torch.optim.SGD(model.parameters(), lr=float(lr), momentum=0.0)
    target = Y.clone()
    train_out, test_out = [], []
    wanted = set(rec.tolist())
    for step in tqdm(range(steps + 1), desc=f"{fn} ({targets})", disable=not progress, leave=False, file=sys.stderr):
        out = model(X) - f0
        if step in wanted:
            train_out.append(out.detach().cpu().numpy().astype(np.float64))
            if X_test is not None:
                test_out.append(_test_outputs(model, X_test, f0_test))
        if step == steps:
            break
        loss = 0.5 * ((out - target) ** 2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if targets == "chained":
            assert target_momentum is not None  # "chained" without it was refused above
            target = target_momentum * target + (1.0 - target_momentum) * out.detach()
    return target, train_out, test_out


def train_full_batch(
    model: torch.nn.Module,
    X: torch.Tensor,
    Y: torch.Tensor,
    *,
    lr: float,
    steps: int,
    record: Any = None,
    X_test: torch.Tensor | None = None,
    targets: str = "gd",
    target_momentum: float | None = None,
    memory_budget: int | None = None,
    progress: bool = False,
) -> FullBatchRun:
    """Train ``model`` by full-batch GD on ``1/2 sum ||u - target||^2`` and record its outputs.

    Parameters
    ----------
    model : torch.nn.Module
        Trained in place (a centred copy of its initial function is kept).
    X, Y : tensors (n, ...) and (n, c)
        Inputs and regression targets (e.g. one-hot labels); finite, with the dtype and
        device of the model's parameters; ``Y`` has the shape of the model's outputs on ``X``.
    lr : float
        Step size on the parameters; equals the function-space step of the linearised theory.
    steps : int
        Number of GD steps.
    record : sequence of int, default=None
        Steps (integers in 0..steps) at which to store outputs; all steps by default.
    X_test : tensor (m, ...), default=None
        Finite, per-example shape, dtype and device as ``X``.
    targets : {"gd", "chained"}, default="gd"
    target_momentum : float in [0, 1], required for "chained" (refused for "gd")
        The weight m on the previous target.
    memory_budget : int, default=None
        Bytes the recorded outputs may take (default 2 GiB); more raises ``ValueError``
        before training (pass ``record=`` with the steps you need).
    progress : bool, default=False
        A tqdm bar over the steps (stderr).

    Returns
    -------
    FullBatchRun
    """
    fn = "train_full_batch"
    _check_settings(fn, lr, steps, targets, target_momentum, progress)
    X, Y, X_test = _check_data(fn, model, X, Y, X_test)
    m = 0 if X_test is None else X_test.shape[0]
    rec = _record_grid(fn, record, steps, X.shape[0] + m, Y.shape[1], memory_budget)
    theta0, f0, f0_test = _initial_outputs(fn, model, X, Y, X_test)
    target, train_out, test_out = _descend(
        fn, model, (X, Y, X_test), (f0, f0_test), rec, lr, steps, targets, target_momentum, progress
    )
    change = float(torch.linalg.vector_norm(_flat(model) - theta0) / torch.linalg.vector_norm(theta0))
    return FullBatchRun(
        record=rec,
        train_outputs=np.stack(train_out),
        test_outputs=np.stack(test_out) if test_out else None,
        targets_final=target.detach().cpu().numpy().astype(np.float64),
        lr=float(lr),
        steps=int(steps),
        targets=targets,
        target_momentum=None if target_momentum is None else float(target_momentum),
        relative_param_change=change,
    )
