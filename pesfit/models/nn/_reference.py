"""Plain-NumPy energy and gradient of PIP-NN / FI-NN models (reference for :mod:`._kernels`).

``E = e_shift + e_scale y(z)``, ``z = (p(x(R))[feature] - x_mean) / x_scale``;
by the chain rule ``dE/dR = e_scale sum_j (dy/dz_j / x_scale_j) dp_j/dR``
with ``dp/dR`` from :meth:`invariants.Basis.cartesian_jacobian`.
"""
from __future__ import annotations

import numpy as np

from .network import energy_and_input_gradient

__all__ = ["reference_energy_and_gradient"]


def reference_energy_and_gradient(basis, transform, R, feature, x_mean, x_scale, sizes, activation, thetas,
                                  e_shift, e_scale):
    """Member energies (n, n_members) [eV] and gradients (n, n_members, N, 3) [eV/Å]."""
    P, J = basis.cartesian_jacobian(np.asarray(R, dtype=np.float64), transform)
    Z = (P[:, feature] - x_mean) / x_scale
    Jf = J[:, feature]
    energies, grads = [], []
    for theta in np.atleast_2d(thetas):
        y, dz = energy_and_input_gradient(theta, sizes, activation, Z)
        energies.append(e_shift + e_scale * y)
        grads.append(e_scale * np.einsum("nj,njac->nac", dz / x_scale, Jf))
    return np.stack(energies, axis=1), np.stack(grads, axis=1)
