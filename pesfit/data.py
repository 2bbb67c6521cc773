"""Datasets of structures with energies and forces, and their file formats.

A :class:`Dataset` holds ``n`` structures of the same ``N`` atoms in the
same order, in pesfit's internal units (Å, eV, eV/Å).  It is validated
on construction (shapes, finite values, known elements) and its methods
return new datasets.

Three file formats are read and written; every loader converts to Å/eV
with :mod:`pesfit.units` and records the units it read in
``meta["source_units"]``:

* ``.npz`` -- the sGDML convention: ``R`` (n, N, 3), ``z`` (N,), ``E``
  (n,) or (n, nstates), optional ``F`` (n, N, 3), ``U`` (n, nstates,
  nstates), ``R_min`` (N, 3) and ``meta`` (a JSON string).  Nothing is
  unpickled.
* extended XYZ -- read through :func:`ase.io.read`.
* MSA/PESPIP "points" text -- per structure an atom-count line, an energy
  line, then ``N`` lines ``symbol x y z``; bohr and hartree by default.

:func:`load_dataset` picks the loader from the file extension.
"""

from __future__ import annotations

import copy
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase.data import atomic_numbers as _ATOMIC_NUMBERS
from ase.data import chemical_symbols as _CHEMICAL_SYMBOLS

from . import units

__all__ = [
    "Dataset",
    "to_atomic_numbers",
    "atom_permutation",
    "find_duplicate_structures",
    "load_npz",
    "save_npz",
    "load_xyz",
    "xyz_to_npz",
    "npz_memmap",
    "save_xyz",
    "load_points",
    "save_points",
    "load_dataset",
    "save_dataset",
]

DUPLICATE_TOL = 1e-8  # Å

_MAX_Z = len(_CHEMICAL_SYMBOLS) - 1


# ---------------------------------------------------------------------------
# elements and atom order
# ---------------------------------------------------------------------------


def _symbol_to_z(symbol: str) -> int:
    """Atomic number of an element symbol, tolerant of capitalisation."""
    s = symbol.strip()
    key = s[:1].upper() + s[1:].lower()
    z = _ATOMIC_NUMBERS.get(key)
    if z is None or z == 0:
        raise ValueError(
            f"unknown element symbol {symbol!r}; use a chemical symbol such as 'H', 'C', 'O'"
        )
    return z


def to_atomic_numbers(elements) -> np.ndarray:
    """Convert element symbols or atomic numbers to atomic numbers.

    Parameters
    ----------
    elements : sequence of str or int, or str
        Element symbols (``["C", "O", "H", "H"]``), atomic numbers, or a
        whitespace-separated string of symbols (``"C O H H"``).

    Returns
    -------
    ndarray of shape (n_atoms,), dtype int64
        Atomic numbers.

    Raises
    ------
    ValueError
        If a symbol or atomic number is unknown; the message names it.

    Examples
    --------
    >>> to_atomic_numbers("C O H H").tolist()
    [6, 8, 1, 1]
    """
    if isinstance(elements, str):
        elements = elements.split()
    arr = np.asarray(elements)
    if arr.ndim != 1:
        raise ValueError(f"elements must be a 1-D sequence, got shape {arr.shape}")
    if arr.dtype.kind in "US":
        return np.array([_symbol_to_z(str(s)) for s in arr], dtype=np.int64)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind == "f" and np.all(arr == np.round(arr)):
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise ValueError(
            f"elements must be element symbols or integer atomic numbers, got dtype {arr.dtype}"
        )
    z = arr.astype(np.int64)
    bad = (z < 1) | (z > _MAX_Z)
    if bad.any():
        raise ValueError(
            f"unknown atomic number {int(z[bad][0])} at atom {int(np.argmax(bad))}; "
            f"atomic numbers must be between 1 and {_MAX_Z}"
        )
    return z


def _formula(z) -> str:
    """Element counts in order of first appearance, e.g. ``'H2 C1 O1'``."""
    counts: dict[int, int] = {}
    for zi in z:
        counts[int(zi)] = counts.get(int(zi), 0) + 1
    return " ".join(f"{_CHEMICAL_SYMBOLS[k]}{v}" for k, v in counts.items())


def _symbols_str(z) -> str:
    return " ".join(_CHEMICAL_SYMBOLS[int(k)] for k in z)


def atom_permutation(z_from, z_to) -> np.ndarray:
    """Permutation taking one atom order to another, keeping like atoms in order.

    Parameters
    ----------
    z_from : sequence of int or str
        Elements in the current atom order.
    z_to : sequence of int or str
        Elements in the wanted atom order.

    Returns
    -------
    ndarray of shape (n_atoms,), dtype int64
        ``perm`` such that atom ``k`` of the new order is atom ``perm[k]``
        of the old one (``R_new = R[:, perm]``).  The ``j``-th atom of an
        element in the new order is its ``j``-th atom in the old order.

    Raises
    ------
    ValueError
        If the two orders do not contain the same elements the same number
        of times; the message names both compositions.

    Examples
    --------
    >>> atom_permutation("H C O H", "C O H H").tolist()
    [1, 2, 0, 3]
    """
    a = to_atomic_numbers(z_from)
    b = to_atomic_numbers(z_to)
    if sorted(a.tolist()) != sorted(b.tolist()):
        raise ValueError(
            "cannot reorder atoms: the data has elements "
            f"{_formula(a)} ({_symbols_str(a)}) but the target order has "
            f"{_formula(b)} ({_symbols_str(b)}); the target must contain the same "
            "elements the same number of times"
        )
    positions: dict[int, list[int]] = {}
    for i, zi in enumerate(a.tolist()):
        positions.setdefault(zi, []).append(i)
    taken = {k: 0 for k in positions}
    perm = np.empty(len(b), dtype=np.int64)
    for k, zk in enumerate(b.tolist()):
        perm[k] = positions[zk][taken[zk]]
        taken[zk] += 1
    return perm


