"""The report of the ``speed`` run: its Markdown (one function per section), the bars of
speedups.png as data, the figure, and the sentences computed from the run's own numbers.

Measuring lives in :mod:`benchmarks.runs.speed`; everything here reads the rows' results
(``res``: one dict per row, as ``speed.run_row`` returns them) and writes nothing but the figure.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from benchmarks.registry import RunContext
from benchmarks.report import markdown_table
from benchmarks.run_files import atomic_savefig

__all__ = ["TARGETS", "MIN_TIMED_S", "markdown", "speedup_bars", "speedups_figure", "trace_jacobian_bytes", "trace_jacobian_text"]

TARGETS = {"distill": 50.0, "ridge_path": 10.0, "gram": 1.3, "ntk": 10.0}
# A bar of speedups.png is a ratio of two measured times. When either is shorter than this, the bar
# reads "too small to time" instead of a ratio: 1000 ticks of perf_counter (quantisation <= 0.1%) and
# at least 1 ms, about one scheduler time slice, so one preemption on a shared machine can change
# a shorter call several-fold.
MIN_TIMED_S = max(1e-3, 1000 * time.get_clock_info("perf_counter").resolution)


def _f(x: Any, p: str = ".3g") -> str:
    return "-" if x is None else format(x, p)


def _load_change(row: dict) -> str:
    """The 1-minute load average before and after a row: '1.2 -> 3.4'."""
    return f"{row['load_before'][0]:.1f} -> {row['load_after'][0]:.1f}"


def _bytes(*sizes: float) -> str:
    """A size or a range in decimal units of the largest, three significant figures: '32.4 GB', '31.6-31.9 MB'."""
    unit, scale = next(((u, v) for u, v in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)) if max(sizes) >= v), ("B", 1.0))
    return "-".join(dict.fromkeys(f"{b / scale:#.3g}" for b in sizes)) + f" {unit}"


def trace_jacobian_bytes(n: int, classes: int, parameters: int) -> int:
    """Peak bytes of the loop's dense float32 Jacobian in mode 'trace': 2 n C P values (the
    per-example rows, then ``torch.stack``'s copy of them), 4 bytes each."""
    return 2 * int(n) * int(classes) * int(parameters) * 4


def trace_jacobian_text(ntk_rows: list[dict], quick: bool) -> str:
    """The report's sentence on why the MLP rows run in 'sum' mode only, computed from the
    run's own n, C and P (``trace_jacobian_bytes``)."""
    mlps = [r for r in ntk_rows if "MLP" in r["network"]]
    if not mlps:
        return ""
    n = sorted({int(r["n"]) for r in mlps})
    C = sorted({int(r.get("classes", 10)) for r in mlps})
    P = sorted({int(r["parameters"]) for r in mlps})
    sizes = sorted({trace_jacobian_bytes(a, c, p) for a in n for c in C for p in P})
    span = lambda v, f=str: f(v[0]) if len(v) == 1 else f"{f(v[0])}-{f(v[-1])}"  # noqa: E731
    text = (
        f"The MLPs run in 'sum' mode only: in mode 'trace' the loop's dense Jacobian holds 2 n C P float32 values "
        f"(its per-example rows and their stacked copy), {_bytes(sizes[0], sizes[-1])} at this run's n = {span(n)}, "
        f"C = {span(C)}, P = {span(P, lambda p: f'{p:,}')}."
    )
    if quick:
        text += " (Quick sizes: that fits here, but the quick run keeps the full run's modes.)"
    return text


# ============================================================================ markdown, one section each


def markdown(res: dict, mach: dict, quick: bool) -> str:
    """The report: the machine, a note on untimed bars, then one section per row."""
    out = _machine_section(res, mach, quick) + _untimed_note(res)
    out += _distill_section(res["distill"]) + _ridge_path_section(res["ridge_path"]) + _gram_section(res["gram"])
    out += _eigh_section(res["eigh"]) + _ntk_section(res["ntk"], quick) + _train_section(res["train"])
    out += _cnn_section(res["cnn"]) if "cnn" in res else []
    return "\n".join(out) + "\n"


