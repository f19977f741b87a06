"""Atomic result files, run directories and the environment record of every benchmark run.

A run writes into ``<out>/<name>/.<timestamp>.partial/`` and renames it to
``<out>/<name>/<timestamp>/`` only when every file is complete, so a crash never
leaves a half-written result where a reader would look. ``--resume`` picks up the
newest ``.partial`` directory of that run and skips the parts already saved there.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_write_text",
    "atomic_write_json",
    "atomic_savefig",
    "to_jsonable",
    "environment",
    "new_partial_dir",
    "latest_partial_dir",
    "finalize_dir",
]


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temp file in the same directory and ``os.replace``."""
    from deep.records import atomic_write_bytes

    return atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(obj: Any) -> Any:
    """Convert numpy / torch scalars and arrays (nested in dicts/lists) to JSON types; non-finite floats become None."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "detach"):
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if np.isfinite(v) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def atomic_write_json(path: Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(to_jsonable(data), indent=2, allow_nan=False) + "\n")


def atomic_savefig(fig: Any, path: Path, *, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from deep.files import umask_file_mode

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.fchmod(fd, umask_file_mode())
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[1]
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except Exception:
        return None


def environment() -> dict[str, Any]:
    """Package versions, machine and git commit, for result.json."""
    import importlib.metadata as md

    versions = {}
    for pkg in ("numpy", "scipy", "scikit-learn", "matplotlib", "array-api-compat", "torch", "cupy-cuda12x", "cupy-cuda13x"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    try:
        import threadpoolctl

        blas = [
            f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} threads)"
            for i in threadpoolctl.threadpool_info()
        ]
    except Exception:
        blas = []
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "blas": blas,
        "versions": versions,
        "git_commit": _git_commit(),
        "utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def new_partial_dir(out: Path, name: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    path = Path(out) / name / f".{stamp}.partial"
    path.mkdir(parents=True, exist_ok=False)
    return path


def latest_partial_dir(out: Path, name: str) -> Path | None:
    base = Path(out) / name
    if not base.is_dir():
        return None
    parts = sorted(p for p in base.iterdir() if p.is_dir() and p.name.startswith(".") and p.name.endswith(".partial"))
    return parts[-1] if parts else None


def finalize_dir(partial: Path) -> Path:
    """Rename ``.<stamp>.partial`` to ``<stamp>`` (atomic on one filesystem)."""
    final = partial.with_name(partial.name[1 : -len(".partial")])
    os.replace(partial, final)
    return final
