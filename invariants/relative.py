"""Relative invariants for a one-dimensional character of the group.

For a character ``chi: G -> {+1, -1}`` the Reynolds projection of a monomial
``m`` is ``sum_g chi(g) (g . m)``.  Up to a positive factor it equals the
*signed orbit sum* ``sum_{m' in orbit(m)} chi(g_m') m'`` where ``g_m'`` is any
element taking ``m`` to ``m'``; it vanishes exactly when some element of the
stabiliser of ``m`` has ``chi = -1``.  Signs are propagated along the orbit
graph of the generators, so no group element is ever enumerated.
"""
from __future__ import annotations

import numpy as np

from .groups import PermutationGroup, permutation_sign
from .monomials import MonomialOrbits

__all__ = ["Character", "signed_orbits"]


class Character:
    """A one-dimensional character of a permutation group (values +-1).

    Parameters
    ----------
    group : PermutationGroup
    values : "sign", "trivial", callable or sequence of int
        ``"sign"``: parity of the atom permutation; a callable maps an atom
        permutation (tuple) to +-1; a sequence gives the value on each
        generator of ``group``.

    The values on generators must define a homomorphism; this is checked on
    the group's elements for groups small enough to enumerate.
    """

    def __init__(self, group: PermutationGroup, values="sign"):
        self.group = group
        if isinstance(values, str):
            if values not in ("sign", "trivial"):
                raise ValueError(f"unknown character {values!r}; use 'sign', 'trivial', a callable or a list")
            self.name = values
            fn = permutation_sign if values == "sign" else (lambda p: 1)
            self.generator_values = tuple(fn(g) for g in group.generators)
            self._fn = fn
        elif callable(values):
            self.name = "custom"
            self.generator_values = tuple(int(values(g)) for g in group.generators)
            self._fn = values
        else:
            vals = tuple(int(v) for v in values)
            if len(vals) != len(group.generators):
                raise ValueError(f"character needs one value per generator ({len(group.generators)}), got {len(vals)}")
            self.name = "custom"
            self.generator_values = vals
            self._fn = None
        if any(v not in (1, -1) for v in self.generator_values):
            raise ValueError(f"character values must be +1 or -1, got {self.generator_values}")
        self._table = None

    def table(self) -> dict:
        """Value on every element (enumerates the group; checks consistency)."""
        if self._table is None:
            table = {tuple(range(self.group.n_atoms)): 1}
            frontier = list(table)
            while frontier:
                nxt = []
                for p in frontier:
                    for g, val in zip(self.group.generators, self.generator_values):
                        q = tuple(g[i] for i in p)
                        v = val * table[p]
                        if q in table:
                            if table[q] != v:
                                raise ValueError("the character values are not a homomorphism of the group")
                        else:
                            table[q] = v
                            nxt.append(q)
                frontier = nxt
            if self._fn is not None:
                for p, v in table.items():
                    if int(self._fn(p)) != v:
                        raise ValueError("the character function is not a homomorphism of the group")
            self._table = table
        return self._table

    def __call__(self, perm) -> int:
        return self.table()[tuple(perm)]

    def to_dict(self) -> dict:
        return {"name": self.name, "generator_values": list(self.generator_values)}


def signed_orbits(orbits: MonomialOrbits, k: int, character: Character):
    """Signs of each degree-``k`` monomial in its orbit's relative invariant.

    Returns
    -------
    signs : ndarray of shape (n_monomials_k,), int8
        +-1 relative to the orbit representative.
    alive : ndarray of shape (n_orbits_k,), bool
        False where the relative invariant vanishes identically.
    """
    exps, keys = orbits.exps[k], orbits.keys[k]
    m = len(keys)
    images = []
    for sigma in orbits.group.variable_generators:
        with np.errstate(over="ignore"):
            img_keys = exps.astype(np.uint64) @ orbits.weights[sigma]
        images.append(np.searchsorted(keys, img_keys))
    signs = np.zeros(m, dtype=np.int8)
    # representatives: the lexicographically largest member of each orbit
    rep_keys = orbits._keys_of(orbits.reps[k])
    signs[np.searchsorted(keys, rep_keys)] = 1
    alive = np.ones(orbits.n_orbits(k), dtype=bool)
    changed = True
    while changed:
        changed = False
        for img, val in zip(images, character.generator_values):
            known = signs != 0
            src = np.flatnonzero(known)
            dst = img[src]
            new = (signs[src] * val).astype(np.int8)
            conflict = (signs[dst] != 0) & (signs[dst] != new)
            if conflict.any():
                alive[orbits.orbit_of[k][dst[conflict]]] = False
            fresh = signs[dst] == 0
            if fresh.any():
                signs[dst[fresh]] = new[fresh]
                changed = True
    return signs, alive
