"""The Bayes floor and ceiling the analysis attaches to a run's tables, against a brute-force
reference written from the definition (docs/design.md §5): for rank r and position j, the
Zipf-weighted share of the sequences sharing r's first j bits whose bit j equals r's."""

from __future__ import annotations

import numpy as np
import pandas as pd
from fixtures.run_dirs import make_run_dir

from phenomjax import load_run
from phenomjax.analysis.load import add_floor
from phenomjax.data import make_bits, zipf_weights


def brute_floor(seed: int, K: int, L: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(K, L-1) floor (nats) and ceiling, column j - 1 for position j, by looping."""
    bits, w = make_bits(seed, K, L), zipf_weights(K, alpha)
    floor, ceil = np.empty((K, L - 1)), np.empty((K, L - 1))
    for r in range(K):
        for j in range(1, L):
            same = np.all(bits[:, :j] == bits[r, :j], axis=1)
            own = w[same & (bits[:, j] == bits[r, j])].sum()
            other = w[same].sum() - own
            floor[r, j - 1] = -np.log(own / (own + other))
            ceil[r, j - 1] = 1.0 if own > other else 0.5 if own == other else 0.0
    return floor, ceil


def test_per_position_floor_ceiling_and_excess_loss_match_brute_force(tmp_path):
    K, L, seed = 12, 6, 5
    run = make_run_dir(tmp_path / "run", K=K, L=L, seed=seed, steps=(0, 8))
    floor, ceil = brute_floor(seed, K, L, 1.0)
    assert np.ptp(floor[0]) > 0.1  # the floor varies along a row: a column shift shows
    pos = load_run(run.path, per_position=True)
    r, j = pos["rank"].to_numpy(), pos["position"].to_numpy()
    np.testing.assert_allclose(pos["floor"], floor[r, j - 1], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(pos["ceiling"], ceil[r, j - 1])
    np.testing.assert_allclose(pos["excess_loss"], pos["loss"] - floor[r, j - 1], atol=1e-5)
    seq = load_run(run.path)
    rs = seq["rank"].to_numpy()
    np.testing.assert_allclose(seq["floor"], floor.mean(1)[rs], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(seq["ceiling"], ceil.mean(1)[rs], rtol=1e-6)
    np.testing.assert_allclose(seq["excess_loss"], seq["loss"] - floor.mean(1)[rs], atol=1e-5)


def test_add_floor_reads_the_position_it_is_given():
    """Single rows at the first and last positions: each gets its own column of the table."""
    K, L, seed = 10, 5, 2
    floor, ceil = brute_floor(seed, K, L, 0.5)
    table = pd.DataFrame({"rank": [0, 0, 7, 9], "position": [1, L - 1, 2, 3],
                          "loss": [1.0, 1.0, 1.0, 1.0]})  # fmt: skip
    meta = {"bits_known": True, "seed": seed, "K": K, "L": L, "alpha": 0.5}
    got = add_floor(table, meta)
    idx = (table["rank"].to_numpy(), table["position"].to_numpy() - 1)
    np.testing.assert_allclose(got["floor"], floor[idx], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got["ceiling"], ceil[idx])
    np.testing.assert_allclose(got["excess_loss"], 1.0 - floor[idx], rtol=1e-5)
    assert "floor" not in add_floor(table, {**meta, "bits_known": False})
