"""Distance transforms ``x = f(r)`` applied before the polynomial basis.

Kinds (``r`` in Å, or whatever length unit the caller uses consistently):

* ``"morse"``: ``x = exp(-r / a)``, ``dx/dr = -x / a`` (``a`` the range parameter);
* ``"inverse"``: ``x = 1 / r``, ``dx/dr = -1 / r**2``;
* ``"reciprocal"``: ``x = r_e / r`` with one ``r_e`` per distance variable
  (``parameter`` an array), ``dx/dr = -r_e / r**2``;
* ``"identity"``: ``x = r``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DistanceTransform", "TRANSFORM_CODES", "pair_distances"]

#: integer codes used by the compiled kernels
TRANSFORM_CODES = {"identity": 0, "morse": 1, "inverse": 2, "reciprocal": 3}


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
    kind : {"morse", "inverse", "reciprocal", "identity"}
    parameter : float or ndarray
        Morse range ``a`` [length]; for ``"reciprocal"`` the reference
        distances ``r_e`` (one per variable, or a scalar) [length].
    """

    kind: str = "morse"
    parameter: float | tuple = 1.0

    def __post_init__(self):
        if self.kind not in TRANSFORM_CODES:
            raise ValueError(f"unknown distance transform {self.kind!r}; choose from {sorted(TRANSFORM_CODES)}")
        p = np.atleast_1d(np.asarray(self.parameter, dtype=np.float64))
        if not np.all(np.isfinite(p)) or np.any(p <= 0):
            raise ValueError(f"transform parameter must be positive and finite, got {self.parameter}")
        if self.kind == "morse" and p.size != 1:
            raise ValueError("the Morse range parameter a is a single number")
        if isinstance(self.parameter, (list, np.ndarray)):
            object.__setattr__(self, "parameter", tuple(float(v) for v in p))

    @property
    def code(self) -> int:
        return TRANSFORM_CODES[self.kind]

    def parameters(self, n_variables: int) -> np.ndarray:
        """Parameter array of length ``n_variables`` for the kernels."""
        p = np.atleast_1d(np.asarray(self.parameter, dtype=np.float64))
        if p.size == 1:
            return np.full(n_variables, p[0])
        if p.size != n_variables:
            raise ValueError(f"transform has {p.size} parameters for {n_variables} distance variables")
        return p.copy()

    def __call__(self, r: np.ndarray) -> np.ndarray:
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
        return {"kind": self.kind, "parameter": list(p) if isinstance(p, tuple) else float(p)}

    @classmethod
    def from_dict(cls, d: dict) -> "DistanceTransform":
        try:
            return cls(d["kind"], d["parameter"])
        except KeyError as exc:
            raise ValueError(f"transform description lacks field {exc}") from None
