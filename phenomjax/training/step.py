"""The device side of every run: one state layout, one optimizer update, one jitted advance.

    state = new_state(params, tx, counts=K)              # params, opt_state, step[, counts]
    advance = make_advance(step, chunk, donate=True)     # step(state, *args) -> (state, loss)
    state, losses = advance(state, jnp.int32(n), *args)  # n <= chunk steps in one dispatch

`make_advance` is nanodo's shape: the optimizer step is one pure function, jitted once inside a
while loop whose trip count is traced, so one compilation serves every chunk length; the host
loop (loop.py) decides how far to go and reads the losses between dispatches.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

State = dict[str, Any]


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
    chunk: int,
    *,
    donate: bool = False,
    loss_of: Callable[[jax.Array], jax.Array] | None = None,
) -> Callable[..., tuple[State, jax.Array]]:
    """advance(state, n, *args), jitted -> (state after n steps, per-step losses (chunk,)).

    `step(state, *args) -> (state, loss)` is one optimizer step; `args` (the data) are jit
    arguments, never constants baked into the program. n <= chunk is traced (a while loop), so
    one compilation serves every chunk length; entries past n stay NaN. The loss buffer is
    `chunk` float32 on the device and again on the host when it is read, so `chunk` is the
    longest chunk the loop dispatches (Schedule.chunk), never more. `loss_of` reduces a step's
    loss to the logged scalar (a sweep logs its best member). donate=True lets XLA reuse the
    incoming state's buffers (the caller must not touch that state again).
    """
    reduce = loss_of or (lambda x: x)

    def advance(state: State, n: jax.Array, *args: Any) -> tuple[State, jax.Array]:
        def body(i, carry):
            s, buf = carry
            s, loss = step(s, *args)
            return s, buf.at[i].set(reduce(loss).astype(jnp.float32))

        buf = jnp.full((chunk,), jnp.nan, jnp.float32)
        return jax.lax.fori_loop(0, n, body, (state, buf))

    jitted = jax.jit(advance, donate_argnums=(0,) if donate else ())

    def checked(state: State, n: int | jax.Array, *args: Any) -> tuple[State, jax.Array]:
        # past the buffer a step's loss would be dropped unseen (and a NaN with it)
        if int(n) > chunk:
            raise ValueError(f"advance: {int(n)} steps in one dispatch; its buffer holds {chunk}")
        return jitted(state, n, *args)

    return checked


def seedless(cfg: Any) -> Any:
    """`cfg` with data.seed = 0: the key of a program compiled once for every seed of a config
    (a model's bits, draws and initial state are the program's arguments, never its constants)."""
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, seed=0))
