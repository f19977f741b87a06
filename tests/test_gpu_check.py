"""``airkit gpu-check`` on a machine without a GPU: the refusal, the plan, the sizes, the report,
and the tests/conftest.py switch that moves the backend tests to CUDA (benchmarks/gpu_check.py)."""

from __future__ import annotations

import json
import re

import pytest

from benchmarks import gpu_check
from benchmarks.cli import main as cli_main


@pytest.fixture
def no_cuda(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_gpu_check_without_cuda_says_so_in_one_line_and_exits_2(no_cuda, capsys, tmp_path):
    assert cli_main(["gpu-check", "--out", str(tmp_path)]) == 2
    out = capsys.readouterr()
    assert out.out.strip() == gpu_check.NO_CUDA
    assert not list(tmp_path.iterdir())  # nothing was written


def _plan_text(capsys, *args: str) -> str:
    assert cli_main(["gpu-check", "--dry-run", *args]) == 0
    return capsys.readouterr().out


def test_gpu_check_dry_run_prints_every_step_with_sizes_and_limits(no_cuda, capsys):
    text = _plan_text(capsys)
    keys = ["install", "tests", "deep-tests", "gram", "eigh", "distill", "ntk", "train", "cnn", "large_spectrum", "confirm"]
    for i, key in enumerate(keys):
        assert re.search(rf"^{i}\. {key}: .*\[limit ", text, re.M), key
    assert "AIRKIT_TEST_DEVICE=cuda" in text and "-k 'torch or cupy'" in text and "-k 'cuda or gpu'" in text
    assert '"n": [20000, 40000]' in text  # the sizes at the default budget
    assert "skipped: no --data given" in text


def _sizes(text: str) -> list[dict]:
    return [json.loads(line.split("sizes: ", 1)[1]) for line in text.splitlines() if "sizes: " in line]


def test_gpu_check_dry_run_sizes_shrink_with_a_smaller_budget(no_cuda, capsys, tmp_path):
    big, small = _sizes(_plan_text(capsys)), _sizes(_plan_text(capsys, "--budget", "120"))
    assert len(big) == len(small) == len(gpu_check.ROW_NAMES)
    shrunk = 0
    for b, s in zip(big, small):
        for key, value in b.items():
            if key in ("n", "batch", "cpu_n", "check_n"):
                bv, sv = (value if isinstance(value, list) else [value]), (s[key] if isinstance(s[key], list) else [s[key]])
                assert all(x <= y for x, y in zip(sv, bv))
                shrunk += sum(x < y for x, y in zip(sv, bv))
    assert shrunk >= 5
    data = tmp_path / "cifar.tar.gz"
    data.write_bytes(b"")
    with_data = _plan_text(capsys, "--data", str(data))
    assert "run confirm --device cuda --data" in with_data


@pytest.mark.parametrize("power", [1, 2, 3])
def test_gpu_check_budget_scaling_is_monotone_and_respects_minimum(power):
    budgets = [0, 30, 60, 120, 240, 479, 480, 960]
    ns = [gpu_check.scaled_n(40000, b, power=power, minimum=4000, multiple=500) for b in budgets]
    assert ns == sorted(ns) and min(ns) == 4000 and ns[-2] == ns[-1] == 40000
    assert all(n % 500 == 0 for n in ns)
    for budget in budgets:
        sizes = gpu_check.gpu_sizes(max(budget, gpu_check.MIN_BUDGET))
        assert min(sizes["gram"]["n"]) >= gpu_check.MIN_SIZES["gram"][0]
        assert sizes["ntk"]["n"] >= gpu_check.MIN_SIZES["ntk"] and sizes["train"]["batch"] >= gpu_check.MIN_SIZES["train"]
        assert sizes["distill"]["check_n"] <= sizes["distill"]["n"]
    assert all(gpu_check.limit_s(p, 480) <= 480 for p in gpu_check.SHARES)


def test_gpu_check_refuses_a_tiny_budget(capsys):
    assert cli_main(["gpu-check", "--dry-run", "--budget", "5"]) == 1
    assert "--budget must be at least" in capsys.readouterr().err


def test_gpu_check_report_writer_from_a_fake_result(tmp_path):
    fake = {
        "cuda": "FAKE (no GPU: a test of the report writer)",
        "budget_s": 480.0,
        "seconds": 12.5,
        "install": {"status": "present", "line": "CuPy 14.0 already installed"},
        "tests": {
            "status": "exit 1",
            "seconds": 3.0,
            "counts": {"torch": {"passed": 5, "failed": 1, "skipped": 0}, "cupy": {"passed": 4, "failed": 0, "skipped": 2}},
            "failures": ["tests/test_x.py::test_y[cupy]: boom"],
            "summary_line": "1 failed, 9 passed",
        },
        "rows": {
            "gram": {
                "status": "done",
                "rows": [{"kernel": "rbf", "backend": "torch", "dtype": "float32", "n": 2000, "seconds": 0.5, "gemm_s": 0.1}],
                "skipped": ["gram n=4000: predicted 9 s > 1 s left"],
            },
            "eigh": {"status": "timed out (rows saved before the limit are kept)", "rows": [], "log_tail": ["last line"]},
        },
        "confirm": {"status": "skipped: no --data given"},
    }
    report, result = gpu_check.write_report(tmp_path / "run", fake)
    assert report.name == "report.md" and result.name == "result.json"
    assert json.loads(result.read_text())["tests"]["counts"]["torch"]["failed"] == 1
    text = report.read_text()
    for expected in (
        "FAKE (no GPU",
        "| torch | 5 | 1 | 0 |",
        "FAILED tests/test_x.py::test_y[cupy]",
        "gram n=4000: predicted",
        "last line",
    ):
        assert expected in text
    assert "skipped: no --data given" in text
    summary = gpu_check.summary(fake, tmp_path / "run")
    assert len(summary.splitlines()) <= 24 and "tests: exit 1" in summary


def test_gpu_check_parse_junit_counts_per_backend(tmp_path):
    xml = tmp_path / "t.xml"
    xml.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.test_a" name="test_f[torch-1]"/>'
        '<testcase classname="tests.test_a" name="test_f[cupy-1]"><skipped message="no cupy"/></testcase>'
        '<testcase classname="tests.test_a" name="test_g[cupy]"><failure message="bad"/></testcase>'
        '<testcase classname="tests.test_a" name="test_h"/>'
        "</testsuite></testsuites>"
    )
    got = gpu_check.parse_junit(xml)
    assert got["counts"] == {
        "torch": {"passed": 1, "failed": 0, "skipped": 0},
        "cupy": {"passed": 0, "failed": 1, "skipped": 1},
        "other": {"passed": 1, "failed": 0, "skipped": 0},
    }
    assert got["failures"] == ["tests.test_a::test_g[cupy]: bad"]
    assert gpu_check.parse_junit(tmp_path / "absent.xml") == {"counts": {}, "failures": []}


