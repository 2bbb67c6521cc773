"""``pesfit export``: write a fitted model as C or Fortran (optionally build and check it)."""
from __future__ import annotations

import numpy as np


def _check_structures(model, data_path, n, n_monomers=None, units=None):
    if data_path is not None:
        from .data import load_dataset

        data = load_dataset(data_path, **(units or {}))
        symbols = list(model.molecule_.symbols)
        if n_monomers is not None:  # a many-body model: clusters of n_monomers monomers, in monomer order
            symbols = symbols * n_monomers
            if list(data.symbols) != symbols:
                raise ValueError(f"--data {data_path} has atoms {' '.join(data.symbols)}; --n-monomers {n_monomers} "
                                 f"needs clusters with atoms {' '.join(symbols)}")
        elif list(data.symbols) != symbols:
            data = data.reorder_atoms(symbols)
        return np.asarray(data.R[:n])
    ref = getattr(model, "reference_geometry_", None)
    if ref is None:
        return None
    rng = np.random.default_rng(0)
    return ref[None] + rng.normal(scale=0.05, size=(n,) + ref.shape)


def cmd_export(args) -> int:
    from .cli import _emit, data_units
    from .export import _read_spec, export_model
    from .models import load_model

    model = load_model(args.model_file)
    if args.check and args.data is not None:
        _read_spec(model, args.n_monomers)  # its errors (e.g. a many-body model needs --n-monomers) come first
    structures = _check_structures(model, args.data, args.n_check, args.n_monomers,
                                   data_units(args)) if args.check else None
    result = export_model(model, args.lang, args.out, prefix=args.name, check=args.check,
                          check_structures=structures, n_monomers=args.n_monomers)
    payload = {k: (str(v) if not isinstance(v, (dict, int, float)) else v) for k, v in result.items()}
    lines = [f"exported {args.model_file} as {args.lang} to {args.out}:"]
    lines += [f"  {k}: {v}" for k, v in payload.items() if k not in ("check", "driver_output", "build_log")]
    if args.check:
        c = result["check"]
        lines.append(f"  check on {c['n_structures']} structures: max energy rel {c['max_energy_rel']:.2e}, "
                     f"max gradient rel {c['max_gradient_rel']:.2e} (tolerances {c['energy_tolerance']:.1e}, "
                     f"{c['gradient_tolerance']:.1e})")
        if "max_coupling_rel" in c:  # a diabatic model
            lines.append(f"  diabatic: max U rel {c['max_u_rel']:.2e}, dU rel {c['max_du_rel']:.2e}, couplings rel "
                         f"{c['max_coupling_rel']:.2e} ({c['n_coupling_structures']} structures away from "
                         "degeneracies)")
    _emit(args, payload, "\n".join(lines))
    return 0


def add_commands(sub) -> None:
    from .cli import DATA_UNITS, JSON_HELP, add_unit_arguments

    p = sub.add_parser("export", help="write a fitted model as Fortran or C source with a Makefile",
                       description="Write a fitted model as Fortran or C source (coefficients compiled in) with a "
                                   "Makefile, an example driver, MULTIMODE/RPMD adapters and a ctypes loader; the "
                                   "compiled interface works in bohr and hartree (gradients hartree/bohr), atoms in "
                                   f"the model's order. --check builds it and compares it with Python. {DATA_UNITS} "
                                   "(--data).")
    p.add_argument("model_file", metavar="MODEL", help="model file (JSON written by pesfit fit --out)")
    p.add_argument("--lang", choices=["fortran", "c"], required=True, help="language of the generated source")
    p.add_argument("--out", required=True, help="output directory (created if missing)")
    p.add_argument("--name", default="pes", help="symbol prefix and file stem (default: pes)")
    p.add_argument("--check", action="store_true",
                   help="compile with gfortran/gcc and compare energies and gradients with the Python model "
                        "(default: no check)")
    p.add_argument("--data", default=None, help="structures for --check (default: the model's reference "
                                                "geometry with Gaussian displacements, sd 0.05 Å)")
    p.add_argument("--n-check", type=int, default=1000, help="number of structures for --check (default: 1000)")
    p.add_argument("--n-monomers", type=int, default=None,
                   help="many-body models: number of monomers of the exported cluster (required for them)")
    add_unit_arguments(p)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_export)
