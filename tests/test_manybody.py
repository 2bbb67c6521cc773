"""Many-body PIP models, purified n-body bases, fragmented PIPs and the PySCF driver."""
from __future__ import annotations

import importlib.util
import json
import shutil
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from invariants import DistanceTransform, PermutationGroup, pip_basis
from invariants._reference import reference_values
from pesfit.cli import main
from pesfit.data import Dataset
from pesfit.export import export_model
from pesfit.models import load_model
from pesfit.models.fragments import FragmentedPIPModel, fragment_images, fragmented_basis
from pesfit.models.manybody import (ClusterData, ClusterSpec, ManyBodyModel, cutoff_weights, load_clusters,
                                    many_body_energies, nbody_basis, save_clusters, switch)

WATER = Path(__file__).resolve().parents[1] / "molecules" / "water_clusters"
SPEC = ClusterSpec("O H H")


# ------------------------------------------------------------------ synthetic clusters
def _water(rng):
    r1, r2 = 0.96 + rng.normal(0, 0.03, 2)
    th = np.deg2rad(104.5 + rng.normal(0, 5))
    M = np.array([[0, 0, 0], [r1 * np.sin(th / 2), 0, r1 * np.cos(th / 2)], [-r2 * np.sin(th / 2), 0, r2 * np.cos(th / 2)]])
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return M @ q.T


def _clusters(n_mon, count, seed, spacing=2.9):
    """Random clusters: monomer i near a jittered lattice point ``spacing`` apart."""
    rng = np.random.default_rng(seed)
    sites = np.array([[0, 0, 0], [1, 0, 0], [0.5, 0.85, 0], [0.5, 0.3, 0.8], [1.5, 0.85, 0.1], [-0.5, 0.8, 0.3]])
    out = []
    for _ in range(count):
        out.append(np.vstack([_water(rng) + spacing * sites[i] + rng.normal(0, 0.25, 3) for i in range(n_mon)]))
    return np.array(out)


def _e1(X):
    r1 = np.linalg.norm(X[:, 1] - X[:, 0], axis=1)
    r2 = np.linalg.norm(X[:, 2] - X[:, 0], axis=1)
    c = np.sum((X[:, 1] - X[:, 0]) * (X[:, 2] - X[:, 0]), axis=1) / r1 / r2
    return 2 * (r1 - 0.96) ** 2 + 2 * (r2 - 0.96) ** 2 + 0.5 * (c + 0.25) ** 2


def _e2(X):
    r = np.linalg.norm(X[:, :3, None] - X[:, None, 3:], axis=-1)
    q = np.array([-0.8, 0.4, 0.4])
    return (np.outer(q, q)[None] * np.exp(-r / 1.5)).sum((1, 2)) + 0.3 * np.exp(-2 * r[:, 0, 0])


def _e3(X):
    O = X[:, ::3]
    r = sum(np.linalg.norm(O[:, i] - O[:, j], axis=1) for i, j in combinations(range(3), 2))
    return -0.05 * np.exp(-r / 2.0)


def _total(R):
    n = R.shape[1] // 3
    at = lambda S: [3 * i + a for i in S for a in range(3)]  # noqa: E731
    E = sum(_e1(R[:, at([i])]) for i in range(n))
    E = E + sum(_e2(R[:, at(S)]) for S in combinations(range(n), 2))
    return E + sum(_e3(R[:, at(S)]) for S in combinations(range(n), 3))


def _cluster_data(n_mon, count, seed):
    R = _clusters(n_mon, count, seed)
    subs = [s for k in range(1, n_mon) for s in combinations(range(n_mon), k)]
    Ef = np.stack([_total(R[:, [3 * i + a for i in s for a in range(3)]]) for s in subs], axis=1) if subs else None
    return ClusterData(R, ("O", "H", "H") * n_mon, 3, _total(R), subs, Ef)


