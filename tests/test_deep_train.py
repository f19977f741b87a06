"""deep.config / deep.methods / deep.records / deep.train: target rules, records, resume, CLI.

Every run is tiny (30 fake CIFAR images from deep.synthetic, CPU, 1-2 epochs); the
MLP is used wherever the network does not matter.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deep.config import CONSTRAINTS, TrainConfig
from deep.data import CifarFormatError, load_cifar10
from deep.methods import (
    batch_targets,
    chained_targets,
    generation_targets,
    interp_targets,
    one_hot,
    predictions,
    scheduled_weight,
    soft_cross_entropy,
)
from deep.models import make_model
from deep.records import TIME_FIELDS, EpochRecord, load_checkpoint, read_records, summarize, write_records
from deep.synthetic import corrupt_file, write_fake_cifar
from deep.train import lr_factor, main, train
from tests.reference import tiny_run


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    """30 training / 10 test images in the official python-batch layout, and a cache folder."""
    root = tmp_path_factory.mktemp("fake")
    path = write_fake_cifar(root, fmt="python", n_train_per_class=3, n_test_per_class=1, seed=0)
    return {"data": str(path), "cache_dir": str(root / "cache")}


def weight_kw(method: str, value: float) -> dict:
    """The keyword of a method's weight: alpha (generations), target_momentum (self-distill, sat)."""
    return {"generations": {"alpha": value}, "self-distill": {"target_momentum": value}, "sat": {"target_momentum": value}}.get(
        method, {}
    )


def tiny(fake, out, **kw) -> TrainConfig:
    base = tiny_run(
        data=fake["data"],
        cache_dir=fake["cache_dir"],
        out=str(out),
        model_options={"width": 32},
        lr=0.05,
        val_fraction=0.2,
        freq_subset=12,
        progress=False,
        seed=3,
    )
    return TrainConfig(**(base | kw))


@pytest.fixture(scope="module")
def ce_run(fake, tmp_path_factory):
    return train(tiny(fake, tmp_path_factory.mktemp("ce"), method="ce", noise="symmetric:0.4"))


def _check_record(rec: EpochRecord) -> None:
    d = rec.to_dict()
    assert set(d) == {f.name for f in dataclasses.fields(EpochRecord)}
    for name in (
        "loss",
        "lr",
        "time",
        "elapsed",
        "test_acc",
        "train_acc",
        "train_acc_clean",
        "train_acc_flipped_given",
        "train_acc_flipped_true",
        "val_acc",
        "val_acc_true",
        "target_agreement",
        "target_agreement_flipped",
    ):
        assert isinstance(d[name], float) and math.isfinite(d[name]), name
    for name in ("e_low", "e_high", "low_ratio", "freq_deltas"):
        assert len(d[name]) == 5 and all(math.isfinite(v) for v in d[name]), name
    assert all(0 <= v <= 1 for v in d["low_ratio"])


# ----------------------------------------------------------------------------- methods (unit)


def test_soft_cross_entropy_matches_torch():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(7, 10, generator=g)
    y = torch.randint(0, 10, (7,), generator=g)
    assert torch.allclose(soft_cross_entropy(z, one_hot(y, 10)), F.cross_entropy(z, y), atol=1e-6)
    p = torch.softmax(torch.randn(7, 10, generator=g), 1)
    assert torch.allclose(soft_cross_entropy(z, p, label_smoothing=0.2), F.cross_entropy(z, p, label_smoothing=0.2), atol=1e-6)
    with pytest.raises(ValueError, match="label_smoothing"):
        soft_cross_entropy(z, p, label_smoothing=1.0)
    with pytest.raises(ValueError, match="targets"):
        soft_cross_entropy(z, p[:, :5])


