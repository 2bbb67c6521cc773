"""Compiled (Numba) kernels that walk a :class:`~invariants.program.Program`.

One set of kernels, compiled once and cached on disk, serves every basis:

* :func:`evaluate` — basis values ``p(x)`` for a batch of variable vectors;
* :func:`jacobian` — ``dp/dx`` (forward mode);
* :func:`pullback` — ``w . dp/dx`` for per-structure weights ``w`` (reverse
  mode: one forward and one backward sweep, about 2-3x the cost of values);
* :func:`cartesian_values`, :func:`cartesian_pullback` — the same from
  Cartesian coordinates through the distance transform, so that
  ``E = c . p`` and ``dE/dR`` come from one call.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .program import Program
from .transforms import DistanceTransform, valence_variables

__all__ = ["evaluate", "jacobian", "pullback", "cartesian_values", "cartesian_jacobian", "cartesian_pullback"]


@njit(cache=True, nogil=True)
def _forward(x, nm, a, b, scale, const, ptr, idx, coef, v):
    nv = x.shape[0]
    for i in range(nv):
        v[i] = x[i]
    for i in range(nv, nm):
        v[i] = v[a[i]] * v[b[i]]
    for i in range(nm, a.shape[0]):
        s = const[i]
        if a[i] >= 0:
            s += scale[i] * v[a[i]] * v[b[i]]
        for l in range(ptr[i], ptr[i + 1]):
            s += coef[l] * v[idx[l]]
        v[i] = s


@njit(cache=True, nogil=True)
def _backward(nv, nm, a, b, scale, ptr, idx, coef, v, adj):
    """Propagate adjoints (``adj`` holds dL/dv for outputs on entry) to the variables."""
    for i in range(a.shape[0] - 1, nm - 1, -1):
        g = adj[i]
        if g == 0.0:
            continue
        if a[i] >= 0:
            gs = g * scale[i]
            adj[a[i]] += gs * v[b[i]]
            adj[b[i]] += gs * v[a[i]]
        for l in range(ptr[i], ptr[i + 1]):
            adj[idx[l]] += coef[l] * g
    for i in range(nm - 1, nv - 1, -1):
        g = adj[i]
        adj[a[i]] += g * v[b[i]]
        adj[b[i]] += g * v[a[i]]


@njit(cache=True, nogil=True)
def _evaluate_batch(X, nm, a, b, scale, const, ptr, idx, coef, outputs):
    n = X.shape[0]
    out = np.empty((n, outputs.shape[0]))
    v = np.empty(a.shape[0])
    for s in range(n):
        _forward(X[s], nm, a, b, scale, const, ptr, idx, coef, v)
        for j in range(outputs.shape[0]):
            out[s, j] = v[outputs[j]]
    return out


@njit(cache=True, nogil=True)
def _jacobian_batch(X, nm, a, b, scale, const, ptr, idx, coef, outputs):
    n, nv = X.shape
    nn = a.shape[0]
    vals = np.empty((n, outputs.shape[0]))
    jac = np.zeros((n, outputs.shape[0], nv))
    v = np.empty(nn)
    dv = np.zeros((nn, nv))
    for s in range(n):
        _forward(X[s], nm, a, b, scale, const, ptr, idx, coef, v)
        dv[:, :] = 0.0
        for i in range(nv):
            dv[i, i] = 1.0
        for i in range(nv, nn):
            if a[i] >= 0:
                va = v[a[i]] * scale[i]
                vb = v[b[i]] * scale[i]
                for k in range(nv):
                    dv[i, k] = va * dv[b[i], k] + vb * dv[a[i], k]
            for l in range(ptr[i], ptr[i + 1]):
                c = coef[l]
                for k in range(nv):
                    dv[i, k] += c * dv[idx[l], k]
        for j in range(outputs.shape[0]):
            vals[s, j] = v[outputs[j]]
            for k in range(nv):
                jac[s, j, k] = dv[outputs[j], k]
    return vals, jac


@njit(cache=True, nogil=True)
def _pullback_batch(X, W, with_grad, nm, a, b, scale, const, ptr, idx, coef, outputs):
    n, nv = X.shape
    nn = a.shape[0]
    values = np.empty(n)
    grad = np.zeros((n, nv) if with_grad else (0, nv))
    v = np.empty(nn)
    adj = np.empty(nn)
    shared = W.shape[0] == 1
    for s in range(n):
        _forward(X[s], nm, a, b, scale, const, ptr, idx, coef, v)
        w = W[0] if shared else W[s]
        adj[:] = 0.0
        e = 0.0
        for j in range(outputs.shape[0]):
            adj[outputs[j]] += w[j]
            e += w[j] * v[outputs[j]]
        values[s] = e
        if not with_grad:
            continue
        _backward(nv, nm, a, b, scale, ptr, idx, coef, v, adj)
        for k in range(nv):
            grad[s, k] = adj[k]
    return values, grad


@njit(cache=True, nogil=True)
def _transform(r, kind, param, x, dx):
    for k in range(r.shape[0]):
        if kind == 1:
            x[k] = np.exp(-r[k] / param[k])
            dx[k] = -x[k] / param[k]
        elif kind == 2:
            x[k] = 1.0 / r[k]
            dx[k] = -x[k] * x[k]
        elif kind == 3:
            x[k] = param[k] / r[k]
            dx[k] = -x[k] / r[k]
        else:
            x[k] = r[k]
            dx[k] = 1.0


@njit(cache=True, nogil=True)
def _distances(Rs, pi, pj, r, u):
    for k in range(pi.shape[0]):
        d0 = Rs[pi[k], 0] - Rs[pj[k], 0]
        d1 = Rs[pi[k], 1] - Rs[pj[k], 1]
        d2 = Rs[pi[k], 2] - Rs[pj[k], 2]
        rk = np.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
        r[k] = rk
        u[k, 0] = d0 / rk
        u[k, 1] = d1 / rk
        u[k, 2] = d2 / rk


@njit(cache=True, nogil=True)
def _cartesian_values(R, pi, pj, kind, param, nm, a, b, scale, const, ptr, idx, coef, outputs):
    n = R.shape[0]
    nv = pi.shape[0]
    out = np.empty((n, outputs.shape[0]))
    v = np.empty(a.shape[0])
    r = np.empty(nv)
    u = np.empty((nv, 3))
    x = np.empty(nv)
    dx = np.empty(nv)
    for s in range(n):
        _distances(R[s], pi, pj, r, u)
        _transform(r, kind, param, x, dx)
        _forward(x, nm, a, b, scale, const, ptr, idx, coef, v)
        for j in range(outputs.shape[0]):
            out[s, j] = v[outputs[j]]
    return out


@njit(cache=True, nogil=True)
def _cartesian_pullback(R, W, with_grad, pi, pj, kind, param, nm, a, b, scale, const, ptr, idx, coef, outputs):
    n, na, _ = R.shape
    nv = pi.shape[0]
    nn = a.shape[0]
    values = np.empty(n)
    grad = np.zeros((n, na, 3) if with_grad else (0, na, 3))
    v = np.empty(nn)
    adj = np.empty(nn)
    r = np.empty(nv)
    u = np.empty((nv, 3))
    x = np.empty(nv)
    dx = np.empty(nv)
    shared = W.shape[0] == 1
    for s in range(n):
        _distances(R[s], pi, pj, r, u)
        _transform(r, kind, param, x, dx)
        _forward(x, nm, a, b, scale, const, ptr, idx, coef, v)
        w = W[0] if shared else W[s]
        adj[:] = 0.0
        e = 0.0
        for j in range(outputs.shape[0]):
            adj[outputs[j]] += w[j]
            e += w[j] * v[outputs[j]]
        values[s] = e
        if not with_grad:
            continue
        _backward(nv, nm, a, b, scale, ptr, idx, coef, v, adj)
        for k in range(nv):
            g = adj[k] * dx[k]
            for c in range(3):
                grad[s, pi[k], c] += g * u[k, c]
                grad[s, pj[k], c] -= g * u[k, c]
    return values, grad


@njit(cache=True, nogil=True)
def _cartesian_jacobian(R, pi, pj, kind, param, nm, a, b, scale, const, ptr, idx, coef, outputs):
    n, na, _ = R.shape
    nv = pi.shape[0]
    nn = a.shape[0]
    no = outputs.shape[0]
    vals = np.empty((n, no))
    jac = np.zeros((n, no, na, 3))
    v = np.empty(nn)
    dv = np.zeros((nn, nv))
    r = np.empty(nv)
    u = np.empty((nv, 3))
    x = np.empty(nv)
    dx = np.empty(nv)
    for s in range(n):
        _distances(R[s], pi, pj, r, u)
        _transform(r, kind, param, x, dx)
        _forward(x, nm, a, b, scale, const, ptr, idx, coef, v)
        dv[:, :] = 0.0
        for i in range(nv):
            dv[i, i] = dx[i]
        for i in range(nv, nn):
            if a[i] >= 0:
                va = v[a[i]] * scale[i]
                vb = v[b[i]] * scale[i]
                for k in range(nv):
                    dv[i, k] = va * dv[b[i], k] + vb * dv[a[i], k]
            for l in range(ptr[i], ptr[i + 1]):
                c = coef[l]
                for k in range(nv):
                    dv[i, k] += c * dv[idx[l], k]
        for j in range(no):
            o = outputs[j]
            vals[s, j] = v[o]
            for k in range(nv):
                g = dv[o, k]
                if g != 0.0:
                    for c in range(3):
                        jac[s, j, pi[k], c] += g * u[k, c]
                        jac[s, j, pj[k], c] -= g * u[k, c]
    return vals, jac


#: geometries evaluated together by the batched kernels: each table entry is
#: loaded once per block and the arithmetic runs as short SIMD loops
LANES = 8


@njit(cache=True, nogil=True)
def _forward_lanes(nv, nm, a, b, scale, const, ptr, idx, coef, v):
    """Forward sweep over ``LANES`` geometries at once; ``v[:nv]`` holds the variables."""
    for i in range(nv, nm):
        ai = a[i]
        bi = b[i]
        for l in range(LANES):
            v[i, l] = v[ai, l] * v[bi, l]
    for i in range(nm, a.shape[0]):
        c0 = const[i]
        for l in range(LANES):
            v[i, l] = c0
        if a[i] >= 0:
            ai = a[i]
            bi = b[i]
            sc = scale[i]
            for l in range(LANES):
                v[i, l] += sc * v[ai, l] * v[bi, l]
        for t in range(ptr[i], ptr[i + 1]):
            j = idx[t]
            c = coef[t]
            for l in range(LANES):
                v[i, l] += c * v[j, l]


@njit(cache=True, nogil=True)
def _backward_lanes(nv, nm, a, b, scale, ptr, idx, coef, v, adj):
    """Reverse sweep over ``LANES`` geometries; ``adj`` holds output adjoints on entry."""
    for i in range(a.shape[0] - 1, nm - 1, -1):
        for t in range(ptr[i], ptr[i + 1]):
            j = idx[t]
            c = coef[t]
            for l in range(LANES):
                adj[j, l] += c * adj[i, l]
        if a[i] >= 0:
            ai = a[i]
            bi = b[i]
            sc = scale[i]
            for l in range(LANES):
                g = adj[i, l] * sc
                adj[ai, l] += g * v[bi, l]
                adj[bi, l] += g * v[ai, l]
    for i in range(nm - 1, nv - 1, -1):
        ai = a[i]
        bi = b[i]
        for l in range(LANES):
            g = adj[i, l]
            adj[ai, l] += g * v[bi, l]
            adj[bi, l] += g * v[ai, l]


@njit(cache=True, nogil=True)
def _seed_outputs(W, s0, m, outputs, v, adj, with_grad, values):
    """``values = W . p`` for one block and, for the reverse sweep, ``adj[outputs] = W``."""
    shared = W.shape[0] == 1
    if with_grad:
        adj[:, :] = 0.0
    for l in range(m):
        row = 0 if shared else s0 + l
        e = 0.0
        for j in range(outputs.shape[0]):
            w = W[row, j]
            e += w * v[outputs[j], l]
            if with_grad:
                adj[outputs[j], l] += w
        values[s0 + l] = e


@njit(cache=True, nogil=True)
def _pullback_lanes(X, W, with_grad, nm, a, b, scale, const, ptr, idx, coef, outputs):
    n, nv = X.shape
    nn = a.shape[0]
    v = np.empty((nn, LANES))
    adj = np.empty((nn, LANES))
    values = np.empty(n)
    grad = np.zeros((n, nv) if with_grad else (0, nv))
    for s0 in range(0, n, LANES):
        m = min(LANES, n - s0)
        for i in range(nv):
            for l in range(LANES):
                v[i, l] = X[s0 + l, i] if l < m else X[s0, i]
        _forward_lanes(nv, nm, a, b, scale, const, ptr, idx, coef, v)
        _seed_outputs(W, s0, m, outputs, v, adj, with_grad, values)
        if with_grad:
            _backward_lanes(nv, nm, a, b, scale, ptr, idx, coef, v, adj)
            for l in range(m):
                for k in range(nv):
                    grad[s0 + l, k] = adj[k, l]
    return values, grad


@njit(cache=True, nogil=True)
def _cartesian_pullback_lanes(R, W, with_grad, pi, pj, kind, param, nm, a, b, scale, const, ptr, idx, coef,
                              outputs):
    n, na, _ = R.shape
    nv = pi.shape[0]
    nn = a.shape[0]
    v = np.empty((nn, LANES))
    adj = np.empty((nn, LANES))
    values = np.empty(n)
    grad = np.zeros((n, na, 3) if with_grad else (0, na, 3))
    r = np.empty(nv)
    u = np.empty((LANES, nv, 3))
    x = np.empty(nv)
    dx = np.empty((LANES, nv))
    for s0 in range(0, n, LANES):
        m = min(LANES, n - s0)
        for l in range(LANES):
            s = s0 + min(l, m - 1)
            _distances(R[s], pi, pj, r, u[l])
            _transform(r, kind, param, x, dx[l])
            for i in range(nv):
                v[i, l] = x[i]
        _forward_lanes(nv, nm, a, b, scale, const, ptr, idx, coef, v)
        _seed_outputs(W, s0, m, outputs, v, adj, with_grad, values)
        if with_grad:
            _backward_lanes(nv, nm, a, b, scale, ptr, idx, coef, v, adj)
            for l in range(m):
                for k in range(nv):
                    g = adj[k, l] * dx[l, k]
                    for c in range(3):
                        grad[s0 + l, pi[k], c] += g * u[l, k, c]
                        grad[s0 + l, pj[k], c] -= g * u[l, k, c]
    return values, grad


def _tables(prog: Program):
    return (prog.n_monomial_end, prog.a, prog.b, prog.scale, prog.const, prog.ptr, prog.idx, prog.coef, prog.outputs)


def _as_batch(X, n_variables):
    X = np.ascontiguousarray(X, dtype=np.float64)
    single = X.ndim == 1
    if single:
        X = X[None, :]
    if X.ndim != 2 or X.shape[1] != n_variables:
        raise ValueError(f"expected variables of shape (n, {n_variables}), got {X.shape}")
    return X, single


def evaluate(prog: Program, X) -> np.ndarray:
    """Basis values, shape (n, n_outputs) (or (n_outputs,) for one vector)."""
    X, single = _as_batch(X, prog.n_variables)
    out = _evaluate_batch(X, *_tables(prog))
    return out[0] if single else out


def jacobian(prog: Program, X):
    """Values (n, n_out) and Jacobian ``dp/dx`` (n, n_out, n_variables)."""
    X, single = _as_batch(X, prog.n_variables)
    vals, jac = _jacobian_batch(X, *_tables(prog))
    return (vals[0], jac[0]) if single else (vals, jac)


def _weights(W, n, n_out):
    W = np.ascontiguousarray(W, dtype=np.float64)
    if W.ndim == 1:
        W = W[None, :]
    if W.shape[1] != n_out or W.shape[0] not in (1, n):
        raise ValueError(f"weights must have shape ({n_out},) or ({n}, {n_out}), got {W.shape}")
    return W


def pullback(prog: Program, X, W, *, gradient: bool = True):
    """``sum_j W[j] p_j(x)`` and its gradient with respect to ``x`` (reverse mode).

    ``W`` of shape (n_outputs,) is shared by all structures; (n, n_outputs)
    gives one weight vector per structure.  Returns values (n,) and
    gradients (n, n_variables); with ``gradient=False`` only the values.
    """
    X, single = _as_batch(X, prog.n_variables)
    W = _weights(W, X.shape[0], prog.n_outputs)
    kernel = _pullback_lanes if X.shape[0] >= LANES else _pullback_batch
    vals, grad = kernel(X, W, gradient, *_tables(prog))
    if not gradient:
        return vals[0] if single else vals
    return (vals[0], grad[0]) if single else (vals, grad)


def _coordinates(R, n_variables):
    """``R`` as a C-contiguous (n, N, 3) float array whose N(N-1)/2 distances match the basis."""
    R = np.ascontiguousarray(R, dtype=np.float64)
    if R.ndim == 2:
        R = R[None]
    if R.ndim != 3 or R.shape[2] != 3:
        raise ValueError(f"coordinates must have shape (n_structures, n_atoms, 3), got {R.shape}")
    na = R.shape[1]
    if na * (na - 1) // 2 != n_variables:
        raise ValueError(f"basis expects {n_variables} distances; coordinates have {na} atoms")
    return R


def _cartesian_args(R, transform: DistanceTransform, n_variables):
    R = _coordinates(R, n_variables)
    pi, pj = np.triu_indices(R.shape[1], k=1)
    return R, pi.astype(np.int64), pj.astype(np.int64), transform.code, transform.parameters(n_variables)


def cartesian_values(prog: Program, transform: DistanceTransform, R) -> np.ndarray:
    """Basis values from Cartesian coordinates ``R`` (n, N, 3), shape (n, n_outputs)."""
    if transform.kind == "valence":
        return evaluate(prog, valence_variables(_coordinates(R, prog.n_variables), transform))
    R, pi, pj, kind, param = _cartesian_args(R, transform, prog.n_variables)
    return _cartesian_values(R, pi, pj, kind, param, *_tables(prog))


def cartesian_jacobian(prog: Program, transform: DistanceTransform, R):
    """Values (n, n_outputs) and ``dp/dR`` (n, n_outputs, N, 3) (forward mode)."""
    if transform.kind == "valence":
        X, dXdR = valence_variables(_coordinates(R, prog.n_variables), transform, gradient=True)
        vals, dpdx = jacobian(prog, X)
        return vals, np.einsum("nbk,nkad->nbad", dpdx, dXdR)
    R, pi, pj, kind, param = _cartesian_args(R, transform, prog.n_variables)
    return _cartesian_jacobian(R, pi, pj, kind, param, *_tables(prog))


def cartesian_pullback(prog: Program, transform: DistanceTransform, R, W, *, gradient: bool = True):
    """``E = W . p`` and ``dE/dR`` (n, N, 3) from Cartesian coordinates.

    The chain rule: ``dE/dR_i = sum_(i,j) (dE/dx_ij)(dx/dr_ij)(R_i - R_j)/r_ij``
    and the opposite for atom ``j``.  With ``gradient=False`` only ``E``.
    """
    if transform.kind == "valence":
        R = _coordinates(R, prog.n_variables)
        if not gradient:
            return pullback(prog, valence_variables(R, transform), W, gradient=False)
        X, dXdR = valence_variables(R, transform, gradient=True)
        values, gx = pullback(prog, X, W, gradient=True)
        return values, np.einsum("nk,nkad->nad", gx, dXdR)
    R, pi, pj, kind, param = _cartesian_args(R, transform, prog.n_variables)
    W = _weights(W, R.shape[0], prog.n_outputs)
    kernel = _cartesian_pullback_lanes if R.shape[0] >= LANES else _cartesian_pullback
    values, grad = kernel(R, W, gradient, pi, pj, kind, param, *_tables(prog))
    return (values, grad) if gradient else values
