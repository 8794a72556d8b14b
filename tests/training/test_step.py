"""phenomjax.training.step: the state layout, the optimizer update, and the jitted advance
against a Python loop of the same step (exact), its NaN tail, its guard and its reduction."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phenomjax.training import apply_optimizer, make_advance, new_state


def _quadratic_step(tx):
    """One optimizer step on 0.5 |w - target|^2 (a closed-form loss with a NumPy reference)."""

    def step(state, target):
        loss, grads = jax.value_and_grad(lambda p: 0.5 * jnp.sum((p["w"] - target) ** 2))(
            state["params"]
        )
        params, opt_state = apply_optimizer(tx, grads, state)
        return {**state, "params": params, "opt_state": opt_state, "step": state["step"] + 1}, loss

    return step


def test_new_state_is_the_one_layout():
    tx = optax.adam(1e-2)
    params = {"w": jnp.ones(3)}
    s = new_state(params, tx)
    assert set(s) == {"params", "opt_state", "step"} and s["step"].dtype == jnp.int32
    counted = new_state(params, tx, counts=5)
    assert counted["counts"].shape == (5,) and counted["counts"].dtype == jnp.int32
    assert int(counted["counts"].sum()) == 0 and int(counted["step"]) == 0


def test_apply_optimizer_is_plain_sgd_for_sgd():
    tx = optax.sgd(0.1)
    state = new_state({"w": jnp.asarray([1.0, -2.0])}, tx)
    params, _ = apply_optimizer(tx, {"w": jnp.asarray([0.5, 0.5])}, state)
    np.testing.assert_allclose(np.asarray(params["w"]), [1.0 - 0.05, -2.0 - 0.05], rtol=1e-7)


@settings(max_examples=8, deadline=None)
@given(chunks=st.lists(st.integers(1, 6), min_size=1, max_size=5))
def test_advance_in_chunks_equals_the_numpy_loop(chunks):
    """Gradient descent on the quadratic: w_{t+1} = w_t - lr (w_t - target), loss 0.5|w - t|^2,
    as NumPy computes it step by step; any chunking gives the same losses and parameters."""
    lr, target = 0.1, np.asarray([0.5, -1.0, 2.0], np.float32)
    tx = optax.sgd(lr)
    advance = make_advance(_quadratic_step(tx), 6)
    state = new_state({"w": jnp.zeros(3)}, tx)
    losses = []
    for n in chunks:
        state, buf = advance(state, jnp.int32(n), jnp.asarray(target))
        buf = np.asarray(buf)
        assert np.isnan(buf[n:]).all()  # entries past n stay NaN
        losses.append(buf[:n])
    w, ref = np.zeros(3, np.float32), []
    for _ in range(sum(chunks)):
        ref.append(0.5 * float(np.sum((w - target) ** 2)))
        w = w - np.float32(lr) * (w - target)
    np.testing.assert_allclose(np.concatenate(losses), ref, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(state["params"]["w"]), w, rtol=1e-5)
    assert int(state["step"]) == sum(chunks)


def test_advance_refuses_more_steps_than_its_buffer():
    tx = optax.sgd(0.1)
    advance = make_advance(_quadratic_step(tx), 4)
    state = new_state({"w": jnp.zeros(2)}, tx)
    with pytest.raises(ValueError, match="5 steps in one dispatch; its buffer holds 4"):
        advance(state, 5, jnp.zeros(2))


def test_loss_of_reduces_each_step_and_donation_keeps_the_numbers():
    """A vmapped step logs one number per step (here the best member); donating the state's
    buffers changes nothing in the result."""
    tx = optax.sgd(0.1)
    step = jax.vmap(_quadratic_step(tx))  # member i pulls toward targets[i]
    targets = jnp.asarray([[1.0], [3.0]])
    state = jax.vmap(lambda w: new_state({"w": w}, tx))(jnp.zeros((2, 1)))
    kept = make_advance(step, 3, loss_of=jnp.nanmin)(state, jnp.int32(3), targets)
    donated = make_advance(step, 3, loss_of=jnp.nanmin, donate=True)(
        jax.tree.map(jnp.copy, state), jnp.int32(3), targets
    )
    for a, b in zip(jax.tree.leaves(kept), jax.tree.leaves(donated), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    w = 0.0
    for i in range(3):  # member 0 (target 1) has the smaller loss at every step
        assert float(kept[1][i]) == pytest.approx(0.5 * (w - 1.0) ** 2, rel=1e-6)
        w = w - 0.1 * (w - 1.0)
