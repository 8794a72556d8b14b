"""`phenomjax compare RUN FIT [RUN FIT ...]`: overlay fitted curves on the empirical ones.

RUN is what FIT was fitted to: a run, a legacy log, a seed group's folder (drawn as the seeds'
mean with their min-max band), or one seed of that group.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import DataError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="RUN FIT", help="one or more RUN FIT pairs")
    p.add_argument("--out", default=None, help="figures folder (default: FIT/figures)")
    p.add_argument("--names", default=None, help="comma-separated names of the pairs' runs")


def run(args: argparse.Namespace) -> int:
    from ..fitting.overlay import draw_overlay, draw_side_by_side, overlay_data
    from ..runs import safe_name
    from ..runs.reuse import claim

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
    files = [safe_name(n, what="--names entry") for n in names]
    out = Path(args.out) if args.out else pairs[0][1] / "figures"
    got = [overlay_data(r, f) for r, f in pairs]  # every pair checked before anything is written
    claim(out, "compare figures")
    for (r, f), (data, elabel, flabel), nm in zip(pairs, got, files, strict=True):
        name = f"{nm}_overlay"  # <experiment>_<quantity>, as every figure (docs/design.md §5)
        paths = draw_overlay(data, elabel, flabel, out, name=name,
                             fresh_bits=bool(data.attrs.get("fresh_bits")))  # fmt: skip
        print(f"{r} vs {f}: " + ", ".join(str(p) for p in paths))
    if len(pairs) > 1:
        _, paths = draw_side_by_side(got, names, out, name="all_overlay")
        print("side by side: " + ", ".join(str(p) for p in paths))
    return 0
