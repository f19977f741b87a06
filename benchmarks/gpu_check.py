"""gpu-check: one prepared command that runs every GPU path of the toolkit (``airkit gpu-check``).

On a machine with CUDA, in this order (parts ordered by value, tests first), each part in its own
subprocess under its own time limit, all inside ``--budget`` seconds:

0. ``install``  CuPy for the CUDA version torch reports (``cupy-cuda12x`` / ``cupy-cuda13x``, the
   ``gpu`` / ``gpu-cuda13`` extras of pyproject.toml) if ``import cupy`` fails; a failed install is
   one line in the report and the torch-CUDA parts go on.
1. ``tests``    the kernels/ and theory/ property tests (the files that use ``to_backend``) with
   ``AIRKIT_TEST_DEVICE=cuda``: tests/conftest.py then puts the torch tensors on CUDA and adds
   the backend ``cupy``; only the torch and CuPy cases are selected (``-k "torch or cupy"``).
2. ``deep-tests`` deep/'s CUDA tests: ``-m gpu`` and tests named ``*cuda*`` (``-k "cuda or gpu"``).
3. the GPU rows, measured with :func:`benchmarks.runs.speed.timed` (synchronised):
   ``gram`` (rbf, ntk_relu depth 3, float32/float64, torch and CuPy, against the GEMM of the same
   shape), ``eigh`` (:func:`kernels.spectrum`, cuSOLVER through CuPy and torch, against the CPU time
   at a smaller n scaled by n^3), ``distill`` (10 alphas x 10 steps), ``ntk`` (empirical NTK of
   the fast CNN vs the per-example loop), ``train`` (:func:`benchmarks.runs.speed.row_train`),
   ``cnn`` (image pairs per second of :func:`kernels.cnn.cnn_ntk` on torch-CUDA, ``cntk-3`` and
   ``myrtle-5`` on 32x32x3 images, float32/float64, against numpy on the CPU at a few images),
   ``large_spectrum`` (:func:`kernels.large_spectrum.large_spectrum`, top 100 of ntk_relu depth 2
   on CuPy, serial blocks; CIFAR-10 features with ``--data``, else Gaussian d = 3072).
   A measurement that raises is recorded (``errors``) and the row goes on; a row that raises is
   recorded and the next row runs.
4. ``confirm``  ``airkit run confirm --device cuda --data PATH`` for what is left of the budget
   (interrupted with Ctrl-C at the limit: its finished parts stay for ``--resume``).
5. ``results/gpu-check/<stamp>/report.md`` and ``result.json`` (atomic), and a one-screen summary.

Without CUDA the command prints one line and exits 2; ``--dry-run`` prints the plan (steps, sizes
for the budget, time limits, commands) and runs nothing. Nothing here is a GPU result until a
run on a GPU has written one.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.row_process import RowResult, read_spec, row_command, row_functions, run_row_process
from benchmarks.run_files import atomic_write_json, atomic_write_text, environment

DEFAULT_BUDGET = 480.0
MIN_BUDGET = 60.0
NO_CUDA = "airkit gpu-check: no CUDA device here; nothing was run (use --dry-run to see the plan)"
CUDA_ENV = "AIRKIT_TEST_DEVICE"
ROOT = Path(__file__).resolve().parents[1]

# Sizes at the default budget (the GPU sizes) and the smallest each may shrink to.
# A size n of a part whose cost grows like n^power shrinks as (budget / DEFAULT_BUDGET)^(1/power).
FULL_SIZES: dict[str, dict[str, Any]] = {
    "gram": {"n": [20000, 40000], "d": 3072, "depth": 3, "dtypes": ["float32", "float64"], "check_rows": 256},
    "eigh": {"n": [20000, 40000], "d": 64, "dtypes": ["float64"], "cpu_n": 4000},
    "distill": {"n": 20000, "d": 64, "m": 1000, "alphas": 10, "steps": 10, "ridge": 0.1, "check_n": 2000},
    "ntk": {"n": 512, "cnn_widths": [16, 32, 32], "cnn_modes": ["sum", "trace"]},
    "train": {"batch": 128, "steps": 3, "models": ["fastnet", "mlp", "resnet18", "shakeshake26"]},
    # cnn_ntk on an n x n cross Gram K(A, B) (n^2 image pairs) per architecture "<key>": "<preset>";
    # <key>_cpu_n images of each set give the numpy CPU rate and the entries checked.
    "cnn": {
        "image": [32, 32, 3],
        "architectures": {"cntk3": "cntk-3", "myrtle5": "myrtle-5"},
        "cntk3_n": [1000, 3000],
        "myrtle5_n": [48, 160],
        "cntk3_cpu_n": 32,
        "myrtle5_cpu_n": 3,
        "dtypes": ["float32", "float64"],
        "memory_budget_gib": 8,
    },
    "large_spectrum": {
        "n": [20000, 50000],
        "d": 3072,
        "k": 100,
        "kernel": "ntk_relu",
        "depth": 2,
        "n_iter": 4,
        "n_oversamples": 20,
        "dtype": "float64",
        "chunks": 4096,
        "memory_budget_gib": 8,
        "check_n": 1500,
    },
}
MIN_SIZES: dict[str, Any] = {
    "gram": [2000, 4000],
    "eigh": [2000, 4000],
    "eigh_cpu": 1000,
    "distill": 2000,
    "ntk": 64,
    "train": 16,
    "cnn_cntk3": [250, 500],
    "cnn_myrtle5": [16, 32],
    "large_spectrum": [4000, 8000],
}
POWERS = {"gram": 2, "eigh": 3, "distill": 3, "ntk": 1, "train": 1, "cnn": 2, "large_spectrum": 2}
CNN_MULTIPLES = {"cntk3": 250, "myrtle5": 16}  # the cnn sizes are rounded down to these

# Each part's share of the budget (its time limit), and the least it gets.
SHARES = {
    "install": (0.10, 30.0),
    "tests": (0.25, 60.0),
    "deep-tests": (0.06, 20.0),
    "gram": (0.08, 20.0),
    "eigh": (0.15, 30.0),
    "distill": (0.06, 20.0),
    "ntk": (0.05, 20.0),
    "train": (0.06, 20.0),
    "cnn": (0.08, 20.0),
    "large_spectrum": (0.07, 20.0),
}
ROW_NAMES = ("gram", "eigh", "distill", "ntk", "train", "cnn", "large_spectrum")
_ROW_CHILD = ("benchmarks.gpu_check", "--row-child")  # python -m ... <row> <cfg.json> <out.json>: one row's process
REPORT_RESERVE_S = 5.0  # kept back at the end for writing the report


# ============================================================================ sizes and plan


def scaled_n(full: int, budget: float, *, power: float, minimum: int, multiple: int = 1) -> int:
    """``full`` at the default budget or more; below it ``full * (budget / DEFAULT_BUDGET)^(1/power)``,
    rounded down to a multiple of ``multiple`` and never below ``minimum`` (monotone in ``budget``)."""
    factor = min(1.0, max(budget, 0.0) / DEFAULT_BUDGET) ** (1.0 / power)
    n = int(full * factor) // multiple * multiple
    return max(int(minimum), min(int(full), n))


def gpu_sizes(budget: float) -> dict[str, dict[str, Any]]:
    """The sizes of the GPU rows for ``budget`` seconds (the issue's sizes at the default budget)."""
    s = json.loads(json.dumps(FULL_SIZES))
    s["gram"]["n"] = [
        scaled_n(n, budget, power=POWERS["gram"], minimum=m, multiple=500)
        for n, m in zip(FULL_SIZES["gram"]["n"], MIN_SIZES["gram"])
    ]
    s["eigh"]["n"] = [
        scaled_n(n, budget, power=POWERS["eigh"], minimum=m, multiple=500)
        for n, m in zip(FULL_SIZES["eigh"]["n"], MIN_SIZES["eigh"])
    ]
    s["eigh"]["cpu_n"] = scaled_n(FULL_SIZES["eigh"]["cpu_n"], budget, power=3, minimum=MIN_SIZES["eigh_cpu"], multiple=500)
    s["distill"]["n"] = scaled_n(FULL_SIZES["distill"]["n"], budget, power=3, minimum=MIN_SIZES["distill"], multiple=500)
    s["distill"]["check_n"] = min(s["distill"]["check_n"], s["distill"]["n"])
    s["ntk"]["n"] = scaled_n(FULL_SIZES["ntk"]["n"], budget, power=1, minimum=MIN_SIZES["ntk"], multiple=32)
    s["train"]["batch"] = scaled_n(FULL_SIZES["train"]["batch"], budget, power=1, minimum=MIN_SIZES["train"], multiple=16)
    for key in FULL_SIZES["cnn"]["architectures"]:
        s["cnn"][f"{key}_n"] = [
            scaled_n(n, budget, power=POWERS["cnn"], minimum=m, multiple=CNN_MULTIPLES[key])
            for n, m in zip(FULL_SIZES["cnn"][f"{key}_n"], MIN_SIZES[f"cnn_{key}"])
        ]
    s["large_spectrum"]["n"] = [
        scaled_n(n, budget, power=POWERS["large_spectrum"], minimum=m, multiple=1000)
        for n, m in zip(FULL_SIZES["large_spectrum"]["n"], MIN_SIZES["large_spectrum"])
    ]
    s["large_spectrum"]["check_n"] = min(s["large_spectrum"]["check_n"], min(s["large_spectrum"]["n"]))
    return s


def limit_s(part: str, budget: float) -> float:
    """Time limit of one part: its share of the budget, at least its minimum, at most the budget."""
    share, least = SHARES[part]
    return float(min(budget, max(least, share * budget)))


def _kernel_theory_test_files() -> list[str]:
    """The test files of kernels/ and theory/ that run on every backend (they use ``to_backend``)."""
    files = sorted(
        p
        for p in (ROOT / "tests").glob("test_*.py")
        if p.name != "test_gpu_check.py" and "to_backend" in p.read_text(encoding="utf-8")
    )
    return [str(p.relative_to(ROOT)) for p in files]


@dataclass
class Step:
    key: str
    title: str
    limit_s: float | None  # None: what is left of the budget
    command: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, Any] | None = None
    note: str = ""


