"""Parameters, FLOPs and memory traffic of a transformer step and of a phenomenological step.

Parameter counts are exact: the shapes come from `jax.eval_shape` of the real initializers, so
they cannot drift from the model. FLOPs are analytic (a multiply-add is 2 FLOPs) and are
cross-checked against XLA's `cost_analysis()` in tests/test_plan.py.

Transformer (docs/design.md §3), B sequences of L tokens, width D, H heads, n layers, vocab 2:

    forward per sequence  = n L (24 D^2 + 4 L D)       matmuls: qkv 6 D^2, proj 2 D^2, MLP 16 D^2
                                                       per token; scores and att @ v 2 L D each
                          + n L (73 D + 5 H L)         elementwise: LayerNorm, GELU, softmax
                          + 4 L D                      the 2-way head
    training step         = B (3 matmul + 4 elementwise) + 12 P   (backward = 2x the matmuls;
                                                       AdamW ~12 FLOPs per parameter)
    full evaluation       = K' forward,  K' = K rounded up to whole evaluation chunks

Phenomenological model (docs/design.md §6), M rows per step (K in expected mode, the batch in
stochastic mode), N-1 = P predicted positions, features of width F (P for w = 1, P 2^w for the
one-hot windows, P d for gathered embeddings):

    step = 4 M F P (+ 2 M F P when embeddings are gathered) + 12 M P    two GEMMs + the loss
         + 6 (table build and its VJP, independent of M) + 12 * trainable parameters
    evaluation of all K = 2 K F P + 12 K P
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

# Training activations kept for the backward pass, in float32 elements per layer:
# ACT_TOKEN per token and feature, ACT_SCORE per attention score (B H L^2). Fitted to XLA's
# memory_analysis() of value_and_grad (within 10% at the CPU-scale configs).
ACT_TOKEN = 30
ACT_SCORE = 3
# Evaluation (forward only): one layer's intermediates per chunk are alive at a time.
EVAL_TOKEN = 12
EVAL_SCORE = 3
F32 = 4


@dataclasses.dataclass(frozen=True)
class Work:
    """One unit of device work (a training step or a full evaluation)."""

    flops: float  # floating-point operations
    nbytes: float  # bytes read and written in device memory (roofline traffic)
    kernels: float  # kernel launches (for the per-launch cost of small models on GPUs)


def tree_bytes(tree: Any) -> int:
    """Bytes of every array (or ShapeDtypeStruct) leaf of a pytree."""
    import jax
    import numpy as np

    return int(
        sum(
            int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
            for x in jax.tree_util.tree_leaves(tree)
            if hasattr(x, "dtype") and not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
        )
    )


def tree_size(tree: Any) -> int:
    import jax
    import numpy as np

    return int(sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree)))


# -- transformer ---------------------------------------------------------------------------------


def transformer_shapes(cfg) -> tuple[Any, Any]:
    """(params, optimizer state) of a TrainConfig as ShapeDtypeStructs, from the real init."""
    import jax

    from ..optim import make_optimizer
    from ..transformer import model as gpt

    def init():
        params = gpt.init_params(jax.random.key(0), cfg.model, cfg.data.L)
        return params, make_optimizer(cfg.optimizer, cfg.train.steps).init(params)

    return jax.eval_shape(init)


def transformer_forward_flops(L: int, D: int, H: int, n_layer: int) -> tuple[float, float]:
    """(matmul, elementwise) FLOPs of one sequence's forward pass (see the module docstring)."""
    matmul = n_layer * L * (24 * D * D + 4 * L * D) + 4 * L * D
    elementwise = n_layer * L * (73 * D + 5 * H * L)
    return float(matmul), float(elementwise)


def transformer_activation_bytes(rows: int, L: int, D: int, H: int, n_layer: int) -> float:
    """float32 activations of `rows` sequences kept by the forward pass for the backward pass.

    Whatever model.compute_dtype says: XLA on the CPU keeps bf16 intermediates in float32 (its
    temporary buffers measure the same for both, tests/test_plan.py), and on an accelerator
    that keeps them in bf16 the count is an upper bound, so a refusal is never too lenient."""
    return float(F32 * n_layer * (ACT_TOKEN * rows * L * D + ACT_SCORE * rows * H * L * L))


def transformer_eval_chunk_bytes(rows: int, L: int, D: int, H: int) -> float:
    """float32 intermediates alive while one evaluation chunk passes through one layer."""
    return float(F32 * (EVAL_TOKEN * rows * L * D + EVAL_SCORE * rows * H * L * L))


