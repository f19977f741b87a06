"""Self-Adaptive Training (method="sat"), the distill_start warm-up, the per-example fit
history (train_predictions.npz, first_fit_epochs), best_model.pt and the summary's data block.

Exact values are worked out by hand wherever a plausible slip (alpha and 1 - alpha
swapped, the SAT weights ignored, the warm-up off by one epoch, first fit off by one,
accuracies against the true instead of the given labels) would change them. Every run
is tiny: synthetic data (``data=None``), a width-32 MLP, CPU, at most 3 epochs.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deep.augment import to_device
from deep.config import TrainConfig, build_parser, config_from_args
from deep.methods import BatchTargets, batch_targets, sat_targets, soft_cross_entropy
from deep.models import make_model
from deep.records import TIME_FIELDS, first_fit_epochs, load_checkpoint, read_records
from deep.splits import DeviceData
from deep.synthetic import fake_cifar_arrays
from deep.train import SYNTHETIC_PER_CLASS, epoch_momentum, main, make_optimizer, train, train_epoch

torch.set_num_threads(1)  # as tests/conftest.py

WIDTH = 32
# 60 synthetic training images -> 40 train (13 flipped: realised rate 0.325, not the nominal
# 0.4) / 20 noisy validation; with lr 2 and seed 0 the noisy validation accuracy is 0.15,
# 0.20, 0.20: the best epoch is 2 (the first of a tie with the last epoch), so
# best_model.pt must hold the epoch-2 weights, not the first's nor the last's.
BASE = dict(
    data=None,
    model="mlp",
    model_options={"width": WIDTH},
    subset=60,
    test_subset=20,
    val_fraction=0.34,
    batch_size=16,
    eval_batch_size=256,
    freq_subset=0,
    progress=False,
    device="cpu",
    seed=0,
    lr=2.0,
    noise="symmetric:0.4",
)
SAT = dict(method="sat", target_momentum=0.9, distill_start=1, epochs=3)
# SAT by plain SGD at a constant lr, no augmentation: the steps the by-hand references take
HAND_SAT = dict(method="sat", augment=False, momentum=0.0, weight_decay=0.0, lr_schedule="constant")


def cfg_at(out, **kw) -> TrainConfig:
    return TrainConfig(**{**BASE, "out": str(out), **kw})


def strip(rec):
    return {k: v for k, v in rec.to_dict().items() if k not in TIME_FIELDS}


def run_images(cfg: TrainConfig, idx: np.ndarray) -> torch.Tensor:
    """The run's (normalised) training-array images at ``idx``, rebuilt from the synthetic set."""
    data = fake_cifar_arrays(*SYNTHETIC_PER_CLASS, seed=cfg.seed)
    return to_device(data.train_images[idx], "cpu", torch.float32)


def is_one_hot_of(t: torch.Tensor, labels: np.ndarray) -> bool:
    return torch.equal(t, F.one_hot(torch.from_numpy(np.asarray(labels)), 10).to(t.dtype))


@pytest.fixture(scope="module")
def sat_full(tmp_path_factory):
    """An uninterrupted 3-epoch SAT run (alpha 0.9, warm-up 1 epoch, augmentation, momentum)."""
    return train(cfg_at(tmp_path_factory.mktemp("sat_full"), **SAT))


@pytest.fixture(scope="module")
def sat_parts(tmp_path_factory):
    """The same run in three sessions: stop_after=1, resumed with stop_after=2, resumed to the end.

    Returns the three results and the checkpoint (targets, model) after each session."""
    out = tmp_path_factory.mktemp("sat_parts")
    results, ckpts = [], []
    for kw in (dict(stop_after=1), dict(resume=True, stop_after=2), dict(resume=True)):
        results.append(train(cfg_at(out, **SAT, **kw)))
        ckpts.append(load_checkpoint(out / "checkpoint.pt"))
    return results, ckpts


# ----------------------------------------------------------------------------- sat_targets


