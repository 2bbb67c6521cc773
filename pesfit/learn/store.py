"""The store: every calculation of a learning run in one ASE database (sqlite).

Each row is one geometry [Å] of the run's molecule with, as ASE keys,

* ``status`` -- ``"ok"`` or ``"failed"``; ``failure`` -- why (empty when ok),
* ``method`` -- the oracle (:attr:`Oracle.method`), ``point_hash`` -- SHA-256 of
  method + atoms + coordinates rounded to 1e-6 Å,
* ``iteration`` -- 0 for the initial design, then the loop iteration,
* ``chosen`` -- why it was computed (``design:wigner``, ``committee``, ...),
* ``wall_seconds``, ``attempts``,

and, for ``ok`` rows, the energy [eV] and forces [eV/Å] as ASE calculator
results, so ``ase db STORE`` browses it.  The database metadata holds the
atoms, method and format version: a store of another molecule or method is
refused.  Only the main process writes, and a hash already present is never
written again.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..data import Dataset

__all__ = ["Store", "point_hash", "STORE_FORMAT_VERSION"]

STORE_FORMAT_VERSION = 1
_KIND = "pesfit-learn-store"


def point_hash(symbols, R, method: str) -> str:
    """Content hash of a geometry ``R`` [Å] (rounded to 1e-6 Å) and method."""
    R = np.round(np.asarray(R, dtype=np.float64), 6) + 0.0  # + 0.0 turns -0.0 into 0.0
    text = method + "|" + " ".join(symbols) + "|" + " ".join(f"{x:.6f}" for x in R.reshape(-1))
    return hashlib.sha256(text.encode()).hexdigest()


class Store:
    """Open (or create) the store of one molecule and method.

    Parameters
    ----------
    path : str or Path
        sqlite file (``.db``).
    symbols : sequence of str
        The molecule's atoms in order.
    method : str
        The oracle's :attr:`~pesfit.learn.oracle.Oracle.method`.

    Raises
    ------
    ValueError
        If the file is not a pesfit learn store, or holds another molecule
        or method (one line naming both).
    """

    def __init__(self, path, symbols, method: str):
        import ase.db

        self.path = Path(path)
        self.symbols = [str(s) for s in symbols]
        self.method = str(method)
        exists = self.path.is_file() and self.path.stat().st_size > 0
        try:
            self._db = ase.db.connect(str(self.path), type="db", append=True)
            meta = dict(self._db.metadata) if exists else {}
        except Exception as exc:
            raise ValueError(f"{self.path}: not an ASE sqlite database ({exc})") from None
        if exists:
            self._check(meta)
            self._meta = meta
        else:
            with self._db:
                pass
            self._meta = {"kind": _KIND, "format_version": STORE_FORMAT_VERSION, "symbols": self.symbols,
                          "method": self.method, "units": {"length": "angstrom", "energy": "eV", "forces": "eV/angstrom"}}
            self._db.metadata = self._meta
        self._ids = {row.point_hash: row.id for row in self._db.select(columns=["id", "key_value_pairs"])}

    def _check(self, meta: dict) -> None:
        if meta.get("kind") != _KIND:
            raise ValueError(f"{self.path} is not a pesfit learn store (no pesfit metadata); give another path")
        if meta.get("format_version") != STORE_FORMAT_VERSION:
            raise ValueError(f"{self.path}: store format version {meta.get('format_version')}, "
                             f"this pesfit reads {STORE_FORMAT_VERSION}")
        if list(meta.get("symbols", [])) != self.symbols:
            raise ValueError(f"{self.path} holds {' '.join(meta.get('symbols', []))}, not {' '.join(self.symbols)}; "
                             "use another store for another molecule")
        if meta.get("method") != self.method:
            raise ValueError(f"{self.path} was computed with {meta.get('method')!r}, not {self.method!r}; "
                             "use another store for another method")

    @classmethod
    def open_existing(cls, path) -> "Store":
        """Open a store without knowing its molecule and method (for export)."""
        import ase.db

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"store {path} not found")
        meta = dict(ase.db.connect(str(path), type="db").metadata)
        if meta.get("kind") != _KIND:
            raise ValueError(f"{path} is not a pesfit learn store (no pesfit metadata)")
        return cls(path, meta["symbols"], meta["method"])

    # ------------------------------------------------------------ metadata
    def get_state(self, key: str, default=None):
        """A JSON value the run saved (e.g. minimised geometries of the design)."""
        return self._meta.get("state", {}).get(key, default)

    def set_state(self, key: str, value) -> None:
        state = dict(self._meta.get("state", {}))
        state[key] = value
        self._meta = {**self._meta, "state": state}
        self._db.metadata = self._meta

    # -------------------------------------------------------------- points
    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, h: str) -> bool:
        return h in self._ids

    def hash(self, R) -> str:
        return point_hash(self.symbols, R, self.method)

    def add(self, R, result, *, iteration: int, chosen: str) -> bool:
        """Write one calculation; False (and nothing written) if its hash is already stored."""
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator

        h = self.hash(R)
        if h in self._ids:
            return False
        atoms = Atoms(symbols=self.symbols, positions=np.asarray(R, dtype=np.float64))
        if result.status == "ok":
            results = {"energy": result.energy}
            if result.forces is not None:
                results["forces"] = np.asarray(result.forces)
            atoms.calc = SinglePointCalculator(atoms, **results)
        self._ids[h] = self._db.write(atoms, status=result.status, failure=result.failure, method=self.method,
                                      point_hash=h, iteration=int(iteration), chosen=str(chosen),
                                      wall_seconds=float(result.wall_seconds), attempts=int(result.attempts))
        return True

    def rows(self, **selection):
        """ASE database rows (``status="ok"``, ``iteration=3``, ...)."""
        return list(self._db.select(**selection))

    def count(self, **selection) -> int:
        return self._db.count(**selection) if selection else len(self._ids)

    def last_iteration(self) -> int:
        """Highest iteration stored (-1 for an empty store)."""
        its = [row.iteration for row in self._db.select(columns=["id", "key_value_pairs"])]
        return max(its, default=-1)

    def dataset(self, *, forces: bool | None = None) -> Dataset:
        """The ``ok`` points as a :class:`~pesfit.data.Dataset` (Å, eV, eV/Å).

        ``forces=None`` includes forces when every ok point has them.
        """
        rows = self.rows(status="ok")
        if not rows:
            raise ValueError(f"{self.path} holds no successful calculations yet")
        R = np.array([row.positions for row in rows])
        E = np.array([row.energy for row in rows])
        have_forces = all(row.get("forces") is not None for row in rows)
        if forces and not have_forces:
            raise ValueError(f"{self.path}: not every point has forces (the calculator gives energies only)")
        use = have_forces if forces is None else forces
        F = np.array([row.forces for row in rows]) if use else None
        return Dataset(R=R, z=self.symbols, E=E, F=F,
                       meta={"source": str(self.path), "method": self.method, "producer": "pesfit learn"})
