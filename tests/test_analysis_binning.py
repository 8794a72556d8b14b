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
