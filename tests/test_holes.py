"""Hole search (pesfit.holes, ``pesfit holes``): planted holes are found, clean surfaces pass, bad input is refused."""
import json

import numpy as np
import pytest

from invariants import pair_distances
from pesfit.cli import main
from pesfit.data import Dataset, load_npz, save_npz
from pesfit.datasets import shipped_path
from pesfit.holes import find_holes, holes_in_dataset, internal_directions
from pesfit.models import LinearPIPModel

KEYS = {"n_probed", "n_holes", "deepest_meV_below_min", "holes"}
WELL_INDEX = 20       # test structure next to which the well is planted


class PlantedWellModel(LinearPIPModel):
    """A linear PIP model plus a narrow Gaussian well in the interatomic distances.

    ``E = E_linear - depth * exp(-|r - r_well|^2 / (2 width^2))`` with ``r`` the
    pair distances [Å], ``depth`` [eV], ``width`` [Å].  It is saved and loaded
    like any model (kind ``test_planted_well``), so the CLI can read it.
    """

    kind = "test_planted_well"
    cli_name = None

    def plant(self, r_well, depth, width):
        self.well_ = (np.asarray(r_well, dtype=np.float64), float(depth), float(width))
        return self

    def _energy_and_gradient(self, R, gradient):
        r_well, depth, width = self.well_
        i, j = np.triu_indices(R.shape[1], k=1)
        diff = R[:, i] - R[:, j]                                          # (n, P, 3)
        r = np.linalg.norm(diff, axis=-1)
        w = depth * np.exp(-np.sum((r - r_well) ** 2, axis=1) / (2 * width**2))
        if not gradient:
            return super()._energy_and_gradient(R, False) - w
        E, G = super()._energy_and_gradient(R, True)
        dw_dr = -w[:, None] * (r - r_well) / width**2                     # d(w)/d(r_ij)
        g = (dw_dr / r)[..., None] * diff                                # d(w)/d(R_i) of each pair
        Gw = np.zeros_like(R)
        np.add.at(Gw, (slice(None), i), g)
        np.add.at(Gw, (slice(None), j), -g)
        return E - w, G - Gw

    def _state(self):
        r_well, depth, width = self.well_
        return {**super()._state(), "well": {"r": r_well.tolist(), "depth": depth, "width": width}}

    def _set_state(self, state):
        super()._set_state(state)
        self.plant(state["well"]["r"], state["well"]["depth"], state["well"]["width"])


class PairModel:
    """A pair potential ``E = sum V(r_ij)`` with the pesfit ``predict`` interface (no model file).

    ``V(r) = D ((1 - exp(-(r - re)))^2 - 1) - B exp(-r / 0.05 Å)``: a Morse
    pair [eV, Å] plus, for ``B > 0``, an attraction that only acts well inside
    the shortest "training" distance ``r_min_``.
    """

    def __init__(self, B, e_min=-3.0):
        self.symbols, self.B = ("H", "H", "H"), B
        self.e_min_, self.r_min_ = e_min, np.array([0.6, 0.6, 0.6])

    def predict(self, R, forces=False):
        R = np.asarray(R, dtype=np.float64)
        single = R.ndim == 2
        R = R[None] if single else R
        i, j = np.triu_indices(3, k=1)
        diff = R[:, i] - R[:, j]
        r = np.linalg.norm(diff, axis=-1)
        x = np.exp(-(r - 0.74))
        V = (1 - x) ** 2 - 1 - self.B * np.exp(-r / 0.05)
        dV = 2 * (1 - x) * x + self.B / 0.05 * np.exp(-r / 0.05)
        E = V.sum(axis=1)
        g = (dV / r)[..., None] * diff
        G = np.zeros_like(R)
        np.add.at(G, (slice(None), i), g)
        np.add.at(G, (slice(None), j), -g)
        if single:
            E, G = E[0], G[0]
        return (E, -G) if forces else E


