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
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .binning import bin_label
from .settings import PlotSettings

LOSS_LABEL = "loss (nats)"
ACC_LABEL = "accuracy (fraction)"
X_LABEL = "presentations (count)"
FLOOR_LABEL = "Bayes floor (mixture optimum, not a per-sequence bound)"
CEILING_LABEL = "Bayes ceiling (mixture optimum)"
FLOOR_STYLE = {"ls": ":", "lw": 0.9, "alpha": 0.9}  # every reference line, in its curve's colour
QUALITATIVE_MAX = 10  # up to this many curves: distinct colours and one legend entry each
MAX_LEGEND = 20  # more rank bins than this: a log-spaced subset of MAX_BIN_CURVES is drawn
MAX_BIN_CURVES = 12


def floor_label(fresh_bits: bool = False) -> str:
    """The legend entry of floor lines; fresh_bits: a legacy log's floor computed from bits
    drawn afresh (the log does not store its own), so it is the floor of similar data only."""
    if fresh_bits:
        return "Bayes floor of fresh bits (legacy log; mixture optimum, not per sequence)"
    return FLOOR_LABEL


def reference_label(metric: str, fresh_bits: bool = False) -> str:
    """The style-only legend entry of the dotted reference lines of a loss or accuracy panel."""
    text = floor_label(fresh_bits) if metric == "loss" else CEILING_LABEL
    return f"dotted: {text}"


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


def thin_orders(orders: Sequence[int], most: int) -> list[int]:
    """At most `most` of the curves' first ranks, evenly spaced in log(rank + 1), the first and
    the last always among them: the representative subset drawn when there are too many bins.

    >>> thin_orders([0, 5, 10, 100, 200, 500, 1000, 2000, 3000], 4)
    [0, 10, 200, 3000]
    """
    o = np.asarray(sorted(set(int(x) for x in orders)), dtype=np.int64)
    if len(o) <= most:
        return o.tolist()
    x = np.log1p(o)
    picked = {int(np.abs(x - t).argmin()) for t in np.linspace(x[0], x[-1], most)}
    return o[sorted(picked)].tolist()


def rank_colormap(orders: Sequence[int], plot: PlotSettings):
    """(colormap, norm) of plot.palette over log(rank + 1): neighbouring ranks get neighbouring
    colours, so a colour bar reads them."""
    from matplotlib.colors import ListedColormap, LogNorm

    lo, hi = min(orders) + 1, max(orders) + 1
    return ListedColormap(_palette(plot.palette, 256)), LogNorm(lo, max(hi, lo + 1))


def curve_colors(orders: Sequence[int], plot: PlotSettings) -> list:
    """One colour per curve, in the given order: distinct qualitative colours
    (plot.run_palette) for up to QUALITATIVE_MAX curves, else plot.palette over log rank."""
    if len(orders) <= QUALITATIVE_MAX:
        return _palette(plot.run_palette, len(orders))[: len(orders)]
    cmap, norm = rank_colormap(orders, plot)
    return [tuple(cmap(norm(o + 1))) for o in orders]


def choose_curves(names: Sequence[str], orders: Sequence[int], bins: bool) -> tuple[list, str]:
    """(the curves drawn, a note for the title): every curve, or for more than MAX_LEGEND rank
    bins (paper scale: 109 at K = 100000) MAX_BIN_CURVES of them, log-spaced in rank."""
    if not bins or len(names) <= MAX_LEGEND:
        return list(names), ""
    keep = set(thin_orders(orders, MAX_BIN_CURVES))
    shown = [n for n, o in zip(names, orders, strict=True) if o in keep]
    return shown, f"{len(shown)} of {len(names)} rank bins, log-spaced in rank"


def draw_references(ax, refs: Sequence[tuple[float, object]], rel_gap: float = 0.02) -> bool:
    """Dotted reference lines (floors or ceilings), one per curve in its colour. Values closer
    than rel_gap to their neighbour (the floors of rare bins, which coincide) are summarized as
    one grey band from their min to their max rather than a stack of lines; returns whether a
    band was drawn."""
    vals = sorted((float(v), c) for v, c in refs if np.isfinite(v))
    groups: list[list] = []
    for v, c in vals:
        if groups and v <= groups[-1][-1][0] * (1 + rel_gap) + 1e-12:
            groups[-1].append((v, c))
        else:
            groups.append([(v, c)])
    band = False
    for g in groups:
        if len(g) == 1 or g[-1][0] <= g[0][0] * (1 + rel_gap / 10):  # one value: one line
            same = all(c == g[0][1] for _, c in g)
            ax.axhline(g[0][0], color=g[0][1] if same else "0.4", **FLOOR_STYLE)
        else:
            ax.axhspan(g[0][0], g[-1][0] * (1 + rel_gap / 4), color="0.55", alpha=0.3, lw=0)
            band = True
    return band


def _plain(v: float, _pos=None) -> str:
    return f"{v:g}" if v < 1000 else f"{v:,.0f}"


