"""capacity/workers.py: runs trained in worker processes give the numbers of runs trained here,
and the search's tables keep their order whatever order concurrent runs finish in."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from phenomjax.capacity import run_ladder
from phenomjax.capacity.workers import Workers, cores
from phenomjax.errors import PhenomjaxError

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


@two_cores
def test_two_workers_give_the_same_tables(tmp_path):
    one = run_ladder(_tiny(), tmp_path / "one")
    two = run_ladder(_tiny(), tmp_path / "two", jobs=2)
    for a, b in zip(one, two, strict=True):  # capacity table, runs table, rows in one order
        pd.testing.assert_frame_equal(a, b)
