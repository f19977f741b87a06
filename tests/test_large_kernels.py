"""Kernels larger than memory (issue 15, part 2): lazy dask Grams, top-k spectra and CG ridge by row blocks.

Everything is checked against the in-memory builders and dense LAPACK on the same data:
n = 3000 in row blocks of 1000 for the lazy Gram and the spectrum, smaller elsewhere.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg

pytest.importorskip("dask")

from kernels.cg_ridge import CGRidgeResult, cg_ridge, cg_ridge_predict  # noqa: E402
from kernels.functions import gram  # noqa: E402
from kernels.large_spectrum import large_spectrum  # noqa: E402
from kernels.lazy_gram import blocked_gram, lazy_gram  # noqa: E402
from kernels.spectrum import spectrum  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EPS = np.finfo(np.float64).eps
N, CHUNKS = 3000, 1000
KERNELS = {"rbf": {}, "ntk_relu": {"depth": 2}, "linear": {}}


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """BLAS on one thread: ``pytest -n 2`` puts two workers on two cores, and OpenBLAS's own
    threads made dense LAPACK 5-10x slower on this loaded 2-core machine (eigh of 3000: 14 s vs 1.8 s)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def X3000() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(N, 20))


def _data(n: int, d: int = 5, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = np.random.default_rng(seed)
    X = r.normal(size=(n, d))
    y = np.stack([np.sin(X[:, 0]), np.cos(X[:, 1]) + 0.1 * r.normal(size=n)], axis=1)
    return X, y, r.normal(size=(50, d))


# ----------------------------------------------------------------------------- lazy Gram


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_lazy_gram_equals_in_memory_gram(X3000, kernel):
    params = KERNELS[kernel]
    K = gram(X3000, kernel=kernel, **params)
    L = lazy_gram(X3000, kernel=kernel, chunks=CHUNKS, **params)
    assert L.shape == (N, N) and L.chunks == ((CHUNKS,) * 3,) * 2
    Lc = L.compute()
    scale = np.abs(K).max()
    assert np.abs(Lc - K).max() <= 1e-12 * scale
    assert np.array_equal(Lc, Lc.T)  # blocks below the diagonal are the transposed blocks above
    assert np.array_equal(np.diag(Lc), np.diag(K))  # the builders' exact diagonal
    Z = X3000[:1234] + 0.1
    Kz = gram(Z, X3000, kernel=kernel, **params)
    Lz = lazy_gram(Z, X3000, kernel=kernel, chunks=CHUNKS, **params).compute()
    assert np.abs(Lz - Kz).max() <= 1e-12 * np.abs(Kz).max()


def test_lazy_gram_small_cases():
    import dask.array as da

    X = np.random.default_rng(2).normal(size=(7, 3))
    # gamma=None is the whole matrix's 1 / d, passed to every block (here blocks of 3, 3 and 1 rows)
    L = lazy_gram(X, kernel="rbf", chunks=3)
    assert L.chunks == ((3, 3, 1), (3, 3, 1))
    np.testing.assert_allclose(L.compute(), gram(X, kernel="rbf", gamma=1 / 3), rtol=0, atol=1e-15)
    # a dask X (any chunking) is rechunked to row blocks; Z is X is the symmetric case
    Xd = da.from_array(X, chunks=(2, 2))
    Ld = lazy_gram(Xd, Xd, kernel="polynomial", chunks=4, degree=2)
    assert Ld.chunks == ((4, 3), (4, 3))
    np.testing.assert_allclose(Ld.compute(), gram(X, kernel="polynomial", degree=2), rtol=1e-14)
    # dtype is the builder's
    assert lazy_gram(X, kernel="linear", chunks=2, dtype="float32").compute().dtype == np.float32


# ----------------------------------------------------------------------------- top-k spectrum


@pytest.fixture(scope="module")
def ntk3000(X3000):
    """ntk_relu(depth=2) on X3000: the dense Gram, its exact top eigenvalues and the large spectrum."""
    K = gram(X3000, kernel="ntk_relu", depth=2)
    k = 50
    exact = scipy.linalg.eigh(K, eigvals_only=True, subset_by_index=[N - k, N - 1], driver="evr")[::-1]
    s = large_spectrum(X3000, k, kernel="ntk_relu", depth=2, n_iter=4, chunks=CHUNKS, progress=False)
    return K, exact, s


def test_large_spectrum_meets_its_stated_accuracy(ntk3000):
    K, exact, s = ntk3000
    assert s.method == "randomized" and s.k == 50 and s.n_samples == N
    d1 = s.values[0]
    err = np.abs(s.values - exact)
    assert np.all(err <= s.max_residual * d1)  # within max_residual * d_1 of the exact value of the same rank
    assert np.all(s.values <= exact + 100 * N * EPS * d1)  # Ritz values from below, up to round-off
    dense_residual = np.linalg.norm(K @ s.vectors - s.vectors * s.values, axis=0).max() / d1
    assert 1e-8 < dense_residual < 1e-2  # a residual well above round-off, so the 1% comparison means something
    assert s.max_residual == pytest.approx(dense_residual, rel=0.01)
    np.testing.assert_allclose(s.vectors.T @ s.vectors, np.eye(s.k), atol=1e-12)


def test_theory_runs_on_the_large_spectrum_as_on_the_in_memory_one(ntk3000):
    from theory import label_spectrum, linearized_training

    K, _, s = ntk3000
    ref = spectrum(K, 50, method="randomized", n_iter=4)  # the same iteration on the in-memory Gram
    np.testing.assert_allclose(s.values, ref.values, rtol=1e-10)
    assert s.max_residual == pytest.approx(ref.max_residual, rel=1e-6)
    r = np.random.default_rng(3)
    y_clean = np.eye(3)[r.integers(0, 3, N)]
    y_noisy = np.eye(3)[r.integers(0, 3, N)]
    a, b = label_spectrum(s, y_clean, y_noisy), label_spectrum(ref, y_clean, y_noisy)
    for name in ("cum_share_clean", "cum_share_noise", "energy_noisy"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-8, atol=1e-12)
    kw = dict(lr=1.0 / float(s.values[0]), steps=200, record=[1, 10, 200])
    pa, pb = linearized_training(s, y_noisy, **kw), linearized_training(ref, y_noisy, **kw)
    np.testing.assert_allclose(pa.fits, pb.fits, rtol=0, atol=1e-8 * np.abs(pb.fits).max())


def test_large_spectrum_same_on_every_route_and_reports_progress(capsys):
    import dask.array as da

    X = np.random.default_rng(4).normal(size=(400, 6))
    lines: list[str] = []
    s = large_spectrum(X, 8, kernel="rbf", chunks=150, scheduler="serial", progress=lines.append)
    assert len(lines) == 1 + 4 + 2  # the plan, then one line per pass
    assert all(f"pass {j}/6" in line and "elapsed" in line for j, line in zip(range(1, 7), lines[1:]))
    t = large_spectrum(X, 8, kernel="rbf", chunks=150, scheduler="threads", progress=True)
    assert np.array_equal(s.values, t.values) and np.array_equal(s.vectors, t.vectors)  # one summation order
    assert capsys.readouterr().err.count("large_spectrum: pass") == 6
    lazy = large_spectrum(lazy_gram(X, kernel="rbf", chunks=150), 8, kernel="precomputed", progress=False)
    fromdask = large_spectrum(da.from_array(X, chunks=100), 8, kernel="rbf", chunks=150, progress=False)
    for other in (lazy, fromdask):
        np.testing.assert_allclose(other.values, s.values, rtol=1e-12)
        assert other.max_residual == pytest.approx(s.max_residual, rel=1e-3)


# ----------------------------------------------------------------------------- CG ridge


@pytest.fixture(scope="module")
def krr():
    X, y, Z = _data(1200)
    ridge = 0.1
    K, Kz = gram(X, kernel="rbf"), gram(Z, X, kernel="rbf")
    coef = scipy.linalg.solve(K + ridge * np.eye(len(X)), y, assume_a="pos")
    return X, y, Z, ridge, Kz @ coef


def test_cg_ridge_matches_a_dense_solve_and_the_preconditioner_pays(krr):
    X, y, Z, ridge, f = krr
    s = large_spectrum(X, 60, kernel="rbf", n_iter=2, chunks=400, progress=False)
    plain = cg_ridge(X, y, ridge=ridge, kernel="rbf", tol=1e-12, chunks=400)
    pre = cg_ridge(X, y, ridge=ridge, kernel="rbf", tol=1e-12, chunks=400, preconditioner=s)
    for res in (plain, pre):
        assert isinstance(res, CGRidgeResult) and res.converged
        assert len(res.residuals) == res.n_iter and res.residuals[-1] <= 1e-12 < res.residuals[0]
        pred = cg_ridge_predict(Z, X, res.coef, kernel="rbf", chunks=400)
        assert pred.shape == f.shape
        assert np.abs(pred - f).max() <= 1e-8 * np.abs(f).max()
    assert plain.n_iter >= 2 * pre.n_iter, (plain.n_iter, pre.n_iter)


def test_cg_ridge_single_target_and_int_preconditioner():
    X, y, Z = _data(300, seed=5)
    K = gram(X, kernel="ntk_relu")
    exact = np.linalg.solve(K + 0.1 * np.eye(300), y[:, 0])
    res = cg_ridge(X, y[:, 0], ridge=0.1, kernel="ntk_relu", preconditioner=20, tol=1e-12, chunks=128, scheduler="serial")
    assert res.coef.shape == (300,) and res.converged
    np.testing.assert_allclose(res.coef, exact, rtol=0, atol=1e-9 * np.abs(exact).max())
    lazy = cg_ridge(lazy_gram(X, kernel="ntk_relu", chunks=128), y[:, 0], ridge=0.1, kernel="precomputed", tol=1e-12)
    np.testing.assert_allclose(lazy.coef, exact, rtol=0, atol=1e-9 * np.abs(exact).max())
    assert res.n_iter < lazy.n_iter / 2, (res.n_iter, lazy.n_iter)  # the int preconditioner is applied (plain CG: lazy)
    capped = cg_ridge(X, y, ridge=1e-6, kernel="ntk_relu", max_iter=3, chunks=128)
    assert capped.n_iter == 3 and not capped.converged and len(capped.residuals) == 3
    zero = cg_ridge(X, np.zeros(300), ridge=0.1, kernel="ntk_relu")
    assert zero.converged and zero.n_iter == 0 and not np.any(zero.coef)


# ----------------------------------------------------------------------------- dask.distributed


def test_a_distributed_client_gives_identical_results():
    from distributed import Client, LocalCluster

    X, y, Z = _data(500, seed=6)
    local = large_spectrum(X, 10, kernel="rbf", chunks=128, scheduler="threads", progress=False)
    local_cg = cg_ridge(X, y, ridge=1.0, kernel="rbf", chunks=128, scheduler="threads", preconditioner=local)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            assert blocked_gram(X, kernel="rbf", chunks=128).scheduler == "distributed"  # "auto" finds the client
            dist = large_spectrum(X, 10, kernel="rbf", chunks=128, scheduler=client, progress=False)
            dist_cg = cg_ridge(X, y, ridge=1.0, kernel="rbf", chunks=128, preconditioner=dist)
            pred = cg_ridge_predict(Z, X, dist_cg.coef, kernel="rbf", chunks=128, scheduler="distributed")
            lazy = lazy_gram(X, kernel="rbf", chunks=128).compute()
    assert np.array_equal(dist.values, local.values) and np.array_equal(dist.vectors, local.vectors)
    assert dist.max_residual == local.max_residual
    assert dist_cg.n_iter == local_cg.n_iter and np.array_equal(dist_cg.coef, local_cg.coef)
    assert np.array_equal(pred, cg_ridge_predict(Z, X, local_cg.coef, kernel="rbf", chunks=128, scheduler="threads"))
    assert np.array_equal(lazy, lazy_gram(X, kernel="rbf", chunks=128).compute(scheduler="threads"))


# ----------------------------------------------------------------------------- errors and the optional dependency

_X = np.random.default_rng(7).normal(size=(20, 3))
_S = spectrum(gram(_X[:10], kernel="rbf"), 3)


@pytest.mark.parametrize(
    "call,exc,words",
    [
        (lambda: lazy_gram(_X, chunks=0), ValueError, "lazy_gram: chunks must be an int in [1, inf)"),
        (lambda: lazy_gram(_X, kernel="nope"), ValueError, "lazy_gram: kernel must be one of"),
        (lambda: lazy_gram(_X, _X[:, :2]), ValueError, "Z has 2 features but 3 were expected"),
        (lambda: lazy_gram(_X, gamma=-1.0), ValueError, "rbf: gamma must be"),
        (lambda: lazy_gram(_X, degree=2), TypeError, "gram: unknown parameter(s) degree"),
        (lambda: lazy_gram(_X[:, 0]), ValueError, "lazy_gram: X must be 2-D"),
        (lambda: large_spectrum(_X, 0), ValueError, "large_spectrum: k must be an int in [1, inf)"),
        (lambda: large_spectrum(_X, 21, progress=False), ValueError, "large_spectrum: k must be an int in [1, 20]"),
        (lambda: large_spectrum(_X, 2, n_iter=-1), ValueError, "large_spectrum: n_iter must be"),
        (lambda: large_spectrum(_X, 2, scheduler="gpu"), ValueError, "large_spectrum: scheduler must be one of"),
        (lambda: large_spectrum(_X, 2, scheduler=3), TypeError, "large_spectrum: scheduler must be one of"),
        (lambda: large_spectrum(_X, 2, scheduler="distributed"), ValueError, "needs an active dask.distributed Client"),
        (lambda: large_spectrum(_X, 2, kernel="precomputed"), TypeError, "kernel='precomputed' needs a lazy dask Gram"),
        (lambda: large_spectrum(_X, 2, chunks=20, memory_budget=100), ValueError, "lower chunks or raise memory_budget"),
        (lambda: large_spectrum(_X, 2, progress="yes"), TypeError, "large_spectrum: progress must be a bool"),
        (lambda: large_spectrum(_X, 2, psd="x"), ValueError, "large_spectrum: psd must be one of"),
        (lambda: cg_ridge(_X, np.ones(20), ridge=0.0), ValueError, "cg_ridge: ridge must be a float in (0, inf)"),
        (lambda: cg_ridge(_X, np.ones(20), ridge="1"), TypeError, "cg_ridge: ridge must be a float"),
        (lambda: cg_ridge(_X, np.ones(20), ridge=1.0, tol=1.0), ValueError, "cg_ridge: tol must be a float in (0, 1)"),
        (lambda: cg_ridge(_X, np.ones(20), ridge=1.0, max_iter=0), ValueError, "cg_ridge: max_iter must be an int"),
        (lambda: cg_ridge(_X, np.ones(19), ridge=1.0), ValueError, "cg_ridge: y has 19 rows but 20 samples"),
        (
            lambda: cg_ridge(_X, np.ones(20), ridge=1.0, preconditioner=_S),
            ValueError,
            "cg_ridge: preconditioner is a spectrum of 10",
        ),
        (
            lambda: cg_ridge(_X, np.ones(20), ridge=1.0, preconditioner=21),
            ValueError,
            "cg_ridge: preconditioner must be an int in [1, 20]",
        ),
        (
            lambda: cg_ridge(_X, np.ones(20), ridge=1.0, preconditioner="top"),
            TypeError,
            "cg_ridge: preconditioner must be a kernels.Spectrum",
        ),
        (lambda: cg_ridge(_X, [[np.nan]] * 20, ridge=1.0), ValueError, "cg_ridge: y contains NaN or inf"),
        (lambda: cg_ridge_predict(_X, None, np.ones(20)), TypeError, "cg_ridge_predict: X must be the training features"),
        (lambda: cg_ridge_predict(_X, _X, np.ones(19)), ValueError, "cg_ridge_predict: coef has 19 rows but 20"),
    ],
)
def test_bad_inputs_raise_one_line_errors(call, exc, words):
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    assert words in msg and "\n" not in msg


def test_kernels_import_and_run_without_dask():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["dask"] = None  # "import dask" raises ImportError from here on
        sys.modules["distributed"] = None
        import numpy as np
        import kernels, kernels.lazy_gram, kernels.large_spectrum, kernels.cg_ridge
        from kernels.large_spectrum import large_spectrum
        from kernels.cg_ridge import cg_ridge
        X = np.random.default_rng(0).normal(size=(120, 3))
        s = large_spectrum(X, 5, kernel="rbf", chunks=50, progress=False)  # "auto": a plain loop
        assert cg_ridge(X, np.sin(X[:, 0]), ridge=0.1, preconditioner=s).converged
        try:
            kernels.lazy_gram.lazy_gram(X)
        except ImportError as exc:
            print(exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "lazy_gram needs dask: pip install 'airkit[dask]'"


# ----------------------------------------------------------------------------- the benchmark run


def test_large_spectrum_quick_run(tmp_path):
    from benchmarks.cli import run_named
    from benchmarks.runs import ALL_RUNS
    from benchmarks.runs.large_spectrum import findings

    bench = {b.name: b for b in ALL_RUNS}["large-spectrum"]
    d = run_named(bench, out=tmp_path, quick=True, progress=False, options={"n": 400}, overrides={"k": 30, "n_iter": 3})
    res = json.loads((d / "result.json").read_text())
    nums = res["numbers"]
    L, D = nums["large"], nums["dense"]
    assert nums["n"] == 400 and nums["data"] == "digits" and len(L["values"]) == 30
    assert L["gram_bytes"] == 400 * 400 * 8 and len(L["pass_seconds"]) == 3 + 2
    assert L["seconds"] > 0 and L["peak_rss_mib"] >= L["peak_rss_before_mib"] > 0
    assert 0 < L["max_residual"] < 1 and D["within_bound"]
    exact = np.asarray(D["exact"])
    assert D["max_error"] == pytest.approx(np.abs(np.asarray(L["values"]) - exact).max() / exact[0], rel=1e-12)
    report = (d / "report.md").read_text()
    for line in findings(nums):
        assert line in report
    assert f"{L['max_residual']:.2e}" in report and "within that bound" in report
    # the sentences follow the numbers: a failed check reads as one
    bad = {**nums, "dense": {**D, "within_bound": False}}
    assert "NOT within that bound" in findings(bad)[-1]
    assert "no dense check" in findings({**nums, "dense": None})[-1]


@pytest.mark.slow
def test_cg_ridge_at_n3000_in_chunks_of_1000_matches_a_dense_solve(X3000):
    """The issue's size: n = 3000 in chunks of 1000, preconditioned CG predictions vs a dense solve to 1e-8."""
    X = X3000
    r = np.random.default_rng(7)
    y = np.sin(X[:, 0]) + 0.1 * r.normal(size=len(X))
    Z = r.normal(size=(40, X.shape[1]))
    ridge = 1.0
    K, Kz = gram(X, kernel="ntk_relu", depth=2), gram(Z, X, kernel="ntk_relu", depth=2)
    f = Kz @ scipy.linalg.solve(K + ridge * np.eye(len(X)), y, assume_a="pos")
    s = large_spectrum(X, 50, kernel="ntk_relu", depth=2, chunks=1000, progress=False)
    res = cg_ridge(X, y, ridge=ridge, kernel="ntk_relu", depth=2, tol=1e-12, chunks=1000, preconditioner=s)
    pred = cg_ridge_predict(Z, X, res.coef, kernel="ntk_relu", depth=2, chunks=1000)
    assert res.converged and np.abs(pred - f).max() <= 1e-8 * np.abs(f).max()


def test_defaults_are_the_in_memory_randomized_iteration_and_k_may_equal_n():
    """With the same n_iter, large_spectrum's defaults (oversampling, seed) are spectrum(method="randomized")'s:
    the same iteration from the same random start, so the same pairs to round-off."""
    X, _, _ = _data(300, seed=8)
    K = gram(X, kernel="ntk_relu", depth=2)
    want = spectrum(K, 12, method="randomized")  # n_iter=6, n_oversamples=20, seed=0
    got = large_spectrum(X, 12, kernel="ntk_relu", depth=2, n_iter=6, chunks=100, progress=False)
    np.testing.assert_allclose(got.values, want.values, rtol=1e-10)
    np.testing.assert_allclose(np.abs(got.vectors.T @ want.vectors), np.eye(12), atol=1e-6)
    small = _data(25, seed=9)[0]
    full = large_spectrum(small, 25, kernel="rbf", chunks=10, progress=False)  # k = n is allowed
    np.testing.assert_allclose(full.values, np.linalg.eigvalsh(gram(small, kernel="rbf"))[::-1], atol=1e-10)


def test_a_precomputed_gram_must_be_square():
    X, _, Z = _data(60, seed=10)
    with pytest.raises(ValueError, match=r"must be square"):
        large_spectrum(lazy_gram(X, Z, kernel="rbf", chunks=20), 5, kernel="precomputed", progress=False)


def test_chunks_for_a_precomputed_gram_are_used_or_refused():
    """A precomputed dask Gram keeps its own blocks: a different ``chunks`` is refused, never silently dropped."""
    X, _, _ = _data(60, seed=10)
    K = lazy_gram(X, kernel="rbf", chunks=20)
    with pytest.raises(ValueError, match=r"chunks=7 does not apply to a precomputed Gram, which keeps its blocks of 20 rows"):
        large_spectrum(K, 5, kernel="precomputed", chunks=7, progress=False)
    same = large_spectrum(K, 5, kernel="precomputed", chunks=20, progress=False)  # the Gram's own size is accepted
    np.testing.assert_allclose(same.values, np.linalg.eigvalsh(gram(X, kernel="rbf"))[::-1][:5], rtol=1e-8)
