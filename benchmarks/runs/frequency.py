"""frequency: does the low frequency converge first, and does self-distillation change it?

Frequency principle (Xu et al. 2019, arXiv:1901.06523) with the Gaussian filter of the
lizhemin15/self-distillation study: ``y_low = G_delta y`` row-normalised with
``G_delta(x, x') = exp(-||x - x'||^2 / (2 delta))``, ``y_high = y - y_low``;
``e_low = ||h_low - y_low|| / ||y_low||`` and ``e_high`` likewise, for the outputs h
over training against the noisy one-hot labels y.

Two sources of h, each under plain gradient descent and under chained self-distillation
(Dong et al. 2019): the closed-form linearised dynamics of the FC-ReLU NTK
(:func:`theory.dynamics.linearized_training`), and a finite NTK-parameterised MLP trained
by full-batch gradient descent with the same learning rate (:mod:`deep.fullbatch`). The
closed form costs the same for any number of steps, so it also runs ``theory_steps``
(10x the network's steps by default) to show where each rule ends up.

Where the label noise sits is measured, not assumed: the share of the energy of the noise
vector (noisy minus clean one-hot labels) in its high-frequency part ``n - G_delta n``,
beside the same share of the clean labels. Every sentence of the report is computed from
the run's numbers (:func:`findings`).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from benchmarks.datasets import load_noisy
from benchmarks.progress import PartLog
from benchmarks.registry import Benchmark, RunContext, RunOutput
from benchmarks.report import markdown_table
from benchmarks.run_files import atomic_savefig

MOMENTUM = 0.99  # chained self-distillation: target momentum m (weight on the previous target)
LR_SCALE = 1.0  # lr = LR_SCALE / d_max (stable below 2; the network's NTK is within a few % of the analytic one)
E_FIT = 0.05  # e_high below this: the high-frequency part is fitted ("e_high ~ 0")
E_KEPT = 0.2  # e_high above this: the high-frequency part is kept out of the fit
E_HALF = 0.5  # the "steps to e < 0.5" columns
N_RECORD = 30  # log-spaced recorded steps up to the network's last step
MIN_N = 10  # smallest --n (the CLI refuses less)
MIN_N_WHY = "frequency's stratified split needs one training point per class, 10 classes"
RULES = ("gd", "chained")
SOURCES = ("theory", "net")


def _config(quick: bool) -> dict:
    # The high-frequency part is fitted at the rate of the small NTK eigenvalues: at n = 150 digits
    # (d_max/d_min ~ 500) plain GD needs ~1500 steps of lr = 1/d_max to bring e_high to ~0.
    if quick:
        return {"n": 100, "steps": 600, "width": 512, "theory_steps": None}
    return {"n": 150, "steps": 2000, "width": 1024, "theory_steps": None}


def _records(steps: int, theory_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The network's recorded steps (0 and log-spaced to ``steps``) and the closed form's (those and beyond)."""
    net = np.unique(np.concatenate([[0], np.round(np.logspace(0, np.log10(steps), N_RECORD)).astype(np.int64)]))
    extra: Any = (
        np.round(np.logspace(np.log10(steps), np.log10(theory_steps), 8)).astype(np.int64) if theory_steps > steps else []
    )
    return net, np.unique(np.concatenate([net, extra])).astype(np.int64)


def _measures(X, outputs: np.ndarray, Y: np.ndarray, deltas: np.ndarray) -> dict:
    from theory.frequency import frequency_measures

    e_low, e_high, ratio = [], [], []
    for h in outputs:
        m = frequency_measures(X, h, Y, deltas=deltas)
        e_low.append(np.asarray(m.e_low))
        e_high.append(np.asarray(m.e_high))
        ratio.append(np.asarray(m.low_ratio))
    return {"e_low": np.array(e_low), "e_high": np.array(e_high), "low_ratio": np.array(ratio)}


