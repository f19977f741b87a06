"""airkit sweep (issue 15, part 1): grids, cells as Dask tasks, resume after a kill, failures, the report."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.cli import main
from benchmarks.sweep import CELLS_DIR, cell_status, sweep
from benchmarks.sweep_grid import SweepError, grid_from_options, load_grid_file, make_grid
from deep.synthetic import write_fake_cifar
from tests.reference import tiny_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweepdata")
    path = write_fake_cifar(root, fmt="python", n_train_per_class=3, n_test_per_class=1, seed=0)
    return {"data": str(path), "cache_dir": str(root / "cache")}


def tiny_fixed(fake, **kw):
    return tiny_run(data=fake["data"], cache_dir=fake["cache_dir"], epochs=2, val_fraction=0.2) | kw


# ----------------------------------------------------------------------------- grids


def test_sweep_refuses_an_unknown_placement_keyword_before_writing(fake, tmp_path):
    grid = make_grid({"seed": [0]}, tiny_fixed(fake))
    with pytest.raises(TypeError, match="sweep: unknown keyword.s. worker; where the cells run: client, scheduler, workers"):
        sweep(grid, tmp_path / "s", worker=2)
    with pytest.raises(SweepError, match="give at most one of client, scheduler"):
        sweep(grid, tmp_path / "s", client=object(), inline=True)
    assert not (tmp_path / "s").exists()


def test_options_are_read_as_literals_and_cells_cover_the_product(fake):
    g = grid_from_options(["method=ce,sat", "seed=0,1,2", "lr=0.1,0.05"], [f"data={fake['data']}", "epochs=3", "augment=False"])
    assert g.axes == {"method": ("ce", "sat"), "seed": (0, 1, 2), "lr": (0.1, 0.05)}
    assert g.fixed == {"data": fake["data"], "epochs": 3, "augment": False}
    cells = g.cells
    assert len(cells) == 12 and len({c.name for c in cells}) == 12
    assert {(c.values["method"], c.values["seed"], c.values["lr"]) for c in cells} == {
        (m, s, lr) for m in ("ce", "sat") for s in (0, 1, 2) for lr in (0.1, 0.05)
    }
    c = cells[0]
    assert c.config == {**g.fixed, **c.values} and c.name == "method=ce__seed=0__lr=0.1"


@pytest.mark.parametrize(
    "grid, fixed, match",
    [
        (["methd=ce"], [], r"unknown setting 'methd'"),
        (["batch-size=8"], [], r"did you mean 'batch_size'"),
        (["out=a,b"], [], r"'out' is set by the sweep"),
        (["seed=0,0"], [], r"axis 'seed' repeats a value"),
        (["seed=0,1"], ["seed=3"], r"--grid seed and --set seed: give seed once"),
        (["seed"], [], r"--grid takes KEY=VALUE"),
        (["seed=0", "seed=1"], [], r"--grid seed is given twice"),
        (["method=ce,sgd"], [], r"cell method=sgd: TrainConfig: method"),
        (["lr=0.1,-1"], [], r"cell lr=-1: TrainConfig: lr"),
    ],
)
def test_bad_grids_are_one_line_errors_naming_the_key(grid, fixed, match):
    with pytest.raises(SweepError, match=match) as info:
        grid_from_options(grid, fixed)
    assert "\n" not in str(info.value)


def test_grid_files_toml_and_yaml_give_the_same_grid(tmp_path):
    toml = tmp_path / "g.toml"
    toml.write_text(
        '[grid]\nmethod = ["ce", "sat"]\nseed = [0, 1]\n\n[fixed]\nepochs = 3\nmodel_options = { widths = [8, 16, 16] }\n'
        '\n[when."method=sat"]\ntarget_momentum = 0.9\n'
    )
    yaml_path = tmp_path / "g.yaml"
    yaml_path.write_text(
        "grid:\n  method: [ce, sat]\n  seed: [0, 1]\nfixed:\n  epochs: 3\n  model_options: {widths: [8, 16, 16]}\n"
        "when:\n  method=sat: {target_momentum: 0.9}\n"
    )
    a, b = load_grid_file(toml), load_grid_file(yaml_path)
    assert a.axes == b.axes == {"method": ("ce", "sat"), "seed": (0, 1)}
    assert a.fixed == b.fixed and a.when == b.when == {"method=sat": {"target_momentum": 0.9}}
    # options on top of a file: --grid replaces an axis, --set a fixed value
    c = grid_from_options(["seed=5,6,7"], ["epochs=4"], a)
    assert c.axes["seed"] == (5, 6, 7) and c.axes["method"] == ("ce", "sat") and c.fixed["epochs"] == 4


def test_when_sets_a_method_parameter_only_in_its_cells(fake):
    g = grid_from_options(
        ["method=ce,sat", "seed=0,1"],
        [f"data={fake['data']}"],
        when=["method=sat:target_momentum=0.9", "method=sat:distill_start=1"],
    )
    for cell in g.cells:
        if cell.values["method"] == "sat":
            assert cell.config["target_momentum"] == 0.9 and cell.config["distill_start"] == 1
        else:  # ce refuses a target momentum: it must not get one
            assert "target_momentum" not in cell.config and "distill_start" not in cell.config
    with pytest.raises(SweepError, match=r"'sgd' is not a value of axis 'method'"):
        grid_from_options(["method=ce,sat"], [], when=["method=sgd:target_momentum=0.9"])
    with pytest.raises(SweepError, match=r"must be AXIS=VALUE with an axis of the grid"):
        grid_from_options(["method=ce,sat"], [], when=["noise=x:target_momentum=0.9"])
    with pytest.raises(SweepError, match=r"--when takes AXIS=VALUE:KEY=VALUE"):
        grid_from_options(["method=ce,sat"], [], when=["method=sat"])
    with pytest.raises(SweepError, match=r"sets axis 'seed'"):
        grid_from_options(["method=ce,sat", "seed=0,1"], [], when=["method=sat:seed=3"])
    # without the condition the grid is refused: ce does not take a target momentum
    with pytest.raises(SweepError, match=r"cell method=ce.*target_momentum"):
        grid_from_options(["method=ce,sat"], ["target_momentum=0.9"])


@pytest.mark.parametrize(
    "name, text, match",
    [
        ("bad.toml", "[grid\nseed = [0]", r"is not valid TOML"),
        ("bad.toml", "[grids]\nseed = [0]", r"unknown table\(s\) \['grids'\]"),
        ("bad.json", "{}", r"unknown format '.json'"),
        ("bad.yaml", "grid: [1, 2]", r"'grid' must be a table"),
    ],
)
def test_bad_grid_files_are_one_line_errors(tmp_path, name, text, match):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(SweepError, match=match) as info:
        load_grid_file(p)
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- running


@pytest.fixture(scope="module")
def inline_sweep(fake, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep-inline")
    grid = make_grid({"method": ["ce", "self-distill"], "seed": [0, 1]}, tiny_fixed(fake))
    return sweep(grid, out, inline=True, progress=False)


def test_each_cell_trains_its_own_configuration(inline_sweep):
    res = inline_sweep
    assert res.ok and len(res.results) == 4 and not res.skipped
    for cell in res.grid.cells:
        d = res.out / CELLS_DIR / cell.name
        summary = json.loads((d / "run" / "summary.json").read_text())
        # the run really used this cell's method and seed (not the first cell's, not swapped)
        assert summary["config"]["method"] == cell.values["method"]
        assert summary["config"]["seed"] == cell.values["seed"]
        assert summary["finished"] and json.loads((d / "cell.json").read_text())["epochs_done"] == 2
        assert cell_status(res.out, cell) == "finished"


def test_report_is_mean_and_std_over_seeds_of_the_cells(inline_sweep):
    res = inline_sweep
    data = json.loads((res.out / "result.json").read_text())
    assert [g["group"] for g in data["groups"]] == [{"method": "ce"}, {"method": "self-distill"}]
    for g in data["groups"]:
        vals = [res.results[f"method={g['group']['method']}__seed={s}"]["final_test_acc"] for s in (0, 1)]
        mean, std = g["metrics"]["final_test_acc"]
        assert mean == pytest.approx(np.mean(vals)) and std == pytest.approx(np.std(vals, ddof=1))
    md = (res.out / "report.md").read_text()
    assert "4 of 4 cells finished" in md and "| ce | 2/2 |" in md
    assert (res.out / "test_accuracy.png").stat().st_size > 1000


def test_rerun_skips_finished_cells_and_extends_a_grid(inline_sweep, fake):
    grid = make_grid({"method": ["ce", "self-distill"], "seed": [0, 1, 2]}, tiny_fixed(fake))
    res = sweep(grid, inline_sweep.out, inline=True, progress=False)
    assert len(res.skipped) == 4 and len(res.results) == 6 and res.ok
    # the same folder with other settings for a finished cell is refused, naming the field
    other = make_grid({"method": ["ce"], "seed": [0]}, tiny_fixed(fake, epochs=3))
    with pytest.raises(SweepError, match=r"cell method=ce__seed=0 .* \(epochs differ\)"):
        sweep(other, inline_sweep.out, inline=True, progress=False)


def test_a_failed_cell_is_reported_and_the_others_finish(fake, tmp_path, capsys):
    missing = str(tmp_path / "no-such-data")
    code = main(
        [
            "sweep",
            "--inline",
            "--grid",
            f"data={fake['data']},{missing}",
            *(a for k, v in tiny_fixed(fake, epochs=1).items() if k != "data" for a in ("--set", f"{k}={v!r}")),
            "--out",
            str(tmp_path / "sw"),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "1 of 2 cells failed" in err and len(err.strip().splitlines()) == 1
    cells = sorted((tmp_path / "sw" / CELLS_DIR).iterdir())
    finished = [c for c in cells if (c / "cell.json").exists()]
    failed = [c for c in cells if (c / "error.txt").exists()]
    assert len(finished) == 1 and len(failed) == 1 and "no-such-data" in failed[0].name
    assert "Traceback" in (failed[0] / "error.txt").read_text()
    assert "## Failed cells" in (tmp_path / "sw" / "report.md").read_text()


def test_a_cell_killed_mid_run_resumes_from_its_last_epoch(fake, tmp_path):
    """SIGKILL the sweep while its cell trains; the rerun continues the cell from its checkpoint."""
    out = tmp_path / "killed"
    fixed = tiny_fixed(fake, epochs=40, batch_size=4, model_options={"width": 256})
    args = [sys.executable, "-m", "benchmarks", "sweep", "--inline", "--grid", "seed=0", "--out", str(out), "--no-progress"]
    args += [a for k, v in fixed.items() for a in ("--set", f"{k}={v!r}")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    records = out / CELLS_DIR / "seed=0" / "run" / "records.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if records.exists() and len(records.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep ended before it could be killed: " + proc.stderr.read().decode()[-500:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert not (out / CELLS_DIR / "seed=0" / "cell.json").exists()
    done_at_kill = len(records.read_text().splitlines())
    assert 2 <= done_at_kill < 40
    res = sweep(make_grid({"seed": [0]}, fixed), out, inline=True, progress=False)
    numbers = res.results["seed=0"]
    assert res.ok and numbers["finished"] and numbers["epochs_done"] == 40
    assert numbers["resumed_from"] >= done_at_kill - 1  # the checkpoint precedes the records line by one write
    epochs = [json.loads(line)["global_epoch"] for line in records.read_text().splitlines()]
    assert epochs == list(range(1, 41))


@pytest.mark.slow
def test_dask_cluster_gives_the_inline_results(inline_sweep, fake, tmp_path, monkeypatch, capsys):
    distributed = pytest.importorskip("distributed")
    import benchmarks.sweep as sweep_mod

    # cells outlast the heartbeat: the wait times out between them (the real default is a minute)
    monkeypatch.setattr(sweep_mod, "HEARTBEAT_S", 1e-3)
    grid = make_grid({"method": ["ce", "self-distill"], "seed": [0, 1]}, tiny_fixed(fake))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            res = sweep(grid, tmp_path / "dask", client=client, threads_per_worker=1, progress=True)
    err = capsys.readouterr().err
    heartbeats = [line for line in err.splitlines() if line.startswith("[sweep] 0/4 done")]
    assert heartbeats, "no heartbeat line while the first cells ran: " + err[-2000:]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        # the grid grown by one seed, pointed at a scheduler's address as `--scheduler` does: the four finished
        # cells are read back and the two new ones run on that cluster
        grown = make_grid({"method": ["ce", "self-distill"], "seed": [0, 1, 2]}, tiny_fixed(fake))
        again = sweep(grown, tmp_path / "dask", scheduler=cluster.scheduler_address, progress=False)
    assert res.ok and set(res.results) == set(inline_sweep.results)
    for name, numbers in res.results.items():
        want = inline_sweep.results[name]
        assert numbers["curves"]["test_acc"] == want["curves"]["test_acc"]
        np.testing.assert_allclose(numbers["curves"]["loss"], want["curves"]["loss"], rtol=1e-5)
    assert len(again.skipped) == 4 and again.ok and len(again.results) == 6
    assert {n for n in again.results if n not in again.skipped} == {"method=ce__seed=2", "method=self-distill__seed=2"}


@pytest.mark.slow
def test_cli_default_local_cluster(fake, tmp_path, capsys):
    pytest.importorskip("distributed")
    args = ["sweep", "--grid", "seed=0,1", "--out", str(tmp_path / "cli"), "--workers", "1"]
    args += [a for k, v in tiny_fixed(fake, epochs=1).items() for a in ("--set", f"{k}={v!r}")]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "2/2 done" in captured.err and "sweep report:" in captured.out
    assert len(list((tmp_path / "cli" / CELLS_DIR).glob("*/cell.json"))) == 2


@pytest.mark.parametrize(
    "args, match",
    [
        (["--workers", "0"], r"--workers must be an integer >= 1; got 0"),
        (["--grid", "seed=0", "--scheduler", "tcp://x:1", "--workers", "2"], r"--workers and --inline make a local cluster"),
        ([], r"the grid has no axes"),
        (["--grid", "seed=0", "--over", "lr"], r"--over lr: not an axis of the grid; axes: seed"),
        (["--file", "nope.toml"], r"grid file nope.toml does not exist"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, args, match):
    if "--grid" not in args and "--file" not in args and args:
        args = [*args, "--grid", "seed=0"]
    code = main(["sweep", "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert re.search(match, err), err


def test_report_sentences_follow_the_numbers(tmp_path, fake):
    """'Highest' names the best group, and says when its lead is within the spread over the averaged axis."""
    from benchmarks.sweep_report import write_report

    grid = make_grid({"method": ["ce", "sat"], "seed": [0, 1]}, tiny_fixed(fake))

    def cell(es, final):
        return {
            "test_acc_at_best_val": es,
            "final_test_acc": final,
            "curves": {"test_acc": [es], "train_acc_flipped_given": [0.5]},
        }

    close = {"method=ce__seed=0": cell(0.40, 0.30), "method=ce__seed=1": cell(0.44, 0.30)}
    close |= {"method=sat__seed=0": cell(0.41, 0.40), "method=sat__seed=1": cell(0.41, 0.40)}
    md = write_report(tmp_path / "a", grid, close, {}, over=("seed",), seconds=0.0).read_text()
    assert (
        "Highest mean early-stopped test accuracy: method=ce (0.420 ± 0.028); 0.010 above method=sat, within the spread over seed (std up to 0.028)"
        in md
    )
    assert "Highest mean final test accuracy: method=sat (0.400 ± 0.000)." in md
    assert "method=ce: final test accuracy is 0.120 below its early-stopped accuracy" in md
    far = {**close, "method=sat__seed=0": cell(0.20, 0.40), "method=sat__seed=1": cell(0.20, 0.40)}
    md = write_report(tmp_path / "b", grid, far, {}, over=("seed",), seconds=0.0).read_text()
    assert "Highest mean early-stopped test accuracy: method=ce (0.420 ± 0.028)." in md


def test_a_local_cluster_is_closed_when_its_client_fails(fake, tmp_path, monkeypatch):
    import types

    import benchmarks.sweep as sweep_mod

    closed = []

    class FakeCluster:
        def close(self):
            closed.append(True)

    def failing_client(cluster):
        raise OSError("no client for you")

    monkeypatch.setattr(sweep_mod, "_local_cluster", lambda n: FakeCluster())
    monkeypatch.setattr(sweep_mod, "_distributed", lambda: types.SimpleNamespace(Client=failing_client))
    grid = make_grid({"seed": [0]}, tiny_fixed(fake))
    with pytest.raises(OSError, match="no client for you"):
        sweep(grid, tmp_path / "s", workers=1, progress=False)
    assert closed == [True]
