"""Molecule specification: atoms in order, permutation group, distance transform.

Stored with every model so that a model file says exactly which atom order
and symmetry it assumes.
"""
from __future__ import annotations

from dataclasses import dataclass

from invariants import DistanceTransform, PermutationGroup

from .data import to_atomic_numbers

__all__ = ["Molecule", "check_symbols"]


def check_symbols(symbols, *, allow_labels: bool = False) -> list[str]:
    """Validate element symbols (``ValueError`` naming an unknown one)."""
    symbols = list(symbols)
    if len(symbols) < 2:
        raise ValueError(f"a molecule needs at least 2 atoms, got {len(symbols)}: {symbols}")
    if not allow_labels:
        to_atomic_numbers(symbols)
    return symbols


@dataclass(frozen=True)
class Molecule:
    """Atoms, like-atom group and distance transform of a model.

    Parameters
    ----------
    symbols : tuple of str
        Element symbols in the model's atom order.
    group : PermutationGroup
        Default: all like atoms permutable.
    transform : DistanceTransform
        Applied to distances in Å before the basis.
    """

    symbols: tuple
    group: PermutationGroup
    transform: DistanceTransform

    @classmethod
    def build(cls, symbols, *, transform: DistanceTransform, blocks=None, generators=None) -> "Molecule":
        symbols = tuple(check_symbols(symbols))
        group = PermutationGroup.from_symbols(symbols, blocks=blocks, generators=generators)
        return cls(symbols, group, transform)

    def to_dict(self) -> dict:
        return {"symbols": list(self.symbols), "group": self.group.to_dict(), "transform": self.transform.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "Molecule":
        try:
            symbols = tuple(check_symbols(d["symbols"]))
            group = PermutationGroup.from_dict(d["group"])
            transform = DistanceTransform.from_dict(d["transform"])
        except KeyError as exc:
            raise ValueError(f"molecule description lacks field {exc}") from None
        if tuple(group.labels) != symbols:
            raise ValueError(f"group labels {group.labels} do not match the atoms {symbols}")
        return cls(symbols, group, transform)
