"""capacity/summary.py: capacity per size (the peak over K, which estimate, data-limited, both
parameter counts) and the bits-per-parameter fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from phenomjax.capacity import capacity_by_size, fit_capacity


def _row(params, K, bits, ceiling, **kw):
    return {
        "model": "transformer",
        "n_layer": 1,
        "n_head": params // 1000,
        "head_dim": 8,
        "w": None,
        "d": None,
        "params": params,
        "params_core": params // 2,
        "K": K,
        "alpha": 0.0,
        "dataset_bits": K * 31,
        "memorized_bits": bits,
        "bits_ceiling": ceiling,
        "converged": True,
        "extrapolated": False,
        "bits_estimate": bits,
        "bits_lo": np.nan,
        "bits_hi": np.nan,
        "gain_last_doubling": 0.01,
        "lr": 0.003,
        "exposures": 1000,
        "status": "complete",
        **kw,
    }


def test_the_peak_its_estimate_and_the_flags():
    rows = [
        _row(1000, 30, 700.0, 720.0),  # at its ceiling
        _row(1000, 100, 2000.0, 2500.0),
        _row(1000, 300, 1500.0, 7000.0),
        _row(2000, 60, 1500.0, 1520.0),
        _row(2000, 200, 4000.0, 4100.0),  # peak at 97.6% of the ceiling: data-limited
        _row(3000, 100, 2500.0, 2600.0),
        _row(
            3000,
            300,
            6000.0,
            8000.0,
            converged=False,
            extrapolated=True,
            bits_estimate=6600.0,
            bits_lo=6000.0,
            bits_hi=7100.0,
        ),  # fmt: skip
        _row(3000, 900, 5000.0, 24000.0, converged=False),
        {**_row(3000, 2000, 9e9, 1e10), "status": "failed"},  # a failed run measures nothing
    ]
    sizes = capacity_by_size(pd.DataFrame(rows)).set_index("params")
    assert sizes.loc[1000, "K_at_max"] == 100 and sizes.loc[1000, "estimate"] == "converged"
    assert sizes.loc[1000, "capacity"] == 2000.0 and not sizes.loc[1000, "data_limited"]
    assert sizes.loc[1000, "bracketed"] and not sizes.loc[2000, "bracketed"]
    assert sizes.loc[2000, "data_limited"]
    big = sizes.loc[3000]
    assert big["estimate"] == "extrapolated" and big["capacity"] == 6600.0
    assert (big["capacity_lo"], big["capacity_hi"]) == (6000.0, 7100.0)
    assert big["measured_bits"] == 6000.0 and big["n_K"] == 3
    np.testing.assert_allclose(sizes["bits_per_param"], sizes["capacity"] / sizes.index)
    np.testing.assert_allclose(sizes["bits_per_param_core"], sizes["capacity"] / (sizes.index // 2))
    fit = fit_capacity(sizes.reset_index())
    assert fit["used"] == "capacity-limited sizes" and fit["n_sizes"] == 2
    x, y = np.array([1000.0, 3000.0]), np.array([2000.0, 6600.0])
    assert fit["bits_per_param"]["slope"] == pytest.approx(np.dot(x, y) / np.dot(x, x))
    assert fit["bits_per_param_core"]["slope"] == pytest.approx(2 * np.dot(x, y) / np.dot(x, x))


def test_a_peak_that_neither_converged_nor_extrapolated_is_a_lower_bound():
    rows = [
        _row(1000, 30, 700.0, 1000.0),
        _row(1000, 100, 900.0, 2500.0, converged=False, bits_estimate=np.nan),
    ]
    s = capacity_by_size(pd.DataFrame(rows)).iloc[0]
    assert s["estimate"] == "lower bound" and s["capacity"] == 900.0 and not s["bracketed"]
    assert fit_capacity(capacity_by_size(pd.DataFrame(rows)))["used"] == "all sizes"
