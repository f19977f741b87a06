"""Shared fixtures: backends to run the same property tests on, and data paths."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

STRICT = "array_api_strict"  # the strict array-API namespace (a test dependency)
STRICT_DEVICE = "device1"  # a fake device: np.asarray and mixing with CPU arrays raise there
BACKENDS = ["numpy"]
try:  # torch is an optional backend; CI installs it, so the torch path runs there
    import torch  # noqa: F401

    BACKENDS.append("torch")
except ImportError:  # pragma: no cover
    pass
# The array-API reference namespace (on its fake device "device1", which refuses implicit host
# copies, as a GPU does) runs every backend-parametrised property test too, so a numpy-only call
# fails on the CPU in CI instead of on a GPU. AIRKIT_TEST_STRICT=0 leaves it out.
try:
    import array_api_strict  # noqa: F401

    if os.environ.get("AIRKIT_TEST_STRICT", "1") != "0":
        BACKENDS.append(STRICT)
except ImportError:  # pragma: no cover - a test dependency
    pass


def to_backend(x, backend: str):
    """Convert a numpy array to the given backend (CPU; array_api_strict on its fake "device1")."""
    if backend == "numpy":
        return np.asarray(x)
    if backend == STRICT:
        import array_api_strict

        return array_api_strict.asarray(np.ascontiguousarray(x), device=array_api_strict.Device(STRICT_DEVICE))
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


# ============================================================================ CUDA backends
# AIRKIT_TEST_DEVICE=cuda (set by `airkit gpu-check`, benchmarks/gpu_check.py): the same parametrised
# tests run on the GPU. With a CUDA device present, ``to_backend(x, "torch")`` puts the tensor on CUDA
# and the backend "cupy" is added (skipped when CuPy is not installed). Without the variable, or
# without a CUDA device, nothing changes. Kept here, at the end, as one separate block.

CUDA_ENV = "AIRKIT_TEST_DEVICE"


def _cuda_backends() -> list[str]:
    """Backends to add for the GPU run: ``["cupy"]`` when AIRKIT_TEST_DEVICE=cuda and torch sees a
    CUDA device, else ``[]``; a true result also means torch tensors go to CUDA (:func:`to_backend`)."""
    if os.environ.get(CUDA_ENV, "").strip().lower() != "cuda":
        return []
    try:
        import torch
    except ImportError:  # pragma: no cover
        return []
    return ["cupy"] if torch.cuda.is_available() else []


def _cuda_hypothesis_profile() -> None:
    """Under AIRKIT_TEST_DEVICE=cuda: no per-example deadline (the first CUDA calls compile and allocate)."""
    if os.environ.get(CUDA_ENV, "").strip().lower() == "cuda":
        from hypothesis import settings

        settings.register_profile("airkit-cuda", deadline=None)
        settings.load_profile("airkit-cuda")


_cuda_hypothesis_profile()
_to_backend_cpu = to_backend


def to_backend(x, backend: str):  # noqa: F811 - the CUDA-aware version of the function above
    """Convert a numpy array to the given backend: on CUDA when :func:`_cuda_backends` is on."""
    on_cuda = bool(_cuda_backends())
    if backend == "cupy":
        cupy = pytest.importorskip("cupy", reason="backend cupy needs CuPy (pip install 'airkit[gpu]')")
        return cupy.asarray(np.ascontiguousarray(x))
    out = _to_backend_cpu(x, backend)
    if on_cuda and backend == "torch":
        return out.to("cuda")
    return out


@pytest.fixture(params=list(dict.fromkeys(BACKENDS + _cuda_backends())))
def backend(request) -> str:  # noqa: F811 - BACKENDS plus the CUDA ones; replaces the fixture above
    return request.param
