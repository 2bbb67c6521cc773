"""sGDML: symmetrised gradient-domain machine learning of forces.

A Gaussian process on the force field: the covariance of forces is the
Hessian of a Matérn-5/2 kernel on the inverse-distance descriptor
``x_k = 1 / r_k``, summed over the permutations of like atoms,

    cov(F(R), F(R')) = J(R)^T [sum_v d2 phi(|x - x'[v]|^2/l^2) / dx dx'^T] J(R'),

and the energy is the integral of the learnt force field, known up to a
constant fitted as the mean residual of the training energies.  With
``use_energies=True`` (sGDML's ``--E_cstr``) the energies enter the
system too, through the kernel itself and its first derivatives, which
fixes the energy scale of the fit (important on reactive surfaces such as
OH3).

Unlike sGDML, which searches the training data for permutations (and finds
only part of the group on reactive systems), the sum runs over the
molecule's declared group; ``permutations="detect"`` finds the
symmetries of the lowest-energy structure instead.  Gradients are observed
in the internal coordinates (``3N - 6`` per structure, see
:func:`~.descriptors.project_jacobian`), which halves the system size of
sGDML's Cartesian formulation for 4 atoms.  The system is solved by
Cholesky, or by conjugate gradients with a Nyström preconditioner when it
has more than ``max_direct`` rows; ``l`` (sGDML's sigma) and the
regularisation are chosen by leave-one-structure-out cross-validation on the
training set.
"""
from __future__ import annotations

import time

from invariants import DistanceTransform

from ...data import Dataset
from ...molecule import Molecule
from .base import KernelModel
from .descriptors import DistanceDescriptor, descriptor_permutations

__all__ = ["SGDMLModel", "DEFAULT_LAMBDA_GRID"]

DEFAULT_LAMBDA_GRID = (1e-12, 1e-10, 1e-8, 1e-6)


