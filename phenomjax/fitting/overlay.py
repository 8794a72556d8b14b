"""Overlay fitted phenomenological curves on a run's empirical ones (docs/design.md §1, compare).

    phenomjax compare runs/small_cpu runs/small_cpu-fit --out figures/
    phenomjax compare runs/demo-seeds runs/demo-seeds-fit       # a seed group and its fit
    phenomjax compare runs/small_cpu runs/small_cpu-fit runs/medium_cpu runs/medium_cpu-fit ...

FIT is a `phenomjax fit` output folder: its report.json (fitting.report.FitReport) names the
run or group it was fitted to, the rank edges and the presentation-scale factor; best/ is the
best member as a phenom run directory. RUN is what the fit was made of (a run, a legacy log, a
seed group's folder) or one seed of that group. One overlay per pair: loss (log-log) and
accuracy against presentations, empirical solid (a seed group: the seeds' mean, geometric for
loss as the fit was scored, with the min-max band shaded), fitted dashed, one colour per rank
bin; the Bayes floor (ceiling for accuracy) dotted, once per group of shown bins whose values
agree within REF_GAP; the log-loss residual log(L_fit / L_emp) at the empirical points. Curves
start at one presentation (a bin mean below one mixes ranks never seen with ranks seen once).
With several pairs, also one side-by-side figure (one column per run).

Every figure comes with the tidy data it drew, written beside it as CSV: source (empirical|fit),
rank_lo, rank_hi, step, presentations, loss, accuracy, floor, ceiling, loss_lo, loss_hi,
accuracy_lo, accuracy_hi, n_seeds (the band: NaN without seeds), and on empirical rows
log_residual (NaN where the fit does not cover that presentation count).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis.binning import bin_label, binned
from ..analysis.load import read_tables
from ..analysis.plots import (
    ACC_LABEL,
    FLOOR_STYLE,
    LOSS_LABEL,
    X_LABEL,
    choose_curves,
    curve_colors,
    fit_limits,
    format_log_axis,
    reference_label,
    save_figure,  # fmt: skip
    use_backend,
)
from ..analysis.settings import PlotSettings
from ..errors import DataError
from ..runs import RunDir, atomic_write, safe_name
from .inputs import run_paths
from .report import FitReport
from .scoring import seed_band

REF_GAP = 0.05  # floors (ceilings) of shown bins within 5 % of each other are drawn once
FONT = 8  # pt: legends and titles stay readable at the figure's printed size
BAND = ["loss_lo", "loss_hi", "accuracy_lo", "accuracy_hi", "n_seeds"]
COLUMNS = ["rank_lo", "rank_hi", "step", "presentations", "loss", "accuracy", "floor", "ceiling"]


@dataclasses.dataclass
class Overlay:
    data: pd.DataFrame  # the tidy rows drawn (see the module docstring)
    paths: list[Path]  # figure files and the CSV written
    label: str  # legend / title text of the pair


def load_fit(run_path: Path, fit_path: Path) -> FitReport:
    """The fit folder's report; a FIT that is not a fit folder is a one-line DataError."""
    pair = f"compare {run_path} {fit_path}"
    rep_path = fit_path / "report.json"
    if not rep_path.is_file():
        if not fit_path.exists():
            why = "not found"
        elif (fit_path / "manifest.json").is_file():
            why = "a run directory, not a fit folder"
            if (fit_path.parent / "report.json").is_file():
                why += f" (it is the best member of {fit_path.parent}: pass that folder)"
        else:
            why = "not a fit folder"
        raise DataError(f"{pair}: FIT {fit_path} is {why}; expected the folder `phenomjax fit "
                        "RUN` wrote (with report.json)")  # fmt: skip
    try:
        return FitReport.load(rep_path)
    except DataError as e:
        raise DataError(f"{pair}: {e}") from None


