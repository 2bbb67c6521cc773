"""Print a :class:`~invariants.program.Program` as C or Fortran source.

The printers are deterministic pure functions: the same program, transform
and weights always give the same text, and nothing is read or written.  The
program's tables go into the source as ``static const`` arrays (C) or
``parameter`` arrays (Fortran) and one generic loop walks them, exactly as the
Numba kernels of :mod:`invariants.evaluate` do:

* variables ``x_k = f(r_k)`` for the pairs ``i<j`` in lexicographic order
  (``np.triu_indices(N, 1)``), with ``f`` the distance transform;
* the monomial segment, ``v[i] = v[a[i]] * v[b[i]]``, as a tight loop;
* the remaining nodes, ``v[i] = const[i] + scale[i]*v[a[i]]*v[b[i]] +
  sum_l coef[l]*v[idx[l]]``;
* ``E = sum_j w_j v[outputs[j]]`` and, for gradients, one reverse sweep
  (adjoints) followed by the chain rule through the transform and
  ``dr_ij/dR_i = (R_i - R_j)/r_ij``.

The operations and their order are those of the scalar Numba kernels
(``_forward``, ``_backward``), so compiled and Python values agree to rounding
(in practice bit for bit for the energy).  The batch entry points walk the
tables once per block of 8 geometries (``v[node][lane]``), doing each node's
arithmetic as a short loop over the lanes that the compiler vectorizes; each
lane performs exactly the scalar operations, so blocks and single calls agree.

Models whose energy is not linear in the basis (networks, kernel expansions)
pass a *head* instead of weights: an object with

* ``n_inputs`` (must equal the program's number of outputs),
* ``description`` (one line for the source comment),
* ``tables()``: ``(name, "int" | "double", values, comment)`` tuples, printed
  as ``static const`` arrays (C) or ``parameter`` arrays (Fortran), 0-based,
* ``c_function()``: C text defining
  ``static double head(const double *restrict p, double *restrict pbar)``
  returning the energy (model unit) of the outputs ``p[NOUT]`` and, if
  ``pbar != NULL``, writing ``dE/dp``;
* ``fortran_function()``: Fortran text of the module procedure
  ``subroutine head(p, e, pbar, want_grad)`` with ``p(0:nout-1)``,
  ``pbar(0:nout-1)`` and the same meaning.

With a head every geometry takes the single-geometry path (the head's cost
dominates) and the reverse sweep starts from ``pbar`` instead of the weights.
Operand pairs of the monomial segment are packed two per 32-bit word (one
load per node in the tightest loop).  Because the tables are data, compile
time does not grow with the size of the basis the way fully unrolled
generated code does (MSA-2.0's ``basis.f90`` for A4B2 degree 5 takes 87 s to
compile; this takes well under a second).

Interface of the generated code (``P`` = ``prefix``; coordinates in the
caller's length unit, energies in the caller's energy unit)::

    int  P_natoms(void);
    void P_energy(const double *xyz, double *energy, int *status);
    void P_energy_gradient(const double *xyz, double *energy, double *grad, int *status);
    void P_energy_batch(int n, const double *xyz, double *energy, int *status);
    void P_energy_gradient_batch(int n, const double *xyz, double *energy, double *grad,
                                 int *status);
    int  P_info(char *buf, int len);

``xyz`` and ``grad`` are ``natoms x 3`` row-major (``n x natoms x 3`` for the
batch calls, with one ``status`` per structure).  ``status``: 0 ok; 1 outside
the fitted range (a distance below ``r_min`` or an energy below ``e_floor``;
the value is still returned); 2 non-finite input or result (energy and
gradient set to 0); 3 two atoms closer than ``1e-8`` length units (energy
and gradient set to 0); 4 the work arrays could not be allocated.  Nothing is
stored between calls, so all entry points are thread-safe.
"""
from __future__ import annotations

import math
import re
import unicodedata

import numpy as np

from .program import Program
from .transforms import DistanceTransform

__all__ = ["c_source", "fortran_source", "STATUS_CODES", "CODEGEN_VERSION"]

#: bumped whenever the printed interface or algorithm changes
CODEGEN_VERSION = 1

#: meaning of the ``status`` values returned by the generated code
STATUS_CODES = {
    0: "ok",
    1: "outside the fitted range (distance below r_min or energy below e_floor); value returned",
    2: "non-finite input or result; energy and gradient set to 0",
    3: "two atoms on top of each other (r < 1e-8); energy and gradient set to 0",
    4: "work arrays could not be allocated; energy and gradient set to 0",
}

#: distances below this (caller's length unit) count as coincident atoms
COINCIDENT = 1e-8

_PREFIX_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")


# ---------------------------------------------------------------- tables
def _tables(program: Program, transform: DistanceTransform, weights, prefix, length_scale, energy_scale,
            r_min, e_floor, head=None) -> dict:
    """Check the inputs and cut the program into the arrays both printers use."""
    if not isinstance(program, Program):
        raise TypeError(f"program must be an invariants Program, got {type(program).__name__}")
    program.validate()
    if not isinstance(transform, DistanceTransform):
        raise TypeError(f"transform must be a DistanceTransform, got {type(transform).__name__}")
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
        raise ValueError(f"prefix must be a letter followed by up to 31 letters, digits or '_', got {prefix!r}")
    for name, val in (("length_scale", length_scale), ("energy_scale", energy_scale)):
        if not (isinstance(val, (int, float, np.floating)) and math.isfinite(val) and val > 0):
            raise ValueError(f"{name} must be a positive finite number, got {val!r}")
    nv = program.n_variables
    natoms = int(round((1 + math.sqrt(1 + 8 * nv)) / 2))
    if natoms * (natoms - 1) // 2 != nv:
        raise ValueError(f"the program has {nv} variables, which is not N(N-1)/2 distances for any N")
    if head is None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (program.n_outputs,):
            raise ValueError(f"weights must have shape ({program.n_outputs},) (one per basis function), "
                             f"got {w.shape}")
        if not np.all(np.isfinite(w)):
            raise ValueError("weights must be finite")
    else:
        if weights is not None:
            raise ValueError("give weights or a head, not both")
        if int(head.n_inputs) != program.n_outputs:
            raise ValueError(f"the head reads {head.n_inputs} inputs but the program has {program.n_outputs} outputs")
        w = None
        for name, typ, values, _ in head.tables():
            if typ not in ("int", "double"):
                raise ValueError(f"head table {name!r} has type {typ!r}; use 'int' or 'double'")
            if typ == "double" and not np.all(np.isfinite(np.asarray(values, dtype=np.float64))):
                raise ValueError(f"head table {name!r} has non-finite values")
    if r_min is not None:
        r_min = np.asarray(r_min, dtype=np.float64)
        if r_min.ndim == 0:
            r_min = np.full(nv, float(r_min))
        if r_min.shape != (nv,) or not np.all(np.isfinite(r_min)):
            raise ValueError(f"r_min must be finite with shape ({nv},) (one per distance variable), got {r_min.shape}")
    if e_floor is not None and not math.isfinite(float(e_floor)):
        raise ValueError(f"e_floor must be finite, got {e_floor!r}")
    nm = program.n_monomial_end
    bits = 16 if program.n_nodes <= _PACK16_LIMIT else 32
    pi, pj = np.triu_indices(natoms, k=1)
    p0 = int(program.ptr[nm])
    for arr in (program.a, program.b, program.ptr, program.idx, program.outputs):
        if len(arr) and int(np.max(arr)) >= 2**31 - 1:
            raise ValueError("program too large for 32-bit index tables")
    return {
        "prefix": prefix,
        "natoms": natoms,
        "nv": nv,
        "nmono": nm - nv,
        "nnodes": program.n_nodes,
        "nrest": program.n_nodes - nm,
        "nout": program.n_outputs,
        "nterms": len(program.idx) - p0,
        "pair_i": pi.astype(np.int64),
        "pair_j": pj.astype(np.int64),
        "mono_pairs": _pack_pairs(program.a[nv:nm], program.b[nv:nm], bits),
        "pair_bits": bits,
        "ra": program.a[nm:],
        "rb": np.where(program.a[nm:] >= 0, program.b[nm:], 0),  # 0, never -1: unused when a < 0
        "rscale": program.scale[nm:],
        "rconst": program.const[nm:],
        "rptr": program.ptr[nm:] - p0 if program.n_nodes > nm else np.zeros(2, dtype=np.int64),  # 2: see F printer
        "idx": program.idx[p0:],
        "coef": program.coef[p0:],
        "out": program.outputs,
        "w": w,
        "head": head,
        "kind": transform.kind,
        "param": transform.parameters(nv),
        "val_ab": transform.valence_pairs(natoms) if transform.kind == "valence" else None,
        "val_center": transform.center,
        "length_scale": float(length_scale),
        "energy_scale": float(energy_scale),
        "grad_scale": float(energy_scale) * float(length_scale),
        "r_coincident": COINCIDENT * float(length_scale),
        "r_min": r_min,
        "e_floor": None if e_floor is None else float(e_floor),
    }


#: monomial operand pairs are packed two per 32-bit word up to this many nodes
#: (one load instead of two in the tightest loop), else two per 64-bit word
_PACK16_LIMIT = 65535


