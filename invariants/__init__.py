"""Symbolic engine for permutation-invariant bases of interatomic distances.

Pipeline: :mod:`groups` (like-atom permutation groups) → :mod:`molien`
(counts) → :mod:`monomials` (orbits) → :mod:`basis` (PIPs, fundamental and
relative invariants) → :mod:`program` / :mod:`evaluate` (table-driven
compiled evaluation with analytic gradients) → :mod:`codegen` (C/Fortran).
This package knows nothing about energies or fitting.
"""
from .basis import Basis, fundamental_basis, pip_basis, relative_basis
from .groups import PermutationGroup
from .molien import molien_series
from .relative import Character
from .transforms import DistanceTransform, pair_distances

__all__ = [
    "Basis",
    "Character",
    "DistanceTransform",
    "PermutationGroup",
    "fundamental_basis",
    "molien_series",
    "pair_distances",
    "pip_basis",
    "relative_basis",
]
