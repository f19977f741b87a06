"""kernels: Gram matrices, NTK closed forms, eigendecompositions and kernel ridge regression.

Arrays in, arrays out, in the namespace and on the device of the input (numpy, torch, CuPy).
Kernels larger than memory live in their own modules, run on Dask when it is installed
(``pip install 'airkit[dask]'``) and are not imported here: :mod:`kernels.lazy_gram`,
:mod:`kernels.large_spectrum`, :mod:`kernels.cg_ridge`.
"""

from kernels.cnn import cnn_architecture, cnn_nngp, cnn_ntk
from kernels.functions import KERNELS, exponential, gram, kernel_params, laplace, laplacian, linear, polynomial, rbf
from kernels.relu import nngp_relu, ntk_relu, ntk_two_layer
from kernels.ridge import KernelRidge, KernelSolve, RidgePath, solve_kernel_system
from kernels.spectrum import RidgeResolutionWarning, Spectrum, check_ridge_resolution, spectrum

__all__ = [
    "KERNELS",
    "gram",
    "kernel_params",
    "linear",
    "polynomial",
    "rbf",
    "laplace",
    "laplacian",
    "exponential",
    "nngp_relu",
    "ntk_relu",
    "ntk_two_layer",
    "cnn_architecture",
    "cnn_nngp",
    "cnn_ntk",
    "Spectrum",
    "spectrum",
    "RidgeResolutionWarning",
    "check_ridge_resolution",
    "KernelRidge",
    "KernelSolve",
    "RidgePath",
    "solve_kernel_system",
]
