"""confirm: the theory's predictions beside networks trained on noisy CIFAR-10, with verdicts.

Each prediction of the theory (Dong, Hou, Lu, Zhang 2019, AIR; Borup & Andersen 2021;
Jacot et al. 2018 for the kernel regime) is stated, measured in trained networks and
judged against a stated tolerance:

P1  AIR: the clean labels' energy share in the top 1% / 5% / 10% eigen-directions of the
    CNN's empirical NTK is at least twice the label noise's share.
P2  Ordering: the clean subset is fitted before the flipped one, and the linearised model's
    first-fit times rank the examples the way training fits them (Spearman rho > 0, p < 0.01).
P3  Early stopping: CE's test accuracy peaks before memorisation passes 50%, and its final
    accuracy is below the peak.
P4  Self-distillation ~ early stopping without stopping: final accuracy of self-distill and
    SAT at least CE's early-stopped accuracy minus 1 point and above CE's final, with at
    most half of CE's final memorisation.
P5  NTK regime: the widest NTK-parameterised MLP's test-accuracy curve within 2 points of
    the analytic curve, and the output gap shrinking with width (exponent -1/2).

Parts (each saved when done, so ``--resume`` skips it): the training runs, one
:mod:`benchmarks.sweep` cell per method and seed in ``train/cells/<method>-seed<k>/`` (each
resumable epoch by epoch; in this process one after another, or as Dask tasks with
``--workers N`` or ``--scheduler ADDRESS``), ``kernel-seed<k>`` (eNTK of CE run k),
``ntk`` (the MLP widths). Sizes: the CPU configuration (default with ``--data``) fits in about
an hour on 2 cores; ``--quick`` takes minutes (scikit-learn's digits written as CIFAR batches
when no ``--data`` is given); ``--device cuda`` runs the GPU configuration (all 50k images,
augmentation, more epochs, ResNet-18 beside the fast net).
"""

from __future__ import annotations

import copy
import sys
import time
import warnings
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import verdicts as rules
from benchmarks.datasets import check_noise_spec, write_digits_as_cifar
from benchmarks.progress import PartLog
from benchmarks.registry import Benchmark, BenchmarkError, RunContext, RunOutput
from benchmarks.report import markdown_table
from benchmarks.run_files import atomic_savefig
from benchmarks.runs.confirm_cnn import ENTK_FRACTIONS, TRAIN_SIZE_KEYS, as_inf, kernel_air_numbers, kernel_part
from benchmarks.runs.confirm_ntk import ntk_regime
from benchmarks.sweep import CELLS_DIR, run_cells
from benchmarks.sweep_grid import Cell

NOISE = "symmetric:0.4"

# Sizes per configuration: (--quick, CPU, GPU). Why these: see the report's "Configurations" section.
CNN_SIZES: dict[str, tuple] = {
    "model": ("fastnet", "fastnet", "fastnet"),
    "model_options": ({"widths": (16, 32, 32)}, {"widths": (32, 64, 64)}, {}),
    "subset": (2000, 5000, None),
    "test_subset": (1000, 2000, None),
    "epochs": (10, 20, 60),
    "batch_size": (64, 128, 512),
    "lr": (0.1, 0.1, 0.2),
    "augment": (False, False, True),
    "freq_subset": (0, 256, 256),
}
NTK_SIZES: dict[str, tuple] = {
    "n": (300, 1000, 5000),
    "n_val": (100, 500, 1000),
    "n_test": (300, 1000, 2000),
    "dim": (32, 64, 128),
    "depth": (1, 1, 1),
    "widths": ([128, 512, 2048], [256, 1024, 4096], [512, 2048, 8192, 32768]),
    "seeds": (2, 2, 3),
    "steps": (300, 1000, 3000),
    "points": (20, 30, 40),
    "lr_scale": (1.0, 1.0, 1.0),
}


def _config(ctx: RunContext) -> dict:
    """Sizes per configuration. Why these: see the report's "Configurations" section."""
    gpu = ctx.device == "cuda" and not ctx.quick
    profile = 0 if ctx.quick else 2 if gpu else 1
    cnn = copy.deepcopy({key: sizes[profile] for key, sizes in CNN_SIZES.items()})
    ntk = copy.deepcopy({key: sizes[profile] for key, sizes in NTK_SIZES.items()})
    seeds, entk_m, gens_seeds = ((2, 128, 1), (3, 500, 1), (3, 1000, 1))[profile]
    cfg = ctx.sizes(
        {
            "cnn": cnn,
            "ntk": ntk,
            "seeds": seeds,
            "entk_m": entk_m,
            "generations_seeds": gens_seeds,
            "noise": _noise(ctx),
            "distill_start": None,
            "extra_models": ["resnet18"] if gpu else [],
        }
    )
    if cfg["distill_start"] is None:  # SAT's start epoch: 60 of 200 in the paper, 30% of training
        cfg["distill_start"] = int(round(0.3 * cfg["cnn"]["epochs"]))
    start = cfg["distill_start"]
    cfg["methods"] = {
        "ce": {},
        "self-distill": {"target_momentum": 0.8, "distill_start": start},
        "sat": {"target_momentum": 0.9, "distill_start": start},
        "generations": {"alpha": 0.6, "generations": 2},
    }
    cfg["method_seeds"] = {
        "ce": cfg["seeds"],
        "self-distill": cfg["seeds"],
        "sat": cfg["seeds"],
        "generations": cfg["generations_seeds"],
    }
    cfg["gpu"] = gpu
    return cfg


def _noise(ctx: RunContext) -> str:
    """The ``--noise`` spec (checked at once, so a bad one fails before any work), default symmetric:0.4."""
    return check_noise_spec(ctx.options.get("noise", NOISE))


