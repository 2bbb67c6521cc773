"""Export a fitted model as compilable C or Fortran with adapters for other codes.

:func:`export_model` reads only ``model.export_spec()`` (the basis program,
distance transform, weights, atom order, units and provenance) and writes,
into one directory:

* the potential, ``PREFIX.c`` + ``PREFIX.h`` or ``PREFIX.f90`` (printed by
  :mod:`invariants.codegen` from the program table), with a header comment
  giving the atom order, units (bohr, hartree), energy zero, checksum and
  training error.  A many-body model is exported for a fixed number of
  monomers (``n_monomers``): ``PREFIX.c|f90`` is then a cluster driver over
  one codegen unit per body order, ``PREFIX_b<n>.c|f90`` (see
  :mod:`pesfit.export_manybody`), with the same interface.  A diabatic
  model is a driver ``PREFIX.c|f90`` over one codegen unit per term of each
  matrix element, ``PREFIX_u<i><j>_t<t>.c|f90`` (see
  :mod:`pesfit.export_diabatic`), with ``PREFIX_diabatic`` and
  ``PREFIX_adiabatic`` besides the standard interface, which returns the
  lowest adiabatic state;
* a ``Makefile`` building ``libPREFIX.so`` (``-O2 -fPIC -shared``), the
  example driver and the adapters;
* ``example_driver.c|f90``: evaluates one built-in geometry and prints the
  energy, the gradient and the Python reference energy;
* ``getpot.c|f90``: MULTIMODE-style ``GETPOT(V, NATOM, XX, RR)``;
* ``rpmd_adapter.c|f90``: RPMDrate-style
  ``get_potential(q, natoms, nbeads, V, dVdq, info)``;
* ``pes_ctypes.py``: a pure-ctypes loader, ``CompiledPES(libpath)`` with
  ``energy``, ``energy_gradient``, ``pyvibdmc`` and ``ase_calculator``
  (and ``diabatic``, ``adiabatic`` for a library that has them).

The compiled code works in bohr and hartree: it multiplies coordinates by
``length_scale`` (bohr -> model length unit, 0.529177210903 Å) and energies
by ``energy_scale`` (model energy unit -> hartree, 1/27.211386245988 for eV),
so ``dE/dxyz [hartree/bohr] = energy_scale * length_scale * dE/dR [eV/Å]``.

With ``check=True`` the export is built with the compiler found on ``PATH``
(``gcc`` for C, ``gfortran`` for Fortran), loaded through ctypes and compared
with ``spec["predict"]``; a mismatch raises.
"""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from invariants import codegen
from invariants.program import Program
from invariants.transforms import DistanceTransform

from . import __version__
from .units import CODATA_VERSION, energy_factor, length_factor

__all__ = ["export_model", "build", "EXPORT_SPEC_VERSION", "LANGUAGES", "ENERGY_RTOL", "GRADIENT_RTOL"]

#: version of the ``export_spec()`` dictionary this module reads
EXPORT_SPEC_VERSION = 1
#: ``lang`` values and the compiler each needs
LANGUAGES = {"c": "gcc", "fortran": "gfortran"}
#: ``check=True`` tolerances: max |dE| / max |E| and max |dG| / max |G|
ENERGY_RTOL = 1e-10
GRADIENT_RTOL = 1e-8
#: at most this many structures are compared by ``check=True``
MAX_CHECK_STRUCTURES = 1000

_REQUIRED = ("program", "transform", "weights", "symbols", "length_unit", "energy_unit", "energy_zero_eV",
             "checksum", "training_rmse_meV", "r_min", "kind", "predict")
_INSTALL_HINT = {
    "gcc": "install it, e.g. `apt-get install -y gcc` (Debian/Ubuntu) or `conda install -c conda-forge c-compiler`",
    "gfortran": "install it, e.g. `apt-get install -y gfortran` (Debian/Ubuntu) or "
                "`conda install -c conda-forge gfortran`",
}
# flags of the exported Makefile (and of check=True)
_CFLAGS = "-O2 -Wall -Wextra -std=c99"
_FFLAGS = "-O2 -Wall"


# ------------------------------------------------------------------ spec
def _exportable(spec: dict) -> bool:
    """Models whose energy is ``weights . p`` of a basis program (``linear_*``) or ``head(p)``."""
    kind = spec.get("kind")
    linear = isinstance(kind, str) and (kind == "linear" or kind.startswith("linear_"))
    return linear or spec.get("head") is not None


def _check_version(spec: dict) -> None:
    version = spec.get("format_version", EXPORT_SPEC_VERSION)
    if version != EXPORT_SPEC_VERSION:
        raise ValueError(f"export spec format_version {version!r} is not supported (this pesfit exports "
                         f"version {EXPORT_SPEC_VERSION}); upgrade pesfit or re-save the model")


def _read_spec(model, n_monomers=None) -> dict:
    """The checked export spec; many-body models are cut into term units for ``n_monomers`` monomers."""
    if not hasattr(model, "export_spec"):
        raise TypeError(f"{type(model).__name__} has no export_spec(); export a fitted pesfit model")
    spec = model.export_spec()
    if not isinstance(spec, dict):
        raise TypeError("model.export_spec() must return a dict")
    if spec.get("terms") is not None:
        from .export_manybody import read_cluster_spec

        _check_version(spec)
        return read_cluster_spec(spec, n_monomers, _check_spec)
    if n_monomers is not None:
        raise ValueError(f"n_monomers is only for many-body models; model kind {spec.get('kind')!r} has a fixed "
                         "number of atoms")
    if spec.get("elements") is not None:
        from .export_diabatic import read_diabatic_spec

        _check_version(spec)
        return read_diabatic_spec(spec)
    return _check_spec(spec)


