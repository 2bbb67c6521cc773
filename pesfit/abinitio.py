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

Supported methods: ``hf``, ``df-hf``, ``mp2``, ``df-mp2`` and Kohn-Sham DFT as
``dft:XC`` (``dft:b3lyp``).  Analytic gradients exist for ``hf``, ``df-hf``,
``mp2`` and DFT; PySCF has none for density-fitted MP2.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from . import units

__all__ = ["Method", "single_point", "single_points", "fragment_energies", "pyscf_version"]

_HARTREE = units.energy_factor("hartree", "eV")
_BOHR = units.length_factor("bohr", "angstrom")
_METHODS = ("hf", "df-hf", "mp2", "df-mp2")


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
        ``"hf"``, ``"df-hf"``, ``"mp2"``, ``"df-mp2"`` or ``"dft:XC"``.
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
        return self.name != "df-mp2"

    def to_dict(self) -> dict:
        return {"name": self.name, "basis": self.basis, "conv_tol": self.conv_tol, "frozen_core": self.frozen_core}


def _mole(symbols, R, method: Method, charge: int, spin: int):
    from pyscf import gto

    atoms = [(str(s), tuple(float(c) for c in r)) for s, r in zip(symbols, R)]
    return gto.M(atom=atoms, basis=method.basis, unit="Angstrom", charge=charge, spin=spin, verbose=0)


def _run(mol, method: Method, gradient: bool):
    """Energy [hartree] and gradient [hartree/bohr] (or None)."""
    from pyscf import dft, scf

    name = method.name
    if name.startswith("dft:"):
        mf = dft.RKS(mol) if mol.spin == 0 else dft.UKS(mol)
        mf.xc = name[4:]
    else:
        mf = scf.RHF(mol) if mol.spin == 0 else scf.UHF(mol)
    if name in ("df-hf", "df-mp2"):
        mf = mf.density_fit()
    mf.conv_tol = method.conv_tol
    e = mf.kernel()
    if not mf.converged:
        raise RuntimeError(f"SCF did not converge for a {mol.natm}-atom geometry ({method}); "
                           "check the geometry or loosen conv_tol")
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
    if gradient:
        return e, mf.nuc_grad_method().kernel()
    return e, None


def single_point(symbols, R, method: Method, *, gradient: bool = False, charge: int = 0, spin: int = 0):
    """Energy [eV] and gradient ``dE/dR`` [eV/Å] (or None) of one geometry ``R`` [Å]."""
    if isinstance(method, str):
        method = Method.parse(method)
    if gradient and not method.has_gradient:
        raise ValueError(f"PySCF has no analytic gradients for {method.name}; use 'mp2' (conventional integrals) "
                         "for energies with gradients")
    _import_pyscf()
    R = np.asarray(R, dtype=np.float64)
    if R.shape != (len(symbols), 3):
        raise ValueError(f"coordinates must have shape ({len(symbols)}, 3), got {R.shape}")
    e, g = _run(_mole(symbols, R, method, charge, spin), method, gradient)
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
