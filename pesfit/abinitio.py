"""Reference energies and gradients from PySCF (the optional ``abinitio`` extra).

PySCF is imported only inside the functions here, so the rest of pesfit never
needs it (``pip install pesfit[abinitio]``).  Everything is returned in
pesfit's internal units: energies in eV, gradients ``dE/dR`` in eV/Å,
coordinates taken in Å.

A :class:`Method` names the electronic-structure method and basis set
(``Method.parse("df-mp2/aug-cc-pvdz")``).  :func:`single_points` runs a batch
of geometries of one molecule; :func:`fragment_energies` computes the energies
of sub-clusters (selected monomers) of cluster geometries, which is what a
many-body decomposition needs (fragments in their own basis, i.e. without
counterpoise correction).

Supported methods: ``hf``, ``df-hf``, ``mp2``, ``df-mp2``, ``ccsd``,
``ccsd(t)``, ``fci`` and Kohn-Sham DFT as ``dft:XC`` (``dft:b3lyp``).
Analytic gradients exist for ``hf``, ``df-hf``, ``mp2``, ``ccsd`` and DFT;
PySCF has none for density-fitted MP2, CCSD(T) or FCI, so those give
energies only.  Open shells (``spin`` = 2S > 0) use unrestricted references
(UHF/UKS, UMP2, UCCSD(T)); FCI uses restricted open-shell orbitals, which do
not change its energy.  ``unrestricted=True`` forces UHF for closed shells too.

:class:`PySCFCalculator` wraps all this as an ASE calculator for
``pesfit learn``; when an SCF does not converge, its :meth:`fallback` is the
same calculator with another initial guess, a level shift and more cycles.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from . import units

__all__ = ["Method", "PySCFCalculator", "single_point", "single_points", "fragment_energies", "pyscf_version"]

_HARTREE = units.energy_factor("hartree", "eV")
_BOHR = units.length_factor("bohr", "angstrom")
_METHODS = ("hf", "df-hf", "mp2", "df-mp2", "ccsd", "ccsd(t)", "fci")
_NO_GRADIENT = ("df-mp2", "ccsd(t)", "fci")


def _import_pyscf():
    try:
        import pyscf
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ImportError("pesfit.abinitio needs PySCF; install it with `pip install pesfit[abinitio]` "
                          "(or `pip install pyscf`)") from None
    return pyscf


def pyscf_version() -> str:
    """Version string of the installed PySCF."""
    return _import_pyscf().__version__


@dataclass(frozen=True)
class Method:
    """An electronic-structure method and basis set.

    Parameters
    ----------
    name : str
        ``"hf"``, ``"df-hf"``, ``"mp2"``, ``"df-mp2"``, ``"ccsd"``, ``"ccsd(t)"``,
        ``"fci"`` or ``"dft:XC"``.
    basis : str
        Basis-set name as PySCF knows it (``"aug-cc-pvdz"``).
    conv_tol : float
        SCF energy convergence threshold [hartree].
    frozen_core : bool
        Keep core orbitals frozen in MP2 (PySCF's default is all-electron).

    Examples
    --------
    >>> Method.parse("df-mp2/aug-cc-pvdz")
    Method.parse('df-mp2/aug-cc-pvdz')
    """

    name: str
    basis: str
    conv_tol: float = 1e-10
    frozen_core: bool = False

    def __post_init__(self):
        name = self.name.lower()
        if name not in _METHODS and not (name.startswith("dft:") and len(name) > 4):
            raise ValueError(f"unknown method {self.name!r}; choose from {list(_METHODS)} or 'dft:XC' (e.g. 'dft:b3lyp')")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "basis", self.basis.lower())

    @classmethod
    def parse(cls, text: str) -> "Method":
        """``"METHOD/BASIS"`` -> Method."""
        if text.count("/") != 1:
            raise ValueError(f"method {text!r} must look like 'df-mp2/aug-cc-pvdz'")
        name, basis = text.split("/")
        return cls(name.strip(), basis.strip())

    def __str__(self) -> str:
        return f"{self.name}/{self.basis}"

    def __repr__(self) -> str:
        return f"Method.parse({str(self)!r})"

    @property
    def has_gradient(self) -> bool:
        return self.name not in _NO_GRADIENT

    def to_dict(self) -> dict:
        return {"name": self.name, "basis": self.basis, "conv_tol": self.conv_tol, "frozen_core": self.frozen_core}


def _mole(symbols, R, method: Method, charge: int, spin: int):
    from pyscf import gto

    atoms = [(str(s), tuple(float(c) for c in r)) for s, r in zip(symbols, R)]
    return gto.M(atom=atoms, basis=method.basis, unit="Angstrom", charge=charge, spin=spin, verbose=0)


def _scf(mol, method: Method, attempt: int, unrestricted: bool):
    """Converged mean field; ``attempt`` 1 uses another guess, a level shift and more cycles."""
    from pyscf import dft, scf

    name = method.name
    open_shell = mol.spin != 0 or unrestricted
    if name.startswith("dft:"):
        mf = dft.UKS(mol) if open_shell else dft.RKS(mol)
        mf.xc = name[4:]
    elif name == "fci":
        mf = scf.ROHF(mol) if mol.spin != 0 else scf.RHF(mol)
    else:
        mf = scf.UHF(mol) if open_shell else scf.RHF(mol)
    if name in ("df-hf", "df-mp2"):
        mf = mf.density_fit()
    mf.conv_tol = method.conv_tol
    if attempt > 0:
        mf.init_guess = "atom"
        mf.level_shift = 0.3
        mf.max_cycle = 300
    mf.kernel()
    if not mf.converged and attempt > 0:
        mf = mf.newton()
        mf.kernel(mf.make_rdm1())
    if not mf.converged:
        raise RuntimeError(f"SCF did not converge for a {mol.natm}-atom geometry ({method}"
                           f"{', second setup: atom guess, level shift 0.3, Newton' if attempt else ''}); "
                           "check the geometry or loosen conv_tol")
    return mf


def _run(mol, method: Method, gradient: bool, attempt: int = 0, unrestricted: bool = False):
    """Energy [hartree] and gradient [hartree/bohr] (or None)."""
    name = method.name
    mf = _scf(mol, method, attempt, unrestricted)
    e = mf.e_tot
    if name in ("mp2", "df-mp2"):
        from pyscf import mp

        if name == "df-mp2":
            from pyscf.mp.dfmp2 import DFMP2

            pt = DFMP2(mf)
        else:
            pt = mp.MP2(mf)
        if method.frozen_core:
            pt.set_frozen()
        e_corr = pt.kernel()[0]
        e = pt.e_tot if hasattr(pt, "e_tot") else e + e_corr
        if gradient:
            return e, pt.nuc_grad_method().kernel()
        return e, None
    if name in ("ccsd", "ccsd(t)"):
        from pyscf import cc

        ccsd = cc.CCSD(mf)
        if method.frozen_core:
            ccsd.set_frozen()
        ccsd.kernel()
        if not ccsd.converged:
            raise RuntimeError(f"CCSD amplitudes did not converge for a {mol.natm}-atom geometry ({method})")
        e = ccsd.e_tot
        if name == "ccsd(t)":
            return e + ccsd.ccsd_t(), None
        if gradient:
            return e, ccsd.nuc_grad_method().kernel()
        return e, None
    if name == "fci":
        from pyscf import fci

        solver = fci.FCI(mf)
        e = solver.kernel()[0]
        if not getattr(solver, "converged", True):
            raise RuntimeError(f"FCI (Davidson) did not converge for a {mol.natm}-atom geometry ({method})")
        return e, None
    if gradient:
        return e, mf.nuc_grad_method().kernel()
    return e, None


def single_point(symbols, R, method: Method, *, gradient: bool = False, charge: int = 0, spin: int = 0,
                 unrestricted: bool = False, attempt: int = 0):
    """Energy [eV] and gradient ``dE/dR`` [eV/Å] (or None) of one geometry ``R`` [Å].

    ``spin`` is 2S (number of unpaired electrons); ``attempt=1`` is the
    fallback SCF setup (atom guess, level shift, Newton).
    """
    if isinstance(method, str):
        method = Method.parse(method)
    if gradient and not method.has_gradient:
        raise ValueError(f"PySCF has no analytic gradients for {method.name}; use 'mp2' (conventional integrals) "
                         "for energies with gradients")
    _import_pyscf()
    R = np.asarray(R, dtype=np.float64)
    if R.shape != (len(symbols), 3):
        raise ValueError(f"coordinates must have shape ({len(symbols)}, 3), got {R.shape}")
    e, g = _run(_mole(symbols, R, method, charge, spin), method, gradient, attempt, unrestricted)
    return e * _HARTREE, (None if g is None else np.asarray(g) * (_HARTREE / _BOHR))


def single_points(symbols, R, method: Method, *, gradient: bool = False, charge: int = 0, spin: int = 0,
                  progress=None):
    """Energies [eV] (and gradients [eV/Å]) of a batch of geometries ``R`` (n, N, 3) [Å].

    Returns
    -------
    E : ndarray of shape (n,)
    G : ndarray of shape (n, N, 3) or None
    cpu_seconds : float
        CPU time of this process spent in PySCF.
    """
    R = np.asarray(R, dtype=np.float64)
    n = len(R)
    E = np.empty(n)
    G = np.empty(R.shape) if gradient else None
    t0 = time.process_time()
    for i in range(n):
        E[i], g = single_point(symbols, R[i], method, gradient=gradient, charge=charge, spin=spin)
        if gradient:
            G[i] = g
        if progress is not None:
            progress(i + 1, n, f"{method} {len(symbols)} atoms")
    return E, G, time.process_time() - t0


def fragment_energies(symbols, R, monomer_size: int, subsets, method: Method, *, progress=None):
    """Energies [eV] of sub-clusters of cluster geometries.

    Parameters
    ----------
    symbols : sequence of str
        Atoms of the whole cluster, monomer after monomer.
    R : ndarray of shape (n, N, 3)
        Cluster geometries [Å].
    monomer_size : int
        Atoms per monomer (monomer ``k`` is atoms ``k*m .. k*m+m-1``).
    subsets : sequence of sequence of int
        Monomer index sets; each sub-cluster is computed alone in its own
        basis (no counterpoise correction).

    Returns
    -------
    E : ndarray of shape (n, n_subsets)
    cpu_seconds : float
    """
    R = np.asarray(R, dtype=np.float64)
    symbols = list(symbols)
    m = int(monomer_size)
    if len(symbols) % m:
        raise ValueError(f"{len(symbols)} atoms are not a whole number of {m}-atom monomers")
    subsets = [tuple(int(i) for i in s) for s in subsets]
    E = np.empty((len(R), len(subsets)))
    t0 = time.process_time()
    for k, s in enumerate(subsets):
        atoms = [i * m + a for i in s for a in range(m)]
        sub_symbols = [symbols[a] for a in atoms]
        for i in range(len(R)):
            E[i, k] = single_point(sub_symbols, R[i, atoms], method)[0]
            if progress is not None:
                progress(k * len(R) + i + 1, len(R) * len(subsets), f"fragment {s}")
    return E, time.process_time() - t0


class PySCFCalculator(Calculator):
    """ASE calculator running PySCF: ``energy`` [eV] and, where PySCF has analytic
    gradients, ``forces`` [eV/Å].

    Parameters
    ----------
    method : Method or str
        ``"fci/cc-pvdz"``, ``"mp2/cc-pvdz"``, ...
    charge : int
        Total charge [e].
    multiplicity : int
        Spin multiplicity 2S+1 (2 for a doublet such as H3).
    unrestricted : bool
        Unrestricted reference even for closed shells.
    attempt : int
        0: PySCF defaults; 1: the fallback setup (see :meth:`fallback`).
    """

    def __init__(self, method, *, charge: int = 0, multiplicity: int = 1, unrestricted: bool = False,
                 attempt: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.method = Method.parse(method) if isinstance(method, str) else method
        if int(multiplicity) < 1:
            raise ValueError(f"multiplicity must be >= 1 (2S+1), got {multiplicity}")
        self.charge = int(charge)
        self.multiplicity = int(multiplicity)
        self.unrestricted = bool(unrestricted)
        self.attempt = int(attempt)
        self.implemented_properties = ["energy", "free_energy"] + (["forces"] if self.method.has_gradient else [])

    def fallback(self) -> "PySCFCalculator | None":
        """The same calculation with the second SCF setup (None if this is it already)."""
        if self.attempt > 0:
            return None
        return PySCFCalculator(self.method, charge=self.charge, multiplicity=self.multiplicity,
                               unrestricted=self.unrestricted, attempt=1)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        gradient = "forces" in properties and self.method.has_gradient
        e, g = single_point(self.atoms.get_chemical_symbols(), self.atoms.get_positions(), self.method,
                            gradient=gradient, charge=self.charge, spin=self.multiplicity - 1,
                            unrestricted=self.unrestricted, attempt=self.attempt)
        self.results = {"energy": float(e), "free_energy": float(e)}
        if g is not None:
            self.results["forces"] = -np.asarray(g, dtype=np.float64)