def noise_location(X, y_clean: np.ndarray, y_noisy: np.ndarray, deltas) -> dict:
    """Share of the energy in the high-frequency part, ``||v - G_delta v||^2 / ||v||^2``, per delta.

    For the clean one-hot labels, the noise vector ``y_noisy - y_clean`` (nonzero on the
    flipped points only) and the noisy labels. The label noise "sits in the high
    frequencies" when its share is above the clean labels'.
    """
    from theory.frequency import frequency_split

    out: dict = {"deltas": np.asarray(deltas, dtype=float)}
    for name, v in (("clean", y_clean), ("noise", y_noisy - y_clean), ("noisy", y_noisy)):
        v = np.asarray(v, dtype=np.float64)
        total = float(np.sum(v * v))
        out[name] = np.array([float(np.sum(np.asarray(frequency_split(X, v, delta=float(d)).high) ** 2)) / total for d in deltas])
    return out


def _theory(s, X, Y, deltas, lr: float, rule: str, record: np.ndarray) -> dict:
    from theory.dynamics import linearized_training

    path = linearized_training(
        s, Y, lr=lr, steps=int(record[-1]), targets=rule, target_momentum=MOMENTUM if rule == "chained" else None, record=record
    )
    return {"record": record, **_measures(X, np.asarray(path.fits), Y, deltas)}


def _net(X, Y, deltas, lr: float, rule: str, record: np.ndarray, width: int, seed: int, progress: bool = False) -> dict:
    import torch

    from deep.fullbatch import train_full_batch
    from deep.models import make_model

    model = make_model("mlp", in_features=X.shape[1], width=width, depth=1, seed=seed, dtype=torch.float64)
    run = train_full_batch(
        model,
        torch.as_tensor(X),
        torch.as_tensor(Y),
        lr=lr,
        steps=int(record[-1]),
        record=record,
        targets=rule,
        target_momentum=MOMENTUM if rule == "chained" else None,
        progress=progress,
    )
    return {"record": record, "param_change": run.relative_param_change, **_measures(X, run.train_outputs, Y, deltas)}


def _plan(cfg: dict) -> dict:
    """Each step's rough cost in seconds on 2 CPU cores (only the ratios matter: they weigh the time-left estimate)."""
    n, w = cfg["n"], cfg["width"]
    meas = 0.01 + 1e-7 * n * n  # one frequency_measures call, 3 deltas
    plan = {"noise-location": 9 * meas, "spectrum": 2e-9 * n**3 + 0.05}
    plan.update({f"theory-{rule}": (N_RECORD + 10) * meas for rule in RULES})
    plan.update({f"net-{rule}": (0.02 + 2e-8 * n * w) * cfg["steps"] + N_RECORD * meas for rule in RULES})
    return plan


def _settings(ctx: RunContext) -> dict:
    """The run's sizes: the defaults, ``--n`` and the closed form's horizon (10x the network's steps unless set)."""
    cfg = ctx.sizes(_config(ctx.quick))
    if ctx.options.get("n") is not None:
        cfg["n"] = int(ctx.options["n"])
    if cfg["theory_steps"] is None:
        cfg["theory_steps"] = 10 * cfg["steps"]
    return cfg


def run(ctx: RunContext) -> RunOutput:
    from kernels import spectrum
    from kernels.functions import ntk_relu
    from theory.frequency import delta_grid
    from theory.noise import one_hot

    cfg = _settings(ctx)
    data = load_noisy(
        ctx.data, n_train=cfg["n"], n_val=100, n_test=200, noise="symmetric:0.4", seed=ctx.seed, progress=ctx.progress
    )
    log = PartLog("frequency", _plan(cfg), ctx.progress)
    X = data.X_train
    Y = one_hot(data.labels_given, data.n_classes)
    Y_clean = one_hot(data.labels_true, data.n_classes)
    deltas = delta_grid(X, num=3, quantiles=(0.01, 0.3), seed=ctx.seed)
    rec_net, rec_theory = _records(cfg["steps"], cfg["theory_steps"])
    noise = log.part(ctx, "noise-location", lambda: noise_location(X, Y_clean, Y, deltas))
    s = log.step("spectrum", lambda: spectrum(ntk_relu(X, depth=1)), what=f"FC-ReLU NTK of {cfg['n']} points")
    d_max = float(s.values[0])
    lr = LR_SCALE / d_max
    r: dict = {
        "deltas": deltas,
        "lr": lr,
        "d_max": d_max,
        "target_momentum": MOMENTUM,
        "width": cfg["width"],
        "steps": cfg["steps"],
        "theory_steps": cfg["theory_steps"],
        "n_flipped": int(data.flipped.sum()),
        "noise_location": noise,
    }
    for rule in RULES:
        r[f"theory_{rule}"] = log.part(
            ctx,
            f"theory-{rule}",
            partial(_theory, s, X, Y, deltas, lr, rule, rec_theory),
            what=f"closed form to step {cfg['theory_steps']}",
        )
    for rule in RULES:
        r[f"net_{rule}"] = log.part(
            ctx,
            f"net-{rule}",
            partial(_net, X, Y, deltas, lr, rule, rec_net, cfg["width"], ctx.seed, ctx.progress),
            what=f"width-{cfg['width']} MLP, {cfg['steps']} full-batch GD steps",
        )
    r = {k: (np.asarray(v) if k == "deltas" else v) for k, v in r.items()}
    f = findings(r)
    figures = (_plot(r, f, ctx), _plot_noise(r, ctx))
    md = _markdown(r, f, cfg, data.name)
    return RunOutput(numbers={"config": cfg, **r, "findings": f}, markdown=md, figures=figures, parameters=cfg)


