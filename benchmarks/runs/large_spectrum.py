"""large-spectrum: the top-100 eigenpairs of the ReLU NTK on n images, never holding the Gram.

:func:`kernels.large_spectrum.large_spectrum` (randomized subspace iteration, Halko,
Martinsson & Tropp 2011, Alg. 4.4, with Rayleigh-Ritz) on ``ntk_relu`` (depth 2 by default)
of n CIFAR-10 training images (``--data``; flattened, centred and scaled per feature;
default n = 50 000, a 20 GB float64 Gram) or of scikit-learn's digits (no data). Every pass
over K recomputes it block by block. The run reports the wall time (and per pass), the
process's peak resident memory (``ru_maxrss``) and its growth during the computation, the
bytes the Gram would have taken, and the measured ``max_residual``. For n up to
``dense_max`` it also builds the dense Gram and checks the k eigenvalues against
``scipy.linalg.eigh``: each should lie within ``max_residual * d_1`` of the exact one.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.progress import PartLog, duration
from benchmarks.registry import Benchmark, BenchmarkError, RunContext, RunOutput
from benchmarks.report import markdown_table

DENSE_MAX = 6000  # largest n whose dense Gram (8 n^2 bytes) the run also decomposes for the check
DIGITS_N = 1797  # scikit-learn's digits


def _sizes(ctx: RunContext) -> dict[str, Any]:
    if ctx.data is None:
        n = 1000 if ctx.quick else DIGITS_N
    else:
        n = 2000 if ctx.quick else 50000
    sizes = ctx.sizes({"k": 100, "depth": 2, "n_iter": 4, "n_oversamples": 20, "chunks": None, "dense_max": DENSE_MAX})
    sizes["n"] = int(ctx.options["n"]) if ctx.options.get("n") is not None else n
    if sizes["n"] <= sizes["k"]:
        raise BenchmarkError(f"large-spectrum: --n must be > k = {sizes['k']} (the eigenpairs it computes); got {sizes['n']}")
    return sizes


def standardise_inplace(X: np.ndarray, block: int = 4096) -> np.ndarray:
    """Centre and scale each feature of X in place (unit standard deviation; constant features kept at 0).

    Row blocks keep the scratch at ``block`` rows, so a 50 000 x 3072 float64 X (1.2 GB)
    needs no full-size temporary.
    """
    n = X.shape[0]
    X -= X.mean(axis=0)
    ss = np.zeros(X.shape[1])
    for start in range(0, n, block):
        part = X[start : start + block]
        ss += np.einsum("ij,ij->j", part, part)
    sd = np.sqrt(ss / n)
    sd[sd == 0] = 1.0
    X /= sd
    return X


def load_features(data: Path | None, n: int, *, seed: int, progress: bool) -> tuple[np.ndarray, str]:
    """``(X, name)``: n flattened images, standardised per feature, float64.

    CIFAR-10 training images (a stratified seeded subset, all 50 000 at n = 50 000) when
    ``data`` is given, else scikit-learn's 8x8 digits (a seeded subset of the 1797).
    """
    if data is None:
        from sklearn.datasets import load_digits

        images = load_digits().data
        if n > images.shape[0]:
            raise BenchmarkError(f"large-spectrum: --n {n}: digits has {images.shape[0]} images; pass --data for CIFAR-10")
        idx = np.sort(np.random.default_rng(seed).permutation(images.shape[0])[:n])
        return standardise_inplace(images[idx].astype(np.float64)), "digits"
    from deep.data import CifarFormatError, load_cifar10
    from deep.splits import subset_indices

    try:
        cifar = load_cifar10(data, progress=progress)
    except CifarFormatError as exc:
        raise BenchmarkError(str(exc)) from exc
    total = cifar.train_images.shape[0]
    if n > total:
        raise BenchmarkError(f"large-spectrum: --n {n}: CIFAR-10 has {total} training images")
    idx = np.arange(total) if n == total else subset_indices(cifar.train_labels, n, seed=seed)
    X = cifar.train_images[idx].reshape(n, -1).astype(np.float64)
    del cifar
    return standardise_inplace(X), "cifar10"


def _peak_rss_mib() -> float:
    """This process's peak resident set so far (``ru_maxrss``, KiB on Linux), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _large(X: np.ndarray, sizes: dict[str, Any], progress: bool) -> dict[str, Any]:
    from benchmarks.runs.speed import PeakRSS
    from kernels.large_spectrum import large_spectrum

    stamps: list[float] = []

    def line(text: str) -> None:
        stamps.append(time.perf_counter())
        if progress:
            print(f"[large-spectrum] {text}", file=sys.stderr, flush=True)

    rss_before = _peak_rss_mib()
    with PeakRSS() as mem:
        start = time.perf_counter()
        s = large_spectrum(
            X,
            sizes["k"],
            kernel="ntk_relu",
            depth=sizes["depth"],
            n_iter=sizes["n_iter"],
            n_oversamples=sizes["n_oversamples"],
            chunks=sizes["chunks"],
            progress=line,
        )
        seconds = time.perf_counter() - start
    n = X.shape[0]
    from kernels.lazy_gram import blocked_gram

    op = blocked_gram(X, kernel="ntk_relu", depth=sizes["depth"], chunks=sizes["chunks"])  # the same sizing, for the record
    return {
        "values": np.asarray(s.values),
        "max_residual": s.max_residual,
        "seconds": seconds,
        "pass_seconds": np.diff(stamps).tolist(),  # the first line announces, each later one ends a pass
        "peak_rss_mib": _peak_rss_mib(),
        "peak_rss_before_mib": rss_before,
        "rss_growth_mib": mem.mb,
        "gram_bytes": n * n * 8,
        "features_bytes": int(X.nbytes),
        "chunks": op.chunks,
        "workers": op.workers,
        "scheduler": op.scheduler,
    }


