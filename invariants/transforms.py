"""Distance transforms ``x = f(r)`` applied before the polynomial basis.

Kinds (``r`` in Å, or whatever length unit the caller uses consistently):

* ``"morse"``: ``x = exp(-r / a)``, ``dx/dr = -x / a`` (``a`` the range parameter);
* ``"inverse"``: ``x = 1 / r``, ``dx/dr = -1 / r**2``;
* ``"reciprocal"``: ``x = r_e / r`` with one ``r_e`` per distance variable
  (``parameter`` an array), ``dx/dr = -r_e / r**2``;
* ``"identity"``: ``x = r``;
* ``"valence"``: valence variables around a central atom ``c``: for a pair
  ``(c, j)`` the Morse variable ``exp(-r_cj / a)``; for a pair ``(j, k)`` of
  two other atoms ``cos(theta_jck) + 1/2``, the cosine of the bond angle at
  ``c``.  Not elementwise (the angle needs three distances): use
  :func:`valence_variables`.  The permutation group must fix ``c``; it then
  acts on these variables exactly as on the distances.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DistanceTransform", "TRANSFORM_CODES", "pair_distances", "transformed_variables", "valence_variables"]

#: integer codes used by the compiled kernels ("valence" is evaluated in NumPy, see valence_variables)
TRANSFORM_CODES = {"identity": 0, "morse": 1, "inverse": 2, "reciprocal": 3, "valence": 4}


def pair_distances(R: np.ndarray) -> np.ndarray:
    """Interatomic distances of shape (n_structures, N(N-1)/2), pairs ``i<j`` in order."""
    R = np.asarray(R, dtype=np.float64)
    if R.ndim != 3 or R.shape[2] != 3:
        raise ValueError(f"coordinates must have shape (n_structures, n_atoms, 3), got {R.shape}")
    i, j = np.triu_indices(R.shape[1], k=1)
    return np.linalg.norm(R[:, i, :] - R[:, j, :], axis=-1)


@dataclass(frozen=True)
class DistanceTransform:
    """A distance transform with its parameter.

    Parameters
    ----------
    kind : {"morse", "inverse", "reciprocal", "identity", "valence"}
    parameter : float or ndarray
        Morse range ``a`` [length] (``"morse"``, ``"valence"``); for
        ``"reciprocal"`` the reference distances ``r_e`` (one per variable,
        or a scalar) [length].
    center : int
        ``"valence"`` only: index of the central atom (0-based).
    """

    kind: str = "morse"
    parameter: float | tuple = 1.0
    center: int = -1

    def __post_init__(self):
        if self.kind not in TRANSFORM_CODES:
            raise ValueError(f"unknown distance transform {self.kind!r}; choose from {sorted(TRANSFORM_CODES)}")
        p = np.atleast_1d(np.asarray(self.parameter, dtype=np.float64))
        if not np.all(np.isfinite(p)) or np.any(p <= 0):
            raise ValueError(f"transform parameter must be positive and finite, got {self.parameter}")
        if self.kind in ("morse", "valence") and p.size != 1:
            raise ValueError("the Morse range parameter a is a single number")
        if self.kind == "valence":
            if isinstance(self.center, bool) or not isinstance(self.center, (int, np.integer)) or self.center < 0:
                raise ValueError("the valence transform needs the index of its central atom (>= 0), "
                                 f"got {self.center!r}")
            object.__setattr__(self, "center", int(self.center))
        elif self.center != -1:
            raise ValueError(f"only the valence transform has a central atom; {self.kind!r} got center={self.center}")
        if isinstance(self.parameter, (list, np.ndarray)):
            object.__setattr__(self, "parameter", tuple(float(v) for v in p))

    @property
    def code(self) -> int:
        """Integer code of an elementwise kind for the compiled kernels."""
        self._elementwise()
        return TRANSFORM_CODES[self.kind]

    def parameters(self, n_variables: int) -> np.ndarray:
        """Parameter array of length ``n_variables`` for the kernels."""
        p = np.atleast_1d(np.asarray(self.parameter, dtype=np.float64))
        if p.size == 1:
            return np.full(n_variables, p[0])
        if p.size != n_variables:
            raise ValueError(f"transform has {p.size} parameters for {n_variables} distance variables")
        return p.copy()

    def _elementwise(self):
        if self.kind == "valence":
            raise ValueError("the valence transform is not elementwise (bond angles need three distances); "
                             "use invariants.transforms.valence_variables(R, transform)")

    def __call__(self, r: np.ndarray) -> np.ndarray:
        self._elementwise()
        r = np.asarray(r, dtype=np.float64)
        p = self.parameters(r.shape[-1])
        if self.kind == "morse":
            return np.exp(-r / p)
        if self.kind == "inverse":
            return 1.0 / r
        if self.kind == "reciprocal":
            return p / r
        return r.copy()

    def derivative(self, r: np.ndarray) -> np.ndarray:
        """``dx/dr`` elementwise."""
        self._elementwise()
        r = np.asarray(r, dtype=np.float64)
        p = self.parameters(r.shape[-1])
        if self.kind == "morse":
            return -np.exp(-r / p) / p
        if self.kind == "inverse":
            return -1.0 / r**2
        if self.kind == "reciprocal":
            return -p / r**2
        return np.ones_like(r)

    def to_dict(self) -> dict:
        p = self.parameter
        d = {"kind": self.kind, "parameter": list(p) if isinstance(p, tuple) else float(p)}
        if self.kind == "valence":
            d["center"] = self.center
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DistanceTransform":
        try:
            if d["kind"] == "valence":
                return cls(d["kind"], d["parameter"], d["center"])
            return cls(d["kind"], d["parameter"])
        except KeyError as exc:
            raise ValueError(f"transform description lacks field {exc}") from None

    def valence_pairs(self, n_atoms: int) -> tuple[np.ndarray, np.ndarray]:
        """For each pair ``k`` (``i<j`` order): the pairs ``(a_k, b_k)`` of the central atom with ``i`` and
        with ``j`` when ``k`` is an angle variable, ``(-1, -1)`` when ``k`` involves the central atom."""
        c = self.center
        if not 0 <= c < n_atoms:
            raise ValueError(f"the valence transform's central atom {c} is not among the {n_atoms} atoms")
        index = {}
        pi, pj = np.triu_indices(n_atoms, k=1)
        for k, (i, j) in enumerate(zip(pi, pj)):
            index[(int(i), int(j))] = k
        a = np.full(len(pi), -1, dtype=np.int64)
        b = np.full(len(pi), -1, dtype=np.int64)
        for k, (i, j) in enumerate(zip(pi, pj)):
            if c not in (i, j):
                a[k] = index[(min(c, i), max(c, i))]
                b[k] = index[(min(c, j), max(c, j))]
        return a, b


def valence_variables(R: np.ndarray, transform: DistanceTransform, *, gradient: bool = False):
    """Valence variables ``X`` (n, n_pairs) of coordinates ``R`` (n, N, 3) and, with ``gradient``, ``dX/dR``.

    Pairs with the central atom ``c`` give ``exp(-r / a)``; a pair ``(j, k)``
    of two other atoms gives ``cos(theta) + 1/2`` with ``cos(theta) =
    (r_a^2 + r_b^2 - r_k^2) / (2 r_a r_b)``, ``r_a = |R_j - R_c|``, ``r_b =
    |R_k - R_c|``, ``r_k = |R_j - R_k|``.  ``dX/dR`` has shape (n, n_pairs, N, 3).
    """
    if transform.kind != "valence":
        raise ValueError(f"valence_variables needs the valence transform, got {transform.kind!r}")
    R = np.asarray(R, dtype=np.float64)
    if R.ndim != 3 or R.shape[2] != 3:
        raise ValueError(f"coordinates must have shape (n_structures, n_atoms, 3), got {R.shape}")
    n, na = R.shape[:2]
    A = float(np.atleast_1d(transform.parameter)[0])
    pa, pb = transform.valence_pairs(na)
    pi, pj = np.triu_indices(na, k=1)
    diff = R[:, pi, :] - R[:, pj, :]
    r = np.linalg.norm(diff, axis=-1)
    ang = pa >= 0
    X = np.exp(-r / A)
    ra, rb, rk = r[:, pa[ang]], r[:, pb[ang]], r[:, ang]
    cos = (ra * ra + rb * rb - rk * rk) / (2.0 * ra * rb)
    X[:, ang] = cos + 0.5
    if not gradient:
        return X
    # dX_k/dr_m (n, n_pairs, n_pairs): Morse on the diagonal of the central pairs, three entries per angle
    dXdr = np.zeros((n, len(pi), len(pi)))
    cen = np.where(~ang)[0]
    dXdr[:, cen, cen] = -X[:, cen] / A
    ks = np.where(ang)[0]
    dXdr[:, ks, ks] = -rk / (ra * rb)
    dXdr[:, ks, pa[ang]] = 1.0 / rb - cos / ra
    dXdr[:, ks, pb[ang]] = 1.0 / ra - cos / rb
    # dr_m/dR: +u at atom i, -u at atom j
    u = diff / r[..., None]
    drdR = np.zeros((n, len(pi), na, 3))
    m = np.arange(len(pi))
    drdR[:, m, pi, :] = u
    drdR[:, m, pj, :] = -u
    return X, np.einsum("nkm,nmad->nkad", dXdr, drdR)


def transformed_variables(R: np.ndarray, transform: DistanceTransform) -> np.ndarray:
    """The polynomial variables (n, n_pairs) of coordinates ``R`` (n, N, 3) for any transform."""
    if transform.kind == "valence":
        return valence_variables(R, transform)
    return transform(pair_distances(R))
