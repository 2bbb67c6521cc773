"""Figures of a fitted surface: fit quality, 1-D/2-D cuts and learning curves.

All figures are PNG files made with matplotlib's object-oriented API
(:class:`matplotlib.figure.Figure`, Agg renderer); pyplot and the global
backend are never touched, so this works without a display.

* :func:`plot_fit` -- fitted vs reference energies (RMSE in the title),
  absolute error vs energy above the minimum, error histogram, force
  component correlation.
* :func:`energy_cut`, :func:`plot_cut` -- energies along one or two internal
  coordinates (``"r(C,O)"``, ``"a(H1,C,O)"``, ``"d(H1,C,O,H2)"``; see
  :func:`parse_coordinate`), other coordinates held at a reference geometry,
  with the training structures near the cut overlaid.
* :func:`learning_curve`, :func:`plot_learning_curve` -- test and training
  RMSE against the number of training structures.

Energies are plotted relative to the model's lowest training energy
(``e_min_``) in eV, errors in meV.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["plot_fit", "parse_coordinate", "Coordinate", "coordinate_value", "moving_mask", "set_coordinate",
           "energy_cut", "near_cut", "plot_cut", "learning_curve", "plot_learning_curve"]

DPI = 120


def _figure(size=(5.0, 4.2)):
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.subplots()


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    return path


def _energy_zero(model, data) -> float:
    e = getattr(model, "e_min_", None)
    return float(np.min(data.E)) if e is None else float(e)


# ---------------------------------------------------------------- fit plots
def plot_fit(model, data, out_dir, *, prefix: str = "") -> dict:
    """Fit-quality figures of ``model`` on ``data`` (Å, eV).

    Parameters
    ----------
    model : fitted pesfit model
    data : pesfit.data.Dataset
        With energies; with forces, a force correlation plot is added.
    out_dir : str or Path
    prefix : str
        Prepended to the file names.

    Returns
    -------
    dict
        Paths by name: ``energy_correlation``, ``error_vs_energy``,
        ``error_histogram`` and (with forces) ``force_correlation``; and the
        numbers shown: ``energy_rmse_meV``, ``force_rmse_meV_per_A``, ``n``.
    """
    from .ase import model_symbols

    if data.E is None or np.ndim(data.E) != 1:
        raise ValueError("plot_fit needs a dataset with one energy per structure")
    symbols = list(model_symbols(model))
    if list(data.symbols) != symbols:
        data = data.reorder_atoms(symbols)
    out = Path(out_dir)
    e0 = _energy_zero(model, data)
    if data.F is not None:
        E, F = model.predict(data.R, forces=True)
    else:
        E, F = model.predict(data.R), None
    ref = np.asarray(data.E) - e0
    fit = np.asarray(E) - e0
    err = 1000 * (fit - ref)
    rmse = float(np.sqrt(np.mean(err**2)))
    paths = {}

    fig, ax = _figure()
    lo, hi = min(ref.min(), fit.min()), max(ref.max(), fit.max())
    ax.plot([lo, hi], [lo, hi], color="0.6", lw=1)
    ax.scatter(ref, fit, s=4, alpha=0.6, color="C0", rasterized=True)
    ax.set_xlabel("reference energy above minimum (eV)")
    ax.set_ylabel("fitted energy above minimum (eV)")
    ax.set_title(f"energies: RMSE {rmse:.3g} meV (n = {len(ref)})")
    paths["energy_correlation"] = _save(fig, out / f"{prefix}energy_correlation.png")

    fig, ax = _figure()
    ax.scatter(ref, np.maximum(np.abs(err), 1e-6), s=4, alpha=0.6, color="C1", rasterized=True)
    ax.set_yscale("log")
    ax.set_xlabel("reference energy above minimum (eV)")
    ax.set_ylabel("|fitted - reference| (meV)")
    ax.set_title("absolute error vs energy")
    paths["error_vs_energy"] = _save(fig, out / f"{prefix}error_vs_energy.png")

    fig, ax = _figure()
    ax.hist(err, bins=min(100, max(10, len(err) // 20)), color="C2")
    ax.set_yscale("log")
    ax.set_xlabel("fitted - reference (meV)")
    ax.set_ylabel("structures")
    ax.set_title(f"error histogram: mean {err.mean():.3g} meV, RMSE {rmse:.3g} meV")
    paths["error_histogram"] = _save(fig, out / f"{prefix}error_histogram.png")

    result = {"n": int(len(ref)), "energy_rmse_meV": rmse, "force_rmse_meV_per_A": None}
    if F is not None:
        fr, ff = np.asarray(data.F).ravel(), np.asarray(F).ravel()
        frmse = float(1000 * np.sqrt(np.mean((ff - fr) ** 2)))
        fig, ax = _figure()
        lo, hi = min(fr.min(), ff.min()), max(fr.max(), ff.max())
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=1)
        ax.scatter(fr, ff, s=3, alpha=0.5, color="C3", rasterized=True)
        ax.set_xlabel("reference force component (eV/Å)")
        ax.set_ylabel("fitted force component (eV/Å)")
        ax.set_title(f"forces: RMSE {frmse:.3g} meV/Å")
        paths["force_correlation"] = _save(fig, out / f"{prefix}force_correlation.png")
        result["force_rmse_meV_per_A"] = frmse
    return {**paths, **result}


# ------------------------------------------------------------- coordinates
@dataclass(frozen=True)
class Coordinate:
    """An internal coordinate: ``kind`` "r" (distance, Å), "a" (angle, degrees) or "d" (dihedral, degrees).

    ``atoms`` are 0-based indices in the model's atom order; ``spec`` is the
    string it was parsed from.
    """

    kind: str
    atoms: tuple
    spec: str

    @property
    def unit(self) -> str:
        return "Å" if self.kind == "r" else "deg"

    @property
    def label(self) -> str:
        return f"{self.spec} ({self.unit})"


_N_ATOMS = {"r": 2, "a": 3, "d": 4}


def parse_coordinate(spec: str, symbols) -> Coordinate:
    """Parse ``"r(C,O)"``, ``"a(H1,C,O)"``, ``"d(H1,C,O,H2)"``.

    Atoms are an element symbol when it occurs once, an element with its
    1-based count among atoms of that element (``H2`` = the second H), or a
    0-based atom index (``2``).

    Examples
    --------
    >>> parse_coordinate("r(C,O)", ["C", "O", "H", "H"]).atoms
    (0, 1)
    >>> parse_coordinate("a(H2, C, 1)", ["C", "O", "H", "H"]).atoms
    (3, 0, 1)
    """
    symbols = list(symbols)
    m = re.fullmatch(r"\s*([rad])\s*\(([^()]*)\)\s*", spec)
    if not m:
        raise ValueError(f"cannot read coordinate {spec!r}: write r(A,B) for a distance, a(A,B,C) for the angle "
                         "at B, or d(A,B,C,D) for a dihedral, e.g. \"r(C,O)\" or \"a(H1,C,O)\"")
    kind, body = m.group(1), m.group(2)
    refs = [t.strip() for t in body.split(",")]
    if len(refs) != _N_ATOMS[kind]:
        raise ValueError(f"{spec!r}: {kind}(...) takes {_N_ATOMS[kind]} atoms, got {len(refs)}")
    atoms = tuple(_atom_index(r, symbols, spec) for r in refs)
    if len(set(atoms)) != len(atoms):
        raise ValueError(f"{spec!r} names the same atom twice")
    return Coordinate(kind, atoms, spec.strip())


def _atom_index(ref: str, symbols, spec) -> int:
    if ref.isdigit():
        k = int(ref)
        if k >= len(symbols):
            raise ValueError(f"{spec!r}: atom index {k} is out of range (0-{len(symbols) - 1})")
        return k
    m = re.fullmatch(r"([A-Z][a-z]?)(\d*)", ref)
    if not m or m.group(1) not in symbols:
        raise ValueError(f"{spec!r}: no atom {ref!r} among {' '.join(symbols)}")
    where = [i for i, s in enumerate(symbols) if s == m.group(1)]
    if not m.group(2):
        if len(where) > 1:
            names = ", ".join(f"{m.group(1)}{n + 1}" for n in range(len(where)))
            raise ValueError(f"{spec!r}: {ref} is ambiguous ({len(where)} atoms); use {names} "
                             f"or the atom indices {where}")
        return where[0]
    n = int(m.group(2))
    if not 1 <= n <= len(where):
        raise ValueError(f"{spec!r}: there are {len(where)} {m.group(1)} atoms, so {ref} does not exist")
    return where[n - 1]


def coordinate_value(R, coord: Coordinate):
    """Value of ``coord`` [Å or degrees] for structures ``R`` of shape (..., N, 3)."""
    R = np.asarray(R, dtype=np.float64)
    X = [R[..., i, :] for i in coord.atoms]
    if coord.kind == "r":
        return np.linalg.norm(X[0] - X[1], axis=-1)
    if coord.kind == "a":
        u, v = X[0] - X[1], X[2] - X[1]
        c = np.sum(u * v, -1) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1))
        return np.degrees(np.arccos(np.clip(c, -1, 1)))
    b0, b1, b2 = X[0] - X[1], X[2] - X[1], X[3] - X[2]
    b1 = b1 / np.linalg.norm(b1, axis=-1, keepdims=True)
    v = b0 - np.sum(b0 * b1, -1)[..., None] * b1
    w = b2 - np.sum(b2 * b1, -1)[..., None] * b1
    return np.degrees(np.arctan2(np.sum(np.cross(b1, v) * w, -1), np.sum(v * w, -1)))


def _moving_side(symbols, R, a: int, b: int) -> np.ndarray:
    """Atoms on ``b``'s side of the bond a-b (just ``b`` when a ring joins them)."""
    from .vib import _bonds

    bonds = {tuple(sorted(x)) for x in _bonds(symbols, R)} - {tuple(sorted((a, b)))}
    side, todo = {b}, [b]
    while todo:
        i = todo.pop()
        for x, y in bonds:
            for p, q in ((x, y), (y, x)):
                if p == i and q not in side:
                    side.add(q)
                    todo.append(q)
    if a in side:
        side = {b}
    mask = np.zeros(len(R), dtype=bool)
    mask[sorted(side)] = True
    return mask


