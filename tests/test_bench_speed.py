"""The `speed` benchmark in quick mode: it runs end to end, reports every ratio, the route
of the distillation study and the peak memory, and its toolkit and baseline numbers agree.
Wall-clock times and ratios are never asserted (they depend on the machine and its load)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks.registry import RunContext
from benchmarks.runs import ALL_RUNS
from benchmarks.runs import speed


def _ratios(obj, path=""):
    """Every value whose key names a ratio or speedup, with its path."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and (k.startswith("ratio") or k.endswith("_over_gemm") or k == "eigh_over_cholesky"):
                yield f"{path}.{k}", v
            else:
                yield from _ratios(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _ratios(v, f"{path}[{i}]")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("speed")
    if any(b.name == "speed" for b in ALL_RUNS):
        from benchmarks.cli import main

        assert main(["run", "speed", "--quick", "--out", str(out), "--no-progress"]) == 0
        (run_dir,) = [p for p in (out / "speed").iterdir() if p.is_dir()]
        result = json.loads((run_dir / "result.json").read_text())
        assert (run_dir / "report.md").exists()
        return result["numbers"], run_dir
    run_dir = out / "speed" / "direct"  # not registered yet: call the run itself
    output = speed.run(RunContext(name="speed", directory=run_dir, quick=True, progress=False))
    return json.loads(json.dumps(output.numbers, default=float)), run_dir


def test_every_row_reports_finite_positive_ratios(quick_run):
    numbers, run_dir = quick_run
    for row in speed.ROWS:
        assert row in numbers, row
    ratios = list(_ratios(numbers))
    assert len(ratios) >= 20
    for where, value in ratios:
        assert math.isfinite(value) and value > 0, where
    assert (run_dir / "speedups.png").stat().st_size > 1000
    assert numbers["machine"]["cores"] >= 1 and numbers["machine"]["cpu"]


def test_distillation_row_reports_route_and_agrees_with_sklearn(quick_run):
    numbers, _ = quick_run
    for r in numbers["distill"]["rows"]:
        assert r["route"] in ("cholesky", "eigen") and r["route_reason"]
        assert r["solver"] in ("cholesky", "eigen")
        scale = max(1.0, r["max_abs_prediction"])
        assert r["max_abs_diff_sklearn"] <= 1e-8 * scale
        assert r["max_abs_diff_precomputed"] <= 1e-8 * scale
        assert r["max_abs_diff_eigen_route"] <= 1e-8 * scale
        assert r["sklearn_s"] >= r["sklearn_measured_s"] > 0
    for row in ("distill", "gram", "eigh"):  # peak memory of rows 1, 3 and 4
        assert numbers[row]["process_peak_mb"] > 0


def test_other_rows_agree_with_their_baselines(quick_run):
    numbers, _ = quick_run
    for r in numbers["ridge_path"]["rows"]:
        assert r["max_abs_diff_sklearn"] <= 1e-6 * max(1.0, r["max_abs_prediction"])
        assert r["max_abs_diff_cholesky_solver"] <= 1e-6 * max(1.0, r["max_abs_prediction"])
        assert r["max_abs_diff_eigen_solver"] <= 1e-6 * max(1.0, r["max_abs_prediction"])
        assert r["solver"].startswith("mixed")
    for r in numbers["gram"]["rows"]:
        tol = 1e-10 if r["dtype"] == "float64" else 2e-3
        if r["kernel"].startswith("ntk"):  # arccos near rho = 1 turns round-off eps into sqrt(eps) in the direct formula
            tol = 1e-6 if r["dtype"] == "float64" else 2e-2
        assert r["out_dtype"] == r["dtype"]
        assert r["max_abs_diff_numpy"] <= tol
        if "max_abs_diff_sklearn" in r:
            assert r["max_abs_diff_sklearn"] <= tol
    for r in numbers["eigh"]["rows"]:
        assert r["max_abs_diff_eigenvalues"] <= 1e-9 * r["d_max"]
    topk = numbers["eigh"]["topk"]
    assert topk["rel_error_value_k"] <= 1e-6 and topk["max_residual"] <= 1e-6
    for r in numbers["ntk"]["rows"]:
        assert r["max_abs_diff"] <= 1e-4 * r["max_abs_ntk"]
    for r in numbers["train"]["rows"]:
        assert r["train_images_per_s"] > 0 and r["eval_images_per_s"] > 0
