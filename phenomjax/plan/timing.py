"""Time a few real steps and one real evaluation of a run's jitted programs, on this machine.

Nothing here is a model of the step: the transformer's `make_advance` / `evaluate_positions` and
the phenomenological `make_advance(make_step(...))` / `sequence_metrics` are run as the trainers
run them, with compile time measured apart. The host side of an evaluation (the rows, the
parquet flush that rewrites every table written so far, the checkpoint) is timed on a temporary
run directory, so the prediction counts its growth with the number of evaluations.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np


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
    import jax

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
    from ..runs import RunDir, RunLog, pytree_to_arrays

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
    """Dispatches of advance that runs.drive makes: per segment between evaluations."""
    targets = sorted({int(s) for s in step_grid if 0 < s <= total} | {total})
    prev, n = 0, 0
    for t in targets:
        n += -(-(t - prev) // max_chunk)
        prev = t
    return n


def time_transformer(cfg, budget_s: float = 4.0) -> dict:
    """Measured seconds of a TrainConfig's setup, compile, steps, evaluation and host I/O."""
    import jax
    import jax.numpy as jnp

    from ..bayes import per_sequence_floor
    from ..data import make_bits, zipf_weights
    from ..transformer.train import evaluate_positions, init_state, make_advance, wants_positions

    t0 = time.perf_counter()
    bits_np = make_bits(cfg.data.seed, cfg.data.K, cfg.data.L)
    bits = jnp.asarray(bits_np, jnp.int32)
    state = jax.block_until_ready(init_state(cfg))
    setup = time.perf_counter() - t0
    out = time_advance(make_advance(cfg, bits), state, cfg.train.max_chunk, budget_s)
    state = out.pop("state")
    _, first = _clock(lambda: evaluate_positions(state["params"], bits, cfg))
    _, ev = _clock(lambda: evaluate_positions(state["params"], bits, cfg))
    io = time_host_io(state, cfg.data.K, cfg.data.L - 1, wants_positions(cfg), False)
    summary = 0.0
    if cfg.data.K <= 20000:  # `phenomjax train` prints the final losses against the floor
        t0 = time.perf_counter()
        per_sequence_floor(bits_np, zipf_weights(cfg.data.K, cfg.data.alpha))
        summary = time.perf_counter() - t0
    return {**out, "setup_s": setup, "eval_compile_s": max(first - ev, 0.0), "eval_s": ev,
            **io, "summary_s": summary}  # fmt: skip


def time_phenom(cfg, budget_s: float = 4.0) -> dict:
    """Measured seconds of one phenomenological fit's setup, compile, steps, evaluation, I/O."""
    import jax
    import jax.numpy as jnp

    from ..data import key_streams, make_bits, zipf_weights
    from ..optim import make_optimizer
    from ..phenom import model as phenom
    from ..phenom.modes import freeze_untrained, init_state, make_advance, make_data, make_step
    from ..phenom.train import build_model, wants_positions

    K, L, tr = cfg.data.K, cfg.data.L, cfg.train
    t0 = time.perf_counter()
    model = build_model(cfg)
    keys = key_streams(cfg.data.seed)
    data = make_data(make_bits(cfg.data.seed, K, L), zipf_weights(K, cfg.data.alpha),
                     keys["batches"])  # fmt: skip
    like = phenom.init_params(keys["init"], model)
    tx = freeze_untrained(make_optimizer(cfg.optimizer, tr.steps), like, model)
    state = jax.block_until_ready(init_state(keys["init"], model, tx, mode=tr.mode, K=K))
    setup = time.perf_counter() - t0
    advance = make_advance(make_step(tx, mode=tr.mode, batch=tr.batch), tr.max_chunk)
    out = time_advance(lambda s, n: advance(s, jnp.int32(n), data), state, tr.max_chunk, budget_s)
    state = out.pop("state")
    per_position = wants_positions(cfg)
    chunk = min(tr.eval_chunk, K)
    metrics = jax.jit(
        lambda p, b: phenom.sequence_metrics(p, b, per_position=per_position, chunk=chunk)
    )
    _, first = _clock(lambda: metrics(state["params"], data.bits))
    _, ev = _clock(lambda: metrics(state["params"], data.bits))
    io = time_host_io(state, K, L - 1, per_position, True)
    return {**out, "setup_s": setup, "eval_compile_s": max(first - ev, 0.0), "eval_s": ev,
            **io, "summary_s": 0.0}  # fmt: skip