def _pack_pairs(a, b, bits: int) -> list[int]:
    """Operand pairs packed as unsigned ``a | b << bits``."""
    return [int(x) | (int(y) << bits) for x, y in zip(a, b)]


def _ascii(text: str) -> str:
    text = unicodedata.normalize("NFKD", str(text)).replace("\u00c5", "A")
    return text.encode("ascii", "ignore").decode("ascii").replace("\t", "    ")


def _info_text(t: dict, info) -> str:
    parts = [
        f"generator=pesfit.codegen v{CODEGEN_VERSION}",
        f"prefix={t['prefix']}",
        f"natoms={t['natoms']}",
        f"n_variables={t['nv']}",
        f"n_basis={t['nout']}",
        f"n_nodes={t['nnodes']}",
        f"transform={t['kind']}",
        f"length_scale={t['length_scale']!r}",
        f"energy_scale={t['energy_scale']!r}",
    ]
    if t["r_min"] is not None:
        parts.append("r_min=on")
    if t["e_floor"] is not None:
        parts.append(f"e_floor={t['e_floor']!r}")
    if info:
        parts.append(_ascii(info).replace("\n", "; "))
    return "; ".join(parts)


def _wrap(text: str, width: int) -> list[str]:
    out = []
    for line in _ascii(text).splitlines() or [""]:
        line = line.rstrip()
        while len(line) > width:
            cut = line.rfind(" ", 0, width)
            cut = width if cut <= 0 else cut
            out.append(line[:cut].rstrip())
            line = line[cut:].lstrip()
        out.append(line)
    return out


def _transform_doc(t: dict) -> str:
    kind = t["kind"]
    if kind == "morse":
        return f"x = exp(-r/a), a = {float(t['param'][0])!r} (model length unit)"
    if kind == "inverse":
        return "x = 1/r"
    if kind == "reciprocal":
        return "x = r_e/r, one r_e per distance (model length unit)"
    if kind == "valence":
        return (f"valence variables around atom {int(t['val_center'])}: x = exp(-r/a) for its pairs, "
                f"a = {float(t['param'][0])!r} (model length unit); x = cos(angle at that atom) + 1/2 "
                "for the other pairs")
    return "x = r"


# -------------------------------------------------------------------- C
def _c_list(values, per_line, fmt) -> str:
    vals = [fmt(v) for v in values]
    rows = [", ".join(vals[i:i + per_line]) for i in range(0, len(vals), per_line)]
    return "    " + ",\n    ".join(rows)


def _c_int_array(name, values) -> str:
    values = np.asarray(values, dtype=np.int64)
    if len(values) == 0:  # C has no empty arrays; the loops never read this entry
        values = np.zeros(1, dtype=np.int64)
    return f"static const int32_t {name}[{len(values)}] = {{\n{_c_list(values.tolist(), 16, str)}\n}};\n"


def _c_double_array(name, values) -> str:
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        values = np.zeros(1)
    return f"static const double {name}[{len(values)}] = {{\n{_c_list(values.tolist(), 4, repr)}\n}};\n"


def _c_pair_array(name, values, bits) -> str:
    typ, suffix = ("uint32_t", "u") if bits == 16 else ("uint64_t", "u")
    values = list(values) or [0]
    if bits == 32:
        vals = [f"UINT64_C({v})" for v in values]
        per = 6
    else:
        vals = [f"{v}{suffix}" for v in values]
        per = 10
    return f"static const {typ} {name}[{len(values)}] = {{\n{_c_list(vals, per, str)}\n}};\n"


def _c_string(text: str) -> str:
    esc = text.replace("\\", "\\\\").replace('"', '\\"')
    chunks = [esc[i:i + 72] for i in range(0, len(esc), 72)] or [""]
    # never split an escape sequence
    fixed, carry = [], ""
    for c in chunks:
        c = carry + c
        carry = ""
        n_bs = len(c) - len(c.rstrip("\\"))
        if n_bs % 2:
            c, carry = c[:-1], "\\"
        fixed.append(c)
    if carry:
        fixed[-1] += carry
    return "\n".join(f'    "{c}"' for c in fixed)


def _c_comment(text: str) -> str:
    lines = _wrap(text.replace("*/", "* /"), 100)
    return "/*\n" + "\n".join((" * " + ln).rstrip() for ln in lines) + "\n */\n"


#: prototypes of the standard entry points (header side of C_ENTRY_POINTS), units @LUNIT@ / @EUNIT@
C_ENTRY_PROTOTYPES = r"""/* Energy of one geometry.  xyz[natoms*3] in @LUNIT@; *energy in @EUNIT@; *status as above. */
void @P@_energy(const double *xyz, double *energy, int *status);

/* Energy and gradient dE/dxyz (natoms*3, @EUNIT@/@LUNIT@; forces are -grad) of one geometry. */
void @P@_energy_gradient(const double *xyz, double *energy, double *grad, int *status);

/* n geometries: xyz[n*natoms*3], energy[n], status[n] (one status per geometry). */
void @P@_energy_batch(int n, const double *xyz, double *energy, int *status);

/* n geometries: xyz[n*natoms*3], energy[n], grad[n*natoms*3], status[n]. */
void @P@_energy_gradient_batch(int n, const double *xyz, double *energy, double *grad, int *status);

/* Copies the metadata string (NUL-terminated, truncated to len-1 characters) into buf;
   returns the full length of the string, so a caller can size buf. */
int @P@_info(char *buf, int len);
"""

_C_HEADER = r"""#ifndef @UP@_H_INCLUDED
#define @UP@_H_INCLUDED

#ifdef __cplusplus
extern "C" {
#endif

/* Number of atoms; xyz and grad hold natoms x 3 doubles, row-major (x, y, z of atom 0, then atom 1, ...). */
#define @UP@_NATOMS @NATOMS@

/* status values */
#define @UP@_STATUS_OK 0              /* ok */
#define @UP@_STATUS_OUT_OF_RANGE 1    /* a distance below r_min or energy below e_floor: value still returned */
#define @UP@_STATUS_NOT_FINITE 2      /* NaN/inf input or result: energy and gradient set to 0 */
#define @UP@_STATUS_COINCIDENT 3      /* two atoms closer than 1e-8 length units: energy and gradient set to 0 */
#define @UP@_STATUS_NO_MEMORY 4       /* work arrays could not be allocated: energy and gradient set to 0 */

/* Number of atoms the model expects. */
int @P@_natoms(void);

""" + C_ENTRY_PROTOTYPES + r"""
#ifdef __cplusplus
}
#endif

#endif /* @UP@_H_INCLUDED */
"""

#: the exported C entry points over ``static void run(int n, const double *xyz, double *energy,
#: double *grad, int *status)`` (``grad`` may be NULL) and ``static const char INFO[]``; shared with the
#: drivers of models made of several units (many-body, diabatic)
C_ENTRY_POINTS = r"""int @P@_natoms(void)
{
    return NATOMS;
}

void @P@_energy(const double *xyz, double *energy, int *status)
{
    run(1, xyz, energy, NULL, status);
}

void @P@_energy_gradient(const double *xyz, double *energy, double *grad, int *status)
{
    run(1, xyz, energy, grad, status);
}

void @P@_energy_batch(int n, const double *xyz, double *energy, int *status)
{
    run(n, xyz, energy, NULL, status);
}

void @P@_energy_gradient_batch(int n, const double *xyz, double *energy, double *grad, int *status)
{
    run(n, xyz, energy, grad, status);
}

int @P@_info(char *buf, int len)
{
    const int n = (int) (sizeof(INFO) - 1);
    if (buf != NULL && len > 0) {
        const int m = n < len - 1 ? n : len - 1;
        memcpy(buf, INFO, (size_t) m);
        buf[m] = '\0';
    }
    return n;
}
"""

#: the Fortran ``bind(C)`` entry points over ``run_batch(n, xyz, energy, grad, want_grad, status)`` and
#: ``info_text``, closing the module ``@P@_model``
F_ENTRY_POINTS = r"""  function @P@_natoms() result(n) &
      bind(C, name="@P@_natoms")
    integer(c_int) :: n
    n = natoms
  end function @P@_natoms

  subroutine @P@_energy(xyz, energy, status) &
      bind(C, name="@P@_energy")
    real(c_double), intent(in) :: xyz(3*natoms)
    real(c_double), intent(out) :: energy
    integer(c_int), intent(out) :: status
    real(dp) :: e(1), dummy(3*natoms, 1)
    integer(c_int) :: st(1)
    call run_batch(1, xyz, e, dummy, .false., st)
    energy = e(1)
    status = st(1)
  end subroutine @P@_energy

  subroutine @P@_energy_gradient(xyz, energy, grad, status) &
      bind(C, name="@P@_energy_gradient")
    real(c_double), intent(in) :: xyz(3*natoms)
    real(c_double), intent(out) :: energy
    real(c_double), intent(out) :: grad(3*natoms)
    integer(c_int), intent(out) :: status
    real(dp) :: e(1)
    integer(c_int) :: st(1)
    call run_batch(1, xyz, e, grad, .true., st)
    energy = e(1)
    status = st(1)
  end subroutine @P@_energy_gradient

  subroutine @P@_energy_batch(n, xyz, energy, status) &
      bind(C, name="@P@_energy_batch")
    integer(c_int), value, intent(in) :: n
    real(c_double), intent(in) :: xyz(3*natoms, *)
    real(c_double), intent(out) :: energy(*)
    integer(c_int), intent(out) :: status(*)
    real(dp) :: dummy(3*natoms, 1)
    if (n <= 0) return
    call run_batch(int(n), xyz, energy, dummy, .false., status)
  end subroutine @P@_energy_batch

  subroutine @P@_energy_gradient_batch(n, xyz, energy, grad, status) &
      bind(C, name="@P@_energy_gradient_batch")
    integer(c_int), value, intent(in) :: n
    real(c_double), intent(in) :: xyz(3*natoms, *)
    real(c_double), intent(out) :: energy(*)
    real(c_double), intent(out) :: grad(3*natoms, *)
    integer(c_int), intent(out) :: status(*)
    if (n <= 0) return
    call run_batch(int(n), xyz, energy, grad, .true., status)
  end subroutine @P@_energy_gradient_batch

  function @P@_info(buf, buflen) result(n) &
      bind(C, name="@P@_info")
    character(kind=c_char), intent(inout) :: buf(*)
    integer(c_int), value, intent(in) :: buflen
    integer(c_int) :: n
    integer :: i, m
    n = len(info_text, kind=c_int)
    if (buflen <= 0) return
    m = min(int(buflen) - 1, len(info_text))
    do i = 1, m
      buf(i) = info_text(i:i)
    end do
    buf(m + 1) = c_null_char
  end function @P@_info

end module @P@_model
"""

