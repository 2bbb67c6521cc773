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
    from .data import load_dataset
    from .models import make_model

    model = make_model(recipe.model, **recipe.model_params)
    streamed = getattr(model, "streamed_fit", False)
    # streamed fits read uncompressed npz files a block at a time (memory-mapped)
    train = load_dataset(recipe.train, **({"mmap": True} if streamed and recipe.train.suffix == ".npz" else {}))
    if recipe.n_train is not None:
        train = train.first(recipe.n_train)
    if recipe.atoms is not None:
        train = train.reorder_atoms(recipe.atoms)
    if not recipe.forces:
        train = train._replace(F=None)
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
    test_report = None
    if recipe.test is not None:
        test_report = model.evaluate(load_dataset(recipe.test))
    if recipe.out is not None:
        model.save(recipe.out)
    return {
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


def _format_fit(summary: dict) -> str:
    from .metrics import format_report

    lines = [f"{summary['model']} model: {summary['n_basis']} basis functions, n_train = {summary['n_train']}, "
             f"fit {summary['fit_seconds']:.1f} s", f"hyperparameters: {summary['hyperparameters']}"]
    for name in ("train", "test"):
        if summary[name] is not None:
            lines.append(format_report(summary[name], title=name))
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
    from .cli import _emit
    from .data import load_dataset
    from .metrics import format_report
    from .models import load_model

    model = load_model(args.model_file)
    data = load_dataset(args.data)
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
    from .models import registered_models

    p = sub.add_parser("fit", help="fit a model to data (flags, or a recipe .toml)")
    p.add_argument("recipe", nargs="?", help="recipe file (molecules/NAME/recipe.toml)")
    p.add_argument("--train", help="training data (.npz, .xyz, points)")
    p.add_argument("--n-train", type=int, default=None, help="use the first N structures")
    p.add_argument("--test", help="test data")
    p.add_argument("--model", default="linear", choices=sorted(registered_models()))
    p.add_argument("--degree", type=int, default=None, help="maximum polynomial degree (default: chosen by CV)")
    p.add_argument("--morse-a", type=float, default=None, help="Morse range a in Å (default: chosen by CV)")
    for cls in registered_models().values():
        cls.add_cli_arguments(p, _add_once)
    p.add_argument("--forces", action="store_true", help="fit forces too (data key F)")
    p.add_argument("--out", default=None, help="write the fitted model (JSON)")
    p.add_argument("--dask", default=None, metavar="ADDRESS",
                   help="factor the blocks of a linear fit on this Dask scheduler (e.g. tcp://host:8786)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("eval", help="errors of a fitted model on a data set")
    p.add_argument("model_file")
    p.add_argument("data")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)
