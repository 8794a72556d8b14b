"""The training driver shared by the transformer trainer and the phenomenological fitter.

The jitted `advance(state, n)` runs n steps on device (a while-loop with a dynamic trip count,
so it compiles once whatever the distance to the next evaluation). The host only decides how
far to go, reads one loss per chunk (the one sync point per chunk), updates the progress bar,
and calls `evaluate` / `checkpoint` at the evaluation steps.

Progress goes to stderr: a bar on a terminal; elsewhere (a file, a pipe, a cluster job's log,
where a bar's carriage-return frames pile up into one endless line) one plain line per
evaluation: the step, the last train loss and the throughput since the previous line.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..errors import NonFiniteLossError

State = Any
# advance(state, n) -> (state, train_loss_buffer (max_chunk,)), of which the first n are valid
Advance = Callable[[State, int], tuple[State, Any]]


def drive(
    state: State,
    *,
    step: int,
    total_steps: int,
    eval_steps: Sequence[int],
    advance: Advance,
    evaluate: Callable[[State, int], None],
    on_chunk: Callable[[int, np.ndarray], None] | None = None,
    checkpoint: Callable[[State, int], None] | None = None,
    max_chunk: int = 1000,
    batch: int = 1,
    desc: str = "train",
    progress: bool = True,
    evaluated: Sequence[int] = (),
) -> State:
    """Advance `state` from `step` to `total_steps`, evaluating at each of `eval_steps`.

    `on_chunk(first_step, losses)` receives the per-step train losses of each chunk.
    A non-finite train loss raises NonFiniteLossError after what was written stays written.
    """
    plain = progress and not _is_terminal(sys.stderr)
    line = _PlainProgress(desc, total_steps, batch) if plain else None
    evals = sorted({int(s) for s in eval_steps if step <= s <= total_steps} - set(evaluated))
    if evals and evals[0] == step:
        evaluate(state, step)
        if checkpoint is not None:
            checkpoint(state, step)
        evals.pop(0)
        if line is not None:
            line.emit(step)
    targets = sorted(set(evals) | {total_steps})
    bar = tqdm(
        total=total_steps,
        initial=step,
        desc=desc,
        unit="step",
        disable=not progress or plain,
        dynamic_ncols=True,
        leave=False,
    )
    try:
        for target in targets:
            while step < target:
                n = min(target - step, max_chunk)
                t0 = time.perf_counter()
                state, losses = advance(state, n)
                losses = np.asarray(losses)[:n]  # sync point: waits for the chunk
                dt = time.perf_counter() - t0
                if not np.all(np.isfinite(losses)):
                    bad = step + int(np.argmax(~np.isfinite(losses))) + 1
                    raise NonFiniteLossError(
                        f"train loss became {losses[bad - step - 1]} at step {bad}; "
                        "stopped, the evaluations written so far are kept "
                        "(lower the learning rate or enable clipping)"
                    )
                if on_chunk is not None:
                    on_chunk(step, losses)
                step += n
                if line is not None:
                    line.chunk(n, dt, float(losses[-1]))
                bar.update(n)
                bar.set_postfix(
                    loss=f"{float(losses[-1]):.4f}", seq_s=f"{n * batch / max(dt, 1e-9):.0f}"
                )
            if target in evals:
                evaluate(state, step)
                if checkpoint is not None:
                    checkpoint(state, step)
            if line is not None:
                line.emit(step)
    finally:
        bar.close()
    return state


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
