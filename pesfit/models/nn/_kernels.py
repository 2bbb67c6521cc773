"""Compiled (Numba) energy and forces of PIP-NN / FI-NN models from Cartesian coordinates.

One kernel per structure: distances -> distance transform -> basis program
(forward sweep, :mod:`invariants.evaluate`) -> standardised inputs ->
network of every ensemble member (forward, then backward to ``dE/dp``) ->
basis program (reverse sweep) -> ``dE/dR``.  With the basis adjoints
``pbar_j = dE/dp_j = e_scale (dy/dz_j) / x_scale_j`` the Cartesian gradient
is the pull-back used by the linear model,

    dE/dR_i = sum_(i<j) (dE/dx_ij) (dx/dr_ij) (R_i - R_j) / r_ij   (and minus that for atom j),

where ``dE/dx`` comes from the reverse sweep seeded with ``pbar``.  Ensemble
members share the basis; their adjoints are averaged before the one reverse
sweep unless per-member gradients are asked for.  The plain-NumPy reference
is :func:`pesfit.models.nn.network.energy_and_input_gradient` with
:meth:`invariants.Basis.cartesian_jacobian`.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from invariants.evaluate import _backward, _distances, _forward, _tables, _transform

__all__ = ["kernel_arguments", "nn_energy_and_gradient"]


@njit(cache=True, nogil=True)
def _act(s, code):
    """Activation value and first derivative."""
    if code == 0:
        a = np.tanh(s)
        return a, 1.0 - a * a
    if code == 1:
        a = max(s, 0.0) + np.log1p(np.exp(-abs(s)))
        return a, 0.5 * (1.0 + np.tanh(0.5 * s))
    a = 0.5 * (1.0 + np.tanh(0.5 * s))
    return a, a * (1.0 - a)


@njit(cache=True, nogil=True)
def _network(z, theta, sizes, code, acts, d1s, delta, out, dz, with_grad):
    """Scaled energy of one network at inputs ``z``; ``dz`` receives ``dy/dz`` when ``with_grad``.

    ``acts``, ``d1s`` (total hidden units), ``delta`` and ``out`` (widest layer) are work arrays.
    """
    nl = sizes.shape[0] - 1          # number of weight layers (hidden + output)
    k = 0                             # offset into theta
    h = 0                             # offset into acts/d1s (hidden units)
    prev = -1                         # offset of the previous layer's activations (-1: inputs z)
    for l in range(nl - 1):
        n_in, n_out = sizes[l], sizes[l + 1]
        bk = k + n_out * n_in
        for i in range(n_out):
            s = theta[bk + i]
            row = k + i * n_in
            if prev < 0:
                for j in range(n_in):
                    s += theta[row + j] * z[j]
            else:
                for j in range(n_in):
                    s += theta[row + j] * acts[prev + j]
            a, d = _act(s, code)
            acts[h + i] = a
            d1s[h + i] = d
        k = bk + n_out
        prev = h
        h += n_out
    n_in = sizes[nl - 1]
    y = theta[k + n_in]
    for j in range(n_in):
        y += theta[k + j] * acts[prev + j]
    if not with_grad:
        return y
    # backward: delta_L = sigma'(s_L) w_o, delta_(l-1) = sigma'(s_(l-1)) W_l^T delta_l
    for j in range(n_in):
        delta[j] = d1s[prev + j] * theta[k + j]
    for l in range(nl - 2, -1, -1):
        n_in, n_out = sizes[l], sizes[l + 1]
        k -= n_out * (n_in + 1)
        prev -= n_in if l > 0 else 0
        for j in range(n_in):
            out[j] = 0.0
        for i in range(n_out):
            di = delta[i]
            row = k + i * n_in
            for j in range(n_in):
                out[j] += theta[row + j] * di
        if l > 0:
            for j in range(n_in):
                delta[j] = out[j] * d1s[prev + j]
        else:
            for j in range(n_in):
                dz[j] = out[j]
    return y


@njit(cache=True)
def _nn_cartesian(R, with_grad, per_member, pi, pj, kind, param, nm, a, b, scale, const, ptr, idx, coef, outputs,
                  feature, x_mean, x_scale, sizes, code, thetas, e_shift, e_scale):
    n, na, _ = R.shape
    nv = pi.shape[0]
    nn = a.shape[0]
    nk = thetas.shape[0]
    d0 = feature.shape[0]
    n_hidden = 0
    for l in range(1, sizes.shape[0] - 1):
        n_hidden += sizes[l]
    energies = np.empty((n, nk))
    ng = nk if per_member else 1
    grad = np.zeros((n, ng, na, 3) if with_grad else (0, ng, na, 3))
    v = np.empty(nn)
    adj = np.empty(nn)
    r = np.empty(nv)
    u = np.empty((nv, 3))
    x = np.empty(nv)
    dx = np.empty(nv)
    z = np.empty(d0)
    dz = np.empty(d0)
    pbar = np.empty(d0)
    acts = np.empty(n_hidden)
    d1s = np.empty(n_hidden)
    width = 0
    for l in range(sizes.shape[0]):
        width = max(width, sizes[l])
    delta = np.empty(width)
    out = np.empty(width)
    for s in range(n):
        _distances(R[s], pi, pj, r, u)
        _transform(r, kind, param, x, dx)
        _forward(x, nm, a, b, scale, const, ptr, idx, coef, v)
        for j in range(d0):
            z[j] = (v[outputs[feature[j]]] - x_mean[j]) / x_scale[j]
        pbar[:] = 0.0
        for m in range(nk):
            y = _network(z, thetas[m], sizes, code, acts, d1s, delta, out, dz, with_grad)
            energies[s, m] = e_shift + e_scale * y
            if not with_grad:
                continue
            if per_member:
                adj[:] = 0.0
                for j in range(d0):
                    adj[outputs[feature[j]]] += e_scale * dz[j] / x_scale[j]
                _backward(nv, nm, a, b, scale, ptr, idx, coef, v, adj)
                for k in range(nv):
                    gk = adj[k] * dx[k]
                    for c in range(3):
                        grad[s, m, pi[k], c] += gk * u[k, c]
                        grad[s, m, pj[k], c] -= gk * u[k, c]
            else:
                for j in range(d0):
                    pbar[j] += dz[j]
        if with_grad and not per_member:
            adj[:] = 0.0
            for j in range(d0):
                adj[outputs[feature[j]]] += e_scale * (pbar[j] / nk) / x_scale[j]
            _backward(nv, nm, a, b, scale, ptr, idx, coef, v, adj)
            for k in range(nv):
                gk = adj[k] * dx[k]
                for c in range(3):
                    grad[s, 0, pi[k], c] += gk * u[k, c]
                    grad[s, 0, pj[k], c] -= gk * u[k, c]
    return energies, grad


def kernel_arguments(program, transform, n_atoms, feature, x_mean, x_scale, sizes, activation_code, thetas,
                     e_shift, e_scale) -> tuple:
    """The fixed arguments of the compiled kernel (prepared once per model)."""
    pi, pj = np.triu_indices(n_atoms, k=1)
    return (pi.astype(np.int64), pj.astype(np.int64), transform.code, transform.parameters(program.n_variables),
            *_tables(program), np.ascontiguousarray(feature, dtype=np.int64),
            np.ascontiguousarray(x_mean, dtype=np.float64), np.ascontiguousarray(x_scale, dtype=np.float64),
            np.ascontiguousarray(sizes, dtype=np.int64), int(activation_code),
            np.ascontiguousarray(np.atleast_2d(thetas), dtype=np.float64), float(e_shift), float(e_scale))


def nn_energy_and_gradient(R, args, *, gradient=True, per_member=False):
    """Member energies (n, n_members) [eV] and ``dE/dR`` [eV/Å] for coordinates ``R`` (n, N, 3) [Å].

    ``args`` comes from :func:`kernel_arguments`.  The gradient has shape
    (n, 1, N, 3) (of the member mean) or, with ``per_member``, (n, n_members, N, 3).
    """
    R = np.ascontiguousarray(R, dtype=np.float64)
    return _nn_cartesian(R, bool(gradient), bool(per_member), *args)