def _check_spec(spec: dict) -> dict:
    """Check the spec of a model with one basis program and add the unit scales."""
    _check_version(spec)
    if not _exportable(spec):
        raise ValueError(f"model kind {spec['kind']!r} cannot be exported: only models whose energy is linear "
                         "in a basis program (linear, fragmented), a compiled head of it (networks, kernels), a "
                         "many-body expansion of such terms (many-body, with n_monomers) or a diabatic matrix "
                         "whose elements are pseudoscalar monomials times such terms (diabatic) can be compiled")
    missing = [k for k in _REQUIRED if k not in spec]
    if missing:
        raise ValueError(f"model export spec lacks fields {missing}")
    if not isinstance(spec["program"], Program):
        raise TypeError("export spec 'program' must be an invariants Program")
    if not isinstance(spec["transform"], DistanceTransform):
        raise TypeError("export spec 'transform' must be an invariants DistanceTransform")
    symbols = [str(s) for s in spec["symbols"]]
    nv = spec["program"].n_variables
    if len(symbols) * (len(symbols) - 1) // 2 != nv:
        raise ValueError(f"{len(symbols)} atoms give {len(symbols) * (len(symbols) - 1) // 2} distances but the "
                         f"program has {nv} variables")
    if not all(re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", s) for s in symbols):
        raise ValueError(f"atom symbols must be letters/digits, got {symbols}")
    out = dict(spec)
    out["symbols"] = symbols
    out["head"] = spec.get("head")
    out["weights"] = None if out["head"] is not None else np.asarray(spec["weights"], dtype=np.float64)
    out["r_min"] = None if spec["r_min"] is None else np.asarray(spec["r_min"], dtype=np.float64)
    out["length_scale"] = length_factor("bohr", spec["length_unit"])
    out["energy_scale"] = energy_factor(spec["energy_unit"], "hartree")
    return out


def _fmt(x, spec="") -> str:
    return "not recorded" if x is None else format(float(x), spec)


def _model_lines(spec: dict, prefix: str) -> list[str]:
    if spec.get("cluster") is not None:
        from .export_manybody import cluster_lines

        return cluster_lines(spec, prefix)
    if spec.get("diabatic") is not None:
        from .export_diabatic import diabatic_lines

        return diabatic_lines(spec, prefix)
    return [f"basis: {spec['program'].n_outputs} functions, {spec['program'].n_nodes} program nodes, "
            f"distance transform {spec['transform'].kind}",
            *([f"energy: {spec['head'].description}"] if spec.get("head") is not None else [])]


def _header_comment(spec: dict, prefix: str) -> str:
    n = len(spec["symbols"])
    e0 = float(spec["energy_zero_eV"])
    e0_h = e0 * energy_factor("eV", "hartree")
    atoms = ", ".join(f"{i}:{s}" for i, s in enumerate(spec["symbols"]))
    rmse = spec["training_rmse_meV"]
    lines = [
        f"pesfit potential energy surface '{prefix}'",
        f"  exported by pesfit {__version__}; model kind {spec['kind']}",
        f"  model checksum (sha256): {spec['checksum']}",
        f"atoms ({n}; the order of xyz and grad): {atoms}",
        "units: coordinates in bohr, energy in hartree, gradient dE/dxyz in hartree/bohr",
        "  (forces = -gradient); the model works in "
        f"{spec['length_unit']} and {spec['energy_unit']}, converted with",
        f"  CODATA {CODATA_VERSION}: 1 bohr = 0.529177210903 angstrom, 1 hartree = 27.211386245988 eV",
        f"energy zero: the fit was made relative to E0 = {e0!r} eV",
        f"  = {e0_h!r} hartree; E0 is already added back, so energies are on",
        "  the scale of the training data (subtract E0 for relative energies)",
        f"training energy RMSE: {_fmt(rmse, '.4g')} meV",
        *_model_lines(spec, prefix),
        "status: 0 ok; 1 a distance below the shortest training distance of its pair (value",
        "  still returned); 2 non-finite input; 3 coincident atoms (2, 3: energy = gradient = 0)",
    ]
    return "\n".join(lines)


def _info(spec: dict) -> str:
    cl = spec.get("cluster")
    many = "" if cl is None else f"n_monomers={cl['n_monomers']}; monomer_size={cl['monomer_size']}; "
    return (f"symbols={','.join(spec['symbols'])}; {many}length_unit=bohr; energy_unit=hartree; "
            f"energy_zero_eV={float(spec['energy_zero_eV'])!r}; checksum={spec['checksum']}; "
            f"training_rmse_meV={_fmt(spec['training_rmse_meV'], '.6g')}; kind={spec['kind']}; "
            f"pesfit={__version__}")


def _parts(spec: dict, prefix: str) -> list[str]:
    """File stems of the units a many-body or diabatic export links besides ``prefix`` (none otherwise)."""
    if spec.get("diabatic") is not None:
        from .export_diabatic import unit_names

        return unit_names(spec, prefix)
    cl = spec.get("cluster")
    return [] if cl is None else [f"{prefix}_b{u['body']}" for u in cl["units"]]


# ------------------------------------------------------------ geometries
#: attempts per structure before _random_structures gives up
MAX_PLACEMENT_RESTARTS = 200


def _random_structures(n_atoms: int, n: int, rng, r_lo: float = 0.8, r_hi: float = 3.0) -> np.ndarray:
    """``n`` structures (Å) whose interatomic distances lie in ``[r_lo, r_hi]`` (RuntimeError if none is found)."""
    out = np.empty((n, n_atoms, 3))
    s = failures = 0
    while s < n:
        R = np.zeros((n_atoms, 3))
        ok = True
        for i in range(1, n_atoms):
            for _ in range(2000):
                d = rng.normal(size=3)
                cand = R[rng.integers(i)] + d / np.linalg.norm(d) * rng.uniform(r_lo, r_hi)
                r = np.linalg.norm(R[:i] - cand, axis=1)
                if np.all(r >= r_lo) and np.all(r <= r_hi):
                    R[i] = cand
                    break
            else:
                ok = False
                break
        if ok:
            out[s] = R - R.mean(axis=0)
            s += 1
        else:
            failures += 1
            if failures > MAX_PLACEMENT_RESTARTS * n:
                raise RuntimeError(f"could not place {n_atoms} atoms with every distance in [{r_lo:.3g}, {r_hi:.3g}] Å; "
                                   "pass check_structures (e.g. structures of the training set)")
    return out


def _sample_structures(spec: dict, n: int, rng, r_lo: float = 0.8, r_hi: float = 3.0) -> np.ndarray:
    """``n`` structures (Å), distances in ``[r_lo, r_hi]``; for a many-body model clusters of such monomers."""
    if spec.get("cluster") is not None:
        from .export_manybody import cluster_structures

        return cluster_structures(spec["cluster"], n, rng, lambda m, k, g: _random_structures(m, k, g, r_lo, r_hi))
    return _random_structures(len(spec["symbols"]), n, rng, r_lo, r_hi)


def _example_geometry(spec: dict) -> np.ndarray:
    """A fixed geometry (Å) for the example driver: the model's reference (lowest-energy training)
    geometry when it has one, else a random one inside the fitted distance range."""
    ref = spec.get("reference_geometry")
    if ref is not None and np.shape(ref) == (len(spec["symbols"]), 3):
        return np.asarray(ref, dtype=np.float64)
    r_lo = 0.8 if spec["r_min"] is None else max(0.8, 1.05 * float(np.max(spec["r_min"])))
    try:
        return _sample_structures(spec, 1, np.random.default_rng(2024), r_lo, max(3.0, r_lo + 1.5))[0]
    except RuntimeError:  # no compact structure clears every pair's r_min: any plausible one will do
        return _sample_structures(spec, 1, np.random.default_rng(2024))[0]


# ---------------------------------------------------------------- files
def _subst(template: str, values: dict) -> str:
    return re.sub(r"@([A-Z_]+)@", lambda m: values[m.group(1)], template)


def _build_rules(lang: str, prefix: str, parts=()) -> list[tuple[str, list[str], list[str]]]:
    """(target, dependencies, command words); ``{X}`` marks a make variable.

    ``parts``: stems of further sources linked into the library (the term
    units of a many-body export; in Fortran compiled before ``prefix``,
    whose module uses theirs).
    """
    if lang == "c":
        cc, fl = "{CC}", "{CFLAGS}"
        srcs = [f"{prefix}.c", *(f"{p}.c" for p in parts)]
        return [
            (f"lib{prefix}.so", [f"{prefix}.c", f"{prefix}.h", *(f"{p}.{e}" for p in parts for e in ("c", "h"))],
             [cc, fl, "-fPIC", "-shared", "-o", f"lib{prefix}.so", *srcs, "-lm"]),
            ("example_driver", ["example_driver.c", f"{prefix}.h", f"lib{prefix}.so"],
             [cc, fl, "-o", "example_driver", "example_driver.c", "-L.", f"-l{prefix}", "-Wl,-rpath,{ORIGIN}", "-lm"]),
            ("getpot.o", ["getpot.c", f"{prefix}.h"], [cc, fl, "-fPIC", "-c", "-o", "getpot.o", "getpot.c"]),
            ("rpmd_adapter.o", ["rpmd_adapter.c", f"{prefix}.h"],
             [cc, fl, "-fPIC", "-c", "-o", "rpmd_adapter.o", "rpmd_adapter.c"]),
        ]
    fc, fl = "{FC}", "{FFLAGS}"
    srcs = [*(f"{p}.f90" for p in parts), f"{prefix}.f90"]  # modules before their users
    return [
        (f"lib{prefix}.so", srcs, [fc, fl, "-fPIC", "-shared", "-o", f"lib{prefix}.so", *srcs]),
        ("example_driver", ["example_driver.f90", f"lib{prefix}.so"],
         [fc, fl, "-o", "example_driver", "example_driver.f90", "-L.", f"-l{prefix}", "-Wl,-rpath,{ORIGIN}"]),
        ("getpot.o", ["getpot.f90"], [fc, fl, "-fPIC", "-c", "-o", "getpot.o", "getpot.f90"]),
        ("rpmd_adapter.o", ["rpmd_adapter.f90"], [fc, fl, "-fPIC", "-c", "-o", "rpmd_adapter.o", "rpmd_adapter.f90"]),
    ]


def _makefile(lang: str, prefix: str, parts=()) -> str:
    make_vars = {"CC": "$(CC)", "CFLAGS": "$(CFLAGS)", "FC": "$(FC)", "FFLAGS": "$(FFLAGS)", "ORIGIN": "'$$ORIGIN'"}
    rules = _build_rules(lang, prefix, parts)
    head = ["# Builds the exported potential (generated by pesfit.export).",
            f"#   make            -> lib{prefix}.so, example_driver, getpot.o, rpmd_adapter.o",
            "#   ./example_driver   (prints energy and gradient of one geometry; hartree, bohr)",
            "# Link your program with getpot.o or rpmd_adapter.o and "
            f"-L$(pwd) -l{prefix} -Wl,-rpath,$(pwd).",
            "# The batch entry points evaluate 8 geometries per SIMD block: adding -march=native",
            "# to the flags (for this machine only) makes them about 2-3x faster.", ""]
    if lang == "c":
        head += ["CC = gcc", f"CFLAGS = {_CFLAGS}", ""]
    else:
        head += ["FC = gfortran", f"FFLAGS = {_FFLAGS}", ""]
    body = [f"all: {' '.join(r[0] for r in rules)}", ""]
    for target, deps, words in rules:
        cmd = " ".join(w.format(**make_vars) for w in words)
        body += [f"{target}: {' '.join(deps)}", f"\t{cmd}", ""]
    body += ["clean:", f"\trm -f lib{prefix}.so example_driver *.o *.mod", "", ".PHONY: all clean", ""]
    return "\n".join(head + body)


def _c_comment(text: str) -> str:
    return "/*\n" + "\n".join((" * " + ln.replace("*/", "* /")).rstrip() for ln in text.splitlines()) + "\n */\n"


def _f_comment(text: str) -> str:
    return "".join(("! " + ln).rstrip() + "\n" for ln in text.splitlines())


def _c_doubles(values, indent="    ") -> str:
    rows = [", ".join(repr(float(v)) for v in row) for row in np.asarray(values).reshape(-1, 3)]
    return (",\n" + indent).join(rows)


def _f_symbols(symbols, width, per_line=12) -> str:
    """Quoted, padded symbols, ``per_line`` to a line (free-form lines end at 132 characters)."""
    quoted = [f'"{s:<{width}}"' for s in symbols]
    rows = [", ".join(quoted[i:i + per_line]) for i in range(0, len(quoted), per_line)]
    return ", &\n      ".join(rows)


def _f_doubles(values, indent="      ") -> str:
    rows = [", ".join(repr(float(v)) + "_c_double" for v in row) for row in np.asarray(values).reshape(-1, 3)]
    return (", &\n" + indent).join(rows)


_C_DRIVER = r"""@COMMENT@
#include <stdio.h>

#include "@P@.h"

int main(void)
{
    /* atoms @ATOMS@; coordinates in bohr (natoms x 3, row-major) */
    static const double xyz[@UP@_NATOMS * 3] = {
    @XYZ@
    };
    static const char *symbol[@UP@_NATOMS] = {@SYMQ@};
    double energy, grad[@UP@_NATOMS * 3];
    char info[1024];
    int status, i;

    @P@_info(info, (int) sizeof info);
    printf("model: %s\n", info);
    @P@_energy_gradient(xyz, &energy, grad, &status);
    printf("status: %d\n", status);
    printf("energy: %.15e hartree\n", energy);
    printf("reference energy (pesfit, Python): @REF@ hartree\n");
    printf("gradient dE/dxyz (hartree/bohr):\n");
    for (i = 0; i < @UP@_NATOMS; ++i)
        printf("%-3s %23.15e %23.15e %23.15e\n", symbol[i], grad[3 * i], grad[3 * i + 1], grad[3 * i + 2]);
    return status >= 2;
}
"""

_F_INTERFACE = r"""  interface
    function @P@_natoms() result(n) &
        bind(C, name="@P@_natoms")
      import :: c_int
      integer(c_int) :: n
    end function @P@_natoms
    subroutine @P@_energy(xyz, energy, status) &
        bind(C, name="@P@_energy")
      import :: c_double, c_int
      real(c_double), intent(in) :: xyz(*)
      real(c_double), intent(out) :: energy
      integer(c_int), intent(out) :: status
    end subroutine @P@_energy
    subroutine @P@_energy_gradient(xyz, energy, grad, status) &
        bind(C, name="@P@_energy_gradient")
      import :: c_double, c_int
      real(c_double), intent(in) :: xyz(*)
      real(c_double), intent(out) :: energy, grad(*)
      integer(c_int), intent(out) :: status
    end subroutine @P@_energy_gradient
    subroutine @P@_energy_gradient_batch(n, xyz, energy, grad, status) &
        bind(C, name="@P@_energy_gradient_batch")
      import :: c_double, c_int
      integer(c_int), value, intent(in) :: n
      real(c_double), intent(in) :: xyz(*)
      real(c_double), intent(out) :: energy(*), grad(*)
      integer(c_int), intent(out) :: status(*)
    end subroutine @P@_energy_gradient_batch
    function @P@_info(buf, buflen) result(n) &
        bind(C, name="@P@_info")
      import :: c_char, c_int
      character(kind=c_char), intent(inout) :: buf(*)
      integer(c_int), value, intent(in) :: buflen
      integer(c_int) :: n
    end function @P@_info
  end interface
"""

_F_DRIVER = r"""@COMMENT@
program example_driver
  ! Evaluates one geometry through the bind(C) interface of lib@P@.so.
  use, intrinsic :: iso_c_binding, only: c_double, c_int, c_char, c_null_char
  implicit none
@INTERFACE@
  integer, parameter :: natoms = @NATOMS@
  ! atoms @ATOMS@; coordinates in bohr
  real(c_double), parameter :: xyz(3, natoms) = reshape([ &
      @XYZ@], [3, natoms])
  character(len=*), parameter :: symbols(natoms) = [@SYMQ@]
  real(c_double) :: energy, grad(3, natoms)
  integer(c_int) :: status, n
  character(kind=c_char) :: buf(1024)
  character(len=1024) :: info
  integer :: i

  if (@P@_natoms() /= natoms) &
      error stop "library and driver disagree on the number of atoms"
  n = @P@_info(buf, int(size(buf), c_int))
  info = ""
  do i = 1, min(int(n), size(buf) - 1)
    if (buf(i) == c_null_char) exit
    info(i:i) = buf(i)
  end do
  print "(a, a)", "model: ", trim(info)
  call @P@_energy_gradient(xyz, energy, grad, status)
  print "(a, i0)", "status: ", status
  print "(a, es23.15e3, a)", "energy: ", energy, " hartree"
  print "(a)", "reference energy (pesfit, Python): @REF@ hartree"
  print "(a)", "gradient dE/dxyz (hartree/bohr):"
  do i = 1, natoms
    print "(a3, 3es24.15e3)", symbols(i), grad(:, i)
  end do
  if (status >= 2) error stop 1
end program example_driver
"""

_C_GETPOT = r"""@COMMENT@
/*
 * MULTIMODE-style potential, callable from Fortran as
 *     CALL GETPOT(V, NATOM, XX, RR)
 * XX(NATOM,3): Cartesian coordinates [bohr] (column-major, XX(I,1:3) is atom I,
 * atoms in the order listed above); V: energy [hartree];
 * RR(NATOM,NATOM): filled with the interatomic distances [bohr].
 * Status 2/3 (non-finite or coincident atoms) give V = 0, as the library does.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "@P@.h"

void getpot_(double *v, const int *natom, const double *xx, double *rr)
{
    double xyz[@UP@_NATOMS * 3];
    const int n = *natom;
    int i, j, c, status;

    if (n != @UP@_NATOMS) {
        fprintf(stderr, "getpot: NATOM = %d but the potential '@P@' has %d atoms\n", n, @UP@_NATOMS);
        abort();
    }
    for (i = 0; i < n; ++i)
        for (c = 0; c < 3; ++c)
            xyz[3 * i + c] = xx[i + n * c];
    for (i = 0; i < n; ++i)
        for (j = 0; j < n; ++j) {
            const double d0 = xyz[3 * i] - xyz[3 * j], d1 = xyz[3 * i + 1] - xyz[3 * j + 1],
                         d2 = xyz[3 * i + 2] - xyz[3 * j + 2];
            rr[i + n * j] = sqrt(d0 * d0 + d1 * d1 + d2 * d2);
        }
    @P@_energy(xyz, v, &status);
}
"""

_F_GETPOT = r"""@COMMENT@
! MULTIMODE-style potential: CALL GETPOT(V, NATOM, XX, RR)
! XX(NATOM,3): Cartesian coordinates [bohr], atoms in the order listed above;
! V: energy [hartree]; RR(NATOM,NATOM): filled with the interatomic distances [bohr].
! Status 2/3 (non-finite input or coincident atoms) give V = 0, as the library does.
subroutine getpot(v, natom, xx, rr)
  use, intrinsic :: iso_c_binding, only: c_double, c_int, c_char
  implicit none
  integer, intent(in) :: natom
  double precision, intent(out) :: v
  double precision, intent(in) :: xx(natom, 3)
  double precision, intent(inout) :: rr(natom, natom)
@INTERFACE@
  real(c_double) :: xyz(3, natom), e
  integer(c_int) :: status
  integer :: i, j

  if (natom /= @P@_natoms()) &
      error stop "getpot: NATOM differs from the number of atoms of the potential"
  xyz = transpose(xx)
  do j = 1, natom
    do i = 1, natom
      rr(i, j) = sqrt(sum((xyz(:, i) - xyz(:, j))**2))
    end do
  end do
  call @P@_energy(xyz, e, status)
  v = e
end subroutine getpot
"""

_C_RPMD = r"""@COMMENT@
/*
 * RPMDrate-style potential, callable from Fortran as
 *     CALL GET_POTENTIAL(Q, NATOMS, NBEADS, V, DVDQ, INFO)
 * Q(3,NATOMS,NBEADS) [bohr], V(NBEADS) [hartree], DVDQ(3,NATOMS,NBEADS) [hartree/bohr];
 * INFO = largest status over the beads (0 ok, 1 outside the fitted range,
 * 2 non-finite input, 3 coincident atoms, 4 no memory).
 */
#include <stdio.h>
#include <stdlib.h>

#include "@P@.h"

void get_potential_(const double *q, const int *natoms, const int *nbeads, double *v, double *dvdq, int *info)
{
    int *status;
    int s;

    if (*natoms != @UP@_NATOMS) {
        fprintf(stderr, "get_potential: NATOMS = %d but the potential '@P@' has %d atoms\n", *natoms, @UP@_NATOMS);
        abort();
    }
    *info = 0;
    if (*nbeads <= 0)
        return;
    status = (int *) malloc((size_t) *nbeads * sizeof(int));
    if (status == NULL) {
        *info = 4;
        return;
    }
    @P@_energy_gradient_batch(*nbeads, q, v, dvdq, status);
    for (s = 0; s < *nbeads; ++s)
        if (status[s] > *info)
            *info = status[s];
    free(status);
}
"""

_F_RPMD = r"""@COMMENT@
! RPMDrate-style potential: CALL GET_POTENTIAL(Q, NATOMS, NBEADS, V, DVDQ, INFO)
! Q(3,NATOMS,NBEADS) [bohr], V(NBEADS) [hartree], DVDQ(3,NATOMS,NBEADS) [hartree/bohr];
! INFO = largest status over the beads (0 ok, 1 outside the fitted range,
! 2 non-finite input, 3 coincident atoms, 4 no memory).
subroutine get_potential(q, natoms, nbeads, v, dvdq, info)
  use, intrinsic :: iso_c_binding, only: c_double, c_int, c_char
  implicit none
  integer, intent(in) :: natoms, nbeads
  double precision, intent(in) :: q(3, natoms, nbeads)
  double precision, intent(out) :: v(nbeads), dvdq(3, natoms, nbeads)
  integer, intent(out) :: info
@INTERFACE@
  integer(c_int), allocatable :: status(:)

  if (natoms /= @P@_natoms()) &
      error stop "get_potential: NATOMS differs from the number of atoms of the potential"
  info = 0
  if (nbeads <= 0) return
  allocate(status(nbeads))
  call @P@_energy_gradient_batch(int(nbeads, c_int), q, v, dvdq, status)
  info = maxval(status)
end subroutine get_potential
"""

_PY_LOADER = r'''"""ctypes loader for the exported potential '@P@' (generated by pesfit.export).

No compiled Python extension: the shared library ``lib@P@.so`` is loaded with
ctypes.  Build it first with ``make`` in this directory.

Atoms (order of coordinates): @ATOMS@.
Units: coordinates in bohr, energies in hartree, gradients in hartree/bohr;
``ase_calculator()`` converts to eV and angstrom.

>>> pes = CompiledPES("lib@P@.so")          # doctest: +SKIP
>>> pes.energy(xyz_bohr)                     # (natoms, 3) -> float   # doctest: +SKIP
>>> pes.energy(many_xyz_bohr)                # (n, natoms, 3) -> (n,) # doctest: +SKIP

A diabatic potential (``pes.nstates`` states) also has ``diabatic`` (matrix
and its gradient) and ``adiabatic`` (energies, gradients, couplings); its
``energy`` and ``energy_gradient`` are those of the lowest adiabatic state.
"""
import ctypes
import os

import numpy as np

PREFIX = "@P@"
SYMBOLS = (@SYMQ@)
#: CODATA 2018
BOHR_IN_ANGSTROM = 0.529177210903
HARTREE_IN_EV = 27.211386245988
STATUS = {
    0: "ok",
    1: "outside the fitted range (a distance below the shortest training distance); value returned",
    2: "non-finite input; energy and gradient set to 0",
    3: "two atoms on top of each other; energy and gradient set to 0",
    4: "out of memory; energy and gradient set to 0",
}

_dp = ctypes.POINTER(ctypes.c_double)
_ip = ctypes.POINTER(ctypes.c_int)


class CompiledPES:
    """The compiled potential.

    Parameters
    ----------
    libpath : str, optional
        Path of ``lib@P@.so`` (default: beside this file).

    Attributes
    ----------
    natoms : int
    symbols : tuple of str
    info : str
        Metadata string of the library.
    nstates : int or None
        Electronic states of a diabatic potential (None: a single-state one).
    """

    def __init__(self, libpath=None):
        if libpath is None:
            libpath = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib" + PREFIX + ".so")
        self.libpath = os.path.abspath(str(libpath))
        lib = ctypes.CDLL(self.libpath)
        self._lib = lib
        lib.@P@_natoms.restype = ctypes.c_int
        lib.@P@_natoms.argtypes = []
        lib.@P@_info.restype = ctypes.c_int
        lib.@P@_info.argtypes = [ctypes.c_char_p, ctypes.c_int]
        lib.@P@_energy_batch.restype = None
        lib.@P@_energy_batch.argtypes = [ctypes.c_int, _dp, _dp, _ip]
        lib.@P@_energy_gradient_batch.restype = None
        lib.@P@_energy_gradient_batch.argtypes = [ctypes.c_int, _dp, _dp, _dp, _ip]
        self.natoms = int(lib.@P@_natoms())
        if self.natoms != len(SYMBOLS):
            raise ValueError(f"{self.libpath} has {self.natoms} atoms but this loader expects {len(SYMBOLS)}")
        self.symbols = SYMBOLS
        n = lib.@P@_info(None, 0)
        buf = ctypes.create_string_buffer(n + 1)
        lib.@P@_info(buf, n + 1)
        self.info = buf.value.decode("ascii", "replace")
        self.nstates = None
        if hasattr(lib, "@P@_diabatic") and hasattr(lib, "@P@_adiabatic"):
            lib.@P@_nstates.restype = ctypes.c_int
            lib.@P@_nstates.argtypes = []
            lib.@P@_diabatic.restype = None
            lib.@P@_diabatic.argtypes = [_dp, _dp, _dp, _ip]
            lib.@P@_adiabatic.restype = None
            lib.@P@_adiabatic.argtypes = [_dp, _dp, _dp, _dp, _ip]
            self.nstates = int(lib.@P@_nstates())

    def __repr__(self):
        return f"CompiledPES({self.libpath!r})"

    def _coords(self, xyz):
        xyz = np.ascontiguousarray(xyz, dtype=np.float64)
        single = xyz.ndim == 2
        if single:
            xyz = xyz[None]
        if xyz.ndim != 3 or xyz.shape[1:] != (self.natoms, 3):
            raise ValueError(f"coordinates must have shape ({self.natoms}, 3) or (n, {self.natoms}, 3) [bohr], "
                             f"got {xyz.shape}")
        return xyz, single

    def energy(self, xyz, *, return_status=False):
        """Energy [hartree] of one geometry (natoms, 3) or many (n, natoms, 3) [bohr]."""
        xyz, single = self._coords(xyz)
        n = xyz.shape[0]
        e = np.zeros(n)
        st = np.zeros(n, dtype=np.intc)
        if n:
            self._lib.@P@_energy_batch(n, xyz.ctypes.data_as(_dp), e.ctypes.data_as(_dp), st.ctypes.data_as(_ip))
        if single:
            e, st = float(e[0]), int(st[0])
        return (e, st) if return_status else e

    def energy_gradient(self, xyz, *, return_status=False):
        """Energy [hartree] and gradient dE/dxyz [hartree/bohr] (same shape as ``xyz``)."""
        xyz, single = self._coords(xyz)
        n = xyz.shape[0]
        e = np.zeros(n)
        g = np.zeros_like(xyz)
        st = np.zeros(n, dtype=np.intc)
        if n:
            self._lib.@P@_energy_gradient_batch(n, xyz.ctypes.data_as(_dp), e.ctypes.data_as(_dp),
                                                 g.ctypes.data_as(_dp), st.ctypes.data_as(_ip))
        if single:
            e, g, st = float(e[0]), g[0], int(st[0])
        return (e, g, st) if return_status else (e, g)

    def _states(self, xyz, name):
        if self.nstates is None:
            raise RuntimeError(f"{self.libpath} is a single-state potential: it has no {PREFIX}_{name}")
        return self._coords(xyz)

    def diabatic(self, xyz, *, return_status=False):
        """Diabatic matrix U (nstates, nstates) [hartree] and dU/dxyz (nstates, nstates, natoms, 3)
        [hartree/bohr] of one geometry (natoms, 3) [bohr]; many (n, natoms, 3) add a leading axis."""
        xyz, single = self._states(xyz, "diabatic")
        n, ns = xyz.shape[0], self.nstates
        U = np.zeros((n, ns, ns))
        dU = np.zeros((n, ns, ns, self.natoms, 3))
        st = np.zeros(n, dtype=np.intc)
        for s in range(n):
            self._lib.@P@_diabatic(xyz[s].ctypes.data_as(_dp), U[s].ctypes.data_as(_dp),
                                   dU[s].ctypes.data_as(_dp), st[s:].ctypes.data_as(_ip))
        if single:
            U, dU, st = U[0], dU[0], int(st[0])
        return (U, dU, st) if return_status else (U, dU)

    def adiabatic(self, xyz, *, return_status=False):
        """Ascending adiabatic energies E (nstates,) [hartree], their gradients G (nstates, natoms, 3)
        [hartree/bohr] and the nonadiabatic couplings D (nstates, nstates, natoms, 3) [1/bohr],
        D[k, l] = <k|d/dxyz l>, of one geometry (natoms, 3) [bohr]; many (n, natoms, 3) add a leading axis."""
        xyz, single = self._states(xyz, "adiabatic")
        n, ns = xyz.shape[0], self.nstates
        E = np.zeros((n, ns))
        G = np.zeros((n, ns, self.natoms, 3))
        D = np.zeros((n, ns, ns, self.natoms, 3))
        st = np.zeros(n, dtype=np.intc)
        for s in range(n):
            self._lib.@P@_adiabatic(xyz[s].ctypes.data_as(_dp), E[s].ctypes.data_as(_dp), G[s].ctypes.data_as(_dp),
                                    D[s].ctypes.data_as(_dp), st[s:].ctypes.data_as(_ip))
        if single:
            E, G, D, st = E[0], G[0], D[0], int(st[0])
        return (E, G, D, st) if return_status else (E, G, D)

    def pyvibdmc(self, cds):
        """PyVibDMC potential: walkers ``cds`` (n_walkers, natoms, 3) [bohr] -> energies (n_walkers,) [hartree]."""
        cds = np.asarray(cds, dtype=np.float64)
        return self.energy(cds.reshape(-1, self.natoms, 3))

    def ase_calculator(self, **kwargs):
        """An ASE calculator (eV, angstrom) evaluating this library; atoms must be in the order ``SYMBOLS``."""
        return _make_calculator(self, **kwargs)


def _make_calculator(pes, **kwargs):
    from ase.calculators.calculator import Calculator, all_changes

    class CompiledPESCalculator(Calculator):
        """ASE calculator for the compiled pesfit potential '@P@' (energy in eV, forces in eV/angstrom)."""

        implemented_properties = ["energy", "free_energy", "forces"]

        def __init__(self, **kw):
            super().__init__(**kw)
            self.pes = pes

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            symbols = tuple(self.atoms.get_chemical_symbols())
            if symbols != self.pes.symbols:
                raise ValueError(f"atoms {symbols} do not match the potential's atom order {self.pes.symbols}")
            xyz = self.atoms.get_positions() / BOHR_IN_ANGSTROM
            e, g, status = self.pes.energy_gradient(xyz, return_status=True)
            if status >= 2:
                raise RuntimeError(f"potential '{PREFIX}' returned status {status}: {STATUS.get(status)}")
            energy = e * HARTREE_IN_EV
            self.results = {"energy": energy, "free_energy": energy,
                            "forces": -g * (HARTREE_IN_EV / BOHR_IN_ANGSTROM), "status": status}

    return CompiledPESCalculator(**kwargs)
'''


def unit_files(lang: str, program, transform, weights, *, prefix: str, **kw) -> dict:
    """``{"source": (name, text)[, "header": (name, text)]}`` of one codegen unit named ``prefix``."""
    if lang == "c":
        c_text, h_text = codegen.c_source(program, transform, weights, prefix=prefix, **kw)
        return {"source": (f"{prefix}.c", c_text), "header": (f"{prefix}.h", h_text)}
    return {"source": (f"{prefix}.f90", codegen.fortran_source(program, transform, weights, prefix=prefix, **kw))}


def _write_sources(spec: dict, lang: str, out: Path, prefix: str) -> dict:
    comment = _header_comment(spec, prefix)
    files = {}
    if spec.get("cluster") is not None:
        from .export_manybody import cluster_sources

        files.update(cluster_sources(spec, lang, prefix, comment, _info(spec)))
    elif spec.get("diabatic") is not None:
        from .export_diabatic import diabatic_sources

        files.update(diabatic_sources(spec, lang, prefix, comment, _info(spec)))
    else:
        files.update(unit_files(lang, spec["program"], spec["transform"], spec["weights"], head=spec["head"],
                                prefix=prefix, header_comment=comment, length_scale=spec["length_scale"],
                                energy_scale=spec["energy_scale"], r_min=spec["r_min"], info=_info(spec)))

    R = _example_geometry(spec)
    xyz_bohr = R / spec["length_scale"]
    ref = "not available"
    try:
        E, _ = spec["predict"](xyz_bohr[None] * spec["length_scale"])
        ref = f"{float(np.asarray(E)[0]) * spec['energy_scale']:.15e}"
    except Exception as exc:  # the reference is informative only
        ref = f"not available ({type(exc).__name__})"
    atoms = " ".join(spec["symbols"])
    values = {"P": prefix, "UP": prefix.upper(), "NATOMS": str(len(spec["symbols"])), "ATOMS": atoms, "REF": ref}
    if lang == "c":
        cm = _c_comment(comment)
        values.update(COMMENT=cm, XYZ=_c_doubles(xyz_bohr), SYMQ=", ".join(f'"{s}"' for s in spec["symbols"]))
        files["driver"] = ("example_driver.c", _subst(_C_DRIVER, values))
        files["getpot"] = ("getpot.c", _subst(_C_GETPOT, values))
        files["rpmd_adapter"] = ("rpmd_adapter.c", _subst(_C_RPMD, values))
    else:
        cm = _f_comment(comment)
        width = max(len(s) for s in spec["symbols"])
        values.update(COMMENT=cm, XYZ=_f_doubles(xyz_bohr), INTERFACE=_subst(_F_INTERFACE, {"P": prefix}),
                      SYMQ=_f_symbols(spec["symbols"], width))
        files["driver"] = ("example_driver.f90", _subst(_F_DRIVER, values))
        files["getpot"] = ("getpot.f90", _subst(_F_GETPOT, values))
        files["rpmd_adapter"] = ("rpmd_adapter.f90", _subst(_F_RPMD, values))
    files["makefile"] = ("Makefile", _makefile(lang, prefix, _parts(spec, prefix)))
    files["ctypes_loader"] = ("pes_ctypes.py", _subst(_PY_LOADER, {
        "P": prefix, "ATOMS": atoms, "SYMQ": "".join(f'"{s}", ' for s in spec["symbols"]).rstrip()}))

    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for role, (name, text) in files.items():
        path = out / name
        path.write_text(text)
        paths[role] = path
    return paths


# ----------------------------------------------------------------- build
def _find_compiler(lang: str) -> str:
    name = LANGUAGES[lang]
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"check=True needs the {'C' if lang == 'c' else 'Fortran'} compiler {name!r} on PATH; "
                           f"{_INSTALL_HINT[name]}, or export with check=False and run `make` later")
    return path