def _names_run(recorded: str, run_path: Path, fit_path: Path) -> bool:
    """Whether a recorded run path names RUN: the same file where it can be found (from the
    working directory, or beside the fit folder, where `phenomjax fit` puts it), or, where it
    can be found nowhere (the pair was moved), the same file name."""
    if not recorded:
        return False
    rec = Path(recorded)
    where = [rec] if rec.is_absolute() else [rec, fit_path.parent / rec.name]
    found = [w for w in where if w.exists()]
    if not found:
        return rec.name == run_path.name
    return any(os.path.samefile(w, run_path) for w in found)


def check_pair(run_path: Path, fit_path: Path, meta: dict, rep: FitReport, fmeta: dict) -> str:
    """A FIT must be a fit of RUN: RUN is what it was fitted to ("input") or one seed of that
    group ("seed"), and K, L and alpha agree between the run, the report and the best member.
    A mismatch is a one-line DataError naming both paths and the field."""
    pair = f"compare {run_path} {fit_path}"
    if any(_names_run(r, run_path, fit_path) for r in rep.run.inputs):
        how = "input"
    elif len(rep.run.runs) > 1 and any(_names_run(r, run_path, fit_path) for r in rep.run.runs):
        how = "seed"
    else:
        raise DataError(f"{pair}: the fit is of another run (report.json field 'run.inputs' = "
                        f"{list(rep.run.inputs)}); pair each RUN with the fit folder `phenomjax "
                        "fit RUN` wrote, or a seed group's folder with its fit")  # fmt: skip
    source = fmeta.get("run")
    if isinstance(source, str) and not _names_run(source, run_path, fit_path):
        raise DataError(f"{pair}: the fit's best member is of another run (best/manifest.json "
                        f"field 'run' = {source!r})")  # fmt: skip
    for field in ("K", "L", "alpha"):
        want = float(meta[field])
        best = fmeta.get(field, 1.0 if field == "alpha" else None)  # alpha 1 when unrecorded
        for where, got in ((f"report.json run.{field}", getattr(rep.run, field)),
                           ("best/manifest.json", best)):  # fmt: skip
            try:
                same = np.isclose(float(got), want, rtol=1e-9, atol=0.0)
            except (TypeError, ValueError):
                same = False
            if not same:
                raise DataError(f"{pair}: field {field!r} differs: the run has {field}="
                                f"{meta[field]}, the fit's {where} {field}={got}")  # fmt: skip
    return how


def _empirical(run_path: Path, edges: np.ndarray) -> tuple[pd.DataFrame, dict]:
    """(binned empirical curves with the band columns, the first run's metadata): one run, or
    a seed group's mean (geometric for loss) with its min-max band over seeds."""
    paths = run_paths(run_path)
    parts, metas = [], []
    for p in paths:
        evals, _, meta = read_tables(p, positions=False)
        parts.append(binned(evals, edges).assign(run=str(p)))
        metas.append(meta)
    b, first = pd.concat(parts, ignore_index=True), metas[0]
    if len(paths) == 1:
        return b.drop(columns="run").assign(**{c: np.nan for c in BAND}), first
    keys = ["rank_lo", "rank_hi", "step"]
    cols = [c for c in ("presentations", "log_loss", "loss", "accuracy", "floor", "ceiling")
            if c in b.columns or c == "log_loss"]  # fmt: skip
    band = seed_band(b.assign(log_loss=np.log(b["loss"])), cols, keys)
    out = band[keys].assign(**{c: band[f"{c}_mean"] for c in cols if c not in ("loss",)})
    out["loss"] = np.exp(out.pop("log_loss"))  # the geometric mean, as the fit was scored
    for m in ("loss", "accuracy"):
        out[f"{m}_lo"], out[f"{m}_hi"] = band[f"{m}_lo"], band[f"{m}_hi"]
    out["n_seeds"] = band["loss_n"].astype(float)
    return out, {**first, "name": run_path.name, "n_seeds": len(paths)}


