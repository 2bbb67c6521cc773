"""C and Fortran export of diabatic models (:class:`~pesfit.models.diabatic.DiabaticModel`).

A model of ``ns`` states is exported as one library with the diabatic
matrix, the adiabatic states and, for the standard tools, the standard
interface of :mod:`invariants.codegen` for the lowest adiabatic state.  It is
linked from

* one codegen unit per term ``t`` of each element ``U_ij``,
  ``PREFIX_u<i><j>_t<t>.c|f90`` (prefix ``PREFIX_u<i><j>_t<t>``, states
  counted from 1; ``u<i>_<j>`` from 10 states on): the polynomial factor
  ``s_t = weights . p(x)`` of the term, in the caller's units (bohr in,
  hartree out), with the model's ``r_min``;
* the driver ``PREFIX.c|f90``, printed here.  It computes the pseudoscalars
  ``Psi_p = sum_q s_q f(V_q)`` (signed volumes ``V_q`` of atom quadruples in
  Å^3, ``f = tanh(V / v0)`` or ``f(V) = V``) and their gradients, and sums
  ``U_ij = sum_t M_t s_t`` with ``M_t = prod_p Psi_p^a_tp`` and
  ``dU_ij = sum_t M_t ds_t + s_t dM_t``, in the order of the Python model.
  The adiabatic energies are the eigenvalues of ``U`` from a cyclic Jacobi
  method (no LAPACK), sorted ascending; each state vector ``v_k`` gets the
  model's sign convention (its largest-magnitude component positive, ties:
  the lowest index); ``G_k = v_k^T dU v_k`` and the nonadiabatic couplings
  ``d_kl = h_kl D / (D^2 + eps^2)``, ``h_kl = v_k^T dU v_l``,
  ``D = E_l - E_k``, ``eps`` = the model's ``degeneracy_eps_eV`` (1e-8 eV)
  in hartree, antisymmetric.

Entry points (C names; the Fortran module ``PREFIX_model`` has the same
``bind(C)`` names, ``dU``, ``G`` and ``D`` are ``optional`` there)::

    int  P_nstates(void);
    void P_diabatic(const double *xyz, double *U, double *dU, int *status);
    void P_adiabatic(const double *xyz, double *E, double *G, double *D, int *status);

with ``U[ns*ns]`` (row-major) [hartree], ``dU[((i*ns + j)*natoms + a)*3 + c]``
[hartree/bohr], ``E[ns]`` [hartree], ``G[(k*natoms + a)*3 + c]``
[hartree/bohr], ``D[((k*ns + l)*natoms + a)*3 + c] = <k|d/dxyz l>`` [1/bohr];
``dU``, ``G``, ``D`` may be NULL.  ``P_energy``, ``P_energy_gradient`` and
their batch forms return the lowest adiabatic state, so the example driver,
``GETPOT``, the RPMD adapter and the ctypes loader work unchanged.  The status
is the worst of the units' (codegen's ``STATUS_CODES``); 2-4 set every output
to 0.

``check=True`` (:func:`check_diabatic`) compares ``U``, ``dU``, the adiabatic
energies (also through ``P_energy_gradient_batch``), gradients and couplings
with Python.  Gradients and couplings are compared only at structures whose
smallest adiabatic gap exceeds ``GAP_RTOL`` times the largest ``|U_ij|``
(closer states, and so their vectors, are ill-conditioned), couplings also
only where every state vector's largest ``|component|`` exceeds the next by
``PHASE_MARGIN`` (else rounding may decide the sign convention differently).
"""
from __future__ import annotations

import ctypes
import math
import re

import numpy as np

from invariants import codegen
from invariants.program import Program
from invariants.transforms import DistanceTransform

from .export import unit_files
from .units import energy_factor, length_factor

__all__ = ["read_diabatic_spec", "diabatic_lines", "unit_names", "diabatic_sources", "check_diabatic",
           "GAP_RTOL", "PHASE_MARGIN"]

#: gradients and couplings are checked where the smallest gap exceeds this fraction of max |U_ij|
GAP_RTOL = 1e-6
#: couplings are checked where each state's largest |component| exceeds the next by this much
PHASE_MARGIN = 1e-6
_DAMPINGS = {"tanh": 1, "none": 0}
_REQUIRED = ("n_states", "elements", "pseudoscalars", "transform", "symbols", "length_unit", "energy_unit",
             "energy_zero_eV", "checksum", "training_rmse_meV", "r_min", "kind", "degeneracy_eps_eV", "predict",
             "predict_adiabatic")


# ------------------------------------------------------------------ spec
def _lowest_state(predict):
    """``predict`` (R -> energies (n, ns), gradients (n, ns, N, 3)) restricted to the lowest state."""
    def lowest(R):
        E, G = predict(R)
        return np.asarray(E)[:, 0], np.asarray(G)[:, 0]

    return lowest


def _check_pseudoscalar(k: int, ps: dict, n_atoms: int) -> dict:
    """Pseudoscalar ``k`` of the spec (``Pseudoscalar.to_dict()`` fields), checked, as plain lists."""
    try:
        quads = [tuple(int(a) for a in q) for q in ps["quadruples"]]
        signs = [int(s) for s in ps["signs"]]
        damping, scale = str(ps["damping"]), float(ps["scale"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"pseudoscalar {k + 1} of the export spec is malformed ({exc!r})") from None
    if not quads or len(quads) != len(signs) or any(s not in (-1, 1) for s in signs):
        raise ValueError(f"pseudoscalar {k + 1} needs one sign (+1 or -1) per atom quadruple")
    if any(len(q) != 4 or len(set(q)) != 4 or min(q) < 0 or max(q) >= n_atoms for q in quads):
        raise ValueError(f"pseudoscalar {k + 1} has a quadruple that is not 4 distinct atoms of {n_atoms}")
    if damping not in _DAMPINGS or not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"pseudoscalar {k + 1}: damping must be one of {sorted(_DAMPINGS)} with a positive scale, "
                         f"got {damping!r}, {scale!r}")
    return {"quadruples": quads, "signs": signs, "damping": damping, "scale": scale}


def _label(i: int, j: int, n_states: int) -> str:
    return f"u{i + 1}{j + 1}" if n_states < 10 else f"u{i + 1}_{j + 1}"


