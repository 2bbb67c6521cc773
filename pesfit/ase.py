"""Any fitted pesfit surface as an ASE calculator (energy in eV, forces in eV/Å).

:class:`PESCalculator` wraps a pesfit model (an object with
``predict(R, forces=True)`` in Å and eV and ``molecule_.symbols``), a model
file path, or a compiled export loaded with the ``pes_ctypes.py`` that
:func:`pesfit.export.export_model` writes (``CompiledPES``, bohr and hartree).
The atoms of the :class:`ase.Atoms` must be the model's elements in the
model's order; a mismatch raises a ``ValueError`` that names the first
differing atom and, when only the order differs, the index list that fixes it.

>>> from pesfit.ase import PESCalculator      # doctest: +SKIP
>>> atoms.calc = PESCalculator("molecules/h2co/model.json")   # doctest: +SKIP
>>> atoms.get_potential_energy(), atoms.get_forces()          # doctest: +SKIP

Forces are ``F = -dE/dR``: the model returns them analytically (reverse-mode
pull-back of the basis, see :mod:`invariants`); for a compiled export the
library returns the gradient ``dE/dxyz`` in hartree/bohr, converted here by
``-(hartree/eV) / (bohr/Å)``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from .units import energy_factor, length_factor

__all__ = ["PESCalculator", "CompiledModel", "as_model", "model_symbols", "check_atom_order", "out_of_range"]

log = logging.getLogger(__name__)

_BOHR_PER_A = length_factor("angstrom", "bohr")
_EV_PER_HARTREE = energy_factor("hartree", "eV")


class CompiledModel:
    """A compiled export with the pesfit ``predict`` interface (Å, eV, eV/Å).

    Parameters
    ----------
    pes : CompiledPES
        The object returned by ``pes_ctypes.CompiledPES(libpath)`` of an export
        directory: ``energy(xyz)`` / ``energy_gradient(xyz, return_status=True)``
        in bohr and hartree, and ``symbols``.

    Attributes
    ----------
    symbols : tuple of str
    last_status_ : ndarray of shape (n,) or None
        Status codes of the last call (0 ok, 1 outside the fitted range).
    """

    kind = "compiled"

    def __init__(self, pes):
        if not hasattr(pes, "energy_gradient") or not hasattr(pes, "symbols"):
            raise TypeError(f"{type(pes).__name__} is not a compiled pesfit potential (needs energy_gradient "
                            "and symbols, as CompiledPES from an export's pes_ctypes.py)")
        self.pes = pes
        self.symbols = tuple(pes.symbols)
        self.last_status_ = None

    def __repr__(self) -> str:
        return f"CompiledModel({self.pes!r})"

    def predict(self, R, forces: bool = False):
        """Energies [eV] (and forces [eV/Å]) for coordinates ``R`` [Å] of shape (n, N, 3) or (N, 3)."""
        R = np.asarray(R, dtype=np.float64)
        single = R.ndim == 2
        xyz = (R[None] if single else R) * _BOHR_PER_A
        e, g, status = self.pes.energy_gradient(xyz, return_status=True)
        status = np.atleast_1d(status)
        self.last_status_ = status
        bad = np.flatnonzero(status >= 2)
        if bad.size:
            raise ValueError(f"the compiled potential returned status {int(status[bad[0]])} for structure "
                             f"{int(bad[0])} (2: non-finite input, 3: coincident atoms)")
        E = np.asarray(e) * _EV_PER_HARTREE
        F = -np.asarray(g) * (_EV_PER_HARTREE * _BOHR_PER_A)
        if single:
            E, F = float(E[0]), F[0]
        return (E, F) if forces else E

    def out_of_range(self, R) -> np.ndarray:
        """True for structures with a distance below the shortest training distance of its pair."""
        R = np.asarray(R, dtype=np.float64)
        _, _, status = self.pes.energy_gradient((R[None] if R.ndim == 2 else R) * _BOHR_PER_A,
                                                return_status=True)
        return np.atleast_1d(status) == 1


def as_model(model):
    """A pesfit model from a model, a model-file path or a compiled export.

    Parameters
    ----------
    model : ModelBase, str, Path, CompiledPES or CompiledModel

    Returns
    -------
    object with ``predict(R, forces)`` [Å, eV] and atom symbols (see :func:`model_symbols`)
    """
    if isinstance(model, (str, Path)):
        from .models import load_model

        return load_model(model)
    if hasattr(model, "predict"):
        model_symbols(model)
        return model
    if hasattr(model, "energy_gradient"):
        return CompiledModel(model)
    raise TypeError(f"expected a pesfit model, a model file or a compiled export, got {type(model).__name__}")


def model_symbols(model) -> tuple:
    """Element symbols in the model's atom order."""
    molecule = getattr(model, "molecule_", None)
    if molecule is not None:
        return tuple(molecule.symbols)
    if hasattr(model, "symbols"):
        return tuple(model.symbols)
    raise ValueError(f"{type(model).__name__} is not fitted (no molecule_); fit it or load a model file")


