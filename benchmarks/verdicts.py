"""Verdicts of ``airkit run confirm``: each prediction of the theory, the number measured, and PASS/FAIL.

The predictions are those of the anisotropic-information-retrieval (AIR) account of
self-distillation and early stopping (Dong, Hou, Lu, Zhang 2019, arXiv:1910.01255)
and of the NTK regime it rests on (Jacot et al. 2018; Lee et al. 2019):

P1
    Clean labels put their energy in the top eigen-directions of the kernel; label
    noise spreads over the tail (:func:`air_energy_verdicts`).
P2
    Gradient descent fits the top directions first, so clean examples are fitted
    before flipped ones, and the per-example order follows the kernel's prediction
    (:func:`ordering_verdicts`, with :func:`theory.air.first_fit_times`).
P3
    Plain cross-entropy reaches its best test accuracy before it memorises the flipped
    labels, then declines: early stopping helps (:func:`early_stopping_verdict`).
P4
    Self-distillation reaches at the end of training what early stopping reaches,
    without memorising (:func:`distillation_verdicts`).
P5
    Wide networks follow the linearised (kernel) dynamics, with an output gap that
    shrinks like ``width^(-1/2)`` (:func:`ntk_regime_verdicts`).

Every function is pure and takes plain arrays and floats (numpy only: no torch), checks
their shapes with one-line ``ValueError`` s naming the argument, and returns
:class:`Verdict` records. A verdict that cannot be computed (too few examples, a
constant ranking, a zero gap) fails with the reason in ``detail``: nothing is NaN
silently. Thresholds are compared with a slack of ``ROUND_OFF = 1e-12`` (a mean of
equal accuracies is then exactly at its threshold, not an ulp past it); strict rules
(``>``) need a margin above it. :func:`verdict_table` and :func:`verdict_summary`
render them.

References
----------
Dong, Hou, Lu, Zhang (2019). Distillation ~ early stopping? Harvesting dark knowledge
utilizing anisotropic information retrieval for overparameterized neural network.
arXiv:1910.01255.
Jacot, Gabriel, Hongler (2018). Neural tangent kernel. NeurIPS.
Lee, Xiao, Schoenholz, Bahri, Novak, Sohl-Dickstein, Pennington (2019). Wide neural
networks of any depth evolve as linear models under gradient descent. NeurIPS.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from benchmarks.report import markdown_table
from kernels.checks import Interval, check_param

__all__ = [
    "Verdict",
    "air_energy_verdicts",
    "ordering_verdicts",
    "early_stopping_verdict",
    "distillation_verdicts",
    "ntk_regime_verdicts",
    "verdict_table",
    "verdict_summary",
    "P_MAX",
    "MEMORISED_LEVEL",
    "GAP_EXPONENT",
    "GAP_EXPONENT_TOL",
    "ROUND_OFF",
]

P_MAX = 0.01  # one-sided p-value bound of the rank-correlation verdicts (P2)
MEMORISED_LEVEL = 0.5  # P3: "memorised" once half the flipped examples predict their noisy label
GAP_EXPONENT = -0.5  # P5: NTK output gap ~ width^(-1/2) (Lee et al. 2019)
GAP_EXPONENT_TOL = 0.25  # P5: |slope - GAP_EXPONENT| <= this
ROUND_OFF = 1e-12  # thresholds are compared with this slack, so a mean of equal values sits *at* its threshold


# ----------------------------------------------------------------------------- record


@dataclass(frozen=True)
class Verdict:
    """One prediction, the number measured for it and whether it holds.

    Attributes
    ----------
    key : str
        Short name, e.g. ``"P1 top-5%"``.
    prediction : str
        The prediction in plain words.
    analytic : float or None
        The theory's number where there is one (None when the prediction is qualitative).
    measured : float
        Mean over seeds (or the single value).
    measured_std : float or None
        Standard deviation over seeds (ddof=1); None with one seed or a non-finite value.
    n_seeds : int
    tolerance : str
        The pass rule in words with its numbers.
    passed : bool
    detail : str
        The numbers behind the call, one line.
    """

    key: str
    prediction: str
    analytic: float | None
    measured: float
    measured_std: float | None
    n_seeds: int
    tolerance: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON types; non-finite floats become None (as in ``benchmarks.run_files.to_jsonable``)."""
        out = asdict(self)
        for k, v in out.items():
            if isinstance(v, float) and not math.isfinite(v):
                out[k] = None
        out["passed"] = bool(self.passed)
        out["n_seeds"] = int(self.n_seeds)
        return out


# ----------------------------------------------------------------------------- formatting


def _fmt(x: float | None) -> str:
    """3 significant digits; ``inf``/``nan`` spelt out; None as an em dash."""
    if x is None:
        return "—"
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.3g}"


def _fmt_list(values: Any) -> str:
    return ", ".join(_fmt(v) for v in np.asarray(values, dtype=float).ravel())


def _fmt_epochs(values: Any) -> str:
    """0-based indices (inf = never) as 1-based epochs."""
    return ", ".join("never" if math.isinf(v) else str(int(v) + 1) for v in np.asarray(values, dtype=float).ravel())


