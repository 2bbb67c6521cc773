"""CLI contract: flags and --json keys of basis, fit and eval (run in-process)."""
import json
from pathlib import Path

import pytest

from invariants.molien import cumulative
from pesfit.cli import main
from pesfit.datasets import shipped_path


def _json_out(capsys, argv):
    assert main(argv) == 0
    out = capsys.readouterr().out
    return json.loads(out)


def test_basis_json_keys(capsys):
    d = _json_out(capsys, ["basis", "--atoms", "C H H H H", "--degree", "6", "--json"])
    for key in ("n_variables", "group_order", "molien", "n_basis", "per_degree", "seconds"):
        assert key in d
    assert d["n_variables"] == 10 and d["group_order"] == 24
    assert cumulative(d["per_degree"]) == [1, 3, 10, 30, 83, 208, 495]
    assert d["per_degree"] == d["molien"] and d["n_basis"] == 495


def test_basis_fi_and_out(tmp_path, capsys):
    out = tmp_path / "fi.json"
    d = _json_out(capsys, ["basis", "--atoms", "O H H H", "--degree", "4", "--kind", "fi", "--out", str(out),
                           "--json"])
    assert d["per_degree"] == [0, 2, 3, 4, 0] and out.exists()


@pytest.mark.parametrize("argv,match", [
    (["basis", "--atoms", "C Xx H", "--degree", "3"], "unknown element"),
    (["basis", "--atoms", "C H H", "--degree", "0"], "degree must be"),
    (["basis", "--atoms", "H", "--degree", "3"], "at least 2 atoms"),
    (["basis", "--atoms", "C H H H H H H", "--degree", "9"], "Molien series"),
])
def test_basis_errors(argv, match, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error" in err and pytest.importorskip("re").search(match, err)


def test_fit_flags_json_and_eval(tmp_path, capsys):
    model = tmp_path / "m.json"
    d = _json_out(capsys, ["fit", "--train", str(shipped_path("h2co", "train")), "--n-train", "300",
                           "--test", str(shipped_path("h2co", "test")), "--model", "linear", "--degree", "4",
                           "--forces", "--out", str(model), "--json", "--quiet"])
    for key in ("n_train", "n_basis", "fit_seconds"):
        assert key in d
    assert d["n_train"] == 300 and d["n_basis"] == 120
    for block in ("train", "test"):
        for key in ("energy_rmse_meV", "energy_mae_meV", "force_rmse_meV_per_A"):
            assert isinstance(d[block][key], float)
    assert d["hyperparameters"]["forces"] is True
    # errors by region (compact / separated fragments) in both blocks
    regions = {r["region"]: r for r in d["test"]["regions"]}
    assert sum(r["n"] for r in regions.values()) == 2000 and regions["compact"]["n"] > 1900
    assert all(isinstance(r["energy_rmse_meV"], float) for r in regions.values())
    assert d["train"]["regions"][0]["region"] == "compact"
    e = _json_out(capsys, ["eval", str(model), str(shipped_path("h2co", "test")), "--json"])
    assert e["energy_rmse_meV"] == pytest.approx(d["test"]["energy_rmse_meV"], rel=1e-12)
    # the five worst structures, by index into the data file, and the RMSE without them
    worst = e["largest_energy_errors"]
    assert len(worst) == 5 and abs(worst[0]["error_meV"]) == pytest.approx(e["energy_max_meV"], rel=1e-12)
    assert all(abs(a["error_meV"]) >= abs(b["error_meV"]) for a, b in zip(worst, worst[1:]))
    assert e["energy_rmse_meV_without_largest"] < e["energy_rmse_meV"]


def test_fit_recipe(tmp_path, capsys):
    recipe = tmp_path / "r.toml"
    train = Path(shipped_path("h3", "train"))
    recipe.write_text(f'[data]\ntrain = "{train}"\nn_train = 500\n\n[model]\nkind = "linear"\ndegree = 6\n'
                      f'morse_a = 1.0\n\n[output]\nmodel = "out.json"\n')
    d = _json_out(capsys, ["fit", str(recipe), "--json", "--quiet"])
    assert d["n_train"] == 500 and (tmp_path / "out.json").exists()


def test_recipe_rejects_unknown_keys(tmp_path, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[data]\ntrain = "x.npz"\ntrian = 3\n')
    assert main(["fit", str(recipe)]) == 2
    assert "unknown keys ['trian']" in capsys.readouterr().err


def test_shipped_recipes_parse():
    from pesfit.recipe import load_recipe

    root = Path(__file__).resolve().parents[1] / "molecules"
    recipes = sorted(root.glob("*/recipe.toml"))
    assert recipes
    for path in recipes:
        r = load_recipe(path)
        assert r.train.exists(), path
