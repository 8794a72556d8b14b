"""`phenomjax fit RUN [RUN ...]`: fit the phenomenological model to a run or seed group.

The grid is a config (phenomjax/configs/fit.toml by default): `--config GRID.toml` and
`--set grid.w=[1,8]` like every other command. The short flags are aliases: each one becomes
the `--set` override named in ALIASES, applied after the --set ones.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

from ..config import comma_floats, comma_ints, comma_words, load_config
from ..fitting.grid import FitGridConfig, grid_path
from ..workers import add_jobs

# flag (argparse dest) -> the grid field it sets; --lr and --optimizer replace [[optimizers]]
ALIASES = {
    "w": "grid.w",
    "d": "grid.d",
    "scale": "grid.scale",
    "modes": "grid.mode",
    "param": "grid.param",
    "batch": "grid.batch",
    "num_evals": "grid.num_evals",
    "refit_seeds": "grid.refit_seeds",
    "seeds": "grid.refit_seeds",  # deprecated: --refit-seeds
}
SWITCHES = {"no_shift": "score.shift=false"}  # flags without a value


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
    p.add_argument(
        "--refit-seeds",
        type=int,
        default=None,
        metavar="N",
        help="seeds of the best's refit, the run's own included (grid.refit_seeds)",
    )
    p.add_argument("--seeds", type=int, default=None, help="deprecated: use --refit-seeds")
    p.add_argument("--w", type=comma_ints, default=None, help="windows w (grid.w)")
    p.add_argument("--d", type=comma_ints, default=None, help="widths d (grid.d)")
    p.add_argument("--lr", type=comma_floats, default=None,
                   help="learning rates: one [[optimizers]] entry with these rates")  # fmt: skip
    p.add_argument("--scale", type=comma_floats, default=None, help="initial scales (grid.scale)")
    p.add_argument("--modes", type=comma_words, default=None, help="modes (grid.mode)")
    p.add_argument(
        "--optimizer",
        default=None,
        help="one [[optimizers]] entry of this optimizer instead of the family",
    )
    p.add_argument("--param", type=comma_words, default=None,
                   help="full, shared or relative (grid.param)")  # fmt: skip
    p.add_argument("--batch", type=int, default=None, help="batch size if the run lacks one")
    p.add_argument("--num-evals", type=int, default=None, help="log-spaced fit evaluations")
    p.add_argument("--holdout", choices=("steps", "bins"), default=None,
                   help="rank members on the first half of the evaluations (steps) or on the "
                   "bins below rank 100 (bins) and report the error on the rest")  # fmt: skip
    p.add_argument("--no-shift", action="store_true",
                   help="fix the presentation scale at 1 (score.shift=false)")  # fmt: skip
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bars (e.g. in batch jobs)"
    )
    add_jobs(p, "a sweep's groups", auto=True)


def _toml(value) -> str:
    """A flag's value as the TOML text of a --set override."""
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def alias_overrides(args: argparse.Namespace, base: FitGridConfig) -> list[str]:
    """The --set overrides the short flags stand for (ALIASES; --lr and --optimizer: one
    [[optimizers]] entry, the first entry's b1, b2 and weight decay kept)."""
    if args.seeds is not None:
        warnings.warn("--seeds is deprecated: it is --refit-seeds (the best's refit seeds)",
                      stacklevel=2)  # fmt: skip
    out = [f"{field}={_toml(getattr(args, flag))}" for flag, field in ALIASES.items()
           if getattr(args, flag, None) is not None]  # fmt: skip
    out += [item for flag, item in SWITCHES.items() if getattr(args, flag, False)]
    if args.lr or args.optimizer:
        first = base.optimizers[0]
        entry = {"name": args.optimizer or first.name, "lr": list(args.lr or first.lr),
                 "b1": list(first.b1), "b2": list(first.b2),
                 "weight_decay": list(first.weight_decay)}  # fmt: skip
        out.append("optimizers=[{" + ", ".join(f"{k} = {json.dumps(v)}"
                                               for k, v in entry.items()) + "}]")  # fmt: skip
    return out


def run(args: argparse.Namespace) -> int:
    from ..fitting import fit_run, format_report

    first = Path(args.run[0])
    out = Path(args.out) if args.out else first.with_name(first.stem + "-fit")
    config = args.config or grid_path()
    base = load_config(FitGridConfig, config, args.set)
    cfg = load_config(FitGridConfig, config, args.set + alias_overrides(args, base))
    runs = args.run[0] if len(args.run) == 1 else args.run  # a group folder stays one input
    report = fit_run(runs, out, cfg, progress=not args.no_progress, holdout=args.holdout,
                     jobs=args.jobs)  # fmt: skip
    print(format_report(report))
    print(f"report: {out / 'report.json'} ({report.outcome})")
    return 0
