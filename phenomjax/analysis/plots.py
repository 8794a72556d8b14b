"""Figures of DESIGN 5, PNG and PDF. Each function returns the tidy data it drew.

Curves are drawn from a "curves" table (curve, order, presentations, step, loss, accuracy
[, floor]) built from either the selected ranks (one curve per rank) or the rank bins (one
curve per bin); a seed group's curves (groups.band) carry <metric>_lo / <metric>_hi and are
drawn as the mean with a min-max band. Presentations of 0 cannot sit on a log axis and are
left out of log plots. The Bayes floor is the mixture's optimum: it bounds the expected loss
over sequences sharing a prefix, not each sequence's loss, and the legends say so.
Headless unless a display exists and showing was asked for: `use_backend` picks Agg otherwise,
so nothing ever tries to open a window in a test or on a cluster node.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .binning import bin_label
from .settings import PlotSettings

LOSS_LABEL = "loss (nats)"
ACC_LABEL = "accuracy"
X_LABEL = "presentations"
FLOOR_LABEL = "Bayes floor (mixture optimum, not a per-sequence bound)"
CEILING_LABEL = "Bayes ceiling (mixture optimum)"


def floor_label(fresh_bits: bool = False) -> str:
    """The legend entry of floor lines; fresh_bits: a legacy log's floor computed from bits
    drawn afresh (the log does not store its own), so it is the floor of similar data only."""
    if fresh_bits:
        return "Bayes floor of fresh bits (legacy log; mixture optimum, not per sequence)"
    return FLOOR_LABEL


def has_display() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def use_backend(show: bool) -> bool:
    """Select Agg unless showing was asked for and a display exists; returns 'will show'."""
    import matplotlib

    interactive = show and has_display() and os.environ.get("MPLBACKEND", "").lower() != "agg"
    if not interactive:
        matplotlib.use("Agg", force=True)
    return interactive


@dataclasses.dataclass
class Drawn:
    data: pd.DataFrame  # what was drawn, tidy
    paths: list[Path]  # files written (empty when not saving)
    figure: object = None  # the matplotlib figure, closed unless it will be shown


def curves_from_ranks(ranks: pd.DataFrame, selection: list[int]) -> pd.DataFrame:
    df = ranks[ranks["rank"].isin(selection)].copy()
    df["curve"] = "rank " + df["rank"].astype(str)
    df["order"] = df["rank"].astype(np.int64)
    return df


def curves_from_bins(binned: pd.DataFrame) -> pd.DataFrame:
    df = binned.copy()
    df["curve"] = [bin_label(lo, hi) for lo, hi in zip(df["rank_lo"], df["rank_hi"], strict=True)]
    df["order"] = df["rank_lo"].astype(np.int64)
    return df


def _palette(name: str, n: int) -> list:
    import seaborn as sns

    return list(sns.color_palette(name, max(n, 1)))


def save_figure(fig, out_dir: Path | None, name: str, plot: PlotSettings, keep: bool) -> list[Path]:
    """Write `fig` as out_dir/name.<fmt> for each of plot.formats; close it unless `keep`."""
    import matplotlib.pyplot as plt

    paths = []
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for fmt in plot.formats:
            p = out_dir / f"{name}.{fmt}"
            fig.savefig(p, bbox_inches="tight", dpi=plot.dpi)
            paths.append(p)
    if not keep:
        plt.close(fig)
    return paths


def _draw_curves(ax, df, metric: str, colors: dict, style: str, floor: bool) -> pd.DataFrame:
    logy = metric == "loss"
    parts = []
    for curve, g in df.groupby("curve", sort=False):
        g = g.sort_values("step")
        g = g[(g["presentations"] > 0) & np.isfinite(g[metric])]
        if logy:
            g = g[g[metric] > 0]
        if len(g) == 0:
            continue
        c = colors[curve]
        lo, hi = f"{metric}_lo", f"{metric}_hi"
        if lo in g.columns and hi in g.columns and (g.get("n_runs", 1) > 1).any():
            ax.fill_between(g["presentations"], g[lo], g[hi], color=c, alpha=0.2, lw=0)
        if style == "scatter":
            ax.scatter(g["presentations"], g[metric], s=10, color=c, label=curve, alpha=0.8)
        else:
            ax.plot(g["presentations"], g[metric], "-", marker="D", ms=2, lw=1.6, color=c,
                    label=curve)  # fmt: skip
        ref = "floor" if metric == "loss" else "ceiling"
        if floor and ref in g.columns and np.isfinite(g[ref]).any():
            ax.axhline(float(g[ref].mean()), color=c, ls="--", lw=0.8, alpha=0.7)
        parts.append(g.assign(metric=metric, value=g[metric], style=style))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _axes(ax, metric: str, plot: PlotSettings, title: str) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.set_xscale("log")
    ax.set_xlabel(X_LABEL)
    if metric == "loss":
        ax.set_yscale("log")
        ax.set_ylabel(LOSS_LABEL)
        plain = FuncFormatter(lambda v, _: f"{v:g}")  # 0.6, not 6 x 10^-1
        ax.yaxis.set_major_formatter(plain)
        lo, hi = ax.get_ylim()
        if lo > 0 and hi / lo < 10:  # within a decade only minor ticks carry labels
            ax.yaxis.set_minor_formatter(plain)
            ax.tick_params(axis="y", which="minor", labelsize=7)
        if plot.loss_y_lim:
            ax.set_ylim(*plot.loss_y_lim)
    else:
        ax.set_ylabel(ACC_LABEL)
        if plot.accuracy_y_lim:
            ax.set_ylim(*plot.accuracy_y_lim)
    if plot.x_lim:
        ax.set_xlim(*plot.x_lim)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)


MAX_LEGEND = 20  # more curves than this get a colour bar of rank instead of a legend


def _legend(ax, plot: PlotSettings, n: int, floor_drawn: bool, ref: str = FLOOR_LABEL) -> None:
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    if n > MAX_LEGEND:
        handles, labels = [], []
    if floor_drawn:
        handles.append(Line2D([], [], color="gray", ls="--", lw=0.8))
        labels.append(f"{ref} (dashed)")
    if handles:
        ncol = plot.legend_ncol if n <= 12 else max(plot.legend_ncol, 2)
        ax.legend(handles, labels, loc=plot.legend_loc, ncol=ncol, fontsize=7, frameon=False)


def _rank_colorbar(fig, ax, order: list, curves: pd.DataFrame, palette: str) -> None:
    """Many curves: colour encodes the (first) rank of each, on a log scale."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, LogNorm

    starts = curves.drop_duplicates("curve").set_index("curve").loc[order]["order"].to_numpy()
    cmap = ListedColormap(_palette(palette, len(order)))
    sm = ScalarMappable(norm=LogNorm(max(starts.min(), 0) + 1, starts.max() + 1), cmap=cmap)
    fig.colorbar(sm, ax=ax, label="rank + 1 (first rank of the bin)")


