"""Shared by several test files: slow reference implementations, invalid-parameter cases and tiny run sizes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.optimize import brentq


def dense_mobahi_rounds(K, y, eps, *, max_rounds=100, bracket=(1e-10, 1e10), xtol=1e-14):
    """Mobahi's rounds by an explicit float64 loop: c_t by brentq on the dense fit error (searched
    within ``bracket``, on a log scale), y_t = K (c_t I + K)^-1 y_{t-1}, until ||y_t||^2 <= n eps.

    Returns the constants c_t and the fits y_t, one row per round.
    """
    n = len(K)
    lo, hi = math.log(bracket[0]), math.log(bracket[1])
    prev, cs, fits = y, [], []
    for _ in range(max_rounds):
        if np.sum(prev**2) <= n * eps:
            break
        step = lambda c, p=prev: K @ np.linalg.solve(K + c * np.eye(n), p)  # noqa: E731
        err = lambda u, p=prev: np.sum((step(math.exp(u), p) - p) ** 2) / n - eps  # noqa: E731
        c = math.exp(brentq(err, lo, hi, xtol=xtol))
        prev = step(c)
        cs.append(c)
        fits.append(prev)
    return np.asarray(cs), np.asarray(fits)


def invalid_parameter_cases(constraints, names, bad_values, **valid) -> list[tuple[dict[str, Any], str]]:
    """``(keywords, name)`` cases a function must refuse, naming the parameter: first each named
    constraint's own invalid example (over the ``valid`` keywords), then every hand-picked value of
    ``bad_values`` (parameter name -> values) alone."""
    own = [({**valid, name: constraints[name].invalid_example()}, name) for name in names]
    return own + [({name: value}, name) for name, values in bad_values.items() for value in values]


def tiny_run(**overrides) -> dict[str, Any]:
    """TrainConfig keywords of a run that takes seconds on a CPU (an MLP of width 16, one epoch),
    with ``overrides`` on top."""
    return dict(model="mlp", model_options={"width": 16}, epochs=1, batch_size=16, freq_subset=0, device="cpu") | overrides


# The analytic-vs-trained run at tiny sizes (seconds on a CPU): ``overrides`` of run_named.
TINY_ANALYTIC_VS_TRAINED = {
    "n": 64,
    "n_test": 64,
    "widths": [32, 64],
    "seeds": 1,
    "steps": 20,
    "cnn_n": 24,
    "cnn_epochs": 2,
    "cnn_widths": (8, 8, 8),
}
