"""Rank bins (docs/design.md §5): per-sequence rows averaged over [rank_lo, rank_hi) at each step.

One pass, no per-bin filter: the bin of every row comes from np.searchsorted on the edges, the
(step, bin) group from a mixed-radix code, and every mean from np.bincount, so K = 100000 x 50
evaluations (5M rows) bin in a fraction of a second.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import DataError

HISTORICAL_EDGES = (0, 5, 10, 100, 200, 500, 1000)
# --rank-selection: one curve per listed rank; "all" (one curve per rank bin) is built in.
RANK_SELECTIONS: dict[str, tuple[int, ...]] = {
    "low": tuple(range(0, 10)),
    "mid": tuple(range(30, 40)),
    "high": tuple(range(60, 70)),
}
RANK_SELECTIONS["selected"] = (
    RANK_SELECTIONS["low"] + RANK_SELECTIONS["mid"] + RANK_SELECTIONS["high"]
)
GROUP_KEYS = ("run", "step", "position")  # grouped on when present, in this order
MEAN_COLUMNS = ("presentations", "loss", "accuracy", "floor", "excess_loss", "ceiling", "epoch")


def default_edges(K: int) -> np.ndarray:
    """The historical edges [0, 5, 10, 100, 200, 500, 1000], then every 1000, ending at K.

    >>> default_edges(100000)[:8].tolist(), int(default_edges(100000)[-1])
    ([0, 5, 10, 100, 200, 500, 1000, 2000], 100000)
    >>> default_edges(50).tolist()
    [0, 5, 10, 50]
    """
    if K < 1:
        raise DataError(f"K: expected >= 1, got {K}")
    edges = [e for e in HISTORICAL_EDGES if e < K]
    while edges[-1] + 1000 < K and edges[-1] >= 1000:
        edges.append(edges[-1] + 1000)
    edges.append(K)  # the last bin ends at K (the historical loop's last edge when K % 1000 == 0)
    return np.asarray(edges, dtype=np.int64)


def _codes(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Dense codes and sorted uniques; a sorted column (the stored order) skips the hashing."""
    v = col.to_numpy()
    if len(v) > 1 and v.dtype.kind in "iu" and bool(np.all(v[1:] >= v[:-1])):
        change = v[1:] != v[:-1]
        codes = np.concatenate(([0], np.cumsum(change, dtype=np.int64)))
        return codes, v[np.concatenate(([True], change))]
    codes, uniques = pd.factorize(col, sort=True)
    return codes.astype(np.int64), np.asarray(uniques)


