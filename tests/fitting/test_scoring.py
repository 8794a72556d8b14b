"""fitting.scoring: score_curves against a NumPy loop reference, the reference's noise and lag
band against NumPy, the seed band's columns (hypothesis), lag verdicts, and members ranked by
band and lag."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phenomjax.analysis.binning import binned
from phenomjax.analysis.lag import bin_lag, rank_crossings
from phenomjax.fitting.scoring import (
    ScoreConfig,
    build_reference,
    lag_side,
    lag_verdict,
    noise_text,
    score_curves,
    score_member,
    seed_band,
    total_score,
)

from .curves import EDGES, curves, floors, two_bins


def _curve_table(x, loss, acc, lo=0, hi=5):
    n = len(x)
    return pd.DataFrame(
        {"step": np.arange(n), "rank_lo": lo, "rank_hi": hi, "presentations": x, "loss": loss,
         "accuracy": acc}
    )  # fmt: skip


def _naive_score(ex, ey, fx, fy, s, ea=None, fa=None):
    """Loop reference: RMSE of log-loss (and of accuracy, when given) at the empirical points
    inside the shifted fit range, the model read at n / s; (loss rmse, accuracy rmse, n)."""
    err, aerr = [], []
    for i, (x, y) in enumerate(zip(ex, ey, strict=True)):
        q = x / s
        if fx.min() <= q <= fx.max():
            j = np.searchsorted(fx, q, side="right") - 1  # linear in log-presentations, by hand
            j = min(j, len(fx) - 2)
            t = (np.log(q) - np.log(fx[j])) / (np.log(fx[j + 1]) - np.log(fx[j]))
            err.append((1 - t) * np.log(fy[j]) + t * np.log(fy[j + 1]) - np.log(y))
            if ea is not None:
                aerr.append((1 - t) * fa[j] + t * fa[j + 1] - ea[i])
    n = len(err)
    if n == 0:
        return np.inf, np.inf, 0
    acc = np.sqrt(np.mean(np.square(aerr))) if aerr else np.nan
    return np.sqrt(np.mean(np.square(err))), acc, n


_POINT = st.tuples(st.floats(0.05, 0.7), st.floats(0.0, 1.0))  # (loss, accuracy)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(_POINT, min_size=4, max_size=9),
    st.lists(_POINT, min_size=4, max_size=9),
    st.floats(0.05, 1.0),
    st.sampled_from([0.0, 0.5, 0.9]),
)
def test_score_matches_naive_reference(emp_pts, fit_pts, logs, min_overlap):
    (ey, ea), (fy, fa) = (np.asarray(list(zip(*p, strict=True))) for p in (emp_pts, fit_pts))
    ex = np.logspace(0, 3, len(ey))
    fx = np.logspace(-0.5, 3.5, len(fy))
    emp, fit = _curve_table(ex, ey, ea), _curve_table(fx, fy, fa)
    got = score_curves(emp, fit, ScoreConfig(shift=False, min_overlap=0.0))
    want, want_acc, n = _naive_score(ex, ey, fx, fy, 1.0, ea, fa)
    assert got.n_points == n and got.rmse == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert got.accuracy_rmse == pytest.approx(want_acc, rel=1e-9, abs=1e-12)
    # the shift search on a grid {1/s, 1, s}: the exact minimiser among the factors that keep
    # min_overlap of the points matched at 1
    s = float(np.exp(logs))
    best = score_curves(emp, fit, ScoreConfig(shift_range=s, shift_points=3,
                                              min_overlap=min_overlap))  # fmt: skip
    ref = {g: _naive_score(ex, ey, fx, fy, g, ea, fa) for g in (1 / s, 1.0, s)}
    allowed = {g: r for g, r in ref.items() if r[2] >= max(1, min_overlap * n)}
    m = min(r[0] for r in allowed.values())
    ties = [g for g, r in allowed.items() if r[0] <= m + 1e-9 * (1 + m)]  # equal scores
    g = next(g for g in ties if best.shift == pytest.approx(g, rel=1e-9))
    assert best.rmse == pytest.approx(ref[g][0], rel=1e-9, abs=1e-12)
    assert best.accuracy_rmse == pytest.approx(ref[g][1], rel=1e-9, abs=1e-12)
    assert best.n_points == ref[g][2] and best.rmse_unshifted == pytest.approx(want)


def test_min_overlap_keeps_shifts_that_match_most_points():
    """A fit that agrees only early: sliding it (large s) drops the early points and wins on
    the rest. min_overlap = 0.9 refuses that shift; without it the search would take it."""
    x = np.logspace(0, 3, 20)
    fit_loss = np.where(x <= 10, 0.5, 0.5 + 0.4 * np.log10(x / 10))
    emp = _curve_table(x, np.full(20, 0.5), np.full(20, 0.8))
    fit = _curve_table(x, fit_loss, np.full(20, 0.8))
    cfg = ScoreConfig(shift_range=3.0, shift_points=41, min_overlap=0.9)
    got = score_curves(emp, fit, cfg)
    ref = {g: _naive_score(x, np.full(20, 0.5), x, fit_loss, g) for g in np.exp(cfg.grid())}
    n1 = ref[1.0][2] if 1.0 in ref else 20
    allowed = {g: r for g, r in ref.items() if r[2] >= 0.9 * n1}
    g_allowed = min(allowed, key=lambda g: allowed[g][0])
    g_any = min(ref, key=lambda g: ref[g][0])
    assert g_any > g_allowed  # the guard changes the answer here
    assert got.shift == pytest.approx(g_allowed, rel=1e-9)
    assert got.n_points >= 0.9 * n1 and got.rmse == pytest.approx(allowed[g_allowed][0])


def test_shift_recovers_a_known_presentation_scale():
    x = np.logspace(0, 4, 30)
    curve = lambda n: 0.05 + 0.65 / (1.0 + n / 100.0)  # noqa: E731
    emp = _curve_table(x, curve(x), np.full(30, 0.8))
    fit = _curve_table(x, curve(x * 2.0), np.full(30, 0.8))  # the model learns 2x faster
    got = score_curves(emp, fit, ScoreConfig(shift_range=4.0, shift_points=201))
    assert got.shift == pytest.approx(2.0, rel=0.02)
    assert got.rmse < 0.01 < got.rmse_unshifted


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.one_of(st.floats(-3, 3), st.just(float("nan"))), min_size=1,
                         max_size=4), min_size=1, max_size=5))  # fmt: skip
def test_seed_band_columns_match_numpy(groups):
    """<v>_mean/_std/_lo/_hi/_n over the finite values of each key (the one convention)."""
    rows = [{"key": i, "run": j, "v": v} for i, g in enumerate(groups) for j, v in enumerate(g)]
    band = seed_band(pd.DataFrame(rows), ["v"], ["key"]).set_index("key")
    for i, g in enumerate(groups):
        x = np.asarray([v for v in g if np.isfinite(v)])
        if not len(x):
            assert i not in band.index
            continue
        r = band.loc[i]
        assert r["v_n"] == len(x) and r["v_lo"] == x.min() and r["v_hi"] == x.max()
        assert r["v_mean"] == pytest.approx(x.mean(), abs=1e-12)
        if len(x) > 1:
            assert r["v_std"] == pytest.approx(x.std(ddof=1), abs=1e-12)
        else:
            assert np.isnan(r["v_std"])


def test_reference_band_and_lag_against_numpy():
    """Two seeds, bin 5-9 lagging by 2 and 4 (tau ratio), the second seed 5 % above in loss."""
    ev = pd.concat([two_bins(50, 2, run="s0"), two_bins(50, 4, run="s1")], ignore_index=True)
    ev.loc[ev["run"] == "s1", "loss"] *= 1.05  # sigma of log loss = ln(1.05) / sqrt(2)
    cfg = ScoreConfig(noise_floor=1e-6, lag_floor=1e-6)
    ref = build_reference(ev, {"s0": floors(), "s1": floors()}, EDGES, cfg)
    assert ref.sigma[(0, 5)] == pytest.approx(np.log(1.05) / np.sqrt(2), rel=1e-6)
    assert ref.n_runs == 2 and ref.noise == noise_text(2) and "seed band" in ref.noise
    lag = ref.compared()
    lag = lag[lag["rank_lo"] == 5]
    # the 5 % offset moves the floor-normalized excess a little: tolerance 10 %
    np.testing.assert_allclose(lag["ratio_mean"], np.sqrt(2 * 4), rtol=0.1)  # geometric mean
    np.testing.assert_allclose(lag["ratio_lo"], 2, rtol=0.1)
    np.testing.assert_allclose(lag["ratio_hi"], 4, rtol=0.1)
    np.testing.assert_allclose(lag["log_ratio_sd"], np.std(np.log([2.0, 4.0]), ddof=1), rtol=0.15)
    assert (lag["log_ratio_n"] == 2).all()
    # a member with the reversed lag: wrong sign (the whole seed range is above 1) at each level
    member = two_bins(50, 1 / np.sqrt(8))
    s = score_member(binned(member, EDGES), bin_lag(rank_crossings(member, cfg.levels,
                                                                   floor=floors()), EDGES),
                     ref, cfg)  # fmt: skip
    assert len(s.lag) == 3 and all(r.verdict == "wrong sign" for r in s.lag)
    z = [abs(np.log(r.ratio_fit) - np.log(r.ratio_ref)) / r.log_ratio_sd for r in s.lag]
    np.testing.assert_allclose([r.z_lag for r in s.lag], np.minimum(z, cfg.censored_z))
    assert s.lag_score == pytest.approx(np.sqrt(np.mean(np.square([r.z_lag for r in s.lag]))))
    assert s.total == pytest.approx(total_score(s.band_score, s.lag_score))


def test_one_run_noise_is_the_spread_over_ranks():
    """One run: sigma is the standard error of a bin's mean log loss over its ranks (pooled over
    evaluations, NumPy), and the report's words say so, not "seed band"."""
    taus = [40, 50, 60, 45, 55, 90, 100, 110, 95, 105]
    ev = curves(taus)
    ref = build_reference(ev, {None: floors()}, EDGES, ScoreConfig(noise_floor=1e-9))
    assert ref.n_runs == 1 and "seed" not in ref.noise.split(";")[0]
    assert ref.noise.startswith("spread over a bin's ranks (one run)")
    e = ev[(ev["presentations"] > 0) & (ev["rank"] < 5)]
    var = e.groupby("step")["loss"].apply(lambda x: np.var(np.log(x), ddof=1) / len(x))
    assert ref.sigma[(0, 5)] == pytest.approx(np.sqrt(var.mean()), rel=1e-9)