def read_diabatic_spec(spec: dict) -> dict:
    """The checked export spec of a diabatic model, cut into one codegen unit per term.

    Returns a copy of ``spec`` with unit scales, the lowest adiabatic state as
    ``predict`` (what ``PREFIX_energy*`` return) and ``diabatic`` =
    ``{"n_states", "irreps", "pseudoscalars", "terms", "eps_eV",
    "predict_adiabatic"}``; each term has ``i``, ``j``, ``term`` (its index
    in the element), ``label`` (``u12_t0``: the unit is ``PREFIX_u12_t0``),
    ``powers``, ``program`` and ``weights`` [eV].
    """
    missing = [k for k in _REQUIRED if k not in spec]
    if missing:
        raise ValueError(f"diabatic export spec lacks fields {missing}")
    symbols = [str(s) for s in spec["symbols"]]
    if not all(re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", s) for s in symbols):
        raise ValueError(f"atom symbols must be letters/digits, got {symbols}")
    if not isinstance(spec["transform"], DistanceTransform):
        raise TypeError("export spec 'transform' must be an invariants DistanceTransform")
    n_atoms = len(symbols)
    nv = n_atoms * (n_atoms - 1) // 2
    ns = int(spec["n_states"])
    if ns < 2:
        raise ValueError(f"a diabatic model has at least 2 states, the spec says {ns}")
    pseudoscalars = [_check_pseudoscalar(k, p, n_atoms) for k, p in enumerate(spec["pseudoscalars"])]
    pairs = [(i, j) for i in range(ns) for j in range(i, ns)]
    if [(int(e["i"]), int(e["j"])) for e in spec["elements"]] != pairs:
        raise ValueError(f"the elements of the diabatic spec are not the upper triangle of a {ns}x{ns} matrix, "
                         "row by row")
    terms = []
    for e in spec["elements"]:
        i, j = int(e["i"]), int(e["j"])
        where = f"element U{i + 1}{j + 1}"
        if not e["terms"]:
            raise ValueError(f"{where} has no terms")
        for k, t in enumerate(e["terms"]):
            program = t["program"]
            if not isinstance(program, Program):
                raise TypeError(f"{where}, term {k}: 'program' must be an invariants Program")
            if program.n_variables != nv:
                raise ValueError(f"{where}, term {k}: the program has {program.n_variables} variables, expected "
                                 f"{nv} for {n_atoms} atoms")
            powers = [int(a) for a in t["powers"]]
            if len(powers) != len(pseudoscalars) or min(powers, default=0) < 0:
                raise ValueError(f"{where}, term {k}: powers {powers} must be one exponent >= 0 per pseudoscalar "
                                 f"({len(pseudoscalars)})")
            terms.append({"i": i, "j": j, "term": k, "label": f"{_label(i, j, ns)}_t{k}", "powers": powers,
                          "program": program, "weights": np.asarray(t["weights"], dtype=np.float64)})
    eps = float(spec["degeneracy_eps_eV"])
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"degeneracy_eps_eV must be a finite number >= 0, got {eps!r}")
    out = dict(spec)
    out.update(symbols=symbols, predict=_lowest_state(spec["predict"]),
               r_min=None if spec["r_min"] is None else np.asarray(spec["r_min"], dtype=np.float64),
               length_scale=length_factor("bohr", spec["length_unit"]),
               energy_scale=energy_factor(spec["energy_unit"], "hartree"),
               diabatic={"n_states": ns, "irreps": [str(s) for s in spec.get("irreps", [])],
                         "pseudoscalars": pseudoscalars, "terms": terms, "eps_eV": eps,
                         "predict_adiabatic": spec["predict_adiabatic"]})
    return out


def unit_names(spec: dict, prefix: str) -> list[str]:
    """File stems (and symbol prefixes) of the term units, in term order."""
    return [f"{prefix}_{t['label']}" for t in spec["diabatic"]["terms"]]


def _monomial_text(powers) -> str:
    parts = [f"Psi{p + 1}" + (f"^{a}" if a > 1 else "") for p, a in enumerate(powers) if a]
    return " ".join(parts) or "1"


def diabatic_lines(spec: dict, prefix: str) -> list[str]:
    """Lines of the header comment describing the matrix (each under 100 characters)."""
    dia = spec["diabatic"]
    ns = dia["n_states"]
    irreps = f" ({', '.join(dia['irreps'])})" if dia["irreps"] else ""
    lines = [f"diabatic matrix of {ns} states{irreps}: U_ij = sum_t M_t s_t; s_t = weights . p(x), one unit",
             f"  per term ({spec['transform'].kind} transform), M_t a monomial in the pseudoscalars:"]
    for t in dia["terms"]:
        lines.append(f"  U{t['i'] + 1}{t['j'] + 1}: {prefix}_{t['label']}, M = {_monomial_text(t['powers'])}, "
                     f"{t['program'].n_outputs} functions, {t['program'].n_nodes} nodes")
    for p, ps in enumerate(dia["pseudoscalars"]):
        f = f"tanh(V / {ps['scale']:g} A^3)" if ps["damping"] == "tanh" else "V"
        quads = ("= " + " ".join(f"{'+' if s > 0 else '-'}({','.join(map(str, q))})"
                                 for q, s in zip(ps["quadruples"], ps["signs"]))
                 if len(ps["quadruples"]) <= 4 else f"over {len(ps['quadruples'])} signed atom quadruples")
        lines.append(f"  Psi{p + 1} = sum of s f(V_abcd), s abcd {quads}; f(V) = {f}")
    if dia["pseudoscalars"]:
        lines.append("    V_abcd = (R_b - R_a) . ((R_c - R_a) x (R_d - R_a)) in A^3 (atoms from 0)")
    lines += ["adiabatic states: eigenvalues of U (cyclic Jacobi), ascending; each state vector has its",
              "  largest-magnitude component positive (ties: lowest index); couplings",
              f"  d_kl = h_kl D / (D^2 + eps^2), D = E_l - E_k, eps = {dia['eps_eV']:g} eV",
              f"{prefix}_energy, {prefix}_energy_gradient and the batch forms: the LOWEST adiabatic state;",
              f"  {prefix}_diabatic and {prefix}_adiabatic give all states"]
    return lines


# -------------------------------------------------------------------- C
_C_HEADER = r"""#ifndef @UP@_H_INCLUDED
#define @UP@_H_INCLUDED

#ifdef __cplusplus
extern "C" {
#endif

/* Number of atoms; xyz and grad hold natoms x 3 doubles, row-major (x, y, z of atom 0, then atom 1, ...). */
#define @UP@_NATOMS @NATOMS@
/* Number of electronic states. */
#define @UP@_NSTATES @NSTATES@

/* status values */
#define @UP@_STATUS_OK 0              /* ok */
#define @UP@_STATUS_OUT_OF_RANGE 1    /* a distance below r_min: values still returned */
#define @UP@_STATUS_NOT_FINITE 2      /* NaN/inf input or result: every output set to 0 */
#define @UP@_STATUS_COINCIDENT 3      /* two atoms closer than 1e-8 bohr: every output set to 0 */
#define @UP@_STATUS_NO_MEMORY 4       /* work arrays could not be allocated: every output set to 0 */

/* Number of atoms the model expects. */
int @P@_natoms(void);

/* Number of electronic states. */
int @P@_nstates(void);

/* Diabatic matrix of one geometry xyz[natoms*3] (bohr): U[nstates*nstates] (row-major, symmetric) in
   hartree and, if dU != NULL, dU[((i*nstates + j)*natoms + a)*3 + c] = dU_ij/dxyz[3a+c] in hartree/bohr. */
void @P@_diabatic(const double *xyz, double *U, double *dU, int *status);

/* Adiabatic states of one geometry (eigenvalues of U): E[nstates] ascending, in hartree; if G != NULL,
   G[(k*natoms + a)*3 + c] = dE_k/dxyz[3a+c] in hartree/bohr; if D != NULL, the nonadiabatic couplings
   D[((k*nstates + l)*natoms + a)*3 + c] = <k|d/dxyz[3a+c] l> in 1/bohr (antisymmetric; each state vector
   has its largest-magnitude diabatic component positive; d_kl = h_kl dE/(dE^2 + eps^2), h_kl = <k|dU|l>,
   dE = E_l - E_k, eps = @EPS_EV@ eV, so d = 0 at an exact degeneracy). */
void @P@_adiabatic(const double *xyz, double *E, double *G, double *D, int *status);

/* The standard interface, for the LOWEST adiabatic state (E[0] and G[0..natoms*3-1] of @P@_adiabatic). */

""" + codegen.C_ENTRY_PROTOTYPES.replace("@LUNIT@", "bohr").replace("@EUNIT@", "hartree") + r"""
#ifdef __cplusplus
}
#endif

#endif /* @UP@_H_INCLUDED */
"""

