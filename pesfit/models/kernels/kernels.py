"""Kernel values and derivative blocks (compiled), shared by every kernel back end.

All functions work on *scaled* descriptors ``u = x / l`` (``l`` the length
scale, a scalar or one per feature) and on stationary kernels
``k(u, u') = phi(s)``, ``s = |u - u'|^2``:

* ``"gaussian"``: ``phi = exp(-s/2)``;
* ``"matern52"``: ``phi = (1 + rho + rho^2/3) exp(-rho)``, ``rho = sqrt(5 s)``.

With ``d = u - u'`` both are summarised by three numbers:
``phi``, ``g1`` and ``g2`` such that ``dphi/dd = g1 d`` and
``d2phi/dd dd^T = g1 I + g2 d d^T`` (Gaussian: ``g1 = -phi``, ``g2 = phi``;
Matérn-5/2: ``g1 = -(5/3)(1 + rho) e^-rho``, ``g2 = (25/3) e^-rho``).

Symmetrised kernels sum over descriptor permutations ``v`` (rows of
``perms``, identity included): ``k_sym(u, u') = sum_v phi(|u - u'[v]|^2)``.
For structures ``a`` and ``b`` with projected Jacobians ``M`` (D x r; see
:func:`~pesfit.models.kernels.descriptors.project_jacobian`) the covariances
of energies ``E`` and projected gradients ``y = Q^T dE/dR`` are, with
``Pi`` the permutation matrix of ``v`` and ``d = u_a - Pi u_b``::

    cov(E_a, E_b) = sum_v phi
    cov(E_a, y_b) = sum_v -g1 (Pi M_b)^T d
    cov(y_a, E_b) = sum_v  g1 M_a^T d
    cov(y_a, y_b) = sum_v -M_a^T (g1 I + g2 d d^T) Pi M_b

:func:`kernel_matrix` writes these blocks straight into a system matrix;
:func:`expansion` evaluates a fitted model
``E(u) = sum_c [A_c phi(s_c) - g1(s_c) W_c . (u - C_c)]`` and its gradient
``dE/du = sum_c [A_c g1 d_c - g1 W_c - g2 (W_c . d_c) d_c]`` over centres
``C_c`` (training descriptors with their permuted copies).
"""
from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["KERNELS", "kernel_code", "radial", "kernel_matrix", "expansion", "expand_centres", "canonical_permutation"]

#: kernel name -> code used by the compiled functions
KERNELS = {"gaussian": 0, "matern52": 1}


def kernel_code(kind: str) -> int:
    try:
        return KERNELS[kind]
    except KeyError:
        raise ValueError(f"unknown kernel {kind!r}; choose from {sorted(KERNELS)}") from None


@njit(cache=True, nogil=True)
def _radial(kind, s):
    if kind == 0:
        f = np.exp(-0.5 * s)
        return f, -f, f
    rho = np.sqrt(5.0 * s)
    e = np.exp(-rho)
    return (1.0 + rho + rho * rho / 3.0) * e, -(5.0 / 3.0) * (1.0 + rho) * e, (25.0 / 3.0) * e


def radial(kind: str, s):
    """``phi``, ``g1``, ``g2`` of a kernel at squared scaled distances ``s`` (array)."""
    code = kernel_code(kind)
    s = np.asarray(s, dtype=np.float64)
    out = np.array([_radial(code, float(v)) for v in s.ravel()]).reshape(s.shape + (3,))
    return out[..., 0], out[..., 1], out[..., 2]


