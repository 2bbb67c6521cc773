"""What the kernel back ends share: data preparation, prediction, model state, export.

A fitted kernel model is a *kernel expansion* (see :mod:`.kernels`)::

    E(R) = mu + sum_j sum_v [ a_j phi(s_jv) - g1(s_jv) w_j[v] . (u - u_j[v]) ],
    u = x(R) / l,   s_jv = |u - u_j[v]|^2,

over training descriptors ``u_j``, descriptor permutations ``v`` (the
identity alone for unsymmetrised models), energy coefficients ``a_j`` and
gradient coefficients ``w_j``.  Forces follow by the chain rule:
``dE/dR = J(R)^T (dE/du) / l`` with ``J = dx/dR`` and
``dE/du = sum [a g1 d - g1 w - g2 (w . d) d]``, ``d = u - u_j[v]``.

The model file stores the descriptor, kernel, length scale, permutations,
training descriptors and coefficients as JSON lists (exact float64 round
trip), inside the checksummed document written by :class:`ModelBase`.
"""
from __future__ import annotations

import inspect

import numpy as np

from invariants import PermutationGroup, pair_distances
from invariants.program import Program

from ...data import Dataset
from ...export_heads import KernelHead
from .._base import ModelBase
from .descriptors import (InvariantDescriptor, descriptor_from_dict, detect_permutations, internal_rank,
                          project_jacobian)
from .kernels import KERNELS, canonical_permutation, expand_centres, expansion

__all__ = ["KernelModel", "PERMUTATION_MODES", "reference_distances"]

#: values of the ``permutations`` hyperparameter
PERMUTATION_MODES = ("declared", "detect", "none")