def overlay_data(run_path: str | Path, fit_path: str | Path) -> tuple[pd.DataFrame, str, str]:
    """(tidy empirical + fit rows, run label, fit label) of one RUN / FIT pair."""
    run_path, fit_path = Path(run_path), Path(fit_path)
    rep = load_fit(run_path, fit_path)
    best = fit_path / "best"
    if not (best / "manifest.json").is_file():
        raise DataError(f"compare {run_path} {fit_path}: the fit's best member {best} has no "
                        "manifest.json (rerun `phenomjax fit`)")  # fmt: skip
    edges = np.asarray(rep.settings.edges, dtype=np.int64)
    emp, meta = _empirical(run_path, edges)
    check_pair(run_path, fit_path, meta, rep, RunDir(best).manifest())
    fevals, _, _ = read_tables(best, positions=False)
    fit = binned(fevals, edges)
    fit["presentations"] = fit["presentations"] * rep.best.score.shift  # the fitted scale
    if "floor" not in emp.columns and "floor" in fit.columns:  # legacy: the fit's fresh bits
        ref = fit.groupby(["rank_lo", "rank_hi"])[["floor", "ceiling"]].mean().reset_index()
        emp = emp.merge(ref, on=["rank_lo", "rank_hi"], how="left")
    parts = []
    for src, b in (("empirical", emp), ("fit", fit)):
        b = b[(b["presentations"] >= 1) & (b["loss"] > 0)]  # curves start at one presentation
        parts.append(b.reindex(columns=COLUMNS + BAND).assign(source=src))
    data = pd.concat(parts, ignore_index=True)[["source", *COLUMNS, *BAND]]
    data["log_residual"] = _residuals(data)
    fresh = not meta.get("bits_known")
    data["fresh_bits"] = fresh
    data.attrs["fresh_bits"] = fresh
    n = int(meta.get("n_seeds", 1))
    elabel = f"{meta['name']}: {meta['label']}" + (f" (mean of {n} seeds)" if n > 1 else "")
    return data, elabel, fit_label(rep, fresh)


def _residuals(data: pd.DataFrame) -> pd.Series:
    """log(L_fit / L_emp) at the empirical points inside the fit's presentations range."""
    out = pd.Series(np.nan, index=data.index)
    for _, g in data.groupby(["rank_lo", "rank_hi"]):
        e = g[g.source == "empirical"].sort_values("presentations")
        f = g[g.source == "fit"].sort_values("presentations")
        if len(f) < 2 or len(e) == 0:
            continue
        xf, xe = np.log(f["presentations"].to_numpy()), np.log(e["presentations"].to_numpy())
        r = np.interp(xe, xf, np.log(f["loss"].to_numpy())) - np.log(e["loss"].to_numpy())
        out.loc[e.index] = np.where((xe >= xf[0]) & (xe <= xf[-1]), r, np.nan)
    return out


def fit_label(rep: FitReport, fresh: bool = False) -> str:
    """The fit in one line, naming what its numbers are."""
    m, s = rep.best.member, rep.best.score
    return (f"phenom fit: {m.mode} {m.optimizer}, w={m.w}, d={m.d}, lr={m.lr:g}, "
            f"scale={m.scale:g}; presentations x {s.shift:.2f}; total {s.total:.2f} (ranking "
            f"score); log-loss RMSE {s.rmse:.3f} (pooled over bins and evaluations)"
            + (" (fresh bits)" if fresh else ""))  # fmt: skip


def _bins_drawn(data: pd.DataFrame, plot: PlotSettings) -> tuple[dict, str]:
    """({(lo, hi): colour} of the rank bins drawn, a note for the title): every bin, or past
    plots.MAX_LEGEND bins (paper scale) a log-spaced subset, coloured as plots.metric_figure."""
    bins = sorted({(int(a), int(b)) for a, b in zip(data.rank_lo, data.rank_hi, strict=True)})
    names = [bin_label(lo, hi) for lo, hi in bins]
    shown, note = choose_curves(names, [lo for lo, _ in bins], bins=True)
    keep = [b for b, n in zip(bins, names, strict=True) if n in set(shown)]
    return dict(zip(keep, curve_colors([lo for lo, _ in keep], plot), strict=True)), note


