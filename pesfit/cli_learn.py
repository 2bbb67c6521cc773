"""``pesfit learn`` and ``pesfit learn export``: thin shells over :mod:`pesfit.learn`.

With ``--json`` the run writes one JSON line per iteration and a last line
with ``"event": "finished"`` to stdout; progress bars go to stderr.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

#: flag destination -> LearnSettings field, for flags that override the recipe
_SETTING_FLAGS = ("window", "target", "budget", "batch", "n_design", "temperature", "fragments", "separations",
                  "committee", "members", "degree", "explore", "max_distance", "max_iterations", "seed")
_RUN_FLAGS = ("calculator", "charge", "multiplicity", "start", "store", "out", "plot", "scheduler", "workers")


def _parse_fragments(text: str):
    """``"0,1 2"`` -> ((0, 1), (2,))."""
    try:
        return tuple(tuple(int(a) for a in part.split(",")) for part in text.split())
    except ValueError:
        raise ValueError(f"--fragments {text!r}: give atom indices, commas within a fragment and spaces "
                         "between fragments, e.g. '0,1 2'") from None


def _parse_floats(text: str, flag: str):
    try:
        return tuple(float(x) for x in text.replace(",", " ").split())
    except ValueError:
        raise ValueError(f"{flag} {text!r}: give numbers separated by commas, e.g. '3,4,5'") from None


def _options(args) -> tuple[dict, dict]:
    """Run options and LearnSettings keywords: recipe values, overridden by the flags given."""
    from .learn.config import load_learn_section

    run, settings = load_learn_section(args.recipe) if args.recipe else ({}, {})
    for name in _RUN_FLAGS:
        if getattr(args, name) is not None:
            run[name] = getattr(args, name)
    if args.unrestricted:
        run["unrestricted"] = True
    if args.minimise:
        settings["minimise"] = True
    for name in _SETTING_FLAGS:
        value = getattr(args, name)
        if value is None:
            continue
        if name == "fragments":
            value = _parse_fragments(value)
        elif name == "separations":
            value = _parse_floats(value, "--separations")
        settings[name] = value
    return run, settings


def _read_start(path):
    import ase.io

    if not Path(path).is_file():
        raise FileNotFoundError(f"starting structures {path} not found")
    try:
        atoms = ase.io.read(path, index=":")
    except Exception as exc:
        raise ValueError(f"{path}: cannot read structures ({type(exc).__name__}: {exc})") from None
    if not atoms:
        raise ValueError(f"{path} holds no structures")
    return atoms


class _IterationBars:
    """One tqdm bar per iteration on stderr, as ``progress(step, total, message)``."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar = None
        self.label = None

    def __call__(self, step, total, message):
        if self.quiet:
            return
        from tqdm import tqdm

        label = message.split(":")[0]
        if label != self.label:
            self.close()
            self.bar = tqdm(total=total, desc=label, unit="calc", file=sys.stderr, leave=True)
            self.label = label
        self.bar.set_postfix_str(message.split(":")[-1].strip(), refresh=False)
        self.bar.update(step - self.bar.n)

    def close(self):
        if self.bar is not None:
            self.bar.close()
        self.bar = self.label = None


def cmd_learn(args) -> int:
    from .cli import CLIError
    from .learn import DaskExecutor, LearnSettings, Oracle, learn
    from .learn.loop import open_store
    from .learn.report import plot_history

    if args.learn_command == "export":
        return cmd_export(args)
    run, settings = _options(args)
    for key, flag in (("calculator", "--calculator"), ("start", "--start"), ("store", "--store")):
        if key not in run:
            raise CLIError(f"give {flag} (or a recipe with [learn] {key} = ...)")
    if "explore_options" in settings and not isinstance(settings["explore_options"], dict):
        raise CLIError("[learn] explore_options must be a table")
    learn_settings = LearnSettings(**settings)
    oracle = Oracle(run["calculator"], charge=int(run.get("charge", 0)),
                    multiplicity=int(run.get("multiplicity", 1)), unrestricted=bool(run.get("unrestricted", False)))
    start = _read_start(run["start"])
    store = Path(run["store"])
    if args.resume and not store.is_file():
        raise CLIError(f"--resume: store {store} does not exist")
    open_store(store, start, oracle, resume=args.resume)  # bad input fails before the cluster starts
    out = Path(run.get("out") or store.with_name(store.stem + "-model.json"))
    plot = Path(run.get("plot") or store.with_name(store.stem + "-learning.png"))
    history = []
    bars = _IterationBars(getattr(args, "quiet", False))

    def on_iteration(record):
        history.append(record)
        bars.close()
        plot_history(history, plot, target=learn_settings.target)
        if args.json:
            sys.stdout.write(json.dumps({"event": "iteration", **record}, sort_keys=True) + "\n")
        else:
            held = record["heldout_rmse_meV"]
            sys.stdout.write(f"iteration {record['iteration']}: {record['n_calculations']} calculations "
                             f"({record['n_failed']} failed), disagreement {record['disagreement_rms_meV']:.2f} meV, "
                             f"held-out RMSE {'-' if held is None else f'{held:.2f}'} meV\n")
        sys.stdout.flush()

    if not getattr(args, "verbose", False):
        import logging

        logging.getLogger("distributed").setLevel(logging.WARNING)
    with DaskExecutor(scheduler=run.get("scheduler"), n_workers=run.get("workers")) as executor:
        try:
            result = learn(oracle, start, store, learn_settings, executor=executor, resume=args.resume,
                           progress=bars, on_iteration=on_iteration)
        finally:
            bars.close()
    result.model.save(out)
    summary = {"event": "finished", "stop_reason": result.stop_reason, "n_calculations": result.n_calculations,
               "n_computed": result.n_computed, "n_iterations": len(result.history), "store": str(store),
               "model": str(out), "plot": str(plot) if history else None,
               "train": result.model.train_report_.get("energy_rmse_meV") if hasattr(result.model, "train_report_")
               else None}
    if args.json:
        sys.stdout.write(json.dumps(summary, sort_keys=True) + "\n")
    else:
        sys.stdout.write(f"stopped ({result.stop_reason}) after {result.n_calculations} calculations "
                         f"({result.n_computed} in this run); model written to {out}\n")
    return 0