def build(out_dir, lang: str, prefix: str = "pes", *, compiler: str | None = None, parts=()) -> dict:
    """Run the Makefile's rules (without make) in ``out_dir``.

    ``parts`` are the stems of the term units of a many-body export
    (``["pes_b1", "pes_b2", ...]``), linked into ``libPREFIX.so``.

    Returns ``{"library": Path, "driver": Path, "log": str}``; the log holds
    the compilers' messages (empty when there were no warnings).  Raises
    ``RuntimeError`` with the compiler output when a step fails.
    """
    out = Path(out_dir).resolve()
    comp = compiler or _find_compiler(lang)
    subs = {"CC": comp, "FC": comp, "CFLAGS": _CFLAGS, "FFLAGS": _FFLAGS, "ORIGIN": "$ORIGIN"}
    log = []
    for target, _, words in _build_rules(lang, prefix, parts):
        cmd = []
        for w in words:
            w = w.format(**subs)
            cmd += w.split() if w in (_CFLAGS, _FFLAGS) else [w]
        proc = subprocess.run(cmd, cwd=out, capture_output=True, text=True)
        msg = (proc.stdout + proc.stderr).strip()
        if msg:
            log.append(f"$ {' '.join(cmd)}\n{msg}")
        if proc.returncode != 0:
            raise RuntimeError(f"building {target} in {out} failed:\n$ {' '.join(cmd)}\n{msg}")
    return {"library": out / f"lib{prefix}.so", "driver": out / "example_driver", "log": "\n".join(log)}


