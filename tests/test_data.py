"""Zipf weights, bits, on-device sampling (chi-square against the exact law), presentations.

Boundaries and error conditions of phenomjax.data that the mutation run showed untested:
the smallest valid sizes, the type checks of check_sizes, check_bits, zipf_cdf against NumPy,
and log_spaced_steps on exact grids."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phenomjax.data import (
    STREAMS,
    DataConfig,
    check_bits,
    check_sizes,
    count_presentations,
    key_streams,
    log_spaced_steps,
    make_bits,
    sample_ranks,
    zipf_cdf,
    zipf_weights,
)
from phenomjax.errors import ConfigError, DataError


@given(K=st.integers(1, 5000), alpha=st.floats(0.0, 3.0))
@settings(max_examples=40, deadline=None)
def test_zipf_weights_match_formula(K, alpha):
    p = zipf_weights(K, alpha)
    ref = np.array([(k + 1) ** -alpha for k in range(K)])
    np.testing.assert_allclose(p, ref / ref.sum(), rtol=1e-12)
    assert np.all(np.diff(p) <= 1e-18)  # rank 0 is the most frequent


def test_zipf_alpha_zero_is_uniform():
    np.testing.assert_allclose(zipf_weights(7, 0.0), np.full(7, 1 / 7))


@pytest.mark.parametrize(
    "K,L,alpha,field", [(0, 4, 1.0, "K"), (3, 1, 1.0, "L"), (3, 4, -0.5, "alpha")]
)
def test_bad_sizes_name_the_field(K, L, alpha, field):
    with pytest.raises(ConfigError, match=rf"data\.{field}"):
        DataConfig(K=K, L=L, alpha=alpha).validate()


def test_bits_are_seeded_uniform():
    a, b = make_bits(3, 2000, 50), make_bits(3, 2000, 50)
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) == {0, 1}
    assert abs(a.mean() - 0.5) < 0.01
    assert not np.array_equal(a, make_bits(4, 2000, 50))
    with pytest.raises(DataError, match="K"):
        make_bits(0, 0, 5)


def test_sampling_matches_zipf_chi_square():
    K, B, draws = 50, 512, 400
    p = zipf_weights(K, 1.0)
    cdf = zipf_cdf(p)
    key = key_streams(0)["batches"]
    sample = jax.jit(lambda k: sample_ranks(k, cdf, B))
    ranks = np.concatenate([np.asarray(sample(jax.random.fold_in(key, t))) for t in range(draws)])
    observed = np.bincount(ranks, minlength=K)
    expected = p * ranks.size
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    # 49 degrees of freedom: the 99.9% quantile is about 85.4
    assert chi2 < 85.4, chi2
    assert ranks.min() >= 0 and ranks.max() < K


@given(
    K=st.integers(1, 40),
    B=st.integers(1, 33),
    steps=st.integers(1, 12),
    seed=st.integers(0, 2**31 - 1),
)
@settings(max_examples=10, deadline=None)  # each example compiles its shapes' draws anew
def test_presentations_are_exact_counts(K, B, steps, seed):
    cdf = zipf_cdf(zipf_weights(K, 1.0))
    key = jax.random.key(seed)
    counts = jnp.zeros(K, jnp.int32)
    drawn = []
    for t in range(steps):
        r = sample_ranks(jax.random.fold_in(key, t), cdf, B)
        counts = count_presentations(counts, r)
        drawn.append(np.asarray(r))
    np.testing.assert_array_equal(
        np.asarray(counts), np.bincount(np.concatenate(drawn), minlength=K)
    )
    assert int(counts.sum()) == steps * B


@given(total=st.integers(1, 10**6), n=st.integers(1, 60))
@settings(max_examples=60, deadline=None)
def test_log_spaced_steps(total, n):
    s = log_spaced_steps(total, n)
    assert s[0] == 0 and s[-1] == total
    assert np.all(np.diff(s) > 0)
    assert len(s) <= n + 2


def test_smallest_valid_sizes_are_accepted():
    check_sizes(1, 2, 0.0)  # K = 1, L = 2, alpha = 0 are each the least allowed value
    bits = make_bits(0, 1, 2)
    assert bits.shape == (1, 2) and bits.dtype == np.uint8
    np.testing.assert_array_equal(zipf_weights(1, 0.0), [1.0])


@pytest.mark.parametrize(
    "K,L,alpha,field",
    [
        (0, 2, 1.0, "K"),
        (True, 2, 1.0, "K"),  # a bool is not a size
        (2.0, 2, 1.0, "K"),
        (2, 1, 1.0, "L"),
        (2, False, 1.0, "L"),
        (2, 2.5, 1.0, "L"),
        (2, 2, -1e-9, "alpha"),
        (2, 2, float("nan"), "alpha"),
        (2, 2, float("inf"), "alpha"),
    ],
)
def test_check_sizes_refuses_and_names_the_field(K, L, alpha, field):
    with pytest.raises(DataError, match=rf"^where\.{field}: "):
        check_sizes(K, L, alpha, where="where")


def test_check_sizes_accepts_numpy_integers():
    check_sizes(np.int64(3), np.int32(4), np.float32(0.5))


@given(
    K=st.integers(1, 6),
    L=st.integers(2, 6),
    kind=st.sampled_from(["u1", "i8", "f4", "f8", "b1"]),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=30, deadline=None)
def test_check_bits_returns_uint8_of_the_same_values(K, L, kind, seed):
    x = np.random.default_rng(seed).integers(0, 2, (K, L)).astype(kind)
    got = check_bits(x)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, x.astype(np.int64))


@pytest.mark.parametrize(
    "bits,msg",
    [
        (np.zeros((0, 3)), r"^b: expected shape"),  # no sequence
        (np.zeros((3, 1)), r"^b: expected shape"),  # nothing to predict
        (np.zeros(4), r"^b: expected shape"),  # not 2-D
        (np.array([[0.0, np.nan], [1.0, 0.0]]), r"^b: contains NaN or inf"),
        (np.array([[0.0, np.inf], [1.0, 0.0]]), r"^b: contains NaN or inf"),
        (
            np.array([[0, 2], [3, 1], [2, 0]]),
            r"^b: expected bits in \{0, 1\}, found values \[2, 3\]",
        ),
        (np.array([[0.5, 1.0]]), r"found values \[0.5\]"),
    ],
)
def test_check_bits_refuses_and_names_the_array(bits, msg):
    with pytest.raises(DataError, match=msg):
        check_bits(bits, name="b")


@given(K=st.integers(1, 300), alpha=st.floats(0.0, 3.0))
@settings(max_examples=30, deadline=None)
def test_zipf_cdf_is_the_float64_cumsum_rounded_once(K, alpha):
    p = zipf_weights(K, alpha)
    cdf = np.asarray(zipf_cdf(p * 7.0))  # unnormalized weights: the CDF still ends at 1
    assert cdf.dtype == np.float32 and cdf.shape == (K,) and cdf[-1] == 1.0
    np.testing.assert_allclose(cdf, np.cumsum(p), rtol=1e-6)


def test_sample_ranks_follow_the_cdf_exactly():
    # one rank holding all the weight: every draw is it, whatever its position
    for K, r in ((1, 0), (5, 0), (5, 3), (5, 4)):
        w = np.zeros(K)
        w[r] = 1.0
        ranks = np.asarray(sample_ranks(jax.random.key(1), zipf_cdf(w), 256))
        assert ranks.dtype == np.int32 and ranks.shape == (256,)
        np.testing.assert_array_equal(ranks, r)
    # the draw is u -> searchsorted(cdf, u, side="right"), u the same uniform jax draws
    key = jax.random.key(7)
    cdf = zipf_cdf(zipf_weights(30, 1.0))
    u = np.asarray(jax.random.uniform(key, (500,), dtype=np.float32))
    want = np.minimum(np.searchsorted(np.asarray(cdf), u, side="right"), 29)
    np.testing.assert_array_equal(np.asarray(sample_ranks(key, cdf, 500)), want)


def test_key_streams_are_distinct_and_fixed_by_the_seed():
    a, b = key_streams(0), key_streams(0)
    assert tuple(a) == STREAMS
    data = {n: np.asarray(jax.random.key_data(k)) for n, k in a.items()}
    assert len({d.tobytes() for d in data.values()}) == len(STREAMS)
    for n in STREAMS:
        np.testing.assert_array_equal(data[n], np.asarray(jax.random.key_data(b[n])))
    other = np.asarray(jax.random.key_data(key_streams(1)["bits"]))
    assert not np.array_equal(data["bits"], other)


def test_log_spaced_steps_exact_grids():
    np.testing.assert_array_equal(log_spaced_steps(1000, 4), [0, 1, 10, 100, 1000])
    np.testing.assert_array_equal(log_spaced_steps(1000, 4, include_zero=False), [1, 10, 100, 1000])
    np.testing.assert_array_equal(log_spaced_steps(1, 1), [0, 1])
    np.testing.assert_array_equal(log_spaced_steps(1, 5, include_zero=False), [1])
    np.testing.assert_array_equal(log_spaced_steps(7, 1, include_zero=False), [1, 7])


@given(total=st.integers(1, 10**6), n=st.integers(1, 60))
@settings(max_examples=40, deadline=None)
def test_log_spaced_steps_match_a_numpy_reference(total, n):
    g = np.append(np.geomspace(1, total, n), total)  # the log-spaced points; total always
    got = log_spaced_steps(total, n, include_zero=False)
    assert got.dtype.kind == "i" and got[0] == 1 and got[-1] == total
    assert np.all(np.diff(got) > 0)
    # every step is a rounded point, every point has its rounded step (up to tie rounding)
    assert np.all(np.min(np.abs(got[:, None] - g[None, :]), axis=1) <= 0.5 + 1e-6)
    assert np.all(np.min(np.abs(g[:, None] - got[None, :]), axis=1) <= 0.5 + 1e-6)


@pytest.mark.parametrize("total,n,field", [(0, 3, "steps"), (-5, 3, "steps"), (10, 0, "num_evals")])
def test_log_spaced_steps_refuses_empty_ranges(total, n, field):
    with pytest.raises(DataError, match=rf"^{field}: "):
        log_spaced_steps(total, n)
