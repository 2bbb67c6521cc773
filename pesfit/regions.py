"""Regions of configuration space for error reports: one bonded piece, or separated fragments.

Two atoms are bonded when their distance is below ``BOND_SCALE`` times the
sum of their covalent radii (ASE's table, Å).  The fragments of a structure
are the connected pieces of that bond graph.  A structure is ``"compact"``
when it is one piece, else ``"K fragments"``.  With the default scale of
1.5, stretched bonds at transition states still count as bonds (H-H up to
0.93 Å, O-H up to 1.46 Å), while fragments 1.6 Å or more apart count as
separated.
"""
from __future__ import annotations

import numpy as np
from ase.data import covalent_radii
from scipy.sparse.csgraph import connected_components

__all__ = ["BOND_SCALE", "fragment_counts", "region_labels"]

#: bond cut-off in units of the sum of covalent radii
BOND_SCALE = 1.5


def fragment_counts(z, R, scale: float = BOND_SCALE) -> np.ndarray:
    """Number of bonded fragments of each structure.

    Parameters
    ----------
    z : array_like of shape (n_atoms,)
        Atomic numbers.
    R : array_like of shape (n_structures, n_atoms, 3)
        Cartesian coordinates [Å].
    scale : float
        Bond cut-off in units of the sum of covalent radii.
    """
    z = np.asarray(z, dtype=int)
    R = np.asarray(R, dtype=np.float64)
    if R.ndim != 3 or R.shape[1:] != (len(z), 3):
        raise ValueError(f"coordinates must have shape (n_structures, {len(z)}, 3), got {R.shape}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    radii = covalent_radii[z]
    cutoff = scale * (radii[:, None] + radii[None, :])
    bonded = np.linalg.norm(R[:, :, None, :] - R[:, None, :, :], axis=-1) < cutoff
    return np.array([connected_components(b, directed=False)[0] for b in bonded], dtype=int)


def region_labels(z, R, scale: float = BOND_SCALE) -> list[str]:
    """``"compact"`` or ``"K fragments"`` for each structure (see :func:`fragment_counts`)."""
    return ["compact" if k == 1 else f"{k} fragments" for k in fragment_counts(z, R, scale)]
