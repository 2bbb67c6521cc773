"""Generated C and Fortran against the Numba kernels they print.

Every library is compiled with warnings as errors (``gcc -O2 -Wall -Wextra
-std=c99 -Werror``, ``gfortran -O2 -Wall -Werror``) and called through ctypes.
Tests skip only when the compiler is missing (CI installs gfortran via apt).
"""
from __future__ import annotations

import ctypes
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from invariants import DistanceTransform, PermutationGroup, codegen, pip_basis
from invariants.evaluate import cartesian_pullback

BOHR = 0.529177210903  # Å
HARTREE = 27.211386245988  # eV
LS, ES = BOHR, 1.0 / HARTREE  # caller bohr/hartree, model Å/eV
COMPILERS = {"c": "gcc", "fortran": "gfortran"}
CFLAGS = ["-O2", "-Wall", "-Wextra", "-std=c99", "-Werror"]
FFLAGS = ["-O2", "-Wall", "-Werror"]


def _compiler(lang):
    exe = shutil.which(COMPILERS[lang])
    if exe is None:
        pytest.skip(f"{COMPILERS[lang]} is not installed (apt-get install -y {COMPILERS[lang]})")
    return exe


def random_structures(n_atoms, n, seed=0, r_lo=0.8, r_hi=3.0):
    """Structures [Å] whose distances all lie in [r_lo, r_hi]."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        R = np.zeros((n_atoms, 3))
        for i in range(1, n_atoms):
            for _ in range(1000):
                d = rng.normal(size=3)
                c = R[rng.integers(i)] + d / np.linalg.norm(d) * rng.uniform(r_lo, r_hi)
                r = np.linalg.norm(R[:i] - c, axis=1)
                if r.min() >= r_lo and r.max() <= r_hi:
                    R[i] = c
                    break
            else:
                break
        else:
            out.append(R)
    return np.array(out)


def build(tmp_path, lang, program, transform, weights, prefix="pes", **kw):
    """Generate, compile (warnings are errors) and load one library."""
    exe = _compiler(lang)
    lib = tmp_path / f"lib{prefix}.so"
    if lang == "c":
        c_text, h_text = codegen.c_source(program, transform, weights, prefix=prefix, header_comment="test",
                                          length_scale=LS, energy_scale=ES, **kw)
        (tmp_path / f"{prefix}.c").write_text(c_text)
        (tmp_path / f"{prefix}.h").write_text(h_text)
        cmd = [exe, *CFLAGS, "-fPIC", "-shared", "-o", str(lib), f"{prefix}.c", "-lm"]
    else:
        (tmp_path / f"{prefix}.f90").write_text(codegen.fortran_source(
            program, transform, weights, prefix=prefix, header_comment="test", length_scale=LS, energy_scale=ES,
            **kw))
        cmd = [exe, *FFLAGS, "-fPIC", "-shared", "-o", str(lib), f"{prefix}.f90"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    return Lib(ctypes.CDLL(str(lib)), prefix)


class Lib:
    """Minimal ctypes binding of the documented entry points."""

    def __init__(self, dll, prefix):
        self.dll, self.p = dll, prefix
        self.natoms = getattr(dll, f"{prefix}_natoms")()

    def _fn(self, name):
        return getattr(self.dll, f"{self.p}_{name}")

    def batch(self, xyz, gradient=True):
        xyz = np.ascontiguousarray(xyz, dtype=np.float64)
        n = len(xyz)
        e, g, st = np.zeros(n), np.full(xyz.shape, np.nan), np.full(n, -1, dtype=np.intc)
        ptr = ctypes.c_void_p
        if gradient:
            self._fn("energy_gradient_batch")(ctypes.c_int(n), ptr(xyz.ctypes.data), ptr(e.ctypes.data),
                                              ptr(g.ctypes.data), ptr(st.ctypes.data))
            return e, g, st
        self._fn("energy_batch")(ctypes.c_int(n), ptr(xyz.ctypes.data), ptr(e.ctypes.data), ptr(st.ctypes.data))
        return e, st

    def single(self, xyz, gradient=True):
        xyz = np.ascontiguousarray(xyz, dtype=np.float64)
        e, st = ctypes.c_double(np.nan), ctypes.c_int(-1)
        if gradient:
            g = np.full(xyz.shape, np.nan)
            self._fn("energy_gradient")(ctypes.c_void_p(xyz.ctypes.data), ctypes.byref(e),
                                        ctypes.c_void_p(g.ctypes.data), ctypes.byref(st))
            return e.value, g, st.value
        self._fn("energy")(ctypes.c_void_p(xyz.ctypes.data), ctypes.byref(e), ctypes.byref(st))
        return e.value, st.value

    def info(self, size=4096):
        buf = ctypes.create_string_buffer(size)
        n = self._fn("info")(buf, ctypes.c_int(size))
        return n, buf.value.decode()


BASES: dict = {}


def basis(formula, degree):
    key = (formula, degree)
    if BASES.get(key) is None:
        BASES[key] = pip_basis(PermutationGroup.from_formula(formula), degree)
    return BASES[key]


def weights_for(b, seed=1):
    return np.random.default_rng(seed).normal(size=b.n_basis)


def compare(lib, program, transform, w, R):
    """Compiled (bohr/hartree) against Numba (Å/eV) on exactly the same coordinates."""
    xyz = R / LS
    R_used = xyz * LS
    E, G = cartesian_pullback(program, transform, R_used, w)
    e, g, st = lib.batch(xyz)
    assert np.all(st == 0)
    rel_e = np.max(np.abs(e / ES - E)) / np.max(np.abs(E))
    rel_g = np.max(np.abs(g / (ES * LS) - G)) / np.max(np.abs(G))
    assert rel_e <= 1e-12, rel_e
    assert rel_g <= 1e-10, rel_g
    e2, st2 = lib.batch(xyz, gradient=False)
    np.testing.assert_allclose(e2, e, rtol=1e-14, atol=0)
    np.testing.assert_array_equal(st2, st)
    return e, g


# ------------------------------------------------------------------ values
@pytest.mark.parametrize("lang", ["c", "fortran"])
@pytest.mark.parametrize("formula,degree", [("A2B", 4), ("A3B", 4), ("A4B2", 5)])
def test_matches_numba(tmp_path, lang, formula, degree):
    b = basis(formula, degree)
    tr = DistanceTransform("morse", 1.4)
    w = weights_for(b)
    t0 = time.perf_counter()
    lib = build(tmp_path, lang, b.program, tr, w)
    assert time.perf_counter() - t0 < 10.0  # table-driven: compile time does not explode
    assert lib.natoms == b.group.n_atoms
    R = random_structures(b.group.n_atoms, 205, seed=degree)  # 25 blocks of 8 and a tail of 5
    e, g = compare(lib, b.program, tr, w, R)
    # single-geometry entry points (scalar kernel) agree with the batch (8-lane) ones
    for s in (0, 7, 203):
        es, gs, st = lib.single(R[s] / LS)
        assert st == 0 and abs(es - e[s]) <= 1e-14 * abs(e[s])
        np.testing.assert_allclose(gs, g[s], rtol=0, atol=1e-14 * np.max(np.abs(g[s])))
        e1, st1 = lib.single(R[s] / LS, gradient=False)
        assert st1 == 0 and e1 == es


@pytest.mark.parametrize("lang", ["c", "fortran"])
def test_large_table_compiles_fast(tmp_path, lang):
    """A table of more than 6,000 nodes compiles in seconds (MSA's generated A4B2 d5 Fortran: 87 s)."""
    b = basis("A4B2", 6)
    assert b.program.n_nodes > 6000
    tr = DistanceTransform("morse", 1.4)
    w = weights_for(b)
    t0 = time.perf_counter()
    lib = build(tmp_path, lang, b.program, tr, w)
    assert time.perf_counter() - t0 < 10.0
    compare(lib, b.program, tr, w, random_structures(6, 20, seed=9))


@pytest.mark.parametrize("lang", ["c", "fortran"])
@pytest.mark.parametrize("kind", ["inverse", "reciprocal", "identity"])
def test_transforms(tmp_path, lang, kind):
    b = basis("A3B", 4)
    param = tuple(np.linspace(0.9, 1.4, b.n_variables)) if kind == "reciprocal" else 1.0
    tr = DistanceTransform(kind, param)
    w = weights_for(b, 2) * (0.01 if kind == "identity" else 1.0)
    lib = build(tmp_path, lang, b.program, tr, w)
    compare(lib, b.program, tr, w, random_structures(4, 200, seed=3))


@pytest.mark.parametrize("lang", ["c", "fortran"])
@pytest.mark.parametrize("formula", ["A3B", "A4B"])
def test_valence_transform(tmp_path, lang, formula):
    """Bond angles at the central atom (the last one here, so its pairs come after the angle pairs)."""
    b = basis(formula, 4)
    tr = DistanceTransform("valence", 1.3, b.group.n_atoms - 1)
    w = weights_for(b, 4)
    lib = build(tmp_path, lang, b.program, tr, w)
    e, g = compare(lib, b.program, tr, w, random_structures(b.group.n_atoms, 37, seed=5))
    es, gs, st = lib.single(random_structures(b.group.n_atoms, 37, seed=5)[3] / LS)
    assert st == 0 and abs(es - e[3]) <= 1e-14 * abs(e[3])


@pytest.mark.parametrize("lang", ["c", "fortran"])
def test_wide_index_packing(tmp_path, lang, monkeypatch):
    """Tables above 65535 nodes pack operand pairs in 64 bits; force that path on a small basis."""
    monkeypatch.setattr(codegen, "_PACK16_LIMIT", 0)
    b = basis("A3B", 4)
    tr = DistanceTransform("morse", 1.2)
    w = weights_for(b)
    text = codegen.c_source(b.program, tr, w)[0] if lang == "c" else codegen.fortran_source(b.program, tr, w)
    assert ("uint64_t" in text) if lang == "c" else ("c_int64_t" in text)
    lib = build(tmp_path, lang, b.program, tr, w)
    compare(lib, b.program, tr, w, random_structures(4, 50, seed=4))


# ---------------------------------------------------------------- statuses
@pytest.mark.parametrize("lang", ["c", "fortran"])
def test_status_codes(tmp_path, lang):
    b = basis("A3B", 4)
    tr = DistanceTransform("morse", 1.4)
    w = weights_for(b)
    r_min = np.full(b.n_variables, 0.9)
    lib = build(tmp_path, lang, b.program, tr, w, r_min=r_min)
    R = random_structures(4, 4, seed=5, r_lo=1.0)
    ok = R[0] / LS
    nan = ok.copy()
    nan[1, 2] = np.nan
    inf = ok.copy()
    inf[0, 0] = np.inf
    same = ok.copy()
    same[3] = same[1]
    short = R[1].copy()
    short[2] = short[0] + (short[2] - short[0]) / np.linalg.norm(short[2] - short[0]) * 0.85  # < r_min, > 0.8
    ok2, ok3 = R[2] / LS, R[3] / LS
    # a block of 8 (lane kernel) followed by a tail of 5 (scalar kernel)
    xyz = np.array([ok, nan, inf, same, short / LS, ok2, ok3, ok, nan, same, short / LS, ok2, inf])
    expect = [0, 2, 2, 3, 1, 0, 0, 0, 2, 3, 1, 0, 2]
    e, g, st = lib.batch(xyz)
    np.testing.assert_array_equal(st, expect)
    bad = np.array(expect) >= 2
    assert np.all(e[bad] == 0.0) and np.all(g[bad] == 0.0)  # no NaN propagated
    assert np.all(np.isfinite(e)) and np.all(np.isfinite(g))
    # out of range still returns the value; good lanes are unaffected by bad ones
    E, G = cartesian_pullback(b.program, tr, xyz[~bad] * LS, w)
    assert np.max(np.abs(e[~bad] / ES - E)) <= 1e-12 * np.max(np.abs(E))
    assert np.max(np.abs(g[~bad] / (ES * LS) - G)) <= 1e-10 * np.max(np.abs(G))
    e2, st2 = lib.batch(xyz, gradient=False)
    np.testing.assert_array_equal(st2, st)
    assert lib.single(nan)[2] == 2 and lib.single(same, gradient=False) == (0.0, 3)


@pytest.mark.parametrize("lang", ["c", "fortran"])
def test_energy_floor_and_info(tmp_path, lang):
    b = basis("A2B", 4)
    tr = DistanceTransform("morse", 1.4)
    w = weights_for(b)
    R = random_structures(3, 20, seed=6)
    E = cartesian_pullback(b.program, tr, (R / LS) * LS, w, gradient=False)
    floor = float(np.median(E))
    lib = build(tmp_path, lang, b.program, tr, w, e_floor=floor, info='symbols=H,H,O; note="quoted"')
    e, st = lib.batch(R / LS, gradient=False)
    np.testing.assert_array_equal(st, (E < floor).astype(int))
    n, text = lib.info()
    assert n == len(text) and "natoms=3" in text and 'note="quoted"' in text and "symbols=H,H,O" in text
    n_short, short = lib.info(size=11)
    assert n_short == n and short == text[:10]


# ------------------------------------------------------------ properties
def test_deterministic_and_table_driven():
    b = basis("A4B2", 5)
    tr = DistanceTransform("morse", 1.4)
    w = weights_for(b)
    c1, h1 = codegen.c_source(b.program, tr, w, prefix="ch5", header_comment="x")
    c2, h2 = codegen.c_source(b.program, tr, w, prefix="ch5", header_comment="x")
    f1 = codegen.fortran_source(b.program, tr, w, prefix="ch5", header_comment="x")
    assert (c1, h1) == (c2, h2) and f1 == codegen.fortran_source(b.program, tr, w, prefix="ch5", header_comment="x")
    # one generic loop: code size does not grow with the basis, only the tables do
    small = codegen.c_source(basis("A2B", 4).program, tr, weights_for(basis("A2B", 4)), prefix="ch5")[0]
    code_lines = lambda t: sum(1 for ln in t.splitlines() if ";" in ln and not ln.lstrip()[:1].isdigit()
                               and "UINT64_C" not in ln and not ln.lstrip().startswith(("-", "0.", "1.")))
    assert abs(code_lines(c1) - code_lines(small)) < 20
    assert "ch5_energy_gradient_batch" in h1 and "#define CH5_NATOMS 6" in h1


def test_input_validation():
    b = basis("A2B", 4)
    tr = DistanceTransform("morse", 1.4)
    w = weights_for(b)
    with pytest.raises(ValueError, match="prefix"):
        codegen.c_source(b.program, tr, w, prefix="1bad")
    with pytest.raises(ValueError, match="weights must have shape"):
        codegen.fortran_source(b.program, tr, w[:-1])
    with pytest.raises(ValueError, match="finite"):
        codegen.c_source(b.program, tr, np.full_like(w, np.nan))
    with pytest.raises(ValueError, match="length_scale"):
        codegen.c_source(b.program, tr, w, length_scale=-1.0)
    with pytest.raises(ValueError, match="r_min"):
        codegen.c_source(b.program, tr, w, r_min=np.ones(5))


@pytest.mark.parametrize("lang", ["c", "fortran"])
def test_thread_safe(tmp_path, lang):
    """No global state: concurrent calls (ctypes drops the GIL) give the serial results."""
    b = basis("A3B", 4)
    tr = DistanceTransform("morse", 1.4)
    w = weights_for(b)
    lib = build(tmp_path, lang, b.program, tr, w)
    xyz = random_structures(4, 64, seed=8) / LS
    e_ref, g_ref, _ = lib.batch(xyz)
    chunks = [slice(i, i + 9) for i in range(0, 55, 3)] * 4  # one block of 8 plus one scalar each

    def run(s):
        for _ in range(20):
            e, g, st = lib.batch(xyz[s])
        return s, e, g

    with ThreadPoolExecutor(4) as pool:
        for s, e, g in pool.map(run, chunks):
            np.testing.assert_allclose(e, e_ref[s], rtol=1e-14, atol=0)
            np.testing.assert_allclose(g, g_ref[s], rtol=0, atol=1e-14 * np.max(np.abs(g_ref)))
