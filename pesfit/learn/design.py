"""Initial design: structures to compute before the first fit.

From one or more given structures [Å]:

* :func:`minimise_on_oracle` -- relax a structure on the oracle (ASE BFGS on
  its forces, or Powell on energies for energy-only methods such as FCI);
* :func:`hessian_on_oracle` -- central finite differences [eV/Å²];
* :func:`wigner_samples` -- the harmonic Wigner distribution at a temperature
  [K] (zero-point motion included; normal-mode sampling);
* :func:`fragment_samples` -- reactive channels: fragments rigidly rotated at
  random and placed at given centroid separations [Å].

The energy cut (points more than the window above the lowest energy are not
fitted) is applied by the loop once the energies are known.
"""
from __future__ import annotations

import numpy as np

__all__ = ["minimise_on_oracle", "hessian_on_oracle", "wigner_samples", "fragment_samples"]

MIN_FREQUENCY_CM = 100.0  #: modes below this [cm^-1] (rotations, translations, loose fragments) are not sampled


def _energy_forces(calc, symbols, R, forces: bool):
    from ase import Atoms

    atoms = Atoms(symbols=list(symbols), positions=R)
    atoms.calc = calc
    e = atoms.get_potential_energy()
    return (e, atoms.get_forces()) if forces else (e, None)


def minimise_on_oracle(oracle, symbols, R, *, fmax: float = 0.01, steps: int = 300):
    """Relaxed geometry [Å] and its energy [eV] (runs where it is called: a Dask task).

    ``fmax`` is the force threshold [eV/Å] (ASE BFGS); for energy-only
    calculators Powell's method minimises the energy to about 1e-6 eV.
    """
    from ase import Atoms
    from ase.optimize import BFGS

    calc = oracle.make_calculator()
    if "forces" in getattr(calc, "implemented_properties", ()):
        atoms = Atoms(symbols=list(symbols), positions=np.asarray(R, dtype=np.float64))
        atoms.calc = calc
        BFGS(atoms, logfile=None).run(fmax=fmax, steps=steps)
        return atoms.get_positions(), float(atoms.get_potential_energy())
    import scipy.optimize

    R0 = np.asarray(R, dtype=np.float64)
    res = scipy.optimize.minimize(lambda x: _energy_forces(calc, symbols, x.reshape(R0.shape), False)[0],
                                  R0.reshape(-1), method="Powell", options={"xtol": 1e-4, "ftol": 1e-7})
    return res.x.reshape(R0.shape), float(res.fun)


def hessian_on_oracle(oracle, symbols, R, *, delta: float = 0.005) -> np.ndarray:
    """Hessian [eV/Å²] of shape (3N, 3N) by central differences with step ``delta`` [Å].

    From forces (2 x 3N calculations) when the calculator has them, else from
    energies (1 + 2 x 3N + 2 x 3N(3N-1) calculations).
    """
    calc = oracle.make_calculator()
    R0 = np.asarray(R, dtype=np.float64)
    n = R0.size
    has_forces = "forces" in getattr(calc, "implemented_properties", ())

    def shifted(*steps):
        x = R0.reshape(-1).copy()
        for i, s in steps:
            x[i] += s * delta
        return x.reshape(R0.shape)

    H = np.empty((n, n))
    if has_forces:
        for i in range(n):
            fp = _energy_forces(calc, symbols, shifted((i, 1)), True)[1].reshape(-1)
            fm = _energy_forces(calc, symbols, shifted((i, -1)), True)[1].reshape(-1)
            H[i] = -(fp - fm) / (2 * delta)
        return 0.5 * (H + H.T)
    energy = lambda *steps: _energy_forces(calc, symbols, shifted(*steps), False)[0]  # noqa: E731
    e0 = energy()
    for i in range(n):
        H[i, i] = (energy((i, 1)) - 2 * e0 + energy((i, -1))) / delta**2
        for j in range(i):
            H[i, j] = H[j, i] = (energy((i, 1), (j, 1)) - energy((i, 1), (j, -1)) - energy((i, -1), (j, 1))
                                 + energy((i, -1), (j, -1))) / (4 * delta**2)
    return H


