"""scripts/results.py's regime section: the matched capacities per size, and a V1 that was not
fitted (its D_eff past map.max_D_eff) counted as neither passing nor failing."""

import math

import numpy as np
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
    base = {
        "rank_lo": 5,
        "rank_hi": 10,
        "regime": "l2h2d8-K256",
        "transformer": 0.35,
        "transformer_min": 0.1,
        "transformer_max": 0.5,
    }
    disc = pd.DataFrame([
        {**base, "quantity": "0.75", "model": "fit-v1", "value": -1.3, "lo": -1.58, "hi": -1.07},
        {**base, "quantity": "0.75", "model": "fit-v2", "value": math.nan, "lo": math.nan,
         "hi": math.nan},
        {**base, "regime": "l1h1d8-K256", "quantity": "0.75", "model": "fit-v1", "value": 0.1,
         "lo": 0.0, "hi": 0.2},
    ])  # fmt: skip
    text = "\n".join(results._discrepancy_lines(disc, ["l2h2d8-K256"]))
    assert "| l2h2d8-K256 | 75% | +0.35 (+0.10 to +0.50) | -1.30 [-1.58, -1.07] | - |" in text
    assert "l1h1d8-K256" not in text  # a regime without lag is left out
    assert results._discrepancy_lines(disc, []) == []


def test_the_five_seed_table_reads_its_own_folder_or_says_how_to_make_it(tmp_path, load_script):
    results = load_script("results")
    assert "regime-5seeds" in results._five_seed_lines(tmp_path / "regime-5seeds")[0]
    five = tmp_path / "regime-5seeds"
    five.mkdir()
    pd.DataFrame([{"rank_lo": 5, "rank_hi": 10, "regime": "l2h2d8-K1024", "quantity": "slope",
                   "transformer": 0.3, "transformer_min": 0.1, "transformer_max": 0.6,
                   "model": "fit-v1", "value": 1.0, "lo": 0.4, "hi": 1.6}]
                 ).to_csv(five / "regime_discrepancy.csv", index=False)  # fmt: skip
    text = "\n".join(results._five_seed_lines(five))
    assert text.startswith("Five seeds")
    assert "| l2h2d8-K1024 | slope | +0.30 (+0.10 to +0.60) | +1.00 [+0.40, +1.60] |" in text


def test_the_v3_table_and_the_answer_are_computed_from_the_tables(tmp_path, load_script):
    results = load_script("results")
    assert "v3_transformer.py" in "\n".join(results._v3_lines(tmp_path / "v3_tail.csv"))
    v3 = [{"data": data, "level": 0.5, "seed": s, "lag_ratio": r}
          for data, rs in (("zipf", (1.5, 2.9)), ("head + constant tail", (0.6, 1.4)))
          for s, r in enumerate(rs)]  # fmt: skip
    pd.DataFrame(v3).to_csv(tmp_path / "v3_tail.csv", index=False)
    text = "\n".join(results._v3_lines(tmp_path / "v3_tail.csv"))
    assert "| zipf | 50% | 1.50 2.90 | 2.09 | True |" in text
    assert "| head + constant tail | 50% | 0.60 1.40 | 0.92 | False |" in text
    five = tmp_path / "regime-5seeds"
    five.mkdir()
    # seeds whose ln ratio rises by 0.1, 0.2 and 0.3 per unit of -ln(level): slopes known
    t = -np.log([0.75, 0.5, 0.25])
    pd.DataFrame([{"model": "transformer", "seed": s, "rank_lo": lo, "rank_hi": hi,
                   "level": lv, "ratio": np.exp(1.0 + k * 0.1 * tt) if lo == 5 else 1.0}
                  for s, k in enumerate((1, 2, 3)) for lo, hi in ((0, 5), (5, 10))
                  for lv, tt in zip((0.75, 0.5, 0.25), t, strict=True)]
                 ).to_csv(five / "regime_lags.csv", index=False)  # fmt: skip
    mean, lo, hi, n = results._slope_interval(pd.read_csv(five / "regime_lags.csv"))
    assert n == 3 and math.isclose(mean, 0.2) and 0.1 - 1e-9 <= lo <= mean <= hi <= 0.3 + 1e-9
    disc = pd.DataFrame([{"rank_lo": 5, "regime": "r", "quantity": q, "compared": True,
                          "transformer": 0.5, "value": v, "model": "fit-v1"}
                         for q, v in (("0.75", -1.0), ("0.5", -0.2), ("slope", 1.0))])  # fmt: skip
    ver = pd.DataFrame([{"model": "fit-v1", "D_eff_how": "measured"}])
    answer = " ".join(results._answer_lines(tmp_path, disc, ver, ["r"]))
    assert "1 of 2 for fit-v1" in answer
    assert "+0.20 [" in answer and "compounds at deeper levels, V2's form" in answer
    assert "at no level, against 50% on the Zipf data" in answer
