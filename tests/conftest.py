"""Shared fixtures: backends to run the same property tests on, and data paths."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

BACKENDS = ["numpy"]
try:  # torch is an optional backend; CI installs it, so the torch path runs there
    import torch  # noqa: F401

    BACKENDS.append("torch")
except ImportError:  # pragma: no cover
    pass


def to_backend(x, backend: str):
    """Convert a numpy array to the given backend (CPU)."""
    if backend == "numpy":
        return np.asarray(x)
    import torch

    return torch.from_numpy(np.ascontiguousarray(x))


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def cifar_jpeg_tarball() -> Path:
    path = SHARED_DATA / "cifar10-jpeg.tar.gz"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


os.environ.setdefault("MPLBACKEND", "Agg")

try:  # one intra-op thread per pytest worker: `make test` runs 2 workers on 2 cores
    import torch as _torch

    _torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass


@pytest.fixture(autouse=True, scope="session")
def _private_cifar_cache(tmp_path_factory):
    """Tests never write to the user's CIFAR cache (~/.cache/airkit): decoded arrays go to a temp dir."""
    old = os.environ.get("AIRKIT_CACHE")
    os.environ["AIRKIT_CACHE"] = str(tmp_path_factory.mktemp("airkit-cache"))
    yield
    if old is None:
        os.environ.pop("AIRKIT_CACHE", None)
    else:
        os.environ["AIRKIT_CACHE"] = old


@pytest.fixture
def interrupt_at_epoch(monkeypatch):
    """``interrupt_at_epoch(k)``: deep.train's k-th call of train_epoch raises KeyboardInterrupt (Ctrl-C);
    returns a function that restores the real train_epoch."""
    import deep.train as train_mod

    real = train_mod.train_epoch

    def arm(k: int):
        calls = {"n": 0}

        def interrupted(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == k:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(train_mod, "train_epoch", interrupted)
        return lambda: monkeypatch.setattr(train_mod, "train_epoch", real)

    return arm
