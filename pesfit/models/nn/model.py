"""PIP-NN and FI-NN models: a multilayer perceptron on permutation-invariant polynomials.

The energy of a structure ``R`` [Å] is

    E(R) = e_shift + e_scale * y(z),   z_j = (p_j(x(R)) - x_mean_j) / x_scale_j,

with ``x = exp(-r/a)`` the Morse-transformed distances, ``p`` the PIPs
(:func:`invariants.pip_basis`) or fundamental invariants
(:func:`invariants.fundamental_basis`) of degree >= 1 and ``y`` an MLP
(:mod:`.network`).  Forces follow by the chain rule through the network and
the basis's analytic Jacobian,

    F = -dE/dR = -e_scale sum_j (dy/dz_j) / x_scale_j * dp_j/dR,

computed in one compiled pass (:mod:`._kernels`).  An ensemble of ``K``
networks (different seeds, starts and validation splits) predicts the mean
and reports the standard deviation of the members as an uncertainty.

Training (:mod:`.train`, needs torch, imported only inside :meth:`fit`) fits
energies and, when given, forces; prediction needs only NumPy and Numba.
"""
from __future__ import annotations

import time

import numpy as np

from invariants import Basis, DistanceTransform, fundamental_basis, molien_series, pip_basis
from invariants.molien import cumulative

from ...data import Dataset
from ...export_heads import NetworkHead
from ...molecule import Molecule
from .._base import ModelBase
from . import _kernels
from .network import ACTIVATIONS, layer_sizes, n_parameters

__all__ = ["PIPNNModel", "FINNModel", "NN_STATE_VERSION", "internal_directions"]

#: version of the ``state`` block of PIP-NN / FI-NN model files
NN_STATE_VERSION = 1
#: default Morse range [Å]; None chooses it from DEFAULT_MORSE_GRID by a linear-PIP cross-validation
DEFAULT_MORSE_A = 1.5
DEFAULT_MORSE_GRID = (1.0, 1.5, 2.0, 2.5, 3.0)
OPTIMIZERS = ("lm", "lbfgs", "adam")
#: default upper limit on the number of network inputs when the degree is chosen automatically
DEFAULT_MAX_INPUTS = 100


def internal_directions(Kc: np.ndarray, tol: float = 1e-9):
    """Orthonormal bases ``U`` (n, 3N, m) of the row spaces of input Jacobians ``Kc`` (n, d0, 3N).

    Invariant energies have gradients in these spaces (the non-rigid motions),
    so ``|U^T g| = |g|`` for any such gradient; ``m`` is the largest numerical
    rank found (at most ``3N - 6``).
    """
    _, s, Vh = np.linalg.svd(Kc, full_matrices=True)
    m = int((s > tol * np.maximum(s[:, :1], 1e-300)).sum(axis=1).max())
    return Vh[:, :m, :].transpose(0, 2, 1)


