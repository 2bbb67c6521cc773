"""Training of kernel expansions: system assembly, solvers, cross-validation, searches.

Every kernel back end reduces to the same problem.  Structures ``i`` give
scaled descriptors ``u_i = x_i / l``, projected Jacobians ``M_i / l`` and
observations: energies ``E_i`` [eV] and/or projected gradients
``y_i = Q_i^T dE/dR`` [eV/Å].  With the covariance ``K`` of
:mod:`.kernels` and a diagonal ``delta`` (``lam_e`` on energy rows, ``lam_g`` on
gradient rows, times the mean diagonal of ``K``), the coefficients solve

    (K + diag(delta)) [a; b] = [E - mu; y]

and the energy is ``E(u) = mu + sum_j a_j k(u, u_j) + b_j . d k(u, u_j)/d y_j``,
i.e. the expansion of :func:`.kernels.expansion` with ``W_j = (M_j / l) b_j``.
Without energy rows (sGDML's force-domain fit) ``mu`` is the integration
constant, fitted as the mean residual of the training energies.

Hyperparameters that are not given are chosen by cross-validation on the
training structures -- closed-form leave-one-structure-out
(:func:`loo_validate`) or K-fold (:func:`cross_validate`); loss: mean
squared energy and gradient errors, each divided by the variance / mean
square of its targets -- over a grid of length scales and regularisations
(:func:`select_and_fit`).  Gaussian-process hyperparameters maximise the
profiled log marginal likelihood instead (:func:`gp_objective`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
from numba import njit

from .kernels import expand_centres, expansion, kernel_matrix
from .solvers import (KernelOperator, NystromPreconditioner, cholesky_factor,
                      regularization_diagonal, solve_cg)

__all__ = ["KernelData", "KernelSolution", "fit_expansion", "cross_validate", "loo_validate", "select_and_fit",
           "kfold", "duplicate_groups", "median_distance", "system_size", "gp_objective", "gp_maximize_likelihood",
           "CG_MIN_LAMBDA"]


#: smallest regularisation tried when the final system is solved by conjugate gradients
CG_MIN_LAMBDA = 1e-8


@dataclass
class KernelData:
    """Training observations in descriptor space.

    Attributes
    ----------
    X : ndarray of shape (n, D)
        Unscaled descriptors.
    M : ndarray of shape (n, D, r) or None
        Projected Jacobians (None: no gradient observations possible).
    E : ndarray of shape (n,) or None
        Energies [eV].
    Y : ndarray of shape (n, r) or None
        Projected gradients ``Q^T dE/dR`` [eV/Å].
    """

    X: np.ndarray
    M: np.ndarray | None
    E: np.ndarray | None
    Y: np.ndarray | None

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def r(self) -> int:
        return 0 if self.M is None else self.M.shape[2]

    def subset(self, idx) -> "KernelData":
        return KernelData(self.X[idx], None if self.M is None else self.M[idx],
                          None if self.E is None else self.E[idx], None if self.Y is None else self.Y[idx])

    def scaled(self, ell):
        """``U = X / l`` and ``M / l`` (``l`` a scalar or one value per feature)."""
        ell = np.asarray(ell, dtype=np.float64)
        U = self.X / ell
        Ms = None if self.M is None else self.M / (ell[:, None] if ell.ndim else ell)
        return np.ascontiguousarray(U), None if Ms is None else np.ascontiguousarray(Ms)


@dataclass
class KernelSolution:
    """Coefficients of a fitted expansion (unscaled descriptors ``X``, length scale ``ell``)."""

    alpha: np.ndarray       # (n,) energy coefficients (zeros without energy rows)
    w: np.ndarray           # (n, D) gradient coefficients, in scaled-descriptor space
    mu: float               # energy offset [eV]
    jitter: float
    solver: dict
    raw: np.ndarray | None = None   # the solution vector of the system, in its row order


def kfold(n: int, k: int, seed: int = 0) -> list[np.ndarray]:
    """Validation index sets of a shuffled K-fold split."""
    if k < 2:
        raise ValueError(f"cv_folds must be >= 2, got {k}")
    if n < 2 * k:
        raise ValueError(f"{n} structures are too few for {k}-fold cross-validation (need at least {2 * k}); "
                         "add data, lower cv_folds, or give the hyperparameters (length_scale, lambda_) explicitly")
    rng = np.random.default_rng(seed)
    return [np.sort(f) for f in np.array_split(rng.permutation(n), k)]


def median_distance(X, *, sample: int = 300, seed: int = 0) -> float:
    """Median Euclidean distance between (a sample of) descriptor rows."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(X.shape[0])[:sample]
    Y = X[idx]
    d = np.sqrt(((Y[:, None] - Y[None]) ** 2).sum(-1))
    d = d[np.triu_indices(len(Y), 1)]
    med = float(np.median(d)) if d.size else 1.0
    return med if med > 0 else 1.0