@njit(cache=True, nogil=True)
def _kernel_matrix(Ua, Ma, Ub, Mb, perms, kind, eA, gA, eB, gB, symmetric, K):
    na, D = Ua.shape
    nb = Ub.shape[0]
    ra = Ma.shape[2]
    rb = Mb.shape[2]
    nP = perms.shape[0]
    want_ga = gA >= 0
    want_gb = gB >= 0
    d = np.empty(D)
    p = np.empty(ra)
    q = np.empty(rb)
    S = np.zeros((D, D))
    T = np.empty((D, rb))
    keg = np.empty(rb)
    kge = np.empty(ra)
    kgg = np.empty((ra, rb))
    for a in range(na):
        b0 = a if symmetric else 0
        for b in range(b0, nb):
            kee = 0.0
            keg[:] = 0.0
            kge[:] = 0.0
            kgg[:, :] = 0.0
            if want_ga and want_gb:
                S[:, :] = 0.0
            for P in range(nP):
                s = 0.0
                for k in range(D):
                    dk = Ua[a, k] - Ub[b, perms[P, k]]
                    d[k] = dk
                    s += dk * dk
                phi, g1, g2 = _radial(kind, s)
                kee += phi
                if want_gb:
                    for j in range(rb):
                        acc = 0.0
                        for k in range(D):
                            acc += Mb[b, perms[P, k], j] * d[k]
                        q[j] = acc
                        keg[j] -= g1 * acc
                if want_ga:
                    for i in range(ra):
                        acc = 0.0
                        for k in range(D):
                            acc += Ma[a, k, i] * d[k]
                        p[i] = acc
                        kge[i] += g1 * acc
                if want_ga and want_gb:
                    for k in range(D):
                        S[k, perms[P, k]] += g1
                    for i in range(ra):
                        gp = g2 * p[i]
                        for j in range(rb):
                            kgg[i, j] -= gp * q[j]
            if want_ga and want_gb:
                # kgg -= M_a^T S M_b  (S = sum_v g1 Pi_v)
                for k in range(D):
                    for j in range(rb):
                        acc = 0.0
                        for l in range(D):
                            acc += S[k, l] * Mb[b, l, j]
                        T[k, j] = acc
                for i in range(ra):
                    for j in range(rb):
                        acc = 0.0
                        for k in range(D):
                            acc += Ma[a, k, i] * T[k, j]
                        kgg[i, j] -= acc
            mirror = symmetric and b != a
            if eA >= 0 and eB >= 0:
                K[eA + a, eB + b] = kee
                if mirror:
                    K[eB + b, eA + a] = kee
            if eA >= 0 and want_gb:
                for j in range(rb):
                    K[eA + a, gB + b * rb + j] = keg[j]
                    if mirror:
                        K[gB + b * rb + j, eA + a] = keg[j]
            if want_ga and eB >= 0:
                for i in range(ra):
                    K[gA + a * ra + i, eB + b] = kge[i]
                    if mirror:
                        K[eB + b, gA + a * ra + i] = kge[i]
            if want_ga and want_gb:
                for i in range(ra):
                    for j in range(rb):
                        K[gA + a * ra + i, gB + b * rb + j] = kgg[i, j]
                        if mirror:
                            K[gB + b * rb + j, gA + a * ra + i] = kgg[i, j]


def _empty_jacobian(U):
    return np.zeros((U.shape[0], U.shape[1], 1))


def kernel_matrix(kind: str, perms, Ua, Ma=None, Ub=None, Mb=None, *, energies_a=True, gradients_a=True,
                  energies_b=True, gradients_b=True, out=None, row0=0, col0=0) -> np.ndarray:
    """Covariance matrix of energies and projected gradients between two sets of structures.

    Parameters
    ----------
    kind : {"gaussian", "matern52"}
    perms : ndarray of shape (n_perms, D), int
        Descriptor permutations summed over (the identity alone: no symmetrisation).
    Ua : ndarray of shape (na, D)
        Scaled descriptors of set A.
    Ma : ndarray of shape (na, D, r), optional
        Scaled projected Jacobians of set A (needed for its gradient rows).
    Ub, Mb : optional
        Set B (default: set A, and the matrix is filled symmetrically).
    energies_a, gradients_a, energies_b, gradients_b : bool
        Which rows (A) and columns (B) to include.  Rows are ordered
        ``[E_1..E_na, y_1(1..r)..y_na(1..r)]``, columns likewise.
    out : ndarray, optional
        Matrix to write into, at offset ``(row0, col0)``.

    Returns
    -------
    ndarray of shape (rows, cols)
    """
    Ua = np.ascontiguousarray(Ua, dtype=np.float64)
    symmetric = Ub is None
    if symmetric:
        Ub, Mb = Ua, Ma
        if (energies_a, gradients_a) != (energies_b, gradients_b):
            raise ValueError("a symmetric kernel matrix needs the same rows and columns")
    Ub = np.ascontiguousarray(Ub, dtype=np.float64)
    gradients_a = gradients_a and Ma is not None
    gradients_b = gradients_b and Mb is not None
    Ma = _empty_jacobian(Ua) if Ma is None else np.ascontiguousarray(Ma, dtype=np.float64)
    Mb = _empty_jacobian(Ub) if Mb is None else np.ascontiguousarray(Mb, dtype=np.float64)
    na, nb = Ua.shape[0], Ub.shape[0]
    ra, rb = Ma.shape[2], Mb.shape[2]
    rows = (na if energies_a else 0) + (na * ra if gradients_a else 0)
    cols = (nb if energies_b else 0) + (nb * rb if gradients_b else 0)
    if out is None:
        out = np.empty((rows, cols))
        row0 = col0 = 0
    eA = row0 if energies_a else -1
    gA = row0 + (na if energies_a else 0) if gradients_a else -1
    eB = col0 if energies_b else -1
    gB = col0 + (nb if energies_b else 0) if gradients_b else -1
    perms = np.ascontiguousarray(perms, dtype=np.int64)
    _kernel_matrix(Ua, Ma, Ub, Mb, perms, kernel_code(kind), eA, gA, eB, gB, symmetric, out)
    return out