def _markdown(r: dict, f: dict, cfg: dict, data_name: str) -> str:
    """The report: the setup, the table and the findings' sentences."""
    return (
        f"Data: {data_name}, n = {cfg['n']} training points, 40% symmetric label noise ({r['n_flipped']} flipped); "
        f"h = outputs on the training points, y = noisy one-hot labels. FC-ReLU NTK (depth 1) closed form and an "
        f"NTK-parameterised MLP of width {cfg['width']}, full-batch GD from centred outputs u(0) = 0, "
        f"lr = {LR_SCALE:g}/d_max = {r['lr']:.3g}, {cfg['steps']} steps (the closed form also to step "
        f"{cfg['theory_steps']}); chained self-distillation target momentum m = {MOMENTUM}. Filter variances delta = "
        + ", ".join(f"{d:.3g}" for d in r["deltas"])
        + " (1% to 30% quantiles of the squared distances / 2).\n\n"
        + _table(r)
        + "\n\n"
        + "\n\n".join(f["sentences"])
        + "\n"
    )


def _first_below(e: np.ndarray, record: np.ndarray, level: float) -> float:
    """The first recorded step with ``e < level`` (inf if none)."""
    hit = np.flatnonzero(e < level)
    return float(record[hit[0]]) if hit.size else float("inf")


def _at(m: dict, step: int, key: str) -> np.ndarray:
    """Measure ``key`` (per delta) at recorded step ``step``."""
    rec = np.asarray(m["record"])
    return np.asarray(m[key], dtype=float)[int(np.flatnonzero(rec == step)[0])]


def _table(r: dict) -> str:
    S = int(r["steps"])
    rows = []
    for src in SOURCES:
        for rule in RULES:
            m = r[f"{src}_{rule}"]
            rec = np.asarray(m["record"])
            sel = rec <= S
            el, eh = np.asarray(m["e_low"])[sel], np.asarray(m["e_high"])[sel]
            lo, hi = _at(m, S, "e_low"), _at(m, S, "e_high")
            for j, dl in enumerate(r["deltas"]):
                fl, fh = _first_below(el[:, j], rec[sel], E_HALF), _first_below(eh[:, j], rec[sel], E_HALF)
                show = lambda v: "never" if not np.isfinite(v) else str(int(v))  # noqa: E731
                rows.append([src, rule, f"{dl:.3g}", show(fl), show(fh), f"{lo[j]:.3f}", f"{hi[j]:.3f}"])
    header = [
        "source",
        "rule",
        "delta",
        f"first step e_low < {E_HALF}",
        f"first step e_high < {E_HALF}",
        f"e_low at step {S}",
        f"e_high at step {S}",
    ]
    return "\n".join(markdown_table(header, rows))


def _span(v) -> str:
    v = np.asarray(v, dtype=float)
    lo, hi = float(v.min()), float(v.max())
    return f"{lo:.2f}" if abs(hi - lo) < 0.005 else f"{lo:.2f}-{hi:.2f}"


