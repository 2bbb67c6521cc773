"""Minimum search and harmonic vibrational analysis on a fitted surface.

:func:`minimize` finds a stationary point from a start geometry (BFGS on the
analytic gradient, then Newton steps on the finite-difference Hessian with
rigid motions projected out).  :func:`hessian` differentiates the analytic
forces by central differences, ``H_ij = -(F_i(R + h e_j) - F_i(R - h e_j)) / 2h``
(all ``6N`` displaced structures in one batched call), and
:func:`harmonic_analysis` diagonalises the mass-weighted Hessian in the space
orthogonal to translations and rotations, giving the ``3N - 6`` (``3N - 5``
for a linear molecule) harmonic wavenumbers

    nu~_k = sqrt(lambda_k) / (2 pi c),   lambda_k eigenvalues of M^-1/2 H M^-1/2,

in cm^-1 (imaginary ones as negative numbers) with a label for each mode
from the internal coordinates it moves (:func:`label_modes`).

Units: Å, eV, atomic mass units; CODATA 2018 for eV, amu and c.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

__all__ = ["HarmonicResult", "atomic_masses", "minimize", "hessian", "harmonic_analysis", "label_modes",
           "internal_coordinates", "optimize_and_analyse"]

log = logging.getLogger(__name__)

# CODATA 2018 (the constants pesfit.units is built from)
_EV_J = 1.602176634e-19
_AMU_KG = 1.66053906660e-27
_C_CM_S = 29979245800.0
#: sqrt(eV / (Å^2 amu)) in rad/s divided by 2 pi c: wavenumber of eigenvalue 1 eV/(Å^2 amu)
EIGENVALUE_TO_CM = np.sqrt(_EV_J / (1e-20 * _AMU_KG)) / (2 * np.pi * _C_CM_S)  # 521.47 cm^-1

DEFAULT_STEP = 1e-3  # Å, finite-difference step of the Hessian


def atomic_masses(symbols, kind: str = "isotope") -> np.ndarray:
    """Atomic masses [amu].

    Parameters
    ----------
    symbols : sequence of str
    kind : {"isotope", "average"}
        ``"isotope"``: the most abundant isotope (¹H 1.00782503, ¹²C 12, ¹⁶O
        15.99491462, the spectroscopic convention); ``"average"``: standard
        atomic weights (what ``ase.Atoms.get_masses`` returns).

    Examples
    --------
    >>> atomic_masses(["C", "H"]).round(5).tolist()
    [12.0, 1.00783]
    """
    from ase.data import atomic_masses as average, atomic_masses_common as isotope, atomic_numbers

    table = {"isotope": isotope, "average": average}
    if kind not in table:
        raise ValueError(f"masses must be 'isotope' or 'average', got {kind!r}")
    try:
        return np.array([table[kind][atomic_numbers[s]] for s in symbols], dtype=np.float64)
    except KeyError as exc:
        raise ValueError(f"unknown element {exc}") from None


def _symbols(model) -> tuple:
    from .ase import model_symbols

    return model_symbols(model)


def _start(model, R0) -> np.ndarray:
    n = len(_symbols(model))
    if R0 is None:
        R0 = getattr(model, "reference_geometry_", None)
        if R0 is None:
            raise ValueError("no start geometry: give one (--geometry FILE), or refit the model so that it "
                             "stores its lowest-energy training structure (reference_geometry_)")
    R0 = np.array(R0, dtype=np.float64)
    if R0.shape != (n, 3):
        raise ValueError(f"start geometry must have shape ({n}, 3) [Å], got {R0.shape}")
    return R0


# ------------------------------------------------------------------ geometry
def _rigid_basis(R: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Orthonormal basis (3N, k) of mass-weighted translations and rotations (k = 6, or 5 if linear)."""
    n = len(R)
    sm = np.sqrt(masses)
    X = R - (masses[:, None] * R).sum(0) / masses.sum()
    vecs = []
    for a in range(3):
        t = np.zeros((n, 3))
        t[:, a] = sm
        vecs.append(t.ravel())
        e = np.zeros(3)
        e[a] = 1.0
        vecs.append((np.cross(e, X) * sm[:, None]).ravel())
    D = np.array(vecs).T
    U, s, _ = np.linalg.svd(D, full_matrices=False)
    return U[:, s > 1e-6 * s[0]]


