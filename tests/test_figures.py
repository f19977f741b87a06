"""Figures a reader can trust at a glance (issue 12), checked without pixels: the figure objects a
run draws are captured before they are saved, and their lines, scales and texts inspected.

noisy-cifar's methods.png: every method visible and named, also where two curves coincide.
toy-distill's loss.png: a panel on which the curves that differ by little are readable.
(speed's speedups.png: tests/test_bench_speed.py.)
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from benchmarks.registry import RunContext  # noqa: E402
from benchmarks.runs import noisy_cifar, toy_distill  # noqa: E402


@pytest.fixture
def captured(monkeypatch):
    """Replace ``atomic_savefig`` in the run modules: keep each figure (by file name) instead of saving it."""
    figs: dict[str, object] = {}

    def keep(fig, path, **_):
        figs[Path(path).name] = fig
        return Path(path)

    for module in (noisy_cifar, toy_distill):
        monkeypatch.setattr(module, "atomic_savefig", keep)
    yield figs
    for fig in figs.values():
        plt.close(fig)


# ----------------------------------------------------------------------------- noisy-cifar


def _curves(epochs: int, start: float, seed: int) -> dict:
    r = np.random.default_rng(seed)
    rise = start + np.cumsum(r.uniform(0.01, 0.08, epochs))
    return {
        "global_epoch": list(range(1, epochs + 1)),
        "test_acc": list(rise),
        "val_acc": list(rise * 0.5),
        "train_acc_clean": list(rise),
        "train_acc_flipped_given": list(0.12 - rise / 10),
        "train_acc_flipped_true": list(rise * 0.9),
        "loss": list(2.3 - rise),
    }


def _results(coincide: bool = True, epochs: int = 5) -> dict:
    """What noisy-cifar's run hands to its plot: ``generations`` (2 generations) starts exactly as ``ce``."""
    ce = _curves(epochs, 0.2, 0)
    second = _curves(epochs, 0.15, 1)
    first = ce if coincide else _curves(epochs, 0.1, 2)
    gen = {k: first[k] + second[k] for k in first}
    gen["global_epoch"] = list(range(1, 2 * epochs + 1))
    return {
        "ce": {"params": {}, "curves": ce},
        "self-distill": {"params": {"alpha": 0.8}, "curves": _curves(epochs, 0.18, 3)},
        "interp": {"params": {}, "curves": _curves(epochs, 0.1, 4)},
        "generations": {"params": {"alpha": 0.6, "generations": 2}, "curves": gen},
    }


def _methods_figure(captured, results, tmp_path):
    noisy_cifar._plot(results, RunContext(name="noisy-cifar", directory=tmp_path))
    return captured["methods.png"]


def _legend_texts(fig) -> list[str]:
    texts = []
    for legend in fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]:
        texts += [t.get_text() for t in legend.get_texts()] + [legend.get_title().get_text()]
    return texts


def test_methods_png_draws_every_method_distinctly(captured, tmp_path):
    results = _results()
    fig = _methods_figure(captured, results, tmp_path)
    data_axes = [ax for ax in fig.axes if ax.get_lines()]
    assert len(data_axes) == 3
    for ax in data_axes:
        lines = {}
        for line in ax.get_lines():
            method = line.get_label().split(" (")[0]
            if method in results:
                lines[method] = line
        assert set(lines) == set(results), ax.get_title()
        looks = {(str(line.get_linestyle()), line.get_marker()) for line in lines.values()}
        assert len(looks) == len(results), "each method needs its own line style and marker"
        assert len({line.get_marker() for line in lines.values()}) == len(results), "markers tell methods apart in greyscale too"


def test_methods_png_coinciding_curves_both_visible_and_explained(captured, tmp_path):
    results = _results()
    fig = _methods_figure(captured, results, tmp_path)
    for ax in (ax for ax in fig.axes if ax.get_lines()):
        by = {line.get_label().split(" (")[0]: line for line in ax.get_lines()}
        ce, gen = by["ce"], by["generations"]
        n = len(ce.get_ydata())
        np.testing.assert_array_equal(ce.get_ydata(), gen.get_ydata()[:n])  # the data do coincide ...
        # ... so the one drawn first (lower z-order) must stick out around the one on top
        lower, upper = (ce, gen) if ce.get_zorder() < gen.get_zorder() else (gen, ce)
        assert lower.get_zorder() < upper.get_zorder()
        assert lower.get_linewidth() >= upper.get_linewidth() + 2
        assert lower.get_markersize() >= upper.get_markersize() + 3
    texts = " ".join(_legend_texts(fig))
    for m in results:
        assert m in texts
    assert "generation 1 is plain CE" in texts and "identical to ce" in texts


