"""KREG and pKREG: kernel ridge regression on relative-to-equilibrium distances.

The descriptor is ``x_k = r_eq,k / r_k`` over all atom pairs, with ``r_eq``
the distances of a reference geometry (by default the lowest-energy
training structure).  KREG uses a Gaussian (or Matérn-5/2) kernel on ``x``;
pKREG sums the kernel over the molecule's permutation group (or a declared
subgroup),

    k(R, R') = sum_v phi(|x(R) - x(R')[v]|^2 / l^2),

after averaging ``r_eq`` over each orbit of equivalent pairs, so that the
model is exactly invariant under the group whatever the reference geometry
(MLatom's pKREG permutes a descriptor built on an unsymmetrised ``r_eq``
and is invariant only for a fully symmetric reference).

Energies alone, or energies and forces, are fitted by kernel ridge
regression with the derivative kernels of :mod:`.kernels`; forces are the
analytic gradient of the expansion.  The length scale ``l`` and the ridge
``lambda`` are chosen by leave-one-structure-out cross-validation on the
training set (closed form, :func:`~.training.loo_validate`).
"""
from __future__ import annotations

import time

import numpy as np

from invariants import DistanceTransform, PermutationGroup

from ...data import Dataset
from ...molecule import Molecule
from .base import KernelModel, reference_distances
from .descriptors import DistanceDescriptor, descriptor_permutations, symmetrize_reference

__all__ = ["KREGModel", "PKREGModel", "DEFAULT_LAMBDA_GRID"]

DEFAULT_LAMBDA_GRID = (1e-12, 1e-10, 1e-8, 1e-6, 1e-4)