def _bins(rank: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Bin index of each rank (-1 or nb outside the edges): a table lookup when every rank is
    inside and the span is modest (a gather beats a binary search), else searchsorted."""
    nb = len(e) - 1
    if len(rank) and e[-1] - e[0] <= 10_000_000 and rank.min() >= e[0] and rank.max() < e[-1]:
        lut = np.repeat(np.arange(nb, dtype=np.int64), np.diff(e))
        return lut[rank - e[0]] if e[0] else lut[rank]
    return np.searchsorted(e, rank, side="right") - 1


def _stored_groups(
    step: np.ndarray, rank: np.ndarray, e: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(first row, step, bin) of every non-empty (step, bin) group when the rows are stored
    step by step, ranks ascending within a step, every rank inside the edges (as run
    directories and legacy logs store them): one binary search of the edges per step instead
    of per-row group codes, so no row-sized integer temporaries. None when the rows are not so
    stored, or the steps are too many for a loop over them to pay."""
    n = len(rank)
    if n < 2 or step.dtype.kind not in "iu" or rank.dtype.kind not in "iu":
        return None
    cut = np.flatnonzero(step[1:] != step[:-1]) + 1  # first row of every step but the first
    if len(cut) * 64 > n or np.any(step[cut] < step[cut - 1]):
        return None
    n_down = np.count_nonzero(rank[1:] < rank[:-1])  # a rank below its predecessor
    if n_down > len(cut):
        return None
    first = np.concatenate(([0], cut))
    last = np.append(cut, n) - 1
    if n_down and np.count_nonzero(rank[first[1:]] < rank[last[:-1]]) != n_down:
        return None  # a descent inside a step: not stored rank by rank
    if rank[first].min() < e[0] or rank[last].max() >= e[-1]:
        return None
    starts, steps, bins = [], [], []
    for a, b in zip(first, last + 1, strict=True):
        pos = a + np.searchsorted(rank[a:b], e, side="left")  # row where each bin begins
        full = np.flatnonzero(pos[1:] > pos[:-1])
        starts.append(pos[full])
        bins.append(full)
        steps.append(np.full(len(full), step[a]))
    return np.concatenate(starts), np.concatenate(steps), np.concatenate(bins)


def bin_by_rank(
    table: pd.DataFrame, edges: Sequence[int] | np.ndarray | None = None
) -> pd.DataFrame:
    """Average a tidy table over rank bins at each step (and position, run when present).

    Columns: step, rank_lo, rank_hi, sequence_rank (mean rank), presentations, loss, accuracy,
    n_sequences, plus the means of floor / excess_loss / ceiling / epoch when present. Empty
    bins are left out; NaN metrics are left out of their means and counted in one warning.
    """
    for c in ("step", "rank", "presentations", "loss", "accuracy"):
        if c not in table.columns:
            raise DataError(f"bin_by_rank: table lacks column {c!r}; expected a load_run table")
    rank = table["rank"].to_numpy()
    if edges is None:
        K = int(table.attrs.get("run", {}).get("K") or (rank.max() + 1 if len(rank) else 1))
        edges = default_edges(max(K, int(rank.max()) + 1 if len(rank) else 1))
    e = np.asarray(edges, dtype=np.int64)
    if e.ndim != 1 or len(e) < 2 or np.any(np.diff(e) <= 0):
        raise DataError(f"edges: expected at least two strictly increasing ranks, got {e.tolist()}")
    nb = len(e) - 1
    keys = [k for k in GROUP_KEYS if k in table.columns]
    stored = _stored_groups(table["step"].to_numpy(), rank, e) if keys == ["step"] else None
    if stored is not None:
        starts, step_of, bin_of = stored
        count = np.diff(np.append(starts, len(rank)))

        def sums(v: np.ndarray) -> np.ndarray:
            return np.add.reduceat(v, starts, dtype=np.float64)

        out = {"step": step_of, "rank_lo": e[bin_of], "rank_hi": e[bin_of + 1]}
        return _means(table, rank, out, sums, count, lambda a: a)
    b = _bins(rank, e)
    inside = (b >= 0) & (b < nb)
    code = np.zeros(len(table), dtype=np.int64)
    uniques = []
    for k in keys:
        c, u = _codes(table[k])
        code = code * len(u) + c
        uniques.append(u)
    n_groups = int(np.prod([len(u) for u in uniques])) if uniques else 1
    every = bool(inside.all())  # the usual case: skip the boolean copies of every column
    sub = (lambda a: a) if every else (lambda a: a[inside])
    g = sub(code * nb + b)
    # Rows already grouped (run directories and legacy logs are stored step by step, rank by
    # rank): contiguous sums with reduceat, no float64 copy of each column. Else bincount.
    contiguous = len(g) > 0 and bool(np.all(g[1:] >= g[:-1]))
    if contiguous:
        starts = np.flatnonzero(np.concatenate(([True], g[1:] != g[:-1])))
        keep = g[starts]
        count = np.diff(np.append(starts, len(g)))

        def sums(v: np.ndarray) -> np.ndarray:
            return np.add.reduceat(v, starts, dtype=np.float64)
    else:
        size = n_groups * nb
        full = np.bincount(g, minlength=size)
        keep = np.flatnonzero(full)
        count = full[keep]

        def sums(v: np.ndarray) -> np.ndarray:
            return np.bincount(g, weights=v, minlength=size)[keep]

    out: dict[str, np.ndarray] = {}
    rest = keep // nb
    for k, u in zip(reversed(keys), reversed(uniques), strict=True):
        out[k] = u[rest % len(u)]
        rest = rest // len(u)
    out = {k: out[k] for k in keys}
    out["rank_lo"] = e[keep % nb]
    out["rank_hi"] = e[keep % nb + 1]
    return _means(table, rank, out, sums, count, sub)


def _means(table: pd.DataFrame, rank: np.ndarray, out: dict, sums, count, sub) -> pd.DataFrame:
    """The binned table: the key columns in `out`, then every mean; NaN left out and counted."""
    out["sequence_rank"] = sums(sub(rank)) / count
    dropped = {}
    for c in MEAN_COLUMNS:
        if c not in table.columns:
            continue
        v = sub(table[c].to_numpy())
        n = count
        with np.errstate(invalid="ignore"):  # inf - inf: its group is summed again below
            total = sums(v)
        # a NaN or an infinity makes its group's float64 sum non-finite, so finite sums (the
        # usual case) need no row-sized isfinite mask; integer columns cannot hold NaN
        if v.dtype.kind == "f" and not np.isfinite(total).all():
            fin = np.isfinite(v)
            if not fin.all():
                dropped[c] = int((~fin).sum())
                total = sums(np.where(fin, v, 0.0))
                n = sums(fin.astype(np.float64))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[c] = total / n
    out["n_sequences"] = count
    if dropped:
        warnings.warn(
            "bin_by_rank: left non-finite values out of the means: "
            + ", ".join(f"{n} in {c}" for c, n in dropped.items()),
            stacklevel=3,  # the caller of bin_by_rank
        )
    df = pd.DataFrame(out)
    df.attrs = dict(table.attrs)
    return df


def select_ranks(table: pd.DataFrame, ranks: Sequence[int]) -> pd.DataFrame:
    """The rows of the listed ranks (one curve each in the plots)."""
    return table[table["rank"].isin(np.asarray(ranks))].reset_index(drop=True)


def bin_label(lo: int, hi: int) -> str:
    return f"ranks {lo}-{hi - 1}" if hi - lo > 1 else f"rank {lo}"


def binned(table: pd.DataFrame, edges: np.ndarray, *, group: str | None = None) -> pd.DataFrame:
    """Rank-binned curves of a per-sequence table (step, rank, presentations, loss, accuracy).

    Uses the exact float `expected_presentations` when the table has it (expected-mode phenom
    runs round their int column). `group` names an extra key column (e.g. "member") binned
    separately. Returns step, rank_lo, rank_hi, presentations, loss, accuracy[, floor, ceiling].
    """
    t = table
    if "expected_presentations" in t.columns:
        t = t.assign(presentations=t["expected_presentations"].to_numpy())
    if group is not None:
        t = t.rename(columns={group: "run"})  # bin_by_rank groups on "run" when present
    keep = [c for c in ("run", "step", "rank", "presentations", "loss", "accuracy") if c in t]
    keep += [c for c in ("floor", "ceiling") if c in t.columns]
    b = bin_by_rank(t[keep], edges)
    if group is not None:
        b = b.rename(columns={"run": group})
    return b
