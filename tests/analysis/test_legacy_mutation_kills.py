"""Legacy-log checks the mutation run found unchecked: the sampling distribution read from the
args, and K kept across evaluations when counts are plain lists (no array shape to compare)."""

from __future__ import annotations

import numpy as np
import pytest

from phenomjax.analysis.legacy import legacy_tables
from phenomjax.errors import DataError


def record(counts, dist=None, K=None):
    """Per-sequence layout, one evaluation per entry of counts (a list or an array each)."""
    logs = []
    for e, c in enumerate(counts):
        k = len(c)
        logs.append({"num_apppearances": c, "epoch": e, "test_metrics": {
            "sequence_rank": np.arange(k), "logsoftmaxloss": np.full(k, 0.5, np.float32),
            "accuracy": np.full(k, 0.75, np.float32), "length": 50}})  # fmt: skip
    args = {"batch_size": 2}
    if dist is not None:
        args["sequence_sampling_distribution"] = dist
    if K is not None:
        args["K"] = K
    return {"args": args, "logs": logs}


@pytest.mark.parametrize("dist,alpha", [(None, 1.0), ("zipf", 1.0), ("uniform", 0.0)])
def test_sampling_distribution_sets_alpha(tmp_path, dist, alpha):
    evals, positions, meta = legacy_tables(record([[0, 0, 0], [2, 1, 1]], dist), tmp_path / "x.pkl")
    assert meta["alpha"] == alpha and meta["K"] == 3 and positions is None
    np.testing.assert_array_equal(evals["presentations"], [0, 0, 0, 2, 1, 1])
    np.testing.assert_array_equal(evals["step"], [0, 0, 0, 2, 2, 2])  # 4 samples / batch 2


def test_sampling_distribution_must_be_a_string(tmp_path):
    with pytest.raises(DataError, match=r"args\.sequence_sampling_distribution"):
        legacy_tables(record([[0, 0], [1, 1]], dist=3), tmp_path / "x.pkl")


def test_k_is_kept_across_logs_with_list_counts(tmp_path):
    rec = record([[0, 0, 0], [1, 1]])
    rec["logs"][1]["test_metrics"] = record([[0, 0, 0]])["logs"][0]["test_metrics"]
    with pytest.raises(
        DataError, match=r"logs\[1\]\.num_apppearances: 2 sequences, but an earlier"
    ):
        legacy_tables(rec, tmp_path / "x.pkl")
    with pytest.raises(DataError, match=r"3 sequences, but args\.K = 4"):
        legacy_tables(record([[0, 0, 0]], K=4), tmp_path / "x.pkl")
