"""`phenomjax analyze` and `python scripts/analysis.py`: the historical analysis CLI, kept.

Every historical flag keeps its meaning (--experiment, --rank-selection, --force-reprocess,
--no-show-plots, --no-save-plots, --comparative); added: --config (the analysis TOML),
--export (the binned table, CSV or parquet by extension), --export-summary, --run (analyse
these paths instead of an experiment's), --group (the runs differ only in seed: one experiment
with a band), --figures-dir and --cache-dir.

Besides the figures it prints memorized bits per run and the lag table (lag.py): per rank bin
and level, the presentations its median rank needs to bring its excess loss over the Bayes
floor to that share of the initial one, as a ratio to the top bin, and the log-loss gap to the
top bin at equal presentations; with --group, their mean, std and min-max over the seeds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError

# NumPy, pandas and the analysis load in the functions that use them: `analyze --help` stays
# instant, and nothing on this path imports JAX.
if TYPE_CHECKING:
    import pandas as pd

    from ..analysis.settings import AnalysisConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", help="experiment of the config to analyse (default: config's)")
    p.add_argument(
        "--rank-selection",
        help="ranks drawn one curve each: low (0-9), mid (30-39), high (60-69), selected "
        "(all three), any selection of the config, or all (one curve per rank bin)",
    )
    p.add_argument("--force-reprocess", action="store_true", help="rebuild cached tables")
    p.add_argument("--no-show-plots", action="store_true", help="never open a plot window")
    p.add_argument("--no-save-plots", action="store_true", help="do not write figures")
    p.add_argument(
        "--comparative", action="store_true", help="per rank bin, compare the experiment's runs"
    )
    p.add_argument("--config", type=Path, help="analysis TOML (default: the packaged one)")
    p.add_argument("--export", type=Path, help="write the binned table (.csv or .parquet)")
    p.add_argument("--export-summary", type=Path, help="write the summary table (.csv/.parquet)")
    p.add_argument(
        "--run", action="append", type=Path, default=[], help="a run dir or legacy pickle "
        "to analyse instead of the experiment's paths (repeatable)"
    )  # fmt: skip
    p.add_argument(
        "--group", metavar="NAME", help="the runs (--run, or the experiment's) differ only in "
        "seed: analyse them as one experiment NAME, figures with a min-max band over seeds and "
        "the lag table with mean, std and min-max (e.g. --run runs/s0 --run runs/s1 --group demo)"
    )  # fmt: skip
    p.add_argument("--figures-dir", type=Path, help="override [paths] figures")
    p.add_argument("--cache-dir", type=Path, help="override [paths] processed")


def _write_table(df: pd.DataFrame, path: Path, flag: str) -> None:
    from ..runs.storage import atomic_write

    suffix = path.suffix.lower()
    if suffix == ".csv":
        atomic_write(path, lambda p: df.to_csv(p, index=False))
    elif suffix in (".parquet", ".pq"):
        atomic_write(path, lambda p: df.to_parquet(p, index=False))
    else:
        raise ConfigError(f"{flag} {path}: expected a .csv or .parquet path")
    print(f"wrote {path} ({len(df)} rows)")


def file_label(lo: int, hi: int) -> str:
    """A rank bin in a file name, as legends name it (binning.bin_label): ranks_0-4."""
    from ..analysis.binning import bin_label

    return bin_label(int(lo), int(hi)).replace(" ", "_")


def _selection(cfg: AnalysisConfig, name: str) -> list[int] | None:
    from ..analysis.binning import RANK_SELECTIONS

    sels = {**RANK_SELECTIONS, **cfg.rank_selections}
    if name == "all":
        return None
    if name not in sels:
        raise ConfigError(
            f"--rank-selection {name!r}: expected one of {sorted(sels) + ['all']} "
            f"(rank selections of {cfg.source})"
        )
    return list(sels[name])


def _unique_names(metas: list[dict]) -> list[str]:
    names: list[str] = []
    for m in metas:
        n, i = m["name"], 1
        while n in names:
            i += 1
            n = f"{m['name']}_{i}"
        names.append(n)
    return names


def _per_run_figures(r, n: str, label: str, ctx: dict) -> list[Path]:
    from ..analysis import plots

    selection, name = ctx["selection"], ctx["selection_name"]
    if selection is None:
        curves, what = plots.curves_from_bins(r.binned), "rank bins"
    else:
        curves, what = plots.curves_from_ranks(r.ranks, selection), f"{name} ranks"
    if len(curves) == 0:
        print(f"  {n}: no rank of selection {name!r} below K={r.meta['K']}")
        return []
    return _metric_figures(curves, f"{ctx['experiment']}: {label}, {what}",
                           f"{ctx['experiment']}_{n}_{name}_", ctx)  # fmt: skip


def _metric_figures(curves: pd.DataFrame, title: str, prefix: str, ctx: dict) -> list[Path]:
    from ..analysis import plots

    written = []
    for metric, style, stem in (
        ("loss", "line", "loss_vs_presentations_line"),
        ("loss", "scatter", "loss_vs_presentations_scatter"),
        ("accuracy", "line", "accuracy_vs_presentations"),
    ):
        d = plots.metric_figure(
            curves, metric, plot=ctx["cfg"].plot, title=title, style=style,
            out_dir=ctx["fig_dir"], name=prefix + stem, keep=ctx["interactive"],
        )  # fmt: skip
        written += d.paths
    return written


def _group_curves(processed, names: list[str], selection) -> pd.DataFrame:
    """The group's curves (bins or selected ranks) with mean and band over its runs."""
    import pandas as pd

    from ..analysis import plots
    from ..analysis.groups import band

    parts = []
    for n, r in zip(names, processed, strict=True):
        c = (plots.curves_from_bins(r.binned) if selection is None
             else plots.curves_from_ranks(r.ranks, selection))  # fmt: skip
        parts.append(c.drop(columns=["run", "label", "experiment"], errors="ignore").assign(run=n))
    out = band(pd.concat(parts, ignore_index=True))
    out.attrs = dict(processed[0].binned.attrs)
    return out


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..analysis import lag, plots, summaries
    from ..analysis.binning import RANK_SELECTIONS
    from ..analysis.cache import process_run
    from ..analysis.groups import band, check_group
    from ..analysis.load import check_path
    from ..analysis.settings import load_analysis_config

    cfg = load_analysis_config(args.config)
    experiment = args.experiment or cfg.defaults.experiment
    paths = list(args.run) if args.run else cfg.run_paths(experiment)
    if args.run:
        experiment = args.experiment or args.group or "runs"
    selection_name = args.rank_selection or cfg.defaults.rank_selection
    selection = _selection(cfg, selection_name)
    show = not args.no_show_plots and cfg.defaults.show_plots
    save = not args.no_save_plots and cfg.defaults.save_plots
    force = args.force_reprocess or cfg.defaults.force_reprocess
    interactive = plots.use_backend(show)
    all_ranks = sorted(
        {r for s in (*RANK_SELECTIONS.values(), *cfg.rank_selections.values()) for r in s}
    )
    cache_dir = args.cache_dir or Path(cfg.paths.processed)
    fig_dir = (args.figures_dir or Path(cfg.paths.figures)) if save else None
    s = cfg.summary

    for p in paths:  # every input exists before anything is printed
        check_path(Path(p))
    print(f"experiment {experiment}: {len(paths)} run(s)" +
          (f", one seed group {args.group!r}" if args.group else ""))  # fmt: skip
    processed = []
    for p in paths:
        t0 = time.perf_counter()
        r = process_run(
            p, edges=cfg.edges, ranks=all_ranks, steps_per_epoch=cfg.legacy.steps_per_epoch,
            levels=s.lag_levels, per_decade=s.matched_per_decade, cache_dir=cache_dir,
            force=force,
        )  # fmt: skip
        how = "cache" if r.cached else "processed"
        print(f"  {p}: {r.meta['label']} ({how}, {time.perf_counter() - t0:.2f} s)")
        processed.append(r)
    if args.group:
        check_group([r.meta for r in processed])
    names = _unique_names([r.meta for r in processed])
    labels = dict(zip(names, [r.meta["label"] for r in processed], strict=True))
    if len(set(labels.values())) < len(labels):  # same config twice: tell them apart by name
        labels = {n: f"{lab} [{n}]" for n, lab in labels.items()}
    binned = pd.concat(
        [r.binned.assign(run=n, label=labels[n], experiment=experiment)
         for n, r in zip(names, processed, strict=True)], ignore_index=True
    )  # fmt: skip
    group_label = f"{processed[0].meta['label']} ({len(processed)} seeds)" if args.group else ""
    ctx = {"cfg": cfg, "selection": selection, "selection_name": selection_name,
           "experiment": experiment, "fig_dir": fig_dir, "interactive": interactive}  # fmt: skip

    written = []
    if args.comparative:
        drawn, drawn_labels = binned, labels
        if args.group:  # one curve with its seed band per bin
            drawn = band(binned.drop(columns=["label", "experiment"]),
                         keys=("rank_lo", "rank_hi", "step")).assign(run=args.group)  # fmt: skip
            drawn.attrs = dict(binned.attrs)
            drawn_labels = {args.group: group_label}
        bins = binned[["rank_lo", "rank_hi"]].drop_duplicates().sort_values("rank_lo")
        if cfg.plot.max_comparative_bins:
            bins = bins.head(cfg.plot.max_comparative_bins)
        sub = fig_dir / "comparative_visualizations" if fig_dir else None
        for lo, hi in bins.itertuples(index=False):
            d = plots.comparative_figure(
                drawn, int(lo), int(hi), drawn_labels, plot=cfg.plot, title=f"{experiment}",
                out_dir=sub, name=f"{experiment}_loss_accuracy_{file_label(lo, hi)}",
                keep=interactive,
            )  # fmt: skip
            written += d.paths
    elif args.group:
        curves = _group_curves(processed, names, selection)
        what = "rank bins" if selection is None else f"{selection_name} ranks"
        written += _metric_figures(curves, f"{experiment}: {group_label}, {what}",
                                   f"{experiment}_{args.group}_{selection_name}_", ctx)  # fmt: skip
    else:
        for n, r in zip(names, processed, strict=True):
            written += _per_run_figures(r, n, labels[n], ctx)
    if not args.comparative:
        for n, r in zip(names, processed, strict=True):
            if r.positions is not None:
                d = plots.heatmap_figure(
                    r.positions, plot=cfg.plot, title=f"{experiment}: {labels[n]}",
                    out_dir=fig_dir, name=f"{experiment}_{n}_loss_heatmap_rank_position",
                    keep=interactive,
                )  # fmt: skip
                written += d.paths

    # the lag: per run, then per group; every run keeps its own K and floor
    edges = list(cfg.edges) or None
    lags = pd.concat(
        [lag.bin_lag(r.crossings, edges, r.meta["K"]).assign(run=n)
         for n, r in zip(names, processed, strict=True)], ignore_index=True
    )  # fmt: skip
    gaps = pd.concat(
        [lag.loss_gap(r.matched).assign(run=n) for n, r in zip(names, processed, strict=True)],
        ignore_index=True,
    )
    lags["experiment"] = args.group if args.group else lags["run"].map(labels)
    d = plots.lag_figure(
        lags, plot=cfg.plot, title=f"{experiment}: lag of rarer rank bins", out_dir=fig_dir,
        name=f"{experiment}_lag_ratio", keep=interactive,
    )  # fmt: skip
    written += d.paths

    thr = summaries.thresholds(binned, s.loss_threshold, s.accuracy_threshold)
    metas = [{**r.meta, "name": n} for n, r in zip(names, processed, strict=True)]
    runs = summaries.run_summary(metas)
    floor_known = all(r.meta.get("floor_known", True) for r in processed)
    _print_summaries(thr, runs, s)
    _print_lag(lags, gaps, args.group, floor_known)
    if args.export:
        _write_table(binned, args.export, "--export")
    if args.export_summary:
        wide = lags.pivot_table(
            index=["run", "rank_lo", "rank_hi"], columns="level",
            values=["median_presentations", "lag_ratio", "n_reached"],
        )  # fmt: skip
        wide.columns = [f"{v}_{lv:g}" for v, lv in wide.columns]
        table = (thr.merge(wide.reset_index(), on=["run", "rank_lo", "rank_hi"], how="left")
                 .merge(gaps[["run", "rank_lo", "rank_hi", "log_loss_gap"]],
                        on=["run", "rank_lo", "rank_hi"], how="left")
                 .merge(runs, on="run", how="left"))  # fmt: skip
        _write_table(table, args.export_summary, "--export-summary")
    if written:
        print(f"figures: {len(written)} files under {fig_dir}, e.g. {written[0]}")
    if interactive:
        import matplotlib.pyplot as plt

        plt.show()
    return 0


