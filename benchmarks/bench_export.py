"""Compile time and speed of the exported (table-driven) C and Fortran potentials.

For the A4B degree-6 and A4B2 degree-5 PIP bases with random weights, this
script prints, per language, the compile time of the generated source with
``-O2`` and the CPU time per geometry of the batch entry points (energy;
energy + gradient) over random geometries, compiled with ``-O2 -march=native``,
next to the MSA-2.0 reference figures (generated straight-line Fortran)::

    python benchmarks/bench_export.py [--n 100000] [--repeat 3]

MSA-2.0 reference: A4B d6 0.95 us (energy), 2.26 us (energy+gradient);
A4B2 d5 2.04 us, 5.75 us; compile time of MSA's A4B2 d5 Fortran: 87 s.
The MSA figures were measured on another machine, so the ratios are indicative.
C is compiled with ``-std=c99`` as in the exported Makefile (no FMA contraction,
so it matches the Python kernels bit for bit); gfortran contracts multiply-adds
into FMAs under ``-march=native``, which moves the last bits ("rel dev").
"""
from __future__ import annotations

import argparse
import ctypes
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from invariants import DistanceTransform, PermutationGroup, codegen, pip_basis
from invariants.evaluate import cartesian_pullback

BOHR = 0.529177210903
HARTREE = 27.211386245988
#: (energy us, energy+gradient us, compile s) of MSA-2.0's generated Fortran
MSA = {("A4B", 6): (0.95, 2.26, None), ("A4B2", 5): (2.04, 5.75, 87.0)}
SYSTEMS = [("A4B", 6), ("A4B2", 5)]


def _compile(lang, src: Path, lib: Path, flags) -> float:
    exe = {"c": "gcc", "fortran": "gfortran"}[lang]
    if shutil.which(exe) is None:
        raise RuntimeError(f"{exe} not found on PATH (apt-get install -y {exe})")
    cmd = [exe, *flags, "-fPIC", "-shared", "-o", str(lib), str(src)] + (["-lm"] if lang == "c" else [])
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=src.parent, capture_output=True, text=True)  # .mod files land there
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return elapsed


def _time_batch(dll, xyz, gradient: bool, repeat: int) -> float:
    """Best CPU time per geometry [us] of one batch call over all geometries."""
    n = len(xyz)
    e = np.empty(n)
    g = np.empty_like(xyz)
    st = np.empty(n, dtype=np.intc)
    vp = ctypes.c_void_p
    best = np.inf
    for _ in range(repeat):
        t0 = time.process_time()
        if gradient:
            dll.pes_energy_gradient_batch(ctypes.c_int(n), vp(xyz.ctypes.data), vp(e.ctypes.data),
                                          vp(g.ctypes.data), vp(st.ctypes.data))
        else:
            dll.pes_energy_batch(ctypes.c_int(n), vp(xyz.ctypes.data), vp(e.ctypes.data), vp(st.ctypes.data))
        best = min(best, time.process_time() - t0)
    return best / n * 1e6


