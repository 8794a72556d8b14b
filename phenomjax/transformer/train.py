"""Train the GPT of docs/design.md §3 on Zipf-sampled bit sequences; evaluate all K sequences at
log-spaced steps; write the run directory of docs/design.md §4. Also the `phenomjax train` command.

One jitted `advance(state, n)` runs n optimizer steps on device in a while-loop (dynamic trip
count, so it compiles once per run whatever the distance to the next evaluation). Each step
draws its batch from `fold_in(batches_key, step)`, so chunking and resume never change the
numbers, and adds the drawn ranks to exact presentation counts held in the state.

    cfg = load_config(TrainConfig, "experiments/cpu/small.toml")
    run = train(cfg, "runs/small")
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .. import distributed
from ..config import require_positive
from ..data import (
    DataConfig,
    key_streams,
    log_spaced_steps,
    make_bits,
    sample_ranks,
    zipf_cdf,
    zipf_weights,
)
from ..distributed import DistributedConfig
from ..errors import ConfigError
from ..optim import DECAY_CONVENTION, OptimConfig, make_optimizer, schedule, weight_decay_mask
from ..plan.memory import require_fits
from ..runs import RunDir, lifecycle, rundir
from ..runs.lifecycle import apply_optimizer, new_state
from . import model as gpt
from .model import GPTConfig


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    steps: int = 2500  # optimizer steps (batches) in the whole run
    batch: int = 64  # sequences per batch, ranks drawn i.i.d. from the Zipf weights
    num_evals: int = 15  # about this many log-spaced evaluations (plus one at step 0)
    max_chunk: int = 500  # most steps per device dispatch (progress/NaN checks between chunks)
    eval_chunk: int = 1000  # sequences per evaluation batch (memory ~ eval_chunk * L * width)
    per_position: Literal["auto"] | bool = "auto"  # positions.parquet; auto: K*(L-1) <= 2e6

    def validate(self) -> None:
        require_positive(self, ("steps", "batch", "num_evals", "max_chunk", "eval_chunk"))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = DataConfig()  # K, L, alpha and the run's one seed
    model: GPTConfig = GPTConfig()  # the transformer
    optimizer: OptimConfig = OptimConfig()  # optimizer, schedule, weight decay, clipping
    train: LoopConfig = LoopConfig()  # steps, batch, evaluations, dispatch sizes
    distributed: DistributedConfig = DistributedConfig()  # mesh size, multi-host start


def embedded_config(name: str) -> Path:
    """Path of a config shipped with the package (phenomjax/configs/<name>.toml)."""
    path = Path(str(resources.files("phenomjax") / "configs" / f"{name}.toml"))
    if not path.is_file():
        raise ConfigError(f"{name}: no embedded config of that name (try demo or tiny)")
    return path


# -- the device step -----------------------------------------------------------------------------


def optimizer(cfg: TrainConfig):
    """The run's optimizer; weight decay only on tensors of 2+ dims (docs/design.md §3)."""
    return make_optimizer(cfg.optimizer, cfg.train.steps, mask=weight_decay_mask)


def init_state(cfg: TrainConfig) -> dict[str, Any]:
    """params, optimizer state, the step and exact presentation counts (K,), as one pytree."""
    params = gpt.init_params(key_streams(cfg.data.seed)["init"], cfg.model, cfg.data.L)
    return new_state(params, optimizer(cfg), counts=cfg.data.K)


def make_step(cfg: TrainConfig, mesh=None):
    """One optimizer step on a batch drawn at the state's step: (state, bits) -> (state, loss).

    With a mesh, each batch is split over its "data" axis and the parameters are replicated:
    XLA's partitioner turns the gradient into per-device partial sums plus one all-reduce.
    """
    tx = optimizer(cfg)
    cdf = zipf_cdf(zipf_weights(cfg.data.K, cfg.data.alpha))
    batches_key = key_streams(cfg.data.seed)["batches"]
    grad_fn = jax.value_and_grad(gpt.loss_fn)

    def step(state, bits):
        t = state["step"]
        ranks = sample_ranks(jax.random.fold_in(batches_key, t), cdf, cfg.train.batch)
        x = distributed.constrain_rows(bits[ranks], mesh)
        loss, grads = grad_fn(state["params"], x, cfg.model)
        params, opt_state = apply_optimizer(tx, grads, state)
        counts = state["counts"].at[ranks].add(1)
        return {"params": params, "opt_state": opt_state, "counts": counts, "step": t + 1}, loss

    return step


def make_advance(cfg: TrainConfig, bits: jax.Array, mesh=None):
    """advance(state, n) -> (state, losses (max_chunk,)) for runs.drive; donates the state."""
    advance = lifecycle.make_advance(make_step(cfg, mesh), cfg.train.max_chunk, donate=True)
    return lambda state, n: advance(state, n, bits)


