"""`phenomjax fit RUN`: fit the phenomenological model to a run's curves."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import comma_floats, comma_ints, comma_words
from ..phenom.fit import DEFAULT_DS, DEFAULT_LRS, DEFAULT_SCALES, DEFAULT_WS, fit_run, format_report
from ..phenom.scoring import ScoreConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run directory or legacy .pkl log")
    p.add_argument("--out", default=None, help="output folder (default: <run>-fit beside it)")
    p.add_argument("--w", type=comma_ints, default=DEFAULT_WS, help="windows w (default 1,4,8)")
    p.add_argument(
        "--d", type=comma_ints, default=DEFAULT_DS, help="embedding widths d (default 8)"
    )
    p.add_argument(
        "--lr",
        type=comma_floats,
        default=DEFAULT_LRS,
        help="learning rates (default 3e-5,1e-4,3e-4,1e-3)",
    )
    p.add_argument(
        "--scale",
        type=comma_floats,
        default=DEFAULT_SCALES,
        help="initial scales (default 0.01,0.1)",
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds of the best's refit (default 3)")
    p.add_argument(
        "--modes", default="expected,stochastic", help="modes (default expected,stochastic)"
    )
    p.add_argument("--optimizer", default="adam", help="optax optimizer of the phenom model")
    p.add_argument("--param", default="full", help="full, shared or relative")
    p.add_argument("--batch", type=int, default=None, help="batch size if the run lacks one")
    p.add_argument(
        "--num-evals", type=int, default=24, help="log-spaced fit evaluations (default 24)"
    )
    p.add_argument("--no-shift", action="store_true", help="fix the presentation scale at 1")
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bars (e.g. in batch jobs)"
    )


def run(args: argparse.Namespace) -> int:
    run_path = Path(args.run)
    out = Path(args.out) if args.out else run_path.with_name(run_path.stem + "-fit")
    report = fit_run(
        run_path,
        out,
        ws=args.w,
        ds=args.d,
        lrs=args.lr,
        scales=args.scale,
        seeds=args.seeds,
        modes=comma_words(args.modes),
        optimizer=args.optimizer,
        param=args.param,
        batch=args.batch,
        num_evals=args.num_evals,
        score=ScoreConfig(shift=not args.no_shift),
        progress=not args.no_progress,
    )
    print(format_report(report))
    print(f"report: {out / 'report.json'}")
    return 0
