"""Train the GPT of docs/design.md §3 on Zipf-sampled bit sequences; evaluate all K sequences at
log-spaced steps; write the run directory of docs/design.md §4. Also the `phenomjax train` command.

One jitted `advance(state, n)` runs n optimizer steps on device in a while-loop (dynamic trip
count, so it compiles once per run whatever the distance to the next evaluation). Each step
draws its batch from `fold_in(batches_key, step)`, so chunking and resume never change the
numbers, and adds the drawn ranks to exact presentation counts held in the state.

    cfg = load_config(TrainConfig, "experiments/small_cpu.toml")
    run = train(cfg, "runs/small_cpu")

What the run costs (`phenomjax plan`, and the refusal of what cannot fit, raised before anything
is allocated) is transformer/cost.py; `TrainConfig.cost()` names it.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .. import distributed, training
from ..bayes import per_sequence_floor
from ..config import require_positive
from ..configs import packaged
from ..data import DataConfig, key_streams, make_bits, sample_ranks, zipf_cdf, zipf_weights
from ..distributed import DistributedConfig
from ..errors import ConfigError, RunDirError
from ..optim import DECAY_CONVENTION, OptimConfig, make_optimizer, schedule, weight_decay_mask
from ..plan.estimate import Cost
from ..plan.memory import check_fits
from ..plan.timing import Probe
from ..runs import RunDir, rundir
from ..runs.checkpoint import arrays_to_pytree
from ..runs.lifecycle import open_run
from ..training import Evaluation, Schedule, apply_optimizer, chunk_length, drive_run, new_state
from . import cost as transformer_cost
from . import model as gpt
from .model import GPTConfig


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    steps: int = 2500  # optimizer steps (batches) in the whole run
    batch: int = 64  # sequences per batch, ranks drawn i.i.d. from the Zipf weights
    num_evals: int = 15  # about this many log-spaced evaluations (plus one at step 0)
    max_chunk: int = 500  # most steps per device dispatch (progress/NaN checks between chunks);
    # the loss buffer is min(max_chunk, steps) floats on the device and on the host
    eval_chunk: int = 1000  # sequences per evaluation batch (memory ~ eval_chunk * L * width)
    per_position: Literal["auto"] | bool = "auto"  # positions.parquet; auto: K*(L-1) <= 2e6
    full_batch: bool = False  # every step presents all K sequences once (batch must be K)
    grad_chunk: int = 0  # a batch above this many sequences: its gradient summed over chunks
    # of this size (the same step up to float rounding; at K ~ 750 full batch 2x faster on
    # CPU, the activations staying in cache); 0: one gradient over the whole batch
    eval_steps: tuple[int, ...] = ()  # evaluated (and checkpointed) besides the log-spaced
    # steps: where other runs branch from this one (capacity's warmup-stable-decay budgets)

    def validate(self) -> None:
        require_positive(self, ("steps", "batch", "num_evals", "max_chunk", "eval_chunk"))
        if self.grad_chunk < 0:
            raise ConfigError(f"grad_chunk: expected an integer >= 0, got {self.grad_chunk}")
        if any(not 0 <= s <= self.steps for s in self.eval_steps):
            raise ConfigError(f"eval_steps: expected steps in [0, {self.steps}], "
                              f"got {list(self.eval_steps)}")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = DataConfig()  # K, L, alpha and the run's one seed
    model: GPTConfig = GPTConfig()  # the transformer
    optimizer: OptimConfig = OptimConfig()  # optimizer, schedule, weight decay, clipping
    train: LoopConfig = LoopConfig()  # steps, batch, evaluations, dispatch sizes
    distributed: DistributedConfig = DistributedConfig()  # mesh size, multi-host start

    def validate(self) -> None:
        if self.train.full_batch and self.train.batch != self.data.K:
            raise ConfigError(
                f"train.batch: full_batch presents each of the K = {self.data.K} sequences once "
                f"per step, so batch must be K, got {self.train.batch}"
            )

    def cost(self, members: int = 1, seeds: int = 1) -> Cost:
        """What this run costs (transformer/cost.py): what `phenomjax plan` reports and what
        `train` refuses before it allocates. Sweeps are of the phenomenological model only."""
        if members != 1 or seeds != 1:
            raise ConfigError("sweep members: sweeps are of the phenomenological model only")
        return transformer_cost.cost(self, probe=lambda: probe(self))


def __getattr__(name: str) -> Any:
    # deprecated: phenomjax.configs.packaged is the one lookup of the shipped configs
    if name == "embedded_config":
        warnings.warn("transformer.train.embedded_config is deprecated; use "
                      "phenomjax.configs.packaged", DeprecationWarning, stacklevel=2)  # fmt: skip
        return packaged
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- the device step -----------------------------------------------------------------------------


def optimizer(cfg: TrainConfig):
    """The run's optimizer; weight decay only on tensors of 2+ dims (docs/design.md §3)."""
    return make_optimizer(cfg.optimizer, cfg.train.steps, mask=weight_decay_mask)


