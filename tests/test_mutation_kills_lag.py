"""Lag measure paths the mutation run found unchecked: the seed band of two runs, bins taken
from the run's K, and explicit edges that leave some ranks out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from phenomjax.analysis import lag


def power_evals(ranks, steps=None, rate=None):
    """loss = 0.7 (1 + n)^-0.3 per rank, n = rate_r * step presentations."""
    steps = np.arange(0, 200, 10) if steps is None else steps
    rows = []
    for i, r in enumerate(ranks):
        n = (rate[i] if rate is not None else 1.0 + r) * steps
        rows.append(pd.DataFrame({"step": steps, "rank": r, "presentations": n,
                                  "loss": 0.7 * (1.0 + n) ** -0.3, "accuracy": 0.5}))  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def test_seed_band_of_two_runs_has_a_sample_std():
    t = pd.DataFrame({"run": ["a", "b", "a", "b"], "k": [0, 0, 1, 1],
                      "v": [1.0, 3.0, 2.0, np.nan]})  # fmt: skip
    b = lag.seed_band(t, ["v"], ["k"]).set_index("k")
    assert b.loc[0, "v_std"] == pytest.approx(np.std([1.0, 3.0], ddof=1))
    assert b.loc[0, "v_mean"] == 2.0 and b.loc[0, "v_n"] == 2 and b.loc[0, "n_runs"] == 2
    assert np.isnan(b.loc[1, "v_std"]) and b.loc[1, "v_mean"] == 2.0 and b.loc[1, "v_n"] == 1
    with pytest.raises(ValueError, match="lacks column 'run'"):
        lag.seed_band(t.drop(columns="run"), ["v"], ["k"])


def test_group_gap_is_the_seed_band_of_the_gaps():
    gap = pd.DataFrame({"run": ["a", "b", "a", "b"], "rank_lo": [0, 0, 5, 5],
                        "rank_hi": [5, 5, 10, 10],
                        "log_loss_gap": [0.0, 0.0, 0.2, 0.4]})  # fmt: skip
    g = lag.group_gap(gap).set_index("rank_lo")
    assert g.loc[5, "log_loss_gap_mean"] == pytest.approx(0.3)
    assert g.loc[5, "log_loss_gap_std"] == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert g.loc[5, "rank_hi"] == 10 and g.loc[0, "log_loss_gap_max"] == 0.0


def test_matched_loss_bins_come_from_the_run_k():
    ev = power_evals(range(12))
    ev.attrs = {"run": {"K": 50}}
    m = lag.matched_loss(ev)
    assert sorted(set(zip(m.rank_lo, m.rank_hi, strict=True))) == [(0, 5), (5, 10), (10, 50)]
    ev.attrs = {}
    m = lag.matched_loss(ev)
    assert sorted(set(zip(m.rank_lo, m.rank_hi, strict=True))) == [(0, 5), (5, 10), (10, 12)]


def test_matched_loss_leaves_out_ranks_outside_the_edges():
    ev = power_evals(range(12))
    m = lag.matched_loss(ev, edges=[2, 4, 8])
    assert sorted(set(zip(m.rank_lo, m.rank_hi, strict=True))) == [(2, 4), (4, 8)]
    # the mean of bin [2, 4) is over ranks 2 and 3 only (NumPy: each rank read on the grid)
    first = m[m.rank_lo == 2]
    _, y = lag.rank_loss_at(ev, first["presentations"].to_numpy())
    cover = np.isfinite(y[2:4])  # each rank covers its own range of presentations
    np.testing.assert_array_equal(first["n_ranks"], cover.sum(axis=0))
    want = np.where(cover, y[2:4], 0.0).sum(axis=0) / cover.sum(axis=0)
    np.testing.assert_allclose(first["log_loss"], want, rtol=1e-12)


def test_loss_gap_reports_the_range_compared():
    m = pd.DataFrame({"rank_lo": [0, 0, 0, 5, 5], "rank_hi": [5, 5, 5, 10, 10],
                      "presentations": [1.0, 10.0, 100.0, 10.0, 100.0],
                      "log_loss": [0.0, -1.0, -2.0, -0.5, -1.0]})  # fmt: skip
    g = lag.loss_gap(m).set_index("rank_lo")
    assert g.loc[5, "log_loss_gap"] == pytest.approx(np.mean([0.5, 1.0]))
    assert g.loc[5, "n_points"] == 2
    assert g.loc[5, "presentations_lo"] == 10.0 and g.loc[5, "presentations_hi"] == 100.0
    assert g.loc[0, "log_loss_gap"] == 0.0 and g.loc[0, "presentations_lo"] == 1.0


def test_matched_loss_with_no_rank_inside_the_edges_is_an_empty_table():
    cols = ["rank_lo", "rank_hi", "presentations", "log_loss", "n_ranks"]
    for edges in ([20, 30], None):
        steps = np.zeros(3) if edges is None else None  # never presented: no log-axis point
        m = lag.matched_loss(power_evals([0, 1], steps=steps), edges=edges)
        assert len(m) == 0 and list(m.columns) == cols
        assert len(lag.loss_gap(m)) == 0
