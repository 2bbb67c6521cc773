"""C and Fortran export of many-body models (:class:`~pesfit.models.manybody.ManyBodyModel`).

A cluster of ``M`` monomers (``m`` atoms each, monomer ``i`` = atoms
``m*i .. m*i+m-1``) is exported as one potential with the standard interface
of :mod:`invariants.codegen` for ``M*m`` atoms.  The library is linked from

* one codegen unit per term, ``PREFIX_b<n>.c|f90`` (prefix ``PREFIX_b<n>``):
  the n-body function ``V_n`` of one n-mer (``n*m`` atoms), no cutoff, in
  the caller's units (bohr in, hartree out).  The 1-body unit is the fitted
  1-body term or the given monomer model (linear or with a compiled head);
* the cluster driver ``PREFIX.c|f90``, printed here: for every term it walks
  the n-subsets ``S`` of the monomers in increasing index order (the order of
  ``itertools.combinations``), gathers their atoms, evaluates the unit on
  blocks of up to 64 n-mers through its batch entry point and adds
  ``s_S V_n(S)`` to the energy and ``s_S dV_n/dR + V_n ds_S/dR`` to the
  gradient, where ``s_S`` is the sum over the spanning trees of the n-mer of
  the product of the quintic switch ``sw(r_e)`` over the tree's edges, ``r_e``
  the distances between the monomers' centre atoms in the model's length
  unit (Å).  n-mers with ``s_S = 0`` are skipped, as in Python.

The status of a cluster is the worst status of its n-mers (codegen's
``STATUS_CODES``); 2-4 set energy and gradient to 0.  The term units stay
visible in the library (``PREFIX_b2_energy`` evaluates one dimer's ``V_2``).
"""
from __future__ import annotations

import math
import re

import numpy as np

from invariants import codegen
from invariants.program import Program
from invariants.transforms import DistanceTransform

from .export import unit_files
from .models.manybody import _spanning_trees
from .units import energy_factor, length_factor

__all__ = ["read_cluster_spec", "cluster_structures", "cluster_lines", "cluster_sources", "CHUNK"]

#: n-mers per call of a term unit's batch entry point (a multiple of codegen's 8 SIMD lanes)
CHUNK = 64


# ------------------------------------------------------------------ spec
def _unit_scales(spec: dict) -> tuple[float, float]:
    return length_factor("bohr", spec["length_unit"]), energy_factor(spec["energy_unit"], "hartree")


