"""Seed groups (analysis/groups.py): the group folder, the one seed band and the one lag summary,
against NumPy loops and their properties."""

from __future__ import annotations

import json

import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pytest
from fixtures.run_dirs import make_run_dir
from hypothesis import given, settings

from phenomjax.analysis import bin_by_rank, lag, plots
from phenomjax.analysis.groups import (
    LAG_SUMMARY,
    band,
    check_group,
    expand_runs,
    lag_summary,
    load_group,
    seed_band,
    seed_runs,
)
from phenomjax.analysis.settings import PlotSettings
from phenomjax.errors import DataError


def numpy_band(values: np.ndarray, log: bool) -> dict:
    """The reference of one key's band: finite (and for log, positive) values only."""
    v = values[np.isfinite(values) & ((values > 0) if log else True)]
    x = np.log(v) if log else v
    mean = (np.exp(x.mean()) if log else x.mean()) if len(v) else np.nan
    std = x.std(ddof=1) if len(v) > 1 else np.nan
    return {"mean": mean, "std": std, "lo": v.min() if len(v) else np.nan,
            "hi": v.max() if len(v) else np.nan, "n": len(v)}  # fmt: skip


@st.composite
def group_tables(draw):
    n_runs, n_keys = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    v = rng.lognormal(0.0, 1.0, n_runs * n_keys)
    v[rng.random(len(v)) < 0.2] = np.nan
    v[rng.random(len(v)) < 0.05] = 0.0  # a ratio of 0: no log, left out of the log band
    return pd.DataFrame({"run": np.repeat([f"s{i}" for i in range(n_runs)], n_keys),
                         "key": np.tile(np.arange(n_keys), n_runs), "v": v,
                         "x": rng.normal(size=n_runs * n_keys)})  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(group_tables(), st.booleans())
def test_seed_band_matches_numpy(t, log):
    b = seed_band(t, ["v"], ["key"], log=["v"] if log else [], means=["x"]).set_index("key")
    for key, g in t.groupby("key"):
        want = numpy_band(g["v"].to_numpy(), log)
        row = b.loc[key]
        for k in ("mean", "std", "lo", "hi"):
            np.testing.assert_allclose(row[f"v_{k}"], want[k], rtol=1e-12, equal_nan=True)
        assert row["v_n"] == want["n"] and row["n_runs"] == g["run"].nunique()
        assert row["x"] == pytest.approx(g["x"].mean())
        if want["n"]:
            assert row["v_lo"] <= row["v_mean"] * (1 + 1e-12)
            assert row["v_mean"] <= row["v_hi"] * (1 + 1e-12)


def test_seed_band_of_two_runs_has_a_sample_std_and_refuses_a_table_without_runs():
    t = pd.DataFrame({"run": ["a", "b", "a", "b"], "k": [0, 0, 1, 1],
                      "v": [1.0, 3.0, 2.0, np.nan]})  # fmt: skip
    b = seed_band(t, ["v"], ["k"]).set_index("k")
    assert b.loc[0, "v_std"] == pytest.approx(np.std([1.0, 3.0], ddof=1))
    assert b.loc[0, "v_mean"] == 2.0 and b.loc[0, "v_n"] == 2 and b.loc[0, "n_runs"] == 2
    assert (b.loc[0, "v_lo"], b.loc[0, "v_hi"]) == (1.0, 3.0)
    assert np.isnan(b.loc[1, "v_std"]) and b.loc[1, "v_mean"] == 2.0 and b.loc[1, "v_n"] == 1
    with pytest.raises(DataError, match="lacks column 'run'"):
        seed_band(t.drop(columns="run"), ["v"], ["k"])
    with pytest.raises(DataError, match=r"lacks columns \['w'\]"):
        seed_band(t, ["w"], ["k"])


def test_group_lag_is_the_geometric_mean_over_seeds():
    rng = np.random.default_rng(2)
    rows = []
    for r in range(3):
        steps = np.arange(0, 300, 5)
        for k, (rate, tau) in enumerate(zip(rng.uniform(0.5, 20, 12), rng.uniform(5, 200, 12),
                                            strict=True)):  # fmt: skip
            n = rate * steps
            rows.append(
                pd.DataFrame(
                    {
                        "step": steps,
                        "rank": k,
                        "presentations": n,
                        "run": f"s{r}",
                        "loss": 0.1 + 0.6 * np.exp(-n / tau),
                        "floor": 0.1,
                    }
                )
            )
    per_run = lag.lag_table(pd.concat(rows, ignore_index=True))
    g = lag.group_lag(per_run)
    for (level, lo), x in per_run.groupby(["level", "rank_lo"]):
        v = x["lag_ratio"].to_numpy()
        row = g[(g.level == level) & (g.rank_lo == lo)].iloc[0]
        s = lag_summary(v)
        assert row["n_runs"] == 3 and row["lag_ratio_n"] == s.n
        if s.n:
            ok = v[np.isfinite(v) & (v > 0)]
            assert np.isclose(row["lag_ratio_mean"], np.exp(np.log(ok).mean()))
            assert np.isclose(row["lag_ratio_mean"], s.mean)
            assert (row["lag_ratio_lo"], row["lag_ratio_hi"]) == (s.lo, s.hi)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(1e-3, 1e3), min_size=1, max_size=8), st.floats(0.1, 10.0))
