"""``pesfit holes``: a thin shell over :func:`pesfit.holes.holes_in_dataset`."""
from __future__ import annotations

import sys


def _progress(args):
    if getattr(args, "quiet", False):
        return None, lambda: None
    from .cli_fit import _progress_bar

    return _progress_bar(args, "holes")


def cmd_holes(args) -> int:
    from .cli import CLIError, _emit
    from .data import load_dataset
    from .holes import holes_in_dataset
    from .models import load_model

    if args.radius <= 0:
        raise CLIError(f"--radius must be > 0 Å, got {args.radius}")
    if args.step <= 0:
        raise CLIError(f"--step must be > 0 Å, got {args.step}")
    if args.directions < 0:
        raise CLIError(f"--directions must be >= 0, got {args.directions}")
    if args.tolerance < 0:
        raise CLIError(f"--tolerance must be >= 0 eV, got {args.tolerance}")
    model = load_model(args.model_file)
    data = load_dataset(args.data)
    progress, close = _progress(args)
    try:
        report = holes_in_dataset(model, data, radius=args.radius, directions=args.directions, step=args.step,
                                  tolerance=args.tolerance, md=args.md, md_time_fs=args.md_time,
                                  md_timestep_fs=args.md_timestep, random_state=args.seed, progress=progress)
    finally:
        close()
    _emit(args, report.to_dict(), report.format(max_listed=args.max_listed))
    if args.fail and report.n_holes:
        if args.json:
            sys.stderr.write(f"pesfit holes: {report.n_holes} hole(s) found\n")
        return 1
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("holes", help="probe a fitted surface around data structures for holes "
                                     "(points below the lowest training energy, short-range attraction)")
    p.add_argument("model_file", metavar="MODEL", help="fitted model file (JSON)")
    p.add_argument("--data", required=True, help="structures to probe around (.npz, .xyz, points), e.g. the test set")
    p.add_argument("--radius", type=float, default=0.3,
                   help="largest atom displacement of the probes, Å (default: 0.3)")
    p.add_argument("--directions", type=int, default=16,
                   help="random directions per structure, rigid motions projected out (default: 16)")
    p.add_argument("--step", type=float, default=0.05, help="spacing of the points along a direction, Å (default: 0.05)")
    p.add_argument("--tolerance", type=float, default=0.05,
                   help="a hole lies this far below the lowest training energy, eV (default: 0.05)")
    p.add_argument("--md", action="store_true",
                   help="also run constant-energy trajectories from every structure (default: off)")
    p.add_argument("--md-time", type=float, default=200.0, help="trajectory length, fs (default: 200)")
    p.add_argument("--md-timestep", type=float, default=0.25, help="Velocity Verlet time step, fs (default: 0.25)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the directions and velocities (default: 0)")
    p.add_argument("--max-listed", type=int, default=20,
                   help="holes printed in the text output (default: 20; --json lists all)")
    p.add_argument("--fail", action="store_true", help="exit with status 1 when holes are found (default: status 0)")
    p.add_argument("--json", action="store_true", help="one JSON document: n_probed, n_holes, "
                                                       "deepest_meV_below_min, holes")
    p.set_defaults(func=cmd_holes)
