"""The lag measure (analysis/lag.py) against analytic crossings, a loop reference and its
properties, and its summaries over the seeds of a group."""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings

from phenomjax.analysis import lag
from phenomjax.errors import DataError

LEVELS = (0.75, 0.5, 0.25)


def decay_evals(rates, taus, steps, init=0.7, floor=0.1) -> pd.DataFrame:
    """Rank k seen rates[k] times per step; loss = floor + (init - floor) exp(-n / taus[k]),
    so e reaches level l at exactly n = tau ln(1 / l)."""
    rows = []
    for k, (rate, tau) in enumerate(zip(rates, taus, strict=True)):
        n = rate * np.asarray(steps, dtype=np.float64)
        loss = floor + (init - floor) * np.exp(-n / tau)
        rows.append(pd.DataFrame({"step": steps, "rank": k, "presentations": n, "loss": loss,
                                  "floor": floor}))  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def ref_crossing(n: np.ndarray, loss: np.ndarray, floor: float, level: float) -> float:
    """One rank, in plain loops: the reference for rank_crossings."""
    ok = np.flatnonzero(np.isfinite(loss))
    if len(ok) == 0 or loss[ok[0]] - floor <= 0:
        return float("nan")
    first = ok[0]
    e = (loss - floor) / (loss[first] - floor)
    for i in range(first + 1, len(n)):
        if e[i] <= level:
            n0, n1, e0, e1 = n[i - 1], n[i], e[i - 1], e[i]
            if not np.isfinite(e0):
                return float(n1)
            frac = (e0 - level) / (e0 - e1)
            if n0 > 0 and n1 > n0:
                return float(np.exp(np.log(n0) + frac * (np.log(n1) - np.log(n0))))
            if n0 == 0 and n1 > 0:
                return float(frac * n1)
            return float(n1)
    return float("nan")


def test_crossings_match_the_analytic_decay():
    steps = np.unique(np.round(np.geomspace(1, 20000, 400)).astype(int))
    steps = np.concatenate(([0], steps))
    K = 20
    rates = 1.0 / (np.arange(K) + 1)  # Zipf-like: rank k seen 1/(k+1) times a step
    taus = 50.0 * (1 + np.arange(K) / 5)  # rarer ranks need more presentations
    c = lag.rank_crossings(decay_evals(rates, taus, steps))
    for level in LEVELS:
        got = c[c.level == level].sort_values("rank")["presentations"].to_numpy()
        np.testing.assert_allclose(got, taus * np.log(1 / level), rtol=0.01)
    table = lag.bin_lag(c)  # default edges for K = 20: 0-4, 5-9, 10-19
    assert table[["rank_lo", "rank_hi"]].drop_duplicates().to_numpy().tolist() == [
        [0, 5], [5, 10], [10, 20],
    ]  # fmt: skip
    for level in LEVELS:
        t = table[table.level == level].set_index("rank_lo")
        med = {lo: np.median(taus[lo:hi]) * np.log(1 / level) for lo, hi in ((0, 5), (5, 10),
                                                                            (10, 20))}  # fmt: skip
        for lo in (0, 5, 10):
            assert np.isclose(t.loc[lo, "median_presentations"], med[lo], rtol=0.01)
            assert np.isclose(t.loc[lo, "lag_ratio"], med[lo] / med[0], rtol=0.02)
        assert (t["n_reached"] == t["n_ranks"]).all()
    # every rank on one curve of presentations: no lag, whatever their frequencies
    same = lag.lag_table(decay_evals(rates, np.full(K, 50.0), steps))
    np.testing.assert_allclose(same["lag_ratio"], 1.0, rtol=0.01)


