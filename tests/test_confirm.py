"""`airkit run confirm` in a tiny configuration: verdicts wired to the numbers they judge, resume.

The verdict functions themselves are tested on planted data in test_verdicts.py; here the
run's own numbers are recomputed from what it stored (curves, split, training predictions),
so that a verdict fed the wrong curve, the true labels where the noisy ones belong, or the
wrong seed's run fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import sweep as sweep_mod
from benchmarks.cli import run_named
from benchmarks.runs import ALL_RUNS
from benchmarks.runs import confirm as confirm_mod
from benchmarks.runs.confirm_cnn import as_inf

CONFIRM = {b.name: b for b in ALL_RUNS}["confirm"]

TINY = {
    "cnn": {
        "model": "fastnet",
        "model_options": {"widths": (8, 8, 8)},
        "subset": 300,
        "test_subset": 100,
        "epochs": 3,
        "batch_size": 64,
        "lr": 0.1,
        "augment": False,
        "freq_subset": 0,
    },
    "ntk": {
        "n": 60,
        "n_val": 30,
        "n_test": 60,
        "dim": 12,
        "depth": 1,
        "widths": [16, 256],
        "seeds": 2,
        "steps": 30,
        "points": 6,
        "lr_scale": 1.0,
    },
    "seeds": 2,
    "entk_m": 30,
    "distill_start": 1,
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("confirm")
    return run_named(CONFIRM, out=out, quick=True, progress=False, overrides=TINY)


def _result(d: Path) -> dict:
    return json.loads((d / "result.json").read_text())


def _verdicts(res: dict) -> dict[str, dict]:
    return {v["key"]: v for v in res["numbers"]["verdicts"]}


def test_every_prediction_has_a_verdict_and_the_report_says_so(tiny_run):
    res = _result(tiny_run)
    v = _verdicts(res)
    for prefix in ("P1", "P2", "P3", "P4", "P5"):
        assert any(k.startswith(prefix) for k in v), prefix
    assert all(isinstance(x["passed"], bool) for x in v.values())
    n_pass = sum(x["passed"] for x in v.values())
    report = (tiny_run / "report.md").read_text()
    assert f"{n_pass} of {len(v)} predictions hold" in report
    assert report.count("| PASS |") + report.count("| FAIL |") == len(v)
    assert "digits" in report  # the report says which data it used
    for name in res["figures"]:
        assert (tiny_run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_methods_seeds_and_distill_start(tiny_run):
    cnn = _result(tiny_run)["numbers"]["cnn"]
    assert {m: len(r) for m, r in cnn.items()} == {"ce": 2, "self-distill": 2, "sat": 2, "generations": 1}
    assert [r["seed"] for r in cnn["ce"]] == [0, 1]
    for m in ("self-distill", "sat"):
        for r in cnn[m]:
            assert r["curves"]["target_momentum"][0] == 1.0  # warm-up epoch: plain targets
            assert r["curves"]["target_momentum"][1] == r["params"]["target_momentum"]
    assert len(cnn["generations"][0]["curves"]["test_acc"]) == 2 * TINY["cnn"]["epochs"]


def test_p3_p4_are_computed_from_the_ce_curves(tiny_run):
    res = _result(tiny_run)
    cnn, v = res["numbers"]["cnn"], _verdicts(res)
    acc = np.array([r["curves"]["test_acc"] for r in cnn["ce"]])
    drop = acc.max(axis=1) - acc[:, -1]
    assert v["P3 early stopping"]["measured"] == pytest.approx(drop.mean(), abs=1e-12)
    es = np.mean([r["test_acc_at_best_val"] for r in cnn["ce"]])
    for m in ("self-distill", "sat"):
        key = f"P4 {m} vs early stop"
        assert v[key]["analytic"] == pytest.approx(es, abs=1e-12)
        assert v[key]["measured"] == pytest.approx(np.mean([r["final_test_acc"] for r in cnn[m]]), abs=1e-12)
        mem = np.mean([r["final_memorised"] for r in cnn[m]])
        assert v[f"P4 {m} memorisation"]["measured"] == pytest.approx(mem, abs=1e-12)


def test_p5_compares_the_widest_net_with_the_analytic_curve(tiny_run):
    res = _result(tiny_run)
    ntk, v = res["numbers"]["ntk"], _verdicts(res)
    for rule in ("gd", "chained"):
        widest = np.asarray(ntk["per_width"][str(max(ntk["widths"]))][rule]["test_acc"], dtype=float).mean(axis=0)
        theory = np.asarray(ntk["theory"][rule]["test_acc"], dtype=float)
        dev = np.max(np.abs(widest - theory))
        assert v[f"P5 widest net = analytic curve [{rule}]"]["measured"] == pytest.approx(dev, abs=1e-12)
    # chained alpha is fixed by the analytic early-stopping step: alpha = 1 - 1/k*
    assert ntk["target_momentum"] == pytest.approx(1 - 1 / max(ntk["k_star"], 2))
    assert ntk["realised_error_rate"] > 0.3


def test_measured_fit_epochs_use_the_given_labels(tiny_run):
    """The kernel part's measured first-fit epochs come from the CE run's training predictions
    against its GIVEN (noisy) labels; the true labels give different epochs on flipped images."""
    from deep.records import first_fit_epochs

    res = _result(tiny_run)
    k0, ce0 = res["numbers"]["kernel"][0], res["numbers"]["cnn"]["ce"][0]
    run_dir = tiny_run / ce0["run_dir"]
    split = np.load(run_dir / "split.npz")
    pred = np.load(run_dir / "train_predictions.npz")["pred"]
    given = first_fit_epochs(pred, split["labels"])
    np.testing.assert_array_equal(as_inf(k0["measured_fit_all"]), given)
    np.testing.assert_array_equal(np.asarray(k0["flipped_all"], dtype=bool), split["flipped"])
    # the per-epoch predictions agree with the records' training accuracy (against the given labels)
    acc = [float(np.mean(p == split["labels"])) for p in pred]
    records = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    assert acc == pytest.approx([r["train_acc"] for r in records], abs=1e-6)
    assert k0["es_epoch"] == json.loads((run_dir / "summary.json").read_text())["best_epoch"]


def test_p1_shares_match_the_kernel_parts(tiny_run):
    res = _result(tiny_run)
    v, kern = _verdicts(res), res["numbers"]["kernel"]
    clean = np.array([k["kernels"]["init"]["clean_share"] for k in kern])
    noise = np.array([k["kernels"]["init"]["noise_share"] for k in kern])
    ratio = (clean / noise).mean(axis=0)
    assert v["P1 top-10% [eNTK at init]"]["measured"] == pytest.approx(ratio[2], rel=1e-9)
    assert v["P1 top-10% [eNTK at init]"]["passed"] == bool(np.all(clean[:, 2] >= 2 * noise[:, 2]))


def test_resume_skips_finished_parts(tmp_path, monkeypatch):
    """A run interrupted in its last part continues with --resume without retraining any network."""
    small = {**TINY, "seeds": 2, "ntk": {**TINY["ntk"], "widths": [16, 64], "seeds": 2}}

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(confirm_mod, "ntk_regime", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_named(CONFIRM, out=tmp_path, quick=True, progress=False, overrides=small)
    partial = [p for p in (tmp_path / "confirm").iterdir() if p.name.endswith(".partial")]
    assert len(partial) == 1 and (partial[0] / "train" / "cells" / "sat-seed1" / "cell.json").exists()
    monkeypatch.undo()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished training part was run again")

    monkeypatch.setattr(sweep_mod, "train_cell", no_training)
    d = run_named(CONFIRM, out=tmp_path, quick=True, progress=False, overrides=small, resume=True)
    res = _result(d)
    assert res["resumed"] is True
    assert any(v["key"].startswith("P5") for v in res["numbers"]["verdicts"])


def test_interrupt_in_the_first_training_keeps_its_checkpoint(tmp_path, interrupt_at_epoch):
    """Ctrl-C during the first network's training keeps the run folder (its checkpoint), and
    --resume continues that network from its last epoch instead of starting again."""
    small = {**TINY, "seeds": 1, "generations_seeds": 1, "ntk": {**TINY["ntk"], "widths": [16, 64], "seeds": 1}}
    restore = interrupt_at_epoch(2)
    with pytest.raises(KeyboardInterrupt):
        run_named(CONFIRM, out=tmp_path, quick=True, progress=False, overrides=small)
    partial = [p for p in (tmp_path / "confirm").iterdir() if p.name.endswith(".partial")]
    assert len(partial) == 1 and (partial[0] / "train" / "cells" / "ce-seed0" / "run" / "checkpoint.pt").exists()
    restore()
    d = run_named(CONFIRM, out=tmp_path, quick=True, progress=False, overrides=small, resume=True)
    ce = _result(d)["numbers"]["cnn"]["ce"][0]
    assert len(ce["curves"]["test_acc"]) == TINY["cnn"]["epochs"]


def test_analytic_cnn_kernel_shares_are_those_of_the_true_and_given_labels(tiny_run):
    """The analytic CNN NTK's label spectrum is taken on the kernel part's images, clean energy from the
    TRUE labels and noise from given - true: recomputed here from the run's files."""
    from deep.data import load_cifar10
    from kernels import cnn_ntk, spectrum
    from theory.air import label_spectrum

    res = _result(tiny_run)
    k0, ce0, an = res["numbers"]["kernel"][0], res["numbers"]["cnn"]["ce"][0], res["numbers"]["kernel_analytic"]
    split = np.load(tiny_run / ce0["run_dir"] / "split.npz")
    pos = np.asarray(k0["positions"], dtype=np.int64)
    images = load_cifar10(tiny_run / "digits" / "cifar-10-batches-py", progress=False).train_images
    imgs = images[split["train_idx"][pos]].astype(np.float64) / 255.0
    imgs = (imgs - imgs.mean(axis=(0, 1, 2))) / imgs.std(axis=(0, 1, 2))
    K = cnn_ntk(imgs, architecture=an["cnn"]["architecture"])

    def centred(labels):
        y = np.eye(10)[labels]
        return y - y.mean(axis=0)

    ls = label_spectrum(spectrum(K, psd="clip"), centred(split["true_labels"][pos]), centred(split["labels"][pos]))
    np.testing.assert_allclose(an["cnn"]["clean_share"], ls.share_at(an["ks"], "clean"), rtol=1e-9)
    np.testing.assert_allclose(an["cnn"]["noise_share"], ls.share_at(an["ks"], "noise"), rtol=1e-9)
    swapped = label_spectrum(spectrum(K, psd="clip"), centred(split["labels"][pos]), centred(split["true_labels"][pos]))
    assert not np.allclose(an["cnn"]["clean_share"], swapped.share_at(an["ks"], "clean"))
    md = (tiny_run / "report.md").read_text()
    assert f"analytic CNN NTK ({an['cnn']['architecture']}), clean share" in md and "Order of fitting" in md
