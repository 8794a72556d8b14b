"""Summaries of docs/design.md §5 and §9: thresholds per rank bin, memorized bits.

- presentations (and steps) a rank bin needs to reach a level relative to its floor (the
  lag's normalized excess loss; for accuracy the deficit to the ceiling), or optionally an
  absolute loss / accuracy threshold: the first evaluation past it, interpolated against the
  one before it on log axes;
- memorized bits at the last evaluation, per sequence (L - 1) - (summed loss in nats) / ln 2,
  clipped at zero per sequence only; the unclipped total; the ceiling the Bayes floor allows by
  the same formula; bits per parameter where the run records n_params.

How far rarer bins lag the top one at equal presentations is in `lag.py`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError

LN2 = float(np.log(2.0))


def sequence_bits(loss: np.ndarray, L: int) -> np.ndarray:
    """Memorized bits of each sequence, unclipped: (L - 1) * (1 - mean loss / ln 2), i.e. the
    code length saved against the uniform code, loss being the mean over its L - 1 predicted
    positions in nats. Uniform loss ln 2 gives 0, zero loss L - 1; worse than uniform < 0.

    >>> sequence_bits(np.array([LN2, 0.0]), L=5).tolist()
    [0.0, 4.0]
    """
    return (L - 1) * (1.0 - np.asarray(loss, dtype=np.float64) / LN2)


def memorized_bits(
    table: pd.DataFrame, L: int | None, n_params: int | None = None
) -> dict[str, Any]:
    """Memorized bits at the table's last step (docs/design.md §9).

    Per sequence, `sequence_bits` of its mean loss, clipped at zero per sequence only (a
    compressor never does worse than its reference code; clipping per position would count
    noise as memory). Keys: memorized_bits (the clipped total), memorized_bits_unclipped,
    bits_ceiling (the same formula with each sequence's Bayes floor, clipped per sequence; NaN
    without a floor column), n_sequences, dataset_bits (n_sequences x (L - 1)) and
    bits_per_param (clipped total / n_params, all parameters incl. embeddings; NaN when
    unknown). A per-position table is averaged per sequence first.
    """
    if L is None or L < 2:
        raise DataError(f"memorized_bits: L: expected the sequence length >= 2, got {L}")
    for c in ("step", "rank", "loss"):
        if c not in table.columns:
            raise DataError(f"memorized_bits: table lacks column {c!r}")
    last = table[table["step"] == table["step"].max()]
    cols = ["loss"] + (["floor"] if "floor" in last.columns else [])
    if "position" in last.columns:
        last = last.groupby("rank", sort=True)[cols].mean()
    loss = last["loss"].to_numpy(np.float64)
    ok = np.isfinite(loss)
    bits = sequence_bits(loss[ok], L)
    clipped = float(np.clip(bits, 0.0, None).sum())
    ceiling = float("nan")
    if "floor" in last.columns:
        floor = last["floor"].to_numpy(np.float64)[ok]
        ceiling = float(np.clip(sequence_bits(floor, L), 0.0, None).sum())
    return {
        "step": int(table["step"].max()),
        "memorized_bits": clipped,
        "memorized_bits_unclipped": float(bits.sum()),
        "bits_ceiling": ceiling,
        "n_sequences": int(ok.sum()),
        "dataset_bits": int(ok.sum()) * (L - 1),
        "bits_per_param": clipped / n_params if n_params else float("nan"),
    }


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


def _relative(y: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(y - ref) / (y at the first finite evaluation - ref): 1 at the start, 0 at the reference
    (the floor for loss; for accuracy, with signs flipped, the ceiling); NaN where the start is
    not above the reference, so the share has no meaning."""
    finite = np.flatnonzero(np.isfinite(y))
    if len(finite) == 0:
        return np.full(len(y), np.nan)
    i0 = finite[0]
    denom = y[i0] - ref[i0]
    with np.errstate(all="ignore"):
        e = (y - ref) / denom if denom > 0 else np.full(len(y), np.nan)
    e[:i0] = np.nan
    return e


def thresholds(
    binned: pd.DataFrame,
    level: float = 0.5,
    loss_threshold: float | None = None,
    accuracy_threshold: float | None = None,
) -> pd.DataFrame:
    """Per (run, rank bin) of a binned table: presentations and steps its curve needs to reach

    - `level` relative to the floor (the lag's normalized levels, docs/design.md §5): the
      excess loss (loss - floor) down to `level` of its first value (presentations_to_loss_level,
      steps_to_loss_level), and the accuracy deficit (ceiling - accuracy) down to `level` of
      its first value (presentations_to_accuracy_level, ...); without a floor column the floor
      is 0 and the ceiling 1;
    - optionally absolute thresholds, loss <= loss_threshold nats and accuracy >=
      accuracy_threshold (presentations_to_loss, steps_to_loss, presentations_to_accuracy,
      steps_to_accuracy), columns present only when asked for.

    Each is the first evaluation past it, interpolated against the one before on log axes; NaN
    where the curve never gets there. Also final_loss, final_accuracy and n_sequences.
    """
    if not 0 < level < 1:
        raise DataError(f"level: expected a share in (0, 1), got {level}")
    keys = [k for k in ("run", "rank_lo", "rank_hi") if k in binned.columns]
    rows = []
    for key, g in binned.sort_values("step").groupby(keys, sort=True):
        x = {"presentations": g["presentations"].to_numpy(np.float64),
             "steps": g["step"].to_numpy(np.float64)}  # fmt: skip
        loss, acc = g["loss"].to_numpy(np.float64), g["accuracy"].to_numpy(np.float64)
        floor = g["floor"].to_numpy(np.float64) if "floor" in g else np.zeros(len(g))
        ceiling = g["ceiling"].to_numpy(np.float64) if "ceiling" in g else np.ones(len(g))
        e_loss, e_acc = _relative(loss, floor), _relative(-acc, -ceiling)
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        for what, v in x.items():
            row[f"{what}_to_loss_level"] = _crossing(v, e_loss, True, level, False)
            row[f"{what}_to_accuracy_level"] = _crossing(v, e_acc, True, level, False)
            if loss_threshold:
                row[f"{what}_to_loss"] = _crossing(v, loss, True, loss_threshold, True)
            if accuracy_threshold:
                row[f"{what}_to_accuracy"] = _crossing(v, acc, False, accuracy_threshold, False)
        row.update(final_loss=float(loss[-1]), final_accuracy=float(acc[-1]))
        if "n_sequences" in g:
            row["n_sequences"] = int(g["n_sequences"].min())
        rows.append(row)
    return pd.DataFrame(rows)


def run_summary(metas: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run: label, K, L, last step, memorized bits (clipped, unclipped, the Bayes
    ceiling), n_params and bits per parameter."""
    rows = []
    for m in metas:
        mb = m.get("memorized", {})
        nan = float("nan")
        rows.append(
            {
                "run": m["name"],
                "label": m["label"],
                "K": m["K"],
                "L": m.get("L"),
                "step": mb.get("step"),
                "memorized_bits": mb.get("memorized_bits", nan),
                "memorized_bits_unclipped": mb.get("memorized_bits_unclipped", nan),
                "bits_ceiling": mb.get("bits_ceiling", nan),
                "n_params": m.get("n_params"),
                "bits_per_param": mb.get("bits_per_param", nan),
            }
        )
    return pd.DataFrame(rows)