def read_cluster_spec(spec: dict, n_monomers, check_unit_spec) -> dict:
    """The export spec of a many-body model, cut into term units for ``n_monomers`` monomers.

    ``check_unit_spec(spec)`` validates a given monomer model's own spec (as
    for a plain export).  Returns a copy of ``spec`` whose ``symbols`` are the
    cluster's atoms, with ``cluster`` = ``{"n_monomers", "monomer",
    "monomer_size", "center", "units"}``; each unit has ``body``, ``program``,
    ``transform``, ``weights`` or ``head``, ``r_min`` [Å], ``length_scale``,
    ``energy_scale``, ``cutoff`` ((r_on, r_off) [Å] or None) and ``source``.
    """
    if n_monomers is None:
        raise ValueError(f"model kind {spec.get('kind')!r} is a many-body expansion: give the number of monomers "
                         "of the exported cluster, n_monomers=M (pesfit export --n-monomers M)")
    if isinstance(n_monomers, bool) or not isinstance(n_monomers, (int, np.integer)) or n_monomers < 1:
        raise ValueError(f"n_monomers must be a positive integer, got {n_monomers!r}")
    M = int(n_monomers)
    missing = [k for k in ("terms", "monomer", "monomer_size", "center", "monomer_model_spec", "kind", "symbols",
                           "length_unit", "energy_unit", "energy_zero_eV", "checksum", "training_rmse_meV", "r_min",
                           "predict") if k not in spec]
    if missing:
        raise ValueError(f"many-body export spec lacks fields {missing}")
    monomer = [str(s) for s in spec["monomer"]]
    m = int(spec["monomer_size"])
    center = int(spec["center"])
    if m != len(monomer) or not 0 <= center < m:
        raise ValueError(f"inconsistent many-body spec: monomer {monomer}, size {m}, centre atom {center}")
    if not all(re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", s) for s in monomer):
        raise ValueError(f"atom symbols must be letters/digits, got {monomer}")
    ls, es = _unit_scales(spec)
    units = []
    mspec = spec["monomer_model_spec"]
    if mspec is not None:
        try:
            mspec = check_unit_spec(mspec)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"the monomer model of this many-body model cannot be compiled: {exc}") from None
        if mspec["symbols"] != monomer:
            raise ValueError(f"the monomer model's atoms {mspec['symbols']} are not the monomer {monomer}")
        units.append({"body": 1, "program": mspec["program"], "transform": mspec["transform"],
                      "weights": mspec["weights"], "head": mspec["head"], "r_min": mspec["r_min"],
                      "length_scale": mspec["length_scale"], "energy_scale": mspec["energy_scale"],
                      "cutoff": None, "source": f"monomer model ({mspec['kind']})"})
    for term in spec["terms"]:
        n = int(term["body"])
        if n > M:
            continue  # no n-subsets of fewer monomers (the Python model skips the term too)
        if not isinstance(term["program"], Program) or not isinstance(term["transform"], DistanceTransform):
            raise TypeError(f"the {n}-body term needs an invariants Program and DistanceTransform")
        nv = n * m * (n * m - 1) // 2
        if term["program"].n_variables != nv:
            raise ValueError(f"the {n}-body program has {term['program'].n_variables} variables, expected {nv} "
                             f"for {n} monomers of {m} atoms")
        cut = term.get("cutoff")
        if cut is not None:
            if term.get("cutoff_kind", "quintic_spanning_trees") != "quintic_spanning_trees":
                raise ValueError(f"cutoff kind {term['cutoff_kind']!r} of the {n}-body term cannot be compiled")
            cut = (float(cut[0]), float(cut[1]))
            if not (n > 1 and 0 < cut[0] < cut[1] and math.isfinite(cut[1])):
                raise ValueError(f"the {n}-body cutoff needs 0 < r_on < r_off, got {cut}")
        if n == 1 and mspec is not None:
            raise ValueError("the many-body spec has both a 1-body term and a monomer model")
        r_min = None if n > 1 or spec["r_min"] is None else np.asarray(spec["r_min"], dtype=np.float64)
        units.append({"body": n, "program": term["program"], "transform": term["transform"],
                      "weights": np.asarray(term["weights"], dtype=np.float64), "head": None, "r_min": r_min,
                      "length_scale": ls, "energy_scale": es, "cutoff": cut, "source": "fitted term"})
    units.sort(key=lambda u: u["body"])
    if not units or units[0]["body"] != 1:
        raise ValueError("the many-body spec has neither a 1-body term nor a monomer model")
    out = dict(spec)
    out.update(symbols=monomer * M, length_scale=ls, energy_scale=es, head=None,
               cluster={"n_monomers": M, "monomer": monomer, "monomer_size": m, "center": center, "units": units})
    return out


def cluster_structures(cluster: dict, n: int, rng, random_structures) -> np.ndarray:
    """``n`` clusters [Å] for checks: random monomers (``random_structures(m, k, rng)``) whose
    centre atoms sit 3-6 Å from a neighbour's, so that n-mers lie inside, across and beyond the cutoffs."""
    M, m, c = cluster["n_monomers"], cluster["monomer_size"], cluster["center"]
    mono = random_structures(m, n * M, rng).reshape(n, M, m, 3) if m > 1 else np.zeros((n, M, 1, 3))
    out = np.empty((n, M * m, 3))
    for s in range(n):
        sites = [np.zeros(3)]
        while len(sites) < M:
            d = rng.normal(size=3)
            cand = sites[rng.integers(len(sites))] + d / np.linalg.norm(d) * rng.uniform(3.0, 6.0)
            if min(np.linalg.norm(cand - p) for p in sites) >= 3.0:
                sites.append(cand)
        for i in range(M):
            out[s, i * m:(i + 1) * m] = mono[s, i] - mono[s, i, c] + sites[i]
    return out


def cluster_lines(spec: dict, prefix: str) -> list[str]:
    """Lines of the header comment describing the expansion (each under 100 characters)."""
    cl = spec["cluster"]
    M, m, c = cl["n_monomers"], cl["monomer_size"], cl["center"]
    lines = [f"many-body expansion over {M} monomers {' '.join(cl['monomer'])} (monomer i = atoms {m}i..{m}i+{m - 1}):",
             "  E = sum over the terms n and the n-subsets S of monomers of s_S V_n(S)"]
    for u in cl["units"]:
        n = u["body"]
        lines.append(f"  V_{n}: {prefix}_b{n}, {u['source']}: {u['program'].n_outputs} functions, "
                     f"{u['program'].n_nodes} nodes, {u['transform'].kind} transform")
        if u["cutoff"] is None:
            lines.append("    s_S = 1")
            continue
        sw = f"quintic switch {u['cutoff'][0]:g}-{u['cutoff'][1]:g} {spec['length_unit']}"
        if n == 2:
            lines.append(f"    s_S = {sw} of the distance between the monomers' atoms {c}")
        else:
            lines += ["    s_S = sum over the spanning trees of S of the product over the tree's edges of the",
                      f"    {sw} of the distance between the monomers' atoms {c}"]
    return lines


