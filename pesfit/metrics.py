"""Error statistics of a fit against reference energies and forces.

:func:`error_report` returns a plain, JSON-serialisable dict; energies
are reported in meV and cm^-1, forces in meV/Å, overall and in bands of
reference energy above the minimum.  :func:`format_report` turns it into
text for people.
"""

from __future__ import annotations

import math

import numpy as np

from . import units

__all__ = ["error_report", "format_report"]

_EV_TO_MEV = 1000.0
_EV_TO_CM = units.energy_factor("eV", "cm-1")


def _as_pair(pred, ref, name):
    pred = np.asarray(pred, dtype=float)
    ref = np.asarray(ref, dtype=float)
    if pred.shape != ref.shape:
        raise ValueError(
            f"{name}_pred has shape {pred.shape} but {name}_ref has shape {ref.shape}; "
            "predictions and references must have the same shape"
        )
    for label, arr in ((f"{name}_pred", pred), (f"{name}_ref", ref)):
        bad = ~np.isfinite(arr)
        if bad.any():
            first = int(np.argmax(bad.reshape(arr.shape[0], -1).any(axis=1))) if arr.ndim else 0
            raise ValueError(
                f"{label} contains {int(bad.sum())} non-finite value(s), the first in structure "
                f"{first}; errors are undefined there"
            )
    return pred, ref


def _stats(err: np.ndarray) -> tuple[float | None, float | None, float | None]:
    """RMSE, MAE and max |err| of an error array, None when empty."""
    if err.size == 0:
        return None, None, None
    a = np.abs(err)
    return float(np.sqrt(np.mean(err**2))), float(np.mean(a)), float(np.max(a))


def _scaled(x, f):
    return None if x is None else x * f


def error_report(E_pred, E_ref, F_pred=None, F_ref=None, *, e_min=None, bands=(0.5, 1.0, 2.0),
                 n_largest=5, regions=None) -> dict:
    """Error statistics of predicted energies (and forces) against references.

    Parameters
    ----------
    E_pred, E_ref : array_like of shape (n_structures,) or (n_structures, n_states)
        Predicted and reference energies [eV].
    F_pred, F_ref : array_like of shape (n_structures, n_atoms, 3), optional
        Predicted and reference forces [eV/Å]; force errors are statistics
        over all Cartesian components.
    e_min : float, optional
        Energy zero for the bands [eV]; by default ``min(E_ref)``.
    bands : sequence of float, default (0.5, 1.0, 2.0)
        Increasing band edges [eV above ``e_min``].  The bands are
        ``[0, b0)``, ``[b0, b1)``, ..., ``[b_last, inf)``; energies below
        ``e_min`` are in no band.
    n_largest : int, default 5
        How many structures with the largest energy errors to list.
    regions : sequence of str, optional
        A region label per structure (e.g. from
        :func:`pesfit.regions.region_labels`: ``"compact"``,
        ``"2 fragments"``, ...); adds the errors per region.

    Returns
    -------
    dict
        ``n_energies``, ``e_min_eV``, ``energy_rmse_meV``,
        ``energy_mae_meV``, ``energy_max_meV``, ``energy_rmse_cm``,
        ``energy_mae_cm``; with forces also ``n_force_components``,
        ``force_rmse_meV_per_A``, ``force_mae_meV_per_A``,
        ``force_max_meV_per_A``; and ``bands``, a list of dicts with
        ``range_eV`` ([lo, hi], hi None for the last), ``n``,
        ``energy_rmse_meV`` and ``energy_mae_meV`` (None when ``n == 0``);
        ``largest_energy_errors``, the ``n_largest`` structures with the
        largest energy error (over states), largest first, as dicts with
        ``index`` and the signed ``error_meV``; and
        ``energy_rmse_meV_without_largest``, the RMSE over the other
        structures (None when none are left).  A few outliers dominating
        the RMSE show as a large gap between the two RMSEs.  With
        ``regions``, also ``regions``: dicts with ``region``, ``n``
        (energies, as for the bands), ``energy_rmse_meV`` and
        ``energy_mae_meV``; ``"compact"`` first, then by fragment count.
        All numbers are Python floats or ints.

    Raises
    ------
    ValueError
        On shape mismatches, non-finite values, forces given for only one
        side, band edges that are not positive and increasing, a negative
        ``n_largest``, or ``regions`` that are not one label per structure.

    Examples
    --------
    >>> r = error_report([0.0, 1.0], [0.0, 1.002])
    >>> round(r["energy_rmse_meV"], 6), round(r["energy_max_meV"], 6)
    (1.414214, 2.0)
    """
    E_pred, E_ref = _as_pair(E_pred, E_ref, "E")
    if E_ref.size == 0:
        raise ValueError("no energies to compare (E_ref is empty)")
    if isinstance(n_largest, bool) or not isinstance(n_largest, (int, np.integer)) or n_largest < 0:
        raise ValueError(f"n_largest must be an integer >= 0, got {n_largest!r}")
    if isinstance(regions, str):
        raise ValueError("regions must be a sequence of labels, one per structure, not a single string")
    edges = [float(b) for b in bands]
    if any(b <= 0 for b in edges) or any(b2 <= b1 for b1, b2 in zip(edges, edges[1:])):
        raise ValueError(f"bands must be positive and increasing, got {tuple(bands)}")
    err = (E_pred - E_ref).ravel()
    rmse, mae, mx = _stats(err)
    e0 = float(np.min(E_ref)) if e_min is None else float(e_min)
    report: dict = {
        "n_energies": int(err.size),
        "e_min_eV": e0,
        "energy_rmse_meV": rmse * _EV_TO_MEV,
        "energy_mae_meV": mae * _EV_TO_MEV,
        "energy_max_meV": mx * _EV_TO_MEV,
        "energy_rmse_cm": rmse * _EV_TO_CM,
        "energy_mae_cm": mae * _EV_TO_CM,
    }
    if (F_pred is None) != (F_ref is None):
        raise ValueError("give both F_pred and F_ref, or neither")
    if F_pred is not None:
        F_pred, F_ref = _as_pair(F_pred, F_ref, "F")
        frmse, fmae, fmx = _stats((F_pred - F_ref).ravel())
        report.update(
            n_force_components=int(F_ref.size),
            force_rmse_meV_per_A=_scaled(frmse, _EV_TO_MEV),
            force_mae_meV_per_A=_scaled(fmae, _EV_TO_MEV),
            force_max_meV_per_A=_scaled(fmx, _EV_TO_MEV),
        )
    rel = E_ref.ravel() - e0
    lows = [0.0] + edges
    highs = edges + [None]
    out = []
    for lo, hi in zip(lows, highs):
        mask = (rel >= lo) if hi is None else (rel >= lo) & (rel < hi)
        b_rmse, b_mae, _ = _stats(err[mask])
        out.append({
            "range_eV": [lo, hi],
            "n": int(mask.sum()),
            "energy_rmse_meV": _scaled(b_rmse, _EV_TO_MEV),
            "energy_mae_meV": _scaled(b_mae, _EV_TO_MEV),
        })
    report["bands"] = out
    diff = np.atleast_1d(E_pred - E_ref)
    per_structure = diff.reshape(diff.shape[0], -1)      # (n_structures, n_states)
    worst_state = np.argmax(np.abs(per_structure), axis=1)
    signed = per_structure[np.arange(len(per_structure)), worst_state]
    order = np.argsort(-np.abs(signed), kind="stable")[:int(n_largest)]
    report["largest_energy_errors"] = [{"index": int(i), "error_meV": float(signed[i] * _EV_TO_MEV)}
                                       for i in order]
    rest = np.delete(per_structure, order, axis=0).ravel()
    report["energy_rmse_meV_without_largest"] = _scaled(_stats(rest)[0], _EV_TO_MEV)
    if regions is not None:
        labels = np.array([str(r) for r in regions], dtype=object)
        if len(labels) != len(per_structure):
            raise ValueError(f"regions has {len(labels)} labels but there are {len(per_structure)} structures")
        region_rows = []
        for label in sorted(set(labels), key=_region_order):
            errs = per_structure[labels == label].ravel()
            r_rmse, r_mae, _ = _stats(errs)
            region_rows.append({"region": label, "n": int(errs.size), "energy_rmse_meV": r_rmse * _EV_TO_MEV,
                                "energy_mae_meV": r_mae * _EV_TO_MEV})
        report["regions"] = region_rows
    return report


