"""The Bayes floor against brute force, and the docs/design.md §2 and §5 reference numbers."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from phenomjax import bayes_ceiling, bayes_floor, make_bits, per_sequence_floor, zipf_weights
from phenomjax.errors import DataError


def brute_force(bits, w):
    """Posterior of the next bit by scanning every sequence for the same prefix."""
    w = w / w.sum()
    M, N = bits.shape
    loss = np.zeros((M, N - 1))
    acc = np.zeros((M, N - 1))
    for m, j in itertools.product(range(M), range(1, N)):
        same = np.all(bits[:, :j] == bits[m, :j], axis=1)
        p1 = w[same & (bits[:, j] == 1)].sum() / w[same].sum()
        own = p1 if bits[m, j] == 1 else 1 - p1
        loss[m, j - 1] = -np.log(own)
        acc[m, j - 1] = 0.5 if abs(own - 0.5) <= 1e-12 else (1.0 if own > 0.5 else 0.0)
    return loss, acc


@given(
    bits=arrays(
        np.uint8, st.tuples(st.integers(1, 12), st.integers(2, 6)), elements=st.integers(0, 1)
    ),
    alpha=st.floats(0.0, 2.0),
)
@settings(max_examples=60, deadline=None)
def test_matches_brute_force(bits, alpha):
    w = zipf_weights(bits.shape[0], alpha)
    loss, acc = brute_force(bits, w)
    np.testing.assert_allclose(bayes_floor(bits, w), loss, atol=1e-12)
    np.testing.assert_allclose(bayes_ceiling(bits, w), acc)


def test_a_tie_within_rounding_is_a_tie():
    # uniform weights, three sequences each way after a shared prefix: sums in other orders
    bits = np.array([[0, 1]] * 3 + [[0, 0]] * 3, np.uint8)
    w = np.full(6, 1 / 6) * (1 + np.array([0, 1, -1, 1, -1, 0]) * 1e-17)
    assert np.all(bayes_ceiling(bits, w) == 0.5)


def test_design_reference_numbers():
    # docs/design.md §2: K = 1000, L = 32, Zipf 1: ceiling about 0.95 for the top 10 ranks.
    floor, ceiling = per_sequence_floor(make_bits(0, 1000, 32), zipf_weights(1000, 1.0))
    assert 0.93 < ceiling[:10].mean() < 0.97
    assert 0.07 < floor[:10].mean() < 0.11
    # docs/design.md §5: K = 1000, L = 16: top 5 about 0.15 nats, ranks 100-999 about 0.50.
    floor16, _ = per_sequence_floor(make_bits(0, 1000, 16), zipf_weights(1000, 1.0))
    assert floor16[:5].mean() == pytest.approx(0.15, abs=0.03)
    assert floor16[100:].mean() == pytest.approx(0.50, abs=0.03)
    # floors grow with rank: frequent ranks win ambiguous prefixes
    assert floor16[:10].mean() < floor16[10:100].mean() < floor16[100:].mean()


def test_floor_is_below_ln2_on_average_and_nonnegative():
    bits = make_bits(1, 300, 12)
    f = bayes_floor(bits, zipf_weights(300, 1.0))
    assert np.all(f >= 0)
    # a mixture-aware learner beats the uniform guess in p-weighted expectation
    assert (zipf_weights(300, 1.0) @ f.mean(1)) < np.log(2)


def test_bad_input_is_named():
    with pytest.raises(DataError, match="bits"):
        bayes_floor(np.array([[0, 2], [1, 0]]), np.ones(2))
    with pytest.raises(DataError, match="weights"):
        bayes_floor(np.zeros((3, 4), np.uint8), np.ones(2))
    with pytest.raises(DataError, match="bits"):
        bayes_floor(np.zeros((3, 1), np.uint8), np.ones(3))
