"""The fit grid as a config, and lag-aware scoring against a seed group's band."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from phenomjax.config import load_config
from phenomjax.errors import ConfigError
from phenomjax.phenom.fit import FitGridConfig, default_grid, grid_config
from phenomjax.phenom.scoring import (
    ScoreConfig,
    build_reference,
    lag_agreement,
    member_tables,
    score_members_lag,
    total_score,
)

EDGES = np.array([0, 2, 4])


def decay(run: str, taus, steps, rate, init=0.7, floor=0.1) -> pd.DataFrame:
    rows = []
    for k, tau in enumerate(taus):
        n = rate[k] * steps
        rows.append(pd.DataFrame({"run": run, "step": steps, "rank": k, "presentations": n,
                                  "loss": floor + (init - floor) * np.exp(-n / tau),
                                  "accuracy": 0.5}))  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def test_shipped_grids_load_and_set_overrides(tmp_path):
    g = default_grid()
    assert {o.name for o in g.optimizers} == {"adam", "sgd", "momentum", "adamw"}
    demo = default_grid("fit_demo")
    assert demo.grid.modes == ("stochastic",)
    path = tmp_path / "g.toml"
    path.write_text('[grid]\nw = [2]\n[[optimizers]]\nname = "adamw"\nweight_decay = [0.1, 1.0]\n')
    cfg = load_config(FitGridConfig, path, ["grid.w=[1,8]", "score.within=3"])
    assert cfg.grid.w == (1, 8) and cfg.score.within == 3
    assert [o.weight_decay for o in cfg.optimizers[0].configs()] == [0.1, 1.0]
    # fields an optimizer does not use do not multiply its members
    sgd = grid_config(cfg, optimizer="sgd", lrs=(1.0,)).optimizers[0]
    assert len(sgd.configs()) == 1 and sgd.configs()[0].weight_decay == 0.0
    with pytest.raises(ConfigError, match="optimizers"):
        load_config(FitGridConfig, path, ["optimizers=[]"])
    with pytest.raises(ConfigError, match="grid.seeds"):
        load_config(FitGridConfig, path, ["grid.seeds=0"])


def test_reference_band_and_lag_against_numpy():
    steps = np.concatenate(([0], np.geomspace(1, 5000, 40).round()))
    rate = np.array([1.0, 0.8, 0.2, 0.1])
    runs = [decay(f"s{i}", [50, 60, 50 * f, 60 * f], steps, rate) for i, f in enumerate((2, 4))]
    ev = pd.concat(runs, ignore_index=True)
    ev.loc[ev["run"] == "s1", "loss"] *= 1.05  # a seed offset: sigma of log loss = ln(1.05)/sqrt2
    floors = {f"s{i}": np.full(4, 0.1) for i in range(2)}
    cfg = ScoreConfig(noise_floor=1e-6, lag_floor=1e-6)
    ref = build_reference(ev, floors, EDGES, cfg)
    # numpy: std (ddof 1) of two values a, a + ln 1.05 is ln(1.05) / sqrt(2), at every step
    assert ref.sigma[(0, 2)] == pytest.approx(np.log(1.05) / np.sqrt(2), rel=1e-6)
    assert ref.n_runs == 2 and ref.noise.startswith("seeds")
    # the lag ratio of bin 2-3 is the median crossing over the top bin's; analytic: e = exp(-n /
    # tau) reaches l at n = tau ln(1/l), so the ratio of medians is (55 f) / 55 = f per seed
    # (the 5% loss offset moves the floor-normalized excess a little: tolerance 10%)
    lag = ref.lag[(ref.lag["rank_lo"] == 2)]
    np.testing.assert_allclose(np.exp(lag["log_ratio"]), np.sqrt(2 * 4), rtol=0.1)
    sd = np.std(np.log([2.0, 4.0]), ddof=1)
    np.testing.assert_allclose(lag["log_ratio_sd"], sd, rtol=0.15)
    fit_lag = lag[["level", "rank_lo", "rank_hi"]].assign(lag_ratio=1 / np.sqrt(8))
    fit_lag = pd.concat([fit_lag, fit_lag.assign(rank_lo=0, rank_hi=2, lag_ratio=1.0)])
    score, rows = lag_agreement(fit_lag, ref, cfg)
    assert rows and not any(r["sign_agrees"] for r in rows)  # a reversed lag: wrong sign
    z = [abs(np.log(1 / np.sqrt(8)) - r.log_ratio) / r.log_ratio_sd for r in lag.itertuples()]
    assert score == pytest.approx(np.sqrt(np.mean(np.square(z))), rel=1e-9)


def test_members_are_ranked_by_band_and_lag():
    """score_members_lag on synthetic members (fast; the sweep path without training): a member
    whose curves are a seed's own scores within the band with the reference's lag; one whose
    rare bin learns faster (a reversed lag) has a larger lag score and total, and the pooled
    RMSE alone would not separate them as much. Members are read through member_tables, as the
    fitter reads a sweep."""
    steps = np.concatenate(([0], np.geomspace(1, 5000, 40).round()))
    rate = np.array([1.0, 0.8, 0.2, 0.1])
    runs = [decay(f"s{i}", [50, 60, 50 * f, 60 * f], steps, rate) for i, f in enumerate((2, 3))]
    ev = pd.concat(runs, ignore_index=True)
    floors = {f"s{i}": np.full(4, 0.1) for i in range(2)}
    cfg = ScoreConfig(noise_floor=0.02, lag_floor=0.05, shift=False)
    ref = build_reference(ev, floors, EDGES, cfg)
    same = decay("m", [50, 60, 50 * 2.5, 60 * 2.5], steps, rate).assign(member=0)
    reversed_ = decay("m", [50, 60, 50 / 2.5, 60 / 2.5], steps, rate).assign(member=1)
    rows = pd.concat([same, reversed_], ignore_index=True).drop(columns="run")
    binned_m, lag_m = member_tables(lambda ids: rows[rows.member.isin(ids)], [0, 1], EDGES,
                                    np.full(4, 0.1), cfg.levels)  # fmt: skip
    got = score_members_lag(binned_m, lag_m, ref, cfg).set_index("member")
    assert got.loc[0, "lag_score"] < 1.0 < got.loc[1, "lag_score"]
    assert got.loc[0, "total"] < got.loc[1, "total"]
    # the lag columns are the bin ratios at the middle level: ~2.5 for the seed-like member,
    # ~1/2.5 for the reversed one (analytic crossings of the exponential decays)
    assert got.loc[0, "lag_2"] == pytest.approx(2.5, rel=0.1)
    assert got.loc[1, "lag_2"] == pytest.approx(1 / 2.5, rel=0.1)
    assert got.loc[0, "total"] == pytest.approx(total_score(got.loc[0, "band_score"],
                                                            got.loc[0, "lag_score"]))  # fmt: skip
