"""Exact-value tests of the target rules, the per-epoch accuracies and the generation alpha.

Each test pins numbers worked out by hand (or a fake network whose outputs are a fixed
table), so that a plausible slip -- alpha and 1 - alpha swapped, noisy and true labels
swapped, a generation index off by one -- changes a checked value. Everything is tiny
and runs on the CPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from deep.config import TrainConfig
from deep.methods import batch_targets, chained_targets, generation_targets, interp_targets
from deep.records import evaluate, frequency_setup
from deep.splits import DeviceData, RunSplit
from deep.train import initial_targets, train
from tests.reference import tiny_run
from theory.frequency import frequency_measures

torch.set_num_threads(1)  # as tests/conftest.py


class TableNet(nn.Module):
    """Fake network: the input's first entry is a row id, the output is ``table[id]``."""

    def __init__(self, table):
        super().__init__()
        self.register_buffer("table", torch.as_tensor(table, dtype=torch.float32))

    def forward(self, x):
        return self.table[x.flatten(1)[:, 0].round().long()]


def images(ids):
    """Images (n, 3, 2, 2) whose every entry is the row id (small distinct floats otherwise unused)."""
    ids = torch.as_tensor(ids, dtype=torch.float32)
    return ids[:, None, None, None].expand(-1, 3, 2, 2).contiguous() + torch.linspace(0, 0.3, 12).reshape(1, 3, 2, 2)


def logits_for(classes, c=10):
    """Logits whose argmax is ``classes[i]`` (margin 5)."""
    z = torch.zeros(len(classes), c)
    z[torch.arange(len(classes)), torch.as_tensor(classes)] = 5.0
    return z


# Hand-made evaluation fixture: 8 training images, 4 validation, 4 test.
#   training: 3 clean (2 predicted right) + 5 flipped (1 predicted as the noisy label,
#   3 as the true label, 1 as neither)
Y_TRUE = [0, 1, 2, 3, 4, 5, 6, 7]
Y_NOISY = [0, 1, 2, 9, 8, 0, 1, 2]  # positions 3..7 flipped
P_TRAIN = [0, 1, 5, 9, 4, 5, 6, 3]
#   validation: 2 clean (1 right), 2 flipped (both predicted as the true label)
V_TRUE = [1, 2, 3, 4]
V_NOISY = [1, 2, 0, 0]
P_VAL = [1, 0, 3, 4]
#   test: 2 of 4 right
T_TRUE = [5, 6, 7, 8]
P_TEST = [5, 6, 0, 0]


def hand_data():
    lab = lambda a: torch.tensor(a, dtype=torch.long)  # noqa: E731
    return DeviceData(
        x_train=images(range(0, 8)),
        y_train=lab(Y_NOISY),
        y_train_true=lab(Y_TRUE),
        flipped=lab(Y_NOISY) != lab(Y_TRUE),
        x_val=images(range(8, 12)),
        y_val=lab(V_NOISY),
        y_val_true=lab(V_TRUE),
        x_test=images(range(12, 16)),
        y_test=lab(T_TRUE),
    )


def hand_split(freq_pos=(0, 3, 4, 6)):
    a = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731
    return RunSplit(
        train_idx=a(range(8)),
        val_idx=a(range(8, 12)),
        test_idx=a(range(4)),
        labels=a(Y_NOISY),
        true_labels=a(Y_TRUE),
        flipped=a(Y_NOISY) != a(Y_TRUE),
        val_labels=a(V_NOISY),
        val_true_labels=a(V_TRUE),
        freq_pos=a(freq_pos),
        noise_kind="symmetric",
        noise_rate=0.5,
    )


def hand_net():
    return TableNet(logits_for(P_TRAIN + P_VAL + P_TEST))


# ----------------------------------------------------------------------------- target rules


def test_generation_targets_alpha_weighs_the_label():
    """Catches alpha and 1 - alpha swapped in generation_targets (alpha = 0.8, by hand)."""
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    q = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    t = generation_targets(y, q, 0.8)
    assert torch.allclose(t, torch.tensor([[0.9, 0.06, 0.04], [0.02, 0.82, 0.16]]), atol=1e-6)


def test_chained_targets_momentum_weighs_the_previous_target():
    """Catches m and 1 - m swapped in chained_targets (target momentum m = 0.8, by hand)."""
    prev = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    pred = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    t = chained_targets(prev, pred, 0.8)
    assert torch.allclose(t, torch.tensor([[0.4, 0.6, 0.0], [0.2, 0.0, 0.8]]), atol=1e-6)


def test_interp_targets_lam_weighs_the_prediction():
    """Catches lam and 1 - lam swapped in interp_targets: 3 of 4 predictions agree, lam = 0.75."""
    z = logits_for([0, 1, 2, 0], c=3)
    y = torch.tensor([0, 1, 2, 1])
    expected = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0.75, 0.25, 0]])
    t, lam = interp_targets(z, y)
    assert float(lam) == 0.75
    assert torch.allclose(t, expected, atol=1e-6)
    out = batch_targets("interp", z, y, None)  # the loop's path: (targets, lam, ...)
    t2, lam2 = out[0], out[1]
    assert float(lam2) == 0.75 and torch.allclose(t2, expected, atol=1e-6)


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_scores_each_subset_against_the_right_labels(tmp_path):
    """Catches train_acc_flipped_true / val_acc_true scored against the noisy labels, and
    train_acc_flipped_given / val_acc scored against the true labels: every accuracy has
    a distinct value worked out by hand from a fake network's fixed predictions."""
    cfg = TrainConfig(out=str(tmp_path), eval_batch_size=3, device="cpu")
    out = evaluate(hand_net(), hand_data(), hand_split(), cfg, None)
    assert out["test_acc"] == 0.5
    assert out["train_acc"] == 3 / 8
    assert out["train_acc_clean"] == pytest.approx(2 / 3)
    assert out["train_acc_flipped_given"] == pytest.approx(1 / 5)
    assert out["train_acc_flipped_true"] == pytest.approx(3 / 5)
    assert out["val_acc"] == 0.25
    assert out["val_acc_true"] == 0.75
    assert out["freq_deltas"] == [] and out["e_low"] == []