_C_BLOCK = r"""/* Reverse sweep over a block (adj = dE/dv, lane by lane as in eval_one).  A function of its
   own so that the restrict-qualified v and adj let the lane loops vectorize. */
static void backward_block(const double *restrict v, double *restrict adj)
{
    int i, j, l, t;

    for (i = 0; i < NNODES * LANES; ++i)
        adj[i] = 0.0;
    for (j = 0; j < NOUT; ++j) {
        const double w = WEIGHT[j];
        double *ao = adj + (size_t) OUTPUT[j] * LANES;
        for (l = 0; l < LANES; ++l)
            ao[l] += w;
    }
    for (j = NREST - 1; j >= 0; --j) {
        const int32_t a = NODE_A[j];
        const double *gi = adj + (size_t) (NVAR + NMONO + j) * LANES;
        double g[LANES];
        for (l = 0; l < LANES; ++l)
            g[l] = gi[l];
        if (a >= 0) {
            const int32_t b = NODE_B[j];
            const double sc = NODE_SCALE[j];
            double *aa = adj + (size_t) a * LANES, *ab = adj + (size_t) b * LANES;
            const double *va = v + (size_t) a * LANES, *vb = v + (size_t) b * LANES;
            double gs[LANES];
            for (l = 0; l < LANES; ++l)
                gs[l] = g[l] * sc;
            for (l = 0; l < LANES; ++l)
                aa[l] += gs[l] * vb[l];
            for (l = 0; l < LANES; ++l)
                ab[l] += gs[l] * va[l];
        }
        for (t = NODE_PTR[j]; t < NODE_PTR[j + 1]; ++t) {
            const double c = TERM_COEF[t];
            double *at = adj + (size_t) TERM_IDX[t] * LANES;
            for (l = 0; l < LANES; ++l)
                at[l] += c * g[l];
        }
    }
    for (j = NMONO - 1; j >= 0; --j) {
        const size_t ia = (size_t) (MONO_AB[j] & PAIR_MASK) * LANES, ib = (size_t) (MONO_AB[j] >> PAIR_SHIFT) * LANES;
        const double *gi = adj + (size_t) (NVAR + j) * LANES;
        double g[LANES];
        for (l = 0; l < LANES; ++l)
            g[l] = gi[l];
        for (l = 0; l < LANES; ++l)
            adj[ia + l] += g[l] * v[ib + l];
        for (l = 0; l < LANES; ++l)
            adj[ib + l] += g[l] * v[ia + l];
    }
}

/* LANES geometries at once: the same operations as eval_one, lane by lane, with every
   table entry loaded once per block and the arithmetic in short loops over the lanes
   (v[node*LANES + lane]).  work holds NWORK_BLOCK doubles. */
static void eval_block(const double *restrict xyz, double *restrict energy, double *restrict grad,
                       int *restrict status, double *restrict work)
{
    double *restrict v = work;
    double *restrict adj = work + NNODES * LANES;
    double *restrict u = adj + NNODES * LANES;   /* u[lane*3*NVAR + 3k + c] */
    double *restrict dx = u + 3 * NVAR * LANES;  /* dx[lane*DXW*NVAR + k] */
    double acc[LANES];
    int j, k, l, t;

    for (l = 0; l < LANES; ++l) {
        status[l] = prepare(xyz + (size_t) l * 3 * NATOMS, v + l, LANES, dx + l * DXW * NVAR,
                            grad != NULL ? u + l * 3 * NVAR : NULL);
        if (status[l] >= 2)
            for (k = 0; k < NVAR; ++k)
                v[k * LANES + l] = 0.5;  /* any finite value: the lane is discarded */
    }

    for (j = 0; j < NMONO; ++j) {
        const double *va = v + (size_t) (MONO_AB[j] & PAIR_MASK) * LANES;
        const double *vb = v + (size_t) (MONO_AB[j] >> PAIR_SHIFT) * LANES;
        double *vi = v + (size_t) (NVAR + j) * LANES;
        double s[LANES];
        for (l = 0; l < LANES; ++l)
            s[l] = va[l] * vb[l];
        for (l = 0; l < LANES; ++l)
            vi[l] = s[l];
    }
    for (j = 0; j < NREST; ++j) {
        const int32_t a = NODE_A[j];
        const double c0 = NODE_CONST[j];
        double *vi = v + (size_t) (NVAR + NMONO + j) * LANES;
        double s[LANES];
        for (l = 0; l < LANES; ++l)
            s[l] = c0;
        if (a >= 0) {
            const double sc = NODE_SCALE[j];
            const double *va = v + (size_t) a * LANES, *vb = v + (size_t) NODE_B[j] * LANES;
            for (l = 0; l < LANES; ++l)
                s[l] += sc * va[l] * vb[l];
        }
        for (t = NODE_PTR[j]; t < NODE_PTR[j + 1]; ++t) {
            const double c = TERM_COEF[t];
            const double *vt = v + (size_t) TERM_IDX[t] * LANES;
            for (l = 0; l < LANES; ++l)
                s[l] += c * vt[l];
        }
        for (l = 0; l < LANES; ++l)
            vi[l] = s[l];
    }

    for (l = 0; l < LANES; ++l)
        acc[l] = 0.0;
    for (j = 0; j < NOUT; ++j) {
        const double w = WEIGHT[j];
        const double *vo = v + (size_t) OUTPUT[j] * LANES;
        for (l = 0; l < LANES; ++l)
            acc[l] += w * vo[l];
    }
    for (l = 0; l < LANES; ++l) {
        double *gl = grad != NULL ? grad + (size_t) l * 3 * NATOMS : NULL;
        if (status[l] >= 2) {
            finish(energy + l, gl, status[l]);
            continue;
        }
        if (!isfinite(acc[l])) {
            status[l] = finish(energy + l, gl, 2);
            continue;
        }
@EFLOOR_CHECK_LANE@        energy[l] = acc[l] * ENERGY_SCALE;
    }
    if (grad == NULL)
        return;

    backward_block(v, adj);
    for (l = 0; l < LANES; ++l) {
        double *gl = grad + (size_t) l * 3 * NATOMS;
        if (status[l] >= 2)
            continue;
        if (chain(adj + l, LANES, dx + l * DXW * NVAR, u + l * 3 * NVAR, gl) != 0)
            status[l] = finish(energy + l, gl, 2);
    }
}

"""

