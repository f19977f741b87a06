"""The "any namespace" paths on the strict array-API namespace, and backends kept end to end.

``array_api_strict`` is the reference namespace of the array API standard: numpy-only
calls (``np.*`` on arrays, flat indexing of n-d arrays, ``.astype``, in-place tricks)
raise there. Its arrays live here on the fake device ``"device1"``, which refuses
``np.asarray`` (an implicit host copy) and mixing with CPU arrays, as a GPU would. Every
function below runs on such inputs, must return strict arrays of the input's dtype on
that device, and must agree with the numpy result. The linear algebra of the adapter
leaves the array API explicitly (kernels/backend.py); its CuPy branch is checked with a
fake ``cupy`` module. The last part checks that torch inputs stay torch (dtype and
device) through the same functions.
"""

from __future__ import annotations

import sys
import types

import array_api_compat
import numpy as np
import pytest
from conftest import STRICT, STRICT_DEVICE, to_backend

import kernels.backend as backend_mod
from kernels import KERNELS, KernelRidge, gram, spectrum
from kernels.backend import backend_name, namespace, to_numpy
from theory.air import label_spectrum
from theory.distillation import self_distillation
from theory.dynamics import linearized_training

xs = pytest.importorskip("array_api_strict")
DEVICE = xs.Device(STRICT_DEVICE)
DTYPES = ["float64", "float32"]
TOL = {"float64": 1e-10, "float32": 1e-4}


def _strict(x, dtype: str = "float64"):
    return to_backend(np.asarray(x, dtype=dtype), STRICT)


def _assert_strict(out, dtype: str) -> None:
    """``out`` is a strict array of ``dtype`` on the fake device (never a host copy)."""
    assert array_api_compat.is_array_api_obj(out) and not isinstance(out, np.ndarray)
    assert array_api_compat.is_array_api_strict_namespace(out.__array_namespace__())
    assert out.dtype == getattr(xs, dtype), (out.dtype, dtype)
    assert out.device == DEVICE


def _close(out, ref, dtype: str) -> None:
    ref = np.asarray(to_numpy(ref), dtype=np.float64)
    scale = max(1.0, float(np.abs(ref).max())) if ref.size else 1.0
    np.testing.assert_allclose(np.asarray(to_numpy(out), dtype=np.float64), ref, rtol=0, atol=TOL[dtype] * scale)


def _problem(n: int = 24, m: int = 7, d: int = 3, c: int = 3, seed: int = 0):
    r = np.random.default_rng(seed)
    X, Z = r.normal(size=(n, d)), r.normal(size=(m, d))
    y = np.sin(X[:, 0]) + 0.1 * r.normal(size=n)
    Y = np.eye(c)[r.integers(0, c, size=n)]
    return X, Z, y, Y


def _rows(A: np.ndarray) -> np.ndarray:
    return A / np.linalg.norm(A, axis=1, keepdims=True)


# ----------------------------------------------------------------------------- namespace


def test_strict_namespace_is_supported_and_distinct():
    x = _strict(np.ones((2, 2)))
    assert backend_name(namespace(x)) == STRICT
    # to_numpy copies explicitly, even from the fake device that refuses np.asarray
    with pytest.raises(RuntimeError):
        np.asarray(x)
    np.testing.assert_array_equal(to_numpy(x), np.ones((2, 2)))


# ----------------------------------------------------------------------------- Gram builders


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_z", [False, True])
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_kernels_on_strict_match_numpy(name, with_z, dtype):
    X, Z, _, _ = _problem()
    if name == "ntk_two_layer":
        X, Z = _rows(X), _rows(Z)
    X, Z = X.astype(dtype), Z.astype(dtype)
    ref = gram(X, Z if with_z else None, kernel=name)
    out = gram(_strict(X, dtype), _strict(Z, dtype) if with_z else None, kernel=name)
    _assert_strict(out, dtype)
    _close(out, ref, dtype)


