"""speed: what one factorisation buys, measured row by row against the plain way.

Every row times the toolkit and a baseline in one fresh subprocess (so the peak
resident memory of the row is its own) and reports both times, their ratio, the sizes
and the machine. Rows:

1. ``distill``  alpha-weighted self-distillation study (10 alphas x 10 steps, test
   predictions): Gram + :func:`theory.distillation_study.distillation_study` vs
   refitting scikit-learn's ``KernelRidge(kernel="rbf")`` at every step (the notebook
   way) and vs refits with a shared precomputed Gram.
2. ``ridge_path`` 20 ridges: :meth:`kernels.ridge.KernelRidge.ridge_path` vs 20 fits.
3. ``gram``     rbf and ntk_relu (depth 3) Gram matrices vs scikit-learn / direct numpy,
   against the bare GEMM of the same shape (the limit).
4. ``eigh``     full eigendecomposition (toolkit choice vs numpy.linalg.eigh) and top-k.
5. ``ntk``      empirical NTK (torch.func) vs the per-example autograd loop.
6. ``train``    training / inference throughput of each network (CPU; GPU when present).
7. ``cnn``      image pairs per second of the CNN kernels (:func:`kernels.cnn_ntk`: ``cntk-3`` and
   ``myrtle-5`` at 32x32, ``cntk-gap-3`` at 8x8) on numpy, torch CPU and CUDA when present, vs a
   plain loop calling ``cnn_ntk`` on one image pair at a time, beside ``ntk_relu`` on the
   flattened images (the fully connected reference).

Timings use :func:`time.perf_counter`: the best of a row's repeats, and of at least
``SHORT_CALL_REPEATS`` calls while a call takes under ``SHORT_CALL_S`` (one short call is at
the mercy of the scheduler on a shared machine); a bar of speedups.png whose baseline or
toolkit time is under ``MIN_TIMED_S`` reads "too small to time" instead of a ratio. Peak
memory per measurement is the largest resident set seen by a 5 ms poller during the
call, minus the resident set before it; ``process_peak_mb`` is the subprocess's
``ru_maxrss``. Load averages before and after each row flag a busy machine.

This module measures (the sizes, :func:`timed`, the ``row_*`` functions, the subprocess per
row); :mod:`benchmarks.runs.speed_report` renders (the report's tables and sentences, the
bars of speedups.png, ``TARGETS`` and ``MIN_TIMED_S``).
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.registry import Benchmark, BenchmarkError, RunContext, RunOutput
from benchmarks.row_process import RowResult, read_spec, row_functions, run_row_process
from benchmarks.runs.speed_report import MIN_TIMED_S, TARGETS, markdown, speedup_bars, speedups_figure

ROWS = ("gemm", "distill", "ridge_path", "gram", "eigh", "ntk", "train", "cnn")

FULL: dict[str, dict[str, Any]] = {
    "gemm": {"n": 4096},
    "distill": {"n": [2000, 4000], "d": [64, 3072], "m": 1000, "alphas": 10, "steps": 10, "ridge": 0.1, "sk_alpha_index": [0, 5]},
    "ridge_path": {"cases": [[1000, 3072], [2000, 3072], [4000, 3072], [4000, 64]], "m": 1000, "ridges": 20},
    "gram": {"n": 8000, "d": 3072, "depth": 3},
    "eigh": {"n": [2000, 4000, 8000], "d": 64, "k": 100},
    "ntk": {"n": 512, "cnn_widths": [16, 32, 32], "mlp_width": 256, "cnn_modes": ["sum", "trace"]},
    "train": {"batch": 64, "steps": 3, "models": ["fastnet", "resnet18", "shakeshake26", "mlp"]},
    "cnn": {
        "cases": [
            {"architecture": "cntk-3", "side": 32, "n": 100, "loop_n": 10, "cuda_n": 400},
            {"architecture": "cntk-gap-3", "side": 8, "n": 40, "loop_n": 8, "cuda_n": 200},
            {"architecture": "myrtle-5", "side": 32, "n": 3, "loop_n": 2, "cuda_n": 8, "repeats": 1},
        ]
    },
}
QUICK: dict[str, dict[str, Any]] = {
    "gemm": {"n": 512},
    "distill": {"n": [60, 120], "d": [4, 24], "m": 20, "alphas": 10, "steps": 10, "ridge": 0.1, "sk_alpha_index": [0, 5]},
    "ridge_path": {"cases": [[80, 24], [150, 4]], "m": 20, "ridges": 20},
    "gram": {"n": 200, "d": 32, "depth": 3},
    "eigh": {"n": [60, 120, 240], "d": 4, "k": 10},
    "ntk": {"n": 4, "cnn_widths": [4, 8, 8], "mlp_width": 32, "cnn_modes": ["sum"]},
    "train": {"batch": 2, "steps": 1, "models": ["fastnet", "mlp"]},
    "cnn": {
        "cases": [
            {"architecture": "cntk-3", "side": 32, "n": 6, "loop_n": 3, "cuda_n": 6},
            {"architecture": "cntk-gap-3", "side": 8, "n": 6, "loop_n": 3, "cuda_n": 6},
        ]
    },
}


# ============================================================================ measuring


def _rss() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - not Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakRSS:
    """Context manager: largest resident-set growth (MiB) seen while the block runs."""

    def __enter__(self) -> PeakRSS:
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def mb(self) -> float:
        return (self.peak - self.base) / 2**20


SHORT_CALL_S = 0.05  # a call faster than this is repeated ...
SHORT_CALL_REPEATS = 5  # ... to at least this many calls in all, and the best kept


def timed(fn: Callable[[], Any], repeats: int = 1) -> tuple[float, float, Any]:
    """(best seconds over ``repeats`` calls, or over at least ``SHORT_CALL_REPEATS`` while the
    best is under ``SHORT_CALL_S``; peak RSS growth in MiB; last result)."""
    best, peak, out = float("inf"), 0.0, None
    calls = 0
    while calls < repeats or (best < SHORT_CALL_S and calls < SHORT_CALL_REPEATS):
        calls += 1
        out = None
        with PeakRSS() as mem:
            start = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - start)
        peak = max(peak, mem.mb)
    return best, peak, out


def _max_diff(a: Any, b: Any) -> float:
    a = np.asarray(a.detach().cpu() if hasattr(a, "detach") else a, dtype=float)
    b = np.asarray(b.detach().cpu() if hasattr(b, "detach") else b, dtype=float)
    return float(np.max(np.abs(a - b)))


def _log(msg: str) -> None:
    print(f"[speed] {msg}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    """CPU model (lscpu), cores, BLAS threads, torch threads, GPU."""
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
        model = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), model)
    except Exception:
        pass
    info: dict[str, Any] = {"cpu": model, "cores": os.cpu_count(), "platform": platform.platform()}
    try:
        import threadpoolctl

        info["blas"] = sorted(
            {f"{i.get('internal_api')} {i.get('version')} x{i.get('num_threads')}" for i in threadpoolctl.threadpool_info()}
        )
    except Exception:
        info["blas"] = []
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["gpu"] = None
    return info


# ============================================================================ rows


def sample_data(n: int, d: int, seed: int, m: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = np.random.default_rng(seed)
    X = r.standard_normal((n + m, d))
    y = np.sin(X[:, 0]) + 0.5 * np.cos(X[:, 1 % d]) + 0.1 * r.standard_normal(n + m)
    return X[:n], y[:n], X[n:]


def row_gemm(cfg: dict, seed: int) -> dict:
    n = cfg["n"]
    out = {}
    for dt in ("float64", "float32"):
        r = np.random.default_rng(seed)
        A, B = r.standard_normal((n, n)).astype(dt), r.standard_normal((n, n)).astype(dt)
        t, _, _ = timed(lambda: A @ B, 3)
        out[dt] = {"n": n, "seconds": t, "gflops": 2 * n**3 / t / 1e9}
    return {"rows": out}


def _refit_chains(model: Callable[[], Any], train: Any, test: Any, y: np.ndarray, alphas: np.ndarray, steps: int) -> np.ndarray:
    """The notebook way: a fresh ``model()`` fitted at every step of every alpha's chain (targets
    ``a y + (1 - a) fit``), on ``train`` (inputs or a precomputed Gram); test predictions, (alphas, steps, m)."""
    preds = []
    for a in alphas:
        targets, p_a = y, []
        for _ in range(steps):
            fitted = model().fit(train, targets)
            fit = fitted.predict(train)
            p_a.append(fitted.predict(test))
            targets = a * y + (1 - a) * fit
        preds.append(p_a)
    return np.array(preds)


def row_distill(cfg: dict, seed: int) -> dict:
    from sklearn.kernel_ridge import KernelRidge as SkKR

    from kernels.functions import rbf
    from theory.distillation_study import distillation_study

    alphas = np.linspace(0.0, 1.0, cfg["alphas"])
    T, ridge, m = cfg["steps"], cfg["ridge"], cfg["m"]
    idx = list(range(len(alphas))) if cfg["sk_alpha_index"] is None else cfg["sk_alpha_index"]
    rows = []
    for n in cfg["n"]:
        for d in cfg["d"]:
            X, y, Xt = sample_data(n, d, seed, m)
            g = 1.0 / d

            def grams() -> tuple[Any, Any]:
                return rbf(X, gamma=g), rbf(Xt, X, gamma=g)

            def toolkit(route: str = "auto") -> Any:
                return distillation_study(K, y, ridge=ridge, alpha=alphas, steps=T, K_cross=Kc, route=route)

            t_gram, mem_gram, (K, Kc) = timed(grams, 2)
            t_study, mem_study, study = timed(toolkit, 2)
            t_eig, mem_eig, eig = timed(lambda: toolkit("eigen"))
            t_tk, mem_tk = t_gram + t_study, mem_gram + mem_study

            def notebook() -> np.ndarray:  # refit sklearn KernelRidge at every step of every alpha
                return _refit_chains(lambda: SkKR(alpha=ridge, kernel="rbf", gamma=g), X, Xt, y, alphas[idx], T)

            def precomputed() -> np.ndarray:  # the same with one shared Gram
                Kn, Kcn = rbf(X, gamma=g), rbf(Xt, X, gamma=g)
                return _refit_chains(lambda: SkKR(alpha=ridge, kernel="precomputed"), Kn, Kcn, y, alphas[idx], T)

            t_nb, mem_nb, p_nb = timed(notebook)
            t_pc, mem_pc, p_pc = timed(precomputed)
            scale = len(alphas) / len(idx)
            ours = np.asarray(study.predictions)[idx]
            rows.append(
                {
                    "n": n,
                    "d": d,
                    "m": m,
                    "alphas": len(alphas),
                    "steps": T,
                    "ridge": ridge,
                    "kernel": "rbf gamma=1/d",
                    "route": study.route,
                    "route_reason": study.route_reason,
                    "solver": study.solver,
                    "toolkit_s": t_tk,
                    "toolkit_gram_s": t_gram,
                    "toolkit_study_s": t_study,
                    "toolkit_eigen_route_s": t_gram + t_eig,
                    "toolkit_peak_mb": mem_tk,
                    "toolkit_eigen_peak_mb": mem_gram + mem_eig,
                    "sklearn_alphas_measured": len(idx),
                    "sklearn_measured_s": t_nb,
                    "sklearn_s": t_nb * scale,
                    "sklearn_peak_mb": mem_nb,
                    "sklearn_precomputed_s": t_pc * scale,
                    "sklearn_precomputed_peak_mb": mem_pc,
                    "ratio": t_nb * scale / t_tk,
                    "ratio_vs_precomputed": t_pc * scale / t_tk,
                    "ratio_eigen_vs_cholesky_route": t_eig / t_study,
                    "max_abs_diff_sklearn": _max_diff(ours, p_nb),
                    "max_abs_diff_precomputed": _max_diff(ours, p_pc),
                    "max_abs_diff_eigen_route": _max_diff(study.predictions, eig.predictions),
                    "max_abs_prediction": float(np.max(np.abs(ours))),
                }
            )
            _log(
                f"distill n={n} d={d}: toolkit {t_tk:.2f}s ({study.route}), sklearn {t_nb * scale:.1f}s -> {rows[-1]['ratio']:.0f}x"
            )
    return {"rows": rows}


def _ridge_path_parts(X: np.ndarray, Xt: np.ndarray, g: float, ridge: float) -> tuple[float, float, float, float]:
    """Seconds for what a ridge path is made of: the Gram and cross-Gram (paid once by the toolkit),
    one float32 eigendecomposition (``solver="mixed"``) and one Cholesky (paid per ridge by sklearn)."""
    import scipy.linalg

    from kernels.functions import rbf

    t_gram, _, K = timed(lambda: rbf(X, gamma=g))
    t_cross, _, _ = timed(lambda: rbf(Xt, X, gamma=g))
    K32 = K.astype(np.float32)
    t_evd32, _, _ = timed(lambda: scipy.linalg.eigh(K32, driver="evd", check_finite=False))
    t_chol, _, _ = timed(lambda: scipy.linalg.cholesky(K + ridge * np.eye(K.shape[0]), lower=True, check_finite=False))
    return t_gram, t_cross, t_evd32, t_chol


def row_ridge_path(cfg: dict, seed: int) -> dict:
    from sklearn.kernel_ridge import KernelRidge as SkKR

    from kernels.ridge import KernelRidge

    ridges = np.logspace(-3, 1, cfg["ridges"])
    m, rows = cfg["m"], []
    for n, d in cfg["cases"]:
        X, y, Xt = sample_data(n, d, seed, m)
        g = 1.0 / d

        def toolkit(solver: str) -> Any:
            model = KernelRidge(ridge=float(ridges[0]), kernel="rbf", gamma=g, solver=solver).fit(X, y)
            return model.ridge_path(ridges, Xt)

        for solver in ("mixed", "eigen", "cholesky"):  # warm-up: first-call set-up of BLAS/LAPACK threads and buffers
            KernelRidge(ridge=1.0, kernel="rbf", gamma=g, solver=solver).fit(X[:200], y[:200]).ridge_path(ridges[:2], Xt[:10])
        SkKR(alpha=1.0, kernel="rbf", gamma=g).fit(X[:200], y[:200]).predict(Xt[:10])
        t_gram, t_cross, t_evd32, t_chol = _ridge_path_parts(X, Xt, g, float(ridges[0]))
        t_tk, mem_tk, path = timed(lambda: toolkit("mixed"))
        t_eig, _, path_eig = timed(lambda: toolkit("eigen"))
        t_ch, _, path_ch = timed(lambda: toolkit("cholesky"))
        t_sk, mem_sk, p_sk = timed(lambda: np.array([SkKR(alpha=r, kernel="rbf", gamma=g).fit(X, y).predict(Xt) for r in ridges]))
        rows.append(
            {
                "n": n,
                "d": d,
                "m": m,
                "ridges": len(ridges),
                "kernel": "rbf gamma=1/d",
                "solver": path.solver,
                "toolkit_s": t_tk,
                "toolkit_eigen_solver_s": t_eig,
                "toolkit_cholesky_solver_s": t_ch,
                "sklearn_s": t_sk,
                "ratio": t_sk / t_tk,
                "ratio_eigen_solver": t_sk / t_eig,
                "ratio_cholesky_solver": t_sk / t_ch,
                "gram_s": t_gram,
                "cross_gram_s": t_cross,
                "evd_float32_s": t_evd32,
                "cholesky_s": t_chol,
                "toolkit_peak_mb": mem_tk,
                "sklearn_peak_mb": mem_sk,
                "max_abs_diff_sklearn": _max_diff(path.predictions, p_sk),
                "max_abs_diff_eigen_solver": _max_diff(path_eig.predictions, p_sk),
                "max_abs_diff_cholesky_solver": _max_diff(path_ch.predictions, p_sk),
                "max_abs_prediction": float(np.max(np.abs(p_sk))),
            }
        )
        _log(
            f"ridge_path n={n} d={d}: toolkit (mixed) {t_tk:.2f}s, eigen {t_eig:.2f}s, cholesky {t_ch:.2f}s, sklearn {t_sk:.1f}s -> {rows[-1]['ratio']:.1f}x"
        )
    return {"rows": rows}


def _numpy_rbf(X: np.ndarray, g: float) -> np.ndarray:
    sq = np.einsum("ij,ij->i", X, X)
    return np.exp(-g * np.maximum(sq[:, None] + sq[None, :] - 2 * (X @ X.T), 0))


def _numpy_ntk_relu(X: np.ndarray, depth: int) -> np.ndarray:
    """The recursion of docs/derivations.md, section 2.3, whole matrix at once (no blocks, no bias)."""
    d = X.shape[1]
    S = (X @ X.T) / d
    diag = np.diag(S).copy()
    theta = S
    for _ in range(depth):
        norm = np.sqrt(np.outer(diag, diag))
        rho = np.clip(S / np.where(norm > 0, norm, 1), -1, 1)
        ang = np.arccos(rho)
        S = norm * (np.sqrt(np.clip(1 - rho * rho, 0, None)) + (np.pi - ang) * rho) / np.pi
        theta = theta * (np.pi - ang) / np.pi + S
    return theta


def row_gram(cfg: dict, seed: int) -> dict:
    from sklearn.metrics.pairwise import rbf_kernel

    from kernels.functions import ntk_relu, rbf

    n, d, depth = cfg["n"], cfg["d"], cfg["depth"]
    rows = []
    for dt in ("float64", "float32"):
        X = np.random.default_rng(seed).standard_normal((n, d)).astype(dt)
        Xc = X.copy()
        t_gemm, mem_gemm, _ = timed(lambda: X @ Xc.T, 2)  # a full GEMM of the Gram's shape (no syrk shortcut)
        flops = 2.0 * n * n * d
        g = 1.0 / d
        cases = [
            ("rbf", lambda: rbf(X, gamma=g), lambda: rbf_kernel(X, gamma=g), lambda: _numpy_rbf(X, g)),
            (f"ntk_relu depth {depth}", lambda: ntk_relu(X, depth=depth), None, lambda: _numpy_ntk_relu(X, depth)),
        ]
        for name, tk, sk, direct in cases:
            t_tk, mem_tk, K = timed(tk, 2)
            t_np, mem_np, K_np = timed(direct)
            row = {
                "kernel": name,
                "dtype": dt,
                "n": n,
                "d": d,
                "gemm_s": t_gemm,
                "gemm_gflops": flops / t_gemm / 1e9,
                "toolkit_s": t_tk,
                "toolkit_gflops": flops / t_tk / 1e9,
                "toolkit_over_gemm": t_tk / t_gemm,
                "numpy_s": t_np,
                "ratio_vs_numpy": t_np / t_tk,
                "toolkit_peak_mb": mem_tk,
                "numpy_peak_mb": mem_np,
                "output_mb": K.nbytes / 2**20,
                "max_abs_diff_numpy": _max_diff(K, K_np),
                "out_dtype": str(K.dtype),
            }
            del K_np
            if sk is not None:
                t_sk, mem_sk, K_sk = timed(sk)
                row.update(
                    {
                        "sklearn_s": t_sk,
                        "ratio_vs_sklearn": t_sk / t_tk,
                        "sklearn_peak_mb": mem_sk,
                        "sklearn_out_dtype": str(K_sk.dtype),
                        "max_abs_diff_sklearn": _max_diff(K, K_sk),
                    }
                )
                del K_sk
            del K
            rows.append(row)
            _log(f"gram {name} {dt}: toolkit {t_tk:.2f}s = {row['toolkit_over_gemm']:.2f}x GEMM ({t_gemm:.2f}s)")
    return {"rows": rows}


def row_eigh(cfg: dict, seed: int) -> dict:
    import scipy.linalg

    from kernels.functions import rbf
    from kernels.spectrum import spectrum

    rows, topk = [], None
    for n in cfg["n"]:
        X = np.random.default_rng(seed).standard_normal((n, cfg["d"]))
        K = rbf(X, gamma=1.0 / cfg["d"])
        t_tk, mem_tk, s = timed(lambda: spectrum(K))
        t_np, mem_np, (w_np, _) = timed(lambda: np.linalg.eigh(K))
        Kr = K + 1e-3 * np.eye(n)
        t_ch, _, _ = timed(lambda: scipy.linalg.cholesky(Kr, lower=True, check_finite=False), 2)
        vals = np.asarray(s.values)
        rows.append(
            {
                "n": n,
                "method": s.method,
                "toolkit_s": t_tk,
                "numpy_s": t_np,
                "ratio": t_np / t_tk,
                "cholesky_s": t_ch,
                "eigh_over_cholesky": t_tk / t_ch,
                "toolkit_peak_mb": mem_tk,
                "numpy_peak_mb": mem_np,
                "max_abs_diff_eigenvalues": _max_diff(vals, np.sort(w_np)[::-1]),
                "d_max": float(vals[0]),
            }
        )
        _log(f"eigh n={n}: toolkit {t_tk:.2f}s, numpy {t_np:.2f}s, cholesky {t_ch:.3f}s")
        if n == max(cfg["n"]):
            k = cfg["k"]
            t_k, mem_k, sk = timed(lambda: spectrum(K, k=k))
            t_r, _, sr = timed(lambda: spectrum(K, k=k, method="randomized"))
            ref = float(vals[k - 1])
            topk = {
                "n": n,
                "k": k,
                "method": sk.method,
                "topk_s": t_k,
                "full_s": t_tk,
                "ratio": t_tk / t_k,
                "topk_peak_mb": mem_k,
                "value_k_full": ref,
                "rel_error_value_k": abs(float(sk.values[k - 1]) - ref) / ref,
                "max_residual": sk.max_residual,
                "randomized_s": t_r,
                "randomized_rel_error_value_k": abs(float(sr.values[k - 1]) - ref) / ref,
                "randomized_max_residual": sr.max_residual,
            }
        K = None  # free this size's Gram before the next one's (a rebinding: the lambdas above read K)
    return {"rows": rows, "topk": topk}


def _ntk_floor(net: Any, X: Any, mode: str) -> dict:
    """Lower bounds on any exact empirical NTK of ``net`` on X, timed on this machine.

    ``backward_s``: a batched forward pass and T batched backward passes to the parameters
    (T = 1 logit sum, or one per logit), 32 examples at a time: per-example gradients cost at
    least as much as these aggregated ones. ``contraction_s``: the product J J^T of a random
    float32 (n, T P) matrix, the inner products every method must form.
    """
    import torch

    params = [p for p in net.parameters() if p.requires_grad]
    net.eval()
    start = time.perf_counter()
    for i in range(0, X.shape[0], 32):
        out = net(X[i : i + 32])
        targets = [out.sum()] if mode == "sum" else [out[:, c].sum() for c in range(out.shape[1])]
        for t, target in enumerate(targets):
            torch.autograd.grad(target, params, retain_graph=t < len(targets) - 1)
    backward_s = time.perf_counter() - start
    T = 1 if mode == "sum" else int(out.shape[1])
    J = torch.randn(X.shape[0], T * sum(p.numel() for p in params))
    start = time.perf_counter()
    J @ J.T
    return {"backward_s": backward_s, "contraction_s": time.perf_counter() - start}


def _plain_mlp(width: int, seed: int) -> Any:
    """A user's MLP with no special structure: Linear/ReLU layers in an nn.Sequential."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(3 * 32 * 32, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)
    )


