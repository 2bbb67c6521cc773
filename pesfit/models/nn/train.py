"""Training PIP-NN / FI-NN networks with torch: Levenberg-Marquardt, L-BFGS and Adam.

The problem (built by :class:`~pesfit.models.nn.PIPNNModel`) is given in
scaled units: standardised inputs ``Z`` (n, d0), scaled energies ``y`` (n,)
and, with forces, the input Jacobians ``K`` (n, d0, m) and scaled energy
gradients ``g`` (n, m) in ``m`` directions per structure.  The loss is

    L(theta) = (1/n) sum_i [ (y_i(theta) - y_i)^2 + rho^2 |K_i^T dy/dz(z_i; theta) - g_i|^2 ],

``rho`` [Å] the force weight.  The directions are an orthonormal basis of
the internal (non-rigid) motions of each structure, so ``|.|`` equals the
Cartesian norm for rigid-motion-free forces with fewer residual rows.
With a Huber threshold ``c`` the force term of a structure becomes
``rho^2 h(|dg_i|)``, ``h(x) = x^2`` for ``x <= c`` and ``2 c x - c^2`` beyond,
so that a few structures with forces no smooth surface can follow (data
errors, wild corners of the source surface) cannot dominate the loss.

Levenberg-Marquardt works on the residual vector ``r = [y - y_ref, rho (g - g_ref)]``
and its Jacobian ``J = dr/dtheta`` (built by hand, a second-order pass
through the network for the force rows: see :func:`residual_jacobian`).
Each epoch forms ``A = J^T W J`` and ``b = J^T W r`` in chunks of structures
(``W`` the Huber weights ``min(1, c / |dg_i|)`` of the force rows, fixed
within the epoch, i.e. iteratively reweighted least squares; ``b`` is the
exact gradient of the robust loss), solves ``(A + mu I) delta = -b`` by
Cholesky, and accepts the step when the loss falls (then ``mu *= mu_dec``),
else raises ``mu`` (``mu *= mu_inc``) and solves again.  The loss is
therefore non-increasing.  L-BFGS and Adam use torch
autograd on the same loss.  All optimisers stop early when the validation
loss has not improved for ``patience`` epochs and return the parameters of
the best validation epoch.  Everything is float64 and deterministic for a
fixed seed.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from .network import init_parameters

__all__ = ["TrainingProblem", "TrainOptions", "network_outputs", "residual_jacobian", "normal_equations",
           "train_network", "train_ensemble", "OPTIMIZERS"]

OPTIMIZERS = ("lm", "lbfgs", "adam")
DTYPE = torch.float64


@dataclass
class TrainingProblem:
    """Scaled training data (NumPy arrays, converted to torch inside)."""

    Z: np.ndarray                  # (n, d0) standardised inputs
    y: np.ndarray                  # (n,) scaled energies
    K: np.ndarray | None = None    # (n, d0, m) input Jacobians in internal directions
    g: np.ndarray | None = None    # (n, m) scaled gradients in the same directions
    force_weight: float = 0.0      # rho [Å]
    huber: float | None = None     # Huber threshold c on |dg_i| (scaled units), None: plain least squares
    n_cartesian: int = 0           # 3N, for reporting force RMSE per Cartesian component
    energy_meV: float = 1.0        # meV per scaled energy unit, for messages


@dataclass
class TrainOptions:
    """Network shape and optimiser settings (``mu_*``: Levenberg-Marquardt damping schedule)."""

    sizes: tuple
    activation: str = "tanh"
    optimizer: str = "lm"
    max_epochs: int = 300
    patience: int = 30
    seed: int = 0
    validation_fraction: float = 0.1
    learning_rate: float = 1e-3
    batch_size: int = 64
    mu_init: float = 1e-2
    mu_dec: float = 0.3
    mu_inc: float = 10.0
    mu_max: float = 1e10
    chunk_rows: int = 6000
    threads: int | None = None


# ---------------------------------------------------------------- network (torch)
def _layers(theta, sizes):
    out, k = [], 0
    for i in range(len(sizes) - 1):
        n_in, n_out = sizes[i], sizes[i + 1]
        W = theta[k:k + n_out * n_in].view(n_out, n_in)
        k += n_out * n_in
        out.append((W, theta[k:k + n_out]))
        k += n_out
    return out


def _activate(s, activation, order=1):
    if activation == "tanh":
        a = torch.tanh(s)
        d1 = 1.0 - a * a
        if order == 1:
            return a, d1
        return a, d1, -2.0 * a * d1
    if activation == "softplus":
        a = torch.nn.functional.softplus(s)
        d1 = 0.5 * (1.0 + torch.tanh(0.5 * s))
    elif activation == "sigmoid":
        a = 0.5 * (1.0 + torch.tanh(0.5 * s))
        d1 = a * (1.0 - a)
    else:
        raise ValueError(f"unknown activation {activation!r}")
    if order == 1:
        return a, d1
    d2 = d1 * (1.0 - d1) if activation == "softplus" else d1 * (1.0 - 2.0 * a)
    return a, d1, d2


def network_outputs(theta, sizes, activation, Z, K=None):
    """Scaled energies (n,) and, with ``K`` (n, d0, m), gradients ``K^T dy/dz`` (n, m) (differentiable).

    The gradient is carried forward with the tangents ``T_l = sigma'(s_l) * (W_l T_(l-1))``,
    ``T_0 = K``, so that ``dy/dR = w_o . T_L``.
    """
    layers = _layers(theta, sizes)
    a, T = Z, K
    for W, b in layers[:-1]:
        a, d1 = _activate(a @ W.T + b, activation)
        if T is not None:
            T = d1.unsqueeze(2) * torch.matmul(W, T)
    w_o, b_o = layers[-1]
    y = a @ w_o[0] + b_o[0]
    if T is None:
        return y, None
    return y, torch.einsum("i,bim->bm", w_o[0], T)


def residual_jacobian(theta, sizes, activation, Z, y_ref, K=None, g_ref=None, rho=0.0):
    """Residuals ``r`` and their Jacobian ``J = dr/dtheta`` for a chunk of structures, by hand.

    Rows per structure: the energy residual ``y - y_ref``, then (with ``K``)
    the ``m`` force residuals ``rho (w_o . T_L - g_ref)``.  Energy rows are
    ordinary back-propagation.  For a force row (one direction ``c``) the
    graph is ``s_l = W_l a_(l-1) + b_l``, ``u_l = W_l t_(l-1)``,
    ``t_l = sigma'(s_l) u_l``, ``f = w_o . t_L``; its reverse sweep is

        tbar_L = w_o,  abar_L = 0,
        ubar_l = sigma'(s_l) tbar_l,
        sbar_l = sigma''(s_l) u_l tbar_l + sigma'(s_l) abar_l,
        Wbar_l = ubar_l t_(l-1)^T + sbar_l a_(l-1)^T,   bbar_l = sbar_l,
        tbar_(l-1) = W_l^T ubar_l,   abar_(l-1) = W_l^T sbar_l,
        wbar_o = t_L.

    Returns ``r`` (B (1 + m),) and ``J`` (B (1 + m), n_parameters).
    """
    layers = _layers(theta, sizes)
    nh = len(layers) - 1
    B = Z.shape[0]
    m = 0 if K is None else K.shape[2]
    acts, d1s, d2s, Us, Ts = [Z], [], [], [], [K]
    for W, b in layers[:-1]:
        a, d1, d2 = _activate(acts[-1] @ W.T + b, activation, 2)
        acts.append(a)
        d1s.append(d1)
        d2s.append(d2)
        if K is not None:
            U = torch.matmul(W, Ts[-1])
            Us.append(U)
            Ts.append(d1.unsqueeze(2) * U)
    w_o = layers[-1][0][0]
    y = acts[-1] @ w_o + layers[-1][1][0]
    offsets = np.cumsum([0] + [sizes[i + 1] * (sizes[i] + 1) for i in range(len(sizes) - 1)])
    J = torch.empty(B, 1 + m, int(offsets[-1]), dtype=Z.dtype)
    # energy rows: back-propagation of y
    o = offsets[nh]
    J[:, 0, o:o + sizes[-2]] = acts[-1]
    J[:, 0, o + sizes[-2]] = 1.0
    delta = d1s[-1] * w_o
    for l in range(nh - 1, -1, -1):
        n_out, n_in = sizes[l + 1], sizes[l]
        o = offsets[l]
        J[:, 0, o:o + n_out * n_in].view(B, n_out, n_in).copy_(delta.unsqueeze(2) * acts[l].unsqueeze(1))
        J[:, 0, o + n_out * n_in:o + n_out * (n_in + 1)] = delta
        if l > 0:
            delta = d1s[l - 1] * (delta @ layers[l][0])
    rE = y - y_ref
    if K is None:
        return rE, J[:, 0, :]
    # force rows: reverse sweep of f = w_o . t_L (see docstring)
    g = torch.einsum("i,bim->bm", w_o, Ts[-1])
    o = offsets[nh]
    J[:, 1:, o:o + sizes[-2]] = Ts[-1].transpose(1, 2)
    J[:, 1:, o + sizes[-2]] = 0.0
    tbar = w_o.view(1, -1, 1).expand(B, -1, m)
    abar = None
    for l in range(nh - 1, -1, -1):
        n_out, n_in = sizes[l + 1], sizes[l]
        o = offsets[l]
        d1 = d1s[l].unsqueeze(2)
        ubar = d1 * tbar
        sbar = d2s[l].unsqueeze(2) * Us[l] * tbar
        if abar is not None:
            sbar = sbar + d1 * abar
        ut, st = ubar.transpose(1, 2), sbar.transpose(1, 2)
        Wbar = J[:, 1:, o:o + n_out * n_in].view(B, m, n_out, n_in) if m > 0 else None
        Wbar.copy_(ut.unsqueeze(3) * Ts[l].transpose(1, 2).unsqueeze(2))
        Wbar.addcmul_(st.unsqueeze(3), acts[l].view(B, 1, 1, n_in))
        J[:, 1:, o + n_out * n_in:o + n_out * (n_in + 1)] = st
        if l > 0:
            Wt = layers[l][0].T
            tbar = torch.matmul(Wt, ubar)
            abar = torch.matmul(Wt, sbar)
    J[:, 1:, :] *= rho
    rF = (g - g_ref) * rho
    r = torch.cat([rE.unsqueeze(1), rF], dim=1).reshape(-1)
    return r, J.view(B * (1 + m), -1)


# --------------------------------------------------------------------- losses
class _Data:
    """Torch views of one subset of a problem."""

    def __init__(self, problem: TrainingProblem, index: np.ndarray):
        def t(x):
            return None if x is None else torch.from_numpy(np.ascontiguousarray(x[index], dtype=np.float64))

        self.Z, self.y, self.K, self.g = t(problem.Z), t(problem.y), t(problem.K), t(problem.g)
        self.rho = float(problem.force_weight) if problem.K is not None else 0.0
        self.huber = None if problem.K is None or problem.huber is None else float(problem.huber)
        self.n = len(index)
        self.m = 0 if self.K is None else self.K.shape[2]

    def chunks(self, rows_per_chunk):
        step = max(1, rows_per_chunk // (1 + self.m))
        for s in range(0, self.n, step):
            sl = slice(s, s + step)
            yield (self.Z[sl], self.y[sl], None if self.K is None else self.K[sl],
                   None if self.g is None else self.g[sl])


def _huber(sq, c):
    """``h(x)`` of the per-structure force residual norms ``x = sqrt(sq)`` (torch)."""
    if c is None:
        return sq
    x = torch.sqrt(torch.clamp(sq, min=c * c))      # clamped: no 0/0 in the unused branch's gradient
    return torch.where(sq <= c * c, sq, 2.0 * c * x - c * c)


def _sse(theta, sizes, activation, data: _Data, chunk_rows=20000):
    """Sums of squared energy residuals, squared gradient residuals and their Huber version."""
    se = sf = sh = 0.0
    with torch.no_grad():
        for Z, y, K, g in data.chunks(chunk_rows):
            yp, gp = network_outputs(theta, sizes, activation, Z, K)
            se += float(torch.sum((yp - y) ** 2))
            if K is not None:
                sq = torch.sum((gp - g) ** 2, dim=1)
                sf += float(torch.sum(sq))
                sh += float(torch.sum(_huber(sq, data.huber)))
    return se, sf, sh


def _loss_from_sse(se, sf, sh, data):
    return (se + data.rho ** 2 * sh) / data.n


def _rmse_message(se, sf, _sh, data, problem, label):
    e = problem.energy_meV * math.sqrt(se / data.n)
    if data.K is None:
        return f"{label} E {e:.3g} meV"
    f = problem.energy_meV * math.sqrt(sf / (data.n * max(problem.n_cartesian, 1)))
    return f"{label} E {e:.3g} meV F {f:.3g} meV/Å"


def normal_equations(theta, sizes, activation, data: _Data, chunk_rows=6000):
    """``A = J^T W J / n``, ``b = J^T W r / n`` and the (robust) loss over a data set."""
    P = theta.shape[0]
    A = np.zeros((P, P))
    b = np.zeros(P)
    loss = 0.0
    with torch.no_grad():
        for Z, y, K, g in data.chunks(chunk_rows):
            r, J = residual_jacobian(theta, sizes, activation, Z, y, K, g, data.rho)
            if K is not None and data.huber is not None:
                rows = r.view(Z.shape[0], -1)
                sq = torch.sum(rows[:, 1:] ** 2, dim=1) / data.rho ** 2
                loss += float(torch.sum(rows[:, 0] ** 2) + data.rho ** 2 * torch.sum(_huber(sq, data.huber)))
                w = torch.clamp(data.huber / torch.sqrt(sq).clamp_min(1e-300), max=1.0).sqrt()
                rows[:, 1:] *= w.unsqueeze(1)
                J.view(Z.shape[0], rows.shape[1], -1)[:, 1:, :] *= w.view(-1, 1, 1)
            else:
                loss += float(r @ r)
            Jn = J.numpy()
            A += Jn.T @ Jn          # OpenBLAS gemm (faster here than torch's addmm)
            b += Jn.T @ r.numpy()
    return torch.from_numpy(A / data.n), torch.from_numpy(b / data.n), loss / data.n


# ----------------------------------------------------------------- optimisers
class _EarlyStopping:
    def __init__(self, patience):
        self.patience = patience
        self.best = math.inf
        self.best_theta = None
        self.best_epoch = 0
        self.bad = 0

    def update(self, epoch, val_loss, theta) -> bool:
        """Record an epoch; True when training should stop."""
        if val_loss < self.best * (1 - 1e-7):
            self.best, self.best_theta, self.best_epoch, self.bad = val_loss, theta.detach().clone(), epoch, 0
        else:
            self.bad += 1
        return self.bad >= self.patience


def _report(epoch, opts, theta, train, val, problem, progress, history, loss, stopper, extra=""):
    se, sf, sh = _sse(theta, opts.sizes, opts.activation, train)
    if val is not None:
        ve, vf, vh = _sse(theta, opts.sizes, opts.activation, val)
        vloss = _loss_from_sse(ve, vf, vh, val)
    else:
        ve = vf = vh = None
        vloss = loss
    stop = stopper.update(epoch, vloss, theta)
    rec = {"epoch": epoch, "train_loss": loss, "val_loss": vloss,
           "train_energy_rmse_meV": problem.energy_meV * math.sqrt(se / train.n)}
    if train.K is not None:
        rec["train_force_rmse_meV_per_A"] = problem.energy_meV * math.sqrt(sf / (train.n * problem.n_cartesian))
    if val is not None:
        rec["val_energy_rmse_meV"] = problem.energy_meV * math.sqrt(ve / val.n)
        if val.K is not None:
            rec["val_force_rmse_meV_per_A"] = problem.energy_meV * math.sqrt(vf / (val.n * problem.n_cartesian))
    history.append(rec)
    if progress is not None:
        msg = f"epoch {epoch} {_rmse_message(se, sf, sh, train, problem, 'train')}"
        if val is not None:
            msg += f" | {_rmse_message(ve, vf, vh, val, problem, 'val')}"
        progress(epoch, opts.max_epochs, msg + extra)
    return stop


def _solve_lm(theta, opts, train, val, problem, progress, history, stopper):
    """Levenberg-Marquardt with the damping schedule ``mu *= mu_dec`` / ``mu *= mu_inc``."""
    mu = opts.mu_init
    A, b, loss = normal_equations(theta, opts.sizes, opts.activation, train, opts.chunk_rows)
    eye = torch.eye(theta.shape[0], dtype=DTYPE)
    for epoch in range(1, opts.max_epochs + 1):
        accepted = False
        while mu <= opts.mu_max:
            L, info = torch.linalg.cholesky_ex(A + mu * eye)
            if int(info) != 0:
                mu *= opts.mu_inc
                continue
            step = -torch.cholesky_solve(b.unsqueeze(1), L).squeeze(1)
            trial = theta + step
            new_loss = _loss_from_sse(*_sse(trial, opts.sizes, opts.activation, train), train)
            if new_loss < loss:
                theta, accepted = trial, True
                mu = max(mu * opts.mu_dec, 1e-12)
                break
            mu *= opts.mu_inc
        if not accepted:
            history.append({"epoch": epoch, "stopped": f"mu exceeded mu_max={opts.mu_max:g}"})
            break
        A, b, loss = normal_equations(theta, opts.sizes, opts.activation, train, opts.chunk_rows)
        if _report(epoch, opts, theta, train, val, problem, progress, history, loss, stopper, f" mu {mu:.1e}"):
            break
    return theta


def _full_loss(theta, opts, data):
    total = 0.0
    for Z, y, K, g in data.chunks(50000):
        yp, gp = network_outputs(theta, opts.sizes, opts.activation, Z, K)
        total = total + torch.sum((yp - y) ** 2)
        if K is not None:
            total = total + data.rho ** 2 * torch.sum(_huber(torch.sum((gp - g) ** 2, dim=1), data.huber))
    return total / data.n


def _solve_lbfgs(theta, opts, train, val, problem, progress, history, stopper):
    theta = theta.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=20, history_size=50, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-14, tolerance_change=1e-16)

    def closure():
        opt.zero_grad()
        loss = _full_loss(theta, opts, train)
        loss.backward()
        return loss

    for epoch in range(1, opts.max_epochs + 1):
        opt.step(closure)
        with torch.no_grad():
            loss = float(_full_loss(theta, opts, train))
        if _report(epoch, opts, theta.detach(), train, val, problem, progress, history, loss, stopper):
            break
    return theta.detach()


def _solve_adam(theta, opts, train, val, problem, progress, history, stopper):
    theta = theta.clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=opts.learning_rate)
    # exponential decay of the learning rate by 100x over max_epochs
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.01 ** (1.0 / max(opts.max_epochs, 1)))
    gen = np.random.default_rng(opts.seed + 7919)
    for epoch in range(1, opts.max_epochs + 1):
        order = torch.from_numpy(gen.permutation(train.n))
        for s in range(0, train.n, opts.batch_size):
            idx = order[s:s + opts.batch_size]
            opt.zero_grad()
            K = None if train.K is None else train.K[idx]
            yp, gp = network_outputs(theta, opts.sizes, opts.activation, train.Z[idx], K)
            loss = torch.mean((yp - train.y[idx]) ** 2)
            if K is not None:
                sq = torch.sum((gp - train.g[idx]) ** 2, dim=1)
                loss = loss + train.rho ** 2 * torch.sum(_huber(sq, train.huber)) / len(idx)
            loss.backward()
            opt.step()
        sched.step()
        with torch.no_grad():
            loss = float(_full_loss(theta, opts, train))
        if _report(epoch, opts, theta.detach(), train, val, problem, progress, history, loss, stopper):
            break
    return theta.detach()


_SOLVERS = {"lm": _solve_lm, "lbfgs": _solve_lbfgs, "adam": _solve_adam}


# ------------------------------------------------------------------- drivers
def split_indices(n: int, validation_fraction: float, seed: int):
    """Deterministic random train/validation split of ``n`` structures."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(validation_fraction * n))
    if validation_fraction > 0 and n_val == 0:
        n_val = 1
    if n - n_val < 2:
        raise ValueError(f"{n} structures leave fewer than 2 for training after the validation split")
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def train_network(problem: TrainingProblem, opts: TrainOptions, progress=None) -> dict:
    """Train one network; returns its best parameters, split and history.

    Returns
    -------
    dict with ``theta`` (ndarray (n_parameters,)), ``train_index``,
    ``validation_index``, ``best_epoch``, ``history`` (list of dict), ``seconds``.
    """
    if opts.optimizer not in _SOLVERS:
        raise ValueError(f"unknown optimizer {opts.optimizer!r}; choose from {list(OPTIMIZERS)}")
    # elementwise work gains little from threads and OpenMP spinning hurts on a busy machine
    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if opts.threads:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=int(opts.threads)):
                return _train_network(problem, opts, progress)
        return _train_network(problem, opts, progress)
    finally:
        torch.set_num_threads(old_threads)


