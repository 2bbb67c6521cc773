"""What every pesfit model shares: parameter checks, prediction, model files."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from invariants import PermutationGroup, pair_distances

from .. import __version__
from ..data import Dataset
from ..metrics import error_report
from ..molecule import Molecule
from ..regions import region_labels

MODEL_FORMAT = "pesfit.model"
MODEL_FORMAT_VERSION = 1

_REGISTRY: dict[str, type] = {}


def registered_models() -> dict[str, type]:
    """Model classes by their CLI name."""
    return {cls.cli_name: cls for cls in _REGISTRY.values() if cls.cli_name}


def _canonical(d) -> str:
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


class ModelBase:
    """Estimator shape shared by the back ends (scikit-learn conventions).

    Subclasses define ``kind``, ``_parameter_constraints``, ``fit``,
    ``_energy_and_gradient(R, gradient)``, ``_state`` and ``_set_state``.
    """

    kind = "base"
    #: value of ``pesfit fit --model`` (None: not offered on the command line)
    cli_name: str | None = None
    _parameter_constraints: dict = {}

    # ----------------------------------------------------------------- CLI
    @classmethod
    def add_cli_arguments(cls, parser, add_once) -> None:
        """Add this back end's own ``pesfit fit`` flags (``add_once(parser, *flags, **kw)``)."""

    @classmethod
    def params_from_cli(cls, args) -> dict:
        """Constructor hyperparameters from parsed ``pesfit fit`` flags (None values are left out)."""
        return {}

    @staticmethod
    def _params_from_flags(args, names: dict, *, forces: bool = True) -> dict:
        """``{param: args.flag}`` for the ``names`` (flag -> parameter) that were given, plus
        ``use_forces`` from ``--forces`` when ``forces``."""
        params = {p: getattr(args, a) for a, p in names.items() if getattr(args, a, None) is not None}
        if forces:
            params["use_forces"] = bool(getattr(args, "forces", False))
        return params

    def _check_pip_params(self) -> None:
        """The checks shared by back ends with ``degree``, ``morse_a`` [Å] and ``morse_grid`` [Å]."""
        name = type(self).__name__
        if self.degree is not None and self.degree < 1:
            raise ValueError(f"{name}: degree must be >= 1, got {self.degree}")
        if self.morse_a is not None and self.morse_a <= 0:
            raise ValueError(f"{name}: morse_a must be > 0 Å, got {self.morse_a}")
        if any(a <= 0 for a in self.morse_grid):
            raise ValueError(f"{name}: morse_grid values must be > 0 Å, got {self.morse_grid}")

    @property
    def n_basis(self) -> int | None:
        """Number of basis functions (features) of the fitted model."""
        basis = getattr(self, "basis_", None)
        return None if basis is None else int(basis.n_basis)

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        _REGISTRY[cls.kind] = cls

    def read_data(self, path, **units):
        """The data file ``path`` as this back end fits and evaluates it (a :class:`~pesfit.data.Dataset`).

        ``units``: ``length_unit``/``energy_unit`` of the file (see :func:`pesfit.data.load_dataset`).
        """
        from ..data import load_dataset

        return load_dataset(path, **units)

    # -------------------------------------------------------------- params
    def get_params(self) -> dict:
        import inspect

        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {n: getattr(self, n) for n in names}

    def _validate_params(self) -> None:
        for name, types in self._parameter_constraints.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, types):
                names = " or ".join("None" if t is type(None) else t.__name__ for t in types)
                raise ValueError(f"{type(self).__name__}: {name} must be {names}, got {value!r}")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ---------------------------------------------------------------- data
    def molecule_group(self, data: Dataset) -> PermutationGroup:
        blocks = getattr(self, "blocks", None)
        return PermutationGroup.from_symbols(list(data.symbols), blocks=blocks)

    def _fits_forces(self, data: Dataset) -> bool:
        """Whether to fit forces: ``use_forces``, or (None) whenever the data have them."""
        forces = data.F is not None if self.use_forces is None else bool(self.use_forces)
        if forces and data.F is None:
            raise ValueError("use_forces=True but the training data has no forces (key F)")
        return forces

    @staticmethod
    def _check_training_data(data: Dataset) -> Dataset:
        if not isinstance(data, Dataset):
            raise ValueError(f"fit expects a pesfit.data.Dataset, got {type(data).__name__}")
        if data.E is None:
            raise ValueError("training data has no energies (key E)")
        if np.ndim(data.E) != 1:
            raise ValueError(f"this model fits one energy per structure; E has shape {np.shape(data.E)}")
        if data.n_structures < 2:
            raise ValueError(f"need at least 2 training structures, got {data.n_structures}")
        return data

    def _finish_fit(self, data: Dataset, t0: float) -> None:
        E = np.asarray(data.E, dtype=np.float64)
        self.e_min_ = float(E.min())
        self.r_min_ = pair_distances(np.asarray(data.R)).min(axis=0)
        ground = E if E.ndim == 1 else E[:, 0]  # several states: the ground state decides
        self.reference_geometry_ = np.array(data.R[int(np.argmin(ground))], dtype=np.float64)
        self.n_train_ = int(data.n_structures)
        self.fit_seconds_ = time.perf_counter() - t0
        self.train_report_ = self.evaluate(data)
        self.dataset_hash_ = hashlib.sha256(np.ascontiguousarray(data.R).tobytes()
                                            + np.ascontiguousarray(E).tobytes()).hexdigest()

    # ------------------------------------------------------------- predict
    def _check_fitted(self) -> None:
        if not hasattr(self, "molecule_"):
            raise ValueError(f"this {type(self).__name__} is not fitted yet; call fit() or load a model file")

    def _check_coordinates(self, R) -> tuple[np.ndarray, bool]:
        R = np.asarray(R, dtype=np.float64)
        single = R.ndim == 2
        if single:
            R = R[None]
        n_atoms = len(self.molecule_.symbols)
        if R.ndim != 3 or R.shape[1:] != (n_atoms, 3):
            raise ValueError(f"coordinates must have shape (n, {n_atoms}, 3) for atoms "
                             f"{' '.join(self.molecule_.symbols)}, got {R.shape}")
        bad = ~np.isfinite(R).all(axis=(1, 2))
        if bad.any():
            raise ValueError(f"coordinates of structure {int(np.flatnonzero(bad)[0])} contain NaN or inf")
        if n_atoms > 1:
            r = pair_distances(R)
            close = r.min(axis=1) < 1e-8
            if close.any():
                raise ValueError(f"structure {int(np.flatnonzero(close)[0])} has two atoms on top of each other")
        return R, single

    def predict(self, R, forces: bool = False):
        """Energies [eV] (and forces [eV/Å]) for coordinates ``R`` [Å].

        Parameters
        ----------
        R : ndarray of shape (n, N, 3) or (N, 3), Å, atoms in the model's order
        forces : bool

        Returns
        -------
        E : ndarray of shape (n,) (a float for one structure)
        F : ndarray of shape (n, N, 3), only with ``forces=True``; ``F = -dE/dR``
        """
        self._check_fitted()
        R, single = self._check_coordinates(R)
        if forces:
            E, G = self._energy_and_gradient(R, True)
            return (E[0], -G[0]) if single else (E, -G)
        E = self._energy_and_gradient(R, False)
        return E[0] if single else E

    def _aligned(self, data: Dataset) -> Dataset:
        if list(data.symbols) != list(self.molecule_.symbols):
            return data.reorder_atoms(list(self.molecule_.symbols))
        return data

    def evaluate(self, data: Dataset) -> dict:
        """Error report (meV, cm^-1, meV/Å) of the model on a dataset."""
        self._check_fitted()
        data = self._aligned(data)
        if data.E is None:
            raise ValueError("dataset has no energies to compare with")
        regions = region_labels(data.z, data.R)
        if data.F is not None:
            E, F = self.predict(data.R, forces=True)
            return error_report(E, data.E, F, data.F, e_min=getattr(self, "e_min_", None), regions=regions)
        return error_report(self.predict(data.R), data.E, e_min=getattr(self, "e_min_", None), regions=regions)

    # ---------------------------------------------------------- persistence
    def to_dict(self) -> dict:
        self._check_fitted()
        body = {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "kind": self.kind,
            "pesfit_version": __version__,
            "units": {"length": "angstrom", "energy": "eV", "codata": "2018"},
            "molecule": self.molecule_.to_dict(),
            "params": {k: v for k, v in self.get_params().items() if _jsonable(v)},
            "hyperparameters": getattr(self, "hyperparameters_", {}),
            "e_min_eV": self.e_min_,
            "r_min_A": self.r_min_.tolist(),
            "n_train": self.n_train_,
            "fit_seconds": self.fit_seconds_,
            "train_errors": self.train_report_,
            "dataset_sha256": self.dataset_hash_,
            "state": self._state(),
        }
        if getattr(self, "reference_geometry_", None) is not None:
            body["reference_geometry_A"] = np.asarray(self.reference_geometry_).tolist()
        body["checksum"] = hashlib.sha256(_canonical(body).encode()).hexdigest()
        return body

    def checksum(self) -> str:
        return self.to_dict()["checksum"]

    def save(self, path) -> None:
        """Write the model as JSON data (never pickle)."""
        Path(path).write_text(_canonical(self.to_dict()))

    @classmethod
    def from_dict(cls, d: dict) -> "ModelBase":
        if not isinstance(d, dict) or d.get("format") != MODEL_FORMAT:
            raise ValueError("not a pesfit model file (field 'format' is not 'pesfit.model')")
        if d.get("format_version") != MODEL_FORMAT_VERSION:
            raise ValueError(f"model format_version {d.get('format_version')!r} is not supported "
                             f"(this pesfit reads {MODEL_FORMAT_VERSION})")
        required = ["kind", "molecule", "state", "checksum", "e_min_eV", "r_min_A", "units"]
        missing = [k for k in required if k not in d]
        if missing:
            raise ValueError(f"model file lacks fields {missing}")
        body = {k: v for k, v in d.items() if k != "checksum"}
        if hashlib.sha256(_canonical(body).encode()).hexdigest() != d["checksum"]:
            raise ValueError("model file checksum mismatch: the file was modified or corrupted")
        if d["units"].get("length") != "angstrom" or d["units"].get("energy") != "eV":
            raise ValueError(f"model units {d['units']} are not the internal Å/eV")
        kind = d["kind"]
        klass = _REGISTRY.get(kind) if cls is ModelBase else cls
        if klass is None or klass.kind != kind:
            raise ValueError(f"unknown model kind {kind!r}; known: {sorted(k for k in _REGISTRY if k != 'base')}")
        try:
            model = klass(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.get("params", {}).items()})
        except TypeError as exc:
            raise ValueError(f"model parameters do not fit a {klass.__name__} ({exc})") from None
        model.molecule_ = Molecule.from_dict(d["molecule"])
        model.hyperparameters_ = d.get("hyperparameters", {})
        model.e_min_ = float(d["e_min_eV"])
        model.r_min_ = np.asarray(d["r_min_A"], dtype=np.float64)
        model.n_train_ = d.get("n_train")
        model.fit_seconds_ = d.get("fit_seconds")
        model.train_report_ = d.get("train_errors", {})
        model.dataset_hash_ = d.get("dataset_sha256")
        ref = d.get("reference_geometry_A")  # optional: files written before it existed lack it
        model.reference_geometry_ = None if ref is None else np.asarray(ref, dtype=np.float64)
        if ref is not None and model.reference_geometry_.shape != (len(model.molecule_.symbols), 3):
            raise ValueError(f"reference_geometry_A has shape {model.reference_geometry_.shape}, expected "
                             f"({len(model.molecule_.symbols)}, 3)")
        try:
            model._set_state(d["state"])
        except KeyError as exc:
            raise ValueError(f"model state lacks field {exc}") from None
        return model

    @classmethod
    def load(cls, path) -> "ModelBase":
        """Read a model file; every error names the file."""
        raw = Path(path).read_bytes()
        if raw.startswith(b"PK"):
            raise ValueError(f"{path}: not a pesfit model file (a zip archive: an .npz data file?); model files are "
                             "JSON written by pesfit fit --out")
        try:
            d = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not a pesfit model file (binary, not JSON text)") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not a pesfit model file (JSON error: {exc})") from None
        try:
            return cls.from_dict(d)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    # -------------------------------------------------------------- export
    def _export_common(self, **extra) -> dict:
        model = self

        def predict(R):
            E, F = model.predict(R, forces=True)
            return E, -F

        spec = {
            "kind": self.kind,
            "transform": self.molecule_.transform,
            "symbols": list(self.molecule_.symbols),
            "length_unit": "angstrom",
            "energy_unit": "eV",
            "energy_zero_eV": 0.0,
            "checksum": self.checksum(),
            "training_rmse_meV": (self.train_report_ or {}).get("energy_rmse_meV"),
            "r_min": np.asarray(self.r_min_, dtype=np.float64),
            "reference_geometry": getattr(self, "reference_geometry_", None),
            "predict": predict,
        }
        spec.update(extra)
        return spec


def _jsonable(v) -> bool:
    try:
        json.dumps(v)
        return True
    except TypeError:
        return False


def load_model(path) -> ModelBase:
    """Load any pesfit model file (dispatching on its ``kind``)."""
    return ModelBase.load(path)
