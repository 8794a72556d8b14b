"""What the capacity table says (docs/design.md §9): capacity per model size, bits per
parameter with an interval, and presentations to memorize against size.

- capacity of a size = its memorized bits at the peak over its bracket of K (uniform runs):
  measured when that K converged, extrapolated (with an interval) when it did not, else the
  measured value as a lower bound (`estimate` says which). A peak that reaches `data_limited`
  of its Bayes ceiling is data-limited: the data, not the model, set it; `bracketed` says
  whether the peak has a K on each side (or a plateau at the top);
- bits per parameter = the least-squares slope of capacity against parameters through the
  origin over the sizes that are not data-limited (all sizes when fewer than two are), with a
  t-interval, by both parameter counts (all; without embeddings, positions and LayerNorm);
  the log-log exponent beside it says whether capacity is proportional to parameters at all;
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
from .bracket import bracketed
from .config import BracketSection
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


def _peak_row(model: str, size: str, g: pd.DataFrame, rule, data_limited: float) -> dict:
    best = g.loc[g["memorized_bits"].idxmax()]
    measured = float(best["memorized_bits"])
    est = float(best.get("bits_estimate", np.nan))
    conv, extra = bool(best["converged"]), bool(best.get("extrapolated", False))
    capacity = est if np.isfinite(est) else measured
    ceiling = float(best["bits_ceiling"])
    by_K = dict(zip(g["K"].astype(int), g["memorized_bits"].astype(float), strict=True))
    lr = best.get("lr", np.nan)
    return {
        "model": model,
        "size": size,
        "params": int(best["params"]),
        "params_core": int(best.get("params_core", best["params"])),
        "capacity": capacity,
        "capacity_lo": float(best.get("bits_lo", np.nan)) if extra else np.nan,
        "capacity_hi": float(best.get("bits_hi", np.nan)) if extra else np.nan,
        "estimate": "converged"
        if conv
        else ("extrapolated" if np.isfinite(est) else "lower bound"),
        "measured_bits": measured,
        "K_at_max": int(best["K"]),
        "dataset_bits": int(best["dataset_bits"]),
        "bits_ceiling": ceiling,
        "data_limited": bool(measured >= data_limited * ceiling),
        "bracketed": bracketed(by_K, rule),
        "bits_per_param": capacity / float(best["params"]),
        "bits_per_param_core": capacity / float(best.get("params_core", best["params"])),
        "converged": conv,
        "gain_last_doubling": float(best.get("gain_last_doubling", np.nan)),
        "lr": float(lr) if lr is not None else np.nan,
        "exposures": best.get("exposures"),
        "n_K": len(g),
    }


def capacity_by_size(
    table: pd.DataFrame,
    alpha: float = 0.0,
    rule: BracketSection | None = None,
    data_limited: float = 0.95,
) -> pd.DataFrame:
    """One row per (model, size) over the complete runs at `alpha` (see the module docstring):
    params and params_core, capacity (at the peak K: converged, extrapolated or, when neither,
    the measured lower bound) with its interval, K_at_max, the Bayes ceiling and dataset bits
    there, data_limited, bracketed, bits per parameter by both counts, lr."""
    rule = rule or BracketSection()
    ok = np.isclose(table["alpha"], alpha)
    if "status" in table.columns:  # a run that failed on a non-finite loss measures nothing
        ok &= table["status"] == "complete"
    t = table[ok].assign(size=lambda d: size_key(d))
    rows = [
        _peak_row(model, size, g, rule, data_limited)
        for (model, size), g in t.groupby(["model", "size"], sort=False)
    ]
    return pd.DataFrame(rows).sort_values(["model", "params"], ignore_index=True)


def fit_capacity(sizes: pd.DataFrame, model: str = "transformer") -> dict[str, Any]:
    """Bits per parameter: capacity against params (and params_core) through the origin
    (t-interval) and the log-log exponent, over the sizes of `model` whose peak is not
    data-limited (all of them when fewer than two are not; `used` says which)."""
    s = sizes[sizes["model"] == model]
    free = s[~s["data_limited"]]
    use, used = (free, "capacity-limited sizes") if len(free) >= 2 else (s, "all sizes")
    x, y = use["params"].to_numpy(float), use["capacity"].to_numpy(float)
    out: dict[str, Any] = {"model": model, "used": used, "n_sizes": len(use)}
    if len(use) == 0:
        return out
    out["bits_per_param"] = slope_through_origin(x, y)
    out["bits_per_param_core"] = slope_through_origin(use["params_core"].to_numpy(float), y)
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
