"""The phenomenological model (docs/design.md §6): linear attention with a sigmoid readout.

For predicting bit n+1 (0-based) of sequence m from bits 0..n:

    xi_i   = E[i, window_i]                    (window of the last w bits ending at bit i)
    v_n    = sum_{i <= n} A[n, i] @ xi_i       (A[n, i] in R^{d x d})
    logit  = B . v_n                           P(x_{n+1} = 1 | prefix) = sigmoid(logit)

Cost (docs/design.md §6): a logit depends on the parameters only through B^T A[n, i] E[i, v]. So
each call
first builds a small table (cost N^2 d 2^w, independent of M; see `tables`), then the logits of all
M sequences are ONE (M x F) @ (F x N-1) product of per-row features with that table, and the
gradient is one more product (F^T @ dlogits), fused in one blocked pass (kernels.py).
The features are the cheapest exact ones: for w = 1 the bits themselves (F = N-1: the N x N
matrix of docs/design.md §6 plus a constant); for 2^w <= d the one-hot windows (F = (N-1) 2^w); for
2^w > d the gathered embeddings E[i, window_i] (F = (N-1) d). No (M, N, N, d) tensor is formed.

Parameterizations (inferred from the keys and shapes of `params`):
  full      {"A": (N-1, N-1, d, d), "B": (d,), "E": (N, 2^w, d)}   A[n, i] used only for i <= n
  shared    {"a": (N-1, N-1), "W": (d, d), "B", "E"}               A[n, i] = a[n, i] W
  relative  {"A": (N-1, d, d), "B", "E"}                           A[n, i] = A[n - i]
Variant knobs (both off by default, which is the model as stated):
- readout_scale > 0: B starts at readout_scale * N(0, 1) instead of init_scale. With a small B
  the bilinear product B^T A keeps every logit on a plateau whose length is counted in steps, so
  a frequent rank spends many presentations there (rank 0 gets ~9 per step at the demo's Zipf 1,
  batch 64) and rarer ranks look faster per presentation; a unit B removes that plateau.
- forget > 0: after every optimizer step the
A-like tensor (A, or a when shared) shrinks by the factor 1 - forget, whatever the learning rate,
so the logit table B^T A E fades by that factor per step. A rank seen every 1/(B p) steps loses
about forget / (B p) of what it learned between two presentations, so rarer ranks need more
presentations to reach the same loss (the transformer's lag); see `forgetting`.
Window values: bit i is the least significant bit, bit i-1 the next, ...; bits before the start
of the sequence count as 0. E[N-1] (the last bit) never feeds a prediction and stays unused.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..errors import ConfigError
from . import kernels as K

PARAMS = ("full", "shared", "relative")
EMBEDDINGS = ("random", "learned", "spin")


@dataclasses.dataclass(frozen=True)
class PhenomModel:
    N: int  # bits per sequence (= L); bits 1..N-1 are predicted
    d: int = 8  # width of the embedding and of each A[n, i]; spin forces 1
    w: int = 1  # window: bits per embedded token (2^w rows of E per position); spin forces 1
    param: str = "full"  # "full" (one A per (n, i)), "shared" (a[n, i] W), "relative" (A[n - i])
    embedding: str = "random"  # "random" (fixed Gaussian/sqrt(d)), "learned", "spin" (xi = 2x - 1)
    init_scale: float = 0.1  # std of the initial A (or a, W) and B entries; sets the plateau length
    forget: float = 0.0  # per-step shrink of A (or a) toward 0, lr-free; 0 = the stated model
    readout_scale: float = 0.0  # std of the initial B; 0 = init_scale (the stated model)

    def __post_init__(self) -> None:
        if self.embedding == "spin":  # spin is defined only for single bits in one dimension
            object.__setattr__(self, "d", 1)
            object.__setattr__(self, "w", 1)

    def validate(self, where: str = "model") -> None:
        """Raise a ConfigError naming the field when a value is out of range."""

        def bad(field: str, expected: str) -> ConfigError:
            value = getattr(self, field)
            return ConfigError(f"{where}.{field}: expected {expected}, got {value!r}")

        def is_int(v) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        if not is_int(self.N) or self.N < 2:
            raise bad("N", "an integer >= 2")
        if not is_int(self.d) or self.d < 1:
            raise bad("d", "an integer >= 1")
        if not is_int(self.w) or not 1 <= self.w <= 12:
            raise bad("w", "an integer in [1, 12] (E has 2^w rows per position)")
        if self.param not in PARAMS:
            raise bad("param", f"one of {list(PARAMS)}")
        if self.embedding not in EMBEDDINGS:
            raise bad("embedding", f"one of {list(EMBEDDINGS)}")
        if not (isinstance(self.init_scale, (int, float)) and math.isfinite(self.init_scale)):
            raise bad("init_scale", "a finite number > 0")
        if self.init_scale <= 0:
            raise bad("init_scale", "a finite number > 0")
        r = self.readout_scale
        if not (isinstance(r, (int, float)) and not isinstance(r, bool) and 0 <= r < math.inf):
            raise bad("readout_scale", "a finite number >= 0 (0: init_scale)")
        f = self.forget
        if not (isinstance(f, (int, float)) and not isinstance(f, bool) and 0 <= f < 1):
            raise bad("forget", "a number in [0, 1)")


def init_params(key: jax.Array, model: PhenomModel, scale: float | None = None) -> dict:
    """Initial parameters: A-like tensors and B ~ scale * N(0, 1) (B ~ model.readout_scale *
    N(0, 1) when that is > 0), E per the embedding.

    `scale` (default model.init_scale) may be a traced scalar, so sweeps can vmap over it.
    """
    model.validate()
    s = model.init_scale if scale is None else scale
    N, d, V = model.N, model.d, 2**model.w
    kA, kB, kE, kW = jax.random.split(key, 4)
    f32 = jnp.float32
    sB = model.readout_scale if model.readout_scale > 0 else s
    params = {"B": sB * jax.random.normal(kB, (d,), f32)}
    if model.param == "full":
        params["A"] = s * jax.random.normal(kA, (N - 1, N - 1, d, d), f32)
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


def trainable_mask(params: dict, model: PhenomModel) -> dict:
    """True for leaves the optimizer updates; E only when the embedding is learned."""
    return {k: (k != "E" or model.embedding == "learned") for k in params}


def forgetting(model: PhenomModel) -> optax.GradientTransformation:
    """Chained after the optimizer: adds -forget * A (or a) to the update, so a step maps A to
    (1 - forget) A + update. Not scaled by the learning rate (unlike adamw's decay, whose
    lr * wd is the same shrink for Adam at a constant rate, but which SGD lacks); B and E keep."""

    def mask(params: dict) -> dict:
        return {k: k in ("A", "a") for k in params}

    if model.forget == 0:
        return optax.identity()
    return optax.add_decayed_weights(-float(model.forget), mask=mask)


def window_bits(params: dict) -> int:
    """w inferred from E's 2^w rows per position."""
    V = params["E"].shape[1]
    w = int(V).bit_length() - 1
    if 2**w != V:
        raise ConfigError(f"params.E: expected 2^w rows per position, got {V}")
    return w


def contributions(params: dict) -> jax.Array:
    """C[n, i] = B^T A[n, i], masked to i <= n: (N-1, N-1, d). Cheap (no M)."""
    B = params["B"]
    if "a" in params:  # shared: B^T a W = a (B^T W)
        C = params["a"][:, :, None] * (B @ params["W"])[None, None, :]
    elif params["A"].ndim == 3:  # relative: B . A[k] for every lag k, then gather by n - i
        r = (params["A"] * B[None, :, None]).sum(axis=1)
        P = r.shape[0]
        lag = jnp.maximum(jnp.arange(P)[:, None] - jnp.arange(P)[None, :], 0)
        C = r[lag]
    else:  # full: B . A[n, i] for all (n, i) as one streaming multiply-reduce over A (read
        # once, no transposed copy); its gradient B (x) dC is one fused broadcast write.
        C = (params["A"] * B[None, None, :, None]).sum(axis=2)
    P = C.shape[0]
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