def pytest_command(selection: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=-ra --strict-markers", *selection]


def plan(budget: float, *, data: Path | None, out: Path, stamp: str = "<stamp>") -> list[Step]:
    """Every step of the command in the order it runs, with sizes, limits and commands."""
    directory = out / stamp
    sizes = gpu_sizes(budget)
    files = _kernel_theory_test_files()
    steps = [
        Step(
            "install",
            "install CuPy for the CUDA torch reports, if `import cupy` fails",
            limit_s("install", budget),
            [sys.executable, "-m", "pip", "install", "-q", "cupy-cuda<12|13>x>=<13|14>"],
            note="skipped when CuPy imports; a failure is reported and the torch-CUDA parts go on",
        ),
        Step(
            "tests",
            "kernels/ and theory/ tests on torch-CUDA and CuPy",
            limit_s("tests", budget),
            pytest_command([*files, "-k", "torch or cupy", "--junitxml", str(directory / "tests.xml")]),
            env={CUDA_ENV: "cuda"},
        ),
        Step(
            "deep-tests",
            "deep/ CUDA tests (-m gpu, tests named *cuda*)",
            limit_s("deep-tests", budget),
            pytest_command(
                [
                    "tests",
                    "-k",
                    "cuda or gpu",
                    "--ignore=tests/test_gpu_check.py",
                    "--junitxml",
                    str(directory / "deep-tests.xml"),
                ]
            ),
            env={CUDA_ENV: "cuda"},
        ),
    ]
    for row in ROW_NAMES:
        steps.append(
            Step(
                row,
                f"GPU row {row}",
                limit_s(row, budget),
                row_command(_ROW_CHILD, row, "<cfg.json>", "<out.json>"),
                sizes=sizes[row],
                note=_row_note(row, data),
            )
        )
    confirm_cmd = None
    if data is not None:
        confirm_cmd = [sys.executable, "-m", "benchmarks", "run", "confirm", "--device", "cuda", "--data", str(data)]
        confirm_cmd += ["--out", str(directory / "confirm"), "--no-progress"]
    steps.append(
        Step(
            "confirm",
            "noisy CIFAR-10 comparison, GPU configuration",
            None,
            confirm_cmd,
            note="runs for what is left of the budget, then Ctrl-C (finished parts kept for --resume)"
            if data is not None
            else "skipped: no --data given",
        )
    )
    return steps


def _row_note(row: str, data: Path | None) -> str:
    if row == "cnn":
        return (
            "cnn_ntk on torch-CUDA: image pairs/s of an n x n cross Gram per preset and dtype (small n first, the larger "
            "n skipped when its n^2-scaled time does not fit); numpy CPU rate and entries checked at <key>_cpu_n images"
        )
    if row == "large_spectrum":
        features = f"CIFAR-10 from {data} (standardised)" if data is not None else "random Gaussian (no --data)"
        return (
            f"large_spectrum on CuPy (scheduler serial, psd clip): {features}; seconds, per pass, max_residual, "
            "CuPy pool peak; first a check against numpy at check_n (also the GPU warm-up)"
        )
    return ""


def format_plan(steps: Sequence[Step], budget: float, out: Path) -> str:
    fixed = sum(s.limit_s or 0.0 for s in steps if s.key != "install")
    lines = [
        f"airkit gpu-check plan: budget {budget:.0f} s; results under {out}/<stamp>/ (report.md, result.json)",
        f"(the parts' limits add up to {fixed:.0f} s without the install; a part that ends early leaves its time to confirm)",
    ]
    for i, s in enumerate(steps):
        limit = f"{s.limit_s:.0f} s" if s.limit_s is not None else "what is left"
        lines.append(f"{i}. {s.key}: {s.title} [limit {limit}]")
        if s.sizes is not None:
            lines.append("   sizes: " + json.dumps(s.sizes))
        if s.command is not None:
            env = " ".join(f"{k}={v}" for k, v in s.env.items())
            lines.append("   command: " + (env + " " if env else "") + " ".join(_quote(c) for c in s.command))
        if s.note:
            lines.append("   " + s.note)
    return "\n".join(lines)


def _quote(arg: str) -> str:
    return f"'{arg}'" if any(c in arg for c in " <>|*") else arg


# ============================================================================ CUDA and install


def cuda_status() -> tuple[bool, str]:
    """(CUDA usable by torch, one line saying what was found)."""
    try:
        import torch
    except ImportError:
        return False, "torch is not installed"
    if not torch.cuda.is_available():
        return False, f"torch {torch.__version__} sees no CUDA device"
    return True, f"torch {torch.__version__} (CUDA {torch.version.cuda}) on {torch.cuda.get_device_name(0)}"


def cupy_requirement(cuda_version: str | None) -> str | None:
    """The pip requirement of pyproject's ``gpu`` (CUDA 12) / ``gpu-cuda13`` extra for a CUDA version."""
    if not cuda_version:
        return None
    major = cuda_version.split(".")[0]
    return {"12": "cupy-cuda12x>=13", "13": "cupy-cuda13x>=14"}.get(major)


def ensure_cupy(limit: float) -> dict[str, Any]:
    if importlib.util.find_spec("cupy") is not None:
        try:
            import cupy

            return {"status": "present", "line": f"CuPy {cupy.__version__} already installed"}
        except Exception as exc:  # an installed CuPy that does not import: reported, not reinstalled
            return {"status": "broken", "line": f"CuPy is installed but does not import: {type(exc).__name__}: {exc}"}
    import torch

    req = cupy_requirement(torch.version.cuda)
    if req is None:
        return {"status": "failed", "line": f"no CuPy wheel known for CUDA {torch.version.cuda}; CuPy parts skipped"}
    cmd = [sys.executable, "-m", "pip", "install", "-q", req]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "line": f"pip install {req} ran past {limit:.0f} s; CuPy parts skipped", "command": cmd}
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        return {"status": "failed", "line": f"pip install {req} failed ({last[0][:160]}); CuPy parts skipped", "command": cmd}
    return {"status": "installed", "line": f"installed {req}", "command": cmd}


