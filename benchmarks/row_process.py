"""One named row of a benchmark, run in a fresh Python process and read back as JSON.

Both ``speed`` (:mod:`benchmarks.runs.speed`: a fresh process per row, so each row's peak resident
memory is its own) and ``gpu-check`` (:mod:`benchmarks.gpu_check`: each GPU row under its own time
limit, the rows it saved before a limit or crash kept) run their rows this way:

- the parent, :func:`run_row_process`, writes the row's spec (``{"cfg": ..., "seed": ...}`` and
  whatever else the caller adds) to a temporary ``cfg.json``, starts :func:`row_command` through the
  caller's launcher (which decides how output and time limits are handled) and reads ``out.json`` back;
- the child, the module's ``__main__``, reads the spec (:func:`read_spec`), looks the row up in its
  table (:func:`row_functions`) and keeps its result in a :class:`RowResult`, which writes ``out.json``
  atomically on every :meth:`RowResult.save` and times the row into ``row_seconds``
  (:meth:`RowResult.timing`), also when the row raises.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from benchmarks.run_files import atomic_write_text, to_jsonable

__all__ = ["RowResult", "read_spec", "row_command", "row_functions", "run_row_process"]

T = TypeVar("T")


def row_functions(namespace: Mapping[str, Any], names: Iterable[str]) -> dict[str, Callable[..., Any]]:
    """``{name: namespace["row_<name>"]}`` for each of ``names`` in order: a module's table of rows
    (``namespace`` is its ``globals()``), so the row names are listed once."""
    return {name: namespace[f"row_{name}"] for name in names}


def row_command(child: Sequence[str], row: str, cfg_path: str, out_path: str) -> list[str]:
    """``python -m <child...> <row> <cfg.json> <out.json>``: the command that runs one row in a fresh process."""
    return [sys.executable, "-m", *child, row, cfg_path, out_path]


def run_row_process(
    child: Sequence[str], row: str, spec: dict[str, Any], launch: Callable[[list[str], Path], T], *, prefix: str
) -> tuple[T, dict[str, Any] | None]:
    """Run ``row`` in a fresh process: ``spec`` goes to ``cfg.json`` in a temporary folder (named from
    ``prefix``), ``launch(command, folder)`` runs :func:`row_command` and returns what the caller needs of
    the run (it may keep a log in ``folder``; the folder is removed afterwards).

    Returns what ``launch`` returned and the child's ``out.json`` (None where the child wrote none).
    """
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        folder = Path(tmp)
        cfg_path, out_path = folder / "cfg.json", folder / "out.json"
        cfg_path.write_text(json.dumps(spec))
        done = launch(row_command(child, row, str(cfg_path), str(out_path)), folder)
        return done, (json.loads(out_path.read_text()) if out_path.exists() else None)


def read_spec(cfg_path: str) -> dict[str, Any]:
    """The child's side: the spec the parent wrote to ``cfg.json``."""
    return json.loads(Path(cfg_path).read_text())


class RowResult:
    """The child's result: ``data``, written atomically as JSON to ``path`` on every :meth:`save`
    (nowhere when ``path`` is None, as when a row runs in the caller's own process)."""

    def __init__(self, path: Path | None, data: dict[str, Any] | None = None) -> None:
        self.path = path
        self.data: dict[str, Any] = {} if data is None else data

    def save(self) -> None:
        if self.path is not None:
            atomic_write_text(self.path, json.dumps(to_jsonable(self.data)))

    @contextmanager
    def timing(self) -> Iterator[None]:
        """Time the block into ``data["row_seconds"]`` and save, also when the block raises."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.data["row_seconds"] = time.perf_counter() - start
            self.save()
