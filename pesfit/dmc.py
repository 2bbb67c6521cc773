"""Diffusion Monte Carlo on a fitted surface through pyvibdmc.

:func:`pyvibdmc_potential` turns a pesfit model into the potential pyvibdmc
expects: walker coordinates ``(n_walkers, n_atoms, 3)`` in bohr to energies
``(n_walkers,)`` in hartree, in NumPy around the model's compiled (Numba)
evaluator.  :func:`run_pyvibdmc` runs a discrete-weighting (birth/death)
simulation with pyvibdmc (the optional extra ``pip install "pesfit[dmc]"``)
and estimates the zero-point energy as the mean of the reference energy
``V_ref(tau)`` after equilibration -- an estimate that needs no descendant
weighting -- with its statistical error from Flyvbjerg-Petersen blocking
(:func:`blocking_error`), since successive ``V_ref`` values are correlated.

Units: the model works in Å and eV; the walkers in bohr and hartree
(CODATA 2018 factors from :mod:`pesfit.units`); results in cm^-1.
"""
from __future__ import annotations

import contextlib
import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .units import energy_factor, length_factor

__all__ = ["pyvibdmc_potential", "blocking_error", "zpe_from_vref", "run_pyvibdmc", "DMCResult"]

log = logging.getLogger(__name__)

_A_PER_BOHR = length_factor("bohr", "angstrom")
_HARTREE_PER_EV = energy_factor("eV", "hartree")
_CM_PER_HARTREE = energy_factor("hartree", "cm-1")


def pyvibdmc_potential(model, *, energy_zero_eV: float = 0.0):
    """A pyvibdmc potential function for a pesfit model.

    Parameters
    ----------
    model : fitted pesfit model (or :class:`pesfit.ase.CompiledModel`)
    energy_zero_eV : float
        Subtracted from the model energies [eV] (e.g. the minimum energy, so
        that DMC energies are zero-point energies).

    Returns
    -------
    callable
        ``V(cds)``: ``cds`` ndarray of shape (n_walkers, n_atoms, 3) [bohr], in
        the model's atom order, to ndarray of shape (n_walkers,) [hartree].

    Examples
    --------
    >>> import pyvibdmc                                            # doctest: +SKIP
    >>> pot = pyvibdmc.Potential_Direct(pyvibdmc_potential(model))  # doctest: +SKIP
    """
    from .ase import model_symbols

    n_atoms = len(model_symbols(model))
    e0 = float(energy_zero_eV)

    def potential(cds):
        cds = np.asarray(cds, dtype=np.float64)
        if cds.ndim != 3 or cds.shape[1:] != (n_atoms, 3):
            raise ValueError(f"walkers must have shape (n_walkers, {n_atoms}, 3) [bohr], got {cds.shape}")
        E = np.asarray(model.predict(cds * _A_PER_BOHR), dtype=np.float64)
        return (E - e0) * _HARTREE_PER_EV

    return potential


def blocking_error(x) -> tuple[float, float, int]:
    """Mean of a correlated series and its standard error by blocking.

    The series is halved repeatedly by averaging neighbouring pairs
    (Flyvbjerg & Petersen, J. Chem. Phys. 91, 461 (1989)); the naive
    standard error grows with the block length until the blocks are
    uncorrelated and then levels off.  The largest estimate among the
    levels with at least 32 blocks is returned (a slightly conservative
    plateau value).

    Parameters
    ----------
    x : ndarray of shape (n,)

    Returns
    -------
    mean : float
    error : float
        Standard error of the mean.
    block_length : int
        Block length of the chosen level.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> m, e, b = blocking_error(rng.normal(size=4096))
    >>> 0.01 < e < 0.025
    True
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size < 2:
        raise ValueError(f"need at least 2 values for an error estimate, got {x.size}")
    mean = float(x.mean())
    best, best_len, length = float(x.std(ddof=1) / np.sqrt(x.size)), 1, 1
    while x.size >= 64:
        x = 0.5 * (x[: x.size // 2 * 2: 2] + x[1: x.size // 2 * 2: 2])
        length *= 2
        err = float(x.std(ddof=1) / np.sqrt(x.size))
        if err > best:
            best, best_len = err, length
    return mean, best, best_len


def zpe_from_vref(vref_hartree, equilibration: int) -> tuple[float, float]:
    """Zero-point energy and its error [cm^-1] from a ``V_ref`` series [hartree].

    The mean of ``vref_hartree[equilibration:]`` with the blocking error.
    """
    v = np.asarray(vref_hartree, dtype=np.float64)
    if not 0 <= equilibration < v.size - 64:
        raise ValueError(f"equilibration ({equilibration}) must leave at least 64 of the {v.size} steps")
    mean, err, _ = blocking_error(v[equilibration:])
    return mean * _CM_PER_HARTREE, err * _CM_PER_HARTREE


@dataclass(frozen=True)
class DMCResult:
    """Result of :func:`run_pyvibdmc`.

    Attributes
    ----------
    zpe_cm, zpe_error_cm : float
        Zero-point energy relative to ``energy_zero_eV`` and its blocking error [cm^-1].
    vref_cm : ndarray of shape (n_steps,)
        Reference energy per step [cm^-1].
    population : ndarray of shape (n_steps,)
    n_walkers, n_steps, equilibration : int
    dt_au : float
        Time step [atomic units of time].
    seconds : float
    output_folder : Path
    """

    zpe_cm: float
    zpe_error_cm: float
    vref_cm: np.ndarray
    population: np.ndarray
    n_walkers: int
    n_steps: int
    equilibration: int
    dt_au: float
    seconds: float
    output_folder: Path

    def to_dict(self) -> dict:
        return {"zpe_cm": self.zpe_cm, "zpe_error_cm": self.zpe_error_cm, "n_walkers": self.n_walkers,
                "n_steps": self.n_steps, "equilibration": self.equilibration, "dt_au": self.dt_au,
                "seconds": self.seconds, "output_folder": str(self.output_folder)}


class _LogWriter(io.TextIOBase):
    """Sends pyvibdmc's prints to the log instead of stdout."""

    def write(self, s):
        if s.strip():
            log.info("pyvibdmc: %s", s.strip())
        return len(s)


