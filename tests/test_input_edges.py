"""Edge values at the input boundaries: a value given is used or refused, never replaced.

CLI run options (0 is a value, not "unset"), non-finite kernel parameters, results
whose size follows from the arguments (checked against a memory budget before any
allocation), and the input checks of deep.fullbatch.train_full_batch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import benchmarks.cli as cli
from benchmarks.registry import RunContext, RunOutput
from benchmarks.runs import ALL_RUNS
from deep.fullbatch import train_full_batch
from kernels import spectrum
from kernels.functions import exponential, gram, laplace, nngp_relu, ntk_relu, polynomial, rbf
from theory.distillation import optimal_alpha_path, self_distillation
from theory.dynamics import linearized_training

RUNS = {b.name: b for b in ALL_RUNS}


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text, text
    return text


# ============================================================================ CLI run options


def _fake(ctx: RunContext) -> RunOutput:
    """A run that does nothing but report the options it was given."""
    return RunOutput(numbers={"options": ctx.options, "seed": ctx.seed}, markdown="fake\n")


@pytest.fixture
def fake_runs(monkeypatch):
    """Every named run replaced by :func:`_fake` (the CLI boundary alone is under test)."""
    monkeypatch.setattr(cli, "ALL_RUNS", tuple(dataclasses.replace(b, func=_fake) for b in ALL_RUNS))


@pytest.mark.parametrize(
    "argv,message",
    [
        (["toy-distill", "--gamma", "0"], "--gamma must be a finite float > 0; got 0"),
        (["toy-distill", "--gamma", "-2"], "--gamma must be a finite float > 0"),
        (["toy-distill", "--gamma", "inf"], "--gamma must be a finite float > 0"),
        (["toy-distill", "--gamma", "nan"], "--gamma must be a finite float > 0"),
        (["toy-distill", "--gamma", "abc"], "--gamma must be a finite float > 0; got 'abc'"),
        (["toy-distill", "--ridge", "0"], "--ridge must be a finite float > 0; got 0"),
        (["toy-distill", "--ridge", "inf"], "--ridge must be a finite float > 0"),
        (["toy-distill", "--steps", "0"], "--steps must be an integer >= 1; got 0"),
        (["toy-distill", "--steps", "2.5"], "--steps must be an integer >= 1; got '2.5'"),
        (["toy-distill", "--alphas", "0.5,1.5"], "--alphas must be"),
        (["toy-distill", "--alphas", "0.5,nan"], "--alphas must be"),
        (["toy-distill", "--alphas", ","], "--alphas must be"),
        (["toy-distill", "--seed", "-1"], "--seed must be an integer >= 0; got -1"),
        (["air-spectrum", "--n", "0"], "--n must be an integer >= 10"),
        (["frequency", "--n", "5"], "--n must be an integer >= 10"),
        (["analytic-vs-trained", "--n", "20"], "--n must be an integer >= 50"),
        (["noisy-cifar", "--n", "0"], "--n must be an integer >= 10"),
        (["noisy-cifar", "--epochs", "0"], "--epochs must be an integer >= 1; got 0"),
    ],
)
def test_cli_refuses_out_of_range_options(tmp_path, capsys, fake_runs, argv, message):
    out = tmp_path / "out"
    code = cli.main(["run", *argv, "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1, err
    assert err.startswith("airkit: error: ") and message in err, err
    assert not out.exists() or not any(out.rglob("*"))


def test_cli_n_error_says_what_the_run_needs(tmp_path, capsys, fake_runs):
    assert cli.main(["run", "analytic-vs-trained", "--n", "0", "--out", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err.strip()
    assert "--n must be an integer >= 50" in err and "analytic-vs-trained" in err and err.endswith("got 0")


def test_cli_valid_options_reach_the_run_unchanged(tmp_path, capsys, fake_runs):
    out = tmp_path / "out"
    code = cli.main(
        [
            "run",
            "toy-distill",
            "--gamma",
            "0.5",
            "--ridge",
            "1e-3",
            "--steps",
            "1",
            "--alphas",
            "0,1",
            "--seed",
            "0",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0, capsys.readouterr().err
    (result,) = out.rglob("result.json")
    res = json.loads(result.read_text())
    assert res["options"] == {"gamma": 0.5, "ridge": 1e-3, "steps": 1, "alphas": "0,1"}
    assert res["numbers"]["options"] == res["options"] and res["seed"] == 0


def test_toy_distill_run_uses_zero_options_not_defaults(tmp_path):
    # The run itself: a 0 reaches the computation (which refuses it) instead of a default.
    for options, name in (({"steps": 0}, "steps"), ({"gamma": 0.0}, "gamma"), ({"ridge": 0.0}, "ridge")):
        ctx = RunContext(name="toy-distill", directory=tmp_path, quick=True, progress=False, options=options)
        with pytest.raises(ValueError, match=rf"^\w+: {name} must be") as exc:
            RUNS["toy-distill"].func(ctx)
        _one_line(exc)


@pytest.mark.parametrize(
    "kw,message",
    [
        (dict(options={"steps": 0}), "--steps must be an integer >= 1; got 0"),
        (dict(options={"steps": 2.5}), "--steps must be an integer >= 1; got 2.5"),
        (dict(options={"gamma": math.inf}), "--gamma must be a finite float > 0; got inf"),
        (dict(options={"alphas": "2"}), "--alphas must be"),
        (dict(seed=-1), "--seed must be an integer >= 0; got -1"),
    ],
)
def test_run_named_checks_options_before_writing(tmp_path, fake_runs, kw, message):
    from benchmarks.registry import BenchmarkError

    bench = {b.name: b for b in cli.ALL_RUNS}["toy-distill"]
    with pytest.raises(BenchmarkError) as exc:
        cli.run_named(bench, out=tmp_path / "out", **kw)
    assert _one_line(exc).startswith(message)
    assert not (tmp_path / "out").exists()


class _Stop(Exception):
    pass


@pytest.mark.parametrize("module", ["air_spectrum", "frequency", "analytic_vs_trained"])
def test_runs_pass_n_zero_on(tmp_path, monkeypatch, module):
    import importlib

    mod = importlib.import_module(f"benchmarks.runs.{module}")
    seen = {}

    def fake_load(data, *, n_train, **kw):
        seen["n_train"] = n_train
        raise _Stop

    monkeypatch.setattr(mod, "load_noisy", fake_load)
    ctx = RunContext(name=mod.BENCHMARK.name, directory=tmp_path, quick=True, progress=False, options={"n": 0})
    with pytest.raises(_Stop):
        mod.BENCHMARK.func(ctx)
    assert seen["n_train"] == 0


def test_noisy_cifar_config_uses_zero_options(tmp_path):
    from benchmarks.runs.noisy_cifar import _config

    cfg = _config(RunContext(name="noisy-cifar", directory=tmp_path, quick=True, options={"n": 0, "epochs": 0}))
    assert cfg["subset"] == 0 and cfg["epochs"] == 0


# ============================================================================ kernel parameters


_KERNEL_FLOATS = [
    (rbf, "gamma"),
    (laplace, "gamma"),
    (exponential, "gamma"),
    (polynomial, "gamma"),
    (polynomial, "coef0"),
    (nngp_relu, "bias"),
    (ntk_relu, "bias"),
]


@pytest.mark.parametrize("func,param", _KERNEL_FLOATS, ids=[f"{f.__name__}-{p}" for f, p in _KERNEL_FLOATS])
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_kernel_float_parameters_must_be_finite(func, param, value):
    X = np.random.default_rng(0).normal(size=(5, 3))
    with pytest.raises(ValueError, match=rf"^{func.__name__}: {param} must be a float in ") as exc:
        func(X, **{param: value})
    _one_line(exc)


def test_rbf_infinite_gamma_through_gram():
    X = np.random.default_rng(0).normal(size=(4, 2))
    with pytest.raises(ValueError, match=r"^rbf: gamma must be a float in \(0, inf\); got inf"):
        gram(X, kernel="rbf", gamma=math.inf)


def test_relu_bias_whose_square_overflows_is_refused():
    """The arc-cosine step multiplies two variances (depth + 1) bias^2: above sqrt(max float) they overflow.
    1e100 passed the old check ((depth + 1) bias^2 finite) and overflowed; the largest allowed bias computes."""
    X = np.random.default_rng(0).normal(size=(4, 2))
    for func in (nngp_relu, ntk_relu):
        for bias in (1e200, 1e100, 1e77):
            with pytest.raises(ValueError, match=rf"^{func.__name__}: bias must be a float in \[0, 5.79e\+76\]") as exc:
                func(X, bias=bias, depth=3)
            _one_line(exc)
        assert np.all(np.isfinite(func(X, bias=5.7e76, depth=3)))


def test_large_finite_kernel_parameters_still_work():
    X = np.random.default_rng(0).normal(size=(4, 2))
    K = rbf(X, gamma=1e300)
    np.testing.assert_array_equal(np.diag(K), 1.0)
    assert np.all(np.isfinite(nngp_relu(X, bias=1e10)))


# ============================================================================ result-size budgets


@pytest.fixture
def small_problem():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 2))
    K = np.exp(-((X[:, None] - X[None]) ** 2).sum(-1))
    return spectrum(K), X[:, 0], K


def test_self_distillation_budget_keyword(small_problem):
    s, y, _ = small_problem
    with pytest.raises(ValueError, match=r"^self_distillation: steps=1000 needs .* \(> memory budget 1000 B\)") as exc:
        self_distillation(s, y, ridge=0.1, alpha=0.5, steps=1000, memory_budget=1000)
    text = _one_line(exc)
    assert "memory_budget" in text
    a = self_distillation(s, y, ridge=0.1, alpha=[0.2, 0.5], steps=30)
    b = self_distillation(s, y, ridge=0.1, alpha=[0.2, 0.5], steps=30, memory_budget=10**6)
    np.testing.assert_array_equal(a.fits, b.fits)
    with pytest.raises(ValueError, match="memory_budget"):
        self_distillation(s, y, ridge=0.1, alpha=0.5, steps=3, memory_budget=0)


def test_self_distillation_huge_steps_refused_at_once(small_problem):
    s, y, _ = small_problem
    with pytest.raises(ValueError, match=r"^self_distillation: steps=1000000000 needs .*memory budget 2 GiB") as exc:
        self_distillation(s, y, ridge=0.1, alpha=0.5, steps=10**9)
    _one_line(exc)


def test_optimal_alpha_path_budget(small_problem):
    s, y, _ = small_problem
    with pytest.raises(ValueError, match=r"^optimal_alpha_path: steps=1000 needs") as exc:
        optimal_alpha_path(s, y, y, ridge=0.1, steps=1000, memory_budget=1000)
    _one_line(exc)


def test_optimal_alpha_path_huge_steps_refused_at_once(small_problem):
    s, y, _ = small_problem
    with pytest.raises(ValueError, match=r"^optimal_alpha_path: steps=1000000000 needs"):
        optimal_alpha_path(s, y, y, ridge=0.1, steps=10**9)


def test_linearized_training_budget_keyword(small_problem):
    s, y, K = small_problem
    lr = 0.5 / float(np.linalg.eigvalsh(K)[-1])
    with pytest.raises(
        ValueError, match=r"^linearized_training: recording all 1001 steps \(0\.\.1000\) needs .*pass record=\["
    ) as exc:
        linearized_training(s, y, lr=lr, steps=1000, memory_budget=1000)
    _one_line(exc)
    with pytest.raises(ValueError, match=r"^linearized_training: recording 3 steps needs"):
        linearized_training(s, y, lr=lr, steps=1000, record=[0, 5, 1000], memory_budget=100)
    a = linearized_training(s, y, lr=lr, steps=40)
    b = linearized_training(s, y, lr=lr, steps=40, memory_budget=10**6)
    np.testing.assert_array_equal(a.fits, b.fits)


def test_linearized_training_huge_steps_refused_at_once(small_problem):
    s, y, K = small_problem
    lr = 0.5 / float(np.linalg.eigvalsh(K)[-1])
    with pytest.raises(
        ValueError,
        match=r"^linearized_training: recording all 1000000001 steps \(0\.\.1000000000\) needs .*"
        r"\(> memory budget 2 GiB\); pass record=\[",
    ) as exc:
        linearized_training(s, y, lr=lr, steps=10**9)
    _one_line(exc)
    # a few recorded steps of a long run stay cheap
    path = linearized_training(s, y, lr=lr, steps=10**9, record=[0, 10**9])
    assert path.fits.shape == (2, 12)


# ============================================================================ deep.fullbatch inputs


def _linear_problem(n=10, d=4, c=3):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    Y = torch.randn(n, c, generator=g, dtype=torch.float64)
    Xt = torch.randn(5, d, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    model = torch.nn.Linear(d, c).double()
    return model, X, Y, Xt


def _nan_at(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t[1, 1] = float("nan")
    return t


@pytest.mark.parametrize(
    "case,error,pattern",
    [
        ("X-nan", ValueError, r"^train_full_batch: X contains NaN or inf"),
        ("Y-inf", ValueError, r"^train_full_batch: Y contains NaN or inf"),
        ("X_test-nan", ValueError, r"^train_full_batch: X_test contains NaN or inf"),
        ("X-features", ValueError, r"^train_full_batch: X .*model"),
        ("X_test-features", ValueError, r"^train_full_batch: X_test must have per-example shape \(4,\)"),
        ("Y-dtype", ValueError, r"^train_full_batch: Y must have dtype torch.float64"),
        ("X-dtype", ValueError, r"^train_full_batch: X must have dtype torch.float64"),
        ("Y-columns", ValueError, r"^train_full_batch: Y must have shape \(10, 3\)"),
        ("Y-broadcast", ValueError, r"^train_full_batch: Y must have shape \(10, 3\)"),
        ("Y-rows", ValueError, r"^train_full_batch: Y must have shape"),
        ("X-numpy", TypeError, r"^train_full_batch: X must be a torch.Tensor"),
        ("X-empty", ValueError, r"^train_full_batch: X must"),
        ("model", TypeError, r"^train_full_batch: model must be a torch.nn.Module"),
        ("device", ValueError, r"^train_full_batch: X is on device cpu but the model is on meta"),
        ("record-fraction", ValueError, r"^train_full_batch: record must hold integer steps"),
        ("lr-inf", ValueError, r"^train_full_batch: lr must be"),
        ("lr-bool", TypeError, r"^train_full_batch: lr must be"),
    ],
)
def test_train_full_batch_input_checks(case, error, pattern):
    model, X, Y, Xt = _linear_problem()
    kw = dict(lr=0.01, steps=3, X_test=Xt)
    if case == "X-nan":
        X = _nan_at(X)
    elif case == "Y-inf":
        Y = Y.clone()
        Y[0, 0] = float("inf")
    elif case == "X_test-nan":
        kw["X_test"] = _nan_at(Xt)
    elif case == "X-features":
        X = torch.randn(10, 5, dtype=torch.float64)
    elif case == "X_test-features":
        kw["X_test"] = torch.randn(5, 6, dtype=torch.float64)
    elif case == "Y-dtype":
        Y = Y.float()
    elif case == "X-dtype":
        X = X.float()
    elif case == "Y-columns":
        Y = torch.randn(10, 4, dtype=torch.float64)
    elif case == "Y-broadcast":
        Y = torch.randn(10, 1, dtype=torch.float64)
    elif case == "Y-rows":
        Y = torch.randn(9, 3, dtype=torch.float64)
    elif case == "X-numpy":
        X = X.numpy()
    elif case == "X-empty":
        X = X[:0]
    elif case == "model":
        model = lambda x: x  # noqa: E731
    elif case == "device":
        model = model.to("meta")
    elif case == "record-fraction":
        kw["record"] = [0, 1.5]
    elif case == "lr-inf":
        kw["lr"] = math.inf
    elif case == "lr-bool":
        kw["lr"] = True
    before = [p.detach().clone() for p in model.parameters()] if isinstance(model, torch.nn.Module) and case != "device" else None
    with pytest.raises(error, match=pattern) as exc:
        train_full_batch(model, X, Y, **kw)
    _one_line(exc)
    if before is not None:  # refused before training: the model is untouched
        assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_train_full_batch_budget_keyword():
    model, X, Y, Xt = _linear_problem()
    with pytest.raises(
        ValueError, match=r"^train_full_batch: recording all 1001 steps \(0\.\.1000\) needs .*pass record=\["
    ) as exc:
        train_full_batch(model, X, Y, lr=0.01, steps=1000, memory_budget=1000)
    _one_line(exc)


def test_train_full_batch_huge_steps_refused_at_once():
    model, X, Y, Xt = _linear_problem()
    with pytest.raises(
        ValueError, match=r"^train_full_batch: recording all 1000000001 steps \(0\.\.1000000000\) needs .*memory budget 2 GiB"
    ):
        train_full_batch(model, X, Y, lr=0.01, steps=10**9)


def test_train_full_batch_valid_input_unchanged():
    # Same result as the plain GD loop it implements, to the bit.
    model, X, Y, Xt = _linear_problem()
    ref = torch.nn.Linear(4, 3).double()
    ref.load_state_dict(model.state_dict())
    run = train_full_batch(model, X, Y, lr=0.05, steps=5, record=[0, 5], X_test=Xt)
    f0 = ref(X).detach()
    opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.0)
    for _ in range(5):
        loss = 0.5 * ((ref(X) - f0 - Y) ** 2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    np.testing.assert_array_equal(run.train_outputs[-1], (ref(X) - f0).detach().numpy())
    assert run.train_outputs.dtype == np.float64 and run.test_outputs.shape == (2, 5, 3)


def test_cli_out_that_is_a_file_or_read_only_is_one_line(tmp_path, capsys):
    """--out pointing at a file, or at a folder the user cannot write, fails in one line naming --out."""
    import os

    from benchmarks.cli import main

    f = tmp_path / "file.txt"
    f.write_text("x")
    assert main(["run", "toy-distill", "--quick", "--out", str(f)]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--out" in err and "is a file" in err
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    try:
        # root ignores permission bits: /proc refuses new folders to everyone
        target = ro / "sub" if not os.access(ro, os.W_OK) else Path("/proc/airkit-not-writable")
        assert main(["run", "toy-distill", "--quick", "--out", str(target)]) != 0
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "--out" in err and "not writable" in err
    finally:
        os.chmod(ro, 0o700)


# ============================================================================ one rule for every parameter


def test_sklearn_name_alpha_gets_a_hint():
    from kernels import KernelRidge

    with pytest.raises(TypeError, match=r"^KernelRidge: alpha= is scikit-learn's name .*; use ridge=0\.1$") as exc:
        KernelRidge(alpha=0.1)
    _one_line(exc)
    with pytest.raises(ValueError, match=r"^KernelRidge\.set_params: alpha= .* use ridge=0\.5$"):
        KernelRidge().set_params(alpha=0.5)
    assert KernelRidge().set_params(ridge=0.5).ridge == 0.5  # the real name still works


@pytest.mark.parametrize(
    "kernel,params,name",
    [
        ("rbf", dict(depth=3), "depth"),
        ("rbf", dict(bias=0.5), "bias"),
        ("linear", dict(gamma=0.3), "gamma"),
        ("ntk_relu", dict(gamma=0.3), "gamma"),
        ("ntk_relu", dict(degree=2), "degree"),
        ("laplacian", dict(coef0=2.0), "coef0"),
    ],
)
def test_unused_kernel_parameter_refused_by_estimator_and_gram_alike(kernel, params, name):
    """A value the kernel would not use is refused by both entry points, naming it."""
    from kernels import KernelRidge

    X = np.random.default_rng(0).normal(size=(6, 2))
    with pytest.raises(ValueError, match=rf"^KernelRidge\.fit: {name}=.* is not used by kernel='{kernel}'") as exc:
        KernelRidge(kernel=kernel, **params).fit(X, np.ones(6))
    _one_line(exc)
    with pytest.raises(TypeError, match=rf"^gram: unknown parameter\(s\) {name} for kernel '{kernel}'"):
        gram(X, kernel=kernel, **params)


def test_used_kernel_parameters_still_reach_the_kernel():
    from kernels import KernelRidge

    X = np.random.default_rng(0).normal(size=(8, 2))
    y = np.sin(X[:, 0])
    model = KernelRidge(1e-3, kernel="ntk_relu", depth=3, bias=0.2, solver="eigen").fit(X, y)
    K = ntk_relu(X, depth=3, bias=0.2)
    np.testing.assert_allclose(model.predict(X), K @ np.linalg.solve(K + 1e-3 * np.eye(8), y), rtol=1e-8)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("func", [rbf, laplace, exponential, ntk_relu, nngp_relu, polynomial])
def test_mixed_float_dtypes_follow_numpy_promotion(kind, func):
    """float32 X with float64 Z computes in float64 (numpy's rule), in either order."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(5, 3)).astype(np.float32)
    Z = rng.normal(size=(4, 3))
    conv = (lambda a: a) if kind == "numpy" else torch.from_numpy
    ref = np.asarray(func(X.astype(np.float64), Z))
    for a, b, want in ((X, Z, ref), (Z, X, None)):
        K = func(conv(a), conv(b))
        K = K.numpy() if kind == "torch" else K
        assert K.dtype == np.float64, (func.__name__, kind)
        if want is not None:
            np.testing.assert_allclose(K, want, rtol=1e-13)  # torch and numpy may order sums differently
    assert (
        np.asarray(func(X, Z, dtype="float32") if kind == "numpy" else func(conv(X), conv(Z), dtype="float32")).dtype
        == np.float32
    )


def test_estimator_precision_is_the_gram_dtype_as_documented():
    """KernelRidge states that targets and queries take the training Gram's dtype."""
    from kernels import KernelRidge

    X = np.random.default_rng(2).normal(size=(10, 2)).astype(np.float32)
    model = KernelRidge(0.1).fit(X, np.ones(10))
    assert model.dual_coef_.dtype == np.float32
    assert model.predict(X.astype(np.float64)).dtype == np.float32
    assert KernelRidge(0.1).fit(X.astype(np.float64), np.ones(10, np.float32)).dual_coef_.dtype == np.float64


@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_float_intervals_refuse_infinity_by_default(value):
    from kernels.checks import Interval, check_param

    with pytest.raises(ValueError, match=r"^f: x must be a float in \(0, inf\); got -?inf"):
        check_param("f", "x", value, Interval(float, 0, None, "neither"))
    assert Interval(float, None, None, allow_inf=True).contains(value)


@pytest.mark.parametrize("field,value", [("lr", math.inf), ("weight_decay", math.inf), ("lr", math.nan)])
def test_train_config_floats_must_be_finite(field, value):
    from deep.config import TrainConfig

    with pytest.raises(ValueError, match=rf"{field} must be a float"):
        TrainConfig(**{field: value})


def test_cli_download_fetches_into_data_folder_and_uses_the_archive(tmp_path, monkeypatch, capsys):
    """--download hands the folder to deep.data.download_cifar10 and runs on the file it returns."""
    import deep.data

    seen = {}

    def fake_download(folder, **kw):
        seen["folder"] = Path(folder)
        target = Path(folder) / "cifar-10-python.tar.gz"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"x")
        return target

    def record(ctx):
        seen["data"] = ctx.data
        return RunOutput(numbers={}, markdown="fake\n")

    monkeypatch.setattr(deep.data, "download_cifar10", fake_download)
    monkeypatch.setattr(cli, "ALL_RUNS", tuple(dataclasses.replace(b, func=record) for b in ALL_RUNS))
    folder = tmp_path / "cifar"
    assert (
        cli.main(
            ["run", "confirm", "--quick", "--download", "--data", str(folder), "--out", str(tmp_path / "r"), "--no-progress"]
        )
        == 0
    )
    assert seen == {"folder": folder, "data": folder / "cifar-10-python.tar.gz"}