def group_refs(refs: Sequence[tuple], gap: float = REF_GAP) -> list[list]:
    """Reference entries (value, colour, ...) sorted by value and grouped where each is within
    `gap` (relative) of the group's first: the lines drawn once per group."""
    groups: list[list] = []
    for r in sorted((r for r in refs if np.isfinite(r[0])), key=lambda r: float(r[0])):
        if groups and r[0] <= groups[-1][0][0] * (1 + gap):
            groups[-1].append(r)
        else:
            groups.append([r])
    return groups


def _draw_refs(ax, refs: list) -> bool:
    """One dotted line per group of coinciding references (value, colour, x0, x1), over the
    presentations its bins' curves span: in the bin's colour when alone, grey at the group's
    mean when shared; returns whether any group was shared."""
    shared = False
    for g in group_refs(refs):
        one = len({r[1] for r in g}) == 1
        ax.hlines(float(np.mean([r[0] for r in g])), min(r[2] for r in g), max(r[3] for r in g),
                  color=g[0][1] if one else "0.35", **FLOOR_STYLE)  # fmt: skip
        shared |= not one
    return shared


def _curve(ax, d: pd.DataFrame, metric: str, style: str, color, label=None) -> None:
    d = d.sort_values("presentations")
    ax.plot(d.presentations, d[metric], style, marker="o" if style == "-" else None, ms=2.5,
            lw=1.5, color=color, label=label)  # fmt: skip
    lo, hi = d[f"{metric}_lo"].to_numpy(float), d[f"{metric}_hi"].to_numpy(float)
    if np.isfinite(lo).any():
        ax.fill_between(d.presentations, lo, hi, color=color, alpha=0.2, lw=0)


def _draw(axs, data: pd.DataFrame, colors: dict, plot: PlotSettings, residual: bool) -> bool:
    """Loss, accuracy (and residual) panels of one pair on the given axes; returns whether
    coinciding references were drawn as one line."""
    refs: dict[str, list] = {"loss": [], "accuracy": []}
    for (lo, hi), g in data.groupby(["rank_lo", "rank_hi"], sort=True):
        c = colors.get((int(lo), int(hi)))
        if c is None:  # not among the bins drawn: neither its curves nor its references
            continue
        e, f = g[g.source == "empirical"], g[g.source == "fit"]
        for ax, metric, ref in ((axs[0], "loss", "floor"), (axs[1], "accuracy", "ceiling")):
            _curve(ax, e, metric, "-", c, bin_label(int(lo), int(hi)))
            _curve(ax, f, metric, "--", c)
            if np.isfinite(e[ref]).any() and len(e):
                x = pd.concat([e.presentations, f.presentations])
                refs[metric].append((float(e[ref].mean()), c, float(x.min()), float(x.max())))
        if residual:
            ok = e[np.isfinite(e.log_residual)].sort_values("presentations")
            axs[2].plot(ok.presentations, ok.log_residual, "-", marker="o", ms=2.5, color=c)
    shown = data[[(int(a), int(b)) in colors for a, b in zip(data.rank_lo, data.rank_hi,
                                                            strict=True)]]  # fmt: skip
    shared = False
    for ax, metric in ((axs[0], "loss"), (axs[1], "accuracy")):
        shared |= _draw_refs(ax, refs[metric])
        vals = [shown[metric]] + [shown[f"{metric}_{b}"].dropna() for b in ("lo", "hi")]
        values = pd.concat([*vals, pd.Series([r[0] for r in refs[metric]], dtype=float)])
        if metric == "loss":
            ax.set_yscale("log")
        fit_limits(ax, metric, values.to_numpy(), plot)
    for ax in axs:
        ax.set_xscale("log")
        ax.set_xlim(left=1.0)
        ax.set_xlabel(X_LABEL, fontsize=FONT + 1)
        ax.tick_params(labelsize=FONT)
        ax.grid(True, which="major", alpha=0.3)
        format_log_axis(ax, "x")
    format_log_axis(axs[0], "y")
    axs[0].set_ylabel(LOSS_LABEL, fontsize=FONT + 1)
    axs[1].set_ylabel(ACC_LABEL, fontsize=FONT + 1)
    if residual:
        axs[2].axhline(0.0, color="k", lw=0.8)
        axs[2].set_ylabel("log-loss residual, log(L_fit / L_emp)", fontsize=FONT + 1)
    return shared


