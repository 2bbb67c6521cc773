"""PIP-NN and FI-NN back ends: neural networks on permutation-invariant polynomials.

* :mod:`.network` -- the network as a flat parameter vector, plain-NumPy forward/backward;
* :mod:`._kernels` -- compiled energy and forces from Cartesian coordinates (prediction);
* :mod:`._reference` -- the same in plain NumPy, for tests;
* :mod:`.train` -- torch training: Levenberg-Marquardt, L-BFGS, Adam, ensembles;
* :mod:`.model` -- the estimators :class:`PIPNNModel` and :class:`FINNModel`.

Importing this package does not import torch; only ``fit`` does.
"""
from .model import FINNModel, PIPNNModel

__all__ = ["FINNModel", "PIPNNModel"]
