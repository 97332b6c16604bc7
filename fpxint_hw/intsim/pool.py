"""The simulator's worker threads: a layer's chunks of rows shared among them.

Each worker runs one-thread kernels (Numba, released GIL) and one-thread onnxruntime calls on
its share, so a layer wakes the other threads once instead of at every kernel launch (on a
virtual machine a wake-up costs about 0.1 ms, as much as a small kernel). The calling thread
takes the first share.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

__all__ = ["WorkerPool"]


class WorkerPool:
    """``threads`` threads (the caller's included) that run ``fn(first, last)`` over
    consecutive shares of ``range(n)`` (:meth:`run`)."""

    def __init__(self, threads: int):
        if threads < 2:
            raise ValueError(f"WorkerPool: threads must be >= 2, got {threads}")
        self.threads = int(threads)
        self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="fpxint-intsim")

    def run(self, fn, n: int) -> list:
        """``[fn(first, last)]`` for ``min(threads, n)`` shares of ``range(n)`` in order, the
        first share on the calling thread; an exception in any share is raised here."""
        t = max(1, min(self.threads, n))
        bounds = [n * i // t for i in range(t + 1)]
        futures = [self._pool.submit(fn, bounds[i], bounds[i + 1]) for i in range(1, t)]
        first = fn(bounds[0], bounds[1])
        return [first] + [f.result() for f in futures]