# ---------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------


def _check_finite(name: str, arr: np.ndarray | None, chunk: int = 65536) -> None:
    """Raise naming the first structure with a non-finite value; reads ``arr`` a block at a time."""
    if arr is None:
        return
    first, n_bad, value = None, 0, None
    for start in range(0, arr.shape[0], chunk):
        bad = ~np.isfinite(arr[start:start + chunk]).reshape(min(chunk, arr.shape[0] - start), -1)
        per_structure = bad.any(axis=1)
        if per_structure.any():
            if first is None:
                k = int(np.argmax(per_structure))
                first = start + k
                value = np.asarray(arr[first]).reshape(-1)[bad[k]][0]
            n_bad += int(per_structure.sum())
    if first is not None:
        raise ValueError(
            f"{name} contains a non-finite value ({value}) in structure {first} "
            f"({n_bad} bad structure(s) in total); "
            "remove or fix these structures before fitting"
        )


def find_duplicate_structures(R, tol: float = DUPLICATE_TOL) -> list[tuple[int, int]]:
    """Find pairs of structures with identical coordinates.

    Parameters
    ----------
    R : ndarray of shape (n_structures, n_atoms, 3)
        Coordinates [Å].
    tol : float, default 1e-8
        Two structures are duplicates when no coordinate differs by more
        than ``tol`` [Å].

    Returns
    -------
    list of (int, int)
        Sorted index pairs ``(i, j)`` with ``i < j``.

    Notes
    -----
    Structures are sorted by a fixed random projection of their
    coordinates, so only neighbours within ``tol * ||v||_1`` of each
    other are compared: about O(n log n) for distinct structures.
    """
    R = np.asarray(R, dtype=float)
    n = R.shape[0]
    if n < 2:
        return []
    X = R.reshape(n, -1)
    v = np.random.default_rng(20240607).standard_normal(X.shape[1])
    p = X @ v
    order = np.argsort(p, kind="stable")
    ps = p[order]
    window = tol * np.abs(v).sum() + 1e-12 * (1.0 + np.abs(ps).max())
    hi = np.searchsorted(ps, ps + window, side="right")
    pairs = []
    for k in np.nonzero(hi - np.arange(n) > 1)[0]:
        i = order[k]
        for m in range(k + 1, hi[k]):
            j = order[m]
            if np.max(np.abs(X[i] - X[j])) <= tol:
                pairs.append((int(min(i, j)), int(max(i, j))))
    return sorted(pairs)


def _owned(arr) -> np.ndarray:
    """A float copy of ``arr``, except that read-only float memory maps are kept (files larger than memory)."""
    if isinstance(arr, np.memmap) and arr.dtype == np.float64 and not arr.flags.writeable:
        return arr
    return np.array(arr, dtype=float)


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


