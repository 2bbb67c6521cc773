"""Where the blocks of a streamed fit run: in this process, or on a Dask cluster.

An executor has one method, ``map_ordered(func, args_list)``, yielding
``func(*args)`` for each ``args`` in order while keeping only a few results
in flight, so memory stays bounded however many tasks there are.  Results
come back in task order whatever the executor, so a fit gives the same
numbers locally and on a cluster.
"""
from __future__ import annotations

from collections import deque

__all__ = ["LocalExecutor", "DaskExecutor", "local_executor", "make_executor"]


class LocalExecutor:
    """Run tasks one after another in this process."""

    def map_ordered(self, func, args_list):
        for args in args_list:
            yield func(*args)


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
            pending.append(self.client.submit(func, *args, pure=False))
            if len(pending) >= window:
                break
        while pending:
            future = pending.popleft()
            result = future.result()
            future.release()
            for args in args_iter:
                pending.append(self.client.submit(func, *args, pure=False))
                break
            yield result


def local_executor() -> LocalExecutor:
    return LocalExecutor()


def make_executor(dask=None):
    """Executor for a ``dask`` argument: None (local), a scheduler address, or a ``distributed.Client``."""
    if dask is None:
        return local_executor()
    if isinstance(dask, (LocalExecutor, DaskExecutor)):
        return dask
    try:
        from distributed import Client
    except ImportError:
        raise ValueError("dask is set but dask.distributed is not installed; pip install 'dask[distributed]'") \
            from None
    if isinstance(dask, Client):
        return DaskExecutor(dask)
    if isinstance(dask, str):
        return DaskExecutor(Client(dask))
    raise ValueError(f"dask must be None, a scheduler address or a distributed.Client, got {type(dask).__name__}")
