"""capacity/bracket.py: the first K of a size and the bisection that brackets the peak."""

from __future__ import annotations

import math

import hypothesis.strategies as st
from hypothesis import given, settings

from phenomjax.capacity import BracketSection, bracketed, first_K, next_K

RULE = BracketSection()


def test_first_K_is_the_estimate_times_the_factors():
    assert first_K(1178, 32, RULE) == [23, 76, 228]  # K0 = 2 x 1178 / 31 = 76
    assert first_K(1, 32, RULE) == [2]  # min_K, once


def test_edges_step_outwards_and_an_interior_peak_is_bisected():
    assert next_K({23: 1.0, 76: 2.0, 228: 3.0}, RULE) == 684  # peak at the top: 3x past it
    assert next_K({23: 5.0, 76: 2.0, 228: 1.0}, RULE) == 7  # peak at the bottom: 3x below
    # interior peak: bisect the wider side in log K (76/23 > 228/76)
    assert next_K({23: 1.0, 76: 3.0, 228: 2.0}, RULE) == round(math.sqrt(23 * 76))
    assert next_K({23: 1.0, 42: 2.0, 76: 3.0, 228: 2.0}, RULE) == round(math.sqrt(76 * 228))
    # neighbours within the resolution: done; so is a plateau at the top
    assert next_K({40: 1.0, 76: 3.0, 140: 2.0}, RULE) is None
    assert next_K({23: 1.0, 76: 2.0, 228: 2.02}, RULE) is None
    assert bracketed({23: 1.0, 76: 2.0, 228: 2.02}, RULE)
    assert next_K({23: 1.0, 76: 2.0, 228: 3.0}, BracketSection(max_K=3)) is None


def _true_capacity(K: int, cap: float, L: int = 32) -> float:
    """A capacity-shaped curve: all of a K below cap, then flat, then falling as K grows."""
    data = K * (L - 1)
    return min(data, cap) * (1 - 0.1 * max(0.0, math.log(data / cap)))


@settings(max_examples=60, deadline=None)
@given(params=st.integers(500, 50000), ratio=st.floats(0.3, 8.0))
def test_the_search_brackets_the_peak_of_a_unimodal_curve(params, ratio):
    """Whatever the true capacity (0.6 to 16 bits per parameter against a guess of 2), the
    search ends with the best K having a K on each side, within max_K."""
    rule = BracketSection(max_K=12)
    cap = 2.0 * ratio * params
    bits = {K: _true_capacity(K, cap) for K in first_K(params, 32, rule)}
    while (K := next_K(bits, rule)) is not None:
        assert K not in bits
        bits[K] = _true_capacity(K, cap)
    assert len(bits) <= rule.max_K
    Ks = sorted(bits)
    best = max(Ks, key=lambda k: bits[k])
    assert bracketed(bits, rule)
    assert 0 < Ks.index(best) < len(Ks) - 1 or bits[Ks[-1]] <= (1 + rule.flat) * bits[Ks[-2]]
    peak_K = cap / 31  # the true peak lies between the best K's neighbours
    i = Ks.index(best)
    assert Ks[max(i - 1, 0)] <= peak_K * 1.0001 or i == 0