def _machine_section(res: dict, mach: dict, quick: bool) -> list[str]:
    g = res["gemm"]["rows"]
    return [
        f"Machine: {mach['cpu']}, {mach['cores']} cores; BLAS {', '.join(mach.get('blas', []))}; torch threads "
        f"{mach.get('torch_threads')}; GPU: {mach.get('gpu') or 'none'}.",
        f"GEMM rate (square {g['float64']['n']}): float64 {g['float64']['gflops']:.1f} GFLOP/s, float32 "
        f"{g['float32']['gflops']:.1f} GFLOP/s. Load averages (1 min) before/after each row are listed; other "
        "processes sharing the cores make every time pessimistic."
        + (" **Quick mode: tiny sizes, ratios not meaningful.**" if quick else ""),
        "",
    ]


def _untimed_note(res: dict) -> list[str]:
    untimed = [b["label"] for b in speedup_bars(res) if not b["timed"]]
    if not untimed:
        return []
    return [
        f'speedups.png: {len(untimed)} ratio(s) read "too small to time" (the baseline or airkit took under '
        f"{MIN_TIMED_S * 1e3:.3g} ms): {', '.join(untimed)}. The tables below still list every time.",
        "",
    ]


def _distill_section(d: dict) -> list[str]:
    header = [
        "n",
        "d",
        "m",
        "route",
        "toolkit s (gram + study)",
        "eigen route s",
        "sklearn s",
        "ratio",
        "vs precomputed-Gram sklearn",
        "target",
        "toolkit / sklearn peak MiB",
        "max abs diff",
    ]
    rows = [
        [
            r["n"],
            r["d"],
            r["m"],
            r["route"],
            f"{r['toolkit_s']:.3g} ({r['toolkit_gram_s']:.3g} + {r['toolkit_study_s']:.3g})",
            f"{r['toolkit_eigen_route_s']:.3g}",
            f"{r['sklearn_s']:.3g}",
            f"**{r['ratio']:.1f}x**",
            f"{r['ratio_vs_precomputed']:.1f}x",
            ">= 50x at n=4000",
            f"{r['toolkit_peak_mb']:.0f} / {r['sklearn_peak_mb']:.0f}",
            f"{r['max_abs_diff_sklearn']:.1e}",
        ]
        for r in d["rows"]
    ]
    return [
        "## 1. Self-distillation study (10 alphas x 10 steps, test predictions)",
        "",
        "Toolkit: rbf Gram + cross-Gram + `distillation_study` (route chosen automatically). sklearn: "
        "`KernelRidge(kernel='rbf')` refit at every step (fit, predict train, predict test), timed on "
        f"{d['rows'][0]['sklearn_alphas_measured']} of the alphas and scaled to all (every alpha's chain does the same work).",
        "",
        *markdown_table(header, rows),
        f"\nRoute reason (last case): {d['rows'][-1]['route_reason']}. Process peak RSS: {d['process_peak_mb']:.0f} MiB. "
        f"Load {_load_change(d)}.",
        "",
    ]


