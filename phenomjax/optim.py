"""Optimizers by name, shared by the transformer trainer, the phenomenological fitter and the
sweeps. The learning rate lives in the optimizer state (optax.inject_hyperparams), so a vmapped
sweep can set one rate per member without recompiling.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax

from .errors import ConfigError

OPTIMIZERS = ("adam", "adamw", "sgd", "momentum", "rmsprop", "adagrad", "lion")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    name: str = "adamw"  # any of OPTIMIZERS; sgd matches the historical runs
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.01  # adamw/lion only; PyTorch's default (optax's is 1e-4)
    b1: float = 0.9  # adam-type first-moment decay, or the momentum coefficient (momentum)
    b2: float = 0.999  # adam-type second-moment decay
    eps: float = 1e-8  # adam-type denominator guard
    warmup_steps: int = 0  # linear warm-up from 0 to lr
    decay: Literal["none", "cosine", "linear"] = "none"  # after warm-up, down to lr * final_lr_frac
    final_lr_frac: float = 0.0  # where cosine / linear decay ends, as a fraction of lr
    decay_steps: int = 0  # decay over only the last this many steps, constant before
    # (warmup-stable-decay: runs of several lengths share their stable phase); 0: all after warm-up
    clip_norm: float = 0.0  # global-norm gradient clipping; 0 turns it off
    decay_all: bool = False  # adamw/lion decay on every leaf (biases, gains too), not 2+-D only

    def validate(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ConfigError(f"name: expected one of {list(OPTIMIZERS)}, got {self.name!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr: expected > 0, got {self.lr}")
        for f in ("weight_decay", "clip_norm", "eps"):
            if getattr(self, f) < 0:
                raise ConfigError(f"{f}: expected >= 0, got {getattr(self, f)}")
        for f in ("warmup_steps", "decay_steps"):
            if getattr(self, f) < 0:
                raise ConfigError(f"{f}: expected >= 0, got {getattr(self, f)}")


def schedule(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    """Warm-up, then constant / cosine / linear decay, as a function of the step; with
    decay_steps, the decay takes only the last decay_steps steps and the rate is constant
    between (warmup-stable-decay)."""
    warm = min(cfg.warmup_steps, max(total_steps - 1, 0))
    end = cfg.lr * cfg.final_lr_frac
    rest = max(total_steps - warm, 1)
    stable = 0
    if cfg.decay != "none" and 0 < cfg.decay_steps < rest:
        stable, rest = rest - cfg.decay_steps, cfg.decay_steps
    if cfg.decay == "cosine":
        after = optax.cosine_decay_schedule(cfg.lr, rest, alpha=cfg.final_lr_frac)
    elif cfg.decay == "linear":
        after = optax.linear_schedule(cfg.lr, end, rest)
    else:
        after = optax.constant_schedule(cfg.lr)
    parts, bounds = [after], []
    if stable:
        parts, bounds = [optax.constant_schedule(cfg.lr), after], [warm + stable]
    if warm:
        parts, bounds = [optax.linear_schedule(0.0, cfg.lr, warm), *parts], [warm, *bounds]
    return parts[0] if not bounds else optax.join_schedules(parts, bounds)


# where the decay applies, in the manifest's words (docs/design.md §3)
DECAY_CONVENTION = (
    "decoupled weight decay on tensors of 2+ dimensions per layer (weight matrices, embeddings); "
    "none on biases or LayerNorm gains (nanoGPT's configure_optimizers)"
)


def weight_decay_mask(params: Any, stacked: tuple[str, ...] = ("blocks",)) -> Any:
    """True for the leaves weight decay applies to: tensors of two or more dimensions per layer.

    Leaves under a key in `stacked` hold one slice per layer along their first axis (scanned
    layers), so a stacked LayerNorm gain (n_layer, width) is a vector per layer and is not decayed.
    """

    def ndim(path, leaf) -> int:
        keys = [getattr(k, "key", None) for k in path]
        return leaf.ndim - (1 if any(k in stacked for k in keys) else 0)

    return jax.tree_util.tree_map_with_path(lambda p, x: ndim(p, x) >= 2, params)


def _base(name: str, cfg: OptimConfig, learning_rate, mask=None, eps_root: float = 0.0):
    if name == "adam":
        return optax.adam(learning_rate, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, eps_root=eps_root)
    if name == "adamw":
        return optax.adamw(
            learning_rate,
            b1=cfg.b1,
            b2=cfg.b2,
            eps=cfg.eps,
            eps_root=eps_root,
            weight_decay=cfg.weight_decay,
            mask=mask,
        )
    if name == "sgd":
        return optax.sgd(learning_rate)
    if name == "momentum":
        return optax.sgd(learning_rate, momentum=cfg.b1)
    if name == "rmsprop":
        return optax.rmsprop(learning_rate, eps=cfg.eps)
    if name == "adagrad":
        return optax.adagrad(learning_rate, eps=cfg.eps)
    if name == "lion":
        return optax.lion(
            learning_rate, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay, mask=mask
        )
    raise ConfigError(f"optimizer.name: expected one of {list(OPTIMIZERS)}, got {name!r}")


def make_optimizer(
    cfg: OptimConfig, total_steps: int, mask: Any | Callable | None = None
) -> optax.GradientTransformation:
    """The configured optimizer with its schedule and optional clipping; `mask` (a pytree of
    bools or a function of the params, e.g. weight_decay_mask) limits adamw/lion weight decay,
    unless cfg.decay_all asks for decay on every leaf (to measure what the mask changes)."""
    tx = _base(cfg.name, cfg, schedule(cfg, total_steps), None if cfg.decay_all else mask)
    if cfg.clip_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), tx)
    return tx


def make_injectable(cfg: OptimConfig, eps_root: float = 0.0) -> optax.GradientTransformation:
    """A constant-rate optimizer whose learning rate lives in its state (for vmapped sweeps).

    Build it once outside vmap; set the rate per member with `set_learning_rate`. eps_root > 0
    (adam, adamw) keeps d sqrt(nu) finite where a gradient is exactly 0, for differentiating
    through the optimizer (fitting.refine); 0 is optax's default.
    """
    tx = optax.inject_hyperparams(
        lambda learning_rate: _base(cfg.name, cfg, learning_rate, eps_root=eps_root)
    )(learning_rate=cfg.lr)
    if cfg.clip_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), tx)
    return tx


def set_learning_rate(opt_state, lr):
    """Return opt_state (from make_injectable) with its learning rate replaced by `lr`."""
    return set_hyperparams(opt_state, learning_rate=lr)


def set_hyperparams(opt_state, **values):
    """Return opt_state (from make_injectable or make_family) with the named injected
    hyperparameters (learning_rate, b1, b2, weight_decay) replaced, each in its own dtype."""
    new = {}
    for name, v in values.items():
        old = optax.tree_utils.tree_get(opt_state, name)
        new[name] = jnp.asarray(v, jnp.asarray(old).dtype)
    return optax.tree_utils.tree_set(opt_state, **new)


# Optimizers one program can run side by side (a vmapped sweep): every member of a family has
# the same update rule and state layout, its settings live in the optimizer state. adam is
# adamw at weight decay 0 (adding 0 * p changes no bit), sgd is momentum at b1 = 0 (a trace
# g + 0 * m is g), so a sweep of the four compiles two programs, not one per setting.
FAMILIES = {"adam": "adamw", "adamw": "adamw", "sgd": "momentum", "momentum": "momentum"}
FAMILY_FIELDS = {  # the settings each family injects
    "adamw": ("b1", "b2", "weight_decay"),
    "momentum": ("b1",),
}


def family(name: str) -> str:
    """The family of an optimizer: adamw (adam, adamw), momentum (sgd, momentum), else itself."""
    return FAMILIES.get(name, name)


def varying(name: str) -> tuple[str, ...]:
    """The OptimConfig fields in which the members of one program of name's family may differ:
    the name and the family's injected settings (none for an optimizer of no family)."""
    fam = family(name)
    return ("name", *FAMILY_FIELDS[fam]) if fam in FAMILY_FIELDS else ()


