"""Tests that kill mutants of theory/distillation_study.py which the rest of the suite let through (``make mutate``).

References: the cost model written out by hand from its documented form, and a dense numpy solve.
"""

from __future__ import annotations

import numpy as np
import pytest

from kernels import rbf
from theory import distillation_study
from theory.distillation_study import EIGH_PER_CHOLESKY, SOLVE_FLOPS_PER_ENTRY


def _data(n=10, m=5, c=1, seed=0):
    rng = np.random.default_rng(seed)
    X, Xt = rng.normal(size=(n, 2)), rng.normal(size=(m, 2))
    y = rng.normal(size=n) if c == 1 else rng.normal(size=(n, c))
    return rbf(X, gamma=0.5), rbf(Xt, X, gamma=0.5), y


@pytest.mark.parametrize(("n", "m", "c", "A", "T"), [(10, 5, 1, 2, 3), (12, 7, 3, 4, 2), (9, 4, 20, 2, 2)])
def test_cost_estimate_is_the_documented_model(n, m, c, A, T):
    """cost_estimate = the flop model of the docstring, evaluated term by term here (floats, by hand)."""
    K, Kc, y = _data(n, m, c)
    st = distillation_study(K, y, ridge=0.1, alpha=np.linspace(0.2, 0.8, A), steps=T, K_cross=Kc)
    E, S = EIGH_PER_CHOLESKY, SOLVE_FLOPS_PER_ENTRY
    pair = n * n * max(2.0 * c, S)  # one pair of triangular solves (c = 20: the 2 c flops per entry count)
    chol = n**3 / 3 + T * pair + 4.0 * A * T * T * n * c + 2.0 * m * n * T * c + 2.0 * A * T * T * m * c
    eig = E * n**3 / 3 + 2.0 * n * n * c + 4.0 * A * T * n * n * c + 2.0 * m * n * A * T * c
    assert st.cost_estimate["cholesky"] == pytest.approx(chol, rel=1e-12)
    assert st.cost_estimate["eigen"] == pytest.approx(eig, rel=1e-12)
    assert st.route == ("cholesky" if chol <= eig else "eigen")


def test_summary_names_the_number_of_test_points():
    K, Kc, y = _data(m=6)
    with_test = distillation_study(K, y, ridge=0.1, alpha=0.5, steps=2, K_cross=Kc).summary()
    without = distillation_study(K, y, ridge=0.1, alpha=0.5, steps=2).summary()
    assert [ln.split(":")[1].strip() for ln in with_test.splitlines() if "test points" in ln] == ["6"]
    assert [ln.split(":")[1].strip() for ln in without.splitlines() if "test points" in ln] == ["-"]


def test_need_spectrum_is_accepted_and_gives_the_eigen_path():
    """need_spectrum=True takes the eigen route and returns its path; fits match a dense solve."""
    K, _, y = _data()
    st = distillation_study(K, y, ridge=0.1, alpha=1.0, steps=1, need_spectrum=True)
    assert st.route == "eigen" and st.path is not None
    dense = K @ np.linalg.solve(K + 0.1 * np.eye(len(y)), y)
    np.testing.assert_allclose(np.asarray(st.fits)[0, 0], dense, rtol=1e-10, atol=1e-12)
