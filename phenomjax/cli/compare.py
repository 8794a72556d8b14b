"""`phenomjax compare RUN FIT [RUN FIT ...]`: overlay fitted curves on the empirical ones."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..analysis.overlay import overlay_figure, side_by_side
from ..errors import DataError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="RUN FIT", help="one or more RUN FIT pairs")
    p.add_argument("--out", default=None, help="figures folder (default: FIT/figures)")
    p.add_argument("--names", default=None, help="comma-separated names of the pairs' runs")


def run(args: argparse.Namespace) -> int:
    if len(args.paths) % 2:
        raise DataError(
            f"expected RUN FIT pairs, got {len(args.paths)} paths: {args.paths} "
            "(the last RUN has no FIT)"
        )
    pairs = [(Path(a), Path(b)) for a, b in zip(args.paths[::2], args.paths[1::2], strict=True)]
    # a run's name in file names: a legacy log's without .pkl, as analyze names it
    names = args.names.split(",") if args.names else [r.stem if r.is_file() else r.name
                                                       for r, _ in pairs]  # fmt: skip
    if len(names) != len(pairs):
        raise DataError(f"--names: expected {len(pairs)} names, got {len(names)}")
    out = Path(args.out) if args.out else pairs[0][1] / "figures"
    for (r, f), nm in zip(pairs, names, strict=True):
        ov = overlay_figure(r, f, out, name="overlay" if len(pairs) == 1 else f"overlay-{nm}")
        print(f"{r} vs {f}: " + ", ".join(str(p) for p in ov.paths))
    if len(pairs) > 1:
        sb = side_by_side(pairs, out, names=names)
        print("side by side: " + ", ".join(str(p) for p in sb.paths))
    return 0