def normal_modes(symbols, H):
    """Frequencies [cm^-1] (imaginary ones as negative) and mass-weighted modes of a Hessian [eV/Å²]."""
    from ase import units
    from ase.data import atomic_masses, atomic_numbers

    m = np.repeat([atomic_masses[atomic_numbers[s]] for s in symbols], 3)
    Hm = np.asarray(H) / np.sqrt(np.outer(m, m))
    lam, L = np.linalg.eigh(0.5 * (Hm + Hm.T))
    hbar = units._hbar * units.J * units.s  # eV * ASE time
    omega = np.sqrt(np.abs(lam))  # 1 / ASE time
    freq_cm = np.sign(lam) * hbar * omega / units.invcm
    return freq_cm, L, m, omega


def wigner_samples(symbols, R0, H, temperature: float, n: int, rng) -> np.ndarray:
    """``n`` geometries [Å] from the harmonic Wigner distribution at ``temperature`` [K].

    Each normal mode of frequency ω gets a Gaussian mass-weighted displacement
    of variance ``ħ/(2ω) coth(ħω / 2kT)`` (at 0 K the zero-point width).
    Modes below :data:`MIN_FREQUENCY_CM` in magnitude are left out; an
    imaginary mode (a saddle) is sampled with its magnitude.
    """
    from ase import units

    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 K, got {temperature}")
    R0 = np.asarray(R0, dtype=np.float64)
    freq_cm, L, m, omega = normal_modes(symbols, H)
    keep = np.abs(freq_cm) >= MIN_FREQUENCY_CM
    hbar = units._hbar * units.J * units.s
    w = omega[keep]
    x = hbar * w / (2 * units.kB * temperature) if temperature > 0 else np.full(w.shape, np.inf)
    coth = np.where(np.isinf(x), 1.0, 1.0 / np.tanh(np.minimum(x, 700.0)))
    sigma = np.sqrt(hbar / (2 * w) * coth)  # sqrt(amu) Å
    q = rng.standard_normal((n, w.size)) * sigma
    dx = (q @ L[:, keep].T) / np.sqrt(m)
    return R0[None] + dx.reshape(n, *R0.shape)


def fragment_samples(R, fragments, separations, rng) -> np.ndarray:
    """Copies of structures ``R`` (m, N, 3) [Å] with the fragments apart.

    Every structure is placed once at every separation [Å]: each fragment is
    rotated at random about its centroid, and fragment ``k > 0`` is put at the
    separation from the centroid of fragments ``0..k-1`` in a random direction.

    Returns
    -------
    ndarray of shape (m * len(separations), N, 3)
    """
    from scipy.spatial.transform import Rotation

    R = np.asarray(R, dtype=np.float64)
    if R.ndim == 2:
        R = R[None]
    fragments = [list(f) for f in fragments]
    atoms = sorted(a for f in fragments for a in f)
    if atoms != list(range(R.shape[1])):
        raise ValueError(f"fragments {fragments} must list every atom 0..{R.shape[1] - 1} exactly once")
    out = []
    for d in separations:
        if d <= 0:
            raise ValueError(f"fragment separations must be > 0 Å, got {d}")
        for r in R:
            new = np.empty_like(r)
            placed = []
            for k, f in enumerate(fragments):
                xyz = r[f] - r[f].mean(axis=0)
                xyz = Rotation.random(random_state=rng).apply(xyz) if len(f) > 1 else xyz
                if k == 0:
                    centre = np.zeros(3)
                else:
                    v = rng.standard_normal(3)
                    centre = new[placed].mean(axis=0) + d * v / np.linalg.norm(v)
                new[f] = xyz + centre
                placed.extend(f)
            out.append(new)
    return np.array(out)
