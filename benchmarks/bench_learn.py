"""Active learning (``pesfit learn``) against uniform sampling, on real electronic structure.

Acceptance points of issue 17:

1. ``h3``: H + H2 with FCI/cc-pVDZ (PySCF, doublet, ROHF orbitals), structures
   within 2.5 eV of the collinear H3 saddle.  Three seeds of ``pesfit learn``
   (defaults plus the flags below) at a budget of calculations; the same fit
   (``LinearPIPModel`` with its default cross-validation) on the same number of
   uniformly drawn structures; test RMSE on an independent uniform set.
   Passes when the active-learning RMSE is at most half the uniform one.
2. ``h2o``: H2O with MP2/cc-pVDZ, 0-2 eV above the minimum: the same
   comparison, and the loop stops by itself at a 1 meV target (no budget).
3. Both final models: a hole check -- random displacements of up to 0.3 Å per
   atom around every test structure never go below the lowest training
   energy by more than the target.

"Uniformly drawn" means uniform in internal coordinates (the three H-H
distances for H3, within 0.4-4.0 Å and the triangle inequality; the two O-H
distances in 0.75-1.45 Å and the angle in 60-180 degrees for H2O), kept when the reference energy is inside
the window.  The uniform sets are computed once into their own stores
(``uniform.db``); test and uniform training structures are disjoint.  The
uniform side is charged only for its in-window structures (its rejected
draws are not counted), which favours it.

    python benchmarks/bench_learn.py h3 [--budget 200] [--seeds 3] [--workers 2]
    python benchmarks/bench_learn.py h2o [--seeds 3] [--workers 2]

Outputs (tables on stdout, stores, learning-curve PNG) go to
``benchmarks/learn_out/NAME/``; rerunning reuses every stored calculation.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from ase import Atoms  # noqa: E402

from pesfit.learn import DaskExecutor, LearnSettings, Oracle, Store, learn  # noqa: E402
from pesfit.models import LinearPIPModel  # noqa: E402

OUT = Path(__file__).resolve().parent / "learn_out"


# ------------------------------------------------------------------ systems
def h3_uniform(rng, n):
    """H3 geometries with pair distances uniform in [0.4, 4.0] Å (triangle inequality), Å."""
    out = []
    while len(out) < n:
        r12, r23, r13 = rng.uniform(0.4, 4.0, 3)
        if r13 > r12 + r23 or r12 > r23 + r13 or r23 > r12 + r13:
            continue
        x = (r12**2 + r13**2 - r23**2) / (2 * r12)
        y = np.sqrt(max(r13**2 - x**2, 0.0))
        out.append([[0, 0, 0], [r12, 0, 0], [x, y, 0]])
    return np.array(out, dtype=float)


def h2o_uniform(rng, n):
    """O H H with r(OH) uniform in [0.75, 1.45] Å and angle HOH uniform in [60, 180] degrees, Å."""
    r1, r2 = rng.uniform(0.75, 1.45, (2, n))
    th = np.radians(rng.uniform(60, 180, n))
    R = np.zeros((n, 3, 3))
    R[:, 1, 0] = r1
    R[:, 2, 0] = r2 * np.cos(th)
    R[:, 2, 1] = r2 * np.sin(th)
    return R


def h3_reference(oracle):
    """(E_min, E_cut): H2 + H asymptote and saddle + 2.5 eV [eV], from a 1-D scan each."""
    import scipy.optimize

    def e(R):
        res = oracle.compute(["H", "H", "H"], np.asarray(R, float))
        assert res.status == "ok", res.failure
        return res.energy

    saddle = scipy.optimize.minimize_scalar(lambda r: e([[0, 0, 0], [0, 0, r], [0, 0, 2 * r]]),
                                            bounds=(0.85, 1.0), method="bounded", options={"xatol": 1e-4})
    h2 = scipy.optimize.minimize_scalar(lambda r: e([[0, 0, 0], [0, 0, r], [0, 0, r + 12.0]]),
                                        bounds=(0.7, 0.8), method="bounded", options={"xatol": 1e-4})
    return float(h2.fun), float(saddle.fun) + 2.5, {"saddle_r": float(saddle.x), "saddle_eV": float(saddle.fun),
                                                    "h2_re": float(h2.x), "asymptote_eV": float(h2.fun)}


SYSTEMS = {
    "h3": dict(calculator="pyscf:fci/cc-pvdz", multiplicity=2, symbols=["H", "H", "H"],
               start=[[[0, 0, 0], [0, 0, 0.741], [0, 0, 3.5]], [[0, 0, 0], [0, 0, 0.93], [0, 0, 1.86]]],
               uniform=h3_uniform, n_test=200, n_uniform_train=250,
               settings=dict(fragments=((0, 1), (2,)), separations=(2.0, 3.0), max_distance=4.0, batch=16,
                             n_design=40, target=1.0), checkpoints=(60, 100, 150, 200)),
    "h2o": dict(calculator="pyscf:mp2/cc-pvdz", multiplicity=1, symbols=["O", "H", "H"],
                start=[[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]],
                uniform=h2o_uniform, n_test=150, n_uniform_train=200,
                settings=dict(window=2.0, target=1.0, batch=16, n_design=40, minimise=True, max_distance=3.2,
                              max_iterations=60), checkpoints=(60, 100, 150, 200, 300)),
}


# --------------------------------------------------------------- helpers
def fit_rmse(train, test):
    """Test RMSE [meV] of the default LinearPIPModel (CV) fitted to ``train``."""
    model = LinearPIPModel().fit(train)
    return model.evaluate(test)["energy_rmse_meV"], model


def uniform_pool(sys_, oracle, executor, store_path, e_min, e_cut, n_needed, rng):
    """Compute uniform draws until ``n_needed`` are inside the window; return the in-window Dataset."""
    store = Store(store_path, sys_["symbols"], oracle.method)
    while True:
        data = store.dataset(forces=False) if store.count(status="ok") else None
        inside = np.flatnonzero(np.asarray(data.E) <= e_cut) if data is not None else np.zeros(0, int)
        print(f"  uniform pool: {len(inside)} of {len(store)} computed structures inside the window", flush=True)
        if len(inside) >= n_needed:
            return data.subset(inside[:n_needed])
        draws = sys_["uniform"](rng, max(64, 2 * (n_needed - len(inside))))
        requests = [(store.hash(R), R) for R in draws if store.hash(R) not in store]
        executor.map(oracle, sys_["symbols"], requests,
                     lambda h, R, res: store.add(R, res, iteration=0, chosen="uniform"))


def hole_check(model, test, target_meV, rng, n_per=40):
    """Lowest model energy [eV, relative to the lowest training energy] within 0.3 Å per atom of the test set."""
    R = np.asarray(test.R)
    worst = np.inf
    for k in range(0, len(R), 50):
        base = R[k:k + 50]
        disp = rng.standard_normal((n_per,) + base.shape)
        disp *= (0.3 * rng.uniform(0, 1, disp.shape[:-1] + (1,))) / np.linalg.norm(disp, axis=-1, keepdims=True)
        trial = (base[None] + disp).reshape(-1, *base.shape[1:])
        worst = min(worst, float(np.min(model.predict(trial))) - model.e_min_)
    return worst, worst >= -target_meV / 1000


# ------------------------------------------------------------------- main
def run(name, seeds, budget, workers):
    sys_ = SYSTEMS[name]
    out = OUT / name
    out.mkdir(parents=True, exist_ok=True)
    oracle = Oracle(sys_["calculator"], multiplicity=sys_["multiplicity"])
    start = [Atoms(symbols=sys_["symbols"], positions=R) for R in sys_["start"]]
    t_all = time.perf_counter()
    with DaskExecutor(n_workers=workers) as executor:
        if name == "h3":
            e_min, e_cut, ref = h3_reference(oracle)
            window = e_cut - e_min
        else:
            from pesfit.learn.design import minimise_on_oracle

            R_min, e_min = executor.call_all(minimise_on_oracle, [(oracle, sys_["symbols"], start[0].positions)])[0]
            window = sys_["settings"]["window"]
            e_cut = e_min + window
            ref = {"minimum_eV": e_min, "r_min": np.asarray(R_min).tolist()}
        print(f"{name}: {oracle.method}; reference {json.dumps(ref)}; window {window:.3f} eV above {e_min:.4f} eV",
              flush=True)
        pool = uniform_pool(sys_, oracle, executor, out / "uniform.db", e_min, e_cut,
                            sys_["n_test"] + sys_["n_uniform_train"], np.random.default_rng(12345))
        test = pool.subset(np.arange(sys_["n_test"]))
        uni_train = pool.subset(np.arange(sys_["n_test"], pool.n_structures))
        settings = LearnSettings(**{**sys_["settings"], "window": window, "budget": budget})
        curves = {"active": {}, "uniform": {}}
        finals = []
        for seed in range(seeds):
            store_path = out / f"active_seed{seed}.db"
            shared = Store(out / "active_seed0.db", sys_["symbols"], oracle.method) if seed else None
            if shared is not None and not store_path.exists():
                # the design Hessians (and minimised starts) do not depend on the seed: computed once
                store = Store(store_path, sys_["symbols"], oracle.method)
                for key in ("hessians", "minimised"):
                    if shared.get_state(key) is not None:
                        store.set_state(key, shared.get_state(key))
            t0 = time.perf_counter()
            res = learn(oracle, start, store_path, settings.replace(seed=seed), executor=executor,
                        resume=True,
                        on_iteration=lambda r: print("   ", json.dumps({k: (round(v, 3) if isinstance(v, float)
                                                                          else v) for k, v in r.items()}),
                                                     flush=True))
            print(f"  seed {seed}: stopped ({res.stop_reason}) at {res.n_calculations} calculations, "
                  f"{res.n_computed} computed now, {time.perf_counter() - t0:.0f} s", flush=True)
            store = Store(store_path, sys_["symbols"], oracle.method)
            rows = sorted(store.rows(status="ok"), key=lambda r: r.id)
            all_rows = sorted(store.rows(), key=lambda r: r.id)
            checkpoints = [c for c in sys_["checkpoints"] if c < res.n_calculations] + [res.n_calculations]
            rng = np.random.default_rng(seed)
            for n in checkpoints:
                ids = {r.id for r in all_rows[:n]}
                sel = [r for r in rows if r.id in ids and r.energy <= e_min + window]
                from pesfit.data import Dataset

                train = Dataset(R=[r.positions for r in sel], z=sys_["symbols"], E=[r.energy for r in sel])
                curves["active"].setdefault(n, []).append(fit_rmse(train, test)[0])
                m = min(len(sel), uni_train.n_structures)
                perm = rng.permutation(uni_train.n_structures)[:m]
                curves["uniform"].setdefault(n, []).append(fit_rmse(uni_train.subset(perm), test)[0])
            final_rmse, final_model = fit_rmse(Dataset(R=[r.positions for r in rows if r.energy <= e_min + window],
                                                       z=sys_["symbols"],
                                                       E=[r.energy for r in rows if r.energy <= e_min + window]),
                                               test)
            worst, ok = hole_check(final_model, test, settings.target, np.random.default_rng(seed))
            finals.append((seed, res.stop_reason, res.n_calculations, final_rmse, worst, ok))
    print(f"\n{name}: test RMSE [meV] on {test.n_structures} uniform structures, energies only, "
          f"LinearPIPModel (CV); {seeds} seeds; uniform side charged only for in-window structures")
    print(f"{'calcs':>6} {'active':>16} {'uniform':>16} {'ratio':>7}")
    for n in sorted(set(curves["active"]) & set(curves["uniform"])):
        a, u = np.array(curves["active"][n]), np.array(curves["uniform"][n])
        print(f"{n:>6} {a.mean():>9.2f} ± {a.std():<5.2f} {u.mean():>9.2f} ± {u.std():<5.2f} "
              f"{a.mean() / u.mean():>7.3f}  (n seeds {len(a)})")
    print(f"\n{'seed':>4} {'stop':>14} {'calcs':>6} {'final RMSE':>11} {'lowest within 0.3 Å':>22} hole check")
    for seed, stop, n, rmse, worst, ok in finals:
        print(f"{seed:>4} {stop:>14} {n:>6} {rmse:>11.2f} {1000 * worst:>18.1f} meV {'pass' if ok else 'FAIL'}")
    print(f"total {time.perf_counter() - t_all:.0f} s; load average {os.getloadavg()}")
    _plot(name, curves, out / "learning_curves.png")


def _plot(name, curves, path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.8), layout="constrained")
    ax = fig.subplots()
    for kind, style in (("active", "o-"), ("uniform", "s--")):
        n = sorted(curves[kind])
        v = [np.mean(curves[kind][k]) for k in n]
        e = [np.std(curves[kind][k]) for k in n]
        ax.errorbar(n, v, yerr=e, fmt=style, label=kind, capsize=3)
    ax.set_yscale("log")
    ax.set_xlabel("calculations")
    ax.set_ylabel("test RMSE / meV")
    ax.set_title(name)
    ax.legend()
    fig.savefig(path, dpi=110)
    print(f"learning curves: {path}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("system", choices=sorted(SYSTEMS))
    ap.add_argument("--seeds", type=int, default=3, help="active-learning runs (default 3)")
    ap.add_argument("--budget", type=int, default=None, help="calculations per run (default: h3 200, h2o none)")
    ap.add_argument("--workers", type=int, default=2, help="local Dask workers (default 2)")
    a = ap.parse_args()
    budget = a.budget if a.budget is not None else (200 if a.system == "h3" else None)
    sys.exit(run(a.system, a.seeds, budget, a.workers))
