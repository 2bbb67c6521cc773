"""Tests for pesfit.data: Dataset, validation, file formats; and pesfit.datasets."""

import json

import numpy as np
import pytest

from pesfit import data
from pesfit.data import Dataset

HARTREE_EV = 27.211386245988
BOHR_A = 0.529177210903
KCAL_MOL_EV = 4184.0 / (1.602176634e-19 * 6.02214076e23)


def make(n=4, elements=("O", "H", "H"), seed=0, states=None, forces=True, U=False):
    rng = np.random.default_rng(seed)
    N = len(elements)
    R = rng.normal(size=(n, N, 3))
    E = rng.normal(size=n) if states is None else np.sort(rng.normal(size=(n, states)), axis=1)
    F = rng.normal(size=(n, N, 3)) if forces else None
    Umat = None
    if U:
        A = rng.normal(size=(n, states, states))
        Umat = A + A.transpose(0, 2, 1)
    return Dataset(R=R, z=list(elements), E=E, F=F, U=Umat, meta={"name": "test", "seed": seed})


def assert_same(a, b, rtol=0.0, atol=0.0):
    np.testing.assert_array_equal(a.z, b.z)
    for key in ("R", "E", "F", "U", "R_min"):
        x, y = getattr(a, key), getattr(b, key)
        assert (x is None) == (y is None), key
        if x is not None:
            np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=key)


# --------------------------------------------------------------------------- Dataset


def test_dataset_basic_properties():
    ds = make(n=5, elements=("C", "O", "H", "H"))
    assert ds.n_structures == 5 == len(ds)
    assert ds.n_atoms == 4
    assert ds.symbols == ["C", "O", "H", "H"]
    assert ds.z.tolist() == [6, 8, 1, 1]
    assert ds.n_states == 1
    assert "C O H H" in repr(ds)


def test_dataset_copies_and_is_read_only():
    R = np.zeros((2, 2, 3))
    R[1] += 1.0
    ds = Dataset(R=R, z=[1, 1], E=[0.0, 1.0])
    R[0, 0, 0] = 5.0
    assert ds.R[0, 0, 0] == 0.0
    with pytest.raises(ValueError):
        ds.R[0, 0, 0] = 1.0
    with pytest.raises(AttributeError):
        ds.E = None


def test_energies_relative_to_min():
    ds = Dataset(R=np.arange(9.0).reshape(3, 1, 3), z=[1], E=[2.0, -1.0, 0.5])
    np.testing.assert_allclose(ds.energies_relative_to_min(), [3.0, 0.0, 1.5])
    with pytest.raises(ValueError, match="no energies"):
        Dataset(R=np.zeros((1, 1, 3)), z=[1]).energies_relative_to_min()


def test_subset_and_first():
    ds = make(n=6)
    sub = ds.subset([4, 1])
    np.testing.assert_array_equal(sub.R, ds.R[[4, 1]])
    np.testing.assert_array_equal(sub.E, ds.E[[4, 1]])
    np.testing.assert_array_equal(sub.F, ds.F[[4, 1]])
    mask = np.array([True, False, True, False, False, False])
    np.testing.assert_array_equal(ds.subset(mask).E, ds.E[[0, 2]])
    np.testing.assert_array_equal(ds.subset(slice(1, 3)).R, ds.R[1:3])
    first = ds.first(3)
    assert first.n_structures == 3
    np.testing.assert_array_equal(first.E, ds.E[:3])
    assert first.meta["name"] == "test"
    with pytest.raises(ValueError, match="first 7 structures but the dataset has only 6"):
        ds.first(7)
    with pytest.raises(ValueError, match="index 6 is out of range"):
        ds.subset([0, 6])
    with pytest.raises(ValueError, match=r"mask has shape \(2,\)"):
        ds.subset(np.array([True, False]))


# --------------------------------------------------------------------------- atom order


def test_atom_permutation_example():
    assert data.atom_permutation("H C O H", "C O H H").tolist() == [1, 2, 0, 3]
    assert data.atom_permutation([1, 6, 8, 1], ["C", "O", "H", "H"]).tolist() == [1, 2, 0, 3]