def _rotate(X, origin, axis, angle):
    """Rotate points ``X`` (n, m, 3) about ``axis`` (n, 3) through ``origin`` (n, 3) by ``angle`` (n,) [rad]."""
    k = axis / np.linalg.norm(axis, axis=-1, keepdims=True)
    k = k[:, None, :]
    v = X - origin[:, None, :]
    c, s = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    return origin[:, None, :] + v * c + np.cross(k, v) * s + k * np.sum(v * k, -1, keepdims=True) * (1 - c)


def moving_mask(symbols, R, coord: Coordinate) -> np.ndarray:
    """Atoms that :func:`set_coordinate` moves (from the bonds of ``R``)."""
    a, b = coord.atoms[-2:] if coord.kind != "d" else coord.atoms[1:3]
    mask = _moving_side(symbols, R, a, b)
    if coord.kind == "d":
        mask[a] = False
        if not mask[coord.atoms[3]]:  # an improper dihedral: move the last atom alone
            mask[:] = False
            mask[coord.atoms[3]] = True
    return mask


def set_coordinate(symbols, R, coord: Coordinate, value, *, mask=None) -> np.ndarray:
    """A copy of ``R`` [Å] with ``coord`` set to ``value`` (Å or degrees).

    Distances move the second atom with everything bonded to it on its
    side; angles rotate the third atom's side about the normal of the plane
    through the central atom; dihedrals rotate the fourth atom's side about
    the central bond.  Everything else stays fixed (a rigid scan).

    Parameters
    ----------
    symbols : sequence of str
    R : ndarray of shape (N, 3) or (n, N, 3) [Å]
    coord : Coordinate
    value : float or ndarray of shape (n,)
    mask : ndarray of shape (N,) of bool, optional
        Atoms that move (default :func:`moving_mask` of the first structure).
    """
    R = np.array(R, dtype=np.float64)
    single = R.ndim == 2
    Rb = R[None] if single else R
    v = np.broadcast_to(np.asarray(value, dtype=np.float64), Rb.shape[:1])
    cur = coordinate_value(Rb, coord)
    mask = moving_mask(symbols, Rb[0], coord) if mask is None else np.asarray(mask, dtype=bool)
    if coord.kind == "r":
        a, b = coord.atoms
        u = (Rb[:, b] - Rb[:, a]) / cur[:, None]
        Rb[:, mask] += ((v - cur)[:, None] * u)[:, None, :]
    elif coord.kind == "a":
        a, b, c = coord.atoms
        n = np.cross(Rb[:, a] - Rb[:, b], Rb[:, c] - Rb[:, b])
        size = np.linalg.norm(Rb[:, a] - Rb[:, b], axis=-1) * np.linalg.norm(Rb[:, c] - Rb[:, b], axis=-1)
        if np.any(np.linalg.norm(n, axis=-1) < 1e-8 * size):
            raise ValueError(f"{coord.spec}: the three atoms are collinear, so the bending plane is undefined")
        Rb[:, mask] = _rotate(Rb[:, mask], Rb[:, b], n, np.radians(v - cur))
    else:
        a, b, c, d = coord.atoms
        Rb[:, mask] = _rotate(Rb[:, mask], Rb[:, c], Rb[:, c] - Rb[:, b], np.radians(v - cur))
    return Rb[0] if single else Rb


