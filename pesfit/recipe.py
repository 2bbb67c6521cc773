"""Recipe files (TOML): atoms, data, back end and hyperparameters of one fit.

Example (``molecules/h2co/recipe.toml``)::

    [data]
    train = "train.npz"     # paths are relative to the recipe file
    n_train = 4000
    test = "test.npz"
    forces = false

    [model]
    kind = "linear"
    degree = 6

    [output]
    model = "model.json"

Unknown sections or keys are rejected (the ``[model]`` keys are the
hyperparameters of the back end ``kind``, listed in ``docs/formats.md``), so a
typo cannot be silently ignored.
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Recipe", "load_recipe", "check_sections", "read_recipe_document"]

_SECTIONS = {
    "molecule": {"atoms", "blocks"},
    "data": {"train", "test", "n_train", "forces"},
    "model": None,  # kind + model hyperparameters, checked by the model
    "output": {"model"},
    "learn": None,  # pesfit learn: checked by pesfit.learn.config
}


@dataclass(frozen=True)
class Recipe:
    """A resolved recipe (paths absolute)."""

    train: Path
    model: str = "linear"
    model_params: dict = field(default_factory=dict)
    test: Path | None = None
    n_train: int | None = None
    forces: bool = False
    atoms: list | None = None
    out: Path | None = None

    def override(self, **changes) -> "Recipe":
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def _model_keys(path, kind) -> set:
    """The ``[model]`` keys of back end ``kind``: its constructor's hyperparameters."""
    import inspect

    from .models import registered_models

    models = registered_models()
    if not isinstance(kind, str) or kind not in models:
        raise ValueError(f"{path}: unknown [model] kind {kind!r}; available: {sorted(models)}")
    return {name for name in inspect.signature(models[kind].__init__).parameters if name != "self"}


def check_sections(doc: dict, path) -> None:
    """Reject unknown sections, and unknown keys of the sections checked here."""
    for section, body in doc.items():
        if section not in _SECTIONS:
            raise ValueError(f"{path}: unknown section [{section}]; expected {sorted(_SECTIONS)}")
        allowed = _SECTIONS[section]
        if allowed is not None:
            unknown = set(body) - allowed
            if unknown:
                raise ValueError(f"{path}: unknown keys {sorted(unknown)} in [{section}]; allowed: {sorted(allowed)}")


def read_recipe_document(path) -> dict:
    """The TOML document of recipe file ``path``, its sections checked (see :func:`check_sections`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe file {path} not found")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: invalid TOML ({exc})") from None
    check_sections(doc, path)
    return doc


def load_recipe(path) -> Recipe:
    """Read and check a recipe file."""
    path = Path(path)
    doc = read_recipe_document(path)
    base = path.resolve().parent
    data = doc.get("data", {})
    if "train" not in data:
        raise ValueError(f"{path}: [data] needs 'train'")
    model = dict(doc.get("model", {}))
    kind = model.pop("kind", "linear")
    allowed = _model_keys(path, kind)
    unknown = sorted(set(model) - allowed)
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown} in [model] for kind {kind!r}; allowed: "
                         f"{sorted(allowed | {'kind'})} (see docs/formats.md)")
    mol = doc.get("molecule", {})
    if "blocks" in mol:
        if "blocks" not in allowed:
            raise ValueError(f"{path}: [molecule] blocks is not used by model kind {kind!r}")
        model["blocks"] = mol["blocks"]
    atoms = mol.get("atoms")
    if isinstance(atoms, str):
        atoms = atoms.split()
    forces = bool(data.get("forces", False))
    model.setdefault("use_forces", forces)
    out = doc.get("output", {}).get("model")
    return Recipe(
        train=base / data["train"],
        test=base / data["test"] if "test" in data else None,
        n_train=data.get("n_train"),
        forces=forces,
        model=kind,
        model_params=model,
        atoms=atoms,
        out=base / out if out else None,
    )
