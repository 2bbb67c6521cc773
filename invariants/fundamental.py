"""Fundamental invariants: a minimal generating set of the invariant ring.

Degree by degree, the invariants of degree ``k`` are spanned by the orbit
sums of degree ``k`` (their number is the Molien coefficient ``c_k``).  The
*decomposable* subspace ``D_k`` is spanned by ``g * O`` for every generator
``g`` of degree ``j < k`` and every orbit sum ``O`` of degree ``k - j``.  New
generators are orbit sums completing a basis of ``R_k / D_k``.

All arithmetic is exact: products of orbit sums have integer coefficients in
the orbit-sum basis (:meth:`MonomialOrbits.product_rows`), and ranks are
computed over the prime field GF(p), p = 2**31 - 1, after a structural
elimination ("peeling") that removes most of the work.  Completeness follows
exactly: full rank over GF(p) implies full rank over the rationals.
Minimality is confirmed by a second prime; it could only fail if both primes
divided the same minors.
"""
from __future__ import annotations

import heapq
import time

import numpy as np
from numba import njit

from .monomials import MonomialOrbits

__all__ = ["find_fundamental_invariants", "PRIMES"]

PRIMES = (2_147_483_647, 2_147_483_629)


def rref_pivots_mod_p(M: np.ndarray, p: int) -> list[int]:
    """Pivot columns of the row-reduced echelon form of ``M`` over GF(p)."""
    M = np.array(M, dtype=np.int64) % p
    n_rows, n_cols = M.shape
    pivots = []
    r = 0
    for c in range(n_cols):
        if r >= n_rows:
            break
        nz = np.flatnonzero(M[r:, c])
        if len(nz) == 0:
            continue
        piv = r + nz[0]
        if piv != r:
            M[[r, piv]] = M[[piv, r]]
        inv = pow(int(M[r, c]), p - 2, p)
        M[r] = (M[r] * inv) % p
        col = M[:, c].copy()
        col[r] = 0
        rows = np.flatnonzero(col)
        if len(rows):
            M[rows] = (M[rows] - (col[rows, None] * M[r][None, :]) % p) % p
        pivots.append(c)
        r += 1
    return pivots


def _peel(rows, n_orbits, preference):
    """Structural elimination of sparse integer rows over orbit indices.

    Returns the pivot (orbit -> row) assignment in solving order and the list
    of free orbits (not determined by any row in the peeling).
    """
    rows_of = [[] for _ in range(n_orbits)]
    count = [len(r) for r in rows]
    for ri, r in enumerate(rows):
        for o in r:
            rows_of[o].append(ri)
    unsolved = set(range(n_orbits))
    heap = [(len(rows[ri]), ri) for ri in range(len(rows)) if count[ri] == 1]
    heapq.heapify(heap)
    solved_order = []  # (orbit, row or -1 for free)
    used = set()

    def mark(o):
        unsolved.discard(o)
        for ri in rows_of[o]:
            count[ri] -= 1
            if count[ri] == 1:
                heapq.heappush(heap, (len(rows[ri]), ri))

    free_queue = sorted(range(n_orbits), key=preference)
    fq = 0
    while unsolved:
        while heap:
            _, ri = heapq.heappop(heap)
            if count[ri] != 1 or ri in used:
                continue
            target = next((o for o in rows[ri] if o in unsolved), None)
            if target is None:
                continue
            used.add(ri)
            solved_order.append((target, ri))
            mark(target)
        if unsolved:
            while free_queue[fq] not in unsolved:
                fq += 1
            o = free_queue[fq]
            solved_order.append((o, -1))
            mark(o)
    return solved_order, used


def _quotient_coordinates(rows, solved_order, n_orbits, free, p):
    """Coordinates of every orbit in ``R_k / D_k`` on the free orbits, mod p."""
    index = {o: i for i, o in enumerate(free)}
    vec = np.zeros((n_orbits, len(free)), dtype=np.int64)
    for o, ri in solved_order:
        if ri < 0:
            vec[o, index[o]] = 1
            continue
        row = rows[ri]
        acc = np.zeros(len(free), dtype=np.int64)
        for c, n in row.items():
            if c != o:
                acc = (acc + (n % p) * vec[c]) % p
        inv = pow(int(row[o]) % p, p - 2, p)
        vec[o] = (-acc * inv) % p
    return vec


def _relations(rows, used, vec, p):
    """Quotient coordinates of every row not used as a pivot (each must vanish)."""
    from scipy.sparse import csr_matrix

    keep = [ri for ri in range(len(rows)) if ri not in used]
    if not keep:
        return np.zeros((0, vec.shape[1]), dtype=np.int64)
    indptr = np.zeros(len(keep) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(rows[ri]) for ri in keep])
    cols = np.fromiter((c for ri in keep for c in rows[ri]), dtype=np.int64, count=indptr[-1])
    vals = np.fromiter((n for ri in keep for n in rows[ri].values()), dtype=np.int64, count=indptr[-1])
    if np.abs(vals).max() >= 2**20:
        raise ArithmeticError("product coefficients too large for the modular kernel")
    mat = csr_matrix((vals % p, cols, indptr), shape=(len(keep), vec.shape[0]))
    rel = np.zeros((len(keep), vec.shape[1]), dtype=np.int64)
    # split the coordinates so that every partial sum stays below 2**63
    lo, hi = vec & 0xFFFF, vec >> 16
    rel = ((mat @ lo) % p + ((mat @ hi) % p) * 65536) % p
    return rel[np.any(rel != 0, axis=1)]