# -- evaluation ----------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("model", "chunk", "mesh"))
def _eval_positions(params, bits_KxL, model: GPTConfig, chunk: int, mesh=None):
    K, L = bits_KxL.shape
    pad = (-K) % chunk
    x = jnp.pad(bits_KxL, ((0, pad), (0, 0))).reshape(-1, chunk, L)

    def one(b):  # each chunk's sequences split over the mesh
        return gpt.position_losses(params, distributed.constrain_rows(b, mesh), model)

    nll, acc = jax.lax.map(one, x)
    return nll.reshape(-1, L - 1)[:K], acc.reshape(-1, L - 1)[:K]


def evaluate_positions(
    params: gpt.Params, bits: np.ndarray | jax.Array, cfg: TrainConfig, mesh=None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-position loss (nats) and accuracy of all K sequences, each (K, L-1).

    Runs in chunks of cfg.train.eval_chunk sequences, so only chunk x L x width activations live.
    """
    bits = jnp.asarray(bits, jnp.int32) if mesh is None else bits
    chunk = min(cfg.train.eval_chunk, bits.shape[0])
    if mesh is not None:
        chunk += (-chunk) % mesh.size  # whole rows per device
    nll, acc = _eval_positions(params, bits, cfg.model, chunk, mesh)
    return distributed.gather(nll), distributed.gather(acc)


def evaluate(
    params: gpt.Params, bits: np.ndarray | jax.Array, cfg: TrainConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Per-sequence loss (mean nats over positions 1..L-1) and accuracy, each (K,)."""
    nll, acc = evaluate_positions(params, bits, cfg)
    return nll.mean(axis=1), acc.mean(axis=1)


def wants_positions(cfg: TrainConfig) -> bool:
    return rundir.wants_positions(cfg.train.per_position, cfg.data.K, cfg.data.L)


# -- the run -------------------------------------------------------------------------------------


def train(
    cfg: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_at: int | None = None,
    stop: Callable[[pd.DataFrame], bool] | None = None,
) -> RunDir:
    """Train, evaluate and write the run directory `out`; returns it.

    resume=True continues from the checkpoint to the numbers an uninterrupted run gives.
    stop_at (a step) ends the process after that step, as if killed, leaving status "running".
    stop(evals) is called after each evaluation with the per-sequence evaluations so far (step,
    rank, presentations, loss, accuracy); True ends the run there as complete, the manifest
    recording stopped_early and stopped_step (e.g. a plateau rule with cfg.train.steps as budget).
    """
    distributed.initialize(cfg.distributed)
    require_fits(cfg)  # before the bits, the state or the run folder exist
    mesh = distributed.make_mesh(cfg.distributed.devices, "data")
    distributed.check_divisible(cfg.train.batch, mesh, "train.batch")
    main = distributed.is_main()  # only process 0 writes; every process computes
    bits = jnp.asarray(make_bits(cfg.data.seed, cfg.data.K, cfg.data.L), jnp.int32)
    with lifecycle.open_run(
        out,
        kind="transformer",
        cfg=cfg,
        init=lambda: init_state(cfg),
        resume=resume,
        extra=lambda state: {
            "n_params": gpt.n_params(state["params"]),
            "compute_dtype": cfg.model.compute_dtype,  # bf16 and fp32 capacities differ
            "weight_decay": DECAY_CONVENTION,
        },
        writer=main,
    ) as opened:
        if opened.complete:
            return opened.run
        state = distributed.place(opened.state, distributed.replicated(mesh))
        bits = distributed.place(bits, distributed.replicated(mesh))
        per_position = wants_positions(cfg)

        def evaluate(state, s: int) -> lifecycle.Evaluation:
            nll, acc = evaluate_positions(state["params"], bits, cfg, mesh)
            pos = dict(position_loss=nll, position_accuracy=acc) if per_position else {}
            counts = np.asarray(state["counts"], np.int64)
            return lifecycle.Evaluation(counts, nll.mean(axis=1), acc.mean(axis=1), **pos)

        return lifecycle.drive_run(
            opened,
            state=state,
            advance=make_advance(cfg, bits, mesh),
            evaluate=evaluate,
            learning_rate=schedule(cfg.optimizer, cfg.train.steps),
            total_steps=cfg.train.steps if stop_at is None else min(stop_at, cfg.train.steps),
            final_step=cfg.train.steps,
            eval_steps=log_spaced_steps(cfg.train.steps, cfg.train.num_evals),
            max_chunk=cfg.train.max_chunk,
            batch=cfg.train.batch,
            desc=f"train {opened.run.path.name}",
            progress=progress and main,
            stop=stop,
        )