def test_crossings_match_a_loop_reference_on_noisy_curves():
    rng = np.random.default_rng(1)
    K, S = 30, 14
    steps = np.arange(S) * 10
    counts = np.cumsum(rng.poisson(rng.uniform(0, 3, K)[:, None], (K, S)), axis=1)
    counts[:, 0] = 0
    counts[:, 3] = counts[:, 2]  # a count that does not move between evaluations
    floor = rng.uniform(0.0, 0.4, K)
    loss = 0.7 * np.exp(-counts / rng.uniform(2, 20, K)[:, None]) + rng.normal(0, 0.05, (K, S))
    loss = np.maximum(loss, 0.01)
    loss[3, 5] = np.nan  # a missing value just before a crossing is read at the later count
    loss[4, 0] = np.nan  # the first finite evaluation is the reference
    floor[7] = 0.9  # initial loss below the floor: undefined
    ev = pd.DataFrame({"step": np.tile(steps, K), "rank": np.repeat(np.arange(K), S),
                       "presentations": counts.ravel(), "loss": loss.ravel(),
                       "floor": np.repeat(floor, S)})  # fmt: skip
    c = lag.rank_crossings(ev.sample(frac=1.0, random_state=0), LEVELS)  # any row order
    for level in LEVELS:
        got = c[c.level == level].sort_values("rank")
        want = [ref_crossing(counts[k], loss[k], floor[k], level) for k in range(K)]
        np.testing.assert_allclose(got["presentations"], want, rtol=1e-12)
        assert (got["reached"].to_numpy() == np.isfinite(want)).all()
    assert not c[c["rank"] == 7]["defined"].any()
    # with the floor passed per rank instead of a column: the same
    c2 = lag.rank_crossings(ev.drop(columns="floor"), LEVELS, floor=floor)
    np.testing.assert_allclose(c2["presentations"], c["presentations"], rtol=1e-12)


def test_bin_median_counts_censored_ranks_as_infinite():
    def crossings(pres):
        pres = np.asarray(pres, dtype=np.float64)
        return pd.DataFrame({"rank": np.arange(len(pres)), "level": 0.5, "presentations": pres,
                             "reached": np.isfinite(pres), "defined": True})  # fmt: skip

    nan = np.nan
    # bin 0-4 all reach (median 30); bin 5-9: 3 of 5 reach -> median is the 3rd smallest
    t = lag.bin_lag(crossings([10, 20, 30, 40, 50, 60, 90, 120, nan, nan]), K=10)
    assert t["median_presentations"].tolist() == [30.0, 120.0]
    assert t["n_reached"].tolist() == [5, 3] and t["lag_ratio"].tolist() == [1.0, 4.0]
    # 2 of 5 reach: most do not, the bin has no value but its count is kept
    t = lag.bin_lag(crossings([10, 20, 30, 40, 50, 60, 90, nan, nan, nan]), K=10)
    assert np.isnan(t["median_presentations"].iloc[1]) and t["n_reached"].iloc[1] == 2
    assert np.isnan(t["lag_ratio"].iloc[1])


curve_params = st.lists(
    st.tuples(st.floats(0.05, 50), st.floats(1, 500)), min_size=10, max_size=25
)  # (rate per step, tau) per rank


@settings(max_examples=40, deadline=None)
@given(params=curve_params, c=st.floats(0.01, 100), stop=st.floats(0.2, 5))
def test_lag_properties(params, c, stop):
    rates, taus = (np.array(v) for v in zip(*params, strict=True))
    steps = np.arange(0, 400, 7)
    ev = decay_evals(rates, taus, steps)
    cr = lag.rank_crossings(ev)
    wide = cr.pivot(index="rank", columns="level", values="presentations")
    # monotone curves: a lower level is reached later (or not at all)
    both = wide[[0.75, 0.5]].dropna()
    assert (both[0.75] <= both[0.5] * (1 + 1e-9)).all()
    assert (wide[0.25].notna() <= wide[0.5].notna()).all()
    # scaling presentations by c scales every crossing by c and leaves the lag ratios alone
    scaled = lag.rank_crossings(ev.assign(presentations=ev["presentations"] * c))
    np.testing.assert_allclose(scaled["presentations"], cr["presentations"] * c, rtol=1e-9)
    t, ts = lag.bin_lag(cr), lag.bin_lag(scaled)
    np.testing.assert_allclose(ts["lag_ratio"], t["lag_ratio"], rtol=1e-9)
    # censoring: cut the curves early; ranks whose e never reached the level are censored
    cut = lag.rank_crossings(ev[ev.step <= steps[int(stop * 10)]])
    e_last = cut["final_excess"]
    assert ((~cut["reached"]) == (e_last > cut["level"])).all()
    assert (lag.bin_lag(cut)["n_reached"] <= t["n_reached"]).all()