def test_sat_targets_by_hand():
    """alpha = 0.8 weighs the stored target; the weight is w = max_c t_c."""
    stored = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    logits = torch.log(torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2], [0.05, 0.05, 0.9]]))
    t, w = sat_targets(stored, logits, 0.8)
    expected = torch.tensor([[0.84, 0.06, 0.10], [0.52, 0.44, 0.04], [0.81, 0.01, 0.18]])
    assert torch.allclose(t, expected, atol=1e-6)
    assert torch.allclose(w, torch.tensor([0.84, 0.52, 0.81]), atol=1e-6)
    # alpha = 0.3: the prediction dominates and row 3's weight is its predicted class's entry
    t, w = sat_targets(stored, logits, 0.3)
    expected = torch.tensor([[0.44, 0.21, 0.35], [0.57, 0.29, 0.14], [0.335, 0.035, 0.63]])
    assert torch.allclose(t, expected, atol=1e-6)
    assert torch.allclose(w, torch.tensor([0.44, 0.57, 0.63]), atol=1e-6)
    # soft=False: one-hot argmax predictions (classes 2, 0, 2)
    t, w = sat_targets(stored, logits, 0.8, soft=False)
    expected = torch.tensor([[0.8, 0.0, 0.2], [0.6, 0.4, 0.0], [0.8, 0.0, 0.2]])
    assert torch.allclose(t, expected, atol=1e-6)
    assert torch.allclose(w, torch.tensor([0.8, 0.6, 0.8]), atol=1e-6)
    # alpha = 0: the softmax itself
    t, _ = sat_targets(stored, logits, 0.0)
    assert torch.allclose(t, torch.softmax(logits, 1), atol=1e-6)


def test_sat_targets_alpha_one_is_the_warm_up():
    """alpha = 1 returns one-hot stored rows unchanged (bit for bit) with weight 1."""
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([3, 0, 9, 3, 5])
    stored = F.one_hot(labels, 10).float()
    logits = 4 * torch.randn(5, 10, generator=g)
    for soft in (True, False):
        t, w = sat_targets(stored, logits, 1.0, soft=soft)
        assert torch.equal(t, stored) and torch.equal(w, torch.ones(5))


def test_sat_targets_are_detached_and_checked():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 10, generator=g, requires_grad=True)
    stored = torch.full((4, 10), 0.1)
    t, w = sat_targets(stored, logits, 0.5)
    assert not t.requires_grad and not w.requires_grad  # no gradient through the targets
    with pytest.raises(ValueError, match="stored"):
        sat_targets(stored[:, :5], logits, 0.5)
    with pytest.raises(ValueError, match="stored"):
        sat_targets(stored[:3], logits, 0.5)
    with pytest.raises(ValueError, match="target_momentum"):
        sat_targets(stored, logits, 1.5)


# ----------------------------------------------------------------------------- weighted loss


def test_soft_cross_entropy_weighted_by_hand():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(6, 10, generator=g)
    y = torch.randint(0, 10, (6,), generator=g)
    w = torch.tensor([0.2, 1.0, 0.5, 0.9, 0.3, 0.7])
    per = F.cross_entropy(z, y, reduction="none")
    ref = float((w * per).sum() / w.sum())
    got = float(soft_cross_entropy(z, F.one_hot(y, 10).float(), weights=w))
    assert got == pytest.approx(ref, rel=1e-6)
    # the fixture tells the weighted mean from the plain mean and from mean(w * l)
    assert abs(ref - float(per.mean())) > 1e-3 and abs(ref - float((w * per).mean())) > 1e-3
    # with label smoothing the per-sample losses are torch's smoothed ones
    per_s = F.cross_entropy(z, y, reduction="none", label_smoothing=0.2)
    got_s = float(soft_cross_entropy(z, F.one_hot(y, 10).float(), weights=w, label_smoothing=0.2))
    assert got_s == pytest.approx(float((w * per_s).sum() / w.sum()), rel=1e-6)
    # weights of ones (or any constant) give the unweighted mean
    ones = soft_cross_entropy(z, F.one_hot(y, 10).float(), weights=torch.ones(6))
    assert float(ones) == pytest.approx(float(F.cross_entropy(z, y)), rel=1e-6)
    assert float(soft_cross_entropy(z, F.one_hot(y, 10).float(), weights=torch.full((6,), 3.0))) == pytest.approx(
        float(F.cross_entropy(z, y)), rel=1e-6
    )
    # the gradient is the weighted one
    zz = z.clone().requires_grad_(True)
    soft_cross_entropy(zz, F.one_hot(y, 10).float(), weights=w).backward()
    ref_grad = (torch.softmax(z, 1) - F.one_hot(y, 10).float()) * (w / w.sum())[:, None]
    assert torch.allclose(zz.grad, ref_grad, atol=1e-6)