def _cut_geometries(symbols, R0, coord, values, coord2=None, values2=None) -> np.ndarray:
    R0 = np.asarray(R0, dtype=np.float64)
    G = set_coordinate(symbols, np.repeat(R0[None], len(values), 0), coord, values,
                       mask=moving_mask(symbols, R0, coord))
    if coord2 is None:
        return G
    n1, n2 = len(values), len(values2)
    G = set_coordinate(symbols, np.repeat(G, n2, 0), coord2, np.tile(values2, n1),
                       mask=moving_mask(symbols, R0, coord2))
    return G.reshape(n1, n2, *R0.shape)


def energy_cut(model, R0, coord, values, coord2=None, values2=None):
    """Energies [eV] along a rigid 1-D (or 2-D) cut through ``R0`` [Å].

    Returns
    -------
    E : ndarray of shape (n,) or (n, n2)
    geometries : ndarray of shape (n, N, 3) or (n, n2, N, 3)
    """
    from .ase import model_symbols

    symbols = list(model_symbols(model))
    G = _cut_geometries(symbols, R0, coord, np.asarray(values, float), coord2,
                        None if values2 is None else np.asarray(values2, float))
    E = np.asarray(model.predict(G.reshape(-1, len(symbols), 3))).reshape(G.shape[:-2])
    return E, G