def _load_private_copy(lib: Path, tmp: str) -> ctypes.CDLL:
    # dlopen caches by path: a rebuilt library at the same path would not be reloaded
    copy = Path(tmp) / f"{lib.stem}_{os.getpid()}_{id(tmp)}.so"
    shutil.copy2(lib, copy)
    return ctypes.CDLL(str(copy))


def _compiled_eval(lib: ctypes.CDLL, prefix: str, xyz: np.ndarray):
    n = xyz.shape[0]
    xyz = np.ascontiguousarray(xyz, dtype=np.float64)
    e = np.zeros(n)
    g = np.zeros_like(xyz)
    st = np.zeros(n, dtype=np.intc)
    fn = getattr(lib, f"{prefix}_energy_gradient_batch")
    fn.restype = None
    vp = ctypes.c_void_p
    fn(ctypes.c_int(n), vp(xyz.ctypes.data), vp(e.ctypes.data), vp(g.ctypes.data), vp(st.ctypes.data))
    return e, g, st


def _check(spec: dict, lib_path: Path, prefix: str, structures) -> dict:
    n_atoms = len(spec["symbols"])
    if structures is None:
        R = _sample_structures(spec, 200, np.random.default_rng(0))
    else:
        R = np.asarray(structures, dtype=np.float64)
        if R.ndim == 2:
            R = R[None]
        if R.ndim != 3 or R.shape[1:] != (n_atoms, 3) or len(R) == 0:
            raise ValueError(f"check_structures must have shape (n, {n_atoms}, 3) [{spec['length_unit']}], "
                             f"got {R.shape}")
        if len(R) > MAX_CHECK_STRUCTURES:
            R = R[np.linspace(0, len(R) - 1, MAX_CHECK_STRUCTURES).round().astype(int)]
    if spec.get("diabatic") is not None:
        from .export_diabatic import check_diabatic

        with tempfile.TemporaryDirectory(prefix="pesfit_check_") as tmp:
            return check_diabatic(spec, _load_private_copy(lib_path, tmp), prefix, R, ENERGY_RTOL, GRADIENT_RTOL)
    ls, es = spec["length_scale"], spec["energy_scale"]
    xyz = R / ls
    R_used = xyz * ls  # exactly the coordinates the library sees
    E_ref, G_ref = spec["predict"](R_used)
    E_ref = np.asarray(E_ref, dtype=np.float64).reshape(len(R))
    G_ref = np.asarray(G_ref, dtype=np.float64).reshape(R.shape)
    with tempfile.TemporaryDirectory(prefix="pesfit_check_") as tmp:
        lib = _load_private_copy(lib_path, tmp)
        e, g, st = _compiled_eval(lib, prefix, xyz)
    ok = st < 2
    if not np.any(ok):
        raise RuntimeError("check: the compiled potential rejected every structure (status "
                           f"{sorted(set(st.tolist()))}); pass check_structures inside the fitted range")
    dE = np.abs(e[ok] / es - E_ref[ok])
    dG = np.abs(g[ok] / (es * ls) - G_ref[ok])
    e_scale = max(float(np.max(np.abs(E_ref[ok]))), np.finfo(float).tiny)
    g_scale = max(float(np.max(np.abs(G_ref[ok]))), np.finfo(float).tiny)
    # The model's own response to rounding of its inputs (coordinates moved by ~4 ulp).  An
    # ill-conditioned expansion (a kernel model with coefficients ~1e6 summing to a few eV) cannot be
    # reproduced more closely than this by any evaluator, so the tolerance never goes below 10x it.
    jitter = R_used * (1.0 + 4 * np.finfo(float).eps * np.random.default_rng(1).uniform(-1, 1, R.shape))
    E_j, G_j = spec["predict"](jitter)
    noise_e = float(np.max(np.abs(np.asarray(E_j, dtype=np.float64).reshape(len(R))[ok] - E_ref[ok]))) / e_scale
    noise_g = float(np.max(np.abs(np.asarray(G_j, dtype=np.float64).reshape(R.shape)[ok] - G_ref[ok]))) / g_scale
    e_tol, g_tol = max(ENERGY_RTOL, 10 * noise_e), max(GRADIENT_RTOL, 10 * noise_g)
    result = {
        "n_structures": int(np.count_nonzero(ok)),
        "n_out_of_range": int(np.count_nonzero(st == 1)),
        "max_energy_abs": float(np.max(dE)),
        "max_gradient_abs": float(np.max(dG)),
        "max_energy_rel": float(np.max(dE)) / e_scale,
        "max_gradient_rel": float(np.max(dG)) / g_scale,
        "rounding_energy_rel": noise_e,
        "rounding_gradient_rel": noise_g,
        "energy_tolerance": e_tol,
        "gradient_tolerance": g_tol,
    }
    if not (result["max_energy_rel"] <= e_tol and result["max_gradient_rel"] <= g_tol):
        raise RuntimeError(
            f"check: compiled and Python potentials disagree: max relative energy deviation "
            f"{result['max_energy_rel']:.3g} (tolerance {e_tol:.3g}), gradient {result['max_gradient_rel']:.3g} "
            f"(tolerance {g_tol:.3g}) over {result['n_structures']} structures")
    return result


