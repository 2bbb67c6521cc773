"""The active-learning loop: design, then fit / explore / select / compute until done.

:func:`learn` runs it.  Iteration 0 is the initial design (see
:mod:`pesfit.learn.design`); each later iteration

1. fits a :class:`~pesfit.learn.committee.Committee` to the ``ok`` points no
   more than ``window`` [eV] above the lowest energy (the energy cut),
2. explores the committee mean (:mod:`pesfit.learn.explore`),
3. selects ``batch`` candidates by disagreement and novelty
   (:mod:`pesfit.learn.select`) and computes them on Dask,
4. measures the committee's error on that batch before it is fitted (the
   held-out estimate; pessimistic, since the batch is where the committee
   disagrees most).

It stops (``stop_reason``) when the RMS committee disagreement over the
explored structures and the held-out RMSE are both at or below ``target``
[meV] (``"target"``), when the store holds ``budget`` calculations
(``"budget"``), when exploration finds nothing new (``"no candidates"``) or
after ``max_iterations``.  Every calculation is written to the store as it
arrives; a resumed run looks every geometry up first and recomputes nothing
stored.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np

from .committee import Committee
from .design import fragment_samples, hessian_on_oracle, minimise_on_oracle, wigner_samples
from .explore import make_explorer
from .select import InvariantDescriptor, select_batch
from .store import Store

__all__ = ["LearnSettings", "LearnResult", "learn", "open_store"]


@dataclass(frozen=True)
class LearnSettings:
    """Hyperparameters of a learning run (units in brackets).

    Parameters
    ----------
    window : float
        Energy window above the lowest computed energy [eV]; higher points
        are kept in the store but not fitted.
    target : float
        Stop when disagreement and held-out RMSE are at or below this [meV].
    budget : int or None
        Stop when the store holds this many calculations (ok or failed).
    batch : int
        Calculations per iteration.
    n_design : int
        Initial-design structures (besides the given ones).
    temperature : float
        Wigner sampling temperature of the design [K].
    minimise : bool
        Relax the given structures on the oracle first.
    fragments : tuple of tuple of int or None
        Atom indices of each fragment, for reactive channels.
    separations : tuple of float
        Fragment centroid separations of the channels [Å].
    committee : {"linear", "pipnn"}
    members : int
    degree : int or None
        PIP degree of the committee (None: by cross-validation).
    explore : str
        Explorer name (``walk``, ``md`` or a registered one).
    explore_options : dict
        Keyword options of the explorer.
    max_distance : float or None
        Longest interatomic distance explored [Å]; None: 1.2 times the
        longest distance in the initial design.
    max_iterations : int
    seed : int
    """

    window: float = 2.0
    target: float = 5.0
    budget: int | None = None
    batch: int = 16
    n_design: int = 40
    temperature: float = 300.0
    minimise: bool = False
    fragments: tuple | None = None
    separations: tuple = (3.0, 4.0, 5.0)
    committee: str = "linear"
    members: int = 5
    degree: int | None = None
    explore: str = "walk"
    explore_options: dict = field(default_factory=dict)
    max_distance: float | None = None
    max_iterations: int = 100
    seed: int = 0

    def __post_init__(self):
        checks = [(self.window > 0, f"window must be > 0 eV, got {self.window}"),
                  (self.target > 0, f"target must be > 0 meV, got {self.target}"),
                  (self.budget is None or self.budget >= 1, f"budget must be >= 1, got {self.budget}"),
                  (self.batch >= 1, f"batch must be >= 1, got {self.batch}"),
                  (self.n_design >= 0, f"n_design must be >= 0, got {self.n_design}"),
                  (self.temperature >= 0, f"temperature must be >= 0 K, got {self.temperature}"),
                  (self.max_distance is None or self.max_distance > 0.4,
                   f"max_distance must be > 0.4 Å, got {self.max_distance}"),
                  (self.members >= 2, f"members must be >= 2, got {self.members}"),
                  (self.max_iterations >= 0, f"max_iterations must be >= 0, got {self.max_iterations}")]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        if self.fragments is not None:
            object.__setattr__(self, "fragments", tuple(tuple(int(a) for a in f) for f in self.fragments))
        object.__setattr__(self, "separations", tuple(float(d) for d in self.separations))

    def replace(self, **changes) -> "LearnSettings":
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass
class LearnResult:
    """What :func:`learn` returns.

    Attributes
    ----------
    model : ModelBase
        The final fit on every ok point in the window.
    committee : Committee
    history : list of dict
        One record per iteration (the ``--json`` lines).
    stop_reason : str
    n_calculations : int
        Rows in the store (ok and failed).
    n_computed : int
        Calculations this call ran (the rest were look-ups).
    """

    model: object
    committee: Committee
    history: list
    stop_reason: str
    n_calculations: int
    n_computed: int


def _rms(x) -> float | None:
    x = np.asarray(x, dtype=np.float64)
    return float(np.sqrt(np.mean(x**2))) if x.size else None


class _Run:
    """State of one :func:`learn` call (store, executor, counters)."""

    def __init__(self, oracle, symbols, store, settings, executor, progress):
        self.oracle, self.symbols, self.store, self.settings = oracle, list(symbols), store, settings
        self.executor, self.progress = executor, progress
        self.n_computed = 0

    def budget_left(self) -> float:
        b = self.settings.budget
        return math.inf if b is None else b - len(self.store)

    def compute(self, requests, iteration: int) -> list:
        """Compute [(R, chosen), ...] not yet stored (within the budget); return their hashes."""
        todo, chosen = [], {}
        for R, why in requests:
            h = self.store.hash(R)
            if h in self.store or h in chosen:
                continue
            chosen[h] = why
            todo.append((h, np.asarray(R, dtype=np.float64)))
        left = self.budget_left()
        if left < len(todo):
            todo = todo[:max(int(left), 0)]
        done = []

        def on_result(h, R, result):
            if self.store.add(R, result, iteration=iteration, chosen=chosen[h]):
                self.n_computed += 1
                done.append(h)
            if self.progress is not None:
                self.progress(len(done), len(todo), f"iteration {iteration}: {result.status}")

        self.executor.map(self.oracle, self.symbols, todo, on_result)
        return [h for h, _ in todo]

    def training_set(self):
        data = self.store.dataset()
        E = np.asarray(data.E)
        keep = E <= E.min() + self.settings.window
        return data.subset(np.flatnonzero(keep)), float(E.min())


def _design(run: _Run, starts) -> None:
    """Iteration 0: the given structures, Wigner samples and fragment channels."""
    s, store = run.settings, run.store
    if s.minimise:
        done = store.get_state("minimised")
        if done is None:
            done = [R.tolist() for R, _ in run.executor.call_all(minimise_on_oracle, [(run.oracle, run.symbols, R)
                                                                                     for R in starts])]
            store.set_state("minimised", done)
        starts = [np.asarray(R) for R in done]
    hessians = store.get_state("hessians")
    if hessians is None and s.n_design > 0:
        hessians = [H.tolist() for H in run.executor.call_all(hessian_on_oracle, [(run.oracle, run.symbols, R)
                                                                                 for R in starts])]
        store.set_state("hessians", hessians)
    rng = np.random.default_rng([s.seed, 0])
    requests = [(R, "design:start") for R in starts]
    if s.n_design > 0:
        n_channels = 1 + (len(s.separations) if s.fragments else 0)
        per = max(1, math.ceil(s.n_design / (len(starts) * n_channels)))
        for R, H in zip(starts, hessians):
            samples = wigner_samples(run.symbols, R, np.asarray(H), s.temperature, per, rng)
            requests += [(x, f"design:wigner {s.temperature:g} K") for x in samples]
            if s.fragments:
                requests += [(x, "design:fragments") for x in fragment_samples(samples, s.fragments,
                                                                               s.separations, rng)]
    run.compute(requests, 0)


def open_store(store_path, start, oracle, *, resume: bool) -> Store:
    """Check the starting structures, the calculator and the store before any work.

    Raises ``ValueError`` for mixed molecules, an unusable calculator, a store
    of another molecule or method, or a non-empty store without ``resume``.
    """
    if not start:
        raise ValueError("give at least one starting structure")
    symbols = list(start[0].get_chemical_symbols())
    for k, atoms in enumerate(start):
        if atoms.get_chemical_symbols() != symbols:
            raise ValueError(f"starting structure {k} has atoms {' '.join(atoms.get_chemical_symbols())}, "
                             f"structure 0 has {' '.join(symbols)}")
    oracle.check()
    store = Store(store_path, symbols, oracle.method)
    if len(store) and not resume:
        raise ValueError(f"store {store_path} already holds {len(store)} calculations; resume it (--resume) "
                         "or give a new store path")
    return store


def learn(oracle, start, store_path, settings: LearnSettings = LearnSettings(), *, executor=None, resume=False,
          progress=None, on_iteration=None) -> LearnResult:
    """Build a surface by active learning.

    Parameters
    ----------
    oracle : Oracle
    start : sequence of ase.Atoms
        One or more structures of the molecule (same atoms, same order) [Å].
    store_path : str or Path
        The ASE sqlite store; created if missing.
    settings : LearnSettings
    executor : DaskExecutor, optional
        An entered executor; default: a local cluster for this call.
    resume : bool
        Continue a store that already holds calculations (required then).
    progress : callable, optional
        ``progress(step, total, message)`` while a batch computes.
    on_iteration : callable, optional
        Called with each iteration's record (a dict) as it finishes.

    Raises
    ------
    ValueError
        Bad settings or structures, an unusable calculator, or a store of
        another molecule or method.
    """
    from .executor import DaskExecutor

    store = open_store(store_path, start, oracle, resume=resume)
    symbols = store.symbols
    if executor is None:
        with DaskExecutor() as ex:
            return learn(oracle, start, store_path, settings, executor=ex, resume=True,
                         progress=progress, on_iteration=on_iteration)
    run = _Run(oracle, symbols, store, settings, executor, progress)
    _design(run, [a.get_positions() for a in start])
    if store.count(status="ok") < 2:
        raise ValueError(f"the initial design gave {store.count(status='ok')} successful calculations "
                         f"of {len(store)}; see the failure reasons with `ase db {store_path} status=failed "
                         "-c +failure`")
    explorer = make_explorer(settings.explore, **settings.explore_options)
    r_max = settings.max_distance
    if r_max is None:
        from invariants import pair_distances

        r_max = 1.2 * float(pair_distances(np.array([r.positions for r in store.rows(iteration=0)])).max())
    history, stop = [], "max_iterations"
    first = max(1, store.last_iteration() + 1)
    for it in range(first, first + settings.max_iterations):
        if run.budget_left() <= 0:
            stop = "budget"
            break
        t0 = time.perf_counter()
        rng = np.random.default_rng([settings.seed, it])
        data, e_min = run.training_set()
        committee = Committee(kind=settings.committee, n_members=settings.members, degree=settings.degree,
                              random_state=settings.seed + it).fit(data)
        e_max = e_min + settings.window
        cand = explorer.explore(committee, data, e_max, r_max, rng)
        record = {"iteration": it, "n_train": data.n_structures, "n_explored": int(len(cand))}
        if len(cand):
            mean, sigma = committee.mean_and_spread(cand)
            inside = mean <= e_max
            cand, sigma = cand[inside], sigma[inside]
        else:
            sigma = np.zeros(0)
        if len(cand) == 0:
            stop = "no candidates"
            break
        describe = InvariantDescriptor(committee.molecule_, data.R)
        picked, scores = select_batch(sigma, describe(cand), describe(data.R), settings.batch)
        requests = [(cand[i], f"committee sigma={1000 * sigma[i]:.2f} meV score={1000 * sc:.2f} meV")
                    for i, sc in zip(picked, scores)]
        hashes = run.compute(requests, it)
        rows = [store.rows(point_hash=h)[0] for h in hashes]
        ok = [r for r in rows if r.status == "ok" and r.energy <= e_max]
        heldout = None
        if ok:
            pred = committee.predict(np.array([r.positions for r in ok]))
            heldout = 1000 * _rms(pred - np.array([r.energy for r in ok]))
        record.update({
            "n_calculations": len(store), "n_failed": store.count(status="failed"),
            "batch": len(hashes), "batch_failed": sum(r.status != "ok" for r in rows),
            "disagreement_rms_meV": 1000 * _rms(sigma), "disagreement_max_meV": 1000 * float(sigma.max()),
            "heldout_rmse_meV": heldout, "degree": committee.model_.hyperparameters_.get("degree"),
            "seconds": time.perf_counter() - t0,
        })
        history.append(record)
        if on_iteration is not None:
            on_iteration(record)
        if heldout is not None and heldout <= settings.target and record["disagreement_rms_meV"] <= settings.target:
            stop = "target"
            break
        if not hashes:
            stop = "budget" if run.budget_left() <= 0 else "no candidates"
            break
    data, _ = run.training_set()
    committee = Committee(kind=settings.committee, n_members=settings.members, degree=settings.degree,
                          random_state=settings.seed).fit(data)
    return LearnResult(committee.model_, committee, history, stop, len(store), run.n_computed)
