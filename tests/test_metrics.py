"""Tests for pesfit.metrics against hand-computed errors."""

import json
import math

import numpy as np
import pytest

from pesfit.metrics import error_report, format_report

MEV_TO_CM = 1e-3 / 1.2398419843320026e-4  # 8.0655 cm-1 per meV

# reference energies [eV] and errors [meV]: bands at 0-0.5, 0.5-1, 1-2, >2 eV
E_REF = np.array([0.0, 0.3, 0.5, 1.5, 2.5])
ERR_MEV = np.array([1.0, -2.0, 3.0, 0.0, -4.0])
E_PRED = E_REF + ERR_MEV * 1e-3


def test_energy_statistics_hand_computed():
    r = error_report(E_PRED, E_REF)
    # RMSE = sqrt((1 + 4 + 9 + 0 + 16) / 5) = sqrt(6); MAE = 10 / 5 = 2; max = 4
    assert r["n_energies"] == 5
    assert r["energy_rmse_meV"] == pytest.approx(math.sqrt(6.0), rel=1e-9)
    assert r["energy_mae_meV"] == pytest.approx(2.0, rel=1e-9)
    assert r["energy_max_meV"] == pytest.approx(4.0, rel=1e-9)
    assert r["energy_rmse_cm"] == pytest.approx(math.sqrt(6.0) * MEV_TO_CM, rel=1e-9)
    assert r["energy_mae_cm"] == pytest.approx(2.0 * 8.0655, rel=1e-5)
    assert "force_rmse_meV_per_A" not in r


def test_bands_hand_computed():
    r = error_report(E_PRED, E_REF)
    bands = r["bands"]
    assert [b["range_eV"] for b in bands] == [[0.0, 0.5], [0.5, 1.0], [1.0, 2.0], [2.0, None]]
    # 0.5 eV sits in the second band (lower edge inclusive)
    assert [b["n"] for b in bands] == [2, 1, 1, 1]
    assert bands[0]["energy_rmse_meV"] == pytest.approx(math.sqrt(2.5), rel=1e-9)  # errors 1, -2
    assert bands[0]["energy_mae_meV"] == pytest.approx(1.5, rel=1e-9)
    assert bands[1]["energy_rmse_meV"] == pytest.approx(3.0, rel=1e-9)
    assert bands[2]["energy_rmse_meV"] == pytest.approx(0.0, abs=1e-9)
    assert bands[3]["energy_mae_meV"] == pytest.approx(4.0, rel=1e-9)


def test_bands_relative_to_e_min_and_empty_bands():
    # shifting everything by -10 eV with default e_min changes nothing
    r = error_report(E_PRED - 10.0, E_REF - 10.0)
    assert [b["n"] for b in r["bands"]] == [2, 1, 1, 1]
    assert r["e_min_eV"] == pytest.approx(-10.0)
    # explicit e_min = -1 eV puts every energy at >= 1 eV: first two bands empty
    r = error_report(E_PRED, E_REF, e_min=-1.0)
    # relative energies 1.0, 1.3, 1.5 | 2.5, 3.5 eV
    assert [b["n"] for b in r["bands"]] == [0, 0, 3, 2]
    assert r["bands"][0]["energy_rmse_meV"] is None and r["bands"][0]["energy_mae_meV"] is None
    assert r["bands"][2]["energy_rmse_meV"] == pytest.approx(math.sqrt((1 + 4 + 9) / 3), rel=1e-9)
    assert r["bands"][3]["energy_rmse_meV"] == pytest.approx(math.sqrt((0 + 16) / 2), rel=1e-9)
    # energies below an explicit e_min are in no band
    r = error_report(E_PRED, E_REF, e_min=1.0)
    assert sum(b["n"] for b in r["bands"]) == 2
    # custom edges
    r = error_report(E_PRED, E_REF, bands=(1.0,))
    assert [(b["range_eV"], b["n"]) for b in r["bands"]] == [([0.0, 1.0], 3), ([1.0, None], 2)]


def test_force_statistics_hand_computed():
    F_ref = np.zeros((2, 1, 3))
    F_pred = np.array([[[0.001, 0.0, 0.0]], [[0.0, -0.002, 0.0]]])  # errors 1, -2 meV/Å
    r = error_report(E_PRED[:2], E_REF[:2], F_pred, F_ref)
    assert r["n_force_components"] == 6
    assert r["force_rmse_meV_per_A"] == pytest.approx(math.sqrt(5.0 / 6.0), rel=1e-9)
    assert r["force_mae_meV_per_A"] == pytest.approx(0.5, rel=1e-9)
    assert r["force_max_meV_per_A"] == pytest.approx(2.0, rel=1e-9)


