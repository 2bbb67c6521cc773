"""Benchmark of the invariants engine against MSA-2.0 and Singular reference figures.

Prints three tables: PIP generation time, fundamental-invariant generation time,
and evaluation cost per geometry (batched Numba kernel; single calls from Python
reported separately).  Reference figures (2-core machine of this class) are
from the project's issue: MSA-2.0 (generation, gfortran -O2 evaluation) and
Singular finvar.lib (FIs).  Ratio = pesfit / reference (< 1 is faster).

    python benchmarks/bench_invariants.py [--quick]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from invariants import PermutationGroup, fundamental_basis, pip_basis
from invariants.molien import cumulative, molien_series

PIP_CASES = [  # formula, degree, MSA seconds (None: MSA did not finish in 20 min), expected size
    ("A4B", 7, 51.0, 1101), ("A4B2", 5, 9.8, 609), ("A5B", 5, 12.2, 299), ("A3B2", 6, 3.5, None),
    ("A4B", 8, None, 2327), ("A4B2", 6, None, 1810), ("A5B", 6, None, 849),
]
FI_CASES = [  # formula, degree, Singular wall seconds, expected total
    ("A3B2", 6, 0.30, 26), ("A4B", 5, 0.48, 31), ("A4BC", 6, 5.6, 81), ("A4B2", 7, 634.0, 122),
    ("A5B", 9, None, 217),
]
EVAL_CASES = [  # formula, degree, MSA energy us, MSA energy+reverse gradient us
    ("A4B", 6, 0.95, 2.26), ("A4B", 7, 1.92, 4.41), ("A4B2", 5, 2.04, 5.75), ("A5B", 5, 3.09, 8.29),
]


def _row(cols, widths):
    return "  ".join(str(c).rjust(w) for c, w in zip(cols, widths))


def bench_pip(cases):
    w = (6, 6, 8, 10, 10, 8)
    print("PIP generation (orbits + evaluation program)")
    print(_row(["group", "degree", "n_basis", "pesfit s", "MSA s", "ratio"], w))
    for formula, degree, msa, expected in cases:
        g = PermutationGroup.from_formula(formula)
        t0 = time.perf_counter()
        b = pip_basis(g, degree)
        t = time.perf_counter() - t0
        assert b.n_basis == cumulative(molien_series(g, degree))[-1]
        if expected:
            assert b.n_basis == expected
        ratio = f"{t / msa:.4f}" if msa else "-"
        print(_row([formula, degree, b.n_basis, f"{t:.3f}", msa if msa else ">1200", ratio], w))


def bench_fi(cases):
    w = (6, 6, 26, 6, 10, 10, 8)
    print("\nFundamental invariants (exact, GF(p) with two primes)")
    print(_row(["group", "degree", "per degree", "total", "pesfit s", "Singular s", "ratio"], w))
    for formula, degree, ref, expected in cases:
        g = PermutationGroup.from_formula(formula)
        t0 = time.perf_counter()
        b = fundamental_basis(g, degree)
        t = time.perf_counter() - t0
        per = b.per_degree[1:]
        while per and per[-1] == 0:
            per.pop()
        assert b.n_basis == expected, (formula, b.n_basis)
        ratio = f"{t / ref:.4f}" if ref else "-"
        print(_row([formula, degree, ",".join(map(str, per)), b.n_basis, f"{t:.2f}",
                    ref if ref else ">1200 (d6)", ratio], w))


def bench_eval(cases, n=100_000):
    w = (6, 6, 8, 8, 10, 8, 12, 8, 12, 12)
    print(f"\nEvaluation per geometry, batch of {n} (CPU time, one thread); MSA-2.0 gfortran -O2")
    print(_row(["group", "degree", "n_basis", "ops", "E us", "MSA E", "E ratio", "E+G us", "MSA E+G",
                "E+G ratio"], w))
    single = []
    for formula, degree, msa_e, msa_eg in cases:
        g = PermutationGroup.from_formula(formula)
        b = pip_basis(g, degree)
        X = np.random.default_rng(0).uniform(0.05, 0.95, size=(n, g.n_variables))
        c = np.random.default_rng(1).normal(size=b.n_basis)
        b.pullback(X[:10], c)
        b.pullback(X[:10], c, gradient=False)
        t0 = time.process_time()
        b.pullback(X, c, gradient=False)
        te = (time.process_time() - t0) / n * 1e6
        t0 = time.process_time()
        b.pullback(X, c)
        tg = (time.process_time() - t0) / n * 1e6
        print(_row([formula, degree, b.n_basis, b.program.n_operations, f"{te:.2f}", msa_e, f"{te / msa_e:.2f}",
                    f"{tg:.2f}", msa_eg, f"{tg / msa_eg:.2f}"], w))
        x1 = X[:1]
        reps = 2000
        t0 = time.perf_counter()
        for _ in range(reps):
            b.pullback(x1, c)
        single.append((formula, degree, (time.perf_counter() - t0) / reps * 1e6))
    print("\nSingle-structure calls from Python (energy + gradient, includes call overhead)")
    for formula, degree, t in single:
        print(f"  {formula} d{degree}: {t:.1f} us per call")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="skip the largest cases")
    args = ap.parse_args()
    pip_cases = PIP_CASES if not args.quick else PIP_CASES[:4]
    fi_cases = FI_CASES if not args.quick else FI_CASES[:3]
    bench_pip(pip_cases)
    bench_fi(fi_cases)
    bench_eval(EVAL_CASES, n=20_000 if args.quick else 100_000)


if __name__ == "__main__":
    main()