class KernelModel(ModelBase):
    """Shared machinery of the kernel back ends (not used directly).

    Attributes
    ----------
    molecule_ : Molecule
    descriptor_ : DistanceDescriptor or InvariantDescriptor
    kernel_ : str
    length_scale_ : ndarray of shape () or (D,)
    perms_ : ndarray of shape (n_perms, D)
        Descriptor permutations summed over (identity first).
    centres_ : ndarray of shape (n, D)
        Training descriptors (unscaled).
    alpha_ : ndarray of shape (n,)
        Energy coefficients [eV].
    w_ : ndarray of shape (n, D)
        Gradient coefficients [eV], in scaled-descriptor space.
    energy_offset_ : float
        ``mu`` [eV].
    """

    kind = "kernel_base"
    cli_name = None

    # ------------------------------------------------------------------ CLI
    @classmethod
    def add_cli_arguments(cls, parser, add_once) -> None:
        add_once(parser, "--kernel", default=None,
                 help="kernel models: gaussian or matern52 (default: gaussian; sgdml matern52)")
        add_once(parser, "--length-scale", type=float, default=None,
                 help="kernel models: length scale in descriptor units (default: chosen on the training data)")
        add_once(parser, "--lambda", dest="lambda_", type=float, default=None,
                 help="kernel models: regularisation relative to the mean kernel diagonal (default: by CV)")
        add_once(parser, "--solver", default=None,
                 help="kernel models: linear solver auto, cholesky or cg (default: auto)")
        add_once(parser, "--permutations", default=None,
                 help="kernel models: permutations to symmetrise over: declared (the molecule's group), detect, or "
                      "none (default: declared)")

    @classmethod
    def params_from_cli(cls, args) -> dict:
        params = {}
        for name in ("kernel", "length_scale", "lambda_", "solver", "permutations"):
            value = getattr(args, name, None)
            if value is not None and name in cls._parameter_constraints:
                params[name] = value
        if "use_forces" in inspect.signature(cls.__init__).parameters:
            params["use_forces"] = bool(getattr(args, "forces", False))
        return params

    def get_params(self) -> dict:
        """Constructor parameters (arrays as nested lists, so that model files hold them)."""
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in super().get_params().items()}

    # --------------------------------------------------------------- checks
    def _validate_params(self) -> None:
        super()._validate_params()
        kernel = getattr(self, "kernel", None)
        if kernel is not None and kernel not in KERNELS:
            raise ValueError(f"{type(self).__name__}: kernel must be one of {sorted(KERNELS)}, got {kernel!r}")
        ls = getattr(self, "length_scale", None)
        if ls is not None and not (np.all(np.isfinite(ls)) and np.all(np.asarray(ls) > 0)):
            raise ValueError(f"{type(self).__name__}: length_scale must be > 0, got {ls!r}")
        lam = getattr(self, "lambda_", None)
        if lam is not None and not lam >= 0:
            raise ValueError(f"{type(self).__name__}: lambda_ must be >= 0, got {lam!r}")
        if getattr(self, "cv_folds", None) is not None and self.cv_folds < 2:
            raise ValueError(f"{type(self).__name__}: cv_folds must be >= 2, got {self.cv_folds}")
        perm = getattr(self, "permutations", "declared")
        if perm not in PERMUTATION_MODES:
            raise ValueError(f"{type(self).__name__}: permutations must be one of {PERMUTATION_MODES}, "
                             f"got {perm!r}")
        for name in ("use_forces", "use_energies"):
            value = getattr(self, name, None)
            if value is not None and not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{type(self).__name__}: {name} must be True or False, got {value!r}")
        solver = getattr(self, "solver", "auto")
        if solver not in ("auto", "cholesky", "cg"):
            raise ValueError(f"{type(self).__name__}: solver must be 'auto', 'cholesky' or 'cg', got {solver!r}")

    # ------------------------------------------------------------------ data
    def molecule_group(self, data: Dataset) -> PermutationGroup:
        return PermutationGroup.from_symbols(list(data.symbols), blocks=getattr(self, "blocks", None),
                                             generators=getattr(self, "generators", None))

    def _symmetry_group(self, data: Dataset, R_ref) -> PermutationGroup:
        """The group the kernel is summed over, from the ``permutations`` hyperparameter."""
        mode = getattr(self, "permutations", "declared")
        if mode == "none":
            return PermutationGroup.from_symbols(list(data.symbols), generators=[])
        if mode == "detect":
            return detect_permutations(R_ref, list(data.symbols), tol=getattr(self, "detect_tol", 0.05))
        return self.molecule_group(data)

    @staticmethod
    def _lowest_energy_structure(data: Dataset) -> np.ndarray:
        return np.asarray(data.R[int(np.argmin(data.E))], dtype=np.float64)

    def _observations(self, descriptor, data: Dataset, forces: bool):
        """Descriptors, projected Jacobians and projected gradients of the training data."""
        from .training import KernelData

        R = np.asarray(data.R, dtype=np.float64)
        if not forces:
            return KernelData(descriptor.values(R), None, np.asarray(data.E, dtype=np.float64), None)
        X, J = descriptor.values_and_jacobian(R)
        r = internal_rank(R.shape[1], X.shape[1])
        M, Q = project_jacobian(J, r)
        G = -np.asarray(data.F, dtype=np.float64).reshape(len(R), -1)
        Y = np.einsum("nkr,nk->nr", Q, G)
        return KernelData(X, M, np.asarray(data.E, dtype=np.float64), Y)

    def _drop_duplicates(self, data: Dataset, X, perms) -> tuple[Dataset, list]:
        """Remove repeated structures (equal up to the permutations) whose energies agree; raise otherwise."""
        from .training import duplicate_groups

        groups = duplicate_groups(X, perms)
        if not groups:
            return data, []
        E = np.asarray(data.E)
        drop = []
        for g in groups:
            spread = float(E[g].max() - E[g].min())
            if spread > 1e-6 * max(1.0, float(np.abs(E[g]).max())):
                raise ValueError(f"training structures {g} are the same geometry (up to permutations of like "
                                 f"atoms) but their energies differ by {spread:.3g} eV; remove the wrong ones")
            drop += g[1:]
        keep = np.setdiff1d(np.arange(data.n_structures), drop)
        if len(keep) < 2:
            raise ValueError("after removing duplicate structures fewer than 2 remain; give distinct structures")
        return data.subset(keep), sorted(drop)

    # ---------------------------------------------------------- expansion
    def _set_expansion(self, descriptor, kernel, ell, perms, X, alpha, w, mu) -> None:
        self.descriptor_ = descriptor
        self.kernel_ = kernel
        self.length_scale_ = np.asarray(ell, dtype=np.float64)
        self.perms_ = np.ascontiguousarray(perms, dtype=np.int64)
        self.centres_ = np.ascontiguousarray(X, dtype=np.float64)
        self.alpha_ = np.ascontiguousarray(alpha, dtype=np.float64)
        self.w_ = np.ascontiguousarray(w, dtype=np.float64)
        self.energy_offset_ = float(mu)
        self._expanded = expand_centres(self.centres_ / self.length_scale_, self.alpha_, self.w_, self.perms_)

    @property
    def n_basis(self) -> int | None:
        """Number of kernel centres (training structures times permutations)."""
        c = getattr(self, "centres_", None)
        return None if c is None else int(c.shape[0] * self.perms_.shape[0])

    def _energy_and_gradient(self, R, gradient: bool):
        """Energies and ``dE/dR``; symmetrised models evaluate at the orbit's canonical descriptor."""
        C, A, W = self._expanded
        ell = self.length_scale_
        symmetric = self.perms_.shape[0] > 1
        if not gradient:
            X = self.descriptor_.values(R)
            if symmetric:
                X = np.take_along_axis(X, self.perms_[canonical_permutation(X, self.perms_)], axis=1)
            return expansion(self.kernel_, X / ell, C, A, W, gradient=False) + self.energy_offset_
        X, J = self.descriptor_.values_and_jacobian(R)
        if symmetric:
            v = self.perms_[canonical_permutation(X, self.perms_)]       # x_c = x[v]
            X = np.take_along_axis(X, v, axis=1)
            E, Gc = expansion(self.kernel_, X / ell, C, A, W, gradient=True)
            Gx = np.empty_like(Gc)
            np.put_along_axis(Gx, v, Gc / ell, axis=1)                   # dE/dx[v[k]] = dE/du[k] / l[k]
        else:
            E, Gu = expansion(self.kernel_, X / ell, C, A, W, gradient=True)
            Gx = Gu / ell
        G = np.einsum("nd,ndac->nac", Gx, J)
        return E + self.energy_offset_, G

    # --------------------------------------------------------------- state
    def _state(self) -> dict:
        ell = self.length_scale_
        return {
            "descriptor": self.descriptor_.to_dict(),
            "kernel": self.kernel_,
            "length_scale": float(ell) if ell.ndim == 0 else ell.tolist(),
            "permutations": self.perms_.tolist(),
            "centres": self.centres_.tolist(),
            "alpha": self.alpha_.tolist(),
            "w": self.w_.tolist(),
            "energy_offset_eV": self.energy_offset_,
        }

    def _set_state(self, state: dict) -> None:
        descriptor = descriptor_from_dict(state["descriptor"])
        kernel = state["kernel"]
        if kernel not in KERNELS:
            raise ValueError(f"model file names unknown kernel {kernel!r}")
        X = np.asarray(state["centres"], dtype=np.float64)
        perms = np.asarray(state["permutations"], dtype=np.int64)
        alpha = np.asarray(state["alpha"], dtype=np.float64)
        w = np.asarray(state["w"], dtype=np.float64)
        ell = np.asarray(state["length_scale"], dtype=np.float64)
        n_atoms = len(self.molecule_.symbols)
        D = descriptor.n_features(n_atoms)
        if X.ndim != 2 or X.shape[1] != D or alpha.shape != (X.shape[0],) or w.shape != X.shape:
            raise ValueError(f"model state shapes do not match: centres {X.shape}, alpha {alpha.shape}, "
                             f"w {w.shape}, descriptor of {D} features")
        if perms.ndim != 2 or perms.shape[1] != D or not all(sorted(p) == list(range(D)) for p in perms.tolist()):
            raise ValueError("model state permutations are not permutations of the descriptor features")
        if ell.ndim not in (0, 1) or (ell.ndim == 1 and ell.shape != (D,)) or not np.all(ell > 0):
            raise ValueError(f"model state length scale {state['length_scale']!r} is invalid")
        self._set_expansion(descriptor, kernel, ell, perms, X, alpha, w, state["energy_offset_eV"])

    # -------------------------------------------------------------- export
    def export_spec(self) -> dict:
        """What :func:`pesfit.export.export_model` needs (Å, eV): a program and a kernel head.

        Distance descriptors compile as the identity program over the
        transformed distances (``1/r`` or ``r_eq/r``); invariant descriptors
        as their basis program.  ``head`` is a :class:`~pesfit.export_heads.KernelHead`
        holding the scaled centres, coefficients, permutations and offset.
        """
        self._check_fitted()
        d = self.descriptor_
        D = self.centres_.shape[1]
        C, A, W = self._expanded
        if isinstance(d, InvariantDescriptor):
            program, columns = d.basis.program, d._columns()
            shift, scale = np.asarray(d.shift), np.asarray(d.scale)
        else:
            program, columns = Program.identity(D), np.arange(D)
            shift, scale = np.zeros(D), np.ones(D)
        head = KernelHead(program.n_outputs, columns, shift, scale, np.broadcast_to(self.length_scale_, (D,)),
                          C, A, W, self.perms_, self.energy_offset_, self.kernel_)
        return self._export_common(program=program, transform=d.transform, head=head, weights=None)


def reference_distances(R_ref) -> np.ndarray:
    """Pair distances (D,) of one reference geometry (N, 3) [Å]."""
    R_ref = np.asarray(R_ref, dtype=np.float64)
    return pair_distances(R_ref[None])[0]