@pytest.mark.parametrize("shape", [(5,), (7,), (6, 1)])
def test_soft_cross_entropy_bad_weights_shape(shape):
    z = torch.zeros(6, 10)
    with pytest.raises(ValueError, match="weights"):
        soft_cross_entropy(z, torch.full((6, 10), 0.1), weights=torch.ones(shape))


def test_batch_targets_sat():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(5, 10, generator=g)
    y = torch.tensor([1, 2, 3, 4, 5])
    stored = torch.softmax(torch.randn(5, 10, generator=g), 1)
    for soft in (True, False):
        out = batch_targets("sat", z, y, stored, target_momentum=0.7, soft=soft)
        assert isinstance(out, BatchTargets) and out.lam is None
        t, w = sat_targets(stored, z, 0.7, soft=soft)
        assert torch.equal(out.targets, t) and torch.equal(out.weights, w)
    # the soft flag reaches sat_targets, and alpha is not swapped on the way
    soft_t = batch_targets("sat", z, y, stored, target_momentum=0.7, soft=True).targets
    assert not torch.allclose(soft_t, batch_targets("sat", z, y, stored, target_momentum=0.7, soft=False).targets)
    assert torch.allclose(soft_t, 0.7 * stored + 0.3 * torch.softmax(z, 1), atol=1e-6)
    with pytest.raises(ValueError, match="target_momentum"):
        batch_targets("sat", z, y, stored)
    # the other methods carry no weights
    assert batch_targets("self-distill", z, y, stored, target_momentum=0.7).weights is None
    assert batch_targets("ce", z, y, None).weights is None


# ----------------------------------------------------------------------------- distill_start


def test_epoch_momentum_warm_up_then_schedule(tmp_path):
    cfg = TrainConfig(out=str(tmp_path), method="sat", epochs=5, distill_start=2, target_momentum=0.4, weight_schedule="linear")
    assert [epoch_momentum(cfg, e) for e in range(5)] == pytest.approx([1.0, 1.0, 0.7, 0.55, 0.4])
    cfg = cfg.replace(weight_schedule="constant", method="self-distill")
    assert [epoch_momentum(cfg, e) for e in range(5)] == [1.0, 1.0, 0.4, 0.4, 0.4]
    cfg = cfg.replace(distill_start=0)
    assert [epoch_momentum(cfg, e) for e in range(5)] == [0.4] * 5


@pytest.mark.parametrize("method", ["ce", "interp", "generations"])
def test_distill_start_needs_self_distill_or_sat(method, tmp_path):
    with pytest.raises(ValueError, match="distill_start"):
        TrainConfig(out=str(tmp_path), method=method, epochs=3, distill_start=1)
    TrainConfig(out=str(tmp_path), method=method, epochs=3, distill_start=0)


@pytest.mark.parametrize("method", ["self-distill", "sat"])
def test_distill_start_bounds(method, tmp_path):
    assert TrainConfig(out=str(tmp_path), method=method, epochs=3, distill_start=2).distill_start == 2
    for bad in (3, 4):
        with pytest.raises(ValueError, match="distill_start"):
            TrainConfig(out=str(tmp_path), method=method, epochs=3, distill_start=bad)
    with pytest.raises(ValueError, match="distill_start"):
        TrainConfig(out=str(tmp_path), method=method, epochs=3, distill_start=-1)