def _noise_words(spec: str) -> str:
    kind = spec.split(":")[0]
    return {
        "symmetric": "the new label drawn from the 9 other classes, Co-teaching's convention",
        "uniform": "the label resampled from all 10 classes, the true one included, as in DivideMix, ELR and SAT",
    }.get(kind, kind)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(ctx: RunContext) -> RunOutput:
    """The whole run: training cells, the CE networks' kernels, the NTK regime, then verdicts, figures and report."""
    t_run = time.perf_counter()
    cfg = _config(ctx)
    data_path, source = _data_source(ctx)
    log = PartLog("confirm", _plan(cfg, ctx.seed), ctx.progress)
    runs, extra = _train(ctx, cfg, data_path)  # part 2: networks trained by SGD (feature-learning regime)
    kern, analytic_air = _kernels(ctx, log, cfg, runs, data_path)  # part 3: the CE networks' own kernels
    ntk = _ntk(ctx, log, cfg, data_path)  # part 1: NTK regime

    verdicts = _verdicts(runs, kern, analytic_air, ntk)
    figures = (*_plot_ntk(ntk, ctx), _plot_cnn(runs, ctx), _plot_kernel(kern, ctx))
    seconds = time.perf_counter() - t_run
    epoch_times = _epoch_times(ctx.directory, [r for rs in runs.values() for r in rs] + list(extra.values()))
    md = _report(cfg, source, runs, extra, kern, analytic_air, ntk, verdicts, seconds, epoch_times)
    _log("\n" + rules.verdict_table(verdicts) + "\n" + rules.verdict_summary(verdicts))
    numbers = {
        "config": cfg,
        "source": source,
        "verdicts": [v.to_dict() for v in verdicts],
        "summary": rules.verdict_summary(verdicts),
        "cnn": runs,
        "extra_models": extra,
        "kernel": kern,
        "kernel_analytic": analytic_air,
        "ntk": ntk,
    }
    return RunOutput(numbers=numbers, markdown=md, figures=figures, parameters=cfg)


def _data_source(ctx: RunContext) -> tuple[Path, str]:
    """The CIFAR-10 source and its description: ``--data``, or scikit-learn's digits written as CIFAR batches."""
    if ctx.data is not None:
        return Path(ctx.data), str(ctx.data)
    data_path = write_digits_as_cifar(ctx.directory / "digits", seed=ctx.seed)
    return data_path, "scikit-learn digits (8x8 upsampled to 32x32, tiled to RGB) written as CIFAR batches: no CIFAR-10 was given"


def _train(ctx: RunContext, cfg: dict, data_path: Path) -> tuple[dict[str, list[dict]], dict[str, dict]]:
    """Part 2: every method x seed trained as one sweep cell; the results per method, and the extra models' by cell."""
    cnn_cfg = {**cfg["cnn"], "noise": cfg["noise"]}
    if ctx.data is None:  # digits: 1397 training and 400 test images in all
        cnn_cfg.update(subset=None, test_subset=None)
    cells = _training_cells(cfg, cnn_cfg, str(data_path), ctx.seed, ctx.device)
    where = {k: ctx.options[k] for k in ("scheduler", "workers") if ctx.options.get(k) is not None}
    results, failed, _ = run_cells(
        [c for c, _ in cells], ctx.directory / TRAIN_DIR, inline=not where, progress=ctx.progress, **where
    )
    if failed:
        name, error = next(iter(failed.items()))
        raise BenchmarkError(
            f"confirm: {len(failed)} training cell(s) failed, first {name}: {error} "
            f"(traceback in {ctx.directory / TRAIN_DIR / CELLS_DIR / name / 'error.txt'})"
        )
    runs: dict[str, list[dict]] = {m: [] for m in cfg["methods"]}
    extra = {}
    for cell, params in cells:
        r = {
            "method": cell.values["method"],
            "params": params,
            "seed": cell.values["seed"],
            "run_dir": f"{TRAIN_DIR}/{CELLS_DIR}/{cell.name}/run",
            **results[cell.name],
        }
        if "model" in cell.values:  # GPU configuration: a second architecture
            extra[f"cnn-{cell.name}"] = r
        else:
            runs[cell.values["method"]].append(r)
    return runs, extra


def _kernels(ctx: RunContext, log: PartLog, cfg: dict, runs: dict, data_path: Path) -> tuple[list[dict], dict]:
    """Part 3: each CE network's empirical NTK (one part per seed), then the analytic kernels of the same images."""
    kern = []
    for r in runs["ce"]:
        key = f"kernel-seed{r['seed']}"
        kern.append(
            log.part(
                ctx,
                key,
                partial(_timed, kernel_part, ctx.directory / _run_dir(r), cfg["entk_m"], r["seed"], ctx.device),
                what=f"empirical NTK at init and at the early-stopping epoch on {cfg['entk_m']} images",
            )
        )
    analytic_air = log.part(
        ctx,
        "kernel-analytic",
        lambda: _analytic_air(data_path, ctx.directory / _run_dir(runs["ce"][0]), kern[0]),
        what=f"label spectra under the analytic ReLU NTK and the infinite-width CNN ({CNN_ARCHITECTURE}) of the same images",
    )
    return kern, analytic_air


def _ntk(ctx: RunContext, log: PartLog, cfg: dict, data_path: Path) -> dict:
    """Part 1: the NTK regime, NTK-parameterised MLPs of several widths beside the analytic curves."""
    from deep.data import load_cifar10

    return log.part(
        ctx,
        "ntk",
        lambda: ntk_regime(
            load_cifar10(data_path, progress=False), {**cfg["ntk"], "noise": cfg["noise"]}, ctx.seed, device=ctx.device, log=_log
        ),
        what="NTK-parameterised MLPs beside the analytic curves",
    )