@pytest.mark.parametrize(
    ("fit", "lo", "hi", "z", "want"),
    [
        (2.0, 1.5, 2.5, 0.5, "agrees"),
        (0.5, 1.5, 2.5, 0.5, "wrong sign"),  # the whole seed range lags, the fit leads
        (0.6, 0.68, 1.53, 3.0, "too far"),  # a range straddling 1: never "wrong sign"
        (1.4, 0.5, 0.9, 1.0, "wrong sign"),
        (float("nan"), 1.5, 2.5, float("nan"), "never reaches"),
        (3.0, 1.2, 1.2, 5.0, "too far"),  # one run: its value's side of 1 is the sign
    ],
)
def test_lag_verdict_is_decided_in_one_place(fit, lo, hi, z, want):
    assert lag_verdict(fit, lo, hi, z, within=2.0) == want
    assert lag_side(0.68, 1.53) == 0 and lag_side(1.1, 2) == 1 and lag_side(0.2, 0.9) == -1


def test_members_are_ranked_by_band_and_lag():
    """A member whose curves are a seed's own scores within the band with the reference's lag;
    one whose rare bin learns faster (a reversed lag) has a larger lag score and total."""
    ev = pd.concat([two_bins(50, 2, run="s0"), two_bins(50, 3, run="s1")], ignore_index=True)
    cfg = ScoreConfig(noise_floor=0.02, lag_floor=0.05, shift=False)
    ref = build_reference(ev, {"s0": floors(), "s1": floors()}, EDGES, cfg)
    got = {}
    for name, factor in (("same", 2.5), ("reversed", 1 / 2.5)):
        m = two_bins(50, factor)
        lag = bin_lag(rank_crossings(m, cfg.levels, floor=floors()), EDGES)
        got[name] = score_member(binned(m, EDGES), lag, ref, cfg)
    assert got["same"].lag_score < 1.0 < got["reversed"].lag_score
    assert got["same"].total < got["reversed"].total
    assert dict(got["same"].mid_lag)[5] == pytest.approx(2.5, rel=0.05)
    assert dict(got["reversed"].mid_lag)[5] == pytest.approx(1 / 2.5, rel=0.05)
    # a member that matches no point scores inf (and ranks last), its lag still read
    far = two_bins(50, 2.5).assign(presentations=lambda d: d["presentations"] * 1e-9)
    s = score_member(binned(far, EDGES), None, ref, cfg)
    assert s.total == np.inf and s.bins == () and s.lag == ()
