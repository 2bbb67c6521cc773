"""Linear PIP fits of the shipped systems: accuracy, fit time and prediction cost.

Uses each ``molecules/NAME/recipe.toml`` as it stands (n_train = 4000; Morse
range and ridge chosen by CV on the training set) and the whole test set.
Reference test RMSEs (n = 4000): linear PIP fits by other packages for h2co
(2.5 meV, degree 5) and h3 (2.35 meV, degree 8); for the oh3 and ch5 sets
shipped since 2026-12, the goals of issue 16 (oh3 25 meV, ch5 5 meV).

    python benchmarks/bench_linear.py [NAME ...]
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from pesfit.data import load_dataset
from pesfit.models import make_model
from pesfit.recipe import load_recipe

from region_errors import print_regions  # benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1] / "molecules"
REFERENCE_MEV = {"h2co": 2.5, "h3": 2.35, "oh3": 25.0, "ch5": 5.0}


def run(name):
    recipe = load_recipe(ROOT / name / "recipe.toml")
    train = load_dataset(recipe.train).first(recipe.n_train)
    if not recipe.forces:
        train = train._replace(F=None)
    test = load_dataset(recipe.test)
    model = make_model(recipe.model, **recipe.model_params)
    t0 = time.perf_counter()
    model.fit(train)
    fit_s = time.perf_counter() - t0
    rep = model.evaluate(test)
    R = np.asarray(test.R)
    model.predict(R[:5], forces=True)
    t0 = time.perf_counter()
    model.predict(R)
    e_batch = (time.perf_counter() - t0) / len(R) * 1e6
    t0 = time.perf_counter()
    model.predict(R, forces=True)
    ef_batch = (time.perf_counter() - t0) / len(R) * 1e6
    t0 = time.perf_counter()
    for i in range(500):
        model.predict(R[i])
    e_single = (time.perf_counter() - t0) / 500 * 1e6
    t0 = time.perf_counter()
    for i in range(500):
        model.predict(R[i], forces=True)
    ef_single = (time.perf_counter() - t0) / 500 * 1e6
    print_regions(name, rep)
    return (name, model.basis_.n_basis, model.hyperparameters_["degree"], model.hyperparameters_["morse_a"],
            recipe.forces, rep["energy_rmse_meV"], REFERENCE_MEV[name], rep.get("force_rmse_meV_per_A"), fit_s,
            e_batch, ef_batch, e_single, ef_single)


def main(names):
    head = ["system", "n_basis", "deg", "a/Å", "forces", "test meV", "ref meV", "ratio", "F meV/Å", "fit s",
            "E us", "E+F us", "E 1x us", "E+F 1x us"]
    print("  ".join(f"{h:>9}" for h in head))
    for name in names:
        r = run(name)
        cells = [r[0], r[1], r[2], f"{r[3]:g}", str(r[4]), f"{r[5]:.2f}", f"{r[6]:g}", f"{r[5] / r[6]:.2f}",
                 f"{r[7]:.1f}", f"{r[8]:.1f}", f"{r[9]:.2f}", f"{r[10]:.2f}", f"{r[11]:.1f}", f"{r[12]:.1f}"]
        print("  ".join(f"{c:>9}" for c in cells), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["h3", "h2co", "oh3", "ch5"])
