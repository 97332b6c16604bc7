"""The worker pool covers every index once, in order, and raises a share's error."""

from __future__ import annotations

import threading

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
