"""Active learning of a global surface from an electronic-structure method (``pesfit learn``).

Modules, in the order a run uses them: :mod:`~pesfit.learn.oracle` (one
calculation), :mod:`~pesfit.learn.store` (the ASE database of every
calculation), :mod:`~pesfit.learn.executor` (Dask), :mod:`~pesfit.learn.design`
(initial structures), :mod:`~pesfit.learn.committee`,
:mod:`~pesfit.learn.explore`, :mod:`~pesfit.learn.select` and
:mod:`~pesfit.learn.loop` (:func:`learn`).
"""
from .committee import Committee
from .executor import DaskExecutor
from .explore import EXPLORERS, MDExplorer, RandomWalkExplorer, register_explorer
from .loop import LearnResult, LearnSettings, learn
from .oracle import Oracle, PointResult
from .store import Store, point_hash

__all__ = ["Committee", "DaskExecutor", "EXPLORERS", "LearnResult", "LearnSettings", "MDExplorer", "Oracle",
           "PointResult", "RandomWalkExplorer", "Store", "learn", "point_hash", "register_explorer"]