@pytest.mark.parametrize("name", ["rbf", "ntk_relu", "laplace"])
def test_kernels_on_strict_small_blocks_and_dtype_argument(name):
    X, Z, _, _ = _problem(n=30)
    ref = gram(X, kernel=name, memory_budget=256)
    out = gram(_strict(X), kernel=name, memory_budget=256)  # many row blocks (and laplace column chunks)
    _assert_strict(out, "float64")
    _close(out, ref, "float64")
    out32 = gram(_strict(X), _strict(Z), kernel=name, dtype="float32")
    _assert_strict(out32, "float32")
    _close(out32, gram(X, Z, kernel=name, dtype="float32"), "float32")


# ----------------------------------------------------------------------------- Spectrum


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [None, 5])
def test_spectrum_full_on_strict_matches_numpy(dtype, k):
    X, _, y, Y = _problem()
    K = gram(X, kernel="rbf", gamma=0.5).astype(dtype)
    ref = spectrum(K, k=k, method="full")
    s = spectrum(_strict(K, dtype), k=k, method="full")
    assert s.backend == STRICT and s.method == "full" and s.k == (k or K.shape[0])
    for arr in (s.values, s.vectors):
        _assert_strict(arr, dtype)
    _close(s.values, ref.values, dtype)
    _close(s.vectors @ s.vectors.T, to_numpy(ref.vectors) @ to_numpy(ref.vectors).T, dtype)  # sign-free
    assert s.n_zero == ref.n_zero and s.n_clipped == ref.n_clipped and s.zero_tol == pytest.approx(ref.zero_tol)
    assert "array_api_strict" in repr(s)
    if k is None:
        _assert_strict(s.to_dense(), dtype)
        _close(s.to_dense(), K, dtype)
    V = to_numpy(s.vectors).astype(np.float64)
    for labels in (y, Y):
        coef = s.project(_strict(labels, dtype))
        _assert_strict(coef, dtype)
        _close(coef, V.T @ labels, dtype)
        back = s.reconstruct(coef)
        _assert_strict(back, dtype)
        _close(back, V @ (V.T @ labels), dtype)
        for g in (lambda d: 1.0 / (d + 0.1), np.stack([np.linspace(0, 1, s.k), np.ones(s.k)])):
            out = s.apply(g, _strict(labels, dtype))
            _assert_strict(out, dtype)
            _close(out, ref.apply(g, labels.astype(dtype)), dtype)


def test_spectrum_randomized_on_strict():
    X, _, _, _ = _problem(n=60)
    K = gram(X, kernel="rbf", gamma=0.5)
    s = spectrum(_strict(K), k=4, method="randomized")
    _assert_strict(s.values, "float64")
    _assert_strict(s.vectors, "float64")
    _close(s.values, spectrum(K, k=4, method="full").values, "float32")  # top-k accuracy, not round-off
    with pytest.raises(ValueError, match="lanczos"):
        spectrum(_strict(K), k=4, method="lanczos")


# ----------------------------------------------------------------------------- KernelRidge


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("solver", ["eigen", "cholesky", "mixed"])
@pytest.mark.parametrize("onehot", [False, True])
def test_kernel_ridge_on_strict_matches_numpy(solver, dtype, onehot):
    X, Z, y, Y = _problem()
    labels = Y if onehot else y
    kw = {"ridge": 0.1, "kernel": "rbf", "gamma": 0.5, "solver": solver}
    ref = KernelRidge(**kw).fit(X.astype(dtype), labels.astype(dtype))
    model = KernelRidge(**kw).fit(_strict(X, dtype), _strict(labels, dtype))
    assert model.solver_ == ref.solver_
    out_dtype = dtype  # every solver answers in the Gram's dtype ("mixed" refines a float64 Gram in float64)
    _assert_strict(model.dual_coef_, out_dtype)
    _close(model.dual_coef_, ref.dual_coef_, dtype)
    pred = model.predict(_strict(Z, dtype))
    _assert_strict(pred, out_dtype)
    _close(pred, ref.predict(Z.astype(dtype)), dtype)
    path = model.ridge_path([0.1, 1.0], _strict(Z, dtype))
    ref_path = ref.ridge_path([0.1, 1.0], Z.astype(dtype))
    for name in ("ridges", "dual_coef", "fitted", "predictions"):
        _assert_strict(getattr(path, name), out_dtype)
        _close(getattr(path, name), getattr(ref_path, name), dtype)
    assert path.solvers == ref_path.solvers
    assert model.score(_strict(Z, dtype), model.predict(_strict(Z, dtype))) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- theory


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha", [0.4, [0.0, 0.4, 1.0]])
@pytest.mark.parametrize("onehot", [False, True])
def test_self_distillation_on_strict_matches_numpy(dtype, alpha, onehot):
    X, Z, y, Y = _problem()
    labels = (Y if onehot else y).astype(dtype)
    K = gram(X, kernel="rbf", gamma=0.5).astype(dtype)
    Kc = gram(Z, X, kernel="rbf", gamma=0.5).astype(dtype)
    ref = self_distillation(spectrum(K), labels, ridge=0.1, alpha=alpha, steps=5)
    path = self_distillation(spectrum(_strict(K, dtype)), _strict(labels, dtype), ridge=0.1, alpha=alpha, steps=5)
    assert path.backend == STRICT
    for name in ("B", "B_limit", "C", "C_limit", "fits", "fit_limit"):
        _assert_strict(getattr(path, name), dtype)
        _close(getattr(path, name), getattr(ref, name), dtype)
    for method in ("predict", "predict_limit"):
        out = getattr(path, method)(_strict(Kc, dtype))
        _assert_strict(out, dtype)
        _close(out, getattr(ref, method)(Kc), dtype)
    assert "array_api_strict" in path.summary()


