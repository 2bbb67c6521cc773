"""Test error per region (compact / separated fragments, :mod:`pesfit.regions`) as one printed line.

Imported by the benchmark scripts (benchmarks/ is on ``sys.path`` when they run as scripts).
"""
from __future__ import annotations


def print_regions(name: str, report: dict) -> None:
    """One line: test energy RMSE [meV] per region of an :func:`pesfit.metrics.error_report`."""
    cells = ", ".join(f"{r['region']} {r['energy_rmse_meV']:.1f} (n = {r['n']})" for r in report.get("regions", []))
    print(f"   {name} test RMSE by region, meV: {cells}", flush=True)
