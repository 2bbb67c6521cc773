"""PIP-NN / FI-NN back end: gradients, symmetry, torch vs NumPy, LM, bad input, model files, CLI."""
import json
import subprocess
import sys

import numpy as np
import pytest

from pesfit.data import load_npz
from pesfit.datasets import shipped_path
from pesfit.models import FINNModel, PIPNNModel, load_model
from pesfit.models.nn._reference import reference_energy_and_gradient
from pesfit.models.nn.network import energy_and_input_gradient, init_parameters, layer_sizes, n_parameters

torch = pytest.importorskip("torch")

from pesfit.models.nn import train as nntrain  # noqa: E402  (needs torch)

SMALL = dict(hidden=(8, 6), max_epochs=12, morse_a=1.5, validation_fraction=0.2)


@pytest.fixture(scope="module")
def h2co():
    return load_npz(shipped_path("h2co", "train")), load_npz(shipped_path("h2co", "test"))


@pytest.fixture(scope="module")
def model(h2co):
    train, _ = h2co
    return PIPNNModel(degree=3, **SMALL).fit(train.first(150))


@pytest.fixture(scope="module")
def ensemble(h2co):
    train, _ = h2co
    return FINNModel(ensemble=2, n_jobs=1, **SMALL).fit(train.first(150))


def _fd_errors(f, R, G, direction):
    errs = []
    for h in 10.0 ** -np.arange(2, 12):
        fd = (f(R + h * direction) - f(R - h * direction)) / (2 * h)
        errs.append(abs(fd - np.sum(G * direction)))
    return np.array(errs)


@pytest.mark.parametrize("which", ["model", "ensemble"])
def test_forces_are_minus_gradient(which, request, h2co):
    m = request.getfixturevalue(which)
    _, test = h2co
    rng = np.random.default_rng(3)
    for R in np.asarray(test.R[:3]):
        E, F = m.predict(R, forces=True)
        d = rng.normal(size=R.shape)
        errs = _fd_errors(m.predict, R, -F, d)
        assert errs.min() <= 1e-3 * errs.max(), errs


def test_permutation_invariance(model, ensemble, h2co):
    _, test = h2co
    R = np.asarray(test.R[:20])
    for m in (model, ensemble):
        E, F = m.predict(R, forces=True)
        E2, F2 = m.predict(R[:, [0, 1, 3, 2]], forces=True)
        assert np.allclose(E2, E, rtol=1e-12, atol=1e-12)
        assert np.allclose(F2, F[:, [0, 1, 3, 2]], rtol=1e-10, atol=1e-10)


def test_oh3_full_s3_invariance():
    data = load_npz(shipped_path("oh3", "train")).first(80)
    m = PIPNNModel(hidden=(6,), max_epochs=3, morse_a=1.5).fit(data)
    R = np.asarray(data.R[:10])
    E, F = m.predict(R, forces=True)
    for perm in ([0, 2, 1, 3], [0, 3, 2, 1], [0, 2, 3, 1]):
        E2, F2 = m.predict(R[:, perm], forces=True)
        assert np.allclose(E2, E, rtol=1e-12, atol=1e-12)
        assert np.allclose(F2, F[:, perm], rtol=1e-10, atol=1e-10)


