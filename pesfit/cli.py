"""pesfit: permutation-invariant potential energy surfaces from ab initio points.

Each subcommand is a thin shell over a library call (``pesfit COMMAND --help``
explains one).  With ``--json`` exactly one JSON document goes to stdout;
progress and logs go to stderr.  Inside pesfit lengths are in Å and energies
in eV; data files are converted on reading (see ``--length-unit``).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time

log = logging.getLogger("pesfit")


#: modules under ``pesfit`` that add subcommands through ``add_commands(subparsers)``
COMMAND_MODULES = ["cli_fit", "cli_export", "cli_use", "cli_holes", "cli_learn"]


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


#: how data files are read, for the help of every command that reads one
DATA_UNITS = ("Data files are read in Å and eV (.npz, unless its r_unit/e_unit keys say otherwise; .xyz/.extxyz) or "
              "in bohr and hartree (MSA points files .dat/.txt/.points); --length-unit/--energy-unit override this")


def add_unit_arguments(parser) -> None:
    """``--length-unit`` and ``--energy-unit``: the units of the data files a command reads."""
    parser.add_argument("--length-unit", default=None, metavar="UNIT",
                        help="unit of the coordinates in the data files: angstrom, bohr, nm, pm (default: the "
                             "format's, see above)")
    parser.add_argument("--energy-unit", default=None, metavar="UNIT",
                        help="unit of the energies in the data files (forces: energy unit per length unit): eV, "
                             "hartree, kcal/mol, kJ/mol, cm-1, meV (default: the format's, see above)")


def data_units(args) -> dict:
    """``length_unit``/``energy_unit`` keyword arguments of the data loaders, for the flags given."""
    return {k: getattr(args, k) for k in ("length_unit", "energy_unit") if getattr(args, k, None) is not None}


def version() -> str:
    """The installed package's version (its metadata), else this checkout's ``__version__``."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("pesfit")
    except PackageNotFoundError:
        from . import __version__

        return __version__


def _emit(args, payload: dict, text: str) -> None:
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(payload, indent=None, sort_keys=True) + "\n")
    else:
        sys.stdout.write(text.rstrip() + "\n")


# ------------------------------------------------------------------ basis
def cmd_basis(args) -> int:
    from invariants import PermutationGroup, fundamental_basis, molien_series, pip_basis
    from invariants.molien import cumulative

    from .molecule import check_symbols

    symbols = args.atoms.replace(",", " ").split()
    check_symbols(symbols, allow_labels=args.labels)
    group = PermutationGroup.from_symbols(symbols)
    if args.degree < 1:
        raise CLIError(f"--degree must be >= 1, got {args.degree}")
    t0 = time.perf_counter()
    molien = molien_series(group, args.degree)
    if args.kind == "pip":
        basis = pip_basis(group, args.degree, max_exponent=args.max_exponent, force=args.force)
    else:
        basis = fundamental_basis(group, args.degree, force=args.force)
    seconds = time.perf_counter() - t0
    if args.out:
        basis.save(args.out)
    payload = {
        "atoms": symbols,
        "kind": args.kind,
        "degree": args.degree,
        "n_variables": group.n_variables,
        "group_order": group.order,
        "molien": molien,
        "n_basis": basis.n_basis,
        "per_degree": basis.per_degree,
        "seconds": seconds,
        "n_operations": basis.program.n_operations,
        "out": args.out,
    }
    if args.kind == "fi":
        payload["certificate"] = basis.certificate
    lines = [f"{args.kind.upper()} basis for {' '.join(symbols)} (group order {group.order}, "
             f"{group.n_variables} distance variables), degree <= {args.degree}",
             f"{'degree':>6} {'molien':>8} {'basis':>8} {'cumulative':>10}"]
    cum = cumulative(basis.per_degree)
    for d, (m, b) in enumerate(zip(molien, basis.per_degree)):
        lines.append(f"{d:>6} {m:>8} {b:>8} {cum[d]:>10}")
    lines.append(f"total {basis.n_basis} polynomials in {seconds:.3f} s")
    if args.out:
        lines.append(f"written to {args.out}")
    _emit(args, payload, "\n".join(lines))
    return 0


# -------------------------------------------------------------- parser
EPILOG = ("Inside pesfit lengths are in Å, energies in eV and forces in eV/Å; data files are converted on reading "
          "(npz and extended XYZ in Å and eV, MSA points files in bohr and hartree, unless --length-unit/"
          "--energy-unit say otherwise). Model files are versioned JSON. With --json a command prints exactly one "
          "JSON document to stdout; progress and logs go to stderr.")
JSON_HELP = "print one JSON document to stdout instead of the text report"


def _with_parents(add_parser, common):
    def add(name, **kw):
        kw.setdefault("description", kw.get("help"))
        return add_parser(name, parents=[common], **kw)

    return add


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no progress bars on stderr")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log more (to stderr)")
    parser = argparse.ArgumentParser(prog="pesfit", description=__doc__.split("\n\n")[0], epilog=EPILOG,
                                     parents=[common])
    parser.add_argument("--version", action="version", version=f"pesfit {version()}",
                        help="print the version of pesfit and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                title="commands (pesfit COMMAND --help for details)")
    sub.add_parser = _with_parents(sub.add_parser, common)

    p = sub.add_parser("basis", help="generate a PIP or fundamental-invariant basis and compare its size per degree "
                                     "with the Molien series",
                       description="Generate a permutationally invariant polynomial (PIP) basis or a set of "
                                   "fundamental invariants (FI) in the interatomic distances of the given atoms "
                                   "(like atoms permutable) and print its size per degree next to the Molien series.")
    p.add_argument("--atoms", required=True, help='atom symbols in order, e.g. "C H H H H" (spaces or commas)')
    p.add_argument("--degree", type=int, required=True, help="maximum total polynomial degree (>= 1)")
    p.add_argument("--kind", choices=["pip", "fi"], default="pip",
                   help="pip: all symmetrised monomials (MSA's basis); fi: a minimal generating set, the "
                        "fundamental invariants, with a completeness certificate (default: pip)")
    p.add_argument("--max-exponent", type=int, default=None,
                   help="pip only: largest exponent of one distance variable in a monomial (default: no limit)")
    p.add_argument("--out", default=None, help="write the basis to this JSON file (default: not written)")
    p.add_argument("--force", action="store_true", help="allow bases above the size limit (default: refuse them)")
    p.add_argument("--labels", action="store_true",
                   help="accept generic labels (A, B, ...) instead of element symbols")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_basis)

    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(f"pesfit.{name}").add_commands(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (CLIError, ValueError, OSError, RuntimeError) as exc:
        sys.stderr.write(f"pesfit {args.command}: error: {_one_line(exc)}\n")
        return 2


def _one_line(exc: Exception) -> str:
    """The message of a user error on one line; OS errors name their file."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return " ".join(str(exc).split())


if __name__ == "__main__":  # pragma: no cover
    # ``python -m pesfit.cli``: run the imported module, so the command modules' CLIError is this one's
    from pesfit.cli import main as _main

    sys.exit(_main())
