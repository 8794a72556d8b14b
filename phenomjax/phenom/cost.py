"""What a phenomenological run or sweep group costs (docs/design.md §6), in plan's words: exact
parameter counts, analytic FLOPs and traffic, and the peak memory part by part.

M rows per step (K in expected mode, the batch in stochastic mode), N-1 = P predicted positions,
features of width F (the model as stated: P for w = 1, P 2^w for the one-hot windows, P d for
gathered embeddings). Each variant (phenom/variants) gives its F, its FLOPs per row and of its
table; for the model as stated:

    step = 4 M F P (+ 2 M F P when embeddings are gathered) + 12 M P    two GEMMs + the loss
         + 6 (table build and its VJP, independent of M) + 12 * trainable parameters
    evaluation of all K = 2 K F P + 12 K P

FLOPs are cross-checked against XLA's `cost_analysis()` in tests/plan/test_plan.py. A sweep group
of `members` vmapped members does `members` times one member's work.
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
from . import model as phenom
from .kernels import block_rows
from .modes import freeze_untrained


def shapes(cfg, model: phenom.PhenomModel) -> tuple[Any, Any, int]:
    """(params, optimizer state, trainable parameter count) from the real init, as shapes."""

    def init():
        params = phenom.init_params(jax.random.key(0), model)
        tx = freeze_untrained(make_optimizer(cfg.optimizer, cfg.train.steps), params, model)
        return params, tx.init(params)

    params, opt = jax.eval_shape(init)
    mask = phenom.trainable_mask(params, model)
    trainable = sum(tree_size(v) for k, v in params.items() if mask[k])
    return params, opt, trainable


def features(model: phenom.PhenomModel) -> int:
    """F: the width of the per-row features of the model's variant."""
    return phenom.variant_of(model).features_width(model)


def table_flops(model: phenom.PhenomModel) -> float:
    """FLOPs of building the variant's logit table (independent of the rows)."""
    return phenom.variant_of(model).table_flops(model)


def work(cfg, model: phenom.PhenomModel, trainable: int, total_params: int) -> tuple[Work, Work]:
    """(one member's training step, one member's full evaluation)."""
    K, tr = cfg.data.K, cfg.train
    P = model.N - 1
    F = features(model)
    M = K if tr.mode == "expected" else tr.batch
    v = phenom.variant_of(model)
    step_flops = M * v.row_flops(model, True) + 12 * M * P + 3 * table_flops(model) + 12 * trainable
    # rows are read as bits (uint8); the table and its gradient pass once per block of rows
    blocks = math.ceil(M / block_rows(F, M))
    table = F32 * v.table_floats(model)
    step_bytes = M * model.N + blocks * 2 * table + F32 * 10 * total_params
    step = Work(step_flops, step_bytes, 2 * blocks + 30)
    chunk = min(tr.eval_chunk, K)
    n_chunks = math.ceil(K / chunk)
    ev = Work(
        K * v.row_flops(model, False) + 12 * K * P + table_flops(model),
        K * model.N + n_chunks * table + 2 * F32 * K * P,
        n_chunks * 4 + 10,
    )
    return step, ev


def parts(
    cfg, model: phenom.PhenomModel, param_bytes: int, opt_bytes: int, members: int = 1,
    seeds: int = 1,
) -> list[Part]:  # fmt: skip
    """Peak memory of one phenomenological run (members = 1) or of one sweep group of `members`
    vmapped members over `seeds` seeds (each seed has its own bits)."""
    K, L, tr = cfg.data.K, cfg.data.L, cfg.train
    P, F = model.N - 1, features(model)
    M = K if tr.mode == "expected" else tr.batch
    rows = block_rows(F, M)
    chunk = min(tr.eval_chunk, K)
    per_seed = max(1, members // max(seeds, 1))
    width = ("model.w", "model.d", "data.L")
    sweep = ("sweep members",) if members > 1 else ()
    out = [
        Part("parameters", members * param_bytes, width + sweep),
        Part("optimizer state", members * opt_bytes, width + ("optimizer.name",) + sweep),
        Part("gradients", members * param_bytes, width + sweep),
        # the (F, P) table and its gradient, and one block of features, logits and their grads
        Part(
            "logit tables and their gradients",
            members * 2 * F32 * phenom.variant_of(model).table_floats(model),
            width + sweep,
        ),
        Part(
            "one block of rows (features, logits)",
            members * F32 * rows * (F + 4 * P),
            width + sweep,
        ),  # fmt: skip
        # evaluation: a lax.map over seeds bounds it to one seed's members at a time
        Part(
            "evaluation chunk activations",
            per_seed * F32 * chunk * (F + 3 * P),
            ("train.eval_chunk",) + width,
        ),  # fmt: skip
        Part("per-sequence results (device, host)", 4 * F32 * members * K, ("data.K",) + sweep),
        *bits_parts(K, L, copies=seeds, device_itemsize=1),
        # a sweep logs its best member's loss per step (one float), and writes no train rows
        *loop_parts(chunk_length(tr.max_chunk, tr.steps), tr.steps, train_rows=members == 1),
    ]
    if tr.mode == "stochastic":
        out.append(Part("presentation counts", members * F32 * K, ("data.K",) + sweep))
    if members > 1:  # one evaluation's curve rows, built as a DataFrame per (group, eval)
        out.append(Part("curve rows of one evaluation", 40.0 * members * K, ("data.K",) + sweep,
                        "host"))  # fmt: skip
        return out
    evals = tr.num_evals + 1
    out.append(Part("evaluation rows (all evaluations)", 36.0 * K * evals,
                    ("data.K", "train.num_evals"), "host"))  # fmt: skip
    if wants_positions(tr.per_position, K, L):
        out.append(
            Part(
                "per-position tables and rows",
                2 * F32 * K * P + 2 * 30.0 * K * P * evals,
                ("data.K", "data.L", "train.num_evals", "train.per_position"),
                "host",
            )
        )
    return out


def memory(cfg, model: phenom.PhenomModel, members: int = 1, seeds: int = 1) -> list[Part]:
    """The peak-memory parts of one run or sweep group of `model`, shapes from the real init:
    what train_phenom and sweep check (plan.memory.check_fits) before they allocate."""
    params, opt, _ = shapes(cfg, model)
    return parts(cfg, model, tree_bytes(params), tree_bytes(opt), members, seeds)


def cost(
    cfg,
    model: phenom.PhenomModel,
    *,
    members: int = 1,
    seeds: int = 1,
    probe: Callable[[], Probe] | None = None,
) -> Cost:
    """The Cost of one phenomenological run, or of one sweep group (members > 1) of `model`."""
    params, opt, trainable = shapes(cfg, model)
    step, evaluation = work(cfg, model, trainable, tree_size(params))
    sweep = members > 1
    return Cost(
        kind="sweep" if sweep else "phenom",
        what=f"phenomenological sweep group of {members} members"
        if sweep
        else "phenomenological training",
        params=tree_size(params),
        trainable=trainable,
        step=step,
        evaluation=evaluation,
        parts=tuple(parts(cfg, model, tree_bytes(params), tree_bytes(opt), members, seeds)),
        members=members,
        seeds=seeds,
        probe=probe,
    )
