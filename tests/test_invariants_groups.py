"""Groups, Molien series and PIP counts."""
import numpy as np
import pytest

from invariants import PermutationGroup, molien_series, pip_basis
from invariants.molien import cumulative
from invariants.monomials import MonomialOrbits

REFERENCE_CUMULATIVE = {
    "A4B": [1, 3, 10, 30, 83, 208, 495, 1101, 2327],
    "A5B": [1, 3, 10, 32, 101, 299, 849, 2290, 5901],
    "A4B2": [1, 4, 16, 57, 194, 609, 1810, 5056, 13375],
    "A2BC": [1, 5, 18, 50, 120, 256, 502, 918, 1589],
}


@pytest.mark.parametrize("formula", sorted(REFERENCE_CUMULATIVE))
def test_molien_matches_reference(formula):
    group = PermutationGroup.from_formula(formula)
    assert cumulative(molien_series(group, 8)) == REFERENCE_CUMULATIVE[formula]


@pytest.mark.parametrize("formula,degree", [("A3", 6), ("A2B", 6), ("A2BC", 5), ("A3B", 6), ("A2B2", 6),
                                            ("A4B", 6), ("A3B2", 5), ("A4B2", 4), ("A5B", 4), ("A4BC", 4)])
def test_orbit_counts_equal_molien(formula, degree):
    group = PermutationGroup.from_formula(formula)
    orbits = MonomialOrbits(group, degree)
    assert [orbits.n_orbits(k) for k in range(degree + 1)] == molien_series(group, degree)


@pytest.mark.parametrize("formula,degree", [("A4B", 6), ("A2BC", 5), ("A5B", 5)])
def test_pip_basis_counts(formula, degree):
    basis = pip_basis(PermutationGroup.from_formula(formula), degree)
    assert cumulative(basis.per_degree) == REFERENCE_CUMULATIVE[formula][: degree + 1]


def test_group_orders_and_elements():
    g = PermutationGroup.from_symbols(["O", "H", "H", "H"])
    assert g.order == 6 and g.n_variables == 6
    elements = list(g.elements())
    assert len(set(elements)) == 6 and elements[0] == (0, 1, 2, 3)
    assert all(e[0] == 0 for e in elements)
    assert PermutationGroup.from_formula("A4B2").order == 48
    assert PermutationGroup.from_formula("A5B").order == 120
    classes = g.cycle_type_classes("atoms")
    assert dict(classes) == {(1, 1, 1, 1): 1, (2, 1, 1): 3, (3, 1): 2}


def test_explicit_generators_match_blocks():
    blocks = PermutationGroup.from_symbols("C H H H H")
    gens = PermutationGroup.from_symbols("C H H H H", generators=[[0, 2, 1, 3, 4], [0, 2, 3, 4, 1]])
    assert gens.order == blocks.order == 24
    assert molien_series(gens, 6) == molien_series(blocks, 6)


def test_restricted_blocks():
    # H atoms {2,3} and {4,5} permutable separately (two fragments)
    g = PermutationGroup.from_symbols("C C H H H H", blocks=[[2, 3], [4, 5]])
    assert g.order == 4
    assert g.contains((0, 1, 3, 2, 4, 5)) and not g.contains((0, 1, 4, 3, 2, 5))


def test_variable_permutation_consistent_with_distances():
    g = PermutationGroup.from_symbols("O H H H")
    rng = np.random.default_rng(1)
    R = rng.normal(size=(4, 3))
    from invariants import pair_distances
    r = pair_distances(R[None])[0]
    for perm in g.elements():
        Rp = np.empty_like(R)
        Rp[list(perm)] = R  # atom i moves to position perm[i]
        vp = g.variable_permutation(perm)
        rp = np.empty_like(r)
        rp[vp] = r
        assert np.allclose(pair_distances(Rp[None])[0], rp)


@pytest.mark.parametrize("kwargs,match", [
    (dict(symbols=["H"]), "at least 2 atoms"),
    (dict(symbols=[]), "at least 2 atoms"),
    (dict(symbols="O H H", generators=[[1, 0, 2]]), "only like atoms"),
    (dict(symbols="O H H", generators=[[0, 1, 1]]), "not a permutation"),
    (dict(symbols="O H H", blocks=[[0, 1]]), "mixes atoms"),
    (dict(symbols="O H H", blocks=[[1, 5]]), "outside"),
])
def test_bad_groups(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PermutationGroup.from_symbols(**kwargs)


def test_bad_degree_and_size_limit():
    g = PermutationGroup.from_formula("A4B")
    with pytest.raises(ValueError, match="degree must be an integer >= 1"):
        pip_basis(g, 0)
    with pytest.raises(ValueError, match="Molien series"):
        pip_basis(g, 8, size_limit=1000)
    assert pip_basis(g, 3, size_limit=10, force=True).n_basis == 30


def test_formula_parse_error():
    with pytest.raises(ValueError, match="cannot parse formula"):
        PermutationGroup.from_formula("a4b")