def format_log_axis(ax, which: str) -> None:
    """One tick style per log axis, applied once its limits are final. Presentations: powers of
    ten, or where the axis spans under two decades plain counts ("2,000") at 1-2-5 ticks. Loss:
    plain decimals ("0.6", "0.01") on major ticks, and on minor ticks only where the axis spans
    under a decade."""
    from matplotlib.ticker import FuncFormatter, LogFormatterMathtext, LogLocator, NullFormatter

    if which == "x":
        lo, hi = ax.get_xlim()
        if lo > 0 and hi / lo < 100:
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(_plain))
        else:
            ax.xaxis.set_major_formatter(LogFormatterMathtext())
        ax.xaxis.set_minor_formatter(NullFormatter())
        return
    lo, hi = ax.get_ylim()
    ax.yaxis.set_major_formatter(FuncFormatter(_plain))
    if lo > 0 and hi / lo < 10:
        ax.yaxis.set_minor_formatter(FuncFormatter(_plain))
        ax.tick_params(axis="y", which="minor", labelsize=7)
    else:
        ax.yaxis.set_minor_formatter(NullFormatter())


def fit_limits(ax, metric: str, values: np.ndarray, plot: PlotSettings) -> None:
    """y limits that hold every drawn value and reference line (a configured range is widened,
    never clipping a curve); accuracy is linear, loss logarithmic."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if metric == "loss":
        v = v[v > 0]
    if len(v) == 0:
        return
    lo, hi = float(v.min()), float(v.max())
    want = plot.loss_y_lim if metric == "loss" else plot.accuracy_y_lim
    if want:
        lo, hi = min(lo, want[0]), max(hi, want[1])
    if metric == "loss":
        pad = (hi / lo) ** 0.04 if hi > lo else 1.2
        ax.set_ylim(lo / pad, hi * pad)
    else:
        pad = 0.03 * (hi - lo) if hi > lo else 0.05
        ax.set_ylim(lo - pad, hi + pad)


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


def _draw_curves(ax, df, metric: str, colors: dict, style: str, floor: bool):
    """Draw each curve of `df` in its colour; returns (tidy rows drawn, the reference lines as
    (value, colour), whether a seed band was drawn). References are drawn by the caller."""
    logy = metric == "loss"
    parts, refs, banded = [], [], False
    ref = "floor" if metric == "loss" else "ceiling"
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
            banded = True
        if style == "scatter":
            ax.scatter(g["presentations"], g[metric], s=10, color=c, label=curve, alpha=0.8)
        else:
            ax.plot(g["presentations"], g[metric], "-", marker="D", ms=2, lw=1.6, color=c,
                    label=curve)  # fmt: skip
        if floor and ref in g.columns and np.isfinite(g[ref]).any():
            refs.append((float(g[ref].mean()), c))
        parts.append(g.assign(metric=metric, value=g[metric], style=style))
    data = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return data, refs, banded


def _axes(ax, metric: str, plot: PlotSettings, title: str, values) -> None:
    ax.set_xscale("log")
    ax.set_xlabel(X_LABEL)
    if metric == "loss":
        ax.set_yscale("log")
        ax.set_ylabel(LOSS_LABEL)
    else:
        ax.set_ylabel(ACC_LABEL)
    fit_limits(ax, metric, values, plot)
    if plot.x_lim:
        ax.set_xlim(*plot.x_lim)
    format_log_axis(ax, "x")
    if metric == "loss":
        format_log_axis(ax, "y")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)


def style_handles(metric: str, *, refs: bool, band: bool, seeds: bool, fresh_bits: bool):
    """Style-only legend entries (black or grey, whatever the curves' colours): the dotted
    reference lines, the band of coinciding references, the seed band."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    out = []
    if refs:
        out.append((Line2D([], [], color="k", **FLOOR_STYLE), reference_label(metric, fresh_bits)))
    if band:
        what = "floors" if metric == "loss" else "ceilings"
        out.append((Patch(color="0.6", alpha=0.25), f"grey band: {what} that coincide"))
    if seeds:
        out.append((Patch(color="k", alpha=0.2), "shaded: min-max over seeds"))
    return out


def place_legends(ax, plot: PlotSettings, curves: bool, styles: list) -> None:
    """The style entries below the axes, one row each (the axes' own legend); the curves'
    legend outside the axes on the right (or at plot.legend_loc when it is not "best"), in
    plot.legend_ncol columns."""
    from matplotlib.legend import Legend

    handles, labels = ax.get_legend_handles_labels()
    if styles:
        ax.legend([h for h, _ in styles], [t for _, t in styles], loc="upper center",
                  bbox_to_anchor=(0.5, -0.13), ncol=1, fontsize=7, frameon=False)  # fmt: skip
    if curves and handles:
        where = (
            {"loc": plot.legend_loc}
            if plot.legend_loc != "best"
            else {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "borderaxespad": 0.0}
        )
        leg = Legend(ax, handles, labels, ncol=plot.legend_ncol, fontsize=7, frameon=False,
                     **where)  # fmt: skip
        ax.add_artist(leg)
        leg.set_clip_on(False)  # drawn (and saved) outside the axes


def nice_ranks(lo: int, hi: int) -> list[int]:
    """Colour-bar ticks on a log(rank + 1) scale: lo, hi and 1-2-5 ranks between them."""
    nice = [m * 10**e for e in range(0, 7) for m in (1, 2, 5)]
    ticks = [lo, *[r for r in nice if lo < r < hi], hi]
    keep = [ticks[0]]
    for t in ticks[1:]:  # ticks closer than a fifth of a decade crowd each other
        if np.log10(t + 1) - np.log10(keep[-1] + 1) >= 0.2 or t == hi:
            keep.append(t)
    if len(keep) > 2 and np.log10(keep[-1] + 1) - np.log10(keep[-2] + 1) < 0.2:
        keep.pop(-2)
    return keep


def _rank_colorbar(fig, ax, orders: list[int], plot: PlotSettings) -> None:
    """Many rank curves: colour encodes the rank, on a log(rank + 1) scale, ticks at ranks."""
    from matplotlib.cm import ScalarMappable

    cmap, norm = rank_colormap(orders, plot)
    cb = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="rank")
    ticks = nice_ranks(min(orders), max(orders))
    cb.set_ticks([t + 1 for t in ticks])
    cb.set_ticklabels([str(t) for t in ticks])
    cb.ax.minorticks_off()


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
    """Loss (log-log) or accuracy (log x) against presentations, one curve per `curve`.

    Up to QUALITATIVE_MAX curves get distinct colours and a legend; more rank curves a
    sequential palette over log rank with a colour bar "rank"; more than MAX_LEGEND rank bins a
    log-spaced subset (the title says which). Floors (ceilings) are dotted in the curve's colour,
    a band where several coincide; the legend below says so in black."""
    import matplotlib.pyplot as plt

    first = curves.drop_duplicates("curve").sort_values("order")
    bins = "rank_lo" in curves.columns and "rank" not in curves.columns  # else one per rank
    order, note = choose_curves(first["curve"].tolist(), first["order"].tolist(), bins)
    starts = first.set_index("curve").loc[order, "order"].astype(np.int64).tolist()
    colors = dict(zip(order, curve_colors(starts, plot), strict=True))
    fig, ax = plt.subplots(figsize=tuple(plot.figsize))
    cur = curves.set_index("curve").loc[order].reset_index()
    data, refs, banded = _draw_curves(ax, cur, metric, colors, style, plot.floor)
    band = draw_references(ax, refs)
    values = [data[metric]] if len(data) else []
    for col in (f"{metric}_lo", f"{metric}_hi"):
        if col in data.columns:
            values.append(data[col])
    values.append(pd.Series([v for v, _ in refs], dtype=np.float64))
    full = title if not note else f"{title}\n({note})"
    _axes(ax, metric, plot, full, pd.concat(values, ignore_index=True) if values else [])
    many_ranks = not bins and len(order) > QUALITATIVE_MAX
    fresh = bool(curves.attrs.get("run", {}).get("fresh_bits"))
    styles = style_handles(metric, refs=bool(refs), band=band, seeds=banded, fresh_bits=fresh)
    place_legends(ax, plot, curves=not many_ranks, styles=styles)
    if many_ranks:
        _rank_colorbar(fig, ax, starts, plot)
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
        zip([labels[r] for r in runs], _palette(plot.run_palette, len(runs)), strict=False)
    )
    sub = sub[sub["run"].isin(runs)]
    fig, axs = plt.subplots(1, 2, figsize=(plot.figsize[0] * 1.5, plot.figsize[1]))
    parts = []
    fresh = bool(binned.attrs.get("run", {}).get("fresh_bits"))
    for i, (ax, metric) in enumerate(zip(axs, ("loss", "accuracy"), strict=True)):
        d, refs, banded = _draw_curves(ax, sub, metric, colors, "line", plot.floor)
        band = draw_references(ax, refs)
        vals = [d[metric]] if len(d) else []
        vals += [d[c] for c in (f"{metric}_lo", f"{metric}_hi") if c in d.columns]
        vals.append(pd.Series([v for v, _ in refs], dtype=np.float64))
        _axes(ax, metric, plot, f"{metric} vs presentations, {bin_label(lo, hi)}",
              pd.concat(vals, ignore_index=True))  # fmt: skip
        styles = style_handles(metric, refs=bool(refs), band=band, seeds=banded, fresh_bits=fresh)
        place_legends(ax, plot, curves=i == 1, styles=styles)
        parts.append(d)
    data = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
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
    # every bin is a row; with many (105 at K = 100000) evenly spaced rows carry a label
    los = [int(lo) for lo, _ in pivot.index]
    rows = sorted({int(round(i)) for i in np.linspace(0, len(los) - 1, min(len(los), 20))})
    ax.set_yticks(rows)
    ax.set_yticklabels([bin_label(*pivot.index[i]) for i in rows], fontsize=7)
    cols = pivot.columns.to_numpy()
    step_ticks = max(1, len(cols) // 10)
    ax.set_xticks(range(0, len(cols), step_ticks))
    ax.set_xticklabels(cols[::step_ticks])
    ax.set_xlabel("position (predicted bit)")
    ax.set_ylabel("rank bin" if len(rows) == len(los) else f"rank bin ({len(los)} rows)")
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