# ----------------------------------------------------------------------------- frequency measures


def test_frequency_subset_uses_the_noisy_labels(tmp_path):
    """Catches FrequencySubset.Y (and so e_low / e_high) built from the true labels."""
    cfg = TrainConfig(out=str(tmp_path), eval_batch_size=3, device="cpu", freq_subset=4, freq_deltas=(0.5, 50.0))
    dd, split = hand_data(), hand_split()
    freq = frequency_setup(dd, split, cfg)
    pos = [0, 3, 4, 6]
    noisy = np.eye(10)[[Y_NOISY[p] for p in pos]]
    true = np.eye(10)[[Y_TRUE[p] for p in pos]]
    assert not np.array_equal(noisy, true)  # the fixture tells the two apart
    assert np.array_equal(freq.Y, noisy)
    assert freq.pos.tolist() == pos and np.array_equal(freq.deltas, [0.5, 50.0])
    # and the recorded measures are those of the softmax probabilities against the noisy one-hot labels
    out = evaluate(hand_net(), dd, split, cfg, freq)
    h = torch.softmax(logits_for(P_TRAIN)[pos].double(), dim=1).numpy()
    ref = frequency_measures(freq.X, h, noisy, deltas=[0.5, 50.0])
    wrong = frequency_measures(freq.X, h, true, deltas=[0.5, 50.0])
    assert np.allclose(out["e_low"], ref.e_low) and np.allclose(out["e_high"], ref.e_high)
    assert not np.allclose(out["e_low"], wrong.e_low)


# ----------------------------------------------------------------------------- generation alpha


def gen_cfg(tmp_path, **kw):
    base = dict(
        out=str(tmp_path),
        method="generations",
        generations=3,
        alpha=0.4,
        weight_schedule="linear",
        soft=False,
        eval_batch_size=3,
        device="cpu",
    )
    base.update(kw)
    return TrainConfig(**base)


def test_initial_targets_linear_alpha_per_generation(tmp_path):
    """Catches an off-by-one generation index in initial_targets: with a linear schedule
    over 3 generations from alpha 0.4, generation 2 uses 0.7 and generation 3 uses 0.4."""
    cfg = gen_cfg(tmp_path)
    dd = hand_data()
    teacher = hand_net()  # predicts P_TRAIN on the training images; y~ = Y_NOISY
    eye = torch.eye(10)
    y, q = eye[Y_NOISY], eye[P_TRAIN]
    assert initial_targets(cfg, 1, dd, teacher) == (None, None)
    t2, a2 = initial_targets(cfg, 2, dd, teacher)
    assert a2 == pytest.approx(0.7)
    assert torch.allclose(t2, 0.7 * y + 0.3 * q, atol=1e-6)
    assert t2[3, 9] == 1.0 and t2[2, 2] == pytest.approx(0.7) and t2[2, 5] == pytest.approx(0.3)
    t3, a3 = initial_targets(cfg, 3, dd, teacher)
    assert a3 == pytest.approx(0.4)
    assert torch.allclose(t3, 0.4 * y + 0.6 * q, atol=1e-6)


def test_initial_targets_soft_teacher(tmp_path):
    """Generation 2 (constant alpha 0.8) mixes the one-hot label with the teacher's softmax."""
    cfg = gen_cfg(tmp_path, generations=2, alpha=0.8, weight_schedule="constant", soft=True)
    dd = hand_data()
    table = torch.zeros(8, 10)
    table[:, 0] = np.log(3.0)  # softmax: 3/12 on class 0, 1/12 elsewhere
    t, a = initial_targets(cfg, 2, dd, TableNet(table))
    assert a == pytest.approx(0.8)
    q = torch.full((8, 10), 1 / 12)
    q[:, 0] = 3 / 12
    assert torch.allclose(t, 0.8 * torch.eye(10)[Y_NOISY] + 0.2 * q, atol=1e-6)


def test_generations_run_records_linear_alpha(tmp_path):
    """Catches the off-by-one in a real run: the records' alpha is None, 0.7, 0.4."""
    run = tiny_run(
        data=None,
        model_options={"width": 8},
        batch_size=64,
        eval_batch_size=256,
        progress=False,
        augment=False,
        subset=40,
        test_subset=20,
    )
    cfg = gen_cfg(tmp_path, **run)
    res = train(cfg)
    alphas = [r.alpha for r in res.records]
    assert [r.generation for r in res.records] == [1, 2, 3]
    assert alphas[0] is None and alphas[1:] == pytest.approx([0.7, 0.4])


def test_training_loop_does_not_check_arguments_per_batch(tmp_path, monkeypatch):
    """Checks run at the API boundary: one epoch of sat calls check_param a bounded number of times, not per batch."""
    import deep.methods as methods
    from deep.config import TrainConfig
    from deep.train import train

    calls = []
    real = methods.check_param
    monkeypatch.setattr(methods, "check_param", lambda *a, **k: (calls.append(a[:2]), real(*a, **k))[1])
    cfg = TrainConfig(
        out=str(tmp_path),
        method="sat",
        target_momentum=0.9,
        epochs=2,
        distill_start=1,
        batch_size=8,
        progress=False,
        freq_subset=0,
    )
    res = train(cfg)
    batches = 2 * -(-len(res.split.train_idx) // 8)
    assert batches >= 20 and len(calls) < batches, (len(calls), batches)
