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
from ..config import require_positive, to_dict
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
from ..errors import ConfigError, NonFiniteLossError, RunDirError
from ..optim import OptimConfig, make_optimizer, schedule
from ..runs import RunDir, RunLog, arrays_to_pytree, drive, pytree_to_arrays
from . import model as gpt
from .model import GPTConfig

# Per-position tables are written by default only up to this many (sequence, position) rows
# per evaluation (about 50 MB of parquet over 15 evaluations).
AUTO_POSITION_ROWS = 2_000_000


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


def init_state(cfg: TrainConfig) -> dict[str, Any]:
    """params, optimizer state, exact presentation counts (K,) and the step, as one pytree."""
    params = gpt.init_params(key_streams(cfg.data.seed)["init"], cfg.model, cfg.data.L)
    tx = make_optimizer(cfg.optimizer, cfg.train.steps)
    return {
        "params": params,
        "opt": tx.init(params),
        "counts": jnp.zeros((cfg.data.K,), jnp.int32),
        "step": jnp.zeros((), jnp.int32),
    }


def make_advance(cfg: TrainConfig, bits: jax.Array, mesh=None):
    """A jitted advance(state, n) -> (state, losses (max_chunk,)) for loop.drive.

    With a mesh, each batch is split over its "data" axis and the parameters are replicated:
    XLA's partitioner turns the gradient into per-device partial sums plus one all-reduce.
    """
    tx = make_optimizer(cfg.optimizer, cfg.train.steps)
    cdf = zipf_cdf(zipf_weights(cfg.data.K, cfg.data.alpha))
    batches_key = key_streams(cfg.data.seed)["batches"]
    grad_fn = jax.value_and_grad(gpt.loss_fn)

    def one_step(state):
        step = state["step"]
        ranks = sample_ranks(jax.random.fold_in(batches_key, step), cdf, cfg.train.batch)
        x = distributed.constrain_rows(bits[ranks], mesh)
        loss, grads = grad_fn(state["params"], x, cfg.model)
        updates, opt = tx.update(grads, state["opt"], state["params"])
        params = jax.tree_util.tree_map(jnp.add, state["params"], updates)
        counts = state["counts"].at[ranks].add(1)
        return {"params": params, "opt": opt, "counts": counts, "step": step + 1}, loss

    @functools.partial(jax.jit, donate_argnums=0)
    def advance(state, n):
        def body(i, carry):
            state, losses = carry
            state, loss = one_step(state)
            return state, losses.at[i].set(loss)

        losses = jnp.zeros((cfg.train.max_chunk,), jnp.float32)
        return jax.lax.fori_loop(0, n, body, (state, losses))

    return advance


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
    if cfg.train.per_position == "auto":
        return cfg.data.K * (cfg.data.L - 1) <= AUTO_POSITION_ROWS
    return bool(cfg.train.per_position)


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
    mesh = distributed.make_mesh(cfg.distributed.devices, "data")
    distributed.check_divisible(cfg.train.batch, mesh, "train.batch")
    main = distributed.is_main()  # only process 0 writes; every process computes
    bits_np = make_bits(cfg.data.seed, cfg.data.K, cfg.data.L)
    bits = jnp.asarray(bits_np, jnp.int32)
    like = jax.eval_shape(lambda: init_state(cfg))
    if resume:
        run = RunDir(out)
        if not run.exists():
            raise RunDirError(f"{run.path}: no run to resume (drop --resume to start one)")
        run.check_resumable("transformer", to_dict(cfg))
        if run.manifest().get("status") == "complete":
            return run
        arrays, meta = run.load_checkpoint()
        state = arrays_to_pytree(like, arrays)
        step = int(meta["step"])
        log = RunLog(run, resume_step=step)
        if main:
            run.set_status("running")
    elif not main:
        state, run, step = init_state(cfg), RunDir(out), 0
        log = RunLog(run)
    else:
        state = init_state(cfg)
        run = RunDir.create_for(
            out, kind="transformer", cfg=cfg, extra={"n_params": gpt.n_params(state["params"])}
        )
        step, log = 0, RunLog(run)

    state = distributed.place(state, distributed.replicated(mesh))
    bits = distributed.place(bits, distributed.replicated(mesh))
    advance = make_advance(cfg, bits, mesh)
    lr_at = schedule(cfg.optimizer, cfg.train.steps)
    per_position = wants_positions(cfg)
    # the stop hook's view: per-sequence evaluations so far, kept on every process so all of
    # them stop at the same step
    seen = [run.read_evals().query(f"step <= {step}")] if stop is not None and resume else []
    stopping: list[int] = []

    def on_eval(state, s):
        nll, acc = evaluate_positions(state["params"], bits, cfg, mesh)
        counts = np.asarray(state["counts"])
        extra = {"position_loss": nll, "position_accuracy": acc} if per_position else {}
        log.add_eval(s, counts, nll.mean(axis=1), acc.mean(axis=1), **extra)
        if stop is not None:
            K = len(counts)
            row = {"step": s, "rank": np.arange(K), "presentations": counts}
            seen.append(pd.DataFrame({**row, "loss": nll.mean(axis=1), "accuracy": acc.mean(1)}))
            seen[:] = [pd.concat(seen, ignore_index=True)]
            if s < cfg.train.steps and stop(seen[0]):
                stopping.append(s)

    def on_checkpoint(state, s):
        if main:
            log.flush()
            run.save_checkpoint(pytree_to_arrays(state), {"step": s})
        if stopping:  # after the checkpoint, so the stopped run's state is kept
            raise _Stopped

    def on_chunk(first, losses):
        steps = np.arange(first + 1, first + 1 + len(losses))
        lrs = np.asarray(jax.vmap(lr_at)(jnp.asarray(steps - 1)))
        log.add_train(steps, losses, lrs)

    total = cfg.train.steps if stop_at is None else min(stop_at, cfg.train.steps)
    try:
        drive(
            state,
            step=step,
            total_steps=total,
            eval_steps=log_spaced_steps(cfg.train.steps, cfg.train.num_evals),
            advance=advance,
            evaluate=on_eval,
            on_chunk=on_chunk,
            checkpoint=on_checkpoint,
            max_chunk=cfg.train.max_chunk,
            batch=cfg.train.batch,
            desc=f"train {run.path.name}",
            progress=progress and main,
            evaluated=log.evaluated_steps(),
        )
    except NonFiniteLossError as e:
        if main:
            run.set_status("failed", error=str(e))
        raise
    except _Stopped:
        if main:
            run.set_status("complete", stopped_early=True, stopped_step=stopping[0])
        return run
    if total == cfg.train.steps and main:
        run.set_status("complete")
    return run


class _Stopped(Exception):
    """Raised inside the loop when the stop hook ends a run; never leaves train()."""