def near_cut(model, data, R0, coord, coord2=None, *, tol: float = 0.05, max_points: int = 200):
    """Training structures close to the cut through ``R0``.

    For each structure ``S``, the cut geometry ``G`` at ``S``'s own value(s)
    of the cut coordinate(s) is built and ``S`` is kept when the RMS
    difference of all interatomic distances, minimised over the model's
    like-atom permutations, is below ``tol`` [Å].

    Returns
    -------
    indices : ndarray of int (closest first, at most ``max_points``)
    q : ndarray of shape (n, 1 or 2)  (the structures' coordinate values)
    deviation : ndarray of shape (n,) [Å]
    """
    from invariants import pair_distances

    from .ase import model_symbols

    symbols = list(model_symbols(model))
    if list(data.symbols) != symbols:
        data = data.reorder_atoms(symbols)
    coords = [coord] if coord2 is None else [coord, coord2]
    group = getattr(getattr(model, "molecule_", None), "group", None)
    perms = [tuple(range(len(symbols)))]
    if group is not None and group.order <= 720:
        perms = [tuple(p) for p in group.elements()]
    R = np.asarray(data.R)
    masks = [moving_mask(symbols, R0, c) for c in coords]
    best = np.full(len(R), np.inf)
    best_q = np.zeros((len(R), len(coords)))
    R0 = np.asarray(R0, dtype=np.float64)
    for p in perms:
        Rp = R[:, list(p)]
        q = np.stack([coordinate_value(Rp, c) for c in coords], axis=1)
        G = np.repeat(R0[None], len(Rp), 0)
        for k, (c, mk) in enumerate(zip(coords, masks)):
            G = set_coordinate(symbols, G, c, q[:, k], mask=mk)
        dev = np.sqrt(np.mean((pair_distances(Rp) - pair_distances(G)) ** 2, axis=1))
        better = dev < best
        best[better] = dev[better]
        best_q[better] = q[better]
    idx = np.flatnonzero(best < tol)
    idx = idx[np.argsort(best[idx])][:max_points]
    return idx, best_q[idx], best[idx]


