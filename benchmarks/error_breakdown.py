"""Breakdowns of test errors that the benchmark scripts print (import them as scripts: run from benchmarks/).

* :func:`print_regions`: RMSE per region of an error report (compact /
  separated fragments, :mod:`pesfit.regions`).
* :func:`print_switch_bands`: where the ch5 test error sits relative to the
  source surface's furthest-H switch.

The ch5 reference energies come from a CH4 + H surface that is symmetric only
in four of the five H atoms.  The library wrapper that produced the data makes
it S5-invariant by calling the H atom furthest from C the attacking one.  The
energy therefore jumps where the two furthest H atoms trade places, ``r1 =
r2`` (r1 >= r2 the two largest C-H distances), by 1.3 eV at the median.  No
continuous model can follow that, so a fit's error gathers in a band of small
``r1 - r2`` (see docs/benchmarks.md).
"""
from __future__ import annotations

import numpy as np

EDGES_A = (0.0, 0.05, 0.2, 0.5, 1.0, np.inf)


def switch_distance(R: np.ndarray) -> np.ndarray:
    """``r1 - r2`` [Å]: the gap between the two largest C-H distances of C H5 structures (C first)."""
    R = np.asarray(R, dtype=np.float64)
    r = np.sort(np.linalg.norm(R[:, 1:] - R[:, :1], axis=2), axis=1)
    return r[:, -1] - r[:, -2]


def switch_bands(model, test) -> list[dict]:
    """Test energy RMSE [meV] and share of the total squared error per ``r1 - r2`` band."""
    err = 1000.0 * (model.predict(np.asarray(test.R)) - np.asarray(test.E))
    gap = switch_distance(test.R)
    total = float(np.sum(err**2))
    rows = []
    for lo, hi in zip(EDGES_A[:-1], EDGES_A[1:]):
        s = (gap >= lo) & (gap < hi)
        if s.any():
            rows.append({"band_A": (lo, hi), "n": int(s.sum()), "rmse_meV": float(np.sqrt(np.mean(err[s] ** 2))),
                         "mse_share": float(np.sum(err[s] ** 2) / total)})
    return rows


def print_regions(name: str, report: dict) -> None:
    """One line: test energy RMSE [meV] per region of an :func:`pesfit.metrics.error_report`."""
    cells = ", ".join(f"{r['region']} {r['energy_rmse_meV']:.1f} (n = {r['n']})" for r in report.get("regions", []))
    print(f"   {name} test RMSE by region, meV: {cells}", flush=True)


def print_switch_bands(model, test, label: str) -> list[dict]:
    """Print and return :func:`switch_bands` for a model fitted to ch5 (``label`` names it)."""
    rows = switch_bands(model, test)
    print(f"   {label}: ch5 test error by r1 - r2 (two largest C-H distances; the source switches at 0)")
    for r in rows:
        lo, hi = r["band_A"]
        band = f"{lo:.2f}-{hi:.2f} Å" if np.isfinite(hi) else f"> {lo:.2f} Å"
        print(f"     {band:<12s} n = {r['n']:4d}  RMSE {r['rmse_meV']:7.1f} meV  "
              f"share of squared error {r['mse_share']:.2f}", flush=True)
    return rows
