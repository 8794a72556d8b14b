"""Fits of the capacity experiment: bits per parameter (a line through the origin) and power
laws (a line in log-log), each with a Student-t interval on its slope; the Student-t quantile
itself in NumPy and the standard library (no SciPy).

    slope_through_origin([1e3, 1e4], [3.5e3, 3.7e4])["slope"]  # bits per parameter
    t_quantile(0.975, 10)  # 2.228...
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import DataError


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz; Numerical
    Recipes' betacf), converging fast for x < (a + 1) / (a + b + 2)."""
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0 or x >= 1.0:
        return 0.0 if x <= 0.0 else 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    tail = 0.5 * regularized_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t (0 < p < 1, df > 0), by bisection on t_cdf to 1e-12."""
    if not (0.0 < p < 1.0 and df > 0):
        raise DataError(f"t_quantile: expected 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:  # the tail of df = 1 is Cauchy: the bracket may need to be wide
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


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
        t = t_quantile(0.5 + confidence / 2, n - 1)
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
        t = t_quantile(0.5 + confidence / 2, n - 2)
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