TRAIN_DIR = "train"


def _training_cells(cfg: dict, cnn_cfg: dict, data: str, seed0: int, device: str) -> list[tuple[Cell, dict]]:
    """Part 2's training runs as sweep cells ``<method>-seed<k>`` (and ``<model>-<method>-seed<k>`` for the
    GPU configuration's second architecture), each with its method's parameters."""
    sized = {k: cnn_cfg[k] for k in TRAIN_SIZE_KEYS}
    shared = {
        **sized,
        "data": data,
        "noise": cnn_cfg["noise"],
        "device": device,
        "augment": cnn_cfg["augment"],
        "freq_subset": cnn_cfg["freq_subset"],
    }
    shared["model_options"] = dict(shared["model_options"])
    out = []
    for method, params in cfg["methods"].items():
        for k in range(cfg["method_seeds"][method]):
            values = {"method": method, "seed": seed0 + k}
            out.append((Cell(f"{method}-seed{seed0 + k}", values, {**shared, **params, **values}), params))
    for model in cfg["extra_models"]:
        for method in ("ce", "sat"):
            params = cfg["methods"][method]
            values = {"model": model, "method": method, "seed": seed0}
            config = {**shared, "model_options": {}, **params, **values}
            out.append((Cell(f"{model}-{method}-seed{seed0}", values, config), params))
    return out


def _plan(cfg: dict, seed: int) -> dict[str, float]:
    """Every part of the run in the order it runs, with a rough cost in CNN training epochs
    (for :class:`~benchmarks.progress.PartLog`'s estimate of the time left), after the training cells."""
    epochs = float(cfg["cnn"]["epochs"])
    plan = {f"kernel-seed{seed + k}": 1.0 for k in range(cfg["method_seeds"]["ce"])}  # training: the sweep's own lines
    return {**plan, "kernel-analytic": 0.5, "ntk": epochs}


def _run_dir(r: dict) -> str:
    """A training part's folder relative to the run's (parts written before ``run_dir`` existed hold ``out``)."""
    return r.get("run_dir") or f"train/{Path(r['out']).name}"


def _epoch_times(root: Path, results: list[dict]) -> np.ndarray:
    """Wall-clock seconds of every training epoch (training + evaluation) of the runs, from their records."""
    import json

    times = []
    for r in results:
        path = root / _run_dir(r) / "records.jsonl"
        if path.exists():
            times += [json.loads(line)["time"] for line in path.read_text().splitlines() if line.strip()]
    return np.asarray(times, dtype=float)


def _timed(fn: Any, *args: Any) -> dict:
    t = time.perf_counter()
    out = fn(*args)
    out["seconds"] = time.perf_counter() - t
    return out


CNN_ARCHITECTURE = "cntk-3"  # the analytic CNN: 3 conv+relu layers, flatten readout (per-position terms only: cheap)


def _analytic_air(data_path: Path, run_dir: Path, kern0: dict) -> dict:
    """Label-energy shares and predicted first-fit times under two analytic kernels of the same
    images: the ReLU NTK (depth 1) of the pixels and the infinite-width CNN's NTK
    (:func:`kernels.cnn_ntk`, :data:`CNN_ARCHITECTURE`) of the images. The kernel-regime numbers set
    beside the CNN's eNTK shares (P1) and beside the trained network's fit order (P2)."""
    from deep.data import load_cifar10
    from kernels import cnn_ntk
    from kernels.functions import ntk_relu

    t = time.perf_counter()
    split = np.load(run_dir / "split.npz")
    pos = np.asarray(kern0["positions"], dtype=np.int64)
    data = load_cifar10(data_path, progress=False)
    images = data.train_images[split["train_idx"][pos]].astype(np.float64) / 255.0
    imgs = images.reshape(len(pos), -1)
    X = imgs - imgs.mean(axis=0)
    X *= np.sqrt(X.shape[1]) / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    given, true = split["labels"][pos], split["true_labels"][pos]
    ks = kern0["ks"]

    relu = kernel_air_numbers(ntk_relu(X, depth=1), given, true, ks)
    t_relu = time.perf_counter() - t
    standardised = (images - images.mean(axis=(0, 1, 2))) / np.maximum(images.std(axis=(0, 1, 2)), 1e-12)
    t_cnn = time.perf_counter()
    cnn = {
        **kernel_air_numbers(cnn_ntk(standardised, architecture=CNN_ARCHITECTURE), given, true, ks),
        "architecture": CNN_ARCHITECTURE,
    }
    return {
        "ks": ks,
        **relu,
        "cnn": cnn,
        "seconds": time.perf_counter() - t,
        "seconds_relu": t_relu,
        "seconds_cnn": time.perf_counter() - t_cnn,
    }