def test_target_rules_against_direct_formulas():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(12, 10, generator=g)
    y = torch.randint(0, 10, (12,), generator=g)
    y[:4] = z[:4].argmax(1)  # at least 4 agreements
    # interp: a per-row loop
    t, lam = interp_targets(z, y)
    pred = z.argmax(1).tolist()
    lam_ref = sum(int(p == int(label)) for p, label in zip(pred, y.tolist())) / 12
    assert float(lam) == pytest.approx(lam_ref)
    for i in range(12):
        ref = np.zeros(10)
        ref[int(y[i])] += 1 - lam_ref
        ref[pred[i]] += lam_ref
        assert np.allclose(t[i].numpy(), ref, atol=1e-6)
    # chained / generation targets stay distributions and follow the formula
    prev = torch.softmax(torch.randn(12, 10, generator=g), 1)
    q = predictions(z, soft=True)
    assert torch.allclose(chained_targets(prev, q, 0.3), 0.3 * prev + 0.7 * torch.softmax(z, 1))
    assert torch.allclose(generation_targets(one_hot(y, 10), q, 0.6).sum(1), torch.ones(12))
    hard = predictions(z, soft=False)
    assert torch.equal(hard.argmax(1), z.argmax(1)) and torch.equal(hard.sum(1), torch.ones(12))
    # the loop's dispatcher
    assert torch.equal(batch_targets("ce", z, y, None)[0], one_hot(y, 10))
    assert torch.equal(batch_targets("self-distill", z, y, prev)[0], prev)
    with pytest.raises(ValueError, match="method"):
        batch_targets("nope", z, y, None)


def test_weight_and_lr_schedules():
    assert scheduled_weight("constant", 0.3, 4, 10) == 0.3
    assert scheduled_weight("linear", 0.3, 0, 10) == 1.0
    assert scheduled_weight("linear", 0.3, 9, 10) == pytest.approx(0.3)
    assert np.allclose([scheduled_weight("linear", 0.3, s, 5) for s in range(5)], np.linspace(1, 0.3, 5))
    with pytest.raises(ValueError, match="step"):
        scheduled_weight("linear", 0.3, 5, 5)
    with pytest.raises(ValueError, match="schedule"):
        scheduled_weight("cosine", 0.3, 0, 5)
    total, w = 50, 0.2
    u = (np.arange(total) + 0.5) / total
    ref = np.interp(u, [0, w, 1], [0, 1, 0])
    assert np.allclose([lr_factor(s, total, "linear", w) for s in range(total)], ref)
    assert all(lr_factor(s, total, "constant", w) == 1.0 for s in range(total))


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize("name", sorted(CONSTRAINTS))
def test_every_constraint_is_enforced(name, tmp_path):
    bad = CONSTRAINTS[name].invalid_example()
    with pytest.raises((ValueError, TypeError), match=name):
        TrainConfig(out=str(tmp_path), **{name: bad})


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"method": "mixup"}, "method"),
        ({"model": "vgg"}, "model"),
        ({"noise": "gaussian:0.2"}, "noise"),
        ({"noise": "symmetric:1.5"}, "noise"),
        ({"generations": 3}, "generations"),
        ({"model": "mlp", "model_options": {"depth_": 2}}, "model_options"),
        ({"freq_deltas": (1.0, -2.0)}, "freq_deltas"),
    ],
)
def test_bad_config_names_the_field(changes, match, tmp_path):
    with pytest.raises((ValueError, TypeError), match=match):
        TrainConfig(out=str(tmp_path), **changes)


def test_config_round_trips_through_json(tmp_path):
    cfg = TrainConfig(out=str(tmp_path), model="fastnet", model_options={"widths": (8, 16, 16)}, freq_deltas=(1.0, 10.0))
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))).to_dict() == cfg.to_dict()
    with pytest.raises(TypeError, match="unknown"):
        TrainConfig.from_dict({"learning_rate": 1.0})


# ----------------------------------------------------------------------------- records (unit)


def _rec(k: int, val: float | None, test: float) -> EpochRecord:
    names = [f.name for f in dataclasses.fields(EpochRecord)]
    values = {n: 0.0 for n in names}
    values.update(
        epoch=k,
        generation=1,
        global_epoch=k,
        val_acc=val,
        test_acc=test,
        freq_deltas=[],
        e_low=[],
        e_high=[],
        low_ratio=[],
        alpha=None,
        lam=None,
    )
    return EpochRecord(**values)


