"""scripts/results.py's regime section: the matched capacities per size, and a V1 that was not
fitted (its D_eff past map.max_D_eff) counted as neither passing nor failing."""

import math

import pandas as pd


def _tables(reg):
    reg.mkdir()
    lag = {"rank_lo": 5, "rank_hi": 9, "seed": 0}
    rows = []
    for regime, x in (("l1h1d8-K256", 0.27), ("l2h4d16-K256", 26.0)):
        for model in ("transformer", "fit-demo", "fit-v1"):
            for level, ratio in ((0.75, 1.5), (0.5, math.nan), (0.25, 0.8)):
                rows.append({"regime": regime, "x": x, "model": model, "level": level,
                             "ratio": ratio, **lag})  # fmt: skip
    pd.DataFrame(rows).to_csv(reg / "regime_lags.csv", index=False)
    cap = {"capacity_source": "table (lower bound)"}
    pd.DataFrame([
        {"regime": "l1h1d8-K256", "size": "l1h1d8", "x": 0.27, "model": "fit-demo",
         "transformer_lags": True, "agrees": False, "capacity_bits": 1041.0, **cap,
         "D_eff": math.nan, "v1_capacity_bits": math.nan, "D_eff_how": ""},
        {"regime": "l1h1d8-K256", "size": "l1h1d8", "x": 0.27, "model": "fit-v1",
         "transformer_lags": True, "agrees": True, "capacity_bits": 1041.0, **cap,
         "D_eff": 1035, "v1_capacity_bits": 1040.2, "D_eff_how": "measured"},
        {"regime": "l2h4d16-K256", "size": "l2h4d16", "x": 26.0, "model": "fit-v1",
         "transformer_lags": False, "agrees": math.nan, "capacity_bits": 101378.0,
         "capacity_source": "rule 1 bits/param", "D_eff": math.nan,
         "v1_capacity_bits": math.nan, "D_eff_how": "D_eff 65536 > max_D_eff: not fitted"},
    ]).to_csv(reg / "regime_verdicts.csv", index=False)  # fmt: skip


def test_the_section_tables_matching_and_counts_an_unfitted_v1_as_neither(tmp_path,
                                                                         load_script):  # fmt: skip
    results = load_script("results")
    _tables(tmp_path / "regime")
    text = "\n".join(results.regime_section(tmp_path))
    assert "| l1h1d8 | 1041 | table (lower bound) | 1035 | 1040 | measured |" in text
    assert "| l2h4d16 | 101378 | rule 1 bits/param | - | - | D_eff 65536 > max_D_eff" in text
    assert "The transformer lags in 1 of 2 regimes (l1h1d8-K256)" in text
    assert "passes the comparison in 1 of the 2" in text and "not fitted" in text


def test_the_metric_table_gives_each_models_difference_with_its_interval(load_script):
    results = load_script("results")
    base = {"rank_lo": 5, "rank_hi": 10, "regime": "l2h2d8-K256", "transformer": 0.35}
    disc = pd.DataFrame([
        {**base, "quantity": "0.75", "model": "fit-v1", "value": -1.3, "lo": -1.58, "hi": -1.07},
        {**base, "quantity": "0.75", "model": "fit-v2", "value": math.nan, "lo": math.nan,
         "hi": math.nan},
        {**base, "regime": "l1h1d8-K256", "quantity": "0.75", "model": "fit-v1", "value": 0.1,
         "lo": 0.0, "hi": 0.2},
    ])  # fmt: skip
    text = "\n".join(results._discrepancy_lines(disc, ["l2h2d8-K256"]))
    assert "| l2h2d8-K256 | 75% | +0.35 | -1.30 [-1.58, -1.07] | - |" in text
    assert "l1h1d8-K256" not in text  # a regime without lag is left out
    assert results._discrepancy_lines(disc, []) == []