@pytest.fixture(scope="module")
def model():
    d2, d3 = _cluster_data(2, 250, 1), _cluster_data(3, 250, 2)
    return ManyBodyModel(max_body=3, degrees=(4, 3, 3), morse_a=(1.5, 1.5, 2.0), ridge=1e-10,
                         cutoffs=((6.0, 7.5), (5.0, 6.5))).fit([d2, d3])


# ------------------------------------------------------------------ declaration and bases
def test_cluster_spec_and_group():
    assert repr(SPEC) == "ClusterSpec('O H H', blocks=((1, 2),))"
    assert SPEC.group(1).order == 2 and SPEC.group(2).order == 8 and SPEC.group(3).order == 48
    assert ClusterSpec("O H H", blocks=()).group(3).order == 6  # only whole monomers permutable
    with pytest.raises(ValueError, match="like atoms"):
        ClusterSpec("O H H", blocks=[[0, 1]])


@pytest.mark.parametrize("n,degree,a", [(2, 4, 2.0), (3, 3, 2.0), (3, 4, 1.5)])
def test_purified_basis_vanishes_when_a_monomer_leaves(n, degree, a):
    basis = nbody_basis(SPEC, n, degree, max_intra_degree=1 if degree == 4 and n == 3 else None)
    T = DistanceTransform("morse", a)
    R = _clusters(n, 3, 5)
    near = basis.cartesian_values(R, T)
    assert np.all(near > 0)
    rng = np.random.default_rng(0)
    for k in range(n):
        far = R.copy()
        d = rng.normal(size=3)
        far[:, 3 * k:3 * k + 3] += 60.0 * d / np.linalg.norm(d)
        ratio = np.abs(basis.cartesian_values(far, T)) / near
        assert ratio.max() < 1e-10, (k, ratio.max())


def test_nbody_basis_filters_and_reference():
    full = nbody_basis(SPEC, 2, 3, purify=False)
    pur = nbody_basis(SPEC, 2, 3)
    inter_only = nbody_basis(SPEC, 2, 3, max_intra_degree=0)
    assert full.n_basis == pip_basis(SPEC.group(2), 3).n_basis
    assert inter_only.n_basis < pur.n_basis < full.n_basis
    X = np.random.default_rng(1).uniform(0.1, 0.9, (3, 15))
    np.testing.assert_allclose(pur.evaluate(X), reference_values(pur, X), rtol=1e-12)
    assert pur.options["many_body"]["n"] == 2


def test_switch_and_cutoff_gradients():
    r = np.linspace(3.5, 7.5, 50)
    s, ds = switch(r, 4.0, 7.0)
    assert s[0] == 1.0 and s[-1] == 0.0
    h = 1e-6
    np.testing.assert_allclose(ds, (switch(r + h, 4.0, 7.0)[0] - switch(r - h, 4.0, 7.0)[0]) / (2 * h), atol=1e-7)
    C = np.random.default_rng(2).normal(scale=2.5, size=(4, 3, 3))
    w, g = cutoff_weights(C, (3.0, 6.0), gradient=True)
    for i, j in [(0, 0), (1, 2), (2, 1)]:
        Cp, Cm = C.copy(), C.copy()
        Cp[:, i, j] += h
        Cm[:, i, j] -= h
        np.testing.assert_allclose(g[:, i, j], (cutoff_weights(Cp, (3.0, 6.0)) - cutoff_weights(Cm, (3.0, 6.0))) / (2 * h),
                                   atol=1e-7)


def test_many_body_energies_inclusion_exclusion():
    E = {(0,): 1.0, (1,): 2.0, (2,): 0.5, (0, 1): 2.5, (0, 2): 1.2, (1, 2): 2.4, (0, 1, 2): 3.0}
    eps = many_body_energies(E)
    assert eps[(0, 1)] == pytest.approx(-0.5)
    assert eps[(0, 1, 2)] == pytest.approx(3.0 - (-0.5 + -0.3 + -0.1) - 3.5)
    assert sum(eps.values()) == pytest.approx(E[(0, 1, 2)])
    assert (0, 1, 2) not in many_body_energies({k: v for k, v in E.items() if k != (1, 2)})


