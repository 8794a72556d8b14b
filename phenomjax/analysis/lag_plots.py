"""The lag figure (docs/design.md §5): each rank bin's lag ratio to the top bin, per level.

One panel per level, one line per experiment: a run's ratios, or a seed group's geometric mean
over seeds (groups.lag_summary, the summary every table prints) with its min-max band. What a
log axis would hide is drawn on purpose: a ratio of 0 (the bin's median rank reached the level
before it was ever presented) as a triangle on the bottom edge, and a point that only one seed
of a group reaches as a hollow marker.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from .binning import bin_label
from .figfiles import Drawn, save_figure
from .figstyle import FONT, palette
from .groups import LAG_SUMMARY, seed_band
from .settings import PlotSettings


def lag_band(lag: pd.DataFrame) -> pd.DataFrame:
    """Per (experiment, level, rank bin) of a per-run bin_lag table: the lag ratio's seed band
    in log space (lag_ratio_mean, _lo, _hi, _n), n_runs, and n_zero (runs whose ratio is 0)."""
    df = lag.copy()
    if "run" not in df.columns:
        df["run"] = "run"
    if "experiment" not in df.columns:
        df["experiment"] = df["run"]
    by = ["experiment", "level", "rank_lo", "rank_hi"]
    out = seed_band(df, ["lag_ratio"], by, log=["lag_ratio"])
    zero = df.assign(n_zero=(df["lag_ratio"] == 0).astype(np.int64)).groupby(by)["n_zero"].sum()
    return out.merge(zero.reset_index(), on=by, how="left")


def _legend_label(exp: str, n_runs: int) -> str:
    return str(exp) if n_runs <= 1 else f"{exp}: {LAG_SUMMARY.format(n=n_runs)} (line, shaded)"


def _draw_level(ax, band: pd.DataFrame, level: float, exps: list, colors: dict) -> dict:
    """One level's panel; returns which marker styles it used (for the legend)."""
    used = {"hollow": False, "zero": False}
    for exp in exps:
        g = band[(band["experiment"] == exp) & (band["level"] == level)].sort_values("x")
        c = colors[exp]
        ok = g[g["lag_ratio_n"] > 0]
        label = _legend_label(exp, int(g["n_runs"].max()) if len(g) else 1)
        ax.plot(ok["x"], ok["lag_ratio_mean"], "-", color=c, label=label)
        solid = ok[(ok["lag_ratio_n"] > 1) | (ok["n_runs"] == 1)]
        one = ok[(ok["lag_ratio_n"] == 1) & (ok["n_runs"] > 1)]
        ax.plot(solid["x"], solid["lag_ratio_mean"], "o", ms=5, color=c)
        ax.plot(one["x"], one["lag_ratio_mean"], "o", ms=6, mfc="white", mec=c, mew=1.5)
        used["hollow"] |= len(one) > 0
        banded = ok[ok["n_runs"] > 1]
        if len(banded):
            ax.fill_between(banded["x"], banded["lag_ratio_lo"], banded["lag_ratio_hi"],
                            color=c, alpha=0.2, lw=0)  # fmt: skip
        zero = g[(g["n_zero"] > 0) & (g["lag_ratio_n"] == 0)]
        for x in zero["x"]:  # 0 has no place on a log axis: on its bottom edge, marked
            ax.plot([x], [0.03], "v", ms=7, color=c, transform=ax.get_xaxis_transform(),
                    clip_on=False)  # fmt: skip
        used["zero"] |= len(zero) > 0
    return used


def _legend(fig, ax, used: dict) -> None:
    """One legend below the panels: the experiments' lines, then what the markers mean."""
    handles, labels = ax.get_legend_handles_labels()
    if used["hollow"]:
        handles.append(Line2D([], [], ls="", marker="o", mfc="white", mec="k"))
        labels.append("hollow: only one seed reaches the level")
    if used["zero"]:
        handles.append(Line2D([], [], ls="", marker="v", color="k"))
        labels.append("triangle on the bottom edge: ratio 0 (reached before any presentation)")
    if handles:
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=1,
                   fontsize=FONT, frameon=False)  # fmt: skip


def lag_figure(
    lag: pd.DataFrame,
    *,
    plot: PlotSettings,
    title: str = "",
    out_dir: Path | None = None,
    name: str = "lag_ratio",
    keep: bool = False,
):
    """Lag ratio against rank bin, one panel per level, one line per experiment (see the module
    docstring). `lag` is a per-run lag.bin_lag table (run, level, rank_lo, rank_hi, lag_ratio)
    with an optional `experiment` column (default: each run is its own). A bin none of whose
    runs has a ratio (half or more of its ranks never reach the level) has no point."""
    band = lag_band(lag)
    exps = list(dict.fromkeys(lag["experiment"] if "experiment" in lag else band["experiment"]))
    return band_figure(band, exps, plot=plot, title=title, out_dir=out_dir, name=name, keep=keep)


def band_figure(
    band: pd.DataFrame,
    exps: list,
    *,
    plot: PlotSettings,
    title: str = "",
    out_dir: Path | None = None,
    name: str = "lag_ratio",
    keep: bool = False,
):
    """The lag figure of a banded table (lag_band's columns: experiment, level, rank_lo,
    rank_hi, lag_ratio_mean, _lo, _hi, _n, n_runs, n_zero), experiments drawn in `exps` order;
    a fit's report holds its lag in this form (fitting.html)."""
    band = band.copy()
    bins = band[["rank_lo", "rank_hi"]].drop_duplicates().sort_values("rank_lo")
    pos = {(lo, hi): i for i, (lo, hi) in enumerate(bins.itertuples(index=False))}
    band["x"] = [pos[(lo, hi)] for lo, hi in zip(band["rank_lo"], band["rank_hi"], strict=True)]
    levels = sorted(band["level"].unique(), reverse=True)
    colors = dict(zip(exps, palette(plot.run_palette, len(exps)), strict=True))
    fig, axs = plt.subplots(
        1, len(levels), figsize=(plot.figsize[0] * 0.6 * len(levels), plot.figsize[1]),
        sharey=True, squeeze=False,
    )  # fmt: skip
    top = bin_label(*bins.iloc[0]) if len(bins) else "the top bin"
    used = {"hollow": False, "zero": False}
    for ax, level in zip(axs[0], levels, strict=True):
        for k, v in _draw_level(ax, band, level, exps, colors).items():
            used[k] |= v
        ax.axhline(1.0, color="gray", ls="--", lw=0.8)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.tick_params(axis="y", which="minor", labelsize=FONT)
        ax.set_xticks(range(len(bins)))
        ax.set_xticklabels([bin_label(lo, hi) for lo, hi in bins.itertuples(index=False)],
                           rotation=30, ha="right", fontsize=FONT)  # fmt: skip
        ax.set_xlabel("rank bin")
        ax.set_title(f"excess loss at {level:g} of its initial value", fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
    axs[0][0].set_ylabel(f"presentations ratio to {top} (median rank)")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    _legend(fig, axs[0][0], used)
    data = band.drop(columns="x")
    return Drawn(data, save_figure(fig, out_dir, name, plot, keep, data), fig if keep else None)
