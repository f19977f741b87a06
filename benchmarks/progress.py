"""One stderr line per part of a long run: what runs, how long it took, what is left.

A run announces its plan (the steps it will take, each with a rough relative cost),
then wraps each step in :meth:`PartLog.step` (or :meth:`PartLog.part`, which is
``ctx.part`` with the same lines). Each finished step prints::

    [frequency] 3/5 net-gd done in 41.2 s (elapsed 52.0 s, about 1 min 20 s left)

The estimate of what is left is the time per unit of cost of the steps timed so far
times the cost still to come; steps read back from an earlier session (``--resume``)
count as done and are left out of the rate. With ``enabled=False`` (``--no-progress``)
nothing is printed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["PartLog", "duration"]


def duration(seconds: float) -> str:
    """``12.3 s``, ``4 min 05 s`` or ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


class PartLog:
    """Progress lines on stderr for the steps of one run.

    Parameters
    ----------
    run : str
        The run's name, the prefix of every line.
    plan : mapping of str to float
        Every step the run will take, in order, with its rough relative cost (> 0).
    enabled : bool
        ``ctx.progress``; False prints nothing.
    """

    def __init__(self, run: str, plan: Mapping[str, float], enabled: bool = True) -> None:
        self.run = run
        self.plan = {str(k): float(v) for k, v in plan.items()}
        self.enabled = bool(enabled)
        self.start = time.perf_counter()
        self._done: set[str] = set()
        self._timed_s = 0.0
        self._timed_cost = 0.0

    def _line(self, text: str) -> None:
        if self.enabled:
            print(f"[{self.run}] {text}", file=sys.stderr, flush=True)

    def _index(self, name: str) -> str:
        keys = list(self.plan)
        return f"{keys.index(name) + 1}/{len(keys)} " if name in self.plan else ""

    def left(self) -> float | None:
        """Seconds the steps not yet done should take at the rate seen so far (None before any timing)."""
        todo = sum(c for k, c in self.plan.items() if k not in self._done)
        if todo == 0:
            return 0.0
        if self._timed_cost <= 0:
            return None
        return todo * self._timed_s / self._timed_cost

    def step(self, name: str, fn: Callable[[], Any], what: str | None = None) -> Any:
        """Run ``fn()`` as the step ``name``: a line when it starts (if ``what`` is given) and when it ends."""
        if what:
            self._line(f"{self._index(name)}{name}: {what} ...")
        t = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t
        self._done.add(name)
        self._timed_s += dt
        self._timed_cost += self.plan.get(name, 0.0)
        left = self.left()
        rest = "all steps done" if left == 0 else ("time left unknown" if left is None else f"about {duration(left)} left")
        self._line(
            f"{self._index(name)}{name} done in {duration(dt)} (elapsed {duration(time.perf_counter() - self.start)}, {rest})"
        )
        return out

    def skip(self, *names: str) -> None:
        """Mark steps as done without timing them (read back from an earlier session)."""
        self._done.update(names)

    def part(self, ctx: Any, key: str, fn: Callable[[], Any], what: str | None = None, inner: tuple[str, ...] = ()) -> Any:
        """``ctx.part(key, fn)`` with progress lines.

        Without ``inner`` the part is one step named ``key``. With ``inner``, ``fn`` logs
        its own steps (these names) through :meth:`step`; a part read back from an earlier
        session marks them done.
        """
        called: list[bool] = []

        def compute() -> Any:
            called.append(True)
            return fn() if inner else self.step(key, fn, what)

        out = ctx.part(key, compute)
        if not called:
            self.skip(*(inner or (key,)))
            self._line(f"{key}: read back from an earlier session")
        return out
