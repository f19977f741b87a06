"""The toolkit's one command line: ``python -m benchmarks`` / ``airkit``.

airkit list                       what exists, one line each
airkit run NAME... [options]      run named benchmarks (or ``all``), write reports
airkit train [deep.train options] train a network on noisy CIFAR-10 (= python -m deep.train)
airkit gpu-check [--budget S] ...  run every GPU path once (benchmarks/gpu_check.py; --dry-run: the plan)
airkit sweep --grid K=V1,V2 ...    a grid of deep.train runs, each cell a Dask task (benchmarks/sweep.py)
"""

from __future__ import annotations

import argparse
import math
import numbers
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.registry import Benchmark, BenchmarkError, RunContext
from benchmarks.report import markdown_table
from benchmarks.run_files import (
    atomic_write_json,
    atomic_write_text,
    environment,
    finalize_dir,
    latest_partial_dir,
    new_partial_dir,
)
from benchmarks.runs import ALL_RUNS, air_spectrum, analytic_vs_trained, cnn_kernels, frequency, noisy_cifar
from benchmarks.runs.toy_distill import parse_alphas
from deep.files import CHECKPOINT_FILE

# Run-specific options and their help; the runs that take each one come from their ``options``.
RUN_OPTIONS: dict[str, str] = {
    "gamma": "RBF gamma > 0 (k = exp(-gamma |x-x'|^2)); default 80",
    "ridge": "ridge lambda > 0; default 0.2",
    "alphas": "comma-separated distillation weights alpha in [0,1]; default 0,0.25,0.35,0.6,1",
    "steps": "distillation steps >= 1; default 10",
    "n": "number of training points/images (cnn-kernels: the largest of its three sizes)",
    "epochs": "training epochs >= 1",
    "scheduler": "run the training cells on this Dask scheduler (e.g. tcp://host:8786; see airkit sweep)",
    "workers": "run the training cells on a local Dask cluster of this many workers (default: in this process)",
    "noise": "label noise: symmetric:<rate> (new label from the 9 other classes, Co-teaching) or uniform:<rate> "
    "(from all 10 classes, DivideMix/ELR/SAT); default symmetric:0.4",
}

# The smallest --n of each run that takes one, and why (the runs' own constants).
MIN_N = {
    m.BENCHMARK.name: (m.MIN_N, m.MIN_N_WHY) for m in (air_spectrum, analytic_vs_trained, frequency, noisy_cifar, cnn_kernels)
}


# ----------------------------------------------------------------------------- option values


def _runs_taking(option: str) -> list[str]:
    """The names of the runs that accept ``--<option>``."""
    return [b.name for b in ALL_RUNS if option in b.options]


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, str):
        return int(value.strip())
    raise ValueError(value)


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (numbers.Real, str)):
        return float(value)
    raise ValueError(value)


def _shown(value: Any) -> str:
    """A value as the user gave it: command-line text unquoted, Python values by repr."""
    return value if isinstance(value, str) else repr(value)


def _checked(flag: str, value: Any, convert: Any, ok: Any, allowed: str) -> Any:
    """``convert(value)`` if it converts and satisfies ``ok``; else a one-line BenchmarkError naming the flag."""
    try:
        converted = convert(value)
    except (TypeError, ValueError, OverflowError):
        raise BenchmarkError(f"{flag} must be {allowed}; got {value!r}") from None
    if not ok(converted):
        raise BenchmarkError(f"{flag} must be {allowed}; got {_shown(value)}")
    return converted


def _min_n(benches: Sequence[Benchmark]) -> tuple[int, str]:
    needs = [MIN_N.get(b.name, (1, "")) for b in benches if "n" in b.options]
    return max(needs, key=lambda t: t[0]) if needs else (1, "")


