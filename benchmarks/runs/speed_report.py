"""The report of the ``speed`` run: its Markdown (one layout per section), the bars of
speedups.png as data, the figure, and the sentences computed from the run's own numbers.

Measuring lives in :mod:`benchmarks.runs.speed`; everything here reads the rows' results
(``res``: one dict per row, as ``speed.run_row`` returns them) and writes nothing but the figure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
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
    for key in _SECTIONS:
        if key != "cnn" or key in res:  # results written before the cnn row existed have no cnn section
            out += _section(key, res[key], quick)
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


_Cell = str | Callable[[dict], Any]
"""One cell of a section's table, per row: a ``str.format`` template over the row's keys ("{toolkit_s:.3g}"),
or a function of the row for what a template cannot say (a quotient, a value that may be missing)."""
_Columns = tuple[tuple[str, _Cell], ...]
"""A table's columns: (header, cell) each, in order."""


def _table(columns: _Columns, rows: Iterable[dict]) -> list[str]:
    """The Markdown table of ``rows``, one column per (header, cell) of ``columns``."""
    cells = [cell for _, cell in columns]
    body = [[c.format_map(r) if isinstance(c, str) else c(r) for c in cells] for r in rows]
    return markdown_table([header for header, _ in columns], body)


def _cnn_backend(r: dict) -> str:
    """'numpy (cpu)', 'torch (cpu, 2 threads)', 'torch (cuda)'."""
    threads = r.get("torch_threads")
    return f"{r['backend']} ({r['device']}{'' if threads is None else f', {threads} thread' + ('s' if threads > 1 else '')})"


_NTK_FLOOR_COLUMNS: _Columns = (
    ("mode", "{mode}"),
    ("batched forward+backward s", "{floor_backward_s:.3g}"),
    ("contraction s", "{floor_contraction_s:.3g}"),
    ("loop s / (their sum)", lambda r: f"{r['loop_s'] / (r['floor_backward_s'] + r['floor_contraction_s']):.1f}x"),
)


def _ntk_notes(nt: dict, quick: bool) -> list[str]:
    """After the NTK table: the CNN's reference costs (when they were timed) and the sentence on the MLPs' Jacobian."""
    floors = [r for r in nt["rows"] if r.get("floor_backward_s") is not None]
    out = []
    if floors:
        out += [
            "",
            "Reference costs for the CNN: one batched forward pass and T batched backward passes to the parameters "
            "(T = 1 for 'sum', C for 'trace'; 32 examples at a time: what training pays for the same gradients, summed "
            "over examples), and the n x n contraction over T P Jacobian columns that every method forms. A method that "
            "costs no more than these two would reach the last column against the loop:",
            "",
            *_table(_NTK_FLOOR_COLUMNS, floors),
        ]
    out.append(
        "\n" + trace_jacobian_text(nt["rows"], quick) + " The loop and vmap end in an n x n contraction over all P "
        "parameters; the NTKMLP closed form and the factored Linear layers of method='layers' form no Jacobian."
    )
    return out


_Part = str | _Columns | Callable[[dict, bool], list[str]]
"""One piece of a section, in order: a line (a ``str.format`` template over the section's numbers, as
:func:`_fields` names them), a table of the section's rows (its columns), or a function of the numbers
and ``quick`` that makes lines."""