def _source_names(srcs: list[str]) -> str:
    """``"closed form and network"`` for the sources ``srcs``."""
    return " and ".join("closed form" if s == "theory" else "network" for s in srcs)


def _noise_finding(r: dict) -> tuple[dict, str]:
    """Where the label noise sits: its high-frequency share of energy beside the clean labels'."""
    deltas = np.asarray(r["deltas"], dtype=float)
    nl = r["noise_location"]
    clean, noise = np.asarray(nl["clean"], dtype=float), np.asarray(nl["noise"], dtype=float)
    above = noise > clean
    s = (
        f"Where the label noise sits (measured): the noise vector (noisy minus clean one-hot labels, nonzero on the "
        f"{r['n_flipped']} flipped points) has {_span(noise)} of its energy in the high-frequency part v - G_delta v "
        f"over the {deltas.size} deltas, the clean labels {_span(clean)}."
    )
    if above.all():
        s += f" At every delta the noise is more high-frequency than the clean labels (by a factor {_span(noise / clean)})."
    elif above.any():
        s += (
            " The noise is more high-frequency than the clean labels only at delta = "
            + ", ".join(f"{d:.3g}" for d in deltas[above])
            + "; at the other deltas it is not."
        )
    else:
        s += " At no delta is the noise more high-frequency than the clean labels: the premise does not hold on this data."
    return {"noise_high_share": noise, "clean_high_share": clean}, s


def _principle_finding(r: dict) -> tuple[dict, str]:
    """Frequency principle: in how many (source, rule, delta) cases e_low fell below ``E_HALF`` before e_high."""
    S = int(r["steps"])
    cases, early, exceptions = 0, 0, []
    for src in SOURCES:
        for rule in RULES:
            m = r[f"{src}_{rule}"]
            rec = np.asarray(m["record"])
            sel = rec <= S
            for j, dl in enumerate(np.asarray(r["deltas"], dtype=float)):
                fl = _first_below(np.asarray(m["e_low"])[sel, j], rec[sel], E_HALF)
                fh = _first_below(np.asarray(m["e_high"])[sel, j], rec[sel], E_HALF)
                cases += 1
                if fl < fh:
                    early += 1
                else:
                    exceptions.append(f"{src} {rule} at delta {dl:.3g}")
    s = (
        f"Frequency principle: e_low fell below {E_HALF} at an earlier recorded step than e_high in {early} of {cases} "
        f"(source, rule, delta) cases"
    )
    s += "." if not exceptions else "; not in " + ", ".join(exceptions) + "."
    return {"low_first_cases": early, "cases": cases}, s


def _contrast_caveat(gd_max: dict, ch_min: dict, S: int, gd_fits: bool, ch_keeps: bool) -> str:
    """What is missing from the GD-fits / chained-keeps contrast (empty when it is complete)."""
    s = ""
    if not gd_fits:
        s += (
            f" The expected contrast is not complete: GD's e_high has not fallen below {E_FIT} by step {S} in the "
            + _source_names([src for src in SOURCES if gd_max[src] >= E_FIT])
            + "."
        )
    if not ch_keeps:
        s += (
            f" Chained self-distillation's e_high is not above {E_KEPT} in the "
            + _source_names([src for src in SOURCES if ch_min[src] <= E_KEPT])
            + ": it does not keep the high-frequency part out of the fit here."
        )
    return s


def _contrast_finding(r: dict) -> tuple[dict, str]:
    """The contrast at the network's last step: GD fits the high frequencies, chained self-distillation does not."""
    S = int(r["steps"])
    eh = {(src, rule): _at(r[f"{src}_{rule}"], S, "e_high") for src in SOURCES for rule in RULES}
    gd_max = {src: float(eh[src, "gd"].max()) for src in SOURCES}
    ch_min = {src: float(eh[src, "chained"].min()) for src in SOURCES}
    s = (
        f"After {S} steps, plain GD's e_high is at most {gd_max['theory']:.3f} (closed form) and {gd_max['net']:.3f} "
        f"(network) over the deltas; chained self-distillation's is at least {ch_min['theory']:.3f} and "
        f"{ch_min['net']:.3f}."
    )
    gd_fits = all(v < E_FIT for v in gd_max.values())
    ch_keeps = all(v > E_KEPT for v in ch_min.values())
    if gd_fits and ch_keeps:
        s += (
            f" So GD fits the high-frequency part of the noisy labels, noise included (e_high < {E_FIT}), and chained "
            f"self-distillation does not (e_high > {E_KEPT})."
        )
    else:
        s += _contrast_caveat(gd_max, ch_min, S, gd_fits, ch_keeps)
    numbers = {"e_high_at_steps": {f"{src}_{rule}": v for (src, rule), v in eh.items()}}
    return {**numbers, "gd_fits_high": gd_fits, "chained_keeps_high": ch_keeps}, s


