"""Hole search: probe a fitted surface around structures for false wells and short-range attraction.

A fitted surface can pass every accuracy report and still fall far below
its lowest training energy a fraction of an Ångström away from the data.
:func:`find_holes` looks for such places.

Probes
    Around each structure ``R`` (N atoms), ``directions`` random unit
    directions in the 3N Cartesian space, with the rigid translations and
    (infinitesimal) rotations about the centroid projected out.  Each
    direction ``d`` is scaled so that its largest atom displacement is 1 Å;
    the ray is sampled at ``R + s d`` for ``s = step, 2 step, ..., radius``.
    The *displacement* of a probe point is ``s``, the largest distance any
    atom moved [Å]; its RMS atom displacement is also recorded.  With
    ``md=True``, short constant-energy trajectories (ASE Velocity Verlet on
    the model) start at every structure, with random velocities (no net
    translation or rotation) whose kinetic energy is the structure's energy
    above the floor (below), so a trajectory can reach twice that height;
    every time step is a probe point.

Holes
    The *floor* is the model's lowest training energy ``e_min_`` [eV] (or
    ``e_floor``).  A probe point is a hole when

    * ``below_min``: its energy is below ``floor - tolerance``; or
    * ``attraction``: at a probe point no higher in energy than the highest
      model energy at the probed structures (the *ceiling*: a point the data's
      energies can reach) where an atom pair is closer than
      the shortest training distance of that element pair (``r_min_``, the
      minimum over all pairs of the same two elements), pushing just those
      two atoms together along their bond (the others fixed), by ``step``
      at a time out to ``radius`` (but not below half their distance),
      lowers the energy at every step and in total by more than
      ``tolerance``.  Nothing physical attracts two atoms more strongly the
      closer they come inside the data's shortest distance.  Each ray and
      trajectory is scanned once, at its point with the most compressed
      pair (smallest ratio to ``r_min``); the hole is the scan's last point.
    * ``nonfinite``: the model returns NaN or inf there (or, on a
      trajectory, two atoms came within 0.01 Å).

    The depth of a point is ``floor - E`` in meV (positive: below the floor).
    Models with several states (diabatic) are probed on the lowest adiabatic
    state.

Grouping
    Each ray and each trajectory contributes at most its deepest hole point.
    These are then grouped greedily, deepest first: a point joins an earlier
    hole when all its interatomic distances are within ``group_distance``
    (default ``radius``) of that hole's; so a well reached from several
    directions or structures is reported once, with the number of points
    (``n_hits``) that found it.  Permuted copies of a hole count separately.

>>> report = find_holes(model, test.R)                      # doctest: +SKIP
>>> report.n_holes, report.deepest_meV_below_min             # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from invariants import pair_distances

__all__ = ["HoleReport", "find_holes", "holes_in_dataset", "internal_directions"]

_BATCH_POINTS = 20000   # probe points per predict call


@dataclass
class HoleReport:
    """Result of :func:`find_holes`.

    Attributes
    ----------
    n_probed : int
        Probe points evaluated (ray points and trajectory steps).
    n_holes : int
        Holes after grouping.
    deepest_meV_below_min : float or None
        Largest ``floor - E`` over all probe points [meV]; negative when every
        point lies above the floor (None: nothing probed).
    holes : list of dict
        Deepest first.  Keys: ``index`` (structure), ``direction`` (ray number,
        or ``"md"``), ``kind`` (``"below_min"``, ``"attraction"`` or ``"nonfinite"``),
        ``displacement_A`` (largest atom displacement from the structure),
        ``rms_displacement_A``, ``depth_meV`` (below the floor; None where the
        energy is not finite), ``energy_eV``,
        ``geometry_A`` (N x 3), ``n_hits``; ``time_fs`` for trajectories;
        ``pair`` (atom indices), ``pair_distance_A`` and ``pair_r_min_A`` for
        ``attraction``.
    floor_eV, tolerance_eV : float
        The criterion used.
    settings : dict
        radius, directions, step, md and the grouping distance.
    """

    n_probed: int
    n_holes: int
    deepest_meV_below_min: float | None
    holes: list = field(default_factory=list)
    floor_eV: float = 0.0
    tolerance_eV: float = 0.0
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The four public keys: ``n_probed``, ``n_holes``, ``deepest_meV_below_min``, ``holes``."""
        return {"n_probed": self.n_probed, "n_holes": self.n_holes,
                "deepest_meV_below_min": self.deepest_meV_below_min, "holes": self.holes}

    def summary(self) -> str:
        """One line: how many holes, how deep, how probed."""
        s = self.settings
        how = f"{s.get('directions')} directions to {s.get('radius'):g} Å" + (", MD" if s.get("md") else "")
        deepest = "-" if self.deepest_meV_below_min is None else f"{self.deepest_meV_below_min:.1f}"
        return (f"{self.n_holes} hole(s) in {self.n_probed} probe points ({how}); deepest point {deepest} meV "
                f"below the training minimum {self.floor_eV:.6f} eV (tolerance {1000 * self.tolerance_eV:g} meV)")

    def format(self, max_listed: int = 20) -> str:
        """Readable text: the summary line, then one block per hole (at most ``max_listed``)."""
        lines = [self.summary()]
        for k, h in enumerate(self.holes[:max_listed]):
            where = "MD" + (f" t = {h['time_fs']:.1f} fs" if "time_fs" in h else "") if h["direction"] == "md" \
                else f"direction {h['direction']}"
            extra = ""
            if h["kind"] == "attraction":
                i, j = h["pair"]
                extra = (f", atoms {i}-{j} at {h['pair_distance_A']:.3f} Å "
                         f"(shortest in training {h['pair_r_min_A']:.3f} Å)")
            depth = ("non-finite energy" if h["depth_meV"] is None
                     else f"depth {h['depth_meV']:.1f} meV (E = {h['energy_eV']:.6f} eV)")
            lines.append(f"hole {k + 1}: structure {h['index']}, {where}, {h['kind']}, {depth} at displacement {h['displacement_A']:.3f} Å "
                         f"(RMS {h['rms_displacement_A']:.3f} Å){extra}, {h['n_hits']} probe point(s)")
            for xyz in h["geometry_A"]:
                lines.append("    " + " ".join(f"{c:12.6f}" for c in xyz))
        if len(self.holes) > max_listed:
            lines.append(f"... {len(self.holes) - max_listed} more (all with --json)")
        return "\n".join(lines)