# ------------------------------------------------------------------ model
def test_fit_accuracy_on_synthetic_terms(model):
    rep = model.evaluate_bodies(_cluster_data(3, 60, 3))
    assert rep["2"]["energy_rmse_meV"] < 0.5
    assert rep["3"]["energy_rmse_meV"] < 0.05
    assert rep["total"]["energy_rmse_meV"] < 2.0
    assert set(model.body_reports_) == {"1", "2", "3"}


def test_permutations_of_monomers_and_like_atoms_leave_energy_unchanged(model):
    R = _clusters(6, 3, 4)
    E, F = model.predict(R, forces=True)
    rng = np.random.default_rng(0)
    mono = rng.permutation(6)
    perm = np.concatenate([[3 * i, 3 * i + 1, 3 * i + 2] for i in mono])
    for k in (0, 4):  # H swaps inside monomers
        perm[[3 * k + 1, 3 * k + 2]] = perm[[3 * k + 2, 3 * k + 1]]
    E2, F2 = model.predict(R[:, perm], forces=True)
    np.testing.assert_allclose(E2, E, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(F2, F[:, perm], atol=1e-10)


def test_forces_match_finite_differences(model):
    R = _clusters(4, 1, 6)[0]
    E, F = model.predict(R, forces=True)
    rng = np.random.default_rng(3)
    D = rng.normal(size=R.shape)
    exact = -np.sum(F * D)
    errors = []
    for h in 10.0 ** -np.arange(2, 9):
        fd = (model.predict(R + h * D) - model.predict(R - h * D)) / (2 * h)
        errors.append(abs(fd - exact))
    assert min(errors) <= 1e-3 * max(errors) or min(errors) < 1e-9 * max(1.0, abs(exact))


def test_decomposition_is_consistent(model):
    R = _clusters(5, 4, 7)
    E = model.predict(R)
    terms = model.predict_terms(R)
    assert set(terms) == {1, 2, 3}
    np.testing.assert_allclose(sum(e.sum(axis=1) for _, e in terms.values()), E, rtol=1e-12)
    # a dimer's energy is its two 1-body terms plus its pair term inside the cluster
    subsets, E2 = terms[2]
    k = subsets.index((1, 3))
    dimer = R[:, [3, 4, 5, 9, 10, 11]]
    np.testing.assert_allclose(model.predict(dimer), terms[1][1][:, 1] + terms[1][1][:, 3] + E2[:, k], rtol=1e-12)


def test_cutoff_and_separation(model):
    R = _clusters(2, 2, 8)
    far = R.copy()
    far[:, 3:] += np.array([8.0, 0, 0])  # beyond the 2-body cutoff (7.5 Å)
    terms = model.predict_terms(far)
    assert np.all(terms[2][1] == 0)
    np.testing.assert_allclose(model.predict(far), terms[1][1].sum(axis=1))


def test_model_file_round_trip_and_tampering(model, tmp_path):
    path = tmp_path / "mb.json"
    model.save(path)
    back = load_model(path)
    R = _clusters(3, 3, 9)
    np.testing.assert_array_equal(back.predict(R), model.predict(R))
    d = json.loads(path.read_text())
    d["state"]["terms"]["2"]["coef"][0] += 1e-6
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="checksum"):
        load_model(path)


def test_repeatable_fit_and_total_energy_target():
    d2, d3 = _cluster_data(2, 150, 11), _cluster_data(3, 150, 12)
    kw = dict(max_body=2, degrees=(3, 3), morse_a=1.5, ridge=1e-10)
    a = ManyBodyModel(**kw).fit([d2, d3])
    b = ManyBodyModel(**kw).fit([d2, d3])
    np.testing.assert_array_equal(a.coefs_[2], b.coefs_[2])
    # joint fit from total energies only (plain Datasets)
    ds = [Dataset(R=d.R, z=[8, 1, 1] * d.n_monomers, E=d.E) for d in (_cluster_data(1, 150, 13), d2)]
    tot = ManyBodyModel(target="total", **kw).fit(ds)
    assert tot.hyperparameters_["target"] == "total"
    assert tot.evaluate_bodies(_cluster_data(2, 40, 14))["total"]["energy_rmse_meV"] < 5.0


