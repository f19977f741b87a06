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

from pathlib import Path

import numpy as np

from benchmarks._io import atomic_savefig
from benchmarks.datasets import write_digits_as_cifar
from benchmarks.registry import Benchmark, RunContext, RunOutput

MIN_N = 10  # smallest --n (the CLI refuses less)
MIN_N_WHY = "noisy-cifar's stratified subset needs one image per class, 10 classes"
METHODS = (("ce", {}), ("self-distill", {"alpha": 0.8}), ("interp", {}), ("generations", {"alpha": 0.6, "generations": 2}))


def _config(ctx: RunContext) -> dict:
    if ctx.quick:
        cfg = {"subset": 2000, "test_subset": 1000, "epochs": 8, "model": "fastnet", "model_options": {"widths": (16, 32, 32)},
               "batch_size": 64, "lr": 0.2}
    else:
        cfg = {"subset": None, "test_subset": None, "epochs": 40, "model": "fastnet", "model_options": {},
               "batch_size": 512, "lr": 0.2}
    cfg = ctx.sizes(cfg)
    if ctx.options.get("n") is not None:
        cfg["subset"] = int(ctx.options["n"])
    if ctx.options.get("epochs") is not None:
        cfg["epochs"] = int(ctx.options["epochs"])
    return cfg


def _one(ctx: RunContext, data: Path, cfg: dict, method: str, extra: dict) -> dict:
    from deep.config import TrainConfig
    from deep.train import train

    out = ctx.directory / "train" / method
    tc = TrainConfig(data=str(data), noise="symmetric:0.4", method=method, model=cfg["model"],
                     model_options=cfg["model_options"], epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                     lr=cfg["lr"], seed=ctx.seed, device=ctx.device, subset=cfg["subset"], test_subset=cfg["test_subset"],
                     out=str(out), resume=(out / "checkpoint.pt").exists(), progress=ctx.progress, **extra)
    res = train(tc)
    s = res.summary
    recs = res.records
    last = recs[-1]
    return {"method": method, "params": extra, "best_epoch": s.best_epoch, "test_acc_at_best_val": s.best_epoch_test_acc,
            "final_test_acc": s.final_test_acc, "best_test_acc": s.best_test_acc,
            "final_memorised": last.train_acc_flipped_given, "final_recovered": last.train_acc_flipped_true,
            "final_clean_acc": last.train_acc_clean, "data": s.data, "seconds": s.timings.get("train"),
            "curves": {k: [getattr(r, k) for r in recs] for k in ("global_epoch", "test_acc", "val_acc", "train_acc_clean",
                                                                    "train_acc_flipped_given", "train_acc_flipped_true",
                                                                    "loss")}}


def run(ctx: RunContext) -> RunOutput:
    cfg = _config(ctx)
    data = ctx.data if ctx.data is not None else write_digits_as_cifar(ctx.directory / "digits", seed=ctx.seed)
    source = str(ctx.data) if ctx.data is not None else "scikit-learn digits as 32x32 CIFAR batches"
    results = {m: ctx.part(f"method-{m}", lambda m=m, e=e: _one(ctx, Path(data), cfg, m, e)) for m, e in METHODS}
    fig = _plot(results, ctx)
    rows = ["| method | early-stop epoch (val) | test acc at it | best test acc | final test acc | flipped: memorised | "
            "flipped: recovered | clean train acc | train time (s) |", "|---|---|---|---|---|---|---|---|---|"]
    f = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
    for m, r in results.items():
        rows.append(f"| {m} {r['params'] or ''} | {r['best_epoch']} | {f(r['test_acc_at_best_val'])} | {f(r['best_test_acc'])} | "
                    f"{f(r['final_test_acc'])} | {f(r['final_memorised'])} | {f(r['final_recovered'])} | "
                    f"{f(r['final_clean_acc'])} | {r['seconds']:.0f} |")
    d = next(iter(results.values()))["data"]
    md = (f"Data: {source}; {d.get('n_train')} training images ({d.get('n_flipped')} labels flipped, symmetric 40%), "
          f"{d.get('n_val')} noisy validation images, {d.get('n_test')} test images. Network: {cfg['model']} "
          f"{cfg['model_options'] or ''}, {cfg['epochs']} epochs per generation, batch {cfg['batch_size']}, lr {cfg['lr']}, "
          f"seed {ctx.seed}, device {ctx.device}.\n\n" + "\n".join(rows) + "\n")
    return RunOutput(numbers={"config": cfg, "source": source, "methods": results}, markdown=md, figures=(fig,),
                     parameters={**cfg, "noise": "symmetric:0.4", "methods": [dict(method=m, **e) for m, e in METHODS]})


def _plot(results: dict, ctx: RunContext) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), layout="constrained")
    for (m, r), ls in zip(results.items(), ("-", "--", "-.", ":")):
        c = r["curves"]
        e = np.asarray(c["global_epoch"], dtype=float)
        axes[0].plot(e, c["test_acc"], ls, marker="o", ms=3, label=m)
        axes[1].plot(e, c["train_acc_flipped_given"], ls, marker="o", ms=3, label=m)
        axes[2].plot(e, c["train_acc_flipped_true"], ls, marker="o", ms=3, label=m)
    for ax, title in zip(axes, ("clean test accuracy", "flipped subset vs given label (memorisation)",
                                "flipped subset vs true label (recovery)")):
        ax.set_title(title)
        ax.set_xlabel("epoch (over all generations)")
        ax.set_ylabel("accuracy")
        ax.legend(fontsize=8)
    atomic_savefig(fig, ctx.path("methods.png"))
    return "methods.png"


BENCHMARK = Benchmark(name="noisy-cifar", summary="deep/ methods side by side on noisy labels: early-stopped, best and final test accuracy, memorisation, recovery",
                      func=run, options=("n", "epochs"))