def duplicate_groups(X, perms, *, decimals: int = 9) -> list[list[int]]:
    """Structures with the same descriptor up to the permutations ``perms`` (lists of indices, >1 long)."""
    Xr = np.round(np.asarray(X, dtype=np.float64), decimals) + 0.0
    cand = Xr[:, perms]                       # (n, P, D)
    n, P, D = cand.shape
    canon = np.empty((n, D))
    for i in range(n):
        order = np.lexsort(cand[i].T[::-1])
        canon[i] = cand[i][order[0]]
    _, inverse, counts = np.unique(canon, axis=0, return_inverse=True, return_counts=True)
    groups = []
    for g in np.flatnonzero(counts > 1):
        groups.append(np.flatnonzero(inverse.ravel() == g).tolist())
    return groups


# ----------------------------------------------------------------- systems
def _system(data: KernelData, idx, use_e: bool, use_g: bool):
    """Row indices (into the full ``[E_all; y_all]`` gram) of structures ``idx``."""
    n, r = data.n, data.r
    rows = []
    if use_e:
        rows.append(idx)
    if use_g:
        rows.append((n + idx[:, None] * r + np.arange(r)).ravel())
    return np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)


def full_gram(kind, perms, data: KernelData, ell) -> np.ndarray:
    """Covariance of all energies and projected gradients ``[E_1..E_n, y_1..y_n]``."""
    U, Ms = data.scaled(ell)
    return kernel_matrix(kind, perms, U, Ms, energies_a=True, gradients_a=Ms is not None,
                         energies_b=True, gradients_b=Ms is not None)


def _targets(data: KernelData, idx, use_e, use_g, mu):
    parts = []
    if use_e:
        parts.append(data.E[idx] - mu)
    if use_g:
        parts.append(data.Y[idx].ravel())
    return np.concatenate(parts)


def _coefficients(data: KernelData, idx, sol, use_e, use_g, Ms):
    k = len(idx)
    alpha = sol[:k] if use_e else np.zeros(k)
    if use_g:
        beta = sol[(k if use_e else 0):].reshape(k, data.r)
        w = np.einsum("ndr,nr->nd", Ms[idx], beta)
    else:
        w = np.zeros((k, data.X.shape[1]))
    return alpha, w


def _loss_terms(data: KernelData, idx, E_pred, Y_pred):
    out = {}
    if data.E is not None and E_pred is not None:
        out["energy_sse"] = float(np.sum((E_pred - data.E[idx]) ** 2))
        out["n_energy"] = len(idx)
    if data.Y is not None and Y_pred is not None:
        out["gradient_sse"] = float(np.sum((Y_pred - data.Y[idx].ravel()) ** 2))
        out["n_gradient"] = len(idx) * data.r
    return out


