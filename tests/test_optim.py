"""The optimizers (phenomjax/optim.py): weight decay only on tensors of 2+ dimensions per layer,
and optimizer.decay_all on every leaf instead (docs/design.md §3)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from phenomjax.config import from_dict
from phenomjax.optim import (
    OptimConfig,
    family,
    family_settings,
    make_family,
    make_injectable,
    make_optimizer,
    set_hyperparams,
    set_learning_rate,
    weight_decay_mask,
)
from phenomjax.transformer import model as gpt
from phenomjax.transformer.model import GPTConfig


@pytest.mark.parametrize("decay_all", [False, True])
def test_decay_all_decays_vectors_too(decay_all):
    """With a zero gradient adamw's update is -lr * wd * param on every decayed leaf (NumPy):
    the mask spares the vector (a bias or gain) unless decay_all is set."""
    cfg = OptimConfig(name="adamw", lr=0.1, weight_decay=0.5, decay_all=decay_all)
    params = {"bias": np.array([1.0, -2.0, 3.0]), "w": np.array([[1.0, 2.0], [-1.0, 0.5]])}
    jp = {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}
    tx = make_optimizer(cfg, 10, mask=weight_decay_mask)
    upd, _ = tx.update({k: jnp.zeros_like(v) for k, v in jp.items()}, tx.init(jp), jp)
    want_bias = -0.1 * 0.5 * params["bias"] if decay_all else np.zeros(3)
    np.testing.assert_allclose(np.asarray(upd["bias"]), want_bias, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(np.asarray(upd["w"]), -0.1 * 0.5 * params["w"], rtol=1e-6)


def test_decay_all_is_a_config_field_defaulting_to_the_mask():
    assert OptimConfig().decay_all is False
    assert from_dict(OptimConfig, {"decay_all": True}).decay_all is True


DECAYED = {"wte", "wpe", "head_w", "qkv_w", "proj_w", "fc_w", "fc2_w"}


def test_mask_against_the_transformer_tree():
    cfg = GPTConfig(n_layer=3, n_head=2, head_dim=4, positions="learned", bias=True)
    params = gpt.init_params(jax.random.key(0), cfg, 8)
    mask = weight_decay_mask(params)
    flat = {
        str(getattr(p[-1], "key", p[-1])): m
        for p, m in jax.tree_util.tree_flatten_with_path(mask)[0]
    }
    assert {k for k, m in flat.items() if m} == DECAYED
    # every LayerNorm gain and bias is spared, stacked over layers or not
    assert not any(flat[k] for k in flat if k.endswith(("_g", "_b")))


def test_masked_adamw_matches_a_numpy_step():
    params = {"w": jnp.ones((2, 3)), "b": jnp.ones((3,)), "blocks": {"g": jnp.ones((4, 3))}}
    grads = jax.tree_util.tree_map(jnp.zeros_like, params)
    cfg = OptimConfig(name="adamw", lr=0.1, weight_decay=0.5)
    tx = make_optimizer(cfg, 10, mask=weight_decay_mask)
    upd, _ = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, upd)
    # zero gradient: adam's step is 0, only the decoupled decay -lr * wd * p moves a leaf
    np.testing.assert_allclose(new["w"], np.full((2, 3), 1 - 0.1 * 0.5), rtol=1e-6)
    np.testing.assert_allclose(new["b"], np.ones(3), rtol=0)
    np.testing.assert_allclose(new["blocks"]["g"], np.ones((4, 3)), rtol=0)


def test_unmasked_adamw_decays_every_leaf():
    params = {"b": jnp.ones((3,))}
    tx = make_optimizer(OptimConfig(name="adamw", lr=0.1, weight_decay=0.5), 10)
    upd, _ = tx.update({"b": jnp.zeros(3)}, tx.init(params), params)
    np.testing.assert_allclose(optax.apply_updates(params, upd)["b"], np.full(3, 0.95), rtol=1e-6)


@pytest.mark.parametrize(
    ("name", "kw", "exact"),
    [("sgd", {}, True), ("momentum", {"b1": 0.8}, True), ("adam", {"b2": 0.99}, False),
     ("adamw", {"weight_decay": 0.3}, False)],
)  # fmt: skip
def test_a_family_member_runs_its_own_optimizer(name, kw, exact):
    """make_family with another member's settings set to this one's (set_hyperparams) takes
    the steps of the optimizer alone: bit for bit for sgd in the momentum family (a trace
    g + 0 m is g); to float32 rounding for adam in the adamw family (1 - b1 is computed in
    float32 from the state, not in float64 from a Python float)."""
    rng = np.random.default_rng(0)
    params = {"A": jnp.asarray(rng.normal(size=(5, 4)), jnp.float32),
              "B": jnp.asarray(rng.normal(size=(3,)), jnp.float32)}  # fmt: skip
    cfg = OptimConfig(name=name, lr=0.01, **kw)
    alone = make_injectable(cfg)
    other = {"adam": "adamw", "adamw": "adam", "sgd": "momentum", "momentum": "sgd"}[name]
    fam = make_family(OptimConfig(name=other, lr=0.5, b1=0.5, b2=0.5, weight_decay=1.0))
    assert family(name) == family(other)
    sa = set_learning_rate(alone.init(params), 0.02)
    sf = set_hyperparams(fam.init(params), learning_rate=0.02, **family_settings(cfg))

    def run(tx, s, p):
        for t in range(20):
            g = jax.tree.map(lambda x, t=t: jnp.sin(x * (t + 1)), p)
            u, s = tx.update(g, s, p)
            p = optax.apply_updates(p, u)
        return p

    a = jax.jit(lambda s, p: run(alone, s, p))(sa, params)
    f = jax.jit(lambda s, p: run(fam, s, p))(sf, params)
    for k in params:
        if exact:
            np.testing.assert_array_equal(a[k], f[k])
        else:
            np.testing.assert_allclose(a[k], f[k], rtol=1e-5, atol=1e-5)  # 5e-4 of a step
        assert not np.allclose(a[k], params[k])  # it moved
