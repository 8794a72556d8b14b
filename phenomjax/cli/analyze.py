"""`phenomjax analyze` and `python scripts/analysis.py`: the historical analysis CLI, kept.

Every historical flag keeps its meaning (--experiment, --rank-selection, --force-reprocess,
--no-show-plots, --no-save-plots, --comparative); added: --config (the analysis TOML),
--export (the binned table, CSV or parquet by extension), --export-summary, --run (analyse
these paths instead of an experiment's), --figures-dir and --cache-dir.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from ..analysis.binning import RANK_SELECTIONS
from ..analysis.settings import AnalysisConfig, load_analysis_config
from ..errors import ConfigError


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


def _selection(cfg: AnalysisConfig, name: str) -> list[int] | None:
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


def run(args: argparse.Namespace) -> int:
    from ..analysis import plots, summaries
    from ..analysis.cache import process_run

    cfg = load_analysis_config(args.config)
    experiment = args.experiment or cfg.defaults.experiment
    paths = list(args.run) if args.run else cfg.run_paths(experiment)
    if args.run:
        experiment = args.experiment or "runs"
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

    print(f"experiment {experiment}: {len(paths)} run(s)")
    processed = []
    for p in paths:
        t0 = time.perf_counter()
        r = process_run(
            p, edges=cfg.edges, ranks=all_ranks, steps_per_epoch=cfg.legacy.steps_per_epoch,
            cache_dir=cache_dir, force=force,
        )  # fmt: skip
        how = "cache" if r.cached else "processed"
        print(f"  {p}: {r.meta['label']} ({how}, {time.perf_counter() - t0:.2f} s)")
        processed.append(r)
    names = _unique_names([r.meta for r in processed])
    labels = dict(zip(names, [r.meta["label"] for r in processed], strict=True))
    if len(set(labels.values())) < len(labels):  # same config twice: tell them apart by name
        labels = {n: f"{lab} [{n}]" for n, lab in labels.items()}
    binned = pd.concat(
        [r.binned.assign(run=n, label=labels[n], experiment=experiment)
         for n, r in zip(names, processed, strict=True)], ignore_index=True
    )  # fmt: skip

    written = []
    if args.comparative:
        bins = binned[["rank_lo", "rank_hi"]].drop_duplicates().sort_values("rank_lo")
        if cfg.plot.max_comparative_bins:
            bins = bins.head(cfg.plot.max_comparative_bins)
        sub = fig_dir / "comparative_visualizations" if fig_dir else None
        for lo, hi in bins.itertuples(index=False):
            d = plots.comparative_figure(
                binned, int(lo), int(hi), labels, plot=cfg.plot, title=f"{experiment}",
                out_dir=sub, name=f"{experiment}_loss_accuracy_ranks_{lo}-{hi}", keep=interactive,
            )  # fmt: skip
            written += d.paths
    else:
        for n, r in zip(names, processed, strict=True):
            if selection is None:
                curves, what = plots.curves_from_bins(r.binned), "rank bins"
            else:
                curves, what = (
                    plots.curves_from_ranks(r.ranks, selection),
                    f"{selection_name} ranks",
                )
            if len(curves) == 0:
                print(f"  {n}: no rank of selection {selection_name!r} below K={r.meta['K']}")
                continue
            title = f"{experiment}: {labels[n]}, {what}"
            prefix = f"{experiment}_{n}_{selection_name}_"
            for metric, style, stem in (
                ("loss", "line", "loss_vs_presentations_line"),
                ("loss", "scatter", "loss_vs_presentations_scatter"),
                ("accuracy", "line", "accuracy_vs_presentations"),
            ):
                d = plots.metric_figure(
                    curves, metric, plot=cfg.plot, title=title, style=style, out_dir=fig_dir,
                    name=prefix + stem, keep=interactive,
                )  # fmt: skip
                written += d.paths
            if r.positions is not None:
                d = plots.heatmap_figure(
                    r.positions, plot=cfg.plot, title=f"{experiment}: {labels[n]}",
                    out_dir=fig_dir, name=f"{experiment}_{n}_loss_heatmap_rank_position",
                    keep=interactive,
                )  # fmt: skip
                written += d.paths

    s = cfg.summary
    thr = summaries.thresholds(binned, s.loss_threshold, s.accuracy_threshold)
    col = summaries.collapse(binned, s.collapse_points)
    metas = [{**r.meta, "name": n} for n, r in zip(names, processed, strict=True)]
    runs = summaries.run_summary(metas).merge(col, on="run", how="left")
    _print_summaries(thr, runs, s)
    if args.export:
        _write_table(binned, args.export, "--export")
    if args.export_summary:
        _write_table(thr.merge(runs, on="run", how="left"), args.export_summary, "--export-summary")
    if written:
        print(f"figures: {len(written)} files under {fig_dir}, e.g. {written[0]}")
    if interactive:
        import matplotlib.pyplot as plt

        plt.show()
    return 0


def _print_summaries(thr: pd.DataFrame, runs: pd.DataFrame, s) -> None:
    with pd.option_context("display.width", 160, "display.max_columns", 20,
                           "display.float_format", "{:.4g}".format):  # fmt: skip
        print("\nruns: memorized bits at the last evaluation; collapse spread of log-loss across")
        print("rank bins on presentations vs on steps (smaller = tighter; ratio > 1: collapse)")
        print(runs.drop(columns=["label"]).to_string(index=False))
        head = thr[thr["rank_lo"] < 1000]
        print(
            f"\npresentations to reach loss <= {s.loss_threshold} nats and accuracy >= "
            f"{s.accuracy_threshold} per rank bin (ranks < 1000 shown; --export-summary has all)"
        )
        cols = ["run", "rank_lo", "rank_hi", "presentations_to_loss", "presentations_to_accuracy",
                "final_loss", "final_accuracy"]  # fmt: skip
        print(head[cols].to_string(index=False))
