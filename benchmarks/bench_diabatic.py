"""Diabatic fits of NH3 (nh3_dpem): the acceptance table of issue 8.

Runs ``pesfit fit --model diabatic --states 2 --irreps A1,A2`` in-process
(n_train = 4000, whole test set) with ``--target u`` and ``--target adiabatic``
and prints, for each figure, the measured value and the acceptance limit.
It also prints how far the source's own diabats can be rotated without
changing the adiabatic energies (``theta = THETA * tanh(V / 1 Å^3)``, a
rotation of the coupling's symmetry A2''): the couplings are not determined
by adiabatic energies alone when, as here, the states never come close.

    python benchmarks/bench_diabatic.py [u] [adiabatic] [rotation]

The adiabatic fit is nonlinear and takes several minutes.  No thread
environment variables are needed: the library runs the fit's many small
solves on single-threaded BLAS itself (see ``bench_scale.py diabatic`` for
the CLI-vs-in-process comparison).
"""
from __future__ import annotations

import contextlib
import io
import json
import sys
import time

import numpy as np

from pesfit.cli import main as pesfit_main
from pesfit.datasets import shipped_path
from pesfit.models.pseudoscalars import signed_volume

THETA = 0.05


def run_cli(*flags) -> tuple[dict, float]:
    argv = ["fit", "--train", str(shipped_path("nh3_dpem", "train")), "--n-train", "4000",
            "--test", str(shipped_path("nh3_dpem", "test")), "--model", "diabatic", "--states", "2",
            "--irreps", "A1,A2", *flags, "--json", "--quiet"]
    buf = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(buf):
        code = pesfit_main(argv)
    if code != 0:
        raise SystemExit(f"pesfit {' '.join(argv)} failed with status {code}")
    return json.loads(buf.getvalue()), time.perf_counter() - t0


def rotation_ambiguity(theta_max: float = THETA) -> dict:
    """|U12| change under an energy-preserving A2'' rotation of the source diabats (test set)."""
    d = np.load(shipped_path("nh3_dpem", "test"))
    R, U = d["R"], d["U"]
    theta = theta_max * np.tanh(signed_volume(R, (0, 1, 2, 3)))
    c, s = np.cos(theta), np.sin(theta)
    O = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
    Ur = np.einsum("nji,njk,nkl->nil", O, U, O)
    de = np.abs(np.linalg.eigvalsh(Ur) - np.linalg.eigvalsh(U)).max()
    du = np.sqrt(np.mean((np.abs(Ur[:, 0, 1]) - np.abs(U[:, 0, 1])) ** 2))
    return {"theta_max": theta_max, "max_energy_change_meV": 1000 * de, "abs_u12_rmse_meV": 1000 * du,
            "u11_rmse_meV": 1000 * np.sqrt(np.mean((Ur[:, 0, 0] - U[:, 0, 0]) ** 2))}


def row(label, value, limit):
    ok = "pass" if value <= limit else "FAIL"
    return f"  {label:<44s} {value:>9.2f} {limit:>9.1f}  {ok}"


def main(parts):
    print(f"{'':<46s} {'meV':>9s} {'limit':>9s}")
    if "u" in parts:
        out, sec = run_cli("--target", "u")
        t = out["test"]
        print(f"(a) --target u  (fit {sec:.0f} s, {out['n_basis']} coefficients, "
              f"degree {out['hyperparameters']['degree']}, a = {out['hyperparameters']['morse_a']} Å)")
        print(row("U11 test RMSE", t["u_rmse_meV"]["U11"], 10))
        print(row("U22 test RMSE", t["u_rmse_meV"]["U22"], 10))
        print(row("U12 test RMSE", t["u_rmse_meV"]["U12"], 15))
        print(f"  {'adiabatic energies, both states (test.energy_rmse_meV)':<44s} {t['energy_rmse_meV']:>9.2f}")
        for s in t["states"]:
            print(f"  {'  state ' + str(s['state']):<44s} {s['energy_rmse_meV']:>9.2f}")
        sys.stdout.flush()
    if "adiabatic" in parts:
        out, sec = run_cli("--target", "adiabatic")
        t = out["test"]
        print(f"(b) --target adiabatic  (fit {sec:.0f} s, {out['n_basis']} coefficients, "
              f"degree {out['hyperparameters']['degree']}, a = {out['hyperparameters']['morse_a']} Å)")
        print(row("adiabatic energy RMSE, state 1", t["states"][0]["energy_rmse_meV"], 10))
        print(row("adiabatic energy RMSE, state 2", t["states"][1]["energy_rmse_meV"], 10))
        print(row("|U12| vs source, RMSE", t["u_abs_rmse_meV"]["U12"], 50))
        print(f"  {'(U11, U22 vs source)':<44s} {t['u_rmse_meV']['U11']:>9.2f} {t['u_rmse_meV']['U22']:>9.2f}")
        sys.stdout.flush()
    if "rotation" in parts:
        r = rotation_ambiguity()
        print(f"rotation of the source diabats by theta = {r['theta_max']} tanh(V/1 Å^3) (A2''):")
        print(f"  {'max change of adiabatic energies':<44s} {r['max_energy_change_meV']:>9.2e}")
        print(f"  {'RMS change of |U12|':<44s} {r['abs_u12_rmse_meV']:>9.2f}")
        print(f"  {'RMS change of U11':<44s} {r['u11_rmse_meV']:>9.2f}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["u", "adiabatic", "rotation"])