def row_ntk(cfg: dict, seed: int) -> dict:
    import torch

    from deep.models import count_parameters, make_model
    from deep.ntk import empirical_ntk, empirical_ntk_loop, ntk_method

    X = torch.randn(cfg["n"], 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    cnn = f"small CNN (fastnet widths {'x'.join(map(str, cfg['cnn_widths']))})"
    # (name, network, modes, time the reference costs?)
    nets = [
        (cnn, make_model("fastnet", seed=seed, widths=tuple(cfg["cnn_widths"])), tuple(cfg["cnn_modes"]), True),
        (f"wide MLP (width {cfg['mlp_width']}, depth 1)", make_model("mlp", seed=seed, width=cfg["mlp_width"]), ("sum",), False),
        (
            "plain nn.Sequential MLP 3072-{w}-{w}-10".format(w=cfg["mlp_width"]),
            _plain_mlp(cfg["mlp_width"], seed),
            ("sum",),
            False,
        ),
    ]
    rows = []
    for name, net, modes, with_floor in nets:
        for mode in modes:
            for method in ("auto", "vmap"):
                empirical_ntk(net, X[:2], mode=mode, method=method)  # one-time torch.func / allocator set-up
            empirical_ntk_loop(net, X[:2], mode=mode)
            used = ntk_method(net, X, mode=mode)
            with torch.no_grad():
                classes = int(net(X[:1]).shape[-1])
            # best of 2 for every method: the first full-size call pays allocator / thread-pool set-up
            t_tk, mem_tk, K = timed(lambda: empirical_ntk(net, X, mode=mode), 2)
            t_vm, _, K_vm = timed(lambda: empirical_ntk(net, X, mode=mode, method="vmap"), 2)
            t_lp, mem_lp, K_lp = timed(lambda: empirical_ntk_loop(net, X, mode=mode), 2)
            floor = _ntk_floor(net, X, mode) if with_floor else {"backward_s": None, "contraction_s": None}
            rows.append(
                {
                    "network": name,
                    "parameters": count_parameters(net),
                    "n": cfg["n"],
                    "classes": classes,
                    "mode": mode,
                    "dtype": "float32",
                    "method": used,
                    **{f"floor_{k}": v for k, v in floor.items()},
                    "toolkit_s": t_tk,
                    "vmap_s": t_vm,
                    "loop_s": t_lp,
                    "ratio": t_lp / t_tk,
                    "ratio_vmap": t_lp / t_vm,
                    "toolkit_peak_mb": mem_tk,
                    "loop_peak_mb": mem_lp,
                    "max_abs_diff": _max_diff(K, K_lp),
                    "max_abs_diff_vmap": _max_diff(K_vm, K_lp),
                    "max_abs_ntk": float(K.abs().max()),
                }
            )
            del K, K_lp, K_vm
            _log(
                f"ntk {name} {mode}: toolkit ({used}) {t_tk:.2f}s, vmap {t_vm:.2f}s, loop {t_lp:.2f}s -> {rows[-1]['ratio']:.1f}x"
            )
    return {"rows": rows, "torch_threads": torch.get_num_threads()}


def row_train(cfg: dict, seed: int) -> dict:
    import torch
    import torch.nn.functional as F

    from deep.augment import augment
    from deep.models import count_parameters, make_model

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    B, steps, rows = cfg["batch"], cfg["steps"], []
    for dev in devices:
        gen = torch.Generator(device=dev).manual_seed(seed)
        x = torch.rand(B, 3, 32, 32, generator=gen, device=dev)
        labels = torch.randint(0, 10, (B,), generator=gen, device=dev)
        for name in cfg["models"]:
            net = make_model(name, seed=seed, device=dev)
            opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True)
            sync = (lambda: torch.cuda.synchronize()) if dev == "cuda" else (lambda: None)

            def step() -> None:
                net.train()
                loss = F.cross_entropy(net(augment(x, gen)), labels)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sync()

            def infer() -> None:
                net.eval()
                with torch.no_grad():
                    net(x)
                sync()

            step()  # warm-up
            infer()
            t_tr = min(timed(step)[0] for _ in range(steps))
            t_ev = min(timed(infer)[0] for _ in range(steps))
            rows.append(
                {
                    "network": name,
                    "device": dev,
                    "parameters": count_parameters(net),
                    "batch": B,
                    "train_images_per_s": B / t_tr,
                    "eval_images_per_s": B / t_ev,
                    "train_step_s": t_tr,
                    "eval_s": t_ev,
                }
            )
            _log(f"train {name} {dev}: {B / t_tr:.1f} img/s train, {B / t_ev:.1f} img/s eval")
    return {"rows": rows, "gpu": "none lent to this run" if len(devices) == 1 else torch.cuda.get_device_name(0)}


