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

A thread that watches still has to take the GIL back before it can run Python, and taking
it from a thread that holds it costs the same futex wake. So the hand-offs are placed where
the other thread has let go of it: a worker marks that it is watching again from inside the
GIL-free watch (the caller waits for that mark, not only for the result, before it goes on
in Python), and a caller's share may start the workers itself (:meth:`WorkerPool.run` with
``wake=True``), from its GIL-free kernel, so that they find the GIL free. A thread about to
sleep first notifies the others: a worker that went to sleep just as the caller's kernel
started it (no notification) is woken when the caller waits for its result.
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
    def _watch(flags, i, value, rounds, mark, at, now):
        """``mark[at] = now`` (this thread has let go of the GIL), then True once ``flags[i]
        == value``, False after ``rounds`` yields without it. The call is opaque to the
        compiler, so every round reads the flag anew."""
        mark[at] = now
        for _ in range(rounds):
            if flags[i] == value:
                return True
            _YIELD()
        return flags[i] == value
else:  # pragma: no cover
    def _watch(flags, i, value, rounds, mark, at, now):
        mark[at] = now
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
        self._watching = np.zeros(self.threads, dtype=np.int64)  # ... and watches again
        self._sleeping = np.zeros(self.threads, dtype=bool)
        self._no_mark = np.zeros(1, dtype=np.int64)
        self._task = None
        self._results: list = [None] * self.threads
        self._lock = threading.Condition()
        self._one_run = threading.Lock()          # callers on several threads take turns
        self._generation = 0
        for i in range(1, self.threads):
            threading.Thread(target=self._serve, args=(i,), daemon=True,
                             name=f"fpxint-intsim-{i}").start()

    def _await(self, flags: np.ndarray, i: int, value: int, me: int = 0,
               mark: np.ndarray | None = None, now: int = 0) -> None:
        """Thread ``me`` until ``flags[i] == value``: watched for :data:`SPIN_ROUNDS` rounds
        (``mark[me] = now`` first, without the GIL), then asleep until the lock's
        notification; going to sleep, it wakes the others (see the module docstring)."""
        mark, at = (self._no_mark, 0) if mark is None else (mark, me)
        if not _watch(flags, i, value, SPIN_ROUNDS, mark, at, now):
            with self._lock:
                self._sleeping[me] = True
                self._lock.notify_all()
                while flags[i] != value:
                    self._lock.wait()
                self._sleeping[me] = False

    def _serve(self, i: int) -> None:
        seen = 0
        while True:
            self._await(self._asked, i, seen + 1, i, self._watching, seen)
            seen += 1
            fn, first, last = self._task[i]
            try:
                self._results[i] = (True, fn(first, last))
            except BaseException as exc:             # raised in the caller by run()
                self._results[i] = (False, exc)
            with self._lock:
                self._done[i] = seen
                self._lock.notify_all()

    def _start(self, gen: int) -> None:
        """Hand the workers generation ``gen``, waking any that sleep."""
        with self._lock:
            self._asked[1:] = gen
            self._lock.notify_all()

    def run(self, fn, n: int, wake: bool = False) -> list:
        """``[fn(first, last)]`` for ``min(threads, n)`` shares of ``range(n)`` in order, the
        first share on the calling thread; an exception in any share is raised here.

        With ``wake``, ``fn`` takes a third argument: None, or for the calling thread's share
        when every worker is watching, ``(flags, value)``, and then must set ``flags[1:] =
        value`` once it has released the GIL, before its work (that starts the workers)."""
        with self._one_run:
            return self._run(fn, n, wake)

    def _run(self, fn, n: int, wake: bool = False) -> list:
        t = max(1, min(self.threads, n))
        bounds = [n * i // t for i in range(t + 1)]
        self._generation += 1
        gen = self._generation
        # workers past the last share get an empty one: every worker sees every generation
        share = (lambda first, last: fn(first, last, None)) if wake else fn
        self._task = [(share, bounds[i], bounds[i + 1]) if i < t else (_nothing, 0, 0)
                      for i in range(self.threads)]
        starter = None
        if wake and not self._sleeping[1:].any():
            starter = (self._asked, gen)         # the share's kernel starts the workers
        else:
            self._start(gen)
        error = None
        try:
            first = fn(bounds[0], bounds[1], starter) if wake else fn(bounds[0], bounds[1])
        except BaseException as exc:
            error, first = exc, None
        if starter is not None and self._asked[-1] != gen:     # the share did not start them
            self._start(gen)
        out = [first]
        for i in range(1, self.threads):
            self._await(self._done, i, gen)
            # back in Python only once the worker has let go of the GIL (module docstring)
            _watch(self._watching, i, gen, SPIN_ROUNDS, self._no_mark, 0, 0)
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