def test_methods_png_no_coincidence_note_when_curves_differ(captured, tmp_path):
    results = _results(coincide=False)
    spec = noisy_cifar.plot_spec(results)
    assert [line["label"] for line in spec["lines"]] == list(results)
    assert not any("identical" in note for note in spec["notes"])
    assert len({line["zorder"] for line in spec["lines"]}) == 1
    assert spec["generation_starts"] == [("generations", 2, 5.5)]  # the second generation starts after epoch 5
    fig = _methods_figure(captured, results, tmp_path)
    assert "identical" not in " ".join(_legend_texts(fig))


# ----------------------------------------------------------------------------- toy-distill


@pytest.fixture
def toy_loss(captured, tmp_path):
    """toy-distill's quick run (seconds): its numbers and its captured loss figure."""
    out = toy_distill.run(RunContext(name="toy-distill", directory=tmp_path, quick=True, progress=False))
    n = out.numbers
    return np.asarray(n["alphas"]), np.asarray(n["loss_steps"]), np.asarray(n["loss_limit"]), captured["loss.png"]


def test_loss_png_has_a_panel_where_the_close_curves_are_readable(toy_loss):
    alphas, steps, limit, fig = toy_loss
    inner = steps[(alphas > 0) & (alphas < 1)]  # the curves that differ from plain KRR by a few percent
    spread = inner.max() - inner.min()
    assert spread > 0
    readable = []
    for ax in fig.axes:
        lo, hi = ax.get_ylim()
        if ax.get_yscale() == "linear" and lo <= inner.min() and inner.max() <= hi and spread >= 0.3 * (hi - lo):
            readable.append(ax)
    assert readable, "no panel shows the alpha in (0, 1) curves over at least 30% of its height"
    # what that panel leaves out (the alpha = 0 limit, the zero function's 50/101) is written on it
    i0 = int(np.flatnonzero(alphas == 0)[0])
    assert not readable[0].get_ylim()[0] <= limit[i0] <= readable[0].get_ylim()[1]
    notes = " ".join(t.get_text() for t in readable[0].texts)
    assert "α = 0" in notes and f"{limit[i0]:.3g}" in notes


def test_loss_png_overview_shows_every_value_on_a_log_axis(toy_loss):
    alphas, steps, limit, fig = toy_loss
    values = np.concatenate([steps.ravel(), limit])
    full = [ax for ax in fig.axes if ax.get_ylim()[0] <= values.min() and values.max() <= ax.get_ylim()[1]]
    assert full and full[0].get_yscale() == "log"


@pytest.mark.parametrize("case", ["all rise", "constant", "one step", "improve only"])
def test_loss_axes_window_is_never_empty(case):
    if case == "all rise":  # nothing beats KRR: the window reaches above it instead
        steps, limit = np.array([[0.1, 0.2, 0.4]]), np.array([0.9])
    elif case == "constant":  # alpha = 1 alone: every value is KRR's
        steps, limit = np.full((1, 4), 0.11), np.array([0.11])
    elif case == "one step":
        steps, limit = np.array([[0.3], [0.3]]), np.array([0.2, 0.5])
    else:
        steps, limit = np.array([[0.3, 0.25, 0.2]]), np.array([0.19])
    spec = toy_distill.loss_axes(np.linspace(0, 1, steps.shape[0]), steps, limit)
    lo, hi = spec["zoom"]["ylim"]
    assert lo < steps[0, 0] < hi and np.isfinite([lo, hi]).all()
    inside = np.concatenate([steps.ravel(), limit])
    off = {(o["alpha"], o["what"]) for o in spec["zoom"]["off_scale"]}
    if case == "one step":
        assert off == {(1.0, "limit")}  # 0.5: above the window 0.3 +- 1.15 x 0.1
    if case in ("all rise", "constant", "improve only"):
        assert lo <= inside.min() and inside.max() <= hi and not off
    assert spec["overview"]["yscale"] == "log"