_RULES = [
    ("gd", {}),
    ("anchored", {"alpha": 0.3}),
    ("chained", {"target_momentum": 0.5}),
    ("chained", {"target_momentum": "schedule"}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("continuous", [False, True])
@pytest.mark.parametrize(("rule", "kw"), _RULES)
def test_linearized_training_on_strict_matches_numpy(rule, kw, continuous, dtype):
    X, Z, _, Y = _problem()
    steps = 12
    K = gram(X, kernel="rbf", gamma=0.5).astype(dtype)
    Kc = gram(Z, X, kernel="rbf", gamma=0.5).astype(dtype)
    s_np, s = spectrum(K), spectrum(_strict(K, dtype))
    lr = 0.5 / float(to_numpy(s_np.values)[0])
    kw_np, kw_x = dict(kw), dict(kw)
    if kw.get("target_momentum") == "schedule":  # a schedule may be any array, here a strict one on device1
        sched = np.linspace(0.2, 0.8, steps)
        kw_np["target_momentum"], kw_x["target_momentum"] = sched, _strict(sched)
    args = {"lr": lr, "steps": steps, "targets": rule, "continuous": continuous, "record": [0, 3, steps]}
    ref = linearized_training(s_np, Y.astype(dtype), **args, **kw_np)
    path = linearized_training(s, _strict(Y, dtype), **args, **kw_x)
    for name in ("y_coef", "dual_filter", "target_filter", "fraction", "coef", "fits"):
        _assert_strict(getattr(path, name), dtype)
        _close(getattr(path, name), getattr(ref, name), dtype)
    pred = path.predict(_strict(Kc, dtype))
    _assert_strict(pred, dtype)
    _close(pred, ref.predict(Kc), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("onehot", [False, True])
def test_label_spectrum_on_strict_matches_numpy(dtype, onehot):
    X, _, y, Y = _problem()
    clean = (Y if onehot else y).astype(dtype)
    noisy = clean[::-1].copy()
    K = gram(X, kernel="rbf", gamma=0.5).astype(dtype)
    ref = label_spectrum(spectrum(K), clean, noisy)
    out = label_spectrum(spectrum(_strict(K, dtype)), _strict(clean, dtype), _strict(noisy, dtype))
    for which in ("clean", "noise", "noisy"):
        for field in (f"energy_{which}", f"cum_share_{which}"):
            _assert_strict(getattr(out, field), dtype)
            _close(getattr(out, field), getattr(ref, field), dtype)
        assert getattr(out, f"total_{which}") == pytest.approx(getattr(ref, f"total_{which}"), rel=TOL[dtype])
    np.testing.assert_allclose(out.share_at([0, 3, 24]), ref.share_at([0, 3, 24]), atol=TOL[dtype])


# ----------------------------------------------------------------------------- the adapter


@pytest.mark.parametrize("dtype", DTYPES)
def test_adapter_linear_algebra_on_strict_round_trips_explicitly(dtype, monkeypatch):
    X, _, y, Y = _problem()
    A = (gram(X, kernel="rbf", gamma=0.5) + 0.1 * np.eye(X.shape[0])).astype(dtype)
    copies = []
    real = backend_mod.to_numpy

    def counting(x):
        copies.append(type(x).__module__)
        return real(x)

    monkeypatch.setattr(backend_mod, "to_numpy", counting)
    a = _strict(A, dtype)
    w, V = backend_mod.eigh(a)
    for arr in (w, V):
        _assert_strict(arr, dtype)
    _close(w, np.linalg.eigvalsh(A.astype(np.float64)), dtype)
    L = backend_mod.cholesky(a)
    _assert_strict(L, dtype)
    _close(L, np.linalg.cholesky(A.astype(np.float64)), dtype)
    for b in (y, Y):
        x = backend_mod.cho_solve(L, _strict(b, dtype))
        _assert_strict(x, dtype)
        _close(x, np.linalg.solve(A.astype(np.float64), b), "float32")
        x = backend_mod.lstsq(a, _strict(b, dtype))
        _assert_strict(x, dtype)
        _close(x, np.linalg.solve(A.astype(np.float64), b), "float32")
    assert copies and all(m.startswith("array_api_strict") for m in copies)  # every LAPACK call copied explicitly
    with pytest.raises(np.linalg.LinAlgError):
        backend_mod.cholesky(_strict(-np.eye(3), dtype))


class _Recorder:
    """Stands in for a CuPy array and records which backend function produced it."""

    def __init__(self, origin: str):
        self.origin = origin


def _fake_cupy(calls: list[str], *, finite: bool = True) -> dict[str, types.ModuleType]:
    """Modules ``cupy``, ``cupy.linalg`` and ``cupyx.scipy.linalg`` whose functions record their calls."""

    def rec(name, result=None):
        def f(*args, **kwargs):
            calls.append(name)
            return result if result is not None else _Recorder(name)

        return f

    cupy = types.ModuleType("cupy")
    linalg = types.ModuleType("cupy.linalg")
    linalg.eigh = rec("cupy.linalg.eigh", (_Recorder("w"), _Recorder("V")))
    linalg.cholesky = rec("cupy.linalg.cholesky")
    linalg.lstsq = rec("cupy.linalg.lstsq", (_Recorder("cupy.linalg.lstsq"), None, None, None))
    cupy.linalg = linalg
    cupy.isfinite = lambda x: types.SimpleNamespace(all=lambda: finite)
    cupyx = types.ModuleType("cupyx")
    cupyx_scipy = types.ModuleType("cupyx.scipy")
    cupyx_linalg = types.ModuleType("cupyx.scipy.linalg")
    cupyx_linalg.solve_triangular = rec("cupyx.scipy.linalg.solve_triangular")
    cupyx.scipy = cupyx_scipy
    cupyx_scipy.linalg = cupyx_linalg
    return {"cupy": cupy, "cupy.linalg": linalg, "cupyx": cupyx, "cupyx.scipy": cupyx_scipy, "cupyx.scipy.linalg": cupyx_linalg}


@pytest.fixture
def fake_cupy(monkeypatch):
    """The adapter sees every array as CuPy's and imports the fake modules; returns the call log."""
    calls: list[str] = []
    for name, mod in _fake_cupy(calls).items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(backend_mod, "namespace", lambda *arrays: types.SimpleNamespace(__name__="cupy"))
    monkeypatch.setattr(backend_mod, "backend_name", lambda xp: "cupy")
    return calls


def test_adapter_cupy_branch_calls_cupy_and_cusolver(fake_cupy):
    a, b = object(), types.SimpleNamespace(ndim=1)
    w, V = backend_mod.eigh(a)
    assert fake_cupy == ["cupy.linalg.eigh"] and (w.origin, V.origin) == ("w", "V")
    L = backend_mod.cholesky(a)
    assert L.origin == "cupy.linalg.cholesky"
    x = backend_mod.cho_solve(L, b)
    assert x.origin == "cupyx.scipy.linalg.solve_triangular"
    assert backend_mod.lstsq(a, b).origin == "cupy.linalg.lstsq"
    assert fake_cupy == [
        "cupy.linalg.eigh",
        "cupy.linalg.cholesky",
        "cupyx.scipy.linalg.solve_triangular",
        "cupyx.scipy.linalg.solve_triangular",
        "cupy.linalg.lstsq",
    ]


def test_adapter_cupy_cholesky_failure_raises_linalg_error(monkeypatch):
    calls: list[str] = []
    for name, mod in _fake_cupy(calls, finite=False).items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(backend_mod, "namespace", lambda *arrays: types.SimpleNamespace(__name__="cupy"))
    monkeypatch.setattr(backend_mod, "backend_name", lambda xp: "cupy")
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        backend_mod.cholesky(object())  # cuSOLVER returns NaNs instead of raising
    assert calls == ["cupy.linalg.cholesky"]


# ----------------------------------------------------------------------------- torch stays torch

try:
    import torch
except ImportError:  # pragma: no cover - CI installs torch
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


def _assert_torch(out, dtype: str) -> None:
    assert isinstance(out, torch.Tensor), type(out)
    assert out.dtype == getattr(torch, dtype) and out.device == torch.device("cpu")


def _t(x, dtype: str):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x, dtype=dtype)))


