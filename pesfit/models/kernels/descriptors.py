"""Descriptors of a structure for the kernel back ends, and their Jacobians.

A descriptor maps coordinates ``R`` (n, N, 3) [Å] to vectors ``x`` (n, D):

* :class:`DistanceDescriptor` -- ``x_k = c_k / r_k`` over the ``N(N-1)/2``
  atom pairs: ``c_k = 1`` gives the inverse distances of sGDML (``"inverse"``,
  Å⁻¹), ``c_k = r_eq,k`` the relative-to-equilibrium distances of KREG
  (``"reciprocal"``, dimensionless);
* :class:`InvariantDescriptor` -- standardised permutationally invariant
  polynomials (PIPs or fundamental invariants) of Morse variables
  ``exp(-r/a)``, as used by PIP-GPR.

Forces enter the kernel models through the Jacobian ``J = dx/dR``
(D x 3N).  Because ``x`` is invariant under rigid motions, gradients
``dE/dR = J^T dE/dx`` lie in the row space of ``J``, of dimension at most
``3N - 6``; :func:`project_jacobian` returns an orthonormal basis ``Q`` of
it (3N x r) and ``M = J Q`` (D x r), so that a Cartesian gradient ``G``
is observed as the ``r`` numbers ``Q^T G`` without losing anything but its
rigid-motion part (zero for forces of an isolated molecule).

A permutation of like atoms permutes the distance descriptor:
``x(P R) = x(R)[v]`` with ``v`` from :func:`descriptor_permutations`,
provided ``c`` is itself invariant (:func:`symmetrize_reference`), which is
what makes the symmetrised kernels exactly invariant whatever reference
geometry gave ``r_eq``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from invariants import Basis, DistanceTransform, PermutationGroup, pair_distances

__all__ = [
    "DistanceDescriptor",
    "InvariantDescriptor",
    "descriptor_from_dict",
    "descriptor_permutations",
    "detect_permutations",
    "internal_rank",
    "project_jacobian",
    "symmetrize_reference",
]

#: Above this group order the symmetrised kernels refuse to enumerate the
#: group; declare a subgroup (``blocks``/``generators``) instead.
MAX_KERNEL_PERMUTATIONS = 5040


def _pair_geometry(R):
    """Distances (n, D) and unit vectors ``(R_i - R_j)/r`` (n, D, 3) of the pairs ``i < j``."""
    R = np.asarray(R, dtype=np.float64)
    i, j = np.triu_indices(R.shape[1], k=1)
    diff = R[:, i, :] - R[:, j, :]
    r = np.sqrt(np.einsum("nkc,nkc->nk", diff, diff))
    return r, diff / r[..., None], i, j


def _scatter_pairs(dxdr, u, i, j, n_atoms):
    """Jacobian ``dx_k/dR`` (n, D, N, 3) of pair functions from ``dx_k/dr_k``."""
    n, D = dxdr.shape
    J = np.zeros((n, D, n_atoms, 3))
    g = dxdr[..., None] * u
    k = np.arange(D)
    J[:, k, i, :] = g
    J[:, k, j, :] = -g
    return J


@dataclass(frozen=True)
class DistanceDescriptor:
    """``x_k = c_k / r_k`` for the atom pairs ``i < j`` in lexicographic order.

    Parameters
    ----------
    transform : DistanceTransform
        ``DistanceTransform("inverse")`` (``c = 1``, Å⁻¹) or
        ``DistanceTransform("reciprocal", r_eq)`` (``c = r_eq`` [Å]).

    Examples
    --------
    >>> import numpy as np
    >>> d = DistanceDescriptor(DistanceTransform("inverse"))
    >>> d.values(np.array([[[0, 0, 0], [0, 0, 2.0], [0, 1.0, 0]]])).round(3).tolist()
    [[0.5, 1.0, 0.447]]
    """

    transform: DistanceTransform

    def __post_init__(self):
        if self.transform.kind not in ("inverse", "reciprocal"):
            raise ValueError(f"a distance descriptor needs an 'inverse' or 'reciprocal' transform, "
                             f"got {self.transform.kind!r}")

    kind = "distance"

    def n_features(self, n_atoms: int) -> int:
        return n_atoms * (n_atoms - 1) // 2

    def values(self, R) -> np.ndarray:
        """Descriptors (n, D) of coordinates ``R`` (n, N, 3) [Å]."""
        return self.transform(pair_distances(R))

    def values_and_jacobian(self, R):
        """Descriptors (n, D) and ``dx/dR`` (n, D, N, 3).

        ``dx_k/dR_i = -(c_k / r_k^2) (R_i - R_j) / r_k`` for pair ``k = (i, j)``
        and the opposite for atom ``j``.
        """
        R = np.asarray(R, dtype=np.float64)
        r, u, i, j = _pair_geometry(R)
        return self.transform(r), _scatter_pairs(self.transform.derivative(r), u, i, j, R.shape[1])

    def to_dict(self) -> dict:
        return {"kind": self.kind, "transform": self.transform.to_dict()}


@dataclass(frozen=True, eq=False)
class InvariantDescriptor:
    """Standardised invariant polynomials ``x = (p(exp(-r/a)) - shift) / scale``.

    Parameters
    ----------
    basis : invariants.Basis
        PIP or fundamental-invariant basis; its constant term is dropped.
    transform : DistanceTransform
        Usually ``DistanceTransform("morse", a)``.
    shift, scale : tuple of float
        Per-feature centring and scaling (from the training set).
    """

    basis: Basis
    transform: DistanceTransform
    shift: tuple
    scale: tuple

    kind = "invariant"

    def __post_init__(self):
        keep = self._columns()
        if len(self.shift) != len(keep) or len(self.scale) != len(keep):
            raise ValueError(f"invariant descriptor has {len(keep)} features but {len(self.shift)} shifts and "
                             f"{len(self.scale)} scales")
        if not all(s > 0 for s in self.scale):
            raise ValueError("invariant descriptor scales must be positive")

    def _columns(self) -> np.ndarray:
        return np.flatnonzero(np.asarray(self.basis.degrees) > 0)

    def n_features(self, n_atoms: int | None = None) -> int:
        return len(self._columns())

    @classmethod
    def standardized(cls, basis: Basis, transform: DistanceTransform, R) -> "InvariantDescriptor":
        """Descriptor whose features have mean 0 and standard deviation 1 on ``R``."""
        P = basis.cartesian_values(np.asarray(R, dtype=np.float64), transform)
        P = P[:, np.asarray(basis.degrees) > 0]
        std = P.std(axis=0)
        std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(P).max(axis=0)), std, 1.0)
        return cls(basis, transform, tuple(float(v) for v in P.mean(axis=0)), tuple(float(v) for v in std))

    def values(self, R) -> np.ndarray:
        P = self.basis.cartesian_values(np.asarray(R, dtype=np.float64), self.transform)
        return (P[:, self._columns()] - np.asarray(self.shift)) / np.asarray(self.scale)

    def values_and_jacobian(self, R):
        """Features (n, D) and ``dx/dR`` (n, D, N, 3) (the basis's compiled forward mode)."""
        P, dP = self.basis.cartesian_jacobian(np.asarray(R, dtype=np.float64), self.transform)
        cols = self._columns()
        sc = np.asarray(self.scale)
        return (P[:, cols] - np.asarray(self.shift)) / sc, dP[:, cols] / sc[None, :, None, None]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "basis": self.basis.to_dict(), "transform": self.transform.to_dict(),
                "shift": list(self.shift), "scale": list(self.scale)}


