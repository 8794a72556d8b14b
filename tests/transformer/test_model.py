"""The GPT model: causality, RoPE's relative property, and reference forwards (NumPy always,
PyTorch when importable) compared with a tolerance."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from phenomjax.config import from_dict
from phenomjax.errors import ConfigError
from phenomjax.transformer import model as gpt
from phenomjax.transformer.model import GPTConfig

L = 10
# jitted once per config: op-by-op (eager) dispatch compiles every primitive and is slow
fwd = jax.jit(gpt.forward, static_argnames="cfg")
init = jax.jit(gpt.init_params, static_argnums=(1, 2))


@jax.jit
def _perturb(params, key):
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    noisy = [a + 0.1 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys, strict=True)]
    return jax.tree_util.tree_unflatten(tree, noisy)


def _setup(positions="learned", bias=True, n_layer=2, seed=0):
    cfg = GPTConfig(n_layer=n_layer, n_head=2, head_dim=4, positions=positions, bias=bias)
    # Non-trivial LayerNorm gains/biases so the references check them too.
    params = _perturb(init(jax.random.key(seed), cfg, L), jax.random.key(seed + 1))
    tokens = jax.random.bernoulli(jax.random.key(seed + 2), 0.5, (3, L)).astype(jnp.int32)
    return cfg, params, tokens


@pytest.mark.parametrize("positions", ["learned", "rope"])
def test_causality(positions):
    cfg, params, tokens = _setup(positions)
    base = fwd(params, tokens, cfg)
    for t in (1, 4, L - 1):
        flipped = tokens.at[:, t:].set(1 - tokens[:, t:])
        out = fwd(params, flipped, cfg)
        np.testing.assert_allclose(out[:, :t], base[:, :t], rtol=1e-6, atol=1e-6)
        assert not np.allclose(out[:, t:], base[:, t:])  # later logits do see the change


def test_rope_relative_property():
    E, Lr = 8, 24
    cos, sin = gpt.rope_tables(Lr, E, 10000.0)
    q = jax.random.normal(jax.random.key(0), (E,))
    k = jax.random.normal(jax.random.key(1), (E,))
    # the same vector at every position, rotated per position: (1, Lr, 1, E)
    qr = gpt.apply_rope(jnp.broadcast_to(q, (1, Lr, 1, E)), cos, sin)[0, :, 0]
    kr = gpt.apply_rope(jnp.broadcast_to(k, (1, Lr, 1, E)), cos, sin)[0, :, 0]
    scores = np.asarray(qr @ kr.T)  # scores[m, n] = <R_m q, R_n k>
    for d in (0, 3, 7):
        diag = np.diagonal(scores, offset=-d)  # m - n = d
        np.testing.assert_allclose(diag, diag[0], rtol=1e-4, atol=1e-4)
    # rotation preserves norms, and position 0 is the identity
    np.testing.assert_allclose(np.linalg.norm(qr, axis=1), np.linalg.norm(q), rtol=1e-5)
    np.testing.assert_allclose(qr[0], q, rtol=1e-6)


def _roformer(x, m, base):
    """RoPE as the RoFormer paper defines it (Su et al. 2021, eq. 34), for x (..., d) at
    position m: each consecutive pair (x_2i, x_2i+1) rotated by m * theta_i,
    theta_i = base^(-2i/d). Written from the paper, not from gpt.py."""
    x = np.asarray(x, np.float64)
    d = x.shape[-1]
    out = np.empty_like(x)
    for i in range(d // 2):
        th = m * base ** (-2.0 * i / d)
        a, b = x[..., 2 * i], x[..., 2 * i + 1]
        out[..., 2 * i] = a * np.cos(th) - b * np.sin(th)
        out[..., 2 * i + 1] = a * np.sin(th) + b * np.cos(th)
    return out


def _pairs(E):
    """gpt.py pairs feature i with i + E/2 (the half-split, GPT-NeoX layout) where the paper
    pairs 2i with 2i + 1: the same rotation in coordinates permuted by P = [0, E/2, 1, E/2 + 1,
    ...], i.e. apply_rope(x)[..., P] == _roformer(x[..., P]). P and its inverse."""
    P = np.stack([np.arange(E // 2), np.arange(E // 2, E)], axis=1).reshape(-1)
    return P, np.argsort(P)


def test_rope_is_the_roformer_rotation_up_to_a_fixed_permutation():
    E, Lr, base = 8, 16, 10000.0
    P, _ = _pairs(E)
    cos, sin = gpt.rope_tables(Lr, E, base)
    x = jax.random.normal(jax.random.key(3), (1, Lr, 2, E))
    got = np.asarray(gpt.apply_rope(x, cos, sin), np.float64)
    for m in range(Lr):
        want = _roformer(np.asarray(x[0, m])[..., P], m, base)
        np.testing.assert_allclose(got[0, m][..., P], want, rtol=1e-5, atol=1e-5)
    # attention scores q_m . k_n of the model's rotation equal the paper's (a dot product is
    # unchanged by permuting both vectors alike) and depend on m - n only
    q, k = (jax.random.normal(jax.random.key(s), (E,)) for s in (4, 5))
    qr = np.asarray(gpt.apply_rope(jnp.broadcast_to(q, (1, Lr, 1, E)), cos, sin)[0, :, 0])
    kr = np.asarray(gpt.apply_rope(jnp.broadcast_to(k, (1, Lr, 1, E)), cos, sin)[0, :, 0])
    model = qr.astype(np.float64) @ kr.T.astype(np.float64)
    qp, kp = np.asarray(q, np.float64)[P], np.asarray(k, np.float64)[P]
    paper = np.array([[_roformer(qp, m, base) @ _roformer(kp, n, base) for n in range(Lr)]
                      for m in range(Lr)])  # fmt: skip
    np.testing.assert_allclose(model, paper, rtol=1e-4, atol=1e-4)
    for t in (1, 5, 11):  # shifting both positions by t leaves every score unchanged
        np.testing.assert_allclose(paper[t:, t:], paper[:-t, :-t], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(model[t:, t:], model[:-t, :-t], rtol=1e-4, atol=1e-4)
    assert not np.allclose(paper[0, 0], paper[0, 1])  # and does depend on m - n


def _np_forward(params, tokens, cfg):
    """A NumPy reference written independently of gpt.py's helpers (float64)."""
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    tok = np.asarray(tokens)
    B, Ln = tok.shape
    H, E, D = cfg.n_head, cfg.head_dim, cfg.width

    def ln(x, g, b):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        y = (x - mu) / np.sqrt(var + 1e-5) * g
        return y if b is None else y + b

    def lin(x, w, b):
        return x @ w if b is None else x @ w + b

    def gelu(x):
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))

    def rot(x):  # x (B, L, H, E): the paper's rotation, in gpt.py's layout (see _pairs)
        P, inv = _pairs(E)
        out = [_roformer(x[:, m][..., P], m, cfg.rope_base)[..., inv] for m in range(Ln)]
        return np.stack(out, axis=1)

    x = p["wte"][tok]
    if cfg.positions == "learned":
        x = x + p["wpe"][:Ln]
    blocks = p["blocks"]
    for layer in range(cfg.n_layer):
        b = {k: v[layer] for k, v in blocks.items()}
        h = ln(x, b["ln1_g"], b.get("ln1_b"))
        qkv = lin(h, b["qkv_w"], b.get("qkv_b")).reshape(B, Ln, 3, H, E)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        if cfg.positions == "rope":
            q, k = rot(q), rot(k)
        s = np.einsum("bmhe,bnhe->bhmn", q, k) / math.sqrt(E)
        s = np.where(np.tril(np.ones((Ln, Ln), bool)), s, -np.inf)
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        y = np.einsum("bhmn,bnhe->bmhe", a, v).reshape(B, Ln, D)
        x = x + lin(y, b["proj_w"], b.get("proj_b"))
        h = gelu(lin(ln(x, b["ln2_g"], b.get("ln2_b")), b["fc_w"], b.get("fc_b")))
        x = x + lin(h, b["fc2_w"], b.get("fc2_b"))
    x = ln(x, p["lnf_g"], p.get("lnf_b"))
    return lin(x, p["head_w"], p.get("head_b"))


