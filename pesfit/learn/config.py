"""The ``[learn]`` section of a recipe: a molecule's whole construction in one file.

Example (paths relative to the recipe)::

    [learn]
    calculator = "pyscf:mp2/cc-pvdz"
    multiplicity = 1
    start = "start.xyz"          # one or more structures, Å
    store = "learn.db"
    out = "model.json"
    window = 2.0                 # eV above the lowest energy
    target = 1.0                 # meV
    batch = 16
    temperature = 300.0          # K, Wigner design
    [learn.explore_options]
    n_steps = 300

Keys are :class:`~pesfit.learn.loop.LearnSettings` fields plus
:data:`RUN_KEYS`; unknown keys are rejected.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from .loop import LearnSettings

__all__ = ["RUN_KEYS", "PATH_KEYS", "load_learn_section"]

#: keys of ``[learn]`` that are not LearnSettings fields
RUN_KEYS = {"calculator", "charge", "multiplicity", "unrestricted", "start", "store", "out", "plot",
            "scheduler", "workers"}
#: keys holding paths (resolved relative to the recipe)
PATH_KEYS = {"start", "store", "out", "plot"}


def load_learn_section(path) -> tuple[dict, dict]:
    """``(run options, LearnSettings keyword arguments)`` from a recipe's ``[learn]`` section.

    Raises
    ------
    FileNotFoundError, ValueError
        Missing file, invalid TOML, no ``[learn]`` section, unknown keys.
    """
    from ..recipe import read_recipe_document

    path = Path(path)
    doc = read_recipe_document(path)
    if "learn" not in doc:
        raise ValueError(f"{path} has no [learn] section")
    body = dict(doc["learn"])
    fields = {f.name for f in dataclasses.fields(LearnSettings)}
    unknown = set(body) - fields - RUN_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)} in [learn]; allowed: {sorted(fields | RUN_KEYS)}")
    base = path.resolve().parent
    run = {k: (str(base / v) if k in PATH_KEYS else v) for k, v in body.items() if k in RUN_KEYS}
    settings = {k: v for k, v in body.items() if k in fields}
    return run, settings