def _print_summaries(thr: pd.DataFrame, runs: pd.DataFrame, s) -> None:
    import numpy as np
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_columns", 20,
                           "display.float_format", "{:.4g}".format):  # fmt: skip
        print("\nruns: memorized bits at the last evaluation, per sequence (L-1)(1 - loss/ln 2)")
        print("clipped at 0 per sequence; unclipped; the Bayes floor's ceiling by the same formula")
        shown = runs.drop(columns=["label"])
        n = [_count(v) for v in runs["n_params"]]  # legacy logs do not record it: unknown
        shown["n_params"] = n
        bpp = zip(runs["bits_per_param"], n, strict=True)
        shown["bits_per_param"] = [f"{b:.4g}" if isinstance(c, int) else "unknown" for b, c in bpp]
        for col in ("memorized_bits", "memorized_bits_unclipped", "bits_ceiling"):
            if shown[col].isna().any():  # e.g. no Bayes ceiling without the bits: unknown
                shown[col] = [f"{v:.4g}" if np.isfinite(v) else "unknown" for v in shown[col]]
        print(shown.to_string(index=False))
        head = thr[thr["rank_lo"] < 1000]
        print(
            f"\npresentations to reach loss <= {s.loss_threshold} nats and accuracy >= "
            f"{s.accuracy_threshold} per rank bin (ranks < 1000 shown; --export-summary has all)"
        )
        cols = ["run", "rank_lo", "rank_hi", "presentations_to_loss", "presentations_to_accuracy",
                "final_loss", "final_accuracy"]  # fmt: skip
        print(head[cols].to_string(index=False))