# ---------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Structures of one molecule with energies, forces and diabatic matrices.

    Arrays are copied on construction and made read-only (read-only
    memory maps of float64 data, from ``load_npz(..., mmap=True)``, are kept
    as they are); methods return new datasets.

    Parameters
    ----------
    R : ndarray of shape (n_structures, n_atoms, 3)
        Cartesian coordinates [Å].
    z : ndarray of shape (n_atoms,)
        Atomic numbers in the atom order of ``R`` (element symbols are
        accepted and converted).
    E : ndarray of shape (n_structures,) or (n_structures, n_states), optional
        Energies [eV]; several columns hold the adiabatic energies of
        several electronic states.
    F : ndarray of shape (n_structures, n_atoms, 3), optional
        Forces ``-dE/dR`` [eV/Å].
    U : ndarray of shape (n_structures, n_states, n_states), optional
        Diabatic potential energy matrices [eV].
    R_min : ndarray of shape (n_atoms, 3), optional
        A reference geometry, e.g. the minimum the sampling started from [Å].
    meta : dict
        JSON-serialisable description (source, units read, ...).

    Raises
    ------
    ValueError
        On shape mismatches (the message gives the shapes), non-finite
        values (the message names the array and the first bad structure)
        and unknown elements.

    Examples
    --------
    >>> import numpy as np
    >>> ds = Dataset(R=np.zeros((2, 3, 3)) + np.arange(2)[:, None, None], z=[8, 1, 1],
    ...              E=np.array([0.5, 0.2]))
    >>> ds.n_structures, ds.n_atoms, ds.symbols
    (2, 3, ['O', 'H', 'H'])
    >>> ds.energies_relative_to_min().tolist()
    [0.3, 0.0]
    """

    R: np.ndarray
    z: np.ndarray
    E: np.ndarray | None = None
    F: np.ndarray | None = None
    U: np.ndarray | None = None
    R_min: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        set_ = object.__setattr__
        R = _owned(self.R)
        if R.ndim != 3 or R.shape[2] != 3:
            raise ValueError(
                f"R must have shape (n_structures, n_atoms, 3), got {R.shape}; "
                "for a single structure pass R[None]"
            )
        n, N = R.shape[:2]
        z = to_atomic_numbers(self.z)
        if z.shape != (N,):
            raise ValueError(
                f"z has {z.shape[0]} atoms (shape {z.shape}) but R has {N} atoms "
                f"(shape {R.shape}); z must have shape (n_atoms,) = ({N},)"
            )
        E = None if self.E is None else _owned(self.E)
        if E is not None:
            if E.ndim not in (1, 2) or E.shape[0] != n:
                raise ValueError(
                    f"E has shape {E.shape} but R has shape {R.shape}; E must have shape "
                    f"(n_structures,) = ({n},) or (n_structures, n_states)"
                )
        F = None if self.F is None else _owned(self.F)
        if F is not None and F.shape != R.shape:
            raise ValueError(
                f"F has shape {F.shape} but R has shape {R.shape}; forces must have "
                "the same shape as the coordinates"
            )
        U = None if self.U is None else _owned(self.U)
        if U is not None:
            if U.ndim != 3 or U.shape[0] != n or U.shape[1] != U.shape[2]:
                raise ValueError(
                    f"U has shape {U.shape} but R has shape {R.shape}; U must have shape "
                    f"(n_structures, n_states, n_states) with n_structures = {n}"
                )
            if E is not None and E.ndim == 2 and E.shape[1] != U.shape[1]:
                raise ValueError(
                    f"E has shape {E.shape} (n_states = {E.shape[1]}) but U has shape "
                    f"{U.shape} (n_states = {U.shape[1]}); they must describe the same states"
                )
        R_min = None if self.R_min is None else np.array(self.R_min, dtype=float)
        if R_min is not None and R_min.shape != (N, 3):
            raise ValueError(f"R_min has shape {R_min.shape}; it must have shape (n_atoms, 3) = ({N}, 3)")
        for name, arr in (("R", R), ("E", E), ("F", F), ("U", U)):
            _check_finite(name, arr)
        if R_min is not None and not np.isfinite(R_min).all():
            raise ValueError("R_min contains a non-finite value; fix or drop it")
        if not isinstance(self.meta, dict):
            raise ValueError(f"meta must be a dict, got {type(self.meta).__name__}")
        set_(self, "R", _readonly(R))
        set_(self, "z", _readonly(z))
        set_(self, "E", None if E is None else _readonly(E))
        set_(self, "F", None if F is None else _readonly(F))
        set_(self, "U", None if U is None else _readonly(U))
        set_(self, "R_min", None if R_min is None else _readonly(R_min))
        set_(self, "meta", copy.deepcopy(self.meta))

    # -- properties ---------------------------------------------------------

    @property
    def n_structures(self) -> int:
        """Number of structures ``n``."""
        return self.R.shape[0]

    @property
    def n_atoms(self) -> int:
        """Number of atoms ``N`` per structure."""
        return self.R.shape[1]

    @property
    def n_states(self) -> int | None:
        """Number of electronic states in ``E`` (1 for 1-D ``E``; None without energies)."""
        if self.E is None:
            return None
        return 1 if self.E.ndim == 1 else self.E.shape[1]

    @property
    def symbols(self) -> list[str]:
        """Element symbols in atom order."""
        return [_CHEMICAL_SYMBOLS[int(k)] for k in self.z]

    def __len__(self) -> int:
        return self.n_structures

    def __repr__(self) -> str:
        shape = lambda a: None if a is None else a.shape  # noqa: E731
        return (
            f"Dataset(n_structures={self.n_structures}, atoms='{_symbols_str(self.z)}', "
            f"E={shape(self.E)}, F={shape(self.F)}, U={shape(self.U)})"
        )

    # -- selections -----------------------------------------------------------

    def _replace(self, **changes) -> "Dataset":
        kw = dict(R=self.R, z=self.z, E=self.E, F=self.F, U=self.U, R_min=self.R_min, meta=self.meta)
        kw.update(changes)
        return Dataset(**kw)

    def subset(self, indices) -> "Dataset":
        """Return the structures selected by indices, a boolean mask or a slice.

        Parameters
        ----------
        indices : slice, int, array_like of int or array_like of bool
            Structures to keep, in the given order.

        Returns
        -------
        Dataset
            A new dataset; ``meta`` is copied unchanged.

        Raises
        ------
        ValueError
            If an index is out of range or a mask has the wrong length.
        """
        n = self.n_structures
        if isinstance(indices, slice):
            sel = indices
        else:
            idx = np.atleast_1d(np.asarray(indices))
            if idx.dtype == bool:
                if idx.shape != (n,):
                    raise ValueError(
                        f"boolean mask has shape {idx.shape}; it must have shape (n_structures,) = ({n},)"
                    )
                sel = idx
            elif idx.size == 0:
                sel = np.zeros(0, dtype=np.int64)
            elif idx.dtype.kind in "iu" and idx.ndim == 1:
                bad = (idx < -n) | (idx >= n)
                if bad.any():
                    raise ValueError(
                        f"structure index {int(idx[bad][0])} is out of range for a dataset "
                        f"of {n} structures"
                    )
                sel = idx
            else:
                raise ValueError(
                    "indices must be a slice, integers or a boolean mask, "
                    f"got an array of dtype {idx.dtype} and shape {idx.shape}"
                )
        pick = lambda a: None if a is None else a[sel]  # noqa: E731
        return self._replace(R=self.R[sel], E=pick(self.E), F=pick(self.F), U=pick(self.U))

    def first(self, n: int) -> "Dataset":
        """Return the first ``n`` structures (a training set of size ``n``).

        Raises
        ------
        ValueError
            If ``n`` is negative or larger than the number of structures.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        if n > self.n_structures:
            raise ValueError(
                f"requested the first {n} structures but the dataset has only "
                f"{self.n_structures}; ask for at most {self.n_structures}"
            )
        return self.subset(slice(0, int(n)))

    def reorder_atoms(self, order) -> "Dataset":
        """Reorder atoms to a target element order.

        Like atoms keep their relative order, e.g. data in order H C O H
        becomes C O H H with the first H of the data first.

        Parameters
        ----------
        order : sequence of str or int, or str
            Target elements in order (``"C O H H"``, ``["C", "O", "H", "H"]``
            or ``[6, 8, 1, 1]``).

        Returns
        -------
        Dataset
            A new dataset with ``R``, ``F``, ``R_min`` and ``z`` permuted.

        Raises
        ------
        ValueError
            If the target does not contain the same elements as the data.
        """
        perm = atom_permutation(self.z, order)
        take = lambda a: None if a is None else a[:, perm]  # noqa: E731
        return self._replace(
            R=self.R[:, perm],
            z=self.z[perm],
            F=take(self.F),
            R_min=None if self.R_min is None else self.R_min[perm],
        )

    def energies_relative_to_min(self) -> np.ndarray:
        """Energies minus the lowest energy in the dataset.

        Returns
        -------
        ndarray of shape (n_structures,) or (n_structures, n_states)
            ``E - E.min()`` [eV] (for several states, the minimum over all).

        Raises
        ------
        ValueError
            If the dataset has no energies.
        """
        if self.E is None:
            raise ValueError("the dataset has no energies (E is None)")
        if self.E.size == 0:
            return self.E.copy()
        return self.E - self.E.min()

    def check_duplicates(self, tol: float = DUPLICATE_TOL) -> list[tuple[int, int]]:
        """Pairs of structures whose coordinates agree within ``tol`` [Å].

        Returns
        -------
        list of (int, int)
            Index pairs ``(i, j)``, ``i < j``; empty if there are none.
        """
        return find_duplicate_structures(self.R, tol)


