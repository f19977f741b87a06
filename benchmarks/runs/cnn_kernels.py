"""cnn-kernels: kernel regression with infinite-width CNN kernels on clean and noisy CIFAR-10 subsets.

For four kernels on the same images (:func:`kernel_specs`): the fully connected ReLU NTK
(``ntk_relu``, depth 3) and the convolutional NTK ``cntk-3`` on the 32x32 images, and, because
kernels over all position pairs (``cntk-gap-<L>``, Myrtle) cost ``(H W)^2`` per image pair and
are out of reach at 32x32 on a CPU, the same pair on the images average-pooled to 8x8 with
``cntk-gap-3`` as the convolutional kernel. Each kernel's Gram matrix is computed once on the
largest training subset and the test set; nested training subsets of growing size take its
sub-blocks. Reported: kernel ridge regression test accuracy (one-hot targets, argmax) trained
on the clean and on the noisy labels and scored against the true test labels, the AIR label
spectra at the largest n (energy shares of the clean labels and of the label noise in the top
1% / 5% / 10% eigen-directions), and each kernel's speed in image pairs per second.

Parts (``--resume`` skips finished ones): one per kernel, ``kernel-<slug>``; the Gram matrices
are also written to ``grams/<slug>.npz`` for reuse. Sizes: ``DEFAULT`` (n = 250 / 500 / 1000, 400
test images: 16 min measured on 2 shared CPU cores, 13.5 min of it the 8x8 ``cntk-gap-3`` Gram at
1.1e3 pairs/s; ``cntk-3`` ran at 2.6e3-6.9e3 pairs/s depending on the load, so up to ~20 min) and
``QUICK`` (n = 20 / 40 / 80, 50 test images: 14-30 s); without ``--data`` scikit-learn's digits are
written as CIFAR batches (as ``confirm`` does).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.datasets import check_noise_spec
from benchmarks.progress import PartLog
from benchmarks.registry import Benchmark, BenchmarkError, RunContext, RunOutput
from benchmarks.report import markdown_table
from benchmarks.run_files import atomic_savefig
from benchmarks.runs.confirm_cnn import centred_one_hot

__all__ = [
    "KernelSpec",
    "ImageSet",
    "kernel_specs",
    "nested_order",
    "standardise_channels",
    "avg_pool",
    "load_images",
    "kernel_gram",
    "krr_predict",
    "accuracy",
    "air_shares",
    "findings",
    "run",
    "BENCHMARK",
]

NOISE = "symmetric:0.4"
FRACTIONS = (0.01, 0.05, 0.10)  # top 1% / 5% / 10% of the eigen-directions, as confirm's P1
RIDGE_REL = 1e-3  # ridge = RIDGE_REL * mean diagonal of the training Gram (see the report's "Ridge")
POOL = 4  # 32x32 -> 8x8 for the all-position-pair kernel
# Largest training subset n; the subsets are n/4, n/2, n (nested). MIN_N: one image per class in n/4.
MIN_N = 40
MIN_N_WHY = "cnn-kernels' smallest nested subset n/4 needs one training image per class, 10 classes"
DEFAULT = {"n_train": [250, 500, 1000], "n_test": 400, "ridge_rel": RIDGE_REL, "pool": POOL}
QUICK = {"n_train": [20, 40, 80], "n_test": 50, "ridge_rel": RIDGE_REL, "pool": POOL}
# Image pairs per second measured on 2 shared cores (numpy, float64), for the progress estimates only.
PLAN_RATES = {"ntk_relu": 1e6, "cntk-3": 2.6e3, "cntk-gap-3": 1.1e3}
COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


# ============================================================================ kernels and data


@dataclass(frozen=True)
class KernelSpec:
    """One kernel of the run: ``family`` "fc" (``ntk_relu`` on flattened pixels) or "cnn" (``cnn_ntk``)."""

    label: str
    slug: str
    family: str
    side: int  # image side the kernel sees (32, or 32 / pool)
    params: dict

    @property
    def rate_key(self) -> str:
        return "ntk_relu" if self.family == "fc" else str(self.params["architecture"])


def kernel_specs(pool: int = POOL) -> tuple[KernelSpec, ...]:
    """The four kernels, in (fully connected, convolutional) pairs per resolution.

    Why these: ``ntk_relu(depth=3)`` is the fully connected reference with as many ReLU layers
    as the convolutional kernels; ``cntk-3`` (three 3x3 conv + ReLU layers, flatten readout)
    needs only the ``p = p'`` position terms, so it runs at full 32x32 resolution; the
    all-position-pair kernels (global average pooling, Myrtle) are ~1000x dearer per pair at
    32x32 (``(H W)^2`` terms), so ``cntk-gap-3`` runs on the images average-pooled by ``pool``,
    beside ``ntk_relu`` on the same pooled pixels.
    """
    side = 32 // pool
    return (
        KernelSpec("ntk_relu(depth=3) 32x32", "fc-32", "fc", 32, {"depth": 3}),
        KernelSpec("cnn_ntk cntk-3 32x32", "cntk-3-32", "cnn", 32, {"architecture": "cntk-3"}),
        KernelSpec(f"ntk_relu(depth=3) {side}x{side}", f"fc-{side}", "fc", side, {"depth": 3}),
        KernelSpec(f"cnn_ntk cntk-gap-3 {side}x{side}", f"cntk-gap-3-{side}", "cnn", side, {"architecture": "cntk-gap-3"}),
    )


def nested_order(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of ``n`` images, ordered so that every prefix is stratified (class counts differ by at most 1).

    Each class is shuffled; the images are then taken round by round, one per class per round
    (in a random class order within the round). A subset of size k is the first k indices, so the
    subsets are nested and the larger ones reuse the smaller ones' Gram entries.

    >>> order = nested_order(np.repeat(np.arange(3), 4), 6, seed=0)
    >>> sorted(np.bincount(np.repeat(np.arange(3), 4)[order[:3]]).tolist())
    [1, 1, 1]
    """
    labels = np.asarray(labels)
    if not 1 <= n <= labels.size:
        raise BenchmarkError(f"nested_order: n must be in [1, {labels.size}]; got {n}")
    rng = np.random.default_rng(seed)
    rank = np.empty(labels.size, dtype=np.float64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rank[rng.permutation(idx)] = np.arange(idx.size)
    return np.argsort(rank + rng.random(labels.size), kind="stable")[:n].astype(np.int64)


def standardise_channels(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Per-channel standardisation (mean 0, variance 1 over the training images' pixels), float64.

    Per channel, not per pixel (as ``benchmarks.datasets`` does for flat features), so that every
    position of an image is scaled alike: a convolution shares its filter across positions.
    """
    axes = tuple(range(train.ndim - 1))
    mu = train.mean(axis=axes, dtype=np.float64)
    sd = train.std(axis=axes, dtype=np.float64)
    sd[sd == 0] = 1.0
    return [(np.asarray(a, dtype=np.float64) - mu) / sd for a in (train, *others)]


def avg_pool(images: np.ndarray, factor: int) -> np.ndarray:
    """``factor x factor`` average pooling of (n, H, W, C) images (H, W multiples of ``factor``)."""
    n, H, W, C = images.shape
    if H % factor or W % factor:
        raise BenchmarkError(f"avg_pool: image side {H}x{W} is not a multiple of the pool factor {factor}")
    return images.reshape(n, H // factor, factor, W // factor, factor, C).mean(axis=(2, 4))


@dataclass(frozen=True)
class ImageSet:
    """The run's images: standardised (n, H, W, 3) arrays at full and pooled resolution, labels, indices."""

    source: str
    train: np.ndarray  # (n_max, 32, 32, 3), nested order
    test: np.ndarray
    train_pooled: np.ndarray
    test_pooled: np.ndarray
    labels_true: np.ndarray
    labels_given: np.ndarray
    test_labels: np.ndarray
    train_index: np.ndarray  # into the source's training images
    test_index: np.ndarray

    def inputs(self, side: int) -> tuple[np.ndarray, np.ndarray]:
        """(train, test) images at ``side`` x ``side``."""
        return (self.train, self.test) if side == self.train.shape[1] else (self.train_pooled, self.test_pooled)


def load_images(
    data_path: Path, *, n_max: int, n_test: int, noise: str, pool: int, seed: int, progress: bool = False
) -> ImageSet:
    """CIFAR-10 (or digits written as CIFAR batches) as an :class:`ImageSet`: ``n_max`` training images in
    :func:`nested_order`, a stratified test subset of ``n_test``, label noise ``noise`` drawn once on the
    ``n_max`` training labels (so nested subsets share their noisy labels); standardised per channel on the
    training images, at 32x32 and average-pooled by ``pool`` (standardised again after pooling)."""
    from deep.data import CifarFormatError, load_cifar10
    from deep.splits import subset_indices
    from theory.noise import make_noise

    try:
        data = load_cifar10(data_path, progress=progress)
    except CifarFormatError as exc:
        raise BenchmarkError(str(exc)) from exc
    n_train_all, n_test_all = len(data.train_labels), len(data.test_labels)
    if n_max > n_train_all or n_test > n_test_all:
        raise BenchmarkError(
            f"cnn-kernels: {data_path} has {n_train_all} training and {n_test_all} test images; "
            f"asked for {n_max} and {n_test}: use a smaller --n or n_test"
        )
    tr = nested_order(data.train_labels, n_max, seed)
    te = subset_indices(data.test_labels, n_test, seed=seed) if n_test < n_test_all else np.arange(n_test_all)
    raw_tr, raw_te = data.train_images[tr].astype(np.float64), data.test_images[te].astype(np.float64)
    train, test = standardise_channels(raw_tr, raw_te)
    train_p, test_p = standardise_channels(avg_pool(raw_tr, pool), avg_pool(raw_te, pool))
    labels = data.train_labels[tr].astype(np.int64)
    noisy = make_noise(noise, labels, num_classes=10, seed=seed)
    return ImageSet(
        source=str(data.source),
        train=train,
        test=test,
        train_pooled=train_p,
        test_pooled=test_p,
        labels_true=labels,
        labels_given=np.asarray(noisy.labels, dtype=np.int64),
        test_labels=data.test_labels[te].astype(np.int64),
        train_index=tr,
        test_index=np.asarray(te, dtype=np.int64),
    )


def kernel_gram(spec: KernelSpec, X: Any, Z: Any = None) -> Any:
    """``K(X, Z)`` of one kernel on (n, H, W, C) images in any supported namespace (``Z=None``: ``K(X, X)``)."""
    from kernels import cnn_ntk, ntk_relu

    if spec.family == "fc":
        flat = lambda a: None if a is None else a.reshape(a.shape[0], -1)  # noqa: E731
        return ntk_relu(flat(X), flat(Z), **spec.params)
    return cnn_ntk(X, Z, **spec.params)


# ============================================================================ regression and AIR


def krr_predict(
    K_train: np.ndarray, K_cross: np.ndarray, label_sets: Sequence[np.ndarray], ridge: float, n_classes: int = 10
) -> list[np.ndarray]:
    """Predicted classes of the test points for each set of training labels: one :class:`kernels.KernelRidge`
    (precomputed Gram, one Cholesky solve of ``(K + ridge I) alpha = Y`` for the one-hot targets of every
    set side by side) and the argmax of ``K_cross alpha`` per set."""
    from kernels import KernelRidge
    from theory.noise import one_hot

    Y = np.hstack([one_hot(labels, n_classes) for labels in label_sets])
    scores = np.asarray(KernelRidge(ridge=float(ridge), kernel="precomputed").fit(K_train, Y).predict(K_cross))
    return [np.argmax(scores[:, i * n_classes : (i + 1) * n_classes], axis=1) for i in range(len(label_sets))]


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of ``pred`` equal to ``labels``."""
    return float(np.mean(np.asarray(pred) == np.asarray(labels)))


def air_shares(K: np.ndarray, labels_true: np.ndarray, labels_given: np.ndarray, fractions: Sequence[float] = FRACTIONS) -> dict:
    """AIR at one Gram: shares of ``||y_clean||^2`` and of ``||y_noisy - y_clean||^2`` (centred one-hot)
    in the top ``fraction * n`` eigen-directions, and the cumulative shares over all n directions."""
    from kernels import spectrum
    from theory.air import label_spectrum

    s = spectrum(K, psd="clip")
    ls = label_spectrum(s, centred_one_hot(labels_true), centred_one_hot(labels_given))
    n = K.shape[0]
    ks = [max(1, int(round(f * n))) for f in fractions]
    return {
        "n": n,
        "fractions": list(fractions),
        "ks": ks,
        "clean_share": ls.share_at(ks, "clean").tolist(),
        "noise_share": ls.share_at(ks, "noise").tolist(),
        "cum_clean": np.asarray(ls.cum_share_clean, dtype=float).tolist(),
        "cum_noise": np.asarray(ls.cum_share_noise, dtype=float).tolist(),
        "eigenvalues_top": np.asarray(s.values, dtype=float)[: min(n, 100)].tolist(),
    }


def kernel_results(
    K_train: np.ndarray,
    K_cross: np.ndarray,
    images: ImageSet,
    n_train: Sequence[int],
    ridge_rel: float,
    step: Callable[[str, Callable[[], Any]], Any] = lambda name, fn: fn(),
    slug: str = "kernel",
) -> dict:
    """Accuracies at every nested n (trained on clean / noisy labels, scored on the true test labels) and AIR at the largest."""
    out: dict[str, Any] = {
        "n_train": list(n_train),
        "ridge": [],
        "acc_clean": [],
        "acc_noisy": [],
        "pred_clean": [],
        "pred_noisy": [],
    }

    def fits() -> None:
        for n in n_train:
            K, Kc = K_train[:n, :n], K_cross[:, :n]
            ridge = ridge_rel * float(np.mean(np.diag(K)))
            out["ridge"].append(ridge)
            preds = krr_predict(K, Kc, [images.labels_true[:n], images.labels_given[:n]], ridge)
            for kind, pred in zip(("clean", "noisy"), preds):
                out[f"pred_{kind}"].append(pred.tolist())
                out[f"acc_{kind}"].append(accuracy(pred, images.test_labels))

    step(f"{slug}/krr", fits)
    n = max(n_train)
    out["air"] = step(f"{slug}/air", lambda: air_shares(K_train[:n, :n], images.labels_true[:n], images.labels_given[:n]))
    return out


# ============================================================================ run


def _steps(spec: KernelSpec) -> tuple[str, str, str]:
    return (f"{spec.slug}/gram", f"{spec.slug}/krr", f"{spec.slug}/air")


def _pairs(n: int, m: int) -> int:
    """Distinct image pairs of the training Gram (symmetric: upper triangle with diagonal) and the cross Gram."""
    return n * (n + 1) // 2 + m * n


def _plan(specs: Sequence[KernelSpec], n: int, m: int) -> dict[str, float]:
    """Rough seconds per step: pairs / :data:`PLAN_RATES` for the Grams, ~n^3 for the solves and the spectrum."""
    plan: dict[str, float] = {}
    for spec in specs:
        gram, krr, air = _steps(spec)
        plan[gram] = _pairs(n, m) / PLAN_RATES.get(spec.rate_key, 1e3) + 0.1
        plan[krr] = 6 * 1e-9 * n**3 + 0.1
        plan[air] = 5e-9 * n**3 + 0.1
    return plan


def _sizes(ctx: RunContext) -> dict:
    """The run's sizes: ``QUICK`` or ``DEFAULT``; ``--n N`` gives the nested subsets N/4, N/2, N; then overrides."""
    base = dict(QUICK if ctx.quick else DEFAULT)
    if ctx.options.get("n") is not None:
        n = int(ctx.options["n"])
        if n < MIN_N:
            raise BenchmarkError(f"--n must be an integer >= {MIN_N} ({MIN_N_WHY}); got {n}")
        base["n_train"] = [n // 4, n // 2, n]
    sizes = ctx.sizes(base)
    sizes["n_train"] = sorted({int(v) for v in sizes["n_train"]})
    if sizes["n_train"][0] < 10:
        raise BenchmarkError(
            f"cnn-kernels: every training subset needs at least 10 images (one per class); got {sizes['n_train']}"
        )
    if not (isinstance(sizes["ridge_rel"], (int, float)) and sizes["ridge_rel"] > 0):
        raise BenchmarkError(f"cnn-kernels: ridge_rel must be a float > 0; got {sizes['ridge_rel']!r}")
    if 32 % int(sizes["pool"]):
        raise BenchmarkError(f"cnn-kernels: pool must divide 32; got {sizes['pool']!r}")
    return sizes


def run(ctx: RunContext) -> RunOutput:
    from benchmarks.datasets import write_digits_as_cifar
    from kernels.backend import to_numpy

    t_run = time.perf_counter()
    sizes = _sizes(ctx)
    noise = check_noise_spec(ctx.options.get("noise", NOISE))
    if ctx.data is not None:
        data_path, source = Path(ctx.data), str(ctx.data)
    else:
        data_path = write_digits_as_cifar(ctx.directory / "digits", seed=ctx.seed)
        source = "scikit-learn digits (8x8 upsampled to 32x32, tiled to RGB) written as CIFAR batches: no CIFAR-10 was given"
    n_max, m = max(sizes["n_train"]), int(sizes["n_test"])
    images = load_images(
        data_path, n_max=n_max, n_test=m, noise=noise, pool=int(sizes["pool"]), seed=ctx.seed, progress=ctx.progress
    )
    specs = kernel_specs(int(sizes["pool"]))
    log = PartLog("cnn-kernels", _plan(specs, n_max, m), ctx.progress)
    results: dict[str, dict] = {}
    for spec in specs:

        def compute(spec: KernelSpec = spec) -> dict:
            X, Z = images.inputs(spec.side)

            def grams() -> tuple[np.ndarray, np.ndarray, float]:
                start = time.perf_counter()
                Xa = ctx.asarray(X)  # the kernel side runs on --backend / --device; the regression on numpy
                K = to_numpy(kernel_gram(spec, Xa))
                Kc = to_numpy(kernel_gram(spec, ctx.asarray(Z), Xa))
                return np.asarray(K, dtype=np.float64), np.asarray(Kc, dtype=np.float64), time.perf_counter() - start

            K, Kc, seconds = log.step(_steps(spec)[0], grams, what=f"{spec.label} on {n_max} + {m} images")
            _save_grams(ctx.path(f"grams/{spec.slug}.npz"), K, Kc)
            res = kernel_results(K, Kc, images, sizes["n_train"], sizes["ridge_rel"], step=log.step, slug=spec.slug)
            pairs = _pairs(n_max, m)
            return {
                "slug": spec.slug,
                "family": spec.family,
                "side": spec.side,
                "params": spec.params,
                "gram_s": seconds,
                "pairs": pairs,
                "pairs_per_s": pairs / seconds,
                "gram_file": f"grams/{spec.slug}.npz",
                **res,
            }

        results[spec.label] = log.part(ctx, f"kernel-{spec.slug}", compute, inner=_steps(spec))
    numbers = {
        "source": source,
        "n_train": sizes["n_train"],
        "n_test": m,
        "noise": noise,
        "ridge_rel": sizes["ridge_rel"],
        "pool": sizes["pool"],
        "flip_rate": [float(np.mean(images.labels_given[:n] != images.labels_true[:n])) for n in sizes["n_train"]],
        "pairs": [[specs[1].label, specs[0].label], [specs[3].label, specs[2].label]],  # (cnn, fc) per resolution
        "train_index": images.train_index,
        "test_index": images.test_index,
        "labels_true": images.labels_true,
        "labels_given": images.labels_given,
        "test_labels": images.test_labels,
        "kernels": results,
        "fc_resolution_rel_diff": _rel_diff(ctx.path(f"grams/{specs[0].slug}.npz"), ctx.path(f"grams/{specs[2].slug}.npz")),
    }
    figures = (_plot_accuracy(numbers, ctx), _plot_energy(numbers, ctx))
    numbers["seconds"] = time.perf_counter() - t_run
    return RunOutput(
        numbers=numbers,
        markdown=markdown(numbers),
        figures=figures,
        parameters={"sizes": sizes, "noise": noise, "kernels": {s.label: {"family": s.family, **s.params} for s in specs}},
    )


def _save_grams(path: Path, K: np.ndarray, K_cross: np.ndarray) -> None:
    """``K_train`` and ``K_cross`` as an .npz, written to a temp name and renamed (a crash leaves no half file)."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, K_train=K, K_cross=K_cross)
    os.replace(tmp, path)


def _rel_diff(path_a: Path, path_b: Path) -> float:
    """``max |K_a - K_b| / max |K_a|`` of two saved training Grams (the fully connected kernel at both resolutions)."""
    with np.load(path_a) as a, np.load(path_b) as b:
        Ka, Kb = a["K_train"], b["K_train"]
    return float(np.max(np.abs(Ka - Kb)) / np.max(np.abs(Ka)))


# ============================================================================ report


def _fmt(v: Sequence[float] | np.ndarray) -> str:
    return " / ".join(f"{x:.3f}" for x in v)


def _times(x: float) -> str:
    """'3.2x', '45x', '3,450x'."""
    return f"{x:.2g}x" if x < 100 else f"{x:,.0f}x"


def _which_n(wins: Sequence[bool], ns: Sequence[int]) -> str:
    """'at every n', 'at no n' or 'at n = 200, 800 only'."""
    if all(wins):
        return "at every n"
    if not any(wins):
        return "at no n"
    return "at n = " + ", ".join(str(n) for n, w in zip(ns, wins) if w) + " only"


def findings(numbers: dict) -> list[str]:
    """The report's sentences, each read off the run's numbers (swap the numbers and the words swap)."""
    ks, ns, out = numbers["kernels"], numbers["n_train"], []
    for cnn, fc in numbers["pairs"]:
        a, b = ks[cnn], ks[fc]
        for kind in ("clean", "noisy"):
            diff = np.asarray(a[f"acc_{kind}"]) - np.asarray(b[f"acc_{kind}"])
            out.append(
                f"- {kind.capitalize()} labels: {cnn} beats {fc} {_which_n(list(diff > 0), ns)} "
                f"(test accuracy difference {' / '.join(f'{d:+.3f}' for d in diff)} at n = {' / '.join(map(str, ns))})."
            )
        fa, fb = a["air"], b["air"]
        more = [x > y for x, y in zip(fa["clean_share"], fb["clean_share"])]
        pct = [f"{f:.0%}" for f in fa["fractions"]]
        where = (
            "at all of these"
            if all(more)
            else ("at none" if not any(more) else "at " + ", ".join(p for p, w in zip(pct, more) if w) + " only")
        )
        ratio = lambda r: [c / x if x > 0 else float("inf") for c, x in zip(r["clean_share"], r["noise_share"])]  # noqa: E731
        out.append(
            f"- AIR at n = {fa['n']}: {cnn} holds {_fmt(fa['clean_share'])} of the clean labels' energy in its top "
            f"{' / '.join(pct)} eigen-directions against {_fmt(fb['clean_share'])} for {fc} "
            f"(more {where}); clean/noise share ratio {' / '.join(f'{r:.1f}' for r in ratio(fa))} "
            f"against {' / '.join(f'{r:.1f}' for r in ratio(fb))}."
        )
        slow = b["pairs_per_s"] / a["pairs_per_s"]
        out.append(
            f"- Speed: {cnn} {a['pairs_per_s']:.3g} image pairs/s, {fc} {b['pairs_per_s']:.3g} "
            f"({_times(slow if slow >= 1 else 1 / slow)} {'slower' if slow >= 1 else 'faster'} for the convolutional kernel)."
        )
    if "fc_resolution_rel_diff" in numbers:
        (_, fc_a), (_, fc_b) = numbers["pairs"][:2]
        diff = numbers["fc_resolution_rel_diff"]
        same = (
            ": the images are constant on the pooling blocks (as digits upsampled 4x are), so pooling loses nothing"
            if diff < 1e-10
            else ""
        )
        out.append(f"- {fc_a} and {fc_b} training Grams differ by {diff:.2g} (max relative difference){same}.")
    for label, r in ks.items():
        clean, noisy = np.asarray(r["acc_clean"]), np.asarray(r["acc_noisy"])
        rising = bool(np.all(np.diff(clean) > 0))
        out.append(
            f"- {label}: clean accuracy {'rises with n at every step' if rising else 'does not rise at every step of n'} "
            f"({_fmt(clean)}); training on the noisy labels changes it by {_fmt(noisy - clean)} "
            f"({'a loss at every n' if np.all(noisy < clean) else 'not a loss at every n'})."
        )
    return out


def markdown(numbers: dict) -> str:
    """The report: data, kernels and their reason, ridge, accuracy / AIR / speed tables, findings."""
    ns, ks = numbers["n_train"], numbers["kernels"]
    cols = [f"clean n={n}" for n in ns] + [f"noisy n={n}" for n in ns]
    acc = markdown_table(
        ["kernel", *cols],
        [[label, *(f"{v:.3f}" for v in r["acc_clean"]), *(f"{v:.3f}" for v in r["acc_noisy"])] for label, r in ks.items()],
    )
    first = next(iter(ks.values()))["air"]
    pct = "/".join(f"{f:.0%}" for f in first["fractions"])
    air = markdown_table(
        ["kernel", f"clean share top {pct}", f"noise share top {pct}", "clean / noise"],
        [
            [
                label,
                _fmt(r["air"]["clean_share"]),
                _fmt(r["air"]["noise_share"]),
                " / ".join(f"{c / x:.1f}" if x > 0 else "inf" for c, x in zip(r["air"]["clean_share"], r["air"]["noise_share"])),
            ]
            for label, r in ks.items()
        ],
    )
    speed = markdown_table(
        ["kernel", "image", "distinct pairs", "seconds", "pairs / s"],
        [
            [label, f"{r['side']}x{r['side']}x3", r["pairs"], f"{r['gram_s']:.3g}", f"{r['pairs_per_s']:.3g}"]
            for label, r in ks.items()
        ],
    )
    flips = " / ".join(f"{f:.3f}" for f in numbers["flip_rate"])
    side = 32 // int(numbers["pool"])
    lines = [
        f"Data: {numbers['source']}. Training subsets n = {' / '.join(map(str, ns))} (nested: each the first n images of one "
        f"class-interleaved order, so every subset is stratified), a stratified test set of {numbers['n_test']} images. "
        f"Label noise `{numbers['noise']}` drawn once on the {max(ns)} training labels; realised flip rate {flips} at these n. "
        f"Pixels standardised per channel on the training images (again after the {numbers['pool']}x{numbers['pool']} "
        "average pooling).",
        "",
        f"Kernels: ntk_relu(depth=3) on the flattened 32x32x3 pixels and cnn_ntk cntk-3 (3 conv 3x3 + ReLU, flatten "
        "readout) on the 32x32 images: cntk-3 keeps only the p = p' position terms, so it is affordable at full resolution. "
        f"Kernels over all position pairs (global average pooling, Myrtle) cost (H W)^2 terms per image pair, "
        f"{(32 * 32 // (side * side)) ** 2}x more at 32x32 than at {side}x{side}, so cntk-gap-3 (3 conv + ReLU, global "
        "average pooling readout) runs on the images pooled to "
        f"{side}x{side}, beside ntk_relu(depth=3) on the same pooled pixels. Bias 0, float64, NTK parameterisation.",
        "",
        f"Ridge: {numbers['ridge_rel']:g} x the mean diagonal of the training Gram at each n (the same relative ridge for "
        "every kernel, whose scales differ"
        + (
            "; small, so the fit is close to the kernel interpolant that an infinitely wide network trained to convergence "
            "computes)"
            if numbers["ridge_rel"] <= 1e-2
            else ")"
        )
        + ". Not tuned: no validation split is used. KernelRidge(kernel='precomputed'), "
        "one-hot targets, argmax prediction; every accuracy is against the TRUE test labels, the noisy column trained on "
        "the noisy labels.",
        "",
        "## Test accuracy",
        "",
        *acc,
        "",
        f"## AIR label spectra at n = {first['n']}",
        "",
        "Share of the centred one-hot clean labels' energy and of the label noise's (y_noisy - y_clean) in the top "
        f"{pct} eigen-directions of each training Gram (k = {' / '.join(map(str, first['ks']))}).",
        "",
        *air,
        "",
        "## Kernel time",
        "",
        "Distinct image pairs of the training Gram (upper triangle) and the test-by-train Gram, and the seconds both took "
        "in this run (including the per-image self-variance recursions).",
        "",
        *speed,
        "",
        "## Findings",
        "",
        *findings(numbers),
        "",
        f"Run time {numbers.get('seconds', float('nan')):.1f} s.",
    ]
    return "\n".join(lines) + "\n"


# ============================================================================ figures


def _plot_accuracy(numbers: dict, ctx: RunContext) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.8), layout="constrained")
    ns = numbers["n_train"]
    for colour, (label, r) in zip(COLOURS, numbers["kernels"].items()):
        ax.plot(ns, r["acc_clean"], "-o", color=colour, label=f"{label}: clean labels")
        ax.plot(ns, r["acc_noisy"], "--s", color=colour, mfc="none", label=f"{label}: noisy labels")
    ax.axhline(0.1, color="0.6", lw=0.8, ls=":", label="chance (10 classes)")
    ax.set_xscale("log")
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.minorticks_off()
    ax.set_xlabel("training images n (nested stratified subsets)")
    ax.set_ylabel(f"test accuracy (true labels, {numbers['n_test']} images)")
    ax.set_title(f"Kernel ridge regression: clean (solid) vs {numbers['noise']} noisy (dashed) training labels", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    atomic_savefig(fig, ctx.path("accuracy_vs_n.png"))
    return "accuracy_vs_n.png"


def _plot_energy(numbers: dict, ctx: RunContext) -> str:
    import matplotlib.pyplot as plt

    ks = numbers["kernels"]
    colour = dict(zip(ks, COLOURS))
    fig, axes = plt.subplots(1, len(numbers["pairs"]), figsize=(11, 4.4), squeeze=False, layout="constrained")
    for ax, pair in zip(axes[0], numbers["pairs"]):
        for label in pair:
            r = ks[label]["air"]
            frac = np.arange(1, r["n"] + 1) / r["n"]
            ax.semilogx(frac, r["cum_clean"], "-", color=colour[label], label=f"{label}: clean labels")
            ax.semilogx(frac, r["cum_noise"], "--", color=colour[label], label=f"{label}: label noise")
        for f in ks[pair[0]]["air"]["fractions"]:
            ax.axvline(f, color="0.7", lw=0.8, ls=":")
        ax.set_xlabel("fraction of eigen-directions (top first)")
        ax.set_ylabel("cumulative share of the energy")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{ks[pair[0]]['side']}x{ks[pair[0]]['side']} images, n = {ks[pair[0]]['air']['n']}", fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
    pct = " / ".join(f"{f:.0%}" for f in ks[numbers["pairs"][0][0]]["air"]["fractions"])
    fig.suptitle(f"AIR: cumulative label energy in the top eigen-directions (dotted: {pct})")
    atomic_savefig(fig, ctx.path("label_energy.png"))
    return "label_energy.png"


BENCHMARK = Benchmark.from_docstring(__doc__, run, options=("n", "noise"))
