"""`phenomjax regime CONFIG [--out DIR]`: the regime map (docs/design.md §6, "The protocol")."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from ..config import load_config
from ..regime import RegimeConfig, run_regimes, write_outputs


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="TOML config, e.g. experiments/regime_cpu.toml")
    p.add_argument("--out", help="output folder (default: runs/<config stem>)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set map.seeds=[0,1,2,3,4] (repeatable)",
    )
    p.add_argument("--progress", action="store_true", help="progress bars per run and sweep")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(RegimeConfig, args.config, args.set)
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    t0 = time.perf_counter()
    emit = lambda text: print(f"{text} ({time.perf_counter() - t0:.0f} s)", flush=True)  # noqa: E731
    result = run_regimes(cfg, out, progress=args.progress, emit=emit)
    paths = write_outputs(result, out)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(result.verdicts.to_string(index=False))
    print(f"wrote {len(paths)} files under {out} ({time.perf_counter() - t0:.0f} s)")
    return 0