# -------------------------------------------------------------------- C
_C_DRIVER = r"""#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "@P@.h"
@INCLUDES@
#define NATOMS @NATOMS@
#define NMONO @NMONO@      /* monomers */
#define MSIZE @MSIZE@      /* atoms per monomer */
#define CENTER @CENTER@     /* centre atom within a monomer (cutoff distances) */
#define NTERMS @NTERMS@
#define MAXBODY @MAXBODY@    /* largest body order of the terms */
#define MAXEDGE @MAXEDGE@    /* edges of the largest n-mer (at least 1) */
#define MAXATOMS (MAXBODY * MSIZE)
#define CHUNK @CHUNK@      /* n-mers per call of a term's batch entry point */
#define NWORK (CHUNK * (6 * MAXATOMS + 3 * MAXBODY + 2))

typedef void (*energy_fn)(int, const double *, double *, int *);
typedef void (*gradient_fn)(int, const double *, double *, double *, int *);

static const double LENGTH_SCALE = @LSCALE@;  /* caller length -> model length (the cutoffs' unit) */
static const char INFO[] =
@INFO@;

/* term t: body order n, the batch entry points of its unit (V_n of n-mers, caller units) and,
   if TERM_CUT[t], the switch radii (r_on, r_off) on monomer-centre distances (model length) */
@TERM_TABLES@static const energy_fn TERM_ENERGY[NTERMS] = {@ENERGY_FNS@};
static const gradient_fn TERM_GRADIENT[NTERMS] = {@GRADIENT_FNS@};

/* spanning trees of the complete graph on n monomers, n = 0..MAXBODY: tree k has the edges
   TREE_EDGE[TREE_PTR[n] + (n-1)*k + p], p < n-1, numbering the edges (a, b), a < b, in
   lexicographic order */
@TREE_TABLES@
static int finish(double *energy, double *grad, int status)
{
    int i;
    *energy = 0.0;
    if (grad != NULL)
        for (i = 0; i < 3 * NATOMS; ++i)
            grad[i] = 0.0;
    return status;
}

/* Advances c[0..n-1] to the next n-subset of 0..NMONO-1 in lexicographic order; 0 after the last. */
static int next_subset(int *c, int n)
{
    int i = n - 1;
    while (i >= 0 && c[i] == NMONO - n + i)
        --i;
    if (i < 0)
        return 0;
    ++c[i];
    for (++i; i < n; ++i)
        c[i] = c[i - 1] + 1;
    return 1;
}

/* Cutoff weight of the n-mer whose monomer centres are cen[3n] (model length): the sum over its
   spanning trees of the product of sw(r_e) over the tree's edges, sw the quintic switch of term t.
   If ds != NULL, ds[3n] = ds/dcen (1/model length). */
static double cutoff(int t, int n, const double *cen, double *ds)
{
    const double r_on = TERM_RON[t], width = TERM_ROFF[t] - TERM_RON[t];
    const int32_t *tree = TREE_EDGE + TREE_PTR[n];
    /* zero-initialised: the compilers cannot tell that the loops below set every edge they read */
    double d[3 * MAXEDGE] = {0.0}, r[MAXEDGE] = {0.0}, sw[MAXEDGE] = {0.0}, dsw[MAXEDGE] = {0.0},
           dsdsw[MAXEDGE] = {0.0};
    double s = 0.0;
    int a, b, c, e = 0, k, p, q;

    for (a = 0; a < n; ++a)
        for (b = a + 1; b < n; ++b, ++e) {
            double x;
            for (c = 0; c < 3; ++c)
                d[3 * e + c] = cen[3 * a + c] - cen[3 * b + c];
            r[e] = sqrt(d[3 * e] * d[3 * e] + d[3 * e + 1] * d[3 * e + 1] + d[3 * e + 2] * d[3 * e + 2]);
            x = (r[e] - r_on) / width;
            x = x < 0.0 ? 0.0 : (x > 1.0 ? 1.0 : x);
            sw[e] = 1.0 - x * x * x * (10.0 - 15.0 * x + 6.0 * x * x);
            dsw[e] = -30.0 * x * x * (1.0 - x) * (1.0 - x) / width;
        }
    for (k = 0; k < NTREE[n]; ++k) {
        const int32_t *edge = tree + (n - 1) * k;
        double prod = sw[edge[0]];
        for (p = 1; p < n - 1; ++p)
            prod *= sw[edge[p]];
        s += prod;
        if (ds != NULL)
            for (p = 0; p < n - 1; ++p) {
                double others = 1.0;
                for (q = 0; q < n - 1; ++q)
                    if (q != p)
                        others *= sw[edge[q]];
                dsdsw[edge[p]] += others;
            }
    }
    if (ds == NULL)
        return s;
    for (a = 0; a < 3 * n; ++a)
        ds[a] = 0.0;
    for (a = 0, e = 0; a < n; ++a)
        for (b = a + 1; b < n; ++b, ++e) {
            const double g = dsdsw[e] * dsw[e] / (r[e] > 0.0 ? r[e] : 1.0);
            for (c = 0; c < 3; ++c) {
                ds[3 * a + c] += g * d[3 * e + c];
                ds[3 * b + c] -= g * d[3 * e + c];
            }
        }
    return s;
}

/* Adds term t, summed over every n-subset of the monomers, to *energy and to grad (NULL: energy
   only).  Returns the worst status of the n-mers; work holds NWORK doubles. */
static int add_term(int t, const double *xyz, double *energy, double *grad, double *work)
{
    const int n = TERM_BODY[t], na = n * MSIZE;
    double *xs = work;                     /* gathered n-mers (caller length) */
    double *gs = xs + CHUNK * 3 * MAXATOMS; /* their gradients dV/dxyz */
    double *es = gs + CHUNK * 3 * MAXATOMS; /* their energies V */
    double *sw = es + CHUNK;               /* their cutoff weights s */
    double *dsw = sw + CHUNK;              /* ds/dcentre (1/model length), 3*MAXBODY per n-mer */
    double et = 0.0;
    int sub[CHUNK * MAXBODY], st[CHUNK], c[MAXBODY];
    int i, j, a, k = 0, more = 1, status = 0;

    for (i = 0; i < n; ++i)
        c[i] = i;
    while (more) {
        double s = 1.0;
        if (TERM_CUT[t]) {
            double cen[3 * MAXBODY];
            for (i = 0; i < n; ++i)
                for (a = 0; a < 3; ++a)
                    cen[3 * i + a] = xyz[3 * (c[i] * MSIZE + CENTER) + a] * LENGTH_SCALE;
            s = cutoff(t, n, cen, grad != NULL ? dsw + 3 * MAXBODY * k : NULL);
        }
        if (s > 0.0) {
            for (i = 0; i < n; ++i) {
                memcpy(xs + (size_t) 3 * (k * na + i * MSIZE), xyz + (size_t) 3 * MSIZE * c[i],
                       3 * MSIZE * sizeof(double));
                sub[MAXBODY * k + i] = c[i];
            }
            sw[k++] = s;
        }
        more = next_subset(c, n);
        if (k == CHUNK || (k > 0 && !more)) {
            if (grad != NULL)
                TERM_GRADIENT[t](k, xs, es, gs, st);
            else
                TERM_ENERGY[t](k, xs, es, st);
            for (j = 0; j < k; ++j) {
                if (st[j] > status)
                    status = st[j];
                et += sw[j] * es[j];
                if (grad == NULL)
                    continue;
                for (i = 0; i < n; ++i) {
                    double *gi = grad + (size_t) 3 * MSIZE * sub[MAXBODY * j + i];
                    const double *gj = gs + (size_t) 3 * (j * na + i * MSIZE);
                    for (a = 0; a < 3 * MSIZE; ++a)
                        gi[a] += sw[j] * gj[a];
                    if (TERM_CUT[t])
                        for (a = 0; a < 3; ++a)
                            gi[3 * CENTER + a] += es[j] * dsw[3 * (MAXBODY * j + i) + a] * LENGTH_SCALE;
                }
            }
            if (status >= 2)
                return status;
            k = 0;
        }
    }
    *energy += et;
    return status;
}

/* One cluster; grad == NULL skips the gradient.  work holds NWORK doubles. */
static int eval_cluster(const double *xyz, double *energy, double *grad, double *work)
{
    int i, t, status = 0;

    for (i = 0; i < 3 * NATOMS; ++i)
        if (!isfinite(xyz[i]))
            return finish(energy, grad, 2);
    finish(energy, grad, 0);
    for (t = 0; t < NTERMS && status < 2; ++t) {
        const int st = add_term(t, xyz, energy, grad, work);
        if (st > status)
            status = st;
    }
    if (status >= 2)
        return finish(energy, grad, status);
    if (!isfinite(*energy))
        return finish(energy, grad, 2);
    if (grad != NULL)
        for (i = 0; i < 3 * NATOMS; ++i)
            if (!isfinite(grad[i]))
                return finish(energy, grad, 2);
    return status;
}

static void run(int n, const double *xyz, double *energy, double *grad, int *status)
{
    double *work;
    int s;
    if (n <= 0)
        return;
    work = (double *) malloc(NWORK * sizeof(double));
    if (work == NULL) {
        for (s = 0; s < n; ++s)
            status[s] = finish(energy + s, grad == NULL ? NULL : grad + (size_t) s * 3 * NATOMS, 4);
        return;
    }
    for (s = 0; s < n; ++s)
        status[s] = eval_cluster(xyz + (size_t) s * 3 * NATOMS, energy + s,
                                 grad == NULL ? NULL : grad + (size_t) s * 3 * NATOMS, work);
    free(work);
}

""" + codegen.C_ENTRY_POINTS


