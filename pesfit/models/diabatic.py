"""Diabatic potential energy matrices with symmetry-adapted couplings.

Model
-----
For ``nstates`` electronic states with one-dimensional irreps ``Gamma_i`` of
the permutation–inversion group ``G x {E, E*}`` (see
:mod:`pesfit.models.pseudoscalars` for the names), the diabatic matrix
``U(R)`` is real symmetric and its element ``U_ij`` transforms as
``Gamma_i x Gamma_j``: diagonal elements are invariant (``A1'``), a coupling
between states of different symmetry is not.  Each element is linear in its
coefficients,

    U_ij(R) = sum_t M_t(R) sum_m c_ijtm p_tm(x(R)),    x = exp(-r / a),

where ``M_t = prod_p Psi_p^alpha_tp`` is a monomial in the pseudoscalars
``Psi_p`` (signed, tanh-damped volumes of three bond vectors) with
``|alpha_t|`` even for E*-even and odd for E*-odd elements (up to
``pseudoscalar_powers`` more than the minimum), and ``p_tm`` are the
relative invariants of the like-atom group (Reynolds projections of Morse
monomials, :func:`invariants.relative_basis`; PIPs for the trivial character)
whose character makes the product transform as ``Gamma_i x Gamma_j``.
A term of ``|alpha| = m_min + 2k`` uses polynomials to degree
``degree - k``.  Linearly dependent columns (on the training geometries)
are dropped by a pivoted QR factorisation.

Adiabatic quantities
--------------------
``U = V diag(lambda) V^T`` with ascending ``lambda_k`` (adiabatic energies)
and orthonormal columns ``v_k``.  **Sign convention**: each ``v_k`` is
multiplied by the sign of its largest-magnitude component (ties: the lowest
diabatic index), so the adiabatic state is in phase with the diabat it
resembles most.  With ``G = V^T (dU/dR) V``:

* adiabatic gradients ``dlambda_k/dR = G_kk = v_k^T (dU/dR) v_k``
  (Hellmann–Feynman; forces are ``-G_kk``);
* ``h_kl = G_kl`` (k != l), the energy-difference-scaled coupling [eV/Å];
* nonadiabatic (derivative) couplings ``d_kl = <k|d/dR l> = h_kl / (lambda_l - lambda_k)``
  [1/Å], antisymmetric.  Near a degeneracy the division is regularised,
  ``d_kl = h_kl * D / (D^2 + eps^2)`` with ``D = lambda_l - lambda_k`` and
  ``eps = DEGENERACY_EPS`` (1e-8 eV): finite everywhere and zero at an exact
  degeneracy, where ``d`` is undefined.

Fitting
-------
Targets, any subset: the diabatic matrix (data key ``U``; linear least
squares, element by element), adiabatic energies, adiabatic gradients and
derivative couplings.  With adiabatic targets the problem is non-convex; it
starts from a linear fit of state ``i``'s diagonal element to the ``i``-th
adiabat (states declared in energy order) plus small random couplings
(several starts), then minimises

    sum w_sk^2 (lambda_k - E_sk)^2 + f_g^2 |dlambda_k/dR - G_sk|^2
        + f_c^2 |h_kl -+ h_ref,kl|^2 + u^2 sum (U_ij - U_ref,ij)^2 + ridge

with :func:`scipy.optimize.least_squares` and analytic Jacobians:
``dlambda_k/dc = v_k^T (dU/dc) v_k`` and first-order perturbation theory
``dv_k/dc = sum_(m != k) v_m (v_m^T (dU/dc) v_k) / (lambda_k - lambda_m)``
for gradients and couplings.  Couplings are compared phase-free, through
``h_kl = (lambda_l - lambda_k) d_kl`` (finite at degeneracies): the residual
rows ``(|h|^2 - |h_ref|^2) / (2 |h_ref|)`` and ``h - (h . e) e`` with
``e = h_ref / |h_ref|`` vanish exactly when ``h = +-h_ref`` and are smooth in
``h``.  Structure weights ``w_sk = E0 / (E0 + E_sk - min_s E_sk)`` down-weight
high energies (``energy_weight_e0``).

Note that adiabatic energies alone do not determine the couplings where the
states stay apart: any rotation ``exp(theta(R) J)`` of the diabats with an
E*-odd angle ``theta`` of the coupling's symmetry gives the same energies.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from itertools import product as iproduct

import numpy as np

from invariants import Basis, Character, DistanceTransform, PermutationGroup, pip_basis, relative_basis

from ..data import Dataset
from ..metrics import error_report
from ..molecule import Molecule
from ..regions import region_labels
from ._base import ModelBase
from .executors import blas_threads
from .lstsq import fold_factors, labels_of_folds, lstsq_path
from .pseudoscalars import Irrep, Pseudoscalar, find_pseudoscalars, parse_irreps

__all__ = [
    "DiabaticModel",
    "MatrixElement",
    "ElementTerm",
    "adiabatic_states",
    "build_elements",
    "element_pairs",
    "evaluate_diabatic",
    "fix_phases",
    "DEGENERACY_EPS",
]

#: regularisation of ``1/(lambda_l - lambda_k)`` in derivative couplings [eV]
DEGENERACY_EPS = 1e-8
DEFAULT_MORSE_GRID = (1.0, 1.5, 2.0, 2.5)
#: polynomial variables: Morse distances, valence (bonds and angles at a central atom), or chosen by CV
VARIABLES = ("auto", "distances", "valence")
#: extra pseudoscalar powers tried per element when pseudoscalar_powers is None
PSEUDOSCALAR_POWER_GRID = (0, 2)
DEFAULT_RIDGE_GRID = (0.0, 1e-12, 1e-10, 1e-8)
TARGETS = ("u", "adiabatic", "both")
#: columns whose pivoted-QR diagonal falls below this fraction of the first are dropped
DEPENDENCY_RTOL = 1e-10


def element_pairs(n_states: int) -> list[tuple[int, int]]:
    """Upper-triangle element indices ``(i, j)``, ``i <= j``, row by row."""
    return [(i, j) for i in range(n_states) for j in range(i, n_states)]


# ------------------------------------------------------------------ bases
@dataclass(frozen=True, eq=False)
class ElementTerm:
    """One term ``M(R) * (c . p(x))`` of a matrix element.

    Attributes
    ----------
    powers : tuple of int
        Exponent of each pseudoscalar in ``M``.
    basis : invariants.Basis
        Relative invariants ``p`` of the distance variables.
    keep : ndarray of shape (n_basis,), bool
        Columns kept after removing linear dependencies.
    """

    powers: tuple
    basis: Basis
    keep: np.ndarray

    @property
    def n_features(self) -> int:
        return int(np.count_nonzero(self.keep))


@dataclass(frozen=True, eq=False)
class MatrixElement:
    """Basis of the diabatic matrix element ``U_ij`` (symmetry ``irrep``)."""

    i: int
    j: int
    irrep: Irrep
    terms: tuple

    @property
    def n_features(self) -> int:
        return sum(t.n_features for t in self.terms)

    @property
    def label(self) -> str:
        return f"U{self.i + 1}{self.j + 1}"

    def with_keep(self, keeps) -> "MatrixElement":
        return MatrixElement(self.i, self.j, self.irrep,
                             tuple(ElementTerm(t.powers, t.basis, np.asarray(k, dtype=bool))
                                   for t, k in zip(self.terms, keeps)))


def _power_tuples(pseudoscalars, m: int):
    """Exponent tuples over the pseudoscalars with total ``m``."""
    n = len(pseudoscalars)
    return [a for a in iproduct(range(m + 1), repeat=n) if sum(a) == m]


def build_elements(group: PermutationGroup, irreps, degree: int, coupling_degree: int, pseudoscalars,
                   *, pseudoscalar_powers: int = 2) -> list[MatrixElement]:
    """Symmetry-adapted bases of all upper-triangle elements (all columns kept).

    Parameters
    ----------
    group : PermutationGroup
    irreps : sequence of Irrep
        One per state.
    degree, coupling_degree : int
        Polynomial degree of the diagonal and of the off-diagonal elements.
    pseudoscalars : list of Pseudoscalar
    pseudoscalar_powers : int
        Extra pseudoscalar powers beyond the minimum (0, 2, ...): terms with
        ``|alpha| = m_min, m_min + 2, ...`` up to ``m_min + pseudoscalar_powers``.
    """
    cache: dict = {}

    def distance_basis(char: str, d: int) -> Basis:
        key = (char, d)
        if key not in cache:
            cache[key] = (pip_basis(group, d) if char == "trivial"
                          else relative_basis(group, d, Character(group, "sign")))
        return cache[key]

    out = []
    for i, j in element_pairs(len(irreps)):
        irrep = irreps[i] * irreps[j]
        d0 = degree if i == j else coupling_degree
        m_min = 1 if irrep.odd else 0
        if irrep.odd and not pseudoscalars:
            raise ValueError(f"U{i + 1}{j + 1} has symmetry {irrep}, odd under inversion, but the molecule has no "
                             "pseudoscalar (signed volume of three bond vectors); it needs at least 4 atoms")
        terms = []
        for m in range(m_min, m_min + pseudoscalar_powers + 1, 2):
            d = d0 - (m - m_min) // 2
            if d < 1:
                continue
            for powers in ([()] if not pseudoscalars else _power_tuples(pseudoscalars, m)):
                sign = irrep.permutation == "sign"
                for p, a in zip(pseudoscalars, powers):
                    if p.character == "sign" and a % 2:
                        sign = not sign
                basis = distance_basis("sign" if sign else "trivial", d)
                if basis.n_basis:
                    terms.append(ElementTerm(tuple(powers) if pseudoscalars else (), basis,
                                             np.ones(basis.n_basis, dtype=bool)))
        if not terms:
            raise ValueError(f"U{i + 1}{j + 1} ({irrep}) has an empty basis; raise the degree")
        out.append(MatrixElement(i, j, irrep, tuple(terms)))
    return out


def valence_center(symbols, group: PermutationGroup, R) -> int | None:
    """The central atom of valence variables, or None.

    Candidates are atoms whose element occurs once and that every generator of
    ``group`` fixes; among them the one with the smallest mean distance to the
    other atoms over the structures ``R`` (n, N, 3) [Å].
    """
    symbols = list(symbols)
    fixed = [i for i, s in enumerate(symbols)
             if symbols.count(s) == 1 and all(g[i] == i for g in group.generators)]
    if not fixed or len(symbols) < 3:
        return None
    R = np.asarray(R, dtype=np.float64)
    mean = [float(np.mean(np.linalg.norm(R - R[:, i:i + 1, :], axis=-1))) for i in fixed]
    return fixed[int(np.argmin(mean))]


# ------------------------------------------------------------- evaluation
def _pseudoscalar_values(pseudoscalars, R, gradient: bool):
    vals, grads = [], []
    for p in pseudoscalars:
        if gradient:
            v, g = p.evaluate(R, gradient=True)
            grads.append(g)
        else:
            v = p.evaluate(R)
        vals.append(v)
    return vals, grads


def _monomial(powers, ps_vals, ps_grads, n, shape, gradient: bool):
    """``M = prod Psi_p^a_p`` (n,) and ``dM/dR`` (n, N, 3)."""
    M = np.ones(n)
    for v, a in zip(ps_vals, powers):
        if a:
            M = M * v**a
    if not gradient:
        return M, None
    dM = np.zeros((n,) + shape)
    for p, a in enumerate(powers):
        if not a:
            continue
        rest = np.ones(n)
        for q, (v, b) in enumerate(zip(ps_vals, powers)):
            if q != p and b:
                rest = rest * v**b
        dM += (a * ps_vals[p] ** (a - 1) * rest)[:, None, None] * ps_grads[p]
    return M, dM


def design(element: MatrixElement, R, transform: DistanceTransform, ps_vals, ps_grads=None, *,
           gradient: bool = False, keep: bool = True):
    """Feature columns of one element: values (n, n_features) and, with ``gradient``, (n, n_features, N, 3)."""
    n, N = R.shape[:2]
    cols, jcols = [], []
    for t in element.terms:
        M, dM = _monomial(t.powers, ps_vals, ps_grads, n, (N, 3), gradient)
        sel = t.keep if keep else slice(None)
        if gradient:
            P, J = t.basis.cartesian_jacobian(R, transform)
            P, J = P[:, sel], J[:, sel]
            jcols.append(M[:, None, None, None] * J + P[:, :, None, None] * dM[:, None])
        else:
            P = t.basis.cartesian_values(R, transform)[:, sel]
        cols.append(M[:, None] * P)
    Phi = np.hstack(cols)
    if gradient:
        return Phi, np.concatenate(jcols, axis=1)
    return Phi


def _split(element: MatrixElement, coef):
    """Per-term full-length weight vectors (zeros at dropped columns)."""
    out, k = [], 0
    for t in element.terms:
        w = np.zeros(t.basis.n_basis)
        w[t.keep] = coef[k:k + t.n_features]
        k += t.n_features
        out.append(w)
    return out


def evaluate_diabatic(elements, coefs, transform: DistanceTransform, pseudoscalars, R, *, gradient: bool = False):
    """Diabatic matrix ``U`` (n, ns, ns) [eV] and, with ``gradient``, ``dU/dR`` (n, ns, ns, N, 3) [eV/Å].

    ``coefs`` holds one coefficient vector (kept columns) per element.  Each
    term is one reverse-mode pass, ``s = w . p`` and ``ds/dR``; the product
    rule gives ``d(M s)/dR = M ds/dR + s dM/dR``.
    """
    R = np.ascontiguousarray(R, dtype=np.float64)
    n, N = R.shape[:2]
    ns = max(e.j for e in elements) + 1
    ps_vals, ps_grads = _pseudoscalar_values(pseudoscalars, R, gradient)
    U = np.zeros((n, ns, ns))
    dU = np.zeros((n, ns, ns, N, 3)) if gradient else None
    for e, c in zip(elements, coefs):
        val = np.zeros(n)
        grad = np.zeros((n, N, 3)) if gradient else None
        for t, w in zip(e.terms, _split(e, c)):
            M, dM = _monomial(t.powers, ps_vals, ps_grads, n, (N, 3), gradient)
            if gradient:
                s, ds = t.basis.cartesian_pullback(R, transform, w, gradient=True)
                grad += M[:, None, None] * ds + s[:, None, None] * dM
            else:
                s = t.basis.cartesian_pullback(R, transform, w, gradient=False)
            val += M * s
        U[:, e.i, e.j] = U[:, e.j, e.i] = val
        if gradient:
            dU[:, e.i, e.j] = grad
            dU[:, e.j, e.i] = grad
    return (U, dU) if gradient else U


def fix_phases(vectors: np.ndarray) -> np.ndarray:
    """Eigenvector columns with the largest-magnitude component of each made positive.

    Parameters
    ----------
    vectors : ndarray of shape (n, ns, ns)
        Columns ``vectors[:, :, k]`` are the adiabatic states in the diabatic basis.

    Examples
    --------
    >>> fix_phases(np.array([[[0.6, 0.8], [-0.8, 0.6]]]))[0].tolist()
    [[-0.6, 0.8], [0.8, 0.6]]
    """
    V = np.array(vectors, dtype=np.float64)
    big = np.argmax(np.abs(V), axis=1)  # (n, ns): first index of the largest |component|
    s = np.sign(np.take_along_axis(V, big[:, None, :], axis=1))
    s[s == 0] = 1.0
    return V * s


def adiabatic_states(U, dU=None, *, eps: float = DEGENERACY_EPS) -> dict:
    """Adiabatic energies, states, gradients and couplings from ``U`` (and ``dU/dR``).

    Parameters
    ----------
    U : ndarray of shape (n, ns, ns), eV
    dU : ndarray of shape (n, ns, ns, N, 3), eV/Å, optional
    eps : float
        Regularisation [eV] of ``1/(lambda_l - lambda_k)`` (module docstring).

    Returns
    -------
    dict
        ``energies`` (n, ns) ascending; ``vectors`` (n, ns, ns) with the
        phase convention of :func:`fix_phases`; with ``dU`` also
        ``gradients`` (n, ns, N, 3) [eV/Å], ``h`` (n, ns, ns, N, 3) [eV/Å]
        (``v_k^T dU v_l``, zero diagonal) and ``nac`` (n, ns, ns, N, 3) [1/Å]
        (``d_kl``, antisymmetric).
    """
    U = np.asarray(U, dtype=np.float64)
    lam, vec = np.linalg.eigh(U)
    vec = fix_phases(vec)
    out = {"energies": lam, "vectors": vec}
    if dU is None:
        return out
    G = np.einsum("nak,nabxy,nbl->nklxy", vec, dU, vec, optimize=True)
    ns = U.shape[1]
    diag = np.arange(ns)
    out["gradients"] = G[:, diag, diag].copy()
    h = G.copy()
    h[:, diag, diag] = 0.0
    D = lam[:, None, :] - lam[:, :, None]  # D[k, l] = lambda_l - lambda_k
    inv = D / (D * D + eps * eps)
    out["h"] = h
    out["nac"] = h * inv[:, :, :, None, None]
    return out


# ---------------------------------------------------------------- fitting
def _drop_dependent(Phi: np.ndarray, rtol: float = DEPENDENCY_RTOL) -> np.ndarray:
    """Mask of columns kept by a pivoted QR of the unit-norm columns."""
    import scipy.linalg

    norms = np.linalg.norm(Phi, axis=0)
    keep = np.zeros(Phi.shape[1], dtype=bool)
    live = np.flatnonzero(norms > 0)
    if live.size == 0:
        return keep
    _, Rq, piv = scipy.linalg.qr(Phi[:, live] / norms[live], mode="economic", pivoting=True, check_finite=False)
    d = np.abs(np.diag(Rq))
    rank = int(np.count_nonzero(d > rtol * d[0]))
    keep[live[piv[:rank]]] = True
    return keep


def prune_elements(elements, R, transform, pseudoscalars, rtol: float = DEPENDENCY_RTOL):
    """Elements with linearly dependent columns (on geometries ``R``) dropped."""
    ps_vals, _ = _pseudoscalar_values(pseudoscalars, R, False)
    out = []
    for e in elements:
        Phi = design(e, R, transform, ps_vals, keep=False)
        keep = _drop_dependent(Phi, rtol)
        keeps, k = [], 0
        for t in e.terms:
            keeps.append(keep[k:k + t.basis.n_basis])
            k += t.basis.n_basis
        out.append(e.with_keep(keeps))
    return out


def state_weights(E, e0) -> np.ndarray:
    """``w_sk = E0 / (E0 + E_sk - min_s E_sk)`` (ones when ``e0`` is None), shape of ``E``."""
    E = np.asarray(E, dtype=np.float64)
    if e0 is None:
        return np.ones_like(E)
    return e0 / (e0 + E - E.min(axis=0, keepdims=True))


def _element_pattern(e, vk, vl):
    """``v_k^T (dU/dc) v_l / phi`` for element ``e``: ``v_k[i] v_l[j] + v_k[j] v_l[i]`` (once on the diagonal)."""
    if e.i == e.j:
        return vk[..., e.i] * vl[..., e.i]
    return vk[..., e.i] * vl[..., e.j] + vk[..., e.j] * vl[..., e.i]


class _AdiabaticProblem:
    """Residuals and Jacobian of the nonlinear fit (see the module docstring)."""

    def __init__(self, elements, Phis, dPhis, *, E, wE, U=None, u_weight=1.0, G=None, g_weight=0.0, H=None,
                 c_weight=0.0, penalties=None):
        self.elements = elements
        self.Phis = Phis
        self.dPhis = dPhis
        self.E, self.wE = E, wE
        self.U, self.u_weight = U, u_weight
        self.G, self.g_weight = G, g_weight
        self.H, self.c_weight = H, c_weight
        if H is not None:
            ku, lu = np.triu_indices(E.shape[1], 1)
            ref = H[:, ku, lu]
            self.h_norm = np.linalg.norm(ref, axis=-1)  # (n, pairs)
            self.h_small = self.h_norm <= 1e-10 * max(1.0, float(self.h_norm.max(initial=0.0)))
            safe = np.where(self.h_small, 1.0, self.h_norm)[..., None]
            self.h_hat = np.where(self.h_small[..., None], 0.0, ref / safe)
        # ridge: residual rows L_e c_e (None: no penalty on that element)
        self.penalties = [None] * len(elements) if penalties is None else list(penalties)
        self.sizes = [P.shape[1] for P in Phis]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)])
        self.n, self.ns = E.shape
        self._cache_x = None

    def unpack(self, x):
        return [x[a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:])]

    def _state(self, x):
        if self._cache_x is not None and np.array_equal(x, self._cache_x):
            return self._cache
        n, ns = self.n, self.ns
        U = np.zeros((n, ns, ns))
        for e, P, c in zip(self.elements, self.Phis, self.unpack(x)):
            U[:, e.i, e.j] = U[:, e.j, e.i] = P @ c
        lam, vec = np.linalg.eigh(U)
        st = {"U": U, "lam": lam, "vec": vec}
        if self.dPhis is not None:
            N3 = self.dPhis[0].shape[2]
            dU = np.zeros((n, ns, ns, N3))
            for e, J, c in zip(self.elements, self.dPhis, self.unpack(x)):
                g = np.einsum("nfx,f->nx", J, c)
                dU[:, e.i, e.j] = g
                dU[:, e.j, e.i] = g
            st["Gm"] = np.einsum("nak,nabx,nbl->nklx", vec, dU, vec, optimize=True)
            D = lam[:, None, :] - lam[:, :, None]
            st["inv"] = D / (D * D + DEGENERACY_EPS**2)  # inv[k, l] = 1/(lambda_l - lambda_k)
        self._cache_x, self._cache = x.copy(), st
        return st

    def _phase_free(self, h):
        """Rows ``[(|h|^2 - |r|^2) / (2|r|), h - (h.r^) r^]`` per structure and pair: zero iff ``h = +-r``.

        Smooth in ``h`` (unlike ``min_s |h - s r|``); ``r = 0`` gives the rows ``[0, h]``.
        """
        safe = np.where(self.h_small, 1.0, self.h_norm)
        e1 = np.where(self.h_small, 0.0, (np.einsum("npx,npx->np", h, h) - self.h_norm**2) / (2 * safe))
        e2 = h - np.einsum("npx,npx->np", h, self.h_hat)[..., None] * self.h_hat
        return np.concatenate([e1[..., None], e2], axis=-1)

    def _phase_free_jacobian(self, h, Jh):
        """Jacobian of :meth:`_phase_free` from ``dh/dc`` (n, pairs, 3N, ncoef)."""
        safe = np.where(self.h_small, 1.0, self.h_norm)
        j1 = np.einsum("npx,npxc->npc", h, Jh) / safe[..., None]
        j1[self.h_small] = 0.0
        j2 = Jh - self.h_hat[..., None] * np.einsum("npx,npxc->npc", self.h_hat, Jh)[:, :, None, :]
        return np.concatenate([j1[:, :, None, :], j2], axis=2)

    def residuals(self, x):
        st = self._state(x)
        parts = [((st["lam"] - self.E) * self.wE).ravel()]
        if self.U is not None:
            iu = np.triu_indices(self.ns)
            parts.append((self.u_weight * (st["U"] - self.U)[:, iu[0], iu[1]]).ravel())
        if self.G is not None:
            k = np.arange(self.ns)
            parts.append((self.g_weight * (st["Gm"][:, k, k] - self.G)).ravel())
        if self.H is not None:
            ku, lu = np.triu_indices(self.ns, 1)
            h = st["Gm"][:, ku, lu]
            parts.append((self.c_weight * self._phase_free(h)).ravel())
        for L, c in zip(self.penalties, self.unpack(x)):
            if L is not None:
                parts.append(L @ c)
        return np.concatenate(parts)

    def jacobian(self, x):
        st = self._state(x)
        n, ns = self.n, self.ns
        vec = st["vec"]
        ncoef = int(self.offsets[-1])
        blocks = []
        # energies: d lambda_k / dc = pattern(v_k, v_k) phi
        J = np.zeros((n, ns, ncoef))
        for e, P, a, b in zip(self.elements, self.Phis, self.offsets[:-1], self.offsets[1:]):
            f = _element_pattern(e, vec.transpose(0, 2, 1), vec.transpose(0, 2, 1))  # (n, ns)
            J[:, :, a:b] = (f * self.wE)[:, :, None] * P[:, None, :]
        blocks.append(J.reshape(n * ns, ncoef))
        if self.U is not None:
            iu = np.triu_indices(ns)
            JU = np.zeros((n, len(iu[0]), ncoef))
            for q, (i, j) in enumerate(zip(*iu)):
                for e, P, a, b in zip(self.elements, self.Phis, self.offsets[:-1], self.offsets[1:]):
                    if (e.i, e.j) == (i, j):
                        JU[:, q, a:b] = self.u_weight * P
            blocks.append(JU.reshape(-1, ncoef))
        if self.G is not None or self.H is not None:
            pairs = [(k, k) for k in range(ns)] if self.G is not None else []
            hpairs = list(zip(*np.triu_indices(ns, 1))) if self.H is not None else []
            Gm, inv = st["Gm"], st["inv"]
            V = vec.transpose(0, 2, 1)  # V[:, k] = v_k
            N3 = Gm.shape[-1]
            for group_pairs, weight in ((pairs, self.g_weight), (hpairs, self.c_weight)):
                if not group_pairs:
                    continue
                JG = np.zeros((n, len(group_pairs), N3, ncoef))
                for e, P, dP, a, b in zip(self.elements, self.Phis, self.dPhis, self.offsets[:-1], self.offsets[1:]):
                    # A[m, k] = pattern(v_m, v_k): (n, ns, ns); F[m, k] = A[m, k] / (lambda_k - lambda_m)
                    A = _element_pattern(e, V[:, :, None, :], V[:, None, :, :])
                    F = A * inv
                    F[:, np.arange(ns), np.arange(ns)] = 0.0
                    # dG/dc = B + F^T G + G F, with B = A (as pattern) x dphi
                    T = np.einsum("nmk,nmlx->nklx", F, Gm) + np.einsum("nkmx,nml->nklx", Gm, F)
                    for q, (k, l) in enumerate(group_pairs):
                        JG[:, q, :, a:b] = (A[:, k, l][:, None, None] * dP.transpose(0, 2, 1)
                                            + T[:, k, l][:, :, None] * P[:, None, :])
                if group_pairs is hpairs:
                    ku, lu = np.triu_indices(ns, 1)
                    JG = self._phase_free_jacobian(Gm[:, ku, lu], JG)
                blocks.append(weight * JG.reshape(-1, ncoef))
        for L, a, b in zip(self.penalties, self.offsets[:-1], self.offsets[1:]):
            if L is not None:
                block = np.zeros((L.shape[0], ncoef))
                block[:, a:b] = L
                blocks.append(block)
        return np.vstack(blocks)


def _solve_linear(A, y, ridge):
    return lstsq_path(A, y, [ridge])[0]


# ------------------------------------------------------------------ model
class DiabaticModel(ModelBase):
    """Diabatic potential energy matrix of several coupled electronic states.

    Parameters
    ----------
    n_states : int or None
        Number of electronic states (>= 2); None: from the data.
    irreps : str, sequence of str, or None
        Irrep of each state in the permutation–inversion group, e.g.
        ``"A1,A2"`` (:mod:`pesfit.models.pseudoscalars` names); None: all
        ``A1'`` (totally symmetric).
    target : {"u", "adiabatic", "both"}
        Fit the diabatic matrix (data key ``U``, linear), the adiabatic
        energies (plus gradients and couplings passed to :meth:`fit`;
        nonlinear), or both.
    degree : int or None
        Degree of the diagonal elements; None: chosen by cross-validation
        among 5 and 6 (4 and 5 for fewer than 2000 structures; with valence
        variables 6, 7 and 8 from 3000 structures on, 6 and 7 for the
        nonlinear targets).
    coupling_degree : int or None
        Degree of the off-diagonal elements; None: ``degree``.
    morse_a : float or None
        Morse range [Å]; None: chosen from ``morse_grid`` by CV.
    morse_grid : tuple of float
    variables : {"auto", "distances", "valence"}
        The polynomial variables: Morse-transformed distances, or valence
        variables around a central atom (the atom whose element occurs once
        and which is nearest to the others on average): Morse variables of
        its bonds and ``cos(theta) + 1/2`` of the bond angles at it, in
        place of the distances between the other atoms
        (:func:`invariants.transforms.valence_variables`).  ``"auto"``
        lets cross-validation choose when such an atom exists.
    pseudoscalar_damping : {"tanh", "none"}
    pseudoscalar_scale : float
        ``v0`` [Å^3] of ``tanh(V / v0)``.
    pseudoscalar_powers : int or None
        Pseudoscalar powers beyond the minimum in each element (0 or 2 are
        typical); None: chosen per element by CV among 0 and 2.
    ridge : float or None
        Ridge on unit-norm columns; None: per element by CV (linear fits) or 0.
    energy_weight_e0 : float or None
        ``E0`` [eV] of the weights ``E0 / (E0 + E - E_min)``; None: equal weights.
    u_weight : float
        Weight of diabatic-matrix rows in ``target="both"``.
    gradient_weight, coupling_weight : float
        Weights [Å] of adiabatic gradient and ``h_kl`` rows relative to energies.
    coupling_ridge : float
        Ridge (unit-norm columns) on the off-diagonal elements in
        ``target="adiabatic"`` fits without derivative couplings, where the
        energies leave them nearly free.
    n_starts : int
        Starting points of the nonlinear fit: the linear fit itself, then
        random couplings.  With several, each is fitted on all but a held-out
        ``validation_fraction`` of the structures, the one with the lowest
        held-out energy RMSE is refined on all of them.
    coupling_init : float
        RMS [eV] of the random initial couplings.
    max_nfev : int
        Function evaluations per start (and for the final refinement).
    validation_fraction : float
    cv_folds : int
    blocks : list of lists, optional
        Permutable like-atom blocks (default: all like atoms).
    use_forces : bool or None
        Accepted for recipe compatibility; per-state gradients are passed to :meth:`fit`.
    random_state : int

    Attributes
    ----------
    molecule_ : Molecule
    irreps_ : tuple of Irrep
    pseudoscalars_ : list of Pseudoscalar
    elements_ : list of MatrixElement
        Upper-triangle elements, row by row.
    coefs_ : list of ndarray
        Coefficients of each element's kept columns [eV].
    n_states_ : int
    cv_results_ : list of dict
    fit_info_ : dict
        Cost, evaluations and status of each start of the nonlinear fit.
    train_report_ : dict
    """

    kind = "diabatic_pip"
    cli_name = "diabatic"
    _parameter_constraints = {
        "n_states": (type(None), int),
        "degree": (type(None), int),
        "coupling_degree": (type(None), int),
        "morse_a": (type(None), float, int),
        "variables": (str,),
        "pseudoscalar_scale": (float, int),
        "pseudoscalar_powers": (type(None), int),
        "ridge": (type(None), float, int),
        "energy_weight_e0": (type(None), float, int),
        "u_weight": (float, int),
        "gradient_weight": (float, int),
        "coupling_weight": (float, int),
        "coupling_ridge": (float, int),
        "n_starts": (int,),
        "coupling_init": (float, int),
        "max_nfev": (int,),
        "validation_fraction": (float,),
        "cv_folds": (int,),
        "random_state": (int,),
    }

    def __init__(self, *, n_states=None, irreps=None, target="u", degree=None, coupling_degree=None, morse_a=None,
                 morse_grid=DEFAULT_MORSE_GRID, variables="auto", pseudoscalar_damping="tanh", pseudoscalar_scale=1.0,
                 pseudoscalar_powers=None, ridge=None, energy_weight_e0=None, u_weight=1.0, gradient_weight=0.1,
                 coupling_weight=0.1, coupling_ridge=1e-4, n_starts=3, coupling_init=0.3, max_nfev=30,
                 validation_fraction=0.1,
                 cv_folds=4, blocks=None,
                 use_forces=None, random_state=0):
        self.n_states = n_states
        self.irreps = irreps
        self.target = target
        self.degree = degree
        self.coupling_degree = coupling_degree
        self.morse_a = morse_a
        self.morse_grid = morse_grid
        self.variables = variables
        self.pseudoscalar_damping = pseudoscalar_damping
        self.pseudoscalar_scale = pseudoscalar_scale
        self.pseudoscalar_powers = pseudoscalar_powers
        self.ridge = ridge
        self.energy_weight_e0 = energy_weight_e0
        self.u_weight = u_weight
        self.gradient_weight = gradient_weight
        self.coupling_weight = coupling_weight
        self.coupling_ridge = coupling_ridge
        self.n_starts = n_starts
        self.coupling_init = coupling_init
        self.max_nfev = max_nfev
        self.validation_fraction = validation_fraction
        self.cv_folds = cv_folds
        self.blocks = blocks
        self.use_forces = use_forces
        self.random_state = random_state

    # ------------------------------------------------------------------- CLI
    @classmethod
    def add_cli_arguments(cls, parser, add_once) -> None:
        add_once(parser, "--states", type=int, default=None,
                 help="diabatic: number of electronic states (default: the number of energies per structure in the "
                      "data)")
        add_once(parser, "--irreps", default=None,
                 help="diabatic: irrep of each state, e.g. A1,A2 (A1', A2', A1'', A2''; A2 = A2''); default all A1'")
        add_once(parser, "--target", choices=list(TARGETS), default=None,
                 help="diabatic: fit the diabatic matrix U (u), the adiabatic energies (adiabatic) or both (default: "
                      "u)")
        add_once(parser, "--e0", type=float, default=None,
                 help="weight E0/(E0+E-Emin) on the energy rows, E0 in eV (default: equal weights)")
        add_once(parser, "--ridge", type=float, default=None, help="ridge on unit-norm columns (default: by CV)")
        add_once(parser, "--variables", choices=list(VARIABLES), default=None,
                 help="diabatic: polynomial variables, Morse distances or valence (bond lengths and angles at the "
                      "central atom); default auto, chosen by CV")

    @classmethod
    def params_from_cli(cls, args) -> dict:
        return cls._params_from_flags(args, {"states": "n_states", "irreps": "irreps", "target": "target",
                                             "degree": "degree", "morse_a": "morse_a", "e0": "energy_weight_e0",
                                             "ridge": "ridge", "variables": "variables"}, forces=False)

    # ---------------------------------------------------------------- checks
    def _validate_params(self):
        super()._validate_params()
        if self.n_states is not None and self.n_states < 2:
            raise ValueError(f"n_states must be >= 2 for a diabatic model, got {self.n_states}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")
        for name in ("degree", "coupling_degree"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        if self.morse_a is not None and self.morse_a <= 0:
            raise ValueError(f"morse_a must be > 0 Å, got {self.morse_a}")
        if any(a <= 0 for a in self.morse_grid):
            raise ValueError(f"morse_grid values must be > 0 Å, got {self.morse_grid}")
        if self.variables not in VARIABLES:
            raise ValueError(f"variables must be one of {VARIABLES}, got {self.variables!r}")
        if self.pseudoscalar_powers is not None and self.pseudoscalar_powers < 0:
            raise ValueError(f"pseudoscalar_powers must be >= 0, got {self.pseudoscalar_powers}")
        if self.ridge is not None and self.ridge < 0:
            raise ValueError(f"ridge must be >= 0, got {self.ridge}")
        if self.energy_weight_e0 is not None and self.energy_weight_e0 <= 0:
            raise ValueError(f"energy_weight_e0 must be > 0 eV, got {self.energy_weight_e0}")
        for name in ("u_weight", "gradient_weight", "coupling_weight", "coupling_ridge", "coupling_init"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.n_starts < 1 or self.max_nfev < 1:
            raise ValueError("n_starts and max_nfev must be >= 1")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be between 0 and 1, got {self.validation_fraction}")
        if self.cv_folds < 2:
            raise ValueError(f"cv_folds must be >= 2, got {self.cv_folds}")

    def _check_multistate(self, data: Dataset, gradients, couplings):
        if not isinstance(data, Dataset):
            raise ValueError(f"fit expects a pesfit.data.Dataset, got {type(data).__name__}")
        if data.E is None and data.U is None:
            raise ValueError("training data has neither adiabatic energies (key E) nor a diabatic matrix (key U)")
        if data.E is not None:
            E = np.asarray(data.E, dtype=np.float64)
            ns = 1 if E.ndim == 1 else E.shape[1]
            where = f"E has shape {E.shape}"
        else:
            ns = data.U.shape[1]
            where = f"U has shape {data.U.shape}"
        if ns < 2:
            raise ValueError(f"a diabatic model needs energies of at least 2 states, but {where}; "
                             "use the linear model for one state")
        if self.n_states is not None and ns != self.n_states:
            raise ValueError(f"the model is declared with {self.n_states} states (--states) but the data has {ns} "
                             f"({where}); make them agree")
        if data.U is not None and data.U.shape[1] != ns:
            raise ValueError(f"U has shape {data.U.shape} but the data has {ns} states")
        for name, arr in (("E", data.E), ("U", data.U)):
            if arr is not None and not np.isfinite(arr).all():
                raise ValueError(f"{name} contains NaN or inf; remove those structures before fitting")
        if self.target in ("u", "both") and data.U is None:
            raise ValueError(f"target={self.target!r} needs the diabatic matrix (key U) in the data; "
                             "use target='adiabatic' to fit energies only")
        if self.target in ("adiabatic", "both") and data.E is None:
            raise ValueError(f"target={self.target!r} needs adiabatic energies (key E)")
        n, N = data.n_structures, data.n_atoms
        if gradients is not None:
            gradients = np.asarray(gradients, dtype=np.float64)
            if gradients.shape != (n, ns, N, 3):
                raise ValueError(f"gradients must have shape (n, n_states, N, 3) = {(n, ns, N, 3)}, "
                                 f"got {gradients.shape}")
            if not np.isfinite(gradients).all():
                raise ValueError("gradients contain NaN or inf")
        if couplings is not None:
            couplings = np.asarray(couplings, dtype=np.float64)
            if couplings.shape != (n, ns, ns, N, 3):
                raise ValueError(f"couplings must have shape (n, n_states, n_states, N, 3) = {(n, ns, ns, N, 3)}, "
                                 f"got {couplings.shape}")
            if not np.isfinite(couplings).all():
                raise ValueError("couplings contain NaN or inf")
        if (gradients is not None or couplings is not None) and self.target == "u":
            raise ValueError("gradients and couplings are adiabatic targets; use target='adiabatic' or 'both'")
        if n < 2:
            raise ValueError(f"need at least 2 training structures, got {n}")
        return ns, gradients, couplings

    # ------------------------------------------------------------------- fit
    def _candidate_degrees(self, n, variables="distances"):
        if self.degree is not None:
            return [int(self.degree)]
        if variables == "valence" and n >= 3000:
            # nonlinear fits (adiabatic targets) cost far more per coefficient; on nh3_dpem degree 8 took
            # 13 minutes and fitted worse than 7
            return [6, 7, 8] if self.target == "u" else [6, 7]
        return [4, 5] if n < 2000 else [5, 6]

    def _choose_per_element(self, cands) -> list[tuple[int, int]]:
        """``(configuration, ridge)`` indices of each element: the lowest CV error over the candidates.

        Elements not fitted linearly (couplings of an adiabatic fit) take the
        largest basis at the highest degree chosen for the others.
        """
        sse = np.stack([c[3] for c in cands])            # (n_configs, n_elements, n_ridges)
        scored = [q for q, e in enumerate(cands[0][1]) if not (self.target == "adiabatic" and e.i != e.j)]
        choice = [None] * sse.shape[1]
        for q in scored:
            c, r_ = np.unravel_index(int(np.argmin(sse[:, q, :])), (sse.shape[0], sse.shape[2]))
            choice[q] = (int(c), int(r_))
        top = max(cands[c][0][0] for c, _ in (choice[q] for q in scored))
        fallback = max((i for i, c in enumerate(cands) if c[0][0] == top), key=lambda i: cands[i][0][2])
        return [ch if ch is not None else (fallback, 0) for ch in choice]

    def _variable_transforms(self, data: Dataset, group) -> list:
        """``(name, make_transform(a))`` for each candidate kind of variables."""
        center = valence_center(data.symbols, group, data.R)
        if self.variables == "valence" and center is None:
            raise ValueError(f"valence variables need a central atom whose element occurs once and that no "
                             f"permutation moves; {' '.join(data.symbols)} has none")
        kinds = {"auto": ["distances"] + (["valence"] if center is not None else []),
                 "distances": ["distances"], "valence": ["valence"]}[self.variables]
        out = []
        for kind in kinds:
            if kind == "valence":
                out.append((kind, lambda a, c=center: DistanceTransform("valence", a, c)))
            else:
                out.append((kind, lambda a: DistanceTransform("morse", a)))
        return out

    def fit(self, data: Dataset, *, gradients=None, couplings=None, progress=None) -> "DiabaticModel":
        """Fit to a multi-state :class:`~pesfit.data.Dataset`.

        Parameters
        ----------
        data : Dataset
            ``E`` (n, ns) adiabatic energies [eV], ascending, and/or ``U``
            (n, ns, ns) diabatic matrices [eV].
        gradients : ndarray of shape (n, ns, N, 3), optional
            Adiabatic energy gradients [eV/Å] (``-forces``).
        couplings : ndarray of shape (n, ns, ns, N, 3), optional
            Derivative couplings ``d_kl`` [1/Å], any phase.
        progress : callable, optional
            ``progress(step, total, message)``.

        The fit is many small least-squares solves, so BLAS runs on one thread
        throughout (threaded BLAS on busy cores makes them up to 100x slower).
        """
        with blas_threads(1):
            return self._fit(data, gradients, couplings, progress)

    def _fit(self, data, gradients, couplings, progress) -> "DiabaticModel":
        self._validate_params()
        t0 = time.perf_counter()
        ns, gradients, couplings = self._check_multistate(data, gradients, couplings)
        R = np.ascontiguousarray(data.R, dtype=np.float64)
        n = len(R)
        Uref = None if data.U is None else np.asarray(data.U, dtype=np.float64)
        E = np.asarray(data.E, dtype=np.float64) if data.E is not None else np.linalg.eigvalsh(Uref)
        group = self.molecule_group(data)
        irreps = parse_irreps(self.irreps, ns, group)
        pseudoscalars = find_pseudoscalars(group, damping=self.pseudoscalar_damping,
                                           scale=float(self.pseudoscalar_scale))
        w = state_weights(E, self.energy_weight_e0)
        variable_kinds = self._variable_transforms(data, group)
        a_grid = [float(self.morse_a)] if self.morse_a is not None else [float(a) for a in self.morse_grid]
        ridges = [float(self.ridge)] if self.ridge is not None else list(DEFAULT_RIDGE_GRID)
        # linear targets: U elements (target u/both) or the adiabats sorted by state (adiabatic)
        if self.target == "adiabatic":
            Ylin = np.zeros((n, ns, ns))
            Ylin[:, np.arange(ns), np.arange(ns)] = E
        else:
            Ylin = Uref
        rng = np.random.default_rng(self.random_state)
        pp_grid = ([int(self.pseudoscalar_powers)] if self.pseudoscalar_powers is not None
                   else list(PSEUDOSCALAR_POWER_GRID))
        configs = {kind: [(d, d if self.coupling_degree is None else int(self.coupling_degree), pp)
                          for d in self._candidate_degrees(n, kind) for pp in pp_grid]
                   for kind, _ in variable_kinds}
        n_configs = sum(len(c) for c in configs.values()) * len(a_grid)
        need_cv = n_configs * len(ridges) > 1
        folds = np.array_split(rng.permutation(n), self.cv_folds) if need_cv else []
        if need_cv and min(len(f) for f in folds) < 2:
            raise ValueError(f"{n} structures are too few for {self.cv_folds}-fold cross-validation")
        labels = labels_of_folds(folds, n)
        self.cv_results_ = []
        total = n_configs * max(1, len(folds))
        step = 0
        best = None
        raws = {}
        ps_vals, _ = _pseudoscalar_values(pseudoscalars, R, False)
        for kind, make_transform in variable_kinds:
            for a in a_grid:
                transform = make_transform(a)
                cands = []      # per configuration: (config, elements, Phis, sse (n_elements, n_ridges))
                for config in configs[kind]:
                    d, cdeg, pp = config
                    if config not in raws:
                        raws[config] = build_elements(group, irreps, d, cdeg, pseudoscalars, pseudoscalar_powers=pp)
                    elements = prune_elements(raws[config], R, transform, pseudoscalars)
                    for e in elements:
                        if e.n_features > n:
                            raise ValueError(f"{e.label} has {e.n_features} basis functions for {n} structures; "
                                             "lower the degree or add data")
                    Phis = [design(e, R, transform, ps_vals) for e in elements]
                    sse = np.zeros((len(elements), len(ridges)))
                    for q, (e, P) in enumerate(zip(elements, Phis) if need_cv else ()):
                        if self.target == "adiabatic" and e.i != e.j:
                            continue
                        wt = np.sqrt(w[:, e.i] * w[:, e.j])
                        y = Ylin[:, e.i, e.j]
                        sse[q] = fold_factors(np.column_stack([P * wt[:, None], y * wt]), labels, len(folds),
                                              np.column_stack([P, y])).cv_sse(ridges)
                    step += len(folds)
                    if progress is not None and need_cv:
                        progress(step, total, f"CV {kind} degree {d} a={a:g}")
                    cands.append((config, elements, Phis, sse))
                    scored = [q for q, e in enumerate(elements) if not (self.target == "adiabatic" and e.i != e.j)]
                    self.cv_results_.append({
                        "variables": kind, "degree": d, "coupling_degree": cdeg, "pseudoscalar_powers": pp,
                        "morse_a": a,
                        "cv_rmse_meV": 1000 * float(np.sqrt(sum(sse[q].min() for q in scored) / (n * len(scored))))
                        if need_cv else None,
                        "cv_element_rmse_meV": {e.label: 1000 * float(np.sqrt(sse[q].min() / n))
                                                for q, e in enumerate(elements)} if need_cv else None,
                    })
                choice = self._choose_per_element(cands)
                score = float(sum(cands[c][3][q, r_] for q, (c, r_) in enumerate(choice)))
                if best is None or score < best[0]:
                    best = (score, kind, a, transform, [cands[c][1][q] for q, (c, _) in enumerate(choice)],
                            [cands[c][2][q] for q, (c, _) in enumerate(choice)], [ridges[r_] for _, r_ in choice],
                            [cands[c][0] for c, _ in choice])
        _, kind, a, transform, elements, Phis, el_ridges, el_configs = best
        # linear fit at the chosen hyperparameters
        coefs = []
        for e, P, lam in zip(elements, Phis, el_ridges):
            if self.target == "adiabatic" and e.i != e.j:
                coefs.append(np.zeros(P.shape[1]))
                continue
            wt = np.sqrt(w[:, e.i] * w[:, e.j])
            coefs.append(_solve_linear(P * wt[:, None], Ylin[:, e.i, e.j] * wt, lam))
        self.fit_info_ = {"starts": []}
        if self.target in ("adiabatic", "both"):
            coefs = self._fit_nonlinear(elements, Phis, coefs, el_ridges, R, E, w, Uref, gradients, couplings,
                                        transform, pseudoscalars, rng, progress)
        self.elements_ = elements
        self.coefs_ = coefs
        self.pseudoscalars_ = pseudoscalars
        self.irreps_ = irreps
        self.n_states_ = ns
        self.molecule_ = Molecule(tuple(data.symbols), group, transform)
        diagonal = [cfg[0] for e, cfg in zip(elements, el_configs) if e.i == e.j]
        off = [cfg[1] for e, cfg in zip(elements, el_configs) if e.i != e.j]
        self.hyperparameters_ = {
            "n_states": ns, "irreps": [str(i) for i in irreps], "target": self.target, "degree": max(diagonal),
            "coupling_degree": max(off), "morse_a": a, "variables": kind,
            "valence_center": transform.center if transform.kind == "valence" else None,
            "element_degree": {e.label: cfg[0] if e.i == e.j else cfg[1] for e, cfg in zip(elements, el_configs)},
            "element_pseudoscalar_powers": {e.label: cfg[2] for e, cfg in zip(elements, el_configs)},
            "ridge": {e.label: lam for e, lam in zip(elements, el_ridges)},
            "pseudoscalar_damping": self.pseudoscalar_damping, "pseudoscalar_scale": float(self.pseudoscalar_scale),
            "pseudoscalar_powers": self.pseudoscalar_powers, "energy_weight_e0": self.energy_weight_e0,
            "n_features": {e.label: e.n_features for e in elements},
        }
        if self.target == "adiabatic" and couplings is None:
            self.hyperparameters_["coupling_ridge"] = float(self.coupling_ridge)
        self._finish_fit(data._replace(E=E) if data.E is None else data, t0)
        return self

    def _finish_fit(self, data: Dataset, t0: float) -> None:
        import hashlib

        from invariants import pair_distances

        E = np.asarray(data.E, dtype=np.float64)
        self.e_min_ = float(E.min())
        self.r_min_ = pair_distances(np.asarray(data.R)).min(axis=0)
        self.reference_geometry_ = np.array(data.R[int(np.argmin(E[:, 0]))], dtype=np.float64)
        self.n_train_ = int(data.n_structures)
        self.fit_seconds_ = time.perf_counter() - t0
        self.train_report_ = self.evaluate(data)
        self.dataset_hash_ = hashlib.sha256(np.ascontiguousarray(data.R).tobytes()
                                            + np.ascontiguousarray(E).tobytes()).hexdigest()

    def _fit_nonlinear(self, elements, Phis, coefs, ridges, R, E, w, Uref, gradients, couplings, transform,
                       pseudoscalars, rng, progress):
        """Multi-start nonlinear least squares; starts compared on held-out structures.

        Each element's columns are whitened first, ``Phi = Q T`` (QR), and the
        fit runs in ``c' = T c`` (a well-conditioned Jacobian converges in far
        fewer iterations); the ridge ``lambda |D c|^2`` becomes ``|sqrt(lambda) D T^-1 c'|^2``.
        """
        import scipy.linalg
        from scipy.optimize import least_squares

        n, ns = E.shape
        Ts, Qs = [], []
        for P in Phis:
            Q, T = scipy.linalg.qr(P, mode="economic", check_finite=False)
            Qs.append(Q)
            Ts.append(T)

        def white(M, T):  # M T^-1 along the feature axis (axis 1)
            flat = np.moveaxis(M, 1, -1)
            out = scipy.linalg.solve_triangular(T, flat.reshape(-1, T.shape[0]).T, trans="T", check_finite=False)
            return np.moveaxis(out.T.reshape(flat.shape), -1, 1)

        penalties = []
        if self.target == "adiabatic" and couplings is None:  # energies barely constrain couplings: keep them small
            ridges = [lam if e.i == e.j else float(self.coupling_ridge) for e, lam in zip(elements, ridges)]
        for P, T, lam in zip(Phis, Ts, ridges):
            if lam > 0:
                D = np.linalg.norm(P, axis=0)
                penalties.append(np.sqrt(lam) * D[:, None] * scipy.linalg.solve_triangular(
                    T, np.eye(T.shape[0]), check_finite=False))
            else:
                penalties.append(None)
        dQs = None
        if gradients is not None or couplings is not None:
            ps_vals, ps_grads = _pseudoscalar_values(pseudoscalars, R, True)
            dQs = [white(design(e, R, transform, ps_vals, ps_grads, gradient=True)[1].reshape(n, e.n_features, -1), T)
                   for e, T in zip(elements, Ts)]
        H = None
        if couplings is not None:
            gap = E[:, None, :] - E[:, :, None]  # E_l - E_k
            H = (couplings * gap[:, :, :, None, None]).reshape(n, ns, ns, -1)
        G = None if gradients is None else gradients.reshape(n, ns, -1)

        def problem(rows):
            return _AdiabaticProblem(
                elements, [Q[rows] for Q in Qs], None if dQs is None else [J[rows] for J in dQs],
                E=E[rows], wE=w[rows], U=Uref[rows] if self.target == "both" else None,
                u_weight=float(self.u_weight), G=None if G is None else G[rows], g_weight=float(self.gradient_weight),
                H=None if H is None else H[rows], c_weight=float(self.coupling_weight), penalties=penalties)

        def solve(prob, x0, max_nfev):
            return least_squares(prob.residuals, x0, jac=prob.jacobian, method="trf", x_scale="jac",
                                 max_nfev=max_nfev)

        def to_white(cs):
            return np.concatenate([T @ c for T, c in zip(Ts, cs)])

        full = problem(np.arange(n))
        x_lin = to_white(coefs)
        starts, scales = [], []
        for k in range(self.n_starts):
            # start 0: the linear fit as it is (no coupling for target="adiabatic"); others: random couplings.
            # Zero coupling is a stationary point of the phase-free coupling rows, so with them all starts are random.
            scale = 0.0 if k == 0 and H is None else float(self.coupling_init)
            x0 = x_lin.copy()
            for e, Q, a_, b_ in zip(elements, Qs, full.offsets[:-1], full.offsets[1:]):
                if e.i == e.j or scale == 0.0:
                    continue
                c = rng.normal(size=Q.shape[1])  # Q has orthonormal columns: RMS of Q c = |c| / sqrt(n)
                x0[a_:b_] += c * scale * np.sqrt(n) / np.linalg.norm(c)
            starts.append(x0)
            scales.append(scale)
        info = self.fit_info_
        if len(starts) > 1:
            n_val = max(1, int(round(self.validation_fraction * n)))
            perm = rng.permutation(n)
            val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])
            sub = problem(train)
            best = None
            for k, x0 in enumerate(starts):
                res = solve(sub, x0, self.max_nfev)
                Uv = np.zeros((len(val), ns, ns))
                for e, Q, c in zip(elements, Qs, sub.unpack(res.x)):
                    Uv[:, e.i, e.j] = Uv[:, e.j, e.i] = Q[val] @ c
                v_rmse = 1000 * float(np.sqrt(np.mean((np.linalg.eigvalsh(Uv) - E[val]) ** 2)))
                info["starts"].append({"start": k, "coupling_init_eV": scales[k], "cost": float(res.cost),
                                       "nfev": int(res.nfev), "status": int(res.status),
                                       "validation_energy_rmse_meV": v_rmse})
                if progress is not None:
                    progress(k + 1, len(starts) + 1, f"start {k + 1}/{len(starts)}: validation {v_rmse:.2f} meV")
                if best is None or v_rmse < best[0]:
                    best = (v_rmse, k, res.x)
            info["best_start"] = best[1]
            x_start = best[2]
        else:
            info["best_start"] = 0
            x_start = starts[0]
        res = solve(full, x_start, self.max_nfev)
        info["final"] = {"cost": float(res.cost), "nfev": int(res.nfev), "status": int(res.status)}
        if progress is not None:
            progress(len(starts) + 1, len(starts) + 1, f"final fit: cost {res.cost:.4g}")
        return [scipy.linalg.solve_triangular(T, c, check_finite=False) for T, c in zip(Ts, full.unpack(res.x))]

    # ------------------------------------------------------------- predict
    @property
    def n_basis(self) -> int | None:
        elements = getattr(self, "elements_", None)
        return None if elements is None else int(sum(e.n_features for e in elements))

    def predict_diabatic(self, R, gradient: bool = False):
        """Diabatic matrix ``U`` (n, ns, ns) [eV] and, with ``gradient``, ``dU/dR`` (n, ns, ns, N, 3) [eV/Å]."""
        self._check_fitted()
        R, single = self._check_coordinates(R)
        out = evaluate_diabatic(self.elements_, self.coefs_, self.molecule_.transform, self.pseudoscalars_, R,
                                gradient=gradient)
        if single:
            return tuple(o[0] for o in out) if gradient else out[0]
        return out

    def predict_adiabatic(self, R, *, gradients: bool = True, couplings: bool = True) -> dict:
        """Adiabatic energies, states and (optionally) gradients and couplings.

        Returns the dict of :func:`adiabatic_states` (``energies`` (n, ns) [eV],
        ``vectors``, ``gradients`` (n, ns, N, 3) [eV/Å], ``h`` [eV/Å],
        ``nac`` (n, ns, ns, N, 3) [1/Å]) plus ``U`` and ``dU``; one structure
        ``R`` (N, 3) drops the leading axis.
        """
        self._check_fitted()
        R, single = self._check_coordinates(R)
        need = gradients or couplings
        res = evaluate_diabatic(self.elements_, self.coefs_, self.molecule_.transform, self.pseudoscalars_, R,
                                gradient=need)
        U, dU = res if need else (res, None)
        out = adiabatic_states(U, dU)
        out["U"] = U
        if need:
            out["dU"] = dU
            if not gradients:
                del out["gradients"]
            if not couplings:
                del out["h"], out["nac"]
        return {k: v[0] for k, v in out.items()} if single else out

    def _energy_and_gradient(self, R, gradient: bool):
        res = evaluate_diabatic(self.elements_, self.coefs_, self.molecule_.transform, self.pseudoscalars_, R,
                                gradient=gradient)
        if not gradient:
            return np.linalg.eigvalsh(res)
        st = adiabatic_states(*res)
        return st["energies"], st["gradients"]

    def evaluate(self, data: Dataset) -> dict:
        """Errors of all states' adiabatic energies (:func:`~pesfit.metrics.error_report`), per state and per ``U_ij``.

        Extra keys: ``states`` (per-state RMSE/MAE/max in meV), and with ``U``
        in the data ``u_rmse_meV`` (per element), ``u_abs_rmse_meV`` (RMSE of
        ``|U_ij|`` for couplings, phase-free) and ``u_rmse_all_meV``.
        """
        self._check_fitted()
        data = self._aligned(data)
        if data.E is None and data.U is None:
            raise ValueError("dataset has neither energies (E) nor a diabatic matrix (U) to compare with")
        ns = self.n_states_
        Eref = np.asarray(data.E, dtype=np.float64) if data.E is not None else np.linalg.eigvalsh(data.U)
        if Eref.ndim != 2 or Eref.shape[1] != ns:
            raise ValueError(f"the model has {ns} states but the data's energies have shape {Eref.shape}")
        U = self.predict_diabatic(data.R)
        if U.ndim == 2:
            U = U[None]
        Epred = np.linalg.eigvalsh(U)
        report = error_report(Epred, Eref, e_min=getattr(self, "e_min_", None),
                              regions=region_labels(data.z, data.R))
        states = []
        for k in range(ns):
            err = Epred[:, k] - Eref[:, k]
            states.append({"state": k + 1, "energy_rmse_meV": 1000 * float(np.sqrt(np.mean(err**2))),
                           "energy_mae_meV": 1000 * float(np.mean(np.abs(err))),
                           "energy_max_meV": 1000 * float(np.max(np.abs(err)))})
        report["states"] = states
        if data.U is not None:
            if data.U.shape[1] != ns:
                raise ValueError(f"the model has {ns} states but U has shape {data.U.shape}")
            Ur = np.asarray(data.U)
            report["u_rmse_meV"] = {}
            report["u_abs_rmse_meV"] = {}
            for i, j in element_pairs(ns):
                err = U[:, i, j] - Ur[:, i, j]
                report["u_rmse_meV"][f"U{i + 1}{j + 1}"] = 1000 * float(np.sqrt(np.mean(err**2)))
                if i != j:
                    aerr = np.abs(U[:, i, j]) - np.abs(Ur[:, i, j])
                    report["u_abs_rmse_meV"][f"U{i + 1}{j + 1}"] = 1000 * float(np.sqrt(np.mean(aerr**2)))
            iu = np.triu_indices(ns)
            report["u_rmse_all_meV"] = 1000 * float(np.sqrt(np.mean((U - Ur)[:, iu[0], iu[1]] ** 2)))
        return report

    # ---------------------------------------------------------- persistence
    def _state(self) -> dict:
        bases, index = [], {}
        elements = []
        for e, c in zip(self.elements_, self.coefs_):
            terms = []
            for t, wfull in zip(e.terms, _split(e, c)):
                key = id(t.basis)
                if key not in index:
                    index[key] = len(bases)
                    bases.append(t.basis.to_dict())
                terms.append({"powers": list(t.powers), "basis": index[key], "keep": t.keep.astype(int).tolist(),
                              "coef": wfull.tolist()})
            elements.append({"i": e.i, "j": e.j, "irrep": str(e.irrep), "terms": terms})
        return {"n_states": self.n_states_, "irreps": [str(i) for i in self.irreps_],
                "pseudoscalars": [p.to_dict() for p in self.pseudoscalars_], "bases": bases, "elements": elements}

    def _set_state(self, state: dict) -> None:
        ns = int(state["n_states"])
        self.n_states_ = ns
        self.irreps_ = tuple(Irrep.parse(s) for s in state["irreps"])
        if len(self.irreps_) != ns:
            raise ValueError(f"model lists {len(self.irreps_)} irreps for {ns} states")
        self.pseudoscalars_ = [Pseudoscalar.from_dict(p) for p in state["pseudoscalars"]]
        bases = [Basis.from_dict(b) for b in state["bases"]]
        elements, coefs = [], []
        pairs = element_pairs(ns)
        if [(int(e["i"]), int(e["j"])) for e in state["elements"]] != pairs:
            raise ValueError(f"model elements do not cover the upper triangle of a {ns}x{ns} matrix")
        for ed in state["elements"]:
            terms, cs = [], []
            irrep = Irrep.parse(ed["irrep"])
            if irrep != self.irreps_[ed["i"]] * self.irreps_[ed["j"]]:
                raise ValueError(f"element U{ed['i'] + 1}{ed['j'] + 1} has symmetry {irrep}, inconsistent with the "
                                 "states' irreps")
            for td in ed["terms"]:
                b = bases[int(td["basis"])]
                keep = np.asarray(td["keep"], dtype=bool)
                coef = np.asarray(td["coef"], dtype=np.float64)
                if keep.shape != (b.n_basis,) or coef.shape != (b.n_basis,):
                    raise ValueError(f"element U{ed['i'] + 1}{ed['j'] + 1}: coefficients do not match the basis size")
                if len(td["powers"]) != len(self.pseudoscalars_):
                    raise ValueError("pseudoscalar powers do not match the pseudoscalars")
                terms.append(ElementTerm(tuple(int(p) for p in td["powers"]), b, keep))
                cs.append(coef[keep])
            elements.append(MatrixElement(int(ed["i"]), int(ed["j"]), irrep, tuple(terms)))
            coefs.append(np.concatenate(cs))
        self.elements_ = elements
        self.coefs_ = coefs

    # --------------------------------------------------------------- export
    def export_spec(self) -> dict:
        """What a Fortran/C exporter needs for ``U``, ``dU/dR`` and the adiabatic quantities.

        Besides the common fields (``transform``, ``symbols``, units,
        ``checksum``, ``r_min``), it has ``n_states``, ``irreps``,
        ``pseudoscalars`` (each: ``quadruples``, ``signs``, ``damping``,
        ``scale``; ``Psi = sum_q s_q f(V_q)``), ``elements`` (each: ``i``,
        ``j``, ``irrep``, ``terms``: ``powers`` of the pseudoscalars,
        ``program`` and full-length ``weights``; ``U_ij = sum_t prod_p
        Psi_p^powers_p * (weights . program(x))``), ``phase_convention``,
        ``degeneracy_eps_eV``, and reference callables ``predict`` (R ->
        adiabatic energies (n, ns), gradients (n, ns, N, 3)),
        ``predict_diabatic`` (R -> U, dU) and ``predict_adiabatic`` (R -> dict).
        """
        self._check_fitted()
        model = self
        elements = []
        for e, c in zip(self.elements_, self.coefs_):
            elements.append({"i": e.i, "j": e.j, "irrep": str(e.irrep),
                             "terms": [{"powers": tuple(t.powers), "program": t.basis.program, "weights": w}
                                       for t, w in zip(e.terms, _split(e, c))]})

        def predict(R):
            res = model.predict_adiabatic(R, couplings=False)
            return res["energies"], res["gradients"]

        def predict_diabatic(R):
            return model.predict_diabatic(R, gradient=True)

        def predict_adiabatic(R):
            return model.predict_adiabatic(R)

        spec = self._export_common(
            n_states=self.n_states_, irreps=[str(i) for i in self.irreps_],
            pseudoscalars=[p.to_dict() for p in self.pseudoscalars_], elements=elements,
            phase_convention="each adiabatic state vector v_k (column of the eigenvector matrix of U, ascending "
                             "energies) has its largest-magnitude component positive (ties: lowest index); "
                             "d_kl = v_k^T dU v_l (lambda_l - lambda_k) / ((lambda_l - lambda_k)^2 + eps^2)",
            degeneracy_eps_eV=DEGENERACY_EPS, predict_diabatic=predict_diabatic, predict_adiabatic=predict_adiabatic)
        spec["predict"] = predict
        return spec