def missing_modules() -> list[str]:
    """Modules the command needs that do not import here (the GPU machine's python may lack some)."""
    need = ["numpy", "scipy", "sklearn", "array_api_compat", "torch", "pytest", "hypothesis", "matplotlib", "tqdm", "PIL"]
    return [m for m in need if importlib.util.find_spec(m) is None]


# ============================================================================ subprocess parts


def _run_killable(cmd: list[str], *, limit: float, env: dict[str, str] | None = None, log: Path | None = None) -> dict:
    """Run ``cmd`` in its own process group; at ``limit`` seconds send Ctrl-C, then kill after 20 s."""
    start = time.perf_counter()
    with open(log if log is not None else os.devnull, "w") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        timed_out = False
        try:
            rc = proc.wait(timeout=max(1.0, limit))
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGINT)
            try:
                rc = proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
    return {"returncode": rc, "timed_out": timed_out, "seconds": time.perf_counter() - start, "command": cmd}


def parse_junit(path: Path) -> dict[str, Any]:
    """Counts of a pytest junit XML per backend (the test id's ``[...]`` part: torch / cupy / other)."""
    counts: dict[str, dict[str, int]] = {}
    failures: list[str] = []
    if not path.exists():
        return {"counts": counts, "failures": failures}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("name", "")
        params = name.split("[", 1)[1] if "[" in name else ""
        backend = "cupy" if "cupy" in params else "torch" if "torch" in params else "other"
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
                failures.append(f"{case.get('classname', '')}::{name}: {(child.get('message') or '')[:200]}")
            elif child.tag == "skipped":
                outcome = "skipped"
        counts.setdefault(backend, {"passed": 0, "failed": 0, "skipped": 0})[outcome] += 1
    return {"counts": counts, "failures": failures[:30]}


def run_tests(step: Step, directory: Path, limit: float) -> dict[str, Any]:
    assert step.command is not None
    junit = directory / f"{step.key}.xml"
    res = _run_killable(step.command, limit=limit, env=step.env, log=directory / f"{step.key}.log")
    res.update(parse_junit(junit))
    tail = (directory / f"{step.key}.log").read_text(errors="replace").strip().splitlines()
    res["summary_line"] = tail[-1] if tail else ""
    res["status"] = "timed out" if res["timed_out"] else ("passed" if res["returncode"] == 0 else f"exit {res['returncode']}")
    return res


def run_row(row: str, cfg: dict, limit: float, seed: int = 0) -> dict[str, Any]:
    """One GPU row in a fresh process under ``limit`` seconds; what it saved before a limit or crash is kept."""

    def launch(cmd: list[str], folder: Path) -> tuple[dict, list[str]]:
        res = _run_killable(cmd, limit=limit, log=folder / "log")
        return res, (folder / "log").read_text(errors="replace").strip().splitlines()

    spec = {"cfg": cfg, "seed": seed, "limit_s": limit}
    (res, log), saved = run_row_process(_ROW_CHILD, row, spec, launch, prefix="airkit-gpu-check-")
    res.update(saved or {})
    res["log_tail"] = log[-8:]
    errors = len(res.get("errors") or [])
    if res["timed_out"]:
        res["status"] = "timed out (rows saved before the limit are kept)"
    elif res["returncode"] != 0:
        res["status"] = f"failed (exit {res['returncode']})"
    else:
        res["status"] = "done" if errors == 0 else f"done, {errors} error(s)"
    return res


def run_confirm(step: Step, directory: Path, limit: float) -> dict[str, Any]:
    if step.command is None:
        return {"status": "skipped: no --data given"}
    if limit < 30:
        return {"status": f"skipped: only {limit:.0f} s of the budget left"}
    res = _run_killable(step.command, limit=limit, log=directory / "confirm.log")
    done = (
        sorted(str(p.relative_to(directory)) for p in (directory / "confirm").rglob("parts/*"))
        if (directory / "confirm").exists()
        else []
    )
    res["finished_parts"] = done
    res["status"] = (
        f"stopped at the budget after {res['seconds']:.0f} s ({len(done)} parts finished); continue with --resume"
        if res["timed_out"]
        else ("finished" if res["returncode"] == 0 else f"failed (exit {res['returncode']}); see confirm.log")
    )
    res["resume_command"] = " ".join([*step.command, "--resume"])
    return res


# ============================================================================ the GPU rows (child process)


class Recorder(RowResult):
    """The child's result, saved (atomically) after every measurement so a limit or crash keeps it."""

    def __init__(self, path: Path | None) -> None:
        super().__init__(path, {"rows": [], "skipped": [], "errors": []})

    def add(self, row: dict) -> None:
        self.data["rows"].append(row)
        self.save()

    def skip(self, what: str) -> None:
        self.data["skipped"].append(what)
        self.save()

    def error(self, what: str, exc: BaseException) -> None:
        """A measurement (or the whole row) that raised: one line in ``errors``, and the log."""
        line = f"{what}: {type(exc).__name__}: {str(exc).strip()[:300]}"
        self.data.setdefault("errors", []).append(line)
        _log(f"ERROR {line}")
        self.save()


def _backends(cfg: dict) -> list[str]:
    """torch always; CuPy when it imports and the device is CUDA."""
    names = ["torch"]
    if cfg.get("device", "cuda") == "cuda":
        try:
            import cupy

            if cupy.cuda.runtime.getDeviceCount() > 0:
                names.append("cupy")
        except Exception as exc:  # no CuPy, or one that does not work: the torch rows still run
            _log(f"CuPy rows skipped: {type(exc).__name__}: {exc}")
    return names


def _put(a: np.ndarray, backend: str, device: str) -> Any:
    if backend == "cupy":
        import cupy

        return cupy.asarray(a)
    if backend == "torch":
        import torch

        return torch.from_numpy(np.ascontiguousarray(a)).to(device)
    return a


def _sync(backend: str, device: str) -> None:
    if device != "cuda":
        return
    if backend == "cupy":
        import cupy

        cupy.cuda.Device().synchronize()
    else:
        import torch

        torch.cuda.synchronize()


def _free(device: str) -> None:
    import gc

    gc.collect()
    if device != "cuda":
        return
    import torch

    torch.cuda.empty_cache()
    if importlib.util.find_spec("cupy") is not None:
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()


def _timed_sync(fn: Callable[[], Any], backend: str, device: str, repeats: int = 1) -> tuple[float, Any]:
    from benchmarks.runs.speed import timed

    def call() -> Any:
        out = fn()
        _sync(backend, device)
        return out

    t, _mem, out = timed(call, repeats)
    return t, out


def _host(x: Any) -> np.ndarray:
    from kernels.backend import to_numpy

    return np.asarray(to_numpy(x), dtype=np.float64)


def _log(msg: str) -> None:
    print(f"[gpu-check] {msg}", flush=True)


def _left(deadline: float) -> float:
    return deadline - time.perf_counter()