def _ridge_path_section(rp: dict) -> list[str]:
    header = [
        "n",
        "d",
        "toolkit s (solver='mixed': used)",
        "solver='eigen' s",
        "solver='cholesky' s",
        "sklearn 20 fits s",
        "ratio (mixed)",
        "ratio (eigen)",
        "target",
        "max abs diff mixed / eigen",
    ]
    rows = [
        [
            r["n"],
            r["d"],
            f"{r['toolkit_s']:.3g} ({r['solver']})",
            f"{r['toolkit_eigen_solver_s']:.3g}",
            f"{r['toolkit_cholesky_solver_s']:.3g}",
            f"{r['sklearn_s']:.3g}",
            f"**{r['ratio']:.1f}x**",
            f"{r['ratio_eigen_solver']:.1f}x",
            ">= 10x",
            f"{r['max_abs_diff_sklearn']:.1e} / {r['max_abs_diff_eigen_solver']:.1e}",
        ]
        for r in rp["rows"]
    ]
    parts_header = [
        "n",
        "d",
        "Gram s",
        "cross-Gram s",
        "float32 evd s",
        "one Cholesky s",
        "evd32 / Cholesky",
        "sklearn / (Grams + evd32)",
    ]
    parts = [
        [
            r["n"],
            r["d"],
            f"{r['gram_s']:.3g}",
            f"{r['cross_gram_s']:.3g}",
            f"{r['evd_float32_s']:.3g}",
            f"{r['cholesky_s']:.3g}",
            f"{r['evd_float32_s'] / r['cholesky_s']:.1f}",
            f"{r['sklearn_s'] / (r['gram_s'] + r['cross_gram_s'] + r['evd_float32_s']):.1f}x",
        ]
        for r in rp["rows"]
    ]
    return [
        "## 2. Ridge path (20 ridges, test predictions)",
        "",
        *markdown_table(header, rows),
        "",
        "solver='mixed': one float32 eigendecomposition, every ridge refined to float64 by preconditioned CG "
        "(kernels.refine); solver='eigen': one float64 eigendecomposition; sklearn: Gram + Cholesky + cross-Gram per ridge.",
        "",
        "What the path is made of, timed alone, and the ratio left if the toolkit paid only its Grams and one float32 "
        "eigendecomposition:",
        "",
        *markdown_table(parts_header, parts),
        f"\nLoad {_load_change(rp)}.",
        "",
    ]


def _gram_section(gr: dict) -> list[str]:
    header = [
        "kernel",
        "dtype",
        "n",
        "d",
        "bare GEMM s (GFLOP/s)",
        "toolkit s (GFLOP/s)",
        "toolkit / GEMM",
        "sklearn s",
        "numpy s",
        "peak MiB toolkit / sklearn / numpy",
    ]
    rows = [
        [
            r["kernel"],
            r["dtype"],
            r["n"],
            r["d"],
            f"{r['gemm_s']:.3g} ({r['gemm_gflops']:.0f})",
            f"{r['toolkit_s']:.3g} ({r['toolkit_gflops']:.0f})",
            f"**{r['toolkit_over_gemm']:.2f}** (target <= 1.3)",
            _f(r.get("sklearn_s")),
            f"{r['numpy_s']:.3g}",
            f"{r['toolkit_peak_mb']:.0f} / {_f(r.get('sklearn_peak_mb'), '.0f')} / {r['numpy_peak_mb']:.0f}",
        ]
        for r in gr["rows"]
    ]
    return [
        "## 3. Gram matrices (n x n from n x d)",
        "",
        *markdown_table(header, rows),
        "\nGFLOP/s counts the 2 n^2 d flops of the full product; the toolkit computes only the upper block "
        "triangle of a symmetric Gram. sklearn's rbf_kernel returns float32 for float32 input but computes distances in float64 chunks. "
        f"Process peak RSS {gr['process_peak_mb']:.0f} MiB; load {_load_change(gr)}.",
        "",
    ]


def _eigh_section(e: dict) -> list[str]:
    header = [
        "n",
        "toolkit s",
        "numpy.linalg.eigh s",
        "ratio",
        "Cholesky s",
        "eigh / Cholesky",
        "peak MiB toolkit / numpy",
        "max abs diff of eigenvalues",
    ]
    rows = [
        [
            r["n"],
            f"{r['toolkit_s']:.3g}",
            f"{r['numpy_s']:.3g}",
            f"**{r['ratio']:.2f}x**",
            f"{r['cholesky_s']:.3g}",
            f"{r['eigh_over_cholesky']:.1f}",
            f"{r['toolkit_peak_mb']:.0f} / {r['numpy_peak_mb']:.0f}",
            f"{r['max_abs_diff_eigenvalues']:.1e}",
        ]
        for r in e["rows"]
    ]
    t = e["topk"]
    return [
        "## 4. Eigendecomposition (rbf Gram)",
        "",
        *markdown_table(header, rows),
        f"\nTop-{t['k']} of n = {t['n']} by `spectrum(K, k={t['k']})` ({t['method']}): {t['topk_s']:.3g} s vs full {t['full_s']:.3g} s "
        f"(**{t['ratio']:.1f}x**); relative error of value {t['k']}: {t['rel_error_value_k']:.1e} (residual {t['max_residual']:.1e}). "
        f"Randomized (QR iterations): {t['randomized_s']:.3g} s, relative error {t['randomized_rel_error_value_k']:.1e}. "
        f"Process peak RSS {e['process_peak_mb']:.0f} MiB; load {_load_change(e)}.",
        "",
    ]