def test_degree_chosen_by_cross_validation():
    d2 = _cluster_data(2, 150, 21)
    m = ManyBodyModel(max_body=2, degrees=(3, (1, 3)), morse_a=1.5).fit([d2])
    tried = {r["degree"] for r in m.cv_results_ if r["body"] == 2}
    assert tried == {1, 3}
    best = min((r for r in m.cv_results_ if r["body"] == 2), key=lambda r: r["cv_energy_rmse_meV"])
    assert m.hyperparameters_["degrees"]["2"] == best["degree"] == 3     # degree 1 cannot fit the 2-body term
    assert m.bases_[2].max_degree == 3
    with pytest.raises(ValueError, match="needs n-body energies"):
        ManyBodyModel(max_body=2, degrees=(3, (1, 3)), target="total").fit(
            [Dataset(R=d2.R, z=[8, 1, 1] * 2, E=d2.E)])
    with pytest.raises(ValueError, match="positive integers"):
        ManyBodyModel(max_body=2, degrees=(3, ())).fit([d2])


def test_bad_parameters_are_explained():
    with pytest.raises(ValueError, match="one entry per body order"):
        ManyBodyModel(max_body=2, degrees=(4, 3, 3)).fit(_cluster_data(2, 20, 0))
    with pytest.raises(ValueError, match="not fitted"):
        ManyBodyModel().predict(np.zeros((6, 3)))
    with pytest.raises(ValueError, match="whole number"):
        ClusterData(np.zeros((1, 5, 3)), ("O", "H", "H", "O", "H"), 3)


def test_cluster_file_round_trip(tmp_path):
    d = _cluster_data(3, 5, 15)
    save_clusters(d, tmp_path / "c.npz")
    back = load_clusters(tmp_path / "c.npz")
    assert back.fragments == d.fragments and back.monomer_size == 3
    np.testing.assert_allclose(back.E_fragments, d.E_fragments)
    for S, e in d.body_energies().items():
        np.testing.assert_allclose(back.body_energies()[S], e)


@pytest.mark.skipif(not (WATER / "dimers_test.npz").exists(), reason="water cluster data not generated")
def test_shipped_water_data_decomposes():
    for name, n_mon in (("dimers_test", 2), ("trimers_test", 3)):
        d = load_clusters(WATER / f"{name}.npz")
        assert d.n_monomers == n_mon and "method" in d.meta
        eps = d.body_energies()
        np.testing.assert_allclose(sum(eps.values()), d.E, atol=1e-9)


# ------------------------------------------------------------------ C and Fortran export
@pytest.fixture(scope="module")
def model2():
    """A 2-body model on a given linear monomer model (its own 1-body unit in the export)."""
    from pesfit.models.linear import LinearPIPModel

    mono = _clusters(1, 200, 21)
    mm = LinearPIPModel(degree=4, morse_a=1.5, ridge=1e-12).fit(Dataset(R=mono, z=[8, 1, 1], E=_e1(mono)))
    return ManyBodyModel(max_body=2, degrees=(4, 3), morse_a=1.5, ridge=1e-10, monomer_model=mm,
                         cutoffs=((5.0, 7.0),)).fit(_cluster_data(2, 150, 22))


def _need(lang):
    compiler = {"c": "gcc", "fortran": "gfortran"}[lang]
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} is not installed (apt-get install -y {compiler})")


def _export_clusters(n_mon, seed):
    """Compact and stretched clusters: cutoff weights of 1 (3 for trimers), in between and 0."""
    return np.concatenate([_clusters(n_mon, 25, seed, spacing) for spacing in (3.0, 4.5)])