def _raise_on_duplicates(ds: Dataset, source) -> None:
    pairs = ds.check_duplicates()
    if pairs:
        i, j = pairs[0]
        raise ValueError(
            f"{source}: structures {i} and {j} have identical coordinates "
            f"(within {DUPLICATE_TOL:g} Å; {len(pairs)} duplicate pair(s) in total); "
            "remove the duplicates or pass allow_duplicates=True"
        )


def _build(R, z, E, F, U, R_min, meta, *, path, fmt, length_unit, energy_unit, allow_duplicates) -> Dataset:
    """Convert arrays to Å/eV, record provenance and validate."""
    lu = units.canonical_length_unit(length_unit)
    eu = units.canonical_energy_unit(energy_unit)
    lf = units.length_factor(lu, units.INTERNAL_LENGTH)
    ef = units.energy_factor(eu, units.INTERNAL_ENERGY)
    ff = ef / lf
    def conv(a, f):
        if a is None or (f == 1.0 and isinstance(a, np.memmap)):
            return a
        return np.asarray(a, dtype=float) * f

    meta = dict(meta)
    meta["source_units"] = {"length": lu, "energy": eu}
    meta["source_file"] = str(path)
    meta["source_format"] = fmt
    meta["codata_version"] = units.CODATA_VERSION
    try:
        ds = Dataset(
            R=conv(R, lf), z=z, E=conv(E, ef), F=conv(F, ff), U=conv(U, ef),
            R_min=conv(R_min, lf), meta=meta,
        )
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    if not allow_duplicates:
        _raise_on_duplicates(ds, path)
    return ds


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def _meta_json(meta: dict) -> str:
    try:
        return json.dumps(meta, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"meta cannot be written as JSON ({exc}); keep only numbers, strings, lists and dicts in meta") from None


# ---------------------------------------------------------------------------
# npz (sGDML convention)
# ---------------------------------------------------------------------------

_NPZ_KEYS = ("R", "z", "E", "F", "U", "R_min", "meta", "r_unit", "e_unit")


def _npz_unit(declared, requested, kind, canon, default, path):
    if requested is None:
        return declared if declared is not None else default
    if declared is not None and canon(declared) != canon(requested):
        raise ValueError(
            f"{path}: the file declares {kind} unit {declared!r} but {requested!r} was "
            f"requested; drop the {kind}_unit argument (pesfit --{kind}-unit) to use the file's unit"
        )
    return requested


