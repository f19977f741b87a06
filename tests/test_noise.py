"""Label-noise generators: exact rates, valid destinations, masks, seeds, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from tests.conftest import to_backend
from theory import make_noise, one_hot, pair_noise, symmetric_noise, uniform_noise
from theory.noise import CIFAR10_ASYMMETRIC_MAP, CIFAR10_CLASSES, cifar10_asymmetric_noise

N = 20000
C = 10
# generators whose every selected sample changes class (rate = flip rate, in [0, 1))
GENERATORS = [symmetric_noise, pair_noise, cifar10_asymmetric_noise]
# plus uniform resampling (rate = resampling rate, in [0, 1])
ALL_GENERATORS = [*GENERATORS, uniform_noise]


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
    assert out.n_selected == out.n_flipped  # every selected sample moves to another class
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


@pytest.mark.parametrize("gen", ALL_GENERATORS)
def test_seeds_reproduce_and_differ(gen, labels):
    a = gen(labels, 0.3, num_classes=C, seed=11)
    b = gen(labels, 0.3, num_classes=C, seed=11)
    c = gen(labels, 0.3, num_classes=C, seed=12)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.flipped, b.flipped)
    assert not np.array_equal(a.flipped, c.flipped)


@pytest.mark.parametrize("gen", [symmetric_noise, uniform_noise])
def test_inputs_not_modified_and_torch_labels(gen, labels):
    before = labels.copy()
    out = gen(labels, 0.5, seed=0)
    np.testing.assert_array_equal(labels, before)
    out_t = gen(to_backend(labels, "torch"), 0.5, seed=0)
    np.testing.assert_array_equal(out.labels, out_t.labels)
    assert out.num_classes == C  # inferred


def test_make_noise_dispatch(labels):
    np.testing.assert_array_equal(
        make_noise("symmetric:0.4", labels, seed=4).labels, symmetric_noise(labels, 0.4, num_classes=10, seed=4).labels
    )
    np.testing.assert_array_equal(
        make_noise(" Pair:0.2 ", labels, seed=4).labels, pair_noise(labels, 0.2, num_classes=10, seed=4).labels
    )
    a = make_noise("asym:0.3", labels, seed=4)
    b = make_noise("cifar10-asym:0.3", labels, seed=4)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.labels, cifar10_asymmetric_noise(labels, 0.3, seed=4).labels)
    none = make_noise("none", labels)
    assert none.kind == "none" and none.n_flipped == 0
    np.testing.assert_array_equal(none.labels, labels)


@pytest.mark.parametrize(
    "spec",
    [
        "gauss:0.2",
        "symmetric",
        "symmetric:",
        "symmetric:abc",
        "pair:1.0",
        "asym:-0.1",
        "sym:nan",
        "",
        "uniform",
        "uniform:",
        "uniform:abc",
        "uniform:1.5",
        "uniform:-0.1",
        "uniform:nan",
        "uniform:inf",
        "unif:0.4",
    ],
)
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


@pytest.mark.parametrize("gen", ALL_GENERATORS)
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
    with pytest.raises(ValueError, match="uniform_noise: num_classes must be >= 2"):
        uniform_noise(np.zeros(5, dtype=int), 0.2)


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


# ----------------------------------------------------------------------------- uniform resampling (DivideMix / ELR / SAT)


def _binom_bounds(n: int, p: float, tail: float = 1e-6) -> tuple[float, float]:
    """Two-sided bounds on a Binomial(n, p) count, each tail below ``tail``."""
    return stats.binom.ppf(tail, n, p), stats.binom.isf(tail, n, p)


def test_symmetric_unchanged_pinned():
    # "symmetric:<rate>" keeps its meaning and its draws: flips to the C-1 other classes, same RNG stream
    expected = [9, 3, 2, 8, 7, 5, 0, 3, 8, 7, 0, 1, 2, 3, 4, 5, 4, 0, 6, 9]
    y = np.arange(20) % 10
    out = symmetric_noise(y, 0.5, num_classes=10, seed=0)
    assert out.labels.tolist() == expected
    assert make_noise("symmetric:0.5", y, seed=0).labels.tolist() == expected
    assert make_noise("sym:0.5", y, seed=0).kind == "symmetric"
    assert out.n_selected == out.n_flipped == 10 and out.realised_rate == 0.5


def test_uniform_rate_one_is_uniform_over_all_classes():
    # every label redrawn from all C classes, the true class included
    n = 50000
    y = np.zeros(n, dtype=np.int64)  # one true class: the noisy label histogram is the resampling law
    out = uniform_noise(y, 1.0, num_classes=C, seed=0)
    assert out.n_selected == n and out.kind == "uniform" and out.rate == 1.0
    counts = np.bincount(out.labels, minlength=C)
    assert stats.chisquare(counts).pvalue > 1e-4
    lo, hi = _binom_bounds(n, 1 / C)
    assert np.all((counts >= lo) & (counts <= hi)), counts  # incl. counts[0], the true class
    # mixed true classes: the offset (noisy - true) mod C is uniform on 0..C-1, 0 included
    y2 = np.random.default_rng(1).integers(0, C, size=n)
    out2 = uniform_noise(y2, 1.0, num_classes=C, seed=2)
    offsets = np.bincount((out2.labels - y2) % C, minlength=C)
    assert stats.chisquare(offsets).pvalue > 1e-4
    assert lo <= offsets[0] <= hi
    # realised error rate (C-1)/C
    lo_f, hi_f = _binom_bounds(n, (C - 1) / C)
    assert lo_f <= out2.n_flipped <= hi_f


@pytest.mark.parametrize("seed", range(5))
def test_uniform_changed_fraction_is_rate_times_c_minus_1_over_c(seed, labels):
    # "40%" of DivideMix / ELR / SAT changes ~36% of CIFAR-10 labels, not 40%
    out = uniform_noise(labels, 0.4, num_classes=C, seed=seed)
    m = math.floor(0.4 * N + 0.5)
    assert out.n_selected == m == 8000
    # changed ~ Binomial(8000, 0.9): mean 7200, sd 26.8; the 1e-6 bounds are +-0.0066 around 0.36,
    # far from 0.40 (drawing from the 9 other classes) and from 0.4 * 0.9 * 0.9 etc.
    lo, hi = _binom_bounds(m, (C - 1) / C)
    assert lo <= out.n_flipped <= hi
    assert abs(out.realised_rate - 0.36) < 0.007
    assert out.realised_rate < 0.39  # a 9-other-classes draw would give exactly 0.40


def test_uniform_selects_the_symmetric_subset(labels):
    # the same samples as symmetric noise with the same seed are selected; among them the new label
    # is uniform over all C classes (offset 0 = kept its class included)
    sym = symmetric_noise(labels, 0.4, num_classes=C, seed=7)
    uni = uniform_noise(labels, 0.4, num_classes=C, seed=7)
    assert uni.n_selected == sym.n_selected == sym.n_flipped
    assert not np.any(uni.flipped & ~sym.flipped)  # changed labels lie in the selected subset
    np.testing.assert_array_equal(uni.labels[~sym.flipped], labels[~sym.flipped])
    offsets = np.bincount((uni.labels[sym.flipped] - labels[sym.flipped]) % C, minlength=C)
    assert stats.chisquare(offsets).pvalue > 1e-4
    lo, hi = _binom_bounds(sym.n_flipped, 1 / C)
    assert lo <= offsets[0] <= hi


@pytest.mark.parametrize(
    ("n", "rate", "expected"),
    [
        (2, 0.25, 1),  # 0.5 -> 1 (banker's rounding would give 0)
        (10, 0.25, 3),  # 2.5 -> 3 (banker's: 2)
        (5, 0.5, 3),  # 2.5 -> 3
        (20, 0.125, 3),  # 2.5 -> 3
        (7, 0.3, 2),  # 2.1 -> 2
        (9, 0.0, 0),
        (3, 1.0, 3),
        (2000, 0.4, 800),
    ],
)
def test_uniform_selected_count_is_round_half_up(n, rate, expected):
    y = np.arange(n) % 10
    # with 10**9 classes a redrawn label practically never equals its own, so the changed count
    # measures the selected count independently of the reported n_selected
    big = uniform_noise(y, rate, num_classes=10**9, seed=1)
    assert big.n_selected == expected
    assert big.n_flipped == expected
    small = uniform_noise(y, rate, num_classes=10, seed=1)
    assert small.n_selected == expected and small.n_flipped <= expected
    np.testing.assert_array_equal(small.flipped, small.labels != small.true_labels)


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.37, 0.8, 1.0])
def test_uniform_mask_and_fields(rate, labels):
    out = uniform_noise(labels, rate, num_classes=C, seed=3)
    np.testing.assert_array_equal(out.flipped, out.labels != out.true_labels)
    np.testing.assert_array_equal(out.true_labels, labels)
    assert out.labels.dtype == np.int64 and out.flipped.dtype == bool
    assert out.labels.min() >= 0 and out.labels.max() < C
    assert out.kind == "uniform" and out.rate == rate and out.seed == 3 and out.num_classes == C
    assert out.n_eligible == N and out.n_selected == math.floor(rate * N + 0.5)
    assert out.n_flipped <= out.n_selected
    if out.n_selected:
        lo, hi = _binom_bounds(out.n_selected, (C - 1) / C)
        assert lo <= out.n_flipped <= hi
    else:
        assert out.n_flipped == 0


@pytest.mark.parametrize("spec", ["none", "symmetric:0.3", "uniform:0.3", "uniform:1.0", "pair:0.3", "asym:0.3"])
def test_realised_rate_every_kind(spec, labels):
    out = make_noise(spec, labels, num_classes=C, seed=5)
    assert isinstance(out.realised_rate, float)
    assert out.realised_rate == float(np.mean(out.flipped))
    assert out.realised_rate == float(np.mean(out.labels != out.true_labels))
    if spec == "none":
        assert out.realised_rate == 0.0 and out.n_selected == 0
    elif out.kind == "uniform":
        assert out.n_flipped < out.n_selected
    else:
        assert out.n_selected == out.n_flipped
        assert out.realised_rate == out.n_selected / N


def test_realised_rate_empty_labels():
    out = uniform_noise(np.zeros(0, dtype=int), 0.4, num_classes=C)
    assert out.realised_rate == 0.0 and out.n_selected == 0


def test_make_noise_uniform(labels):
    out = make_noise("uniform:0.4", labels, seed=4)
    ref = uniform_noise(labels, 0.4, num_classes=10, seed=4)
    assert out.kind == "uniform" and out.n_selected == 8000
    np.testing.assert_array_equal(out.labels, ref.labels)
    np.testing.assert_array_equal(make_noise(" Uniform:0.4 ", labels, seed=4).labels, ref.labels)
    # rate 1 is allowed for uniform (redraw every label), not for symmetric
    assert make_noise("uniform:1.0", labels, seed=4).n_selected == N
    with pytest.raises(ValueError, match="noise spec"):
        make_noise("symmetric:1.0", labels)
    # the two conventions differ at the same nominal rate
    assert make_noise("symmetric:0.4", labels, seed=4).realised_rate == 0.4
    assert out.realised_rate < 0.39


def _message(spec, labels):
    with pytest.raises(ValueError) as info:
        make_noise(spec, labels)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_make_noise_uniform_error_wording(labels):
    # same one-line style as the other kinds: function, argument, allowed range, offending value
    assert _message("uniform:1.5", labels) == "make_noise: noise spec rate must be a float in [0, 1]; got '1.5' in 'uniform:1.5'"
    assert (
        _message("uniform:-0.1", labels) == "make_noise: noise spec rate must be a float in [0, 1]; got '-0.1' in 'uniform:-0.1'"
    )
    assert (
        _message("symmetric:1.5", labels) == "make_noise: noise spec rate must be a float in [0, 1); got '1.5' in 'symmetric:1.5'"
    )
    bad = _message("uniform:abc", labels)
    assert bad.startswith("make_noise: noise spec rate must be a float in [0, 1] as in 'none', ")
    assert bad.endswith("; got 'uniform:abc'")
    sym_bad = _message("symmetric:abc", labels)
    assert sym_bad.startswith("make_noise: noise spec rate must be a float in [0, 1) as in 'none', ")
    assert sym_bad.endswith("; got 'symmetric:abc'")
    # the list of accepted forms names uniform and its range
    assert "'uniform:<rate>' with rate a float in [0, 1]" in _message("gauss:0.2", labels)


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan")])
def test_uniform_bad_rate(rate, labels):
    with pytest.raises(ValueError, match=r"uniform_noise: rate must be a float in \[0, 1\]"):
        uniform_noise(labels, rate, seed=0)
