"""The sweep's report: one table of mean ± std over the averaged axes (seeds by default) per group of cells, and its figures.

A group is the cells that share every axis value except those averaged over (``seed`` by
default). Per group: how many cells finished, and mean ± std (sample std, ddof = 1; "—"
for one cell) of the early-stopped test accuracy (at the epoch of best noisy validation
accuracy), the final and best test accuracy, the final memorisation (training accuracy on
the flipped examples against their given label) and recovery (against the true label),
and the training time. Written atomically: ``report.md``, ``result.json``,
``test_accuracy.png`` (mean test-accuracy curve per group with a ±std band, beside the
memorisation curve).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import markdown_table
from benchmarks.run_files import atomic_savefig, atomic_write_json, atomic_write_text
from benchmarks.sweep_grid import Cell, Grid, value_text

__all__ = ["METRICS", "group_cells", "aggregate", "write_report"]

# (key in cell.json, column title)
METRICS = (
    ("test_acc_at_best_val", "early-stopped test acc"),
    ("final_test_acc", "final test acc"),
    ("best_test_acc", "best test acc"),
    ("final_memorised", "final memorised"),
    ("final_recovered", "final recovered"),
    ("seconds", "train s"),
)


def group_cells(cells: Sequence[Cell], over: tuple[str, ...]) -> dict[tuple, list[Cell]]:
    """Cells keyed by their values on the axes not in ``over``, in grid order."""
    groups: dict[tuple, list[Cell]] = {}
    for cell in cells:
        key = tuple((k, v if not isinstance(v, (list, dict)) else value_text(v)) for k, v in cell.values.items() if k not in over)
        groups.setdefault(key, []).append(cell)
    return groups


def _mean_std(values: list[Any]) -> tuple[float | None, float | None]:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None, None
    return float(np.mean(vals)), (float(np.std(vals, ddof=1)) if len(vals) > 1 else None)


def aggregate(grid: Grid, results: dict[str, dict], over: tuple[str, ...]) -> list[dict[str, Any]]:
    """Per group: its axis values, cells finished / in all, and ``{metric: (mean, std)}``."""
    rows = []
    for key, cells in group_cells(grid.cells, over).items():
        done = [results[c.name] for c in cells if c.name in results]
        rows.append(
            {
                "group": dict(key),
                "finished": len(done),
                "cells": len(cells),
                "metrics": {m: _mean_std([r.get(m) for r in done]) for m, _ in METRICS},
                "members": [c.name for c in cells],
            }
        )
    return rows


def _ms(pair: tuple[float | None, float | None], digits: int = 3) -> str:
    mean, std = pair
    if mean is None:
        return "—"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def _label(group: dict[str, Any]) -> str:
    return ", ".join(f"{k}={value_text(v)}" for k, v in group.items()) or "all cells"


def _findings(rows: list[dict[str, Any]], over: tuple[str, ...]) -> list[str]:
    """Sentences computed from the table: which group is best early-stopped and at the end, and the gap."""
    scored = [r for r in rows if r["metrics"]["test_acc_at_best_val"][0] is not None]
    if len(scored) < 2:
        return []
    out = []
    for metric, words in (("test_acc_at_best_val", "early-stopped"), ("final_test_acc", "final")):
        have = [r for r in scored if r["metrics"][metric][0] is not None]
        if not have:
            continue
        top = max(r["metrics"][metric][0] for r in have)
        best = [r for r in have if r["metrics"][metric][0] >= top - 1e-12]
        if len(best) == len(have):
            out.append(f"- Every group has the same mean {words} test accuracy ({_ms(best[0]['metrics'][metric])}).")
            continue
        names = " and ".join(f"{_label(r['group'])} ({_ms(r['metrics'][metric])})" for r in best)
        rest = [r for r in have if r not in best]
        second = max(rest, key=lambda r: r["metrics"][metric][0])
        gap = top - second["metrics"][metric][0]
        spread = max((r["metrics"][metric][1] or 0.0) for r in (*best, second))
        within = (
            f"; {gap:.3f} above {_label(second['group'])}, within the spread over {', '.join(over)} (std up to {spread:.3f})"
            if spread and gap <= spread
            else ""
        )
        out.append(f"- Highest mean {words} test accuracy: {names}{' (tied)' if len(best) > 1 else ''}{within}.")
    for r in scored:
        es_m, fin_m = r["metrics"]["test_acc_at_best_val"][0], r["metrics"]["final_test_acc"][0]
        if fin_m is not None and es_m - fin_m > 0.01:
            out.append(
                f"- {_label(r['group'])}: final test accuracy is {es_m - fin_m:.3f} below its early-stopped accuracy "
                f"(final memorised {_ms(r['metrics']['final_memorised'])})."
            )
    return out


def _figure(results: dict[str, dict], rows: list[dict[str, Any]], over: tuple[str, ...], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [(r, [results[n]["curves"] for n in r["members"] if n in results]) for r in rows]
    curves = [(r, cs) for r, cs in curves if cs]
    if not curves:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for r, cs in curves:
        for ax, key in zip(axes, ("test_acc", "train_acc_flipped_given")):
            length = min(len(c[key]) for c in cs)
            ys = np.array([[np.nan if v is None else v for v in c[key][:length]] for c in cs], dtype=float)
            x = np.arange(1, length + 1)
            mean = np.nanmean(ys, axis=0)
            (line,) = ax.plot(x, mean, label=f"{_label(r['group'])} (n={len(cs)})")
            if len(cs) > 1:
                sd = np.nanstd(ys, axis=0, ddof=1)
                ax.fill_between(x, mean - sd, mean + sd, color=line.get_color(), alpha=0.2)
    axes[0].set(xlabel="epoch", ylabel="test accuracy", title=f"test accuracy (mean ± std over {', '.join(over) or 'nothing'})")
    axes[1].set(xlabel="epoch", ylabel="accuracy on flipped examples vs given label", title="memorisation of the noisy labels")
    axes[0].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_savefig(fig, path)  # closes the figure
    return path


def write_report(
    out: Path, grid: Grid, results: dict[str, dict], failed: dict[str, str], *, over: tuple[str, ...], seconds: float
) -> Path | None:
    """Write ``report.md``, ``result.json`` and ``test_accuracy.png`` into ``out``; None when no cell has finished."""
    out = Path(out)
    rows = aggregate(grid, results, over)
    cells = grid.cells
    atomic_write_json(
        out / "result.json",
        {
            "grid": grid.to_dict(),
            "over": list(over),
            "groups": [{**r, "metrics": {m: list(v) for m, v in r["metrics"].items()}} for r in rows],
            "cells": {c.name: {"values": c.values, **results[c.name]} for c in cells if c.name in results},
            "failed": failed,
            "seconds_this_session": seconds,
        },
    )
    if not results:
        return None
    fig = _figure(results, rows, over, out / "test_accuracy.png")
    keys = [k for k in grid.axes if k not in over]
    table = markdown_table(
        [*keys, "cells done", *(title for _, title in METRICS)],
        [
            [value_text(r["group"][k]) for k in keys]
            + [f"{r['finished']}/{r['cells']}"]
            + [_ms(r["metrics"][m], 1 if m == "seconds" else 3) for m, _ in METRICS]
            for r in rows
        ],
    )
    fixed = ", ".join(f"{k}={value_text(v)}" for k, v in grid.fixed.items()) or "none"
    when = "; ".join(f"{c}: " + ", ".join(f"{k}={value_text(v)}" for k, v in kv.items()) for c, kv in grid.when.items())
    lines = [
        "# Sweep",
        "",
        f"{len(results)} of {len(cells)} cells finished; {len(failed)} failed this session. "
        f"Axes: {', '.join(f'{k} ({len(v)})' for k, v in grid.axes.items()) or 'none'}; "
        f"mean ± std over {', '.join(over) or 'nothing'} (sample std, ddof = 1). Fixed settings: {fixed}."
        + (f" Settings for some cells: {when}." if when else ""),
        "",
        *table,
        "",
        "Early-stopped test accuracy: at the epoch of best accuracy on the noisy validation split. "
        "Memorised / recovered: training accuracy on the flipped examples against the given / the true label.",
        "",
        *_findings(rows, over),
    ]
    if failed:
        lines += ["", "## Failed cells", "", *(f"- `{name}`: {err}" for name, err in failed.items())]
    if fig is not None:
        lines += ["", f"![test accuracy]({fig.name})"]
    return atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
