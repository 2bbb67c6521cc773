"""The oracle: one electronic-structure (or any ASE) calculation per geometry.

An :class:`Oracle` names an ASE calculator by a short string so that it can be
sent to Dask workers and recorded in the store:

* ``"pyscf:METHOD/BASIS"`` -- :class:`pesfit.abinitio.PySCFCalculator`
  (``pyscf:fci/cc-pvdz``, ``pyscf:mp2/cc-pvdz``, ``pyscf:ccsd(t)/cc-pvtz``)
  with the oracle's charge, multiplicity and ``unrestricted`` flag;
* ``"module:factory"`` -- ``factory()`` from an importable module, a callable
  returning an ASE calculator (ORCA, Psi4, xtb, EMT, an analytic surface).
  Such a factory sets charge and spin itself.

:meth:`Oracle.compute` never raises for a per-geometry problem: an exception,
an unconverged SCF (PySCF raises), a non-finite energy or force, or forces of
the wrong shape make it try once more -- with the calculator's ``fallback()``
setup when it has one (PySCF: another initial guess and a level shift),
otherwise with a fresh calculator -- and then return a ``failed`` result that
gives both reasons.  Energies are in eV, forces in eV/Å, geometries in Å.
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass

import numpy as np

__all__ = ["Oracle", "PointResult"]


@dataclass(frozen=True)
class PointResult:
    """Outcome of one oracle calculation.

    Attributes
    ----------
    status : {"ok", "failed"}
    energy : float or None
        [eV]
    forces : ndarray of shape (n_atoms, 3) or None
        [eV/Å]; None when the calculator gives no forces.
    failure : str
        Why it failed (empty when ok); a retried success keeps the first reason.
    attempts : int
    wall_seconds : float
    """

    status: str
    energy: float | None = None
    forces: np.ndarray | None = None
    failure: str = ""
    attempts: int = 1
    wall_seconds: float = 0.0


@dataclass(frozen=True)
class Oracle:
    """A calculator named by a string, with charge and spin for the built-in PySCF one.

    Parameters
    ----------
    calculator : str
        ``"pyscf:METHOD/BASIS"`` or ``"module:factory"``.
    charge : int
        Total charge [e] (``pyscf:`` only).
    multiplicity : int
        Spin multiplicity 2S+1 (``pyscf:`` only).
    unrestricted : bool
        Unrestricted reference for closed shells as well (``pyscf:`` only;
        open shells always use one).
    """

    calculator: str
    charge: int = 0
    multiplicity: int = 1
    unrestricted: bool = False

    def __post_init__(self):
        kind, sep, rest = self.calculator.partition(":")
        if not sep or not rest:
            raise ValueError(f"calculator {self.calculator!r} must be 'pyscf:METHOD/BASIS' or 'module:factory'")
        if kind == "pyscf":
            from ..abinitio import Method

            Method.parse(rest)  # raises on an unknown method
            if self.multiplicity < 1:
                raise ValueError(f"multiplicity must be >= 1 (2S+1), got {self.multiplicity}")
        elif (self.charge, self.multiplicity, self.unrestricted) != (0, 1, False):
            raise ValueError(f"charge, multiplicity and unrestricted apply to 'pyscf:' calculators only; "
                             f"set them inside the factory {self.calculator!r}")

    @property
    def method(self) -> str:
        """What the store records as the method (calculator plus charge and spin)."""
        if self.calculator.startswith("pyscf:"):
            from ..abinitio import Method

            m = Method.parse(self.calculator[6:])
            text = f"pyscf:{m} charge={self.charge} multiplicity={self.multiplicity}"
            return text + (" unrestricted" if self.unrestricted else "")
        return self.calculator

    def make_calculator(self):
        """A new ASE calculator (raises ``ValueError`` naming the problem)."""
        kind, _, rest = self.calculator.partition(":")
        if kind == "pyscf":
            from ..abinitio import PySCFCalculator

            return PySCFCalculator(rest, charge=self.charge, multiplicity=self.multiplicity,
                                   unrestricted=self.unrestricted)
        try:
            module = importlib.import_module(kind)
        except ImportError as exc:
            raise ValueError(f"calculator {self.calculator!r}: cannot import module {kind!r} ({exc}); "
                             "give 'pyscf:METHOD/BASIS' or an importable 'module:factory'") from None
        factory = getattr(module, rest, None)
        if not callable(factory):
            raise ValueError(f"calculator {self.calculator!r}: module {kind!r} has no callable {rest!r}")
        try:
            calc = factory()
        except Exception as exc:
            raise ValueError(f"calculator factory {self.calculator!r} raised {type(exc).__name__}: {exc}") from None
        if not hasattr(calc, "get_potential_energy"):
            raise ValueError(f"calculator factory {self.calculator!r} returned {type(calc).__name__}, "
                             "not an ASE calculator")
        return calc

    def check(self) -> None:
        """Build one calculator now, so a bad name or factory fails before any work."""
        self.make_calculator()

    def compute(self, symbols, R) -> PointResult:
        """Energy [eV] and forces [eV/Å] of geometry ``R`` [Å]; never raises for a per-point failure."""
        from ase import Atoms

        t0 = time.perf_counter()
        R = np.asarray(R, dtype=np.float64)
        reasons = []
        calc = None
        for attempt in (1, 2):
            try:
                if calc is None:
                    calc = self.make_calculator()
                atoms = Atoms(symbols=list(symbols), positions=R)
                atoms.calc = calc
                energy = np.asarray(atoms.get_potential_energy(), dtype=np.float64)
                forces = None
                if "forces" in getattr(calc, "implemented_properties", ()):
                    forces = np.asarray(atoms.get_forces(), dtype=np.float64)
                _check_values(energy, forces, len(R), len(atoms))
                return PointResult("ok", float(energy), forces, "; ".join(reasons), attempt,
                                   time.perf_counter() - t0)
            except Exception as exc:  # any calculator error is a per-point failure, recorded below
                setup = "first setup" if attempt == 1 else "second setup"
                reasons.append(f"{setup}: {type(exc).__name__}: {str(exc).strip()[:300]}")
            fallback = getattr(calc, "fallback", None)
            calc = fallback() if callable(fallback) else None
            if callable(fallback) and calc is None:
                break
        return PointResult("failed", failure="; ".join(reasons), attempts=len(reasons),
                           wall_seconds=time.perf_counter() - t0)


def _check_values(energy, forces, n_atoms: int, n_returned: int) -> None:
    if n_returned != n_atoms:
        raise ValueError(f"the calculator changed the number of atoms from {n_atoms} to {n_returned}")
    if energy.size != 1:
        raise ValueError(f"energy has {energy.size} values for one structure (shape {energy.shape})")
    if not np.isfinite(energy).all():
        raise ValueError(f"energy is not finite ({float(energy.reshape(-1)[0])})")
    if forces is not None:
        if forces.shape != (n_atoms, 3):
            raise ValueError(f"forces have shape {forces.shape}, expected ({n_atoms}, 3) for {n_atoms} atoms")
        if not np.isfinite(forces).all():
            raise ValueError("forces contain NaN or inf")