def npz_memmap(path, key: str) -> np.memmap | None:
    """Read-only memory map of member ``key`` of an ``.npz`` file, or None if it is compressed or absent.

    ``np.savez`` stores members uncompressed (``np.savez_compressed`` does
    not); such a member is a ``.npy`` file at a fixed offset in the zip file.
    """
    import zipfile

    with zipfile.ZipFile(path) as zf:
        try:
            info = zf.getinfo(f"{key}.npy")
        except KeyError:
            return None
        if info.compress_type != zipfile.ZIP_STORED:
            return None
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)
        if local[:4] != b"PK\x03\x04":
            return None
        start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")
        fh.seek(start)
        version = np.lib.format.read_magic(fh)
        if version not in ((1, 0), (2, 0)):
            return None
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(fh)
        offset = fh.tell()
    if dtype.hasobject or dtype.kind not in "fiu" or not shape:
        return None
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def load_npz(path, *, length_unit: str | None = None, energy_unit: str | None = None,
             allow_duplicates: bool = False, mmap: bool = False) -> Dataset:
    """Load a dataset from an sGDML-style ``.npz`` file.

    Parameters
    ----------
    path : str or Path
        File with keys ``R`` (n, N, 3), ``z`` (N,) and optionally ``E``
        (n,), (n, 1) or (n, n_states), ``F`` (n, N, 3), ``U``
        (n, n_states, n_states), ``R_min`` (N, 3), ``meta`` (JSON string),
        ``r_unit`` and ``e_unit`` (unit names, as sGDML writes them).
    length_unit, energy_unit : str, optional
        Units of ``R`` and ``E`` in the file (forces are in
        energy_unit/length_unit).  By default the file's ``r_unit`` /
        ``e_unit`` if present, else ``"angstrom"`` and ``"eV"``.
    allow_duplicates : bool, default False
        Accept structures with identical coordinates.
    mmap : bool, default False
        Memory-map ``R``, ``E``, ``F`` and ``U`` instead of reading them, for
        files larger than memory (the streamed linear fits read them a block at
        a time).  Works for members stored uncompressed (``np.savez``) in Å/eV
        float64; other members are read as usual.

    Returns
    -------
    Dataset
        In Å, eV and eV/Å; ``meta["source_units"]`` records the units read.

    Raises
    ------
    ValueError
        On a missing key, pickled content, a unit that contradicts the
        file's declared unit, invalid data or duplicate structures.
    """
    path = Path(path)
    if path.is_file() and not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not an .npz file (a zip archive of arrays such as R, z, E); "
                         f"{_other_format_hint(path)}")
    with np.load(path, allow_pickle=False) as f:
        files = set(f.files)
        for key in ("R", "z"):
            if key not in files:
                raise ValueError(f"{path}: required key {key!r} is missing; the file has keys {sorted(files)}")
        arrays = {}
        for key in _NPZ_KEYS:
            if key in files:
                mapped = npz_memmap(path, key) if mmap and key in ("R", "E", "F", "U") else None
                if mapped is not None and mapped.dtype == np.float64:
                    arrays[key] = mapped
                    continue
                try:
                    arrays[key] = f[key]
                except ValueError as exc:
                    raise ValueError(
                        f"{path}: key {key!r} holds pickled Python objects, which pesfit does not "
                        "load (unpickling can run code); re-save it as a plain numeric or string array"
                    ) from exc
    meta: dict = {}
    if "meta" in arrays:
        text = str(arrays["meta"])
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            parsed = {"description": text}
        meta = parsed if isinstance(parsed, dict) else {"meta": parsed}
    declared_l = str(arrays["r_unit"]) if "r_unit" in arrays else None
    declared_e = str(arrays["e_unit"]) if "e_unit" in arrays else None
    lu = _npz_unit(declared_l, length_unit, "length", units.canonical_length_unit, units.INTERNAL_LENGTH, path)
    eu = _npz_unit(declared_e, energy_unit, "energy", units.canonical_energy_unit, units.INTERNAL_ENERGY, path)
    E = arrays.get("E")
    if E is not None and E.ndim == 2 and E.shape[1] == 1:
        E = E[:, 0]
    ignored = sorted(files - set(_NPZ_KEYS))
    if ignored:
        meta["npz_ignored_keys"] = ignored
    return _build(
        arrays["R"], arrays["z"], E, arrays.get("F"), arrays.get("U"), arrays.get("R_min"), meta,
        path=path, fmt="npz", length_unit=lu, energy_unit=eu, allow_duplicates=allow_duplicates,
    )


def save_npz(dataset: Dataset, path) -> None:
    """Save a dataset as an sGDML-style ``.npz`` file in Å and eV.

    Writes ``R``, ``z``, ``E``, ``F``, ``U``, ``R_min`` (those present),
    ``meta`` as a JSON string and ``r_unit="Ang"``, ``e_unit="eV"``.
    The file is written to ``path`` exactly (no suffix is appended).

    Raises
    ------
    ValueError
        If ``meta`` cannot be written as JSON.
    """
    out = {"R": dataset.R, "z": dataset.z}
    for key in ("E", "F", "U", "R_min"):
        value = getattr(dataset, key)
        if value is not None:
            out[key] = value
    out["meta"] = np.array(_meta_json(dataset.meta))
    out["r_unit"] = np.array("Ang")
    out["e_unit"] = np.array("eV")
    with open(path, "wb") as fh:
        np.savez(fh, **out)


# ---------------------------------------------------------------------------
# extended XYZ
# ---------------------------------------------------------------------------


def _xyz_energy(atoms):
    if "energies" in atoms.info:
        return np.atleast_1d(np.asarray(atoms.info["energies"], dtype=float))
    calc = atoms.calc
    if calc is not None and calc.results.get("energy") is not None:
        return float(calc.results["energy"])
    for key in ("energy", "E"):
        if key in atoms.info:
            return float(atoms.info[key])
    return None


def _xyz_forces(atoms):
    calc = atoms.calc
    if calc is not None and calc.results.get("forces") is not None:
        return np.asarray(calc.results["forces"], dtype=float)
    if "forces" in atoms.arrays:
        return np.asarray(atoms.arrays["forces"], dtype=float)
    return None


