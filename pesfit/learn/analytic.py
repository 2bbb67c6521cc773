"""An analytic H3 surface (LEPS with Sato's parameter) as an ASE calculator.

A cheap stand-in for an electronic-structure method in tests and examples
(``--calculator pesfit.learn.analytic:leps_h3``).  With pair distances
``r_i`` [Å], singlet and triplet H2 curves

    E1(r) = D (exp(-2b(r - re)) - 2 exp(-b(r - re)))
    E3(r) = D/2 (exp(-2b(r - re)) + 2 exp(-b(r - re)))

Coulomb and exchange parts ``Q_i = (E1 (1+k) + E3 (1-k))/2``,
``J_i = (E1 (1+k) - E3 (1-k))/2`` and

    V = (Q1 + Q2 + Q3 - S) / (1 + k),   S = sqrt(((J1-J2)^2 + (J2-J3)^2 + (J3-J1)^2) / 2)

[eV]; far from the third atom ``V`` is the H2 Morse curve.  Forces follow
from ``dV/dr_i = (Q_i' - (2 J_i - J_j - J_k) J_i' / (2S)) / (1 + k)`` and
``dr_ij/dR_i = (R_i - R_j) / r_ij``.
"""
from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

__all__ = ["LEPSH3", "leps_h3", "leps_energy_forces"]

D_EV, BETA, RE, SATO = 4.7466, 1.9425, 0.7417, 0.18  # eV, 1/Å, Å, dimensionless
_PAIRS = ((0, 1), (1, 2), (0, 2))


def leps_energy_forces(R):
    """Energy [eV] and forces [eV/Å] of H3 geometries ``R`` (n, 3, 3) [Å]."""
    R = np.asarray(R, dtype=np.float64)
    diff = np.stack([R[:, i] - R[:, j] for i, j in _PAIRS], axis=1)  # (n, 3, 3)
    r = np.linalg.norm(diff, axis=2)
    x = np.exp(-BETA * (r - RE))
    e1, e3 = D_EV * (x * x - 2 * x), 0.5 * D_EV * (x * x + 2 * x)
    d1, d3 = D_EV * (-2 * BETA * x * x + 2 * BETA * x), 0.5 * D_EV * (-2 * BETA * x * x - 2 * BETA * x)
    k = SATO
    Q, J = 0.5 * (e1 * (1 + k) + e3 * (1 - k)), 0.5 * (e1 * (1 + k) - e3 * (1 - k))
    dQ, dJ = 0.5 * (d1 * (1 + k) + d3 * (1 - k)), 0.5 * (d1 * (1 + k) - d3 * (1 - k))
    J1, J2, J3 = J.T
    S = np.sqrt(0.5 * ((J1 - J2) ** 2 + (J2 - J3) ** 2 + (J3 - J1) ** 2) + 1e-30)
    E = (Q.sum(axis=1) - S) / (1 + k)
    dS_dJ = (2 * J - J.sum(axis=1, keepdims=True) + J) / (2 * S[:, None])  # (2 J_i - J_j - J_k) / (2S)
    dV_dr = (dQ - dS_dJ * dJ) / (1 + k)
    G = np.zeros_like(R)
    for p, (i, j) in enumerate(_PAIRS):
        g = (dV_dr[:, p] / r[:, p])[:, None] * diff[:, p]
        G[:, i] += g
        G[:, j] -= g
    return E, -G


class LEPSH3(Calculator):
    """ASE calculator of the LEPS H3 surface: ``energy`` [eV], ``forces`` [eV/Å]."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if self.atoms.get_chemical_symbols() != ["H", "H", "H"]:
            raise ValueError(f"LEPSH3 describes H H H, got {' '.join(self.atoms.get_chemical_symbols())}")
        E, F = leps_energy_forces(self.atoms.get_positions()[None])
        self.results = {"energy": float(E[0]), "free_energy": float(E[0]), "forces": F[0]}


def leps_h3() -> LEPSH3:
    """Factory for ``--calculator pesfit.learn.analytic:leps_h3``."""
    return LEPSH3()