def test_matched_loss_and_gap_on_power_laws():
    # loss = a_k n^-1/2 is a line in log-log, so the interpolation is exact: the gap of a bin
    # is the mean of log a over its ranks minus the top bin's
    K = 20
    a = np.linspace(0.5, 2.0, K)
    steps = np.arange(0, 200)
    rows = [pd.DataFrame({"step": steps, "rank": k, "presentations": (k % 3 + 1) * steps,
                          "loss": a[k] * np.maximum((k % 3 + 1) * steps, 1) ** -0.5})
            for k in range(K)]  # fmt: skip
    ev = pd.concat(rows, ignore_index=True)
    m = lag.matched_loss(ev, per_decade=4)
    q = np.log10(m["presentations"].to_numpy()) * 4
    assert np.allclose(q, np.round(q), atol=1e-6)  # the shared grid
    g = lag.loss_gap(m).set_index("rank_lo")
    top = np.log(a[:5]).mean()
    # where every rank of the bins covers the point, the mean gap is exact
    for lo, hi in ((5, 10), (10, 20)):
        sub = m[(m.rank_lo == lo) & (m.n_ranks == hi - lo)].set_index("presentations")
        ref = m[(m.rank_lo == 0) & (m.n_ranks == 5)].set_index("presentations")
        common = sub.index.intersection(ref.index)
        np.testing.assert_allclose(sub.loc[common, "log_loss"] - ref.loc[common, "log_loss"],
                                   np.log(a[lo:hi]).mean() - top, atol=1e-9)  # fmt: skip
        assert g.loc[lo, "log_loss_gap"] > 0
    assert g.loc[0, "log_loss_gap"] == 0.0


def test_bad_input_is_one_line():
    ev = decay_evals([1.0], [5.0], np.arange(5))
    with pytest.raises(DataError, match="lacks column 'loss'"):
        lag.rank_crossings(ev.drop(columns="loss"))
    with pytest.raises(DataError, match="levels: expected values in"):
        lag.rank_crossings(ev, levels=[1.5])
    with pytest.raises(DataError, match="per-position"):
        lag.rank_crossings(ev.assign(position=1))
    with pytest.raises(DataError, match="lacks column 'run'"):
        lag.group_lag(lag.lag_table(ev))


# -- paths a mutation run found unchecked: the band of the gaps, bins taken from the run's K,
# and explicit edges that leave some ranks out


def power_evals(ranks, steps=None, rate=None):
    """loss = 0.7 (1 + n)^-0.3 per rank, n = rate_r * step presentations."""
    steps = np.arange(0, 200, 10) if steps is None else steps
    rows = []
    for i, r in enumerate(ranks):
        n = (rate[i] if rate is not None else 1.0 + r) * steps
        rows.append(pd.DataFrame({"step": steps, "rank": r, "presentations": n,
                                  "loss": 0.7 * (1.0 + n) ** -0.3, "accuracy": 0.5}))  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def test_group_gap_is_the_seed_band_of_the_gaps():
    gap = pd.DataFrame({"run": ["a", "b", "a", "b"], "rank_lo": [0, 0, 5, 5],
                        "rank_hi": [5, 5, 10, 10],
                        "log_loss_gap": [0.0, 0.0, 0.2, 0.4]})  # fmt: skip
    g = lag.group_gap(gap).set_index("rank_lo")
    assert g.loc[5, "log_loss_gap_mean"] == pytest.approx(0.3)
    assert g.loc[5, "log_loss_gap_std"] == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert g.loc[5, "rank_hi"] == 10 and g.loc[0, "log_loss_gap_hi"] == 0.0


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