_C_DRIVER = r"""#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "@P@.h"
@INCLUDES@
#define NATOMS @NATOMS@
#define NS @NSTATES@         /* electronic states */
#define NX (3 * NATOMS)    /* coordinates */
#define NPS @NPS@        /* pseudoscalars */
#define NPS_ALLOC @NPSA@  /* NPS, at least 1 */
#define NTERMS @NTERMS@     /* terms M_t s_t, one unit each */
#define MAX_SWEEPS 50  /* Jacobi sweeps (quadratic convergence: a handful suffice) */

typedef void (*energy_fn)(const double *, double *, int *);
typedef void (*gradient_fn)(const double *, double *, double *, int *);

static const double LENGTH_SCALE = @LSCALE@;  /* caller length -> model length (pseudoscalars) */
static const double DEGENERACY_EPS = @EPS@;  /* regularisation of 1/(E_l - E_k), caller energy */
static const char INFO[] =
@INFO@;

/* pseudoscalar p: Psi_p = sum over q = PS_PTR[p] .. PS_PTR[p+1]-1 of QUAD_SIGN[q] f(V_q), V_q the signed
   volume (R_b - R_a) . ((R_c - R_a) x (R_d - R_a)) (model length^3) of the atoms a, b, c, d =
   QUAD[4q .. 4q+3], f(V) = tanh(V / PS_SCALE[p]) if PS_TANH[p], else V */
@PS_TABLES@
/* term t adds M_t s_t to U[TERM_I[t]][TERM_J[t]]: M_t = prod_p Psi_p^TERM_POW[NPS*t + p], s_t the energy of
   unit t (caller units; the polynomial factor weights . p(x)) */
@TERM_TABLES@static const energy_fn TERM_ENERGY[NTERMS] = {@ENERGY_FNS@};
static const gradient_fn TERM_GRADIENT[NTERMS] = {@GRADIENT_FNS@};

static void zero(double *x, int n)
{
    int i;
    if (x != NULL)
        for (i = 0; i < n; ++i)
            x[i] = 0.0;
}

static int all_finite(const double *x, int n)
{
    int i;
    for (i = 0; i < n; ++i)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

static void cross(const double *a, const double *b, double *c)
{
    c[0] = a[1] * b[2] - a[2] * b[1];
    c[1] = a[2] * b[0] - a[0] * b[2];
    c[2] = a[0] * b[1] - a[1] * b[0];
}

static double ipow(double x, int n)
{
    double r = 1.0;
    for (; n > 0; --n)
        r *= x;
    return r;
}

/* psi[p] and, if dpsi != NULL, dpsi[NX*p + 3a + c] = dPsi_p/dR_ac (model units) at R (model length). */
static void pseudoscalars(const double *R, double *psi, double *dpsi)
{
    int p, q, c;

    for (p = 0; p < NPS; ++p) {
        double *dp = dpsi != NULL ? dpsi + NX * p : NULL;
        double val = 0.0;
        zero(dp, NX);
        for (q = PS_PTR[p]; q < PS_PTR[p + 1]; ++q) {
            const int a = QUAD[4 * q], b = QUAD[4 * q + 1], cc = QUAD[4 * q + 2], d = QUAD[4 * q + 3];
            double eb[3], ec[3], ed[3], db[3], dc[3], dd[3], vol, f, w;
            for (c = 0; c < 3; ++c) {
                eb[c] = R[3 * b + c] - R[3 * a + c];
                ec[c] = R[3 * cc + c] - R[3 * a + c];
                ed[c] = R[3 * d + c] - R[3 * a + c];
            }
            cross(ec, ed, db);
            vol = eb[0] * db[0] + eb[1] * db[1] + eb[2] * db[2];
            if (PS_TANH[p]) {
                f = tanh(vol / PS_SCALE[p]);
                w = QUAD_SIGN[q] * (1.0 - f * f) / PS_SCALE[p];
            } else {
                f = vol;
                w = QUAD_SIGN[q];
            }
            val += QUAD_SIGN[q] * f;
            if (dp == NULL)
                continue;
            cross(ed, eb, dc);
            cross(eb, ec, dd);
            for (c = 0; c < 3; ++c) {
                dp[3 * b + c] += w * db[c];
                dp[3 * cc + c] += w * dc[c];
                dp[3 * d + c] += w * dd[c];
                dp[3 * a + c] -= w * (db[c] + dc[c] + dd[c]);
            }
        }
        psi[p] = val;
    }
}

/* M_t = prod_p psi_p^a_p and, if dm != NULL, dm = dM_t/dR (model units). */
static double monomial(int t, const double *psi, const double *dpsi, double *dm)
{
    const int32_t *pw = TERM_POW + NPS * t;
    double m = 1.0;
    int p, q, k;

    for (p = 0; p < NPS; ++p)
        m *= ipow(psi[p], pw[p]);
    if (dm == NULL)
        return m;
    zero(dm, NX);
    for (p = 0; p < NPS; ++p) {
        double f;
        if (pw[p] == 0)
            continue;
        f = pw[p] * ipow(psi[p], pw[p] - 1);
        for (q = 0; q < NPS; ++q)
            if (q != p)
                f *= ipow(psi[q], pw[q]);
        for (k = 0; k < NX; ++k)
            dm[k] += f * dpsi[NX * p + k];
    }
    return m;
}

/* U[NS*i + j] (caller energy) and, if du != NULL, du[NX*(NS*i + j) + k] = dU_ij/dxyz_k (caller units) of
   one geometry.  Returns the worst status of the units, or 2 for a non-finite input or result; for 2-4
   U and dU are 0. */
static int diabatic(const double *xyz, double *u, double *du)
{
    double R[NX], psi[NPS_ALLOC], dpsi[NPS_ALLOC * NX], g[NX], dm[NX];
    int i, j, k, t, status = 0;

    zero(u, NS * NS);
    zero(du, NS * NS * NX);
    if (!all_finite(xyz, NX))
        return 2;
    for (k = 0; k < NX; ++k)
        R[k] = xyz[k] * LENGTH_SCALE;
    pseudoscalars(R, psi, du != NULL ? dpsi : NULL);
    for (t = 0; t < NTERMS; ++t) {
        const int e = NS * TERM_I[t] + TERM_J[t];
        double s, m;
        int st;
        if (du != NULL)
            TERM_GRADIENT[t](xyz, &s, g, &st);
        else
            TERM_ENERGY[t](xyz, &s, &st);
        if (st >= 2) {
            zero(u, NS * NS);
            zero(du, NS * NS * NX);
            return st;
        }
        if (st > status)
            status = st;
        m = monomial(t, psi, dpsi, du != NULL ? dm : NULL);
        u[e] += m * s;
        if (du != NULL)
            for (k = 0; k < NX; ++k)
                du[NX * e + k] += m * g[k] + s * dm[k] * LENGTH_SCALE;
    }
    for (i = 0; i < NS; ++i)
        for (j = i + 1; j < NS; ++j) {
            u[NS * j + i] = u[NS * i + j];
            if (du != NULL)
                for (k = 0; k < NX; ++k)
                    du[NX * (NS * j + i) + k] = du[NX * (NS * i + j) + k];
        }
    if (!all_finite(u, NS * NS) || (du != NULL && !all_finite(du, NS * NS * NX))) {
        zero(u, NS * NS);
        zero(du, NS * NS * NX);
        return 2;
    }
    return status;
}

/* Eigenvalues lam (ascending) and orthonormal eigenvectors of the symmetric matrix a (NS x NS, destroyed)
   by cyclic Jacobi rotations: column k of v (v[NS*i + k], i = 0..NS-1) is state k, with its
   largest-magnitude component positive (ties: the lowest index). */
static void eigh(double *a, double *lam, double *v)
{
    int i, k, p, q, sweep;

    zero(v, NS * NS);
    for (i = 0; i < NS; ++i)
        v[NS * i + i] = 1.0;
    for (sweep = 0; sweep < MAX_SWEEPS; ++sweep) {
        double off = 0.0;
        for (p = 0; p < NS; ++p)
            for (q = p + 1; q < NS; ++q)
                off += fabs(a[NS * p + q]);
        if (off == 0.0)
            break;
        for (p = 0; p < NS; ++p)
            for (q = p + 1; q < NS; ++q) {
                const double apq = a[NS * p + q], app = a[NS * p + p], aqq = a[NS * q + q];
                const double g = 100.0 * fabs(apq);
                double theta, t, c, s;
                if (apq == 0.0)
                    continue;
                if (fabs(app) + g == fabs(app) && fabs(aqq) + g == fabs(aqq)) {
                    a[NS * p + q] = a[NS * q + p] = 0.0;  /* below the rounding of both diagonal entries */
                    continue;
                }
                theta = (aqq - app) / (2.0 * apq);
                t = 1.0 / (fabs(theta) + sqrt(theta * theta + 1.0));
                if (theta < 0.0)
                    t = -t;
                c = 1.0 / sqrt(t * t + 1.0);
                s = t * c;
                for (k = 0; k < NS; ++k) {
                    const double x = a[NS * k + p], y = a[NS * k + q];
                    a[NS * k + p] = c * x - s * y;
                    a[NS * k + q] = s * x + c * y;
                }
                for (k = 0; k < NS; ++k) {
                    const double x = a[NS * p + k], y = a[NS * q + k];
                    a[NS * p + k] = c * x - s * y;
                    a[NS * q + k] = s * x + c * y;
                }
                a[NS * p + q] = a[NS * q + p] = 0.0;
                for (k = 0; k < NS; ++k) {
                    const double x = v[NS * k + p], y = v[NS * k + q];
                    v[NS * k + p] = c * x - s * y;
                    v[NS * k + q] = s * x + c * y;
                }
            }
    }
    for (k = 0; k < NS; ++k)
        lam[k] = a[NS * k + k];
    for (k = 0; k < NS - 1; ++k) {  /* selection sort, ascending */
        int m = k;
        for (i = k + 1; i < NS; ++i)
            if (lam[i] < lam[m])
                m = i;
        if (m != k) {
            const double x = lam[k];
            lam[k] = lam[m];
            lam[m] = x;
            for (i = 0; i < NS; ++i) {
                const double y = v[NS * i + k];
                v[NS * i + k] = v[NS * i + m];
                v[NS * i + m] = y;
            }
        }
    }
    for (k = 0; k < NS; ++k) {  /* sign convention */
        int big = 0;
        for (i = 1; i < NS; ++i)
            if (fabs(v[NS * i + k]) > fabs(v[NS * big + k]))
                big = i;
        if (v[NS * big + k] < 0.0)
            for (i = 0; i < NS; ++i)
                v[NS * i + k] = -v[NS * i + k];
    }
}

/* <k| dU/dxyz_x |l> for the state vectors v. */
static double project(const double *v, const double *du, int k, int l, int x)
{
    double s = 0.0;
    int a, b;
    for (a = 0; a < NS; ++a)
        for (b = 0; b < NS; ++b)
            s += v[NS * a + k] * du[NX * (NS * a + b) + x] * v[NS * b + l];
    return s;
}

/* Adiabatic energies e[NS] (ascending, caller energy) and, if g != NULL, gradients g[NX*k + x], if
   d != NULL, couplings d[NX*(NS*k + l) + x] = <k|d/dxyz_x l> (1/caller length) of one geometry.
   Returns the status of diabatic(), or 2 for a non-finite result; for 2-4 every output is 0. */
static int adiabatic(const double *xyz, double *e, double *g, double *d)
{
    double u[NS * NS], du[NS * NS * NX], v[NS * NS];
    int k, l, x, status = diabatic(xyz, u, g != NULL || d != NULL ? du : NULL);

    if (status < 2) {
        eigh(u, e, v);
        if (g != NULL)
            for (k = 0; k < NS; ++k)
                for (x = 0; x < NX; ++x)
                    g[NX * k + x] = project(v, du, k, k, x);
        if (d != NULL) {
            zero(d, NS * NS * NX);
            for (k = 0; k < NS; ++k)
                for (l = k + 1; l < NS; ++l) {
                    const double gap = e[l] - e[k];
                    const double f = gap / (gap * gap + DEGENERACY_EPS * DEGENERACY_EPS);
                    for (x = 0; x < NX; ++x) {
                        const double h = project(v, du, k, l, x);
                        d[NX * (NS * k + l) + x] = h * f;
                        d[NX * (NS * l + k) + x] = -(h * f);
                    }
                }
        }
        if (!all_finite(e, NS) || (g != NULL && !all_finite(g, NS * NX))
            || (d != NULL && !all_finite(d, NS * NS * NX)))
            status = 2;
    }
    if (status >= 2) {
        zero(e, NS);
        zero(g, NS * NX);
        zero(d, NS * NS * NX);
    }
    return status;
}

/* The lowest adiabatic state of n geometries; grad == NULL skips the gradient. */
static void run(int n, const double *xyz, double *energy, double *grad, int *status)
{
    double e[NS], g[NS * NX];
    int s, k;
    for (s = 0; s < n; ++s) {
        status[s] = adiabatic(xyz + (size_t) s * NX, e, grad != NULL ? g : NULL, NULL);
        energy[s] = e[0];
        if (grad != NULL)
            for (k = 0; k < NX; ++k)
                grad[(size_t) s * NX + k] = g[k];
    }
}

int @P@_nstates(void)
{
    return NS;
}

void @P@_diabatic(const double *xyz, double *U, double *dU, int *status)
{
    *status = diabatic(xyz, U, dU);
}

void @P@_adiabatic(const double *xyz, double *E, double *G, double *D, int *status)
{
    *status = adiabatic(xyz, E, G, D);
}

""" + codegen.C_ENTRY_POINTS


