"""capacity/saturation.py: budgets, the convergence rule, and the saturating fit against a
NumPy least-squares reference."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from phenomjax.capacity import SaturationSection, budgets, converged, extrapolate, gain
from phenomjax.capacity.saturation import Q_GRID, _fit_totals, finished, steps_for
from phenomjax.errors import DataError

RULE = SaturationSection(first_exposures=250, min_exposures=1000, max_exposures=4000)


def test_budgets_double_up_to_the_maximum():
    assert budgets(RULE) == [250, 500, 1000, 2000, 4000]
    assert budgets(SaturationSection(first_exposures=300, max_exposures=1000)) == [300, 600]
    assert steps_for(K=100, batch=100, exposures=1000) == 1000  # full batch: one per step
    assert steps_for(K=1000, batch=128, exposures=1000) == math.ceil(1000 * 1000 / 128)


def test_convergence_needs_min_exposures_and_a_small_gain():
    assert gain(100.0, 101.0) == pytest.approx(0.01)
    assert gain(0.0, 0.0) == 0.0 and gain(0.0, 1.0) == math.inf
    assert not converged([250, 500], [100.0, 100.5], RULE)  # below min_exposures
    assert converged([250, 500, 1000], [50.0, 100.0, 101.0], RULE)
    assert not converged([250, 500, 1000], [50.0, 100.0, 103.0], RULE)
    assert not finished([250, 500, 1000], [50.0, 100.0, 103.0], RULE)
    assert finished([250, 500, 1000, 2000, 4000], [1, 2, 3, 4, 5.0], RULE)  # spent


@settings(max_examples=50, deadline=None)
@given(ceiling=st.floats(1.0, 1e6), share=st.floats(0.0, 1.0))
def test_at_the_ceiling_no_budget_can_gain_rel_tol(ceiling, share):
    bits = share * ceiling
    done = converged([250], [bits], RULE, ceiling)  # one budget, below min_exposures
    # converged exactly when even the ceiling itself would be a gain under rel_tol
    assert done == (gain(bits, ceiling) <= RULE.rel_tol)
    assert finished([250], [bits], RULE, ceiling) == done
    assert not converged([250], [bits], RULE)  # no ceiling given: the gain rule alone


def _reference(exposures, totals):
    """Brute force: lstsq of b_inf - a q^n at every grid q, the smallest residual wins."""
    n = np.log2(np.asarray(exposures, float) / exposures[0])
    best = None
    for q in Q_GRID:
        X = np.stack([np.ones_like(n), -(q**n)], axis=1)
        coef, *_ = np.linalg.lstsq(X, totals, rcond=None)
        rss = float(np.sum((totals - X @ coef) ** 2))
        if best is None or rss < best[0] - 1e-12:
            best = (rss, coef[0], q)
    return best


@settings(max_examples=30, deadline=None)
@given(
    b_inf=st.floats(100.0, 5000.0),
    share=st.floats(0.2, 0.9),
    q=st.sampled_from([float(x) for x in Q_GRID[10:80:7]]),
    n=st.integers(3, 5),
)
def test_an_exact_saturating_curve_is_recovered(b_inf, share, q, n):
    exposures = [250 * 2**i for i in range(n)]
    totals = np.array([b_inf - share * b_inf * q**i for i in range(n)])
    K = 20
    per_seq = np.repeat(totals[:, None] / K, K, axis=1)  # every sequence alike
    f = extrapolate(exposures, per_seq, resamples=20)
    rss, ref_b, ref_q = _reference(exposures, totals)
    assert f["q"] == pytest.approx(ref_q)
    np.testing.assert_allclose(f["bits"], ref_b, rtol=1e-8)
    np.testing.assert_allclose(f["bits"], b_inf, rtol=1e-6)
    assert f["lo"] <= f["bits"] + 1e-6 <= f["hi"] + 2e-6  # identical sequences: no spread


def test_noisy_curves_get_an_interval_and_gains_that_never_shrink_none():
    rng = np.random.default_rng(0)
    exposures = [250, 500, 1000, 2000]
    K = 200
    cap = rng.uniform(5, 15, K)  # per-sequence capacity, saturating at rate q = 0.5
    per_seq = np.stack([cap * (1 - 0.6 * 0.5**i) for i in range(4)]) + rng.normal(0, 0.3, (4, K))
    per_seq = np.clip(per_seq, 0, None)
    f = extrapolate(exposures, per_seq, resamples=100)
    assert f["lo"] < f["bits"] < f["hi"] < math.inf
    assert f["bits"] == pytest.approx(cap.sum(), rel=0.05)
    linear = np.stack([np.full(K, 1.0 + i) for i in range(4)])  # the same gain every doubling
    g = extrapolate(exposures, linear, resamples=20)
    assert math.isnan(g["bits"]) and g["hi"] == math.inf and g["lo"] == pytest.approx(4.0 * K)
    # one sequence that saturates among many that keep gaining: still no estimate, and the
    # lower end is what was measured, not a resample's extrapolation
    mixed = linear.copy()
    mixed[:, 0] = [5.0, 7.5, 8.75, 9.375]
    h = extrapolate(exposures, mixed, resamples=50)
    assert math.isnan(h["bits"]) and h["lo"] == pytest.approx(mixed[-1].sum())


def test_an_extrapolation_stays_between_the_measured_bits_and_the_ceiling():
    # a rise faster than the form allows (1x2x8 at K = 753 measured 1890, 4807, 4944, 5329,
    # 6525 bits): the fitted b_inf lands under the last budget, so no saturation is shown
    exposures = [1000, 2000, 4000, 8000, 16000]
    totals = np.array([1890.0, 4807.0, 4944.0, 5329.0, 6525.0])
    K = 50
    per_seq = np.repeat(totals[:, None] / K, K, axis=1)
    (b_inf,), _ = _fit_totals(np.log2(np.array(exposures) / 1000), totals[None])
    assert b_inf < totals.max()  # the case this guards
    f = extrapolate(exposures, per_seq, resamples=20, ceiling=16900.0)
    assert math.isnan(f["bits"]) and f["lo"] == totals.max() and f["hi"] == 16900.0
    # a saturating series whose b_inf passes the Bayes ceiling: every end is the ceiling
    sat = np.array([1000.0, 1500.0, 1750.0, 1875.0])
    g = extrapolate(
        exposures[:4], np.repeat(sat[:, None] / K, K, axis=1), resamples=20, ceiling=1900.0
    )  # fmt: skip  (b_inf 2000)
    assert g["bits"] == g["hi"] == 1900.0 and 1875.0 <= g["lo"] <= 1900.0


def test_extrapolate_refuses_too_few_budgets():
    with pytest.raises(DataError, match="extrapolate"):
        extrapolate([250, 500], np.ones((2, 4)))