def test_cli_distill_start_reaches_the_config(tmp_path, capsys):
    args = build_parser().parse_args(
        ["--method", "sat", "--epochs", "5", "--distill-start", "3", "--target-momentum", "0.9", "--out", str(tmp_path)]
    )
    cfg = config_from_args(args)
    assert cfg.method == "sat" and cfg.distill_start == 3 and cfg.target_momentum == 0.9
    assert config_from_args(build_parser().parse_args(["--out", str(tmp_path)])).distill_start == 0
    # a bad combination is a one-line error naming the field
    with pytest.raises(SystemExit) as exc:
        main(["--method", "ce", "--distill-start", "1", "--out", str(tmp_path / "x"), "--no-progress"])
    msg = exc.value.code if isinstance(exc.value.code, str) else capsys.readouterr().err
    assert exc.value.code != 0 and "distill_start" in msg and msg.strip().count("\n") == 0


# ----------------------------------------------------------------------------- SAT runs


def test_sat_run_warm_up_alpha_and_targets(sat_full, sat_parts):
    """records alpha = [1, 0.9, 0.9]; the carried targets are the one-hot noisy labels after
    the warm-up epoch and have moved after epochs 2 and 3."""
    assert [r.target_momentum for r in sat_full.records] == [1.0, 0.9, 0.9]
    results, ckpts = sat_parts
    labels = results[0].split.labels
    assert not np.array_equal(labels, results[0].split.true_labels)  # the noisy labels are not the true ones
    assert is_one_hot_of(ckpts[0]["targets"], labels)
    for ck in ckpts[1:]:
        t = ck["targets"]
        assert not is_one_hot_of(t, labels)
        assert torch.allclose(t.sum(1), torch.ones(len(labels)), atol=1e-5)
        # alpha 0.9 on the stored target: after one SAT epoch (epoch 2) every row keeps
        # exactly 0.9 on its noisy label plus 0.1 of a softmax entry
        if ck is ckpts[1]:
            on_label = t[torch.arange(len(labels)), torch.from_numpy(labels)]
            assert bool(((on_label >= 0.9 - 1e-6) & (on_label <= 1.0 + 1e-6)).all())
            assert float((t.sum(1) - on_label).max()) <= 0.1 + 1e-6
    assert torch.equal(ckpts[2]["targets"], load_checkpoint(sat_full.out / "checkpoint.pt")["targets"])


def test_sat_warm_up_epoch_is_plain_ce(sat_parts, tmp_path):
    """After the warm-up epoch the SAT network equals a ce run's (same seed and schedule)."""
    ce = train(cfg_at(tmp_path, method="ce", epochs=3, stop_after=1))
    sat1 = sat_parts[1][0]["model"]
    for k, v in ce.model.state_dict().items():
        assert torch.allclose(v, sat1[k], atol=1e-6), k
    rec_ce, rec_sat = ce.records[0], sat_parts[0][0].records[0]
    assert rec_sat.loss == pytest.approx(rec_ce.loss, rel=1e-6)
    assert rec_sat.train_acc == rec_ce.train_acc and rec_sat.val_acc == rec_ce.val_acc
    assert rec_sat.target_momentum == 1.0 and rec_ce.target_momentum is None


def test_self_distill_warm_up(tmp_path):
    kw = dict(method="self-distill", target_momentum=0.7, distill_start=1, epochs=3)
    first = train(cfg_at(tmp_path, stop_after=1, **kw))
    assert is_one_hot_of(load_checkpoint(tmp_path / "checkpoint.pt")["targets"], first.split.labels)
    res = train(cfg_at(tmp_path, resume=True, **kw))
    assert [r.target_momentum for r in res.records] == [1.0, 0.7, 0.7]
    assert not is_one_hot_of(load_checkpoint(tmp_path / "checkpoint.pt")["targets"], res.split.labels)


def _hand_sat_epochs(x, y, orders, alpha, lr, seed, *, weighted=True):
    """SAT with one full batch per epoch, plain SGD, written out independently of deep.methods."""
    model = make_model("mlp", seed=seed, width=WIDTH)
    params = list(model.parameters())
    T = F.one_hot(y, 10).float()
    losses = []
    for order in orders:
        z = model(x[order])
        p = torch.softmax(z.detach(), 1)
        t = alpha * T[order] + (1 - alpha) * p
        w = t.max(1).values if weighted else torch.ones(len(order))
        per = -(t * torch.log_softmax(z, 1)).sum(1)
        loss = (w * per).sum() / w.sum()
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for q, g in zip(params, grads):
                q -= lr * g
        T[order] = t
        losses.append(float(loss.detach()))
    return T, model.state_dict(), losses