# -------------------------------------------------------------- Fortran
_F_DRIVER = r"""module @P@_model
  ! bind(C) entry points (the C names; optional arguments may be omitted, or NULL from C):
  !   integer(c_int) function @P@_natoms()
  !   integer(c_int) function @P@_nstates()
  !   subroutine @P@_diabatic(xyz, u, du, status)       ! du optional
  !   subroutine @P@_adiabatic(xyz, e, g, d, status)    ! g, d optional
  !   subroutine @P@_energy(xyz, energy, status)        ! these four: the lowest adiabatic state
  !   subroutine @P@_energy_gradient(xyz, energy, grad, status)
  !   subroutine @P@_energy_batch(n, xyz, energy, status)              ! n by value
  !   subroutine @P@_energy_gradient_batch(n, xyz, energy, grad, status)
  !   integer(c_int) function @P@_info(buf, len)                       ! len by value
  ! xyz(3, natoms) in bohr; u(nstates, nstates) in hartree, du(3, natoms, nstates, nstates) in
  ! hartree/bohr; e(nstates) ascending (hartree), g(3, natoms, nstates) (hartree/bohr),
  ! d(3, natoms, nstates, nstates) (1/bohr): d(:, :, l, k) = <k|d/dxyz l>, the C layout
  ! D[k][l][atom][xyz].  status: the worst of the units': 0 ok; 1 outside the fitted range (values
  ! returned); 2 non-finite input/result; 3 coincident atoms; 4 no memory.  For 2-4 outputs are 0.
  use, intrinsic :: iso_c_binding, only: c_int, c_int32_t, c_double, c_char, c_null_char
  use, intrinsic :: ieee_arithmetic, only: ieee_is_finite
@USES@  implicit none
  private
  public :: @P@_natoms
  public :: @P@_nstates
  public :: @P@_diabatic
  public :: @P@_adiabatic
  public :: @P@_energy
  public :: @P@_energy_gradient
  public :: @P@_energy_batch
  public :: @P@_energy_gradient_batch
  public :: @P@_info

  integer, parameter :: dp = c_double
  integer, parameter :: natoms = @NATOMS@
  integer, parameter :: ns = @NSTATES@        ! electronic states
  integer, parameter :: nx = 3 * natoms  ! coordinates
  integer@NPS_ATTR@ :: nps = @NPS@       ! pseudoscalars
  integer, parameter :: nps_alloc = @NPSA@  ! nps, at least 1
  integer, parameter :: nterms = @NTERMS@    ! terms M_t s_t, one unit each
  integer, parameter :: max_sweeps = 50  ! Jacobi sweeps (quadratic convergence: a handful suffice)

  real(dp), parameter :: length_scale = @LSCALE@  ! caller length -> model length (pseudoscalars)
  real(dp), parameter :: degeneracy_eps = @EPS@  ! regularisation of 1/(E_l - E_k), caller energy
  character(len=*), parameter :: info_text = &
      @INFO@

  ! pseudoscalar p: Psi_p = sum over q = ps_ptr(p) .. ps_ptr(p+1)-1 of quad_sign(q) f(V_q), V_q the signed
  ! volume (R_b - R_a) . ((R_c - R_a) x (R_d - R_a)) (model length^3) of the atoms a, b, c, d =
  ! quad(4q .. 4q+3) (0-based), f(V) = tanh(V / ps_scale(p)) if ps_tanh(p) /= 0, else V
@PS_TABLES@
  ! term t adds M_t s_t to U(term_i(t), term_j(t)) (0-based): M_t = prod_p Psi_p**term_pow(nps*t + p),
  ! s_t the energy of unit t (caller units; the polynomial factor weights . p(x))
@TERM_TABLES@
contains

  ! s_t (and, with want_grad, ds_t/dxyz) of one geometry through unit t.
  subroutine term_value(t, xyz, s, g, want_grad, st)
    integer, intent(in) :: t
    real(dp), intent(in) :: xyz(0:nx-1)
    real(dp), intent(out) :: s
    real(dp), intent(inout) :: g(0:nx-1)
    logical, intent(in) :: want_grad
    integer(c_int), intent(out) :: st

    select case (t)
@CASES@    end select
  end subroutine term_value

  pure function cross(a, b) result(c)
    real(dp), intent(in) :: a(3), b(3)
    real(dp) :: c(3)
    c(1) = a(2) * b(3) - a(3) * b(2)
    c(2) = a(3) * b(1) - a(1) * b(3)
    c(3) = a(1) * b(2) - a(2) * b(1)
  end function cross

  ! psi(p) and, with want_grad, dpsi(:, p) = dPsi_p/dR (model units) at r (model length).
  subroutine pseudoscalars(r, psi, dpsi, want_grad)
    real(dp), intent(in) :: r(0:2, 0:natoms-1)
    real(dp), intent(out) :: psi(0:nps_alloc-1)
    real(dp), intent(inout) :: dpsi(0:2, 0:natoms-1, 0:nps_alloc-1)
    logical, intent(in) :: want_grad
    real(dp) :: eb(3), ec(3), ed(3), db(3), dc(3), dd(3), vol, f, w
    integer :: p, q, ia, ib, ic, id

    psi = 0.0_dp
    if (want_grad) dpsi = 0.0_dp
    do p = 0, nps - 1
      do q = ps_ptr(p), ps_ptr(p + 1) - 1
        ia = quad(4 * q)
        ib = quad(4 * q + 1)
        ic = quad(4 * q + 2)
        id = quad(4 * q + 3)
        eb = r(:, ib) - r(:, ia)
        ec = r(:, ic) - r(:, ia)
        ed = r(:, id) - r(:, ia)
        db = cross(ec, ed)
        vol = eb(1) * db(1) + eb(2) * db(2) + eb(3) * db(3)
        if (ps_tanh(p) /= 0) then
          f = tanh(vol / ps_scale(p))
          w = quad_sign(q) * (1.0_dp - f * f) / ps_scale(p)
        else
          f = vol
          w = quad_sign(q)
        end if
        psi(p) = psi(p) + quad_sign(q) * f
        if (.not. want_grad) cycle
        dc = cross(ed, eb)
        dd = cross(eb, ec)
        dpsi(:, ib, p) = dpsi(:, ib, p) + w * db
        dpsi(:, ic, p) = dpsi(:, ic, p) + w * dc
        dpsi(:, id, p) = dpsi(:, id, p) + w * dd
        dpsi(:, ia, p) = dpsi(:, ia, p) - w * (db + dc + dd)
      end do
    end do
  end subroutine pseudoscalars

  ! m = M_t = prod_p psi(p)**a_p and, with want_grad, dm = dM_t/dR (model units).
  subroutine monomial(t, psi, dpsi, m, dm, want_grad)
    integer, intent(in) :: t
    real(dp), intent(in) :: psi(0:nps_alloc-1), dpsi(0:nx-1, 0:nps_alloc-1)
    real(dp), intent(out) :: m
    real(dp), intent(inout) :: dm(0:nx-1)
    logical, intent(in) :: want_grad
    real(dp) :: f
    integer :: p, q

    m = 1.0_dp
    do p = 0, nps - 1
      m = m * psi(p)**term_pow(nps * t + p)
    end do
    if (.not. want_grad) return
    dm = 0.0_dp
    do p = 0, nps - 1
      if (term_pow(nps * t + p) == 0) cycle
      f = term_pow(nps * t + p) * psi(p)**(term_pow(nps * t + p) - 1)
      do q = 0, nps - 1
        if (q /= p) f = f * psi(q)**term_pow(nps * t + q)
      end do
      dm = dm + f * dpsi(:, p)
    end do
  end subroutine monomial

  ! u(j, i) = U_ij (caller energy) and, with want_grad, du(:, j, i) = dU_ij/dxyz (caller units) of one
  ! geometry.  status: the worst of the units', or 2 for a non-finite input or result (then u = du = 0).
  subroutine diabatic(xyz, u, du, want_grad, status)
    real(dp), intent(in) :: xyz(0:nx-1)
    real(dp), intent(out) :: u(0:ns-1, 0:ns-1)
    real(dp), intent(inout) :: du(0:nx-1, 0:ns-1, 0:ns-1)
    logical, intent(in) :: want_grad
    integer(c_int), intent(out) :: status
    real(dp) :: r(0:nx-1), psi(0:nps_alloc-1), dpsi(0:nx-1, 0:nps_alloc-1), g(0:nx-1), dm(0:nx-1), s, m
    integer(c_int) :: st
    integer :: t, i, j

    u = 0.0_dp
    if (want_grad) du = 0.0_dp
    status = 0
    if (.not. all(ieee_is_finite(xyz))) then
      status = 2
      return
    end if
    r = xyz * length_scale
    call pseudoscalars(r, psi, dpsi, want_grad)
    do t = 0, nterms - 1
      call term_value(t, xyz, s, g, want_grad, st)
      if (st >= 2) then
        u = 0.0_dp
        if (want_grad) du = 0.0_dp
        status = st
        return
      end if
      status = max(status, st)
      call monomial(t, psi, dpsi, m, dm, want_grad)
      i = term_i(t)
      j = term_j(t)
      u(j, i) = u(j, i) + m * s
      if (want_grad) du(:, j, i) = du(:, j, i) + (m * g + s * dm * length_scale)
    end do
    do i = 0, ns - 1
      do j = i + 1, ns - 1
        u(i, j) = u(j, i)
        if (want_grad) du(:, i, j) = du(:, j, i)
      end do
    end do
    if (.not. all(ieee_is_finite(u))) status = 2
    if (want_grad .and. status < 2) then
      if (.not. all(ieee_is_finite(du))) status = 2
    end if
    if (status >= 2) then
      u = 0.0_dp
      if (want_grad) du = 0.0_dp
    end if
  end subroutine diabatic

  ! Eigenvalues lam (ascending) and orthonormal eigenvectors of the symmetric matrix a (destroyed) by
  ! cyclic Jacobi rotations: v(:, k) is state k, with its largest-magnitude component positive (ties:
  ! the lowest index).
  subroutine eigh(a, lam, v)
    real(dp), intent(inout) :: a(0:ns-1, 0:ns-1)
    real(dp), intent(out) :: lam(0:ns-1), v(0:ns-1, 0:ns-1)
    real(dp) :: apq, app, aqq, g, theta, t, c, s, x, y, off
    integer :: i, k, m, p, q, sweep

    v = 0.0_dp
    do i = 0, ns - 1
      v(i, i) = 1.0_dp
    end do
    do sweep = 1, max_sweeps
      off = 0.0_dp
      do p = 0, ns - 1
        do q = p + 1, ns - 1
          off = off + abs(a(p, q))
        end do
      end do
      if (off == 0.0_dp) exit
      do p = 0, ns - 1
        do q = p + 1, ns - 1
          apq = a(p, q)
          app = a(p, p)
          aqq = a(q, q)
          g = 100.0_dp * abs(apq)
          if (apq == 0.0_dp) cycle
          if (abs(app) + g == abs(app) .and. abs(aqq) + g == abs(aqq)) then
            a(p, q) = 0.0_dp  ! below the rounding of both diagonal entries
            a(q, p) = 0.0_dp
            cycle
          end if
          theta = (aqq - app) / (2.0_dp * apq)
          t = 1.0_dp / (abs(theta) + sqrt(theta * theta + 1.0_dp))
          if (theta < 0.0_dp) t = -t
          c = 1.0_dp / sqrt(t * t + 1.0_dp)
          s = t * c
          do k = 0, ns - 1
            x = a(k, p)
            y = a(k, q)
            a(k, p) = c * x - s * y
            a(k, q) = s * x + c * y
          end do
          do k = 0, ns - 1
            x = a(p, k)
            y = a(q, k)
            a(p, k) = c * x - s * y
            a(q, k) = s * x + c * y
          end do
          a(p, q) = 0.0_dp
          a(q, p) = 0.0_dp
          do k = 0, ns - 1
            x = v(k, p)
            y = v(k, q)
            v(k, p) = c * x - s * y
            v(k, q) = s * x + c * y
          end do
        end do
      end do
    end do
    do k = 0, ns - 1
      lam(k) = a(k, k)
    end do
    do k = 0, ns - 2  ! selection sort, ascending
      m = k
      do i = k + 1, ns - 1
        if (lam(i) < lam(m)) m = i
      end do
      if (m /= k) then
        x = lam(k)
        lam(k) = lam(m)
        lam(m) = x
        do i = 0, ns - 1
          y = v(i, k)
          v(i, k) = v(i, m)
          v(i, m) = y
        end do
      end if
    end do
    do k = 0, ns - 1  ! sign convention
      m = 0
      do i = 1, ns - 1
        if (abs(v(i, k)) > abs(v(m, k))) m = i
      end do
      if (v(m, k) < 0.0_dp) v(:, k) = -v(:, k)
    end do
  end subroutine eigh

  ! <k| dU/dxyz_x |l> for the state vectors v.
  pure function project(v, du, k, l, x) result(s)
    real(dp), intent(in) :: v(0:ns-1, 0:ns-1), du(0:nx-1, 0:ns-1, 0:ns-1)
    integer, intent(in) :: k, l, x
    real(dp) :: s
    integer :: a, b
    s = 0.0_dp
    do a = 0, ns - 1
      do b = 0, ns - 1
        s = s + v(a, k) * du(x, b, a) * v(b, l)
      end do
    end do
  end function project

  ! Adiabatic energies e (ascending, caller energy) and, with want_g, gradients g(:, k), with want_d,
  ! couplings d(:, l, k) = <k|d/dxyz l> (1/caller length) of one geometry.  status: that of diabatic,
  ! or 2 for a non-finite result; for 2-4 every output is 0.
  subroutine adiabatic(xyz, e, g, d, want_g, want_d, status)
    real(dp), intent(in) :: xyz(0:nx-1)
    real(dp), intent(out) :: e(0:ns-1)
    real(dp), intent(inout) :: g(0:nx-1, 0:ns-1), d(0:nx-1, 0:ns-1, 0:ns-1)
    logical, intent(in) :: want_g, want_d
    integer(c_int), intent(out) :: status
    real(dp) :: u(0:ns-1, 0:ns-1), du(0:nx-1, 0:ns-1, 0:ns-1), v(0:ns-1, 0:ns-1), gap, f, h
    integer :: k, l, x

    call diabatic(xyz, u, du, want_g .or. want_d, status)
    if (status < 2) then
      call eigh(u, e, v)
      if (want_g) then
        do k = 0, ns - 1
          do x = 0, nx - 1
            g(x, k) = project(v, du, k, k, x)
          end do
        end do
      end if
      if (want_d) then
        d = 0.0_dp
        do k = 0, ns - 1
          do l = k + 1, ns - 1
            gap = e(l) - e(k)
            f = gap / (gap * gap + degeneracy_eps * degeneracy_eps)
            do x = 0, nx - 1
              h = project(v, du, k, l, x)
              d(x, l, k) = h * f
              d(x, k, l) = -(h * f)
            end do
          end do
        end do
      end if
      if (.not. all(ieee_is_finite(e))) status = 2
      if (want_g .and. status < 2) then
        if (.not. all(ieee_is_finite(g))) status = 2
      end if
      if (want_d .and. status < 2) then
        if (.not. all(ieee_is_finite(d))) status = 2
      end if
    end if
    if (status >= 2) then
      e = 0.0_dp
      if (want_g) g = 0.0_dp
      if (want_d) d = 0.0_dp
    end if
  end subroutine adiabatic

  ! The lowest adiabatic state of n geometries.
  subroutine run_batch(n, xyz, energy, grad, want_grad, status)
    integer, intent(in) :: n
    real(dp), intent(in) :: xyz(0:nx-1, 0:n-1)
    real(dp), intent(out) :: energy(0:n-1)
    real(dp), intent(inout) :: grad(0:nx-1, 0:*)
    logical, intent(in) :: want_grad
    integer(c_int), intent(out) :: status(0:n-1)
    real(dp) :: e(0:ns-1), g(0:nx-1, 0:ns-1), d(0:nx-1, 0:ns-1, 0:ns-1)
    integer :: s

    do s = 0, n - 1
      call adiabatic(xyz(:, s), e, g, d, want_grad, .false., status(s))
      energy(s) = e(0)
      if (want_grad) grad(:, s) = g(:, 0)
    end do
  end subroutine run_batch

  function @P@_nstates() result(n) &
      bind(C, name="@P@_nstates")
    integer(c_int) :: n
    n = ns
  end function @P@_nstates

  subroutine @P@_diabatic(xyz, u, du, status) &
      bind(C, name="@P@_diabatic")
    real(c_double), intent(in) :: xyz(nx)
    real(c_double), intent(out) :: u(ns * ns)
    real(c_double), intent(out), optional :: du(nx * ns * ns)
    integer(c_int), intent(out) :: status
    real(dp) :: w(nx * ns * ns)
    call diabatic(xyz, u, w, present(du), status)
    if (present(du)) du = w
  end subroutine @P@_diabatic

  subroutine @P@_adiabatic(xyz, e, g, d, status) &
      bind(C, name="@P@_adiabatic")
    real(c_double), intent(in) :: xyz(nx)
    real(c_double), intent(out) :: e(ns)
    real(c_double), intent(out), optional :: g(nx * ns), d(nx * ns * ns)
    integer(c_int), intent(out) :: status
    real(dp) :: gw(nx * ns), dw(nx * ns * ns)
    call adiabatic(xyz, e, gw, dw, present(g), present(d), status)
    if (present(g)) g = gw
    if (present(d)) d = dw
  end subroutine @P@_adiabatic

""" + codegen.F_ENTRY_POINTS