def _collect(values, what, path):
    """Stack per-structure values that must be present everywhere or nowhere."""
    have = [v is not None for v in values]
    if not any(have):
        return None
    if not all(have):
        i = next(k for k, h in enumerate(have) if h != have[0])
        state = f"has no {what} but structure 0 has" if have[0] else f"has {what} but structure 0 has none"
        raise ValueError(f"{path}: structure {i} {state}; give {what} for all structures or none")
    shapes = {np.shape(v) for v in values}
    if len(shapes) > 1:
        first = np.shape(values[0])
        i = next(k for k, v in enumerate(values) if np.shape(v) != first)
        raise ValueError(
            f"{path}: structure {i} has {what} of shape {np.shape(values[i])} but structure 0 "
            f"has shape {first}"
        )
    return np.array(values, dtype=float)


def load_xyz(path, *, length_unit: str = "angstrom", energy_unit: str = "eV",
             allow_duplicates: bool = False) -> Dataset:
    """Load a dataset from an extended XYZ file.

    Read with ``ase.io.read(path, index=":", format="extxyz")``.  The
    energy comes from the calculator results (``energy=`` in the comment
    line), else ``atoms.info["energy"]`` or ``atoms.info["E"]``; several
    states from ``atoms.info["energies"]``.  Forces come from the
    calculator or ``atoms.arrays["forces"]``.

    Parameters
    ----------
    path : str or Path
        Extended XYZ file.
    length_unit, energy_unit : str
        Units of positions and energies in the file (forces in
        energy_unit/length_unit).
    allow_duplicates : bool, default False
        Accept structures with identical coordinates.

    Returns
    -------
    Dataset
        In Å, eV and eV/Å.

    Raises
    ------
    ValueError
        If structures differ in atom count or element order (the message
        names the structure), energies or forces are given for only some
        structures, or the data are invalid.
    """
    import ase.io
    import ase.io.extxyz

    path = Path(path)
    try:
        images = ase.io.read(path, index=":", format="extxyz")
    except (ValueError, IndexError, KeyError, ase.io.extxyz.XYZError) as exc:
        msg = " ".join(str(exc).split())
        raise ValueError(f"{path}: not a valid extended XYZ file ({msg}); {_other_format_hint(path)}") from None
    if not images:
        raise ValueError(f"{path}: the file contains no structures")
    z0 = images[0].numbers
    for i, atoms in enumerate(images):
        if len(atoms) != len(z0):
            raise ValueError(
                f"{path}: structure {i} has {len(atoms)} atoms but structure 0 has {len(z0)}; "
                "all structures must have the same atoms in the same order"
            )
        if not np.array_equal(atoms.numbers, z0):
            raise ValueError(
                f"{path}: structure {i} has elements {_symbols_str(atoms.numbers)} but structure 0 "
                f"has {_symbols_str(z0)} (same atom count, different elements or order); "
                "all structures must list the same elements in the same order"
            )
    R = np.array([a.positions for a in images], dtype=float)
    E = _collect([_xyz_energy(a) for a in images], "energies", path)
    F = _collect([_xyz_forces(a) for a in images], "forces", path)
    return _build(
        R, z0, E, F, None, None, {}, path=path, fmt="xyz",
        length_unit=length_unit, energy_unit=energy_unit, allow_duplicates=allow_duplicates,
    )


def xyz_to_npz(src, dst, *, length_unit: str = "angstrom", energy_unit: str = "eV", block_size: int = 10_000) -> int:
    """Convert an extended XYZ file to an uncompressed ``.npz`` (Å, eV) a block of structures at a time.

    Memory stays at one block whatever the file size; open the result with
    ``load_npz(dst, mmap=True)`` to fit data larger than memory.  Energies and
    forces are read as :func:`load_xyz` reads them.  Returns the number of
    structures.

    Raises
    ------
    ValueError
        As :func:`load_xyz`, naming the structure at fault.
    """
    import tempfile
    import zipfile

    import ase.io

    src = Path(src)
    lf = units.length_factor(units.canonical_length_unit(length_unit), units.INTERNAL_LENGTH)
    ef = units.energy_factor(units.canonical_energy_unit(energy_unit), units.INTERNAL_ENERGY)

    def frames():
        try:
            yield from ase.io.iread(src, index=":", format="extxyz")
        except (ValueError, IndexError, KeyError) as exc:
            raise ValueError(f"{src}: could not read extended XYZ ({exc})") from exc

    n, z0, e_shape, has_f = 0, None, None, None
    for i, atoms in enumerate(frames()):  # pass 1: count and check
        e, f = _xyz_energy(atoms), _xyz_forces(atoms)
        if z0 is None:
            z0, e_shape, has_f = atoms.numbers.copy(), None if e is None else np.shape(e), f is not None
        elif not np.array_equal(atoms.numbers, z0):
            raise ValueError(f"{src}: structure {i} has elements {_symbols_str(atoms.numbers)} but structure 0 "
                             f"has {_symbols_str(z0)}; all structures must list the same atoms in the same order")
        if (None if e is None else np.shape(e)) != e_shape or (f is not None) != has_f:
            raise ValueError(f"{src}: structure {i} differs from structure 0 in which of energies/forces it gives "
                             "(or their shape); give them for all structures or none")
        n += 1
    if n == 0:
        raise ValueError(f"{src}: the file contains no structures")
    N = len(z0)
    with tempfile.TemporaryDirectory() as tmp:
        members = {"R": (n, N, 3)}
        if e_shape is not None:
            members["E"] = (n,) + e_shape
        if has_f:
            members["F"] = (n, N, 3)
        out = {k: np.lib.format.open_memmap(Path(tmp) / f"{k}.npy", mode="w+", dtype=np.float64, shape=shape)
               for k, shape in members.items()}
        block = []

        def flush(stop):
            start = stop - len(block)
            out["R"][start:stop] = np.array([a.positions for a in block]) * lf
            if "E" in out:
                out["E"][start:stop] = np.array([_xyz_energy(a) for a in block], dtype=float) * ef
            if "F" in out:
                out["F"][start:stop] = np.array([_xyz_forces(a) for a in block]) * (ef / lf)
            block.clear()

        for i, atoms in enumerate(frames()):  # pass 2: fill a block at a time
            block.append(atoms)
            if len(block) == block_size:
                flush(i + 1)
        if block:
            flush(n)
        for arr in out.values():
            arr.flush()
        del out
        small = {"z": np.asarray(z0), "meta": np.array(_meta_json({"converted_from": str(src)})),
                 "r_unit": np.array("Ang"), "e_unit": np.array("eV")}
        with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for k in members:
                zf.write(Path(tmp) / f"{k}.npy", arcname=f"{k}.npy")
            for k, v in small.items():
                with zf.open(f"{k}.npy", "w") as fh:
                    np.lib.format.write_array(fh, v, allow_pickle=False)
    return n


