"""`phenomjax train-phenom CONFIG`: train one phenomenological model from a config."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..config import load_config
from ..data import zipf_weights
from ..phenom.train import PhenomConfig, train_phenom
from ..runs.reuse import check_outside


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="TOML config (sections data, model, optimizer, train)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. model.w=4"
    )
    parser.add_argument("--out", default=None, help="run directory (default runs/<config stem>)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last checkpoint (from step 0 if it has none; "
        "a new run if there is none)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="write into an existing folder phenomjax did not write, beside its files (refused "
        "when one has a name phenomjax would write; nothing there is deleted or overwritten)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(PhenomConfig, args.config, args.set)
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    check_outside([args.config], out)
    rd = train_phenom(cfg, out, resume=args.resume, progress=not args.no_progress,
                      force=args.force)  # fmt: skip
    ev = rd.read_evals()
    last = ev[ev.step == ev.step.max()]
    weights = zipf_weights(cfg.data.K, cfg.data.alpha)
    print(
        f"{rd.path}: step {int(last.step.iloc[0])}, expected loss "
        f"{float(np.dot(weights, last.loss.to_numpy())):.4f} nats, mean accuracy "
        f"{float(last.accuracy.mean()):.3f}"
    )
    return 0