class _NNModel(ModelBase):
    """Shared estimator of :class:`PIPNNModel` and :class:`FINNModel` (see their docstrings)."""

    basis_kind = "pip"
    _parameter_constraints = {
        "degree": (type(None), int),
        "morse_a": (type(None), float, int),
        "hidden": (tuple, list),
        "activation": (str,),
        "optimizer": (str,),
        "force_weight": (float, int),
        "force_huber": (type(None), float, int),
        "max_epochs": (int,),
        "patience": (int,),
        "validation_fraction": (float, int),
        "learning_rate": (float, int),
        "batch_size": (int,),
        "ensemble": (int,),
        "n_jobs": (type(None), int),
        "max_inputs": (int,),
        "screen_epochs": (int,),
        "random_state": (int,),
    }

    def __init__(self, *, degree=None, morse_a=DEFAULT_MORSE_A, morse_grid=DEFAULT_MORSE_GRID, hidden=(25, 25),
                 activation="tanh", optimizer="lm", force_weight=0.1, force_huber=0.5, use_forces=None,
                 max_epochs=200, patience=30, validation_fraction=0.1, learning_rate=1e-3, batch_size=64,
                 ensemble=1, n_jobs=None, max_inputs=DEFAULT_MAX_INPUTS, screen_epochs=30, blocks=None,
                 random_state=0):
        self.degree = degree
        self.morse_a = morse_a
        self.morse_grid = morse_grid
        self.hidden = hidden
        self.activation = activation
        self.optimizer = optimizer
        self.force_weight = force_weight
        self.force_huber = force_huber
        self.use_forces = use_forces
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.ensemble = ensemble
        self.n_jobs = n_jobs
        self.max_inputs = max_inputs
        self.screen_epochs = screen_epochs
        self.blocks = blocks
        self.random_state = random_state

    # ------------------------------------------------------------------- CLI
    @classmethod
    def add_cli_arguments(cls, parser, add_once) -> None:
        add_once(parser, "--hidden", default=None, help="PIP-NN/FI-NN hidden layer sizes (default 25,25)")
        add_once(parser, "--activation", default=None, choices=sorted(ACTIVATIONS),
                 help="PIP-NN/FI-NN activation (default tanh)")
        add_once(parser, "--optimizer", default=None, choices=list(OPTIMIZERS),
                 help="PIP-NN/FI-NN optimiser: Levenberg-Marquardt (default), L-BFGS or Adam")
        add_once(parser, "--ensemble", type=int, default=None,
                 help="PIP-NN/FI-NN: train K networks, predict the mean (default 1)")
        add_once(parser, "--epochs", type=int, default=None, help="PIP-NN/FI-NN: maximum training epochs (default 200)")
        add_once(parser, "--force-weight", type=float, default=None,
                 help="weight of the force rows against the energy rows, Å (default 0.1)")
        add_once(parser, "--seed", type=int, default=None,
                 help="random seed of the splits and initial weights (default 0)")

    @classmethod
    def params_from_cli(cls, args) -> dict:
        params = cls._params_from_flags(args, {"degree": "degree", "morse_a": "morse_a", "activation": "activation",
                                               "optimizer": "optimizer", "ensemble": "ensemble",
                                               "epochs": "max_epochs", "force_weight": "force_weight",
                                               "seed": "random_state"})
        hidden = getattr(args, "hidden", None)
        if hidden is not None:
            try:
                params["hidden"] = tuple(int(h) for h in str(hidden).replace(" ", "").split(",") if h != "")
            except ValueError:
                raise ValueError(f"--hidden must be comma-separated layer sizes such as 20,20, got {hidden!r}") \
                    from None
        return params

    # ---------------------------------------------------------------- checks
    def _validate_params(self):
        super()._validate_params()
        self._check_pip_params()
        if len(self.hidden) == 0:
            raise ValueError("hidden must list at least one hidden layer size, e.g. hidden=(20, 20)")
        for h in self.hidden:
            if isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1:
                raise ValueError(f"hidden layer sizes must be integers >= 1, got {tuple(self.hidden)}; "
                                 "a layer with zero units cannot carry the signal")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.force_weight < 0:
            raise ValueError(f"force_weight must be >= 0 Å, got {self.force_weight}")
        if self.force_huber is not None and self.force_huber <= 0:
            raise ValueError(f"force_huber must be > 0 eV/Å or None (plain least squares), got {self.force_huber}")
        if self.max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {self.max_epochs}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1 epoch, got {self.patience}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.ensemble < 1:
            raise ValueError(f"ensemble must be >= 1 network, got {self.ensemble}")
        if self.n_jobs is not None and self.n_jobs < 1:
            raise ValueError(f"n_jobs must be >= 1 or None, got {self.n_jobs}")
        if self.max_inputs < 1:
            raise ValueError(f"max_inputs must be >= 1, got {self.max_inputs}")
        if self.screen_epochs < 1:
            raise ValueError(f"screen_epochs must be >= 1, got {self.screen_epochs}")

    # ----------------------------------------------------------------- basis
    def _make_basis(self, group, degree) -> Basis:
        if self.basis_kind == "pip":
            return pip_basis(group, degree)
        return fundamental_basis(group, degree)

    def _candidate_bases(self, group) -> list[Basis]:
        """Input bases to choose from: the given degree, else the largest one or two within ``max_inputs``.

        Without a ``degree`` the candidates are the bases of degree 2 .. 6
        (PIP) or 1 .. 9 (FI) with at most ``max_inputs`` non-constant
        functions.  PIP-NN keeps the largest two (the larger first), and
        :meth:`fit` picks one of them by a short validation run.  FI-NN keeps
        the full set of fundamental invariants when it fits (it tells every
        pair of geometries apart), else the two largest truncations.  Degree
        1 is kept even when it exceeds ``max_inputs``.
        """
        if self.degree is not None:
            basis = self._make_basis(group, int(self.degree))
            if int((basis.degrees > 0).sum()) == 0:
                raise ValueError(f"the degree-{self.degree} basis has no non-constant functions; raise the degree")
            return [basis]
        lo, hi = (2, 6) if self.basis_kind == "pip" else (1, 9)
        fitting, truncated = [], False
        for d in range(1, hi + 1):
            if self.basis_kind == "pip":
                size = cumulative(molien_series(group, d))[d] - 1
                if size > self.max_inputs and fitting:
                    truncated = True
                    break
            basis = self._make_basis(group, d)
            n_inputs = int((basis.degrees > 0).sum())
            if n_inputs > self.max_inputs and fitting:
                truncated = True
                break
            if n_inputs > 0 and (d >= lo or not fitting):
                if fitting and n_inputs == int((fitting[-1].degrees > 0).sum()):
                    fitting[-1] = basis       # a higher degree that adds nothing: keep one of the two
                else:
                    fitting.append(basis)
        if not fitting:
            raise ValueError("no input basis with a non-constant function; check the atoms")
        if self.basis_kind == "fi" and not truncated:
            return fitting[-1:]
        return fitting[::-1][:2]

    def _choose_morse_a(self, data: Dataset) -> tuple[float, str]:
        """The given Morse range, or the one a linear PIP fit of the energies prefers in cross-validation."""
        if self.morse_a is not None:
            return float(self.morse_a), "given"
        if len(self.morse_grid) == 1:
            return float(self.morse_grid[0]), "given"
        from ..linear import LinearPIPModel

        lin = LinearPIPModel(morse_grid=tuple(self.morse_grid), use_forces=False, max_basis=500, blocks=self.blocks,
                             random_state=self.random_state)
        lin.fit(data._replace(F=None))
        return float(lin.hyperparameters_["morse_a"]), "linear PIP cross-validation"

    def _training_problem(self, _train, basis, transform, data, forces, e_shift, e_scale):
        """Standardised inputs (and input Jacobians in internal directions) of ``basis`` on ``data``.

        Returns the :class:`~.train.TrainingProblem`, the indices of the basis
        functions used as inputs (non-constant on the data) and their mean and
        scale.
        """
        R = np.asarray(data.R, dtype=np.float64)
        n, na = R.shape[:2]
        P, J = basis.cartesian_jacobian(R, transform) if forces else (basis.cartesian_values(R, transform), None)
        x_mean, x_std = P.mean(axis=0), P.std(axis=0)
        feature = np.flatnonzero((basis.degrees > 0) & (x_std > 1e-12 * np.maximum(np.abs(x_mean), 1e-300)))
        if feature.size == 0:
            raise ValueError("all basis functions are constant on the training data; check the structures")
        x_mean, x_scale = x_mean[feature], x_std[feature]
        Z = (P[:, feature] - x_mean) / x_scale
        y = (np.asarray(data.E, dtype=np.float64) - e_shift) / e_scale
        problem = _train.TrainingProblem(Z, y, energy_meV=1000.0 * e_scale, n_cartesian=3 * na)
        if forces:
            Kc = J[:, feature].reshape(n, feature.size, 3 * na) / x_scale[None, :, None]
            U = internal_directions(Kc)
            problem.K = Kc @ U
            problem.g = np.einsum("nc,ncm->nm", -np.asarray(data.F, dtype=np.float64).reshape(n, 3 * na) / e_scale, U)
            problem.force_weight = float(self.force_weight)
            if self.force_huber is not None:   # threshold on |dg_i|: RMS per Cartesian component = force_huber
                problem.huber = float(self.force_huber) * np.sqrt(3 * na) / e_scale
        return problem, feature, x_mean, x_scale

    # --------------------------------------------------------------- fit
    def fit(self, data: Dataset, *, progress=None) -> "_NNModel":
        """Fit to a :class:`~pesfit.data.Dataset` (Å, eV, eV/Å).

        ``progress(step, total, message)`` is called after each epoch with
        the training and validation RMSEs.
        """
        self._validate_params()
        t0 = time.perf_counter()
        data = self._check_training_data(data)
        forces = self._fits_forces(data)
        forces = forces and self.force_weight > 0
        try:
            from . import train as _train
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("training PIP-NN/FI-NN models needs torch: pip install 'pesfit[nn]' "
                              f"(torch==2.13.0); {exc}") from None
        R = np.asarray(data.R, dtype=np.float64)
        E = np.asarray(data.E, dtype=np.float64)
        n, na = R.shape[:2]
        group = self.molecule_group(data)
        candidates = self._candidate_bases(group)
        a, a_source = self._choose_morse_a(data)
        transform = DistanceTransform("morse", a)
        e_shift = float(E.mean())
        e_scale = float(E.std())
        if e_scale == 0.0:
            raise ValueError("all training energies are equal; nothing to fit")

        def options(n_inputs, max_epochs, patience):
            return _train.TrainOptions(sizes=layer_sizes(n_inputs, self.hidden), activation=self.activation,
                                       optimizer=self.optimizer, max_epochs=max_epochs, patience=patience,
                                       seed=int(self.random_state),
                                       validation_fraction=float(self.validation_fraction),
                                       learning_rate=float(self.learning_rate), batch_size=int(self.batch_size))

        screening = []
        if len(candidates) > 1 and self.validation_fraction > 0:
            screen_epochs = min(int(self.screen_epochs), int(self.max_epochs))
            for k, cand in enumerate(candidates):
                problem, feature, _, _ = self._training_problem(_train, cand, transform, data, forces, e_shift,
                                                                e_scale)

                def screen_progress(step, _total, message, k=k, cand=cand):
                    if progress is not None:
                        progress(step, screen_epochs, f"input choice {k + 1}/{len(candidates)} "
                                                      f"(degree {cand.max_degree}): {message}")

                member = _train.train_network(problem, options(feature.size, screen_epochs, screen_epochs),
                                              screen_progress)
                screening.append({"degree": int(cand.max_degree), "n_inputs": int(feature.size),
                                  "epochs": len(member["history"]), "val_energy_rmse_meV": _best_val(member)})
            scores = [np.inf if r["val_energy_rmse_meV"] is None else r["val_energy_rmse_meV"] for r in screening]
            basis = candidates[int(np.argmin(scores))]
            input_source = f"validation ({screen_epochs}-epoch screening of {len(candidates)} degrees)"
        else:
            basis = candidates[0]
            input_source = "given" if self.degree is not None else "largest within max_inputs"

        problem, feature, x_mean, x_scale = self._training_problem(_train, basis, transform, data, forces, e_shift,
                                                                   e_scale)
        sizes = layer_sizes(feature.size, self.hidden)
        opts = options(feature.size, int(self.max_epochs), int(self.patience))
        if self.ensemble == 1:
            members = [_train.train_network(problem, opts, progress)]
        else:
            members = _train.train_ensemble(problem, opts, int(self.ensemble), n_jobs=self.n_jobs, progress=progress)

        self.__dict__.pop("_kernel_args", None)
        self.basis_ = basis
        self.molecule_ = Molecule(tuple(data.symbols), group, transform)
        self.feature_index_ = feature
        self.x_mean_, self.x_scale_ = x_mean, x_scale
        self.e_shift_, self.e_scale_ = e_shift, e_scale
        self.layer_sizes_ = tuple(int(s) for s in sizes)
        self.parameters_ = np.stack([m["theta"] for m in members])
        self.history_ = [m["history"] for m in members]
        self.members_ = [{"seed": int(self.random_state) + k, "best_epoch": int(m["best_epoch"]),
                          "epochs": len(m["history"]), "seconds": float(m["seconds"]),
                          "validation_index": m["validation_index"].tolist(),
                          "best_val_energy_rmse_meV": _best_val(m)}
                         for k, m in enumerate(members)]
        self.hyperparameters_ = {"basis": self.basis_kind, "degree": int(basis.max_degree),
                                 "n_inputs": int(feature.size), "input_choice": input_source,
                                 "input_screening": screening,
                                 "morse_a": a, "morse_a_source": a_source, "hidden": [int(h) for h in self.hidden],
                                 "activation": self.activation, "optimizer": self.optimizer, "forces": forces,
                                 "force_weight": float(self.force_weight), "force_huber": self.force_huber,
                                 "ensemble": int(self.ensemble),
                                 "n_parameters": n_parameters(sizes)}
        self._finish_fit(data, t0)
        return self

    # ----------------------------------------------------------- predict
    def _members(self, R, gradient, per_member=False):
        """Member energies (n, K) and gradients (n, 1 or K, N, 3) from the compiled kernel."""
        args = self.__dict__.get("_kernel_args")
        if args is None or args[1] is not self.parameters_:
            prepared = _kernels.kernel_arguments(
                self.basis_.program, self.molecule_.transform, len(self.molecule_.symbols), self.feature_index_,
                self.x_mean_, self.x_scale_, self.layer_sizes_, ACTIVATIONS[self.activation], self.parameters_,
                self.e_shift_, self.e_scale_)
            args = (prepared, self.parameters_)
            self._kernel_args = args
        return _kernels.nn_energy_and_gradient(R, args[0], gradient=gradient, per_member=per_member)

    def _energy_and_gradient(self, R, gradient: bool):
        energies, grad = self._members(R, gradient)
        E = energies.mean(axis=1) if energies.shape[1] > 1 else energies[:, 0]
        return (E, grad[:, 0]) if gradient else E

    def predict(self, R, forces: bool = False, return_std: bool = False):
        """Energies [eV] (and forces [eV/Å]) for coordinates ``R`` [Å]; the ensemble mean.

        Parameters
        ----------
        R : ndarray of shape (n, N, 3) or (N, 3), Å, atoms in the model's order
        forces : bool
        return_std : bool
            Also return the standard deviation over the ensemble members of
            the energies (and forces): an uncertainty estimate (zero for one network).

        Returns
        -------
        E : ndarray of shape (n,) (a float for one structure)
        F : ndarray of shape (n, N, 3), only with ``forces=True``; ``F = -dE/dR``
        E_std : ndarray of shape (n,), only with ``return_std=True``
        F_std : ndarray of shape (n, N, 3), with ``forces=True`` and ``return_std=True``
        """
        if not return_std:
            return super().predict(R, forces=forces)
        self._check_fitted()
        R, single = self._check_coordinates(R)
        energies, grad = self._members(R, forces, per_member=True)
        out = [self._energy_and_gradient(R, False)]
        if forces:
            out.append(-self._energy_and_gradient(R, True)[1])   # the same numbers as predict(R, forces=True)
        out.append(energies.std(axis=1))
        if forces:
            out.append(grad.std(axis=1))
        return tuple(o[0] for o in out) if single else tuple(out)

    # ----------------------------------------------------------- model file
    def _state(self) -> dict:
        return {
            "nn_format_version": NN_STATE_VERSION,
            "basis": self.basis_.to_dict(),
            "feature_index": self.feature_index_.tolist(),
            "input_mean": self.x_mean_.tolist(),
            "input_scale": self.x_scale_.tolist(),
            "energy_shift_eV": self.e_shift_,
            "energy_scale_eV": self.e_scale_,
            "layer_sizes": list(self.layer_sizes_),
            "activation": self.activation,
            "parameters": self.parameters_.tolist(),
            "members": getattr(self, "members_", []),
        }

    def _set_state(self, state: dict) -> None:
        version = state.get("nn_format_version")
        if version != NN_STATE_VERSION:
            raise ValueError(f"network state version {version!r} is not supported (this pesfit reads "
                             f"{NN_STATE_VERSION})")
        self.__dict__.pop("_kernel_args", None)
        self.basis_ = Basis.from_dict(state["basis"])
        self.feature_index_ = np.asarray(state["feature_index"], dtype=np.int64)
        self.x_mean_ = np.asarray(state["input_mean"], dtype=np.float64)
        self.x_scale_ = np.asarray(state["input_scale"], dtype=np.float64)
        self.e_shift_ = float(state["energy_shift_eV"])
        self.e_scale_ = float(state["energy_scale_eV"])
        self.layer_sizes_ = tuple(int(s) for s in state["layer_sizes"])
        if state["activation"] not in ACTIVATIONS:
            raise ValueError(f"unknown activation {state['activation']!r} in model file")
        self.activation = state["activation"]
        self.parameters_ = np.asarray(state["parameters"], dtype=np.float64)
        self.members_ = state.get("members", [])
        d0 = self.feature_index_.size
        if (self.x_mean_.shape != (d0,) or self.x_scale_.shape != (d0,) or self.layer_sizes_[0] != d0
                or self.layer_sizes_[-1] != 1 or np.any(self.feature_index_ < 0)
                or np.any(self.feature_index_ >= self.basis_.n_basis)):
            raise ValueError("network inputs in the model file do not match its basis")
        if self.parameters_.ndim != 2 or self.parameters_.shape[1] != n_parameters(self.layer_sizes_):
            raise ValueError(f"model file has parameters of shape {self.parameters_.shape} for layer sizes "
                             f"{self.layer_sizes_} ({n_parameters(self.layer_sizes_)} per network)")
        if np.any(self.x_scale_ <= 0) or self.e_scale_ <= 0:
            raise ValueError("model file has non-positive input or energy scales")

    # -------------------------------------------------------------- export
    def export_spec(self) -> dict:
        """What :func:`pesfit.export.export_model` needs: the basis program and a network head.

        ``network`` also describes the network as arrays: the basis outputs
        used as inputs (``input_index``), their standardisation, the
        activation, the layer sizes, the energy scaling and, per ensemble
        member, the ``(W, b)`` of every layer (``W`` of shape (n_out, n_in));
        the energy is the member mean.
        """
        self._check_fitted()
        from .network import unflatten

        members = [[{"W": W.copy(), "b": b.copy()} for W, b in unflatten(theta, self.layer_sizes_)]
                   for theta in self.parameters_]
        network = {"activation": self.activation, "layer_sizes": list(self.layer_sizes_),
                   "input_index": self.feature_index_.copy(), "input_mean": self.x_mean_.copy(),
                   "input_scale": self.x_scale_.copy(), "energy_shift_eV": self.e_shift_,
                   "energy_scale_eV": self.e_scale_, "members": members, "combine": "mean"}
        program = self.basis_.program
        head = NetworkHead(program.n_outputs, self.feature_index_, self.x_mean_, self.x_scale_, self.layer_sizes_,
                           self.parameters_, self.activation, self.e_shift_, self.e_scale_)
        return self._export_common(program=program, network=network, head=head, weights=None, format_version=1)


