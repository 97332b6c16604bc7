"""The worker pool covers every index once, in order, and raises a share's error."""

from __future__ import annotations

import threading

import numba
import numpy as np
import pytest

from fpxint_hw.intsim.pool import WorkerPool


@pytest.mark.parametrize("threads,n", [(2, 0), (2, 1), (2, 7), (3, 2), (4, 100)])
def test_the_shares_cover_the_range_once_in_order(threads, n):
    seen, names = [], set()

    def work(first, last):
        names.add(threading.current_thread().name)
        seen.append((first, last))
        return list(range(first, last))

    out = WorkerPool(threads).run(work, n)
    assert [i for share in out for i in share] == list(range(n))
    assert len(out) == max(1, min(threads, n)) and len(names) <= threads


def test_an_error_in_a_worker_is_raised_by_run():
    def work(first, last):
        if first > 0:
            raise ValueError("share two")
        return first
    with pytest.raises(ValueError, match="share two"):
        WorkerPool(2).run(work, 10)
    with pytest.raises(ValueError, match="threads must be >= 2"):
        WorkerPool(1)


def _within(seconds, fn):
    """``fn()`` on another thread; fails if it has not returned after ``seconds`` (a pool
    that deadlocks fails the test instead of hanging it) and re-raises its error."""
    box = []

    def call():
        try:
            fn()
            box.append(None)
        except BaseException as e:
            box.append(e)
    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(seconds)
    assert box, f"still running after {seconds} s: the pool is stuck"
    if box[0] is not None:
        raise box[0]


def test_the_pool_serves_run_after_run_whether_its_workers_watch_or_sleep(monkeypatch):
    """Back-to-back runs find the workers still watching; after a pause longer than the
    watch, or with no watching at all, they must be woken: every run gets every share."""
    _within(60, lambda: _serve_runs(monkeypatch))


def _serve_runs(monkeypatch):
    import time
    from fpxint_hw.intsim import pool as pool_module
    pool = WorkerPool(3)

    def check(k, n):
        def work(first, last):
            time.sleep(0.0005 * (first % 2))              # shares finish out of order
            return (k, first, last)
        bounds = [n * i // min(3, n) for i in range(min(3, n) + 1)]
        assert pool.run(work, n) == [(k, a, b) for a, b in zip(bounds, bounds[1:])]

    for k in range(200):                                  # watching
        check(k, 3 + k % 2)
    time.sleep(0.05)                                      # asleep by now
    check(200, 2)                                         # and one worker without a share
    monkeypatch.setattr(pool_module, "SPIN_ROUNDS", 0)
    for k in range(201, 220):
        check(k, 3)


def test_a_pool_keeps_working_after_an_error_and_callers_take_turns():
    pool = WorkerPool(2)

    def bad(first, last):
        if first:
            raise KeyError("worker")
        return first
    with pytest.raises(KeyError):
        pool.run(bad, 2)
    assert pool.run(lambda f, l: l - f, 4) == [2, 2]

    results, errors = [], []

    def caller(tag):
        try:
            for _ in range(50):
                results.append(pool.run(lambda f, l: (tag, f, l), 2) == [(tag, 0, 1),
                                                                         (tag, 1, 2)])
        except BaseException as e:                        # pragma: no cover
            errors.append(e)
    threads = [threading.Thread(target=caller, args=(t,)) for t in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 100 and all(results)


def test_simulators_share_one_pool_per_thread_count():
    from fpxint_hw.intsim.pool import shared_pool
    assert shared_pool(2) is shared_pool(2)
    assert shared_pool(3) is not shared_pool(2) and shared_pool(3).threads == 3


@numba.njit(nogil=True)
def _started_share(wake, value, out, first, last):
    """A share as the simulator's kernels run it: start the workers (``wake[1:] = value``,
    the GIL released), then the work."""
    wake[1:] = value
    for i in range(first, last):
        out[i] = 3 * i


def test_a_share_that_wakes_the_workers_itself_runs_run_after_run(monkeypatch):
    """``run(..., wake=True)``: while the workers watch, the caller's share gets the flags
    and starts them from its kernel; after a pause (asleep) or with no watching at all the
    pool wakes them itself; a share that fails before it could start them still lets the
    run end, with its error, as does one that ignores the flags."""
    _within(60, lambda: _wake_runs(monkeypatch))


def _wake_runs(monkeypatch):
    import time
    from fpxint_hw.intsim import pool as pool_module
    pool = WorkerPool(2)
    got = []

    def check(n):
        out = np.zeros(n, dtype=np.int64)

        def work(first, last, wake):
            if first == 0:
                got.append(wake is not None)
            flags, value = wake or (np.zeros(1, dtype=np.int64), 0)
            _started_share(flags, value, out, first, last)
            return last - first
        assert sum(pool.run(work, n, wake=True)) == n
        assert np.array_equal(out, 3 * np.arange(n))

    for k in range(100):                                  # watching: the share starts them
        check(2 + k % 5)
    assert any(got)
    time.sleep(0.05)                                      # asleep: the pool wakes them
    got.clear()
    check(6)
    assert got == [False]

    def fails_first(first, last, wake):
        if first == 0:
            raise RuntimeError("before the kernel")
        return last - first
    for _ in range(3):
        check(4)
        with pytest.raises(RuntimeError, match="before the kernel"):
            pool.run(fails_first, 4, wake=True)
        assert pool.run(lambda first, last, wake: last - first, 4, wake=True) == [2, 2]
    monkeypatch.setattr(pool_module, "SPIN_ROUNDS", 0)
    for k in range(20):
        check(3 + k % 2)