def test_torch_numpy_and_compiled_agree(model, ensemble, h2co):
    """torch forward (autograd-ready), NumPy reference and the Numba kernel: <= 1e-12 relative."""
    _, test = h2co
    R = np.asarray(test.R[:200])
    for m in (model, ensemble):
        E, F = m.predict(R, forces=True)
        P, J = m.basis_.cartesian_jacobian(R, m.molecule_.transform)
        f = m.feature_index_
        Z = torch.from_numpy((P[:, f] - m.x_mean_) / m.x_scale_)
        K = torch.from_numpy(J[:, f].reshape(len(R), f.size, -1) / m.x_scale_[None, :, None])
        ys, gs = [], []
        for theta in m.parameters_:
            y, g = nntrain.network_outputs(torch.from_numpy(theta), m.layer_sizes_, m.activation, Z, K)
            ys.append(m.e_shift_ + m.e_scale_ * y.numpy())
            gs.append(m.e_scale_ * g.numpy().reshape(F.shape))
        Et, Gt = np.mean(ys, axis=0), np.mean(gs, axis=0)
        assert np.max(np.abs(Et - E)) <= 1e-12 * np.max(np.abs(E))
        assert np.max(np.abs(-Gt - F)) <= 1e-12 * np.max(np.abs(F))
        Er, Gr = reference_energy_and_gradient(m.basis_, m.molecule_.transform, R, f, m.x_mean_, m.x_scale_,
                                               m.layer_sizes_, m.activation, m.parameters_, m.e_shift_, m.e_scale_)
        assert np.max(np.abs(Er.mean(1) - E)) <= 1e-12 * np.max(np.abs(E))
        assert np.max(np.abs(-Gr.mean(1) - F)) <= 1e-12 * np.max(np.abs(F))


def test_single_and_batched_agree(model, h2co):
    _, test = h2co
    R = np.asarray(test.R[:5])
    E, F = model.predict(R, forces=True)
    for i in range(5):
        e, f = model.predict(R[i], forces=True)
        assert e == E[i] and np.array_equal(f, F[i])


@pytest.mark.parametrize("activation", ["tanh", "softplus", "sigmoid"])
def test_hand_jacobian_matches_autograd(activation):
    from torch.func import jacrev

    rng = np.random.default_rng(0)
    sizes = layer_sizes(5, (4, 3))
    theta = torch.from_numpy(init_parameters(sizes, rng) + 0.1 * rng.normal(size=n_parameters(sizes)))
    Z, y = torch.from_numpy(rng.normal(size=(7, 5))), torch.from_numpy(rng.normal(size=7))
    K, g = torch.from_numpy(rng.normal(size=(7, 5, 3))), torch.from_numpy(rng.normal(size=(7, 3)))

    def residuals(t):
        yp, gp = nntrain.network_outputs(t, sizes, activation, Z, K)
        return torch.cat([(yp - y)[:, None], 0.3 * (gp - g)], 1).reshape(-1)

    r, J = nntrain.residual_jacobian(theta, sizes, activation, Z, y, K, g, 0.3)
    assert torch.allclose(r, residuals(theta), rtol=0, atol=1e-14)
    assert torch.allclose(J, jacrev(residuals)(theta), rtol=0, atol=1e-13)
    # the NumPy network agrees with the torch one
    yn, dz = energy_and_input_gradient(theta.numpy(), sizes, activation, Z.numpy())
    yt, gt = nntrain.network_outputs(theta, sizes, activation, Z, K)
    assert np.allclose(yn, yt.numpy(), rtol=1e-14, atol=1e-14)
    assert np.allclose(np.einsum("nj,njm->nm", dz, K.numpy()), gt.numpy(), rtol=1e-13, atol=1e-13)