def _ordering_lines(kern: list[dict], analytic_air: dict) -> list[str]:
    """Spearman's rho between each kernel's predicted first-fit times and the first CE network's
    measured first-fit epochs, on the clean and the flipped examples (P2's statistic, first seed)."""
    k0 = kern[0]
    pos = np.asarray(k0["positions"], dtype=np.int64)
    measured, flipped = as_inf(k0["measured_fit_all"])[pos], np.asarray(k0["flipped"], dtype=bool)
    kernels = [("eNTK at init", k0["kernels"]["init"]), ("eNTK at early stop", k0["kernels"]["es"])]
    kernels.append(("analytic ReLU NTK (pixels)", analytic_air))
    if analytic_air.get("cnn") is not None:
        kernels.append((f"analytic CNN NTK ({analytic_air['cnn']['architecture']})", analytic_air["cnn"]))
    rows = []
    for label, numbers in kernels:
        if "predicted_fit" not in numbers:  # parts saved before predicted fits were kept for the analytic kernels
            continue
        rho = {v.key: v.measured for v in rules.ordering_verdicts(measured, as_inf(numbers["predicted_fit"]), flipped)}
        rows.append([label, *(f"{rho.get(key, float('nan')):.3f}" for key in ("P2 rank clean", "P2 rank flipped"))])
    if len(rows) < 3:
        return []
    best = max(rows, key=lambda r: float(r[1]) if r[1] != "nan" else -2)
    return [
        "",
        f"Order of fitting, first CE seed ({len(pos)} examples): Spearman's rho between each kernel's predicted "
        "first-fit time and the epoch the trained network first fits the example.",
        "",
        *markdown_table(["kernel", "rho, clean examples", "rho, flipped examples"], rows),
        "",
        f"On the clean examples the highest rho is the {best[0]}'s ({best[1]}).",
    ]


def _stack(rs: list[dict], key: str) -> np.ndarray:
    return np.array([np.asarray(r["curves"][key], dtype=float) for r in rs])


def _verdicts(runs: dict, kern: list[dict], analytic_air: dict, ntk: dict) -> list[rules.Verdict]:
    out: list[rules.Verdict] = []
    ratio = np.asarray(analytic_air["clean_share"]) / np.maximum(np.asarray(analytic_air["noise_share"]), 1e-300)
    for when, label in (("init", "eNTK at init"), ("es", "eNTK at early stop")):
        clean = np.array([k["kernels"][when]["clean_share"] for k in kern])
        noise = np.array([k["kernels"][when]["noise_share"] for k in kern])
        for i, v in enumerate(rules.air_energy_verdicts(clean, noise, ENTK_FRACTIONS)):
            out.append(replace(v, key=f"{v.key} [{label}]", analytic=float(ratio[i])))
    for when, label in (("init", "eNTK at init"), ("es", "eNTK at early stop")):
        measured = [as_inf(k["measured_fit_all"])[np.asarray(k["positions"], dtype=np.int64)] for k in kern]
        predicted = [as_inf(k["kernels"][when]["predicted_fit"]) for k in kern]
        flipped = [np.asarray(k["flipped"], dtype=bool) for k in kern]
        for v in rules.ordering_verdicts(measured, predicted, flipped):
            if when == "es" and "(net)" in v.key:
                continue  # the measured ordering does not depend on the kernel: report it once
            out.append(replace(v, key=f"{v.key} [{label}]") if "(net)" not in v.key else v)
    ce = runs["ce"]
    out.append(rules.early_stopping_verdict(_stack(ce, "test_acc"), _stack(ce, "train_acc_flipped_given")))
    ce_es = [r["test_acc_at_best_val"] for r in ce]
    ce_final = [r["final_test_acc"] for r in ce]
    ce_mem = [r["final_memorised"] for r in ce]
    for method in ("self-distill", "sat", "generations"):
        rs = runs.get(method, [])
        if rs:
            out.extend(
                rules.distillation_verdicts(
                    method, [r["final_test_acc"] for r in rs], [r["final_memorised"] for r in rs], ce_es, ce_final, ce_mem
                )
            )
    widths = ntk["widths"]
    for rule in ("gd", "chained"):
        curves = [np.asarray(ntk["per_width"][str(w)][rule]["test_acc"], dtype=float) for w in widths]
        gaps = [np.asarray(ntk["per_width"][str(w)][rule]["gap_train"], dtype=float)[:, -1] for w in widths]
        for v in rules.ntk_regime_verdicts(widths, curves, np.asarray(ntk["theory"][rule]["test_acc"], dtype=float), gaps):
            out.append(replace(v, key=f"{v.key} [{rule}]"))
    return out


# ----------------------------------------------------------------------------- report


def _ms(values: Any, digits: int = 3) -> str:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return "—"
    if v.size == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def _method_row(name: str, rs: list[dict], epoch: Any) -> list[Any]:
    """One row of the methods table: the mean ± std over the runs ``rs`` (one run: its number)."""
    return [
        name,
        len(rs),
        epoch,
        *(
            _ms([r[k] for r in rs])
            for k in ("test_acc_at_best_val", "best_test_acc", "final_test_acc", "final_memorised", "final_recovered")
        ),
        _ms([r["seconds"] for r in rs], 0),
    ]


def _report(
    cfg: dict,
    source: str,
    runs: dict,
    extra: dict,
    kern: list[dict],
    analytic_air: dict,
    ntk: dict,
    verdicts: list[rules.Verdict],
    seconds: float,
    epoch_times: np.ndarray,
) -> str:
    """The report's markdown: one section after another, each from its own function."""
    lines = [
        *_verdicts_section(verdicts),
        *_plain_words_section(verdicts),
        *_data_section(cfg, source, runs, kern, ntk),
        *_methods_section(cfg, runs, extra),
        *_kernel_section(kern, analytic_air),
        *_ntk_section(ntk),
        *_time_section(runs, extra, kern, analytic_air, ntk, seconds, epoch_times),
    ]
    return "\n".join(lines)


def _verdicts_section(verdicts: list[rules.Verdict]) -> list[str]:
    """The report's opening summary line and its "Verdicts" section (the verdict table)."""
    return [f"**{rules.verdict_summary(verdicts)}**", "", "## Verdicts", "", rules.verdict_table(verdicts), ""]


def _plain_words_section(verdicts: list[rules.Verdict]) -> list[str]:
    """The report's "In plain words" section: one bullet per prediction group."""
    return ["## In plain words", "", *_plain_words(verdicts), ""]