def plot_cut(model, R0, coord, values, path, *, coord2=None, values2=None, data=None, tol: float = 0.05) -> dict:
    """PNG of a 1-D cut (line) or 2-D cut (contour map), energies relative to ``e_min_``.

    With ``data``, training structures near the cut (:func:`near_cut`) are
    overlaid: at their coordinate value and reference energy (1-D, coloured
    by their deviation from the cut) or at their coordinate values (2-D).

    Returns
    -------
    dict with ``path``, ``values``, ``energies_eV`` (list) and ``n_near``
    """
    from .ase import model_symbols

    E, _ = energy_cut(model, R0, coord, values, coord2, values2)
    e0 = getattr(model, "e_min_", None)
    e0 = float(np.min(E)) if e0 is None else float(e0)
    n_near = 0
    symbols = list(model_symbols(model))
    if coord2 is None:
        fig, ax = _figure((5.5, 4.2))
        ax.plot(values, E - e0, color="C0", lw=1.5, label="fit")
        if data is not None:
            idx, q, dev = near_cut(model, data, R0, coord, tol=tol)
            n_near = len(idx)
            if n_near:
                sc = ax.scatter(q[:, 0], np.asarray(data.E)[idx] - e0, c=dev, s=14, cmap="viridis",
                                vmin=0, vmax=tol, label=f"training points within {tol:g} Å", zorder=3)
                fig.colorbar(sc, ax=ax, label="distance RMS from the cut (Å)")
            ax.legend(loc="best", fontsize="small")
        ax.set_xlabel(coord.label)
        ax.set_ylabel("energy above minimum (eV)")
        ax.set_title(f"1-D cut along {coord.spec} ({' '.join(symbols)})")
    else:
        fig, ax = _figure((5.8, 4.6))
        X, Y = np.meshgrid(values, values2, indexing="ij")
        Z = E - e0
        levels = _round_levels(Z.min(), np.percentile(Z, 95))
        labelled = _round_levels(levels[0], levels[-1], 6)
        labelled = labelled[labelled >= levels[0]]
        cs = ax.contourf(X, Y, np.clip(Z, levels[0], levels[-1]), levels=levels, cmap="viridis")
        ax.contour(X, Y, Z, levels=labelled, colors="k", linewidths=0.4)
        cbar = fig.colorbar(cs, ax=ax, label="energy above minimum (eV)")
        cbar.set_ticks(labelled)
        if data is not None:
            idx, q, _ = near_cut(model, data, R0, coord, coord2, tol=tol)
            n_near = len(idx)
            if n_near:
                ax.scatter(q[:, 0], q[:, 1], s=8, color="w", edgecolors="k", linewidths=0.3,
                           label=f"training points within {tol:g} Å")
                ax.legend(loc="best", fontsize="small")
        ax.set_xlim(np.min(values), np.max(values))  # training points off the map are not drawn
        ax.set_ylim(np.min(values2), np.max(values2))
        ax.set_xlabel(coord.label)
        ax.set_ylabel(coord2.label)
        ax.set_title(f"2-D cut: {coord.spec}, {coord2.spec}")
    p = _save(fig, path)
    return {"path": p, "values": np.asarray(values).tolist(),
            "values2": None if values2 is None else np.asarray(values2).tolist(),
            "energies_eV": (E - e0).tolist(), "n_near": n_near}