def test_lm_loss_decreases_monotonically(h2co):
    train, _ = h2co
    m = PIPNNModel(degree=2, hidden=(6, 6), max_epochs=25, patience=100, morse_a=1.5).fit(train.first(100))
    losses = [h["train_loss"] for h in m.history_[0] if "train_loss" in h]
    assert len(losses) >= 10
    assert all(b <= a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.05 * losses[0]


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_other_optimizers_train(optimizer, h2co):
    train, _ = h2co
    m = PIPNNModel(degree=2, hidden=(6,), max_epochs=8, morse_a=1.5, optimizer=optimizer, batch_size=32,
                   learning_rate=1e-2).fit(train.first(80))
    losses = [h["train_loss"] for h in m.history_[0]]
    assert losses[-1] < losses[0]
    assert m.hyperparameters_["optimizer"] == optimizer


def test_deterministic_for_fixed_seed(h2co, model):
    train, _ = h2co
    again = PIPNNModel(degree=3, **SMALL).fit(train.first(150))
    assert np.array_equal(again.parameters_, model.parameters_)
    other = PIPNNModel(degree=3, random_state=1, **SMALL).fit(train.first(150))
    assert not np.array_equal(other.parameters_, model.parameters_)


def test_ensemble_mean_and_spread(ensemble, h2co):
    _, test = h2co
    R = np.asarray(test.R[:10])
    E, F, E_std, F_std = ensemble.predict(R, forces=True, return_std=True)
    members, grads = ensemble._members(R, True, per_member=True)
    assert members.shape == (10, 2) and np.all(E_std > 0)
    assert np.allclose(E, members.mean(1), rtol=1e-14) and np.allclose(E_std, members.std(1))
    assert np.allclose(F, -grads.mean(1), rtol=1e-12, atol=1e-12) and F_std.shape == F.shape
    assert np.array_equal(E, ensemble.predict(R))
    assert [mm["seed"] for mm in ensemble.members_] == [0, 1]
    assert ensemble.members_[0]["validation_index"] != ensemble.members_[1]["validation_index"]
    e, s = ensemble.predict(R[0], return_std=True)
    assert e == E[0] and s == E_std[0]


def test_parallel_ensemble_matches_serial(h2co):
    train, _ = h2co
    params = dict(degree=2, hidden=(5,), max_epochs=4, morse_a=1.5, ensemble=2)
    serial = PIPNNModel(n_jobs=1, **params).fit(train.first(60))
    parallel = PIPNNModel(n_jobs=2, **params).fit(train.first(60))
    assert np.allclose(parallel.parameters_, serial.parameters_, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("params,match", [
    (dict(hidden=(0, 10)), "hidden layer sizes must be integers >= 1"),
    (dict(hidden=()), "at least one hidden layer"),
    (dict(force_weight=-1.0), "force_weight must be >= 0"),
    (dict(degree=0), "degree must be >= 1"),
    (dict(morse_a=-1.0), "morse_a must be > 0"),
    (dict(optimizer="sgd"), "optimizer must be one of"),
    (dict(activation="relu"), "activation must be one of"),
    (dict(ensemble=0), "ensemble must be >= 1"),
    (dict(max_epochs=0), "max_epochs must be >= 1"),
    (dict(validation_fraction=1.5), "validation_fraction must be in"),
    (dict(learning_rate=-1e-3), "learning_rate must be > 0"),
    (dict(hidden="20,20"), "hidden must be tuple or list"),
])
def test_bad_hyperparameters(params, match, h2co):
    train, _ = h2co
    with pytest.raises(ValueError, match=match):
        PIPNNModel(**params).fit(train.first(20))


def test_use_forces_without_forces(h2co):
    train, _ = h2co
    with pytest.raises(ValueError, match="no forces"):
        PIPNNModel(use_forces=True, **SMALL).fit(train.first(20)._replace(F=None))


def test_energy_only_fit(h2co):
    train, _ = h2co
    m = FINNModel(**SMALL).fit(train.first(60)._replace(F=None))
    assert m.hyperparameters_["forces"] is False and m.hyperparameters_["basis"] == "fi"
    assert m.hyperparameters_["n_inputs"] == 7


def test_round_trip_bit_identical(tmp_path, ensemble, h2co):
    _, test = h2co
    path = tmp_path / "m.json"
    ensemble.save(path)
    loaded = load_model(path)
    assert type(loaded) is FINNModel
    R = np.asarray(test.R[:100])
    for a, b in zip(loaded.predict(R, forces=True, return_std=True), ensemble.predict(R, forces=True, return_std=True)):
        assert np.array_equal(a, b)
    assert loaded.checksum() == ensemble.checksum()
    d = json.loads(path.read_text())
    assert d["kind"] == "fi_nn" and d["state"]["nn_format_version"] == 1
    assert len(d["state"]["parameters"]) == 2


def test_tampered_and_bad_files_refused(tmp_path, model):
    path = tmp_path / "m.json"
    model.save(path)
    d = json.loads(path.read_text())
    d["state"]["parameters"][0][3] += 1e-9
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_model(bad)
    # a consistent checksum does not let a malformed state through
    from pesfit.models._base import _canonical
    import hashlib

    d = json.loads(path.read_text())
    d["state"]["parameters"] = [d["state"]["parameters"][0][:-1]]
    del d["checksum"]
    d["checksum"] = hashlib.sha256(_canonical(d).encode()).hexdigest()
    bad.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="parameters of shape"):
        load_model(bad)
    d = json.loads(path.read_text())
    d["state"]["nn_format_version"] = 9
    del d["checksum"]
    d["checksum"] = hashlib.sha256(_canonical(d).encode()).hexdigest()
    bad.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="network state version"):
        load_model(bad)