def _with_fit_of(clean):
    """A PlantedWellModel with the fitted state of ``clean`` (plant the well next)."""
    model = PlantedWellModel(**clean.get_params())
    model.__dict__.update({k: v for k, v in clean.__dict__.items() if k.endswith("_")})
    return model


@pytest.fixture(scope="module")
def h3():
    train = load_npz(shipped_path("h3", "train")).first(1000)
    test = load_npz(shipped_path("h3", "test")).first(60)
    return train, test


@pytest.fixture(scope="module")
def clean(h3):
    train, _ = h3
    return LinearPIPModel(degree=6, morse_a=1.0, use_forces=False).fit(train)


@pytest.fixture(scope="module")
def planted(clean, h3):
    _, test = h3
    model = _with_fit_of(clean)
    R = np.asarray(test.R[WELL_INDEX])
    d = internal_directions(R[None], 1, np.random.default_rng(5))[0, 0]
    centre = R + 0.1 * d                                                  # 0.1 Å from the test structure
    return model.plant(pair_distances(centre[None])[0], depth=3.0, width=0.08), centre


def test_directions_are_internal_and_scaled():
    R = np.asarray(load_npz(shipped_path("h2co", "test")).R[:4])
    D = internal_directions(R, 8, np.random.default_rng(0))
    assert D.shape == (4, 8, 4, 3)
    assert np.allclose(np.linalg.norm(D, axis=-1).max(axis=-1), 1.0)     # largest atom displacement 1
    assert np.allclose(D.sum(axis=2), 0.0, atol=1e-12)                    # no translation
    X = R - R.mean(axis=1, keepdims=True)
    L = np.cross(X[:, None], D).sum(axis=2)                               # no infinitesimal rotation
    assert np.allclose(L, 0.0, atol=1e-12)


def test_planted_well_is_found(planted, h3):
    model, centre = planted
    _, test = h3
    report = find_holes(model, test.R)
    assert set(report.to_dict()) == KEYS
    assert report.n_probed == len(test.R) * 16 * 6
    assert report.n_holes >= 1 and report.deepest_meV_below_min > 1000
    hole = report.holes[0]
    assert hole["index"] == WELL_INDEX and hole["kind"] == "below_min" and hole["depth_meV"] > 1000
    assert np.max(np.abs(pair_distances(np.array(hole["geometry_A"])[None]) - pair_distances(centre[None]))) < 0.3
    assert hole["displacement_A"] <= 0.3 + 1e-12 and hole["n_hits"] >= 1
    # one well, one hole: the rays that reach it are grouped
    assert sum(h["kind"] == "below_min" for h in report.holes) == 1


def test_clean_model_has_no_holes(clean, h3):
    _, test = h3
    report = find_holes(clean, test.R)
    assert report.n_holes == 0 and report.holes == []
    assert report.deepest_meV_below_min < 50


def test_trajectories_fall_into_a_well_at_the_start(clean, h3):
    """md=True: a trajectory started inside a well is a hole at t > 0; a clean surface has none."""
    _, test = h3
    model = _with_fit_of(clean)
    R = np.asarray(test.R[:5])
    model.plant(pair_distances(R[2:3])[0], depth=2.0, width=0.04)
    report = find_holes(model, R, directions=0, md=True, md_time_fs=10.0, energies=test.E[:5])
    assert report.n_probed == 5 * 40
    assert [h["index"] for h in report.holes] == [2] and report.holes[0]["direction"] == "md"
    assert report.holes[0]["time_fs"] > 0
    assert find_holes(clean, R, directions=0, md=True, md_time_fs=10.0).n_holes == 0


