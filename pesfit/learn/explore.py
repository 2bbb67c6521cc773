"""Exploration strategies: candidate structures [Å] found on the committee mean.

An explorer is any object with ``explore(committee, train, e_max, r_max, rng)``
returning candidates of shape (m, N, 3): ``committee`` predicts energies
[eV], ``train`` is the current training :class:`~pesfit.data.Dataset`,
``e_max`` [eV] the top of the energy window and ``r_max`` [Å] the longest
interatomic distance to explore.  :func:`register_explorer` adds
one under a name (``--explore NAME``); two are built in:

* ``walk`` -- :class:`RandomWalkExplorer`: Gaussian random walks accepted
  while the committee mean stays below ``e_max`` (uniform sampling of the
  region inside the window), many walkers at once;
* ``md`` -- :class:`MDExplorer`: ASE Langevin dynamics on the committee mean
  (through :class:`pesfit.ase.PESCalculator`) at given temperatures.

Both keep every interatomic distance between 0.4 Å and ``r_max``, so walkers
cannot drift off to infinity.
"""
from __future__ import annotations

import numpy as np

from ..data import Dataset

__all__ = ["RandomWalkExplorer", "MDExplorer", "register_explorer", "make_explorer", "EXPLORERS"]

R_MIN = 0.4  #: shortest interatomic distance explored [Å]


def _distances(R):
    from invariants import pair_distances

    return pair_distances(np.asarray(R, dtype=np.float64))


def _starts(train: Dataset, e_max: float, n: int, rng) -> np.ndarray:
    E = np.asarray(train.E)
    ok = np.flatnonzero(E <= e_max)
    pool = ok if ok.size else np.arange(len(E))
    return np.array(train.R)[rng.choice(pool, size=n, replace=True)]


class RandomWalkExplorer:
    """Random walks within the energy window of the committee mean.

    Parameters
    ----------
    n_walkers : int
    n_steps : int
    step : float
        Gaussian step per Cartesian coordinate [Å].
    record_every : int
        Steps between recorded structures.
    """

    name = "walk"

    def __init__(self, *, n_walkers: int = 64, n_steps: int = 200, step: float = 0.05, record_every: int = 10):
        self.n_walkers = n_walkers
        self.n_steps = n_steps
        self.step = step
        self.record_every = record_every

    def explore(self, committee, train: Dataset, e_max: float, r_max: float, rng) -> np.ndarray:
        R = _starts(train, e_max, self.n_walkers, rng)
        out = []
        for k in range(1, self.n_steps + 1):
            trial = R + self.step * rng.standard_normal(R.shape)
            d = _distances(trial)
            inside = (d.min(axis=1) > R_MIN) & (d.max(axis=1) < r_max)
            if inside.any():
                e = committee.predict(trial[inside])
                ok = np.flatnonzero(inside)[e <= e_max]
                R[ok] = trial[ok]
            if k % self.record_every == 0:
                out.append(R.copy())
        return np.concatenate(out) if out else np.empty((0,) + R.shape[1:])


class MDExplorer:
    """Langevin dynamics on the committee mean.

    Parameters
    ----------
    temperatures : sequence of float
        [K]; trajectories are spread evenly over them.
    n_trajectories : int
    n_steps : int
    timestep : float
        [fs]
    friction : float
        Langevin friction [1/fs].
    record_every : int
    """

    name = "md"

    def __init__(self, *, temperatures=(1000.0,), n_trajectories: int = 8, n_steps: int = 200,
                 timestep: float = 0.5, friction: float = 0.02, record_every: int = 10):
        self.temperatures = temperatures
        self.n_trajectories = n_trajectories
        self.n_steps = n_steps
        self.timestep = timestep
        self.friction = friction
        self.record_every = record_every

    def explore(self, committee, train: Dataset, e_max: float, r_max: float, rng) -> np.ndarray:
        from ase import Atoms, units
        from ase.md.langevin import Langevin
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

        from ..ase import PESCalculator

        starts = _starts(train, e_max, self.n_trajectories, rng)
        temps = list(self.temperatures)
        out = []
        for k, R0 in enumerate(starts):
            T = float(temps[k % len(temps)])
            atoms = Atoms(symbols=list(train.symbols), positions=R0)
            atoms.calc = PESCalculator(committee)
            MaxwellBoltzmannDistribution(atoms, temperature_K=T, rng=rng)
            dyn = Langevin(atoms, self.timestep * units.fs, temperature_K=T, friction=self.friction / units.fs,
                           rng=rng)
            for _ in range(self.n_steps // self.record_every):
                dyn.run(self.record_every)
                R = atoms.get_positions()
                d = _distances(R[None])[0]
                if d.min() < R_MIN or d.max() > r_max or atoms.get_potential_energy() > e_max:
                    break  # left the window: this trajectory is done
                out.append(R.copy())
        return np.array(out) if out else np.empty((0, len(train.symbols), 3))


EXPLORERS = {"walk": RandomWalkExplorer, "md": MDExplorer}


def register_explorer(name: str, cls) -> None:
    """Offer ``cls`` (constructed with keyword options, with ``explore``) as ``--explore name``."""
    if not callable(getattr(cls, "explore", None)):
        raise TypeError(f"{cls!r} has no explore(committee, train, e_max, r_max, rng) method")
    EXPLORERS[name] = cls


def make_explorer(name: str, **options):
    if name not in EXPLORERS:
        raise ValueError(f"unknown explorer {name!r}; choose from {sorted(EXPLORERS)}")
    return EXPLORERS[name](**options)
