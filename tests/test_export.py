"""export_model: files, build, ctypes loader, adapters, drivers, checks.

A test double stands in for a fitted model: its ``export_spec()`` has every
documented field and predicts with :func:`invariants.evaluate.cartesian_pullback`.
Tests skip only when the compiler is missing (CI installs gfortran via apt).
"""
from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from invariants import DistanceTransform, PermutationGroup, pip_basis
from invariants.evaluate import cartesian_pullback
from pesfit.export import export_model

BOHR = 0.529177210903  # Å
HARTREE = 27.211386245988  # eV
COMPILERS = {"c": "gcc", "fortran": "gfortran"}
_BASES: dict = {}


def need(compiler):
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} is not installed (apt-get install -y {compiler})")


def random_structures(n_atoms, n, seed=0, r_lo=0.8, r_hi=3.0):
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


class FakeModel:
    """Test double: a linear PIP model with random weights (eV, Å)."""

    def __init__(self, formula="A2B", degree=4, symbols=("H", "H", "O"), seed=0, kind="linear_pip", **extra):
        key = (formula, degree)
        if key not in _BASES:
            _BASES[key] = pip_basis(PermutationGroup.from_formula(formula), degree)
        self.basis = _BASES[key]
        self.weights = np.random.default_rng(seed).normal(size=self.basis.n_basis) * 0.5
        self.transform = DistanceTransform("morse", 1.3)
        self.symbols = list(symbols)
        self.kind = kind
        self.extra = extra

    def predict(self, R):
        return cartesian_pullback(self.basis.program, self.transform, R, self.weights)

    def export_spec(self):
        spec = {
            "program": self.basis.program, "transform": self.transform, "weights": self.weights.copy(),
            "symbols": self.symbols, "length_unit": "angstrom", "energy_unit": "eV", "energy_zero_eV": -2077.25,
            "checksum": "0123abcd" * 8, "training_rmse_meV": 4.2, "r_min": np.full(self.basis.n_variables, 0.7),
            "kind": self.kind, "predict": self.predict,
        }
        spec.update(self.extra)
        return spec


def load_loader(out_dir, name):
    spec = importlib.util.spec_from_file_location(name, out_dir / "pes_ctypes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module", params=["c", "fortran"])
def exported(request, tmp_path_factory):
    """One checked export per language (A3B degree 4, ammonia-like NH3 order H H H N)."""
    lang = request.param
    need(COMPILERS[lang])
    out = tmp_path_factory.mktemp(f"export_{lang}")
    model = FakeModel("A3B", 4, ("H", "H", "H", "N"), seed=3)
    R = random_structures(4, 300, seed=11)
    res = export_model(model, lang, out, check=True, check_structures=R)
    return lang, out, model, res


# ------------------------------------------------------------------ export
def test_files_and_check(exported):
    lang, out, model, res = exported
    ext = "c" if lang == "c" else "f90"
    for role, name in [("source", f"pes.{ext}"), ("makefile", "Makefile"), ("driver", f"example_driver.{ext}"),
                       ("getpot", f"getpot.{ext}"), ("rpmd_adapter", f"rpmd_adapter.{ext}"),
                       ("ctypes_loader", "pes_ctypes.py")]:
        assert res[role] == out / name and res[role].is_file()
    assert ("header" in res) == (lang == "c")
    assert res["library"].is_file()
    assert res["build_log"] == ""  # -Wall (and -Wextra for C): not one warning
    chk = res["check"]
    assert chk["n_structures"] == 300
    assert chk["max_energy_rel"] <= 1e-12 and chk["max_gradient_rel"] <= 1e-10
    head = res["source"].read_text()[:3000]
    for text in ("0:H, 1:H, 2:H, 3:N", "bohr", "hartree", "-2077.25", "0123abcd" * 8, "4.2 meV"):
        assert text in head
    mk = res["makefile"].read_text()
    assert "libpes.so" in mk and "-O2" in mk and "-fPIC -shared" in mk


def test_example_driver(exported):
    lang, out, model, res = exported
    text = res["driver_output"]
    energy = float(re.search(r"energy:\s+(\S+) hartree", text).group(1))
    ref = float(re.search(r"reference energy \(pesfit, Python\): (\S+) hartree", text).group(1))
    assert abs(energy - ref) <= 1e-12 * abs(ref)
    assert "status: 0" in text and len(re.findall(r"^\s*[HN]\s", text, re.M)) == 4


