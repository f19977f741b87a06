"""The named benchmark runs, in the order ``run all`` executes them."""

from benchmarks.runs import toy_distill

ALL_RUNS = (toy_distill.BENCHMARK,)

__all__ = ["ALL_RUNS"]