def cross_validate(kind, perms, data: KernelData, ell, lambdas, folds, *, use_e: bool, use_g: bool,
                   gram=None) -> list[dict]:
    """K-fold validation errors for each ``(lam_e, lam_g)`` in ``lambdas``.

    The gram of all training structures is built once and sliced per fold.
    Each result has ``energy_rmse`` [eV], ``gradient_rmse`` [eV/Å] (when
    available) and ``loss`` (normalised mean squared errors, summed).
    """
    n = data.n
    have_g = data.M is not None and data.Y is not None
    K = full_gram(kind, perms, data, ell) if gram is None else gram
    results = [dict(energy_sse=0.0, gradient_sse=0.0, n_energy=0, n_gradient=0, failed=False) for _ in lambdas]
    for val in folds:
        tr = np.setdiff1d(np.arange(n), val)
        rows = _system(data, tr, use_e, use_g)
        A0 = K[np.ix_(rows, rows)]
        diag0 = np.diag(A0).copy()
        n_e = len(tr) if use_e else 0
        vrows_e = val
        vrows_g = _system(data, val, False, True) if have_g else None
        Kv_e = K[np.ix_(vrows_e, rows)]
        Kv_g = K[np.ix_(vrows_g, rows)] if have_g else None
        Ke_tr = None if use_e else K[np.ix_(tr, rows)]
        for li, (res, (lam_e, lam_g)) in enumerate(zip(results, lambdas)):
            if res["failed"]:
                continue
            A = A0 if li == len(lambdas) - 1 else A0.copy()
            A[np.diag_indices_from(A)] += regularization_diagonal(diag0, n_e, lam_e, lam_g)
            mu = float(data.E[tr].mean()) if use_e else 0.0
            y = _targets(data, tr, use_e, use_g, mu)
            try:
                L, _ = cholesky_factor(A, overwrite=True)
            except ValueError:
                res["failed"] = True
                continue
            c = scipy.linalg.cho_solve((L, True), y, check_finite=False)
            if not use_e and data.E is not None:
                mu = float(np.mean(data.E[tr] - Ke_tr @ c))
            E_pred = Kv_e @ c + mu if data.E is not None else None
            Y_pred = Kv_g @ c if have_g else None
            for key, v in _loss_terms(data, val, E_pred, Y_pred).items():
                res[key] += v
    out = []
    var_e = float(np.var(data.E)) if data.E is not None else 1.0
    var_g = float(np.mean(data.Y ** 2)) if have_g else 1.0
    for res, (lam_e, lam_g) in zip(results, lambdas):
        row = {"length_scale": _jsonable_ell(ell), "lambda_e": lam_e, "lambda_g": lam_g}
        if res["failed"]:
            row.update(loss=float("inf"), failed=True)
            out.append(row)
            continue
        loss = 0.0
        if res["n_energy"]:
            mse = res["energy_sse"] / res["n_energy"]
            row["energy_rmse"] = float(np.sqrt(mse))
            loss += mse / max(var_e, 1e-300)
        if res["n_gradient"]:
            mse = res["gradient_sse"] / res["n_gradient"]
            row["gradient_rmse"] = float(np.sqrt(mse))
            loss += mse / max(var_g, 1e-300)
        row["loss"] = float(loss) if np.isfinite(loss) else float("inf")
        out.append(row)
    return out


def _symmetrize_lower(B: np.ndarray, block: int = 512) -> None:
    """Copy the lower triangle of ``B`` into its upper triangle, in place."""
    m = B.shape[0]
    for j in range(0, m, block):
        k = min(m, j + block)
        blk = B[j:k, j:k]
        blk[...] = np.tril(blk) + np.tril(blk, -1).T
        if k < m:
            B[j:k, k:] = B[k:, j:k].T