def test_short_range_attraction_is_a_hole():
    R = np.array([[[0.0, 0.0, 0.0], [0.74, 0.0, 0.0], [3.0, 0.5, 0.0]],
                  [[0.0, 0.0, 0.0], [0.70, 0.0, 0.0], [0.0, 2.5, 0.0]],
                  [[0.0, 0.0, 0.0], [0.40, 0.0, 0.0], [0.0, 2.5, 0.0]]])   # high energy: sets the ceiling
    deep = find_holes(PairModel(B=300.0), R, radius=0.3)
    assert deep.n_holes >= 1 and deep.deepest_meV_below_min > 1000      # the rays go below the floor too
    bad = find_holes(PairModel(B=300.0, e_min=-1e3), R, radius=0.3)       # a floor they cannot reach
    assert bad.n_holes >= 1 and {h["kind"] for h in bad.holes} == {"attraction"}
    h = bad.holes[0]
    assert h["pair_distance_A"] < h["pair_r_min_A"] == 0.6
    assert find_holes(PairModel(B=0.0), R, radius=0.3).n_holes == 0


def test_cli_finds_the_planted_hole(planted, h3, tmp_path, capsys):
    model, _ = planted
    _, test = h3
    model.save(tmp_path / "m.json")
    save_npz(test, tmp_path / "test.npz")
    code = main(["holes", str(tmp_path / "m.json"), "--data", str(tmp_path / "test.npz"), "--fail", "--json",
                 "--quiet"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and set(out) == KEYS
    assert out["n_holes"] >= 1 and out["holes"][0]["index"] == WELL_INDEX
    assert out["deepest_meV_below_min"] > 1000 and out["n_probed"] == len(test.R) * 96
    assert main(["holes", str(tmp_path / "m.json"), "--data", str(tmp_path / "test.npz"), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"{out['n_holes']} hole(s)") and f"structure {WELL_INDEX}" in text


def test_cli_clean_model_passes(clean, h3, tmp_path, capsys):
    _, test = h3
    clean.save(tmp_path / "m.json")
    save_npz(test, tmp_path / "test.npz")
    assert main(["holes", str(tmp_path / "m.json"), "--data", str(tmp_path / "test.npz"), "--fail", "--json",
                 "--quiet", "--directions", "4"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_holes"] == 0 and out["holes"] == [] and out["n_probed"] == len(test.R) * 4 * 6


@pytest.mark.parametrize("case", ["atoms", "missing", "radius", "directions"])
def test_cli_bad_input(clean, tmp_path, capsys, case):
    clean.save(tmp_path / "m.json")
    data = str(shipped_path("h2co" if case == "atoms" else "h3", "test"))
    args = ["holes", str(tmp_path / "m.json"), "--data", data, "--quiet"]
    if case == "missing":
        args[3] = str(tmp_path / "nope.npz")
    args += {"radius": ["--radius", "0"], "directions": ["--directions", "-1"]}.get(case, [])
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert {"atoms": "4 atoms", "missing": "nope.npz", "radius": "--radius", "directions": "--directions"}[case] in err


def test_dataset_atoms_are_put_in_model_order(clean, h3):
    _, test = h3
    report = holes_in_dataset(clean, test, directions=2)
    assert report.n_probed == len(test.R) * 2 * 6 and isinstance(test, Dataset)


def test_fit_reports_holes_on_its_test_data(tmp_path, capsys, h3):
    train, test = h3
    save_npz(train.first(300), tmp_path / "train.npz")
    save_npz(test, tmp_path / "test.npz")
    args = ["fit", "--train", str(tmp_path / "train.npz"), "--test", str(tmp_path / "test.npz"), "--degree", "4",
            "--morse-a", "1.0", "--quiet"]
    assert main(args + ["--json"]) == 0
    holes = json.loads(capsys.readouterr().out)["test"]["holes"]
    assert set(holes) == KEYS and holes["n_probed"] == len(test.R) * 96
    assert main(args) == 0
    assert "holes around the test structures" in capsys.readouterr().out
    assert main(args + ["--json", "--no-holes"]) == 0
    assert "holes" not in json.loads(capsys.readouterr().out)["test"]
