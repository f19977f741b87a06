"""noisy-cifar: the deep/ training methods side by side on noisy labels.

``ce`` (cross-entropy), early stopping (the epoch with the best noisy-validation accuracy),
``self-distill`` (Dong et al. 2019), ``interp`` (lizhemin15 variant) and ``generations``
(Borup & Andersen 2021), each trained by :func:`deep.train.train` with the same network,
data, noise and seed. Reports best-epoch (early-stopped), best and final test accuracy,
memorisation (flipped subset vs its given label) and recovery (vs its true label).

Quick mode: a CPU-sized subset with a narrow fastnet. Full mode: all 50k images on a GPU.
Without ``--data`` the run uses scikit-learn's digits written as CIFAR batches (32x32,
upsampled), so the whole pipeline runs on real data without a download.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.datasets import write_digits_as_cifar
from benchmarks.registry import Benchmark, RunContext, RunOutput
from benchmarks.report import markdown_table
from benchmarks.run_files import atomic_savefig
from benchmarks.runs.confirm_cnn import train_or_resume

MIN_N = 10  # smallest --n (the CLI refuses less)
MIN_N_WHY = "noisy-cifar's stratified subset needs one image per class, 10 classes"
METHODS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("ce", {}),
    ("self-distill", {"target_momentum": 0.8}),
    ("interp", {}),
    ("generations", {"alpha": 0.6, "generations": 2}),
)


def _config(ctx: RunContext) -> dict:
    if ctx.quick:
        cfg = {
            "subset": 2000,
            "test_subset": 1000,
            "epochs": 8,
            "model": "fastnet",
            "model_options": {"widths": (16, 32, 32)},
            "batch_size": 64,
            "lr": 0.2,
        }
    else:
        cfg = {
            "subset": None,
            "test_subset": None,
            "epochs": 40,
            "model": "fastnet",
            "model_options": {},
            "batch_size": 512,
            "lr": 0.2,
        }
    cfg = ctx.sizes(cfg)
    if ctx.options.get("n") is not None:
        cfg["subset"] = int(ctx.options["n"])
    if ctx.options.get("epochs") is not None:
        cfg["epochs"] = int(ctx.options["epochs"])
    return cfg


def _one(ctx: RunContext, data: Path, cfg: dict, method: str, extra: dict) -> dict:
    res = train_or_resume(
        ctx.directory / "train" / method,
        cfg,
        data=str(data),
        noise="symmetric:0.4",
        method=method,
        seed=ctx.seed,
        device=ctx.device,
        progress=ctx.progress,
        **extra,
    )
    return {"method": method, "params": extra, **res.headline()}


def run(ctx: RunContext) -> RunOutput:
    cfg = _config(ctx)
    data = ctx.data if ctx.data is not None else write_digits_as_cifar(ctx.directory / "digits", seed=ctx.seed)
    source = str(ctx.data) if ctx.data is not None else "scikit-learn digits as 32x32 CIFAR batches"
    results = {m: ctx.part(f"method-{m}", partial(_one, ctx, Path(data), cfg, m, e)) for m, e in METHODS}
    fig = _plot(results, ctx)
    f = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
    rows = markdown_table(
        [
            "method",
            "early-stop epoch (val)",
            "test acc at it",
            "best test acc",
            "final test acc",
            "flipped: memorised",
            "flipped: recovered",
            "clean train acc",
            "train time (s)",
        ],
        [
            [
                f"{m} {r['params'] or ''}",
                r["best_epoch"],
                f(r["test_acc_at_best_val"]),
                f(r["best_test_acc"]),
                f(r["final_test_acc"]),
                f(r["final_memorised"]),
                f(r["final_recovered"]),
                f(r["final_clean_acc"]),
                f"{r['seconds']:.0f}",
            ]
            for m, r in results.items()
        ],
    )
    d = next(iter(results.values()))["data"]
    md = (
        f"Data: {source}; {d.get('n_train')} training images ({d.get('n_flipped')} labels flipped, symmetric 40%), "
        f"{d.get('n_val')} noisy validation images, {d.get('n_test')} test images. Network: {cfg['model']} "
        f"{cfg['model_options'] or ''}, {cfg['epochs']} epochs per generation, batch {cfg['batch_size']}, lr {cfg['lr']}, "
        f"seed {ctx.seed}, device {ctx.device}.\n\n" + "\n".join(rows) + "\n"
    )
    return RunOutput(
        numbers={"config": cfg, "source": source, "methods": results},
        markdown=md,
        figures=(fig,),
        parameters={**cfg, "noise": "symmetric:0.4", "methods": [dict(method=m, **e) for m, e in METHODS]},
    )


PANELS = (
    ("test_acc", "clean test accuracy"),
    ("train_acc_flipped_given", "flipped subset vs given label (memorisation)"),
    ("train_acc_flipped_true", "flipped subset vs true label (recovery)"),
)
# One look per method, fixed by name so a method keeps its look across runs; unknown methods cycle through the rest.
STYLES = {
    "ce": {"ls": "-", "marker": "o", "color": "tab:blue"},
    "self-distill": {"ls": "--", "marker": "s", "color": "tab:orange"},
    "interp": {"ls": "-.", "marker": "^", "color": "tab:green"},
    "generations": {"ls": ":", "marker": "D", "color": "tab:red"},
}
_SPARE = (
    {"ls": (0, (5, 1, 1, 1)), "marker": "v", "color": "tab:purple"},
    {"ls": (0, (1, 3)), "marker": "P", "color": "tab:brown"},
)


def _coincides(a: dict, b: dict) -> int:
    """Epochs over which curve set ``b`` starts exactly as ``a`` does in every panel (0 if not all of ``a``)."""
    n = len(a["global_epoch"])
    if n == 0 or len(b["global_epoch"]) < n:
        return 0
    for key in ("global_epoch",) + tuple(k for k, _ in PANELS):
        if not np.array_equal(np.asarray(a[key][:n], dtype=float), np.asarray(b[key][:n], dtype=float)):
            return 0
    return n


def plot_spec(results: dict) -> dict:
    """What :func:`_plot` draws, as data: one entry per method (label, line style, marker, z-order,
    width) and the notes written under the panels.

    A method whose whole curve reappears at the start of another's (``ce`` and the first
    generation of ``generations``: same network, data, seed and loss) is drawn first, wide and
    with large open markers, so it shows as a band around the other; both legend entries and a
    note under the figure say the curves coincide.
    """
    names = list(results)
    under: dict[str, tuple[str, int]] = {}  # method -> (the method drawn over it, epochs in common)
    for a in names:
        for b in names:
            if a != b and a not in under and b not in under:
                k = _coincides(results[a]["curves"], results[b]["curves"])
                if k:
                    under[a] = (b, k)
    over = {b: (a, k) for a, (b, k) in under.items()}
    lines, notes = [], []
    for i, m in enumerate(names):
        style: dict[str, Any] = dict(STYLES.get(m) or _SPARE[i % len(_SPARE)])
        label = m
        if m in under:
            b, k = under[m]
            label = f"{m} (drawn wide: hidden under {b} for epochs 1-{k})"
            style.update(lw=5.0, alpha=0.35, ms=9, mfc="none", zorder=1)
        else:
            style.update(lw=1.4, alpha=1.0, ms=3.5, mfc=style["color"], zorder=3)
        if m in over:
            a, k = over[m]
            first = "generation 1 is plain CE" if m == "generations" and a == "ce" else f"its first {k} epochs are {a}"
            why = " (same network, data, seed and loss)" if m == "generations" and a == "ce" else ""
            label = f"{m} ({first}: identical to {a} for epochs 1-{k})"
            notes.append(
                f"{m}: {first}{why}, so its curve for epochs 1-{k} is exactly {a}'s; {a} is drawn as the wide pale band under it."
            )
        lines.append({"method": m, "label": label, **style})
    starts = []
    for m in names:
        gens = int((results[m].get("params") or {}).get("generations", 1) or 1)
        n = len(results[m]["curves"]["global_epoch"])
        if gens > 1 and n % gens == 0:
            per = n // gens
            starts += [(m, g + 1, g * per + 0.5) for g in range(1, gens)]
    if starts:
        notes.append(
            "Grey dotted verticals: a new generation starts (a freshly initialised network trained on the given "
            "labels mixed with the previous generation's predictions)."
        )
    return {"lines": lines, "notes": notes, "generation_starts": starts}


def _plot(results: dict, ctx: RunContext) -> str:
    import matplotlib.pyplot as plt

    spec = plot_spec(results)
    fig, axes = plt.subplots(1, len(PANELS), figsize=(14, 4.4), layout="constrained")
    for ax, (key, title) in zip(axes, PANELS):
        for line in spec["lines"]:
            c = results[line["method"]]["curves"]
            ax.plot(
                np.asarray(c["global_epoch"], dtype=float),
                c[key],
                ls=line["ls"],
                marker=line["marker"],
                color=line["color"],
                lw=line["lw"],
                alpha=line["alpha"],
                ms=line["ms"],
                mfc=line["mfc"],
                zorder=line["zorder"],
                label=line["label"],
            )
        for _, _, x in spec["generation_starts"]:
            ax.axvline(x, color="0.6", ls=":", lw=1, zorder=0)
        ax.set_title(title)
        ax.set_xlabel("epoch (over all generations)")
        ax.set_ylabel("accuracy")
    handles, labels = axes[0].get_legend_handles_labels()
    legend = fig.legend(
        handles, labels, loc="outside lower center", ncol=2, fontsize=8, title="\n".join(spec["notes"]) or None, title_fontsize=8
    )
    legend.get_title().set_multialignment("left")
    atomic_savefig(fig, ctx.path("methods.png"))
    return "methods.png"


BENCHMARK = Benchmark.from_docstring(__doc__, run, options=("n", "epochs"))
