"""toy-distill: alpha-weighted self-distillation of KRR on the sinusoid of Mobahi et al. (2020).

11 noisy points of sin(2 pi x) on [0, 1], RBF kernel exp(-gamma |x-x'|^2) with gamma = 80,
ridge lambda = 0.2 (Borup & Andersen 2021, README "Illustrative example"). The loss is the
mean squared error against the true sinusoid on a 101-point grid of [0, 1], per distillation
step and for the limit B_inf = alpha D (alpha D + lambda I)^-1. With alpha = 0 the limit is the
zero function, whose loss is mean(sin^2(2 pi x_k)) = 50/101 = 0.49505 on that grid.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from benchmarks.registry import Benchmark, BenchmarkError, RunContext, RunOutput
from benchmarks.report import markdown_table
from benchmarks.run_files import atomic_savefig

DEFAULT_ALPHAS = (0.0, 0.25, 0.35, 0.6, 1.0)
NOISE_STD = 0.5


def read_points(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a CSV with a header naming columns ``x`` and ``y`` (one point per row)."""
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchmarkError(f"--data {path}: cannot read it as CSV ({exc})") from exc
    if not rows or not {"x", "y"} <= set(rows[0]):
        raise BenchmarkError(
            f"--data {path}: toy-distill needs a CSV with a header row naming columns x,y and at least one point"
        )
    try:
        x = np.array([float(r["x"]) for r in rows])
        y = np.array([float(r["y"]) for r in rows])
    except (TypeError, ValueError) as exc:
        raise BenchmarkError(f"--data {path}: every x and y must be a number ({exc})") from exc
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise BenchmarkError(f"--data {path}: x and y must be finite")
    return x, y