@needs_torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_stays_torch_through_grams_spectrum_and_ridge(dtype):
    X, Z, y, Y = _problem()
    for name in sorted(KERNELS):
        XX, ZZ = (_rows(X), _rows(Z)) if name == "ntk_two_layer" else (X, Z)
        _assert_torch(gram(_t(XX, dtype), kernel=name), dtype)
        _assert_torch(gram(_t(XX, dtype), _t(ZZ, dtype), kernel=name), dtype)
    K = gram(_t(X, dtype), kernel="rbf", gamma=0.5)
    s = spectrum(K)
    assert s.backend == "torch"
    for arr in (s.values, s.vectors, s.project(_t(Y, dtype)), s.reconstruct(s.project(_t(y, dtype)))):
        _assert_torch(arr, dtype)
    _assert_torch(s.apply(lambda d: 1.0 / (d + 0.1), _t(Y, dtype)), dtype)
    for solver in ("eigen", "cholesky", "mixed"):
        m = KernelRidge(ridge=0.1, kernel="rbf", gamma=0.5, solver=solver).fit(_t(X, dtype), _t(y, dtype))
        _assert_torch(m.dual_coef_, dtype)
        _assert_torch(m.predict(_t(Z, dtype)), dtype)
        path = m.ridge_path([0.1, 1.0], _t(Z, dtype))
        for arr in (path.ridges, path.dual_coef, path.fitted, path.predictions):
            _assert_torch(arr, dtype)