def row_gram(cfg: dict, seed: int, rec: Recorder, deadline: float) -> None:
    from kernels.functions import rbf
    from kernels.relu import ntk_relu

    device, d, depth, c = cfg.get("device", "cuda"), cfg["d"], cfg["depth"], cfg["check_rows"]
    g = 1.0 / d
    host = np.random.default_rng(seed).standard_normal((max(cfg["n"]), d), dtype=np.float32)
    last: tuple[float, int] | None = None  # (seconds, n) of the last size: the next is predicted as n^2
    for n in sorted(cfg["n"]):
        need = last[0] * (n / last[1]) ** 2 if last is not None else 0.0
        if need > _left(deadline):
            rec.skip(f"gram n={n}: predicted {need:.0f} s > {_left(deadline):.0f} s left")
            continue
        start_n = time.perf_counter()
        Xh = host[:n].astype(np.float64)
        ref = {"rbf": rbf(Xh[:c], Xh, gamma=g), "ntk_relu": ntk_relu(Xh[:c], Xh, depth=depth)}
        for backend in _backends(cfg):
            for dt in cfg["dtypes"]:
                X = _put(host[:n].astype(dt), backend, device)
                t_gemm, _ = _timed_sync(lambda: X @ X.T, backend, device)
                flops = 2.0 * n * n * d
                for name, fn in (("rbf", lambda: rbf(X, gamma=g)), (f"ntk_relu depth {depth}", lambda: ntk_relu(X, depth=depth))):
                    fn_small = rbf if name == "rbf" else (lambda A: ntk_relu(A, depth=depth))
                    fn_small(X[:64])  # warm-up: kernels compiled, allocator set up
                    _sync(backend, device)
                    t, K = _timed_sync(fn, backend, device)
                    diff = float(np.max(np.abs(_host(K[:c]) - ref["rbf" if name == "rbf" else "ntk_relu"])))
                    rec.add(
                        {
                            "kernel": name,
                            "backend": backend,
                            "device": device,
                            "dtype": dt,
                            "n": n,
                            "d": d,
                            "seconds": t,
                            "gemm_s": t_gemm,
                            "gemm_tflops": flops / t_gemm / 1e12,
                            "over_gemm": t / t_gemm,
                            "out_dtype": str(K.dtype),
                            "max_abs_diff_float64_cpu": diff,
                        }
                    )
                    _log(f"gram {name} {backend} {dt} n={n}: {t:.2f} s = {t / t_gemm:.2f}x GEMM ({t_gemm:.3f} s)")
                    K = None  # a rebinding, not del: the lambdas above read K and X
                    _free(device)
                X = None
                _free(device)
        last = (time.perf_counter() - start_n, n)


def row_eigh(cfg: dict, seed: int, rec: Recorder, deadline: float) -> None:
    from kernels.functions import rbf
    from kernels.spectrum import spectrum

    device, d = cfg.get("device", "cuda"), cfg["d"]
    # CPU reference: the toolkit on numpy at cpu_n, scaled by n^3 to each GPU size
    cpu_n = cfg["cpu_n"]
    Xc = np.random.default_rng(seed).standard_normal((cpu_n, d))
    Kc = rbf(Xc, gamma=1.0 / d)
    t_cpu, s_cpu = _timed_sync(lambda: spectrum(Kc), "numpy", "cpu")
    rec.data["cpu_reference"] = {"n": cpu_n, "seconds": t_cpu, "method": s_cpu.method}
    rec.save()
    _log(f"eigh cpu n={cpu_n}: {t_cpu:.2f} s")
    Kc = s_cpu = None  # free before the GPU sizes (a rebinding: the lambda above reads Kc)
    last: dict[str, tuple[float, int]] = {}
    for n in sorted(cfg["n"]):
        X = np.random.default_rng(seed).standard_normal((n, d))
        for backend in _backends(cfg):
            for dt in cfg["dtypes"]:
                key = f"{backend}-{dt}"
                if key in last:
                    t0, n0 = last[key]
                    need = t0 * (n / n0) ** 3
                    if need > _left(deadline):
                        rec.skip(f"eigh {key} n={n}: predicted {need:.0f} s > {_left(deadline):.0f} s left")
                        continue
                K = rbf(_put(X.astype(dt), backend, device), gamma=1.0 / d)
                spectrum(K[:256, :256])  # warm-up (cuSOLVER handle, workspace)
                _sync(backend, device)
                t, s = _timed_sync(lambda: spectrum(K), backend, device)
                vals = _host(s.values)
                last[key] = (t, n)
                cpu_est = t_cpu * (n / cpu_n) ** 3
                rec.add(
                    {
                        "backend": backend,
                        "device": device,
                        "dtype": dt,
                        "n": n,
                        "seconds": t,
                        "method": s.method,
                        "cpu_estimate_s": cpu_est,
                        "speedup_vs_cpu_estimate": cpu_est / t,
                        "trace_rel_error": abs(float(vals.sum()) - n) / n,  # rbf: trace = n
                        "d_max": float(vals[0]),
                        "n_clipped": int(s.n_clipped),
                    }
                )
                _log(f"eigh {backend} {dt} n={n}: {t:.2f} s (CPU n={cpu_n} scaled: {cpu_est:.0f} s)")
                K = s = None
                _free(device)


def row_distill(cfg: dict, seed: int, rec: Recorder, deadline: float) -> None:
    from benchmarks.runs.speed import sample_data
    from kernels.functions import rbf
    from theory.distillation_study import distillation_study

    device, n, d, m = cfg.get("device", "cuda"), cfg["n"], cfg["d"], cfg["m"]
    alphas = np.linspace(0.0, 1.0, cfg["alphas"])
    T, ridge, g = cfg["steps"], cfg["ridge"], 1.0 / d

    def study(X: Any, y: Any, Xt: Any, *, route: str = "auto") -> Any:
        K, Kc = rbf(X, gamma=g), rbf(Xt, X, gamma=g)
        return distillation_study(K, y, ridge=ridge, alpha=alphas, steps=T, K_cross=Kc, route=route)

    # accuracy: GPU vs numpy at check_n
    cn = cfg["check_n"]
    Xs, ys, Xts = sample_data(cn, d, seed, m)
    ref = np.asarray(study(Xs, ys, Xts).predictions)
    X, y, Xt = sample_data(n, d, seed, m)
    for backend in _backends(cfg):
        args = [_put(a, backend, device) for a in (X, y, Xt)]
        small = [_put(a, backend, device) for a in (Xs, ys, Xts)]
        diff = float(np.max(np.abs(_host(study(*small).predictions) - ref)))
        for route in ("auto", "eigen"):
            if _left(deadline) < 5:
                rec.skip(f"distill {backend} {route}: budget spent")
                continue
            t, res = _timed_sync(lambda: study(*args, route=route), backend, device)
            rec.add(
                {
                    "backend": backend,
                    "device": device,
                    "n": n,
                    "d": d,
                    "m": m,
                    "alphas": len(alphas),
                    "steps": T,
                    "route_asked": route,
                    "route": res.route,
                    "solver": res.solver,
                    "seconds_with_gram": t,
                    "max_abs_diff_numpy_at_check_n": diff,
                    "check_n": cn,
                }
            )
            _log(f"distill {backend} {route} n={n}: {t:.2f} s ({res.route})")
            del res
            _free(device)


