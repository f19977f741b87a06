"""File names and modes of a training run's files (no torch here, so every reader and writer can use it)."""

from __future__ import annotations

import os

__all__ = ["CHECKPOINT_FILE", "umask_file_mode"]

CHECKPOINT_FILE = "checkpoint.pt"  # in a training run's out folder: what resume reads


def umask_file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file: ``0o666 & ~umask``.

    :func:`tempfile.mkstemp` creates files with mode 0600; the atomic writers chmod their
    temporary file to this mode before renaming it, so results and caches are readable by
    whoever the user's umask allows (colleagues, a web server), as any other file they write.
    """
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask
