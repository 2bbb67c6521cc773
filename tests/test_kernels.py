"""Kernel back ends (KREG, pKREG, PIP-GPR, sGDML): blocks, symmetry, forces, solvers, files, bad input."""
import json
import shutil

import numpy as np
import pytest

from invariants import DistanceTransform, PermutationGroup, pair_distances
from pesfit.cli import main
from pesfit.data import Dataset, load_npz
from pesfit.datasets import shipped_path
from pesfit.export import export_model
from pesfit.models import GPRModel, KREGModel, PKREGModel, SGDMLModel, load_model
from pesfit.models.kernels._reference import reference_expansion, reference_kernel_matrix
from pesfit.models.kernels.descriptors import (DistanceDescriptor, descriptor_permutations, detect_permutations,
                                               internal_rank, project_jacobian, symmetrize_reference)
from pesfit.models.kernels.kernels import expansion, kernel_matrix
from pesfit.models.kernels.training import cross_validate, gp_objective, loo_validate


@pytest.fixture(scope="module")
def h2co():
    return load_npz(shipped_path("h2co", "train")), load_npz(shipped_path("h2co", "test"))


@pytest.fixture(scope="module")
def oh3():
    return load_npz(shipped_path("oh3", "train")), load_npz(shipped_path("oh3", "test"))


def _observations(data, n):
    desc = DistanceDescriptor(DistanceTransform("inverse"))
    return SGDMLModel()._observations(desc, data.first(n), True)


# ------------------------------------------------------------ compiled kernels
@pytest.mark.parametrize("kind", ["gaussian", "matern52"])
def test_kernel_blocks_match_reference(kind, oh3):
    train, _ = oh3
    R = np.asarray(train.R[:6])
    perms = descriptor_permutations(PermutationGroup.from_symbols(list(train.symbols)))
    X, J = DistanceDescriptor(DistanceTransform("inverse")).values_and_jacobian(R)
    M, _ = project_jacobian(J, internal_rank(4, 6))
    U, Ms = X / 0.7, M / 0.7
    K = kernel_matrix(kind, perms, U, Ms)
    ref = reference_kernel_matrix(kind, perms, U, Ms, U, Ms)
    assert np.allclose(K, ref, rtol=1e-12, atol=1e-12)
    assert np.allclose(K, K.T, atol=1e-13)
    assert np.linalg.eigvalsh(K).min() > -1e-10 * np.abs(K).max()
    cross = kernel_matrix(kind, perms, U[:2], Ms[:2], U, Ms)      # non-symmetric path
    rows = np.r_[0:2, 6:6 + 2 * 6]
    assert np.allclose(cross, ref[rows], rtol=1e-12, atol=1e-12)
    rng = np.random.default_rng(0)
    C, A, W = rng.normal(size=(5, 6)), rng.normal(size=5), rng.normal(size=(5, 6))
    E, G = expansion(kind, U, C, A, W)
    E0, G0 = reference_expansion(kind, U, C, A, W)
    assert np.allclose(E, E0, rtol=1e-12, atol=1e-12) and np.allclose(G, G0, rtol=1e-12, atol=1e-12)


def test_gradient_block_is_derivative_of_energy_kernel(oh3):
    train, _ = oh3
    R = np.asarray(train.R[:4])
    desc = DistanceDescriptor(DistanceTransform("inverse"))
    perms = descriptor_permutations(PermutationGroup.from_symbols(list(train.symbols)))
    X, J = desc.values_and_jacobian(R)
    M, Q = project_jacobian(J, 6)
    K = kernel_matrix("matern52", perms, X, M)
    b, h = 2, 1e-6
    fd = np.zeros((4, 12))
    for c in range(12):
        dR = np.zeros(12)
        dR[c] = h
        xp = desc.values((R[b].ravel() + dR).reshape(1, 4, 3))
        xm = desc.values((R[b].ravel() - dR).reshape(1, 4, 3))
        kp = kernel_matrix("matern52", perms, X, None, xp, None, gradients_a=False, gradients_b=False)[:, 0]
        km = kernel_matrix("matern52", perms, X, None, xm, None, gradients_a=False, gradients_b=False)[:, 0]
        fd[:, c] = (kp - km) / (2 * h)
    assert np.allclose(fd @ Q[b], K[:4, 4 + 6 * b:4 + 6 * (b + 1)], atol=1e-7)


