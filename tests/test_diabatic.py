"""Diabatic model: symmetry of couplings, adiabatic quantities, Jacobians, three states, files, bad input."""
import ctypes
import importlib.util
import json
import shutil

import numpy as np
import pytest

from invariants import DistanceTransform, PermutationGroup
from invariants.evaluate import evaluate as evaluate_program
from pesfit.data import Dataset, load_npz
from pesfit.datasets import shipped_path
from pesfit.export import export_model
from pesfit.models import DiabaticModel, load_model
from pesfit.models.diabatic import (_AdiabaticProblem, _pseudoscalar_values, adiabatic_states, build_elements,
                                    design, element_pairs, prune_elements)
from pesfit.models.pseudoscalars import Irrep, find_pseudoscalars, parse_irreps, signed_volume

ODD = [0, 2, 1, 3]    # swap two H atoms of N H H H
EVEN = [0, 2, 3, 1]   # cyclic permutation of the H atoms


def _volume(R):
    return signed_volume(np.asarray(R), (0, 1, 2, 3))


def _planar(R):
    P = np.array(R, dtype=float)
    P[:, :, 2] = 0.0
    return P


@pytest.fixture(scope="module")
def nh3():
    train = load_npz(shipped_path("nh3_dpem", "train"))
    test = load_npz(shipped_path("nh3_dpem", "test"))
    return train, test


@pytest.fixture(scope="module")
def nh3_model(nh3):
    train, _ = nh3
    return DiabaticModel(irreps="A1,A2", degree=4, morse_a=1.5, ridge=0.0).fit(train.first(1500))


# ------------------------------------------------------------------ irreps
def test_irrep_names_and_products():
    assert [str(Irrep.parse(n)) for n in ("A1", "A2", "A1p", "A2pp", "A1''", "A2'")] == \
        ["A1'", "A2''", "A1'", "A2''", "A1''", "A2'"]
    assert Irrep.parse("A2") * Irrep.parse("A2") == Irrep.parse("A1'")
    assert Irrep.parse("A2'") * Irrep.parse("A2''") == Irrep.parse("A1''")
    assert parse_irreps(None, 3) == (Irrep(),) * 3


@pytest.mark.parametrize("spec,atoms,msg", [
    ("A1,E'", "N H H H", "unknown irrep"),
    ("A1,B2", "N H H H", "unknown irrep"),
    ("A1,A2,A1", "N H H H", "one irrep per electronic state"),
    ("A1,A2'", "C O H F", "no odd permutation"),
    ("A1,A2''", "H H H", "always planar"),
])
def test_bad_irreps(spec, atoms, msg):
    with pytest.raises(ValueError, match=msg):
        parse_irreps(spec, 2, PermutationGroup.from_symbols(atoms))