@njit(cache=True)
def _semi_echelon_leads(rel, p):
    """Leading columns of an incremental semi-echelon form of ``rel`` over GF(p).

    They equal the pivot columns of the reduced row-echelon form.
    """
    n_rows, n_cols = rel.shape
    basis = np.zeros((n_cols, n_cols), dtype=np.int64)
    lead_row = np.full(n_cols, -1, dtype=np.int64)
    rank = 0
    row = np.empty(n_cols, dtype=np.int64)
    for r in range(n_rows):
        for c in range(n_cols):
            row[c] = rel[r, c] % p
        for c in range(n_cols):
            if row[c] == 0:
                continue
            br = lead_row[c]
            if br >= 0:
                f = row[c]
                for cc in range(c, n_cols):
                    if basis[br, cc] != 0:
                        row[cc] = (row[cc] - f * basis[br, cc]) % p
            else:
                # new leading column: normalise and store
                inv = 1
                e = p - 2
                base = row[c]
                while e > 0:
                    if e & 1:
                        inv = (inv * base) % p
                    base = (base * base) % p
                    e >>= 1
                for cc in range(c, n_cols):
                    basis[rank, cc] = (row[cc] * inv) % p
                lead_row[c] = rank
                rank += 1
                break
        if rank == n_cols:
            break
    return np.flatnonzero(lead_row >= 0)


def _reduce_rank(rel, p, n_free):
    """Pivot columns of the relation matrix over GF(p)."""
    return [int(c) for c in _semi_echelon_leads(np.ascontiguousarray(rel, dtype=np.int64), p)]


def find_fundamental_invariants(orbits: MonomialOrbits, max_degree: int, *, progress=None):
    """Fundamental invariants (as orbit sums) up to ``max_degree``.

    Parameters
    ----------
    orbits : MonomialOrbits
        Monomial orbits up to at least ``max_degree``.
    max_degree : int
    progress : callable, optional
        Called as ``progress(degree, n_generators_so_far)`` after each degree.

    Returns
    -------
    generators : list of (degree, orbit index)
    certificate : dict
        Per degree: Molien coefficient (number of orbits), rank of the
        decomposable space over each prime, and number of new generators.
    """
    generators: list[tuple[int, int]] = []
    cert = {"degree": [], "molien": [], "decomposable_rank": [], "new_generators": [], "primes": list(PRIMES),
            "seconds": []}
    for k in range(1, max_degree + 1):
        t0 = time.perf_counter()
        n_k = orbits.n_orbits(k)
        sizes = orbits.sizes[k]
        rows = []
        for (j, og) in generators:
            if j >= k:
                continue
            mat = orbits.product_rows(k - j, j, orbits.members(j, og))
            for r in range(mat.shape[0]):
                lo, hi = mat.indptr[r], mat.indptr[r + 1]
                if hi > lo:
                    rows.append(dict(zip(mat.indices[lo:hi].tolist(), mat.data[lo:hi].tolist())))
        # free orbits are tried simplest first: small orbits, low index
        preference = lambda o: (int(sizes[o]), o)  # noqa: E731
        solved_order, used = _peel(rows, n_k, preference)
        free = [o for o, ri in solved_order if ri < 0]
        ranks = []
        chosen = None
        for p in PRIMES:
            if not free:
                ranks.append(n_k)
                chosen = []
                continue
            vec = _quotient_coordinates(rows, solved_order, n_k, free, p)
            rel = _relations(rows, used, vec, p)
            # columns ordered least preferred first, so that preferred orbits end up non-pivot
            col_order = sorted(range(len(free)), key=lambda i: preference(free[i]), reverse=True)
            piv = _reduce_rank(rel[:, col_order], p, len(free)) if len(rel) else []
            pivot_cols = {col_order[i] for i in piv}
            new = sorted((free[i] for i in range(len(free)) if i not in pivot_cols), key=preference)
            ranks.append(n_k - len(new))
            if chosen is None:
                chosen = new
            elif len(new) != len(chosen):
                raise ArithmeticError(
                    f"degree {k}: the two primes disagree on the number of new generators "
                    f"({len(chosen)} vs {len(new)})")
        generators += [(k, int(o)) for o in sorted(chosen)]
        cert["degree"].append(k)
        cert["molien"].append(int(n_k))
        cert["decomposable_rank"].append(ranks)
        cert["new_generators"].append(len(chosen))
        cert["seconds"].append(time.perf_counter() - t0)
        if progress is not None:
            progress(k, len(generators))
    return generators, cert
