"""theory: closed forms of AIR, self-distillation, Mobahi rounds, linearised dynamics and the frequency principle.

Every function takes a :class:`kernels.Spectrum` (one eigendecomposition) and labels, and works
in the eigenbasis: O(n) per step after the decomposition.
"""

from theory.air import (
    DistillationComparison,
    LabelSpectrum,
    LearningCurves,
    distillation_vs_early_stopping,
    first_fit_times,
    half_fit_time,
    label_spectrum,
    predicted_curves,
)
from theory.distillation import (
    DistillationPath,
    OptimalAlpha,
    OptimalAlphaPath,
    Sparsification,
    krr_fit,
    optimal_alpha,
    optimal_alpha_path,
    self_distillation,
    sparsification,
)
from theory.distillation_study import DistillationStudy, distillation_study
from theory.dynamics import TARGET_RULES, TrainingPath, linearized_training, max_stable_lr
from theory.frequency import FrequencyMeasures, FrequencySplit, delta_grid, frequency_measures, frequency_split, low_pass
from theory.mobahi import MobahiPath, mobahi_rounds
from theory.noise import (
    CIFAR10_ASYMMETRIC_MAP,
    CIFAR10_CLASSES,
    NOISE_KINDS,
    NoisyLabels,
    cifar10_asymmetric_noise,
    make_noise,
    one_hot,
    pair_noise,
    symmetric_noise,
    uniform_noise,
)

__all__ = [
    "self_distillation",
    "DistillationPath",
    "krr_fit",
    "optimal_alpha",
    "OptimalAlpha",
    "optimal_alpha_path",
    "OptimalAlphaPath",
    "sparsification",
    "Sparsification",
    "distillation_study",
    "DistillationStudy",
    "mobahi_rounds",
    "MobahiPath",
    "linearized_training",
    "TrainingPath",
    "max_stable_lr",
    "TARGET_RULES",
    "label_spectrum",
    "LabelSpectrum",
    "half_fit_time",
    "predicted_curves",
    "LearningCurves",
    "distillation_vs_early_stopping",
    "DistillationComparison",
    "first_fit_times",
    "low_pass",
    "frequency_split",
    "FrequencySplit",
    "frequency_measures",
    "FrequencyMeasures",
    "delta_grid",
    "make_noise",
    "NoisyLabels",
    "symmetric_noise",
    "uniform_noise",
    "pair_noise",
    "cifar10_asymmetric_noise",
    "one_hot",
    "CIFAR10_CLASSES",
    "CIFAR10_ASYMMETRIC_MAP",
    "NOISE_KINDS",
]
