"""PIP-GPR: Gaussian process regression on permutationally invariant polynomials.

Features are PIPs (or fundamental invariants) of Morse variables
``exp(-r/a)``, standardised on the training set, so the model is invariant
by construction.  The covariance is a Gaussian (RBF) kernel with one length
scale per feature (ARD), a signal variance ``s2`` and noise variances for
energies (and projected gradients):

    cov(E(R), E(R')) = s2 exp(-sum_k (x_k - x'_k)^2 / (2 l_k^2)) + s2 lam_e [R = R'].

Hyperparameters maximise the log marginal likelihood with restarts: with
energies alone through scikit-learn's ``GaussianProcessRegressor``
(``ConstantKernel * RBF + WhiteKernel``); with gradients through the
derivative kernels of :mod:`.kernels` and an analytic gradient of the
likelihood (:func:`~.training.gp_objective`), on at most
``hyper_max_structures`` structures.  The Morse range ``a`` is chosen by
the log marginal likelihood of energy-only fits (their closed-form
leave-one-out errors are recorded in ``cv_results_``).  The predictive standard deviation of the energy,

    sd(R) = sqrt(s2 (k(R, R) - k_*^T (K + diag(lam))^-1 k_*)),

comes from :meth:`GPRModel.predict_std` (the factorisation is rebuilt from
the stored training coordinates on first use).  Maximum likelihood with few
structures is overconfident, so ``s2`` is finally set so that the
closed-form leave-one-structure-out energy errors, divided by their
predicted standard deviations, have unit mean square
(:func:`_loo_calibrated_variance`).  With energies alone and at most
``CV_CALIBRATION_MAX_STRUCTURES`` structures the ML-II length scales are
fitted to the very points that are left out, which makes those errors
optimistic (on ``h2co`` with 100-200 structures the test errors were 1.3-1.45
times larger); there ``s2`` is scaled instead so that 68.3% of the 5-fold
cross-validation errors, with the hyperparameters refitted on each fold, fall
within +-1 sd (:meth:`GPRModel._cv_calibration`).
"""
from __future__ import annotations

import time
import warnings

import numpy as np
import scipy.linalg

from invariants import DistanceTransform, fundamental_basis, pip_basis

from ...data import Dataset
from ...molecule import Molecule
from .base import KernelModel
from .descriptors import InvariantDescriptor, internal_rank, project_jacobian
from .kernels import kernel_matrix

__all__ = ["GPRModel", "default_degree"]

DEFAULT_MORSE_GRID = (1.0, 1.5, 2.0)
#: the Morse range is chosen by the energy likelihood of at most this many structures
SCAN_MAX_STRUCTURES = 1000
#: energy-only fits of at most this many structures calibrate s2 by cross-validation (see module docstring)
CV_CALIBRATION_MAX_STRUCTURES = 300
#: fraction of a normal distribution within +-1 sd
ONE_SIGMA = 0.6826894921370859


def default_degree(group, *, max_degree: int = 4, max_features: int = 60) -> int:
    """Smallest PIP degree giving at least 2.5 times as many features as distances (within limits)."""
    from invariants.molien import cumulative, molien_series

    sizes = cumulative(molien_series(group, max_degree))
    target = 2.5 * group.n_variables
    for d in range(2, max_degree + 1):
        if sizes[d] - 1 >= target or sizes[min(d + 1, max_degree)] - 1 > max_features:
            return d
    return max_degree