def _mean_std(values: Any) -> tuple[float, float | None]:
    v = np.asarray(values, dtype=float).ravel()
    if v.size == 0:
        return math.nan, None
    with np.errstate(invalid="ignore"):
        mean = float(np.mean(v))
    std = float(np.std(v, ddof=1)) if v.size > 1 and np.all(np.isfinite(v)) else None
    return mean, std


def _seedwise_verdict(
    *, key: str, prediction: str, per_seed: Any, n_seeds: int, tolerance: str, passed: Any, detail: str, notes: Sequence[str] = ()
) -> Verdict:
    """A verdict with no analytic value: measured = mean (std) of the ``per_seed`` values, and the
    ``notes`` (why a seed could not be judged) appended to ``detail``."""
    mean, std = _mean_std(per_seed)
    if notes:
        detail += "; " + "; ".join(notes)
    return Verdict(
        key=key,
        prediction=prediction,
        analytic=None,
        measured=mean,
        measured_std=std,
        n_seeds=n_seeds,
        tolerance=tolerance,
        passed=bool(passed),
        detail=detail,
    )


# ----------------------------------------------------------------------------- checks


def _as_float(x: Any, fn: str, name: str) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{fn}: {name} must be an array of real numbers; got {type(x).__name__}") from exc
    return a


def _check_values(
    a: np.ndarray, fn: str, name: str, *, low: float | None = None, high: float | None = None, allow_inf: bool = False
) -> np.ndarray:
    if np.any(np.isnan(a)) or (not allow_inf and not np.all(np.isfinite(a))):
        raise ValueError(f"{fn}: {name} must be finite{' or inf' if allow_inf else ''} (no NaN); got {a.ravel()[:8].tolist()!r}")
    if low is not None and np.any(a < low):
        raise ValueError(f"{fn}: {name} must be >= {low:g}; got a minimum of {float(np.min(a))!r}")
    if high is not None and np.any(a > high):
        raise ValueError(
            f"{fn}: {name} must be <= {high:g} (a fraction, not a percentage); got a maximum of {float(np.max(a))!r}"
        )
    return a


def _vector(x: Any, fn: str, name: str, *, length: int | None = None, **bounds: Any) -> np.ndarray:
    """A non-empty 1-D float array (a scalar counts as length 1)."""
    a = np.atleast_1d(_as_float(x, fn, name))
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{fn}: {name} must be a non-empty 1-D array; got shape {a.shape}")
    if length is not None and a.size != length:
        raise ValueError(f"{fn}: {name} must have length {length}; got shape {a.shape}")
    return _check_values(a, fn, name, **bounds)


def _seed_matrix(x: Any, fn: str, name: str, *, cols: int | None = None, what: str = "columns", **bounds: Any) -> np.ndarray:
    """A (seeds, k) float array; a 1-D array is one seed."""
    a = _as_float(x, fn, name)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{fn}: {name} must be a non-empty 2-D array (seeds, {what}); got shape {a.shape}")
    if cols is not None and a.shape[1] != cols:
        raise ValueError(f"{fn}: {name} must have {cols} {what} per seed; got shape {a.shape}")
    return _check_values(a, fn, name, **bounds)


def _per_seed(x: Any, fn: str, name: str) -> list[np.ndarray]:
    """One 1-D array per seed from a list of arrays, a 2-D array or a single 1-D array."""
    if isinstance(x, np.ndarray):
        seq = [x] if x.ndim == 1 else list(x) if x.ndim == 2 else None
    elif isinstance(x, (list, tuple)) and len(x) > 0:
        seq = [x] if all(np.ndim(e) == 0 for e in x) else list(x)
    else:
        seq = None
    if seq is None or len(seq) == 0:
        raise ValueError(
            f"{fn}: {name} must be a list of 1-D arrays (one per seed) or one 1-D array; got {type(x).__name__} "
            f"of shape {np.shape(x)}"
        )
    out = []
    for s, e in enumerate(seq):
        a = np.asarray(e)
        if a.ndim != 1 or a.size == 0:
            raise ValueError(f"{fn}: {name}[{s}] must be a non-empty 1-D array; got shape {a.shape}")
        out.append(a)
    return out


def _check_seed_count(fn: str, name: str, got: int, want: int, ref: str) -> None:
    if got != want:
        raise ValueError(f"{fn}: {name} must have one entry per seed of {ref} ({want}); got {got}")


def _mask(a: np.ndarray, fn: str, name: str) -> np.ndarray:
    if a.dtype == bool:
        return a
    if a.dtype.kind in "iuf" and np.all(np.isin(a, (0, 1))):
        return a.astype(bool)
    raise ValueError(f"{fn}: {name} must be a boolean mask (True = flipped label); got dtype {a.dtype}")


# ----------------------------------------------------------------------------- P1: label energy