def family_settings(cfg: OptimConfig) -> dict[str, float]:
    """The injected settings of cfg within its family (adam: weight decay 0; sgd: b1 0)."""
    fam = family(cfg.name)
    if fam == "adamw":
        wd = cfg.weight_decay if cfg.name == "adamw" else 0.0
        return {"b1": cfg.b1, "b2": cfg.b2, "weight_decay": wd}
    if fam == "momentum":
        return {"b1": cfg.b1 if cfg.name == "momentum" else 0.0}
    return {}


def make_family(cfg: OptimConfig, eps_root: float = 0.0) -> optax.GradientTransformation:
    """A constant-rate optimizer of cfg's family whose learning rate and family settings
    (family_settings) live in its state, set per member with `set_hyperparams`; for an
    optimizer of no family (rmsprop, adagrad, lion) this is make_injectable."""
    fam = family(cfg.name)
    if fam == "adamw":
        tx = optax.inject_hyperparams(
            lambda learning_rate, b1, b2, weight_decay: optax.adamw(
                learning_rate,
                b1=b1,
                b2=b2,
                eps=cfg.eps,
                eps_root=eps_root,
                weight_decay=weight_decay,
            )
        )(learning_rate=cfg.lr, **family_settings(cfg))
    elif fam == "momentum":
        tx = optax.inject_hyperparams(
            lambda learning_rate, b1: optax.sgd(learning_rate, momentum=b1)
        )(learning_rate=cfg.lr, **family_settings(cfg))
    else:
        return make_injectable(cfg, eps_root)
    if cfg.clip_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), tx)
    return tx
