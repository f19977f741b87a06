"""theory.air.first_fit_times: per-example first-fit times of the linearised gradient flow.

References: a brute-force dense flow ``u(t) = (I - expm(-K t)) y`` (scipy.linalg.expm),
and a planted kernel whose clean labels live in the top direction and whose label
noise lives in a small-eigenvalue direction, where the fit times are known in closed form.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from kernels import spectrum
from tests.conftest import to_backend
from theory import first_fit_times as exported
from theory.air import first_fit_times


def _brute_force(K, y, labels, times):
    """Dense reference: the first grid time with labels[i] the strict argmax of (I - expm(-K t)) y."""
    n = K.shape[0]
    out = np.full(n, np.inf)
    for t in times:
        U = (np.eye(n) - scipy.linalg.expm(-K * t)) @ y
        own = U[np.arange(n), labels]
        others = U.copy()
        others[np.arange(n), labels] = -np.inf
        fitted = own > others.max(axis=1)
        new = fitted & np.isinf(out)
        out[new] = t
    return out


def _random_psd(rng, n, rank=None):
    A = rng.normal(size=(n, rank or n))
    return A @ A.T / (rank or n)


@pytest.mark.parametrize("centred", [False, True])
def test_matches_dense_expm_reference(backend, rng, centred):
    n, C = 30, 3
    K = _random_psd(rng, n)
    given = rng.integers(0, C, n)
    y = np.eye(C)[given]
    if centred:
        y = y - y.mean(axis=0)
    # ask for the true labels of a random half: some are fitted transiently, some never
    labels = np.where(rng.random(n) < 0.5, given, rng.integers(0, C, n))
    times = np.concatenate([[0.0], np.geomspace(1e-3, 1e3, 60)])
    ref = _brute_force(K, y, labels, times)
    assert np.isfinite(ref).sum() >= n // 2 and np.isinf(ref).sum() >= 1  # the case is not degenerate
    assert len(np.unique(ref[np.isfinite(ref)])) >= 3
    got = first_fit_times(spectrum(to_backend(K, backend)), to_backend(y, backend), to_backend(labels, backend), times)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64 and got.shape == (n,)
    np.testing.assert_array_equal(got, ref)


def test_chunking_does_not_change_the_answer(rng):
    n, C = 30, 4
    K = _random_psd(rng, n, rank=10)  # rank-deficient: 20 zero directions contribute nothing
    s = spectrum(K, psd="clip")
    labels = rng.integers(0, C, n)
    y = np.eye(C)[labels]
    times = np.linspace(0.0, 5.0, 41)
    ref = _brute_force(K, y, labels, times)
    for chunk in (None, 1, 3, 7, 41, 1000):
        np.testing.assert_array_equal(first_fit_times(s, y, labels, times, chunk=chunk), ref)


def test_top_k_spectrum_uses_the_span(rng):
    n, C = 30, 3
    K = _random_psd(rng, n)
    labels = rng.integers(0, C, n)
    y = np.eye(C)[labels]
    times = np.geomspace(1e-2, 1e2, 30)
    w, V = np.linalg.eigh(K)
    Vk = V[:, -8:]  # top 8 directions
    Kk = (Vk * w[-8:]) @ Vk.T
    Pk = Vk @ Vk.T
    ref = _brute_force(Kk, Pk @ y, labels, times)
    got = first_fit_times(spectrum(K, k=8, method="full"), y, labels, times)
    np.testing.assert_array_equal(got, ref)


# ----------------------------------------------------------------------------- planted AIR case


def _planted(rng, *, n=40, n_flipped=8, d_signal=10.0, d_noise=0.01):
    """Clean score +1 for everyone along the all-ones direction (eigenvalue d_signal);
    the flipped set's label noise lies in w = 1_F - f 1 (eigenvalue d_noise); the
    other directions of K carry no label energy. Targets y = [s, -s], s = 1 - 2 * 1_F."""
    F = np.zeros(n, dtype=bool)
    F[rng.permutation(n)[:n_flipped]] = True
    f = n_flipped / n
    v1 = np.ones(n) / np.sqrt(n)
    w = F - f
    w = w / np.linalg.norm(w)
    Q, _ = np.linalg.qr(np.column_stack([v1, w, rng.normal(size=(n, n - 2))]))
    Q[:, 0], Q[:, 1] = v1, w  # QR may flip signs; the span is the same
    d = np.concatenate([[d_signal, d_noise], rng.uniform(0.5, 2.0, n - 2)])
    K = (Q * d) @ Q.T
    s = 1.0 - 2.0 * F
    y = np.column_stack([s, -s])
    given = F.astype(np.int64)  # class 0 clean, class 1 flipped
    return K, y, given, F, f


def test_planted_clean_labels_in_top_direction_are_fitted_first(rng):
    d_signal, d_noise = 10.0, 0.01
    K, y, given, F, f = _planted(rng, d_signal=d_signal, d_noise=d_noise)
    times = np.concatenate([[0.0], np.geomspace(1e-3, 1e4, 400)])
    got = first_fit_times(spectrum(K), y, given, times)
    # clean: u_i = (1-2f) g1 + 2f g2 > 0 for every t > 0 -> fitted at the first positive time
    assert np.all(got[~F] == times[1])
    # flipped: u_i = (1-2f) g1 - 2(1-f) g2 < 0 until the noise direction catches up
    g1, g2 = -np.expm1(-d_signal * times), -np.expm1(-d_noise * times)
    expected = times[np.flatnonzero((1 - 2 * f) * g1 < 2 * (1 - f) * g2)[0]]
    assert expected > 10.0  # a late fit, set by 1/d_noise
    assert np.all(got[F] == expected)
    assert got[F].min() > got[~F].max()
    np.testing.assert_array_equal(got, _brute_force(K, y, given, times))


def test_ordering_follows_the_eigenvalue_not_the_label(rng):
    """Swap the eigenvalues: with the noise direction on top, the flipped examples are fitted at once."""
    K, y, given, F, _ = _planted(rng, d_signal=0.01, d_noise=10.0)
    times = np.concatenate([[0.0], np.geomspace(1e-3, 1e4, 400)])
    got = first_fit_times(spectrum(K), y, given, times)
    assert np.all(got == times[1])


def test_never_fitted_is_inf(rng):
    K, y, given, F, f = _planted(rng)
    times = np.concatenate([[0.0], np.geomspace(1e-3, 1.0, 50)])  # ends before the noise is fitted
    got = first_fit_times(spectrum(K), y, given, times)
    assert np.all(np.isinf(got[F])) and np.all(np.isfinite(got[~F]))
    # a third class with zero target is never the strict argmax: inf on any grid
    y3 = np.column_stack([y, np.zeros(len(y))])
    got3 = first_fit_times(spectrum(K), y3, np.full(len(y), 2), np.geomspace(1e-3, 1e6, 50))
    assert np.all(np.isinf(got3))


def test_time_zero_fits_nothing(rng):
    """u(0) = 0 ties every class; argmax's first-index rule must not count class 0 as fitted."""
    K = _random_psd(rng, 20)
    y = np.eye(3)[rng.integers(0, 3, 20)]
    got = first_fit_times(spectrum(K), y, np.zeros(20, dtype=int), [0.0])
    assert np.all(np.isinf(got))
    # and a first positive time on the grid is reported exactly
    got = first_fit_times(spectrum(K), y, np.argmax(y, axis=1), [0.0, 1e-9, 1.0])
    assert set(np.unique(got)) <= {1e-9, 1.0} and np.any(got == 1e-9)


