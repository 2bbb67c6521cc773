"""Linear least-squares fits on a PIP basis: ``E(R) = sum_j c_j p_j(x(R))``.

Energies (eV) and, when given, forces (eV/Å) are stacked into one weighted
least-squares problem

    min_c  sum_i w_i^2 (E_i - c.p_i)^2 + sum_i w_i^2 f^2 |F_i + c.dp_i/dR|^2 + lambda |c_scaled|^2

with structure weights ``w_i = E0 / (E0 + E_i - E_min)`` (off when ``E0`` is
None), a force weight ``f`` in Å, and ridge ``lambda`` on unit-norm columns.
It is solved by the streamed QR factorisation of :mod:`.lstsq` (never the
normal equations, which lose accuracy here): the rows are built and factored
in blocks of structures, so memory does not grow with the data.  The Morse
range ``a``, the ridge and (optionally) the degree are chosen by K-fold
cross-validation on the training set only, from one factor per fold.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from invariants import DistanceTransform, molien_series, pip_basis
from invariants.molien import cumulative

from ..data import Dataset
from ..molecule import Molecule
from ._base import ModelBase
from .lstsq import FoldFactors, factor_blocks, fold_labels, plan_tasks, ridge_path

__all__ = ["LinearPIPModel", "PIPDesignRows"]

DEFAULT_MORSE_GRID = (0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)
DEFAULT_RIDGE_GRID = (0.0, 1e-12, 1e-10, 1e-8, 1e-6)


@dataclass(frozen=True)
class PIPDesignRows:
    """Weighted rows of a linear PIP fit for any subset of the structures.

    Calling it with structure indices gives the fit rows ``M = [A | y]``
    (energy rows ``w_i p_i | w_i E_i``, then force rows
    ``-w_i f dp_i/dR | w_i f F_i`` per atom and direction) and, with
    ``validation``, the unweighted energy rows ``V = [P | E]`` on which a
    validation fold is scored.  It holds the data by reference (arrays may be
    memory-mapped) and is what a Dask task receives after :meth:`restrict`.

    Parameters
    ----------
    basis : invariants.Basis
    transform : DistanceTransform
    R : ndarray of shape (n, N, 3) [Å]
    E : ndarray of shape (n,) [eV]
    F : ndarray of shape (n, N, 3) [eV/Å] or None (energy rows only)
    weights : ndarray of shape (n,)
    force_weight : float [Å]
    validation : bool
    """

    basis: object
    transform: DistanceTransform
    R: np.ndarray
    E: np.ndarray
    F: np.ndarray | None
    weights: np.ndarray
    force_weight: float
    validation: bool = False

    @property
    def n_columns(self) -> int:
        return self.basis.n_basis + 1

    @property
    def rows_per_structure(self) -> int:
        return 1 + (3 * self.R.shape[1] if self.F is not None else 0)

    def restrict(self, start: int, stop: int) -> "PIPDesignRows":
        """The same rows for structures ``start:stop`` only (renumbered from 0)."""
        return replace(self, R=self.R[start:stop], E=self.E[start:stop], weights=self.weights[start:stop],
                       F=None if self.F is None else self.F[start:stop])

    def __call__(self, idx):
        R = np.asarray(self.R[idx], dtype=np.float64)
        E = np.asarray(self.E[idx], dtype=np.float64)
        w = self.weights[idx]
        n, nb = len(idx), self.basis.n_basis
        M = np.empty((n * self.rows_per_structure, nb + 1), order="F")
        if self.F is not None:
            P, J = self.basis.cartesian_jacobian(R, self.transform)
            fw = w * self.force_weight
            forces = M[n:, :nb].reshape(n, R.shape[1], 3, nb)
            np.multiply(J.transpose(0, 2, 3, 1), -fw[:, None, None, None], out=forces)
            del J
            M[n:, nb] = (np.asarray(self.F[idx], dtype=np.float64) * fw[:, None, None]).reshape(-1)
        else:
            P = self.basis.cartesian_values(R, self.transform)
        np.multiply(P, w[:, None], out=M[:n, :nb])
        M[:n, nb] = E * w
        V = np.column_stack([P, E]) if self.validation else None
        return M, V


def _progress_at(progress, step: int, total: int, where: str):
    """``progress(done, n_tasks)`` of one configuration as fractional steps of the whole fit."""
    if progress is None:
        return None
    return lambda done, n_tasks: progress(step + done / n_tasks, total, f"{where}: task {done}/{n_tasks}")


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
    #: fitted block by block by :mod:`.lstsq` (so ``executors.run_on`` and ``pesfit fit --dask`` apply)
    streamed_fit = True
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
    def _design(self, basis, transform, R, E, F, weights, validation: bool) -> PIPDesignRows:
        """Weighted design rows (``F`` None: energies only) for the streamed solver."""
        return PIPDesignRows(basis, transform, R, E, F, weights, float(self.force_weight), validation)

    def _factor(self, rows: PIPDesignRows, labels, n_folds: int, progress=None) -> FoldFactors:
        """Fold factors of all structures, block by block (``labels`` None: one fold)."""
        tasks = plan_tasks(len(rows.E), rows.rows_per_structure, rows.n_columns, n_folds)
        return factor_blocks(rows, tasks, labels, n_folds, rows.n_columns, rows.n_columns, progress=progress)

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
        labels = fold_labels(n, self.cv_folds, self.random_state) if need_cv else None
        if need_cv and np.bincount(labels, minlength=self.cv_folds).min() < 2:
            raise ValueError(f"{n} structures are too few for {self.cv_folds}-fold cross-validation")
        self.cv_results_ = []
        step, total = 0, len(degrees) * len(a_grid)
        bases, factor_of = {}, {}
        for d in degrees:
            bases[d] = pip_basis(group, d, size_limit=max(self.max_basis, 20_000))
            if bases[d].n_basis > n * rows_per:
                raise ValueError(f"degree {d} has {bases[d].n_basis} terms but only {n * rows_per} data rows; "
                                 "lower the degree or add data")
            for a in a_grid:
                rows = self._design(bases[d], DistanceTransform("morse", a), R, E, F, w, need_cv)
                factors = self._factor(rows, labels, self.cv_folds if need_cv else 1,
                                       _progress_at(progress, step, total, f"degree {d} a={a:g}"))
                step += 1
                if not need_cv:
                    factor_of[d, a] = factors.all_rows()
                    continue
                rmse = 1000 * np.sqrt(factors.cv_sse(ridges) / n)
                for j, lam in enumerate(ridges):
                    self.cv_results_.append({"degree": d, "morse_a": a, "ridge": lam,
                                             "cv_energy_rmse_meV": float(rmse[j])})
                best = min(self.cv_results_, key=lambda r: r["cv_energy_rmse_meV"])
                if (best["degree"], best["morse_a"]) == (d, a):  # keep only the best configuration's factor
                    factor_of = {(d, a): factors.all_rows()}
        if need_cv:
            d, a, lam = best["degree"], best["morse_a"], best["ridge"]
        else:
            d, a, lam = degrees[0], a_grid[0], ridges[0]
        transform = DistanceTransform("morse", a)
        self.coef_ = ridge_path(factor_of[d, a], [lam])[0]
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
