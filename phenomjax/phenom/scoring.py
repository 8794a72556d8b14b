"""Score phenomenological curves against an empirical run's binned curves (docs/design.md §6).

The score of a member is the RMSE of log-loss between its rank-binned curves and the run's,
at matched presentations:

    score = sqrt(mean over (bin, eval) of [log L_fit(n / s) - log L_emp(n)]^2)

where n is the empirical bin's mean presentations at an evaluation, L_fit(.) the member's binned
loss interpolated linearly in log-presentations (only inside the range its evaluations cover:
no extrapolation), and s > 0 an optional presentation-scale factor: the fitted model is read as
if its presentations were s times what it counted, i.e. its curve is shifted by log s along
log-presentations. Every (bin, eval) point counts once, so bins with more evaluations inside the
model's range weigh more. Points with presentations <= 0 are left out (log axes).

The scale factor is fitted per member by the exact minimiser over a dense log-spaced grid
(`ScoreConfig.shift_points` factors in [1/shift_range, shift_range], 1 always on the grid),
among the factors that keep at least `min_overlap` of the points matched at s = 1. Both limits
are tight on purpose: s trades off against the learning rate (adam moves ~lr per step), and a
wide search lets a slow member slide the late, memorizing part of the frequent bins out of the
matched range and "win" on the flat rare bins (seen on the demo run with [1/10, 10], 75%).
The accuracy RMSE (in fraction units, no log) is reported at the same s.

Everything here works on binned tables (a few rows per bin and evaluation), never on the K x L
data; `member_binned` bins a sweep's per-sequence curves one member chunk at a time.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from ..analysis.binning import binned
from ..errors import DataError


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
    shift: bool = True  # fit a presentation-scale factor s per member (else s = 1)
    shift_range: float = 3.0  # s is searched in [1 / shift_range, shift_range]
    shift_points: int = 111  # grid size (odd: s = 1 is on it); 111 over [1/3, 3] = 2% steps
    min_overlap: float = 0.9  # a shift must keep this share of the points matched at s = 1

    def grid(self) -> np.ndarray:
        """log(s) values searched; always contains 0."""
        if not self.shift:
            return np.zeros(1)
        n = self.shift_points | 1  # odd, so that 0 is a grid point
        return np.linspace(-np.log(self.shift_range), np.log(self.shift_range), n)


def _curves(b: pd.DataFrame) -> dict[tuple[int, int], tuple[np.ndarray, ...]]:
    """(lo, hi) -> (log presentations increasing, log loss, accuracy), positive x only."""
    out = {}
    for (lo, hi), g in b.groupby(["rank_lo", "rank_hi"], sort=True):
        g = g[(g["presentations"] > 0) & (g["loss"] > 0)].sort_values("step")
        x = np.log(g["presentations"].to_numpy(np.float64))
        if len(x) == 0:
            continue
        # counts can repeat between evaluations (stochastic mode): keep the latest value
        _, last = np.unique(x[::-1], return_index=True)
        idx = np.sort(len(x) - 1 - last)
        out[(int(lo), int(hi))] = (
            x[idx],
            np.log(g["loss"].to_numpy(np.float64)[idx]),
            g["accuracy"].to_numpy(np.float64)[idx],
        )
    return out


def score_curves(emp: pd.DataFrame, fit: pd.DataFrame, cfg: ScoreConfig = ScoreConfig()) -> dict:
    """Score one fitted binned table against the empirical one (see the module docstring).

    Returns score (log-loss RMSE), shift (the factor s), accuracy_rmse, n_points and per_bin
    (a list of {rank_lo, rank_hi, n_points, log_loss_rmse, accuracy_rmse, mean_residual}).
    """
    E, F = _curves(emp), _curves(fit)
    common = sorted(set(E) & set(F))
    if not common:
        raise DataError("scoring: the empirical and fitted curves share no rank bin")
    grid = cfg.grid()
    S = len(grid)
    sse, sae, cnt = np.zeros(S), np.zeros(S), np.zeros(S)
    per = []
    for key in common:
        xe, ye, ae = E[key]
        xm, ym, am = F[key]
        xq = xe[None, :] - grid[:, None]  # model read at n / s
        inside = (xq >= xm[0] - 1e-12) & (xq <= xm[-1] + 1e-12)
        dy = np.where(inside, np.interp(xq, xm, ym) - ye[None, :], 0.0)
        da = np.where(inside, np.interp(xq, xm, am) - ae[None, :], 0.0)
        sse += (dy**2).sum(1)
        sae += (da**2).sum(1)
        cnt += inside.sum(1)
        per.append((key, inside, dy, da))
    zero = S // 2 if cfg.shift else 0
    if cnt[zero] == 0:
        raise DataError("scoring: no empirical point lies inside the fitted presentations range")
    allowed = cnt >= max(1.0, cfg.min_overlap * cnt[zero])
    with np.errstate(invalid="ignore", divide="ignore"):
        mse = np.where(allowed, sse / np.maximum(cnt, 1), np.inf)
    j = int(np.argmin(mse))
    rows = []
    for (lo, hi), inside, dy, da in per:
        n = int(inside[j].sum())
        rows.append(
            {
                "rank_lo": lo,
                "rank_hi": hi,
                "n_points": n,
                "log_loss_rmse": float(np.sqrt((dy[j] ** 2).sum() / n)) if n else float("nan"),
                "accuracy_rmse": float(np.sqrt((da[j] ** 2).sum() / n)) if n else float("nan"),
                "mean_residual": float(dy[j].sum() / n) if n else float("nan"),
            }
        )
    return {
        "score": float(np.sqrt(mse[j])),
        "shift": float(np.exp(grid[j])),
        "accuracy_rmse": float(np.sqrt(sae[j] / cnt[j])),
        "n_points": int(cnt[j]),
        "score_unshifted": float(np.sqrt(sse[zero] / cnt[zero])),
        "per_bin": rows,
    }


def score_members(
    emp: pd.DataFrame, members_binned: pd.DataFrame, cfg: ScoreConfig = ScoreConfig()
) -> pd.DataFrame:
    """score_curves for every member of a binned sweep table (column "member")."""
    rows = []
    for m, g in members_binned.groupby("member", sort=True):
        try:
            s = score_curves(emp, g, cfg)
        except DataError:
            s = {"score": np.inf, "shift": np.nan, "accuracy_rmse": np.nan, "n_points": 0}
        s.pop("per_bin", None)
        rows.append({"member": int(m), **s})
    return pd.DataFrame(rows)


def member_binned(read_chunk, members: list[int], edges: np.ndarray, chunk: int = 8):
    """Bin a sweep's per-sequence curves `chunk` members at a time (bounded memory);
    `read_chunk(ids)` returns those members' rows (e.g. read_sweep(out, ids)[1])."""
    parts = []
    for i in range(0, len(members), chunk):
        rows = read_chunk(members[i : i + chunk])
        parts.append(binned(rows, edges, group="member"))
    return pd.concat(parts, ignore_index=True)
