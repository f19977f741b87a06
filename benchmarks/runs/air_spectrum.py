"""air-spectrum: AIR label spectra and predicted learning curves (Dong, Hou, Lu & Zhang 2019).

For the FC-ReLU NTK and an RBF kernel on noisy labels: label energy (v_i^T y)^2 per
eigen-direction for clean labels, noise and noisy labels; predicted curves of
linearised gradient descent (early stopping) and of chained self-distillation; the
best early-stopping step chosen on a noisy validation split and its test accuracy.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from benchmarks.datasets import load_noisy
from benchmarks.progress import PartLog
from benchmarks.registry import Benchmark, RunContext, RunOutput
from benchmarks.report import markdown_table
from benchmarks.run_files import atomic_savefig
from benchmarks.runs.confirm_ntk import curve_arrays

MOMENTA = (0.9, 0.99, 0.999, 0.9999)
SHARE_KS = (10, 50, 100)
MIN_N = 10  # smallest --n (the CLI refuses less)
MIN_N_WHY = "air-spectrum's stratified split needs one training point per class, 10 classes"


def kernel_specs(d: int) -> dict[str, tuple[str, dict]]:
    """The two kernels of the run: name -> (kernels function name, parameters)."""
    return {"ntk_relu(depth=2)": ("ntk_relu", {"depth": 2, "bias": 0.0}), "rbf(gamma=1/d)": ("rbf", {"gamma": 1.0 / d})}


def _steps(kname: str) -> tuple[str, ...]:
    """The progress steps of one kernel's part (see :func:`_plan`)."""
    return (f"{kname}/gram", f"{kname}/spectrum", *(f"{kname}/m={m:g}" for m in MOMENTA), f"{kname}/gd-vs-chained")


def _plan(kernels: dict, n: int, n_eval: int) -> dict:
    """Rough relative cost of each step: the eigendecomposition ~ n^3, each predicted curve ~ 60 records of (n + n_eval) n c."""
    plan = {}
    for kname, _params in kernels.values():
        curve = 60 * (n + n_eval) * n * 10 * 1e-9 + 0.2
        plan.update(
            dict(
                zip(_steps(kname), (2e-9 * n * (n + n_eval) * 64 + 0.1, 3e-9 * n**3 + 0.1, *(curve for _ in MOMENTA), 2 * curve))
            )
        )
    return plan


def _analyse(
    K_train, K_cross, data, *, n_val: int, progress: bool, asarray=lambda a: a, log: PartLog | None = None, kname: str = "kernel"
) -> dict:
    from kernels import spectrum
    from kernels.backend import to_numpy
    from theory.air import distillation_vs_early_stopping, label_spectrum, predicted_curves
    from theory.noise import one_hot

    step = log.step if log is not None else (lambda name, fn, what=None: fn())
    names = _steps(kname)
    s = step(names[1], lambda: spectrum(K_train, psd="clip"), what=f"eigendecomposition of the {K_train.shape[0]}-point kernel")
    C = data.n_classes
    y_clean, y_noisy = asarray(one_hot(data.labels_true, C)), asarray(one_hot(data.labels_given, C))
    ls = label_spectrum(s, y_clean, y_noisy)
    d = to_numpy(s.values)
    lr = 1.0 / d[0]
    d_small = d[d > s.zero_tol][-1]
    steps = int(min(1e9, 20.0 / (lr * d_small)))
    record = np.unique(np.round(np.logspace(0, np.log10(steps), 60)).astype(np.int64))
    val_index = np.arange(n_val)
    test_labels = np.concatenate([data.val_labels_given, data.test_labels])
    common = dict(
        labels_true=data.labels_true,
        labels_given=data.labels_given,
        lr=lr,
        steps=steps,
        record=record,
        K_cross=K_cross,
        test_labels=test_labels,
        val_index=val_index,
        val_labels=data.val_labels_given,
    )
    sweep: dict[float, float] = {}
    for m, name in zip(MOMENTA, names[2:]):
        c = step(name, partial(predicted_curves, s, y_noisy, targets="chained", target_momentum=m, **common))
        sweep[m] = float(c.val_acc[c.final_index])
    momentum = max(sweep, key=sweep.__getitem__)
    comp = step(
        names[-1],
        lambda: distillation_vs_early_stopping(s, y_noisy, target_momentum=momentum, **common),
        what=f"GD and chained self-distillation (target momentum m = {momentum:g}) to step {steps}",
    )
    shares = {w: ls.share_at([k for k in SHARE_KS if k <= s.k], w).tolist() for w in ("clean", "noise", "noisy")}
    keys = ("steps", "test_acc", "val_acc", "acc_clean", "memorised", "recovered", "train_mse")
    curves = {name: curve_arrays(c, keys) for name, c in (("gd", comp.gd), ("chained", comp.chained))}
    return {
        "eigenvalues": d,
        "n_zero": s.n_zero,
        "lr": lr,
        "steps": steps,
        "target_momentum": momentum,
        "momentum_sweep_val_acc": {str(k): v for k, v in sweep.items()},
        "share_ks": list(SHARE_KS),
        "shares": shares,
        "energy_clean": to_numpy(ls.energy_clean),
        "energy_noise": to_numpy(ls.energy_noise),
        "summary": comp.summary,
        "curves": curves,
    }


