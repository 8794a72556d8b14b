"""`phenomjax experiments [--cpu] [--seeds 0,1,...] [--out runs]`: the four experiments at once.

Trains small, medium, large_rope and large_lr (docs/design.md §3; experiments/<name>.toml, or
experiments/<name>_cpu.toml with --cpu) into the run paths the packaged analysis config names,
runs/<name> or runs/<name>_cpu, so that `python scripts/analysis.py --experiment all ...` finds
them. With --seeds each experiment is a seed group, <out>/<name>[_cpu]/seed-<s>, which analyze
and fit read as one experiment with a band. A finished run with the same config is reused, one
cut short resumed (runs/reuse.ensure_run); one line per run says which.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from ..config import comma_ints, comma_words, load_config, to_dict
from ..errors import ConfigError
from ..runs.reuse import ensure_run
from ..transformer.train import TrainConfig, train

EXPERIMENTS = ("small", "medium", "large_rope", "large_lr")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cpu", action="store_true",
                   help="the CPU-scale configs (<name>_cpu.toml, minutes each on 2 cores); "
                   "default: the paper-scale ones, for an accelerator")  # fmt: skip
    p.add_argument("--seeds", type=comma_ints, default=None,
                   help="one run per seed (data.seed = s) in <out>/<name>/seed-<s>: a seed group "
                   "per experiment (default: one run each, the config's seed)")  # fmt: skip
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs"),
        help="folder of the runs (default: runs, where the analysis config looks)",
    )
    p.add_argument(
        "--from",
        dest="source",
        type=Path,
        default=Path("experiments"),
        help="folder of the experiment TOMLs (default: experiments, the repository's)",
    )
    p.add_argument(
        "--only",
        type=comma_words,
        default=None,
        help=f"a subset of {','.join(EXPERIMENTS)} (comma-separated)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field of every experiment's config (repeatable)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def plan(args: argparse.Namespace) -> list[tuple[str, TrainConfig, Path]]:
    """(label, config, run path) of every run to train, in order; every config read first, so
    a missing or bad one is refused before anything trains."""
    names = list(args.only) if args.only else list(EXPERIMENTS)
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise ConfigError(f"--only {','.join(unknown)}: expected some of {', '.join(EXPERIMENTS)}")
    out = []
    for name in names:
        stem = f"{name}_cpu" if args.cpu else name
        path = args.source / f"{stem}.toml"
        if not path.is_file():
            raise ConfigError(f"{path}: not found; run from the repository root or pass --from "
                              "the folder holding the experiment TOMLs")  # fmt: skip
        cfg = load_config(TrainConfig, path, args.set)
        if args.seeds is None:
            out.append((stem, cfg, args.out / stem))
            continue
        for s in dict.fromkeys(args.seeds):
            seeded = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, seed=s))
            out.append((f"{stem} seed {s}", seeded, args.out / stem / f"seed-{s}"))
    return out


def run(args: argparse.Namespace) -> int:
    defaults = to_dict(TrainConfig())
    for label, cfg, out in plan(args):
        t0 = time.perf_counter()
        result, how = ensure_run(
            out, to_dict(cfg), kind="transformer", defaults=defaults,
            train=lambda resume, c=cfg, o=out: train(c, o, resume=resume,
                                                     progress=not args.no_progress),
        )  # fmt: skip
        status = result.manifest().get("status")
        print(f"{out}: {label}, {how} ({status}, {time.perf_counter() - t0:.0f} s)")
    return 0