def save_xyz(dataset: Dataset, path) -> None:
    """Save a dataset as extended XYZ in Å, eV and eV/Å, at full precision.

    Energies go to ``energy=`` (the ground state for several states,
    which also go to ``energies="..."``), forces to a ``forces`` column.
    ``meta`` and ``R_min`` are not written.

    Raises
    ------
    ValueError
        If the dataset has diabatic matrices ``U``, which XYZ does not hold;
        use :func:`save_npz`.
    """
    if dataset.U is not None:
        raise ValueError("extended XYZ cannot store the diabatic matrices U; use save_npz instead")
    syms = dataset.symbols
    props = "species:S:1:pos:R:3" + (":forces:R:3" if dataset.F is not None else "")
    lines = []
    for i in range(dataset.n_structures):
        comment = [f"Properties={props}"]
        if dataset.E is not None:
            e = np.atleast_1d(dataset.E[i])
            comment.append(f"energy={e[0]:.17g}")
            if dataset.E.ndim == 2:
                comment.append('energies="' + " ".join(f"{x:.17g}" for x in e) + '"')
        comment.append('pbc="F F F"')
        lines.append(str(dataset.n_atoms))
        lines.append(" ".join(comment))
        for k in range(dataset.n_atoms):
            row = f"{syms[k]:<2s} " + " ".join(f"{x:24.16e}" for x in dataset.R[i, k])
            if dataset.F is not None:
                row += " " + " ".join(f"{x:24.16e}" for x in dataset.F[i, k])
            lines.append(row)
    Path(path).write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------
# MSA / PESPIP points
# ---------------------------------------------------------------------------


def _float(token: str) -> float:
    return float(token.replace("D", "E").replace("d", "e"))


def load_points(path, *, length_unit: str = "bohr", energy_unit: str = "hartree",
                allow_duplicates: bool = False) -> Dataset:
    """Load a dataset from an MSA/PESPIP "points" text file.

    Each structure is an atom-count line, an energy line (only the first
    number is used) and one line ``symbol x y z`` per atom.  Blank lines
    between structures are allowed; Fortran ``D`` exponents are accepted.

    Parameters
    ----------
    path : str or Path
        Points file.
    length_unit, energy_unit : str, default "bohr", "hartree"
        Units of the coordinates and energies in the file.
    allow_duplicates : bool, default False
        Accept structures with identical coordinates.

    Returns
    -------
    Dataset
        In Å and eV, without forces.

    Raises
    ------
    ValueError
        On a truncated file, a non-numeric field, an unknown element, or a
        change of atom count or element order; the message names the
        structure index and the line number.
    """
    path = Path(path)
    lines = path.read_text().splitlines()
    nlines = len(lines)
    R, E = [], []
    z0 = None
    i = 0
    s = 0
    while i < nlines:
        if not lines[i].strip():
            i += 1
            continue
        where = f"{path}, line {i + 1} (structure {s})"
        tok = lines[i].split()
        try:
            n_at = int(tok[0])
        except ValueError:
            raise ValueError(f"{where}: expected the number of atoms, got {lines[i].strip()!r}") from None
        if n_at <= 0:
            raise ValueError(f"{where}: the number of atoms must be positive, got {n_at}")
        if z0 is not None and n_at != len(z0):
            raise ValueError(
                f"{where}: structure {s} has {n_at} atoms but structure 0 has {len(z0)}; "
                "all structures must have the same atoms in the same order"
            )
        if i + 1 + n_at >= nlines:
            raise ValueError(
                f"{path}: the file ends at line {nlines} inside structure {s}, which starts at "
                f"line {i + 1} and needs an energy line and {n_at} atom lines; the file is truncated"
            )
        etok = lines[i + 1].split()
        try:
            E.append(_float(etok[0]))
        except (ValueError, IndexError):
            raise ValueError(
                f"{path}, line {i + 2} (structure {s}): expected the energy, got {lines[i + 1].strip()!r}"
            ) from None
        zs, xyz = [], []
        for k in range(n_at):
            ln = i + 2 + k
            tok = lines[ln].split()
            if len(tok) < 4:
                raise ValueError(
                    f"{path}, line {ln + 1} (structure {s}): expected 'symbol x y z', "
                    f"got {lines[ln].strip()!r}"
                )
            try:
                zs.append(_symbol_to_z(tok[0]))
            except ValueError as exc:
                raise ValueError(f"{path}, line {ln + 1} (structure {s}): {exc}") from None
            try:
                xyz.append([_float(t) for t in tok[1:4]])
            except ValueError:
                raise ValueError(
                    f"{path}, line {ln + 1} (structure {s}): non-numeric coordinate in "
                    f"{lines[ln].strip()!r}"
                ) from None
        if z0 is None:
            z0 = zs
        elif zs != z0:
            raise ValueError(
                f"{path}, line {i + 3} (structure {s}): structure {s} has elements "
                f"{_symbols_str(zs)} but structure 0 has {_symbols_str(z0)} (same atom count, "
                "different elements or order); all structures must list the same elements in the same order"
            )
        R.append(xyz)
        i += 2 + n_at
        s += 1
    if z0 is None:
        raise ValueError(f"{path}: the file contains no structures")
    return _build(
        np.array(R), z0, np.array(E), None, None, None, {}, path=path, fmt="points",
        length_unit=length_unit, energy_unit=energy_unit, allow_duplicates=allow_duplicates,
    )


