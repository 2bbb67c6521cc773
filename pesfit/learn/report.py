"""Figure of a learning run: estimated error against the number of calculations (PNG, Agg)."""
from __future__ import annotations

from pathlib import Path

__all__ = ["plot_history"]


def plot_history(history, path, *, target: float | None = None) -> Path:
    """Held-out RMSE and RMS committee disagreement [meV] per iteration, against calculations so far.

    Parameters
    ----------
    history : list of dict
        :attr:`LearnResult.history` records (or the ``--json`` lines).
    path : str or Path
        PNG file to write.
    target : float, optional
        Drawn as a horizontal line [meV].
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 3.8), layout="constrained")
    ax = fig.subplots()
    n = [h["n_calculations"] for h in history]
    held = [(k, h["heldout_rmse_meV"]) for k, h in zip(n, history) if h.get("heldout_rmse_meV") is not None]
    if held:
        ax.plot(*zip(*held), "o-", label="held-out RMSE (new batch)")
    ax.plot(n, [h["disagreement_rms_meV"] for h in history], "s--", label="committee disagreement (RMS)")
    if target is not None:
        ax.axhline(target, color="k", lw=0.8, ls=":", label=f"target {target:g} meV")
    ax.set_yscale("log")
    ax.set_xlabel("calculations")
    ax.set_ylabel("estimated error / meV")
    ax.legend(fontsize=8)
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path
