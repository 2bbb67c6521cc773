"""Many-body PIP and fragmented PIP acceptance table (issue 7).

    python benchmarks/bench_manybody.py            # water clusters + ethane (a few minutes)
    python benchmarks/bench_manybody.py --water    # only the water part

Water (molecules/water_clusters, DF-MP2/aug-cc-pVDZ): a 1+2+3-body model is
fitted to the 1-, 2- and 3-body energies of the training dimers and trimers
(the three dimers inside every training trimer count as dimer data) and tested
on the independent test sets.  Printed: per-body test RMSE in kcal/mol (the
2-body one also for test dimers within 10 kcal/mol of the lowest test dimer),
total trimer energies, the purification check of every n-body basis, force
errors against the analytic MP2 gradients, and microseconds per energy +
gradient of an (H2O)6 cluster in Python and compiled (C export, gcc -O2).

Ethane (molecules/ethane, DF-MP2/cc-pVDZ): full PIP bases against fragmented
ones of similar size (test RMSE, basis sizes, generation times), and a
fragmented basis at a degree where the full one is out of reach.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from invariants import PermutationGroup, molien_series, pip_basis  # noqa: E402
from invariants.molien import cumulative  # noqa: E402
from pesfit import units  # noqa: E402
from pesfit.data import load_npz  # noqa: E402
from pesfit.models.fragments import FragmentedPIPModel, fragmented_basis  # noqa: E402
from pesfit.models.linear import LinearPIPModel  # noqa: E402
from pesfit.models.manybody import ManyBodyModel, load_clusters  # noqa: E402

KCAL = units.energy_factor("kcal/mol", "eV")
WATER = ROOT / "molecules" / "water_clusters"
ETHANE = ROOT / "molecules" / "ethane"


def rmse_kcal(pred, ref) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred) - np.asarray(ref)) ** 2)) / KCAL)


def row(name, value, target=None, unit=""):
    ok = "" if target is None else ("PASS" if value <= target else "FAIL")
    tgt = "" if target is None else f"<= {target:g}"
    print(f"  {name:<58s} {value:>12.4g} {unit:<9s} {tgt:<10s} {ok}")


def water(args) -> None:
    tr2, te2 = load_clusters(WATER / "dimers_train.npz"), load_clusters(WATER / "dimers_test.npz")
    tr3, te3 = load_clusters(WATER / "trimers_train.npz"), load_clusters(WATER / "trimers_test.npz")
    print(f"water: {tr2.meta['method']}; train {tr2.n_structures} dimers + {tr3.n_structures} trimers, "
          f"test {te2.n_structures} dimers + {te3.n_structures} trimers")
    t0 = time.perf_counter()
    model = ManyBodyModel(max_body=3, degrees=(6, args.deg2, (3, 4)), cutoffs=((6.5, 8.0), (5.5, 7.0)),
                          max_intra_degree=(None, args.intra2, None)).fit([tr2, tr3])
    n2 = sum(len(S) == 2 for S in tr2.body_energies()) * tr2.n_structures + 3 * tr3.n_structures
    print(f"  fit {time.perf_counter() - t0:.1f} s; degrees {model.hyperparameters_['degrees']} (3-body: 3 or 4 "
          f"by 4-fold CV); basis sizes {model.hyperparameters_['n_basis']}; "
          f"Morse a {model.hyperparameters_['morse_a']}; ridge {model.hyperparameters_['ridge']}; "
          f"{n2} training 2-body energies")
    print(f"  {'quantity':<58s} {'value':>12s} {'unit':<9s} {'target':<10s}")
    eps2 = te2.body_energies()[(0, 1)]
    pred2 = model._body_predict(2, te2.R)
    window = eps2 <= eps2.min() + 10 * KCAL
    row(f"2-body test RMSE, dimers within 10 kcal/mol of the minimum (n={window.sum()})",
        rmse_kcal(pred2[window], eps2[window]), 0.1, "kcal/mol")
    bound = (eps2 <= 0) & (eps2 >= -10 * KCAL)
    row(f"2-body test RMSE, bound dimers, -10 <= E_2b <= 0 kcal/mol (n={bound.sum()})",
        rmse_kcal(pred2[bound], eps2[bound]), 0.1, "kcal/mol")
    row(f"2-body test RMSE, all test dimers (n={len(eps2)})", rmse_kcal(pred2, eps2), None, "kcal/mol")
    rep3 = model.evaluate_bodies(te3)
    row("2-body test RMSE, dimers inside test trimers", rep3["2"]["energy_rmse_meV"] / 1000 / KCAL, None, "kcal/mol")
    row("3-body test RMSE, trimer 3-body energies", rep3["3"]["energy_rmse_meV"] / 1000 / KCAL, 0.05, "kcal/mol")
    row("total trimer energy test RMSE", rep3["total"]["energy_rmse_meV"] / 1000 / KCAL, 0.15, "kcal/mol")
    row("1-body test RMSE (monomers of test trimers)", rep3["1"]["energy_rmse_meV"] / 1000 / KCAL, None, "kcal/mol")
    row("total dimer energy test RMSE", model.evaluate_bodies(te2)["total"]["energy_rmse_meV"] / 1000 / KCAL, None,
        "kcal/mol")
    e3 = te3.body_energies()[(0, 1, 2)]
    print(f"  (test 3-body energies span {e3.min() / KCAL:.2f} .. {e3.max() / KCAL:.2f} kcal/mol, "
          f"std {e3.std() / KCAL:.3f}; test 2-body {eps2.min() / KCAL:.2f} .. {eps2.max() / KCAL:.2f})")
    # purification: every n-body function vs its near-contact value once a monomer is 60 Å away
    worst = 0.0
    for n in (2, 3):
        R = (te2 if n == 2 else te3).R[:20]
        T = model.transforms_[n]
        near = model.bases_[n].cartesian_values(R, T)
        for k in range(n):
            far = R.copy()
            far[:, 3 * k:3 * k + 3] += np.array([60.0, 0.0, 0.0])
            worst = max(worst, float(np.max(np.abs(model.bases_[n].cartesian_values(far, T)) / np.abs(near))))
    row("purification: max |p(monomer at +60 A)| / |p(contact)|", worst, 1e-10)
    for name in ("dimers_forces", "trimers_forces"):
        path = WATER / f"{name}.npz"
        if path.exists():
            d = load_npz(path)
            E, F = model.predict(d.R, forces=True)
            frmse = float(np.sqrt(np.mean((F - d.F) ** 2)) / KCAL)
            row(f"{name}: force RMSE vs analytic MP2 gradients (n={d.n_structures})", frmse, None, "kcal/mol/A")
    # (H2O)6: six monomers from test trimers, arranged on a 2.9 Å-spaced prism
    base = te3.R[:2].reshape(-1, 3, 3)
    sites = 2.9 * np.array([[0, 0, 0], [1, 0, 0], [0.5, 0.87, 0], [0, 0, 1], [1, 0, 1], [0.5, 0.87, 1]])
    hexa = np.vstack([base[i] - base[i][0] + sites[i] for i in range(6)])
    model.predict(hexa, forces=True)
    reps = 200
    t = time.perf_counter()
    for _ in range(reps):
        model.predict(hexa, forces=True)
    single = (time.perf_counter() - t) / reps * 1e6
    batch = np.repeat(hexa[None], 256, axis=0)
    t = time.perf_counter()
    model.predict(batch, forces=True)
    batched = (time.perf_counter() - t) / 256 * 1e6
    row("(H2O)6 energy + gradient, one call per structure", single, None, "us")
    row("(H2O)6 energy + gradient, batches of 256", batched, None, "us")
    compiled_timing(model, hexa, reps)
    if args.save:
        model.save(args.save)


def compiled_timing(model, hexa, reps) -> None:
    """The (H2O)6 potential exported to C (checked against Python), timed through its ctypes loader."""
    import importlib.util
    import shutil
    import tempfile

    from pesfit.export import export_model

    if shutil.which("gcc") is None:
        print("  (gcc not on PATH: no compiled (H2O)6 timing)")
        return
    bohr = units.length_factor("bohr", "angstrom")
    near = hexa[None] + np.random.default_rng(0).normal(scale=0.02, size=(50,) + hexa.shape)
    with tempfile.TemporaryDirectory() as tmp:
        res = export_model(model, "c", tmp, prefix="h2o6", n_monomers=6, check=True, check_structures=near)
        spec = importlib.util.spec_from_file_location("h2o6_ctypes", Path(tmp) / "pes_ctypes.py")
        loader = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loader)
        pes = loader.CompiledPES(res["library"])
        xyz = hexa / bohr
        pes.energy_gradient(xyz)
        t = time.perf_counter()
        for _ in range(reps):
            pes.energy_gradient(xyz)
        single = (time.perf_counter() - t) / reps * 1e6
        batch = np.repeat(xyz[None], 256, axis=0)
        t = time.perf_counter()
        pes.energy_gradient(batch)
        batched = (time.perf_counter() - t) / 256 * 1e6
    c = res["check"]
    row("(H2O)6 energy + gradient, compiled C, one call per structure", single, None, "us")
    row("(H2O)6 energy + gradient, compiled C, batches of 256", batched, None, "us")
    row(f"compiled vs Python on {c['n_structures']} (H2O)6: max rel. energy deviation", c["max_energy_rel"], 1e-10)
    row(f"compiled vs Python on {c['n_structures']} (H2O)6: max rel. gradient deviation", c["max_gradient_rel"], 1e-8)


def ethane(args) -> None:
    train, test = load_npz(ETHANE / "train.npz"), load_npz(ETHANE / "test.npz")
    group = PermutationGroup.from_symbols(train.symbols)
    print(f"\nethane: {train.meta['method']}; {train.n_structures} train / {test.n_structures} test energies; "
          f"atoms {' '.join(train.symbols)}")
    print(f"  {'basis':<44s} {'n_basis':>8s} {'gen s':>8s} {'test RMSE meV':>14s}")
    results = {}
    for d in (3, 4, 5):
        t = time.perf_counter()
        pip_basis(group, d)
        gen = time.perf_counter() - t
        m = LinearPIPModel(degree=d).fit(train)
        results[f"full{d}"] = m.evaluate(test)["energy_rmse_meV"]
        print(f"  {'full PIP degree ' + str(d):<44s} {m.basis_.n_basis:>8d} {gen:>8.2f} {results[f'full{d}']:>14.3f}")
    configs = [
        ("C2H3 {0,1,2,3,5} d4", [[0, 1, 2, 3, 5]], [4], "full4"),
        ("C2H2 {0,1,2,5} d6", [[0, 1, 2, 5]], [6], "full4"),
        ("C2H3 {0,1,2,3,5} d5", [[0, 1, 2, 3, 5]], [5], "full4"),
        ("C2H4 {0,1,2,3,5,6} d5", [[0, 1, 2, 3, 5, 6]], [5], "full5"),
        ("C2H4 d5 + C2H2 d7", [[0, 1, 2, 3, 5, 6], [0, 1, 2, 5]], [5, 7], "full5"),
    ]
    for name, frags, degs, ref in configs:
        m = FragmentedPIPModel(fragments=frags, degree=degs).fit(train)
        rm = m.evaluate(test)["energy_rmse_meV"]
        print(f"  {'fragmented ' + name:<44s} {m.basis_.n_basis:>8d} {m.basis_seconds_:>8.2f} {rm:>14.3f}"
              f"   ratio to {ref}: {rm / results[ref]:.2f} {'PASS' if rm <= 2 * results[ref] else 'FAIL'}")
    sizes = cumulative(molien_series(group, 7))
    t = time.perf_counter()
    big = fragmented_basis(group, [[0, 1, 2, 3, 5, 6]], 7)
    gen = time.perf_counter() - t
    print(f"  {'fragmented C2H4 d7 (generation only)':<44s} {big.n_basis:>8d} {gen:>8.2f} {'-':>14s}")
    print(f"  full PIP degree 7 would need {sizes[7]} PIPs from {math.comb(28 + 7, 7):,} monomials "
          f"(degree 5: {math.comb(33, 5):,}); not attempted")
    if args.full6:
        t = time.perf_counter()
        b6 = pip_basis(group, 6)
        print(f"  {'full PIP degree 6 (generation only)':<44s} {b6.n_basis:>8d} {time.perf_counter() - t:>8.2f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--water", action="store_true", help="only the water clusters")
    p.add_argument("--ethane", action="store_true", help="only ethane")
    p.add_argument("--deg2", type=int, default=5, help="2-body degree")
    p.add_argument("--intra2", type=int, default=1, help="2-body max intra-monomer degree (-1: no limit)")
    p.add_argument("--full6", action="store_true", help="also time the full degree-6 ethane PIP basis")
    p.add_argument("--save", default=None, help="write the water model (JSON)")
    args = p.parse_args(argv)
    if args.intra2 < 0:
        args.intra2 = None
    if not args.ethane:
        water(args)
    if not args.water:
        ethane(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
