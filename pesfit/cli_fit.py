"""``pesfit fit`` and ``pesfit eval``: thin shells over the models and data modules."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from .recipe import Recipe, load_recipe


def _progress_bar(args, desc):
    """A tqdm-backed ``progress(step, total, message)`` callback on stderr."""
    if getattr(args, "quiet", False):
        return None, lambda: None
    from tqdm import tqdm

    state = {"bar": None}

    def progress(step, total, message):
        if state["bar"] is None:
            state["bar"] = tqdm(total=total, desc=desc, file=sys.stderr, leave=False, mininterval=0.5)
        bar = state["bar"]
        bar.set_postfix_str(message, refresh=False)
        bar.update(step - bar.n)

    def close():
        if state["bar"] is not None:
            state["bar"].close()

    return progress, close


def run_recipe(recipe: Recipe, args) -> dict:
    """Fit a model as a recipe says; return the JSON summary."""
    from .cli import data_units
    from .data import Dataset
    from .models import make_model

    model = make_model(recipe.model, **recipe.model_params)
    units = data_units(args)
    streamed = getattr(model, "streamed_fit", False)
    # streamed fits read uncompressed npz files a block at a time (memory-mapped)
    mmap = {"mmap": True} if streamed and Path(recipe.train).suffix == ".npz" else {}
    train = model.read_data(recipe.train, **units, **mmap)
    if recipe.n_train is not None:
        train = train.first(recipe.n_train)
    if isinstance(train, Dataset):
        if recipe.atoms is not None:
            train = train.reorder_atoms(recipe.atoms)
        if not recipe.forces:
            train = train._replace(F=None)
    elif recipe.atoms is not None:
        raise ValueError(f"[molecule] atoms cannot reorder the clusters of {recipe.train}; the monomer's atom "
                         "order is the data's")
    dask = getattr(args, "dask", None)
    if dask is not None and not streamed:
        raise ValueError(f"--dask runs the streamed linear fits (models linear, fragments); "
                         f"--model {recipe.model} fits locally")
    from .models.executors import run_on

    progress, close = _progress_bar(args, f"fit {recipe.model}")
    t0 = time.perf_counter()
    try:
        with run_on(dask):
            model.fit(train, progress=progress)
    finally:
        close()
    seconds = time.perf_counter() - t0
    test = None if recipe.test is None else model.read_data(recipe.test, **units)
    test_report = None if test is None else model.evaluate(test)
    if test is not None and not getattr(args, "no_holes", False):  # default hole search around the test structures
        from .holes import holes_in_dataset

        test_report["holes"] = holes_in_dataset(model, test).to_dict()
    if recipe.out is not None:
        model.save(recipe.out)
    summary = {
        "model": recipe.model,
        "n_train": train.n_structures,
        "n_basis": model.n_basis,
        "hyperparameters": model.hyperparameters_,
        "fit_seconds": seconds,
        "train": model.train_report_,
        "test": test_report,
        "out": str(recipe.out) if recipe.out else None,
        "cv_results": getattr(model, "cv_results_", None),
    }
    if recipe.model == "manybody":
        summary["many_body"] = _many_body_summary(model, test, recipe)
    return summary


#: ``many_body.test_rmse_kcal_mol["<n>_within_10_kcal_mol"]``: n-body energies this far above the lowest
BOUND_WINDOW_KCAL_MOL = 10.0


def _many_body_summary(model, test, recipe) -> dict:
    """How a many-body model was fitted (n-body energies from fragment energies, or totals) and its test
    errors per body order in kcal/mol."""
    from .models.manybody import ClusterData
    from .units import energy_factor

    kcal = energy_factor("kcal/mol", "eV")
    target = model.hyperparameters_["target"]
    if target == "nbody":
        how = (f"each term fitted to its own n-body energies, from the sub-cluster (fragment) energies "
               f"E_fragments in {Path(recipe.train).name}")
    else:
        how = (f"all terms fitted jointly to total cluster energies ({Path(recipe.train).name} has no "
               "fragment energies)")
    out = {"fragment_energies": target == "nbody", "target": target, "how": how,
           "window_kcal_mol": BOUND_WINDOW_KCAL_MOL, "test_rmse_kcal_mol": None, "test_n": None}
    if isinstance(test, ClusterData):
        rep = model.evaluate_bodies(test, window_eV=BOUND_WINDOW_KCAL_MOL * kcal)
        names = {k: k.replace("within_window", f"within_{BOUND_WINDOW_KCAL_MOL:g}_kcal_mol") for k in rep}
        out["test_rmse_kcal_mol"] = {names[k]: r["energy_rmse_meV"] / 1000 / kcal for k, r in rep.items()}
        out["test_n"] = {names[k]: r["n_energies"] for k, r in rep.items()}
    return out


def _format_fit(summary: dict) -> str:
    from .metrics import format_report

    lines = [f"{summary['model']} model: {summary['n_basis']} basis functions, n_train = {summary['n_train']}, "
             f"fit {summary['fit_seconds']:.1f} s", f"hyperparameters: {summary['hyperparameters']}"]
    for name in ("train", "test"):
        if summary[name] is not None:
            lines.append(format_report(summary[name], title=name))
    mb = summary.get("many_body")
    if mb is not None:
        lines.append(f"many-body: {mb['how']}")
        if mb["test_rmse_kcal_mol"]:
            lines.append("test RMSE per body order (kcal/mol): " + ", ".join(
                f"{k} {v:.4f} (n={mb['test_n'][k]})" for k, v in mb["test_rmse_kcal_mol"].items()))
    holes = (summary["test"] or {}).get("holes")
    if holes is not None:
        deepest = holes["deepest_meV_below_min"]
        lines.append(f"holes around the test structures (pesfit holes defaults): {holes['n_holes']} in "
                     f"{holes['n_probed']} probe points, deepest point "
                     f"{'-' if deepest is None else f'{deepest:.1f}'} meV below the training minimum")
    if summary["out"]:
        lines.append(f"model written to {summary['out']}")
    return "\n".join(lines)


def cmd_fit(args) -> int:
    from .cli import CLIError, _emit

    if args.recipe:
        if args.train:
            raise CLIError("give either a recipe file or --train, not both")
        recipe = load_recipe(args.recipe)
        recipe = recipe.override(out=args.out, n_train=args.n_train)
    else:
        if not args.train:
            raise CLIError("give a recipe file or --train FILE")
        from .models import registered_models

        params = registered_models()[args.model].params_from_cli(args)
        recipe = Recipe(train=Path(args.train), test=Path(args.test) if args.test else None, n_train=args.n_train,
                        model=args.model, model_params=params, forces=bool(args.forces),
                        out=Path(args.out) if args.out else None)
    summary = run_recipe(recipe, args)
    _emit(args, summary, _format_fit(summary))
    return 0


def cmd_eval(args) -> int:
    from .cli import CLIError, _emit, data_units
    from .metrics import format_report
    from .models import load_model

    if Path(args.data).suffix.lower() == ".json" and Path(args.model_file).suffix.lower() != ".json":
        raise CLIError(f"{args.model_file} is a data file and {args.data} a model file: the order is "
                       "pesfit eval MODEL DATA")
    model = load_model(args.model_file)
    data = model.read_data(args.data, **data_units(args))
    report = model.evaluate(data)
    payload = {"model": str(args.model_file), "data": str(args.data), "n": data.n_structures, **report}
    _emit(args, payload, format_report(report, title=f"{args.data}"))
    return 0


def _add_once(parser, *flags, **kwargs) -> None:
    """Add a flag unless another back end already added it."""
    if any(f in parser._option_string_actions for f in flags):
        return
    parser.add_argument(*flags, **kwargs)


def add_commands(sub) -> None:
    from .cli import DATA_UNITS, JSON_HELP, add_unit_arguments
    from .models import registered_models

    models = sorted(registered_models())
    p = sub.add_parser("fit", help="fit a model to data (flags, or a recipe .toml)",
                       description="Fit a model to the energies (and, with --forces, forces) of a training set and "
                                   "print its errors on the training and test sets by energy band. Give a recipe "
                                   f"file (molecules/NAME/recipe.toml; keys in docs/formats.md) or --train. "
                                   f"{DATA_UNITS}. Errors are printed in meV and cm-1.")
    p.add_argument("recipe", nargs="?",
                   help="recipe file (TOML: data, back end, hyperparameters, output; e.g. molecules/h2co/recipe.toml); "
                        "--out and --n-train override it")
    p.add_argument("--train", help="training data file (.npz, .xyz/.extxyz or points .dat/.txt/.points)")
    p.add_argument("--n-train", type=int, default=None, help="use the first N structures (default: all)")
    p.add_argument("--test", help="test data file, same formats (default: no test set)")
    p.add_argument("--model", default="linear", choices=models, metavar="MODEL",
                   help=f"back end: {', '.join(models)} (default: linear; see docs/backends.md)")
    p.add_argument("--degree", type=int, default=None, help="maximum polynomial degree (default: chosen by CV)")
    p.add_argument("--morse-a", type=float, default=None, help="Morse range a in Å (default: chosen by CV)")
    for cls in registered_models().values():
        cls.add_cli_arguments(p, _add_once)
    p.add_argument("--forces", action="store_true", help="fit forces too (data key F, energy unit per length unit; "
                                                         "default: energies only)")
    add_unit_arguments(p)
    p.add_argument("--out", default=None, help="write the fitted model to this JSON file (default: not written; "
                                               "a recipe's [output] model)")
    p.add_argument("--no-holes", action="store_true",
                   help="skip the hole search around the --test structures (default: run it, as `pesfit holes`)")
    p.add_argument("--dask", default=None, metavar="ADDRESS",
                   help="factor the blocks of a linear fit on this Dask scheduler, e.g. tcp://host:8786 "
                        "(default: none, the blocks run locally)")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("eval", help="errors of a fitted model on a data set",
                       description="Errors (meV, cm-1; forces meV/Å) of a fitted model on a data set, by energy "
                                   f"band. {DATA_UNITS}.")
    p.add_argument("model_file", metavar="MODEL", help="model file (JSON written by pesfit fit --out)")
    p.add_argument("data", metavar="DATA", help="data file with energies (.npz, .xyz/.extxyz or points)")
    add_unit_arguments(p)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_eval)
