"""The members of a fit grid: their settings (`Member`) and the members table (members.csv).

One row per sweep member, in sweep order: its settings (the variant and every variant's knobs
among them: phenom/variants), its `MemberScore` columns (total, band_score, lag_score, rmse,
shift, ...) and lag_<lo>, its lag ratio per rank bin at the middle level. The table is sorted by
`total` (stable), which is the fit's ranking.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd

from ..phenom import variants
from .scoring import MemberScore

SETTINGS = ("mode", "optimizer", "b1", "b2", "weight_decay", "param", "w", "d", "lr", "scale",
            "variant") + variants.knob_names()  # fmt: skip
SCORE_COLUMNS = ("total", "band_score", "lag_score", "rmse", "shift", "shift_at_bound",
                 "accuracy_rmse", "n_points", "rmse_unshifted")  # fmt: skip
_MID = re.compile(r"^lag_(\d+)$")
DROPPED = "dropped_at"  # a halving sweep's column (fitting.halving): its rung step, -1 if none
REFINED = "refined"  # the refined optimum's sweep (folder and members-table name): fit._candidate


@dataclasses.dataclass(frozen=True)
class _Shared:
    """One member's settings, and where its curves are (sweep folder name, member id)."""

    sweep: str
    member: int
    seed: int
    mode: str
    optimizer: str
    b1: float  # adam-type b1, or the momentum coefficient
    b2: float
    weight_decay: float
    param: str
    w: int
    d: int
    lr: float
    scale: float
    variant: str = "stated"  # phenom/variants; every variant's knobs follow

    @property
    def can_memorize(self) -> bool:
        """w = 1 memorizes nothing (docs/design.md §6, capacity): such a member proves nothing.
        A variant whose capacity is a knob of its own says so (its `can_memorize(member)`)."""
        own = getattr(variants.get(self.variant), "can_memorize", None)
        return bool(own(self)) if own is not None else self.w > 1

    @property
    def variant_text(self) -> str:
        """ " v1 D_eff=16" (the variant and its own knobs); "" for the model as stated."""
        if self.variant == "stated":
            return ""
        own = [f.name for f in dataclasses.fields(variants.get(self.variant).Knobs)]
        return f" {self.variant}" + "".join(f" {k}={getattr(self, k):g}" for k in own)


# The shared settings, `variant`, then every variant's knob (phenom/variants) at its default.
Member = dataclasses.make_dataclass(
    "Member",
    [(f.name, f.type, dataclasses.field(default=f.default)) for f in variants.knob_fields()],
    bases=(_Shared,),
    frozen=True,
    namespace={"__module__": __name__, "__doc__": _Shared.__doc__},
)


def member_of(row) -> Member:
    """The Member of a members-table row (a Series or a namedtuple of itertuples); a knob or
    the variant that a sweep before the registry did not record takes its default."""
    get = row.__getitem__ if isinstance(row, pd.Series) else lambda k: getattr(row, k)
    has = (lambda k: k in row.index) if isinstance(row, pd.Series) else (lambda k: hasattr(row, k))
    kinds = {f.name: f.type for f in dataclasses.fields(Member)}
    cast = {"int": int, "float": float, "str": str}
    return Member(**{k: cast[t](get(k)) for k, t in kinds.items() if has(k)})


def members_table(sweeps: list[tuple[str, pd.DataFrame]], scores: dict) -> pd.DataFrame:
    """The sweep tables (folder name, sweep.parquet rows) with each member's score columns,
    sorted by total; `scores[(sweep, member)]` is its MemberScore."""
    parts = []
    for name, table in sweeps:
        t = table.assign(member=table["member"].astype(int), sweep=name)
        s: list[MemberScore] = [scores[(name, int(m))] for m in t["member"]]
        cols = {c: [getattr(x, c) for x in s] for c in SCORE_COLUMNS}
        mids = sorted({lo for x in s for lo, _ in x.mid_lag})
        for lo in mids:
            cols[f"lag_{lo}"] = [dict(x.mid_lag).get(lo, np.nan) for x in s]
        parts.append(t.assign(**cols))
    table = pd.concat(parts, ignore_index=True)
    if DROPPED not in table.columns:
        return table.sort_values("total", kind="stable")
    # a member stopped by successive halving was scored on a prefix: it ranks after the rest
    stopped = table[DROPPED].fillna(-1).to_numpy() >= 0
    return (
        table.assign(_stopped=stopped)
        .sort_values(["_stopped", "total"], kind="stable")
        .drop(columns="_stopped")
    )


def lag_column(members: pd.DataFrame, top_lo: int) -> str | None:
    """The members table's column of the first bin below the top one (lag_<lo>), if any."""
    return next((c for c in members.columns if (m := _MID.match(c)) and int(m[1]) != top_lo),
                None)  # fmt: skip


def live(members: pd.DataFrame) -> pd.DataFrame:
    """The members that did not diverge (nor were stopped early by successive halving)."""
    ok = ~members["diverged"].astype(bool)
    if DROPPED in members.columns:
        ok &= members[DROPPED].fillna(-1).to_numpy() < 0
    return members[ok]