def test_predict_checks(model):
    with pytest.raises(ValueError, match=r"shape \(n, 4, 3\)"):
        model.predict(np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match="not fitted"):
        PIPNNModel().predict(np.zeros((1, 4, 3)))


def test_export_spec(model):
    spec = model.export_spec()
    for key in ("kind", "transform", "symbols", "length_unit", "energy_unit", "energy_zero_eV", "checksum",
                "training_rmse_meV", "r_min", "predict", "program", "network"):
        assert key in spec
    net = spec["network"]
    assert net["layer_sizes"] == [49, 8, 6, 1] and net["activation"] == "tanh"
    W1 = net["members"][0][0]["W"]
    assert W1.shape == (8, 49)
    # the network dict reproduces the model energy in plain NumPy
    R = np.asarray(load_npz(shipped_path("h2co", "test")).R[:4])
    p = model.basis_.cartesian_values(R, spec["transform"])[:, net["input_index"]]
    a = (p - net["input_mean"]) / net["input_scale"]
    layers = net["members"][0]
    for layer in layers[:-1]:
        a = np.tanh(a @ layer["W"].T + layer["b"])
    E = net["energy_shift_eV"] + net["energy_scale_eV"] * (a @ layers[-1]["W"].T + layers[-1]["b"])[:, 0]
    assert np.allclose(E, model.predict(R), rtol=1e-13)


