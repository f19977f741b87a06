"""Long runs show progress: a stderr line per part with the elapsed time and the time left (issue 12).

``airkit run air-spectrum --n 5000`` ran 308 s in silence, ``frequency`` + ``analytic-vs-trained``
223 s. Each of these runs now prints a line per step (what finished, its time, the elapsed time
and an estimate of what is left) unless ``--no-progress``.
"""

from __future__ import annotations

import re

import pytest

from benchmarks.cli import run_named
from benchmarks.progress import PartLog, duration
from benchmarks.runs import ALL_RUNS
from tests.reference import TINY_ANALYTIC_VS_TRAINED

RUNS = {b.name: b for b in ALL_RUNS}
DONE = re.compile(
    r"^\[(?P<run>[\w-]+)\] (?P<i>\d+)/(?P<n>\d+) (?P<name>\S+) done in (?P<t>[\d.]+ s|\d+ min \d\d s) "
    r"\(elapsed (?P<el>[^,]+), (?P<left>about .+ left|all steps done|time left unknown)\)$"
)


def _done_lines(err: str, run: str) -> list[re.Match]:
    lines = [ln for ln in err.splitlines() if ln.startswith(f"[{run}]")]
    matches = [DONE.match(ln) for ln in lines if " done in " in ln]
    assert all(matches), lines
    return matches


def test_duration_format():
    assert duration(3.21) == "3.2 s"
    assert duration(65) == "1 min 05 s"
    assert duration(3 * 3600 + 125) == "3 h 02 min"


def test_partlog_lines_and_estimate(capsys):
    log = PartLog("demo", {"a": 1.0, "b": 3.0}, enabled=True)
    assert log.left() is None  # nothing timed yet
    assert log.step("a", lambda: 7, what="first part") == 7
    err = capsys.readouterr().err
    assert "[demo] 1/2 a: first part ..." in err
    (m,) = _done_lines(err, "demo")
    assert m["left"].startswith("about ")  # b costs 3x a: about three times a's time
    assert log.left() == pytest.approx(3 * log._timed_s, rel=1e-9)
    log.step("b", lambda: None)
    (m,) = _done_lines(capsys.readouterr().err, "demo")
    assert m["i"] == "2" and m["left"] == "all steps done"


def test_partlog_silent_when_disabled(capsys):
    log = PartLog("demo", {"a": 1.0}, enabled=False)
    log.step("a", lambda: None, what="x")
    assert capsys.readouterr().err == ""


def test_partlog_part_read_back(tmp_path, capsys):
    from benchmarks.registry import RunContext

    ctx = RunContext(name="demo", directory=tmp_path)
    plan = {"p": 1.0, "q/x": 1.0, "q/y": 1.0}
    log = PartLog("demo", plan)
    assert log.part(ctx, "p", lambda: {"v": 1}) == {"v": 1}
    log.part(ctx, "q", lambda: {"v": log.step("q/x", lambda: 2) + log.step("q/y", lambda: 3)}, inner=("q/x", "q/y"))
    assert len(_done_lines(capsys.readouterr().err, "demo")) == 3
    # a second session reads the parts back: no step runs, and nothing is left to estimate
    again = PartLog("demo", plan)
    assert again.part(ctx, "p", lambda: pytest.fail("recomputed")) == {"v": 1}
    assert again.part(ctx, "q", lambda: pytest.fail("recomputed"), inner=("q/x", "q/y")) == {"v": 5}
    err = capsys.readouterr().err
    assert "[demo] p: read back from an earlier session" in err and "[demo] q: read back" in err
    assert again.left() == 0


TINY = {
    "frequency": dict(overrides={"n": 60, "steps": 30, "width": 64}),
    "air-spectrum": dict(options={"n": 150}, overrides={"n_val": 50, "n_test": 100}),
    "analytic-vs-trained": dict(overrides=TINY_ANALYTIC_VS_TRAINED),
}
# the steps each run announces (its plan): every one must print a "done" line
STEPS = {
    "frequency": {"noise-location", "spectrum", "theory-gd", "theory-chained", "net-gd", "net-chained"},
    "air-spectrum": {
        f"{k}/{s}"
        for k in ("ntk_relu", "rbf")
        for s in ("gram", "spectrum", "m=0.9", "m=0.99", "m=0.999", "m=0.9999", "gd-vs-chained")
    },
    "analytic-vs-trained": {
        "mlp/closed-form",
        "mlp/width-32-seed-0",
        "mlp/width-64-seed-0",
        "cnn/entk-init",
        "cnn/epoch-1",
        "cnn/epoch-2",
        "cnn/entk-end",
    },
}


@pytest.mark.parametrize("name", list(TINY))
def test_long_runs_print_a_line_per_part(tmp_path, capfd, name):
    run_named(RUNS[name], out=tmp_path / "on", quick=True, progress=True, **TINY[name])
    err = capfd.readouterr().err
    done = _done_lines(err, name)
    assert {m["name"] for m in done} == STEPS[name]
    assert all(int(m["n"]) == len(STEPS[name]) for m in done)
    assert done[-1]["left"] == "all steps done"
    assert all(m["left"].startswith("about ") for m in done[1:-1])  # an estimate once anything was timed
    # --no-progress: silent
    run_named(RUNS[name], out=tmp_path / "off", quick=True, progress=False, **TINY[name])
    assert capfd.readouterr().err == ""