def test_sat_run_reproduced_by_hand(tmp_path):
    """distill_start=0, one batch per epoch, no augmentation, plain SGD at a constant lr:
    two epochs reproduced by hand (init from make_model with the run's seed, batch order
    from a generator seeded with it) give the run's targets, weights and losses."""
    alpha, lr = 0.9, 2.0
    cfg = cfg_at(tmp_path, **HAND_SAT, target_momentum=alpha, epochs=2, batch_size=512, lr=lr)
    res = train(cfg)
    split = res.split
    x = run_images(cfg, split.train_idx)
    y = torch.from_numpy(split.labels)
    n = len(y)
    gen = torch.Generator().manual_seed(cfg.seed)
    orders = [torch.randperm(n, generator=gen) for _ in range(2)]
    T, state, losses = _hand_sat_epochs(x, y, orders, alpha, lr, cfg.seed)
    ck = load_checkpoint(res.out / "checkpoint.pt")
    assert torch.allclose(ck["targets"], T, atol=1e-5)
    for k, v in state.items():
        assert torch.allclose(ck["model"][k], v, rtol=1e-4, atol=1e-5), k
    assert [r.loss for r in res.records] == pytest.approx(losses, rel=1e-5)
    assert [r.target_momentum for r in res.records] == [alpha, alpha]
    # the checks tell the SAT update from plausible slips
    T_swap, state_swap, _ = _hand_sat_epochs(x, y, orders, 1 - alpha, lr, cfg.seed)
    assert not torch.allclose(ck["targets"], T_swap, atol=1e-3)
    _, state_unw, losses_unw = _hand_sat_epochs(x, y, orders, alpha, lr, cfg.seed, weighted=False)
    assert any(not torch.allclose(ck["model"][k], v, rtol=1e-4, atol=1e-4) for k, v in state_unw.items())
    assert abs(losses_unw[1] - losses[1]) > 1e-4


