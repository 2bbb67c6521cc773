"""Multilayer perceptrons on standardised invariants: the network as data, in plain NumPy.

A network of ``L`` hidden layers maps standardised inputs ``z`` (d0,) to one
scaled energy

    a_0 = z,   s_l = W_l a_(l-1) + b_l,   a_l = sigma(s_l)   (l = 1..L),
    y = w_o . a_L + b_o,

and its input gradient follows by the chain rule (reverse mode):

    delta_L = sigma'(s_L) * w_o,   delta_(l-1) = sigma'(s_(l-1)) * (W_l^T delta_l),   dy/dz = W_1^T delta_1.

Parameters are stored as one flat float64 vector, layer after layer, each
weight matrix ``W_l`` of shape (n_l, n_(l-1)) row-major followed by its bias;
the last "layer" is the linear output (1, n_L).  An ensemble is a matrix of
flat vectors (n_members, n_parameters) sharing one architecture.

This module is the plain-NumPy reference for the compiled kernels in
:mod:`._kernels` and is shared by training and prediction; it never imports
torch.
"""
from __future__ import annotations

import numpy as np

__all__ = ["ACTIVATIONS", "layer_sizes", "n_parameters", "unflatten", "init_parameters", "activate",
           "forward", "energy_and_input_gradient"]

#: activation name -> integer code used by the compiled kernels
ACTIVATIONS = {"tanh": 0, "softplus": 1, "sigmoid": 2}


def layer_sizes(n_inputs: int, hidden) -> tuple[int, ...]:
    """Sizes ``(d0, n_1, ..., n_L, 1)`` of a network with hidden layers ``hidden``."""
    return (int(n_inputs), *(int(h) for h in hidden), 1)


def n_parameters(sizes) -> int:
    """Number of weights and biases of a network with layer ``sizes``."""
    return int(sum(sizes[i + 1] * (sizes[i] + 1) for i in range(len(sizes) - 1)))


def unflatten(theta: np.ndarray, sizes) -> list[tuple[np.ndarray, np.ndarray]]:
    """Views ``[(W_1, b_1), ..., (W_o, b_o)]`` into a flat parameter vector."""
    out, k = [], 0
    for i in range(len(sizes) - 1):
        n_in, n_out = sizes[i], sizes[i + 1]
        W = theta[k:k + n_out * n_in].reshape(n_out, n_in)
        k += n_out * n_in
        out.append((W, theta[k:k + n_out]))
        k += n_out
    if k != theta.shape[-1]:
        raise ValueError(f"network of layer sizes {tuple(sizes)} has {k} parameters, got {theta.shape[-1]}")
    return out


def init_parameters(sizes, rng: np.random.Generator) -> np.ndarray:
    """Glorot-uniform weights and zero biases (deterministic for a given ``rng``)."""
    parts = []
    for i in range(len(sizes) - 1):
        n_in, n_out = sizes[i], sizes[i + 1]
        limit = np.sqrt(6.0 / (n_in + n_out))
        parts.append(rng.uniform(-limit, limit, size=n_out * n_in))
        parts.append(np.zeros(n_out))
    return np.concatenate(parts)


def activate(s: np.ndarray, activation: str, order: int = 1):
    """``sigma(s)`` and its derivatives up to ``order`` (1 or 2), elementwise.

    * tanh: ``sigma' = 1 - sigma^2``, ``sigma'' = -2 sigma sigma'``;
    * softplus ``log(1 + e^s)``: ``sigma' = logistic(s)``, ``sigma'' = sigma'(1 - sigma')``;
    * sigmoid (logistic): ``sigma' = sigma(1 - sigma)``, ``sigma'' = sigma'(1 - 2 sigma)``.
    """
    if activation == "tanh":
        a = np.tanh(s)
        d1 = 1.0 - a * a
        d2 = -2.0 * a * d1
    elif activation == "softplus":
        a = np.logaddexp(0.0, s)
        d1 = 0.5 * (1.0 + np.tanh(0.5 * s))
        d2 = d1 * (1.0 - d1)
    elif activation == "sigmoid":
        a = 0.5 * (1.0 + np.tanh(0.5 * s))
        d1 = a * (1.0 - a)
        d2 = d1 * (1.0 - 2.0 * a)
    else:
        raise ValueError(f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
    return (a, d1) if order == 1 else (a, d1, d2)


def forward(theta: np.ndarray, sizes, activation: str, Z: np.ndarray) -> np.ndarray:
    """Scaled energies ``y`` (n,) of one network at standardised inputs ``Z`` (n, d0)."""
    layers = unflatten(theta, sizes)
    a = Z
    for W, b in layers[:-1]:
        a = activate(a @ W.T + b, activation)[0]
    W, b = layers[-1]
    return a @ W[0] + b[0]


def energy_and_input_gradient(theta: np.ndarray, sizes, activation: str, Z: np.ndarray):
    """Scaled energies ``y`` (n,) and ``dy/dz`` (n, d0) of one network (forward + backward pass)."""
    layers = unflatten(theta, sizes)
    a = Z
    derivs = []
    for W, b in layers[:-1]:
        a, d1 = activate(a @ W.T + b, activation)
        derivs.append(d1)
    W_o, b_o = layers[-1]
    y = a @ W_o[0] + b_o[0]
    delta = derivs[-1] * W_o[0]
    for l in range(len(derivs) - 1, 0, -1):
        delta = derivs[l - 1] * (delta @ layers[l][0])
    return y, delta @ layers[0][0]
