"""The bfloat16 compute mode: matmuls in bf16, float32 master parameters, float32 loss; close to
the float32 model; a tiny bf16 run learns and says bfloat16 in its manifest."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from phenomjax.config import load_config
from phenomjax.configs import packaged
from phenomjax.data import make_bits, zipf_weights
from phenomjax.errors import ConfigError
from phenomjax.transformer import model as gpt
from phenomjax.transformer.model import GPTConfig
from phenomjax.transformer.train import TrainConfig, draws, init_state, make_step, train

L = 10
loss = jax.jit(gpt.loss_fn, static_argnames="cfg")
loss_grad = jax.jit(jax.value_and_grad(gpt.loss_fn), static_argnames="cfg")


def _setup(positions: str, dtype: str):
    cfg = GPTConfig(n_layer=2, n_head=2, head_dim=4, positions=positions, compute_dtype=dtype)
    params = gpt.init_params(jax.random.key(0), cfg, L)
    # larger weights than the init, so the logits (and the loss) depend on them clearly
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    noisy = [a + 0.3 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys, strict=True)]
    params = tree.unflatten(noisy)
    tokens = jax.random.bernoulli(jax.random.key(2), 0.5, (4, L)).astype(jnp.int32)
    return cfg, params, tokens


def _dots(fn, *args) -> list[str]:
    """The dot_general lines of fn's jaxpr (scan bodies and custom-VJP rules included)."""
    return [ln for ln in str(jax.make_jaxpr(fn)(*args)).splitlines() if "dot_general[" in ln]


@pytest.mark.parametrize(  # rope behind slow: the learned-position case checks the same casts
    "positions", ["learned", pytest.param("rope", marks=pytest.mark.slow)]
)
def test_bf16_loss_and_gradients_close_to_float32(positions):
    cfg32, params, tokens = _setup(positions, "float32")
    cfg16 = dataclasses.replace(cfg32, compute_dtype="bfloat16")
    l32, g32 = loss_grad(params, tokens, cfg32)
    l16, g16 = loss_grad(params, tokens, cfg16)
    assert l16.dtype == jnp.float32 and abs(float(l16) - float(l32)) < 3e-2 * float(l32)
    lg32 = jax.jit(gpt.forward, static_argnames="cfg")(params, tokens, cfg32)
    lg16 = jax.jit(gpt.forward, static_argnames="cfg")(params, tokens, cfg16)
    assert lg16.dtype == jnp.float32
    np.testing.assert_allclose(lg16, lg32, atol=3e-2 * float(jnp.abs(lg32).max()))
    # gradients reach the float32 parameters in float32, pointing where float32's point
    for a, b in zip(jax.tree_util.tree_leaves(g16), jax.tree_util.tree_leaves(g32), strict=True):
        assert a.dtype == jnp.float32
        assert float(jnp.linalg.norm(a - b)) <= 0.1 * float(jnp.linalg.norm(b)) + 1e-6


def test_bf16_matmuls_run_in_bf16_and_float32_has_no_bf16():
    cfg32, params, tokens = _setup("rope", "float32")
    cfg16 = dataclasses.replace(cfg32, compute_dtype="bfloat16")
    dots = _dots(lambda p, t: jax.grad(gpt.loss_fn)(p, t, cfg16), params, tokens)
    # the scanned block's six products and the head's, each forward and twice backward
    assert len(dots) == 3 * (6 + 1)
    assert all(":bf16[" in ln for ln in dots), [ln for ln in dots if ":bf16[" not in ln]
    text32 = str(jax.make_jaxpr(lambda p, t: jax.grad(gpt.loss_fn)(p, t, cfg32))(params, tokens))
    assert "bf16" not in text32  # the default path is the float32 program, cast-free


def test_custom_vjp_matmul_in_bf16_against_numpy():
    k = jax.random.split(jax.random.key(3), 3)
    x = jax.random.normal(k[0], (3, 5, 8)).astype(jnp.bfloat16)
    w = jax.random.normal(k[1], (8, 6)).astype(jnp.bfloat16)
    g = jax.random.normal(k[2], (3, 5, 6)).astype(jnp.bfloat16)
    y, vjp = jax.vjp(gpt.matmul, x, w)
    dx, dw = vjp(g)
    assert y.dtype == dx.dtype == dw.dtype == jnp.bfloat16
    xn, wn, gn = (np.asarray(a, np.float64) for a in (x, w, g))
    for got, ref in ((y, xn @ wn), (dx, gn @ wn.T), (dw, xn.reshape(-1, 8).T @ gn.reshape(-1, 6))):
        scale = np.abs(ref).max()
        np.testing.assert_allclose(np.asarray(got, np.float64), ref, atol=1e-2 * scale)


def test_bf16_training_step_keeps_float32_parameters():
    cfg = load_config(TrainConfig, packaged("tiny"), ['model.compute_dtype="bfloat16"'])
    state = init_state(cfg)
    bits = jnp.asarray(make_bits(cfg.data.seed, cfg.data.K, cfg.data.L), jnp.int32)
    new, step_loss = jax.jit(make_step(cfg))(state, bits, *draws(cfg))
    assert step_loss.dtype == jnp.float32
    old, now = jax.tree_util.tree_leaves(state["params"]), jax.tree_util.tree_leaves(new["params"])
    assert all(a.dtype == b.dtype == jnp.float32 for a, b in zip(old, now, strict=True))
    moved = [float(jnp.abs(a - b).max()) for a, b in zip(old, now, strict=True)]
    assert max(moved) > 0  # the step updated the master copy
    for leaf in jax.tree_util.tree_leaves(new["opt_state"]):
        assert not jnp.issubdtype(leaf.dtype, jnp.floating) or leaf.dtype == jnp.float32


def test_tiny_bf16_run_learns_and_records_its_dtype(tmp_path):
    cfg = load_config(TrainConfig, packaged("tiny"), ['model.compute_dtype="bfloat16"'])
    run = train(cfg, tmp_path / "bf16", progress=False)
    m = run.manifest()
    assert m["status"] == "complete"
    assert m["compute_dtype"] == "bfloat16" == m["config"]["model"]["compute_dtype"]
    # the Zipf-weighted loss (what training minimises; float32 goes 0.682 -> 0.578 here) falls
    ev = run.read_evals().sort_values(["step", "rank"])
    p = zipf_weights(cfg.data.K, cfg.data.alpha)
    weighted = {s: float(p @ d["loss"].to_numpy()) for s, d in ev.groupby("step")}
    first, last = weighted[0], weighted[cfg.train.steps]
    assert last < first - 0.05, weighted


def test_bad_compute_dtype_is_a_config_error():
    with pytest.raises(ConfigError, match="model.compute_dtype"):
        load_config(TrainConfig, packaged("tiny"), ['model.compute_dtype="float16"'])
    with pytest.raises(ConfigError, match="compute_dtype"):
        GPTConfig(compute_dtype="fp8").validate()  # type: ignore[arg-type]