_F_CASE = """    case ({t})
      if (want_grad) then
        call {u}_energy_gradient(xyz, s, g, st)
      else
        call {u}_energy(xyz, s, st)
      end if
"""


def _tables(dia: dict) -> dict:
    """The driver's integer and double tables (0-based)."""
    ps = dia["pseudoscalars"]
    ptr, quad, sign = [0], [], []
    for p in ps:
        quad += [a for q in p["quadruples"] for a in q]
        sign += p["signs"]
        ptr.append(len(sign))
    if not ps:  # ps_ptr(p + 1) of the never-executed loop stays in bounds (gfortran checks)
        ptr.append(0)
    terms = dia["terms"]
    return {"ps_ptr": ptr, "ps_tanh": [_DAMPINGS[p["damping"]] for p in ps], "ps_scale": [p["scale"] for p in ps],
            "quad": quad, "quad_sign": sign, "term_i": [t["i"] for t in terms], "term_j": [t["j"] for t in terms],
            "term_pow": [a for t in terms for a in t["powers"]]}


def diabatic_sources(spec: dict, lang: str, prefix: str, comment: str, info: str) -> dict:
    """Texts of the term units and of the driver: ``{role: (file name, text)}``.

    Roles: ``source`` (and ``header``) for the driver, ``<label>_source`` (and
    ``<label>_header``) for the unit of each term, e.g. ``u12_t0_source``.
    """
    dia = spec["diabatic"]
    names = unit_names(spec, prefix)
    if not codegen._PREFIX_RE.match(prefix):
        raise ValueError(f"prefix must be a letter followed by up to 31 letters, digits or '_', got {prefix!r}")
    longest = max(names, key=len)
    if len(longest) > 32:
        raise ValueError(f"prefix {prefix!r} is too long for this diabatic model: its unit names (such as "
                         f"{longest!r}) must have at most 32 characters; use at most "
                         f"{32 - len(longest) + len(prefix)} characters")
    ext = "c" if lang == "c" else "f90"
    files = {}
    for t, name in zip(dia["terms"], names):
        i, j = t["i"], t["j"]
        unit_comment = (f"Term {t['term']} of the diabatic matrix element U_{i + 1}{j + 1} of the potential "
                        f"'{prefix}': the polynomial factor s = weights . p(x), without its pseudoscalar monomial "
                        f"M = {_monomial_text(t['powers'])} (multiplied in by {prefix}.{ext}); coordinates in bohr, "
                        f"s in hartree.\n\n{comment}")
        kw = dict(prefix=name, header_comment=unit_comment, length_scale=spec["length_scale"],
                  energy_scale=spec["energy_scale"], r_min=spec["r_min"],
                  info=f"term of {prefix}: element U{i + 1}{j + 1}; monomial {_monomial_text(t['powers'])}; "
                       f"symbols={','.join(spec['symbols'])}; checksum={spec['checksum']}; kind={spec['kind']}")
        files.update({f"{t['label']}_{role}": f for role, f in
                      unit_files(lang, t["program"], spec["transform"], t["weights"], **kw).items()})
    tab = _tables(dia)
    nps = len(dia["pseudoscalars"])
    eps = dia["eps_eV"] * energy_factor("eV", "hartree")
    driver_comment = comment + ("\n\nGenerated by pesfit.export (the diabatic driver over the term units); do not "
                                "edit by hand, re-export from the model file.")
    driver_info = (f"generator=pesfit.export diabatic driver; prefix={prefix}; natoms={len(spec['symbols'])}; "
                   f"nstates={dia['n_states']}; irreps={','.join(dia['irreps'])}; terms={','.join(names)}; "
                   f"length_scale={spec['length_scale']!r}; energy_scale={spec['energy_scale']!r}; "
                   f"degeneracy_eps_eV={dia['eps_eV']!r}; energy=lowest adiabatic state; {info}")
    values = {"P": prefix, "UP": prefix.upper(), "NATOMS": str(len(spec["symbols"])),
              "NSTATES": str(dia["n_states"]), "NPS": str(nps), "NPSA": str(max(nps, 1)),
              "NTERMS": str(len(names)), "EPS_EV": f"{dia['eps_eV']:g}"}
    if lang == "c":
        values.update(
            LSCALE=repr(spec["length_scale"]), EPS=repr(eps), INFO=codegen._c_string(codegen._ascii(driver_info)),
            INCLUDES="".join(f'#include "{nm}.h"\n' for nm in names),
            PS_TABLES="".join([codegen._c_int_array("PS_PTR", tab["ps_ptr"]),
                               codegen._c_int_array("PS_TANH", tab["ps_tanh"]),
                               codegen._c_double_array("PS_SCALE", tab["ps_scale"]),
                               codegen._c_int_array("QUAD", tab["quad"]),
                               codegen._c_int_array("QUAD_SIGN", tab["quad_sign"])]),
            TERM_TABLES="".join([codegen._c_int_array("TERM_I", tab["term_i"]),
                                 codegen._c_int_array("TERM_J", tab["term_j"]),
                                 codegen._c_int_array("TERM_POW", tab["term_pow"])]),
            ENERGY_FNS=", ".join(f"{nm}_energy" for nm in names),
            GRADIENT_FNS=", ".join(f"{nm}_energy_gradient" for nm in names))
        head = codegen._c_comment(driver_comment)
        files["source"] = (f"{prefix}.c", head + "\n" + codegen._subst(_C_DRIVER, values))
        files["header"] = (f"{prefix}.h", head + "\n" + codegen._subst(_C_HEADER, values))
    else:
        values.update(
            LSCALE=codegen._f_real(spec["length_scale"]), EPS=codegen._f_real(eps),
            INFO=codegen._f_string(codegen._ascii(driver_info)),
            NPS_ATTR=", parameter" if nps else "",  # gfortran warns on constant zero-trip loops
            USES="".join(f"  use {nm}_model, only: {nm}_energy, {nm}_energy_gradient\n" for nm in names),
            PS_TABLES="".join([codegen._f_int_array("ps_ptr", tab["ps_ptr"]),
                               codegen._f_int_array("ps_tanh", tab["ps_tanh"]),
                               codegen._f_double_array("ps_scale", tab["ps_scale"]),
                               codegen._f_int_array("quad", tab["quad"]),
                               codegen._f_int_array("quad_sign", tab["quad_sign"])]),
            TERM_TABLES="".join([codegen._f_int_array("term_i", tab["term_i"]),
                                 codegen._f_int_array("term_j", tab["term_j"]),
                                 codegen._f_int_array("term_pow", tab["term_pow"])]),
            CASES="".join(_F_CASE.format(t=k, u=nm) for k, nm in enumerate(names)))
        files["source"] = (f"{prefix}.f90",
                           codegen._f_comment(driver_comment) + "\n" + codegen._subst(_F_DRIVER, values))
    return files


