"""Unit conversion constants for pesfit.

One table of multiplicative constants, derived from CODATA 2018
(the SI-exact constants plus the recommended values of the Bohr radius
and the Hartree energy).  Internally pesfit works in ångström (Å) for
lengths, electronvolt (eV) for energies and eV/Å for forces; every
loader converts into these units and model files record
:data:`CODATA_VERSION`.

A factor ``f = energy_factor(a, b)`` converts a value in unit ``a`` into
unit ``b`` by multiplication: ``x_b = f * x_a``.

Examples
--------
>>> round(energy_factor("hartree", "eV"), 9)
27.211386246
>>> round(length_factor("bohr", "Ang"), 12)
0.529177210903
>>> round(float(convert_energy(1.0, "meV", "cm-1")), 4)
8.0655
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CODATA_VERSION",
    "INTERNAL_LENGTH",
    "INTERNAL_ENERGY",
    "LENGTH_UNITS",
    "ENERGY_UNITS",
    "canonical_length_unit",
    "canonical_energy_unit",
    "length_factor",
    "energy_factor",
    "force_factor",
    "convert_length",
    "convert_energy",
]

CODATA_VERSION = "2018"

INTERNAL_LENGTH = "angstrom"
INTERNAL_ENERGY = "eV"

# --- CODATA 2018 -----------------------------------------------------------
_ELEMENTARY_CHARGE = 1.602176634e-19  # C (exact)
_AVOGADRO = 6.02214076e23  # 1/mol (exact)
_PLANCK = 6.62607015e-34  # J s (exact)
_SPEED_OF_LIGHT = 299792458.0  # m/s (exact)
_BOHR_IN_ANGSTROM = 0.529177210903  # Å
_HARTREE_IN_EV = 27.211386245988  # eV

_EV_PER_J_PER_MOL = 1.0 / (_ELEMENTARY_CHARGE * _AVOGADRO)  # eV per (J/mol)

#: Length units, value of one unit in Å.
LENGTH_UNITS: dict[str, float] = {
    "angstrom": 1.0,
    "bohr": _BOHR_IN_ANGSTROM,
    "nm": 10.0,
    "pm": 0.01,
}

#: Energy units, value of one unit in eV.
ENERGY_UNITS: dict[str, float] = {
    "eV": 1.0,
    "meV": 1.0e-3,
    "hartree": _HARTREE_IN_EV,
    "kcal/mol": 4184.0 * _EV_PER_J_PER_MOL,  # 0.0433641043 eV
    "kJ/mol": 1000.0 * _EV_PER_J_PER_MOL,
    "cm-1": _PLANCK * _SPEED_OF_LIGHT * 100.0 / _ELEMENTARY_CHARGE,  # 1.239841984e-4 eV
}

# Aliases, matched after lower-casing and stripping blanks.
_LENGTH_ALIASES: dict[str, str] = {
    "angstrom": "angstrom",
    "angstroms": "angstrom",
    "ang": "angstrom",
    "a": "angstrom",
    "å": "angstrom",
    "aa": "angstrom",
    "bohr": "bohr",
    "bohrs": "bohr",
    "au": "bohr",
    "a.u.": "bohr",
    "a0": "bohr",
    "nm": "nm",
    "pm": "pm",
}

_ENERGY_ALIASES: dict[str, str] = {
    "ev": "eV",
    "mev": "meV",
    "hartree": "hartree",
    "hartrees": "hartree",
    "ha": "hartree",
    "eh": "hartree",
    "au": "hartree",
    "a.u.": "hartree",
    "kcal/mol": "kcal/mol",
    "kcal_mol": "kcal/mol",
    "kcalmol": "kcal/mol",
    "kcal": "kcal/mol",
    "kj/mol": "kJ/mol",
    "kj_mol": "kJ/mol",
    "kjmol": "kJ/mol",
    "cm-1": "cm-1",
    "cm^-1": "cm-1",
    "cm**-1": "cm-1",
    "1/cm": "cm-1",
    "invcm": "cm-1",
    "wavenumber": "cm-1",
    "wavenumbers": "cm-1",
}


def _lookup(unit, aliases: dict[str, str], kind: str) -> str:
    if not isinstance(unit, str):
        raise ValueError(f"{kind} unit must be a string, got {unit!r}")
    key = "".join(unit.split()).lower()
    try:
        return aliases[key]
    except KeyError:
        names = ", ".join(repr(a) for a in sorted(aliases))
        raise ValueError(
            f"unknown {kind} unit {unit!r}; accepted names (case-insensitive): {names}"
        ) from None


def canonical_length_unit(unit: str) -> str:
    """Return the canonical name of a length unit.

    Parameters
    ----------
    unit : str
        Unit name or alias, case-insensitive (``"Ang"``, ``"A"``, ``"Å"``,
        ``"bohr"``, ``"au"``, ...).

    Returns
    -------
    str
        A key of :data:`LENGTH_UNITS`.

    Raises
    ------
    ValueError
        If the unit is unknown; the message lists the accepted names.
    """
    return _lookup(unit, _LENGTH_ALIASES, "length")


def canonical_energy_unit(unit: str) -> str:
    """Return the canonical name of an energy unit.

    Parameters
    ----------
    unit : str
        Unit name or alias, case-insensitive (``"eV"``, ``"hartree"``,
        ``"Eh"``, ``"Ha"``, ``"au"``, ``"kcal/mol"``, ``"kcal_mol"``,
        ``"kJ/mol"``, ``"cm-1"``, ``"cm^-1"``, ``"wavenumber"``, ``"meV"``).

    Returns
    -------
    str
        A key of :data:`ENERGY_UNITS`.

    Raises
    ------
    ValueError
        If the unit is unknown; the message lists the accepted names.
    """
    return _lookup(unit, _ENERGY_ALIASES, "energy")


def length_factor(from_unit: str, to_unit: str = INTERNAL_LENGTH) -> float:
    """Multiplicative factor converting lengths from one unit to another.

    Parameters
    ----------
    from_unit, to_unit : str
        Length units (see :func:`canonical_length_unit`).

    Returns
    -------
    float
        ``x[to_unit] = factor * x[from_unit]``.
    """
    a = LENGTH_UNITS[canonical_length_unit(from_unit)]
    b = LENGTH_UNITS[canonical_length_unit(to_unit)]
    return 1.0 if a == b else a / b


def energy_factor(from_unit: str, to_unit: str = INTERNAL_ENERGY) -> float:
    """Multiplicative factor converting energies from one unit to another.

    Parameters
    ----------
    from_unit, to_unit : str
        Energy units (see :func:`canonical_energy_unit`).

    Returns
    -------
    float
        ``E[to_unit] = factor * E[from_unit]``.
    """
    a = ENERGY_UNITS[canonical_energy_unit(from_unit)]
    b = ENERGY_UNITS[canonical_energy_unit(to_unit)]
    return 1.0 if a == b else a / b


def force_factor(
    from_energy: str,
    from_length: str,
    to_energy: str = INTERNAL_ENERGY,
    to_length: str = INTERNAL_LENGTH,
) -> float:
    """Multiplicative factor converting forces (energy/length).

    Parameters
    ----------
    from_energy, from_length : str
        Units of the input forces, e.g. ``"hartree"``, ``"bohr"``.
    to_energy, to_length : str
        Target units, by default eV and Å.

    Returns
    -------
    float
        ``F[to] = factor * F[from]``, i.e.
        ``energy_factor(from_energy, to_energy) / length_factor(from_length, to_length)``.
    """
    return energy_factor(from_energy, to_energy) / length_factor(from_length, to_length)


def convert_length(x, from_unit: str, to_unit: str = INTERNAL_LENGTH):
    """Convert lengths between units.

    Parameters
    ----------
    x : float or array_like
        Lengths in ``from_unit``.
    from_unit, to_unit : str
        Length units.

    Returns
    -------
    float or ndarray
        Lengths in ``to_unit`` (a new array; ``x`` is not changed).
    """
    return np.multiply(x, length_factor(from_unit, to_unit))


def convert_energy(x, from_unit: str, to_unit: str = INTERNAL_ENERGY):
    """Convert energies between units.

    Parameters
    ----------
    x : float or array_like
        Energies in ``from_unit``.
    from_unit, to_unit : str
        Energy units.

    Returns
    -------
    float or ndarray
        Energies in ``to_unit`` (a new array; ``x`` is not changed).
    """
    return np.multiply(x, energy_factor(from_unit, to_unit))