class SGDMLModel(KernelModel):
    """Symmetrised force-domain GP (sGDML) with analytic and iterative solvers.

    Parameters
    ----------
    kernel : {"matern52", "gaussian"}
    length_scale : float or None
        ``l`` [Å⁻¹, like the descriptor]; None: chosen by cross-validation.
    lambda_ : float or None
        Regularisation of the gradient rows relative to the mean diagonal of
        the kernel matrix; None: chosen with ``l`` by cross-validation from
        ``lambda_grid``.
    lambda_grid : tuple of float
    use_energies : bool
        Put the energies into the system (sGDML's ``--E_cstr``); False:
        forces only, energies give the integration constant.
    energy_weight : float
        Weight of the energy rows relative to the gradient rows (their
        regularisation is ``lambda_ / energy_weight^2``).
    cv_folds : int or None
        None: closed-form leave-one-structure-out; an int: K-fold.
    cv_repeats : int
        Repetitions of a K-fold split (pooled).
    cv_max_structures : int
    solver : {"auto", "cholesky", "cg"}
    max_direct : int
        ``auto`` uses Cholesky up to this many rows.
    cg_tol : float
        Relative residual at which conjugate gradients stop.
    n_inducing : int or None
        Structures in the Nyström preconditioner (default: about 2000 rows).
    permutations : {"declared", "detect", "none"}
    blocks, generators : optional
        Declared like-atom group (default: all like atoms).
    detect_tol : float
        Distance tolerance [Å] of ``permutations="detect"``.
    use_forces : bool or None
        Accepted for the common interface (recipes pass it); sGDML always
        fits forces, so False is refused.
    random_state : int
    """

    kind = "kernel_sgdml"
    cli_name = "sgdml"
    _parameter_constraints = {
        "kernel": (str,),
        "length_scale": (type(None), float, int),
        "lambda_": (type(None), float, int),
        "lambda_grid": (tuple, list),
        "energy_weight": (float, int),
        "cv_folds": (type(None), int),
        "cv_repeats": (int,),
        "cv_max_structures": (int,),
        "solver": (str,),
        "max_direct": (int,),
        "cg_tol": (float,),
        "n_inducing": (type(None), int),
        "permutations": (str,),
        "detect_tol": (float, int),
        "random_state": (int,),
    }

    def __init__(self, *, kernel="matern52", length_scale=None, lambda_=None, lambda_grid=DEFAULT_LAMBDA_GRID,
                 use_energies=True, energy_weight=10.0, cv_folds=None, cv_repeats=1, cv_max_structures=500,
                 solver="auto", max_direct=15000, cg_tol=1e-8, n_inducing=None,
                 permutations="declared", blocks=None, generators=None, detect_tol=0.05, use_forces=None,
                 random_state=0):
        self.kernel = kernel
        self.length_scale = length_scale
        self.lambda_ = lambda_
        self.lambda_grid = lambda_grid
        self.use_energies = use_energies
        self.energy_weight = energy_weight
        self.cv_folds = cv_folds
        self.cv_repeats = cv_repeats
        self.cv_max_structures = cv_max_structures
        self.solver = solver
        self.max_direct = max_direct
        self.cg_tol = cg_tol
        self.n_inducing = n_inducing
        self.permutations = permutations
        self.blocks = blocks
        self.generators = generators
        self.detect_tol = detect_tol
        self.use_forces = use_forces
        self.random_state = random_state

    @classmethod
    def add_cli_arguments(cls, parser, add_once) -> None:
        super().add_cli_arguments(parser, add_once)
        add_once(parser, "--forces-only", action="store_true", default=None,
                 help="sgdml: fit forces only (energies give the integration constant; default: energies and forces)")

    @classmethod
    def params_from_cli(cls, args) -> dict:
        params = super().params_from_cli(args)
        params.pop("use_forces", None)      # forces are always fitted; their absence is reported by fit
        if getattr(args, "forces_only", None):
            params["use_energies"] = False
        return params

    def _validate_params(self):
        super()._validate_params()
        if self.n_inducing is not None and self.n_inducing < 1:
            raise ValueError(f"SGDMLModel: n_inducing must be >= 1, got {self.n_inducing}")
        if not self.cg_tol > 0:
            raise ValueError(f"SGDMLModel: cg_tol must be > 0, got {self.cg_tol}")

    def fit(self, data: Dataset, *, progress=None) -> "SGDMLModel":
        """Fit the forces (and energies) of a :class:`~pesfit.data.Dataset` (Å, eV, eV/Å)."""
        from .training import median_distance, select_and_fit

        self._validate_params()
        t0 = time.perf_counter()
        data = self._check_training_data(data)
        if self.use_forces is False:
            raise ValueError("sGDML learns forces: use_forces=False is not possible; use --model kreg/pkreg/gpr "
                             "to fit energies only")
        if data.F is None:
            raise ValueError("sGDML learns forces but the training data has none (key F); pass --forces "
                             "(forces = true in a recipe) or use --model kreg/pkreg/gpr for energies only")
        group = self._symmetry_group(data, self._lowest_energy_structure(data))
        perms = descriptor_permutations(group)
        transform = DistanceTransform("inverse")
        descriptor = DistanceDescriptor(transform)
        data, dropped = self._drop_duplicates(data, descriptor.values(data.R), perms)
        kd = self._observations(descriptor, data, True)
        ell0 = 20.0 * median_distance(kd.X) if self.kernel == "matern52" else 2.0 * median_distance(kd.X)
        ell, lam, sol, cv = select_and_fit(
            self.kernel, perms, kd, use_e=self.use_energies, use_g=True, length_scale=self.length_scale,
            lambda_=self.lambda_, lambda_grid=self.lambda_grid, ell0=ell0, cv_folds=self.cv_folds,
            cv_max_structures=self.cv_max_structures,
            solver=self.solver, max_direct=self.max_direct, cg_tol=self.cg_tol, n_inducing=self.n_inducing,
            energy_weight=float(self.energy_weight), cv_repeats=self.cv_repeats, seed=self.random_state,
            progress=progress)
        self.molecule_ = Molecule(tuple(data.symbols), group, transform)
        self.cv_results_ = cv
        self._set_expansion(descriptor, self.kernel, ell, perms, kd.X, sol.alpha, sol.w, sol.mu)
        self.hyperparameters_ = {"kernel": self.kernel, "length_scale": float(ell), "lambda": float(lam),
                                 "use_energies": self.use_energies, "energy_weight": self.energy_weight, "forces": True,
                                 "n_permutations": int(len(perms)), "group_order": group.order,
                                 "permutations": self.permutations, "solver": sol.solver, "jitter": sol.jitter,
                                 "dropped_duplicates": dropped}
        self._finish_fit(data, t0)
        return self