def init_state(cfg: TrainConfig) -> dict[str, Any]:
    """params, optimizer state, the step and exact presentation counts (K,), as one pytree."""
    params = gpt.init_params(key_streams(cfg.data.seed)["init"], cfg.model, cfg.data.L)
    return new_state(params, optimizer(cfg), counts=cfg.data.K)


def make_step(cfg: TrainConfig, mesh=None):
    """One optimizer step on a batch drawn at the state's step:
    (state, bits, *draws(cfg)) -> (state, loss).

    With a mesh, each batch is split over its "data" axis and the parameters are replicated:
    XLA's partitioner turns the gradient into per-device partial sums plus one all-reduce.
    """
    tx = optimizer(cfg)
    B, c = cfg.train.batch, cfg.train.grad_chunk
    grad_fn = jax.value_and_grad(gpt.loss_fn) if not 0 < c < B else _chunked_grad(c)

    def step(state, bits, cdf, batches_key):  # draws(cfg): arguments, so seeds share a program
        t = state["step"]
        if cfg.train.full_batch:  # each sequence once per step: presentations = steps exactly
            ranks = jnp.arange(cfg.data.K, dtype=jnp.int32)
        else:
            ranks = sample_ranks(jax.random.fold_in(batches_key, t), cdf, cfg.train.batch)
        x = distributed.constrain_rows(bits[ranks], mesh)
        loss, grads = grad_fn(state["params"], x, cfg.model)
        params, opt_state = apply_optimizer(tx, grads, state)
        counts = state["counts"].at[ranks].add(1)
        return {"params": params, "opt_state": opt_state, "counts": counts, "step": t + 1}, loss

    return step


def _chunked_grad(chunk: int):
    """(params, x (B, L), model) -> (mean loss, its gradient), summed over chunks of `chunk`
    sequences in a scan (the last one padded with sequences of weight 0)."""

    def value_and_grad(params, x_BxL, model):
        B, L = x_BxL.shape
        n = -(-B // chunk)
        x = jnp.pad(x_BxL, ((0, n * chunk - B), (0, 0))).reshape(n, chunk, L)
        w = (jnp.arange(n * chunk) < B).astype(jnp.float32).reshape(n, chunk) / (B * (L - 1))

        def part(p, xc, wc):  # this chunk's share of the batch's mean loss
            return (gpt.position_losses(p, xc, model)[0].sum(-1) * wc).sum()

        def one(acc, xw):
            return jax.tree.map(jnp.add, acc, jax.value_and_grad(part)(params, *xw)), None

        zero = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params))
        return jax.lax.scan(one, zero, (x, w))[0]

    return value_and_grad


def draws(cfg: TrainConfig) -> tuple[jax.Array, jax.Array]:
    """The Zipf CDF the batches are drawn from and the run's "batches" key stream."""
    return zipf_cdf(zipf_weights(cfg.data.K, cfg.data.alpha)), key_streams(cfg.data.seed)["batches"]


def make_advance(cfg: TrainConfig, bits: jax.Array, mesh=None):
    """advance(state, n) -> (state, losses (chunk,)) for training.drive; donates the state."""
    advance, (cdf, key) = _advance(training.seedless(cfg), mesh), draws(cfg)
    return lambda state, n: advance(state, n, bits, cdf, key)