def row_ntk(cfg: dict, seed: int, rec: Recorder, deadline: float) -> None:
    import torch

    from deep.models import count_parameters, make_model
    from deep.ntk import empirical_ntk, empirical_ntk_loop, ntk_method

    device = cfg.get("device", "cuda")
    X = torch.randn(cfg["n"], 3, 32, 32, generator=torch.Generator().manual_seed(seed)).to(device)
    net = make_model("fastnet", seed=seed, widths=tuple(cfg["cnn_widths"]), device=device)
    for mode in cfg["cnn_modes"]:
        if _left(deadline) < 5:
            rec.skip(f"ntk {mode}: budget spent")
            continue
        empirical_ntk(net, X[:2], mode=mode)
        empirical_ntk_loop(net, X[:2], mode=mode)
        t_tk, K = _timed_sync(lambda: empirical_ntk(net, X, mode=mode), "torch", device, 2)
        t_lp, K_lp = _timed_sync(lambda: empirical_ntk_loop(net, X, mode=mode), "torch", device)
        rec.add(
            {
                "network": f"fastnet widths {'x'.join(map(str, cfg['cnn_widths']))}",
                "parameters": count_parameters(net),
                "device": device,
                "n": cfg["n"],
                "mode": mode,
                "method": ntk_method(net, X, mode=mode),
                "toolkit_s": t_tk,
                "loop_s": t_lp,
                "ratio": t_lp / t_tk,
                "target_ratio": 10.0,
                "max_abs_diff": float((K - K_lp).abs().max()),
                "max_abs_ntk": float(K.abs().max()),
            }
        )
        _log(f"ntk {mode} n={cfg['n']}: toolkit {t_tk:.2f} s, loop {t_lp:.2f} s -> {t_lp / t_tk:.1f}x")
        del K, K_lp
        _free(device)


def row_train(cfg: dict, seed: int, rec: Recorder, deadline: float) -> None:
    from benchmarks.runs.speed import row_train as speed_row_train

    for name in cfg["models"]:  # one network at a time (CPU, then CUDA), saved after each
        if _left(deadline) < 5:
            rec.skip(f"train {name}: budget spent")
            continue
        res = speed_row_train({"batch": cfg["batch"], "steps": cfg["steps"], "models": [name]}, seed)
        for r in res["rows"]:
            rec.add(r)
        rec.data["gpu"] = res["gpu"]
        rec.save()


def _torch_peak_gib(device: str) -> float | None:
    """torch's peak CUDA allocation since the last ``reset_peak_memory_stats`` (None off CUDA)."""
    if device != "cuda":
        return None
    import torch

    return torch.cuda.max_memory_allocated() / 2**30


def _no_time_for(rec: Recorder, what: str, last: tuple[float, int] | None, n: int, deadline: float) -> bool:
    """True (and ``what`` recorded as skipped) when under 5 s are left or the last (seconds, n) scaled by n^2 does not fit."""
    left = _left(deadline)
    if left < 5:
        rec.skip(f"{what}: budget spent ({left:.0f} s left)")
        return True
    need = last[0] * (n / last[1]) ** 2 if last is not None else 0.0
    if need > left:
        rec.skip(f"{what}: predicted {need:.0f} s > {left:.0f} s left")
        return True
    return False


def _cnn_images(shape: tuple[int, int, int], seed: int, n_max: int) -> tuple[np.ndarray, np.ndarray]:
    """``n_max`` random images A, then ``n_max`` random images B, of the given (H, W, C) shape."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_max, *shape)), rng.standard_normal((n_max, *shape))


def _cnn_cpu_reference(
    cfg: dict, images: tuple[np.ndarray, np.ndarray], rec: Recorder, deadline: float
) -> dict[str, tuple[float, np.ndarray]]:
    """Per architecture, the numpy CPU rate and K (float64) of the first ``<key>_cpu_n`` images of A and B, recorded."""
    from kernels.cnn import cnn_ntk

    cpu: dict[str, tuple[float, np.ndarray]] = {}  # arch -> (pairs/s, K of the first cpu_n images)
    for key, arch in cfg["architectures"].items():
        c = min(cfg[f"{key}_cpu_n"], images[0].shape[0])
        if _left(deadline) < 5:
            rec.skip(f"cnn {arch} numpy CPU reference: budget spent")
            continue
        try:
            Ac, Bc = images[0][:c], images[1][:c]
            t, K = _timed_sync(lambda: cnn_ntk(Ac, Bc, architecture=arch), "numpy", "cpu")
        except Exception as exc:
            rec.error(f"cnn {arch} numpy CPU reference n={c}", exc)
            continue
        cpu[arch] = (c * c / t, np.asarray(K, dtype=np.float64))
        rec.data.setdefault("cpu_reference", {})[arch] = {
            "n": c,
            "pairs": c * c,
            "seconds": t,
            "pairs_per_s": c * c / t,
            "cpu_count": os.cpu_count(),
        }
        rec.save()
        _log(f"cnn {arch} numpy CPU n={c}: {c * c / t:.3g} pairs/s")
    return cpu


@dataclass
class _CnnRun:
    """What the cnn row's measurements share: the config, images, CPU reference, record, deadline and sizes so far."""

    cfg: dict
    images: tuple[np.ndarray, np.ndarray]
    cpu: dict[str, tuple[float, np.ndarray]]
    rec: Recorder
    deadline: float
    budget: int  # cnn_ntk's memory_budget in bytes
    last: dict[str, tuple[float, int]] = field(default_factory=dict)  # "arch dtype" -> (seconds, n) of its last measured size
    failed: set[str] = field(default_factory=set)  # "arch dtype" that raised: its larger n are not tried


def _cnn_vs_cpu(rate: float, reference: tuple[float, np.ndarray], K: Any, n: int) -> dict[str, Any]:
    """The columns comparing a torch K with the numpy CPU reference: speedup and entry differences on the shared images."""
    cpu_rate, K_cpu = reference
    c = min(K_cpu.shape[0], n)
    diff = float(np.max(np.abs(_host(K[:c, :c]) - K_cpu[:c, :c])))
    return {
        "cpu_pairs_per_s": cpu_rate,
        "speedup_vs_cpu": rate / cpu_rate,
        "cpu_n": c,
        "max_abs_diff_cpu": diff,
        "rel_diff_cpu": diff / max(float(np.max(np.abs(K_cpu[:c, :c]))), 1e-300),
    }


def _cnn_row(run: _CnnRun, arch: str, dt: str, n: int, t: float, K: Any) -> dict[str, Any]:
    """The row recorded for one measurement (seconds t, result K), with the CPU comparison when there is a reference."""
    device = run.cfg.get("device", "cuda")
    rate = n * n / t
    row: dict[str, Any] = {
        "architecture": arch,
        "image": "x".join(str(v) for v in run.images[0].shape[1:]),
        "backend": "torch",
        "device": device,
        "dtype": dt,
        "out_dtype": str(K.dtype),
        "n": n,
        "pairs": n * n,
        "seconds": t,
        "pairs_per_s": rate,
        "memory_budget_gib": run.cfg["memory_budget_gib"],
        "peak_gib": _torch_peak_gib(device),
    }
    if arch in run.cpu:
        row.update(_cnn_vs_cpu(rate, run.cpu[arch], K, n))
    return row


def _cnn_measure(run: _CnnRun, arch: str, dt: str, n: int) -> dict[str, Any]:
    """Time ``K(A, B)`` of the first n images in ``dt`` on torch (after a one-pair warm-up); the row it records."""
    from kernels.cnn import cnn_ntk

    device, budget = run.cfg.get("device", "cuda"), run.budget
    A_host, B_host = run.images
    A, B = _put(A_host[:n].astype(dt), "torch", device), _put(B_host[:n].astype(dt), "torch", device)
    cnn_ntk(A[:1], B[:1], architecture=arch, memory_budget=budget)  # warm-up: CUDA and cuBLAS set-up
    _sync("torch", device)
    if device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
    t, K = _timed_sync(lambda: cnn_ntk(A, B, architecture=arch, memory_budget=budget), "torch", device)
    return _cnn_row(run, arch, dt, n, t, K)


