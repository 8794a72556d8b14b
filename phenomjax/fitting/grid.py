"""The fit grid as a config (docs/design.md §6, "Fitting to a run"): phenomjax/configs/fit.toml.

    phenomjax fit RUN --config GRID.toml --set grid.w=[1,8] --set score.within=3

Learning rates and initial scales are vmapped inside one compiled program per group; a group is
one (mode, optimizer family, variant and its knobs, w, d, param): the entries of one family
(optim.family: adam and adamw, sgd and momentum) and their b1 x b2 x weight_decay settings (the
fields an optimizer does not use are left out of the product) are vmapped with the rates.
`variant` lists names of phenom/variants and every variant's knob is a list of its own
(forget, readout_scale, D_eff, ...); each variant takes its own knobs' lists, the others keep
their defaults (phenom/variants.combinations). Axis names are singular
everywhere (w, d, lr, scale, seed, param, optimizer, variant, the knobs): the grid, the sweep
folders and the members table agree.

Cost bound. Before anything runs, `grid_cost` counts the members, the compiled groups and the
per-sequence curve rows the sweeps (and the best's refit) will write, and `check_cost` refuses a
grid with more than MAX_GROUPS groups, MAX_MEMBERS members or an estimated MAX_CURVE_BYTES of
curve rows (40 bytes a row before parquet compression), with one line naming the count. The
default grid at paper scale (K = 100000, 96 members, 24 evaluations) writes at most 2.5e8 rows,
9.8 GB before compression (fewer with halving): well inside the bound.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np

from ..config import load_config
from ..configs import packaged
from ..errors import ConfigError
from ..phenom import variants
from .scoring import ScoreConfig

MAX_GROUPS = 1000  # compiled programs (each a few seconds of compile time at least)
MAX_MEMBERS = 100_000
MAX_CURVE_BYTES = 64 * 2**30  # 64 GiB of curve rows, before compression
ROW_BYTES = 40  # member int32, step int64, rank int32, presentations int64, expected f64, 2 x f32
_USES = {"b1": ("momentum", "adam", "adamw", "lion"), "b2": ("adam", "adamw", "lion"),
         "weight_decay": ("adamw", "lion")}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class OptimizerEntry:
    """One optimizer of the family and its swept hyperparameters (learning rates are vmapped,
    the rest are outer loops). Fields an optimizer does not use are left out of its product."""

    name: str = "adam"  # sgd, momentum, adam, adamw (any of phenomjax.optim.OPTIMIZERS)
    lr: tuple[float, ...] = (3e-5, 1e-4, 3e-4, 1e-3)  # learning rates (vmapped)
    b1: tuple[float, ...] = (0.9,)  # adam-type b1, or the momentum coefficient
    b2: tuple[float, ...] = (0.999,)  # adam-type b2
    weight_decay: tuple[float, ...] = (0.0,)  # decoupled decay (adamw, lion)

    def validate(self) -> None:
        from ..optim import OPTIMIZERS  # JAX: reading a report (compare) must not import it

        if self.name not in OPTIMIZERS:
            raise ConfigError(f"name: expected one of {list(OPTIMIZERS)}, got {self.name!r}")
        for f in ("lr", "b1", "b2", "weight_decay"):
            v = getattr(self, f)
            if not v:
                raise ConfigError(f"{f}: expected a non-empty list")
            if f == "lr" and not all(np.isfinite(x) and x > 0 for x in v):
                raise ConfigError(f"lr: expected finite values > 0, got {list(v)}")
            if f != "lr" and not all(0 <= x for x in v):
                raise ConfigError(f"{f}: expected values >= 0, got {list(v)}")

    def settings(self) -> list[dict[str, float | str]]:
        """The outer-loop settings of this entry: name, b1, b2, weight_decay, the unused ones
        at their neutral value (b1 / b2 absent, weight decay 0). Learning rates are vmapped."""
        axes = [getattr(self, f) if self.name in _USES[f] else (None,) for f in _USES]
        out = []
        for b1, b2, wd in itertools.product(*axes):
            s: dict[str, float | str] = {"name": self.name, "weight_decay": wd or 0.0}
            if b1 is not None:
                s["b1"] = b1
            if b2 is not None:
                s["b2"] = b2
            out.append(s)
        return out


@dataclasses.dataclass(frozen=True)
class _GridFields:
    mode: tuple[str, ...] = ("expected", "stochastic")  # some of phenom.modes.MODES
    w: tuple[int, ...] = (1, 4, 8)  # windows
    d: tuple[int, ...] = (8,)  # widths
    param: tuple[str, ...] = ("full",)  # full, shared, relative
    embedding: str = "random"  # random, learned, spin
    scale: tuple[float, ...] = (0.01, 0.1)  # initial scales (vmapped)
    variant: tuple[str, ...] = ("stated",)  # phenom/variants names; their knobs' lists follow
    refit_seeds: int = 3  # seeds of the best's refit (the run's seed and the next ones)
    num_evals: int = 24  # log-spaced evaluations of every member
    batch: int = 0  # 0: the run's batch
    halving: bool = False  # successive halving (fitting.halving); false: every member to the end
    halving_rungs: tuple[float, ...] = (0.1, 0.3)  # rungs, as fractions of the run's steps
    halving_keep: float = 0.34  # share of the members still running that each rung keeps
    refine_steps: int = 10  # most steps of the best member's refinement (in its mode); 0: none
    # "line": steepest descent with a line search; "adam": Optax Adam. A report written before
    # this field and refine_patience existed reads as adam without early stopping, as it ran.
    refine_method: str = dataclasses.field(default="line", metadata={"absent": "adam"})
    refine_lr: float = 0.1  # Adam's step size on the log knobs
    # Adam: stop after this many steps without a lower surrogate; 0: never
    refine_patience: int = dataclasses.field(default=3, metadata={"absent": 0})

    def validate(self) -> None:
        from ..phenom.modes import MODES  # JAX, as above

        if not all(0 < f < 1 for f in self.halving_rungs):
            raise ConfigError(f"halving_rungs: expected fractions in (0, 1), got "
                              f"{list(self.halving_rungs)}")  # fmt: skip
        if self.refine_steps < 0 or not self.refine_lr > 0:
            raise ConfigError(f"refine_steps / refine_lr: expected >= 0 / > 0, got "
                              f"{self.refine_steps} / {self.refine_lr}")  # fmt: skip
        if self.refine_method not in ("line", "adam"):
            raise ConfigError(f"refine_method: expected 'line' or 'adam', got "
                              f"{self.refine_method!r}")  # fmt: skip
        if self.refine_patience < 0:
            raise ConfigError(f"refine_patience: expected >= 0 (0: never stop early), got "
                              f"{self.refine_patience}")  # fmt: skip
        if not 0 < self.halving_keep <= 1:
            raise ConfigError(f"halving_keep: expected a share in (0, 1], got {self.halving_keep}")

        bad = [m for m in self.mode if m not in MODES]
        if bad or not self.mode:
            raise ConfigError(f"mode: expected some of {list(MODES)}, got {list(self.mode)}")
        if self.refit_seeds < 1:
            raise ConfigError(f"refit_seeds: expected >= 1, got {self.refit_seeds}")
        if self.num_evals < 1:
            raise ConfigError(f"num_evals: expected >= 1, got {self.num_evals}")
        if self.batch < 0:
            raise ConfigError(f"batch: expected >= 0 (0: the run's batch), got {self.batch}")
        for f in ("w", "d", "param", "scale", "variant") + variants.knob_names():
            if not getattr(self, f):
                raise ConfigError(f"{f}: expected a non-empty list")
        bad = [v for v in self.variant if v not in variants.VARIANTS]
        if bad:
            raise ConfigError(f"variant: expected names of {list(variants.VARIANTS)}, got {bad}")
        for k in variants.knob_names():
            variants.check_values(k, getattr(self, k))

    def variant_settings(self) -> list[dict]:
        """The (variant, knobs) combinations of the grid (phenom/variants.combinations)."""
        return variants.combinations({k: getattr(self, k) for k in
                                      ("variant",) + variants.knob_names()})  # fmt: skip


# [grid]: the shared lists, `variant`, then a list per variant knob (phenom/variants), each
# at its one default value: `forget = [0.0, 0.003]`, `D_eff = [32, 64]`.
GridSection = dataclasses.make_dataclass(
    "GridSection",
    [(f.name, f"tuple[{f.type}, ...]", dataclasses.field(default=(f.default,)))
     for f in variants.knob_fields()],
    bases=(_GridFields,),
    frozen=True,
    namespace={"__module__": __name__},
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class FitGridConfig:
    """The fit grid (phenomjax/configs/fit.toml; the demo's is fit_demo.toml)."""

    grid: GridSection = GridSection()
    optimizers: tuple[OptimizerEntry, ...] = (OptimizerEntry(),)
    score: ScoreConfig = ScoreConfig()

    def validate(self) -> None:
        if not self.optimizers:
            raise ConfigError("optimizers: expected at least one [[optimizers]] entry")


def grid_path(name: str = "fit") -> Path:
    """A shipped grid's file: phenomjax/configs/<name>.toml."""
    return packaged(name)


def default_grid(name: str = "fit") -> FitGridConfig:
    """A shipped grid: phenomjax/configs/<name>.toml ("fit" or "fit_demo")."""
    return load_config(FitGridConfig, grid_path(name))


@dataclasses.dataclass(frozen=True)
class GridCost:
    """What a grid will compute and write on a run of K sequences (module docstring)."""

    members: int  # sweep members over every mode and optimizer entry
    groups: int  # compiled (mode, optimizer family, variant setting, w, d, param) programs
    refit_members: int  # the best's extra seeds
    curve_rows: int  # per-sequence rows the sweeps and the refit write, at most
    curve_bytes: int  # their size before compression (ROW_BYTES a row)


def grid_cost(cfg: FitGridConfig, K: int) -> GridCost:
    """The cost of `cfg` on a run of K sequences, counted before anything runs."""
    g = cfg.grid
    per = len(g.w) * len(g.d) * len(g.param) * len(g.variant_settings())
    from ..optim import family  # JAX, as above; the rule phenom.axes.groups applies

    members = sum(len(e.settings()) * per * len(e.lr) * len(g.scale) for e in cfg.optimizers)
    groups = len({family(e.name) for e in cfg.optimizers}) * per * len(g.mode)
    members *= len(g.mode)
    refit = g.refit_seeds - 1
    rows = (members + refit) * int(K) * (g.num_evals + 1)  # evaluations: step 0 and <= num_evals
    return GridCost(members, groups, refit, rows, rows * ROW_BYTES)


def check_cost(cost: GridCost, where: str) -> None:
    """A ConfigError (one line, naming `where` and the count) when a bound is exceeded."""
    if cost.groups > MAX_GROUPS:
        raise ConfigError(f"{where}: the grid has {cost.groups} compiled groups (mode x optimizer "
                          f"setting x w x d x param x variant); at most {MAX_GROUPS}")  # fmt: skip
    if cost.members > MAX_MEMBERS:
        raise ConfigError(f"{where}: the grid has {cost.members} members; at most {MAX_MEMBERS}")
    if cost.curve_bytes > MAX_CURVE_BYTES:
        raise ConfigError(
            f"{where}: the grid would write {cost.curve_rows:.3g} curve rows (about "
            f"{cost.curve_bytes / 2**30:.1f} GiB before compression); at most "
            f"{MAX_CURVE_BYTES / 2**30:.0f} GiB: fewer members, evaluations or w/d values"
        )


def entry_of(cfg: FitGridConfig, member) -> int:
    """The index of the [[optimizers]] entry a member was swept as: the first whose name,
    settings (b1, b2, weight decay where used) and rates hold the member's."""
    for i, e in enumerate(cfg.optimizers):
        if e.name != member.optimizer or not any(np.isclose(member.lr, x) for x in e.lr):
            continue
        for s in e.settings():
            if all(np.isclose(getattr(member, k), v) for k, v in s.items() if k != "name"):
                return i
    raise ValueError(f"no [[optimizers]] entry holds {member.optimizer} lr {member.lr:g}")


def on_edge(cfg: FitGridConfig, entry: int, lr: float, scale: float) -> tuple[str, ...]:
    """The grid edges a member (of optimizer entry `entry`) sits on, in words: its lr or scale
    is the lowest or highest swept value (a one-value axis is both). The optimum may lie past
    it; the refinement (fitting.refine) is allowed there."""
    out = []
    for name, v, values in (("lr", lr, cfg.optimizers[entry].lr), ("scale", scale, cfg.grid.scale)):
        lo, hi = min(values), max(values)
        if np.isclose(v, lo) or np.isclose(v, hi):
            where = "the only" if lo == hi else "the lowest" if np.isclose(v, lo) else "the highest"
            out.append(
                f"{name} {v:g} is {where} value swept ({', '.join(f'{x:g}' for x in values)})"
            )
    return tuple(out)