# ------------------------------------------------------------ pseudoscalar
def test_pseudoscalar_symmetry_and_gradient(nh3):
    R = np.asarray(nh3[0].R[:20])
    (ps,) = find_pseudoscalars(PermutationGroup.from_symbols("N H H H"))
    assert ps.irrep == Irrep.parse("A2''")
    v = ps.evaluate(R)
    assert np.allclose(ps.evaluate(R[:, ODD]), -v, rtol=1e-12)
    assert np.allclose(ps.evaluate(R[:, EVEN]), v, rtol=1e-12)
    assert np.allclose(ps.evaluate(-R), -v, rtol=1e-12)
    assert np.max(np.abs(ps.evaluate(_planar(R)))) < 1e-14
    assert np.allclose(v, np.tanh(_volume(R)), rtol=1e-12)
    _, g = ps.evaluate(R, gradient=True)
    h = 1e-6
    for a, x in [(0, 0), (1, 2), (3, 1)]:
        Rp, Rm = R.copy(), R.copy()
        Rp[:, a, x] += h
        Rm[:, a, x] -= h
        assert np.allclose((ps.evaluate(Rp) - ps.evaluate(Rm)) / (2 * h), g[:, a, x], rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------- NH3 model
def test_nh3_fit_to_u(nh3, nh3_model):
    rep = nh3_model.evaluate(nh3[1])
    assert rep["u_rmse_meV"]["U11"] < 40 and rep["u_rmse_meV"]["U12"] < 40, rep["u_rmse_meV"]
    assert rep["u_rmse_meV"]["U22"] < 80, rep["u_rmse_meV"]
    assert len(rep["states"]) == 2 and rep["n_energies"] == 2 * nh3[1].n_structures
    assert nh3_model.hyperparameters_["irreps"] == ["A1'", "A2''"]
    # regions pool both states of each structure: the counts add up to all energies, and the
    # pooled mean square error is the region-weighted one
    assert sum(r["n"] for r in rep["regions"]) == rep["n_energies"]
    pooled = sum(r["n"] * r["energy_rmse_meV"] ** 2 for r in rep["regions"]) / rep["n_energies"]
    assert pooled == pytest.approx(rep["energy_rmse_meV"] ** 2, rel=1e-9)
    assert 0 <= rep["largest_energy_errors"][0]["index"] < nh3[1].n_structures


def test_coupling_symmetry(nh3, nh3_model):
    R = np.asarray(nh3[1].R[:30])
    U = nh3_model.predict_diabatic(R)
    assert np.max(np.abs(U[:, 0, 1])) > 0.05
    for perm, sign in ((ODD, -1), (EVEN, 1), ([0, 3, 2, 1], -1)):
        Up = nh3_model.predict_diabatic(R[:, perm])
        assert np.allclose(Up[:, 0, 1], sign * U[:, 0, 1], rtol=1e-10, atol=1e-12)
        assert np.allclose(np.diagonal(Up, axis1=1, axis2=2), np.diagonal(U, axis1=1, axis2=2), rtol=1e-10)
    Ui = nh3_model.predict_diabatic(-R)
    assert np.allclose(Ui[:, 0, 1], -U[:, 0, 1], rtol=1e-10, atol=1e-12)
    assert np.allclose(Ui[:, 1, 1], U[:, 1, 1], rtol=1e-10)
    P = _planar(R)
    assert pair_min(P) > 0.5
    Up = nh3_model.predict_diabatic(P)
    assert np.max(np.abs(Up[:, 0, 1])) < 1e-12


def test_default_variables_are_chosen_by_cv(nh3, nh3_model):
    """auto: CV on the training set picks the valence variables (bond angles at N) for NH3."""
    hp = nh3_model.hyperparameters_
    assert hp["variables"] == "valence" and hp["valence_center"] == 0
    assert nh3_model.molecule_.transform == DistanceTransform("valence", 1.5, 0)
    tried = {r["variables"] for r in nh3_model.cv_results_}
    assert tried == {"distances", "valence"}
    best_valence = min(r["cv_rmse_meV"] for r in nh3_model.cv_results_ if r["variables"] == "valence")
    best_distances = min(r["cv_rmse_meV"] for r in nh3_model.cv_results_ if r["variables"] == "distances")
    assert best_valence < best_distances
    assert set(hp["element_pseudoscalar_powers"].values()) <= {0, 2}


def test_distance_variables_keep_the_coupling_symmetry(nh3, tmp_path):
    model = DiabaticModel(irreps="A1,A2", degree=3, morse_a=1.5, ridge=0.0, variables="distances")
    model.fit(nh3[0].first(600))
    assert model.molecule_.transform.kind == "morse" and model.hyperparameters_["variables"] == "distances"
    R = np.asarray(nh3[1].R[:20])
    U = model.predict_diabatic(R)
    assert np.allclose(model.predict_diabatic(R[:, ODD])[:, 0, 1], -U[:, 0, 1], rtol=1e-10, atol=1e-12)
    assert np.max(np.abs(model.predict_diabatic(_planar(R))[:, 0, 1])) < 1e-12


def test_valence_center_and_variable_errors(nh3):
    from pesfit.models.diabatic import valence_center

    R = np.asarray(nh3[0].R[:50])
    g = PermutationGroup.from_symbols(["N", "H", "H", "H"])
    assert valence_center(["N", "H", "H", "H"], g, R) == 0
    order = [1, 2, 0, 3]
    assert valence_center(["H", "H", "N", "H"], PermutationGroup.from_symbols(["H", "H", "N", "H"]), R[:, order]) == 2
    assert valence_center(["H"] * 4, PermutationGroup.from_symbols(["H"] * 4), R) is None
    h4 = Dataset(R=R, z=[1, 1, 1, 1], E=np.sort(np.random.default_rng(0).normal(size=(50, 2)), axis=1))
    with pytest.raises(ValueError, match="valence variables need a central atom"):
        DiabaticModel(degree=2, variables="valence", target="adiabatic").fit(h4)
    with pytest.raises(ValueError, match="variables must be one of"):
        DiabaticModel(variables="angles").fit(nh3[0].first(50))


def pair_min(R):
    from invariants import pair_distances

    return pair_distances(R).min()


def test_eigenvalues_are_adiabatic_energies(nh3, nh3_model):
    R = np.asarray(nh3[1].R[:50])
    U = nh3_model.predict_diabatic(R)
    E = nh3_model.predict(R)
    assert E.shape == (50, 2)
    assert np.allclose(np.linalg.eigvalsh(U), E, rtol=0, atol=1e-12)
    res = nh3_model.predict_adiabatic(R)
    V = res["vectors"]
    assert np.allclose(np.einsum("nak,nab,nbl->nkl", V, U, V), np.eye(2) * E[:, None, :], atol=1e-10)
    # phase convention: the largest component of each state vector is positive
    big = np.take_along_axis(V, np.argmax(np.abs(V), axis=1)[:, None, :], axis=1)
    assert np.all(big > 0)


def _fd(f, R, h):
    out = []
    for a in range(R.shape[1]):
        for x in range(3):
            Rp, Rm = R.copy(), R.copy()
            Rp[:, a, x] += h
            Rm[:, a, x] -= h
            out.append((f(Rp) - f(Rm)) / (2 * h))
    return np.stack(out, axis=-1)


def test_gradients_and_couplings_match_finite_differences(nh3, nh3_model):
    R = np.asarray(nh3[1].R[:6])
    res = nh3_model.predict_adiabatic(R)
    assert np.min(res["energies"][:, 1] - res["energies"][:, 0]) > 1.0
    N = R.shape[1]
    # dU/dR
    Ufd = _fd(lambda X: nh3_model.predict_diabatic(X), R, 1e-5).reshape(6, 2, 2, N, 3)
    assert np.max(np.abs(Ufd - res["dU"])) <= 1e-6 * np.max(np.abs(res["dU"]))
    # adiabatic gradients; forces from predict are minus them
    Gfd = _fd(lambda X: nh3_model.predict(X), R, 1e-5).reshape(6, 2, N, 3)
    assert np.max(np.abs(Gfd - res["gradients"])) <= 1e-6 * np.max(np.abs(res["gradients"]))
    _, F = nh3_model.predict(R, forces=True)
    assert np.allclose(F, -res["gradients"])
    # d_kl = <k | d/dR l>, from finite differences of the phase-fixed state vectors
    Vfd = _fd(lambda X: nh3_model.predict_adiabatic(X, gradients=False, couplings=False)["vectors"], R, 1e-5)
    Vfd = Vfd.reshape(6, 2, 2, N, 3)  # (n, component, state, N, 3)
    d_fd = np.einsum("nak,nalxy->nklxy", res["vectors"], Vfd)
    nac = res["nac"]
    assert np.max(np.abs(d_fd - nac)) <= 1e-5 * np.max(np.abs(nac))
    assert np.allclose(nac[:, 0, 1], -nac[:, 1, 0])
    gap = res["energies"][:, 1] - res["energies"][:, 0]
    assert np.allclose(res["h"][:, 0, 1], nac[:, 0, 1] * gap[:, None, None], rtol=1e-8)


def test_degeneracy_without_nan():
    U = np.array([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 1e-14], [1e-14, 1.0]], [[0.5, 0.0], [0.0, 2.0]]])
    dU = np.random.default_rng(0).normal(size=(3, 2, 2, 4, 3))
    dU = dU + dU.transpose(0, 2, 1, 3, 4)
    res = adiabatic_states(U, dU)
    for key in ("energies", "vectors", "gradients", "h", "nac"):
        assert np.isfinite(res[key]).all(), key
    assert np.all(res["nac"][0] == 0.0)