@needs_torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_stays_torch_through_theory(dtype):
    X, Z, y, Y = _problem()
    K = gram(_t(X, dtype), kernel="rbf", gamma=0.5)
    Kc = gram(_t(Z, dtype), _t(X, dtype), kernel="rbf", gamma=0.5)
    s = spectrum(K)
    for alpha in (0.4, [0.2, 0.6]):
        p = self_distillation(s, _t(Y, dtype), ridge=0.1, alpha=alpha, steps=4)
        for arr in (p.B, p.B_limit, p.C, p.C_limit, p.fits, p.fit_limit, p.y_coef, p.predict(Kc), p.predict_limit(Kc)):
            _assert_torch(arr, dtype)
    lr = 0.5 / float(s.values[0])
    for rule, kw in _RULES:
        if kw.get("target_momentum") == "schedule":
            kw = {"target_momentum": _t(np.linspace(0.2, 0.8, 6), dtype)}
        for continuous in (False, True):
            tp = linearized_training(s, _t(y, dtype), lr=lr, steps=6, targets=rule, continuous=continuous, **kw)
            for arr in (tp.y_coef, tp.dual_filter, tp.target_filter, tp.fraction, tp.coef, tp.fits, tp.predict(Kc)):
                _assert_torch(arr, dtype)
    ls = label_spectrum(s, _t(Y, dtype), _t(Y[::-1].copy(), dtype))
    for which in ("clean", "noise", "noisy"):
        _assert_torch(getattr(ls, f"energy_{which}"), dtype)
        _assert_torch(getattr(ls, f"cum_share_{which}"), dtype)
