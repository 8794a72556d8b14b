"""What the capacity table says (docs/design.md §9): capacity per model size, bits per
parameter with an interval, and presentations to memorize against size.

- capacity of a size = its largest memorized bits over K (uniform runs); the size is
  `saturated` when at its largest K it memorized less than half of what the data allows (the
  Bayes ceiling), so the data was not the limit there: the model was, or, for a run that did not
  converge (`converged` of the run at the max), its step budget, and the capacity is then a
  lower bound;
- bits per parameter = the least-squares slope of capacity against parameters through the
  origin over the saturated sizes (all sizes when fewer than two are), with a t-interval; the
  log-log exponent beside it says whether capacity is proportional to parameters at all;
- presentations to memorize: per Zipf run, per rank, the presentations at which the excess loss
  over the Bayes floor first falls to half its initial value (`analysis.lag.rank_crossings`),
  the median per rank bin (ranks that never get there count as infinitely late), and a power
  law of that median against parameters per bin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.lag import bin_lag, rank_crossings
from ..analysis.load import load_run
from .fits import power_law, slope_through_origin

MORRIS_BITS_PER_PARAM = 3.6  # Morris et al. 2025 (arXiv 2505.24832), GPT-style, bf16 3.5, fp32 3.8


def size_key(table: pd.DataFrame) -> pd.Series:
    """A readable label per row's size: '1x2x8' (layers x heads x head_dim) or 'w6 d2'."""
    t = table["model"] == "transformer"
    lab = pd.Series("", index=table.index)
    lab[t] = [
        f"{a}x{b}x{c}"
        for a, b, c in table.loc[t, ["n_layer", "n_head", "head_dim"]]
        .astype(int)
        .itertuples(index=False)
    ]
    lab[~t] = [
        f"w{a} d{b}" for a, b in table.loc[~t, ["w", "d"]].astype(int).itertuples(index=False)
    ]
    return lab


def capacity_by_size(table: pd.DataFrame, alpha: float = 0.0) -> pd.DataFrame:
    """One row per (model, size) over the complete runs at `alpha`: params, capacity (max memorized
    bits over K), K_at_max, bits_per_param, converged and gain_last_doubling (of the run at the
    max), n_converged, n_runs, saturated (see the module docstring)."""
    ok = np.isclose(table["alpha"], alpha)
    if "status" in table.columns:  # a run that failed on a non-finite loss measures nothing
        ok &= table["status"] == "complete"
    t = table[ok].assign(size=lambda d: size_key(d))
    rows = []
    for (model, size), g in t.groupby(["model", "size"], sort=False):
        best = g.loc[g["memorized_bits"].idxmax()]
        top = g.loc[g["K"].idxmax()]
        rows.append(
            {
                "model": model,
                "size": size,
                "params": int(best["params"]),
                "capacity": float(best["memorized_bits"]),
                "K_at_max": int(best["K"]),
                "bits_per_param": float(best["memorized_bits"]) / float(best["params"]),
                "converged": bool(best["converged"]),
                "gain_last_doubling": float(best.get("gain_last_doubling", np.nan)),
                "n_converged": int(g["converged"].sum()),
                "n_runs": len(g),
                "saturated": bool(top["memorized_bits"] < 0.5 * top["bits_ceiling"]),
            }
        )
    return pd.DataFrame(rows).sort_values(["model", "params"], ignore_index=True)


def fit_capacity(sizes: pd.DataFrame, model: str = "transformer") -> dict[str, Any]:
    """Bits per parameter: capacity against params through the origin (t-interval) and the
    log-log exponent, over the saturated sizes of `model` (all of them when fewer than two
    are saturated; `used` says which)."""
    s = sizes[sizes["model"] == model]
    sat = s[s["saturated"]]
    use, used = (sat, "saturated sizes") if len(sat) >= 2 else (s, "all sizes")
    x, y = use["params"].to_numpy(float), use["capacity"].to_numpy(float)
    out: dict[str, Any] = {"model": model, "used": used, "n_sizes": len(use)}
    if len(use) == 0:
        return out
    out["bits_per_param"] = slope_through_origin(x, y)
    out["loglog"] = power_law(x, y)
    out["reference_bits_per_param"] = MORRIS_BITS_PER_PARAM
    return out


def presentations_to_memorize(
    run_paths: Sequence[str], level: float = 0.5, edges: Sequence[int] = (0, 10, 100, 1000)
) -> pd.DataFrame:
    """Per run and rank bin: the median presentations for a rank's excess loss to fall to
    `level` of its initial value (see the module docstring), with params, K, alpha, n_ranks,
    n_reached. The runs may be any phenomjax run directories with known bits (Zipf runs of the
    capacity ladder, or the CPU-scale experiments)."""
    parts = []
    for p in run_paths:
        table = load_run(p)
        meta = table.attrs["run"]
        K = int(meta["K"])
        e = sorted({int(x) for x in edges if int(x) < K} | {K})
        lag = bin_lag(rank_crossings(table, levels=[level]), edges=e, K=K)
        parts.append(
            lag.assign(
                run=str(meta["name"]), params=meta.get("n_params"), K=K, alpha=float(meta["alpha"])
            )
        )
    if not parts:
        return pd.DataFrame()
    df = pd.concat(parts, ignore_index=True)
    keep = [
        "run",
        "params",
        "K",
        "alpha",
        "level",
        "rank_lo",
        "rank_hi",
        "n_ranks",
        "n_reached",
        "median_presentations",
    ]
    return df[keep]


def fit_presentations(pres: pd.DataFrame) -> pd.DataFrame:
    """Per (K, alpha, rank bin): power law median presentations = c params^k with its
    t-interval over the sizes where the median is finite."""
    rows = []
    if len(pres) == 0:
        return pd.DataFrame()
    for (K, alpha, lo, hi), g in pres.groupby(["K", "alpha", "rank_lo", "rank_hi"], sort=True):
        f = power_law(g["params"].to_numpy(float), g["median_presentations"].to_numpy(float))
        rows.append({"K": K, "alpha": alpha, "rank_lo": lo, "rank_hi": hi, **f})
    return pd.DataFrame(rows)