def test_model_file_round_trip_and_tamper(tmp_path, nh3, nh3_model):
    path = tmp_path / "dia.json"
    nh3_model.save(path)
    back = load_model(path)
    assert isinstance(back, DiabaticModel)
    R = np.asarray(nh3[1].R[:10])
    assert np.array_equal(back.predict_diabatic(R), nh3_model.predict_diabatic(R))
    assert back.hyperparameters_ == nh3_model.hyperparameters_
    d = json.loads(path.read_text())
    d["state"]["elements"][1]["terms"][0]["coef"][0] += 1e-9
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="checksum"):
        load_model(bad)


def test_export_spec_reproduces_u(nh3, nh3_model):
    spec = nh3_model.export_spec()
    R = np.asarray(nh3[1].R[:10])
    from pesfit.models.pseudoscalars import Pseudoscalar

    ps = [Pseudoscalar.from_dict(p) for p in spec["pseudoscalars"]]
    from invariants.transforms import transformed_variables

    x = transformed_variables(R, spec["transform"])
    U = np.zeros((10, 2, 2))
    for el in spec["elements"]:
        val = np.zeros(10)
        for t in el["terms"]:
            M = np.prod([p.evaluate(R) ** k for p, k in zip(ps, t["powers"])], axis=0)
            val += M * (evaluate_program(t["program"], x) @ t["weights"])
        U[:, el["i"], el["j"]] = U[:, el["j"], el["i"]] = val
    assert np.allclose(U, nh3_model.predict_diabatic(R), rtol=1e-12, atol=1e-12)
    E, G = spec["predict"](R)
    assert E.shape == (10, 2) and G.shape == (10, 2, 4, 3)
    assert spec["n_states"] == 2 and spec["irreps"] == ["A1'", "A2''"]


