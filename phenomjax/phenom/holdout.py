"""Held-out prediction of a fit (docs/design.md §6, "Fitting to a run").

A fit that matches the curves it was chosen on may still not predict anything. Here the members
are ranked against one part of the transformer's curves and the best is read on the rest:

- `steps`: the first half of the evaluations (by step) is the training part; the later half is
  held out. Every member still trains for the run's full number of steps, so its curves cover
  the held-out evaluations: they are extrapolated in steps, not refitted.
- `bins`: the rank bins below rank 100 are the training part; the rarer bins are held out.

The held-out error is per bin, in units of the transformer's seed band on the held-out part
(z as in phenomjax.phenom.scoring), with the presentation shift fixed at the one fitted on the
training part (a shift refitted on the held-out part would be a fit, not a prediction). Lag
rows of the full reference that the training part could not see (a level reached only later, or
a held-out bin) are reported as out-of-sample lag.

Uncertainty of the fitted parameters: every member is ranked again against each transformer seed
alone (that seed's curves and lag ratios, the group's seed band as the unit); the best member per
seed gives a learning rate, an initial scale and a shift, and their range over seeds is the
interval. The learning rate and the scale are read on the sweep's grid, so an interval of one
grid value means the seeds agree to within a grid step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError
from .scoring import Reference, ScoreConfig, lag_agreement, score_curves, total_score

SPLITS = ("steps", "bins")
BIN_SPLIT = 100  # `bins`: ranks below this are the training part


def split_evals(
    evals: pd.DataFrame, how: str, edges: np.ndarray
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray, str]:
    """(training rows, held-out rows, training edges, held-out edges, a description).

    steps: evaluations up to the median evaluation step train (step 0 included), the later
    ones are held out; bins: ranks below BIN_SPLIT train (the edges must have one there).
    """
    if how not in SPLITS:
        raise ConfigError(f"holdout: expected one of {list(SPLITS)}, got {how!r}")
    e = np.asarray(edges, np.int64)
    if how == "steps":
        steps = np.unique(evals["step"].to_numpy())
        if len(steps) < 4:
            raise DataError(f"holdout steps: the run has {len(steps)} evaluations; expected >= 4")
        cut = steps[(len(steps) - 1) // 2]
        train = evals[evals["step"] <= cut]
        test = evals[evals["step"] > cut]
        text = (f"evaluations at steps <= {int(cut)} ({int((steps <= cut).sum())} of "
                f"{len(steps)}) train; the later ones are held out")  # fmt: skip
        return train, test, e, e, text
    if BIN_SPLIT not in e or e[-1] <= BIN_SPLIT:
        raise DataError(f"holdout bins: expected a bin edge at rank {BIN_SPLIT} and ranks beyond "
                        f"it, got edges {e.tolist()}")  # fmt: skip
    train = evals[evals["rank"] < BIN_SPLIT]
    test = evals[evals["rank"] >= BIN_SPLIT]
    text = f"rank bins below rank {BIN_SPLIT} train; the rarer bins are held out"
    return train, test, e[e <= BIN_SPLIT], e[e >= BIN_SPLIT], text


def shifted(binned_fit: pd.DataFrame, shift: float) -> pd.DataFrame:
    """The fit read at n / s: its presentations times s (score_curves' convention)."""
    return binned_fit.assign(presentations=binned_fit["presentations"] * shift)


def predict(
    best_binned: pd.DataFrame, shift: float, ref: Reference, score: ScoreConfig
) -> list[dict]:
    """Per bin of `ref`: the best's error at a fixed shift, in units of ref's seed band."""
    fixed = dataclasses.replace(score, shift=False, min_overlap=0.0)
    try:
        s = score_curves(ref.curves, shifted(best_binned, shift), fixed, ref.sigma)
    except DataError:
        return []
    return [{k: r[k] for k in ("rank_lo", "rank_hi", "n_points", "log_loss_rmse", "sigma", "z")}
            for r in s["per_bin"]]  # fmt: skip


def heldout_lag(best_lag: pd.DataFrame, full: Reference, train: Reference, score: ScoreConfig):
    """Lag rows of the full reference that the training reference lacks, with the best's z."""
    seen = {(round(float(r.level), 9), int(r.rank_lo)) for r in train.lag.itertuples()}
    _, rows = lag_agreement(best_lag, full, score)
    return [r for r in rows if (round(r["level"], 9), r["rank_lo"]) not in seen]


def seed_reference(one: Reference, group: Reference) -> Reference:
    """One seed's curves and lag ratios with the group's seed band as the unit."""
    lag = one.lag.drop(columns=["log_ratio_sd"]).merge(
        group.lag[["level", "rank_lo", "rank_hi", "log_ratio_sd"]],
        on=["level", "rank_lo", "rank_hi"],
    )
    return Reference(one.curves, group.sigma, lag, 1, "one seed, the group's seed band")


def seed_intervals(
    members: pd.DataFrame,
    tables: Callable[[str], tuple[pd.DataFrame, pd.DataFrame]],
    refs: dict[str, Reference],
    score: ScoreConfig,
) -> dict:
    """Per transformer seed, the member ranked best against that seed alone; the range of its
    lr, scale and shift over seeds. `tables(sweep)` gives a sweep's (binned, bin_lag) member
    tables; `members` has columns sweep, member, diverged, lr, scale and the settings."""
    live = members[~members["diverged"]]
    per = []
    for name, ref in refs.items():
        best = None
        for sweep, g in live.groupby("sweep", sort=False):
            mb, ml = tables(sweep)
            lags = dict(tuple(ml.groupby("member")))
            for r in g.itertuples():
                try:
                    s = score_curves(ref.curves, mb[mb["member"] == r.member], score, ref.sigma)
                except DataError:
                    continue
                ls, _ = lag_agreement(lags[r.member], ref, score) if r.member in lags else (
                    np.nan, [])  # fmt: skip
                t = total_score(s["band_score"], ls)
                if np.isfinite(t) and (best is None or t < best["total"]):
                    best = {"run": str(name), "total": t, "shift": s["shift"], "lr": r.lr,
                            "scale": r.scale, "optimizer": r.optimizer, "w": int(r.w),
                            "d": int(r.d), "param": r.param}  # fmt: skip
        if best is not None:
            per.append(best)
    out: dict = {"per_seed": per}
    for k in ("lr", "scale", "shift"):
        v = np.asarray([p[k] for p in per], np.float64)
        out[k] = [float(v.min()), float(v.max())] if len(v) else None
    same = {(p["optimizer"], p["w"], p["d"], p["param"]) for p in per}
    out["same_setting"] = len(same) <= 1
    return out
