"""Kernel back ends (KREG, pKREG, PIP-GPR, sGDML): learning curves against reference packages.

Trains on the first n structures of ``molecules/NAME/train.npz`` with each
model's defaults (hyperparameters chosen on the training data only) and
tests on the whole ``test.npz``; energies only (``E``) and energies with
forces (``E+F``).  Single thread (``OMP_NUM_THREADS=1`` unless set).
Times are CPU seconds of the fit and microseconds per structure of a
batched energy+force prediction over the test set.

Reference figures (same data, same machine class, single thread; test RMSE
energy meV / force meV/Å): sGDML 1.0.3 (E+F), MLatom 3.25.5 (KREG, pKREG)
and scikit-learn GPR on inverse distances (energies only).  ``ratio`` is
ours/reference for errors and reference/ours for times (> 1: faster).  The
reference figures for oh3 and ch5 were measured on the sets retired in 2026-12
(see molecules/oh3/README.md) and are no longer listed; those rows have none.

    python benchmarks/bench_kernels.py                       # h2co and h3, n = 100 200 500 1000
    python benchmarks/bench_kernels.py --systems oh3 ch5 --n 200
    python benchmarks/bench_kernels.py --models sgdml --modes E+F --n 200 1000
    python benchmarks/bench_kernels.py --large 2500      # sGDML by conjugate gradients, n x 3N = 30000
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from pesfit.data import load_npz  # noqa: E402
from pesfit.models import make_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1] / "molecules"

#: (model, mode, system, n) -> reference test errors (meV, meV/Å), train s, predict us/structure, source
REFERENCE = {
    ("sgdml", "E+F", "h2co", 200): dict(E=4.83, F=41.0, train=13.7, pred=170, src="sGDML 1.0.3"),
    ("sgdml", "E+F", "h2co", 1000): dict(E=1.55, F=17.3, train=578, pred=1300, src="sGDML 1.0.3"),
    ("sgdml", "E+F", "h3", 200): dict(E=3.72, F=16.6, src="sGDML 1.0.3"),
    ("sgdml", "E+F", "h3", 1000): dict(E=0.70, F=6.05, train=308, src="sGDML 1.0.3"),
    ("kreg", "E", "h2co", 200): dict(E=15.4, src="MLatom 3.25.5"),
    ("kreg", "E", "h3", 200): dict(E=6.5, src="MLatom 3.25.5"),
    ("kreg", "E+F", "h2co", 200): dict(E=5.01, F=42.7, train=572, src="MLatom 3.25.5"),
    ("pkreg", "E", "h2co", 200): dict(E=14.2, train=1.7, src="MLatom 3.25.5"),
    ("pkreg", "E", "h2co", 1000): dict(E=2.89, F=26.9, train=101, pred=10600, src="MLatom 3.25.5"),
    ("pkreg", "E+F", "h2co", 200): dict(E=3.36, F=30.0, train=1079, src="MLatom 3.25.5"),
    ("gpr", "E", "h2co", 1000): dict(E=2.21, src="scikit-learn GPR, inverse distances"),
}


def run_one(model_name, mode, system, n, train, test):
    data = train.first(n)
    if mode == "E":
        data = data._replace(F=None)
    params = {"use_forces": mode == "E+F"} if model_name != "sgdml" else {}
    model = make_model(model_name, **params)
    c0, w0 = time.process_time(), time.perf_counter()
    model.fit(data)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    rep = model.evaluate(test)
    R = np.asarray(test.R)
    model.predict(R[:2], forces=True)
    c0 = time.process_time()
    model.predict(R, forces=True)
    pred_us = (time.process_time() - c0) / len(R) * 1e6
    row = dict(system=system, model=model_name, mode=mode, n=n, E=rep["energy_rmse_meV"],
               F=rep.get("force_rmse_meV_per_A"), cpu=cpu, wall=wall, pred=pred_us,
               hyper=model.hyperparameters_)
    if model_name == "gpr":
        E, sd = model.predict(R, return_std=True)
        row["coverage"] = float(np.mean(np.abs(E - np.asarray(test.E)) <= sd))
    return row


def _fmt(x, spec):
    return "-" if x is None else format(x, spec)


def format_row(row):
    ref = REFERENCE.get((row["model"], row["mode"], row["system"], row["n"]), {})
    ratio_e = row["E"] / ref["E"] if "E" in ref else None
    ratio_f = row["F"] / ref["F"] if ("F" in ref and row["F"] is not None) else None
    speed_t = ref["train"] / row["cpu"] if "train" in ref else None
    speed_p = ref["pred"] / row["pred"] if "pred" in ref else None
    cells = [row["system"], row["model"], row["mode"], str(row["n"]), _fmt(row["E"], ".2f"), _fmt(row["F"], ".1f"),
             _fmt(row["cpu"], ".1f"), _fmt(row["wall"], ".1f"), _fmt(row["pred"], ".0f"),
             _fmt(ref.get("E"), "g"), _fmt(ref.get("F"), "g"), _fmt(ref.get("train"), "g"), _fmt(ref.get("pred"), "g"),
             _fmt(ratio_e, ".2f"), _fmt(ratio_f, ".2f"), _fmt(speed_t, ".1f"), _fmt(speed_p, ".0f"),
             _fmt(row.get("coverage"), ".2f")]
    return "  ".join(f"{c:>8}" for c in cells)


HEADER = ["system", "model", "mode", "n", "E meV", "F meV/Å", "fit cpu", "fit wall", "pred us", "ref E", "ref F",
          "ref fit", "ref pred", "E ratio", "F ratio", "fit x", "pred x", "+-1sd"]


def large_system(n, system="h2co"):
    """sGDML on a system too large for the dense solver: conjugate gradients, memory and accuracy."""
    import resource

    train = load_npz(ROOT / system / "train.npz").first(n)
    test = load_npz(ROOT / system / "test.npz")
    model = make_model("sgdml")
    c0, w0 = time.process_time(), time.perf_counter()
    model.fit(train)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    rep = model.evaluate(test)
    h = model.hyperparameters_
    rows = n * (1 + 3 * train.n_atoms - 6)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"# large system: {system} n={n} (n x 3N = {n * 3 * train.n_atoms}), {rows} rows "
          f"(dense matrix {8 * rows**2 / 2**30:.1f} GiB), solver {h['solver']}, peak RSS {peak:.2f} GiB")
    print(f"#   test E {rep['energy_rmse_meV']:.2f} meV, F {rep['force_rmse_meV_per_A']:.1f} meV/A, "
          f"fit cpu {cpu:.0f} s wall {wall:.0f} s, l={h['length_scale']:.3g} lambda={h['lambda']:g}", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--systems", nargs="+", default=["h2co", "h3"])
    p.add_argument("--n", nargs="+", type=int, default=[100, 200, 500, 1000])
    p.add_argument("--models", nargs="+", default=["kreg", "pkreg", "gpr", "sgdml"])
    p.add_argument("--modes", nargs="+", default=["E", "E+F"], choices=["E", "E+F"])
    p.add_argument("--large", type=int, default=None, help="only the large-system (conjugate gradients) run")
    args = p.parse_args(argv)
    if args.large:
        large_system(args.large)
        return []
    print("  ".join(f"{h:>8}" for h in HEADER), flush=True)
    rows = []
    for system in args.systems:
        train = load_npz(ROOT / system / "train.npz")
        test = load_npz(ROOT / system / "test.npz")
        for model_name in args.models:
            for mode in args.modes:
                if model_name == "sgdml" and mode == "E":
                    continue                      # sGDML learns forces
                for n in args.n:
                    try:
                        row = run_one(model_name, mode, system, n, train, test)
                    except ValueError as exc:
                        print(f"{system} {model_name} {mode} n={n}: {exc}", file=sys.stderr, flush=True)
                        continue
                    rows.append(row)
                    print(format_row(row), flush=True)
    for source in sorted({v["src"] for v in REFERENCE.values()}):
        print(f"# reference: {source}")
    return rows


if __name__ == "__main__":
    main()