def test_ctypes_loader(exported):
    lang, out, model, res = exported
    mod = load_loader(out, f"pes_ctypes_{lang}")
    pes = mod.CompiledPES(res["library"])
    assert pes.natoms == 4 and pes.symbols == ("H", "H", "H", "N") and "checksum=" + "0123abcd" * 8 in pes.info
    R = random_structures(4, 200, seed=12)
    xyz = R / BOHR
    E, G = model.predict(xyz * BOHR)
    e = pes.energy(xyz)
    e2, g = pes.energy_gradient(xyz)
    np.testing.assert_allclose(e, e2, rtol=1e-14, atol=0)
    assert np.max(np.abs(e * HARTREE - E)) <= 1e-12 * np.max(np.abs(E))
    assert np.max(np.abs(g * HARTREE / BOHR - G)) <= 1e-10 * np.max(np.abs(G))
    e0, g0, st = pes.energy_gradient(xyz[0], return_status=True)
    assert isinstance(e0, float) and g0.shape == (4, 3) and st == 0 and abs(e0 - e[0]) <= 1e-14 * abs(e[0])
    bad = xyz[0].copy()
    bad[0, 0] = np.nan
    assert pes.energy(bad, return_status=True) == (0.0, 2)
    # pyvibdmc: walkers x atoms x 3 [bohr] -> hartree array
    v = pes.pyvibdmc(xyz[:50])
    assert v.shape == (50,)
    np.testing.assert_allclose(v, e[:50], rtol=1e-14, atol=0)
    with pytest.raises(ValueError, match="shape"):
        pes.energy(np.zeros((3, 3)))
    assert pes.nstates is None  # diabatic() and adiabatic() are for diabatic libraries only
    with pytest.raises(RuntimeError, match="single-state potential: it has no pes_adiabatic"):
        pes.adiabatic(xyz[0])


def test_ase_calculator(exported):
    ase = pytest.importorskip("ase")
    lang, out, model, res = exported
    pes = load_loader(out, f"pes_ctypes_ase_{lang}").CompiledPES(res["library"])
    R = random_structures(4, 3, seed=13)
    E, G = model.predict(R)
    calc = pes.ase_calculator()
    for s in range(3):
        atoms = ase.Atoms("H3N", positions=R[s])
        atoms.calc = calc
        assert abs(atoms.get_potential_energy() - E[s]) <= 1e-11 * max(1.0, abs(E[s]))
        np.testing.assert_allclose(atoms.get_forces(), -G[s], rtol=0, atol=1e-10 * np.max(np.abs(G[s])))
    wrong = ase.Atoms("NH3", positions=R[0])
    wrong.calc = calc
    with pytest.raises(ValueError, match="atom order"):
        wrong.get_potential_energy()


_FORTRAN_DRIVER = """program user_driver
  use, intrinsic :: iso_c_binding, only: c_double, c_int
  implicit none
  interface
    subroutine pes_energy(xyz, energy, status) bind(C, name="pes_energy")
      import :: c_double, c_int
      real(c_double), intent(in) :: xyz(*)
      real(c_double), intent(out) :: energy
      integer(c_int), intent(out) :: status
    end subroutine pes_energy
  end interface
  real(c_double) :: xyz(3, 4), e
  integer(c_int) :: status
  xyz = reshape([ &
    {xyz}], [3, 4])
  call pes_energy(xyz, e, status)
  print "(i0, 1x, es25.17e3)", status, e
end program user_driver
"""

_FORTRAN_ADAPTERS = """program use_adapters
  implicit none
  double precision :: xx(4, 3), rr(4, 4), v, q(3, 4, 2), vb(2), dvdq(3, 4, 2)
  integer :: info
  xx = transpose(reshape([ &
    {xyz}], [3, 4]))
  call getpot(v, 4, xx, rr)
  print "(es25.17e3, 1x, es25.17e3)", v, rr(1, 4)
  q(:, :, 1) = transpose(xx)
  q(:, :, 2) = transpose(xx)
  call get_potential(q, 4, 2, vb, dvdq, info)
  print "(i0, 3(1x, es25.17e3))", info, vb(2), dvdq(1, 1, 2), dvdq(3, 4, 1)
end program use_adapters
"""


def _fortran_literal(xyz):
    return ", &\n    ".join(f"{float(v):.17e}".replace("e", "d") for v in np.asarray(xyz).ravel())


