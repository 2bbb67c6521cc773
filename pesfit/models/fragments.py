"""Fragmented PIP bases for larger molecules, and the linear model that uses them.

The user lists fragments (atom subsets, possibly overlapping) with a degree
each.  Every fragment ``F`` gets the PIP basis of its own atoms under its
stabiliser ``G_F`` in the molecule's group ``G``; to respect the molecule's
symmetry each fragment function ``O_F(m)`` is summed over the images
``F' = g F`` of the fragment,

    f(m) = sum_{F' = gF} g . O_F(m),

which is ``k_m`` times the molecule's orbit sum ``O_G(m)`` (``k_m`` = number
of images containing the atoms ``m`` touches, for groups of like-atom blocks),
so dividing by ``k_m`` gives exactly the PIP of the whole molecule whose
representative monomial lives inside a fragment.  The union over fragments
is deduplicated (the same orbit reached from two fragments is kept once), and
the result is one :class:`invariants.Basis` on the molecule's distance
variables whose program is the fragment programs replicated per image, so it
evaluates, differentiates, serialises and exports like any PIP basis while
its cost grows with the fragments, not the molecule.
"""
from __future__ import annotations

import time

import numpy as np

from invariants import Basis, DistanceTransform, PermutationGroup, pip_basis
from invariants.program import Program

from ..data import Dataset
from ..molecule import Molecule
from .linear import DEFAULT_RIDGE_GRID, LinearPIPModel, _progress_at
from .lstsq import fold_labels, ridge_path

__all__ = ["fragment_images", "fragment_group", "fragmented_basis", "FragmentedPIPModel"]


def fragment_images(group: PermutationGroup, fragment) -> list[tuple[int, ...]]:
    """Images ``g F`` of a fragment as ordered atom tuples (``img[a]`` = image of ``fragment[a]``).

    One tuple per distinct atom set, found by breadth-first search over the
    generators (so the group is never enumerated).
    """
    start = tuple(int(i) for i in fragment)
    seen = {frozenset(start): start}
    frontier = [start]
    while frontier:
        nxt = []
        for img in frontier:
            for g in group.generators:
                new = tuple(g[i] for i in img)
                key = frozenset(new)
                if key not in seen:
                    seen[key] = new
                    nxt.append(new)
        frontier = nxt
    return list(seen.values())


def fragment_group(group: PermutationGroup, fragment) -> PermutationGroup:
    """Stabiliser of the atom set ``fragment`` in ``group``, acting on the fragment's atoms (local indices)."""
    frag = [int(i) for i in fragment]
    local = {a: k for k, a in enumerate(frag)}
    labels = [group.labels[a] for a in frag]
    if group.blocks is not None:
        blocks = [[local[a] for a in b if a in local] for b in group.blocks]
        return PermutationGroup.from_symbols(labels, blocks=[b for b in blocks if len(b) > 1])
    fset = set(frag)
    gens = set()
    for p in group.elements():
        if {p[a] for a in frag} == fset:
            gens.add(tuple(local[p[a]] for a in frag))
    return PermutationGroup.from_symbols(labels, generators=sorted(gens))