# ------------------------------------------------------------------ probes
def internal_directions(R, n_directions: int, rng) -> np.ndarray:
    """Random displacement directions without rigid translation or rotation.

    Parameters
    ----------
    R : ndarray of shape (n, N, 3) [Å]
    n_directions : int
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of shape (n, n_directions, N, 3)
        Each direction scaled so that its largest atom displacement is 1
        (multiply by a length in Å).  The six (five for a linear structure)
        rigid motions at ``R`` are projected out.
    """
    R = np.asarray(R, dtype=np.float64)
    n, N, _ = R.shape
    X = R - R.mean(axis=1, keepdims=True)
    T = np.zeros((n, N, 3, 6))
    for k in range(3):
        T[:, :, k, k] = 1.0
        axis = np.zeros(3)
        axis[k] = 1.0
        T[:, :, :, 3 + k] = np.cross(axis, X)
    U, S, _ = np.linalg.svd(T.reshape(n, 3 * N, 6), full_matrices=False)
    U = U * (S > 1e-8 * S[:, :1])[:, None, :]
    V = rng.standard_normal((n, n_directions, 3 * N))
    V -= np.einsum("nik,ndk->ndi", U, np.einsum("nik,ndi->ndk", U, V))
    V = V.reshape(n, n_directions, N, 3)
    largest = np.linalg.norm(V, axis=-1).max(axis=-1)
    return V / largest[..., None, None]