def check_atom_order(symbols, expected) -> None:
    """Raise ``ValueError`` unless ``symbols`` equals the model's atom order ``expected``.

    The message names the first differing atom and, when the elements agree
    but their order does not, the index list ``perm`` with
    ``atoms[perm]`` in the model's order.
    """
    symbols, expected = list(symbols), list(expected)
    if symbols == expected:
        return
    if len(symbols) != len(expected):
        raise ValueError(f"the atoms ({' '.join(symbols)}) are {len(symbols)}, the model has {len(expected)} "
                         f"({' '.join(expected)})")
    k = next(i for i, (a, b) in enumerate(zip(symbols, expected)) if a != b)
    msg = (f"atom order mismatch: atom {k} is {symbols[k]} but the model expects {expected[k]} "
           f"(atoms: {' '.join(symbols)}; model: {' '.join(expected)})")
    if sorted(symbols) == sorted(expected):
        from .data import atom_permutation

        perm = atom_permutation(symbols, expected).tolist()
        msg += f"; reorder them, e.g. atoms = atoms[{perm}]"
    else:
        msg += "; the elements differ, so this model cannot describe these atoms"
    raise ValueError(msg)


def out_of_range(model, R) -> np.ndarray:
    """Structures with a distance shorter than the shortest training distance of that atom pair.

    Parameters
    ----------
    model : fitted pesfit model or CompiledModel
    R : ndarray of shape (n, N, 3) or (N, 3) [Å]

    Returns
    -------
    ndarray of shape (n,) of bool (all False when the model does not record ``r_min_``)
    """
    if hasattr(model, "out_of_range"):
        return model.out_of_range(R)
    from invariants import pair_distances

    R = np.asarray(R, dtype=np.float64)
    R = R[None] if R.ndim == 2 else R
    r_min = getattr(model, "r_min_", None)
    if r_min is None:
        return np.zeros(len(R), dtype=bool)
    return (pair_distances(R) < np.asarray(r_min)[None]).any(axis=1)


class PESCalculator(Calculator):
    """ASE calculator for a pesfit surface: ``energy`` [eV] and ``forces`` [eV/Å].

    Parameters
    ----------
    model : ModelBase, str, Path, CompiledPES or CompiledModel
        A fitted model, a model file, or a compiled export (see the module
        docstring).
    **kwargs
        Passed to :class:`ase.calculators.calculator.Calculator`.

    Notes
    -----
    ``results`` also holds ``out_of_range`` (bool): a distance shorter than
    the shortest training distance of its pair, where the fit extrapolates.
    The first such structure is logged as a warning.  Periodic cells are
    rejected.
    """

    implemented_properties = ["energy", "free_energy", "forces"]
    nolabel = True

    def __init__(self, model, **kwargs):
        super().__init__(**kwargs)
        self.model = as_model(model)
        self.symbols = model_symbols(self.model)
        self._warned = False

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        check_atom_order(self.atoms.get_chemical_symbols(), self.symbols)
        if self.atoms.pbc.any():
            raise ValueError("PESCalculator describes an isolated molecule; set atoms.pbc = False")
        R = self.atoms.get_positions()
        energy, forces = self.model.predict(R, forces=True)
        if isinstance(self.model, CompiledModel):  # the library reported it with the values
            flag = bool(self.model.last_status_[0] == 1)
        else:
            flag = bool(out_of_range(self.model, R)[0])
        if flag and not self._warned:
            log.warning("structure outside the fitted range (a distance below the shortest training distance); "
                        "the surface extrapolates here")
            self._warned = True
        energy = float(energy)
        self.results = {"energy": energy, "free_energy": energy, "forces": np.asarray(forces, dtype=np.float64),
                        "out_of_range": flag}