def descriptor_from_dict(d: dict):
    """Rebuild a descriptor from :meth:`to_dict` output."""
    try:
        kind = d["kind"]
        if kind == "distance":
            return DistanceDescriptor(DistanceTransform.from_dict(d["transform"]))
        if kind == "invariant":
            return InvariantDescriptor(Basis.from_dict(d["basis"]), DistanceTransform.from_dict(d["transform"]),
                                       tuple(float(v) for v in d["shift"]), tuple(float(v) for v in d["scale"]))
    except KeyError as exc:
        raise ValueError(f"descriptor description lacks field {exc}") from None
    raise ValueError(f"unknown descriptor kind {kind!r}; expected 'distance' or 'invariant'")


# ---------------------------------------------------------------- Jacobians
def internal_rank(n_atoms: int, n_features: int) -> int:
    """Number of independent gradient components kept per structure, ``min(D, 3N - 6)`` (1 for N = 2)."""
    internal = 1 if n_atoms == 2 else 3 * n_atoms - 6
    return max(1, min(n_features, internal))


def project_jacobian(J, rank: int):
    """Row-space basis of descriptor Jacobians.

    Parameters
    ----------
    J : ndarray of shape (n, D, N, 3)
        ``dx/dR``.
    rank : int
        Number of components kept (see :func:`internal_rank`).

    Returns
    -------
    M : ndarray of shape (n, D, rank)
        ``J Q``: the Jacobian in the coordinates ``Q^T dR``.
    Q : ndarray of shape (n, 3N, rank)
        Orthonormal columns spanning the row space of ``J`` (the internal
        motions); a gradient ``G`` is observed as ``Q^T G``.
    """
    n, D = J.shape[:2]
    Jf = J.reshape(n, D, -1)
    _, s, Vt = np.linalg.svd(Jf, full_matrices=False)
    Q = np.ascontiguousarray(np.swapaxes(Vt[:, :rank, :], 1, 2))
    M = np.ascontiguousarray(Jf @ Q)
    return M, Q