def transformer_work(cfg, n_params: int) -> tuple[Work, Work]:
    """(training step, full evaluation) of a TrainConfig."""
    m, d, t = cfg.model, cfg.data, cfg.train
    D, H, NL, L = m.width, m.n_head, m.n_layer, d.L
    matmul, elem = transformer_forward_flops(L, D, H, NL)
    step_flops = t.batch * (3 * matmul + 4 * elem) + 12 * n_params
    act = transformer_activation_bytes(t.batch, L, D, H, NL)
    # params read twice (forward, backward), gradient written and read, AdamW's two moments
    # read and written, params written: ~10 passes over P floats, plus activations out and back
    step = Work(step_flops, F32 * 10 * n_params + 2 * act, 30 * NL + 40)
    chunk = min(t.eval_chunk, d.K)
    n_chunks = math.ceil(d.K / chunk)
    rows = n_chunks * chunk
    per_chunk = Work(0, F32 * n_params + 2 * NL * transformer_eval_chunk_bytes(chunk, L, D, H), 0)
    kernels = n_chunks * (10 * NL + 10)
    evaluation = Work(rows * (matmul + elem), n_chunks * per_chunk.nbytes, kernels)
    return step, evaluation


# -- phenomenological model ----------------------------------------------------------------------


def phenom_model(cfg, **changes):
    """The PhenomModel of a FitConfig (with optional w, d, param changes, as a sweep group)."""
    from ..phenom.train import build_model

    return build_model(cfg, **changes)


def phenom_shapes(cfg, model) -> tuple[Any, Any, int]:
    """(params, optimizer state, trainable parameter count) from the real init, as shapes."""
    import jax

    from ..optim import make_optimizer
    from ..phenom import model as phenom
    from ..phenom.modes import freeze_untrained

    def init():
        params = phenom.init_params(jax.random.key(0), model)
        tx = freeze_untrained(make_optimizer(cfg.optimizer, cfg.train.steps), params, model)
        return params, tx.init(params)

    params, opt = jax.eval_shape(init)
    mask = phenom.trainable_mask(params, model)
    trainable = sum(tree_size(v) for k, v in params.items() if mask[k])
    return params, opt, trainable


def phenom_features(model) -> int:
    """F: the width of the per-row features the logits are a product of (phenom/kernels.py)."""
    P, V, d = model.N - 1, 2**model.w, model.d
    if V > max(d, 2):
        return P * d  # gathered embeddings
    return P if V == 2 else P * V


def phenom_table_flops(model) -> float:
    """FLOPs of building the (F, P) table from A, B, E (independent of the rows)."""
    P, V, d = model.N - 1, 2**model.w, model.d
    if model.param == "full":
        contrib = 2 * P * P * d * d
    elif model.param == "shared":
        contrib = 2 * d * d + 2 * P * P * d
    else:
        contrib = 2 * P * d * d + P * P * d
    if V > max(d, 2):
        return float(contrib)
    return float(contrib + 2 * P * P * (V if V > 2 else 2) * d)


def phenom_work(cfg, model, trainable: int, total_params: int) -> tuple[Work, Work]:
    """(one member's training step, one member's full evaluation) of a FitConfig."""
    K, tr = cfg.data.K, cfg.train
    P = model.N - 1
    F = phenom_features(model)
    M = K if tr.mode == "expected" else tr.batch
    gathered = 2**model.w > max(model.d, 2)
    gemms = (6 if gathered else 4) * M * F * P
    step_flops = gemms + 12 * M * P + 3 * phenom_table_flops(model) + 12 * trainable
    # rows are read as bits (uint8); the table and its gradient pass once per block of rows
    rows_per_block = max(128, min(2048, (1 << 18) // max(F, 1)))
    blocks = math.ceil(M / rows_per_block)
    table = F32 * F * P
    step_bytes = M * model.N + blocks * 2 * table + F32 * 10 * total_params
    step = Work(step_flops, step_bytes, 2 * blocks + 30)
    chunk = min(tr.eval_chunk, K)
    n_chunks = math.ceil(K / chunk)
    ev = Work(
        2 * K * F * P + 12 * K * P + phenom_table_flops(model),
        K * model.N + n_chunks * table + 2 * F32 * K * P,
        n_chunks * 4 + 10,
    )
    return step, ev