@pytest.mark.parametrize("positions,bias", [("learned", True), ("rope", True), ("learned", False)])
def test_forward_matches_numpy_reference(positions, bias):
    cfg, params, tokens = _setup(positions, bias)
    out = np.asarray(fwd(params, tokens, cfg))
    np.testing.assert_allclose(out, _np_forward(params, tokens, cfg), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("positions", ["learned", "rope"])
def test_forward_matches_torch_reference(positions):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    cfg, params, tokens = _setup(positions)
    p = jax.tree_util.tree_map(lambda a: torch.tensor(np.asarray(a), dtype=torch.float64), params)
    tok = torch.tensor(np.asarray(tokens), dtype=torch.long)
    B, Ln = tok.shape
    H, E, D = cfg.n_head, cfg.head_dim, cfg.width
    half = E // 2
    inv = cfg.rope_base ** (-torch.arange(half, dtype=torch.float64) * 2 / E)
    ang = torch.arange(Ln, dtype=torch.float64)[:, None] * inv[None]
    cos, sin = ang.cos()[:, None], ang.sin()[:, None]  # (L, 1, E/2) for (B, L, H, E/2)

    def rot(x):
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)

    x = p["wte"][tok] + (p["wpe"][:Ln] if positions == "learned" else 0)
    for i in range(cfg.n_layer):
        b = {k: v[i] for k, v in p["blocks"].items()}
        h = F.layer_norm(x, (D,), b["ln1_g"], b["ln1_b"], eps=1e-5)
        q, k, v = (h @ b["qkv_w"] + b["qkv_b"]).view(B, Ln, 3, H, E).unbind(2)
        if positions == "rope":
            q, k = rot(q), rot(k)
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        )
        x = x + y.transpose(1, 2).reshape(B, Ln, D) @ b["proj_w"] + b["proj_b"]
        h = F.layer_norm(x, (D,), b["ln2_g"], b["ln2_b"], eps=1e-5)
        h = F.gelu(h @ b["fc_w"] + b["fc_b"], approximate="tanh")
        x = x + h @ b["fc2_w"] + b["fc2_b"]
    x = F.layer_norm(x, (D,), p["lnf_g"], p["lnf_b"], eps=1e-5)
    ref = (x @ p["head_w"] + p["head_b"]).numpy()
    out = np.asarray(fwd(params, tokens, cfg))
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_scan_and_unrolled_layers_agree():
    cfg, params, tokens = _setup("rope", n_layer=3)
    a = fwd(params, tokens, cfg)
    b = fwd(params, tokens, dataclasses.replace(cfg, scan_layers=False))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_position_losses_match_log_softmax():
    cfg, params, tokens = _setup()
    nll, acc = jax.jit(gpt.position_losses, static_argnames="cfg")(params, tokens, cfg)
    lg = _np_forward(params, tokens, cfg)[:, :-1]
    t = np.asarray(tokens)[:, 1:]
    logp = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
    ref = -np.take_along_axis(logp, t[..., None], -1)[..., 0]
    np.testing.assert_allclose(nll, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(acc, (lg.argmax(-1) == t).astype(np.float32))
    assert nll.shape == (3, L - 1)


def test_bias_off_has_no_bias_leaves():
    cfg = GPTConfig(bias=False)
    params = init(jax.random.key(0), cfg, 8)
    names = [jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_leaves_with_path(params)]
    assert not any(n.endswith("_b']") for n in names)
    assert gpt.n_params(params) < gpt.n_params(init(jax.random.key(0), GPTConfig(), 8))


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="head_dim"):
        from_dict(GPTConfig, {"positions": "rope", "head_dim": 5})
    with pytest.raises(ConfigError, match="positions"):
        from_dict(GPTConfig, {"positions": "alibi"})
    with pytest.raises(ConfigError, match="n_layer"):
        from_dict(GPTConfig, {"n_layer": 0})


def test_matmul_vjp_matches_autodiff():
    x = jax.random.normal(jax.random.key(0), (3, 5, 4))
    w = jax.random.normal(jax.random.key(1), (4, 6))

    def f(mm):
        return jax.jit(jax.grad(lambda x, w: jnp.sin(mm(x, w)).sum(), argnums=(0, 1)))(x, w)

    for a, b in zip(f(gpt.matmul), f(jnp.matmul), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