# -------------------------------------------------------------- Fortran
_F_DRIVER = r"""module @P@_model
  ! bind(C) entry points (the same interface as the C export):
  !   integer(c_int) function @P@_natoms()
  !   subroutine @P@_energy(xyz, energy, status)
  !   subroutine @P@_energy_gradient(xyz, energy, grad, status)
  !   subroutine @P@_energy_batch(n, xyz, energy, status)              ! n by value
  !   subroutine @P@_energy_gradient_batch(n, xyz, energy, grad, status)
  !   integer(c_int) function @P@_info(buf, len)                       ! len by value
  ! xyz(3, natoms[, n]) and grad(3, natoms[, n]) in the caller's units; one status per geometry,
  ! the worst of its n-mers: 0 ok; 1 outside the fitted range (value returned); 2 non-finite
  ! input/result; 3 coincident atoms (r < 1e-8); 4 no memory.  For 2-4 energy and gradient are 0.
  use, intrinsic :: iso_c_binding, only: c_int, c_int32_t, c_double, c_char, c_null_char
  use, intrinsic :: ieee_arithmetic, only: ieee_is_finite
@USES@  implicit none
  private
  public :: @P@_natoms
  public :: @P@_energy
  public :: @P@_energy_gradient
  public :: @P@_energy_batch
  public :: @P@_energy_gradient_batch
  public :: @P@_info

  integer, parameter :: dp = c_double
  integer, parameter :: natoms = @NATOMS@
  integer, parameter :: nmono = @NMONO@     ! monomers
  integer, parameter :: msize = @MSIZE@     ! atoms per monomer
  integer, parameter :: center = @CENTER@    ! centre atom within a monomer (cutoff distances), 0-based
  integer, parameter :: nterms = @NTERMS@
  integer, parameter :: maxbody = @MAXBODY@   ! largest body order of the terms
  integer, parameter :: maxedge = @MAXEDGE@   ! edges of the largest n-mer (at least 1)
  integer, parameter :: maxatoms = maxbody * msize
  integer, parameter :: chunk = @CHUNK@     ! n-mers per call of a term's batch entry point

  real(dp), parameter :: length_scale = @LSCALE@  ! caller length -> model length (the cutoffs' unit)
  character(len=*), parameter :: info_text = &
      @INFO@

  ! term t: body order n and, if term_cut(t) /= 0, the switch radii (r_on, r_off) on
  ! monomer-centre distances (model length)
@TERM_TABLES@
  ! spanning trees of the complete graph on n monomers, n = 0..maxbody: tree k has the edges
  ! tree_edge(tree_ptr(n) + (n-1)*k + p), p < n-1, numbering the edges (a, b), a < b, in
  ! lexicographic order
@TREE_TABLES@
contains

  ! V_n of k gathered n-mers (caller units) through the batch entry points of term t's unit.
  subroutine term_batch(t, k, xs, es, gs, want_grad, st)
    integer, intent(in) :: t, k
    real(dp), intent(in) :: xs(0:3*maxatoms*chunk-1)
    real(dp), intent(out) :: es(0:chunk-1)
    real(dp), intent(inout) :: gs(0:3*maxatoms*chunk-1)
    logical, intent(in) :: want_grad
    integer(c_int), intent(out) :: st(0:chunk-1)

    select case (t)
@CASES@    end select
  end subroutine term_batch

  ! Advances c(0:n-1) to the next n-subset of 0..nmono-1 in lexicographic order; .false. after the last.
  logical function next_subset(c, n)
    integer, intent(inout) :: c(0:maxbody-1)
    integer, intent(in) :: n
    integer :: i, j

    i = n - 1
    do while (i >= 0)
      if (c(i) /= nmono - n + i) exit
      i = i - 1
    end do
    next_subset = i >= 0
    if (i < 0) return
    c(i) = c(i) + 1
    do j = i + 1, n - 1
      c(j) = c(j - 1) + 1
    end do
  end function next_subset

  ! Cutoff weight s of the n-mer whose monomer centres are cen(:, 0:n-1) (model length): the sum
  ! over its spanning trees of the product of sw(r_e) over the tree's edges, sw the quintic switch
  ! of term t.  With want_grad, ds(:, a) = ds/dcen(:, a) (1/model length), else ds = 0.
  subroutine cutoff(t, n, cen, s, ds, want_grad)
    integer, intent(in) :: t, n
    real(dp), intent(in) :: cen(3, 0:maxbody-1)
    real(dp), intent(out) :: s, ds(3, 0:maxbody-1)
    logical, intent(in) :: want_grad
    real(dp) :: d(3, 0:maxedge-1), r(0:maxedge-1), sw(0:maxedge-1), dsw(0:maxedge-1), dsdsw(0:maxedge-1)
    real(dp) :: x, width, prod, others, g
    integer :: a, b, e, k, p, q, base

    ! zero first: the compilers cannot tell that the loops below set every edge they read
    d = 0.0_dp
    r = 0.0_dp
    sw = 0.0_dp
    dsw = 0.0_dp
    dsdsw = 0.0_dp
    width = term_roff(t) - term_ron(t)
    e = 0
    do a = 0, n - 1
      do b = a + 1, n - 1
        d(:, e) = cen(:, a) - cen(:, b)
        r(e) = sqrt((d(1, e) * d(1, e) + d(2, e) * d(2, e)) + d(3, e) * d(3, e))
        x = min(max((r(e) - term_ron(t)) / width, 0.0_dp), 1.0_dp)
        sw(e) = 1.0_dp - x * x * x * (10.0_dp - 15.0_dp * x + 6.0_dp * x * x)
        dsw(e) = -30.0_dp * x * x * (1.0_dp - x) * (1.0_dp - x) / width
        e = e + 1
      end do
    end do
    s = 0.0_dp
    do k = 0, ntree(n) - 1
      base = tree_ptr(n) + (n - 1) * k
      prod = sw(tree_edge(base))
      do p = 1, n - 2
        prod = prod * sw(tree_edge(base + p))
      end do
      s = s + prod
      if (.not. want_grad) cycle
      do p = 0, n - 2
        others = 1.0_dp
        do q = 0, n - 2
          if (q /= p) others = others * sw(tree_edge(base + q))
        end do
        dsdsw(tree_edge(base + p)) = dsdsw(tree_edge(base + p)) + others
      end do
    end do
    ds = 0.0_dp
    if (.not. want_grad) return
    e = 0
    do a = 0, n - 1
      do b = a + 1, n - 1
        g = dsdsw(e) * dsw(e) / merge(r(e), 1.0_dp, r(e) > 0.0_dp)
        ds(:, a) = ds(:, a) + g * d(:, e)
        ds(:, b) = ds(:, b) - g * d(:, e)
        e = e + 1
      end do
    end do
  end subroutine cutoff

  ! Adds term t, summed over every n-subset of the monomers, to e and (want_grad) grad;
  ! status: the worst of the n-mers'.
  subroutine add_term(t, xyz, e, grad, want_grad, status, xs, gs, es, sw, dsw)
    integer, intent(in) :: t
    real(dp), intent(in) :: xyz(0:3*natoms-1)
    real(dp), intent(inout) :: e, grad(0:3*natoms-1)
    logical, intent(in) :: want_grad
    integer(c_int), intent(out) :: status
    real(dp), intent(inout) :: xs(0:3*maxatoms*chunk-1), gs(0:3*maxatoms*chunk-1)  ! n-mers, gradients
    real(dp), intent(inout) :: es(0:chunk-1), sw(0:chunk-1)  ! their energies V and cutoff weights s
    real(dp), intent(inout) :: dsw(3, 0:maxbody-1, 0:chunk-1)  ! ds/dcentre (1/model length)
    real(dp) :: cen(3, 0:maxbody-1), s, et
    integer(c_int) :: st(0:chunk-1)
    integer :: c(0:maxbody-1), sub(0:maxbody-1, 0:chunk-1)
    integer :: n, na, i, j, k, a, g0, x0
    logical :: more

    n = term_body(t)
    na = n * msize
    status = 0
    et = 0.0_dp
    c = 0
    do i = 0, n - 1
      c(i) = i
    end do
    k = 0
    more = .true.
    do while (more)
      s = 1.0_dp
      if (term_cut(t) /= 0) then
        do i = 0, n - 1
          a = 3 * (c(i) * msize + center)
          cen(:, i) = xyz(a:a + 2) * length_scale
        end do
        call cutoff(t, n, cen, s, dsw(:, :, k), want_grad)
      end if
      if (s > 0.0_dp) then
        do i = 0, n - 1
          x0 = 3 * (k * na + i * msize)
          xs(x0:x0 + 3 * msize - 1) = xyz(3 * msize * c(i):3 * msize * (c(i) + 1) - 1)
          sub(i, k) = c(i)
        end do
        sw(k) = s
        k = k + 1
      end if
      more = next_subset(c, n)
      if (k == chunk .or. (k > 0 .and. .not. more)) then
        call term_batch(t, k, xs, es, gs, want_grad, st)
        do j = 0, k - 1
          status = max(status, st(j))
          et = et + sw(j) * es(j)
          if (.not. want_grad) cycle
          do i = 0, n - 1
            g0 = 3 * msize * sub(i, j)
            x0 = 3 * (j * na + i * msize)
            grad(g0:g0 + 3 * msize - 1) = grad(g0:g0 + 3 * msize - 1) + sw(j) * gs(x0:x0 + 3 * msize - 1)
            if (term_cut(t) /= 0) then
              a = g0 + 3 * center
              grad(a:a + 2) = grad(a:a + 2) + es(j) * dsw(:, i, j) * length_scale
            end if
          end do
        end do
        if (status >= 2) return
        k = 0
      end if
    end do
    e = e + et
  end subroutine add_term

  ! One cluster.
  subroutine eval_cluster(xyz, energy, grad, want_grad, status, xs, gs, es, sw, dsw)
    real(dp), intent(in) :: xyz(0:3*natoms-1)
    real(dp), intent(out) :: energy
    real(dp), intent(inout) :: grad(0:3*natoms-1)
    logical, intent(in) :: want_grad
    integer(c_int), intent(out) :: status
    real(dp), intent(inout) :: xs(0:3*maxatoms*chunk-1), gs(0:3*maxatoms*chunk-1)
    real(dp), intent(inout) :: es(0:chunk-1), sw(0:chunk-1), dsw(3, 0:maxbody-1, 0:chunk-1)
    integer(c_int) :: st
    integer :: t

    energy = 0.0_dp
    if (want_grad) grad = 0.0_dp
    status = 0
    if (.not. all(ieee_is_finite(xyz))) then
      status = 2
      return
    end if
    do t = 0, nterms - 1
      call add_term(t, xyz, energy, grad, want_grad, st, xs, gs, es, sw, dsw)
      status = max(status, st)
      if (status >= 2) exit
    end do
    if (status < 2 .and. .not. ieee_is_finite(energy)) status = 2
    if (status < 2 .and. want_grad) then
      if (.not. all(ieee_is_finite(grad))) status = 2
    end if
    if (status >= 2) then
      energy = 0.0_dp
      if (want_grad) grad = 0.0_dp
    end if
  end subroutine eval_cluster

  subroutine run_batch(n, xyz, energy, grad, want_grad, status)
    integer, intent(in) :: n
    real(dp), intent(in) :: xyz(0:3*natoms-1, 0:n-1)
    real(dp), intent(out) :: energy(0:n-1)
    real(dp), intent(inout) :: grad(0:3*natoms-1, 0:*)
    logical, intent(in) :: want_grad
    integer(c_int), intent(out) :: status(0:n-1)
    real(dp), allocatable :: xs(:), gs(:), es(:), sw(:), dsw(:, :, :), gdummy(:)
    integer :: s, ierr

    allocate(xs(0:3*maxatoms*chunk-1), gs(0:3*maxatoms*chunk-1), es(0:chunk-1), sw(0:chunk-1), &
             dsw(3, 0:maxbody-1, 0:chunk-1), gdummy(0:3*natoms-1), stat=ierr)
    if (ierr /= 0) then
      energy = 0.0_dp
      status = 4
      if (want_grad) grad(:, 0:n-1) = 0.0_dp
      return
    end if
    do s = 0, n - 1
      if (want_grad) then
        call eval_cluster(xyz(:, s), energy(s), grad(:, s), .true., status(s), xs, gs, es, sw, dsw)
      else
        call eval_cluster(xyz(:, s), energy(s), gdummy, .false., status(s), xs, gs, es, sw, dsw)
      end if
    end do
  end subroutine run_batch

""" + codegen.F_ENTRY_POINTS