def _variable_map(n_atoms: int, img) -> np.ndarray:
    """Full-molecule variable index of each fragment variable (pairs a<b of the fragment) under image ``img``."""
    out = []
    k = len(img)
    for a in range(k):
        for b in range(a + 1, k):
            i, j = sorted((img[a], img[b]))
            out.append(i * n_atoms - i * (i + 1) // 2 + (j - i - 1))
    return np.asarray(out, dtype=np.int64)


def _support_atoms(exps: np.ndarray, k: int) -> set:
    pairs = [(a, b) for a in range(k) for b in range(a + 1, k)]
    return {x for v in np.flatnonzero(exps) for x in pairs[v]}


def _orbit_size(group: PermutationGroup, mono: np.ndarray) -> int:
    perms = group._cache.get("all_variable_perms")
    if perms is None:
        perms = np.array([group.variable_permutation(p) for p in group.elements()])
        group._cache["all_variable_perms"] = perms
    images = np.zeros((len(perms), len(mono)), dtype=np.int64)
    np.put_along_axis(images, perms, np.broadcast_to(mono, images.shape), axis=1)
    return len(np.unique(images, axis=0))


def fragmented_basis(group: PermutationGroup, fragments, degree, *, max_exponent=None, progress=None) -> Basis:
    """Deduplicated, symmetrised union of fragment PIP bases on a molecule's distance variables.

    Parameters
    ----------
    group : PermutationGroup
        The molecule's like-atom group.
    fragments : sequence of sequence of int
        Atom subsets (at least 2 atoms each).  Fragments that are images of
        an earlier one under ``group`` are merged with it (largest degree).
    degree : int or sequence of int
        Maximum degree, one for all fragments or one per fragment.
    max_exponent : int, optional
    progress : callable, optional
        ``progress(step, total, message)`` per fragment.

    Returns
    -------
    Basis
        Kind ``"pip"``: each function is the molecule's orbit sum of its
        representative monomial; ``options["fragments"]`` records the fragments.
    """
    frags = [tuple(sorted(int(i) for i in f)) for f in fragments]
    if not frags:
        raise ValueError("give at least one fragment (a list of atom indices)")
    degs = [int(degree)] * len(frags) if np.isscalar(degree) else [int(d) for d in degree]
    if len(degs) != len(frags):
        raise ValueError(f"{len(degs)} degrees for {len(frags)} fragments")
    N = group.n_atoms
    for f in frags:
        if len(f) < 2 or len(set(f)) != len(f) or f[0] < 0 or f[-1] >= N:
            raise ValueError(f"fragment {list(f)} must list at least 2 distinct atoms among 0..{N - 1}")
    # merge fragments related by symmetry
    classes: list = []  # (fragment, degree, images)
    for f, d in zip(frags, degs):
        hit = next((c for c in classes if frozenset(f) in {frozenset(i) for i in c[2]}), None)
        if hit is not None:
            classes[classes.index(hit)] = (hit[0], max(hit[1], d), hit[2])
            continue
        classes.append((f, d, fragment_images(group, f)))
    nv = group.n_variables
    rng = np.random.default_rng(7)
    probe = rng.uniform(0.1, 0.9, size=(4, nv))
    keys: dict = {}
    kept = []  # (class index, function index, factor, degree, representative)
    frag_bases = []
    for ci, (f, d, images) in enumerate(classes):
        gF = fragment_group(group, f)
        basis = pip_basis(gF, d, max_exponent=max_exponent, size_limit=10**6, force=True)
        frag_bases.append(basis)
        vmaps = [_variable_map(N, img) for img in images]
        values = sum(basis.evaluate(probe[:, vm]) for vm in vmaps)  # (4, n_basis)
        sizes = np.array([len(basis.polynomial_terms(j)[0]) for j in range(basis.n_basis)]) if group.blocks is None \
            else None
        for j in range(basis.n_basis):
            rep = basis.representatives[j]
            full = np.zeros(nv, dtype=np.int64)
            full[vmaps[0]] = rep
            if group.blocks is not None:
                support = {f[a] for a in _support_atoms(rep, len(f))}
                k_m = sum(1 for img in images if support <= set(img)) if support else len(images)
                factor = 1.0 / k_m
            else:
                factor = _orbit_size(group, full) / (len(images) * sizes[j])
            key = (int(basis.degrees[j]),) + tuple(float(f"{v:.10e}") for v in values[:, j] * factor)
            if key in keys:
                continue
            keys[key] = len(kept)
            kept.append((ci, j, factor, int(basis.degrees[j]), full))
        if progress is not None:
            progress(ci + 1, len(classes), f"fragment {list(f)}: {basis.n_basis} PIPs x {len(images)} images")
    order = sorted(range(len(kept)), key=lambda i: (kept[i][3], i))
    kept = [kept[i] for i in order]
    program, out_nodes = _replicate(group, classes, frag_bases, kept)
    degrees = np.array([k[3] for k in kept], dtype=np.int64)
    reps = np.array([k[4] for k in kept], dtype=np.int64).reshape(len(kept), nv)
    options = {"max_exponent": max_exponent, "purify": [], "require": None,
               "fragments": [{"atoms": list(c[0]), "degree": int(c[1]), "n_images": len(c[2])} for c in classes]}
    return Basis("pip", group, int(max(degs)), degrees, reps, program, options, [])


def _replicate(group, classes, frag_bases, kept):
    """One program: every fragment program copied per image, then the normalised sums."""
    N = group.n_atoms
    nv = group.n_variables
    copies = []  # (program, variable map)
    for (f, _, images), basis in zip(classes, frag_bases):
        for img in images:
            copies.append((len(copies), basis.program, _variable_map(N, img)))
    first_copy = np.cumsum([0] + [len(c[2]) for c in classes])
    n_mono = sum(p.n_monomial_end - p.n_variables for _, p, _ in copies)
    a, b, scale, const, terms = [-1] * nv, [-1] * nv, [0.0] * nv, [0.0] * nv, [[] for _ in range(nv)]
    node_maps = []
    mono_next = nv
    other_next = nv + n_mono
    for _, p, vmap in copies:
        nm = np.empty(p.n_nodes, dtype=np.int64)
        nm[:p.n_variables] = vmap
        k = p.n_monomial_end - p.n_variables
        nm[p.n_variables:p.n_monomial_end] = np.arange(mono_next, mono_next + k)
        mono_next += k
        r = p.n_nodes - p.n_monomial_end
        nm[p.n_monomial_end:] = np.arange(other_next, other_next + r)
        other_next += r
        node_maps.append(nm)
    total = other_next + len(kept)
    a = np.full(total, -1, dtype=np.int64)
    b = np.full(total, -1, dtype=np.int64)
    scale = np.zeros(total)
    const = np.zeros(total)
    terms = [[] for _ in range(total)]
    for (_, p, _), nm in zip(copies, node_maps):
        for i in range(p.n_variables, p.n_nodes):
            t = nm[i]
            if p.a[i] >= 0:
                a[t], b[t] = nm[p.a[i]], nm[p.b[i]]
            scale[t], const[t] = p.scale[i], p.const[i]
            terms[t] = [(int(nm[p.idx[l]]), float(p.coef[l])) for l in range(p.ptr[i], p.ptr[i + 1])]
    outputs = []
    for q, (ci, j, factor, _, _) in enumerate(kept):
        t = other_next + q
        p = frag_bases[ci].program
        terms[t] = [(int(node_maps[c][p.outputs[j]]), factor) for c in range(first_copy[ci], first_copy[ci + 1])]
        outputs.append(t)
    ptr = np.zeros(total + 1, dtype=np.int64)
    ptr[1:] = np.cumsum([len(t) for t in terms])
    prog = Program(nv, nv + n_mono, a, b, scale, const, ptr,
                   np.array([i for t in terms for i, _ in t], dtype=np.int64),
                   np.array([c for t in terms for _, c in t], dtype=np.float64),
                   np.asarray(outputs, dtype=np.int64))
    prog.validate()
    return prog, outputs


class FragmentedPIPModel(LinearPIPModel):
    """Linear fit on a fragmented PIP basis (see :func:`fragmented_basis`).

    Parameters
    ----------
    fragments : list of lists of int
        Atom subsets (in the data's atom order).
    degree : int or list of int
        Degree for all fragments or per fragment (required).
    Other parameters as :class:`~pesfit.models.linear.LinearPIPModel`
    (``morse_a``/``ridge`` None: chosen by cross-validation).

    Attributes
    ----------
    basis_ : invariants.Basis
    coef_ : ndarray of shape (n_basis,) [eV]
    basis_seconds_ : float
        Time spent generating the basis.
    """

    kind = "linear_fragmented_pip"
    cli_name = "fragments"

    def __init__(self, *, fragments=None, degree=4, morse_a=None, morse_grid=(1.0, 1.5, 2.0, 2.5, 3.0), ridge=None,
                 energy_weight_e0=None, force_weight=0.1, use_forces=None, cv_folds=4, blocks=None,
                 random_state=0):
        self.fragments = fragments
        super().__init__(degree=degree, morse_a=morse_a, morse_grid=morse_grid, ridge=ridge,
                         energy_weight_e0=energy_weight_e0, force_weight=force_weight, use_forces=use_forces,
                         cv_folds=cv_folds, blocks=blocks, random_state=random_state)
        del self.max_basis

    _parameter_constraints = {k: v for k, v in LinearPIPModel._parameter_constraints.items()
                              if k not in ("degree", "max_basis")}

    @classmethod
    def add_cli_arguments(cls, parser, add_once) -> None:
        add_once(parser, "--fragments", default=None,
                 help="fragments: atom subsets (0-based, the data's atom order), e.g. '0,1,2,5;0,1,3,6' (required with"
                      " --model fragments)")

    @classmethod
    def params_from_cli(cls, args) -> dict:
        params = super().params_from_cli(args)
        params.pop("degree", None)
        if getattr(args, "degree", None) is not None:
            params["degree"] = int(args.degree)
        text = getattr(args, "fragments", None)
        if text is None:
            raise ValueError("--model fragments needs --fragments, e.g. --fragments '0,1,2,5;0,1,3,6'")
        try:
            params["fragments"] = [[int(i) for i in part.split(",")] for part in text.replace(" ", "").split(";")
                                   if part]
        except ValueError:
            raise ValueError(f"--fragments must be ';'-separated lists of ','-separated atom indices, got {text!r}") \
                from None
        return params

    def _validate_params(self):
        from ._base import ModelBase

        ModelBase._validate_params(self)
        degs = [self.degree] if np.isscalar(self.degree) else list(self.degree)
        if not degs or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in degs):
            raise ValueError(f"degree must be an integer >= 1 or one per fragment, got {self.degree!r}")
        if self.morse_a is not None and self.morse_a <= 0:
            raise ValueError(f"morse_a must be > 0 Å, got {self.morse_a}")
        if self.ridge is not None and self.ridge < 0:
            raise ValueError(f"ridge must be >= 0, got {self.ridge}")
        if self.cv_folds < 2:
            raise ValueError(f"cv_folds must be >= 2, got {self.cv_folds}")

    def fit(self, data: Dataset, *, progress=None) -> "FragmentedPIPModel":
        """Fit energies (and forces) with the fragmented basis; Morse range and ridge by K-fold CV."""
        self._validate_params()
        if not self.fragments:
            raise ValueError("FragmentedPIPModel needs fragments=[[atom indices], ...]")
        t0 = time.perf_counter()
        data = self._check_training_data(data)
        forces = self._fits_forces(data)
        R, E = np.asarray(data.R), np.asarray(data.E, dtype=np.float64)
        F = np.asarray(data.F) if forces else None
        n = len(E)
        w = self._weights(E, float(E.min()))
        group = self.molecule_group(data)
        tb = time.perf_counter()
        deg = self.degree if isinstance(self.degree, (int, np.integer)) else list(self.degree)
        basis = fragmented_basis(group, [list(f) for f in self.fragments], deg)
        self.basis_seconds_ = time.perf_counter() - tb
        rows_per = 1 + (3 * data.n_atoms if forces else 0)
        if basis.n_basis > n * rows_per:
            raise ValueError(f"the fragmented basis has {basis.n_basis} functions but only {n * rows_per} data rows; "
                             "lower the degrees or add data")
        a_grid = [float(self.morse_a)] if self.morse_a is not None else [float(a) for a in self.morse_grid]
        ridges = [float(self.ridge)] if self.ridge is not None else list(DEFAULT_RIDGE_GRID)
        need_cv = len(a_grid) * len(ridges) > 1
        labels = fold_labels(n, self.cv_folds, self.random_state) if need_cv else None
        self.cv_results_ = []
        best, factor = (None, a_grid[0], ridges[0]), None
        for ia, a in enumerate(a_grid):
            factors = self._factor(self._design(basis, DistanceTransform("morse", a), R, E, F, w, need_cv), labels,
                                   self.cv_folds if need_cv else 1,
                                   _progress_at(progress, ia, len(a_grid), f"CV a={a:g}"))
            if not need_cv:
                factor = factors.all_rows()
                continue
            rmse = 1000 * np.sqrt(factors.cv_sse(ridges) / n)
            for j, lam in enumerate(ridges):
                self.cv_results_.append({"morse_a": a, "ridge": lam, "cv_energy_rmse_meV": float(rmse[j])})
                if best[0] is None or rmse[j] < best[0]:
                    best = (float(rmse[j]), a, lam)
            if best[1] == a:  # keep only the best Morse range's factor
                factor = factors.all_rows()
        _, a, lam = best
        T = DistanceTransform("morse", a)
        self.coef_ = ridge_path(factor, [lam])[0]
        self.basis_ = basis
        self.molecule_ = Molecule(tuple(data.symbols), group, T)
        self.hyperparameters_ = {"fragments": basis.options["fragments"], "degree": self.degree, "morse_a": a,
                                 "ridge": lam, "forces": forces, "n_basis": basis.n_basis,
                                 "basis_seconds": self.basis_seconds_}
        self._finish_fit(data, t0)
        return self
