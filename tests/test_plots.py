"""Figures (Agg, no display): fit quality, cuts, learning curves; coordinate parsing and rigid scans."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pesfit.cli import main
from pesfit.datasets import shipped_dataset, shipped_path
from pesfit.plots import (DPI, coordinate_value, energy_cut, near_cut, parse_coordinate, plot_fit,
                          set_coordinate)

SYMBOLS = ["C", "O", "H", "H"]
MIN_BYTES = 10_000  # a real figure, not an empty canvas


@pytest.fixture(scope="module")
def model(h2co_small_model):
    return h2co_small_model


@pytest.fixture(scope="module")
def model_file(h2co_small_model_file):
    return h2co_small_model_file


@pytest.fixture(scope="module")
def test_data():
    return shipped_dataset("h2co", "test").first(400)


def png_size(path):
    from PIL import Image

    with Image.open(path) as im:
        return im.format, im.size


def test_plot_fit_files(model, test_data, tmp_path):
    res = plot_fit(model, test_data, tmp_path, prefix="h2co_")
    names = ["energy_correlation", "error_vs_energy", "error_histogram", "force_correlation"]
    for name in names:
        assert res[name] == tmp_path / f"h2co_{name}.png"
        assert res[name].stat().st_size > MIN_BYTES
    assert png_size(res["energy_correlation"]) == ("PNG", (int(5.0 * DPI), int(4.2 * DPI)))
    assert res["energy_rmse_meV"] == pytest.approx(model.evaluate(test_data)["energy_rmse_meV"], rel=1e-9)
    no_forces = plot_fit(model, test_data._replace(F=None), tmp_path / "nf")
    assert "force_correlation" not in no_forces and no_forces["force_rmse_meV_per_A"] is None


def test_parse_coordinate():
    assert parse_coordinate("r(C,O)", SYMBOLS).atoms == (0, 1)
    assert parse_coordinate(" a( H1 ,C, O ) ", SYMBOLS).atoms == (2, 0, 1)
    assert parse_coordinate("d(H1,C,O,3)", SYMBOLS).atoms == (2, 0, 1, 3)
    assert parse_coordinate("r(C,O)", SYMBOLS).label == "r(C,O) (Å)"
    for spec, match in [("r(C,H)", "ambiguous.*H1, H2"), ("r(C,N)", "no atom 'N'"), ("a(C,O)", "takes 3 atoms"),
                        ("x(C,O)", "cannot read"), ("r(H3,C)", "2 H atoms"), ("r(C,C)", "same atom"),
                        ("r(0,9)", "out of range")]:
        with pytest.raises(ValueError, match=match):
            parse_coordinate(spec, SYMBOLS)


def test_set_coordinate_rigid_scans(model):
    from invariants import pair_distances

    R = model.reference_geometry_
    r0 = pair_distances(R[None])[0]  # pairs (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)
    co = parse_coordinate("r(C,O)", SYMBOLS)
    R1 = set_coordinate(SYMBOLS, R, co, 1.4)
    r1 = pair_distances(R1[None])[0]
    assert coordinate_value(R1, co) == pytest.approx(1.4)
    np.testing.assert_allclose(r1[[1, 2, 5]], r0[[1, 2, 5]], atol=1e-12)  # CH2 untouched; only O moves
    ch = parse_coordinate("r(C,H2)", SYMBOLS)
    R2 = set_coordinate(SYMBOLS, R, ch, 1.3)
    np.testing.assert_allclose(np.delete(R2, 3, axis=0), np.delete(R, 3, axis=0), atol=1e-12)
    hco = parse_coordinate("a(H1,C,O)", SYMBOLS)
    R3 = set_coordinate(SYMBOLS, R, hco, 100.0)
    assert coordinate_value(R3, hco) == pytest.approx(100.0)
    assert coordinate_value(R3, co) == pytest.approx(coordinate_value(R, co))
    tor = parse_coordinate("d(H1,C,O,H2)", SYMBOLS)
    R4 = set_coordinate(SYMBOLS, R, tor, 150.0)
    assert coordinate_value(R4, tor) == pytest.approx(150.0)


def test_energy_cut_and_near_points(model):
    R = model.reference_geometry_
    co = parse_coordinate("r(C,O)", SYMBOLS)
    values = np.linspace(1.05, 1.45, 21)
    E, G = energy_cut(model, R, co, values)
    assert E.shape == (21,) and G.shape == (21, 4, 3)
    assert 1.15 < values[np.argmin(E)] < 1.27
    hcoh = parse_coordinate("a(H1,C,H2)", SYMBOLS)
    E2, _ = energy_cut(model, R, co, values[:5], hcoh, [100, 110, 120])
    assert E2.shape == (5, 3)
    train = shipped_dataset("h2co", "train").first(1000)
    idx, q, dev = near_cut(model, train, R, co, tol=0.05)
    assert len(idx) > 5 and np.all(dev < 0.05) and np.all(np.diff(dev) >= 0)
    # the reference structure itself lies on the cut
    assert idx[0] == int(np.argmin(train.E)) and dev[0] < 1e-9


def test_cli_plot(model_file, tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["plot", str(model_file), str(shipped_path("h2co", "test")), "--out", str(out), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    for name in ("energy_correlation", "error_vs_energy", "error_histogram", "force_correlation"):
        assert (out / f"{name}.png").stat().st_size > MIN_BYTES and d[name] == str(out / f"{name}.png")
    assert json.loads((out / "plot_summary.json").read_text())["command"] == "pesfit plot"


def test_cli_plot_cut_1d_2d(model_file, tmp_path, capsys):
    argv = ["plot-cut", str(model_file), "--coordinate", "r(C,O)", "--range", "1.0", "1.6", "--points", "31",
            "--data", str(shipped_path("h2co", "test")), "--out", str(tmp_path), "--json"]
    assert main(argv) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["path"] == str(tmp_path / "cut_r_C_O.png") and len(d["energies_eV"]) == 31 and d["n_near"] > 0
    assert (tmp_path / "cut_r_C_O.png").stat().st_size > MIN_BYTES
    two = tmp_path / "map.png"
    assert main(["plot-cut", str(model_file), "--coordinate", "r(C,O)", "--range", "1.1", "1.4",
                 "--coordinate2", "a(H1,C,H2)", "--range2", "100", "130", "--points", "15", "--out", str(two),
                 "--quiet"]) == 0
    assert "lowest" in capsys.readouterr().out
    assert two.stat().st_size > MIN_BYTES and png_size(two)[0] == "PNG"
    assert main(["plot-cut", str(model_file), "--coordinate", "r(C,H)", "--range", "1", "2"]) == 2
    assert "ambiguous" in capsys.readouterr().err


def test_cli_learning_curve(tmp_path, capsys):
    argv = ["learning-curve", "--train", str(shipped_path("h2co", "train")), "--test",
            str(shipped_path("h2co", "test")), "--sizes", "100,300", "--degree", "3", "--morse-a", "1.0",
            "--ridge", "1e-10", "--out", str(tmp_path), "--json", "--quiet"]
    assert main(argv) == 0
    d = json.loads(capsys.readouterr().out)
    assert [r["n_train"] for r in d["rows"]] == [100, 300]
    assert all(r["test_rmse_meV"] > 0 for r in d["rows"])
    assert (tmp_path / "learning_curve.png").stat().st_size > MIN_BYTES
    assert json.loads((tmp_path / "learning_curve.json").read_text())["rows"] == d["rows"]
    assert main(["learning-curve", "--train", "x.npz", "--test", "y.npz", "--sizes", "a,b"]) == 2
