"""Tests for pesfit.units: CODATA 2018 factors, aliases and errors."""

import numpy as np
import pytest

from pesfit import units

HARTREE_EV = 27.211386245988
BOHR_A = 0.529177210903
KCAL_MOL_EV = 0.0433641043
CM_EV = 1.239841984e-4


def test_codata_and_internal_units():
    assert units.CODATA_VERSION == "2018"
    assert units.INTERNAL_LENGTH == "angstrom"
    assert units.INTERNAL_ENERGY == "eV"
    assert units.LENGTH_UNITS["angstrom"] == 1.0
    assert units.ENERGY_UNITS["eV"] == 1.0
    assert {"eV", "hartree", "kcal/mol", "kJ/mol", "cm-1", "meV"} <= set(units.ENERGY_UNITS)
    assert {"angstrom", "bohr"} <= set(units.LENGTH_UNITS)


def test_hartree_to_ev():
    assert units.energy_factor("hartree", "eV") == pytest.approx(HARTREE_EV, rel=1e-13)
    assert units.ENERGY_UNITS["hartree"] == pytest.approx(HARTREE_EV, rel=1e-13)
    assert units.energy_factor("eV", "hartree") == pytest.approx(1 / HARTREE_EV, rel=1e-13)


def test_bohr_to_angstrom():
    assert units.length_factor("bohr", "angstrom") == pytest.approx(BOHR_A, rel=1e-13)
    assert units.length_factor("angstrom", "bohr") == pytest.approx(1 / BOHR_A, rel=1e-13)
    assert units.convert_length(2.0, "bohr", "Ang") == pytest.approx(2 * BOHR_A, rel=1e-13)


def test_kcal_kj_per_mol():
    assert units.energy_factor("kcal/mol", "eV") == pytest.approx(KCAL_MOL_EV, rel=2e-9)
    assert units.energy_factor("kcal/mol", "kJ/mol") == pytest.approx(4.184, rel=1e-13)
    # 1 meV = 0.023061 kcal/mol (data README)
    assert units.energy_factor("meV", "kcal/mol") == pytest.approx(0.023061, rel=2e-5)


def test_wavenumbers():
    assert units.energy_factor("cm-1", "eV") == pytest.approx(CM_EV, rel=1e-9)
    assert units.energy_factor("meV", "cm-1") == pytest.approx(8.0655, abs=1e-4)
    assert units.energy_factor("hartree", "cm-1") == pytest.approx(219474.6313632, rel=1e-11)


def test_force_factor_hartree_per_bohr():
    f = units.force_factor("hartree", "bohr", "eV", "angstrom")
    assert f == pytest.approx(HARTREE_EV / BOHR_A, rel=1e-13)
    assert f == pytest.approx(51.4220674763, rel=1e-11)  # CODATA 2018 a.u. of force
    # defaults are the internal units, and the inverse undoes it
    assert units.force_factor("hartree", "bohr") == f
    assert units.force_factor("eV", "angstrom", "hartree", "bohr") * f == pytest.approx(1.0, rel=1e-14)
    assert units.force_factor("kcal/mol", "Ang") == pytest.approx(KCAL_MOL_EV, rel=2e-9)


@pytest.mark.parametrize(
    "alias, canonical",
    [("Ang", "angstrom"), ("A", "angstrom"), ("Å", "angstrom"), ("ANGSTROM", "angstrom"),
     ("Bohr", "bohr"), ("au", "bohr")],
)
def test_length_aliases(alias, canonical):
    assert units.canonical_length_unit(alias) == canonical


@pytest.mark.parametrize(
    "alias, canonical",
    [("au", "hartree"), ("Eh", "hartree"), ("Ha", "hartree"), ("HARTREE", "hartree"),
     ("kcal_mol", "kcal/mol"), ("KCAL/MOL", "kcal/mol"), ("kj/mol", "kJ/mol"),
     ("cm^-1", "cm-1"), ("wavenumber", "cm-1"), ("CM-1", "cm-1"), ("ev", "eV"), ("meV", "meV")],
)
def test_energy_aliases(alias, canonical):
    assert units.canonical_energy_unit(alias) == canonical


def test_factors_are_reciprocal_and_identity():
    for a in units.ENERGY_UNITS:
        assert units.energy_factor(a, a) == 1.0
        for b in units.ENERGY_UNITS:
            assert units.energy_factor(a, b) * units.energy_factor(b, a) == pytest.approx(1.0, rel=1e-14)
    assert units.energy_factor("Eh", "ev") == units.energy_factor("hartree", "eV")


def test_convert_arrays_not_modified():
    x = np.array([1.0, 2.0])
    y = units.convert_energy(x, "hartree", "eV")
    np.testing.assert_allclose(y, [HARTREE_EV, 2 * HARTREE_EV], rtol=1e-13)
    np.testing.assert_array_equal(x, [1.0, 2.0])
    np.testing.assert_allclose(units.convert_length(x, "angstrom", "bohr"), x / BOHR_A, rtol=1e-13)


def test_unknown_energy_unit_lists_names():
    with pytest.raises(ValueError, match=r"unknown energy unit 'furlong'.*'hartree'.*'kcal/mol'"):
        units.energy_factor("furlong", "eV")


def test_unknown_length_unit_lists_names():
    with pytest.raises(ValueError, match=r"unknown length unit 'parsec'.*'bohr'"):
        units.convert_length(1.0, "angstrom", "parsec")
    with pytest.raises(ValueError, match=r"unknown length unit"):
        units.force_factor("eV", "mile")