def _best_val(member: dict):
    vals = [h.get("val_energy_rmse_meV") for h in member["history"] if h.get("epoch") == member["best_epoch"]]
    return float(vals[0]) if vals and vals[0] is not None else None


class PIPNNModel(_NNModel):
    """PIP-NN: a neural network on permutationally invariant polynomials of Morse variables.

    Parameters
    ----------
    degree : int or None
        Maximum PIP degree of the inputs; None: chosen for the molecule.  The
        two largest degrees (2 to 6) with at most ``max_inputs`` inputs are
        each trained for ``screen_epochs`` epochs on the same split, and the
        one with the lower validation energy RMSE is trained in full
        (``hyperparameters_["input_screening"]`` records both).
    morse_a : float or None
        Morse range ``a`` [Å] of ``x = exp(-r/a)`` (default 1.5); None: chosen
        from ``morse_grid`` by cross-validating a linear PIP fit of the training energies.
    morse_grid : tuple of float
        Candidate Morse ranges [Å].
    hidden : tuple of int
        Hidden layer sizes (default two layers of 25).
    activation : {"tanh", "softplus", "sigmoid"}
    optimizer : {"lm", "lbfgs", "adam"}
        Levenberg-Marquardt (default), L-BFGS (full batch) or Adam
        (mini-batches of ``batch_size``, learning rate decayed 100x over
        ``max_epochs``).
    force_weight : float
        ``rho`` [Å]: the loss is ``mean_i (dE_i^2 + rho^2 h(|dF_i|))`` (eV^2).
    force_huber : float or None
        Huber threshold [eV/Å, RMS per Cartesian component] of the force
        term: ``h(x) = x^2`` up to ``c = force_huber sqrt(3N)``, ``2 c x - c^2``
        beyond, so that a few structures with unreproducible forces cannot
        dominate the fit; None: plain least squares.
    use_forces : bool or None
        Fit forces when the data has them (None: whenever present).
    max_epochs, patience : int
        Epoch limit and early stopping (epochs without a better validation loss).
    validation_fraction : float
        Share of the training structures held out for early stopping.
    learning_rate, batch_size
        Adam only.
    ensemble : int
        Number of networks (seeds ``random_state + k``) averaged in prediction.
    n_jobs : int or None
        Parallel processes for ensemble members (None: one per core).
    max_inputs : int
        Upper limit on the number of inputs when ``degree`` is None (default 100).
    screen_epochs : int
        Epochs of each screening run when ``degree`` is None.
    blocks : list of lists, optional
        Permutable like-atom blocks (default: all like atoms).
    random_state : int

    Attributes
    ----------
    molecule_ : Molecule
    basis_ : invariants.Basis
    feature_index_ : ndarray of shape (n_inputs,)  (basis functions used as inputs)
    x_mean_, x_scale_ : ndarray of shape (n_inputs,)  (input standardisation)
    e_shift_, e_scale_ : float  (energy scaling, eV)
    layer_sizes_ : tuple of int  (``(n_inputs, *hidden, 1)``)
    parameters_ : ndarray of shape (ensemble, n_parameters)  (flat weights and biases)
    members_ : list of dict  (seed, best epoch, validation indices, validation RMSE per network)
    history_ : list of list of dict  (per-epoch losses and RMSEs; not saved in model files)
    e_min_ : float  (lowest training energy, eV)
    r_min_ : ndarray of shape (n_variables,)  (shortest training distances, Å)
    train_report_ : dict

    Examples
    --------
    >>> from pesfit.datasets import shipped_dataset
    >>> data = shipped_dataset("h3", "train").first(60)
    >>> model = PIPNNModel(hidden=(5,), max_epochs=3, morse_a=1.5).fit(data)
    >>> model.predict(data.R[:2]).shape
    (2,)
    """

    kind = "pip_nn"
    cli_name = "pipnn"
    basis_kind = "pip"


class FINNModel(_NNModel):
    """FI-NN: a neural network on fundamental invariants of Morse variables.

    Same parameters and attributes as :class:`PIPNNModel`; the inputs are the
    fundamental invariants (:func:`invariants.fundamental_basis`) of degree
    <= ``degree`` (None: all of them when they number at most ``max_inputs``,
    else of the two largest truncations the one a short validation run prefers).
    """

    kind = "fi_nn"
    cli_name = "finn"
    basis_kind = "fi"
