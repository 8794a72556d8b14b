"""The phenomenological model core against a naive NumPy reference (float64), finite
differences, PyTorch (when installed), and the capacity effect of docs/design.md §6."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phenomjax import bayes_floor
from phenomjax import phenom as ph
from phenomjax.data import make_bits, zipf_weights
from phenomjax.errors import ConfigError

CASES = [
    (param, emb, w)
    for param in ph.PARAMS
    for emb in ph.EMBEDDINGS
    for w in (1, 3)
    if not (emb == "spin" and w != 1)
]


# ---------- NumPy reference: the naive sum of docs/design.md §6, float64 ----------


def np_full_A(params: dict) -> np.ndarray:
    """A[n, i] of every parameterization as (N-1, N-1, d, d), zero above the diagonal."""
    P = params["E"].shape[0] - 1
    if "a" in params:
        A = params["a"][:, :, None, None] * params["W"][None, None]
    elif params["A"].shape[0] == P:  # relative
        A = np.zeros((P, P) + params["A"].shape[1:])
        for n in range(P):
            for i in range(n + 1):
                A[n, i] = params["A"][n - i]
    else:  # full: the causal blocks, row by row
        assert params["A"].shape[0] == P * (P + 1) // 2
        A = np.zeros((P, P) + params["A"].shape[1:])
        k = 0
        for n in range(P):
            for i in range(n + 1):
                A[n, i] = params["A"][k]
                k += 1
    return A * np.tril(np.ones((P, P)))[:, :, None, None]


def np_windows(bits: np.ndarray, w: int) -> np.ndarray:
    M, N = bits.shape
    win = np.zeros((M, N - 1), dtype=np.int64)
    for i in range(N - 1):
        for k in range(w):
            if i - k >= 0:
                win[:, i] += bits[:, i - k].astype(np.int64) << k
    return win


def np_logits(params: dict, bits: np.ndarray) -> np.ndarray:
    """logit[m, n] = B . sum_{i <= n} A[n, i] @ E[i, window_i(m)]."""
    params = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    E = params["E"]
    w = int(np.log2(E.shape[1]))
    M, N = bits.shape
    win = np_windows(bits, w)
    xi = E[np.arange(N - 1)[None, :], win]  # (M, N-1, d)
    A = np_full_A(params)
    z = np.zeros((M, N - 1))
    for n in range(N - 1):
        v = np.zeros((M, E.shape[2]))
        for i in range(n + 1):
            v += xi[:, i] @ A[n, i].T
        z[:, n] = v @ params["B"]
    return z


def np_loss(params: dict, bits: np.ndarray, weights: np.ndarray) -> float:
    z = np_logits(params, bits)
    y = bits[:, 1:].astype(np.float64)
    bce = -y * -np.logaddexp(0, -z) - (1 - y) * -np.logaddexp(0, z)  # -log-sigmoid forms
    return float(np.asarray(weights, np.float64) @ bce.mean(axis=1))


def np_grad_fd(params: dict, bits, weights, h: float = 1e-6) -> dict:
    """Central finite differences of the float64 reference loss."""
    p64 = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    grads = {}
    for k, v in p64.items():
        g = np.zeros_like(v)
        for idx in np.ndindex(v.shape):
            old = v[idx]
            v[idx] = old + h
            up = np_loss(p64, bits, weights)
            v[idx] = old - h
            down = np_loss(p64, bits, weights)
            v[idx] = old
            g[idx] = (up - down) / (2 * h)
        grads[k] = g
    return grads


def small_problem(M=6, N=5, seed=0):
    bits = make_bits(seed, M, N)
    weights = zipf_weights(M).astype(np.float32)
    return bits, weights


def model_params(param, emb, w, N=5, d=3, seed=0, scale=0.7):
    model = ph.PhenomModel(N=N, d=d, w=w, param=param, embedding=emb)
    return model, ph.init_params(jax.random.key(seed), model, scale=scale)


# ---------- reference comparisons ----------


@pytest.mark.parametrize("param,emb,w", CASES)
def test_logits_loss_grad_match_numpy_reference(param, emb, w):
    bits, weights = small_problem()
    model, params = model_params(param, emb, w)
    np.testing.assert_allclose(ph.logits(params, bits), np_logits(params, bits), atol=1e-5)
    ref = np_loss(params, bits, weights)
    np.testing.assert_allclose(float(ph.loss(params, bits, weights)), ref, rtol=1e-5)
    value, grads = ph.loss_and_grad(params, bits, weights)
    np.testing.assert_allclose(float(value), ref, rtol=1e-5)
    fd = np_grad_fd(params, bits, weights)
    for k in params:
        # E's gradient is computed whatever the mask; trainable_mask decides what moves.
        np.testing.assert_allclose(np.asarray(grads[k]), fd[k], atol=2e-5, rtol=1e-3, err_msg=k)
    assert ph.trainable_mask(params, model)["E"] == (emb == "learned")


@pytest.mark.parametrize("w", [1, 2, 4])
def test_nxn_table_matches_naive_sum_and_blocks(w):
    """Many blocks (with a padded last one) of the table formulation vs the naive sum."""
    M, N = 2600, 12
    bits = make_bits(3, M, N)
    weights = zipf_weights(M).astype(np.float32)
    _, params = model_params("full", "learned", w, N=N, d=4, scale=0.5)
    z_ref = np_logits(params, bits)
    np.testing.assert_allclose(ph.logits(params, bits), z_ref, atol=1e-4)
    if w == 1:  # the N x N matrix itself: logits = bits @ T + c, T upper-triangular (causal)
        T, c, _ = ph.tables(params)
        assert T.shape == (N - 1, N - 1)
        np.testing.assert_allclose(bits[:, :-1] @ np.asarray(T) + np.asarray(c), z_ref, atol=1e-4)
        assert np.all(np.tril(np.asarray(T), -1) == 0)

    def plain(p):  # plain autodiff through optax's BCE: no custom VJP, no blocks
        z = ph.logits(p, jnp.asarray(bits))
        bce = optax.sigmoid_binary_cross_entropy(z, jnp.asarray(bits[:, 1:], jnp.float32))
        return bce.mean(axis=1) @ weights

    v_ref, g_ref = jax.value_and_grad(plain)(params)
    v, g = jax.jit(ph.loss_and_grad)(params, bits, weights)
    np.testing.assert_allclose(float(v), float(v_ref), rtol=1e-5)
    for k in params:
        np.testing.assert_allclose(g[k], g_ref[k], atol=1e-6, rtol=1e-4, err_msg=k)
    # d loss / d weights = per-sequence loss
    gw = jax.grad(ph.loss, argnums=2)(params, bits, jnp.asarray(weights))
    seq, _ = ph.sequence_metrics(params, bits)
    np.testing.assert_allclose(gw, seq, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("w,d", [(2, 4), (3, 2)])  # one-hot windows, gathered embeddings
def test_sequence_metrics_chunked(w, d):
    M, N = 1003, 9
    bits = make_bits(5, M, N)
    _, params = model_params("relative", "random", w, N=N, d=d, scale=1.0)
    z = np_logits(params, bits)
    y = bits[:, 1:]
    bce = np.logaddexp(0, z) - y * z
    acc = ((z > 0) == (y == 1)).astype(float)
    loss, accuracy, loss_pos, acc_pos = ph.sequence_metrics(
        params, bits, per_position=True, chunk=256
    )
    assert loss.shape == accuracy.shape == (M,) and loss_pos.shape == (M, N - 1)
    np.testing.assert_allclose(loss, bce.mean(axis=1), rtol=1e-4)
    np.testing.assert_allclose(loss_pos, bce, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(accuracy, acc.mean(axis=1), atol=1e-6)
    np.testing.assert_array_equal(acc_pos, acc)
    assert len(ph.sequence_metrics(params, bits, chunk=100)) == 2


# ---------- causality, stability, structure ----------


@pytest.mark.parametrize("param", ph.PARAMS)
def test_causality(param):
    N = 7
    bits = make_bits(1, 40, N)
    model, params = model_params(param, "learned", 2, N=N, d=3)
    z = np.asarray(ph.logits(params, bits))
    # flipping bit j changes no prediction made before bit j is seen (n < j)
    for j in range(N - 1):
        flipped = bits.copy()
        flipped[:, j] ^= 1
        np.testing.assert_array_equal(np.asarray(ph.logits(params, flipped))[:, :j], z[:, :j])
    if param == "full":  # only the causal blocks are stored: those of the square draw
        key = jax.random.split(jax.random.key(0), 4)[0]
        square = 0.1 * np.asarray(jax.random.normal(key, (N - 1, N - 1, 3, 3)))
        want = np.stack([square[n, i] for n in range(N - 1) for i in range(n + 1)])
        init = ph.init_params(jax.random.key(0), model, scale=0.1)
        np.testing.assert_array_equal(np.asarray(init["A"]), want.astype(np.float32))


@given(P=st.integers(1, 12), rest=st.integers(1, 3))
@settings(max_examples=30, deadline=None)
def test_pack_unpack_roundtrip(P, rest):
    from phenomjax.phenom.linear import pack, packed_size, unpack

    square = np.random.default_rng(P).normal(size=(P, P, rest)).astype(np.float32)
    packed = np.asarray(pack(jnp.asarray(square)))
    assert packed.shape == (packed_size(P), rest)
    np.testing.assert_array_equal(np.asarray(unpack(jnp.asarray(packed), P)),
                                  square * np.tril(np.ones((P, P)))[:, :, None])  # fmt: skip


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_finite_at_huge_logits(sign):
    N = 6
    bits = make_bits(2, 50, N)
    weights = zipf_weights(50).astype(np.float32)
    model = ph.PhenomModel(N=N, embedding="spin")
    params = ph.init_params(jax.random.key(0), model)
    # logit of bit n+1 = 1e4 * sign * (number of ones minus zeros among bits 0..n) / (n+1)
    params = dict(params, B=jnp.ones(1), A=jnp.full((N * (N - 1) // 2, 1, 1), 1e4 * sign))
    z = np.asarray(ph.logits(params, bits))
    assert np.abs(z).max() >= 1e4
    value, grads = ph.loss_and_grad(params, bits, weights)
    assert np.isfinite(float(value))
    assert all(np.all(np.isfinite(np.asarray(g))) for g in grads.values())
    np.testing.assert_allclose(float(value), np_loss(params, bits, weights), rtol=1e-5)


def test_model_config_and_init_shapes():
    m = ph.PhenomModel(N=10, d=4, w=3, param="shared")
    hash(m)
    assert dataclasses.replace(m, d=4) == m
    p = ph.init_params(jax.random.key(0), m)
    assert {k: v.shape for k, v in p.items()} == {
        "a": (9, 9),
        "W": (4, 4),
        "B": (4,),
        "E": (10, 8, 4),
    }
    full = ph.init_params(jax.random.key(0), ph.PhenomModel(N=10, d=4))
    assert full["A"].shape == (45, 4, 4)  # the 9 * 10 / 2 causal blocks
    rel = ph.init_params(jax.random.key(0), ph.PhenomModel(N=10, d=4, param="relative"))
    assert rel["A"].shape == (9, 4, 4) and rel["E"].shape == (10, 2, 4)
    spin = ph.PhenomModel(N=10, d=8, w=4, embedding="spin")
    assert (spin.d, spin.w) == (1, 1)
    e = ph.init_params(jax.random.key(0), spin)["E"]
    np.testing.assert_array_equal(e[3, :, 0], [-1.0, 1.0])
    for field, value in [
        ("N", 1),
        ("d", 0),
        ("w", 0),
        ("param", "dense"),
        ("embedding", "onehot"),
        ("init_scale", -1.0),
        ("forget", -0.1),
        ("forget", 1.0),
        ("readout_scale", -1.0),
    ]:
        with pytest.raises(ConfigError, match=f"model.{field}"):
            dataclasses.replace(ph.PhenomModel(N=5), **{field: value}).validate()


@pytest.mark.parametrize("param", ["full", "shared"])
def test_forget_step_matches_numpy_reference(param):
    """The "forget" variant: one SGD step maps A (or a) to (1 - f) A - lr dL/dA, with the
    gradient of the naive float64 sum (finite differences); B and E are not shrunk."""
    from phenomjax.phenom.modes import freeze_untrained, init_state, make_data, make_step

    bits, weights = small_problem()
    f, lr = 0.2, 0.5
    model = ph.PhenomModel(N=5, d=3, w=2, param=param, init_scale=0.7, forget=f)
    tx = freeze_untrained(optax.sgd(lr), ph.init_params(jax.random.key(0), model), model)
    state = init_state(jax.random.key(0), model, tx, mode="expected", K=6)
    p0 = {k: np.asarray(v, np.float64) for k, v in state["params"].items()}
    data = make_data(bits, weights, jax.random.key(1))
    new, value = make_step(tx, mode="expected", batch=4)(state, data)
    np.testing.assert_allclose(float(value), np_loss(p0, bits, weights), rtol=1e-5)
    fd = np_grad_fd(p0, bits, weights)
    table = "a" if param == "shared" else "A"
    want = {k: p0[k] - lr * fd[k] for k in p0}
    want[table] = (1 - f) * p0[table] - lr * fd[table]
    want["E"] = p0["E"]  # fixed embedding: neither trained nor shrunk
    for k in p0:
        np.testing.assert_allclose(np.asarray(new["params"][k]), want[k], atol=2e-5, err_msg=k)


def test_forget_alone_is_exponential_decay_and_adam_form_is_adamw():
    """With no learning (lr 0) t steps leave (1 - f)^t A; with Adam at a constant rate lr the
    shrink equals adamw's decoupled decay lr * wd at wd = f / lr, applied to A only."""
    from phenomjax.phenom.modes import freeze_untrained, init_state, make_data, make_step

    bits, weights = small_problem(M=30, N=6)
    data = make_data(bits, weights, jax.random.key(1))
    f, lr, t = 0.05, 1e-2, 7
    model = ph.PhenomModel(N=6, d=4, w=2, forget=f)
    like = ph.init_params(jax.random.key(0), model)

    def run(tx, m):
        tx = freeze_untrained(tx, like, m)
        state = init_state(jax.random.key(0), m, tx, mode="expected", K=30)
        step = jax.jit(make_step(tx, mode="expected", batch=4))
        for _ in range(t):
            state, _ = step(state, data)
        return state["params"]

    still = run(optax.sgd(0.0), model)
    want = (1 - f) ** t * np.asarray(like["A"], np.float64)
    np.testing.assert_allclose(np.asarray(still["A"]), want, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(still["B"], like["B"])
    mine = run(optax.adam(lr), model)
    mask = {k: k == "A" for k in like}
    ref = run(optax.adamw(lr, weight_decay=f / lr, mask=mask), dataclasses.replace(model, forget=0))
    for k in like:
        np.testing.assert_allclose(mine[k], ref[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_readout_scale_sets_only_the_initial_B():
    m = ph.PhenomModel(N=6, d=4, w=2, init_scale=0.1)
    base = ph.init_params(jax.random.key(3), m)
    unit = ph.init_params(jax.random.key(3), dataclasses.replace(m, readout_scale=2.0))
    np.testing.assert_allclose(unit["B"], 20.0 * np.asarray(base["B"]), rtol=1e-6)
    for k in ("A", "E"):
        np.testing.assert_array_equal(unit[k], base[k])
    traced = ph.init_params(jax.random.key(3), dataclasses.replace(m, readout_scale=2.0), 0.5)
    np.testing.assert_allclose(traced["B"], unit["B"], rtol=1e-6)  # the swept scale is A's only


def test_vmapped_member_equals_single():
    bits, weights = small_problem(M=300, N=8)
    model = ph.PhenomModel(N=8, d=4)
    keys = jax.random.split(jax.random.key(0), 3)
    stacked = jax.vmap(lambda k: ph.init_params(k, model))(keys)
    values, grads = jax.jit(jax.vmap(ph.loss_and_grad, in_axes=(0, None, None)))(
        stacked, bits, weights
    )
    v1, g1 = ph.loss_and_grad(ph.init_params(keys[1], model), bits, weights)
    np.testing.assert_allclose(values[1], v1, rtol=1e-6)
    for k in g1:
        np.testing.assert_allclose(grads[k][1], g1[k], rtol=1e-5, atol=1e-8)


# ---------- PyTorch: the same N x N formulation ----------


def test_matches_torch_nxn():
    torch = pytest.importorskip("torch")
    M, N, d = 500, 16, 4
    bits = make_bits(7, M, N)
    weights = zipf_weights(M).astype(np.float32)
    _, params = model_params("full", "learned", 1, N=N, d=d, scale=0.5)
    tp = {
        k: torch.tensor(np.asarray(v), dtype=torch.float64, requires_grad=True)
        for k, v in params.items()
    }
    P = N - 1
    n, i = np.tril_indices(P)
    A = torch.zeros((P, P, d, d), dtype=torch.float64).index_put((torch.tensor(n), torch.tensor(i)),
                                                                tp["A"])  # fmt: skip
    C = torch.einsum("d,nide->nie", tp["B"], A)
    U = torch.einsum("nie,ive->niv", C, tp["E"][:P])
    T, c = (U[:, :, 1] - U[:, :, 0]).T, U[:, :, 0].sum(1)
    x = torch.tensor(bits, dtype=torch.float64)
    z = x[:, :-1] @ T + c
    bce = torch.nn.functional.binary_cross_entropy_with_logits(z, x[:, 1:], reduction="none")
    loss = bce.mean(1) @ torch.tensor(weights, dtype=torch.float64)
    loss.backward()
    value, grads = ph.loss_and_grad(params, bits, weights)
    np.testing.assert_allclose(float(value), loss.item(), rtol=1e-5)
    for k in params:
        np.testing.assert_allclose(grads[k], tp[k].grad.numpy(), atol=1e-6, rtol=1e-4)


# ---------- capacity (docs/design.md §6) ----------


def fit_expected(model, bits, weights, steps, lr=0.03, seed=1):
    """Expected-mode Adam in one lax.scan (a test harness, not the package's fitter)."""
    params = ph.init_params(jax.random.key(seed), model)
    opt = optax.masked(optax.adam(lr), ph.trainable_mask(params, model))
    x, p = jnp.asarray(bits), jnp.asarray(weights, jnp.float32)

    def step(carry, _):
        params, state = carry
        value, grads = ph.loss_and_grad(params, x, p)
        updates, state = opt.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), value

    (params, _), _ = jax.jit(lambda c: jax.lax.scan(step, c, None, length=steps))(
        (params, opt.init(params))
    )
    return params


def test_capacity_window_reaches_bayes_floor():
    K, L = 128, 10
    bits, weights = make_bits(0, K, L), zipf_weights(K)
    floor = bayes_floor(bits, weights).mean(axis=1)
    excess = {}
    for w in (1, 8):  # 8 = log2(K) + 1
        model = ph.PhenomModel(N=L, d=16, w=w, embedding="learned", init_scale=0.3)
        params = fit_expected(model, bits, weights, steps=2000)
        loss, _ = ph.sequence_metrics(params, bits)
        excess[w] = np.asarray(loss) - floor
    assert np.abs(excess[8]).max() < 0.05  # every rank at its floor
    assert excess[1][:5].max() > 0.2 and excess[1].mean() > 0.15  # w = 1 cannot memorize