def loo_validate(kind, perms, data: KernelData, ell, lambdas, *, use_e: bool, use_g: bool, gram=None) -> list[dict]:
    """Closed-form leave-one-structure-out errors for each ``(lam_e, lam_g)``.

    With ``B = (K + diag(delta))^-1`` and ``c = B y``, removing the rows of
    structure ``i`` changes the solution to ``c - B[:, i] B_ii^-1 c_i``, so its
    left-out predictions are ``y_i - B_ii^-1 c_i`` (energy and gradient rows
    together); a force-only fit predicts the left-out energy as
    ``mu_i + K[E_i, :] (c - B[:, i] B_ii^-1 c_i)`` with ``mu_i`` the mean residual
    of the other training energies.  One factorisation and one
    inversion per ``lam`` give all ``n`` left-out fits exactly.
    """
    n, r = data.n, data.r
    have_g = data.M is not None and data.Y is not None
    K = full_gram(kind, perms, data, ell) if gram is None else gram
    idx = np.arange(n)
    rows = _system(data, idx, use_e, use_g)
    n_e = n if use_e else 0
    # position of structure i's rows inside the system ordering
    blocks = []
    if use_e:
        blocks.append(idx[:, None])
    if use_g:
        blocks.append(n_e + idx[:, None] * r + np.arange(r))
    blocks = np.concatenate(blocks, axis=1)                           # (n, per)
    A0 = K[np.ix_(rows, rows)]
    diag0 = np.diag(A0).copy()
    K_E = K[np.ix_(idx, rows)] if (not use_e and data.E is not None) else None
    var_e = float(np.var(data.E)) if data.E is not None else 1.0
    var_g = float(np.mean(data.Y ** 2)) if have_g else 1.0
    out = []
    for li, (lam_e, lam_g) in enumerate(lambdas):
        row = {"length_scale": _jsonable_ell(ell), "lambda_e": lam_e, "lambda_g": lam_g}
        A = A0 if li == len(lambdas) - 1 else A0.copy()
        A[np.diag_indices_from(A)] += regularization_diagonal(diag0, n_e, lam_e, lam_g)
        mu = float(data.E.mean()) if use_e else 0.0
        y = _targets(data, idx, use_e, use_g, mu)
        try:
            L, _ = cholesky_factor(A, overwrite=True)
        except ValueError:
            row.update(loss=float("inf"), failed=True)
            out.append(row)
            continue
        c = scipy.linalg.cho_solve((L, True), y, check_finite=False)
        B, info = scipy.linalg.lapack.dpotri(L, lower=1, overwrite_c=1)
        if info != 0:
            row.update(loss=float("inf"), failed=True)
            out.append(row)
            continue
        Bii = B[blocks[:, :, None], blocks[:, None, :]]                  # lower triangle holds the inverse
        Bii = np.tril(Bii) + np.swapaxes(np.tril(Bii, -1), 1, 2)
        ci = c[blocks]
        try:
            res = np.linalg.solve(Bii, ci[..., None])[..., 0]           # (n, per)
        except np.linalg.LinAlgError:
            row.update(loss=float("inf"), failed=True)
            out.append(row)
            continue
        loss = 0.0
        if use_e:
            e_err = -res[:, 0]
            g_err = -res[:, 1:] if use_g else None
        else:
            g_err = -res
            e_err = None
            if K_E is not None:
                _symmetrize_lower(B)
                Z = K_E @ B                                               # (n, m)
                z = Z.sum(axis=0)                                         # 1^T K_E B
                own = K_E @ c - np.einsum("np,np->n", np.take_along_axis(Z, blocks, axis=1), res)
                total = float(K_E.sum(axis=0) @ c) - np.einsum("np,np->n", z[blocks], res)
                # integration constant of each left-out fit: mean residual of the other energies
                mu_i = (data.E.sum() - data.E - (total - own)) / (n - 1)
                e_err = mu_i + own - data.E
        if e_err is not None:
            mse = float(np.mean(e_err ** 2))
            row["energy_rmse"] = float(np.sqrt(mse))
            loss += mse / max(var_e, 1e-300)
        if g_err is not None and have_g:
            mse = float(np.mean(g_err ** 2))
            row["gradient_rmse"] = float(np.sqrt(mse))
            loss += mse / max(var_g, 1e-300)
        row["loss"] = float(loss) if np.isfinite(loss) else float("inf")
        out.append(row)
        del B
    return out


def _jsonable_ell(ell):
    ell = np.asarray(ell, dtype=np.float64)
    return float(ell) if ell.ndim == 0 else ell.tolist()


