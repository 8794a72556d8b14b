"""Train one phenomenological model (docs/design.md §6) from a config into a run directory (§4).

    phenomjax fit-phenom experiments/phenom.toml --set train.steps=5000 --out runs/phenom

The run follows the one lifecycle of phenomjax.runs.lifecycle: the training loop runs on device
in chunks, the host evaluates all K sequences at log-spaced steps, appends the rows to
evals.parquet (and positions.parquet), and checkpoints, so `--resume` continues to the same
numbers. In expected mode `presentations` is floor(t * B * p_m + 0.5) and the exact float
t * B * p_m is kept beside it as `expected_presentations`; in stochastic mode both are the counts.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from ..config import require_positive
from ..data import DataConfig, key_streams, log_spaced_steps, make_bits, zipf_weights
from ..optim import OptimConfig, make_optimizer, schedule
from ..plan.memory import require_fits
from ..runs import RunDir, lifecycle, rundir
from . import model as phenom
from .modes import (
    expected_presentations,
    freeze_untrained,
    init_state,
    make_data,
    make_step,
    rounded_presentations,
)


@dataclasses.dataclass(frozen=True)
class ModelSection:
    w: int = 6  # window: bits per embedded token; capacity grows with w (w ~ log2 K memorizes)
    d: int = 32  # width; logit tables have rank <= d; for w = 1 it changes only the dynamics
    param: Literal["full", "shared", "relative"] = "full"  # how A[n, i] is parameterized
    embedding: Literal["random", "learned", "spin"] = "random"  # fixed Gaussian, trained, or 2x-1
    init_scale: float = 0.1  # std of the initial A and B entries; sets the initial plateau
    forget: float = 0.0  # variant: per-step shrink of A toward 0, lr-free; 0 = the model as stated
    readout_scale: float = 0.0  # variant: std of the initial B (no plateau at 1); 0 = init_scale


@dataclasses.dataclass(frozen=True)
class PhenomOptimConfig(OptimConfig):
    name: str = "adam"  # any optimizer of phenomjax.optim.OPTIMIZERS
    lr: float = 1e-2  # peak learning rate (the model is small and smooth: 1e-2 suits adam)


@dataclasses.dataclass(frozen=True)
class TrainSection:
    mode: Literal["expected", "stochastic"] = "expected"  # full p-weighted loss, or minibatches
    steps: int = 2000  # optimizer steps
    batch: int = 64  # B: nominal batch (expected: n_m = t B p_m) or minibatch size (stochastic)
    num_evals: int = 15  # evaluations of all K sequences, log-spaced in steps (plus step 0)
    eval_chunk: int = 4096  # sequences per evaluation block (memory, not results)
    max_chunk: int = 1000  # most steps per device dispatch (one host sync each)
    per_position: bool | Literal["auto"] = "auto"  # write positions.parquet; auto: if small

    def validate(self) -> None:
        require_positive(self, ("steps", "batch", "num_evals", "eval_chunk", "max_chunk"))


@dataclasses.dataclass(frozen=True)
class FitConfig:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)  # K, L, alpha, seed
    model: ModelSection = dataclasses.field(default_factory=ModelSection)  # w, d, param, ...
    optimizer: PhenomOptimConfig = dataclasses.field(default_factory=PhenomOptimConfig)
    train: TrainSection = dataclasses.field(default_factory=TrainSection)  # mode, steps, evals

    def validate(self) -> None:
        build_model(self).validate("model")


def build_model(cfg: FitConfig, **changes) -> phenom.PhenomModel:
    """The PhenomModel of cfg (N = L), with optional field changes (w, d, param for sweeps)."""
    m = dataclasses.replace(cfg.model, **changes)
    return phenom.PhenomModel(
        N=cfg.data.L,
        d=m.d,
        w=m.w,
        param=m.param,
        embedding=m.embedding,
        init_scale=m.init_scale,
        forget=m.forget,
        readout_scale=m.readout_scale,
    )


def wants_positions(cfg: FitConfig) -> bool:
    return rundir.wants_positions(cfg.train.per_position, cfg.data.K, cfg.data.L)


def fit_phenom(
    cfg: FitConfig, out: str | Path, *, resume: bool = False, progress: bool = True
) -> RunDir:
    """Train the phenomenological model of `cfg`, writing the run directory `out`."""
    cfg.validate()
    require_fits(cfg)  # before the bits, the state or the run folder exist
    K, L, alpha, seed = cfg.data.K, cfg.data.L, cfg.data.alpha, cfg.data.seed
    tr = cfg.train
    model = build_model(cfg)
    weights = zipf_weights(K, alpha)
    keys = key_streams(seed)
    data = make_data(make_bits(seed, K, L), weights, keys["batches"])
    like = jax.eval_shape(lambda: phenom.init_params(keys["init"], model))
    tx = freeze_untrained(make_optimizer(cfg.optimizer, tr.steps), like, model)
    per_position = wants_positions(cfg)
    metrics = jax.jit(
        lambda p, b: phenom.sequence_metrics(
            p, b, per_position=per_position, chunk=min(tr.eval_chunk, K)
        )
    )

    def evaluate(s, t: int) -> lifecycle.Evaluation:
        res = [np.asarray(x) for x in metrics(s["params"], data.bits)]
        if tr.mode == "stochastic":
            pres = np.asarray(s["counts"], np.int64)
            expected = pres.astype(np.float64)
        else:
            expected = expected_presentations(t, tr.batch, weights)
            pres = rounded_presentations(expected)
        pos = dict(position_loss=res[2], position_accuracy=res[3]) if per_position else {}
        return lifecycle.Evaluation(
            pres, res[0], res[1], extra={"expected_presentations": expected}, **pos
        )

    with lifecycle.open_run(
        out,
        kind="phenom",
        cfg=cfg,
        init=lambda: init_state(keys["init"], model, tx, mode=tr.mode, K=K),
        resume=resume,
        extra=lambda state: _manifest_extra(cfg, state["params"], model),
    ) as opened:
        if opened.complete:
            return opened.run
        advance = lifecycle.make_advance(
            make_step(tx, mode=tr.mode, batch=tr.batch), tr.max_chunk, donate=True
        )
        return lifecycle.drive_run(
            opened,
            advance=lambda s, n: advance(s, jnp.int32(n), data),
            evaluate=evaluate,
            learning_rate=schedule(cfg.optimizer, tr.steps),
            total_steps=tr.steps,
            final_step=tr.steps,
            eval_steps=log_spaced_steps(tr.steps, tr.num_evals),
            max_chunk=tr.max_chunk,
            batch=tr.batch if tr.mode == "stochastic" else K,
            desc=f"fit-phenom {tr.mode}",
            progress=progress,
        )


def _manifest_extra(cfg: FitConfig, params, model: phenom.PhenomModel) -> dict:
    """Manifest fields of a new phenom run: its mode, trained parameters and presentations."""
    mask = phenom.trainable_mask(params, model)
    return {
        "mode": cfg.train.mode,
        "n_params": sum(int(np.prod(v.shape)) for k, v in params.items() if mask[k]),
        "steps": cfg.train.steps,
        "presentations": (
            "counted"
            if cfg.train.mode == "stochastic"
            else "expected: floor(step * batch * p + 0.5); exact value in expected_presentations"
        ),
    }
