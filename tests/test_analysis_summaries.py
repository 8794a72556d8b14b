"""Summaries against direct NumPy computations."""

from __future__ import annotations

import numpy as np
import pandas as pd

from phenomjax.analysis.summaries import LN2, collapse, memorized_bits, thresholds


def curves(collapse_on_presentations: bool) -> pd.DataFrame:
    rows = []
    for b, (lo, hi, rate) in enumerate([(0, 5, 100.0), (5, 10, 10.0), (10, 100, 1.0)]):
        for step in [1, 10, 100, 1000]:
            pres = rate * step
            loss = 1.0 / (1 + pres) if collapse_on_presentations else 1.0 / (1 + step) * (b + 1)
            acc = 1 - loss / 2
            rows.append({"run": "r", "step": step, "rank_lo": lo, "rank_hi": hi,
                         "presentations": pres, "loss": loss, "accuracy": acc})  # fmt: skip
    return pd.DataFrame(rows)


def test_collapse_is_tight_on_presentations_when_loss_depends_on_them_only():
    c = collapse(curves(True)).iloc[0]
    assert c["spread_presentations"] < 1e-2 < c["spread_steps"] and c["ratio"] > 10
    d = collapse(curves(False)).iloc[0]
    assert d["spread_steps"] < d["spread_presentations"]  # same loss-vs-step shape: no collapse
    # against a direct computation at one shared point: step = 10, ranks' log-losses
    want = np.std(np.log([1 / 11 * 1, 1 / 11 * 2, 1 / 11 * 3]))
    assert abs(d["spread_steps"] - want) < 0.1


def test_thresholds_interpolate_on_log_axes():
    t = thresholds(curves(True), loss_threshold=0.01, accuracy_threshold=0.99)
    # loss = 1/(1+n) crosses 0.01 at n = 99: the 0-5 bin (rate 100) is there at its first eval;
    # the 10-100 bin (rate 1) between n = 10 and n = 100, interpolated on log-log axes
    row = t[t.rank_lo == 0].iloc[0]
    assert row["presentations_to_loss"] == 100.0  # first eval already below: its presentations
    row = t[t.rank_lo == 10].iloc[0]
    x0, x1, y0, y1 = 10, 100, 1 / 11, 1 / 101
    want = np.exp(np.log(x0) + (np.log(0.01) - np.log(y0)) / (np.log(y1) - np.log(y0))
                  * (np.log(x1) - np.log(x0)))  # fmt: skip
    assert np.isclose(row["presentations_to_loss"], want)
    assert np.isclose(row["steps_to_loss"], want)  # rate 1: steps = presentations
    never = thresholds(curves(True), loss_threshold=1e-9, accuracy_threshold=1.0)
    assert never["presentations_to_loss"].isna().all()


def test_memorized_bits_against_numpy_with_and_without_floor():
    rng = np.random.default_rng(0)
    K, P = 20, 5
    loss = rng.uniform(0, 1.2, (K, P))
    floor = rng.uniform(0, 0.3, (K, P))
    pos = pd.DataFrame({"step": 9, "rank": np.repeat(np.arange(K), P),
                        "position": np.tile(np.arange(1, P + 1), K),
                        "loss": loss.ravel(), "floor": floor.ravel()})  # fmt: skip
    old = pos.assign(step=0, loss=LN2)
    m = memorized_bits(pd.concat([old, pos]), L=P + 1)
    want = np.clip(1 - np.maximum(loss, floor) / LN2, 0, None).sum()
    assert np.isclose(m["memorized_bits"], want) and m["step"] == 9
    assert np.isclose(m["bits_bound"], np.clip(1 - floor / LN2, 0, None).sum())
    assert m["memorized_bits"] <= m["bits_bound"]
    seq = pd.DataFrame({"step": 1, "rank": np.arange(K), "loss": loss.mean(1)})
    m2 = memorized_bits(seq, L=P + 1)
    assert np.isclose(m2["memorized_bits"], P * np.clip(1 - loss.mean(1) / LN2, 0, None).sum())
    assert np.isnan(m2["bits_bound"])
