"""The phenomenological model's variants (docs/design.md §6), one module each, named here.

A variant module holds
- `Knobs`: a frozen dataclass of its own fields (a default each, a one-line comment each; a
  `check(bad)` method for their ranges, if any). They become fields of PhenomModel and of the
  config's [model] section (`--set model.D_eff=64`), sweep axes and fit-grid lists;
- `init(key, model, scale)`, `trainable_mask(params, model)`, `loss_and_grad(params, bits,
  weights)`, `sequence_metrics(params, bits, per_position=, chunk=)`: its parameters and kernels;
- `post_update(model)`: an optax transformation chained after the optimizer, or None;
- its cost for phenom/cost.py: `features_width`, `table_flops`, `row_flops`, `table_floats`;
- optionally `can_memorize(member)`, where its capacity is not the window's (fitting flags a
  member that cannot memorize; the default is w > 1);
- optionally `USES`, the variant modules whose knobs it takes too (V2 takes V1's D_eff): a
  knob belongs to one module, and a variant that extends another shares it.

Adding a variant: one module here and one line in VARIANTS. A model names its variant by
string (`model.variant`); a knob of another variant must keep its default there. For old
configs, "stated" with a readout_forget knob set means "readout_forget".
"""

from __future__ import annotations

import dataclasses
import itertools
from types import ModuleType
from typing import Any

from ...errors import ConfigError
from . import deflation, diffusion, readout_forget, stated

VARIANTS: dict[str, ModuleType] = {
    "stated": stated,  # the model as stated
    "readout_forget": readout_forget,  # B's own initial scale; a per-step shrink of A
    "v1": deflation,  # deflation in a finite shared readout of D_eff features (issue 18)
    "v2": diffusion,  # V1 with a diffusion of the readout between presentations (issue 18)
}


def knob_fields() -> list[dataclasses.Field]:
    """Every variant's knob fields, in registry order (each name belongs to one variant)."""
    out: dict[str, dataclasses.Field] = {}
    for name, mod in VARIANTS.items():
        for f in dataclasses.fields(mod.Knobs):
            if f.name in out:
                raise ConfigError(f"variants: knob {f.name!r} of {name!r} is another's")
            out[f.name] = f
    return list(out.values())


def knob_names() -> tuple[str, ...]:
    return tuple(f.name for f in knob_fields())


def knob_types() -> dict[str, type]:
    """Each knob's Python type (int or float), for sweep axes and grid lists."""
    kinds = {"int": int, "float": float, int: int, float: float}
    return {f.name: kinds[f.type] for f in knob_fields()}


def owner(knob: str) -> str:
    return next(
        n for n, m in VARIANTS.items() if knob in {f.name for f in dataclasses.fields(m.Knobs)}
    )


def resolve(name: str, values: dict[str, Any]) -> str:
    """The variant a model names, given its knob values: "stated" with a readout_forget knob
    set is "readout_forget" (the configs before the registry); unknown names are refused."""
    if name not in VARIANTS:
        raise ConfigError(f"model.variant: expected one of {list(VARIANTS)}, got {name!r}")
    legacy = {f.name for f in dataclasses.fields(readout_forget.Knobs)}
    defaults = {f.name: f.default for f in knob_fields()}
    if name == "stated" and any(values[k] != defaults[k] for k in legacy):
        return "readout_forget"
    return name


def modules(name: str) -> tuple[ModuleType, ...]:
    """The modules whose knobs variant `name` takes: its own, then those it USES."""
    mod = VARIANTS[name]
    return (mod, *getattr(mod, "USES", ()))


def foreign(name: str, values: dict[str, Any]) -> str | None:
    """The first knob set away from its default that variant `name` does not take, if any."""
    own = {f.name for m in modules(name) for f in dataclasses.fields(m.Knobs)}
    for f in knob_fields():
        if f.name not in own and values[f.name] != f.default:
            return f.name
    return None


def get(name: str) -> ModuleType:
    """The module of a variant by name."""
    if name not in VARIANTS:
        raise ConfigError(f"model.variant: expected one of {list(VARIANTS)}, got {name!r}")
    return VARIANTS[name]


def own_knobs(name: str) -> tuple[str, ...]:
    """The knobs a variant sweeps: its own ("stated" also takes readout_forget's, which turn it
    into readout_forget, as configs before the registry did)."""
    mods = [*modules(name)] + ([readout_forget] if name == "stated" else [])
    return tuple(f.name for m in mods for f in dataclasses.fields(m.Knobs))


def combinations(axes: dict[str, Any]) -> list[dict[str, Any]]:
    """The (variant, knobs) settings of a sweep or a fit grid, in order: per variant, the
    product of its own knobs' values (registry order), every other knob at its default.
    `axes` maps "variant" and every knob to its values; a knob swept away from its default
    that none of the variants owns is a ConfigError."""
    defaults = {f.name: f.default for f in knob_fields()}
    names = tuple(axes["variant"])
    for k in knob_names():
        if any(v != defaults[k] for v in axes[k]) and not any(k in own_knobs(n) for n in names):
            raise ConfigError(f"{k}: a knob of variant {owner(k)!r}, which variant "
                              f"{list(names)} does not include")  # fmt: skip
    out = []
    for name in names:
        own = own_knobs(name)
        for values in itertools.product(*(tuple(axes[k]) for k in own)):
            setting = {"variant": name, **defaults, **dict(zip(own, values, strict=True))}
            if setting not in out:
                out.append(setting)
    return out


def check_values(name: str, values) -> None:
    """A ConfigError naming knob `name` when one of `values` is out of its variant's range."""
    mod = VARIANTS[owner(name)]

    def bad(field: str, expected: str) -> ConfigError:
        return ConfigError(f"{field}: expected {expected}, got {list(values)}")

    for v in values:
        k = mod.Knobs(**{name: v})
        if hasattr(k, "check"):
            k.check(bad)