class KREGModel(KernelModel):
    """KREG: kernel ridge regression on ``r_eq / r`` (no permutational symmetrisation).

    Parameters
    ----------
    kernel : {"gaussian", "matern52"}
    length_scale : float or None
        ``l`` (dimensionless, like the descriptor); None: chosen by CV.
    lambda_ : float or None
        Ridge, relative to the mean diagonal of the kernel matrix; None:
        chosen with ``l`` by leave-one-out cross-validation from ``lambda_grid``.
    lambda_grid : tuple of float
    reference : ndarray of shape (N, 3) or None
        Geometry giving ``r_eq`` [Å]; None: the lowest-energy training structure.
    use_forces : bool or None
        Fit forces (gradients) too; None: whenever the data has forces.
    energy_weight : float
        With forces: weight of the energy rows relative to the gradient rows
        (their ridge is ``lambda_ / energy_weight^2``).
    cv_folds : int or None
        None: closed-form leave-one-structure-out; an int: K-fold.
    cv_max_structures : int
        Cross-validate on a random subset of at most this many structures.
    solver : {"auto", "cholesky", "cg"}
        ``auto``: Cholesky while the system has at most ``max_direct`` rows.
    max_direct : int
    blocks, generators : optional
        Declared like-atom group (pKREG; default: all like atoms).
    permutations : {"declared", "detect", "none"}
        pKREG: sum over the declared group, a group detected from the
        reference geometry, or nothing.
    random_state : int

    Attributes
    ----------
    r_eq_ : ndarray of shape (N(N-1)/2,)
        Reference distances used in the descriptor [Å].
    cv_results_ : list of dict
    hyperparameters_ : dict
    (and those of :class:`~pesfit.models.kernels.base.KernelModel`)
    """

    kind = "kernel_kreg"
    cli_name = "kreg"
    symmetrize = False
    _parameter_constraints = {
        "kernel": (str,),
        "length_scale": (type(None), float, int),
        "lambda_": (type(None), float, int),
        "lambda_grid": (tuple, list),
        "energy_weight": (float, int),
        "cv_folds": (type(None), int),
        "cv_max_structures": (int,),
        "solver": (str,),
        "max_direct": (int,),
        "permutations": (str,),
        "random_state": (int,),
    }

    def __init__(self, *, kernel="gaussian", length_scale=None, lambda_=None, lambda_grid=DEFAULT_LAMBDA_GRID,
                 reference=None, use_forces=None, energy_weight=10.0, cv_folds=None, cv_max_structures=500,
                 solver="auto", max_direct=15000, blocks=None, generators=None, permutations="declared",
                 random_state=0):
        self.kernel = kernel
        self.length_scale = length_scale
        self.lambda_ = lambda_
        self.lambda_grid = lambda_grid
        self.reference = reference
        self.use_forces = use_forces
        self.energy_weight = energy_weight
        self.cv_folds = cv_folds
        self.cv_max_structures = cv_max_structures
        self.solver = solver
        self.max_direct = max_direct
        self.blocks = blocks
        self.generators = generators
        self.permutations = permutations
        self.random_state = random_state

    def _validate_params(self):
        super()._validate_params()
        if not self.lambda_grid or any(not v >= 0 for v in self.lambda_grid):
            raise ValueError(f"{type(self).__name__}: lambda_grid must hold values >= 0, got {self.lambda_grid!r}")

    def _group(self, data: Dataset, R_ref) -> PermutationGroup:
        if not self.symmetrize:
            return PermutationGroup.from_symbols(list(data.symbols), generators=[])
        return self._symmetry_group(data, R_ref)

    def fit(self, data: Dataset, *, progress=None) -> "KREGModel":
        """Fit energies (and forces) of a :class:`~pesfit.data.Dataset` (Å, eV, eV/Å)."""
        from .training import select_and_fit

        self._validate_params()
        t0 = time.perf_counter()
        data = self._check_training_data(data)
        forces = self._fits_forces(data)
        if self.reference is None:
            R_ref = self._lowest_energy_structure(data)
        else:
            R_ref = np.asarray(self.reference, dtype=np.float64)
            if R_ref.shape != (data.n_atoms, 3):
                raise ValueError(f"reference geometry must have shape ({data.n_atoms}, 3), got {R_ref.shape}")
        group = self._group(data, R_ref)
        perms = descriptor_permutations(group)
        r_eq = reference_distances(R_ref)
        if self.symmetrize:
            r_eq = symmetrize_reference(r_eq, perms)
        transform = DistanceTransform("reciprocal", tuple(float(v) for v in r_eq))
        descriptor = DistanceDescriptor(transform)
        data, dropped = self._drop_duplicates(data, descriptor.values(data.R), perms)
        kd = self._observations(descriptor, data, forces)
        ell0 = 2.0 * _median(kd.X) if forces else 8.0 * _median(kd.X)
        ell, lam, sol, cv = select_and_fit(
            self.kernel, perms, kd, use_e=True, use_g=forces, length_scale=self.length_scale, lambda_=self.lambda_,
            lambda_grid=self.lambda_grid, ell0=ell0, cv_folds=self.cv_folds,
            cv_max_structures=self.cv_max_structures, solver=self.solver, max_direct=self.max_direct,
            energy_weight=float(self.energy_weight) if forces else 1.0, seed=self.random_state, progress=progress)
        self.molecule_ = Molecule(tuple(data.symbols), group, transform)
        self.r_eq_ = r_eq
        self.cv_results_ = cv
        self._set_expansion(descriptor, self.kernel, ell, perms, kd.X, sol.alpha, sol.w, sol.mu)
        self.hyperparameters_ = {"kernel": self.kernel, "length_scale": float(ell), "lambda": float(lam),
                                 "forces": forces, "n_permutations": int(len(perms)), "group_order": group.order,
                                 "solver": sol.solver, "jitter": sol.jitter, "dropped_duplicates": dropped}
        self._finish_fit(data, t0)
        return self


class PKREGModel(KREGModel):
    """pKREG: KREG with the kernel summed over the molecule's permutation group.

    Same parameters as :class:`KREGModel`; ``blocks``/``generators`` declare
    a subgroup to sum over when the full like-atom group is large.
    """

    kind = "kernel_pkreg"
    cli_name = "pkreg"
    symmetrize = True


def _median(X):
    from .training import median_distance

    return median_distance(X)