@pytest.mark.parametrize("lang", ["c", "fortran"])
@pytest.mark.parametrize("n_mon", [3, 6])
@pytest.mark.parametrize("body", [2, 3])
def test_export_agrees_with_python(body, n_mon, lang, model, model2, tmp_path):
    _need(lang)
    R = _export_clusters(n_mon, 30 + n_mon)
    res = export_model(model if body == 3 else model2, lang, tmp_path, n_monomers=n_mon, check=True,
                       check_structures=R)
    assert res["build_log"] == ""  # no compiler warnings
    c = res["check"]
    assert c["n_structures"] == len(R)
    assert c["max_energy_rel"] <= 1e-10 and c["max_gradient_rel"] <= 1e-8
    assert sorted(k for k in res if k.endswith("_source") and k != "source") == [f"b{n}_source"
                                                                                 for n in range(1, body + 1)]
    assert "status: 0" in res["driver_output"]


def test_export_fewer_monomers_than_bodies_and_status(model, tmp_path):
    """Two monomers of a 3-body model: no 3-body unit; bad input gives the documented status."""
    _need("c")
    res = export_model(model, "c", tmp_path, prefix="w2", n_monomers=2, check=True,
                       check_structures=_export_clusters(2, 40))
    assert not (tmp_path / "w2_b3.c").exists() and res["check"]["max_energy_rel"] <= 1e-10
    spec = importlib.util.spec_from_file_location("pes_ctypes_mb", tmp_path / "pes_ctypes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    pes = mod.CompiledPES(res["library"])
    assert pes.natoms == 6 and "n_monomers=2" in pes.info
    xyz = _clusters(2, 1, 41)[0] / 0.529177210903
    e, g, st = pes.energy_gradient(xyz, return_status=True)
    assert st == 0 and abs(e * 27.211386245988 - model.predict(xyz * 0.529177210903)) < 1e-12
    bad = xyz.copy()
    bad[4, 1] = np.nan
    assert pes.energy(bad, return_status=True) == (0.0, 2)
    bad = xyz.copy()
    bad[5] = bad[4]  # two H of one monomer on top of each other
    e, g, st = pes.energy_gradient(bad, return_status=True)
    assert (e, st) == (0.0, 3) and not g.any()


def test_export_four_body_spanning_trees(tmp_path):
    """A 4-body term: the cutoff sums over the 16 spanning trees of a tetramer."""
    _need("c")
    data = [_cluster_data(n, 150, n) for n in (2, 3, 4)]
    mb = ManyBodyModel(max_body=4, degrees=(3, 3, 2, 2), morse_a=1.5, ridge=1e-10,
                       cutoffs=((6.0, 7.5), (5.0, 6.5), (4.0, 7.0))).fit(data)
    res = export_model(mb, "c", tmp_path, n_monomers=5, check=True, check_structures=_export_clusters(5, 50))
    assert res["build_log"] == "" and "static const int32_t NTREE[5] = {\n    0, 0, 1, 3, 16\n};" in (
        res["source"].read_text())
    assert res["check"]["max_energy_rel"] <= 1e-10 and res["check"]["max_gradient_rel"] <= 1e-8


@pytest.mark.skipif(not (WATER / "trimers_test.npz").exists(), reason="water cluster data not generated")
def test_cli_export_check_on_shipped_trimers(model, tmp_path, capsys):
    _need("c")
    model.save(tmp_path / "mb.json")
    assert main(["export", str(tmp_path / "mb.json"), "--lang", "c", "--out", str(tmp_path / "o"), "--n-monomers",
                 "3", "--check", "--data", str(WATER / "trimers_test.npz"), "--n-check", "40", "--json"]) == 0
    c = json.loads(capsys.readouterr().out)["check"]
    assert c["n_structures"] == 40 and c["max_energy_rel"] <= 1e-10 and c["max_gradient_rel"] <= 1e-8
    assert main(["export", str(tmp_path / "mb.json"), "--lang", "c", "--out", str(tmp_path / "o"), "--n-monomers",
                 "2", "--check", "--data", str(WATER / "trimers_test.npz")]) == 2
    assert "needs clusters with atoms O H H O H H" in capsys.readouterr().err


def test_export_needs_n_monomers(model, model2, tmp_path, monkeypatch, capsys):
    with pytest.raises(ValueError, match=r"many-body.*n_monomers=M \(pesfit export --n-monomers M\)"):
        export_model(model, "c", tmp_path)
    with pytest.raises(ValueError, match="positive integer"):
        export_model(model, "c", tmp_path, n_monomers=0)
    with pytest.raises(ValueError, match="only for many-body models"):
        export_model(model2.monomer_model_, "c", tmp_path, n_monomers=3)
    model.save(tmp_path / "mb.json")
    assert main(["export", str(tmp_path / "mb.json"), "--lang", "c", "--out", str(tmp_path / "o")]) == 2
    assert "--n-monomers" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "mb.json"), "--lang", "fortran", "--out", str(tmp_path / "o"),
                 "--n-monomers", "4"]) == 0
    assert {p.name for p in (tmp_path / "o").glob("pes*.f90")} == {"pes.f90", "pes_b1.f90", "pes_b2.f90",
                                                                   "pes_b3.f90"}
    spec = model2.export_spec()
    spec["monomer_model_spec"] = dict(spec["monomer_model_spec"], kind="gp_soap")
    monkeypatch.setattr(model2, "export_spec", lambda: spec)
    with pytest.raises(ValueError, match="monomer model of this many-body model cannot be compiled.*'gp_soap'"):
        export_model(model2, "c", tmp_path, n_monomers=2)


