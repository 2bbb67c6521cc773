"""Region labels (compact / separated fragments) and the per-region errors of reports."""

import math

import numpy as np
import pytest

from pesfit.metrics import error_report, format_report
from pesfit.regions import fragment_counts, region_labels

H2_PLUS_H = [[0.0, 0.0, 0.0], [0.74, 0.0, 0.0], [3.0, 0.0, 0.0]]
LINEAR_H3_TS = [[0.0, 0.0, 0.0], [0.93 * 0.99, 0.0, 0.0], [2 * 0.93 * 0.99, 0.0, 0.0]]   # bonds just inside
THREE_ATOMS = [[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [4.0, 0.0, 0.0]]


def test_fragment_counts_of_hand_made_structures():
    R = np.array([H2_PLUS_H, LINEAR_H3_TS, THREE_ATOMS])
    assert list(fragment_counts([1, 1, 1], R)) == [2, 1, 3]
    assert region_labels([1, 1, 1], R) == ["2 fragments", "compact", "3 fragments"]
    # the cut-off is scale x (sum of covalent radii): 0.93 A for H-H at the default 1.5
    assert list(fragment_counts([1, 1, 1], R, scale=1.3)) == [2, 3, 3]   # 0.806 A: the stretched bonds break


def test_fragment_counts_use_each_pair_of_elements():
    # OH + H2 with the H2 1.6 A from O: O-H bonded (0.97 < 1.455 A), H2 bonded, O...H2 not
    R = np.array([[[0.0, 0.0, 0.0], [0.97, 0.0, 0.0], [-1.6, 0.0, 0.0], [-2.34, 0.0, 0.0]]])
    assert region_labels([8, 1, 1, 1], R) == ["2 fragments"]
    R[0, 2:, 0] = [-1.2, -1.94]       # now the O-H distance 1.2 A counts as a bond
    assert region_labels([8, 1, 1, 1], R) == ["compact"]


def test_fragment_counts_bad_input():
    with pytest.raises(ValueError, match=r"coordinates must have shape \(n_structures, 3, 3\)"):
        fragment_counts([1, 1, 1], np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match="scale must be > 0"):
        fragment_counts([1, 1, 1], np.array([H2_PLUS_H]), scale=0.0)


def test_report_by_region_hand_computed():
    E_ref = np.array([0.0, 0.5, 1.0, 2.0])
    E_pred = E_ref + np.array([1.0, -3.0, 2.0, 0.0]) * 1e-3
    r = error_report(E_pred, E_ref, regions=["2 fragments", "compact", "2 fragments", "10 fragments"])
    assert [x["region"] for x in r["regions"]] == ["compact", "2 fragments", "10 fragments"]
    assert [x["n"] for x in r["regions"]] == [1, 2, 1]
    assert r["regions"][0]["energy_rmse_meV"] == pytest.approx(3.0, rel=1e-9)
    assert r["regions"][1]["energy_rmse_meV"] == pytest.approx(math.sqrt(2.5), rel=1e-9)
    assert r["regions"][1]["energy_mae_meV"] == pytest.approx(1.5, rel=1e-9)
    text = format_report(r)
    assert "by region:" in text and "2 fragments  n=2" in text
    assert "regions" not in error_report(E_pred, E_ref)
    with pytest.raises(ValueError, match="regions has 3 labels but there are 4 structures"):
        error_report(E_pred, E_ref, regions=["compact"] * 3)


def test_regions_of_several_states_count_energies_like_the_bands():
    E_ref = np.array([[0.0, 1.5], [0.3, 2.5], [0.1, 2.0]])
    E_pred = E_ref + np.array([[1.0, 0.0], [-2.0, -4.0], [0.5, 3.0]]) * 1e-3
    r = error_report(E_pred, E_ref, regions=["compact", "2 fragments", "compact"])
    compact, apart = r["regions"]
    assert (compact["region"], compact["n"], apart["n"]) == ("compact", 4, 2)
    assert compact["energy_rmse_meV"] == pytest.approx(math.sqrt((1 + 0 + 0.25 + 9) / 4), rel=1e-9)
    assert sum(b["n"] for b in r["bands"]) == 6
