"""The named benchmark runs, in the order ``run all`` executes them."""

from benchmarks.runs import (
    air_spectrum,
    analytic_vs_trained,
    cnn_kernels,
    confirm,
    frequency,
    large_spectrum,
    noisy_cifar,
    speed,
    toy_distill,
)

ALL_RUNS = (
    toy_distill.BENCHMARK,
    air_spectrum.BENCHMARK,
    analytic_vs_trained.BENCHMARK,
    frequency.BENCHMARK,
    noisy_cifar.BENCHMARK,
    confirm.BENCHMARK,
    cnn_kernels.BENCHMARK,
    speed.BENCHMARK,
    large_spectrum.BENCHMARK,
)

__all__ = ["ALL_RUNS"]
