"""V2, diffusion of the shared readout between presentations (phenom/variants/diffusion.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from phenomjax.errors import ConfigError
from phenomjax.phenom import model as phenom
from phenomjax.phenom.modes import freeze_untrained
from phenomjax.phenom.variants import deflation


def test_the_floor_of_an_association_is_diffusion_squared_over_its_weight():
    """Orthogonal unit features, soft targets 1/2 (BCE = ln 2 + z^2 / 8 to second order), SGD at
    lr eta: b_k -> b_k (1 - a_k) + noise, a_k = eta p_k / 4, so the stationary excess loss of
    association k is sigma^2 / (8 a_k (2 - a_k)), about sigma^2 / (4 eta p_k): a floor that
    grows as 1 / p_k. Measured as the time average of the exact BCE, 64 associations, two
    weights, against that reference; the map G is not moved by the noise."""
    n, sigma, eta, steps, burn = 64, 0.01, 1.0, 8000, 1000
    p = np.where(np.arange(n) < n // 2, 0.8, 0.2) / (n // 2)
    model = phenom.PhenomModel(N=2, variant="v2", D_eff=n, diffusion=sigma)
    params = {"b": jnp.zeros(n, jnp.float32), "G": jnp.ones((1, 1, n), jnp.float32)}
    tx = freeze_untrained(optax.sgd(eta * n // 2), params, model)  # eta per unit of p's scale
    phi = jnp.eye(n, dtype=jnp.float32)[:, None, :]  # (m, P = 1, D)
    y, w = jnp.full((n, 1), 0.5, jnp.float32), jnp.asarray(p, jnp.float32)

    def step(carry, _):
        params, opt = carry
        _, g = deflation.readout_loss_and_grad(params["b"], phi, y, w)
        updates, opt = tx.update({"b": g, "G": jnp.zeros_like(params["G"])}, opt, params)
        params = optax.apply_updates(params, updates)
        z = phi[:, 0] @ params["b"]
        return (params, opt), jnp.logaddexp(0.0, z) - 0.5 * z - jnp.log(2.0)

    (final, _), excess = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
    measured = np.asarray(excess[burn:], np.float64).mean(axis=0)
    a = eta * p * (n // 2) / 4
    reference = sigma**2 / (8 * a * (2 - a))
    for group in (slice(0, n // 2), slice(n // 2, n)):
        np.testing.assert_allclose(measured[group].mean(), reference[group].mean(), rtol=0.08)
    # the prediction: the rare associations' floor is p_f / p_r = 4 times higher (to O(a))
    ratio = measured[n // 2 :].mean() / measured[: n // 2].mean()
    assert ratio == pytest.approx(4 * (2 - 0.2) / (2 - 0.05), rel=0.1)
    np.testing.assert_array_equal(np.asarray(final["G"]), np.ones((1, 1, n)))


def test_zero_diffusion_is_v1_number_for_number():
    v1 = phenom.PhenomModel(N=6, variant="v1", D_eff=7)
    v2 = phenom.PhenomModel(N=6, variant="v2", D_eff=7)
    assert phenom.post_update(v2) is None
    p1, p2 = (phenom.init_params(jax.random.key(3), m) for m in (v1, v2))
    bits = np.random.default_rng(0).integers(0, 2, (40, 6)).astype(np.uint8)
    w = np.full(40, 1 / 40, np.float32)
    (l1, g1), (l2, g2) = (phenom.kernels_of(m)[0](p, bits, w)
                          for m, p in ((v1, p1), (v2, p2)))  # fmt: skip
    assert float(l1) == float(l2)
    np.testing.assert_array_equal(np.asarray(g1["b"]), np.asarray(g2["b"]))


def test_its_knobs_are_v1s_and_its_own():
    phenom.PhenomModel(N=4, variant="v2", D_eff=9, diffusion=0.1).validate()
    with pytest.raises(ConfigError, match="model.diffusion: expected a finite number >= 0"):
        phenom.PhenomModel(N=4, variant="v2", diffusion=-1.0).validate()
    with pytest.raises(ConfigError, match="model.D_eff"):
        phenom.PhenomModel(N=4, variant="v2", D_eff=0).validate()
    with pytest.raises(ConfigError, match="model.diffusion: expected its default for variant"):
        phenom.PhenomModel(N=4, variant="v1", diffusion=0.1).validate()


def test_a_diffusion_sweep_member_equals_its_single_run(tmp_path):
    """The noise's optimizer state is swept like any other: a v2 member of a sweep over
    diffusion equals its single run, and its curve differs from V1's."""
    import dataclasses

    from phenomjax.phenom.sweep import read_sweep, sweep

    from .test_sweep import base, single

    cfg = base()
    axes = {"lr": [1e-2], "variant": ["v1", "v2"], "D_eff": [8], "diffusion": [0.0, 0.05]}
    table = sweep(cfg, axes, out=tmp_path / "sw", progress=False)
    assert table.variant.tolist() == ["v1", "v2", "v2"]
    _, curves = read_sweep(tmp_path / "sw", members=[2])
    model = dataclasses.replace(cfg.model, variant="v2", D_eff=8, diffusion=0.05)
    ref = single(dataclasses.replace(cfg, model=model), tmp_path, lr=1e-2, scale=0.1, seed=0,
                 name="ref")  # fmt: skip
    np.testing.assert_allclose(curves.loss, ref.loss, rtol=1e-5, atol=1e-6)
    _, v1 = read_sweep(tmp_path / "sw", members=[0])
    _, quiet = read_sweep(tmp_path / "sw", members=[1])
    np.testing.assert_array_equal(v1.loss, quiet.loss)
    assert not np.allclose(v1.loss, curves.loss)
