"""What a new user meets first: help at every level, --version, python -m pesfit, one-line errors for bad
input, unit flags, and the many-body fit from the command line reaching what the Python API reaches."""
import argparse
import inspect
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pesfit.cli import build_parser, main
from pesfit.datasets import shipped_path

ROOT = Path(__file__).resolve().parents[1]
WATER = ROOT / "molecules" / "water_clusters"


def _parsers(parser, path=("pesfit",)):
    """``(command path, parser)`` of the parser and every subcommand below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, path + (name,))


def test_every_command_option_and_positional_has_help():
    """Walks the whole parser, so commands added later (``COMMAND_MODULES``) are checked too."""
    seen = 0
    for path, parser in _parsers(build_parser()):
        assert parser.description, f"{' '.join(path)} has no description"
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            name = "/".join(action.option_strings) or action.dest
            assert action.help and action.help != argparse.SUPPRESS, f"{' '.join(path)} {name} has no help"
            if action.default not in (None, False, argparse.SUPPRESS) and action.option_strings:
                assert "default" in action.help, f"{' '.join(path)} {name}: help does not give its default"
            seen += 1
    assert seen > 100


def test_help_names_commands_units_and_version(capsys):
    parser = build_parser()
    commands = [p[1] for p, _ in _parsers(parser) if len(p) == 2]
    assert {"basis", "fit", "eval", "export", "vib", "plot", "plot-cut", "learning-curve"} <= set(commands)
    text = parser.format_help()
    assert all(c in text for c in commands)
    assert "basis | fit | eval | export" not in text
    for cmd in ("fit", "eval", "export", "plot", "plot-cut", "vib", "learning-curve"):
        sub = " ".join(dict((p[1:], s) for p, s in _parsers(parser))[(cmd,)].format_help().split())
        assert "bohr and hartree" in sub and "--length-unit" in sub and "--energy-unit" in sub, cmd
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("pesfit ")


def test_python_m_pesfit():
    proc = subprocess.run([sys.executable, "-m", "pesfit", "--help"], capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": ""}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "learning-curve" in proc.stdout and "plot-cut" in proc.stdout


# ----------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "h3.json"
    assert main(["fit", "--train", str(shipped_path("h3", "train")), "--n-train", "200", "--degree", "3",
                 "--morse-a", "1.0", "--ridge", "0", "--out", str(path), "--quiet"]) == 0
    return path


def _bad_inputs(tmp, model):
    data = str(shipped_path("h3", "test"))
    (tmp / "text.xyz").write_text("these are not coordinates\n1 2 3\n")
    (tmp / "text.npz").write_text("R z E\n1 2 3\n")
    (tmp / "table.csv").write_text("x,y,z,E\n0,0,0,1\n")
    recipe = (ROOT / "molecules" / "h2co" / "recipe.toml").read_text().replace("degree = 6", "degre = 6")
    recipe = recipe.replace('"train.npz"', repr(str(shipped_path("h2co", "train"))).replace("'", '"'))
    (tmp / "typo.toml").write_text(recipe)
    body = json.loads(Path(model).read_text())
    body["e_min_eV"] += 1.0
    (tmp / "edited.json").write_text(json.dumps(body))
    (tmp / "basis.json").write_text(json.dumps({"kind": "pip", "degree": 3}))
    return [
        (["fit", str(tmp / "typo.toml")], ["typo.toml", "'degre'", "'degree'", "docs/formats.md"]),
        (["fit", "--train", str(tmp / "text.xyz")], ["text.xyz", "extended XYZ", ".npz"]),
        (["fit", "--train", str(tmp / "text.npz")], ["text.npz", "not an .npz file", ".xyz"]),
        (["fit", "--train", str(tmp / "table.csv")], ["table.csv", "'.csv'", ".npz", ".points"]),
        (["eval", data, str(model)], ["test.npz", "h3.json", "pesfit eval MODEL DATA"]),
        (["eval", str(tmp / "edited.json"), data], ["edited.json", "checksum"]),
        (["eval", str(tmp / "basis.json"), data], ["basis.json", "not a pesfit model file"]),
        (["eval", str(tmp / "missing.json"), data], ["missing.json", "No such file"]),
        (["eval", str(tmp / "text.npz"), data], ["text.npz", "not a pesfit model file"]),
        (["eval", str(model), str(tmp / "text.xyz")], ["text.xyz", "extended XYZ"]),
        (["eval", str(model), data, "--energy-unit", "furlong"], ["'furlong'", "hartree"]),
    ]


def test_bad_input_gives_one_line_naming_file_or_key(tmp_path, small_model, capsys):
    for argv, needles in _bad_inputs(tmp_path, small_model):
        assert main(argv) == 2, argv
        captured = capsys.readouterr()
        err = captured.err
        assert err.count("\n") == 1 and err.startswith(f"pesfit {argv[0]}: error: "), (argv, err)
        assert "Traceback" not in err and "fmt=" not in err and "allow_pickle" not in err, (argv, err)
        for needle in needles:
            assert needle in err, (argv, needle, err)


def test_unit_flags_override_the_format(tmp_path, small_model, capsys):
    from pesfit.data import load_dataset, save_points
    from pesfit.models import load_model

    test = load_dataset(shipped_path("h3", "test")).first(300)
    save_points(test, tmp_path / "a.dat", length_unit="angstrom", energy_unit="eV")
    expect = load_model(small_model).evaluate(test)["energy_rmse_meV"]
    default = json.loads(_run(capsys, ["eval", str(small_model), str(tmp_path / "a.dat"), "--json"]))
    assert default["n"] == 300 and default["energy_rmse_meV"] > 10 * expect  # read as bohr and hartree
    flags = json.loads(_run(capsys, ["eval", str(small_model), str(tmp_path / "a.dat"), "--json",
                                     "--length-unit", "angstrom", "--energy-unit", "eV"]))
    assert flags["energy_rmse_meV"] == pytest.approx(expect, rel=1e-9)


def _run(capsys, argv) -> str:
    assert main(argv) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def test_recipe_keys_are_documented():
    """docs/formats.md lists every [model] key of every back end (the recipe checker's allowed keys)."""
    from pesfit.models import registered_models

    text = (ROOT / "docs" / "formats.md").read_text()
    for name, cls in registered_models().items():
        assert f"`{name}`" in text, name
        for key in inspect.signature(cls.__init__).parameters:
            if key != "self":
                assert f"`{key}`" in text, (name, key)


# ----------------------------------------------------------------- many-body
@pytest.mark.skipif(not (WATER / "dimers_train.npz").exists(), reason="water cluster data not shipped")
def test_manybody_cli_uses_fragment_energies_like_the_api(tmp_path, capsys):
    """A fast variant of the issue's command (fixed Morse range and ridge, 800 dimers): the CLI fits each term to
    its n-body energies from the file's fragment energies and gives the API's test errors exactly."""
    from pesfit import units
    from pesfit.models.manybody import ManyBodyModel, load_clusters

    train, test = WATER / "dimers_train.npz", WATER / "dimers_test.npz"
    d = json.loads(_run(capsys, ["fit", "--train", str(train), "--test", str(test), "--model", "manybody",
                                 "--monomer", "O H H", "--max-body", "2", "--n-train", "800", "--degree", "4",
                                 "--morse-a", "1.5", "--ridge", "1e-8", "--json", "--quiet"]))
    mb = d["many_body"]
    assert mb["fragment_energies"] is True and mb["target"] == "nbody" and "E_fragments" in mb["how"]
    assert set(mb["test_rmse_kcal_mol"]) == {"1", "2", "2_within_10_kcal_mol", "total"}
    api = ManyBodyModel(monomer="O H H", max_body=2, degrees=(4, 4), morse_a=1.5, ridge=1e-8)
    api.fit(load_clusters(train).first(800))
    te = load_clusters(test)
    rep = api.evaluate_bodies(te)
    kcal = units.energy_factor("kcal/mol", "eV")
    assert d["test"]["energy_rmse_meV"] == pytest.approx(rep["total"]["energy_rmse_meV"], rel=1e-9)
    assert mb["test_rmse_kcal_mol"]["2"] == pytest.approx(rep["2"]["energy_rmse_meV"] / 1000 / kcal, rel=1e-9)
    eps = te.body_energies()[(0, 1)]
    low = eps <= eps.min() + 10 * kcal
    pred = api.predict_terms(te.R)[2][1][:, 0]
    expect = np.sqrt(np.mean((pred[low] - eps[low]) ** 2)) / kcal
    assert mb["test_rmse_kcal_mol"]["2_within_10_kcal_mol"] == pytest.approx(expect, rel=1e-9)
    assert mb["test_n"]["2_within_10_kcal_mol"] == int(low.sum())


# --------------------------------------------------------------------- plots
def test_plot_ticks_are_round_numbers():
    from pesfit.plots import _log_ticks, _round_levels

    assert _log_ticks(0.6, 35) == [1, 2, 5, 10, 20]
    assert _log_ticks(217, 1150) == [500, 1000]
    assert _log_ticks(0.01, 1e5) == [0.01, 0.1, 1, 10, 100, 1000, 10000, 100000]  # one label per decade
    levels = _round_levels(-0.0024, 1.1203)
    step = levels[1] - levels[0]
    assert np.allclose(levels / step, np.round(levels / step)) and step in (0.05, 0.1)
    assert levels[0] <= -0.0024 and levels[-1] <= 1.1203 + 1e-12


def test_plot_cut_without_data_does_not_count_training_points(tmp_path, small_model, capsys):
    out = _run(capsys, ["plot-cut", str(small_model), "--coordinate", "r(0,1)", "--range", "0.7", "1.3",
                        "--points", "11", "--out", str(tmp_path / "cut.png")])
    assert "lowest" in out and "training points" not in out and (tmp_path / "cut.png").is_file()
