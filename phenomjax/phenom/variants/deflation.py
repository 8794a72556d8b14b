"""V1, deflation in a finite shared readout (issue 18): a capacity knob D_eff.

Mechanism. Every prefix goes through one fixed random map into D_eff features shared by all
positions and sequences, and only the D_eff-dimensional readout b is learned:

    s_i      = 2 x_i - 1                                    (the spins of the prefix)
    u_{m,n}  = sum_{i <= n} G[n, i] s_i,   G ~ N(0, 1 / (n + 1)), fixed   (D_eff features)
    logit    = b . tanh(u_{m,n})           P(x_{n+1} = 1 | prefix) = sigmoid(logit)

So the model is a logistic model on D_eff fixed random features and can store about D_eff
independent associations (a (rank, position) target each; there are K (L - 1)). Under gradient
descent the readout's Hessian is the p-weighted Gram of the features: frequent associations
take its directions first, and a rarer association k can then move only in the part of feature
space orthogonal to them, so its rate per presentation is scaled by the Schur complement of the
Gram over the more frequent ones, s_k ~ 1 - m_k / D_eff (m_k: associations more frequent than
k). Two associations with feature correlation rho and weights p_f >> p_r: the slow mode's rate
is p_r (1 - rho^2) (tests/phenom/test_deflation.py measures it).

Prediction. A pure rescaling of time per rank, so the lag is the same factor at every level; it
vanishes when D_eff is much larger than K (L - 1), grows with L and alpha at fixed D_eff, hardly
depends on batch or a small learning rate, and is similar for SGD and Adam; it stays when the
tail is replaced by one constant sequence of the same mass (data.head_and_constant_tail), where
cross-talk from the unlearned tail (V3) says it vanishes.

The model's w, d, param and embedding do not enter; init_scale is the std of the initial b.
Rows are processed in blocks (kernels.block_rows of the D_eff (N-1) features), and the loss and
its gradient come from one pass, so no M x (N-1) x D_eff array exists. JAX is imported inside
the hooks: the registry and the knobs are read without it (the fit report among others).
"""

from __future__ import annotations

import dataclasses

import numpy as np


def can_memorize(member) -> bool:
    """Its capacity is D_eff features whatever the window: it memorizes (fitting's flag)."""
    return member.D_eff >= 1


@dataclasses.dataclass(frozen=True)
class Knobs:
    D_eff: int = 64  # features of the one shared readout: about as many associations fit

    def check(self, bad) -> None:
        """`bad(field, expected)` names the field of an out-of-range value."""
        D = self.D_eff
        if not isinstance(D, (int, np.integer)) or isinstance(D, bool) or not 1 <= D <= 1 << 16:
            raise bad("D_eff", "an integer in [1, 65536]")


def init(key, model, scale=None) -> dict:
    """b ~ scale * N(0, 1) (learned); G the fixed map, causal, with std 1 / sqrt(n + 1)."""
    import jax
    import jax.numpy as jnp

    f32 = jnp.float32
    s = model.init_scale if scale is None else scale
    P, D = model.N - 1, model.D_eff
    kb, kG = jax.random.split(key)
    causal = jnp.tril(jnp.ones((P, P), f32)) / jnp.sqrt(jnp.arange(1, P + 1, dtype=f32))[:, None]
    G = jax.random.normal(kG, (P, P, D), f32) * causal[:, :, None]
    return {"b": s * jax.random.normal(kb, (D,), f32), "G": G}


def trainable_mask(params: dict, model) -> dict:
    """Only the readout learns; the map G is fixed."""
    return {k: k == "b" for k in params}


def post_update(model):
    """Nothing after the optimizer's update."""
    return None


def features(G, bits):
    """tanh(u): (M, N-1, D_eff) for the rows given (call it on one block of rows)."""
    import jax.numpy as jnp

    s = 2.0 * bits[:, :-1].astype(jnp.float32) - 1.0
    return jnp.tanh(jnp.einsum("mi,nid->mnd", s, G))


def logits(params: dict, bits):
    """(M, N-1) logits; for large M use sequence_metrics (blocked)."""
    import jax.numpy as jnp

    return features(params["G"], jnp.asarray(bits)) @ params["b"]


def readout_loss_and_grad(b, phi, y, weights):
    """sum_m weights[m] mean_n BCE(phi[m, n] . b, y[m, n]) and its gradient in b, for features
    phi (m, P, D) and targets y (m, P) in [0, 1] (a soft target is a mixture's share of 1s)."""
    import jax.numpy as jnp

    from ..kernels import _bce_parts

    P = phi.shape[1]
    bce, sig = _bce_parts(phi @ b, y)
    r = (sig - y) * (weights / P)[:, None]  # d loss / d logits
    return weights @ bce.sum(axis=1) / P, jnp.einsum("mn,mnd->d", r, phi)


def loss_and_grad(params: dict, bits, weights) -> tuple:
    """sum_m p_m mean_n BCE(logit, x_{n+1}) in nats and its gradient (b only; G's is 0), one
    blocked pass: per block, the features, the logits and F^T (sigmoid - y) accumulated."""
    import jax.numpy as jnp

    from ..kernels import _scan_blocks, block_rows

    f32 = jnp.float32
    G, b = params["G"], params["b"]
    bits, weights = jnp.asarray(bits), jnp.asarray(weights)
    P, D = G.shape[0], G.shape[2]

    def body(carry, xs):
        xb, pb = xs
        value, grad = readout_loss_and_grad(b, features(G, xb), xb[:, 1:].astype(f32), pb)
        return (carry[0] + value, carry[1] + grad), None

    init = (jnp.zeros((), f32), jnp.zeros_like(b))
    rows = block_rows(P * D, bits.shape[0])
    (total, db), _ = _scan_blocks(body, init, bits, weights, rows)
    return total, {"b": db, "G": jnp.zeros_like(G)}


def sequence_metrics(params: dict, bits, *, per_position: bool = False, chunk: int = 4096):
    """Per-sequence (loss (M,), accuracy (M,)), with per_position also the (M, N-1) tables;
    blocked over M like the stated model's (kernels.metrics). The callers jit it."""
    import jax.numpy as jnp

    from ..kernels import _split, block_metrics, block_rows

    f32 = jnp.float32
    bits = jnp.asarray(bits)
    M, P, D = bits.shape[0], params["G"].shape[0], params["G"].shape[2]
    rows = max(1, min(chunk, block_rows(P * D, M)))
    xb, _ = _split(bits, jnp.zeros((M,), f32), rows)

    return block_metrics(lambda x: features(params["G"], x) @ params["b"], xb, M, per_position)


# -- its cost (phenom/cost.py asks these) -------------------------------------------------------


def features_width(model) -> int:
    """F: features per row, (N-1) D_eff."""
    return (model.N - 1) * model.D_eff


def table_flops(model) -> float:
    """No table: the map is fixed and the readout is applied per row."""
    return 0.0


def row_flops(model, train: bool) -> float:
    """Per row: the map (2 P^2 D, causal zeros included), tanh, the logits (2 P D) and, in
    training, the readout's gradient (2 P D)."""
    P, D = model.N - 1, model.D_eff
    return float(2 * P * P * D + P * D + (4 if train else 2) * P * D)


def table_floats(model) -> int:
    """No logit table."""
    return 0
