"""`phenomjax capacity CONFIG [--quick] [--out DIR]`: memorized bits per parameter."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ..capacity import CapacityConfig, run_capacity
from ..config import load_config
from ..runs.reuse import check_outside
from ..workers import add_jobs, check_jobs


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="TOML config, e.g. experiments/capacity_cpu.toml")
    p.add_argument("--quick", action="store_true", help="the smaller ladder of the [quick] section")
    p.add_argument("--out", help="output folder (default: runs/<config stem>[-quick])")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set train.steps=5000 (repeatable)",
    )
    p.add_argument(
        "--length",
        type=int,
        metavar="L",
        help="bits per sequence (ladder.L): longer L makes the ~log2 K shared bits a small share",
    )
    p.add_argument("--progress", action="store_true", help="a progress bar per run (with --jobs 1)")
    add_jobs(p, "independent runs")


def _interval(f: dict) -> str:
    return f"[{f['lo']:.2f}, {f['hi']:.2f}]" if np.isfinite(f["lo"]) else "(no interval)"


def run(args: argparse.Namespace) -> int:
    sets = [*args.set, *([f"ladder.L={args.length}"] if args.length is not None else [])]
    cfg = load_config(CapacityConfig, args.config, sets)
    stem = Path(args.config).stem + ("-quick" if args.quick else "")
    out = Path(args.out) if args.out else Path("runs") / stem
    check_outside([args.config], out)
    check_jobs(args.jobs)  # a bad --jobs is one line before anything is written
    t0 = time.perf_counter()

    def on_run(job, what, row):
        budget = f"{row['exposures']} exposures" if job.exposures else f"{row['budget']} steps"
        print(
            f"{job.name} ({job.role}): {what}; {row['params']} params, K={row['K']}, lr "
            f"{row['lr']:g}, {budget}: {row['memorized_bits']:.0f} bits of a ceiling of "
            f"{row['bits_ceiling']:.0f} ({row['dataset_bits']} in the data) "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )

    result, paths = run_capacity(
        cfg, out, quick=args.quick, progress=args.progress, on_run=on_run, jobs=args.jobs
    )
    cols = ["model", "size", "params", "params_core", "K_at_max", "capacity", "capacity_lo",
            "capacity_hi", "estimate", "bits_per_param", "bits_per_param_core", "bits_ceiling",
            "dataset_bits", "data_limited", "bracketed", "gain_last_doubling", "lr"]  # fmt: skip
    print(result.sizes[cols].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    for model, fit in result.fit.items():
        b, ll, c = fit.get("bits_per_param"), fit.get("loglog"), fit.get("bits_per_param_core")
        if b:
            print(
                f"{model}: {b['slope']:.3f} bits/param {_interval(b)}, "
                f"{c['slope']:.3f} {_interval(c)} without embeddings, positions and LayerNorm "
                f"(95% t-interval; {fit['used']}: {fit['n_sizes']}); log-log exponent "
                f"{ll['exponent']:.2f} {_interval(ll)}; Morris et al. 2025: 3.6"
            )
    if len(result.presentations_fit):
        print(result.presentations_fit.to_string(index=False))
    wall = time.perf_counter() - t0
    print(f"wrote {out / 'capacity.csv'} and {len(paths) - 1} more files ({wall:.0f} s)")
    return 0