def test_summary_early_stopping_and_atomic_records(tmp_path):
    vals, tests = [0.2, 0.5, 0.5, 0.4], [0.3, 0.6, 0.7, 0.8]
    recs = [_rec(k + 1, v, t) for k, (v, t) in enumerate(zip(vals, tests))]
    s = summarize(recs, finished=True, data={}, config={}, timings={})
    first_best = int(np.argmax(vals))  # numpy's argmax keeps the first of ties
    assert s.best_epoch == first_best + 1 and s.best_epoch_test_acc == tests[first_best]
    assert s.final_test_acc == tests[-1] and s.best_test_acc == max(tests)
    assert summarize([_rec(1, None, 0.5)], finished=True, data={}, config={}, timings={}).best_epoch is None
    path = write_records(tmp_path / "records.jsonl", recs)
    assert read_records(path) == recs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["records.jsonl"]  # no temporary files left


# ----------------------------------------------------------------------------- training runs


def test_ce_run_records_and_partition(ce_run):
    res = ce_run
    assert len(res.records) == 1 and res.finished
    rec = res.records[0]
    _check_record(rec)
    # the files agree with the returned objects
    assert read_records(res.out / "records.jsonl") == list(res.records)
    summary = json.loads((res.out / "summary.json").read_text())
    assert summary["final_test_acc"] == rec.test_acc and summary["best_epoch"] == 1
    assert summary["config"]["method"] == "ce" and "torch" in summary["versions"]
    # the clean and flipped subsets partition the training images
    split = np.load(res.out / "split.npz")
    data = load_cifar10(res.config.data, cache_dir=res.config.cache_dir, progress=False)
    tr, va, flipped = split["train_idx"], split["val_idx"], split["flipped"]
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == data.n_train
    assert np.array_equal(split["true_labels"], data.train_labels[tr])
    assert np.array_equal(flipped, split["labels"] != split["true_labels"])
    n, nf = len(tr), int(flipped.sum())
    assert nf == round(0.4 * data.n_train) - int((split["val_labels"] != split["val_true_labels"]).sum()) and 0 < nf < n
    # accuracy on all training images is the count-weighted mix of the two subsets
    assert rec.train_acc * n == pytest.approx(rec.train_acc_clean * (n - nf) + rec.train_acc_flipped_given * nf, abs=1e-4)
    # ce targets are the noisy labels: agreement with the truth is the clean fraction
    assert rec.target_agreement == pytest.approx((n - nf) / n) and rec.target_agreement_flipped == 0.0
    # the returned model reproduces the recorded training accuracy on the given labels
    from deep.augment import to_device

    x = to_device(data.train_images[tr], "cpu", torch.float32)
    with torch.no_grad():
        pred = res.model(x).argmax(1).numpy()
    assert np.mean(pred == split["labels"]) == pytest.approx(rec.train_acc, abs=1e-6)


@pytest.mark.parametrize("method, generations", [("self-distill", 1), ("interp", 1), ("generations", 2)])
def test_each_method_runs_one_epoch(fake, tmp_path, method, generations):
    res = train(
        tiny(fake, tmp_path, method=method, generations=generations, **weight_kw(method, 0.7), progress=method == "generations")
    )
    assert len(res.records) == generations and res.finished
    for rec in res.records:
        _check_record(rec)
    assert [r.generation for r in res.records] == list(range(1, generations + 1))
    if method == "interp":
        assert 0 <= res.records[0].lam <= 1
    if method == "self-distill":
        assert res.records[0].target_momentum == 0.7 and res.records[0].alpha is None
    if method == "generations":
        assert res.records[0].alpha is None and res.records[1].alpha == 0.7
        assert all(r.target_momentum is None for r in res.records)


