"""V1, deflation in a finite shared readout (phenomjax/phenom/variants/deflation.py)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from phenomjax.errors import ConfigError
from phenomjax.phenom import model as phenom
from phenomjax.phenom.variants import deflation


def _numpy_loss_grad(b, G, bits, w):
    """The reference: features, logits, weighted mean BCE and d/db, in float64."""
    s = 2.0 * bits[:, :-1].astype(np.float64) - 1.0
    phi = np.tanh(np.einsum("mi,nid->mnd", s, G))
    z = phi @ b
    y = bits[:, 1:].astype(np.float64)
    bce = np.logaddexp(0.0, z) - y * z
    P = z.shape[1]
    sig = 1.0 / (1.0 + np.exp(-z))
    grad = np.einsum("mn,mnd->d", (sig - y) * w[:, None] / P, phi)
    return z, w @ bce.mean(axis=1), grad, bce.mean(axis=1), ((z > 0) == (y > 0.5)).mean(axis=1)


def test_logits_loss_grad_and_metrics_match_numpy():
    model = phenom.PhenomModel(N=7, variant="v1", D_eff=5, init_scale=0.8)
    params = phenom.init_params(jax.random.key(1), model)
    bits = np.random.default_rng(0).integers(0, 2, (300, 7)).astype(np.uint8)
    w = np.random.default_rng(1).dirichlet(np.ones(300)).astype(np.float32)
    b, G = (np.asarray(params[k], np.float64) for k in ("b", "G"))
    assert np.all(G[np.triu_indices(6, 1)] == 0)  # causal: no feature sees a later bit
    z, loss, grad, seq, acc = _numpy_loss_grad(b, G, bits, w.astype(np.float64))
    np.testing.assert_allclose(deflation.logits(params, bits), z, rtol=1e-5, atol=1e-5)
    value, grads = phenom.kernels_of(model)[0](params, bits, w)
    np.testing.assert_allclose(value, loss, rtol=1e-5)
    np.testing.assert_allclose(grads["b"], grad, rtol=1e-4, atol=1e-6)
    assert not np.any(grads["G"])  # the map is fixed
    got = deflation.sequence_metrics(params, bits, chunk=64)
    np.testing.assert_allclose(got[0], seq, rtol=1e-5)
    np.testing.assert_allclose(got[1], acc, atol=1e-6)  # a mean of 0/1 in float32


@pytest.mark.parametrize("rho", [0.0, 0.6, 0.9])
def test_two_associations_slow_rate_is_p_r_times_one_minus_rho_squared(rho):
    """Two associations with features of correlation rho, weights p_f >> p_r, soft targets near
    1/2 (the small-signal regime: sigmoid is linear there). Under GD the residual's slow mode
    decays at eta/4 * lambda_slow per step, lambda_slow the small eigenvalue of P^1/2 Gram P^1/2
    (the NumPy reference), which is about p_r (1 - rho^2): the Schur complement of the Gram."""
    p = np.array([0.95, 0.05])
    f = np.array([[1.0, 0.0], [rho, np.sqrt(1 - rho**2)]])  # unit features, f1 . f2 = rho
    y = np.array([0.5 + 0.01, 0.5 - 0.01])
    z_star = np.log(y / (1 - y))
    eta, steps = 4.0, 120
    phi = jnp.asarray(f[:, None, :], jnp.float32)  # (m = 2, P = 1, D = 2)
    yj, wj = jnp.asarray(y[:, None], jnp.float32), jnp.asarray(p, jnp.float32)

    def step(b, _):
        _, g = deflation.readout_loss_and_grad(b, phi, yj, wj)
        b = b - eta * g
        return b, (phi[:, 0] @ b)

    _, z = jax.lax.scan(step, jnp.zeros(2, jnp.float32), None, length=steps)
    e = np.linalg.norm(np.asarray(z, np.float64) - z_star, axis=1)
    t1, t2 = 20, 100  # the fast mode (rate ~ p_f) is gone by t1; float32 still resolves t2
    measured = np.log(e[t1] / e[t2]) / (t2 - t1)
    gram = f @ f.T
    lam = np.linalg.eigvalsh(np.sqrt(p)[:, None] * gram * np.sqrt(p)[None, :])[0]
    reference = -np.log(1 - eta / 4 * lam)
    np.testing.assert_allclose(measured, reference, rtol=0.03)
    # the prediction: p_r (1 - rho^2), to O(p_r / p_f)
    np.testing.assert_allclose(lam, p[1] * (1 - rho**2), rtol=0.06)


def test_knobs_of_another_variant_are_refused():
    with pytest.raises(ConfigError, match="model.D_eff: expected its default for variant 'stated'"):
        phenom.PhenomModel(N=4, D_eff=8).validate()
    with pytest.raises(ConfigError, match="model.forget"):
        phenom.PhenomModel(N=4, variant="v1", forget=0.1).validate()
    with pytest.raises(ConfigError, match="model.D_eff"):
        phenom.PhenomModel(N=4, variant="v1", D_eff=0).validate()
    with pytest.raises(ConfigError, match="model.variant"):
        phenom.PhenomModel(N=4, variant="nope").validate()
    m = phenom.PhenomModel(N=4, variant="v1", D_eff=3)
    assert dataclasses.replace(m, D_eff=4).variant == "v1"