def check_out(out: Path) -> Path:
    """``--out``: a folder that exists or can be made, and that this user can write into."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BenchmarkError(f"--out {out} is a file; give a folder for the results (it is created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".airkit-write-test-")
        probe.close()
    except OSError as exc:
        raise BenchmarkError(
            f"--out {out} is not writable ({exc.strerror or type(exc).__name__}); choose a folder you can write to"
        ) from None
    return out


def check_seed(value: Any) -> int:
    """``--seed``: an integer >= 0."""
    return _checked("--seed", value, _to_int, lambda v: v >= 0, "an integer >= 0")


def check_run_options(options: dict[str, Any], benches: Sequence[Benchmark]) -> dict[str, Any]:
    """The run options (CLI text or Python values) converted and range-checked, else one-line errors.

    A value given is used or refused, never replaced by a default: gamma and ridge are
    finite floats > 0, steps and epochs integers >= 1, n an integer >= what the
    selected runs need (:data:`MIN_N`), alphas comma-separated numbers in [0, 1].
    """
    out: dict[str, Any] = {}
    positive = lambda v: math.isfinite(v) and v > 0  # noqa: E731
    for key, value in options.items():
        flag = f"--{key}"
        if key not in RUN_OPTIONS:
            raise BenchmarkError(f"unknown run option {key!r}; known: {', '.join(RUN_OPTIONS)}")
        if key in ("gamma", "ridge"):
            out[key] = _checked(flag, value, _to_float, positive, "a finite float > 0")
        elif key in ("steps", "epochs", "workers"):
            out[key] = _checked(flag, value, _to_int, lambda v: v >= 1, "an integer >= 1")
        elif key == "n":
            low, why = _min_n(benches)
            out[key] = _checked(flag, value, _to_int, lambda v: v >= low, f"an integer >= {low}" + (f" ({why})" if why else ""))
        elif key == "alphas":
            parse_alphas(value)
            out[key] = value
        else:
            if not isinstance(value, str):
                raise BenchmarkError(f"{flag} must be a string; got {value!r}")
            out[key] = value
    return out


def _benchmarks() -> dict[str, Benchmark]:
    return {b.name: b for b in ALL_RUNS}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="airkit", description="airkit: theory benchmarks, analytic limits beside trained networks."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{list,run,train,sweep,gpu-check}")
    sub.add_parser("list", help="list the named runs, one line each", description="List the named benchmark runs.")
    run = sub.add_parser(
        "run",
        help="run named benchmarks and write their reports",
        description="Run named benchmarks (or 'all'); each writes <out>/<name>/<timestamp>/ with "
        "result.json, report.md and PNG figures, and <out>/index.md links them.",
    )
    run.add_argument("names", nargs="+", metavar="NAME", help="run names from `airkit list`, or 'all'")
    run.add_argument("--quick", action="store_true", help="small sizes (minutes on 2 CPU cores in total)")
    run.add_argument("--out", type=Path, default=Path("results"), help="output root directory (default: results)")
    run.add_argument(
        "--data",
        type=Path,
        default=None,
        help="data file: points.csv (x,y) for toy-distill; a CIFAR-10 source (python batches, their .tar.gz, "
        "an image-folder tree or its tarball) for the image runs",
    )
    run.add_argument(
        "--download",
        action="store_true",
        help="download the official cifar-10-python.tar.gz (MD5-checked) into the folder --data first and use it "
        "(needs network access; an existing good copy is reused)",
    )
    run.add_argument(
        "--backend",
        choices=("numpy", "torch", "cupy"),
        default="numpy",
        help="array backend of the kernel-side runs (toy-distill, air-spectrum); the network runs use torch",
    )
    run.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device for torch/CuPy arrays and training")
    run.add_argument("--seed", type=str, default="0", help="random seed, an integer >= 0 (default 0)")
    run.add_argument(
        "--resume", action="store_true", help="continue the newest unfinished run of each name, skipping finished parts"
    )
    run.add_argument("--no-progress", action="store_true", help="hide progress bars and per-part progress lines")
    for key, text in RUN_OPTIONS.items():  # values: converted and range-checked by check_run_options
        text = f"{', '.join(_runs_taking(key))}: {text}"
        if key == "n":
            text += "; at least " + ", ".join(f"{m} for {name}" for name, (m, _why) in MIN_N.items())
        run.add_argument(f"--{key}", type=str, default=None, help=text)
    train = sub.add_parser("train", help="train a network on noisy CIFAR-10 (python -m deep.train)", add_help=False)
    train.add_argument("train_args", nargs=argparse.REMAINDER)
    gpu = sub.add_parser(
        "gpu-check",
        help="run every GPU path once within --budget seconds (--dry-run: print the plan)",
        add_help=False,
    )
    gpu.add_argument("gpu_check_args", nargs=argparse.REMAINDER)
    _add_sweep_parser(sub)
    return parser


def _add_sweep_parser(sub: Any) -> None:
    sw = sub.add_parser(
        "sweep",
        help="run a grid of deep.train runs (e.g. methods x seeds), each cell a Dask task; rerun to resume",
        description="Run every combination of the --grid values (and a --file grid) as one deep.train run, on a local "
        "Dask cluster or an existing one (--scheduler); each cell writes <out>/cells/<cell>/ atomically, a rerun skips "
        "finished cells and resumes interrupted ones, and <out>/report.md holds mean +- std over seeds.",
    )
    sw.add_argument(
        "--file",
        type=Path,
        default=None,
        help='grid file (.toml or .yaml) with tables [grid], [fixed] and optionally [when."AXIS=VALUE"]',
    )
    sw.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="an axis: a TrainConfig field and its comma-separated values, repeatable (e.g. --grid method=ce,sat --grid seed=0,1,2)",
    )
    sw.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting shared by every cell, repeatable (e.g. --set data=cifar-10-python.tar.gz --set epochs=15)",
    )
    sw.add_argument(
        "--when",
        action="append",
        default=[],
        metavar="AXIS=VALUE:KEY=VALUE",
        help="a setting only for the cells with that axis value, repeatable (e.g. --when method=sat:target_momentum=0.9)",
    )
    sw.add_argument("--out", type=Path, default=Path("results/sweep"), help="the sweep's folder (default: results/sweep)")
    sw.add_argument("--scheduler", default=None, metavar="ADDRESS", help="an existing Dask scheduler, e.g. tcp://host:8786")
    sw.add_argument("--workers", default=None, help="local cluster workers (default: one per GPU, or one per 4 cores)")
    sw.add_argument(
        "--threads-per-worker", default=None, help="torch threads per cell (default: the worker's share of the cores)"
    )
    sw.add_argument("--inline", action="store_true", help="run the cells in this process, one after another, without Dask")
    sw.add_argument(
        "--over", default=None, help="comma-separated axes averaged over in the report (default: seed, when it is an axis)"
    )
    sw.add_argument("--no-progress", action="store_true", help="no progress lines")


def _sweep_main(args: argparse.Namespace) -> int:
    from benchmarks.sweep import CELLS_DIR, sweep
    from benchmarks.sweep_grid import SweepError, grid_from_options, load_grid_file

    try:
        workers = (
            None if args.workers is None else _checked("--workers", args.workers, _to_int, lambda v: v >= 1, "an integer >= 1")
        )
        threads = (
            None
            if args.threads_per_worker is None
            else _checked("--threads-per-worker", args.threads_per_worker, _to_int, lambda v: v >= 1, "an integer >= 1")
        )
        base = load_grid_file(args.file) if args.file is not None else None
        grid = grid_from_options(args.grid, args.set, base, args.when)
        if not grid.axes:
            raise SweepError("the grid has no axes; give --grid KEY=V1,V2 or a --file with a [grid] table")
        over = None if args.over is None else tuple(k.strip() for k in args.over.split(",") if k.strip())
        check_out(args.out)
        result = sweep(
            grid,
            args.out,
            scheduler=args.scheduler,
            workers=workers,
            threads_per_worker=threads,
            inline=args.inline,
            progress=not args.no_progress,
            over=over,
        )
    except (BenchmarkError, ValueError, TypeError, OSError, ImportError) as exc:
        return _fail(" ".join(str(exc).split()) if str(exc) else type(exc).__name__)
    except KeyboardInterrupt:
        return _fail(f"interrupted; rerun the same command (--out {args.out}) to resume: finished cells are kept")
    if result.report is not None:
        print(f"[airkit] sweep report: {result.report.resolve()}")
    if result.failed:
        where = args.out / "report.md" if result.report is not None else args.out / CELLS_DIR / "<cell>" / "error.txt"
        return _fail(f"{len(result.failed)} of {len(result.grid.cells)} cells failed; see {where}")
    return 0


def _fail(message: str) -> int:
    print(f"airkit: error: {message}", file=sys.stderr)
    return 1


def _select(names: Sequence[str]) -> list[Benchmark]:
    known = _benchmarks()
    if "all" in names:
        return list(known.values())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BenchmarkError(f"unknown run name(s) {', '.join(unknown)}; choose from: {', '.join(known)} or all")
    return [known[n] for n in dict.fromkeys(names)]


def _write_index(out: Path) -> Path:
    rows = []
    for bench in ALL_RUNS:
        base = out / bench.name
        done = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")) if base.is_dir() else []
        if not done:
            continue
        last = done[-1]
        figs = ", ".join(f"[{p.name}]({bench.name}/{last.name}/{p.name})" for p in sorted(last.glob("*.png")))
        rows.append([bench.name, last.name, f"[report.md]({bench.name}/{last.name}/report.md)", figs])
    lines = [
        "# airkit results",
        "",
        "Newest finished run of each benchmark.",
        "",
        *markdown_table(["run", "when", "report", "figures"], rows),
    ]
    return atomic_write_text(out / "index.md", "\n".join(lines) + "\n")


def run_named(
    bench: Benchmark,
    *,
    out: Path,
    quick: bool = False,
    data: Path | None = None,
    backend: str = "numpy",
    device: str = "cpu",
    seed: int = 0,
    resume: bool = False,
    progress: bool = True,
    options: dict | None = None,
    overrides: dict | None = None,
) -> Path:
    """Run one benchmark into ``out/<name>/<timestamp>/`` atomically and return that directory.

    The run writes into a hidden ``.<timestamp>.partial`` directory (its finished parts under
    ``parts/``), then ``result.json`` and ``report.md``, and only then renames the directory.
    With ``resume`` the newest partial directory of this run is continued. ``seed`` and
    ``options`` are checked first (:func:`check_seed`, :func:`check_run_options`): a value out
    of range raises :class:`BenchmarkError` before anything is written.
    """
    seed = check_seed(seed)
    options = check_run_options({k: v for k, v in (options or {}).items() if k in bench.options}, [bench])
    directory = latest_partial_dir(out, bench.name) if resume else None
    resumed = directory is not None
    directory = directory or new_partial_dir(out, bench.name)
    ctx = RunContext(
        name=bench.name,
        directory=directory,
        quick=quick,
        data=data,
        backend=backend,
        device=device,
        seed=seed,
        progress=progress,
        options=options,
        overrides=dict(overrides or {}),
    )
    start = time.perf_counter()
    try:
        output = bench.func(ctx)
    except BaseException:
        # keep whatever --resume can continue from: finished parts, or a training run's checkpoint
        if not (directory / "parts").exists() and not any(directory.rglob(CHECKPOINT_FILE)):
            shutil.rmtree(directory, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    result = {
        "name": bench.name,
        "quick": quick,
        "seed": seed,
        "backend": backend,
        "device": device,
        "data": str(data) if data else None,
        "options": ctx.options,
        "overrides": ctx.overrides,
        "parameters": output.parameters,
        "resumed": resumed,
        "seconds": seconds,
        "environment": environment(),
        "numbers": output.numbers,
        "figures": list(output.figures),
    }
    atomic_write_json(directory / "result.json", result)
    header = (
        f"# {bench.name}\n\n{bench.summary}\n\n"
        f"- quick: {quick}, seed: {seed}, backend: {backend}, device: {device}, time: {seconds:.1f} s"
        f"{' in this session (resumed: parts finished earlier were read back)' if resumed else ''}\n"
        f"- data: {data or 'bundled'}\n\n"
    )
    body = output.markdown + "\n" + "".join(f"\n![{f}]({f})\n" for f in output.figures)
    atomic_write_text(directory / "report.md", header + body)
    return finalize_dir(directory)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        from deep.train import main as train_main

        return int(train_main(argv[1:]) or 0)
    if argv and argv[0] == "gpu-check":
        from benchmarks.gpu_check import main as gpu_check_main

        return int(gpu_check_main(argv[1:]))
    args = build_parser().parse_args(argv)
    if args.command == "sweep":
        return _sweep_main(args)
    if args.command == "list":
        width = max(len(b.name) for b in ALL_RUNS)
        for b in ALL_RUNS:
            print(f"{b.name:<{width}}  {b.summary}")
        return 0
    try:
        benches = _select(args.names)
        if args.download:
            args.data = _download(args.data)
        if args.data is not None and not args.data.exists():
            raise BenchmarkError(f"--data {args.data}: no such file or directory")
        options = {k: getattr(args, k) for k in RUN_OPTIONS if getattr(args, k) is not None}
        for key in options:
            if not any(key in b.options for b in benches):
                raise BenchmarkError(
                    f"--{key} does not apply to {', '.join(b.name for b in benches)}; it applies to {', '.join(_runs_taking(key))}"
                )
        seed = check_seed(args.seed)
        check_out(args.out)
        options = check_run_options(options, benches)
        if args.device == "cuda":
            _require_cuda(args.backend)
        for bench in benches:
            print(f"[airkit] running {bench.name} ...", flush=True)
            final = run_named(
                bench,
                out=args.out,
                quick=args.quick,
                data=args.data,
                backend=args.backend,
                device=args.device,
                seed=seed,
                resume=args.resume,
                progress=not args.no_progress,
                options=options,
            )
            print(f"[airkit] {bench.name}: {final / 'report.md'}", flush=True)
        index = _write_index(args.out)
    except (BenchmarkError, ValueError, TypeError, OSError, ImportError) as exc:
        return _fail(" ".join(str(exc).split()) if str(exc) else type(exc).__name__)
    except KeyboardInterrupt:
        return _fail("interrupted; rerun with --resume to continue")
    print(f"[airkit] index report: {index.resolve()}")
    return 0


def _download(folder: Path | None) -> Path:
    """``--download``: fetch the official CIFAR-10 archive into ``folder`` and return its path."""
    if folder is None:
        raise BenchmarkError("--download needs --data FOLDER to download into (e.g. --data ~/data/cifar10)")
    if folder.exists() and not folder.is_dir():
        raise BenchmarkError(f"--download: --data {folder} is a file; give the folder to download into")
    from deep.data import CifarDownloadError, download_cifar10

    try:
        return download_cifar10(folder)
    except CifarDownloadError as exc:
        raise BenchmarkError(f"--download: {exc}") from exc


def _require_cuda(backend: str) -> None:
    try:
        import torch
    except ImportError as exc:
        raise BenchmarkError("--device cuda needs torch with CUDA") from exc
    if not torch.cuda.is_available():
        raise BenchmarkError("--device cuda: no CUDA device is available here; use --device cpu")