@njit(cache=True, nogil=True)
def _expansion(U, C, A, W, kind, with_grad, E, G):
    n, D = U.shape
    m = C.shape[0]
    d = np.empty(D)
    for i in range(n):
        e = 0.0
        if with_grad:
            for k in range(D):
                G[i, k] = 0.0
        for c in range(m):
            s = 0.0
            wd = 0.0
            for k in range(D):
                dk = U[i, k] - C[c, k]
                d[k] = dk
                s += dk * dk
                wd += W[c, k] * dk
            phi, g1, g2 = _radial(kind, s)
            e += A[c] * phi - g1 * wd
            if with_grad:
                f = A[c] * g1 - g2 * wd
                for k in range(D):
                    G[i, k] += f * d[k] - g1 * W[c, k]
        E[i] = e


def expansion(kind: str, U, C, A, W, *, gradient: bool = True):
    """Kernel expansion ``E(u)`` and ``dE/du`` at scaled descriptors ``U``.

    Parameters
    ----------
    U : ndarray of shape (n, D)
        Scaled query descriptors.
    C : ndarray of shape (m, D)
        Centres (scaled training descriptors, each permuted copy a row).
    A : ndarray of shape (m,)
        Energy coefficients.
    W : ndarray of shape (m, D)
        Gradient coefficients ``M beta`` (permuted like ``C``).

    Returns
    -------
    E : ndarray of shape (n,)
    G : ndarray of shape (n, D), ``dE/du`` (only with ``gradient=True``)
    """
    U = np.ascontiguousarray(U, dtype=np.float64)
    E = np.empty(U.shape[0])
    G = np.empty(U.shape if gradient else (0, U.shape[1]))
    _expansion(U, C, A, W, kernel_code(kind), gradient, E, G)
    return (E, G) if gradient else E


def expand_centres(U, alpha, w, perms):
    """Centres, energy and gradient coefficients of every permuted copy (row ``P * n + j``).

    Copy ``P`` of training structure ``j`` has centre ``U[j, perms[P]]``,
    energy coefficient ``alpha[j]`` and gradient coefficient ``w[j, perms[P]]``.
    """
    perms = np.asarray(perms)
    C = np.concatenate([U[:, p] for p in perms])
    A = np.tile(alpha, len(perms))
    W = np.concatenate([w[:, p] for p in perms])
    return np.ascontiguousarray(C), np.ascontiguousarray(A), np.ascontiguousarray(W)


@njit(cache=True, nogil=True)
def _canonical_permutation(X, perms, out):
    n, D = X.shape
    for i in range(n):
        best = 0
        for P in range(1, perms.shape[0]):
            for k in range(D):
                a = X[i, perms[P, k]]
                b = X[i, perms[best, k]]
                if a < b:
                    best = P
                    break
                if a > b:
                    break
        out[i] = best


def canonical_permutation(X, perms) -> np.ndarray:
    """Index of the permutation giving the lexicographically smallest ``X[i, perms[P]]``, per row.

    A symmetrised expansion is invariant, so it may be evaluated at this
    representative of the orbit of ``x``; permuted copies of a structure
    then give bit-identical energies, whatever the rounding of the sum over
    centres.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    out = np.empty(X.shape[0], dtype=np.int64)
    _canonical_permutation(X, np.ascontiguousarray(perms, dtype=np.int64), out)
    return out