def test_reorder_atoms_moves_positions_and_forces():
    ds = make(n=3, elements=("H", "C", "O", "H"))
    out = ds.reorder_atoms(["C", "O", "H", "H"])
    assert out.symbols == ["C", "O", "H", "H"]
    # C, O, first H, second H of the data
    for new, old in enumerate([1, 2, 0, 3]):
        np.testing.assert_array_equal(out.R[:, new], ds.R[:, old])
        np.testing.assert_array_equal(out.F[:, new], ds.F[:, old])
    np.testing.assert_array_equal(out.E, ds.E)
    # the original is unchanged
    assert ds.symbols == ["H", "C", "O", "H"]


def test_reorder_round_trip_restores_original():
    ds = make(n=5, elements=("C", "O", "H", "H", "H"), seed=3)
    ds = Dataset(R=ds.R, z=ds.z, E=ds.E, F=ds.F, R_min=ds.R[0])
    # scramble the element order, keeping like atoms in their relative order
    slots = np.random.default_rng(1).permutation(ds.n_atoms)  # new position of each element slot
    z_new = ds.z[slots]
    perm = np.empty(ds.n_atoms, dtype=int)
    for el in set(ds.z.tolist()):
        perm[np.nonzero(z_new == el)[0]] = np.nonzero(ds.z == el)[0]
    assert not np.array_equal(perm, np.arange(ds.n_atoms))
    permuted = Dataset(R=ds.R[:, perm], z=ds.z[perm], E=ds.E, F=ds.F[:, perm], R_min=ds.R_min[perm])
    back = permuted.reorder_atoms(ds.symbols)
    assert_same(back, ds)
    # and H C O H -> C O H H -> H C O H
    d2 = make(n=4, elements=("H", "C", "O", "H"), seed=5)
    assert_same(d2.reorder_atoms("C O H H").reorder_atoms(d2.symbols), d2)


def test_reorder_atoms_multiset_mismatch_names_elements():
    ds = make(n=2, elements=("H", "C", "O", "H"))
    with pytest.raises(ValueError, match=r"H2 C1 O1.*C1 O1 H1 N1"):
        ds.reorder_atoms("C O H N")
    with pytest.raises(ValueError, match="same elements"):
        ds.reorder_atoms("C O H")


# --------------------------------------------------------------------------- validation


def test_nan_in_R_names_structure():
    R = np.random.default_rng(0).normal(size=(4, 3, 3))
    R[2, 1, 0] = np.nan
    with pytest.raises(ValueError, match=r"R contains a non-finite value \(nan\) in structure 2"):
        Dataset(R=R, z=[8, 1, 1])


def test_inf_in_E_names_structure():
    R = np.random.default_rng(0).normal(size=(4, 3, 3))
    with pytest.raises(ValueError, match=r"E contains a non-finite value \(inf\) in structure 1"):
        Dataset(R=R, z=[8, 1, 1], E=[0.0, np.inf, 1.0, 2.0])


def test_nan_in_F_names_structure():
    R = np.random.default_rng(0).normal(size=(4, 3, 3))
    F = np.zeros_like(R)
    F[3, 2, 2] = np.nan
    with pytest.raises(ValueError, match=r"F contains a non-finite value \(nan\) in structure 3"):
        Dataset(R=R, z=[8, 1, 1], F=F)


def test_F_shape_mismatch():
    R = np.zeros((3, 3, 3))
    with pytest.raises(ValueError, match=r"F has shape \(3, 2, 3\) but R has shape \(3, 3, 3\)"):
        Dataset(R=R, z=[8, 1, 1], F=np.zeros((3, 2, 3)))


def test_E_length_mismatch():
    with pytest.raises(ValueError, match=r"E has shape \(2,\) but R has shape \(3, 3, 3\)"):
        Dataset(R=np.zeros((3, 3, 3)), z=[8, 1, 1], E=[0.0, 1.0])


def test_z_length_mismatch():
    with pytest.raises(ValueError, match=r"z has 2 atoms .* R has 3 atoms"):
        Dataset(R=np.zeros((3, 3, 3)), z=[8, 1])


def test_R_wrong_rank():
    with pytest.raises(ValueError, match=r"R must have shape \(n_structures, n_atoms, 3\), got \(3, 3\)"):
        Dataset(R=np.zeros((3, 3)), z=[8, 1, 1])


def test_U_shape_mismatch():
    with pytest.raises(ValueError, match=r"E has shape \(2, 2\).*U has shape \(2, 3, 3\)"):
        Dataset(R=np.zeros((2, 1, 3)), z=[1], E=np.zeros((2, 2)), U=np.zeros((2, 3, 3)))