def _data_section(cfg: dict, source: str, runs: dict, kern: list[dict], ntk: dict) -> list[str]:
    """The report's "Data and configurations" section: the data, the noise and one bullet per regime."""
    ce = runs["ce"][0]["data"]
    return [
        "## Data and configurations",
        "",
        f"Data: {source}. Noise: `{cfg['noise']}` ({_noise_words(cfg['noise'])}); realised error rate {ce.get('realised_error_rate', float('nan')):.3f} of "
        f"{ce['n_train']} training images ({ce['n_flipped']} flipped) in the CNN runs, "
        f"{ntk['realised_error_rate']:.3f} in the NTK part.",
        "",
        _feature_learning_words(cfg, runs),
        f"- **Network's own kernel (P1, P2).** Empirical NTK (trace over the 10 logits) of each CE network at "
        f"initialisation and at its early-stopping epoch, on {len(kern[0]['positions'])} training images; labels "
        "centred one-hot. Predicted: each example's half-fit time in linearised gradient flow under that kernel on the "
        "noisy labels (half of its own target row fitted); measured: the first epoch at which the trained CE network "
        "predicts the given label. The analytic column of "
        "P1 is the clean/noise share ratio under the analytic ReLU NTK (depth 1) of the same images' centred pixels.",
        _ntk_regime_words(ntk, cfg["ntk"]["lr_scale"]),
        "",
    ]


def _feature_learning_words(cfg: dict, runs: dict) -> str:
    """The "Data and configurations" bullet on the feature-learning regime (P3, P4): network, training, methods."""
    ce, cnn = runs["ce"][0]["data"], cfg["cnn"]
    return (
        f"- **Feature-learning regime (P3, P4).** {cnn['model']} {cnn['model_options'] or '(default widths)'}, "
        f"{ce['n_train']} training / {ce['n_val']} noisy validation / {ce['n_test']} test images, "
        f"{cnn['epochs']} epochs (linear warm-up and decay), batch {cnn['batch_size']}, lr {cnn['lr']}, "
        f"augmentation {'on' if cnn['augment'] else 'off'}. {_regime_words(runs)} "
        f"self-distill: target momentum {cfg['methods']['self-distill']['target_momentum']} (weight on the previous "
        f"epoch's target), SAT: target momentum {cfg['methods']['sat']['target_momentum']} (the paper's 0.9), both "
        f"starting at epoch {cfg['distill_start']} "
        f"({_start_words(cfg)}); generations: alpha "
        f"{cfg['methods']['generations']['alpha']} on the noisy label, {cfg['methods']['generations']['generations']} generations. Early stopping: CE's epoch of "
        "best noisy-validation accuracy. Seeds: " + ", ".join(f"{m} {len(r)}" for m, r in runs.items()) + "."
    )


def _ntk_regime_words(ntk: dict, lr_scale: float) -> str:
    """The "Data and configurations" bullet on the NTK regime (P5): the MLPs, their training and input."""
    return (
        f"- **NTK regime (P5).** NTK-parameterised MLPs (depth {ntk['depth']}, widths {ntk['widths']}, {ntk['seeds']} "
        f"seeds each), full-batch GD on the squared loss, {ntk['steps']} steps at lr = {lr_scale:g}/d_max = {ntk['lr']:.4g}, "
        f"n = {ntk['n']} training images with {ntk['n_val']} noisy validation and {ntk['n_test']} test images. Input "
        f"reduced for the CPU: images projected on their top {ntk['dim']} principal components, rows scaled to norm "
        f"sqrt({ntk['dim']}); the analytic ntk_relu sees the same inputs. Chained self-distillation uses the target "
        f"momentum m = 1 - 1/k* = {ntk['target_momentum']:.4f}, with k* = {ntk['k_star']} the analytic early-stopping "
        f"step (best noisy validation), so that its limit, KRR with ridge (1 - m)/lr = {ntk['chained_ridge']:.3g}, matches the "
        "early-stopped filter. One eigendecomposition gives every analytic curve."
    )


def _methods_section(cfg: dict, runs: dict, extra: dict) -> list[str]:
    """The report's "Feature-learning regime: the methods" section: the methods table, GPU targets, CE's peak."""
    lines = [
        "## Feature-learning regime: the methods",
        "",
        *markdown_table(
            [
                "method",
                "seeds",
                "early-stop epoch",
                "test acc at early stop",
                "best test acc",
                "final test acc",
                "final memorised",
                "final recovered",
                "train time per run (s)",
            ],
            [
                *(_method_row(m, rs, _ms([r["best_epoch"] for r in rs], 1)) for m, rs in runs.items()),
                *(_method_row(key, [r], r["best_epoch"]) for key, r in extra.items()),
            ],
        ),
    ]
    if cfg.get("gpu"):
        lines += [*_gpu_target_lines(runs, cfg["noise"]), ""]
    ce_runs = runs["ce"]
    peak = [int(np.argmax(r["curves"]["test_acc"])) + 1 for r in ce_runs]
    mem = _stack(ce_runs, "train_acc_flipped_given")
    mem50 = [int(np.argmax(row >= 0.5)) + 1 if np.any(row >= 0.5) else None for row in mem]
    return [
        *lines,
        "",
        f"CE's test accuracy peaked at epoch(s) {peak}; its memorisation of the flipped labels first reached 50% "
        f"at epoch(s) {mem50} and ended at {_ms(mem[:, -1])}.",
        "",
    ]