_C_BODY = r"""#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "@P@.h"

#define NATOMS @NATOMS@
#define NVAR @NV@      /* distance variables, pairs i<j in order */
#define NMONO @NMONO@     /* monomial nodes NVAR .. NVAR+NMONO-1: v = v[a]*v[b] */
#define NNODES @NNODES@
#define NREST @NREST@     /* general nodes NVAR+NMONO .. NNODES-1 */
#define NOUT @NOUT@      /* basis functions */
#define LANES 8       /* geometries per block in the batch kernel (SIMD over geometries) */
#define DXW @DXW@       /* derivatives per variable: dx/dr_k (and, for bond angles, dx/dr_a, dx/dr_b) */
#define NWORK_ONE (2 * NNODES + (3 + DXW) * NVAR)
#define NWORK_BLOCK (2 * NNODES * LANES + (3 + DXW) * NVAR * LANES)

typedef @PAIRT@ pair_t;  /* packed operand pair a | b << PAIR_SHIFT */
#define PAIR_SHIFT @PAIRBITS@
#define PAIR_MASK @PAIRMASK@

static const double LENGTH_SCALE = @LSCALE@;  /* caller length -> model length */
static const double ENERGY_SCALE = @ESCALE@;  /* model energy -> caller energy */
static const double GRAD_SCALE = @GSCALE@;    /* ENERGY_SCALE * LENGTH_SCALE */
static const double R_COINCIDENT = @RCOINC@;  /* 1e-8 caller length units, in model units */
@TRANSFORM_CONST@@EFLOOR_CONST@
static const char INFO[] =
@INFO@;

@TABLES@
static int finish(double *energy, double *grad, int status)
{
    int i;
    *energy = 0.0;
    if (grad != NULL)
        for (i = 0; i < 3 * NATOMS; ++i)
            grad[i] = 0.0;
    return status;
}

@PAIR_LENGTH@/* Variables of one geometry: x[k*xs] = f(r_k), dx[k] = dx/dr and, if u != NULL, the unit
   vectors u[3k..3k+2] of R_i - R_j.  Returns 0, 1 (a distance below r_min), 2 (non-finite
   coordinates) or 3 (coincident atoms). */
static int prepare(const double *restrict xyz, double *restrict x, int xs, double *restrict dx,
                   double *restrict u)
{
    double R[3 * NATOMS];
    int i, k, status = 0;

    for (i = 0; i < 3 * NATOMS; ++i)
        if (!isfinite(xyz[i]))
            return 2;
    for (i = 0; i < 3 * NATOMS; ++i)
        R[i] = xyz[i] * LENGTH_SCALE;
    for (k = 0; k < NVAR; ++k) {
        const double *ri = R + 3 * PAIR_I[k];
        const double *rj = R + 3 * PAIR_J[k];
        const double d0 = ri[0] - rj[0], d1 = ri[1] - rj[1], d2 = ri[2] - rj[2];
        const double r = sqrt(d0 * d0 + d1 * d1 + d2 * d2);
        if (r < R_COINCIDENT)
            return 3;
@RMIN_CHECK@        if (u != NULL) {
            u[3 * k] = d0 / r;
            u[3 * k + 1] = d1 / r;
            u[3 * k + 2] = d2 / r;
        }
@TRANSFORM@    }
@TRANSFORM_POST@    return status;
}

/* Chain rule for one geometry from the variable adjoints adj[k*as] = dE/dx_k:
   dE/dR_i = sum_k dE/dx_k dx_k/dr_k (R_i - R_j)/r_k, the opposite for atom j.
   Returns 0, or 2 if the gradient is not finite. */
static int chain(const double *restrict adj, int as, const double *restrict dx, const double *restrict u,
                 double *restrict grad)
{
    int i, k;
    for (i = 0; i < 3 * NATOMS; ++i)
        grad[i] = 0.0;
    for (k = 0; k < NVAR; ++k) {
        const double g = adj[k * as] * dx[k];
        const int pi = 3 * PAIR_I[k], pj = 3 * PAIR_J[k];
        for (i = 0; i < 3; ++i) {
            grad[pi + i] += g * u[3 * k + i];
            grad[pj + i] -= g * u[3 * k + i];
        }
    }
@CHAIN_POST@    for (i = 0; i < 3 * NATOMS; ++i) {
        grad[i] *= GRAD_SCALE;
        if (!isfinite(grad[i]))
            return 2;
    }
    return 0;
}

/* One geometry; grad == NULL skips the gradient.  work holds NWORK_ONE doubles. */
static int eval_one(const double *restrict xyz, double *restrict energy, double *restrict grad,
                    double *restrict work)
{
    double *restrict v = work;
    double *restrict adj = work + NNODES;
    double *restrict u = work + 2 * NNODES;
    double *restrict dx = u + 3 * NVAR;
    int status, i, j, l;
    double e;
@LOCALS_ONE@
    status = prepare(xyz, v, 1, dx, grad != NULL ? u : NULL);
    if (status >= 2)
        return finish(energy, grad, status);

    /* monomials */
    for (j = 0; j < NMONO; ++j)
        v[NVAR + j] = v[MONO_AB[j] & PAIR_MASK] * v[MONO_AB[j] >> PAIR_SHIFT];

    /* polynomials */
    for (j = 0; j < NREST; ++j) {
        const int32_t a = NODE_A[j];
        double s = NODE_CONST[j];
        if (a >= 0)
            s += NODE_SCALE[j] * v[a] * v[NODE_B[j]];
        for (l = NODE_PTR[j]; l < NODE_PTR[j + 1]; ++l)
            s += TERM_COEF[l] * v[TERM_IDX[l]];
        v[NVAR + NMONO + j] = s;
    }

@ENERGY_ONE@    if (!isfinite(e))
        return finish(energy, grad, 2);
@EFLOOR_CHECK@    *energy = e * ENERGY_SCALE;
    if (grad == NULL)
        return status;

    /* reverse sweep: adj = dE/dv */
    for (i = 0; i < NNODES; ++i)
        adj[i] = 0.0;
@SEED_ONE@    for (j = NREST - 1; j >= 0; --j) {
        const double g = adj[NVAR + NMONO + j];
        const int32_t a = NODE_A[j];
        if (g == 0.0)
            continue;
        if (a >= 0) {
            const int32_t b = NODE_B[j];
            const double gs = g * NODE_SCALE[j];
            adj[a] += gs * v[b];
            adj[b] += gs * v[a];
        }
        for (l = NODE_PTR[j]; l < NODE_PTR[j + 1]; ++l)
            adj[TERM_IDX[l]] += TERM_COEF[l] * g;
    }
    for (j = NMONO - 1; j >= 0; --j) {
        const double g = adj[NVAR + j];
        const pair_t a = MONO_AB[j] & PAIR_MASK, b = MONO_AB[j] >> PAIR_SHIFT;
        adj[a] += g * v[b];
        adj[b] += g * v[a];
    }
    if (chain(adj, 1, dx, u, grad) != 0)
        return finish(energy, grad, 2);
    return status;
}

@BLOCK_FUNCS@static void run(int n, const double *xyz, double *energy, double *grad, int *status)
{
    double *work;
    int s;
    if (n <= 0)
        return;
    work = (double *) malloc(@WORK_SIZE@ * sizeof(double));
    if (work == NULL) {
        for (s = 0; s < n; ++s)
            status[s] = finish(energy + s, grad == NULL ? NULL : grad + (size_t) s * 3 * NATOMS, 4);
        return;
    }
@BLOCK_LOOP@    for (; s < n; ++s)
        status[s] = eval_one(xyz + (size_t) s * 3 * NATOMS, energy + s,
                             grad == NULL ? NULL : grad + (size_t) s * 3 * NATOMS, work);
    free(work);
}

""" + C_ENTRY_POINTS


def _subst(template: str, values: dict) -> str:
    return re.sub(r"@([A-Z_]+)@", lambda m: values[m.group(1)], template)


def _c_transform(t: dict) -> tuple[str, str]:
    kind = t["kind"]
    ind = "        "
    const = ""
    if kind == "morse":
        const = f"static const double MORSE_A = {float(t['param'][0])!r};  /* Morse range, model length unit */\n"
        code = f"{ind}x[k * xs] = exp(-r / MORSE_A);\n{ind}dx[k] = -x[k * xs] / MORSE_A;\n"
    elif kind == "inverse":
        code = f"{ind}x[k * xs] = 1.0 / r;\n{ind}dx[k] = -x[k * xs] * x[k * xs];\n"
    elif kind == "reciprocal":
        code = f"{ind}x[k * xs] = R_E[k] / r;\n{ind}dx[k] = -x[k * xs] / r;\n"
    elif kind == "valence":
        const = f"static const double MORSE_A = {float(t['param'][0])!r};  /* Morse range, model length unit */\n"
        code = (f"{ind}if (VAL_A[k] < 0) {{\n{ind}    x[k * xs] = exp(-r / MORSE_A);\n"
                f"{ind}    dx[k] = -x[k * xs] / MORSE_A;\n{ind}}}\n")
    else:
        code = f"{ind}x[k * xs] = r;\n{ind}dx[k] = 1.0;\n"
    return const, code


# Bond angles of the valence transform, after all distances: x_k = cos(theta) + 1/2 with
# cos(theta) = (ra^2 + rb^2 - rk^2) / (2 ra rb); dx[k], dx[NVAR + k], dx[2 NVAR + k] are its
# derivatives with respect to rk, ra and rb.
_C_VALENCE_POST = """    for (k = 0; k < NVAR; ++k) {
        if (VAL_A[k] >= 0) {
            const double ra = pair_length(R, VAL_A[k]), rb = pair_length(R, VAL_B[k]), rk = pair_length(R, k);
            const double c = (ra * ra + rb * rb - rk * rk) / (2.0 * ra * rb);
            x[k * xs] = c + 0.5;
            dx[k] = -rk / (ra * rb);
            dx[NVAR + k] = 1.0 / rb - c / ra;
            dx[2 * NVAR + k] = 1.0 / ra - c / rb;
        }
    }
"""

_C_VALENCE_CHAIN = """    for (k = 0; k < NVAR; ++k) {
        if (VAL_A[k] >= 0) {
            const int a = VAL_A[k], b = VAL_B[k];
            const double ga = adj[k * as] * dx[NVAR + k], gb = adj[k * as] * dx[2 * NVAR + k];
            const int pa = 3 * PAIR_I[a], qa = 3 * PAIR_J[a], pb = 3 * PAIR_I[b], qb = 3 * PAIR_J[b];
            for (i = 0; i < 3; ++i) {
                grad[pa + i] += ga * u[3 * a + i];
                grad[qa + i] -= ga * u[3 * a + i];
                grad[pb + i] += gb * u[3 * b + i];
                grad[qb + i] -= gb * u[3 * b + i];
            }
        }
    }
"""