# ------------------------------------------------------------------ Hessian
def hessian(model, R, *, step: float = DEFAULT_STEP) -> np.ndarray:
    """Cartesian Hessian [eV/Å^2] by central differences of the analytic forces.

    Parameters
    ----------
    model : fitted pesfit model (``predict(R, forces=True)``)
    R : ndarray of shape (N, 3) [Å]
    step : float
        Displacement [Å].

    Returns
    -------
    ndarray of shape (3N, 3N), symmetrised
    """
    R = np.asarray(R, dtype=np.float64)
    m = R.size
    disp = np.eye(m).reshape(m, *R.shape) * step
    batch = np.concatenate([R[None] + disp, R[None] - disp])
    _, F = model.predict(batch, forces=True)
    F = np.asarray(F).reshape(2, m, m)
    H = -(F[0] - F[1]) / (2 * step)
    return 0.5 * (H + H.T)


def _internal_space(R, masses):
    """Orthonormal basis (3N, 3N - k) of mass-weighted vibrations."""
    D = _rigid_basis(R, masses)
    Q, _ = np.linalg.qr(np.hstack([D, np.eye(R.size)]))
    return Q[:, D.shape[1]:R.size], D.shape[1]


# ---------------------------------------------------------------- minimum
def minimize(model, R0=None, *, fmax: float = 1e-6, max_iter: int = 2000, newton_steps: int = 5,
             step: float = DEFAULT_STEP):
    """Minimum (or the stationary point near ``R0``) of the surface.

    Parameters
    ----------
    model : fitted pesfit model
    R0 : ndarray of shape (N, 3) [Å], optional
        Start; default the model's ``reference_geometry_`` (lowest-energy
        training structure).
    fmax : float
        Convergence threshold on the largest force component [eV/Å].
    max_iter : int
        BFGS iterations.
    newton_steps : int
        At most this many Newton steps on the projected Hessian to polish
        the BFGS result (only where all vibrational curvatures are positive).

    Returns
    -------
    R : ndarray of shape (N, 3) [Å]
    E : float [eV]
    info : dict with ``converged``, ``max_force_eV_A``, ``n_iter``, ``n_newton``
    """
    import scipy.optimize

    R0 = _start(model, R0)
    shape = R0.shape

    def fun(x):
        E, F = model.predict(x.reshape(shape), forces=True)
        return float(E), -np.asarray(F).ravel()

    res = scipy.optimize.minimize(fun, R0.ravel(), jac=True, method="BFGS",
                                  options={"gtol": fmax, "maxiter": max_iter})
    R = res.x.reshape(shape)
    masses = np.ones(len(R))
    n_newton = 0
    for _ in range(newton_steps):
        E, F = model.predict(R, forces=True)
        if np.abs(F).max() <= fmax * 1e-2:
            break
        Q, _ = _internal_space(R, masses)
        H = Q.T @ hessian(model, R, step=step) @ Q
        w, V = np.linalg.eigh(H)
        if w[0] <= 0:
            break
        dx = Q @ (V @ ((V.T @ (Q.T @ np.asarray(F).ravel())) / w))
        R_new = R + dx.reshape(shape)
        if model.predict(R_new) > E + 1e-9:
            break
        R = R_new
        n_newton += 1
    E, F = model.predict(R, forces=True)
    fm = float(np.abs(F).max())
    info = {"converged": fm <= fmax, "max_force_eV_A": fm, "n_iter": int(res.nit), "n_newton": n_newton}
    if not info["converged"]:
        log.warning("minimum search stopped with max |F| = %.3g eV/Å > %.3g", fm, fmax)
    return R, float(E), info


# ----------------------------------------------------------------- labels
_BOND_SCALE = 1.3  # bonded if r < 1.3 (r_cov,i + r_cov,j)


def _bonds(symbols, R):
    from ase.data import atomic_numbers, covalent_radii

    rc = np.array([covalent_radii[atomic_numbers[s]] for s in symbols])
    n = len(R)
    d = np.linalg.norm(R[:, None] - R[None], axis=-1)
    bonds = [(i, j) for i in range(n) for j in range(i + 1, n) if d[i, j] < _BOND_SCALE * (rc[i] + rc[j])]
    if not bonds:  # e.g. a van der Waals complex: keep the shortest distance of each atom
        bonds = sorted({tuple(sorted((i, int(np.argsort(d[i])[1])))) for i in range(n)})
    return bonds


def _angle(a, b, c):
    u, v = a - b, c - b
    return np.arccos(np.clip(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)), -1, 1))


