"""``pesfit vib | plot | plot-cut | learning-curve``: using a fitted surface.

Thin shells over :mod:`pesfit.vib` and :mod:`pesfit.plots`.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from . import __version__

log = logging.getLogger(__name__)


def _read_geometry(path, symbols, units):
    """Start geometry [Å] from an xyz or npz file, in the model's atom order.

    npz: ``R_min`` when present, else the lowest-energy structure, else the
    first; xyz: the lowest-energy structure when energies are given, else the
    first.
    """
    import numpy as np

    from .data import load_dataset

    data = load_dataset(path, **units)
    if list(data.symbols) != list(symbols):
        data = data.reorder_atoms(list(symbols))
        log.info("reordered the atoms of %s to the model's order %s", path, " ".join(symbols))
    if data.R_min is not None:
        return np.array(data.R_min)
    if data.E is not None and np.ndim(data.E) == 1:
        return np.array(data.R[int(np.argmin(data.E))])
    return np.array(data.R[0])


def _start_geometry(args, model):
    from .ase import model_symbols
    from .cli import data_units

    if args.geometry:
        return _read_geometry(args.geometry, model_symbols(model), data_units(args))
    ref = getattr(model, "reference_geometry_", None)
    if ref is None:
        from .cli import CLIError

        raise CLIError(f"{args.model_file} does not store a reference geometry (written before pesfit stored "
                       "reference_geometry_A); pass --geometry FILE (xyz or npz) or refit the model")
    return ref


def _write_summary(out_dir: Path, name: str, args, payload: dict, seconds: float) -> Path:
    summary = {"command": f"pesfit {args.command}", "pesfit_version": __version__,
               "arguments": {k: v for k, v in vars(args).items() if k != "func"}, "seconds": seconds, **payload}
    path = out_dir / name
    path.write_text(json.dumps(summary, indent=1, sort_keys=True, default=str))
    return path


# ------------------------------------------------------------------ vib
def cmd_vib(args) -> int:
    from .cli import _emit
    from .models import load_model
    from .vib import harmonic_analysis, minimize

    model = load_model(args.model_file)
    R0 = _start_geometry(args, model)
    if args.no_optimize:
        R, info = R0, {}
    else:
        R, _, info = minimize(model, R0, fmax=args.fmax, step=args.step)
    result = harmonic_analysis(model, R, masses=args.masses, step=args.step, info=info)
    payload = {"model": str(args.model_file), **result.to_dict()}
    _emit(args, payload, result.format())
    return 0


# ----------------------------------------------------------------- plot
def cmd_plot(args) -> int:
    from .cli import _emit, data_units
    from .data import load_dataset
    from .models import load_model
    from .plots import plot_fit

    t0 = time.perf_counter()
    model = load_model(args.model_file)
    data = load_dataset(args.data, **data_units(args))
    out = Path(args.out)
    res = plot_fit(model, data, out, prefix=args.prefix)
    payload = {k: (str(v) if isinstance(v, Path) else v) for k, v in res.items()}
    payload.update(model=str(args.model_file), data=str(args.data))
    payload["summary"] = str(_write_summary(out, f"{args.prefix}plot_summary.json", args, payload,
                                            time.perf_counter() - t0))
    figs = [v for k, v in payload.items() if isinstance(v, str) and v.endswith(".png")]
    text = [f"{args.data}: energy RMSE {res['energy_rmse_meV']:.3g} meV (n = {res['n']})"]
    if res["force_rmse_meV_per_A"] is not None:
        text.append(f"force RMSE {res['force_rmse_meV_per_A']:.3g} meV/Å")
    text += [f"wrote {f}" for f in figs]
    _emit(args, payload, "\n".join(text))
    return 0


def _cut_name(*coords) -> str:
    import re

    return "cut_" + "__".join(re.sub(r"[^A-Za-z0-9]+", "_", c.spec).strip("_") for c in coords) + ".png"


def cmd_plot_cut(args) -> int:
    import numpy as np

    from .ase import model_symbols
    from .cli import CLIError, _emit, data_units
    from .models import load_model
    from .plots import coordinate_value, parse_coordinate, plot_cut
    from .vib import minimize

    model = load_model(args.model_file)
    symbols = model_symbols(model)
    c1 = parse_coordinate(args.coordinate, symbols)
    c2 = parse_coordinate(args.coordinate2, symbols) if args.coordinate2 else None
    if (c2 is None) != (args.range2 is None):
        raise CLIError("--coordinate2 and --range2 go together")
    R0 = _start_geometry(args, model)
    if not args.no_optimize:
        R0, _, _ = minimize(model, R0)
    v1 = np.linspace(args.range[0], args.range[1], args.points)
    v2 = None if c2 is None else np.linspace(args.range2[0], args.range2[1], args.points2 or args.points)
    data = None
    if args.data:
        from .data import load_dataset

        data = load_dataset(args.data, **data_units(args))
    out = Path(args.out)
    path = out if out.suffix.lower() == ".png" else out / _cut_name(*([c1] if c2 is None else [c1, c2]))
    res = plot_cut(model, R0, c1, v1, path, coord2=c2, values2=v2, data=data, tol=args.tol)
    E = np.asarray(res["energies_eV"])
    payload = {"model": str(args.model_file), "coordinate": c1.spec, "coordinate2": None if c2 is None else c2.spec,
               "path": str(res["path"]), "values": res["values"], "values2": res["values2"],
               "energies_eV": res["energies_eV"], "n_near": res["n_near"],
               "reference_value": float(coordinate_value(R0, c1)),
               "reference_geometry_A": np.asarray(R0).tolist()}
    k = np.unravel_index(np.argmin(E), E.shape)
    where = f"{c1.spec} = {v1[k[0]]:.4g}" + ("" if c2 is None else f", {c2.spec} = {v2[k[1]]:.4g}")
    near = f"; {res['n_near']} training points of {args.data} near the cut" if args.data else ""
    text = (f"cut through {c1.spec} = {payload['reference_value']:.4g} {c1.unit}: lowest {E.min():.4g} eV at {where}"
            f"{near}\nwrote {res['path']}")
    _emit(args, payload, text)
    return 0


# -------------------------------------------------------- learning curve
def cmd_learning_curve(args) -> int:
    from .cli import CLIError, _emit, data_units
    from .cli_fit import _progress_bar
    from .data import load_dataset
    from .models import make_model, registered_models
    from .plots import learning_curve, plot_learning_curve

    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        raise CLIError(f"--sizes must be comma-separated integers, e.g. 250,1000,4000; got {args.sizes!r}") from None
    t0 = time.perf_counter()
    train = load_dataset(args.train, **data_units(args))
    test = load_dataset(args.test, **data_units(args))
    if not args.forces:
        train = train._replace(F=None)
    params = registered_models()[args.model].params_from_cli(args)
    progress, close = _progress_bar(args, f"learning curve ({args.model})")
    try:
        rows = learning_curve(lambda: make_model(args.model, **params), train, test, sizes, progress=progress)
    finally:
        close()
    out = Path(args.out)
    fig = plot_learning_curve(rows, out / "learning_curve.png",
                              title=f"{args.model}: {Path(args.train).name} -> {Path(args.test).name}")
    payload = {"model": args.model, "params": params, "train": str(args.train), "test": str(args.test),
               "rows": rows, "figure": str(fig)}
    payload["summary"] = str(_write_summary(out, "learning_curve.json", args, payload, time.perf_counter() - t0))
    lines = [f"{'n_train':>8} {'n_basis':>8} {'train meV':>10} {'test meV':>10} {'fit s':>7}"]
    for r in rows:
        lines.append(f"{r['n_train']:>8} {r['n_basis'] or '-':>8} {r['train_rmse_meV']:>10.3g} "
                     f"{r['test_rmse_meV']:>10.3g} {r['fit_seconds']:>7.2f}")
    lines.append(f"wrote {fig}")
    _emit(args, payload, "\n".join(lines))
    return 0


# --------------------------------------------------------------- parser
def add_commands(sub) -> None:
    from .cli import DATA_UNITS, JSON_HELP, add_unit_arguments
    from .cli_fit import _add_once
    from .models import registered_models

    model_help = "model file (JSON written by pesfit fit --out)"
    p = sub.add_parser("vib", help="minimum search and harmonic frequencies (cm-1) with mode labels",
                       description="Find the minimum of a fitted surface near a start geometry and print the "
                                   "harmonic frequencies (cm-1) with a description of each normal mode and the "
                                   f"harmonic zero-point energy. {DATA_UNITS} (--geometry).")
    p.add_argument("model_file", metavar="MODEL", help=model_help)
    p.add_argument("--geometry", help="start geometry (xyz or npz, Å); default: the model's reference geometry")
    p.add_argument("--masses", choices=["isotope", "average"], default="isotope",
                   help="most abundant isotopes (default) or standard atomic weights")
    p.add_argument("--fmax", type=float, default=1e-6, help="convergence: largest force component, eV/Å "
                                                            "(default: 1e-6)")
    p.add_argument("--step", type=float, default=1e-3, help="finite-difference step of the Hessian, Å "
                                                            "(default: 1e-3)")
    p.add_argument("--no-optimize", action="store_true", help="analyse the start geometry as it is")
    add_unit_arguments(p)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_vib)

    p = sub.add_parser("plot", help="fit-quality figures (PNG) of a model on a data set",
                       description="Fit-quality figures of a model on a data set: predicted against reference "
                                   f"energies (eV), errors (meV) against energy, and force errors. {DATA_UNITS}.")
    p.add_argument("model_file", metavar="MODEL", help=model_help)
    p.add_argument("data", metavar="DATA", help="data file with energies (.npz, .xyz/.extxyz or points)")
    p.add_argument("--out", default=".", help="output directory (default: .)")
    p.add_argument("--prefix", default="", help="prefix of the file names (default: none)")
    add_unit_arguments(p)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("plot-cut", help="1-D cut (or 2-D contour map) of the surface along internal coordinates",
                       description="Energy (eV) along one internal coordinate (a 1-D cut) or two (a 2-D contour "
                                   "map) through a geometry, the other coordinates fixed; optionally with the "
                                   f"training structures near the cut. {DATA_UNITS} (--data, --geometry).")
    p.add_argument("model_file", metavar="MODEL", help=model_help)
    p.add_argument("--coordinate", required=True, help='r(A,B) [Å], a(A,B,C) or d(A,B,C,D) [deg], e.g. "r(C,O)"; '
                                                       "atoms by symbol or 0-based index")
    p.add_argument("--range", nargs=2, type=float, required=True, metavar=("LO", "HI"),
                   help="range of --coordinate, in its unit (Å or degrees)")
    p.add_argument("--points", type=int, default=61, help="number of points along --coordinate (default: 61)")
    p.add_argument("--coordinate2", help="second coordinate, same syntax: a 2-D contour map (default: a 1-D cut)")
    p.add_argument("--range2", nargs=2, type=float, metavar=("LO", "HI"),
                   help="range of --coordinate2, in its unit (Å or degrees); required with it")
    p.add_argument("--points2", type=int, default=None, help="number of points along --coordinate2 "
                                                             "(default: --points)")
    p.add_argument("--data", help="overlay the training structures near the cut from this file (default: none)")
    p.add_argument("--tol", type=float, default=0.05, help="'near the cut': RMS distance deviation below this, Å "
                                                           "(default: 0.05)")
    p.add_argument("--geometry", help="geometry the cut passes through, xyz or npz (default: the model's reference "
                                      "geometry)")
    p.add_argument("--no-optimize", action="store_true", help="do not move the geometry to the nearest minimum")
    p.add_argument("--out", default=".", help="a .png file or a directory (default: .)")
    add_unit_arguments(p)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_plot_cut)

    models = sorted(registered_models())
    p = sub.add_parser("learning-curve", help="test error against training-set size (fits and a PNG)",
                       description="Fit the model to the first n training structures for each size n, print the "
                                   f"train and test RMSE (meV) and plot them on log axes. {DATA_UNITS}.")
    p.add_argument("--train", required=True, help="training pool; its first n structures are used")
    p.add_argument("--test", required=True, help="test data file (energies)")
    p.add_argument("--sizes", required=True, help="comma-separated training-set sizes, e.g. 250,1000,4000")
    p.add_argument("--model", default="linear", choices=models, metavar="MODEL",
                   help=f"back end: {', '.join(models)} (default: linear)")
    p.add_argument("--degree", type=int, default=None, help="maximum polynomial degree (default: chosen by CV)")
    p.add_argument("--morse-a", type=float, default=None, help="Morse range a in Å (default: chosen by CV)")
    for cls in registered_models().values():
        cls.add_cli_arguments(p, _add_once)
    p.add_argument("--forces", action="store_true", help="fit forces too (data key F; default: energies only)")
    p.add_argument("--out", default=".", help="output directory (default: .)")
    add_unit_arguments(p)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_learning_curve)