def _region_order(label: str):
    """``"compact"``, then ``"K fragments"`` by K, then any other label alphabetically."""
    head = label.split(" ", 1)[0]
    if label == "compact":
        return (0, 0, label)
    return (1, int(head), label) if head.isdigit() else (2, 0, label)


def _fmt(x, spec=".3f"):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def format_report(report: dict, title: str = "errors") -> str:
    """Format an :func:`error_report` dict as readable text.

    Parameters
    ----------
    report : dict
        Output of :func:`error_report`.
    title : str
        First line of the text.

    Returns
    -------
    str
        Several lines, energies in meV and cm^-1, forces in meV/Å.
    """
    to_cm = _EV_TO_CM / _EV_TO_MEV
    lines = [title]
    lines.append(
        f"  energy ({report.get('n_energies', '?')} values): "
        f"RMSE {_fmt(report['energy_rmse_meV'])} meV ({_fmt(report['energy_rmse_cm'], '.2f')} cm-1), "
        f"MAE {_fmt(report['energy_mae_meV'])} meV ({_fmt(report['energy_mae_cm'], '.2f')} cm-1), "
        f"max {_fmt(report['energy_max_meV'])} meV"
    )
    if "force_rmse_meV_per_A" in report:
        lines.append(
            f"  forces: RMSE {_fmt(report['force_rmse_meV_per_A'])} meV/A, "
            f"MAE {_fmt(report['force_mae_meV_per_A'])} meV/A, "
            f"max {_fmt(report['force_max_meV_per_A'])} meV/A"
        )
    largest = report.get("largest_energy_errors") or []
    if largest:
        listed = ", ".join(f"#{w['index']} {w['error_meV']:+.1f}" for w in largest)
        lines.append(f"  largest energy errors (meV): {listed}; RMSE without them "
                     f"{_fmt(report.get('energy_rmse_meV_without_largest'))} meV")
    bands = report.get("bands") or []
    if bands:
        e0 = report.get("e_min_eV")
        lines.append(f"  by energy above E_min{'' if e0 is None else f' = {e0:.6f} eV'}:")
        for b in bands:
            lo, hi = b["range_eV"]
            rng = f"{lo:g}-{hi:g} eV" if hi is not None else f"> {lo:g} eV"
            rmse = b["energy_rmse_meV"]
            lines.append(
                f"    {rng:<12s} n={b['n']:<7d} RMSE {_fmt(rmse)} meV "
                f"({_fmt(None if rmse is None else rmse * to_cm, '.2f')} cm-1), "
                f"MAE {_fmt(b['energy_mae_meV'])} meV"
            )
    regions = report.get("regions") or []
    if regions:
        lines.append("  by region:")
        for r in regions:
            lines.append(f"    {r['region']:<12s} n={r['n']:<7d} RMSE {_fmt(r['energy_rmse_meV'])} meV "
                         f"({_fmt(r['energy_rmse_meV'] * to_cm, '.2f')} cm-1), MAE {_fmt(r['energy_mae_meV'])} meV")
    return "\n".join(lines)
