"""What a transformer run costs (docs/design.md §3), in plan's words: exact parameter counts,
analytic FLOPs and traffic, and the peak memory part by part.

Parameter counts are exact: the shapes come from `jax.eval_shape` of the real initializers, so
they cannot drift from the model. FLOPs are analytic (a multiply-add is 2 FLOPs) and are
cross-checked against XLA's `cost_analysis()` in tests/plan/test_plan.py.

B sequences of L tokens, width D, H heads, n layers, vocab 2:

    forward per sequence  = n L (24 D^2 + 4 L D)       matmuls: qkv 6 D^2, proj 2 D^2, MLP 16 D^2
                                                       per token; scores and att @ v 2 L D each
                          + n L (73 D + 5 H L)         elementwise: LayerNorm, GELU, softmax
                          + 4 L D                      the 2-way head
    training step         = B (3 matmul + 4 elementwise) + 12 P   (backward = 2x the matmuls;
                                                       AdamW ~12 FLOPs per parameter)
    full evaluation       = K' forward,  K' = K rounded up to whole evaluation chunks
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax

from ..optim import make_optimizer
from ..plan.estimate import (
    F32,
    Cost,
    Part,
    Work,
    bits_parts,
    loop_parts,
    tree_bytes,
    tree_size,
)
from ..plan.timing import Probe
from ..runs.rundir import wants_positions
from ..training import chunk_length
from . import model as gpt

# Training activations kept for the backward pass, in float32 elements per layer:
# ACT_TOKEN per token and feature, ACT_SCORE per attention score (B H L^2). Fitted to XLA's
# memory_analysis() of value_and_grad (within 10% at the CPU-scale configs).
ACT_TOKEN = 30
ACT_SCORE = 3
# Evaluation (forward only): one layer's intermediates per chunk are alive at a time.
EVAL_TOKEN = 12
EVAL_SCORE = 3


def shapes(cfg) -> tuple[Any, Any]:
    """(params, optimizer state) of a TrainConfig as ShapeDtypeStructs, from the real init."""

    def init():
        params = gpt.init_params(jax.random.key(0), cfg.model, cfg.data.L)
        return params, make_optimizer(cfg.optimizer, cfg.train.steps).init(params)

    return jax.eval_shape(init)


def forward_flops(L: int, D: int, H: int, n_layer: int) -> tuple[float, float]:
    """(matmul, elementwise) FLOPs of one sequence's forward pass (see the module docstring)."""
    matmul = n_layer * L * (24 * D * D + 4 * L * D) + 4 * L * D
    elementwise = n_layer * L * (73 * D + 5 * H * L)
    return float(matmul), float(elementwise)


def activation_bytes(rows: int, L: int, D: int, H: int, n_layer: int) -> float:
    """float32 activations of `rows` sequences kept by the forward pass for the backward pass.

    Whatever model.compute_dtype says: XLA on the CPU keeps bf16 intermediates in float32 (its
    temporary buffers measure the same for both, tests/plan/test_plan.py), and on an accelerator
    that keeps them in bf16 the count is an upper bound, so a refusal is never too lenient."""
    return float(F32 * n_layer * (ACT_TOKEN * rows * L * D + ACT_SCORE * rows * H * L * L))


def eval_chunk_bytes(rows: int, L: int, D: int, H: int) -> float:
    """float32 intermediates alive while one evaluation chunk passes through one layer."""
    return float(F32 * (EVAL_TOKEN * rows * L * D + EVAL_SCORE * rows * H * L * L))


def work(cfg, n_params: int) -> tuple[Work, Work]:
    """(training step, full evaluation) of a TrainConfig."""
    m, d, t = cfg.model, cfg.data, cfg.train
    D, H, NL, L = m.width, m.n_head, m.n_layer, d.L
    matmul, elem = forward_flops(L, D, H, NL)
    step_flops = t.batch * (3 * matmul + 4 * elem) + 12 * n_params
    act = activation_bytes(t.batch, L, D, H, NL)
    # params read twice (forward, backward), gradient written and read, AdamW's two moments
    # read and written, params written: ~10 passes over P floats, plus activations out and back
    step = Work(step_flops, F32 * 10 * n_params + 2 * act, 30 * NL + 40)
    chunk = min(t.eval_chunk, d.K)
    n_chunks = math.ceil(d.K / chunk)
    rows = n_chunks * chunk
    per_chunk = F32 * n_params + 2 * NL * eval_chunk_bytes(chunk, L, D, H)
    kernels = n_chunks * (10 * NL + 10)
    evaluation = Work(rows * (matmul + elem), n_chunks * per_chunk, kernels)
    return step, evaluation


def parts(cfg, n_params: int, opt_bytes: int) -> list[Part]:
    """Peak memory of `phenomjax train` for a TrainConfig, part by part."""
    d, m, t = cfg.data, cfg.model, cfg.train
    K, L, D, H, NL = d.K, d.L, m.width, m.n_head, m.n_layer
    chunk = min(t.eval_chunk, K)
    rows = math.ceil(K / chunk) * chunk
    evals = t.num_evals + 1
    model = ("model.n_layer", "model.n_head", "model.head_dim")
    out = [
        Part("parameters", F32 * n_params, model),
        Part("optimizer state", opt_bytes, model + ("optimizer.name",)),
        Part("gradients", F32 * n_params, model),
        Part(
            "activations of one batch (forward kept for backward)",
            activation_bytes(t.batch, L, D, H, NL),
            ("train.batch", "data.L") + model,
        ),
        Part(
            "evaluation chunk activations",
            eval_chunk_bytes(chunk, L, D, H),
            ("data.L", "train.eval_chunk", "model.n_head", "model.head_dim"),
        ),
        # loss and accuracy of every (sequence, position): on the device, then on the host
        Part("per-position tables (device)", 2 * F32 * rows * (L - 1), ("data.K", "data.L")),
        Part("per-position tables (host)", 2 * F32 * K * (L - 1), ("data.K", "data.L"), "host"),
        Part("presentation counts", F32 * K, ("data.K",)),
        Part(
            "evaluation rows (all evaluations)",
            28.0 * K * evals,
            ("data.K", "train.num_evals"),
            "host",
        ),  # fmt: skip
        *bits_parts(K, L),
        *loop_parts(chunk_length(t.max_chunk, t.steps), t.steps),
    ]
    if wants_positions(t.per_position, K, L):  # positions.parquet's rows, and a copy as written
        out.append(
            Part(
                "per-position rows (all evaluations)",
                2 * 30.0 * K * (L - 1) * evals,
                ("data.K", "data.L", "train.num_evals", "train.per_position"),
                "host",
            )
        )
    return out


def memory(cfg) -> list[Part]:
    """The peak-memory parts of a TrainConfig, shapes from the real init: what `train` checks
    (plan.memory.check_fits) before it allocates anything."""
    params, opt = shapes(cfg)
    return parts(cfg, tree_size(params), tree_bytes(opt))


def cost(cfg, probe: Callable[[], Probe] | None = None) -> Cost:
    """The Cost of a TrainConfig (shapes from the real init); `probe` builds its programs."""
    params, opt = shapes(cfg)
    n = tree_size(params)
    step, evaluation = work(cfg, n)
    return Cost(
        kind="transformer",
        what="transformer training",
        params=n,
        trainable=n,
        step=step,
        evaluation=evaluation,
        parts=tuple(parts(cfg, n, tree_bytes(opt))),
        probe=probe,
    )