@pytest.mark.parametrize(
    "model, options", [("fastnet", {"widths": (8, 16, 16)}), ("resnet18", {}), ("shakeshake26", {"base_width": 2})]
)
def test_each_model_runs_one_epoch(fake, tmp_path, model, options):
    res = train(tiny(fake, tmp_path, model=model, model_options=options, subset=10, test_subset=5, freq_subset=4))
    assert len(res.records) == 1
    _check_record(res.records[0])


def test_self_distill_targets_follow_dong_update(fake, tmp_path):
    """With a negligible step the predictions during the epoch are the initial network's,
    so t_1 = m onehot(y~) + (1 - m) softmax(f_0(x)) exactly (m the target momentum; MLP: train = eval mode)."""
    cfg = tiny(fake, tmp_path, method="self-distill", target_momentum=0.6, lr=1e-12, weight_decay=0.0, augment=False)
    res = train(cfg)
    targets = load_checkpoint(res.out / "checkpoint.pt")["targets"]
    data = load_cifar10(cfg.data, cache_dir=cfg.cache_dir, progress=False)
    from deep.augment import to_device

    x = to_device(data.train_images[res.split.train_idx], "cpu", torch.float32)
    f0 = make_model("mlp", seed=cfg.seed, width=32)
    with torch.no_grad():
        p0 = torch.softmax(f0(x), 1)
    ref = 0.6 * F.one_hot(torch.from_numpy(res.split.labels), 10).float() + 0.4 * p0
    assert torch.allclose(targets, ref, atol=1e-5)


@pytest.mark.parametrize(
    "method, epochs, generations, model",
    [
        ("self-distill", 2, 1, ("mlp", {"width": 32})),
        ("generations", 1, 2, ("mlp", {"width": 32})),
        # Shake-Shake draws its branch weights from the global torch RNG during training
        ("ce", 2, 1, ("shakeshake26", {"base_width": 2})),
    ],
)
def test_resume_equals_uninterrupted(fake, tmp_path, method, epochs, generations, model):
    kw = dict(
        method=method, epochs=epochs, generations=generations, **weight_kw(method, 0.6), model=model[0], model_options=model[1]
    )
    if model[0] != "mlp":
        kw.update(subset=10, test_subset=5, batch_size=4, freq_subset=4)
    full = train(tiny(fake, tmp_path / "full", **kw))
    part = train(tiny(fake, tmp_path / "part", stop_after=1, **kw))
    assert len(part.records) == 1 and not part.finished
    with pytest.raises(ValueError, match="already holds a run"):
        train(tiny(fake, tmp_path / "part", **kw))
    with pytest.raises(ValueError, match="these fields differ: lr"):
        train(tiny(fake, tmp_path / "part", resume=True, **{**kw, "lr": 0.0123}))
    rest = train(tiny(fake, tmp_path / "part", resume=True, **kw))
    assert rest.resumed_from == 1 and rest.finished and len(rest.records) == 2

    def strip(rec):
        return {k: v for k, v in rec.to_dict().items() if k not in TIME_FIELDS}

    assert [strip(r) for r in rest.records] == [strip(r) for r in full.records]
    assert [strip(r) for r in read_records(rest.out / "records.jsonl")] == [strip(r) for r in full.records]
    for (k, a), (_, b) in zip(full.model.state_dict().items(), rest.model.state_dict().items()):
        assert torch.equal(a, b), k
    ta = load_checkpoint(full.out / "checkpoint.pt")["targets"]
    tb = load_checkpoint(rest.out / "checkpoint.pt")["targets"]
    assert (ta is None and tb is None and method == "ce") or torch.equal(ta, tb)


# ----------------------------------------------------------------------------- CLI


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for opt in (
        "--data",
        "--noise",
        "--method",
        "--model",
        "--epochs",
        "--batch-size",
        "--lr",
        "--alpha",
        "--seed",
        "--device",
        "--subset",
        "--out",
        "--resume",
        "--generations",
        "--download",
    ):
        assert opt in text