# ----------------------------------------------------------------- check
def _compiled(lib: ctypes.CDLL, prefix: str, xyz: np.ndarray, ns: int) -> dict:
    """All outputs of the library for geometries ``xyz`` (n, N, 3) [bohr]."""
    n, N = xyz.shape[:2]
    xyz = np.ascontiguousarray(xyz, dtype=np.float64)
    out = {"U": np.zeros((n, ns, ns)), "dU": np.zeros((n, ns, ns, N, 3)), "E": np.zeros((n, ns)),
           "G": np.zeros((n, ns, N, 3)), "D": np.zeros((n, ns, ns, N, 3)), "E0": np.zeros(n),
           "G0": np.zeros((n, N, 3)), "status": np.zeros((3, n), dtype=np.intc)}
    vp = ctypes.c_void_p
    dia, adia, low = (getattr(lib, f"{prefix}_{name}") for name in ("diabatic", "adiabatic",
                                                                       "energy_gradient_batch"))
    st = out["status"]
    for s in range(n):
        dia(vp(xyz[s].ctypes.data), vp(out["U"][s].ctypes.data), vp(out["dU"][s].ctypes.data),
            vp(st[0, s:].ctypes.data))
        adia(vp(xyz[s].ctypes.data), vp(out["E"][s].ctypes.data), vp(out["G"][s].ctypes.data),
             vp(out["D"][s].ctypes.data), vp(st[1, s:].ctypes.data))
    low(ctypes.c_int(n), vp(xyz.ctypes.data), vp(out["E0"].ctypes.data), vp(out["G0"].ctypes.data),
        vp(st[2].ctypes.data))
    return out


