"""`phenomjax sweep CONFIG`: a vmapped sweep of the phenomenological model's knobs."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from ..config import comma_floats, comma_ints, comma_words, load_config
from ..phenom import variants
from ..phenom.sweep import CURVES, sweep
from ..phenom.train import PhenomConfig
from ..runs.reuse import check_outside
from ..workers import add_jobs

# flag -> axis (phenom.axes.AXES); a flag left out leaves the base config's value. Every
# variant's knob is a flag of its own (--forget, --readout-scale, --D-eff, ...).
FLAGS = {"lr": "lr", "scale": "scale", "seeds": "seed", "w": "w", "d": "d", "param": "param",
         "variant": "variant", **{k: k for k in variants.knob_names()}}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="base TOML config (as for train-phenom)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a config field, e.g. --set train.steps=2000 (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--lr", type=comma_floats, default=None, help="learning rates, e.g. 1e-3,1e-2"
    )
    parser.add_argument("--scale", type=comma_floats, default=None, help="initial scales")
    parser.add_argument(
        "--seeds", type=comma_ints, default=None, help="seeds (data, init, batches)"
    )
    parser.add_argument("--w", type=comma_ints, default=None, help="windows (outer loop)")
    parser.add_argument("--d", type=comma_ints, default=None, help="widths (outer loop)")
    parser.add_argument("--param", type=comma_words, default=None, help="full,shared,relative")
    parser.add_argument(
        "--variant", type=comma_words, default=None,
        help=f"variants (outer loop): some of {','.join(variants.VARIANTS)}",
    )  # fmt: skip
    kinds = {int: comma_ints, float: comma_floats}
    for f in variants.knob_fields():
        kind = variants.knob_types()[f.name]
        parser.add_argument(
            "--" + f.name.replace("_", "-"), dest=f.name, type=kinds[kind], default=None,
            help=f"{variants.owner(f.name)} knob (outer loop; default {f.default})",
        )  # fmt: skip
    parser.add_argument("--out", default=None, help="sweep folder (default runs/sweep-<stem>)")
    parser.add_argument(
        "--devices", type=int, default=1, help="devices to split members over (0 = all)"
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bars (e.g. in batch jobs)"
    )
    add_jobs(parser, "the groups (w, d, param, optimizer family, variant)", auto=True)
    parser.add_argument(
        "--force",
        action="store_true",
        help="write into an existing folder phenomjax did not write, beside its files (refused "
        "when one has a name phenomjax would write; nothing there is deleted or overwritten)",
    )


def run(args: argparse.Namespace) -> int:
    cfg = load_config(PhenomConfig, args.config, args.set)
    out = Path(args.out) if args.out else Path("runs") / f"sweep-{Path(args.config).stem}"
    axes = {axis: getattr(args, flag) for flag, axis in FLAGS.items() if getattr(args, flag)}
    check_outside([args.config], out)
    jobs = 1 if args.devices != 1 else args.jobs  # a device mesh: one process
    table = sweep(cfg, axes, out=out, progress=not args.no_progress, devices=args.devices,
                  force=args.force, jobs=jobs)  # fmt: skip
    cols = ["member", "w", "d", "param", "lr", "scale", "seed", "final_loss", "diverged"]
    with pd.option_context("display.width", 120):
        print(table[cols].sort_values("final_loss").to_string(index=False))
    print(f"{out}: {len(table)} members; curves in {out / CURVES}")
    return 0