def _ntk_section(nt: dict, quick: bool) -> list[str]:
    header = [
        "network",
        "parameters",
        "n",
        "mode",
        "toolkit (auto: method) s",
        "vmap s",
        "autograd loop s",
        "ratio",
        "ratio vmap",
        "target",
        "peak MiB toolkit / loop",
        "max abs diff / max",
    ]
    rows = [
        [
            r["network"],
            r["parameters"],
            r["n"],
            r["mode"],
            f"{r['toolkit_s']:.3g} ({r['method']})",
            f"{r['vmap_s']:.3g}",
            f"{r['loop_s']:.3g}",
            f"**{r['ratio']:.1f}x**",
            f"{r['ratio_vmap']:.1f}x",
            ">= 10x",
            f"{r['toolkit_peak_mb']:.0f} / {r['loop_peak_mb']:.0f}",
            f"{r['max_abs_diff']:.1e} / {r['max_abs_ntk']:.3g}",
        ]
        for r in nt["rows"]
    ]
    out = [
        "## 5. Empirical NTK (float32, CIFAR-sized inputs; 'sum': NTK of the logit sum, 'trace': mean over logits)",
        "",
        *markdown_table(header, rows),
    ]
    floors = [r for r in nt["rows"] if r.get("floor_backward_s") is not None]
    if floors:
        bounds = [
            [
                r["mode"],
                f"{r['floor_backward_s']:.3g}",
                f"{r['floor_contraction_s']:.3g}",
                f"{r['loop_s'] / (r['floor_backward_s'] + r['floor_contraction_s']):.1f}x",
            ]
            for r in floors
        ]
        out += [
            "",
            "Reference costs for the CNN: one batched forward pass and T batched backward passes to the parameters "
            "(T = 1 for 'sum', C for 'trace'; 32 examples at a time: what training pays for the same gradients, summed "
            "over examples), and the n x n contraction over T P Jacobian columns that every method forms. A method that "
            "costs no more than these two would reach the last column against the loop:",
            "",
            *markdown_table(["mode", "batched forward+backward s", "contraction s", "loop s / (their sum)"], bounds),
        ]
    out.append(
        "\n" + trace_jacobian_text(nt["rows"], quick) + " The loop and vmap end in an n x n contraction over all P "
        "parameters; the NTKMLP closed form and the factored Linear layers of method='layers' form no Jacobian."
    )
    return out


def _train_section(tr: dict) -> list[str]:
    rows = [
        [
            r["network"],
            r["device"],
            r["parameters"],
            r["batch"],
            f"{r['train_images_per_s']:.1f}",
            f"{r['eval_images_per_s']:.1f}",
        ]
        for r in tr["rows"]
    ]
    return [
        "",
        "## 6. Training throughput (SGD step with on-device augmentation; eval = no-grad forward)",
        "",
        *markdown_table(["network", "device", "parameters", "batch", "train images/s", "eval images/s"], rows),
        f"\nGPU: {tr['gpu']}.",
    ]


def _cnn_backend(r: dict) -> str:
    """'numpy (cpu)', 'torch (cpu, 2 threads)', 'torch (cuda)'."""
    threads = r.get("torch_threads")
    return f"{r['backend']} ({r['device']}{'' if threads is None else f', {threads} thread' + ('s' if threads > 1 else '')})"


