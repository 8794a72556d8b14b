"""The model as stated (docs/design.md §6): linear attention with a sigmoid readout.

For predicting bit n+1 (0-based) of sequence m from bits 0..n:

    xi_i   = E[i, window_i]                    (window of the last w bits ending at bit i)
    v_n    = sum_{i <= n} A[n, i] @ xi_i       (A[n, i] in R^{d x d})
    logit  = B . v_n                           P(x_{n+1} = 1 | prefix) = sigmoid(logit)

Cost (docs/design.md §6): a logit depends on the parameters only through B^T A[n, i] E[i, v]. So
each call first builds a small table (cost N^2 d 2^w, independent of M; see `tables`), then the
logits of all M sequences are ONE (M x F) @ (F x N-1) product of per-row features with that
table, and the gradient is one more product (F^T @ dlogits), fused in one blocked pass
(kernels.py). The features are the cheapest exact ones: for w = 1 the bits themselves (F = N-1:
the N x N matrix of docs/design.md §6 plus a constant); for 2^w <= d the one-hot windows
(F = (N-1) 2^w); for 2^w > d the gathered embeddings E[i, window_i] (F = (N-1) d). No
(M, N, N, d) tensor is formed.

Parameterizations (the model's `param`; the kernels read it from the keys and shapes):
  full      {"A": (N(N-1)/2, d, d), "B": (d,), "E": (N, 2^w, d)}  A[n, i], i <= n, packed
  shared    {"a": (N-1, N-1), "W": (d, d), "B", "E"}               A[n, i] = a[n, i] W
  relative  {"A": (N-1, d, d), "B", "E"}                           A[n, i] = A[n - i]
"full" stores only the causal blocks, row by row (A[0, 0], A[1, 0], A[1, 1], A[2, 0], ...:
`pack`, `unpack`): the blocks above the diagonal never feed a logit, and storing them would
double what the optimizer, the divergence guard and the table's gradient read every step.
Window values: bit i is the least significant bit, bit i-1 the next, ...; bits before the start
of the sequence count as 0. E[N-1] (the last bit) never feeds a prediction and stays unused.

Its hooks as a variant, and its cost: phenom/variants/stated.py.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ConfigError
from . import kernels as K


def init_params(key: jax.Array, model, scale: float | None = None, b_scale=None) -> dict:
    """Initial parameters: A-like tensors and B ~ scale * N(0, 1) (B ~ b_scale * N(0, 1) when
    given: the readout_forget variant), E per the embedding.

    `scale` (default model.init_scale) may be a traced scalar, so sweeps can vmap over it.
    """
    s = model.init_scale if scale is None else scale
    N, d, V = model.N, model.d, 2**model.w
    kA, kB, kE, kW = jax.random.split(key, 4)
    f32 = jnp.float32
    sB = s if b_scale is None else b_scale
    params = {"B": sB * jax.random.normal(kB, (d,), f32)}
    if model.param == "full":  # the causal blocks of the (N-1, N-1, d, d) draw
        params["A"] = pack(s * jax.random.normal(kA, (N - 1, N - 1, d, d), f32))
    elif model.param == "shared":
        params["a"] = s * jax.random.normal(kA, (N - 1, N - 1), f32)
        params["W"] = s * jax.random.normal(kW, (d, d), f32)
    else:
        params["A"] = s * jax.random.normal(kA, (N - 1, d, d), f32)
    if model.embedding == "spin":
        params["E"] = jnp.broadcast_to(jnp.array([[-1.0], [1.0]], f32), (N, 2, 1))
    else:
        params["E"] = jax.random.normal(kE, (N, V, d), f32) / jnp.sqrt(jnp.asarray(d, f32))
    return params


def packed_size(P: int) -> int:
    """Blocks A[n, i] with i <= n < P: the first axis of a packed "full" A."""
    return P * (P + 1) // 2


def pack(A: jax.Array) -> jax.Array:
    """(P, P, ...) -> (P(P+1)/2, ...): the entries [n, i] with i <= n, row by row."""
    n, i = np.tril_indices(A.shape[0])
    return A[n, i]


def unpack(packed: jax.Array, P: int) -> jax.Array:
    """(P(P+1)/2, ...) -> (P, P, ...), zero above the diagonal: the inverse of `pack`."""
    n, i = np.tril_indices(P)
    where = np.full((P, P), len(n), np.int32)  # above the diagonal: the appended zero row
    where[n, i] = np.arange(len(n))
    zero = jnp.zeros((1,) + packed.shape[1:], packed.dtype)
    return jnp.concatenate([packed, zero])[where]


def is_packed(params: dict) -> bool:
    """True for the packed "full" A (its first axis P(P+1)/2, against "relative"'s P; at
    P = 1 the two agree entry for entry, and this says relative)."""
    P = params["E"].shape[0] - 1
    return "A" in params and params["A"].shape[0] == packed_size(P) != P


def window_bits(params: dict) -> int:
    """w inferred from E's 2^w rows per position."""
    V = params["E"].shape[1]
    w = int(V).bit_length() - 1
    if 2**w != V:
        raise ConfigError(f"params.E: expected 2^w rows per position, got {V}")
    return w