def test_gp_likelihood_gradient(h2co):
    from invariants import pip_basis
    from pesfit.models.kernels.descriptors import InvariantDescriptor

    train, _ = h2co
    data = train.first(20)
    basis = pip_basis(PermutationGroup.from_symbols(list(data.symbols)), 2)
    desc = InvariantDescriptor.standardized(basis, DistanceTransform("morse", 1.5), data.R)
    kd = SGDMLModel()._observations(desc, data, True)
    D = kd.X.shape[1]
    theta = np.concatenate([np.random.default_rng(1).normal(1.0, 0.3, D), [np.log(1e-4), np.log(1e-3)]])
    _, g = gp_objective(theta, kd, use_g=True, ard=True)
    h = 1e-5
    for k in (0, 7, D, D + 1):
        tp, tm = theta.copy(), theta.copy()
        tp[k] += h
        tm[k] -= h
        fd = (gp_objective(tp, kd, use_g=True, ard=True, gradient=False)[0]
              - gp_objective(tm, kd, use_g=True, ard=True, gradient=False)[0]) / (2 * h)
        assert fd == pytest.approx(g[k], rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("use_e,use_g", [(True, True), (True, False), (False, True)])
def test_closed_form_loo_equals_explicit(use_e, use_g, h2co):
    train, _ = h2co
    kd = _observations(train, 25)
    perms = descriptor_permutations(PermutationGroup.from_symbols(list(train.symbols)))
    lams = [(1e-8, 1e-8), (1e-5, 1e-5)]
    fast = loo_validate("matern52", perms, kd, 3.0, lams, use_e=use_e, use_g=use_g)
    slow = cross_validate("matern52", perms, kd, 3.0, lams, [np.array([i]) for i in range(25)], use_e=use_e,
                          use_g=use_g)
    for a, b in zip(fast, slow):
        assert a["energy_rmse"] == pytest.approx(b["energy_rmse"], rel=2e-3)
        if use_g:
            assert a["gradient_rmse"] == pytest.approx(b["gradient_rmse"], rel=2e-3)


# ------------------------------------------------------------------ descriptors
def test_symmetrized_reference_makes_descriptor_equivariant(oh3):
    train, _ = oh3
    group = PermutationGroup.from_symbols(list(train.symbols))
    perms = descriptor_permutations(group)
    r_ref = pair_distances(np.asarray(train.R[:1]))[0]            # an asymmetric geometry
    r_sym = symmetrize_reference(r_ref, perms)
    desc = DistanceDescriptor(DistanceTransform("reciprocal", tuple(r_sym)))
    R = np.asarray(train.R[5:8])
    x = desc.values(R)
    for p in group.elements():
        xp = desc.values(R[:, np.argsort(p)])
        assert any(np.allclose(xp, x[:, v]) for v in perms)


def test_detector_finds_point_group_permutations(h2co):
    train, _ = h2co
    g = detect_permutations(np.asarray(train.R_min), list(train.symbols), tol=0.05)
    assert g.order == 2 and g.contains((0, 1, 3, 2))
    assert detect_permutations(np.asarray(train.R[0]), list(train.symbols), tol=1e-6).order == 1


# ----------------------------------------------------------------------- models
@pytest.fixture(scope="module")
def models(oh3):
    train, _ = oh3
    small = train.first(40)
    out = {
        "pkreg": PKREGModel(length_scale=2.0, lambda_=1e-6, reference=np.asarray(train.R[3])).fit(small),
        "kreg": KREGModel(length_scale=2.0, lambda_=1e-8).fit(small._replace(F=None)),
        "sgdml": SGDMLModel(length_scale=3.0, lambda_=1e-8).fit(small),   # 10 Å is ill-conditioned on oh3
        "gpr": GPRModel(degree=2, morse_a=1.5, restarts=0).fit(train.first(30)),
    }
    return out


@pytest.mark.parametrize("name", ["pkreg", "sgdml", "gpr"])
def test_invariance_under_group(name, models, oh3):
    _, test = oh3
    model = models[name]
    R = np.asarray(test.R[:5])
    E, F = model.predict(R, forces=True)
    for p in PermutationGroup.from_symbols(list(test.symbols)).elements():
        idx = list(p)
        E2, F2 = model.predict(R[:, idx], forces=True)
        if name == "gpr":   # invariant features, but their rounding differs and large coefficients amplify it
            assert np.allclose(E2, E, rtol=1e-9, atol=1e-9)
        else:               # evaluated at the canonical descriptor of the orbit: bit-identical
            assert np.array_equal(E2, E)
        assert np.allclose(F2, F[:, idx], rtol=1e-8, atol=1e-8)


def test_unsymmetrized_kreg_is_not_invariant(models, oh3):
    _, test = oh3
    R = np.asarray(test.R[:5])
    assert not np.allclose(models["kreg"].predict(R[:, [0, 2, 1, 3]]), models["kreg"].predict(R))


@pytest.mark.parametrize("name", ["kreg", "pkreg", "sgdml", "gpr"])
def test_forces_are_minus_gradient(name, models, oh3):
    _, test = oh3
    model = models[name]
    R = np.asarray(test.R[7])
    _, F = model.predict(R, forces=True)
    direction = np.random.default_rng(3).normal(size=R.shape)
    slope = -np.sum(F * direction)
    errors = []
    for h in 10.0 ** -np.arange(2, 8):
        fd = (model.predict(R + h * direction) - model.predict(R - h * direction)) / (2 * h)
        errors.append(abs(fd - slope))
    # central differences reach ~1e-6 relative before the rounding of E (hundreds of eV) takes over
    assert min(errors) <= 3e-5 * max(1.0, abs(slope)), (errors, slope)


def test_iterative_and_cholesky_solvers_agree(h2co):
    train, test = h2co
    data = train.first(40)
    a = SGDMLModel(length_scale=10.0, lambda_=1e-8, solver="cholesky").fit(data)
    b = SGDMLModel(length_scale=10.0, lambda_=1e-8, solver="cg", n_inducing=10, cg_tol=1e-12).fit(data)
    assert b.hyperparameters_["solver"]["name"] == "cg" and b.hyperparameters_["solver"]["converged"]
    R = np.asarray(test.R[:50])
    Ea, Fa = a.predict(R, forces=True)
    Eb, Fb = b.predict(R, forces=True)
    assert np.max(np.abs(Ea - Eb)) < 1e-5 and np.max(np.abs(Fa - Fb)) < 1e-4


def test_cross_validated_fit_is_accurate(h2co):
    train, test = h2co
    model = PKREGModel().fit(train.first(100))
    assert model.hyperparameters_["forces"] and len(model.cv_results_) > 20
    report = model.evaluate(test)
    assert report["energy_rmse_meV"] < 6 and report["force_rmse_meV_per_A"] < 60


def test_gpr_uncertainty(models, oh3):
    train, test = oh3
    gp = models["gpr"]
    noise_sd = np.sqrt(gp.signal_variance_ * gp.noise_["lam_e"])
    sd_train = gp.predict_std(np.asarray(train.R[:30]))
    sd_far = gp.predict_std(1.3 * np.asarray(test.R[:50]))             # stretched: far from the data
    assert np.all(sd_train >= 0) and np.median(sd_train) < 1.5 * noise_sd
    assert np.median(sd_far) > 3 * np.median(sd_train)
    E, sd = gp.predict(np.asarray(test.R[:3]), return_std=True)
    assert E.shape == sd.shape == (3,)


def test_gpr_standard_deviation_is_calibrated_on_test_data(h2co):
    train, test = h2co
    gp = GPRModel().fit(train.first(120)._replace(F=None))       # cross-validated calibration (n <= 300)
    E, sd = gp.predict(np.asarray(test.R[:1000]), return_std=True)
    inside = np.mean(np.abs(E - np.asarray(test.E[:1000])) <= sd)
    assert 0.55 <= inside <= 0.85, inside                        # a normal error would give 0.683
    assert gp.calibration_ > 1.5                                 # ML-II alone is overconfident here


@pytest.mark.parametrize("name", ["kreg", "pkreg", "sgdml", "gpr"])
def test_round_trip_bit_identical(name, models, oh3, tmp_path):
    _, test = oh3
    model = models[name]
    path = tmp_path / f"{name}.json"
    model.save(path)
    loaded = load_model(path)
    assert type(loaded) is type(model)
    R = np.asarray(test.R[:50])
    E0, F0 = model.predict(R, forces=True)
    E1, F1 = loaded.predict(R, forces=True)
    assert np.array_equal(E0, E1) and np.array_equal(F0, F1)
    if name == "gpr":
        assert np.array_equal(loaded.predict_std(R), model.predict_std(R))
    loaded.save(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == path.read_text()


def test_tampered_kernel_file_refused(models, tmp_path):
    path = tmp_path / "m.json"
    models["sgdml"].save(path)
    d = json.loads(path.read_text())
    d["state"]["alpha"][0] += 1e-9
    (tmp_path / "bad.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_model(tmp_path / "bad.json")
    d = json.loads(path.read_text())
    d["state"]["permutations"][1] = [0, 0, 0, 0, 0, 0]
    del d["checksum"]
    from pesfit.models._base import _canonical
    import hashlib
    d["checksum"] = hashlib.sha256(_canonical(d).encode()).hexdigest()
    (tmp_path / "bad.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match="permutations"):
        load_model(tmp_path / "bad.json")


def test_export_spec(models):
    spec = models["pkreg"].export_spec()
    for key in ("kind", "transform", "symbols", "checksum", "r_min", "predict", "program", "head"):
        assert key in spec
    head = spec["head"]
    assert spec["program"].n_outputs == 6 and spec["transform"].kind == "reciprocal"
    assert head.kernel == "gaussian" and head.permutations.shape == (6, 6)
    assert head.centres.shape == (40 * 6, 6) and head.gradient_coefficients.shape == (40 * 6, 6)
    gpr = models["gpr"].export_spec()
    assert gpr["transform"].kind == "morse" and gpr["program"].n_outputs > len(gpr["head"].columns)


def _need(compiler):
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} is not installed (apt-get install -y {compiler})")


@pytest.mark.parametrize("lang", ["c", "fortran"])
@pytest.mark.parametrize("name", ["kreg", "pkreg", "sgdml", "gpr"])
def test_export_agrees_with_python(name, lang, models, oh3, tmp_path):
    _need({"c": "gcc", "fortran": "gfortran"}[lang])
    _, test = oh3
    R = np.asarray(test.R[:100])
    res = export_model(models[name], lang, tmp_path, check=True, check_structures=R)
    c = res["check"]
    assert res["build_log"] == ""                                  # no compiler warnings
    assert c["n_structures"] == 100
    # as close as the model's own response to rounding of its inputs allows, and never worse than 1e-10
    assert c["max_energy_rel"] <= max(1e-10, 10 * c["rounding_energy_rel"])
    assert c["max_gradient_rel"] <= 1e-8
    if name in ("kreg", "gpr"):                                     # well-conditioned expansions: ~1e-12
        assert c["max_energy_rel"] <= 1e-10


def test_export_check_catches_a_wrong_head(models, oh3, monkeypatch, tmp_path):
    _need("gcc")
    model = models["sgdml"]
    spec = model.export_spec()
    spec["head"].offset += 1e-3                                     # 1 meV off
    monkeypatch.setattr(model, "export_spec", lambda: spec)
    with pytest.raises(RuntimeError, match="disagree"):
        export_model(model, "c", tmp_path, check=True, check_structures=np.asarray(oh3[1].R[:50]))


# ------------------------------------------------------------------- bad input
def test_duplicates_dropped_or_refused(h2co):
    train, _ = h2co
    base = train.first(30)
    R = np.concatenate([base.R, base.R[:2][:, [0, 1, 3, 2]]])       # permuted copies of two structures
    F = np.concatenate([base.F, base.F[:2][:, [0, 1, 3, 2]]])
    dup = Dataset(R=R, z=base.z, E=np.concatenate([base.E, base.E[:2]]), F=F)
    model = SGDMLModel(length_scale=10.0, lambda_=1e-8).fit(dup)
    assert model.hyperparameters_["dropped_duplicates"] == [30, 31]
    bad = Dataset(R=R, z=base.z, E=np.concatenate([base.E, base.E[:2] + 0.1]), F=F)
    with pytest.raises(ValueError, match="same geometry"):
        SGDMLModel(length_scale=10.0, lambda_=1e-8).fit(bad)


def test_too_few_structures(h2co):
    train, _ = h2co
    with pytest.raises(ValueError, match="hyperparameters"):
        GPRModel(degree=2).fit(train.first(10))
    with pytest.raises(ValueError, match="too few for 5-fold"):
        PKREGModel(cv_folds=5).fit(train.first(6))
    with pytest.raises(ValueError, match="has none"):
        SGDMLModel().fit(train.first(20)._replace(F=None))
    with pytest.raises(ValueError, match="at least 2"):
        KREGModel().fit(train.first(1))


@pytest.mark.parametrize("params,match", [
    (dict(kernel="laplace"), "kernel must be"),
    (dict(length_scale=-1.0), "length_scale must be > 0"),
    (dict(solver="lu"), "solver must be"),
    (dict(permutations="all"), "permutations must be"),
    (dict(use_forces="yes"), "use_forces must be"),
])
def test_bad_hyperparameters(params, match, h2co):
    with pytest.raises(ValueError, match=match):
        PKREGModel(**params).fit(h2co[0].first(20))


def test_cli_fit_and_eval(tmp_path, capsys):
    out = tmp_path / "m.json"
    argv = ["fit", "--train", str(shipped_path("h2co", "train")), "--n-train", "40", "--model", "sgdml",
            "--forces", "--length-scale", "10", "--lambda", "1e-8", "--out", str(out), "--json", "--quiet"]
    assert main(argv) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["model"] == "sgdml" and d["hyperparameters"]["length_scale"] == 10.0
    assert main(["eval", str(out), str(shipped_path("h2co", "test")), "--json"]) == 0
    e = json.loads(capsys.readouterr().out)
    assert e["energy_rmse_meV"] > 0
    if shutil.which("gfortran"):
        assert main(["export", str(out), "--lang", "fortran", "--out", str(tmp_path / "f90"), "--check"]) == 0
        out_text = capsys.readouterr().out
        assert "check on" in out_text and (tmp_path / "f90" / "libpes.so").is_file()
    assert main(["fit", "--train", str(shipped_path("h2co", "train")), "--n-train", "40", "--model", "sgdml",
                 "--quiet"]) == 2
    assert "has none" in capsys.readouterr().err


def test_sgdml_recipe(tmp_path, capsys):
    from pesfit.datasets import MOLECULES_DIR

    out = tmp_path / "h3.json"
    argv = ["fit", str(MOLECULES_DIR / "h3" / "recipe_sgdml.toml"), "--n-train", "40", "--out", str(out), "--json",
            "--quiet"]
    assert main(argv) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["model"] == "sgdml" and d["n_train"] == 40 and d["hyperparameters"]["use_energies"] is True
    assert d["hyperparameters"]["n_permutations"] == 6 and out.exists()
    assert d["test"]["energy_rmse_meV"] < 200