def _dihedral(a, b, c, d):
    b0, b1, b2 = a - b, c - b, d - c
    b1 = b1 / np.linalg.norm(b1)
    v = b0 - (b0 @ b1) * b1
    w = b2 - (b2 @ b1) * b1
    return np.arctan2(np.cross(b1, v) @ w, v @ w)


def internal_coordinates(symbols, R) -> list[dict]:
    """Primitive internal coordinates of a structure for labelling.

    Bonds (covalent radii), angles between bonds, linear bends (angles above
    175°: distance of the central atom from the line of its neighbours),
    out-of-plane heights of atoms with three neighbours, and torsions.

    Returns
    -------
    list of dict with ``kind`` (stretch, bend, linear bend, out-of-plane,
    torsion), ``atoms``, ``name`` (e.g. ``"H-C-O"``), ``scale`` [Å per
    unit: 1 for lengths, a bond length for angles] and ``value(R)``.
    """
    R = np.asarray(R, dtype=np.float64)
    symbols = list(symbols)
    bonds = _bonds(symbols, R)
    nb = {i: sorted({b for a, b in bonds if a == i} | {a for a, b in bonds if b == i}) for i in range(len(R))}
    out = []
    for i, j in bonds:
        a, b = sorted([symbols[i], symbols[j]])
        out.append({"kind": "stretch", "atoms": (i, j), "name": f"{a}-{b}", "scale": 1.0,
                    "value": lambda X, i=i, j=j: np.linalg.norm(X[i] - X[j])})
    for j in range(len(R)):
        for x, i in enumerate(nb[j]):
            for k in nb[j][x + 1:]:
                e1, e3 = sorted([symbols[i], symbols[k]])
                name = f"{e1}-{symbols[j]}-{e3}"
                scale = 0.5 * (np.linalg.norm(R[i] - R[j]) + np.linalg.norm(R[k] - R[j]))
                if _angle(R[i], R[j], R[k]) > np.deg2rad(175):
                    out.append({"kind": "linear bend", "atoms": (i, j, k), "name": name, "scale": 1.0,
                                "value": lambda X, i=i, j=j, k=k: _line_distance(X[j], X[i], X[k])})
                else:
                    out.append({"kind": "bend", "atoms": (i, j, k), "name": name, "scale": scale,
                                "value": lambda X, i=i, j=j, k=k: _angle(X[i], X[j], X[k])})
        if len(nb[j]) == 3:
            a, b, c = nb[j]
            out.append({"kind": "out-of-plane", "atoms": (j, a, b, c), "name": symbols[j], "scale": 1.0,
                        "value": lambda X, j=j, a=a, b=b, c=c: _height(X[j], X[a], X[b], X[c])})
    for j, k in bonds:
        for i in nb[j]:
            for m in nb[k]:
                if len({i, j, k, m}) < 4:
                    continue
                if _angle(R[i], R[j], R[k]) > np.deg2rad(175) or _angle(R[j], R[k], R[m]) > np.deg2rad(175):
                    continue
                scale = 0.5 * (np.linalg.norm(R[i] - R[j]) + np.linalg.norm(R[m] - R[k]))
                out.append({"kind": "torsion", "atoms": (i, j, k, m),
                            "name": f"{symbols[i]}-{symbols[j]}-{symbols[k]}-{symbols[m]}", "scale": scale,
                            "value": lambda X, i=i, j=j, k=k, m=m: _dihedral(X[i], X[j], X[k], X[m])})
    return out


def _line_distance(p, a, b):
    u = (b - a) / np.linalg.norm(b - a)
    d = p - a
    return np.linalg.norm(d - (d @ u) * u)


def _height(p, a, b, c):
    n = np.cross(b - a, c - a)
    return (p - a) @ n / np.linalg.norm(n)


def _wilson_b(coords, R, eps=1e-5) -> np.ndarray:
    """dq/dx of the internal coordinates (n_coords, 3N), by central differences; linear bends by magnitude."""
    n = R.size
    B = np.zeros((len(coords), n))
    for j in range(n):
        d = np.zeros(n)
        d[j] = eps
        d = d.reshape(R.shape)
        for i, c in enumerate(coords):
            if c["kind"] == "linear bend":
                continue
            dq = c["value"](R + d) - c["value"](R - d)
            if c["kind"] == "torsion":
                dq = (dq + np.pi) % (2 * np.pi) - np.pi
            B[i, j] = dq / (2 * eps)
    return B


