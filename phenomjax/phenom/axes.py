"""The axes of a sweep of the phenomenological model: their names, their values (the base
config's where not swept), what sweep.json records of them, and the outer-loop groups they
make (docs/design.md §6). Pure Python over configs; the sweep itself is phenom/sweep.py."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from ..config import to_dict
from ..data import check_seed
from ..errors import ConfigError, DataError
from ..optim import OptimConfig, family, varying
from . import variants
from .train import PhenomConfig, build_model

# The axes of the model as stated: sweep.json always records them (the base config's value when
# not swept), so its description stays what a fit's sweep cache compares.
STATED_AXES = ("lr", "scale", "seed", "w", "d", "param", "optimizer")
# The variant and every variant's knobs (phenom/variants): recorded only when swept; the base
# config holds them.
VARIANT_AXES = ("variant",) + variants.knob_names()
# Per optimizer, its own learning rates (one list per `optimizer` value, in place of `lr`: a
# fit sweeps sgd near 1 and adam near 1e-3 in one sweep); recorded only when given.
OPTIMIZER_LR = "optimizer_lr"
AXES = STATED_AXES + VARIANT_AXES + (OPTIMIZER_LR,)


def sweep_axes(base_cfg: PhenomConfig, axes: Mapping[str, Sequence] | None) -> dict[str, tuple]:
    """Every axis of a sweep of `base_cfg`: the values given, or the base config's one value.

    Axis names are singular (lr, scale, seed, w, d, param, optimizer, variant and the variants'
    knobs: forget, readout_scale, D_eff, ...); an unknown one, a learning rate or scale that is
    not finite and > 0, or a seed outside [0, 2^32) (data.check_seed) is a ConfigError.
    `optimizer` values are OptimConfigs whose lr is ignored (the rates are the lr axis).
    """
    given = dict(axes or {})
    unknown = sorted(set(given) - set(AXES))
    if unknown:
        raise ConfigError(f"sweep axes: unknown axis {unknown[0]!r}; expected one of {list(AXES)}")
    m, o = base_cfg.model, base_cfg.optimizer
    base = {"lr": o.lr, "scale": m.init_scale, "seed": base_cfg.data.seed, "w": m.w, "d": m.d,
            "param": m.param, "optimizer": o, "variant": m.variant,
            **{k: getattr(m, k) for k in variants.knob_names()}}  # fmt: skip
    seed = lambda v: check_seed(v, where="sweep seed")  # noqa: E731  (the one seed rule)
    kind = {"lr": float, "scale": float, "seed": seed, **variants.knob_types()}
    out = {}
    for name in STATED_AXES + VARIANT_AXES:
        values = tuple(given.get(name) or (base[name],))
        try:
            out[name] = tuple(kind[name](v) for v in values) if name in kind else values
        except DataError as e:
            raise ConfigError(str(e)) from None
    for name in ("lr", "scale"):
        if not all(np.isfinite(v) and v > 0 for v in out[name]):
            raise ConfigError(f"sweep {name}: expected finite values > 0, got {list(out[name])}")
    out[OPTIMIZER_LR] = _optimizer_lr(given.get(OPTIMIZER_LR), out)
    return out


def _optimizer_lr(given, ax: Mapping[str, tuple]) -> tuple[tuple[float, ...], ...]:
    """The learning rates of each optimizer: the `optimizer_lr` lists, or `lr` for every one."""
    if not given:
        return tuple(ax["lr"] for _ in ax["optimizer"])
    if len(given) != len(ax["optimizer"]):
        raise ConfigError(f"sweep {OPTIMIZER_LR}: expected one list per optimizer "
                          f"({len(ax['optimizer'])}), got {len(given)}")  # fmt: skip
    out = tuple(tuple(float(v) for v in lrs) for lrs in given)
    if not all(lrs and all(np.isfinite(v) and v > 0 for v in lrs) for lrs in out):
        raise ConfigError(f"sweep {OPTIMIZER_LR}: expected non-empty lists of finite values > 0, "
                          f"got {[list(x) for x in out]}")  # fmt: skip
    return out


def recorded_axes(base_cfg: PhenomConfig, ax: Mapping[str, tuple]) -> dict:
    """The axes sweep.json records (and a fit's cache compares): an axis that is not swept is
    not recorded as one, the base config holds it; the stated model's axes are always recorded,
    so a sweep of the stated model keeps the axes it always had."""
    base = sweep_axes(base_cfg, {})
    out = {name: ax[name] for name in STATED_AXES}
    out["optimizer"] = [to_dict(o) for o in ax["optimizer"]]
    out.update({name: ax[name] for name in VARIANT_AXES if ax[name] != base[name]})
    if any(lrs != ax["lr"] for lrs in ax[OPTIMIZER_LR]):
        out[OPTIMIZER_LR] = [list(lrs) for lrs in ax[OPTIMIZER_LR]]
    return out


def describe(base_cfg: PhenomConfig, axes: Mapping[str, Sequence] | None,
             schedule: dict | None = None) -> dict:  # fmt: skip
    """What sweep.json holds for a sweep of `base_cfg` over `axes`; `schedule` (recorded only
    when given) says how members are stopped early, e.g. a successive halving's rungs."""
    out = {
        "base_config": to_dict(base_cfg),
        "axes": recorded_axes(base_cfg, sweep_axes(base_cfg, axes)),
        "curves": "per (member, step, rank); presentations int64 = floor(t B p + 0.5) "
        "in expected mode, counts in stochastic mode; expected_presentations float",
    }
    return out if schedule is None else {**out, "schedule": schedule}


class Group(NamedTuple):
    """One outer-loop group: one compiled program, its members vmapped."""

    cfg: PhenomConfig  # the group's config (its optimizer: the family's first setting)
    model: Any
    rates: tuple[tuple[OptimConfig, float], ...]  # (optimizer setting, lr) of its members


def groups(base_cfg: PhenomConfig, ax: Mapping[str, tuple]) -> list[Group]:
    """The outer loops' configs and models, each validated: optimizer family x variant x its
    knobs x w x d x param, in that order (the member ids follow it). The optimizers of one
    family (optim.family: adam and adamw, sgd and momentum) with the same schedule, clipping
    and eps share a group: their settings are vmapped with the learning rates."""
    out = []
    families: dict[tuple, list[tuple[OptimConfig, float]]] = {}
    for opt, lrs in zip(ax["optimizer"], ax[OPTIMIZER_LR], strict=True):
        rest = {k: v for k, v in _optim_fields(opt).items() if k not in varying(opt.name)}
        key = (family(opt.name), tuple(sorted(rest.items())))
        families.setdefault(key, []).extend((opt, lr) for lr in lrs)
    shapes = list(itertools.product(ax["w"], ax["d"], ax["param"]))
    for rates, setting, (w, d, param) in itertools.product(
        families.values(), variants.combinations(ax), shapes
    ):
        m = dataclasses.replace(base_cfg.model, w=w, d=d, param=param, **setting)
        first = dataclasses.replace(base_cfg.optimizer, **_optim_fields(rates[0][0]))
        cfg = dataclasses.replace(base_cfg, model=m, optimizer=first)
        for opt, _ in rates:
            dataclasses.replace(cfg.optimizer, **_optim_fields(opt)).validate()
        cfg.validate()
        out.append(Group(cfg, build_model(cfg), tuple(rates)))
    return out


def _optim_fields(opt: OptimConfig) -> dict:
    return {f.name: getattr(opt, f.name) for f in dataclasses.fields(OptimConfig) if f.name != "lr"}
