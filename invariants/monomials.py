"""Monomials in the distance variables and their orbits under a group.

Monomials of each degree are exponent vectors, stored sorted by an additive
integer key (``key(a*b) = key(a) + key(b)``) so that products are looked up
with one ``searchsorted``.  Orbits are the connected components of the graph
whose edges join each monomial to its images under the *generators* of the
group, so the cost never depends on the group order.
"""
from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components

from .groups import PermutationGroup

__all__ = ["MonomialOrbits"]

_HASH_SEED = 20251124


def _key_weights(n_variables: int, max_degree: int) -> tuple[np.ndarray, bool]:
    """Additive key weights: exact mixed radix when it fits in 64 bits, else a hash."""
    base = max_degree + 1
    if base**n_variables < 2**63:
        return np.array([base**v for v in range(n_variables)], dtype=np.uint64), True
    rng = np.random.default_rng(_HASH_SEED)
    w = rng.integers(1, 2**63, size=n_variables, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    return w, False


class MonomialOrbits:
    """All monomials up to a degree, grouped into orbits under a group.

    Parameters
    ----------
    group : PermutationGroup
    max_degree : int

    Attributes
    ----------
    exps : list of ndarray of shape (n_monomials_k, n_variables), uint8
        Exponent vectors of degree ``k``, sorted by key.
    keys : list of ndarray of shape (n_monomials_k,), uint64
    orbit_of : list of ndarray of shape (n_monomials_k,)
        Orbit index of each monomial within its degree.
    reps : list of ndarray of shape (n_orbits_k, n_variables)
        Representative (lexicographically largest exponent vector) of each orbit;
        orbits are numbered by descending representative.
    sizes : list of ndarray of shape (n_orbits_k,)
    """

    def __init__(self, group: PermutationGroup, max_degree: int):
        if max_degree < 0:
            raise ValueError(f"degree must be >= 0, got {max_degree}")
        self.group = group
        self.max_degree = int(max_degree)
        nv = group.n_variables
        self.n_variables = nv
        self.weights, self.exact_keys = _key_weights(nv, self.max_degree)
        self.exps, self.keys, self.orbit_of, self.reps, self.sizes = [], [], [], [], []
        self._members = []
        var_gens = group.variable_generators
        exps = np.zeros((1, nv), dtype=np.uint8)
        for k in range(self.max_degree + 1):
            if k > 0:
                exps = self._next_degree(exps)
            keys = self._keys_of(exps)
            order = np.argsort(keys, kind="stable")
            exps, keys = exps[order], keys[order]
            if len(keys) > 1 and np.any(keys[1:] == keys[:-1]):
                raise RuntimeError("monomial key collision; report this as a bug")
            self.exps.append(exps)
            self.keys.append(keys)
            self._orbits(k, var_gens)

    # ----------------------------------------------------------- enumeration
    def _keys_of(self, exps: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            return exps.astype(np.uint64) @ self.weights

    def _next_degree(self, exps: np.ndarray) -> np.ndarray:
        nv = self.n_variables
        nz = exps != 0
        last = np.where(nz.any(axis=1), nv - 1 - np.argmax(nz[:, ::-1], axis=1), 0)
        counts = nv - last
        parent = np.repeat(np.arange(len(exps)), counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        var = np.repeat(last, counts) + offsets
        new = exps[parent].copy()
        new[np.arange(len(new)), var] += 1
        return new

    def _orbits(self, k: int, var_gens) -> None:
        exps, keys = self.exps[k], self.keys[k]
        m = len(keys)
        rows, cols = [], []
        for sigma in var_gens:
            # the image monomial has exponent e[k] on variable sigma[k]
            with np.errstate(over="ignore"):
                img_keys = exps.astype(np.uint64) @ self.weights[sigma]
            img = np.searchsorted(keys, img_keys)
            rows.append(np.arange(m))
            cols.append(img)
        if rows:
            r = np.concatenate(rows)
            c = np.concatenate(cols)
            graph = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(m, m))
            n_comp, labels = connected_components(graph, directed=True, connection="weak")
        else:
            n_comp, labels = m, np.arange(m)
        # representative: lexicographically largest exponent vector in the orbit
        lex_rank = np.empty(m, dtype=np.int64)
        lex_rank[np.lexsort(exps.T[::-1])] = np.arange(m)
        best = np.full(n_comp, -1, dtype=np.int64)
        np.maximum.at(best, labels, lex_rank)
        # number orbits by descending representative
        order = np.argsort(-best, kind="stable")
        renumber = np.empty(n_comp, dtype=np.int64)
        renumber[order] = np.arange(n_comp)
        orbit_of = renumber[labels]
        inv_lex = np.empty(m, dtype=np.int64)
        inv_lex[lex_rank] = np.arange(m)
        reps = exps[inv_lex[best[order]]]
        self.orbit_of.append(orbit_of)
        self.reps.append(reps)
        self.sizes.append(np.bincount(orbit_of, minlength=n_comp))
        members = np.argsort(orbit_of, kind="stable")
        ptr = np.concatenate([[0], np.cumsum(self.sizes[k])])
        self._members.append((ptr, members))

    # ----------------------------------------------------------------- access
    def n_orbits(self, k: int) -> int:
        return len(self.sizes[k])

    def members(self, k: int, orbit: int) -> np.ndarray:
        """Indices (into ``exps[k]``) of the monomials of one orbit."""
        ptr, idx = self._members[k]
        return idx[ptr[orbit] : ptr[orbit + 1]]

    def lookup(self, k: int, keys: np.ndarray) -> np.ndarray:
        """Monomial indices of degree ``k`` for keys (-1 where absent)."""
        table = self.keys[k]
        pos = np.searchsorted(table, keys)
        pos = np.minimum(pos, len(table) - 1)
        return np.where(table[pos] == keys, pos, -1)

    def product_rows(self, k_a: int, g_degree: int, g_monomials: np.ndarray, g_coefs=None) -> csr_matrix:
        """Expand ``O_a * g`` for every orbit sum ``O_a`` of degree ``k_a``.

        ``g`` is an invariant of degree ``g_degree`` given by its monomials
        (indices into ``exps[g_degree]``) and coefficients (default 1: an orbit
        sum).  Returns the integer matrix ``C`` with
        ``O_a * g = sum_c C[a, c] O_c`` over orbits of degree ``k_a + g_degree``.
        """
        k = k_a + g_degree
        if k > self.max_degree:
            raise ValueError(f"product degree {k} exceeds max degree {self.max_degree}")
        g_keys = self.keys[g_degree][g_monomials]
        if g_coefs is None:
            g_coefs = np.ones(len(g_monomials), dtype=np.int64)
        a_keys = self.keys[k_a]
        a_orbit = self.orbit_of[k_a]
        n_rows, n_cols = self.n_orbits(k_a), self.n_orbits(k)
        acc = None
        chunk = max(1, 4_000_000 // max(1, len(g_keys)))
        for start in range(0, len(a_keys), chunk):
            sl = slice(start, start + chunk)
            with np.errstate(over="ignore"):
                prod = a_keys[sl, None] + g_keys[None, :]
            idx = self.lookup(k, prod.ravel())
            if np.any(idx < 0):
                raise RuntimeError("product monomial outside the enumerated set")
            cols = self.orbit_of[k][idx]
            rows = np.repeat(a_orbit[sl], len(g_keys))
            vals = np.tile(g_coefs, len(a_keys[sl]))
            part = coo_matrix((vals, (rows, cols)), shape=(n_rows, n_cols)).tocsr()
            acc = part if acc is None else acc + part
        acc.sum_duplicates()
        # every monomial of orbit c carries the same coefficient: divide by |c|
        sizes = self.sizes[k]
        coo = acc.tocoo()
        data = coo.data
        if np.any(data % sizes[coo.col]):
            raise ArithmeticError("product of invariants is not invariant: the group action is inconsistent")
        out = csr_matrix((data // sizes[coo.col], (coo.row, coo.col)), shape=(n_rows, n_cols))
        out.eliminate_zeros()
        return out
