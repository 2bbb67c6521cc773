"""PIP-NN / FI-NN fits of the shipped systems: accuracy, learning curves, training and inference time.

Every fit uses the defaults of ``pesfit fit --model pipnn --forces`` (or
``finn``): nothing is tuned per system; the Morse range is chosen on the
training set only.  Training sets are the first n structures of
``molecules/NAME/train.npz``; errors are on the whole ``test.npz``.

Sections (default: all)::

    python benchmarks/bench_nn.py accuracy [NAME ...]   # n = 4000, E + F, vs the reference figures
    python benchmarks/bench_nn.py curve                 # n = 250, 1000, 4000; PIP-NN and FI-NN; h2co, oh3
    python benchmarks/bench_nn.py timing                # h2co training time; E+F inference vs linear PIP

Reference test energy RMSEs [meV]: CQPES PIP-NN (20x20, LM, degree-3 PIPs,
E + F, 100 epochs, n = 4000) and linear PIP fits by other packages.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np

from pesfit.data import load_npz
from pesfit.datasets import shipped_path
from pesfit.models import LinearPIPModel, make_model

from region_errors import print_regions  # benchmarks/ is on sys.path when run as a script

# CQPES was measured on the oh3/ch5 sets retired in 2026-12; no figure on the current ones
CQPES_MEV = {"h2co": 1.41, "h3": 0.69, "oh3": float("nan"), "ch5": float("nan")}
# linear PIP references: other packages (h2co, h3); pesfit's own linear defaults on the current oh3/ch5 (issue 16)
LINEAR_MEV = {"h2co": 2.5, "h3": 2.35, "oh3": 44.2, "ch5": 6.56}
GOAL_MEV = {"h2co": 0.5, "h3": 0.5, "oh3": 8.0, "ch5": 2.0}
CQPES_H2CO_SECONDS = 267.0

_CACHE: dict = {}


def _fit(name, n, model="pipnn"):
    key = (name, n, model)
    if key not in _CACHE:
        train = load_npz(shipped_path(name, "train")).first(n)
        test = load_npz(shipped_path(name, "test"))
        m = make_model(model, use_forces=True)            # = pesfit fit --model MODEL --forces
        t0, c0 = time.perf_counter(), time.process_time()
        m.fit(train)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        _CACHE[key] = (m, m.evaluate(test), wall, cpu, train, test)
    return _CACHE[key]


def _row(cells, widths):
    return "  ".join(f"{c:>{w}}" for c, w in zip(cells, widths))


def accuracy(names):
    head = ["system", "inputs", "P", "a/Å", "epochs", "E meV", "goal", "CQPES", "ratio", "linear", "ratio",
            "F meV/Å", "fit s", "cpu s"]
    widths = [6, 6, 5, 4, 6, 8, 5, 6, 6, 6, 6, 8, 7, 7]
    print("\n## accuracy: n = 4000, E + F, defaults of `pesfit fit --model pipnn --forces`")
    print(_row(head, widths), flush=True)
    out = []
    for name in names:
        m, rep, wall, cpu, _, _ = _fit(name, 4000)
        hp = m.hyperparameters_
        e = rep["energy_rmse_meV"]
        goal = f"{GOAL_MEV[name]:g}"
        cells = [name, hp["n_inputs"], hp["n_parameters"], f"{hp['morse_a']:g}", m.members_[0]["epochs"],
                 f"{e:.3f}", goal, f"{CQPES_MEV[name]:g}", f"{e / CQPES_MEV[name]:.2f}", f"{LINEAR_MEV[name]:g}",
                 f"{e / LINEAR_MEV[name]:.3f}", f"{rep['force_rmse_meV_per_A']:.2f}", f"{wall:.0f}", f"{cpu:.0f}"]
        print(_row(cells, widths), flush=True)
        print_regions(name, rep)
        out.append({"system": name, "test": rep, "fit_seconds": wall, "cpu_seconds": cpu, "hyperparameters": hp,
                    "epochs": m.members_[0]["epochs"], "best_epoch": m.members_[0]["best_epoch"]})
    return out


def curve():
    head = ["system", "model", "n", "inputs", "P", "epochs", "E meV", "F meV/Å", "fit s"]
    widths = [6, 6, 5, 6, 5, 6, 8, 8, 7]
    print("\n## learning curve: E + F, test RMSE on the whole test set")
    print(_row(head, widths), flush=True)
    out = []
    for name in ("h2co", "oh3"):
        for model in ("pipnn", "finn"):
            for n in (250, 1000, 4000):
                m, rep, wall, _, _, _ = _fit(name, n, model)
                hp = m.hyperparameters_
                cells = [name, model, n, hp["n_inputs"], hp["n_parameters"], m.members_[0]["epochs"],
                         f"{rep['energy_rmse_meV']:.3f}", f"{rep['force_rmse_meV_per_A']:.2f}", f"{wall:.0f}"]
                print(_row(cells, widths), flush=True)
                out.append({"system": name, "model": model, "n": n, "n_inputs": hp["n_inputs"], "test": rep,
                            "fit_seconds": wall})
    return out


def _per_call_us(predict, R, n_calls=300, repeats=7):
    """Best of ``repeats`` runs of ``n_calls`` single-structure calls (the machine is shared)."""
    predict(R[0], forces=True)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(n_calls):
            predict(R[i % len(R)], forces=True)
        best = min(best, (time.perf_counter() - t0) / n_calls * 1e6)
    return best


def _batched_us(predict, R, repeats=5):
    predict(R[:5], forces=True)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict(R, forces=True)
        best = min(best, (time.perf_counter() - t0) / len(R) * 1e6)
    return best


def timing():
    m, rep, wall, cpu, train, test = _fit("h2co", 4000)
    hp = m.hyperparameters_
    lin = LinearPIPModel(degree=hp["degree"], morse_a=hp["morse_a"], use_forces=True).fit(train)
    R = np.asarray(test.R)
    print(f"\n## timing: h2co, n = 4000, E + F, one network ({hp['n_inputs']} inputs, hidden {hp['hidden']}, "
          f"{m.members_[0]['epochs']} epochs)")
    print(f"training: {wall:.0f} s wall, {cpu:.0f} s CPU (goal <= 300 s on 2 cores; CQPES {CQPES_H2CO_SECONDS:g} s)")
    head = ["model", "n_basis", "E+F 1x us", "E+F batch us", "test E meV"]
    widths = [22, 7, 10, 12, 10]
    print(_row(head, widths))
    rows = []
    for label, model in ((f"PIP-NN {hp['hidden']}", m), (f"linear PIP degree {hp['degree']}", lin)):
        single = _per_call_us(model.predict, R)
        batch = _batched_us(model.predict, R)
        e = model.evaluate(test)["energy_rmse_meV"]
        print(_row([label, model.n_basis, f"{single:.1f}", f"{batch:.2f}", f"{e:.3f}"], widths), flush=True)
        rows.append({"model": label, "n_basis": model.n_basis, "single_us": single, "batch_us": batch,
                     "test_energy_rmse_meV": e})
    return {"fit_seconds": wall, "cpu_seconds": cpu, "inference": rows}


def main(argv):
    sections = [a for a in argv if a in ("accuracy", "curve", "timing", "all")] or ["all"]
    names = [a for a in argv if a in CQPES_MEV] or ["h2co", "h3", "oh3", "ch5"]
    json_path = next((a.split("=", 1)[1] for a in argv if a.startswith("--json=")), None)
    results = {}
    if "accuracy" in sections or "all" in sections:
        results["accuracy"] = accuracy(names)
    if "curve" in sections or "all" in sections:
        results["curve"] = curve()
    if "timing" in sections or "all" in sections:
        results["timing"] = timing()
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(results, fh, indent=1, default=float)


if __name__ == "__main__":
    main(sys.argv[1:])