def run(ctx: RunContext) -> RunOutput:
    from kernels.functions import gram

    n_default = (1000 if ctx.quick else 1400) if ctx.data is None else (1000 if ctx.quick else 5000)
    n = int(ctx.options["n"]) if ctx.options.get("n") is not None else n_default
    sizes = ctx.sizes({"n_val": 200 if ctx.data is None else max(200, n // 10), "n_test": 1000 if ctx.quick else 2000})
    n_val = sizes["n_val"]
    data = load_noisy(
        ctx.data, n_train=n, n_val=n_val, n_test=sizes["n_test"], noise="symmetric:0.4", seed=ctx.seed, progress=ctx.progress
    )
    X_eval = np.concatenate([data.X_val, data.X_test])
    specs = kernel_specs(data.X_train.shape[1])
    log = PartLog("air-spectrum", _plan(specs, n, X_eval.shape[0]), ctx.progress)
    results = {}
    for label, (kname, params) in specs.items():

        def compute(kname=kname, params=params):
            def grams():
                Xtr = ctx.asarray(data.X_train)  # the kernel side runs on --backend/--device
                return gram(Xtr, kernel=kname, **params), gram(ctx.asarray(X_eval), Xtr, kernel=kname, **params)

            K, Kc = log.step(_steps(kname)[0], grams, what=f"{label} on {n} + {X_eval.shape[0]} points")
            return _analyse(K, Kc, data, n_val=n_val, progress=ctx.progress, asarray=ctx.asarray, log=log, kname=kname)

        results[label] = log.part(ctx, f"kernel-{kname}", compute, inner=_steps(kname))
    figures = (_plot_spectra(results, ctx), _plot_curves(results, ctx))
    fmt = lambda v: "/".join(f"{x:.3f}" for x in v)  # noqa: E731
    rows = markdown_table(
        [
            "kernel",
            "clean share top-10/50/100",
            "noise share top-10/50/100",
            "GD best step (val)",
            "GD test acc at it",
            "GD final test acc",
            "chained m",
            "chained final test acc",
        ],
        [
            [
                label,
                fmt(r["shares"]["clean"]),
                fmt(r["shares"]["noise"]),
                f"{r['summary']['gd_val_step']:.0f}",
                f"{r['summary']['gd_test_acc_at_val_step']:.3f}",
                f"{r['summary']['gd_final_test_acc']:.3f}",
                f"{r['target_momentum']:g}",
                f"{r['summary']['chained_final_test_acc']:.3f}",
            ]
            for label, r in results.items()
        ],
    )
    md = (
        f"Data: {data.name}, n = {n} training points, 40% symmetric label noise "
        f"({int(data.flipped.sum())} flipped); {n_val} noisy validation points choose the stopping step and the target momentum m; "
        f"{data.X_test.shape[0]} clean test points. Linearised GD with lr = 1/d_max from u(0) = 0 on one-hot labels.\n\n"
        + "\n".join(rows)
        + "\n\n"
        + "\n".join(findings(results))
        + "\n"
    )
    return RunOutput(
        numbers={"data": data.name, "n": n, "n_val": n_val, "kernels": results},
        markdown=md,
        figures=figures,
        parameters={"noise": "symmetric:0.4", "kernels": {k: v for k, v in kernel_specs(data.X_train.shape[1]).items()}},
    )


def findings(results: dict) -> list[str]:
    """One sentence per kernel, each computed from that kernel's numbers (AIR and early stopping)."""
    out = []
    for label, r in results.items():
        sm, clean, noise = r["summary"], r["shares"]["clean"][0], r["shares"]["noise"][0]
        ratio = clean / noise if noise > 0 else float("inf")
        top = (
            f"the top-{SHARE_KS[0]} eigen-directions hold {clean:.3f} of the clean labels' energy and {noise:.3f} of the noise's"
        )
        gain = sm["gd_test_acc_at_val_step"] - sm["gd_final_test_acc"]
        stop = (
            f"GD stopped at the noisy-validation step ({sm['gd_val_step']:.0f}) reaches test {sm['gd_test_acc_at_val_step']:.3f}, "
            f"{'above' if gain > 0 else 'not above'} its final {sm['gd_final_test_acc']:.3f}"
        )
        ch = sm["chained_final_test_acc"] - sm["gd_test_acc_at_val_step"]
        chained = (
            f"chained self-distillation (m = {r['target_momentum']:g}) ends at {sm['chained_final_test_acc']:.3f}, "
            f"{abs(ch):.3f} {'above' if ch >= 0 else 'below'} early-stopped GD without a stopping rule"
        )
        out.append(f"- {label}: {top} ({ratio:.1f}x); {stop}; {chained}.")
    return out


def _plot_spectra(results: dict, ctx: RunContext) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 2, figsize=(10, 3.4 * len(results)), squeeze=False, layout="constrained")
    for row, (label, r) in zip(axes, results.items()):
        d = np.asarray(r["eigenvalues"], dtype=float)
        k = np.arange(1, d.size + 1)
        row[0].loglog(k, np.maximum(d, 1e-300), lw=1.2)
        row[0].set_title(f"{label}: eigenvalues")
        row[0].set_xlabel("index i")
        row[0].set_ylabel("d_i")
        for key, style in (("energy_clean", "tab:blue"), ("energy_noise", "tab:red")):
            e = np.asarray(r[key], dtype=float)
            row[1].semilogx(k, np.cumsum(e) / e.sum(), color=style, label=key.replace("energy_", ""))
        row[1].set_title(f"{label}: cumulative label energy share")
        row[1].set_xlabel("top-k eigen-directions")
        row[1].set_ylabel("share of ||y||²")
        row[1].legend()
    fig.suptitle("AIR: clean labels live in the top NTK directions, noise in the tail")
    atomic_savefig(fig, ctx.path("label_spectra.png"))
    return "label_spectra.png"


def _plot_curves(results: dict, ctx: RunContext) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 2, figsize=(10, 3.4 * len(results)), squeeze=False, layout="constrained")
    for row, (label, r) in zip(axes, results.items()):
        for name, ls in (("gd", "-"), ("chained", "--")):
            c = r["curves"][name]
            t = np.asarray(c["steps"], dtype=float)
            row[0].semilogx(t, c["test_acc"], ls, color="k", label=f"{name}: test")
            row[0].semilogx(t, c["val_acc"], ls, color="tab:gray", label=f"{name}: noisy val")
            row[1].semilogx(t, c["memorised"], ls, color="tab:red", label=f"{name}: flipped vs given (memorised)")
            row[1].semilogx(t, c["recovered"], ls, color="tab:green", label=f"{name}: flipped vs true (recovered)")
            row[1].semilogx(t, c["acc_clean"], ls, color="tab:blue", label=f"{name}: clean subset")
        row[0].axvline(r["summary"]["gd_val_step"], color="tab:orange", lw=1, label="GD early stop (val)")
        row[0].set_title(f"{label}: accuracy (chained, target momentum m = {r['target_momentum']:g})")
        row[1].set_title(f"{label}: training subsets")
        for ax in row:
            ax.set_xlabel("GD step (lr = 1/d_max)")
            ax.set_ylabel("accuracy")
            ax.legend(fontsize=7)
    fig.suptitle("Predicted learning curves: gradient descent vs chained self-distillation")
    atomic_savefig(fig, ctx.path("curves.png"))
    return "curves.png"


BENCHMARK = Benchmark.from_docstring(__doc__, run, options=("n",))