@functools.lru_cache(maxsize=8)
def _advance(cfg: TrainConfig, mesh):
    # one jitted program per (config up to its seed, mesh) in a process: the seeds of a group,
    # a resumed or a probed run reuse its compilation (bits, CDF and key are its arguments)
    chunk = chunk_length(cfg.train.max_chunk, cfg.train.steps)
    return training.make_advance(make_step(cfg, mesh), chunk, donate=True)


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
    force: bool = False,
    start: Start | None = None,
) -> RunDir:
    """Train, evaluate and write the run directory `out`; returns it.

    resume=True continues from the checkpoint to the numbers an uninterrupted run gives.
    stop_at (a step) ends the process after that step, as if killed, leaving status "running".
    stop(evals) is called after each evaluation with the per-sequence evaluations so far (step,
    rank, presentations, loss, accuracy); True ends the run there as complete, the manifest
    recording stopped_early and stopped_step (e.g. a plateau rule with cfg.train.steps as budget).
    force=True writes the run into a folder phenomjax did not write (runs/lifecycle.open_run).
    start (`branch_state`) begins a new run from another run's state at a step (its params,
    optimizer state and counts): the same numbers as training from step 0 when the two runs'
    configs agree up to that step. A run resumed from its own checkpoint ignores it.
    """
    distributed.initialize(cfg.distributed)
    check_fits(transformer_cost.memory(cfg), "run")  # before the bits, the state or the folder
    mesh = distributed.make_mesh(cfg.distributed.devices, "data")
    distributed.check_divisible(cfg.train.batch, mesh, "train.batch")
    main = distributed.is_main()  # only process 0 writes; every process computes
    bits = jnp.asarray(make_bits(cfg.data.seed, cfg.data.K, cfg.data.L), jnp.int32)
    init = (lambda: init_state(cfg)) if start is None else (lambda: start.state)
    with open_run(out, kind="transformer", cfg=cfg, init=init, resume=resume, writer=main,
                  extra=_manifest_extra(cfg, start), force=force,
                  start_step=0 if start is None else start.step) as opened:  # fmt: skip
        if opened.complete:
            return opened.run
        state = distributed.place(opened.state, distributed.replicated(mesh))
        bits = distributed.place(bits, distributed.replicated(mesh))
        per_position = wants_positions(cfg)

        def evaluate(state, s: int) -> Evaluation:
            nll, acc = evaluate_positions(state["params"], bits, cfg, mesh)
            pos = dict(position_loss=nll, position_accuracy=acc) if per_position else {}
            counts = np.asarray(state["counts"], np.int64)
            return Evaluation(counts, nll.mean(axis=1), acc.mean(axis=1), **pos)

        t = cfg.train
        sched = Schedule.log_spaced(
            t.steps,
            t.num_evals,
            max_chunk=t.max_chunk,
            batch=t.batch,
            desc=f"train {opened.run.path.name}",
            stop_at=stop_at,
            extra=t.eval_steps,
        )
        return drive_run(
            opened,
            sched,
            state=state,
            advance=make_advance(cfg, bits, mesh),
            evaluate=evaluate,
            learning_rate=schedule(cfg.optimizer, t.steps),
            progress=progress and main,
            stop=stop,
        )


def _manifest_extra(cfg: TrainConfig, start: Start | None = None) -> Callable[[dict], dict]:
    """Manifest fields of a new transformer run, from its initial state."""
    branched = {} if start is None else {"branched_from": start.source, "branch_step": start.step}
    return lambda state: {
        "n_params": gpt.n_params(state["params"]),
        "compute_dtype": cfg.model.compute_dtype,  # bf16 and fp32 capacities differ
        "weight_decay": DECAY_CONVENTION,
        **branched,
    }


@dataclasses.dataclass(frozen=True)
class Start:
    """Where a branched run begins: another run's state at one of its checkpointed steps."""

    state: dict[str, Any]  # params, optimizer state, step and counts, as init_state's pytree
    step: int
    source: str  # the run it came from (its folder's name), recorded in the manifest


def branch_state(cfg: TrainConfig, source: str | Path, step: int) -> Start:
    """The state of run `source` at `step`, for a run of `cfg` to begin from (train's start):
    its checkpoint, which must be at that step (a source past it has overwritten it), in the
    layout of cfg's state. A RunDirError otherwise."""
    run = RunDir(source)
    arrays, meta = run.load_checkpoint()
    if meta["step"] != step:
        raise RunDirError(
            f"{run.checkpoint_dir}: checkpoint at step {meta['step']}, expected {step} to "
            "branch from"
        )
    state = arrays_to_pytree(jax.eval_shape(lambda: init_state(cfg)), arrays)
    return Start(state, int(step), run.path.name)


def probe(cfg: TrainConfig) -> Probe:
    """The run's programs as `train` builds them (one device), for `phenomjax plan`'s timing;
    `phenomjax train` closes with the Bayes floors when K <= 20000, so that is timed too."""
    bits_np = make_bits(cfg.data.seed, cfg.data.K, cfg.data.L)
    bits = jnp.asarray(bits_np, jnp.int32)
    weights = zipf_weights(cfg.data.K, cfg.data.alpha)
    return Probe(
        state=init_state(cfg),
        advance=make_advance(cfg, bits),
        evaluate=lambda s: evaluate_positions(s["params"], bits, cfg),
        chunk=chunk_length(cfg.train.max_chunk, cfg.train.steps),
        K=cfg.data.K,
        positions=cfg.data.L - 1,
        per_position=wants_positions(cfg),
        extra_columns=False,
        summary=(lambda: per_sequence_floor(bits_np, weights)) if cfg.data.K <= 20000 else None,
    )
