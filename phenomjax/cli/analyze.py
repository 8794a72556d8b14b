"""`phenomjax analyze` and `python scripts/analysis.py`: the historical analysis CLI, kept.

Every historical flag keeps its meaning (--experiment, --rank-selection, --force-reprocess,
--no-show-plots, --no-save-plots, --comparative); added: --config (the analysis TOML), --set
(override a field of it), --export (the binned table, CSV or parquet by extension),
--export-summary, --run (analyse these paths instead of an experiment's; a group folder that
`train --seeds` wrote is one seed group), --group (the runs differ only in seed: one experiment
with a band), --figures-dir and --cache-dir.

Besides the figures it prints memorized bits per run, the presentations each rank bin needs to
reach a level relative to its floor, and the lag table (analysis/lag.py); a seed group's lag as
the geometric mean with its [min, max] over seeds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", help="experiment of the config to analyse (default: config's); "
                   "with --run, the name its figures and tables carry")  # fmt: skip
    p.add_argument(
        "--rank-selection",
        help="ranks drawn one curve each: low (0-9), mid (30-39), high (60-69), selected "
        "(all three), any selection of the config, or all (one curve per rank bin); with "
        "--comparative, one figure per selected rank instead of per rank bin",
    )
    p.add_argument("--force-reprocess", action="store_true", help="rebuild cached tables")
    p.add_argument("--no-show-plots", action="store_true", help="never open a plot window")
    p.add_argument("--no-save-plots", action="store_true", help="do not write figures")
    p.add_argument(
        "--comparative",
        action="store_true",
        help="per rank bin (or selected rank), one curve per run or seed group",
    )
    p.add_argument("--config", type=Path, help="analysis TOML (default: the packaged one)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of the analysis config, e.g. --set "
                   "summary.loss_threshold=0.1 (repeatable)")  # fmt: skip
    p.add_argument("--export", type=Path, help="write the binned table (.csv or .parquet)")
    p.add_argument("--export-summary", type=Path, help="write the summary table (.csv/.parquet)")
    p.add_argument(
        "--run", action="append", type=Path, default=[], help="a run dir, legacy pickle or "
        "seed-group folder (`train --seeds` output: one group with a band) to analyse instead "
        "of the experiment's paths (repeatable)"
    )  # fmt: skip
    p.add_argument(
        "--group", metavar="NAME", help="the runs (--run, or the experiment's) differ only in "
        "seed: analyse them as one seed group NAME, figures with a min-max band over seeds and "
        "the lag as the geometric mean [min, max] over seeds (e.g. --run runs/s0 --run runs/s1 "
        "--group demo)"
    )  # fmt: skip
    p.add_argument("--figures-dir", type=Path, help="override [paths] figures")
    p.add_argument("--cache-dir", type=Path, help="override [paths] processed")


def _check_flags(args: argparse.Namespace) -> None:
    """Flags that cannot act together are refused, naming them."""
    if args.figures_dir is not None and args.no_save_plots:
        raise ConfigError("--figures-dir: given with --no-save-plots, which writes no figures")
    if args.group is not None and not args.group.strip():
        raise ConfigError("--group: expected a name")
    for flag, path in (("--export", args.export), ("--export-summary", args.export_summary)):
        if path is not None and path.suffix.lower() not in (".csv", ".parquet", ".pq"):
            raise ConfigError(f"{flag} {path}: expected a .csv or .parquet path")


def run(args: argparse.Namespace) -> int:
    # NumPy, pandas and matplotlib load here, not at the top: `analyze --help` stays instant
    from ..analysis import figstyle, pipeline, settings, text

    _check_flags(args)
    cfg = settings.load_analysis_config(args.config, args.set)
    if args.run:
        one = args.run[0]
        only = (one.stem if one.is_file() else one.name) if len(args.run) == 1 else "runs"
        experiment, paths = args.experiment or args.group or only, list(args.run)
    else:
        experiment = args.experiment or cfg.defaults.experiment
        paths = cfg.run_paths(experiment)
    save = not args.no_save_plots and cfg.defaults.save_plots
    interactive = figstyle.use_backend(not args.no_show_plots and cfg.defaults.show_plots)
    req = pipeline.Request(
        paths=paths, experiment=experiment, group=args.group, comparative=args.comparative,
        selection_name=args.rank_selection or cfg.defaults.rank_selection,
        selection_given=args.rank_selection is not None,
        figures=(args.figures_dir or Path(cfg.paths.figures)) if save else None,
        cache=args.cache_dir or Path(cfg.paths.processed),
        force=args.force_reprocess or cfg.defaults.force_reprocess, keep=interactive,
    )  # fmt: skip
    a = pipeline.analyze(cfg, req, emit=print)
    print("\n" + text.format_analysis(a, cfg.summary))
    for table, path, flag in ((a.binned, args.export, "--export"),
                              (None, args.export_summary, "--export-summary")):  # fmt: skip
        if path is not None:
            df = table if table is not None else pipeline.summary_table(a)
            pipeline.write_table(df, path, flag)
            print(f"wrote {path} ({len(df)} rows)")
    if a.figures:
        print(f"figures: {len(a.figures)} files under {req.figures}, e.g. {a.figures[0]}")
    if interactive:
        figstyle.show()
    return 0
