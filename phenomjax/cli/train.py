"""`phenomjax train CONFIG`: train the transformer, print the final losses against the floor."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ..bayes import per_sequence_floor
from ..config import comma_ints, load_config
from ..configs import packaged
from ..data import check_seed, make_bits, zipf_weights
from ..runs import RunDir
from ..runs.reuse import check_folder, check_outside
from ..transformer.train import TrainConfig, train


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="TOML config (or the name of a packaged one: demo, tiny)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set optimizer.lr=3e-4 (repeatable)",
    )
    p.add_argument("--out", help="run directory (default: runs/<config stem>)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last checkpoint (from step 0 if it has none; "
        "a new run if there is none)",
    )
    p.add_argument(
        "--seeds",
        type=comma_ints,
        default=None,
        help="train a seed group: one run per seed (data.seed = s: bits, init and batches) "
        "in <out>/seed-<s>; `phenomjax fit <out>` reads the group as one experiment",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="write into an existing folder phenomjax did not write, beside its files (refused "
        "when one has a name phenomjax would write; nothing there is deleted or overwritten)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def resolve(config: str) -> Path:
    """A config path, or the packaged config of that name (a bare word such as demo or tiny)."""
    path = Path(config)
    if not path.is_file() and path.suffix == "" and "/" not in config:
        return packaged(config)
    return path


def summary(run: RunDir) -> str:
    """Final loss of the top-10 ranks and of ranks >= 500 against their Bayes floors."""
    m = run.manifest()
    ev = run.read_evals()
    last = ev[ev.step == ev.step.max()].sort_values("rank")
    lines = [f"{run.path}: status {m['status']}, step {int(last.step.iloc[0])}"]
    if m["K"] <= 20000:
        bits = make_bits(m["seed"], m["K"], m["L"])
        floor, _ = per_sequence_floor(bits, zipf_weights(m["K"], m["alpha"]))
        loss = last.loss.to_numpy()
        for name, sel in (("ranks 0-9", slice(0, 10)), ("ranks >= 500", slice(500, None))):
            if len(loss[sel]):
                lo, fl = loss[sel].mean(), floor[sel].mean()
                lines.append(
                    f"  {name}: loss {lo:.4f} nats, Bayes floor {fl:.4f} (ratio {lo / fl:.2f})"
                )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    path = resolve(args.config)
    cfg = load_config(TrainConfig, path, args.set)
    out = Path(args.out) if args.out else Path("runs") / path.stem
    check_outside([path], out)
    go = dict(resume=args.resume, progress=not args.no_progress, force=args.force)
    if args.seeds is None:
        print(summary(train(cfg, out, **go)))
        return 0
    check_folder(out, "a seed group")
    seeds = [check_seed(s, where="--seeds") for s in dict.fromkeys(args.seeds)]
    for s in seeds:
        seeded = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, seed=s))
        print(summary(train(seeded, out / f"seed-{s}", **go)))
    return 0