def _gpu_target_lines(runs: dict, noise: str) -> list[str]:
    """The methods section's GPU-configuration lines: self-distill's and SAT's accuracy and time targets, met or missed."""
    lines = []
    for m in ("self-distill", "sat"):
        rs = runs[m]
        acc = np.mean([r["final_test_acc"] for r in rs])
        minutes = np.mean([r["seconds"] or 0 for r in rs]) / 60
        ok = acc >= 0.88 and minutes < 10
        lines.append(
            f"GPU target for {m} (final test accuracy >= 0.88 in under 10 min per run at 40% noise): "
            f"measured {acc:.3f} in {minutes:.1f} min per run with noise {noise}: {'met' if ok else 'missed'}"
            + ("." if noise == NOISE else " (another noise than the target's: not comparable).")
        )
    return lines


def _kernel_section(kern: list[dict], analytic_air: dict) -> list[str]:
    """The report's "The network's own kernel" section: label-energy shares, fitting order, early-stopping epochs."""
    shares = []
    for when, label in (("init", "eNTK at init"), ("es", "eNTK at early stop")):
        for which in ("clean", "noise"):
            vals = np.array([k["kernels"][when][f"{which}_share"] for k in kern])
            shares.append([f"{label}, {which} share", *(_ms(vals[:, j]) for j in range(vals.shape[1]))])
    for which in ("clean", "noise"):
        shares.append([f"analytic ReLU NTK (pixels), {which} share", *(f"{v:.3f}" for v in analytic_air[f"{which}_share"])])
    cnn = analytic_air.get("cnn")  # absent in parts saved before the CNN kernel existed
    if cnn is not None:
        for which in ("clean", "noise"):
            shares.append(
                [f"analytic CNN NTK ({cnn['architecture']}), {which} share", *(f"{v:.3f}" for v in cnn[f"{which}_share"])]
            )
    lines = [
        "## The network's own kernel",
        "",
        *markdown_table(["kernel", *(f"top {100 * f:g}% ({k})" for f, k in zip(ENTK_FRACTIONS, kern[0]["ks"]))], shares),
        *_ordering_lines(kern, analytic_air),
        "",
        f"Early-stopping epochs of the CE networks whose kernels were taken: {[k['es_epoch'] for k in kern]}.",
        "",
    ]
    if all("predicted_fit_argmax" in k["kernels"]["init"] for k in kern):
        lines += [_argmax_words(kern), ""]
    return lines


def _ntk_section(ntk: dict) -> list[str]:
    """The report's "NTK regime" section: the per-width table and the analytic curves' summary."""
    regime = []
    for w in ntk["widths"]:
        for rule in ("gd", "chained"):
            e = ntk["per_width"][str(w)][rule]
            acc = np.asarray(e["test_acc"], dtype=float)
            th = np.asarray(ntk["theory"][rule]["test_acc"], dtype=float)
            regime.append(
                [
                    w,
                    rule,
                    _ms(acc[:, -1]),
                    f"{th[-1]:.3f}",
                    f"{np.max(np.abs(acc.mean(0) - th)):.3f}",
                    _ms(np.asarray(e["gap_train"], dtype=float)[:, -1]),
                    _ms(e["param_change"], 4),
                ]
            )
    sm = ntk["summary"]
    return [
        "## NTK regime",
        "",
        *markdown_table(
            [
                "width",
                "rule",
                "final test acc (net)",
                "final test acc (theory)",
                "max abs. deviation of the test-acc curve",
                "final train-output gap",
                "param. change",
            ],
            regime,
        ),
        "",
        f"Analytic curves: gd peaks at step {sm['gd_best_step']:.0f} with test accuracy {sm['gd_best_test_acc']:.3f} "
        f"and ends at {sm['gd_final_test_acc']:.3f} with {sm['gd_final_acc_flipped_given']:.3f} of the flipped labels "
        f"memorised; chained ends at {sm['chained_final_test_acc']:.3f} with {sm['chained_final_acc_flipped_given']:.3f} "
        "memorised.",
        "",
    ]


def _time_section(
    runs: dict, extra: dict, kern: list[dict], analytic_air: dict, ntk: dict, seconds: float, epoch_times: np.ndarray
) -> list[str]:
    """The report's "Where the time went" section: the session's time, each part's time and the epochs' pace."""
    t_cnn = {m: float(sum(r["seconds"] or 0 for r in rs)) for m, rs in runs.items()}
    t_extra = float(sum(r["seconds"] or 0 for r in extra.values()))
    t_kern = float(sum(k.get("seconds", 0) for k in kern)) + float(analytic_air.get("seconds", 0))
    lines = [
        "## Where the time went",
        "",
        f"This session of the run took {seconds:.0f} s (parts finished in an earlier session are read back, and their "
        "times below are those of the session that computed them). Training: "
        + ", ".join(f"{m} {t:.0f} s" for m, t in t_cnn.items())
        + (f", extra models {t_extra:.0f} s" if extra else "")
        + f"; empirical NTKs and label spectra {t_kern:.0f} s; NTK regime {ntk['seconds']:.0f} s "
        f"(of which {ntk['seconds_theory']:.0f} s for the kernel, its eigendecomposition and every analytic curve).",
        "",
    ]
    if epoch_times.size:
        lines += [_epoch_pace_words(epoch_times), ""]
    return lines


def _epoch_pace_words(epoch_times: np.ndarray) -> str:
    """The time section's line on the training epochs: total, median and how many ran slow."""
    med, total = float(np.median(epoch_times)), float(epoch_times.sum())
    slow = int(np.sum(epoch_times > 2 * med))
    if slow:
        return (
            f"{epoch_times.size} training epochs took {total:.0f} s in all; the median epoch took {med:.1f} s, so at "
            f"that pace training needs {epoch_times.size * med / 60:.1f} min. {slow} epoch(s) took more than twice the "
            "median (the cores were shared with other work while they ran)."
        )
    return f"{epoch_times.size} training epochs took {total:.0f} s in all (median epoch {med:.1f} s)."


