"""Label-noise generators: exact rates, valid destinations, masks, seeds, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from tests.conftest import to_backend
from theory.noise import (
    CIFAR10_ASYMMETRIC_MAP,
    CIFAR10_CLASSES,
    cifar10_asymmetric_noise,
    make_noise,
    one_hot,
    pair_noise,
    symmetric_noise,
)

N = 20000
C = 10
GENERATORS = [symmetric_noise, pair_noise, cifar10_asymmetric_noise]


@pytest.fixture
def labels(rng) -> np.ndarray:
    return rng.integers(0, C, size=N)


def _eligible(gen, labels):
    if gen is cifar10_asymmetric_noise:
        return int(np.isin(labels, list(CIFAR10_ASYMMETRIC_MAP)).sum())
    return labels.size


@pytest.mark.parametrize("gen", GENERATORS)
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.37, 0.8])
def test_exact_rate_and_mask(gen, rate, labels):
    out = gen(labels, rate, num_classes=C, seed=3)
    n_el = _eligible(gen, labels)
    # the count is rate * n_eligible rounded to a whole sample: never off by more than 1/2
    assert abs(out.n_flipped - rate * n_el) <= 0.5
    assert out.n_flipped == math.floor(rate * n_el + 0.5)
    assert out.n_eligible == n_el
    np.testing.assert_array_equal(out.flipped, out.labels != out.true_labels)
    np.testing.assert_array_equal(out.true_labels, labels)
    assert out.labels.dtype == np.int64 and out.flipped.dtype == bool
    assert out.labels.min() >= 0 and out.labels.max() < C
    assert out.rate == rate and out.seed == 3 and out.num_classes == C


def test_symmetric_never_keeps_class_and_is_uniform(labels):
    out = symmetric_noise(labels, 0.6, num_classes=C, seed=0)
    src, dst = out.true_labels[out.flipped], out.labels[out.flipped]
    assert np.all(src != dst)
    # destination is uniform over the C-1 other classes: offset (dst - src) mod C uniform on 1..C-1
    offsets = (dst - src) % C
    counts = np.bincount(offsets, minlength=C)
    assert counts[0] == 0
    chi2 = stats.chisquare(counts[1:])
    assert chi2.pvalue > 1e-4
    # and conditionally on one source class, too
    dst0 = dst[src == 0]
    c0 = np.bincount(dst0, minlength=C)
    assert c0[0] == 0 and stats.chisquare(c0[1:]).pvalue > 1e-4


def test_symmetric_flips_are_uniform_over_samples(labels):
    # which samples are flipped: each class loses about rate of its members
    out = symmetric_noise(labels, 0.3, num_classes=C, seed=5)
    per_class = np.array([out.flipped[labels == c].mean() for c in range(C)])
    assert np.all(np.abs(per_class - 0.3) < 0.05)


def test_pair_maps_to_next_class(labels):
    out = pair_noise(labels, 0.45, num_classes=C, seed=1)
    f = out.flipped
    np.testing.assert_array_equal(out.labels[f], (labels[f] + 1) % C)
    np.testing.assert_array_equal(out.labels[~f], labels[~f])


def test_cifar10_asymmetric_map(labels):
    assert CIFAR10_CLASSES[9] == "truck" and CIFAR10_CLASSES[1] == "automobile"
    expected = {"truck": "automobile", "bird": "airplane", "deer": "horse", "cat": "dog", "dog": "cat"}
    got = {CIFAR10_CLASSES[s]: CIFAR10_CLASSES[d] for s, d in CIFAR10_ASYMMETRIC_MAP.items()}
    assert got == expected
    out = cifar10_asymmetric_noise(labels, 0.4, seed=2)
    f = out.flipped
    for s in range(C):
        moved = out.labels[f & (labels == s)]
        if s in CIFAR10_ASYMMETRIC_MAP:
            assert moved.size > 0 and np.all(moved == CIFAR10_ASYMMETRIC_MAP[s])
            assert abs((f & (labels == s)).sum() / (labels == s).sum() - 0.4) < 0.05
        else:
            assert moved.size == 0
    assert abs(out.eligible_rate - 0.4) <= 0.5 / out.n_eligible


@pytest.mark.parametrize("gen", GENERATORS)
def test_seeds_reproduce_and_differ(gen, labels):
    a = gen(labels, 0.3, num_classes=C, seed=11)
    b = gen(labels, 0.3, num_classes=C, seed=11)
    c = gen(labels, 0.3, num_classes=C, seed=12)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.flipped, b.flipped)
    assert not np.array_equal(a.flipped, c.flipped)


def test_inputs_not_modified_and_torch_labels(labels):
    before = labels.copy()
    out = symmetric_noise(labels, 0.5, seed=0)
    np.testing.assert_array_equal(labels, before)
    out_t = symmetric_noise(to_backend(labels, "torch"), 0.5, seed=0)
    np.testing.assert_array_equal(out.labels, out_t.labels)
    assert out.num_classes == C  # inferred


def test_make_noise_dispatch(labels):
    np.testing.assert_array_equal(make_noise("symmetric:0.4", labels, seed=4).labels, symmetric_noise(labels, 0.4, num_classes=10, seed=4).labels)
    np.testing.assert_array_equal(make_noise(" Pair:0.2 ", labels, seed=4).labels, pair_noise(labels, 0.2, num_classes=10, seed=4).labels)
    a = make_noise("asym:0.3", labels, seed=4)
    b = make_noise("cifar10-asym:0.3", labels, seed=4)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.labels, cifar10_asymmetric_noise(labels, 0.3, seed=4).labels)
    none = make_noise("none", labels)
    assert none.kind == "none" and none.n_flipped == 0
    np.testing.assert_array_equal(none.labels, labels)


@pytest.mark.parametrize("spec", ["gauss:0.2", "symmetric", "symmetric:", "symmetric:abc", "pair:1.0", "asym:-0.1", "sym:nan", ""])
def test_make_noise_bad_spec(spec, labels):
    with pytest.raises(ValueError, match="noise spec"):
        make_noise(spec, labels)


def test_make_noise_type_error(labels):
    with pytest.raises(TypeError, match="noise spec"):
        make_noise(0.4, labels)


@pytest.mark.parametrize("gen", GENERATORS)
@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan")])
def test_bad_rate(gen, rate, labels):
    with pytest.raises(ValueError, match="rate"):
        gen(labels, rate, seed=0)


@pytest.mark.parametrize("gen", GENERATORS)
def test_bad_inputs(gen, labels):
    with pytest.raises(TypeError, match="rate"):
        gen(labels, "0.3")
    with pytest.raises(ValueError, match="seed"):
        gen(labels, 0.3, seed=-1)
    with pytest.raises((TypeError, ValueError), match="seed"):
        gen(labels, 0.3, seed=1.5)
    with pytest.raises(ValueError, match="labels"):
        gen(labels.reshape(-1, 2), 0.3)
    with pytest.raises(ValueError, match="labels"):
        gen(labels + 0.5, 0.3)
    with pytest.raises(ValueError, match="labels"):
        gen(labels - 1, 0.3)
    with pytest.raises(ValueError, match="labels"):
        gen(np.r_[labels, 10], 0.3, num_classes=10)


def test_asym_needs_ten_classes(labels):
    with pytest.raises(ValueError, match="num_classes"):
        cifar10_asymmetric_noise(labels, 0.2, num_classes=11)
    with pytest.raises(ValueError, match="num_classes"):
        symmetric_noise(np.zeros(5, dtype=int), 0.2)


def test_one_hot(labels):
    Y = one_hot(labels, C)
    assert Y.dtype == np.float64 and Y.shape == (N, C)
    np.testing.assert_array_equal(Y.argmax(1), labels)
    np.testing.assert_array_equal(Y.sum(1), np.ones(N))
    np.testing.assert_array_equal(Y, np.eye(C)[labels])
    with pytest.raises(ValueError, match="labels"):
        one_hot([0, 3], 3)
    with pytest.raises(ValueError, match="num_classes"):
        one_hot([0, 1], 0)
