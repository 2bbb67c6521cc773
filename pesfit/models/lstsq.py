"""Streamed (blocked, tall-skinny) QR least squares with a ridge path and fold factors.

A least-squares problem ``min |A c - y|^2`` is reduced to the triangular
factor ``R`` of the augmented matrix ``M = [A | y]`` (``M^T M = R^T R``),
accumulated one block of rows at a time,

    R_new = qr([R_old; M_block])   (R only),

so memory is O(p^2) plus one block whatever the number of rows (factors of
whole tasks are merged with LAPACK ``tpqrt``, which uses their triangular
shape), and the
numerical quality is that of a QR of the whole matrix (the normal equations
``A^T A`` are never formed).  Everything a fit needs follows from ``R``:

* column norms of ``A`` = column norms of ``R[:, :p]``; scaling columns to unit
  norm is ``R D^-1``, the R factor of ``A D^-1``;
* ``Q^T y`` = ``R[:p, p]``; the ridge path comes from one SVD of the small
  scaled ``R`` (:func:`ridge_path`);
* the squared residual of any ``c`` is ``|R [c; -1]|^2``
  (:meth:`RowFactor.residual_sse`), which scores validation folds.

Cross-validation keeps one factor per fold (:class:`FoldFactors`); the
training factor of fold ``k`` is the QR of the stacked factors of the other
folds, so the data are factored once per model configuration, not once per
fold.  :func:`factor_blocks` builds the fold factors from a function that
returns the rows of a set of structures, block by block, locally or on a
Dask cluster (see :mod:`pesfit.models.executors`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.linalg.lapack as lapack

from .executors import blas_threads, current_executor

__all__ = ["RowFactor", "FoldFactors", "ridge_path", "lstsq_path", "plan_tasks", "factor_task", "factor_blocks",
           "fold_factors", "fold_labels", "labels_of_folds", "BLOCK_BYTES"]

#: target size of one block of design rows [bytes]; the feature evaluation needs a few times this
BLOCK_BYTES = 64 * 2**20
#: a block has at least this many rows per column and fold: adding m rows to a k x k factor costs
#: a QR of (k + m) rows, so small blocks of a large basis would spend most of their time on R
BLOCK_ROWS_PER_COLUMN = 2
#: a task covers at least this many rows per column and fold, so merging its factors costs little
TASK_ROWS_PER_COLUMN = 16
_TPQRT_NB = 32


class RowFactor:
    """Upper-triangular ``R`` (k x k) with ``R^T R = M^T M`` for all rows ``M`` added so far.

    Parameters
    ----------
    n_columns : int
        ``k``: the columns of ``A`` plus the right-hand side(s).

    Attributes
    ----------
    R : ndarray of shape (k, k), Fortran order
    n_rows : int
        Rows added so far.
    """

    __slots__ = ("R", "n_rows")

    def __init__(self, n_columns: int):
        self.R = np.zeros((n_columns, n_columns), order="F")
        self.n_rows = 0

    @property
    def n_columns(self) -> int:
        return self.R.shape[0]

    def add(self, rows: np.ndarray) -> "RowFactor":
        """Fold rows (m, k) into the factor (in place; returns self)."""
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.n_columns:
            raise ValueError(f"rows must have shape (m, {self.n_columns}), got {rows.shape}")
        if rows.shape[0] == 0:
            return self
        # NumPy's QR releases the GIL (LAPACK geqrf), so blocks can be factored on several threads
        self.R = np.asfortranarray(np.linalg.qr(np.vstack([self.R, rows]), mode="r"))
        self.n_rows += rows.shape[0]
        return self

    def merge(self, other: "RowFactor") -> "RowFactor":
        """Fold another factor of the same columns into this one (in place; returns self)."""
        if other.n_columns != self.n_columns:
            raise ValueError(f"cannot merge factors of {other.n_columns} and {self.n_columns} columns")
        if other.n_rows:
            self._tpqrt(self.n_columns, np.array(other.R, order="F"))
            self.n_rows += other.n_rows
        return self

    def _tpqrt(self, l: int, B: np.ndarray) -> None:
        k = self.n_columns
        R, _, _, info = lapack.dtpqrt(l, min(_TPQRT_NB, k), self.R, B, overwrite_a=1, overwrite_b=1)
        if info != 0:
            raise RuntimeError(f"LAPACK dtpqrt failed (info={info})")
        self.R = R

    def copy(self) -> "RowFactor":
        out = RowFactor(self.n_columns)
        out.R = self.R.copy(order="F")
        out.n_rows = self.n_rows
        return out

    @classmethod
    def combine(cls, factors) -> "RowFactor":
        """Factor of all rows of ``factors`` (the QR of their stacked R's)."""
        factors = list(factors)
        out = factors[0].copy()
        for f in factors[1:]:
            out.merge(f)
        return out

    def residual_sse(self, coefs) -> np.ndarray:
        """``|A c - y|^2`` for each coefficient vector ``c`` (one right-hand side)."""
        C = np.column_stack([np.append(c, -1.0) for c in coefs])
        return np.sum((self.R @ C) ** 2, axis=0)


def ridge_path(factor: RowFactor, ridges) -> list[np.ndarray]:
    """Ridge solutions of ``min |A c - y|^2 + lambda |D c|^2`` from the factor of ``[A | y]``.

    ``D`` holds the column norms of ``A`` (ridge on unit-norm columns).  One
    SVD of the scaled ``R`` serves every ``lambda``; ``lambda = 0`` is the
    minimum-norm solution with singular values below
    ``s_max * max(n_rows, p) * eps`` dropped.
    """
    R = factor.R
    p = R.shape[1] - 1
    m = min(factor.n_rows, p)
    Ra, qty = R[:m, :p], R[:m, p]
    norms = np.linalg.norm(R[:, :p], axis=0)
    norms[norms == 0] = 1.0
    U, s, Vt = scipy.linalg.svd(Ra / norms, full_matrices=False, check_finite=False)
    uty = U.T @ qty
    out = []
    cutoff = s[0] * max(factor.n_rows, p) * np.finfo(float).eps
    for lam in ridges:
        if lam == 0:
            filt = np.where(s > cutoff, 1.0 / np.where(s > cutoff, s, 1.0), 0.0)
        else:
            filt = s / (s**2 + lam)
        out.append((Vt.T @ (filt * uty)) / norms)
    return out


def lstsq_path(A: np.ndarray, y: np.ndarray, ridges, *, block_bytes: int = BLOCK_BYTES) -> list[np.ndarray]:
    """:func:`ridge_path` of an in-memory ``A`` (n, p) and ``y`` (n,), factored in row blocks
    on single-threaded BLAS (these solves are small or many)."""
    A = np.asarray(A, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if A.ndim != 2 or y.shape != (A.shape[0],):
        raise ValueError(f"need A of shape (n, p) and y of shape (n,), got {A.shape} and {y.shape}")
    factor = RowFactor(A.shape[1] + 1)
    step = max(1, block_bytes // (8 * (A.shape[1] + 1)))
    with blas_threads(1):
        for s in range(0, A.shape[0], step):
            factor.add(np.column_stack([A[s:s + step], y[s:s + step]]))
        return ridge_path(factor, ridges)


# --------------------------------------------------------------- fold factors
@dataclass
class FoldFactors:
    """Per-fold factors: ``train[k]`` of the weighted fit rows ``[A | y]`` of fold ``k``'s
    structures, ``val[k]`` of the rows ``[P | E]`` its validation error is measured on."""

    train: list
    val: list

    @classmethod
    def empty(cls, n_folds: int, n_train_columns: int, n_val_columns: int) -> "FoldFactors":
        return cls([RowFactor(n_train_columns) for _ in range(n_folds)],
                   [RowFactor(n_val_columns) for _ in range(n_folds)])

    def merge(self, other: "FoldFactors") -> "FoldFactors":
        for a, b in zip(self.train + self.val, other.train + other.val):
            a.merge(b)
        return self

    def all_rows(self) -> RowFactor:
        """Factor of every fold's fit rows: the whole training set."""
        return RowFactor.combine(self.train)

    def cv_sse(self, ridges) -> np.ndarray:
        """Validation SSE per ridge, summed over folds; fold ``k`` is fitted to the others' factors."""
        sse = np.zeros(len(ridges))
        for k in range(len(self.train)):
            rest = RowFactor.combine([f for j, f in enumerate(self.train) if j != k])
            sse += self.val[k].residual_sse(ridge_path(rest, ridges))
        return sse


def fold_labels(n: int, n_folds: int, random_state) -> np.ndarray:
    """Fold of each structure: ``np.array_split`` of a seeded random permutation into ``n_folds``."""
    return labels_of_folds(np.array_split(np.random.default_rng(random_state).permutation(n), n_folds), n)


def labels_of_folds(folds, n: int) -> np.ndarray:
    """Fold label of each of ``n`` rows from a list of index arrays (one per fold)."""
    labels = np.full(n, -1, dtype=np.int64)
    for k, idx in enumerate(folds):
        labels[idx] = k
    return labels


def fold_factors(M: np.ndarray, labels, n_folds: int, V: np.ndarray | None = None, *,
                 block_bytes: int = BLOCK_BYTES) -> FoldFactors:
    """Fold factors of in-memory fit rows ``M = [A | y]`` and validation rows ``V = [P | E]`` (default ``M``).

    ``labels`` gives each row's fold.  For back ends whose design matrix is
    already in memory; it saves refactoring the training rows once per fold.
    """
    M = np.asarray(M, dtype=np.float64)
    V = M if V is None else np.asarray(V, dtype=np.float64)
    out = FoldFactors.empty(n_folds, M.shape[1], V.shape[1])
    step = max(1, block_bytes // (8 * M.shape[1]))
    with blas_threads(1):
        for s in range(0, len(M), step):
            lab = labels[s:s + step]
            for k in range(n_folds):
                rows = lab == k
                out.train[k].add(M[s:s + step][rows])
                out.val[k].add(V[s:s + step][rows])
    return out


def plan_tasks(n_structures: int, rows_per_structure: int, n_columns: int, n_folds: int = 1, *,
               block_bytes: int | None = None) -> list[list[tuple[int, int]]]:
    """Consecutive structure ranges: blocks of about ``block_bytes`` of rows (at least
    ``BLOCK_ROWS_PER_COLUMN`` rows per column and fold), grouped into tasks.

    ``block_bytes`` defaults to :data:`BLOCK_BYTES`.  A task (one unit of
    work, e.g. one Dask task) holds enough blocks for
    ``TASK_ROWS_PER_COLUMN`` rows per column and fold, so merging the task's
    factors costs a small fraction of computing them.  The plan depends only
    on the problem's size, never on the machine, so every executor gives the
    same factors.
    """
    block_bytes = BLOCK_BYTES if block_bytes is None else block_bytes
    per_block = max(1, block_bytes // (8 * n_columns * rows_per_structure),
                    -(-BLOCK_ROWS_PER_COLUMN * n_columns * n_folds // rows_per_structure))
    per_task = max(per_block, -(-TASK_ROWS_PER_COLUMN * n_columns * n_folds // rows_per_structure))
    per_task = -(-per_task // per_block) * per_block
    tasks = []
    for t in range(0, n_structures, per_task):
        stop = min(t + per_task, n_structures)
        tasks.append([(s, min(s + per_block, stop)) for s in range(t, stop, per_block)])
    return tasks


def factor_task(rows, blocks, labels, n_folds: int, n_train_columns: int, n_val_columns: int) -> FoldFactors:
    """Fold factors of the structures in ``blocks`` (a list of ``(start, stop)``).

    ``rows(indices) -> (M, V)``: fit rows ``[A | y]`` and validation rows
    ``[P | E]`` of the structures ``indices``; ``labels`` is the fold of every
    structure (or None: one fold, no validation rows needed).
    """
    out = FoldFactors.empty(n_folds, n_train_columns, n_val_columns)
    for start, stop in blocks:
        block = np.arange(start, stop)
        for k in range(n_folds):
            idx = block if labels is None else block[labels[start:stop] == k]
            if idx.size == 0:
                continue
            M, V = rows(idx)
            out.train[k].add(M)
            if V is not None:
                out.val[k].add(V)
    return out


def factor_blocks(rows, tasks, labels, n_folds: int, n_train_columns: int, n_val_columns: int, *,
                  executor=None, progress=None) -> FoldFactors:
    """Fold factors of all ``tasks`` (see :func:`plan_tasks`), merged in task order.

    ``rows`` must offer ``restrict(start, stop)`` (the same rows for those
    structures only), so that a task carries only its own data.
    ``executor`` runs the tasks (:func:`pesfit.models.executors.current_executor`
    by default); ``progress(done, total)`` is called after each task.
    """
    executor = current_executor() if executor is None else executor
    total = FoldFactors.empty(n_folds, n_train_columns, n_val_columns)
    args = (_task_args(rows, blocks, labels, n_folds, n_train_columns, n_val_columns) for blocks in tasks)
    for i, part in enumerate(executor.map_ordered(factor_task, args)):
        total.merge(part)
        del part  # one task's factors alive at a time
        if progress is not None:
            progress(i + 1, len(tasks))
    return total


def _task_args(rows, blocks, labels, *rest):
    start, stop = blocks[0][0], blocks[-1][1]
    return (rows.restrict(start, stop), [(a - start, b - start) for a, b in blocks],
            None if labels is None else labels[start:stop]) + rest