def sinusoid_points(seed: int, n: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """n equispaced points of sin(2 pi x) on [0, 1] plus N(0, 0.5^2) noise, seeded."""
    x = np.linspace(0.0, 1.0, n)
    y = np.sin(2 * np.pi * x) + NOISE_STD * np.random.default_rng(seed).standard_normal(n)
    return x, y


def parse_alphas(text: str | None) -> np.ndarray:
    """``--alphas``: comma-separated weights, each a number in [0, 1]; ``None`` gives the defaults."""
    if text is None:
        return np.array(DEFAULT_ALPHAS)
    message = f"--alphas must be comma-separated numbers in [0, 1], e.g. 0,0.25,1; got {text!r}"
    if not isinstance(text, str):
        raise BenchmarkError(message)
    try:
        alphas = np.array([float(a) for a in text.split(",") if a.strip()])
    except ValueError as exc:
        raise BenchmarkError(message) from exc
    if alphas.size == 0 or not np.all((alphas >= 0) & (alphas <= 1)):  # NaN fails both comparisons
        raise BenchmarkError(message)
    return alphas


def run(ctx: RunContext) -> RunOutput:
    from sklearn.kernel_ridge import KernelRidge as SkKernelRidge

    from kernels import spectrum
    from kernels.backend import to_numpy
    from kernels.functions import rbf
    from theory.distillation import self_distillation

    opt = ctx.options
    gamma = float(opt["gamma"]) if opt.get("gamma") is not None else 80.0
    ridge = float(opt["ridge"]) if opt.get("ridge") is not None else 0.2
    steps = int(opt["steps"]) if opt.get("steps") is not None else 10
    alphas = parse_alphas(opt.get("alphas"))
    x, y = read_points(ctx.data) if ctx.data is not None else sinusoid_points(ctx.seed)
    grid = np.linspace(0.0, 1.0, 101)
    truth = np.sin(2 * np.pi * grid)

    X, G = x[:, None], grid[:, None]
    Xb, Gb = ctx.asarray(X), ctx.asarray(G)  # the kernel side runs on --backend/--device
    path = self_distillation(spectrum(rbf(Xb, gamma=gamma)), ctx.asarray(y), ridge=ridge, alpha=alphas, steps=steps)
    f_steps = to_numpy(path.predict(rbf(Gb, Xb, gamma=gamma)))  # (A, steps, 101)
    f_limit = to_numpy(path.predict_limit(rbf(Gb, Xb, gamma=gamma)))  # (A, 101)
    loss_steps = ((f_steps - truth) ** 2).mean(axis=-1)
    loss_limit = ((f_limit - truth) ** 2).mean(axis=-1)
    sk = SkKernelRidge(alpha=ridge, kernel="rbf", gamma=gamma).fit(X, y)
    krr_loss = float(((sk.predict(G) - truth) ** 2).mean())

    figures = (
        _plot_fits(x, y, grid, truth, alphas, f_steps, f_limit, ctx),
        _plot_b(to_numpy(path.eigenvalues), to_numpy(path.B), to_numpy(path.B_limit), alphas, ctx),
        _plot_loss(alphas, loss_steps, loss_limit, ctx),
    )

    rows = markdown_table(
        ["step", *(f"alpha = {a:g}" for a in alphas)],
        [*([t + 1, *(f"{v:.5f}" for v in loss_steps[:, t])] for t in range(steps)), ["limit", *(f"{v:.5f}" for v in loss_limit)]],
    )
    source = f"`{ctx.data}`" if ctx.data else f"11 points of sin(2 pi x) + N(0, {NOISE_STD}^2) noise, seed {ctx.seed}"
    md = (
        f"Data: {source}. Kernel: RBF exp(-gamma |x-x'|^2), gamma = {gamma:g}; ridge lambda = {ridge:g}.\n\n"
        "Loss = mean squared error against sin(2 pi x) on 101 grid points of [0, 1].\n\n"
        + "\n".join(rows)
        + f"\n\nCheck: step 1 is plain KRR for every alpha; scikit-learn's KernelRidge gives {krr_loss:.5f}.\n"
        "Borup & Andersen's README table (their data, not this sample) reports 0.16477 at step 1 and 0.49505 in the "
        "alpha = 0 limit; the limit value is the zero function's loss on this grid, which any data reproduces.\n"
    )
    numbers = {
        "alphas": alphas,
        "steps": list(range(1, steps + 1)),
        "loss_steps": loss_steps,
        "loss_limit": loss_limit,
        "krr_sklearn_loss": krr_loss,
        "B_diagonal": to_numpy(path.B),
        "B_limit": to_numpy(path.B_limit),
        "eigenvalues": to_numpy(path.eigenvalues),
        "x": x,
        "y": y,
    }
    return RunOutput(
        numbers=numbers,
        markdown=md,
        figures=figures,
        parameters={
            "gamma": gamma,
            "ridge": ridge,
            "steps": steps,
            "alphas": alphas.tolist(),
            "kernel": "rbf exp(-gamma |x-x'|^2)",
            "n_points": int(x.size),
        },
    )


def _plot_fits(x, y, grid, truth, alphas, f_steps, f_limit, ctx) -> str:
    import matplotlib.pyplot as plt

    cols = len(alphas)
    fig, axes = plt.subplots(1, cols, figsize=(3.2 * cols, 3.0), sharey=True, squeeze=False, layout="constrained")
    shown = min(6, f_steps.shape[1])
    cmap = plt.get_cmap("viridis")
    for ax, a, fs, fl in zip(axes[0], alphas, f_steps, f_limit):
        ax.plot(grid, truth, "k--", lw=1, label="sin(2πx)")
        ax.scatter(x, y, s=14, c="k", zorder=3, label="data")
        for t in range(shown):
            ax.plot(grid, fs[t], color=cmap(t / max(shown - 1, 1)), lw=1.2, label=f"step {t + 1}")
        ax.plot(grid, fl, color="tab:red", lw=2, label="limit")
        ax.set_title(f"α = {a:g}")
        ax.set_xlabel("x")
    axes[0, 0].set_ylabel("f(x)")
    axes[0, -1].legend(fontsize=7, loc="upper right")
    fig.suptitle("Self-distilled KRR fits (first steps and the limit)")
    atomic_savefig(fig, ctx.path("fits.png"))
    return "fits.png"


def _plot_b(d, B, B_limit, alphas, ctx) -> str:
    import matplotlib.pyplot as plt

    cols = len(alphas)
    fig, axes = plt.subplots(1, cols, figsize=(3.2 * cols, 3.0), sharey=True, squeeze=False, layout="constrained")
    cmap = plt.get_cmap("viridis")
    idx = np.arange(1, d.size + 1)
    for ax, a, Ba, Bl in zip(axes[0], alphas, B, B_limit):
        for t in range(Ba.shape[0]):
            ax.semilogy(
                idx,
                np.maximum(Ba[t], 1e-16),
                "o-",
                ms=3,
                lw=1,
                color=cmap(t / max(Ba.shape[0] - 1, 1)),
                label=f"t = {t + 1}" if t in (0, Ba.shape[0] - 1) else None,
            )
        if a > 0:
            ax.semilogy(idx, Bl, "s--", ms=3, color="tab:red", label="B(∞)")
        ax.set_title(f"α = {a:g}")
        ax.set_xlabel("eigen-direction i (d descending)")
    axes[0, 0].set_ylabel("B(t)_ii")
    axes[0, -1].legend(fontsize=7)
    fig.suptitle("B-diagonals per distillation step: small eigen-directions shrink faster")
    atomic_savefig(fig, ctx.path("b_diagonals.png"))
    return "b_diagonals.png"


ZOOM_MARGIN = 1.15  # the zoom panel's half-height, in units of the typical alpha's largest distance from plain KRR


def loss_axes(alphas, loss_steps, loss_limit) -> dict:
    """How loss.png scales its two panels, as data (so it can be checked without pixels).

    ``overview``: every step and every limit on a log axis (the alpha = 0 limit, the zero
    function, sits far above the rest). ``zoom``: a linear window around plain KRR's loss (step 1,
    the same for every alpha): KRR +- ``ZOOM_MARGIN`` times the median over alphas of each
    alpha's largest distance from KRR (steps and limit), trimmed to the values it holds. So at
    least half of the alphas' curves lie wholly inside it and one alpha far from the rest cannot
    squash them; ``off_scale`` lists each curve or limit that leaves the window, with the value
    written on the panel.
    """
    alphas = np.asarray(alphas, dtype=float)
    steps = np.asarray(loss_steps, dtype=float)
    limit = np.asarray(loss_limit, dtype=float)
    values = np.concatenate([steps.ravel(), limit.ravel()])
    values = values[np.isfinite(values)]
    krr = float(steps[0, 0])
    reach = np.array([np.nanmax(np.abs(np.append(ls, ll) - krr)) for ls, ll in zip(steps, limit)])
    typical = float(np.median(reach))
    if not typical > 0:  # most alphas stay at KRR (alpha = 1): fall back on the farthest
        typical = float(reach.max())
    half = ZOOM_MARGIN * max(typical, 1e-3 * max(abs(krr), 1e-12))
    pad = 0.1 * half
    lo = max(krr - half, float(values.min()) - pad)
    hi = min(krr + half, float(values.max()) + pad)
    off = []
    for a, ls, ll in zip(alphas, steps, limit):
        out = np.flatnonzero((ls < lo) | (ls > hi))
        if out.size:
            tail = out[-1] == ls.size - 1 and np.all(np.diff(out) == 1)
            what = (
                (f"step {out[0] + 1}" if out.size == 1 else f"steps {out[0] + 1}-{out[-1] + 1}") if tail else f"{out.size} steps"
            )
            off.append({"alpha": float(a), "what": what, "value": float(ls[out[-1]]), "at": f"step {int(out[-1]) + 1}"})
        if not lo <= ll <= hi:
            off.append({"alpha": float(a), "what": "limit", "value": float(ll), "at": "limit"})
    positive = values[values > 0]
    overview_lim = (float(positive.min()) / 1.1, float(positive.max()) * 1.1) if positive.size else None
    return {
        "overview": {"yscale": "log" if positive.size == values.size else "linear", "ylim": overview_lim},
        "zoom": {"yscale": "linear", "ylim": (lo, hi), "krr": krr, "off_scale": off},
    }


def _plot_loss(alphas, loss_steps, loss_limit, ctx) -> str:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, MaxNLocator, ScalarFormatter

    spec = loss_axes(alphas, loss_steps, loss_limit)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.0), layout="constrained")
    t = np.arange(1, loss_steps.shape[1] + 1)
    for ax in (ax0, ax1):
        for i, (a, ls, ll) in enumerate(zip(alphas, loss_steps, loss_limit)):
            (line,) = ax.plot(t, ls, "o-", ms=3, color=f"C{i}", label=f"α = {a:g}")
            ax.axhline(ll, color=line.get_color(), ls=":", lw=1.2)
        ax.set_xlabel("distillation step t")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ov, zm = spec["overview"], spec["zoom"]
    ax0.set_yscale(ov["yscale"])
    if ov["ylim"] is not None:
        ax0.set_ylim(*ov["ylim"])
    if ov["yscale"] == "log":
        ax0.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax0.yaxis.set_major_formatter(ScalarFormatter())
        ax0.yaxis.set_minor_formatter(plt.NullFormatter())
    ax0.set_ylabel("MSE vs sin(2πx) (101-point grid)")
    ax0.set_title("All steps and limits (log scale; dotted: limit t → ∞)", fontsize=10)
    ax0.legend(fontsize=8)
    ax1.set_ylim(*zm["ylim"])
    ax1.ticklabel_format(axis="y", useOffset=False)
    ax1.axhline(zm["krr"], color="0.3", lw=0.8, ls="--")
    ax1.set_title("Zoom around plain KRR (step 1, grey dashed)", fontsize=10)
    ax1.set_ylabel("MSE (linear)")
    if zm["off_scale"]:
        note = "Off this scale:\n" + "\n".join(
            f"α = {o['alpha']:g}: {o['what']} (at {o['at']}: {o['value']:.3g})"
            if o["what"] != "limit"
            else f"α = {o['alpha']:g}: limit {o['value']:.3g}"
            for o in zm["off_scale"]
        )
        ax1.text(
            0.98,
            0.98,
            note,
            transform=ax1.transAxes,
            ha="right",
            va="top",
            fontsize=7,
            bbox={"boxstyle": "round", "fc": "white", "ec": "0.7", "alpha": 0.9},
        )
    fig.suptitle("Test loss per distillation step (dotted: the limit)")
    atomic_savefig(fig, ctx.path("loss.png"))
    return "loss.png"


BENCHMARK = Benchmark.from_docstring(__doc__, run, options=("gamma", "ridge", "alphas", "steps"))
