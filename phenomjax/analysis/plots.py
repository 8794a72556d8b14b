"""Figures of docs/design.md §5, PNG and PDF with the tidy data they drew as CSV beside them.

Curves are drawn from a "curves" table (curve, order, presentations, step, loss, accuracy
[, floor, ceiling, n_sequences]) built from the selected ranks (one curve per rank), from blocks
of consecutive selected ranks, or from the rank bins (one curve per bin); a seed group's curves
(groups.band) carry <metric>_lo / <metric>_hi and are drawn as the mean with a min-max band.
The look (labels, colours, reference lines, legends) is figstyle's; where files go, figfiles'.
The Bayes floor is the mixture's optimum: it bounds the expected loss over sequences sharing a
prefix, not each sequence's loss, and the legends say so.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .binning import bin_by_rank, bin_label
from .figfiles import Drawn, save_figure
from .figstyle import (
    ACC_LABEL,
    FLOOR_STYLE,
    FONT,
    LOSS_LABEL,
    MIN_PRESENTATIONS,
    QUALITATIVE_MAX,
    X_LABEL,
    choose_curves,
    curve_colors,
    draw_references,
    fit_limits,
    format_log_axis,
    palette,
    place_legends,
    rank_colorbar,
    reference_label,
    style_axes,
    style_handles,
    use_backend,
)
from .lag_plots import lag_figure
from .settings import PlotSettings

# What overlay.py and capacity_plots.py import from here (their home is figstyle / figfiles).
_palette = palette
__all__ = [
    "ACC_LABEL", "FLOOR_STYLE", "LOSS_LABEL", "X_LABEL", "Drawn", "choose_curves",
    "curve_colors", "curves_from_bins", "curves_from_blocks", "curves_from_ranks",
    "comparative_figure", "draw_references", "fit_limits", "format_log_axis", "heatmap_figure",
    "lag_figure", "metric_figure", "rank_blocks", "reference_label", "save_figure", "use_backend",
]  # fmt: skip
MIN_SEQUENCES = 20  # a remnant bin of fewer sequences is drawn dashed: its mean is noisy


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


def rank_blocks(selection: list[int]) -> list[tuple[int, int]]:
    """The selection as blocks [lo, hi) of consecutive ranks.

    >>> rank_blocks([0, 1, 2, 30, 31, 60])
    [(0, 3), (30, 32), (60, 61)]
    """
    r = sorted(set(int(x) for x in selection))
    blocks: list[list[int]] = []
    for x in r:
        if blocks and x == blocks[-1][1]:
            blocks[-1][1] = x + 1
        else:
            blocks.append([x, x + 1])
    return [(lo, hi) for lo, hi in blocks]


def curves_from_blocks(ranks: pd.DataFrame, selection: list[int]) -> pd.DataFrame:
    """One curve per block of consecutive selected ranks (`rank_blocks`), each the mean over
    its ranks at every step, as a rank bin is: what a seed group draws for a selection of more
    than QUALITATIVE_MAX ranks, so its bands stay readable."""
    blocks = rank_blocks(selection)
    edges = sorted({e for b in blocks for e in b})
    rows = ranks[ranks["rank"].isin(selection)]
    keep = [c for c in ("step", "rank", "presentations", "loss", "accuracy", "floor", "ceiling")
            if c in rows.columns]  # fmt: skip
    b = bin_by_rank(rows[keep], edges)
    b = b[[(lo, hi) in set(blocks) for lo, hi in zip(b.rank_lo, b.rank_hi, strict=True)]]
    return curves_from_bins(b.reset_index(drop=True))


def remnant_bins(table: pd.DataFrame) -> dict[tuple[int, int], int]:
    """{(rank_lo, rank_hi): sequences} of the bins of fewer than MIN_SEQUENCES sequences that
    are narrower than the bin before them: the remnant a last edge at K leaves (ranks 500-511
    of K = 512), whose mean over a few rarely presented ranks is noise. The narrow top bins
    (0-4, 5-9) hold few but well-trained sequences and are not remnants.

    >>> t = pd.DataFrame({"rank_lo": [0, 5, 200, 500], "rank_hi": [5, 10, 500, 512],
    ...                   "n_sequences": [5, 5, 300, 12]})
    >>> remnant_bins(t)
    {(500, 512): 12}
    """
    if not {"rank_lo", "rank_hi", "n_sequences"} <= set(table.columns):
        return {}
    n = table.groupby(["rank_lo", "rank_hi"], sort=True)["n_sequences"].min()
    out, width = {}, None
    for (lo, hi), k in n.items():
        if width is not None and hi - lo < width and k < MIN_SEQUENCES:
            out[(int(lo), int(hi))] = int(k)
        width = hi - lo
    return out


def _draw_curves(ax, df, metric: str, colors: dict, style: str, floor: bool, few: dict):
    """Draw each curve of `df` in its colour from one presentation on; the remnant bins
    (`few`: curve -> sequences) dashed. Returns (tidy rows drawn, the reference lines as
    (value, colour), whether a seed band was drawn, whether a remnant bin was drawn)."""
    parts, refs, banded, sparse = [], [], False, False
    ref = "floor" if metric == "loss" else "ceiling"
    for curve, g in df.groupby("curve", sort=False):
        g = g.sort_values("step")
        g = g[(g["presentations"] >= MIN_PRESENTATIONS) & np.isfinite(g[metric])]
        if metric == "loss":
            g = g[g[metric] > 0]
        if len(g) == 0:
            continue
        c = colors[curve]
        thin = curve in few
        label = f"{curve} ({few[curve]} seq.)" if thin else curve
        sparse |= thin
        lo, hi = f"{metric}_lo", f"{metric}_hi"
        if lo in g.columns and hi in g.columns and (g.get("n_runs", 1) > 1).any():
            ax.fill_between(g["presentations"], g[lo], g[hi], color=c, alpha=0.2, lw=0)
            banded = True
        if style == "scatter":
            ax.scatter(g["presentations"], g[metric], s=10, color=c, label=label,
                       alpha=0.4 if thin else 0.8)  # fmt: skip
        else:
            ax.plot(g["presentations"], g[metric], "--" if thin else "-", marker="D", ms=2,
                    lw=1.0 if thin else 1.6, color=c, label=label)  # fmt: skip
        if floor and ref in g.columns and np.isfinite(g[ref]).any():
            refs.append((float(g[ref].mean()), c))
        parts.append(g.assign(metric=metric, value=g[metric], style=style))
    data = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return data, refs, banded, sparse


def _limits_values(data: pd.DataFrame, metric: str, refs: list) -> pd.Series:
    """Every value the y axis must hold: the curves, their bands, the reference lines."""
    vals = [data[metric]] if len(data) else []
    vals += [data[c] for c in (f"{metric}_lo", f"{metric}_hi") if c in data.columns]
    vals.append(pd.Series([v for v, _ in refs], dtype=np.float64))
    return pd.concat(vals, ignore_index=True)


def _panel(ax, sub, metric, colors, style, plot, title, fresh, curves: bool, few: dict):
    """One loss or accuracy panel: curves, references, axes and legends; the rows drawn."""
    data, refs, banded, sparse = _draw_curves(ax, sub, metric, colors, style, plot.floor, few)
    merged = draw_references(ax, refs)
    style_axes(ax, metric, plot, title, _limits_values(data, metric, refs))
    styles = style_handles(metric, refs=bool(refs), band=merged, seeds=banded, fresh_bits=fresh,
                           sparse=MIN_SEQUENCES if sparse else 0)  # fmt: skip
    place_legends(ax, plot, curves=curves, styles=styles)
    return data


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
    one grey line where several coincide; the legend below says so in black."""
    first = curves.drop_duplicates("curve").sort_values("order")
    bins = "rank_lo" in curves.columns and "rank" not in curves.columns  # else one per rank
    order, note = choose_curves(first["curve"].tolist(), first["order"].tolist(), bins)
    starts = first.set_index("curve").loc[order, "order"].astype(np.int64).tolist()
    colors = dict(zip(order, curve_colors(starts, plot), strict=True))
    fig, ax = plt.subplots(figsize=tuple(plot.figsize))
    cur = curves.set_index("curve").loc[order].reset_index()
    many_ranks = not bins and len(order) > QUALITATIVE_MAX
    fresh = bool(curves.attrs.get("run", {}).get("fresh_bits"))
    full = title if not note else f"{title}\n({note})"
    few = {bin_label(lo, hi): n for (lo, hi), n in remnant_bins(curves).items()} if bins else {}
    data = _panel(ax, cur, metric, colors, style, plot, full, fresh, not many_ranks, few)
    if many_ranks:
        rank_colorbar(fig, ax, starts, plot)
    return Drawn(data, save_figure(fig, out_dir, name, plot, keep, data), fig if keep else None)


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
    sub = binned[(binned["rank_lo"] == lo) & (binned["rank_hi"] == hi)].copy()
    runs = [r for r in labels if r in set(sub["run"])]
    sub["curve"] = sub["run"].map(labels)
    colors = dict(zip([labels[r] for r in runs], palette(plot.run_palette, len(runs)),
                      strict=False))  # fmt: skip
    sub = sub[sub["run"].isin(runs)]
    fig, axs = plt.subplots(1, 2, figsize=(plot.figsize[0] * 1.5, plot.figsize[1]))
    fresh = bool(binned.attrs.get("run", {}).get("fresh_bits"))
    n = remnant_bins(binned).get((lo, hi))
    few = {labels[r]: n for r in runs} if n else {}
    parts = [
        _panel(ax, sub, metric, colors, "line", plot,
               f"{metric} vs presentations, {bin_label(lo, hi)}", fresh, i == 1, few)
        for i, (ax, metric) in enumerate(zip(axs, ("loss", "accuracy"), strict=True))
    ]  # fmt: skip
    data = pd.concat(parts, ignore_index=True)
    fig.suptitle(f"{title}: {bin_label(lo, hi)}" if title else bin_label(lo, hi), fontsize=11)
    fig.tight_layout()
    return Drawn(data, save_figure(fig, out_dir, name, plot, keep, data), fig if keep else None)


