"""Tests that kill mutants of theory/noise.py which the rest of the suite let through (``make mutate``).

References: flip counts worked out by hand (``rate * n`` rounded half up, as documented).
"""

from __future__ import annotations

import numpy as np
import pytest

from theory import pair_noise, symmetric_noise, uniform_noise


@pytest.mark.parametrize(
    ("rate", "n", "want"),
    [
        (0.29, 50, 15),  # 14.5 -> 15 (the float product is 14.499999999999998)
        (0.1, 25, 3),  # 2.5 -> 3
        (0.3, 5, 2),  # 1.5 -> 2
        (0.5, 3, 2),  # 1.5 -> 2
        (0.25, 6, 2),  # 1.5 -> 2
        (0.2, 12, 2),  # 2.4 -> 2
        (0.45, 10, 5),  # 4.5 -> 5
    ],
)
def test_flip_count_rounds_half_up(rate, n, want):
    labels = np.arange(n) % 4
    assert symmetric_noise(labels, rate, num_classes=4, seed=0).n_flipped == want
    assert uniform_noise(labels, rate, num_classes=4, seed=0).n_selected == want
    assert pair_noise(labels, rate, num_classes=4, seed=0).n_flipped == want


def test_symmetric_flips_go_to_other_classes_uniformly():
    """Every flipped label differs from its clean one; the new classes are uniform over the other C - 1 (chi^2)."""
    from scipy.stats import chisquare

    labels = np.zeros(30000, dtype=int)
    out = symmetric_noise(labels, 0.5, num_classes=4, seed=2)
    new = out.labels[out.flipped]
    assert (new != 0).all() and out.n_flipped == 15000
    counts = np.bincount(new, minlength=4)[1:]
    assert chisquare(counts).pvalue > 1e-4


def test_pair_noise_with_two_classes_swaps_them():
    """C = 2 is a valid pair-noise setting: class c goes to (c + 1) mod 2."""
    labels = np.array([0, 1] * 10)
    out = pair_noise(labels, 0.5, num_classes=2, seed=0)
    assert out.n_flipped == 10
    np.testing.assert_array_equal(out.labels[out.flipped], 1 - labels[out.flipped])
    with pytest.raises(ValueError, match="num_classes"):
        pair_noise(np.zeros(10, dtype=int), 0.5, num_classes=1)


def test_make_noise_none_reports_rate_zero():
    from theory import make_noise

    labels = np.arange(10) % 3
    out = make_noise("none", labels, num_classes=3)
    assert out.rate == 0.0 and out.n_flipped == 0
    np.testing.assert_array_equal(out.labels, labels)


def test_inputs_are_not_modified():
    labels = np.array([0.0, 1.0, 2.0, 1.0] * 5)
    keep = labels.copy()
    for f in (symmetric_noise, uniform_noise, pair_noise):
        f(labels, 0.5, num_classes=3, seed=1)
    np.testing.assert_array_equal(labels, keep)