def metric_figure(
    curves: pd.DataFrame,
    metric: str,
    *,
    plot: PlotSettings,
    title: str,
    style: str = "line",
    out_dir: Path | None = None,
    name: str = "figure",
    keep: bool = False,
) -> Drawn:
    """Loss (log-log) or accuracy (log x) against presentations, one curve per `curve`."""
    import matplotlib.pyplot as plt

    order = curves.drop_duplicates("curve").sort_values("order")["curve"].tolist()
    colors = dict(zip(order, _palette(plot.palette, len(order)), strict=True))
    fig, ax = plt.subplots(figsize=tuple(plot.figsize))
    cur = curves.set_index("curve").loc[order].reset_index()
    data = _draw_curves(ax, cur, metric, colors, style, plot.floor)
    _axes(ax, metric, plot, title)
    ref = "floor" if metric == "loss" else "ceiling"
    floor_drawn = plot.floor and ref in data.columns and bool(np.isfinite(data[ref]).any())
    fresh = bool(curves.attrs.get("run", {}).get("fresh_bits"))
    label = floor_label(fresh) if ref == "floor" else CEILING_LABEL
    _legend(ax, plot, len(order), floor_drawn, label)
    if len(order) > MAX_LEGEND:
        _rank_colorbar(fig, ax, order, curves, plot.palette)
    return Drawn(data, save_figure(fig, out_dir, name, plot, keep), fig if keep else None)


def comparative_figure(
    binned: pd.DataFrame,
    lo: int,
    hi: int,
    labels: dict[str, str],
    *,
    plot: PlotSettings,
    title: str = "",
    out_dir: Path | None = None,
    name: str = "comparative",
    keep: bool = False,
) -> Drawn:
    """One rank bin across runs: loss (log-log) and accuracy panels, one curve per run."""
    import matplotlib.pyplot as plt

    sub = binned[(binned["rank_lo"] == lo) & (binned["rank_hi"] == hi)].copy()
    runs = [r for r in labels if r in set(sub["run"])]
    sub["curve"] = sub["run"].map(labels)
    colors = dict(
        zip([labels[r] for r in runs], _palette(plot.run_palette, len(runs)), strict=True)
    )
    sub = sub[sub["run"].isin(runs)]
    fig, axs = plt.subplots(1, 2, figsize=(plot.figsize[0] * 1.5, plot.figsize[1]))
    parts = []
    for ax, metric in zip(axs, ("loss", "accuracy"), strict=True):
        parts.append(_draw_curves(ax, sub, metric, colors, "line", plot.floor))
        _axes(ax, metric, plot, f"{metric} vs presentations, {bin_label(lo, hi)}")
    data = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    floor_drawn = plot.floor and "floor" in data.columns and bool(np.isfinite(data["floor"]).any())
    fresh = bool(binned.attrs.get("run", {}).get("fresh_bits"))
    _legend(axs[0], plot, len(runs), floor_drawn, floor_label(fresh))
    ceil_drawn = (
        plot.floor and "ceiling" in data.columns and bool(np.isfinite(data["ceiling"]).any())
    )
    _legend(axs[1], plot, len(runs), ceil_drawn, CEILING_LABEL)
    fig.suptitle(f"{title}: {bin_label(lo, hi)}" if title else bin_label(lo, hi), fontsize=11)
    fig.tight_layout()
    return Drawn(data, save_figure(fig, out_dir, name, plot, keep), fig if keep else None)