def test_unknown_elements():
    with pytest.raises(ValueError, match="unknown element symbol 'Xx'"):
        Dataset(R=np.zeros((1, 2, 3)), z=["H", "Xx"])
    with pytest.raises(ValueError, match="unknown atomic number 200"):
        Dataset(R=np.zeros((1, 2, 3)), z=[1, 200])
    with pytest.raises(ValueError, match="unknown atomic number 0"):
        Dataset(R=np.zeros((1, 2, 3)), z=[0, 1])
    with pytest.raises(ValueError, match="unknown element symbol 'X'"):  # ASE's dummy atom
        Dataset(R=np.zeros((1, 2, 3)), z=["X", "H"])


def test_check_duplicates_finds_pairs():
    ds = make(n=5)
    R = ds.R.copy()
    R[3] = R[1] + 1e-10  # within 1e-8 Å
    R[4] = R[0] + 1e-6  # not a duplicate
    dup = Dataset(R=R, z=ds.z, E=ds.E)
    assert dup.check_duplicates() == [(1, 3)]
    assert ds.check_duplicates() == []


def test_find_duplicates_many_structures_fast():
    R = np.random.default_rng(0).normal(size=(5000, 6, 3))
    R[:, 0] = 0.0  # a common first atom must not defeat the search
    R[4321] = R[17]
    R[999] = R[17]
    assert data.find_duplicate_structures(R) == [(17, 999), (17, 4321), (999, 4321)]


def test_loader_rejects_duplicates_unless_allowed(tmp_path):
    ds = make(n=4)
    R = ds.R.copy()
    R[2] = R[0]
    dup = Dataset(R=R, z=ds.z, E=ds.E, F=ds.F)
    path = tmp_path / "dup.npz"
    data.save_npz(dup, path)
    with pytest.raises(ValueError, match=r"structures 0 and 2 have identical coordinates.*allow_duplicates=True"):
        data.load_npz(path)
    assert data.load_npz(path, allow_duplicates=True).n_structures == 4
    data.save_points(dup, tmp_path / "dup.dat")
    with pytest.raises(ValueError, match="structures 0 and 2 have identical"):
        data.load_points(tmp_path / "dup.dat")


# --------------------------------------------------------------------------- npz


def test_npz_round_trip(tmp_path):
    ds = make(n=5)
    path = tmp_path / "a.npz"
    data.save_npz(ds, path)
    assert path.exists() and not (tmp_path / "a.npz.npz").exists()
    back = data.load_npz(path)
    assert_same(back, ds)
    assert back.meta["name"] == "test" and back.meta["seed"] == 0
    assert back.meta["source_units"] == {"length": "angstrom", "energy": "eV"}
    with np.load(path, allow_pickle=False) as f:
        assert json.loads(str(f["meta"]))["name"] == "test"
        assert str(f["r_unit"]) == "Ang" and str(f["e_unit"]) == "eV"


def test_npz_multistate_round_trip(tmp_path):
    ds = make(n=4, states=2, forces=False, U=True)
    ds = Dataset(R=ds.R, z=ds.z, E=ds.E, U=ds.U, R_min=ds.R[0], meta={"dpem": True})
    data.save_npz(ds, tmp_path / "m.npz")
    back = data.load_dataset(tmp_path / "m.npz")
    assert_same(back, ds)
    assert back.n_states == 2


def test_npz_units_converted(tmp_path):
    R = np.array([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], [[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]]])
    E = np.array([[-1.0], [-0.5]])  # (n, 1) is flattened
    F = np.ones((2, 2, 3))
    path = tmp_path / "au.npz"
    np.savez(path, R=R, z=np.array([1, 1]), E=E, F=F)
    ds = data.load_npz(path, length_unit="bohr", energy_unit="hartree")
    np.testing.assert_allclose(ds.R[1, 1, 0], 2 * BOHR_A, rtol=1e-14)
    assert ds.E.shape == (2,)
    np.testing.assert_allclose(ds.E, [-HARTREE_EV, -0.5 * HARTREE_EV], rtol=1e-14)
    np.testing.assert_allclose(ds.F, HARTREE_EV / BOHR_A, rtol=1e-14)
    assert ds.meta["source_units"] == {"length": "bohr", "energy": "hartree"}


