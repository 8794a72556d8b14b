"""The Bayes floor of docs/design.md §2: the loss of a learner that knows the mixture exactly.

P(x_j = 1 | x_<j) is the p-weighted share of the sequences sharing that prefix whose bit j is
1. Sequences are grouped by prefix position by position: the group id of a prefix of length j
is a dense relabelling of (group id at j-1, bit j-1), which costs O(M) per position with a
bincount instead of a sort, so K = 100000, L = 100 takes about a second.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .data import check_bits
from .errors import DataError


class BayesTables(NamedTuple):
    loss: np.ndarray  # (M, N-1) Bayes-optimal loss in nats for predicting bit j from bits < j
    accuracy: np.ndarray  # (M, N-1) 1 where the own bit has the larger posterior, 0.5 on ties


def _check_weights(weights: np.ndarray, M: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (M,):
        raise DataError(f"weights: expected shape ({M},) to match bits, got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise DataError("weights: expected finite, non-negative weights with a positive sum")
    return w / w.sum()


def bayes_tables(bits: np.ndarray, weights: np.ndarray) -> BayesTables:
    """Exact Bayes-optimal per-position loss and accuracy ceiling, each (M, N-1)."""
    x = check_bits(bits)
    M, N = x.shape
    w = _check_weights(weights, M)
    loss = np.empty((M, N - 1), dtype=np.float64)
    acc = np.empty((M, N - 1), dtype=np.float64)
    gid = np.zeros(M, dtype=np.int64)  # group of the empty prefix
    n_groups = 1
    seen = np.zeros(2 * M, dtype=bool)
    for j in range(1, N):
        # Refine groups by bit j-1: codes < 2 * n_groups, relabelled densely in O(M).
        codes = 2 * gid + x[:, j - 1]
        seen[: 2 * n_groups] = False
        seen[codes] = True
        relabel = np.cumsum(seen[: 2 * n_groups]) - 1
        gid = relabel[codes]
        n_groups = int(relabel[-1]) + 1
        target = x[:, j].astype(bool)
        w1 = np.bincount(gid, weights=w * target, minlength=n_groups)
        w0 = np.bincount(gid, weights=w * ~target, minlength=n_groups)
        own = np.where(target, w1[gid], w0[gid])
        other = np.where(target, w0[gid], w1[gid])
        # own > 0 whenever the sequence's own weight is > 0; clip guards zero-weight ranks.
        own_c = np.maximum(own, np.finfo(np.float64).tiny)
        loss[:, j - 1] = np.log(own_c + other) - np.log(own_c)
        # a tie within rounding is a tie: the two sums add the same weights in other orders
        tie = np.abs(own - other) <= 1e-12 * (own + other)
        acc[:, j - 1] = np.where(tie, 0.5, np.where(own > other, 1.0, 0.0))
    return BayesTables(loss, acc)


def bayes_floor(bits: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Bayes-optimal loss in nats, (M, N-1); per-sequence floors are its row means.

    >>> import numpy as np
    >>> bits = np.array([[0, 0], [0, 1]])
    >>> bayes_floor(bits, np.array([0.75, 0.25])).round(3).tolist()
    [[0.288], [1.386]]
    """
    return bayes_tables(bits, weights).loss


def bayes_ceiling(bits: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Accuracy ceiling, (M, N-1): 1 where the own next bit has the larger posterior weight."""
    return bayes_tables(bits, weights).accuracy


def per_sequence_floor(bits: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(loss floor, accuracy ceiling) per sequence: the row means of the tables, each (M,)."""
    t = bayes_tables(bits, weights)
    return t.loss.mean(axis=1), t.accuracy.mean(axis=1)
