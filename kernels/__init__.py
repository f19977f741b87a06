"""kernels: Gram matrices, NTK closed forms, eigendecompositions and kernel ridge regression."""

from kernels.spectrum import Spectrum, spectrum

__all__ = ["Spectrum", "spectrum"]