# ----------------------------------------------------- analytic 3x3 model
def analytic_three_state(R):
    """A 3x3 diabatic matrix for N H H H with states A1', A2'', A2' (couplings A2'', A2', A1'')."""
    R = np.asarray(R)
    r = np.linalg.norm(R[:, 1:] - R[:, :1], axis=-1)                    # N-H
    s = np.linalg.norm(R[:, [1, 1, 2]] - R[:, [2, 3, 3]], axis=-1)      # H-H
    V = _volume(R)
    vand = (r[:, 0] - r[:, 1]) * (r[:, 0] - r[:, 2]) * (r[:, 1] - r[:, 2])
    U = np.zeros((len(R), 3, 3))
    U[:, 0, 0] = (4.0 * (1 - np.exp(-2.0 * (r - 1.01))) ** 2).sum(1) + 0.5 * np.exp(-2 * s).sum(1)
    U[:, 1, 1] = 5.0 + (2.0 * (1 - np.exp(-1.5 * (r - 1.1))) ** 2).sum(1) + 0.3 * np.exp(-s).sum(1)
    U[:, 2, 2] = 6.5 + (3.0 * (1 - np.exp(-1.8 * (r - 1.05))) ** 2).sum(1)
    U[:, 0, 1] = U[:, 1, 0] = 0.8 * V * np.exp(-((r - 1.0) ** 2).sum(1))   # A2''
    U[:, 0, 2] = U[:, 2, 0] = 3.0 * vand                                   # A2'
    U[:, 1, 2] = U[:, 2, 1] = 2.0 * V * vand                               # A1''
    return U


@pytest.fixture(scope="module")
def three_state(nh3):
    R = np.asarray(nh3[0].R[:1200])
    U = analytic_three_state(R)
    data = Dataset(R=R, z=nh3[0].z, E=np.linalg.eigvalsh(U), U=U)
    return data.first(900), data.subset(slice(900, 1200))


def test_analytic_three_state_symmetries():
    R = np.random.default_rng(1).normal(size=(5, 4, 3))
    U = analytic_three_state(R)
    for perm, chi in ((ODD, {(0, 1): -1, (0, 2): -1, (1, 2): 1}), (EVEN, {(0, 1): 1, (0, 2): 1, (1, 2): 1})):
        Up = analytic_three_state(R[:, perm])
        for (i, j), c in chi.items():
            assert np.allclose(Up[:, i, j], c * U[:, i, j])
    Ui = analytic_three_state(-R)
    for (i, j), c in {(0, 1): -1, (0, 2): 1, (1, 2): -1}.items():
        assert np.allclose(Ui[:, i, j], c * U[:, i, j])


@pytest.fixture(scope="module")
def three_state_model(three_state):
    model = DiabaticModel(n_states=3, irreps=["A1'", "A2''", "A2'"], degree=4, morse_a=1.5, ridge=0.0)
    return model.fit(three_state[0])