def _ground(out):
    """Energies (n,) and optionally forces (n, N, 3) of the lowest state from a ``predict`` result."""
    if isinstance(out, tuple):
        E, F = np.asarray(out[0], dtype=np.float64), np.asarray(out[1], dtype=np.float64)
        return (E[:, 0], F[:, 0]) if E.ndim == 2 else (E, F)
    E = np.asarray(out, dtype=np.float64)
    return E[:, 0] if E.ndim == 2 else E


def _predict(model, R, forces=False):
    """Ground-state energies [eV] (and forces [eV/Å]) of ``R`` (n, N, 3), in batches of probe points."""
    if not forces:
        return np.concatenate([_ground(model.predict(R[i:i + _BATCH_POINTS]))
                               for i in range(0, len(R), _BATCH_POINTS)])
    parts = [_ground(model.predict(R[i:i + _BATCH_POINTS], forces=True)) for i in range(0, len(R), _BATCH_POINTS)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _symbols(model, n_atoms: int) -> list:
    from .ase import model_symbols

    symbols = list(model_symbols(model))
    if n_atoms != len(symbols) and symbols and n_atoms % len(symbols) == 0 and hasattr(model, "spec_"):
        symbols = symbols * (n_atoms // len(symbols))       # a cluster of a many-body model's monomers
    if n_atoms != len(symbols):
        raise ValueError(f"the structures have {n_atoms} atoms but the model describes {len(symbols)} "
                         f"({' '.join(symbols)})")
    return symbols


def _floor(model, e_floor):
    if e_floor is not None:
        return float(e_floor)
    if hasattr(model, "spec_"):
        raise ValueError("a many-body model has no single lowest training energy for clusters of every size; "
                         "pass e_floor (eV), e.g. the lowest reference energy of the clusters probed")
    e_min = getattr(model, "e_min_", None)
    if e_min is None:
        raise ValueError(f"{type(model).__name__} records no lowest training energy (e_min_); pass e_floor (eV)")
    return float(e_min)


def _pair_r_min(model, symbols):
    """Shortest training distance of each pair's element pair [Å] (None: the model records none that fit)."""
    r_min = getattr(model, "r_min_", None)
    i, j = np.triu_indices(len(symbols), k=1)
    if r_min is None or len(r_min) != len(i):
        return None
    kinds = [tuple(sorted((symbols[a], symbols[b]))) for a, b in zip(i, j)]
    shortest: dict = {}
    for kind, r in zip(kinds, np.asarray(r_min, dtype=np.float64)):
        shortest[kind] = min(shortest.get(kind, np.inf), float(r))
    return np.array([shortest[k] for k in kinds])


def _most_compressed(X, r_min):
    """Per structure of ``X`` (m, N, 3): smallest ratio of a pair distance to its ``r_min`` and that pair's index."""
    ratio = pair_distances(X) / r_min[None]
    k = np.argmin(ratio, axis=1)
    return ratio[np.arange(len(X)), k], k


def _pair_scans(model, candidates, R, floor, tolerance, r_min, steps):
    """The ``attraction`` test for candidate points: compress one pair along its bond, other atoms fixed.

    ``candidates`` is a list of (structure index, direction, geometry (N, 3), pair index, time_fs or None).
    """
    if not candidates:
        return []
    N = R.shape[1]
    pi, pj = np.triu_indices(N, k=1)
    X = np.array([c[2] for c in candidates])                                  # (m, N, 3)
    k = np.array([c[3] for c in candidates])
    rows = np.arange(len(X))
    u = X[rows, pj[k]] - X[rows, pi[k]]
    r0 = np.linalg.norm(u, axis=1)
    u /= r0[:, None]
    shift = np.minimum(steps[None, :], 0.5 * r0[:, None])                     # (m, S): shortening of the pair
    P = np.repeat(X[:, None], len(steps), axis=1)                             # (m, S, N, 3)
    P[rows[:, None], np.arange(len(steps))[None], pi[k][:, None]] += 0.5 * shift[..., None] * u[:, None]
    P[rows[:, None], np.arange(len(steps))[None], pj[k][:, None]] -= 0.5 * shift[..., None] * u[:, None]
    E = _predict(model, P.reshape(-1, N, 3)).reshape(len(X), len(steps))
    E0 = _predict(model, X)
    path = np.concatenate([E0[:, None], E], axis=1)
    moved = np.diff(np.concatenate([np.zeros((len(X), 1)), shift], axis=1), axis=1) > 0   # capped points repeat
    falling = np.where(moved, np.diff(path, axis=1) < 0, True).all(axis=1) & (E0 - E[:, -1] > tolerance)
    hits = []
    for m in np.flatnonzero(falling):
        i, direction, _, kk, t = candidates[m]
        hits.append(_hit(i, direction, "attraction", R[i], P[m, -1], E[m, -1], floor, (pi[kk], pj[kk]),
                         r0[m] - shift[m, -1], r_min[kk], time_fs=t))
    return hits


def _hit(index, direction, kind, R0, X, E, floor, pair=None, r=None, r_min=None, time_fs=None):
    disp = np.linalg.norm(X - R0, axis=-1)
    finite = bool(np.isfinite(E))
    h = {"index": int(index), "direction": direction, "kind": kind if finite else "nonfinite",
         "displacement_A": float(disp.max()), "rms_displacement_A": float(np.sqrt(np.mean(disp**2))),
         "depth_meV": 1000.0 * (floor - float(E)) if finite else None, "energy_eV": float(E) if finite else None,
         "geometry_A": np.asarray(X, dtype=np.float64).tolist(), "n_hits": 1}
    if time_fs is not None:
        h["time_fs"] = float(time_fs)
    if pair is not None:
        h.update(pair=[int(pair[0]), int(pair[1])], pair_distance_A=float(r), pair_r_min_A=float(r_min))
    return h


def _probe_rays(model, R, floor, ceiling, tolerance, r_min, directions, steps, rng, progress, total_work):
    """Deepest hole point of every ray; returns (hits, n_probed, lowest energy seen)."""
    n, N, _ = R.shape
    per_chunk = max(1, _BATCH_POINTS // (directions * len(steps)))
    hits, candidates, lowest = [], [], np.inf
    for c0 in range(0, n, per_chunk):
        idx = np.arange(c0, min(n, c0 + per_chunk))
        D = internal_directions(R[idx], directions, rng)                       # (m, D, N, 3)
        P = R[idx, None, None] + steps[None, None, :, None, None] * D[:, :, None]   # (m, D, S, N, 3)
        E = _predict(model, P.reshape(-1, N, 3)).reshape(len(idx), directions, len(steps))
        finite = np.isfinite(E)
        if finite.any():
            lowest = min(lowest, float(E[finite].min()))
        below = ~finite | (E < floor - tolerance)
        for a, d in zip(*np.nonzero(below.any(axis=2))):
            s = int(np.argmin(np.where(below[a, d], np.where(finite[a, d], E[a, d], -np.inf), np.inf)))
            hits.append(_hit(idx[a], int(d), "below_min", R[idx[a]], P[a, d, s], E[a, d, s], floor))
        if r_min is not None:
            ratio, pair = _most_compressed(P.reshape(-1, N, 3), r_min)
            ratio, pair = np.where(E <= ceiling, ratio.reshape(E.shape), np.inf), pair.reshape(E.shape)
            for a, d in zip(*np.nonzero((ratio < 1).any(axis=2))):
                s = int(np.argmin(ratio[a, d]))
                candidates.append((idx[a], int(d), P[a, d, s], pair[a, d, s], None))
        if progress is not None:
            progress(int(idx[-1]) + 1, total_work, "probing directions")
    hits += _pair_scans(model, candidates, R, floor, tolerance, r_min, steps)
    return hits, n * directions * len(steps), lowest


def _md_velocities(R, masses, kinetic, rng):
    """Velocities [Å/ASE time] (n, N, 3) with no net momentum or angular momentum and kinetic energy ``kinetic`` [eV]."""
    n, N, _ = R.shape
    m = masses[None, :, None]
    v = rng.standard_normal(R.shape) / np.sqrt(m)
    v -= (m * v).sum(axis=1, keepdims=True) / m.sum(axis=1, keepdims=True)
    com = (m * R).sum(axis=1, keepdims=True) / m.sum(axis=1, keepdims=True)
    X = R - com
    L = (m * np.cross(X, v)).sum(axis=1)                                       # (n, 3)
    inertia = (m[..., None] * ((X**2).sum(-1)[..., None, None] * np.eye(3) - X[..., :, None] * X[..., None, :])).sum(1)
    omega = np.einsum("nij,nj->ni", np.linalg.pinv(inertia), L)
    v -= np.cross(omega[:, None, :], X)
    k_now = 0.5 * (m * v**2).sum(axis=(1, 2))
    scale = np.sqrt(np.clip(kinetic, 0.0, None) / np.where(k_now > 0, k_now, 1.0))
    return v * scale[:, None, None]


def _probe_md(model, R, E_start, floor, ceiling, tolerance, r_min, symbols, time_fs, timestep_fs, steps, rng, progress,
              work0, total_work):
    """Constant-energy trajectories from every structure; returns (hits, n_probed, lowest energy seen)."""
    from ase import Atoms, units
    from ase.calculators.calculator import Calculator, all_changes
    from ase.md.verlet import VelocityVerlet

    n, N, _ = R.shape
    frozen = np.zeros(n, dtype=bool)

    class _Replicas(Calculator):
        """All trajectories as one ASE system: one predict call per time step (frozen ones feel no force)."""

        implemented_properties = ["energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            X = self.atoms.positions.reshape(n, N, 3)
            E = np.full(n, np.nan)
            F = np.zeros((n, N, 3))
            live = np.flatnonzero(~frozen)
            live = live[pair_distances(X[live]).min(axis=1) >= 0.01] if live.size else live
            if live.size:
                E[live], F[live] = _predict(model, X[live], forces=True)
            F[~np.isfinite(F).all(axis=(1, 2))] = 0.0
            self.energies = E
            self.results = {"energy": float(np.nansum(E)), "forces": F.reshape(-1, 3)}

    masses = Atoms(symbols).get_masses()
    atoms = Atoms(symbols * n, positions=R.reshape(-1, 3))
    calc = _Replicas()
    atoms.calc = calc
    v = _md_velocities(R, masses, E_start - floor, rng)
    atoms.set_velocities(v.reshape(-1, 3))
    n_steps = max(1, int(round(time_fs / timestep_fs)))
    dyn = VelocityVerlet(atoms, timestep=timestep_fs * units.fs, logfile=None)
    atoms.get_forces()
    state = {"hits": [], "lowest": np.inf, "step": 0, "ratio": np.full(n, np.inf), "X": R.copy(),
             "pair": np.zeros(n, dtype=int), "t": np.zeros(n)}

    def observe():
        state["step"] += 1
        t = state["step"] * timestep_fs
        X = atoms.positions.reshape(n, N, 3)
        E = calc.energies
        live = ~frozen
        ok = live & np.isfinite(E)
        if ok.any():
            state["lowest"] = min(state["lowest"], float(E[ok].min()))
        below = live & (~np.isfinite(E) | (E < floor - tolerance))
        for i in np.flatnonzero(below):
            state["hits"].append(_hit(i, "md", "below_min", R[i], X[i], E[i], floor, time_fs=t))
        if r_min is not None:                           # remember each trajectory's most compressed point
            ratio, pair = _most_compressed(X, r_min)
            better = live & ~below & (ratio < state["ratio"]) & (E <= ceiling)
            state["ratio"][better], state["pair"][better], state["t"][better] = ratio[better], pair[better], t
            state["X"][better] = X[better]
        if below.any():                                 # stop those trajectories where they are
            frozen[below] = True
            vel = atoms.get_velocities().reshape(n, N, 3)
            vel[below] = 0.0
            atoms.set_velocities(vel.reshape(-1, 3))
        if progress is not None and state["step"] % 50 == 0:
            progress(work0 + state["step"], total_work, "trajectories")

    dyn.attach(observe, interval=1)
    dyn.run(n_steps)
    hits = state["hits"]
    if r_min is not None:
        scan = np.flatnonzero(state["ratio"] < 1)
        hits += _pair_scans(model, [(i, "md", state["X"][i], state["pair"][i], state["t"][i]) for i in scan], R,
                            floor, tolerance, r_min, steps)
    return hits, n * n_steps, state["lowest"]


def _group(hits, group_distance):
    """Merge hole points whose interatomic distances all agree within ``group_distance`` [Å], deepest first."""
    hits = sorted(hits, key=lambda h: (-np.inf if h["depth_meV"] is None else -h["depth_meV"], h["index"]))
    holes, reps = [], []
    for h in hits:
        r = pair_distances(np.asarray(h["geometry_A"])[None])[0]
        if reps:
            gap = np.abs(np.asarray(reps) - r[None]).max(axis=1) if r.size else np.zeros(len(reps))
            k = int(np.argmin(gap))
            if gap[k] <= group_distance:
                holes[k]["n_hits"] += 1
                continue
        holes.append(dict(h))
        reps.append(r)
    return holes


def find_holes(model, R, *, radius: float = 0.3, directions: int = 16, step: float = 0.05,
               tolerance: float = 0.05, md: bool = False, md_time_fs: float = 200.0, md_timestep_fs: float = 0.25,
               energies=None, e_floor: float | None = None, group_distance: float | None = None,
               random_state: int = 0, progress=None) -> HoleReport:
    """Probe a fitted surface around structures for holes (see the module docstring for the criteria).

    Parameters
    ----------
    model : fitted pesfit model (or anything with ``predict(R, forces)`` in Å/eV and ``e_min_``)
    R : ndarray of shape (n, N, 3) [Å]
        Structures in the model's atom order (e.g. the test set).
    radius : float
        Largest atom displacement of the ray probes [Å].
    directions : int
        Random directions per structure (0: no ray probes).
    step : float
        Spacing of the points along a ray [Å] (the last point is at ``radius``).
    tolerance : float
        How far below the floor a point must lie to be a hole [eV]; also the
        smallest energy fall of the ``attraction`` pair scan.
    md : bool
        Also run constant-energy trajectories from every structure.
    md_time_fs, md_timestep_fs : float
        Trajectory length and Velocity Verlet time step [fs].
    energies : ndarray of shape (n,) or (n, n_states), optional
        The structures' reference energies [eV]; they set the trajectories'
        kinetic energies (default: the model's energies at ``R``).
    e_floor : float, optional
        The floor [eV] (default: the model's lowest training energy ``e_min_``;
        required for many-body models).
    group_distance : float, optional
        Hole points closer than this in every interatomic distance are one
        hole [Å] (default: ``radius``).
    random_state : int
        Seed of the directions and velocities.
    progress : callable, optional
        ``progress(step, total, message)``.

    Returns
    -------
    HoleReport
    """
    if not (np.isfinite(radius) and radius > 0):
        raise ValueError(f"radius must be > 0 Å, got {radius}")
    if not (np.isfinite(step) and step > 0):
        raise ValueError(f"step must be > 0 Å, got {step}")
    if isinstance(directions, bool) or int(directions) != directions or directions < 0:
        raise ValueError(f"directions must be an integer >= 0, got {directions}")
    if not (np.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be >= 0 eV, got {tolerance}")
    if md and not (md_timestep_fs > 0 and md_time_fs >= md_timestep_fs):
        raise ValueError(f"need md_timestep_fs > 0 and md_time_fs >= md_timestep_fs, got {md_timestep_fs}, "
                         f"{md_time_fs}")
    if directions == 0 and not md:
        raise ValueError("nothing to probe: directions = 0 and md = False")
    R = np.asarray(R, dtype=np.float64)
    if R.ndim == 2:
        R = R[None]
    if R.ndim != 3 or R.shape[2] != 3 or len(R) == 0:
        raise ValueError(f"structures must have shape (n, N, 3) with n >= 1, got {R.shape}")
    if R.shape[1] < 2:
        raise ValueError("a hole search needs at least 2 atoms")
    symbols = _symbols(model, R.shape[1])
    floor = _floor(model, e_floor)
    r_min = _pair_r_min(model, symbols)
    group_distance = radius if group_distance is None else float(group_distance)
    rng = np.random.default_rng(random_state)
    steps = np.arange(1, int(np.floor(radius / step + 1e-9)) + 1) * step
    if steps.size == 0 or steps[-1] < radius - 1e-12:
        steps = np.append(steps, radius)
    E0 = _predict(model, R)
    ceiling = float(np.max(E0[np.isfinite(E0)])) if np.isfinite(E0).any() else np.inf
    n_steps_md = max(1, int(round(md_time_fs / md_timestep_fs))) if md else 0
    total_work = (len(R) if directions else 0) + n_steps_md
    hits, n_probed, lowest = [], 0, np.inf
    if directions:
        h, k, low = _probe_rays(model, R, floor, ceiling, tolerance, r_min, int(directions), steps, rng, progress,
                                total_work)
        hits += h
        n_probed += k
        lowest = min(lowest, low)
    if md:
        if energies is None:
            E_start = E0
        else:
            E_start = np.asarray(energies, dtype=np.float64)
            E_start = E_start[:, 0] if E_start.ndim == 2 else E_start
            if E_start.shape != (len(R),):
                raise ValueError(f"energies must have one value per structure ({len(R)}), got shape "
                                 f"{np.shape(energies)}")
        h, k, low = _probe_md(model, R, E_start, floor, ceiling, tolerance, r_min, symbols, md_time_fs, md_timestep_fs, steps,
                              rng, progress, len(R) if directions else 0, total_work)
        hits += h
        n_probed += k
        lowest = min(lowest, low)
    holes = _group(hits, group_distance)
    deepest = None if not np.isfinite(lowest) else 1000.0 * (floor - lowest)
    settings = {"radius": float(radius), "directions": int(directions), "step": float(step), "md": bool(md),
                "md_time_fs": float(md_time_fs) if md else None, "group_distance": group_distance,
                "random_state": random_state}
    return HoleReport(n_probed=int(n_probed), n_holes=len(holes), deepest_meV_below_min=deepest, holes=holes,
                      floor_eV=floor, tolerance_eV=float(tolerance), settings=settings)


def holes_in_dataset(model, data, **kwargs) -> HoleReport:
    """:func:`find_holes` on the structures of a :class:`~pesfit.data.Dataset` (atoms put in the model's order).

    The data's energies (when present) set the trajectories' kinetic energies
    with ``md=True``; for a many-body model, the lowest of them is the floor
    unless ``e_floor`` is given.
    """
    from .ase import model_symbols

    symbols = list(model_symbols(model))
    data_symbols = list(data.symbols)
    if data_symbols != symbols and len(data_symbols) == len(symbols):
        data = data.reorder_atoms(symbols)
    elif len(data_symbols) != len(symbols) and not (hasattr(model, "spec_") and len(data_symbols) % len(symbols) == 0):
        raise ValueError(f"the data has {len(data_symbols)} atoms ({' '.join(data_symbols)}) but the model "
                         f"describes {len(symbols)} ({' '.join(symbols)})")
    if data.E is not None:
        kwargs.setdefault("energies", data.E)
        if hasattr(model, "spec_"):
            E = np.asarray(data.E, dtype=np.float64)
            kwargs.setdefault("e_floor", float((E[:, 0] if E.ndim == 2 else E).min()))
    return find_holes(model, np.asarray(data.R), **kwargs)