def _train_network(problem, opts, progress):
    torch.manual_seed(opts.seed)
    t0 = time.perf_counter()
    n = len(problem.y)
    tr, va = split_indices(n, opts.validation_fraction, opts.seed)
    train = _Data(problem, tr)
    val = _Data(problem, va) if len(va) else None
    theta0 = init_parameters(opts.sizes, np.random.default_rng(opts.seed))
    theta = torch.from_numpy(theta0)
    history: list = []
    stopper = _EarlyStopping(opts.patience)
    theta = _SOLVERS[opts.optimizer](theta, opts, train, val, problem, progress, history, stopper)
    best = stopper.best_theta if stopper.best_theta is not None else theta
    return {"theta": best.detach().numpy().copy(), "train_index": tr, "validation_index": va,
            "best_epoch": stopper.best_epoch, "history": history, "seconds": time.perf_counter() - t0}


def _member_worker(problem, opts, queue, member):
    def progress(step, total, message):
        queue.put((member, step, total, message))

    return train_network(problem, opts, progress if queue is not None else None)


def train_ensemble(problem: TrainingProblem, opts: TrainOptions, n_members: int, *, n_jobs=None,
                   progress=None) -> list[dict]:
    """Train ``n_members`` networks with seeds ``seed, seed + 1, ...`` (each its own split and start).

    Members run in parallel processes (``n_jobs``, default: one per core, at
    most ``n_members``), each with ``cores // n_jobs`` torch threads.
    ``progress(step, total, message)`` counts epochs over all members.
    """
    import dataclasses

    cores = os.cpu_count() or 1
    n_jobs = min(n_members, cores if n_jobs is None else max(1, int(n_jobs)))
    member_opts = [dataclasses.replace(opts, seed=opts.seed + k) for k in range(n_members)]
    total = n_members * opts.max_epochs
    if n_jobs <= 1:
        results = []
        for k, mo in enumerate(member_opts):
            def prog(step, _total, message, k=k):
                if progress is not None:
                    progress(k * opts.max_epochs + step, total, f"member {k + 1}/{n_members} {message}")
            results.append(train_network(problem, mo, prog))
        return results
    import multiprocessing as mp
    import queue as queue_mod
    from concurrent.futures import ProcessPoolExecutor

    ctx = mp.get_context("spawn")
    threads = max(1, cores // n_jobs)
    member_opts = [dataclasses.replace(mo, threads=threads) for mo in member_opts]
    with ctx.Manager() as manager:
        q = manager.Queue()
        done_steps = [0] * n_members
        with ProcessPoolExecutor(max_workers=n_jobs, mp_context=ctx) as pool:
            futures = [pool.submit(_member_worker, problem, mo, q, k) for k, mo in enumerate(member_opts)]
            while not all(f.done() for f in futures):
                try:
                    k, step, _t, message = q.get(timeout=0.2)
                except queue_mod.Empty:
                    continue
                done_steps[k] = step
                if progress is not None:
                    progress(sum(done_steps), total, f"member {k + 1}/{n_members} {message}")
            return [f.result() for f in futures]