def test_three_state_fit(three_state, three_state_model):
    _, test = three_state
    model = three_state_model
    assert [str(e.irrep) for e in model.elements_] == ["A1'", "A2''", "A2'", "A1'", "A1''", "A1'"]
    rep = model.evaluate(test)
    Ut = np.asarray(test.U)
    for (i, j) in element_pairs(3):
        scale = 1000 * np.std(Ut[:, i, j])
        assert rep["u_rmse_meV"][f"U{i + 1}{j + 1}"] < 0.15 * scale, (i, j, rep["u_rmse_meV"])
    assert rep["energy_rmse_meV"] < 0.05 * 1000 * np.std(np.asarray(test.E))
    R = np.asarray(test.R[:10])
    U = model.predict_diabatic(R)
    for perm, inv, chi in ((ODD, False, {(0, 1): -1, (0, 2): -1, (1, 2): 1}),
                           (list(range(4)), True, {(0, 1): -1, (0, 2): 1, (1, 2): -1})):
        X = -R[:, perm] if inv else R[:, perm]
        Up = model.predict_diabatic(X)
        for (i, j), c in chi.items():
            assert np.allclose(Up[:, i, j], c * U[:, i, j], rtol=1e-10, atol=1e-12)
    assert np.max(np.abs(model.predict_diabatic(_planar(R))[:, [0, 1], [1, 2]])) < 1e-12


# ------------------------------------------------- nonlinear fit machinery
def _small_problem(nh3, with_derivatives=True, seed=0):
    R = np.asarray(nh3[0].R[:40])
    group = PermutationGroup.from_symbols("N H H H")
    irreps = parse_irreps("A1,A2,A2'", 3, group)
    ps = find_pseudoscalars(group)
    t = DistanceTransform("morse", 1.5)
    elements = prune_elements(build_elements(group, irreps, 2, 2, ps, pseudoscalar_powers=0), R, t, ps)
    vals, grads = _pseudoscalar_values(ps, R, True)
    Phis, dPhis = [], []
    for e in elements:
        P, J = design(e, R, t, vals, grads, gradient=True)
        Phis.append(P)
        dPhis.append(J.reshape(len(R), e.n_features, -1))
    rng = np.random.default_rng(seed)
    ns = 3
    E = rng.normal(size=(len(R), ns)) + np.arange(ns) * 3
    G = rng.normal(size=(len(R), ns, 12))
    H = rng.normal(size=(len(R), ns, ns, 12))
    prob = _AdiabaticProblem(elements, Phis, dPhis if with_derivatives else None, E=E, wE=np.ones_like(E),
                             U=rng.normal(size=(len(R), ns, ns)), G=G if with_derivatives else None, g_weight=0.3,
                             H=H if with_derivatives else None, c_weight=0.2,
                             penalties=[1e-3 * np.diag(np.linalg.norm(P, axis=0)) for P in Phis])
    x = np.concatenate([rng.normal(size=P.shape[1]) / np.linalg.norm(P, axis=0) for P in Phis])
    return prob, x


def test_nonlinear_jacobian_matches_finite_differences(nh3):
    prob, x = _small_problem(nh3)
    J = prob.jacobian(x)
    h = 1e-6
    cols = np.random.default_rng(3).choice(len(x), 12, replace=False)
    for k in cols:
        xp, xm = x.copy(), x.copy()
        xp[k] += h
        xm[k] -= h
        fd = (prob.residuals(xp) - prob.residuals(xm)) / (2 * h)
        assert np.max(np.abs(fd - J[:, k])) <= 1e-5 * max(1.0, np.max(np.abs(J[:, k]))), k


def test_adiabatic_fit_with_gradients_and_couplings_recovers_u(nh3, three_state):
    """Energies alone leave the couplings free; with gradients and derivative couplings they are fixed."""
    train, _ = three_state
    truth = DiabaticModel(n_states=3, irreps="A1,A2,A2'", degree=2, morse_a=1.5, ridge=0.0,
                          pseudoscalar_powers=0, variables="distances").fit(train)
    R = np.asarray(train.R[:120])
    res = truth.predict_adiabatic(R)
    data = Dataset(R=R, z=train.z, E=res["energies"])
    flip = np.where(np.arange(len(R)) % 2, 1.0, -1.0)[:, None, None, None, None]   # arbitrary phases
    model = DiabaticModel(n_states=3, irreps="A1,A2,A2'", target="adiabatic", degree=2, morse_a=1.5, ridge=0.0,
                          pseudoscalar_powers=0, variables="distances", n_starts=1, max_nfev=50, gradient_weight=0.3,
                          coupling_weight=0.3).fit(data, gradients=res["gradients"], couplings=res["nac"] * flip)
    Rt = np.asarray(three_state[1].R[:100])
    Ut, Uf = truth.predict_diabatic(Rt), model.predict_diabatic(Rt)
    assert np.max(np.abs(np.linalg.eigvalsh(Uf) - np.linalg.eigvalsh(Ut))) < 1e-3
    assert np.max(np.abs(np.abs(Uf) - np.abs(Ut))) < 1e-3


