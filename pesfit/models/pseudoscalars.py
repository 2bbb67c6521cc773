"""Permutation–inversion symmetry of electronic states: 1-D irreps and pseudoscalars.

The complete nuclear permutation–inversion (CNPI) group of a molecule is
``G x {E, E*}``: permutations ``G`` of like atoms times the inversion ``E*``
of all coordinates through the centre of mass.  Its one-dimensional
irreducible representations are products of a character of ``G`` (here the
trivial one or the parity of the atom permutation) and the parity under
``E*``.  They are named after D3h(M), the CNPI group of NH3:

=========  ===================  ==========  =============================
name       permutation part     under E*    also accepted
=========  ===================  ==========  =============================
``A1'``    trivial              even        ``A1``, ``A1p``
``A2'``    sign (parity)        even        ``A2p``
``A1''``   trivial              odd         ``A1pp``
``A2''``   sign (parity)        odd         ``A2``, ``A2pp``
=========  ===================  ==========  =============================

The short names drop the primes as in the usual NH3 shorthand (ground state
``X A1``, first excited state ``A A2``, i.e. ``A1'`` and ``A2''`` in
D3h(M)), so ``A2`` is the pseudoscalar irrep ``A2''``; write ``A2'`` for the
permutation-odd, inversion-even one.  For groups of several blocks of like
atoms "sign" is the parity of the whole atom permutation.

A function odd under ``E*`` changes sign under the inversion of all
coordinates, so it cannot be a function of distances alone: it vanishes at
planar geometries.  Such functions are built from *pseudoscalars*, signed
volumes of three bond vectors,

    V_abcd(R) = (R_b - R_a) . ((R_c - R_a) x (R_d - R_a))   [Å^3],

which are odd under ``E*`` and alternating in the four atoms.  A
:class:`Pseudoscalar` is the signed sum over one orbit of atom quadruples,
``Psi = sum_q s_q f(V_q)`` with the damping ``f(V) = tanh(V / v0)`` (or
``f(V) = V``), and is a relative invariant of ``G`` with the trivial or the
sign character.  For NH3 (atoms N H H H) the only one is
``Psi = tanh(V_0123 / v0)``, of symmetry ``A2''``.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from invariants import Character, PermutationGroup
from invariants.groups import permutation_sign

__all__ = ["Irrep", "IRREP_NAMES", "Pseudoscalar", "find_pseudoscalars", "parse_irreps", "signed_volume"]

#: canonical irrep names, in the order (permutation character, parity under E*)
IRREP_NAMES = ("A1'", "A2'", "A1''", "A2''")
_ALIASES = {
    "A1'": ("trivial", 1), "A1": ("trivial", 1), "A1P": ("trivial", 1),
    "A2'": ("sign", 1), "A2P": ("sign", 1),
    "A1''": ("trivial", -1), "A1PP": ("trivial", -1),
    "A2''": ("sign", -1), "A2": ("sign", -1), "A2PP": ("sign", -1),
}
DAMPINGS = ("tanh", "none")


@dataclass(frozen=True)
class Irrep:
    """A one-dimensional irrep of ``G x {E, E*}``.

    Parameters
    ----------
    permutation : {"trivial", "sign"}
        Character of the atom permutations.
    inversion : {1, -1}
        Character of ``E*``.

    Examples
    --------
    >>> Irrep.parse("A2")
    Irrep("A2''")
    >>> Irrep.parse("A1'") * Irrep.parse("A2''") == Irrep.parse("A2''")
    True
    >>> str(Irrep.parse("A2p") * Irrep.parse("A2pp"))
    "A1''"
    """

    permutation: str = "trivial"
    inversion: int = 1

    def __post_init__(self):
        if self.permutation not in ("trivial", "sign"):
            raise ValueError(f"permutation character must be 'trivial' or 'sign', got {self.permutation!r}")
        if self.inversion not in (1, -1):
            raise ValueError(f"inversion character must be +1 or -1, got {self.inversion!r}")

    @classmethod
    def parse(cls, name) -> "Irrep":
        if isinstance(name, Irrep):
            return name
        key = str(name).strip().upper().replace('"', "''").replace("’", "'")
        if key not in _ALIASES:
            raise ValueError(
                f"unknown irrep {name!r}: the one-dimensional irreps of (permutations of like atoms) x {{E, E*}} "
                f"are {', '.join(IRREP_NAMES)} (short names A1 = A1', A2 = A2''; ASCII A1p, A2p, A1pp, A2pp); "
                "degenerate (E) irreps are not supported")
        return cls(*_ALIASES[key])

    @property
    def name(self) -> str:
        return ("A1" if self.permutation == "trivial" else "A2") + ("'" if self.inversion == 1 else "''")

    @property
    def odd(self) -> bool:
        """Whether functions of this symmetry change sign under ``E*`` (and vanish at planar geometries)."""
        return self.inversion == -1

    def __mul__(self, other: "Irrep") -> "Irrep":
        other = Irrep.parse(other)
        perm = "trivial" if self.permutation == other.permutation else "sign"
        return Irrep(perm, self.inversion * other.inversion)

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f'Irrep("{self.name}")'


def parse_irreps(spec, n_states: int, group: PermutationGroup | None = None) -> tuple[Irrep, ...]:
    """One irrep per state from ``"A1,A2"``, a sequence of names, or None (all ``A1'``).

    With ``group``, irreps that do not exist for it are refused: ``A2'``/``A2''``
    need an odd permutation of like atoms, ``A1''``/``A2''`` at least four atoms
    (three atoms are always coplanar, so an E*-odd function vanishes).
    """
    if spec is None:
        out = (Irrep(),) * n_states
    else:
        names = spec.replace(";", ",").split(",") if isinstance(spec, str) else list(spec)
        names = [n for n in names if not (isinstance(n, str) and not n.strip())]
        if len(names) != n_states:
            raise ValueError(f"give one irrep per electronic state: {n_states} states but {len(names)} irreps "
                             f"({', '.join(map(str, names))})")
        out = tuple(Irrep.parse(n) for n in names)
    if group is not None:
        has_odd = any(permutation_sign(g) == -1 for g in group.generators)
        for k, irrep in enumerate(out):
            if irrep.permutation == "sign" and not has_odd:
                raise ValueError(f"irrep {irrep} of state {k + 1} does not exist for atoms {' '.join(group.labels)}: "
                                 "the like-atom group has no odd permutation; use A1' or A1''")
            if irrep.odd and group.n_atoms < 4:
                raise ValueError(f"irrep {irrep} of state {k + 1} is odd under inversion E*, but a molecule of "
                                 f"{group.n_atoms} atoms is always planar, so such states cannot couple; "
                                 "use A1' or A2'")
    return out


# ------------------------------------------------------------ pseudoscalars
def signed_volume(R, quadruple, *, gradient: bool = False):
    """``V = (R_b - R_a) . ((R_c - R_a) x (R_d - R_a))`` and ``dV/dR``.

    Parameters
    ----------
    R : ndarray of shape (n, N, 3), Å
    quadruple : (a, b, c, d), atom indices
    gradient : bool

    Returns
    -------
    V : ndarray of shape (n,), Å^3
    dV : ndarray of shape (n, N, 3), Å^2, only with ``gradient=True``
        ``dV/dR_b = e_c x e_d``, ``dV/dR_c = e_d x e_b``, ``dV/dR_d = e_b x e_c``
        with ``e_x = R_x - R_a``, and ``dV/dR_a`` minus their sum.
    """
    a, b, c, d = quadruple
    eb, ec, ed = R[:, b] - R[:, a], R[:, c] - R[:, a], R[:, d] - R[:, a]
    cd = np.cross(ec, ed)
    V = np.einsum("ni,ni->n", eb, cd)
    if not gradient:
        return V
    dV = np.zeros_like(R)
    db, dc, dd = cd, np.cross(ed, eb), np.cross(eb, ec)
    dV[:, b] += db
    dV[:, c] += dc
    dV[:, d] += dd
    dV[:, a] -= db + dc + dd
    return V, dV


def _sorted_sign(items) -> tuple[tuple[int, ...], int]:
    """Sorted tuple and the parity of the sorting permutation."""
    order = sorted(range(len(items)), key=lambda k: items[k])
    return tuple(items[k] for k in order), permutation_sign(order)


@dataclass(frozen=True)
class Pseudoscalar:
    """``Psi(R) = sum_q s_q f(V_q(R))``, an E*-odd relative invariant of the like-atom group.

    Parameters
    ----------
    quadruples : tuple of (a, b, c, d)
        Atom quadruples (ascending) of one orbit of the like-atom group.
    signs : tuple of int
        ``s_q`` (+-1).
    character : {"trivial", "sign"}
        Character of the atom permutations: ``Psi(R[:, g]) = chi(g) Psi(R)``.
    damping : {"tanh", "none"}
        ``f(V) = tanh(V / scale)`` (dimensionless, bounded) or ``f(V) = V`` [Å^3].
    scale : float
        ``v0`` [Å^3] of the tanh damping.
    """

    quadruples: tuple
    signs: tuple
    character: str
    damping: str = "tanh"
    scale: float = 1.0

    def __post_init__(self):
        if self.damping not in DAMPINGS:
            raise ValueError(f"pseudoscalar damping must be one of {DAMPINGS}, got {self.damping!r}")
        if not np.isfinite(self.scale) or self.scale <= 0:
            raise ValueError(f"pseudoscalar scale v0 must be a positive number of Å^3, got {self.scale!r}")
        if len(self.quadruples) != len(self.signs) or not self.quadruples:
            raise ValueError("a pseudoscalar needs one sign per atom quadruple")

    @property
    def irrep(self) -> Irrep:
        return Irrep(self.character, -1)

    def evaluate(self, R, *, gradient: bool = False):
        """Values (n,) and, with ``gradient``, ``dPsi/dR`` (n, N, 3) for coordinates ``R`` (n, N, 3) [Å]."""
        R = np.asarray(R, dtype=np.float64)
        val = np.zeros(R.shape[0])
        grad = np.zeros_like(R) if gradient else None
        for q, s in zip(self.quadruples, self.signs):
            if gradient:
                V, dV = signed_volume(R, q, gradient=True)
            else:
                V = signed_volume(R, q)
            if self.damping == "tanh":
                f = np.tanh(V / self.scale)
                if gradient:
                    grad += (s * (1.0 - f * f) / self.scale)[:, None, None] * dV
            else:
                f = V
                if gradient:
                    grad += s * dV
            val += s * f
        return (val, grad) if gradient else val

    def to_dict(self) -> dict:
        return {"quadruples": [list(q) for q in self.quadruples], "signs": list(self.signs),
                "character": self.character, "damping": self.damping, "scale": float(self.scale)}

    @classmethod
    def from_dict(cls, d: dict) -> "Pseudoscalar":
        try:
            return cls(tuple(tuple(int(i) for i in q) for q in d["quadruples"]), tuple(int(s) for s in d["signs"]),
                       str(d["character"]), str(d["damping"]), float(d["scale"]))
        except KeyError as exc:
            raise ValueError(f"pseudoscalar description lacks field {exc}") from None


def find_pseudoscalars(group: PermutationGroup, *, damping: str = "tanh", scale: float = 1.0) -> list[Pseudoscalar]:
    """All pseudoscalars from orbits of atom quadruples, one per orbit and consistent character.

    For each orbit of 4-atom subsets under the generators of ``group`` and
    each character (trivial, sign), the signs ``s_q`` are propagated along the
    orbit (``s_g(q) = chi(g) * parity(g on q) * s_q``); an orbit whose signs
    conflict gives no pseudoscalar for that character.  Each result is checked
    numerically to transform as its character under every generator.
    Identically vanishing combinations (e.g. the alternating sum over the five
    quadruples of five like atoms) are not detected here; the basis builder
    drops such columns by pivoted QR.
    """
    n = group.n_atoms
    if n < 4:
        return []
    quads = list(combinations(range(n), 4))
    index = {q: k for k, q in enumerate(quads)}
    images = []
    for g in group.generators:
        img = []
        for q in quads:
            mapped, par = _sorted_sign([g[i] for i in q])
            img.append((index[mapped], par))
        images.append(img)
    out = []
    seen = np.zeros(len(quads), dtype=bool)
    sign_char = Character(group, "sign").generator_values
    for start in range(len(quads)):
        if seen[start]:
            continue
        orbit = {start}
        frontier = [start]
        while frontier:
            nxt = []
            for k in frontier:
                for img in images:
                    m = img[k][0]
                    if m not in orbit:
                        orbit.add(m)
                        nxt.append(m)
            frontier = nxt
        seen[list(orbit)] = True
        for name, chi in (("trivial", [1] * len(group.generators)), ("sign", list(sign_char))):
            signs = {start: 1}
            frontier = [start]
            ok = True
            while frontier and ok:
                nxt = []
                for k in frontier:
                    for img, c in zip(images, chi):
                        m, par = img[k]
                        s = c * par * signs[k]
                        if m in signs:
                            if signs[m] != s:
                                ok = False
                                break
                        else:
                            signs[m] = s
                            nxt.append(m)
                    if not ok:
                        break
                frontier = nxt
            if not ok:
                continue
            members = sorted(signs)
            ps = Pseudoscalar(tuple(quads[k] for k in members), tuple(signs[k] for k in members), name, damping,
                              float(scale))
            _check_pseudoscalar(ps, group)
            out.append(ps)
    return out


def _check_pseudoscalar(ps: Pseudoscalar, group: PermutationGroup) -> None:
    R = np.random.default_rng(7).normal(size=(3, group.n_atoms, 3))
    v = ps.evaluate(R)
    chi = [1] * len(group.generators) if ps.character == "trivial" else Character(group, "sign").generator_values
    for g, c in zip(group.generators, chi):
        if not np.allclose(ps.evaluate(R[:, list(g)]), c * v, rtol=1e-10, atol=1e-12):  # pragma: no cover
            raise RuntimeError(f"internal error: pseudoscalar {ps} does not transform as its character")
    if not np.allclose(ps.evaluate(-R), -v, rtol=1e-12, atol=1e-14):  # pragma: no cover
        raise RuntimeError("internal error: pseudoscalar is not odd under inversion")
