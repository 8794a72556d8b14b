"""The GPT-style decoder of docs/design.md §3, in pure JAX over a params pytree.

References: Radford et al. 2019 (GPT-2: pre-LayerNorm blocks, final LayerNorm); Karpathy's
nanoGPT `model.py` (layout, init scales); Su et al. 2021 (RoFormer: rotary positions).

The vocabulary is {0, 1} and the head is 2-way. The blocks' weights are stacked along a
leading layer axis, so the forward pass can `lax.scan` over layers: XLA then compiles one block
instead of n_layer copies (faster compiles, and 1.2-1.4x faster steps on CPU at 4 layers).

    params = init_params(jax.random.key(0), cfg, L)
    logits_BxLx2 = forward(params, tokens_BxL, cfg)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import jax
import jax.numpy as jnp

from ..errors import ConfigError

Params = dict[str, Any]
VOCAB = 2  # bits
COMPUTE_DTYPES = ("float32", "bfloat16")
# the matmul weights and biases: cast to the compute dtype (embeddings and LayerNorms are not)
_CAST = frozenset(f"{n}_{s}" for n in ("qkv", "proj", "fc", "fc2", "head") for s in "wb")


@dataclasses.dataclass(frozen=True)
class GPTConfig:
    n_layer: int = 2  # transformer blocks
    n_head: int = 2  # attention heads per block; width = n_head * head_dim
    head_dim: int = 16  # features per head (the paper runs use 8)
    positions: Literal["learned", "rope"] = "learned"  # learned-absolute table or rotary (RoPE)
    bias: bool = True  # biases in linear layers and LayerNorms (False: weights only)
    rope_base: float = 10000.0  # RoPE frequency base (positions = "rope" only)
    init_std: float = 0.02  # std of the normal init; residual projections get /sqrt(2 n_layer)
    scan_layers: bool = True  # lax.scan over the stacked blocks (False: unrolled Python loop)
    # matmuls, attention and MLP activations in this dtype; parameters, optimizer state, the
    # residual stream, LayerNorm statistics, the softmax and the loss stay float32
    compute_dtype: Literal["float32", "bfloat16"] = "float32"

    @property
    def width(self) -> int:
        return self.n_head * self.head_dim

    def validate(self) -> None:
        for f in ("n_layer", "n_head", "head_dim"):
            if getattr(self, f) < 1:
                raise ConfigError(f"{f}: expected an integer >= 1, got {getattr(self, f)}")
        if self.positions == "rope" and self.head_dim % 2:
            raise ConfigError(f"head_dim: RoPE needs an even head_dim, got {self.head_dim}")
        if not self.init_std > 0:
            raise ConfigError(f"init_std: expected > 0, got {self.init_std}")
        if not self.rope_base > 1:
            raise ConfigError(f"rope_base: expected > 1, got {self.rope_base}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ConfigError(
                f"compute_dtype: expected one of {COMPUTE_DTYPES}, got {self.compute_dtype!r}"
            )


def init_params(key: jax.Array, cfg: GPTConfig, L: int) -> Params:
    """Normal(0, init_std) weights, zero biases, unit LayerNorm gains (nanoGPT's init)."""
    D, NL = cfg.width, cfg.n_layer
    k = jax.random.split(key, 7)
    std, res_std = cfg.init_std, cfg.init_std / math.sqrt(2 * NL)

    def normal(key, shape, s):
        return s * jax.random.normal(key, shape, jnp.float32)

    blocks = {
        "ln1_g": jnp.ones((NL, D)),
        "qkv_w": normal(k[0], (NL, D, 3 * D), std),
        "proj_w": normal(k[1], (NL, D, D), res_std),
        "ln2_g": jnp.ones((NL, D)),
        "fc_w": normal(k[2], (NL, D, 4 * D), std),
        "fc2_w": normal(k[3], (NL, 4 * D, D), res_std),
    }
    params: Params = {"wte": normal(k[4], (VOCAB, D), std), "blocks": blocks}
    params["lnf_g"] = jnp.ones((D,))
    params["head_w"] = normal(k[5], (D, VOCAB), std)
    if cfg.positions == "learned":
        params["wpe"] = normal(k[6], (L, D), std)
    if cfg.bias:
        for name, n in (("ln1_b", D), ("qkv_b", 3 * D), ("proj_b", D)):
            blocks[name] = jnp.zeros((NL, n))
        for name, n in (("ln2_b", D), ("fc_b", 4 * D), ("fc2_b", D)):
            blocks[name] = jnp.zeros((NL, n))
        params["lnf_b"] = jnp.zeros((D,))
        params["head_b"] = jnp.zeros((VOCAB,))
    return params


def n_params(params: Params) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))


