"""Linear least-squares fits on a PIP basis: ``E(R) = sum_j c_j p_j(x(R))``.

Energies (eV) and, when given, forces (eV/Å) are stacked into one weighted
least-squares problem

    min_c  sum_i w_i^2 (E_i - c.p_i)^2 + sum_i w_i^2 f^2 |F_i + c.dp_i/dR|^2 + lambda |c_scaled|^2

with structure weights ``w_i = E0 / (E0 + E_i - E_min)`` (off when ``E0`` is
None), a force weight ``f`` in Å, and ridge ``lambda`` on unit-norm columns.
It is solved through a QR factorisation (never the normal equations, which
lose accuracy here).  The Morse range ``a``, the ridge and (optionally) the
degree are chosen by K-fold cross-validation on the training set only.
"""
from __future__ import annotations

import time

import numpy as np
import scipy.linalg

from invariants import DistanceTransform, molien_series, pip_basis
from invariants.molien import cumulative

from ..data import Dataset
from ..molecule import Molecule
from ._base import ModelBase

__all__ = ["LinearPIPModel", "weighted_lstsq_path"]

DEFAULT_MORSE_GRID = (0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)
DEFAULT_RIDGE_GRID = (0.0, 1e-12, 1e-10, 1e-8, 1e-6)


def weighted_lstsq_path(A: np.ndarray, y: np.ndarray, ridges) -> list[np.ndarray]:
    """Ridge solutions of ``min |A c - y|^2 + lambda |D c|^2`` for several ``lambda``.

    Columns are scaled to unit norm (``D`` = the column norms), ``A`` is
    reduced by a QR factorisation and the small triangular factor by an SVD,
    so every ``lambda`` costs only a small matrix product.
    """
    norms = np.linalg.norm(A, axis=0)
    norms[norms == 0] = 1.0
    As = A / norms
    Q, Rq = scipy.linalg.qr(As, mode="economic", overwrite_a=True, check_finite=False)
    qty = Q.T @ y
    U, s, Vt = scipy.linalg.svd(Rq, full_matrices=False, check_finite=False)
    uty = U.T @ qty
    out = []
    cutoff = s[0] * max(A.shape) * np.finfo(float).eps
    for lam in ridges:
        if lam == 0:
            filt = np.where(s > cutoff, 1.0 / np.where(s > cutoff, s, 1.0), 0.0)
        else:
            filt = s / (s**2 + lam)
        out.append((Vt.T @ (filt * uty)) / norms)
    return out


