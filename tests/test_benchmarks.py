"""The named benchmark runs in tiny configurations: files, finite and consistent numbers, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.cli import main, run_named
from benchmarks.runs import ALL_RUNS
from tests.reference import TINY_ANALYTIC_VS_TRAINED

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
    code = main(
        [
            "run",
            "toy-distill",
            "--data",
            str(csv),
            "--gamma",
            "10",
            "--ridge",
            "0.5",
            "--alphas",
            "0.5",
            "--steps",
            "3",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    (run_dir,) = list((tmp_path / "out" / "toy-distill").iterdir())
    res = _result(run_dir)
    np.testing.assert_allclose(res["numbers"]["x"], x)
    np.testing.assert_allclose(res["numbers"]["y"], y)
    assert res["parameters"] == {**res["parameters"], "gamma": 10.0, "ridge": 0.5, "steps": 3, "alphas": [0.5]}
    assert np.array(res["numbers"]["loss_steps"]).shape == (1, 3)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["run", "no-such-run"], "unknown run name"),
        (["run", "toy-distill", "--data", "/no/such/file.csv"], "no such file"),
        (["run", "air-spectrum", "--gamma", "3"], "--gamma does not apply"),
    ],
)
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
    d = run_named(
        RUNS["air-spectrum"], out=tmp_path, quick=True, progress=False, options={"n": 200}, overrides={"n_val": 60, "n_test": 150}
    )
    res = _result(d)
    for label, r in res["numbers"]["kernels"].items():
        shares = r["shares"]
        assert _finite(shares["clean"]) and _finite(shares["noise"])
        # AIR: clean labels concentrate in the top directions more than the noise does
        assert shares["clean"][0] > 2 * shares["noise"][0], label
        s, curves = r["summary"], r["curves"]
        # the summary is read off the recorded curves: best = first maximum, final = largest step
        for name in ("gd", "chained"):
            acc = np.asarray(curves[name]["test_acc"])
            assert s[f"{name}_best_test_acc"] == acc.max() and s[f"{name}_final_test_acc"] == acc[-1]
            assert s[f"{name}_best_step"] == curves[name]["steps"][int(np.argmax(acc))]
        assert s["ridge"] == pytest.approx((1 - r["target_momentum"]) / r["lr"], rel=1e-12)
    # Independent values for the RBF kernel, by dense numpy on the same data (digits, seed 0):
    # GD from u(0) = 0 predicts K_test V diag((1 - (1 - lr d)^t) / d) V^T Y at step t; after
    # 20 / (lr d_min) steps it interpolates (K_test K^-1 Y), and chained targets converge to KRR
    # with ridge (1 - m) / lr (m the target momentum).
    from sklearn.metrics.pairwise import rbf_kernel

    from benchmarks.datasets import noisy_digits

    r = res["numbers"]["kernels"]["rbf(gamma=1/d)"]
    s, curves = r["summary"], r["curves"]
    data = noisy_digits(n_train=200, n_val=60, noise="symmetric:0.4", seed=0)
    gamma = 1.0 / data.X_train.shape[1]
    K, Kt = rbf_kernel(data.X_train, gamma=gamma), rbf_kernel(data.X_test, data.X_train, gamma=gamma)
    Y = np.eye(10)[data.labels_given]
    w, V = np.linalg.eigh(K)
    lr = 1.0 / w[-1]
    assert r["lr"] == pytest.approx(lr, rel=1e-10)
    acc = lambda F: float(np.mean(np.argmax(F, axis=1) == data.test_labels))  # noqa: E731
    one = 1.0 / data.test_labels.size  # allow one test point of argmax near-tie
    gd = [acc(Kt @ (V * ((1 - (1 - lr * w) ** t) / w)) @ (V.T @ Y)) for t in curves["gd"]["steps"]]
    np.testing.assert_allclose(curves["gd"]["test_acc"], gd, rtol=0, atol=one)
    assert s["gd_best_test_acc"] == pytest.approx(max(gd), abs=one)
    assert s["gd_final_test_acc"] == pytest.approx(acc(Kt @ np.linalg.solve(K, Y)), abs=one)
    ridge = (1 - r["target_momentum"]) / lr
    assert s["chained_final_test_acc"] == pytest.approx(acc(Kt @ np.linalg.solve(K + ridge * np.eye(len(K)), Y)), abs=one)
    assert s["gd_best_test_acc"] > s["gd_final_test_acc"] + 0.05  # AIR: early stopping beats the interpolant here
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


def _tiny(out: Path, name: str, overrides: dict) -> Path:
    """Run ``name`` in --quick mode with the size ``overrides`` of a test; its run directory."""
    return run_named(RUNS[name], out=out, quick=True, progress=False, overrides=overrides)


def test_analytic_vs_trained_tiny(tmp_path):
    # wider than the shared tiny sizes, so that the narrow/wide contrast is clear in one seed
    d = _tiny(tmp_path, "analytic-vs-trained", TINY_ANALYTIC_VS_TRAINED | {"widths": [32, 2048], "steps": 40, "cnn_epochs": 1})
    res = _result(d)
    per = res["numbers"]["mlp"]["per_width"]
    assert _finite([r["gap_train_final"] for r in per.values()])
    # the wide network follows the kernel closed form more closely than the narrow one
    assert per["2048"]["gap_train_final"] < per["32"]["gap_train_final"]
    assert per["2048"]["ntk_init_vs_analytic"] < per["32"]["ntk_init_vs_analytic"]
    _check_pngs(d, res["figures"])


def test_frequency_tiny(tmp_path):
    d = _tiny(tmp_path, "frequency", {"n": 120, "steps": 60, "width": 256})
    res = _result(d)
    nums = res["numbers"]
    for key in ("theory_gd", "theory_chained", "net_gd", "net_chained"):
        el, eh = np.array(nums[key]["e_low"]), np.array(nums[key]["e_high"])
        assert _finite(el) and _finite(eh)
        assert np.all(el[-1] < eh[-1])  # low frequencies are fitted first
    _check_pngs(d, res["figures"])


def test_noisy_cifar_tiny(tmp_path):
    d = _tiny(
        tmp_path,
        "noisy-cifar",
        {"subset": 300, "test_subset": 100, "epochs": 1, "batch_size": 64, "model_options": {"widths": (8, 8, 8)}},
    )
    res = _result(d)
    methods = res["numbers"]["methods"]
    assert set(methods) == {"ce", "self-distill", "interp", "generations"}
    for m, r in methods.items():
        curves = r["curves"]
        assert len(curves["test_acc"]) == (2 if m == "generations" else 1)
        out = d / "train" / m
        # the curves are the training run's own records (records.jsonl, written by deep.train)
        recs = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines() if line.strip()]
        assert [rec["test_acc"] for rec in recs] == curves["test_acc"]
        assert [rec["val_acc"] for rec in recs] == curves["val_acc"]
        test_acc, val_acc = np.asarray(curves["test_acc"]), np.asarray(curves["val_acc"])
        assert r["final_test_acc"] == test_acc[-1] and r["best_test_acc"] == test_acc.max()
        i_val = int(np.argmax(val_acc))  # early stopping: the first epoch with the best noisy-val accuracy
        assert r["best_epoch"] == curves["global_epoch"][i_val] and r["test_acc_at_best_val"] == test_acc[i_val]
        # accuracies are counts over the split's test set (float32 in the records)
        with np.load(out / "split.npz") as z:
            split = {k: z[k] for k in z.files}
        n_test = split["test_idx"].size
        assert n_test == r["data"]["n_test"] == 100
        counts = test_acc * n_test
        np.testing.assert_allclose(counts, np.round(counts), atol=1e-4)
        # memorised / recovered / clean: recomputed from the saved training predictions and split labels
        with np.load(out / "train_predictions.npz") as z:
            pred = z["pred"][-1]
        given, true, flipped = split["labels"], split["true_labels"], split["flipped"]
        assert int(flipped.sum()) == r["data"]["n_flipped"] and np.all((given != true) == flipped)
        assert r["final_memorised"] == pytest.approx(np.mean(pred[flipped] == given[flipped]), abs=1e-6)
        assert r["final_recovered"] == pytest.approx(np.mean(pred[flipped] == true[flipped]), abs=1e-6)
        assert r["final_clean_acc"] == pytest.approx(np.mean(pred[~flipped] == given[~flipped]), abs=1e-6)
    _check_pngs(d, res["figures"])


def test_toy_distill_torch_backend_matches_numpy(tmp_path):
    a = _result(run_named(RUNS["toy-distill"], out=tmp_path / "np", quick=True, progress=False))
    b = _result(run_named(RUNS["toy-distill"], out=tmp_path / "pt", quick=True, progress=False, backend="torch"))
    assert b["backend"] == "torch"
    np.testing.assert_allclose(b["numbers"]["loss_steps"], a["numbers"]["loss_steps"], rtol=1e-10)
    np.testing.assert_allclose(b["numbers"]["B_diagonal"], a["numbers"]["B_diagonal"], rtol=1e-10, atol=1e-14)


def test_air_spectrum_findings_follow_the_numbers():
    """Each sentence is read off the numbers: swap which side wins and the words swap too."""
    from benchmarks.runs.air_spectrum import findings

    sm = {"gd_val_step": 40.0, "gd_test_acc_at_val_step": 0.9, "gd_final_test_acc": 0.7, "chained_final_test_acc": 0.95}
    r = {"summary": sm, "shares": {"clean": [0.5], "noise": [0.1]}, "target_momentum": 0.99}
    (line,) = findings({"k": r})
    assert "0.500 of the clean" in line and "(5.0x)" in line and "above its final 0.700" in line and "0.050 above early" in line
    sm2 = {**sm, "gd_test_acc_at_val_step": 0.6, "chained_final_test_acc": 0.5}
    (line2,) = findings({"k": {**r, "summary": sm2}})
    assert "not above its final 0.700" in line2 and "0.100 below early-stopped" in line2


def test_benchmark_named_by_its_module_docstring():
    from benchmarks.registry import Benchmark
    from benchmarks.runs import ALL_RUNS

    b = Benchmark.from_docstring("toy: a run.\n\nMore text.", lambda ctx: None, options=("n",))
    assert (b.name, b.summary, b.options) == ("toy", "a run.", ("n",))
    with pytest.raises(ValueError, match="'<name>: <summary>'"):
        Benchmark.from_docstring("A run without a name.", lambda ctx: None)
    names = [r.name for r in ALL_RUNS]
    assert len(set(names)) == len(names) and all(r.summary for r in ALL_RUNS)
