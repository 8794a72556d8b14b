"""The look every figure shares: labels, colours, axes, reference lines and legends.

Curves are drawn from one presentation on (a bin mean below 1 mixes ranks never seen with ranks
seen once and is no point of any curve, docs/design.md §5), so log axes start at 1. Legends and
tick labels are at least FONT points at the configured figure size. Reference lines (the Bayes
floor per curve, the ceiling for accuracy) that coincide within REF_GROUP of each other are
drawn once, in grey. Headless unless a display exists and showing was asked for: `use_backend`
picks Agg otherwise, so nothing ever tries to open a window in a test or on a cluster node.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogFormatterMathtext, LogLocator, NullFormatter

from .settings import PlotSettings

LOSS_LABEL = "loss (nats)"
ACC_LABEL = "accuracy (fraction)"
X_LABEL = "presentations (count)"
FLOOR_LABEL = "Bayes floor (mixture optimum, not a per-sequence bound)"
CEILING_LABEL = "Bayes ceiling (mixture optimum)"
FLOOR_STYLE = {"ls": ":", "lw": 0.9, "alpha": 0.9}  # every reference line, in its curve's colour
FONT = 8  # points: the smallest text of a figure (legends, tick labels) at its printed size
REF_GROUP = 0.05  # reference lines within 5 % of the smallest of their group are drawn once
MIN_PRESENTATIONS = 1.0  # curves start here
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
    interactive = show and has_display() and os.environ.get("MPLBACKEND", "").lower() != "agg"
    if not interactive:
        matplotlib.use("Agg", force=True)
    return interactive


def show() -> None:
    """Open the figures kept open (after `use_backend(True)` found a display)."""
    plt.show()


def palette(name: str, n: int) -> list:
    """n colours of a seaborn or matplotlib palette."""
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
    lo, hi = min(orders) + 1, max(orders) + 1
    return ListedColormap(palette(plot.palette, 256)), LogNorm(lo, max(hi, lo + 1))


def curve_colors(orders: Sequence[int], plot: PlotSettings) -> list:
    """One colour per curve, in the given order: distinct qualitative colours
    (plot.run_palette) for up to QUALITATIVE_MAX curves, else plot.palette over log rank."""
    if len(orders) <= QUALITATIVE_MAX:
        return palette(plot.run_palette, len(orders))[: len(orders)]
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


def group_references(values: Sequence[float], rel: float = REF_GROUP) -> list[list[int]]:
    """Indices of the finite values in groups that coincide: sorted ascending, a value joins
    the group of its smaller neighbour when within a factor (1 + rel) of it.

    >>> group_references([0.50, 0.2, 0.51, 0.70, 0.52, 0.54])
    [[1], [0, 2, 4, 5], [3]]
    """
    v = np.asarray(values, dtype=np.float64)
    order = [int(i) for i in np.argsort(v, kind="stable") if np.isfinite(v[i])]
    groups: list[list[int]] = []
    for i in order:
        if groups and v[i] <= v[groups[-1][-1]] * (1 + rel) + 1e-12:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def draw_references(ax, refs: Sequence[tuple[float, object]], rel_gap: float = REF_GROUP) -> bool:
    """Dotted reference lines (floors or ceilings), one per curve in its colour. Values that
    coincide (`group_references`, as the floors of rare bins do) are drawn once in grey: one
    line at their mean where they span less than rel_gap, else a band over their range.
    Returns whether anything was merged."""
    values = [float(v) for v, _ in refs]
    merged = False
    for g in group_references(values, rel_gap):
        if len(g) == 1:
            ax.axhline(values[g[0]], color=refs[g[0]][1], **FLOOR_STYLE)
            continue
        lo, hi = min(values[i] for i in g), max(values[i] for i in g)
        if hi <= lo * (1 + rel_gap):
            ax.axhline(float(np.mean([values[i] for i in g])), color="0.4", **FLOOR_STYLE)
        else:
            ax.axhspan(lo, hi, color="0.55", alpha=0.25, lw=0)
        merged = True
    return merged


def _plain(v: float, _pos=None) -> str:
    return f"{v:g}" if v < 1000 else f"{v:,.0f}"


def format_log_axis(ax, which: str) -> None:
    """One tick style per log axis, applied once its limits are final. Presentations: powers of
    ten, or where the axis spans under two decades plain counts ("2,000") at 1-2-5 ticks. Loss:
    plain decimals ("0.6", "0.01") on major ticks, and on minor ticks only where the axis spans
    under a decade."""
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
        ax.tick_params(axis="y", which="minor", labelsize=FONT)
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


def style_axes(ax, metric: str, plot: PlotSettings, title: str, values) -> None:
    """Log presentations on x, log loss or linear accuracy on y, limits, ticks, title, grid."""
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


def style_handles(
    metric: str, *, refs: bool, band: bool, seeds: bool, fresh_bits: bool, sparse: int = 0
):
    """Style-only legend entries (black or grey, whatever the curves' colours): the dotted
    reference lines, the merged ones, the seed band, and the dashed bins of too few sequences
    (sparse: the threshold, 0 when no bin is that small)."""
    out = []
    if refs:
        out.append((Line2D([], [], color="k", **FLOOR_STYLE), reference_label(metric, fresh_bits)))
    if band:
        what = "floors" if metric == "loss" else "ceilings"
        out.append((Patch(color="0.55", alpha=0.35),
                    f"grey: {what} that coincide (within {REF_GROUP:.0%} of a neighbour), "
                    "one line or a band over their range"))  # fmt: skip
    if seeds:
        out.append((Patch(color="k", alpha=0.2), "shaded: min-max over seeds"))
    if sparse:
        out.append(
            (
                Line2D([], [], color="k", ls="--", lw=1.0),
                f"dashed: a remnant bin of fewer than {sparse} sequences (noisy)",
            )
        )
    return out


def place_legends(ax, plot: PlotSettings, curves: bool, styles: list) -> None:
    """The style entries below the axes, one row each (the axes' own legend); the curves'
    legend outside the axes on the right (or at plot.legend_loc when it is not "best"), in
    plot.legend_ncol columns."""
    handles, labels = ax.get_legend_handles_labels()
    if styles:
        ax.legend([h for h, _ in styles], [t for _, t in styles], loc="upper center",
                  bbox_to_anchor=(0.5, -0.13), ncol=1, fontsize=FONT, frameon=False)  # fmt: skip
    if curves and handles:
        where = (
            {"loc": plot.legend_loc}
            if plot.legend_loc != "best"
            else {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "borderaxespad": 0.0}
        )
        leg = Legend(ax, handles, labels, ncol=plot.legend_ncol, fontsize=FONT, frameon=False,
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


def rank_colorbar(fig, ax, orders: list[int], plot: PlotSettings) -> None:
    """Many rank curves: colour encodes the rank, on a log(rank + 1) scale, ticks at ranks."""
    cmap, norm = rank_colormap(orders, plot)
    cb = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="rank")
    ticks = nice_ranks(min(orders), max(orders))
    cb.set_ticks([t + 1 for t in ticks])
    cb.set_ticklabels([str(t) for t in ticks])
    cb.ax.minorticks_off()
