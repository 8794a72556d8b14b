"""Verdicts of a fit (docs/design.md §6, "What a score must see"): per rank bin, whether the best
member is within the noise reference and whether its lag agrees, and whether a member
reproduces the transformer's lag at all.

"Reproduced" needs all of the following (decided in `reproduction`, and nowhere else):
- the top bin within its band (z <= within);
- every (bin, level) that the transformer reaches in every seed compared: the fit reaches it;
- the right sign at each of those levels (`scoring.lag_verdict`: wrong only when the
  transformer's whole seed range lies on the other side of 1);
- the ratio's size within the band there (z_lag <= within);
- a member that can memorize: w = 1 members are flagged and never count as reproducing;
- and at least one such level to compare.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from ..phenom import variants
from .members import Member, lag_column, live, member_of
from .scoring import MemberScore, Reference, ScoreConfig

KNOBS = ("optimizer", "weight_decay", "param", "w", "d", "mode", "scale", "lr",
         "variant") + variants.knob_names()  # fmt: skip


@dataclasses.dataclass(frozen=True)
class LevelCheck:
    """One level of a bin's lag: compared (the transformer reaches it in every seed) or why not."""

    level: float
    compared: bool
    status: str  # lag_verdict for a compared level; else "reached in k of n seeds: not compared"
    ratio_ref: float  # geometric mean over the seeds that reach it
    ratio_lo: float
    ratio_hi: float
    n_seeds: int  # seeds that reach it
    ratio_fit: float  # NaN: never reaches (or not compared)
    z_lag: float  # NaN: no ratio compared


@dataclasses.dataclass(frozen=True)
class BinVerdict:
    rank_lo: int
    rank_hi: int
    z: float  # NaN: no matched point
    within_band: bool
    top: bool  # the top bin, the lag ratios' reference
    lag: str  # the bin's lag in words
    levels: tuple[LevelCheck, ...]


@dataclasses.dataclass(frozen=True)
class Reproduction:
    """The conditions of "reproduced", each stated (module docstring)."""

    top_in_band: bool
    top_z: float
    levels: int  # (bin, level) pairs the transformer reaches in every seed
    levels_compared: bool
    right_sign: bool
    size_within: bool
    can_memorize: bool
    reproduced: bool


@dataclasses.dataclass(frozen=True)
class AnyMember:
    """Whether any live member reproduces the lag: the evidence when the best does not."""

    members: int  # live members
    reproducing: int
    flagged: int  # live members that cannot memorize (w = 1)
    best_lag_score: float  # NaN: no member has a lag to compare
    best_lag_member: Member | None


@dataclasses.dataclass(frozen=True)
class KnobRow:
    """Per value of one swept knob: how many live members lag (ratio > 1) in the first bin
    below the top one at the middle level, and their median ratio."""

    knob: str
    value: str | float
    members: int
    reached: int
    lagging: int
    median_ratio: float
    bin: str  # the rank_lo of the bin read


def reproduction(score: MemberScore, member: Member, cfg: ScoreConfig) -> Reproduction:
    """Whether `member` (scored `score`) reproduces the lag, condition by condition."""
    top = min(score.bins, key=lambda b: b.rank_lo) if score.bins else None
    top_z = top.z if top is not None else float("nan")
    rows = score.lag
    parts = {
        "top_in_band": bool(np.isfinite(top_z) and top_z <= cfg.within),
        "levels_compared": all(r.compared for r in rows),
        "right_sign": not any(r.verdict == "wrong sign" for r in rows),
        "size_within": all(r.verdict != "too far" for r in rows if r.compared),
        "can_memorize": member.can_memorize,
    }
    ok = bool(rows) and all(parts.values())  # then every compared level "agrees"
    return Reproduction(top_z=float(top_z), levels=len(rows), reproduced=ok, **parts)


