"""The named benchmark runs in tiny configurations: files, finite and consistent numbers, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.cli import main, run_named
from benchmarks.runs import ALL_RUNS

RUNS = {b.name: b for b in ALL_RUNS}


def _result(directory: Path) -> dict:
    return json.loads((directory / "result.json").read_text())


def _check_pngs(directory: Path, names) -> None:
    import matplotlib.image as mpimg

    assert names, "a run must produce figures"
    for name in names:
        path = directory / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        img = mpimg.imread(path)
        assert img.shape[0] > 100 and img.shape[1] > 100
        assert float(img[..., :3].std()) > 0.01  # not a blank canvas


def _finite(x) -> bool:
    arr = np.asarray(x, dtype=float)
    return bool(np.all(np.isfinite(arr)))


def test_list_names_every_run(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in RUNS:
        assert name in out


def test_toy_distill_through_cli(tmp_path, capsys):
    assert main(["run", "toy-distill", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    assert "index report" in capsys.readouterr().out
    (run_dir,) = [p for p in (tmp_path / "toy-distill").iterdir()]
    assert not run_dir.name.startswith(".")
    res = _result(run_dir)
    nums = res["numbers"]
    loss = np.array(nums["loss_steps"])
    alphas = np.array(nums["alphas"])
    assert _finite(loss) and _finite(nums["loss_limit"])
    # step 1 is plain KRR for every alpha: equal to scikit-learn's KernelRidge
    np.testing.assert_allclose(loss[:, 0], nums["krr_sklearn_loss"], rtol=1e-8)
    # alpha = 1 is KRR at every step and in the limit
    i1 = int(np.flatnonzero(alphas == 1.0)[0])
    np.testing.assert_allclose(loss[i1], loss[i1, 0], rtol=1e-8)
    # alpha = 0 collapses to the zero function: loss = mean sin^2(2 pi x) on 101 grid points = 50/101
    i0 = int(np.flatnonzero(alphas == 0.0)[0])
    assert nums["loss_limit"][i0] == pytest.approx(50 / 101, rel=1e-12)
    assert res["environment"]["versions"]["numpy"]
    _check_pngs(run_dir, res["figures"])
    index = (tmp_path / "index.md").read_text()
    assert f"toy-distill/{run_dir.name}/report.md" in index


def test_toy_distill_user_points_and_options(tmp_path):
    csv = tmp_path / "points.csv"
    x = np.linspace(0, 1, 7)
    y = np.cos(3 * x)
    csv.write_text("x,y\n" + "\n".join(f"{a},{b}" for a, b in zip(x, y)) + "\n")
    code = main(["run", "toy-distill", "--data", str(csv), "--gamma", "10", "--ridge", "0.5", "--alphas", "0.5",
                 "--steps", "3", "--out", str(tmp_path / "out")])
    assert code == 0
    (run_dir,) = list((tmp_path / "out" / "toy-distill").iterdir())
    res = _result(run_dir)
    np.testing.assert_allclose(res["numbers"]["x"], x)
    np.testing.assert_allclose(res["numbers"]["y"], y)
    assert res["parameters"] == {**res["parameters"], "gamma": 10.0, "ridge": 0.5, "steps": 3, "alphas": [0.5]}
    assert np.array(res["numbers"]["loss_steps"]).shape == (1, 3)


@pytest.mark.parametrize("argv,message", [
    (["run", "no-such-run"], "unknown run name"),
    (["run", "toy-distill", "--data", "/no/such/file.csv"], "no such file"),
    (["run", "air-spectrum", "--gamma", "3"], "--gamma does not apply"),
])
def test_bad_options_fail_with_one_line_and_write_nothing(tmp_path, capsys, argv, message):
    code = main(argv + ["--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("result.json"))


def test_bad_csv_leaves_no_partial_directory(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    assert main(["run", "toy-distill", "--data", str(bad), "--out", str(tmp_path / "out")]) == 1
    assert "columns x,y" in capsys.readouterr().err
    assert not any((tmp_path / "out" / "toy-distill").iterdir())


def test_unknown_cli_option_exits_2():
    with pytest.raises(SystemExit) as exc:
        main(["run", "toy-distill", "--no-such-option"])
    assert exc.value.code == 2


def test_air_spectrum_tiny(tmp_path):
    d = run_named(RUNS["air-spectrum"], out=tmp_path, quick=True, progress=False, options={"n": 200},
                  overrides={"n_val": 60, "n_test": 150})
    res = _result(d)
    for label, r in res["numbers"]["kernels"].items():
        shares = r["shares"]
        assert _finite(shares["clean"]) and _finite(shares["noise"])
        # AIR: clean labels concentrate in the top directions more than the noise does
        assert shares["clean"][0] > 2 * shares["noise"][0], label
        s = r["summary"]
        assert s["gd_best_test_acc"] >= s["gd_final_test_acc"]
        assert 0 <= s["chained_final_test_acc"] <= 1
    _check_pngs(d, res["figures"])


def test_air_spectrum_resume_skips_finished_parts(tmp_path, monkeypatch):
    import benchmarks.runs.air_spectrum as air

    calls = []
    real = air._analyse

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated crash in the second kernel")
        return real(*args, **kwargs)

    monkeypatch.setattr(air, "_analyse", flaky)
    kw = dict(out=tmp_path, quick=True, progress=False, options={"n": 150}, overrides={"n_val": 50, "n_test": 100})
    with pytest.raises(RuntimeError):
        run_named(RUNS["air-spectrum"], **kw)
    partial = [p for p in (tmp_path / "air-spectrum").iterdir()]
    assert len(partial) == 1 and partial[0].name.endswith(".partial")
    assert not (partial[0] / "result.json").exists()
    calls.clear()
    d = run_named(RUNS["air-spectrum"], resume=True, **kw)
    assert len(calls) == 1  # the first kernel came from its saved part
    assert _result(d)["resumed"] is True
    assert not any(p.name.endswith(".partial") for p in (tmp_path / "air-spectrum").iterdir())


def test_analytic_vs_trained_tiny(tmp_path):
    d = run_named(RUNS["analytic-vs-trained"], out=tmp_path, quick=True, progress=False,
                  overrides={"n": 64, "n_test": 64, "widths": [32, 2048], "seeds": 1, "steps": 40,
                             "cnn_n": 24, "cnn_epochs": 1, "cnn_widths": (8, 8, 8)})
    res = _result(d)
    per = res["numbers"]["mlp"]["per_width"]
    assert _finite([r["gap_train_final"] for r in per.values()])
    # the wide network follows the kernel closed form more closely than the narrow one
    assert per["2048"]["gap_train_final"] < per["32"]["gap_train_final"]
    assert per["2048"]["ntk_init_vs_analytic"] < per["32"]["ntk_init_vs_analytic"]
    _check_pngs(d, res["figures"])


def test_frequency_tiny(tmp_path):
    d = run_named(RUNS["frequency"], out=tmp_path, quick=True, progress=False,
                  overrides={"n": 120, "steps": 60, "width": 256})
    res = _result(d)
    nums = res["numbers"]
    for key in ("theory_gd", "theory_chained", "net_gd", "net_chained"):
        el, eh = np.array(nums[key]["e_low"]), np.array(nums[key]["e_high"])
        assert _finite(el) and _finite(eh)
        assert np.all(el[-1] < eh[-1])  # low frequencies are fitted first
    _check_pngs(d, res["figures"])


def test_noisy_cifar_tiny(tmp_path):
    d = run_named(RUNS["noisy-cifar"], out=tmp_path, quick=True, progress=False,
                  overrides={"subset": 300, "test_subset": 100, "epochs": 1, "batch_size": 64,
                             "model_options": {"widths": (8, 8, 8)}})
    res = _result(d)
    methods = res["numbers"]["methods"]
    assert set(methods) == {"ce", "self-distill", "interp", "generations"}
    for m, r in methods.items():
        assert 0 <= r["final_test_acc"] <= 1
        assert r["best_test_acc"] >= r["final_test_acc"]
        assert len(r["curves"]["test_acc"]) == (2 if m == "generations" else 1)
    _check_pngs(d, res["figures"])


def test_toy_distill_torch_backend_matches_numpy(tmp_path):
    a = _result(run_named(RUNS["toy-distill"], out=tmp_path / "np", quick=True, progress=False))
    b = _result(run_named(RUNS["toy-distill"], out=tmp_path / "pt", quick=True, progress=False, backend="torch"))
    assert b["backend"] == "torch"
    np.testing.assert_allclose(b["numbers"]["loss_steps"], a["numbers"]["loss_steps"], rtol=1e-10)
    np.testing.assert_allclose(b["numbers"]["B_diagonal"], a["numbers"]["B_diagonal"], rtol=1e-10, atol=1e-14)