def _round_levels(lo: float, hi: float, n: int = 20) -> np.ndarray:
    """About ``n`` contour levels at round values (steps of 1, 2, 2.5 or 5 × 10^k) from below ``lo`` to ``hi``."""
    from matplotlib.ticker import MaxNLocator

    levels = MaxNLocator(nbins=n, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
    levels = levels[levels <= hi + 1e-12 * abs(hi)]
    return levels if len(levels) > 2 else np.linspace(lo, hi, 3)


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Round tick values between ``lo`` and ``hi`` (> 0) on a log axis: 1, 2, 5 × 10^k (only 10^k over more
    than three decades; 1-9 × 10^k when that gives fewer than two)."""
    e0, e1 = int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi)))
    for mantissas in ((1,) if e1 - e0 > 3 else (1, 2, 5), tuple(range(1, 10))):
        ticks = [m * 10.0 ** e for e in range(e0, e1 + 1) for m in mantissas if lo <= m * 10.0 ** e <= hi]
        if len(ticks) >= 2:
            return ticks
    return [lo, hi]


def _plain_log_axis(axis, values, *, at_values: bool = False) -> None:
    """A log axis labelled with plain numbers (``250``, ``0.5``) at round values covering ``values``
    (``at_values``: at the values themselves, when there are at most 8)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    v = np.asarray([x for x in values if x is not None and x > 0], dtype=float)
    lo, hi = v.min() / 1.15, v.max() * 1.15
    ticks = sorted(set(v.tolist())) if at_values and len(set(v.tolist())) <= 8 else _log_ticks(lo, hi)
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    axis.set_minor_formatter(NullFormatter())
    axis.axes.set_xlim(lo, hi) if axis.axis_name == "x" else axis.axes.set_ylim(lo, hi)


# --------------------------------------------------------- learning curve
def learning_curve(make_model, train, test, sizes, *, progress=None) -> list[dict]:
    """Fit ``make_model()`` to the first ``n`` training structures for each ``n`` in ``sizes``.

    Parameters
    ----------
    make_model : callable returning an unfitted pesfit model
    train, test : pesfit.data.Dataset
    sizes : sequence of int
    progress : callable, optional
        ``progress(step, total, message)`` after each fit.

    Returns
    -------
    list of dict with ``n_train``, ``n_basis``, ``fit_seconds``,
    ``train_rmse_meV``, ``test_rmse_meV`` (and force RMSEs when available)
    """
    sizes = [int(n) for n in sizes]
    if not sizes or min(sizes) < 2:
        raise ValueError(f"sizes must be training-set sizes >= 2, got {sizes}")
    if max(sizes) > train.n_structures:
        raise ValueError(f"size {max(sizes)} exceeds the {train.n_structures} training structures")
    rows = []
    for k, n in enumerate(sizes):
        model = make_model()
        t0 = time.perf_counter()
        model.fit(train.first(n))
        seconds = time.perf_counter() - t0
        rep_train, rep_test = model.train_report_, model.evaluate(test)
        rows.append({"n_train": n, "n_basis": model.n_basis, "fit_seconds": seconds,
                     "hyperparameters": getattr(model, "hyperparameters_", {}),
                     "train_rmse_meV": rep_train.get("energy_rmse_meV"),
                     "test_rmse_meV": rep_test.get("energy_rmse_meV"),
                     "test_force_rmse_meV_per_A": rep_test.get("force_rmse_meV_per_A")})
        if progress is not None:
            progress(k + 1, len(sizes), f"n = {n}: test RMSE {rows[-1]['test_rmse_meV']:.3g} meV")
    return rows


def plot_learning_curve(rows, path, *, title: str = "learning curve") -> Path:
    """Log-log PNG of training and test energy RMSE [meV] against training-set size."""
    n = [r["n_train"] for r in rows]
    fig, ax = _figure()
    ax.loglog(n, [r["test_rmse_meV"] for r in rows], "o-", color="C0", label="test")
    ax.loglog(n, [r["train_rmse_meV"] for r in rows], "s--", color="C1", label="train")
    _plain_log_axis(ax.xaxis, n, at_values=True)
    _plain_log_axis(ax.yaxis, [r[k] for r in rows for k in ("test_rmse_meV", "train_rmse_meV")])
    ax.set_xlabel("training structures")
    ax.set_ylabel("energy RMSE (meV)")
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)