def _dense(X: np.ndarray, sizes: dict[str, Any], values: np.ndarray, max_residual: float) -> dict[str, Any]:
    import scipy.linalg
    from threadpoolctl import threadpool_limits

    from kernels.functions import ntk_relu

    start = time.perf_counter()
    K = ntk_relu(X, depth=sizes["depth"])
    n, k = K.shape[0], sizes["k"]
    with threadpool_limits(limits=1, user_api="blas"):  # OpenBLAS's threads slowed eigh 5-10x on 2 loaded cores
        exact = scipy.linalg.eigh(K, eigvals_only=True, subset_by_index=[n - k, n - 1], driver="evr")[::-1]
    seconds = time.perf_counter() - start
    d1 = float(exact[0])
    err = np.abs(values - exact) / d1
    return {
        "seconds": seconds,
        "exact": exact,
        "max_error": float(err.max()),
        "max_error_over_residual": float(err.max() / max_residual) if max_residual > 0 else None,
        "within_bound": bool(np.all(err <= max_residual)),
        "max_excess": float(np.max(values - exact) / d1),
    }


def findings(nums: dict[str, Any]) -> list[str]:
    """The report's sentences, each read off the run's numbers."""
    from kernels.checks import format_bytes

    L, k, n = nums["large"], nums["k"], nums["n"]
    passes = len(L["pass_seconds"])
    peak = L["peak_rss_mib"] * 2**20
    ratio = L["gram_bytes"] / peak
    size = (
        f"{ratio:.1f} times the peak"
        if ratio >= 1
        else f"less than the peak ({ratio:.2f} of it): at this n the Gram would fit, the run only shows the method"
    )
    out = [
        f"- The top {k} eigenpairs of ntk_relu(depth={nums['depth']}) on n = {n} {nums['data']} points took "
        f"{duration(L['seconds'])} in {passes} passes over the Gram ({duration(float(np.mean(L['pass_seconds'])))} per pass, "
        f"blocks of {L['chunks']} x {L['chunks']} on {L['workers']} worker(s), {L['scheduler']}).",
        f"- The process's peak resident memory was {format_bytes(peak)} ({format_bytes(L['rss_growth_mib'] * 2**20)} of it "
        f"added during the computation; the features take {format_bytes(L['features_bytes'])}); the float64 Gram would "
        f"have taken {format_bytes(L['gram_bytes'])}, {size}.",
        f"- The measured max_residual = max_i ||K v_i - d_i v_i|| / d_1 is {L['max_residual']:.2e}, so by the accuracy "
        f"kernels.large_spectrum states each eigenvalue lies within {L['max_residual']:.2e} d_1 of the exact one.",
    ]
    D = nums.get("dense")
    if D is None:
        out.append(f"- n = {n} is above dense_max = {nums['dense_max']}: no dense check was run.")
    else:
        verdict = "within" if D["within_bound"] else "NOT within"
        out.append(
            f"- Against scipy.linalg.eigh of the dense Gram ({duration(D['seconds'])} for the Gram and its top {k} eigenvalues "
            f"in memory, one BLAS thread), the largest "
            f"eigenvalue error is {D['max_error']:.2e} d_1, {verdict} that bound ({D['max_error_over_residual']:.3f} of it); "
            f"no value exceeds the exact one by more than {max(D['max_excess'], 0):.1e} d_1."
        )
    return out


