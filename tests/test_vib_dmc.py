"""Harmonic analysis (pesfit.vib, ``pesfit vib``), the stored reference geometry, and DMC helpers."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pesfit.cli import main
from pesfit.datasets import shipped_dataset, shipped_path
from pesfit.dmc import blocking_error, pyvibdmc_potential, zpe_from_vref
from pesfit.models import load_model
from pesfit.vib import (EIGENVALUE_TO_CM, atomic_masses, harmonic_analysis, hessian, label_modes, minimize,
                        optimize_and_analyse)

BOHR = 0.529177210903  # Å
HARTREE = 27.211386245988  # eV


@pytest.fixture(scope="module")
def model(h2co_small_model):
    return h2co_small_model


@pytest.fixture(scope="module")
def model_file(h2co_small_model_file):
    return h2co_small_model_file


@pytest.fixture(scope="module")
def result(model):
    return optimize_and_analyse(model)


class Harmonic:
    """Toy model: springs ``k/2 (r - r0)^2`` [eV/Å^2, Å] between the listed atom pairs."""

    def __init__(self, symbols, springs):
        self.symbols, self.springs = tuple(symbols), springs

    def predict(self, R, forces=False):
        R = np.asarray(R, dtype=float)
        single = R.ndim == 2
        R = R[None] if single else R
        E = np.zeros(len(R))
        F = np.zeros_like(R)
        for i, j, k, r0 in self.springs:
            d = R[:, i] - R[:, j]
            r = np.linalg.norm(d, axis=1)
            E += 0.5 * k * (r - r0) ** 2
            f = -(k * (r - r0) / r)[:, None] * d  # F_i = -dE/dR_i
            F[:, i] += f
            F[:, j] -= f
        if single:
            E, F = E[0], F[0]
        return (E, F) if forces else E


def test_diatomic_frequency_is_analytic():
    k, r0 = 30.0, 1.1
    toy = Harmonic(["C", "O"], [(0, 1, k, r0)])
    R0 = np.array([[0.0, 0.0, 0.0], [0.1, 0.2, 1.3]])
    res = optimize_and_analyse(toy, R0)
    m = atomic_masses(["C", "O"])
    mu = m[0] * m[1] / m.sum()
    assert res.linear and res.frequencies_cm.shape == (1,)
    assert res.frequencies_cm[0] == pytest.approx(EIGENVALUE_TO_CM * np.sqrt(k / mu), rel=1e-6)
    assert np.linalg.norm(res.geometry_A[1] - res.geometry_A[0]) == pytest.approx(r0, abs=1e-8)
    assert res.labels == ["C-O stretch"]
    assert EIGENVALUE_TO_CM == pytest.approx(521.47, abs=0.01)


def test_linear_triatomic_has_3n_minus_5_modes():
    # symmetric linear O-C-O with springs along the bonds and between the ends (no bending force constant
    # from stretches alone: add a weak O...O spring so the bend is not zero)
    toy = Harmonic(["O", "C", "O"], [(0, 1, 100.0, 1.16), (1, 2, 100.0, 1.16), (0, 2, 5.0, 2.32)])
    R = np.array([[0, 0, -1.16], [0, 0, 0], [0, 0, 1.16]], dtype=float)
    res = harmonic_analysis(toy, R)
    assert res.linear and len(res.frequencies_cm) == 4
    assert "C-O sym. stretch" in res.labels and "C-O asym. stretch" in res.labels


def test_h2co_minimum_and_modes(result):
    assert result.info["converged"] and result.info["max_force_eV_A"] < 1e-6
    assert result.n_imaginary == 0 and not result.linear
    f = result.frequencies_cm
    assert f.shape == (6,) and np.all(np.diff(f) > 0)
    assert 1000 < f[0] < 1300 and 2700 < f[-2] < f[-1] < 3200
    assert set(result.labels) >= {"C out-of-plane", "C-O stretch", "C-H sym. stretch", "C-H asym. stretch"}
    assert result.labels.index("C-O stretch") == 3
    assert result.zpe_cm == pytest.approx(0.5 * f.sum())


def test_frequencies_invariant_to_permutation_and_rotation(model, result):
    from scipy.spatial.transform import Rotation

    R = result.geometry_A
    rot = Rotation.from_euler("xyz", [0.3, -1.1, 2.0]).as_matrix()
    swapped = R[[0, 1, 3, 2]] @ rot.T + 0.7
    res2 = harmonic_analysis(model, swapped)
    np.testing.assert_allclose(res2.frequencies_cm, result.frequencies_cm, atol=0.05)
    assert res2.labels == result.labels


def test_hessian_symmetric_and_step_independent(model, result):
    H1 = hessian(model, result.geometry_A, step=1e-3)
    H2 = hessian(model, result.geometry_A, step=2e-3)
    np.testing.assert_allclose(H1, H1.T, atol=1e-12)
    assert np.abs(H1 - H2).max() < 1e-4 * np.abs(H1).max()
    # translation leaves the energy unchanged: rows sum to zero over atoms
    assert np.abs(H1.reshape(4, 3, 4, 3).sum(axis=2)).max() < 1e-5 * np.abs(H1).max()


def test_labels_without_hessian(result):
    labels = label_modes(result.symbols, result.geometry_A, result.modes)
    assert labels[-1] == "C-H asym. stretch" and labels[0] == "C out-of-plane"


def _old_model_file(model_file, tmp_path):
    """The model file without ``reference_geometry_A``, as written before it existed."""
    import hashlib

    from pesfit.models._base import _canonical

    d = json.loads(model_file.read_text())
    d.pop("reference_geometry_A")
    d.pop("checksum")
    d["checksum"] = hashlib.sha256(_canonical(d).encode()).hexdigest()
    old = tmp_path / "old.json"
    old.write_text(json.dumps(d))
    return old


def test_reference_geometry_round_trip_and_old_files(model, model_file, tmp_path):
    data = shipped_dataset("h2co", "train").first(1000)
    np.testing.assert_array_equal(model.reference_geometry_, data.R[np.argmin(data.E)])
    loaded = load_model(model_file)
    np.testing.assert_array_equal(loaded.reference_geometry_, model.reference_geometry_)
    old = load_model(_old_model_file(model_file, tmp_path))
    assert old.reference_geometry_ is None
    with pytest.raises(ValueError, match="no start geometry"):
        minimize(old)


def test_cli_vib_json_and_text(model_file, result, capsys):
    assert main(["vib", str(model_file), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    for key in ("energy_eV", "geometry_A", "frequencies_cm", "labels", "zpe_harmonic_cm"):
        assert key in d
    np.testing.assert_allclose(d["frequencies_cm"], result.frequencies_cm, atol=0.01)
    assert np.array(d["geometry_A"]).shape == (4, 3)
    assert main(["vib", str(model_file)]) == 0
    text = capsys.readouterr().out
    assert "C-O stretch" in text and "harmonic ZPE" in text


def test_cli_vib_geometry_file_and_old_model(model, model_file, tmp_path, capsys):
    import ase.io
    from ase import Atoms

    old = _old_model_file(model_file, tmp_path)
    assert main(["vib", str(old)]) == 2
    assert "--geometry" in capsys.readouterr().err
    # an xyz in another atom order (H C H O) is reordered to the model's C O H H
    R = model.reference_geometry_
    xyz = tmp_path / "start.xyz"
    ase.io.write(xyz, Atoms("HCHO", positions=R[[2, 0, 3, 1]]), format="xyz")
    assert main(["vib", str(old), "--geometry", str(xyz), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert len(d["frequencies_cm"]) == 6 and d["converged"]
    assert main(["vib", str(old), "--geometry", str(shipped_path("h2co", "test")), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["frequencies_cm"]) == 6


# -------------------------------------------------------------------- DMC
def test_pyvibdmc_potential_units(model, result):
    e0 = result.energy_eV
    pot = pyvibdmc_potential(model, energy_zero_eV=e0)
    rng = np.random.default_rng(1)
    cds = (result.geometry_A[None] + 0.02 * rng.normal(size=(7, 4, 3))) / BOHR
    v = pot(cds)
    assert v.shape == (7,)
    np.testing.assert_allclose(v, (model.predict(cds * BOHR) - e0) / HARTREE, rtol=1e-12)
    assert pot(result.geometry_A[None] / BOHR)[0] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="walkers must have shape"):
        pot(np.zeros((3, 3)))


def test_blocking_error_on_correlated_series():
    rng = np.random.default_rng(5)
    phi, n = 0.9, 2**15
    x = np.empty(n)
    x[0] = 0.0
    eps = rng.normal(size=n)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + eps[i]
    mean, err, block = blocking_error(x)
    sigma = 1 / np.sqrt(1 - phi**2)
    exact = sigma / np.sqrt(n) * np.sqrt((1 + phi) / (1 - phi))
    assert 0.7 * exact < err < 1.4 * exact and block >= 16
    naive = x.std(ddof=1) / np.sqrt(n)
    assert err > 3 * naive
    z, ze = zpe_from_vref(np.full(1000, 0.01), 100)
    assert z == pytest.approx(0.01 * 219474.6313632, rel=1e-9) and ze < 1e-9
    with pytest.raises(ValueError, match="equilibration"):
        zpe_from_vref(np.zeros(100), 90)


def test_run_pyvibdmc_short(model, result, tmp_path):
    pytest.importorskip("pyvibdmc")
    from pesfit.dmc import run_pyvibdmc

    steps = []
    res = run_pyvibdmc(model, result.geometry_A, n_walkers=300, n_steps=800, equilibration=300,
                       output_folder=tmp_path, seed=2, energy_zero_eV=result.energy_eV,
                       progress=lambda s, t, m: steps.append(s))
    assert len(res.vref_cm) == 800 and steps[-1] == 800
    # anharmonic ZPE a little below the harmonic one; a short run has a large error bar
    assert 0 < res.zpe_error_cm < 150
    assert abs(res.zpe_cm - 0.98 * result.zpe_cm) < 5 * res.zpe_error_cm + 100
    assert (tmp_path / "pesfit_dmc_sim_info.hdf5").is_file()
