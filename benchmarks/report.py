"""Markdown pieces shared by the benchmark reports: one table emitter for every run.

>>> print("\\n".join(markdown_table(["n", "time s"], [[100, "0.5"], [200, "1.9"]])))
| n | time s |
|---|---|
| 100 | 0.5 |
| 200 | 1.9 |
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["markdown_row", "markdown_table"]


def markdown_row(cells: Sequence[Any]) -> str:
    """``| a | b |``: each cell as ``str`` does it, padded by one space; an empty cell is ``| |``.

    Cells are written as given: a caller whose text may hold ``|`` or a newline escapes it.
    """
    return "|" + "|".join(f" {c} " if str(c) else " " for c in cells) + "|"


def markdown_table(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> list[str]:
    """The lines of a Markdown table: the header, the ``|---|`` rule, one line per row."""
    return [markdown_row(header), "|---" * len(header) + "|", *(markdown_row(r) for r in rows)]