def _run_fortran(out, name, source, objects=()):
    need("gfortran")
    (out / f"{name}.f90").write_text(source)
    build = subprocess.run(["gfortran", "-O2", "-Wall", "-Werror", "-o", name, f"{name}.f90", *objects, "-L.",
                            "-lpes", "-Wl,-rpath," + str(out)], cwd=out, capture_output=True, text=True)
    assert build.returncode == 0 and build.stderr == "", build.stderr
    run = subprocess.run([str(out / name)], cwd=out, capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


def test_fortran_user_driver_links(exported):
    """A 20-line Fortran program written against the documented bind(C) names links either library."""
    lang, out, model, res = exported
    xyz = random_structures(4, 1, seed=14)[0] / BOHR
    status, e = _run_fortran(out, "user_driver", _FORTRAN_DRIVER.format(xyz=_fortran_literal(xyz)))
    E, _ = model.predict((xyz * BOHR)[None])
    assert status == "0"
    assert abs(float(e) * HARTREE - E[0]) <= 1e-12 * abs(E[0])


def test_multimode_and_rpmd_adapters(exported):
    lang, out, model, res = exported
    xyz = random_structures(4, 1, seed=15)[0] / BOHR
    lines = _run_fortran(out, "use_adapters", _FORTRAN_ADAPTERS.format(xyz=_fortran_literal(xyz)),
                         objects=("getpot.o", "rpmd_adapter.o"))
    v, r14, info, vb, g112, g341 = lines
    E, G = model.predict((xyz * BOHR)[None])
    assert abs(float(v) * HARTREE - E[0]) <= 1e-12 * abs(E[0])
    assert abs(float(r14) - np.linalg.norm(xyz[0] - xyz[3])) <= 1e-14 * float(r14)
    assert info == "0" and abs(float(vb) - float(v)) <= 1e-14 * abs(float(v))
    scale = HARTREE / BOHR
    assert abs(float(g112) * scale - G[0, 0, 0]) <= 1e-10 * np.max(np.abs(G))
    assert abs(float(g341) * scale - G[0, 3, 2]) <= 1e-10 * np.max(np.abs(G))


def test_makefile_builds(exported):
    lang, out, model, res = exported
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    proc = subprocess.run(["make", "-B", "all"], cwd=out, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr.lower()
    assert (out / "example_driver").is_file() and (out / "getpot.o").is_file()


# ------------------------------------------------------------------ errors
def test_bigger_basis_and_subsampling(tmp_path):
    """A4B2 degree 5 (609 functions) exports, and at most 1000 check structures are used."""
    need("gcc")
    model = FakeModel("A4B2", 5, ("H", "H", "H", "H", "C", "O"), seed=5)
    R = random_structures(6, 1200, seed=16)
    res = export_model(model, "c", tmp_path, prefix="ch3oh", check=True, check_structures=R)
    assert res["check"]["n_structures"] == 1000
    assert res["check"]["max_energy_rel"] <= 1e-12 and res["check"]["max_gradient_rel"] <= 1e-10
    assert (tmp_path / "libch3oh.so").is_file() and (tmp_path / "ch3oh.h").is_file()


def test_check_detects_mismatch(tmp_path):
    need("gcc")
    model = FakeModel()
    wrong = model.predict
    model.predict = lambda R: (wrong(R)[0] * (1 + 1e-6), wrong(R)[1])
    with pytest.raises(RuntimeError, match="disagree"):
        export_model(model, "c", tmp_path, check=True)


def test_missing_compiler_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(RuntimeError, match=r"gfortran.*apt-get install -y gfortran"):
        export_model(FakeModel(), "fortran", tmp_path / "out", check=True)
    with pytest.raises(RuntimeError, match="'gcc'"):
        export_model(FakeModel(), "c", tmp_path / "out", check=True)
    assert not (tmp_path / "out").exists()  # nothing written before the failure
    res = export_model(FakeModel(), "c", tmp_path / "out")  # without check, no compiler needed
    assert res["source"].is_file() and "check" not in res


def test_unknown_kind_version_lang(tmp_path):
    with pytest.raises(ValueError, match="kind 'gp_soap' cannot be exported"):
        export_model(FakeModel(kind="gp_soap"), "c", tmp_path)
    with pytest.raises(ValueError, match="format_version 99"):
        export_model(FakeModel(format_version=99), "c", tmp_path)
    with pytest.raises(ValueError, match="lang"):
        export_model(FakeModel(), "julia", tmp_path)
    with pytest.raises(ValueError, match="distances"):
        export_model(FakeModel(symbols=("H", "H")), "c", tmp_path)
    with pytest.raises(TypeError, match="export_spec"):
        export_model(object(), "c", tmp_path)


def test_loader_is_plain_python(exported):
    """pes_ctypes.py imports only the standard library, numpy and (lazily) ase."""
    lang, out, model, res = exported
    text = res["ctypes_loader"].read_text()
    imports = set(re.findall(r"^\s*(?:import|from) (\w+)", text, re.M))
    assert imports <= {"ctypes", "os", "numpy", "ase"}, imports
    compile(text, "pes_ctypes.py", "exec")
    assert sys.modules.get("pes_ctypes") is None


def test_impossible_random_structures_fail_fast_and_example_uses_the_reference():
    from pesfit.export import _example_geometry, _random_structures

    with pytest.raises(RuntimeError, match="could not place 8 atoms"):
        _random_structures(8, 1, np.random.default_rng(0), 3.2, 3.3)   # no 8 points are all 3.2-3.3 Å apart
    ref = np.arange(12.0).reshape(4, 3)
    spec = {"symbols": ["C", "O", "H", "H"], "r_min": np.full(6, 2.9), "reference_geometry": ref}
    assert np.array_equal(_example_geometry(spec), ref)
    spec["reference_geometry"] = None                                  # r_min too large for a compact structure
    assert _example_geometry(spec).shape == (4, 3)
