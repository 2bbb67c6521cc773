"""Command-line interface: ``pesfit basis | fit | eval | export``.

Each subcommand is a thin shell over a library call.  With ``--json`` exactly
one JSON document goes to stdout; progress and logs go to stderr.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time

log = logging.getLogger("pesfit")


#: modules under ``pesfit`` that add subcommands through ``add_commands(subparsers)``
COMMAND_MODULES = ["cli_fit", "cli_export", "cli_use", "cli_learn"]


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


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
def _with_parents(add_parser, common):
    def add(name, **kw):
        return add_parser(name, parents=[common], **kw)

    return add


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log more")
    parser = argparse.ArgumentParser(prog="pesfit", description=__doc__.splitlines()[0], parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser = _with_parents(sub.add_parser, common)

    p = sub.add_parser("basis", help="generate a PIP or fundamental-invariant basis")
    p.add_argument("--atoms", required=True, help='atom symbols in order, e.g. "C H H H H"')
    p.add_argument("--degree", type=int, required=True)
    p.add_argument("--kind", choices=["pip", "fi"], default="pip")
    p.add_argument("--max-exponent", type=int, default=None)
    p.add_argument("--out", default=None, help="write the basis as JSON")
    p.add_argument("--force", action="store_true", help="allow bases above the size limit")
    p.add_argument("--labels", action="store_true", help="accept generic labels (A, B, ...) instead of elements")
    p.add_argument("--json", action="store_true")
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
    except (CLIError, ValueError, FileNotFoundError, RuntimeError) as exc:
        sys.stderr.write(f"pesfit {args.command}: error: {exc}\n")
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
