"""optimizer.decay_all: weight decay on every leaf instead of the 2+-D mask (docs/design.md §3)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from phenomjax.config import from_dict
from phenomjax.optim import OptimConfig, make_optimizer, weight_decay_mask


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
