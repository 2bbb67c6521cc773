"""Regenerate the water dimer and trimer reference data with PySCF.

    nice -n 15 python molecules/water_clusters/generate.py all      # everything (about 60 CPU-minutes)
    python molecules/water_clusters/generate.py dimers --n 2000     # one part

Energies are density-fitted MP2 with aug-cc-pVDZ (RI-MP2 with PySCF's
default aug-cc-pVDZ-RI auxiliary basis, all electrons correlated, no
counterpoise correction).  Every cluster comes with the energies of all its
proper sub-clusters (monomers, and for trimers the three dimers), so n-body
energies follow by inclusion-exclusion.  A small extra set has energies and
analytic gradients with conventional-integral MP2/aug-cc-pVDZ.

Work is done in chunks cached under ``--work`` (default: a directory in the
system temp dir), so an interrupted run resumes where it stopped.  Sampling is
deterministic (fixed seeds).  Outputs (Å, eV, eV/Å, next to this script):

* ``dimers_train.npz``, ``dimers_test.npz``, ``trimers_train.npz``,
  ``trimers_test.npz``: ``R``, ``z``, ``E`` (cluster energy minus
  ``n_monomers * E_ref``), ``fragments`` (n_fragments, n_monomers) bool,
  ``E_fragments`` (n, n_fragments) (sub-cluster energy minus
  ``|S| * E_ref``), ``meta`` (JSON: method, ``E_ref`` in hartree, CPU time);
* ``dimers_forces.npz``, ``trimers_forces.npz``: ``R``, ``z``, ``E``, ``F``.

Read them with :func:`pesfit.models.manybody.load_clusters`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from pesfit import units  # noqa: E402
from pesfit.abinitio import Method, fragment_energies, pyscf_version, single_points  # noqa: E402

METHOD = Method.parse("df-mp2/aug-cc-pvdz")
GRAD_METHOD = Method.parse("mp2/aug-cc-pvdz")
KCAL = units.energy_factor("kcal/mol", "eV")
R_OH, THETA = 0.9572, np.deg2rad(104.52)
SYMBOLS = ["O", "H", "H"]
Z = [8, 1, 1]

# ------------------------------------------------------------------ geometry


def monomer(r1=R_OH, r2=R_OH, theta=THETA) -> np.ndarray:
    """Water in its local frame: O at the origin, bisector along +z, molecule in the xz plane."""
    s, c = np.sin(theta / 2), np.cos(theta / 2)
    return np.array([[0.0, 0.0, 0.0], [r1 * s, 0.0, r1 * c], [-r2 * s, 0.0, r2 * c]])


def distorted_monomer(rng, scale=1.0) -> np.ndarray:
    r1, r2 = R_OH + np.clip(rng.normal(0, 0.025 * scale, 2), -0.08, 0.08)
    theta = THETA + np.deg2rad(np.clip(rng.normal(0, 5.0 * scale), -15, 15))
    return monomer(r1, r2, theta)


def frame_of(xyz: np.ndarray) -> Rotation:
    """Rotation taking the local-frame reference monomer onto ``xyz`` (about O)."""
    ref = monomer()
    rot, _ = Rotation.align_vectors(xyz[1:] - xyz[0], ref[1:])
    return rot


def place(local: np.ndarray, rot: Rotation, origin) -> np.ndarray:
    return rot.apply(local) + np.asarray(origin)


#: water dimer minimum (S22 set, Jurecka et al. 2006), Å
DIMER_MIN = np.array([
    [-1.551007, -0.114520, 0.000000], [-1.934259, 0.762503, 0.000000], [-0.599677, 0.040712, 0.000000],
    [1.350625, 0.111469, 0.000000], [1.680398, -0.373741, -0.758561], [1.680398, -0.373741, 0.758561]])


def cyclic_trimer(side=2.80, tilt=np.deg2rad(30.0)) -> np.ndarray:
    """Idealised cyclic trimer: each water donates one H along the ring, free H up/up/down."""
    rho = side / np.sqrt(3)
    O = np.array([[rho * np.cos(2 * np.pi * k / 3), rho * np.sin(2 * np.pi * k / 3), 0.0] for k in range(3)])
    out = []
    for k, w in zip(range(3), (1, 1, -1)):
        u = O[(k + 1) % 3] - O[k]
        u /= np.linalg.norm(u)
        donor = O[k] + R_OH * u
        out_dir = O[k] / rho - np.dot(O[k] / rho, u) * u  # outward from the ring, perpendicular to u
        perp = np.cos(tilt) * out_dir / np.linalg.norm(out_dir) + np.sin(tilt) * np.array([0.0, 0.0, w])
        v = np.cos(THETA) * u + np.sin(THETA) * perp
        out += [O[k], donor, O[k] + R_OH * v]
    return np.array(out)


def screening_energy(R: np.ndarray) -> float:
    """TIP3P-like pair energy [kcal/mol], used only to reject hopelessly repulsive samples."""
    q = np.array([-0.834, 0.417, 0.417])
    n = len(R) // 3
    e = 0.0
    for a, b in combinations(range(n), 2):
        A, B = R[3 * a:3 * a + 3], R[3 * b:3 * b + 3]
        r = np.linalg.norm(A[:, None] - B[None], axis=-1)
        e += 332.0637 * np.sum(np.outer(q, q) / r)
        x = (3.1507 / r[0, 0]) ** 6
        e += 4 * 0.1521 * (x * x - x)
    return e


def acceptable(R: np.ndarray, e_max=8.0) -> bool:
    n = len(R) // 3
    for a, b in combinations(range(n), 2):
        A, B = R[3 * a:3 * a + 3], R[3 * b:3 * b + 3]
        r = np.linalg.norm(A[:, None] - B[None], axis=-1)
        if r[0, 0] < 2.4 or r.min() < 1.35:
            return False
    return screening_energy(R) <= e_max


def perturbed(reference: np.ndarray, rng, rot_deg=20.0, shift=0.2) -> np.ndarray:
    """Rotate each monomer of ``reference`` about its O, shift it, and distort it."""
    out = []
    for k in range(len(reference) // 3):
        xyz = reference[3 * k:3 * k + 3]
        rot = Rotation.from_rotvec(np.deg2rad(rot_deg) * rng.normal(size=3) / np.sqrt(3)) * frame_of(xyz)
        out.append(place(distorted_monomer(rng), rot, xyz[0] + rng.normal(0, shift, 3)))
    return np.vstack(out)


def random_cluster(n, rng, r_range) -> np.ndarray:
    """Monomers in random orientations, each O at a random distance in ``r_range`` from an earlier O."""
    out = [place(distorted_monomer(rng), Rotation.random(random_state=rng), np.zeros(3))]
    for _ in range(1, n):
        anchor = out[rng.integers(len(out))][0]
        d = rng.normal(size=3)
        pos = anchor + rng.uniform(*r_range) * d / np.linalg.norm(d)
        out.append(place(distorted_monomer(rng), Rotation.random(random_state=rng), pos))
    return np.vstack(out)


def sample(n_monomers: int, count: int, seed: int) -> np.ndarray:
    """Half perturbations of the minimum, half random connected clusters (all screened)."""
    rng = np.random.default_rng(seed)
    ref = DIMER_MIN if n_monomers == 2 else cyclic_trimer()
    r_range = (2.5, 6.5) if n_monomers == 2 else (2.5, 5.0)
    out = []
    while len(out) < count:
        if len(out) % 2 == 0:
            R = perturbed(ref, rng, rot_deg=rng.choice([10.0, 25.0, 40.0]), shift=rng.choice([0.1, 0.25, 0.4]))
        else:
            R = random_cluster(n_monomers, rng, r_range)
        if acceptable(R):
            out.append(R)
    return np.array(out)


# ------------------------------------------------------------------ compute


def reference_energy(method: Method) -> float:
    """Energy [eV] of the reference monomer (r = 0.9572 Å, 104.52 deg)."""
    return float(single_points(SYMBOLS, monomer()[None], method)[0][0])


def cluster_chunk(R: np.ndarray, e_ref: float) -> dict:
    n_mon = R.shape[1] // 3
    subsets = [s for k in range(1, n_mon) for s in combinations(range(n_mon), k)]
    t0 = time.process_time()
    E = single_points(SYMBOLS * n_mon, R, METHOD)[0] - n_mon * e_ref
    Ef = fragment_energies(SYMBOLS * n_mon, R, 3, subsets, METHOD)[0]
    Ef -= np.array([len(s) for s in subsets]) * e_ref
    masks = np.array([[i in s for i in range(n_mon)] for s in subsets])
    return {"R": R, "E": E, "E_fragments": Ef, "fragments": masks, "cpu": time.process_time() - t0}


def run_chunks(name: str, R: np.ndarray, work: Path, fn, chunk=25, reverse=False, only=None) -> list[dict]:
    out = []
    starts = list(range(0, len(R), chunk))
    if only is not None:  # compute just these chunks (a helper process), assemble nothing
        mine = [s for s in starts if only[0] <= s < only[1]]
        for start in (mine[::-1] if reverse else mine):
            path = work / f"{name}_{start:05d}.npz"
            if not path.exists():
                res = fn(R[start:start + chunk])
                np.savez(path, **res)
                print(f"{name}: chunk {start} done ({float(res['cpu']):.0f} s CPU)", file=sys.stderr, flush=True)
        return None
    if reverse:  # a second process can work from the end; results are read back in order below
        for start in starts[::-1]:
            path = work / f"{name}_{start:05d}.npz"
            if not path.exists():
                res = fn(R[start:start + chunk])
                np.savez(path, **res)
                print(f"{name}: chunk {start} done ({float(res['cpu']):.0f} s CPU)", file=sys.stderr, flush=True)
    for start in starts:
        path = work / f"{name}_{start:05d}.npz"
        if path.exists():
            with np.load(path) as f:
                out.append({k: f[k] for k in f.files})
            continue
        t0 = time.time()
        res = fn(R[start:start + chunk])
        np.savez(path, **res)
        out.append(res)
        print(f"{name}: {start + len(R[start:start + chunk])}/{len(R)} ({time.time() - t0:.0f} s wall, "
              f"{float(res['cpu']):.0f} s CPU)", file=sys.stderr, flush=True)
    return out


def save(path: Path, arrays: dict, meta: dict) -> None:
    arrays = dict(arrays)
    arrays["meta"] = np.array(json.dumps(meta))
    arrays["r_unit"] = np.array("Ang")
    arrays["e_unit"] = np.array("eV")
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def make_clusters(n_monomers: int, n_train: int, n_test: int, work: Path, seed: int, reverse=False,
                  only=None, extra_train: int = 0) -> None:
    """Sample ``n_train + n_test + extra_train`` clusters in one sequence; the test set is the slice
    ``[n_train, n_train + n_test)``, so extra training clusters leave it (and earlier chunks) unchanged."""
    name = {2: "dimers", 3: "trimers"}[n_monomers]
    e_ref = reference_energy(METHOD)
    R = sample(n_monomers, n_train + n_test + extra_train, seed)
    parts = run_chunks(name, R, work, lambda r: cluster_chunk(r, e_ref), reverse=reverse, only=only)
    if parts is None:
        return
    E = np.concatenate([p["E"] for p in parts])
    Ef = np.concatenate([p["E_fragments"] for p in parts])
    cpu = float(sum(float(p["cpu"]) for p in parts))
    test = np.arange(n_train, n_train + n_test)
    for split, sl in (("train", np.setdiff1d(np.arange(len(R)), test)), ("test", test)):
        meta = {
            "description": f"water {name}: half perturbed minima, half random connected clusters",
            "method": str(METHOD), "method_detail": "RI-MP2 (PySCF DFMP2, default aux basis), all electrons, "
                                                    "fragments in their own basis (no counterpoise)",
            "pyscf_version": pyscf_version(), "monomer": "O H H", "n_monomers": n_monomers,
            "E_ref_hartree": e_ref / units.energy_factor("hartree", "eV"),
            "E_ref_geometry": "r_OH = 0.9572 A, HOH = 104.52 deg",
            "energy_zero": "E is the cluster energy minus n_monomers * E_ref; E_fragments likewise per sub-cluster",
            "seed": seed, "split": split, "cpu_seconds_all_splits": cpu, "generator": "generate.py",
            "sequence": f"clusters {n_train}..{n_train + n_test - 1} of the seeded sequence are the test set, "
                        f"the other {len(R) - n_test} the training set",
        }
        save(HERE / f"{name}_{split}.npz",
             {"R": R[sl], "z": np.array(Z * n_monomers), "E": E[sl], "fragments": parts[0]["fragments"],
              "E_fragments": Ef[sl]}, meta)
    print(f"{name}: {len(R)} clusters, {cpu:.0f} CPU s", file=sys.stderr)


def make_forces(n_dimers: int, n_trimers: int, work: Path) -> None:
    e_ref = reference_energy(GRAD_METHOD)
    for n_mon, count, seed in ((2, n_dimers, 202), (3, n_trimers, 303)):
        name = {2: "dimers", 3: "trimers"}[n_mon]
        R = sample(n_mon, count, seed)

        def fn(r):
            E, G, cpu = single_points(SYMBOLS * n_mon, r, GRAD_METHOD, gradient=True)
            return {"R": r, "E": E - n_mon * e_ref, "F": -G, "cpu": cpu}

        parts = run_chunks(f"{name}_forces", R, work, fn, chunk=2)
        cpu = float(sum(float(p["cpu"]) for p in parts))
        meta = {"description": f"water {name} with analytic gradients", "method": str(GRAD_METHOD),
                "method_detail": "conventional-integral MP2, all electrons", "pyscf_version": pyscf_version(),
                "monomer": "O H H", "n_monomers": n_mon,
                "E_ref_hartree": e_ref / units.energy_factor("hartree", "eV"),
                "energy_zero": "E is the cluster energy minus n_monomers * E_ref", "seed": seed,
                "cpu_seconds": cpu, "generator": "generate.py"}
        save(HERE / f"{name}_forces.npz", {"R": R, "z": np.array(Z * n_mon),
                                           "E": np.concatenate([p["E"] for p in parts]),
                                           "F": np.concatenate([p["F"] for p in parts])}, meta)
        print(f"{name}_forces: {count} clusters, {cpu:.0f} CPU s", file=sys.stderr)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=["dimers", "trimers", "forces", "all"])
    p.add_argument("--n-dimers", type=int, nargs=2, default=(1250, 250), metavar=("TRAIN", "TEST"))
    p.add_argument("--n-trimers", type=int, nargs=2, default=(900, 150), metavar=("TRAIN", "TEST"))
    p.add_argument("--extra-trimers", type=int, default=1500,
                   help="training trimers sampled after the test set (the test set stays the same)")
    p.add_argument("--n-forces", type=int, nargs=2, default=(10, 2), metavar=("DIMERS", "TRIMERS"))
    p.add_argument("--reverse", action="store_true", help="work through the chunks from the end (second process)")
    p.add_argument("--only", type=int, nargs=2, default=None, metavar=("START", "STOP"),
                   help="compute only the chunks starting in [START, STOP) and write no output (helper process)")
    p.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "pesfit_water_clusters"))
    args = p.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.what in ("dimers", "all"):
        make_clusters(2, *args.n_dimers, work, seed=2, reverse=args.reverse, only=args.only)
    if args.what in ("trimers", "all"):
        make_clusters(3, *args.n_trimers, work, seed=3, reverse=args.reverse, only=args.only,
                      extra_train=args.extra_trimers)
    if args.what in ("forces", "all"):
        make_forces(*args.n_forces, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
