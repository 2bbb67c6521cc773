"""Formaldehyde on its fitted surface through ASE: minimum, harmonic frequencies, NVE dynamics.

    pesfit fit molecules/h2co/recipe.toml          # writes molecules/h2co/model.json
    python molecules/h2co/examples/ase_md.py       # about 5 s

1. ``PESCalculator`` makes the model an ASE calculator (eV, Å; the atoms must
   be in the model's order C O H H).
2. ``ase.optimize.BFGS`` finds the minimum from the model's reference geometry
   (its lowest-energy training structure).
3. ``ase.vibrations.Vibrations`` gives the harmonic frequencies, compared with
   ``pesfit.vib`` (the same standard atomic weights that ASE uses).
4. A velocity-Verlet NVE run (default 1 ps, 0.25 fs step, 300 K) checks that the
   total energy is conserved to better than 1 meV.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def nve(atoms, *, time_fs: float, dt_fs: float, temperature_K: float, seed: int):
    """Velocity-Verlet run; returns times [fs] and total energies [eV]."""
    from ase import units
    from ase.md.velocitydistribution import Stationary, ZeroRotation
    from ase.md.verlet import VelocityVerlet

    rng = np.random.default_rng(seed)  # Maxwell-Boltzmann momenta
    atoms.set_momenta(rng.normal(size=(len(atoms), 3)) * np.sqrt(atoms.get_masses()[:, None] * units.kB
                                                                 * temperature_K))
    Stationary(atoms)
    ZeroRotation(atoms)
    dyn = VelocityVerlet(atoms, timestep=dt_fs * units.fs)
    n = int(round(time_fs / dt_fs))
    etot = np.empty(n + 1)
    etot[0] = atoms.get_total_energy()
    for k in range(n):
        dyn.run(1)
        etot[k + 1] = atoms.get_total_energy()
    return np.arange(n + 1) * dt_fs, etot


def main(argv=None) -> dict:
    from ase import Atoms
    from ase.optimize import BFGS
    from ase.vibrations import Vibrations

    from pesfit.ase import PESCalculator
    from pesfit.models import load_model
    from pesfit.vib import harmonic_analysis

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(HERE.parent / "model.json"))
    p.add_argument("--time-fs", type=float, default=1000.0, help="NVE run length, fs")
    p.add_argument("--dt-fs", type=float, default=0.25, help="time step, fs")
    p.add_argument("--temperature", type=float, default=300.0, help="initial temperature, K")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    if not Path(args.model).exists():
        sys.exit(f"{args.model} not found: run `pesfit fit molecules/h2co/recipe.toml` first")
    t0 = time.perf_counter()
    model = load_model(args.model)

    atoms = Atoms(model.molecule_.symbols, positions=model.reference_geometry_)
    atoms.calc = PESCalculator(model)
    BFGS(atoms, logfile=None).run(fmax=1e-5, steps=500)
    e_min = atoms.get_potential_energy()
    print(f"minimum: E = {e_min:.6f} eV, r(C-O) = {atoms.get_distance(0, 1):.5f} Å, "
          f"r(C-H) = {atoms.get_distance(0, 2):.5f} Å, angle(H-C-H) = {atoms.get_angle(2, 0, 3):.3f} deg")

    with tempfile.TemporaryDirectory() as tmp:
        vib = Vibrations(atoms, name=str(Path(tmp) / "vib"), delta=0.005, nfree=2)
        vib.run()
        ase_freqs = np.sort(np.real(vib.get_frequencies()))[6:]  # cm^-1; the 6 rigid motions first
    ours = harmonic_analysis(model, atoms.get_positions(), masses="average")
    print(f"{'mode':>4} {'ASE Vibrations':>15} {'pesfit.vib':>11}  description")
    for k, (a, b, lab) in enumerate(zip(ase_freqs, ours.frequencies_cm, ours.labels)):
        print(f"{k + 1:>4} {a:>15.1f} {b:>11.1f}  {lab}")

    R_min = atoms.get_positions()
    t, etot = nve(atoms, time_fs=args.time_fs, dt_fs=args.dt_fs, temperature_K=args.temperature, seed=args.seed)
    dev = 1000 * (etot - etot[0])
    slope = 1000 * np.polyfit(t, etot, 1)[0] * 1000  # meV/ps
    print(f"NVE {args.time_fs:g} fs at {args.dt_fs:g} fs/step from {args.temperature:g} K: total energy "
          f"max |E - E0| = {np.abs(dev).max():.3f} meV, fluctuation (std) {dev.std():.3f} meV, "
          f"drift {slope:.3f} meV/ps")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return {"e_min_eV": e_min, "geometry_A": R_min, "ase_frequencies_cm": ase_freqs,
            "pesfit_frequencies_cm": ours.frequencies_cm, "max_energy_deviation_meV": float(np.abs(dev).max()),
            "drift_meV_per_ps": float(slope)}


if __name__ == "__main__":
    main()
