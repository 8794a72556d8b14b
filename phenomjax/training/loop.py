"""The host loop shared by every run: how far to advance, when to evaluate, what to show.

The jitted `advance(state, n)` (step.py) runs n steps on device. The host only decides how far
to go, reads one loss buffer per chunk (the one sync point per chunk), updates the progress, and
calls `evaluate` / `checkpoint` at the evaluation steps. Nothing here runs inside jit.

Progress goes to stderr: a tqdm bar updated once per chunk on a terminal; elsewhere (a file, a
pipe, a cluster job's log, where a bar's carriage-return frames pile up into one endless line)
one plain line per evaluation: the step, the last train loss and the throughput since the
previous line.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..data import log_spaced_steps
from ..errors import NonFiniteLossError

State = Any
# advance(state, n) -> (state, train_loss_buffer (chunk,)), of which the first n are valid
Advance = Callable[[State, int], tuple[State, Any]]


def chunk_length(max_chunk: int, steps: int) -> int:
    """The longest chunk a run of `steps` steps dispatches: the length of its loss buffer."""
    return max(1, min(int(max_chunk), int(steps)))


@dataclasses.dataclass(frozen=True)
class Schedule:
    """When a run advances, evaluates and ends (the learning rate's schedule is optim.schedule)."""

    total_steps: int  # where this call stops; below final_step it stops as a kill would
    final_step: int  # the run's last step: reaching it completes the run
    eval_steps: tuple[int, ...]  # steps at which every sequence is evaluated
    max_chunk: int  # most steps per device dispatch (one host sync each)
    batch: int = 1  # sequences per step, for the throughput shown
    desc: str = "train"  # the progress label

    @classmethod
    def log_spaced(
        cls,
        steps: int,
        num_evals: int,
        *,
        max_chunk: int,
        batch: int,
        desc: str,
        stop_at: int | None = None,
        extra: tuple[int, ...] = (),
    ) -> Schedule:
        """A run of `steps` steps with about `num_evals` log-spaced evaluations (and step 0)
        and those at the `extra` steps; `stop_at` ends this call earlier, leaving the run
        resumable."""
        total = steps if stop_at is None else min(stop_at, steps)
        grid = tuple(sorted({int(s) for s in log_spaced_steps(steps, num_evals)} | set(extra)))
        return cls(total, steps, grid, max_chunk, batch, desc)

    @property
    def chunk(self) -> int:
        """The loss buffer's length: max_chunk, or the whole run when that is shorter."""
        return chunk_length(self.max_chunk, self.final_step)


def drive(
    state: State,
    schedule: Schedule,
    *,
    step: int,
    advance: Advance,
    evaluate: Callable[[State, int], None],
    on_chunk: Callable[[int, np.ndarray], None] | None = None,
    checkpoint: Callable[[State, int], None] | None = None,
    progress: bool = True,
    evaluated: Sequence[int] = (),
) -> State:
    """Advance `state` from `step` to schedule.total_steps, evaluating at each evaluation step
    not in `evaluated` (and checkpointing after each evaluation).

    `on_chunk(first_step, losses)` receives the per-step train losses of each chunk. A
    non-finite train loss raises NonFiniteLossError; what was written stays written.
    """
    total, desc = schedule.total_steps, schedule.desc
    plain = progress and not _is_terminal(sys.stderr)
    line = _PlainProgress(desc, total, schedule.batch) if plain else None
    evals = sorted({int(s) for s in schedule.eval_steps if step <= s <= total} - set(evaluated))

    def at_eval(s: State, t: int) -> None:
        evaluate(s, t)
        if checkpoint is not None:
            checkpoint(s, t)

    if evals and evals[0] == step:
        at_eval(state, step)
        evals.pop(0)
        if line is not None:
            line.emit(step)
    bar = tqdm(total=total, initial=step, desc=desc, unit="step", disable=not progress or plain,
               dynamic_ncols=True, leave=False)  # fmt: skip
    try:
        for target in sorted(set(evals) | {total}):
            while step < target:
                n = min(target - step, schedule.max_chunk)
                t0 = time.perf_counter()
                state, losses = advance(state, n)
                losses = np.asarray(losses)[:n]  # sync point: waits for the chunk
                dt = time.perf_counter() - t0
                _check_finite(losses, step)
                if on_chunk is not None:
                    on_chunk(step, losses)
                step += n
                if line is not None:
                    line.chunk(n, dt, float(losses[-1]))
                bar.update(n)
                rate = n * schedule.batch / max(dt, 1e-9)
                bar.set_postfix(loss=f"{float(losses[-1]):.4f}", seq_s=f"{rate:.0f}")
            if target in evals:
                at_eval(state, step)
            if line is not None:
                line.emit(step)
    finally:
        bar.close()
    return state


def _check_finite(losses: np.ndarray, first: int) -> None:
    if not np.all(np.isfinite(losses)):
        i = int(np.argmax(~np.isfinite(losses)))
        raise NonFiniteLossError(
            f"train loss became {losses[i]} at step {first + i + 1}; "
            "stopped, the evaluations written so far are kept "
            "(lower the learning rate or enable clipping)"
        )


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class _PlainProgress:
    """One line per evaluation on stderr, for logs that are not a terminal."""

    def __init__(self, desc: str, total: int, batch: int):
        self.desc, self.total, self.batch = desc, total, batch
        self.steps, self.seconds, self.loss = 0, 0.0, float("nan")

    def chunk(self, n: int, seconds: float, loss: float) -> None:
        self.steps += n
        self.seconds += seconds
        self.loss = loss

    def emit(self, step: int) -> None:
        text = f"{self.desc}: step {step}/{self.total}"
        if self.steps:
            rate = self.steps * self.batch / max(self.seconds, 1e-9)
            text += f", train loss {self.loss:.4f}, {rate:.0f} seq/s"
        print(text, file=sys.stderr, flush=True)
        self.steps, self.seconds = 0, 0.0
