"""Where the ch5 test error sits: distance to the source surface's furthest-H switch.

The ch5 reference energies come from a CH4 + H surface that is symmetric only in
four of the five H atoms.  The library wrapper that produced the data makes it
S5-invariant by calling the H atom furthest from C the attacking one.  The
energy therefore jumps where the two furthest H atoms trade places,
``r1 = r2`` (r1 >= r2 the two largest C-H distances).  The jump is 1.3 eV at
the median.  No continuous model can follow it, so a fit's error gathers in a
band of small ``r1 - r2``.  This module prints that band structure for any
fitted model (see docs/benchmarks.md).
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


def print_switch_bands(model, test, label: str) -> list[dict]:
    rows = switch_bands(model, test)
    print(f"   {label}: ch5 test error by r1 - r2 (two largest C-H distances; the source switches at 0)")
    for r in rows:
        lo, hi = r["band_A"]
        print(f"     {lo:.2f}-{hi:.2f} Å  n = {r['n']:4d}  RMSE {r['rmse_meV']:7.1f} meV  "
              f"share of squared error {r['mse_share']:.2f}", flush=True)
    return rows
