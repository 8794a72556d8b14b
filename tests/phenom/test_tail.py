"""The V3 control's data (issue 18 item 4): the tail replaced by one constant sequence of the
same mass (phenomjax.data.head_and_constant_tail). The V1 runs on both: scripts/v3_tail.py."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from phenomjax.data import head_and_constant_tail, make_bits, zipf_weights


@settings(max_examples=25, deadline=None)
@given(
    K=st.integers(12, 80), L=st.integers(2, 9), alpha=st.floats(0.0, 2.0), head=st.integers(1, 11)
)
def test_head_and_constant_tail_keeps_the_head_and_the_mass(K, L, alpha, head):
    bits, w = make_bits(0, K, L), zipf_weights(K, alpha)
    b2, w2 = head_and_constant_tail(bits, w, head)
    assert b2.shape == (head + 1, L) and np.array_equal(b2[:head], bits[:head])
    assert not b2[head].any() and np.isclose(w2.sum(), 1.0) and np.array_equal(w2[:head], w[:head])
