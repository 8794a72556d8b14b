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
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..runs.storage import atomic_write
from .binning import bin_label, binned
from .load import read_tables, run_label
from .plots import (
    ACC_LABEL,
    FLOOR_STYLE,
    LOSS_LABEL,
    X_LABEL,
    choose_curves,
    curve_colors,
    draw_references,
    fit_limits,
    format_log_axis,
    reference_label,
    save_figure,
    use_backend,
)
from .settings import PlotSettings


@dataclasses.dataclass
class Overlay:
    data: pd.DataFrame  # the tidy rows drawn (see the module docstring)
    paths: list[Path]  # figure files and the CSV written
    label: str  # legend / title text of the pair


def _report(run_path: Path, fit_path: Path) -> dict:
    """The fit folder's report.json; a FIT that is not a fit folder is a one-line DataError."""
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
        raise DataError(
            f"{pair}: FIT {fit_path} is {why}; expected the folder `phenomjax fit RUN` wrote "
            "(with report.json)"
        )
    try:
        rep = json.loads(rep_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{pair}: {rep_path}: unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(rep, dict):
        raise DataError(f"{pair}: {rep_path}: expected a JSON object")
    for field in ("run", "K", "L", "alpha", "shift", "scoring", "best"):
        if field not in rep:
            raise DataError(f"{pair}: {rep_path}: field {field!r} missing")
    return rep


def _names_run(recorded: object, run_path: Path, fit_path: Path) -> bool:
    """Whether a recorded run path names RUN: the same file where it can be found (from the
    working directory, or beside the fit folder, where `phenomjax fit` puts it), or, where it
    can be found nowhere (the pair was moved), the same file name."""
    if not isinstance(recorded, str) or not recorded:
        return False
    rec = Path(recorded)
    where = [rec] if rec.is_absolute() else [rec, fit_path.parent / rec.name]
    found = [w for w in where if w.exists()]
    if not found:
        return rec.name == run_path.name
    return any(os.path.samefile(w, run_path) for w in found)


def check_pair(run_path: Path, fit_path: Path, meta: dict, rep: dict, fmeta: dict) -> None:
    """A FIT must be a fit of RUN: its report names RUN (and so does its best member's manifest
    where that records a run), and K, L and alpha agree between the run, the report and the best
    member. A mismatch is a one-line DataError naming both paths and the field."""
    pair = f"compare {run_path} {fit_path}"
    if not _names_run(rep["run"], run_path, fit_path):
        raise DataError(
            f"{pair}: the fit is of another run (report.json field 'run' = {rep['run']!r}); "
            f"pair each RUN with the fit folder `phenomjax fit RUN` wrote"
        )
    source = fmeta.get("run")
    if isinstance(source, str) and not _names_run(source, run_path, fit_path):
        raise DataError(
            f"{pair}: the fit's best member is of another run (best/manifest.json field 'run' "
            f"= {source!r})"
        )
    for field in ("K", "L", "alpha"):
        want = float(meta[field])
        best = fmeta.get(field, 1.0 if field == "alpha" else None)  # alpha 1 when unrecorded
        for where, got in (("report.json", rep[field]), ("best/manifest.json", best)):
            try:
                same = np.isclose(float(got), want, rtol=1e-9, atol=0.0)
            except (TypeError, ValueError):
                same = False
            if not same:
                raise DataError(
                    f"{pair}: field {field!r} differs: the run has {field}={meta[field]}, the "
                    f"fit's {where} {field}={got}"
                )


def _fit_source(run_path: Path, fit_path: Path, meta: dict) -> tuple[Path, float, dict]:
    """(the fit's best phenom run directory, presentation-scale factor, fit report), the pair
    checked (check_pair)."""
    rep = _report(run_path, fit_path)
    best = fit_path / "best"
    best = best if best.is_dir() else Path(str(rep.get("best_run", best)))
    if not (best / "manifest.json").is_file():
        raise DataError(
            f"compare {run_path} {fit_path}: the fit's best member {best} has no manifest.json "
            "(rerun `phenomjax fit`)"
        )
    from ..runs.rundir import RunDir

    check_pair(run_path, fit_path, meta, rep, RunDir(best).manifest())
    try:
        shift = float(rep["shift"])
    except (TypeError, ValueError):
        raise DataError(f"compare {run_path} {fit_path}: report.json field 'shift' "
                        f"= {rep['shift']!r} is not a number") from None  # fmt: skip
    return best, shift, rep


def overlay_data(run_path: str | Path, fit_path: str | Path) -> tuple[pd.DataFrame, str, str]:
    """(tidy empirical + fit rows, run label, fit label) of one RUN / FIT pair."""
    run_path, fit_path = Path(run_path), Path(fit_path)
    evals, _, meta = read_tables(run_path, positions=False)
    fit_dir, shift, rep = _fit_source(run_path, fit_path, meta)
    fevals, _, fmeta = read_tables(fit_dir, positions=False)
    try:
        edges = np.asarray(rep["scoring"]["edges"], dtype=np.int64)
    except (KeyError, TypeError, ValueError):
        raise DataError(f"compare {run_path} {fit_path}: report.json field 'scoring.edges' "
                        "missing or not integers") from None  # fmt: skip
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
    # a legacy log stores no bits: its floor and the fit's are those of fresh bits
    fresh = not meta.get("bits_known")
    data["fresh_bits"] = fresh
    data.attrs["fresh_bits"] = fresh
    bits = " (fresh bits)" if fresh else ""
    try:
        b = rep["best"]
        flabel = (f"phenom fit: {b['mode']}, w={b['w']:g}, d={b['d']:g}, lr={b['lr']:g}, "
                  f"scale={b['scale']:g}; presentations x {shift:.2f}; "
                  f"score {rep['score_mean']:.3f} +- {rep['score_std']:.3f}{bits}")  # fmt: skip
    except (KeyError, TypeError, ValueError):
        flabel = f"phenom fit {fit_path.name}: {run_label(fmeta)}{bits}"
    return data, f"{meta['name']}: {meta['label']}", flabel


def _bins_drawn(data: pd.DataFrame, plot: PlotSettings) -> tuple[dict, str]:
    """({(lo, hi): colour} of the rank bins drawn, a note for the title): every bin, or past
    plots.MAX_LEGEND bins (paper scale) a log-spaced subset, coloured as plots.metric_figure."""
    bins = sorted({(int(a), int(b)) for a, b in zip(data.rank_lo, data.rank_hi, strict=True)})
    names = [bin_label(lo, hi) for lo, hi in bins]
    shown, note = choose_curves(names, [lo for lo, _ in bins], bins=True)
    keep = [b for b, n in zip(bins, names, strict=True) if n in set(shown)]
    return dict(zip(keep, curve_colors([lo for lo, _ in keep], plot), strict=True)), note


def _draw(axs, data: pd.DataFrame, colors: dict, plot: PlotSettings, residual: bool) -> bool:
    """Loss, accuracy (and residual) panels of one pair on the given axes; returns whether
    coinciding references were summarized as a band."""
    refs: dict[str, list] = {"loss": [], "accuracy": []}
    for (lo, hi), g in data.groupby(["rank_lo", "rank_hi"], sort=True):
        c = colors.get((int(lo), int(hi)))
        if c is None:  # not among the bins drawn
            continue
        e = g[g.source == "empirical"].sort_values("presentations")
        f = g[g.source == "fit"].sort_values("presentations")
        for ax, metric, ref in ((axs[0], "loss", "floor"), (axs[1], "accuracy", "ceiling")):
            ax.plot(e.presentations, e[metric], "-", marker="o", ms=2.5, lw=1.5, color=c,
                    label=bin_label(int(lo), int(hi)))  # fmt: skip
            ax.plot(f.presentations, f[metric], "--", lw=1.5, color=c)
            if np.isfinite(e[ref]).any():
                refs[metric].append((float(e[ref].mean()), c))
        if residual:
            ok = e[np.isfinite(e.log_residual)]
            axs[2].plot(ok.presentations, ok.log_residual, "-", marker="o", ms=2.5, color=c)
    band = False
    drawn = data[[(int(a), int(b)) in colors for a, b in zip(data.rank_lo, data.rank_hi,
                                                            strict=True)]]  # fmt: skip
    for ax, metric in ((axs[0], "loss"), (axs[1], "accuracy")):
        band |= draw_references(ax, refs[metric])
        values = pd.concat([drawn[metric], pd.Series([v for v, _ in refs[metric]], dtype=float)])
        if metric == "loss":
            ax.set_yscale("log")
        fit_limits(ax, metric, values.to_numpy(), plot)
    for ax in axs:
        ax.set_xscale("log")
        ax.set_xlabel(X_LABEL)
        ax.grid(True, which="major", alpha=0.3)
        format_log_axis(ax, "x")
    format_log_axis(axs[0], "y")
    axs[0].set_ylabel(LOSS_LABEL)
    axs[1].set_ylabel(ACC_LABEL)
    if residual:
        axs[2].axhline(0.0, color="k", lw=0.8)
        axs[2].set_ylabel("log-loss residual, log(L_fit / L_emp) (dimensionless)")
    return band


def _legend(fig, axs, emp: str, fit: str, band: bool, fresh_bits: bool) -> None:
    """One legend below the panels: the rank bins' colours in columns, then the line styles
    (empirical, fit, the Bayes references), drawn in black whatever the bins' colours."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles, labels = axs[0].get_legend_handles_labels()
    style = [
        (Line2D([], [], color="k", ls="-", marker="o", ms=2.5), emp),
        (Line2D([], [], color="k", ls="--"), fit),
        (Line2D([], [], color="k", **FLOOR_STYLE),
         f"{reference_label('loss', fresh_bits)}; ceiling for accuracy"),
    ]  # fmt: skip
    if band:
        style.append((Patch(color="0.55", alpha=0.3), "grey band: references that coincide"))
    ncol = max(1, min(6, -(-len(handles) // 3)))
    leg = fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=ncol,
                     fontsize=7, frameon=False, title="rank bins (colour)",
                     title_fontsize=7)  # fmt: skip
    fig.legend([h for h, _ in style], [t for _, t in style], loc="upper center",
               bbox_to_anchor=(0.5, -0.02 - 0.035 * (-(-len(handles) // ncol) + 1)), ncol=2,
               fontsize=7, frameon=False)  # fmt: skip
    fig.add_artist(leg)


def _save(fig, data: pd.DataFrame, out_dir: Path | None, name: str, plot: PlotSettings):
    """The figure (every format) and, beside it, the exact data it was drawn from."""
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
    use_backend(False)
    import matplotlib.pyplot as plt

    plot = plot or PlotSettings()
    fig, axs = plt.subplots(1, 3, figsize=(15.0, 4.6))
    colors, note = _bins_drawn(data, plot)
    band = _draw(axs, data, colors, plot, residual=True)
    b = flabel.split(";")[0].replace("phenom fit: ", "")
    _legend(fig, axs, f"empirical: {elabel.split(':')[0]}", f"fit: phenom {b}", band, fresh_bits)
    axs[0].set_title("loss vs presentations", fontsize=10)
    axs[1].set_title("accuracy vs presentations", fontsize=10)
    axs[2].set_title("fit minus empirical, at the empirical points", fontsize=10)
    fig.suptitle(f"{elabel}\n{flabel} (dashed)" + (f"\n{note}" if note else ""), fontsize=10)
    fig.tight_layout()
    return _save(fig, data, Path(out_dir) if out_dir else None, name, plot)


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
    data = pd.concat(
        [d.assign(experiment=n) for (d, _, _), n in zip(got, names, strict=True)],
        ignore_index=True,
    )
    colors, note = _bins_drawn(data, plot)
    n = len(got)
    fig, axs = plt.subplots(2, n, figsize=(4.2 * n, 7.5), squeeze=False, sharey="row")
    band = False
    for j, ((d, elabel, flabel), nm) in enumerate(zip(got, names, strict=True)):
        band |= _draw(axs[:, j], d, colors, plot, residual=False)
        short = flabel.replace("phenom fit: ", "fit: ").replace("; ", "\n", 2)
        axs[0, j].set_title(f"{nm}\n{elabel.split(': ', 1)[-1]}\n{short}", fontsize=8)
        if j:
            axs[0, j].set_ylabel("")
            axs[1, j].set_ylabel("")
    fresh = any(bool(d.attrs.get("fresh_bits")) for d, _, _ in got)
    _legend(fig, axs[:, 0], "empirical (each column's run)", "fitted phenom model", band, fresh)
    fig.suptitle("empirical (solid) and fitted phenomenological model (dashed)"
                 + (f"; {note}" if note else ""), fontsize=11)  # fmt: skip
    fig.tight_layout()
    return data, _save(fig, data, Path(out_dir) if out_dir else None, name, plot)


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