def heatmap_figure(
    pos_binned: pd.DataFrame,
    *,
    plot: PlotSettings,
    title: str,
    metric: str = "loss",
    out_dir: Path | None = None,
    name: str = "heatmap",
    keep: bool = False,
) -> Drawn:
    """Rank bin x position heatmap of loss (nats) at the last evaluation."""
    import matplotlib.pyplot as plt

    last = pos_binned[pos_binned["step"] == pos_binned["step"].max()]
    pivot = last.pivot_table(index=["rank_lo", "rank_hi"], columns="position", values=metric)
    fig, ax = plt.subplots(figsize=tuple(plot.figsize))
    im = ax.imshow(pivot.to_numpy(), aspect="auto", cmap="magma_r", interpolation="nearest")
    ax.set_yticks(range(len(pivot.index)))
    ax.set_yticklabels([bin_label(lo, hi) for lo, hi in pivot.index], fontsize=7)
    cols = pivot.columns.to_numpy()
    step_ticks = max(1, len(cols) // 10)
    ax.set_xticks(range(0, len(cols), step_ticks))
    ax.set_xticklabels(cols[::step_ticks])
    ax.set_xlabel("position (predicted bit)")
    ax.set_ylabel("rank bin")
    fig.colorbar(im, ax=ax, label=LOSS_LABEL if metric == "loss" else ACC_LABEL)
    ax.set_title(f"{title} (step {int(last['step'].iloc[0])})", fontsize=10)
    data = pivot.reset_index()
    return Drawn(data, save_figure(fig, out_dir, name, plot, keep), fig if keep else None)


def lag_figure(
    lag: pd.DataFrame,
    *,
    plot: PlotSettings,
    title: str = "",
    out_dir: Path | None = None,
    name: str = "lag_ratio",
    keep: bool = False,
) -> Drawn:
    """Lag ratio against rank bin, one panel per level, one line per experiment: the mean over
    its runs with a min-max band where it has several (seeds). `lag` is a per-run
    lag.bin_lag table (run, level, rank_lo, rank_hi, lag_ratio) with an optional `experiment`
    column (default: each run is its own). Bins without a value (half or more of their ranks
    never reach the level) are left out."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    from .lag import seed_band

    df = lag.copy()
    if "run" not in df.columns:
        df["run"] = "run"
    if "experiment" not in df.columns:
        df["experiment"] = df["run"]
    band = seed_band(df, ["lag_ratio"], ["experiment", "level", "rank_lo", "rank_hi"])
    bins = band[["rank_lo", "rank_hi"]].drop_duplicates().sort_values("rank_lo")
    pos = {(lo, hi): i for i, (lo, hi) in enumerate(bins.itertuples(index=False))}
    band["x"] = [pos[(lo, hi)] for lo, hi in zip(band["rank_lo"], band["rank_hi"], strict=True)]
    levels = sorted(band["level"].unique(), reverse=True)
    exps = list(dict.fromkeys(df["experiment"]))
    colors = dict(zip(exps, _palette(plot.run_palette, len(exps)), strict=True))
    fig, axs = plt.subplots(
        1, len(levels), figsize=(plot.figsize[0] * 0.6 * len(levels), plot.figsize[1]),
        sharey=True, squeeze=False,
    )  # fmt: skip
    top = bin_label(*bins.iloc[0]) if len(bins) else "the top bin"
    for ax, level in zip(axs[0], levels, strict=True):
        for exp in exps:
            g = band[(band["experiment"] == exp) & (band["level"] == level)].sort_values("x")
            g = g[np.isfinite(g["lag_ratio_mean"]) & (g["lag_ratio_mean"] > 0)]
            if len(g) == 0:
                continue
            c = colors[exp]
            ax.plot(g["x"], g["lag_ratio_mean"], "-o", ms=4, color=c, label=str(exp))
            if (g["n_runs"] > 1).any():
                ax.fill_between(g["x"], g["lag_ratio_min"], g["lag_ratio_max"], color=c,
                                alpha=0.2, lw=0)  # fmt: skip
        ax.axhline(1.0, color="gray", ls="--", lw=0.8)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.set_xticks(range(len(bins)))
        ax.set_xticklabels([bin_label(lo, hi) for lo, hi in bins.itertuples(index=False)],
                           rotation=30, ha="right", fontsize=7)  # fmt: skip
        ax.set_xlabel("rank bin")
        ax.set_title(f"excess loss at {level:g} of its initial value", fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
    axs[0][0].set_ylabel(f"presentations ratio to {top} (median rank)")
    handles, labels = axs[0][0].get_legend_handles_labels()
    if handles:
        axs[0][0].legend(handles, labels, fontsize=7, frameon=False, loc=plot.legend_loc)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return Drawn(band, save_figure(fig, out_dir, name, plot, keep), fig if keep else None)