# ----------------------------------------------------------------- final fit
def fit_expansion(kind, perms, data: KernelData, ell, lam_e: float, lam_g: float, *, use_e: bool, use_g: bool,
                  solver: str = "cholesky", cg_tol: float = 1e-8, cg_max_iter: int = 2000,
                  n_inducing: int | None = None, seed: int = 0, progress=None) -> KernelSolution:
    """Solve the kernel system on all structures of ``data``.

    ``solver`` is ``"cholesky"`` (dense) or ``"cg"`` (matrix-free
    preconditioned conjugate gradients with a Nyström preconditioner of
    ``n_inducing`` structures).
    """
    n = data.n
    idx = np.arange(n)
    U, Ms = data.scaled(ell)
    use_g = use_g and Ms is not None
    mu = float(data.E.mean()) if (use_e and data.E is not None) else 0.0
    y = _targets(data, idx, use_e, use_g, mu)
    n_e = n if use_e else 0
    info = {"name": solver}
    if solver == "cholesky":
        A = kernel_matrix(kind, perms, U, Ms if use_g else None, energies_a=use_e, gradients_a=use_g,
                          energies_b=use_e, gradients_b=use_g)
        A[np.diag_indices_from(A)] += regularization_diagonal(np.diag(A).copy(), n_e, lam_e, lam_g)
        L, jitter = cholesky_factor(A, overwrite=True)
        c = scipy.linalg.cho_solve((L, True), y, check_finite=False)
        del A, L
    elif solver == "cg":
        op = KernelOperator(kind, perms, U, Ms if use_g else None, None, energies=use_e, gradients=use_g)
        diag = op.diagonal()
        op.delta = regularization_diagonal(diag, n_e, lam_e, lam_g)
        k = min(n, n_inducing or max(1, min(n, 2000 // max(1, op.per))))
        rng = np.random.default_rng(seed)
        ind = np.sort(rng.choice(n, size=k, replace=False))
        C = op.block(ind).T                               # (m, k') columns of K
        W = C[op._rows(ind)]
        pre = NystromPreconditioner(C, W, op.delta)
        del C, W
        c, cg = solve_cg(op, y, pre, tol=cg_tol, max_iter=cg_max_iter, progress=progress)
        info.update(cg, n_inducing=int(k), products=op.n_products)
        if not cg["converged"]:
            raise ValueError(f"conjugate gradients stopped after {cg['iterations']} iterations at a relative "
                             f"residual {cg['relative_residual']:.2e} > {cg_tol:g}; raise cg_max_iter or "
                             "n_inducing, or increase the regularisation lambda_")
        jitter = 0.0
    else:
        raise ValueError(f"unknown solver {solver!r}; use 'cholesky' or 'cg'")
    alpha, w = _coefficients(data, idx, c, use_e, use_g, Ms)
    if not use_e and data.E is not None:
        # integration constant: mean residual of the training energies
        C_, A_, W_ = expand_centres(U, alpha, w, perms)
        mu = float(np.mean(data.E - expansion(kind, U, C_, A_, W_, gradient=False)))
    return KernelSolution(alpha, w, mu, float(jitter), info, c)


def _smoothest_within(table: dict, tolerance: float):
    """``(l, lam)`` with the largest ``l`` (then the lowest loss) among losses within ``tolerance`` of the best."""
    best = min(table.values())
    ok = [(x, -f, v) for (x, v), f in table.items() if f <= best * (1 + tolerance)]
    x, _, v = max(ok)
    return x, v


def system_size(n: int, r: int, use_e: bool, use_g: bool) -> int:
    return n * ((1 if use_e else 0) + (r if use_g else 0))


def select_and_fit(kind, perms, data: KernelData, *, use_e: bool, use_g: bool, length_scale=None, lambda_=None,
                   lambda_grid=(1e-10,), ell0: float | None = None, cv_folds: int | None = None,
                   cv_max_structures: int = 500, solver: str = "auto", max_direct: int = 15000,
                   cg_tol: float = 1e-8, n_inducing: int | None = None, energy_weight: float = 1.0,
                   cv_repeats: int = 1, cv_tolerance: float = 0.1, seed: int = 0, progress=None):
    """Choose ``l`` and ``lam`` by cross-validation where not given, then fit on all data.

    The search: a grid ``l0 * 2^k`` (k = -3..3) times every ``lam`` of
    ``lambda_grid`` (the best length scale grows as the regularisation
    shrinks, so both are searched together), extended by factors of 2 while
    the best length scale is on the edge of the grid, then refined at the
    best ``lam`` by factors ``2^(+-1/2)`` and ``2^(+-1/4)``.  Cross-validation
    uses at most ``cv_max_structures`` structures (a random subset), split
    ``cv_repeats`` times into ``cv_folds`` folds (the errors are pooled), or
    left out one at a time (``cv_folds=None``).  Among the pairs whose loss
    is within ``cv_tolerance`` (relative) of the best, the largest length
    scale is taken: validation losses are flat near their minimum, and the
    smoother model extrapolates better into sparsely sampled regions.

    Energy rows are regularised by ``lam / energy_weight^2``, gradient
    rows by ``lam``.  Returns ``(ell, lam, solution, cv_results)``.
    """
    lam_grid = [float(lambda_)] if lambda_ is not None else [float(v) for v in lambda_grid]
    m = system_size(data.n, data.r, use_e, use_g)
    if solver == "auto":
        solver = "cholesky" if m <= max_direct else "cg"
    if solver == "cg" and lambda_ is None:
        # conjugate gradients converge in tens of iterations for lam >= 1e-8, in thousands for 1e-12
        lam_grid = [v for v in lam_grid if v >= CG_MIN_LAMBDA] or [CG_MIN_LAMBDA]
    cv_results: list[dict] = []
    need_ell = length_scale is None
    ell = None if need_ell else length_scale
    lam = lam_grid[0]
    if need_ell or len(lam_grid) > 1:
        rng = np.random.default_rng(seed)
        sub = np.arange(data.n)
        if data.n > cv_max_structures:
            sub = np.sort(rng.choice(data.n, cv_max_structures, replace=False))
        cv_data = data.subset(sub)
        folds = None if cv_folds is None else [f for rep in range(cv_repeats)
                                               for f in kfold(cv_data.n, cv_folds, seed + rep)]
        table: dict[tuple[float, float], float] = {}
        planned = [14 if need_ell else 1]

        def evaluate(x, lams):
            lams = [v for v in lams if (x, v) not in table]
            if not lams:
                return
            pairs = [(v / energy_weight**2, v) for v in lams]
            if folds is None:
                rows = loo_validate(kind, perms, cv_data, x, pairs, use_e=use_e, use_g=use_g)
            else:
                rows = cross_validate(kind, perms, cv_data, x, pairs, folds, use_e=use_e, use_g=use_g)
            cv_results.extend(rows)
            for v, row in zip(lams, rows):
                table[(x, v)] = row["loss"]
                row["lambda"] = v
            if progress is not None:
                (bx, bl), bf = min(table.items(), key=lambda t: t[1])
                progress(len({k[0] for k in table}), planned[0], f"CV l={x:.3g} (best l={bx:.3g} lam={bl:g}: {bf:.3g})")

        def best():
            return min(table.items(), key=lambda t: t[1])

        if need_ell:
            start = ell0 if ell0 is not None else median_distance(cv_data.X)
            grid = [start * 2.0 ** k for k in range(-3, 4)]
            for x in grid:
                evaluate(x, lam_grid)
            lo, hi = grid[0], grid[-1]
            for _ in range(6):
                (bx, _), _ = best()
                if bx == lo:
                    lo /= 2
                    evaluate(lo, lam_grid)
                elif bx == hi:
                    hi *= 2
                    evaluate(hi, lam_grid)
                else:
                    break
            (ell, lam), _ = best()
            for step in (2 ** 0.5, 2 ** 0.25):
                for x in (ell * step, ell / step):
                    evaluate(x, [lam])
                (ell, lam), _ = best()
            (ell, lam) = _smoothest_within(table, cv_tolerance)
        else:
            evaluate(float(np.asarray(ell)), lam_grid) if np.ndim(ell) == 0 else None
            if table:
                (_, lam), _ = best()
        if table and not np.isfinite(best()[1]):
            raise ValueError("every hyperparameter pair tried failed in cross-validation (the kernel matrix was "
                             "never positive definite); check the data for duplicates or give length_scale and "
                             "lambda_ explicitly")
    sol = fit_expansion(kind, perms, data, ell, lam / energy_weight**2, lam, use_e=use_e, use_g=use_g, solver=solver,
                        cg_tol=cg_tol,
                        n_inducing=n_inducing, seed=seed, progress=progress)
    return ell, lam, sol, cv_results


# ------------------------------------------------------- Gaussian processes
@njit(cache=True)
def _ard_gradient(U, Ms, W, use_g, grad):
    """``sum_ab W_ab dK_ab / d log l_k`` for the Gaussian kernel with energy (and gradient) rows.

    Rows are ``[E_1..E_n, y_1..y_n]``; ``U = X / l`` and ``Ms = M / l``.
    With ``d = u_a - u_b``, ``phi = exp(-|d|^2/2)``, ``p = Ms_a^T d``,
    ``q = Ms_b^T d`` and ``S = Ms_a^T Ms_b``: ``d phi = phi d_k^2``,
    ``d q = -2 Ms_b[k] d_k``, ``d p = -2 Ms_a[k] d_k``, ``d S = -2 Ms_a[k] Ms_b[k]^T``.
    """
    n, D = U.shape
    r = Ms.shape[2]
    d = np.empty(D)
    p = np.empty(r)
    q = np.empty(r)
    v1 = np.empty(r)
    v2 = np.empty(r)
    Tm = np.empty((D, r))
    for a in range(n):
        for b in range(n):
            s = 0.0
            for k in range(D):
                d[k] = U[a, k] - U[b, k]
                s += d[k] * d[k]
            phi = np.exp(-0.5 * s)
            T0 = W[a, b]
            if not use_g:
                for k in range(D):
                    grad[k] += phi * d[k] * d[k] * T0
                continue
            ga = n + a * r
            gb = n + b * r
            for i in range(r):
                pa = 0.0
                qb = 0.0
                for k in range(D):
                    pa += Ms[a, k, i] * d[k]
                    qb += Ms[b, k, i] * d[k]
                p[i] = pa
                q[i] = qb
            for j in range(r):
                T0 += W[a, gb + j] * q[j] - W[ga + j, b] * p[j]
            for i in range(r):
                acc1 = 0.0
                acc2 = 0.0
                for j in range(r):
                    sij = 0.0
                    for k in range(D):
                        sij += Ms[a, k, i] * Ms[b, k, j]
                    T0 += W[ga + i, gb + j] * (sij - p[i] * q[j])
                    acc1 += W[ga + i, gb + j] * q[j]
                    acc2 += W[ga + j, gb + i] * p[j]
                v1[i] = acc1
                v2[i] = acc2
            for k in range(D):
                for j in range(r):
                    acc = 0.0
                    for i in range(r):
                        acc += Ms[a, k, i] * W[ga + i, gb + j]
                    Tm[k, j] = acc
            for k in range(D):
                lin = 0.0
                quad = 0.0
                for j in range(r):
                    lin += Ms[a, k, j] * (W[ga + j, b] + v1[j]) - Ms[b, k, j] * (W[a, gb + j] - v2[j])
                    quad += Tm[k, j] * Ms[b, k, j]
                grad[k] += phi * (d[k] * d[k] * T0 + 2.0 * d[k] * lin - 2.0 * quad)


def gp_objective(theta, data: KernelData, *, use_g: bool, ard: bool, gradient: bool = True):
    """Negative profiled log marginal likelihood of a Gaussian-kernel GP and its gradient.

    ``theta = [log l (D values, or 1 if not ard), log lam_e, (log lam_g)]``;
    the covariance is ``s2 (K(l) + diag(lam))`` with the signal variance
    ``s2 = y^T A^-1 y / m`` profiled out, so that

        -LML = m/2 log(s2) + 1/2 log|A| + m/2 (1 + log 2 pi),
        d(-LML)/d theta = -1/2 tr[(a a^T / s2 - A^-1) dA/d theta],  a = A^-1 y.

    Returns ``(value, gradient)`` (gradient None with ``gradient=False``).
    """
    D = data.X.shape[1]
    n_ell = D if ard else 1
    ell = np.exp(theta[:n_ell]) if ard else np.exp(theta[0])
    lam_e = np.exp(theta[n_ell])
    lam_g = np.exp(theta[n_ell + 1]) if use_g else 0.0
    U, Ms = data.scaled(ell)
    perms = np.arange(D)[None]
    A = kernel_matrix("gaussian", perms, U, Ms if use_g else None, energies_a=True, gradients_a=use_g,
                      energies_b=True, gradients_b=use_g)
    n = data.n
    m = A.shape[0]
    A[np.arange(n), np.arange(n)] += lam_e
    if use_g:
        A[np.arange(n, m), np.arange(n, m)] += lam_g
    y = _targets(data, np.arange(n), True, use_g, float(data.E.mean()))
    try:
        L, _ = scipy.linalg.cho_factor(A, lower=True, overwrite_a=True, check_finite=False)
    except np.linalg.LinAlgError:
        return 1e300, (np.zeros_like(theta) if gradient else None)
    alpha = scipy.linalg.cho_solve((L, True), y, check_finite=False)
    s2 = float(y @ alpha) / m
    logdet = 2.0 * float(np.sum(np.log(np.diag(L))))
    value = 0.5 * m * np.log(max(s2, 1e-300)) + 0.5 * logdet + 0.5 * m * (1 + np.log(2 * np.pi))
    if not gradient:
        return value, None
    B, info = scipy.linalg.lapack.dpotri(L, lower=1, overwrite_c=1)
    if info != 0:
        return 1e300, np.zeros_like(theta)
    _symmetrize_lower(B)
    W = np.outer(alpha, alpha) / s2
    W -= B
    del B
    g = np.zeros(D)
    _ard_gradient(U, Ms if use_g else np.zeros((n, D, 1)), np.ascontiguousarray(W), use_g, g)
    grad = np.empty_like(theta)
    grad[:n_ell] = -0.5 * (g if ard else np.array([g.sum()]))
    diagW = np.diag(W)
    grad[n_ell] = -0.5 * lam_e * diagW[:n].sum()
    if use_g:
        grad[n_ell + 1] = -0.5 * lam_g * diagW[n:].sum()
    return float(value), grad


def gp_maximize_likelihood(data: KernelData, theta0, bounds, *, use_g: bool, ard: bool, restarts: int = 2,
                           seed: int = 0, progress=None):
    """Maximise the profiled log marginal likelihood from ``theta0`` and ``restarts`` perturbed starts.

    Returns ``(theta, -LML, history)``.
    """
    from scipy.optimize import minimize

    rng = np.random.default_rng(seed)
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    starts = [np.clip(np.asarray(theta0, dtype=np.float64), lo, hi)]
    for _ in range(restarts):
        starts.append(np.clip(starts[0] + rng.normal(0.0, 1.0, size=len(lo)), lo, hi))
    history = []
    best = None
    for k, x0 in enumerate(starts):
        res = minimize(lambda t: gp_objective(t, data, use_g=use_g, ard=ard), x0, jac=True, method="L-BFGS-B",
                       bounds=bounds, options={"maxiter": 200})
        history.append({"start": k, "neg_lml": float(res.fun), "iterations": int(res.nit)})
        if best is None or res.fun < best.fun:
            best = res
        if progress is not None:
            progress(k + 1, len(starts), f"ML-II start {k + 1}: -LML {res.fun:.4g}")
    return best.x, float(best.fun), history