# ------------------------------------------------------------------ fragmented PIPs
ETHANE = PermutationGroup.from_symbols("C C H H H H H H".split())


def test_fragment_of_whole_molecule_is_the_full_pip_basis():
    X = np.random.default_rng(0).uniform(0.1, 0.9, (4, 28))
    full, frag = pip_basis(ETHANE, 3), fragmented_basis(ETHANE, [range(8)], 3)
    assert frag.n_basis == full.n_basis
    np.testing.assert_allclose(np.sort(frag.evaluate(X), axis=1), np.sort(full.evaluate(X), axis=1), rtol=1e-13)


def test_fragmented_basis_is_symmetric_deduplicated_and_exact():
    assert len(fragment_images(ETHANE, [0, 1, 2, 3, 5])) == 20
    basis = fragmented_basis(ETHANE, [[0, 1, 2, 3, 5], [0, 1, 2, 4, 6], [0, 2, 3]], [4, 4, 5])
    assert len(basis.options["fragments"]) == 2  # the second fragment is an image of the first
    X = np.random.default_rng(1).uniform(0.1, 0.9, (3, 28))
    np.testing.assert_allclose(basis.evaluate(X), reference_values(basis, X), rtol=1e-12)  # exact orbit sums
    P = basis.evaluate(X)
    assert len({tuple(np.round(c, 9)) for c in P.T}) == basis.n_basis  # no duplicates
    perm = [1, 0, 7, 6, 5, 4, 3, 2]
    Xp = np.empty_like(X)
    Xp[:, ETHANE.variable_permutation(perm)] = X
    np.testing.assert_allclose(basis.evaluate(Xp), P, rtol=1e-12)


def test_fragmented_model_fits_and_round_trips(tmp_path):
    rng = np.random.default_rng(4)
    R0 = np.array([[0, 0, 0.765], [0, 0, -0.765], [1.02, 0, 1.16], [-0.51, 0.88, 1.16], [-0.51, -0.88, 1.16],
                   [-1.02, 0, -1.16], [0.51, 0.88, -1.16], [0.51, -0.88, -1.16]])
    R = R0 + rng.normal(0, 0.05, (300, 8, 3))
    from invariants import pair_distances

    r = pair_distances(R)
    E = np.sum(np.exp(-r), axis=1) + 0.1 * np.sum(np.exp(-r) ** 2, axis=1)
    data = Dataset(R=R, z=[6, 6, 1, 1, 1, 1, 1, 1], E=E)
    m = FragmentedPIPModel(fragments=[[0, 1, 2, 5]], degree=3, morse_a=1.0, ridge=1e-10).fit(data)
    assert m.train_report_["energy_rmse_meV"] < 0.05
    m.save(tmp_path / "f.json")
    back = load_model(tmp_path / "f.json")
    np.testing.assert_array_equal(back.predict(R[:5]), m.predict(R[:5]))
    spec = m.export_spec()
    assert spec["kind"].startswith("linear_") and spec["program"].n_outputs == m.basis_.n_basis
    if shutil.which("gfortran"):                                  # the compiled fragmented basis
        res = export_model(m, "fortran", tmp_path / "f90", check=True, check_structures=R[:50])
        assert res["build_log"] == "" and res["check"]["max_energy_rel"] <= 1e-12