def _cnn_size(run: _CnnRun, arch: str, dt: str, n: int) -> None:
    """One architecture, dtype and n: skipped (an error at a smaller n, or no time), else measured and recorded (or its error)."""
    what, name = f"cnn {arch} torch {dt} n={n}", f"{arch} {dt}"
    if name in run.failed:
        run.rec.skip(f"{what}: not run after an error at a smaller n")
        return
    if _no_time_for(run.rec, what, run.last.get(name), n, run.deadline):
        return
    try:
        row = _cnn_measure(run, arch, dt, n)
        run.rec.add(row)
        run.last[name] = (row["seconds"], n)
        _log(
            f"{what}: {row['seconds']:.2f} s, {row['pairs_per_s']:.3g} pairs/s ({row.get('speedup_vs_cpu', float('nan')):.0f}x CPU)"
        )
    except Exception as exc:  # e.g. out of memory: recorded, the other sizes and dtypes go on
        run.rec.error(what, exc)
        run.failed.add(name)
    _free(run.cfg.get("device", "cuda"))  # the images and K of the measurement are gone with its frame


def row_cnn(cfg: dict, seed: int, rec: Recorder, deadline: float) -> None:
    """Image pairs per second of ``cnn_ntk`` on torch (CUDA): an n x n cross Gram ``K(A, B)`` of
    random images (n^2 pairs, the images' own recursions included, as the speed run's cnn row), per
    architecture and dtype, the smaller n of every architecture first; a larger n is skipped when
    the smaller one's time scaled by n^2 does not fit. The numpy CPU rate (float64) is measured on
    the first ``<key>_cpu_n`` images of A and B, whose entries the GPU's must match."""
    H, W, C = cfg["image"]
    budget = int(cfg["memory_budget_gib"] * 2**30)
    archs: dict[str, str] = cfg["architectures"]
    sizes = {key: sorted(cfg[f"{key}_n"]) for key in archs}
    images = _cnn_images((H, W, C), seed, max(max(ns) for ns in sizes.values()))
    run = _CnnRun(cfg, images, _cnn_cpu_reference(cfg, images, rec, deadline), rec, deadline, budget)
    for i in range(max(len(ns) for ns in sizes.values())):  # every architecture's i-th n before any (i+1)-th
        for key, arch in archs.items():
            if i < len(sizes[key]):
                for dt in cfg["dtypes"]:
                    _cnn_size(run, arch, dt, sizes[key][i])


def _cupy_pool_gib() -> float | None:
    """Bytes the CuPy memory pool holds (it keeps what it grew to until freed: the peak since the last free)."""
    try:
        import cupy

        return cupy.get_default_memory_pool().total_bytes() / 2**30
    except Exception:
        return None


def _large_spectrum_backend(cfg: dict, rec: Recorder) -> str:
    """``cfg["backend"]`` if given; else CuPy on CUDA when it works (torch-CUDA otherwise), numpy on the CPU."""
    if cfg.get("backend"):
        return str(cfg["backend"])
    if cfg.get("device", "cuda") != "cuda":
        return "numpy"
    if "cupy" in _backends(cfg):
        return "cupy"
    rec.skip("large_spectrum on CuPy: CuPy is not usable here (see the install line); torch-CUDA instead")
    return "torch"


def _default_device(backend: str, device: str) -> Any:
    """A context that makes ``device`` torch's default device (for the torch backend), else a no-op.

    kernels.large_spectrum makes its random start ``Omega`` on the device of ``xp.zeros((1,))``:
    torch's default device (the CPU) unless set, while X's blocks are on CUDA."""
    import contextlib

    if backend != "torch":
        return contextlib.nullcontext()
    import torch

    return torch.device(device)


def _large_spectrum_features(cfg: dict, seed: int, n_max: int, dt: str, rec: Recorder) -> tuple[np.ndarray, str]:
    """The features in the row's dtype (CIFAR-10 from ``cfg["data"]`` when it loads, random Gaussian else) and their name."""
    X_host, data = None, "gaussian"
    if cfg.get("data"):
        try:
            from benchmarks.runs.large_spectrum import load_features

            t0 = time.perf_counter()
            X_host, data = load_features(Path(cfg["data"]), n_max, seed=seed, progress=False)
            rec.data["data_load_s"] = time.perf_counter() - t0
        except Exception as exc:
            rec.error(f"large_spectrum: loading --data {cfg['data']} (random Gaussian features instead)", exc)
            X_host = None
    if X_host is None:
        X_host = np.random.default_rng(seed).standard_normal((n_max, cfg["d"]), dtype=np.float32)
        data = "gaussian"
    X_host = X_host.astype(dt, copy=False)
    rec.data["features"] = {"data": data, "n": X_host.shape[0], "d": X_host.shape[1], "dtype": dt}
    rec.save()
    return X_host, data


@dataclass
class _SpectrumRun:
    """What the large_spectrum row's runs share: the config, seed, backend, device, features and the numpy check's time."""

    cfg: dict
    seed: int
    backend: str
    device: str
    X_host: np.ndarray
    data: str
    large_spectrum: Callable[..., Any]  # kernels.large_spectrum.large_spectrum, imported when the row starts
    budget: int  # large_spectrum's memory_budget in bytes
    cpu_check: tuple[float, int] | None = None  # (numpy seconds, n) of the check, for the CPU estimates

    def spectrum(self, X: Any, n: int, progress: Any) -> Any:
        """``large_spectrum`` of X (n points) with the row's settings, serially; torch's default device set for torch."""
        cfg = self.cfg
        with _default_device(self.backend if not isinstance(X, np.ndarray) else "numpy", self.device):
            return self.large_spectrum(
                X,
                cfg["k"],
                kernel=cfg["kernel"],
                depth=cfg["depth"],
                n_iter=cfg["n_iter"],
                n_oversamples=cfg["n_oversamples"],
                seed=self.seed,
                chunks=min(cfg["chunks"], n),
                memory_budget=self.budget,
                scheduler="serial",
                psd="clip",
                progress=progress,
            )


def _large_spectrum_check(run: _SpectrumRun, cn: int, rec: Recorder) -> float | None:
    """The spectrum at cn points on numpy and on the backend (its warm-up), compared and recorded; the numpy seconds."""
    t_cpu_check: float | None = None
    try:
        Xc = run.X_host[:cn]
        t_cpu_check, s_cpu = _timed_sync(lambda: run.spectrum(Xc, cn, False), "numpy", "cpu")
        t_gpu_check, s_gpu = _timed_sync(
            lambda: run.spectrum(_put(Xc, run.backend, run.device), cn, False), run.backend, run.device
        )
        v_cpu, v_gpu = _host(s_cpu.values), _host(s_gpu.values)
        rec.data["check"] = {
            "n": cn,
            "cpu_s": t_cpu_check,
            "gpu_s_with_warmup": t_gpu_check,
            "max_value_diff_over_d1": float(np.max(np.abs(v_gpu - v_cpu)) / v_cpu[0]),
            "cpu_max_residual": s_cpu.max_residual,
            "gpu_max_residual": s_gpu.max_residual,
        }
        rec.save()
        _log(f"large_spectrum check n={cn}: {rec.data['check']}")
    except Exception as exc:
        rec.error(f"large_spectrum check n={cn}", exc)
    return t_cpu_check