def _legend(fig, axs, emp: str, fit: str, shared: bool, seeds: bool, fresh: bool) -> None:
    """One legend below the panels: the rank bins' colours in columns, then the line styles
    (empirical, fit, the Bayes references, the seed band), drawn in black."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles, labels = axs[0].get_legend_handles_labels()
    style = [
        (Line2D([], [], color="k", ls="-", marker="o", ms=2.5), emp),
        (Line2D([], [], color="k", ls="--"), fit),
        (Line2D([], [], color="k", **FLOOR_STYLE),
         f"{reference_label('loss', fresh)}; ceiling for accuracy"),
    ]  # fmt: skip
    if shared:
        style.append((Line2D([], [], color="0.35", **FLOOR_STYLE),
                      f"grey dotted: bins whose references agree within {REF_GAP:.0%}, at their "
                      "mean"))  # fmt: skip
    if seeds:
        style.append((Patch(color="k", alpha=0.2), "shaded: min-max over the transformer seeds"))
    ncol = max(1, min(6, len(handles)))
    rows = -(-len(handles) // ncol)
    leg = fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=ncol,
                     fontsize=FONT, frameon=False, title="rank bins (colour)",
                     title_fontsize=FONT)  # fmt: skip
    fig.legend([h for h, _ in style], [t for _, t in style], loc="upper center",
               bbox_to_anchor=(0.5, -0.03 - 0.045 * (rows + 1)), ncol=2, fontsize=FONT,
               frameon=False)  # fmt: skip
    fig.add_artist(leg)


def _save(fig, data: pd.DataFrame, out_dir: Path | None, name: str, plot: PlotSettings):
    """The figure (every format, through the atomic writer) and the exact data it drew."""
    paths = save_figure(fig, out_dir, name, plot, keep=False)
    if out_dir is not None:
        csv = out_dir / f"{name}.csv"
        atomic_write(csv, lambda p: data.to_csv(p, index=False))
        paths.append(csv)
    return paths


def draw_overlay(
    data: pd.DataFrame,
    elabel: str,
    flabel: str,
    out_dir: str | Path | None = None,
    *,
    name: str = "overlay",
    plot: PlotSettings | None = None,
    fresh_bits: bool = False,
) -> list[Path]:
    """The overlay figure of one pair's tidy rows (overlay_data); returns the files written."""
    plot = plot or PlotSettings()
    fig = overlay_axes(data, elabel, flabel, plot, fresh_bits)
    return _save(fig, data, Path(out_dir) if out_dir else None, safe_name(name), plot)