def test_lag_summary_properties(ratios, c):
    s = lag_summary(ratios)
    assert s.n == len(ratios) and s.lo == min(ratios) and s.hi == max(ratios)
    assert s.lo * (1 - 1e-9) <= s.mean <= s.hi * (1 + 1e-9)
    assert lag_summary([c * r for r in ratios]).mean == pytest.approx(c * s.mean, rel=1e-9)
    assert lag_summary([1 / r for r in ratios]).mean == pytest.approx(1 / s.mean, rel=1e-9)


def test_lag_summary_text_one_seed_is_the_value_alone():
    assert str(lag_summary([0.53, 3.29, 1.0])) == "1.20 [0.53, 3.29]"
    assert str(lag_summary([0.83])) == "0.83"  # no range from one seed
    assert str(lag_summary([np.nan, 0.0, np.inf])) == "-"
    assert str(lag_summary([0.83, np.nan])) == "0.83"  # one seed reached it
    assert LAG_SUMMARY.format(n=4) == "geo. mean [min, max] over 4 seeds"


def test_expand_runs_reads_a_group_folder_in_seed_order(tmp_path):
    group = tmp_path / "seeds"
    for s in (10, 2, 0):
        make_run_dir(group / f"seed-{s}", seed=s, steps=(0, 4))
    (group / "seed-7").mkdir()  # no manifest: not a run
    (group / "notes").mkdir()
    single = make_run_dir(tmp_path / "one", steps=(0, 4)).path
    assert seed_runs(group) == [group / "seed-0", group / "seed-2", group / "seed-10"]
    assert seed_runs(single) == [] and seed_runs(tmp_path / "missing") == []
    assert expand_runs([group, single]) == [*seed_runs(group), single]
    assert expand_runs([tmp_path / "nowhere.pkl"]) == [tmp_path / "nowhere.pkl"]
    t = load_group([group])
    assert set(t["run"]) == {"seed-0", "seed-2", "seed-10"} and set(t["seed"]) == {0, 2, 10}


def test_check_group_names_the_first_field_that_differs(tmp_path):
    for seed in (3, 4):
        make_run_dir(tmp_path / f"s{seed}", seed=seed, steps=(0, 4, 16))
    make_run_dir(tmp_path / "other", seed=5, lr=0.5, steps=(0, 4, 16))
    t = load_group([tmp_path / "s3", tmp_path / "s4"])
    assert set(t["run"]) == {"s3", "s4"} and len(t) == 2 * 3 * 16
    with pytest.raises(DataError, match=r"other: optimizer\.lr \(it has 0\.5, .*s3 has 0\.01\)"):
        load_group([tmp_path / "s3", tmp_path / "other"])
    with pytest.raises(DataError, match="K 8 differs"):
        check_group([{"K": 16, "name": "a"}, {"K": 8, "name": "b"}])
    m = json.loads((tmp_path / "s3" / "manifest.json").read_text())
    check_group(
        [m, {**m, "seed": 9, "config": {**m["config"], "data": {**m["config"]["data"], "seed": 9}}}]
    )


def test_band_of_curves_is_mean_and_min_max_over_runs(tmp_path):
    for seed in (3, 4):
        make_run_dir(tmp_path / f"s{seed}", seed=seed, steps=(0, 4, 16, 64, 256))
    t = load_group([tmp_path / "s3", tmp_path / "s4"])
    curves = pd.concat([plots.curves_from_bins(bin_by_rank(g)).assign(run=r)
                        for r, g in t.groupby("run")], ignore_index=True)  # fmt: skip
    b = band(curves)
    x = curves[(curves.step == 64) & (curves.rank_lo == 0)]
    row = b[(b.step == 64) & (b.rank_lo == 0)].iloc[0]
    assert row["loss"] == pytest.approx(x["loss"].mean()) and row["loss_lo"] == x["loss"].min()
    assert row["loss_hi"] == x["loss"].max() and row["n_runs"] == 2
    assert row["presentations"] == pytest.approx(x["presentations"].mean())
    assert row["accuracy_std"] == pytest.approx(x["accuracy"].std(ddof=1))
    d = plots.metric_figure(b, "loss", plot=PlotSettings(), title="t", keep=True)
    assert len(d.figure.axes[0].collections) >= 1  # the fill_between bands


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["seed-{}", "seed{}", "seed-{}x", "s-{}", "seed-0{}"]),
                          st.integers(0, 10**6), st.booleans()), max_size=8),
       st.booleans())  # fmt: skip
def test_seed_runs_are_exactly_the_seed_folders_with_a_manifest(entries, is_run):
    import re
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "g"
        root.mkdir()
        if is_run:
            (root / "manifest.json").write_text("{}")
        for pattern, n, manifest in entries:
            sub = root / pattern.format(n)
            sub.mkdir(exist_ok=True)
            if manifest:
                (sub / "manifest.json").write_text("{}")
        # the reference: a full match of seed-<digits> holding a manifest, by seed then name
        want = sorted(
            (int(p.name[5:]), p.name)
            for p in root.iterdir()
            if re.fullmatch(r"seed-\d+", p.name) and (p / "manifest.json").is_file()
        )
        got = seed_runs(root)
        if is_run:
            assert got == []  # a run is itself, never a group
        else:
            assert [p.name for p in got] == [name for _, name in want]
            assert expand_runs([root]) == (got or [root])
