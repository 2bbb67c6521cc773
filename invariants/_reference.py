"""Plain-NumPy reference evaluation of a basis, straight from its monomials.

Slow and simple on purpose: the compiled program is tested against it.
"""
from __future__ import annotations

import numpy as np

from .basis import Basis

__all__ = ["reference_values", "reference_jacobian"]


def _terms(basis: Basis):
    return [basis.polynomial_terms(i) for i in range(basis.n_basis)]


def reference_values(basis: Basis, X) -> np.ndarray:
    """Values (n, n_basis) as explicit sums of monomials."""
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    out = np.empty((X.shape[0], basis.n_basis))
    for j, (exps, coefs) in enumerate(_terms(basis)):
        out[:, j] = (np.prod(X[:, None, :] ** exps[None], axis=2) * coefs).sum(axis=1)
    return out


def reference_jacobian(basis: Basis, X) -> np.ndarray:
    """``dp/dx`` (n, n_basis, n_variables) by differentiating each monomial."""
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    n, nv = X.shape
    jac = np.zeros((n, basis.n_basis, nv))
    for j, (exps, coefs) in enumerate(_terms(basis)):
        for k in range(nv):
            e = exps.copy()
            mult = e[:, k].astype(np.float64)
            e[:, k] = np.maximum(e[:, k] - 1, 0)
            jac[:, j, k] = (np.prod(X[:, None, :] ** e[None], axis=2) * (coefs * mult)).sum(axis=1)
    return jac