def save_points(dataset: Dataset, path, *, length_unit: str = "bohr", energy_unit: str = "hartree") -> None:
    """Save a dataset as an MSA/PESPIP "points" text file.

    The format holds coordinates and one energy per structure; forces,
    ``U``, ``R_min`` and ``meta`` are not written.

    Parameters
    ----------
    dataset : Dataset
        Dataset with one energy per structure.
    path : str or Path
        Output file.
    length_unit, energy_unit : str, default "bohr", "hartree"
        Units written to the file.

    Raises
    ------
    ValueError
        If the dataset has no energies or several states per structure
        (select one state, or use :func:`save_npz`).
    """
    if dataset.E is None:
        raise ValueError("the points format needs energies, but the dataset has none (E is None)")
    if dataset.E.ndim != 1:
        raise ValueError(
            f"the points format holds one energy per structure but E has shape {dataset.E.shape}; "
            "build a dataset with one state (E[:, k]) or use save_npz"
        )
    lf = units.length_factor(units.INTERNAL_LENGTH, length_unit)
    ef = units.energy_factor(units.INTERNAL_ENERGY, energy_unit)
    R = dataset.R * lf
    E = dataset.E * ef
    syms = dataset.symbols
    lines = []
    for i in range(dataset.n_structures):
        lines.append(f"{dataset.n_atoms:d}")
        lines.append(f"{E[i]:24.16e}")
        for k in range(dataset.n_atoms):
            lines.append(f"{syms[k]:<2s} " + " ".join(f"{x:24.16e}" for x in R[i, k]))
    Path(path).write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------
# dispatch
# ---------------------------------------------------------------------------

_FORMATS = {"npz": "npz", "xyz": "xyz", "extxyz": "xyz", "points": "points"}
_SUFFIXES = {".npz": "npz", ".xyz": "xyz", ".extxyz": "xyz", ".dat": "points", ".txt": "points", ".points": "points"}
_LOADERS = {"npz": load_npz, "xyz": load_xyz, "points": load_points}
_SAVERS = {"npz": save_npz, "xyz": save_xyz, "points": save_points}


#: the formats ``load_dataset`` reads, by extension, for error messages
FORMATS_READ = ("pesfit reads .npz (sGDML-style arrays), .xyz/.extxyz (extended XYZ) and .dat/.txt/.points "
                "(MSA points files); see docs/formats.md")


def _other_format_hint(path: Path) -> str:
    """What a file that failed to load as its extension says seems to be, and what pesfit reads."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if head.startswith(b"PK"):
        kind = "it looks like a zip archive (an .npz file?)"
    elif head.lstrip().startswith(b"{"):
        kind = "it looks like JSON (a pesfit model file?)"
    else:
        kind = "it is a binary file" if b"\0" in head else "it is a text file"
    return f"{kind}; {FORMATS_READ}"


def _resolve_format(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        try:
            return _FORMATS[fmt.lower()]
        except (KeyError, AttributeError):
            raise ValueError(f"unknown format {fmt!r}; use one of {sorted(_FORMATS)}") from None
    try:
        return _SUFFIXES[path.suffix.lower()]
    except KeyError:
        raise ValueError(f"{path}: unknown data file format (extension {path.suffix!r}); {FORMATS_READ}") from None


def load_dataset(path, *, fmt: str | None = None, **kwargs) -> Dataset:
    """Load a dataset, choosing the loader from the file extension.

    Parameters
    ----------
    path : str or Path
        ``.npz`` (:func:`load_npz`), ``.xyz``/``.extxyz`` (:func:`load_xyz`)
        or ``.dat``/``.txt``/``.points`` (:func:`load_points`).
    fmt : {"npz", "xyz", "extxyz", "points"}, optional
        Override the extension.
    **kwargs
        Passed to the loader (``length_unit``, ``energy_unit``,
        ``allow_duplicates``).

    Raises
    ------
    ValueError
        If the format is unknown.
    """
    path = Path(path)
    return _LOADERS[_resolve_format(path, fmt)](path, **kwargs)


def save_dataset(dataset: Dataset, path, *, fmt: str | None = None, **kwargs) -> None:
    """Save a dataset, choosing the writer from the file extension (see :func:`load_dataset`)."""
    path = Path(path)
    _SAVERS[_resolve_format(path, fmt)](dataset, path, **kwargs)
