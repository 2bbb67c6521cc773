"""Exported Fortran/C of real linear models agree with Python on 1000 shipped test structures."""
import shutil

import numpy as np
import pytest

from pesfit.cli import main
from pesfit.data import load_npz
from pesfit.datasets import shipped_path
from pesfit.export import export_model
from pesfit.models import LinearPIPModel

SETTINGS = {"h2co": dict(degree=5, morse_a=1.0), "oh3": dict(degree=6, morse_a=2.0),
            "ch5": dict(degree=4, morse_a=2.0)}


@pytest.fixture(scope="module", params=sorted(SETTINGS))
def fitted(request):
    name = request.param
    train = load_npz(shipped_path(name, "train")).first(1500)
    model = LinearPIPModel(ridge=1e-10, use_forces=False, **SETTINGS[name]).fit(train)
    test = load_npz(shipped_path(name, "test"))
    return name, model, np.asarray(test.R[:1000])


@pytest.mark.parametrize("lang,compiler", [("c", "gcc"), ("fortran", "gfortran")])
def test_export_matches_python(tmp_path, fitted, lang, compiler):
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} not installed")
    name, model, R = fitted
    result = export_model(model, lang, tmp_path / lang, prefix=name, check=True, check_structures=R)
    assert result["build_log"].strip() == ""  # no warnings under -Wall
    check = result["check"]
    assert check["n_structures"] == 1000
    assert check["max_energy_rel"] <= 1e-10 and check["max_gradient_rel"] <= 1e-8


def test_cli_export_check(tmp_path, capsys, monkeypatch):
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    train = load_npz(shipped_path("h3", "train")).first(300)
    model = LinearPIPModel(degree=6, morse_a=1.0, ridge=1e-10, use_forces=False).fit(train)
    model.save(tmp_path / "m.json")
    monkeypatch.chdir(tmp_path)  # a relative --out directory
    assert main(["export", "m.json", "--lang", "c", "--out", "out", "--name",
                 "h3pes", "--check", "--data", str(shipped_path("h3", "test")), "--json"]) == 0
    import json

    d = json.loads(capsys.readouterr().out)
    assert d["check"]["max_energy_rel"] <= 1e-10 and (tmp_path / "out" / "h3pes.c").exists()


def test_cli_export_unknown_model_version(tmp_path, capsys):
    p = tmp_path / "bad.json"
    p.write_text('{"format": "pesfit.model", "format_version": 99}')
    assert main(["export", str(p), "--lang", "c", "--out", str(tmp_path / "o")]) == 2
    assert "format_version" in capsys.readouterr().err