def _rel(a, b) -> tuple[float, float]:
    """Max |a - b| and that divided by max |b| (0, 0 for empty arrays)."""
    if a.size == 0:
        return 0.0, 0.0
    dev = float(np.max(np.abs(a - b)))
    return dev, dev / max(float(np.max(np.abs(b))), np.finfo(float).tiny)


def check_diabatic(spec: dict, lib: ctypes.CDLL, prefix: str, R: np.ndarray, energy_rtol: float,
                   gradient_rtol: float) -> dict:
    """Compare the loaded library with the Python model at ``R`` (n, N, 3) [Å]; ``RuntimeError`` on mismatch.

    Relative deviations (max |difference| / max |Python value|): ``U`` and
    the adiabatic energies (also those of ``PREFIX_energy_gradient_batch``)
    within ``energy_rtol``, ``dU``, the adiabatic gradients and the couplings
    within ``gradient_rtol``; gradients and couplings only at well-separated
    structures (module docstring).  Returns the deviations and counts;
    ``max_energy_abs`` is in eV, ``max_gradient_abs`` in eV/Å,
    ``max_coupling_abs`` in 1/Å.
    """
    dia = spec["diabatic"]
    ns = dia["n_states"]
    ls, es = spec["length_scale"], spec["energy_scale"]
    xyz = R / ls
    ref = dia["predict_adiabatic"](xyz * ls)  # exactly the coordinates the library sees
    c = _compiled(lib, prefix, xyz, ns)
    st = c["status"].max(axis=0)
    if np.any(c["status"] != st):
        raise RuntimeError("check: the diabatic, adiabatic and lowest-state entry points return different status "
                           "values for the same structures")
    ok = st < 2
    if not np.any(ok):
        raise RuntimeError("check: the compiled potential rejected every structure (status "
                           f"{sorted(set(st.tolist()))}); pass check_structures inside the fitted range")
    U, E = np.asarray(ref["U"])[ok], np.asarray(ref["energies"])[ok]
    gap = np.min(np.diff(E, axis=1), axis=1)
    sep = gap > GAP_RTOL * np.max(np.abs(U), axis=(1, 2))
    mags = np.sort(np.abs(np.asarray(ref["vectors"])[ok]), axis=1)
    phase = sep & np.all(mags[:, -1] - mags[:, -2] > PHASE_MARGIN, axis=1)
    G = np.asarray(ref["gradients"])[ok][sep]
    dev = {  # the lowest-state entry points are compared as one more state
        "u": _rel(c["U"][ok] / es, U),
        "du": _rel(c["dU"][ok] / (es * ls), np.asarray(ref["dU"])[ok]),
        "energy": _rel(np.concatenate([c["E"][ok], c["E0"][ok, None]], axis=1) / es,
                       np.concatenate([E, E[:, :1]], axis=1)),
        "gradient": _rel(np.concatenate([c["G"][ok][sep], c["G0"][ok][sep][:, None]], axis=1) / (es * ls),
                         np.concatenate([G, G[:, :1]], axis=1)),
        "coupling": _rel(c["D"][ok][phase] / ls, np.asarray(ref["nac"])[ok][phase]),
    }
    result = {
        "n_structures": int(np.count_nonzero(ok)),
        "n_out_of_range": int(np.count_nonzero(st == 1)),
        "n_gradient_structures": int(np.count_nonzero(sep)),
        "n_coupling_structures": int(np.count_nonzero(phase)),
        "max_u_rel": dev["u"][1],
        "max_du_rel": dev["du"][1],
        "max_energy_abs": dev["energy"][0],
        "max_energy_rel": dev["energy"][1],
        "max_gradient_abs": dev["gradient"][0],
        "max_gradient_rel": dev["gradient"][1],
        "max_coupling_abs": dev["coupling"][0],
        "max_coupling_rel": dev["coupling"][1],
        "energy_tolerance": energy_rtol,
        "gradient_tolerance": gradient_rtol,
    }
    bad = [f"{name} {result[f'max_{name}_rel']:.3g} (tolerance {tol:.3g})"
           for name, tol in (("u", energy_rtol), ("energy", energy_rtol), ("du", gradient_rtol),
                             ("gradient", gradient_rtol), ("coupling", gradient_rtol))
           if not result[f"max_{name}_rel"] <= tol]
    if bad:
        raise RuntimeError(f"check: compiled and Python diabatic potentials disagree over {result['n_structures']} "
                           f"structures: max relative deviation of {', '.join(bad)}")
    return result
