"""Rank binning paths the mutation run found unchecked: edges that start above rank 0 (the
lookup-table path), default edges at every K, the optional mean columns, and `binned`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_analysis_binning import loop_reference

from phenomjax.analysis.binning import HISTORICAL_EDGES, bin_by_rank, binned, default_edges


@st.composite
def offset_tables(draw):
    """Every rank inside edges that start above 0: bins come from the lookup table."""
    lo = draw(st.integers(1, 50))
    cuts = sorted(set(draw(st.lists(st.integers(1, 40), min_size=1, max_size=6))))
    edges = np.array([lo, *[lo + c for c in cuts]], np.int64)
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    n = draw(st.integers(1, 60))
    ranks = rng.integers(edges[0], edges[-1], n)
    table = pd.DataFrame({
        "step": rng.integers(0, 3, n) * 10, "rank": ranks,
        "presentations": rng.integers(0, 100, n), "loss": rng.random(n),
        "accuracy": rng.random(n), "floor": rng.random(n), "ceiling": rng.random(n),
        "excess_loss": rng.random(n), "epoch": rng.integers(0, 5, n),
    })  # fmt: skip
    if draw(st.booleans()):
        table = table.sort_values(["step", "rank"], kind="stable").reset_index(drop=True)
    return table, edges


@settings(max_examples=40, deadline=None)
@given(offset_tables())
def test_edges_above_rank_zero_match_the_loop(case):
    table, edges = case
    cols = ["presentations", "loss", "accuracy", "floor", "ceiling", "excess_loss", "epoch"]
    got = bin_by_rank(table, edges)
    want = loop_reference(table, edges, cols)
    assert len(got) == len(want)
    keys = ["step", "rank_lo", "rank_hi", "n_sequences"]
    np.testing.assert_array_equal(got[keys].to_numpy(np.int64), want[keys].to_numpy(np.int64))
    np.testing.assert_allclose(got[cols].to_numpy(np.float64), want[cols].to_numpy(np.float64),
                               rtol=1e-12)  # fmt: skip


@given(st.integers(1, 30_000))
@settings(max_examples=80, deadline=None)
def test_default_edges_at_every_k(K):
    e = default_edges(K)
    assert e[0] == 0 and e[-1] == K and np.all(np.diff(e) > 0)
    hist = [h for h in HISTORICAL_EDGES if h < K]
    assert e[: len(hist)].tolist() == hist  # the historical edges below K, in order
    tail = np.diff(e[len(hist) - 1 :])
    # past 1000 every bin is 1000 wide, the last one at most 1000 (it ends at K)
    if K > 1000:
        assert np.all(tail[:-1] == 1000) and 0 < tail[-1] <= 1000


@pytest.mark.parametrize(
    "K,want",
    [
        (1, [0, 1]),
        (5, [0, 5]),
        (6, [0, 5, 6]),
        (1000, [0, 5, 10, 100, 200, 500, 1000]),
        (1001, [0, 5, 10, 100, 200, 500, 1000, 1001]),
        (3000, [0, 5, 10, 100, 200, 500, 1000, 2000, 3000]),
    ],
)
def test_default_edges_exact(K, want):
    assert default_edges(K).tolist() == want


def test_default_edges_refuse_k_below_one():
    with pytest.raises(ValueError, match="K: expected >= 1"):
        default_edges(0)


def test_default_edges_come_from_the_run_k_or_the_largest_rank():
    t = pd.DataFrame({"step": 0, "rank": [0, 7, 12], "presentations": 1, "loss": 1.0,
                      "accuracy": 1.0})  # fmt: skip
    assert bin_by_rank(t)["rank_hi"].tolist() == [5, 10, 13]  # K = largest rank + 1
    t.attrs = {"run": {"K": 150}}
    assert bin_by_rank(t)["rank_hi"].tolist() == [5, 10, 100]  # edges of K = 150
    t.attrs = {"run": {"K": 5}}  # a K below the ranks present: the ranks win
    assert bin_by_rank(t)["rank_hi"].tolist() == [5, 10, 13]


def test_binned_uses_exact_presentations_and_bins_groups_apart():
    t = pd.DataFrame({
        "member": [0, 0, 1, 1], "step": 0, "rank": [0, 1, 0, 1],
        "presentations": [1, 2, 3, 4], "expected_presentations": [1.25, 2.5, 3.0, 4.5],
        "loss": [0.1, 0.3, 0.5, 0.7], "accuracy": [1.0, 0.0, 1.0, 1.0],
        "floor": [0.01, 0.03, 0.01, 0.03], "other": 9,
    })  # fmt: skip
    b = binned(t, np.array([0, 2]), group="member")
    assert b["member"].tolist() == [0, 1] and "run" not in b and "other" not in b
    np.testing.assert_allclose(b["presentations"], [1.875, 3.75])
    np.testing.assert_allclose(b["loss"], [0.2, 0.6])
    np.testing.assert_allclose(b["accuracy"], [0.5, 1.0])
    np.testing.assert_allclose(b["floor"], [0.02, 0.02])
    plain = binned(t.drop(columns=["member", "expected_presentations"]), np.array([0, 2]))
    np.testing.assert_allclose(plain["presentations"], [2.5])