def test_energy_only_and_both_targets_run(nh3):
    train = nh3[0].first(300)
    kw = dict(irreps="A1,A2", degree=3, morse_a=1.5, ridge=0.0, max_nfev=8)
    model = DiabaticModel(target="adiabatic", n_starts=2, **kw).fit(train)
    info = model.fit_info_
    assert len(info["starts"]) == 2 and info["starts"][0]["coupling_init_eV"] == 0.0
    assert all(np.isfinite(s["validation_energy_rmse_meV"]) for s in info["starts"])
    assert model.train_report_["energy_rmse_meV"] < 100
    both = DiabaticModel(target="both", n_starts=1, **kw).fit(train)
    lin = DiabaticModel(target="u", **kw).fit(train)
    assert both.train_report_["energy_rmse_meV"] <= lin.train_report_["energy_rmse_meV"] + 1e-6


# --------------------------------------------------------------- bad input
def test_bad_input(nh3):
    train = nh3[0].first(200)
    with pytest.raises(ValueError, match="declared with 3 states"):
        DiabaticModel(n_states=3).fit(train)
    with pytest.raises(ValueError, match="at least 2 states"):
        DiabaticModel().fit(train._replace(E=np.asarray(train.E)[:, 0], U=None))
    with pytest.raises(ValueError, match="needs the diabatic matrix"):
        DiabaticModel(target="u").fit(train._replace(U=None))
    with pytest.raises(ValueError, match="unknown irrep"):
        DiabaticModel(irreps="A1,E").fit(train)
    with pytest.raises(ValueError, match="target must be"):
        DiabaticModel(target="energies").fit(train)
    E = np.array(train.E)
    E[3, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        Dataset(R=train.R, z=train.z, E=E)
    with pytest.raises(ValueError, match="NaN"):
        DiabaticModel(target="adiabatic", degree=2, morse_a=1.5).fit(
            train, gradients=np.full((200, 2, 4, 3), np.nan))
    with pytest.raises(ValueError, match="not fitted"):
        DiabaticModel().predict_diabatic(np.asarray(train.R[:2]))


def test_cli_fit_json(capsys):
    from pesfit.cli import main

    code = main(["fit", "--train", str(shipped_path("nh3_dpem", "train")), "--n-train", "600",
                 "--test", str(shipped_path("nh3_dpem", "test")), "--model", "diabatic", "--states", "2",
                 "--irreps", "A1,A2", "--target", "u", "--degree", "3", "--morse-a", "1.5", "--variables", "distances",
                 "--json", "--quiet"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["test"]["energy_rmse_meV"] > 0
    assert out["hyperparameters"]["variables"] == "distances" and out["hyperparameters"]["valence_center"] is None
    assert set(out["test"]["u_rmse_meV"]) == {"U11", "U12", "U22"}
    code = main(["fit", "--train", str(shipped_path("nh3_dpem", "train")), "--n-train", "300", "--model", "diabatic",
                 "--states", "3", "--json", "--quiet"])
    assert code == 2
    assert "declared with 3 states" in capsys.readouterr().err


# ----------------------------------------------------------- C and Fortran export
BOHR = 0.529177210903  # Å
HARTREE = 27.211386245988  # eV


def _need(lang):
    compiler = {"c": "gcc", "fortran": "gfortran"}[lang]
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} is not installed (apt-get install -y {compiler})")


def _loader(out, name):
    spec = importlib.util.spec_from_file_location(name, out / "pes_ctypes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("lang", ["c", "fortran"])
@pytest.mark.parametrize("which", ["nh3", "three_state"])
def test_export_agrees_with_python(which, lang, nh3, nh3_model, three_state_model, tmp_path):
    """U, dU, adiabatic energies, gradients and couplings of the library against Python (check=True, ctypes)."""
    _need(lang)
    model = nh3_model if which == "nh3" else three_state_model
    ns = model.n_states_
    R = np.asarray(nh3[1].R[:150])
    res = export_model(model, lang, tmp_path, check=True, check_structures=R)
    assert res["build_log"] == ""  # no compiler warnings
    c = res["check"]
    assert c["n_structures"] == 150 and c["n_coupling_structures"] == 150  # no near-degeneracy here
    assert c["max_u_rel"] <= 1e-10 and c["max_energy_rel"] <= 1e-10
    assert max(c["max_du_rel"], c["max_gradient_rel"], c["max_coupling_rel"]) <= 1e-8
    labels = sorted(f"u{e.i + 1}{e.j + 1}_t{k}" for e in model.elements_ for k in range(len(e.terms)))
    assert sorted(k[:-7] for k in res if k.endswith("_source") and k != "source") == labels
    assert "status: 0" in res["driver_output"]

    # through the ctypes loader (bohr, hartree) against the model (Å, eV)
    pes = _loader(tmp_path, f"pes_ctypes_dia_{which}_{lang}").CompiledPES(res["library"])
    assert pes.nstates == ns and pes.natoms == 4 and f"nstates={ns}" in pes.info
    xyz = R[:5] / BOHR
    ref = model.predict_adiabatic(xyz * BOHR)
    U, dU = pes.diabatic(xyz)
    E, G, D, st = pes.adiabatic(xyz, return_status=True)
    assert U.shape == (5, ns, ns) and dU.shape == (5, ns, ns, 4, 3) and D.shape == (5, ns, ns, 4, 3)
    assert not st.any()
    for got, want in ((U * HARTREE, ref["U"]), (E * HARTREE, ref["energies"])):
        assert np.max(np.abs(got - want)) <= 1e-12 * np.max(np.abs(want))
    for got, want in ((dU * HARTREE / BOHR, ref["dU"]), (G * HARTREE / BOHR, ref["gradients"]),
                      (D / BOHR, ref["nac"])):
        assert np.max(np.abs(got - want)) <= 1e-10 * np.max(np.abs(want))
    assert np.array_equal(D, -D.transpose(0, 2, 1, 3, 4))
    e, g = pes.energy_gradient(xyz)  # the standard interface: the lowest adiabatic state
    assert np.array_equal(e, E[:, 0]) and np.array_equal(g, G[:, 0])

    # NULL for the optional outputs; bad input zeroes every output
    dp = ctypes.POINTER(ctypes.c_double)
    U1, E1, st1 = np.zeros((ns, ns)), np.zeros(ns), ctypes.c_int(-1)
    pes._lib.pes_diabatic(xyz[0].ctypes.data_as(dp), U1.ctypes.data_as(dp), None, ctypes.byref(st1))
    assert np.array_equal(U1, U[0]) and st1.value == 0
    pes._lib.pes_adiabatic(xyz[0].ctypes.data_as(dp), E1.ctypes.data_as(dp), None, None, ctypes.byref(st1))
    assert np.array_equal(E1, E[0]) and st1.value == 0
    bad = xyz[0].copy()
    bad[1, 2] = np.nan
    for out in (pes.diabatic(bad, return_status=True), pes.adiabatic(bad, return_status=True)):
        assert out[-1] == 2 and not any(np.any(a) for a in out[:-1])
    bad = xyz[0].copy()
    bad[3] = bad[2]
    out = pes.adiabatic(bad, return_status=True)
    assert out[-1] == 3 and not any(np.any(a) for a in out[:-1])


def test_export_exact_degeneracy(nh3, nh3_model, monkeypatch, tmp_path):
    """U22 = U11 and U12 = 0: degenerate everywhere; finite outputs, zero couplings; the check skips G and d."""
    _need("c")
    spec = nh3_model.export_spec()
    spec["elements"][2]["terms"] = spec["elements"][0]["terms"]
    for t in spec["elements"][1]["terms"]:
        t["weights"] = 0.0 * t["weights"]

    def predict_adiabatic(R):
        U, dU = nh3_model.predict_diabatic(R, gradient=True)
        U[:, 1, 1], dU[:, 1, 1] = U[:, 0, 0], dU[:, 0, 0]
        U[:, 0, 1] = U[:, 1, 0] = dU[:, 0, 1] = dU[:, 1, 0] = 0.0
        return dict(adiabatic_states(U, dU), U=U, dU=dU)

    spec["predict_adiabatic"] = predict_adiabatic
    monkeypatch.setattr(nh3_model, "export_spec", lambda: spec)
    R = np.asarray(nh3[1].R[:20])
    res = export_model(nh3_model, "c", tmp_path, check=True, check_structures=R)
    c = res["check"]
    assert c["n_structures"] == 20 and c["n_gradient_structures"] == 0 and c["n_coupling_structures"] == 0
    assert c["max_u_rel"] <= 1e-10 and c["max_energy_rel"] <= 1e-10 and c["max_du_rel"] <= 1e-8
    pes = _loader(tmp_path, "pes_ctypes_dia_degenerate").CompiledPES(res["library"])
    U, dU = pes.diabatic(R / BOHR)
    E, G, D = pes.adiabatic(R / BOHR)
    assert np.array_equal(E[:, 0], E[:, 1]) and np.array_equal(E[:, 0], U[:, 0, 0]) and not D.any()
    assert np.array_equal(G[:, 0], dU[:, 0, 0]) and np.array_equal(G[:, 1], dU[:, 0, 0])


def test_export_check_catches_a_wrong_coefficient(nh3, nh3_model, monkeypatch, tmp_path):
    _need("c")
    spec = nh3_model.export_spec()
    w = spec["elements"][1]["terms"][0]["weights"]  # U12 = Psi (w . p) + Psi^3 (...)
    w[np.argmax(np.abs(w))] *= 1 + 1e-8
    monkeypatch.setattr(nh3_model, "export_spec", lambda: spec)
    with pytest.raises(RuntimeError, match=r"diabatic potentials disagree.*deviation of u \d"):
        export_model(nh3_model, "c", tmp_path, check=True, check_structures=np.asarray(nh3[1].R[:50]))


@pytest.mark.parametrize("lang", ["c", "fortran"])
def test_export_without_pseudoscalars(lang, tmp_path):
    """Three atoms (no pseudoscalar), states A1' and A2': empty pseudoscalar tables compile without warnings."""
    _need(lang)
    rng = np.random.default_rng(0)
    R = np.array([[0.0, 0, 0], [0.9, 0, 0], [0.4, 0.8, 0]]) + rng.normal(0, 0.12, (200, 3, 3))
    r = np.linalg.norm(R[:, [0, 0, 1]] - R[:, [1, 2, 2]], axis=-1)
    U = np.zeros((200, 2, 2))
    U[:, 0, 0] = (3 * (1 - np.exp(-2 * (r - 0.9))) ** 2).sum(1)
    U[:, 1, 1] = 2.0 + (2 * (1 - np.exp(-1.5 * (r - 1.0))) ** 2).sum(1)
    U[:, 0, 1] = U[:, 1, 0] = 5 * (r[:, 0] - r[:, 1]) * (r[:, 0] - r[:, 2]) * (r[:, 1] - r[:, 2])
    model = DiabaticModel(irreps="A1',A2'", degree=3, morse_a=1.0, ridge=0.0).fit(
        Dataset(R=R, z=[1, 1, 1], E=np.linalg.eigvalsh(U), U=U))
    assert model.pseudoscalars_ == []
    res = export_model(model, lang, tmp_path, check=True, check_structures=R[:50])
    assert res["build_log"] == ""
    c = res["check"]
    assert c["max_u_rel"] <= 1e-10 and c["max_energy_rel"] <= 1e-10 and c["n_coupling_structures"] == 50
    assert max(c["max_du_rel"], c["max_gradient_rel"], c["max_coupling_rel"]) <= 1e-8


def test_export_bad_input(nh3_model, monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="only for many-body models"):
        export_model(nh3_model, "c", tmp_path, n_monomers=2)
    with pytest.raises(ValueError, match="too long for this diabatic model.*use at most 25 characters"):
        export_model(nh3_model, "c", tmp_path, prefix="p" * 28)
    spec = nh3_model.export_spec()
    spec["elements"] = spec["elements"][:2]
    monkeypatch.setattr(nh3_model, "export_spec", lambda: spec)
    with pytest.raises(ValueError, match="not the upper triangle of a 2x2 matrix"):
        export_model(nh3_model, "c", tmp_path)


def test_cli_export_check(nh3_model, tmp_path, capsys):
    _need("c")
    from pesfit.cli import main

    nh3_model.save(tmp_path / "dia.json")
    assert main(["export", str(tmp_path / "dia.json"), "--lang", "c", "--out", str(tmp_path / "o"), "--check",
                 "--data", str(shipped_path("nh3_dpem", "test")), "--n-check", "40"]) == 0
    out = capsys.readouterr().out
    assert "check on 40 structures" in out and "diabatic: max U rel" in out
    assert (tmp_path / "o" / "pes_u12_t1.c").exists()
