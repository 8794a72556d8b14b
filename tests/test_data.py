"""Zipf weights, bits, on-device sampling (chi-square against the exact law), presentations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phenomjax.data import (
    DataConfig,
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
@settings(max_examples=25, deadline=None)
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
