"""capacity/fits.py: the Student-t quantile against tabulated values, the slope and power-law
fits against NumPy least squares."""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from phenomjax.capacity import power_law, slope_through_origin, t_quantile
from phenomjax.capacity.fits import regularized_beta, t_cdf
from phenomjax.errors import DataError

# two-sided 95% / one-sided 95% / 99.5% critical values of Student's t (standard tables)
T_TABLE = [
    (0.975, 1, 12.7062),
    (0.975, 2, 4.3027),
    (0.975, 3, 3.1824),
    (0.975, 5, 2.5706),
    (0.975, 10, 2.2281),
    (0.975, 30, 2.0423),
    (0.975, 120, 1.9799),
    (0.95, 3, 2.3534),
    (0.95, 20, 1.7247),
    (0.995, 4, 4.6041),
    (0.995, 60, 2.6603),
]


@pytest.mark.parametrize(("p", "df", "t"), T_TABLE)
def test_t_quantile_matches_the_table(p, df, t):
    assert t_quantile(p, df) == pytest.approx(t, abs=1e-4)
    assert t_quantile(1 - p, df) == pytest.approx(-t, abs=1e-4)


def test_t_cdf_closed_forms():
    # df = 1 is Cauchy, df = 2 has F(t) = 1/2 + t / (2 sqrt(2 + t^2))
    for t in (-3.0, -0.5, 0.0, 0.7, 5.0, 40.0):
        assert t_cdf(t, 1) == pytest.approx(0.5 + np.arctan(t) / np.pi, abs=1e-12)
        assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * np.sqrt(2 + t * t)), abs=1e-12)
    assert t_quantile(0.975, 1e6) == pytest.approx(1.959964, abs=1e-5)  # the normal limit


def test_regularized_beta_closed_forms():
    for x in (0.0, 0.1, 0.5, 0.93, 1.0):
        assert regularized_beta(1.0, 1.0, x) == pytest.approx(x, abs=1e-13)
        assert regularized_beta(2.0, 1.0, x) == pytest.approx(x * x, abs=1e-13)
        assert regularized_beta(1.0, 3.0, x) == pytest.approx(1 - (1 - x) ** 3, abs=1e-13)


def test_t_quantile_refuses_bad_input():
    for p, df in ((0.0, 3), (1.0, 3), (0.5, 0)):
        with pytest.raises(DataError, match="t_quantile"):
            t_quantile(p, df)


@settings(max_examples=40, deadline=None)
@given(slope=st.floats(0.1, 10.0), seed=st.integers(0, 2**31 - 1), n=st.integers(2, 12))
def test_slope_through_origin_matches_lstsq(slope, seed, n):
    rng = np.random.default_rng(seed)
    x = rng.uniform(1e3, 1e5, n)
    y = slope * x * rng.lognormal(0.0, 0.2, n)
    f = slope_through_origin(x, y)
    (b,), res, *_ = np.linalg.lstsq(x[:, None], y, rcond=None)
    np.testing.assert_allclose(f["slope"], b, rtol=1e-10)
    rss = float(res[0]) if len(res) else float(np.sum((y - b * x) ** 2))
    se = np.sqrt(rss / (n - 1) / np.sum(x**2))
    np.testing.assert_allclose(f["se"], se, rtol=1e-8)
    t = t_quantile(0.975, n - 1)
    np.testing.assert_allclose([f["lo"], f["hi"]], [b - t * se, b + t * se], rtol=1e-8)


@settings(max_examples=40, deadline=None)
@given(k=st.floats(-2.0, 2.0), seed=st.integers(0, 2**31 - 1), n=st.integers(3, 12))
def test_power_law_matches_polyfit(k, seed, n):
    rng = np.random.default_rng(seed)
    x = np.geomspace(1e3, 1e6, n) * rng.uniform(0.9, 1.1, n)
    y = 5.0 * x**k * rng.lognormal(0.0, 0.1, n)
    f = power_law(x, y)
    coef, cov = np.polyfit(np.log(x), np.log(y), 1, cov="unscaled")
    rss = np.sum((np.log(y) - np.polyval(coef, np.log(x))) ** 2)
    np.testing.assert_allclose(f["exponent"], coef[0], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(f["prefactor"], np.exp(coef[1]), rtol=1e-8)
    se = np.sqrt(cov[0, 0] * rss / (n - 2))
    np.testing.assert_allclose(f["se"], se, rtol=1e-6, atol=1e-12)


def test_fits_without_enough_points():
    one = slope_through_origin([1000.0], [3600.0])
    assert one["slope"] == pytest.approx(3.6) and np.isnan(one["lo"])
    assert np.isnan(power_law([1000.0], [5.0])["exponent"])
    assert np.isnan(power_law([1e3, 1e4], [1.0, 2.0])["lo"])  # two points: no interval