def label_modes(symbols, R, modes, hessian=None) -> list[str]:
    """Descriptive labels of normal modes from the internal coordinates they move.

    With the Hessian, each mode's potential-energy distribution over the
    primitive internal coordinates (:func:`internal_coordinates`) is
    ``P_c = dq_c (F dq)_c / sum``, where ``dq = B L`` for the Cartesian mode
    ``L``, ``B`` is Wilson's matrix and ``F = (B^T)^+ H B^+`` the internal
    force constants.  Without it, the squared displacements (angles times a
    bond length) are used.  Coordinates of the same kind and elements form a
    class; the class with the largest share names the mode, and a class of
    several coordinates moved with equal signs is "sym.", with mixed signs
    "asym.".  A second class with at least 60 % of the first's share is
    appended after a "+".  Linear bends enter by magnitude only.

    Parameters
    ----------
    symbols : sequence of str
    R : ndarray of shape (N, 3) [Å]
    modes : ndarray of shape (n_modes, N, 3)
        Cartesian displacements (any normalisation).
    hessian : ndarray of shape (3N, 3N) [eV/Å^2], optional

    Returns
    -------
    list of str, e.g. ``["C out-of-plane", "H-C-O asym. bend", "C-O stretch", "C-H sym. stretch"]``
    """
    R = np.asarray(R, dtype=np.float64)
    coords = internal_coordinates(symbols, R)
    if not coords:
        return ["mode"] * len(modes)
    B = _wilson_b(coords, R)
    F = None
    if hessian is not None:
        Bp = np.linalg.pinv(B, rcond=1e-8)
        F = Bp.T @ np.asarray(hessian) @ Bp
    scale = np.array([c["scale"] for c in coords])
    linear = [i for i, c in enumerate(coords) if c["kind"] == "linear bend"]
    labels = []
    for L in np.asarray(modes, dtype=np.float64):
        L = L / np.linalg.norm(L)
        dq = B @ L.ravel()
        for i in linear:
            dq[i] = coords[i]["value"](R + 1e-4 * L) / 1e-4
        if F is not None and not linear:
            share = dq * (F @ dq)
        else:
            share = (scale * dq) ** 2
        classes: dict = {}
        for c, d, w in zip(coords, dq, share):
            classes.setdefault((c["kind"], c["name"]), []).append((d, w))
        weight = {k: float(sum(w for _, w in v)) for k, v in classes.items()}
        ranked = sorted(weight, key=weight.get, reverse=True)
        parts = [_class_label(ranked[0], classes[ranked[0]])]
        if len(ranked) > 1 and weight[ranked[1]] >= 0.6 * weight[ranked[0]]:
            parts.append(_class_label(ranked[1], classes[ranked[1]]))
        labels.append(" + ".join(parts))
    return labels


def _class_label(key, members) -> str:
    kind, name = key
    amps = np.array([d for d, _ in members])
    big = amps[np.abs(amps) > 0.3 * np.abs(amps).max()] if np.abs(amps).max() > 0 else amps[:0]
    sym = ""
    if kind not in ("linear bend",) and len(amps) > 1 and len(big) > 1:
        sym = "sym. " if (np.all(big > 0) or np.all(big < 0)) else "asym. "
    if kind == "out-of-plane":
        return f"{name} out-of-plane"
    return f"{name} {sym}{kind}"