def _large_spectrum_row(run: _SpectrumRun, n: int, t: float, s: Any, stamps: list[float]) -> dict[str, Any]:
    """The row recorded for one n (seconds t, spectrum s, pass time stamps), with the CPU estimate when the check ran."""
    cfg, d, itemsize = run.cfg, run.X_host.shape[1], run.X_host.dtype.itemsize
    vals = _host(s.values)
    passes = cfg["n_iter"] + 2
    row: dict[str, Any] = {
        "backend": run.backend,
        "device": run.device,
        "data": run.data,
        "dtype": cfg["dtype"],
        "n": n,
        "d": d,
        "k": cfg["k"],
        "kernel": f"{cfg['kernel']} depth {cfg['depth']}",
        "passes": passes,
        "seconds": t,
        "seconds_per_pass": float(np.mean(np.diff(stamps))) if len(stamps) > 1 else t / passes,
        "pass_seconds": np.diff(stamps).tolist(),
        "max_residual": s.max_residual,
        "d_1": float(vals[0]),
        "d_k": float(vals[-1]),
        "n_clipped": int(s.n_clipped),
        "chunks": min(cfg["chunks"], n),
        "scheduler": "serial",
        "memory_budget_gib": cfg["memory_budget_gib"],
        "device_peak_gib": _cupy_pool_gib() if run.backend == "cupy" else _torch_peak_gib(run.device),
        "features_gib": n * d * itemsize / 2**30,
        "gram_gib": n * n * itemsize / 2**30,
    }
    if run.cpu_check is not None:
        row["cpu_estimate_s"] = run.cpu_check[0] * (n / run.cpu_check[1]) ** 2
        row["speedup_vs_cpu_estimate"] = row["cpu_estimate_s"] / t
    return row


def _large_spectrum_measure(run: _SpectrumRun, n: int) -> dict[str, Any]:
    """Time the spectrum of the first n features on the device (each pass stamped and logged); the row it records."""
    X = _put(run.X_host[:n], run.backend, run.device)
    _sync(run.backend, run.device)
    _free(run.device)  # the CuPy pool then holds X only: what it holds after the run is the peak
    if run.backend == "torch" and run.device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
    stamps: list[float] = []

    def progress(line: str) -> None:
        stamps.append(time.perf_counter())
        _log(line)

    start = time.perf_counter()
    s = run.spectrum(X, n, progress)
    _sync(run.backend, run.device)
    return _large_spectrum_row(run, n, time.perf_counter() - start, s, stamps)


def _large_spectrum_size(
    run: _SpectrumRun, n: int, rec: Recorder, deadline: float, last: tuple[float, int] | None
) -> tuple[float, int] | None:
    """One n: skipped when it does not fit, else measured and recorded (or its error); the (seconds, n) to predict the next."""
    what = f"large_spectrum {run.backend} {run.cfg['dtype']} n={n}"
    if _no_time_for(rec, what, last, n, deadline):
        return last
    try:
        row = _large_spectrum_measure(run, n)
        rec.add(row)
        last = (row["seconds"], n)
        _log(f"{what}: {row['seconds']:.1f} s ({row['seconds_per_pass']:.2f} s per pass), max_residual {row['max_residual']:.2e}")
    except Exception as exc:  # e.g. out of memory: recorded, the next n is still tried
        rec.error(what, exc)
    _free(run.device)  # X and the spectrum are gone with the measurement's frame
    return last


def row_large_spectrum(cfg: dict, seed: int, rec: Recorder, deadline: float) -> None:
    """Top-k eigenpairs of ntk_relu by :func:`kernels.large_spectrum.large_spectrum` on CuPy (numpy when the
    device is the CPU; torch-CUDA, with torch's default device set to CUDA, when CuPy does not work).
    Blocks run serially (one GPU; dask threads would split the memory budget by the CPU count). First a
    check at ``check_n`` points against numpy (the same seed: the values must agree), which is also the
    warm-up (CuPy compiles its kernels); then each n, a larger one skipped when the last time scaled by
    n^2 does not fit."""
    from kernels.large_spectrum import large_spectrum

    device = cfg.get("device", "cuda")
    backend = _large_spectrum_backend(cfg, rec)
    ns, k, dt = sorted(cfg["n"]), cfg["k"], cfg["dtype"]
    budget = int(cfg["memory_budget_gib"] * 2**30)
    X_host, data = _large_spectrum_features(cfg, seed, max(ns), dt, rec)
    run = _SpectrumRun(cfg, seed, backend, device, X_host, data, large_spectrum, budget)
    cn = min(cfg["check_n"], X_host.shape[0])
    if cn > k and _left(deadline) > 5:
        t_cpu_check = _large_spectrum_check(run, cn, rec)
        run.cpu_check = None if t_cpu_check is None else (t_cpu_check, cn)
        _free(device)
    last: tuple[float, int] | None = None
    for n in ns:
        last = _large_spectrum_size(run, n, rec, deadline, last)


ROW_FUNCS: dict[str, Callable[[dict, int, Recorder, float], None]] = row_functions(globals(), ROW_NAMES)


def _child(row: str, cfg_path: str, out_path: str) -> None:
    spec = read_spec(cfg_path)
    deadline = time.perf_counter() + float(spec.get("limit_s", 1e9)) - 3.0
    rec = Recorder(Path(out_path))
    rec.save()
    with rec.timing():
        try:
            ROW_FUNCS[row](spec["cfg"], int(spec["seed"]), rec, deadline)
        except Exception as exc:  # recorded for the report, then the child fails (the parent goes on to the next row)
            rec.error(f"row {row} stopped", exc)
            raise


# ============================================================================ report


def _fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, float):
        return f"{v:.{digits}g}" if math.isfinite(v) else str(v)
    return str(v)


def _table(rows: list[dict], keys: list[str]) -> list[str]:
    from benchmarks.report import markdown_table

    return list(markdown_table(keys, [[_fmt(r.get(k, "")) for k in keys] for r in rows]))


ROW_KEYS = {
    "gram": ["kernel", "backend", "dtype", "n", "seconds", "gemm_s", "gemm_tflops", "over_gemm", "max_abs_diff_float64_cpu"],
    "eigh": ["backend", "dtype", "n", "seconds", "cpu_estimate_s", "speedup_vs_cpu_estimate", "trace_rel_error"],
    "distill": ["backend", "n", "route_asked", "route", "seconds_with_gram", "max_abs_diff_numpy_at_check_n"],
    "ntk": ["mode", "n", "method", "toolkit_s", "loop_s", "ratio", "target_ratio", "max_abs_diff"],
    "train": ["network", "device", "batch", "train_images_per_s", "eval_images_per_s"],
    "cnn": [
        "architecture",
        "image",
        "dtype",
        "n",
        "seconds",
        "pairs_per_s",
        "cpu_pairs_per_s",
        "speedup_vs_cpu",
        "max_abs_diff_cpu",
        "rel_diff_cpu",
        "peak_gib",
    ],
    "large_spectrum": [
        "backend",
        "data",
        "dtype",
        "n",
        "k",
        "seconds",
        "seconds_per_pass",
        "max_residual",
        "device_peak_gib",
        "gram_gib",
        "cpu_estimate_s",
        "speedup_vs_cpu_estimate",
    ],
}