def cmd_export(args) -> int:
    from .cli import _emit
    from .data import save_dataset
    from .learn import Store

    store = Store.open_existing(args.store_file)
    data = store.dataset()
    save_dataset(data, args.export_out)
    payload = {"store": str(args.store_file), "out": str(args.export_out), "n": data.n_structures,
               "n_failed": store.count(status="failed"), "forces": data.F is not None, "method": store.method}
    _emit(args, payload, f"wrote {data.n_structures} points ({store.method}) to {args.export_out}; "
                         f"{payload['n_failed']} failed calculations left out")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("learn", help="build a surface by active learning on an electronic-structure method "
                                     "(calculations on Dask)")
    p.add_argument("--recipe", default=None, help="recipe .toml with a [learn] section; flags override it "
                                                  "(default: none)")
    p.add_argument("--calculator", default=None,
                   help="'pyscf:METHOD/BASIS' (hf, mp2, ccsd, ccsd(t), fci, dft:XC, ...) or 'module:factory' "
                        "returning an ASE calculator (required unless in the recipe)")
    p.add_argument("--charge", type=int, default=None, help="total charge in e, pyscf only (default: 0)")
    p.add_argument("--multiplicity", type=int, default=None,
                   help="spin multiplicity 2S+1, pyscf only; open shells use unrestricted references (default: 1)")
    p.add_argument("--unrestricted", action="store_true", help="unrestricted reference for closed shells too "
                                                               "(default: off)")
    p.add_argument("--start", default=None, help="starting structure(s), any ASE-readable file, Å (required "
                                                 "unless in the recipe)")
    p.add_argument("--store", default=None, help="the run's ASE sqlite database (required unless in the recipe)")
    p.add_argument("--resume", action="store_true", help="continue an existing store; nothing stored is "
                                                         "recomputed (default: off; a non-empty store is refused)")
    p.add_argument("--out", default=None, help="final model JSON (default: STORE-model.json beside the store)")
    p.add_argument("--plot", default=None, help="PNG of estimated error vs calculations "
                                                "(default: STORE-learning.png beside the store)")
    p.add_argument("--window", type=float, default=None, help="energy window above the lowest energy, eV "
                                                              "(default: 2.0)")
    p.add_argument("--target", type=float, default=None, help="stop when committee disagreement and held-out RMSE "
                                                              "are at or below this, meV (default: 5.0)")
    p.add_argument("--budget", type=int, default=None, help="stop at this many calculations in the store "
                                                            "(default: no limit)")
    p.add_argument("--batch", type=int, default=None, help="calculations per iteration (default: 16)")
    p.add_argument("--n-design", type=int, default=None, help="initial-design structures (default: 40)")
    p.add_argument("--temperature", type=float, default=None, help="Wigner sampling temperature of the design, K "
                                                                   "(default: 300)")
    p.add_argument("--minimise", action="store_true", help="relax the starting structures on the calculator "
                                                           "first (default: off)")
    p.add_argument("--fragments", default=None, help="fragments for reactive channels: atom indices, commas "
                                                     "within and spaces between fragments, e.g. '0,1 2' "
                                                     "(default: none)")
    p.add_argument("--separations", default=None, help="fragment centroid separations of the channels, Å, "
                                                       "e.g. '3,4,5' (default: 3,4,5)")
    p.add_argument("--committee", choices=["linear", "pipnn"], default=None,
                   help="committee: bootstrap linear PIP fits or a PIP-NN ensemble (default: linear)")
    p.add_argument("--members", type=int, default=None, help="committee size (default: 5)")
    p.add_argument("--degree", type=int, default=None, help="PIP degree of the committee (default: chosen by CV)")
    p.add_argument("--explore", default=None, help="exploration strategy: walk (random walks in the window) or "
                                                   "md (Langevin dynamics) (default: walk)")
    p.add_argument("--max-distance", type=float, default=None,
                   help="longest interatomic distance explored, Å (default: 1.2 x the longest in the initial design)")
    p.add_argument("--max-iterations", type=int, default=None, help="iteration limit (default: 100)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: 0)")
    p.add_argument("--scheduler", default=None, help="address of a running Dask scheduler, e.g. "
                                                     "tcp://host:8786 (default: start a local cluster)")
    p.add_argument("--workers", type=int, default=None, help="local cluster workers, one thread each "
                                                             "(default: one per core)")
    p.add_argument("--json", action="store_true", help="one JSON line per iteration and a final one on stdout "
                                                       "(default: text)")
    p.set_defaults(func=cmd_learn, learn_command=None)
    sub_learn = p.add_subparsers(dest="learn_command")
    e = sub_learn.add_parser("export", help="write a store's successful points as a data file",
                             description="Write the successful calculations of a pesfit learn store as a data "
                                         "file (Å, eV, eV/Å; points files in bohr and hartree).")
    e.add_argument("store_file", help="the ASE sqlite store of a pesfit learn run")
    e.add_argument("--out", dest="export_out", required=True,
                   help="output data file; format from the extension (.npz, .xyz, .dat points) in Å and eV "
                        "(points: bohr and hartree)")
    e.add_argument("--json", action="store_true", help="print a JSON summary (default: text)")
