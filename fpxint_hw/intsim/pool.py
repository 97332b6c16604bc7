"""The simulator's worker threads: a layer's chunks of rows shared among them.

Each worker runs one-thread kernels (Numba, released GIL) on its share, so a layer wakes the
other threads once instead of at every kernel launch. The calling thread takes the first
share.

Waking a sleeping thread costs about 50 us on a virtual machine (a futex wake and a
reschedule), as long as a small layer's share: at batch 1, ResNet-50's 54 layers would pay
it 54 times. So a worker that finished its share watches for the next one for a while
(:data:`SPIN_ROUNDS` rounds of ``sched_yield``, about a millisecond on an idle core, giving
the core away at once to any other thread that wants it) before it sleeps, and the calling
thread watches for the workers' results the same way. The watching runs in Numba with the
GIL released; where ``sched_yield`` is not available the threads only sleep and wake.
"""

from __future__ import annotations

import ctypes
import threading

import numba
import numpy as np

__all__ = ["WorkerPool", "shared_pool", "SPIN_ROUNDS"]

#: Rounds of ``sched_yield`` a thread watches a flag before it sleeps.
SPIN_ROUNDS = 2000


def _sched_yield():
    """libc's ``sched_yield`` as a ctypes function Numba can call, or None."""
    try:
        fn = ctypes.CDLL(None).sched_yield
    except (OSError, AttributeError):
        return None
    fn.restype, fn.argtypes = ctypes.c_int, []
    return fn


_YIELD = _sched_yield()

if _YIELD is not None:
    @numba.njit(nogil=True, cache=False)
    def _watch(flags, i, value, rounds):
        """True once ``flags[i] == value``, False after ``rounds`` yields without it. The call
        is opaque to the compiler, so every round reads the flag anew."""
        for _ in range(rounds):
            if flags[i] == value:
                return True
            _YIELD()
        return flags[i] == value
else:  # pragma: no cover
    def _watch(flags, i, value, rounds):
        return flags[i] == value


class WorkerPool:
    """``threads`` threads (the caller's included) that run ``fn(first, last)`` over
    consecutive shares of ``range(n)`` (:meth:`run`). The workers live as long as the
    process: simulators share one pool per thread count (:func:`shared_pool`)."""

    def __init__(self, threads: int):
        if threads < 2:
            raise ValueError(f"WorkerPool: threads must be >= 2, got {threads}")
        self.threads = int(threads)
        self._asked = np.zeros(self.threads, dtype=np.int64)    # the share's generation
        self._done = np.zeros(self.threads, dtype=np.int64)     # the last one finished
        self._task = None
        self._results: list = [None] * self.threads
        self._lock = threading.Condition()
        self._one_run = threading.Lock()          # callers on several threads take turns
        self._generation = 0
        for i in range(1, self.threads):
            threading.Thread(target=self._serve, args=(i,), daemon=True,
                             name=f"fpxint-intsim-{i}").start()

    def _await(self, flags: np.ndarray, i: int, value: int) -> None:
        """Until ``flags[i] == value``: watched for :data:`SPIN_ROUNDS` rounds, then asleep
        until the lock's notification (the writer sets the flag holding the lock)."""
        if not _watch(flags, i, value, SPIN_ROUNDS):
            with self._lock:
                while flags[i] != value:
                    self._lock.wait()

    def _serve(self, i: int) -> None:
        seen = 0
        while True:
            self._await(self._asked, i, seen + 1)
            seen += 1
            fn, first, last = self._task[i]
            try:
                self._results[i] = (True, fn(first, last))
            except BaseException as exc:             # raised in the caller by run()
                self._results[i] = (False, exc)
            with self._lock:
                self._done[i] = seen
                self._lock.notify_all()

    def run(self, fn, n: int) -> list:
        """``[fn(first, last)]`` for ``min(threads, n)`` shares of ``range(n)`` in order, the
        first share on the calling thread; an exception in any share is raised here."""
        with self._one_run:
            return self._run(fn, n)

    def _run(self, fn, n: int) -> list:
        t = max(1, min(self.threads, n))
        bounds = [n * i // t for i in range(t + 1)]
        self._generation += 1
        gen = self._generation
        # workers past the last share get an empty one: every worker sees every generation
        self._task = [(fn, bounds[i], bounds[i + 1]) if i < t else (_nothing, 0, 0)
                      for i in range(self.threads)]
        with self._lock:
            self._asked[1:] = gen
            self._lock.notify_all()
        error = None
        try:
            first = fn(bounds[0], bounds[1])
        except BaseException as exc:
            error, first = exc, None
        out = [first]
        for i in range(1, self.threads):
            self._await(self._done, i, gen)
            ok, value = self._results[i]
            if not ok and error is None:
                error = value
            if i < t:
                out.append(value)
        if error is not None:
            raise error
        return out


def _nothing(first: int, last: int) -> None:
    return None


_SHARED: dict[int, WorkerPool] = {}
_SHARED_LOCK = threading.Lock()


def shared_pool(threads: int) -> WorkerPool:
    """The process's pool of ``threads`` threads (``threads >= 2``), made on first use."""
    with _SHARED_LOCK:
        if threads not in _SHARED:
            _SHARED[threads] = WorkerPool(threads)
        return _SHARED[threads]