_C_PAIR_LENGTH = """/* Length of pair k of the (scaled) coordinates R. */
static double pair_length(const double *R, int k)
{
    const double *ri = R + 3 * PAIR_I[k], *rj = R + 3 * PAIR_J[k];
    const double d0 = ri[0] - rj[0], d1 = ri[1] - rj[1], d2 = ri[2] - rj[2];
    return sqrt(d0 * d0 + d1 * d1 + d2 * d2);
}

"""


def c_source(program: Program, transform: DistanceTransform, weights, *, prefix: str = "pes",
             header_comment: str = "", length_scale: float = 1.0, energy_scale: float = 1.0,
             r_min=None, e_floor=None, info: str | None = None, head=None) -> tuple[str, str]:
    """C99 source and header that evaluate ``E = weights . p`` (or ``head(p)``) and its gradient.

    Parameters
    ----------
    program : Program
        The basis program (nodes, products, linear terms, outputs).
    transform : DistanceTransform
        Distance transform, parameters in the model's length unit.
    weights : ndarray of shape (n_outputs,) [model energy], or None with ``head``
        Coefficients of the basis functions.
    prefix : str
        Name prefix of every exported symbol and of the header (``prefix.h``).
    header_comment : str
        Text put at the top of both files (atom order, units, provenance).
    length_scale : float
        Caller length unit in model units (bohr -> Å: 0.529177210903).
    energy_scale : float
        Model energy unit in caller units (eV -> hartree: 1/27.211386245988).
    r_min : ndarray of shape (n_variables,) [model length], optional
        Shortest fitted distance per variable; shorter ones give status 1.
    e_floor : float [model energy], optional
        Lowest trusted energy; lower energies give status 1 (a hole).
    info : str, optional
        Extra text appended to the metadata string returned by ``prefix_info``.
    head : object, optional
        Energy as a function of the outputs (see the module docstring).

    Returns
    -------
    c_text, h_text : str
        Contents of ``prefix.c`` and ``prefix.h``.  Compiles without warnings
        under ``gcc -O2 -Wall -Wextra -std=c99``.
    """
    t = _tables(program, transform, weights, prefix, length_scale, energy_scale, r_min, e_floor, head)
    tconst, tcode = _c_transform(t)
    tables = [
        "/* pairs (i, j), i < j, in lexicographic order */\n",
        _c_int_array("PAIR_I", t["pair_i"]),
        _c_int_array("PAIR_J", t["pair_j"]),
        "/* monomial segment: v[NVAR+j] = v[a] * v[b], MONO_AB[j] = a | b << PAIR_SHIFT */\n",
        _c_pair_array("MONO_AB", t["mono_pairs"], t["pair_bits"]),
        "/* general nodes: v[NVAR+NMONO+j] = NODE_CONST[j]\n"
        "   + NODE_SCALE[j]*v[NODE_A[j]]*v[NODE_B[j]] (if NODE_A[j] >= 0)\n"
        "   + sum_{l = NODE_PTR[j]}^{NODE_PTR[j+1]-1} TERM_COEF[l]*v[TERM_IDX[l]] */\n",
        _c_int_array("NODE_A", t["ra"]),
        _c_int_array("NODE_B", t["rb"]),
        _c_double_array("NODE_SCALE", t["rscale"]),
        _c_double_array("NODE_CONST", t["rconst"]),
        _c_int_array("NODE_PTR", t["rptr"]),
        _c_int_array("TERM_IDX", t["idx"]),
        _c_double_array("TERM_COEF", t["coef"]),
    ]
    if head is None:
        tables += ["/* energy = sum_j WEIGHT[j] * v[OUTPUT[j]] (model energy unit) */\n",
                   _c_int_array("OUTPUT", t["out"]), _c_double_array("WEIGHT", t["w"])]
    else:
        tables += ["/* head inputs p[j] = v[OUTPUT[j]] */\n", _c_int_array("OUTPUT", t["out"])]
        for name, typ, values, note in head.tables():
            tables.append(f"/* {note} */\n" if note else "")
            tables.append(_c_int_array(name, values) if typ == "int" else _c_double_array(name, values))
        tables.append(f"/* energy = head(p): {_ascii(head.description)} */\n" + head.c_function().rstrip() + "\n")
    if t["kind"] == "reciprocal":
        tables += ["/* reference distances r_e (model length unit) */\n", _c_double_array("R_E", t["param"])]
    valence = t["kind"] == "valence"
    if valence:
        tables += ["/* bond angles: the pairs of the central atom with each atom of pair k (-1: k is such a pair) */\n",
                   _c_int_array("VAL_A", t["val_ab"][0]), _c_int_array("VAL_B", t["val_ab"][1])]
    rmin_check = ""
    if t["r_min"] is not None:
        tables += ["/* shortest fitted distance per variable (model length unit) */\n",
                   _c_double_array("R_MIN", t["r_min"])]
        rmin_check = "        if (r < R_MIN[k])\n            status = 1;\n"
    efloor_const, efloor_check, efloor_lane = "", "", ""
    if t["e_floor"] is not None:
        efloor_const = f"static const double E_FLOOR = {t['e_floor']!r};  /* lowest trusted energy, model unit */\n"
        efloor_check = "    if (e < E_FLOOR)\n        status = 1;\n"
        efloor_lane = "        if (acc[l] < E_FLOOR)\n            status[l] = 1;\n"
    up = prefix.upper()
    comment = _c_comment((header_comment.rstrip() + "\n\n" if header_comment else "")
                         + f"Generated by pesfit.codegen (v{CODEGEN_VERSION}) from the model's program table; "
                         "do not edit by hand, regenerate from the model file.\n"
                         f"Distance transform: {_transform_doc(t)}.")
    values = {
        "P": prefix, "UP": up, "NATOMS": str(t["natoms"]), "NV": str(t["nv"]), "NMONO": str(t["nmono"]),
        "NNODES": str(t["nnodes"]), "NREST": str(t["nrest"]), "NOUT": str(t["nout"]),
        "LSCALE": repr(t["length_scale"]), "ESCALE": repr(t["energy_scale"]), "GSCALE": repr(t["grad_scale"]),
        "RCOINC": repr(t["r_coincident"]), "TRANSFORM_CONST": tconst, "EFLOOR_CONST": efloor_const,
        "INFO": _c_string(_info_text(t, info)), "TABLES": "\n".join(tables), "RMIN_CHECK": rmin_check,
        "TRANSFORM": tcode, "EFLOOR_CHECK": efloor_check, "EFLOOR_CHECK_LANE": efloor_lane,
        "PAIRT": "uint32_t" if t["pair_bits"] == 16 else "uint64_t", "PAIRBITS": str(t["pair_bits"]),
        "PAIRMASK": "0xffffu" if t["pair_bits"] == 16 else "0xffffffffu",
        "LUNIT": "caller length units", "EUNIT": "caller energy units",
        "DXW": "3" if valence else "1", "TRANSFORM_POST": _C_VALENCE_POST if valence else "",
        "CHAIN_POST": _C_VALENCE_CHAIN if valence else "", "PAIR_LENGTH": _C_PAIR_LENGTH if valence else "",
    }
    if head is None:
        values.update(
            LOCALS_ONE="", BLOCK_FUNCS=_subst(_C_BLOCK, values), WORK_SIZE="(n >= LANES ? NWORK_BLOCK : NWORK_ONE)",
            ENERGY_ONE="    e = 0.0;\n    for (j = 0; j < NOUT; ++j)\n        e += WEIGHT[j] * v[OUTPUT[j]];\n",
            SEED_ONE="    for (j = 0; j < NOUT; ++j)\n        adj[OUTPUT[j]] += WEIGHT[j];\n",
            BLOCK_LOOP="    for (s = 0; s + LANES <= n; s += LANES)\n"
                       "        eval_block(xyz + (size_t) s * 3 * NATOMS, energy + s, "
                       "grad == NULL ? NULL : grad + (size_t) s * 3 * NATOMS,\n"
                       "                   status + s, work);\n")
    else:
        values.update(
            LOCALS_ONE="    double hp[NOUT], hbar[NOUT];\n", BLOCK_FUNCS="", WORK_SIZE="NWORK_ONE",
            ENERGY_ONE="    for (j = 0; j < NOUT; ++j)\n        hp[j] = v[OUTPUT[j]];\n"
                       "    e = head(hp, grad != NULL ? hbar : NULL);\n",
            SEED_ONE="    for (j = 0; j < NOUT; ++j)\n        adj[OUTPUT[j]] += hbar[j];\n",
            BLOCK_LOOP="    s = 0;\n")
    c_text = comment + "\n" + _subst(_C_BODY, values)
    h_text = comment + "\n" + _subst(_C_HEADER, values)
    return c_text, h_text


# -------------------------------------------------------------- Fortran
_F_LINES_PER_CHUNK = 200  # well below the 255 continuation lines Fortran 2008 allows


def _f_real(x: float) -> str:
    return repr(float(x)) + "_dp"