def test_exported_from_theory():
    assert exported is first_fit_times


# ----------------------------------------------------------------------------- bad input


def test_bad_input(rng):
    n = 12
    K = _random_psd(rng, n)
    s = spectrum(K)
    labels = rng.integers(0, 3, n)
    y = np.eye(3)[labels]
    times = np.linspace(0, 1, 5)
    cases = [
        (TypeError, "spectrum must be a kernels.Spectrum", dict(spectrum=K)),
        (ValueError, "y has 11 rows", dict(y=y[:-1])),
        (ValueError, "y must be 2-D", dict(y=y[:, 0])),
        (ValueError, "y must be 2-D", dict(y=y[:, :1], labels=np.zeros(n, dtype=int))),
        (ValueError, "y contains NaN", dict(y=np.where(np.arange(n)[:, None] == 0, np.nan, y))),
        (ValueError, r"labels must hold integer classes in \[0, 3\)", dict(labels=np.where(np.arange(n) == 0, 3, labels))),
        (ValueError, r"labels must hold integer classes", dict(labels=np.where(np.arange(n) == 0, -1, labels))),
        (ValueError, r"labels must hold integer classes", dict(labels=labels + 0.5)),
        # one non-integer class among integers (all of them must be whole numbers, not just one)
        (ValueError, r"labels must hold integer classes .* e\.g\. 1\.5", dict(labels=np.where(np.arange(n) == 0, 1.5, labels))),
        (ValueError, r"labels must have shape \(12,\)", dict(labels=labels[:-1])),
        (ValueError, "times must be strictly increasing", dict(times=[0.0, 1.0, 0.5])),
        (ValueError, "times must be strictly increasing", dict(times=[0.0, 1.0, 1.0])),
        (ValueError, r"every times must be a float in \[0, inf\)", dict(times=[-0.1, 1.0])),
        (ValueError, r"every times must be a float in \[0, inf\)", dict(times=[0.0, np.inf])),
        (ValueError, r"every times must be a float in \[0, inf\)", dict(times=[0.0, np.nan])),
        (ValueError, "times must be", dict(times=[])),
        (ValueError, "times must be", dict(times=np.ones((2, 2)))),
        (ValueError, "chunk must be an int", dict(chunk=0)),
    ]
    for exc, msg, kw in cases:
        args = dict(spectrum=s, y=y, labels=labels, times=times) | kw
        chunk = args.pop("chunk", None)
        with pytest.raises(exc, match=msg) as info:
            first_fit_times(args["spectrum"], args["y"], args["labels"], args["times"], chunk=chunk)
        text = str(info.value)
        assert text.startswith("first_fit_times: ") and "\n" not in text, text


def test_half_criterion_matches_dense_expm_reference(rng):
    """criterion="half": first grid time with <u_i(t), y_i> >= ||y_i||^2 / 2, against expm(-K t)."""
    from scipy.linalg import expm

    n, C = 30, 3
    K = _random_psd(rng, n)
    given = rng.integers(0, C, n)
    y = np.eye(C)[given] - np.eye(C)[given].mean(axis=0)
    times = np.concatenate([[0.0], np.geomspace(1e-3, 1e3, 60)])
    got = first_fit_times(spectrum(K), y, given, times, criterion="half")
    first = np.full(n, np.inf)
    for t in times:
        u = (np.eye(n) - expm(-K * t)) @ y
        hit = (np.sum(u * y, axis=1) >= 0.5 * np.sum(y * y, axis=1)) & np.isinf(first)
        first[hit] = t
    np.testing.assert_array_equal(got, first)
    assert len(np.unique(first[np.isfinite(first)])) >= 3
    # the argmax criterion is a different rule: it must not coincide on this case
    assert not np.array_equal(got, first_fit_times(spectrum(K), y, given, times))
    with pytest.raises(ValueError, match="criterion"):
        first_fit_times(spectrum(K), y, given, times, criterion="median")