def test_npz_declared_sgdml_units(tmp_path):
    path = tmp_path / "sgdml.npz"
    R = np.random.default_rng(0).normal(size=(2, 2, 3))
    np.savez(path, R=R, z=np.array([1, 1]), E=np.array([1.0, 2.0]), F=np.ones((2, 2, 3)),
             r_unit="Ang", e_unit="kcal/mol", name="toy", theory="none")
    ds = data.load_npz(path)
    np.testing.assert_allclose(ds.E, [KCAL_MOL_EV, 2 * KCAL_MOL_EV], rtol=1e-12)
    np.testing.assert_allclose(ds.F, KCAL_MOL_EV, rtol=1e-12)
    np.testing.assert_array_equal(ds.R, R)
    assert ds.meta["source_units"]["energy"] == "kcal/mol"
    with pytest.raises(ValueError, match="declares energy unit 'kcal/mol' but 'eV' was requested"):
        data.load_npz(path, energy_unit="eV")


def test_npz_refuses_pickled_objects(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, R=np.zeros((1, 1, 3)), z=np.array([1]), meta=np.array({"a": 1}, dtype=object))
    with pytest.raises(ValueError, match="pickled Python objects"):
        data.load_npz(path)


def test_npz_missing_key(tmp_path):
    path = tmp_path / "noz.npz"
    np.savez(path, R=np.zeros((1, 1, 3)))
    with pytest.raises(ValueError, match="required key 'z' is missing"):
        data.load_npz(path)


def test_npz_loader_reports_path_on_bad_data(tmp_path):
    path = tmp_path / "nan.npz"
    np.savez(path, R=np.zeros((2, 1, 3)) + np.arange(2)[:, None, None], z=np.array([1]),
             E=np.array([0.0, np.inf]))
    with pytest.raises(ValueError, match=r"nan\.npz: E contains a non-finite value \(inf\) in structure 1"):
        data.load_npz(path)


# --------------------------------------------------------------------------- xyz


def test_xyz_round_trip_exact(tmp_path):
    ds = make(n=4, elements=("C", "H", "H", "H", "H", "H"))
    path = tmp_path / "a.xyz"
    data.save_xyz(ds, path)
    back = data.load_xyz(path)
    assert_same(back, ds)
    assert back.meta["source_format"] == "xyz"


def test_xyz_multistate_round_trip_and_U_refused(tmp_path):
    ds = make(n=3, states=2, forces=False)
    data.save_xyz(ds, tmp_path / "m.extxyz")
    assert_same(data.load_dataset(tmp_path / "m.extxyz"), ds)
    with pytest.raises(ValueError, match="cannot store the diabatic matrices U"):
        data.save_xyz(make(n=2, states=2, U=True), tmp_path / "u.xyz")


def test_xyz_written_by_ase_in_atomic_units(tmp_path):
    import ase.io
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(0)
    images = []
    for i in range(3):
        a = Atoms("OH2", positions=rng.normal(size=(3, 3)))
        a.calc = SinglePointCalculator(a, energy=-76.0 + i, forces=np.full((3, 3), 0.1 * i))
        images.append(a)
    ase.io.write(tmp_path / "au.xyz", images, format="extxyz")
    ds = data.load_xyz(tmp_path / "au.xyz", length_unit="bohr", energy_unit="hartree")
    assert ds.symbols == ["O", "H", "H"]
    np.testing.assert_allclose(ds.E, (-76.0 + np.arange(3)) * HARTREE_EV, rtol=1e-12)
    np.testing.assert_allclose(ds.F[2], 0.2 * HARTREE_EV / BOHR_A, rtol=1e-7)
    np.testing.assert_allclose(ds.R[0], images[0].positions * BOHR_A, atol=1e-8)


def test_xyz_energy_from_info_key_E(tmp_path):
    text = (
        "2\nE=-1.5 pbc=\"F F F\"\nH 0 0 0\nH 0 0 0.74\n"
        "2\nE=-1.25 pbc=\"F F F\"\nH 0 0 0\nH 0 0 0.80\n"
    )
    (tmp_path / "e.xyz").write_text(text)
    ds = data.load_xyz(tmp_path / "e.xyz")
    np.testing.assert_allclose(ds.E, [-1.5, -1.25])
    assert ds.F is None


def _xyz(frames):
    out = []
    for syms, e in frames:
        out.append(f"{len(syms)}\nenergy={e} pbc=\"F F F\"")
        out += [f"{s} {k * 0.9 + e} 0.1 0.2" for k, s in enumerate(syms)]
    return "\n".join(out) + "\n"


