"""The pre-registered discrepancy metric: log lag-ratio differences per level, the slope across
levels, bootstrap intervals over seeds, and the pass rule."""

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from phenomjax.analysis.discrepancy import LEVELS, agrees, discrepancy, slopes

BINS = ((0, 5), (5, 10), (10, 100))


def lag_rows(ratios: dict, seeds=(0,)) -> pd.DataFrame:
    """ratios: {(lo, hi): [per-seed list of 3 ratios]} (top bin added with ratio 1)."""
    rows = []
    for s_i, s in enumerate(seeds):
        for lv in LEVELS:
            rows.append({"seed": s, "rank_lo": 0, "rank_hi": 5, "level": lv, "lag_ratio": 1.0})
        for (lo, hi), per_seed in ratios.items():
            for lv, r in zip(LEVELS, per_seed[s_i], strict=True):
                rows.append({"seed": s, "rank_lo": lo, "rank_hi": hi, "level": lv,
                             "lag_ratio": r})  # fmt: skip
    return pd.DataFrame(rows)


def test_a_constant_factor_has_zero_slope_and_the_log_difference():
    t = lag_rows({(5, 10): [[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]]}, seeds=(0, 1))
    m = lag_rows({(5, 10): [[4.0, 4.0, 4.0]]})
    d = discrepancy(t, m).set_index("quantity")
    np.testing.assert_allclose(d.loc[["0.75", "0.5", "0.25"], "value"], np.log(2.0), rtol=1e-12)
    np.testing.assert_allclose(d.loc["slope", "value"], 0.0, atol=1e-12)
    assert d["compared"].all()


def test_slope_matches_numpy_polyfit():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 3))
    ref = [np.polyfit(-np.log(LEVELS), row, 1)[0] for row in x]
    np.testing.assert_allclose(slopes(x), ref, rtol=1e-10)


def test_a_level_one_seed_never_reaches_is_not_compared():
    t = lag_rows({(5, 10): [[1.5, 1.6, np.nan], [1.4, 1.7, 2.0]]}, seeds=(0, 1))
    m = lag_rows({(5, 10): [[1.5, 1.5, 1.5]]})
    d = discrepancy(t, m).set_index("quantity")
    assert not d.loc["0.25", "compared"] and np.isnan(d.loc["0.25", "value"])
    assert d.loc["0.75", "compared"]


def test_pass_rule_positive_and_negative_controls():
    t = lag_rows({(5, 10): [[1.6, 1.7, 1.8], [1.5, 1.9, 2.1], [1.7, 1.6, 1.9]]}, seeds=(0, 1, 2))
    planted = lag_rows({(5, 10): [[1.65, 1.75, 1.9]]})  # a constant-ish factor like the ref
    reversed_ = lag_rows({(5, 10): [[0.8, 0.85, 0.9]]})  # within x2 but rare ranks ahead
    too_big = lag_rows({(5, 10): [[4.0, 5.0, 6.0]]})
    assert agrees(discrepancy(t, planted))
    assert not agrees(discrepancy(t, reversed_))
    assert not agrees(discrepancy(t, too_big))


def test_a_straddling_transformer_range_asks_no_sign():
    t = lag_rows({(5, 10): [[0.8, 0.8, 0.8], [1.3, 1.3, 1.3]]}, seeds=(0, 1))
    m = lag_rows({(5, 10): [[0.9, 0.9, 0.9]]})
    assert agrees(discrepancy(t, m))


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(-1.5, 1.5), min_size=3, max_size=3),
    st.lists(st.floats(-1.5, 1.5), min_size=2, max_size=6),
    st.integers(0, 10**6),
)
def test_bootstrap_interval_brackets_the_point_estimate(model_logs, seed_shifts, seed):
    """value = mean(model) - mean(transformer), and lo <= value <= hi for every quantity."""
    n = len(seed_shifts)
    per_seed = [[float(np.exp(0.3 + s)), float(np.exp(0.4 + s)), float(np.exp(0.5 + s))]
                for s in seed_shifts]  # fmt: skip
    t = lag_rows({(5, 10): per_seed}, seeds=tuple(range(n)))
    m = lag_rows({(5, 10): [list(np.exp(model_logs))]})
    d = discrepancy(t, m, bootstrap=200, seed=seed).set_index("quantity")
    ref = np.log(np.asarray(per_seed))
    for j, q in enumerate(("0.75", "0.5", "0.25")):
        np.testing.assert_allclose(d.loc[q, "value"], model_logs[j] - ref[:, j].mean(), atol=1e-9)
    for _, r in d.iterrows():
        assert r["lo"] - 1e-9 <= r["value"] <= r["hi"] + 1e-9


def test_a_level_every_seed_reaches_but_the_model_never_does_fails_and_lags_are_the_refs():
    from phenomjax.analysis.discrepancy import transformer_lags

    t = lag_rows({(5, 10): [[1.6, 1.7, 1.8], [1.5, 1.9, 2.1]]}, seeds=(0, 1))
    m = lag_rows({(5, 10): [[1.65, 1.75, np.nan]]})
    d = discrepancy(t, m)
    assert not agrees(d)  # 25 % is reached by every transformer seed, never by the model
    assert transformer_lags(d) and transformer_lags(
        discrepancy(t, lag_rows({(5, 10): [[0.5] * 3]}))
    )
    straddle = lag_rows({(5, 10): [[0.8, 0.8, 0.8], [1.3, 1.3, 1.3]]}, seeds=(0, 1))
    assert not transformer_lags(discrepancy(straddle, m))
