"""The cnn-kernels run at tiny sizes and the speed row of the CNN kernels.

The run's accuracies are recomputed from the Gram matrices it saved (a dense solve and
scikit-learn's KernelRidge), its Gram is checked against the named kernel on the run's own
images, and the noisy column is shown to be trained on the noisy labels and scored on the true
ones. Wall-clock times and speed ratios are never asserted, only that they are finite and positive.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks.cli import run_named
from benchmarks.runs import cnn_kernels, speed, speed_report

TINY = {"n_train": [20, 30], "n_test": 20}
N, M = max(TINY["n_train"]), TINY["n_test"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("cnn-kernels")
    d = run_named(cnn_kernels.BENCHMARK, out=out, quick=True, progress=False, overrides=TINY)
    return json.loads((d / "result.json").read_text())["numbers"], d


def _grams(run_dir: Path, r: dict) -> tuple[np.ndarray, np.ndarray]:
    with np.load(run_dir / r["gram_file"]) as z:
        return z["K_train"], z["K_cross"]


def _dense_predictions(K: np.ndarray, Kc: np.ndarray, labels: np.ndarray, ridge: float) -> np.ndarray:
    """argmax of K_cross (K + ridge I)^-1 Y, one-hot Y: the regression written out by hand."""
    Y = np.eye(10)[labels]
    return np.argmax(Kc @ np.linalg.solve(K + ridge * np.eye(len(K)), Y), axis=1)


def _labels(nums: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.asarray(nums[k], dtype=np.int64) for k in ("labels_true", "labels_given", "test_labels"))


def test_accuracies_equal_a_dense_recomputation_from_the_saved_gram(tiny_run):
    nums, run_dir = tiny_run
    true, given, test = _labels(nums)
    assert len(nums["kernels"]) == 4 and nums["n_train"] == TINY["n_train"] and len(test) == TINY["n_test"]
    for label, r in nums["kernels"].items():
        K_all, Kc_all = _grams(run_dir, r)
        assert K_all.shape == (N, N) and Kc_all.shape == (M, N), label
        for i, n in enumerate(r["n_train"]):
            K, Kc = K_all[:n, :n], Kc_all[:, :n]
            ridge = nums["ridge_rel"] * float(np.mean(np.diag(K)))
            assert r["ridge"][i] == pytest.approx(ridge, rel=1e-12)
            for kind, labels in (("clean", true), ("noisy", given)):
                pred = _dense_predictions(K, Kc, labels[:n], ridge)
                np.testing.assert_array_equal(r[f"pred_{kind}"][i], pred, err_msg=f"{label} {kind} n={n}")
                assert r[f"acc_{kind}"][i] == pytest.approx(float(np.mean(pred == test)), abs=1e-12)


def test_one_kernel_matches_sklearn_kernel_ridge(tiny_run):
    from sklearn.kernel_ridge import KernelRidge as SkKR

    nums, run_dir = tiny_run
    true, given, test = _labels(nums)
    r = nums["kernels"]["cnn_ntk cntk-gap-3 8x8"]
    K, Kc = _grams(run_dir, r)
    for i, n in enumerate(r["n_train"]):
        for kind, labels in (("clean", true), ("noisy", given)):
            sk = SkKR(alpha=r["ridge"][i], kernel="precomputed").fit(K[:n, :n], np.eye(10)[labels[:n]])
            pred = np.argmax(sk.predict(Kc[:, :n]), axis=1)
            assert r[f"acc_{kind}"][i] == pytest.approx(float(np.mean(pred == test)), abs=1e-12)


def test_noisy_column_trains_on_noisy_labels_and_scores_on_true_labels(tiny_run):
    """The labels are the source's true labels (test and train) and the noisy training labels; a run that
    trained the noisy column on the true labels, or scored on noisy labels, would fail here."""
    from deep.data import load_cifar10

    nums, run_dir = tiny_run
    true, given, test = _labels(nums)
    data = load_cifar10(run_dir / "digits", progress=False)
    np.testing.assert_array_equal(test, data.test_labels[nums["test_index"]])
    np.testing.assert_array_equal(true, data.train_labels[nums["train_index"]])
    assert 0.3 < np.mean(given != true) < 0.5  # symmetric:0.4
    swapped_differs = False
    for label, r in nums["kernels"].items():
        K_all, Kc_all = _grams(run_dir, r)
        for i, n in enumerate(r["n_train"]):
            K, Kc, ridge = K_all[:n, :n], Kc_all[:, :n], r["ridge"][i]
            on_noisy, on_true = _dense_predictions(K, Kc, given[:n], ridge), _dense_predictions(K, Kc, true[:n], ridge)
            assert r["acc_noisy"][i] == pytest.approx(np.mean(on_noisy == test), abs=1e-12)
            swapped_differs |= float(np.mean(on_true == test)) != r["acc_noisy"][i]  # the swap: trained on the true labels
    assert swapped_differs, "at these sizes, training on the true labels never changes the noisy column: the test has no power"


def test_gram_is_the_named_kernel_on_the_run_images(tiny_run):
    from kernels import cnn_ntk, ntk_relu

    nums, run_dir = tiny_run
    images = cnn_kernels.load_images(
        run_dir / "digits", n_max=N, n_test=M, noise=nums["noise"], pool=nums["pool"], seed=0, progress=False
    )
    np.testing.assert_array_equal(images.train_index, nums["train_index"])
    np.testing.assert_array_equal(images.labels_given, nums["labels_given"])
    assert images.train_pooled.shape[1:] == (8, 8, 3)
    assert np.allclose(images.train.mean(axis=(0, 1, 2)), 0) and np.allclose(images.train.std(axis=(0, 1, 2)), 1)
    K, Kc = _grams(run_dir, nums["kernels"]["cnn_ntk cntk-gap-3 8x8"])
    np.testing.assert_allclose(cnn_ntk(images.train_pooled[:3], architecture="cntk-gap-3"), K[:3, :3], rtol=1e-12)
    np.testing.assert_allclose(cnn_ntk(images.test_pooled[:2], images.train_pooled[:3], architecture="cntk-gap-3"), Kc[:2, :3])
    K, _ = _grams(run_dir, nums["kernels"]["ntk_relu(depth=3) 32x32"])
    np.testing.assert_allclose(ntk_relu(images.train[:4].reshape(4, -1), depth=3), K[:4, :4], rtol=1e-12)
    K, _ = _grams(run_dir, nums["kernels"]["cnn_ntk cntk-3 32x32"])
    np.testing.assert_allclose(cnn_ntk(images.train[:3], architecture="cntk-3"), K[:3, :3], rtol=1e-12)


def test_air_shares_times_and_figures(tiny_run):
    import matplotlib.image as mpimg

    nums, run_dir = tiny_run
    for label, r in nums["kernels"].items():
        air = r["air"]
        assert air["n"] == N and air["ks"] == [max(1, round(f * N)) for f in cnn_kernels.FRACTIONS]
        for which in ("clean", "noise"):
            cum = np.asarray(air[f"cum_{which}"])
            assert np.all(np.diff(cum) >= -1e-12) and cum[-1] == pytest.approx(1.0, abs=1e-9), label
            np.testing.assert_allclose(air[f"{which}_share"], cum[np.asarray(air["ks"]) - 1], atol=1e-12)
        assert r["pairs"] == N * (N + 1) // 2 + M * N and math.isfinite(r["pairs_per_s"]) and r["pairs_per_s"] > 0
    report = (run_dir / "report.md").read_text()
    for line in cnn_kernels.findings(nums):
        assert line in report
    for name in ("accuracy_vs_n.png", "label_energy.png"):
        img = mpimg.imread(run_dir / name)
        assert img.shape[0] > 100 and img.shape[1] > 100 and float(img[..., :3].std()) > 0.01


def _fake(acc_cnn: list[float], acc_fc: list[float]) -> dict:
    air = lambda c: {"n": 80, "fractions": [0.01, 0.05], "clean_share": [c, 0.5], "noise_share": [0.1, 0.2]}  # noqa: E731
    k = lambda acc, c: {"acc_clean": acc, "acc_noisy": [a - 0.2 for a in acc], "air": air(c), "pairs_per_s": 10.0}  # noqa: E731
    return {"n_train": [20, 40, 80], "pairs": [["cnn", "fc"]], "kernels": {"cnn": k(acc_cnn, 0.3), "fc": k(acc_fc, 0.2)}}


def test_findings_follow_the_numbers():
    lines = cnn_kernels.findings(_fake([0.5, 0.6, 0.7], [0.4, 0.5, 0.6]))
    assert "cnn beats fc at every n" in lines[0] and "+0.100" in lines[0]
    assert "(more at 1% only)" in lines[2] and "clean/noise share ratio 3.0 / 2.5 against 2.0 / 2.5" in lines[2]
    assert "rises with n at every step" in lines[4] and "changes it by -0.200 / -0.200 / -0.200 (a loss at every n)" in lines[4]
    gain = _fake([0.5, 0.6, 0.7], [0.4, 0.5, 0.6])
    gain["kernels"]["cnn"]["acc_noisy"] = [0.5, 0.65, 0.6]  # the noisy labels help at n = 40: the sentence must not say "loss"
    assert "changes it by 0.000 / 0.050 / -0.100 (not a loss at every n)" in cnn_kernels.findings(gain)[4]
    lines = cnn_kernels.findings(_fake([0.4, 0.5, 0.7], [0.5, 0.6, 0.6]))
    assert "cnn beats fc at n = 80 only" in lines[0]
    lines = cnn_kernels.findings(_fake([0.4, 0.4, 0.5], [0.5, 0.6, 0.6]))
    assert "cnn beats fc at no n" in lines[0] and "does not rise at every step" in lines[4]


def test_nested_order_prefixes_are_stratified():
    labels = np.repeat(np.arange(10), 30)
    order = cnn_kernels.nested_order(labels, 200, seed=3)
    assert len(set(order.tolist())) == 200
    for k in (10, 25, 50, 200):
        counts = np.bincount(labels[order[:k]], minlength=10)
        assert counts.max() - counts.min() <= 1, k


def test_cnn_speed_row_gives_sane_positive_rates():
    cfg = {
        "cases": [
            {"architecture": "cntk-3", "side": 32, "n": 3, "loop_n": 2, "cuda_n": 3},
            {"architecture": "cntk-gap-3", "side": 8, "n": 3, "loop_n": 2, "cuda_n": 3},
        ]
    }
    res = speed.row_cnn(cfg, 0)  # in this process (test_bench_speed runs every row, this one included, in its own)
    res.update(process_peak_mb=1.0, load_before=[0.0] * 3, load_after=[0.0] * 3)  # what speed._child adds
    rows = res["rows"]
    assert {(r["kernel"], r["backend"], r["device"]) for r in rows} >= {
        (f"cnn_ntk {a}", b, "cpu") for a in ("cntk-3", "cntk-gap-3") for b in ("numpy", "torch")
    }
    for r in rows:
        for key in ("pairs_per_s", "loop_pairs_per_s", "fc_pairs_per_s", "ratio_vs_loop", "ratio_fc_vs_toolkit", "toolkit_s"):
            assert math.isfinite(r[key]) and r[key] > 0, (r["kernel"], r["backend"], key)
        assert r["pairs"] == 9 and r["loop_pairs"] == 4
        assert r["max_abs_diff_loop"] <= 1e-12 * r["max_abs_kernel"]  # against the per-pair loop: independent
        if r["backend"] != "numpy":  # the numpy row is the reference itself
            assert r["max_abs_diff_numpy"] <= 1e-12 * r["max_abs_kernel"]
    text = "\n".join(speed_report._cnn_section(res))
    assert "## 7. CNN kernels" in text and text.count("cnn_ntk cntk-gap-3") == sum(
        r["kernel"] == "cnn_ntk cntk-gap-3" for r in rows
    )
    empty = {"distill": {"rows": []}, "ridge_path": {"rows": []}, "gram": {"rows": []}, "ntk": {"rows": []}}
    topk = {"k": 1, "ratio": 1.0, "full_s": 1.0, "topk_s": 1.0}
    bars = speed_report.speedup_bars({**empty, "eigh": {"rows": [], "topk": topk}, "cnn": res})
    cnn_bars = [b for b in bars if b["label"].startswith("cnn_ntk")]
    assert len(cnn_bars) == len(rows) and all(b["ratio"] > 0 for b in cnn_bars)
    assert "cnn_ntk cntk-3 32x32 numpy (cpu) vs pair loop" in {b["label"] for b in cnn_bars}
    assert "cnn" in speed.ROWS and set(speed.QUICK) == set(speed.FULL) == set(speed.ROWS)
