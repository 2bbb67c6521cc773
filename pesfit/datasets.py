"""Benchmark datasets shipped with the repository in ``molecules/NAME/``.

Each system has a training pool ``train.npz`` (use its first ``n``
structures for a training set of size ``n``) and an independent test
set ``test.npz``, in Å, eV and eV/Å.
"""

from __future__ import annotations

from pathlib import Path

from .data import Dataset, load_npz

__all__ = ["MOLECULES_DIR", "SPLITS", "available_datasets", "shipped_path", "shipped_dataset"]

#: Directory holding ``NAME/{train,test}.npz`` (beside the ``pesfit`` package).
MOLECULES_DIR = Path(__file__).resolve().parents[1] / "molecules"

SPLITS = ("train", "test")


def available_datasets() -> list[str]:
    """Names of the shipped systems (directories with a ``train.npz`` or ``test.npz``)."""
    if not MOLECULES_DIR.is_dir():
        return []
    return sorted(
        p.name for p in MOLECULES_DIR.iterdir()
        if p.is_dir() and any((p / f"{s}.npz").is_file() for s in SPLITS)
    )


def shipped_path(name: str, split: str = "train") -> Path:
    """Path of a shipped dataset file.

    Parameters
    ----------
    name : str
        System name, e.g. ``"h2co"``.
    split : {"train", "test"}
        Training pool or test set.

    Returns
    -------
    Path
        ``molecules/NAME/SPLIT.npz``.

    Raises
    ------
    ValueError
        If the split or the system is unknown; the message lists the
        available ones.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {list(SPLITS)}")
    path = MOLECULES_DIR / name / f"{split}.npz"
    if not path.is_file():
        names = available_datasets()
        raise ValueError(
            f"no shipped dataset {name!r} (split {split!r}) in {MOLECULES_DIR}; "
            f"available: {', '.join(names) if names else 'none'}"
        )
    return path


def shipped_dataset(name: str, split: str = "train") -> Dataset:
    """Load a shipped benchmark dataset.

    Parameters
    ----------
    name : str
        System name (``"h3"``, ``"oh3"``, ``"h2co"``, ``"ch5"``, ``"nh3_dpem"``).
    split : {"train", "test"}
        Training pool (5000 structures) or test set (2000 structures).

    Returns
    -------
    Dataset
        In Å, eV and eV/Å.

    Raises
    ------
    ValueError
        If the name or split is unknown; the message lists the available names.
    """
    return load_npz(shipped_path(name, split))
