"""Regions of configuration space for error reports: one bonded piece, or separated fragments.

Two atoms are bonded when their distance is below ``BOND_SCALE`` times the
sum of their covalent radii (ASE's table, Å).  The fragments of a structure
are the connected pieces of that bond graph.  A structure is ``"compact"``
when it is one piece, else ``"K fragments"``.  At the default scale of 1.5
the cut-offs are 0.93 Å for H-H, 1.46 Å for O-H and 1.61 Å for C-H: an
O-H stretched to a transition state still counts as a bond; an H-H at the
H3 saddle (0.93 Å) sits on the edge.  Strongly stretched bonds count as
broken, so on sets that sample large displacements (ch5 has many C-H bonds
beyond 1.6 Å) most structures come out as several fragments.
"""
from __future__ import annotations

import numpy as np
from ase.data import covalent_radii
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = ["BOND_SCALE", "fragment_counts", "region_labels"]

#: bond cut-off in units of the sum of covalent radii
BOND_SCALE = 1.5
_CHUNK = 8192      # structures per block (memory ~ _CHUNK * n_atoms^2 * 24 bytes)


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
    n_atoms = len(z)
    i, j = np.triu_indices(n_atoms, k=1)
    cutoff = scale * (radii[i] + radii[j])
    out = np.empty(len(R), dtype=int)
    for s in range(0, len(R), _CHUNK):
        block = R[s:s + _CHUNK]
        m = len(block)
        bonded = np.linalg.norm(block[:, i, :] - block[:, j, :], axis=-1) < cutoff      # (m, n_pairs)
        k, p = np.nonzero(bonded)
        # one graph for the whole block: structure k's atoms are nodes k * n_atoms + 0 .. n_atoms - 1
        graph = coo_matrix((np.ones(len(k)), (k * n_atoms + i[p], k * n_atoms + j[p])),
                           shape=(m * n_atoms, m * n_atoms))
        _, labels = connected_components(graph, directed=False)
        labels = labels.reshape(m, n_atoms)
        out[s:s + m] = (np.diff(np.sort(labels, axis=1), axis=1) != 0).sum(axis=1) + 1
    return out

def region_labels(z, R, scale: float = BOND_SCALE) -> list[str]:
    """``"compact"`` or ``"K fragments"`` for each structure (see :func:`fragment_counts`)."""
    return ["compact" if k == 1 else f"{k} fragments" for k in fragment_counts(z, R, scale)]
