"""`phenomjax demo`: train, analyse, fit and compare on the embedded default."""

from __future__ import annotations

import argparse

from ..demo import demo, format_summary
from ..runs.reuse import check_folder


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs", help="folder of demo/, demo-fit/, demo-figures/")
    p.add_argument("--fresh", action="store_true", help="recompute everything")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    check_folder(args.out, "the demo")  # its run, fit and figures folders are checked each
    summary = demo(
        args.out,
        fresh=args.fresh,
        progress=not args.no_progress,
        emit=lambda text: print(text, flush=True),
    )
    print(format_summary(summary), flush=True)
    return 0
