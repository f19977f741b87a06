"""The named benchmark runs and the context each one is given."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.run_files import atomic_write_json

__all__ = ["RunContext", "RunOutput", "Benchmark", "BenchmarkError"]


class BenchmarkError(RuntimeError):
    """A failure the CLI reports as one line (bad data, bad option for this run, ...)."""


@dataclass(frozen=True)
class RunContext:
    """Everything a run may read: options, paths and a resumable part cache.

    ``part(key, compute)`` returns the saved JSON of a finished part when resuming,
    otherwise computes it and saves it atomically before returning, so an interrupted
    run repeated with ``--resume`` skips what it already finished.
    """

    name: str
    directory: Path
    quick: bool = False
    data: Path | None = None
    backend: str = "numpy"
    device: str = "cpu"
    seed: int = 0
    progress: bool = True
    options: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)  # size settings (tests, experiments); not on the CLI

    def sizes(self, defaults: dict[str, Any]) -> dict[str, Any]:
        """The run's size settings: ``defaults`` updated by ``overrides`` (unknown keys raise)."""
        unknown = set(self.overrides) - set(defaults)
        if unknown:
            raise BenchmarkError(f"{self.name}: unknown size setting(s) {sorted(unknown)}; known: {sorted(defaults)}")
        return {**defaults, **self.overrides}

    def asarray(self, x: Any) -> Any:
        """A numpy array moved to this run's ``backend`` and ``device`` (numpy stays numpy on the CPU)."""
        from kernels.backend import namespace_for

        if self.backend == "numpy":
            if self.device != "cpu":
                raise BenchmarkError("--backend numpy runs on the CPU only; use --backend torch or cupy with --device cuda")
            return x
        xp = namespace_for(self.backend)
        return xp.asarray(x, device=self.device if self.backend == "torch" else None)

    def part(self, key: str, compute: Callable[[], Any]) -> Any:
        path = self.directory / "parts" / f"{key}.json"
        if path.exists():
            return json.loads(path.read_text())
        value = compute()
        atomic_write_json(path, value)
        return json.loads(path.read_text())

    def path(self, filename: str) -> Path:
        return self.directory / filename


@dataclass(frozen=True)
class RunOutput:
    """What a run hands back: numbers for result.json, a Markdown body, figure file names."""

    numbers: dict[str, Any]
    markdown: str
    figures: tuple[str, ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Benchmark:
    name: str
    summary: str
    func: Callable[[RunContext], RunOutput]
    options: tuple[str, ...] = ()  # run-specific CLI options it accepts (e.g. "gamma")

    @classmethod
    def from_docstring(cls, doc: str | None, func: Callable[[RunContext], RunOutput], options: tuple[str, ...] = ()) -> Benchmark:
        """The run its module's docstring names: first line ``"<name>: <summary>"``."""
        name, sep, summary = (doc or "").partition("\n")[0].partition(": ")
        if not sep or not name or " " in name:
            raise ValueError(f"a run module's docstring must start with '<name>: <summary>'; got {(doc or '')[:60]!r}")
        return cls(name=name, summary=summary.strip(), func=func, options=options)
