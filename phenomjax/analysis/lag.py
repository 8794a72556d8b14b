"""The lag of rare ranks (docs/design.md §5): presentations to reach fixed levels of excess loss.

Plotted against presentations, the curves of rarer rank bins do not fall on the top bin's:
they lag. The measure, per rank and then per bin:

- the normalized excess loss e = (loss - floor) / (initial loss - floor), with the rank's Bayes
  floor and its initial loss (its first evaluation with a finite loss, step 0 in a run
  directory); e starts at 1 and falls towards 0 as the rank is memorized;
- per rank and level (0.75, 0.5, 0.25 by default), the presentations at which e first reaches
  the level: interpolated between the evaluation before and the first one at or below it, in
  log presentations (linearly from an evaluation at 0 presentations, at the later count when
  the count did not move), always on the rank's own exact counts; a rank that never reaches
  it is censored (NaN, reached False);
- per rank bin, the median of its ranks' presentations, the censored ones counted as +inf (so
  a bin where half or more never reach the level has no value), and the lag ratio to the top
  bin: bin median / top-bin median.

`matched_loss` reads the loss at equal presentations the same way (per rank, interpolated in
log presentations on a fixed log grid shared by every run, then averaged over the bin), and
`loss_gap` the per-bin log-loss difference to the top bin. `group_lag` and `group_gap` summarize
either over a group of runs that differ only in seed (groups.seed_band).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import DataError
from .binning import default_edges
from .groups import seed_band

DEFAULT_LEVELS = (0.75, 0.5, 0.25)
PER_DECADE = 8  # points per decade of the shared presentations grid of matched_loss


def _check(table: pd.DataFrame, what: str, cols: Sequence[str]) -> None:
    for c in cols:
        if c not in table.columns:
            raise DataError(f"{what}: table lacks column {c!r}; expected per-sequence evals")
    if "position" in table.columns:
        raise DataError(f"{what}: expected the per-sequence table, got a per-position one")


def _levels(levels: Sequence[float]) -> np.ndarray:
    lv = np.asarray(levels, dtype=np.float64)
    if lv.ndim != 1 or len(lv) == 0 or not np.all((lv > 0) & (lv < 1)):
        raise DataError(f"levels: expected values in (0, 1), got {list(np.atleast_1d(lv))}")
    return lv


def _grid(table: pd.DataFrame, cols: Sequence[str]) -> tuple[np.ndarray, np.ndarray, dict]:
    """(ranks, steps, {col: (n_ranks, n_steps) array}); a missing (step, rank) row is NaN."""
    ranks, r = np.unique(table["rank"].to_numpy(), return_inverse=True)
    steps, s = np.unique(table["step"].to_numpy(), return_inverse=True)
    out = {}
    for c in cols:
        a = np.full((len(ranks), len(steps)), np.nan)
        a[r, s] = table[c].to_numpy(np.float64)
        out[c] = a
    return ranks, steps, out


def _per_run(table: pd.DataFrame, fn, **kw) -> pd.DataFrame:
    if "run" not in table.columns:
        return fn(table, **kw)
    parts = []
    for run, g in table.groupby("run", sort=False):
        g = g.drop(columns="run")
        g.attrs = {"run": table.attrs.get("run", {})}  # K of the group, not every run's metadata
        parts.append(fn(g, **kw).assign(run=run))
    df = pd.concat(parts, ignore_index=True)
    return df[["run", *[c for c in df.columns if c != "run"]]]


def _rank_floor(ranks: np.ndarray, a: dict, floor: np.ndarray | None) -> tuple[np.ndarray, bool]:
    """(each rank's floor, whether it is known): the one given, the table's, or 0."""
    if floor is not None:
        fl = np.asarray(floor, dtype=np.float64)
        if fl.ndim != 1 or len(fl) <= ranks.max():
            raise DataError(f"floor: expected one value per rank (> {ranks.max()}), got {fl.shape}")
        return fl[ranks], True
    if "floor" in a:
        with np.errstate(all="ignore"):
            return np.nanmean(a["floor"], axis=1), True  # constant per rank per sequence
    return np.zeros(len(ranks)), False


def rank_crossings(
    evals: pd.DataFrame,
    levels: Sequence[float] = DEFAULT_LEVELS,
    floor: np.ndarray | None = None,
) -> pd.DataFrame:
    """Per (rank, level): the presentations at which the normalized excess loss first reaches
    the level (see the module docstring).

    floor: the per-rank Bayes floor indexed by rank; None reads the table's `floor` column, and
    without one uses 0 (e is then loss / initial loss; the table's attrs say floor_known False).
    Columns: rank, level, presentations (NaN when censored or undefined), reached, defined
    (False where the initial loss is not above the floor, so e has no meaning), floor,
    initial_loss, final_excess (e at the last evaluation). With a `run` column, per run.

    >>> ev = pd.DataFrame({"step": [0, 1, 2], "rank": 0, "presentations": [0, 10, 100],
    ...                    "loss": [1.0, 0.6, 0.2], "floor": 0.2})
    >>> rank_crossings(ev, levels=[0.5])["presentations"].round(3).tolist()
    [10.0]
    """
    if "run" in evals.columns:
        return _per_run(evals, rank_crossings, levels=levels, floor=floor)
    _check(evals, "rank_crossings", ("step", "rank", "presentations", "loss"))
    lv = _levels(levels)
    cols = ["presentations", "loss"] + (["floor"] if "floor" in evals.columns else [])
    ranks, _, a = _grid(evals, cols)
    n, loss = a["presentations"], a["loss"]
    R, S = loss.shape
    fl, known = _rank_floor(ranks, a, floor)
    finite = np.isfinite(loss)
    first = np.argmax(finite, axis=1)  # the reference evaluation of each rank
    rows = np.arange(R)
    init = np.where(finite.any(axis=1), loss[rows, first], np.nan)
    denom = init - fl
    defined = np.isfinite(denom) & (denom > 0)
    with np.errstate(all="ignore"):
        e = (loss - fl[:, None]) / np.where(defined, denom, np.nan)[:, None]
    after = np.arange(S)[None, :] > first[:, None]
    last_e = np.full(R, np.nan)
    if S:
        lastcol = S - 1 - np.argmax(finite[:, ::-1], axis=1)
        last_e = e[rows, lastcol]
    parts = []
    for level in lv:
        hit = (e <= level) & after
        reached = hit.any(axis=1) & defined
        i = np.argmax(hit, axis=1)
        j = np.maximum(i - 1, 0)
        n0, n1, e0, e1 = n[rows, j], n[rows, i], e[rows, j], e[rows, i]
        with np.errstate(all="ignore"):
            frac = np.clip((e0 - level) / (e0 - e1), 0.0, 1.0)
            logi = np.exp(np.log(n0) + frac * (np.log(n1) - np.log(n0)))
        ok = np.isfinite(e0) & np.isfinite(frac)
        x = np.where(ok & (n0 > 0) & (n1 > n0), logi, n1)
        x = np.where(ok & (n0 == 0) & (n1 > 0), frac * n1, x)  # log(0) is off the axis: linear
        parts.append(
            pd.DataFrame(
                {
                    "rank": ranks,
                    "level": level,
                    "presentations": np.where(reached, x, np.nan),
                    "reached": reached,
                    "defined": defined,
                    "floor": fl,
                    "initial_loss": init,
                    "final_excess": last_e,
                }
            )
        )
    out = pd.concat(parts, ignore_index=True)
    out.attrs["floor_known"] = known
    return out


def _edges(ranks: np.ndarray, edges: Sequence[int] | np.ndarray | None, K: int | None):
    if edges is None:
        top = int(ranks.max()) + 1 if len(ranks) else 1
        return default_edges(max(int(K or 0), top))
    e = np.asarray(edges, dtype=np.int64)
    if e.ndim != 1 or len(e) < 2 or np.any(np.diff(e) <= 0):
        raise DataError(f"edges: expected at least two strictly increasing ranks, got {e.tolist()}")
    return e


def bin_lag(
    crossings: pd.DataFrame,
    edges: Sequence[int] | np.ndarray | None = None,
    K: int | None = None,
) -> pd.DataFrame:
    """Per (level, rank bin) of a `rank_crossings` table: median presentations over the bin's
    ranks (censored ones as +inf; NaN when half or more never reach), n_ranks (defined ones),
    n_reached, n_undefined, median_rank, and lag_ratio = median / the top bin's median.
    edges: default_edges(K) when None. With a `run` column, per run."""
    if "run" in crossings.columns:
        return _per_run(crossings, bin_lag, edges=edges, K=K)
    for c in ("rank", "level", "presentations", "reached", "defined"):
        if c not in crossings.columns:
            raise DataError(f"bin_lag: table lacks column {c!r}; expected rank_crossings output")
    ranks = crossings["rank"].to_numpy()
    e = _edges(ranks, edges, K)
    rows = []
    for level, g in crossings.groupby("level", sort=False):
        r = g["rank"].to_numpy()
        b = np.searchsorted(e, r, side="right") - 1
        x = np.where(g["reached"].to_numpy(), g["presentations"].to_numpy(np.float64), np.inf)
        dfn = g["defined"].to_numpy()
        top = None
        for k in range(len(e) - 1):
            inb = b == k
            if not inb.any():
                continue
            use = inb & dfn
            med = float(np.median(x[use])) if use.any() else np.inf
            med = med if np.isfinite(med) else float("nan")
            if top is None:
                top = med
            rows.append(
                {
                    "level": float(level),
                    "rank_lo": int(e[k]),
                    "rank_hi": int(e[k + 1]),
                    "median_rank": float(np.median(r[inb])),
                    "n_ranks": int(use.sum()),
                    "n_reached": int((use & np.isfinite(x)).sum()),
                    "n_undefined": int((inb & ~dfn).sum()),
                    "median_presentations": med,
                    "lag_ratio": med / top if top and top > 0 else float("nan"),
                }
            )
    return pd.DataFrame(rows)


def lag_table(
    evals: pd.DataFrame,
    levels: Sequence[float] = DEFAULT_LEVELS,
    floor: np.ndarray | None = None,
    edges: Sequence[int] | np.ndarray | None = None,
) -> pd.DataFrame:
    """`bin_lag(rank_crossings(evals))`, K from the table's attrs (run K) when known."""
    K = evals.attrs.get("run", {}).get("K")
    return bin_lag(rank_crossings(evals, levels, floor), edges, K)


def presentation_grid(lo: float, hi: float, per_decade: int = PER_DECADE) -> np.ndarray:
    """The points 10^(i / per_decade) within [lo, hi]: the same points for every run."""
    if not (lo > 0 and hi >= lo and np.isfinite(hi)):
        return np.zeros(0)
    i0 = int(np.ceil(np.log10(lo) * per_decade - 1e-9))
    i1 = int(np.floor(np.log10(hi) * per_decade + 1e-9))
    return 10.0 ** (np.arange(i0, i1 + 1) / per_decade)


def rank_loss_at(evals: pd.DataFrame, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ranks, log loss (n_ranks, len(grid))): each rank's log loss interpolated at the grid in
    log presentations, NaN outside its own range of positive presentations. Where a count
    repeats over evaluations, the latest one at that count is the curve's point."""
    _check(evals, "rank_loss_at", ("step", "rank", "presentations", "loss"))
    ranks, _, a = _grid(evals, ["presentations", "loss"])
    n = a["presentations"]
    with np.errstate(all="ignore"):
        ln = np.log(n)
        y = np.where(a["loss"] > 0, np.log(a["loss"]), np.nan)
    R, S = n.shape
    out = np.full((R, len(grid)), np.nan)
    rows = np.arange(R)
    pos = n > 0
    for g, x in enumerate(grid):
        # counts only grow with the step, so the columns at or below x are a prefix
        k = np.sum(n <= x, axis=1)
        j0, j1 = np.clip(k - 1, 0, S - 1), np.clip(k, 0, S - 1)
        exact = (k >= 1) & (n[rows, j0] == x)
        inside = (k >= 1) & (k < S) & pos[rows, j0]
        x0, x1 = ln[rows, j0], ln[rows, j1]
        with np.errstate(all="ignore"):
            t = (np.log(x) - x0) / (x1 - x0)
            v = y[rows, j0] + t * (y[rows, j1] - y[rows, j0])
        out[:, g] = np.where(exact, y[rows, j0], np.where(inside, v, np.nan))
    return ranks, out


def matched_loss(
    evals: pd.DataFrame,
    edges: Sequence[int] | np.ndarray | None = None,
    per_decade: int = PER_DECADE,
) -> pd.DataFrame:
    """Per (rank bin, presentations on the shared log grid): the mean over the bin's ranks of
    their log loss read per rank at those presentations (`rank_loss_at`), and n_ranks (ranks
    whose own curve covers the point). With a `run` column, per run."""
    if "run" in evals.columns:
        return _per_run(evals, matched_loss, edges=edges, per_decade=per_decade)
    _check(evals, "matched_loss", ("step", "rank", "presentations", "loss"))
    n = evals["presentations"].to_numpy(np.float64)
    pos = n[n > 0]
    grid = presentation_grid(pos.min(), pos.max(), per_decade) if len(pos) else np.zeros(0)
    ranks, y = rank_loss_at(evals, grid)
    e = _edges(ranks, edges, evals.attrs.get("run", {}).get("K"))
    b = np.searchsorted(e, ranks, side="right") - 1
    rows = []
    for k in np.unique(b[(b >= 0) & (b < len(e) - 1)]):
        yk = y[b == k]
        cnt = np.isfinite(yk).sum(axis=0)
        with np.errstate(all="ignore"):
            mean = np.nansum(yk, axis=0) / cnt
        keep = cnt > 0
        rows.append(
            pd.DataFrame(
                {
                    "rank_lo": int(e[k]),
                    "rank_hi": int(e[k + 1]),
                    "presentations": grid[keep],
                    "log_loss": mean[keep],
                    "n_ranks": cnt[keep],
                }
            )
        )
    cols = ["rank_lo", "rank_hi", "presentations", "log_loss", "n_ranks"]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=cols)


def loss_gap(matched: pd.DataFrame) -> pd.DataFrame:
    """Per rank bin of a `matched_loss` table: the mean over the shared presentations of its
    log loss minus the top bin's (positive: the bin lags), n_points and the range compared.
    With a `run` column, per run."""
    if "run" in matched.columns:
        return _per_run(matched, loss_gap)
    if len(matched) == 0:
        return pd.DataFrame(columns=["rank_lo", "rank_hi", "log_loss_gap", "n_points"])
    top_lo = matched["rank_lo"].min()
    top = matched[matched["rank_lo"] == top_lo].set_index("presentations")["log_loss"]
    rows = []
    for (lo, hi), g in matched.groupby(["rank_lo", "rank_hi"], sort=True):
        g = g[g["presentations"].isin(top.index)]
        d = g["log_loss"].to_numpy() - top.loc[g["presentations"]].to_numpy()
        x = g["presentations"].to_numpy()
        rows.append(
            {
                "rank_lo": int(lo),
                "rank_hi": int(hi),
                "log_loss_gap": float(d.mean()) if len(d) else float("nan"),
                "n_points": len(d),
                "presentations_lo": float(x.min()) if len(x) else float("nan"),
                "presentations_hi": float(x.max()) if len(x) else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def group_lag(lag: pd.DataFrame) -> pd.DataFrame:
    """Seed band (groups.seed_band) of a per-run `bin_lag` table, per level and rank bin: the
    lag ratio in log space (lag_ratio_mean is the geometric mean over seeds, as
    groups.lag_summary), median presentations, n_reached and n_ranks."""
    return seed_band(
        lag,
        ["lag_ratio", "median_presentations", "n_reached", "n_ranks"],
        ["level", "rank_lo", "rank_hi"],
        log=["lag_ratio"],
    )


def group_gap(gap: pd.DataFrame) -> pd.DataFrame:
    """Seed band of a per-run `loss_gap` table."""
    return seed_band(gap, ["log_loss_gap"], ["rank_lo", "rank_hi"])