def _f_param_array(name, ftype, values, fmt, per_line) -> str:
    if len(values) == 0:  # as in C, one unused entry: no loop reads it, and gfortran warns on empty tables
        values = [0.0 if ftype == "real(dp)" else 0]
    n = len(values)
    vals = [fmt(v) for v in values]
    per_chunk = per_line * _F_LINES_PER_CHUNK

    def constructor(chunk):
        rows = [", ".join(chunk[i:i + per_line]) for i in range(0, len(chunk), per_line)]
        return "[ &\n      " + ", &\n      ".join(rows) + "]"

    if n <= per_chunk:
        return f"  {ftype}, parameter :: {name}(0:{n - 1}) = {constructor(vals)}\n"
    out, names = [], []
    for c, start in enumerate(range(0, n, per_chunk)):
        chunk = vals[start:start + per_chunk]
        cname = f"{name}_{c + 1}"
        names.append(cname)
        out.append(f"  {ftype}, parameter :: {cname}({len(chunk)}) = {constructor(chunk)}\n")
    rows = [", ".join(names[i:i + 8]) for i in range(0, len(names), 8)]
    out.append(f"  {ftype}, parameter :: {name}(0:{n - 1}) = [ &\n      " + ", &\n      ".join(rows) + "]\n")
    return "".join(out)


def _f_int_array(name, values) -> str:
    return _f_param_array(name, "integer(c_int32_t)", np.asarray(values, dtype=np.int64).tolist(), str, 12)


def _f_double_array(name, values) -> str:
    return _f_param_array(name, "real(dp)", np.asarray(values, dtype=np.float64).tolist(), _f_real, 4)


def _f_pair_array(name, values, bits) -> str:
    width = 2 * bits

    def lit(v):
        v = v - (1 << width) if v >= 1 << (width - 1) else v
        if v == -(1 << (width - 1)):
            return f"(-{(1 << (width - 1)) - 1}_pk - 1_pk)"
        return f"{v}_pk"

    return _f_param_array(name, "integer(pk)", list(values), lit, 5 if bits == 32 else 8)


def _f_string(text: str) -> str:
    esc = text.replace('"', '""')
    chunks = [esc[i:i + 80] for i in range(0, len(esc), 80)] or [""]
    fixed, carry = [], ""
    for c in chunks:  # never split a doubled quote
        c = carry + c
        carry = ""
        n_q = len(c) - len(c.rstrip('"'))
        if n_q % 2:
            c, carry = c[:-1], '"'
        fixed.append(c)
    if carry:
        fixed[-1] += carry
    return " // &\n      ".join(f'"{c}"' for c in fixed)


def _f_comment(text: str) -> str:
    return "".join(("! " + ln).rstrip() + "\n" for ln in _wrap(text, 110))


_F_BLOCK = r"""  ! Reverse sweep over a block of lanes geometries (adj = dE/dv), lane by lane as in eval_one.
  subroutine backward_block(v, adj)
    real(dp), intent(in) :: v(0:lanes-1, 0:nnodes-1)
    real(dp), intent(out) :: adj(0:lanes-1, 0:nnodes-1)
    real(dp) :: g(0:lanes-1), gs(0:lanes-1)
    integer :: j, t, a, b
    integer(pk) :: ab, pa, pb

    adj = 0.0_dp
    do j = 0, nout - 1
      adj(:, output(j)) = adj(:, output(j)) + weight(j)
    end do
    do j = nrest - 1, 0, -1
      g = adj(:, nvar + nmono + j)
      a = node_a(j)
      if (a >= 0) then
        b = node_b(j)
        gs = g * node_scale(j)
        adj(:, a) = adj(:, a) + gs * v(:, b)
        adj(:, b) = adj(:, b) + gs * v(:, a)
      end if
      do t = node_ptr(j), node_ptr(j + 1) - 1
        adj(:, term_idx(t)) = adj(:, term_idx(t)) + term_coef(t) * g
      end do
    end do
    do j = nmono - 1, 0, -1
      g = adj(:, nvar + j)
      ab = mono_ab(j)
      pa = iand(ab, pair_mask)
      pb = ishft(ab, -pair_shift)
      adj(:, pa) = adj(:, pa) + g * v(:, pb)
      adj(:, pb) = adj(:, pb) + g * v(:, pa)
    end do
  end subroutine backward_block

  ! lanes geometries at once: the operations of eval_one, lane by lane, with each table
  ! entry loaded once per block and the arithmetic in short array operations over the lanes.
  subroutine eval_block(xyz, energy, grad, want_grad, status, v, adj, u, dx)
    real(dp), intent(in) :: xyz(0:3*natoms-1, 0:lanes-1)
    real(dp), intent(out) :: energy(0:lanes-1)
    real(dp), intent(inout) :: grad(0:3*natoms-1, 0:lanes-1)
    logical, intent(in) :: want_grad
    integer(c_int), intent(out) :: status(0:lanes-1)
    real(dp), intent(inout) :: v(0:lanes-1, 0:nnodes-1), adj(0:lanes-1, 0:nnodes-1)
    real(dp), intent(inout) :: u(0:3*nvar-1, 0:lanes-1), dx(0:dxw*nvar-1, 0:lanes-1)
    real(dp) :: x(0:nvar-1), s(0:lanes-1), acc(0:lanes-1), adjx(0:nvar-1)
    integer :: j, l, t, a
    integer(pk) :: ab

    do l = 0, lanes - 1
      call prepare(xyz(:, l), x, dx(:, l), u(:, l), want_grad, status(l))
      v(l, 0:nvar-1) = x
    end do
    do j = 0, nmono - 1
      ab = mono_ab(j)
      s = v(:, iand(ab, pair_mask)) * v(:, ishft(ab, -pair_shift))
      v(:, nvar + j) = s
    end do
    do j = 0, nrest - 1
      a = node_a(j)
      s = node_const(j)
      if (a >= 0) s = s + (node_scale(j) * v(:, a)) * v(:, node_b(j))
      do t = node_ptr(j), node_ptr(j + 1) - 1
        s = s + term_coef(t) * v(:, term_idx(t))
      end do
      v(:, nvar + nmono + j) = s
    end do
    acc = 0.0_dp
    do j = 0, nout - 1
      acc = acc + weight(j) * v(:, output(j))
    end do
    do l = 0, lanes - 1
      energy(l) = 0.0_dp
      if (want_grad) grad(:, l) = 0.0_dp
      if (status(l) >= 2) cycle
      if (.not. ieee_is_finite(acc(l))) then
        status(l) = 2
        cycle
      end if
@EFLOOR_CHECK_LANE@      energy(l) = acc(l) * energy_scale
    end do
    if (.not. want_grad) return
    call backward_block(v, adj)
    do l = 0, lanes - 1
      if (status(l) >= 2) cycle
      adjx = adj(l, 0:nvar-1)
      call chain(adjx, dx(:, l), u(:, l), grad(:, l), status(l))
      if (status(l) == 2) energy(l) = 0.0_dp
    end do
  end subroutine eval_block

"""

_F_BLOCK_LOOP = """    do while (s + lanes <= n)
      if (want_grad) then
        call eval_block(xyz(0, s), energy(s), grad(0, s), .true., status(s), v, adj, u, dx)
      else
        call eval_block(xyz(0, s), energy(s), gdummy, .false., status(s), v, adj, u, dx)
      end if
      s = s + lanes
    end do
"""