def _levels(lo: int, score: MemberScore, ref: Reference) -> tuple[LevelCheck, ...]:
    """A bin's levels: the compared ones from the score, the partly reached ones from ref."""
    got = {round(r.level, 9): r for r in score.lag if r.rank_lo == lo}
    out = []
    band = ref.lag[ref.lag["rank_lo"] == lo] if len(ref.lag) else ref.lag
    for b in band.sort_values("level", ascending=False).itertuples():
        r = got.get(round(float(b.level), 9))
        status = r.verdict if r is not None else (
            f"reached in {int(b.log_ratio_n)} of {ref.n_runs} seeds: not compared")  # fmt: skip
        out.append(LevelCheck(
            level=float(b.level), compared=r is not None, status=status,
            ratio_ref=float(b.ratio_mean), ratio_lo=float(b.ratio_lo),
            ratio_hi=float(b.ratio_hi), n_seeds=int(b.log_ratio_n),
            ratio_fit=r.ratio_fit if r is not None else float("nan"),
            z_lag=r.z_lag if r is not None else float("nan"),
        ))  # fmt: skip
    return tuple(out)


def _bin_lag_text(levels: tuple[LevelCheck, ...]) -> str:
    done = [v for v in levels if v.compared]
    if not done:
        return "not compared: the transformer reaches no level in every seed"
    if all(v.status == "agrees" for v in done):
        return "agrees at " + ", ".join(f"{v.level:g}" for v in done)
    by: dict[str, list[str]] = {}
    for v in done:
        if v.status != "agrees":
            by.setdefault(v.status, []).append(f"{v.level:g}")
    return "; ".join(f"{s}{'' if s == 'never reaches' else ' at'} {', '.join(lv)}"
                     for s, lv in by.items())  # fmt: skip


def bin_verdicts(score: MemberScore, ref: Reference, cfg: ScoreConfig) -> tuple[BinVerdict, ...]:
    """Per rank bin of the best: its z against the noise reference and its lag in words."""
    if not score.bins:
        return ()
    top = min(b.rank_lo for b in score.bins)
    out = []
    for b in score.bins:
        levels = () if b.rank_lo == top else _levels(b.rank_lo, score, ref)
        out.append(BinVerdict(
            rank_lo=b.rank_lo, rank_hi=b.rank_hi, z=b.z,
            within_band=bool(np.isfinite(b.z) and b.z <= cfg.within), top=b.rank_lo == top,
            lag="top bin (reference)" if b.rank_lo == top else _bin_lag_text(levels),
            levels=levels,
        ))  # fmt: skip
    return tuple(out)


def any_member(members: pd.DataFrame, scores: dict, cfg: ScoreConfig) -> AnyMember:
    """Counts the live members that reproduce the lag (`reproduction`), from their scores."""
    n = flagged = 0
    best: tuple[float, Member] | None = None
    rows = live(members)
    for r in rows.itertuples():
        m = member_of(r)
        s: MemberScore = scores[(m.sweep, m.member)]
        n += reproduction(s, m, cfg).reproduced
        flagged += not m.can_memorize
        if np.isfinite(s.lag_score) and (best is None or s.lag_score < best[0]):
            best = (s.lag_score, m)
    return AnyMember(members=len(rows), reproducing=n, flagged=flagged,
                     best_lag_score=best[0] if best else float("nan"),
                     best_lag_member=best[1] if best else None)  # fmt: skip


def knobs(members: pd.DataFrame, top_lo: int) -> tuple[KnobRow, ...]:
    """Per knob value, the lagging share of live members (see KnobRow)."""
    col = lag_column(members, top_lo)
    alive = live(members)
    if col is None or alive.empty:
        return ()
    rows = []
    for knob in (k for k in KNOBS if k in alive.columns):  # a sweep before the registry
        for v, g in alive.groupby(knob, sort=True):
            r = g[col].to_numpy(np.float64)
            fin = r[np.isfinite(r)]
            rows.append(KnobRow(
                knob=knob, value=v if isinstance(v, str) else float(v), members=len(g),
                reached=len(fin), lagging=int((fin > 1).sum()),
                median_ratio=float(np.median(fin)) if len(fin) else float("nan"), bin=col[4:],
            ))  # fmt: skip
    return tuple(rows)


def sign_knob(rows: tuple[KnobRow, ...]) -> str:
    """Names the knobs whose values split members into lagging and leading ones, if any."""
    found = []
    for knob in dict.fromkeys(k.knob for k in rows):
        signs = {k.value: k.lagging / k.reached for k in rows if k.knob == knob and k.reached}
        if len(signs) > 1 and max(signs.values()) > 0.5 > min(signs.values()):
            found.append(f"{knob} ({', '.join(f'{v}: {f:.0%} lag' for v, f in signs.items())})")
    return "; ".join(found) if found else "none: no swept knob flips the sign of the lag"