def overlay_axes(data: pd.DataFrame, elabel: str, flabel: str, plot: PlotSettings,
                 fresh_bits: bool = False):  # fmt: skip
    """The open matplotlib figure of draw_overlay (the HTML report embeds it unsaved)."""
    use_backend(False)
    import matplotlib.pyplot as plt

    fig, axs = plt.subplots(1, 3, figsize=(15.0, 4.6))
    colors, note = _bins_drawn(data, plot)
    shared = _draw(axs, data, colors, plot, residual=True)
    seeds = bool(np.isfinite(data["loss_lo"]).any())
    what = flabel.split(";")[0].replace("phenom fit: ", "")
    _legend(fig, axs, f"empirical: {elabel.split(':')[0]}", f"fit: phenom {what}", shared,
            seeds, fresh_bits)  # fmt: skip
    axs[0].set_title("loss vs presentations", fontsize=FONT + 2)
    axs[1].set_title("accuracy vs presentations", fontsize=FONT + 2)
    axs[2].set_title("fit minus empirical, at the empirical points", fontsize=FONT + 2)
    fig.suptitle(f"{elabel}\n{flabel} (dashed)" + (f"\n{note}" if note else ""), fontsize=FONT + 2)
    fig.tight_layout()
    return fig


def overlay_figure(
    run_path: str | Path,
    fit_path: str | Path,
    out_dir: str | Path | None = None,
    *,
    name: str = "overlay",
    plot: PlotSettings | None = None,
) -> Overlay:
    """The overlay of one pair (see the module docstring); returns what it drew and wrote."""
    data, elabel, flabel = overlay_data(run_path, fit_path)
    fresh = bool(data.attrs.get("fresh_bits"))
    paths = draw_overlay(data, elabel, flabel, out_dir, name=name, plot=plot, fresh_bits=fresh)
    return Overlay(data, paths, f"{elabel} | {flabel}")


def draw_side_by_side(
    got: Sequence[tuple[pd.DataFrame, str, str]],
    names: Sequence[str],
    out_dir: str | Path | None = None,
    *,
    name: str = "side-by-side",
    plot: PlotSettings | None = None,
) -> tuple[pd.DataFrame, list[Path]]:
    """Several pairs' tidy rows (overlay_data), one column each: (all rows, files written)."""
    use_backend(False)
    import matplotlib.pyplot as plt

    plot = plot or PlotSettings()
    data = pd.concat([d.assign(experiment=n) for (d, _, _), n in zip(got, names, strict=True)],
                     ignore_index=True)  # fmt: skip
    colors, note = _bins_drawn(data, plot)
    n = len(got)
    fig, axs = plt.subplots(2, n, figsize=(4.2 * n, 7.5), squeeze=False, sharey="row")
    shared = False
    for j, ((d, elabel, flabel), nm) in enumerate(zip(got, names, strict=True)):
        shared |= _draw(axs[:, j], d, colors, plot, residual=False)
        short = flabel.replace("phenom fit: ", "fit: ").replace("; ", "\n", 3)
        axs[0, j].set_title(f"{nm}\n{elabel.split(': ', 1)[-1]}\n{short}", fontsize=FONT)
        if j:
            axs[0, j].set_ylabel("")
            axs[1, j].set_ylabel("")
    fresh = any(bool(d.attrs.get("fresh_bits")) for d, _, _ in got)
    seeds = bool(np.isfinite(data["loss_lo"]).any())
    _legend(fig, axs[:, 0], "empirical (each column's run)", "fitted phenom model", shared,
            seeds, fresh)  # fmt: skip
    fig.suptitle("empirical (solid) and fitted phenomenological model (dashed)"
                 + (f"; {note}" if note else ""), fontsize=FONT + 3)  # fmt: skip
    fig.tight_layout()
    return data, _save(fig, data, Path(out_dir) if out_dir else None, safe_name(name), plot)


def side_by_side(
    pairs: Sequence[tuple[str | Path, str | Path]],
    out_dir: str | Path | None = None,
    *,
    names: Sequence[str] | None = None,
    name: str = "side-by-side",
    plot: PlotSettings | None = None,
) -> Overlay:
    """Several runs with their fits, one column each (loss on top, accuracy below)."""
    names = list(names) if names else [Path(r).stem for r, _ in pairs]
    got = [overlay_data(r, f) for r, f in pairs]
    data, paths = draw_side_by_side(got, names, out_dir, name=name, plot=plot)
    return Overlay(data, paths, ", ".join(names))
