"""Linear PIP model: accuracy on shipped data, forces, symmetry, model files, bad input."""
import json

import numpy as np
import pytest

from pesfit.data import Dataset, load_npz
from pesfit.datasets import shipped_path
from pesfit.models import LinearPIPModel, load_model


@pytest.fixture(scope="module")
def h2co():
    return load_npz(shipped_path("h2co", "train")), load_npz(shipped_path("h2co", "test"))


@pytest.fixture(scope="module")
def h2co_model(h2co):
    train, _ = h2co
    return LinearPIPModel(degree=6).fit(train.first(4000)._replace(F=None))


def test_h2co_energy_only_accuracy(h2co, h2co_model):
    _, test = h2co
    report = h2co_model.evaluate(test)
    assert report["energy_rmse_meV"] <= 1.5, report["energy_rmse_meV"]
    assert h2co_model.hyperparameters_["forces"] is False


def test_h3_energy_only_accuracy():
    train = load_npz(shipped_path("h3", "train")).first(4000)._replace(F=None)
    test = load_npz(shipped_path("h3", "test"))
    model = LinearPIPModel(degree=12).fit(train)
    assert model.evaluate(test)["energy_rmse_meV"] <= 2.0


def test_forces_help_with_little_data(h2co):
    train, test = h2co
    small = train.first(200)
    with_f = LinearPIPModel(degree=4, morse_a=1.5, ridge=1e-10).fit(small)
    without = LinearPIPModel(degree=4, morse_a=1.5, ridge=1e-10, use_forces=False).fit(small)
    assert with_f.hyperparameters_["forces"] and not without.hyperparameters_["forces"]
    e_with = with_f.evaluate(test)["energy_rmse_meV"]
    e_without = without.evaluate(test)["energy_rmse_meV"]
    assert e_with < e_without


def test_forces_are_minus_gradient(h2co_model, h2co):
    _, test = h2co
    R = np.asarray(test.R[:3])
    E, F = h2co_model.predict(R, forces=True)
    h = 1e-5
    fd = np.zeros_like(R)
    for a in range(R.shape[1]):
        for x in range(3):
            Rp, Rm = R.copy(), R.copy()
            Rp[:, a, x] += h
            Rm[:, a, x] -= h
            fd[:, a, x] = -(h2co_model.predict(Rp) - h2co_model.predict(Rm)) / (2 * h)
    assert np.max(np.abs(fd - F)) <= 1e-6 * np.max(np.abs(F)) + 1e-9


def test_permutation_invariance(h2co_model, h2co):
    _, test = h2co
    R = np.asarray(test.R[:20])
    swapped = R[:, [0, 1, 3, 2]]
    E, F = h2co_model.predict(R, forces=True)
    E2, F2 = h2co_model.predict(swapped, forces=True)
    assert np.allclose(E2, E, rtol=1e-12, atol=1e-12)
    assert np.allclose(F2, F[:, [0, 1, 3, 2]], rtol=1e-10, atol=1e-10)


def test_atom_reordering_in_evaluate(h2co_model, h2co):
    _, test = h2co
    sub = test.subset(slice(0, 50))
    shuffled = sub.reorder_atoms(["H", "C", "H", "O"])
    assert h2co_model.evaluate(shuffled)["energy_rmse_meV"] == pytest.approx(
        h2co_model.evaluate(sub)["energy_rmse_meV"], rel=1e-10)


def test_round_trip_bit_identical(tmp_path, h2co_model, h2co):
    _, test = h2co
    path = tmp_path / "m.json"
    h2co_model.save(path)
    loaded = load_model(path)
    R = np.asarray(test.R[:100])
    assert np.array_equal(loaded.predict(R), h2co_model.predict(R))
    E1, F1 = loaded.predict(R, forces=True)
    E0, F0 = h2co_model.predict(R, forces=True)
    assert np.array_equal(F1, F0)
    d = json.loads(path.read_text())
    assert d["molecule"]["symbols"] == ["C", "O", "H", "H"]
    assert d["units"] == {"length": "angstrom", "energy": "eV", "codata": "2018"}
    assert d["format_version"] == 1 and d["kind"] == "linear_pip"


def test_tampered_and_corrupt_files_refused(tmp_path, h2co_model):
    path = tmp_path / "m.json"
    h2co_model.save(path)
    d = json.loads(path.read_text())
    d["state"]["coef"][3] += 1e-6
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_model(bad)
    d = json.loads(path.read_text())
    d["format_version"] = 7
    bad.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="format_version"):
        load_model(bad)
    d = json.loads(path.read_text())
    del d["molecule"]
    bad.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="lacks fields"):
        load_model(bad)
    bad.write_text(path.read_text()[:-50])
    with pytest.raises(ValueError, match="not a pesfit model file"):
        load_model(bad)


def test_predict_bad_input(h2co_model):
    R = np.zeros((1, 3, 3))
    with pytest.raises(ValueError, match=r"shape \(n, 4, 3\)"):
        h2co_model.predict(R)
    R = np.random.default_rng(0).normal(size=(2, 4, 3))
    R[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="structure 1 contain NaN"):
        h2co_model.predict(R)
    R = np.random.default_rng(0).normal(size=(1, 4, 3))
    R[0, 3] = R[0, 2]
    with pytest.raises(ValueError, match="on top of each other"):
        h2co_model.predict(R)
    with pytest.raises(ValueError, match="not fitted"):
        LinearPIPModel().predict(R)


@pytest.mark.parametrize("params,match", [
    (dict(degree=0), "degree must be >= 1"),
    (dict(morse_a=-1.0), "morse_a must be > 0"),
    (dict(force_weight=-1.0), "force_weight must be >= 0"),
    (dict(degree="six"), "degree must be"),
    (dict(cv_folds=1), "cv_folds must be >= 2"),
])
def test_bad_hyperparameters(params, match, h2co):
    train, _ = h2co
    with pytest.raises(ValueError, match=match):
        LinearPIPModel(**params).fit(train.first(50))


def test_too_few_data_for_basis(h2co):
    train, _ = h2co
    with pytest.raises(ValueError, match="data rows"):
        LinearPIPModel(degree=6, morse_a=1.0, ridge=0.0, use_forces=False).fit(train.first(20))


def test_cv_uses_training_data_only(h2co):
    train, _ = h2co
    m = LinearPIPModel(degree=3).fit(train.first(300))
    from pesfit.models.linear import DEFAULT_MORSE_GRID, DEFAULT_RIDGE_GRID

    assert len(m.cv_results_) == len(DEFAULT_MORSE_GRID) * len(DEFAULT_RIDGE_GRID)
    best = min(m.cv_results_, key=lambda r: r["cv_energy_rmse_meV"])
    assert m.hyperparameters_["morse_a"] == best["morse_a"] and m.hyperparameters_["ridge"] == best["ridge"]


def test_fit_rejects_multistate_data():
    ds = Dataset(R=np.random.default_rng(1).normal(size=(5, 3, 3)) * 2, z=np.array([1, 1, 1]),
                 E=np.zeros((5, 2)))
    with pytest.raises(ValueError, match="one energy per structure"):
        LinearPIPModel(degree=2).fit(ds)


@pytest.mark.parametrize("kind", ["linear", "pipnn", "kreg", "gpr"])
def test_use_forces_without_forces_is_refused(kind, h2co):
    from pesfit.models import make_model

    train = h2co[0].first(30)._replace(F=None)
    with pytest.raises(ValueError, match=r"use_forces=True but the training data has no forces \(key F\)"):
        make_model(kind, use_forces=True).fit(train)
