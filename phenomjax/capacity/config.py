"""The capacity experiment's config (docs/design.md §9): transformer sizes, each trained on an
adaptive bracket of K around its peak of memorized bits, each K trained to saturation (budgets
doubled until the gain is small, else extrapolated), plus optional Zipf runs (presentations to
memorize) and phenomenological-model rungs on the same K.

    cfg = load_config(CapacityConfig, "experiments/capacity_cpu.toml")
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from ..config import require_positive
from ..errors import ConfigError
from ..optim import OptimConfig
from ..transformer.model import GPTConfig
from ..transformer.train import LoopConfig


@dataclasses.dataclass(frozen=True)
class Size:
    n_layer: int = 1  # transformer blocks
    n_head: int = 1  # attention heads per block
    head_dim: int = 8  # features per head; width = n_head * head_dim

    def validate(self) -> None:
        require_positive(self, ("n_layer", "n_head", "head_dim"))


@dataclasses.dataclass(frozen=True)
class PhenomSize:
    w: int = 4  # window: bits per embedded token (capacity grows with w and d together)
    d: int = 2  # width of the embedding and of each A[n, i]

    def validate(self) -> None:
        require_positive(self, ("w", "d"))


@dataclasses.dataclass(frozen=True)
class LadderSection:
    sizes: tuple[Size, ...] = (Size(1, 1, 8), Size(1, 2, 8))  # transformer sizes, small first
    L: int = 32  # bits per sequence (positions 1..L-1 predicted); longer L: fewer shared bits
    alpha: float = 0.0  # sampling exponent of the capacity runs; 0 is uniform (Morris et al.)
    seed: int = 0  # the seed of every run (bits, init, batches): all sizes see the same data

    def validate(self) -> None:
        if not self.sizes:
            raise ConfigError("sizes: expected at least one transformer size")
        if self.L < 2:
            raise ConfigError(f"L: expected an integer >= 2, got {self.L}")
        if not self.alpha >= 0:
            raise ConfigError(f"alpha: expected a number >= 0, got {self.alpha}")


@dataclasses.dataclass(frozen=True)
class BracketSection:
    guess: float = 2.0  # bits per parameter of the first estimate: K0 = guess * params / (L - 1)
    factors: tuple[float, ...] = (0.3, 1.0, 3.0)  # the first K of every size, times K0
    step: float = 3.0  # a peak at the bracket's edge adds K times (or divided by) this
    resolution: float = 2.0  # bisect in log K until the peak's neighbours are this close
    flat: float = 0.02  # a top K within this fraction of the K below it is a plateau: bracketed
    max_K: int = 6  # at most this many K per size
    min_K: int = 2  # never fewer sequences than this

    def validate(self) -> None:
        require_positive(self, ("max_K", "min_K"))
        if not self.factors or min(self.factors) <= 0:
            raise ConfigError(f"factors: expected positive numbers, got {self.factors}")
        if not (self.guess > 0 and self.step > 1 and self.resolution > 1 and self.flat >= 0):
            raise ConfigError("guess > 0, step > 1, resolution > 1 and flat >= 0 expected")


@dataclasses.dataclass(frozen=True)
class SaturationSection:
    first_exposures: int = 250  # the first budget: presentations per sequence
    min_exposures: int = 1000  # every K trains at least this far (1000 exposures, Allen-Zhu & Li)
    max_exposures: int = 4000  # doubling stops here; a run still gaining is extrapolated
    rel_tol: float = 0.02  # converged: memorized bits grew < this over the last doubling
    full_batch_max_K: int = 1024  # K up to this: every step presents all K sequences once
    lrs: tuple[float, ...] = (0.001, 0.003, 0.01)  # lr sweep per size (at K0, first budget)
    warmup_frac: float = 0.05  # linear warm-up over this share of each run, then cosine to 0
    cooldown: float = 0.0  # > 0: warmup-stable-decay instead, the budgets branched from one
    # stable run, each decaying linearly to 0 over this share of its steps (warm-up: warmup_frac
    # of the min_exposures budget's steps, for all); 0: every budget its own warm-up + cosine
    data_limited: float = 0.95  # a peak at this share of its Bayes ceiling is data-limited
    resamples: int = 200  # bootstrap resamples of sequences for an extrapolation's interval

    def validate(self) -> None:
        require_positive(self, ("first_exposures", "min_exposures", "max_exposures", "resamples"))
        if not self.first_exposures <= self.min_exposures <= self.max_exposures:
            raise ConfigError("first_exposures <= min_exposures <= max_exposures expected")
        if not self.lrs or min(self.lrs) <= 0:
            raise ConfigError(f"lrs: expected positive learning rates, got {self.lrs}")
        if not (self.rel_tol > 0 and 0 <= self.warmup_frac < 1 and 0 < self.data_limited <= 1):
            raise ConfigError("rel_tol > 0, 0 <= warmup_frac < 1, 0 < data_limited <= 1 expected")
        if not 0 <= self.cooldown < 1:
            raise ConfigError(f"cooldown: expected a share in [0, 1), got {self.cooldown}")


@dataclasses.dataclass(frozen=True)
class PlateauSection:  # the phenomenological rungs' rule (constant rate, fixed budget)
    window: int = 4  # evaluations per window: the last window's mean loss against the one before
    rel_tol: float = 0.01  # converged: memorized bits grew less than this fraction over a window
    min_steps: int = 500  # never converged before this step (the loss starts near ln 2)
    min_presentations: float = 0.0  # nor before each sequence was seen this often on average

    def validate(self) -> None:
        require_positive(self, ("window", "min_steps"))
        if not self.rel_tol > 0:
            raise ConfigError(f"rel_tol: expected a number > 0, got {self.rel_tol}")
        if self.min_presentations < 0:
            raise ConfigError(f"min_presentations: expected >= 0, got {self.min_presentations}")


@dataclasses.dataclass(frozen=True)
class ZipfSection:
    K: tuple[int, ...] = ()  # every size also trains on each K here with Zipf sampling; () none
    alpha: float = 1.0  # Zipf exponent of those runs
    levels: tuple[float, ...] = (0.5,)  # normalized excess-loss levels read per rank (lag.py)
    edges: tuple[int, ...] = (0, 10, 100, 1000)  # rank bins of the presentations-to-memorize fit

    def validate(self) -> None:
        if self.K and min(self.K) < 1:
            raise ConfigError(f"K: expected integers >= 1, got {self.K}")
        if not self.alpha > 0:
            raise ConfigError(f"alpha: expected a number > 0 (Zipf), got {self.alpha}")


@dataclasses.dataclass(frozen=True)
class PhenomSection:
    sizes: tuple[PhenomSize, ...] = ()  # (w, d) of phenomenological rungs on the uniform data
    param: Literal["full", "shared", "relative"] = "full"  # how A[n, i] is parameterized
    embedding: Literal["random", "learned", "spin"] = "random"  # fixed Gaussian, trained, 2x-1
    init_scale: float = 0.1  # std of the initial A and B entries
    lr: float = 0.01  # Adam learning rate
    steps: int = 3000  # optimizer steps (full p-weighted loss per step: expected mode)
    num_evals: int = 40  # log-spaced evaluations, read by the plateau rule afterwards

    def validate(self) -> None:
        require_positive(self, ("steps", "num_evals"))
        if not self.lr > 0:
            raise ConfigError(f"lr: expected a number > 0, got {self.lr}")


@dataclasses.dataclass(frozen=True)
class QuickSection:
    sizes: int = 2  # --quick trains only the first this many transformer sizes
    phenom_sizes: int = 1  # --quick trains only the first this many phenomenological sizes
    zipf: bool = False  # --quick also trains the Zipf runs
    max_K: int = 0  # --quick K per size (bracket.max_K); 0: unchanged
    max_exposures: int = 0  # --quick saturation.max_exposures; 0: unchanged
    first_exposures: int = 0  # --quick saturation.first_exposures; 0: unchanged
    lrs: tuple[float, ...] = ()  # --quick lr sweep; (): unchanged
    phenom_steps: int = 0  # --quick phenom.steps; 0: unchanged

    def validate(self) -> None:
        if min(self.max_K, self.max_exposures, self.first_exposures, self.phenom_steps) < 0:
            raise ConfigError("max_K, max_exposures, first_exposures, phenom_steps: expected >= 0")
        if self.sizes < 1 or self.phenom_sizes < 0:
            raise ConfigError("sizes: expected >= 1 (and phenom_sizes >= 0)")
        if self.lrs and min(self.lrs) <= 0:
            raise ConfigError(f"lrs: expected positive learning rates, got {self.lrs}")


@dataclasses.dataclass(frozen=True)
class CapacityConfig:
    ladder: LadderSection = LadderSection()  # sizes, L, alpha, seed
    bracket: BracketSection = BracketSection()  # which K each size trains (adaptive)
    saturation: SaturationSection = SaturationSection()  # budgets, lr sweep, convergence
    model: GPTConfig = GPTConfig()  # what every size shares (positions, bias, init_std)
    optimizer: OptimConfig = OptimConfig(weight_decay=0.0, decay="cosine")  # lr: swept
    train: LoopConfig = LoopConfig(steps=20000, num_evals=20)  # batch above full_batch_max_K;
    # steps: the Zipf runs' budget only (a capacity run's budget is its exposures)
    plateau: PlateauSection = PlateauSection()  # the phenomenological rungs' convergence
    zipf: ZipfSection = ZipfSection()  # Zipf runs for presentations to memorize
    phenom: PhenomSection = PhenomSection()  # phenomenological rungs
    quick: QuickSection = QuickSection()  # the smaller ladder of --quick

    def validate(self) -> None:
        base = GPTConfig()
        for f in ("n_layer", "n_head", "head_dim"):  # a silent override would mislabel rows
            if getattr(self.model, f) != getattr(base, f):
                raise ConfigError(f"model.{f}: set per size in ladder.sizes, not in [model]")


def apply_quick(cfg: CapacityConfig) -> CapacityConfig:
    """The config --quick runs: the [quick] section's overrides applied (sizes are cut in plan)."""
    q = cfg.quick
    b, s, p = cfg.bracket, cfg.saturation, cfg.phenom
    if q.max_K:
        b = dataclasses.replace(b, max_K=q.max_K)
    if q.max_exposures:
        low = min(q.max_exposures, s.min_exposures)
        s = dataclasses.replace(s, max_exposures=q.max_exposures, min_exposures=low,
                                first_exposures=min(s.first_exposures, low))  # fmt: skip
    if q.first_exposures:
        s = dataclasses.replace(s, first_exposures=min(q.first_exposures, s.min_exposures))
    if q.lrs:
        s = dataclasses.replace(s, lrs=q.lrs)
    if q.phenom_steps:
        p = dataclasses.replace(p, steps=q.phenom_steps)
    return dataclasses.replace(cfg, bracket=b, saturation=s, phenom=p)
