"""bin_by_rank against the historical per-bin filter loop written directly in NumPy."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phenomjax import bin_by_rank
from phenomjax.analysis import RANK_SELECTIONS, default_edges, select_ranks
from phenomjax.analysis.binning import HISTORICAL_EDGES, binned


def loop_reference(table: pd.DataFrame, edges, cols) -> pd.DataFrame:
    """The historical loop: one boolean filter per (step, bin), plain NumPy means of `cols`;
    NaNs left out of the means."""
    rows = []
    for step in np.unique(table["step"]):
        t = table[table["step"] == step]
        r = t["rank"].to_numpy()
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            m = (r >= lo) & (r < hi)
            if not m.any():
                continue
            row = {"step": step, "rank_lo": lo, "rank_hi": hi, "n_sequences": int(m.sum())}
            for c in cols:
                v = t[c].to_numpy(np.float64)[m]
                row[c] = np.nanmean(v) if np.isfinite(v).any() else np.nan
            rows.append(row)
    return pd.DataFrame(rows)


def reference(table: pd.DataFrame, edges) -> list[tuple]:
    """loop_reference as rows (step, lo, hi, mean rank, presentations, loss, accuracy, n)."""
    cols = ["rank", "presentations", "loss", "accuracy"]
    want = loop_reference(table, edges, cols)
    if want.empty:
        return []
    order = ["step", "rank_lo", "rank_hi", *cols, "n_sequences"]
    return [tuple(r) for r in want[order].itertuples(index=False)]


@st.composite
def tables(draw):
    K = draw(st.integers(1, 400))
    n_steps = draw(st.integers(1, 4))
    rows = []
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    keep = draw(st.floats(0.2, 1.0))
    for s in range(n_steps):
        ranks = np.flatnonzero(rng.random(K) < keep)
        ranks = ranks if len(ranks) else np.array([K - 1])
        rows.append(
            pd.DataFrame(
                {
                    "step": np.full(len(ranks), 10 * s, np.int64),
                    "rank": ranks.astype(np.int32),
                    "presentations": rng.integers(0, 1000, len(ranks)),
                    "loss": np.where(rng.random(len(ranks)) < 0.1, np.nan, rng.random(len(ranks))),
                    "accuracy": rng.random(len(ranks)).astype(np.float32),
                }
            )
        )
    table = pd.concat(rows, ignore_index=True)
    if draw(st.booleans()):  # stored order (the reduceat path) or shuffled (the bincount path)
        table = table.sample(frac=1.0, random_state=int(rng.integers(1 << 30)))
    if draw(st.booleans()):
        edges = None
    else:
        edges = sorted(set(draw(st.lists(st.integers(0, K + 5), min_size=2, max_size=12))))
        if len(edges) < 2:
            edges = [0, K]
    return table, edges, K


@settings(max_examples=60, deadline=None)
@given(tables())
def test_bin_by_rank_matches_the_per_bin_filter_loop(case):
    table, edges, K = case
    e = default_edges(int(table["rank"].max()) + 1) if edges is None else np.asarray(edges)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = bin_by_rank(table, edges)
    want = reference(table, e)
    assert len(got) == len(want)  # empty bins left out, the same ones
    cols = ["step", "rank_lo", "rank_hi", "sequence_rank", "presentations", "loss", "accuracy",
            "n_sequences"]  # fmt: skip
    want = np.array(want, np.float64).reshape(-1, 8)
    np.testing.assert_allclose(got[cols].to_numpy(np.float64), want, rtol=1e-6, atol=1e-7,
                               equal_nan=True)  # fmt: skip


def test_nan_metrics_are_counted_in_a_warning():
    t = pd.DataFrame({"step": [0, 0, 0], "rank": [0, 1, 2], "presentations": [1, 2, 3],
                      "loss": [1.0, np.nan, 3.0], "accuracy": [1.0, 0.5, np.nan]})  # fmt: skip
    with pytest.warns(UserWarning, match="1 in loss, 1 in accuracy"):
        b = bin_by_rank(t, [0, 5])
    assert b["loss"].item() == 2.0 and b["accuracy"].item() == 0.75 and b["n_sequences"].item() == 3


def test_default_edges_are_the_historical_ones():
    e = default_edges(100000)
    assert e[:7].tolist() == [0, 5, 10, 100, 200, 500, 1000]
    assert np.all(np.diff(e[6:]) == 1000) and e[-1] == 100000 and len(e) == 106
    assert default_edges(1500).tolist() == [0, 5, 10, 100, 200, 500, 1000, 1500]
    assert default_edges(3).tolist() == [0, 3]


def test_per_position_tables_bin_per_position_and_selections_select():
    t = pd.DataFrame({"step": 0, "rank": np.repeat(np.arange(40), 3),
                      "position": np.tile([1, 2, 3], 40), "presentations": 1,
                      "loss": np.tile([0.1, 0.2, 0.3], 40), "accuracy": 1.0})  # fmt: skip
    b = bin_by_rank(t)
    assert set(b["position"]) == {1, 2, 3}
    np.testing.assert_allclose(b.groupby("position")["loss"].mean(), [0.1, 0.2, 0.3], rtol=1e-6)
    assert b[b.rank_lo == 10]["n_sequences"].tolist() == [30, 30, 30]
    s = select_ranks(t, RANK_SELECTIONS["mid"])
    assert sorted(set(s["rank"])) == list(range(30, 40))
    assert RANK_SELECTIONS["selected"] == tuple(range(10)) + tuple(range(30, 40)) + tuple(
        range(60, 70)
    )


def test_bad_edges_and_missing_columns_are_refused():
    t = pd.DataFrame(
        {"step": [0], "rank": [0], "presentations": [1], "loss": [1.0], "accuracy": [1.0]}
    )
    with pytest.raises(ValueError, match="strictly increasing"):
        bin_by_rank(t, [0, 0, 5])
    with pytest.raises(ValueError, match="lacks column 'loss'"):
        bin_by_rank(t.drop(columns="loss"))


def test_docstring_examples():
    import doctest

    from phenomjax.analysis import binning

    assert doctest.testmod(binning).failed == 0


# -- paths a mutation run found unchecked: edges above rank 0 (the lookup-table path), default
# edges at every K, the optional mean columns, and `binned`


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