_F_CASE = """    case ({t})
      if (want_grad) then
        call {u}_energy_gradient_batch(int(k, c_int), xs, es, gs, st)
      else
        call {u}_energy_batch(int(k, c_int), xs, es, st)
      end if
"""


def _trees(max_body: int) -> tuple[list[int], list[int], list[int]]:
    """Spanning-tree tables for n = 0..max_body: counts, offsets and the flattened edge indices."""
    count, ptr, flat = [], [], []
    for n in range(max_body + 1):
        trees = _spanning_trees(n)[1] if n >= 2 else np.zeros((0, 0), dtype=np.int64)
        count.append(len(trees))
        ptr.append(len(flat))
        flat.extend(int(e) for e in trees.ravel())
    return count, ptr, flat or [0]


def cluster_sources(spec: dict, lang: str, prefix: str, comment: str, info: str) -> dict:
    """Texts of the term units and of the cluster driver: ``{role: (file name, text)}``.

    Roles: ``source`` (and ``header``) for the driver, ``b<n>_source`` (and
    ``b<n>_header``) for the unit of body order ``n``.
    """
    cl = spec["cluster"]
    units = cl["units"]
    driver_comment = comment + ("\n\nGenerated by pesfit.export (the many-body driver over the term units); do "
                                "not edit by hand, re-export from the model file.")
    files = {}
    names = []
    for u in units:
        n = u["body"]
        name = f"{prefix}_b{n}"
        names.append(name)
        atoms = " ".join(cl["monomer"] * n)
        unit_comment = (f"{n}-body term V_{n} of the many-body potential '{prefix}' ({u['source']}): the energy of "
                        f"one {n}-mer, atoms {atoms} (monomer after monomer), without the cutoff weight; "
                        "coordinates in bohr, energy in hartree.  Summed over the monomer subsets of a cluster by "
                        f"{prefix}.{'c' if lang == 'c' else 'f90'}.\n\n{comment}")
        kw = dict(prefix=name, header_comment=unit_comment, length_scale=u["length_scale"],
                  energy_scale=u["energy_scale"], r_min=u["r_min"], head=u["head"],
                  info=f"term of {prefix}: body={n}; symbols={','.join(cl['monomer'] * n)}; "
                       f"checksum={spec['checksum']}; kind={spec['kind']}")
        files.update({f"b{n}_{role}": f for role, f in
                      unit_files(lang, u["program"], u["transform"], u["weights"], **kw).items()})
    max_body = units[-1]["body"]
    count, ptr, flat = _trees(max_body)
    body = [u["body"] for u in units]
    cut = [int(u["cutoff"] is not None) for u in units]
    r_on = [0.0 if u["cutoff"] is None else u["cutoff"][0] for u in units]
    r_off = [0.0 if u["cutoff"] is None else u["cutoff"][1] for u in units]
    values = {
        "P": prefix, "NATOMS": str(len(spec["symbols"])), "NMONO": str(cl["n_monomers"]),
        "MSIZE": str(cl["monomer_size"]), "CENTER": str(cl["center"]), "NTERMS": str(len(units)),
        "MAXBODY": str(max_body), "MAXEDGE": str(max(1, max_body * (max_body - 1) // 2)), "CHUNK": str(CHUNK),
    }
    driver_info = (f"generator=pesfit.export many-body driver; prefix={prefix}; natoms={len(spec['symbols'])}; "
                   f"terms={','.join(names)}; length_scale={spec['length_scale']!r}; "
                   f"energy_scale={spec['energy_scale']!r}; {info}")
    if lang == "c":
        values.update(
            LSCALE=repr(spec["length_scale"]), INFO=codegen._c_string(codegen._ascii(driver_info)),
            INCLUDES="".join(f'#include "{nm}.h"\n' for nm in names),
            TERM_TABLES="".join([codegen._c_int_array("TERM_BODY", body), codegen._c_int_array("TERM_CUT", cut),
                                 codegen._c_double_array("TERM_RON", r_on),
                                 codegen._c_double_array("TERM_ROFF", r_off)]),
            ENERGY_FNS=", ".join(f"{nm}_energy_batch" for nm in names),
            GRADIENT_FNS=", ".join(f"{nm}_energy_gradient_batch" for nm in names),
            TREE_TABLES="".join([codegen._c_int_array("NTREE", count), codegen._c_int_array("TREE_PTR", ptr),
                                 codegen._c_int_array("TREE_EDGE", flat)]))
        head = codegen._c_comment(driver_comment)
        files["source"] = (f"{prefix}.c", head + "\n" + codegen._subst(_C_DRIVER, values))
        files["header"] = (f"{prefix}.h", head + "\n" + codegen._subst(codegen._C_HEADER, {
            "P": prefix, "UP": prefix.upper(), "NATOMS": values["NATOMS"],
            "LUNIT": "caller length units", "EUNIT": "caller energy units"}))
    else:
        values.update(
            LSCALE=codegen._f_real(spec["length_scale"]), INFO=codegen._f_string(codegen._ascii(driver_info)),
            USES="".join(f"  use {nm}_model, only: {nm}_energy_batch, {nm}_energy_gradient_batch\n" for nm in names),
            TERM_TABLES="".join([codegen._f_int_array("term_body", body), codegen._f_int_array("term_cut", cut),
                                 codegen._f_double_array("term_ron", r_on),
                                 codegen._f_double_array("term_roff", r_off)]),
            TREE_TABLES="".join([codegen._f_int_array("ntree", count), codegen._f_int_array("tree_ptr", ptr),
                                 codegen._f_int_array("tree_edge", flat)]),
            CASES="".join(_F_CASE.format(t=t, u=nm) for t, nm in enumerate(names)))
        text = codegen._f_comment(driver_comment) + "\n" + codegen._subst(_F_DRIVER, values)
        files["source"] = (f"{prefix}.f90", text)
    return files
