"""The capacity experiment's config (docs/design.md §9): a ladder of transformer sizes times a
ladder of K, each run trained until its evaluated loss stops falling, plus optional Zipf runs
(presentations to memorize) and phenomenological-model rungs on the same data.

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
    K: tuple[int, ...] = (32, 128, 512, 2048)  # sequences per run; dataset bits = K (L - 1)
    L: int = 32  # bits per sequence; positions 1..L-1 are predicted
    alpha: float = 0.0  # sampling exponent of the capacity runs; 0 is uniform (Morris et al.)
    seed: int = 0  # the seed of every run (bits, init, batches): all sizes see the same data

    def validate(self) -> None:
        if not self.sizes:
            raise ConfigError("sizes: expected at least one transformer size")
        if not self.K or min(self.K) < 1:
            raise ConfigError(f"K: expected a non-empty list of integers >= 1, got {self.K}")
        if self.L < 2:
            raise ConfigError(f"L: expected an integer >= 2, got {self.L}")
        if not self.alpha >= 0:
            raise ConfigError(f"alpha: expected a number >= 0, got {self.alpha}")


@dataclasses.dataclass(frozen=True)
class PlateauSection:
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
    K: tuple[int, ...] = (32, 128, 512)  # --quick K ladder (also for the phenomenological rungs)
    phenom_sizes: int = 1  # --quick trains only the first this many phenomenological sizes
    zipf: bool = False  # --quick also trains the Zipf runs
    steps: int = 0  # --quick step budget of every run (transformer and phenom); 0: unchanged

    def validate(self) -> None:
        if self.steps < 0:
            raise ConfigError(f"steps: expected an integer >= 0, got {self.steps}")
        if self.sizes < 1 or self.phenom_sizes < 0:
            raise ConfigError("sizes: expected >= 1 (and phenom_sizes >= 0)")
        if not self.K or min(self.K) < 1:
            raise ConfigError(f"K: expected a non-empty list of integers >= 1, got {self.K}")


@dataclasses.dataclass(frozen=True)
class CapacityConfig:
    ladder: LadderSection = LadderSection()  # sizes x K, L, alpha, seed
    model: GPTConfig = GPTConfig()  # what every size shares (positions, bias, init_std)
    optimizer: OptimConfig = OptimConfig()  # the transformer optimizer (constant rate suits)
    train: LoopConfig = LoopConfig(steps=20000, num_evals=80)  # steps = budget; dense evals
    plateau: PlateauSection = PlateauSection()  # the stopping rule
    zipf: ZipfSection = ZipfSection()  # Zipf runs for presentations to memorize
    phenom: PhenomSection = PhenomSection()  # phenomenological rungs
    quick: QuickSection = QuickSection()  # the smaller ladder of --quick

    def validate(self) -> None:
        base = GPTConfig()
        for f in ("n_layer", "n_head", "head_dim"):  # a silent override would mislabel rows
            if getattr(self.model, f) != getattr(base, f):
                raise ConfigError(f"model.{f}: set per size in ladder.sizes, not in [model]")
