"""Running oracle calculations on ``dask.distributed``.

:class:`DaskExecutor` is a context manager.  Without a scheduler address it
starts a :class:`distributed.LocalCluster` with one single-threaded worker
process per core (``n_workers`` to change that) and stops it on exit; with
``scheduler="tcp://host:8786"`` it connects to a running cluster (e.g. a
``dask_jobqueue.SLURMCluster``) and leaves it running.

:meth:`DaskExecutor.map` submits one task per geometry under a key made of
the geometry's content hash, so a repeated request is one task, and hands
each result to a callback in the calling (main) process as it arrives -- the
only place the store is written.  A worker that dies mid-calculation costs
that calculation only: the scheduler resubmits its tasks to another worker
(up to ``distributed.scheduler.allowed-failures`` times, then the point is
returned as a failure naming the lost worker).
"""
from __future__ import annotations

import logging
import os

from .oracle import PointResult

__all__ = ["DaskExecutor"]


def _compute(oracle, symbols, R):
    """Task body on a worker."""
    return oracle.compute(symbols, R)


def _call(fn, *args):
    """Task body of :meth:`DaskExecutor.call`."""
    return fn(*args)


class DaskExecutor:
    """Oracle calculations on a local or remote Dask cluster.

    Parameters
    ----------
    scheduler : str or None
        Address of a running scheduler; None starts a local cluster.
    n_workers : int or None
        Local cluster size (default: one worker per core); ignored with
        ``scheduler``.

    Attributes
    ----------
    client : distributed.Client
        Set inside the ``with`` block.
    """

    def __init__(self, scheduler: str | None = None, n_workers: int | None = None):
        self.scheduler = scheduler
        self.n_workers = n_workers
        self.client = None
        self._cluster = None

    def __enter__(self) -> "DaskExecutor":
        from distributed import Client, LocalCluster

        if self.scheduler:
            try:
                self.client = Client(self.scheduler, timeout="20s")
            except OSError as exc:
                raise RuntimeError(f"cannot reach the Dask scheduler at {self.scheduler} ({exc})") from None
        else:
            n = self.n_workers or os.cpu_count() or 1
            if n < 1:
                raise ValueError(f"n_workers must be >= 1, got {n}")
            self._cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                         dashboard_address=":0", silence_logs=logging.WARNING)
            self.client = Client(self._cluster)
        return self

    def __exit__(self, *exc) -> None:
        if self.client is not None:
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()
        self.client = self._cluster = None

    @property
    def n_threads(self) -> int:
        """Worker threads the cluster has now."""
        return sum(self.client.nthreads().values())

    def worker_pids(self) -> dict:
        """``{worker address: process id}`` (for tests and diagnostics)."""
        return self.client.run(os.getpid)

    def call_all(self, fn, arg_tuples) -> list:
        """Run ``fn(*args)`` for each tuple as parallel tasks; return the values in order (errors re-raised)."""
        futures = [self.client.submit(_call, fn, *args, pure=False) for args in arg_tuples]
        try:
            return self.client.gather(futures)
        finally:
            self.client.cancel(futures)

    def map(self, oracle, symbols, requests, on_result) -> None:
        """Compute ``requests`` = [(hash, R), ...] and call ``on_result(hash, R, PointResult)`` for each.

        Requests with the same hash are computed once (and reported once).
        Results arrive in completion order.  On an exception in ``on_result``
        (e.g. KeyboardInterrupt) the outstanding tasks are cancelled and the
        exception propagates.
        """
        from distributed import as_completed

        if self.client is None:
            raise RuntimeError("DaskExecutor.map outside its `with` block")
        symbols = list(symbols)
        unique = {}
        for h, R in requests:
            unique.setdefault(h, R)
        if not unique:
            return
        futures = {}
        for h, R in unique.items():
            fut = self.client.submit(_compute, oracle, symbols, R, key=f"pesfit-learn-{h}")
            futures[fut.key] = (h, R, fut)
        try:
            for fut in as_completed([f for _, _, f in futures.values()]):
                h, R, _ = futures[fut.key]
                try:
                    result = fut.result()
                except Exception as exc:  # lost workers (KilledWorker) and other cluster errors
                    result = PointResult("failed", failure=f"Dask: {type(exc).__name__}: {str(exc)[:300]}")
                on_result(h, R, result)
                fut.release()
        except BaseException:
            self.client.cancel([f for _, _, f in futures.values()])
            raise
