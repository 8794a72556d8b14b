"""`phenomjax plan CONFIG`: parameters, FLOPs, peak memory and time of a run before it starts.

CONFIG is a transformer training config (sections data, model, optimizer, train, distributed;
a packaged name such as demo or tiny works as for `train`) or a phenomenological config (as for
`train-phenom`; model fields w, d, param). `--sweep-members N` plans a phenomenological sweep
group of N vmapped members (the product of its learning rates, scales and seeds) instead of one
run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from ..config import apply_overrides, load_config, read_toml
from ..errors import ConfigError
from ..phenom.train import ModelSection, PhenomConfig
from ..plan.report import format_plan, plan
from ..transformer.model import GPTConfig
from ..transformer.train import TrainConfig
from .train import resolve

# [model] keys only the phenomenological model has (w, d, param, embedding, init_scale, ...)
PHENOM_MODEL = {f.name for f in dataclasses.fields(ModelSection)} - {
    f.name for f in dataclasses.fields(GPTConfig)
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="TOML config (or a packaged name: demo, tiny)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a field"
    )
    p.add_argument(
        "--kind",
        choices=("auto", "transformer", "phenom"),
        default="auto",
        help="which config this is (auto: from its model section and train.mode)",
    )
    p.add_argument(
        "--sweep-members",
        type=int,
        default=1,
        metavar="N",
        help="plan a phenomenological sweep group of N vmapped members (default 1: one run)",
    )
    p.add_argument(
        "--sweep-seeds", type=int, default=1, metavar="S", help="seeds among the members"
    )
    p.add_argument("--no-measure", action="store_true", help="skip timing steps on this machine")
    p.add_argument("--budget", type=float, default=4.0, help="seconds of steps to time (default 4)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def kind_of(data: dict) -> str:
    """transformer or phenom, from the sections of a config's TOML (after overrides)."""
    model = data.get("model", {})
    if isinstance(model, dict) and set(model) & PHENOM_MODEL:
        return "phenom"
    train = data.get("train", {})
    if isinstance(train, dict) and "mode" in train:
        return "phenom"
    return "transformer"


def run(args: argparse.Namespace) -> int:
    if args.sweep_members < 1 or not 1 <= args.sweep_seeds <= args.sweep_members:
        raise ConfigError("--sweep-members N, --sweep-seeds S: expected 1 <= S <= N")
    path = resolve(args.config)
    kind = args.kind
    if kind == "auto":
        kind = kind_of(apply_overrides(read_toml(path), args.set))
    if kind == "transformer" and args.sweep_members > 1:
        raise ConfigError("--sweep-members: sweeps are of the phenomenological model only")
    cfg = load_config(TrainConfig if kind == "transformer" else PhenomConfig, path, args.set)
    report = plan(
        cfg,
        members=args.sweep_members,
        seeds=args.sweep_seeds,
        measure=not args.no_measure,
        budget_s=args.budget,
    )
    print(json.dumps(report) if args.json else format_plan(report))
    return 0