def test_cli_corrupt_archive_is_one_line_error(tmp_path):
    path = corrupt_file(
        write_fake_cifar(tmp_path / "d", fmt="python-tar", n_train_per_class=2, n_test_per_class=1), keep_fraction=0.5
    )
    args = [
        "--data",
        str(path),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(tmp_path / "run"),
        "--device",
        "cpu",
        "--no-progress",
    ]
    with pytest.raises(SystemExit) as exc:
        main(args)
    msg = exc.value.code
    assert isinstance(msg, str) and "\n" not in msg and msg.startswith("deep.train: error:") and str(path) in msg
    with pytest.raises(CifarFormatError):
        train(
            TrainConfig(
                data=str(path), cache_dir=str(tmp_path / "cache"), out=str(tmp_path / "run2"), device="cpu", progress=False
            )
        )


@pytest.mark.parametrize(
    "args, match",
    [(["--method", "mixup"], "method"), (["--model", "vgg"], "model"), (["--lr", "-1"], "lr"), (["--epochs", "two"], "epochs")],
)
def test_cli_bad_options_are_one_line_errors(tmp_path, capsys, args, match):
    with pytest.raises(SystemExit) as exc:
        main(args + ["--out", str(tmp_path), "--no-progress"])
    msg = exc.value.code if isinstance(exc.value.code, str) else capsys.readouterr().err
    assert exc.value.code != 0 and match in msg and msg.strip().count("\n") == 0


def test_cli_run_writes_summary(fake, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "--data",
            fake["data"],
            "--cache-dir",
            fake["cache_dir"],
            "--out",
            str(out),
            "--model",
            "mlp",
            "--model-option",
            "width=16",
            "--method",
            "interp",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--device",
            "cpu",
            "--no-progress",
            "--freq-subset",
            "0",
            "--val-fraction",
            "0",
        ]
    )
    assert code == 0 and "final test" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["method"] == "interp" and summary["config"]["model_options"] == {"width": 16}
    assert summary["best_epoch"] is None and summary["data"]["n_val"] == 0 and summary["data"]["n_train"] == 30
    rec = read_records(out / "records.jsonl")[0]
    assert rec.freq_deltas == [] and rec.val_acc is None and math.isfinite(rec.test_acc)


def test_result_files_follow_the_umask(tmp_path):
    """Atomic writers (records, JSON, figures) give new files the umask's mode, not mkstemp's 0600."""
    import os
    import stat

    import matplotlib.pyplot as plt

    from benchmarks.run_files import atomic_savefig, atomic_write_json
    from deep.records import atomic_write_bytes

    old = os.umask(0o022)
    try:
        a = atomic_write_bytes(tmp_path / "a.bin", b"x")
        b = atomic_write_json(tmp_path / "b.json", {"x": 1})
        fig = plt.figure()
        c = atomic_savefig(fig, tmp_path / "c.png")
        for p in (a, b, c):
            assert stat.S_IMODE(p.stat().st_mode) == 0o644, p
        os.umask(0o077)
        assert stat.S_IMODE(atomic_write_bytes(tmp_path / "d.bin", b"x").stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_ctrl_c_prints_one_line_with_the_resume_command(tmp_path, interrupt_at_epoch, capsys):
    """Ctrl-C after an epoch: one line saying how to continue (no traceback), checkpoint kept."""
    import deep.train as train_mod

    restore = interrupt_at_epoch(2)
    out = tmp_path / "run"
    argv = [
        "--epochs",
        "3",
        "--model",
        "mlp",
        "--model-option",
        "width=8",
        "--no-progress",
        "--freq-subset",
        "0",
        "--out",
        str(out),
    ]
    with pytest.raises(SystemExit) as exc:
        train_mod.main(argv)
    msg = str(exc.value)
    assert "\n" not in msg and "interrupted; 1 epoch(s) are saved" in msg and msg.endswith(" --resume")
    assert (out / "checkpoint.pt").exists()
    restore()
    assert train_mod.main(argv + ["--resume"]) == 0
    assert len((out / "records.jsonl").read_text().splitlines()) == 3
