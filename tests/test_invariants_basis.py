"""Invariance, gradients, relative and fundamental invariants, persistence."""
import json

import numpy as np
import pytest

from invariants import (Basis, Character, DistanceTransform, PermutationGroup, fundamental_basis, pip_basis,
                        relative_basis)
from invariants._reference import reference_jacobian, reference_values
from invariants.molien import molien_series

CASES = [("A3", 5), ("A2B", 5), ("A2BC", 4), ("A3B", 5), ("A2B2", 4), ("A4B", 5), ("A5B", 4)]


def _geometries(n_atoms, n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(scale=1.2, size=(n, n_atoms, 3))


def _permute(R, perm):
    out = np.empty_like(R)
    out[:, list(perm)] = R
    return out


@pytest.fixture(scope="module", params=CASES, ids=[f"{f}-d{d}" for f, d in CASES])
def basis(request):
    formula, degree = request.param
    return pip_basis(PermutationGroup.from_formula(formula), degree)


def test_program_matches_reference(basis):
    X = np.random.default_rng(2).uniform(0.1, 0.9, size=(30, basis.n_variables))
    fast = basis.evaluate(X)
    ref = reference_values(basis, X)
    assert np.allclose(fast, ref, rtol=1e-11, atol=0)


def test_invariance_under_every_element(basis):
    t = DistanceTransform("morse", 1.5)
    R = _geometries(basis.group.n_atoms, 10)
    p = basis.cartesian_values(R, t)
    for perm in basis.group.elements():
        q = basis.cartesian_values(_permute(R, perm), t)
        assert np.max(np.abs(q - p) / np.abs(p)) <= 1e-12, perm


def test_jacobian_matches_reference_and_adjoint(basis):
    X = np.random.default_rng(3).uniform(0.1, 0.9, size=(5, basis.n_variables))
    vals, jac = basis.jacobian(X)
    assert np.allclose(jac, reference_jacobian(basis, X), rtol=1e-10, atol=1e-13)
    c = np.random.default_rng(4).normal(size=basis.n_basis)
    e, g = basis.pullback(X, c)
    assert np.allclose(e, vals @ c, rtol=1e-12)
    forward = np.einsum("njk,j->nk", jac, c)
    assert np.max(np.abs(g - forward)) <= 1e-12 * np.max(np.abs(forward))


@pytest.mark.parametrize("kind,param", [("morse", 1.3), ("inverse", 1.0), ("reciprocal", 1.1)])
def test_cartesian_gradient_finite_differences(basis, kind, param):
    t = DistanceTransform(kind, param)
    R = _geometries(basis.group.n_atoms, 3, seed=5) + 0.0
    c = np.random.default_rng(6).normal(size=basis.n_basis)
    e, g = basis.cartesian_pullback(R, t, c)
    h = 1e-5
    fd = np.zeros_like(R)
    for a in range(R.shape[1]):
        for x in range(3):
            Rp, Rm = R.copy(), R.copy()
            Rp[:, a, x] += h
            Rm[:, a, x] -= h
            fd[:, a, x] = (basis.cartesian_pullback(Rp, t, c, gradient=False)
                           - basis.cartesian_pullback(Rm, t, c, gradient=False)) / (2 * h)
    assert np.max(np.abs(fd - g)) <= 1e-6 * np.max(np.abs(g))


def test_persistence_byte_identical(tmp_path, basis):
    f1, f2 = tmp_path / "a.json", tmp_path / "b.json"
    basis.save(f1)
    again = pip_basis(basis.group, basis.max_degree)
    again.save(f2)
    assert f1.read_bytes() == f2.read_bytes()
    loaded = Basis.load(f1)
    X = np.random.default_rng(7).uniform(0.1, 0.9, size=(4, basis.n_variables))
    assert np.array_equal(loaded.evaluate(X), basis.evaluate(X))
    assert loaded.to_json() == basis.to_json()


def test_load_rejects_bad_files(tmp_path):
    b = pip_basis(PermutationGroup.from_formula("A2B"), 3)
    d = b.to_dict()
    with pytest.raises(ValueError, match="format_version"):
        Basis.from_dict({**d, "format_version": 99})
    with pytest.raises(ValueError, match="lacks fields"):
        Basis.from_dict({k: v for k, v in d.items() if k != "program"})
    bad = json.loads(json.dumps(d))
    bad["program"]["a"][-1] = 10_000
    with pytest.raises(ValueError, match="earlier nodes"):
        Basis.from_dict(bad)
    bad = json.loads(json.dumps(d))
    bad["degrees"] = bad["degrees"][:-1]
    with pytest.raises(ValueError):
        Basis.from_dict(bad)
    p = tmp_path / "x.json"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Basis.load(p)


def test_filters_purify_and_require():
    g = PermutationGroup.from_formula("A3B")
    # variables touching atom 0 (the B atom is the last one here: A A A B)
    b_pairs = [(0, 3), (1, 3), (2, 3)]
    pure = pip_basis(g, 4, purify=[b_pairs])
    t = DistanceTransform("morse", 1.0)
    R = _geometries(4, 3, seed=9)
    far = R.copy()
    far[:, 3] += 200.0  # pull the B atom away: every B-containing variable -> 0
    p = pure.cartesian_values(far, t)
    assert np.max(np.abs(p)) < 1e-30
    full = pip_basis(g, 4)
    assert pure.n_basis < full.n_basis
    req = pip_basis(g, 4, require=[(0, 1)])  # an A-A distance
    without_aa = [i for i in range(full.n_basis) if full.representatives[i][[0, 1, 3]].sum() == 0]
    assert req.n_basis == full.n_basis - len(without_aa)
    capped = pip_basis(g, 4, max_exponent=1)
    assert capped.representatives.max() == 1


@pytest.mark.parametrize("formula,expected", [
    ("A3", [1, 1, 1]), ("A2B", [2, 1]), ("A2B2", [3, 3, 1]), ("A3B", [2, 3, 4]), ("A4", [1, 2, 3, 2, 1]),
    ("A2B2C", [5, 7, 4]), ("A3B2", [3, 5, 8, 7, 2, 1]), ("A4B", [2, 4, 8, 10, 7]),
])
def test_fundamental_invariant_counts(formula, expected):
    fi = fundamental_basis(PermutationGroup.from_formula(formula), len(expected) + 1)
    assert fi.per_degree[1:] == expected + [0]


def _rank_mod_p(M, p=2_147_483_647):
    from invariants.fundamental import rref_pivots_mod_p
    return len(rref_pivots_mod_p(M, p))


def _products_at_points(fi, degree, values, exclude=None):
    """Values of every product of generators of total degree ``degree`` (mod p)."""
    p = 2_147_483_647
    gens = [(int(d), values[:, i]) for i, d in enumerate(fi.degrees) if i != exclude]
    rows = []

    def rec(start, deg, acc):
        if deg == degree:
            rows.append(acc.copy())
            return
        for i in range(start, len(gens)):
            d, v = gens[i]
            if deg + d <= degree:
                rec(i, deg + d, (acc * v) % p)

    rec(0, 0, np.ones(values.shape[0], dtype=np.int64))
    return np.array(rows) if rows else np.zeros((0, values.shape[0]), dtype=np.int64)


@pytest.mark.parametrize("formula,degree", [("A3B", 4), ("A2B2", 4), ("A4", 5)])
def test_fundamental_invariants_complete_and_minimal(formula, degree):
    """Independent check by evaluation at random points of GF(p)."""
    p = 2_147_483_647
    group = PermutationGroup.from_formula(formula)
    fi = fundamental_basis(group, degree)
    molien = molien_series(group, degree)
    rng = np.random.default_rng(11)
    pts = rng.integers(1, p, size=(max(molien) + 20, group.n_variables))
    vals = np.zeros((len(pts), fi.n_basis), dtype=np.int64)
    for j in range(fi.n_basis):
        exps, coefs = fi.polynomial_terms(j)
        for e, c in zip(exps, coefs):
            term = np.full(len(pts), int(c) % p, dtype=np.int64)
            for k in np.flatnonzero(e):
                for _ in range(int(e[k])):
                    term = (term * pts[:, k]) % p
            vals[:, j] = (vals[:, j] + term) % p
    for d in range(1, degree + 1):
        assert _rank_mod_p(_products_at_points(fi, d, vals)) == molien[d], f"incomplete at degree {d}"
    for i in range(fi.n_basis):
        d = int(fi.degrees[i])
        assert _rank_mod_p(_products_at_points(fi, d, vals, exclude=i)) == molien[d] - 1, f"generator {i} redundant"


def test_fundamental_certificate():
    fi = fundamental_basis(PermutationGroup.from_formula("A4B"), 6)
    cert = fi.certificate
    for m, ranks, new in zip(cert["molien"], cert["decomposable_rank"], cert["new_generators"]):
        assert all(r + new == m for r in ranks)


@pytest.mark.parametrize("formula,degree", [("A3B", 5), ("A2B2", 4), ("A4B", 4)])
def test_relative_invariants_change_by_character(formula, degree):
    group = PermutationGroup.from_formula(formula)
    char = Character(group, "sign")
    rel = relative_basis(group, degree, char)
    assert rel.per_degree == rel.molien  # every non-vanishing signed orbit is independent
    t = DistanceTransform("morse", 1.0)
    R = _geometries(group.n_atoms, 5, seed=12)
    p = rel.cartesian_values(R, t)
    for perm in group.elements():
        q = rel.cartesian_values(_permute(R, perm), t)
        assert np.max(np.abs(q - char(perm) * p)) <= 1e-12 * np.max(np.abs(p)), perm


def test_custom_character_must_be_homomorphism():
    group = PermutationGroup.from_formula("A3")
    with pytest.raises(ValueError, match="homomorphism"):
        Character(group, [1, -1]).table()
    with pytest.raises(ValueError, match="one value per generator"):
        Character(group, [1])


@pytest.mark.parametrize("n", [8, 13, 37])
def test_lane_kernels_match_scalar_kernels(basis, n):
    from invariants import evaluate as ev

    rng = np.random.default_rng(n)
    X = rng.uniform(0.1, 0.9, size=(n, basis.n_variables))
    W = rng.normal(size=(n, basis.n_basis))
    tables = ev._tables(basis.program)
    for w in (W, W[:1]):
        e1, g1 = ev._pullback_lanes(X, w, True, *tables)
        e0, g0 = ev._pullback_batch(X, w, True, *tables)
        assert np.array_equal(e1, e0) and np.array_equal(g1, g0)
    t = DistanceTransform("morse", 1.2)
    R = _geometries(basis.group.n_atoms, n, seed=n)
    args = ev._cartesian_args(R, t, basis.n_variables)
    e1, g1 = ev._cartesian_pullback_lanes(R, W, True, *args[1:], *tables)
    e0, g0 = ev._cartesian_pullback(R, W, True, *args[1:], *tables)
    assert np.allclose(e1, e0, rtol=1e-14, atol=0) and np.allclose(g1, g0, rtol=1e-12, atol=1e-14)