def _levelled_finding(r: dict) -> tuple[dict, str]:
    """Chained self-distillation (closed form) has levelled off: a limit, not a slower approach."""
    S, T = int(r["steps"]), int(r["theory_steps"])
    th = r["theory_chained"]
    rec = np.asarray(th["record"])
    a = S if T > S else int(rec[rec <= max(S // 10, 1)][-1])  # the closed form's last decade of steps
    b = T if T > S else S
    change = float(np.max(np.abs(_at(th, b, "e_high") - _at(th, a, "e_high"))))
    ridge = (1 - MOMENTUM) / float(r["lr"])
    s = (
        f"Chained self-distillation (closed form) converges to kernel ridge regression with ridge (1 - m)/lr = "
        f"{ridge:.3g} = {ridge / float(r['d_max']):.3g} d_max; its e_high changed by at most {change:.3f} from step "
        f"{a} to step {b}, "
    )
    s += "so it has levelled off." if change < 0.01 else "so it is still moving at the end of the run."
    numbers = {"chained_change_last_decade": change, "chained_last_decade": [a, b], "ridge": ridge}
    return {**numbers, "ridge_over_dmax": ridge / float(r["d_max"])}, s


def _horizon_finding(r: dict) -> tuple[dict, str] | None:
    """The closed form beyond the network's horizon (None when it stops at the network's last step)."""
    S, T = int(r["steps"]), int(r["theory_steps"])
    if T <= S:
        return None
    th = r["theory_chained"]
    gd_e = np.asarray(r["theory_gd"]["e_high"], dtype=float)
    gd_T, ch_T = gd_e[-1], np.asarray(th["e_high"], dtype=float)[-1]
    s = (
        f"The closed form continued to step {T}: GD's e_high there is at most {gd_T.max():.3g}, chained "
        f"self-distillation's at least {ch_T.min():.3f}."
    )
    fit_at = _first_below(gd_e.max(1), np.asarray(th["record"]), E_FIT)
    s += (
        f" GD's e_high first fell below {E_FIT} at step {int(fit_at)}."
        if np.isfinite(fit_at)
        else f" Even there GD's e_high has not fallen below {E_FIT}."
    )
    return {"theory_e_high_final": {"gd": gd_T, "chained": ch_T}, "theory_gd_first_fit_step": fit_at}, s


def _gap_finding(r: dict) -> tuple[dict, str]:
    """Network vs closed form: the largest gap in e_low and e_high over the recorded steps and deltas."""
    gaps = {}
    for rule in RULES:
        th, nt = r[f"theory_{rule}"], r[f"net_{rule}"]
        rt, rn = np.asarray(th["record"]), np.asarray(nt["record"])
        idx = np.searchsorted(rt, rn)
        gaps[rule] = max(
            float(np.max(np.abs(np.asarray(nt[k], dtype=float) - np.asarray(th[k], dtype=float)[idx])))
            for k in ("e_low", "e_high")
        )
    s = (
        f"The width-{r['width']} network's e_low and e_high differ from the closed form's by at most "
        f"{gaps['gd']:.3f} under GD and {gaps['chained']:.3f} under chained self-distillation, over all "
        f"recorded steps and deltas."
    )
    return {"net_theory_max_gap": gaps}, s


def findings(r: dict) -> dict:
    """The report's sentences and the numbers each one is computed from.

    Every claim of the closing prose is a comparison of these numbers with the
    thresholds ``E_FIT`` ("e_high ~ 0") and ``E_KEPT``; when the expected outcome does
    not appear, the sentence says so. One function a sentence; the horizon one only when the closed form ran longer.
    """
    out: dict = {"e_fit": E_FIT, "e_kept": E_KEPT}
    sentences = []
    for finding in (_noise_finding, _principle_finding, _contrast_finding, _levelled_finding, _horizon_finding, _gap_finding):
        got = finding(r)
        if got is not None:
            out.update(got[0])
            sentences.append(got[1])
    out["sentences"] = sentences
    return out


def _plot(r: dict, f: dict, ctx: RunContext) -> str:
    import matplotlib.pyplot as plt

    deltas = np.asarray(r["deltas"], dtype=float)
    S = int(r["steps"])
    fig, axes = plt.subplots(
        2, len(deltas), figsize=(4.4 * len(deltas), 6.6), squeeze=False, sharex=True, sharey=True, layout="constrained"
    )
    colors = {"gd": "tab:red", "chained": "tab:blue"}
    names = {"gd": "plain GD", "chained": f"chained self-distillation (m = {MOMENTUM})"}
    for row, key in enumerate(("e_low", "e_high")):
        for j, dl in enumerate(deltas):
            ax = axes[row, j]
            for rule in RULES:
                for src, style in (
                    ("theory", dict(ls="-", lw=2.2, alpha=0.55)),
                    ("net", dict(ls="--", lw=1.3, marker=".", ms=4)),
                ):
                    m = r[f"{src}_{rule}"]
                    t = np.asarray(m["record"], dtype=float)
                    e = np.asarray(m[key], dtype=float)[:, j]
                    ax.semilogx(
                        t[1:],
                        e[1:],
                        color=colors[rule],
                        label=f"{names[rule]}, {'closed form' if src == 'theory' else 'network'}",
                        **style,
                    )
            if int(r["theory_steps"]) > S:
                ax.axvline(S, color="0.5", lw=0.8, ls=":")
            if key == "e_high":
                ax.axhline(E_FIT, color="0.3", lw=0.6, ls="-.")
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3, which="major")
            ax.set_title(f"{key}, δ = {dl:.3g}")
            if row == 1:
                ax.set_xlabel("GD step (lr = 1/d_max)")
        axes[row, 0].set_ylabel(f"{key} (relative error)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=8)
    gd, ch = f["e_high_at_steps"]["theory_gd"], f["e_high_at_steps"]["theory_chained"]
    fig.suptitle(
        f"Frequency principle on noisy labels: low frequencies (top) are fitted first; high frequencies (bottom)\n"
        f"at step {S}{' (dotted; the closed form continues)' if int(r['theory_steps']) > S else ''}: "
        f"e_high ≤ {np.max(gd):.3f} under plain GD, ≥ {np.min(ch):.2f} under chained self-distillation "
        f"(dash-dot line: {E_FIT})",
        fontsize=10,
    )
    atomic_savefig(fig, ctx.path("frequency.png"))
    return "frequency.png"


def _plot_noise(r: dict, ctx: RunContext) -> str:
    import matplotlib.pyplot as plt

    nl = r["noise_location"]
    deltas = np.asarray(r["deltas"], dtype=float)
    x = np.arange(deltas.size)
    fig, ax = plt.subplots(figsize=(6.4, 3.8), layout="constrained")
    for k, (name, col, text) in enumerate(
        (
            ("clean", "tab:blue", "clean labels"),
            ("noise", "tab:red", "label noise (noisy − clean)"),
            ("noisy", "tab:gray", "noisy labels"),
        )
    ):
        v = np.asarray(nl[name], dtype=float)
        bars = ax.bar(x + (k - 1) * 0.27, v, width=0.27, color=col, label=text)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(x, [f"δ = {d:.3g}" for d in deltas])
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("share of ||v||² in v − G_δ v")
    ax.set_title("Measured: how much of each label vector is high-frequency")
    ax.legend(fontsize=8, loc="upper left")
    atomic_savefig(fig, ctx.path("noise_frequency.png"))
    return "noise_frequency.png"


BENCHMARK = Benchmark.from_docstring(__doc__, run, options=("n",))