# ------------------------------------------------------------------ API
def export_model(model, lang: str, out_dir, *, prefix: str = "pes", check: bool = False,
                 check_structures=None, n_monomers: int | None = None) -> dict:
    """Write the model as C or Fortran source, build files, adapters and a ctypes loader.

    Parameters
    ----------
    model : fitted pesfit model
        Anything with ``export_spec()`` (see the module docstring): models
        linear in a basis program (kinds ``linear_*``), with a compiled head
        (networks, kernels), many-body expansions of such terms, or diabatic
        matrices (:mod:`pesfit.export_diabatic`; the standard entry points
        then return the lowest adiabatic state).
    lang : {"c", "fortran"}
    out_dir : str or Path
        Created if needed; existing files of the same names are replaced.
    prefix : str
        Symbol prefix and file stem (``prefix_energy``, ``libprefix.so``).
    check : bool
        Build with ``gcc``/``gfortran`` from ``PATH`` (``RuntimeError`` naming
        the missing compiler otherwise), run the example driver, load the
        library with ctypes and compare with ``spec["predict"]``: max
        ``|dE| / max|E|`` must be <= 1e-10 and max ``|dG| / max|G|`` <= 1e-8
        (or 10x the model's own change when its inputs move by a few ulp,
        for ill-conditioned kernel expansions), else ``RuntimeError``.  A
        diabatic model is compared on ``U`` and the adiabatic energies
        (1e-10), ``dU``, the adiabatic gradients and the couplings (1e-8),
        gradients and couplings away from near-degeneracies
        (:func:`pesfit.export_diabatic.check_diabatic`).
    check_structures : ndarray of shape (n, n_atoms, 3) [Å], optional
        Structures for the check (at most 1000 are used, evenly spaced);
        default 200 random structures with distances in 0.8-3 Å (for a
        many-body model, clusters of such monomers 3-6 Å apart).
    n_monomers : int, optional
        Required for many-body models (and only for them): the number of
        monomers ``M`` of the exported cluster, whose library then has the
        standard interface for ``M * monomer_size`` atoms (see
        :mod:`pesfit.export_manybody`).

    Returns
    -------
    dict
        ``Path`` of each written file under the keys ``source``, (``header``),
        ``makefile``, ``driver``, ``getpot``, ``rpmd_adapter``,
        ``ctypes_loader`` (many-body: also ``b<n>_source``, (``b<n>_header``)
        for the unit of each body order ``n``; diabatic: ``u<i><j>_t<t>_source``,
        (``u<i><j>_t<t>_header``) for each term); with ``check`` also
        ``library``, ``build_log`` (the compilers' warnings, normally empty),
        ``driver_output`` and ``check``
        (``n_structures``, ``max_energy_rel``, ``max_gradient_rel``,
        ``max_energy_abs`` [eV], ``max_gradient_abs`` [eV/Å], ...; diabatic
        also ``max_u_rel``, ``max_du_rel``, ``max_coupling_rel``,
        ``n_gradient_structures``, ``n_coupling_structures``).
    """
    if lang not in LANGUAGES:
        raise ValueError(f"lang must be one of {sorted(LANGUAGES)}, got {lang!r}")
    spec = _read_spec(model, n_monomers)
    if check:
        compiler = _find_compiler(lang)  # fail before writing anything
    out = Path(out_dir).resolve()
    result: dict = dict(_write_sources(spec, lang, out, prefix))
    if not check:
        return result
    built = build(out, lang, prefix, compiler=compiler, parts=_parts(spec, prefix))
    result["library"] = built["library"]
    result["build_log"] = built["log"]
    proc = subprocess.run([str(built["driver"])], cwd=out, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"the example driver failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    result["driver_output"] = proc.stdout
    result["check"] = _check(spec, built["library"], prefix, check_structures)
    return result
