"""Calculator factories for tests/test_learn.py (``--calculator learn_oracles:NAME``).

They must be importable on Dask workers, so they live in a module of their
own; the call log (``PESFIT_LEARN_TEST_LOG``) records every geometry a worker
computed, as its store hash.
"""
import os
import time

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from pesfit.learn.analytic import LEPSH3
from pesfit.learn.store import point_hash


class _Logged(LEPSH3):
    """LEPS H3 that appends the store hash of each geometry to the log and may sleep."""

    method = "learn_oracles:counting_leps"
    delay = 0.0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        time.sleep(self.delay)
        super().calculate(atoms, properties, system_changes)
        log = os.environ.get("PESFIT_LEARN_TEST_LOG")
        if log:
            with open(log, "a") as f:
                f.write(point_hash(["H", "H", "H"], self.atoms.get_positions(), self.method) + "\n")


class _Slow(_Logged):
    method = "learn_oracles:slow_leps"
    delay = 0.3


def counting_leps():
    return _Logged()


def slow_leps():
    return _Slow()


class _Bad(Calculator):
    implemented_properties = ["energy", "forces"]
    mode = "nan"

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        n = len(self.atoms)
        if self.mode == "raise":
            raise RuntimeError("the program crashed")
        if self.mode == "nan":
            self.results = {"energy": float("nan"), "forces": np.zeros((n, 3))}
        elif self.mode == "atoms":
            self.results = {"energy": -1.0, "forces": np.zeros((n + 1, 3))}


class _Flaky(Calculator):
    """Fails with its first setup; its fallback succeeds (like an SCF with a level shift)."""

    implemented_properties = ["energy"]

    def __init__(self, attempt=0):
        super().__init__()
        self.attempt = attempt

    def fallback(self):
        return _Flaky(1) if self.attempt == 0 else None

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if self.attempt == 0:
            raise RuntimeError("SCF did not converge")
        self.results = {"energy": -2.0}


def nan_energy():
    c = _Bad()
    c.mode = "nan"
    return c


def wrong_atoms():
    c = _Bad()
    c.mode = "atoms"
    return c


def crashing():
    c = _Bad()
    c.mode = "raise"
    return c


def flaky():
    return _Flaky()


def raising_factory():
    raise OSError("license server not reachable")


def not_a_calculator():
    return 42