@pytest.mark.parametrize(
    "extra,message",
    [
        ([], "--download needs --data FOLDER"),
        (["--data", "FILE"], "--download: --data .* is a file"),
    ],
)
def test_cli_download_needs_a_folder(tmp_path, capsys, fake_runs, extra, message):
    f = tmp_path / "f.txt"
    f.write_text("x")
    argv = ["run", "confirm", "--download", "--out", str(tmp_path / "r")] + [str(f) if a == "FILE" else a for a in extra]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert re.match(rf"^airkit: error: {message}", err) and "\n" not in err, err


def test_cli_download_failure_is_one_line(tmp_path, monkeypatch, capsys, fake_runs):
    import deep.data

    def offline(folder, **kw):
        raise deep.data.CifarDownloadError("download_cifar10: cannot reach https://x (no network); pass a local copy with --data")

    monkeypatch.setattr(deep.data, "download_cifar10", offline)
    assert cli.main(["run", "confirm", "--download", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("airkit: error: --download: download_cifar10: cannot reach") and "\n" not in err


@pytest.mark.parametrize("value", [1, 0, 0.0, 1.0, "True", None])
def test_boolean_options_accept_booleans_only(value):
    from kernels.checks import Options, check_param

    with pytest.raises((TypeError, ValueError), match=r"^f: flag must be one of True, False; got "):
        check_param("f", "flag", value, Options((True, False)))
    assert check_param("f", "flag", np.True_, Options((True, False))) is np.True_
    assert check_param("f", "flag", False, Options((True, False))) is False


def test_train_config_boolean_field_refuses_an_int():
    from deep.config import TrainConfig

    with pytest.raises((TypeError, ValueError), match=r"augment must be one of True, False; got 1"):
        TrainConfig(augment=1)


def test_every_train_config_field_has_a_cli_flag_that_reaches_it():
    """config_from_args reads each field from its flag: a non-default value on the command line arrives."""
    from deep.config import TrainConfig, build_parser, config_from_args

    assert config_from_args(build_parser().parse_args([])) == TrainConfig()
    argv = [
        "--epochs",
        "3",
        "--batch-size",
        "64",
        "--lr",
        "0.05",
        "--seed",
        "7",
        "--hard",
        "--no-augment",
        "--no-progress",
        "--model-option",
        "scale=2.0",
        "--val-fraction",
        "0.2",
        "--freq-subset",
        "0",
    ]
    cfg = config_from_args(build_parser().parse_args(argv))
    assert (
        cfg.epochs,
        cfg.batch_size,
        cfg.lr,
        cfg.seed,
        cfg.soft,
        cfg.augment,
        cfg.progress,
        cfg.model_options,
        cfg.val_fraction,
        cfg.freq_subset,
    ) == (3, 64, 0.05, 7, False, False, False, (("scale", 2.0),), 0.2, 0)


@pytest.mark.parametrize(
    "kw,message",
    [
        (
            dict(method="self-distill", alpha=0.5),
            r"alpha is the weight on the ground truth .* method='self-distill' does not use it",
        ),
        (dict(method="sat", alpha=0.5), r"alpha is the weight on the ground truth .* method='sat' does not use it"),
        (
            dict(method="generations", target_momentum=0.5),
            r"target_momentum is the weight on the previous target .* method='generations'",
        ),
        (dict(method="ce", target_momentum=0.5), r"target_momentum .* method='ce' does not use it"),
        (dict(method="interp", weight_schedule="linear"), r"weight_schedule .* method='interp' uses neither"),
    ],
)
def test_train_config_weights_one_name_per_idea(kw, message):
    """alpha is the weight on the ground truth (generations); target_momentum the weight on the
    previous target (self-distill, sat): a value given to a method that does not use it is refused."""
    from deep.config import TrainConfig

    with pytest.raises(ValueError, match=r"^TrainConfig: " + message) as exc:
        TrainConfig(**kw)
    _one_line(exc)


def test_train_config_weights_reach_their_methods():
    from deep.config import TrainConfig

    assert TrainConfig(method="sat", target_momentum=0.9).target_momentum == 0.9
    assert TrainConfig(method="generations", generations=2, alpha=0.6).alpha == 0.6