# ------------------------------------------------------------- permutations
def descriptor_permutations(group: PermutationGroup, *, limit: int = MAX_KERNEL_PERMUTATIONS) -> np.ndarray:
    """Pair-variable permutations induced by every element of ``group``, identity first.

    Returns an int64 array of shape (|G|, N(N-1)/2); row ``v`` satisfies
    ``x(P R) = x(R)[v]`` for the atom permutation ``P`` (or its inverse,
    which is also in the group) and any equivariant distance descriptor.
    """
    if group.order > limit:
        raise ValueError(f"the permutation group {group!r} has {group.order} elements, more than the {limit} a "
                         "symmetrised kernel sums over; declare a subgroup (blocks= or generators=)")
    return np.array([group.variable_permutation(p) for p in group.elements()], dtype=np.int64)


def symmetrize_reference(r_ref, perms) -> np.ndarray:
    """Average reference distances over each orbit of equivalent pairs.

    ``r_sym[k]`` is the mean of ``r_ref`` over the orbit of pair ``k`` under
    the permutations (computed once per orbit, so that equivalent pairs get
    bit-identical values); it is invariant under the group, so
    ``x = r_sym / r`` is permuted, not distorted, by a permutation of like
    atoms (MLatom's pKREG uses ``r_ref`` as is and is invariant only when
    the reference geometry is fully symmetric).
    """
    r_ref = np.asarray(r_ref, dtype=np.float64)
    perms = np.asarray(perms)
    out = np.empty_like(r_ref)
    done = np.zeros(len(r_ref), dtype=bool)
    for k in range(len(r_ref)):
        if done[k]:
            continue
        orbit = np.unique(perms[:, k])
        out[orbit] = r_ref[orbit].mean()
        done[orbit] = True
    return out


def detect_permutations(R_ref, symbols, *, tol: float = 0.05) -> PermutationGroup:
    """Like-atom permutations that map a reference geometry onto itself.

    An optional detector for when no group is declared: every permutation
    of like atoms whose pair distances differ from those of ``R_ref`` by at
    most ``tol`` [Å] is kept (a backtracking search, atom by atom), and the
    group they generate is returned.  It finds the point-group symmetry of
    the reference only -- the full like-atom group, the default, is usually
    the better choice for reactive surfaces.

    Parameters
    ----------
    R_ref : ndarray of shape (N, 3)
        Reference geometry [Å], e.g. the lowest-energy training structure.
    symbols : sequence of str
    tol : float
        Distance tolerance [Å].
    """
    R_ref = np.asarray(R_ref, dtype=np.float64)
    symbols = list(symbols)
    n = len(symbols)
    if R_ref.shape != (n, 3):
        raise ValueError(f"reference geometry must have shape ({n}, 3), got {R_ref.shape}")
    Dm = np.linalg.norm(R_ref[:, None] - R_ref[None], axis=-1)
    found = []
    image = [-1] * n
    used = [False] * n

    def extend(i):
        if i == n:
            found.append(tuple(image))
            return
        for j in range(n):
            if used[j] or symbols[j] != symbols[i]:
                continue
            if all(abs(Dm[i, k] - Dm[j, image[k]]) <= tol for k in range(i)):
                image[i], used[j] = j, True
                extend(i + 1)
                image[i], used[j] = -1, False

    extend(0)
    gens = [p for p in found if p != tuple(range(n))]
    return PermutationGroup.from_symbols(symbols, generators=gens)
