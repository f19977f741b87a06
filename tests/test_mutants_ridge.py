"""Tests that kill mutants of kernels/ridge.py which the rest of the suite let through (``make mutate``)."""

from __future__ import annotations

import numpy as np
import pytest

from kernels import KernelRidge


def test_unused_kernel_parameter_message_names_what_the_kernel_takes():
    X = np.random.default_rng(0).normal(size=(10, 2))
    y = X[:, 0]
    with pytest.raises(ValueError, match=r"it takes no parameters"):
        KernelRidge(kernel="linear", gamma=0.5).fit(X, y)
    with pytest.raises(ValueError, match=r"it takes gamma\)"):
        KernelRidge(kernel="rbf", degree=5).fit(X, y)