# ------------------------------------------------------------- analysis
@dataclass(frozen=True)
class HarmonicResult:
    """Harmonic analysis at a stationary point.

    Attributes
    ----------
    symbols : tuple of str
    geometry_A : ndarray of shape (N, 3) [Å]
    energy_eV : float
    masses_amu : ndarray of shape (N,)
    frequencies_cm : ndarray of shape (n_vib,)
        Ascending harmonic wavenumbers [cm^-1]; imaginary ones negative.
    modes : ndarray of shape (n_vib, N, 3)
        Cartesian normal-mode displacements (un-mass-weighted, unit norm).
    labels : list of str
    hessian : ndarray of shape (3N, 3N) [eV/Å^2]
    linear : bool
    info : dict
        Minimum-search information (when made by :func:`optimize_and_analyse`).
    """

    symbols: tuple
    geometry_A: np.ndarray
    energy_eV: float
    masses_amu: np.ndarray
    frequencies_cm: np.ndarray
    modes: np.ndarray
    labels: list
    hessian: np.ndarray
    linear: bool
    info: dict = field(default_factory=dict)

    @property
    def n_imaginary(self) -> int:
        return int(np.sum(self.frequencies_cm < 0))

    @property
    def zpe_cm(self) -> float:
        """Harmonic zero-point energy sum(nu~)/2 [cm^-1] over the real frequencies."""
        f = self.frequencies_cm
        return float(0.5 * f[f > 0].sum())

    def to_dict(self) -> dict:
        return {"symbols": list(self.symbols), "energy_eV": self.energy_eV,
                "geometry_A": self.geometry_A.tolist(), "masses_amu": self.masses_amu.tolist(),
                "frequencies_cm": self.frequencies_cm.tolist(), "labels": list(self.labels),
                "n_imaginary": self.n_imaginary, "zpe_harmonic_cm": self.zpe_cm, "linear": self.linear,
                **self.info}

    def format(self) -> str:
        lines = [f"stationary point: E = {self.energy_eV:.6f} eV"
                 + (f", max |F| = {self.info['max_force_eV_A']:.1e} eV/Å" if "max_force_eV_A" in self.info else ""),
                 "geometry (Å):"]
        for s, (x, y, z) in zip(self.symbols, self.geometry_A):
            lines.append(f"  {s:<2s} {x:12.6f} {y:12.6f} {z:12.6f}")
        lines.append(f"harmonic frequencies ({len(self.frequencies_cm)} modes"
                     + (", linear molecule" if self.linear else "") + "):")
        lines.append(f"  {'mode':>4}  {'cm-1':>9}  description")
        for k, (f, lab) in enumerate(zip(self.frequencies_cm, self.labels)):
            fs = f"{f:9.1f}" if f >= 0 else f"{-f:8.1f}i"
            lines.append(f"  {k + 1:>4}  {fs}  {lab}")
        lines.append(f"harmonic ZPE: {self.zpe_cm:.1f} cm-1")
        if self.n_imaginary:
            lines.append(f"{self.n_imaginary} imaginary frequenc{'y' if self.n_imaginary == 1 else 'ies'}: "
                         "this is not a minimum")
        return "\n".join(lines)


def harmonic_analysis(model, R, *, masses="isotope", step: float = DEFAULT_STEP, info=None) -> HarmonicResult:
    """Harmonic frequencies and normal modes at geometry ``R``.

    Parameters
    ----------
    model : fitted pesfit model
    R : ndarray of shape (N, 3) [Å]
        A stationary point (see :func:`minimize`).
    masses : {"isotope", "average"} or ndarray of shape (N,) [amu]
    step : float
        Finite-difference step of the Hessian [Å].

    Returns
    -------
    HarmonicResult
    """
    symbols = _symbols(model)
    R = np.array(R, dtype=np.float64)
    m = atomic_masses(symbols, masses) if isinstance(masses, str) else np.asarray(masses, dtype=np.float64)
    if m.shape != (len(symbols),):
        raise ValueError(f"masses must have shape ({len(symbols)},), got {m.shape}")
    H = hessian(model, R, step=step)
    inv_sqrt_m = np.repeat(1.0 / np.sqrt(m), 3)
    Hmw = H * inv_sqrt_m[:, None] * inv_sqrt_m[None, :]
    Q, n_rigid = _internal_space(R, m)
    w, V = np.linalg.eigh(Q.T @ Hmw @ Q)
    freqs = np.sign(w) * np.sqrt(np.abs(w)) * EIGENVALUE_TO_CM
    cart = (Q @ V).T * inv_sqrt_m[None, :]
    cart /= np.linalg.norm(cart, axis=1, keepdims=True)
    modes = cart.reshape(-1, len(symbols), 3)
    E = float(model.predict(R))
    return HarmonicResult(tuple(symbols), R, E, m, freqs, modes, label_modes(symbols, R, modes, H), H,
                          n_rigid == 5, dict(info or {}))


def optimize_and_analyse(model, R0=None, *, masses="isotope", fmax: float = 1e-6,
                         step: float = DEFAULT_STEP) -> HarmonicResult:
    """:func:`minimize` from ``R0`` (default the model's reference geometry), then :func:`harmonic_analysis`."""
    R, _, info = minimize(model, R0, fmax=fmax, step=step)
    return harmonic_analysis(model, R, masses=masses, step=step, info=info)