_F_BODY = r"""module @P@_model
  ! bind(C) entry points (the same interface as the C export):
  !   integer(c_int) function @P@_natoms()
  !   subroutine @P@_energy(xyz, energy, status)
  !   subroutine @P@_energy_gradient(xyz, energy, grad, status)
  !   subroutine @P@_energy_batch(n, xyz, energy, status)              ! n by value
  !   subroutine @P@_energy_gradient_batch(n, xyz, energy, grad, status)
  !   integer(c_int) function @P@_info(buf, len)                       ! len by value
  ! xyz(3, natoms[, n]) and grad(3, natoms[, n]) in the caller's units (column-major here,
  ! the same memory as C's row-major xyz[natoms][3]); one status per geometry:
  ! 0 ok; 1 outside the fitted range (value returned); 2 non-finite input/result;
  ! 3 coincident atoms (r < 1e-8); 4 no memory.  For 2-4 energy and gradient are 0.
  use, intrinsic :: iso_c_binding, only: c_int, c_int32_t, c_int64_t, c_double, c_char, c_null_char
  use, intrinsic :: ieee_arithmetic, only: ieee_is_finite
  implicit none
  private
  public :: @P@_natoms
  public :: @P@_energy
  public :: @P@_energy_gradient
  public :: @P@_energy_batch
  public :: @P@_energy_gradient_batch
  public :: @P@_info

  integer, parameter :: dp = c_double
  integer, parameter :: pk = @PAIRKIND@  ! packed operand pairs
  integer(pk), parameter :: pair_mask = @PAIRMASK@_pk
  integer, parameter :: pair_shift = @PAIRBITS@
  integer, parameter :: natoms = @NATOMS@
  integer, parameter :: nvar = @NV@     ! distance variables, pairs i<j in order
  integer, parameter :: dxw = @DXW@      ! derivatives per variable: dx/dr_k (bond angles: also dx/dr_a, dx/dr_b)
  integer@NMONO_ATTR@ :: nmono = @NMONO@    ! monomial nodes nvar .. nvar+nmono-1: v = v(a)*v(b)
  integer, parameter :: nnodes = @NNODES@
  integer@NREST_ATTR@ :: nrest = @NREST@    ! general nodes nvar+nmono .. nnodes-1
  integer, parameter :: nout = @NOUT@     ! basis functions
  integer, parameter :: lanes = 8  ! geometries per block in the batch kernel (SIMD over geometries)

  real(dp), parameter :: length_scale = @LSCALE@  ! caller length -> model length
  real(dp), parameter :: energy_scale = @ESCALE@  ! model energy -> caller energy
  real(dp), parameter :: grad_scale = @GSCALE@    ! energy_scale * length_scale
  real(dp), parameter :: r_coincident = @RCOINC@  ! 1e-8 caller length units, in model units
@TRANSFORM_CONST@@EFLOOR_CONST@
  character(len=*), parameter :: info_text = &
      @INFO@

@TABLES@
contains

  ! Variables of one geometry: x(k) = f(r_k), dx(k) = dx/dr and, if want_u, the unit vectors
  ! u(3k:3k+2) of R_i - R_j.  status: 0, 1 (a distance below r_min), 2 (non-finite
  ! coordinates) or 3 (coincident atoms).
  subroutine prepare(xyz, x, dx, u, want_u, status)
    real(dp), intent(in) :: xyz(0:3*natoms-1)
    real(dp), intent(out) :: x(0:nvar-1), dx(0:dxw*nvar-1)
    real(dp), intent(inout) :: u(0:3*nvar-1)
    logical, intent(in) :: want_u
    integer(c_int), intent(out) :: status
    real(dp) :: rr(0:3*natoms-1), d0, d1, d2, r
    integer :: k, pi, pj
@PREPARE_LOCALS@
    status = 0
    x = 0.5_dp  ! any finite value where the geometry is rejected
    dx = 0.0_dp
    if (.not. all(ieee_is_finite(xyz))) then
      status = 2
      return
    end if
    rr = xyz * length_scale
    do k = 0, nvar - 1
      pi = 3 * pair_i(k)
      pj = 3 * pair_j(k)
      d0 = rr(pi) - rr(pj)
      d1 = rr(pi + 1) - rr(pj + 1)
      d2 = rr(pi + 2) - rr(pj + 2)
      r = sqrt((d0 * d0 + d1 * d1) + d2 * d2)
      if (r < r_coincident) then
        x = 0.5_dp
        status = 3
        return
      end if
@RMIN_CHECK@      if (want_u) then
        u(3 * k) = d0 / r
        u(3 * k + 1) = d1 / r
        u(3 * k + 2) = d2 / r
      end if
@TRANSFORM@    end do
@TRANSFORM_POST@  end subroutine prepare
@PAIR_LENGTH@

  ! Chain rule for one geometry from the variable adjoints adjx(k) = dE/dx_k:
  ! dE/dR_i = sum_k dE/dx_k dx_k/dr_k (R_i - R_j)/r_k, the opposite for atom j.
  ! A non-finite gradient gives status 2 and grad = 0.
  subroutine chain(adjx, dx, u, grad, status)
    real(dp), intent(in) :: adjx(0:nvar-1), dx(0:dxw*nvar-1), u(0:3*nvar-1)
    real(dp), intent(out) :: grad(0:3*natoms-1)
    integer(c_int), intent(inout) :: status
    real(dp) :: g
    integer :: i, k, pi, pj
@CHAIN_LOCALS@
    grad = 0.0_dp
    do k = 0, nvar - 1
      g = adjx(k) * dx(k)
      pi = 3 * pair_i(k)
      pj = 3 * pair_j(k)
      do i = 0, 2
        grad(pi + i) = grad(pi + i) + g * u(3 * k + i)
        grad(pj + i) = grad(pj + i) - g * u(3 * k + i)
      end do
    end do
@CHAIN_POST@    grad = grad * grad_scale
    if (.not. all(ieee_is_finite(grad))) then
      grad = 0.0_dp
      status = 2
    end if
  end subroutine chain

  ! One geometry (the Numba kernels' loop order).
  subroutine eval_one(xyz, energy, grad, want_grad, status, v, adj, u, dx)
    real(dp), intent(in) :: xyz(0:3*natoms-1)
    real(dp), intent(out) :: energy
    real(dp), intent(inout) :: grad(0:3*natoms-1)
    logical, intent(in) :: want_grad
    integer(c_int), intent(out) :: status
    real(dp), intent(inout) :: v(0:nnodes-1), adj(0:nnodes-1), u(0:3*nvar-1), dx(0:dxw*nvar-1)
    integer :: j, l, a, b
    integer(pk) :: ab, pa, pb
    real(dp) :: s, e, g, gs
@LOCALS_ONE@
    energy = 0.0_dp
    if (want_grad) grad = 0.0_dp
    call prepare(xyz, v(0:nvar-1), dx, u, want_grad, status)
    if (status >= 2) return

    ! monomials
    do j = 0, nmono - 1
      ab = mono_ab(j)
      v(nvar + j) = v(iand(ab, pair_mask)) * v(ishft(ab, -pair_shift))
    end do

    ! polynomials
    do j = 0, nrest - 1
      a = node_a(j)
      s = node_const(j)
      if (a >= 0) s = s + (node_scale(j) * v(a)) * v(node_b(j))
      do l = node_ptr(j), node_ptr(j + 1) - 1
        s = s + term_coef(l) * v(term_idx(l))
      end do
      v(nvar + nmono + j) = s
    end do

@ENERGY_ONE@    if (.not. ieee_is_finite(e)) then
      status = 2
      return
    end if
@EFLOOR_CHECK@    if (want_grad) then
      ! reverse sweep: adj = dE/dv
      adj = 0.0_dp
@SEED_ONE@      do j = nrest - 1, 0, -1
        g = adj(nvar + nmono + j)
        if (g == 0.0_dp) cycle
        a = node_a(j)
        if (a >= 0) then
          b = node_b(j)
          gs = g * node_scale(j)
          adj(a) = adj(a) + gs * v(b)
          adj(b) = adj(b) + gs * v(a)
        end if
        do l = node_ptr(j), node_ptr(j + 1) - 1
          adj(term_idx(l)) = adj(term_idx(l)) + term_coef(l) * g
        end do
      end do
      do j = nmono - 1, 0, -1
        g = adj(nvar + j)
        ab = mono_ab(j)
        pa = iand(ab, pair_mask)
        pb = ishft(ab, -pair_shift)
        adj(pa) = adj(pa) + g * v(pb)
        adj(pb) = adj(pb) + g * v(pa)
      end do
      call chain(adj(0:nvar-1), dx, u, grad, status)
      if (status == 2) return
    end if
    energy = e * energy_scale
  end subroutine eval_one

@BLOCK_FUNCS@  subroutine run_batch(n, xyz, energy, grad, want_grad, status)
    integer, intent(in) :: n
    real(dp), intent(in) :: xyz(0:3*natoms-1, 0:n-1)
    real(dp), intent(out) :: energy(0:n-1)
    real(dp), intent(inout) :: grad(0:3*natoms-1, 0:*)
    logical, intent(in) :: want_grad
    integer(c_int), intent(out) :: status(0:n-1)
    real(dp), allocatable :: v(:), adj(:), u(:), dx(:), gdummy(:, :)
    integer :: s, ierr, nl

    nl = 1
@BLOCK_LANES@
    allocate(v(0:nl*nnodes-1), adj(0:nl*nnodes-1), u(0:nl*3*nvar-1), dx(0:nl*dxw*nvar-1), &
             gdummy(0:3*natoms-1, 0:nl-1), stat=ierr)
    if (ierr /= 0) then
      energy = 0.0_dp
      status = 4
      if (want_grad) grad(:, 0:n-1) = 0.0_dp
      return
    end if
    s = 0
@BLOCK_LOOP@    do while (s < n)
      if (want_grad) then
        call eval_one(xyz(:, s), energy(s), grad(:, s), .true., status(s), v, adj, u, dx)
      else
        call eval_one(xyz(:, s), energy(s), gdummy(:, 0), .false., status(s), v, adj, u, dx)
      end if
      s = s + 1
    end do
  end subroutine run_batch

""" + F_ENTRY_POINTS


def _f_transform(t: dict) -> tuple[str, str]:
    kind = t["kind"]
    ind = "      "
    const = ""
    if kind == "morse":
        const = f"  real(dp), parameter :: morse_a = {_f_real(t['param'][0])}  ! Morse range, model length unit\n"
        code = f"{ind}x(k) = exp(-r / morse_a)\n{ind}dx(k) = -x(k) / morse_a\n"
    elif kind == "inverse":
        code = f"{ind}x(k) = 1.0_dp / r\n{ind}dx(k) = -x(k) * x(k)\n"
    elif kind == "reciprocal":
        code = f"{ind}x(k) = r_e(k) / r\n{ind}dx(k) = -x(k) / r\n"
    elif kind == "valence":
        const = f"  real(dp), parameter :: morse_a = {_f_real(t['param'][0])}  ! Morse range, model length unit\n"
        code = (f"{ind}if (val_a(k) < 0) then\n{ind}  x(k) = exp(-r / morse_a)\n"
                f"{ind}  dx(k) = -x(k) / morse_a\n{ind}end if\n")
    else:
        code = f"{ind}x(k) = r\n{ind}dx(k) = 1.0_dp\n"
    return const, code


