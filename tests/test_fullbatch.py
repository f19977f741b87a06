"""deep.fullbatch against the closed forms: exact for a linear model, close for a wide MLP."""

import numpy as np
import pytest
import torch

from deep.fullbatch import train_full_batch
from kernels import spectrum
from theory.dynamics import linearized_training


def _linear_problem(seed=0, n=12, d=5, c=3):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    Y = torch.randn(n, c, generator=g, dtype=torch.float64)
    Xt = torch.randn(4, d, generator=g, dtype=torch.float64)
    model = torch.nn.Linear(d, c).double()
    return X, Y, Xt, model


@pytest.mark.parametrize("targets,momentum", [("gd", None), ("chained", 0.7)])
def test_linear_model_follows_linearised_theory_exactly(targets, momentum):
    # A model linear in its parameters has a constant NTK: X X^T + 1 (weights + bias) per output.
    X, Y, Xt, model = _linear_problem()
    K = (X @ X.T + 1).numpy()
    Kc = (Xt @ X.T + 1).numpy()
    lr = 0.5 / np.linalg.eigvalsh(K)[-1]
    run = train_full_batch(
        model, X, Y, lr=lr, steps=30, record=[0, 1, 7, 30], X_test=Xt, targets=targets, target_momentum=momentum
    )
    path = linearized_training(
        spectrum(K), Y.numpy(), lr=lr, steps=30, targets=targets, target_momentum=momentum, record=[0, 1, 7, 30]
    )
    np.testing.assert_allclose(run.train_outputs, np.asarray(path.fits), atol=1e-10)
    np.testing.assert_allclose(run.test_outputs, np.asarray(path.predict(Kc)), atol=1e-10)


def test_explicit_function_space_iteration_matches():
    # Independent of theory/: iterate u <- u - lr K (u - target) with the chained rule by hand.
    X, Y, Xt, model = _linear_problem(seed=3)
    K = (X @ X.T + 1).numpy()
    lr, m = 0.3 / np.linalg.eigvalsh(K)[-1], 0.8
    run = train_full_batch(model, X, Y, lr=lr, steps=10, targets="chained", target_momentum=m)
    u, tgt = np.zeros(Y.shape), Y.numpy().copy()
    for _ in range(10):
        u, tgt = u - lr * K @ (u - tgt), m * tgt + (1 - m) * u
    np.testing.assert_allclose(run.train_outputs[-1], u, atol=1e-10)


def test_bad_input_names_argument():
    X, Y, Xt, model = _linear_problem()
    with pytest.raises(ValueError, match="lr"):
        train_full_batch(model, X, Y, lr=-1.0, steps=3)
    with pytest.raises(ValueError, match="target_momentum is required"):
        train_full_batch(model, X, Y, lr=0.1, steps=3, targets="chained")
    with pytest.raises(ValueError, match="targets='gd' does not use it"):
        train_full_batch(model, X, Y, lr=0.1, steps=3, target_momentum=0.5)
    with pytest.raises(ValueError, match="targets"):
        train_full_batch(model, X, Y, lr=0.1, steps=3, targets="nope")
    with pytest.raises(ValueError, match="record"):
        train_full_batch(model, X, Y, lr=0.1, steps=3, record=[5])