class GPRModel(KernelModel):
    """Gaussian process on PIP (or FI) features with gradients and uncertainty.

    Parameters
    ----------
    basis : {"pip", "fi"}
    degree : int or None
        Maximum degree of the invariants (None: :func:`default_degree`).
    morse_a : float or None
        Morse range [Å]; None: the best of ``morse_grid`` by likelihood.
    morse_grid : tuple of float
    ard : bool
        One length scale per feature (else one for all).
    use_forces : bool or None
        Observe gradients too (None: whenever the data has forces).
    restarts : int
        Extra random starts of the likelihood maximisation.
    hyper_max_structures : int
        Maximise the likelihood on at most this many structures.
    blocks, generators : optional
        Declared like-atom group (default: all like atoms).
    random_state : int

    Attributes
    ----------
    signal_variance_ : float
        ``s2`` [eV^2].
    noise_ : dict
        ``lam_e`` and ``lam_g`` (relative to ``s2``).
    train_R_ : ndarray of shape (n, N, 3)
        Training coordinates (for the predictive variance).
    lml_ : float
        Log marginal likelihood at the optimum (of the structures it was maximised on).
    """

    kind = "kernel_gpr"
    cli_name = "gpr"
    _parameter_constraints = {
        "basis": (str,),
        "degree": (type(None), int),
        "morse_a": (type(None), float, int),
        "morse_grid": (tuple, list),
        "restarts": (int,),
        "hyper_max_structures": (int,),
        "random_state": (int,),
    }

    def __init__(self, *, basis="pip", degree=None, morse_a=None, morse_grid=DEFAULT_MORSE_GRID, ard=True,
                 use_forces=None, restarts=2, hyper_max_structures=300, blocks=None, generators=None,
                 random_state=0):
        self.basis = basis
        self.degree = degree
        self.morse_a = morse_a
        self.morse_grid = morse_grid
        self.ard = ard
        self.use_forces = use_forces
        self.restarts = restarts
        self.hyper_max_structures = hyper_max_structures
        self.blocks = blocks
        self.generators = generators
        self.random_state = random_state

    @classmethod
    def add_cli_arguments(cls, parser, add_once) -> None:
        add_once(parser, "--restarts", type=int, default=None,
                 help="gpr: extra starts of the likelihood maximisation (default 2)")

    @classmethod
    def params_from_cli(cls, args) -> dict:
        return cls._params_from_flags(args, {"degree": "degree", "morse_a": "morse_a", "restarts": "restarts"})

    def _validate_params(self):
        super()._validate_params()
        if self.basis not in ("pip", "fi"):
            raise ValueError(f"GPRModel: basis must be 'pip' or 'fi', got {self.basis!r}")
        self._check_pip_params()
        if self.restarts < 0:
            raise ValueError(f"GPRModel: restarts must be >= 0, got {self.restarts}")
        if self.hyper_max_structures < 2:
            raise ValueError(f"GPRModel: hyper_max_structures must be >= 2, got {self.hyper_max_structures}")
        if not isinstance(self.ard, (bool, np.bool_)):
            raise ValueError(f"GPRModel: ard must be True or False, got {self.ard!r}")

    # ------------------------------------------------------------------ fit
    def _sklearn_fit(self, X, E, restarts):
        """Energy-only ML-II through scikit-learn; returns (length scales, s2, lam_e, lml)."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

        D = X.shape[1]
        ls0 = np.ones(D) if self.ard else 1.0
        kernel = (ConstantKernel(1.0, (1e-3, 1e6)) * RBF(ls0, (1e-2, 1e4))
                  + WhiteKernel(1e-6, (1e-12, 1e-1)))
        gp = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=restarts,
                                      random_state=self.random_state)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gp.fit(X, E)
        k = gp.kernel_
        c = float(k.k1.k1.constant_value)
        ls = np.asarray(k.k1.k2.length_scale, dtype=np.float64)
        noise = float(k.k2.noise_level) + gp.alpha
        s2 = c * float(gp._y_train_std) ** 2
        return ls, s2, noise / c, float(gp.log_marginal_likelihood_value_)

    def _cv_calibration(self, X, E, folds: int = 10) -> float:
        """Factor for ``s2``: squared 68.3% quantile of |error|/sd over folds with refitted hyperparameters."""
        rng = np.random.default_rng(self.random_state + 1)
        order = rng.permutation(len(X))
        z = []
        for k in range(folds):
            val = order[k::folds]
            fit = np.setdiff1d(order, val)
            ls, s2, lam_e, _ = self._sklearn_fit(X[fit], E[fit], 0)
            U, Uv = X[fit] / ls, X[val] / ls
            A = _gp_matrix(U, None, lam_e, 0.0, False)
            L = scipy.linalg.cholesky(A, lower=True, check_finite=False)
            Ks = np.exp(-0.5 * ((Uv[:, None, :] - U[None, :, :]) ** 2).sum(-1))
            mu = E[fit].mean()
            c = scipy.linalg.cho_solve((L, True), E[fit] - mu, check_finite=False)
            V = scipy.linalg.solve_triangular(L, Ks.T, lower=True, check_finite=False)
            var = s2 * np.maximum(1.0 - np.sum(V * V, axis=0), 1e-12)
            z.append(np.abs(E[val] - (mu + Ks @ c)) / np.sqrt(var))
        return float(np.quantile(np.concatenate(z), ONE_SIGMA) ** 2)

    def fit(self, data: Dataset, *, progress=None) -> "GPRModel":
        """Fit a :class:`~pesfit.data.Dataset` (Å, eV, eV/Å) by maximum likelihood."""
        from .training import KernelData, gp_maximize_likelihood

        self._validate_params()
        t0 = time.perf_counter()
        data = self._check_training_data(data)
        forces = self._fits_forces(data)
        group = self.molecule_group(data)
        degree = self.degree if self.degree is not None else default_degree(group)
        basis = pip_basis(group, degree) if self.basis == "pip" else fundamental_basis(group, degree)
        n_features = int(np.sum(np.asarray(basis.degrees) > 0))
        n_hyper = (n_features if self.ard else 1) + 2 + (1 if forces else 0)
        if data.n_structures < n_hyper:
            raise ValueError(f"PIP-GPR has {n_hyper} hyperparameters (length scales, signal and noise variances) "
                             f"but only {data.n_structures} training structures; give more data, use ard=False "
                             "or a lower degree")
        R = np.asarray(data.R, dtype=np.float64)
        E = np.asarray(data.E, dtype=np.float64)
        rng = np.random.default_rng(self.random_state)
        sub = np.arange(len(R))
        if len(R) > self.hyper_max_structures:
            sub = np.sort(rng.choice(len(R), self.hyper_max_structures, replace=False))
        scan_sub = np.arange(len(R))
        if len(R) > SCAN_MAX_STRUCTURES:
            scan_sub = np.sort(rng.choice(len(R), SCAN_MAX_STRUCTURES, replace=False))
        grid = [float(self.morse_a)] if self.morse_a is not None else [float(a) for a in self.morse_grid]
        # Morse range from the likelihood of energy-only GPs (hyperparameters by scikit-learn)
        scan = []
        for k, a in enumerate(grid):
            desc = InvariantDescriptor.standardized(basis, DistanceTransform("morse", a), R)
            if len(grid) > 1:
                Xs = desc.values(R[scan_sub])
                ls, s2, lam_e, lml = self._sklearn_fit(Xs, E[scan_sub], 0)
                loo = _energy_loo_rmse(Xs, E[scan_sub], ls, lam_e)
                scan.append({"morse_a": a, "lml": lml, "loo_energy_rmse": loo})
                if progress is not None:
                    progress(k + 1, len(grid) + 1, f"Morse a={a:g}: energy LML {lml:.1f}, LOO RMSE {loo:.3g} eV")
        a = max(scan, key=lambda s: s["lml"])["morse_a"] if scan else grid[0]
        descriptor = InvariantDescriptor.standardized(basis, DistanceTransform("morse", a), R)
        if not forces:
            X = descriptor.values(R)
            ls, s2, lam_e, lml = self._sklearn_fit(X, E, self.restarts)
            lam_g = 0.0
            kd = KernelData(X, None, E, None)
            history = []
        else:
            kd = self._observations(descriptor, data, True)
            ls0, _, lam0, _ = self._sklearn_fit(kd.X[sub], E[sub], 0)
            theta0 = np.concatenate([np.log(np.atleast_1d(ls0)), [np.log(max(lam0, 1e-10)), np.log(1e-6)]])
            n_ell = n_features if self.ard else 1
            bounds = [(np.log(1e-2), np.log(1e4))] * n_ell + [(np.log(1e-12), 0.0), (np.log(1e-12), np.log(10.0))]
            theta, neg, history = gp_maximize_likelihood(kd.subset(sub), theta0, bounds, use_g=True, ard=self.ard,
                                                         restarts=self.restarts, seed=self.random_state,
                                                         progress=progress)
            ls = np.exp(theta[:n_ell]) if self.ard else float(np.exp(theta[0]))
            lam_e, lam_g = float(np.exp(theta[n_ell])), float(np.exp(theta[n_ell + 1]))
            lml = -neg
            s2 = None  # profiled on all structures by the final solve
        ell = np.asarray(ls, dtype=np.float64)
        # final solve with our own factorisation (the same one the variance uses)
        sol, L, s2_fit = _gp_solve(kd, ell, lam_e, lam_g, forces)
        s2 = s2 if s2 is not None else s2_fit
        if not forces and len(R) <= CV_CALIBRATION_MAX_STRUCTURES and len(R) >= 10:
            s2_cal = s2 * self._cv_calibration(kd.X, E)
        else:
            s2_cal = _loo_calibrated_variance(L, kd, sol, forces)
        calibration = s2_cal / s2 if s2_cal is not None else 1.0
        self.molecule_ = Molecule(tuple(data.symbols), group, DistanceTransform("morse", a))
        self._set_expansion(descriptor, "gaussian", ell, np.arange(n_features)[None], kd.X, sol.alpha, sol.w, sol.mu)
        self.signal_variance_ = float(s2_cal if s2_cal is not None else s2)
        self.calibration_ = float(calibration)
        self.noise_ = {"lam_e": float(lam_e), "lam_g": float(lam_g)}
        self.train_R_ = R.copy()
        self.use_gradients_ = forces
        self.lml_ = float(lml)
        self.cv_results_ = scan + history
        self._factor = L
        self.hyperparameters_ = {"basis": self.basis, "degree": degree, "n_features": n_features, "morse_a": a,
                                 "length_scale": ell.tolist() if ell.ndim else float(ell),
                                 "signal_variance": self.signal_variance_, "calibration": self.calibration_,
                                 "noise": self.noise_,
                                 "forces": forces, "lml": self.lml_}
        self._finish_fit(data, t0)
        return self

    # -------------------------------------------------------------- variance
    def _training_system(self):
        """Scaled descriptors and projected Jacobians ``(U, M / l)`` of the stored training structures."""
        ell = self.length_scale_
        if not self.use_gradients_:
            return self.descriptor_.values(self.train_R_) / ell, None
        X, J = self.descriptor_.values_and_jacobian(self.train_R_)
        M, _ = project_jacobian(J, internal_rank(self.train_R_.shape[1], X.shape[1]))
        return X / ell, M / (ell[:, None] if ell.ndim else ell)

    def predict_std(self, R) -> np.ndarray:
        """Predictive standard deviation of the energy [eV] at coordinates ``R`` (n, N, 3) or (N, 3).

        ``sd^2 = s2 (1 - k_*^T A^-1 k_*)`` with ``A = K + diag(lam)`` over the
        training observations (energies, and projected gradients if fitted).
        """
        self._check_fitted()
        R, single = self._check_coordinates(R)
        ell = self.length_scale_
        if getattr(self, "_train_scaled", None) is None:
            self._train_scaled = self._training_system()
        if getattr(self, "_factor", None) is None:
            U, Ms = self._train_scaled
            A = _gp_matrix(U, Ms, self.noise_["lam_e"], self.noise_["lam_g"], self.use_gradients_)
            self._factor = scipy.linalg.cholesky(A, lower=True, overwrite_a=True, check_finite=False)
        U, Ms = self._train_scaled
        Uq = self.descriptor_.values(R) / ell
        perms = np.arange(U.shape[1])[None]
        Ks = kernel_matrix("gaussian", perms, Uq, None, U, Ms if self.use_gradients_ else None, energies_a=True,
                           gradients_a=False, energies_b=True, gradients_b=self.use_gradients_)
        V = scipy.linalg.solve_triangular(self._factor, Ks.T, lower=True, check_finite=False)
        var = self.signal_variance_ * np.maximum(1.0 - np.einsum("ij,ij->j", V, V), 0.0)
        sd = np.sqrt(var)
        return sd[0] if single else sd

    def predict(self, R, forces: bool = False, *, return_std: bool = False):
        """Energies (and forces), plus the energy standard deviation with ``return_std=True``."""
        out = super().predict(R, forces=forces)
        if not return_std:
            return out
        sd = self.predict_std(R)
        return (*out, sd) if forces else (out, sd)

    # ----------------------------------------------------------------- state
    def _state(self) -> dict:
        state = super()._state()
        state["gp"] = {"signal_variance": self.signal_variance_, "noise": dict(self.noise_),
                       "gradients": bool(self.use_gradients_), "train_R": self.train_R_.tolist(),
                       "lml": self.lml_}
        return state

    def _set_state(self, state: dict) -> None:
        super()._set_state(state)
        gp = state["gp"]
        self.signal_variance_ = float(gp["signal_variance"])
        self.noise_ = {"lam_e": float(gp["noise"]["lam_e"]), "lam_g": float(gp["noise"]["lam_g"])}
        self.use_gradients_ = bool(gp["gradients"])
        self.train_R_ = np.asarray(gp["train_R"], dtype=np.float64)
        self.lml_ = float(gp["lml"])
        n_atoms = len(self.molecule_.symbols)
        if self.train_R_.shape != (self.centres_.shape[0], n_atoms, 3):
            raise ValueError(f"model state train_R has shape {self.train_R_.shape}, expected "
                             f"({self.centres_.shape[0]}, {n_atoms}, 3)")
        self._factor = None


def _energy_loo_rmse(X, E, ell, lam_e) -> float:
    """Closed-form leave-one-out RMSE [eV] of an energy-only GP: ``e_i = c_i / (A^-1)_ii``."""
    U = X / np.asarray(ell, dtype=np.float64)
    A = _gp_matrix(U, None, lam_e, 0.0, False)
    try:
        L = scipy.linalg.cholesky(A, lower=True, overwrite_a=True, check_finite=False)
    except np.linalg.LinAlgError:
        return float("inf")
    c = scipy.linalg.cho_solve((L, True), E - E.mean(), check_finite=False)
    B, info = scipy.linalg.lapack.dpotri(L, lower=1, overwrite_c=1)
    return float(np.sqrt(np.mean((c / np.diag(B)) ** 2))) if info == 0 else float("inf")


def _gp_matrix(U, Ms, lam_e, lam_g, use_g):
    n = U.shape[0]
    perms = np.arange(U.shape[1])[None]
    A = kernel_matrix("gaussian", perms, U, Ms if use_g else None, energies_a=True, gradients_a=use_g,
                      energies_b=True, gradients_b=use_g)
    m = A.shape[0]
    A[np.arange(n), np.arange(n)] += lam_e
    if use_g:
        A[np.arange(n, m), np.arange(n, m)] += lam_g
    return A


def _gp_solve(kd, ell, lam_e, lam_g, use_g):
    """Coefficients of the posterior mean; returns (solution, Cholesky factor, profiled s2)."""
    from .training import KernelSolution, _coefficients, _targets

    U, Ms = kd.scaled(ell)
    A = _gp_matrix(U, Ms, lam_e, lam_g, use_g)
    n = kd.n
    mu = float(kd.E.mean())
    y = _targets(kd, np.arange(n), True, use_g, mu)
    L = scipy.linalg.cholesky(A, lower=True, overwrite_a=True, check_finite=False)
    c = scipy.linalg.cho_solve((L, True), y, check_finite=False)
    alpha, w = _coefficients(kd, np.arange(n), c, True, use_g, Ms)
    s2 = float(y @ c) / len(y)
    return KernelSolution(alpha, w, mu, 0.0, {"name": "cholesky"}, c), L, s2


def _loo_calibrated_variance(L, kd, sol, use_g):
    """Signal variance ``s2`` that calibrates the +-1 sd leave-one-out coverage (None if undefined).

    Leaving out structure ``i`` (its energy and gradient rows, block ``b``)
    gives the energy error ``e_i = (B_bb^-1 c_b)_E`` with variance
    ``s2 (B_bb^-1)_EE`` (``B = A^-1``, ``c = B y``); ``sqrt(s2)`` is the
    mean square of ``e_i / sqrt((B_bb^-1)_EE)`` (leave-one-out z-scores of unit variance).
    """
    n = kd.n
    r = kd.r if use_g else 0
    B, info = scipy.linalg.lapack.dpotri(L.copy(order="F"), lower=1)
    if info != 0:
        return None
    idx = np.arange(n)
    blocks = np.concatenate([idx[:, None]] + ([n + idx[:, None] * r + np.arange(r)] if use_g else []), axis=1)
    Bii = B[blocks[:, :, None], blocks[:, None, :]]
    Bii = np.tril(Bii) + np.swapaxes(np.tril(Bii, -1), 1, 2)
    del B
    # coefficients of the fit in system order: energies then projected gradients
    y_coef = np.concatenate([sol_c for sol_c in _system_coefficients(sol, kd, use_g)])
    ci = y_coef[blocks]
    inv = np.linalg.inv(Bii)
    err = np.einsum("npq,nq->np", inv, ci)[:, 0]
    var = inv[:, 0, 0]
    good = var > 0
    if good.sum() < 2:
        return None
    s2 = float(np.mean(err[good] ** 2 / var[good]))
    return s2 if np.isfinite(s2) and s2 > 0 else None


def _system_coefficients(sol, kd, use_g):
    """The solution vector ``c`` of the system, in its row order."""
    out = [sol.raw[:kd.n]]
    if use_g:
        out.append(sol.raw[kd.n:])
    return out
