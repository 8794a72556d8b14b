"""Time a few real steps and one real evaluation of a run's jitted programs, on this machine.

Nothing here is a model of the step: a family's trainer builds its `Probe` (the initial state,
the advance and the evaluation it runs itself), and `measure` times it, compile time apart. The
host side of an evaluation (the rows, the parquet flush that rewrites every table written so
far, the checkpoint) is timed on a temporary run directory, so the prediction counts its growth
with the number of evaluations.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from ..runs import RunDir, RunLog, pytree_to_arrays


@dataclasses.dataclass(frozen=True)
class Probe:
    """A run's real programs, built as its trainer builds them, for `measure`."""

    state: Any  # the initial state
    advance: Callable[[Any, int], tuple[Any, Any]]  # advance(state, n), as the loop calls it
    evaluate: Callable[[Any], Any]  # one evaluation of every sequence (the device side)
    chunk: int  # the advance's loss-buffer length: the longest chunk it takes
    K: int  # sequences
    positions: int  # predicted positions, L - 1
    per_position: bool  # the run writes positions.parquet
    extra_columns: bool  # evals.parquet carries expected_presentations
    summary: Callable[[], Any] | None = None  # the command's closing summary, timed once


def measure(make_probe: Callable[[], Probe], budget_s: float = 4.0) -> dict:
    """Measured seconds of a run's setup, compile, steps, evaluation, host I/O and summary."""
    t0 = time.perf_counter()
    probe = make_probe()
    jax.block_until_ready(probe.state)
    setup = time.perf_counter() - t0
    out = time_advance(probe.advance, probe.state, probe.chunk, budget_s)
    state = out.pop("state")
    _, first = _clock(lambda: probe.evaluate(state))
    _, ev = _clock(lambda: probe.evaluate(state))
    io = time_host_io(state, probe.K, probe.positions, probe.per_position, probe.extra_columns)
    summary = 0.0
    if probe.summary is not None:
        t0 = time.perf_counter()
        probe.summary()
        summary = time.perf_counter() - t0
    return {**out, "setup_s": setup, "eval_compile_s": max(first - ev, 0.0), "eval_s": ev,
            **io, "summary_s": summary}  # fmt: skip


def process_age() -> float:
    """Seconds since this process started (Linux /proc); 0.0 where it cannot be read."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = float(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def _clock(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - t0


def time_advance(advance: Callable, state: Any, max_chunk: int, budget_s: float) -> dict:
    """Compile, per-dispatch overhead and per-step seconds of advance(state, n) -> (state, losses).

    The step is the mean of t(k) / k over three dispatches of k steps (k sized to the budget,
    at most max_chunk): the mean, not the median, since a run on a shared machine pays the
    average load. The dispatch overhead is the median t(1) less one step.
    """
    held = {"state": state}

    def call(n: int) -> float:
        (held["state"], _), t = _clock(lambda: advance(held["state"], n))
        return t

    first = call(1)
    t_one = float(np.median([call(1) for _ in range(3)]))
    k = min(max_chunk, 8)
    step = call(k) / k
    k = int(min(max_chunk, max(k, budget_s / 3 / step)))
    times = [call(k) for _ in range(3)]
    step = float(np.mean(times)) / k
    return {
        "compile_s": max(first - t_one, 0.0),
        "chunk_overhead_s": max(t_one - step, 0.0),
        "step_s": step,
        "step_spread": float((max(times) - min(times)) / np.mean(times)),
        "steps_timed": 4 + min(max_chunk, 8) + 3 * k,
        "state": held["state"],
    }


def time_host_io(state: Any, K: int, P: int, per_position: bool, extra_cols: bool) -> dict:
    """Seconds of one evaluation's host side: rows, a flush per evaluation, a checkpoint.

    A flush rewrites every row written so far, so evaluation i costs `fixed + i * rows`; both
    terms are read off a flush after one evaluation and after four.
    """
    rng = np.random.default_rng(0)
    loss = rng.random(K, dtype=np.float32)
    pos = rng.random((K, P), dtype=np.float32) if per_position else None
    extra = {"expected_presentations": np.zeros(K)} if extra_cols else None
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(tmp)
        log = RunLog(run)

        def one_eval(step: int) -> float:
            t0 = time.perf_counter()
            log.add_eval(step, np.zeros(K, np.int64), loss, loss, position_loss=pos,
                         position_accuracy=pos, extra=extra)  # fmt: skip
            log.flush()
            run.save_checkpoint(pytree_to_arrays(state), {"step": step})
            return time.perf_counter() - t0

        t1 = one_eval(0)
        for s in (1, 2):
            log.add_eval(s, np.zeros(K, np.int64), loss, loss, position_loss=pos,
                         position_accuracy=pos, extra=extra)  # fmt: skip
        t4 = one_eval(3)
    rows = max((t4 - t1) / 3, 0.0)
    return {"io_fixed_s": max(t1 - rows, 0.0), "io_rows_s": rows}


def n_chunks(step_grid: np.ndarray, total: int, max_chunk: int) -> int:
    """Dispatches of advance that training.drive makes: per segment between evaluations."""
    targets = sorted({int(s) for s in step_grid if 0 < s <= total} | {total})
    prev, n = 0, 0
    for t in targets:
        n += -(-(t - prev) // max_chunk)
        prev = t
    return n
