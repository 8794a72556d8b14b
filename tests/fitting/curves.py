"""Synthetic per-sequence curves with a known lag, for the scoring and verdict tests.

Rank k's normalized excess loss is e(n) = p_k + (1 - p_k) exp(-n / tau_k) at n presentations,
so it reaches a level l > p_k at n = tau_k ln((1 - p_k) / (l - p_k)) and never reaches l <= p_k.
With p = 0 in both bins, a bin's lag ratio to the top bin is tau_bin / tau_top at every level:
a planted constant factor.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FLOOR, INIT = 0.1, 0.7
EDGES = np.array([0, 5, 10])
STEPS = np.concatenate(([0], np.geomspace(1, 20000, 48).round()))


def curves(taus, plateaus=None, *, run: str | None = None, rate=1.0) -> pd.DataFrame:
    """One run's (or member's) per-sequence table: one rank per entry of `taus`."""
    plateaus = np.zeros(len(taus)) if plateaus is None else np.asarray(plateaus, float)
    rows = []
    for k, (tau, p) in enumerate(zip(taus, plateaus, strict=True)):
        n = rate * STEPS
        e = p + (1 - p) * np.exp(-n / tau)
        loss = FLOOR + (INIT - FLOOR) * e
        rows.append(pd.DataFrame({"step": STEPS.astype(np.int64), "rank": k, "presentations": n,
                                  "loss": loss, "accuracy": 0.5}))  # fmt: skip
    out = pd.concat(rows, ignore_index=True)
    return out if run is None else out.assign(run=run)


def two_bins(top: float, factor: float, plateau: float = 0.0, **kw) -> pd.DataFrame:
    """Ranks 0-4 with tau `top`, ranks 5-9 with tau `top * factor` and the given plateau."""
    return curves([top] * 5 + [top * factor] * 5, [0.0] * 5 + [plateau] * 5, **kw)


def floors(n: int = 10) -> np.ndarray:
    return np.full(n, FLOOR)