def layer_norm(x: jax.Array, g: jax.Array, b: jax.Array | None, eps: float = 1e-5) -> jax.Array:
    """LayerNorm with its statistics in float32 (bf16's 8-bit mantissa loses the variance)."""
    dtype, x = x.dtype, x.astype(jnp.float32)
    mu = x.mean(-1, keepdims=True)
    var = jnp.square(x - mu).mean(-1, keepdims=True)
    y = (x - mu) * jax.lax.rsqrt(var + eps) * _lead(g, x.ndim)
    return (y if b is None else y + _lead(b, x.ndim)).astype(dtype)


def _lead(v: jax.Array, ndim: int) -> jax.Array:
    """v with leading unit axes up to ndim (explicit broadcasting: rank promotion is refused)."""
    return v.reshape((1,) * (ndim - v.ndim) + v.shape)


def rope_tables(L: int, head_dim: int, base: float) -> tuple[jax.Array, jax.Array]:
    """cos and sin, each (L, head_dim/2): angle = position * base^(-2i/head_dim)."""
    inv = base ** (-jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
    ang = jnp.arange(L, dtype=jnp.float32)[:, None] * inv[None, :]
    return jnp.cos(ang), jnp.sin(ang)


def apply_rope(x_BxLxHxE: jax.Array, cos_LxF: jax.Array, sin_LxF: jax.Array) -> jax.Array:
    """Rotate feature pairs (i, i + E/2) by position-dependent angles (the rotate-half form).

    The dot product of a rotated query at m and a rotated key at n depends on m - n only.
    """
    F = x_BxLxHxE.shape[-1] // 2
    x1, x2 = x_BxLxHxE[..., :F], x_BxLxHxE[..., F:]
    c, s = cos_LxF[None, :, None, :], sin_LxF[None, :, None, :]
    return jnp.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)


@jax.custom_vjp
def matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """x @ w, with a hand-written backward for XLA's CPU backend.

    Autodiff's weight gradient contracts x and dy over their leading (token) axis; XLA CPU
    fuses that with x's producer (LayerNorm, GELU) into a slow loop. Materialising x^T
    behind an optimization barrier gives it a plain GEMM (~15% per step at 9 layers). A
    second barrier on x itself keeps the transpose from recomputing x's producer (a GELU) in
    transposed order: 1.7-2.2x per step at width 16-32 with K ~ 100-250 full batch, the same
    bits (scripts/bench_step.py).
    """
    return x @ w


def _matmul_fwd(x, w):
    return x @ w, (x, w)


def _matmul_bwd(res, g):
    x, w = res
    x = jax.lax.optimization_barrier(x)
    xt = jax.lax.optimization_barrier(x.reshape(-1, x.shape[-1]).T)
    return g @ w.T, xt @ g.reshape(-1, g.shape[-1])


matmul.defvjp(_matmul_fwd, _matmul_bwd)


def _linear(x: jax.Array, w: jax.Array, b: jax.Array | None) -> jax.Array:
    """x @ w + b in w's dtype (the compute dtype): x is cast to it first."""
    y = matmul(x.astype(w.dtype), w)
    return y if b is None else y + _lead(b, y.ndim)