def report_markdown(result: dict[str, Any]) -> str:
    """The report of one gpu-check run (``result`` as written to result.json)."""
    lines = [
        "# gpu-check",
        "",
        f"- machine: {result.get('cuda', '?')}",
        f"- budget: {_fmt(result.get('budget_s'))} s, used {_fmt(result.get('seconds'))} s",
        f"- CuPy: {result.get('install', {}).get('line', 'not checked')}",
        "",
        "## Tests on the GPU",
        "",
    ]
    for key in ("tests", "deep-tests"):
        t = result.get(key, {})
        lines.append(f"### {key}: {t.get('status', 'not run')} ({_fmt(t.get('seconds', 0.0))} s)")
        lines.append("")
        counts = t.get("counts", {})
        if counts:
            lines += _table([{"backend": b, **c} for b, c in sorted(counts.items())], ["backend", "passed", "failed", "skipped"])
        if t.get("summary_line"):
            lines += ["", f"pytest: `{t['summary_line']}`"]
        for f in t.get("failures", []):
            lines.append(f"- FAILED {f}")
        lines.append("")
    lines += ["## GPU rows", ""]
    for row in ROW_NAMES:
        r = result.get("rows", {}).get(row, {})
        lines += [f"### {row}: {r.get('status', 'not run')}", ""]
        if row == "eigh" and r.get("cpu_reference"):
            ref = r["cpu_reference"]
            lines += [f"CPU reference: toolkit on numpy at n = {ref['n']}: {_fmt(ref['seconds'])} s, scaled by n^3.", ""]
        if row == "cnn" and r.get("cpu_reference"):
            refs = "; ".join(
                f"{arch}: {_fmt(ref['pairs_per_s'])} pairs/s ({ref['n']} x {ref['n']} images, {_fmt(ref['seconds'])} s)"
                for arch, ref in r["cpu_reference"].items()
            )
            lines += [f"CPU reference (numpy, float64): {refs}.", ""]
        if row == "large_spectrum" and r.get("check"):
            ch = r["check"]
            lines += [
                f"Check at n = {ch['n']}: max |d_gpu - d_numpy| / d_1 = {_fmt(ch['max_value_diff_over_d1'])}; numpy "
                f"{_fmt(ch['cpu_s'])} s (scaled by n^2 for cpu_estimate_s), GPU {_fmt(ch['gpu_s_with_warmup'])} s with "
                f"the warm-up; max_residual {_fmt(ch['gpu_max_residual'])} (numpy {_fmt(ch['cpu_max_residual'])}).",
                "",
            ]
        if r.get("rows"):
            lines += _table(r["rows"], ROW_KEYS[row])
            lines.append("")
        for s in r.get("skipped", []):
            lines.append(f"- skipped: {s}")
        for e in r.get("errors", []):
            lines.append(f"- error: {e}")
        if r.get("status", "done") != "done" and r.get("log_tail"):
            lines += ["", "```", *r["log_tail"], "```"]
        lines.append("")
    c = result.get("confirm", {})
    lines += ["## Noisy CIFAR-10 comparison (GPU configuration)", "", f"{c.get('status', 'not run')}", ""]
    if c.get("resume_command"):
        lines += [f"Continue: `{c['resume_command']}`", ""]
    return "\n".join(lines)


def write_report(directory: Path, result: dict[str, Any]) -> tuple[Path, Path]:
    """report.md and result.json in ``directory`` (atomic writes)."""
    directory.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(directory / "report.md", report_markdown(result)), atomic_write_json(
        directory / "result.json", result
    )


def summary(result: dict[str, Any], directory: Path) -> str:
    lines = [f"airkit gpu-check: {result.get('cuda', '?')}; {_fmt(result.get('seconds'))} s of {_fmt(result.get('budget_s'))} s"]
    lines.append(f"  install: {result.get('install', {}).get('line', '-')}")
    for key in ("tests", "deep-tests"):
        t = result.get(key, {})
        counts = ", ".join(f"{b} {c['passed']}/{c['failed']}/{c['skipped']}" for b, c in sorted(t.get("counts", {}).items()))
        lines.append(f"  {key}: {t.get('status', 'not run')} (passed/failed/skipped: {counts or '-'})")
    for row in ROW_NAMES:
        r = result.get("rows", {}).get(row, {})
        status = r.get("status", "not run")
        errors = f", {len(r['errors'])} errors" if r.get("errors") and "error" not in status else ""  # "done, N error(s)" says it
        lines.append(f"  {row}: {status}, {len(r.get('rows', []))} rows, {len(r.get('skipped', []))} skipped{errors}")
    lines.append(f"  confirm: {result.get('confirm', {}).get('status', 'not run')}")
    lines.append(f"  report: {directory / 'report.md'}")
    return "\n".join(lines)


# ============================================================================ command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="airkit gpu-check",
        description="Run every GPU path once: the kernels/theory tests on torch-CUDA and CuPy, deep/'s CUDA tests, "
        "the GPU speed rows and (with --data) the GPU noisy CIFAR-10 comparison, inside --budget seconds.",
    )
    p.add_argument(
        "--budget", type=float, default=DEFAULT_BUDGET, help=f"seconds for the whole command (default {DEFAULT_BUDGET:.0f})"
    )
    p.add_argument("--data", type=Path, default=None, help="CIFAR-10 source for the confirm step (skipped without it)")
    p.add_argument("--out", type=Path, default=Path("results/gpu-check"), help="results root (default results/gpu-check)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (steps, sizes, limits, commands); run nothing")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--row-child"]:
        _child(*argv[1:4])
        return 0
    args = build_parser().parse_args(argv)
    if not math.isfinite(args.budget) or args.budget < MIN_BUDGET:
        print(f"airkit gpu-check: --budget must be at least {MIN_BUDGET:.0f} seconds; got {args.budget:g}", file=sys.stderr)
        return 1
    if args.data is not None and not args.data.exists():
        print(f"airkit gpu-check: --data {args.data}: no such file or directory", file=sys.stderr)
        return 1
    if args.dry_run:
        print(format_plan(plan(args.budget, data=args.data, out=args.out), args.budget, args.out))
        return 0
    ok, what = cuda_status()
    if not ok:
        print(NO_CUDA)
        return 2
    return _run(args, what)


def _run(args: argparse.Namespace, cuda_line: str) -> int:
    args.out = args.out.resolve()  # the subprocesses run in the repository root
    args.data = args.data.resolve() if args.data is not None else None
    start = time.perf_counter()
    deadline = start + args.budget - REPORT_RESERVE_S
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    directory = args.out / stamp
    directory.mkdir(parents=True, exist_ok=True)
    steps = {s.key: s for s in plan(args.budget, data=args.data, out=args.out, stamp=stamp)}
    result: dict[str, Any] = {
        "what": "gpu-check: every GPU path of the toolkit, run once on this machine",
        "cuda": cuda_line,
        "budget_s": args.budget,
        "sizes": gpu_sizes(args.budget),
        "missing_modules": missing_modules(),
        "environment": environment(),
        "rows": {},
    }

    def left(cap: float) -> float:
        return max(0.0, min(cap, deadline - time.perf_counter()))

    def save() -> None:
        result["seconds"] = time.perf_counter() - start
        write_report(directory, result)

    _log(f"{cuda_line}; budget {args.budget:.0f} s; results in {directory}")
    if result["missing_modules"]:
        _log(f"missing modules (install them first or parts will fail): {', '.join(result['missing_modules'])}")
    result["install"] = ensure_cupy(left(limit_s("install", args.budget)))
    _log(result["install"]["line"])
    save()
    for key in ("tests", "deep-tests"):
        _log(f"{key} ...")
        result[key] = run_tests(steps[key], directory, left(steps[key].limit_s or 0.0))
        _log(f"{key}: {result[key]['status']} {result[key].get('summary_line', '')}")
        save()
    for row in ROW_NAMES:
        limit = left(steps[row].limit_s or 0.0)
        if limit < 10:
            result["rows"][row] = {"status": f"skipped: {limit:.0f} s of the budget left"}
            continue
        _log(f"row {row} (limit {limit:.0f} s) ...")
        cfg = {**(steps[row].sizes or {}), "device": "cuda"}
        if row == "large_spectrum" and args.data is not None:
            cfg["data"] = str(args.data)
        result["rows"][row] = run_row(row, cfg, limit, args.seed)
        _log(f"row {row}: {result['rows'][row]['status']}")
        save()
    _log("confirm ...")
    result["confirm"] = run_confirm(steps["confirm"], directory, left(float("inf")))
    save()
    print(summary(result, directory))
    failed = any(result.get(k, {}).get("status") not in ("passed",) for k in ("tests", "deep-tests"))
    failed = failed or any(r.get("status") != "done" for r in result["rows"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