def contributions(params: dict) -> jax.Array:
    """C[n, i] = B^T A[n, i], masked to i <= n: (N-1, N-1, d). Cheap (no M)."""
    B, P = params["B"], params["E"].shape[0] - 1
    if is_packed(params):  # full: one matrix-vector product over the causal blocks (einsum
        # lowers it to a GEMV: 4.5x a broadcast multiply-reduce over the square A, with grads)
        return unpack(jnp.einsum("kab,a->kb", params["A"], B), P)
    if "a" in params:  # shared: B^T a W = a (B^T W)
        C = params["a"][:, :, None] * (B @ params["W"])[None, None, :]
    elif params["A"].ndim == 3 and params["A"].shape[0] == P:  # relative: B . A[k] per lag k,
        r = (params["A"] * B[None, :, None]).sum(axis=1)  # then gathered by n - i
        lag = jnp.maximum(jnp.arange(P)[:, None] - jnp.arange(P)[None, :], 0)
        C = r[lag]
    else:
        raise ConfigError(
            f"params.A: expected shape ({packed_size(P)}, d, d) (full, packed) or "
            f"({P}, d, d) (relative), got {tuple(params['A'].shape)}"
        )
    causal = jnp.tril(jnp.ones((P, P), C.dtype))
    return C * causal[:, :, None]


def effective_table(params: dict) -> jax.Array:
    """U[n, i, v] = B^T A[n, i] E[i, v] (zero for i > n): (N-1, N-1, 2^w).

    A broadcast multiply-reduce rather than an einsum: as a dot it is N-1 tiny batched
    products, which XLA's CPU backend runs one by one (and 16x more of them under vmap).
    """
    C = contributions(params)
    P = C.shape[0]
    return (C[:, :, None, :] * params["E"][None, :P]).sum(axis=-1)


def tables(params: dict) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(T, c, E_g): logits = features(bits, w, E_g) @ T + c, the cheapest exact route.

    w = 1: T is the (N-1, N-1) matrix of docs/design.md §6 on the raw bits, c the x = 0 part.
    2 < 2^w <= d: T holds U for the one-hot windows, ((N-1) 2^w, N-1).
    2^w > d: T holds C = B^T A for the gathered embeddings E_g = E[:N-1], ((N-1) d, N-1).
    E_g is an empty array except in the last case.
    """
    E = params["E"]
    V, d = E.shape[1], E.shape[2]
    if V > max(d, 2):  # gathering d floats per position beats a 2^w one-hot
        C = contributions(params)
        P = C.shape[0]
        return C.transpose(1, 2, 0).reshape(P * d, P), jnp.zeros((P,), C.dtype), E[:P]
    if V == 2:  # w = 1: logit = sum_i U[n, i, 0] + x_i (U[n, i, 1] - U[n, i, 0])
        C = contributions(params)
        P = C.shape[0]
        dE = E[:P, 1] - E[:P, 0]
        T = (C * dE[None]).sum(axis=-1).T
        return T, (C * E[None, :P, 0]).sum(axis=(1, 2)), jnp.zeros((0,), C.dtype)
    U = effective_table(params)
    P = U.shape[0]
    return U.transpose(1, 2, 0).reshape(P * V, P), jnp.zeros((P,), U.dtype), jnp.zeros((0,))


def logits(params: dict, bits: jax.Array) -> jax.Array:
    """Logits of P(x_{n+1} = 1 | x_0..x_n), (M, N-1) float32. For large M use sequence_metrics."""
    T, c, E = tables(params)
    return K.features(jnp.asarray(bits), window_bits(params), E) @ T + c[None, :]


def loss(params: dict, bits: jax.Array, weights: jax.Array) -> jax.Array:
    """sum_m p_m * mean_n BCE(sigmoid(logit[m, n]), x[m, n+1]), in nats (log-sigmoid form).

    Differentiable through a fused custom VJP (one blocked pass yields value and gradient);
    reverse mode only (jax.grad / value_and_grad, not jax.jvp). The gradient with respect to
    `weights` is the per-sequence loss.
    """
    T, c, E = tables(params)
    return K.weighted_bce(T, c, E, jnp.asarray(bits), jnp.asarray(weights), window_bits(params))


def loss_and_grad(params: dict, bits: jax.Array, weights: jax.Array) -> tuple[jax.Array, dict]:
    """(loss, grads): two blocked GEMMs over M, then the small tables' VJP back to params.

    >>> import jax, numpy as np
    >>> from phenomjax.phenom.model import PhenomModel
    >>> model = PhenomModel(N=8, d=4, w=2)
    >>> params = init_params(jax.random.key(0), model)
    >>> bits = np.random.default_rng(0).integers(0, 2, (100, 8))
    >>> value, grads = loss_and_grad(params, bits, np.full(100, 0.01, np.float32))
    >>> grads["A"].shape, logits(params, bits).shape
    ((7, 7, 4, 4), (100, 7))
    """
    return jax.value_and_grad(loss)(params, bits, weights)


@functools.partial(jax.jit, static_argnames=("per_position", "chunk"))
def sequence_metrics(params: dict, bits: jax.Array, *, per_position: bool = False, chunk=4096):
    """Per-sequence (loss (M,), accuracy (M,)) over the N-1 predicted positions; with
    per_position also the (M, N-1) tables. Chunked over M, so K = 100000 needs little memory."""
    T, c, E = tables(params)
    return K.metrics(T, c, E, jnp.asarray(bits), window_bits(params), per_position, chunk)