def test_import_and_predict_without_torch(tmp_path, model, h2co):
    path = tmp_path / "m.json"
    model.save(path)
    R = np.asarray(h2co[1].R[:3])
    np.save(tmp_path / "R.npy", R)
    code = (f"import sys; sys.modules['torch'] = None\n"
            f"import numpy as np\nfrom pesfit.models import load_model\n"
            f"m = load_model({str(path)!r}); E = m.predict(np.load({str(tmp_path / 'R.npy')!r}))\n"
            f"assert 'torch' not in sys.modules or sys.modules['torch'] is None\nprint(repr(E.tolist()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert np.array_equal(np.array(eval(out)), model.predict(R))


def test_cli_fit_pipnn(tmp_path, capsys):
    from pesfit.cli import main

    out = tmp_path / "nn.json"
    argv = ["fit", "--train", str(shipped_path("h3", "train")), "--n-train", "60", "--model", "pipnn",
            "--hidden", "6,5", "--epochs", "5", "--morse-a", "1.5", "--optimizer", "lm", "--ensemble", "1",
            "--forces", "--out", str(out), "--json", "--quiet"]
    assert main(argv) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["model"] == "pipnn" and d["hyperparameters"]["hidden"] == [6, 5]
    hp = d["hyperparameters"]   # the input choice is part of the --json contract
    assert hp["basis"] == "pip" and isinstance(hp["degree"], int) and isinstance(hp["n_inputs"], int)
    assert hp["input_choice"].startswith("validation") and len(hp["input_screening"]) == 2
    assert d["hyperparameters"]["forces"] is True and isinstance(d["train"]["force_rmse_meV_per_A"], float)
    assert load_model(out).hyperparameters_["optimizer"] == "lm"


def test_cli_bad_hidden(capsys):
    from pesfit.cli import main

    argv = ["fit", "--train", str(shipped_path("h3", "train")), "--n-train", "30", "--model", "finn",
            "--hidden", "6,x", "--quiet"]
    assert main(argv) == 2
    assert "--hidden must be comma-separated" in capsys.readouterr().err


def test_progress_reports_epochs(h2co):
    train, _ = h2co
    seen = []
    model = PIPNNModel(degree=2, hidden=(4,), max_epochs=3, morse_a=1.5)
    model.fit(train.first(40), progress=lambda *a: seen.append(a))
    assert [s[0] for s in seen] == [1, 2, 3] and all(s[1] == 3 for s in seen)
    assert "train E" in seen[-1][2] and "val E" in seen[-1][2] and "F" in seen[-1][2]


# ----------------------------------------------------------------- export
@pytest.mark.parametrize("lang", ["c", "fortran"])
@pytest.mark.parametrize("which", ["model", "ensemble"])
def test_export_agrees_with_python(which, lang, request, h2co, tmp_path):
    import shutil

    from pesfit.export import export_model

    compiler = {"c": "gcc", "fortran": "gfortran"}[lang]
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} is not installed")
    fitted = request.getfixturevalue(which)
    _, test = h2co
    res = export_model(fitted, lang, tmp_path, check=True, check_structures=np.asarray(test.R[:300]))
    assert res["build_log"] == ""
    assert res["check"]["max_energy_rel"] <= 1e-12 and res["check"]["max_gradient_rel"] <= 1e-10
    # the exported library in the caller's units (bohr, hartree) through its ctypes loader
    spec = {}
    exec(compile((tmp_path / "pes_ctypes.py").read_text(), "pes_ctypes.py", "exec"), spec)
    pes = spec["CompiledPES"](str(res["library"]))
    R = np.asarray(test.R[5])
    e, g = pes.energy_gradient(R / 0.529177210903)
    E, F = fitted.predict(R, forces=True)
    assert e * 27.211386245988 == pytest.approx(float(E), rel=1e-12)
    assert np.allclose(-g * 27.211386245988 / 0.529177210903, F, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("activation", ["softplus", "sigmoid"])
def test_export_other_activations_one_hidden_layer(activation, h2co, tmp_path):
    import shutil

    from pesfit.export import export_model

    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    train, test = h2co
    m = PIPNNModel(degree=2, morse_a=1.5, hidden=(5,), activation=activation, max_epochs=2).fit(train.first(60))
    res = export_model(m, "c", tmp_path, check=True, check_structures=np.asarray(test.R[:100]))
    assert res["build_log"] == "" and res["check"]["max_energy_rel"] <= 1e-12


@pytest.mark.parametrize("symbols, expected", [
    ("C H H H H N", [(3, 86), (2, 21)]),      # A4BC: degree 2 alone (21 inputs) underfits
    ("C H H H H H", [(4, 100), (3, 31)]),
    ("C O H H", [(3, 49), (2, 17)]),
    ("H H H", [(6, 22), (5, 15)]),
])
def test_input_candidates_scale_with_the_molecule(symbols, expected):
    from invariants import PermutationGroup

    group = PermutationGroup.from_symbols(symbols.split())
    cands = PIPNNModel()._candidate_bases(group)
    assert [(b.max_degree, int((b.degrees > 0).sum())) for b in cands] == expected
    assert [b.max_degree for b in PIPNNModel(degree=2)._candidate_bases(group)] == [2]
    fi = FINNModel()._candidate_bases(group)
    if symbols in ("C O H H", "H H H"):     # every fundamental invariant fits within max_inputs: no screening
        assert len(fi) == 1 and int((fi[0].degrees > 0).sum()) == {"C O H H": 7, "H H H": 3}[symbols]
    small = PIPNNModel(max_inputs=16)._candidate_bases(group)
    assert small and all(int((b.degrees > 0).sum()) <= 16 or b.max_degree == 1 for b in small)


def test_input_degree_chosen_by_validation(h2co):
    train, _ = h2co
    m = PIPNNModel(hidden=(6,), max_epochs=6, screen_epochs=3, morse_a=1.5, validation_fraction=0.2)
    m.fit(train.first(120))
    hp = m.hyperparameters_
    scores = {r["degree"]: r["val_energy_rmse_meV"] for r in hp["input_screening"]}
    assert sorted(scores) == [2, 3] and all(np.isfinite(v) for v in scores.values())
    assert hp["degree"] == min(scores, key=scores.get) and hp["input_choice"].startswith("validation")
    assert hp["n_inputs"] == m.feature_index_.size == m.layer_sizes_[0]