def test_sat_train_epoch_updates_each_batch_with_the_current_weights(tmp_path):
    """Several batches (3, 3, 2) of a hand-built DeviceData: each batch's targets use the
    prediction of the weights after the previous batches' steps."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(8, 3, 2, 2, generator=g)
    y_true = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    y = torch.tensor([0, 1, 2, 9, 8, 0, 6, 7])
    dd = DeviceData(
        x_train=x,
        y_train=y,
        y_train_true=y_true,
        flipped=y != y_true,
        x_val=x[:0],
        y_val=y[:0],
        y_val_true=y[:0],
        x_test=x[:2],
        y_test=y_true[:2],
    )
    alpha, lr = 0.3, 1.5
    cfg = TrainConfig(
        out=str(tmp_path), **HAND_SAT, target_momentum=alpha, batch_size=3, lr=lr, progress=False, device="cpu", model="mlp"
    )
    model = make_model("mlp", seed=0, in_features=12, width=4)
    targets = F.one_hot(y, 10).float()
    stats = train_epoch(
        model,
        make_optimizer(model, cfg),
        cfg,
        dd,
        targets,
        torch.Generator().manual_seed(7),
        step=0,
        total_steps=3,
        target_momentum=alpha,
        desc="",
    )
    # by hand
    ref = make_model("mlp", seed=0, in_features=12, width=4)
    params = list(ref.parameters())
    T = F.one_hot(y, 10).float()
    order = torch.randperm(8, generator=torch.Generator().manual_seed(7))
    loss_sum, agree = 0.0, 0
    for idx in (order[0:3], order[3:6], order[6:8]):
        z = ref(x[idx])
        t = alpha * T[idx] + (1 - alpha) * torch.softmax(z.detach(), 1)
        w = t.max(1).values
        loss = (w * -(t * torch.log_softmax(z, 1)).sum(1)).sum() / w.sum()
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for q, gr in zip(params, grads):
                q -= lr * gr
        T[idx] = t
        loss_sum += float(loss.detach()) * len(idx)
        agree += int((t.argmax(1) == y_true[idx]).sum())
    assert torch.allclose(stats.targets, T, atol=1e-6)
    for (k, a), (_, b) in zip(model.state_dict().items(), ref.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), k
    assert stats.loss == pytest.approx(loss_sum / 8, rel=1e-5)
    assert stats.target_agreement == agree / 8 and stats.step == 3
    # the prediction of the *initial* weights for every batch would give other targets
    with torch.no_grad():
        T0 = alpha * F.one_hot(y, 10).float() + (1 - alpha) * torch.softmax(
            make_model("mlp", seed=0, in_features=12, width=4)(x), 1
        )
    assert not torch.allclose(stats.targets, T0, atol=1e-4)


# ----------------------------------------------------------------------------- first_fit_epochs


def test_first_fit_epochs_by_hand():
    labels = np.array([0, 1, 2, 3, 4, 5])
    pred = np.array(
        [
            [0, 0, 0, 0, 4, 0],  # epoch 1
            [1, 1, 2, 0, 0, 0],  # epoch 2
            [0, 1, 0, 3, 0, 0],  # epoch 3
            [0, 1, 2, 3, 1, 0],  # epoch 4
        ]
    )
    inf = np.inf
    first = first_fit_epochs(pred, labels)
    assert first.dtype == np.float64
    assert np.array_equal(first, [1, 2, 2, 3, 1, inf])
    assert np.array_equal(first_fit_epochs(pred, labels, stay=True), [3, 2, 4, 3, inf, inf])
    # the labels passed are the ones fitted (e.g. the noisy ones, not the true)
    other = np.array([1, 0, 0, 0, 0, 0])
    assert np.array_equal(first_fit_epochs(pred, other), [2, 1, 1, 1, 2, 1])
    assert np.array_equal(first_fit_epochs(pred, other, stay=True), [inf, inf, inf, inf, inf, 1])
    # one epoch
    assert np.array_equal(first_fit_epochs(pred[:1], labels, stay=True), [1, inf, inf, inf, 1, inf])


@pytest.mark.parametrize("pred_shape, lab_shape", [((4,), (4,)), ((2, 4), (5,)), ((2, 4), (2, 4)), ((2, 2, 4), (4,))])
def test_first_fit_epochs_shape_errors(pred_shape, lab_shape):
    with pytest.raises(ValueError, match="first_fit_epochs"):
        first_fit_epochs(np.zeros(pred_shape, dtype=int), np.zeros(lab_shape, dtype=int))


# ----------------------------------------------------------------------------- run files


def test_train_predictions_are_the_eval_predictions(sat_full, sat_parts):
    """pred[e] is the network's prediction after epoch e+1 on the run's training images, and
    train_acc is its accuracy against the *given* labels."""
    res = sat_full
    npz = np.load(res.out / "train_predictions.npz")
    pred = npz["pred"]
    split = np.load(res.out / "split.npz")
    labels, true = split["labels"], split["true_labels"]
    assert pred.shape == (3, len(split["train_idx"])) and np.array_equal(npz["global_epoch"], [1, 2, 3])
    x = run_images(res.config, split["train_idx"])
    with torch.no_grad():
        assert np.array_equal(pred[-1], res.model(x).argmax(1).numpy())
        # every row, against the network after that epoch (the sessions of the resumed run)
        for e, part in enumerate(sat_parts[0]):
            assert np.array_equal(pred[e], part.model(x).argmax(1).numpy()), e
    assert len({row.tobytes() for row in pred}) > 1  # the predictions move
    flipped = split["flipped"]
    for e, rec in enumerate(res.records):
        assert rec.train_acc == pytest.approx(np.mean(pred[e] == labels), abs=1e-6)
        assert rec.train_acc_flipped_given == pytest.approx(np.mean(pred[e][flipped] == labels[flipped]), abs=1e-6)
        assert rec.train_acc_flipped_true == pytest.approx(np.mean(pred[e][flipped] == true[flipped]), abs=1e-6)
    # the fixture tells the given labels from the true ones
    assert any(np.mean(p == labels) != np.mean(p == true) for p in pred)
    assert first_fit_epochs(pred, labels).shape == (len(labels),)


def test_best_model_is_the_early_stopped_network(sat_full, sat_parts):
    res = sat_full
    summary = json.loads((res.out / "summary.json").read_text())
    vals = [r.val_acc for r in res.records]
    best = load_checkpoint(res.out / "best_model.pt")
    assert best["global_epoch"] == summary["best_epoch"] == int(np.argmax(vals)) + 1
    assert best["val_acc"] == max(vals) == summary["best_val_acc"] and best["generation"] == 1
    assert 1 < best["global_epoch"] < len(vals)  # the fixture tells it from the first and the last epoch
    assert vals[best["global_epoch"] - 1] == vals[-1]  # ... and from a later tie (saving on >= would keep the last)
    # its weights are that epoch's (the resumed run's session that ended there) ...
    at_best = sat_parts[1][best["global_epoch"] - 1]["model"]
    for k, v in best["model"].items():
        assert torch.equal(v, at_best[k]), k
    # ... and reproduce that epoch's noisy-validation accuracy
    model = make_model("mlp", seed=123, width=WIDTH)
    model.load_state_dict(best["model"])
    model.eval()
    split = np.load(res.out / "split.npz")
    with torch.no_grad():
        pred = model(run_images(res.config, split["val_idx"])).argmax(1).numpy()
    assert np.mean(pred == split["val_labels"]) == pytest.approx(best["val_acc"], abs=1e-6)
    assert np.mean(pred == split["val_labels"]) != pytest.approx(vals[0], abs=1e-6)


def test_sat_resume_equals_uninterrupted(sat_full, sat_parts):
    results, _ = sat_parts
    assert [len(r.records) for r in results] == [1, 2, 3] and [r.resumed_from for r in results] == [0, 1, 2]
    assert [r.finished for r in results] == [False, False, True]
    full, rest = sat_full, results[-1]
    assert [strip(r) for r in rest.records] == [strip(r) for r in full.records]
    assert [strip(r) for r in read_records(rest.out / "records.jsonl")] == [strip(r) for r in full.records]
    a, b = np.load(full.out / "train_predictions.npz"), np.load(rest.out / "train_predictions.npz")
    assert np.array_equal(a["pred"], b["pred"]) and np.array_equal(a["global_epoch"], b["global_epoch"])
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, rest.model.state_dict()[k]), k
    ba, bb = load_checkpoint(full.out / "best_model.pt"), load_checkpoint(rest.out / "best_model.pt")
    assert ba["global_epoch"] == bb["global_epoch"] and all(torch.equal(v, bb["model"][k]) for k, v in ba["model"].items())
    sa, sb = json.loads((full.out / "summary.json").read_text()), json.loads((rest.out / "summary.json").read_text())
    assert sa["best_epoch"] == sb["best_epoch"] and sa["final_test_acc"] == sb["final_test_acc"]


def test_summary_realised_error_rate(sat_full):
    summary = json.loads((sat_full.out / "summary.json").read_text())
    data = summary["data"]
    split = np.load(sat_full.out / "split.npz")
    n_flipped = int((split["labels"] != split["true_labels"]).sum())
    assert data["n_train"] == len(split["train_idx"]) == 40 and data["n_flipped"] == n_flipped == int(split["flipped"].sum())
    assert 0 < n_flipped < data["n_train"]
    assert data["realised_error_rate"] != data["noise_rate"]  # the fixture tells realised from nominal
    assert math.isclose(data["realised_error_rate"], n_flipped / data["n_train"], rel_tol=0, abs_tol=1e-12)
    assert math.isclose(
        data["val_realised_error_rate"], float(np.mean(split["val_labels"] != split["val_true_labels"])), abs_tol=1e-12
    )
    assert data["noise_rate"] == 0.4 and data["n_val"] == len(split["val_idx"]) == 20
