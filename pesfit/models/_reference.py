"""Plain in-memory reference of the linear fits: the whole design matrix, one QR per fold.

Slow and memory-hungry on purpose (it is what :mod:`.lstsq` replaces); the
streamed solver and the linear back ends are tested against it.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

from invariants import DistanceTransform

__all__ = ["weighted_lstsq_path", "linear_design", "linear_cv"]


def weighted_lstsq_path(A: np.ndarray, y: np.ndarray, ridges) -> list[np.ndarray]:
    """Ridge solutions of ``min |A c - y|^2 + lambda |D c|^2`` (``D``: column norms) by one QR of ``A``."""
    norms = np.linalg.norm(A, axis=0)
    norms[norms == 0] = 1.0
    As = A / norms
    Q, Rq = scipy.linalg.qr(As, mode="economic", check_finite=False)
    qty = Q.T @ y
    U, s, Vt = scipy.linalg.svd(Rq, full_matrices=False, check_finite=False)
    uty = U.T @ qty
    cutoff = s[0] * max(A.shape) * np.finfo(float).eps
    out = []
    for lam in ridges:
        if lam == 0:
            filt = np.where(s > cutoff, 1.0 / np.where(s > cutoff, s, 1.0), 0.0)
        else:
            filt = s / (s**2 + lam)
        out.append((Vt.T @ (filt * uty)) / norms)
    return out


def linear_design(basis, transform, R, E, F, weights, force_weight: float):
    """Weighted rows (energies, then forces when ``F`` is given) and targets of a linear PIP fit."""
    if F is not None:
        P, J = basis.cartesian_jacobian(R, transform)
        n, nb = P.shape
        fw = (weights * force_weight)[:, None, None]
        A = np.vstack([P * weights[:, None], (-J.transpose(0, 2, 3, 1) * fw[..., None]).reshape(-1, nb)])
        y = np.concatenate([E * weights, (F * fw).reshape(-1)])
    else:
        A = basis.cartesian_values(R, transform) * weights[:, None]
        y = E * weights
    return A, y


def linear_cv(basis, morse_a: float, ridges, R, E, F, weights, force_weight: float, folds) -> np.ndarray:
    """Energy CV RMSE [meV] per ridge: for each fold, the design of the other folds is built and factored."""
    transform = DistanceTransform("morse", morse_a)
    n = len(E)
    sse = np.zeros(len(ridges))
    for val in folds:
        train = np.setdiff1d(np.arange(n), val)
        A, y = linear_design(basis, transform, R[train], E[train], None if F is None else F[train], weights[train],
                             force_weight)
        Pv = basis.cartesian_values(R[val], transform)
        for j, c in enumerate(weighted_lstsq_path(A, y, ridges)):
            sse[j] += np.sum((Pv @ c - E[val]) ** 2)
    return 1000 * np.sqrt(sse / n)
