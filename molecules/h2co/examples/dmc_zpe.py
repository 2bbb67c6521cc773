"""Zero-point energy of formaldehyde by diffusion Monte Carlo (pyvibdmc) on the fitted surface.

    pip install "pesfit[dmc]"                      # pyvibdmc and h5py
    pesfit fit molecules/h2co/recipe.toml          # writes molecules/h2co/model.json
    python molecules/h2co/examples/dmc_zpe.py      # about 1-2 minutes on one core

The walkers start at the minimum found by ``pesfit.vib.minimize``; energies
are measured from that minimum, so the mean reference energy after
equilibration is the ZPE.  Its statistical error comes from blocking the
correlated V_ref series.  The harmonic ZPE (sum of harmonic wavenumbers / 2)
is printed for comparison: the anharmonic DMC value is lower by roughly 1-2 %.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> dict:
    from tqdm import tqdm

    from pesfit.dmc import run_pyvibdmc
    from pesfit.models import load_model
    from pesfit.vib import harmonic_analysis, minimize

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(HERE.parent / "model.json"))
    p.add_argument("--walkers", type=int, default=1000)
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--equilibration", type=int, default=2000)
    p.add_argument("--dt", type=float, default=10.0, help="time step, atomic units")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=None, help="pyvibdmc output folder (default: a temporary one)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if not Path(args.model).exists():
        sys.exit(f"{args.model} not found: run `pesfit fit molecules/h2co/recipe.toml` first")
    t0 = time.perf_counter()
    model = load_model(args.model)
    R, E_min, _ = minimize(model)
    harmonic = harmonic_analysis(model, R)

    bar = None if args.quiet else tqdm(total=args.steps, desc="DMC", file=sys.stderr, mininterval=1.0)

    def progress(step, total, message):
        bar.update(step - bar.n)

    with tempfile.TemporaryDirectory() as tmp:
        res = run_pyvibdmc(model, R, n_walkers=args.walkers, n_steps=args.steps, dt_au=args.dt,
                           equilibration=args.equilibration, output_folder=args.out or tmp, seed=args.seed,
                           energy_zero_eV=E_min, progress=None if bar is None else progress)
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    print(f"DMC: {args.walkers} walkers, {args.steps} steps of {args.dt:g} a.u. "
          f"({args.equilibration} equilibration)")
    print(f"ZPE (DMC)      = {res.zpe_cm:.1f} +/- {res.zpe_error_cm:.1f} cm-1")
    print(f"ZPE (harmonic) = {harmonic.zpe_cm:.1f} cm-1")
    print(f"runtime {seconds:.1f} s")
    return {**res.to_dict(), "zpe_harmonic_cm": harmonic.zpe_cm, "seconds_total": seconds}


if __name__ == "__main__":
    main()
