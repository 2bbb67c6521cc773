"""Molien series of a permutation action on distance variables.

For a permutation representation, ``det(1 - t P_g) = prod_cycles (1 - t^len)``, so

    M(t) = 1/|G| sum_g prod_{cycles c of g} 1 / (1 - t^{|c|})

is an exact power series with integer coefficients: the number of linearly
independent invariant polynomials of each degree.  Only cycle types are
needed, never the elements themselves for groups built from blocks.
"""
from __future__ import annotations

from .groups import PermutationGroup

__all__ = ["molien_series", "cumulative"]


def _inverse_product_series(cycle_lengths, max_degree: int) -> list[int]:
    """Coefficients of ``prod 1/(1 - t^l)`` up to ``t^max_degree``."""
    coeffs = [1] + [0] * max_degree
    for length in cycle_lengths:
        for d in range(length, max_degree + 1):
            coeffs[d] += coeffs[d - length]
    return coeffs


def molien_series(group: PermutationGroup, max_degree: int) -> list[int]:
    """Number of independent invariants of each degree ``0..max_degree``.

    Parameters
    ----------
    group : PermutationGroup
    max_degree : int

    Returns
    -------
    list of int, length ``max_degree + 1``
    """
    if max_degree < 0:
        raise ValueError(f"max_degree must be >= 0, got {max_degree}")
    total = [0] * (max_degree + 1)
    for lengths, count in group.cycle_type_classes("variables"):
        series = _inverse_product_series(lengths, max_degree)
        for d in range(max_degree + 1):
            total[d] += count * series[d]
    order = group.order
    out = []
    for d, value in enumerate(total):
        if value % order:
            raise ArithmeticError(f"Molien coefficient at degree {d} is not an integer: {value}/{order}")
        out.append(value // order)
    return out


def cumulative(series) -> list[int]:
    """Running totals of a per-degree count list."""
    out, s = [], 0
    for c in series:
        s += c
        out.append(s)
    return out
