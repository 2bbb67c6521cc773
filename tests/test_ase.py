"""PESCalculator: ASE energies/forces from pesfit models and compiled exports; NVE energy conservation."""
from __future__ import annotations

import importlib.util
import runpy
import shutil
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from pesfit.ase import CompiledModel, PESCalculator, check_atom_order
from pesfit.models import LinearPIPModel

EXAMPLES = Path(__file__).resolve().parents[1] / "molecules" / "h2co" / "examples"


@pytest.fixture(scope="module")
def model(h2co_small_model):
    return h2co_small_model


@pytest.fixture(scope="module")
def model_file(h2co_small_model_file):
    return h2co_small_model_file


def h2co(model, shift=0.0):
    R = model.reference_geometry_ + shift * np.random.default_rng(0).normal(size=(4, 3))
    return Atoms(model.molecule_.symbols, positions=R)


def test_energy_forces_match_model(model):
    atoms = h2co(model, 0.03)
    atoms.calc = PESCalculator(model)
    E, F = model.predict(atoms.positions, forces=True)
    assert atoms.get_potential_energy() == pytest.approx(E, abs=1e-12)
    assert atoms.get_potential_energy(force_consistent=True) == pytest.approx(E, abs=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), F, atol=1e-12)
    assert atoms.calc.results["out_of_range"] is False


def test_forces_are_minus_gradient(model):
    atoms = h2co(model, 0.03)
    atoms.calc = PESCalculator(model)
    h, num = 1e-5, np.zeros((4, 3))
    for i in range(4):
        for a in range(3):
            e = []
            for sign in (1, -1):
                moved = atoms.copy()
                moved.positions[i, a] += sign * h
                moved.calc = atoms.calc
                e.append(moved.get_potential_energy())
            num[i, a] = -(e[0] - e[1]) / (2 * h)
    np.testing.assert_allclose(atoms.get_forces(), num, atol=1e-6)


def test_results_cached_until_positions_change(model):
    class Counting:
        def __init__(self, m):
            self.m, self.calls, self.molecule_, self.r_min_ = m, 0, m.molecule_, m.r_min_

        def predict(self, R, forces=False):
            self.calls += 1
            return self.m.predict(R, forces=forces)

    counter = Counting(model)
    atoms = h2co(model)
    atoms.calc = PESCalculator(counter)
    atoms.get_potential_energy()
    atoms.get_forces()
    assert counter.calls == 1  # one pass fills energy and forces
    atoms.positions[0, 0] += 0.01
    atoms.get_forces()
    assert counter.calls == 2


def test_model_file_path(model, model_file):
    atoms = h2co(model, 0.02)
    atoms.calc = PESCalculator(str(model_file))
    assert atoms.get_potential_energy() == pytest.approx(model.predict(atoms.positions), abs=1e-12)


def test_atom_order_mismatch_is_named(model):
    atoms = h2co(model)[[0, 2, 1, 3]]  # C H O H
    atoms.calc = PESCalculator(model)
    with pytest.raises(ValueError, match=r"atom 1 is H but the model expects O.*atoms\[\[0, 2, 1, 3\]\]"):
        atoms.get_potential_energy()
    with pytest.raises(ValueError, match="the elements differ"):
        check_atom_order(["C", "N", "H", "H"], ["C", "O", "H", "H"])
    with pytest.raises(ValueError, match="are 3, the model has 4"):
        check_atom_order(["C", "O", "H"], ["C", "O", "H", "H"])


def test_periodic_and_unfitted_rejected(model):
    atoms = h2co(model)
    atoms.pbc = True
    atoms.cell = [10, 10, 10]
    atoms.calc = PESCalculator(model)
    with pytest.raises(ValueError, match="pbc"):
        atoms.get_potential_energy()
    with pytest.raises(ValueError, match="not fitted"):
        PESCalculator(LinearPIPModel())
    with pytest.raises(TypeError, match="expected a pesfit model"):
        PESCalculator(42)


def test_out_of_range_flag(model, caplog):
    atoms = h2co(model)
    atoms.set_distance(0, 1, 0.8, fix=0)  # C-O far shorter than any training structure
    atoms.calc = PESCalculator(model)
    with caplog.at_level("WARNING", logger="pesfit.ase"):
        atoms.get_potential_energy()
    assert atoms.calc.results["out_of_range"] is True
    assert "outside the fitted range" in caplog.text


def test_compiled_export(model, tmp_path):
    if shutil.which("gcc") is None or shutil.which("make") is None:
        pytest.skip("gcc/make not installed")
    from pesfit.export import export_model

    res = export_model(model, "c", tmp_path, check=True)
    spec = importlib.util.spec_from_file_location("h2co_pes_ctypes", tmp_path / "pes_ctypes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    pes = mod.CompiledPES(res["library"])
    atoms = h2co(model, 0.03)
    atoms.calc = PESCalculator(pes)
    assert isinstance(atoms.calc.model, CompiledModel)
    E, F = model.predict(atoms.positions, forces=True)
    assert atoms.get_potential_energy() == pytest.approx(E, abs=1e-9)
    np.testing.assert_allclose(atoms.get_forces(), F, atol=1e-8)
    # the compiled potential also serves pesfit.vib (through CompiledModel's predict in Å and eV)
    from pesfit.vib import harmonic_analysis, minimize

    R, _, _ = minimize(model)
    np.testing.assert_allclose(harmonic_analysis(CompiledModel(pes), R).frequencies_cm,
                               harmonic_analysis(model, R).frequencies_cm, atol=1e-3)
    far = h2co(model)
    far.set_distance(0, 1, 0.8, fix=0)
    far.calc = PESCalculator(pes)
    far.get_potential_energy()
    assert far.calc.results["out_of_range"] is True
    bad = atoms[[0, 2, 1, 3]]
    bad.calc = PESCalculator(pes)
    with pytest.raises(ValueError, match="atom order mismatch"):
        bad.get_forces()


def test_example_nve_conserves_energy(model_file, capsys):
    """The ASE example (optimise, Vibrations, NVE) on a short 100 fs run at 0.25 fs."""
    main = runpy.run_path(str(EXAMPLES / "ase_md.py"))["main"]
    out = main(["--model", str(model_file), "--time-fs", "100", "--dt-fs", "0.25"])
    assert out["max_energy_deviation_meV"] < 1.0
    # ASE's finite-difference Vibrations agree with pesfit.vib (same masses)
    np.testing.assert_allclose(out["ase_frequencies_cm"], out["pesfit_frequencies_cm"], atol=1.5)
    assert "NVE 100 fs" in capsys.readouterr().out
