"""Straight-line programs that evaluate a basis from a table.

A :class:`Program` is a table of nodes evaluated in order.  Nodes
``0..n_variables-1`` are the (transformed) distance variables; every later
node ``i`` is

    v[i] = const[i] + scale[i] * v[a[i]] * v[b[i]] + sum_l coef[l] * v[idx[l]]

(the product is skipped when ``a[i] < 0``; terms ``l`` run over
``ptr[i]:ptr[i+1]``).  Monomials are one product each (parent monomial times
a variable); an orbit sum ``O`` of degree ``k`` is, whenever possible, taken
from a product of two earlier polynomials, ``A * B = n_O O + sum_C n_C C``, so
that the cost grows with the number of polynomials, not with monomials times
terms (the scheme of MSA's generated code).  One compiled kernel walks any
table forward (values) and backward (adjoint gradients), so no per-basis code
is ever compiled.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from .monomials import MonomialOrbits

__all__ = ["Program", "ProgramBuilder"]


@dataclass(frozen=True)
class Program:
    """A table-driven evaluation program (see module docstring).

    Attributes
    ----------
    n_variables : int
    n_monomial_end : int
        Nodes ``n_variables..n_monomial_end-1`` are plain products of two
        earlier such nodes or variables (monomials); kernels walk them in a
        tight loop.
    a, b : ndarray of shape (n_nodes,), int64
        Product operands (``-1`` where the node has no product).
    scale, const : ndarray of shape (n_nodes,), float64
    ptr : ndarray of shape (n_nodes + 1,), int64
    idx : ndarray of shape (n_terms,), int64
    coef : ndarray of shape (n_terms,), float64
    outputs : ndarray of shape (n_outputs,), int64
        Nodes that are the basis functions, in basis order.
    """

    n_variables: int
    n_monomial_end: int
    a: np.ndarray
    b: np.ndarray
    scale: np.ndarray
    const: np.ndarray
    ptr: np.ndarray
    idx: np.ndarray
    coef: np.ndarray
    outputs: np.ndarray

    @property
    def n_nodes(self) -> int:
        return len(self.a)

    @property
    def n_outputs(self) -> int:
        return len(self.outputs)

    @property
    def n_operations(self) -> int:
        """Multiply-adds per evaluation (products plus linear terms)."""
        return int(np.count_nonzero(self.a >= 0) + len(self.idx))

    @classmethod
    def identity(cls, n_variables: int) -> "Program":
        """The program whose outputs are the variables themselves (no nodes)."""
        nv = int(n_variables)
        if nv < 1:
            raise ValueError(f"n_variables must be >= 1, got {n_variables}")
        return cls(nv, nv, np.full(nv, -1, dtype=np.int64), np.full(nv, -1, dtype=np.int64), np.zeros(nv),
                   np.zeros(nv), np.zeros(nv + 1, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0),
                   np.arange(nv, dtype=np.int64))

    def to_dict(self) -> dict:
        return {
            "n_variables": int(self.n_variables),
            "n_monomial_end": int(self.n_monomial_end),
            "a": self.a.tolist(),
            "b": self.b.tolist(),
            "scale": self.scale.tolist(),
            "const": self.const.tolist(),
            "ptr": self.ptr.tolist(),
            "idx": self.idx.tolist(),
            "coef": self.coef.tolist(),
            "outputs": self.outputs.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Program":
        try:
            p = cls(
                int(d["n_variables"]),
                int(d["n_monomial_end"]),
                np.asarray(d["a"], dtype=np.int64),
                np.asarray(d["b"], dtype=np.int64),
                np.asarray(d["scale"], dtype=np.float64),
                np.asarray(d["const"], dtype=np.float64),
                np.asarray(d["ptr"], dtype=np.int64),
                np.asarray(d["idx"], dtype=np.int64),
                np.asarray(d["coef"], dtype=np.float64),
                np.asarray(d["outputs"], dtype=np.int64),
            )
        except KeyError as exc:
            raise ValueError(f"program table lacks field {exc}") from None
        p.validate()
        return p

    def validate(self) -> None:
        """Check that the table is well formed (every operand precedes its node)."""
        n = self.n_nodes
        node = np.arange(n)
        nv = self.n_variables
        if not (len(self.b) == len(self.scale) == len(self.const) == n and len(self.ptr) == n + 1):
            raise ValueError("program arrays have inconsistent lengths")
        if len(self.idx) != len(self.coef) or self.ptr[-1] != len(self.idx) or np.any(np.diff(self.ptr) < 0):
            raise ValueError("program term pointers are inconsistent")
        has = self.a >= 0
        if np.any(has[:nv]) or np.any((self.a >= node) | (has & ((self.b < 0) | (self.b >= node)))):
            raise ValueError("program product operands must refer to earlier nodes")
        owner = np.repeat(node, np.diff(self.ptr))
        if np.any((self.idx < 0) | (self.idx >= owner)):
            raise ValueError("program terms must refer to earlier nodes")
        mono = slice(nv, self.n_monomial_end)
        if not nv <= self.n_monomial_end <= n or np.any(self.a[mono] < 0) or np.any(
                np.maximum(self.a[mono], self.b[mono]) >= self.n_monomial_end) or np.any(
                np.diff(self.ptr)[mono] != 0) or np.any(self.scale[mono] != 1.0) or np.any(self.const[mono] != 0.0):
            raise ValueError("program monomial segment is malformed")
        if np.any((self.outputs < 0) | (self.outputs >= n)):
            raise ValueError("program outputs refer to missing nodes")
        for arr in (self.scale, self.const, self.coef):
            if not np.all(np.isfinite(arr)):
                raise ValueError("program coefficients must be finite")


class ProgramBuilder:
    """Accumulates nodes; knows how to make monomials and orbit sums."""

    def __init__(self, orbits: MonomialOrbits):
        self.orbits = orbits
        nv = orbits.n_variables
        self.nv = nv
        self.a = [-1] * nv
        self.b = [-1] * nv
        self.scale = [0.0] * nv
        self.const = [0.0] * nv
        self.terms: list[list[tuple[int, float]]] = [[] for _ in range(nv)]
        self._monomial_node: dict[tuple[int, int], int] = {}
        self.orbit_node: dict[tuple[int, int], int] = {}
        self._one = None

    # ------------------------------------------------------------ primitives
    def _add(self, a=-1, b=-1, scale=0.0, const=0.0, terms=()) -> int:
        self.a.append(a)
        self.b.append(b)
        self.scale.append(scale)
        self.const.append(const)
        self.terms.append(list(terms))
        return len(self.a) - 1

    def one(self) -> int:
        if self._one is None:
            self._one = self._add(const=1.0)
        return self._one

    def monomial(self, k: int, m: int) -> int:
        """Node of monomial ``m`` of degree ``k``.

        Monomials of degree >= 2 are placeholders until :meth:`build`, which
        chooses their factors so that parents are shared as much as possible.
        """
        if k == 0:
            return self.one()
        e = tuple(int(v) for v in self.orbits.exps[k][m])
        if k == 1:
            return e.index(1)
        node = self._monomial_node.get(e)
        if node is None:
            node = self._add(scale=1.0)
            self._monomial_node[e] = node
        return node

    def _resolve_monomials(self) -> None:
        """Give every monomial placeholder a parent monomial times one variable.

        Top-down by degree: a monomial uses a divisor that is needed anyway
        when one exists; otherwise divisors covering the most unresolved
        monomials are added (greedy), so few extra monomials are created.
        """
        by_degree: dict[int, set] = {}
        for e in self._monomial_node:
            by_degree.setdefault(sum(e), set()).add(e)
        if not by_degree:
            return
        for k in range(max(by_degree), 1, -1):
            level = sorted(by_degree.get(k, ()))
            lower = by_degree.setdefault(k - 1, set())
            unresolved = []
            choice = {}
            for e in level:
                divs = [(e[:v] + (e[v] - 1,) + e[v + 1:], v) for v in range(len(e)) if e[v]]
                hit = [dv for dv in divs if k - 1 == 1 or dv[0] in lower]
                if hit:
                    choice[e] = min(hit)
                else:
                    unresolved.append((e, divs))
            while unresolved:
                count: dict = {}
                for _, divs in unresolved:
                    for d, _v in divs:
                        count[d] = count.get(d, 0) + 1
                best = min(count, key=lambda d: (-count[d], d))
                lower.add(best)
                rest = []
                for e, divs in unresolved:
                    match = [dv for dv in divs if dv[0] == best]
                    if match:
                        choice[e] = match[0]
                    else:
                        rest.append((e, divs))
                unresolved = rest
            for e in level:
                d, v = choice[e]
                node = self._monomial_node[e]
                if k - 1 == 1:
                    self.a[node] = d.index(1)
                else:
                    if d not in self._monomial_node:
                        self._monomial_node[d] = self._add(scale=1.0)
                    self.a[node] = self._monomial_node[d]
                self.b[node] = v

    def orbit_direct(self, k: int, o: int, signs=None) -> int:
        """Node of an orbit sum computed from its monomials."""
        if k == 0:
            node = self.one()
        else:
            members = self.orbits.members(k, o)
            coefs = np.ones(len(members)) if signs is None else signs
            node = self._add(terms=[(self.monomial(k, int(m)), float(c)) for m, c in zip(members, coefs)])
        self.orbit_node[(k, o)] = node
        return node

    def build(self, outputs) -> Program:
        """Freeze the table: variables, then all monomials (by degree), then the rest."""
        self._resolve_monomials()
        nv = self.nv
        n = len(self.a)
        is_mono = np.zeros(n, dtype=bool)
        is_mono[list(self._monomial_node.values())] = True
        mono_degree = {node: sum(e) for e, node in self._monomial_node.items()}
        monos = sorted(np.flatnonzero(is_mono).tolist(), key=lambda i: (mono_degree[i], i))
        order = np.concatenate([np.arange(nv), np.asarray(monos, dtype=np.int64),
                                nv + np.flatnonzero(~is_mono[nv:])]).astype(np.int64)
        new_of = np.empty(n, dtype=np.int64)
        new_of[order] = np.arange(n)
        remap = lambda i: int(new_of[i]) if i >= 0 else -1  # noqa: E731
        terms = [[(remap(i), c) for i, c in self.terms[o]] for o in order]
        ptr = np.zeros(n + 1, dtype=np.int64)
        ptr[1:] = np.cumsum([len(t) for t in terms])
        prog = Program(
            nv,
            nv + int(is_mono.sum()),
            np.asarray([remap(self.a[o]) for o in order], dtype=np.int64),
            np.asarray([remap(self.b[o]) for o in order], dtype=np.int64),
            np.asarray([self.scale[o] for o in order], dtype=np.float64),
            np.asarray([self.const[o] for o in order], dtype=np.float64),
            ptr,
            np.array([i for t in terms for i, _ in t], dtype=np.int64),
            np.array([c for t in terms for _, c in t], dtype=np.float64),
            new_of[np.asarray(outputs, dtype=np.int64)],
        )
        prog.validate()
        return prog

    # --------------------------------------------------------- orbit sums
    def orbit_sums(self, targets: dict[int, np.ndarray]) -> None:
        """Create nodes for the orbit sums ``targets[k]`` (orbit indices per degree).

        Degrees are processed in increasing order.  At degree ``k`` the
        candidate products are ``A * B`` with ``B`` a degree-1 target orbit
        sum and ``A`` a degree ``k-1`` target; an orbit is taken from a
        product when all other orbits in that product's expansion are done
        already (peeling), otherwise from its monomials.
        """
        for k in sorted(targets):
            wanted = np.asarray(sorted(set(int(o) for o in targets[k])), dtype=np.int64)
            if k <= 1:
                for o in wanted:
                    self.orbit_direct(k, int(o))
                continue
            self._peel_degree(k, wanted)

    def _peel_degree(self, k: int, wanted: np.ndarray) -> None:
        orbits = self.orbits
        wanted_set = set(wanted.tolist())
        rows = []  # (node_a, node_b, dict orbit->coef)
        done = {}
        for kk, o in self.orbit_node:
            done.setdefault(kk, []).append(o)
        for j in range(1, k // 2 + 1):
            a_orbits = sorted(done.get(k - j, []))
            if not a_orbits or not done.get(j):
                continue
            a_arr = np.asarray(a_orbits)
            for ob in sorted(done[j]):
                mat = orbits.product_rows(k - j, j, orbits.members(j, ob))[a_arr]
                for r, oa in enumerate(a_orbits):
                    if j == k - j and oa < ob:
                        continue
                    lo, hi = mat.indptr[r], mat.indptr[r + 1]
                    cols = mat.indices[lo:hi]
                    if not set(cols.tolist()) <= wanted_set:
                        continue
                    rows.append((self.orbit_node[(k - j, oa)], self.orbit_node[(j, ob)],
                                 dict(zip(cols.tolist(), mat.data[lo:hi].tolist()))))
        unsolved = {o: 0 for o in wanted.tolist()}
        rows_of: dict[int, list[int]] = {o: [] for o in unsolved}
        count = []
        for r, (_, _, expansion) in enumerate(rows):
            count.append(len(expansion))
            for o in expansion:
                rows_of[o].append(r)
        heap = [(len(rows[r][2]), r) for r in range(len(rows)) if count[r] == 1]
        heapq.heapify(heap)
        sizes = orbits.sizes[k]

        def mark(o):
            del unsolved[o]
            for r in rows_of[o]:
                count[r] -= 1
                if count[r] == 1:
                    heapq.heappush(heap, (len(rows[r][2]), r))

        while unsolved:
            while heap:
                _, r = heapq.heappop(heap)
                if count[r] != 1:
                    continue
                node_a, node_b, expansion = rows[r]
                target = next(o for o in expansion if o in unsolved)
                n_t = expansion[target]
                terms = [(self.orbit_node[(k, o)], -c / n_t) for o, c in expansion.items() if o != target]
                self.orbit_node[(k, target)] = self._add(a=node_a, b=node_b, scale=1.0 / n_t, terms=terms)
                mark(target)
            if unsolved:
                # stuck: compute the cheapest orbit that unblocks most products directly
                best = min(unsolved, key=lambda o: (-sum(1 for r in rows_of[o] if count[r] == 2), sizes[o], o))
                self.orbit_direct(k, best)
                mark(best)