# Bond angles of the valence transform (see _C_VALENCE_POST).
_F_VALENCE_POST = """    do k = 0, nvar - 1
      if (val_a(k) >= 0) then
        ra = pair_length(rr, int(val_a(k)))
        rb = pair_length(rr, int(val_b(k)))
        rk = pair_length(rr, k)
        c = (ra * ra + rb * rb - rk * rk) / (2.0_dp * ra * rb)
        x(k) = c + 0.5_dp
        dx(k) = -rk / (ra * rb)
        dx(nvar + k) = 1.0_dp / rb - c / ra
        dx(2 * nvar + k) = 1.0_dp / ra - c / rb
      end if
    end do
"""

_F_VALENCE_CHAIN = """    do k = 0, nvar - 1
      if (val_a(k) >= 0) then
        ga = adjx(k) * dx(nvar + k)
        gb = adjx(k) * dx(2 * nvar + k)
        pa = 3 * pair_i(val_a(k))
        qa = 3 * pair_j(val_a(k))
        pb = 3 * pair_i(val_b(k))
        qb = 3 * pair_j(val_b(k))
        do i = 0, 2
          grad(pa + i) = grad(pa + i) + ga * u(3 * val_a(k) + i)
          grad(qa + i) = grad(qa + i) - ga * u(3 * val_a(k) + i)
          grad(pb + i) = grad(pb + i) + gb * u(3 * val_b(k) + i)
          grad(qb + i) = grad(qb + i) - gb * u(3 * val_b(k) + i)
        end do
      end if
    end do
"""

_F_PAIR_LENGTH = """
  ! Length of pair k of the (scaled) coordinates rr.
  pure function pair_length(rr, k) result(r)
    real(dp), intent(in) :: rr(0:3*natoms-1)
    integer, intent(in) :: k
    real(dp) :: r, d0, d1, d2
    d0 = rr(3 * pair_i(k)) - rr(3 * pair_j(k))
    d1 = rr(3 * pair_i(k) + 1) - rr(3 * pair_j(k) + 1)
    d2 = rr(3 * pair_i(k) + 2) - rr(3 * pair_j(k) + 2)
    r = sqrt((d0 * d0 + d1 * d1) + d2 * d2)
  end function pair_length
"""


def fortran_source(program: Program, transform: DistanceTransform, weights, *, prefix: str = "pes",
                   header_comment: str = "", length_scale: float = 1.0, energy_scale: float = 1.0,
                   r_min=None, e_floor=None, info: str | None = None, head=None) -> str:
    """Fortran 2008 module (``bind(C)`` entry points) evaluating ``E = weights . p``.

    Same parameters and entry points as :func:`c_source`; the module is
    ``prefix_model`` and every entry point has the C name of the C export,
    so a program written against ``prefix.h`` links either library.
    Compiles without warnings under ``gfortran -O2 -Wall``.

    Returns
    -------
    str
        Contents of ``prefix.f90``.
    """
    t = _tables(program, transform, weights, prefix, length_scale, energy_scale, r_min, e_floor, head)
    tconst, tcode = _f_transform(t)
    tables = [
        "  ! pairs (i, j), i < j, in lexicographic order (0-based atoms)\n",
        _f_int_array("pair_i", t["pair_i"]),
        _f_int_array("pair_j", t["pair_j"]),
        "  ! monomial segment: v(nvar+j) = v(a) * v(b), mono_ab(j) = a + b * 2**pair_shift (two's complement)\n",
        _f_pair_array("mono_ab", t["mono_pairs"], t["pair_bits"]),
        "  ! general nodes: v(nvar+nmono+j) = node_const(j) + node_scale(j)*v(node_a(j))*v(node_b(j))\n"
        "  !   (if node_a(j) >= 0) + sum_{l=node_ptr(j)}^{node_ptr(j+1)-1} term_coef(l)*v(term_idx(l))\n",
        _f_int_array("node_a", t["ra"]),
        _f_int_array("node_b", t["rb"]),
        _f_double_array("node_scale", t["rscale"]),
        _f_double_array("node_const", t["rconst"]),
        _f_int_array("node_ptr", t["rptr"]),
        _f_int_array("term_idx", t["idx"]),
        _f_double_array("term_coef", t["coef"]),
    ]
    head_code = ""
    if head is None:
        tables += ["  ! energy = sum_j weight(j) * v(output(j)) (model energy unit)\n",
                   _f_int_array("output", t["out"]), _f_double_array("weight", t["w"])]
    else:
        tables += ["  ! head inputs p(j) = v(output(j))\n", _f_int_array("output", t["out"])]
        for name, typ, values, note in head.tables():
            tables.append(f"  ! {note}\n" if note else "")
            tables.append(_f_int_array(name, values) if typ == "int" else _f_double_array(name, values))
        head_code = (f"  ! energy = head(p): {_ascii(head.description)}\n" + head.fortran_function().rstrip()
                     + "\n\n")
    if t["kind"] == "reciprocal":
        tables += ["  ! reference distances r_e (model length unit)\n", _f_double_array("r_e", t["param"])]
    valence = t["kind"] == "valence"
    if valence:
        tables += ["  ! bond angles: the pairs of the central atom with each atom of pair k (-1: k is such a pair)\n",
                   _f_int_array("val_a", t["val_ab"][0]), _f_int_array("val_b", t["val_ab"][1])]
    rmin_check = ""
    if t["r_min"] is not None:
        tables += ["  ! shortest fitted distance per variable (model length unit)\n",
                   _f_double_array("r_min", t["r_min"])]
        rmin_check = "      if (r < r_min(k)) status = 1\n"
    efloor_const, efloor_check, efloor_lane = "", "", ""
    if t["e_floor"] is not None:
        efloor_const = (f"  real(dp), parameter :: e_floor = {_f_real(t['e_floor'])}"
                        "  ! lowest trusted energy, model unit\n")
        efloor_check = "    if (e < e_floor) status = 1\n"
        efloor_lane = "      if (acc(l) < e_floor) status(l) = 1\n"
    comment = _f_comment((header_comment.rstrip() + "\n\n" if header_comment else "")
                         + f"Generated by pesfit.codegen (v{CODEGEN_VERSION}) from the model's program table; "
                         "do not edit by hand, regenerate from the model file.\n"
                         f"Distance transform: {_transform_doc(t)}.")
    values = {
        "P": prefix, "NATOMS": str(t["natoms"]), "NV": str(t["nv"]), "NMONO": str(t["nmono"]),
        "NNODES": str(t["nnodes"] + (0 if t["nmono"] and t["nrest"] else 1)), "NREST": str(t["nrest"]), "NOUT": str(t["nout"]),
        "LSCALE": _f_real(t["length_scale"]), "ESCALE": _f_real(t["energy_scale"]),
        "GSCALE": _f_real(t["grad_scale"]), "RCOINC": _f_real(t["r_coincident"]),
        "TRANSFORM_CONST": tconst, "EFLOOR_CONST": efloor_const, "INFO": _f_string(_info_text(t, info)),
        "PAIRKIND": "c_int32_t" if t["pair_bits"] == 16 else "c_int64_t", "PAIRBITS": str(t["pair_bits"]),
        "PAIRMASK": str((1 << t["pair_bits"]) - 1),
        "TABLES": "".join(tables), "RMIN_CHECK": rmin_check, "TRANSFORM": tcode, "EFLOOR_CHECK": efloor_check,
        "EFLOOR_CHECK_LANE": efloor_lane, "DXW": "3" if valence else "1",
        "TRANSFORM_POST": _F_VALENCE_POST if valence else "", "CHAIN_POST": _F_VALENCE_CHAIN if valence else "",
        "PAIR_LENGTH": _F_PAIR_LENGTH if valence else "",
        "PREPARE_LOCALS": "    real(dp) :: ra, rb, rk, c\n" if valence else "",
        "CHAIN_LOCALS": "    real(dp) :: ga, gb\n    integer :: pa, qa, pb, qb\n" if valence else "",
        # an empty segment is a variable, not a parameter, and one spare node is allocated: gfortran
        # warns on constant zero-trip loops and on their (never executed) references past the end
        "NMONO_ATTR": ", parameter" if t["nmono"] else "", "NREST_ATTR": ", parameter" if t["nrest"] else "",
    }
    if head is None:
        values.update(
            LOCALS_ONE="", BLOCK_FUNCS=_subst(_F_BLOCK, values), BLOCK_LANES="    if (n >= lanes) nl = lanes",
            ENERGY_ONE="    e = 0.0_dp\n    do j = 0, nout - 1\n      e = e + weight(j) * v(output(j))\n    end do\n",
            SEED_ONE="      do j = 0, nout - 1\n        adj(output(j)) = adj(output(j)) + weight(j)\n      end do\n",
            BLOCK_LOOP=_F_BLOCK_LOOP)
    else:
        values.update(
            LOCALS_ONE="    real(dp) :: hp(0:nout-1), hbar(0:nout-1)\n", BLOCK_FUNCS=head_code, BLOCK_LANES="",
            ENERGY_ONE="    do j = 0, nout - 1\n      hp(j) = v(output(j))\n    end do\n"
                       "    call head(hp, e, hbar, want_grad)\n",
            SEED_ONE="      do j = 0, nout - 1\n        adj(output(j)) = adj(output(j)) + hbar(j)\n      end do\n",
            BLOCK_LOOP="")
    return comment + "\n" + _subst(_F_BODY, values)
