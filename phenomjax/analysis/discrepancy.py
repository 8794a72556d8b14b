"""The pre-registered discrepancy between two lags (docs/design.md §6, "The protocol").

Fixed before any regime was compared, so that no result can choose its own yardstick:

- per rank bin below the top one and per level of normalized excess loss (75 %, 50 %, 25 %),
  the difference of log lag ratios, model minus transformer: 0 is agreement, log 2 is the model
  lagging twice as much;
- per bin, the slope of the log lag ratio across levels (against -ln(level), so a lag that grows
  at deeper levels has a positive slope), model minus transformer: the constant-factor lag of a
  pure rescaling of time (V1) has slope 0, a lag that compounds between presentations (V2) does
  not;
- each with a percentile bootstrap interval over seeds: the transformer's seeds (and the
  model's, when it has several) are resampled with replacement and the mean recomputed.

A level enters only where every compared seed of both reaches it (a censored ratio is not a
number to average). Inputs are `lag.bin_lag` tables with a `seed` column.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import DataError

LEVELS = (0.75, 0.5, 0.25)
COLUMNS = ("seed", "rank_lo", "rank_hi", "level", "lag_ratio")


def _check(table: pd.DataFrame, what: str) -> None:
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{what}: lag table lacks column(s) {missing}; expected {list(COLUMNS)}")


def log_ratios(table: pd.DataFrame, levels: Sequence[float] = LEVELS) -> dict:
    """{(rank_lo, rank_hi): array (seeds, levels) of ln lag_ratio}, NaN where a seed does not
    reach a level (or its ratio is not positive); the top bin is left out."""
    levels = np.asarray(levels, dtype=np.float64)
    out = {}
    top = table["rank_lo"].min()
    seeds = sorted(table["seed"].unique())
    for (lo, hi), g in table[table["rank_lo"] > top].groupby(["rank_lo", "rank_hi"]):
        x = np.full((len(seeds), len(levels)), np.nan)
        for _, r in g.iterrows():
            j = np.flatnonzero(np.isclose(levels, r["level"]))
            if len(j) and np.isfinite(r["lag_ratio"]) and r["lag_ratio"] > 0:
                x[seeds.index(r["seed"]), j[0]] = np.log(r["lag_ratio"])
        out[(int(lo), int(hi))] = x
    return out


def slopes(x: np.ndarray, levels: Sequence[float] = LEVELS) -> np.ndarray:
    """Per row of x (seeds, levels): the least-squares slope of x against -ln(level) over the
    levels where the row is finite; NaN with fewer than two."""
    t = -np.log(np.asarray(levels, dtype=np.float64))
    out = np.full(len(x), np.nan)
    for i, row in enumerate(x):
        ok = np.isfinite(row)
        if ok.sum() >= 2:
            tt, yy = t[ok] - t[ok].mean(), row[ok] - row[ok].mean()
            out[i] = float((tt * yy).sum() / (tt * tt).sum())
    return out


def _bootstrap(a: np.ndarray, b: np.ndarray, n: int, rng: np.random.Generator):
    """Mean of b minus mean of a, and its 95 % percentile interval resampling each's rows."""
    value = float(b.mean() - a.mean())
    ia = rng.integers(0, len(a), size=(n, len(a)))
    ib = rng.integers(0, len(b), size=(n, len(b)))
    draws = b[ib].mean(axis=1) - a[ia].mean(axis=1)
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return value, float(lo), float(hi)


def discrepancy(
    transformer: pd.DataFrame,
    model: pd.DataFrame,
    levels: Sequence[float] = LEVELS,
    bootstrap: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (bin, quantity): quantity is a level (the log-ratio difference there) or
    "slope"; value (model minus transformer), lo, hi (95 % bootstrap over seeds), the mean
    log ratio (or slope) of each with the transformer's min and max over seeds, n_transformer
    and n_model (seeds used), and compared (False where a level is not reached by every seed
    of both: value NaN)."""
    _check(transformer, "transformer")
    _check(model, "model")
    rng = np.random.default_rng(seed)
    ref, fit = log_ratios(transformer, levels), log_ratios(model, levels)
    rows = []
    for key in sorted(ref):
        a = ref[key]
        b = fit.get(key, np.full((1, len(levels)), np.nan))
        quantities = [(f"{lv:g}", a[:, j], b[:, j]) for j, lv in enumerate(levels)]
        quantities.append(("slope", slopes(a, levels), slopes(b, levels)))
        for name, xa, xb in quantities:
            reached = bool(np.isfinite(xa).all())  # by every transformer seed
            ok = reached and bool(np.isfinite(xb).all())
            value, lo, hi = _bootstrap(xa, xb, bootstrap, rng) if ok else (np.nan,) * 3
            rows.append({"rank_lo": key[0], "rank_hi": key[1], "quantity": name,
                         "value": value, "lo": lo, "hi": hi,
                         "transformer": float(np.mean(xa)) if reached else np.nan,
                         "transformer_min": float(np.min(xa)) if reached else np.nan,
                         "transformer_max": float(np.max(xa)) if reached else np.nan,
                         "model": float(np.mean(xb)) if ok else np.nan,
                         "n_transformer": len(xa), "n_model": len(xb),
                         "transformer_reached": reached, "compared": ok})  # fmt: skip
    return pd.DataFrame(rows)


def transformer_lags(d: pd.DataFrame) -> bool:
    """Whether the transformer lags somewhere: a bin and level that every seed reaches with a
    ratio above 1 in every seed (its whole seed range above 1). It depends on the transformer
    alone, whichever model `d` compared."""
    lv = d[(d["quantity"] != "slope") & d["transformer_reached"]]
    return bool(len(lv)) and bool((lv.groupby(["rank_lo", "quantity"]).first()
                                   ["transformer_min"] > 0).any())  # fmt: skip


def agrees(d: pd.DataFrame, factor: float = 2.0) -> bool:
    """The pre-registered pass (issue criteria, docs/design.md §6): every (bin, level) that every
    transformer seed reaches is compared (the model reaches it too); at each, the model's lag
    ratio is within `factor` of the transformer's (|value| <= ln factor) and of the
    transformer's sign wherever the transformer's whole seed range lies on one side of 1; and
    at least one level was compared."""
    lv = d[(d["quantity"] != "slope") & d["transformer_reached"]]
    if not len(lv) or not lv["compared"].all():
        return False
    size = (lv["value"].abs() <= np.log(factor)).all()
    lags, leads = lv["transformer_min"] > 0, lv["transformer_max"] < 0
    sign = ~((lags & (lv["model"] <= 0)) | (leads & (lv["model"] >= 0)))
    return bool(size and sign.all())
