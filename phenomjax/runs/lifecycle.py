"""The one run lifecycle (docs/design.md §4) of transformer training and phenomenological fits.

    with open_run(out, kind=..., cfg=cfg, init=init, resume=resume) as opened:
        if opened.complete:
            return opened.run
        return drive_run(opened, advance=..., evaluate=..., learning_rate=..., ...)

- One state layout, a dict {"params", "opt_state", "step" (int32), ["counts" (int32, (K,))]}
  (`new_state`), one optimizer update (`apply_optimizer`) and one step builder (`make_advance`:
  a jitted fori_loop with a traced trip count, so it compiles once whatever the chunk length).
- `open_run` creates the run directory from the config, or reopens it for --resume: the state
  comes from the checkpoint and rows after the checkpoint step are dropped (they are recomputed
  to the same numbers, every random draw being keyed by its step). A run stopped before its
  first checkpoint resumes from step 0. The writing process holds an advisory lock on the folder
  for the whole run, so a second --resume of the same run is refused instead of racing it.
- `drive_run` drives `loop.drive`: train rows per chunk, evaluation rows, flush and checkpoint
  at every evaluation, status `complete` at the end. The failure policy: a non-finite loss marks
  the run `failed` with the error recorded and keeps everything written; an interrupt or any
  other exception flushes what was computed, leaves the run `running` (resumable) and re-raises.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from ..config import to_dict
from ..errors import NonFiniteLossError, RunDirError
from .checkpoint import arrays_to_pytree, pytree_to_arrays
from .log import RunLog
from .loop import drive
from .rundir import RunDir

State = dict[str, Any]
LOCK_NAME = ".lock"


# -- the device side -----------------------------------------------------------------------------


def new_state(params: Any, tx: optax.GradientTransformation, *, counts: int | None = None) -> State:
    """The state layout every run checkpoints: params, optimizer state, step 0, and zero
    presentation counts of `counts` sequences where presentations are counted."""
    state = {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}
    if counts is not None:
        state["counts"] = jnp.zeros((counts,), jnp.int32)
    return state


def apply_optimizer(tx: optax.GradientTransformation, grads: Any, state: State) -> tuple[Any, Any]:
    """(params, opt_state) after one update of `tx` from `grads`."""
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    return optax.apply_updates(state["params"], updates), opt_state


def make_advance(
    step: Callable[..., tuple[State, jax.Array]],
    max_chunk: int,
    *,
    donate: bool = False,
    loss_of: Callable[[jax.Array], jax.Array] | None = None,
) -> Callable[..., tuple[State, jax.Array]]:
    """jit(advance(state, n, *args)) -> (state after n steps, per-step losses (max_chunk,)).

    `step(state, *args) -> (state, loss)` is one optimizer step; `args` (the data) are jit
    arguments, never constants baked into the program. n <= max_chunk is traced (a while loop),
    so one compilation serves every chunk length; entries past n stay NaN. `loss_of` reduces a
    step's loss to the logged scalar (a sweep logs its best member). donate=True lets XLA reuse
    the incoming state's buffers (the caller must not touch that state again).
    """
    reduce = loss_of or (lambda x: x)

    def advance(state: State, n: jax.Array, *args: Any) -> tuple[State, jax.Array]:
        def body(i, carry):
            s, buf = carry
            s, loss = step(s, *args)
            return s, buf.at[i].set(reduce(loss).astype(jnp.float32))

        buf = jnp.full((max_chunk,), jnp.nan, jnp.float32)
        return jax.lax.fori_loop(0, n, body, (state, buf))

    return jax.jit(advance, donate_argnums=(0,) if donate else ())


# -- the run directory side ----------------------------------------------------------------------


@contextlib.contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on the run folder `path` (`path/.lock`), or refuse.

    flock is released by the kernel when the process ends, however it ends, so a killed run
    never leaves its folder locked.
    """
    lock = Path(path) / LOCK_NAME
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        raise RunDirError(
            f"{lock.parent}: not writable (cannot create {LOCK_NAME}); "
            "make it writable or choose another folder"
        ) from None
    except OSError as e:
        raise RunDirError(f"{lock.parent}: cannot lock it ({e.strerror or e})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RunDirError(f"{lock.parent}: in use by another process (pid {held})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


@dataclasses.dataclass
class OpenRun:
    """A run directory opened for training, and where its training starts."""

    run: RunDir
    state: State  # the initial state, or the checkpointed one on resume
    step: int  # the step `state` is at
    log: RunLog  # rows so far (those up to `step` on resume)
    complete: bool  # resumed a run that had already finished: nothing to do
    writer: bool  # this process writes the run directory (process 0 of a multi-host run)


@contextlib.contextmanager
def open_run(
    out: str | os.PathLike,
    *,
    kind: str,
    cfg: Any,
    init: Callable[[], State],
    resume: bool = False,
    extra: Callable[[State], Mapping[str, Any]] | None = None,
    writer: bool = True,
) -> Iterator[OpenRun]:
    """Create the run directory `out` for `cfg` (a config with [data] and [train] sections), or
    reopen it with resume=True; the writing process holds the folder's lock until the block ends.

    `init()` builds the initial state (on resume only its shapes are used, unless there is no
    checkpoint yet); `extra(state)` gives manifest fields of a new run (e.g. n_params).
    resume=True on a folder without a run starts one, so a requeued job can always pass --resume.
    """
    run = RunDir(out)
    with run_lock(run.path) if writer else contextlib.nullcontext():
        if resume and run.exists():
            yield _reopen(run, kind, cfg, init, writer)
            return
        state = init()
        if writer:
            run = RunDir.create_for(out, kind=kind, cfg=cfg, extra=extra(state) if extra else None)
        yield OpenRun(run, state, 0, RunLog(run), complete=False, writer=writer)


def _reopen(run: RunDir, kind: str, cfg: Any, init: Callable[[], State], writer: bool) -> OpenRun:
    # a run that predates a config field ran with its default: the field's default resumes it
    run.check_resumable(kind, to_dict(cfg), defaults=to_dict(type(cfg)()))
    manifest = run.manifest()
    if not run.has_checkpoint():  # stopped before its first checkpoint: start it over
        state, step, log = init(), 0, RunLog(run)
    else:
        arrays, meta = run.load_checkpoint()
        state = arrays_to_pytree(jax.eval_shape(init), arrays)
        step = int(meta["step"])
        log = RunLog(run, resume_step=step)
    complete = manifest.get("status") == "complete"
    if writer and not complete:
        # a failed run that is resumed is running again; its old error no longer applies
        run.set_status("running", **({"error": None} if manifest.get("error") else {}))
    return OpenRun(run, state, step, log, complete=complete, writer=writer)


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """One evaluation of all K sequences, as the model computed it."""

    presentations: np.ndarray  # (K,) int64
    loss: np.ndarray  # (K,) mean nats over positions 1..L-1
    accuracy: np.ndarray  # (K,)
    position_loss: np.ndarray | None = None  # (K, L-1), where positions.parquet is written
    position_accuracy: np.ndarray | None = None
    extra: Mapping[str, np.ndarray] | None = None  # columns beyond the contract


def drive_run(
    opened: OpenRun,
    *,
    advance: Callable[[State, int], tuple[State, Any]],
    evaluate: Callable[[State, int], Evaluation],
    learning_rate: Callable[[jax.Array], Any],
    total_steps: int,
    final_step: int,
    eval_steps: Sequence[int],
    max_chunk: int,
    batch: int,
    desc: str,
    progress: bool = True,
    state: State | None = None,
    stop: Callable[[pd.DataFrame], bool] | None = None,
) -> RunDir:
    """Train `opened` from its step to `total_steps`, evaluating at `eval_steps`; mark the run
    `complete` when `total_steps` is its `final_step` (an earlier total stops it as a kill would,
    leaving it `running`). `state` replaces opened.state (e.g. placed on a device mesh);
    `learning_rate(update_index)` is the schedule, for the train rows.

    `stop(evals)`, called after each evaluation with every per-sequence evaluation so far, ends
    the run there as `complete` when it returns True (after that step's checkpoint), recording
    `stopped_early` and `stopped_step` in the manifest: a plateau rule with the steps as budget.
    Every process calls it on the same rows, so all stop at the same step.
    """
    run, log, writer = opened.run, opened.log, opened.writer
    stopping: list[int] = []

    def on_eval(s: State, t: int) -> None:
        ev = evaluate(s, t)
        loss = np.asarray(ev.loss)
        if not np.all(np.isfinite(loss)):  # diverged between two loss reads: write nothing
            raise NonFiniteLossError(
                f"evaluation at step {t}: non-finite loss for {int(np.sum(~np.isfinite(loss)))}"
                " sequences; stopped, the evaluations written so far are kept "
                "(lower the learning rate or enable clipping)"
            )
        log.add_eval(t, ev.presentations, loss, ev.accuracy, position_loss=ev.position_loss,
                     position_accuracy=ev.position_accuracy, extra=ev.extra)  # fmt: skip
        if stop is not None and t < final_step and stop(log.evals()):
            stopping.append(t)

    def on_checkpoint(s: State, t: int) -> None:
        if writer:
            log.flush()
            run.save_checkpoint(pytree_to_arrays(s), {"step": int(t)})
        if stopping:  # after the checkpoint, so the stopped run's state is kept
            raise _Stopped

    def on_chunk(first: int, losses: np.ndarray) -> None:
        steps = np.arange(first + 1, first + 1 + len(losses))  # the loss of update s-1 is step s
        lrs = np.asarray(learning_rate(jnp.asarray(steps - 1)), np.float32)
        log.add_train(steps, losses, np.broadcast_to(lrs, steps.shape))

    try:
        drive(
            opened.state if state is None else state,
            step=opened.step,
            total_steps=total_steps,
            eval_steps=eval_steps,
            advance=advance,
            evaluate=on_eval,
            on_chunk=on_chunk,
            checkpoint=on_checkpoint,
            max_chunk=max_chunk,
            batch=batch,
            desc=desc,
            progress=progress,
            evaluated=log.evaluated_steps(),
        )
    except _Stopped:
        if writer:
            log.flush()
            run.set_status("complete", stopped_early=True, stopped_step=stopping[0])
        return run
    except NonFiniteLossError as e:
        if writer:
            _flush_quietly(log)
            run.set_status("failed", error=f"{type(e).__name__}: {e}")
        raise
    except BaseException:
        if writer:  # interrupted: keep what was computed, stay resumable
            _flush_quietly(log)
        raise
    if writer:
        log.flush()
        if total_steps == final_step:
            run.set_status("complete")
    return run


class _Stopped(Exception):
    """Raised inside the loop when the stop hook ends a run; never leaves drive_run."""


def _flush_quietly(log: RunLog) -> None:
    """Flush while an error is on its way out: a second failure must not replace the first."""
    with contextlib.suppress(Exception):
        log.flush()