def test_report_is_plain_json():
    F = np.ones((5, 2, 3))
    r = error_report(E_PRED, E_REF, F, F * 1.01, e_min=-1.0, n_largest=2)
    text = json.dumps(r, allow_nan=False)
    assert json.loads(text) == r
    assert all(type(v) in (int, float, list) for v in r.values())
    assert all(type(v) in (int, float) for w in r["largest_energy_errors"] for v in w.values())


def test_multistate_energies_are_pooled():
    E_ref = np.array([[0.0, 1.5], [0.3, 2.5]])
    E_pred = E_ref + np.array([[1.0, 0.0], [-2.0, -4.0]]) * 1e-3
    r = error_report(E_pred, E_ref)
    assert r["n_energies"] == 4
    assert r["energy_mae_meV"] == pytest.approx(7.0 / 4.0, rel=1e-9)
    assert [b["n"] for b in r["bands"]] == [2, 0, 1, 1]


def test_errors():
    with pytest.raises(ValueError, match=r"E_pred has shape \(4,\) but E_ref has shape \(5,\)"):
        error_report(E_PRED[:4], E_REF)
    bad = E_PRED.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="E_pred contains 1 non-finite value.*structure 3"):
        error_report(bad, E_REF)
    with pytest.raises(ValueError, match="both F_pred and F_ref"):
        error_report(E_PRED, E_REF, F_pred=np.zeros((5, 1, 3)))
    with pytest.raises(ValueError, match=r"F_pred has shape \(5, 2, 3\) but F_ref has shape \(5, 1, 3\)"):
        error_report(E_PRED, E_REF, np.zeros((5, 2, 3)), np.zeros((5, 1, 3)))
    with pytest.raises(ValueError, match="bands must be positive and increasing"):
        error_report(E_PRED, E_REF, bands=(1.0, 0.5))


def test_format_report():
    F_ref = np.zeros((5, 1, 3))
    r = error_report(E_PRED, E_REF, F_ref + 0.001, F_ref, e_min=-1.0)
    text = format_report(r, "h2co test set")
    lines = text.splitlines()
    assert lines[0] == "h2co test set"
    assert "RMSE 2.449 meV (19.76 cm-1)" in text  # sqrt(6) meV = 19.76 cm-1
    assert "forces: RMSE 1.000 meV/A" in text
    assert "0-0.5 eV" in text and "> 2 eV" in text
    assert "n=0" in text and "RMSE - meV" in text  # empty band shown without numbers


def test_largest_errors_hand_computed():
    # errors 1, -2, 3, 0, -4 meV: largest |error| first, signed; RMSE of the rest by hand
    r = error_report(E_PRED, E_REF, n_largest=2)
    assert [w["index"] for w in r["largest_energy_errors"]] == [4, 2]
    assert [w["error_meV"] for w in r["largest_energy_errors"]] == pytest.approx([-4.0, 3.0], rel=1e-9)
    assert r["energy_rmse_meV_without_largest"] == pytest.approx(math.sqrt((1 + 4 + 0) / 3), rel=1e-9)
    assert "#4 -4.0, #2 +3.0" in format_report(r)
    # all structures listed: nothing left for the second RMSE
    everything = error_report(E_PRED, E_REF, n_largest=10)
    assert len(everything["largest_energy_errors"]) == 5
    assert everything["energy_rmse_meV_without_largest"] is None
    assert error_report(E_PRED, E_REF, n_largest=0)["energy_rmse_meV_without_largest"] == pytest.approx(
        math.sqrt(6.0), rel=1e-9)
    with pytest.raises(ValueError, match="n_largest must be an integer >= 0"):
        error_report(E_PRED, E_REF, n_largest=-1)


def test_largest_errors_of_several_states_name_the_structure():
    E_ref = np.array([[0.0, 1.5], [0.3, 2.5], [0.1, 2.0]])
    E_pred = E_ref + np.array([[1.0, 0.0], [-2.0, -5.0], [0.5, 3.0]]) * 1e-3
    r = error_report(E_pred, E_ref, n_largest=1)
    assert r["largest_energy_errors"] == [{"index": 1, "error_meV": pytest.approx(-5.0, rel=1e-9)}]
    # the other structures' four energies: 1, 0, 0.5, 3 meV
    assert r["energy_rmse_meV_without_largest"] == pytest.approx(math.sqrt((1 + 0 + 0.25 + 9) / 4), rel=1e-9)


def test_single_energy_and_bad_region_labels():
    r = error_report(1.0, 1.001)      # one structure given as a scalar
    assert r["largest_energy_errors"] == [{"index": 0, "error_meV": pytest.approx(-1.0, rel=1e-9)}]
    assert r["energy_rmse_meV_without_largest"] is None
    assert "RMSE without them - meV" in format_report(r)
    with pytest.raises(ValueError, match="regions must be a sequence of labels"):
        error_report(E_PRED, E_REF, regions="compact")