def _pair_loop(A: np.ndarray, B: np.ndarray, architecture: str) -> np.ndarray:
    """The plain way: ``cnn_ntk`` called on one image pair at a time (the same recursion, no batching)."""
    from kernels.cnn import cnn_ntk

    out = np.empty((A.shape[0], B.shape[0]))
    for i in range(A.shape[0]):
        for j in range(B.shape[0]):
            out[i, j] = cnn_ntk(A[i : i + 1], B[j : j + 1], architecture=architecture)[0, 0]
    return out


def _cnn_backends() -> list[tuple[str, str, int | None]]:
    """(backend, device, torch threads or None for the default) to time: numpy; torch on the CPU with its
    default threads and, when that is more than one, with one thread (on cores shared with other processes
    torch's thread pool can stall a call of small elementwise operations 100-fold); torch on CUDA when present."""
    import torch

    one = [("torch", "cpu", 1)] if torch.get_num_threads() > 1 else []
    return [("numpy", "cpu", None), ("torch", "cpu", None), *one] + (
        [("torch", "cuda", None)] if torch.cuda.is_available() else []
    )


def row_cnn(cfg: dict, seed: int) -> dict:
    """Image pairs per second of ``cnn_ntk`` on an (n x n) cross Gram of random images, per backend.

    Baseline (same process): :func:`_pair_loop` on the first ``loop_n`` x ``loop_n`` of those pairs,
    timed in numpy; its entries must equal the batched ones. Reference: ``ntk_relu(depth=L)`` on the
    flattened images (L = the architecture's convolutions; no positions, one GEMM). Rates, not
    times, are compared because the loop runs on fewer pairs; CUDA rows use ``cuda_n`` images.
    The batched call is the best of ``repeats`` (default 3: torch's thread pool stalls when other
    processes hold the cores, and a single call can read several times slow).
    """
    import torch

    from kernels.backend import to_numpy
    from kernels.cnn import cnn_architecture, cnn_ntk
    from kernels.functions import ntk_relu

    rows = []
    for case in cfg["cases"]:
        arch, side = case["architecture"], case["side"]
        depth = sum(layer.startswith("conv") for layer in cnn_architecture(arch))
        r = np.random.default_rng(seed)
        n_max = max(case["n"], case.get("cuda_n", case["n"]))
        A_all, B_all = r.standard_normal((n_max, side, side, 3)), r.standard_normal((n_max, side, side, 3))
        k = case["loop_n"]
        t_loop, mem_loop, K_loop = timed(lambda: _pair_loop(A_all[:k], B_all[:k], arch))
        loop_rate = k * k / t_loop
        K_ref = None  # the numpy row's Gram (numpy runs first), for the other backends to agree with
        for backend, dev, threads in _cnn_backends():
            n = case.get("cuda_n", case["n"]) if dev == "cuda" else case["n"]
            A: Any = A_all[:n]
            B: Any = B_all[:n]
            if backend == "torch":
                A, B = torch.as_tensor(A, device=dev), torch.as_tensor(B, device=dev)
            default_threads = torch.get_num_threads()
            torch.set_num_threads(threads or default_threads)
            try:
                cnn_ntk(A[:1, :8, :8], B[:1, :8, :8], architecture="cntk-gap-1")  # warm-up: library / CUDA set-up, one cheap pair
                t_tk, mem_tk, K = timed(lambda: to_numpy(cnn_ntk(A, B, architecture=arch)), case.get("repeats", 3))
                Af, Bf = A.reshape(n, -1), B.reshape(n, -1)
                t_fc, _, _ = timed(lambda: to_numpy(ntk_relu(Af, Bf, depth=depth)), 2)
                used_threads = torch.get_num_threads() if backend == "torch" and dev == "cpu" else None
            finally:
                torch.set_num_threads(default_threads)
            rate, fc_rate = n * n / t_tk, n * n / t_fc
            K_ref = K if K_ref is None else K_ref
            m = min(n, K_ref.shape[0])
            rows.append(
                {
                    "kernel": f"cnn_ntk {arch}",
                    "image": f"{side}x{side}x3",
                    "backend": backend,
                    "device": dev,
                    "torch_threads": used_threads,
                    "dtype": "float64",
                    "n": n,
                    "pairs": n * n,
                    "toolkit_s": t_tk,
                    "pairs_per_s": rate,
                    "toolkit_peak_mb": mem_tk,
                    "loop_pairs": k * k,
                    "loop_s": t_loop,
                    "loop_pairs_per_s": loop_rate,
                    "loop_peak_mb": mem_loop,
                    "ratio_vs_loop": rate / loop_rate,
                    "fc_kernel": f"ntk_relu depth {depth}",
                    "fc_s": t_fc,
                    "fc_pairs_per_s": fc_rate,
                    "ratio_fc_vs_toolkit": fc_rate / rate,
                    "max_abs_diff_loop": _max_diff(K[:k, :k], K_loop),
                    "max_abs_diff_numpy": _max_diff(K[:m, :m], K_ref[:m, :m]),
                    "max_abs_kernel": float(np.max(np.abs(K))),
                }
            )
            _log(
                f"cnn {arch} {side}x{side} {backend} {dev}{'' if used_threads is None else f' x{used_threads}'}: {rate:.3g} pairs/s, loop {loop_rate:.3g} pairs/s "
                f"-> {rows[-1]['ratio_vs_loop']:.1f}x; ntk_relu {fc_rate:.3g} pairs/s"
            )
    return {"rows": rows, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none lent to this run"}


ROW_FUNCS = row_functions(globals(), ROWS)


# ============================================================================ subprocess


def _child(row: str, cfg_path: str, out_path: str) -> None:
    """One row in this (fresh) process: its result, ``row_seconds``, the load averages around it and the
    process's resident memory, written to ``out_path``."""
    spec, out = read_spec(cfg_path), RowResult(Path(out_path))
    load0 = os.getloadavg()
    base = _rss()
    with out.timing():
        out.data.update(ROW_FUNCS[row](spec["cfg"], spec["seed"]))
    out.data["load_before"], out.data["load_after"] = list(load0), list(os.getloadavg())
    out.data["process_base_mb"] = base / 2**20
    out.data["process_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.save()


def _run_streaming(cmd: list[str], _folder: Path) -> subprocess.CompletedProcess:
    """Run ``cmd``, streaming its progress (stderr) when this process's stderr is a real file, else capturing it."""
    try:
        sys.stderr.fileno()
        pipe = None
    except (AttributeError, OSError, ValueError):
        pipe = subprocess.PIPE
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=pipe, text=True)
    if pipe is not None and proc.stderr:
        sys.stderr.write(proc.stderr)
    return proc


def run_row(row: str, cfg: dict, seed: int) -> dict:
    """Run one row in a fresh Python process and return its JSON result."""
    spec = {"cfg": cfg, "seed": seed}
    proc, result = run_row_process(["benchmarks.runs.speed"], row, spec, _run_streaming, prefix="airkit-speed-")
    if proc.returncode != 0 or result is None:
        tail = "\n".join((proc.stderr or "").strip().splitlines()[-5:])
        raise BenchmarkError(f"speed: row {row!r} failed in its subprocess (exit {proc.returncode}) {tail}")
    return result


# ============================================================================ run


def run(ctx: RunContext) -> RunOutput:
    sizes = QUICK if ctx.quick else FULL
    mach = machine()
    res: dict[str, Any] = {}
    for row in ROWS:
        if ctx.progress:
            _log(f"row {row} ...")
        res[row] = ctx.part(row, partial(run_row, row, sizes[row], ctx.seed))
    figure = speedups_figure(res, ctx)
    numbers = {"machine": mach, **res, "figure": {"min_timed_s": MIN_TIMED_S, "bars": speedup_bars(res)}}
    return RunOutput(
        numbers=numbers,
        markdown=markdown(res, mach, ctx.quick),
        figures=(figure,),
        parameters={"sizes": sizes, "quick": ctx.quick, "targets": TARGETS, "min_timed_s": MIN_TIMED_S},
    )


BENCHMARK = Benchmark.from_docstring(__doc__, run)


if __name__ == "__main__":
    _child(*sys.argv[1:4])