# The report's sections after the machine, one per row of the run, in order.
_SECTIONS: dict[str, tuple[_Part, ...]] = {
    "distill": (
        "## 1. Self-distillation study (10 alphas x 10 steps, test predictions)",
        "",
        "Toolkit: rbf Gram + cross-Gram + `distillation_study` (route chosen automatically). sklearn: "
        "`KernelRidge(kernel='rbf')` refit at every step (fit, predict train, predict test), timed on "
        "{first[sklearn_alphas_measured]} of the alphas and scaled to all (every alpha's chain does the same work).",
        "",
        (
            ("n", "{n}"),
            ("d", "{d}"),
            ("m", "{m}"),
            ("route", "{route}"),
            ("toolkit s (gram + study)", "{toolkit_s:.3g} ({toolkit_gram_s:.3g} + {toolkit_study_s:.3g})"),
            ("eigen route s", "{toolkit_eigen_route_s:.3g}"),
            ("sklearn s", "{sklearn_s:.3g}"),
            ("ratio", "**{ratio:.1f}x**"),
            ("vs precomputed-Gram sklearn", "{ratio_vs_precomputed:.1f}x"),
            ("target", ">= 50x at n=4000"),
            ("toolkit / sklearn peak MiB", "{toolkit_peak_mb:.0f} / {sklearn_peak_mb:.0f}"),
            ("max abs diff", "{max_abs_diff_sklearn:.1e}"),
        ),
        "\nRoute reason (last case): {last[route_reason]}. Process peak RSS: {process_peak_mb:.0f} MiB. Load {load}.",
        "",
    ),
    "ridge_path": (
        "## 2. Ridge path (20 ridges, test predictions)",
        "",
        (
            ("n", "{n}"),
            ("d", "{d}"),
            ("toolkit s (solver='mixed': used)", "{toolkit_s:.3g} ({solver})"),
            ("solver='eigen' s", "{toolkit_eigen_solver_s:.3g}"),
            ("solver='cholesky' s", "{toolkit_cholesky_solver_s:.3g}"),
            ("sklearn 20 fits s", "{sklearn_s:.3g}"),
            ("ratio (mixed)", "**{ratio:.1f}x**"),
            ("ratio (eigen)", "{ratio_eigen_solver:.1f}x"),
            ("target", ">= 10x"),
            ("max abs diff mixed / eigen", "{max_abs_diff_sklearn:.1e} / {max_abs_diff_eigen_solver:.1e}"),
        ),
        "",
        "solver='mixed': one float32 eigendecomposition, every ridge refined to float64 by preconditioned CG "
        "(kernels.refine); solver='eigen': one float64 eigendecomposition; sklearn: Gram + Cholesky + cross-Gram per ridge.",
        "",
        "What the path is made of, timed alone, and the ratio left if the toolkit paid only its Grams and one float32 "
        "eigendecomposition:",
        "",
        (
            ("n", "{n}"),
            ("d", "{d}"),
            ("Gram s", "{gram_s:.3g}"),
            ("cross-Gram s", "{cross_gram_s:.3g}"),
            ("float32 evd s", "{evd_float32_s:.3g}"),
            ("one Cholesky s", "{cholesky_s:.3g}"),
            ("evd32 / Cholesky", lambda r: f"{r['evd_float32_s'] / r['cholesky_s']:.1f}"),
            (
                "sklearn / (Grams + evd32)",
                lambda r: f"{r['sklearn_s'] / (r['gram_s'] + r['cross_gram_s'] + r['evd_float32_s']):.1f}x",
            ),
        ),
        "\nLoad {load}.",
        "",
    ),
    "gram": (
        "## 3. Gram matrices (n x n from n x d)",
        "",
        (
            ("kernel", "{kernel}"),
            ("dtype", "{dtype}"),
            ("n", "{n}"),
            ("d", "{d}"),
            ("bare GEMM s (GFLOP/s)", "{gemm_s:.3g} ({gemm_gflops:.0f})"),
            ("toolkit s (GFLOP/s)", "{toolkit_s:.3g} ({toolkit_gflops:.0f})"),
            ("toolkit / GEMM", "**{toolkit_over_gemm:.2f}** (target <= 1.3)"),
            ("sklearn s", lambda r: _f(r.get("sklearn_s"))),
            ("numpy s", "{numpy_s:.3g}"),
            (
                "peak MiB toolkit / sklearn / numpy",
                lambda r: f"{r['toolkit_peak_mb']:.0f} / {_f(r.get('sklearn_peak_mb'), '.0f')} / {r['numpy_peak_mb']:.0f}",
            ),
        ),
        "\nGFLOP/s counts the 2 n^2 d flops of the full product; the toolkit computes only the upper block "
        "triangle of a symmetric Gram. sklearn's rbf_kernel returns float32 for float32 input but computes distances in float64 chunks. "
        "Process peak RSS {process_peak_mb:.0f} MiB; load {load}.",
        "",
    ),
    "eigh": (
        "## 4. Eigendecomposition (rbf Gram)",
        "",
        (
            ("n", "{n}"),
            ("toolkit s", "{toolkit_s:.3g}"),
            ("numpy.linalg.eigh s", "{numpy_s:.3g}"),
            ("ratio", "**{ratio:.2f}x**"),
            ("Cholesky s", "{cholesky_s:.3g}"),
            ("eigh / Cholesky", "{eigh_over_cholesky:.1f}"),
            ("peak MiB toolkit / numpy", "{toolkit_peak_mb:.0f} / {numpy_peak_mb:.0f}"),
            ("max abs diff of eigenvalues", "{max_abs_diff_eigenvalues:.1e}"),
        ),
        "\nTop-{topk[k]} of n = {topk[n]} by `spectrum(K, k={topk[k]})` ({topk[method]}): {topk[topk_s]:.3g} s vs full "
        "{topk[full_s]:.3g} s (**{topk[ratio]:.1f}x**); relative error of value {topk[k]}: {topk[rel_error_value_k]:.1e} "
        "(residual {topk[max_residual]:.1e}). Randomized (QR iterations): {topk[randomized_s]:.3g} s, relative error "
        "{topk[randomized_rel_error_value_k]:.1e}. Process peak RSS {process_peak_mb:.0f} MiB; load {load}.",
        "",
    ),
    "ntk": (
        "## 5. Empirical NTK (float32, CIFAR-sized inputs; 'sum': NTK of the logit sum, 'trace': mean over logits)",
        "",
        (
            ("network", "{network}"),
            ("parameters", "{parameters}"),
            ("n", "{n}"),
            ("mode", "{mode}"),
            ("toolkit (auto: method) s", "{toolkit_s:.3g} ({method})"),
            ("vmap s", "{vmap_s:.3g}"),
            ("autograd loop s", "{loop_s:.3g}"),
            ("ratio", "**{ratio:.1f}x**"),
            ("ratio vmap", "{ratio_vmap:.1f}x"),
            ("target", ">= 10x"),
            ("peak MiB toolkit / loop", "{toolkit_peak_mb:.0f} / {loop_peak_mb:.0f}"),
            ("max abs diff / max", "{max_abs_diff:.1e} / {max_abs_ntk:.3g}"),
        ),
        _ntk_notes,
    ),
    "train": (
        "",
        "## 6. Training throughput (SGD step with on-device augmentation; eval = no-grad forward)",
        "",
        (
            ("network", "{network}"),
            ("device", "{device}"),
            ("parameters", "{parameters}"),
            ("batch", "{batch}"),
            ("train images/s", "{train_images_per_s:.1f}"),
            ("eval images/s", "{eval_images_per_s:.1f}"),
        ),
        "\nGPU: {gpu}.",
    ),
    "cnn": (  # image pairs per second of the CNN kernels per backend, against the one-pair-at-a-time loop and ntk_relu
        "",
        "## 7. CNN kernels (cnn_ntk, float64, image pairs per second of an n x n cross Gram of random images)",
        "",
        (
            ("kernel", "{kernel}"),
            ("image", "{image}"),
            ("backend (device)", _cnn_backend),
            ("n x n pairs", "{pairs}"),
            ("toolkit s", "{toolkit_s:.3g}"),
            ("pairs / s", "{pairs_per_s:.3g}"),
            ("pair loop pairs / s (pairs)", "{loop_pairs_per_s:.3g} ({loop_pairs})"),
            ("ratio vs loop", lambda r: f"**{_ratio_text(r['ratio_vs_loop'])}**"),
            ("ntk_relu pairs / s", "{fc_pairs_per_s:.3g}"),
            ("ntk_relu / CNN", "{ratio_fc_vs_toolkit:.3g}x"),
            ("max abs diff loop / numpy / max", "{max_abs_diff_loop:.1e} / {max_abs_diff_numpy:.1e} / {max_abs_kernel:.3g}"),
        ),
        "\nBaseline: a plain numpy loop calling `cnn_ntk` on one image pair at a time (the same recursion, timed in this "
        "process on the first pairs; its entries are compared with the batched ones). Reference: `ntk_relu` of the same "
        "depth on the flattened images, the fully connected kernel (one GEMM, no positions). Ratios are of rates, so the loop "
        "may run on fewer pairs. GPU: {gpu}. Process peak RSS {process_peak_mb:.0f} MiB; load {load}.",
    ),
}


def _fields(sec: dict) -> dict:
    """What a section's lines may name: its numbers, ``first`` and ``last`` (its first and last row) and ``load``
    (the change of the load average over the row, :func:`_load_change`), where it has them."""
    fields = dict(sec)
    if sec.get("rows"):
        fields.update(first=sec["rows"][0], last=sec["rows"][-1])
    if "load_before" in sec:
        fields["load"] = _load_change(sec)
    return fields


def _section(key: str, sec: dict, quick: bool = False) -> list[str]:
    """The lines of section ``key`` (:data:`_SECTIONS`) for the row's result ``sec``."""
    fields, out = _fields(sec), []
    for part in _SECTIONS[key]:
        if isinstance(part, str):
            out.append(part.format_map(fields))
        elif isinstance(part, tuple):
            out += _table(part, sec["rows"])
        else:
            out += part(sec, quick)
    return out


def _cnn_section(cn: dict) -> list[str]:
    """Image pairs per second of the CNN kernels per backend, against the one-pair-at-a-time loop and ntk_relu."""
    return _section("cnn", cn)


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