def attention(p: Params, x_BxLxD: jax.Array, cfg: GPTConfig, rope) -> jax.Array:
    """Causal multi-head self-attention; softmax in float32 over keys n <= m.

    q, k, v and both attention products are in the compute dtype (qkv_w's); the scores are cast
    up to float32 before scaling, masking and the softmax, the weights back down for att @ v.
    """
    B, L, D = x_BxLxD.shape
    H, E = cfg.n_head, cfg.head_dim
    qkv = _linear(x_BxLxD, p["qkv_w"], p.get("qkv_b")).reshape(B, L, 3, H, E)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    if rope is not None:  # the float32 tables would promote q and k: back to v's dtype
        q, k = apply_rope(q, *rope).astype(v.dtype), apply_rope(k, *rope).astype(v.dtype)
    scores_BxHxLxL = jnp.einsum("bmhe,bnhe->bhmn", q, k).astype(jnp.float32) / math.sqrt(E)
    causal = jnp.tril(jnp.ones((L, L), dtype=bool))[None, None]
    scores_BxHxLxL = jnp.where(causal, scores_BxHxLxL, jnp.finfo(scores_BxHxLxL.dtype).min)
    att = jax.nn.softmax(scores_BxHxLxL, axis=-1).astype(v.dtype)
    y = jnp.einsum("bhmn,bnhe->bmhe", att, v).reshape(B, L, D)
    return _linear(y, p["proj_w"], p.get("proj_b"))


def block(p: Params, x_BxLxD: jax.Array, cfg: GPTConfig, rope) -> jax.Array:
    """Pre-LN block: x + attn(LN(x)), then x + MLP(LN(x)) with a 4x tanh-GELU MLP.

    The branches run in the compute dtype; their outputs join the float32 residual stream.
    """
    dtype = x_BxLxD.dtype
    a = attention(p, layer_norm(x_BxLxD, p["ln1_g"], p.get("ln1_b")), cfg, rope)
    x = x_BxLxD + a.astype(dtype)
    h = jax.nn.gelu(_linear(layer_norm(x, p["ln2_g"], p.get("ln2_b")), p["fc_w"], p.get("fc_b")))
    return x + _linear(h, p["fc2_w"], p.get("fc2_b")).astype(dtype)


def compute_params(params: Params, cfg: GPTConfig) -> Params:
    """The matmul weights and biases cast to cfg.compute_dtype (a view inside jit); the float32
    parameters stay the optimizer's master copy, and autodiff casts their gradients back up."""
    if cfg.compute_dtype == "float32":
        return params
    dtype = jnp.dtype(cfg.compute_dtype)

    def cast(path, a):
        return a.astype(dtype) if path[-1].key in _CAST else a

    return jax.tree_util.tree_map_with_path(cast, params)


def forward(params: Params, tokens_BxL: jax.Array, cfg: GPTConfig) -> jax.Array:
    """Logits (B, L, 2) in float32: position m predicts token m + 1 from tokens 0..m.

    With cfg.compute_dtype = "bfloat16" the matmuls run in bf16 and the head's logits are cast up.
    """
    L = tokens_BxL.shape[1]
    params = compute_params(params, cfg)
    x = params["wte"][tokens_BxL]
    rope = None
    if cfg.positions == "learned":
        x = x + params["wpe"][:L][None]
    else:
        rope = rope_tables(L, cfg.head_dim, cfg.rope_base)
    blocks = params["blocks"]
    if cfg.scan_layers:
        x, _ = jax.lax.scan(lambda h, p: (block(p, h, cfg, rope), None), x, blocks)
    else:
        for i in range(cfg.n_layer):
            x = block(jax.tree_util.tree_map(lambda a, i=i: a[i], blocks), x, cfg, rope)
    x = layer_norm(x, params["lnf_g"], params.get("lnf_b"))
    return _linear(x, params["head_w"], params.get("head_b")).astype(jnp.float32)


logits = forward  # the name other modules may prefer


def position_losses(
    params: Params, tokens_BxL: jax.Array, cfg: GPTConfig
) -> tuple[jax.Array, jax.Array]:
    """Per-position next-token loss in nats and accuracy (argmax == target), each (B, L-1).

    Column j-1 scores the prediction of token j (positions 1..L-1).
    """
    lg = forward(params, tokens_BxL, cfg)[:, :-1].astype(jnp.float32)
    target = tokens_BxL[:, 1:]
    logp = jax.nn.log_softmax(lg, axis=-1)
    nll = -jnp.take_along_axis(logp, target[..., None], axis=-1)[..., 0]
    acc = (jnp.argmax(lg, axis=-1) == target).astype(jnp.float32)
    return nll, acc


def loss_fn(params: Params, tokens_BxL: jax.Array, cfg: GPTConfig) -> jax.Array:
    """Mean next-token cross-entropy (nats) over the batch and positions 1..L-1."""
    return position_losses(params, tokens_BxL, cfg)[0].mean()
