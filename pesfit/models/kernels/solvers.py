"""Linear solvers for kernel systems ``(K + diag(delta)) c = y`` (training only).

* :func:`solve_cholesky` -- dense Cholesky factorisation (``O(m^3)`` time,
  ``m^2`` memory), adding diagonal jitter in decades when rounding makes
  ``K`` numerically indefinite;
* :func:`solve_cg` -- preconditioned conjugate gradients on a matrix-free
  operator, so that only ``m x k`` numbers are stored, with the Nyström
  preconditioner of :class:`NystromPreconditioner` (``k`` columns of ``K``).

The matrix-free operator :class:`KernelOperator` recomputes ``K`` in row
chunks at every product, so its memory stays at ``chunk x m``.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

from .kernels import kernel_matrix

__all__ = ["KernelOperator", "NystromPreconditioner", "cholesky_factor", "solve_cholesky", "solve_cg",
           "regularization_diagonal"]


def regularization_diagonal(diag: np.ndarray, n_energy_rows: int, lam_e: float, lam_g: float) -> np.ndarray:
    """Diagonal ``delta``: ``lam_e`` (energy rows, first) or ``lam_g`` times the mean of the whole diagonal.

    One scale for both kinds of rows: the energy block's own diagonal grows
    with the number of permutations summed over (every permuted copy of a
    structure is close to it), and regularising energies relative to it
    would weaken them exactly where the symmetrisation is strongest.
    """
    scale = float(np.mean(diag)) if diag.size else 1.0
    delta = np.full(diag.shape, lam_g * scale)
    delta[:n_energy_rows] = lam_e * scale
    return delta


def _restore_lower(work: np.ndarray, diag: np.ndarray, block: int = 512) -> None:
    """Rebuild the lower triangle (and diagonal) of ``work`` from its untouched upper triangle."""
    m = work.shape[0]
    for j in range(0, m, block):
        k = min(m, j + block)
        blk = work[j:k, j:k]
        blk[...] = np.triu(blk, 1) + np.triu(blk, 1).T + np.diag(diag[j:k])
        if k < m:
            work[k:, j:k] = work[j:k, k:].T


def cholesky_factor(A: np.ndarray, *, overwrite: bool = False, max_jitter: float = 1e-4):
    """Lower Cholesky factor of a symmetric matrix, adding jitter if needed.

    With ``overwrite=True`` the factor is computed in the memory of ``A``
    (no copy).  Returns ``(factor, jitter)``: ``factor`` is for
    :func:`scipy.linalg.cho_solve` with ``lower=True`` and ``jitter`` the
    amount (times the mean diagonal) that had to be added, 0.0 if none.

    Raises
    ------
    ValueError
        If even ``max_jitter`` does not make ``A`` positive definite; the
        message says what to change.
    """
    diag = np.diag(A).copy()
    scale = float(diag.mean())
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError("the kernel matrix has a non-positive or non-finite diagonal; check the descriptors "
                         "and the length scale")
    # A symmetric C-ordered matrix is its own transpose: A.T is a Fortran-ordered view LAPACK can overwrite.
    work = A.T if (overwrite and A.flags.c_contiguous) else np.array(A, order="F")
    jitter = 0.0
    while True:
        try:
            L, _ = scipy.linalg.cho_factor(work, lower=True, overwrite_a=True, check_finite=False)
            return L, jitter
        except np.linalg.LinAlgError:
            jitter = 1e-12 if jitter == 0.0 else jitter * 10.0
            if jitter > max_jitter:
                raise ValueError("the kernel matrix is not positive definite even with a jitter of "
                                 f"{max_jitter:g} x its mean diagonal: the training set probably holds "
                                 "(near-)duplicate structures, or the length scale is far too large; remove "
                                 "duplicates, lower the length scale or raise the regularisation") from None
            _restore_lower(work, diag + jitter * scale)


def solve_cholesky(A: np.ndarray, y: np.ndarray, *, overwrite: bool = False):
    """Solve ``A c = y`` for symmetric positive definite ``A``; returns ``(c, L, jitter)``."""
    L, jitter = cholesky_factor(A, overwrite=overwrite)
    c = scipy.linalg.cho_solve((L, True), y, check_finite=False)
    return c, L, jitter


class KernelOperator:
    """Matrix-free ``v -> (K + diag(delta)) v`` for a symmetrised kernel system.

    Rows are ``[E_1..E_n, y_1..y_n]`` (energy rows only with ``energies``,
    gradient rows only with ``gradients``); ``K`` is rebuilt from the
    descriptors ``U`` and Jacobians ``M`` in chunks of ``chunk`` structures.
    """

    def __init__(self, kind, perms, U, M, delta, *, energies=True, gradients=True, chunk=None,
                 max_chunk_bytes=2**27):
        self.kind, self.perms, self.U, self.M = kind, perms, U, M
        self.energies, self.gradients = energies, gradients and M is not None
        self.n = U.shape[0]
        self.r = M.shape[2] if M is not None else 0
        self.per = (1 if energies else 0) + (self.r if self.gradients else 0)
        self.shape = (self.n * self.per, self.n * self.per)
        self.delta = delta
        if chunk is None:
            chunk = max(1, int(max_chunk_bytes // (8 * self.per * self.shape[1])))
        self.chunk = chunk
        self.n_products = 0

    def _rows(self, idx):
        """Row indices of structures ``idx`` in the system ordering."""
        rows = []
        if self.energies:
            rows.append(idx)
        if self.gradients:
            off = self.n if self.energies else 0
            rows.append((off + idx[:, None] * self.r + np.arange(self.r)).ravel())
        return np.concatenate(rows)

    def block(self, idx) -> np.ndarray:
        """Rows of ``K`` (without ``delta``) for structures ``idx``, in the order of :meth:`_rows`."""
        idx = np.asarray(idx)
        Ma = self.M[idx] if self.gradients else None
        return kernel_matrix(self.kind, self.perms, self.U[idx], Ma, self.U, self.M if self.gradients else None,
                             energies_a=self.energies, gradients_a=self.gradients, energies_b=self.energies,
                             gradients_b=self.gradients)

    def matvec(self, v: np.ndarray) -> np.ndarray:
        out = self.delta * v
        for start in range(0, self.n, self.chunk):
            idx = np.arange(start, min(self.n, start + self.chunk))
            out[self._rows(idx)] += self.block(idx) @ v
        self.n_products += 1
        return out

    def diagonal(self) -> np.ndarray:
        d = np.empty(self.shape[0])
        for start in range(0, self.n, self.chunk):
            idx = np.arange(start, min(self.n, start + self.chunk))
            rows = self._rows(idx)
            d[rows] = self.block(idx)[np.arange(len(rows)), rows]
        return d


class NystromPreconditioner:
    """Approximate inverse of ``K + diag(delta)`` from ``k`` columns of ``K``.

    With ``C = K[:, I]`` and ``W = K[I, I]``, ``K ~ F F^T`` where
    ``F = C L_W^-T``.  Writing ``G = Delta^(-1/2) F = Q R`` (thin QR) and
    ``R R^T = V diag(s) V^T``, the inverse of ``Delta^(1/2) (G G^T + I) Delta^(1/2)``
    is applied exactly and stably as
    ``Delta^(-1/2) [(I - Q Q^T) + Q V diag(1/(1+s)) V^T Q^T] Delta^(-1/2)``.
    """

    def __init__(self, C: np.ndarray, W: np.ndarray, delta: np.ndarray):
        Lw, _ = cholesky_factor(W)
        F = scipy.linalg.solve_triangular(Lw, C.T, lower=True, check_finite=False).T
        self.inv_sqrt_delta = 1.0 / np.sqrt(delta)
        G = F * self.inv_sqrt_delta[:, None]
        self.Q, Rq = scipy.linalg.qr(G, mode="economic", overwrite_a=True, check_finite=False)
        s, V = np.linalg.eigh(Rq @ Rq.T)
        self.QV = self.Q @ V
        self.shrink = 1.0 / (1.0 + np.maximum(s, 0.0))

    def __call__(self, v: np.ndarray) -> np.ndarray:
        w = v * self.inv_sqrt_delta
        a = self.QV.T @ w
        w = w - self.QV @ a + self.QV @ (self.shrink * a)
        return w * self.inv_sqrt_delta


def solve_cg(op, y: np.ndarray, precond=None, *, tol: float = 1e-10, max_iter: int = 2000, x0=None,
             progress=None):
    """Preconditioned conjugate gradients for ``op.matvec(c) = y``.

    Stops when ``|y - A c| <= tol |y|``.  Returns ``(c, info)`` with
    ``info = {"iterations", "relative_residual", "converged"}``.
    """
    x = np.zeros_like(y) if x0 is None else x0.copy()
    r = y - op.matvec(x) if x0 is not None else y.copy()
    z = precond(r) if precond is not None else r
    p = z.copy()
    rz = r @ z
    norm_y = np.linalg.norm(y)
    if norm_y == 0:
        return x, {"iterations": 0, "relative_residual": 0.0, "converged": True}
    res = np.linalg.norm(r) / norm_y
    it = 0
    while res > tol and it < max_iter:
        Ap = op.matvec(p)
        step = rz / (p @ Ap)
        x += step * p
        r -= step * Ap
        res = np.linalg.norm(r) / norm_y
        it += 1
        if progress is not None:
            progress(it, max_iter, f"CG residual {res:.2e}")
        if res <= tol:
            break
        z = precond(r) if precond is not None else r
        rz_new = r @ z
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x, {"iterations": it, "relative_residual": float(res), "converged": bool(res <= tol)}
