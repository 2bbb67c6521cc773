"""Plain-NumPy reference of the kernel blocks and of the kernel expansion.

Slow and direct on purpose (explicit permutation matrices, one pair at a
time, Cartesian Jacobians); :mod:`.kernels` is tested against it.
"""
from __future__ import annotations

import numpy as np

__all__ = ["reference_radial", "reference_kernel_matrix", "reference_expansion"]


def reference_radial(kind: str, s: float):
    """``phi, g1, g2`` written out from the kernel formulas."""
    if kind == "gaussian":
        phi = np.exp(-s / 2)
        return phi, -phi, phi
    rho = np.sqrt(5 * s)
    return ((1 + rho + rho**2 / 3) * np.exp(-rho), -5 / 3 * (1 + rho) * np.exp(-rho), 25 / 3 * np.exp(-rho))


def _perm_matrix(v):
    D = len(v)
    P = np.zeros((D, D))
    P[np.arange(D), v] = 1.0
    return P


def reference_kernel_matrix(kind, perms, Ua, Ma, Ub, Mb):
    """Full ``[[EE, Ey], [yE, yy]]`` covariance between sets A and B."""
    na, nb = len(Ua), len(Ub)
    ra, rb = Ma.shape[2], Mb.shape[2]
    EE = np.zeros((na, nb))
    EY = np.zeros((na, nb * rb))
    YE = np.zeros((na * ra, nb))
    YY = np.zeros((na * ra, nb * rb))
    Ps = [_perm_matrix(v) for v in perms]
    D = Ua.shape[1]
    for a in range(na):
        for b in range(nb):
            for P in Ps:
                ub = P @ Ub[b]
                Mbp = P @ Mb[b]
                d = Ua[a] - ub
                phi, g1, g2 = reference_radial(kind, d @ d)
                EE[a, b] += phi
                # d/du_b' of phi(|u_a - u_b'|^2) = -g1 d
                EY[a, b * rb:(b + 1) * rb] += Mbp.T @ (-g1 * d)
                YE[a * ra:(a + 1) * ra, b] += Ma[a].T @ (g1 * d)
                H = g1 * np.eye(D) + g2 * np.outer(d, d)
                YY[a * ra:(a + 1) * ra, b * rb:(b + 1) * rb] += -Ma[a].T @ H @ Mbp
    return np.block([[EE, EY], [YE, YY]])


def reference_expansion(kind, U, C, A, W):
    """Energies and ``dE/du`` of a kernel expansion, one centre at a time."""
    E = np.zeros(len(U))
    G = np.zeros_like(U)
    for i, u in enumerate(U):
        for c, a, w in zip(C, A, W):
            d = u - c
            phi, g1, g2 = reference_radial(kind, d @ d)
            E[i] += a * phi - g1 * (w @ d)
            G[i] += a * g1 * d - g1 * w - g2 * (w @ d) * d
    return E, G
