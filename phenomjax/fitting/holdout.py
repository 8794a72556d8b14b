"""Held-out prediction of a fit (docs/design.md §6, "Fitting to a run").

A fit that matches the curves it was chosen on may still not predict anything. Here the members
are ranked against one part of the transformer's curves and the best is read on the rest:

- `steps`: the first half of the evaluations (by step) is the training part; the later half is
  held out. Every member still trains for the run's full number of steps, so its curves cover
  the held-out evaluations: they are extrapolated in steps, not refitted.
- `bins`: the rank bins below rank 100 are the training part; the rarer bins are held out.

The held-out error is per bin, in units of the noise reference of the held-out part (z as in
fitting.scoring), with the presentation shift fixed at the one fitted on the training part (a
shift refitted on the held-out part would be a fit, not a prediction). Lag rows of the full
reference that the training part could not see (a level reached only later, or a held-out bin)
are reported as out-of-sample lag.

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
from .members import Member, live, member_of
from .scoring import BinScore, LagRow, Reference, ScoreConfig, lag_rows, score_member

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
) -> tuple[BinScore, ...]:
    """Per bin of `ref`: the best's error at a fixed shift, in units of ref's noise reference."""
    fixed = dataclasses.replace(score, shift=False, min_overlap=0.0)
    return score_member(shifted(best_binned, shift), None, ref, fixed).bins


def heldout_lag(
    best_lag: pd.DataFrame, full: Reference, train: Reference, score: ScoreConfig
) -> tuple[LagRow, ...]:
    """Lag rows of the full reference that the training reference lacks, with the best's z."""
    seen = {(round(float(r.level), 9), int(r.rank_lo)) for r in train.compared().itertuples()}
    rows, _ = lag_rows(best_lag, full, score)
    return tuple(r for r in rows if (round(r.level, 9), r.rank_lo) not in seen)


@dataclasses.dataclass(frozen=True)
class Holdout:
    """The best's error on the held-out part, at the shift fitted on the training part."""

    split: str  # steps or bins
    description: str
    fit_edges: tuple[int, ...]
    heldout_edges: tuple[int, ...]
    shift: float
    in_sample: tuple[BinScore, ...]
    out_of_sample: tuple[BinScore, ...]
    lag_out_of_sample: tuple[LagRow, ...]


def seed_reference(one: Reference, group: Reference) -> Reference:
    """One seed's curves and lag ratios with the group's seed band as the unit."""
    keys = ["level", "rank_lo", "rank_hi"]
    unit = group.lag[[*keys, "log_ratio_sd", "compared"]].rename(columns={"compared": "all"})
    lag = one.lag.drop(columns=["log_ratio_sd"]).merge(unit, on=keys)
    lag["compared"] = lag["compared"] & lag.pop("all")  # levels every seed of the group reaches
    return Reference(one.curves, group.sigma, lag, 1, f"one seed, in units of {group.noise}")


@dataclasses.dataclass(frozen=True)
class SeedBest:
    """The member ranked best against one transformer seed alone."""

    run: str
    total: float
    shift: float
    member: Member


@dataclasses.dataclass(frozen=True)
class Intervals:
    """The range over transformer seeds of the best member's lr, scale and shift."""

    per_seed: tuple[SeedBest, ...]
    lr: tuple[float, float] | None
    scale: tuple[float, float] | None
    shift: tuple[float, float] | None
    same_setting: bool  # every seed picks the same (optimizer, w, d, param)


def seed_intervals(
    members: pd.DataFrame,
    tables: Callable[[str, int], tuple[pd.DataFrame, pd.DataFrame]],
    refs: dict[str, Reference],
    score: ScoreConfig,
) -> Intervals:
    """Per transformer seed, the live member of least total against that seed alone, and the
    range of its lr, scale and shift over seeds. `tables(sweep, member)` gives the member's
    (binned, bin_lag) tables."""
    per = []
    alive = [member_of(r) for r in live(members).itertuples()]
    for name, ref in refs.items():
        best = None
        for m in alive:
            s = score_member(*tables(m.sweep, m.member), ref, score)
            if np.isfinite(s.total) and (best is None or s.total < best.total):
                best = SeedBest(str(name), s.total, s.shift, m)
        if best is not None:
            per.append(best)

    def span(values) -> tuple[float, float] | None:
        v = np.asarray(list(values), np.float64)
        return (float(v.min()), float(v.max())) if len(v) else None

    same = {(p.member.optimizer, p.member.w, p.member.d, p.member.param) for p in per}
    return Intervals(tuple(per), span(p.member.lr for p in per),
                     span(p.member.scale for p in per), span(p.shift for p in per),
                     len(same) <= 1)  # fmt: skip
