"""The plateau rule that ends a capacity run (docs/design.md §9): its loss has stopped falling.

Per evaluation, the mean loss over all sequences. Memorized bits per position are the gain
below the uniform code, ln 2 - loss. The run has converged at an evaluation when

- it is at or past `min_steps` and every sequence has been presented `min_presentations`
  times on average (the loss starts on a plateau near ln 2, which is not the end; with K far
  above capacity the final plateau is near ln 2 too, and only the exposure tells them apart),
- at least two windows of `window` evaluations exist, the latest one gaining (mean loss < ln 2),
- the mean loss of the latest window is below the window before by at most `rel_tol` times
  the latest gain: memorized bits grew by less than that fraction over one window.

Evaluations are log-spaced in steps, so a window spans a fixed ratio of steps: a loss that
keeps falling in log-steps keeps gaining a steady share and is never called converged, while
one that flattens is, whatever its level (near 0 when K is small, near ln 2 when K is large).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from ..analysis.summaries import LN2
from ..errors import DataError
from .config import PlateauSection


def loss_curve(evals: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean loss, mean presentations over sequences) per evaluation, sorted by step."""
    for c in ("step", "loss", "presentations"):
        if c not in evals.columns:
            raise DataError(f"plateau: evaluations lack column {c!r}")
    g = evals.groupby("step", sort=True)[["loss", "presentations"]].mean()
    return (
        g.index.to_numpy(np.int64),
        g["loss"].to_numpy(np.float64),
        g["presentations"].to_numpy(np.float64),
    )


def plateaued(
    steps: np.ndarray,
    loss: np.ndarray,
    rule: PlateauSection,
    presentations: np.ndarray | None = None,
) -> bool:
    """Whether the curve has converged at its last evaluation (see the module docstring).
    presentations: mean presentations per sequence at each evaluation (None: not checked)."""
    steps, loss = np.asarray(steps), np.asarray(loss, np.float64)
    k = rule.window
    if len(loss) < 2 * k or steps[-1] < rule.min_steps or not np.all(np.isfinite(loss[-2 * k :])):
        return False
    if presentations is not None and np.asarray(presentations)[-1] < rule.min_presentations:
        return False
    recent, before = loss[-k:].mean(), loss[-2 * k : -k].mean()
    gain = LN2 - recent
    return bool(gain > 0 and before - recent <= rule.rel_tol * gain)


def converged_step(
    steps: np.ndarray,
    loss: np.ndarray,
    rule: PlateauSection,
    presentations: np.ndarray | None = None,
) -> int | None:
    """The first evaluation step at which the rule holds, or None."""
    for i in range(1, len(loss) + 1):
        pres = None if presentations is None else presentations[:i]
        if plateaued(steps[:i], loss[:i], rule, pres):
            return int(steps[i - 1])
    return None


def stop_rule(rule: PlateauSection) -> Callable[[pd.DataFrame], bool]:
    """The rule as a `train(stop=...)` hook over the evaluations so far."""

    def stop(evals: pd.DataFrame) -> bool:
        steps, loss, presentations = loss_curve(evals)
        return plateaued(steps, loss, rule, presentations)

    return stop