def test_xyz_atom_count_change(tmp_path):
    (tmp_path / "n.xyz").write_text(_xyz([("OHH", 0.0), ("OHH", 1.0), ("OH", 2.0)]))
    with pytest.raises(ValueError, match="structure 2 has 2 atoms but structure 0 has 3"):
        data.load_xyz(tmp_path / "n.xyz")


def test_xyz_element_mismatch(tmp_path):
    (tmp_path / "e.xyz").write_text(_xyz([("OHH", 0.0), ("HOH", 1.0)]))
    with pytest.raises(ValueError, match=r"structure 1 has elements H O H but structure 0 has O H H \(same atom count"):
        data.load_xyz(tmp_path / "e.xyz")


def test_xyz_energy_missing_in_some_structures(tmp_path):
    text = "1\nenergy=1.0\nH 0 0 0\n1\ncomment\nH 0 0 1\n"
    (tmp_path / "p.xyz").write_text(text)
    with pytest.raises(ValueError, match="structure 1 has no energies but structure 0 has"):
        data.load_xyz(tmp_path / "p.xyz")


# --------------------------------------------------------------------------- points


def _numbers(text):
    """Float fields of a points file, structure by structure: (energy, coords)."""
    lines = text.split("\n")
    n = int(lines[0])
    return float(lines[1]), np.array([[float(t) for t in ln.split()[1:]] for ln in lines[2:2 + n]])


def test_points_round_trip_bohr_hartree(tmp_path):
    ds = make(n=4, forces=False)
    path = tmp_path / "pts.dat"
    data.save_points(ds, path)  # bohr, hartree by default
    e0, xyz0 = _numbers(path.read_text())
    assert e0 == pytest.approx(ds.E[0] / HARTREE_EV, rel=1e-14)
    np.testing.assert_allclose(xyz0, ds.R[0] / BOHR_A, rtol=1e-14)
    back = data.load_points(path)
    assert_same(back, ds, rtol=1e-14, atol=1e-15)
    assert back.meta["source_units"] == {"length": "bohr", "energy": "hartree"}


def test_points_round_trip_angstrom_ev(tmp_path):
    ds = make(n=3, forces=False, elements=("C", "O", "H", "H"))
    path = tmp_path / "pts.txt"
    data.save_points(ds, path, length_unit="angstrom", energy_unit="eV")
    e0, xyz0 = _numbers(path.read_text())
    assert e0 == ds.E[0]
    np.testing.assert_array_equal(xyz0, ds.R[0])
    back = data.load_dataset(path, length_unit="Ang", energy_unit="eV")
    assert_same(back, ds)


def test_points_handwritten_file(tmp_path):
    text = (
        "3\n"
        "  -76.40 0.5 12\n"  # extra numbers after the energy are ignored
        "O 0.0 0.0 0.0\n"
        "h 1.8 0.0 0.0\n"  # lower-case symbols accepted
        "H 0.0 1.8D0 0.0\n"  # Fortran exponent
        "\n"
        "3\n"
        "-7.6300D+01\n"
        "O 0.0 0.0 0.1\n"
        "H 1.9 0.0 0.0\n"
        "H 0.0 1.9 0.0\n"
    )
    (tmp_path / "h2o.points").write_text(text)
    ds = data.load_dataset(tmp_path / "h2o.points")
    assert ds.symbols == ["O", "H", "H"]
    np.testing.assert_allclose(ds.E, np.array([-76.40, -76.30]) * HARTREE_EV, rtol=1e-14)
    np.testing.assert_allclose(ds.R[0, 2, 1], 1.8 * BOHR_A, rtol=1e-14)
    np.testing.assert_allclose(ds.R[1, 0, 2], 0.1 * BOHR_A, rtol=1e-14)
    assert ds.F is None


def test_points_refuses_multistate_and_missing_energy(tmp_path):
    with pytest.raises(ValueError, match=r"one energy per structure but E has shape \(2, 2\)"):
        data.save_points(make(n=2, states=2), tmp_path / "x.dat")
    with pytest.raises(ValueError, match="needs energies"):
        data.save_points(Dataset(R=np.zeros((1, 1, 3)), z=[1]), tmp_path / "x.dat")


POINTS_OK = "3\n-1.0\nO 0 0 0\nH 1 0 0\nH 0 1 0\n"


