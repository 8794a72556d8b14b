"""The M-sized work of the model (model.py): features @ table over blocks of rows, fused with
the loss and its gradient.

value_and_grad of the loss is two GEMMs per block, z = F @ T and dT = F^T @ G, plus one
exp and one log1p per logit, accumulated in a lax.scan carry so that only one block of
features (block x F floats, a few MiB) is alive at a time. The custom VJP returns the
gradient computed in the same pass as the value instead of re-reading the rows.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

f32 = jnp.float32


def windows(bits: jax.Array, w: int) -> jax.Array:
    """Window value ending at each input bit i = 0..N-2: sum_k x[i-k] 2^k, zeros before 0."""
    x = bits[:, :-1].astype(jnp.int32)
    if w == 1:
        return x
    P = x.shape[1]
    xp = jnp.pad(x, ((0, 0), (w - 1, 0)))
    return sum(xp[:, w - 1 - k : w - 1 - k + P] << k for k in range(w))


def features(bits: jax.Array, w: int, E: jax.Array | None = None) -> jax.Array:
    """Per-row features whose product with the table gives the logits: (M, F) float32.

    E given (w > 1, 2^w > d): the embeddings xi_i = E[i, window_i], position-major, F = (N-1) d.
    Else w = 1: the input bits themselves (F = N-1; the x = 0 part sits in the constant), and
    w > 1: the one-hot window values, position-major (F = (N-1) 2^w).
    """
    if E is not None and E.size:
        P, V, d = E.shape
        idx = windows(bits, w) + (V * jnp.arange(P, dtype=jnp.int32))[None, :]
        return E.reshape(P * V, d)[idx].reshape(bits.shape[0], P * d)
    if w == 1:
        return bits[:, :-1].astype(f32)
    V = 2**w
    win = windows(bits, w)
    onehot = (win[:, :, None] == jnp.arange(V, dtype=jnp.int32)[None, None, :]).astype(f32)
    return onehot.reshape(bits.shape[0], -1)


def block_rows(F: int, M: int) -> int:
    """Rows per block: keep a block of features near 1 MiB (cache-sized), at most M."""
    rows = max(128, min(2048, (1 << 18) // max(F, 1)))
    return max(1, min(rows, M))


def _split(bits: jax.Array, weights: jax.Array, rows: int):
    """Pad M to whole blocks (padded rows get weight 0) and reshape to (blocks, rows, ...)."""
    M = bits.shape[0]
    nb = -(-M // rows)
    pad = nb * rows - M
    bits = jnp.pad(bits, ((0, pad), (0, 0)))
    weights = jnp.pad(weights.astype(f32), (0, pad))
    return bits.reshape(nb, rows, -1), weights.reshape(nb, rows)


def _bce_parts(z: jax.Array, y: jax.Array):
    """Stable BCE with logits and sigmoid from one exp: (bce, sigmoid)."""
    e = jnp.exp(-jnp.abs(z))
    bce = (jnp.maximum(z, 0.0) - y * z) + jnp.log1p(e)
    sig = jnp.where(z >= 0, 1.0, e) / (1.0 + e)
    return bce, sig


def _scan_blocks(body, init, bits, weights, rows):
    xs = _split(bits, weights, rows)
    if xs[0].shape[0] == 1:  # one block: no loop
        carry, out = body(init, (xs[0][0], xs[1][0]))
        return carry, jax.tree.map(lambda a: a[None], out)
    return jax.lax.scan(body, init, xs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def weighted_bce(T, c, E, bits, weights, w):
    """sum_m weights[m] * mean_n BCE(logit[m, n], bits[m, n+1]), logits = features @ T + c.

    E: the (N-1, 2^w, d) embedding for the gathered-embedding features, or an empty array.
    """
    P = c.shape[0]
    rows = block_rows(T.shape[0], bits.shape[0])

    def body(total, xs):
        xb, pb = xs
        bce, _ = _bce_parts(features(xb, w, E) @ T + c[None, :], xb[:, 1:].astype(f32))
        return total + pb @ bce.sum(axis=1) / P, None

    total, _ = _scan_blocks(body, jnp.zeros((), f32), bits, weights, rows)
    return total


def _fwd(T, c, E, bits, weights, w):
    M = bits.shape[0]
    P = c.shape[0]
    rows = block_rows(T.shape[0], M)
    gathered = E.size > 0

    def body(carry, xs):
        total, dT, dc, dE = carry
        xb, pb = xs
        F = features(xb, w, E)
        y = xb[:, 1:].astype(f32)
        bce, sig = _bce_parts(F @ T + c[None, :], y)
        seq = bce.sum(axis=1) / P
        G = (sig - y) * (pb / P)[:, None]  # d loss / d logits
        if gathered:  # scatter d features back onto the rows of E that were gathered
            Pn, V, d = E.shape
            idx = windows(xb, w) + (V * jnp.arange(Pn, dtype=jnp.int32))[None, :]
            dF = (G @ T.T).reshape(-1, d)
            dE = dE.reshape(Pn * V, d).at[idx.reshape(-1)].add(dF).reshape(E.shape)
        return (total + pb @ seq, dT + F.T @ G, dc + G.sum(axis=0), dE), seq

    init = (jnp.zeros((), f32), jnp.zeros_like(T), jnp.zeros_like(c), jnp.zeros_like(E))
    (total, dT, dc, dE), seq = _scan_blocks(body, init, bits, weights, rows)
    return total, (dT, dc, dE, seq.reshape(-1)[:M])


def _bwd(w, res, g):
    dT, dc, dE, seq = res
    return g * dT, g * dc, g * dE, None, g * seq


weighted_bce.defvjp(_fwd, _bwd)


def metrics(T, c, E, bits, w: int, per_position: bool, chunk: int):
    """Per-sequence loss and accuracy (and the (M, N-1) tables), chunked with lax.map."""
    M = bits.shape[0]
    rows = max(1, min(chunk, M))
    xb, _ = _split(bits, jnp.zeros((M,), f32), rows)

    return block_metrics(lambda x: features(x, w, E) @ T + c[None, :], xb, M, per_position)


def block_metrics(logits, xb, M: int, per_position: bool):
    """Loss and accuracy of every block of `xb` (lax.map over (blocks, rows, N) bits) from
    `logits(bits) -> (rows, N-1)`, the one metric pass of every variant's kernels."""

    def one(x):
        z = logits(x)
        y = x[:, 1:].astype(f32)
        bce, _ = _bce_parts(z, y)
        acc = ((z > 0) == (y > 0.5)).astype(f32)
        out = (bce.mean(axis=1), acc.mean(axis=1))
        return out + ((bce, acc) if per_position else ())

    outs = jax.lax.map(one, xb)
    return tuple(o.reshape((-1,) + o.shape[2:])[:M] for o in outs)
