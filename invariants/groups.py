"""Permutation groups of like atoms and their action on interatomic distances.

A group acts on atoms by permutations ``p`` (tuples, ``p[i]`` is the image of
atom ``i``).  It induces a permutation of the ``N(N-1)/2`` distance variables
``r_ij`` (pairs ``i < j`` in lexicographic order), which is what every
invariant basis is built on.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from itertools import product as iproduct

import numpy as np

__all__ = ["PermutationGroup", "distance_pairs", "parse_formula", "permutation_sign"]

#: Enumerating more elements than this is refused (cycle types of symmetric
#: blocks never need enumeration).
MAX_ENUMERATED_ORDER = 2_000_000


def distance_pairs(n_atoms: int) -> tuple[tuple[int, int], ...]:
    """Atom pairs ``(i, j)``, ``i < j``, in the order of the distance variables."""
    return tuple((i, j) for i in range(n_atoms) for j in range(i + 1, n_atoms))


def parse_formula(formula: str) -> list[str]:
    """Expand an MSA-style formula (``"A4B2"``, ``"A2BC"``) into atom labels."""
    parts = re.findall(r"([A-Z][a-z]?)(\d*)", formula)
    if not parts or "".join(a + b for a, b in parts) != formula:
        raise ValueError(f"cannot parse formula {formula!r}; expected e.g. 'A4B2' or 'A2BC'")
    labels: list[str] = []
    for sym, count in parts:
        labels += [sym] * (int(count) if count else 1)
    return labels


def _compose(p, q):
    """Permutation ``p ∘ q`` (apply ``q`` first)."""
    return tuple(p[i] for i in q)


def _cycle_lengths(perm) -> tuple[int, ...]:
    seen = [False] * len(perm)
    lengths = []
    for start in range(len(perm)):
        if seen[start]:
            continue
        n = 0
        i = start
        while not seen[i]:
            seen[i] = True
            i = perm[i]
            n += 1
        lengths.append(n)
    return tuple(sorted(lengths, reverse=True))


def permutation_sign(perm) -> int:
    """+1 for an even permutation (a sequence of the images of 0..n-1), -1 for an odd one.

    >>> permutation_sign((1, 0, 2)), permutation_sign((1, 2, 0))
    (-1, 1)
    """
    return -1 if sum(n - 1 for n in _cycle_lengths(perm)) % 2 else 1


def _partitions(n: int, largest: int | None = None):
    if largest is None:
        largest = n
    if n == 0:
        yield ()
        return
    for k in range(min(n, largest), 0, -1):
        for rest in _partitions(n - k, k):
            yield (k,) + rest


def _centraliser_size(partition) -> int:
    z = 1
    for length, mult in Counter(partition).items():
        z *= length**mult * math.factorial(mult)
    return z


@dataclass(frozen=True)
class PermutationGroup:
    """A group of permutations of like atoms.

    Parameters
    ----------
    labels : tuple of str
        Atom labels (element symbols) in data order.
    generators : tuple of tuple of int
        Generating permutations of the atoms (``p[i]`` is the image of atom ``i``).
    blocks : tuple of tuple of int, optional
        When the group is the direct product of full symmetric groups on
        disjoint blocks of like atoms, the blocks; this lets class sizes and the
        Molien series be computed without enumerating elements.

    Use :meth:`from_symbols` or :meth:`from_formula` to build one.
    """

    labels: tuple[str, ...]
    generators: tuple[tuple[int, ...], ...]
    blocks: tuple[tuple[int, ...], ...] | None = None
    _cache: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    # ------------------------------------------------------------------ build
    @classmethod
    def from_symbols(cls, symbols, *, blocks=None, generators=None) -> "PermutationGroup":
        """Group of like atoms.

        Parameters
        ----------
        symbols : sequence of str or str
            Atom labels in data order (``["O", "H", "H", "H"]`` or ``"O H H H"``).
        blocks : sequence of sequence of int, optional
            Sets of atom indices permutable among themselves (the symmetric
            group on each); default: all atoms with the same label form a block.
        generators : sequence of sequence of int, optional
            Explicit generating permutations instead of blocks.
        """
        if isinstance(symbols, str):
            symbols = symbols.replace(",", " ").split()
        labels = tuple(str(s) for s in symbols)
        n = len(labels)
        if n < 2:
            raise ValueError(f"a molecule needs at least 2 atoms for distance variables, got {n}")
        if blocks is not None and generators is not None:
            raise ValueError("give either blocks or generators, not both")
        if generators is not None:
            gens = []
            for g in generators:
                g = tuple(int(x) for x in g)
                if sorted(g) != list(range(n)):
                    raise ValueError(f"generator {list(g)} is not a permutation of atoms 0..{n - 1}")
                for i, j in enumerate(g):
                    if labels[i] != labels[j]:
                        raise ValueError(
                            f"generator {list(g)} maps atom {i} ({labels[i]}) to atom {j} "
                            f"({labels[j]}): only like atoms may be permuted"
                        )
                if g != tuple(range(n)):
                    gens.append(g)
            return cls(labels, tuple(gens), None)
        if blocks is None:
            by_label: dict[str, list[int]] = {}
            for i, s in enumerate(labels):
                by_label.setdefault(s, []).append(i)
            blocks = [b for b in by_label.values() if len(b) > 1]
        blocks_t = []
        used: set[int] = set()
        for b in blocks:
            b = tuple(sorted(int(i) for i in b))
            if any(i < 0 or i >= n for i in b):
                raise ValueError(f"block {list(b)} has an atom index outside 0..{n - 1}")
            if used & set(b) or len(set(b)) != len(b):
                raise ValueError(f"block {list(b)} overlaps another block or repeats an atom")
            if len({labels[i] for i in b}) > 1:
                raise ValueError(
                    f"block {list(b)} mixes atoms {[labels[i] for i in b]}: only like atoms may be permuted"
                )
            used |= set(b)
            if len(b) > 1:
                blocks_t.append(b)
        gens = []
        for b in blocks_t:
            t = list(range(n))
            t[b[0]], t[b[1]] = b[1], b[0]
            gens.append(tuple(t))
            if len(b) > 2:
                c = list(range(n))
                for k, i in enumerate(b):
                    c[i] = b[(k + 1) % len(b)]
                gens.append(tuple(c))
        return cls(labels, tuple(gens), tuple(blocks_t))

    @classmethod
    def from_formula(cls, formula: str) -> "PermutationGroup":
        """Group from an MSA-style formula such as ``"A4B2"`` (all like atoms permutable)."""
        return cls.from_symbols(parse_formula(formula))

    # ------------------------------------------------------------- properties
    @property
    def n_atoms(self) -> int:
        return len(self.labels)

    @property
    def n_variables(self) -> int:
        return self.n_atoms * (self.n_atoms - 1) // 2

    @property
    def pairs(self) -> tuple[tuple[int, int], ...]:
        return distance_pairs(self.n_atoms)

    @cached_property
    def order(self) -> int:
        """Number of group elements."""
        if self.blocks is not None:
            return math.prod(math.factorial(len(b)) for b in self.blocks)
        from sympy.combinatorics import Permutation
        from sympy.combinatorics import PermutationGroup as SymPyGroup

        if not self.generators:
            return 1
        return int(SymPyGroup([Permutation(list(g)) for g in self.generators]).order())

    def __repr__(self) -> str:
        desc = f"blocks={[list(b) for b in self.blocks]}" if self.blocks is not None else (
            f"generators={[list(g) for g in self.generators]}")
        return f"PermutationGroup({' '.join(self.labels)!r}, {desc}, order={self.order})"

    # --------------------------------------------------------------- elements
    def elements(self):
        """Iterate over all group elements (atom permutations), identity first."""
        if self.order > MAX_ENUMERATED_ORDER:
            raise ValueError(f"group of order {self.order} is too large to enumerate")
        n = self.n_atoms
        identity = tuple(range(n))
        if self.blocks is not None:
            from itertools import permutations

            for choice in iproduct(*(permutations(b) for b in self.blocks)):
                p = list(identity)
                for b, img in zip(self.blocks, choice):
                    for i, j in zip(b, img):
                        p[i] = j
                yield tuple(p)
            return
        seen = {identity}
        frontier = [identity]
        yield identity
        while frontier:
            new = []
            for p in frontier:
                for g in self.generators:
                    q = _compose(g, p)
                    if q not in seen:
                        seen.add(q)
                        new.append(q)
                        yield q
            frontier = new

    def contains(self, perm) -> bool:
        """Whether an atom permutation belongs to the group."""
        perm = tuple(int(i) for i in perm)
        if self.blocks is not None:
            if sorted(perm) != list(range(self.n_atoms)):
                return False
            block_of = {i: k for k, b in enumerate(self.blocks) for i in b}
            return all(i == j or (i in block_of and block_of.get(j) == block_of[i])
                       for i, j in enumerate(perm))
        return perm in set(self.elements())

    def variable_permutation(self, perm) -> np.ndarray:
        """Permutation of the distance variables induced by an atom permutation.

        Returns ``v`` with ``v[k]`` the index of the image of pair ``k``.
        """
        index = {p: k for k, p in enumerate(self.pairs)}
        out = np.empty(self.n_variables, dtype=np.int64)
        for k, (i, j) in enumerate(self.pairs):
            a, b = perm[i], perm[j]
            out[k] = index[(a, b) if a < b else (b, a)]
        return out

    @cached_property
    def variable_generators(self) -> tuple[np.ndarray, ...]:
        """Generators of the induced action on the distance variables."""
        return tuple(self.variable_permutation(g) for g in self.generators)

    # ------------------------------------------------------------ cycle types
    def cycle_type_classes(self, on: str = "variables") -> list[tuple[tuple[int, ...], int]]:
        """Cycle types of the group elements with their multiplicities.

        Parameters
        ----------
        on : {"variables", "atoms"}
            Whether cycle types refer to the action on distance variables or on atoms.

        Returns
        -------
        list of (cycle lengths, count)
            Counts add up to :attr:`order`.
        """
        key = ("classes", on)
        if key in self._cache:
            return self._cache[key]
        if on not in ("variables", "atoms"):
            raise ValueError("on must be 'variables' or 'atoms'")
        counts: Counter = Counter()
        if self.blocks is not None:
            n = self.n_atoms
            per_block = [
                [(lam, math.factorial(len(b)) // _centraliser_size(lam)) for lam in _partitions(len(b))]
                for b in self.blocks
            ]
            for combo in iproduct(*per_block):
                p = list(range(n))
                size = 1
                for b, (lam, c) in zip(self.blocks, combo):
                    size *= c
                    pos = 0
                    for length in lam:
                        cyc = b[pos : pos + length]
                        for k, i in enumerate(cyc):
                            p[i] = cyc[(k + 1) % length]
                        pos += length
                target = p if on == "atoms" else self.variable_permutation(p)
                counts[_cycle_lengths(target)] += size
        else:
            for p in self.elements():
                target = p if on == "atoms" else self.variable_permutation(p)
                counts[_cycle_lengths(target)] += 1
        out = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        assert sum(c for _, c in out) == self.order
        self._cache[key] = out
        return out

    # ---------------------------------------------------------------- serial
    def to_dict(self) -> dict:
        d = {"labels": list(self.labels), "generators": [list(g) for g in self.generators]}
        if self.blocks is not None:
            d["blocks"] = [list(b) for b in self.blocks]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PermutationGroup":
        try:
            labels = d["labels"]
            if d.get("blocks") is not None:
                return cls.from_symbols(labels, blocks=d["blocks"])
            return cls.from_symbols(labels, generators=d["generators"])
        except KeyError as exc:
            raise ValueError(f"group description lacks field {exc}") from None
