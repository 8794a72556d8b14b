"""Overlay fitted phenomenological curves on a run's empirical ones (DESIGN 1, "compare").

    phenomjax compare runs/small_cpu runs/small_cpu-fit --out figures/
    phenomjax compare runs/small_cpu runs/small_cpu-fit runs/medium_cpu runs/medium_cpu-fit ...

FIT is a `phenomjax fit` output folder (its best run and presentation-scale factor are read from
report.json) or any phenom run directory (scale 1). One overlay per pair: loss (log-log) and
accuracy vs presentations, empirical solid and fitted dashed, one colour per rank bin, the Bayes
floor (ceiling for accuracy) dotted per bin, and the log-loss residual log(L_fit / L_emp) at the
empirical points. With several pairs, also one side-by-side figure (one column per run).

Every figure comes with the tidy data it drew, written beside it as CSV: source (empirical|fit),
rank_lo, rank_hi, step, presentations, loss, accuracy, floor, ceiling, and on empirical rows
log_residual (NaN where the fit does not cover that presentation count).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..runs.storage import atomic_write
from .binning import bin_label, binned, default_edges
from .load import read_tables, run_label
from .plots import save_figure, use_backend
from .settings import PlotSettings


@dataclasses.dataclass
class Overlay:
    data: pd.DataFrame  # the tidy rows drawn (see the module docstring)
    paths: list[Path]  # figure files and the CSV written
    label: str  # legend / title text of the pair


def _fit_source(fit_path: Path) -> tuple[Path, float, dict | None]:
    """(phenom run directory, presentation-scale factor, fit report or None)."""
    if (fit_path / "report.json").is_file():
        rep = json.loads((fit_path / "report.json").read_text())
        best = fit_path / "best"
        return (best if best.is_dir() else Path(rep["best_run"])), float(rep["shift"]), rep
    if (fit_path / "manifest.json").is_file():
        return fit_path, 1.0, None
    raise DataError(
        f"{fit_path}: not a fit; expected a `phenomjax fit` output folder (with report.json) "
        "or a phenom run directory (with manifest.json)"
    )


def overlay_data(run_path: str | Path, fit_path: str | Path) -> tuple[pd.DataFrame, str, str]:
    """(tidy empirical + fit rows, run label, fit label) of one RUN / FIT pair."""
    run_path, fit_path = Path(run_path), Path(fit_path)
    evals, _, meta = read_tables(run_path, positions=False)
    fit_dir, shift, rep = _fit_source(fit_path)
    fevals, _, fmeta = read_tables(fit_dir, positions=False)
    edges = np.asarray(rep["scoring"]["edges"]) if rep else default_edges(int(meta["K"]))
    emp, fit = binned(evals, edges), binned(fevals, edges)
    fit["presentations"] = fit["presentations"] * shift  # the fitted presentation scale
    if "floor" not in emp.columns and "floor" in fit.columns:  # legacy: the fit's fresh bits
        ref = fit.groupby(["rank_lo", "rank_hi"])[["floor", "ceiling"]].mean().reset_index()
        emp = emp.merge(ref, on=["rank_lo", "rank_hi"], how="left")
    cols = ["rank_lo", "rank_hi", "step", "presentations", "loss", "accuracy", "floor", "ceiling"]
    parts = []
    for src, b in (("empirical", emp), ("fit", fit)):
        b = b[(b["presentations"] > 0) & (b["loss"] > 0)]
        parts.append(b.reindex(columns=cols).assign(source=src))
    data = pd.concat(parts, ignore_index=True)[["source", *cols]]
    data["log_residual"] = np.nan
    for _, g in data.groupby(["rank_lo", "rank_hi"]):
        e = g[g.source == "empirical"].sort_values("presentations")
        f = g[g.source == "fit"].sort_values("presentations")
        if len(f) < 2 or len(e) == 0:
            continue
        xf, xe = np.log(f["presentations"].to_numpy()), np.log(e["presentations"].to_numpy())
        r = np.interp(xe, xf, np.log(f["loss"].to_numpy())) - np.log(e["loss"].to_numpy())
        data.loc[e.index, "log_residual"] = np.where((xe >= xf[0]) & (xe <= xf[-1]), r, np.nan)
    bits = " (fresh bits)" if not meta.get("bits_known") else ""
    if rep:
        b = rep["best"]
        flabel = (f"phenom fit: {b['mode']}, w={b['w']:g}, d={b['d']:g}, lr={b['lr']:g}, "
                  f"scale={b['scale']:g}; presentations x {shift:.2f}; "
                  f"score {rep['score_mean']:.3f} +- {rep['score_std']:.3f}{bits}")  # fmt: skip
    else:
        flabel = f"phenom run {fit_dir.name}: {run_label(fmeta)}"
    return data, f"{meta['name']}: {meta['label']}", flabel


def _colors(data: pd.DataFrame, plot: PlotSettings) -> dict[tuple[int, int], tuple]:
    import seaborn as sns

    bins = sorted({(int(a), int(b)) for a, b in zip(data.rank_lo, data.rank_hi, strict=True)})
    pal = sns.color_palette(plot.palette, max(len(bins), 1))
    return dict(zip(bins, pal, strict=False))


def _draw(axs, data: pd.DataFrame, colors: dict, residual: bool) -> None:
    """Loss, accuracy (and residual) panels of one pair on the given axes."""
    for (lo, hi), g in data.groupby(["rank_lo", "rank_hi"], sort=True):
        c = colors[(int(lo), int(hi))]
        e = g[g.source == "empirical"].sort_values("presentations")
        f = g[g.source == "fit"].sort_values("presentations")
        for ax, metric, ref in ((axs[0], "loss", "floor"), (axs[1], "accuracy", "ceiling")):
            ax.plot(e.presentations, e[metric], "-", marker="o", ms=2.5, lw=1.5, color=c,
                    label=bin_label(int(lo), int(hi)))  # fmt: skip
            ax.plot(f.presentations, f[metric], "--", lw=1.5, color=c)
            if np.isfinite(e[ref]).any():
                ax.axhline(float(e[ref].mean()), color=c, ls=":", lw=0.9, alpha=0.8)
        if residual:
            ok = e[np.isfinite(e.log_residual)]
            axs[2].plot(ok.presentations, ok.log_residual, "-", marker="o", ms=2.5, color=c)
    for ax in axs:
        ax.set_xscale("log")
        ax.set_xlabel("presentations (times the sequence was in a batch)")
        ax.grid(True, which="major", alpha=0.3)
    axs[0].set_yscale("log")
    axs[0].set_ylabel("loss (nats per predicted bit)")
    axs[1].set_ylabel("accuracy (fraction of bits)")
    axs[1].set_ylim(0.45, 1.01)
    if residual:
        axs[2].axhline(0.0, color="k", lw=0.8)
        axs[2].set_ylabel("log-loss residual  log(L_fit / L_emp)")


def _style_legend(ax, emp: str, fit: str) -> None:
    """Rank-bin colours, then the line styles: empirical, fit, Bayes reference."""
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    extra = [
        (Line2D([], [], color="k", ls="-", marker="o", ms=2.5), emp),
        (Line2D([], [], color="k", ls="--"), fit),
        (Line2D([], [], color="gray", ls=":"), "Bayes floor / ceiling per bin"),
    ]
    ax.legend(handles + [h for h, _ in extra], labels + [t for _, t in extra], fontsize=7,
              frameon=False, loc="lower left")  # fmt: skip


def _save(fig, data: pd.DataFrame, out_dir: Path | None, name: str, plot: PlotSettings):
    """The figure (every format) and, beside it, the exact data it was drawn from."""
    paths = save_figure(fig, out_dir, name, plot, keep=False)
    if out_dir is not None:
        csv = out_dir / f"{name}.csv"
        atomic_write(csv, lambda p: data.to_csv(p, index=False))
        paths.append(csv)
    return paths


def overlay_figure(
    run_path: str | Path,
    fit_path: str | Path,
    out_dir: str | Path | None = None,
    *,
    name: str = "overlay",
    plot: PlotSettings | None = None,
) -> Overlay:
    """The overlay of one pair (see the module docstring); returns what it drew and wrote."""
    use_backend(False)
    import matplotlib.pyplot as plt

    plot = plot or PlotSettings()
    data, elabel, flabel = overlay_data(run_path, fit_path)
    fig, axs = plt.subplots(1, 3, figsize=(15.0, 4.6))
    _draw(axs, data, _colors(data, plot), residual=True)
    b = flabel.split(";")[0].replace("phenom fit: ", "")
    _style_legend(axs[0], f"empirical: {elabel.split(':')[0]}", f"fit: phenom {b}")
    axs[0].set_title("loss vs presentations", fontsize=10)
    axs[1].set_title("accuracy vs presentations", fontsize=10)
    axs[2].set_title("fit minus empirical, at the empirical points", fontsize=10)
    fig.suptitle(f"{elabel}\n{flabel} (dashed)", fontsize=10)
    fig.tight_layout()
    paths = _save(fig, data, Path(out_dir) if out_dir else None, name, plot)
    return Overlay(data, paths, f"{elabel} | {flabel}")


def side_by_side(
    pairs: Sequence[tuple[str | Path, str | Path]],
    out_dir: str | Path | None = None,
    *,
    names: Sequence[str] | None = None,
    name: str = "side-by-side",
    plot: PlotSettings | None = None,
) -> Overlay:
    """Several runs with their fits, one column each (loss on top, accuracy below)."""
    use_backend(False)
    import matplotlib.pyplot as plt

    plot = plot or PlotSettings()
    names = list(names) if names else [Path(r).stem for r, _ in pairs]
    got = [overlay_data(r, f) for r, f in pairs]
    data = pd.concat(
        [d.assign(experiment=n) for (d, _, _), n in zip(got, names, strict=True)],
        ignore_index=True,
    )
    colors = _colors(data, plot)
    n = len(pairs)
    fig, axs = plt.subplots(2, n, figsize=(4.2 * n, 7.5), squeeze=False, sharey="row")
    for j, ((d, elabel, flabel), nm) in enumerate(zip(got, names, strict=True)):
        _draw(axs[:, j], d, colors, residual=False)
        short = flabel.replace("phenom fit: ", "fit: ").replace("; ", "\n", 2)
        axs[0, j].set_title(f"{nm}\n{elabel.split(': ', 1)[-1]}\n{short}", fontsize=8)
        if j:
            axs[0, j].set_ylabel("")
            axs[1, j].set_ylabel("")
    _style_legend(axs[0, 0], "empirical (each column's run)", "fitted phenom model")
    fig.suptitle("empirical (solid) and fitted phenomenological model (dashed)", fontsize=11)
    fig.tight_layout()
    paths = _save(fig, data, Path(out_dir) if out_dir else None, name, plot)
    return Overlay(data, paths, ", ".join(names))
