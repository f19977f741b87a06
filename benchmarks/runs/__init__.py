"""The named benchmark runs, in the order ``run all`` executes them."""

from benchmarks.runs import air_spectrum, toy_distill

ALL_RUNS = (toy_distill.BENCHMARK, air_spectrum.BENCHMARK)

__all__ = ["ALL_RUNS"]
