"""Harmonic frequencies of formaldehyde: linear PIP vs PIP-NN fits of the same data.

Both back ends are fitted to the data of ``molecules/h2co/recipe.toml``
(the first 4000 training structures, energies only); each surface is
minimised from the lowest-energy training structure and its harmonic
frequencies computed by :func:`pesfit.vib.optimize_and_analyse`.  The
acceptance criterion: every mode agrees within 5 cm^-1.

When ``pesfit.models`` has no ``pipnn`` back end yet, the linear frequencies
are printed and the comparison is reported as not run (exit status 0).

    python benchmarks/bench_vib.py [--linear FILE] [--pipnn FILE] [--pipnn-params JSON] [--tol 5]

``--linear``/``--pipnn`` reuse fitted model files instead of fitting;
``--pipnn-params`` overrides PIP-NN hyperparameters (e.g. '{"hidden": [30, 30]}').
Exit status 1 when a mode differs by more than ``--tol``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from pesfit.data import load_dataset
from pesfit.models import load_model, make_model, registered_models
from pesfit.recipe import load_recipe
from pesfit.vib import optimize_and_analyse

RECIPE = Path(__file__).resolve().parents[1] / "molecules" / "h2co" / "recipe.toml"


def _pipnn_available() -> bool:
    if "pipnn" in registered_models():
        return True
    try:  # the back end may exist before pesfit.models imports it
        importlib.import_module("pesfit.models.nn")
    except ImportError:
        return False
    return "pipnn" in registered_models()


def _fit(name, params, train):
    model = make_model(name, **params)
    t0 = time.perf_counter()
    model.fit(train)
    return model, time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--linear", help="fitted linear model file (default: fit the recipe)")
    p.add_argument("--pipnn", help="fitted PIP-NN model file (default: fit the recipe's data)")
    p.add_argument("--pipnn-params", default="{}", help="PIP-NN hyperparameters as JSON")
    p.add_argument("--tol", type=float, default=5.0, help="largest allowed difference, cm^-1")
    args = p.parse_args(argv)

    recipe = load_recipe(RECIPE)
    train = load_dataset(recipe.train).first(recipe.n_train)
    if not recipe.forces:
        train = train._replace(F=None)
    test = load_dataset(recipe.test)

    if args.linear:
        linear, t_lin = load_model(args.linear), 0.0
    else:
        linear, t_lin = _fit(recipe.model, recipe.model_params, train)
    res_lin = optimize_and_analyse(linear)
    print(f"linear PIP: {linear.n_basis} basis functions, test RMSE "
          f"{linear.evaluate(test)['energy_rmse_meV']:.3f} meV, fit {t_lin:.1f} s")

    if not _pipnn_available():
        print("\nmode  linear PIP (cm-1)  description")
        for k, (f, lab) in enumerate(zip(res_lin.frequencies_cm, res_lin.labels)):
            print(f"{k + 1:>4}  {f:>17.1f}  {lab}")
        print("\nPIP-NN back end not available (no 'pipnn' in pesfit.models): comparison not run")
        return 0

    if args.pipnn:
        nn, t_nn = load_model(args.pipnn), 0.0
    else:
        nn, t_nn = _fit("pipnn", json.loads(args.pipnn_params), train)
    res_nn = optimize_and_analyse(nn)
    print(f"PIP-NN: test RMSE {nn.evaluate(test)['energy_rmse_meV']:.3f} meV, fit {t_nn:.1f} s")

    diff = res_nn.frequencies_cm - res_lin.frequencies_cm
    print(f"\n{'mode':>4} {'linear PIP':>11} {'PIP-NN':>9} {'diff':>7}  description (cm-1)")
    for k in range(len(diff)):
        print(f"{k + 1:>4} {res_lin.frequencies_cm[k]:>11.1f} {res_nn.frequencies_cm[k]:>9.1f} {diff[k]:>7.1f}  "
              f"{res_lin.labels[k]}" + ("" if res_nn.labels[k] == res_lin.labels[k] else f" / {res_nn.labels[k]}"))
    worst = float(np.max(np.abs(diff)))
    ok = worst <= args.tol
    print(f"\nlargest difference {worst:.2f} cm-1: {'PASS' if ok else 'FAIL'} (tolerance {args.tol:g} cm-1)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
