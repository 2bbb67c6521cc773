"""Invariant bases: PIPs (orbit sums), fundamental invariants, relative invariants.

A :class:`Basis` is a list of polynomials in the distance variables, each an
orbit sum named by its representative monomial (signed for relative
invariants), together with the :class:`~invariants.program.Program` that
evaluates them.  Build one with :func:`pip_basis`,
:func:`fundamental_basis` or :func:`relative_basis`.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import evaluate as _ev
from .fundamental import find_fundamental_invariants
from .groups import PermutationGroup
from .molien import molien_series
from .monomials import MonomialOrbits
from .program import Program, ProgramBuilder
from .relative import Character, signed_orbits
from .transforms import DistanceTransform

__all__ = ["Basis", "pip_basis", "fundamental_basis", "relative_basis", "orbit_sum_basis", "BASIS_FORMAT_VERSION",
           "DEFAULT_SIZE_LIMIT"]

BASIS_FORMAT_VERSION = 1
#: predicted basis sizes above this are refused unless ``force=True``
DEFAULT_SIZE_LIMIT = 20_000


@dataclass(frozen=True, eq=False)
class Basis:
    """Polynomials in the distance variables and their evaluation program.

    Attributes
    ----------
    kind : {"pip", "fi", "relative"}
    group : PermutationGroup
    max_degree : int
    degrees : ndarray of shape (n_basis,)
        Degree of each polynomial.
    representatives : ndarray of shape (n_basis, n_variables)
        Representative monomial (exponents) of each orbit sum.
    program : Program
    options : dict
        Filters and character used to build the basis.
    molien : list of int
        Molien coefficients (invariants, or relative invariants) per degree.
    certificate : dict
        For fundamental invariants: per-degree ranks proving completeness.
    """

    kind: str
    group: PermutationGroup
    max_degree: int
    degrees: np.ndarray
    representatives: np.ndarray
    program: Program
    options: dict = field(default_factory=dict)
    molien: list = field(default_factory=list)
    certificate: dict = field(default_factory=dict)

    # ------------------------------------------------------------ properties
    @property
    def n_basis(self) -> int:
        return len(self.degrees)

    @property
    def n_variables(self) -> int:
        return self.group.n_variables

    @property
    def per_degree(self) -> list[int]:
        return np.bincount(self.degrees, minlength=self.max_degree + 1).tolist()

    def __repr__(self) -> str:
        return (f"Basis(kind={self.kind!r}, atoms={' '.join(self.group.labels)!r}, "
                f"max_degree={self.max_degree}, n_basis={self.n_basis})")

    # ------------------------------------------------------------ evaluation
    def evaluate(self, X) -> np.ndarray:
        """Values at variables ``X`` of shape (n, n_variables) -> (n, n_basis)."""
        return _ev.evaluate(self.program, X)

    def jacobian(self, X):
        """Values (n, n_basis) and ``dp/dx`` (n, n_basis, n_variables)."""
        return _ev.jacobian(self.program, X)

    def pullback(self, X, W, *, gradient: bool = True):
        """``W . p(x)`` and its gradient in the variables (reverse mode)."""
        return _ev.pullback(self.program, X, W, gradient=gradient)

    def cartesian_values(self, R, transform: DistanceTransform) -> np.ndarray:
        """Values from coordinates ``R`` (n, N, 3) through a distance transform."""
        return _ev.cartesian_values(self.program, transform, R)

    def cartesian_jacobian(self, R, transform: DistanceTransform):
        """Values (n, n_basis) and ``dp/dR`` (n, n_basis, N, 3)."""
        return _ev.cartesian_jacobian(self.program, transform, R)

    def cartesian_pullback(self, R, transform: DistanceTransform, W, *, gradient: bool = True):
        """``W . p`` and its gradient with respect to ``R`` (n, N, 3)."""
        return _ev.cartesian_pullback(self.program, transform, R, W, gradient=gradient)

    # ------------------------------------------------------------- polynomials
    def polynomial_terms(self, i: int):
        """Monomials (exponent rows) and coefficients of polynomial ``i``."""
        rep = self.representatives[i]
        sign_of = {tuple(rep.tolist()): 1}
        frontier = [tuple(rep.tolist())]
        char = self.options.get("character")
        gen_vals = char["generator_values"] if char else [1] * len(self.group.generators)
        var_gens = self.group.variable_generators
        while frontier:
            nxt = []
            for m in frontier:
                for sigma, val in zip(var_gens, gen_vals):
                    img = [0] * len(m)
                    for k, e in enumerate(m):
                        img[sigma[k]] = e
                    img = tuple(img)
                    if img not in sign_of:
                        sign_of[img] = sign_of[m] * val
                        nxt.append(img)
            frontier = nxt
        exps = np.array(sorted(sign_of), dtype=np.int64)
        coefs = np.array([sign_of[tuple(e)] for e in exps.tolist()], dtype=np.float64)
        return exps, coefs

    # --------------------------------------------------------------- persist
    def to_dict(self) -> dict:
        return {
            "format": "invariants.basis",
            "format_version": BASIS_FORMAT_VERSION,
            "kind": self.kind,
            "group": self.group.to_dict(),
            "max_degree": int(self.max_degree),
            "options": self.options,
            "molien": [int(c) for c in self.molien],
            "degrees": self.degrees.tolist(),
            "representatives": self.representatives.tolist(),
            "program": self.program.to_dict(),
            "certificate": self.certificate,
        }

    def to_json(self) -> str:
        """Deterministic JSON text (same input, byte-identical output)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def checksum(self) -> str:
        """SHA-256 of :meth:`to_json` (identifies the basis in model files)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def save(self, path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def from_dict(cls, d: dict) -> "Basis":
        if not isinstance(d, dict) or d.get("format") != "invariants.basis":
            raise ValueError("not an invariants basis file (field 'format' is not 'invariants.basis')")
        version = d.get("format_version")
        if version != BASIS_FORMAT_VERSION:
            raise ValueError(f"basis format_version {version!r} is not supported (this code reads {BASIS_FORMAT_VERSION})")
        missing = [k for k in ("kind", "group", "max_degree", "degrees", "representatives", "program") if k not in d]
        if missing:
            raise ValueError(f"basis file lacks fields {missing}")
        group = PermutationGroup.from_dict(d["group"])
        program = Program.from_dict(d["program"])
        degrees = np.asarray(d["degrees"], dtype=np.int64)
        reps = np.asarray(d["representatives"], dtype=np.int64).reshape(len(degrees), -1)
        if program.n_variables != group.n_variables or reps.shape[1] != group.n_variables:
            raise ValueError("basis program or representatives do not match the group's distance variables")
        if program.n_outputs != len(degrees):
            raise ValueError(f"basis lists {len(degrees)} polynomials but its program has {program.n_outputs} outputs")
        if np.any(reps.sum(axis=1) != degrees) or np.any(reps < 0):
            raise ValueError("basis representatives do not match their degrees")
        if d["kind"] not in ("pip", "fi", "relative"):
            raise ValueError(f"unknown basis kind {d['kind']!r}")
        return cls(d["kind"], group, int(d["max_degree"]), degrees, reps, program, d.get("options", {}),
                   d.get("molien", []), d.get("certificate", {}))

    @classmethod
    def load(cls, path) -> "Basis":
        try:
            d = json.loads(Path(path).read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_dict(d)


# ---------------------------------------------------------------- builders
def _check_degree(degree):
    if not isinstance(degree, (int, np.integer)) or degree < 1:
        raise ValueError(f"degree must be an integer >= 1, got {degree!r}")


def _check_size(predicted: int, limit: int, force: bool, what: str):
    if predicted > limit and not force:
        raise ValueError(
            f"the {what} would have {predicted} polynomials (from the Molien series), above the limit of {limit}; "
            "lower the degree, or pass force=True (--force) if you mean it")


def _variable_set(group, spec) -> set[int]:
    """Variable indices from indices or atom pairs."""
    pairs = {p: k for k, p in enumerate(group.pairs)}
    out = set()
    for item in spec:
        if isinstance(item, (tuple, list)):
            i, j = sorted(int(v) for v in item)
            if (i, j) not in pairs:
                raise ValueError(f"atom pair {item} is not a distance of a {group.n_atoms}-atom molecule")
            out.add(pairs[(i, j)])
        else:
            k = int(item)
            if not 0 <= k < group.n_variables:
                raise ValueError(f"variable index {k} outside 0..{group.n_variables - 1}")
            out.add(k)
    return out


def pip_basis(group: PermutationGroup, degree: int, *, max_exponent: int | None = None, purify=None,
              require=None, size_limit: int = DEFAULT_SIZE_LIMIT, force: bool = False) -> Basis:
    """Permutationally invariant polynomials: orbit sums of all monomials of degree <= ``degree``.

    Parameters
    ----------
    group : PermutationGroup
    degree : int
        Maximum total degree (>= 1).
    max_exponent : int, optional
        Maximum exponent of any single variable.
    purify : sequence of sequences, optional
        Each item is a set of variables (indices or atom pairs); keep only
        polynomials that vanish whenever all variables of any one set are
        zero (every monomial touches every set).
    require : sequence, optional
        Keep only polynomials containing at least one of these variables.
    size_limit, force
        Refuse bases predicted (by the Molien series) to exceed ``size_limit``
        unless ``force``.
    """
    _check_degree(degree)
    molien = molien_series(group, degree)
    _check_size(sum(molien), size_limit, force, "PIP basis")
    orbits = MonomialOrbits(group, degree)
    purify_sets = [_variable_set(group, s) for s in (purify or [])]
    require_set = _variable_set(group, require) if require else None
    targets = {}
    for k in range(degree + 1):
        reps = orbits.reps[k]
        keep = np.ones(orbits.n_orbits(k), dtype=bool)
        if max_exponent is not None:
            keep &= reps.max(axis=1) <= max_exponent if k else True
        if purify_sets or require_set:
            exps = orbits.exps[k]
            orbit_of = orbits.orbit_of[k]
            for s in purify_sets:
                touches = exps[:, sorted(s)].sum(axis=1) > 0
                all_touch = np.ones(orbits.n_orbits(k), dtype=bool)
                np.logical_and.at(all_touch, orbit_of, touches)
                keep &= all_touch
            if require_set:
                touches = exps[:, sorted(require_set)].sum(axis=1) > 0
                any_touch = np.zeros(orbits.n_orbits(k), dtype=bool)
                np.logical_or.at(any_touch, orbit_of, touches)
                keep &= any_touch
        targets[k] = np.flatnonzero(keep)
    options = {"max_exponent": max_exponent, "purify": [sorted(s) for s in purify_sets],
               "require": sorted(require_set) if require_set else None}
    return orbit_sum_basis(group, degree, orbits, targets, options, molien)


def orbit_sum_basis(group: PermutationGroup, degree: int, orbits: MonomialOrbits, targets: dict, options: dict,
                    molien) -> Basis:
    """The PIP basis of the orbit sums ``targets[k]`` (orbit indices of degree ``k``), in degree order."""
    builder = ProgramBuilder(orbits)
    builder.orbit_sums(targets)
    outputs, degrees, reps = [], [], []
    for k in range(degree + 1):
        for o in targets[k]:
            outputs.append(builder.orbit_node[(k, int(o))])
            degrees.append(k)
            reps.append(orbits.reps[k][o])
    return Basis("pip", group, degree, np.asarray(degrees, dtype=np.int64),
                 np.asarray(reps, dtype=np.int64).reshape(len(degrees), group.n_variables),
                 builder.build(outputs), options, molien)


def fundamental_basis(group: PermutationGroup, degree: int, *, progress=None,
                      size_limit: int = 200_000, force: bool = False) -> Basis:
    """Fundamental invariants (a minimal generating set) up to ``degree``.

    The returned basis's ``certificate`` records, per degree, the Molien
    coefficient and the rank of the decomposable invariants over two primes;
    rank + new generators = Molien coefficient proves completeness.
    """
    _check_degree(degree)
    molien = molien_series(group, degree)
    _check_size(molien[-1], size_limit, force, f"degree-{degree} invariant space used to find fundamental invariants")
    orbits = MonomialOrbits(group, degree)
    gens, cert = find_fundamental_invariants(orbits, degree, progress=progress)
    builder = ProgramBuilder(orbits)
    outputs = [builder.orbit_direct(k, o) for k, o in gens]
    degrees = np.asarray([k for k, _ in gens], dtype=np.int64)
    reps = np.asarray([orbits.reps[k][o] for k, o in gens], dtype=np.int64).reshape(len(gens), group.n_variables)
    return Basis("fi", group, degree, degrees, reps, builder.build(outputs), {}, molien, cert)


def relative_basis(group: PermutationGroup, degree: int, character="sign", *,
                   size_limit: int = DEFAULT_SIZE_LIMIT, force: bool = False) -> Basis:
    """Relative invariants ``sum_g chi(g) g.m`` for a character ``chi`` (default: permutation sign).

    Each non-vanishing signed orbit sum of degree <= ``degree`` is one basis
    function; under an atom permutation ``g`` every one changes by ``chi(g)``.
    """
    _check_degree(degree)
    char = character if isinstance(character, Character) else Character(group, character)
    _check_size(sum(molien_series(group, degree)), size_limit, force, "relative-invariant basis")
    orbits = MonomialOrbits(group, degree)
    builder = ProgramBuilder(orbits)
    outputs, degrees, reps = [], [], []
    for k in range(degree + 1):
        signs, alive = signed_orbits(orbits, k, char)
        for o in np.flatnonzero(alive):
            members = orbits.members(k, o)
            outputs.append(builder.orbit_direct(k, int(o), signs=signs[members].astype(float)))
            degrees.append(k)
            reps.append(orbits.reps[k][o])
    options = {"character": char.to_dict()}
    return Basis("relative", group, degree, np.asarray(degrees, dtype=np.int64),
                 np.asarray(reps, dtype=np.int64).reshape(len(degrees), group.n_variables),
                 builder.build(outputs), options, relative_molien(group, degree, char))


def relative_molien(group: PermutationGroup, degree: int, character: Character) -> list[int]:
    """Number of independent relative invariants per degree, ``1/|G| sum chi(g)/det(1 - tP_g)``."""
    from .molien import _inverse_product_series
    from .groups import _cycle_lengths

    total = [0] * (degree + 1)
    for perm, chi in character.table().items():
        series = _inverse_product_series(_cycle_lengths(group.variable_permutation(perm)), degree)
        for d in range(degree + 1):
            total[d] += chi * series[d]
    return [t // group.order for t in total]


def timed(fn, *args, **kwargs):
    """Run ``fn`` and return ``(result, seconds)``."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0