def run(n: int = 100_000, repeat: int = 3, workdir: Path | None = None) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="pesfit_bench_") as tmp:
        work = Path(workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        for formula, degree in SYSTEMS:
            basis = pip_basis(PermutationGroup.from_formula(formula), degree)
            rng = np.random.default_rng(0)
            w = rng.normal(size=basis.n_basis)
            tr = DistanceTransform("morse", 1.5)
            n_atoms = basis.group.n_atoms
            xyz = np.ascontiguousarray(rng.uniform(0.0, 3.0, size=(n, n_atoms, 3)) / BOHR)
            kw = dict(prefix="pes", length_scale=BOHR, energy_scale=1.0 / HARTREE)
            c_text, h_text = codegen.c_source(basis.program, tr, w, **kw)
            sources = {"c": ("pes.c", c_text), "fortran": ("pes.f90", codegen.fortran_source(basis.program, tr, w,
                                                                                           **kw))}
            tag = f"{formula}_d{degree}"
            for lang, (name, text) in sources.items():
                d = work / f"{tag}_{lang}"
                d.mkdir(exist_ok=True)
                (d / name).write_text(text)
                if lang == "c":
                    (d / "pes.h").write_text(h_text)
                std = ["-std=c99"] if lang == "c" else []  # as the exported Makefile (no FMA contraction in C)
                t_compile = _compile(lang, d / name, d / "libpes_O2.so", ["-O2", *std])
                _compile(lang, d / name, d / "libpes.so", ["-O2", "-march=native", *std])
                dll = ctypes.CDLL(str(d / "libpes.so"))
                t_e = _time_batch(dll, xyz, False, repeat)
                t_eg = _time_batch(dll, xyz, True, repeat)
                # sanity: the timed library agrees with the Python kernels
                m = min(n, 200)
                E, _ = cartesian_pullback(basis.program, tr, xyz[:m] * BOHR, w)
                e = np.empty(m)
                g = np.empty((m, n_atoms, 3))
                st = np.empty(m, dtype=np.intc)
                vp = ctypes.c_void_p
                dll.pes_energy_gradient_batch(ctypes.c_int(m), vp(xyz.ctypes.data), vp(e.ctypes.data),
                                              vp(g.ctypes.data), vp(st.ctypes.data))
                dev = float(np.max(np.abs(e * HARTREE - E)) / np.max(np.abs(E)))
                rows.append({"system": f"{formula} d{degree}", "lang": lang, "n_basis": basis.n_basis,
                             "n_nodes": basis.program.n_nodes, "compile_s": t_compile, "energy_us": t_e,
                             "energy_grad_us": t_eg, "max_rel_dev": dev, "msa": MSA[(formula, degree)]})
            # the Numba kernels, for context
            m = min(n, 20_000)
            cartesian_pullback(basis.program, tr, xyz[:10] * BOHR, w)
            R = xyz[:m] * BOHR
            t0 = time.process_time()
            cartesian_pullback(basis.program, tr, R, w, gradient=False)
            t_e = (time.process_time() - t0) / m * 1e6
            t0 = time.process_time()
            cartesian_pullback(basis.program, tr, R, w)
            t_eg = (time.process_time() - t0) / m * 1e6
            rows.append({"system": f"{formula} d{degree}", "lang": "numba", "n_basis": basis.n_basis,
                         "n_nodes": basis.program.n_nodes, "compile_s": None, "energy_us": t_e,
                         "energy_grad_us": t_eg, "max_rel_dev": None, "msa": MSA[(formula, degree)]})
    return rows


def format_table(rows: list[dict]) -> str:
    head = (f"{'system':<9} {'lang':<8} {'basis':>5} {'nodes':>5} {'compile -O2':>11} {'x MSA':>7} "
            f"{'energy us':>9} {'x MSA':>6} {'E+grad us':>9} {'x MSA':>6} {'rel dev':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        me, meg, mc = r["msa"]
        comp = "-" if r["compile_s"] is None else f"{r['compile_s']:.2f} s"
        comp_ratio = "-" if (r["compile_s"] is None or mc is None) else f"{r['compile_s'] / mc:.4f}"
        lines.append(f"{r['system']:<9} {r['lang']:<8} {r['n_basis']:>5} {r['n_nodes']:>5} {comp:>11} "
                     f"{comp_ratio:>7} {r['energy_us']:>9.2f} {r['energy_us'] / me:>6.2f} "
                     f"{r['energy_grad_us']:>9.2f} {r['energy_grad_us'] / meg:>6.2f} "
                     + (f"{'-':>8}" if r["max_rel_dev"] is None else f"{r['max_rel_dev']:>8.1e}"))
    lines.append("MSA-2.0 reference: A4B d6 0.95 / 2.26 us, A4B2 d5 2.04 / 5.75 us, A4B2 d5 compile 87 s "
                 "(x MSA = ours / MSA; < 1 is faster).")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="geometries per timing (default 100000)")
    parser.add_argument("--repeat", type=int, default=3, help="timings per entry point; the best is kept")
    parser.add_argument("--workdir", type=Path, default=None, help="keep sources and libraries here")
    args = parser.parse_args(argv)
    rows = run(args.n, args.repeat, args.workdir)
    sys.stdout.write(format_table(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
