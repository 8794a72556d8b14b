"""Figures of the capacity experiment (docs/design.md §9), PNG and PDF, from its tables.

- `memorized_figure`: memorized bits against dataset bits per model size (log-log); the
  dataset bits (y = x) and the Bayes ceiling bound it from above, the plateau is the capacity;
  each transformer size has its 3.6 bits/parameter level (Morris et al. 2025) as a dotted line;
- `capacity_figure`: capacity against parameters with the fitted bits per parameter and its
  interval, and the published 3.6 bits/parameter as a reference line;
- `presentations_figure`: presentations for a rank to reach half its initial excess loss,
  against parameters, per rank bin, with the fitted power laws.

Hollow markers are runs that did not converge within their step budget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .plots import _palette, save_figure, use_backend
from .settings import PlotSettings

MORRIS = 3.6  # bits per parameter, Morris et al. 2025 (arXiv 2505.24832)
MORRIS_LABEL = "3.6 bits/param (Morris et al. 2025)"


def _label(row: pd.Series) -> str:
    if row["model"] == "transformer":
        size = f"{int(row['n_layer'])}L {int(row['n_head'])}H x {int(row['head_dim'])}"
        return f"transformer {size} ({int(row['params'])} params)"
    return f"phenom w={int(row['w'])} d={int(row['d'])} ({int(row['params'])} params)"


def _points(ax, x, y, conv, color, marker, label, line: str) -> None:
    ax.plot(x, y, line, color=color, lw=1.2, alpha=0.8)
    conv = np.asarray(conv, bool)
    ax.scatter(x[conv], y[conv], color=color, marker=marker, zorder=3, label=label)
    if (~conv).any():
        ax.scatter(x[~conv], y[~conv], facecolors="none", edgecolors=color, marker=marker, zorder=3)


def memorized_figure(
    table: pd.DataFrame,
    out_dir: Path | None,
    plot: PlotSettings | None = None,
    alpha: float = 0.0,
    name: str = "capacity_memorized",
) -> list[Path]:
    """Memorized bits against dataset bits, one line per (model, size), runs at `alpha`."""
    plot = plot or PlotSettings()
    use_backend(False)
    import matplotlib.pyplot as plt

    t = table[np.isclose(table["alpha"], alpha)].sort_values(["model", "params", "K"])
    fig, ax = plt.subplots(figsize=plot.figsize)
    groups = list(t.groupby(["model", "params"], sort=True))
    colors = _palette(plot.palette, len(groups))
    for c, ((model, params), g) in zip(colors, groups, strict=False):
        marker, line = ("o", "-") if model == "transformer" else ("s", "--")
        x, y = g["dataset_bits"].to_numpy(float), g["memorized_bits"].to_numpy(float)
        ok = y > 0
        _points(ax, x[ok], y[ok], g["converged"].to_numpy()[ok], c, marker, _label(g.iloc[0]), line)
        if model == "transformer":
            ax.axhline(MORRIS * params, color=c, ls=":", lw=1)
    db = np.unique(t["dataset_bits"].to_numpy(float))
    ax.plot(db, db, color="0.5", lw=1, label="dataset bits (y = x)")
    ceil = t.drop_duplicates("K").sort_values("dataset_bits")
    ax.plot(
        ceil["dataset_bits"],
        ceil["bits_ceiling"],
        color="0.3",
        ls="--",
        lw=1,
        label="Bayes ceiling (what the data allows)",
    )
    ax.plot([], [], color="0.4", ls=":", lw=1, label=f"{MORRIS_LABEL}, per size")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="dataset bits K (L - 1)",
        ylabel="memorized bits (clipped per sequence)",
        title=f"memorized bits against dataset bits (alpha = {alpha:g}; hollow: not converged)",
    )
    ax.legend(fontsize="small", loc="upper left")
    ax.grid(True, which="both", alpha=0.25)
    return save_figure(fig, out_dir, name, plot, keep=False)


def estimates(g: pd.DataFrame) -> np.ndarray:
    """Each size's kind of capacity: "converged", "extrapolated" (a saturating fit of a run that
    did not converge, with its interval) or "lower bound" (not converged, nothing to
    extrapolate); tables without an `estimate` column read converged / lower bound."""
    if "estimate" in g.columns:
        return g["estimate"].astype(str).to_numpy()
    return np.where(g["converged"].to_numpy(bool), "converged", "lower bound")


def fit_basis(sizes: pd.DataFrame, fit: dict[str, Any]) -> str:
    """Which sizes the slope was fitted over, in the legend's words: saturated ones are those
    the data did not limit; of those, how many are extrapolated and how many lower bounds (the
    markers that say so)."""
    s = sizes[sizes["model"] == fit.get("model", "transformer")]
    sat = fit.get("used") == "saturated sizes"
    used = s[s["saturated"]] if sat else s
    text = (f"over the {len(used)} sizes the data did not limit" if sat
            else f"over all {len(used)} sizes")  # fmt: skip
    kind = estimates(used)
    extra, low = int((kind == "extrapolated").sum()), int((kind == "lower bound").sum())
    parts = [f"{extra} extrapolated"] * bool(extra)
    parts += [f"{low} lower bound" + "s" * (low > 1)] * bool(low)
    return text + (f"; of them {', '.join(parts)}" if parts else "")


# marker face and label per kind of capacity: filled, half (with its interval), hollow
KINDS = (("converged", "full", ""), ("extrapolated", "bottom", " (extrapolated: bar = interval)"),
         ("lower bound", "none", " (not converged: a lower bound)"))  # fmt: skip


def capacity_figure(
    sizes: pd.DataFrame,
    fit: dict[str, Any],
    out_dir: Path | None,
    plot: PlotSettings | None = None,
    name: str = "capacity_params",
) -> list[Path]:
    """Capacity against parameters (log-log), the fitted slope through the origin with its
    interval, and the 3.6 bits/parameter reference. Markers: filled, converged; half-filled
    with an interval bar, extrapolated from a run that did not converge; hollow, a lower bound
    (not converged and no saturation to extrapolate)."""
    plot = plot or PlotSettings()
    use_backend(False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=plot.figsize)
    styles = {"transformer": ("o", "C0"), "phenom": ("s", "C3")}
    for model, g in sizes.groupby("model", sort=True):
        marker, c = styles.get(model, ("^", "C2"))
        kind = estimates(g)
        x, y = g["params"].to_numpy(float), g["capacity"].to_numpy(float)
        for k, fill, words in KINDS:
            at = kind == k
            if not at.any():
                continue
            ax.plot(x[at], y[at], ls="none", marker=marker, color=c, fillstyle=fill,
                    markerfacecolor=c if fill != "none" else "none", zorder=3,
                    label=f"{model}{words}")  # fmt: skip
            if k == "extrapolated" and {"capacity_lo", "capacity_hi"} <= set(g.columns):
                lo, hi = g["capacity_lo"].to_numpy(float)[at], g["capacity_hi"].to_numpy(float)[at]
                top = np.where(np.isfinite(hi), hi, y[at])
                ax.vlines(x[at], lo, top, color=c, lw=1, zorder=2)
    x = sizes["params"].to_numpy(float)
    xs = np.geomspace(x.min() / 1.5, x.max() * 1.5, 50) if len(x) else np.geomspace(1e3, 1e5, 50)
    ax.plot(xs, MORRIS * xs, color="k", ls="--", lw=1, label=MORRIS_LABEL)
    b = fit.get("bits_per_param")
    if b:
        lo, hi = b["lo"], b["hi"]
        iv = f" [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) else " (one size: no interval)"
        ax.plot(
            xs,
            b["slope"] * xs,
            color="C0",
            lw=1.5,
            label=f"{fit.get('model', 'transformer')} fit: {b['slope']:.2f} bits/param{iv} "
            f"({fit_basis(sizes, fit)})",
        )
        if np.isfinite(lo):
            ax.fill_between(xs, lo * xs, hi * xs, color="C0", alpha=0.15, lw=0)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="parameters (all, embeddings included)",
        ylabel="capacity: max memorized bits over K",
        title="capacity against parameters",
    )
    ax.legend(fontsize="small", loc="upper left")
    ax.grid(True, which="both", alpha=0.25)
    return save_figure(fig, out_dir, name, plot, keep=False)


def presentations_figure(
    pres: pd.DataFrame,
    fits: pd.DataFrame,
    out_dir: Path | None,
    plot: PlotSettings | None = None,
    name: str = "capacity_presentations",
) -> list[Path]:
    """Median presentations to half the initial excess loss against parameters, per (K, rank
    bin), with the fitted power law; Allen-Zhu & Li's 100 and 1000 exposures for scale.
    Writes nothing (returns []) when no bin has a finite median."""
    pres = pres[np.isfinite(pres["median_presentations"]) & (pres["median_presentations"] > 0)]
    if len(pres) == 0:  # no bin reached the level in any run: nothing to put on log axes
        return []
    plot = plot or PlotSettings()
    use_backend(False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=plot.figsize)
    keys = list(pres.groupby(["K", "rank_lo", "rank_hi"], sort=True).groups)
    colors = _palette(plot.palette, len(keys))
    for i, ((K, lo, hi), g) in enumerate(pres.groupby(["K", "rank_lo", "rank_hi"], sort=True)):
        g = g.sort_values("params")
        x, y = g["params"].to_numpy(float), g["median_presentations"].to_numpy(float)
        label = f"K={K}, ranks {lo}-{hi - 1}"
        f = fits[(fits["K"] == K) & (fits["rank_lo"] == lo)]
        if len(f) and np.isfinite(f["exponent"].iloc[0]):
            r = f.iloc[0]
            iv = f" [{r['lo']:.2f}, {r['hi']:.2f}]" if np.isfinite(r["lo"]) else ""
            label += f": n ~ params^{r['exponent']:.2f}{iv}"
            xs = np.geomspace(x.min(), x.max(), 20)
            ax.plot(xs, r["prefactor"] * xs ** r["exponent"], color=colors[i], lw=1)
        ax.scatter(x, y, color=colors[i], zorder=3, label=label)
    for n in (100, 1000):
        ax.axhline(n, color="0.5", ls=":", lw=1)
    ax.plot([], [], color="0.5", ls=":", lw=1, label="100 and 1000 exposures (Allen-Zhu & Li)")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="parameters",
        ylabel="presentations to half the initial excess loss (median over the bin's ranks)",
        title="presentations to memorize against model size (Zipf)",
    )
    ax.legend(fontsize="small")
    ax.grid(True, which="both", alpha=0.25)
    return save_figure(fig, out_dir, name, plot, keep=False)
