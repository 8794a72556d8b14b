"""`phenomjax fit RUN [RUN ...]`: fit the phenomenological model to a run or seed group.

The grid is a config (phenomjax/configs/fit.toml by default): `--config GRID.toml` and
`--set grid.w=[1,8]` like every other command; the older flags (--w, --lr, ...) still work and
are applied as overrides on top of it.
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

from ..config import comma_floats, comma_ints, comma_words, load_config
from ..phenom.fit import FitGridConfig, fit_run, format_report, grid_config, run_paths
from ..phenom.scoring import ScoreConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "run",
        nargs="+",
        help="run directory or legacy .pkl log; several runs (or a folder of seed-<s> runs, "
        "as `phenomjax train --seeds` writes) are one seed group, scored against its band",
    )
    p.add_argument("--out", default=None, help="output folder (default: <first run>-fit beside it)")
    p.add_argument("--config", default=None, help="fit grid TOML (default: the shipped fit.toml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a grid field, e.g. --set grid.w=[1,8] (repeatable)")  # fmt: skip
    p.add_argument("--w", type=comma_ints, default=None, help="windows w (grid.w)")
    p.add_argument("--d", type=comma_ints, default=None, help="widths d (grid.d)")
    p.add_argument("--lr", type=comma_floats, default=None,
                   help="learning rates: one optimizer entry with these rates")  # fmt: skip
    p.add_argument("--scale", type=comma_floats, default=None, help="initial scales (grid.scale)")
    p.add_argument("--seeds", type=int, default=None, help="seeds of the best's refit")
    p.add_argument("--modes", default=None, help="modes (grid.modes)")
    p.add_argument("--optimizer", default=None, help="one optimizer instead of the family")
    p.add_argument("--param", default=None, help="full, shared or relative (grid.param)")
    p.add_argument("--batch", type=int, default=None, help="batch size if the run lacks one")
    p.add_argument("--num-evals", type=int, default=None, help="log-spaced fit evaluations")
    p.add_argument("--holdout", choices=("steps", "bins"), default=None,
                   help="rank members on the first half of the evaluations (steps) or on the "
                   "bins below rank 100 (bins) and report the error on the rest")  # fmt: skip
    p.add_argument("--no-shift", action="store_true", help="fix the presentation scale at 1")
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bars (e.g. in batch jobs)"
    )


def run(args: argparse.Namespace) -> int:
    paths = run_paths(args.run)
    first = Path(args.run[0])
    out = Path(args.out) if args.out else first.with_name(first.stem + "-fit")
    base = load_config(FitGridConfig, args.config or _default_path(), args.set)
    score = ScoreConfig(**{**base.score.__dict__, "shift": False}) if args.no_shift else None
    cfg = grid_config(
        base,
        ws=args.w,
        ds=args.d,
        lrs=args.lr,
        scales=args.scale,
        seeds=args.seeds,
        modes=comma_words(args.modes) if args.modes else None,
        optimizer=args.optimizer,
        param=comma_words(args.param) if args.param else None,
        batch=args.batch,
        num_evals=args.num_evals,
        score=score,
    )
    report = fit_run(paths, out, cfg, progress=not args.no_progress, holdout=args.holdout)
    print(format_report(report))
    print(f"report: {out / 'report.json'}")
    return 0


def _default_path() -> Path:
    return Path(str(resources.files("phenomjax") / "configs" / "fit.toml"))