def test_gpu_check_cupy_requirement_follows_the_extras():
    assert gpu_check.cupy_requirement("12.4") == "cupy-cuda12x>=13"
    assert gpu_check.cupy_requirement("13.0") == "cupy-cuda13x>=14"
    assert gpu_check.cupy_requirement(None) is None and gpu_check.cupy_requirement("11.8") is None


def test_gpu_check_conftest_switch_adds_backends_only_with_the_variable_and_cuda(monkeypatch):
    torch = pytest.importorskip("torch")
    import numpy as np

    from tests import conftest

    monkeypatch.delenv(conftest.CUDA_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert conftest._cuda_backends() == []  # no variable: nothing changes
    monkeypatch.setenv(conftest.CUDA_ENV, "cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert conftest._cuda_backends() == []  # no CUDA: nothing changes
    x = conftest.to_backend(np.ones(3), "torch")
    assert x.device.type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert conftest._cuda_backends() == ["cupy"]
    moved = []
    monkeypatch.setattr(torch.Tensor, "to", lambda self, device: moved.append(device) or self)
    conftest.to_backend(np.ones(3), "torch")
    assert moved == ["cuda"]  # torch tensors go to the GPU


# ---------------------------------------------------------------------------- the cnn and large_spectrum rows


def test_gpu_check_dry_run_lists_the_cnn_and_large_spectrum_rows_with_their_sizes(no_cuda, capsys, tmp_path):
    text = _plan_text(capsys)
    sizes = dict(zip(gpu_check.ROW_NAMES, _sizes(text)))
    assert sizes["cnn"]["architectures"] == {"cntk3": "cntk-3", "myrtle5": "myrtle-5"}
    assert sizes["cnn"]["image"] == [32, 32, 3] and sizes["cnn"]["dtypes"] == ["float32", "float64"]
    assert sizes["cnn"]["cntk3_n"] == [1000, 3000] and sizes["cnn"]["myrtle5_n"] == [48, 160]
    assert sizes["large_spectrum"]["n"] == [20000, 50000] and sizes["large_spectrum"]["k"] == 100
    assert sizes["large_spectrum"]["kernel"] == "ntk_relu" and sizes["large_spectrum"]["depth"] == 2
    assert "--row-child cnn" in text and "--row-child large_spectrum" in text
    assert "random Gaussian (no --data)" in text
    data = tmp_path / "cifar.tar.gz"
    data.write_bytes(b"")
    assert f"CIFAR-10 from {data}" in _plan_text(capsys, "--data", str(data))
    small = dict(zip(gpu_check.ROW_NAMES, _sizes(_plan_text(capsys, "--budget", "120"))))
    # cost ~ n^2: a quarter of the budget halves n (rounded down to the multiple)
    assert small["cnn"]["cntk3_n"] == [500, 1500] and small["cnn"]["myrtle5_n"] == [16, 80]
    assert small["large_spectrum"]["n"] == [10000, 25000]


@pytest.mark.parametrize("budget", [60, 90, 120, 240, 479, 480, 960])
def test_gpu_check_cnn_and_large_spectrum_sizes_follow_the_budget(budget):
    full, s = gpu_check.gpu_sizes(gpu_check.DEFAULT_BUDGET), gpu_check.gpu_sizes(budget)
    for key in gpu_check.FULL_SIZES["cnn"]["architectures"]:
        ns, lows = s["cnn"][f"{key}_n"], gpu_check.MIN_SIZES[f"cnn_{key}"]
        assert all(lo <= n <= f for n, lo, f in zip(ns, lows, full["cnn"][f"{key}_n"]))
        assert all(n % gpu_check.CNN_MULTIPLES[key] == 0 for n in ns) and ns == sorted(ns)
        assert s["cnn"][f"{key}_cpu_n"] <= min(ns)
    ls = s["large_spectrum"]
    assert all(lo <= n <= f for n, lo, f in zip(ls["n"], gpu_check.MIN_SIZES["large_spectrum"], full["large_spectrum"]["n"]))
    assert ls["k"] < ls["check_n"] <= min(ls["n"])
    bigger = gpu_check.gpu_sizes(budget * 2)
    assert all(a <= b for a, b in zip(ls["n"], bigger["large_spectrum"]["n"]))
    assert all(a <= b for a, b in zip(s["cnn"]["myrtle5_n"], bigger["cnn"]["myrtle5_n"]))
    if budget >= gpu_check.DEFAULT_BUDGET:
        assert s == full
    assert gpu_check.limit_s("cnn", budget) >= 20 and gpu_check.limit_s("large_spectrum", budget) >= 20


def _cnn_cfg(**over):
    cfg = {
        "device": "cpu",
        "image": [8, 8, 3],
        "architectures": {"c2": "cntk-2", "gap": "cntk-gap-1"},  # the p = p' path and the all-pairs path
        "c2_n": [3, 5],
        "gap_n": [2, 3],
        "c2_cpu_n": 3,
        "gap_cpu_n": 2,
        "dtypes": ["float32", "float64"],
        "memory_budget_gib": 0.01,
    }
    return {**cfg, **over}


def test_gpu_check_row_cnn_runs_on_the_cpu_and_checks_against_numpy():
    pytest.importorskip("torch")
    import time

    rec = gpu_check.Recorder(None)
    gpu_check.row_cnn(_cnn_cfg(), 0, rec, time.perf_counter() + 300)
    rows = rec.data["rows"]
    assert rec.data["errors"] == [] and rec.data["skipped"] == []
    got = {(r["architecture"], r["dtype"], r["n"]) for r in rows}
    assert got == {
        (a, dt, n) for a, ns in (("cntk-2", [3, 5]), ("cntk-gap-1", [2, 3])) for dt in ("float32", "float64") for n in ns
    }
    assert [r["n"] for r in rows][:4] == [3, 3, 2, 2]  # every architecture's small n before any larger n
    for r in rows:
        assert r["pairs"] == r["n"] ** 2 and r["pairs_per_s"] > 0 and r["cpu_pairs_per_s"] > 0
        assert r["speedup_vs_cpu"] == pytest.approx(r["pairs_per_s"] / r["cpu_pairs_per_s"])
        assert r["out_dtype"].endswith(r["dtype"]) and r["backend"] == "torch"
        assert r["rel_diff_cpu"] < (1e-5 if r["dtype"] == "float32" else 1e-12)
    assert set(rec.data["cpu_reference"]) == {"cntk-2", "cntk-gap-1"}
    assert rec.data["cpu_reference"]["cntk-2"]["pairs"] == 9
    table = "\n".join(gpu_check._table(rows, gpu_check.ROW_KEYS["cnn"]))
    assert "cntk-gap-1" in table and "8x8x3" in table


def test_gpu_check_row_cnn_skips_what_the_deadline_leaves_no_time_for():
    import time

    rec = gpu_check.Recorder(None)
    gpu_check.row_cnn(_cnn_cfg(), 0, rec, time.perf_counter() - 1)
    assert rec.data["rows"] == [] and rec.data["errors"] == []
    assert len(rec.data["skipped"]) == 2 + 2 * 2 * 2  # two CPU references, 2 architectures x 2 dtypes x 2 sizes
    assert any("numpy CPU reference: budget spent" in s for s in rec.data["skipped"])


def test_gpu_check_row_cnn_records_a_failing_measurement_and_goes_on(monkeypatch):
    pytest.importorskip("torch")
    import time

    from kernels import cnn

    real = cnn.cnn_ntk

    def flaky(X, Z=None, *, architecture="cntk-1", **kw):
        if architecture == "cntk-gap-1" and type(X).__module__.startswith("torch"):
            raise RuntimeError("CUDA out of memory (fake)")
        return real(X, Z, architecture=architecture, **kw)

    monkeypatch.setattr(cnn, "cnn_ntk", flaky)
    rec = gpu_check.Recorder(None)
    gpu_check.row_cnn(_cnn_cfg(), 0, rec, time.perf_counter() + 300)
    assert {r["architecture"] for r in rec.data["rows"]} == {"cntk-2"} and len(rec.data["rows"]) == 4
    assert len(rec.data["errors"]) == 2  # each dtype at the small n ...
    assert all("cntk-gap-1 torch" in e and "RuntimeError: CUDA out of memory (fake)" in e for e in rec.data["errors"])
    assert sum("not run after an error" in s for s in rec.data["skipped"]) == 2  # ... and its larger n is not tried
    assert "cntk-gap-1" in rec.data["cpu_reference"]  # the numpy reference did run


def _ls_cfg(**over):
    cfg = {
        "device": "cpu",
        "n": [150, 200],
        "d": 10,
        "k": 5,
        "kernel": "ntk_relu",
        "depth": 2,
        "n_iter": 4,
        "n_oversamples": 20,
        "dtype": "float64",
        "chunks": 64,
        "memory_budget_gib": 0.01,
        "check_n": 100,
    }
    return {**cfg, **over}


@pytest.mark.parametrize("backend", [None, "torch"])
def test_gpu_check_row_large_spectrum_runs_on_the_cpu(backend):
    if backend == "torch":
        pytest.importorskip("torch")
    import time

    import numpy as np

    from kernels.large_spectrum import large_spectrum

    rec = gpu_check.Recorder(None)
    gpu_check.row_large_spectrum(_ls_cfg(backend=backend), 0, rec, time.perf_counter() + 300)
    assert rec.data["errors"] == [] and rec.data["skipped"] == []
    rows = rec.data["rows"]
    assert [r["n"] for r in rows] == [150, 200] and {r["backend"] for r in rows} == {backend or "numpy"}
    for r in rows:
        assert r["passes"] == 6 and len(r["pass_seconds"]) == 6 and r["seconds_per_pass"] > 0
        assert r["max_residual"] < 1e-3 and r["data"] == "gaussian" and r["k"] == 5
        assert r["cpu_estimate_s"] > 0 and r["gram_gib"] == pytest.approx(r["n"] ** 2 * 8 / 2**30)
    check = rec.data["check"]
    assert check["n"] == 100
    if backend == "torch":  # the check compares the device backend with numpy (numpy against numpy proves nothing)
        assert check["max_value_diff_over_d1"] < 1e-12
    X = np.random.default_rng(0).standard_normal((200, 10), dtype=np.float32).astype(np.float64)
    ref = large_spectrum(X, 5, kernel="ntk_relu", depth=2, chunks=64, scheduler="serial", progress=False)
    assert rows[-1]["d_1"] == pytest.approx(float(ref.values[0]), rel=1e-12)
    table = "\n".join(gpu_check._table(rows, gpu_check.ROW_KEYS["large_spectrum"]))
    assert "gaussian" in table and "200" in table


def test_gpu_check_row_large_spectrum_uses_cifar_from_data_and_survives_a_bad_path(monkeypatch, tmp_path):
    import time

    from deep.synthetic import write_fake_cifar

    monkeypatch.setenv("AIRKIT_CACHE", str(tmp_path / "cache"))
    data = write_fake_cifar(tmp_path / "src", fmt="python", n_train_per_class=12, n_test_per_class=1)
    rec = gpu_check.Recorder(None)
    gpu_check.row_large_spectrum(_ls_cfg(n=[60, 100], check_n=50, data=str(data)), 0, rec, time.perf_counter() + 300)
    assert rec.data["errors"] == [] and rec.data["features"] == {"data": "cifar10", "n": 100, "d": 3072, "dtype": "float64"}
    assert [r["data"] for r in rec.data["rows"]] == ["cifar10", "cifar10"]
    rec = gpu_check.Recorder(None)
    gpu_check.row_large_spectrum(_ls_cfg(data=str(tmp_path / "absent")), 0, rec, time.perf_counter() + 300)
    assert len(rec.data["errors"]) == 1 and "random Gaussian features instead" in rec.data["errors"][0]
    assert [r["data"] for r in rec.data["rows"]] == ["gaussian", "gaussian"]


def test_gpu_check_row_child_records_success_and_a_row_that_raises(tmp_path):
    done = gpu_check.run_row("large_spectrum", _ls_cfg(), limit=240)
    assert done["status"] == "done" and [r["n"] for r in done["rows"]] == [150, 200] and "check" in done
    broken = gpu_check.run_row("cnn", {"device": "cpu"}, limit=240)  # no sizes: the row raises at once
    assert broken["status"] == "failed (exit 1)" and broken["rows"] == []
    assert broken["errors"] == ["row cnn stopped: KeyError: 'image'"]
    assert any("KeyError" in line for line in broken["log_tail"]) and "row_seconds" in broken
    text = gpu_check.report_markdown({"rows": {"cnn": broken, "large_spectrum": done}})
    assert "### cnn: failed (exit 1)" in text and "- error: row cnn stopped: KeyError: 'image'" in text
    assert "### large_spectrum: done" in text and "Check at n = 100" in text


def test_gpu_check_a_failing_row_does_not_stop_the_others(monkeypatch, tmp_path, capsys):
    calls: list[tuple[str, dict]] = []

    def fake_row(row, cfg, limit, seed=0):
        calls.append((row, cfg))
        if row == "cnn":
            return {
                "status": "failed (exit 1)",
                "rows": [],
                "errors": ["row cnn stopped: RuntimeError: boom"],
                "log_tail": ["boom"],
            }
        return {"status": "done", "rows": [], "skipped": []}

    monkeypatch.setattr(gpu_check, "cuda_status", lambda: (True, "FAKE CUDA (a test of the loop)"))
    monkeypatch.setattr(gpu_check, "ensure_cupy", lambda limit: {"status": "present", "line": "CuPy (fake)"})
    monkeypatch.setattr(gpu_check, "run_tests", lambda step, directory, limit: {"status": "passed", "counts": {}})
    monkeypatch.setattr(gpu_check, "run_row", fake_row)
    monkeypatch.setattr(gpu_check, "run_confirm", lambda step, directory, limit: {"status": "skipped (fake)"})
    data = tmp_path / "cifar.tar.gz"
    data.write_bytes(b"")
    assert gpu_check.main(["--out", str(tmp_path / "out"), "--data", str(data)]) == 1
    assert [row for row, _ in calls] == list(gpu_check.ROW_NAMES)  # every row ran after the failing one
    cfgs = dict(calls)
    assert cfgs["large_spectrum"]["data"] == str(data.resolve()) and cfgs["large_spectrum"]["device"] == "cuda"
    assert "data" not in cfgs["cnn"] and cfgs["cnn"]["cntk3_n"] == [1000, 3000]
    (report,) = (tmp_path / "out").glob("*/report.md")
    text = report.read_text()
    assert "### cnn: failed (exit 1)" in text and "- error: row cnn stopped: RuntimeError: boom" in text
    assert "### large_spectrum: done" in text
    out = capsys.readouterr().out
    assert "cnn: failed (exit 1), 0 rows, 0 skipped, 1 errors" in out


def test_gpu_check_report_renders_the_cnn_and_large_spectrum_rows_from_a_fake_record(tmp_path):
    cnn_row = {
        "architecture": "myrtle-5",
        "image": "32x32x3",
        "dtype": "float32",
        "n": 160,
        "seconds": 4.25,
        "pairs_per_s": 6023.5,
        "cpu_pairs_per_s": 3.2,
        "speedup_vs_cpu": 1882.3,
        "max_abs_diff_cpu": 3.1e-7,
        "rel_diff_cpu": 2.5e-7,
        "peak_gib": 11.5,
    }
    ls_row = {
        "backend": "cupy",
        "data": "gaussian",
        "dtype": "float64",
        "n": 50000,
        "k": 100,
        "seconds": 12.5,
        "seconds_per_pass": 2.08,
        "max_residual": 3.4e-4,
        "device_peak_gib": 2.75,
        "gram_gib": 18.6,
        "cpu_estimate_s": 1040.0,
        "speedup_vs_cpu_estimate": 83.2,
    }
    fake = {
        "cuda": "FAKE",
        "rows": {
            "cnn": {
                "status": "done, 1 error(s)",
                "rows": [cnn_row],
                "cpu_reference": {"myrtle-5": {"n": 3, "pairs": 9, "seconds": 2.8, "pairs_per_s": 3.2}},
                "skipped": ["cnn myrtle-5 torch float64 n=160: predicted 40 s > 12 s left"],
                "errors": ["cnn cntk-3 torch float64 n=3000: OutOfMemoryError: CUDA out of memory"],
            },
            "large_spectrum": {
                "status": "done",
                "rows": [ls_row],
                "check": {
                    "n": 1500,
                    "cpu_s": 1.5,
                    "gpu_s_with_warmup": 3.0,
                    "max_value_diff_over_d1": 1e-15,
                    "cpu_max_residual": 2e-4,
                    "gpu_max_residual": 2e-4,
                },
            },
        },
    }
    report, _ = gpu_check.write_report(tmp_path / "run", fake)
    text = report.read_text()
    for row in ("cnn", "large_spectrum"):
        assert "| " + " | ".join(gpu_check.ROW_KEYS[row]) + " |" in text, row
    for expected in (
        "| myrtle-5 | 32x32x3 | float32 | 160 | 4.25 | 6.02e+03 | 3.2 | 1.88e+03 | 3.1e-07 | 2.5e-07 | 11.5 |",
        "| cupy | gaussian | float64 | 50000 | 100 | 12.5 | 2.08 | 0.00034 | 2.75 | 18.6 | 1.04e+03 | 83.2 |",
        "CPU reference (numpy, float64): myrtle-5: 3.2 pairs/s (3 x 3 images, 2.8 s).",
        "Check at n = 1500: max |d_gpu - d_numpy| / d_1 = 1e-15",
        "- skipped: cnn myrtle-5 torch float64 n=160: predicted",
        "- error: cnn cntk-3 torch float64 n=3000: OutOfMemoryError",
    ):
        assert expected in text, expected
    assert "cnn: done, 1 error(s), 1 rows, 1 skipped\n" in gpu_check.summary(fake, tmp_path / "run")