def _argmax_words(kern: list[dict]) -> str:
    """Spearman rho of the measured first-fit epochs against the kernel's argmax first-fit times (the other
    criterion, beside the half-fit times the verdicts use), per kernel and subset, mean over seeds."""
    from scipy.stats import spearmanr

    def top(a: np.ndarray) -> np.ndarray:
        finite = a[np.isfinite(a)]
        return np.where(np.isfinite(a), a, (finite.max() + 1) * 2 if finite.size else 1.0)

    parts = []
    for when, label in (("init", "at init"), ("es", "at early stop")):
        for subset in ("clean", "flipped"):
            rhos = []
            for k in kern:
                pos = np.asarray(k["positions"], dtype=np.int64)
                mask = np.asarray(k["flipped"], dtype=bool) == (subset == "flipped")
                meas = top(as_inf(k["measured_fit_all"])[pos][mask])
                pred = top(as_inf(k["kernels"][when]["predicted_fit_argmax"])[mask])
                varied = mask.sum() > 2 and np.ptp(pred) > 0 and np.ptp(meas) > 0
                rhos.append(float(spearmanr(pred, meas).statistic) if varied else float("nan"))
            parts.append(f"{label}, {subset} {_ms(rhos)}")
    return (
        "With the other per-example criterion, the first time the linearised model's largest output is the given "
        "label (instead of half of the target fitted), the Spearman rho against the measured first-fit epochs are: "
        + "; ".join(parts)
        + " (mean ± std over seeds; not a verdict)."
    )


def _regime_words(runs: dict) -> str:
    """Whether CE reached the regime P3/P4 are about (memorising the flipped labels), from the run's numbers."""
    mem = np.array([r["final_memorised"] for r in runs["ce"]], dtype=float)
    if np.all(mem >= 0.5):
        return (
            f"Plain CE ends with {_ms(mem)} of the flipped labels memorised, so the run reaches the regime the "
            "predictions are about: what each method does once plain CE memorises."
        )
    return (
        f"Plain CE ends with only {_ms(mem)} of the flipped labels memorised (below 0.5 in at least one seed): this "
        "configuration does not reach the memorising regime, so P3 and P4 are tested outside the regime they are "
        "about (more epochs, a larger network or harder data would reach it)."
    )


def _start_words(cfg: dict) -> str:
    rule = int(round(0.3 * cfg["cnn"]["epochs"]))
    return "30% of training, as SAT's 60 of 200" if cfg["distill_start"] == rule else "set by the caller"


_GROUPS = {
    "P1": "AIR in the CNN's own kernel (clean labels in the top eigen-directions, noise in the tail)",
    "P2": "the fitting order (clean before flipped; the linearised model's order of the examples)",
    "P3": "early stopping (CE peaks before it memorises)",
    "P4": "self-distillation as early stopping without stopping",
    "P5": "the NTK regime (wide MLPs follow the analytic kernel dynamics)",
}


def _plain_words(verdicts: list[rules.Verdict]) -> list[str]:
    """One bullet per prediction group, computed from the verdicts: what held, what did not, and the numbers."""
    out = []
    for group, words in _GROUPS.items():
        vs = [v for v in verdicts if v.key.startswith(group)]
        if not vs:
            continue
        held = [v for v in vs if v.passed]
        state = "held" if len(held) == len(vs) else "did not hold" if not held else f"held in {len(held)} of {len(vs)} checks"
        out.append(f"- **{group}, {words}: {state}.**")
        for v in vs:
            out.append(f"  - {v.key}: {'holds' if v.passed else 'does not hold'} ({v.tolerance}); {v.detail}")
    return out


# ----------------------------------------------------------------------------- figures


def _plot_ntk(ntk: dict, ctx: RunContext) -> tuple[str, str]:
    import matplotlib.pyplot as plt

    record = np.asarray(ntk["record"], dtype=float)
    t = np.maximum(record, 0.5)  # step 0 drawn at 0.5 on the log axis
    widths = ntk["widths"]
    cmap = plt.get_cmap("viridis")
    panels = (
        ("test_acc", "test accuracy"),
        ("memorised", "flipped vs given label (memorised)"),
        ("recovered", "flipped vs true label (recovered)"),
        ("train_acc_clean", "clean training subset"),
    )
    fig, axes = plt.subplots(2, 5, figsize=(22, 7.5), layout="constrained")
    for row, rule in enumerate(("gd", "chained")):
        th = ntk["theory"][rule]
        for col, (key, title) in enumerate(panels):
            ax = axes[row, col]
            for i, w in enumerate(widths):
                v = np.asarray(ntk["per_width"][str(w)][rule][key], dtype=float)
                ax.semilogx(t, v.mean(0), color=cmap(i / max(len(widths) - 1, 1)), label=f"net, width {w}")
            ax.semilogx(t, np.asarray(th[key], dtype=float), "k--", lw=2, label="analytic NTK")
            ax.set_title(f"{rule}: {title}", fontsize=9)
            ax.set_xlabel("GD step")
            ax.set_ylabel("accuracy")
            ax.legend(fontsize=6)
        ax = axes[row, 4]
        for i, w in enumerate(widths):
            g = np.asarray(ntk["per_width"][str(w)][rule]["gap_train"], dtype=float).mean(0)
            ax.loglog(t[1:], g[1:], color=cmap(i / max(len(widths) - 1, 1)), label=f"width {w}")
        ax.set_title(f"{rule}: relative output gap (train)", fontsize=9)
        ax.set_xlabel("GD step")
        ax.set_ylabel("||u_net - u_theory|| / ||u_theory||")
        ax.legend(fontsize=6)
    atomic_savefig(fig, ctx.path("ntk_regime.png"))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4), layout="constrained")
    ws = np.asarray(widths, dtype=float)
    for rule, marker in (("gd", "o"), ("chained", "s")):
        g = np.array([np.asarray(ntk["per_width"][str(w)][rule]["gap_train"], dtype=float)[:, -1].mean() for w in widths])
        ax.loglog(ws, g, marker + "-", label=f"{rule}: final train-output gap")
        ax.loglog(ws, g[0] * (ws / ws[0]) ** -0.5, ":", color="gray")
    ax.set_xticks(ws, [str(w) for w in widths])
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set_xlabel("width")
    ax.set_ylabel("relative gap")
    ax.set_title("gap vs width (dotted: width^-1/2)")
    ax.legend(fontsize=7)
    atomic_savefig(fig, ctx.path("ntk_gap_width.png"))
    plt.close(fig)
    return "ntk_regime.png", "ntk_gap_width.png"


