"""Choosing the next batch: committee disagreement times novelty in invariant space.

Structures are compared through permutation-invariant descriptors: the
degree-2 PIPs of the Morse variables ``exp(-r/a)`` (the committee's own
distance transform), each scaled by its spread over the training set, so
relabelling like atoms does not change a distance.  A candidate's score is

    score = sigma * d / (d + d0)

with ``sigma`` the committee standard deviation [eV], ``d`` its descriptor
distance to the nearest training or already chosen structure and ``d0`` the
median nearest-neighbour distance within the training set.  The batch is
chosen greedily, updating ``d`` after each pick, so one uncertain region does
not take the whole batch.
"""
from __future__ import annotations

import numpy as np

__all__ = ["InvariantDescriptor", "select_batch"]


class InvariantDescriptor:
    """Scaled degree-2 PIP descriptors of a committee's molecule.

    Parameters
    ----------
    molecule : pesfit.molecule.Molecule
        Group and distance transform.
    R_train : ndarray of shape (n, N, 3) [Å]
        Sets the scale of each descriptor.
    """

    def __init__(self, molecule, R_train):
        from invariants import pip_basis

        self.molecule = molecule
        self.basis = pip_basis(molecule.group, 2)
        X = self._raw(R_train)
        self.scale = X.std(axis=0)
        self.scale[self.scale == 0] = 1.0

    def _raw(self, R):
        return self.basis.cartesian_values(np.asarray(R, dtype=np.float64), self.molecule.transform)[:, 1:]

    def __call__(self, R) -> np.ndarray:
        """Descriptors of shape (n, n_features) of structures ``R`` (n, N, 3) [Å]."""
        return self._raw(R) / self.scale


def select_batch(sigma, X_candidates, X_train, n: int):
    """Indices of ``n`` candidates with the largest novelty-weighted disagreement.

    Parameters
    ----------
    sigma : ndarray of shape (m,)
        Committee standard deviations [eV].
    X_candidates, X_train : ndarray of shape (m, k), (n_train, k)
        Invariant descriptors.
    n : int

    Returns
    -------
    indices : ndarray of int, scores : ndarray of float (at the time of picking) [eV]
    """
    sigma = np.asarray(sigma, dtype=np.float64)
    if len(sigma) == 0 or n <= 0:
        return np.zeros(0, dtype=int), np.zeros(0)
    from scipy.spatial import cKDTree

    tree = cKDTree(X_train)
    d = tree.query(X_candidates, k=1)[0]
    d0 = max(float(np.median(tree.query(X_train, k=2)[0][:, 1])), 1e-12) if len(X_train) > 1 else 1.0
    picked, scores = [], []
    for _ in range(min(n, len(sigma))):
        score = sigma * d / (d + d0)
        score[picked] = -np.inf
        i = int(np.argmax(score))
        if not np.isfinite(score[i]) or score[i] <= 0:
            break
        picked.append(i)
        scores.append(float(score[i]))
        d = np.minimum(d, np.sqrt(((X_candidates - X_candidates[i]) ** 2).sum(-1)))
    return np.array(picked, dtype=int), np.array(scores)