# ------------------------------------------------------------------ PySCF driver
def test_method_parsing():
    from pesfit.abinitio import Method

    m = Method.parse("DF-MP2/aug-cc-pVDZ")
    assert str(m) == "df-mp2/aug-cc-pvdz" and not m.has_gradient
    with pytest.raises(ValueError, match="unknown method"):
        Method.parse("mp4/cc-pvdz")  # ccsd, ccsd(t) and fci are supported since pesfit learn


def test_pyscf_single_point_h2():
    pytest.importorskip("pyscf")
    from pesfit.abinitio import single_point

    R = np.array([[0, 0, 0], [0, 0, 0.74]])
    E, G = single_point(["H", "H"], R, "hf/sto-3g", gradient=True)
    h = 1e-4
    Ep = single_point(["H", "H"], R + [[0, 0, 0], [0, 0, h]], "hf/sto-3g")[0]
    Em = single_point(["H", "H"], R - [[0, 0, 0], [0, 0, h]], "hf/sto-3g")[0]
    assert E == pytest.approx(-1.1167 * 27.211386245988, abs=0.01)
    assert G[1, 2] == pytest.approx((Ep - Em) / (2 * h), abs=1e-5)


def test_given_monomer_model_and_export_spec(tmp_path):
    from pesfit.models.linear import LinearPIPModel

    mono = _clusters(1, 200, 21)
    mm = LinearPIPModel(degree=4, morse_a=1.5, ridge=1e-12).fit(Dataset(R=mono, z=[8, 1, 1], E=_e1(mono)))
    d2 = _cluster_data(2, 150, 22)
    m = ManyBodyModel(max_body=2, degrees=(4, 3), morse_a=1.5, ridge=1e-10, monomer_model=mm).fit(d2)
    assert 1 not in m.bases_
    R = _clusters(2, 3, 23)
    np.testing.assert_allclose(m.predict_terms(R)[1][1], mm.predict(R.reshape(-1, 3, 3)).reshape(3, 2), rtol=1e-12)
    m.save(tmp_path / "m.json")
    np.testing.assert_array_equal(load_model(tmp_path / "m.json").predict(R), m.predict(R))
    spec = m.export_spec()
    assert [t["body"] for t in spec["terms"]] == [2] and spec["monomer_model_spec"]["kind"] == "linear_pip"
    assert spec["monomer_size"] == 3 and spec["terms"][0]["program"].n_outputs == m.bases_[2].n_basis


def test_cli_fit_fragments(tmp_path, capsys):
    from pesfit.cli import main

    train, test = WATER.parent / "ethane" / "train.npz", WATER.parent / "ethane" / "test.npz"
    out = tmp_path / "frag.json"
    argv = ["fit", "--train", str(train), "--n-train", "400", "--test", str(test), "--model", "fragments",
            "--fragments", "0,1,2,3,5", "--degree", "3", "--out", str(out), "--json", "--quiet"]
    assert main(argv) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["model"] == "fragments" and d["hyperparameters"]["fragments"][0]["n_images"] == 20
    assert d["test"]["energy_rmse_meV"] < 100 and load_model(out).n_basis == d["n_basis"]
    k = argv.index("--fragments")
    assert main(argv[:k] + argv[k + 2:]) == 2                       # no --fragments
    assert "needs --fragments" in capsys.readouterr().err
    assert main(argv[:k + 1] + ["0,1,x"] + argv[k + 2:]) == 2
    assert "--fragments must be" in capsys.readouterr().err