def run_pyvibdmc(model, R0, *, n_walkers: int = 1000, n_steps: int = 10000, dt_au: float = 10.0,
                 equilibration: int = 2000, output_folder, energy_zero_eV: float | None = None,
                 seed: int | None = None, progress=None, sim_name: str = "pesfit_dmc") -> DMCResult:
    """Ground-state DMC (discrete weighting) with pyvibdmc; ZPE from ``V_ref``.

    Parameters
    ----------
    model : fitted pesfit model
    R0 : ndarray of shape (N, 3) [Å]
        Start geometry of all walkers (the minimum, see :func:`pesfit.vib.minimize`).
    n_walkers, n_steps : int
    dt_au : float
        Time step [a.u. of time]; 5-10 is usual for molecules with H atoms
        (the time-step bias is a few cm^-1).
    equilibration : int
        Steps left out of the ZPE average.
    output_folder : str or Path
        Where pyvibdmc writes its log, checkpoints and ``*_sim_info.hdf5``.
    energy_zero_eV : float, optional
        Energy zero [eV]; default the model energy at ``R0``.
    seed : int, optional
        Seeds NumPy's global generator, which pyvibdmc draws from.
    progress : callable, optional
        ``progress(step, total, message)``, called once per time step.
    sim_name : str

    Returns
    -------
    DMCResult

    Raises
    ------
    ImportError
        If pyvibdmc is not installed (``pip install "pesfit[dmc]"``).
    """
    try:
        import pyvibdmc
    except ImportError as exc:
        raise ImportError(f"run_pyvibdmc needs pyvibdmc and h5py: pip install \"pesfit[dmc]\" ({exc})") from None
    from .ase import model_symbols

    symbols = list(model_symbols(model))
    R0 = np.asarray(R0, dtype=np.float64)
    if R0.shape != (len(symbols), 3):
        raise ValueError(f"R0 must have shape ({len(symbols)}, 3) [Å], got {R0.shape}")
    if not 0 <= equilibration < n_steps - 64:
        raise ValueError(f"equilibration ({equilibration}) must leave at least 64 of the {n_steps} steps")
    e0 = float(model.predict(R0)) if energy_zero_eV is None else float(energy_zero_eV)
    base = pyvibdmc_potential(model, energy_zero_eV=e0)
    count = [0]

    def potential(cds):
        count[0] += 1
        if progress is not None:
            progress(min(count[0], n_steps), n_steps, f"{len(cds)} walkers")
        return base(cds)

    out = Path(output_folder)
    out.mkdir(parents=True, exist_ok=True)
    if seed is not None:
        np.random.seed(seed)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(_LogWriter()):
        sim = pyvibdmc.DMC_Sim(
            sim_name=sim_name, output_folder=str(out), weighting="discrete", num_walkers=int(n_walkers),
            num_timesteps=int(n_steps), equil_steps=int(equilibration), chkpt_every=int(n_steps),
            wfn_every=int(n_steps), desc_wt_steps=min(50, n_steps - equilibration - 1), atoms=symbols,
            delta_t=float(dt_au), potential=pyvibdmc.Potential_Direct(potential),
            start_structures=(R0 / _A_PER_BOHR)[None], log_every=max(1, n_steps // 100))
        sim.run()
    seconds = time.perf_counter() - t0
    info = pyvibdmc.SimInfo(str(out / f"{sim_name}_sim_info.hdf5"))
    vref = np.asarray(info.get_vref()[:n_steps, 1], dtype=np.float64)
    pop = np.asarray(info.get_pop()[:n_steps, 1], dtype=np.float64)
    zpe, err = zpe_from_vref(vref, equilibration)
    return DMCResult(zpe, err, vref * _CM_PER_HARTREE, pop, int(n_walkers), int(n_steps), int(equilibration),
                     float(dt_au), seconds, out)
