"""phenomjax/workers.py in the capacity search: runs trained in worker processes give the
numbers of runs trained here, and the search's tables keep their order whatever order
concurrent runs finish in."""

from __future__ import annotations

import os
import threading
import time

import pandas as pd
import pytest

from phenomjax.capacity import run_ladder
from phenomjax.errors import PhenomjaxError
from phenomjax.workers import Workers, cores

from .test_ladder import _tiny


def _pid(_):
    return os.getpid()


two_cores = pytest.mark.skipif(len(cores()) < 2, reason="two workers need two cores")


@two_cores
def test_map_keeps_order_and_runs_in_other_processes():
    with Workers(2) as w:
        assert w.map(lambda x: w.run(pow, x, 2), range(5)) == [0, 1, 4, 9, 16]
        pids = set(w.map(lambda x: w.run(_pid, x), range(4)))
    assert os.getpid() not in pids
    with Workers(1) as w:
        assert w.map(lambda x: w.run(_pid, x), range(2)) == [os.getpid()] * 2


def test_bad_jobs_is_one_error():
    for bad in (0, len(cores()) + 1):
        with pytest.raises(PhenomjaxError, match="jobs: expected an integer from 1 to"):
            Workers(bad)


@pytest.mark.slow  # over a minute of two processes training the quick ladder twice
@two_cores
def test_two_workers_give_the_same_tables(tmp_path):
    one = run_ladder(_tiny(), tmp_path / "one")
    two = run_ladder(_tiny(), tmp_path / "two", jobs=2)
    for a, b in zip(one, two, strict=True):  # capacity table, runs table, rows in one order
        pd.testing.assert_frame_equal(a, b)


def _stamp(_):
    start = time.monotonic()
    time.sleep(0.5)  # holds its worker: the next run waits for a free one
    return start, time.monotonic()


@two_cores
def test_the_costliest_waiting_run_goes_first():
    with Workers(2) as w:
        gate = threading.Event()

        def occupy(_):
            with w.hold():
                gate.wait()

        blockers = [threading.Thread(target=occupy, args=(i,)) for i in range(2)]
        for t in blockers:
            t.start()
        while w._free:  # both workers held: the runs below queue
            time.sleep(0.01)
        started = {}

        def one(cost):
            started[cost] = w.run(_stamp, None, cost=cost)

        waiting = [threading.Thread(target=one, args=(c,)) for c in (1.0, 3.0, 2.0)]
        for t in waiting:
            t.start()
        while len(w._waiting) < 3:  # all three queued before a worker frees
            time.sleep(0.01)
        gate.set()
        for t in blockers + waiting:
            t.join()
    # 3 and 2 take the two workers; 1 starts only once one of them is done (not once both
    # have started: the pool spawns its second process lazily, so 2 may start after 1 does)
    assert started[1.0][0] >= min(started[3.0][1], started[2.0][1])
