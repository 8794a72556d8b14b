"""Fits of the capacity experiment: bits per parameter (a line through the origin) and power
laws (a line in log-log), each with a Student-t interval on its slope.

    slope_through_origin([1e3, 1e4], [3.5e3, 3.7e4])["slope"]  # bits per parameter
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from ..errors import DataError


def _xy(x, y, what: str, positive: bool) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise DataError(f"{what}: expected two 1-D arrays of one length, got {x.shape}, {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y) & ((x > 0) & (y > 0) if positive else x != 0)
    return x[ok], y[ok]


def slope_through_origin(x, y, confidence: float = 0.95) -> dict[str, Any]:
    """Least squares y = b x: slope b = sum(xy) / sum(x^2), its standard error and t-interval
    (n - 1 degrees of freedom; NaN with one point). Non-finite pairs and x = 0 are left out."""
    x, y = _xy(x, y, "slope_through_origin", positive=False)
    n = len(x)
    if n == 0:
        raise DataError("slope_through_origin: no finite points to fit")
    sxx = float(np.dot(x, x))
    b = float(np.dot(x, y)) / sxx
    nan = float("nan")
    se, lo, hi = nan, nan, nan
    if n > 1:
        resid = y - b * x
        se = float(np.sqrt(np.dot(resid, resid) / (n - 1) / sxx))
        t = float(stats.t.ppf(0.5 + confidence / 2, n - 1))
        lo, hi = b - t * se, b + t * se
    return {"slope": b, "se": se, "lo": lo, "hi": hi, "n": n, "confidence": confidence}


def power_law(x, y, confidence: float = 0.95) -> dict[str, Any]:
    """Least squares log y = log c + k log x: exponent k with its standard error and
    t-interval (n - 2 degrees of freedom; NaN with two points), prefactor c. Pairs with a
    non-positive or non-finite value are left out."""
    x, y = _xy(x, y, "power_law", positive=True)
    n = len(x)
    nan = float("nan")
    if n < 2 or np.ptp(np.log(x)) == 0:
        return {
            "exponent": nan,
            "se": nan,
            "lo": nan,
            "hi": nan,
            "prefactor": nan,
            "n": n,
            "confidence": confidence,
        }
    lx, ly = np.log(x), np.log(y)
    mx = lx.mean()
    sxx = float(np.sum((lx - mx) ** 2))
    k = float(np.sum((lx - mx) * (ly - ly.mean())) / sxx)
    a = float(ly.mean() - k * mx)
    se, lo, hi = nan, nan, nan
    if n > 2:
        resid = ly - (a + k * lx)
        se = float(np.sqrt(np.dot(resid, resid) / (n - 2) / sxx))
        t = float(stats.t.ppf(0.5 + confidence / 2, n - 2))
        lo, hi = k - t * se, k + t * se
    return {
        "exponent": k,
        "se": se,
        "lo": lo,
        "hi": hi,
        "prefactor": float(np.exp(a)),
        "n": n,
        "confidence": confidence,
    }