def _cnn_section(cn: dict) -> list[str]:
    """Image pairs per second of the CNN kernels per backend, against the one-pair-at-a-time loop and ntk_relu."""
    header = [
        "kernel",
        "image",
        "backend (device)",
        "n x n pairs",
        "toolkit s",
        "pairs / s",
        "pair loop pairs / s (pairs)",
        "ratio vs loop",
        "ntk_relu pairs / s",
        "ntk_relu / CNN",
        "max abs diff loop / numpy / max",
    ]
    rows = [
        [
            r["kernel"],
            r["image"],
            _cnn_backend(r),
            r["pairs"],
            f"{r['toolkit_s']:.3g}",
            f"{r['pairs_per_s']:.3g}",
            f"{r['loop_pairs_per_s']:.3g} ({r['loop_pairs']})",
            f"**{_ratio_text(r['ratio_vs_loop'])}**",
            f"{r['fc_pairs_per_s']:.3g}",
            f"{r['ratio_fc_vs_toolkit']:.3g}x",
            f"{r['max_abs_diff_loop']:.1e} / {r['max_abs_diff_numpy']:.1e} / {r['max_abs_kernel']:.3g}",
        ]
        for r in cn["rows"]
    ]
    return [
        "",
        "## 7. CNN kernels (cnn_ntk, float64, image pairs per second of an n x n cross Gram of random images)",
        "",
        *markdown_table(header, rows),
        "\nBaseline: a plain numpy loop calling `cnn_ntk` on one image pair at a time (the same recursion, timed in this "
        "process on the first pairs; its entries are compared with the batched ones). Reference: `ntk_relu` of the same "
        "depth on the flattened images, the fully connected kernel (one GEMM, no positions). Ratios are of rates, so the loop "
        f"may run on fewer pairs. GPU: {cn['gpu']}. Process peak RSS {cn['process_peak_mb']:.0f} MiB; load {_load_change(cn)}.",
    ]


# ============================================================================ speedups.png


def _ratio_text(ratio: float) -> str:
    """'176.9x', '0.4x'; below 0.1 two significant digits ('0.042x'), never a misleading '0.0x'."""
    return f"{ratio:.1f}x" if ratio >= 0.1 else f"{ratio:.2g}x"


def _bar_look(ratio: float, target: float | None, timed: bool) -> tuple[str, str, str]:
    """(status, text, color) of one bar: grey for a bar too small to time (neither a win nor a loss)."""
    if not timed:
        return "too small to time", "too small to time", "0.8"
    ok = ratio >= (1 if target is None else target)
    if target is not None:
        status = "meets target" if ok else "below target"
    else:
        status = "faster" if ok else "slower"
    return status, _ratio_text(ratio), ("tab:green" if ok else "tab:red")


