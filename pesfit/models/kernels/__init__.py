"""Kernel back ends: KREG/pKREG, PIP-GPR and sGDML (energies, forces, uncertainty).

Pipeline: :mod:`.descriptors` (structure -> descriptor and Jacobian) ->
:mod:`.kernels` (compiled kernel values and derivative blocks) ->
:mod:`.training` / :mod:`.solvers` (systems, Cholesky and conjugate
gradients, cross-validation) -> the models :mod:`.kreg`, :mod:`.gpr`,
:mod:`.sgdml`, which share :class:`~.base.KernelModel` for prediction,
model files and export.  :mod:`._reference` is the plain-NumPy reference
the compiled kernels are tested against.
"""
from .base import KernelModel
from .gpr import GPRModel
from .kreg import KREGModel, PKREGModel
from .sgdml import SGDMLModel

__all__ = ["GPRModel", "KernelModel", "KREGModel", "PKREGModel", "SGDMLModel"]
