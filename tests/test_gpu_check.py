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
    for i, key in enumerate(["install", "tests", "deep-tests", "gram", "eigh", "distill", "ntk", "train", "confirm"]):
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
