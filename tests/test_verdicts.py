"""benchmarks.verdicts: the pass rules of ``airkit run confirm`` on synthetic data with known answers.

Each rule is checked on both sides of its threshold (and exactly at it, to pin >= vs >),
and against the plausible bugs: a rule on the mean instead of every seed, an
off-by-one in the first-crossing epoch, the last instead of the first of tied peaks,
inf dropped instead of ranked last, ddof=0.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from benchmarks.verdicts import (
    Verdict,
    air_energy_verdicts,
    distillation_verdicts,
    early_stopping_verdict,
    ntk_regime_verdicts,
    ordering_verdicts,
    verdict_summary,
    verdict_table,
)

ROOT = Path(__file__).resolve().parents[1]


def _one_line(exc_info, fn):
    text = str(exc_info.value)
    assert text.startswith(f"{fn}: ") and "\n" not in text, text


def _by_key(verdicts):
    return {v.key: v for v in verdicts}


# ----------------------------------------------------------------------------- P1


def test_air_energy_planted_spectrum_passes():
    clean = np.array([[0.6, 0.8], [0.62, 0.79], [0.58, 0.81]])
    noise = np.array([[0.1, 0.2], [0.12, 0.21], [0.09, 0.19]])
    vs = air_energy_verdicts(clean, noise, [0.05, 0.1])
    assert [v.key for v in vs] == ["P1 top-5%", "P1 top-10%"]
    for j, v in enumerate(vs):
        ratio = clean[:, j] / noise[:, j]
        assert v.passed and v.n_seeds == 3 and v.analytic is None
        assert v.measured == pytest.approx(ratio.mean())
        assert v.measured_std == pytest.approx(np.std(ratio, ddof=1))  # ddof=1, not 0
        assert "2 x noise share" in v.tolerance and "\n" not in v.detail


def test_air_energy_fails_when_noise_is_in_the_top_directions():
    (v,) = air_energy_verdicts([[0.6]] * 3, [[0.4]] * 3, [0.05])
    assert not v.passed and v.measured == pytest.approx(1.5)


def test_air_energy_one_failing_seed_fails_although_the_mean_ratio_passes():
    clean = np.array([[0.6], [0.6], [0.6]])
    noise = np.array([[0.1], [0.1], [0.4]])  # ratios 6, 6, 1.5: mean 4.5 >= 2
    (v,) = air_energy_verdicts(clean, noise, [0.05])
    assert v.measured == pytest.approx(4.5) and not v.passed


def test_air_energy_threshold_and_factor():
    assert air_energy_verdicts([0.5], [0.25], [0.1])[0].passed  # exactly 2x: >= holds
    assert not air_energy_verdicts([0.5 - 2**-20], [0.25], [0.1])[0].passed
    assert not air_energy_verdicts([0.6], [0.1], [0.1], factor=10)[0].passed
    v = air_energy_verdicts([0.6], [0.1], [0.1])[0]
    assert v.n_seeds == 1 and v.measured_std is None  # 1-D = one seed


def test_air_energy_zero_noise_and_empty_direction():
    v = air_energy_verdicts([[0.6], [0.5]], [[0.0], [0.1]], [0.01])[0]
    assert v.passed and v.measured == np.inf and v.measured_std is None
    v = air_energy_verdicts([[0.0], [0.5]], [[0.0], [0.1]], [0.01])[0]
    assert not v.passed and "no clean or noise energy" in v.detail


def test_air_energy_bad_input():
    fn = "air_energy_verdicts"
    good = dict(clean_share=[[0.6, 0.7]], noise_share=[[0.1, 0.2]], fractions=[0.05, 0.1])
    for kw, msg in [
        (dict(clean_share=[[0.6]]), "clean_share must have 2 fractions"),
        (dict(noise_share=[[0.1, 0.2], [0.1, 0.2]]), "noise_share must have the shape of clean_share"),
        (dict(fractions=[0.0, 0.1]), r"fractions must lie in \(0, 1\]"),
        (dict(fractions=[0.1, 0.1]), "fractions must be distinct"),
        (dict(clean_share=[[np.nan, 0.7]]), "clean_share must be finite"),
        (dict(noise_share=[[-0.1, 0.2]]), "noise_share must be >= 0"),
        (dict(clean_share=np.zeros((1, 2, 1))), "clean_share must be a non-empty 2-D array"),
    ]:
        with pytest.raises(ValueError, match=msg) as info:
            air_energy_verdicts(**(good | kw))
        _one_line(info, fn)
    with pytest.raises(ValueError, match="factor must be a float in"):
        air_energy_verdicts(**good, factor=0.0)


# ----------------------------------------------------------------------------- P2


def _fit_data(rng, n=300, reverse=False):
    flipped = rng.random(n) < 0.3
    predicted = np.where(flipped, 10.0, 0.0) + 10.0 * rng.random(n)
    measured = 2.0 * predicted + rng.normal(scale=0.5, size=n)
    if reverse:
        measured = 60.0 - measured
    return np.maximum(measured, 0.0), predicted, flipped


def test_ordering_measured_follows_predicted_passes(rng):
    m, p, f = _fit_data(rng)
    vs = _by_key(ordering_verdicts([m], [p], [f]))
    assert set(vs) == {"P2 clean first (net)", "P2 clean first (theory)", "P2 rank clean", "P2 rank flipped"}
    assert all(v.passed for v in vs.values()), verdict_table(list(vs.values()))
    assert vs["P2 rank clean"].measured == pytest.approx(spearmanr(p[~f], m[~f]).statistic)
    assert vs["P2 rank flipped"].measured == pytest.approx(spearmanr(p[f], m[f]).statistic)
    lead = np.median(m[f]) - np.median(m[~f])
    assert vs["P2 clean first (net)"].measured == pytest.approx(lead)
    assert "one-sided p" in vs["P2 rank clean"].detail


def test_ordering_reversed_fails(rng):
    m, p, f = _fit_data(rng, reverse=True)
    vs = _by_key(ordering_verdicts([m], [p], [f]))
    assert not vs["P2 clean first (net)"].passed and vs["P2 clean first (net)"].measured < 0
    assert vs["P2 clean first (theory)"].passed
    assert not vs["P2 rank clean"].passed and vs["P2 rank clean"].measured < -0.9
    assert not vs["P2 rank flipped"].passed


def test_ordering_every_seed_must_pass_and_measured_is_the_mean(rng):
    good = _fit_data(rng)
    bad = _fit_data(rng, reverse=True)
    vs = _by_key(ordering_verdicts([good[0], bad[0]], [good[1], bad[1]], [good[2], bad[2]]))
    v = vs["P2 rank clean"]
    rhos = [spearmanr(good[1][~good[2]], good[0][~good[2]]).statistic, spearmanr(bad[1][~bad[2]], bad[0][~bad[2]]).statistic]
    assert v.n_seeds == 2 and not v.passed
    assert v.measured == pytest.approx(np.mean(rhos)) and v.measured_std == pytest.approx(np.std(rhos, ddof=1))
    # two good seeds (as a 2-D array) pass
    g2 = _fit_data(rng)
    vs = ordering_verdicts(np.stack([good[0], g2[0]]), np.stack([good[1], g2[1]]), np.stack([good[2], g2[2]]))
    assert all(v.passed for v in vs)


def test_ordering_median_treats_inf_as_largest():
    clean = np.array([4.0, 5.0, 6.0])
    f = np.array([False] * 3 + [True] * 4)
    # flipped [1, 2, inf, inf]: median inf (half never fitted) > 5: passes; dropping inf would give 1.5
    v = _by_key(ordering_verdicts(np.r_[clean, 1, 2, np.inf, np.inf], np.r_[clean, 7, 8, 9, 10], f))["P2 clean first (net)"]
    assert v.passed and v.measured == np.inf
    # flipped [1, 2, 3, inf]: median 2.5 < 5: fails
    v = _by_key(ordering_verdicts(np.r_[clean, 1, 2, 3, np.inf], np.r_[clean, 7, 8, 9, 10], f))["P2 clean first (net)"]
    assert not v.passed and v.measured == pytest.approx(-2.5)
    # both medians inf: not "clean first", and no NaN
    v = _by_key(ordering_verdicts(np.r_[4, np.inf, np.inf, 1, np.inf, np.inf, np.inf], np.arange(7.0), f))["P2 clean first (net)"]
    assert not v.passed and v.measured == 0.0


def test_ordering_rank_ranks_inf_last():
    n = 20
    f = np.ones(n, dtype=bool)
    f[:4] = False  # 4 clean examples, fitted in order
    p = np.arange(n, dtype=float)
    m = 2.0 * p
    m[-5:] = np.inf  # the 5 latest never fitted: tied last, still perfectly monotone
    v = _by_key(ordering_verdicts(m, p, f))["P2 rank flipped"]
    top = np.where(np.isinf(m), m[np.isfinite(m)].max() + 1, m)
    assert v.passed and v.measured == pytest.approx(spearmanr(p[f], top[f]).statistic) and v.measured > 0.95
    p2 = p.copy()
    p2[-3:] = np.inf  # inf in the prediction too
    v = _by_key(ordering_verdicts(m, p2, f))["P2 rank flipped"]
    assert v.passed and np.isfinite(v.measured)


def test_ordering_guards_and_significance():
    # 2 flipped examples: too few to rank, fails with the reason
    f = np.array([False] * 10 + [True] * 2)
    p = np.arange(12.0)
    vs = _by_key(ordering_verdicts(p, p, f))
    assert vs["P2 rank clean"].passed
    assert not vs["P2 rank flipped"].passed and "only 2 flipped examples" in vs["P2 rank flipped"].detail
    # constant measured times in the clean subset: no ranking
    m = np.where(f, p, 3.0)
    v = _by_key(ordering_verdicts(m, p, f))["P2 rank clean"]
    assert not v.passed and "all equal" in v.detail
    # rho > 0 but not significant on 5 examples: fails on p
    f = np.array([False] * 5 + [True] * 5)
    p = np.r_[0, 1, 2, 3, 4, 10, 11, 12, 13, 14.0]
    m = np.r_[1, 0, 3, 4, 2, 10, 11, 12, 13, 14.0]
    v = _by_key(ordering_verdicts(m, p, f))["P2 rank clean"]
    assert 0 < v.measured < 1 and not v.passed
    # a subset without flipped examples: clean-first cannot be judged
    v = _by_key(ordering_verdicts(np.arange(5.0), np.arange(5.0), np.zeros(5, dtype=bool)))["P2 clean first (net)"]
    assert not v.passed and "no flipped examples" in v.detail


def test_ordering_rank_p_value_is_one_sided():
    """Two-sided p = 0.0153 with rho > 0: one-sided 0.0077 < 0.01 passes; the mirror image (rho < 0) fails."""
    p = np.arange(12.0)
    m = np.array([1, 3, 0, 8, 5, 9, 2, 7, 4, 6, 10, 11], dtype=float)
    res = spearmanr(p, m)
    assert res.statistic > 0 and 0.01 < res.pvalue < 0.02
    clean = np.zeros(24, dtype=bool)
    clean[:12] = True
    flipped = ~clean
    pred = np.r_[p, p + 100]
    v = _by_key(ordering_verdicts(np.r_[m, m + 100], pred, flipped))["P2 rank clean"]
    assert v.passed and v.measured == pytest.approx(res.statistic)
    assert f"one-sided p {res.pvalue / 2:.3g}" in v.detail
    v = _by_key(ordering_verdicts(np.r_[11 - m, m + 100], pred, flipped))["P2 rank clean"]
    assert not v.passed and v.measured == pytest.approx(-res.statistic)


def test_ordering_bad_input():
    fn = "ordering_verdicts"
    m = [np.arange(5.0)]
    f = [np.array([0, 1, 0, 1, 0], dtype=bool)]
    for args, msg in [
        ((m, [np.arange(4.0)], f), r"predicted_fit\[0\] must have the length of measured_fit\[0\]"),
        ((m, m, [np.array([0, 1, 0, 1], dtype=bool)]), r"flipped\[0\] must have the length"),
        ((m, [np.arange(5.0)] * 2, f), "predicted_fit must have one entry per seed"),
        (([np.r_[0, 1, 2, 3, np.nan]], m, f), r"measured_fit\[0\] must be finite or inf"),
        (([np.r_[0, 1, 2, 3, -1.0]], m, f), r"measured_fit\[0\] must be >= 0"),
        ((m, m, [np.arange(5.0)]), r"flipped\[0\] must be a boolean mask"),
        ((m, m, 3), "flipped must be a list of 1-D arrays"),
        (([np.zeros((2, 2))], m, f), r"measured_fit\[0\] must be a non-empty 1-D array"),
    ]:
        with pytest.raises(ValueError, match=msg) as info:
            ordering_verdicts(*args)
        _one_line(info, fn)


# ----------------------------------------------------------------------------- P3


def _memorising_run(peak=5, mem50=9, epochs=12):
    """Test acc rises to its peak at epoch `peak` (1-based) and falls; memorisation first reaches 0.5 at `mem50`."""
    e = np.arange(1, epochs + 1)
    acc = np.where(e <= peak, 0.5 + 0.06 * e, 0.5 + 0.06 * peak - 0.02 * (e - peak))
    mem = np.where(e < mem50, 0.04 * e, 0.5 + 0.05 * (e - mem50))
    mem = np.minimum(mem, 1.0)
    assert np.argmax(acc) == peak - 1 and np.flatnonzero(mem >= 0.5)[0] == mem50 - 1
    return acc, mem


def test_early_stopping_memorising_run_passes():
    acc, mem = _memorising_run()
    v = early_stopping_verdict([acc, acc], [mem, mem])
    assert v.passed and v.key == "P3 early stopping" and v.n_seeds == 2
    assert v.measured == pytest.approx(acc.max() - acc[-1]) and v.measured_std == pytest.approx(0.0)
    assert "peak epoch 5, 5" in v.detail and "epoch 9, 9" in v.detail  # 1-based


def test_early_stopping_peak_after_memorisation_fails():
    acc, mem = _memorising_run(peak=5, mem50=4)
    assert not early_stopping_verdict(acc, mem).passed
    acc, mem = _memorising_run(peak=5, mem50=5)  # same epoch: not before
    assert not early_stopping_verdict(acc, mem).passed


def test_early_stopping_final_equal_to_peak_fails():
    acc, mem = _memorising_run()
    acc[-1] = acc.max()  # a tie at the end: first-of-ties peak is still epoch 5
    v = early_stopping_verdict(acc, mem)
    assert not v.passed and "peak epoch 5" in v.detail


def test_early_stopping_first_crossing_is_at_exactly_half():
    acc, mem = _memorising_run(peak=5, mem50=9)
    mem[:] = 0.1
    mem[4] = 0.5  # exactly 0.5 at epoch 5 (the peak): memorised then, so not "before"
    mem[5:] = 0.6
    v = early_stopping_verdict(acc, mem)
    assert not v.passed and "memorised >= 0.5 at epoch 5" in v.detail
    mem[4] = 0.5 - 1e-9  # just below: first crossing at epoch 6, after the peak
    assert early_stopping_verdict(acc, mem).passed


def test_early_stopping_first_of_tied_peaks_and_never_memorised():
    acc, mem = _memorising_run(peak=5, mem50=9)
    acc[9] = acc[4]  # tied peak at epoch 10, after memorisation: the first (epoch 5) counts
    assert early_stopping_verdict(acc, mem).passed
    v = early_stopping_verdict(acc, np.zeros_like(mem))
    assert v.passed and "never" in v.detail


def test_early_stopping_one_bad_seed_fails():
    good = _memorising_run()
    bad = _memorising_run(peak=8, mem50=6)
    v = early_stopping_verdict(np.stack([good[0], good[0], bad[0]]), np.stack([good[1], good[1], bad[1]]))
    assert not v.passed and v.n_seeds == 3


def test_early_stopping_bad_input():
    fn = "early_stopping_verdict"
    acc, mem = _memorising_run()
    for args, msg in [
        ((acc, mem[:-1]), "memorised must have the shape of test_acc"),
        ((100 * acc, mem), r"test_acc must be <= 1 \(a fraction"),
        ((acc, np.where(np.arange(12) == 3, np.nan, mem)), "memorised must be finite"),
        ((np.zeros((2, 3, 4)), mem), "test_acc must be a non-empty 2-D array"),
    ]:
        with pytest.raises(ValueError, match=msg) as info:
            early_stopping_verdict(*args)
        _one_line(info, fn)


# ----------------------------------------------------------------------------- P4


def _p4(final_acc, final_mem, es, ce_acc, ce_mem, **kw):
    return _by_key(distillation_verdicts("sd", final_acc, final_mem, es, ce_acc, ce_mem, **kw))


def test_distillation_keys_and_numbers():
    vs = _p4([0.8, 0.82], [0.1, 0.12], [0.81, 0.8, 0.82], [0.6, 0.62, 0.61], [0.9, 0.9, 0.9])
    assert list(vs) == ["P4 sd vs early stop", "P4 sd vs CE final", "P4 sd memorisation"]
    es = vs["P4 sd vs early stop"]
    assert es.analytic == pytest.approx(0.81) and es.measured == pytest.approx(0.81) and es.n_seeds == 2
    assert es.measured_std == pytest.approx(np.std([0.8, 0.82], ddof=1))
    assert all(v.passed for v in vs.values())
    assert vs["P4 sd memorisation"].measured == pytest.approx(0.11)


def test_distillation_vs_early_stop_threshold_is_inclusive():
    # dyadic numbers: mean 0.75 against 0.8125 - 0.0625 = 0.75 exactly
    kw = dict(final_mem=[0.0], ce_acc=[0.5], ce_mem=[0.5], points=0.0625)
    assert _p4([0.75], es=[0.8125], **kw)["P4 sd vs early stop"].passed
    assert not _p4([0.75 - 2**-10], es=[0.8125], **kw)["P4 sd vs early stop"].passed
    assert _p4([0.75 + 2**-10], es=[0.8125], **kw)["P4 sd vs early stop"].passed
    # default points = 0.01
    assert _p4([0.795], [0.0], [0.80], [0.5], [0.5])["P4 sd vs early stop"].passed
    assert not _p4([0.785], [0.0], [0.80], [0.5], [0.5])["P4 sd vs early stop"].passed


def test_distillation_vs_ce_final_is_strict():
    kw = dict(final_mem=[0.0], es=[0.75], ce_mem=[0.5])
    assert not _p4([0.75], ce_acc=[0.75], **kw)["P4 sd vs CE final"].passed
    assert _p4([0.75 + 2**-10], ce_acc=[0.75], **kw)["P4 sd vs CE final"].passed
    assert not _p4([0.75 - 2**-10], ce_acc=[0.75], **kw)["P4 sd vs CE final"].passed


def test_distillation_memorisation_threshold_is_inclusive():
    kw = dict(final_acc=[0.75], es=[0.75], ce_acc=[0.5])
    assert _p4(final_mem=[0.25], ce_mem=[0.5], **kw)["P4 sd memorisation"].passed
    assert not _p4(final_mem=[0.25 + 2**-10], ce_mem=[0.5], **kw)["P4 sd memorisation"].passed
    assert _p4(final_mem=[0.25 - 2**-10], ce_mem=[0.5], **kw)["P4 sd memorisation"].passed


def test_distillation_uses_means_over_seeds():
    # one seed above, one below: the mean decides; means of equal non-dyadic values sit at the threshold
    vs = _p4([0.7, 0.9], [0.1, 0.3], [0.8, 0.8, 0.8], [0.5, 0.5, 0.5], [0.4, 0.4, 0.4], points=0.0)
    assert vs["P4 sd vs early stop"].passed and vs["P4 sd memorisation"].passed  # 0.2 <= 0.5 * 0.4
    assert vs["P4 sd vs early stop"].measured == pytest.approx(0.8) and vs["P4 sd vs early stop"].n_seeds == 2
    vs = _p4([0.7, 0.89], [0.1, 0.31], [0.8, 0.8, 0.8], [0.5, 0.5, 0.5], [0.4, 0.4, 0.4], points=0.0)
    assert not vs["P4 sd vs early stop"].passed and not vs["P4 sd memorisation"].passed


def test_distillation_bad_input():
    fn = "distillation_verdicts"
    good = (["sd"], [0.8], [0.1], [0.8, 0.8], [0.6, 0.6], [0.9, 0.9])
    for i, bad, msg in [
        (0, "", "method must be a non-empty string"),
        (2, [0.1, 0.1], "final_mem must have length 1"),
        (4, [0.6], "ce_final_acc must have length 2"),
        (5, [0.9, 90.0], "ce_final_mem must be <= 1"),
        (1, [], "final_acc must be a non-empty 1-D array"),
    ]:
        args = [a[0] if j == 0 else a for j, a in enumerate(good)]
        args[i] = bad
        with pytest.raises(ValueError, match=msg) as info:
            distillation_verdicts(*args)
        _one_line(info, fn)


# ----------------------------------------------------------------------------- P5


WIDTHS = [64, 128, 256, 512, 1024]


def _gaps(exponent, rng, seeds=3, scale=0.3):
    noise = np.exp(0.05 * rng.normal(size=(len(WIDTHS), seeds)))
    return [scale * (w / 64) ** exponent * noise[j] for j, w in enumerate(WIDTHS)]


def _curves(T=6, seeds=3, offset=0.0):
    analytic = np.linspace(0.3, 0.8, T)
    return [np.tile(analytic + offset, (seeds, 1)) for _ in WIDTHS], analytic


def test_ntk_half_power_gaps_pass(rng):
    curves, analytic = _curves(offset=0.01)
    vs = _by_key(ntk_regime_verdicts(WIDTHS, curves, analytic, _gaps(-0.5, rng)))
    assert list(vs) == ["P5 widest net = analytic curve", "P5 gap shrinks with width", "P5 gap exponent"]
    assert all(v.passed for v in vs.values())
    e = vs["P5 gap exponent"]
    assert e.analytic == -0.5 and e.measured == pytest.approx(-0.5, abs=0.05)
    assert e.measured_std is not None and 0 < e.measured_std < 0.1 and e.n_seeds == 3
    assert vs["P5 widest net = analytic curve"].measured == pytest.approx(0.01)
    assert vs["P5 gap shrinks with width"].analytic == pytest.approx((1024 / 64) ** -0.5)


def test_ntk_exact_slope_is_recovered():
    gaps = [np.array([0.3 * (w / 64) ** -0.7]) for w in WIDTHS]
    curves, analytic = _curves(seeds=1)
    v = _by_key(ntk_regime_verdicts(WIDTHS, curves, analytic, gaps))["P5 gap exponent"]
    assert v.measured == pytest.approx(-0.7) and v.passed and v.measured_std is None
    gaps = [np.array([0.3 * (w / 64) ** -0.8]) for w in WIDTHS]
    assert not _by_key(ntk_regime_verdicts(WIDTHS, curves, analytic, gaps))["P5 gap exponent"].passed


def test_ntk_flat_gaps_fail(rng):
    curves, analytic = _curves()
    gaps = [np.full(3, 0.2) for _ in WIDTHS]
    vs = _by_key(ntk_regime_verdicts(WIDTHS, curves, analytic, gaps))
    assert not vs["P5 gap shrinks with width"].passed
    assert not vs["P5 gap exponent"].passed and vs["P5 gap exponent"].measured == pytest.approx(0.0, abs=1e-12)
    # one step up among the widths breaks "strictly decreasing"
    gaps = _gaps(-0.5, rng)
    gaps[2] = gaps[1] * 1.01
    assert not _by_key(ntk_regime_verdicts(WIDTHS, curves, analytic, gaps))["P5 gap shrinks with width"].passed


def test_ntk_inverse_width_fails_the_exponent(rng):
    curves, analytic = _curves()
    vs = _by_key(ntk_regime_verdicts(WIDTHS, curves, analytic, _gaps(-1.0, rng)))
    assert vs["P5 gap shrinks with width"].passed
    assert not vs["P5 gap exponent"].passed and vs["P5 gap exponent"].measured == pytest.approx(-1.0, abs=0.05)


def test_ntk_curve_rule_uses_the_seed_mean_and_the_widest_net():
    curves, analytic = _curves(seeds=2)
    gaps = [np.full(2, 0.3 * (w / 64) ** -0.5) for w in WIDTHS]
    curves[-1] = np.stack([analytic + 0.05, analytic - 0.05])  # seeds off by 5 points, mean on the curve
    curves[0] = curves[0] + 0.1  # a narrow net far off does not count
    v = _by_key(ntk_regime_verdicts(WIDTHS, curves, analytic, gaps))["P5 widest net = analytic curve"]
    assert v.passed and v.measured == pytest.approx(0.0, abs=1e-12) and v.analytic == 0.0
    curves[-1] = np.tile(analytic, (2, 1))
    curves[-1][:, 3] += 0.03  # one step 3 points off
    v = _by_key(ntk_regime_verdicts(WIDTHS, curves, analytic, gaps))["P5 widest net = analytic curve"]
    assert not v.passed and v.measured == pytest.approx(0.03)
    assert _by_key(ntk_regime_verdicts(WIDTHS, curves, analytic, gaps, points=0.05))["P5 widest net = analytic curve"].passed


def test_ntk_degenerate_cases_fail_with_a_reason():
    curves, analytic = _curves(seeds=1)
    gaps = [np.array([0.3 * (w / 64) ** -0.5]) for w in WIDTHS]
    gaps[-1] = np.array([0.0])
    v = _by_key(ntk_regime_verdicts(WIDTHS, curves, analytic, gaps))["P5 gap exponent"]
    assert not v.passed and "log undefined" in v.detail
    vs = _by_key(ntk_regime_verdicts([64], curves[:1], analytic, gaps[:1]))
    assert vs["P5 widest net = analytic curve"].passed
    for key in ("P5 gap shrinks with width", "P5 gap exponent"):
        assert not vs[key].passed and "at least 2 widths" in vs[key].detail


def test_ntk_bad_input(rng):
    fn = "ntk_regime_verdicts"
    curves, analytic = _curves()
    gaps = _gaps(-0.5, rng)
    for args, msg in [
        (([64, 64, 256, 512, 1024], curves, analytic, gaps), "widths must be strictly increasing"),
        (([64, 128.5, 256, 512, 1024], curves, analytic, gaps), "widths must be integers"),
        ((WIDTHS, curves[:-1], analytic, gaps), "net_curves must be a list with one"),
        ((WIDTHS, curves, analytic, gaps[:-1]), "gaps must be a list with one"),
        ((WIDTHS, curves, analytic[:-1], gaps), r"net_curves\[0\] must have 5 steps"),
        ((WIDTHS, curves, analytic, gaps[:-1] + [np.array([-0.1])]), r"gaps\[4\] must be >= 0"),
    ]:
        with pytest.raises(ValueError, match=msg) as info:
            ntk_regime_verdicts(*args)
        _one_line(info, fn)


# ----------------------------------------------------------------------------- rendering


def _three():
    return [
        Verdict("P1 top-5%", "clean on top", None, 6.0, 0.25, 3, "clean share >= 2 x noise share", True, "d"),
        Verdict("P4 sd vs early stop", "sd ~ early stop", 0.8123, 0.7999, None, 1, "a | b", False, "d"),
        Verdict("P5 gap exponent", "width^-1/2", -0.5, -0.4987, 0.0312, 3, "|slope + 0.5| <= 0.25", True, "d"),
    ]


def test_verdict_table():
    table = verdict_table(_three())
    lines = table.splitlines()
    assert len(lines) == 2 + 3
    assert lines[0] == "| key | prediction | analytic | measured (mean ± std, n seeds) | tolerance | verdict |"
    assert lines[2].endswith("| PASS |") and lines[3].endswith("| FAIL |") and lines[4].endswith("| PASS |")
    assert "6 ± 0.25 (3 seeds)" in lines[2] and "| — |" in lines[2]
    assert "0.8 (1 seed)" in lines[3] and "0.812" in lines[3] and "a \\| b" in lines[3]
    assert "-0.499 ± 0.0312 (3 seeds)" in lines[4]
    for line in lines:  # escaped pipes keep 7 column separators per row
        assert line.replace("\\|", "").count("|") == 7


def test_verdict_summary_counts():
    assert verdict_summary(_three()) == "2 of 3 predictions hold; failed: P4 sd vs early stop."
    vs = [v for v in _three() if v.passed]
    assert verdict_summary(vs) == "2 of 2 predictions hold."
    assert verdict_summary([]) == "no predictions were tested."
    with pytest.raises(ValueError, match="verdicts must be a list of Verdict"):
        verdict_table(["P1"])


def test_to_dict_is_json_safe():
    v = air_energy_verdicts([0.6], [0.0], [0.1])[0]
    d = v.to_dict()
    assert d["measured"] is None and d["passed"] is True and d["n_seeds"] == 1  # inf -> None
    text = json.dumps([x.to_dict() for x in _three() + [v]], allow_nan=False)
    assert json.loads(text)[0]["key"] == "P1 top-5%"


def test_end_to_end_summary_from_real_verdicts(rng):
    acc, mem = _memorising_run()
    vs = air_energy_verdicts([[0.6, 0.6]], [[0.1, 0.4]], [0.05, 0.1])
    vs.append(early_stopping_verdict(acc, mem))
    vs += distillation_verdicts("sd", [0.7], [0.1], [0.8], [0.6], [0.9])
    vs += ntk_regime_verdicts(WIDTHS, *_curves(), _gaps(-1.0, rng))
    assert verdict_summary(vs) == ("6 of 9 predictions hold; failed: P1 top-10%, P4 sd vs early stop, P5 gap exponent.")
    table = verdict_table(vs)
    assert table.count("| PASS |") == 6 and table.count("| FAIL |") == 3


def test_no_torch_import():
    code = "import sys, benchmarks.verdicts; assert 'torch' not in sys.modules, 'torch imported'"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_p1_end_to_end_on_a_planted_air_spectrum():
    """Kernel with planted eigenvectors: clean labels built from the top directions, the noise
    from the tail -> label_spectrum -> air_energy_verdicts passes; swapping the two fails."""
    from kernels import Spectrum, spectrum
    from theory.air import label_spectrum

    rng = np.random.default_rng(3)
    n, c = 200, 4
    V, _ = np.linalg.qr(rng.normal(size=(n, n)))
    d = np.geomspace(100.0, 1e-3, n)
    K = (V * d) @ V.T
    top, tail = V[:, :10], V[:, -100:]
    clean = top @ rng.normal(size=(10, c))
    noise = 0.5 * tail @ rng.normal(size=(100, c))
    s = spectrum(K)
    assert isinstance(s, Spectrum)
    fractions = [0.01, 0.05, 0.10]
    ks = [int(round(f * n)) for f in fractions]

    def shares(y_clean, y_noisy):
        ls = label_spectrum(s, y_clean, y_noisy)
        return ls.share_at(ks, "clean")[None, :], ls.share_at(ks, "noise")[None, :]

    good = air_energy_verdicts(*shares(clean, clean + noise), fractions)
    assert all(v.passed for v in good)
    swapped = air_energy_verdicts(*shares(noise, noise + clean), fractions)
    assert not any(v.passed for v in swapped)
