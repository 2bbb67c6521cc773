"""Valence variables: Morse bond variables and bond-angle cosines at a central atom."""

import numpy as np
import pytest

from invariants import DistanceTransform, PermutationGroup, pair_distances, pip_basis
from invariants.transforms import transformed_variables, valence_variables

RNG = np.random.default_rng(11)
R_NH3 = RNG.normal(size=(6, 4, 3)) + np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1.0]])


def test_values_by_hand():
    # N at the origin, H atoms on the axes at 1, 2 and 1.5 A: right angles, cos = 0
    R = np.array([[[0, 0, 0], [1.0, 0, 0], [0, 2.0, 0], [0, 0, 1.5]]])
    X = valence_variables(R, DistanceTransform("valence", 1.2, 0))
    # pairs (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)
    np.testing.assert_allclose(X[0, :3], np.exp(-np.array([1.0, 2.0, 1.5]) / 1.2), rtol=1e-15)
    np.testing.assert_allclose(X[0, 3:], 0.5, rtol=0, atol=1e-15)
    R[0, 2] = [-2.0, 0, 0]           # H1-N-H2 now 180 degrees: cos = -1
    assert valence_variables(R, DistanceTransform("valence", 1.2, 0))[0, 3] == pytest.approx(-0.5, abs=1e-15)


@pytest.mark.parametrize("center", [0, 2])
def test_gradient_matches_finite_differences(center):
    t = DistanceTransform("valence", 1.1, center)
    X, J = valence_variables(R_NH3, t, gradient=True)
    h = 1e-6
    for a in range(4):
        for c in range(3):
            Rp, Rm = R_NH3.copy(), R_NH3.copy()
            Rp[:, a, c] += h
            Rm[:, a, c] -= h
            fd = (valence_variables(Rp, t) - valence_variables(Rm, t)) / (2 * h)
            assert np.max(np.abs(fd - J[:, :, a, c])) < 1e-8


def test_basis_through_valence_variables_is_invariant_and_consistent():
    group = PermutationGroup.from_symbols(["N", "H", "H", "H"])
    b = pip_basis(group, 4)
    t = DistanceTransform("valence", 1.4, 0)
    P = b.cartesian_values(R_NH3, t)
    for perm in ([0, 2, 1, 3], [0, 2, 3, 1], [0, 3, 1, 2]):
        np.testing.assert_allclose(b.cartesian_values(R_NH3[:, perm], t), P, rtol=1e-12, atol=1e-12)
    vals, dP = b.cartesian_jacobian(R_NH3, t)
    np.testing.assert_allclose(vals, P, rtol=1e-14)
    W = RNG.normal(size=b.n_basis)
    E, G = b.cartesian_pullback(R_NH3, t, W)
    np.testing.assert_allclose(E, P @ W, rtol=1e-12)
    np.testing.assert_allclose(G, np.einsum("b,nbad->nad", W, dP), rtol=1e-10, atol=1e-12)
    assert np.allclose(b.cartesian_pullback(R_NH3, t, W, gradient=False), E, rtol=1e-14)
    h = 1e-6
    Rp, Rm = R_NH3.copy(), R_NH3.copy()
    Rp[:, 2, 1] += h
    Rm[:, 2, 1] -= h
    fd = (b.cartesian_pullback(Rp, t, W, gradient=False) - b.cartesian_pullback(Rm, t, W, gradient=False)) / (2 * h)
    assert np.max(np.abs(fd - G[:, 2, 1])) < 1e-6 * max(1.0, np.max(np.abs(G)))


def test_serialisation_and_errors():
    t = DistanceTransform("valence", 1.4, 2)
    assert DistanceTransform.from_dict(t.to_dict()) == t and t.to_dict()["center"] == 2
    np.testing.assert_array_equal(transformed_variables(R_NH3, DistanceTransform("morse", 1.4)),
                                  np.exp(-pair_distances(R_NH3) / 1.4))
    with pytest.raises(ValueError, match="needs the index of its central atom"):
        DistanceTransform("valence", 1.4)
    with pytest.raises(ValueError, match="only the valence transform has a central atom"):
        DistanceTransform("morse", 1.4, 0)
    with pytest.raises(ValueError, match="not elementwise"):
        t(pair_distances(R_NH3))
    with pytest.raises(ValueError, match="not elementwise"):
        t.code                      # the compiled elementwise kernels must never see it
    with pytest.raises(ValueError, match="central atom 5 is not among the 4 atoms"):
        valence_variables(R_NH3, DistanceTransform("valence", 1.4, 5))
    with pytest.raises(ValueError, match="transform description lacks field 'center'"):
        DistanceTransform.from_dict({"kind": "valence", "parameter": 1.0})
