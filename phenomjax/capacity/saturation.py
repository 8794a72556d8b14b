"""Training one (size, K) to saturation (docs/design.md §9): budgets that double, a convergence
rule, and a saturating fit for the runs that miss it.

- Budgets are exposures per sequence (presentations / K): first_exposures, then doubled. Every
  budget ends annealed (its rate decays to 0 over its own steps), so "more steps" means a longer
  schedule, not a later point of the same one. With cooldown = 0 each budget is its own run
  with warm-up and a cosine decay; with cooldown > 0 (warmup-stable-decay) the budgets share one
  warm-up and a constant rate, and each decays linearly over its last `cooldown` share of
  steps, branched from the largest budget's run (ladder.chain_jobs): the same numbers as its own
  run, at the cost of its decay only.
- Converged: the last budget is at least min_exposures and its memorized bits exceed the
  budget before it by less than rel_tol (under 2% over the last doubling of steps); or its
  memorized bits are within rel_tol of the Bayes ceiling, past which no budget can gain
  rel_tol (the data are memorized; no further budget is trained).
- Otherwise, once max_exposures is spent, memorized bits against budget are extrapolated with
  b(E) = b_inf - a (E / E0)^-c (c > 0: each doubling gains a fixed share q = 2^-c of the one
  before), fitted by least squares on a grid of q; its interval is a bootstrap over sequences
  (resampling the K sequences' bits at every budget, refitting), clipped to [the most any
  budget memorized, the Bayes ceiling]. The interval covers which
  sequences happen to be memorized, not the choice of this form. When the best q is at the
  grid's top (the gains do not shrink), or its b_inf is under the most a budget memorized
  (the series rose faster than the form allows), there is no saturation to extrapolate: the
  estimate is NaN and the upper end the Bayes ceiling.

    budgets(SaturationSection())  # [250, 500, 1000, 2000, 4000]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import DataError
from .config import SaturationSection

Q_GRID = np.linspace(0.01, 0.95, 95)  # the share of the previous doubling's gain each one adds


def budgets(rule: SaturationSection) -> list[int]:
    """Exposures per sequence of the runs of one (size, K), doubling up to max_exposures."""
    out = [rule.first_exposures]
    while out[-1] * 2 <= rule.max_exposures:
        out.append(out[-1] * 2)
    return out


def steps_for(K: int, batch: int, exposures: int) -> int:
    """Optimizer steps that present each of K sequences `exposures` times on average."""
    return max(1, math.ceil(exposures * K / batch))


def gain(before: float, after: float) -> float:
    """Relative growth of memorized bits from one budget to the next (0 when both are 0)."""
    if before > 0:
        return after / before - 1.0
    return 0.0 if after <= 0 else math.inf


def at_ceiling(bits: float, ceiling: float, rule: SaturationSection) -> bool:
    """Whether memorized bits are so near the Bayes ceiling that no budget can gain rel_tol."""
    return ceiling > 0 and bits * (1 + rule.rel_tol) >= ceiling


def converged(
    exposures: Sequence[int],
    bits: Sequence[float],
    rule: SaturationSection,
    ceiling: float = math.inf,
) -> bool:
    """Whether the last budget is past min_exposures and gained < rel_tol over the one before,
    or is at the Bayes `ceiling` (at_ceiling)."""
    if bits and at_ceiling(bits[-1], ceiling, rule):
        return True
    if len(bits) < 2 or exposures[-1] < rule.min_exposures:
        return False
    return gain(bits[-2], bits[-1]) < rule.rel_tol


def finished(
    exposures: Sequence[int],
    bits: Sequence[float],
    rule: SaturationSection,
    ceiling: float = math.inf,
) -> bool:
    """Whether no further budget is trained: converged, or max_exposures spent."""
    return converged(exposures, bits, rule, ceiling) or exposures[-1] * 2 > rule.max_exposures


def _fit_totals(n: np.ndarray, y_RxN: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of y: (b_inf, the best grid index) of b = b_inf - a q^n, least squares in
    (b_inf, a) at every q of Q_GRID."""
    X_GxNx2 = np.stack([np.ones((len(Q_GRID), len(n))), -(Q_GRID[:, None] ** n[None])], axis=-1)
    pinv_Gx2xN = np.linalg.pinv(X_GxNx2)
    beta_Gx2xR = pinv_Gx2xN @ y_RxN.T
    resid = y_RxN.T[None] - X_GxNx2 @ beta_Gx2xR
    best_R = np.argmin(np.sum(resid**2, axis=1), axis=0)
    return beta_Gx2xR[best_R, 0, np.arange(len(best_R))], best_R


def extrapolate(
    exposures: Sequence[int],
    bits_BxK: np.ndarray,
    *,
    ceiling: float = math.inf,
    resamples: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """The saturating fit (module docstring) of per-sequence memorized bits (budgets x K, each
    clipped at 0) against exposures: bits (b_inf), lo, hi (bootstrap percentiles), q, n. No
    end exceeds the Bayes `ceiling`. A fit whose b_inf is under the most a budget memorized
    is no evidence of saturation (the series rose faster than the form allows): no estimate,
    as when the gains do not shrink."""
    bits_BxK = np.asarray(bits_BxK, np.float64)
    e = np.asarray(exposures, np.float64)
    if bits_BxK.ndim != 2 or bits_BxK.shape[0] != len(e) or len(e) < 3:
        raise DataError(f"extrapolate: expected >= 3 budgets x K bits, got {bits_BxK.shape}")
    n = np.log2(e / e[0])
    totals = bits_BxK.sum(axis=1)
    most = float(totals.max())  # a run that memorized this much bounds the capacity below
    (b_inf,), (best,) = _fit_totals(n, totals[None])
    edge = best == len(Q_GRID) - 1 or b_inf < most
    rng = np.random.default_rng(seed)
    K = bits_BxK.shape[1]
    idx = rng.integers(0, K, size=(resamples, K))
    y = np.stack([bits_BxK[:, i].sum(axis=1) for i in idx])  # (R, budgets)
    boot, where = _fit_totals(n, y)
    boot = np.where(where == len(Q_GRID) - 1, np.inf, boot)  # no saturation in that resample
    tail = (1 - confidence) / 2  # nearest-rank percentiles: an infinite resample stays inf
    ranked = np.sort(boot)
    lo = float(ranked[math.floor(tail * (resamples - 1))])
    hi = float(ranked[math.ceil((1 - tail) * (resamples - 1))])
    cap = max(float(ceiling), most)
    return {
        "bits": math.nan if edge else min(float(b_inf), cap),
        # no saturation (edge) or an infinite end: the measured bits are the only lower end
        "lo": most if edge or not np.isfinite(lo) else min(max(lo, most), cap),
        "hi": cap if edge else min(max(hi, most), cap),
        "q": float(Q_GRID[best]),
        "n": len(e),
        "confidence": confidence,
    }