def _plot_cnn(runs: dict, ctx: RunContext) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2), layout="constrained")
    styles = {"ce": "-", "self-distill": "--", "sat": "-.", "generations": ":"}
    for m, rs in runs.items():
        e = np.asarray(rs[0]["curves"]["global_epoch"], dtype=float)
        for ax, key in zip(axes, ("test_acc", "train_acc_flipped_given", "train_acc_flipped_true")):
            v = _stack(rs, key)
            (line,) = ax.plot(e, v.mean(0), styles.get(m, "-"), marker="o", ms=3, label=f"{m} ({len(rs)} seeds)")
            if len(rs) > 1:
                ax.fill_between(e, v.min(0), v.max(0), color=line.get_color(), alpha=0.15)
    ce = runs["ce"]
    es = [r["best_epoch"] for r in ce if r["best_epoch"] is not None]
    for ax, title in zip(
        axes, ("clean test accuracy", "flipped subset vs given label (memorised)", "flipped subset vs true label (recovered)")
    ):
        for b in es:
            ax.axvline(b, color="gray", lw=0.8, ls=":")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch (over all generations)")
        ax.set_ylabel("accuracy")
        ax.legend(fontsize=7)
    fig.suptitle(
        "feature-learning regime: lines = mean over seeds, bands = min-max over seeds, dotted verticals = CE's "
        "early-stopping epochs",
        fontsize=9,
    )
    atomic_savefig(fig, ctx.path("cnn_methods.png"))
    plt.close(fig)
    return "cnn_methods.png"


def _plot_kernel(kern: list[dict], ctx: RunContext) -> str:
    import matplotlib.pyplot as plt
    from scipy.stats import rankdata

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2), layout="constrained")
    ks = kern[0]["ks"]
    x = np.arange(len(ks))
    bars = (("init", "clean", "tab:blue"), ("init", "noise", "tab:red"), ("es", "clean", "navy"), ("es", "noise", "darkred"))
    for j, (when, which, col) in enumerate(bars):
        v = np.array([k["kernels"][when][f"{which}_share"] for k in kern])
        axes[0].bar(
            x + (j - 1.5) * 0.2,
            v.mean(0),
            width=0.2,
            color=col,
            yerr=v.std(0) if len(kern) > 1 else None,
            label=f"{which}, eNTK at {'init' if when == 'init' else 'early stop'}",
        )
    axes[0].set_xticks(x, [f"top {100 * f:g}% ({k})" for f, k in zip(ENTK_FRACTIONS, ks)])
    axes[0].set_ylabel("share of label energy")
    axes[0].set_title("P1: label energy in the top eigen-directions (CNN eNTK)", fontsize=9)
    axes[0].legend(fontsize=7)
    bins = 10
    for ax, when in zip(axes[1:], ("init", "es")):
        for subset, col in (("clean", "tab:blue"), ("flipped", "tab:red")):
            curves = []
            for k in kern:  # per seed: mean measured first-fit epoch in each decile of the predicted half-fit time
                pos = np.asarray(k["positions"], dtype=np.int64)
                measured = as_inf(k["measured_fit_all"])[pos]
                never = np.nanmax(np.where(np.isfinite(measured), measured, np.nan)) + 1 if np.any(np.isfinite(measured)) else 1.0
                measured = np.where(np.isfinite(measured), measured, never)
                pred = as_inf(k["kernels"][when]["predicted_fit"])
                decile = np.minimum((rankdata(pred, method="ordinal") - 1) * bins // len(pred), bins - 1)
                mask = np.asarray(k["flipped"], dtype=bool) == (subset == "flipped")
                curves.append(
                    [measured[mask & (decile == b)].mean() if np.any(mask & (decile == b)) else np.nan for b in range(bins)]
                )
            c = np.array(curves)
            with warnings.catch_warnings():  # a decile with no example of this subset in any seed stays NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, std = np.nanmean(c, axis=0), np.nanstd(c, axis=0, ddof=0)
            ax.errorbar(
                np.arange(1, bins + 1),
                mean,
                yerr=std if len(kern) > 1 else None,
                marker="o",
                color=col,
                capsize=2,
                label=f"{subset} examples",
            )
        ax.set_xlabel("decile of the predicted half-fit time (linearised, eNTK): 1 = earliest")
        ax.set_ylabel("mean measured first-fit epoch (CE net)")
        ax.set_title(f"P2: eNTK at {'init' if when == 'init' else 'early stop'} (mean ± std over {len(kern)} seeds)", fontsize=9)
        ax.legend(fontsize=7)
    atomic_savefig(fig, ctx.path("kernel_air.png"))
    plt.close(fig)
    return "kernel_air.png"


BENCHMARK = Benchmark.from_docstring(__doc__, run, options=("noise", "scheduler", "workers"))