def _heat_panel(ax, pivot: pd.DataFrame, what: str, vmax: float):
    im = ax.imshow(pivot.to_numpy(), aspect="auto", cmap="magma_r", interpolation="nearest",
                   vmin=0.0, vmax=vmax)  # fmt: skip
    cols = pivot.columns.to_numpy()
    step = max(1, len(cols) // 10)
    ax.set_xticks(range(0, len(cols), step))
    ax.set_xticklabels(cols[::step], fontsize=FONT)
    ax.set_xlabel("position (predicted bit)")
    ax.set_title(what, fontsize=10)
    return im


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
    """Rank bin x position heatmap of loss (nats) at the last evaluation; where the Bayes floor
    is known, beside it the floor and the excess loss (loss - floor) on the same colour scale,
    so a prefix the mixture itself cannot resolve (high floor, no excess) is told from one the
    model has not learned (high excess)."""
    last = pos_binned[pos_binned["step"] == pos_binned["step"].max()]
    cols = [metric] + (["floor", "excess_loss"] if metric == "loss" and "floor" in last else [])
    pivots = {c: last.pivot_table(index=["rank_lo", "rank_hi"], columns="position", values=c)
              for c in cols}  # fmt: skip
    names = {"loss": "loss", "accuracy": "accuracy", "floor": "Bayes floor",
             "excess_loss": "excess loss (loss - floor)"}  # fmt: skip
    w = plot.figsize[0] * (1.0 if len(cols) == 1 else 1.7)
    fig, axs = plt.subplots(1, len(cols), figsize=(w, plot.figsize[1]), sharey=True,
                            squeeze=False)  # fmt: skip
    vmax = float(np.nanmax([np.nanmax(p.to_numpy()) for p in pivots.values()]))
    for ax, c in zip(axs[0], cols, strict=True):
        im = _heat_panel(ax, pivots[c], names[c], vmax if metric == "loss" else 1.0)
    index = pivots[metric].index
    # every bin is a row; with many (105 at K = 100000) evenly spaced rows carry a label
    rows = sorted({int(round(i)) for i in np.linspace(0, len(index) - 1, min(len(index), 20))})
    axs[0][0].set_yticks(rows)
    few = remnant_bins(last)  # a remnant bin says so: its row is noisy
    axs[0][0].set_yticklabels(
        [bin_label(*index[i]) + (f" ({few[index[i]]} seq.)" if index[i] in few else "")
         for i in rows], fontsize=FONT,
    )  # fmt: skip
    axs[0][0].set_ylabel("rank bin" if len(rows) == len(index) else f"rank bin ({len(index)} rows)")
    fig.colorbar(im, ax=list(axs[0]), label=LOSS_LABEL if metric == "loss" else ACC_LABEL)
    fig.suptitle(f"{title} (step {int(last['step'].iloc[0])})", fontsize=10)
    data = pd.concat([p.reset_index().melt(id_vars=["rank_lo", "rank_hi"], var_name="position",
                                           value_name="value").assign(quantity=c)
                      for c, p in pivots.items()], ignore_index=True)  # fmt: skip
    return Drawn(data, save_figure(fig, out_dir, name, plot, keep, data), fig if keep else None)