def air_energy_verdicts(clean_share: Any, noise_share: Any, fractions: Any, *, factor: float = 2.0) -> list[Verdict]:
    """P1: clean labels put more of their energy in the top eigen-directions than the noise does.

    AIR (Dong et al. 2019): with ``K = V diag(d) V^T`` (d descending) the share of
    ``||y||^2`` in the top ``m = f n`` directions, ``sum_{i<=m} (v_i^T y)^2 / ||y||^2``,
    is large for the clean labels ``y*`` and small for the noise ``y_noisy - y*`` (see
    :func:`theory.air.label_spectrum`). One verdict per fraction f: it holds when
    ``clean share >= factor * noise share`` in every seed.

    Parameters
    ----------
    clean_share, noise_share : array of shape (seeds, len(fractions))
        Shares (>= 0) of clean-label and noise energy in the top fraction f of
        directions, paired by seed (a 1-D array is one seed).
    fractions : sequence of float in (0, 1]
        Distinct fractions f of the eigen-directions.
    factor : float, default=2.0
        The ratio the clean share must reach.

    Returns
    -------
    list of Verdict
        Keys ``"P1 top-{100 f:g}%"``; ``measured`` is the mean ratio clean / noise over
        seeds (inf where the noise share is 0), ``analytic`` None.
    """
    fn = "air_energy_verdicts"
    check_param(fn, "factor", factor, Interval(float, 0, None, "neither"))
    f = _vector(fractions, fn, "fractions")
    if np.any(f <= 0) or np.any(f > 1):
        raise ValueError(f"{fn}: fractions must lie in (0, 1]; got {f.tolist()!r}")
    if np.unique(f).size != f.size:
        raise ValueError(f"{fn}: fractions must be distinct (one verdict per fraction); got {f.tolist()!r}")
    C = _seed_matrix(clean_share, fn, "clean_share", cols=f.size, what="fractions", low=0.0)
    N = _seed_matrix(noise_share, fn, "noise_share", cols=f.size, what="fractions", low=0.0)
    if N.shape != C.shape:
        raise ValueError(f"{fn}: noise_share must have the shape of clean_share {C.shape} (paired seeds); got {N.shape}")
    out = []
    for j, frac in enumerate(f):
        c, nz = C[:, j], N[:, j]
        empty = (c == 0) & (nz == 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(nz > 0, c / np.where(nz > 0, nz, 1.0), np.where(c > 0, math.inf, math.nan))
        ok = (c >= factor * nz - ROUND_OFF) & ~empty
        detail = f"clean share {_fmt_list(c)}; noise share {_fmt_list(nz)}; ratio {_fmt_list(ratio)} (per seed)"
        if np.any(empty):
            detail += f"; seeds {np.flatnonzero(empty).tolist()} have no clean or noise energy there (ratio undefined)"
        pct = f"{100 * float(frac):g}"
        out.append(
            _seedwise_verdict(
                key=f"P1 top-{pct}%",
                prediction=f"clean labels put more of their energy than the label noise in the top {pct}% of kernel "
                f"eigen-directions (AIR)",
                per_seed=ratio,
                n_seeds=int(C.shape[0]),
                tolerance=f"clean share >= {factor:g} x noise share in every seed",
                passed=bool(np.all(ok)),
                detail=detail,
            )
        )
    return out


# ----------------------------------------------------------------------------- P2: fit order


def _median_inf(x: np.ndarray) -> float:
    """Median with inf as larger than everything: inf when the middle element(s) are inf."""
    a = np.sort(x)
    m = a.size
    if m % 2:
        return float(a[m // 2])
    lo, hi = float(a[m // 2 - 1]), float(a[m // 2])
    return math.inf if math.isinf(hi) else (lo + hi) / 2


def _inf_to_top(x: np.ndarray) -> np.ndarray:
    """Replace inf (never fitted) by one value above every finite one, so all infs tie last."""
    fin = np.isfinite(x)
    top = float(np.max(x[fin])) + 1.0 if np.any(fin) else 1.0
    return np.where(fin, x, top)


def _clean_first(fits: list[np.ndarray], flipped: list[np.ndarray], *, key: str, prediction: str, unit: str) -> Verdict:
    med_c, med_f, leads, notes = [], [], [], []
    ok = True
    for s, (t, fl) in enumerate(zip(fits, flipped)):
        if not np.any(~fl) or not np.any(fl):
            notes.append(f"seed {s} has no {'clean' if not np.any(~fl) else 'flipped'} examples")
            ok = False
            mc = mf = math.nan
            lead = math.nan
        else:
            mc, mf = _median_inf(t[~fl]), _median_inf(t[fl])
            lead = 0.0 if (math.isinf(mc) and math.isinf(mf)) else mf - mc
            ok = ok and mc < mf
        med_c.append(mc)
        med_f.append(mf)
        leads.append(lead)
    counts = ", ".join(f"{int(np.sum(~fl))}/{int(np.sum(fl))}" for fl in flipped)
    detail = (
        f"median first-fit {unit}: clean {_fmt_list(med_c)}, flipped {_fmt_list(med_f)} (per seed; inf = never); "
        f"clean/flipped examples {counts}"
    )
    return _seedwise_verdict(
        key=key,
        prediction=prediction,
        per_seed=leads,
        n_seeds=len(fits),
        tolerance=f"median first-fit {unit} of clean < that of flipped in every seed (inf = never fitted); "
        f"measured = flipped median - clean median",
        passed=ok,
        detail=detail,
        notes=notes,
    )


def _rank_verdict(
    predicted: list[np.ndarray], measured: list[np.ndarray], masks: list[np.ndarray], *, key: str, subset: str
) -> Verdict:
    from scipy.stats import spearmanr

    rhos, p1s, sizes, notes = [], [], [], []
    ok = True
    for s, (a, b, m) in enumerate(zip(predicted, measured, masks)):
        a, b = a[m], b[m]
        sizes.append(int(a.size))
        if a.size < 3:
            notes.append(f"seed {s}: only {a.size} {subset} examples (need 3)")
            ok = False
            continue
        a, b = _inf_to_top(a), _inf_to_top(b)
        if np.ptp(a) == 0 or np.ptp(b) == 0:
            which = "predicted" if np.ptp(a) == 0 else "measured"
            notes.append(f"seed {s}: the {which} fit times of the {subset} examples are all equal (no ranking)")
            ok = False
            continue
        res = spearmanr(a, b)
        rho, p = float(res.statistic), float(res.pvalue)
        p1 = p / 2 if rho > 0 else 1 - p / 2
        rhos.append(rho)
        p1s.append(p1)
        ok = ok and rho > 0 and p1 < P_MAX
    detail = (
        f"Spearman rho {_fmt_list(rhos) or 'none'}; one-sided p {_fmt_list(p1s) or 'none'}; "
        f"{subset} examples {', '.join(map(str, sizes))} (per seed)"
    )
    return _seedwise_verdict(
        key=key,
        prediction=f"the kernel's first-fit times order the network's within the {subset} examples",
        per_seed=rhos,
        n_seeds=len(predicted),
        tolerance=f"Spearman rho > 0 and one-sided p < {P_MAX:g} in every seed (inf = never, tied last)",
        passed=ok,
        detail=detail,
        notes=notes,
    )


def ordering_verdicts(measured_fit: Any, predicted_fit: Any, flipped: Any) -> list[Verdict]:
    """P2: clean examples are fitted before flipped ones, in the network and in the kernel's prediction.

    AIR (Dong et al. 2019): gradient descent fits the top eigen-directions first and
    the clean labels live there, so clean examples are fitted early and flipped
    (noisy) ones late; :func:`theory.air.first_fit_times` gives the per-example
    prediction of the linearised model.

    Parameters
    ----------
    measured_fit : list of 1-D arrays (one per seed), or one 1-D array
        Epoch at which the trained network first predicts each example's given label
        (>= 0; inf if never).
    predicted_fit : same layout
        The kernel's first-fit times (>= 0; inf if never).
    flipped : same layout, bool
        True where the given label differs from the true one.

    Returns
    -------
    list of Verdict
        ``"P2 clean first (net)"`` and ``"P2 clean first (theory)"``: the median first-fit
        time of the clean examples is below that of the flipped ones in every seed
        (inf larger than everything; ``measured`` = mean over seeds of flipped median -
        clean median, inf when the flipped median is never fitted).
        ``"P2 rank clean"`` and ``"P2 rank flipped"``: Spearman's rho between predicted
        and measured times within the subset (``scipy.stats.spearmanr``, ties
        average-ranked, inf replaced by one value above all finite ones), positive with
        one-sided ``p = p_two_sided / 2 < 0.01`` (``1 - p/2`` when rho <= 0) in every seed;
        ``measured`` = mean rho. A subset with fewer than 3 examples or constant times
        fails with the reason in ``detail``.
    """
    fn = "ordering_verdicts"
    meas = [
        _check_values(_as_float(a, fn, f"measured_fit[{s}]"), fn, f"measured_fit[{s}]", low=0.0, allow_inf=True)
        for s, a in enumerate(_per_seed(measured_fit, fn, "measured_fit"))
    ]
    pred = [
        _check_values(_as_float(a, fn, f"predicted_fit[{s}]"), fn, f"predicted_fit[{s}]", low=0.0, allow_inf=True)
        for s, a in enumerate(_per_seed(predicted_fit, fn, "predicted_fit"))
    ]
    flip = [_mask(a, fn, f"flipped[{s}]") for s, a in enumerate(_per_seed(flipped, fn, "flipped"))]
    _check_seed_count(fn, "predicted_fit", len(pred), len(meas), "measured_fit")
    _check_seed_count(fn, "flipped", len(flip), len(meas), "measured_fit")
    for s, (a, b, m) in enumerate(zip(meas, pred, flip)):
        if b.size != a.size or m.size != a.size:
            bad, size = ("predicted_fit", b.size) if b.size != a.size else ("flipped", m.size)
            raise ValueError(f"{fn}: {bad}[{s}] must have the length of measured_fit[{s}] ({a.size}); got {size}")
    return [
        _clean_first(
            meas, flip, key="P2 clean first (net)", unit="epoch", prediction="the network fits clean examples before flipped ones"
        ),
        _clean_first(
            pred,
            flip,
            key="P2 clean first (theory)",
            unit="time",
            prediction="the linearised kernel model fits clean examples before flipped ones",
        ),
        _rank_verdict(pred, meas, [~m for m in flip], key="P2 rank clean", subset="clean"),
        _rank_verdict(pred, meas, flip, key="P2 rank flipped", subset="flipped"),
    ]


# ----------------------------------------------------------------------------- P3: early stopping


def early_stopping_verdict(test_acc: Any, memorised: Any) -> Verdict:
    """P3: plain cross-entropy peaks in test accuracy before it memorises the flipped labels.

    AIR (Dong et al. 2019): the clean information (top directions) is fitted before
    the noise (tail), so the test accuracy peaks early and falls as the network
    memorises the flipped examples. Per seed: the peak epoch is the first argmax of the
    test accuracy, the memorisation epoch the first with ``memorised >= 0.5`` (never:
    inf). The verdict holds when, in every seed, ``peak epoch < memorisation epoch`` and
    the final test accuracy is below the peak.

    Parameters
    ----------
    test_acc, memorised : array of shape (seeds, epochs)
        Test accuracy and the accuracy of the flipped subset against its given (noisy)
        label, per epoch, in [0, 1] (a 1-D array is one seed).

    Returns
    -------
    Verdict
        Key ``"P3 early stopping"``; ``measured`` = mean drop (peak - final) in test
        accuracy; epochs are 1-based in ``detail``.
    """
    fn = "early_stopping_verdict"
    A = _seed_matrix(test_acc, fn, "test_acc", what="epochs", low=0.0, high=1.0)
    M = _seed_matrix(memorised, fn, "memorised", what="epochs", low=0.0, high=1.0)
    if M.shape != A.shape:
        raise ValueError(f"{fn}: memorised must have the shape of test_acc {A.shape} (seeds, epochs); got {M.shape}")
    peak = np.argmax(A, axis=1)  # first of ties
    crossed = M >= MEMORISED_LEVEL
    mem = np.where(crossed.any(axis=1), np.argmax(crossed, axis=1), math.inf).astype(float)
    peak_acc = A[np.arange(A.shape[0]), peak]
    final = A[:, -1]
    drop = peak_acc - final
    ok = (peak < mem) & (final < peak_acc)
    detail = (
        f"peak epoch {_fmt_epochs(peak)}; memorised >= {MEMORISED_LEVEL:g} at epoch {_fmt_epochs(mem)}; "
        f"peak acc {_fmt_list(peak_acc)}; final acc {_fmt_list(final)}; drop {_fmt_list(drop)} (per seed, "
        f"{A.shape[1]} epochs)"
    )
    return _seedwise_verdict(
        key="P3 early stopping",
        prediction="cross-entropy's test accuracy peaks before it memorises the flipped labels, then falls",
        per_seed=drop,
        n_seeds=int(A.shape[0]),
        tolerance=f"in every seed: peak epoch < first epoch with memorised >= {MEMORISED_LEVEL:g}, and final acc < peak acc",
        passed=bool(np.all(ok)),
        detail=detail,
    )


# ----------------------------------------------------------------------------- P4: distillation


def _distillation_inputs(
    method: str, final_acc: Any, final_mem: Any, ce_es_acc: Any, ce_final_acc: Any, ce_final_mem: Any, points: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`distillation_verdicts`' arguments checked: ``(acc, mem, es, ce_acc, ce_mem)``, 1-D fractions."""
    fn = "distillation_verdicts"
    if not isinstance(method, str) or not method.strip():
        raise ValueError(f"{fn}: method must be a non-empty string (the method's name); got {method!r}")
    check_param(fn, "points", points, Interval(float, 0, None, "both"))
    acc = _vector(final_acc, fn, "final_acc", low=0.0, high=1.0)
    mem = _vector(final_mem, fn, "final_mem", length=acc.size, low=0.0, high=1.0)
    es = _vector(ce_es_acc, fn, "ce_es_acc", low=0.0, high=1.0)
    ce_acc = _vector(ce_final_acc, fn, "ce_final_acc", length=es.size, low=0.0, high=1.0)
    ce_mem = _vector(ce_final_mem, fn, "ce_final_mem", length=es.size, low=0.0, high=1.0)
    return acc, mem, es, ce_acc, ce_mem


# One P4 rule before the method's name is put in: (key, prediction, analytic, (measured, std), tolerance, passed, detail).
_P4Rule = tuple[str, str, float | None, tuple[float, float | None], str, bool, str]


def _p4_rules(
    acc: np.ndarray, mem: np.ndarray, es: np.ndarray, ce_acc: np.ndarray, ce_mem: np.ndarray, points: float
) -> list[_P4Rule]:
    """The numbers and words of the three P4 rules: vs early stop, vs CE final, memorisation."""
    m_acc, s_acc = _mean_std(acc)
    m_mem, s_mem = _mean_std(mem)
    m_es, m_ce, m_ce_mem = float(np.mean(es)), float(np.mean(ce_acc)), float(np.mean(ce_mem))
    seeds = f"({int(es.size)} seeds)"
    return [
        (
            "vs early stop",
            "at the end of training matches cross-entropy stopped at its best epoch",
            m_es,
            (m_acc, s_acc),
            f"mean acc >= mean early-stopped CE acc - {points:g}",
            m_acc >= m_es - points - ROUND_OFF,
            f"acc {_fmt_list(acc)}; CE early-stopped acc {_fmt_list(es)} {seeds}; difference {_fmt(m_acc - m_es)}",
        ),
        (
            "vs CE final",
            "ends with higher test accuracy than cross-entropy trained to the end",
            None,
            (m_acc, s_acc),
            f"mean acc > mean final CE acc ({_fmt(m_ce)})",
            m_acc > m_ce + ROUND_OFF,
            f"acc {_fmt_list(acc)}; CE final acc {_fmt_list(ce_acc)} {seeds}; difference {_fmt(m_acc - m_ce)}",
        ),
        (
            "memorisation",
            "memorises at most half as many flipped labels as cross-entropy",
            None,
            (m_mem, s_mem),
            f"mean memorisation <= 0.5 x CE's final ({_fmt(0.5 * m_ce_mem)})",
            m_mem <= 0.5 * m_ce_mem + ROUND_OFF,
            f"memorisation {_fmt_list(mem)}; CE final memorisation {_fmt_list(ce_mem)} {seeds}",
        ),
    ]


def distillation_verdicts(
    method: str, final_acc: Any, final_mem: Any, ce_es_acc: Any, ce_final_acc: Any, ce_final_mem: Any, *, points: float = 0.01
) -> list[Verdict]:
    """P4: self-distillation ~ early stopping, without stopping.

    Dong et al. (2019): self-distillation (targets from the network's own earlier
    outputs) reaches at the end of training what gradient descent reaches only when
    stopped early, because it never fits the noise directions. Three verdicts:

    - ``"P4 {method} vs early stop"``: ``mean final_acc >= mean ce_es_acc - points``
      (``analytic`` = mean ce_es_acc, the number it should match);
    - ``"P4 {method} vs CE final"``: ``mean final_acc > mean ce_final_acc``;
    - ``"P4 {method} memorisation"``: ``mean final_mem <= 0.5 * mean ce_final_mem``.

    Parameters
    ----------
    method : str
        Name of the distillation method, e.g. ``"sd"``.
    final_acc, final_mem : array of shape (seeds,)
        The method's final test accuracy and memorisation (flipped subset against its
        noisy label), in [0, 1].
    ce_es_acc, ce_final_acc, ce_final_mem : array of shape (ce_seeds,)
        Plain cross-entropy: test accuracy at its best epoch, at the end, and final
        memorisation (the number of CE seeds may differ from the method's).
    points : float, default=0.01
        Allowed shortfall against early stopping (accuracy as a fraction: 0.01 = 1 point).

    Returns
    -------
    list of Verdict
    """
    acc, mem, es, ce_acc, ce_mem = _distillation_inputs(
        method, final_acc, final_mem, ce_es_acc, ce_final_acc, ce_final_mem, points
    )
    return [
        Verdict(
            key=f"P4 {method} {key}",
            prediction=f"{method} {prediction}",
            analytic=analytic,
            measured=measured[0],
            measured_std=measured[1],
            n_seeds=int(acc.size),
            tolerance=tolerance,
            passed=bool(passed),
            detail=f"{method} final {detail}",
        )
        for key, prediction, analytic, measured, tolerance, passed, detail in _p4_rules(acc, mem, es, ce_acc, ce_mem, points)
    ]


# ----------------------------------------------------------------------------- P5: NTK regime


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of y on x."""
    xc = x - x.mean()
    return float(np.dot(xc, y - y.mean()) / np.dot(xc, xc))


def _check_per_width(x: Any, fn: str, name: str, layout: str, n: int) -> None:
    """Raise unless ``x`` is a list (or tuple) with one ``layout`` array per width (``n`` of them)."""
    if isinstance(x, np.ndarray) or not isinstance(x, (list, tuple)) or len(x) != n:
        raise ValueError(
            f"{fn}: {name} must be a list with one {layout} array per width ({n}); "
            f"got {type(x).__name__} of length {len(x) if hasattr(x, '__len__') else '?'}"
        )


def _ntk_inputs(
    widths: Sequence[int], net_curves: Sequence[Any], analytic_curve: Any, gaps: Sequence[Any], points: float
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, list[np.ndarray]]:
    """:func:`ntk_regime_verdicts`' arguments checked: ``(widths, curves per width, analytic curve, gaps per width)``."""
    fn = "ntk_regime_verdicts"
    check_param(fn, "points", points, Interval(float, 0, None, "both"))
    w = _vector(widths, fn, "widths", low=1.0)
    if not np.all(w == np.round(w)):
        raise ValueError(f"{fn}: widths must be integers; got {w.tolist()!r}")
    if w.size > 1 and not np.all(np.diff(w) > 0):
        raise ValueError(f"{fn}: widths must be strictly increasing; got {w.astype(int).tolist()!r}")
    a_curve = _vector(analytic_curve, fn, "analytic_curve", low=0.0, high=1.0)
    _check_per_width(net_curves, fn, "net_curves", "(seeds, T)", w.size)
    _check_per_width(gaps, fn, "gaps", "(seeds,)", w.size)
    curves = [
        _seed_matrix(c, fn, f"net_curves[{j}]", cols=a_curve.size, what="steps (the length of analytic_curve)", low=0.0, high=1.0)
        for j, c in enumerate(net_curves)
    ]
    G = [_vector(g, fn, f"gaps[{j}]", low=0.0) for j, g in enumerate(gaps)]
    return w, curves, a_curve, G


def _widest_net_verdict(widest: np.ndarray, a_curve: np.ndarray, width: int, points: float) -> Verdict:
    """P5 verdict 1: the widest network's mean test-accuracy curve against the analytic one."""
    dev_t = np.abs(widest.mean(axis=0) - a_curve)
    t_max = int(np.argmax(dev_t))
    dev = float(dev_t[t_max])
    per_seed = np.max(np.abs(widest - a_curve), axis=1)
    return Verdict(
        key="P5 widest net = analytic curve",
        prediction=f"the widest network (width {width}) follows the linearised model's test-accuracy curve",
        analytic=0.0,
        measured=dev,
        measured_std=None,
        n_seeds=int(widest.shape[0]),
        tolerance=f"max over steps |mean net acc - analytic acc| <= {points:g}",
        passed=bool(dev <= points + ROUND_OFF),
        detail=f"largest deviation {_fmt(dev)} at recorded step {t_max} of {a_curve.size}; per-seed max "
        f"deviation {_fmt_list(per_seed)}",
    )


def _gap_shrinks_verdict(w: np.ndarray, mg: np.ndarray, seeds: list[int], gap_text: str) -> Verdict:
    """P5 verdict 2: the mean output gap strictly decreasing in width (measured = widest / narrowest)."""
    counts = f"; seeds per width {seeds}" if len(set(seeds)) > 1 else ""
    if w.size < 2:
        ok, ratio, why = False, math.nan, "; needs at least 2 widths"
    elif mg[0] <= 0:
        ok, ratio, why = False, math.nan, "; the narrowest mean gap is 0 (ratio undefined)"
    else:
        ok, ratio, why = bool(np.all(np.diff(mg) < 0)), float(mg[-1] / mg[0]), ""
    return Verdict(
        key="P5 gap shrinks with width",
        prediction="the network's output gap to the linearised model shrinks as the width grows",
        analytic=float((w[-1] / w[0]) ** GAP_EXPONENT),
        measured=ratio,
        measured_std=None,
        n_seeds=min(seeds),
        tolerance="mean gap strictly decreasing in width; measured = widest / narrowest mean gap",
        passed=ok,
        detail=f"mean gap {gap_text}{counts}{why}",
    )


def _per_seed_slopes(lw: np.ndarray, G: list[np.ndarray]) -> tuple[float | None, str]:
    """Std of the per-seed gap slopes and their note, when every width has the same number (> 1) of positive gaps."""
    seeds = [int(g.size) for g in G]
    if len(set(seeds)) == 1 and seeds[0] > 1 and all(np.all(g > 0) for g in G):
        S = np.stack(G)  # (widths, seeds), paired by position
        slopes = [_slope(lw, np.log(S[:, s])) for s in range(S.shape[1])]
        return float(np.std(slopes, ddof=1)), f"; per-seed slopes {_fmt_list(slopes)}"
    return None, ""


def _gap_slope(w: np.ndarray, mg: np.ndarray, G: list[np.ndarray]) -> tuple[float, bool, float | None, str]:
    """Slope of log mean gap on log width, whether it is near GAP_EXPONENT, its per-seed std and a note."""
    if w.size < 2:
        return math.nan, False, None, "; needs at least 2 widths"
    if np.any(mg <= 0):
        return math.nan, False, None, "; a mean gap is 0 (log undefined)"
    lw = np.log(w)
    slope = _slope(lw, np.log(mg))
    std, why = _per_seed_slopes(lw, G)
    return slope, bool(abs(slope - GAP_EXPONENT) <= GAP_EXPONENT_TOL + ROUND_OFF), std, why


def _gap_exponent_verdict(w: np.ndarray, mg: np.ndarray, G: list[np.ndarray], gap_text: str) -> Verdict:
    """P5 verdict 3: the slope of log mean gap against log width near GAP_EXPONENT."""
    lo, hi = GAP_EXPONENT - GAP_EXPONENT_TOL, GAP_EXPONENT + GAP_EXPONENT_TOL
    slope, ok, std, why = _gap_slope(w, mg, G)
    return Verdict(
        key="P5 gap exponent",
        prediction="the output gap falls like width^(-1/2) (NTK regime)",
        analytic=GAP_EXPONENT,
        measured=slope,
        measured_std=std,
        n_seeds=min(int(g.size) for g in G),
        tolerance=f"|slope of log mean gap vs log width - ({GAP_EXPONENT:g})| <= {GAP_EXPONENT_TOL:g}, "
        f"i.e. slope in [{lo:g}, {hi:g}]",
        passed=ok,
        detail=f"slope {_fmt(slope)} over widths {[int(v) for v in w]}; mean gap {gap_text}{why}",
    )


def ntk_regime_verdicts(
    widths: Sequence[int], net_curves: Sequence[Any], analytic_curve: Any, gaps: Sequence[Any], *, points: float = 0.02
) -> list[Verdict]:
    """P5: wide networks follow the linearised dynamics, with an output gap ~ width^(-1/2).

    In the NTK regime (Jacot et al. 2018) the network's training follows the kernel
    gradient flow, and its outputs differ from the linearised model's by
    ``O(width^(-1/2))`` (Lee et al. 2019); AIR's analysis (Dong et al. 2019) is made in
    this regime. Three verdicts:

    - ``"P5 widest net = analytic curve"``: ``max_t |mean_seeds net_curves[-1][:, t] -
      analytic_curve[t]| <= points`` (``analytic`` = 0);
    - ``"P5 gap shrinks with width"``: mean gaps strictly decreasing in width
      (``measured`` = last / first mean gap, ``analytic`` = ``(w_last/w_first)^(-1/2)``);
    - ``"P5 gap exponent"``: least-squares slope of ``log(mean gap)`` against
      ``log(width)``, ``analytic`` = -0.5, holds when ``|slope + 0.5| <= 0.25``;
      ``measured_std`` from per-seed slopes when every width has the same number (> 1)
      of seeds, paired by position.

    Parameters
    ----------
    widths : sequence of int
        Strictly increasing widths (>= 1).
    net_curves : sequence of arrays (seeds, T), one per width
        Test accuracy of the network at the recorded steps (a 1-D array is one seed).
    analytic_curve : array of shape (T,)
        The linearised (kernel) model's test accuracy at the same steps.
    gaps : sequence of arrays (seeds,), one per width
        Relative output gap network vs linearised model (>= 0), e.g. at the last step.
    points : float, default=0.02
        Allowed deviation of the widest network's curve (accuracy as a fraction).

    Returns
    -------
    list of Verdict
    """
    w, curves, a_curve, G = _ntk_inputs(widths, net_curves, analytic_curve, gaps, points)
    mg = np.array([float(np.mean(g)) for g in G])
    gap_text = ", ".join(f"{_fmt(m)} (w={int(v)})" for m, v in zip(mg, w))
    return [
        _widest_net_verdict(curves[-1], a_curve, int(w[-1]), points),
        _gap_shrinks_verdict(w, mg, [int(g.size) for g in G], gap_text),
        _gap_exponent_verdict(w, mg, G, gap_text),
    ]


# ----------------------------------------------------------------------------- rendering


def _check_verdicts(verdicts: Any, fn: str) -> list[Verdict]:
    vs = list(verdicts) if isinstance(verdicts, (list, tuple)) else None
    if vs is None or not all(isinstance(v, Verdict) for v in vs):
        raise ValueError(f"{fn}: verdicts must be a list of Verdict; got {type(verdicts).__name__}")
    return vs


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _measured_cell(v: Verdict) -> str:
    seeds = f"{v.n_seeds} seed{'s' if v.n_seeds != 1 else ''}"
    if v.measured_std is None:
        return f"{_fmt(v.measured)} ({seeds})"
    return f"{_fmt(v.measured)} ± {_fmt(v.measured_std)} ({seeds})"


def verdict_table(verdicts: Sequence[Verdict]) -> str:
    """A Markdown table, one row per verdict.

    Columns: key | prediction | analytic | measured (mean ± std, n seeds) | tolerance |
    verdict (PASS/FAIL). Numbers to 3 significant digits; ``—`` where there is no
    analytic number.
    """
    vs = _check_verdicts(verdicts, "verdict_table")
    header = ["key", "prediction", "analytic", "measured (mean ± std, n seeds)", "tolerance", "verdict"]
    rows = [
        [
            _cell(c)
            for c in (v.key, v.prediction, _fmt(v.analytic), _measured_cell(v), v.tolerance, "PASS" if v.passed else "FAIL")
        ]
        for v in vs
    ]
    return "\n".join(markdown_table(header, rows))


def verdict_summary(verdicts: Sequence[Verdict]) -> str:
    """One sentence, e.g. ``"7 of 9 predictions hold; failed: P4 sd vs early stop, P5 gap exponent."``."""
    vs = _check_verdicts(verdicts, "verdict_summary")
    if not vs:
        return "no predictions were tested."
    failed = [v.key for v in vs if not v.passed]
    head = f"{len(vs) - len(failed)} of {len(vs)} predictions hold"
    return head + (f"; failed: {', '.join(failed)}." if failed else ".")
