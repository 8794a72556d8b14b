"""Drive an opened run directory (phenomjax.runs.lifecycle.open_run) with the host loop.

    with open_run(out, kind=..., cfg=cfg, init=init, resume=resume) as opened:
        if opened.complete:
            return opened.run
        return drive_run(opened, schedule, advance=..., evaluate=..., learning_rate=...)

`drive_run` is the loop's hooks: train rows per chunk, evaluation rows, a flush and a checkpoint
at every evaluation, status `complete` at the end. The failure policy: a non-finite loss marks the
run `failed` with the error recorded and keeps everything written; an interrupt or any other
exception flushes what was computed, leaves the run `running` (resumable) and re-raises.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..errors import NonFiniteLossError
from ..runs import RunDir, RunLog, pytree_to_arrays
from ..runs.lifecycle import OpenRun
from .loop import Schedule, drive
from .step import State


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
    schedule: Schedule,
    *,
    advance: Callable[[State, int], tuple[State, jax.Array]],
    evaluate: Callable[[State, int], Evaluation],
    learning_rate: Callable[[jax.Array], jax.Array],
    progress: bool = True,
    state: State | None = None,
    stop: Callable[[pd.DataFrame], bool] | None = None,
) -> RunDir:
    """Train `opened` from its step to schedule.total_steps; mark the run `complete` when that
    is schedule.final_step (an earlier total stops it as a kill would, leaving it `running`).
    `state` replaces opened.state (e.g. placed on a device mesh); `learning_rate(update_index)`
    is the schedule, for the train rows.

    `stop(evals)`, called after each evaluation with every per-sequence evaluation so far, ends
    the run there as `complete` when it returns True (after that step's checkpoint), recording
    `stopped_early` and `stopped_step` in the manifest: a plateau rule with the steps as budget.
    Every process calls it on the same rows, so all stop at the same step.
    """
    hooks = _Hooks(opened, schedule.final_step, evaluate, learning_rate, stop)
    run, log, writer = opened.run, opened.log, opened.writer
    try:
        drive(
            opened.state if state is None else state,
            schedule,
            step=opened.step,
            advance=advance,
            evaluate=hooks.on_eval,
            on_chunk=hooks.on_chunk,
            checkpoint=hooks.on_checkpoint,
            progress=progress,
            evaluated=log.evaluated_steps(),
        )
    except _Stopped:
        if writer:
            log.flush()
            run.set_status("complete", stopped_early=True, stopped_step=hooks.stopping[0])
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
        if schedule.total_steps == schedule.final_step:
            run.set_status("complete")
    return run


RATE_BLOCK = 4096  # update indices per schedule evaluation (one shape)


class _Hooks:
    """What the loop calls back: evaluation rows, checkpoints, train rows, the stop rule."""

    def __init__(self, opened: OpenRun, final_step: int, evaluate, learning_rate, stop):
        self.run, self.log, self.writer = opened.run, opened.log, opened.writer
        self.final_step, self.evaluate, self.learning_rate = final_step, evaluate, learning_rate
        self.stop = stop
        self.stopping: list[int] = []
        self._blocks: dict[int, np.ndarray] = {}  # rates by block of update indices

    def on_eval(self, s: State, t: int) -> None:
        ev = self.evaluate(s, t)
        loss = np.asarray(ev.loss)
        if not np.all(np.isfinite(loss)):  # diverged between two loss reads: write nothing
            raise NonFiniteLossError(
                f"evaluation at step {t}: non-finite loss for {int(np.sum(~np.isfinite(loss)))}"
                " sequences; stopped, the evaluations written so far are kept "
                "(lower the learning rate or enable clipping)"
            )
        self.log.add_eval(t, ev.presentations, loss, ev.accuracy, position_loss=ev.position_loss,
                          position_accuracy=ev.position_accuracy, extra=ev.extra)  # fmt: skip
        if self.stop is not None and t < self.final_step and self.stop(self.log.evals()):
            self.stopping.append(t)

    def on_checkpoint(self, s: State, t: int) -> None:
        if self.writer:
            self.log.flush()
            self.run.save_checkpoint(pytree_to_arrays(s), {"step": int(t)})
        if self.stopping:  # after the checkpoint, so the stopped run's state is kept
            raise _Stopped

    def on_chunk(self, first: int, losses: np.ndarray) -> None:
        steps = np.arange(first + 1, first + 1 + len(losses))  # the loss of update s-1 is step s
        self.log.add_train(steps, losses, self.rates(steps - 1))

    def rates(self, updates: np.ndarray) -> np.ndarray:
        """The schedule's rate at each update index, read in blocks of one shape: chunks of
        every length would compile the eager schedule's ops anew each time (0.6 s a chunk)."""
        block = updates // RATE_BLOCK
        out = np.empty(len(updates), np.float32)
        for b in np.unique(block):
            if b not in self._blocks:
                idx = jnp.arange(b * RATE_BLOCK, (b + 1) * RATE_BLOCK)
                lr = np.asarray(self.learning_rate(idx), np.float32)
                self._blocks[b] = np.broadcast_to(lr, (RATE_BLOCK,))  # a constant: a scalar
            at = block == b
            out[at] = self._blocks[b][updates[at] % RATE_BLOCK]
        return out


class _Stopped(Exception):
    """Raised inside the loop when the stop hook ends a run; never leaves drive_run."""


def _flush_quietly(log: RunLog) -> None:
    """Flush while an error is on its way out: a second failure must not replace the first."""
    with contextlib.suppress(Exception):
        log.flush()
