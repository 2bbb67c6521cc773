"""Regenerate the ethane (C2H6, A6B2) reference data with PySCF.

    nice -n 15 python molecules/ethane/generate.py          # about 5 CPU-minutes

Energies are density-fitted MP2 with cc-pVDZ (PySCF DFMP2, default RI
auxiliary basis, all electrons) at geometries sampled around the staggered
minimum: a uniformly random C-C torsion (the whole torsional profile) plus
random Cartesian displacements of every atom (sigma 0.03, 0.06 or 0.09 Å).
Atom order ``C C H H H H H H`` (H 2-4 on C 0, H 5-7 on C 1).  Outputs next
to this script, in Å and eV (energies relative to the staggered reference
geometry): ``train.npz`` (2500) and ``test.npz`` (500).  Work is cached in
chunks under ``--work`` so an interrupted run resumes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from pesfit.abinitio import Method, pyscf_version, single_points  # noqa: E402

METHOD = Method.parse("df-mp2/cc-pvdz")
SYMBOLS = ["C", "C", "H", "H", "H", "H", "H", "H"]


def staggered(torsion=0.0, r_cc=1.530, r_ch=1.094, hcc=np.deg2rad(111.2)) -> np.ndarray:
    """Ethane along z with the methyl groups twisted by ``torsion`` (0 = staggered) [rad]."""
    R = [[0.0, 0.0, r_cc / 2], [0.0, 0.0, -r_cc / 2]]
    s, c = r_ch * np.sin(np.pi - hcc), r_ch * np.cos(np.pi - hcc)
    for k in range(3):
        phi = 2 * np.pi * k / 3
        R.append([s * np.cos(phi), s * np.sin(phi), r_cc / 2 + c])
    for k in range(3):
        phi = 2 * np.pi * k / 3 + np.pi / 3 + torsion
        R.append([s * np.cos(phi), s * np.sin(phi), -r_cc / 2 - c])
    return np.array(R)


def sample(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        R = staggered(rng.uniform(0, 2 * np.pi / 3))
        R += rng.normal(0, rng.choice([0.03, 0.06, 0.09]), R.shape)
        out.append(R)
    return np.array(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, nargs=2, default=(1200, 300), metavar=("TRAIN", "TEST"))
    p.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "pesfit_ethane"))
    args = p.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    n_train, n_test = args.n
    e_ref = float(single_points(SYMBOLS, staggered()[None], METHOD)[0][0])
    R = sample(n_train + n_test, seed=8)
    E, cpu = [], 0.0
    for start in range(0, len(R), 100):
        path = work / f"ethane_{start:05d}.npz"
        if not path.exists():
            t0 = time.time()
            e, _, c = single_points(SYMBOLS, R[start:start + 100], METHOD)
            np.savez(path, E=e, cpu=c)
            print(f"ethane: {start + len(e)}/{len(R)} ({time.time() - t0:.0f} s wall, {c:.0f} s CPU)",
                  file=sys.stderr, flush=True)
        with np.load(path) as f:
            E.append(f["E"])
            cpu += float(f["cpu"])
    E = np.concatenate(E) - e_ref
    for split, sl in (("train", slice(0, n_train)), ("test", slice(n_train, None))):
        meta = {"description": "ethane around the staggered minimum, full torsion, random displacements",
                "method": str(METHOD), "method_detail": "RI-MP2 (PySCF DFMP2, default aux basis), all electrons",
                "pyscf_version": pyscf_version(), "E_ref_hartree": e_ref / 27.211386245988,
                "energy_zero": "staggered reference geometry (r_CC 1.530, r_CH 1.094 A, HCC 111.2 deg)",
                "seed": 8, "split": split, "cpu_seconds_all_splits": cpu, "generator": "generate.py"}
        with open(HERE / f"{split}.npz", "wb") as fh:
            np.savez_compressed(fh, R=R[sl], z=np.array([6, 6, 1, 1, 1, 1, 1, 1]), E=E[sl],
                                meta=np.array(json.dumps(meta)), r_unit=np.array("Ang"), e_unit=np.array("eV"))
    print(f"ethane: {len(R)} structures, {cpu:.0f} CPU s, E range {E.min():.3f}..{E.max():.3f} eV", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