def _count(v) -> int | str:
    """A recorded count, or "unknown" where the run does not record it."""
    import numpy as np

    try:
        return int(v) if v is not None and np.isfinite(float(v)) else "unknown"
    except (TypeError, ValueError):
        return "unknown"


def lag_rows(lags: pd.DataFrame, gaps: pd.DataFrame, group: str | None) -> pd.DataFrame:
    """The printed lag table: one row per (run or group, rank bin), one column per level
    ("ratio (reached/ranks)", or with a group "mean +- std [min, max]") and the log-loss gap."""
    import numpy as np
    import pandas as pd

    from ..analysis import lag
    from ..analysis.binning import bin_label

    levels = sorted(lags["level"].unique(), reverse=True)
    rows = []
    if group:
        gl, gg = lag.group_lag(lags), lag.group_gap(gaps)
        for (lo, hi), g in gl.groupby(["rank_lo", "rank_hi"], sort=True):
            row = {"group": group, "bin": bin_label(int(lo), int(hi))}
            for lv in levels:
                x = g[g["level"] == lv].iloc[0]
                row[f"lag {lv:g}"] = (
                    f"{x.lag_ratio_mean:.2f} +- {x.lag_ratio_std:.2f} "
                    f"[{x.lag_ratio_min:.2f}, {x.lag_ratio_max:.2f}]"
                    if x.lag_ratio_n
                    else f"- ({x.n_reached_mean:g}/{x.n_ranks_mean:g} reached)"
                )  # fmt: skip
            y = gg[(gg.rank_lo == lo) & (gg.rank_hi == hi)]
            row["log-loss gap"] = (
                f"{y.log_loss_gap_mean.iloc[0]:+.3f} +- {y.log_loss_gap_std.iloc[0]:.3f}"
                if len(y) and y.log_loss_gap_n.iloc[0] else "-"
            )  # fmt: skip
            rows.append(row)
        return pd.DataFrame(rows)
    for (run, lo, hi), g in lags.groupby(["run", "rank_lo", "rank_hi"], sort=False):
        row = {"run": run, "bin": bin_label(int(lo), int(hi))}
        for lv in levels:
            x = g[g["level"] == lv].iloc[0]
            ratio = f"{x.lag_ratio:.2f}" if np.isfinite(x.lag_ratio) else "-"
            row[f"lag {lv:g}"] = f"{ratio} ({x.n_reached}/{x.n_ranks})"
        y = gaps[(gaps.run == run) & (gaps.rank_lo == lo) & (gaps.rank_hi == hi)]
        row["log-loss gap"] = (
            f"{y.log_loss_gap.iloc[0]:+.3f}" if len(y) and y.n_points.iloc[0] else "-"
        )
        rows.append(row)
    return pd.DataFrame(rows)


def _print_lag(lags: pd.DataFrame, gaps: pd.DataFrame, group: str | None, floor: bool) -> None:
    import pandas as pd

    from ..analysis.binning import bin_label

    top = lags.sort_values("rank_lo").iloc[0]
    print(
        f"\nlag: presentations the median rank of each bin needs to bring (loss - floor) to the "
        f"level's share of its initial value,\nas a ratio to {bin_label(top.rank_lo, top.rank_hi)}"
        " (> 1: the bin lags; - : half or more of its ranks never reach the level);\nlog-loss "
        "gap: mean log-loss difference to the top bin at equal presentations, read per rank"
        + ("" if floor else "\n(no Bayes floor for these runs: floor 0, the levels are of loss)")
    )
    if group:
        print(f"seed group {group!r}: mean +- std [min, max] over {lags['run'].nunique()} runs")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(lag_rows(lags, gaps, group).to_string(index=False))