def test_points_unknown_element(tmp_path):
    (tmp_path / "x.dat").write_text(POINTS_OK + "3\n-0.9\nO 0 0 0\nXx 1.1 0 0\nH 0 1 0\n")
    with pytest.raises(ValueError, match=r"line 9 \(structure 1\): unknown element symbol 'Xx'"):
        data.load_points(tmp_path / "x.dat")


def test_points_atom_count_change(tmp_path):
    (tmp_path / "x.dat").write_text(POINTS_OK + "2\n-0.9\nO 0 0 0\nH 1.1 0 0\n")
    with pytest.raises(ValueError, match=r"line 6 \(structure 1\): structure 1 has 2 atoms but structure 0 has 3"):
        data.load_points(tmp_path / "x.dat")


def test_points_element_mismatch(tmp_path):
    (tmp_path / "x.dat").write_text(POINTS_OK + "3\n-0.9\nH 0 0 0\nO 1.1 0 0\nH 0 1 0\n")
    with pytest.raises(ValueError, match="structure 1 has elements H O H but structure 0 has O H H"):
        data.load_points(tmp_path / "x.dat")


def test_points_truncated(tmp_path):
    (tmp_path / "x.dat").write_text(POINTS_OK + "3\n-0.9\nO 0 0 0\nH 1.1 0 0\n")
    with pytest.raises(ValueError, match=r"ends at line 9 inside structure 1, which starts at line 6.*truncated"):
        data.load_points(tmp_path / "x.dat")


def test_points_non_numeric_fields(tmp_path):
    (tmp_path / "e.dat").write_text(POINTS_OK + "3\nabc\nO 0 0 0\nH 1.1 0 0\nH 0 1 0\n")
    with pytest.raises(ValueError, match=r"line 7 \(structure 1\): expected the energy, got 'abc'"):
        data.load_points(tmp_path / "e.dat")
    (tmp_path / "c.dat").write_text(POINTS_OK + "3\n-0.9\nO 0 0 0\nH 1.1 x 0\nH 0 1 0\n")
    with pytest.raises(ValueError, match=r"line 9 \(structure 1\): non-numeric coordinate"):
        data.load_points(tmp_path / "c.dat")
    (tmp_path / "n.dat").write_text("three\n-1.0\n")
    with pytest.raises(ValueError, match=r"line 1 \(structure 0\): expected the number of atoms"):
        data.load_points(tmp_path / "n.dat")


# --------------------------------------------------------------------------- dispatch


def test_load_dataset_dispatch_and_fmt_override(tmp_path):
    ds = make(n=3, forces=False)
    data.save_dataset(ds, tmp_path / "a.npz")
    data.save_dataset(ds, tmp_path / "a.xyz")
    data.save_points(ds, tmp_path / "a.inp")
    assert data.load_dataset(tmp_path / "a.npz").meta["source_format"] == "npz"
    assert data.load_dataset(tmp_path / "a.xyz").meta["source_format"] == "xyz"
    back = data.load_dataset(tmp_path / "a.inp", fmt="points")
    assert_same(back, ds, rtol=1e-14, atol=1e-15)


def test_unknown_format(tmp_path):
    with pytest.raises(ValueError, match=r"unknown data file format \(extension '\.h5'\)"):
        data.load_dataset(tmp_path / "a.h5")
    with pytest.raises(ValueError, match=r"unknown format 'hdf5'; use one of"):
        data.load_dataset(tmp_path / "a.npz", fmt="hdf5")


def test_loader_unknown_unit(tmp_path):
    (tmp_path / "x.dat").write_text(POINTS_OK)
    with pytest.raises(ValueError, match="unknown length unit 'furlong'"):
        data.load_points(tmp_path / "x.dat", length_unit="furlong")


# --------------------------------------------------------------------------- shipped data


def test_shipped_datasets():
    from pesfit.datasets import available_datasets, shipped_dataset

    assert {"h3", "oh3", "h2co", "ch5", "nh3_dpem"} <= set(available_datasets())
    ds = shipped_dataset("h2co", "test")
    assert ds.symbols == ["C", "O", "H", "H"]
    assert ds.n_structures == 2000 and ds.F.shape == (2000, 4, 3)
    assert ds.R_min.shape == (4, 3)
    dp = shipped_dataset("nh3_dpem", "test")
    assert dp.E.shape == (2000, 2) and dp.U.shape == (2000, 2, 2) and dp.F is None
    with pytest.raises(ValueError, match=r"no shipped dataset 'h2o'.*available: .*h2co"):
        shipped_dataset("h2o")
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        shipped_dataset("h3", "valid")