def speedup_bars(res: dict, min_timed_s: float = MIN_TIMED_S) -> list[dict]:
    """The bars of speedups.png, top to bottom, as data.

    Each bar: ``label``, ``ratio`` (baseline seconds / toolkit seconds), ``target`` (or None),
    the two times it divides (``baseline_s``: what was measured of the baseline; ``toolkit_s``),
    ``timed`` (both times at least ``min_timed_s``), ``status`` ("too small to time", "meets
    target", "below target", "faster", "slower"), the ``text`` written next to it and its ``color``
    (grey for a bar too small to time: neither a win nor a loss).
    """
    raw: list[tuple[str, float, float | None, float, float]] = []  # label, ratio, target, baseline_s, toolkit_s
    n_max = max((x["n"] for x in res["distill"]["rows"]), default=None)
    for r in res["distill"]["rows"]:
        raw.append(
            (
                f"distill n={r['n']} d={r['d']}",
                r["ratio"],
                TARGETS["distill"] if r["n"] == n_max else None,
                r.get("sklearn_measured_s", r["sklearn_s"]),
                r["toolkit_s"],
            )
        )
    for r in res["ridge_path"]["rows"]:
        raw.append((f"ridge path n={r['n']} d={r['d']}", r["ratio"], TARGETS["ridge_path"], r["sklearn_s"], r["toolkit_s"]))
    for r in res["gram"]["rows"]:
        raw.append((f"gram {r['kernel']} {r['dtype']} vs numpy", r["ratio_vs_numpy"], None, r["numpy_s"], r["toolkit_s"]))
    for r in res["eigh"]["rows"]:
        raw.append((f"eigh n={r['n']} vs numpy", r["ratio"], None, r["numpy_s"], r["toolkit_s"]))
    t = res["eigh"]["topk"]
    raw.append((f"top-{t['k']} vs full eigh", t["ratio"], None, t["full_s"], t["topk_s"]))
    for r in res["ntk"]["rows"]:
        raw.append((f"NTK {r['network'].split(' (')[0]} {r['mode']}", r["ratio"], TARGETS["ntk"], r["loop_s"], r["toolkit_s"]))
    for r in res.get("cnn", {}).get("rows", []):  # a ratio of rates: the loop runs on fewer pairs
        label = f"{r['kernel']} {r['image'].rsplit('x', 1)[0]} {_cnn_backend(r)} vs pair loop"
        raw.append((label, r["ratio_vs_loop"], None, r["loop_s"], r["toolkit_s"]))
    bars = []
    for label, ratio, target, base_s, tk_s in raw:
        timed = min(base_s, tk_s) >= min_timed_s
        status, text, color = _bar_look(ratio, target, timed)
        bars.append(
            {
                "label": label,
                "ratio": ratio,
                "target": target,
                "baseline_s": base_s,
                "toolkit_s": tk_s,
                "timed": timed,
                "status": status,
                "text": text,
                "color": color,
            }
        )
    return bars


def speedups_figure(res: dict, ctx: RunContext, min_timed_s: float = MIN_TIMED_S) -> str:
    """Draw speedups.png (one bar per :func:`speedup_bars` entry) into the run's folder; its file name."""
    import matplotlib.pyplot as plt

    bars = speedup_bars(res, min_timed_s)
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(bars) + 1.6), layout="constrained")
    ypos = np.arange(len(bars))[::-1]
    timed = [b["timed"] for b in bars]
    ax.barh(ypos[timed], [max(b["ratio"], 1e-3) for b in bars if b["timed"]], color=[b["color"] for b in bars if b["timed"]])
    for y_, b in zip(ypos, bars):
        if b["target"] is not None and b["timed"]:
            ax.plot([b["target"], b["target"]], [y_ - 0.4, y_ + 0.4], "k-", lw=2)
        if b["timed"]:
            ax.text(max(b["ratio"], 1e-3) * 1.05, y_, b["text"], va="center", fontsize=7)
        else:  # no bar: a ratio of unmeasurable times is neither a win nor a loss
            ax.text(
                1.0,
                y_,
                f" {b['text']} (baseline {b['baseline_s'] * 1e3:.2g} ms, airkit {b['toolkit_s'] * 1e3:.2g} ms)",
                va="center",
                ha="left",
                fontsize=7,
                style="italic",
                color="0.35",
            )
    ax.set_yticks(ypos, [b["label"] for b in bars], fontsize=7)
    ax.set_xscale("log")
    ratios = [max(b["ratio"], 1e-3) for b in bars if b["timed"]]
    targets = [b["target"] for b in bars if b["timed"] and b["target"] is not None]
    ax.set_xlim(min([0.5] + [r / 1.5 for r in ratios]), max([30.0] + [r * 2.5 for r in ratios] + [t * 1.5 for t in targets]))
    ax.set_ylim(-0.7, len(bars) - 0.3)
    ax.axvline(1.0, color="gray", lw=0.8)
    ax.set_xlabel(
        "speedup over the baseline (log scale; black tick = target; green: faster or meets target, red: slower "
        f"or below target)\n'too small to time': the baseline or airkit took under {min_timed_s * 1e3:g} ms, "
        "too short to measure reliably on a shared machine",
        fontsize=8,
    )
    ax.set_title("airkit speed" + (" (quick sizes)" if ctx.quick else ""))
    atomic_savefig(fig, ctx.path("speedups.png"))
    return "speedups.png"