def run(ctx: RunContext) -> RunOutput:
    from kernels.checks import format_bytes

    sizes = _sizes(ctx)
    n = sizes["n"]
    dense = n <= sizes["dense_max"]
    plan = {
        "data": 2.0 * n / 1000,  # measured: 50 000 cached images in ~5 s against ~150 s per pass over K
        "large-spectrum": (sizes["n_iter"] + 2) * (n / 1000) ** 2,
        **({"dense": 3.0 * (n / 1000) ** 3} if dense else {}),
    }
    log = PartLog("large-spectrum", plan, ctx.progress)
    X, name = log.step("data", lambda: load_features(ctx.data, n, seed=ctx.seed, progress=ctx.progress), what=f"{n} images")
    large = log.part(ctx, "large-spectrum", lambda: _large(X, sizes, ctx.progress), what=f"top {sizes['k']} of the {n} x {n} NTK")
    nums: dict[str, Any] = {
        "data": name,
        "n": n,
        "d": int(X.shape[1]),
        **{k: v for k, v in sizes.items() if k != "n"},
        "large": large,
    }
    if dense:
        values = np.asarray(large["values"])
        nums["dense"] = log.part(ctx, "dense", lambda: _dense(X, sizes, values, large["max_residual"]), what="dense check")
    rows = [
        ["n", n],
        ["features d", nums["d"]],
        ["kernel", f"ntk_relu(depth={sizes['depth']})"],
        ["k (p = k + oversamples)", f"{sizes['k']} ({sizes['k'] + sizes['n_oversamples']})"],
        ["passes over K", len(large["pass_seconds"])],
        ["time", duration(large["seconds"])],
        ["time per pass", duration(float(np.mean(large["pass_seconds"])))],
        ["Gram block, workers", f"{large['chunks']} x {large['chunks']}, {large['workers']} ({large['scheduler']})"],
        ["peak resident memory (ru_maxrss)", format_bytes(large["peak_rss_mib"] * 2**20)],
        ["growth during the spectrum", format_bytes(large["rss_growth_mib"] * 2**20)],
        ["Gram size avoided (n^2 x 8 bytes)", format_bytes(large["gram_bytes"])],
        ["max_residual", f"{large['max_residual']:.2e}"],
    ]
    if dense:
        rows += [
            ["dense check: max_i abs(d_i - exact_i) / d_1", f"{nums['dense']['max_error']:.2e}"],
            ["dense check: within max_residual", str(nums["dense"]["within_bound"])],
        ]
    md = "\n".join(markdown_table(["quantity", "value"], rows)) + "\n\n" + "\n".join(findings(nums)) + "\n"
    return RunOutput(
        numbers=nums,
        markdown=md,
        parameters={"kernel": "ntk_relu", **{k: v for k, v in sizes.items() if k != "n"}},
    )


BENCHMARK = Benchmark.from_docstring(__doc__, run, options=("n",))