class LinearPIPModel(ModelBase):
    """Linear PIP fit of energies and forces.

    Parameters
    ----------
    degree : int or None
        Maximum polynomial degree; None chooses it by cross-validation among
        the largest bases that the data can support.
    morse_a : float or None
        Morse range parameter [Å]; None chooses it from ``morse_grid`` by CV.
    morse_grid : tuple of float
        Candidate Morse ranges [Å].
    ridge : float or None
        Ridge parameter on unit-norm columns; None chooses it by CV.
    energy_weight_e0 : float or None
        ``E0`` [eV] of the weights ``E0/(E0 + E - E_min)``; None: equal weights.
    force_weight : float
        Weight of force rows relative to energy rows [Å].
    use_forces : bool or None
        Fit forces when the data has them (None: whenever present).
    cv_folds : int
    max_basis : int
        Upper limit on the basis size considered when ``degree`` is None.
    blocks : list of lists, optional
        Permutable like-atom blocks (default: all like atoms).
    random_state : int

    Attributes
    ----------
    molecule_ : Molecule
    basis_ : invariants.Basis
    coef_ : ndarray of shape (n_basis,) [eV]
    e_min_ : float  (lowest training energy, eV)
    r_min_ : ndarray of shape (n_variables,)  (shortest training distances, Å)
    cv_results_ : list of dict
    train_report_ : dict
    """

    kind = "linear_pip"
    cli_name = "linear"
    _parameter_constraints = {
        "degree": (type(None), int),
        "morse_a": (type(None), float, int),
        "ridge": (type(None), float, int),
        "energy_weight_e0": (type(None), float, int),
        "force_weight": (float, int),
        "cv_folds": (int,),
        "max_basis": (int,),
    }

    def __init__(self, *, degree=None, morse_a=None, morse_grid=DEFAULT_MORSE_GRID, ridge=None,
                 energy_weight_e0=None, force_weight=0.1, use_forces=None, cv_folds=4, max_basis=2000,
                 blocks=None, random_state=0):
        self.degree = degree
        self.morse_a = morse_a
        self.morse_grid = morse_grid
        self.ridge = ridge
        self.energy_weight_e0 = energy_weight_e0
        self.force_weight = force_weight
        self.use_forces = use_forces
        self.cv_folds = cv_folds
        self.max_basis = max_basis
        self.blocks = blocks
        self.random_state = random_state

    # ------------------------------------------------------------------- CLI
    @classmethod
    def add_cli_arguments(cls, parser, add_once) -> None:
        add_once(parser, "--ridge", type=float, default=None, help="ridge on unit-norm columns (default: by CV)")
        add_once(parser, "--force-weight", type=float, default=None,
                 help="weight of the force rows against the energy rows, Å (default 0.1)")
        add_once(parser, "--e0", type=float, default=None,
                 help="weight E0/(E0+E-Emin) on the energy rows, E0 in eV (default: equal weights)")

    @classmethod
    def params_from_cli(cls, args) -> dict:
        return cls._params_from_flags(args, {"degree": "degree", "morse_a": "morse_a", "ridge": "ridge",
                                             "force_weight": "force_weight", "e0": "energy_weight_e0"})

    # ---------------------------------------------------------------- checks
    def _validate_params(self):
        super()._validate_params()
        self._check_pip_params()
        if self.ridge is not None and self.ridge < 0:
            raise ValueError(f"ridge must be >= 0, got {self.ridge}")
        if self.energy_weight_e0 is not None and self.energy_weight_e0 <= 0:
            raise ValueError(f"energy_weight_e0 must be > 0 eV, got {self.energy_weight_e0}")
        if self.force_weight < 0:
            raise ValueError(f"force_weight must be >= 0 Å, got {self.force_weight}")
        if self.cv_folds < 2:
            raise ValueError(f"cv_folds must be >= 2, got {self.cv_folds}")

    # ------------------------------------------------------------ design
    def _rows(self, basis, transform, R, E, F, weights, forces: bool):
        """Weighted design matrix and targets for structures ``R``."""
        if forces:
            P, J = basis.cartesian_jacobian(R, transform)
            n, nb = P.shape
            fw = (weights * self.force_weight)[:, None, None]
            A = np.vstack([P * weights[:, None], (-J.transpose(0, 2, 3, 1) * fw[..., None]).reshape(-1, nb)])
            y = np.concatenate([E * weights, (F * fw).reshape(-1)])
        else:
            P = basis.cartesian_values(R, transform)
            A = P * weights[:, None]
            y = E * weights
        return A, y

    def _weights(self, E, e_min):
        if self.energy_weight_e0 is None:
            return np.ones_like(E)
        e0 = float(self.energy_weight_e0)
        return e0 / (e0 + E - e_min)

    def _candidate_degrees(self, group, n_rows):
        if self.degree is not None:
            return [int(self.degree)]
        limit = min(self.max_basis, max(10, n_rows // 3))
        sizes = cumulative(molien_series(group, 16))
        ok = [d for d in range(2, 17) if sizes[d] <= limit]
        if not ok:
            raise ValueError(f"too few data ({n_rows} rows) for even a degree-2 basis ({sizes[2]} terms)")
        return ok[-3:]

    # --------------------------------------------------------------- fit
    def fit(self, data: Dataset, *, progress=None) -> "LinearPIPModel":
        """Fit to a :class:`~pesfit.data.Dataset` (Å, eV, eV/Å).

        ``progress(step, total, message)`` is called as the cross-validation
        proceeds.
        """
        self._validate_params()
        t0 = time.perf_counter()
        data = self._check_training_data(data)
        forces = self._fits_forces(data)
        R, E = np.asarray(data.R), np.asarray(data.E, dtype=np.float64)
        F = np.asarray(data.F) if forces else None
        n = len(E)
        e_min = float(E.min())
        w = self._weights(E, e_min)
        group = self.molecule_group(data)
        rows_per = 1 + (3 * data.n_atoms if forces else 0)
        degrees = self._candidate_degrees(group, n * rows_per)
        a_grid = [float(self.morse_a)] if self.morse_a is not None else [float(a) for a in self.morse_grid]
        ridges = [float(self.ridge)] if self.ridge is not None else list(DEFAULT_RIDGE_GRID)
        need_cv = len(degrees) * len(a_grid) * len(ridges) > 1
        rng = np.random.default_rng(self.random_state)
        folds = np.array_split(rng.permutation(n), self.cv_folds) if need_cv else []
        if need_cv and min(len(f) for f in folds) < 2:
            raise ValueError(f"{n} structures are too few for {self.cv_folds}-fold cross-validation")
        self.cv_results_ = []
        total = len(degrees) * len(a_grid) * len(folds)
        step = 0
        bases = {}
        for d in degrees:
            bases[d] = pip_basis(group, d, size_limit=max(self.max_basis, 20_000))
            if bases[d].n_basis > n * rows_per:
                raise ValueError(f"degree {d} has {bases[d].n_basis} terms but only {n * rows_per} data rows; "
                                 "lower the degree or add data")
            for a in a_grid:
                if not need_cv:
                    continue
                transform = DistanceTransform("morse", a)
                sse = np.zeros(len(ridges))
                for k, val in enumerate(folds):
                    train = np.setdiff1d(np.arange(n), val)
                    A, y = self._rows(bases[d], transform, R[train], E[train], None if F is None else F[train],
                                      w[train], forces)
                    sols = weighted_lstsq_path(A, y, ridges)
                    Pv = bases[d].cartesian_values(R[val], transform)
                    for j, c in enumerate(sols):
                        sse[j] += np.sum((Pv @ c - E[val]) ** 2)
                    step += 1
                    if progress is not None:
                        progress(step, total, f"CV degree {d} a={a:g} fold {k + 1}/{len(folds)}")
                for j, lam in enumerate(ridges):
                    self.cv_results_.append({"degree": d, "morse_a": a, "ridge": lam,
                                             "cv_energy_rmse_meV": 1000 * float(np.sqrt(sse[j] / n))})
        if need_cv:
            best = min(self.cv_results_, key=lambda r: r["cv_energy_rmse_meV"])
            d, a, lam = best["degree"], best["morse_a"], best["ridge"]
        else:
            d, a, lam = degrees[0], a_grid[0], ridges[0]
        transform = DistanceTransform("morse", a)
        A, y = self._rows(bases[d], transform, R, E, F, w, forces)
        self.coef_ = weighted_lstsq_path(A, y, [lam])[0]
        self.basis_ = bases[d]
        self.molecule_ = Molecule(tuple(data.symbols), group, transform)
        self.hyperparameters_ = {"degree": d, "morse_a": a, "ridge": lam, "forces": forces,
                                 "energy_weight_e0": self.energy_weight_e0, "force_weight": self.force_weight}
        self._finish_fit(data, t0)
        return self

    # ----------------------------------------------------------- predict
    def _energy_and_gradient(self, R, gradient: bool):
        return self.basis_.cartesian_pullback(R, self.molecule_.transform, self.coef_, gradient=gradient)

    def _state(self) -> dict:
        return {"coef": self.coef_.tolist(), "basis": self.basis_.to_dict()}

    def _set_state(self, state: dict) -> None:
        from invariants import Basis

        self.basis_ = Basis.from_dict(state["basis"])
        self.coef_ = np.asarray(state["coef"], dtype=np.float64)
        if self.coef_.shape != (self.basis_.n_basis,):
            raise ValueError(f"model has {self.coef_.size} coefficients for a basis of {self.basis_.n_basis}")

    def export_spec(self) -> dict:
        """What the Fortran/C exporter needs (energy = weights . p, eV, Å)."""
        self._check_fitted()
        return self._export_common(program=self.basis_.program, weights=self.coef_.copy())
