"""Summaries of DESIGN 5: thresholds per rank bin, curve collapse, memorized bits.

- presentations (and steps) a rank bin needs to reach a loss / accuracy threshold: the first
  evaluation past the threshold, interpolated against the one before it on log axes;
- collapse: at log-spaced x, the standard deviation across rank bins of log(loss) interpolated
  at x (on log x), averaged over x. Small when the bins fall on one curve. Measured against
  presentations and, for contrast, against steps (the bins share steps, so there it measures
  how far apart the ranks are at the same time);
- memorized bits at the last evaluation: sum over sequences and positions of
  1 - max(loss, floor)/ln 2, clipped at 0 (the floor bounds it where the bits are known), and
  per parameter when the run records n_params. A per-sequence table (legacy K >= 10000) has only
  each sequence's mean loss, so there it is (L-1) x (1 - loss/ln 2), clipped: a lower bound.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

LN2 = float(np.log(2.0))


def memorized_bits(table: pd.DataFrame, L: int | None) -> dict[str, Any]:
    """Memorized bits at the table's last step (per-position rows if it has them)."""
    last = table[table["step"] == table["step"].max()]
    loss = last["loss"].to_numpy(np.float64)
    ok = np.isfinite(loss)
    floor = last["floor"].to_numpy(np.float64) if "floor" in last.columns else None
    eff = np.maximum(loss, floor) if floor is not None else loss
    per = np.clip(1.0 - eff / LN2, 0.0, None)[ok]
    scale = 1.0 if "position" in last.columns else float((L or 2) - 1)
    out = {
        "step": int(last["step"].iloc[0]),
        "memorized_bits": float(per.sum() * scale),
        "bits_bound": float(np.clip(1.0 - floor / LN2, 0, None)[ok].sum() * scale)
        if floor is not None
        else float("nan"),
        "from_positions": "position" in last.columns,
    }
    return out


def _crossing(x: np.ndarray, y: np.ndarray, below: bool, thr: float, logy: bool) -> float:
    hit = np.flatnonzero(y <= thr if below else y >= thr)
    if len(hit) == 0:
        return float("nan")
    i = hit[0]
    if i == 0 or x[i - 1] <= 0 or not np.isfinite(y[i - 1]):
        return float(x[i])
    f = (lambda v: np.log(np.maximum(v, 1e-30))) if logy else (lambda v: v)
    y0, y1, t = f(y[i - 1]), f(y[i]), f(thr)
    frac = 0.0 if y1 == y0 else float(np.clip((t - y0) / (y1 - y0), 0, 1))
    return float(np.exp(np.log(x[i - 1]) + frac * (np.log(x[i]) - np.log(x[i - 1]))))


def thresholds(
    binned: pd.DataFrame, loss_threshold: float, accuracy_threshold: float
) -> pd.DataFrame:
    """Per (run, rank bin): presentations and steps to reach the loss / accuracy thresholds."""
    keys = [k for k in ("run", "rank_lo", "rank_hi") if k in binned.columns]
    rows = []
    for key, g in binned.sort_values("step").groupby(keys, sort=True):
        pres = g["presentations"].to_numpy(np.float64)
        step = g["step"].to_numpy(np.float64)
        loss, acc = g["loss"].to_numpy(np.float64), g["accuracy"].to_numpy(np.float64)
        rows.append(
            {
                **dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True)),
                "presentations_to_loss": _crossing(pres, loss, True, loss_threshold, True),
                "steps_to_loss": _crossing(step, loss, True, loss_threshold, True),
                "presentations_to_accuracy": _crossing(pres, acc, False, accuracy_threshold, False),
                "steps_to_accuracy": _crossing(step, acc, False, accuracy_threshold, False),
                "final_loss": float(loss[-1]),
                "final_accuracy": float(acc[-1]),
            }
        )
    return pd.DataFrame(rows)


def collapse_spread(binned: pd.DataFrame, x: str = "presentations", points: int = 32) -> float:
    """Mean over log-spaced x of the std across rank bins of log(loss) interpolated at x."""
    curves = []
    for _, g in binned.groupby(["rank_lo", "rank_hi"], sort=True):
        g = g.sort_values(x)
        xv, yv = g[x].to_numpy(np.float64), g["loss"].to_numpy(np.float64)
        ok = (xv > 0) & np.isfinite(yv) & (yv > 0)
        xv, yv = xv[ok], yv[ok]
        if len(xv) >= 2:
            xv, idx = np.unique(xv, return_index=True)
            curves.append((np.log(xv), np.log(yv[idx])))
    if len(curves) < 2:
        return float("nan")
    lo = min(c[0][0] for c in curves)
    hi = max(c[0][-1] for c in curves)
    grid = np.linspace(lo, hi, points)
    vals = np.full((len(curves), points), np.nan)
    for i, (lx, ly) in enumerate(curves):
        inside = (grid >= lx[0]) & (grid <= lx[-1])
        vals[i, inside] = np.interp(grid[inside], lx, ly)
    enough = np.sum(np.isfinite(vals), axis=0) >= 2
    if not enough.any():
        return float("nan")
    return float(np.nanmean(np.nanstd(vals[:, enough], axis=0)))


def collapse(binned: pd.DataFrame, points: int = 32) -> pd.DataFrame:
    """Per run: collapse spread on presentations and on steps, and their ratio."""
    groups = binned.groupby("run", sort=False) if "run" in binned.columns else [("run", binned)]
    rows = []
    for run, g in groups:
        sp = collapse_spread(g, "presentations", points)
        ss = collapse_spread(g, "step", points)
        rows.append({"run": run, "spread_presentations": sp, "spread_steps": ss, "ratio": ss / sp})
    return pd.DataFrame(rows)


def run_summary(metas: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run: label, K, L, last step, memorized bits, bound, bits per parameter."""
    rows = []
    for m in metas:
        mb = m.get("memorized", {})
        n_params = m.get("n_params")
        bits = mb.get("memorized_bits", float("nan"))
        rows.append(
            {
                "run": m["name"],
                "label": m["label"],
                "K": m["K"],
                "L": m.get("L"),
                "step": mb.get("step"),
                "memorized_bits": bits,
                "bits_bound": mb.get("bits_bound", float("nan")),
                "n_params": n_params,
                "bits_per_param": bits / n_params if n_params else float("nan"),
            }
        )
    return pd.DataFrame(rows)
