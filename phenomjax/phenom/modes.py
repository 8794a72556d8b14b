"""The two training modes (docs/design.md §6) as pure step functions.

Shared by `train_phenom` (one model) and `sweep` (the same step under vmap), so a sweep member
runs exactly the arithmetic of the single run.

- expected:   every step is the full p-weighted loss over all K sequences (the infinite-batch
              limit); after t steps with nominal batch B rank m has had t * B * p_m presentations.
- stochastic: every step draws B ranks from p with key fold_in(batches_key, step), the loss is the
              mean of the B per-sequence losses (repeats count twice), presentations are counted.

The state is the one layout of every run, {"params", "opt_state", "step", ["counts"]}
(phenomjax.training.new_state); "counts" (int32, (K,)) exists in stochastic mode only. The device
loop over these steps is phenomjax.training.make_advance. Every random draw is keyed by the
global step, so chunking and resume do not change the numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..data import count_presentations, sample_ranks, zipf_cdf
from ..training import apply_optimizer, new_state
from . import model as phenom

MODES = ("expected", "stochastic")
State = dict[str, Any]


class FitData(NamedTuple):
    """What the step reads besides the state; passed to jit as arguments (never baked in as
    constants, which would copy K x L bits into the compiled program)."""

    bits: jax.Array  # (K, L) uint8
    weights: jax.Array  # (K,) float32 Zipf weights p
    cdf: jax.Array  # (K,) float32 CDF of p, for searchsorted sampling
    batches_key: jax.Array  # typed key of the "batches" stream


def make_data(bits: np.ndarray, weights: np.ndarray, batches_key: jax.Array) -> FitData:
    return FitData(
        jnp.asarray(bits, jnp.uint8),
        jnp.asarray(weights, jnp.float32),
        zipf_cdf(weights),
        batches_key,
    )


def freeze_untrained(
    tx: optax.GradientTransformation, params: dict, model: phenom.PhenomModel
) -> optax.GradientTransformation:
    """`tx` on the trainable leaves, zero updates on the rest (the fixed embedding E); then the
    variant's post-update (readout_forget: the forgetting), if any.

    Zeroing the gradient is not enough: adamw's weight decay would still move E.
    """
    labels = {
        k: ("train" if m else "frozen") for k, m in phenom.trainable_mask(params, model).items()
    }
    frozen = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
    post = phenom.post_update(model)
    return optax.chain(frozen, post) if post is not None else frozen


def init_state(
    key: jax.Array,
    model: phenom.PhenomModel,
    tx: optax.GradientTransformation,
    *,
    mode: str,
    K: int,
    scale: Any = None,
) -> State:
    """Parameters from `key` (the "init" stream), optimizer state, step 0 and zero counts."""
    return state_of(phenom.init_params(key, model, scale=scale), tx, mode=mode, K=K)


def state_of(params, tx: optax.GradientTransformation, *, mode: str, K: int) -> State:
    """The training state of drawn `params`: optimizer state, step 0, and (stochastic mode
    only: expected mode presents every sequence p_k B times a step) zero counts."""
    return new_state(params, tx, counts=K if mode == "stochastic" else None)


def make_step(
    tx: optax.GradientTransformation, *, mode: str, batch: int, model=None
) -> Callable[[State, FitData], tuple[State, jax.Array]]:
    """One optimizer step: (state, data) -> (state, loss before the update), with the loss
    and gradient of `model`'s variant (default: the model as stated)."""
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {list(MODES)}, got {mode!r}")
    loss_and_grad = phenom.loss_and_grad if model is None else phenom.kernels_of(model)[0]

    def step(state: State, data: FitData) -> tuple[State, jax.Array]:
        params, t = state["params"], state["step"]
        new = dict(state)
        if mode == "stochastic":
            ranks = sample_ranks(jax.random.fold_in(data.batches_key, t), data.cdf, batch)
            uniform = jnp.full((batch,), 1.0 / batch, jnp.float32)
            loss, grads = loss_and_grad(params, data.bits[ranks], uniform)
            new["counts"] = count_presentations(state["counts"], ranks)
        else:
            loss, grads = loss_and_grad(params, data.bits, data.weights)
        new["params"], new["opt_state"] = apply_optimizer(tx, grads, state)
        new["step"] = t + 1
        return new, loss

    return step


def expected_presentations(step: int, batch: int, weights: np.ndarray) -> np.ndarray:
    """t * B * p_m (float64): the expected-mode presentations after `step` steps."""
    return float(step) * float(batch) * np.asarray(weights, np.float64)


def rounded_presentations(expected: np.ndarray) -> np.ndarray:
    """The int64 contract column for expected mode: floor(t * B * p_m + 0.5)."""
    return np.floor(np.asarray(expected, np.float64) + 0.5).astype(np.int64)
