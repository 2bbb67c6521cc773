"""Where the blocks of a streamed fit run: in this process, or on a Dask cluster.

An executor has one method, ``map_ordered(func, args_list)``, yielding
``func(*args)`` for each ``args`` in order while keeping only a few results
in flight, so memory stays bounded however many tasks there are.  Results
come back in task order whatever the executor, so a fit gives the same
numbers locally and on a cluster.

Threads are chosen here, not by environment variables: the local executor
runs one task per usable core, each with single-threaded BLAS
(:func:`blas_threads`), because threaded BLAS on cores that other work
already uses slows small and medium factorisations by up to 100x.
"""
from __future__ import annotations

import contextvars
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

__all__ = ["LocalExecutor", "DaskExecutor", "run_on", "current_executor", "usable_cores", "blas_threads"]

_CURRENT = contextvars.ContextVar("pesfit_executor", default=None)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def blas_threads(n: int = 1):
    """Context limiting BLAS/LAPACK to ``n`` threads (threadpoolctl), for small or many concurrent solves."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=int(n), user_api="blas")


class LocalExecutor:
    """Run tasks in this process on ``n_workers`` threads (default: the usable cores).

    The feature kernels (Numba, ``nogil``) and the block QR (NumPy/LAPACK)
    release the GIL, so tasks run in parallel; BLAS is single-threaded
    meanwhile, so the process uses exactly ``n_workers`` cores.
    """

    def __init__(self, n_workers: int | None = None):
        self.n_workers = n_workers

    def map_ordered(self, func, args_list):
        n_workers = self.n_workers or usable_cores()
        if n_workers <= 1:
            with blas_threads(1):
                for args in args_list:
                    yield func(*args)
            return
        with blas_threads(1), ThreadPoolExecutor(n_workers) as pool:
            pending = deque()
            args_iter = iter(args_list)
            for args in args_iter:
                pending.append(pool.submit(func, *args))
                if len(pending) >= n_workers:
                    break
            while pending:
                result = pending.popleft().result()
                for args in args_iter:
                    pending.append(pool.submit(func, *args))
                    break
                yield result


def _single_blas_thread(func, *args):
    with blas_threads(1):
        return func(*args)


class DaskExecutor:
    """Run tasks on a Dask cluster (``distributed.Client``), at most ``window`` at a time.

    Parameters
    ----------
    client : distributed.Client
    window : int, optional
        Tasks submitted ahead of the one being collected (default: twice the
        number of worker threads).
    """

    def __init__(self, client, window: int | None = None):
        self.client = client
        self.window = window

    def map_ordered(self, func, args_list):
        window = self.window or max(2, 2 * sum(self.client.nthreads().values()))
        pending = deque()
        args_iter = iter(args_list)
        for args in args_iter:
            pending.append(self.client.submit(_single_blas_thread, func, *args, pure=False))
            if len(pending) >= window:
                break
        while pending:
            future = pending.popleft()
            result = future.result()
            future.release()
            for args in args_iter:
                pending.append(self.client.submit(_single_blas_thread, func, *args, pure=False))
                break
            yield result


def current_executor():
    """The executor set by :func:`run_on`, or a local one on all usable cores."""
    executor = _CURRENT.get()
    return LocalExecutor() if executor is None else executor


def _client(dask):
    try:
        from distributed import Client
    except ImportError:
        raise ValueError("a Dask scheduler was given but dask.distributed is not installed; "
                         "pip install 'dask[distributed]'") from None
    if isinstance(dask, Client):
        return dask
    if not isinstance(dask, str):
        raise ValueError(f"dask must be a scheduler address or a distributed.Client, got {type(dask).__name__}")
    try:
        return Client(dask, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise ValueError(f"cannot connect to the Dask scheduler at {dask!r}: {exc}") from None


@contextmanager
def run_on(dask=None, *, n_workers: int | None = None):
    """Run the streamed linear fits inside this block on a Dask cluster or on ``n_workers`` local threads.

    ``dask`` is a scheduler address (``"tcp://host:8786"``; the client is
    closed on exit) or a ``distributed.Client`` (left open); None runs
    locally.  Every executor gives the same coefficients (the blocks and
    the order their factors are merged in do not depend on it)::

        with run_on("tcp://scheduler:8786"):
            LinearPIPModel(degree=6).fit(data)
    """
    if dask is not None and n_workers is not None:
        raise ValueError("give either dask (a cluster) or n_workers (local threads), not both")
    client = None if dask is None else _client(dask)
    executor = LocalExecutor(n_workers) if client is None else DaskExecutor(client)
    token = _CURRENT.set(executor)
    try:
        yield executor
    finally:
        _CURRENT.reset(token)
        if isinstance(dask, str):
            client.close()
