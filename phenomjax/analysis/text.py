"""The tables `phenomjax analyze` prints, as text: memorized bits per run, presentations to reach
the thresholds per rank bin, and the lag per member (a run, or a seed group summarized over its
seeds by groups.lag_summary: the geometric mean with its [min, max] over seeds)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .binning import bin_label
from .groups import LAG_SUMMARY, lag_summary
from .pipeline import Analysis
from .settings import SummarySettings


def _count(v) -> int | str:
    """A recorded count, or "unknown" where the run does not record it."""
    try:
        return int(v) if v is not None and np.isfinite(float(v)) else "unknown"
    except (TypeError, ValueError):
        return "unknown"


def format_runs(runs: pd.DataFrame) -> str:
    """Memorized bits per run at its last evaluation; counts a run does not record: unknown."""
    shown = runs.drop(columns=["label"])
    n = [_count(v) for v in runs["n_params"]]  # legacy logs do not record it: unknown
    shown["n_params"] = n
    bpp = zip(runs["bits_per_param"], n, strict=True)
    shown["bits_per_param"] = [f"{b:.4g}" if isinstance(c, int) else "unknown" for b, c in bpp]
    for col in ("memorized_bits", "memorized_bits_unclipped", "bits_ceiling"):
        if shown[col].isna().any():  # e.g. no Bayes ceiling without the bits: unknown
            shown[col] = [f"{v:.4g}" if np.isfinite(v) else "unknown" for v in shown[col]]
    head = (
        "runs: memorized bits at the last evaluation, per sequence (L-1)(1 - loss/ln 2)\n"
        "clipped at 0 per sequence; unclipped; the Bayes floor's ceiling by the same formula"
    )
    return head + "\n" + shown.to_string(index=False)  # fmt: skip


def format_thresholds(thr: pd.DataFrame, s: SummarySettings, floor_known: bool) -> str:
    """Presentations each rank bin needs to reach the levels (ranks < 1000 shown)."""
    ref = "floor" if floor_known else "0 (no Bayes floor for these runs)"
    lines = [
        f"presentations to bring a bin's excess loss (loss - {ref}) to {s.reach_level:g} of its "
        "first value (loss level),",
        "and its accuracy deficit to the ceiling likewise (accuracy level)",
    ]
    cols = ["run", "rank_lo", "rank_hi", "presentations_to_loss_level",
            "presentations_to_accuracy_level"]  # fmt: skip
    if s.loss_threshold:
        cols.append("presentations_to_loss")
        lines.append(f"presentations_to_loss: to reach loss <= {s.loss_threshold:g} nats")
    if s.accuracy_threshold:
        cols.append("presentations_to_accuracy")
        lines.append(f"presentations_to_accuracy: to reach accuracy >= {s.accuracy_threshold:g}")
    cols += ["final_loss", "final_accuracy", "n_sequences"]
    lines.append("(ranks < 1000 shown; --export-summary has all)")
    head = thr[thr["rank_lo"] < 1000]
    return "\n".join(lines) + "\n" + head[[c for c in cols if c in head]].to_string(index=False)


def _group_cells(lags: pd.DataFrame, gaps: pd.DataFrame, levels: list, n_runs: int) -> dict:
    row = {}
    for lv in levels:
        x = lags[lags["level"] == lv]
        s = lag_summary(x["lag_ratio"])
        row[f"lag {lv:g}"] = str(s) if s.n == n_runs else f"{s} ({s.n}/{n_runs} seeds)"
    g = gaps["log_loss_gap"].to_numpy(np.float64) if len(gaps) else np.zeros(0)
    g = g[np.isfinite(g)]
    row["log-loss gap"] = (f"{g.mean():+.3f} [{g.min():+.3f}, {g.max():+.3f}]" if len(g) > 1
                           else f"{g[0]:+.3f}" if len(g) else "-")  # fmt: skip
    return row


def _run_cells(lags: pd.DataFrame, gaps: pd.DataFrame, levels: list) -> dict:
    row = {}
    for lv in levels:
        x = lags[lags["level"] == lv].iloc[0]
        ratio = f"{x.lag_ratio:.2f}" if np.isfinite(x.lag_ratio) else "-"
        row[f"lag {lv:g}"] = f"{ratio} ({x.n_reached}/{x.n_ranks})"
    ok = len(gaps) and gaps.n_points.iloc[0]
    row["log-loss gap"] = f"{gaps.log_loss_gap.iloc[0]:+.3f}" if ok else "-"
    return row


def lag_rows(a: Analysis) -> pd.DataFrame:
    """The printed lag table: one row per (member, rank bin), one column per level and the
    log-loss gap. A run's cell is "ratio (reached/ranks)"; a group's the lag_summary over its
    seeds, with "(k/N seeds)" where only k of its N seeds have a ratio."""
    levels = sorted(a.lags["level"].unique(), reverse=True)
    rows = []
    for m in a.members:
        lags, gaps = a.lags[a.lags.member == m.name], a.gaps[a.gaps.member == m.name]
        for (lo, hi), g in lags.groupby(["rank_lo", "rank_hi"], sort=True):
            gg = gaps[(gaps.rank_lo == lo) & (gaps.rank_hi == hi)]
            cells = (_group_cells(g, gg, levels, len(m.runs)) if m.group
                     else _run_cells(g, gg, levels))  # fmt: skip
            rows.append({"member": m.name, "bin": bin_label(int(lo), int(hi)), **cells})
    return pd.DataFrame(rows)


def format_lag(a: Analysis) -> str:
    top = a.lags.sort_values("rank_lo").iloc[0]
    lines = [
        "lag: presentations the median rank of each bin needs to bring (loss - floor) to the "
        "level's share of its initial value,",
        f"as a ratio to {bin_label(int(top.rank_lo), int(top.rank_hi))} (> 1: the bin lags; "
        "- : half or more of its ranks never reach the level);",
        "log-loss gap: mean log-loss difference to the top bin at equal presentations, read "
        "per rank",
    ]
    if not a.floor_known:
        lines.append("(no Bayes floor for these runs: floor 0, the levels are of loss)")
    for m in a.members:
        if m.group:
            lines.append(f"seed group {m.name}: lag as {LAG_SUMMARY.format(n=len(m.runs))}; "
                         "log-loss gap as mean [min, max] over seeds")  # fmt: skip
    return "\n".join(lines) + "\n" + lag_rows(a).to_string(index=False)


def format_analysis(a: Analysis, s: SummarySettings) -> str:
    """Every table analyze prints, in order."""
    with pd.option_context("display.width", 200, "display.max_columns", 20,
                           "display.float_format", "{:.4g}".format):  # fmt: skip
        return "\n\n".join([format_runs(a.runs), format_thresholds(a.thresholds, s, a.floor_known),
                            format_lag(a)])  # fmt: skip
