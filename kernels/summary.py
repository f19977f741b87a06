"""Plain-text summaries of result objects: one aligned ``key: value`` block.

Every result object with a ``summary()`` method (``DistillationPath``, ``DistillationStudy``,
``MobahiPath``) builds a ``{label: text}`` mapping and renders it here, so they all read
the same way.
"""

from __future__ import annotations

__all__ = ["aligned_block"]


def aligned_block(rows: dict[str, str]) -> str:
    """``key: value`` lines with the keys right-aligned to the longest one.

    Examples
    --------
    >>> print(aligned_block({"steps": "10", "n, k": "20, 20"}))
    steps: 10
     n, k: 20, 20
    """
    width = max((len(k) for k in rows), default=0)
    return "\n".join(f"{k.rjust(width)}: {v}" for k, v in rows.items())
